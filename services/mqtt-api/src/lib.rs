//! `mqtt-api`: seed 2's request/response API over MQTT. Requests arrive on
//! `request/{op}/{uuid}[/{messageId}]` through the shared subscription
//! `$share/mqtt-api/request/#` (replicas split the load); answers go to
//! `response/{op}/{token}` at QoS 1 (SPEC §3).
//!
//! Requests are received with manual acknowledgements and handled
//! concurrently up to `max_in_flight`; each is acknowledged after its answer
//! is queued for publishing, in arrival order (rumqttd 0.20 drops a client
//! whose acknowledgements come out of order). On SIGTERM the service unsubscribes, answers
//! what it already received, and exits. The runtime's MQTT connection
//! reconnects and resubscribes after a broker restart by itself.
//!
//! The service connects in MQTT 5 (`mqtt5`), so that it sees a request's
//! Response Topic and Correlation Data: a request without a usable token
//! and with a Response Topic is answered there (SPEC §9). The token in the
//! payload still names the response topic when present, as in the seed.

mod handler;
mod mqtt5;
mod ops;

use std::sync::Arc;
use std::time::Duration;

use lambdaless_contracts::{names, topics};
use lambdaless_runtime::aws;
use lambdaless_runtime::config::{ConfigError, MqttSettings};
use lambdaless_runtime::{Common, Readiness, Run, ServiceSettings, Started};
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::handler::Handler;
use crate::ops::Operations;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub mqtt: MqttSettings,
    /// Requests handled at once; more wait (the broker holds them meanwhile).
    pub max_in_flight: usize,
    /// Larger request payloads are answered on `response/invalid`.
    pub max_request_bytes: usize,
    /// Shared with the other workers: log, admin port, name prefix, and the
    /// time the requests in hand get on SIGTERM.
    #[serde(skip)]
    pub common: Common,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            mqtt: MqttSettings::client("mqtt-api"),
            max_in_flight: 64,
            max_request_bytes: 128 * 1024,
            common: Common::worker(),
        }
    }
}

impl ServiceSettings for Settings {
    const SERVICE: &'static str = "mqtt-api";

    fn common_mut(&mut self) -> &mut Common {
        &mut self.common
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.mqtt.validate()?;
        if !(1..=1024).contains(&self.max_in_flight) {
            return Err(ConfigError::value("max_in_flight", "must be 1..=1024"));
        }
        if self.max_request_bytes < 64 || self.max_request_bytes > self.mqtt.max_packet_bytes {
            return Err(ConfigError::value(
                "max_request_bytes",
                "must be between 64 and mqtt.max_packet_bytes",
            ));
        }
        Ok(())
    }
}

/// A built, not yet running, mqtt-api.
pub type App = lambdaless_runtime::App<Api>;

/// mqtt-api's own part: the request loop of [`Run::run`].
pub struct Api;

impl Run for Api {
    type Settings = Settings;

    /// Nothing to bind beyond the admin port: requests arrive over MQTT.
    async fn prepare(_: &Settings) -> anyhow::Result<Self> {
        Ok(Api)
    }

    /// Serves requests until `shutdown`, then drains and returns.
    async fn run(self, started: Started<Settings>) -> anyhow::Result<()> {
        let (base, settings, shutdown) = started.into_parts();
        let (aws, names) = (base.aws().clone(), base.names()?);
        let mqtt_stop = CancellationToken::new();
        let mut mqtt = mqtt5::connect(
            &settings.mqtt,
            topics::REQUEST_SHARED_FILTER,
            mqtt_stop.clone(),
        );
        let readiness = Readiness::default()
            .with(mqtt.connection.readiness_check())
            .with(aws::dynamodb_check(
                aws.dynamodb.clone(),
                names.name(names::DEVICE_MESSAGES),
            ));
        let running = base.serve_admin(readiness)?;

        let handler = Handler {
            ops: Operations::new(aws, &names),
            mqtt: mqtt.connection.clone(),
            max_request_bytes: settings.max_request_bytes,
            max_packet_bytes: settings.mqtt.max_packet_bytes,
        };
        let permits = Arc::new(Semaphore::new(settings.max_in_flight));
        let tracker = TaskTracker::new();
        let (ack_tx, ack_rx) = tokio::sync::mpsc::unbounded_channel();
        let acker = tokio::spawn(handler::acknowledge_in_order(
            mqtt.connection.clone(),
            ack_rx,
        ));
        let spawn = |publish: rumqttc::v5::mqttbytes::v5::Publish| {
            let handler = handler.clone();
            let permits = permits.clone();
            let ack_tx = ack_tx.clone();
            let tracker = tracker.clone();
            async move {
                let permit = permits
                    .acquire_owned()
                    .await
                    .expect("semaphore never closes");
                let (done, answered) = tokio::sync::oneshot::channel();
                let _ = ack_tx.send((publish.clone(), answered));
                tracker.spawn(
                    async move {
                        handler.handle(publish, done).await;
                        drop(permit);
                    }
                    .instrument(tracing::debug_span!("request")),
                );
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                publish = mqtt.incoming.recv() => match publish {
                    Some(p) => spawn(p).await,
                    None => break,
                },
            }
        }

        // Stop the broker from routing more requests here, then answer what
        // already arrived (received but unanswered requests would be lost
        // with this clean session).
        let _ = mqtt
            .connection
            .client
            .unsubscribe(topics::REQUEST_SHARED_FILTER)
            .await;
        let quiet = Duration::from_millis(300);
        while let Ok(Some(p)) = tokio::time::timeout(quiet, mqtt.incoming.recv()).await {
            spawn(p).await;
        }
        running.drain(&tracker).await;
        drop(ack_tx);
        let _ = tokio::time::timeout(Duration::from_secs(2), acker).await;
        // Let the last answers and acks leave before disconnecting.
        tokio::time::sleep(Duration::from_millis(200)).await;
        mqtt_stop.cancel();
        let _ = mqtt.task.await;
        running.stop().await
    }
}
