//! The polling loop: receive fetch requests, read the document, reply on the
//! requester's queue, and delete the request only once the reply was sent.
//!
//! A refused request (malformed, or a reply queue that is not one of ours) is
//! sent to `fetch-requests-dlq` with the reason attached, then deleted: it is
//! never answered. A transient failure (DynamoDB or SQS unreachable) leaves the
//! request queued; it is redelivered, and the redrive policy moves it to the
//! DLQ after `maxReceiveCount` attempts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::{Message, MessageAttributeValue};
use lambdaless_contracts::device::DLQ_REASON_ATTRIBUTE;
use lambdaless_contracts::{names, Names};
use lambdaless_runtime::aws::{self, AwsClients};
use lambdaless_runtime::dynamo_json;
use tokio_util::sync::CancellationToken;

use crate::request::{self, FetchRequest, Refusal};

/// Reply-queue URLs resolved so far; bounded so a flood of distinct users
/// cannot grow it without limit.
const URL_CACHE_MAX: usize = 10_000;

/// Everything a poller needs; cheap to clone.
#[derive(Clone)]
pub struct Responder {
    aws: AwsClients,
    requests_url: String,
    dlq_url: String,
    table: String,
    user_queue_prefix: String,
    wait_secs: i32,
    urls: Arc<Mutex<HashMap<String, String>>>,
}

/// What became of one request.
enum Outcome {
    /// Reply sent; delete the request.
    Replied(&'static str),
    /// Refused; dead-letter, then delete.
    Refused(Refusal),
    /// Transient failure; leave it queued for redelivery.
    Retry(String),
}

impl Responder {
    /// Resolves the queue URLs, waiting while AWS is not reachable; `None`
    /// when shutdown came first.
    pub async fn resolve(
        aws: &AwsClients,
        names: &Names,
        wait_secs: i32,
        shutdown: &CancellationToken,
    ) -> Option<Self> {
        let requests_url =
            aws::queue_url(&aws.sqs, &names.name(names::FETCH_REQUESTS), shutdown).await?;
        let dlq_url = aws::queue_url(&aws.sqs, &names.dlq(names::FETCH_REQUESTS), shutdown).await?;
        Some(Self {
            aws: aws.clone(),
            requests_url,
            dlq_url,
            table: names.name(names::DOCUMENTS),
            user_queue_prefix: names.user_queue(""),
            wait_secs,
            urls: Arc::default(),
        })
    }

    /// Receives and answers until `shutdown`; requests in hand are finished first.
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
                    futures::future::join_all(messages.iter().map(|m| self.handle(m))).await;
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
            .queue_url(&self.requests_url)
            .max_number_of_messages(10)
            .wait_time_seconds(self.wait_secs)
            .send()
            .await
            .map(|out| out.messages.unwrap_or_default())
            .map_err(|e| aws::describe(&e))
    }

    async fn handle(&self, message: &Message) {
        let started = Instant::now();
        let sqs_id = message.message_id.as_deref().unwrap_or_default();
        let Some(receipt) = message.receipt_handle.as_deref() else {
            return;
        };
        let body = message.body.as_deref().unwrap_or_default();
        let outcome = match request::parse(body, &self.user_queue_prefix) {
            Ok(req) => self.answer(&req).await,
            Err(refusal) => Outcome::Refused(refusal),
        };
        let label = match outcome {
            Outcome::Replied(label) => {
                self.delete(receipt).await;
                label
            }
            Outcome::Refused(refusal) => {
                tracing::warn!(sqs_message_id = sqs_id, reason = %refusal, "request refused");
                metrics::counter!("fetch_responder_refused_total", "reason" => refusal.kind())
                    .increment(1);
                if self.dead_letter(body, &refusal.to_string()).await {
                    self.delete(receipt).await;
                }
                "refused"
            }
            Outcome::Retry(error) => {
                tracing::warn!(sqs_message_id = sqs_id, %error, "request left for redelivery");
                "retry"
            }
        };
        metrics::counter!("fetch_responder_requests_total", "outcome" => label).increment(1);
        metrics::histogram!("fetch_responder_seconds").record(started.elapsed().as_secs_f64());
    }

    async fn answer(&self, req: &FetchRequest) -> Outcome {
        let url = match self.reply_url(&req.reply_queue).await {
            Ok(url) => url,
            Err(outcome) => return outcome,
        };
        let item = match self
            .aws
            .dynamodb
            .get_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(req.fetch_id.clone()))
            .send()
            .await
        {
            Ok(out) => out.item,
            Err(e) => return Outcome::Retry(format!("GetItem: {}", aws::describe(&e))),
        };
        let (reply, label) = match item {
            Some(item) => (req.reply(Some(&dynamo_json::from_item(&item))), "replied"),
            None => (req.reply(None), "not_found"),
        };
        match self
            .aws
            .sqs
            .send_message()
            .queue_url(&url)
            .message_body(reply)
            .send()
            .await
        {
            Ok(_) => Outcome::Replied(label),
            Err(e) if is_missing_queue(&e) => {
                self.forget(&req.reply_queue);
                Outcome::Refused(Refusal::NoSuchQueue(req.reply_queue.clone()))
            }
            Err(e) => Outcome::Retry(format!("SendMessage: {}", aws::describe(&e))),
        }
    }

    /// The URL of a reply queue of ours, resolved by name (cached).
    async fn reply_url(&self, queue: &str) -> Result<String, Outcome> {
        if let Some(url) = self.urls.lock().expect("cache lock").get(queue) {
            return Ok(url.clone());
        }
        match self.aws.sqs.get_queue_url().queue_name(queue).send().await {
            Ok(out) => {
                let url = out.queue_url.unwrap_or_default();
                let mut urls = self.urls.lock().expect("cache lock");
                if urls.len() >= URL_CACHE_MAX {
                    urls.clear();
                }
                urls.insert(queue.to_owned(), url.clone());
                Ok(url)
            }
            Err(e) if is_missing_queue(&e) => {
                Err(Outcome::Refused(Refusal::NoSuchQueue(queue.to_owned())))
            }
            Err(e) => Err(Outcome::Retry(format!(
                "GetQueueUrl: {}",
                aws::describe(&e)
            ))),
        }
    }

    fn forget(&self, queue: &str) {
        self.urls.lock().expect("cache lock").remove(queue);
    }

    /// Sends the request to the DLQ with the reason; false if that failed
    /// (the request then stays queued).
    async fn dead_letter(&self, body: &str, reason: &str) -> bool {
        let reason_attr = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(truncate(reason, 1024))
            .build()
            .expect("attribute is complete");
        let body = if body.is_empty() { " " } else { body };
        match self
            .aws
            .sqs
            .send_message()
            .queue_url(&self.dlq_url)
            .message_body(body)
            .message_attributes(DLQ_REASON_ATTRIBUTE, reason_attr)
            .send()
            .await
        {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %aws::describe(&e), "cannot reach the DLQ; request stays queued");
                false
            }
        }
    }

    /// A failed delete only means a second, identical reply later; the client
    /// library drops replies it no longer waits for.
    async fn delete(&self, receipt: &str) {
        if let Err(e) = self
            .aws
            .sqs
            .delete_message()
            .queue_url(&self.requests_url)
            .receipt_handle(receipt)
            .send()
            .await
        {
            tracing::warn!(error = %aws::describe(&e), "delete failed; the request will be answered again");
        }
    }
}

fn is_missing_queue<E, R>(err: &aws_sdk_sqs::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata,
{
    err.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code.contains("NonExistentQueue") || code.contains("QueueDoesNotExist"))
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
