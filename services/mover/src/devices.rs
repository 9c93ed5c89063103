//! The `devices` pipeline (seed 2): `device-inbound` → `device-messages`, then
//! a notification on `notification/{uuid}`.
//!
//! Per received batch: messages that cannot be stored are sent to the DLQ with
//! the reason and then deleted; the others are written with one BatchWriteItem
//! (unprocessed items retried with backoff), and only the written ones are
//! deleted. A message whose write failed stays in the queue, is redelivered,
//! and after `maxReceiveCount` receives lands in the DLQ through the redrive
//! policy. The stored `messageId` is the same on redelivery, so a redelivered
//! message overwrites itself.
//!
//! A write that takes longer than `extend_visibility_after_secs` extends the
//! batch's visibility timeout until it is done, so no other poller receives
//! the messages meanwhile. Metrics: `mover_messages_total{outcome=stored|
//! failed|dead_lettered}`, `mover_batch_size`, `mover_batch_seconds`,
//! `mover_write_seconds`, `mover_visibility_extensions_total`,
//! `mover_notifications_dropped_total`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_dynamodb::primitives::DateTime;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, Message, MessageSystemAttributeName,
};
use lambdaless_contracts::device::{self, DeviceKeys, Notification};
use lambdaless_contracts::{names, topics, Names};
use lambdaless_runtime::aws::{self, AwsClients};
use lambdaless_runtime::dynamo_json;
use lambdaless_runtime::mqtt::MqttConnection;
use rumqttc::QoS;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::settings::DevicesSettings;

/// Attempts at writing the items DynamoDB left unprocessed.
const WRITE_ATTEMPTS: u32 = 6;

/// Everything one poller needs; cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    aws: AwsClients,
    inbound_url: String,
    dlq_url: String,
    table: String,
    keys: DeviceKeys,
    wait_secs: i32,
    /// While a batch's write is still running after this long, its messages'
    /// visibility is extended (and again every period after).
    extend_after: Duration,
    /// The visibility timeout each extension sets, in seconds.
    extend_to_secs: i32,
    mqtt: MqttConnection,
}

/// A message ready to be written.
struct Ready {
    receipt: String,
    uuid: String,
    message_id: String,
    item: HashMap<String, AttributeValue>,
}

impl Pipeline {
    /// Resolves the queue URLs, waiting while the emulator or AWS is not up.
    /// `None` when shutdown came first.
    pub async fn resolve(
        aws: &AwsClients,
        names: &Names,
        settings: &DevicesSettings,
        mqtt: MqttConnection,
        shutdown: &CancellationToken,
    ) -> Option<Self> {
        let inbound_url =
            aws::queue_url(&aws.sqs, &names.name(names::DEVICE_INBOUND), shutdown).await?;
        let dlq_url = aws::queue_url(&aws.sqs, &names.dlq(names::DEVICE_INBOUND), shutdown).await?;
        Some(Self {
            aws: aws.clone(),
            inbound_url,
            dlq_url,
            table: names.name(names::DEVICE_MESSAGES),
            keys: DeviceKeys {
                uuid_key: settings.uuid_key.clone(),
                message_id_key: settings.message_id_key.clone(),
            },
            wait_secs: settings.wait_secs,
            extend_after: Duration::from_secs(settings.extend_visibility_after_secs),
            extend_to_secs: settings.visibility_timeout_secs,
            mqtt,
        })
    }

    /// Receives and processes batches until `shutdown`. A batch in hand is
    /// always finished (write, then delete) before the loop looks at shutdown again.
    pub async fn poll_until(&self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = self.receive() => r,
            };
            match received {
                Ok(messages) => {
                    backoff = Duration::from_millis(100);
                    if !messages.is_empty() {
                        self.process(messages).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "receive failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn receive(&self) -> Result<Vec<Message>, String> {
        self.aws
            .sqs
            .receive_message()
            .queue_url(&self.inbound_url)
            .max_number_of_messages(10)
            .wait_time_seconds(self.wait_secs)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map(|out| out.messages.unwrap_or_default())
            .map_err(|e| aws::describe(&e))
    }

    async fn process(&self, messages: Vec<Message>) {
        let started = Instant::now();
        metrics::histogram!("mover_batch_size", "pipeline" => "devices")
            .record(messages.len() as f64);
        let mut ready = Vec::new();
        let mut rejected = Vec::new();
        for message in messages {
            match self.prepare(&message) {
                Ok(r) => ready.push(r),
                Err(reason) => rejected.push((message, reason)),
            }
        }
        if !rejected.is_empty() {
            crate::sqs_batch::dead_letter(
                &self.aws.sqs,
                &self.inbound_url,
                &self.dlq_url,
                "devices",
                rejected,
            )
            .await;
        }
        if !ready.is_empty() {
            let receipts: Vec<String> = ready.iter().map(|r| r.receipt.clone()).collect();
            let extender = self.keep_invisible(receipts);
            tokio::select! {
                () = self.store(ready) => {}
                () = extender => unreachable!("the extender never ends"),
            }
        }
        metrics::histogram!("mover_batch_seconds", "pipeline" => "devices")
            .record(started.elapsed().as_secs_f64());
    }

    /// Turns one SQS message into the item to write, or the reason it cannot be.
    fn prepare(&self, message: &Message) -> Result<Ready, String> {
        let receipt = message
            .receipt_handle
            .clone()
            .ok_or_else(|| "message has no receipt handle".to_owned())?;
        let sqs_id = message.message_id.as_deref().unwrap_or_default();
        let body = message.body.as_deref().unwrap_or_default();
        let parsed: Value =
            serde_json::from_str(body).map_err(|e| format!("body is not JSON: {e}"))?;
        let keys = self.keys.extract(&parsed).map_err(|e| e.to_string())?;
        let sent_ms: u64 = message
            .attributes
            .as_ref()
            .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let message_id = device::stored_message_id(&keys.message_id_value, sent_ms, sqs_id);
        let Value::Object(map) = &parsed else {
            return Err("message body is not a JSON object".to_owned());
        };
        let stored_at = DateTime::from(SystemTime::now())
            .fmt(aws_sdk_dynamodb::primitives::DateTimeFormat::DateTime)
            .unwrap_or_default();
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
            receipt,
            uuid: keys.uuid,
            message_id,
            item,
        })
    }

    /// Writes the batch, deletes what was written, then announces it.
    async fn store(&self, ready: Vec<Ready>) {
        let mut pending: HashMap<(String, String), usize> = HashMap::new();
        let mut requests = Vec::with_capacity(ready.len());
        for (i, r) in ready.iter().enumerate() {
            // Two copies of one message in a batch would make BatchWriteItem
            // reject the whole batch for duplicate keys; one write serves both.
            if pending
                .insert((r.uuid.clone(), r.message_id.clone()), i)
                .is_some()
            {
                continue;
            }
            let put = PutRequest::builder()
                .set_item(Some(r.item.clone()))
                .build()
                .expect("item is set");
            requests.push(WriteRequest::builder().put_request(put).build());
        }

        let write_started = Instant::now();
        let mut attempt = 0;
        let mut unwritten: HashSet<(String, String)> = HashSet::new();
        while !requests.is_empty() {
            attempt += 1;
            let result = self
                .aws
                .dynamodb
                .batch_write_item()
                .request_items(&self.table, requests.clone())
                .send()
                .await;
            match result {
                Ok(out) => {
                    requests = out
                        .unprocessed_items
                        .and_then(|mut m| m.remove(&self.table))
                        .unwrap_or_default();
                }
                Err(e) => {
                    tracing::warn!(error = %aws::describe(&e), attempt, "BatchWriteItem failed");
                }
            }
            if requests.is_empty() {
                break;
            }
            if attempt >= WRITE_ATTEMPTS {
                unwritten = requests.iter().filter_map(key_of).collect();
                break;
            }
            tokio::time::sleep(Duration::from_millis(50 * 2u64.pow(attempt))).await;
        }

        metrics::histogram!("mover_write_seconds", "pipeline" => "devices")
            .record(write_started.elapsed().as_secs_f64());
        let (written, failed): (Vec<&Ready>, Vec<&Ready>) = ready
            .iter()
            .partition(|r| !unwritten.contains(&(r.uuid.clone(), r.message_id.clone())));
        if !failed.is_empty() {
            metrics::counter!("mover_messages_total", "pipeline" => "devices", "outcome" => "failed")
                .increment(failed.len() as u64);
            tracing::warn!(
                count = failed.len(),
                "writes not acknowledged; messages stay queued for redelivery"
            );
        }
        let receipts: Vec<&str> = written.iter().map(|r| r.receipt.as_str()).collect();
        crate::sqs_batch::delete(&self.aws.sqs, &self.inbound_url, &receipts).await;
        metrics::counter!("mover_messages_total", "pipeline" => "devices", "outcome" => "stored")
            .increment(written.len() as u64);
        for r in written {
            self.notify(&r.uuid, &r.message_id);
        }
    }

    /// Every `extend_after`, pushes the visibility timeout of `receipts` to
    /// `extend_to_secs` so a slow write is not redelivered to another poller
    /// meanwhile. Runs until dropped (when the write and delete are done).
    async fn keep_invisible(&self, receipts: Vec<String>) {
        loop {
            tokio::time::sleep(self.extend_after).await;
            for chunk in receipts.chunks(10) {
                let entries = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        ChangeMessageVisibilityBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(r)
                            .visibility_timeout(self.extend_to_secs)
                            .build()
                            .expect("entry is complete")
                    })
                    .collect();
                match self
                    .aws
                    .sqs
                    .change_message_visibility_batch()
                    .queue_url(&self.inbound_url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                {
                    Ok(out) => {
                        metrics::counter!("mover_visibility_extensions_total", "pipeline" => "devices")
                            .increment((chunk.len() - out.failed.len()) as u64);
                    }
                    Err(e) => {
                        tracing::warn!(error = %aws::describe(&e), "cannot extend visibility; a slow write may be redelivered (and rewritten to the same item)");
                    }
                }
            }
            tracing::info!(
                messages = receipts.len(),
                visibility_secs = self.extend_to_secs,
                "write still running: visibility extended"
            );
        }
    }

    /// Publishes `{"uuid","messageId"}` on `notification/{uuid}` at QoS 1.
    fn notify(&self, uuid: &str, message_id: &str) {
        let payload = serde_json::to_vec(&Notification {
            uuid: uuid.to_owned(),
            message_id: message_id.to_owned(),
        })
        .expect("notification serializes");
        if let Err(e) = self.mqtt.client.try_publish(
            topics::notification(uuid),
            QoS::AtLeastOnce,
            false,
            payload,
        ) {
            metrics::counter!("mover_notifications_dropped_total").increment(1);
            tracing::warn!(uuid, error = %e, "notification not queued (broker backlog full)");
        }
    }
}

fn key_of(request: &WriteRequest) -> Option<(String, String)> {
    let item = &request.put_request.as_ref()?.item;
    let uuid = item.get("uuid")?.as_s().ok()?.clone();
    let message_id = item.get("messageId")?.as_s().ok()?.clone();
    Some((uuid, message_id))
}
