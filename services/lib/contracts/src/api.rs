//! The MQTT API of SPEC §3: request payloads, the error texts of the seed, and
//! the message `send` puts on `device-outbound`. Success answers are built by
//! `mqtt-api` as JSON objects with exactly the seed's field names.

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
