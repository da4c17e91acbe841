//! What the apply statements would not catch themselves: a key that lacks
//! one of its columns matches no row, so a delete by it would succeed and
//! do nothing.

use std::collections::HashMap;

use serde_json::value::RawValue;

/// What is wrong with a key `text` (a key object, or a JSON array of them
/// when `statement_rows` is not 0) that must carry every one of
/// `key_columns`, not null. Says which column, never the values.
pub(super) fn problem(text: &str, statement_rows: u32, key_columns: &[String]) -> Option<String> {
    let one = |key: &HashMap<&str, &RawValue>| {
        key_columns
            .iter()
            .find(|column| key.get(column.as_str()).is_none_or(|v| v.get() == "null"))
            .map(|column| format!("the key lacks column {column}"))
    };
    // Borrowed keys cover every name without a JSON escape; the others
    // take the slower owned form.
    let owned = |key: &serde_json::Map<String, serde_json::Value>| {
        key_columns
            .iter()
            .find(|column| {
                key.get(column.as_str())
                    .is_none_or(serde_json::Value::is_null)
            })
            .map(|column| format!("the key lacks column {column}"))
    };
    let not_json = || {
        Some(format!(
            "the key is not {}",
            if statement_rows == 0 {
                "a JSON object"
            } else {
                "a JSON array of objects"
            }
        ))
    };
    if statement_rows == 0 {
        if let Ok(key) = serde_json::from_str::<HashMap<&str, &RawValue>>(text) {
            return one(&key);
        }
        match serde_json::from_str(text) {
            Ok(key) => owned(&key),
            Err(_) => not_json(),
        }
    } else {
        if let Ok(keys) = serde_json::from_str::<Vec<HashMap<&str, &RawValue>>>(text) {
            return keys.iter().find_map(one);
        }
        match serde_json::from_str::<Vec<serde_json::Map<String, serde_json::Value>>>(text) {
            Ok(keys) => keys.iter().find_map(owned),
            Err(_) => not_json(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_must_carry_every_key_column_not_null() {
        let keys = ["id".to_string(), "a \"b\"".to_string()];
        let problem = |text, rows| problem(text, rows, &keys);
        assert_eq!(problem(r#"{"id":1,"a \"b\"":"eu"}"#, 0), None);
        assert_eq!(
            problem(r#"{"id":1}"#, 0).unwrap(),
            "the key lacks column a \"b\""
        );
        assert_eq!(
            problem(r#"{"id":null,"a \"b\"":"eu"}"#, 0).unwrap(),
            "the key lacks column id"
        );
        assert_eq!(
            problem(r#"[{"id":1,"a \"b\"":"eu"},{"a \"b\"":"us"}]"#, 2).unwrap(),
            "the key lacks column id"
        );
        assert_eq!(problem("[1]", 0).unwrap(), "the key is not a JSON object");
        assert_eq!(
            problem(r#"{"id":1}"#, 1).unwrap(),
            "the key is not a JSON array of objects"
        );
    }
}
