//! Acknowledgements: once the target has committed batch k, the queue rows
//! of every batch up to k go, and so do the cuts before k (cut k stays as the
//! start of batch k+1); tables whose copy is acked start replicating.

use tokio::sync::watch;
use tokio_postgres::{Client, Statement};

use crate::error::{Error, Result};
use crate::metrics;

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
        .prepare("select pgferry.acknowledge($1, $2, $3)")
        .await
        .map_err(Error::db("preparing the acknowledgement"))
}

/// Records that target `target_id` has applied every batch up to `batch_id` and
/// deletes what it no longer needs (`pgferry.acknowledge`, prepared by
/// [`prepare`]), in one transaction: a crash leaves either all of it or
/// none, and doing it again is harmless. A fresh ack (not the progress a
/// reconnecting target reports) also clears the last error.
pub async fn acknowledge(
    client: &Client,
    statement: &Statement,
    target_id: i32,
    batch_id: u64,
    fresh: bool,
) -> Result<i64> {
    let row = client
        .query_one(statement, &[&target_id, &(batch_id as i64), &fresh])
        .await
        .map_err(Error::db("cleaning up acked batches"))?;
    Ok(row.get(0))
}

/// Acknowledges the newest durable batch each time it moves; reports that
/// come while an acknowledgement runs fold into the next one. Ends once the
/// reports end and the last one is acknowledged.
pub async fn acknowledge_durable(
    acker: &Client,
    target: &crate::ids::TargetId,
    mut durable: watch::Receiver<u64>,
) -> Result<()> {
    let statement = prepare(acker).await?;
    // What the target reports applied on connecting is durable there. Its
    // cleanup here (a previous session's last acks may not have come) can
    // take a while: it runs while the first batches go out, not before.
    let reconnected = *durable.borrow_and_update();
    acknowledge(acker, &statement, target.id, reconnected, false).await?;
    while durable.changed().await.is_ok() {
        let batch_id = *durable.borrow_and_update();
        acknowledge(acker, &statement, target.id, batch_id, true).await?;
        metrics::batch_acked(&target.name, batch_id);
    }
    Ok(())
}
