//! Taking the source role (docs/architecture.md, "Switchover"): this
//! database becomes the source of a source's tables, in the transaction
//! open on the applier's session. Its source side (`take_over.sql`,
//! installed by `source-agent install`) begins capture and records a target
//! for the old source whose stream starts at this transaction; the guard
//! comes off. A switchover does it in the transaction of the old source's
//! final batch, a promotion at the last batch applied; the caller records
//! the new epoch in the same transaction, so that the old source is refused
//! from then on.

use tokio_postgres::GenericClient;

use crate::error::{Error, Result};
use crate::guard::{self, Guarded};

/// Where the old source's database will listen as a target, and the TLS
/// CA, certificate, key and token file this database's source agent
/// presents there (paths on this host; none when empty).
pub struct Reverse<'a> {
    /// http(s)://HOST:PORT.
    pub address: &'a str,
    /// The CA, certificate, key and token file.
    pub files: [&'a str; 4],
}

/// A table this database takes the source role for.
pub struct Taken<'a> {
    /// The table here.
    pub guarded: Guarded<'a>,
    /// Its key.
    pub key_columns: &'a [String],
    /// Its schema on the old source.
    pub source_schema: &'a str,
    /// Its name on the old source.
    pub source_table: &'a str,
}

/// Whether this database can take a source role: it has pgferry's source
/// schema with the take-over.
pub async fn possible(client: &impl GenericClient) -> Result<bool> {
    Ok(client
        .query_one(
            "select to_regprocedure('pgferry.take_over(text, text, text[], bigint, jsonb)') is not null",
            &[],
        )
        .await
        .map_err(Error::db("looking for pgferry's source schema"))?
        .get(0))
}

/// Takes the source role for `tables`, replicated here from `source_id`,
/// at epoch `epoch`, in the transaction open on `client`.
pub async fn take_over(
    client: &impl GenericClient,
    source_id: &str,
    reverse: &Reverse<'_>,
    epoch: u64,
    tables: &[Taken<'_>],
) -> Result<()> {
    if !possible(client).await? {
        return Err(Error::NoSourceSchema);
    }
    let switched: Vec<serde_json::Value> = tables
        .iter()
        .map(|table| {
            serde_json::json!({
                "table": table.guarded.quoted,
                "key_columns": table.key_columns,
                "source_schema": table.source_schema,
                "source_table": table.source_table,
            })
        })
        .collect();
    let switched = serde_json::Value::Array(switched).to_string();
    let files: Vec<Option<&str>> = reverse
        .files
        .iter()
        .map(|file| Some(*file).filter(|file| !file.is_empty()))
        .collect();
    client
        .execute(
            "select pgferry.take_over($1, $2, $3, $4, $5::text::jsonb)",
            &[
                &source_id,
                &reverse.address,
                &files,
                &(epoch as i64),
                &switched,
            ],
        )
        .await
        .map_err(Error::db("taking over the source role"))?;
    let guarded: Vec<Guarded<'_>> = tables.iter().map(|table| table.guarded).collect();
    guard::release(client, source_id, &guarded).await?;
    tracing::info!(
        source_id,
        epoch,
        tables = tables.len(),
        "took over the source role: the tables are writable here and captured"
    );
    Ok(())
}
