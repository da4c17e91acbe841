//! The catalog the stream's hello announces: every registered table's
//! columns, types and key, every replicated sequence, and the version of
//! that list, so a running session knows when to announce it again.

use pgferry_proto::wire;
use tokio_postgres::Client;

use crate::error::{Error, Result};

/// The version of target `target_id`'s table and sequence list, bumped by
/// every change of it.
pub async fn tables_version(client: &Client, target_id: i32) -> Result<i64> {
    Ok(client
        .query_one(
            "select tables_version from pgferry.targets where target_id = $1",
            &[&target_id],
        )
        .await
        .map_err(Error::db("reading the table list version"))?
        .get(0))
}

/// The announced schema of every table registered for target `target_id`
/// (removed ones too, while changes cut before their removal are still
/// shipping), with the earlier forms its target table may still have.
pub async fn table_schemas(client: &Client, target_id: i32) -> Result<Vec<wire::TableSchema>> {
    let rows = client
        .query(
            "select t.table_id, t.source_schema || '.' || t.source_name, t.target_schema,
                    t.target_name, t.key_columns, t.create_target, t.state <> 'replicating',
                    c.names, c.types, c.not_null, c.attnums,
                    array(select a.attname::text from pg_attribute a
                          where a.attrelid = t.relid and a.attnum > 0 and not a.attisdropped
                            and a.attgenerated <> '' and (t.columns is null or a.attname = any (t.columns))),
                    t.source_schema, t.source_name
             from pgferry.tables t
             -- A table set aside, or dropped with changes still to ship, is
             -- announced as recorded: one altered without the DDL watch
             -- would otherwise not match its target.
             cross join lateral (select t.shape is not null
                                        and (t.set_aside_batch is not null
                                             or not exists (select from pg_class r where r.oid = t.relid))
                                 as recorded) k
             cross join lateral (
                 select names, types, not_null, attnums
                 from pgferry.replicated_column_lists(t.relid, t.columns)
                 where not k.recorded
                 union all
                 select * from pgferry.shape_columns(t.shape, t.columns)
                 where k.recorded) c
             where t.target_id = $1 order by t.table_id",
            &[&target_id],
        )
        .await
        .map_err(Error::db("reading the table list"))?;
    let earlier = client
        .query(
            "select table_id, target_schema, target_name, key_columns, names, types, not_null, attnums
             from pgferry.earlier_forms($1)",
            &[&target_id],
        )
        .await
        .map_err(Error::db("reading the tables' earlier forms"))?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let table_id = row.get::<_, i32>(0);
            let earlier_forms = earlier
                .iter()
                .filter(|form| form.get::<_, i32>(0) == table_id)
                .map(|form| wire::TableSchema {
                    table_id: table_id as u32,
                    source_name: row.get(1),
                    target_schema: form.get(1),
                    target_table: form.get(2),
                    key_columns: form.get(3),
                    generated_columns: row.get(11),
                    columns: columns(form, 4),
                    ..Default::default()
                })
                .collect();
            wire::TableSchema {
                earlier_forms,
                table_id: row.get::<_, i32>(0) as u32,
                source_name: row.get(1),
                target_schema: row.get(2),
                target_table: row.get(3),
                key_columns: row.get(4),
                create_if_missing: row.get(5),
                generated_columns: row.get(11),
                copy_pending: row.get(6),
                columns: columns(&row, 7),
                source_schema: row.get(12),
                source_table: row.get(13),
            }
        })
        .collect())
}

/// The columns of a row holding, from column `at` on, the arrays of
/// `pgferry.replicated_column_lists`: names, types, NOT NULL and column
/// numbers.
pub fn columns(row: &tokio_postgres::Row, at: usize) -> Vec<wire::Column> {
    let names: Vec<String> = row.get(at);
    let types: Vec<String> = row.get(at + 1);
    let not_null: Vec<bool> = row.get(at + 2);
    let attnums: Vec<i32> = row.get(at + 3);
    names
        .into_iter()
        .zip(types)
        .zip(not_null)
        .zip(attnums)
        .map(|(((name, sql_type), not_null), attnum)| wire::Column {
            name,
            sql_type,
            not_null,
            attnum,
        })
        .collect()
}

/// The sequences announced to target `target_id`.
pub async fn sequence_schemas(
    client: &Client,
    target_id: i32,
) -> Result<Vec<wire::SequenceSchema>> {
    let rows = client
        .query(
            "select s.seq_id, s.source_schema || '.' || s.source_name, s.target_schema,
                    s.target_name, s.create_target, coalesce(s.table_id, 0),
                    coalesce((select c.column_name
                              from pgferry.tables t
                              cross join lateral pgferry.column_sequences(t.relid) c
                              where t.table_id = s.table_id and c.seq = s.relid
                              order by c.column_name limit 1), '')
             from pgferry.sequences s where s.target_id = $1 order by s.seq_id",
            &[&target_id],
        )
        .await
        .map_err(Error::db("reading the sequence list"))?;
    Ok(rows
        .into_iter()
        .map(|row| wire::SequenceSchema {
            seq_id: row.get::<_, i32>(0) as u32,
            source_name: row.get(1),
            target_schema: row.get(2),
            target_name: row.get(3),
            create_if_missing: row.get(4),
            table_id: row.get::<_, i32>(5) as u32,
            column: row.get(6),
        })
        .collect())
}
