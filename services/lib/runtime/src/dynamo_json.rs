//! Plain JSON ⇄ DynamoDB attribute values.
//!
//! Stored device bodies keep JSON numbers as numbers (`N`), and everything
//! read back (MQTT `get`, fetch replies, streams) is plain JSON again rather
//! than DynamoDB's typed form.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Map, Number, Value};

/// Converts any JSON value to an attribute value.
pub fn to_attribute(value: &Value) -> AttributeValue {
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(items) => AttributeValue::L(items.iter().map(to_attribute).collect()),
        Value::Object(map) => AttributeValue::M(to_item(map)),
    }
}

/// Converts a JSON object to an item (attribute map).
pub fn to_item(map: &Map<String, Value>) -> HashMap<String, AttributeValue> {
    map.iter()
        .map(|(k, v)| (k.clone(), to_attribute(v)))
        .collect()
}

/// Converts an attribute value back to plain JSON. Sets become arrays, binary
/// becomes an array of byte values, numbers that fit no JSON number stay strings.
pub fn from_attribute(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => number(n),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::M(m) => Value::Object(from_item(m)),
        AttributeValue::L(l) => Value::Array(l.iter().map(from_attribute).collect()),
        AttributeValue::Ss(ss) => Value::Array(ss.iter().cloned().map(Value::String).collect()),
        AttributeValue::Ns(ns) => Value::Array(ns.iter().map(|n| number(n)).collect()),
        AttributeValue::B(b) => bytes(b.as_ref()),
        AttributeValue::Bs(bs) => Value::Array(bs.iter().map(|b| bytes(b.as_ref())).collect()),
        _ => Value::Null,
    }
}

/// Converts an item to a JSON object.
pub fn from_item(item: &HashMap<String, AttributeValue>) -> Map<String, Value> {
    item.iter()
        .map(|(k, v)| (k.clone(), from_attribute(v)))
        .collect()
}

fn number(n: &str) -> Value {
    if let Ok(i) = n.parse::<i64>() {
        return Value::Number(i.into());
    }
    if let Ok(u) = n.parse::<u64>() {
        return Value::Number(u.into());
    }
    n.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Value::Number)
        .unwrap_or_else(|| Value::String(n.to_owned()))
}

fn bytes(b: &[u8]) -> Value {
    Value::Array(b.iter().map(|x| Value::Number((*x).into())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_nested_json_with_numbers_as_numbers() {
        let v = json!({"a": 1, "b": -2.5, "c": "x", "d": [true, null, {"e": "f"}], "g": {}});
        let attr = to_attribute(&v);
        match &attr {
            AttributeValue::M(m) => assert_eq!(m["a"], AttributeValue::N("1".into())),
            other => panic!("{other:?}"),
        }
        assert_eq!(from_attribute(&attr), v);
    }

    #[test]
    fn numbers_beyond_json_stay_readable() {
        assert_eq!(number("1e400"), Value::String("1e400".into()));
        assert_eq!(
            number("18446744073709551615"),
            json!(18446744073709551615u64)
        );
    }
}
