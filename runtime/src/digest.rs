//! The one definition of what `verify` compares, built the same on both
//! sides: a range's rows as COPY writes them (each column through its
//! type's output function, under pinned session settings) in key order,
//! hashed together with md5 (or each row's record text alone, to find
//! which differ); and each key as a JSON object. The source
//! runs it in the snapshot that cut a batch, the target in that batch's
//! transaction after its changes: equal copies give equal answers.

use crate::sql::{ident, literal};

/// The settings every output function that depends on one is pinned to,
/// where digests and keys are computed: the two databases may default to
/// other date styles, time zones and float digits. For the transaction
/// (`set local`) or the session.
pub fn pinned(local: bool) -> String {
    let scope = if local { "set local" } else { "set" };
    [
        "datestyle = 'ISO, MDY'",
        "intervalstyle = 'postgres'",
        "timezone = 'UTC'",
        "extra_float_digits = 1",
        "bytea_output = 'hex'",
        "lc_monetary = 'C'",
        // The range's keys are written as literals into COPY's query.
        "standard_conforming_strings = on",
    ]
    .map(|setting| format!("{scope} {setting}"))
    .join("; ")
}

/// A column as the digest reads it.
#[derive(Debug, Clone)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// Its type, as `format_type` gives it.
    pub sql_type: String,
    /// Whether its key value travels as text (`pgferry.text_form`).
    pub text_form: bool,
}

/// A table's rows as the digest reads them: `relation` (a FROM item), its
/// compared `columns` and its `keys`, and the rows it keeps (`filter`, a
/// predicate over alias `t`; the source's `--where`).
#[derive(Debug, Clone)]
pub struct Rows {
    /// The quoted, qualified relation as a FROM item: `only` before an
    /// ordinary table (an inheritance child's rows are not its own), none
    /// before a partitioned one (whose rows are its partitions').
    pub relation: String,
    /// The compared columns, in the source's order.
    pub columns: Vec<Column>,
    /// The key columns.
    pub keys: Vec<Column>,
    /// Which rows count, if not all.
    pub filter: Option<String>,
}

/// A range's digest, taken over its rows as COPY writes them in key order
/// (`Rows::copy_range_sql`): how many rows, and the md5 of their text.
/// Hashed here, not in the server: writing COPY text costs the server far
/// less than hashing there (and the source server's time is the
/// writers').
#[derive(Default)]
pub struct Digest {
    rows: u64,
    md5: md5::Md5,
}

impl Digest {
    /// Takes the next piece of the COPY.
    pub fn update(&mut self, data: &[u8]) {
        use md5::Digest as _;
        // COPY's text escapes a newline inside a value: each one ends a row.
        self.rows += data.iter().filter(|&&b| b == b'\n').count() as u64;
        self.md5.update(data);
    }

    /// The rows and their md5, in hex.
    pub fn finish(self) -> (u64, String) {
        use md5::Digest as _;
        let hex = self
            .md5
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        (self.rows, hex)
    }
}

/// `f` of each of `columns`, joined by commas.
fn each(columns: &[Column], f: impl Fn(&Column, String) -> String) -> String {
    columns
        .iter()
        .map(|c| f(c, ident(&c.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Rows {
    /// A row's key as a JSON object, as the changes carry it: text-form
    /// values as their text.
    pub fn key_json(&self) -> String {
        let pairs = each(&self.keys, |k, name| {
            let cast = if k.text_form { "::text" } else { "" };
            format!("{}, t.{name}{cast}", literal(&k.name))
        });
        format!("json_build_object({pairs})::text")
    }

    /// A row's hash: md5 of the compared columns as one record's text,
    /// each column through its type's output function as COPY writes it
    /// (a cast to text may differ: xml's keeps a declaration its output
    /// drops).
    fn row_hash(&self) -> String {
        let values = each(&self.columns, |_, name| format!("t.{name}"));
        format!("md5(row({values})::text)")
    }

    /// `t.k1, t.k2`: the key's order.
    fn key_order(&self) -> String {
        each(&self.keys, |_, name| format!("t.{name}"))
    }

    /// `(t.k1, t.k2)`.
    fn key_row(&self) -> String {
        format!("({})", self.key_order())
    }

    /// The key columns read from a JSON key object aliased `r` (text forms
    /// through their type's input function), and the record definition
    /// that reads them.
    fn key_record(&self) -> (String, String) {
        let read = each(&self.keys, |k, name| {
            if k.text_form {
                format!("r.{name}::{}", k.sql_type)
            } else {
                format!("r.{name}")
            }
        });
        let typed = each(&self.keys, |k, name| {
            format!("{name} {}", if k.text_form { "text" } else { &k.sql_type })
        });
        (read, typed)
    }

    /// The key row of JSON key object `param` (a key_json text), typed.
    fn key_of(&self, param: &str) -> String {
        let (read, typed) = self.key_record();
        format!("(select {read} from json_to_record({param}::text::json) as r({typed}))")
    }

    /// The rows after key `after` (an SQL text expression, null: from the
    /// first) up to and including key `upto` (null: to the last), with the
    /// filter.
    fn range(&self, after: &str, upto: &str) -> String {
        let key = self.key_row();
        format!(
            "from {} as t
             where coalesce(({}), false)
               and ({after}::text is null or {key} > {})
               and ({upto}::text is null or {key} <= {})",
            self.relation,
            self.filter.as_deref().unwrap_or("true"),
            self.key_of(after),
            self.key_of(upto),
        )
    }

    /// COPY of the rows after key `after` up to and including key `upto`
    /// (JSON key objects; none: open), in key order, for a [`Digest`]. COPY
    /// takes no parameters: the keys go in as literals.
    pub fn copy_range_sql(&self, after: Option<&str>, upto: Option<&str>) -> String {
        let bound = |key: Option<&str>| key.map_or_else(|| "null".to_string(), literal);
        format!(
            "copy (select {} {} order by {}) to stdout",
            each(&self.columns, |_, name| format!("t.{name}")),
            self.range(&bound(after), &bound(upto)),
            self.key_order(),
        )
    }

    /// Each row of the range after key `$1` up to and including key `$2`:
    /// its key (see [`Rows::key_json`]) and hash.
    pub fn each_row_sql(&self) -> String {
        format!(
            "select {}, {} {}",
            self.key_json(),
            self.row_hash(),
            self.range("$1", "$2")
        )
    }

    /// The key `$2` rows after key `$1` (none: from the first), the end of a
    /// range of that many rows; none when fewer are left.
    pub fn boundary_sql(&self) -> String {
        format!(
            "select {} from {} as t
             where coalesce(({}), false) and ($1::text is null or {} > {})
             order by {} offset $2::bigint - 1 limit 1",
            self.key_json(),
            self.relation,
            self.filter.as_deref().unwrap_or("true"),
            self.key_row(),
            self.key_of("$1"),
            self.key_order(),
        )
    }

    /// The rows of the keys in JSON array `keys` (key objects), as COPY
    /// text of the columns, for a repair.
    pub fn copy_keys_sql(&self, keys: &str) -> String {
        let (read, typed) = self.key_record();
        let columns = each(&self.columns, |_, name| format!("t.{name}"));
        format!(
            "copy (select {columns} from {} as t
                   where coalesce(({}), false)
                     and {} in (select {read} from json_to_recordset({}::json) as r({typed})))
             to stdout",
            self.relation,
            self.filter.as_deref().unwrap_or("true"),
            self.key_row(),
            literal(keys),
        )
    }
}
