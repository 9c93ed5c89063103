//! `fetch-responder`: answers seed 1's fetch requests. It reads `fetch-requests`,
//! looks the document up in `documents`, and replies on the requester's own
//! `user-queue-*` queue.
//!
//! Several pollers long-poll `fetch-requests` (see [`responder`]); requests
//! that are malformed or name a reply queue that is not ours are dead-lettered
//! with the reason, never answered ([`request`]).

/// The request and reply wire types live in `contracts`, shared with the client.
pub use lambdaless_contracts::fetch as request;
pub mod responder;

use std::net::SocketAddr;
use std::time::Duration;

use lambdaless_contracts::{names, Names};
use lambdaless_runtime::aws::{self, AwsClients};
use lambdaless_runtime::config::{ConfigError, LogSettings};
use lambdaless_runtime::{admin, shutdown, Readiness, ServiceContext, ServiceSettings};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub log: LogSettings,
    /// Serves `/healthz`, `/readyz`, `/metrics`.
    pub admin_port: u16,
    /// Prepended to every queue and table name.
    pub prefix: String,
    /// On SIGTERM, how long requests in hand may take to finish.
    pub drain_timeout_secs: u64,
    /// Concurrent long polls on `fetch-requests` (each handles up to 10 at once).
    pub pollers: usize,
    /// Long-poll wait of each receive (0..=20 s).
    pub wait_secs: i32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            log: LogSettings::default(),
            admin_port: 9090,
            prefix: String::new(),
            drain_timeout_secs: 20,
            pollers: 4,
            wait_secs: 20,
        }
    }
}

impl ServiceSettings for Settings {
    const SERVICE: &'static str = "fetch-responder";

    fn log(&self) -> &LogSettings {
        &self.log
    }

    fn health_port(&self) -> u16 {
        self.admin_port
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=64).contains(&self.pollers) {
            return Err(ConfigError::value("pollers", "must be between 1 and 64"));
        }
        if !(0..=20).contains(&self.wait_secs) {
            return Err(ConfigError::value("wait_secs", "must be between 0 and 20"));
        }
        lambdaless_runtime::config::names(&self.prefix).map(|_| ())
    }
}

pub struct App {
    settings: Settings,
    ctx: ServiceContext,
    admin: TcpListener,
    aws: AwsClients,
    names: Names,
}

impl App {
    pub async fn build(settings: Settings, ctx: ServiceContext) -> anyhow::Result<Self> {
        let admin = admin::bind(settings.admin_port).await?;
        let names = lambdaless_runtime::config::names(&settings.prefix)?;
        let aws = aws::load().await;
        Ok(Self {
            settings,
            ctx,
            admin,
            aws,
            names,
        })
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("bound listener has an address")
    }

    pub async fn run(self) -> anyhow::Result<()> {
        let readiness = Readiness::default()
            .with(aws::sqs_check(
                self.aws.sqs.clone(),
                self.names.name(names::FETCH_REQUESTS),
            ))
            .with(aws::dynamodb_check(
                self.aws.dynamodb.clone(),
                self.names.name(names::DOCUMENTS),
            ));
        let admin = admin::ServerHandle::spawn(
            self.admin,
            admin::router(readiness, self.ctx.metrics.clone()),
        )?;
        tracing::info!(startup_ms = self.ctx.elapsed_ms(), addr = %admin.local_addr(), "fetch-responder serving health and metrics");
        let tracker = TaskTracker::new();
        let shutdown = self.ctx.shutdown.clone();
        if let Some(worker) =
            responder::worker(&self.aws, &self.names, self.settings.wait_secs, &shutdown).await
        {
            worker.spawn(self.settings.pollers, &tracker, &shutdown);
        }
        shutdown.cancelled().await;
        shutdown::drain(
            &tracker,
            Duration::from_secs(self.settings.drain_timeout_secs),
        )
        .await;
        admin.shutdown().await?;
        Ok(())
    }
}
