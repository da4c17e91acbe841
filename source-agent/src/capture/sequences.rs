//! Replicating sequences.

use tokio_postgres::Client;

use super::{TableName, bump_version, ensure_installed, lookup};
use crate::error::{Error, Result};

/// Starts keeping the copy of `sequence` on target `to` (on every target
/// when `None`) at or above the source's. Returns how many targets it was
/// added for; refuses a sequence every one of them already has.
pub async fn add_sequence(
    client: &mut Client,
    sequence: &str,
    target: Option<&str>,
    to: Option<&str>,
    create_target: bool,
) -> Result<usize> {
    ensure_installed(client).await?;
    let source = TableName::parse(client, sequence).await?;
    let target = match target {
        Some(t) => TableName::parse(client, t).await?,
        None => source.clone(),
    };
    let tx = client
        .transaction()
        .await
        .map_err(Error::db("add-sequence"))?;
    let target_ids = match to {
        Some(_) => vec![crate::targets::resolve(&tx, to).await?],
        None => {
            let all: Vec<i32> = crate::targets::list(&tx)
                .await?
                .iter()
                .map(|t| t.id)
                .collect();
            if all.is_empty() {
                // Its error says there is no target.
                vec![crate::targets::resolve(&tx, None).await?]
            } else {
                all
            }
        }
    };
    let (relid, relkind) = lookup(&tx, &source).await?;
    if relkind != "S" {
        return Err(Error::NotASequence(source.to_string()));
    }
    let mut added = 0;
    for target_id in target_ids {
        let seq_id: Option<i32> = tx
            .query_opt(
                "insert into pgferry.sequences (relid, source_schema, source_name, target_schema,
                                                target_name, create_target, target_id)
                 values ($1, $2, $3, $4, $5, $6, $7) on conflict (relid, target_id) do nothing
                 returning seq_id",
                &[
                    &relid,
                    &source.schema,
                    &source.name,
                    &target.schema,
                    &target.name,
                    &create_target,
                    &target_id,
                ],
            )
            .await
            .map_err(Error::db("add-sequence"))?
            .map(|row| row.get(0));
        if let Some(seq_id) = seq_id {
            bump_version(&tx, target_id).await?;
            tracing::info!(sequence = %source, target = %target, target_id, seq_id, "sequence added");
            added += 1;
        }
    }
    if added == 0 {
        return Err(Error::SequenceAlreadyAdded(source.to_string()));
    }
    tx.commit().await.map_err(Error::db("add-sequence"))?;
    Ok(added)
}
