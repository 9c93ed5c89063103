//! Seed 1's fetch request and reply on the wire: what a client sends to `fetch-requests`
//! ([`request_body`]), the checks that decide whether `fetch-responder` may answer it at all
//! ([`parse`]; everything refused is dead-lettered, never answered), and the reply
//! ([`FetchRequest::reply`]). Pure logic, no I/O.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The body of a fetch request: `{"fetch_id", "sqs_queue_url", "nonce"}`. The nonce is
/// echoed back exactly as sent, so the client matches the reply to its request.
pub fn request_body(fetch_id: &str, sqs_queue_url: &str, nonce: &str) -> String {
    #[derive(Serialize)]
    struct Request<'r> {
        fetch_id: &'r str,
        sqs_queue_url: &'r str,
        nonce: &'r str,
    }
    serde_json::to_string(&Request {
        fetch_id,
        sqs_queue_url,
        nonce,
    })
    .expect("a request of strings serializes")
}

/// The reply's error text when the document does not exist.
pub const NOT_FOUND: &str = "not found";

/// A request that passed every check.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub fetch_id: String,
    /// Name (last URL path segment) of the reply queue; it is resolved by
    /// name because the host in the URL depends on who built it.
    pub reply_queue: String,
    /// Echoed back exactly: a JSON string or number, kept as the very text
    /// the requester sent. A `Value` would turn integers beyond 64 bits and
    /// long decimals into the nearest f64 (`18446744073709551617` came back
    /// as `1.8446744073709552e19`), and the client would not know its reply.
    pub nonce: Box<RawValue>,
}

impl PartialEq for FetchRequest {
    fn eq(&self, other: &Self) -> bool {
        self.fetch_id == other.fetch_id
            && self.reply_queue == other.reply_queue
            && self.nonce.get() == other.nonce.get()
    }
}

impl FetchRequest {
    /// The reply body: `{"nonce": <as sent>, "data": {...}}` with the
    /// document, `{"nonce": <as sent>, "error": "not found"}` without one.
    pub fn reply(&self, document: Option<&Map<String, Value>>) -> String {
        #[derive(Serialize)]
        struct Reply<'r> {
            nonce: &'r RawValue,
            #[serde(skip_serializing_if = "Option::is_none")]
            data: Option<&'r Map<String, Value>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            error: Option<&'static str>,
        }
        let reply = Reply {
            nonce: &self.nonce,
            data: document,
            error: document.is_none().then_some(NOT_FOUND),
        };
        serde_json::to_string(&reply).expect("a reply of JSON values serializes")
    }
}

/// Why a request is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("body is not a JSON object")]
    NotAnObject,
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    #[error("field `{0}` must be a non-empty string")]
    NotAString(&'static str),
    #[error("field `nonce` must be a string or a number")]
    BadNonce,
    #[error("reply queue {0:?} is not one of this installation's user queues")]
    ForeignQueue(String),
    #[error("reply queue {0:?} does not exist")]
    NoSuchQueue(String),
}

impl Refusal {
    /// Short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotJson(_) | Self::NotAnObject | Self::Missing(_) | Self::NotAString(_) => {
                "malformed"
            }
            Self::BadNonce => "bad_nonce",
            Self::ForeignQueue(_) | Self::NoSuchQueue(_) => "foreign_queue",
        }
    }
}

fn string_field(map: &Map<String, Value>, field: &'static str) -> Result<String, Refusal> {
    match map.get(field) {
        None | Some(Value::Null) => Err(Refusal::Missing(field)),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(_) => Err(Refusal::NotAString(field)),
    }
}

/// Parses and checks a request body; `user_queue_prefix` is
/// `{prefix}user-queue-` of this installation.
pub fn parse(body: &str, user_queue_prefix: &str) -> Result<FetchRequest, Refusal> {
    let value: Value = serde_json::from_str(body).map_err(|e| Refusal::NotJson(e.to_string()))?;
    let Value::Object(map) = value else {
        return Err(Refusal::NotAnObject);
    };
    let fetch_id = string_field(&map, "fetch_id")?;
    let url = string_field(&map, "sqs_queue_url")?;
    let nonce = match map.get("nonce") {
        None | Some(Value::Null) => return Err(Refusal::Missing("nonce")),
        Some(Value::String(_) | Value::Number(_)) => raw_nonce(body)?,
        Some(_) => return Err(Refusal::BadNonce),
    };
    let reply_queue = queue_name(&url)
        .filter(|name| is_user_queue(name, user_queue_prefix))
        .ok_or(Refusal::ForeignQueue(url))?;
    Ok(FetchRequest {
        fetch_id,
        reply_queue,
        nonce,
    })
}

/// The nonce's own JSON text, read from the body a second time because the
/// `Value` above has already rounded numbers. A body naming `nonce` twice is
/// refused: which of the two to echo would be a guess.
fn raw_nonce(body: &str) -> Result<Box<RawValue>, Refusal> {
    #[derive(Deserialize)]
    struct Nonce<'b> {
        #[serde(borrow)]
        nonce: &'b RawValue,
    }
    serde_json::from_str::<Nonce<'_>>(body)
        .map(|n| n.nonce.to_owned())
        .map_err(|_| Refusal::BadNonce)
}

/// The queue name of a queue URL: its last path segment.
pub fn queue_name(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next()?;
    let name = path.trim_end_matches('/').rsplit('/').next()?;
    (!name.is_empty()).then(|| name.to_owned())
}

/// `{prefix}user-queue-<id>` with a non-empty id of valid queue-name characters.
fn is_user_queue(name: &str, user_queue_prefix: &str) -> bool {
    name.strip_prefix(user_queue_prefix).is_some_and(|id| {
        !id.is_empty()
            && name.len() <= 80
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const P: &str = "p1-user-queue-";

    fn body(v: Value) -> String {
        v.to_string()
    }

    #[test]
    fn what_a_client_sends_is_what_the_responder_accepts() {
        let body = request_body(
            "doc-1",
            "http://h:4566/000000000000/p1-user-queue-u1",
            "n-7",
        );
        let req = parse(&body, P).unwrap();
        assert_eq!(req.fetch_id, "doc-1");
        assert_eq!(req.reply_queue, "p1-user-queue-u1");
        assert_eq!(req.nonce.get(), "\"n-7\"");
    }

    #[test]
    fn accepts_string_and_number_nonces_and_any_host() {
        let r = parse(
            &body(json!({"fetch_id": "a", "sqs_queue_url": "http://localhost:4566/000000000000/p1-user-queue-u1", "nonce": 42})),
            P,
        )
        .unwrap();
        assert_eq!(r.reply_queue, "p1-user-queue-u1");
        assert_eq!(r.nonce.get(), "42");
        let r = parse(
            &body(json!({"fetch_id": "a", "sqs_queue_url": "https://sqs.eu-west-1.amazonaws.com/1/p1-user-queue-u1/", "nonce": "x"})),
            P,
        )
        .unwrap();
        assert_eq!(r.nonce.get(), r#""x""#);
        assert_eq!(r.reply_queue, "p1-user-queue-u1");
    }

    #[test]
    fn nonces_beyond_f64_are_echoed_verbatim() {
        let url = "http://h/0/p1-user-queue-u1";
        for nonce in [
            "18446744073709551617",
            "0.1000000000000000000001",
            "1.50",
            "-0",
        ] {
            let body = format!(r#"{{"fetch_id":"a","sqs_queue_url":"{url}","nonce":{nonce}}}"#);
            let r = parse(&body, P).unwrap();
            assert_eq!(r.nonce.get(), nonce);
            assert_eq!(
                r.reply(None),
                format!(r#"{{"nonce":{nonce},"error":"not found"}}"#)
            );
        }
    }

    #[test]
    fn refuses_garbage_and_foreign_queues() {
        let url = "http://h/0/p1-user-queue-u1";
        assert!(matches!(parse("nope", P), Err(Refusal::NotJson(_))));
        assert_eq!(parse("[1]", P), Err(Refusal::NotAnObject));
        assert_eq!(
            parse(&body(json!({"sqs_queue_url": url, "nonce": 1})), P),
            Err(Refusal::Missing("fetch_id"))
        );
        assert_eq!(
            parse(
                &body(json!({"fetch_id": 5, "sqs_queue_url": url, "nonce": 1})),
                P
            ),
            Err(Refusal::NotAString("fetch_id"))
        );
        for nonce in [json!(true), json!({"a": 1}), json!([1])] {
            assert_eq!(
                parse(
                    &body(json!({"fetch_id": "a", "sqs_queue_url": url, "nonce": nonce})),
                    P
                ),
                Err(Refusal::BadNonce)
            );
        }
        for foreign in [
            "http://h/0/fetch-requests",
            "http://h/0/user-queue-u1",
            "http://h/0/p2-user-queue-u1",
            "http://h/0/p1-user-queue-",
            "",
        ] {
            let r = parse(
                &body(json!({"fetch_id": "a", "sqs_queue_url": foreign, "nonce": 1})),
                P,
            );
            assert!(r.is_err(), "{foreign} accepted");
        }
    }
}
