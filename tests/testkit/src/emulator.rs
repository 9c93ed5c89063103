//! Typed look-ups into a stack's emulator: what a test asserts on after the
//! services did their work (queue depths, dead letters, stored items).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use lambdaless_runtime::dynamo_json;
use serde_json::{Map, Value};

use crate::Stack;

/// One message taken off a queue (and deleted), with its string attributes.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: String,
    pub attributes: HashMap<String, String>,
}

/// Messages waiting and messages being worked on, as SQS reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Depth {
    pub visible: u64,
    pub in_flight: u64,
}

impl Depth {
    pub fn total(self) -> u64 {
        self.visible + self.in_flight
    }
}

impl Stack {
    /// URL of the queue called `name` (a full name: `stack.names.name(..)`,
    /// `.dlq(..)` or `.user_queue(..)`).
    pub async fn queue_url(&self, name: &str) -> String {
        self.aws
            .sqs
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("queue {name} exists: {e}"))
            .queue_url
            .expect("GetQueueUrl returns a URL")
    }

    /// Approximate depth of the queue at `url`.
    pub async fn depth_of_url(&self, url: &str) -> Depth {
        let attrs = self
            .aws
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("GetQueueAttributes succeeds")
            .attributes
            .unwrap_or_default();
        let get = |name: &QueueAttributeName| {
            attrs
                .get(name)
                .and_then(|v| v.parse().ok())
                .unwrap_or_default()
        };
        Depth {
            visible: get(&QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: get(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        }
    }

    /// Approximate depth of the queue called `name`.
    pub async fn queue_depth(&self, name: &str) -> Depth {
        let url = self.queue_url(name).await;
        self.depth_of_url(&url).await
    }

    /// Sends `body` to the queue at `url`.
    pub async fn send_to_url(&self, url: &str, body: &str) {
        self.aws
            .sqs
            .send_message()
            .queue_url(url)
            .message_body(body)
            .send()
            .await
            .expect("SendMessage succeeds");
    }

    /// Sends `bodies` to the queue at `url` with SendMessageBatch, ten at a
    /// time (so that a worker tends to receive each ten as one batch);
    /// returns their SQS message ids.
    pub async fn send_batch(&self, url: &str, bodies: &[String]) -> Vec<String> {
        let mut ids = Vec::with_capacity(bodies.len());
        for (chunk, tens) in bodies.chunks(10).zip(0..) {
            let entries = chunk
                .iter()
                .zip(0..)
                .map(|(body, i)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(format!("{tens}-{i}"))
                        .message_body(body)
                        .build()
                        .expect("id and body are set")
                })
                .collect();
            let out = self
                .aws
                .sqs
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .expect("SendMessageBatch succeeds");
            assert!(out.failed.is_empty(), "{:?}", out.failed);
            ids.extend(out.successful.into_iter().map(|s| s.message_id));
        }
        ids
    }

    /// Waits (30 s at most, else panics) until the queue at `url` holds no
    /// message, visible or in flight.
    pub async fn wait_empty(&self, url: &str) {
        crate::eventually(Duration::from_secs(30), "the queue to be empty", || async {
            (self.depth_of_url(url).await.total() == 0).then_some(())
        })
        .await;
    }

    /// Sends `body` to the queue called `name`.
    pub async fn send(&self, name: &str, body: &str) {
        let url = self.queue_url(name).await;
        self.send_to_url(&url, body).await;
    }

    /// Long-polls the queue at `url` for up to `wait`, deletes the message
    /// it got and returns it; `None` when the queue stayed empty.
    pub async fn receive_one_from_url(&self, url: &str, wait: Duration) -> Option<Received> {
        let out = self
            .aws
            .sqs
            .receive_message()
            .queue_url(url)
            .wait_time_seconds(wait.as_secs().clamp(0, 20) as i32)
            .message_attribute_names("All")
            .send()
            .await
            .expect("ReceiveMessage succeeds");
        let m = out.messages.unwrap_or_default().into_iter().next()?;
        self.aws
            .sqs
            .delete_message()
            .queue_url(url)
            .set_receipt_handle(m.receipt_handle)
            .send()
            .await
            .expect("DeleteMessage succeeds");
        let attributes = m
            .message_attributes
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| Some((k, v.string_value?)))
            .collect();
        Some(Received {
            body: m.body.unwrap_or_default(),
            attributes,
        })
    }

    /// Every item of this stack's table `logical`, as JSON objects (all pages).
    pub async fn scan(&self, logical: &str) -> Vec<Map<String, Value>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .aws
                .dynamodb
                .scan()
                .table_name(self.names.name(logical))
                .set_exclusive_start_key(start)
                .send()
                .await
                .unwrap_or_else(|e| panic!("scan of {logical} succeeds: {e}"));
            items.extend(page.items().iter().map(dynamo_json::from_item));
            start = page.last_evaluated_key;
            if start.is_none() {
                return items;
            }
        }
    }

    /// Writes one item (a JSON object) into this stack's table `logical`.
    pub async fn put_item(&self, logical: &str, item: &Map<String, Value>) {
        self.aws
            .dynamodb
            .put_item()
            .table_name(self.names.name(logical))
            .set_item(Some(dynamo_json::to_item(item)))
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutItem into {logical} succeeds: {e}"));
    }
}
