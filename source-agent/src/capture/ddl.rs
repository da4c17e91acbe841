//! The operator's side of schema changes: `ddl`, which runs DDL and records
//! the schema changes it makes where no DDL watch does, and `ddl-done`,
//! which tells pgferry that a target stopped at a schema change (`--ddl
//! pause`, or a change that failed there) has had it made by hand.

use tokio_postgres::Client;

/// Runs `sql` on the source and records, in the same transaction, the
/// schema change of each replicated table whose columns or name it changed
/// (`pgferry.record_schema_changes`); returns those tables. Nothing is
/// recorded, or run, if the SQL fails.
pub async fn run(client: &mut Client, sql: &str) -> Result<Vec<String>> {
    let tx = client
        .transaction()
        .await
        .map_err(Error::db("starting the DDL's transaction"))?;
    // Which files the tables have now: one the DDL replaces was rewritten.
    let filenodes: String = tx
        .query_one(
            "select coalesce(string_agg(relid || ':' || pg_relation_filenode(relid), ','), '') || ','
             from (select distinct relid from pgferry.tables where not removed) t",
            &[],
        )
        .await
        .map_err(Error::db("reading the replicated tables' files"))?
        .get(0);
    tx.batch_execute(sql)
        .await
        .map_err(Error::db("running the DDL"))?;
    let tables = tx
        .query(
            "select pgferry.record_schema_changes($1, $2)",
            &[&filenodes, &sql],
        )
        .await
        .map_err(Error::db("recording the schema changes"))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    tx.commit().await.map_err(Error::db("committing the DDL"))?;
    Ok(tables)
}

use crate::error::{Error, Result};

/// Records that target `target_id` has schema change `id` (its queue seq)
/// made by hand: the target takes the new shape without making it when the
/// batch comes again. Returns the table's name.
pub async fn done(client: &Client, target_id: i32, id: i64) -> Result<String> {
    let row = client
        .query_opt(
            "with change as (
                 select t.source_schema || '.' || t.source_name as name
                 from pgferry.queue q
                 join pgferry.tables t on t.capture_id = q.table_id and t.target_id = $1
                 where q.seq = $2 and q.op = 'S'
                 limit 1
             ), recorded as (
                 insert into pgferry.ddl_done (target_id, seq)
                 select $1, $2 from change
                 on conflict do nothing
             )
             select name from change",
            &[&target_id, &id],
        )
        .await
        .map_err(Error::db("recording a schema change as done"))?;
    row.map(|r| r.get(0)).ok_or(Error::UnknownSchemaChange(id))
}
