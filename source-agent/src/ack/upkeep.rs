//! Queue upkeep: acknowledgements delete whole batches; this vacuums the
//! queue on a session of its own once enough dead rows pile up, paced so it
//! never competes with the writers' commits, and gives the disk back once a
//! burst (of large values, or of a long outage) has drained.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::error::{Error, Result};

/// How often the queue's dead rows are looked at.
const VACUUM_CHECK_EVERY: Duration = Duration::from_secs(2);
/// Dead queue rows that make a vacuum worth it (and at least as many as live).
const VACUUM_DEAD_ROWS: i64 = 20_000;

/// A queue larger on disk than this (table, TOAST and indexes) whose live
/// rows are few and take under a quarter of it is rewritten: a vacuum
/// leaves its files as large as the burst made them.
const COMPACT_ABOVE_BYTES: i64 = 64 << 20;
/// At most this many live rows: rewriting them holds the queue's lock.
const COMPACT_LIVE_ROWS: i64 = 10_000;
/// How long the rewrite waits for the queue's lock, writers queuing behind
/// it meanwhile, before it gives up for [`COMPACT_BACKOFF`].
const COMPACT_LOCK_TIMEOUT: &str = "set lock_timeout = '100ms'";
/// How often the queue's size is looked at, and how long a rewrite that
/// could not have the lock waits before trying again.
const COMPACT_CHECK_EVERY: Duration = Duration::from_secs(10);
const COMPACT_BACKOFF: Duration = Duration::from_secs(60);

/// Paced like autovacuum: an unpaced vacuum of a big ack's dead rows
/// competes with every commit for the disk.
const VACUUM_PACE: &str = "set vacuum_cost_delay = '2ms'";

/// Keeps the queue lean: acks delete whole batches, and until autovacuum
/// comes round the dead rows slow every cut and read (they sit in the txid
/// index the cutter scans). Vacuums the queue on its own session, so cuts
/// and acks never wait for it.
pub async fn vacuum_loop(
    config: tokio_postgres::Config,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut client = None;
    let mut horizon = None;
    let mut next_compact = Instant::now();
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(VACUUM_CHECK_EVERY) => {}
        }
        if client.is_none() {
            client = pgferry_runtime::db::connect(&config).await.ok();
            if let Some(c) = &client
                && let Err(err) = c.batch_execute(VACUUM_PACE).await
            {
                tracing::debug!(error = %err, "could not pace the queue vacuum");
            }
        }
        let Some(c) = &client else { continue };
        match vacuum_if_needed(c, &mut horizon).await {
            Ok(Some(dead)) => tracing::debug!(dead, "vacuumed the queue"),
            Ok(None) => {}
            Err(err) => {
                tracing::debug!(error = %err, "queue vacuum check failed");
                client = None;
                continue;
            }
        }
        if Instant::now() < next_compact {
            continue;
        }
        next_compact = Instant::now() + COMPACT_CHECK_EVERY;
        match compact_if_bloated(c).await {
            Ok(Some((before, after))) => {
                tracing::info!(
                    before,
                    after,
                    "rewrote the drained queue to give its disk space back"
                );
            }
            Ok(None) => {}
            Err(err) => {
                // Most often the lock was not had in time: the writers come
                // first, the rewrite comes back later.
                tracing::debug!(error = %err, "queue rewrite skipped");
                next_compact = Instant::now() + COMPACT_BACKOFF;
            }
        }
    }
}

/// Rewrites the queue (VACUUM FULL) when it is large on disk and its live
/// rows few and small: after a burst has drained, its files stay as large
/// as the burst made them (a vacuum only frees space inside them), most of
/// all the TOAST table that large values filled. The rewrite copies only
/// the live rows, in milliseconds, under a lock it waits for at most
/// [`COMPACT_LOCK_TIMEOUT`]. Returns the sizes before and after.
async fn compact_if_bloated(client: &Client) -> Result<Option<(i64, i64)>> {
    let before = queue_bytes(client).await?;
    if before < COMPACT_ABOVE_BYTES {
        return Ok(None);
    }
    // The stored (compressed, TOASTed) sizes: no value is read whole.
    let live = client
        .query_one(
            "select count(*), coalesce(sum(coalesce(pg_column_size(new_row), 0)
                                           + coalesce(pg_column_size(old_key), 0) + 64), 0)::bigint
             from (select new_row, old_key from pgferry.queue limit $1) q",
            &[&(COMPACT_LIVE_ROWS + 1)],
        )
        .await
        .map_err(Error::db("reading the queue's live rows"))?;
    let (rows, bytes): (i64, i64) = (live.get(0), live.get(1));
    if rows > COMPACT_LIVE_ROWS || bytes * 4 > before {
        return Ok(None);
    }
    // VACUUM runs alone, outside any transaction block.
    let rewrite = async {
        client.batch_execute(COMPACT_LOCK_TIMEOUT).await?;
        let rewritten = client.batch_execute("vacuum full pgferry.queue").await;
        client.batch_execute("reset lock_timeout").await?;
        rewritten
    };
    rewrite.await.map_err(Error::db("rewriting the queue"))?;
    Ok(Some((before, queue_bytes(client).await?)))
}

/// Vacuums the queue when enough of it is dead, unless the oldest
/// transaction any other session still sees (`horizon`) is the one that
/// held the last vacuum back: rows deleted since then cannot go either, and
/// during a long transaction (a million-row UPDATE) a vacuum every check
/// only rescanned the same dead rows, a core's worth.
async fn vacuum_if_needed(client: &Client, horizon: &mut Option<String>) -> Result<Option<i64>> {
    let row = client
        .query_one(
            "select coalesce((select n_dead_tup from pg_stat_user_tables
                              where relid = 'pgferry.queue'::regclass
                                and n_dead_tup >= $1 and n_dead_tup >= n_live_tup), 0),
                    (select x::text
                     from (select backend_xmin from pg_stat_activity where pid <> pg_backend_pid()
                           union all
                           select backend_xid from pg_stat_activity where pid <> pg_backend_pid()) s(x)
                     where x is not null
                     order by age(x) desc limit 1)",
            &[&VACUUM_DEAD_ROWS],
        )
        .await
        .map_err(Error::db("reading queue statistics"))?;
    let (dead, oldest): (i64, Option<String>) = (row.get(0), row.get(1));
    if dead == 0 || (oldest.is_some() && oldest == *horizon) {
        return Ok(None);
    }
    client
        .batch_execute("vacuum pgferry.queue")
        .await
        .map_err(Error::db("vacuuming the queue"))?;
    *horizon = oldest;
    Ok(Some(dead))
}

/// The queue's size on disk: table, TOAST and indexes.
async fn queue_bytes(client: &Client) -> Result<i64> {
    client
        .query_one("select pg_total_relation_size('pgferry.queue')", &[])
        .await
        .map_err(Error::db("reading the queue's size"))
        .map(|row| row.get(0))
}
