//! A batch cut for `verify` or `repair` (`cut_check.sql`), and a read of
//! the source in exactly the snapshot that cut it.

use pgferry_runtime::digest;
use pgferry_runtime::sql::literal;
use tokio_postgres::{Client, IsolationLevel, Transaction};

use super::Checks;
use crate::error::{Error, Result};

/// A batch just cut, not yet committed, and a transaction reading the
/// source in its snapshot, with the digest's settings pinned.
pub struct CheckCut<'a> {
    /// The cut's transaction: commit it to let the batch go out (a repair
    /// first writes its rows in it).
    pub cut: Transaction<'a>,
    /// Reads the source as the batch's snapshot has it.
    pub read: Transaction<'a>,
    /// The batch's id.
    pub batch_id: u64,
}

/// Cuts target `target_id`'s next batch with `checks` on `cutter`, and
/// opens on `reader` a transaction in the snapshot that cut it (imported
/// while the cut's transaction, which exported it, is still open).
pub async fn cut<'a>(
    cutter: &'a mut Client,
    reader: &'a mut Client,
    target_id: i32,
    checks: &Checks,
) -> Result<CheckCut<'a>> {
    let checks = serde_json::to_string(checks).expect("checks serialize");
    let cut = cutter
        .transaction()
        .await
        .map_err(Error::db("cutting a batch to check"))?;
    let row = cut
        .query_one(
            "select batch_id, snapshot_name from pgferry.cut_check($1, $2::text::jsonb)",
            &[&target_id, &checks],
        )
        .await
        .map_err(Error::db("cutting a batch to check"))?;
    let (batch_id, snapshot): (i64, String) = (row.get(0), row.get(1));
    let read = reader
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(Error::db("reading the source at a batch's snapshot"))?;
    read.batch_execute(&format!(
        "set transaction snapshot {}; {}",
        literal(&snapshot),
        digest::pinned(true)
    ))
    .await
    .map_err(Error::db("reading the source at a batch's snapshot"))?;
    Ok(CheckCut {
        cut,
        read,
        batch_id: batch_id as u64,
    })
}
