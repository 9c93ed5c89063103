//! A broker per test on 127.0.0.1 (port 0 everywhere), and the clients that
//! talk to it: rumqttc for MQTT over TCP, a few raw bytes for WebSocket and HTTP.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use broker::{Account, App, Role, Settings};
use lambdaless_runtime::Common;
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What the project's clients use (runtime `MqttSettings::max_packet_bytes`).
pub(crate) const MAX_PACKET: usize = 256 * 1024;

pub(crate) struct TestApp {
    pub(crate) mqtt: SocketAddr,
    pub(crate) ws: SocketAddr,
    pub(crate) admin: SocketAddr,
    pub(crate) shutdown: CancellationToken,
    pub(crate) task: JoinHandle<anyhow::Result<()>>,
}

/// A broker with the Compose user `local`/`local`, ready.
pub(crate) async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub(crate) async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = Settings {
        common: Common {
            port: 0,
            ..Settings::default().common
        },
        mqtt_listen: "127.0.0.1:0".parse().unwrap(),
        ws_listen: "127.0.0.1:0".parse().unwrap(),
        // `local` is a service user here: these tests exercise the broker,
        // not the ACL (that has tests of its own, with a device user).
        users: BTreeMap::from([
            (
                "local".to_owned(),
                Account::with_role("local", Role::Service),
            ),
            ("dev".to_owned(), Account::new("dev")),
        ]),
        ..Settings::default()
    };
    adjust(&mut settings);
    let shutdown = CancellationToken::new();
    let app = App::build(settings).await.expect("broker builds");
    let mut admin = app.local_addr();
    admin.set_ip([127, 0, 0, 1].into());
    let (mqtt, ws) = (app.service().mqtt_addr(), app.service().ws_addr());
    let task = tokio::spawn(app.run(shutdown.clone()));
    let test_app = TestApp {
        mqtt,
        ws,
        admin,
        shutdown,
        task,
    };
    test_app.wait_ready().await;
    test_app
}

impl TestApp {
    /// Polls `/readyz` until 200; panics after 10 s.
    pub(crate) async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok((200, _)) = http_get(self.admin, "/readyz").await {
                return;
            }
            assert!(Instant::now() < deadline, "broker not ready within 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) async fn metrics(&self) -> String {
        let (status, body) = http_get(self.admin, "/metrics")
            .await
            .expect("metrics answer");
        assert_eq!(status, 200);
        body
    }

    /// rumqttc options as the project's services set them.
    pub(crate) fn options(&self, client_id: &str, login: Option<(&str, &str)>) -> MqttOptions {
        let mut options = MqttOptions::new(client_id, self.mqtt.ip().to_string(), self.mqtt.port());
        options.set_max_packet_size(MAX_PACKET, MAX_PACKET);
        options.set_keep_alive(Duration::from_secs(10));
        if let Some((user, password)) = login {
            options.set_credentials(user, password);
        }
        options
    }

    /// A client logged in as `local`, its CONNACK received.
    pub(crate) async fn client(&self, client_id: &str) -> (AsyncClient, EventLoop) {
        let (client, mut eventloop) =
            AsyncClient::new(self.options(client_id, Some(("local", "local"))), 64);
        connack(&mut eventloop)
            .await
            .expect("local/local is accepted");
        (client, eventloop)
    }
}

/// Polls until the CONNACK: `Ok` when accepted, the refusal otherwise.
pub(crate) async fn connack(eventloop: &mut EventLoop) -> Result<(), ConnectionError> {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), eventloop.poll())
            .await
            .expect("an answer to CONNECT within 5 s")?;
        if let Event::Incoming(Packet::ConnAck(_)) = event {
            return Ok(());
        }
    }
}

/// Subscribes and polls until the SUBACK (5 s at most).
pub(crate) async fn subscribed(
    client: &AsyncClient,
    eventloop: &mut EventLoop,
    filter: &str,
    qos: QoS,
) {
    client.subscribe(filter, qos).await.unwrap();
    until(eventloop, |p| matches!(p, Packet::SubAck(_)).then_some(())).await;
}

/// Polls until `wanted` matches an incoming packet (5 s at most).
pub(crate) async fn until<T>(
    eventloop: &mut EventLoop,
    mut wanted: impl FnMut(Packet) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let event = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .expect("the expected packet within 5 s")
            .expect("connection stays up");
        if let Event::Incoming(packet) = event {
            if let Some(found) = wanted(packet) {
                return found;
            }
        }
    }
}

/// `GET path` over HTTP/1.0: status and body.
pub(crate) async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    Ok((status, body))
}

/// The summed value of the samples of `name` whose labels contain `labels`.
pub(crate) fn sample(metrics: &str, name: &str, labels: &str) -> Option<f64> {
    // Summed over every series that matches (e.g. both listeners).
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']) && rest.contains(labels))
        })
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .fold(None, |acc, v| Some(acc.unwrap_or(0.0) + v))
}

/// A minimal MQTT-over-WebSocket client: the upgrade, then one CONNECT in a
/// masked binary frame; returns the CONNACK return code the broker sends.
pub(crate) async fn ws_connect(addr: SocketAddr, login: (&str, &str)) -> u8 {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /mqtt HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: mqtt\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        assert!(
            stream.read_buf(&mut buf).await.unwrap() > 0,
            "closed during upgrade"
        );
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-protocol: mqtt"),
        "{head}"
    );

    let connect = mqtt_connect("ws-client", login);
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut frame = vec![0x82, 0x80 | connect.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(connect.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    stream.write_all(&frame).await.unwrap();

    let mut frames = buf.split_off(head_end);
    tokio::time::timeout(Duration::from_secs(5), async {
        // The server's first frame is a small unmasked binary frame: CONNACK.
        while frames.len() < 6 {
            assert!(
                stream.read_buf(&mut frames).await.unwrap() > 0,
                "closed before CONNACK"
            );
        }
    })
    .await
    .expect("CONNACK within 5 s");
    assert_eq!(
        &frames[..4],
        &[0x82, 0x04, 0x20, 0x02],
        "a binary frame holding a CONNACK"
    );
    frames[5]
}

/// An MQTT 3.1.1 CONNECT with a login and clean session (short fields only).
fn mqtt_connect(client_id: &str, (user, password): (&str, &str)) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0xc2, 0, 10];
    for field in [client_id, user, password] {
        body.extend_from_slice(&(field.len() as u16).to_be_bytes());
        body.extend_from_slice(field.as_bytes());
    }
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    packet
}
