//! What `verify` and `repair` found, per table and target, as text or
//! JSON.

use std::fmt;

use serde::Serialize;

use super::registration::Registration;

/// How a row differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// The source has it, the target not.
    Missing,
    /// The target has it, the source not (or not through the row filter).
    Extra,
    /// Both have it, with other values.
    Different,
}

/// Every table compared.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Per table and target.
    pub tables: Vec<TableReport>,
    /// Differences found in all of them (after the repair, for `repair`).
    pub differences: u64,
    /// Rows a repair rewrote.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repaired: Option<u64>,
    /// Tables that could not be compared (see their `note`).
    pub not_compared: u64,
}

/// One table on one target.
#[derive(Debug, Serialize)]
pub struct TableReport {
    /// The target's name.
    pub target: String,
    /// schema.table on the source.
    pub table: String,
    /// schema.table on the target.
    pub target_table: String,
    /// Whether it was compared (see `note` if not).
    pub compared: bool,
    /// Rows compared (the source's, through the registration's filter).
    pub rows: u64,
    /// Differences found (left, for `repair`).
    pub differences: u64,
    /// Keys of rows the target lacks (at most `--max-differences` of all
    /// kinds).
    pub missing: Vec<serde_json::Value>,
    /// Keys of rows only the target has.
    pub extra: Vec<serde_json::Value>,
    /// Keys of rows that differ.
    pub different: Vec<serde_json::Value>,
    /// Rows `repair` rewrote.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repaired: Option<u64>,
    /// Why it was not compared, or what else was done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl TableReport {
    /// An empty report of `registration`.
    pub fn of(registration: &Registration) -> TableReport {
        TableReport {
            target: registration.target.clone(),
            table: registration.source.clone(),
            target_table: registration.target_table.clone(),
            compared: false,
            rows: 0,
            differences: 0,
            missing: Vec::new(),
            extra: Vec::new(),
            different: Vec::new(),
            repaired: None,
            note: None,
        }
    }

    /// Counts differences and lists them while under `max` listed.
    pub fn add(&mut self, found: &[(Kind, String)], max: usize) {
        self.differences += found.len() as u64;
        for (kind, key) in found {
            if self.missing.len() + self.extra.len() + self.different.len() >= max {
                break;
            }
            let key = serde_json::from_str(key).unwrap_or(serde_json::Value::String(key.clone()));
            match kind {
                Kind::Missing => self.missing.push(key),
                Kind::Extra => self.extra.push(key),
                Kind::Different => self.different.push(key),
            }
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for table in &self.tables {
            write!(
                f,
                "{} -> {}:{}",
                table.table, table.target, table.target_table
            )?;
            if let Some(note) = &table.note {
                write!(f, " {note};")?;
            }
            writeln!(
                f,
                " {} rows compared, {} differences{}",
                table.rows,
                table.differences,
                table
                    .repaired
                    .map(|r| format!(" left, {r} rows repaired"))
                    .unwrap_or_default()
            )?;
            let lists = [
                ("missing on the target", &table.missing),
                ("extra on the target", &table.extra),
                ("different", &table.different),
            ];
            for (what, keys) in lists {
                for key in keys {
                    writeln!(f, "  {what}: {key}")?;
                }
            }
            let listed = table.missing.len() + table.extra.len() + table.different.len();
            if (listed as u64) < table.differences {
                writeln!(f, "  ... and {} more", table.differences - listed as u64)?;
            }
        }
        write!(f, "total: {} differences", self.differences)?;
        if let Some(repaired) = self.repaired {
            write!(f, " left, {repaired} rows repaired")?;
        }
        if self.not_compared > 0 {
            write!(f, "; {} tables not compared", self.not_compared)?;
        }
        writeln!(f)
    }
}
