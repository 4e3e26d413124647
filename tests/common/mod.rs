//! Reading the shared vector files, for the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::path::Path;

use serde_json::Value;

/// A file of `tests/vectors/`, parsed.
pub fn load(file: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(file);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A string field.
pub fn s(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {v}"))
        .to_string()
}

/// A number field, written as a string (u64) or as a JSON number.
pub fn n(v: &Value, key: &str) -> u64 {
    match &v[key] {
        Value::String(text) => text.parse().unwrap(),
        other => other.as_u64().unwrap_or_else(|| panic!("{key} in {v}")),
    }
}
