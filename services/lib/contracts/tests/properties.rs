//! Property tests of the contracts that read hostile input: the MQTT request
//! topic parser, the response topics built from a client's token, the device
//! key extraction and the stored message id.
//!
//! Every property states what the code documents, checked against an
//! independent spelling of the rule, so each one fails if the code drifts.
//! A failure prints the shrunk input and the seed that replays it.

use lambdaless_contracts::api::{RequestPayload, MAX_TOKEN_BYTES};
use lambdaless_contracts::device::{stored_message_id, DeviceKeys, ExtractedKeys, KeyError};
use lambdaless_contracts::topics::{
    self, parse_request, RequestTopic, TopicError, MAX_LEVEL_BYTES,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Map, Value};

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

// --------------------------------------------------------------- properties

proptest! {
    #![proptest_config(config())]

    /// Any string at all: no panic, and whatever is accepted is a well-formed
    /// request that rebuilds to the very same topic with `topics::request`.
    #[test]
    fn parse_request_accepts_only_what_it_can_rebuild(topic in hostile_topic()) {
        if let Ok(parsed) = parse_request(&topic) {
            check_accepted(&topic, &parsed)?;
        }
    }

    /// The other direction: every topic built from usable parts parses back
    /// to exactly those parts (ids keep their slashes; `$`, dots and
    /// multi-byte characters are ordinary).
    #[test]
    fn well_formed_requests_parse_to_their_parts(
        op in prop::sample::select(KNOWN_OPS.to_vec()),
        uuid in good_level(),
        id in good_message_id(),
        recipient in good_level(),
    ) {
        let (topic, expected) = match op {
            "query" => (topics::request(op, &uuid, None), RequestTopic::Query { uuid: &uuid }),
            "get" => (
                topics::request(op, &uuid, Some(&id)),
                RequestTopic::Get { uuid: &uuid, message_id: &id },
            ),
            "next" => (
                topics::request(op, &uuid, Some(&id)),
                RequestTopic::Next { uuid: &uuid, message_id: &id },
            ),
            "delete" => (
                topics::request(op, &uuid, Some(&id)),
                RequestTopic::Delete { uuid: &uuid, message_id: &id },
            ),
            _ => (
                topics::request(op, &uuid, Some(&recipient)),
                RequestTopic::Send { uuid: &uuid, recipient: &recipient },
            ),
        };
        prop_assert_eq!(parse_request(&topic), Ok(expected));
    }

    /// An op we do not serve is still understood, whatever follows it, so the
    /// client gets "unknown operation" on its own response topic.
    #[test]
    fn unknown_ops_are_answered_by_name(
        op in good_level().prop_filter("not served", |op| !KNOWN_OPS.contains(&op.as_str())),
        rest in prop::option::of(any::<String>()),
    ) {
        let topic = match &rest {
            Some(rest) => format!("request/{op}/{rest}"),
            None => format!("request/{op}"),
        };
        prop_assert_eq!(parse_request(&topic), Ok(RequestTopic::Unknown { op: &op }));
    }

    /// One poisoned part (empty, a wildcard, NUL, or a separator where the
    /// shape has no room for one) makes the whole request unusable.
    #[test]
    fn a_poisoned_level_is_refused(
        op in prop::sample::select(KNOWN_OPS.to_vec()),
        uuid in good_level(),
        id in good_message_id(),
        recipient in good_level(),
        poison in prop::sample::select(vec!["", "+", "#", "\0", "/", "//"]),
        part in 0usize..3,
        at in any::<prop::sample::Index>(),
    ) {
        let spoil = |s: &str| -> String {
            if poison.is_empty() {
                return String::new();
            }
            let cut = s.char_indices().map(|(i, _)| i).chain([s.len()]).collect::<Vec<_>>();
            let i = cut[at.index(cut.len())];
            format!("{}{poison}{}", &s[..i], &s[i..])
        };
        let (uuid, id, recipient) = match part {
            // A '/' in the uuid of get/next/delete only moves it into the id.
            0 if poison.starts_with('/') && matches!(op, "get" | "next" | "delete") => {
                return Ok(())
            }
            0 => (spoil(&uuid), id, recipient),
            1 if poison == "/" => {
                // A single '/' is legal inside an id; only an empty level is not.
                (uuid, format!("{id}/"), recipient)
            }
            1 => (uuid, spoil(&id), recipient),
            _ => (uuid, id, spoil(&recipient)),
        };
        let topic = match op {
            "query" => topics::request(op, &uuid, None),
            "send" => topics::request(op, &uuid, Some(&recipient)),
            _ => topics::request(op, &uuid, Some(&id)),
        };
        // Parts that the op does not use were not poisoned at all.
        let used = match op {
            "query" => part == 0,
            "send" => part != 1,
            _ => part != 2,
        };
        prop_assert_eq!(parse_request(&topic).is_err(), used, "{:?}", topic);
    }

    /// Levels are limited in bytes (not characters), the topic as a whole too.
    #[test]
    fn length_limits_are_in_bytes(
        n in MAX_LEVEL_BYTES - 8..MAX_LEVEL_BYTES + 8,
        wide in prop::sample::select(vec!['x', 'é', '€', '𝄞']),
        extra in 0usize..16,
    ) {
        let mut uuid = wide.to_string().repeat(n / wide.len_utf8());
        while uuid.len() < n {
            uuid.push('x');
        }
        prop_assert_eq!(parse_request(&topics::request("query", &uuid, None)).is_ok(), n <= MAX_LEVEL_BYTES);
        prop_assert_eq!(parse_request(&topics::request("send", "u", Some(&uuid))).is_ok(), n <= MAX_LEVEL_BYTES);
        let head = topics::request("get", "u", Some(""));
        let id = "z".repeat(MAX_TOPIC - head.len() - 8 + extra);
        let topic = format!("{head}{id}");
        let expected = if topic.len() <= MAX_TOPIC {
            Ok(RequestTopic::Get { uuid: "u", message_id: &id })
        } else {
            Err(TopicError::TooLong(MAX_TOPIC))
        };
        prop_assert_eq!(parse_request(&topic), expected);
    }

    /// `is_single_level` is exactly its documented rule.
    #[test]
    fn single_level_is_non_empty_without_separators(s in hostile_level()) {
        prop_assert_eq!(topics::is_single_level(&s), !s.is_empty() && !s.contains(NOT_IN_A_LEVEL));
    }

    /// A token the validator accepts yields a response topic without
    /// wildcards, of exactly three levels, that the client's own filter
    /// receives and another client's filter does not.
    #[test]
    fn responses_reach_their_client_only(
        token in hostile_level(),
        other in hostile_level(),
        op_level in hostile_level(),
    ) {
        let usable = |t: &str| {
            RequestPayload { token: Some(json!(t)), ..Default::default() }
                .usable_token()
                .map(str::to_owned)
        };
        let expected = !token.is_empty() && !token.contains(NOT_IN_A_LEVEL) && token.len() <= MAX_TOKEN_BYTES;
        prop_assert_eq!(usable(&token).is_some(), expected, "token {:?}", token);
        let Some(token) = usable(&token) else { return Ok(()) };
        let filter = topics::response_filter(&token);
        prop_assert!(is_valid_filter(&filter), "{:?}", filter);
        // Ops as the parser hands them to the handler, known or not.
        for topic in [format!("request/{op_level}/u/m"), "request/get/u/m".to_owned()] {
            let Ok(parsed) = parse_request(&topic) else { continue };
            let response = topics::response(parsed.op(), &token);
            prop_assert!(!response.contains(['+', '#', '\0']), "{:?}", response);
            prop_assert_eq!(response.split('/').count(), 3);
            prop_assert!(mqtt_matches(&filter, &response), "{} misses {}", filter, response);
            if let Some(other) = usable(&other).filter(|o| *o != token) {
                let theirs = topics::response_filter(&other);
                prop_assert!(!mqtt_matches(&theirs, &response), "{} sees {}", theirs, response);
            }
        }
    }

    /// A token that is not a JSON string is never usable.
    #[test]
    fn only_string_tokens_are_usable(token in arb_json()) {
        let payload = RequestPayload { token: Some(token.clone()), ..Default::default() };
        if payload.usable_token().is_some() {
            prop_assert!(token.is_string());
        }
    }

    /// The value at a random dotted path, among random siblings, is found:
    /// strings as they are, numbers as decimal text that reads back to the
    /// same number, null as missing, anything else as the wrong type (see
    /// `Leaf::check` for the values refused as out of reach).
    #[test]
    fn extraction_finds_the_value_at_its_path(
        path in prop::collection::vec(path_key(), 1..6),
        leaf in arb_leaf(),
        siblings in prop::collection::vec(
            prop::collection::btree_map(path_key(), arb_json(), 0..3)
                .prop_map(|m| m.into_iter().collect::<Map<String, Value>>()),
            6,
        ),
    ) {
        let body = with_uuid(nest(&path, leaf.value(), &siblings), json!("dev"));
        let dotted = path.join(".");
        leaf.check(&dotted, message_id_of(keys_for(&dotted).extract(&body)))?;
    }

    /// A path that leads nowhere (one level too deep, through a scalar, or
    /// beside the data) is missing, never a panic or another field.
    #[test]
    fn paths_that_lead_nowhere_are_missing(
        path in prop::collection::vec(path_key(), 1..5),
        leaf in arb_leaf(),
        beyond in path_key(),
    ) {
        let body = with_uuid(nest(&path, leaf.value(), &[]), json!("dev"));
        let too_deep = format!("{}.{beyond}", path.join("."));
        let got = message_id_of(keys_for(&too_deep).extract(&body));
        match leaf {
            // Inside an object one level more may exist; otherwise nothing does.
            Leaf::Object(m) if m.contains_key(&beyond) => {}
            _ => prop_assert_eq!(got, Err(KeyError::Missing(too_deep))),
        }
        let beside = format!("{}\u{1}", path[0]);
        let got = message_id_of(keys_for(&beside).extract(&body));
        prop_assert_eq!(got, Err(KeyError::Missing(beside)));
    }

    /// A top-level key spelled with dots wins over the nested path it
    /// resembles (documented on the lookup).
    #[test]
    fn a_literal_dotted_key_wins(
        path in prop::collection::vec("[a-z]{1,4}", 2..5),
        literal in "[a-z]{1,8}",
        nested in "[A-Z]{1,8}",
    ) {
        let dotted = path.join(".");
        let mut body = with_uuid(nest(&path, json!(nested), &[]), json!("dev"));
        body.as_object_mut().expect("object").insert(dotted.clone(), json!(literal));
        prop_assert_eq!(message_id_of(keys_for(&dotted).extract(&body)), Ok(literal));
    }

    /// The device uuid becomes a topic level: it is accepted exactly when it
    /// is a single level of at most 1024 bytes, refused as not topic-safe
    /// otherwise.
    #[test]
    fn device_uuids_must_be_single_levels(uuid in hostile_level(), number in any::<i64>()) {
        let keys = keys_for("ts");
        let got = keys.extract(&json!({UUID_KEY: uuid, "ts": 1}));
        let expected = if uuid.is_empty() {
            Err(KeyError::WrongType(UUID_KEY.to_owned()))
        } else if uuid.contains(NOT_IN_A_LEVEL) || uuid.len() > MAX_LEVEL_BYTES {
            Err(KeyError::NotTopicSafe(UUID_KEY.to_owned()))
        } else {
            Ok(ExtractedKeys { uuid: uuid.clone(), message_id_value: "1".to_owned() })
        };
        prop_assert_eq!(got, expected);
        let numeric = keys.extract(&json!({UUID_KEY: number, "ts": 1})).map(|k| k.uuid);
        prop_assert_eq!(numeric, Ok(number.to_string()));
    }

    /// Any JSON with any key paths (dots, empty parts, odd characters):
    /// extraction answers without panicking, and what it returns is usable.
    #[test]
    fn extraction_never_panics(
        body in arb_json(),
        uuid_key in "[a-z.]{0,6}",
        message_id_key in "[a-z.]{0,6}",
    ) {
        let keys = DeviceKeys { uuid_key, message_id_key };
        match keys.extract(&body) {
            Ok(k) => {
                prop_assert!(body.is_object());
                prop_assert!(topics::is_single_level(&k.uuid));
                prop_assert!(!k.message_id_value.is_empty());
            }
            Err(KeyError::NotAnObject) => prop_assert!(!body.is_object()),
            Err(_) => {}
        }
    }

    /// Stored ids sort like (value, SentTimestamp, MessageId) whenever the
    /// values have the same length and the timestamps the same number of
    /// digits, as the seed's fixed-width `epochTime` and millisecond
    /// timestamps do; `-` inside the values does not disturb the order.
    #[test]
    fn stored_ids_sort_by_value_then_timestamp(
        (v1, v2) in (1usize..12).prop_flat_map(|n| {
            let value = prop::collection::vec(prop::sample::select(b" -/09AZaz~".to_vec()), n)
                .prop_map(|b| String::from_utf8(b).expect("ascii"));
            (value.clone(), value)
        }),
        ts1 in 1_000_000_000_000u64..10_000_000_000_000,
        ts2 in prop_oneof![Just(None), (1_000_000_000_000u64..10_000_000_000_000).prop_map(Some)],
        s1 in sqs_id(),
        s2 in sqs_id(),
    ) {
        // Often the same timestamp, so the MessageId has to break the tie.
        let ts2 = ts2.unwrap_or(ts1);
        let (a, b) = (stored_message_id(&v1, ts1, &s1), stored_message_id(&v2, ts2, &s2));
        prop_assert_eq!(a.cmp(&b), (v1.as_bytes(), ts1, &s1).cmp(&(v2.as_bytes(), ts2, &s2)));
    }

    /// The same message always gets the same id (a redelivery overwrites
    /// itself), and the id tells its three parts apart again, so two
    /// different messages never share one.
    #[test]
    fn stored_ids_are_deterministic_and_unique(
        value in any::<String>(),
        ts in any::<u64>(),
        sqs in sqs_id(),
    ) {
        let id = stored_message_id(&value, ts, &sqs);
        prop_assert_eq!(&id, &stored_message_id(&value, ts, &sqs));
        let head = id.strip_suffix(&format!("-{sqs}")).expect("ends with the MessageId");
        let (v, t) = head.rsplit_once('-').expect("value and timestamp");
        let ts = ts.to_string();
        prop_assert_eq!((v, t), (value.as_str(), ts.as_str()));
    }

    /// A message that is stored can be fetched: extraction accepts exactly
    /// the uuids and values whose device and stored id the topic parser
    /// accepts in query, get, next and delete requests.
    #[test]
    fn stored_messages_are_reachable_over_mqtt(
        uuid in hostile_level(),
        value in prop_oneof![
            4 => prop::collection::vec(topic_char(), 1..10).prop_map(chars_to_string),
            1 => (MAX_LEVEL_BYTES - 2..MAX_LEVEL_BYTES + 3).prop_map(|n| "9".repeat(n)),
        ],
        ts in any::<u64>(),
        sqs in sqs_id(),
    ) {
        let extracted = keys_for("v").extract(&json!({UUID_KEY: uuid, "v": value}));
        let Ok(keys) = extracted else {
            prop_assert!(
                !is_level(&uuid) || !is_id_value(&value),
                "uuid {:?} with value {:?} refused: {:?}", uuid, value, extracted
            );
            return Ok(());
        };
        let query = topics::request("query", &keys.uuid, None);
        prop_assert_eq!(parse_request(&query), Ok(RequestTopic::Query { uuid: &keys.uuid }));
        let id = stored_message_id(&keys.message_id_value, ts, &sqs);
        for op in ["get", "next", "delete"] {
            let topic = topics::request(op, &keys.uuid, Some(&id));
            let parsed = parse_request(&topic);
            let parts = match parsed {
                Ok(RequestTopic::Get { uuid, message_id })
                | Ok(RequestTopic::Next { uuid, message_id })
                | Ok(RequestTopic::Delete { uuid, message_id }) => Some((uuid, message_id)),
                _ => None,
            };
            prop_assert_eq!(parsed.as_ref().map(RequestTopic::op), Ok(op));
            prop_assert_eq!(
                parts,
                Some((keys.uuid.as_str(), id.as_str())),
                "value {:?} stored as {:?} but {} is refused", value, id, topic
            );
        }
    }
}

/// Ten thousand levels of objects or arrays, built without recursion (serde_json's
/// parser would stop at 128): extraction walks the dotted path iteratively.
#[test]
fn deep_nesting_does_not_overflow_the_stack() {
    const DEPTH: usize = 10_000;
    let mut objects = json!("dev");
    for _ in 0..DEPTH {
        let mut level = Map::new();
        level.insert("k".to_owned(), objects);
        objects = Value::Object(level);
    }
    let mut arrays = json!(1);
    for _ in 0..DEPTH {
        arrays = Value::Array(vec![arrays]);
    }
    let mut body = Map::new();
    body.insert("k".to_owned(), objects);
    body.insert("arrays".to_owned(), arrays);
    body.insert("ts".to_owned(), json!(7));
    let body = Value::Object(body);
    let deep_path = vec!["k"; DEPTH + 1].join(".");

    let keys = DeviceKeys {
        uuid_key: deep_path.clone(),
        message_id_key: "ts".to_owned(),
    };
    assert_eq!(
        keys.extract(&body),
        Ok(ExtractedKeys {
            uuid: "dev".to_owned(),
            message_id_value: "7".to_owned()
        })
    );
    let through_arrays = DeviceKeys {
        uuid_key: deep_path.clone(),
        message_id_key: "arrays".to_owned(),
    };
    assert_eq!(
        through_arrays.extract(&body),
        Err(KeyError::WrongType("arrays".to_owned()))
    );
    let too_deep = DeviceKeys {
        uuid_key: format!("{deep_path}.k"),
        message_id_key: "ts".to_owned(),
    };
    assert_eq!(
        too_deep.extract(&body),
        Err(KeyError::Missing(format!("{deep_path}.k")))
    );
    dismantle(body);
}
