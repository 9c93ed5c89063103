//! Seed 1 request/reply fetch against the real emulator and the
//! `fetch-responder` container, through the client library; the HTTP bridge
//! is exercised in process (`api_gateway::fetch::routes` served on a local
//! port) against the same emulator, since the gateway wiring comes at merge.

use std::collections::HashMap;
use std::time::Duration;

use lambdaless_client::fetch::{FetchClient, FetchError};
use lambdaless_client::provision::Provisioner;
use lambdaless_contracts::device::DLQ_REASON_ATTRIBUTE;
use lambdaless_contracts::names;
use lambdaless_testkit::{eventually, http_get, Stack, ADMIN_PORT};
use serde_json::{json, Value};

const USER: &str = "alice";
const WAIT: Duration = Duration::from_secs(20);

/// A provisioned stack with `alice`'s reply queue, and optionally the responder.
async fn stack(responder: bool) -> Stack {
    let mut stack = Stack::start().await;
    Provisioner::new(stack.aws.clone(), stack.names.clone())
        .provision(&[USER.to_owned()])
        .await
        .expect("provision succeeds");
    if responder {
        stack.start_service("fetch-responder").await;
    }
    stack
}

async fn put_document(stack: &Stack, doc: Value) {
    let Value::Object(map) = doc else {
        panic!("object")
    };
    stack.put_item(names::DOCUMENTS, &map).await;
}

/// Visible plus in-flight messages of a queue.
async fn depth(stack: &Stack, url: &str) -> u64 {
    stack.depth_of_url(url).await.total()
}

/// Receives one message from `url` (long poll), deletes it, returns (body, attributes).
async fn receive_one(stack: &Stack, url: &str) -> Option<(String, HashMap<String, String>)> {
    let r = stack
        .receive_one_from_url(url, Duration::from_secs(2))
        .await?;
    Some((r.body, r.attributes))
}

async fn send_request(stack: &Stack, body: &str) {
    stack
        .send(&stack.names.name(names::FETCH_REQUESTS), body)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_returns_the_document_or_not_found() {
    let stack = stack(true).await;
    let doc = json!({"id": "doc-1", "title": "hello", "pages": 3, "tags": ["a", "b"], "meta": {"draft": false}});
    put_document(&stack, doc.clone()).await;
    let client = FetchClient::new(stack.aws.sqs.clone(), stack.names.clone());
    let data = client.fetch("doc-1", USER, WAIT).await.unwrap();
    assert_eq!(Value::Object(data), doc);
    let missing = client.fetch("no-such-doc", USER, WAIT).await;
    assert!(
        matches!(&missing, Err(FetchError::NotFound(id)) if id == "no-such-doc"),
        "{missing:?}"
    );
    let no_queue = client.fetch("doc-1", "bob", WAIT).await;
    assert!(
        matches!(no_queue, Err(FetchError::NoReplyQueue(_))),
        "{no_queue:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numeric_and_string_nonces_are_echoed_exactly() {
    let stack = stack(true).await;
    put_document(&stack, json!({"id": "d", "v": 1})).await;
    let reply_url = stack.queue_url(&stack.names.user_queue(USER)).await;
    let nonces = [json!(12345), json!("abc-7"), json!(1.5), json!("42")];
    for nonce in &nonces {
        send_request(
            &stack,
            &json!({"fetch_id": "d", "sqs_queue_url": reply_url, "nonce": nonce}).to_string(),
        )
        .await;
    }
    let mut echoed = Vec::new();
    while echoed.len() < nonces.len() {
        let body = eventually(WAIT, "a reply", || async {
            receive_one(&stack, &reply_url).await.map(|(b, _)| b)
        })
        .await;
        let reply: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(reply["data"], json!({"id": "d", "v": 1}), "{reply}");
        echoed.push(reply["nonce"].clone());
    }
    for nonce in &nonces {
        assert!(
            echoed.contains(nonce),
            "{nonce} not echoed as is: {echoed:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_fetches_on_one_queue_each_get_their_own_answer() {
    let stack = stack(true).await;
    for i in 0..20 {
        put_document(&stack, json!({"id": format!("doc-{i}"), "n": i})).await;
    }
    // Two clients (two "processes") share alice's queue: each must release
    // the other's replies rather than drop them.
    let a = FetchClient::new(stack.aws.sqs.clone(), stack.names.clone());
    let b = FetchClient::new(stack.aws.sqs.clone(), stack.names.clone());
    let fetches = (0..20).map(|i| {
        let client = if i % 2 == 0 { a.clone() } else { b.clone() };
        async move {
            (
                i,
                client
                    // A liveness bound, not a timing: alone this takes ~20 s, but the
                    // suite runs it beside the 2,000-message crash test, which keeps
                    // moto busy (seen: over 60 s in a full run).
                    .fetch(&format!("doc-{i}"), USER, Duration::from_secs(180))
                    .await,
            )
        }
    });
    for (i, result) in futures::future::join_all(fetches).await {
        let data = result.unwrap_or_else(|e| panic!("fetch {i}: {e}"));
        assert_eq!(data["n"], json!(i), "fetch {i} got another answer");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_reply_to_a_timed_out_fetch_is_cleaned_up() {
    let mut stack = stack(false).await;
    put_document(&stack, json!({"id": "slow", "v": 1})).await;
    let client = FetchClient::new(stack.aws.sqs.clone(), stack.names.clone());
    // No responder yet: the fetch times out, its request stays queued.
    let timed_out = client.fetch("slow", USER, Duration::from_secs(1)).await;
    assert!(
        matches!(timed_out, Err(FetchError::Timeout { .. })),
        "{timed_out:?}"
    );
    stack.start_service("fetch-responder").await;
    // The responder now answers both the old request and this one.
    let data = client.fetch("slow", USER, WAIT).await.unwrap();
    assert_eq!(data["v"], json!(1));
    let reply_url = stack.queue_url(&stack.names.user_queue(USER)).await;
    eventually(
        Duration::from_secs(60),
        "the late reply to be deleted",
        || async { (depth(&stack, &reply_url).await == 0).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_reply_queue_gets_nothing_and_the_request_is_dead_lettered() {
    let stack = stack(true).await;
    put_document(&stack, json!({"id": "secret", "v": 1})).await;
    let stranger = stack
        .aws
        .sqs
        .create_queue()
        .queue_name(format!("{}stranger", stack.prefix))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    send_request(
        &stack,
        &json!({"fetch_id": "secret", "sqs_queue_url": stranger, "nonce": 1}).to_string(),
    )
    .await;
    let dlq = stack
        .queue_url(&stack.names.dlq(names::FETCH_REQUESTS))
        .await;
    let (body, attrs) = eventually(WAIT, "the request in the DLQ", || async {
        receive_one(&stack, &dlq).await
    })
    .await;
    assert!(body.contains("stranger"), "{body}");
    assert!(
        attrs[DLQ_REASON_ATTRIBUTE].contains("not one of this installation's user queues"),
        "{attrs:?}"
    );
    assert_eq!(
        depth(&stack, &stranger).await,
        0,
        "the stranger got a reply"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_requests_leave_the_responder_healthy() {
    let stack = stack(true).await;
    put_document(&stack, json!({"id": "ok", "v": 2})).await;
    let reply_url = stack.queue_url(&stack.names.user_queue(USER)).await;
    let garbage = [
        "not json".to_owned(),
        "[1,2]".to_owned(),
        json!({"sqs_queue_url": reply_url, "nonce": 1}).to_string(),
        json!({"fetch_id": 7, "sqs_queue_url": reply_url, "nonce": 1}).to_string(),
        json!({"fetch_id": "ok", "sqs_queue_url": reply_url, "nonce": true}).to_string(),
        json!({"fetch_id": "ok", "sqs_queue_url": reply_url}).to_string(),
        json!({"fetch_id": "ok", "sqs_queue_url": format!("{reply_url}/../x"), "nonce": 1})
            .to_string(),
    ];
    for body in &garbage {
        send_request(&stack, body).await;
    }
    let dlq = stack
        .queue_url(&stack.names.dlq(names::FETCH_REQUESTS))
        .await;
    let mut reasons = Vec::new();
    while reasons.len() < garbage.len() {
        let (_, attrs) = eventually(WAIT, "garbage in the DLQ", || async {
            receive_one(&stack, &dlq).await
        })
        .await;
        reasons.push(attrs[DLQ_REASON_ATTRIBUTE].clone());
    }
    assert!(
        reasons.iter().any(|r| r.contains("not JSON")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("nonce")), "{reasons:?}");
    assert_eq!(depth(&stack, &reply_url).await, 0, "garbage was answered");
    let client = FetchClient::new(stack.aws.sqs.clone(), stack.names.clone());
    assert_eq!(client.fetch("ok", USER, WAIT).await.unwrap()["v"], json!(2));
    let responder = stack.service("fetch-responder");
    assert!(responder.state().0, "responder died:\n{}", responder.logs());
    let port = responder.host_port(ADMIN_PORT).await;
    assert_eq!(http_get(port, "/readyz").await.unwrap().0, 200);
    let (_, metrics) = http_get(port, "/metrics").await.unwrap();
    assert!(
        metrics.contains("fetch_responder_refused_total"),
        "{metrics:.2000}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_bridge_returns_the_document() {
    let mut stack = stack(true).await;
    put_document(&stack, json!({"id": "web", "title": "over http"})).await;
    let gateway = stack.start_service("api-gateway").await;
    let base = format!("http://127.0.0.1:{}", gateway.host_port(8080).await);
    let get = |path: &'static str, user: Option<&'static str>| {
        let base = base.clone();
        async move {
            let mut headers: Vec<(&str, &str)> = vec![("x-api-key", lambdaless_testkit::API_KEY)];
            headers.extend(user.map(|u| ("x-user-id", u)));
            let r = lambdaless_client::stream::request(&base, "GET", path, &headers)
                .await
                .unwrap();
            let status = r.status;
            let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
            (status, body)
        }
    };
    let (status, body) = get("/fetch/web", Some(USER)).await;
    assert_eq!(
        (status, body),
        (200, json!({"id": "web", "title": "over http"}))
    );
    let (status, body) = get("/fetch/nope", Some(USER)).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = get("/fetch/web", None).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = get("/fetch/web", Some("nobody")).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("does not exist"),
        "{body}"
    );
    // The bridge sits behind the gateway's authorizer.
    let anonymous =
        lambdaless_client::stream::request(&base, "GET", "/fetch/web", &[("x-user-id", USER)])
            .await
            .unwrap();
    assert_eq!(anonymous.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_fetch_prints_the_document_and_fails_on_a_missing_one() {
    let stack = stack(true).await;
    put_document(&stack, json!({"id": "cli-doc", "title": "from the CLI"})).await;
    let (code, out) = stack
        .run_once("lambdaless", &["fetch", "cli-doc", "--user", USER], &[])
        .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"title\": \"from the CLI\""), "{out}");
    let (code, out) = stack
        .run_once(
            "lambdaless",
            &["fetch", "gone", "--user", USER, "--timeout", "20"],
            &[],
        )
        .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("document \"gone\" not found"), "{out}");
}
