//! The `users` pipeline (seed 4): `users-create` → `users`, then the user's
//! reply queue `user-queue-{userId}` (seed 1).
//!
//! The user id is the UUIDv5 of the SQS MessageId and `createdAt` is the
//! message's SentTimestamp, so a redelivered message writes the very same
//! item again: it cannot create a second user. Per batch: malformed bodies go
//! to `users-create-dlq` with the reason; the rest are written with one
//! BatchWriteItem (unprocessed items retried), their reply queues created,
//! and only then are their messages deleted.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::primitives::{DateTime, DateTimeFormat};
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use lambdaless_contracts::user::user_id;
use lambdaless_contracts::{names, Names};
use lambdaless_runtime::aws::{self, AwsClients};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::settings::UsersSettings;

const WRITE_ATTEMPTS: u32 = 6;

/// The body `api-gateway` validated; checked again here since anyone may
/// write to the queue.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    email: String,
}

#[derive(Clone)]
pub struct Pipeline {
    aws: AwsClients,
    names: Names,
    inbound_url: String,
    dlq_url: String,
    table: String,
    wait_secs: i32,
}

struct Ready {
    receipt: String,
    user_id: String,
    item: HashMap<String, AttributeValue>,
}

/// The stored item for a message, or why it cannot be stored. Pure, so the
/// idempotence of redelivery is a unit test.
fn user_item(
    sqs_message_id: &str,
    body: &str,
    sent_ms: u64,
) -> Result<(String, HashMap<String, AttributeValue>), String> {
    if sqs_message_id.is_empty() {
        return Err("message has no MessageId".to_owned());
    }
    let user: NewUser = serde_json::from_str(body).map_err(|e| format!("body: {e}"))?;
    let len = user.name.chars().count();
    if !(5..=100).contains(&len) {
        return Err(format!("name: must be 5 to 100 characters (got {len})"));
    }
    if !user.email.contains('@') || user.email.chars().any(char::is_whitespace) {
        return Err("email: must be a valid e-mail address".to_owned());
    }
    let id = user_id(sqs_message_id);
    let sent = UNIX_EPOCH + Duration::from_millis(sent_ms);
    let created_at = DateTime::from(if sent_ms == 0 {
        SystemTime::now()
    } else {
        sent
    })
    .fmt(DateTimeFormat::DateTime)
    .unwrap_or_default();
    let item = HashMap::from([
        ("userId".to_owned(), AttributeValue::S(id.clone())),
        ("name".to_owned(), AttributeValue::S(user.name)),
        ("email".to_owned(), AttributeValue::S(user.email)),
        ("createdAt".to_owned(), AttributeValue::S(created_at)),
        (
            "sqsMessageId".to_owned(),
            AttributeValue::S(sqs_message_id.to_owned()),
        ),
    ]);
    Ok((id, item))
}

impl Pipeline {
    /// Resolves the queue URLs, waiting while SQS is not up; `None` on shutdown.
    pub async fn resolve(
        aws: &AwsClients,
        names: &Names,
        settings: &UsersSettings,
        shutdown: &CancellationToken,
    ) -> Option<Self> {
        let inbound_url =
            aws::queue_url(&aws.sqs, &names.name(names::USERS_CREATE), shutdown).await?;
        let dlq_url = aws::queue_url(&aws.sqs, &names.dlq(names::USERS_CREATE), shutdown).await?;
        Some(Self {
            aws: aws.clone(),
            names: names.clone(),
            inbound_url,
            dlq_url,
            table: names.name(names::USERS),
            wait_secs: settings.wait_secs,
        })
    }

    /// Receives and processes batches until `shutdown`; a batch in hand is finished first.
    pub async fn poll_until(&self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = self.aws.sqs.receive_message()
                    .queue_url(&self.inbound_url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(self.wait_secs)
                    .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                    .send() => r,
            };
            match received {
                Ok(out) => {
                    backoff = Duration::from_millis(100);
                    let messages = out.messages.unwrap_or_default();
                    if !messages.is_empty() {
                        self.process(messages).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %aws::describe(&e), retry_in_ms = backoff.as_millis() as u64, "receive failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn process(&self, messages: Vec<Message>) {
        let started = Instant::now();
        metrics::histogram!("mover_batch_size", "pipeline" => "users")
            .record(messages.len() as f64);
        let mut ready = Vec::new();
        let mut rejected = Vec::new();
        for m in messages {
            let sent_ms = m
                .attributes
                .as_ref()
                .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let outcome = user_item(
                m.message_id.as_deref().unwrap_or_default(),
                m.body.as_deref().unwrap_or_default(),
                sent_ms,
            );
            match (outcome, m.receipt_handle.clone()) {
                (Ok((user_id, item)), Some(receipt)) => ready.push(Ready {
                    receipt,
                    user_id,
                    item,
                }),
                (Err(reason), _) => rejected.push((m, reason)),
                (Ok(_), None) => {}
            }
        }
        if !rejected.is_empty() {
            crate::sqs_batch::dead_letter(
                &self.aws.sqs,
                &self.inbound_url,
                &self.dlq_url,
                "users",
                rejected,
            )
            .await;
        }
        if !ready.is_empty() {
            self.store(ready).await;
        }
        metrics::histogram!("mover_batch_seconds", "pipeline" => "users")
            .record(started.elapsed().as_secs_f64());
    }

    async fn store(&self, ready: Vec<Ready>) {
        let mut seen = HashSet::new();
        let mut requests: Vec<WriteRequest> = ready
            .iter()
            .filter(|r| seen.insert(r.user_id.clone()))
            .map(|r| {
                let put = PutRequest::builder()
                    .set_item(Some(r.item.clone()))
                    .build()
                    .expect("item is set");
                WriteRequest::builder().put_request(put).build()
            })
            .collect();
        let mut attempt = 0;
        let mut unwritten: HashSet<String> = HashSet::new();
        while !requests.is_empty() {
            attempt += 1;
            match self
                .aws
                .dynamodb
                .batch_write_item()
                .request_items(&self.table, requests.clone())
                .send()
                .await
            {
                Ok(out) => {
                    requests = out
                        .unprocessed_items
                        .and_then(|mut m| m.remove(&self.table))
                        .unwrap_or_default();
                }
                Err(e) => {
                    tracing::warn!(error = %aws::describe(&e), attempt, "BatchWriteItem failed")
                }
            }
            if requests.is_empty() {
                break;
            }
            if attempt >= WRITE_ATTEMPTS {
                unwritten = requests
                    .iter()
                    .filter_map(|w| {
                        w.put_request
                            .as_ref()?
                            .item
                            .get("userId")?
                            .as_s()
                            .ok()
                            .cloned()
                    })
                    .collect();
                break;
            }
            tokio::time::sleep(Duration::from_millis(50 * 2u64.pow(attempt))).await;
        }
        let mut done = Vec::new();
        for r in &ready {
            if unwritten.contains(&r.user_id) {
                continue;
            }
            // The reply queue is part of creating the user: without it the
            // message stays queued and the (idempotent) write repeats.
            match self
                .aws
                .sqs
                .create_queue()
                .queue_name(self.names.user_queue(&r.user_id))
                .send()
                .await
            {
                Ok(_) => done.push(r.receipt.as_str()),
                Err(e) => {
                    tracing::warn!(user_id = %r.user_id, error = %aws::describe(&e), "reply queue not created; message stays queued")
                }
            }
        }
        let failed = ready.len() - done.len();
        if failed > 0 {
            metrics::counter!("mover_messages_total", "pipeline" => "users", "outcome" => "failed")
                .increment(failed as u64);
        }
        crate::sqs_batch::delete(&self.aws.sqs, &self.inbound_url, &done).await;
        metrics::counter!("mover_messages_total", "pipeline" => "users", "outcome" => "stored")
            .increment(done.len() as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redelivery_writes_the_same_item() {
        let body = r#"{"name":"Alice Smith","email":"alice@example.com"}"#;
        let a = user_item("m-1", body, 1_700_000_000_000).unwrap();
        let b = user_item("m-1", body, 1_700_000_000_000).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.0, user_id("m-1"));
        assert_eq!(a.1["sqsMessageId"], AttributeValue::S("m-1".into()));
        assert_eq!(
            a.1["createdAt"],
            AttributeValue::S("2023-11-14T22:13:20Z".into())
        );
        assert_ne!(user_item("m-2", body, 0).unwrap().0, a.0);
    }

    #[test]
    fn malformed_bodies_have_reasons() {
        for (body, field) in [
            ("not json", "body"),
            (r#"{"name":"Alice Smith"}"#, "email"),
            (r#"{"name":"Al","email":"a@b.co"}"#, "name"),
            (r#"{"name":"Alice Smith","email":"nope"}"#, "email"),
            (r#"{"name":"Alice Smith","email":"a@b.co","x":1}"#, "x"),
        ] {
            let reason = user_item("m", body, 0).unwrap_err();
            assert!(reason.contains(field), "{body}: {reason}");
        }
    }
}
