//! `source-agent rejoin` (docs/reference.md, "Failover"): a target was
//! promoted while this database was lost (`target-agent promote`), and this
//! database comes back as that target's target. The target agent there says
//! which of our batches it applied last (an inquiry: it admits nothing);
//! this database's tables for it are fenced, the batches after that one are
//! cut to the fence, their transactions (what this database committed and
//! the new source never got) are written to a file for the operator, and
//! the tables' capture and registrations for that target go, as after a
//! switchover. `repair` from the new source then makes this database exact.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use pgferry_proto::PROTOCOL_VERSION;
use pgferry_proto::wire::{self, replication_client::ReplicationClient};
use tokio_postgres::Client;

use crate::channel::Dial;
use crate::error::{Error, Result};

/// How long the inquiry may take.
const INQUIRY_TIMEOUT: Duration = Duration::from_secs(30);

/// What `rejoin` was asked.
#[derive(Debug, Clone)]
pub struct Options {
    /// The promoted target (`--target`).
    pub target: String,
    /// This source's id there (`--source-id`).
    pub source_id: String,
    /// Where the transactions it lacks go (`--lost-file`).
    pub lost_file: PathBuf,
}

/// A rejoin done.
#[derive(Debug)]
pub struct Rejoined {
    /// The target's epoch for this source (the promotion's).
    pub epoch: u64,
    /// The last batch of ours it applied.
    pub applied: u64,
    /// Transactions written to the file.
    pub transactions: usize,
    /// Their changes.
    pub changes: usize,
}

/// Rejoins as the promoted target `options.target`'s target; refuses,
/// changing nothing, when that target was not promoted or applied a batch
/// this database does not have.
pub async fn run(client: &mut Client, options: &Options) -> Result<Rejoined> {
    crate::capture::ensure_installed(client).await?;
    let refuse = |reason: String| Error::RejoinRefused {
        target: options.target.clone(),
        reason,
    };
    let recorded = crate::targets::list(&*client)
        .await?
        .into_iter()
        .find(|t| t.name == options.target)
        .ok_or_else(|| Error::UnknownTarget(options.target.clone()))?;
    let dial = recorded
        .target
        .ok_or_else(|| refuse("it has no recorded address".into()))?;
    let epoch = crate::switchover::epoch(client).await?;
    let ready = inquire(&dial, &options.source_id, epoch).await?;
    if ready.epoch <= epoch {
        return Err(refuse(format!(
            "it was not promoted: it records epoch {} for source {}, this database's epoch",
            ready.epoch, options.source_id
        )));
    }
    let applied = ready.last_applied_batch;
    let cut = crate::cut::cut_of(client, recorded.id, applied).await?;
    if cut.is_empty() || (!ready.last_applied_cut.is_empty() && cut != ready.last_applied_cut) {
        return Err(refuse(format!(
            "it applied batch {applied} ({}), which this database does not have as such ({})",
            ready.last_applied_cut,
            if cut.is_empty() { "none kept" } else { &cut }
        )));
    }
    let final_batch = fence_and_cut(client, recorded.id, ready.epoch, applied).await?;
    let (transactions, changes) =
        write_lost(client, recorded.id, applied, &options.lost_file).await?;
    client
        .batch_execute(&format!(
            "select pgferry.switched_over({}); select pgferry.trim_queue(null);",
            recorded.id
        ))
        .await
        .map_err(Error::db("rejoin: ending the tables' capture"))?;
    tracing::info!(target = %options.target, applied, final_batch, transactions, "rejoined");
    Ok(Rejoined {
        epoch: ready.epoch,
        applied,
        transactions,
        changes,
    })
}

/// Asks the target agent at `dial` where it stands for `source_id`.
async fn inquire(dial: &Dial, source_id: &str, epoch: u64) -> Result<wire::Ready> {
    let channel = crate::channel::endpoint(dial)?.connect().await?;
    let mut client = ReplicationClient::new(channel);
    let hello = wire::SourceMessage {
        kind: Some(wire::source_message::Kind::Hello(wire::Hello {
            protocol_version: PROTOCOL_VERSION,
            source_id: source_id.to_owned(),
            epoch,
            inquiry: true,
            ..Default::default()
        })),
    };
    let mut request = tonic::Request::new(tokio_stream::iter([hello]));
    crate::channel::authorize(&mut request, dial.token()?.as_deref())?;
    let answer = async {
        let mut inbound = client
            .replicate(request)
            .await
            .map_err(Error::Target)?
            .into_inner();
        match inbound.message().await.map_err(Error::Target)? {
            Some(wire::TargetMessage {
                kind: Some(wire::target_message::Kind::Ready(ready)),
            }) => Ok(ready),
            other => Err(Error::Protocol(format!("expected ready, got {other:?}"))),
        }
    };
    tokio::time::timeout(INQUIRY_TIMEOUT, answer)
        .await
        .map_err(|_| Error::Protocol("the target agent did not answer the inquiry".into()))?
}

/// Fences the target's tables (unless a switchover's fence stands) and
/// cuts its batches up to the fence; returns the final one.
async fn fence_and_cut(
    client: &mut Client,
    target_id: i32,
    epoch: u64,
    applied: u64,
) -> Result<u64> {
    let fenced: bool = client
        .query_one(
            "select exists (select from pgferry.switchovers where target_id = $1)",
            &[&target_id],
        )
        .await
        .map_err(Error::db("rejoin: reading the fence"))?
        .get(0);
    if !fenced {
        let files: Vec<Option<String>> = vec![None; 4];
        client
            .execute(
                "select pgferry.fence($1, $2, '', $3)",
                &[&target_id, &(epoch as i64), &files],
            )
            .await
            .map_err(Error::db("rejoin: fencing the tables"))?;
    }
    loop {
        let row = client
            .query_one(
                "select final_batch from pgferry.switchovers where target_id = $1",
                &[&target_id],
            )
            .await
            .map_err(Error::db("rejoin: reading the fence"))?;
        if let Some(batch) = row.get::<_, Option<i64>>(0) {
            return Ok(batch as u64);
        }
        client
            .execute(
                "select from pgferry.cut_batches(array[$1::int], array[$2::bigint], 1000000000)",
                &[&target_id, &(applied as i64)],
            )
            .await
            .map_err(Error::db("rejoin: cutting to the fence"))?;
    }
}

/// Writes the changes of the target's batches after `applied`, a JSON
/// object per transaction and line, in commit order, to `path`; returns
/// how many transactions and changes.
async fn write_lost(
    client: &Client,
    target_id: i32,
    applied: u64,
    path: &std::path::Path,
) -> Result<(usize, usize)> {
    let rows = client
        .query(
            "select batch_id, txid::text, committed_at::text, source, op::text, old_key::text,
                    new_row::text, statement_rows
             from pgferry.lost_changes($1, $2)",
            &[&target_id, &(applied as i64)],
        )
        .await
        .map_err(Error::db("rejoin: reading the lost transactions"))?;
    // Gathered per batch, then per transaction in commit order (or by
    // their first change where commit times are not tracked).
    let mut transactions: Vec<Lost> = Vec::new();
    let mut changes = 0;
    for row in rows {
        let (batch, txid): (i64, String) = (row.get(0), row.get(1));
        let at = transactions
            .iter()
            .rposition(|t| t.batch == batch && t.txid == txid)
            .unwrap_or_else(|| {
                transactions.push(Lost {
                    batch,
                    txid,
                    committed_at: row.get(2),
                    changes: Vec::new(),
                });
                transactions.len() - 1
            });
        let op = row.get::<_, String>(4);
        let kind = match op.as_str() {
            "I" => "insert",
            "U" => "update",
            "D" => "delete",
            "T" => "truncate",
            _ => "schema",
        };
        let parse = |text: Option<String>| -> serde_json::Value {
            text.and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or(serde_json::Value::Null)
        };
        let (old_key, new_row) = (parse(row.get(5)), parse(row.get(6)));
        let many = row.get::<_, Option<i32>>(7).is_some();
        let table: String = row.get(3);
        let each = |value: serde_json::Value| -> Vec<serde_json::Value> {
            match value {
                serde_json::Value::Array(rows) if many => rows,
                other => vec![other],
            }
        };
        let expanded: Vec<serde_json::Value> = match kind {
            "delete" => each(old_key)
                .into_iter()
                .map(|key| serde_json::json!({"table": table, "op": kind, "key": key}))
                .collect(),
            "insert" | "update" if old_key.is_null() => each(new_row)
                .into_iter()
                .map(|row| serde_json::json!({"table": table, "op": kind, "row": row}))
                .collect(),
            _ => vec![
                serde_json::json!({"table": table, "op": kind, "key": old_key, "row": new_row}),
            ],
        };
        changes += expanded.len();
        transactions[at].changes.extend(expanded);
    }
    transactions.sort_by(|a, b| {
        (a.batch, a.committed_at.is_none(), &a.committed_at).cmp(&(
            b.batch,
            b.committed_at.is_none(),
            &b.committed_at,
        ))
    });
    let io = |source| Error::Io {
        context: "writing the lost transactions",
        source,
    };
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    for lost in &transactions {
        let line = serde_json::json!({
            "batch": lost.batch,
            "txid": lost.txid,
            "committed_at": lost.committed_at,
            "changes": lost.changes,
        });
        writeln!(file, "{line}").map_err(io)?;
    }
    let file = file.into_inner().map_err(|err| io(err.into_error()))?;
    file.sync_all().map_err(io)?;
    Ok((transactions.len(), changes))
}

/// One lost transaction.
struct Lost {
    batch: i64,
    txid: String,
    committed_at: Option<String>,
    changes: Vec<serde_json::Value>,
}
