//! The cutter: one loop and one source session for every target the agent
//! streams to. Each target is cut at its own pace (the load its batches
//! carry, the batches its target has yet to apply); the targets due at
//! about the same time are cut together, in one transaction
//! ([`cut::cut`]), so that a source with three targets pays one cut's round
//! trip and commit where it would pay three.

use std::time::Duration;

use futures::future;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_postgres::{Client, Config};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::cut;
use crate::cut::links::CutterEnds;
use crate::error::{Error, Result};
use crate::ids::{BatchId, ChangeCount, TargetId};

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
/// must not pay hundreds of times a second. The threshold sits well above
/// a steady few hundred transactions a second, which so keep a batch per
/// tick and their low lag (docs/benchmarks.md, the lag measure).
const COALESCE_PER_CHANGE: Duration = Duration::from_micros(500);

impl Pace {
    /// The least time between two cuts after a batch of `changes`.
    fn interval(&self, ChangeCount(changes): ChangeCount) -> Duration {
        let gather = COALESCE_PER_CHANGE.saturating_mul(changes.min(u32::MAX as u64) as u32);
        gather.min(self.max_coalesce).max(self.tick)
    }
}

/// How long without changes before the cutter slows down: under a steady
/// trickle (a change every few ticks) most looks find nothing, and slowing
/// down on each would add its wait to every change's lag.
const IDLE_AFTER: Duration = Duration::from_millis(100);

impl Pace {
    /// How far ahead of its time a target is cut along with one due now: a
    /// quarter of `max_coalesce`, so that its batch is a little smaller,
    /// where a cut of its own would cost the source a transaction more.
    fn together(&self) -> Duration {
        (self.max_coalesce / 4).max(self.tick)
    }
}

/// Targets waiting to join the cutter: a pipeline starts per target, and
/// the cutter takes them between cuts.
pub const JOINING: usize = 64;

/// A target for the cutter to cut until its pipeline stops.
pub struct Joining {
    /// The target.
    pub target: TargetId,
    /// Its ends of the links with its stream.
    pub ends: CutterEnds,
    /// Its pipeline's stop: then the cutter lets the target go.
    pub stop: CancellationToken,
}

/// A target the cutter cuts.
struct Cutting {
    target: TargetId,
    ends: CutterEnds,
    stop: CancellationToken,
    /// Whether this session holds the target's source-agent lock, and until
    /// when it tries to take it.
    locked: bool,
    lock_by: Instant,
    /// Whether the newest batch kept was published on `ends` since they
    /// joined or the session started.
    announced: bool,
    last_cut: Instant,
    /// The wait between looks (see [`Pace`]).
    wait: Duration,
    last_found: Instant,
}

impl Cutting {
    /// When the target is next due for a cut.
    fn due(&self, pace: &Pace) -> Instant {
        let gathered = self.last_cut + pace.interval(*self.ends.last_sent.borrow());
        // An applied batch may have been what held the next cut back: cut
        // once gathered rather than at the next look. The looks count from
        // the last cut's start, so a cut's own time does not add to them.
        let applied = self.ends.applied.has_changed().unwrap_or(false);
        let look = if applied {
            self.last_cut
        } else {
            self.last_cut + self.wait
        };
        gathered.max(look)
    }

    /// Whether its pipeline stopped.
    fn gone(&self) -> bool {
        self.stop.is_cancelled() || self.ends.applied.has_changed().is_err()
    }
}

/// How long a starting agent waits for a predecessor's lock to go (a killed
/// agent's server session ends a moment after the process).
const LOCK_WAIT: Duration = Duration::from_secs(15);

/// How often the cutter tries again for a lock it could not take.
const LOCK_RETRY: Duration = Duration::from_millis(200);

/// Keeps cutting the batches of the targets that join on `joins`, each at
/// `pace` and whenever its target applied one (no sooner after its last cut
/// than the size of the last batch sent, `ends.last_sent`, calls for),
/// publishing each target's newest batch id on its `ends.newest_cut`, until
/// `cancel`. Holds each target's source-agent lock, so that two agents never
/// cut (or ship) batches of one target; a lock another agent keeps for
/// [`LOCK_WAIT`] stops the cutter ([`Error::AlreadyRunning`]).
pub async fn cut_loop(
    config: Config,
    pace: Pace,
    mut joins: mpsc::Receiver<Joining>,
    cancel: CancellationToken,
) -> Result<()> {
    let mut backoff = Backoff::new(pace.max_backoff);
    let mut targets = Vec::new();
    loop {
        let Err(err) = cut_session(&config, pace, &mut joins, &mut targets, &cancel).await else {
            return Ok(());
        };
        if !backoff.pause("batch cutter", err, &cancel).await? {
            return Ok(());
        }
    }
}

async fn cut_session(
    config: &Config,
    pace: Pace,
    joins: &mut mpsc::Receiver<Joining>,
    targets: &mut Vec<Cutting>,
    cancel: &CancellationToken,
) -> Result<()> {
    let client = pgferry_runtime::db::connect(config)
        .await
        .map_err(Error::Connect)?;
    let statement = client
        .prepare(cut::CUT_BATCHES)
        .await
        .map_err(Error::db("preparing the cut"))?;
    let started = Instant::now();
    for target in targets.iter_mut() {
        target.locked = false;
        target.announced = false;
        target.lock_by = started + LOCK_WAIT;
    }
    let mut next_lock_try = started;
    loop {
        release_gone(&client, targets).await?;
        if Instant::now() >= next_lock_try {
            lock_and_announce(&client, targets).await?;
            next_lock_try = Instant::now() + LOCK_RETRY;
        }
        let waiting_lock = targets.iter().any(|t| !t.locked).then_some(next_lock_try);
        let wake = targets
            .iter()
            .filter(|t| t.locked)
            .map(|t| t.due(&pace))
            .chain(waiting_lock)
            .min()
            .unwrap_or_else(|| Instant::now() + LOCK_WAIT);
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(()),
            joined = joins.recv() => match joined {
                Some(joining) => {
                    join(targets, joining, pace);
                    next_lock_try = Instant::now();
                    continue;
                }
                None => return Ok(()),
            },
            () = applied_moves(targets) => {}
            () = tokio::time::sleep_until(wake) => {}
        }
        let now = Instant::now();
        let soon = now + pace.together();
        let due: Vec<usize> = (0..targets.len())
            .filter(|&i| targets[i].locked && !targets[i].gone() && targets[i].due(&pace) <= soon)
            .collect();
        if due.is_empty() {
            continue;
        }
        let asked: Vec<(i32, BatchId)> = due
            .iter()
            .map(|&i| {
                let target = &mut targets[i];
                (target.target.id, *target.ends.applied.borrow_and_update())
            })
            .collect();
        let cut = cut::cut(&client, &statement, &asked, pace.max_unapplied).await?;
        tracing::debug!(
            targets = asked.len(),
            cut = cut.iter().filter(|c| c.batch.is_some()).count(),
            took_us = now.elapsed().as_micros() as u64,
            "cut batches"
        );
        for &i in &due {
            let target = &mut targets[i];
            target.last_cut = now;
            let found = cut.iter().find(|c| c.target == target.target.id);
            if let Some(found) = found {
                // A batch `verify` or `repair` cut goes out too.
                target.ends.newest_cut.send_if_modified(|newest| {
                    let newer = newest.0 < found.newest;
                    if newer {
                        *newest = BatchId(found.newest);
                    }
                    newer
                });
            }
            match found.and_then(|c| c.batch) {
                Some(_) => {
                    target.wait = pace.tick;
                    target.last_found = Instant::now();
                }
                None if target.last_found.elapsed() >= IDLE_AFTER => {
                    target.wait = (target.wait * 2).min(pace.idle_tick.max(pace.tick));
                }
                None => {}
            }
        }
    }
}

/// Adds a joining target; one that joins again (its pipeline started anew)
/// keeps the lock this session holds for it.
fn join(targets: &mut Vec<Cutting>, joining: Joining, pace: Pace) {
    let now = Instant::now();
    if let Some(target) = targets
        .iter_mut()
        .find(|t| t.target.id == joining.target.id)
    {
        target.ends = joining.ends;
        target.stop = joining.stop;
        target.announced = false;
        return;
    }
    targets.push(Cutting {
        target: joining.target,
        ends: joining.ends,
        stop: joining.stop,
        locked: false,
        lock_by: now + LOCK_WAIT,
        announced: false,
        last_cut: now,
        wait: pace.tick,
        last_found: now,
    });
}

/// The target's source-agent lock, which the cutter's session holds while
/// the agent streams to it: one `run` per target and source database.
const TAKE_LOCK: &str = "select pg_try_advisory_lock(hashtext('pgferry.source-agent'), $1)";
/// Its release.
const RELEASE_LOCK: &str = "select pg_advisory_unlock(hashtext('pgferry.source-agent'), $1)";

/// Whether a `source-agent run` streams to target `target_id` (some
/// session holds its lock), asked from a session of another command.
pub async fn streamed_to(client: &Client, target_id: i32) -> Result<bool> {
    let free: bool = client
        .query_one(TAKE_LOCK, &[&target_id])
        .await
        .map_err(Error::db("checking the source-agent lock"))?
        .get(0);
    if free {
        client
            .execute(RELEASE_LOCK, &[&target_id])
            .await
            .map_err(Error::db("checking the source-agent lock"))?;
    }
    Ok(!free)
}

/// Lets the targets whose pipeline stopped go, with their locks.
async fn release_gone(client: &Client, targets: &mut Vec<Cutting>) -> Result<()> {
    while let Some(i) = targets.iter().position(Cutting::gone) {
        let target = targets.swap_remove(i);
        if target.locked {
            client
                .execute(RELEASE_LOCK, &[&target.target.id])
                .await
                .map_err(Error::db("releasing the source-agent lock"))?;
        }
    }
    Ok(())
}

/// Takes the lock of each target this session does not hold yet, and
/// publishes the newest batch kept of each target it holds and has not
/// announced.
async fn lock_and_announce(client: &Client, targets: &mut [Cutting]) -> Result<()> {
    for target in targets.iter_mut() {
        if !target.locked {
            target.locked = client
                .query_one(TAKE_LOCK, &[&target.target.id])
                .await
                .map_err(Error::db("taking the source-agent lock"))?
                .get(0);
            if !target.locked && Instant::now() > target.lock_by {
                return Err(Error::AlreadyRunning {
                    target: target.target.name.clone(),
                });
            }
        }
        if target.locked && !target.announced {
            let (_, newest) = cut::kept_range(client, target.target.id).await?;
            target.ends.newest_cut.send_replace(BatchId(newest));
            target.announced = true;
        }
    }
    Ok(())
}

/// Waits until a target whose last applied batch has not moved since its
/// last cut reports another one applied (or its stream ends).
async fn applied_moves(targets: &[Cutting]) {
    let moves: Vec<_> = targets
        .iter()
        .filter(|t| t.locked && matches!(t.ends.applied.has_changed(), Ok(false)))
        .map(|t| {
            let mut applied = t.ends.applied.clone();
            Box::pin(async move {
                let _ = applied.changed().await;
            })
        })
        .collect();
    if moves.is_empty() {
        future::pending::<()>().await;
    } else {
        future::select_all(moves).await;
    }
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
        assert_eq!(PACE.interval(ChangeCount(0)), PACE.tick);
        assert_eq!(PACE.interval(ChangeCount(1)), PACE.tick);
    }

    #[test]
    fn a_busy_source_gathers_changes_up_to_the_limit() {
        assert_eq!(PACE.interval(ChangeCount(4)), Duration::from_millis(2));
        assert_eq!(PACE.interval(ChangeCount(20)), PACE.max_coalesce);
        assert_eq!(PACE.interval(ChangeCount(1_000_000)), PACE.max_coalesce);
    }
}
