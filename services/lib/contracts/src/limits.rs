//! DynamoDB's documented item limits, checked before a write.
//!
//! The emulators accept items that DynamoDB refuses (a number such as `1e200`, a body nested
//! 40 levels deep), and DynamoDB refuses a whole BatchWriteItem for one such item. Checking
//! here lets a pipeline dead-letter exactly the message that cannot be stored, with the reason
//! DynamoDB would give, before it reaches the table. The limits are those of the DynamoDB
//! developer guide ("Service, account, and table quotas"; "Data types").

use serde_json::{Map, Number, Value};

/// A partition key value: 1 to 2048 bytes.
pub const MAX_PARTITION_KEY_BYTES: usize = 2048;
/// A sort key value: 1 to 1024 bytes.
pub const MAX_SORT_KEY_BYTES: usize = 1024;
/// Maps and lists nest at most 32 levels deep.
pub const MAX_NESTING_DEPTH: usize = 32;
/// An item, attribute names and values together: 400 KB.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// A number keeps at most 38 significant digits.
pub const MAX_NUMBER_DIGITS: usize = 38;
/// Positive and negative magnitudes lie in 1E-130 ..= 9.99…E+125 (or are zero).
pub const MIN_NUMBER_EXPONENT: i64 = -130;
pub const MAX_NUMBER_EXPONENT: i64 = 125;

/// Why DynamoDB would refuse an item; the text is what lands in the DLQ.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("key `{name}` is {bytes} bytes; DynamoDB allows 1 to {max} bytes for this key")]
    KeySize {
        name: String,
        bytes: usize,
        max: usize,
    },
    #[error(
        "number `{shown}` at `{path}` is outside DynamoDB's range (at most 38 significant digits, magnitude 1E-130 to 9.9E+125)"
    )]
    NumberRange { path: String, shown: String },
    #[error("`{path}` nests deeper than DynamoDB's limit of 32 levels")]
    TooDeep { path: String },
    #[error("an attribute name at `{path}` is empty; DynamoDB requires 1 to 65535 bytes")]
    EmptyName { path: String },
    #[error("the item is about {bytes} bytes; DynamoDB's item size limit is 400 KB")]
    ItemSize { bytes: usize },
}

/// Checks a key attribute's value against its byte limit.
pub fn check_key(name: &str, value: &str, max: usize) -> Result<(), LimitError> {
    if value.is_empty() || value.len() > max {
        return Err(LimitError::KeySize {
            name: name.to_owned(),
            bytes: value.len(),
            max,
        });
    }
    Ok(())
}

/// Checks a JSON object stored as a map attribute (at depth 1) of an item: numbers, nesting,
/// attribute names. Returns the estimated stored size in bytes, for [`check_item_size`].
pub fn check_document(root: &str, map: &Map<String, Value>) -> Result<usize, LimitError> {
    let mut path = root.to_owned();
    walk_map(map, 1, &mut path)
}

/// Checks the estimated size of the whole item (other attributes' bytes plus documents).
pub fn check_item_size(bytes: usize) -> Result<(), LimitError> {
    if bytes > MAX_ITEM_BYTES {
        return Err(LimitError::ItemSize { bytes });
    }
    Ok(())
}

fn walk_map(
    map: &Map<String, Value>,
    depth: usize,
    path: &mut String,
) -> Result<usize, LimitError> {
    if depth > MAX_NESTING_DEPTH {
        return Err(LimitError::TooDeep { path: path.clone() });
    }
    // 3 bytes per map plus 1 per element, as DynamoDB sizes documents.
    let mut size = 3;
    for (name, value) in map {
        let len = path.len();
        path.push('.');
        path.push_str(name);
        if name.is_empty() {
            return Err(LimitError::EmptyName { path: path.clone() });
        }
        size += 1 + name.len() + walk(value, depth, path)?;
        path.truncate(len);
    }
    Ok(size)
}

fn walk(value: &Value, depth: usize, path: &mut String) -> Result<usize, LimitError> {
    Ok(match value {
        Value::Null | Value::Bool(_) => 1,
        Value::String(s) => s.len(),
        Value::Number(n) => {
            check_number(n).map_err(|shown| LimitError::NumberRange {
                path: path.clone(),
                shown,
            })?;
            // Up to 38 digits at two per byte, plus one.
            21
        }
        Value::Array(items) => {
            if depth + 1 > MAX_NESTING_DEPTH {
                return Err(LimitError::TooDeep { path: path.clone() });
            }
            let mut size = 3;
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                size += 1 + walk(item, depth + 1, path)?;
                path.truncate(len);
            }
            size
        }
        Value::Object(map) => walk_map(map, depth + 1, path)?,
    })
}

/// `Err(shown)` when DynamoDB cannot hold the number; `shown` is cut to 40 characters.
fn check_number(n: &Number) -> Result<(), String> {
    let text = n.to_string();
    if number_fits(&text) {
        Ok(())
    } else {
        let mut shown = text;
        shown.truncate(40);
        Err(shown)
    }
}

/// Whether a decimal literal (`-12.5e-3`) has ≤ 38 significant digits and a magnitude that
/// DynamoDB stores.
pub fn number_fits(text: &str) -> bool {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => match unsigned[i + 1..].trim_start_matches('+').parse::<i64>() {
            Ok(e) => (&unsigned[..i], e),
            Err(_) => return false,
        },
        None => (unsigned, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if !int_part
        .bytes()
        .chain(frac_part.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return false;
    }
    let digits: String = format!("{int_part}{frac_part}");
    let Some(first) = digits.find(|c| c != '0') else {
        return true; // zero
    };
    let last = digits.rfind(|c| c != '0').expect("a non-zero digit exists");
    if last - first + 1 > MAX_NUMBER_DIGITS {
        return false;
    }
    // Decimal exponent of the leading significant digit.
    let leading = int_part.len() as i64 - 1 - first as i64 + exponent;
    (MIN_NUMBER_EXPONENT..=MAX_NUMBER_EXPONENT).contains(&leading)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: Value) -> Result<usize, LimitError> {
        check_document("body", v.as_object().unwrap())
    }

    #[test]
    fn numbers_inside_dynamodb_range_pass() {
        for ok in [
            "0",
            "-0",
            "1",
            "-1",
            "0.5",
            "1e125",
            "9.9e125",
            "1e-130",
            "-1e-130",
            "0.000",
            "12345678901234567890123456789012345678",
            "1.5e-7",
            "18446744073709551615",
        ] {
            assert!(number_fits(ok), "{ok}");
        }
    }

    #[test]
    fn numbers_outside_dynamodb_range_fail() {
        for bad in [
            "1e200",
            "1e126",
            "1e-131",
            "-1e200",
            "123456789012345678901234567890123456789",
            "1.7976931348623157e308",
            "5e-324",
        ] {
            assert!(!number_fits(bad), "{bad}");
        }
    }

    #[test]
    fn a_huge_number_in_a_body_names_its_path() {
        let err = doc(json!({"thingName":"t","x": 1e200})).unwrap_err();
        assert_eq!(
            err,
            LimitError::NumberRange {
                path: "body.x".into(),
                shown: "1e+200".into()
            }
        );
        assert!(err.to_string().contains("outside DynamoDB's range"));
    }

    /// A body of `levels` nested maps (the body itself is the first).
    fn maps(levels: usize) -> Value {
        (1..levels).fold(json!({"leaf": 1}), |inner, _| json!({ "a": inner }))
    }

    #[test]
    fn nesting_counts_maps_and_lists() {
        assert!(doc(maps(32)).is_ok());
        assert!(matches!(doc(maps(33)), Err(LimitError::TooDeep { .. })));
        assert!(doc(json!({ "l": [[1]] })).is_ok());
        let mut list = json!(1);
        for _ in 0..40 {
            list = json!([list]);
        }
        assert!(matches!(
            doc(json!({ "l": list })),
            Err(LimitError::TooDeep { .. })
        ));
    }

    #[test]
    fn keys_and_names_and_size() {
        assert!(check_key("uuid", "t", MAX_PARTITION_KEY_BYTES).is_ok());
        assert!(check_key("messageId", &"9".repeat(1025), MAX_SORT_KEY_BYTES).is_err());
        assert!(check_key("uuid", "", MAX_PARTITION_KEY_BYTES).is_err());
        assert!(matches!(
            doc(json!({"": 1})),
            Err(LimitError::EmptyName { .. })
        ));
        let big = doc(json!({"s": "x".repeat(500 * 1024)})).unwrap();
        assert!(check_item_size(big).is_err());
        assert!(check_item_size(doc(json!({"s": "x"})).unwrap()).is_ok());
    }
}
