//! Load shedding on the MQTT API (issue #13, part 4): a device flooding
//! QoS 0 requests (sent by paho-mqtt, a client the project did not write)
//! is held to its per-connection publish rate at the broker's door, so
//! another client's request is still answered promptly and `mqtt-api`
//! stays small; and an answer too large for one MQTT packet is replaced by
//! `{"error":"Message too large to send", ...}` instead of breaking the
//! service's broker connection.

use std::time::{Duration, Instant};

use lambdaless_contracts::{api, names};
use lambdaless_testkit::{docker_cli, http_get, Stack, ADMIN_PORT, MQTT_PASSWORD, MQTT_USER};
use serde_json::{json, Value};

use crate::mqtt_acl::sample;
use crate::mqtt_client;

/// Liveness bound for an answer; the measured latency is printed.
const ANSWER: Duration = Duration::from_secs(10);
/// The issue's goal for mqtt-api's memory after the flood.
const MEMORY_LIMIT_MIB: f64 = 64.0;

/// paho publishes `count` QoS 0 requests as fast as it can as one device,
/// waits until the last is written, and prints `{"sent": n, "secs": s}`.
const PAHO_FLOOD: &str = r#"
import json, sys, threading, time, uuid
import paho.mqtt.client as mqtt
port, user, password, count = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-flood-" + uuid.uuid4().hex[:8],
                protocol=mqtt.MQTTv311)
c.username_pw_set(user, password)
c.max_queued_messages_set(0)
up = threading.Event()
c.on_connect = lambda cl, ud, fl, rc, pr: up.set() if rc == 0 else None
c.connect("127.0.0.1", port, keepalive=60)
c.loop_start()
assert up.wait(10), "no CONNACK 0"
started = time.time()
last = None
for i in range(count):
    last = c.publish("request/query/flood%d" % (i % 10), '{"token":"flood"}', qos=0)
last.wait_for_publish(120)
secs = time.time() - started
c.disconnect()
c.loop_stop()
print(json.dumps({"sent": count, "secs": secs}))
"#;

/// Memory use of a container as `docker stats` reports it, in MiB.
fn memory_mib(container: &str) -> f64 {
    let out = docker_cli(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.MemUsage}}",
        container,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let used = text.split('/').next().unwrap_or_default().trim();
    let split = used
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(used.len());
    let (number, unit) = used.split_at(split);
    let number: f64 = number
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("docker stats printed {text:?}"));
    number
        * match unit {
            "B" => 1.0 / (1024.0 * 1024.0),
            "KiB" | "kB" => 1.0 / 1024.0,
            "MiB" | "MB" => 1.0,
            "GiB" | "GB" => 1024.0,
            other => panic!("unit {other:?} in docker stats {text:?}"),
        }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos0_flood_from_one_device_is_shed_and_another_clients_request_is_answered() {
    let mut stack = Stack::start().await;
    stack.provision().await;
    stack.start_broker().await;
    stack.start_service("mqtt-api").await;
    let port = stack.broker_mqtt_port().await;
    let token = format!("fresh-{}", lambdaless_testkit::unique_id());
    let mut watcher = mqtt_client::connect(port, &[&format!("response/+/{token}")]).await;

    const FLOOD: usize = 50_000;
    let args = vec![
        port.to_string(),
        MQTT_USER.to_owned(),
        MQTT_PASSWORD.to_owned(),
        FLOOD.to_string(),
    ];
    let flood = lambdaless_testkit::paho_script(PAHO_FLOOD, args).await;
    println!("paho flood: {flood}");

    // The flood is written; a fresh request from another client.
    let asked = Instant::now();
    watcher
        .publish("request/query/freshThing", &json!({ "token": token }))
        .await;
    let answer = watcher.try_next(ANSWER).await;
    let latency = asked.elapsed();
    let broker_admin = stack.broker().host_port(ADMIN_PORT).await;
    let (_, metrics) = http_get(broker_admin, "/metrics").await.unwrap();
    let shed = sample(&metrics, "broker_publishes_shed_total", &[]);
    let answer = answer.unwrap_or_else(|| {
        panic!(
            "no answer to a fresh request within {ANSWER:?} after a {FLOOD}-request flood; \
             shed {shed}; mqtt-api logs:\n{}",
            stack.service("mqtt-api").logs()
        )
    });
    let memory = memory_mib(stack.service("mqtt-api").id());
    println!(
        "fresh request answered in {} ms after the flood (goal: 2000 ms); \
         broker shed {shed} QoS 0 publishes; mqtt-api memory {memory:.1} MiB",
        latency.as_millis()
    );
    let body: Value = serde_json::from_slice(&answer.payload).expect("answers are JSON");
    assert_eq!(answer.topic, format!("response/query/{token}"));
    assert_eq!(body["error"], api::NO_MESSAGES, "{body}");
    assert!(shed > 0.0, "the broker counted no shed publish:\n{metrics}");
    assert!(
        shed < FLOOD as f64,
        "some of the flood got through at the device rate"
    );
    assert!(
        memory < MEMORY_LIMIT_MIB,
        "mqtt-api uses {memory:.1} MiB after the flood"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_too_large_for_one_packet_is_replaced_by_an_error() {
    let mut stack = Stack::start().await;
    stack.provision().await;
    // A stored message of 300 KiB: its `get` answer cannot fit in the
    // 256 KiB packets mqtt-api sends.
    let item = json!({
        "uuid": "bigThing",
        "messageId": "m1",
        "body": { "blob": "x".repeat(300 * 1024) },
    });
    let Value::Object(item) = item else {
        unreachable!()
    };
    stack.put_item(names::DEVICE_MESSAGES, &item).await;
    stack.start_broker().await;
    stack.start_service("mqtt-api").await;
    let port = stack.broker_mqtt_port().await;
    let mut client = mqtt_client::connect(port, &["response/+/big", "response/+/after"]).await;

    client
        .publish("request/get/bigThing/m1", &json!({"token": "big"}))
        .await;
    let answer = client.try_next(ANSWER).await.unwrap_or_else(|| {
        panic!(
            "no answer to a get whose message is over the packet size; mqtt-api logs:\n{}",
            stack.service("mqtt-api").logs()
        )
    });
    assert_eq!(answer.topic, "response/get/big");
    let body: Value = serde_json::from_slice(&answer.payload).expect("answers are JSON");
    assert_eq!(
        body,
        json!({
            "error": "Message too large to send",
            "uuid": "bigThing",
            "messageId": "m1",
            "token": "big",
        })
    );

    // The service's broker connection is intact: the next request is answered.
    client
        .publish("request/query/bigThing", &json!({"token": "after"}))
        .await;
    let next = client
        .try_next(ANSWER)
        .await
        .expect("a later request is answered too");
    let body: Value = serde_json::from_slice(&next.payload).expect("answers are JSON");
    assert_eq!(next.topic, "response/query/after");
    assert_eq!(body["newestMessageId"], "m1", "{body}");
}
