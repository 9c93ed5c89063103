//! Property tests of the fetch request checks, which read whatever anyone
//! puts on `fetch-requests`: the body parser, the nonce echo and the reply
//! queue classification.
//!
//! Each property is checked against an independent spelling of the rule in
//! `request.rs`'s docs, so it fails if the code drifts from them.

use fetch_responder::request::{parse, queue_name, Refusal};
use lambdaless_contracts::Names;
use proptest::prelude::*;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

/// SQS refuses queue names longer than this.
const MAX_QUEUE_NAME: usize = 80;

/// `{prefix}user-queue-<id>` of this installation, `<id>` made of ASCII
/// letters, digits, `-` and `_`, the whole at most 80 bytes.
fn is_our_user_queue(name: &str, user_queue_prefix: &str) -> bool {
    name.len() <= MAX_QUEUE_NAME
        && name.starts_with(user_queue_prefix)
        && name.len() > user_queue_prefix.len()
        && name[user_queue_prefix.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An installation prefix `Names` accepts, turned into its user-queue prefix.
fn user_queue_prefix() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{0,12}".prop_map(|p| Names::new(p).expect("a valid prefix").user_queue(""))
}

/// Strings that look like, or almost like, queue names and URLs.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9:/?#%.\\\\ -]{0,24}",
        "(https?://[a-z.]{1,10}(:[0-9]{1,5})?/[0-9]{1,12}/)?(p1-)?user-queue-[A-Za-z0-9_%./-]{0,12}[/?#]{0,2}",
        Just("  ".to_owned()),
        Just("\u{3000}\t".to_owned()),
    ]
}

/// A JSON value of any kind, mostly strings and numbers.
fn field_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => hostile_text().prop_map(Value::String),
        2 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(Value::from),
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => prop::collection::vec(any::<u8>().prop_map(Value::from), 0..3).prop_map(Value::Array),
        1 => Just(json!({"a": 1})),
    ]
}

/// What `parse` must answer for a body whose fields are `map`, in the
/// documented order of checks.
fn oracle(map: &Map<String, Value>, prefix: &str) -> Result<(String, String, Value), Refusal> {
    fn string(map: &Map<String, Value>, field: &'static str) -> Result<String, Refusal> {
        match map.get(field) {
            None | Some(Value::Null) => Err(Refusal::Missing(field)),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
            Some(_) => Err(Refusal::NotAString(field)),
        }
    }
    let fetch_id = string(map, "fetch_id")?;
    let url = string(map, "sqs_queue_url")?;
    let nonce = match map.get("nonce") {
        None | Some(Value::Null) => return Err(Refusal::Missing("nonce")),
        Some(n @ (Value::String(_) | Value::Number(_))) => n.clone(),
        Some(_) => return Err(Refusal::BadNonce),
    };
    // The last path segment, query and fragment cut off, trailing '/' ignored.
    let end = url.find(['?', '#']).unwrap_or(url.len());
    let path = url[..end].trim_end_matches('/');
    let name = &path[path.rfind('/').map_or(0, |i| i + 1)..];
    if name.is_empty() || !is_our_user_queue(name, prefix) {
        return Err(Refusal::ForeignQueue(url));
    }
    Ok((fetch_id, name.to_owned(), nonce))
}

/// JSON number spellings, including ones beyond 64 bits and f64 precision.
fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(|x| json!(x).to_string()),
        "-?[1-9][0-9]{19,40}",
        "-?(0|[1-9][0-9]{0,5})\\.[0-9]{1,25}",
        "-?[1-9](\\.[0-9]{1,20})?[eE][+-]?[0-9]{1,2}",
        "-?[1-9]e-[4-9][0-9]{2}",
        prop::sample::select(vec![
            "0",
            "-0",
            "0.0",
            "1.50",
            "1e2",
            "1E+2",
            "9007199254740993"
        ])
        .prop_map(str::to_owned),
    ]
}

/// JSON string spellings: the usual escapes, every character escaped as
/// `\uXXXX` (surrogate pairs beyond the BMP), and escaped solidus.
fn string_text() -> impl Strategy<Value = String> {
    (any::<String>(), 0..3u8).prop_map(|(s, style)| match style {
        0 => serde_json::to_string(&s).expect("a string serializes"),
        1 => {
            let mut out = String::from("\"");
            for unit in s.encode_utf16() {
                out.push_str(&format!("\\u{unit:04x}"));
            }
            out.push('"');
            out
        }
        _ => serde_json::to_string(&format!("{s}/x/"))
            .expect("a string serializes")
            .replace('/', "\\/"),
    })
}

fn body_with_nonce(nonce_text: &str) -> String {
    format!(
        r#"{{"fetch_id":"doc-1","sqs_queue_url":"http://localhost:4566/000000000000/user-queue-u1","nonce":{nonce_text}}}"#
    )
}

proptest! {
    #![proptest_config(config())]

    /// Any bytes at all: an answer, never a panic.
    #[test]
    fn parse_never_panics(body in any::<String>(), prefix in user_queue_prefix()) {
        let _ = parse(&body, &prefix);
    }

    /// Bodies with any mix of the three fields (and others) of any types get
    /// exactly the documented answer: the first failing check, or the
    /// request with its queue name.
    #[test]
    fn parse_follows_the_documented_checks(
        fields in prop::collection::btree_map(
            prop::sample::select(vec!["fetch_id", "sqs_queue_url", "nonce", "other", "Nonce"]),
            field_value(),
            0..5,
        ),
        prefix in user_queue_prefix(),
        our_name in "[A-Za-z0-9_-]{1,8}",
        make_ours in any::<bool>(),
    ) {
        let mut map: Map<String, Value> =
            fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        if make_ours {
            // Else a valid reply queue would hardly ever come up.
            map.insert(
                "sqs_queue_url".to_owned(),
                json!(format!("https://sqs.example/1/{prefix}{our_name}")),
            );
        }
        let body = Value::Object(map).to_string();
        // The oracle reads the body as sent (a float may not survive the
        // round trip through text bit for bit).
        let sent: Map<String, Value> = serde_json::from_str(&body).expect("an object");
        let got = parse(&body, &prefix).map(|r| {
            let nonce: Value = serde_json::from_str(&serde_json::to_string(&r.nonce).expect("nonce"))
                .expect("the nonce is JSON");
            (r.fetch_id, r.reply_queue, nonce)
        });
        prop_assert_eq!(got, oracle(&sent, &prefix));
    }

    /// A number nonce is echoed as the very text the requester sent: integers
    /// beyond 64 bits, decimals beyond f64 precision, exponents, `-0` and
    /// `1.50` alike, so any client can match it, whatever its number type.
    #[test]
    fn number_nonces_are_kept_exactly(text in number_text()) {
        let r = parse(&body_with_nonce(&text), "user-queue-");
        let r = r.map_err(|e| TestCaseError::fail(format!("{text} refused: {e}")))?;
        prop_assert_eq!(serde_json::to_string(&r.nonce).expect("nonce"), text);
    }

    /// A string nonce is echoed as the very text the requester sent, escapes
    /// and all (quotes, `\uXXXX`, surrogate pairs, `\/`).
    #[test]
    fn string_nonces_are_kept_exactly(text in string_text()) {
        let r = parse(&body_with_nonce(&text), "user-queue-");
        let r = r.map_err(|e| TestCaseError::fail(format!("{text} refused: {e}")))?;
        prop_assert_eq!(serde_json::to_string(&r.nonce).expect("nonce"), text);
    }

    /// The reply carries the nonce's very text, next to the document or to
    /// the not-found error, and nothing else.
    #[test]
    fn replies_echo_the_nonce_verbatim(
        text in prop_oneof![number_text(), string_text()],
        document in prop::option::of(prop::collection::btree_map(
            "[a-z_]{1,6}",
            prop_oneof![any::<i64>().prop_map(Value::from), any::<String>().prop_map(Value::from)],
            0..4,
        )),
    ) {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Reply<'r> {
            #[serde(borrow)]
            nonce: &'r RawValue,
            data: Option<Map<String, Value>>,
            error: Option<String>,
        }
        let request = parse(&body_with_nonce(&text), "user-queue-")
            .map_err(|e| TestCaseError::fail(format!("{text} refused: {e}")))?;
        let document: Option<Map<String, Value>> = document.map(|d| d.into_iter().collect());
        let body = request.reply(document.as_ref());
        let reply: Reply<'_> = serde_json::from_str(&body)
            .map_err(|e| TestCaseError::fail(format!("{body}: {e}")))?;
        prop_assert_eq!(reply.nonce.get(), text.as_str());
        prop_assert_eq!(reply.error.is_some(), document.is_none());
        prop_assert_eq!(reply.error.as_deref().unwrap_or("not found"), "not found");
        prop_assert_eq!(reply.data, document);
    }

    /// A body naming the nonce twice is refused, whichever of the two is
    /// usable: echoing one of them would be a guess.
    #[test]
    fn a_doubled_nonce_is_refused(first in number_text(), second in string_text(), swap in any::<bool>()) {
        let (a, b) = if swap { (&second, &first) } else { (&first, &second) };
        let body = body_with_nonce(&format!("{a},\"nonce\":{b}"));
        prop_assert_eq!(parse(&body, "user-queue-"), Err(Refusal::BadNonce));
    }

    /// Numbers beyond f64 (like 1e400) are not JSON serde_json can read: the
    /// body is refused as such, never answered with a rounded nonce.
    #[test]
    fn out_of_range_numbers_are_refused(text in "-?[1-9](\\.[0-9]{1,5})?e[4-9][0-9]{2}") {
        let refused = parse(&body_with_nonce(&text), "user-queue-");
        prop_assert!(matches!(refused, Err(Refusal::NotJson(_))), "{:?}", refused);
    }

    /// The queue name is the last path segment whatever the scheme, host,
    /// port, account and path before it, and whatever query, fragment or
    /// trailing slashes after it.
    #[test]
    fn queue_name_is_the_last_path_segment(
        scheme in prop::sample::select(vec!["", "http://", "https://", "sqs://", "//"]),
        host in "[a-z0-9.-]{0,12}(:[0-9]{1,5})?",
        middle in prop::collection::vec("[a-zA-Z0-9._%-]{1,12}", 0..4),
        name in "[^/?#]{1,20}",
        trailing in "/{0,3}",
        tail in prop_oneof![Just(String::new()), "[?#][^\n]{0,20}"],
    ) {
        let mut url = format!("{scheme}{host}");
        for segment in &middle {
            url.push('/');
            url.push_str(segment);
        }
        if !url.is_empty() {
            url.push('/');
        }
        url.push_str(&name);
        url.push_str(&trailing);
        url.push_str(&tail);
        prop_assert_eq!(queue_name(&url), Some(name), "{:?}", url);
    }

    /// Hostile spellings of a reply URL: other hosts and accounts are
    /// harmless (the reply goes to the queue of that name in our own
    /// account); traversal, percent-encoding, other prefixes, odd characters
    /// and overlong names are refused with the URL they came with.
    #[test]
    fn hostile_reply_urls_are_classified(
        prefix in user_queue_prefix(),
        id in "[A-Za-z0-9_-]{1,10}",
        host in prop::sample::select(vec![
            "http://localhost:4566/000000000000",
            "https://sqs.eu-west-1.amazonaws.com/123456789012",
            "https://attacker.example/999999999999",
            "http://169.254.169.254/latest",
            "",
        ]),
        trick in 0usize..10,
        junk in "[^A-Za-z0-9_/?#-]",
    ) {
        let ours = format!("{prefix}{id}");
        let base = if host.is_empty() { ours.clone() } else { format!("{host}/{ours}") };
        let (url, expected_name) = match trick {
            0 => (base.clone(), Some(ours.clone())),
            1 => (format!("{base}/"), Some(ours.clone())),
            2 => (format!("{base}?QueueUrl=https://attacker.example/1/x"), Some(ours.clone())),
            3 => (format!("{base}#/../../other"), Some(ours.clone())),
            4 => (format!("{base}/../fetch-requests"), None),
            5 => (format!("{base}/.."), None),
            6 => (format!("{base}/%2e%2e"), None),
            7 => (format!("{host}/{}{junk}{id}", prefix.replace('-', "%2D")), None),
            8 => (format!("{host}/other-{ours}"), None),
            _ => (format!("{base}{junk}"), None),
        };
        let body = json!({"fetch_id": "a", "sqs_queue_url": url, "nonce": 1}).to_string();
        let got = parse(&body, &prefix).map(|r| r.reply_queue);
        match expected_name {
            Some(name) if name.len() <= MAX_QUEUE_NAME => prop_assert_eq!(got, Ok(name)),
            _ => prop_assert_eq!(got, Err(Refusal::ForeignQueue(url))),
        }
    }

    /// Every user queue `provision` can create (`Names::user_queue`, a name
    /// SQS takes) is a reply queue the responder answers, and one that SQS
    /// would not take is refused.
    #[test]
    fn provisioned_user_queues_are_answered(
        prefix in "[A-Za-z0-9_-]{0,40}",
        user in "[A-Za-z0-9_-]{1,60}",
    ) {
        let names = Names::new(prefix).expect("a valid prefix");
        let queue = names.user_queue(&user);
        let url = format!("http://localhost:4566/000000000000/{queue}");
        let body = json!({"fetch_id": "a", "sqs_queue_url": url, "nonce": "n"}).to_string();
        let got = parse(&body, &names.user_queue("")).map(|r| r.reply_queue);
        if queue.len() <= MAX_QUEUE_NAME {
            prop_assert_eq!(got, Ok(queue));
        } else {
            prop_assert_eq!(got, Err(Refusal::ForeignQueue(url)));
        }
    }
}
