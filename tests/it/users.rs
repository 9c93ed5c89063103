//! Seed 4 through real containers: the users API of api-gateway with auth,
//! validation, throttling and OpenAPI, and the users pipeline of mover.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::QueueAttributeName;
use lambdaless_contracts::names;
use lambdaless_testkit::{eventually, Stack, API_KEY};
use serde_json::json;

use crate::http::{counter, jwt, request};

const SECRET: &str = "test-jwt-secret";

async fn gateway(stack: &mut Stack, extra: &[(&str, &str)]) -> u16 {
    let keys = format!("{API_KEY}=*,reader=users:read");
    let mut env = vec![
        ("LAMBDALESS_AUTH__API_KEYS", keys.as_str()),
        ("LAMBDALESS_AUTH__JWT_SECRET", SECRET),
    ];
    env.extend_from_slice(extra);
    stack.start_service_unchecked("api-gateway", &env).await;
    let running = stack.service("api-gateway");
    lambdaless_testkit::wait_ready(running, 8080).await;
    running.host_port(8080).await
}

const KEY: (&str, &str) = ("x-api-key", API_KEY);
const JSON: (&str, &str) = ("content-type", "application/json");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_api_creates_and_reads_users() {
    let mut stack = Stack::start().await;
    stack.provision().await;
    stack.start_broker().await;
    stack.start_service("mover").await;
    let port = gateway(&mut stack, &[]).await;
    let alice = r#"{"name":"Alice Smith","email":"alice@example.com"}"#;

    // Auth: none, bad key, wrong scope (key and JWT), JWT with the scope.
    let r = request(port, "POST", "/users", &[JSON], Some(alice)).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.json()["message"].is_string());
    let r = request(
        port,
        "POST",
        "/users",
        &[JSON, ("x-api-key", "wrong")],
        Some(alice),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
    let r = request(
        port,
        "POST",
        "/users",
        &[JSON, ("x-api-key", "reader")],
        Some(alice),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("users:write"));
    let no_scope = format!(
        "Bearer {}",
        jwt(
            json!({"sub":"bob","scope":"users:read","exp":4_000_000_000u64}),
            SECRET
        )
    );
    let r = request(
        port,
        "POST",
        "/users",
        &[JSON, ("authorization", &no_scope)],
        Some(alice),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let forged = format!(
        "Bearer {}",
        jwt(
            json!({"scope":"users:write","exp":4_000_000_000u64}),
            "other"
        )
    );
    let r = request(
        port,
        "POST",
        "/users",
        &[JSON, ("authorization", &forged)],
        Some(alice),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
    let scoped = format!(
        "Bearer {}",
        jwt(
            json!({"sub":"bob","scopes":["users:write"],"exp":4_000_000_000u64}),
            SECRET
        )
    );
    let r = request(
        port,
        "POST",
        "/users",
        &[JSON, ("authorization", &scoped)],
        Some(alice),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);

    // Validation names the field; refusals share one JSON shape.
    for (body, status, needle) in [
        (r#"{"name":"Al","email":"al@example.com"}"#, 400, "name"),
        (
            &*format!(
                r#"{{"name":"{}","email":"a@example.com"}}"#,
                "x".repeat(101)
            ),
            400,
            "name",
        ),
        (
            r#"{"name":"Alice Smith","email":"not-an-address"}"#,
            400,
            "email",
        ),
        (r#"{"name":"Alice Smith"}"#, 400, "email"),
        (
            r#"{"name":"Alice Smith","email":"a@example.com","admin":true}"#,
            400,
            "admin",
        ),
        ("{not json", 400, ""),
    ] {
        let r = request(port, "POST", "/users", &[JSON, KEY], Some(body)).await;
        assert_eq!(r.status, status, "{body}: {}", r.body);
        let message = r.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains(needle), "{body}: {message}");
    }
    let r = request(
        port,
        "POST",
        "/users",
        &[KEY, ("content-type", "text/plain")],
        Some(alice),
    )
    .await;
    assert_eq!(r.status, 415, "{}", r.body);
    assert!(r.json()["message"].is_string());
    let huge = format!(
        r#"{{"name":"{}","email":"a@example.com"}}"#,
        "x".repeat(64 * 1024)
    );
    let r = request(port, "POST", "/users", &[JSON, KEY], Some(&huge)).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.json()["message"].is_string());

    // The happy path: 202 with the message id three times, then the user appears.
    let r = request(port, "POST", "/users", &[JSON, KEY], Some(alice)).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let message_id = r.json()["messageId"].as_str().unwrap().to_owned();
    assert_eq!(r.header("x-sqs-message-id"), Some(message_id.as_str()));
    assert_eq!(
        r.header("location"),
        Some(format!("/status/{message_id}").as_str())
    );
    assert!(r.header("x-request-id").is_some_and(|v| !v.is_empty()));

    let status_path = format!("/status/{message_id}");
    let status = eventually(Duration::from_secs(30), "the user to be created", || {
        let path = status_path.clone();
        async move {
            let r = request(port, "GET", &path, &[KEY], None).await;
            (r.status == 200).then(|| r.json())
        }
    })
    .await;
    assert_eq!(status["messageId"], message_id.as_str());
    let user_id = status["userId"].as_str().unwrap().to_owned();
    assert_eq!(user_id, lambdaless_contracts::user::user_id(&message_id));

    let r = request(
        port,
        "GET",
        &format!("/users/{user_id}"),
        &[("x-api-key", "reader")],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let user = r.json();
    assert_eq!(user["userId"], user_id.as_str());
    assert_eq!(user["name"], "Alice Smith");
    assert_eq!(user["email"], "alice@example.com");
    assert!(user["createdAt"].as_str().unwrap().contains('T'));
    // The reply queue of seed 1 exists.
    stack
        .aws
        .sqs
        .get_queue_url()
        .queue_name(stack.names.user_queue(&user_id))
        .send()
        .await
        .expect("user-queue-{userId} was created");

    // 404s with their documented messages; reads need a credential too.
    let r = request(port, "GET", "/users/nobody", &[KEY], None).await;
    assert_eq!(
        (r.status, r.json()["message"].clone()),
        (404, json!("user not found"))
    );
    let r = request(port, "GET", "/status/no-such-message", &[KEY], None).await;
    assert_eq!(
        (r.status, r.json()["message"].clone()),
        (404, json!("message ID not found"))
    );
    let r = request(port, "GET", &format!("/users/{user_id}"), &[], None).await;
    assert_eq!(r.status, 401);

    // OpenAPI needs no credential and describes the validation.
    let r = request(port, "GET", "/openapi.json", &[], None).await;
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert_eq!(
        doc["components"]["schemas"]["CreateUser"]["properties"]["name"]["minLength"],
        5
    );
    assert!(doc["paths"]["/status/{messageId}"].is_object());

    // CORS preflight is answered before auth.
    let r = request(
        port,
        "OPTIONS",
        "/users",
        &[
            ("origin", "http://example.com"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type,x-api-key"),
        ],
        None,
    )
    .await;
    assert!(r.status < 300, "{} {}", r.status, r.body);
    assert!(r.header("access-control-allow-origin").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_over_its_rate_gets_429_with_retry_after() {
    let mut stack = Stack::start().await;
    stack.provision().await;
    let port = gateway(
        &mut stack,
        &[
            ("LAMBDALESS_THROTTLE__RATE_PER_SEC", "0.2"),
            ("LAMBDALESS_THROTTLE__BURST", "3"),
        ],
    )
    .await;
    for _ in 0..3 {
        let r = request(port, "GET", "/users/nobody", &[KEY], None).await;
        assert_eq!(r.status, 404, "{}", r.body);
    }
    let r = request(port, "GET", "/users/nobody", &[KEY], None).await;
    assert_eq!(r.status, 429, "{}", r.body);
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=5).contains(&retry), "Retry-After {retry}");
    assert!(r.json()["message"].is_string());
    // Another principal has its own bucket.
    let r = request(
        port,
        "GET",
        "/users/nobody",
        &[("x-api-key", "reader")],
        None,
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body);
    // Health stays outside throttling.
    let r = request(port, "GET", "/healthz", &[], None).await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_users_create_message_makes_one_user() {
    let mut stack = Stack::start().await;
    stack.provision().await;
    stack.start_broker().await;
    let sqs = &stack.aws.sqs.clone();
    let url = sqs
        .get_queue_url()
        .queue_name(stack.names.name(names::USERS_CREATE))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    // Every receive sees the message again until it is deleted: each poller
    // gets a redelivery of the same MessageId.
    sqs.set_queue_attributes()
        .queue_url(&url)
        .attributes(QueueAttributeName::VisibilityTimeout, "0")
        .send()
        .await
        .unwrap();
    let sent = sqs
        .send_message()
        .queue_url(&url)
        .message_body(r#"{"name":"Carol Jones","email":"carol@example.com"}"#)
        .send()
        .await
        .unwrap();
    let message_id = sent.message_id.unwrap();
    // A first delivery to another consumer, not deleted.
    let first = sqs.receive_message().queue_url(&url).send().await.unwrap();
    assert_eq!(
        first.messages.unwrap()[0].message_id.as_deref(),
        Some(message_id.as_str())
    );

    stack
        .start_service_unchecked("mover", &[("LAMBDALESS_USERS__POLLERS", "4")])
        .await;
    lambdaless_testkit::wait_ready(stack.service("mover"), 9090).await;
    let admin = stack.service("mover").host_port(9090).await;
    let user_id = lambdaless_contracts::user::user_id(&message_id);
    let table = stack.names.name(names::USERS);
    let db = stack.aws.dynamodb.clone();
    eventually(Duration::from_secs(30), "the user to be stored", || {
        let (db, table, user_id) = (db.clone(), table.clone(), user_id.clone());
        async move {
            db.get_item()
                .table_name(table)
                .key("userId", AttributeValue::S(user_id))
                .send()
                .await
                .ok()?
                .item
        }
    })
    .await;
    // Let any other in-flight copies finish, then count.
    eventually(Duration::from_secs(30), "the message to be deleted", || {
        let (sqs, url) = (sqs.clone(), url.clone());
        async move {
            let out = sqs
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .send()
                .await
                .ok()?;
            let n = out
                .attributes?
                .get(&QueueAttributeName::ApproximateNumberOfMessages)?
                .clone();
            (n == "0").then_some(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let scan = db.scan().table_name(&table).send().await.unwrap();
    let items = scan.items.unwrap_or_default();
    assert_eq!(items.len(), 1, "exactly one user: {items:?}");
    assert_eq!(
        items[0]["sqsMessageId"],
        AttributeValue::S(message_id.clone())
    );
    let (_, metrics) = lambdaless_testkit::http_get(admin, "/metrics")
        .await
        .unwrap();
    let stored = counter(&metrics, "mover_messages_total", &["users", "stored"]);
    eprintln!("users-create message {message_id} was stored {stored} time(s)");
    assert!(stored >= 1.0, "{metrics}");
}
