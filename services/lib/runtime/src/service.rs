//! The start-up skeleton every service binary shares.
//!
//! - [`ServiceSettings`]: what a service's settings tell the skeleton (its
//!   name, its [`Common`] settings, its own checks).
//! - [`App`]: the one shape of every service. `App::build(settings)` binds
//!   every listener (port 0 allowed) and prepares clients; `App::local_addr()`
//!   is the health and metrics address; `App::run(shutdown)` serves until the
//!   token is cancelled, drains and returns. `main` and the tests call the
//!   same functions.
//! - [`Run`]: what a service adds to it — its own listeners and clients
//!   ([`Run::prepare`]) and its work ([`Run::run`]).
//! - [`Base`]: what every `App` holds — the bound health/metrics (or service)
//!   listener, the metrics handle, the shared settings — and the admin,
//!   readiness and drain plumbing written once.
//! - [`main`]: load and validate settings, answer the `healthcheck`
//!   subcommand, set up logs and metrics, then build and run the service until
//!   a shutdown signal. A bad setting exits with status 2 and one line naming
//!   it; a failure at run time is logged and exits with status 1.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::Router;
use lambdaless_contracts::Names;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, Readiness, ServerHandle};
use crate::aws::{self, AwsClients};
use crate::common::{self, Common};
use crate::config::ConfigError;
use crate::{healthcheck, shutdown, telemetry};

/// What a service's settings must tell the skeleton. The struct keeps
/// `#[serde(default, deny_unknown_fields)]` and holds its shared settings in
/// a `#[serde(skip)] common: Common` field, which [`common::load`] fills.
pub trait ServiceSettings: DeserializeOwned + Default + Send + 'static {
    /// The binary's name, used in logs and metrics labels.
    const SERVICE: &'static str;
    /// The shared settings (log, port, prefix, drain timeout).
    fn common_mut(&mut self) -> &mut Common;
    /// Called once after loading, before [`validate`](Self::validate):
    /// settings derived from others.
    fn loaded(&mut self) {}
    /// Semantic checks beyond types and beyond [`Common::validate`]; name
    /// the setting in the error.
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// What one service adds to the shared [`App`] shape.
pub trait Run: Sized {
    type Settings: ServiceSettings;
    /// Binds the service's own listeners (beside [`Base`]'s) and prepares its
    /// clients; does no network I/O to dependencies.
    fn prepare(settings: &Self::Settings) -> impl Future<Output = anyhow::Result<Self>>;
    /// Serves until `shutdown` is cancelled, finishes the work in hand within
    /// the drain timeout, and returns.
    fn run(self, started: Started<Self::Settings>) -> impl Future<Output = anyhow::Result<()>>;
}

/// What [`Run::run`] is handed.
pub struct Started<S> {
    pub base: Base,
    pub settings: S,
    /// Cancelled on SIGTERM/SIGINT (or by the test driving the service).
    pub shutdown: CancellationToken,
}

impl<S> Started<S> {
    pub fn into_parts(self) -> (Base, S, CancellationToken) {
        (self.base, self.settings, self.shutdown)
    }
}

/// A built, not yet running, service: every listener is bound.
pub struct App<R: Run> {
    base: Base,
    settings: R::Settings,
    own: R,
}

impl<R: Run> App<R> {
    /// Binds the health/metrics (or service) port, then the service's own
    /// listeners (port 0 picks a free one), and prepares its clients.
    pub async fn build(settings: R::Settings) -> anyhow::Result<Self> {
        let mut settings = settings;
        let base = Base::bind::<R::Settings>(settings.common_mut()).await?;
        let own = R::prepare(&settings).await?;
        Ok(Self {
            base,
            settings,
            own,
        })
    }

    /// Where `/healthz`, `/readyz` and `/metrics` answer.
    pub fn local_addr(&self) -> SocketAddr {
        self.base.local_addr()
    }

    /// The service's own part (its other listeners' addresses, for tests).
    pub fn service(&self) -> &R {
        &self.own
    }

    /// Serves until `shutdown` is cancelled, drains and returns.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let started = Started {
            base: self.base,
            settings: self.settings,
            shutdown,
        };
        self.own.run(started).await
    }
}

/// When the process started (the first call, or [`main`]).
fn started() -> Instant {
    static STARTED: OnceLock<Instant> = OnceLock::new();
    *STARTED.get_or_init(Instant::now)
}

/// The part of every `App` that is the same in all of them.
pub struct Base {
    service: &'static str,
    /// The settings every service shares.
    pub common: Common,
    listener: TcpListener,
    metrics: PrometheusHandle,
    /// SQS and DynamoDB, for every service that names queues or tables.
    aws: Option<AwsClients>,
}

impl Base {
    /// Binds the health/metrics (or service) port, installs the metrics
    /// recorder and prepares the AWS clients (no network I/O).
    pub async fn bind<S: ServiceSettings>(common: &Common) -> anyhow::Result<Self> {
        let listener = admin::bind(common.port).await?;
        let aws = match common.keys.prefix {
            true => Some(aws::load().await),
            false => None,
        };
        Ok(Self {
            aws,
            service: S::SERVICE,
            common: common.clone(),
            listener,
            metrics: telemetry::init_metrics(S::SERVICE),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// The SQS and DynamoDB clients.
    ///
    /// # Panics
    /// In a service that takes no `prefix` (the broker): it has no AWS clients.
    pub fn aws(&self) -> &AwsClients {
        self.aws
            .as_ref()
            .expect("only services that take a prefix use AWS")
    }

    /// The queue and table names under the configured prefix.
    pub fn names(&self) -> Result<Names, ConfigError> {
        self.common.names()
    }

    /// `/healthz`, `/readyz` over `readiness`, and `/metrics`.
    pub fn admin_router(&self, readiness: Readiness) -> Router {
        admin::router(readiness, self.metrics.clone())
    }

    /// Serves the admin routes on the admin port in the background (the
    /// workers and the broker) and logs that the service is up.
    pub fn serve_admin(self, readiness: Readiness) -> anyhow::Result<Running> {
        let router = self.admin_router(readiness);
        let admin = ServerHandle::spawn(self.listener, router)?;
        tracing::info!(
            startup_ms = elapsed_ms(),
            addr = %admin.local_addr(),
            "{} serving health and metrics",
            self.service
        );
        Ok(Running {
            admin,
            drain_timeout: self.common.drain_timeout(),
        })
    }

    /// Serves `router` (the HTTP services' own routes, the admin routes
    /// merged in) until `shutdown`, then lets in-flight requests finish.
    pub async fn serve(self, router: Router, shutdown: CancellationToken) -> anyhow::Result<()> {
        let addr = self.local_addr();
        tracing::info!(startup_ms = elapsed_ms(), %addr, "{} listening", self.service);
        admin::serve(self.listener, router, shutdown).await?;
        Ok(())
    }
}

/// A worker's running admin server and its drain timeout.
pub struct Running {
    admin: ServerHandle,
    drain_timeout: Duration,
}

impl Running {
    pub fn drain_timeout(&self) -> Duration {
        self.drain_timeout
    }

    /// Waits for `tracker`'s tasks, at most the drain timeout; `false` when
    /// work was still running at its end.
    pub async fn drain(&self, tracker: &TaskTracker) -> bool {
        shutdown::drain(tracker, self.drain_timeout).await
    }

    /// Stops the admin server once its in-flight requests finish.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.admin.shutdown().await?;
        Ok(())
    }
}

/// Milliseconds since the process started, for the start-up time a service
/// logs once it serves.
pub fn elapsed_ms() -> u64 {
    started().elapsed().as_millis() as u64
}

const USAGE: &str = "usage: {bin} [healthcheck]\n\n  (no argument)  run the service\n  healthcheck    exit 0 if the running service on this host reports ready\n\nSettings: built-in defaults, then the TOML file named by LAMBDALESS_CONFIG, then LAMBDALESS_* variables.";

/// Loads the settings and checks them: the shared ones, then the service's.
fn settings<S: ServiceSettings>() -> Result<S, ConfigError> {
    let mut settings = common::load::<S>()?;
    settings.common_mut().validate()?;
    settings.validate()?;
    Ok(settings)
}

/// Runs the service binary whose own part is `R`.
pub fn main<R: Run>() -> ExitCode {
    let service = <R::Settings as ServiceSettings>::SERVICE;
    started();
    let arg = std::env::args().nth(1);
    if matches!(arg.as_deref(), Some("-h" | "--help" | "help")) {
        println!("{}", USAGE.replace("{bin}", service));
        return ExitCode::SUCCESS;
    }
    if matches!(arg.as_deref(), Some("-V" | "--version")) {
        println!("{service} {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let mut settings = match settings::<R::Settings>() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{service}: {e}");
            return ExitCode::from(2);
        }
    };
    match arg.as_deref() {
        None => {}
        Some("healthcheck") => {
            return match healthcheck::probe(settings.common_mut().port, "/readyz") {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{service}: not ready: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(other) => {
            eprintln!(
                "{service}: unknown argument {other:?}\n{}",
                USAGE.replace("{bin}", service)
            );
            return ExitCode::from(2);
        }
    }

    telemetry::init_logging(&settings.common_mut().log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{service}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async move {
        let shutdown = shutdown::on_signal();
        App::<R>::build(settings).await?.run(shutdown).await
    });
    match outcome {
        Ok(()) => {
            tracing::info!(service, "stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(service, error = format!("{e:#}"), "service failed");
            ExitCode::FAILURE
        }
    }
}
