//! Batches: cutting them by snapshots (design.md section 3) and reading one
//! back, in seq order and in bounded chunks.

use std::collections::HashSet;
use std::time::Duration;

use pgferry_proto::change::{Change, ChangeKind};
use pgferry_proto::wire;
use tokio::sync::{mpsc, watch};
use tokio_postgres::{Client, Config};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// Cuts the next batch if committed changes wait. Returns its id.
pub async fn cut(client: &Client) -> Result<Option<u64>> {
    let row = client
        .query_one("select pgferry.cut_batch()", &[])
        .await
        .map_err(Error::db("cutting a batch"))?;
    Ok(row.get::<_, Option<i64>>(0).map(|id| id as u64))
}

/// The newest and oldest batch ids the source still keeps.
pub async fn kept_range(client: &Client) -> Result<(u64, u64)> {
    let row = client
        .query_one(
            "select min(batch_id), max(batch_id) from pgferry.batch",
            &[],
        )
        .await
        .map_err(Error::db("reading the batch list"))?;
    let (min, max): (Option<i64>, Option<i64>) = (row.get(0), row.get(1));
    Ok((min.unwrap_or(0) as u64, max.unwrap_or(0) as u64))
}

/// Keeps cutting batches every `tick` until `cancel`, publishing the newest
/// batch id on `cut_tx`. Holds the database's source-agent lock so that two
/// agents never cut (or ship) batches of one queue.
pub async fn cut_loop(
    config: Config,
    tick: Duration,
    cut_tx: watch::Sender<u64>,
    cancel: CancellationToken,
) -> Result<()> {
    let mut backoff = Duration::from_millis(100);
    loop {
        match cut_session(&config, tick, &cut_tx, &cancel).await {
            Ok(()) => return Ok(()),
            Err(err) if err.is_retryable() => {
                tracing::warn!(error = %err, "batch cutter lost the source database; retrying");
            }
            Err(err) => return Err(err),
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// How long a starting agent waits for a predecessor's lock to go (a killed
/// agent's server session ends a moment after the process).
const LOCK_WAIT: Duration = Duration::from_secs(15);

async fn cut_session(
    config: &Config,
    tick: Duration,
    cut_tx: &watch::Sender<u64>,
    cancel: &CancellationToken,
) -> Result<()> {
    let client = pgferry_proto::db::connect(config)
        .await
        .map_err(Error::Connect)?;
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    loop {
        let locked: bool = client
            .query_one(
                "select pg_try_advisory_lock(hashtext('pgferry.source-agent'))",
                &[],
            )
            .await
            .map_err(Error::db("taking the source-agent lock"))?
            .get(0);
        if locked {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Error::AlreadyRunning);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, newest) = kept_range(&client).await?;
    cut_tx.send_replace(newest);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(tick) => {}
        }
        if let Some(batch_id) = cut(&client).await? {
            tracing::debug!(batch_id, "cut batch");
            cut_tx.send_replace(batch_id);
        }
    }
}

/// Changes of a batch, by `pgferry.batch_changes` (see its comment).
const READ_BATCH: &str = "
    select seq, table_id, op::text, old_key::text, new_row::text
    from pgferry.batch_changes($1::bigint)";

/// Reads batch `batch_id` in chunks within `limits` and sends them on `out`;
/// the last chunk is marked. Memory stays at one chunk: the read is a
/// portal, and `out` is bounded.
pub async fn send(
    client: &mut Client,
    batch_id: u64,
    limits: ChunkLimits,
    known_tables: &HashSet<u32>,
    out: &mpsc::Sender<wire::SourceMessage>,
) -> Result<SendOutcome> {
    let tx = client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .map_err(Error::db("reading a batch"))?;
    let id = batch_id as i64;
    let exists: bool = tx
        .query_one(
            "select count(*) = 2 from pgferry.batch where batch_id in ($1::bigint - 1, $1::bigint)",
            &[&id],
        )
        .await
        .map_err(Error::db("reading a batch"))?
        .get(0);
    if !exists {
        return Err(Error::Protocol(format!(
            "batch {batch_id} or its predecessor is no longer kept on the source"
        )));
    }
    let statement = tx
        .prepare(READ_BATCH)
        .await
        .map_err(Error::db("reading a batch"))?;
    let portal = tx
        .bind(&statement, &[&id])
        .await
        .map_err(Error::db("reading a batch"))?;
    let mut changes_sent = 0u64;
    loop {
        let rows = tx
            .query_portal(&portal, limits.rows as i32)
            .await
            .map_err(Error::db("reading a batch"))?;
        let last = rows.len() < limits.rows as usize;
        let mut changes = Vec::with_capacity(rows.len());
        let mut bytes = 0usize;
        for row in rows {
            let change = to_change(&row)?;
            if !known_tables.contains(&change.table_id) {
                return Ok(SendOutcome::TablesChanged);
            }
            let change = wire::Change::from(change);
            let size = change.old_key.as_ref().map_or(0, String::len)
                + change.new_row.as_ref().map_or(0, String::len);
            // Keep messages under the byte budget too: wide rows would
            // otherwise make a chunk of `rows` changes too large to send.
            if bytes + size > limits.bytes && !changes.is_empty() {
                changes_sent += changes.len() as u64;
                if !send_chunk(out, batch_id, std::mem::take(&mut changes), false).await {
                    return Ok(SendOutcome::PeerGone);
                }
                bytes = 0;
            }
            bytes += size;
            changes.push(change);
        }
        changes_sent += changes.len() as u64;
        if !send_chunk(out, batch_id, changes, last).await {
            return Ok(SendOutcome::PeerGone);
        }
        if last {
            tracing::debug!(batch_id, changes = changes_sent, "sent batch");
            return Ok(SendOutcome::Sent {
                changes: changes_sent,
            });
        }
    }
}

/// How much one message on the wire may carry.
#[derive(Debug, Clone, Copy)]
pub struct ChunkLimits {
    /// Changes per message.
    pub rows: u32,
    /// Bytes of row data per message (a single larger row still goes alone).
    pub bytes: usize,
}

/// Sends one chunk; false when the stream is gone.
async fn send_chunk(
    out: &mpsc::Sender<wire::SourceMessage>,
    batch_id: u64,
    changes: Vec<wire::Change>,
    last: bool,
) -> bool {
    let chunk = wire::BatchChunk {
        batch_id,
        changes,
        last,
    };
    let message = wire::SourceMessage {
        kind: Some(wire::source_message::Kind::Chunk(chunk)),
    };
    out.send(message).await.is_ok()
}

/// How sending a batch ended.
#[derive(Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// The whole batch is on its way.
    Sent {
        /// How many changes it held.
        changes: u64,
    },
    /// A change belongs to a table the stream's hello did not announce: the
    /// stream must start over with the current table list.
    TablesChanged,
    /// The stream closed under us.
    PeerGone,
}

fn to_change(row: &tokio_postgres::Row) -> Result<Change> {
    let seq = row.get::<_, i64>(0) as u64;
    let table_id = row.get::<_, i32>(1) as u32;
    let op: &str = row.get(2);
    let old_key: Option<String> = row.get(3);
    let new_row: Option<String> = row.get(4);
    let broken = || Error::Protocol(format!("queue row {seq} ({op}) lacks its data"));
    let kind = match op {
        "I" => ChangeKind::Insert {
            new_row: new_row.ok_or_else(broken)?,
        },
        "U" => ChangeKind::Update {
            old_key,
            new_row: new_row.ok_or_else(broken)?,
        },
        "D" => ChangeKind::Delete {
            old_key: old_key.ok_or_else(broken)?,
        },
        "T" => ChangeKind::Truncate,
        _ => return Err(broken()),
    };
    Ok(Change {
        seq,
        table_id,
        kind,
    })
}
