//! A broker connection that heals itself.
//!
//! rumqttc only makes progress while its event loop is polled, and an error
//! from `poll` means the connection dropped. [`connect`] gives the event loop a
//! task of its own that never blocks: it forwards incoming publishes to an
//! unbounded channel (bounded in practice by the broker's in-flight window,
//! since callers acknowledge with manual acks), re-subscribes after every
//! reconnect, and backs off between attempts while the broker is away.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Outgoing, Packet, Publish, QoS};
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
    pending: Mutex<Pending>,
    changed: Notify,
}

impl Unacked {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // Every critical section below is a few integer or set operations: it cannot panic
        // half way, so a poisoned lock still holds consistent counts.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The publishes [`MqttConnection::flush`] waits for, by packet id.
///
/// rumqttc gives a QoS 1 publish its packet id only when its event loop sends it, in the
/// order the publishes were queued, and reports it as `Outgoing::Publish(pkid)`. So a queued
/// publish is counted in `queued` until the next new packet id goes out, which is then its
/// id; only a PUBACK for one of those ids ends the wait. This is exact as long as the
/// connection's QoS 1 publishes all go through `publish_acked` (the mover's notification
/// connection); PUBACKs for any other id are ignored.
#[derive(Debug, Default)]
struct Pending {
    /// Queued through `publish_acked`, packet id not assigned yet.
    queued: usize,
    /// Sent, awaiting their PUBACK.
    ids: HashSet<u16>,
}

impl Pending {
    /// rumqttc sent a publish with packet id `pkid` (0: QoS 0).
    fn sent(&mut self, pkid: u16) {
        // A resend after a reconnect keeps its id: it is already awaited.
        if pkid != 0 && self.queued > 0 && self.ids.insert(pkid) {
            self.queued -= 1;
        }
    }

    /// The broker acknowledged `pkid`; `true` when it was awaited.
    fn acked(&mut self, pkid: u16) -> bool {
        self.ids.remove(&pkid)
    }

    fn len(&self) -> usize {
        self.queued + self.ids.len()
    }
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
        // Counted before it is queued: the event loop may send it at once.
        self.unacked.lock().queued += 1;
        let queued = self
            .client
            .try_publish(topic, QoS::AtLeastOnce, false, payload);
        if queued.is_err() {
            self.unacked.lock().queued -= 1;
            self.unacked.changed.notify_waiters();
        }
        queued
    }

    /// Waits until every [`publish_acked`](Self::publish_acked) publish is acknowledged, at
    /// most `limit`. Returns how many were still unacknowledged.
    pub async fn flush(&self, limit: std::time::Duration) -> usize {
        let wait = async {
            loop {
                let changed = self.unacked.changed.notified();
                if self.unacked.lock().len() == 0 {
                    return;
                }
                changed.await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
        self.unacked.lock().len()
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Readiness probe named `broker`.
    pub fn readiness_check(&self) -> ReadinessCheck {
        readiness(self.connected.clone())
    }
}

/// Readiness probe named `broker`, up while `connected` is set (by [`Link`]).
pub fn readiness(connected: Arc<AtomicBool>) -> ReadinessCheck {
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

/// `{client_id_prefix}-{12 hex digits}`: unique per replica and per start, so
/// replicas never take over each other's session.
pub fn client_id(settings: &MqttSettings) -> String {
    format!(
        "{}-{}",
        settings.client_id_prefix,
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// The login from the settings, if a user is configured: (user, password).
pub fn credentials(settings: &MqttSettings) -> Option<(String, String)> {
    let user = settings.username.as_ref()?;
    let password = settings
        .password
        .as_ref()
        .map(|p| p.expose_secret().to_owned())
        .unwrap_or_default();
    Some((user.clone(), password))
}

/// What an MQTT event loop keeps across reconnects, for the MQTT 3.1.1
/// client here and mqtt-api's MQTT 5 one: the connected flag behind
/// [`readiness`], and the backoff while the broker is away.
pub struct Link {
    connected: Arc<AtomicBool>,
    backoff: Duration,
}

impl Link {
    const FIRST_RETRY: Duration = Duration::from_millis(100);
    const LONGEST_RETRY: Duration = Duration::from_secs(5);

    pub fn new(connected: Arc<AtomicBool>) -> Self {
        Self {
            connected,
            backoff: Self::FIRST_RETRY,
        }
    }

    /// The broker accepted the connection.
    pub fn up(&mut self) {
        tracing::info!("connected to broker");
        self.connected.store(true, Ordering::Relaxed);
        self.backoff = Self::FIRST_RETRY;
    }

    /// The event loop failed with `error`: logs it (as a lost connection the
    /// first time, then with the next delay), then waits, doubling the delay
    /// up to 5 s. Returns false if `stop` fired meanwhile.
    pub async fn down(&mut self, error: String, stop: &CancellationToken) -> bool {
        if self.connected.swap(false, Ordering::Relaxed) {
            tracing::warn!(error = %error, "broker connection lost; reconnecting");
        } else {
            tracing::warn!(error = %error, retry_in_ms = self.backoff.as_millis() as u64, "broker not reachable");
        }
        tokio::select! {
            _ = stop.cancelled() => return false,
            _ = tokio::time::sleep(self.backoff) => {}
        }
        self.backoff = (self.backoff * 2).min(Self::LONGEST_RETRY);
        true
    }

    /// The event loop has ended.
    pub fn closed(&self) {
        self.connected.store(false, Ordering::Relaxed);
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
    let client_id = client_id(settings);
    let mut options = MqttOptions::new(client_id.clone(), settings.host.clone(), settings.port);
    options.set_keep_alive(Duration::from_secs(settings.keep_alive_secs));
    options.set_max_packet_size(settings.max_packet_bytes, settings.max_packet_bytes);
    options.set_manual_acks(manual_acks);
    options.set_clean_session(true);
    if let Some((user, password)) = credentials(settings) {
        options.set_credentials(user, password);
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
            let mut link = Link::new(loop_connected);
            loop {
                let event = tokio::select! {
                    _ = stop.cancelled() => break,
                    event = eventloop.poll() => event,
                };
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        if ack.code == ConnectReturnCode::Success {
                            link.up();
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
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                        loop_unacked.lock().sent(pkid);
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        if loop_unacked.lock().acked(ack.pkid) {
                            loop_unacked.changed.notify_waiters();
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(ack))) => {
                        tracing::debug!(pkid = ack.pkid, codes = ?ack.return_codes, "subscribed");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if !link.down(e.to_string(), &stop).await {
                            break;
                        }
                    }
                }
            }
            link.closed();
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

#[cfg(test)]
mod tests {
    use super::Pending;

    #[test]
    fn only_the_pubacks_of_awaited_publishes_count() {
        // Two publishes queued; the first goes out as 7, the second is still queued.
        let mut p = Pending {
            queued: 2,
            ..Pending::default()
        };
        p.sent(7);
        assert_eq!(p.len(), 2);
        // A PUBACK for a packet this connection never awaited changes nothing.
        assert!(!p.acked(3));
        assert_eq!(p.len(), 2);
        p.sent(8);
        // A resend of 7 after a reconnect is not a new publish.
        p.sent(7);
        assert_eq!((p.queued, p.ids.len()), (0, 2));
        assert!(p.acked(7));
        // A duplicate PUBACK for 7 does not release 8.
        assert!(!p.acked(7));
        assert_eq!(p.len(), 1);
        assert!(p.acked(8));
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn qos0_and_untracked_publishes_are_not_awaited() {
        let mut p = Pending::default();
        p.sent(0);
        p.sent(5);
        assert_eq!(p.len(), 0);
        p.queued = 1;
        p.sent(0);
        assert_eq!(p.len(), 1);
        p.sent(9);
        assert!(p.acked(9));
        assert_eq!(p.len(), 0);
    }
}
