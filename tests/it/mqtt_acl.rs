//! Topic ACLs by role (SPEC §9), driven with clients the project did not
//! write: `mosquitto_pub`/`mosquitto_sub` (Debian's mosquitto-clients) and
//! paho-mqtt (the venv `scripts/install-deps.sh` makes). The stack defines
//! one user per role, as Compose does: `local` (device), `service` (what
//! mover and mqtt-api connect as), `observer`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use lambdaless_testkit::{
    http_get, Stack, ADMIN_PORT, MQTT_OBSERVER_PASSWORD, MQTT_OBSERVER_USER, MQTT_PASSWORD,
    MQTT_PORT, MQTT_USER, WS_PORT,
};

/// A paho client (MQTT over TCP, or over WebSocket with `ws`) that logs in,
/// sends SUBSCRIBE with `filters` (one packet), prints the granted codes,
/// then publishes each of `publish` (topic, payload) at QoS 1, waits for
/// its PUBACK, and prints every message it receives for `listen_secs`.
/// Output: one JSON object `{"granted": [...], "acked": n, "received":
/// [[topic, payload], ...], "connected": bool}`.
const PAHO_CLIENT: &str = r#"
import json, sys, threading, time, uuid
import paho.mqtt.client as mqtt
port, user, password, transport = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
filters, publish, listen = json.loads(sys.argv[5]), json.loads(sys.argv[6]), float(sys.argv[7])
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-acl-" + uuid.uuid4().hex[:8],
                protocol=mqtt.MQTTv311, transport=transport)
c.username_pw_set(user, password)
if transport == "websockets":
    c.ws_set_options(path="/mqtt")
out = {"granted": None, "acked": 0, "received": [], "connected": False}
up, subscribed = threading.Event(), threading.Event()
c.on_connect = lambda cl, ud, fl, rc, pr: up.set() if rc == 0 else None
def on_subscribe(cl, ud, mid, codes, pr):
    out["granted"] = [int(getattr(x, "value", x)) for x in codes]
    subscribed.set()
c.on_subscribe = on_subscribe
c.on_message = lambda cl, ud, m: out["received"].append([m.topic, m.payload.decode()])
c.connect("127.0.0.1", port, keepalive=30)
c.loop_start()
assert up.wait(10), "no CONNACK 0"
if filters:
    c.subscribe([(f, 1) for f in filters])
    assert subscribed.wait(10), "no SUBACK"
for topic, payload in publish:
    info = c.publish(topic, payload, qos=1)
    info.wait_for_publish(10)
    out["acked"] += int(info.is_published())
time.sleep(listen)
out["connected"] = c.is_connected()
c.loop_stop()
print(json.dumps(out))
"#;

#[derive(Debug)]
struct PahoOutcome {
    granted: Vec<u8>,
    acked: usize,
    received: Vec<(String, String)>,
    connected: bool,
}

/// The command line of the paho session scripts (this file's and
/// `mqtt_v5`'s): port, login, transport, filters and publishes as JSON, and
/// how long to listen.
pub(crate) fn session_args(
    port: u16,
    (user, password): (&str, &str),
    websocket: bool,
    filters: &[&str],
    publish: &(impl serde::Serialize + ?Sized),
    listen_secs: f64,
) -> Vec<String> {
    let transport = if websocket { "websockets" } else { "tcp" };
    vec![
        port.to_string(),
        user.to_owned(),
        password.to_owned(),
        transport.to_owned(),
        serde_json::to_string(filters).unwrap(),
        serde_json::to_string(publish).unwrap(),
        listen_secs.to_string(),
    ]
}

async fn paho(
    port: u16,
    (user, password): (&str, &str),
    websocket: bool,
    filters: &[&str],
    publish: &[(&str, &str)],
    listen_secs: f64,
) -> PahoOutcome {
    let args = session_args(
        port,
        (user, password),
        websocket,
        filters,
        publish,
        listen_secs,
    );
    let v = lambdaless_testkit::paho_script(PAHO_CLIENT, args).await;
    PahoOutcome {
        granted: v["granted"]
            .as_array()
            .map(|a| a.iter().map(|c| c.as_u64().unwrap() as u8).collect())
            .unwrap_or_default(),
        acked: v["acked"].as_u64().unwrap() as usize,
        received: v["received"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m[0].as_str().unwrap().to_owned(),
                    m[1].as_str().unwrap().to_owned(),
                )
            })
            .collect(),
        connected: v["connected"].as_bool().unwrap(),
    }
}

/// `program` (`mosquitto_sub` or `mosquitto_pub`) logged in to the broker at `port`.
fn mosquitto(program: &str, port: u16, (user, password): (&str, &str)) -> Command {
    let mut command = Command::new(program);
    let port = port.to_string();
    command.args(["-h", "127.0.0.1", "-p", &port, "-u", user, "-P", password]);
    command
}

/// `mosquitto_sub -v` for `secs`, printing `topic payload` lines.
fn mosquitto_sub(port: u16, login: (&str, &str), filter: &str, secs: u32) -> Child {
    mosquitto("mosquitto_sub", port, login)
        .args(["-q", "1", "-v", "-t", filter, "-W", &secs.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub runs (apt-get install mosquitto-clients; scripts/install-deps.sh)")
}

async fn mosquitto_pub(port: u16, login: (&str, &str), topic: &str, payload: &str) {
    let status = mosquitto("mosquitto_pub", port, login)
        .args(["-q", "1", "-t", topic, "-m", payload])
        .stdin(Stdio::null())
        // A short blocking call: mosquitto_pub exits once acknowledged.
        .status()
        .expect("mosquitto_pub runs (scripts/install-deps.sh)");
    assert!(status.success(), "mosquitto_pub {topic} failed");
}

/// Lines `mosquitto_sub -v` printed before it ended.
async fn lines(child: Child) -> Vec<String> {
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .expect("mosquitto_sub ends");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

pub(crate) fn sample(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

const DEVICE: (&str, &str) = (MQTT_USER, MQTT_PASSWORD);
const OBSERVER: (&str, &str) = (MQTT_OBSERVER_USER, MQTT_OBSERVER_PASSWORD);

/// The matrix: a device cannot join the API's shared subscription, read
/// others' answers through a wildcard, or forge an answer; it keeps its
/// connection and gets its own answers; an observer reads every answer; the
/// services (connected as `service`) work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_acl_roles_hold_for_third_party_clients() {
    let mut stack = Stack::start().await;
    stack.provision().await;
    stack.start_broker().await;
    stack.start_service("mqtt-api").await;
    let port = stack.broker().host_port(MQTT_PORT).await;

    // Watching for 25 s: an observer on response/#, a device on `#`.
    let observer = mosquitto_sub(port, OBSERVER, "response/#", 25);
    let nosy = mosquitto_sub(port, DEVICE, "#", 25);
    // A device trying to join the API's group, listening as long.
    let thief = paho(
        port,
        DEVICE,
        false,
        &[
            "$share/mqtt-api/request/#",
            "response/#",
            "response/+/+",
            "response/query/mine-1",
        ],
        &[],
        0.0,
    )
    .await;
    assert_eq!(
        thief.granted,
        vec![0x80, 0x80, 0x80, 1],
        "a device is granted only its own concrete response topic"
    );
    assert!(
        thief.connected,
        "a refused SUBSCRIBE keeps the client connected"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The device's own requests: every one answered (none swallowed by a
    // foreign group member), on its own token, and a forged answer dropped.
    let requests: Vec<(String, String)> = (0..6)
        .map(|i| {
            (
                format!("request/query/acl-thing-{i}"),
                format!(r#"{{"token":"mine-{i}"}}"#),
            )
        })
        .collect();
    let mut publish: Vec<(&str, &str)> = requests
        .iter()
        .map(|(t, p)| (t.as_str(), p.as_str()))
        .collect();
    publish.push(("response/query/victim-1", r#"{"forged":true}"#));
    publish.push(("notification/acl-thing-0", r#"{"forged":true}"#));
    let device = paho(
        port,
        DEVICE,
        false,
        &["response/+/mine-0", "response/query/mine-1"],
        &publish,
        3.0,
    )
    .await;
    assert_eq!(device.granted, vec![1, 1]);
    assert_eq!(
        device.acked,
        publish.len(),
        "refused PUBLISHes are still acknowledged"
    );
    assert!(
        device.connected,
        "a refused PUBLISH keeps the client connected"
    );
    let own: Vec<&str> = device.received.iter().map(|(t, _)| t.as_str()).collect();
    assert!(
        own.contains(&"response/query/mine-0") && own.contains(&"response/query/mine-1"),
        "the device gets its own answers: {own:?}"
    );
    assert!(
        own.iter()
            .all(|t| t.ends_with("mine-0") || t.ends_with("mine-1")),
        "only its own: {own:?}"
    );

    // mosquitto_pub as a device: one more request, one more forgery.
    mosquitto_pub(
        port,
        DEVICE,
        "request/query/acl-thing-9",
        r#"{"token":"mine-9"}"#,
    )
    .await;
    mosquitto_pub(port, DEVICE, "response/get/victim-2", r#"{"forged":true}"#).await;

    let seen = lines(observer).await;
    for i in (0..6).chain([9]) {
        assert!(
            seen.iter()
                .any(|l| l.starts_with(&format!("response/query/mine-{i} "))),
            "the observer sees the answer to request {i}: {seen:#?}"
        );
    }
    assert!(
        seen.iter().all(|l| !l.contains("forged")),
        "forged answers were delivered: {seen:#?}"
    );
    let nosy = lines(nosy).await;
    assert!(nosy.is_empty(), "a device subscribed to # read: {nosy:#?}");

    // An observer publishes nothing.
    let quiet = paho(
        port,
        OBSERVER,
        false,
        &[],
        &[("request/query/acl-thing-0", r#"{"token":"obs-1"}"#)],
        0.0,
    )
    .await;
    assert_eq!(quiet.acked, 1);
    assert!(quiet.connected);

    // The same rules over WebSocket.
    let ws_port = stack.broker().host_port(WS_PORT).await;
    let ws = paho(
        ws_port,
        DEVICE,
        true,
        &["#", "response/query/ws-1"],
        &[
            ("request/query/acl-ws", r#"{"token":"ws-1"}"#),
            ("response/query/ws-1", r#"{"forged":true}"#),
        ],
        3.0,
    )
    .await;
    assert_eq!(ws.granted, vec![0x80, 1]);
    assert!(ws.connected);
    assert_eq!(ws.received.len(), 1, "over WebSocket: {:?}", ws.received);
    assert!(!ws.received[0].1.contains("forged"), "{:?}", ws.received);

    let admin = stack.broker().host_port(ADMIN_PORT).await;
    let (_, metrics) = http_get(admin, "/metrics").await.unwrap();
    let name = "broker_acl_denied_total";
    assert!(
        sample(&metrics, name, &["action=\"subscribe\"", "role=\"device\""]) >= 5.0,
        "{metrics:.3000}"
    );
    assert!(
        sample(&metrics, name, &["action=\"publish\"", "role=\"device\""]) >= 4.0,
        "{metrics:.3000}"
    );
    assert!(
        sample(&metrics, name, &["action=\"publish\"", "role=\"observer\""]) >= 1.0,
        "{metrics:.3000}"
    );
}
