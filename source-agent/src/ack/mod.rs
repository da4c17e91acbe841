//! Acknowledgements: once a target has committed batch k, the queue rows
//! every target now has go, and so do that target's cuts before k (cut k
//! stays as the start of batch k+1); tables whose copy is acked start
//! replicating. One acknowledging session serves every target: what comes
//! while an acknowledgement runs folds into the next, one transaction for
//! all the targets in it, where three targets acknowledging one by one paid
//! three commits and waited for each other's lock on the source.

pub mod upkeep;

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::{Client, Config, Statement};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::ids::TargetId;
use crate::metrics;

/// A target has every batch up to `batch_id` on disk.
#[derive(Debug, Clone)]
pub struct Ack {
    /// The target.
    pub target: TargetId,
    /// Its newest durable batch.
    pub batch_id: u64,
    /// A new ack, not the progress a reconnecting target reports: it also
    /// clears the target's last error.
    pub fresh: bool,
}

/// Where the streams send their targets' acknowledgements.
pub type Acks = mpsc::Sender<Ack>;

/// Acknowledgements waiting for the acknowledging session, all targets
/// together: far more than the durable reports of a round between two
/// acknowledgements. When the session is down (its database away) a
/// stream waits here, which bounds what it holds, instead of queuing
/// without end.
pub const WAITING: usize = 1024;

/// The least time between two acknowledgements. The targets report their
/// durable batches each at its own time: acknowledged as they came, several
/// targets' reports cost the source nearly a transaction each; gathered,
/// one acknowledgement takes them all.
const ACK_EVERY: Duration = Duration::from_millis(50);

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

/// Records that each target in `acks` has applied every batch up to its
/// `batch_id` and deletes what no target needs any more
/// (`pgferry.acknowledge`, prepared by [`prepare`]), in one transaction: a
/// crash leaves either all of it or none, and doing it again is harmless.
/// Returns how many queue rows went.
pub async fn acknowledge(client: &Client, statement: &Statement, acks: &[Ack]) -> Result<i64> {
    let targets: Vec<i32> = acks.iter().map(|a| a.target.id).collect();
    let batches: Vec<i64> = acks.iter().map(|a| a.batch_id as i64).collect();
    let fresh: Vec<bool> = acks.iter().map(|a| a.fresh).collect();
    let row = client
        .query_one(statement, &[&targets, &batches, &fresh])
        .await
        .map_err(Error::db("cleaning up acked batches"))?;
    Ok(row.get(0))
}

/// Acknowledges what comes on `acks` until every sender is gone and all of
/// it is acknowledged, retrying with back-off up to `max_backoff` after a
/// failure; once `cancel` (shutdown) comes, a failure ends it instead: what
/// is left unacknowledged stays queued, and the targets skip it.
pub async fn ack_loop(
    config: Config,
    max_backoff: Duration,
    mut acks: mpsc::Receiver<Ack>,
    cancel: CancellationToken,
) -> Result<()> {
    let mut backoff = Backoff::new(max_backoff);
    let mut pending = BTreeMap::new();
    loop {
        let Err(err) = ack_session(&config, &mut acks, &mut pending).await else {
            return Ok(());
        };
        if !backoff.pause("acknowledging", err, &cancel).await? {
            return Ok(());
        }
    }
}

async fn ack_session(
    config: &Config,
    acks: &mut mpsc::Receiver<Ack>,
    pending: &mut BTreeMap<i32, Ack>,
) -> Result<()> {
    let client = pgferry_runtime::db::connect(config)
        .await
        .map_err(Error::Connect)?;
    let statement = prepare(&client).await?;
    let mut last = tokio::time::Instant::now();
    loop {
        // What comes meanwhile waits for the next: acknowledging sooner
        // only deletes sooner what nothing reads any more.
        tokio::time::sleep_until(last + ACK_EVERY).await;
        if pending.is_empty() {
            match acks.recv().await {
                Some(ack) => fold(pending, ack),
                None => return Ok(()),
            }
        }
        while let Ok(ack) = acks.try_recv() {
            fold(pending, ack);
        }
        let due: Vec<Ack> = pending.values().cloned().collect();
        last = tokio::time::Instant::now();
        acknowledge(&client, &statement, &due).await?;
        pending.clear();
        for ack in due.iter().filter(|a| a.fresh) {
            metrics::batch_acked(&ack.target.name, ack.batch_id);
        }
    }
}

/// Folds `ack` into what waits for the next acknowledgement: a target's
/// newest batch is what counts.
fn fold(pending: &mut BTreeMap<i32, Ack>, ack: Ack) {
    match pending.get_mut(&ack.target.id) {
        Some(waiting) if waiting.batch_id > ack.batch_id => {}
        Some(waiting) if waiting.batch_id == ack.batch_id => waiting.fresh |= ack.fresh,
        _ => {
            pending.insert(ack.target.id, ack);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(id: i32, batch_id: u64, fresh: bool) -> Ack {
        Ack {
            target: TargetId {
                id,
                name: format!("t{id}"),
            },
            batch_id,
            fresh,
        }
    }

    #[test]
    fn a_targets_newest_batch_wins_and_the_targets_stay_apart() {
        let mut pending = BTreeMap::new();
        fold(&mut pending, ack(1, 5, false));
        fold(&mut pending, ack(2, 3, true));
        fold(&mut pending, ack(1, 7, true));
        fold(&mut pending, ack(1, 6, true));
        let due: Vec<(i32, u64, bool)> = pending
            .values()
            .map(|a| (a.target.id, a.batch_id, a.fresh))
            .collect();
        assert_eq!(due, [(1, 7, true), (2, 3, true)]);
    }

    #[test]
    fn a_fresh_ack_of_the_reported_batch_still_clears_the_error() {
        let mut pending = BTreeMap::new();
        fold(&mut pending, ack(1, 5, true));
        fold(&mut pending, ack(1, 5, false));
        assert!(pending[&1].fresh);
    }
}
