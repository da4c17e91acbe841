//! Schema drift: rows that carry other columns than the stream announced
//! (the source table changed) get a plan of their own, checked against the
//! target table, which must have every column they carry.

use std::collections::HashMap;

use pgferry_proto::change::{Change, ChangeKind};
use pgferry_proto::wire;

use super::Applier;
use crate::error::Result;
use crate::schema::{self, TablePlan};

/// Column lists met since the stream began other than the announced ones.
#[derive(Default)]
pub(super) struct Shapes {
    /// Their shape numbers (see [`crate::step::Step::shape`]), by table and
    /// sorted columns.
    numbers: HashMap<(u32, Vec<String>), u32>,
    /// Their checked plans, by table and shape number.
    pub(super) plans: HashMap<(u32, u32), TablePlan>,
}

impl Shapes {
    /// Forgets a table's shapes: its schema changed, and with it what its
    /// rows' columns are checked against.
    pub(super) fn forget(&mut self, table_id: u32) {
        self.numbers.retain(|(table, _), _| *table != table_id);
        self.plans.retain(|(table, _), _| *table != table_id);
    }
}

impl Applier {
    /// The shape of a change's rows (see [`Step::shape`]): 0 unless its
    /// rows carry other columns than the stream announced; a column list
    /// met for the first time is checked against the target table, which
    /// must have every column the rows carry.
    pub(super) async fn shape(&mut self, batch_id: u64, change: &Change) -> Result<u32> {
        let row = match &change.kind {
            ChangeKind::Insert { new_row } | ChangeKind::Update { new_row, .. } => new_row,
            ChangeKind::Delete { .. } | ChangeKind::Truncate | ChangeKind::Schema { .. } => {
                return Ok(0);
            }
        };
        let (table, announced) = &self.announced[&change.table_id];
        let Some(mut columns) = crate::shape::columns(row) else {
            return Ok(0);
        };
        // The target computes those itself (or has no such column).
        columns.retain(|c| !table.generated_columns.contains(c));
        if columns == *announced {
            return Ok(0);
        }
        let key = (change.table_id, columns);
        if let Some(&shape) = self.shapes.numbers.get(&key) {
            return Ok(shape);
        }
        let table = table.clone();
        // Answers are read in order: settle before the check's queries.
        self.settle(batch_id).await?;
        let mut shaped = table.clone();
        shaped.create_if_missing = false;
        // Columns the stream announced keep the source's type; for others
        // the target's is taken (the source's is not known here), so the
        // check finds only what the target lacks.
        let target_types =
            schema::column_types(&self.client, &self.plans[&change.table_id].quoted).await?;
        shaped.columns = key
            .1
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
        let plan = schema::check(&self.client, &shaped, self.merge).await?;
        let shape = self.shapes.numbers.len() as u32 + 1;
        tracing::info!(
            table = %plan.name,
            batch_id,
            columns = %key.1.join(", "),
            "rows carry other columns than announced (the source table changed)"
        );
        self.shapes.numbers.insert(key, shape);
        self.shapes.plans.insert((change.table_id, shape), plan);
        Ok(shape)
    }
}
