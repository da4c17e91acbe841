//! One captured row change, as the agents handle it, and its checked
//! conversion from and to the wire form.

use crate::wire;

/// What happened to a row (or a whole table) on the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// A new row, as a JSON object in PostgreSQL's `to_jsonb` form.
    Insert {
        /// The inserted row.
        new_row: String,
    },
    /// A changed row. `old_key` is set only when the update changed the key,
    /// so the target must drop the row under the old key first.
    Update {
        /// The key columns before the update, when they changed.
        old_key: Option<String>,
        /// The row after the update.
        new_row: String,
    },
    /// A deleted row, identified by its key columns.
    Delete {
        /// The key columns of the deleted row.
        old_key: String,
    },
    /// `TRUNCATE` of the whole table.
    Truncate,
}

/// A change to one replicated table, in queue order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The source queue's sequence number; orders changes inside a batch and
    /// names the change in error messages.
    pub seq: u64,
    /// The source's id of the table (see `TableSchema::table_id`).
    pub table_id: u32,
    /// The operation and its data.
    pub kind: ChangeKind,
}

/// A wire change that breaks the contract.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// The operation is not one this version knows.
    #[error("change {seq}: unknown operation {op}")]
    UnknownOp {
        /// The change's sequence number.
        seq: u64,
        /// The operation number received.
        op: i32,
    },
    /// The operation needs a field the change lacks.
    #[error("change {seq}: {op} without {field}")]
    MissingField {
        /// The change's sequence number.
        seq: u64,
        /// The operation's name.
        op: &'static str,
        /// The missing field.
        field: &'static str,
    },
}

impl From<Change> for wire::Change {
    fn from(change: Change) -> Self {
        let (op, old_key, new_row) = match change.kind {
            ChangeKind::Insert { new_row } => (wire::Op::Insert, None, Some(new_row)),
            ChangeKind::Update { old_key, new_row } => (wire::Op::Update, old_key, Some(new_row)),
            ChangeKind::Delete { old_key } => (wire::Op::Delete, Some(old_key), None),
            ChangeKind::Truncate => (wire::Op::Truncate, None, None),
        };
        wire::Change {
            seq: change.seq,
            table_id: change.table_id,
            op: op.into(),
            old_key,
            new_row,
        }
    }
}

impl TryFrom<wire::Change> for Change {
    type Error = WireError;

    fn try_from(change: wire::Change) -> Result<Self, WireError> {
        let seq = change.seq;
        let missing = |op, field| WireError::MissingField { seq, op, field };
        let kind = match wire::Op::try_from(change.op) {
            Ok(wire::Op::Insert) => ChangeKind::Insert {
                new_row: change.new_row.ok_or(missing("insert", "new_row"))?,
            },
            Ok(wire::Op::Update) => ChangeKind::Update {
                old_key: change.old_key,
                new_row: change.new_row.ok_or(missing("update", "new_row"))?,
            },
            Ok(wire::Op::Delete) => ChangeKind::Delete {
                old_key: change.old_key.ok_or(missing("delete", "old_key"))?,
            },
            Ok(wire::Op::Truncate) => ChangeKind::Truncate,
            Ok(wire::Op::Unspecified) | Err(_) => {
                return Err(WireError::UnknownOp { seq, op: change.op });
            }
        };
        Ok(Change {
            seq,
            table_id: change.table_id,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kind() -> impl Strategy<Value = ChangeKind> {
        prop_oneof![
            any::<String>().prop_map(|new_row| ChangeKind::Insert { new_row }),
            (proptest::option::of(any::<String>()), any::<String>())
                .prop_map(|(old_key, new_row)| ChangeKind::Update { old_key, new_row }),
            any::<String>().prop_map(|old_key| ChangeKind::Delete { old_key }),
            Just(ChangeKind::Truncate),
        ]
    }

    proptest! {
        #[test]
        fn every_change_survives_the_wire(seq: u64, table_id: u32, kind in kind()) {
            let change = Change { seq, table_id, kind };
            let back = Change::try_from(wire::Change::from(change.clone())).unwrap();
            prop_assert_eq!(back, change);
        }

        #[test]
        fn unknown_operations_are_refused(seq: u64, op in 5i32..) {
            let wire = wire::Change { seq, op, ..Default::default() };
            prop_assert_eq!(Change::try_from(wire), Err(WireError::UnknownOp { seq, op }));
        }
    }

    #[test]
    fn a_delete_without_its_key_is_refused() {
        let wire = wire::Change {
            seq: 7,
            op: wire::Op::Delete.into(),
            ..Default::default()
        };
        assert_eq!(
            Change::try_from(wire).unwrap_err().to_string(),
            "change 7: delete without old_key"
        );
    }
}
