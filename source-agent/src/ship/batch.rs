//! Shipping a batch: its header (is it still kept, its cut, the copies it
//! carries), its changes read in seq order and sent in bounded chunks, and
//! the replicated sequences' values; the initial copies and repairs it
//! carries (`copy`).

use std::collections::HashMap;

use futures::TryStreamExt;

use pgferry_proto::change::{Change, ChangeKind};
use pgferry_proto::wire;
use tokio::sync::mpsc;
use tokio_postgres::{Client, RowStream, Statement};

use super::copy::{CopyJob, copy_data, send_copy};
use crate::cut::cut_sql;
use crate::error::{Error, Result};
use crate::ids::TableId;
use crate::switchover;
use crate::verify::Checks;

/// Whether a batch and its predecessor are still kept, the batch's cut
/// (see `cut::cut_sql`), the initial copies it carries (see
/// [`Shipper::send`]), its checks and repairs (see `verify::Checks`) and
/// the switchover it closes, if it is one's final batch.
pub const COPY_JOBS: &str = concat!(
    "
    with kept as (select count(*) = 2 as ok,
                         max(",
    cut_sql!(),
    ") filter (where batch_id = $1::bigint) as cut,
                         max(checks::text) filter (where batch_id = $1::bigint) as checks
                  from pgferry.batch
                  where target_id = $2 and batch_id in ($1::bigint - 1, $1::bigint)),
         fence as (select epoch, reverse_address,
                          array[tls_ca, tls_cert, tls_key, auth_token_file] as files
                   from pgferry.switchovers
                   where target_id = $2 and final_batch = $1::bigint)
    select kept.ok, kept.cut, t.table_id, t.source_schema || '.' || t.source_name, kept.checks,
           fence.epoch, fence.reverse_address, fence.files
    from kept
    left join fence on true
    left join pgferry.tables t
      on t.target_id = $2 and t.copy_batch = $1 and t.state = 'copying' and not t.removed
    order by t.table_id"
);

/// Changes of a batch, by `pgferry.batch_changes` (see its comment).
pub const READ_BATCH: &str = "
    select seq, table_id, op::text, old_key::text, new_row::text, statement_rows
    from pgferry.batch_changes($1::bigint::int, $2::bigint)";

/// The current value of each sequence replicated to target $1.
pub const READ_SEQUENCES: &str = "
    select s.seq_id, pg_sequence_last_value(c.oid)
    from pgferry.sequences s join pg_class c on c.oid = s.relid
    where s.target_id = $1";

/// How much one message on the wire may carry.
#[derive(Debug, Clone, Copy)]
pub struct ChunkLimits {
    /// Rows per message (a statement's array counts each of its rows; one
    /// larger than this still goes alone).
    pub rows: u32,
    /// Bytes of row data per message (a larger row goes in pieces).
    pub bytes: usize,
    /// The longest row a change may carry (`--max-row-bytes`).
    pub row_bytes: usize,
}

/// An announced table, as a change's error names it.
#[derive(Debug, Clone)]
pub struct KnownTable {
    /// schema.table on the source.
    pub name: String,
    /// Its key columns.
    pub key_columns: Vec<String>,
}

/// Everything a session needs to ship batches: its own database sessions,
/// the tables the target was told about, and the outbound stream.
pub struct Shipper {
    /// The target's id.
    pub target_id: i32,
    /// Reads batches and records copy progress.
    pub reader: Client,
    /// [`READ_BATCH`], prepared on `reader`.
    pub read_batch: Statement,
    /// [`COPY_JOBS`], prepared on `reader`.
    pub copy_jobs: Statement,
    /// Whether a table announced on this stream had not finished its copy
    /// when the stream began; only then may a batch carry a copy for it.
    pub copies_possible: bool,
    /// [`READ_SEQUENCES`], prepared on `reader` when any sequence is
    /// replicated (their values go with each batch).
    pub read_sequences: Option<Statement>,
    /// Reads initial copies, each in its own REPEATABLE READ transaction.
    pub copier: Client,
    /// Message size limits.
    pub limits: ChunkLimits,
    /// Table ids announced in this stream's hello.
    pub known_tables: HashMap<TableId, KnownTable>,
    /// Sequence values sent on this stream, so unchanged ones are not resent.
    pub sequences_sent: HashMap<u32, i64>,
    /// The stream to the target.
    pub out: mpsc::Sender<wire::SourceMessage>,
    /// This source's epoch, which each batch's closing chunk carries.
    pub epoch: u64,
}

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
                self.reader
                    .query_raw(&self.read_batch, self.batch_params(batch_id))
            );
            let header = checked?;
            if !header.jobs.is_empty() {
                // A table added after this stream began: announce it first.
                return Ok(SendOutcome::TablesChanged);
            }
            let rows = rows.map_err(Error::db("reading a batch"))?;
            return self.send_changes(batch_id, header, rows).await;
        }
        let mut header = self.copy_jobs(batch_id).await?;
        let jobs = std::mem::take(&mut header.jobs);
        for job in jobs {
            if !self.known_tables.contains_key(&job.table_id) {
                return Ok(SendOutcome::TablesChanged);
            }
            if !self.copy(batch_id, &job).await? {
                return Ok(SendOutcome::PeerGone);
            }
        }
        let rows = self
            .reader
            .query_raw(&self.read_batch, self.batch_params(batch_id))
            .await
            .map_err(Error::db("reading a batch"))?;
        self.send_changes(batch_id, header, rows).await
    }

    /// [`READ_BATCH`]'s parameters.
    fn batch_params(&self, batch_id: u64) -> [i64; 2] {
        [i64::from(self.target_id), batch_id as i64]
    }

    /// The header of batch `batch_id`: one round trip, since it runs
    /// before every batch.
    async fn copy_jobs(&self, batch_id: u64) -> Result<Header> {
        let rows = self
            .reader
            .query(&self.copy_jobs, &[&(batch_id as i64), &self.target_id])
            .await
            .map_err(Error::db("listing initial copies"))?;
        let cut = rows
            .first()
            .filter(|row| row.get(0))
            .and_then(|row| row.get(1))
            .ok_or_else(|| not_kept(batch_id))?;
        let fence = rows.first().and_then(|row| {
            Some(switchover::Fence {
                epoch: row.get::<_, Option<i64>>(5)? as u64,
                reverse_address: row.get(6),
                files: row.get(7),
            })
        });
        let checks = match rows.first().and_then(|row| row.get::<_, Option<&str>>(4)) {
            Some(text) => serde_json::from_str(text).map_err(|err| {
                Error::Protocol(format!("batch {batch_id}: unreadable checks: {err}"))
            })?,
            None => Checks::default(),
        };
        let jobs = rows
            .into_iter()
            .filter_map(|row| {
                Some(CopyJob {
                    table_id: TableId::from_sql(row.get::<_, Option<i32>>(2)?),
                    name: row.get(3),
                })
            })
            .collect();
        Ok(Header {
            cut,
            jobs,
            checks,
            fence,
        })
    }
}

/// What [`COPY_JOBS`] tells of a batch.
struct Header {
    /// Its cut (see `cut::cut_sql`); it and its predecessor are still
    /// kept (a batch without its cuts would read as empty).
    cut: String,
    /// The initial copies it carries.
    jobs: Vec<CopyJob>,
    /// Its checks and repairs.
    checks: Checks,
    /// The switchover whose final batch it is.
    fence: Option<switchover::Fence>,
}

impl Shipper {
    /// Streams the batch's changes as one statement: rows arrive only as
    /// fast as chunks leave (the connection stops reading while we do not
    /// poll), so memory stays at about a chunk, and a small batch costs one
    /// round trip. A single statement reads one snapshot; no transaction.
    async fn send_changes(
        &mut self,
        batch_id: u64,
        Header {
            cut, checks, fence, ..
        }: Header,
        rows: RowStream,
    ) -> Result<SendOutcome> {
        let limits = self.limits;
        let out = self.out.clone();
        futures::pin_mut!(rows);
        let mut gathered = Gathered::default();
        let mut rows_sent = 0u64;
        while let Some(row) = rows
            .try_next()
            .await
            .map_err(Error::db("reading a batch"))?
        {
            let table_id = TableId::from_wire(row.get::<_, i32>(1) as u32);
            let Some(table) = self.known_tables.get(&table_id) else {
                return Ok(SendOutcome::TablesChanged);
            };
            let old_key: Option<&str> = row.get(3);
            let new_row: Option<&str> = row.get(4);
            let size = old_key.map_or(0, str::len) + new_row.map_or(0, str::len);
            if size > limits.row_bytes {
                let seq = row.get::<_, i64>(0) as u64;
                let statement_rows = row.get::<_, Option<i32>>(5).unwrap_or(0) as u32;
                return Err(Error::RowTooLarge {
                    table: table.name.clone(),
                    key: key_of(seq, statement_rows, old_key.or(new_row), &table.key_columns),
                    size,
                    limit: limits.row_bytes,
                });
            }
            if let Some(new_row) = new_row.filter(|_| size > limits.bytes) {
                // Alone, in pieces of a message each, copied out of the row
                // as read: the row is held once.
                if !gathered.flush(&out, batch_id, &mut rows_sent).await {
                    return Ok(SendOutcome::PeerGone);
                }
                let head = to_change(&row, Some(String::new()))?;
                rows_sent += u64::from(head.rows());
                let head = wire::Change {
                    new_row: None,
                    ..wire::Change::from(head)
                };
                for piece in pgferry_proto::change::pieces(head, new_row, limits.bytes) {
                    gathered.changes.push(piece);
                    if !gathered.flush(&out, batch_id, &mut 0).await {
                        return Ok(SendOutcome::PeerGone);
                    }
                }
                continue;
            }
            let change = to_change(&row, new_row.map(str::to_owned))?;
            let change_rows = u64::from(change.rows());
            // Keep messages under the byte budget too: wide rows would
            // otherwise make a chunk of `rows` changes too large to send.
            let full = gathered.rows + change_rows > u64::from(limits.rows)
                || gathered.bytes + size > limits.bytes;
            if full && !gathered.flush(&out, batch_id, &mut rows_sent).await {
                return Ok(SendOutcome::PeerGone);
            }
            gathered.bytes += size;
            gathered.rows += change_rows;
            gathered.changes.push(wire::Change::from(change));
        }
        if checks.repairs {
            if !gathered.flush(&out, batch_id, &mut rows_sent).await {
                return Ok(SendOutcome::PeerGone);
            }
            if !self.send_repairs(batch_id).await? {
                return Ok(SendOutcome::PeerGone);
            }
        }
        rows_sent += gathered.rows;
        let sequences = match &self.read_sequences {
            Some(read) => {
                let rows = self
                    .reader
                    .query(read, &[&self.target_id])
                    .await
                    .map_err(Error::db("reading sequences"))?;
                changed_sequences(rows, &mut self.sequences_sent)
            }
            None => Vec::new(),
        };
        let switchover = match fence {
            Some(fence) => Some(Box::new(fence.message(&self.reader, self.target_id).await?)),
            None => None,
        };
        let chunk = wire::BatchChunk {
            batch_id,
            changes: gathered.changes,
            last: true,
            switchover,
            epoch: self.epoch,
            sequences,
            cut,
            checks: checks
                .checks
                .into_iter()
                .map(|c| wire::Check {
                    table_id: c.table_id as u32,
                    after: c.after,
                    upto: c.upto,
                    each_row: c.each_row,
                })
                .collect(),
            ..Default::default()
        };
        if !send_chunk(&out, chunk).await {
            return Ok(SendOutcome::PeerGone);
        }
        tracing::debug!(batch_id, changes = rows_sent, "sent batch");
        Ok(SendOutcome::Sent { changes: rows_sent })
    }
}

impl Shipper {
    /// Sends the repairs of batch `batch_id`, after its changes: each the
    /// keys it deletes and the source's rows of those keys, read in the
    /// batch's snapshot, in pieces of a message. False when the stream is
    /// gone.
    async fn send_repairs(&mut self, batch_id: u64) -> Result<bool> {
        let rows = self
            .reader
            .query(
                "select table_id, keys, rows from pgferry.repair_rows
                 where target_id = $1 and batch_id = $2 order by table_id",
                &[&self.target_id, &(batch_id as i64)],
            )
            .await
            .map_err(Error::db("reading a batch's repairs"))?;
        for row in rows {
            let table_id = row.get::<_, i32>(0) as u32;
            let keys: String = row.get(1);
            let data: Vec<u8> = row.get(2);
            let begin = wire::CopyData {
                begin: true,
                repair_keys: Some(keys),
                ..copy_data(table_id, Vec::new())
            };
            if !send_copy(&self.out, batch_id, begin).await {
                return Ok(false);
            }
            for piece in data.chunks(self.limits.bytes.max(1)) {
                if !send_copy(&self.out, batch_id, copy_data(table_id, piece.to_vec())).await {
                    return Ok(false);
                }
            }
            let end = wire::CopyData {
                end: true,
                ..copy_data(table_id, Vec::new())
            };
            if !send_copy(&self.out, batch_id, end).await {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Changes gathered for a batch's next chunk.
#[derive(Default)]
struct Gathered {
    changes: Vec<wire::Change>,
    /// Their row data's bytes.
    bytes: usize,
    /// The rows they hold (a statement's array counts each).
    rows: u64,
}

impl Gathered {
    /// Sends them as a chunk (nothing when none), counting their rows into
    /// `sent`; false when the stream is gone.
    async fn flush(
        &mut self,
        out: &mpsc::Sender<wire::SourceMessage>,
        batch_id: u64,
        sent: &mut u64,
    ) -> bool {
        if self.changes.is_empty() {
            return true;
        }
        *sent += self.rows;
        let chunk = wire::BatchChunk {
            batch_id,
            changes: std::mem::take(&mut self.changes),
            ..Default::default()
        };
        self.bytes = 0;
        self.rows = 0;
        send_chunk(out, chunk).await
    }
}

fn not_kept(batch_id: u64) -> Error {
    Error::Protocol(format!(
        "batch {batch_id} or its predecessor is no longer kept on the source"
    ))
}

/// Sends one chunk; false when the stream is gone.
pub(crate) async fn send_chunk(
    out: &mpsc::Sender<wire::SourceMessage>,
    chunk: wire::BatchChunk,
) -> bool {
    let message = wire::SourceMessage {
        kind: Some(wire::source_message::Kind::Chunk(chunk)),
    };
    out.send(message).await.is_ok()
}

/// The replicated sequences' values that changed since last sent, of
/// [`READ_SEQUENCES`]'s `rows`. Read at send time, so each is at least its
/// value when the batch was cut.
fn changed_sequences(
    rows: Vec<tokio_postgres::Row>,
    sent: &mut HashMap<u32, i64>,
) -> Vec<wire::SequenceValue> {
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
    values
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

/// The key of a change's row (its old key, else its new row), for an error.
fn key_of(seq: u64, statement_rows: u32, text: Option<&str>, key_columns: &[String]) -> String {
    if statement_rows > 0 {
        return format!("(rows of one statement, queue row {seq})");
    }
    text.and_then(|t| pgferry_proto::change::key_of(t, key_columns))
        .unwrap_or_else(|| format!("(queue row {seq})"))
}

/// A batch row as a change, its new row given (read from the row, or left
/// out by a caller that sends it in pieces).
fn to_change(row: &tokio_postgres::Row, new_row: Option<String>) -> Result<Change> {
    let seq = row.get::<_, i64>(0) as u64;
    let table_id = row.get::<_, i32>(1) as u32;
    let op: &str = row.get(2);
    let old_key: Option<String> = row.get(3);
    let statement_rows = row.get::<_, Option<i32>>(5).unwrap_or(0) as u32;
    let kind = ChangeKind::from_queue(op, old_key, new_row)
        .ok_or_else(|| Error::Protocol(format!("queue row {seq} ({op}) lacks its data")))?;
    Ok(Change {
        seq,
        table_id,
        statement_rows,
        kind,
    })
}
