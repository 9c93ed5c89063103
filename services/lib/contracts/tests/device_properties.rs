//! Property tests of the device key extraction and the stored message id
//! (hostile input: any JSON at all).
//!
//! Each property is checked against an independent spelling of the rule in
//! `common`; a failure prints the shrunk input and the seed that replays it.

mod common;

use common::*;

proptest! {
    #![proptest_config(config())]

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
