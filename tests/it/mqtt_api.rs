//! `mqtt-api` (SPEC §3): every operation's success and error answers, invalid
//! and oversized requests, two replicas sharing the load, and recovery after
//! a broker restart. Messages are stored by the real `mover`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use lambdaless_contracts::names;
use lambdaless_testkit::{eventually, http_get, Stack, ADMIN_PORT, MQTT_PORT};
use rumqttc::Publish;
use serde_json::{json, Value};

use crate::mqtt_client::{self, TestClient};

const ANSWER: Duration = Duration::from_secs(30);

/// A stack with the broker, mover and one mqtt-api, and a client that sees
/// notifications and every response.
async fn api_stack() -> (Stack, TestClient) {
    let mut stack = Stack::start().await;
    stack.provision().await;
    stack.start_broker().await;
    let client = mqtt_client::connect(
        stack.broker_mqtt_port().await,
        &["notification/#", "response/#"],
    )
    .await;
    stack.start_service("mover").await;
    stack.start_service("mqtt-api").await;
    (stack, client)
}

fn json_of(p: &Publish) -> Value {
    serde_json::from_slice(&p.payload).expect("answers are JSON")
}

/// Publishes a request and returns the next publish on a response topic.
async fn ask(client: &mut TestClient, topic: &str, payload: Value) -> (String, Value) {
    client.publish(topic, &payload).await;
    loop {
        let p = client.next(ANSWER).await;
        if p.topic.starts_with("response/") {
            return (p.topic.clone(), json_of(&p));
        }
    }
}

pub(crate) async fn queue_url(stack: &Stack, logical: &str) -> String {
    stack.queue_url(&stack.names.name(logical)).await
}

/// Sends device messages through SQS and returns their stored ids from the
/// notifications, in sending order.
async fn store(stack: &Stack, client: &mut TestClient, bodies: &[Value]) -> Vec<String> {
    let inbound = queue_url(stack, names::DEVICE_INBOUND).await;
    let mut ids = Vec::new();
    for body in bodies {
        stack
            .aws
            .sqs
            .send_message()
            .queue_url(&inbound)
            .message_body(body.to_string())
            .send()
            .await
            .unwrap();
        loop {
            let p = client.next(ANSWER).await;
            if p.topic.starts_with("notification/") {
                ids.push(json_of(&p)["messageId"].as_str().unwrap().to_owned());
                break;
            }
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_with_the_seed_fields() {
    let (stack, mut c) = api_stack().await;
    let bodies: Vec<Value> = [100, 200, 300]
        .iter()
        .map(|t| json!({"thingName":"testThing","epochTime":t.to_string(),"tempSensor1F":"72","n":t}))
        .collect();
    let ids = store(&stack, &mut c, &bodies).await;

    // query
    let (topic, a) = ask(&mut c, "request/query/testThing", json!({"token":"q1"})).await;
    assert_eq!(topic, "response/query/q1");
    assert_eq!(
        a,
        json!({"newestMessageId": ids[2], "oldestMessageId": ids[0], "uuid": "testThing", "token": "q1"})
    );
    let (topic, a) = ask(&mut c, "request/query/nobody", json!({"token":"q2"})).await;
    assert_eq!(topic, "response/query/q2");
    assert_eq!(
        a,
        json!({"error": "No messages available", "uuid": "nobody", "token": "q2"})
    );

    // get
    let (topic, a) = ask(
        &mut c,
        &format!("request/get/testThing/{}", ids[1]),
        json!({"token":"g1"}),
    )
    .await;
    assert_eq!(topic, "response/get/g1");
    assert_eq!(
        a,
        json!({"body": bodies[1], "messageId": ids[1], "uuid": "testThing", "token": "g1"})
    );
    let (_, a) = ask(
        &mut c,
        "request/get/testThing/1-2-nope",
        json!({"token":"g2"}),
    )
    .await;
    assert_eq!(
        a,
        json!({"error": "Message not available", "messageId": "1-2-nope", "uuid": "testThing", "token": "g2"})
    );

    // next
    let (topic, a) = ask(
        &mut c,
        &format!("request/next/testThing/{}", ids[0]),
        json!({"token":"n1"}),
    )
    .await;
    assert_eq!(topic, "response/next/n1");
    assert_eq!(
        a,
        json!({"nextMessageId": ids[1], "specifiedMessageId": ids[0], "uuid": "testThing", "token": "n1"})
    );
    let (_, a) = ask(
        &mut c,
        &format!("request/next/testThing/{}", ids[2]),
        json!({"token":"n2"}),
    )
    .await;
    assert_eq!(
        a,
        json!({"error": "No newer messages available", "specifiedMessageId": ids[2], "uuid": "testThing", "token": "n2"})
    );

    // delete, then the message is gone and next skips it; deleting again is no error
    for token in ["d1", "d2"] {
        let (topic, a) = ask(
            &mut c,
            &format!("request/delete/testThing/{}", ids[1]),
            json!({"token": token}),
        )
        .await;
        assert_eq!(topic, format!("response/delete/{token}"));
        assert_eq!(
            a,
            json!({"messageId": ids[1], "uuid": "testThing", "token": token})
        );
    }
    let (_, a) = ask(
        &mut c,
        &format!("request/get/testThing/{}", ids[1]),
        json!({"token":"g3"}),
    )
    .await;
    assert_eq!(a["error"], "Message not available");
    let (_, a) = ask(
        &mut c,
        &format!("request/next/testThing/{}", ids[0]),
        json!({"token":"n3"}),
    )
    .await;
    assert_eq!(a["nextMessageId"], ids[2]);

    // send
    let (topic, a) = ask(
        &mut c,
        "request/send/testThing/otherThing",
        json!({"token":"s1","payload":{"hello":1},"clientMessageId":"c-1"}),
    )
    .await;
    assert_eq!(topic, "response/send/s1");
    let sqs_id = a["sqsMessageId"].as_str().expect("sqsMessageId").to_owned();
    assert_eq!(
        a,
        json!({"uuid": "testThing", "sqsMessageId": sqs_id, "token": "s1"})
    );
    let outbound = queue_url(&stack, names::DEVICE_OUTBOUND).await;
    let got = stack
        .aws
        .sqs
        .receive_message()
        .queue_url(&outbound)
        .wait_time_seconds(5)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message_id.as_deref(), Some(sqs_id.as_str()));
    let sent: Value = serde_json::from_str(got[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(
        sent,
        json!({"sender":"testThing","recipient":"otherThing","message":{"hello":1},"clientMessageId":"c-1"})
    );
    let (_, a) = ask(
        &mut c,
        "request/send/testThing/otherThing",
        json!({"token":"s2"}),
    )
    .await;
    assert_eq!(
        a,
        json!({"error": "Missing payload", "uuid": "testThing", "token": "s2"})
    );

    // unknown operation
    let (topic, a) = ask(
        &mut c,
        "request/frobnicate/testThing",
        json!({"token":"u1"}),
    )
    .await;
    assert_eq!(topic, "response/frobnicate/u1");
    assert_eq!(a["error"], "Unknown operation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_and_oversized_requests_are_answered_on_response_invalid() {
    let (_stack, mut c) = api_stack().await;
    c.publish_bytes("request/query/testThing", b"not json".to_vec())
        .await;
    let p = c.next(ANSWER).await;
    assert_eq!(p.topic, "response/invalid");
    assert_eq!(
        json_of(&p),
        json!({"error": "payload is not JSON", "topic": "request/query/testThing"})
    );

    for (topic, payload) in [
        ("request/query/testThing", json!({"token": "a/b"})),
        ("request/query/testThing", json!({"token": "+"})),
        ("request/query/testThing", json!({"token": ""})),
        ("request/query/testThing", json!({"nothing": 1})),
        ("request/query/testThing", json!([1, 2])),
        ("request/get/testThing", json!({"token": "t"})),
        ("request/send/a/b/c", json!({"token": "t"})),
    ] {
        let (answer_topic, a) = ask(&mut c, topic, payload.clone()).await;
        assert_eq!(answer_topic, "response/invalid", "{topic} {payload}");
        assert_eq!(a["topic"], topic);
        assert!(a["error"].as_str().is_some_and(|e| !e.is_empty()), "{a}");
    }

    // Over the service's limit (128 KiB) but under the broker's (256 KiB).
    let big = json!({"token": "big", "padding": "x".repeat(200 * 1024)});
    let (topic, a) = ask(&mut c, "request/query/testThing", big).await;
    assert_eq!(topic, "response/invalid");
    assert!(
        a["error"].as_str().unwrap().contains("over the limit"),
        "{a}"
    );

    // And the service is still fine.
    let (topic, a) = ask(&mut c, "request/query/testThing", json!({"token":"after"})).await;
    assert_eq!(topic, "response/query/after");
    assert_eq!(a["error"], "No messages available");
}

/// Sum of `mqtt_api_requests_total` in a Prometheus text page.
fn requests_counted(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("mqtt_api_requests_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_requests_and_each_is_answered_once() {
    let mut stack = Stack::start().await;
    stack.provision().await;
    stack.start_broker().await;
    let mut c = mqtt_client::connect(stack.broker_mqtt_port().await, &["response/#"]).await;
    stack.start_replica("mqtt-api", 1, &[]).await;
    stack.start_replica("mqtt-api", 2, &[]).await;

    const N: usize = 200;
    let requester = mqtt_client::connect(stack.broker_mqtt_port().await, &[]).await;
    for i in 0..N {
        requester
            .publish(
                &format!("request/query/thing{}", i % 7),
                &json!({"token": format!("tok{i}")}),
            )
            .await;
    }
    let mut answers: HashMap<String, usize> = HashMap::new();
    while answers.values().sum::<usize>() < N {
        let Some(p) = c.try_next(ANSWER).await else {
            let mut counts = Vec::new();
            for n in [1, 2] {
                let api = stack.service(&format!("mqtt-api#{n}"));
                let port = api.host_port(ADMIN_PORT).await;
                let (_, metrics) = http_get(port, "/metrics").await.unwrap();
                counts.push((requests_counted(&metrics), api.logs()));
            }
            let broker_admin = stack.broker().host_port(ADMIN_PORT).await;
            let (_, broker_metrics) = http_get(broker_admin, "/metrics").await.unwrap();
            panic!(
                "{} of {N} answered; broker: {}\n{broker_metrics}\nreplicas counted {:?}\nlogs: {counts:#?}",
                answers.len(),
                stack.broker().logs(),
                counts.iter().map(|c| c.0).collect::<Vec<_>>()
            );
        };
        let token = p.topic.rsplit('/').next().unwrap().to_owned();
        assert_eq!(json_of(&p)["error"], "No messages available");
        *answers.entry(token).or_default() += 1;
    }
    // Nothing more arrives: no request was answered twice.
    assert!(c.try_next(Duration::from_secs(2)).await.is_none());
    let expected: HashSet<String> = (0..N).map(|i| format!("tok{i}")).collect();
    assert_eq!(answers.keys().cloned().collect::<HashSet<_>>(), expected);
    assert!(answers.values().all(|&n| n == 1));

    let mut per_replica = Vec::new();
    for n in [1, 2] {
        let port = stack
            .service(&format!("mqtt-api#{n}"))
            .host_port(ADMIN_PORT)
            .await;
        let (_, metrics) = http_get(port, "/metrics").await.unwrap();
        per_replica.push(requests_counted(&metrics));
    }
    assert_eq!(per_replica.iter().sum::<u64>(), N as u64, "{per_replica:?}");
    assert!(
        per_replica.iter().all(|&n| n > 0),
        "one replica did all the work: {per_replica:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_the_first_request_after_the_broker_restarts() {
    let mut stack = Stack::start().await;
    stack.provision().await;
    stack.start_broker().await;
    stack
        .start_service_unchecked(
            "mqtt-api",
            // mqtt-api's own MQTT 5 connection logs "subscribed" at debug.
            &[("RUST_LOG", "info,mqtt_api::mqtt5=debug")],
        )
        .await;
    let api = stack.service("mqtt-api");
    lambdaless_testkit::wait_ready(api, ADMIN_PORT).await;
    let subscribed = |logs: &str| logs.matches("\"subscribed\"").count();
    let mut c = mqtt_client::connect(stack.broker_mqtt_port().await, &["response/#"]).await;
    let (_, a) = ask(&mut c, "request/query/x", json!({"token":"before"})).await;
    assert_eq!(a["token"], "before");
    assert_eq!(subscribed(&api.logs()), 1, "{}", api.logs());
    drop(c);

    let out = lambdaless_testkit::docker_cli(&["restart", "-t", "2", stack.broker().id()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let admin = stack
        .broker()
        .current_host_port(ADMIN_PORT)
        .expect("broker admin port");
    eventually(
        Duration::from_secs(60),
        "the restarted broker to be ready",
        || async move { matches!(http_get(admin, "/readyz").await, Ok((200, _))).then_some(()) },
    )
    .await;
    // mqtt-api reconnects and subscribes again by itself.
    eventually(
        Duration::from_secs(60),
        "mqtt-api to subscribe again",
        || async { (subscribed(&api.logs()) >= 2).then_some(()) },
    )
    .await;
    let port = stack
        .broker()
        .current_host_port(MQTT_PORT)
        .expect("broker mqtt port");
    let mut c = mqtt_client::connect(port, &["response/#"]).await;
    let (topic, a) = ask(&mut c, "request/query/x", json!({"token":"after"})).await;
    assert_eq!(topic, "response/query/after");
    assert_eq!(a["error"], "No messages available");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_device_commands_wait_for_and_print_the_answers() {
    let (stack, _c) = api_stack().await;
    let broker = stack.broker().name.clone();
    let cli = |args: Vec<String>| {
        let stack = &stack;
        let broker = broker.clone();
        async move {
            let mut full = vec!["device".to_owned(), "--mqtt-host".to_owned(), broker];
            full.extend(args);
            let refs: Vec<&str> = full.iter().map(String::as_str).collect();
            stack.run_once("lambdaless", &refs, &[]).await
        }
    };
    let (code, out) = cli(vec!["send".into(), "cliThing".into()]).await;
    assert_eq!(code, 0, "{out}");
    let id = out.trim().lines().last().unwrap().to_owned();
    assert!(id.contains('-'), "{out}");

    let (code, out) = cli(vec!["query".into(), "cliThing".into()]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("\"newestMessageId\": \"{id}\"")),
        "{out}"
    );
    let (code, out) = cli(vec!["get".into(), "cliThing".into(), id.clone()]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"thingName\": \"cliThing\""), "{out}");
    let (code, out) = cli(vec!["next".into(), "cliThing".into(), id.clone()]).await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("No newer messages available"), "{out}");
    let (code, out) = cli(vec!["delete".into(), "cliThing".into(), id.clone()]).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = cli(vec!["get".into(), "cliThing".into(), id]).await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("Message not available"), "{out}");
    let (code, out) = cli(vec![
        "send".into(),
        "cliThing".into(),
        "other".into(),
        r#"{"on":true}"#.into(),
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("sqsMessageId"), "{out}");
}
