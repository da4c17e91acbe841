//! Cutting batches: the cutter's loop and the cut itself, by snapshots
//! (design.md section 3), paced to the load, one cutter per source.

use std::time::Duration;

use tokio_postgres::{Client, Config, Statement};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::ids::{BatchId, ChangeCount};
use crate::links::CutterEnds;

const CUT_BATCH: &str = "select pgferry.cut_batch($1, $2, $3)";

/// Cuts target `target_id`'s next batch if committed changes of its tables
/// wait and fewer than
/// `max_unapplied` cut batches are beyond `applied`, the last batch the
/// target reported applied. Returns its id.
pub async fn cut(
    client: &Client,
    cut_batch: &Statement,
    target_id: i32,
    applied: BatchId,
    max_unapplied: u32,
) -> Result<Option<u64>> {
    let row = client
        .query_one(
            cut_batch,
            &[&target_id, &i64::from(max_unapplied), &(applied.0 as i64)],
        )
        .await
        .map_err(Error::db("cutting a batch"))?;
    Ok(row.get::<_, Option<i64>>(0).map(|id| id as u64))
}

/// What tells a batch from another of its id (`BatchChunk.cut`), as SQL
/// over a `pgferry.batch` row: the snapshot that cut it and when, in
/// microseconds since 1970. A macro so that constant queries can hold it.
macro_rules! cut_sql {
    () => {
        "snapshot::text || ' ' || (extract(epoch from cut_at) * 1000000)::bigint"
    };
}
pub(crate) use cut_sql;

/// The cut of target `target_id`'s batch `batch_id` (see [`cut_sql`]),
/// which the target records with the batch; empty when the batch is not
/// kept.
pub async fn cut_of(client: &Client, target_id: i32, batch_id: u64) -> Result<String> {
    let row = client
        .query_opt(
            concat!(
                "select ",
                cut_sql!(),
                " from pgferry.batch where target_id = $1 and batch_id = $2"
            ),
            &[&target_id, &(batch_id as i64)],
        )
        .await
        .map_err(Error::db("reading a batch's cut"))?;
    Ok(row.map(|row| row.get(0)).unwrap_or_default())
}

/// Refuses a database whose transaction ids are behind its newest batch's
/// snapshot: pgferry's tables were carried into another cluster (a logical
/// dump restored), where every change would look older than the last cut
/// and none would ever be cut.
pub async fn check_transaction_ids(client: &Client) -> Result<()> {
    let row = client
        .query_opt(
            "select pg_snapshot_xmax(pg_current_snapshot()) < pg_snapshot_xmax(snapshot),
                    pg_snapshot_xmax(pg_current_snapshot())::text, snapshot::text
             from pgferry.batch order by batch_id desc limit 1",
            &[],
        )
        .await
        .map_err(Error::db("reading the newest batch"))?;
    match row {
        Some(row) if row.get::<_, bool>(0) => Err(Error::TransactionIdsBehind {
            current: row.get(1),
            newest: row.get(2),
        }),
        _ => Ok(()),
    }
}

/// The oldest and newest batch ids the source still keeps for target
/// `target_id`.
pub async fn kept_range(client: &Client, target_id: i32) -> Result<(u64, u64)> {
    let row = client
        .query_one(
            "select min(batch_id), max(batch_id) from pgferry.batch where target_id = $1",
            &[&target_id],
        )
        .await
        .map_err(Error::db("reading the batch list"))?;
    let (min, max): (Option<i64>, Option<i64>) = (row.get(0), row.get(1));
    Ok((min.unwrap_or(0) as u64, max.unwrap_or(0) as u64))
}

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
/// must not pay hundreds of times a second. At 1 ms per change the bench's
/// lag load (about 800 changes a second: 500 TPS and heartbeats) sat near
/// the threshold and its batches drifted to 3-6 ms apart (debug log of
/// `PGFERRY_BENCH_ONLY=lag`), with the same writers' cost as now.
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

/// Keeps cutting target `target_id`'s batches at `pace`, and whenever it applied one
/// (no sooner after the last cut than the size of the last batch sent,
/// `ends.last_sent`, calls for), until `cancel`, publishing the newest batch id on
/// `ends.newest_cut`. Holds the target's source-agent lock so that two agents
/// never cut (or ship) batches of one target.
pub async fn cut_loop(
    config: Config,
    target_id: i32,
    pace: Pace,
    mut ends: CutterEnds,
    cancel: CancellationToken,
) -> Result<()> {
    let mut backoff = Backoff::new(pace.max_backoff);
    loop {
        let wait = match cut_session(&config, target_id, pace, &mut ends, &cancel).await {
            Ok(()) => return Ok(()),
            Err(err) => {
                let Some(wait) = backoff.after(&err) else {
                    return Err(err);
                };
                tracing::warn!(error = %err, retry_in_ms = wait.as_millis() as u64, "batch cutter failed; retrying");
                wait
            }
        };
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// How long a starting agent waits for a predecessor's lock to go (a killed
/// agent's server session ends a moment after the process).
const LOCK_WAIT: Duration = Duration::from_secs(15);

async fn cut_session(
    config: &Config,
    target_id: i32,
    pace: Pace,
    ends: &mut CutterEnds,
    cancel: &CancellationToken,
) -> Result<()> {
    let client = pgferry_runtime::db::connect(config)
        .await
        .map_err(Error::Connect)?;
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    loop {
        let locked: bool = client
            .query_one(
                "select pg_try_advisory_lock(hashtext('pgferry.source-agent'), $1)",
                &[&target_id],
            )
            .await
            .map_err(Error::db("taking the source-agent lock"))?
            .get(0);
        if locked {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Error::AlreadyRunning);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, newest) = kept_range(&client, target_id).await?;
    ends.newest_cut.send_replace(BatchId(newest));
    let cut_batch = client
        .prepare(CUT_BATCH)
        .await
        .map_err(Error::db("preparing the cut"))?;
    let mut wait = pace.tick;
    let mut last_found = tokio::time::Instant::now();
    let mut last_cut = tokio::time::Instant::now();
    loop {
        // An applied batch may have been what held the next cut back: cut
        // at once rather than at the next tick. The tick counts from the
        // last look's start, so a look's own time does not add to it.
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(()),
            Ok(()) = ends.applied.changed() => {}
            _ = tokio::time::sleep_until(last_cut + wait) => {}
        }
        let gathered = last_cut + pace.interval(*ends.last_sent.borrow());
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep_until(gathered) => {}
        }
        let applied = *ends.applied.borrow_and_update();
        last_cut = tokio::time::Instant::now();
        if let Some(batch_id) =
            cut(&client, &cut_batch, target_id, applied, pace.max_unapplied).await?
        {
            tracing::debug!(
                batch_id,
                took_us = last_cut.elapsed().as_micros() as u64,
                "cut batch"
            );
            ends.newest_cut.send_replace(BatchId(batch_id));
            wait = pace.tick;
            last_found = tokio::time::Instant::now();
        } else if last_found.elapsed() >= IDLE_AFTER {
            wait = (wait * 2).min(pace.idle_tick.max(pace.tick));
        }
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
