//! `api-gateway`: the HTTP front door (seed 4 users API, seed 3 GraphQL orders
//! API, seed 1 fetch bridge) with authentication, throttling and OpenAPI.
//!
//! This revision serves health and metrics on the service port and checks its
//! dependencies; the routes arrive with their issues.

pub mod fetch;

use std::net::SocketAddr;

use lambdaless_contracts::{names, Names};
use lambdaless_runtime::aws::{self, AwsClients};
use lambdaless_runtime::config::{AuthSettings, ConfigError, LogSettings};
use lambdaless_runtime::{admin, Readiness, ServiceContext, ServiceSettings};
use serde::Deserialize;
use tokio::net::TcpListener;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub log: LogSettings,
    /// The service port; also serves `/healthz`, `/readyz`, `/metrics`.
    pub port: u16,
    /// Prepended to every queue and table name.
    pub prefix: String,
    pub auth: AuthSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            log: LogSettings::default(),
            port: 8080,
            prefix: String::new(),
            auth: AuthSettings::default(),
        }
    }
}

impl ServiceSettings for Settings {
    const SERVICE: &'static str = "api-gateway";

    fn log(&self) -> &LogSettings {
        &self.log
    }

    fn health_port(&self) -> u16 {
        self.port
    }

    fn validate(&self) -> Result<(), ConfigError> {
        lambdaless_runtime::config::names(&self.prefix).map(|_| ())
    }
}

pub struct App {
    ctx: ServiceContext,
    listener: TcpListener,
    aws: AwsClients,
    names: Names,
}

impl App {
    /// Binds the service port (0 picks a free one).
    pub async fn build(settings: Settings, ctx: ServiceContext) -> anyhow::Result<Self> {
        let listener = admin::bind(settings.port).await?;
        let names = lambdaless_runtime::config::names(&settings.prefix)?;
        let aws = aws::load().await;
        Ok(Self {
            ctx,
            listener,
            aws,
            names,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves until `ctx.shutdown`, then lets in-flight requests finish.
    pub async fn run(self) -> anyhow::Result<()> {
        let readiness = Readiness::default()
            .with(aws::sqs_check(
                self.aws.sqs.clone(),
                self.names.name(names::USERS_CREATE),
            ))
            .with(aws::dynamodb_check(
                self.aws.dynamodb.clone(),
                self.names.name(names::USERS),
            ));
        let router = admin::router(readiness, self.ctx.metrics.clone())
            .layer(axum::middleware::from_fn(admin::track_http));
        let addr = self.local_addr();
        tracing::info!(startup_ms = self.ctx.elapsed_ms(), %addr, "api-gateway listening");
        admin::serve(self.listener, router, self.ctx.shutdown.clone()).await?;
        Ok(())
    }
}
