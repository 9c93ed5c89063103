//! rumqttd's router, embedded: the part of rumqttd that does the MQTT work
//! (sessions, routing, QoS, retained messages, `$share/{group}/{filter}`
//! round robin), and nothing else.
//!
//! Each client session of the front end talks to the router through an
//! in-process link (`rumqttd::local`: two queues and a wake-up channel), so a
//! packet crosses no socket between the front end and rumqttd. rumqttd's own
//! listeners, its meters timer and its metrics server are not started. (They
//! used to be: every session was relayed over a loopback TCP connection to
//! rumqttd's listener, and with clients that leave Nagle's algorithm on, such
//! as paho, each QoS 1 exchange paid for the extra hop; see `front`.)
//!
//! The router runs on a thread of its own and has no stop API; the thread
//! ends with the process. If it dies, every link fails: [`Router::probe`]
//! notices and `/readyz` turns red.

use std::sync::Arc;
use std::time::Duration;

use rumqttd::local::{LinkBuilder, LinkError, LinkRx, LinkTx};
use rumqttd::protocol::{Disconnect, DisconnectReasonCode, Packet};
use rumqttd::{Notification, RouterConfig, Strategy};

use crate::settings::Settings;

/// Router slots beyond `max_connections`: readiness probes and sessions
/// whose CONNACK is still in flight when the limit is reached.
const EXTRA_ROUTER_SLOTS: usize = 16;
/// Each subscription filter (and each topic published with no matching
/// filter) gets an in-memory log of up to this many segments of this size:
/// the backlog a slow subscriber may fall behind before it skips messages.
const SEGMENT_BYTES: usize = 4 * 1024 * 1024;
const SEGMENTS_PER_FILTER: usize = 4;
/// How long a probe waits for the router's CONNACK.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What a session asks the router for.
#[derive(Debug, Clone)]
pub(crate) struct LinkOptions {
    pub(crate) client_id: String,
    pub(crate) clean_session: bool,
    /// MQTT 5: the topic aliases the client accepts from the server (0: none).
    pub(crate) topic_alias_max: u16,
}

/// A link to the router: what the session sends, what it receives, and the
/// router's CONNACK.
pub(crate) type Link = (LinkTx, LinkRx, Notification);

type Connector = dyn Fn(&LinkOptions) -> Result<Link, String> + Send + Sync;

/// The running router; cheap to clone.
#[derive(Clone)]
pub(crate) struct Router {
    // rumqttd does not export the type of its event channel, so the sender
    // lives in a closure.
    connect: Arc<Connector>,
}

impl Router {
    /// Starts the router thread.
    pub(crate) fn start(settings: &Settings) -> Self {
        let config = RouterConfig {
            max_connections: settings.max_connections + EXTRA_ROUTER_SLOTS,
            max_outgoing_packet_count: 200,
            max_segment_size: SEGMENT_BYTES.max(settings.max_payload_bytes),
            max_segment_count: SEGMENTS_PER_FILTER,
            custom_segment: None,
            initialized_filters: None,
            // `$share/{group}/...` subscribers take turns.
            shared_subscriptions_strategy: Strategy::RoundRobin,
        };
        tracing::debug!(
            router_slots = config.max_connections,
            segment_bytes = config.max_segment_size,
            segments_per_filter = config.max_segment_count,
            "rumqttd router starting"
        );
        let router_tx = rumqttd::Router::new(0, config).spawn();
        let connect = move |options: &LinkOptions| {
            LinkBuilder::new(&options.client_id, router_tx.clone())
                .clean_session(options.clean_session)
                // A publish to a topic nobody subscribes to is kept, not
                // refused with a disconnect.
                .dynamic_filters(true)
                .topic_alias_max(options.topic_alias_max)
                // The session keeps the will itself (`session`): the router
                // only fires a will on an event only rumqttd's listeners send.
                .last_will(None)
                .build()
                .map_err(|e: LinkError| format!("router refused the session: {e}"))
        };
        Self {
            connect: Arc::new(connect),
        }
    }

    /// Registers a session. Blocks until the router answers (microseconds),
    /// hence on a blocking thread.
    pub(crate) async fn link(&self, options: LinkOptions) -> Result<Link, String> {
        let connect = self.connect.clone();
        tokio::task::spawn_blocking(move || connect(&options))
            .await
            .map_err(|e| format!("link task failed: {e}"))?
    }

    /// `/readyz`: the router takes a session and answers it.
    pub(crate) async fn probe(&self) -> Result<(), String> {
        let options = LinkOptions {
            client_id: format!("lambdaless-probe-{}", uuid::Uuid::new_v4().simple()),
            clean_session: true,
            topic_alias_max: 0,
        };
        let (mut tx, _rx, _connack) = tokio::time::timeout(PROBE_TIMEOUT, self.link(options))
            .await
            .map_err(|_| format!("rumqttd's router did not answer within {PROBE_TIMEOUT:?}"))??;
        tx.send(disconnect())
            .await
            .map_err(|e| format!("rumqttd's router stopped: {e}"))?;
        Ok(())
    }
}

/// The DISCONNECT a session sends the router to end itself.
pub(crate) fn disconnect() -> Packet {
    Packet::Disconnect(
        Disconnect {
            reason_code: DisconnectReasonCode::NormalDisconnection,
        },
        None,
    )
}
