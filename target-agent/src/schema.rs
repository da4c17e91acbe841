//! Checks a source's announced tables against the target database and builds
//! the statements that apply changes to them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use pgferry_proto::wire::{SequenceSchema, TableSchema};
use pgferry_runtime::digest;
use pgferry_runtime::sql::{ident, qualified};
use tokio_postgres::Client;

use crate::error::{Error, Result};

/// A checked target table and its apply statements. Every statement takes
/// one text parameter: a JSON array of rows (or keys) in source order.
#[derive(Debug, Clone)]
pub struct TablePlan {
    /// `schema.table` on the target, for messages.
    pub name: String,
    /// The target schema.
    pub schema: String,
    /// The target table.
    pub table: String,
    /// The quoted, qualified name.
    pub quoted: String,
    /// Insert-or-update of a run of rows, keeping the last row per key.
    pub upsert: String,
    /// Plain insert of a run of rows the source inserted (see
    /// [`crate::apply::step::RunKind::Insert`]).
    pub insert: String,
    /// Delete of a run of keys.
    pub delete: String,
    /// `TRUNCATE ONLY ... CASCADE`, as the source did.
    pub truncate: String,
    /// Empties the table before its initial copy: `TRUNCATE ONLY`, or
    /// `DELETE` when a foreign key references the table (PostgreSQL refuses
    /// to truncate it; the delete fails only if a referencing row needs one
    /// of its rows, and then the batch rolls back whole).
    pub clear: String,
    /// `COPY ... FROM STDIN` of the replicated columns, for the initial copy.
    pub copy_in: String,
    /// The key columns, when a batch's changes to the table may be applied
    /// net of those a later change overwrites (see [`crate::apply::compact`]): an
    /// ordinary table whose rows nothing ties to other rows, so no order of
    /// its changes inside a batch can fail or be seen. No foreign key to or
    /// from it, no unique index but the key's, no exclusion constraint, no
    /// trigger but the guard.
    pub compact_key: Option<Vec<String>>,
    /// The table's rows as `verify` reads them (`pgferry_runtime::digest`).
    pub digest: digest::Rows,
}

impl TablePlan {
    /// The table as the guard sees it.
    pub fn guarded(&self) -> crate::guard::Guarded<'_> {
        crate::guard::Guarded {
            schema: &self.schema,
            table: &self.table,
            quoted: &self.quoted,
            name: &self.name,
        }
    }
}

/// A column of a target table, as its catalog has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetColumn {
    /// Its type as the target names it (format_type).
    pub sql_type: String,
    /// Whether it is NOT NULL.
    pub not_null: bool,
    /// Its default's expression, if any.
    pub default: Option<String>,
    /// Whether the target computes it (a generated column).
    pub generated: bool,
}

/// The columns of target table `quoted` (quoted, qualified), by name.
pub async fn columns(client: &Client, quoted: &str) -> Result<HashMap<String, TargetColumn>> {
    let rows = client
        .query(
            "select a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                    case when a.attgenerated = '' then pg_get_expr(d.adbin, d.adrelid) end,
                    a.attgenerated <> ''
             from pg_attribute a
             left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
             where a.attrelid = $1::text::regclass and a.attnum > 0 and not a.attisdropped",
            &[&quoted],
        )
        .await
        .map_err(Error::db("reading target columns"))?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let column = TargetColumn {
                sql_type: r.get(1),
                not_null: r.get(2),
                default: r.get(3),
                generated: r.get(4),
            };
            (r.get(0), column)
        })
        .collect())
}

/// The columns of target table `quoted` and their types (format_type).
pub async fn column_types(client: &Client, quoted: &str) -> Result<HashMap<String, String>> {
    Ok(columns(client, quoted)
        .await?
        .into_iter()
        .map(|(name, column)| (name, column.sql_type))
        .collect())
}

/// Checks that the target table of `table` exists (creating it when the
/// source asks and it is missing), has the source's columns with the same
/// types (extra target columns must be nullable or have a default) and a
/// unique index on the key, and builds its plan (with MERGE when `merge`:
/// the server is PostgreSQL 15 or newer).
pub async fn check(client: &Client, table: &TableSchema, merge: bool) -> Result<TablePlan> {
    checked(client, table, merge, true).await
}

/// [`check`] for rows that carry only some of the table's columns (see
/// `apply::shape`): a target column they lack may be NOT NULL without a
/// default, since an update of the columns they carry (the source ships
/// the columns an UPDATE changed) leaves it as it is. An insert of such a
/// row fails, naming the column.
pub async fn check_shape(client: &Client, table: &TableSchema, merge: bool) -> Result<TablePlan> {
    checked(client, table, merge, false).await
}

async fn checked(
    client: &Client,
    table: &TableSchema,
    merge: bool,
    whole_rows: bool,
) -> Result<TablePlan> {
    let name = format!("{}.{}", table.target_schema, table.target_table);
    let mut relid = table_oid(client, table).await?;
    if relid.is_none() && table.create_if_missing {
        create(client, table).await?;
        tracing::info!(table = %name, source_table = %table.source_name, "created target table");
        relid = table_oid(client, table).await?;
    }
    let relid = relid.ok_or_else(|| Error::UnknownTable {
        table: name.clone(),
        source_table: table.source_name.clone(),
    })?;
    let rows = client
        .query(
            "select a.attname::text, format_type(a.atttypid, a.atttypmod),
                    a.attnotnull and not a.atthasdef, pgferry.text_form(a.atttypid)
             from pg_attribute a
             where a.attrelid = $1 and a.attnum > 0 and not a.attisdropped and a.attgenerated = ''",
            &[&relid],
        )
        .await
        .map_err(Error::db("reading target columns"))?;
    let text_form: BTreeSet<String> = rows
        .iter()
        .filter(|r| r.get::<_, bool>(3))
        .map(|r| r.get(0))
        .collect();
    let target: BTreeMap<String, (String, bool)> = rows
        .into_iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    let mismatch = column_mismatch(table, &target, whole_rows);
    if !mismatch.is_empty() {
        return Err(Error::ColumnMismatch {
            table: name,
            source_table: table.source_name.clone(),
            mismatch: mismatch.join("; "),
        });
    }
    // The key's index, and whether anything ties the table's rows to others.
    let row = client
        .query_one(
            "with key_index as (
               select i.indexrelid from pg_index i
               where i.indrelid = $1 and i.indisunique and i.indisvalid and i.indpred is null
                 and i.indexprs is null
                 and array(select a.attname::text
                           from unnest((i.indkey::int2[])[0:i.indnkeyatts - 1]) k(attnum)
                           join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
                           order by 1) = array(select unnest($2::text[]) order by 1))
             select exists (select from key_index),
                    (select relkind = 'r' from pg_class where oid = $1)
                    and not exists (select from pg_constraint
                                    where (conrelid = $1 or confrelid = $1) and contype in ('f', 'x'))
                    and not exists (select from pg_index i
                                    where i.indrelid = $1 and i.indisunique
                                      and i.indexrelid not in (select indexrelid from key_index))
                    and not exists (select from pg_trigger
                                    where tgrelid = $1 and not tgisinternal
                                      and tgname <> $3),
                    exists (select from pg_constraint where confrelid = $1 and contype = 'f'),
                    (select relkind = 'p' from pg_class where oid = $1),
                    case when row_security_active($1::regclass)
                         then coalesce((select string_agg(quote_ident(polname), ', ' order by polname)
                                        from pg_policy where polrelid = $1), 'none: every row hidden')
                    end",
            &[&relid, &table.key_columns, &crate::guard::TRIGGER],
        )
        .await
        .map_err(Error::db("reading the target table's key and constraints"))?;
    let (has_key, unbound, referenced, partitioned): (bool, bool, bool, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    if let Some(policies) = row.get::<_, Option<String>>(4) {
        return Err(Error::RowSecurity {
            table: name,
            policies,
        });
    }
    if !has_key {
        return Err(Error::NoUniqueKey {
            table: name,
            source_table: table.source_name.clone(),
            columns: table.key_columns.join(", "),
        });
    }
    let plan = plan(name, table, &text_form, merge, partitioned);
    Ok(TablePlan {
        compact_key: unbound.then(|| table.key_columns.clone()),
        clear: if referenced {
            format!("delete from {}", plan.digest.relation)
        } else {
            plan.truncate.clone()
        },
        ..plan
    })
}

async fn table_oid(client: &Client, table: &TableSchema) -> Result<Option<u32>> {
    Ok(client
        .query_opt(
            "select c.oid from pg_class c join pg_namespace n on n.oid = c.relnamespace
             where n.nspname = $1 and c.relname = $2 and c.relkind in ('r', 'p')",
            &[&table.target_schema, &table.target_table],
        )
        .await
        .map_err(Error::db("looking up a target table"))?
        .map(|row| row.get(0)))
}

/// Creates the target table from the source's definition: columns, types,
/// NOT NULL and the key (no foreign keys, defaults or other constraints).
async fn create(client: &Client, table: &TableSchema) -> Result<()> {
    let columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| {
            let not_null = if c.not_null { " not null" } else { "" };
            format!("{} {}{not_null}", ident(&c.name), c.sql_type)
        })
        .collect();
    let keys: Vec<String> = table.key_columns.iter().map(|k| ident(k)).collect();
    let sql = format!(
        "create schema if not exists {schema};
         create table {table} ({columns}, primary key ({keys}))",
        schema = ident(&table.target_schema),
        table = qualified(&table.target_schema, &table.target_table),
        columns = columns.join(", "),
        keys = keys.join(", "),
    );
    client
        .batch_execute(&sql)
        .await
        .map_err(|source| Error::Create {
            table: format!("{}.{}", table.target_schema, table.target_table),
            source,
        })
}

/// The oid of a replicated sequence's target, created when the source asks
/// and it is missing. A sequence a column of `table` (planned, as the
/// stream announced it) takes its default from on the source is kept as
/// the sequence that column takes its default from on the target, when it
/// has one; `None` when it has neither that nor the named sequence and may
/// not create it (a target column that draws from no sequence has nothing
/// to keep in step), or may not set it.
pub async fn check_sequence(
    client: &Client,
    sequence: &SequenceSchema,
    table: Option<&TablePlan>,
) -> Result<Option<u32>> {
    let own = match table {
        Some(table) => client
            .query_opt(COLUMN_SEQUENCE, &[&table.quoted, &sequence.column])
            .await
            .map_err(Error::db("looking up a column's sequence"))?
            .map(|row| row.get::<_, u32>(0)),
        None => None,
    };
    let name = qualified(&sequence.target_schema, &sequence.target_name);
    let find = || async {
        client
            .query_opt(
                "select c.oid from pg_class c join pg_namespace n on n.oid = c.relnamespace
                 where n.nspname = $1 and c.relname = $2 and c.relkind = 'S'",
                &[&sequence.target_schema, &sequence.target_name],
            )
            .await
            .map_err(Error::db("looking up a target sequence"))
            .map(|row| row.map(|r| r.get::<_, u32>(0)))
    };
    let mut oid = match own {
        Some(oid) => Some(oid),
        None => find().await?,
    };
    if oid.is_none() && sequence.create_if_missing {
        client
            .batch_execute(&format!(
                "create schema if not exists {}; create sequence if not exists {name}",
                ident(&sequence.target_schema)
            ))
            .await
            .map_err(|source| Error::Create {
                table: format!("{}.{}", sequence.target_schema, sequence.target_name),
                source,
            })?;
        oid = find().await?;
    }
    match oid {
        None if sequence.table_id != 0 => {
            tracing::info!(
                sequence = %sequence.source_name,
                column = %sequence.column,
                "the target column takes its default from no sequence: the source's sequence is not kept on this target"
            );
            Ok(None)
        }
        None => Err(Error::UnknownSequence {
            sequence: format!("{}.{}", sequence.target_schema, sequence.target_name),
            source_sequence: sequence.source_name.clone(),
        }),
        Some(oid) if sequence.table_id != 0 => {
            // A table's sequence came with the table, unasked: one the
            // applier may not set is passed over rather than stopping
            // every table of the stream.
            let settable: bool = client
                .query_one("select has_sequence_privilege($1::oid, 'UPDATE')", &[&oid])
                .await
                .map_err(Error::db("looking up a target sequence"))?
                .get(0);
            if !settable {
                tracing::warn!(
                    sequence = %sequence.source_name,
                    column = %sequence.column,
                    "the applier may not set the target column's sequence: the source's sequence is not kept on this target"
                );
            }
            Ok(settable.then_some(oid))
        }
        Some(oid) => Ok(Some(oid)),
    }
}

/// The sequence column $2 of table $1 (quoted) takes its default from: a
/// default calling nextval (serial), or the column's identity.
const COLUMN_SEQUENCE: &str = "
    with col as (select attrelid, attnum from pg_attribute
                 where attrelid = to_regclass($1) and attname::text = $2 and not attisdropped)
    select s.oid
    from (select d.refobjid as seq
          from col
          join pg_attrdef ad on ad.adrelid = col.attrelid and ad.adnum = col.attnum
          join pg_depend d on d.classid = 'pg_attrdef'::regclass and d.objid = ad.oid
                          and d.refclassid = 'pg_class'::regclass
          union all
          select d.objid
          from col
          join pg_depend d on d.classid = 'pg_class'::regclass and d.refclassid = 'pg_class'::regclass
                          and d.refobjid = col.attrelid and d.refobjsubid = col.attnum
                          and d.deptype = 'i') used
    join pg_class s on s.oid = used.seq and s.relkind = 'S'
    limit 1";

/// What differs between the source's columns and the target's, one line per
/// column; empty when they match. A target column that is NOT NULL without
/// a default matters only to rows that are inserted whole (`whole_rows`).
fn column_mismatch(
    table: &TableSchema,
    target: &BTreeMap<String, (String, bool)>,
    whole_rows: bool,
) -> Vec<String> {
    let source: BTreeSet<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
    let mut problems = Vec::new();
    let missing: Vec<&str> = table
        .columns
        .iter()
        .filter(|c| !target.contains_key(&c.name))
        .map(|c| c.name.as_str())
        .collect();
    if !missing.is_empty() {
        problems.push(format!(
            "columns missing on the target: {}",
            missing.join(", ")
        ));
    }
    for column in &table.columns {
        if let Some((sql_type, _)) = target.get(&column.name)
            && *sql_type != column.sql_type
        {
            problems.push(format!(
                "column {} is {} on the source but {} on the target",
                column.name, column.sql_type, sql_type
            ));
        }
    }
    let required: Vec<&str> = target
        .iter()
        .filter(|(name, (_, required))| whole_rows && *required && !source.contains(name.as_str()))
        .map(|(name, _)| name.as_str())
        .collect();
    if !required.is_empty() {
        problems.push(format!(
            "NOT NULL columns without default only on the target: {}",
            required.join(", ")
        ));
    }
    problems
}

/// Builds the set-based statements of one table (docs/architecture.md,
/// Apply). Columns in `text_form` arrive as their text form (see
/// `pgferry.text_form`) and are read back through their type's input
/// function, as COPY reads them.
fn plan(
    name: String,
    table: &TableSchema,
    text_form: &BTreeSet<String>,
    merge: bool,
    partitioned: bool,
) -> TablePlan {
    let quoted = qualified(&table.target_schema, &table.target_table);
    // An ordinary table's rows without its inheritance children's (not its
    // rows); a partitioned table's rows are its partitions'.
    let only = if partitioned { "" } else { "only " };
    let columns: Vec<String> = table.columns.iter().map(|c| ident(&c.name)).collect();
    let keys: Vec<String> = table.key_columns.iter().map(|k| ident(k)).collect();
    let list = columns.join(", ");
    let prefixed = |alias: &str, names: &[String]| {
        names
            .iter()
            .map(|n| format!("{alias}.{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // Rows are parsed straight to the columns' types (checked equal on both
    // sides): json_to_recordset over the JSON text reads each row once,
    // where jsonb elements fed to jsonb_populate_record one by one cost the
    // apply more.
    // Each of `names` (quoted) as `f(name, type, text form)` gives it, joined.
    let each = |names: &[String], f: &dyn Fn(String, &str, bool) -> String| {
        table
            .columns
            .iter()
            .filter(|c| names.contains(&ident(&c.name)))
            .map(|c| f(ident(&c.name), &c.sql_type, text_form.contains(&c.name)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // The recordset's definition: text forms read as text, ...
    let typed = |names: &[String]| {
        each(names, &|name, sql_type, text| {
            format!("{name} {}", if text { "text" } else { sql_type })
        })
    };
    // ... and then through their type's input function, from the
    // recordset aliased `alias`.
    let read = |alias: &str, names: &[String]| {
        each(names, &|name, sql_type, text| {
            if text {
                format!("{alias}.{name}::{sql_type} as {name}")
            } else {
                format!("{alias}.{name}")
            }
        })
    };
    // The position of each row in its run, under a name no column has.
    let mut ord = "pgferry_ord".to_string();
    while columns.contains(&ident(&ord)) {
        ord.push('_');
    }
    let ord = ident(&ord);
    let rows = prefixed("r", &columns);
    let key_order = prefixed("r", &keys);
    // The last row of each key, in key order.
    let last_rows = format!(
        "select distinct on ({key_order}) {rows}
         from (select {read_columns}, r.{ord}
               from rows from (json_to_recordset($1::text::json) as ({typed_columns}))
                    with ordinality as r({list}, {ord})) as r
         order by {key_order}, r.{ord} desc",
        read_columns = read("r", &columns),
        typed_columns = typed(&columns),
    );
    // The source inserted these rows, so no key repeats and none is on the
    // target (the applier is its only writer): no key lookup, no sort.
    let insert = format!(
        "insert into {quoted} ({list})
         select {read_columns} from json_to_recordset($1::text::json) as r({typed_columns})",
        read_columns = read("r", &columns),
        typed_columns = typed(&columns),
    );
    let upsert = if merge {
        // MERGE inserts a missing row without ON CONFLICT's speculative
        // insertion and updates a present one without locking it first,
        // both cheaper per row. The applier session plans only nested loops, so
        // each row is found through the key's index whatever the
        // statistics say.
        let on = keys
            .iter()
            .map(|k| format!("t.{k} = n.{k}"))
            .collect::<Vec<_>>()
            .join(" and ");
        let set = columns
            .iter()
            .filter(|c| !keys.contains(c))
            .map(|c| format!("{c} = n.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let matched = if set.is_empty() {
            "do nothing".to_string()
        } else {
            format!("update set {set}")
        };
        format!(
            "merge into {only}{quoted} as t
             using ({last_rows}) as n
             on {on}
             when matched then {matched}
             when not matched then insert ({list}) values ({values})",
            values = prefixed("n", &columns),
        )
    } else {
        let set = columns
            .iter()
            .map(|c| format!("{c} = excluded.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "insert into {quoted} as t ({list})
             {last_rows}
             on conflict ({key_list}) do update set {set}",
            key_list = keys.join(", "),
        )
    };
    // Row `alias` has the key of row r.
    let matches = |alias: &str| {
        keys.iter()
            .map(|k| format!("{alias}.{k} = r.{k}"))
            .collect::<Vec<_>>()
            .join(" and ")
    };
    // Each key is looked up on its own, by an index condition, and its row
    // deleted by ctid, whatever the table's statistics say: a table vacuumed
    // while empty keeps reltuples = 0, and after a batch filled it a join was
    // planned as a full scan per statement, for minutes on a large batch.
    // The applier session plans no sequential scans.
    let keys_read = format!(
        "select {read_keys} from json_to_recordset($1::text::json) as r({typed_keys})",
        read_keys = read("r", &keys),
        typed_keys = typed(&keys),
    );
    let delete = if partitioned {
        // A ctid names a row only within its partition: each key is
        // joined to its row instead, through the partitions' key index
        // (the applier plans nested loops only).
        format!(
            "delete from {quoted} as t using ({keys_read}) as r where {}",
            matches("t")
        )
    } else {
        format!(
            "delete from only {quoted} as t
             where t.ctid = any(array(
                 select (select s.ctid from only {quoted} as s where {})
                 from ({keys_read}) as r))",
            matches("s")
        )
    };
    // CASCADE: the source emptied the table, so no target row may still
    // reference it; a source's TRUNCATE ... CASCADE emptied the tables that
    // reference it there too, replicated or not (docs/reference.md,
    // "Foreign keys on the target").
    let truncate = format!("truncate {only}{quoted} cascade");
    let copy_in = format!("copy {quoted} ({list}) from stdin");
    let compared = |names: &[String]| -> Vec<digest::Column> {
        names
            .iter()
            .filter_map(|n| table.columns.iter().find(|c| c.name == *n))
            .map(|c| digest::Column {
                name: c.name.clone(),
                sql_type: c.sql_type.clone(),
                text_form: text_form.contains(&c.name),
            })
            .collect()
    };
    let all: Vec<String> = table.columns.iter().map(|c| c.name.clone()).collect();
    let digest = digest::Rows {
        relation: format!("{only}{quoted}"),
        columns: compared(&all),
        keys: compared(&table.key_columns),
        filter: None,
    };
    TablePlan {
        name,
        schema: table.target_schema.clone(),
        table: table.target_table.clone(),
        quoted,
        upsert,
        insert,
        delete,
        clear: truncate.clone(),
        truncate,
        copy_in,
        compact_key: None,
        digest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgferry_proto::wire::Column;

    fn table() -> TableSchema {
        TableSchema {
            table_id: 1,
            source_name: "digoal.loc_test".into(),
            source_schema: "digoal".into(),
            source_table: "loc_test".into(),
            target_schema: "digoal".into(),
            target_table: "rmt_test".into(),
            columns: vec![
                Column {
                    name: "id".into(),
                    sql_type: "integer".into(),
                    not_null: true,
                    attnum: 1,
                },
                Column {
                    name: "info".into(),
                    sql_type: "text".into(),
                    not_null: false,
                    attnum: 2,
                },
            ],
            key_columns: vec!["id".into()],
            create_if_missing: false,
            generated_columns: Vec::new(),
            earlier_forms: Vec::new(),
            copy_pending: false,
        }
    }

    #[test]
    fn mismatched_columns_are_named() {
        let target: BTreeMap<String, (String, bool)> = [
            ("id".to_string(), ("bigint".to_string(), true)),
            ("extra".to_string(), ("text".to_string(), true)),
            ("note".to_string(), ("text".to_string(), false)),
        ]
        .into();
        assert_eq!(
            column_mismatch(&table(), &target, true),
            vec![
                "columns missing on the target: info".to_string(),
                "column id is integer on the source but bigint on the target".to_string(),
                "NOT NULL columns without default only on the target: extra".to_string(),
            ]
        );
    }

    #[test]
    fn hostile_names_are_quoted_in_every_statement() {
        let mut t = table();
        t.target_table = "\"; drop table x; --".into();
        for merge in [false, true] {
            let plan = plan("x".into(), &t, &BTreeSet::new(), merge, false);
            for sql in [
                &plan.upsert,
                &plan.insert,
                &plan.delete,
                &plan.truncate,
                &plan.clear,
                &plan.copy_in,
            ] {
                assert!(
                    sql.contains("\"digoal\".\"\"\"; drop table x; --\""),
                    "{sql}"
                );
            }
        }
    }
}
