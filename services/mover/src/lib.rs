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

use std::net::SocketAddr;
use std::time::Duration;

use lambdaless_contracts::{names, Names};
use lambdaless_runtime::aws::{self, AwsClients};
use lambdaless_runtime::mqtt::{self, MqttConnection};
use lambdaless_runtime::{admin, shutdown, Readiness, ServiceContext};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use settings::{DevicesSettings, Settings, UsersSettings};

/// A built, not yet running, mover.
pub struct App {
    settings: Settings,
    ctx: ServiceContext,
    admin: TcpListener,
    aws: AwsClients,
    names: Names,
}

impl App {
    /// Binds the admin port and prepares the clients; does no network I/O to AWS.
    pub async fn build(settings: Settings, ctx: ServiceContext) -> anyhow::Result<Self> {
        let admin = admin::bind(settings.admin_port).await?;
        let names = Names::new(settings.prefix.clone())?;
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

    /// Runs until `ctx.shutdown`; then stops polling, finishes the batches in
    /// hand within the drain timeout, and returns.
    pub async fn run(self) -> anyhow::Result<()> {
        let Self {
            settings,
            ctx,
            admin,
            aws,
            names,
        } = self;
        let shutdown = ctx.shutdown.clone();
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
        let admin =
            admin::ServerHandle::spawn(admin, admin::router(readiness, ctx.metrics.clone()))?;
        tracing::info!(
            startup_ms = ctx.elapsed_ms(),
            "mover serving health and metrics"
        );

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
        let grace = Duration::from_secs(settings.drain_timeout_secs);
        shutdown::drain(&tracker, grace).await;
        // The batches in hand are stored and deleted; their notifications must reach the
        // broker before the connection closes.
        let unacked = connection
            .flush(grace.saturating_sub(drain_started.elapsed()))
            .await;
        if unacked > 0 {
            tracing::warn!(
                unacked,
                "drain over with notifications not acknowledged by the broker"
            );
        }
        mqtt_stop.cancel();
        let _ = mqtt.task.await;
        admin.shutdown().await?;
        Ok(())
    }
}
