//! The `main` of every service binary: load and validate settings, answer the
//! `healthcheck` subcommand, set up logs and metrics, then run the service
//! until a shutdown signal. A bad setting exits with status 2 and one line
//! naming it; a failure at run time is logged and exits with status 1.

use std::future::Future;
use std::process::ExitCode;
use std::time::Instant;

use metrics_exporter_prometheus::PrometheusHandle;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::config::{self, ConfigError, LogSettings};
use crate::{healthcheck, shutdown, telemetry};

/// What a service's settings must tell the shared `main`.
pub trait ServiceSettings: DeserializeOwned + Send + 'static {
    /// The binary's name, used in logs and metrics labels.
    const SERVICE: &'static str;
    fn log(&self) -> &LogSettings;
    /// The port serving `/readyz` (the service port, or the admin port).
    fn health_port(&self) -> u16;
    /// Semantic checks beyond types; name the setting in the error.
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// Handed to a running service.
#[derive(Clone)]
pub struct ServiceContext {
    /// Cancelled on SIGTERM/SIGINT.
    pub shutdown: CancellationToken,
    /// Renders this process's metrics for `/metrics`.
    pub metrics: PrometheusHandle,
    /// Process start, for the start-up time the service logs once ready.
    pub started: Instant,
}

impl ServiceContext {
    /// A context for tests and embedders that drive shutdown themselves.
    pub fn new(service: &'static str, shutdown: CancellationToken) -> Self {
        Self {
            shutdown,
            metrics: telemetry::init_metrics(service),
            started: Instant::now(),
        }
    }

    /// Milliseconds since the process started.
    pub fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

const USAGE: &str = "usage: {bin} [healthcheck]\n\n  (no argument)  run the service\n  healthcheck    exit 0 if the running service on this host reports ready\n\nSettings: built-in defaults, then the TOML file named by LAMBDALESS_CONFIG, then LAMBDALESS_* variables.";

/// Runs a service binary. `run` builds and runs the service until `ctx.shutdown`.
pub fn main<S, F, Fut>(run: F) -> ExitCode
where
    S: ServiceSettings,
    F: FnOnce(S, ServiceContext) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let started = Instant::now();
    let arg = std::env::args().nth(1);
    if matches!(arg.as_deref(), Some("-h" | "--help" | "help")) {
        println!("{}", USAGE.replace("{bin}", S::SERVICE));
        return ExitCode::SUCCESS;
    }
    if matches!(arg.as_deref(), Some("-V" | "--version")) {
        println!("{} {}", S::SERVICE, env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let settings = match config::load::<S>().and_then(|s| s.validate().map(|()| s)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}: {e}", S::SERVICE);
            return ExitCode::from(2);
        }
    };
    match arg.as_deref() {
        None => {}
        Some("healthcheck") => {
            return match healthcheck::probe(settings.health_port(), "/readyz") {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{}: not ready: {e}", S::SERVICE);
                    ExitCode::FAILURE
                }
            };
        }
        Some(other) => {
            eprintln!(
                "{}: unknown argument {other:?}\n{}",
                S::SERVICE,
                USAGE.replace("{bin}", S::SERVICE)
            );
            return ExitCode::from(2);
        }
    }

    telemetry::init_logging(settings.log());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{}: cannot start the async runtime: {e}", S::SERVICE);
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async move {
        let ctx = ServiceContext {
            shutdown: shutdown::on_signal(),
            metrics: telemetry::init_metrics(S::SERVICE),
            started,
        };
        run(settings, ctx).await
    });
    match outcome {
        Ok(()) => {
            tracing::info!(service = S::SERVICE, "stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(
                service = S::SERVICE,
                error = format!("{e:#}"),
                "service failed"
            );
            ExitCode::FAILURE
        }
    }
}
