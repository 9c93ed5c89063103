//! A small MQTT test client around rumqttc with its event loop on its own task.

use std::time::Duration;

use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, Publish, QoS};
use tokio::sync::mpsc;

/// A connected client and the publishes it receives.
pub(crate) struct TestClient {
    client: AsyncClient,
    incoming: mpsc::UnboundedReceiver<Publish>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Outcome of a CONNECT attempt.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ConnectOutcome {
    Accepted,
    Refused(ConnectReturnCode),
    Failed(String),
}

fn options(port: u16, user: &str, password: &str) -> MqttOptions {
    let mut o = MqttOptions::new(
        format!("test-{}", lambdaless_testkit::unique_id()),
        "127.0.0.1",
        port,
    );
    o.set_credentials(user, password);
    o.set_keep_alive(Duration::from_secs(10));
    o.set_max_packet_size(256 * 1024, 256 * 1024);
    o
}

/// Tries once to connect and reports what the broker answered.
pub(crate) async fn try_connect(port: u16, user: &str, password: &str) -> ConnectOutcome {
    let (_client, mut eventloop) = AsyncClient::new(options(port, user, password), 10);
    let attempt = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    return if ack.code == ConnectReturnCode::Success {
                        ConnectOutcome::Accepted
                    } else {
                        ConnectOutcome::Refused(ack.code)
                    };
                }
                Ok(_) => {}
                Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
                    return ConnectOutcome::Refused(code)
                }
                Err(e) => return ConnectOutcome::Failed(e.to_string()),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .unwrap_or_else(|_| ConnectOutcome::Failed("no CONNACK within 10 s".into()))
}

/// Connects as the `service` user (the suite watches every answer and
/// sends hostile requests; the ACL tests use the other roles), subscribes to
/// `filters` and waits for the SUBACK.
pub(crate) async fn connect(port: u16, filters: &[&str]) -> TestClient {
    let (client, mut eventloop) = AsyncClient::new(
        options(
            port,
            lambdaless_testkit::MQTT_SERVICE_USER,
            lambdaless_testkit::MQTT_SERVICE_PASSWORD,
        ),
        100,
    );
    for f in filters {
        client
            .subscribe(*f, QoS::AtLeastOnce)
            .await
            .expect("subscribe queued");
    }
    let (tx, incoming) = mpsc::unbounded_channel();
    let (subscribed_tx, mut subscribed) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(p);
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = subscribed_tx.send(());
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    });
    for _ in filters {
        tokio::time::timeout(Duration::from_secs(10), subscribed.recv())
            .await
            .expect("SUBACK within 10 s");
    }
    TestClient {
        client,
        incoming,
        task,
    }
}

impl TestClient {
    /// Next publish, or `None` if the client task ended.
    pub(crate) async fn next_any(&mut self) -> Option<Publish> {
        self.incoming.recv().await
    }

    /// Next publish, or panic after `timeout`.
    pub(crate) async fn next(&mut self, timeout: Duration) -> Publish {
        tokio::time::timeout(timeout, self.incoming.recv())
            .await
            .expect("a publish arrives in time")
            .expect("client task alive")
    }
}

impl TestClient {
    /// Publishes a JSON payload at QoS 1.
    pub(crate) async fn publish(&self, topic: &str, payload: &serde_json::Value) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.to_string())
            .await
            .expect("publish queued");
    }
}

impl TestClient {
    /// Next publish, or `None` after `timeout`.
    pub(crate) async fn try_next(&mut self, timeout: Duration) -> Option<Publish> {
        tokio::time::timeout(timeout, self.incoming.recv())
            .await
            .ok()
            .flatten()
    }

    /// Publishes raw bytes at QoS 1 (for payloads that are not JSON).
    pub(crate) async fn publish_bytes(&self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .expect("publish queued");
    }
}
