//! mqtt-api's broker connection, in MQTT 5: what lets it see a request's
//! Response Topic and Correlation Data (SPEC §9). rumqttd keeps an MQTT 5
//! publisher's properties with the message and hands them to MQTT 5
//! subscribers; an MQTT 3.1.1 subscriber would get the message without
//! them. Requests from MQTT 3.1.1 clients arrive the same way, without
//! properties.
//!
//! Like the runtime's MQTT 3.1.1 connection (`lambdaless_runtime::mqtt`),
//! which the other services keep: the event loop runs on a task of its own
//! that never blocks, forwards incoming publishes to a channel (bounded in
//! practice by the broker's in-flight window, since requests are
//! acknowledged by hand), subscribes again after every reconnect and backs
//! off while the broker is away.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use lambdaless_runtime::config::MqttSettings;
use lambdaless_runtime::mqtt::{self, Link};
use lambdaless_runtime::ReadinessCheck;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet, Publish};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Capacity of rumqttc's request channel (answers queued while reconnecting).
const REQUEST_CAPACITY: usize = 1024;

/// A live (or reconnecting) MQTT 5 connection.
#[derive(Clone)]
pub(crate) struct Connection {
    pub(crate) client: AsyncClient,
    connected: Arc<AtomicBool>,
}

impl Connection {
    /// Readiness probe named `broker`.
    pub(crate) fn readiness_check(&self) -> ReadinessCheck {
        mqtt::readiness(self.connected.clone())
    }
}

/// What [`connect`] returns.
pub(crate) struct Parts {
    pub(crate) connection: Connection,
    /// Requests, in arrival order.
    pub(crate) incoming: mpsc::UnboundedReceiver<Publish>,
    /// The event-loop task; it ends once `stop` is cancelled.
    pub(crate) task: JoinHandle<()>,
}

/// Connects (clean start, manual acknowledgements), subscribes `filter` at
/// QoS 1 after every CONNACK, and keeps the connection up until `stop`.
pub(crate) fn connect(settings: &MqttSettings, filter: &str, stop: CancellationToken) -> Parts {
    let client_id = mqtt::client_id(settings);
    let mut options = MqttOptions::new(client_id.clone(), settings.host.clone(), settings.port);
    options.set_keep_alive(Duration::from_secs(settings.keep_alive_secs));
    options.set_max_packet_size(u32::try_from(settings.max_packet_bytes).ok());
    options.set_manual_acks(true);
    options.set_clean_start(true);
    if let Some((user, password)) = mqtt::credentials(settings) {
        options.set_credentials(user, password);
    }
    // Small request/answer packets: no Nagle delay.
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    options.set_network_options(network);
    let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
    let connected = Arc::new(AtomicBool::new(false));
    let (tx, incoming) = mpsc::unbounded_channel();
    let loop_client = client.clone();
    let loop_connected = connected.clone();
    let filter = filter.to_owned();
    let span = tracing::info_span!("mqtt", client_id = %client_id, mqtt5 = true);
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
                            if let Err(e) =
                                loop_client.try_subscribe(filter.clone(), QoS::AtLeastOnce)
                            {
                                tracing::error!(%filter, error = %e, "cannot queue subscription");
                            }
                        } else {
                            tracing::error!(code = ?ack.code, "broker refused the connection");
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        // An error means nobody reads any more: shutting down.
                        let _ = tx.send(publish);
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
    Parts {
        connection: Connection { client, connected },
        incoming,
        task,
    }
}
