//! The tables and sequences a stream writes, as the target has them: each
//! table's announced form and checked plan, the other column lists its
//! rows carried since (see [`super::shape`]), and the target sequence of
//! each source sequence. Schema changes make a table's plan again (see
//! [`super::ddl`]).

use std::collections::HashMap;

use pgferry_proto::change::{Change, ChangeKind};
use pgferry_proto::wire;
use tokio_postgres::Client;

use super::key;
use super::shape::{self, Shapes};
use crate::error::{Error, Result};
use crate::schema::{self, TablePlan};

/// A stream's tables and sequences on the target.
pub(super) struct Tables {
    /// The source the tables are guarded for.
    pub(super) source_id: String,
    /// Whether the server has MERGE (PostgreSQL 15 or newer).
    pub(super) merge: bool,
    /// Checked tables by the source's table id.
    pub(super) plans: HashMap<u32, TablePlan>,
    /// The tables as the stream announced them (or a schema change left
    /// them), and their columns sorted.
    pub(super) announced: HashMap<u32, (wire::TableSchema, Vec<String>)>,
    /// Other column lists rows carried since the stream began.
    shapes: Shapes,
    /// Target sequences (regclass oids) by the source's sequence id; none
    /// for a table's sequence the target keeps no counterpart of.
    sequences: HashMap<u32, Option<u32>>,
}

impl Tables {
    /// The tables of `forms` planned as `plans`, and `sequences`.
    pub(super) fn new(
        source_id: String,
        merge: bool,
        plans: HashMap<u32, TablePlan>,
        forms: Vec<wire::TableSchema>,
        sequences: HashMap<u32, Option<u32>>,
    ) -> Tables {
        let mut tables = Tables {
            source_id,
            merge,
            plans,
            announced: HashMap::new(),
            shapes: Shapes::default(),
            sequences,
        };
        for form in forms {
            tables.announce(form);
        }
        tables
    }

    /// Makes `table` the announced form of its table.
    pub(super) fn announce(&mut self, table: wire::TableSchema) {
        let mut sorted: Vec<String> = table.columns.iter().map(|c| c.name.clone()).collect();
        sorted.sort_unstable();
        self.announced.insert(table.table_id, (table, sorted));
    }

    /// Whether the stream announced table `table_id`.
    pub(super) fn knows(&self, table_id: u32) -> bool {
        self.plans.contains_key(&table_id)
    }

    /// The plan of table `table_id`, which a chunk of batch `batch_id`
    /// names (a copy, a check): refused unless the stream announced it.
    pub(super) fn named(&self, batch_id: u64, table_id: u32) -> Result<&TablePlan> {
        self.plans.get(&table_id).ok_or(Error::UnknownTableId {
            batch_id,
            seq: 0,
            table_id,
        })
    }

    /// The plan of a table's rows of shape `shape` (see
    /// [`super::step::Step::shape`]).
    pub(super) fn plan(&self, table_id: u32, shape: u32) -> &TablePlan {
        match shape {
            0 => &self.plans[&table_id],
            _ => self.shapes.plan(table_id, shape),
        }
    }

    /// A table's key columns.
    pub(super) fn key_columns(&self, table_id: u32) -> &[String] {
        &self.announced[&table_id].0.key_columns
    }

    /// The target sequence of source sequence `seq_id`: `None` when the
    /// stream did not announce it, `Some(None)` when the target keeps none.
    pub(super) fn sequence(&self, seq_id: u32) -> Option<Option<u32>> {
        self.sequences.get(&seq_id).copied()
    }

    /// Refuses a change whose old key lacks a key column: it would match no
    /// row, and its delete would succeed and do nothing. Checked change by
    /// change: a schema change before it in the batch may have renamed a
    /// key column.
    pub(super) fn check_key(&self, batch_id: u64, change: &Change) -> Result<()> {
        let old_key = match &change.kind {
            ChangeKind::Delete { old_key } => Some((old_key, change.statement_rows)),
            ChangeKind::Update {
                old_key: Some(old_key),
                ..
            } => Some((old_key, 0)),
            _ => None,
        };
        let key_columns = self.key_columns(change.table_id);
        match old_key.and_then(|(key, rows)| key::problem(key, rows, key_columns)) {
            Some(problem) => Err(Error::BadKey {
                batch_id,
                seq: change.seq,
                table: self.plans[&change.table_id].name.clone(),
                problem,
            }),
            None => Ok(()),
        }
    }

    /// The shape of a change's rows if known: 0 unless its rows carry
    /// other columns than the stream announced. A column list met for the
    /// first time comes back to be checked ([`Tables::add_shape`]).
    pub(super) fn known_shape(&self, change: &Change) -> Result<u32, Vec<String>> {
        let row = match &change.kind {
            ChangeKind::Insert { new_row } | ChangeKind::Update { new_row, .. } => new_row,
            ChangeKind::Delete { .. } | ChangeKind::Truncate | ChangeKind::Schema { .. } => {
                return Ok(0);
            }
        };
        let (table, announced) = &self.announced[&change.table_id];
        let Some(mut columns) = shape::columns(row) else {
            return Ok(0);
        };
        // The target computes those itself (or has no such column).
        columns.retain(|c| !table.generated_columns.contains(c));
        if columns == *announced {
            return Ok(0);
        }
        self.shapes.number(change.table_id, columns)
    }

    /// Checks rows of `columns`, met for the first time, against the target
    /// table, which must have every column they carry, and numbers them.
    pub(super) async fn add_shape(
        &mut self,
        client: &Client,
        batch_id: u64,
        table_id: u32,
        columns: Vec<String>,
    ) -> Result<u32> {
        let table = &self.announced[&table_id].0;
        let mut shaped = table.clone();
        shaped.create_if_missing = false;
        // Columns the stream announced keep the source's type; for others
        // the target's is taken (the source's is not known here), so the
        // check finds only what the target lacks.
        let target_types = schema::column_types(client, &self.plans[&table_id].quoted).await?;
        shaped.columns = columns
            .iter()
            .map(|name| {
                table
                    .columns
                    .iter()
                    .find(|c| c.name == *name)
                    .cloned()
                    .unwrap_or_else(|| wire::Column {
                        name: name.clone(),
                        sql_type: target_types.get(name).cloned().unwrap_or_default(),
                        ..Default::default()
                    })
            })
            .collect();
        let plan = schema::check_shape(client, &shaped, self.merge).await?;
        tracing::info!(
            table = %plan.name,
            batch_id,
            columns = %columns.join(", "),
            "rows carry other columns than announced (an update of some, or the source table changed)"
        );
        Ok(self.shapes.add(table_id, columns, plan))
    }

    /// Checks `table` (a new form of table `table_id`) against the target,
    /// typed as the target names its columns' types, and makes it the
    /// table's plan and announced form; its shapes are forgotten (the
    /// caller forgets its prepared statements).
    pub(super) async fn plan_again(
        &mut self,
        client: &Client,
        batch_id: u64,
        table_id: u32,
        mut table: wire::TableSchema,
    ) -> Result<()> {
        table.create_if_missing = false;
        table.earlier_forms.clear();
        let at = pgferry_runtime::sql::qualified(&table.target_schema, &table.target_table);
        let types = schema::column_types(client, &at).await?;
        for column in &mut table.columns {
            if let Some(sql_type) = types.get(&column.name) {
                column.sql_type.clone_from(sql_type);
            }
        }
        let plan = schema::check(client, &table, self.merge).await?;
        tracing::info!(batch_id, table = %plan.name, "planned the table's rows in its new shape");
        self.plans.insert(table_id, plan);
        self.announce(table);
        self.shapes.forget(table_id);
        Ok(())
    }
}
