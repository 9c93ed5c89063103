//! A broker connection that heals itself.
//!
//! rumqttc only makes progress while its event loop is polled, and an error
//! from `poll` means the connection dropped. [`connect`] gives the event loop a
//! task of its own that never blocks: it forwards incoming publishes to an
//! unbounded channel (bounded in practice by the broker's in-flight window,
//! since callers acknowledge with manual acks), re-subscribes after every
//! reconnect, and backs off between attempts while the broker is away.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, Publish, QoS};
use secrecy::ExposeSecret;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::admin::ReadinessCheck;
use crate::config::MqttSettings;

/// Capacity of rumqttc's request channel (publishes queued while reconnecting).
const REQUEST_CAPACITY: usize = 1024;

/// A live (or reconnecting) broker connection.
#[derive(Clone)]
pub struct MqttConnection {
    pub client: AsyncClient,
    connected: Arc<AtomicBool>,
    unacked: Arc<Unacked>,
}

/// QoS 1 publishes queued through [`MqttConnection::publish_acked`] whose PUBACK has not
/// arrived yet.
#[derive(Default)]
struct Unacked {
    count: AtomicUsize,
    changed: Notify,
}

impl MqttConnection {
    /// Queues a QoS 1 publish and counts it until the broker acknowledges it, so that
    /// [`flush`](Self::flush) can wait for it before the connection closes. Fails (without
    /// blocking) when rumqttc's request queue is full.
    pub fn publish_acked(
        &self,
        topic: String,
        payload: Vec<u8>,
    ) -> Result<(), rumqttc::ClientError> {
        self.unacked.count.fetch_add(1, Ordering::SeqCst);
        let queued = self
            .client
            .try_publish(topic, QoS::AtLeastOnce, false, payload);
        if queued.is_err() {
            self.unacked.count.fetch_sub(1, Ordering::SeqCst);
        }
        queued
    }

    /// Waits until every [`publish_acked`](Self::publish_acked) publish is acknowledged, at
    /// most `limit`. Returns how many were still unacknowledged.
    pub async fn flush(&self, limit: std::time::Duration) -> usize {
        let wait = async {
            loop {
                let changed = self.unacked.changed.notified();
                if self.unacked.count.load(Ordering::SeqCst) == 0 {
                    return;
                }
                changed.await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
        self.unacked.count.load(Ordering::SeqCst)
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Readiness probe named `broker`.
    pub fn readiness_check(&self) -> ReadinessCheck {
        let connected = self.connected.clone();
        ReadinessCheck::new("broker", move || {
            let up = connected.load(Ordering::Relaxed);
            async move {
                if up {
                    Ok(())
                } else {
                    Err("not connected to the MQTT broker".to_owned())
                }
            }
        })
    }
}

/// What [`connect`] returns besides the connection.
pub struct MqttParts {
    pub connection: MqttConnection,
    /// Publishes matching the subscriptions, in arrival order.
    pub incoming: mpsc::UnboundedReceiver<Publish>,
    /// The event-loop task; it ends once `stop` is cancelled.
    pub task: JoinHandle<()>,
}

/// Connects to the broker and keeps the connection alive until `stop` fires.
/// `manual_acks`: the caller acknowledges each publish after handling it.
pub fn connect(
    settings: &MqttSettings,
    subscriptions: Vec<(String, QoS)>,
    manual_acks: bool,
    stop: CancellationToken,
) -> MqttParts {
    let client_id = format!(
        "{}-{}",
        settings.client_id_prefix,
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let mut options = MqttOptions::new(client_id.clone(), settings.host.clone(), settings.port);
    options.set_keep_alive(Duration::from_secs(settings.keep_alive_secs));
    options.set_max_packet_size(settings.max_packet_bytes, settings.max_packet_bytes);
    options.set_manual_acks(manual_acks);
    options.set_clean_session(true);
    if let Some(user) = &settings.username {
        let password = settings
            .password
            .as_ref()
            .map(|p| p.expose_secret().to_owned())
            .unwrap_or_default();
        options.set_credentials(user.clone(), password);
    }
    let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
    // Small request/answer packets: without TCP_NODELAY, Nagle and delayed
    // ACKs add ~40 ms to a round trip.
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    let connected = Arc::new(AtomicBool::new(false));
    let unacked = Arc::new(Unacked::default());
    let (tx, incoming) = mpsc::unbounded_channel();
    let loop_unacked = unacked.clone();

    let loop_client = client.clone();
    let loop_connected = connected.clone();
    let span = tracing::info_span!("mqtt", client_id = %client_id, broker = %format!("{}:{}", settings.host, settings.port));
    let task = tokio::spawn(
        async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                let event = tokio::select! {
                    _ = stop.cancelled() => break,
                    event = eventloop.poll() => event,
                };
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        if ack.code == ConnectReturnCode::Success {
                            tracing::info!("connected to broker");
                            loop_connected.store(true, Ordering::Relaxed);
                            backoff = Duration::from_millis(100);
                            for (filter, qos) in &subscriptions {
                                if let Err(e) = loop_client.try_subscribe(filter.clone(), *qos) {
                                    tracing::error!(%filter, error = %e, "cannot queue subscription");
                                }
                            }
                        } else {
                            tracing::error!(code = ?ack.code, "broker refused the connection");
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        if tx.send(publish).is_err() {
                            // Nobody reads any more: the service is shutting down.
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        // Saturating: publishes made with `client` directly are acked too.
                        let _ = loop_unacked.count.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
                        loop_unacked.changed.notify_waiters();
                    }
                    Ok(Event::Incoming(Packet::SubAck(ack))) => {
                        tracing::debug!(pkid = ack.pkid, codes = ?ack.return_codes, "subscribed");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if loop_connected.swap(false, Ordering::Relaxed) {
                            tracing::warn!(error = %e, "broker connection lost; reconnecting");
                        } else {
                            tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "broker not reachable");
                        }
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            loop_connected.store(false, Ordering::Relaxed);
            let _ = loop_client.try_disconnect();
            // Give the DISCONNECT a moment to leave.
            let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
        }
        .instrument(span),
    );
    MqttParts {
        connection: MqttConnection {
            client,
            connected,
            unacked,
        },
        incoming,
        task,
    }
}
