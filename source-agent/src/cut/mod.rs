//! Cutting batches by snapshots (docs/architecture.md, "Batches"): the cut itself, and
//! what the stream reads of a cut. The cutter's loop is `cutter`; what it
//! and the streams tell each other, `links`.

pub mod cutter;
pub mod links;

use tokio_postgres::{Client, Statement};

use crate::error::{Error, Result};
use crate::ids::BatchId;

/// The cut of several targets in one transaction (`cut_batches.sql`).
pub const CUT_BATCHES: &str =
    "select cut_target, cut_batch, newest from pgferry.cut_batches($1, $2, $3)";

/// What a cut found for one target.
#[derive(Debug, Clone, Copy)]
pub struct Cut {
    /// The target's id.
    pub target: i32,
    /// The batch cut now, if any.
    pub batch: Option<u64>,
    /// The target's newest batch: the one cut now, or one `verify` or
    /// `repair` cut (`cut_check.sql`), or the last.
    pub newest: u64,
}

/// Cuts, at one snapshot, the next batch of each of `targets` (a target id
/// and the last batch that target reported applied) whose tables have
/// committed changes waiting and which has fewer than `max_unapplied` cut
/// batches beyond the applied one. Returns what it found, by target.
pub async fn cut(
    client: &Client,
    cut_batches: &Statement,
    targets: &[(i32, BatchId)],
    max_unapplied: u32,
) -> Result<Vec<Cut>> {
    let ids: Vec<i32> = targets.iter().map(|(id, _)| *id).collect();
    let applied: Vec<i64> = targets.iter().map(|(_, a)| a.0 as i64).collect();
    let rows = client
        .query(cut_batches, &[&ids, &applied, &i64::from(max_unapplied)])
        .await
        .map_err(Error::db("cutting batches"))?;
    Ok(rows
        .iter()
        .map(|row| Cut {
            target: row.get(0),
            batch: row.get::<_, Option<i64>>(1).map(|b| b as u64),
            newest: row.get::<_, i64>(2) as u64,
        })
        .collect())
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
