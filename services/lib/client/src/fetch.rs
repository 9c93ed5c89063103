//! The request/reply fetch client of seed 1, for any Rust program (the CLI and
//! `api-gateway` use it).
//!
//! [`FetchClient::fetch`] registers a waiter under a fresh nonce, makes sure
//! one poller long-polls the user's reply queue, sends the request to
//! `fetch-requests`, and waits for the reply with that nonce. One poller per
//! reply queue serves every fetch in flight on it and dispatches replies by
//! nonce. A reply whose nonce belongs to another client (another process on
//! the same queue) is made visible again at once; a reply to a fetch of this
//! client that already timed out is deleted. Nonces are
//! `<client token>-<counter>` strings, so a client recognises its own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use aws_sdk_sqs::Client as Sqs;
use lambdaless_contracts::{names, Names};
use lambdaless_runtime::aws::describe;
use serde_json::{Map, Value};
use tokio::sync::oneshot;

/// How long the nonce of a timed-out fetch is remembered, so its late reply
/// is recognised and deleted; the poller keeps polling while any is remembered.
const STALE_MEMORY: Duration = Duration::from_secs(120);

/// Why a fetch gave no document.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no reply for {fetch_id:?} within {after:?}")]
    Timeout { fetch_id: String, after: Duration },
    #[error("document {0:?} not found")]
    NotFound(String),
    #[error("reply queue of user {0:?} does not exist (create it with `lambdaless provision --user ID`)")]
    NoReplyQueue(String),
    #[error("invalid user id {0:?}: letters, digits, '-' and '_' only")]
    InvalidUser(String),
    #[error("the responder answered with an error: {0}")]
    Remote(String),
    #[error("SQS: {0}")]
    Sqs(String),
}

type Reply = Map<String, Value>;

/// A fetch client; cheap to clone, share one per process.
#[derive(Clone)]
pub struct FetchClient {
    inner: Arc<Inner>,
}

struct Inner {
    sqs: Sqs,
    names: Names,
    /// Identifies this client's nonces.
    token: String,
    counter: AtomicU64,
    requests_url: tokio::sync::OnceCell<String>,
    queues: Mutex<HashMap<String, Arc<ReplyQueue>>>,
}

/// One user's reply queue and the fetches waiting on it.
struct ReplyQueue {
    url: String,
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    /// Waiters by nonce.
    waiters: HashMap<String, oneshot::Sender<Reply>>,
    /// Nonces of timed-out fetches and when they timed out.
    stale: HashMap<String, Instant>,
    polling: bool,
}

impl QueueState {
    fn prune(&mut self) {
        self.stale.retain(|_, at| at.elapsed() < STALE_MEMORY);
    }
}

impl FetchClient {
    pub fn new(sqs: Sqs, names: Names) -> Self {
        Self {
            inner: Arc::new(Inner {
                sqs,
                names,
                token: uuid::Uuid::new_v4().simple().to_string(),
                counter: AtomicU64::new(0),
                requests_url: tokio::sync::OnceCell::new(),
                queues: Mutex::default(),
            }),
        }
    }

    /// Fetches document `fetch_id` through `user_id`'s reply queue.
    pub async fn fetch(
        &self,
        fetch_id: &str,
        user_id: &str,
        timeout: Duration,
    ) -> Result<Map<String, Value>, FetchError> {
        let queue = self.reply_queue(user_id).await?;
        let requests_url = self.requests_url().await?;
        let nonce = format!(
            "{}-{}",
            self.inner.token,
            self.inner.counter.fetch_add(1, Ordering::Relaxed)
        );
        let (tx, rx) = oneshot::channel();
        let start_poller = {
            let mut state = queue.state.lock().expect("queue lock");
            state.waiters.insert(nonce.clone(), tx);
            !std::mem::replace(&mut state.polling, true)
        };
        if start_poller {
            tokio::spawn(poll(
                self.inner.sqs.clone(),
                queue.clone(),
                self.inner.token.clone(),
            ));
        }
        let request = lambdaless_contracts::fetch::request_body(fetch_id, &queue.url, &nonce);
        if let Err(e) = self
            .inner
            .sqs
            .send_message()
            .queue_url(requests_url)
            .message_body(request)
            .send()
            .await
        {
            queue
                .state
                .lock()
                .expect("queue lock")
                .waiters
                .remove(&nonce);
            return Err(FetchError::Sqs(describe(&e)));
        }
        let reply = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => reply,
            _ => {
                let mut state = queue.state.lock().expect("queue lock");
                state.waiters.remove(&nonce);
                state.stale.insert(nonce, Instant::now());
                return Err(FetchError::Timeout {
                    fetch_id: fetch_id.to_owned(),
                    after: timeout,
                });
            }
        };
        if let Some(Value::Object(data)) = reply.get("data") {
            return Ok(data.clone());
        }
        match reply.get("error").and_then(Value::as_str) {
            Some(lambdaless_contracts::fetch::NOT_FOUND) => {
                Err(FetchError::NotFound(fetch_id.to_owned()))
            }
            Some(other) => Err(FetchError::Remote(other.to_owned())),
            None => Err(FetchError::Remote(
                "reply has neither data nor error".into(),
            )),
        }
    }

    async fn requests_url(&self) -> Result<&String, FetchError> {
        self.inner
            .requests_url
            .get_or_try_init(|| async {
                let name = self.inner.names.name(names::FETCH_REQUESTS);
                self.inner
                    .sqs
                    .get_queue_url()
                    .queue_name(&name)
                    .send()
                    .await
                    .map_err(|e| FetchError::Sqs(describe(&e)))?
                    .queue_url
                    .ok_or_else(|| FetchError::Sqs(format!("no URL for queue {name}")))
            })
            .await
    }

    async fn reply_queue(&self, user_id: &str) -> Result<Arc<ReplyQueue>, FetchError> {
        if user_id.is_empty()
            || user_id.len() > 64
            || !user_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(FetchError::InvalidUser(user_id.to_owned()));
        }
        if let Some(q) = self.inner.queues.lock().expect("lock").get(user_id) {
            return Ok(q.clone());
        }
        let name = self.inner.names.user_queue(user_id);
        let url = match self
            .inner
            .sqs
            .get_queue_url()
            .queue_name(&name)
            .send()
            .await
        {
            Ok(out) => out.queue_url.unwrap_or_default(),
            Err(e)
                if e.as_service_error()
                    .and_then(aws_sdk_sqs::error::ProvideErrorMetadata::code)
                    .is_some_and(|c| {
                        c.contains("NonExistentQueue") || c.contains("QueueDoesNotExist")
                    }) =>
            {
                return Err(FetchError::NoReplyQueue(user_id.to_owned()))
            }
            Err(e) => return Err(FetchError::Sqs(describe(&e))),
        };
        let mut queues = self.inner.queues.lock().expect("lock");
        Ok(queues
            .entry(user_id.to_owned())
            .or_insert_with(|| {
                Arc::new(ReplyQueue {
                    url,
                    state: Mutex::default(),
                })
            })
            .clone())
    }
}

/// What to do with one received reply.
#[derive(Debug, PartialEq, Eq)]
enum Disposition {
    /// Hand to the waiter with this nonce, then delete.
    Deliver(String),
    /// Ours but no longer awaited: delete.
    Stale,
    /// Another client's: make it visible again at once.
    Release,
    /// Not a reply at all: leave it alone.
    Ignore,
}

fn classify(body: &str, token: &str, state: &QueueState) -> (Disposition, Option<Reply>) {
    let Ok(Value::Object(reply)) = serde_json::from_str::<Value>(body) else {
        return (Disposition::Ignore, None);
    };
    let key = match reply.get("nonce") {
        Some(Value::String(s)) => s.clone(),
        Some(n @ Value::Number(_)) => n.to_string(),
        _ => return (Disposition::Ignore, None),
    };
    if state.waiters.contains_key(&key) {
        (Disposition::Deliver(key), Some(reply))
    } else if state.stale.contains_key(&key)
        || key
            .strip_prefix(token)
            .is_some_and(|rest| rest.starts_with('-'))
    {
        (Disposition::Stale, None)
    } else {
        (Disposition::Release, None)
    }
}

/// The single poller of one reply queue; runs while fetches wait on it or
/// late replies of timed-out ones may still come.
async fn poll(sqs: Sqs, queue: Arc<ReplyQueue>, token: String) {
    let mut backoff = Duration::from_millis(100);
    loop {
        {
            let mut state = queue.state.lock().expect("queue lock");
            state.prune();
            if state.waiters.is_empty() && state.stale.is_empty() {
                state.polling = false;
                return;
            }
        }
        let received = sqs
            .receive_message()
            .queue_url(&queue.url)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .wait_time_seconds(if queue_has_waiters(&queue) { 20 } else { 2 })
            .send()
            .await;
        let messages: Vec<Message> = match received {
            Ok(out) => {
                backoff = Duration::from_millis(100);
                out.messages.unwrap_or_default()
            }
            Err(e) => {
                tracing::warn!(error = %describe(&e), "reply queue receive failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        for m in messages {
            let Some(receipt) = m.receipt_handle.as_deref() else {
                continue;
            };
            let body = m.body.as_deref().unwrap_or_default();
            let (what, reply) = {
                let state = queue.state.lock().expect("queue lock");
                classify(body, &token, &state)
            };
            match what {
                Disposition::Deliver(nonce) => {
                    let _ = sqs
                        .delete_message()
                        .queue_url(&queue.url)
                        .receipt_handle(receipt)
                        .send()
                        .await;
                    let waiter = queue
                        .state
                        .lock()
                        .expect("queue lock")
                        .waiters
                        .remove(&nonce);
                    if let (Some(tx), Some(reply)) = (waiter, reply) {
                        let _ = tx.send(reply);
                    }
                }
                Disposition::Stale => {
                    tracing::debug!("deleting the late reply of a timed-out fetch");
                    let _ = sqs
                        .delete_message()
                        .queue_url(&queue.url)
                        .receipt_handle(receipt)
                        .send()
                        .await;
                }
                Disposition::Release => {
                    let _ = sqs
                        .change_message_visibility()
                        .queue_url(&queue.url)
                        .receipt_handle(receipt)
                        .visibility_timeout(release_delay(receive_count(&m)))
                        .send()
                        .await;
                }
                Disposition::Ignore => {}
            }
        }
    }
}

fn queue_has_waiters(queue: &ReplyQueue) -> bool {
    !queue.state.lock().expect("queue lock").waiters.is_empty()
}

fn receive_count(m: &Message) -> u32 {
    m.attributes
        .as_ref()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// Seconds before another client's reply shows again: at once for the first
/// ten receives (its owner is likely polling the same queue and may just have
/// lost the race), then a little longer, so a reply whose owner is gone does
/// not keep this poller spinning on it. Kept short: while a reply is hidden its
/// owner cannot see it either, and with two busy pollers on one queue a live
/// owner's reply can lose the race many times (30 s steps made twenty
/// concurrent fetches exceed 180 s on a loaded emulator).
fn release_delay(receive_count: u32) -> i32 {
    if receive_count <= 10 {
        0
    } else {
        (receive_count - 10).min(5) as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_routed_by_nonce() {
        let mut state = QueueState::default();
        let (tx, _rx) = oneshot::channel();
        state.waiters.insert("tok-1".into(), tx);
        state.stale.insert("tok-0".into(), Instant::now());
        let d = |body: &str| classify(body, "tok", &state).0;
        assert_eq!(
            d(r#"{"nonce":"tok-1","data":{}}"#),
            Disposition::Deliver("tok-1".into())
        );
        assert_eq!(d(r#"{"nonce":"tok-0","data":{}}"#), Disposition::Stale);
        assert_eq!(d(r#"{"nonce":"tok-9","data":{}}"#), Disposition::Stale);
        assert_eq!(d(r#"{"nonce":"other-1","data":{}}"#), Disposition::Release);
        assert_eq!(d(r#"{"nonce":7,"data":{}}"#), Disposition::Release);
        assert_eq!(d("not json"), Disposition::Ignore);
        assert_eq!(d(r#"{"data":{}}"#), Disposition::Ignore);
    }

    #[test]
    fn orphaned_replies_are_released_ever_more_slowly() {
        assert_eq!(release_delay(1), 0);
        assert_eq!(release_delay(10), 0);
        assert_eq!(release_delay(11), 1);
        assert_eq!(release_delay(13), 3);
        assert_eq!(release_delay(500), 5);
    }
}
