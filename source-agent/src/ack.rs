//! Acknowledgements: once the target has committed batch k, the queue rows
//! of every batch up to k go, and so do the cuts before k (cut k stays as the
//! start of batch k+1); tables whose copy is acked start replicating.

use tokio_postgres::{Client, Statement};

use crate::error::{Error, Result};

/// Sets up the acknowledging session and prepares [`acknowledge`]'s
/// statement on it. Acknowledgements commit asynchronously: one that a
/// crash of the source database takes with it only leaves batches queued
/// that the target has applied (the next stream starts after them, or the
/// target skips them); waiting for the disk put a flush per acknowledgement
/// beside the writers' on the source's WAL.
pub async fn prepare(client: &Client) -> Result<Statement> {
    client
        .batch_execute("set synchronous_commit = off")
        .await
        .map_err(Error::db("setting up the acknowledging session"))?;
    client
        .prepare("select pgferry.acknowledge($1, $2)")
        .await
        .map_err(Error::db("preparing the acknowledgement"))
}

/// Records that the target has applied every batch up to `batch_id` and
/// deletes what it no longer needs (`pgferry.acknowledge`, prepared by
/// [`prepare`]), in one transaction: a crash leaves either all of it or
/// none, and doing it again is harmless. A fresh ack (not the progress a
/// reconnecting target reports) also clears the last error.
pub async fn acknowledge(
    client: &Client,
    statement: &Statement,
    batch_id: u64,
    fresh: bool,
) -> Result<i64> {
    let row = client
        .query_one(statement, &[&(batch_id as i64), &fresh])
        .await
        .map_err(Error::db("cleaning up acked batches"))?;
    Ok(row.get(0))
}
