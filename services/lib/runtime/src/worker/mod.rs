//! The SQS worker core every queue-driven service runs on.
//!
//! A [`Worker`] long-polls one queue (backing off while SQS is unreachable, stopping on
//! shutdown only between batches), hands each received batch to a [`Handler`], and acts on
//! the handler's verdict for every message:
//!
//! - [`Outcome::Done`]: the message's effect is durable; it is deleted.
//! - [`Outcome::DeadLetter`]: it can never succeed; it goes to the DLQ with the reason in
//!   the `lambdaless-dlq-reason` attribute ([`dead_letter`]), and is deleted only once the
//!   DLQ has it.
//! - [`Outcome::Retry`]: a transient failure; it stays queued, is redelivered after its
//!   visibility timeout, and the queue's redrive policy moves it after `maxReceiveCount`.
//!
//! While a handler is still busy after `extend_after`, the batch's visibility timeout is
//! extended (and again every period), so a slow write is not handed to another poller.
//! [`store`] is the one BatchWriteItem implementation (unprocessed items retried, a batch
//! DynamoDB refuses split until the refused items are found).

pub mod dead_letter;
pub mod store;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageSystemAttributeName,
};
use aws_sdk_sqs::Client as Sqs;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::aws;

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Its effect is durable: delete it.
    Done,
    /// It can never succeed: dead-letter it with this reason, then delete it.
    DeadLetter(String),
    /// A transient failure (logged with this text): leave it queued for redelivery.
    Retry(String),
}

/// Handles received batches; one outcome per message, in the batch's order.
pub trait Handler: Send + Sync + 'static {
    fn handle<'a>(&'a self, batch: &'a [Message])
        -> impl Future<Output = Vec<Outcome>> + Send + 'a;
}

/// How one queue is polled.
#[derive(Debug, Clone)]
pub struct Polling {
    /// Long-poll wait, 0..=20 s.
    pub wait_secs: i32,
    /// Messages per receive, 1..=10.
    pub batch: i32,
    /// A batch still being handled after this long has its visibility extended.
    pub extend_after: Duration,
    /// The visibility timeout, in seconds, each extension sets.
    pub extend_to_secs: i32,
}

impl Default for Polling {
    fn default() -> Self {
        Self {
            wait_secs: 20,
            batch: 10,
            extend_after: Duration::from_secs(10),
            extend_to_secs: 30,
        }
    }
}

/// One queue, its DLQ and its handler; cheap to clone (one clone per poller).
pub struct Worker<H> {
    sqs: Sqs,
    queue_url: Arc<str>,
    dlq_url: Arc<str>,
    /// `pipeline` label of logs and metrics.
    pipeline: &'static str,
    /// Counter of outcomes, labelled `pipeline` and `outcome` = stored | dead_lettered | failed.
    counter: &'static str,
    polling: Polling,
    handler: Arc<H>,
}

impl<H> Clone for Worker<H> {
    fn clone(&self) -> Self {
        Self {
            sqs: self.sqs.clone(),
            queue_url: self.queue_url.clone(),
            dlq_url: self.dlq_url.clone(),
            pipeline: self.pipeline,
            counter: self.counter,
            polling: self.polling.clone(),
            handler: self.handler.clone(),
        }
    }
}

impl<H: Handler> Worker<H> {
    pub fn new(
        sqs: Sqs,
        queue_url: String,
        dlq_url: String,
        pipeline: &'static str,
        handler: H,
    ) -> Self {
        Self {
            sqs,
            queue_url: queue_url.into(),
            dlq_url: dlq_url.into(),
            pipeline,
            counter: "worker_messages_total",
            polling: Polling::default(),
            handler: Arc::new(handler),
        }
    }

    pub fn polling(mut self, polling: Polling) -> Self {
        self.polling = polling;
        self
    }

    /// Name of the outcome counter (default `worker_messages_total`).
    pub fn counted_as(mut self, counter: &'static str) -> Self {
        self.counter = counter;
        self
    }

    /// Starts `pollers` competing long polls on `tracker`, each until `shutdown`.
    pub fn spawn(&self, pollers: usize, tracker: &TaskTracker, shutdown: &CancellationToken) {
        for poller in 0..pollers {
            let worker = self.clone();
            let shutdown = shutdown.clone();
            tracker.spawn(async move { worker.poll_until(shutdown).await }.instrument(
                tracing::info_span!("worker", pipeline = self.pipeline, poller),
            ));
        }
        tracing::info!(pipeline = self.pipeline, pollers, "pipeline started");
    }

    /// Receives and handles batches until `shutdown`. A batch in hand is always finished
    /// (handled, deleted, dead-lettered) before shutdown is looked at again.
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
        self.sqs
            .receive_message()
            .queue_url(&*self.queue_url)
            .max_number_of_messages(self.polling.batch)
            .wait_time_seconds(self.polling.wait_secs)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map(|out| out.messages.unwrap_or_default())
            .map_err(|e| aws::describe(&e))
    }

    /// Handles one batch and settles every message according to its outcome.
    pub async fn process(&self, messages: Vec<Message>) {
        let started = Instant::now();
        metrics::histogram!("worker_batch_size", "pipeline" => self.pipeline)
            .record(messages.len() as f64);
        let outcomes = {
            let receipts: Vec<String> = messages
                .iter()
                .filter_map(|m| m.receipt_handle.clone())
                .collect();
            let handled = self.handler.handle(&messages);
            tokio::pin!(handled);
            let extender = self.keep_invisible(receipts);
            tokio::pin!(extender);
            tokio::select! {
                outcomes = &mut handled => outcomes,
                () = &mut extender => unreachable!("the extender never ends"),
            }
        };
        debug_assert_eq!(outcomes.len(), messages.len(), "one outcome per message");

        let mut done = Vec::new();
        let mut rejected = Vec::new();
        let mut failed = 0u64;
        for (message, outcome) in messages.iter().zip(outcomes) {
            let Some(receipt) = message.receipt_handle.as_deref() else {
                continue;
            };
            match outcome {
                Outcome::Done => done.push(receipt),
                Outcome::DeadLetter(reason) => rejected.push((message, reason)),
                Outcome::Retry(error) => {
                    failed += 1;
                    tracing::warn!(
                        sqs_message_id = message.message_id.as_deref().unwrap_or(""),
                        %error,
                        "not handled; the message stays queued for redelivery"
                    );
                }
            }
        }
        if !rejected.is_empty() {
            let sent = dead_letter::send(&self.sqs, &self.dlq_url, &rejected).await;
            let receipts: Vec<&str> = sent
                .iter()
                .filter_map(|&i| rejected[i].0.receipt_handle.as_deref())
                .collect();
            delete(&self.sqs, &self.queue_url, &receipts).await;
            metrics::counter!(self.counter, "pipeline" => self.pipeline, "outcome" => "dead_lettered")
                .increment(sent.len() as u64);
            failed += (rejected.len() - sent.len()) as u64;
        }
        delete(&self.sqs, &self.queue_url, &done).await;
        metrics::counter!(self.counter, "pipeline" => self.pipeline, "outcome" => "stored")
            .increment(done.len() as u64);
        if failed > 0 {
            metrics::counter!(self.counter, "pipeline" => self.pipeline, "outcome" => "failed")
                .increment(failed);
        }
        metrics::histogram!("worker_batch_seconds", "pipeline" => self.pipeline)
            .record(started.elapsed().as_secs_f64());
    }

    /// Every `extend_after`, pushes the visibility timeout of `receipts` to `extend_to_secs`.
    /// Runs until dropped (when the batch is handled).
    async fn keep_invisible(&self, receipts: Vec<String>) {
        loop {
            tokio::time::sleep(self.polling.extend_after).await;
            for chunk in receipts.chunks(10) {
                let entries = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        ChangeMessageVisibilityBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(r)
                            .visibility_timeout(self.polling.extend_to_secs)
                            .build()
                            .expect("entry is complete")
                    })
                    .collect();
                match self
                    .sqs
                    .change_message_visibility_batch()
                    .queue_url(&*self.queue_url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                {
                    Ok(out) => {
                        metrics::counter!("worker_visibility_extensions_total", "pipeline" => self.pipeline)
                            .increment((chunk.len() - out.failed.len()) as u64);
                    }
                    Err(e) => {
                        tracing::warn!(error = %aws::describe(&e), "cannot extend visibility; a slow batch may be redelivered (and redone idempotently)");
                    }
                }
            }
            tracing::info!(
                messages = receipts.len(),
                visibility_secs = self.polling.extend_to_secs,
                "batch still running: visibility extended"
            );
        }
    }
}

/// Deletes by receipt handle, ten at a time. A failed delete is harmless: the message is
/// redelivered and its (idempotent) effect repeats.
pub async fn delete(sqs: &Sqs, queue_url: &str, receipts: &[&str]) {
    for chunk in receipts.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, r)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(*r)
                    .build()
                    .expect("entry is complete")
            })
            .collect();
        match sqs
            .delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) if !out.failed.is_empty() => {
                tracing::warn!(
                    failed = out.failed.len(),
                    "some deletes failed; those messages will be redelivered"
                );
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %aws::describe(&e), "delete failed; messages will be redelivered")
            }
        }
    }
}

/// The SentTimestamp (ms) SQS attached to a message, or 0.
pub fn sent_timestamp_ms(message: &Message) -> u64 {
    message
        .attributes
        .as_ref()
        .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
