//! A corpus of hostile inputs against the whole stack — HTTP (gateway and
//! streamer), MQTT requests and SQS messages: huge, binary, deeply nested,
//! path traversal, wildcards in tokens, wrong types. Each gets a clear error
//! (a 4xx with `{"message"}`, an answer on `response/invalid`, a dead letter
//! with its reason) and afterwards every service is still healthy and still
//! does its normal work.

use std::time::Duration;

use lambdaless_contracts::names;
use lambdaless_testkit::{http_get, Stack, ADMIN_PORT, API_KEY};
use serde_json::{json, Value};

use crate::devices::queue_depth;
use crate::http::request;
use crate::mqtt_api::queue_url;
use crate::mqtt_client;

const KEY: (&str, &str) = ("x-api-key", API_KEY);
const JSON: (&str, &str) = ("content-type", "application/json");

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// (method, path, headers, body) for the gateway, each expected to be refused with a 4xx.
/// One hostile HTTP request: method, path, headers, body.
type Case = (
    &'static str,
    String,
    Vec<(&'static str, &'static str)>,
    Option<String>,
);

fn gateway_corpus() -> Vec<Case> {
    let big = format!(
        r#"{{"name":"{}","email":"a@b.co"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    vec![
        ("POST", "/users".into(), vec![KEY, JSON], Some(big)),
        ("POST", "/users".into(), vec![KEY, JSON], Some("\u{0}\u{1}\u{2}\u{fffd}garbage".into())),
        ("POST", "/users".into(), vec![KEY, JSON], Some(nested(10_000))),
        ("POST", "/users".into(), vec![KEY, JSON], Some(r#"{"name": 12345, "email": ["x"]}"#.into())),
        ("POST", "/users".into(), vec![KEY, JSON], Some(r#"{"name":"Valid Name","email":"a@b.co","admin":true}"#.into())),
        ("POST", "/users".into(), vec![KEY, JSON], Some(r#"{"name":"Valid Name","email":"a@b.co"#.into())),
        ("POST", "/users".into(), vec![KEY, ("content-type", "text/plain")], Some("hello".into())),
        ("POST", "/users".into(), vec![JSON], Some(r#"{"name":"Valid Name","email":"a@b.co"}"#.into())),
        ("POST", "/users".into(), vec![("x-api-key", "' OR 1=1 --"), JSON], Some("{}".into())),
        ("POST", "/users".into(), vec![("authorization", "Bearer a.b.c"), JSON], Some("{}".into())),
        ("GET", "/users/..%2F..%2Fetc%2Fpasswd".into(), vec![KEY], None),
        ("GET", "/users/../../etc/passwd".into(), vec![KEY], None),
        ("GET", format!("/status/{}", "9".repeat(5000)), vec![KEY], None),
        ("GET", "/fetch/..%2F..%2Fsecret".into(), vec![KEY, ("x-user-id", "../../x")], None),
        ("GET", "/fetch/doc".into(), vec![KEY, ("x-user-id", "a/b#+")], None),
        ("POST", "/graphql".into(), vec![KEY, JSON], Some(json!({"query": format!("{{ {} }}", "customer(customerId: \"1\") { orders { customer { orders { customer { orders { customer { orders { customer { name } } } } } } } } }")}).to_string())),
        ("POST", "/graphql".into(), vec![KEY, JSON], Some(json!({"query": "{".repeat(20_000)}).to_string())),
        ("POST", "/graphql".into(), vec![KEY, JSON], Some(json!({"query": "{ product(productId: true) { price } }"}).to_string())),
        ("POST", "/graphql".into(), vec![KEY, JSON], Some(nested(10_000))),
        ("GET", "/does-not-exist".into(), vec![KEY], None),
        ("DELETE", "/users".into(), vec![KEY], None),
    ]
}

fn streamer_corpus() -> Vec<String> {
    vec![
        "/stream/..%2F..%2Fetc%2Fpasswd".into(),
        "/stream/users".into(),
        "/stream/artists?mode=drop".into(),
        "/stream/artists?page_size=-1".into(),
        "/stream/artists?page_size=99999999999".into(),
        "/stream/artists?segments=100000".into(),
        "/stream/artists?mode=query".into(),
        format!("/stream/{}", "a".repeat(4000)),
    ]
}

fn assert_clear_refusal(what: &str, status: u16, body: &str) {
    assert!(
        (400..500).contains(&status),
        "{what}: expected a 4xx, got {status}: {body:.300}"
    );
    let v: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{what}: error body is not JSON ({e}): {body:.300}"));
    // One shape on both services: {"message"}.
    let text = v["message"].as_str();
    assert!(
        text.is_some_and(|m| !m.is_empty()),
        "{what}: no message in {v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_inputs_get_clear_errors_and_every_service_stays_healthy() {
    let mut stack = Stack::start().await;
    stack.provision().await;
    stack.start_broker().await;
    for service in lambdaless_testkit::SERVICES {
        stack.start_service(service).await;
    }
    let gateway = stack.service("api-gateway").host_port(8080).await;
    let streamer = stack.service("streamer").host_port(8081).await;

    for (method, path, headers, body) in gateway_corpus() {
        let r = request(gateway, method, &path, &headers, body.as_deref()).await;
        let what = format!("{method} {:.80}", path);
        if path == "/graphql" && r.status == 200 {
            // GraphQL refuses inside a 200: errors, and no data.
            let v = r.json();
            assert!(v["errors"][0]["message"].as_str().is_some(), "{what}: {v}");
            assert!(
                v["data"].is_null() || v.get("data").is_none(),
                "{what}: {v}"
            );
        } else {
            assert_clear_refusal(&what, r.status, &r.body);
        }
    }
    // A header far beyond any sane size.
    let huge = "h".repeat(100 * 1024);
    let r = request(gateway, "GET", "/users/x", &[KEY, ("x-junk", &huge)], None).await;
    assert!((400..500).contains(&r.status), "huge header: {}", r.status);

    for path in streamer_corpus() {
        let r = request(streamer, "GET", &path, &[KEY], None).await;
        assert_clear_refusal(&format!("streamer {path:.80}"), r.status, &r.body);
    }

    // MQTT: hostile tokens and payloads are answered on response/invalid.
    let port = stack.broker_mqtt_port().await;
    let mut c = mqtt_client::connect(port, &["response/#"]).await;
    let mqtt_corpus: Vec<(&str, Vec<u8>)> = vec![
        ("request/query/t1", b"\x00\xff\xfe binary".to_vec()),
        ("request/query/t1", br#"{"token":"a/b"}"#.to_vec()),
        ("request/query/t1", br#"{"token":"+"}"#.to_vec()),
        ("request/query/t1", br##"{"token":"#"}"##.to_vec()),
        ("request/query/t1", br#"{"token":""}"#.to_vec()),
        ("request/query/t1", br#"{"token":12}"#.to_vec()),
        ("request/query/t1", nested(10_000).into_bytes()),
        (
            "request/query/t1",
            json!({"token": "x".repeat(100_000)})
                .to_string()
                .into_bytes(),
        ),
        ("request/get/t1/..", br#"{}"#.to_vec()),
    ];
    for (topic, payload) in &mqtt_corpus {
        c.publish_bytes(topic, payload.clone()).await;
        let p = c
            .try_next(Duration::from_secs(20))
            .await
            .unwrap_or_else(|| {
                panic!(
                    "no answer to {topic} {:.60?}",
                    String::from_utf8_lossy(payload)
                )
            });
        assert_eq!(p.topic, "response/invalid", "{topic}");
        let v: Value = serde_json::from_slice(&p.payload).unwrap();
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    }
    // An unknown operation with a good token.
    c.publish("request/drop-table/t1", &json!({"token": "tok1"}))
        .await;
    let p = c
        .try_next(Duration::from_secs(20))
        .await
        .expect("an answer");
    assert_eq!(p.topic, "response/drop-table/tok1");
    assert_eq!(
        serde_json::from_slice::<Value>(&p.payload).unwrap()["error"],
        "Unknown operation"
    );

    // SQS: unusable messages on every queue go to its DLQ with the reason.
    let sqs_corpus = [
        (names::DEVICE_INBOUND, "\u{1}\u{2}not json at all".to_owned()),
        (names::DEVICE_INBOUND, nested(5_000)),
        (names::DEVICE_INBOUND, json!({"thingName": {"$ne": null}, "epochTime": "1"}).to_string()),
        (names::DEVICE_INBOUND, json!({"thingName": "a/b/#", "epochTime": "1"}).to_string()),
        (names::USERS_CREATE, json!({"name": ["x"], "email": 5}).to_string()),
        (names::FETCH_REQUESTS, json!({"fetch_id": "d", "sqs_queue_url": "http://evil.example/000000000000/user-queue-x", "nonce": 1}).to_string()),
        (names::FETCH_REQUESTS, json!({"fetch_id": "d", "sqs_queue_url": "../../user-queue-x", "nonce": []}).to_string()),
    ];
    for (queue, body) in &sqs_corpus {
        let url = queue_url(&stack, queue).await;
        stack
            .aws
            .sqs
            .send_message()
            .queue_url(&url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let expected_dead = |queue: &str| sqs_corpus.iter().filter(|(q, _)| *q == queue).count() as u64;
    for queue in [
        names::DEVICE_INBOUND,
        names::USERS_CREATE,
        names::FETCH_REQUESTS,
    ] {
        let dlq = queue_url(&stack, &format!("{queue}-dlq")).await;
        let url = queue_url(&stack, queue).await;
        let want = expected_dead(queue);
        lambdaless_testkit::eventually(
            Duration::from_secs(60),
            &format!("{queue} dead letters"),
            || {
                let (stack, dlq, url) = (&stack, dlq.clone(), url.clone());
                async move {
                    (queue_depth(stack, &dlq).await >= want && queue_depth(stack, &url).await == 0)
                        .then_some(())
                }
            },
        )
        .await;
        assert_eq!(queue_depth(&stack, &dlq).await, want, "{queue}");
    }

    // Everyone is still up, ready, and does normal work.
    for service in lambdaless_testkit::SERVICES {
        let running = stack.service(service);
        let (up, code) = running.state();
        assert!(up, "{service} exited ({code}):\n{}", running.logs());
        let port = running
            .host_port(lambdaless_testkit::service_port(service))
            .await;
        let (status, body) = http_get(port, "/readyz").await.unwrap();
        assert_eq!(status, 200, "{service}: {body}");
    }
    let broker_admin = stack.broker().host_port(ADMIN_PORT).await;
    assert_eq!(http_get(broker_admin, "/readyz").await.unwrap().0, 200);
    let r = request(
        gateway,
        "POST",
        "/users",
        &[KEY, JSON],
        Some(r#"{"name":"Still Works","email":"still@example.com"}"#),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    c.publish("request/query/t1", &json!({"token": "fine"}))
        .await;
    let p = c
        .try_next(Duration::from_secs(20))
        .await
        .expect("an answer");
    assert_eq!(p.topic, "response/query/fine");
}
