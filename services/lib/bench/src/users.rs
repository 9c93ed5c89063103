//! `bench users`: the users API of api-gateway against the one raw call each
//! route cannot do without, by the same process in the same run, alternating:
//! `POST /users` vs a raw SendMessage of the same body to `users-create`, and
//! `GET /users/{id}` vs a raw GetItem of the same user.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use lambdaless_contracts::{names, Names};
use lambdaless_runtime::aws::{describe, AwsClients};
use serde_json::{json, Value};

use super::http::Connection;
use super::quantile;
use super::report::{Measure, Row, Section};

pub(crate) struct Options {
    pub(crate) url: String,
    pub(crate) api_key: String,
    pub(crate) samples: usize,
}

fn latency(v: &[Duration]) -> Measure {
    Measure::Latency {
        p50: quantile(v, 0.5),
        p99: quantile(v, 0.99),
    }
}

pub(crate) async fn run(aws: AwsClients, names: Names, o: Options) -> anyhow::Result<Section> {
    let mut http = Connection::open(&o.url, &[("x-api-key", &o.api_key)]).await?;
    let queue = aws
        .sqs
        .get_queue_url()
        .queue_name(names.name(names::USERS_CREATE))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(describe(&e)))?
        .queue_url
        .unwrap_or_default();
    let run_id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let body = |i: usize| {
        json!({"name": format!("bench user {run_id} {i}"), "email": format!("bench-{run_id}-{i}@example.com")}).to_string()
    };

    // POST /users vs SendMessage.
    let (mut api, mut raw) = (Vec::new(), Vec::new());
    let mut first_message = None;
    for i in 0..o.samples + 10 {
        let b = body(i);
        let t = Instant::now();
        let reply = http.send("POST", "/users", b.as_bytes()).await?;
        let took = t.elapsed();
        anyhow::ensure!(
            reply.status == 202,
            "POST /users answered {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        if first_message.is_none() {
            let v: Value = serde_json::from_slice(&reply.body)?;
            first_message = v["messageId"].as_str().map(str::to_owned);
        }
        let t = Instant::now();
        aws.sqs
            .send_message()
            .queue_url(&queue)
            .message_body(body(i + 1_000_000))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(describe(&e)))?;
        if i >= 10 {
            api.push(took);
            raw.push(t.elapsed());
        }
    }

    // The first user, once mover has created it.
    let message_id = first_message.unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    let user_id = loop {
        let reply = http
            .send("GET", &format!("/status/{message_id}"), b"")
            .await?;
        if reply.status == 200 {
            let v: Value = serde_json::from_slice(&reply.body)?;
            break v["userId"].as_str().unwrap_or_default().to_owned();
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "mover did not create the user of message {message_id} within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // GET /users/{id} vs GetItem.
    let table = names.name(names::USERS);
    let (mut get_api, mut get_raw) = (Vec::new(), Vec::new());
    for i in 0..o.samples + 10 {
        let t = Instant::now();
        let reply = http.send("GET", &format!("/users/{user_id}"), b"").await?;
        let took = t.elapsed();
        anyhow::ensure!(reply.status == 200, "GET /users answered {}", reply.status);
        let t = Instant::now();
        let item = aws
            .dynamodb
            .get_item()
            .table_name(&table)
            .key("userId", AttributeValue::S(user_id.clone()))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(describe(&e)))?;
        anyhow::ensure!(item.item.is_some(), "user {user_id} not in the table");
        if i >= 10 {
            get_api.push(took);
            get_raw.push(t.elapsed());
        }
    }

    Ok(Section {
        key: "users",
        title: format!("Users API, {} sequential requests per route", o.samples),
        command: format!("lambdaless bench users --samples {}", o.samples),
        baseline: "the raw call each route needs, by the same process, alternating".to_owned(),
        rows: vec![
            Row::new(
                "POST /users (validate, SendMessage, 202) vs raw SendMessage",
                latency(&api),
                Some(latency(&raw)),
                "p50 ≤ 1.2×",
            ),
            Row::new(
                "GET /users/{id} vs raw GetItem",
                latency(&get_api),
                Some(latency(&get_raw)),
                "p50 ≤ 1.2×",
            ),
        ],
        notes: vec!["HTTP over one keep-alive connection, as the SDK keeps its own.".to_owned()],
    })
}
