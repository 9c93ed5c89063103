//! rumqttd, embedded: its configuration built from our settings, its threads,
//! and its meters turned into our metrics.
//!
//! rumqttd listens on two loopback-only ports picked at start (MQTT over TCP
//! and over WebSocket); only the front end connects to them. It keeps its own
//! login check ([`InternalAuth`]) so another local process cannot bypass the
//! front end. `Broker::start` blocks its thread for good and rumqttd has no
//! stop API: the thread, and the router, listener and timer threads it
//! spawns, end with the process.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rumqttd::meters::MetersLink;
use rumqttd::{
    Broker, Config, ConnectionSettings, Meter, MetricSettings, MetricType, RouterConfig,
    ServerSettings, Strategy,
};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::auth::InternalAuth;
use crate::settings::Settings;
use crate::telemetry;

/// How often rumqttd's router reports its meters.
pub(crate) const METER_INTERVAL_SECS: u64 = 2;
/// Router slots beyond `max_connections`: readiness probes and the session
/// whose CONNACK is still in flight when the limit is reached.
const EXTRA_ROUTER_SLOTS: usize = 16;
/// Each subscription filter (and each topic published with no matching
/// filter) gets an in-memory log of up to this many segments of this size:
/// the backlog a slow subscriber may fall behind before it skips messages.
const SEGMENT_BYTES: usize = 4 * 1024 * 1024;
const SEGMENTS_PER_FILTER: usize = 4;

/// Where rumqttd listens, inside the process's host.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InternalAddrs {
    pub(crate) mqtt: SocketAddr,
    pub(crate) ws: SocketAddr,
    /// MQTT 5 over TCP (the front end relays MQTT 5 clients of both
    /// public listeners here).
    pub(crate) v5: SocketAddr,
}

impl InternalAddrs {
    /// Free loopback ports. rumqttd binds by address and cannot report a
    /// port it picked, so we pick: bind port 0, note the port, release it.
    pub(crate) fn pick() -> std::io::Result<Self> {
        let mqtt = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let ws = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let v5 = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        Ok(Self {
            mqtt: mqtt.local_addr()?,
            ws: ws.local_addr()?,
            v5: v5.local_addr()?,
        })
    }
}

/// A started rumqttd.
pub(crate) struct Embedded {
    /// False once `Broker::start` returned (every listener failed).
    pub(crate) alive: Arc<AtomicBool>,
    /// Resolves with the reason when `Broker::start` returns.
    pub(crate) exited: oneshot::Receiver<String>,
    /// The router's meter reports, for [`republish_meters`].
    pub(crate) meters: MetersLink,
}

/// Builds rumqttd's configuration. `auth`: `None` accepts every login
/// (anonymous mode; the front end still applies the policy).
pub(crate) fn config(
    settings: &Settings,
    addrs: InternalAddrs,
    auth: Option<Arc<InternalAuth>>,
) -> Config {
    let mut connections = ConnectionSettings {
        // Validated to fit: at most u16::MAX.
        connection_timeout_ms: u16::try_from(settings.connection_timeout_ms).unwrap_or(u16::MAX),
        max_payload_size: settings.max_payload_bytes,
        max_inflight_count: settings.max_inflight,
        auth: None,
        external_auth: None,
        // Without dynamic filters rumqttd disconnects a client that publishes
        // to a topic nobody subscribes to.
        dynamic_filters: true,
    };
    if let Some(auth) = auth {
        connections.set_auth_handler(move |_client_id, user, password| {
            let ok = auth.accepts(&user, &password);
            async move { ok }
        });
    }
    let server = |name: &str, listen| ServerSettings {
        name: name.to_owned(),
        listen,
        tls: None,
        // Every connection comes from the front end: no accept throttle.
        next_connection_delay_ms: 0,
        connections: connections.clone(),
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: settings.max_connections + EXTRA_ROUTER_SLOTS,
            max_outgoing_packet_count: 200,
            max_segment_size: SEGMENT_BYTES.max(settings.max_payload_bytes),
            max_segment_count: SEGMENTS_PER_FILTER,
            custom_segment: None,
            initialized_filters: None,
            // `$share/{group}/...` subscribers take turns.
            shared_subscriptions_strategy: Strategy::RoundRobin,
        },
        v4: Some(HashMap::from([(
            "mqtt".to_owned(),
            server("rumqttd-mqtt", addrs.mqtt),
        )])),
        v5: Some(HashMap::from([(
            "v5".to_owned(),
            server("rumqttd-v5", addrs.v5),
        )])),
        ws: Some(HashMap::from([(
            "ws".to_owned(),
            server("rumqttd-ws", addrs.ws),
        )])),
        // rumqttd's timer thread panics unless both kinds are configured
        // (its `select!` unwraps both intervals); alerts just get dropped.
        metrics: Some(HashMap::from([
            (MetricType::Meters, meter_settings()),
            (MetricType::Alerts, meter_settings()),
        ])),
        ..Config::default()
    }
}

/// `MetricSettings` has private fields; its serde form is the public way in.
fn meter_settings() -> MetricSettings {
    serde_json::from_value(serde_json::json!({ "push_interval": METER_INTERVAL_SECS }))
        .expect("MetricSettings has exactly one field, push_interval")
}

/// Starts rumqttd on a thread of its own.
pub(crate) fn start(config: Config) -> anyhow::Result<Embedded> {
    let mut broker = Broker::new(config);
    let meters = broker
        .meters()
        .map_err(|e| anyhow::anyhow!("cannot attach to rumqttd's meters: {e}"))?;
    let alive = Arc::new(AtomicBool::new(true));
    let (tx, exited) = oneshot::channel();
    let thread_alive = alive.clone();
    std::thread::Builder::new()
        .name("rumqttd".to_owned())
        .spawn(move || {
            // Returns only when every listener thread has ended.
            let reason = match broker.start() {
                Ok(()) => "every rumqttd listener stopped (a port could not be bound?)".to_owned(),
                Err(e) => format!("rumqttd failed: {e}"),
            };
            thread_alive.store(false, Ordering::Relaxed);
            let _ = tx.send(reason);
        })?;
    Ok(Embedded {
        alive,
        exited,
        meters,
    })
}

/// Adds the router's publish counts to our counters until `stop`.
pub(crate) async fn republish_meters(meters: MetersLink, stop: CancellationToken) {
    loop {
        let batch = tokio::select! {
            _ = stop.cancelled() => return,
            batch = meters.next() => batch,
        };
        let Ok(batch) = batch else {
            tracing::warn!("rumqttd's meters link closed; publish counts stop here");
            return;
        };
        for meter in batch {
            // Subscription meters are per filter: unbounded label
            // cardinality, left out.
            if let Meter::Router(_, router) = meter {
                metrics::counter!(telemetry::PUBLISHES_RECEIVED)
                    .increment(router.total_publishes as u64);
                metrics::counter!(telemetry::PUBLISHES_FAILED)
                    .increment(router.failed_publishes as u64);
            }
        }
    }
}

/// Logs what rumqttd runs with, without secrets.
pub(crate) fn describe(config: &Config, addrs: InternalAddrs) {
    let auth = config
        .v4
        .as_ref()
        .and_then(|m| m.values().next())
        .is_some_and(|s| s.connections.external_auth.is_some());
    tracing::debug!(
        internal_mqtt = %addrs.mqtt,
        internal_ws = %addrs.ws,
        router_slots = config.router.max_connections,
        segment_bytes = config.router.max_segment_size,
        segments_per_filter = config.router.max_segment_count,
        internal_auth = auth,
        "rumqttd configured"
    );
}
