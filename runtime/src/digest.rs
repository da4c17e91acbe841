//! The one definition of what `verify` compares, built the same on both
//! sides: each row's canonical text (the compared columns as one record's
//! text, under pinned session settings), a range's rows hashed together in
//! key order with md5 (or each row alone, to find which differ); and each
//! key as a JSON object. The source
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

/// A table's rows as the digest reads them: `relation` (quoted), its
/// compared `columns` and its `keys`, and the rows it keeps (`filter`, a
/// predicate over alias `t`; the source's `--where`).
#[derive(Debug, Clone)]
pub struct Rows<'a> {
    /// The quoted, qualified relation.
    pub relation: &'a str,
    /// The compared columns, in the source's order.
    pub columns: &'a [Column],
    /// The key columns.
    pub keys: &'a [Column],
    /// Which rows count, if not all.
    pub filter: Option<&'a str>,
}

/// `f` of each of `columns`, joined by commas.
fn each(columns: &[Column], f: impl Fn(&Column, String) -> String) -> String {
    columns
        .iter()
        .map(|c| f(c, ident(&c.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Rows<'_> {
    /// A row's key as a JSON object, as the changes carry it: text-form
    /// values as their text.
    pub fn key_json(&self) -> String {
        let pairs = each(self.keys, |k, name| {
            let cast = if k.text_form { "::text" } else { "" };
            format!("{}, t.{name}{cast}", literal(&k.name))
        });
        format!("json_build_object({pairs})::text")
    }

    /// A row as the compared columns' record, whose text is each column
    /// through its type's output function as COPY writes it (a cast to
    /// text may differ: xml's keeps a declaration its output drops).
    fn row_text(&self) -> String {
        format!("row({})", each(self.columns, |_, name| format!("t.{name}")))
    }

    /// A row's hash: md5 of its text.
    fn row_hash(&self) -> String {
        format!("md5({}::text)", self.row_text())
    }

    /// `t.k1, t.k2`: the key's order.
    fn key_order(&self) -> String {
        each(self.keys, |_, name| format!("t.{name}"))
    }

    /// `(t.k1, t.k2)`.
    fn key_row(&self) -> String {
        format!("({})", self.key_order())
    }

    /// The key columns read from a JSON key object aliased `r` (text forms
    /// through their type's input function), and the record definition
    /// that reads them.
    fn key_record(&self) -> (String, String) {
        let read = each(self.keys, |k, name| {
            if k.text_form {
                format!("r.{name}::{}", k.sql_type)
            } else {
                format!("r.{name}")
            }
        });
        let typed = each(self.keys, |k, name| {
            format!("{name} {}", if k.text_form { "text" } else { &k.sql_type })
        });
        (read, typed)
    }

    /// The key row of JSON key object `param` (a key_json text), typed.
    fn key_of(&self, param: &str) -> String {
        let (read, typed) = self.key_record();
        format!("(select {read} from json_to_record({param}::text::json) as r({typed}))")
    }

    /// The rows after key `$1` (none: from the first) up to and including
    /// key `$2` (none: to the last), with the filter.
    fn range(&self) -> String {
        let key = self.key_row();
        format!(
            "from only {} as t
             where coalesce(({}), false)
               and ($1::text is null or {key} > {})
               and ($2::text is null or {key} <= {})",
            self.relation,
            self.filter.unwrap_or("true"),
            self.key_of("$1"),
            self.key_of("$2"),
        )
    }

    /// The range's row count and digest: md5 of its rows' texts in key
    /// order (one md5 over the range costs a quarter of one per row).
    pub fn digest_sql(&self) -> String {
        format!(
            "select count(*)::bigint, coalesce(md5(string_agg({}::text, E'\\n' order by {})), '')
             {}",
            self.row_text(),
            self.key_order(),
            self.range(),
        )
    }

    /// Each row of the range: its key (see [`Rows::key_json`]) and hash.
    pub fn each_row_sql(&self) -> String {
        format!(
            "select {}, {} {}",
            self.key_json(),
            self.row_hash(),
            self.range()
        )
    }

    /// The key `$2` rows after key `$1` (none: from the first), the end of a
    /// range of that many rows; none when fewer are left.
    pub fn boundary_sql(&self) -> String {
        format!(
            "select {} from only {} as t
             where coalesce(({}), false) and ($1::text is null or {} > {})
             order by {} offset $2::bigint - 1 limit 1",
            self.key_json(),
            self.relation,
            self.filter.unwrap_or("true"),
            self.key_row(),
            self.key_of("$1"),
            self.key_order(),
        )
    }

    /// The rows of the keys in JSON array `keys` (key objects), as COPY
    /// text of `columns` (the replicated ones), for a repair.
    pub fn copy_keys_sql(&self, columns: &str, keys: &str) -> String {
        let (read, typed) = self.key_record();
        format!(
            "copy (select {columns} from only {} as t
                   where coalesce(({}), false)
                     and {} in (select {read} from json_to_recordset({}::json) as r({typed})))
             to stdout",
            self.relation,
            self.filter.unwrap_or("true"),
            self.key_row(),
            literal(keys),
        )
    }
}
