//! Property tests of the MQTT request topic parser and the response topics
//! built from a client's token (hostile input: any string at all).
//!
//! Each property is checked against an independent spelling of the rule in
//! `common`; a failure prints the shrunk input and the seed that replays it.

mod common;

use common::*;

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
}
