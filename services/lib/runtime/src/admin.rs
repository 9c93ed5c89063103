//! The operational HTTP surface every service exposes: `/healthz` (the process
//! is alive), `/readyz` (every dependency answers) and `/metrics` (Prometheus).
//! Services with their own HTTP port merge [`router`] into theirs; the others
//! serve it alone on the admin port.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One named dependency probe (`sqs`, `dynamodb`, `broker`...).
#[derive(Clone)]
pub struct ReadinessCheck {
    name: &'static str,
    probe: Arc<dyn Fn() -> CheckFuture + Send + Sync>,
}

impl ReadinessCheck {
    pub fn new<F, Fut>(name: &'static str, probe: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            name,
            probe: Arc::new(move || Box::pin(probe())),
        }
    }
}

/// The set of dependency probes behind `/readyz`. `/readyz` answers from
/// the last evaluation while it is younger than [`READINESS_TTL`], so a
/// flood of probes on a public port costs at most one round of dependency
/// calls per TTL (concurrent callers wait for the one evaluation in flight).
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<ReadinessCheck>,
    last: Arc<tokio::sync::Mutex<Option<(Instant, ReadinessReport)>>>,
}

/// How long one readiness evaluation is served.
pub const READINESS_TTL: Duration = Duration::from_secs(1);

/// Result of one readiness evaluation.
#[derive(Debug, Clone)]
pub struct ReadinessReport {
    pub ready: bool,
    pub checks: Vec<(&'static str, Result<(), String>)>,
}

impl Readiness {
    pub fn with(mut self, check: ReadinessCheck) -> Self {
        self.checks.push(check);
        self
    }

    /// The last evaluation if younger than [`READINESS_TTL`], else a fresh one.
    pub async fn cached(&self) -> ReadinessReport {
        let mut last = self.last.lock().await;
        if let Some((at, report)) = last.as_ref() {
            if at.elapsed() < READINESS_TTL {
                return report.clone();
            }
        }
        let report = self.evaluate().await;
        *last = Some((Instant::now(), report.clone()));
        report
    }

    /// Runs every probe concurrently, each bounded by a short timeout.
    pub async fn evaluate(&self) -> ReadinessReport {
        metrics::counter!("readiness_evaluations_total").increment(1);
        let probes = self.checks.iter().map(|c| {
            let fut = (c.probe)();
            async move {
                let outcome = match tokio::time::timeout(Duration::from_secs(2), fut).await {
                    Ok(r) => r,
                    Err(_) => Err("timed out after 2 s".to_owned()),
                };
                (c.name, outcome)
            }
        });
        let checks = futures::future::join_all(probes).await;
        let ready = checks.iter().all(|(_, r)| r.is_ok());
        ReadinessReport { ready, checks }
    }
}

#[derive(Clone)]
struct AdminState {
    readiness: Readiness,
    metrics: PrometheusHandle,
}

/// `/healthz`, `/readyz`, `/metrics`.
pub fn router(readiness: Readiness, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({"status": "alive"})) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(AdminState { readiness, metrics })
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let report = state.readiness.cached().await;
    let checks: serde_json::Map<String, serde_json::Value> = report
        .checks
        .iter()
        .map(|(name, r)| {
            let v = match r {
                Ok(()) => json!("ok"),
                Err(e) => json!(e),
            };
            ((*name).to_owned(), v)
        })
        .collect();
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body =
        json!({"status": if report.ready { "ready" } else { "not ready" }, "checks": checks});
    (status, Json(body)).into_response()
}

async fn render_metrics(State(state): State<AdminState>) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Records `http_requests_total` and `http_request_duration_seconds` labelled
/// by the matched route (never the raw URI, whose cardinality is unbounded).
pub async fn track_http(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets
/// in-flight requests finish. Handlers see the peer address as
/// `ConnectInfo<SocketAddr>` (the authorizer counts failures per address).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
}

/// The admin (or service) HTTP server running in the background.
pub struct ServerHandle {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    addr: std::net::SocketAddr,
}

impl ServerHandle {
    /// Starts serving `router` on `listener`.
    pub fn spawn(listener: TcpListener, router: Router) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(listener, router, stop.clone()));
        Ok(Self { stop, task, addr })
    }

    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Stops accepting, lets in-flight requests finish, and returns.
    pub async fn shutdown(self) -> std::io::Result<()> {
        self.stop.cancel();
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

/// Binds `0.0.0.0:port` (port 0 picks a free one), naming the port on failure.
pub async fn bind(port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind(("0.0.0.0", port))
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot bind port {port}: {e}")))
}
