//! How far behind each target is, which of its tables diverged, and what
//! each table's last verify found, as metrics to alert on. Read from the source database's batch list, not
//! kept in memory, so an agent started after an outage reports the batches
//! cut before it started. Each read first marks diverged the tables whose
//! capture triggers are found switched off (`pgferry.notice_capture_off`):
//! where the DDL watch cannot refuse that, it is noticed within a second.

use std::collections::HashSet;
use std::time::Duration;

use tokio_postgres::{Client, Config};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::metrics;

/// How often the delay is read: one lookup by key.
const READ_EVERY: Duration = Duration::from_secs(1);

/// Keeps the delay metrics current until `cancel`, on a session of its own.
/// A target removed meanwhile waits for nothing any more: its figures drop
/// to 0, so that an alert on them clears (the metrics facade cannot drop a
/// series, and the last figures of a target removed because it was far
/// behind would keep its alert firing until the agent restarts).
pub async fn watch_loop(config: Config, cancel: CancellationToken) {
    let mut client = None;
    let mut shown = HashSet::new();
    let mut verified_shown = HashSet::new();
    loop {
        if client.is_none() {
            client = pgferry_runtime::db::connect(&config).await.ok();
        }
        if let Some(c) = &client {
            match read(c).await {
                Ok(targets) => {
                    let now: HashSet<String> = targets.iter().map(|t| t.0.clone()).collect();
                    for removed in shown.difference(&now) {
                        metrics::delay(removed, 0.0, 0, 0);
                    }
                    shown = now;
                    for (target, seconds, unacked, diverged) in targets {
                        metrics::delay(&target, seconds, unacked, diverged);
                    }
                }
                Err(err) => {
                    tracing::debug!(error = %err, "could not read the delay");
                    client = None;
                }
            }
        }
        if let Some(c) = &client {
            match read_verified(c).await {
                Ok(tables) => {
                    let now: HashSet<(String, String)> =
                        tables.iter().map(|t| (t.0.clone(), t.1.clone())).collect();
                    for (target, table) in verified_shown.difference(&now) {
                        metrics::verified(target, table, 0);
                    }
                    verified_shown = now;
                    for (target, table, differences) in tables {
                        metrics::verified(&target, &table, differences);
                    }
                }
                Err(err) => {
                    tracing::debug!(error = %err, "could not read the delay");
                    client = None;
                }
            }
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(READ_EVERY) => {}
        }
    }
}

/// Per table verified, and not removed since: its target, its name and
/// the rows its last verify found differing.
async fn read_verified(client: &Client) -> Result<Vec<(String, String, i64)>> {
    let rows = client
        .query(
            "select g.name, t.source_schema || '.' || t.source_name, t.verify_differences
             from pgferry.tables t join pgferry.targets g using (target_id)
             where not t.removed and t.verified_at is not null",
            &[],
        )
        .await
        .map_err(Error::db("reading the last verifies"))?;
    Ok(rows
        .into_iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect())
}

/// Per target: its name, the seconds since the oldest batch it has not
/// acknowledged was cut (0 when none waits), how many batches wait, and
/// how many of its tables diverged.
async fn read(client: &Client) -> Result<Vec<(String, f64, i64, i64)>> {
    let noticed = [
        (
            "select source, target from pgferry.notice_capture_off()",
            "checking the capture triggers",
            "capture triggers found disabled or dropped: the table diverged on the target until add-table copies it again",
        ),
        (
            "select source, target from pgferry.notice_shape_changed()",
            "checking the tables' shapes",
            "columns changed outside pgferry with no DDL watch: the table is set aside on the target until repair copies it again",
        ),
    ];
    for (sql, context, what) in noticed {
        for row in client.query(sql, &[]).await.map_err(Error::db(context))? {
            let (table, target): (String, String) = (row.get(0), row.get(1));
            tracing::error!(table = %table, target = %target, "{what}");
        }
    }
    let rows = client
        .query(
            "select t.name, coalesce(extract(epoch from now() - b.cut_at)::float8, 0),
                    coalesce((select max(batch_id) from pgferry.batch m
                              where m.target_id = t.target_id), t.acked_batch) - t.acked_batch,
                    (select count(*) from pgferry.tables d
                     where d.target_id = t.target_id and not d.removed and d.diverged_at is not null)
             from pgferry.targets t
             left join pgferry.batch b on b.target_id = t.target_id and b.batch_id = t.acked_batch + 1",
            &[],
        )
        .await
        .map_err(Error::db("reading the delay"))?;
    Ok(rows
        .into_iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect())
}
