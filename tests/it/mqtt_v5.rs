//! MQTT 5 clients (SPEC §9), driven with paho-mqtt (`protocol=MQTTv5`) and
//! `mosquitto_pub -V mqttv5`: they connect on 1883 and on 8083
//! (WebSocket), publish device requests and get their answers, are refused
//! with MQTT 5 reason codes, and the topic ACLs hold, Response Topic
//! included. The broker carries Response Topic and Correlation Data from an
//! MQTT 5 publisher to an MQTT 5 subscriber.

use std::process::{Command, Stdio};

use lambdaless_testkit::{
    Stack, MQTT_PASSWORD, MQTT_PORT, MQTT_SERVICE_PASSWORD, MQTT_SERVICE_USER, MQTT_USER, WS_PORT,
};
use serde_json::{json, Value};

/// A paho MQTT 5 client: logs in (printing the CONNACK reason code), sends
/// one SUBSCRIBE with `filters`, then publishes each `[topic, payload,
/// response_topic, correlation, topic_alias]` at QoS 1 (printing each
/// PUBACK's reason code) and prints what it receives for `listen` seconds, with the
/// Response Topic and Correlation Data of each message.
const PAHO_V5: &str = r#"
import json, sys, threading, time, uuid
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes
port, user, password, transport = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
filters, publish, listen = json.loads(sys.argv[5]), json.loads(sys.argv[6]), float(sys.argv[7])
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-v5-" + uuid.uuid4().hex[:8],
                protocol=mqtt.MQTTv5, transport=transport)
c.username_pw_set(user, password)
if transport == "websockets":
    c.ws_set_options(path="/mqtt")
out = {"connack": None, "granted": None, "pubacks": [], "received": []}
up, subscribed, acked = threading.Event(), threading.Event(), threading.Event()
def on_connect(cl, ud, fl, rc, pr):
    out["connack"] = int(rc.value)
    up.set()
def on_subscribe(cl, ud, mid, codes, pr):
    out["granted"] = [int(x.value) for x in codes]
    subscribed.set()
def on_publish(cl, ud, mid, rc, pr):
    out["pubacks"].append(int(rc.value))
    acked.set()
def on_message(cl, ud, m):
    p = m.properties
    rt = getattr(p, "ResponseTopic", None) if p else None
    cd = getattr(p, "CorrelationData", None) if p else None
    out["received"].append([m.topic, m.payload.decode(), rt, cd.decode() if cd else None])
c.on_connect, c.on_subscribe, c.on_publish, c.on_message = on_connect, on_subscribe, on_publish, on_message
c.connect("127.0.0.1", port, keepalive=30)
c.loop_start()
if not up.wait(10) or out["connack"] != 0:
    time.sleep(0.5)
    c.loop_stop()
    print(json.dumps(out))
    sys.exit(0)
if filters:
    c.subscribe([(f, 1) for f in filters])
    assert subscribed.wait(10), "no SUBACK"
for topic, payload, response_topic, correlation, alias in publish:
    props = Properties(PacketTypes.PUBLISH)
    if alias:
        props.TopicAlias = alias
    if response_topic:
        props.ResponseTopic = response_topic
    if correlation:
        props.CorrelationData = correlation.encode()
    acked.clear()
    c.publish(topic, payload, qos=1, properties=props)
    assert acked.wait(10), "no PUBACK"
time.sleep(listen)
c.loop_stop()
print(json.dumps(out))
"#;

/// One publish of the paho client: topic, payload, Response Topic,
/// Correlation Data, Topic Alias.
type Publish<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Option<u16>,
);

/// What the paho MQTT 5 client printed.
async fn paho_v5(
    port: u16,
    (user, password): (&str, &str),
    websocket: bool,
    filters: &[&str],
    publish: &[Publish<'_>],
    listen_secs: f64,
) -> Value {
    let args = crate::mqtt_acl::session_args(
        port,
        (user, password),
        websocket,
        filters,
        &publish,
        listen_secs,
    );
    lambdaless_testkit::paho_script(PAHO_V5, args).await
}

const DEVICE: (&str, &str) = (MQTT_USER, MQTT_PASSWORD);
const SERVICE: (&str, &str) = (MQTT_SERVICE_USER, MQTT_SERVICE_PASSWORD);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_devices_get_answers_on_both_ports_and_meet_the_acls() {
    let mut stack = Stack::start().await;
    stack.provision().await;
    stack.start_broker().await;
    stack.start_service("mqtt-api").await;
    let tcp = stack.broker().host_port(MQTT_PORT).await;
    let ws = stack.broker().host_port(WS_PORT).await;

    for (port, websocket, token) in [(tcp, false, "v5tcp"), (ws, true, "v5ws")] {
        let answer_topic = format!("response/query/{token}");
        let out = paho_v5(
            port,
            DEVICE,
            websocket,
            &[&answer_topic, "#", "$share/mqtt-api/request/#"],
            &[(
                "request/query/v5Thing",
                &json!({ "token": token }).to_string(),
                None,
                None,
                None,
            )],
            3.0,
        )
        .await;
        let what = if websocket { "WebSocket" } else { "TCP" };
        assert_eq!(out["connack"], 0, "{what}: {out}");
        // Own answers granted; `#` and the API's group: 0x87 not authorized.
        assert_eq!(out["granted"], json!([1, 0x87, 0x87]), "{what}: {out}");
        assert_eq!(out["pubacks"], json!([0]), "{what}: {out}");
        let received = out["received"].as_array().unwrap();
        assert_eq!(received.len(), 1, "{what}: exactly its own answer: {out}");
        assert_eq!(received[0][0], answer_topic.as_str());
        let answer: Value = serde_json::from_str(received[0][1].as_str().unwrap()).unwrap();
        assert_eq!(answer["token"], token, "{answer}");
        assert_eq!(answer["error"], "No messages available", "{answer}");
    }

    // A bad login is refused with reason 0x86 over MQTT 5.
    let out = paho_v5(tcp, (MQTT_USER, "wrong"), false, &[], &[], 0.0).await;
    assert_eq!(out["connack"], 0x86, "{out}");

    // mosquitto_pub -V mqttv5, a second third-party client, is served too.
    let status = Command::new("mosquitto_pub")
        .args(["-V", "mqttv5", "-h", "127.0.0.1", "-p", &tcp.to_string()])
        .args(["-u", MQTT_USER, "-P", MQTT_PASSWORD, "-q", "1"])
        .args(["-t", "request/query/v5Thing", "-m", r#"{"token":"v5mosq"}"#])
        .stdin(Stdio::null())
        .status()
        .expect("mosquitto_pub runs (scripts/install-deps.sh)");
    assert!(status.success(), "mosquitto_pub -V mqttv5 was refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_topic_and_correlation_data_reach_an_mqtt5_subscriber_within_the_acl() {
    let mut stack = Stack::start().await;
    stack.start_broker().await;
    let tcp = stack.broker().host_port(MQTT_PORT).await;

    // A service user listens on request/... (as mqtt-api does).
    let listener = tokio::spawn(paho_v5(tcp, SERVICE, false, &["request/#"], &[], 6.0));
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let device = paho_v5(
        tcp,
        DEVICE,
        false,
        &[],
        &[
            (
                "request/query/t1",
                r#"{"n":1}"#,
                Some("response/query/mine"),
                Some("corr-1"),
                None,
            ),
            // The device may not subscribe request/...: no answers there.
            (
                "request/query/t1",
                r#"{"n":2}"#,
                Some("request/query/someone"),
                Some("corr-2"),
                None,
            ),
            // A topic alias stands for the topic it was set with, for the
            // ACL too: allowed here, refused for a forged answer.
            ("request/alias/t2", r#"{"n":3}"#, None, None, Some(5)),
            ("", r#"{"n":4}"#, None, None, Some(5)),
            ("response/get/forged", r#"{"n":5}"#, None, None, Some(6)),
            ("", r#"{"n":6}"#, None, None, Some(6)),
            // An alias never set names no topic.
            ("", r#"{"n":7}"#, None, None, Some(9)),
        ],
        0.5,
    )
    .await;
    assert_eq!(device["connack"], 0, "{device}");
    assert_eq!(
        device["pubacks"],
        json!([0, 0x87, 0, 0, 0x87, 0x87, 0x87]),
        "{device}"
    );
    let seen = listener.await.unwrap();
    assert_eq!(
        seen["received"],
        json!([
            [
                "request/query/t1",
                r#"{"n":1}"#,
                "response/query/mine",
                "corr-1"
            ],
            ["request/alias/t2", r#"{"n":3}"#, null, null],
            ["request/alias/t2", r#"{"n":4}"#, null, null],
        ]),
        "{seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_token_is_answered_on_its_response_topic_with_its_correlation_data() {
    let mut stack = Stack::start().await;
    stack.provision().await;
    stack.start_broker().await;
    stack.start_service("mqtt-api").await;
    let tcp = stack.broker().host_port(MQTT_PORT).await;
    let ws = stack.broker().host_port(WS_PORT).await;

    for (port, websocket, level) in [(tcp, false, "tcp"), (ws, true, "ws")] {
        let mine = format!("response/query/mine-{level}");
        let out = paho_v5(
            port,
            DEVICE,
            websocket,
            &[&mine],
            &[(
                "request/query/v5Thing",
                "{}",
                Some(mine.as_str()),
                Some("corr-9"),
                None,
            )],
            3.0,
        )
        .await;
        assert_eq!(out["pubacks"], json!([0]), "{level}: {out}");
        let received = out["received"].as_array().unwrap();
        assert_eq!(received.len(), 1, "{level}: one answer: {out}");
        assert_eq!(received[0][0], mine.as_str(), "{out}");
        assert_eq!(
            received[0][3], "corr-9",
            "correlation data comes back: {out}"
        );
        let answer: Value = serde_json::from_str(received[0][1].as_str().unwrap()).unwrap();
        assert_eq!(
            answer,
            json!({"error": "No messages available", "uuid": "v5Thing"}),
            "{level}"
        );
    }
}
