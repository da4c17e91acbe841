//! A switchover's take-over (docs/architecture.md, "Switchover"): in the
//! transaction of the source's final batch, after its changes, this
//! database becomes the source of the stream's tables. Its source side
//! (`take_over.sql`, installed by `source-agent install`) begins capture and
//! records a target for the old source whose stream starts here; the guard
//! comes off. The commit that follows records the new epoch with the
//! batch, so the old source is refused from then on.

use pgferry_proto::wire;
use tokio_postgres::Client;

use super::tables::Tables;
use crate::error::{Error, Result};
use crate::guard;

/// Whether this database can take a source role: it has pgferry's source
/// schema with the take-over.
pub(super) async fn possible(client: &Client) -> Result<bool> {
    Ok(client
        .query_one(
            "select to_regprocedure('pgferry.take_over(text, text, text[], bigint, jsonb)') is not null",
            &[],
        )
        .await
        .map_err(Error::db("looking for pgferry's source schema"))?
        .get(0))
}

/// Takes the source role for the tables `switchover` names, in batch
/// `batch_id`'s open transaction on `client`.
pub(super) async fn take_over(
    client: &Client,
    tables: &Tables,
    batch_id: u64,
    switchover: &wire::Switchover,
) -> Result<()> {
    if !possible(client).await? {
        return Err(Error::Protocol(format!(
            "batch {batch_id} is a switchover's final batch, and this database has no pgferry source schema to take over with (source-agent install)"
        )));
    }
    let mut switched = Vec::with_capacity(switchover.tables.len());
    let mut guarded = Vec::with_capacity(switchover.tables.len());
    for table in &switchover.tables {
        let plan = tables.named(batch_id, table.table_id)?;
        switched.push(serde_json::json!({
            "table": plan.quoted,
            "key_columns": tables.key_columns(table.table_id),
            "source_schema": table.source_schema,
            "source_table": table.source_table,
        }));
        guarded.push(plan.guarded());
    }
    let switched = serde_json::Value::Array(switched).to_string();
    let files: Vec<Option<&str>> = [
        &switchover.tls_ca,
        &switchover.tls_cert,
        &switchover.tls_key,
        &switchover.auth_token_file,
    ]
    .into_iter()
    .map(|file| Some(file.as_str()).filter(|file| !file.is_empty()))
    .collect();
    client
        .execute(
            "select pgferry.take_over($1, $2, $3, $4, $5::text::jsonb)",
            &[
                &tables.source_id,
                &switchover.reverse_address,
                &files,
                &(switchover.epoch as i64),
                &switched,
            ],
        )
        .await
        .map_err(Error::db("taking over the source role"))?;
    guard::release(client, &tables.source_id, &guarded).await?;
    tracing::info!(
        source_id = %tables.source_id,
        batch_id,
        epoch = switchover.epoch,
        tables = guarded.len(),
        "took over the source role: the tables are writable here and captured"
    );
    Ok(())
}
