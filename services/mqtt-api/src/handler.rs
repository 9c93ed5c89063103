//! One request, start to end: check size, topic and token, run the
//! operation, publish the answer at QoS 1, then acknowledge the request.
//!
//! Where the answer goes: `response/{op}/{token}` when the payload has a
//! usable token (SPEC §3); otherwise, for an MQTT 5 request with a Response
//! Topic, that topic, with the request's Correlation Data (SPEC §9; the
//! broker's ACL already checked that the requester may subscribe there);
//! otherwise `response/invalid`.

use std::time::Instant;

use lambdaless_contracts::api::{self, Answer, ErrorAnswer, RequestPayload};
use lambdaless_contracts::topics::{self, RequestTopic};
use rumqttc::v5::mqttbytes::v5::{Publish, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::mqtt5::Connection;
use crate::ops::Operations;

/// What one request needs besides itself.
#[derive(Clone)]
pub(crate) struct Handler {
    pub(crate) ops: Operations,
    pub(crate) mqtt: Connection,
    pub(crate) max_request_bytes: usize,
    /// Largest MQTT packet the broker connection sends; a larger answer is
    /// replaced by [`api::MESSAGE_TOO_LARGE`].
    pub(crate) max_packet_bytes: usize,
}

/// A request that cannot be answered on a token topic, and why.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Invalid(pub(crate) String);

/// Where a usable request is answered.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReplyTo {
    /// `response/{op}/{token}`, the token added to the answer.
    Token(String),
    /// The request's MQTT 5 Response Topic.
    ResponseTopic,
}

/// Decides where a request is answered: the parsed topic and payload, or
/// the reason it is refused. `response_topic`: the request carries one.
/// Pure, so tested without a broker.
pub(crate) fn classify<'t>(
    topic: &'t str,
    payload: &[u8],
    max_bytes: usize,
    response_topic: bool,
) -> Result<(RequestTopic<'t>, RequestPayload, ReplyTo), Invalid> {
    if payload.len() > max_bytes {
        return Err(Invalid(format!(
            "payload of {} bytes is over the limit of {max_bytes}",
            payload.len()
        )));
    }
    let parsed = topics::parse_request(topic).map_err(|e| Invalid(e.to_string()))?;
    let request: RequestPayload = match serde_json::from_slice::<Value>(payload) {
        Ok(v @ Value::Object(_)) => {
            serde_json::from_value(v).map_err(|e| Invalid(format!("payload: {e}")))?
        }
        Ok(_) => return Err(Invalid("payload must be a JSON object".to_owned())),
        Err(_) => return Err(Invalid("payload is not JSON".to_owned())),
    };
    let reply = match request.usable_token() {
        Some(token) => ReplyTo::Token(token.to_owned()),
        None if response_topic => ReplyTo::ResponseTopic,
        None => {
            return Err(Invalid(
                "token missing, empty, too long or containing / + #".to_owned(),
            ))
        }
    };
    Ok((parsed, request, reply))
}

impl Handler {
    /// Answers `publish`; `done` then lets the acknowledger ack it.
    pub(crate) async fn handle(&self, publish: Publish, done: oneshot::Sender<()>) {
        let started = Instant::now();
        let topic = String::from_utf8_lossy(&publish.topic).into_owned();
        let (response_topic, correlation) = publish
            .properties
            .as_ref()
            .map(|p| (p.response_topic.clone(), p.correlation_data.clone()))
            .unwrap_or_default();
        let classified = classify(
            &topic,
            &publish.payload,
            self.max_request_bytes,
            response_topic.is_some(),
        );
        let (answer_topic, answer, op, outcome) = match classified {
            Ok((parsed, request, reply)) => {
                let (answer, outcome) = self.ops.answer(&parsed, &request).await;
                let (target, token) = match reply {
                    ReplyTo::Token(token) => (topics::response(parsed.op(), &token), Some(token)),
                    ReplyTo::ResponseTopic => (response_topic.clone().unwrap_or_default(), None),
                };
                let shaped = |answer: &Answer| match &token {
                    Some(token) => answer.with_token(token),
                    None => serde_json::to_value(answer).expect("an answer serializes"),
                };
                let mut value = shaped(&answer);
                let mut outcome = outcome.label();
                let size = answer_size(&target, &value, correlation.as_ref().map(|c| c.len()));
                if size > self.max_packet_bytes {
                    tracing::warn!(
                        op = parsed.op(),
                        size,
                        max = self.max_packet_bytes,
                        "answer too large for one MQTT packet; sending an error instead"
                    );
                    value = shaped(&too_large(&parsed));
                    outcome = "too_large";
                }
                let op = match parsed {
                    RequestTopic::Unknown { .. } => "unknown".to_owned(),
                    ref known => known.op().to_owned(),
                };
                (target, value, op, outcome)
            }
            Err(Invalid(reason)) => {
                tracing::info!(topic = %truncate(&topic, 200), %reason, "invalid request");
                (
                    response_topic
                        .clone()
                        .unwrap_or_else(|| topics::RESPONSE_INVALID.to_owned()),
                    serde_json::to_value(Answer::Error(ErrorAnswer {
                        error: reason,
                        topic: Some(truncate(&topic, 1024).to_owned()),
                        ..ErrorAnswer::default()
                    }))
                    .expect("an answer serializes"),
                    "invalid".to_owned(),
                    "invalid",
                )
            }
        };
        let bytes = serde_json::to_vec(&answer).expect("answer serializes");
        let queued = match correlation {
            Some(correlation_data) if response_topic.as_deref() == Some(answer_topic.as_str()) => {
                let properties = PublishProperties {
                    correlation_data: Some(correlation_data),
                    ..PublishProperties::default()
                };
                self.mqtt
                    .client
                    .publish_with_properties(
                        answer_topic,
                        QoS::AtLeastOnce,
                        false,
                        bytes,
                        properties,
                    )
                    .await
            }
            _ => {
                self.mqtt
                    .client
                    .publish(answer_topic, QoS::AtLeastOnce, false, bytes)
                    .await
            }
        };
        if let Err(e) = queued {
            tracing::warn!(error = %e, "answer not queued");
        }
        let _ = done.send(());
        metrics::counter!("mqtt_api_requests_total", "op" => op.clone(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!("mqtt_api_request_seconds", "op" => op)
            .record(started.elapsed().as_secs_f64());
    }
}

/// Acknowledges requests in the order they arrived, each once its answer is
/// queued. rumqttd 0.20 disconnects a client whose PUBACKs come out of order,
/// and requests finish out of order when handled concurrently.
pub(crate) async fn acknowledge_in_order(
    mqtt: Connection,
    mut pending: mpsc::UnboundedReceiver<(Publish, oneshot::Receiver<()>)>,
) {
    while let Some((publish, done)) = pending.recv().await {
        // An Err means the handler was dropped: ack anyway so later acks flow.
        let _ = done.await;
        if let Err(e) = mqtt.client.ack(&publish).await {
            tracing::warn!(error = %e, "request not acknowledged");
        }
    }
}

/// Bytes of the MQTT 5 QoS 1 PUBLISH carrying `answer` on `topic` (with
/// Correlation Data of `correlation` bytes), fixed header included: what
/// rumqttc compares with its outgoing packet limit; over it, rumqttc would
/// fail the whole connection rather than the one publish.
fn answer_size(topic: &str, answer: &Value, correlation: Option<usize>) -> usize {
    let payload = serde_json::to_vec(answer).map_or(0, |b| b.len());
    let properties = correlation.map_or(0, |len| 1 + 2 + len);
    // Topic length prefix, topic, packet id, properties, payload.
    let remaining = 2 + topic.len() + 2 + varint_len(properties) + properties + payload;
    1 + varint_len(remaining) + remaining
}

/// Bytes of an MQTT variable byte integer.
fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// The error answer sent instead of one that does not fit a packet, naming
/// what the request named.
fn too_large(topic: &RequestTopic<'_>) -> Answer {
    let mut error = ErrorAnswer {
        error: api::MESSAGE_TOO_LARGE.to_owned(),
        ..ErrorAnswer::default()
    };
    match *topic {
        RequestTopic::Query { uuid } | RequestTopic::Send { uuid, .. } => {
            error.uuid = Some(uuid.to_owned());
        }
        RequestTopic::Get { uuid, message_id } | RequestTopic::Delete { uuid, message_id } => {
            error.uuid = Some(uuid.to_owned());
            error.message_id = Some(message_id.to_owned());
        }
        RequestTopic::Next { uuid, message_id } => {
            error.uuid = Some(uuid.to_owned());
            error.specified_message_id = Some(message_id.to_owned());
        }
        RequestTopic::Unknown { .. } => {}
    }
    Answer::Error(error)
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_requests_name_their_token() {
        let (t, _, reply) =
            classify("request/query/t", br#"{"token":"abc"}"#, 1024, false).unwrap();
        assert_eq!(t, RequestTopic::Query { uuid: "t" });
        assert_eq!(reply, ReplyTo::Token("abc".to_owned()));
        let (t, _, _) = classify("request/nope/t", br#"{"token":"abc"}"#, 1024, false).unwrap();
        assert_eq!(t.op(), "nope");
    }

    #[test]
    fn an_mqtt5_request_without_token_is_answered_on_its_response_topic() {
        let (_, _, reply) = classify("request/query/t", b"{}", 1024, true).unwrap();
        assert_eq!(reply, ReplyTo::ResponseTopic);
        // The token scheme is unchanged: a usable token still decides.
        let (_, _, reply) = classify("request/query/t", br#"{"token":"a"}"#, 1024, true).unwrap();
        assert_eq!(reply, ReplyTo::Token("a".to_owned()));
        // Without a Response Topic, a missing token is still refused.
        assert!(classify("request/query/t", b"{}", 1024, false).is_err());
    }

    #[test]
    fn an_answer_over_the_packet_limit_becomes_a_small_error() {
        let answer = Answer::Get {
            body: Value::String("x".repeat(300 * 1024)),
            message_id: "m1".to_owned(),
            uuid: "t".to_owned(),
        }
        .with_token("tok");
        assert!(answer_size("response/get/tok", &answer, None) > 256 * 1024);
        let small = serde_json::json!({"a": 1});
        // 0x32, length, topic (2 + 1), packet id (2), no properties (1), payload (7).
        assert_eq!(answer_size("t", &small, None), 2 + 3 + 2 + 1 + 7);
        // Correlation data "cd": property id, length, bytes.
        assert_eq!(answer_size("t", &small, Some(2)), 2 + 3 + 2 + 1 + 5 + 7);
        let error = too_large(&RequestTopic::Get {
            uuid: "t",
            message_id: "m1",
        })
        .with_token("tok");
        assert_eq!(
            error,
            serde_json::json!({"error": "Message too large to send", "messageId": "m1", "token": "tok", "uuid": "t"})
        );
    }

    #[test]
    fn unusable_requests_say_why() {
        let bad = |topic: &str, payload: &[u8]| classify(topic, payload, 64, false).unwrap_err().0;
        assert_eq!(bad("request/query/t", b"not json"), "payload is not JSON");
        assert_eq!(
            bad("request/query/t", b"[1]"),
            "payload must be a JSON object"
        );
        assert!(bad("request/query/t", br#"{"token":"a/b"}"#).starts_with("token"));
        assert!(bad("request/query/t", br#"{}"#).starts_with("token"));
        assert!(bad("request/query/t", &[b' '; 65]).contains("over the limit"));
        assert!(bad("request/get/t", br#"{"token":"a"}"#).contains("request/get"));
        assert_eq!(truncate("héllo", 2), "h");
    }
}
