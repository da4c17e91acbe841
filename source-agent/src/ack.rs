//! Acknowledgements: once the target has committed batch k, the queue rows
//! of every batch up to k go, and so do the cuts before k (cut k stays as the
//! start of batch k+1); tables whose copy is acked start replicating.

use tokio_postgres::Client;

use crate::error::{Error, Result};

/// Records that the target has applied every batch up to `batch_id` and
/// deletes what it no longer needs (`pgferry.acknowledge`), in one
/// transaction: a crash leaves either all of it or none, and doing it again
/// is harmless. A fresh ack (not the progress a reconnecting target reports)
/// also clears the last error.
pub async fn acknowledge(client: &Client, batch_id: u64, fresh: bool) -> Result<i64> {
    let row = client
        .query_one(
            "select pgferry.acknowledge($1, $2)",
            &[&(batch_id as i64), &fresh],
        )
        .await
        .map_err(Error::db("cleaning up acked batches"))?;
    Ok(row.get(0))
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
