//! Net changes: inside one batch, a row's change that a later change of the
//! same row overwrites need not be applied at all. A catch-up after an
//! outage is full of them (a row inserted, updated, then deleted), and every
//! one dropped is a row the target neither writes nor indexes.
//!
//! Only tables whose rows do not constrain each other are compacted (see
//! [`crate::schema::TablePlan::compact_key`]): nothing can tell which
//! intermediate states a batch went through, as its transaction shows only
//! the last. Kept changes keep their order, so a key the window fails to
//! recognise (the same value spelled two ways) just goes uncompacted. An
//! update that carries only some columns (the source ships the columns an
//! UPDATE changed) lands in an earlier change of the row that carries those
//! columns; else both stay, applied in order.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, RandomState};

use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::apply::step::{RunKind, Step};

/// What a held change costs beyond its text, roughly: the held entry, its
/// slot in the key index and the text's allocation.
const ENTRY_BYTES: usize = 128;

/// The most changes a window sets room aside for when it is made.
const PRESIZED_ENTRIES: usize = 1 << 21;

/// A change waiting in the window.
#[derive(Debug)]
struct Held {
    /// None once a later change of the same key dropped it.
    step: Option<Step>,
    /// The hash of the row's key, if its table is compacted. The key itself
    /// is read again from the row when needed: most rows are never
    /// overwritten, and a copy of every key would cost the window's memory.
    key_hash: Option<u64>,
    /// Whether the first change of this key in the window was an insert:
    /// the key was then not on the target before it, so its last row can
    /// be inserted without a lookup.
    first_insert: bool,
}

/// A sliding window over a batch's changes, in source order, that drops
/// every change a later change of the same key overwrites. Holds about
/// `limit` bytes; what leaves the window goes to the target unchanged.
#[derive(Debug)]
pub struct Compactor {
    limit: usize,
    held: VecDeque<Held>,
    /// The position of the newest held change of each key hash.
    latest: HashMap<u64, u64>,
    hasher: RandomState,
    /// The position of `held`'s front.
    front: u64,
    bytes: usize,
    dropped: usize,
}

impl Compactor {
    /// A window of about `limit` bytes (0: no compaction).
    pub fn new(limit: usize) -> Compactor {
        // Sized for the most changes the window can hold, once: grown by
        // doubling mid-batch, old and new tables would briefly coexist and
        // the agent's peak memory would follow the batch, not the limit.
        // A window beyond PRESIZED_ENTRIES (a setting of hundreds of MiB)
        // grows as it fills instead of claiming its size up front.
        let entries = (limit / ENTRY_BYTES).min(PRESIZED_ENTRIES);
        Compactor {
            limit,
            held: VecDeque::with_capacity(entries),
            latest: HashMap::with_capacity(entries),
            hasher: RandomState::new(),
            front: 0,
            bytes: 0,
            dropped: 0,
        }
    }

    /// Adds the next change of the batch, with its table's key columns when
    /// the table is compacted.
    pub fn push(&mut self, mut step: Step, key_columns: Option<&[String]>) {
        let position = self.front + self.held.len() as u64;
        let mut first_insert = step.kind == RunKind::Insert;
        let mut key_hash = None;
        let key = key_columns.and_then(|columns| Some((key_of(&step.rows, columns)?, columns)));
        if let Some((key, columns)) = key {
            let hash = self.hasher.hash_one((step.table_id, &key));
            if let Some(&earlier) = self.latest.get(&hash) {
                let held = &mut self.held[(earlier - self.front) as usize];
                // Another key with the same hash just goes uncompacted.
                let same = held.step.as_ref().is_some_and(|s| {
                    s.table_id == step.table_id && key_of(&s.rows, columns).as_ref() == Some(&key)
                });
                match held.step.as_mut() {
                    Some(older) if same && covers(&step, older) => {
                        let overwritten = held.step.take().expect("checked above");
                        self.bytes -= overwritten.rows.len();
                        self.dropped += overwritten.count as usize;
                        first_insert = held.first_insert;
                    }
                    // An update of some of the columns the earlier row
                    // carries lands in it, which stays where it was.
                    Some(older)
                        if same
                            && step.kind == RunKind::Upsert
                            && older.kind != RunKind::Delete =>
                    {
                        if let Some(merged) = overlay(&older.rows, &step.rows) {
                            self.bytes = self.bytes - older.rows.len() + merged.len();
                            older.rows = merged;
                            self.dropped += step.count as usize;
                            return;
                        }
                    }
                    _ => {}
                }
            }
            self.latest.insert(hash, position);
            key_hash = Some(hash);
            if step.kind != RunKind::Delete {
                // The row's last version: a key that came into being in the
                // window is new to the target; any other may be there.
                step.kind = if first_insert {
                    RunKind::Insert
                } else {
                    RunKind::Upsert
                };
            }
        }
        self.bytes += step.rows.len() + ENTRY_BYTES;
        self.held.push_back(Held {
            step: Some(step),
            key_hash,
            first_insert,
        });
    }

    /// The changes pushed out of the window by those added since the last
    /// call, oldest first.
    pub fn overflow(&mut self) -> Vec<Step> {
        let mut out = Vec::new();
        while self.bytes > self.limit {
            match self.pop() {
                Some(Some(step)) => out.push(step),
                Some(None) => {}
                None => break,
            }
        }
        out
    }

    /// The oldest changes still held, about `rows` rows of them (none once
    /// the window is empty): the batch is complete, and taken a part at a
    /// time it needs no second copy of the window.
    pub fn drain(&mut self, rows: u32) -> Vec<Step> {
        let mut out = Vec::new();
        let mut taken = 0;
        while taken < rows {
            let Some(step) = self.pop() else { break };
            if let Some(step) = step {
                taken += step.count;
                out.push(step);
            }
        }
        out
    }

    /// Forgets every held change (the batch was rolled back).
    pub fn clear(&mut self) {
        self.front += self.held.len() as u64;
        self.held.clear();
        self.latest.clear();
        self.bytes = 0;
    }

    /// Rows dropped since the last call.
    pub fn take_dropped(&mut self) -> usize {
        std::mem::take(&mut self.dropped)
    }

    fn pop(&mut self) -> Option<Option<Step>> {
        let held = self.held.pop_front()?;
        let position = self.front;
        self.front += 1;
        self.bytes -= ENTRY_BYTES;
        if let Some(hash) = held.key_hash
            && self.latest.get(&hash) == Some(&position)
        {
            self.latest.remove(&hash);
        }
        if let Some(step) = &held.step {
            self.bytes -= step.rows.len();
        }
        Some(held.step)
    }
}

/// Whether change `later` leaves nothing of `earlier` on the target: a
/// delete, a whole row (the announced columns, shape 0) or a row of the
/// same columns. Rows of other shapes are not compared column by column:
/// they stay, which costs a statement, never a value.
fn covers(later: &Step, earlier: &Step) -> bool {
    later.kind == RunKind::Delete || later.shape == 0 || later.shape == earlier.shape
}

/// Row object `earlier` with the values of row object `later`, which
/// carries some of its columns (an update of those); None when `later`
/// carries a column `earlier` lacks, or either is not one object.
fn overlay(earlier: &str, later: &str) -> Option<String> {
    let fields = |row: &str| -> Option<Vec<(String, Box<RawValue>)>> {
        let mut de = serde_json::Deserializer::from_str(row);
        let fields = de.deserialize_map(Fields).ok()?;
        de.end().ok()?;
        Some(fields)
    };
    let mut merged = fields(earlier)?;
    for (name, value) in fields(later)? {
        merged.iter_mut().find(|(n, _)| *n == name)?.1 = value;
    }
    let mut out = String::with_capacity(earlier.len() + later.len());
    out.push('{');
    for (i, (name, value)) in merged.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(name).ok()?);
        out.push(':');
        out.push_str(value.get());
    }
    out.push('}');
    Some(out)
}

/// A row object's columns and their JSON texts, in its order.
struct Fields;

impl<'de> Visitor<'de> for Fields {
    type Value = Vec<(String, Box<RawValue>)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object of a row")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            fields.push((name, map.next_value()?));
        }
        Ok(fields)
    }
}

/// The key of a row (or key) object: its key columns' JSON values, in
/// `columns` order. None when the text is not an object holding them all.
pub fn key_of(row: &str, columns: &[String]) -> Option<String> {
    let mut de = serde_json::Deserializer::from_str(row);
    let key = de.deserialize_map(KeyVisitor(columns)).ok()?;
    de.end().ok()?;
    key
}

struct KeyVisitor<'c>(&'c [String]);

impl<'de> Visitor<'de> for KeyVisitor<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object holding the key columns")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
        let mut values: Vec<Option<&'de RawValue>> = vec![None; self.0.len()];
        // A name with escapes does not borrow: that row goes uncompacted.
        while let Some(name) = map.next_key::<&'de str>()? {
            match self.0.iter().position(|c| c == name) {
                Some(i) => values[i] = Some(map.next_value()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let mut key = String::new();
        for value in values {
            let Some(value) = value else { return Ok(None) };
            key.push_str(value.get());
            // No JSON text holds a raw control character.
            key.push('\u{1}');
        }
        Ok(Some(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn step(kind: RunKind, id: u8, version: u8) -> Step {
        let rows = match kind {
            RunKind::Delete => format!("{{\"id\": {id}}}"),
            _ => format!("{{\"id\":{id},\"v\":{version},\"w\":{version}}}"),
        };
        Step {
            table_id: 1,
            kind,
            rows,
            count: 1,
            shape: 0,
        }
    }

    /// An update carrying only column `v` (shape 1) or `w` (shape 2) of a
    /// table whose whole rows carry both (shape 0): as the source ships the
    /// columns an UPDATE changed.
    fn partial(id: u8, column: u8, version: u8) -> Step {
        let name = if column == 1 { "v" } else { "w" };
        Step {
            table_id: 1,
            kind: RunKind::Upsert,
            rows: format!("{{\"id\":{id},\"{name}\":{version}}}"),
            count: 1,
            shape: u32::from(column),
        }
    }

    type Table = BTreeMap<String, BTreeMap<String, String>>;

    /// A row object's columns and values.
    fn fields(row: &str) -> BTreeMap<String, String> {
        serde_json::from_str::<BTreeMap<String, serde_json::Value>>(row)
            .expect("a row object")
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect()
    }

    /// A table as the applier's statements leave it; None when a plain
    /// insert met its key (which the source never lets happen).
    /// A column a row lacks keeps the target's value (see `shape`).
    fn apply(steps: &[Step], mut table: Table) -> Option<Table> {
        for s in steps {
            let key = key_of(&s.rows, &["id".to_string()]).unwrap_or_default();
            match s.kind {
                RunKind::Insert => {
                    if table.insert(key, fields(&s.rows)).is_some() {
                        return None;
                    }
                }
                RunKind::Upsert => {
                    table.entry(key).or_default().extend(fields(&s.rows));
                }
                RunKind::Delete => {
                    table.remove(&key);
                }
                RunKind::Truncate => table.clear(),
            }
        }
        Some(table)
    }

    /// Changes a source could make to a table holding keys 0..4: an insert
    /// only of a key not there, an update (of the whole row or of one
    /// column) or delete only of one there, the new key of a key-changing
    /// update (an upsert of a key not there), and truncates.
    fn history(ops: Vec<(u8, u8)>) -> Vec<Step> {
        let mut present: Vec<bool> = (0..8).map(|id| id < 4).collect();
        let mut steps = Vec::new();
        for (n, (id, op)) in ops.into_iter().enumerate() {
            if op == 6 {
                present.fill(false);
                steps.push(Step {
                    table_id: 1,
                    kind: RunKind::Truncate,
                    rows: String::new(),
                    count: 1,
                    shape: 0,
                });
                continue;
            }
            if op >= 7 && present[id as usize] {
                steps.push(partial(id, op - 6, n as u8));
                continue;
            }
            let kind = match (present[id as usize], op % 3) {
                (false, 1) => RunKind::Upsert,
                (false, _) => RunKind::Insert,
                (true, 1) => RunKind::Delete,
                (true, _) => RunKind::Upsert,
            };
            present[id as usize] = kind != RunKind::Delete;
            steps.push(step(kind, id, n as u8));
        }
        steps
    }

    fn compacted(steps: &[Step], limit: usize) -> Vec<Step> {
        let mut window = Compactor::new(limit);
        let mut out = Vec::new();
        for s in steps {
            window.push(s.clone(), Some(&["id".to_string()]));
            out.extend(window.overflow());
        }
        loop {
            let rest = window.drain(3);
            if rest.is_empty() {
                return out;
            }
            out.extend(rest);
        }
    }

    proptest! {
        #[test]
        fn net_changes_leave_the_table_as_every_change_does(
            ops in proptest::collection::vec((0u8..8, 0u8..9), 0..60),
            limit in prop_oneof![Just(0usize), 0usize..2000, Just(usize::MAX)],
        ) {
            let start: Table = (0..4)
                .map(|id| (format!("{id}\u{1}"), fields(&format!("{{\"id\":{id},\"v\":0,\"w\":0}}"))))
                .collect();
            let steps = history(ops);
            let every = apply(&steps, start.clone()).expect("the source's own history applies");
            let net = compacted(&steps, limit);
            prop_assert!(net.len() <= steps.len());
            prop_assert_eq!(apply(&net, start), Some(every));
        }
    }

    #[test]
    fn a_row_inserted_updated_and_deleted_leaves_only_its_delete() {
        let steps = [
            step(RunKind::Insert, 1, 0),
            step(RunKind::Upsert, 1, 1),
            step(RunKind::Delete, 1, 2),
            step(RunKind::Insert, 2, 3),
            step(RunKind::Upsert, 2, 4),
        ];
        let net = compacted(&steps, usize::MAX);
        let kinds: Vec<_> = net.iter().map(|s| (s.kind, s.rows.as_str())).collect();
        assert_eq!(
            kinds,
            vec![
                (RunKind::Delete, "{\"id\": 1}"),
                (RunKind::Insert, "{\"id\":2,\"v\":4,\"w\":4}")
            ]
        );
    }

    #[test]
    fn an_update_of_some_columns_lands_in_the_earlier_row_or_stays_apart() {
        let steps = [
            step(RunKind::Insert, 1, 0),
            partial(1, 1, 1),
            partial(1, 2, 2),
            partial(1, 2, 3),
            step(RunKind::Upsert, 1, 4),
        ];
        let net = compacted(&steps, usize::MAX);
        let rows: Vec<_> = net.iter().map(|s| (s.kind, s.rows.as_str())).collect();
        assert_eq!(rows, vec![(RunKind::Insert, "{\"id\":1,\"v\":4,\"w\":4}")]);
        // An update of a column the earlier row does not carry stays apart.
        let steps = [partial(2, 1, 0), partial(2, 2, 1), partial(2, 1, 2)];
        let net = compacted(&steps, usize::MAX);
        let rows: Vec<_> = net.iter().map(|s| (s.kind, s.rows.as_str())).collect();
        assert_eq!(
            rows,
            vec![
                (RunKind::Upsert, "{\"id\":2,\"v\":0}"),
                (RunKind::Upsert, "{\"id\":2,\"w\":1}"),
                (RunKind::Upsert, "{\"id\":2,\"v\":2}")
            ]
        );
    }

    #[test]
    fn a_window_of_nothing_passes_every_change_through() {
        let steps = [step(RunKind::Insert, 1, 0), step(RunKind::Upsert, 1, 1)];
        assert_eq!(compacted(&steps, 0), steps.to_vec());
    }

    #[test]
    fn keys_are_read_from_rows_and_key_objects_alike() {
        let columns = ["a".to_string(), "b".to_string()];
        let row = key_of(r#"{"b":"x\"y","v":[1, {"a":2}],"a":10}"#, &columns);
        let key = key_of(r#"{"a": 10, "b": "x\"y"}"#, &columns);
        assert_eq!(row, Some("10\u{1}\"x\\\"y\"\u{1}".to_string()));
        assert_eq!(row, key);
        assert_eq!(key_of(r#"{"a": 10}"#, &columns), None);
        assert_eq!(key_of("[1]", &columns), None);
        assert_eq!(
            crate::apply::step::elements(r#"[{"a":1}, {"a":2}]"#),
            Some(vec![r#"{"a":1}"#, r#"{"a":2}"#])
        );
    }
}
