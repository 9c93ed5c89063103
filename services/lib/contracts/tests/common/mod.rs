//! Strategies and independent spellings of the rules, shared by the property tests.
#![allow(dead_code, unused_imports)]

// Every property states what the code documents, checked against an
// independent spelling of the rule, so each one fails if the code drifts.
// A failure prints the shrunk input and the seed that replays it.

pub use lambdaless_contracts::api::{RequestPayload, MAX_TOKEN_BYTES};
pub use lambdaless_contracts::device::{stored_message_id, DeviceKeys, ExtractedKeys, KeyError};
pub use lambdaless_contracts::topics::{
    self, parse_request, RequestTopic, TopicError, MAX_LEVEL_BYTES,
};
pub use proptest::prelude::*;
pub use proptest::test_runner::TestCaseError;
pub use serde_json::{json, Map, Value};

/// Longest request topic `parse_request` accepts (documented: 4 levels' worth).
const MAX_TOPIC: usize = 4 * MAX_LEVEL_BYTES;
const KNOWN_OPS: [&str; 5] = ["query", "get", "next", "delete", "send"];
/// Separators and wildcards a level must not hold (plus NUL, which MQTT forbids).
const NOT_IN_A_LEVEL: [char; 4] = ['/', '+', '#', '\0'];

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

// ---------------------------------------------------------------- strategies

/// Characters an attacker reaches for in a topic, ordinary ones, multi-byte
/// ones and anything at all.
fn topic_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::sample::select(vec!['a', 'b', 'z', 'Q', '0', '9', '-', '_', '.', ':']),
        3 => prop::sample::select(vec!['/', '+', '#', '$', '\0', ' ', '\n']),
        1 => prop::sample::select(vec!['é', '€', '𝄞', '\u{feff}', '\u{202e}']),
        1 => any::<char>(),
    ]
}

fn chars_to_string(chars: Vec<char>) -> String {
    chars.into_iter().collect()
}

/// A topic level as an attacker would write it: possibly empty, possibly a
/// wildcard, a known op, or just around the length limit.
fn hostile_level() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::collection::vec(topic_char(), 0..8).prop_map(chars_to_string),
        3 => prop::sample::select(vec![
            "query", "get", "next", "delete", "send", "request", "+", "#", "", "$SYS", "..",
        ])
        .prop_map(str::to_owned),
        1 => (MAX_LEVEL_BYTES - 4..MAX_LEVEL_BYTES + 4).prop_map(|n| "x".repeat(n)),
    ]
}

/// Any string at all, and strings shaped like request topics.
fn hostile_topic() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => any::<String>(),
        5 => (prop::collection::vec(hostile_level(), 0..7), any::<bool>()).prop_map(
            |(levels, prefixed)| {
                let tail = levels.join("/");
                if prefixed {
                    format!("request/{tail}")
                } else {
                    tail
                }
            }
        ),
        1 => (MAX_TOPIC - 8..MAX_TOPIC + 8).prop_map(|n| {
            let mut t = "request/get/u/y".to_owned();
            while t.len() < n {
                t.push_str(if t.len().is_multiple_of(7) { "/" } else { "y" });
            }
            t
        }),
    ]
}

/// A character allowed in a single level.
fn level_char() -> impl Strategy<Value = char> {
    topic_char().prop_filter("not a separator, wildcard or NUL", |c| {
        !NOT_IN_A_LEVEL.contains(c)
    })
}

/// A usable single level (non-empty, no separator, wildcard or NUL).
fn good_level() -> impl Strategy<Value = String> {
    prop::collection::vec(level_char(), 1..12).prop_map(chars_to_string)
}

/// A usable message id: non-empty levels joined by `/`.
fn good_message_id() -> impl Strategy<Value = String> {
    prop::collection::vec(good_level(), 1..4).prop_map(|levels| levels.join("/"))
}

// ------------------------------------------------- the rules, spelled anew

/// A level the parser may hand back as uuid, op, recipient (module docs).
fn is_level(s: &str) -> bool {
    !s.is_empty() && !s.contains(NOT_IN_A_LEVEL) && s.len() <= MAX_LEVEL_BYTES
}

/// A message id the parser may hand back: `/` allowed, but no empty level,
/// wildcard or NUL.
fn is_message_id(s: &str) -> bool {
    !s.contains(['+', '#', '\0']) && s.split('/').all(|level| !level.is_empty())
}

/// A device's ordering value whose stored id `{value}-{ts}-{MessageId}`
/// get/next/delete accept: no wildcard or NUL, no empty level before the
/// last (the suffix fills that one), at most a level's worth of bytes.
fn is_id_value(v: &str) -> bool {
    let levels: Vec<&str> = v.split('/').collect();
    v.len() <= MAX_LEVEL_BYTES
        && !v.contains(['+', '#', '\0'])
        && levels[..levels.len() - 1].iter().all(|l| !l.is_empty())
}

/// Whatever `parse_request` accepted is well-formed and rebuilds the topic.
fn check_accepted(topic: &str, parsed: &RequestTopic<'_>) -> Result<(), TestCaseError> {
    prop_assert!(topic.len() <= MAX_TOPIC, "accepted a topic over the limit");
    prop_assert!(topic.starts_with("request/"));
    prop_assert!(is_level(parsed.op()), "bad op level {:?}", parsed.op());
    let rebuilt = match *parsed {
        RequestTopic::Query { uuid } => {
            prop_assert!(is_level(uuid), "bad uuid {uuid:?}");
            topics::request("query", uuid, None)
        }
        RequestTopic::Get { uuid, message_id }
        | RequestTopic::Next { uuid, message_id }
        | RequestTopic::Delete { uuid, message_id } => {
            prop_assert!(is_level(uuid), "bad uuid {uuid:?}");
            prop_assert!(is_message_id(message_id), "bad id {message_id:?}");
            topics::request(parsed.op(), uuid, Some(message_id))
        }
        RequestTopic::Send { uuid, recipient } => {
            prop_assert!(is_level(uuid), "bad uuid {uuid:?}");
            prop_assert!(is_level(recipient), "bad recipient {recipient:?}");
            topics::request("send", uuid, Some(recipient))
        }
        RequestTopic::Unknown { op } => {
            prop_assert!(!KNOWN_OPS.contains(&op), "known op {op} parsed as unknown");
            let head = format!("request/{op}");
            let below = format!("{head}/");
            prop_assert!(topic == head || topic.starts_with(&below), "{:?}", topic);
            return Ok(());
        }
    };
    prop_assert_eq!(rebuilt, topic);
    Ok(())
}

// ------------------------------------------------------------- MQTT filters

/// MQTT 3.1.1 §4.7 topic matching: `+` is one whole level, `#` the rest
/// (including the parent level), and wildcards at the start never match a
/// `$` topic.
fn mqtt_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let (mut f, mut t) = (filter.split('/'), topic.split('/'));
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A filter a broker accepts: wildcards fill whole levels, `#` only last.
fn is_valid_filter(filter: &str) -> bool {
    let levels: Vec<&str> = filter.split('/').collect();
    !filter.is_empty()
        && !filter.contains('\0')
        && levels.iter().enumerate().all(|(i, l)| {
            (!l.contains(['+', '#']) || *l == "+" || *l == "#")
                && (*l != "#" || i == levels.len() - 1)
        })
}

#[test]
fn the_test_matcher_follows_mqtt() {
    assert!(mqtt_matches("response/+/tok", "response/get/tok"));
    assert!(mqtt_matches("a/#", "a"));
    assert!(mqtt_matches("a/#", "a/b/c"));
    assert!(!mqtt_matches("response/+/tok", "response/get/other"));
    assert!(!mqtt_matches("response/+/tok", "response/a/b/tok"));
    assert!(!mqtt_matches("response/+/tok", "response/get/tok/x"));
    assert!(!mqtt_matches("+/x", "$SYS/x"));
    assert!(is_valid_filter("response/+/tok"));
    assert!(!is_valid_filter("response/+/t+k"));
    assert!(!is_valid_filter("response/#/tok"));
}

// ------------------------------------------------------------ JSON helpers

/// Small JSON values of every kind, for siblings and hostile bodies.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // NaN and infinities become null
        "[a-z.é/+#]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z.]{0,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Drops a value without recursion: serde_json's own drop recurses once per
/// level, which a 10 000-level test value would turn into a stack overflow
/// of the test rather than of the code under test.
fn dismantle(value: Value) {
    let mut stack = vec![value];
    while let Some(mut v) = stack.pop() {
        match &mut v {
            Value::Array(items) => stack.append(items),
            Value::Object(map) => stack.extend(std::mem::take(map).into_values()),
            _ => {}
        }
    }
}

/// A key of a path: no dots (they separate the path), possibly empty or odd.
fn path_key() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_ $/+#é-]{0,6}"
}

/// What sits at the end of the path, and what extraction must make of it.
#[derive(Debug, Clone)]
enum Leaf {
    Str(String),
    Int(i64),
    UInt(u64),
    Float(f64),
    EmptyStr,
    Bool(bool),
    Array(Vec<Value>),
    Object(Map<String, Value>),
    Null,
}

fn arb_leaf() -> impl Strategy<Value = Leaf> {
    prop_oneof![
        3 => any::<String>().prop_filter("non-empty", |s| !s.is_empty()).prop_map(Leaf::Str),
        2 => any::<i64>().prop_map(Leaf::Int),
        1 => (u64::MAX / 2..=u64::MAX).prop_map(Leaf::UInt),
        2 => any::<f64>().prop_filter("finite", |x| x.is_finite()).prop_map(Leaf::Float),
        1 => Just(Leaf::EmptyStr),
        1 => any::<bool>().prop_map(Leaf::Bool),
        1 => prop::collection::vec(arb_json(), 0..3).prop_map(Leaf::Array),
        1 => prop::collection::btree_map("[a-z]{1,3}", arb_json(), 0..3)
            .prop_map(|m| Leaf::Object(m.into_iter().collect())),
        1 => Just(Leaf::Null),
    ]
}

impl Leaf {
    fn value(&self) -> Value {
        match self {
            Leaf::Str(s) => json!(s),
            Leaf::Int(n) => json!(n),
            Leaf::UInt(n) => json!(n),
            Leaf::Float(x) => json!(x),
            Leaf::EmptyStr => json!(""),
            Leaf::Bool(b) => json!(b),
            Leaf::Array(a) => Value::Array(a.clone()),
            Leaf::Object(m) => Value::Object(m.clone()),
            Leaf::Null => Value::Null,
        }
    }

    /// Extraction's documented answer: non-empty strings as they are, numbers
    /// as their decimal text, null as missing, anything else the wrong type;
    /// a string or number that would put the stored id out of reach of
    /// get/next/delete is not topic-safe.
    fn check(&self, path: &str, got: Result<String, KeyError>) -> Result<(), TestCaseError> {
        match (self, got) {
            (Leaf::Str(s), Ok(v)) => {
                prop_assert!(is_id_value(s), "{s:?} would be stored out of reach");
                prop_assert_eq!(&v, s);
            }
            (Leaf::Str(s), Err(e)) => {
                prop_assert!(!is_id_value(s), "{s:?} refused: {e}");
                prop_assert_eq!(e, KeyError::NotTopicSafe(path.to_owned()));
            }
            (Leaf::Int(n), Ok(v)) => prop_assert_eq!(v, n.to_string()),
            (Leaf::UInt(n), Ok(v)) => prop_assert_eq!(v, n.to_string()),
            (Leaf::Float(x), Ok(v)) => {
                let back: f64 = v
                    .parse()
                    .map_err(|e| TestCaseError::fail(format!("{v}: {e}")))?;
                prop_assert_eq!(back, *x, "float {} became {}", x, v);
            }
            // serde_json writes large exponents as `e+300`: a wildcard in a topic.
            (Leaf::Float(x), Err(e)) => {
                let text = json!(x).to_string();
                prop_assert!(!is_id_value(&text), "{text} refused: {e}");
                prop_assert_eq!(e, KeyError::NotTopicSafe(path.to_owned()));
            }
            (Leaf::EmptyStr | Leaf::Bool(_) | Leaf::Array(_) | Leaf::Object(_), Err(e)) => {
                prop_assert_eq!(e, KeyError::WrongType(path.to_owned()))
            }
            (Leaf::Null, Err(e)) => prop_assert_eq!(e, KeyError::Missing(path.to_owned())),
            (leaf, got) => prop_assert!(false, "{leaf:?} at {path:?} gave {got:?}"),
        }
        Ok(())
    }
}

/// `leaf` at the end of `path`, every level with its own random siblings.
fn nest(path: &[String], leaf: Value, siblings: &[Map<String, Value>]) -> Value {
    let mut v = leaf;
    for (i, key) in path.iter().enumerate().rev() {
        let mut level = siblings.get(i).cloned().unwrap_or_default();
        level.insert(key.clone(), v); // after the siblings: the path wins a clash
        v = Value::Object(level);
    }
    v
}

/// Where the property tests put the device uuid: a key no path key can be.
const UUID_KEY: &str = "@uuid";

fn keys_for(message_id_key: &str) -> DeviceKeys {
    DeviceKeys {
        uuid_key: UUID_KEY.to_owned(),
        message_id_key: message_id_key.to_owned(),
    }
}

fn with_uuid(mut body: Value, uuid: Value) -> Value {
    body.as_object_mut()
        .expect("an object")
        .insert(UUID_KEY.to_owned(), uuid);
    body
}

fn message_id_of(result: Result<ExtractedKeys, KeyError>) -> Result<String, KeyError> {
    result.map(|k| k.message_id_value)
}

/// A syntactically plausible SQS MessageId (a UUID).
fn sqs_id() -> impl Strategy<Value = String> {
    "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
}
