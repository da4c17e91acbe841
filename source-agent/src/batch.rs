//! Batches: cutting them by snapshots (design.md section 3) and reading one
//! back, in seq order and in bounded chunks.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::TryStreamExt;

use pgferry_proto::change::{Change, ChangeKind};
use pgferry_proto::wire;
use tokio::sync::{mpsc, watch};
use tokio_postgres::{Client, Config, IsolationLevel, RowStream, Statement};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::error::{Error, Result};

/// The cut, prepared once per session: it runs for every batch.
const CUT_BATCH: &str = "select pgferry.cut_batch($1, $2)";

/// Cuts the next batch if committed changes wait and fewer than
/// `max_unapplied` cut batches are beyond `applied`, the last batch the
/// target reported applied. Returns its id.
pub async fn cut(
    client: &Client,
    cut_batch: &Statement,
    applied: u64,
    max_unapplied: u32,
) -> Result<Option<u64>> {
    let row = client
        .query_one(cut_batch, &[&i64::from(max_unapplied), &(applied as i64)])
        .await
        .map_err(Error::db("cutting a batch"))?;
    Ok(row.get::<_, Option<i64>>(0).map(|id| id as u64))
}

/// What tells a batch from another of its id (`BatchChunk.cut`), as SQL
/// over a `pgferry.batch` row: the snapshot that cut it and when, in
/// microseconds since 1970. A macro so that constant queries can hold it.
macro_rules! cut_sql {
    () => {
        "snapshot::text || ' ' || (extract(epoch from cut_at) * 1000000)::bigint"
    };
}

/// The cut of batch `batch_id` (see [`cut_sql`]), which the target records
/// with the batch; empty when the batch is not kept.
pub async fn cut_of(client: &Client, batch_id: u64) -> Result<String> {
    let row = client
        .query_opt(
            concat!(
                "select ",
                cut_sql!(),
                " from pgferry.batch where batch_id = $1"
            ),
            &[&(batch_id as i64)],
        )
        .await
        .map_err(Error::db("reading a batch's cut"))?;
    Ok(row.map(|row| row.get(0)).unwrap_or_default())
}

/// Refuses a database whose transaction ids are behind its newest batch's
/// snapshot: pgferry's tables were carried into another cluster (a logical
/// dump restored), where every change would look older than the last cut
/// and none would ever be cut.
pub async fn check_transaction_ids(client: &Client) -> Result<()> {
    let row = client
        .query_opt(
            "select pg_snapshot_xmax(pg_current_snapshot()) < pg_snapshot_xmax(snapshot),
                    pg_snapshot_xmax(pg_current_snapshot())::text, snapshot::text
             from pgferry.batch order by batch_id desc limit 1",
            &[],
        )
        .await
        .map_err(Error::db("reading the newest batch"))?;
    match row {
        Some(row) if row.get::<_, bool>(0) => Err(Error::TransactionIdsBehind {
            current: row.get(1),
            newest: row.get(2),
        }),
        _ => Ok(()),
    }
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

/// How often the cutter looks for committed changes: every `tick` while
/// they come; once none came for [`IDLE_AFTER`], the wait doubles after
/// each empty look, up to `idle_tick`, so an idle database is not asked a
/// thousand times a second.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// The wait between looks while changes come.
    pub tick: Duration,
    /// The longest wait between looks, reached when idle.
    pub idle_tick: Duration,
    /// The longest wait between cuts under load (see [`Pace::interval`]).
    pub max_coalesce: Duration,
    /// `--max-backoff`: the longest wait before the cutter retries after
    /// losing the source database.
    pub max_backoff: Duration,
    /// `--max-unapplied-batches`: cut batches that may wait to be applied
    /// before the cutter holds off and lets the next batch grow.
    pub max_unapplied: u32,
}

/// How long the cutter waits per change the last batch carried. Below two
/// thousand changes a second each batch is cut a tick after the last;
/// above, the batches grow until the wait reaches `max_coalesce`: each
/// batch costs the source a cut, a read and an acknowledgement whatever
/// its size, which a writer's few thousand single-row commits a second
/// must not pay hundreds of times a second. At 1 ms per change the bench's
/// lag load (about 800 changes a second: 500 TPS and heartbeats) sat near
/// the threshold and its batches drifted to 3-6 ms apart (debug log of
/// `PGFERRY_BENCH_ONLY=lag`), with the same writers' cost as now.
const COALESCE_PER_CHANGE: Duration = Duration::from_micros(500);

impl Pace {
    /// The least time between two cuts after a batch of `changes`.
    fn interval(&self, changes: u64) -> Duration {
        let gather = COALESCE_PER_CHANGE.saturating_mul(changes.min(u32::MAX as u64) as u32);
        gather.min(self.max_coalesce).max(self.tick)
    }
}

/// How long without changes before the cutter slows down: under a steady
/// trickle (a change every few ticks) most looks find nothing, and slowing
/// down on each would add its wait to every change's lag.
const IDLE_AFTER: Duration = Duration::from_millis(100);

/// Keeps cutting batches at `pace`, and whenever the target applied one
/// (no sooner after the last cut than the size of the last batch sent,
/// `sent_rx`, calls for), until `cancel`, publishing the newest batch id on
/// `cut_tx`. Holds the database's source-agent lock so that two agents
/// never cut (or ship) batches of one queue.
pub async fn cut_loop(
    config: Config,
    pace: Pace,
    cut_tx: watch::Sender<u64>,
    mut applied_rx: watch::Receiver<u64>,
    sent_rx: watch::Receiver<u64>,
    cancel: CancellationToken,
) -> Result<()> {
    let mut backoff = Backoff::new(pace.max_backoff);
    loop {
        let wait = match cut_session(&config, pace, &cut_tx, &mut applied_rx, &sent_rx, &cancel)
            .await
        {
            Ok(()) => return Ok(()),
            Err(err) if err.is_retryable() => {
                let wait = backoff.failed(false);
                tracing::warn!(error = %err, retry_in_ms = wait.as_millis() as u64, "batch cutter lost the source database; retrying");
                wait
            }
            Err(err) => return Err(err),
        };
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// How long a starting agent waits for a predecessor's lock to go (a killed
/// agent's server session ends a moment after the process).
const LOCK_WAIT: Duration = Duration::from_secs(15);

async fn cut_session(
    config: &Config,
    pace: Pace,
    cut_tx: &watch::Sender<u64>,
    applied_rx: &mut watch::Receiver<u64>,
    sent_rx: &watch::Receiver<u64>,
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
    let cut_batch = client
        .prepare(CUT_BATCH)
        .await
        .map_err(Error::db("preparing the cut"))?;
    let mut wait = pace.tick;
    let mut last_found = tokio::time::Instant::now();
    let mut last_cut = tokio::time::Instant::now();
    loop {
        // An applied batch may have been what held the next cut back: cut
        // at once rather than at the next tick. The tick counts from the
        // last look's start, so a look's own time does not add to it.
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(()),
            Ok(()) = applied_rx.changed() => {}
            _ = tokio::time::sleep_until(last_cut + wait) => {}
        }
        let gathered = last_cut + pace.interval(*sent_rx.borrow());
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep_until(gathered) => {}
        }
        let applied = *applied_rx.borrow_and_update();
        last_cut = tokio::time::Instant::now();
        if let Some(batch_id) = cut(&client, &cut_batch, applied, pace.max_unapplied).await? {
            tracing::debug!(
                batch_id,
                took_us = last_cut.elapsed().as_micros() as u64,
                "cut batch"
            );
            cut_tx.send_replace(batch_id);
            wait = pace.tick;
            last_found = tokio::time::Instant::now();
        } else if last_found.elapsed() >= IDLE_AFTER {
            wait = (wait * 2).min(pace.idle_tick.max(pace.tick));
        }
    }
}

/// Whether a batch and its predecessor are still kept, the batch's cut
/// (see [`cut_sql`]), and the initial copies it carries (see
/// [`Shipper::send`]).
pub const COPY_JOBS: &str = concat!(
    "
    with kept as (select count(*) = 2 as ok,
                         max(",
    cut_sql!(),
    ") filter (where batch_id = $1::bigint) as cut
                  from pgferry.batch
                  where batch_id in ($1::bigint - 1, $1::bigint))
    select kept.ok, kept.cut, t.table_id, t.source_schema || '.' || t.source_name,
           format('copy (select %s from %s where coalesce((%s), false)) to stdout',
                  coalesce((select string_agg(quote_ident(c), ', ' order by n)
                            from unnest(t.columns) with ordinality u(c, n)),
                           (select string_agg(quote_ident(a.attname), ', ' order by a.attnum)
                            from pg_attribute a
                            where a.attrelid = t.relid and a.attnum > 0
                              and not a.attisdropped and a.attgenerated = '')),
                  t.relid::regclass, coalesce(t.row_filter, 'true'))
    from kept
    left join pgferry.tables t
      on t.copy_batch = $1 and t.state = 'copying' and not t.removed
    order by t.table_id"
);

/// Changes of a batch, by `pgferry.batch_changes` (see its comment).
pub const READ_BATCH: &str = "
    select seq, table_id, op::text, old_key::text, new_row::text, statement_rows
    from pgferry.batch_changes($1::bigint)";

/// How much one message on the wire may carry.
#[derive(Debug, Clone, Copy)]
pub struct ChunkLimits {
    /// Rows per message (a statement's array counts each of its rows; one
    /// larger than this still goes alone).
    pub rows: u32,
    /// Bytes of row data per message (a single larger row still goes alone).
    pub bytes: usize,
}

/// Everything a session needs to ship batches: its own database sessions,
/// the tables the target was told about, and the outbound stream.
pub struct Shipper {
    /// Reads batches and records copy progress.
    pub reader: Client,
    /// [`READ_BATCH`], prepared on `reader`.
    pub read_batch: Statement,
    /// [`COPY_JOBS`], prepared on `reader`.
    pub copy_jobs: Statement,
    /// Whether a table announced on this stream had not finished its copy
    /// when the stream began; only then may a batch carry a copy for it.
    pub copies_possible: bool,
    /// Whether any sequence is replicated (their values go with each batch).
    pub has_sequences: bool,
    /// Reads initial copies, each in its own REPEATABLE READ transaction.
    pub copier: Client,
    /// Message size limits.
    pub limits: ChunkLimits,
    /// Table ids announced in this stream's hello.
    pub known_tables: HashSet<u32>,
    /// Sequence values sent on this stream, so unchanged ones are not resent.
    pub sequences_sent: HashMap<u32, i64>,
    /// The stream to the target.
    pub out: mpsc::Sender<wire::SourceMessage>,
}

/// A table whose initial copy goes with a batch.
struct CopyJob {
    table_id: i32,
    /// schema.table, for logs and errors.
    name: String,
    /// The COPY ... TO STDOUT statement.
    statement: String,
}

/// How often copy progress is logged and recorded for `status`.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

impl Shipper {
    /// Sends batch `batch_id`: the initial copies it carries, then its
    /// changes in chunks, then the sequence values; the last chunk is
    /// marked. Memory stays at about one chunk: reads go through a portal
    /// or COPY, and the outbound channel is bounded.
    pub async fn send(&mut self, batch_id: u64) -> Result<SendOutcome> {
        if !self.copies_possible {
            // No copy can come before the changes: ask for both at once
            // (tokio-postgres pipelines requests polled together).
            let (checked, rows) = tokio::join!(
                self.copy_jobs(batch_id),
                self.reader.query_raw(&self.read_batch, [batch_id as i64])
            );
            let (cut, jobs) = checked?;
            let cut = cut.ok_or_else(|| not_kept(batch_id))?;
            if !jobs.is_empty() {
                // A table added after this stream began: announce it first.
                return Ok(SendOutcome::TablesChanged);
            }
            let rows = rows.map_err(Error::db("reading a batch"))?;
            return self.send_changes(batch_id, cut, rows).await;
        }
        let (cut, jobs) = self.copy_jobs(batch_id).await?;
        let cut = cut.ok_or_else(|| not_kept(batch_id))?;
        for job in jobs {
            if !self.known_tables.contains(&(job.table_id as u32)) {
                return Ok(SendOutcome::TablesChanged);
            }
            if !self.copy(batch_id, &job).await? {
                return Ok(SendOutcome::PeerGone);
            }
        }
        let rows = self
            .reader
            .query_raw(&self.read_batch, [batch_id as i64])
            .await
            .map_err(Error::db("reading a batch"))?;
        self.send_changes(batch_id, cut, rows).await
    }

    /// The cut of batch `batch_id` (see [`cut_sql`]) if it and its predecessor
    /// are still kept (a batch without its cuts would read as empty), and
    /// the initial copies it carries: one round trip, since it runs before
    /// every batch.
    async fn copy_jobs(&self, batch_id: u64) -> Result<(Option<String>, Vec<CopyJob>)> {
        let rows = self
            .reader
            .query(&self.copy_jobs, &[&(batch_id as i64)])
            .await
            .map_err(Error::db("listing initial copies"))?;
        let cut = rows
            .first()
            .filter(|row| row.get(0))
            .and_then(|row| row.get(1));
        let jobs = rows
            .into_iter()
            .filter_map(|row| {
                Some(CopyJob {
                    table_id: row.get::<_, Option<i32>>(2)?,
                    name: row.get(3),
                    statement: row.get(4),
                })
            })
            .collect();
        Ok((cut, jobs))
    }

    /// Streams one table's initial copy. Its snapshot is taken now, after
    /// the batch was cut, and recorded before anything is sent: changes of
    /// transactions it sees are in the copy and are not shipped again. A
    /// resend (the target never committed the batch) takes a new one.
    async fn copy(&mut self, batch_id: u64, job: &CopyJob) -> Result<bool> {
        let out = self.out.clone();
        let tx = self
            .copier
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(Error::db("starting a copy"))?;
        // Unambiguous text forms, whatever the server's defaults.
        tx.batch_execute(
            "set local datestyle = 'ISO, MDY'; set local intervalstyle = 'postgres';
             set local extra_float_digits = 1; set local bytea_output = 'hex';",
        )
        .await
        .map_err(Error::db("starting a copy"))?;
        let snapshot: String = tx
            .query_one("select pg_current_snapshot()::text", &[])
            .await
            .map_err(Error::db("starting a copy"))?
            .get(0);
        let estimate = self
            .reader
            .query_one(
                "update pgferry.tables t
                    set copy_snapshot = $2::text::pg_snapshot, copy_rows = 0, copy_bytes = 0,
                        copy_rows_estimate = greatest(c.reltuples, 0)::bigint,
                        copy_bytes_estimate = pg_table_size(c.oid), copy_started_at = now()
                   from pg_class c
                  where t.table_id = $1 and c.oid = t.relid
                 returning t.copy_rows_estimate, t.copy_bytes_estimate",
                &[&job.table_id, &snapshot],
            )
            .await
            .map_err(Error::db("recording the copy snapshot"))?;
        let (rows_estimate, bytes_estimate): (i64, i64) = (estimate.get(0), estimate.get(1));
        tracing::info!(table = %job.name, batch_id, rows_estimate, bytes_estimate, "initial copy started");
        let table_id = job.table_id as u32;
        if !send_copy(&out, batch_id, table_id, true, Vec::new(), false).await {
            return Ok(false);
        }
        let stream = tx
            .copy_out(job.statement.as_str())
            .await
            .map_err(Error::db("reading the initial copy"))?;
        futures::pin_mut!(stream);
        let (mut rows, mut bytes) = (0i64, 0i64);
        let mut buffer: Vec<u8> = Vec::with_capacity(self.limits.bytes);
        // Report after the first row too, so `status` shows the copy at once.
        let mut reported = tokio::time::Instant::now() - PROGRESS_EVERY;
        loop {
            let data = stream
                .try_next()
                .await
                .map_err(Error::db("reading the initial copy"))?;
            let done = data.is_none();
            if let Some(data) = data {
                // The server sends one COPY message per row.
                rows += 1;
                bytes += data.len() as i64;
                buffer.extend_from_slice(&data);
            }
            if buffer.len() >= self.limits.bytes || (done && !buffer.is_empty()) {
                let chunk = std::mem::replace(&mut buffer, Vec::with_capacity(self.limits.bytes));
                if !send_copy(&out, batch_id, table_id, false, chunk, false).await {
                    return Ok(false);
                }
            }
            if done || reported.elapsed() >= PROGRESS_EVERY {
                reported = tokio::time::Instant::now();
                self.reader
                    .execute(
                        "update pgferry.tables set copy_rows = $2, copy_bytes = $3 where table_id = $1",
                        &[&job.table_id, &rows, &bytes],
                    )
                    .await
                    .map_err(Error::db("recording copy progress"))?;
                tracing::info!(table = %job.name, batch_id, rows, bytes, rows_estimate, bytes_estimate, "initial copy progress");
            }
            if done {
                break;
            }
        }
        tx.commit().await.map_err(Error::db("finishing a copy"))?;
        Ok(send_copy(&out, batch_id, table_id, false, Vec::new(), true).await)
    }
}

/// Sends one piece of a table's initial copy; false when the stream is gone.
async fn send_copy(
    out: &mpsc::Sender<wire::SourceMessage>,
    batch_id: u64,
    table_id: u32,
    begin: bool,
    data: Vec<u8>,
    end: bool,
) -> bool {
    let chunk = wire::BatchChunk {
        batch_id,
        copy: Some(wire::CopyData {
            table_id,
            begin,
            data,
            end,
        }),
        ..Default::default()
    };
    send_chunk(out, chunk).await
}

impl Shipper {
    /// Streams the batch's changes as one statement: rows arrive only as
    /// fast as chunks leave (the connection stops reading while we do not
    /// poll), so memory stays at about a chunk, and a small batch costs one
    /// round trip. A single statement reads one snapshot; no transaction.
    async fn send_changes(
        &mut self,
        batch_id: u64,
        cut: String,
        rows: RowStream,
    ) -> Result<SendOutcome> {
        let limits = self.limits;
        let out = self.out.clone();
        futures::pin_mut!(rows);
        let mut changes = Vec::new();
        let mut bytes = 0usize;
        let mut rows_in_chunk = 0u64;
        let mut rows_sent = 0u64;
        while let Some(row) = rows
            .try_next()
            .await
            .map_err(Error::db("reading a batch"))?
        {
            let change = to_change(&row)?;
            if !self.known_tables.contains(&change.table_id) {
                return Ok(SendOutcome::TablesChanged);
            }
            let change_rows = u64::from(change.rows());
            let change = wire::Change::from(change);
            let size = change.old_key.as_ref().map_or(0, String::len)
                + change.new_row.as_ref().map_or(0, String::len);
            // Keep messages under the byte budget too: wide rows would
            // otherwise make a chunk of `rows` changes too large to send.
            let full =
                rows_in_chunk + change_rows > u64::from(limits.rows) || bytes + size > limits.bytes;
            if full && !changes.is_empty() {
                rows_sent += rows_in_chunk;
                let chunk = wire::BatchChunk {
                    batch_id,
                    changes: std::mem::take(&mut changes),
                    ..Default::default()
                };
                if !send_chunk(&out, chunk).await {
                    return Ok(SendOutcome::PeerGone);
                }
                bytes = 0;
                rows_in_chunk = 0;
            }
            bytes += size;
            rows_in_chunk += change_rows;
            changes.push(change);
        }
        rows_sent += rows_in_chunk;
        let sequences = if self.has_sequences {
            sequence_values(&self.reader, &mut self.sequences_sent).await?
        } else {
            Vec::new()
        };
        let chunk = wire::BatchChunk {
            batch_id,
            changes,
            last: true,
            sequences,
            cut,
            ..Default::default()
        };
        if !send_chunk(&out, chunk).await {
            return Ok(SendOutcome::PeerGone);
        }
        tracing::debug!(batch_id, changes = rows_sent, "sent batch");
        Ok(SendOutcome::Sent { changes: rows_sent })
    }
}

fn not_kept(batch_id: u64) -> Error {
    Error::Protocol(format!(
        "batch {batch_id} or its predecessor is no longer kept on the source"
    ))
}

/// Sends one chunk; false when the stream is gone.
async fn send_chunk(out: &mpsc::Sender<wire::SourceMessage>, chunk: wire::BatchChunk) -> bool {
    let message = wire::SourceMessage {
        kind: Some(wire::source_message::Kind::Chunk(chunk)),
    };
    out.send(message).await.is_ok()
}

/// Current values of the replicated sequences that changed since last sent.
/// Read at send time, so each is at least its value when the batch was cut.
async fn sequence_values(
    client: &Client,
    sent: &mut HashMap<u32, i64>,
) -> Result<Vec<wire::SequenceValue>> {
    let rows = client
        .query(
            "select s.seq_id, pg_sequence_last_value(c.oid)
             from pgferry.sequences s join pg_class c on c.oid = s.relid",
            &[],
        )
        .await
        .map_err(Error::db("reading sequences"))?;
    let mut values = Vec::new();
    for row in rows {
        let seq_id = row.get::<_, i32>(0) as u32;
        let Some(last_value) = row.get::<_, Option<i64>>(1) else {
            continue;
        };
        if sent.insert(seq_id, last_value) != Some(last_value) {
            values.push(wire::SequenceValue { seq_id, last_value });
        }
    }
    Ok(values)
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
    let statement_rows = row.get::<_, Option<i32>>(5).unwrap_or(0) as u32;
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
        statement_rows,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACE: Pace = Pace {
        tick: Duration::from_millis(1),
        idle_tick: Duration::from_millis(10),
        max_coalesce: Duration::from_millis(10),
        max_backoff: Duration::from_secs(5),
        max_unapplied: 2,
    };

    #[test]
    fn a_quiet_source_is_cut_every_tick() {
        assert_eq!(PACE.interval(0), PACE.tick);
        assert_eq!(PACE.interval(1), PACE.tick);
    }

    #[test]
    fn a_busy_source_gathers_changes_up_to_the_limit() {
        assert_eq!(PACE.interval(4), Duration::from_millis(2));
        assert_eq!(PACE.interval(20), PACE.max_coalesce);
        assert_eq!(PACE.interval(1_000_000), PACE.max_coalesce);
    }
}
