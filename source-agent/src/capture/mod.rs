//! The capture side in the source database, by job: installing and
//! upgrading pgferry's schema (`install`), registering tables (`tables`),
//! whole schemas (`schemas`) and sequences (`sequences`).

pub mod ddl;
mod install;
mod schemas;
mod sequences;
mod tables;

use tokio_postgres::{Client, GenericClient};

use crate::error::{Error, Result};
pub(crate) use install::EXTENSION;
pub use install::{SCHEMA, choose, ensure_installed, install, watches_ddl};
pub use schemas::{SchemaReport, add_schema, follow_schema};
pub use sequences::add_sequence;
pub use tables::{Added, TableSpec, add_table, copy_again, remove_table, set_aside};

/// A table name split by PostgreSQL's own rules (quotes, case folding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    /// The schema.
    pub schema: String,
    /// The table.
    pub name: String,
}

impl TableName {
    /// Parses `SCHEMA.TABLE` the way the server does (`parse_ident`).
    pub async fn parse(client: &Client, text: &str) -> Result<TableName> {
        let parts: Vec<String> = client
            .query_one("select parse_ident($1)", &[&text])
            .await
            .map_err(|_| Error::BadTableName(text.to_owned()))?
            .get(0);
        match <[String; 2]>::try_from(parts) {
            Ok([schema, name]) => Ok(TableName { schema, name }),
            Err(_) => Err(Error::BadTableName(text.to_owned())),
        }
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// The table's oid and relkind, or [`Error::UnknownTable`].
async fn lookup(client: &impl GenericClient, name: &TableName) -> Result<(u32, String)> {
    let row = client
        .query_opt(
            "select c.oid, c.relkind::text from pg_class c join pg_namespace n on n.oid = c.relnamespace
             where n.nspname = $1 and c.relname = $2",
            &[&name.schema, &name.name],
        )
        .await
        .map_err(Error::db("looking up a relation"))?
        .ok_or_else(|| Error::UnknownTable(name.to_string()))?;
    Ok((row.get(0), row.get(1)))
}

/// Tells a running agent that a target's table or sequence list changed.
async fn bump_version(client: &impl GenericClient, target_id: i32) -> Result<()> {
    client
        .execute(
            "update pgferry.targets set tables_version = tables_version + 1 where target_id = $1",
            &[&target_id],
        )
        .await
        .map_err(Error::db("bumping the table list version"))?;
    Ok(())
}
