//! `verify`'s questions, answered in the batch's transaction after its
//! changes: the source asked the same of the snapshot that cut the batch,
//! and the applier, the tables' only writer, now holds exactly that view.

use futures_util::TryStreamExt;
use pgferry_proto::wire;
use pgferry_runtime::digest;

use tokio_postgres::Client;

use super::tables::Tables;
use crate::error::{Error, Result};
use crate::schema::TablePlan;

/// The savepoint each check runs in: a check that fails is rolled back
/// alone and answered with its reason; the batch goes on.
const CHECK_SAVEPOINT: &str = "pgferry_check";

/// Answers the batch's `checks` on the applier's settled session `client`
/// and takes its repairs' failures (`repair_errors`), as the Checked report
/// that follows the commit; none when the batch asked nothing and
/// repaired nothing.
pub(super) async fn answer_checks(
    client: &Client,
    tables: &Tables,
    batch_id: u64,
    checks: &[wire::Check],
    repair_errors: Vec<String>,
) -> Result<Option<wire::Checked>> {
    if checks.is_empty() && repair_errors.is_empty() {
        return Ok(None);
    }
    let mut answers = Vec::with_capacity(checks.len());
    for check in checks {
        let plan = tables.named(batch_id, check.table_id)?;
        let answer = match answer(client, plan, check).await {
            Ok(answer) => answer,
            Err(source) => {
                client
                    .batch_execute(&format!("rollback to savepoint {CHECK_SAVEPOINT}"))
                    .await
                    .map_err(Error::db("rolling back a failed check"))?;
                let table = &plan.name;
                let reason = pgferry_runtime::db::describe_with_key(&source);
                tracing::warn!(%table, batch_id, error = %reason, "check failed");
                wire::CheckAnswer {
                    error: format!("{table}: {reason}"),
                    ..Default::default()
                }
            }
        };
        answers.push(answer);
    }
    Ok(Some(wire::Checked {
        batch_id,
        answers,
        repair_errors,
    }))
}

/// Answers one check on the applier's session `client`.
async fn answer(
    client: &Client,
    plan: &TablePlan,
    check: &wire::Check,
) -> Result<wire::CheckAnswer, tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "savepoint {CHECK_SAVEPOINT}; {}",
            digest::pinned(true)
        ))
        .await?;
    let answer = if check.each_row {
        let range: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&check.after, &check.upto];
        let rows = client.query(&plan.digest.each_row_sql(), &range).await?;
        wire::CheckAnswer {
            rows: rows.len() as u64,
            each_row: rows
                .iter()
                .map(|row| wire::RowHash {
                    key: row.get(0),
                    hash: row.get(1),
                })
                .collect(),
            ..Default::default()
        }
    } else {
        let copy = plan
            .digest
            .copy_range_sql(check.after.as_deref(), check.upto.as_deref());
        let stream = client.copy_out(copy.as_str()).await?;
        futures_util::pin_mut!(stream);
        let mut digest = digest::Digest::default();
        while let Some(data) = stream.try_next().await? {
            digest.update(&data);
        }
        let (rows, digest) = digest.finish();
        wire::CheckAnswer {
            rows,
            digest,
            ..Default::default()
        }
    };
    client
        .batch_execute(&format!("release savepoint {CHECK_SAVEPOINT}"))
        .await?;
    Ok(answer)
}
