//! `mover`: the SQS → DynamoDB worker that replaces the SQS-triggered Lambdas
//! of seeds 2 and 4.
//!
//! Each pipeline long-polls its queue with several pollers, writes a batch to
//! DynamoDB, and deletes from SQS only the messages whose write DynamoDB
//! acknowledged. Unusable messages go to the queue's DLQ at once, with the
//! reason attached, so they neither block nor vanish.

pub mod devices;
mod settings;
pub mod users;

use lambdaless_contracts::names;
use lambdaless_runtime::aws;
use lambdaless_runtime::mqtt::{self, MqttConnection};
use lambdaless_runtime::{Readiness, Run, Started};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use settings::{DevicesSettings, Settings, UsersSettings};

/// A built, not yet running, mover.
pub type App = lambdaless_runtime::App<Mover>;

/// The mover's own part: its two pipelines, started in [`Run::run`].
pub struct Mover;

impl Run for Mover {
    type Settings = Settings;

    /// Nothing to bind beyond the admin port: the pipelines start in `run`.
    async fn prepare(_: &Settings) -> anyhow::Result<Self> {
        Ok(Mover)
    }

    /// Runs until `shutdown`; then stops polling, finishes the batches in
    /// hand within the drain timeout, and returns.
    async fn run(self, started: Started<Settings>) -> anyhow::Result<()> {
        let (base, settings, shutdown) = started.into_parts();
        let (aws, names) = (base.aws().clone(), base.names()?);
        // The broker connection outlives the drain so notifications of the
        // last batches still go out.
        let mqtt_stop = CancellationToken::new();
        let mqtt = mqtt::connect(&settings.mqtt, Vec::new(), false, mqtt_stop.clone());
        let connection: MqttConnection = mqtt.connection.clone();

        let mut readiness = Readiness::default().with(connection.readiness_check());
        if settings.devices.enabled {
            readiness = readiness
                .with(aws::sqs_check(
                    aws.sqs.clone(),
                    names.name(names::DEVICE_INBOUND),
                ))
                .with(aws::dynamodb_check(
                    aws.dynamodb.clone(),
                    names.name(names::DEVICE_MESSAGES),
                ));
        }
        if settings.users.enabled {
            readiness = readiness.with(aws::sqs_check(
                aws.sqs.clone(),
                names.name(names::USERS_CREATE),
            ));
        }
        let running = base.serve_admin(readiness)?;

        let tracker = TaskTracker::new();
        if settings.devices.enabled {
            let worker = devices::worker(
                &aws,
                &names,
                &settings.devices,
                connection.clone(),
                &shutdown,
            )
            .await;
            if let Some(worker) = worker {
                worker.spawn(settings.devices.pollers, &tracker, &shutdown);
            }
        }
        if settings.users.enabled {
            if let Some(worker) = users::worker(&aws, &names, &settings.users, &shutdown).await {
                worker.spawn(settings.users.pollers, &tracker, &shutdown);
            }
        }

        shutdown.cancelled().await;
        let drain_started = std::time::Instant::now();
        running.drain(&tracker).await;
        // The batches in hand are stored and deleted; their notifications must reach the
        // broker before the connection closes.
        let unacked = connection
            .flush(
                running
                    .drain_timeout()
                    .saturating_sub(drain_started.elapsed()),
            )
            .await;
        if unacked > 0 {
            tracing::warn!(
                unacked,
                "drain over with notifications not acknowledged by the broker"
            );
        }
        mqtt_stop.cancel();
        let _ = mqtt.task.await;
        running.stop().await
    }
}
