//! Quoting for SQL text built at run time: every identifier and literal goes
//! through here, so `Order Items` and `"; drop table x; --` are just names.

/// Quotes an identifier, always (`"Order Items"`, `"a""b"`).
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a schema-qualified name.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

/// Quotes a string literal (standard_conforming_strings, as on every
/// supported server).
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_stay_names() {
        assert_eq!(ident("\"; drop table x; --"), "\"\"\"; drop table x; --\"");
        assert_eq!(qualified("Order", "Items x"), "\"Order\".\"Items x\"");
        assert_eq!(literal("it's"), "'it''s'");
    }
}
