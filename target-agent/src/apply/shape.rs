//! Rows captured under another definition of their table. The source's
//! capture writes a row's columns as the table has them when the row
//! changes, so an `ALTER TABLE` on the source makes the rows before and
//! after it differ, while the stream announced one column list when it
//! began. A row is applied with the columns it carries: an added column
//! goes to the target (which must have it: the batch fails, naming the
//! column, until it does), and a column the row lacks is left as the target
//! has it (an update) or to its default (an insert), never set to NULL.

use std::collections::HashMap;
use std::fmt;

use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};

use crate::schema::TablePlan;

/// Column lists met since the stream began other than the announced ones,
/// each numbered (see [`super::step::Step::shape`]) and planned.
#[derive(Default)]
pub(super) struct Shapes {
    /// Their shape numbers, by table and sorted columns.
    numbers: HashMap<(u32, Vec<String>), u32>,
    /// Their checked plans, by table and shape number.
    plans: HashMap<(u32, u32), TablePlan>,
}

impl Shapes {
    /// The number of table `table_id`'s rows of `columns`, or the columns
    /// back when they were not met yet.
    pub(super) fn number(&self, table_id: u32, columns: Vec<String>) -> Result<u32, Vec<String>> {
        let key = (table_id, columns);
        self.numbers.get(&key).copied().ok_or(key.1)
    }

    /// Numbers a column list met for the first time, planned as `plan`.
    pub(super) fn add(&mut self, table_id: u32, columns: Vec<String>, plan: TablePlan) -> u32 {
        let shape = self.numbers.len() as u32 + 1;
        self.numbers.insert((table_id, columns), shape);
        self.plans.insert((table_id, shape), plan);
        shape
    }

    /// The plan of a numbered shape.
    pub(super) fn plan(&self, table_id: u32, shape: u32) -> &TablePlan {
        &self.plans[&(table_id, shape)]
    }

    /// Forgets a table's shapes: its schema changed, and with it what its
    /// rows' columns are checked against.
    pub(super) fn forget(&mut self, table_id: u32) {
        self.numbers.retain(|(table, _), _| *table != table_id);
        self.plans.retain(|(table, _), _| *table != table_id);
    }
}

/// The column names a row object (or the first row of a statement's
/// array) carries, sorted; None when the text holds no object.
pub fn columns(row: &str) -> Option<Vec<String>> {
    let row = row.trim_start();
    // A statement's rows share their table's definition: the first tells.
    let first = row.strip_prefix('[').unwrap_or(row);
    let mut de = serde_json::Deserializer::from_str(first);
    // Only the object is read, not what follows it.
    let mut names = de.deserialize_map(Names).ok()?;
    names.sort_unstable();
    Some(names)
}

struct Names;

impl<'de> Visitor<'de> for Names {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object of a row")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
        let mut names = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            map.next_value::<IgnoredAny>()?;
            names.push(name);
        }
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rows_columns_are_read_from_it_or_from_its_statements_first_row() {
        let sorted = |names: &[&str]| Some(names.iter().map(|n| n.to_string()).collect());
        assert_eq!(
            columns(r#"{"id":1,"b":null,"a":{"x":[1]}}"#),
            sorted(&["a", "b", "id"])
        );
        assert_eq!(
            columns(r#" [{"id":1,"v":"a"},{"id":2,"v":"b","extra":3}]"#),
            sorted(&["id", "v"])
        );
        assert_eq!(columns(r#"{"a\"b":1}"#), sorted(&["a\"b"]));
        assert_eq!(columns("[]"), None);
        assert_eq!(columns(""), None);
    }
}
