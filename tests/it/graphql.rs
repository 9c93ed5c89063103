//! Seed 3 through real containers: the GraphQL orders API of api-gateway,
//! its totals, its batched loading and its read-through cache.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use lambdaless_contracts::names;
use lambdaless_testkit::{Stack, API_KEY};
use serde_json::{json, Value};

use crate::http::{counter, request};

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}
fn n(v: &str) -> AttributeValue {
    AttributeValue::N(v.to_owned())
}

async fn put(stack: &Stack, table: &str, items: Vec<Vec<(&str, AttributeValue)>>) {
    let requests: Vec<WriteRequest> = items
        .into_iter()
        .map(|i| {
            let item: HashMap<String, AttributeValue> =
                i.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            WriteRequest::builder()
                .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
                .build()
        })
        .collect();
    for chunk in requests.chunks(25) {
        stack
            .aws
            .dynamodb
            .batch_write_item()
            .request_items(stack.names.name(table), chunk.to_vec())
            .send()
            .await
            .unwrap();
    }
}

/// Customer `c10` with 10 orders × 3 items (ink + tape + glue = 9.00 each),
/// products no earlier query has cached.
async fn seed_ten_orders(stack: &Stack) {
    let products = [("ink", "2.00"), ("tape", "3.00"), ("glue", "4.00")]
        .into_iter()
        .map(|(id, price)| {
            vec![
                ("productId", s(id)),
                ("productName", s(id)),
                ("price", n(price)),
            ]
        })
        .collect();
    put(stack, names::PRODUCTS, products).await;
    let orders = (1..=10)
        .map(|i| {
            vec![
                ("orderId", s(&format!("c10-{i}"))),
                ("customerId", s("c10")),
                ("orderRef", n(&i.to_string())),
                ("createdAt", s("2024-02-01T00:00:00Z")),
            ]
        })
        .collect();
    put(stack, names::ORDERS, orders).await;
    let mut items = Vec::new();
    for i in 1..=10 {
        for (j, product) in ["ink", "tape", "glue"].into_iter().enumerate() {
            items.push(vec![
                ("orderId", s(&format!("c10-{i}"))),
                ("orderItemId", s(&j.to_string())),
                ("productId", s(product)),
                ("quantity", n("1")),
            ]);
        }
    }
    put(stack, names::ORDER_ITEMS, items).await;
}

/// Customer 4567 with orders 52 (2 notebooks + 3 pens = 44.48) and 53 (a mug + a notebook = 27.24).
async fn seed(stack: &Stack) {
    put(
        stack,
        names::CUSTOMERS,
        vec![vec![
            ("customerId", s("4567")),
            ("name", s("Jane Doe")),
            ("email", s("jane@example.com")),
        ]],
    )
    .await;
    put(
        stack,
        names::PRODUCTS,
        vec![
            vec![
                ("productId", s("notebook")),
                ("productName", s("notebook_red")),
                ("price", n("19.99")),
            ],
            vec![
                ("productId", s("pen")),
                ("productName", s("pen_blue")),
                ("price", n("1.50")),
            ],
            vec![
                ("productId", s("mug")),
                ("productName", s("mug_white")),
                ("price", n("7.25")),
            ],
        ],
    )
    .await;
    put(
        stack,
        names::ORDERS,
        vec![
            vec![
                ("orderId", s("52")),
                ("customerId", s("4567")),
                ("orderRef", n("123123")),
                ("createdAt", s("2024-01-01T00:00:00Z")),
            ],
            vec![
                ("orderId", s("53")),
                ("customerId", s("4567")),
                ("orderRef", n("7")),
                ("createdAt", s("2024-01-02T00:00:00Z")),
            ],
        ],
    )
    .await;
    put(
        stack,
        names::ORDER_ITEMS,
        vec![
            vec![
                ("orderId", s("52")),
                ("orderItemId", s("1")),
                ("productId", s("notebook")),
                ("quantity", n("2")),
            ],
            vec![
                ("orderId", s("52")),
                ("orderItemId", s("2")),
                ("productId", s("pen")),
                ("quantity", n("3")),
            ],
            vec![
                ("orderId", s("53")),
                ("orderItemId", s("1")),
                ("productId", s("mug")),
                ("quantity", n("1")),
            ],
            vec![
                ("orderId", s("53")),
                ("orderItemId", s("2")),
                ("productId", s("notebook")),
                ("quantity", n("1")),
            ],
        ],
    )
    .await;
}

async fn gql(port: u16, query: &str) -> (u16, Value) {
    let body = json!({ "query": query }).to_string();
    let r = request(
        port,
        "POST",
        "/graphql",
        &[("content-type", "application/json"), ("x-api-key", API_KEY)],
        Some(&body),
    )
    .await;
    (r.status, r.json())
}

async fn calls(port: u16, operation: &str) -> f64 {
    let (_, metrics) = lambdaless_testkit::http_get(port, "/metrics")
        .await
        .unwrap();
    counter(
        &metrics,
        "dynamodb_calls_total",
        &[&format!("operation=\"{operation}\"")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_orders_totals_batching_and_cache() {
    let mut stack = Stack::start().await;
    stack.provision().await;
    seed(&stack).await;
    stack
        .start_service_unchecked(
            "api-gateway",
            &[(
                "LAMBDALESS_AUTH__API_KEYS",
                "local-dev-key=*,users=users:read",
            )],
        )
        .await;
    lambdaless_testkit::wait_ready(stack.service("api-gateway"), 8080).await;
    let port = stack.service("api-gateway").host_port(8080).await;

    // Batched: 2 orders → 1 index Query + ONE items statement for both
    // orders + ONE BatchGetItem for all products.
    let (q0, e0, b0) = (
        calls(port, "Query").await,
        calls(port, "ExecuteStatement").await,
        calls(port, "BatchGetItem").await,
    );
    let query = r#"{ orders(customerId: "4567") { orderId items { quantity product { productId price } } } }"#;
    let (status, body) = gql(port, query).await;
    assert_eq!(status, 200);
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(
        body["data"]["orders"].as_array().unwrap().len(),
        2,
        "{body}"
    );
    assert_eq!(calls(port, "Query").await - q0, 1.0, "the index query");
    assert_eq!(
        calls(port, "ExecuteStatement").await - e0,
        1.0,
        "items of both orders in one statement"
    );
    assert_eq!(
        calls(port, "BatchGetItem").await - b0,
        1.0,
        "products in one batch"
    );

    // The same query again is served from the cache: no DynamoDB call at all.
    let all = |p| async move {
        calls(p, "Query").await
            + calls(p, "ExecuteStatement").await
            + calls(p, "BatchGetItem").await
            + calls(p, "GetItem").await
    };
    let before = all(port).await;
    let (_, again) = gql(port, query).await;
    assert_eq!(again, body);
    assert_eq!(all(port).await - before, 0.0, "a repeat touches DynamoDB");
    let (_, metrics) = lambdaless_testkit::http_get(port, "/metrics")
        .await
        .unwrap();
    assert!(counter(&metrics, "graphql_cache_total", &["hit"]) > 0.0);

    // 10 orders × 3 items cost the same three calls as 2 orders did.
    seed_ten_orders(&stack).await;
    let before = all(port).await;
    let (_, body) = gql(
        port,
        r#"{ orders(customerId: "c10") { orderId total items { orderItemId product { productName price } } } }"#,
    )
    .await;
    assert!(body.get("errors").is_none(), "{body}");
    let ten = body["data"]["orders"].as_array().unwrap();
    assert_eq!(ten.len(), 10, "{body}");
    for order in ten {
        assert_eq!(order["items"].as_array().unwrap().len(), 3, "{order}");
        assert_eq!(order["total"], 9.0, "{order}");
    }
    assert_eq!(
        all(port).await - before,
        3.0,
        "index Query + items statement + products BatchGetItem"
    );

    // Nested query with totals = Σ quantity × price.
    let (_, body) = gql(port, r#"{ customer(customerId: "4567") { name email orders { orderId orderRef total customer { customerId } items { orderItemId quantity order { orderId } product { productName price } } } } }"#).await;
    assert!(body.get("errors").is_none(), "{body}");
    let customer = &body["data"]["customer"];
    assert_eq!(customer["name"], "Jane Doe");
    let orders = customer["orders"].as_array().unwrap();
    let o52 = orders.iter().find(|o| o["orderId"] == "52").unwrap();
    assert_eq!(o52["orderRef"], 123123);
    assert_eq!(o52["total"], 44.48);
    assert_eq!(o52["customer"]["customerId"], "4567");
    assert_eq!(o52["items"][0]["product"]["productName"], "notebook_red");
    assert_eq!(o52["items"][0]["order"]["orderId"], "52");
    let o53 = orders.iter().find(|o| o["orderId"] == "53").unwrap();
    assert_eq!(o53["total"], 27.24);

    // The other root fields.
    let (_, body) = gql(port, r#"{ product(productId: "notebook") { productName price } order(orderId: "52") { orderRef total } orderItems(orderId: "53") { quantity product { productId } } missing: product(productId: "nope") { price } }"#).await;
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(
        body["data"]["product"],
        json!({"productName": "notebook_red", "price": 19.99})
    );
    assert_eq!(
        body["data"]["order"],
        json!({"orderRef": 123123, "total": 44.48})
    );
    assert_eq!(body["data"]["orderItems"].as_array().unwrap().len(), 2);
    assert_eq!(body["data"]["missing"], Value::Null);

    // Errors are GraphQL errors, never a crash.
    let (status, body) = gql(port, "{ product(productId: \"notebook\") { nope } }").await;
    assert_eq!(status, 200);
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("nope"),
        "{body}"
    );
    let deep = r#"{ order(orderId: "52") { customer { orders { customer { orders { customer { orders { items { order { customer { name } } } } } } } } } } }"#;
    let (_, body) = gql(port, deep).await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("nested too deep"),
        "{body}"
    );
    let (_, body) = gql(port, "{ product(").await;
    assert!(body["errors"].is_array(), "{body}");

    // Auth: no key 401, key without orders:read 403. The playground is a page.
    let r = request(
        port,
        "POST",
        "/graphql",
        &[("content-type", "application/json")],
        Some(r#"{"query":"{ product(productId: \"pen\") { price } }"}"#),
    )
    .await;
    assert_eq!(r.status, 401);
    let r = request(
        port,
        "POST",
        "/graphql",
        &[("content-type", "application/json"), ("x-api-key", "users")],
        Some(r#"{"query":"{ product(productId: \"pen\") { price } }"}"#),
    )
    .await;
    assert_eq!(r.status, 403);
    let r = request(port, "GET", "/graphql", &[], None).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("<textarea") && !r.body.contains("https://"),
        "offline page"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_of_nested_lists_is_refused_before_any_read() {
    let mut stack = Stack::start().await;
    stack.provision().await;
    seed(&stack).await;
    stack.start_service("api-gateway").await;
    let port = stack.service("api-gateway").host_port(8080).await;
    let level = r#"customer(customerId: "4567") { orders { customer { orders { customer { orders { customer { name } } } } } } }"#;
    let fan_out = format!(
        "{{ {} }}",
        (0..60)
            .map(|i| format!("a{i}: {level}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let reads = |port| async move {
        let (_, metrics) = lambdaless_testkit::http_get(port, "/metrics")
            .await
            .unwrap();
        counter(&metrics, "dynamodb_calls_total", &[])
    };
    let before = reads(port).await;
    let (status, body) = gql(port, &fan_out).await;
    assert_eq!(status, 200);
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("too complex") && message.contains("limit"),
        "{body}"
    );
    assert!(body["data"].is_null(), "{body}");
    assert_eq!(reads(port).await, before, "the refused query read nothing");
    // A modest nesting is fine, and answers.
    let modest =
        r#"{ customer(customerId: "4567") { orders { customer { orders { orderId } } } } }"#;
    let (_, body) = gql(port, modest).await;
    assert!(body.get("errors").is_none(), "{body}");
    assert!(
        body["data"]["customer"]["orders"][0]["customer"]["orders"][0]["orderId"].is_string(),
        "{body}"
    );
}
