//! Initial copies: a table's rows read in a snapshot of their own and sent
//! with the batch that first carries the table, with progress for `status`.

use std::time::Duration;

use futures::TryStreamExt;
use pgferry_proto::wire;
use tokio::sync::mpsc;
use tokio_postgres::IsolationLevel;

use super::batch::{Shipper, send_chunk};
use crate::error::{Error, Result};
use crate::ids::TableId;

/// A table whose initial copy goes with a batch.
pub(crate) struct CopyJob {
    pub(crate) table_id: TableId,
    /// schema.table, for logs and errors.
    pub(crate) name: String,
}

/// How often copy progress is logged and recorded for `status`.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

impl Shipper {
    /// Streams one table's initial copy. Its snapshot is taken now, after
    /// the batch was cut, and recorded before anything is sent: changes of
    /// transactions it sees are in the copy and are not shipped again. A
    /// resend (the target never committed the batch) takes a new one.
    pub(crate) async fn copy(&mut self, batch_id: u64, job: &CopyJob) -> Result<bool> {
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
                &[&job.table_id.sql(), &snapshot],
            )
            .await
            .map_err(Error::db("recording the copy snapshot"))?;
        let (rows_estimate, bytes_estimate): (i64, i64) = (estimate.get(0), estimate.get(1));
        // The columns copied and their types, read in the copy's own
        // transaction: the table's shape then, which the target brings its
        // table to before the rows (a schema change the copy's snapshot
        // sees is in the copy, not in the stream).
        let shape = tx
            .query_one(
                "select c.names, c.types, c.not_null, c.attnums,
                        format('copy (select %s from %s%s where coalesce((%s), false)) to stdout',
                               (select string_agg(quote_ident(n), ', ' order by o)
                                from unnest(c.names) with ordinality u(n, o)),
                               case when k.relkind = 'p' then '' else 'only ' end,
                               t.relid::regclass, coalesce(t.row_filter, 'true'))
                 from pgferry.tables t
                 join pg_class k on k.oid = t.relid
                 cross join lateral pgferry.replicated_column_lists(t.relid, t.columns) c
                 where t.table_id = $1",
                &[&job.table_id.sql()],
            )
            .await
            .map_err(Error::db("reading the copied columns"))?;
        let statement: String = shape.get(4);
        let columns = crate::ship::catalog::columns(&shape, 0);
        tracing::info!(table = %job.name, batch_id, rows_estimate, bytes_estimate, "initial copy started");
        let table_id = job.table_id.wire();
        if !send_copy(
            &out,
            batch_id,
            wire::CopyData {
                begin: true,
                columns,
                ..copy_data(table_id, Vec::new())
            },
        )
        .await
        {
            return Ok(false);
        }
        let stream = tx
            .copy_out(statement.as_str())
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
                // The server sends one COPY message per row. COPY's text is
                // a stream to the target: a row longer than a message goes
                // in pieces of one (held once, as the server sent it).
                rows += 1;
                bytes += data.len() as i64;
                if data.len() > self.limits.row_bytes {
                    return Err(Error::RowTooLarge {
                        table: job.name.clone(),
                        key: format!("(row {rows} of its initial copy)"),
                        size: data.len(),
                        limit: self.limits.row_bytes,
                    });
                }
                let mut rest = &data[..];
                while buffer.len() + rest.len() >= self.limits.bytes {
                    let (piece, after) = rest.split_at(self.limits.bytes - buffer.len());
                    buffer.extend_from_slice(piece);
                    rest = after;
                    let chunk =
                        std::mem::replace(&mut buffer, Vec::with_capacity(self.limits.bytes));
                    if !send_copy(&out, batch_id, copy_data(table_id, chunk)).await {
                        return Ok(false);
                    }
                }
                buffer.extend_from_slice(rest);
            }
            if done && !buffer.is_empty() {
                let chunk = std::mem::take(&mut buffer);
                if !send_copy(&out, batch_id, copy_data(table_id, chunk)).await {
                    return Ok(false);
                }
            }
            if done || reported.elapsed() >= PROGRESS_EVERY {
                reported = tokio::time::Instant::now();
                self.reader
                    .execute(
                        "update pgferry.tables set copy_rows = $2, copy_bytes = $3 where table_id = $1",
                        &[&job.table_id.sql(), &rows, &bytes],
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
        Ok(send_copy(
            &out,
            batch_id,
            wire::CopyData {
                end: true,
                ..copy_data(table_id, Vec::new())
            },
        )
        .await)
    }
}

/// A piece of a COPY's data for table `table_id`.
pub(crate) fn copy_data(table_id: u32, data: Vec<u8>) -> wire::CopyData {
    wire::CopyData {
        table_id,
        data,
        ..Default::default()
    }
}

/// Sends one piece of a COPY; false when the stream is gone.
pub(crate) async fn send_copy(
    out: &mpsc::Sender<wire::SourceMessage>,
    batch_id: u64,
    copy: wire::CopyData,
) -> bool {
    let chunk = wire::BatchChunk {
        batch_id,
        copy: Some(copy),
        ..Default::default()
    };
    send_chunk(out, chunk).await
}
