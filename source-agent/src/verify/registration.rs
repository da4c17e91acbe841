//! The registrations `verify` and `repair` compare, read with what the
//! digest needs of each: the source relation, its replicated columns
//! (without those it computes), the key and the row filter.

use pgferry_runtime::digest::{Column, Rows};
use tokio_postgres::Client;

use crate::error::{Error, Result};

/// One table's registration for one target.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The registration's id (the stream's table id).
    pub table_id: i32,
    /// Its target.
    pub target_id: i32,
    /// The target's name.
    pub target: String,
    /// schema.table on the source.
    pub source: String,
    /// schema.table on the target.
    pub target_table: String,
    /// `copy_pending`, `copying` or `replicating`.
    pub state: String,
    /// Whether it was set aside (its changes no longer go to the target).
    pub set_aside: bool,
    /// Its rows as the digest reads them.
    pub rows: Rows,
}

/// The live registrations of target `target` (every target when `None`)
/// of the tables named in `tables` (SCHEMA.TABLE on the source; every
/// table when empty), by target and table.
pub async fn list(
    client: &Client,
    target: Option<&str>,
    tables: &[String],
) -> Result<Vec<Registration>> {
    if let Some(name) = target {
        crate::targets::resolve(client, Some(name)).await?;
    }
    let rows = client
        .query(
            "select t.table_id, t.target_id, g.name, t.source_schema || '.' || t.source_name,
                    t.target_schema || '.' || t.target_name,
                    (select case when c.relkind = 'p' then '' else 'only ' end
                            || format('%I.%I', n.nspname, c.relname)
                     from pg_class c join pg_namespace n on n.oid = c.relnamespace
                     where c.oid = t.relid),
                    t.state, t.set_aside_batch is not null, t.row_filter, t.key_columns,
                    c.names, c.types, c.text_form
             from pgferry.tables t join pgferry.targets g using (target_id)
             cross join lateral pgferry.replicated_column_lists(t.relid, t.columns) c
             where not t.removed and ($1::text is null or g.name = $1)
             order by g.name, t.source_schema, t.source_name",
            &[&target],
        )
        .await
        .map_err(Error::db("reading the replicated tables"))?;
    let all: Vec<Registration> = rows
        .into_iter()
        .map(|row| {
            let names: Vec<String> = row.get(10);
            let types: Vec<String> = row.get(11);
            let text_form: Vec<bool> = row.get(12);
            let columns: Vec<Column> = names
                .into_iter()
                .zip(types)
                .zip(text_form)
                .map(|((name, sql_type), text_form)| Column {
                    name,
                    sql_type,
                    text_form,
                })
                .collect();
            let key_columns: Vec<String> = row.get(9);
            let keys = key_columns
                .iter()
                .filter_map(|k| columns.iter().find(|c| c.name == *k).cloned())
                .collect();
            Registration {
                table_id: row.get(0),
                target_id: row.get(1),
                target: row.get(2),
                source: row.get(3),
                target_table: row.get(4),
                state: row.get(6),
                set_aside: row.get(7),
                rows: Rows {
                    relation: row.get::<_, Option<String>>(5).unwrap_or_default(),
                    columns,
                    keys,
                    filter: row.get(8),
                },
            }
        })
        .collect();
    if let Some(missing) = tables
        .iter()
        .find(|name| !all.iter().any(|r| r.source == **name))
    {
        return Err(Error::NotReplicated(missing.clone()));
    }
    Ok(all
        .into_iter()
        .filter(|r| tables.is_empty() || tables.contains(&r.source))
        .collect())
}
