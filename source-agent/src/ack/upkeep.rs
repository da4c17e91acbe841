//! Queue upkeep: acknowledgements delete whole batches; this vacuums the
//! queue on a session of its own once enough dead rows pile up, paced so it
//! never competes with the writers' commits.

use tokio_postgres::Client;

use crate::error::{Error, Result};

/// How often the queue's dead rows are looked at.
const VACUUM_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// Dead queue rows that make a vacuum worth it (and at least as many as live).
const VACUUM_DEAD_ROWS: i64 = 20_000;

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
            }
        }
    }
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
