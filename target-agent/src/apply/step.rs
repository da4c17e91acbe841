//! The pure part of applying: a batch's changes become steps (a row each,
//! or a statement's rows together), and consecutive steps of one kind on
//! one table become runs, each applied by one statement, in source order.

use pgferry_proto::change::{Change, ChangeKind};
use serde_json::value::RawValue;

/// What a run of changes does to its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunKind {
    /// Insert rows the source inserted, by a plain INSERT: their keys are
    /// not on the target, whose only writer is the applier. Should one be
    /// (a row someone wrote by hand), the batch fails once and is applied
    /// again with these runs as upserts (see [`crate::apply::Retry`]).
    Insert,
    /// Insert or update rows by key.
    Upsert,
    /// Delete rows by key.
    Delete,
    /// Empty the table.
    Truncate,
}

/// Consecutive changes of one kind to one table, applied as one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The source's table id.
    pub table_id: u32,
    /// What the run does.
    pub kind: RunKind,
    /// The columns its rows carry (see [`Step::shape`]).
    pub shape: u32,
    /// Rows (upsert) or keys (delete) as JSON objects, in source order; an
    /// element holds a statement's rows as comma-separated objects, so the
    /// run's JSON array is its elements joined by commas.
    pub rows: Vec<String>,
    /// How many rows the elements hold.
    pub count: u32,
    /// The elements' bytes.
    pub bytes: usize,
    /// The other tables a truncate run empties in the same statement: the
    /// truncates next to each other in the batch, since PostgreSQL empties
    /// a table a foreign key references only together with the referencing
    /// one (the source may have truncated both in one statement).
    pub also: Vec<u32>,
}

/// One change as a run takes it, in source order: a row or key object, or
/// (for a table that is not compacted) a statement's rows as
/// comma-separated objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The source's table id.
    pub table_id: u32,
    /// What the change does.
    pub kind: RunKind,
    /// The row or key text; empty for a truncate.
    pub rows: String,
    /// How many rows `rows` holds.
    pub count: u32,
    /// The columns the rows carry: 0, those the stream announced; another
    /// number, a column list met since (see [`crate::apply::shape`]). Keys and
    /// truncates are always 0.
    pub shape: u32,
}

/// A change's row text as elements of a JSON array: a statement's array
/// loses its brackets (checked on receipt, see [`Change`]).
fn array_elements(text: String, statement_rows: u32) -> String {
    if statement_rows == 0 {
        return text;
    }
    let inner = text.len() - 1;
    let mut text = text;
    text.truncate(inner);
    text.remove(0);
    text
}

/// The steps a change stands for. For a compacted table (`split`) a
/// statement's array gives one step per row. An update that changed the key
/// deletes the old key first.
pub fn steps(change: Change, split: bool, shape: u32) -> Vec<Step> {
    let table_id = change.table_id;
    let statement_rows = change.statement_rows;
    let mut out = Vec::new();
    let mut add = |kind: RunKind, text: String, statement_rows: u32| {
        let shape = if kind == RunKind::Delete { 0 } else { shape };
        let step = |rows: String, count: u32| Step {
            table_id,
            kind,
            rows,
            count,
            shape,
        };
        let rows = match (split && statement_rows > 0).then(|| elements(&text)) {
            Some(Some(rows)) => rows,
            _ => {
                let count = statement_rows.max(1);
                out.push(step(array_elements(text, statement_rows), count));
                return;
            }
        };
        out.extend(rows.into_iter().map(|row| step(row.to_string(), 1)));
    };
    match change.kind {
        ChangeKind::Insert { new_row } => add(RunKind::Insert, new_row, statement_rows),
        ChangeKind::Update { old_key, new_row } => {
            if let Some(old_key) = old_key {
                add(RunKind::Delete, old_key, 0);
            }
            add(RunKind::Upsert, new_row, statement_rows);
        }
        ChangeKind::Delete { old_key } => add(RunKind::Delete, old_key, statement_rows),
        ChangeKind::Truncate => out.push(Step {
            table_id,
            kind: RunKind::Truncate,
            rows: String::new(),
            count: 1,
            shape: 0,
        }),
        // Made by the applier itself at its place (apply/ddl), never a row
        // statement's step.
        ChangeKind::Schema { .. } => {}
    }
    out
}

/// Rows in one apply statement before a run is cut: statements big enough
/// that their fixed cost is small, small enough to bound memory.
pub const RUN_ROWS: u32 = 1000;

/// The bytes past which a run takes no more rows: one statement's
/// parameter stays far under PostgreSQL's 1 GB limit on a value however
/// large the rows (one row larger than this goes alone).
pub const RUN_BYTES: usize = 64 * 1024 * 1024;

/// Groups steps into runs, keeping their order. Inserts and updates of a
/// table share a run, which is an insert run only while it holds nothing
/// but inserts.
pub fn runs(steps: impl IntoIterator<Item = Step>) -> Vec<Run> {
    use RunKind::{Delete, Insert, Upsert};
    let mut runs: Vec<Run> = Vec::new();
    for step in steps {
        // An empty array adds no element (and no stray comma).
        let row = Some(step.rows).filter(|row| !row.is_empty());
        match runs.last_mut() {
            Some(run)
                if run.table_id == step.table_id
                    && run.shape == step.shape
                    && run.count < RUN_ROWS
                    && run.bytes + row.as_ref().map_or(0, String::len) <= RUN_BYTES
                    && matches!(
                        (run.kind, step.kind),
                        (Insert | Upsert, Insert | Upsert) | (Delete, Delete)
                    ) =>
            {
                if step.kind == Upsert {
                    run.kind = Upsert;
                }
                run.bytes += row.as_ref().map_or(0, String::len);
                run.rows.extend(row);
                run.count += step.count;
            }
            Some(run) if run.kind == RunKind::Truncate && step.kind == RunKind::Truncate => {
                if run.table_id != step.table_id && !run.also.contains(&step.table_id) {
                    run.also.push(step.table_id);
                }
            }
            _ => runs.push(Run {
                table_id: step.table_id,
                kind: step.kind,
                shape: step.shape,
                bytes: row.as_ref().map_or(0, String::len),
                rows: row.into_iter().collect(),
                count: step.count,
                also: Vec::new(),
            }),
        }
    }
    runs
}

/// Runs of one step each, in order, for a batch applied in the source's
/// exact order (see [`crate::apply::Retry`]); truncates next to each other
/// stay together, as [`runs`] keeps them.
pub fn runs_in_order(steps: impl IntoIterator<Item = Step>) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for step in steps {
        match out.last_mut() {
            Some(run) if run.kind == RunKind::Truncate && step.kind == RunKind::Truncate => {
                let mut joined = runs([step]);
                if run.table_id != joined[0].table_id && !run.also.contains(&joined[0].table_id) {
                    run.also.push(joined.remove(0).table_id);
                }
            }
            _ => out.extend(runs([step])),
        }
    }
    out
}

/// The elements of a statement's JSON array of rows.
pub fn elements(array: &str) -> Option<Vec<&str>> {
    let raw: Vec<&RawValue> = serde_json::from_str(array).ok()?;
    Some(raw.into_iter().map(RawValue::get).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn change() -> impl Strategy<Value = Change> {
        let kind = prop_oneof![
            "[a-c]".prop_map(|new_row| ChangeKind::Insert { new_row }),
            (proptest::option::of("[a-c]"), "[a-c]")
                .prop_map(|(old_key, new_row)| ChangeKind::Update { old_key, new_row }),
            "[a-c]".prop_map(|old_key| ChangeKind::Delete { old_key }),
            Just(ChangeKind::Truncate),
        ];
        (any::<u64>(), 0u32..3, kind).prop_map(|(seq, table_id, kind)| Change {
            seq,
            table_id,
            statement_rows: 0,
            kind,
        })
    }

    /// The operations a change stands for, one per row, in order.
    fn operations(changes: &[Change]) -> Vec<(u32, RunKind, Option<String>)> {
        let mut out = Vec::new();
        for c in changes {
            match &c.kind {
                ChangeKind::Insert { new_row } => {
                    out.push((c.table_id, RunKind::Insert, Some(new_row.clone())))
                }
                ChangeKind::Update { old_key, new_row } => {
                    if let Some(k) = old_key {
                        out.push((c.table_id, RunKind::Delete, Some(k.clone())));
                    }
                    out.push((c.table_id, RunKind::Upsert, Some(new_row.clone())));
                }
                ChangeKind::Delete { old_key } => {
                    out.push((c.table_id, RunKind::Delete, Some(old_key.clone())))
                }
                ChangeKind::Truncate => out.push((c.table_id, RunKind::Truncate, None)),
                ChangeKind::Schema { .. } => {}
            }
        }
        out
    }

    /// The runs of changes to tables that are not compacted.
    fn runs_of(changes: impl IntoIterator<Item = Change>) -> Vec<Run> {
        runs(changes.into_iter().flat_map(|c| super::steps(c, false, 0)))
    }

    proptest! {
        #[test]
        fn runs_keep_every_step_in_order(changes in proptest::collection::vec(change(), 0..40)) {
            let expected = operations(&changes);
            let grouped = runs_of(changes);
            let flattened: Vec<(u32, RunKind, Option<String>)> = grouped
                .iter()
                .flat_map(|r| -> Vec<(u32, RunKind, Option<String>)> {
                    if r.kind == RunKind::Truncate {
                        std::iter::once(&r.table_id).chain(&r.also).map(|t| (*t, r.kind, None)).collect()
                    } else {
                        r.rows.iter().map(|row| (r.table_id, r.kind, Some(row.clone()))).collect()
                    }
                })
                .collect();
            // Truncates next to each other become one statement over the
            // set of their tables.
            let collapsed = |steps: Vec<(u32, RunKind, Option<String>)>| {
                let mut out: Vec<(Vec<u32>, RunKind, Option<String>)> = Vec::new();
                for (t, k, r) in steps {
                    match out.last_mut() {
                        Some((tables, RunKind::Truncate, _)) if k == RunKind::Truncate => {
                            if !tables.contains(&t) {
                                tables.push(t);
                                tables.sort();
                            }
                        }
                        _ => out.push((vec![t], k, r)),
                    }
                }
                out
            };
            let (flattened, expected) = (collapsed(flattened), collapsed(expected));
            // An insert run holds only inserts; an upsert run may hold both.
            let writes = |kind| if kind == RunKind::Insert { RunKind::Upsert } else { kind };
            for ((_, run_kind, _), (_, step_kind, _)) in flattened.iter().zip(&expected) {
                prop_assert!(*run_kind != RunKind::Insert || *step_kind == RunKind::Insert);
            }
            let normalized = |steps: Vec<(Vec<u32>, RunKind, Option<String>)>| {
                steps.into_iter().map(|(t, k, r)| (t, writes(k), r)).collect::<Vec<_>>()
            };
            prop_assert_eq!(normalized(flattened), normalized(expected));
            for pair in grouped.windows(2) {
                let merged = pair[0].table_id == pair[1].table_id
                    && writes(pair[0].kind) == writes(pair[1].kind);
                prop_assert!(!merged || pair[0].kind == RunKind::Truncate);
            }
        }
    }

    proptest! {
        #[test]
        fn runs_in_order_hold_one_change_each_but_truncates_together(
            changes in proptest::collection::vec(change(), 0..40)
        ) {
            let steps: Vec<Step> = changes.into_iter().flat_map(|c| super::steps(c, false, 0)).collect();
            let in_order = runs_in_order(steps.clone());
            for run in &in_order {
                prop_assert!(run.kind == RunKind::Truncate || run.rows.len() == 1);
            }
            // The same rows and truncates, in the same order, as the grouped runs.
            let rows = |runs: &[Run]| -> Vec<String> { runs.iter().flat_map(|r| r.rows.clone()).collect() };
            let truncates = |runs: &[Run]| -> Vec<(u32, Vec<u32>)> {
                runs.iter()
                    .filter(|r| r.kind == RunKind::Truncate)
                    .map(|r| (r.table_id, r.also.clone()))
                    .collect()
            };
            let grouped = runs(steps);
            prop_assert_eq!(rows(&in_order), rows(&grouped));
            prop_assert_eq!(truncates(&in_order), truncates(&grouped));
        }
    }

    #[test]
    fn a_key_change_deletes_the_old_key_first() {
        let update = Change {
            seq: 1,
            table_id: 7,
            statement_rows: 0,
            kind: ChangeKind::Update {
                old_key: Some("{\"id\":1}".into()),
                new_row: "{\"id\":2}".into(),
            },
        };
        let insert = Change {
            seq: 2,
            table_id: 7,
            statement_rows: 0,
            kind: ChangeKind::Insert {
                new_row: "{\"id\":3}".into(),
            },
        };
        assert_eq!(
            runs_of([update, insert]),
            vec![
                Run {
                    table_id: 7,
                    kind: RunKind::Delete,
                    shape: 0,
                    rows: vec!["{\"id\":1}".into()],
                    count: 1,
                    bytes: 8,
                    also: Vec::new(),
                },
                Run {
                    table_id: 7,
                    kind: RunKind::Upsert,
                    shape: 0,
                    rows: vec!["{\"id\":2}".into(), "{\"id\":3}".into()],
                    count: 2,
                    bytes: 16,
                    also: Vec::new(),
                },
            ]
        );
    }

    #[test]
    fn a_statements_rows_join_the_run_as_elements_of_its_array() {
        let statement = |seq, new_row: &str, statement_rows| Change {
            seq,
            table_id: 7,
            statement_rows,
            kind: ChangeKind::Insert {
                new_row: new_row.into(),
            },
        };
        let grouped = runs_of([
            statement(1, "{\"id\":1}", 0),
            statement(2, "[{\"id\":2}, \n {\"id\":3}]", 2),
            statement(3, "[]", 1),
            statement(4, "[{\"id\":4}]", 1),
        ]);
        assert_eq!(grouped.len(), 1);
        assert_eq!(
            format!("[{}]", grouped[0].rows.join(",")),
            "[{\"id\":1},{\"id\":2}, \n {\"id\":3},{\"id\":4}]"
        );
    }

    #[test]
    fn a_compacted_tables_statement_gives_a_step_per_row() {
        let delete = Change {
            seq: 1,
            table_id: 7,
            statement_rows: 2,
            kind: ChangeKind::Delete {
                old_key: r#"[{"id" : 1}, {"id" : 2}]"#.into(),
            },
        };
        let got: Vec<_> = super::steps(delete, true, 0)
            .into_iter()
            .map(|step| (step.rows, step.count))
            .collect();
        assert_eq!(
            got,
            vec![
                (r#"{"id" : 1}"#.to_string(), 1),
                (r#"{"id" : 2}"#.to_string(), 1),
            ]
        );
    }
}
