//! The operator's side of schema changes: `ddl-done`, which tells pgferry
//! that a target stopped at a schema change (`--ddl pause`, or a change that
//! failed there) has had it made by hand.

use tokio_postgres::Client;

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
