//! One request, start to end: check size, topic and token, run the
//! operation, publish the answer at QoS 1, then acknowledge the request.

use std::time::Instant;

use lambdaless_contracts::api::{self, Answer, ErrorAnswer, RequestPayload};
use lambdaless_contracts::topics::{self, RequestTopic};
use lambdaless_runtime::mqtt::MqttConnection;
use rumqttc::{Publish, QoS};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::ops::Operations;

/// What one request needs besides itself.
#[derive(Clone)]
pub(crate) struct Handler {
    pub(crate) ops: Operations,
    pub(crate) mqtt: MqttConnection,
    pub(crate) max_request_bytes: usize,
    /// Largest MQTT packet the broker connection sends; a larger answer is
    /// replaced by [`api::MESSAGE_TOO_LARGE`].
    pub(crate) max_packet_bytes: usize,
}

/// A request that cannot be answered on a token topic, and why.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Invalid(pub(crate) String);

/// Decides where a request is answered: the parsed topic and payload, or
/// the reason it goes to `response/invalid`. Pure, so tested without a broker.
pub(crate) fn classify<'t>(
    topic: &'t str,
    payload: &[u8],
    max_bytes: usize,
) -> Result<(RequestTopic<'t>, RequestPayload, String), Invalid> {
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
    let token = request
        .usable_token()
        .ok_or_else(|| Invalid("token missing, empty, too long or containing / + #".to_owned()))?
        .to_owned();
    Ok((parsed, request, token))
}

impl Handler {
    /// Answers `publish`; `done` then lets the acknowledger ack it.
    pub(crate) async fn handle(&self, publish: Publish, done: oneshot::Sender<()>) {
        let started = Instant::now();
        let topic = publish.topic.clone();
        let (answer_topic, answer, op, outcome) =
            match classify(&topic, &publish.payload, self.max_request_bytes) {
                Ok((parsed, request, token)) => {
                    let (answer, outcome) = self.ops.answer(&parsed, &request).await;
                    let response_topic = topics::response(parsed.op(), &token);
                    let mut answer = answer.with_token(&token);
                    let mut outcome = outcome.label();
                    let size = answer_size(&response_topic, &answer);
                    if size > self.max_packet_bytes {
                        tracing::warn!(
                            op = parsed.op(),
                            size,
                            max = self.max_packet_bytes,
                            "answer too large for one MQTT packet; sending an error instead"
                        );
                        answer = too_large(&parsed).with_token(&token);
                        outcome = "too_large";
                    }
                    let op = match parsed {
                        RequestTopic::Unknown { .. } => "unknown".to_owned(),
                        ref known => known.op().to_owned(),
                    };
                    (response_topic, answer, op, outcome)
                }
                Err(Invalid(reason)) => {
                    tracing::info!(topic = %truncate(&topic, 200), %reason, "invalid request");
                    (
                        topics::RESPONSE_INVALID.to_owned(),
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
        if let Err(e) = self
            .mqtt
            .client
            .publish(answer_topic, QoS::AtLeastOnce, false, bytes)
            .await
        {
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
    mqtt: MqttConnection,
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

/// Bytes of the QoS 1 PUBLISH carrying `answer` on `topic`, fixed header
/// included (what rumqttc compares with its outgoing packet limit; over it,
/// rumqttc would fail the whole connection rather than the one publish).
fn answer_size(topic: &str, answer: &Value) -> usize {
    let payload = serde_json::to_vec(answer).map_or(0, |b| b.len());
    // Topic length prefix, topic, packet id, payload.
    let remaining = 2 + topic.len() + 2 + payload;
    let length_bytes = match remaining {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + length_bytes + remaining
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
        let (t, _, token) = classify("request/query/t", br#"{"token":"abc"}"#, 1024).unwrap();
        assert_eq!(t, RequestTopic::Query { uuid: "t" });
        assert_eq!(token, "abc");
        let (t, _, _) = classify("request/nope/t", br#"{"token":"abc"}"#, 1024).unwrap();
        assert_eq!(t.op(), "nope");
    }

    #[test]
    fn an_answer_over_the_packet_limit_becomes_a_small_error() {
        let answer = Answer::Get {
            body: Value::String("x".repeat(300 * 1024)),
            message_id: "m1".to_owned(),
            uuid: "t".to_owned(),
        }
        .with_token("tok");
        assert!(answer_size("response/get/tok", &answer) > 256 * 1024);
        let small = serde_json::json!({"a": 1});
        // 0x32, length, topic (2 + 1), packet id (2), payload (7).
        assert_eq!(answer_size("t", &small), 2 + 3 + 2 + 7);
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
        let bad = |topic: &str, payload: &[u8]| classify(topic, payload, 64).unwrap_err().0;
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
