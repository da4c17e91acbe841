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
    /// A change of the table's columns or name, at its place among the
    /// table's row changes: a JSON object (see `Op::Schema` on the wire).
    Schema {
        /// The change.
        change: String,
    },
}

impl ChangeKind {
    /// The letter of each kind in the source's queue (`pgferry.queue.op`,
    /// whose check constraint lists the same letters), in the order of
    /// the variants.
    pub const QUEUE_OPS: [&'static str; 5] = ["I", "U", "D", "T", "S"];

    /// The kind's letter in the source's queue.
    pub fn queue_op(&self) -> &'static str {
        let index = match self {
            ChangeKind::Insert { .. } => 0,
            ChangeKind::Update { .. } => 1,
            ChangeKind::Delete { .. } => 2,
            ChangeKind::Truncate => 3,
            ChangeKind::Schema { .. } => 4,
        };
        Self::QUEUE_OPS[index]
    }

    /// The change a queue row holds: its letter `op`, its old key and its
    /// new row (a schema change's JSON). `None` for an unknown letter or a
    /// row that lacks what its kind needs.
    pub fn from_queue(op: &str, old_key: Option<String>, new_row: Option<String>) -> Option<Self> {
        Some(
            match Self::QUEUE_OPS.iter().position(|known| *known == op)? {
                0 => ChangeKind::Insert { new_row: new_row? },
                1 => ChangeKind::Update {
                    old_key,
                    new_row: new_row?,
                },
                2 => ChangeKind::Delete { old_key: old_key? },
                3 => ChangeKind::Truncate,
                _ => ChangeKind::Schema { change: new_row? },
            },
        )
    }
}

/// A change to one replicated table, in queue order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The source queue's sequence number; orders changes inside a batch and
    /// names the change in error messages.
    pub seq: u64,
    /// The source's id of the table (see `TableSchema::table_id`).
    pub table_id: u32,
    /// 0: the change's row or key is one JSON object. n > 0: it is a JSON
    /// array of n objects, rows of one statement captured together.
    pub statement_rows: u32,
    /// The operation and its data.
    pub kind: ChangeKind,
}

impl Change {
    /// How many rows the change touches (a truncate counts as one).
    pub fn rows(&self) -> u32 {
        self.statement_rows.max(1)
    }
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
    /// A change said to hold a statement's rows holds no JSON array, or
    /// is a truncate or a key-changing update, which never do.
    #[error("change {seq}: statement_rows set on a change that holds no array of rows")]
    NotRows {
        /// The change's sequence number.
        seq: u64,
    },
    /// A row or key that is not a JSON object.
    #[error("change {seq}: {field} is not a JSON object")]
    NotAnObject {
        /// The change's sequence number.
        seq: u64,
        /// The field.
        field: &'static str,
    },
    /// A piece of a row sent in pieces that is not the next piece of the
    /// change being joined.
    #[error("change {seq}: a piece of change {of}'s row with another seq or table")]
    StrayPiece {
        /// The piece's sequence number.
        seq: u64,
        /// The change being joined.
        of: u64,
    },
    /// A piece of a row that reached the applier unjoined.
    #[error("change {seq}: a piece of a row, not joined to the rest")]
    Unjoined {
        /// The change's sequence number.
        seq: u64,
    },
    /// A row sent in pieces longer than [`crate::MAX_ROW_BYTES`].
    #[error("change {seq}: its row is longer than {} bytes", crate::MAX_ROW_BYTES)]
    RowTooLong {
        /// The change's sequence number.
        seq: u64,
    },
}

/// A change (`first`, without its new row) and its new row `row`, as the
/// changes that carry the row in pieces of at most `piece` bytes (cut
/// between characters), each but the last `continued`; the first carries
/// every other field. Each piece is copied out of `row` as it is made, so
/// the row is held once, where it was read.
pub fn pieces<'a>(
    first: wire::Change,
    row: &'a str,
    piece: usize,
) -> impl Iterator<Item = wire::Change> + 'a {
    let (seq, table_id) = (first.seq, first.table_id);
    let mut first = Some(first);
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= row.len() && first.is_none() {
            return None;
        }
        let mut end = (at + piece.max(4)).min(row.len());
        while !row.is_char_boundary(end) {
            end -= 1;
        }
        let text = row[at..end].to_owned();
        at = end;
        let mut next = first.take().unwrap_or(wire::Change {
            seq,
            table_id,
            ..Default::default()
        });
        next.new_row = Some(text);
        next.continued = at < row.len();
        Some(next)
    })
}

/// The key columns of a row (or key) object as a JSON object, for an error
/// naming the row: read without copying the row's other values. `None`
/// when the text is not such an object.
pub fn key_of(row: &str, key_columns: &[String]) -> Option<String> {
    let fields: std::collections::HashMap<String, &serde_json::value::RawValue> =
        serde_json::from_str(row).ok()?;
    let key: Vec<String> = key_columns
        .iter()
        .map(|k| {
            let value = fields.get(k).map_or("null", |v| v.get());
            format!("{}: {value}", serde_json::Value::from(k.as_str()))
        })
        .collect();
    Some(format!("{{{}}}", key.join(", ")))
}

/// Joins the pieces of rows sent in pieces (see [`pieces`]) back into whole
/// changes, across the chunks of a batch.
#[derive(Debug, Default)]
pub struct Joiner {
    /// The change being joined: its first pieces.
    partial: Option<wire::Change>,
}

impl Joiner {
    /// The whole change, once `change` completes one; `None` while pieces
    /// are still to come.
    pub fn push(&mut self, change: wire::Change) -> Result<Option<wire::Change>, WireError> {
        let Some(mut partial) = self.partial.take() else {
            if change.continued {
                self.partial = Some(change);
                return Ok(None);
            }
            return Ok(Some(change));
        };
        if change.seq != partial.seq || change.table_id != partial.table_id {
            return Err(WireError::StrayPiece {
                seq: change.seq,
                of: partial.seq,
            });
        }
        let row = partial.new_row.get_or_insert_default();
        let more = change.new_row.unwrap_or_default();
        if row.len() + more.len() > crate::MAX_ROW_BYTES {
            return Err(WireError::RowTooLong { seq: partial.seq });
        }
        row.push_str(&more);
        if change.continued {
            self.partial = Some(partial);
            return Ok(None);
        }
        partial.continued = false;
        Ok(Some(partial))
    }

    /// Whether a change is partly joined (its batch cannot end yet).
    pub fn pending(&self) -> bool {
        self.partial.is_some()
    }

    /// Forgets a partly joined change (its batch was rolled back).
    pub fn clear(&mut self) {
        self.partial = None;
    }
}

impl From<Change> for wire::Change {
    fn from(change: Change) -> Self {
        let (op, old_key, new_row) = match change.kind {
            ChangeKind::Insert { new_row } => (wire::Op::Insert, None, Some(new_row)),
            ChangeKind::Update { old_key, new_row } => (wire::Op::Update, old_key, Some(new_row)),
            ChangeKind::Delete { old_key } => (wire::Op::Delete, Some(old_key), None),
            ChangeKind::Truncate => (wire::Op::Truncate, None, None),
            ChangeKind::Schema { change } => (wire::Op::Schema, None, Some(change)),
        };
        wire::Change {
            seq: change.seq,
            table_id: change.table_id,
            op: op.into(),
            old_key,
            new_row,
            statement_rows: change.statement_rows,
            continued: false,
        }
    }
}

impl TryFrom<wire::Change> for Change {
    type Error = WireError;

    fn try_from(change: wire::Change) -> Result<Self, WireError> {
        let seq = change.seq;
        if change.continued {
            return Err(WireError::Unjoined { seq });
        }
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
            Ok(wire::Op::Schema) => ChangeKind::Schema {
                change: change.new_row.ok_or(missing("schema change", "new_row"))?,
            },
            Ok(wire::Op::Unspecified) | Err(_) => {
                return Err(WireError::UnknownOp { seq, op: change.op });
            }
        };
        if change.statement_rows > 0 {
            let rows = match &kind {
                ChangeKind::Insert { new_row }
                | ChangeKind::Update {
                    old_key: None,
                    new_row,
                } => new_row,
                ChangeKind::Delete { old_key } => old_key,
                ChangeKind::Update { .. } | ChangeKind::Truncate | ChangeKind::Schema { .. } => {
                    return Err(WireError::NotRows { seq });
                }
            };
            if !(rows.starts_with('[') && rows.ends_with(']')) {
                return Err(WireError::NotRows { seq });
            }
        } else {
            // An object's text cannot be empty: the applier would take an
            // empty row for an empty statement and apply nothing for it.
            let object = |field, text: &str| {
                (text.starts_with('{') && text.ends_with('}'))
                    .then_some(())
                    .ok_or(WireError::NotAnObject { seq, field })
            };
            match &kind {
                ChangeKind::Insert { new_row } => object("new_row", new_row)?,
                ChangeKind::Update { old_key, new_row } => {
                    object("new_row", new_row)?;
                    if let Some(old_key) = old_key {
                        object("old_key", old_key)?;
                    }
                }
                ChangeKind::Delete { old_key } => object("old_key", old_key)?,
                ChangeKind::Schema { change } => object("new_row", change)?,
                ChangeKind::Truncate => {}
            }
        }
        Ok(Change {
            seq,
            table_id: change.table_id,
            statement_rows: change.statement_rows,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kind() -> impl Strategy<Value = ChangeKind> {
        let object = || any::<String>().prop_map(|text| format!("{{{text}}}"));
        prop_oneof![
            object().prop_map(|new_row| ChangeKind::Insert { new_row }),
            (proptest::option::of(object()), object())
                .prop_map(|(old_key, new_row)| ChangeKind::Update { old_key, new_row }),
            object().prop_map(|old_key| ChangeKind::Delete { old_key }),
            Just(ChangeKind::Truncate),
            object().prop_map(|change| ChangeKind::Schema { change }),
        ]
    }

    proptest! {
        #[test]
        fn every_change_survives_the_wire(seq: u64, table_id: u32, kind in kind()) {
            let change = Change { seq, table_id, statement_rows: 0, kind };
            let back = Change::try_from(wire::Change::from(change.clone())).unwrap();
            prop_assert_eq!(back, change);
        }

        #[test]
        fn a_row_sent_in_pieces_is_joined_whole(
            seq: u64, table_id: u32, kind in kind(), piece in 1usize..64, other: u64
        ) {
            let change = wire::Change::from(Change { seq, table_id, statement_rows: 0, kind });
            let mut joiner = Joiner::default();
            let mut whole = Vec::new();
            let pieces: Vec<wire::Change> = if let Some(row) = &change.new_row {
                let first = wire::Change { new_row: None, ..change.clone() };
                pieces(first, row, piece).collect()
            } else {
                vec![change.clone()]
            };
            for (i, p) in pieces.iter().enumerate() {
                prop_assert!(p.new_row.as_ref().map_or(0, String::len) <= piece.max(4));
                prop_assert_eq!(p.continued, i + 1 < pieces.len());
                whole.extend(joiner.push(p.clone()).unwrap());
            }
            prop_assert!(!joiner.pending());
            prop_assert_eq!(whole, vec![change.clone()]);
            // A piece of another change in the middle is refused.
            if pieces.len() > 1 && other != seq {
                let mut joiner = Joiner::default();
                joiner.push(pieces[0].clone()).unwrap();
                let stray = wire::Change { seq: other, ..pieces[1].clone() };
                prop_assert_eq!(
                    joiner.push(stray),
                    Err(WireError::StrayPiece { seq: other, of: seq })
                );
            }
        }

        #[test]
        fn unknown_operations_are_refused(seq: u64, op in 6i32..) {
            let wire = wire::Change { seq, op, ..Default::default() };
            prop_assert_eq!(Change::try_from(wire), Err(WireError::UnknownOp { seq, op }));
        }
    }

    /// A kind's old key and new row, as the queue holds them.
    fn queue_fields(kind: &ChangeKind) -> (Option<&str>, Option<&str>) {
        match kind {
            ChangeKind::Insert { new_row } => (None, Some(new_row)),
            ChangeKind::Update { old_key, new_row } => (old_key.as_deref(), Some(new_row)),
            ChangeKind::Delete { old_key } => (Some(old_key), None),
            ChangeKind::Truncate => (None, None),
            ChangeKind::Schema { change } => (None, Some(change)),
        }
    }

    #[test]
    fn every_kind_survives_the_queue_form() {
        let kinds = [
            ChangeKind::Insert {
                new_row: "{}".into(),
            },
            ChangeKind::Update {
                old_key: Some("{}".into()),
                new_row: "{}".into(),
            },
            ChangeKind::Delete {
                old_key: "{}".into(),
            },
            ChangeKind::Truncate,
            ChangeKind::Schema {
                change: "{}".into(),
            },
        ];
        for (kind, op) in kinds.iter().zip(ChangeKind::QUEUE_OPS) {
            assert_eq!(kind.queue_op(), op);
            let (old_key, new_row) = queue_fields(kind);
            let back = ChangeKind::from_queue(op, old_key.map(Into::into), new_row.map(Into::into));
            assert_eq!(back.as_ref(), Some(kind));
        }
        assert_eq!(ChangeKind::from_queue("X", None, Some("{}".into())), None);
        assert_eq!(ChangeKind::from_queue("I", None, None), None);
    }

    #[test]
    fn a_statements_rows_survive_the_wire_as_one_array() {
        let change = Change {
            seq: 3,
            table_id: 1,
            statement_rows: 2,
            kind: ChangeKind::Insert {
                new_row: r#"[{"id":1}, {"id":2}]"#.into(),
            },
        };
        let back = Change::try_from(wire::Change::from(change.clone())).unwrap();
        assert_eq!(back, change);
        assert_eq!(back.rows(), 2);
    }

    #[test]
    fn statement_rows_on_a_single_row_are_refused() {
        let wire = wire::Change {
            seq: 9,
            op: wire::Op::Insert.into(),
            new_row: Some(r#"{"id":1}"#.into()),
            statement_rows: 1,
            ..Default::default()
        };
        assert_eq!(
            Change::try_from(wire).unwrap_err().to_string(),
            "change 9: statement_rows set on a change that holds no array of rows"
        );
    }

    #[test]
    fn a_row_that_is_not_an_object_is_refused() {
        for text in ["", "[1]", "42", "{"] {
            let wire = wire::Change {
                seq: 4,
                op: wire::Op::Insert.into(),
                new_row: Some(text.into()),
                ..Default::default()
            };
            assert_eq!(
                Change::try_from(wire).unwrap_err().to_string(),
                "change 4: new_row is not a JSON object"
            );
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
