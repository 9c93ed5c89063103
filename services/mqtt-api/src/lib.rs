//! `mqtt-api`: seed 2's request/response API over MQTT. Requests arrive on
//! `request/{op}/{uuid}[/{messageId}]` through the shared subscription
//! `$share/mqtt-api/request/#`; answers go to `response/{op}/{token}`.
//!
//! This revision connects to the broker and serves health and metrics; the
//! operations arrive with the device-messages issue.

use std::net::SocketAddr;
use std::time::Duration;

use lambdaless_contracts::{names, Names};
use lambdaless_runtime::aws::{self, AwsClients};
use lambdaless_runtime::config::{ConfigError, LogSettings, MqttSettings};
use lambdaless_runtime::{admin, mqtt, shutdown, Readiness, ServiceContext, ServiceSettings};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub log: LogSettings,
    /// Serves `/healthz`, `/readyz`, `/metrics`.
    pub admin_port: u16,
    /// Prepended to every queue and table name.
    pub prefix: String,
    pub mqtt: MqttSettings,
    /// On SIGTERM, how long requests in hand may take to finish.
    pub drain_timeout_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            log: LogSettings::default(),
            admin_port: 9090,
            prefix: String::new(),
            mqtt: MqttSettings {
                client_id_prefix: "mqtt-api".to_owned(),
                ..MqttSettings::default()
            },
            drain_timeout_secs: 20,
        }
    }
}

impl ServiceSettings for Settings {
    const SERVICE: &'static str = "mqtt-api";

    fn log(&self) -> &LogSettings {
        &self.log
    }

    fn health_port(&self) -> u16 {
        self.admin_port
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.mqtt.validate()?;
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
        let mqtt_stop = CancellationToken::new();
        let mqtt = mqtt::connect(&self.settings.mqtt, Vec::new(), true, mqtt_stop.clone());
        let readiness = Readiness::default()
            .with(mqtt.connection.readiness_check())
            .with(aws::dynamodb_check(
                self.aws.dynamodb.clone(),
                self.names.name(names::DEVICE_MESSAGES),
            ));
        let admin = admin::ServerHandle::spawn(
            self.admin,
            admin::router(readiness, self.ctx.metrics.clone()),
        )?;
        tracing::info!(startup_ms = self.ctx.elapsed_ms(), addr = %admin.local_addr(), "mqtt-api serving health and metrics");
        let tracker = TaskTracker::new();
        self.ctx.shutdown.cancelled().await;
        shutdown::drain(
            &tracker,
            Duration::from_secs(self.settings.drain_timeout_secs),
        )
        .await;
        mqtt_stop.cancel();
        let _ = mqtt.task.await;
        admin.shutdown().await?;
        Ok(())
    }
}
