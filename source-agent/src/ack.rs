//! Acknowledgements: once the target has committed batch k, the queue rows
//! of every batch up to k go, and so do the cuts before k (cut k stays as the
//! start of batch k+1).

use tokio_postgres::Client;

use crate::error::{Error, Result};

/// Records that the target has applied every batch up to `batch_id` and
/// deletes what it no longer needs, in one transaction: a crash leaves either
/// all of it or none, and doing it again is harmless. A fresh ack (not the
/// progress a reconnecting target reports) also clears the last error.
pub async fn acknowledge(client: &mut Client, batch_id: u64, fresh: bool) -> Result<u64> {
    let tx = client
        .transaction()
        .await
        .map_err(Error::db("cleaning up acked batches"))?;
    let id = batch_id as i64;
    let deleted = tx
        .execute(
            "delete from pgferry.queue q
             using pgferry.batch b
             where b.batch_id = $1
               and q.txid < pg_snapshot_xmax(b.snapshot)
               and pg_visible_in_snapshot(q.txid, b.snapshot)",
            &[&id],
        )
        .await
        .map_err(Error::db("cleaning up acked batches"))?;
    let clear = if fresh {
        ", last_error = null, last_error_at = null"
    } else {
        ""
    };
    tx.batch_execute(&format!(
        "delete from pgferry.batch where batch_id < {id};
         update pgferry.target set acked_batch = greatest(acked_batch, {id}), acked_at = now(){clear};
         delete from pgferry.tables t
         where t.removed and not exists (select from pgferry.queue q where q.table_id = t.table_id);"
    ))
    .await
    .map_err(Error::db("cleaning up acked batches"))?;
    tx.commit()
        .await
        .map_err(Error::db("cleaning up acked batches"))?;
    Ok(deleted)
}

/// Records the error that stopped replication, for `status`.
pub async fn record_error(client: &Client, error: &str) -> Result<()> {
    client
        .execute(
            "update pgferry.target set last_error = $1, last_error_at = now()",
            &[&error],
        )
        .await
        .map_err(Error::db("recording the last error"))?;
    Ok(())
}
