//! MQTT topics of SPEC §3, and the pure parser of request topics that
//! `mqtt-api` trusts with hostile input.

/// Where `mover` announces a stored device message: `notification/{uuid}`.
pub fn notification(uuid: &str) -> String {
    format!("notification/{uuid}")
}

/// Shared subscription through which `mqtt-api` replicas split the requests.
pub const REQUEST_SHARED_FILTER: &str = "$share/mqtt-api/request/#";

/// Where answers to unusable requests go.
pub const RESPONSE_INVALID: &str = "response/invalid";

/// Longest topic level (device uuid, token, op) accepted in a request.
pub const MAX_LEVEL_BYTES: usize = 1024;

/// A topic level is usable as a single level when it is non-empty and holds
/// no separator or wildcard (a device name or token must not escape its level).
pub fn is_single_level(s: &str) -> bool {
    !s.is_empty() && !s.contains(['/', '+', '#', '\0'])
}

/// A message id is usable as the tail of `request/{op}/{uuid}/{messageId}`
/// when `/` only separates non-empty levels and it holds no wildcard or NUL.
pub fn is_message_id(s: &str) -> bool {
    !s.contains(['+', '#', '\0']) && s.split('/').all(|level| !level.is_empty())
}

/// The request topic of an operation: `request/{op}/{uuid}[/{rest}]`.
pub fn request(op: &str, uuid: &str, rest: Option<&str>) -> String {
    match rest {
        Some(rest) => format!("request/{op}/{uuid}/{rest}"),
        None => format!("request/{op}/{uuid}"),
    }
}

/// Where the answer to a request carrying `token` goes: `response/{op}/{token}`.
pub fn response(op: &str, token: &str) -> String {
    format!("response/{op}/{token}")
}

/// Every response of one client: `response/+/{token}` (one filter per process).
pub fn response_filter(token: &str) -> String {
    format!("response/+/{token}")
}

/// A request topic, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestTopic<'t> {
    /// `request/query/{uuid}`
    Query { uuid: &'t str },
    /// `request/get/{uuid}/{messageId}`
    Get { uuid: &'t str, message_id: &'t str },
    /// `request/next/{uuid}/{messageId}`
    Next { uuid: &'t str, message_id: &'t str },
    /// `request/delete/{uuid}/{messageId}`
    Delete { uuid: &'t str, message_id: &'t str },
    /// `request/send/{uuid}/{recipientUuid}`
    Send { uuid: &'t str, recipient: &'t str },
    /// `request/{op}/...` with an op we do not serve; answered on its token topic.
    Unknown { op: &'t str },
}

impl RequestTopic<'_> {
    /// The op level, as used in the response topic.
    pub fn op(&self) -> &str {
        match self {
            Self::Query { .. } => "query",
            Self::Get { .. } => "get",
            Self::Next { .. } => "next",
            Self::Delete { .. } => "delete",
            Self::Send { .. } => "send",
            Self::Unknown { op } => op,
        }
    }
}

/// Why a topic is not a usable request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic does not start with request/")]
    NotARequest,
    #[error("topic is longer than {0} bytes")]
    TooLong(usize),
    #[error("topic has an empty, wildcard or oversized level")]
    BadLevel,
    #[error("topic must be request/{0}")]
    Shape(&'static str),
}

/// Parses a request topic. The message id of get/next/delete is everything
/// after the uuid level, so ids containing `/` stay reachable; every other
/// level must be a non-empty single level of at most [`MAX_LEVEL_BYTES`].
pub fn parse_request(topic: &str) -> Result<RequestTopic<'_>, TopicError> {
    const MAX_TOPIC: usize = 4 * MAX_LEVEL_BYTES;
    if topic.len() > MAX_TOPIC {
        return Err(TopicError::TooLong(MAX_TOPIC));
    }
    let rest = topic
        .strip_prefix("request/")
        .ok_or(TopicError::NotARequest)?;
    let (op, rest) = match rest.split_once('/') {
        Some((op, rest)) => (op, Some(rest)),
        None => (rest, None),
    };
    let level_ok = |s: &str| is_single_level(s) && s.len() <= MAX_LEVEL_BYTES;
    if !level_ok(op) {
        return Err(TopicError::BadLevel);
    }
    let (uuid, tail) = match rest {
        Some(r) => match r.split_once('/') {
            Some((u, t)) => (u, Some(t)),
            None => (r, None),
        },
        None => ("", None),
    };
    let with_id = |shape: &'static str| -> Result<(&str, &str), TopicError> {
        let id = tail.ok_or(TopicError::Shape(shape))?;
        if !level_ok(uuid) || !is_message_id(id) {
            return Err(TopicError::BadLevel);
        }
        Ok((uuid, id))
    };
    match op {
        "query" => {
            if tail.is_some() {
                return Err(TopicError::Shape("query/{uuid}"));
            }
            if !level_ok(uuid) {
                return Err(TopicError::BadLevel);
            }
            Ok(RequestTopic::Query { uuid })
        }
        "get" => with_id("get/{uuid}/{messageId}")
            .map(|(uuid, message_id)| RequestTopic::Get { uuid, message_id }),
        "next" => with_id("next/{uuid}/{messageId}")
            .map(|(uuid, message_id)| RequestTopic::Next { uuid, message_id }),
        "delete" => with_id("delete/{uuid}/{messageId}")
            .map(|(uuid, message_id)| RequestTopic::Delete { uuid, message_id }),
        "send" => {
            let shape = "send/{uuid}/{recipientUuid}";
            let recipient = tail.ok_or(TopicError::Shape(shape))?;
            if !level_ok(uuid) {
                return Err(TopicError::BadLevel);
            }
            if recipient.contains('/') {
                return Err(TopicError::Shape(shape));
            }
            if !level_ok(recipient) {
                return Err(TopicError::BadLevel);
            }
            Ok(RequestTopic::Send { uuid, recipient })
        }
        op => Ok(RequestTopic::Unknown { op }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_level_rejects_separators_and_wildcards() {
        assert!(is_single_level("testThing"));
        for bad in ["", "a/b", "+", "x#", "nul\0"] {
            assert!(!is_single_level(bad), "{bad:?}");
        }
        assert_eq!(notification("t"), "notification/t");
    }

    #[test]
    fn parses_every_operation_of_the_seed() {
        let id = "1564669331-1564669332364-7d7efcff-bdcf-4d98-917e-d171d27cc0b4";
        assert_eq!(
            parse_request("request/query/testThing"),
            Ok(RequestTopic::Query { uuid: "testThing" })
        );
        assert_eq!(
            parse_request(&format!("request/get/testThing/{id}")),
            Ok(RequestTopic::Get {
                uuid: "testThing",
                message_id: id
            })
        );
        assert_eq!(
            parse_request(&format!("request/next/t/{id}")).unwrap().op(),
            "next"
        );
        assert_eq!(
            parse_request(&format!("request/delete/t/{id}"))
                .unwrap()
                .op(),
            "delete"
        );
        assert_eq!(
            parse_request("request/send/a/b"),
            Ok(RequestTopic::Send {
                uuid: "a",
                recipient: "b"
            })
        );
        assert_eq!(
            parse_request("request/frobnicate/a"),
            Ok(RequestTopic::Unknown { op: "frobnicate" })
        );
        assert_eq!(
            parse_request("request/frobnicate"),
            Ok(RequestTopic::Unknown { op: "frobnicate" })
        );
    }

    #[test]
    fn message_ids_may_contain_slashes() {
        assert_eq!(
            parse_request("request/get/t/2024/01/01-5-x"),
            Ok(RequestTopic::Get {
                uuid: "t",
                message_id: "2024/01/01-5-x"
            })
        );
    }

    #[test]
    fn hostile_topics_are_refused() {
        let long = "x".repeat(MAX_LEVEL_BYTES + 1);
        let huge = format!("request/query/{}", "y".repeat(70_000));
        let cases = [
            "",
            "request",
            "request/",
            "request//t",
            "request/query/",
            "request/query",
            "request/query/a/b",
            "request/query/+",
            "request/query/#",
            "request/get/t",
            "request/get/t/",
            "request/get//id",
            "request/get/t/a//b",
            "request/get/t/id#",
            "request/get/t/+",
            "request/send/a",
            "request/send/a/b/c",
            "request/send/a/",
            "request/send/+/b",
            "request/+/t",
            "response/query/t",
            "requests/query/t",
            "request/query/nul\0",
            &format!("request/query/{long}"),
            &format!("request/{long}/t"),
            &huge,
        ];
        for topic in cases {
            assert!(parse_request(topic).is_err(), "{topic:.60?} accepted");
        }
    }

    #[test]
    fn response_topics() {
        assert_eq!(response("get", "tok"), "response/get/tok");
        assert_eq!(response_filter("tok"), "response/+/tok");
        assert_eq!(request("get", "t", Some("m")), "request/get/t/m");
        assert_eq!(request("query", "t", None), "request/query/t");
    }
}
