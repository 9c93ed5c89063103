//! The console's live event stream: one broker connection per gateway,
//! fanned out to every open browser.
//!
//! The [`Hub`] opens its `observer`-role connection (subscribed to
//! `notification/#` and `response/#`) when the first stream starts, turns
//! each publish into one JSON text `{"topic","payload","bytes","truncated","at"}`
//! and sends it on a bounded broadcast channel. Each `GET /console/events`
//! is a Server-Sent Events response reading its own receiver: a browser that
//! falls `event_buffer` events behind skips ahead and gets a `lagged` event
//! saying how many it missed, so a slow reader never grows the gateway's
//! memory. Streams end when the gateway shuts down.
//!
//! Authentication: `EventSource` cannot send headers, so the page first
//! calls `POST /console/ticket` with its key (the usual guard) and opens
//! `/console/events?ticket=...`; a ticket is random, single use and valid
//! for `ticket_ttl_secs`. A client that can send headers (curl) may present
//! its credential directly instead. Either way the caller needs `devices:read`;
//! without it the answer is 401 (or 403), like every guarded route.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use lambdaless_runtime::auth::{self, AuthError, Guard};
use lambdaless_runtime::error::ApiError;
use lambdaless_runtime::mqtt::{self, MqttConnection};
use rumqttc::QoS;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{broadcast, Semaphore};
use tokio_util::sync::CancellationToken;

use super::settings::ConsoleSettings;

/// Tickets kept at once; beyond it (after dropping expired ones) new ones are refused.
const MAX_TICKETS: usize = 10_000;

/// The shared broker subscription and its fan-out.
pub struct Hub {
    settings: ConsoleSettings,
    tx: broadcast::Sender<Arc<str>>,
    observer: OnceLock<MqttConnection>,
    clients: Arc<Semaphore>,
    stop: CancellationToken,
}

impl Hub {
    pub fn new(settings: ConsoleSettings, stop: CancellationToken) -> Self {
        let (tx, _) = broadcast::channel(settings.event_buffer);
        Self {
            clients: Arc::new(Semaphore::new(settings.max_event_clients)),
            settings,
            tx,
            observer: OnceLock::new(),
            stop,
        }
    }

    /// Whether the observer connection is up (false before the first stream).
    pub fn connected(&self) -> bool {
        self.observer
            .get()
            .is_some_and(MqttConnection::is_connected)
    }

    /// Opens the observer connection once; later calls return it.
    fn observer(&self) -> &MqttConnection {
        self.observer.get_or_init(|| {
            let subscriptions = vec![
                ("notification/#".to_owned(), QoS::AtMostOnce),
                ("response/#".to_owned(), QoS::AtMostOnce),
            ];
            let parts = mqtt::connect(&self.settings.mqtt, subscriptions, false, self.stop.clone());
            let tx = self.tx.clone();
            let max = self.settings.max_event_payload_bytes;
            let mut incoming = parts.incoming;
            tokio::spawn(async move {
                // Ends when the connection task stops (shutdown) and drops its sender.
                while let Some(publish) = incoming.recv().await {
                    metrics::counter!("console_events_total").increment(1);
                    // No receiver is not an error: nobody is watching right now.
                    let _ = tx.send(encode(&publish.topic, &publish.payload, max, now_ms()).into());
                }
            });
            parts.connection
        })
    }

    /// A new receiver, after making sure the broker connection exists.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.observer();
        self.tx.subscribe()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One event as the browser receives it. A JSON payload is embedded as JSON,
/// anything else as text; a payload over `max` bytes is cut to `max` and marked.
pub fn encode(topic: &str, payload: &[u8], max: usize, at: u64) -> String {
    let truncated = payload.len() > max;
    let value = if truncated {
        Value::String(String::from_utf8_lossy(&payload[..max]).into_owned())
    } else {
        serde_json::from_slice::<Value>(payload)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(payload).into_owned()))
    };
    json!({
        "topic": topic,
        "payload": value,
        "bytes": payload.len(),
        "truncated": truncated,
        "at": at,
    })
    .to_string()
}

/// Single-use, short-lived tickets that stand for a credential on the one
/// route a browser cannot send headers to.
pub struct Tickets {
    ttl: Duration,
    issued: Mutex<HashMap<String, Instant>>,
}

impl Tickets {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            issued: Mutex::new(HashMap::new()),
        }
    }

    /// A fresh random ticket, or `None` while too many are outstanding.
    pub fn issue(&self, now: Instant) -> Option<String> {
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        if issued.len() >= MAX_TICKETS {
            issued.retain(|_, expires| *expires > now);
            if issued.len() >= MAX_TICKETS {
                return None;
            }
        }
        let ticket = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        issued.insert(ticket.clone(), now + self.ttl);
        Some(ticket)
    }

    /// True once for a ticket issued less than the TTL ago.
    pub fn redeem(&self, ticket: &str, now: Instant) -> bool {
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        issued.remove(ticket).is_some_and(|expires| expires > now)
    }
}

/// What the event routes share.
#[derive(Clone)]
pub struct EventsState {
    pub hub: Arc<Hub>,
    pub tickets: Arc<Tickets>,
    /// The guard of `/console/events` (scope `devices:read`), applied by hand
    /// because a ticket may stand in for the credential.
    pub guard: Guard,
}

/// `POST /console/ticket` (behind the guard): a ticket for one event stream.
pub async fn ticket(State(state): State<EventsState>) -> Result<Response, ApiError> {
    let ticket = state
        .tickets
        .issue(Instant::now())
        .ok_or_else(|| ApiError::throttled(Duration::from_secs(1)))?;
    let body = Json(json!({
        "ticket": ticket,
        "expiresInSecs": state.tickets.ttl.as_secs(),
    }));
    Ok(([(header::CACHE_CONTROL, "no-store")], body).into_response())
}

#[derive(Deserialize)]
pub struct EventsQuery {
    ticket: Option<String>,
}

/// `GET /console/events`: the Server-Sent Events stream.
pub async fn events(
    State(state): State<EventsState>,
    Query(query): Query<EventsQuery>,
    parts: Parts,
) -> Response {
    let client = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip().to_string());
    let now = Instant::now();
    if auth::credential(&parts.headers).is_some() {
        if let Err(e) = state.guard.check(&parts.headers, client.as_deref()).await {
            return e.into_response();
        }
    } else {
        let Some(ticket) = query.ticket.filter(|t| !t.is_empty()) else {
            return AuthError::Missing.into_response();
        };
        if let Some(addr) = &client {
            if let Err(wait) = state.guard.limits.failures.check(addr, now) {
                return AuthError::Blocked(wait).into_response();
            }
        }
        if !state.tickets.redeem(&ticket, now) {
            if let Some(addr) = &client {
                let _ = state.guard.limits.failures.take(addr, now);
            }
            return ApiError::Unauthorized("invalid or expired ticket".to_owned()).into_response();
        }
    }
    let Ok(permit) = state.hub.clients.clone().try_acquire_owned() else {
        return ApiError::Unavailable("too many console event streams".to_owned()).into_response();
    };
    let hub = state.hub.clone();
    let receiver = hub.subscribe();
    let hello = Event::default()
        .event("hello")
        .data(json!({ "broker": hub.connected() }).to_string());
    let live = futures::stream::unfold(
        (receiver, permit, hub.clone()),
        |(mut rx, permit, hub)| async move {
            let event = match rx.recv().await {
                Ok(text) => Event::default().data(&*text),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    metrics::counter!("console_events_skipped_total").increment(missed);
                    Event::default()
                        .event("lagged")
                        .data(json!({ "missed": missed }).to_string())
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((Ok::<_, Infallible>(event), (rx, permit, hub)))
        },
    );
    // Every 5 s a `broker` event tells the page whether the broker connection
    // is up; a comment every 15 s keeps proxies from closing an idle stream.
    let status_hub = hub.clone();
    let status = futures::stream::unfold((), move |()| {
        let hub = status_hub.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let event = Event::default()
                .event("broker")
                .data(json!({ "broker": hub.connected() }).to_string());
            Some((Ok::<_, Infallible>(event), ()))
        }
    });
    let stream = futures::stream::iter([Ok(hello)])
        .chain(futures::stream::select(live, status))
        .take_until(hub.stop.clone().cancelled_owned());
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_embed_json_and_cut_long_payloads() {
        let e: Value =
            serde_json::from_str(&encode("response/query/t", br#"{"a":1}"#, 100, 7)).unwrap();
        assert_eq!(e["payload"]["a"], 1);
        assert_eq!(
            (e["truncated"].as_bool(), e["at"].as_u64()),
            (Some(false), Some(7))
        );
        let e: Value =
            serde_json::from_str(&encode("notification/x", b"<script>", 100, 0)).unwrap();
        assert_eq!(e["payload"], "<script>");
        let long = vec![b'x'; 1000];
        let e: Value = serde_json::from_str(&encode("notification/x", &long, 300, 0)).unwrap();
        assert_eq!(e["payload"].as_str().unwrap().len(), 300);
        assert_eq!(
            (e["bytes"].as_u64(), e["truncated"].as_bool()),
            (Some(1000), Some(true))
        );
    }

    #[test]
    fn tickets_work_once_and_expire() {
        let tickets = Tickets::new(Duration::from_secs(30));
        let now = Instant::now();
        let t = tickets.issue(now).unwrap();
        assert_eq!(t.len(), 64);
        assert!(tickets.redeem(&t, now));
        assert!(!tickets.redeem(&t, now), "single use");
        let t = tickets.issue(now).unwrap();
        assert!(
            !tickets.redeem(&t, now + Duration::from_secs(31)),
            "expired"
        );
        assert!(!tickets.redeem("guess", now));
    }
}
