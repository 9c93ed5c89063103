//! Seed 2 device messages: which fields name and order a message, the stored
//! `messageId` format, and the notification published once it is stored.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::topics::{self, MAX_LEVEL_BYTES};

/// Default field naming the device (`uuidKey` in the seed).
pub const DEFAULT_UUID_KEY: &str = "thingName";
/// Default field ordering the device's messages (`messageIdKey` in the seed).
pub const DEFAULT_MESSAGE_ID_KEY: &str = "epochTime";

/// Why an inbound message cannot be stored; sent with it to the DLQ.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("message body is not a JSON object")]
    NotAnObject,
    #[error("field `{0}` is missing")]
    Missing(String),
    #[error("field `{0}` must be a non-empty string or a number")]
    WrongType(String),
    #[error(
        "field `{0}` cannot be used in a request topic (a wildcard, NUL, a stray '/' or over 1024 bytes)"
    )]
    NotTopicSafe(String),
}

/// The two configurable field paths; dots reach nested objects (`meta.device`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceKeys {
    pub uuid_key: String,
    pub message_id_key: String,
}

impl Default for DeviceKeys {
    fn default() -> Self {
        Self {
            uuid_key: DEFAULT_UUID_KEY.to_owned(),
            message_id_key: DEFAULT_MESSAGE_ID_KEY.to_owned(),
        }
    }
}

/// The keys read out of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractedKeys {
    pub uuid: String,
    pub message_id_value: String,
}

impl DeviceKeys {
    /// Reads the device uuid and ordering value from a parsed message.
    pub fn extract(&self, body: &Value) -> Result<ExtractedKeys, KeyError> {
        if !body.is_object() {
            return Err(KeyError::NotAnObject);
        }
        let uuid = scalar_at(body, &self.uuid_key)?;
        // A level of `request/{op}/{uuid}`: parse_request refuses anything else.
        if !topics::is_single_level(&uuid) || uuid.len() > MAX_LEVEL_BYTES {
            return Err(KeyError::NotTopicSafe(self.uuid_key.clone()));
        }
        let message_id_value = scalar_at(body, &self.message_id_key)?;
        if !starts_a_message_id(&message_id_value) {
            return Err(KeyError::NotTopicSafe(self.message_id_key.clone()));
        }
        Ok(ExtractedKeys {
            uuid,
            message_id_value,
        })
    }
}

/// Whether the stored id `{value}-{ts}-{MessageId}` will be a messageId that
/// get/next/delete accept. Without this check a value such as `/x`, `a//b`,
/// `a#b`, 1e300 (which serde_json writes `1e+300`) or 5000 bytes was stored
/// and announced, but every request naming it was refused, so the message
/// could never be fetched or deleted over MQTT.
/// The suffix fills the value's last level, so only that one may end empty.
fn starts_a_message_id(value: &str) -> bool {
    value.len() <= MAX_LEVEL_BYTES && topics::is_message_id(&format!("{value}-"))
}

/// Follows a dotted path; a literal key containing dots wins over nesting.
fn lookup<'v>(body: &'v Value, path: &str) -> Option<&'v Value> {
    if let Some(v) = body.get(path) {
        return Some(v);
    }
    path.split('.').try_fold(body, |v, part| v.get(part))
}

fn scalar_at(body: &Value, path: &str) -> Result<String, KeyError> {
    match lookup(body, path) {
        None | Some(Value::Null) => Err(KeyError::Missing(path.to_owned())),
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(KeyError::WrongType(path.to_owned())),
    }
}

/// The stored sort key: `{value}-{SentTimestamp ms}-{SQS MessageId}`. Ordered by
/// the device's own value, unique, and identical on redelivery so a redelivered
/// message overwrites itself.
pub fn stored_message_id(
    message_id_value: &str,
    sent_timestamp_ms: u64,
    sqs_message_id: &str,
) -> String {
    format!("{message_id_value}-{sent_timestamp_ms}-{sqs_message_id}")
}

/// Published at QoS 1 on `notification/{uuid}` after a message is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub uuid: String,
    #[serde(rename = "messageId")]
    pub message_id: String,
}

/// SQS message attribute carrying the reason a message was dead-lettered.
pub use crate::dlq::REASON_ATTRIBUTE as DLQ_REASON_ATTRIBUTE;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extracts_the_seed_example() {
        let body = json!({"thingName":"testThing","epochTime":"1564669331","tempSensor1F":"72"});
        let k = DeviceKeys::default().extract(&body).unwrap();
        assert_eq!(k.uuid, "testThing");
        assert_eq!(k.message_id_value, "1564669331");
        assert_eq!(
            stored_message_id(&k.message_id_value, 1564669331123, "abc"),
            "1564669331-1564669331123-abc"
        );
    }

    #[test]
    fn dotted_paths_reach_nested_fields_and_numbers_become_strings() {
        let keys = DeviceKeys {
            uuid_key: "meta.device".into(),
            message_id_key: "ts".into(),
        };
        let k = keys
            .extract(&json!({"meta":{"device":"d1"},"ts":17}))
            .unwrap();
        assert_eq!((k.uuid.as_str(), k.message_id_value.as_str()), ("d1", "17"));
    }

    #[test]
    fn unusable_messages_say_why() {
        let keys = DeviceKeys::default();
        assert_eq!(keys.extract(&json!([1])), Err(KeyError::NotAnObject));
        assert_eq!(
            keys.extract(&json!({"epochTime":"1"})),
            Err(KeyError::Missing("thingName".into()))
        );
        assert_eq!(
            keys.extract(&json!({"thingName":{"x":1},"epochTime":"1"})),
            Err(KeyError::WrongType("thingName".into()))
        );
        assert_eq!(
            keys.extract(&json!({"thingName":"a/#","epochTime":"1"})),
            Err(KeyError::NotTopicSafe("thingName".into()))
        );
        assert_eq!(
            keys.extract(&json!({"thingName":"","epochTime":"1"})),
            Err(KeyError::WrongType("thingName".into()))
        );
        for unreachable in ["/x", "a//b", "a+b", "a#b", "nul\0", &"9".repeat(1025)] {
            assert_eq!(
                keys.extract(&json!({"thingName":"t","epochTime":unreachable})),
                Err(KeyError::NotTopicSafe("epochTime".into())),
                "{unreachable:.40}"
            );
        }
        assert_eq!(
            keys.extract(&json!({"thingName":"t".repeat(1025),"epochTime":"1"})),
            Err(KeyError::NotTopicSafe("thingName".into()))
        );
        let slashes = keys.extract(&json!({"thingName":"t","epochTime":"2024/01/"}));
        assert_eq!(slashes.unwrap().message_id_value, "2024/01/");
    }
}
