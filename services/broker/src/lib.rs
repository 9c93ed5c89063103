//! `broker`: the MQTT broker of lambdaless, standing in for AWS IoT Core.
//!
//! rumqttd 0.20 does the MQTT work (sessions, routing, QoS, retained
//! messages, `$share/{group}/{filter}` shared subscriptions, round robin). It
//! runs embedded, on loopback ports only (`embedded`). The public listeners
//! belong to a thin front end (`front`): MQTT 3.1.1 and 5 over TCP (1883) and
//! over WebSocket (8083, any path, subprotocol `mqtt`). The front end reads
//! each client's CONNECT, checks the login against the configured users and
//! the session limit, and answers a refusal with a real CONNACK code (5 for a
//! bad login) — rumqttd itself would just close the socket. Accepted
//! connections are relayed to rumqttd's MQTT listener, which checks the
//! login again, through the topic ACL of the user's role (`acl`).
//!
//! Operations:
//! - `/healthz`, `/readyz`, `/metrics` on the admin port (9090). `/readyz` is
//!   200 only once a real MQTT login succeeds on each of rumqttd's three listeners
//!   (`probe`); start-up waits for that before the public listeners accept.
//! - `/metrics`: the front end's own counts (sessions, refused logins and
//!   connects, bytes) and rumqttd's router meters (publishes accepted and
//!   failed), see `telemetry`.
//! - SIGTERM: the public listeners stop accepting, the admin server stops,
//!   `main` returns and the process exits at once, closing every client
//!   connection. rumqttd has no stop API; its threads end with the process.
//!   It keeps no state on disk: sessions, retained messages and QoS 1
//!   messages not yet delivered are lost on restart (clients republish what
//!   they have not seen acknowledged, rumqttc does).
//!
//! MQTT 5 clients are relayed to a third, MQTT 5, listener of rumqttd.
//!
//! Limits worth knowing (rumqttd 0.20): the outgoing
//! QoS 1/2 window is fixed at 100 per client; every distinct subscription
//! filter, and every topic published with no matching subscription, keeps
//! an in-memory log that is never freed, so prefer a few wildcard
//! subscriptions to one filter per request.

mod acl;
mod auth;
mod embedded;
mod front;
mod probe;
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
use tracing::Instrument;

use crate::auth::{InternalAuth, ProbeLogin, Users};
use crate::embedded::{Embedded, InternalAddrs};
use crate::front::{Front, Gate, Transport};
use crate::probe::Probe;

pub use acl::Role;
pub use settings::{Account, Settings};

/// How long start-up waits for rumqttd to accept its first login.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

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

    /// Starts rumqttd, waits until it accepts logins, then serves until
    /// `shutdown` (or until rumqttd stops, which is an error).
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

        let internal =
            InternalAddrs::pick().context("cannot reserve loopback ports for rumqttd")?;
        let probe_login = (!users.allow_anonymous()).then(ProbeLogin::random);
        let internal_auth = probe_login
            .as_ref()
            .map(|login| Arc::new(InternalAuth::new(users.clone(), login)));
        let config = embedded::config(&settings, internal, internal_auth);
        embedded::describe(&config, internal);
        let Embedded {
            alive,
            mut exited,
            meters,
        } = embedded::start(config)?;

        let stop = CancellationToken::new();
        tokio::spawn(
            embedded::republish_meters(meters, stop.clone())
                .instrument(tracing::info_span!("meters")),
        );
        let probe = Probe {
            mqtt: internal.mqtt,
            ws: internal.ws,
            v5: internal.v5,
            login: probe_login,
        };
        let serving = Arc::new(AtomicBool::new(false));
        let readiness = Readiness::default().with(readiness_check(
            probe.clone(),
            alive.clone(),
            serving.clone(),
        ));
        let running = base.serve_admin(readiness)?;

        let started = Instant::now();
        let ready = tokio::select! {
            r = wait_until_ready(&probe) => r,
            reason = &mut exited => Err(reason.unwrap_or_else(|_| "rumqttd thread ended".to_owned())),
            _ = shutdown.cancelled() => Ok(()),
        };
        if let Err(reason) = ready {
            stop.cancel();
            let _ = running.stop().await;
            anyhow::bail!("embedded rumqttd did not become ready: {reason}");
        }
        if shutdown.is_cancelled() {
            stop.cancel();
            return running.stop().await;
        }

        let gate = Arc::new(Gate {
            users,
            sessions: Arc::new(Semaphore::new(settings.max_connections)),
            pending: Arc::new(front::Pending::new(settings.max_pending_connects)),
            max_packet: settings.max_payload_bytes,
            handshake_timeout: Duration::from_millis(settings.connection_timeout_ms),
            device_publish_rate: (settings.device_publish_rate, settings.device_publish_burst),
        });
        let mut fronts = Vec::with_capacity(2);
        for (transport, listener, upstream) in [
            (Transport::Tcp, mqtt, internal.mqtt),
            // The front end terminates WebSocket itself (to apply the ACL to
            // MQTT packets): both listeners relay to rumqttd's MQTT port.
            (Transport::WebSocket, ws, internal.mqtt),
        ] {
            let front = Front {
                transport,
                listener,
                upstream,
                upstream_v5: internal.v5,
                gate: gate.clone(),
            };
            fronts.push(tokio::spawn(front.serve(stop.clone())));
        }
        serving.store(true, Ordering::Relaxed);
        tracing::info!(
            startup_ms = elapsed_ms(),
            rumqttd_ready_ms = started.elapsed().as_millis() as u64,
            mqtt = %mqtt_addr,
            ws = %ws_addr,
            admin = %admin_addr,
            users = settings.users.len(),
            "broker ready"
        );

        let outcome = tokio::select! {
            _ = shutdown.cancelled() => Ok(()),
            reason = &mut exited => Err(anyhow::anyhow!(
                "embedded rumqttd stopped: {}",
                reason.unwrap_or_else(|_| "thread ended".to_owned())
            )),
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

/// `/readyz` check `broker`: the public listeners accept, rumqttd runs and
/// takes a login on both of its listeners.
fn readiness_check(
    probe: Probe,
    alive: Arc<AtomicBool>,
    serving: Arc<AtomicBool>,
) -> ReadinessCheck {
    ReadinessCheck::new("broker", move || {
        let probe = probe.clone();
        let alive = alive.load(Ordering::Relaxed);
        let serving = serving.load(Ordering::Relaxed);
        async move {
            if !alive {
                return Err("embedded rumqttd stopped".to_owned());
            }
            if !serving {
                return Err("public listeners not accepting (starting or stopping)".to_owned());
            }
            probe.check().await
        }
    })
}

/// Probes every 10 ms until rumqttd answers, at most [`STARTUP_TIMEOUT`].
async fn wait_until_ready(probe: &Probe) -> Result<(), String> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        let attempt = tokio::time::timeout(Duration::from_secs(1), probe.check())
            .await
            .unwrap_or_else(|_| Err("probe timed out".to_owned()));
        match attempt {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!(
                    "no successful login within {STARTUP_TIMEOUT:?}: {e}"
                ))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}
