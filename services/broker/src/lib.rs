//! `broker`: the MQTT broker of lambdaless, standing in for AWS IoT Core.
//!
//! rumqttd 0.20's router does the MQTT work (sessions, routing, QoS,
//! retained messages, `$share/{group}/{filter}` shared subscriptions, round
//! robin). It runs embedded (`router`), without rumqttd's listeners. The
//! public listeners belong to our front end (`front`): MQTT 3.1.1 and 5 over
//! TCP (1883) and over WebSocket (8083, any path, subprotocol `mqtt`). The
//! front end reads each client's CONNECT, checks the login against the
//! configured users and the session limit, and answers a refusal with a real
//! CONNACK code (5 for a bad login). An accepted client gets a session
//! (`session`) that talks to the router through an in-process link, through
//! the topic ACL of the user's role (`acl`).
//!
//! Operations:
//! - `/healthz`, `/readyz`, `/metrics` on the admin port (9090). `/readyz` is
//!   200 only while the router registers a session and the public listeners
//!   accept; start-up waits for the router before the listeners accept.
//! - `/metrics`: sessions, refused logins and connects, bytes, publishes
//!   routed, ACL refusals, shed and delayed publishes, wills, see `telemetry`.
//! - SIGTERM: the public listeners stop accepting, the admin server stops,
//!   `main` returns and the process exits at once, closing every client
//!   connection. rumqttd's router has no stop API; its thread ends with the
//!   process. It keeps no state on disk: sessions, retained messages and QoS 1
//!   messages not yet delivered are lost on restart (clients republish what
//!   they have not seen acknowledged, rumqttc does).
//!
//! Limits worth knowing (rumqttd 0.20): the outgoing
//! QoS 1/2 window is fixed at 100 per client; every distinct subscription
//! filter, and every topic published with no matching subscription, keeps
//! an in-memory log that is never freed, so prefer a few wildcard
//! subscriptions to one filter per request.

mod acl;
mod auth;
mod front;
mod router;
mod session;
mod settings;
mod shed;
mod telemetry;
mod wire;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use lambdaless_runtime::service::elapsed_ms;
use lambdaless_runtime::{Readiness, ReadinessCheck, Run, Started};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::auth::Users;
use crate::front::{Front, Gate, Transport};
use crate::router::Router;

pub use acl::Role;
pub use settings::{Account, Settings};

/// How long start-up waits for rumqttd's router to register a session.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the running broker checks that the router still answers, and
/// after how many failures in a row it gives up (exit 1).
const WATCH_INTERVAL: Duration = Duration::from_secs(5);
const WATCH_FAILURES: u32 = 3;

/// A built, not yet running, broker: every public socket is bound.
pub type App = lambdaless_runtime::App<Broker>;

/// The broker's own part: its public MQTT and WebSocket listeners.
pub struct Broker {
    mqtt: TcpListener,
    ws: TcpListener,
}

impl Broker {
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.mqtt
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn ws_addr(&self) -> SocketAddr {
        self.ws.local_addr().expect("bound listener has an address")
    }
}

impl Run for Broker {
    type Settings = Settings;

    /// Binds the MQTT and WebSocket listeners (port 0 picks a free port; see
    /// the `*_addr` methods).
    async fn prepare(settings: &Settings) -> anyhow::Result<Self> {
        let mqtt = TcpListener::bind(settings.mqtt_listen)
            .await
            .with_context(|| format!("cannot bind MQTT listener {}", settings.mqtt_listen))?;
        let ws = TcpListener::bind(settings.ws_listen)
            .await
            .with_context(|| format!("cannot bind WebSocket listener {}", settings.ws_listen))?;
        Ok(Self { mqtt, ws })
    }

    /// Starts rumqttd's router, waits until it registers a session, then
    /// serves until `shutdown` (or until the router stops answering, which
    /// is an error: every session depends on it).
    async fn run(self, started: Started<Settings>) -> anyhow::Result<()> {
        let (base, settings, shutdown) = started.into_parts();
        let (mqtt_addr, ws_addr, admin_addr) =
            (self.mqtt_addr(), self.ws_addr(), base.local_addr());
        let Self { mqtt, ws } = self;
        telemetry::register();
        let users = Users::new(settings.users.clone(), settings.allow_anonymous);
        if users.allow_anonymous() {
            tracing::warn!(
                "ANONYMOUS ACCESS IS ON: clients without a user name are admitted (allow_anonymous = true); \
                 never run this way outside a throwaway setup"
            );
        }

        let router = Router::start(&settings);
        let serving = Arc::new(AtomicBool::new(false));
        let readiness = Readiness::default().with(readiness_check(router.clone(), serving.clone()));
        let running = base.serve_admin(readiness)?;

        let started = Instant::now();
        let ready = tokio::select! {
            r = wait_until_ready(&router) => r,
            _ = shutdown.cancelled() => Ok(()),
        };
        if let Err(reason) = ready {
            let _ = running.stop().await;
            anyhow::bail!("embedded rumqttd did not become ready: {reason}");
        }
        if shutdown.is_cancelled() {
            return running.stop().await;
        }

        let stop = CancellationToken::new();
        let gate = Arc::new(Gate {
            users,
            sessions: Arc::new(Semaphore::new(settings.max_connections)),
            pending: Arc::new(front::Pending::new(settings.max_pending_connects)),
            max_packet: settings.max_payload_bytes,
            handshake_timeout: Duration::from_millis(settings.connection_timeout_ms),
            device_publish_rate: (settings.device_publish_rate, settings.device_publish_burst),
            max_batch: settings.max_inflight.max(1),
            router: router.clone(),
        });
        let mut fronts = Vec::with_capacity(2);
        for (transport, listener) in [(Transport::Tcp, mqtt), (Transport::WebSocket, ws)] {
            let front = Front {
                transport,
                listener,
                gate: gate.clone(),
            };
            fronts.push(tokio::spawn(front.serve(stop.clone())));
        }
        serving.store(true, Ordering::Relaxed);
        tracing::info!(
            startup_ms = elapsed_ms(),
            router_ready_ms = started.elapsed().as_millis() as u64,
            mqtt = %mqtt_addr,
            ws = %ws_addr,
            admin = %admin_addr,
            users = settings.users.len(),
            "broker ready"
        );

        let outcome = tokio::select! {
            _ = shutdown.cancelled() => Ok(()),
            reason = watch(&router) => Err(anyhow::anyhow!("rumqttd's router stopped: {reason}")),
        };
        // Stop accepting; open sessions end with the process.
        serving.store(false, Ordering::Relaxed);
        stop.cancel();
        for front in fronts {
            // Returns at once; the listener socket closes with it.
            let _ = front.await;
        }
        let open = gate.sessions.available_permits();
        tracing::info!(
            open_sessions = settings.max_connections.saturating_sub(open),
            "listeners closed; open client connections close as the process exits"
        );
        running.stop().await?;
        outcome
    }
}

/// `/readyz` check `broker`: the public listeners accept and rumqttd's
/// router registers a session.
fn readiness_check(router: Router, serving: Arc<AtomicBool>) -> ReadinessCheck {
    ReadinessCheck::new("broker", move || {
        let router = router.clone();
        let serving = serving.load(Ordering::Relaxed);
        async move {
            if !serving {
                return Err("public listeners not accepting (starting or stopping)".to_owned());
            }
            router.probe().await
        }
    })
}

/// Returns once the router failed [`WATCH_FAILURES`] probes in a row.
async fn watch(router: &Router) -> String {
    let mut failures = 0;
    loop {
        tokio::time::sleep(WATCH_INTERVAL).await;
        match router.probe().await {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                tracing::error!(error = %e, failures, "rumqttd's router did not answer a probe");
                if failures >= WATCH_FAILURES {
                    return e;
                }
            }
        }
    }
}

/// Probes every 10 ms until the router answers, at most [`STARTUP_TIMEOUT`].
async fn wait_until_ready(router: &Router) -> Result<(), String> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        match router.probe().await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!(
                    "no session registered within {STARTUP_TIMEOUT:?}: {e}"
                ))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}
