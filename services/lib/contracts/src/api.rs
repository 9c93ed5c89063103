//! The MQTT API of SPEC §3: request payloads, every answer `mqtt-api` publishes (typed, with
//! exactly the seed's field names), the error texts of the seed, and the message `send` puts
//! on `device-outbound`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `query` found nothing for the uuid.
pub const NO_MESSAGES: &str = "No messages available";
/// `get` found no such message.
pub const MESSAGE_NOT_AVAILABLE: &str = "Message not available";
/// `next` found nothing after the specified message.
pub const NO_NEWER_MESSAGES: &str = "No newer messages available";
/// The op level names no operation.
pub const UNKNOWN_OPERATION: &str = "Unknown operation";
/// `send` without a `payload` field.
pub const MISSING_PAYLOAD: &str = "Missing payload";
/// A dependency failed; the detail is in the service's log, not the answer.
pub const TEMPORARILY_UNAVAILABLE: &str = "Temporarily unavailable, try again";

/// The answer would not fit in one MQTT packet (the service's
/// `mqtt.max_packet_bytes`): sent instead of it, with the request's identifiers.
pub const MESSAGE_TOO_LARGE: &str = "Message too large to send";

/// Longest token accepted (it becomes a topic level).
pub const MAX_TOKEN_BYTES: usize = 256;

/// The payload of every request. `payload` only matters to `send`;
/// `clientMessageId` optionally names a `send` for the recipient.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RequestPayload {
    #[serde(default)]
    pub token: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    #[serde(
        default,
        rename = "clientMessageId",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_message_id: Option<String>,
}

impl RequestPayload {
    /// The token when it is usable as a topic level.
    pub fn usable_token(&self) -> Option<&str> {
        match &self.token {
            Some(Value::String(t))
                if t.len() <= MAX_TOKEN_BYTES && crate::topics::is_single_level(t) =>
            {
                Some(t)
            }
            _ => None,
        }
    }
}

/// What `send` puts on `device-outbound`: from device `sender` to device
/// `recipient`, the request's `payload` as `message`, and the id the caller
/// (or, when absent, `mqtt-api`) chose so the recipient can spot duplicates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboundMessage {
    pub sender: String,
    pub recipient: String,
    pub message: Value,
    #[serde(rename = "clientMessageId")]
    pub client_message_id: String,
}

/// An answer on `response/{op}/{token}` (or `response/invalid`), before `mqtt-api` adds
/// the request's `token`. Serialized without a tag: each variant is one shape of SPEC §3.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Answer {
    /// `query`: the device's oldest and newest stored message.
    Query {
        #[serde(rename = "newestMessageId")]
        newest_message_id: String,
        #[serde(rename = "oldestMessageId")]
        oldest_message_id: String,
        uuid: String,
    },
    /// `get`: one stored message's body.
    Get {
        body: Value,
        #[serde(rename = "messageId")]
        message_id: String,
        uuid: String,
    },
    /// `next`: the message after the specified one.
    Next {
        #[serde(rename = "nextMessageId")]
        next_message_id: String,
        #[serde(rename = "specifiedMessageId")]
        specified_message_id: String,
        uuid: String,
    },
    /// `delete`: the message is gone (or was never there).
    Deleted {
        #[serde(rename = "messageId")]
        message_id: String,
        uuid: String,
    },
    /// `send`: queued on `device-outbound`.
    Sent {
        uuid: String,
        #[serde(rename = "sqsMessageId")]
        sqs_message_id: String,
    },
    /// Any refusal or failure; the fields present name what the request was about.
    Error(ErrorAnswer),
}

/// `{"error": ...}` plus whichever of the request's identifiers apply.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ErrorAnswer {
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(rename = "messageId", skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(rename = "specifiedMessageId", skip_serializing_if = "Option::is_none")]
    pub specified_message_id: Option<String>,
    /// For `response/invalid`: the (cut) topic of the refused request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

impl Answer {
    /// An error answer about device `uuid` (or about no device).
    pub fn error(error: impl Into<String>, uuid: Option<&str>) -> Self {
        Self::Error(ErrorAnswer {
            error: error.into(),
            uuid: uuid.map(str::to_owned),
            ..ErrorAnswer::default()
        })
    }

    /// The answer as a JSON object with the request's `token` added.
    pub fn with_token(&self, token: &str) -> Value {
        let mut value = serde_json::to_value(self).expect("an answer serializes");
        if let Value::Object(map) = &mut value {
            map.insert("token".to_owned(), Value::String(token.to_owned()));
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_must_be_single_levels() {
        let p = |v: Value| serde_json::from_value::<RequestPayload>(v).unwrap();
        assert_eq!(p(json!({"token":"abc"})).usable_token(), Some("abc"));
        for bad in [
            json!({}),
            json!({"token": ""}),
            json!({"token": 5}),
            json!({"token": "a/b"}),
            json!({"token": "+"}),
            json!({"token": "#"}),
            json!({"token": "x".repeat(MAX_TOKEN_BYTES + 1)}),
        ] {
            assert_eq!(p(bad.clone()).usable_token(), None, "{bad}");
        }
    }

    #[test]
    fn answers_have_the_seed_field_names() {
        let q = Answer::Query {
            newest_message_id: "n".into(),
            oldest_message_id: "o".into(),
            uuid: "u".into(),
        };
        assert_eq!(
            q.with_token("t"),
            json!({"newestMessageId":"n","oldestMessageId":"o","uuid":"u","token":"t"})
        );
        let e = Answer::Error(ErrorAnswer {
            error: NO_NEWER_MESSAGES.into(),
            uuid: Some("u".into()),
            specified_message_id: Some("m".into()),
            ..ErrorAnswer::default()
        });
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"error":"No newer messages available","uuid":"u","specifiedMessageId":"m"})
        );
        assert_eq!(
            serde_json::to_value(Answer::error(UNKNOWN_OPERATION, None)).unwrap(),
            json!({"error":"Unknown operation"})
        );
    }

    #[test]
    fn outbound_message_uses_the_contract_names() {
        let m = OutboundMessage {
            sender: "a".into(),
            recipient: "b".into(),
            message: json!({"x": 1}),
            client_message_id: "c".into(),
        };
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            json!({"sender":"a","recipient":"b","message":{"x":1},"clientMessageId":"c"})
        );
    }
}
