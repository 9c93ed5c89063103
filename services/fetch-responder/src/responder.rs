//! Answering fetch requests on the runtime's worker core: read the document, reply on the
//! requester's queue, and let the worker delete the request only once the reply was sent.
//!
//! A refused request (malformed, or a reply queue that is not one of ours) is
//! dead-lettered to `fetch-requests-dlq` with the reason attached, then deleted: it is
//! never answered. A transient failure (DynamoDB or SQS unreachable) leaves the
//! request queued; it is redelivered, and the redrive policy moves it to the
//! DLQ after `maxReceiveCount` attempts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::Message;
use lambdaless_contracts::{names, Names};
use lambdaless_runtime::aws::{self, AwsClients};
use lambdaless_runtime::dynamo_json;
use lambdaless_runtime::worker::{self, Handler, Polling, Worker};
use tokio_util::sync::CancellationToken;

use crate::request::{self, FetchRequest, Refusal};

/// Reply-queue URLs resolved so far; bounded so a flood of distinct users
/// cannot grow it without limit.
const URL_CACHE_MAX: usize = 10_000;

/// Reads documents and replies; one per process, shared by the pollers.
pub struct Responder {
    aws: AwsClients,
    table: String,
    user_queue_prefix: String,
    urls: Mutex<HashMap<String, String>>,
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

/// Resolves the queue URLs (waiting while AWS is not reachable) and builds the worker;
/// `None` when shutdown came first.
pub async fn worker(
    aws: &AwsClients,
    names: &Names,
    wait_secs: i32,
    shutdown: &CancellationToken,
) -> Option<Worker<Responder>> {
    let requests_url =
        aws::queue_url(&aws.sqs, &names.name(names::FETCH_REQUESTS), shutdown).await?;
    let dlq_url = aws::queue_url(&aws.sqs, &names.dlq(names::FETCH_REQUESTS), shutdown).await?;
    let responder = Responder {
        aws: aws.clone(),
        table: names.name(names::DOCUMENTS),
        user_queue_prefix: names.user_queue(""),
        urls: Mutex::default(),
    };
    Some(
        Worker::new(aws.sqs.clone(), requests_url, dlq_url, "fetch", responder)
            .counted_as("fetch_responder_messages_total")
            .polling(Polling {
                wait_secs,
                ..Polling::default()
            }),
    )
}

impl Handler for Responder {
    async fn handle(&self, batch: &[Message]) -> Vec<worker::Outcome> {
        futures::future::join_all(batch.iter().map(|m| self.handle_one(m))).await
    }
}

impl Responder {
    async fn handle_one(&self, message: &Message) -> worker::Outcome {
        let started = Instant::now();
        let sqs_id = message.message_id.as_deref().unwrap_or_default();
        let body = message.body.as_deref().unwrap_or_default();
        let outcome = match request::parse(body, &self.user_queue_prefix) {
            Ok(req) => self.answer(&req).await,
            Err(refusal) => Outcome::Refused(refusal),
        };
        let (label, outcome) = match outcome {
            Outcome::Replied(label) => (label, worker::Outcome::Done),
            Outcome::Refused(refusal) => {
                tracing::warn!(sqs_message_id = sqs_id, reason = %refusal, "request refused");
                metrics::counter!("fetch_responder_refused_total", "reason" => refusal.kind())
                    .increment(1);
                ("refused", worker::Outcome::DeadLetter(refusal.to_string()))
            }
            Outcome::Retry(error) => ("retry", worker::Outcome::Retry(error)),
        };
        metrics::counter!("fetch_responder_requests_total", "outcome" => label).increment(1);
        metrics::histogram!("fetch_responder_seconds").record(started.elapsed().as_secs_f64());
        outcome
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
}

fn is_missing_queue<E, R>(err: &aws_sdk_sqs::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata,
{
    err.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code.contains("NonExistentQueue") || code.contains("QueueDoesNotExist"))
}
