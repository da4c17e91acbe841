//! Replicating sequences.

use tokio_postgres::Client;

use super::{TableName, bump_version, ensure_installed, lookup};
use crate::error::{Error, Result};

/// Starts keeping the target's copy of `sequence` at or above the source's.
pub async fn add_sequence(
    client: &mut Client,
    sequence: &str,
    target: Option<&str>,
    to: Option<&str>,
    create_target: bool,
) -> Result<i32> {
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
    let target_id = crate::targets::resolve(&tx, to).await?;
    let (relid, relkind) = lookup(&tx, &source).await?;
    if relkind != "S" {
        return Err(Error::NotASequence(source.to_string()));
    }
    let seq_id: i32 = tx
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
        .ok_or_else(|| Error::SequenceAlreadyAdded(source.to_string()))?
        .get(0);
    bump_version(&tx, target_id).await?;
    tx.commit().await.map_err(Error::db("add-sequence"))?;
    tracing::info!(sequence = %source, target = %target, seq_id, "sequence added");
    Ok(seq_id)
}
