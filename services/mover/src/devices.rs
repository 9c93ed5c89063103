//! The `devices` pipeline (seed 2): `device-inbound` → `device-messages`, then
//! a notification on `notification/{uuid}`.
//!
//! Runs on the runtime's worker core ([`lambdaless_runtime::worker`]). Per received batch:
//! a message that cannot be stored (not JSON, no usable keys, or beyond DynamoDB's limits:
//! numbers, nesting, key and item sizes) is dead-lettered at once with the reason; the others
//! are written with BatchWriteItem, where an item DynamoDB itself refuses is isolated by
//! splitting the batch and dead-lettered with DynamoDB's message. Each stored message is
//! announced at QoS 1 and then deleted; a message whose write failed stays queued and is
//! redelivered (after `maxReceiveCount` receives the redrive policy moves it). The stored
//! `messageId` is the same on redelivery, so a redelivered message overwrites itself.
//! Metrics: `mover_messages_total{pipeline,outcome=stored|failed|dead_lettered}`,
//! `worker_batch_size`, `worker_batch_seconds`, `worker_visibility_extensions_total`,
//! `mover_notifications_dropped_total`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::primitives::DateTime;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::Message;
use lambdaless_contracts::device::{self, DeviceKeys, Notification};
use lambdaless_contracts::limits::{self, MAX_PARTITION_KEY_BYTES, MAX_SORT_KEY_BYTES};
use lambdaless_contracts::{names, topics, Names};
use lambdaless_runtime::aws::{self, AwsClients};
use lambdaless_runtime::dynamo_json;
use lambdaless_runtime::mqtt::MqttConnection;
use lambdaless_runtime::worker::store::{self, Item, Written};
use lambdaless_runtime::worker::{self, Handler, Outcome, Polling, Worker};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::settings::DevicesSettings;

/// Stores device messages and announces them.
pub struct Devices {
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
    keys: DeviceKeys,
    mqtt: MqttConnection,
}

/// A message ready to be written.
struct Ready {
    uuid: String,
    message_id: String,
    item: Item,
}

/// Resolves the queue URLs (waiting while the emulator or AWS is not up) and builds the
/// worker; `None` when shutdown came first.
pub async fn worker(
    aws: &AwsClients,
    names: &Names,
    settings: &DevicesSettings,
    mqtt: MqttConnection,
    shutdown: &CancellationToken,
) -> Option<Worker<Devices>> {
    let inbound_url =
        aws::queue_url(&aws.sqs, &names.name(names::DEVICE_INBOUND), shutdown).await?;
    let dlq_url = aws::queue_url(&aws.sqs, &names.dlq(names::DEVICE_INBOUND), shutdown).await?;
    let handler = Devices {
        dynamodb: aws.dynamodb.clone(),
        table: names.name(names::DEVICE_MESSAGES),
        keys: DeviceKeys {
            uuid_key: settings.uuid_key.clone(),
            message_id_key: settings.message_id_key.clone(),
        },
        mqtt,
    };
    Some(
        Worker::new(aws.sqs.clone(), inbound_url, dlq_url, "devices", handler)
            .counted_as("mover_messages_total")
            .polling(Polling {
                wait_secs: settings.wait_secs,
                batch: 10,
                extend_after: Duration::from_secs(settings.extend_visibility_after_secs),
                extend_to_secs: settings.visibility_timeout_secs,
            }),
    )
}

impl Handler for Devices {
    async fn handle(&self, batch: &[Message]) -> Vec<Outcome> {
        let mut outcomes = vec![Outcome::Done; batch.len()];
        let mut ready = Vec::new();
        for (i, message) in batch.iter().enumerate() {
            match self.prepare(message) {
                Ok(r) => ready.push((i, r)),
                Err(reason) => outcomes[i] = Outcome::DeadLetter(reason),
            }
        }
        if ready.is_empty() {
            return outcomes;
        }
        let items: Vec<Item> = ready.iter().map(|(_, r)| r.item.clone()).collect();
        let written = store::write_items(
            &self.dynamodb,
            &self.table,
            &["uuid", "messageId"],
            &items,
            Duration::from_millis(50),
        )
        .await;
        for ((i, r), written) in ready.iter().zip(written) {
            outcomes[*i] = match written {
                Written::Stored => {
                    self.notify(&r.uuid, &r.message_id);
                    Outcome::Done
                }
                Written::Refused(reason) => {
                    Outcome::DeadLetter(format!("DynamoDB refused the item: {reason}"))
                }
                Written::Failed(error) => Outcome::Retry(error),
            };
        }
        outcomes
    }
}

impl Devices {
    /// Turns one SQS message into the item to write, or the reason it cannot be.
    fn prepare(&self, message: &Message) -> Result<Ready, String> {
        let sqs_id = message.message_id.as_deref().unwrap_or_default();
        let body = message.body.as_deref().unwrap_or_default();
        let parsed: Value =
            serde_json::from_str(body).map_err(|e| format!("body is not JSON: {e}"))?;
        let keys = self.keys.extract(&parsed).map_err(|e| e.to_string())?;
        let message_id = device::stored_message_id(
            &keys.message_id_value,
            worker::sent_timestamp_ms(message),
            sqs_id,
        );
        let Value::Object(map) = &parsed else {
            return Err("message body is not a JSON object".to_owned());
        };
        let limit = |e: limits::LimitError| e.to_string();
        limits::check_key("uuid", &keys.uuid, MAX_PARTITION_KEY_BYTES).map_err(limit)?;
        limits::check_key("messageId", &message_id, MAX_SORT_KEY_BYTES).map_err(limit)?;
        let body_bytes = limits::check_document("body", map).map_err(limit)?;
        let stored_at = DateTime::from(SystemTime::now())
            .fmt(aws_sdk_dynamodb::primitives::DateTimeFormat::DateTime)
            .unwrap_or_default();
        let size = body_bytes + keys.uuid.len() + message_id.len() + stored_at.len() + 30;
        limits::check_item_size(size).map_err(limit)?;
        let item = HashMap::from([
            ("uuid".to_owned(), AttributeValue::S(keys.uuid.clone())),
            (
                "messageId".to_owned(),
                AttributeValue::S(message_id.clone()),
            ),
            (
                "body".to_owned(),
                AttributeValue::M(dynamo_json::to_item(map)),
            ),
            ("storedAt".to_owned(), AttributeValue::S(stored_at)),
        ]);
        Ok(Ready {
            uuid: keys.uuid,
            message_id,
            item,
        })
    }

    /// Publishes `{"uuid","messageId"}` on `notification/{uuid}` at QoS 1; the drain waits
    /// for its PUBACK before the connection closes.
    fn notify(&self, uuid: &str, message_id: &str) {
        let payload = serde_json::to_vec(&Notification {
            uuid: uuid.to_owned(),
            message_id: message_id.to_owned(),
        })
        .expect("notification serializes");
        if let Err(e) = self.mqtt.publish_acked(topics::notification(uuid), payload) {
            metrics::counter!("mover_notifications_dropped_total").increment(1);
            tracing::warn!(uuid, error = %e, "notification not queued (broker backlog full)");
        }
    }
}
