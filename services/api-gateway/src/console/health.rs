//! `GET /console/health`: each service's `/readyz` and a few headline
//! metrics, polled by the gateway itself (the browser only ever talks to the
//! gateway's origin, and the workers' admin ports are not published outside
//! Compose). One poll of every target serves all browsers for
//! [`REFRESH`]; each call is bounded by [`PROBE_TIMEOUT`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use tokio::sync::Mutex;

/// How long one round of polls is served to every browser.
pub const REFRESH: Duration = Duration::from_secs(2);
/// Longest wait for one service's answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The metrics shown per service, when the service has them (summed over labels).
pub const HEADLINE: [&str; 11] = [
    "http_requests_total",
    "broker_connections",
    "broker_publishes_received_total",
    "mqtt_api_requests_total",
    "worker_batch_size_sum",
    "fetch_responder_requests_total",
    "streamer_items_streamed_total",
    "streamer_streams_active",
    "dynamodb_calls_total",
    "console_events_total",
    "auth_refused_total",
];

#[derive(Clone)]
pub struct HealthState {
    /// (name, base URL) of every service polled.
    pub targets: Arc<Vec<(String, String)>>,
    last: Arc<Mutex<Option<(Instant, Value)>>>,
}

impl HealthState {
    /// `targets` as configured; `self` becomes this gateway's own port.
    pub fn new(targets: Vec<(String, String)>, own_port: u16) -> Self {
        let targets = targets
            .into_iter()
            .map(|(name, url)| {
                let url = if url == "self" {
                    format!("http://127.0.0.1:{own_port}")
                } else {
                    url
                };
                (name, url)
            })
            .collect();
        Self {
            targets: Arc::new(targets),
            last: Arc::default(),
        }
    }
}

pub async fn health(State(state): State<HealthState>) -> Response {
    let mut last = state.last.lock().await;
    let fresh = last.as_ref().filter(|(at, _)| at.elapsed() < REFRESH);
    let body = match fresh {
        Some((_, body)) => body.clone(),
        None => {
            let polls = state.targets.iter().map(|(name, url)| poll(name, url));
            let services = futures::future::join_all(polls).await;
            let body = json!({ "services": services });
            *last = Some((Instant::now(), body.clone()));
            body
        }
    };
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

async fn get(url: &str, path: &str) -> Result<(u16, String), String> {
    let call = async {
        let response = lambdaless_client::stream::request(url, "GET", path, &[])
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status;
        let text = response.text().await.map_err(|e| e.to_string())?;
        Ok((status, text))
    };
    tokio::time::timeout(PROBE_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| Err(format!("no answer in {} s", PROBE_TIMEOUT.as_secs())))
}

async fn poll(name: &str, url: &str) -> Value {
    let (ready, metrics) = futures::future::join(get(url, "/readyz"), get(url, "/metrics")).await;
    let (state, checks) = match ready {
        Ok((200, body)) => ("ready", checks_of(&body)),
        Ok((status, body)) => {
            let checks = checks_of(&body);
            (if status == 503 { "not ready" } else { "error" }, checks)
        }
        Err(e) => ("unreachable", json!({ "error": e })),
    };
    let metrics = match metrics {
        Ok((200, text)) => headline(&text),
        _ => Map::new(),
    };
    json!({ "name": name, "state": state, "checks": checks, "metrics": metrics })
}

fn checks_of(body: &str) -> Value {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("checks").cloned())
        .unwrap_or(Value::Null)
}

/// Sums each [`HEADLINE`] metric over its label sets in a Prometheus text page.
pub fn headline(text: &str) -> Map<String, Value> {
    let mut sums: Vec<Option<f64>> = vec![None; HEADLINE.len()];
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let Some(i) = HEADLINE.iter().position(|m| *m == &line[..name_end]) else {
            continue;
        };
        let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        *sums[i].get_or_insert(0.0) += value;
    }
    HEADLINE
        .iter()
        .zip(sums)
        .filter_map(|(name, sum)| sum.map(|s| ((*name).to_owned(), json!(s))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headline_metrics_are_summed_over_labels() {
        let text = "# TYPE http_requests_total counter\n\
            http_requests_total{route=\"/users\",status=\"202\"} 3\n\
            http_requests_total{route=\"/graphql\",status=\"200\"} 4\n\
            http_requests_total_other 9\n\
            broker_connections 2\n";
        let m = headline(text);
        assert_eq!(m["http_requests_total"], 7.0);
        assert_eq!(m["broker_connections"], 2.0);
        assert_eq!(m.len(), 2);
    }
}
