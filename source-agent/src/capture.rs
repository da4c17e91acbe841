//! The capture side in the source database: installing and upgrading
//! pgferry's schema, and adding and removing the capture triggers of a table.

use pgferry_proto::sql::{ident, literal, qualified};
use tokio_postgres::Client;

use crate::error::{Error, Result};

/// Schema scripts in order; `install` runs those newer than the database's.
const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("../sql/001_queue.sql"))];

/// Name of the row-level capture trigger on every replicated table.
const ROW_TRIGGER: &str = "pgferry_capture";
/// Name of the statement-level TRUNCATE capture trigger.
const TRUNCATE_TRIGGER: &str = "pgferry_capture_truncate";

/// Creates pgferry's schema, or upgrades it in place; a no-op when current.
/// Returns the version before and after.
pub async fn install(client: &mut Client) -> Result<(i32, i32)> {
    Ok(pgferry_proto::install::install(client, MIGRATIONS).await?)
}

/// Fails with [`Error::NotInstalled`] unless `install` has run.
pub async fn ensure_installed(client: &Client) -> Result<()> {
    match pgferry_proto::install::is_installed(client).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::NotInstalled),
        Err(source) => Err(Error::Db {
            context: "checking the pgferry schema",
            source,
        }),
    }
}

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

    /// The quoted, qualified name for SQL text.
    pub fn quoted(&self) -> String {
        qualified(&self.schema, &self.name)
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// Starts capturing `table` into the queue, to be applied to `target`.
/// Refuses, changing nothing, a table that is missing, keyless, already
/// replicated or not empty. Returns the new table id.
pub async fn add_table(client: &mut Client, table: &str, target: Option<&str>) -> Result<i32> {
    ensure_installed(client).await?;
    let source = TableName::parse(client, table).await?;
    let target = match target {
        Some(t) => TableName::parse(client, t).await?,
        None => source.clone(),
    };
    let tx = client.transaction().await.map_err(Error::db("add-table"))?;
    let row = tx
        .query_opt(
            "select c.oid, c.relkind::text from pg_class c join pg_namespace n on n.oid = c.relnamespace
             where n.nspname = $1 and c.relname = $2",
            &[&source.schema, &source.name],
        )
        .await
        .map_err(Error::db("add-table: looking up the table"))?
        .ok_or_else(|| Error::UnknownTable(source.to_string()))?;
    let relid: u32 = row.get(0);
    let relkind: String = row.get(1);
    if relkind != "r" && relkind != "p" {
        return Err(Error::NotATable(source.to_string()));
    }
    let key: Vec<String> = tx
        .query_opt(
            "select array(select a.attname::text
                          from unnest((i.indkey::int2[])[0:i.indnkeyatts - 1]) with ordinality k(attnum, ord)
                          join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
                          order by k.ord)
             from pg_index i
             where i.indrelid = $1 and i.indisunique and i.indisvalid
               and i.indpred is null and i.indexprs is null
               and not exists (select from unnest(i.indkey::int2[]) k(attnum)
                               join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
                               where not a.attnotnull)
             order by i.indisprimary desc, i.indnkeyatts
             limit 1",
            &[&relid],
        )
        .await
        .map_err(Error::db("add-table: finding the key"))?
        .map(|row| row.get(0))
        .ok_or_else(|| Error::NoKey(source.to_string()))?;
    let known: Option<bool> = tx
        .query_opt(
            "select removed from pgferry.tables where relid = $1",
            &[&relid],
        )
        .await
        .map_err(Error::db("add-table"))?
        .map(|row| row.get(0));
    if known == Some(false) {
        return Err(Error::AlreadyAdded(source.to_string()));
    }
    // Hold off writers until the capture triggers exist, so no row slips in
    // between the emptiness check and the first captured change.
    tx.batch_execute(&format!(
        "lock table {} in share row exclusive mode",
        source.quoted()
    ))
    .await
    .map_err(Error::db("add-table: locking the table"))?;
    let populated: bool = tx
        .query_one(
            &format!("select exists (select from {})", source.quoted()),
            &[],
        )
        .await
        .map_err(Error::db("add-table: checking for rows"))?
        .get(0);
    if populated {
        return Err(Error::NotEmpty(source.to_string()));
    }
    let table_id: i32 = tx
        .query_one(
            "insert into pgferry.tables (relid, source_schema, source_name, target_schema, target_name, key_columns)
             values ($1, $2, $3, $4, $5, $6)
             on conflict (relid) do update
               set removed = false, target_schema = excluded.target_schema,
                   target_name = excluded.target_name, key_columns = excluded.key_columns
             returning table_id",
            &[&relid, &source.schema, &source.name, &target.schema, &target.name, &key],
        )
        .await
        .map_err(Error::db("add-table: registering the table"))?
        .get(0);
    let id = literal(&table_id.to_string());
    let key_args: String = key.iter().map(|k| format!(", {}", literal(k))).collect();
    let t = source.quoted();
    tx.batch_execute(&format!(
        "create trigger {row} after insert or update or delete on {t}
           for each row execute function pgferry.capture({id}{key_args});
         create trigger {trunc} after truncate on {t}
           for each statement execute function pgferry.capture({id});
         alter table {t} enable always trigger {row};
         alter table {t} enable always trigger {trunc};",
        row = ident(ROW_TRIGGER),
        trunc = ident(TRUNCATE_TRIGGER),
    ))
    .await
    .map_err(Error::db("add-table: creating the capture triggers"))?;
    tx.commit().await.map_err(Error::db("add-table"))?;
    tracing::info!(table = %source, target = %target, table_id, key = ?key, "table added");
    Ok(table_id)
}

/// Stops capturing `table`. Changes already captured still ship; the table's
/// registration goes once they are acknowledged.
pub async fn remove_table(client: &mut Client, table: &str) -> Result<()> {
    ensure_installed(client).await?;
    let source = TableName::parse(client, table).await?;
    let tx = client
        .transaction()
        .await
        .map_err(Error::db("remove-table"))?;
    let found = tx
        .query_opt(
            "update pgferry.tables set removed = true
             where source_schema = $1 and source_name = $2 and not removed
             returning table_id",
            &[&source.schema, &source.name],
        )
        .await
        .map_err(Error::db("remove-table"))?;
    if found.is_none() {
        return Err(Error::NotReplicated(source.to_string()));
    }
    let t = source.quoted();
    tx.batch_execute(&format!(
        "drop trigger if exists {} on {t}; drop trigger if exists {} on {t};",
        ident(ROW_TRIGGER),
        ident(TRUNCATE_TRIGGER)
    ))
    .await
    .map_err(Error::db("remove-table: dropping the capture triggers"))?;
    tx.commit().await.map_err(Error::db("remove-table"))?;
    tracing::info!(table = %source, "table removed");
    Ok(())
}
