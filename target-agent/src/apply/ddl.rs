//! Schema changes at their place in the stream: a change of a source
//! table's columns or name, as its registration takes it (the source cut
//! it down to the registration's columns and named the target table), made
//! on the target table inside the batch's transaction, after the changes
//! before it and before those after it; then the table's plan is made again
//! from the new shape. What to run is worked out by column number against
//! the target's own columns, so a target already in the new shape (the
//! operator made the change by hand) runs nothing.

use std::collections::HashMap;

use pgferry_proto::wire;
use pgferry_runtime::sql::{ident, qualified};
use serde::Deserialize;
use tokio_postgres::Client;

use super::tables::Tables;
use crate::error::{Error, Result};
use crate::guard;
use crate::schema::{self, TargetColumn};

/// A schema change as the source sends it (`Op::Schema`).
#[derive(Debug, Deserialize)]
pub(crate) struct SchemaChange {
    /// The registration's columns before the change, by column number.
    before: Vec<ShapeColumn>,
    /// And after it.
    after: Vec<ShapeColumn>,
    /// The target table after the change.
    schema: String,
    table: String,
    /// The command the source ran, for messages.
    command: String,
    /// What the target does with it.
    mode: Mode,
}

/// One column of a shape.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub(crate) struct ShapeColumn {
    attnum: i32,
    name: String,
    #[serde(rename = "type")]
    sql_type: String,
    not_null: bool,
    default: Option<String>,
    /// Whether the source computes it, and from what: the target computes
    /// it too, and rows do not set it.
    #[serde(default)]
    generated: bool,
    #[serde(default)]
    generation: Option<String>,
}

/// What the target does with a schema change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    /// Makes it (`add-target --ddl apply`, the default).
    Apply,
    /// Waits for the operator to make it and say so (`--ddl pause`),
    /// unless the target already has the new shape.
    Pause,
    /// The operator made it (`ddl-done`): take the new shape as it is.
    Done,
}

/// The target table's columns by name.
type Current = HashMap<String, TargetColumn>;

/// Whether a type the source names (schema-qualified where not in
/// pg_catalog) is the one the target names `target` (qualified only where
/// its search_path does not find it).
fn same_type(source: &str, target: &str) -> bool {
    source == target
        || source
            .split_once('.')
            .is_some_and(|(schema, rest)| !schema.contains('(') && rest == target)
}

/// The statements that take the target table `quoted` (with columns
/// `current`) from `before` to `after`: for what the change altered and
/// the target does not already have. Drops first (a name may come back),
/// then each column's rename, type, NOT NULL and default, then additions.
/// None when the target already has the new shape (the operator made the
/// change by hand).
fn statements(
    quoted: &str,
    before: &[ShapeColumn],
    after: &[ShapeColumn],
    current: &Current,
) -> Vec<String> {
    let alter = |what: String| format!("alter table {quoted} {what}");
    let mut out = Vec::new();
    let kept = |b: &ShapeColumn| after.iter().any(|a| a.attnum == b.attnum);
    for b in before.iter().filter(|b| !kept(b)) {
        if current.contains_key(&b.name) && !after.iter().any(|a| a.name == b.name) {
            out.push(alter(format!("drop column {}", ident(&b.name))));
        }
    }
    let mut additions = Vec::new();
    for a in after {
        let name = ident(&a.name);
        let Some(b) = before.iter().find(|b| b.attnum == a.attnum) else {
            if !current.contains_key(&a.name) {
                let default = match (&a.generation, &a.default) {
                    (Some(expression), _) if a.generated => {
                        format!(" generated always as ({expression}) stored")
                    }
                    (_, Some(default)) => format!(" default {default}"),
                    _ => String::new(),
                };
                let not_null = if a.not_null { " not null" } else { "" };
                additions.push(alter(format!(
                    "add column {name} {}{default}{not_null}",
                    a.sql_type
                )));
            }
            continue;
        };
        let column = if b.name != a.name && !current.contains_key(&a.name) {
            if current.contains_key(&b.name) {
                out.push(alter(format!("rename column {} to {name}", ident(&b.name))));
            }
            current.get(&b.name)
        } else {
            current.get(&a.name)
        };
        let Some(column) = column else {
            continue;
        };
        if b.sql_type != a.sql_type && !same_type(&a.sql_type, &column.sql_type) {
            // A computed column is computed again; it takes no USING.
            out.push(alter(match a.generated {
                true => format!("alter column {name} type {}", a.sql_type),
                false => format!(
                    "alter column {name} type {t} using {name}::{t}",
                    t = a.sql_type
                ),
            }));
        }
        if b.generated && !a.generated && column.generated {
            out.push(alter(format!("alter column {name} drop expression")));
        }
        if b.not_null != a.not_null && column.not_null != a.not_null {
            let set = if a.not_null { "set" } else { "drop" };
            out.push(alter(format!("alter column {name} {set} not null")));
        }
        if b.default != a.default && column.default != a.default {
            out.push(alter(match &a.default {
                Some(default) => format!("alter column {name} set default {default}"),
                None => format!("alter column {name} drop default"),
            }));
        }
    }
    out.extend(additions);
    out
}

impl Tables {
    /// Makes schema change `seq` (JSON `text`) of table `table_id` on the
    /// target, on the applier's settled session `client`, in the open
    /// batch's transaction; then plans the table's rows in its new shape
    /// (the caller forgets its prepared statements).
    pub(super) async fn apply_schema_change(
        &mut self,
        client: &Client,
        batch_id: u64,
        seq: u64,
        table_id: u32,
        text: &str,
    ) -> Result<()> {
        let change: SchemaChange =
            serde_json::from_str(text).map_err(|error| Error::BadSchemaChange {
                batch_id,
                seq,
                problem: error.to_string(),
            })?;
        let plan = &self.plans[&table_id];
        let (table, quoted) = (plan.name.clone(), plan.quoted.clone());
        let current = schema::columns(client, &quoted).await?;
        let failed = |source| Error::SchemaChange {
            batch_id,
            seq,
            table: table.clone(),
            command: change.command.clone(),
            source,
        };
        let to_run = statements(&quoted, &change.before, &change.after, &current);
        match change.mode {
            Mode::Pause if !to_run.is_empty() => {
                return Err(Error::SchemaPaused {
                    batch_id,
                    seq,
                    table,
                    command: change.command,
                });
            }
            Mode::Apply => {
                for sql in to_run {
                    tracing::info!(batch_id, seq, table = %table, sql = %sql, "schema change");
                    client.execute(&sql, &[]).await.map_err(failed)?;
                }
            }
            Mode::Pause | Mode::Done => {}
        }
        let renamed = (change.schema.as_str(), change.table.as_str())
            != (plan.schema.as_str(), plan.table.as_str());
        if renamed && change.mode == Mode::Apply {
            let from = (plan.schema.clone(), plan.table.clone());
            rename_table(client, &quoted, from, &change.schema, &change.table)
                .await
                .map_err(failed)?;
        }
        self.replan(client, batch_id, table_id, &change).await?;
        if renamed {
            let guarded: Vec<_> = self.plans.values().map(|p| p.guarded()).collect();
            guard::track(client, &self.source_id, &guarded).await?;
        }
        Ok(())
    }

    /// The table's plan, announced form and shapes made again for its new
    /// shape: its columns as the change leaves them, its key under the
    /// keys' new names.
    async fn replan(
        &mut self,
        client: &Client,
        batch_id: u64,
        table_id: u32,
        change: &SchemaChange,
    ) -> Result<()> {
        let mut table = self.announced[&table_id].0.clone();
        let renamed: HashMap<&str, &str> = change
            .before
            .iter()
            .filter_map(|b| {
                let a = change.after.iter().find(|a| a.attnum == b.attnum)?;
                Some((b.name.as_str(), a.name.as_str()))
            })
            .collect();
        table.key_columns = table
            .key_columns
            .iter()
            .map(|k| renamed.get(k.as_str()).map_or(k.clone(), |n| n.to_string()))
            .collect();
        table.target_schema = change.schema.clone();
        table.target_table = change.table.clone();
        // Rows carry the columns the source computes; the target
        // computes them itself.
        for a in change.after.iter().filter(|a| a.generated) {
            if !table.generated_columns.contains(&a.name) {
                table.generated_columns.push(a.name.clone());
            }
        }
        table
            .generated_columns
            .retain(|g| !change.after.iter().any(|a| a.name == *g && !a.generated));
        table.columns = change
            .after
            .iter()
            .filter(|a| !a.generated)
            .map(|a| wire::Column {
                name: a.name.clone(),
                sql_type: a.sql_type.clone(),
                not_null: a.not_null,
                attnum: a.attnum,
            })
            .collect();
        self.plan_again(client, batch_id, table_id, table).await
    }

    /// Brings a table about to be copied to the copy's columns (`columns`,
    /// the table's shape in the copy's snapshot), when the stream announced
    /// others: the table is emptied and filled again, so a column the copy
    /// lacks is dropped, one of another name under the same column number
    /// renamed, one it adds added, one of another type takes the copy's.
    /// Returns whether the table was planned again (the caller then forgets
    /// its prepared statements).
    pub(super) async fn take_copy_shape(
        &mut self,
        client: &Client,
        batch_id: u64,
        table_id: u32,
        columns: &[wire::Column],
    ) -> Result<bool> {
        let announced = &self.announced[&table_id].0;
        let same = announced.columns.len() == columns.len()
            && announced
                .columns
                .iter()
                .zip(columns)
                .all(|(a, c)| a.name == c.name && a.sql_type == c.sql_type);
        if same {
            return Ok(false);
        }
        let plan = &self.plans[&table_id];
        let (name, quoted) = (plan.name.clone(), plan.quoted.clone());
        let current = schema::column_types(client, &quoted).await?;
        let mut sql = Vec::new();
        let mut current = current;
        let same_number =
            |a: &wire::Column, c: &wire::Column| a.attnum != 0 && a.attnum == c.attnum;
        for a in &announced.columns {
            let renamed = columns
                .iter()
                .find(|c| same_number(a, c) && c.name != a.name && !current.contains_key(&c.name));
            if let Some(c) = renamed.filter(|_| current.contains_key(&a.name)) {
                sql.push(format!(
                    "alter table {quoted} rename column {} to {}",
                    ident(&a.name),
                    ident(&c.name)
                ));
                let sql_type = current.remove(&a.name).unwrap_or_default();
                current.insert(c.name.clone(), sql_type);
            }
        }
        for gone in announced.columns.iter().filter(|a| {
            !columns
                .iter()
                .any(|c| c.name == a.name || same_number(a, c))
                && current.contains_key(&a.name)
        }) {
            sql.push(format!(
                "alter table {quoted} drop column {}",
                ident(&gone.name)
            ));
        }
        for c in columns {
            let column = ident(&c.name);
            match current.get(&c.name) {
                None => sql.push(format!(
                    "alter table {quoted} add column {column} {}",
                    c.sql_type
                )),
                Some(sql_type) if *sql_type != c.sql_type => sql.push(format!(
                    "alter table {quoted} alter column {column} type {t} using {column}::{t}",
                    t = c.sql_type
                )),
                Some(_) => {}
            }
        }
        for statement in sql {
            tracing::info!(batch_id, table = %name, sql = %statement, "the copy's shape");
            client
                .execute(&statement, &[])
                .await
                .map_err(|source| Error::Apply {
                    batch_id,
                    table: name.clone(),
                    source,
                })?;
        }
        let mut table = announced.clone();
        table.columns = columns.to_vec();
        self.plan_again(client, batch_id, table_id, table).await?;
        Ok(true)
    }
}

/// Moves and renames the target table `quoted` (`from`: its schema and
/// name), unless a table of the new name is already there.
async fn rename_table(
    client: &Client,
    quoted: &str,
    (old_schema, old_table): (String, String),
    schema: &str,
    table: &str,
) -> Result<(), tokio_postgres::Error> {
    let exists = client
        .query_one(
            "select to_regclass($1) is not null",
            &[&qualified(schema, table)],
        )
        .await?
        .get::<_, bool>(0);
    if exists {
        return Ok(());
    }
    let mut at = quoted.to_string();
    if old_schema != schema {
        // As a table the source asks to create gets its schema.
        client
            .execute(
                &format!("create schema if not exists {}", ident(schema)),
                &[],
            )
            .await?;
        client
            .execute(
                &format!("alter table {at} set schema {}", ident(schema)),
                &[],
            )
            .await?;
        at = qualified(schema, &old_table);
    }
    if old_table != table {
        client
            .execute(&format!("alter table {at} rename to {}", ident(table)), &[])
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(attnum: i32, name: &str, sql_type: &str) -> ShapeColumn {
        ShapeColumn {
            attnum,
            name: name.into(),
            sql_type: sql_type.into(),
            not_null: false,
            default: None,
            generated: false,
            generation: None,
        }
    }

    fn current(columns: &[(&str, &str)]) -> Current {
        columns
            .iter()
            .map(|(n, t)| {
                let column = TargetColumn {
                    sql_type: t.to_string(),
                    ..Default::default()
                };
                (n.to_string(), column)
            })
            .collect()
    }

    #[test]
    fn each_kind_of_change_becomes_its_statement_in_a_safe_order() {
        let before = vec![
            column(1, "id", "integer"),
            column(2, "old name", "text"),
            column(3, "n", "integer"),
            column(4, "gone", "text"),
        ];
        let mut after = vec![
            column(1, "id", "integer"),
            column(2, "new name", "text"),
            column(3, "n", "bigint"),
            ShapeColumn {
                default: Some("'x'::text".into()),
                not_null: true,
                ..column(5, "added", "text")
            },
        ];
        after[0].not_null = true;
        let target = current(&[
            ("id", "integer"),
            ("old name", "text"),
            ("n", "integer"),
            ("gone", "text"),
        ]);
        assert_eq!(
            statements("t", &before, &after, &target),
            vec![
                "alter table t drop column \"gone\"",
                "alter table t alter column \"id\" set not null",
                "alter table t rename column \"old name\" to \"new name\"",
                "alter table t alter column \"n\" type bigint using \"n\"::bigint",
                "alter table t add column \"added\" text default 'x'::text not null",
            ]
        );
    }

    #[test]
    fn a_column_the_source_computes_is_computed_on_the_target() {
        let computed = |attnum, name: &str, sql_type: &str| ShapeColumn {
            generated: true,
            generation: Some("(n * 2)".into()),
            ..column(attnum, name, sql_type)
        };
        let before = vec![column(1, "id", "integer"), column(2, "n", "integer")];
        let mut after = before.clone();
        after.push(computed(3, "twice", "integer"));
        let target = current(&[("id", "integer"), ("n", "integer")]);
        assert_eq!(
            statements("t", &before, &after, &target),
            vec!["alter table t add column \"twice\" integer generated always as ((n * 2)) stored"]
        );
        // Retyped without USING; no longer computed: its expression dropped.
        let mut retyped = after.clone();
        retyped[2] = computed(3, "twice", "bigint");
        let mut target = current(&[("id", "integer"), ("n", "integer"), ("twice", "integer")]);
        target.get_mut("twice").unwrap().generated = true;
        assert_eq!(
            statements("t", &after, &retyped, &target),
            vec!["alter table t alter column \"twice\" type bigint"]
        );
        let mut plain = after.clone();
        plain[2] = column(3, "twice", "integer");
        assert_eq!(
            statements("t", &after, &plain, &target),
            vec!["alter table t alter column \"twice\" drop expression"]
        );
    }

    #[test]
    fn a_target_already_in_the_new_shape_runs_nothing() {
        let before = vec![
            column(1, "id", "integer"),
            column(2, "a", "text"),
            column(3, "h", "text"),
        ];
        let after = vec![
            column(1, "id", "integer"),
            column(2, "b", "text"),
            column(3, "h", "public.hstore"),
            column(4, "c", "text"),
        ];
        let target = current(&[
            ("id", "integer"),
            ("b", "text"),
            ("h", "hstore"),
            ("c", "text"),
        ]);
        assert!(statements("t", &before, &after, &target).is_empty());
        // Not yet retyped: the type change is left.
        let target = current(&[
            ("id", "integer"),
            ("b", "text"),
            ("h", "text"),
            ("c", "text"),
        ]);
        assert_eq!(
            statements("t", &before, &after, &target),
            ["alter table t alter column \"h\" type public.hstore using \"h\"::public.hstore"]
        );
    }
}
