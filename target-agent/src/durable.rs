//! Durability reports. The applier commits asynchronously, as native
//! subscriptions do: a batch is visible at once and on disk a moment later.
//! This reports which batches are on disk, and only those may the source
//! delete. A target crash can lose the last few commits, each batch together
//! with its progress record; the source still has them and sends them again.

use std::time::Duration;

use pgferry_proto::wire;
use pgferry_runtime::db;
use tokio::sync::{mpsc, watch};
use tokio_postgres::{Client, Config, Statement};
use tonic::Status;

use crate::error::{Error, Result};
use crate::metrics;

/// How long applied batches gather before one flush makes them all durable:
/// one WAL flush per interval rather than one per batch.
const FLUSH_EVERY: Duration = Duration::from_millis(20);

/// A session of its own that makes the applier's commits durable.
pub struct Flusher {
    client: Client,
    /// Writes the source's row in `pgferry.flushes`.
    mark: Statement,
    source_id: String,
}

impl Flusher {
    /// Connects the flushing session for `source_id`.
    pub async fn connect(config: &Config, source_id: &str) -> Result<Flusher> {
        let client = db::connect(config).await.map_err(Error::Connect)?;
        // A flush must wait for the disk even where asynchronous commit is
        // the default; a stronger default (a synchronous standby) stays.
        client
            .batch_execute(
                "select set_config('synchronous_commit', 'on', false)
                 where current_setting('synchronous_commit') = 'off'",
            )
            .await
            .map_err(Error::db("setting up the flushing session"))?;
        let mark = client
            .prepare(
                "insert into pgferry.flushes values ($1, now())
                 on conflict (source_id) do update set flushed_at = excluded.flushed_at",
            )
            .await
            .map_err(Error::db("setting up the flushing session"))?;
        Ok(Flusher {
            client,
            mark,
            source_id: source_id.to_owned(),
        })
    }

    /// Returns once every commit that returned before the call is on disk:
    /// a synchronous commit flushes the WAL up to its own commit record, and
    /// so every earlier one.
    pub async fn flush(&self) -> Result<()> {
        self.client
            .execute(&self.mark, &[&self.source_id])
            .await
            .map_err(Error::db("making applied batches durable"))?;
        Ok(())
    }
}

/// Follows the last applied batch on `applied` and reports the batches made
/// durable on `out`, until the stream's applier is gone (a last flush then
/// covers what it applied).
pub async fn report(
    flusher: Flusher,
    mut applied: watch::Receiver<u64>,
    out: mpsc::Sender<std::result::Result<wire::TargetMessage, Status>>,
) {
    let mut durable = *applied.borrow();
    loop {
        let open = applied.wait_for(|batch| *batch > durable).await.is_ok();
        if open {
            tokio::time::sleep(FLUSH_EVERY).await;
        }
        let upto = *applied.borrow();
        if upto > durable {
            if let Err(err) = flusher.flush().await {
                tracing::warn!(error = %err, batch_id = upto, "could not make applied batches durable");
                out.send(Err(err.into())).await.ok();
                return;
            }
            durable = upto;
            metrics::batch_durable(durable);
            let message = wire::TargetMessage {
                kind: Some(wire::target_message::Kind::Durable(wire::Durable {
                    batch_id: durable,
                })),
            };
            if out.send(Ok(message)).await.is_err() {
                return;
            }
        }
        if !open {
            return;
        }
    }
}
