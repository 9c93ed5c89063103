//! `bench load`: a sustained mixed load against the running stack — users
//! over HTTP, GraphQL queries, MQTT API requests, inbound device messages,
//! fetches and a stream, all at once for `--duration` seconds, with progress
//! every 5 s. Afterwards it checks that nothing was lost: every accepted
//! user exists, every device message sent is stored. Errors and losses are
//! reported and make the command fail.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use lambdaless_contracts::{names, Names};
use lambdaless_runtime::aws::{describe, AwsClients};
use serde_json::{json, Value};

use super::http::Connection;
use super::quantile;
use super::report::{Measure, Row, Section};
use lambdaless_client::device::{MqttArgs, Session};
use lambdaless_client::fetch::FetchClient;

pub(crate) struct Options {
    pub(crate) url: String,
    pub(crate) streamer_url: String,
    pub(crate) api_key: String,
    pub(crate) mqtt: MqttArgs,
    pub(crate) duration: Duration,
}

/// Latencies and errors of one kind of work.
#[derive(Default)]
struct Tally {
    samples: Mutex<Vec<Duration>>,
    errors: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Tally {
    fn ok(&self, d: Duration) {
        self.samples.lock().expect("tally").push(d);
    }
    fn err(&self, e: impl std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().expect("tally") = Some(e.to_string());
    }
    fn count(&self) -> usize {
        self.samples.lock().expect("tally").len()
    }
}

const KINDS: [&str; 6] = ["users", "graphql", "mqtt", "devices", "fetch", "stream"];

pub(crate) async fn run(aws: AwsClients, names: Names, o: Options) -> anyhow::Result<Section> {
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let tallies: Arc<HashMap<&'static str, Tally>> =
        Arc::new(KINDS.iter().map(|k| (*k, Tally::default())).collect());
    let deadline = Instant::now() + o.duration;
    let until = move || Instant::now() < deadline;

    // Setup: the fetch user's reply queue, a document to fetch, a product
    // to query, the inbound queue.
    lambdaless_client::provision::Provisioner::new(aws.clone(), names.clone())
        .provision(&["load".to_owned()])
        .await?;
    aws.dynamodb
        .put_item()
        .table_name(names.name(names::DOCUMENTS))
        .item("id", AttributeValue::S(format!("load-{run}")))
        .item("title", AttributeValue::S("load".into()))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(describe(&e)))?;
    aws.dynamodb
        .put_item()
        .table_name(names.name(names::PRODUCTS))
        .item("productId", AttributeValue::S(format!("load-{run}")))
        .item("productName", AttributeValue::S("load".into()))
        .item("price", AttributeValue::N("1.25".into()))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(describe(&e)))?;
    let inbound = aws
        .sqs
        .get_queue_url()
        .queue_name(names.name(names::DEVICE_INBOUND))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(describe(&e)))?
        .queue_url
        .unwrap_or_default();
    let accepted_users: Arc<Mutex<Vec<String>>> = Arc::default();
    let sent_devices = Arc::new(AtomicU64::new(0));
    let thing = format!("load-{run}");

    let mut tasks = Vec::new();
    // Users: 2 workers, ~10 requests/s each.
    for w in 0..2 {
        let (t, url, key, accepted) = (
            tallies.clone(),
            o.url.clone(),
            o.api_key.clone(),
            accepted_users.clone(),
        );
        let run = run.clone();
        tasks.push(tokio::spawn(async move {
            let mut http = match Connection::open(&url, &[("x-api-key", &key)]).await {
                Ok(c) => c,
                Err(e) => return t["users"].err(e),
            };
            let mut i = 0;
            while until() {
                i += 1;
                let body = json!({"name": format!("Load {run} {w} {i}"), "email": format!("load-{run}-{w}-{i}@example.com")}).to_string();
                let s = Instant::now();
                match http.send("POST", "/users", body.as_bytes()).await {
                    Ok(r) if r.status == 202 => {
                        t["users"].ok(s.elapsed());
                        if let Some(id) = serde_json::from_slice::<Value>(&r.body).ok().and_then(|v| v["messageId"].as_str().map(str::to_owned)) {
                            accepted.lock().expect("accepted").push(id);
                        }
                    }
                    Ok(r) => t["users"].err(format!("POST /users {}", r.status)),
                    Err(e) => {
                        t["users"].err(e);
                        if let Ok(c) = Connection::open(&url, &[("x-api-key", &key)]).await {
                            http = c;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    // GraphQL: 2 workers, cached product + an uncached-then-cached customer query.
    for _ in 0..2 {
        let (t, url, key, run) = (
            tallies.clone(),
            o.url.clone(),
            o.api_key.clone(),
            run.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut http = match Connection::open(&url, &[("x-api-key", &key)]).await {
                Ok(c) => c,
                Err(e) => return t["graphql"].err(e),
            };
            let queries = [
                json!({"query": format!("{{ product(productId: \"load-{run}\") {{ productName price }} }}")}).to_string(),
                json!({"query": "{ orders(customerId: \"4567\") { orderId total items { quantity product { price } } } }"}).to_string(),
            ];
            let mut i = 0;
            while until() {
                i += 1;
                let s = Instant::now();
                match http.send("POST", "/graphql", queries[i % 2].as_bytes()).await {
                    Ok(r) if r.status == 200 => {
                        let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                        if v.get("errors").is_some() {
                            t["graphql"].err(format!("GraphQL errors: {v}"));
                        } else {
                            t["graphql"].ok(s.elapsed());
                        }
                    }
                    Ok(r) => t["graphql"].err(format!("POST /graphql {}", r.status)),
                    Err(e) => t["graphql"].err(e),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    // MQTT API: 2 sessions asking `query` for the load's thing.
    for _ in 0..2 {
        let (t, args, thing) = (tallies.clone(), o.mqtt.clone(), thing.clone());
        tasks.push(tokio::spawn(async move {
            let mut session = match Session::connect(&args, &[]).await {
                Ok(s) => s,
                Err(e) => return t["mqtt"].err(e),
            };
            while until() {
                let s = Instant::now();
                match session
                    .request("query", &thing, None, json!({}), Duration::from_secs(10))
                    .await
                {
                    Ok(_) => t["mqtt"].ok(s.elapsed()),
                    Err(e) => t["mqtt"].err(e),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    // Device messages: batches of 10 every 200 ms (50/s).
    {
        let (t, aws, inbound, thing, sent) = (
            tallies.clone(),
            aws.clone(),
            inbound.clone(),
            thing.clone(),
            sent_devices.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut seq = 0u64;
            while until() {
                let entries: Vec<_> = (0..10)
                    .map(|i| {
                        SendMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .message_body(
                                json!({"thingName": thing, "epochTime": (seq + i).to_string()})
                                    .to_string(),
                            )
                            .build()
                            .expect("entry")
                    })
                    .collect();
                let s = Instant::now();
                match aws
                    .sqs
                    .send_message_batch()
                    .queue_url(&inbound)
                    .set_entries(Some(entries))
                    .send()
                    .await
                {
                    Ok(out) if out.failed.is_empty() => {
                        t["devices"].ok(s.elapsed());
                        sent.fetch_add(out.successful.len() as u64, Ordering::Relaxed);
                    }
                    Ok(out) => t["devices"].err(format!("{} entries failed", out.failed.len())),
                    Err(e) => t["devices"].err(describe(&e)),
                }
                seq += 10;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
    }
    // Fetches: one client, sequential.
    {
        let (t, client, run) = (
            tallies.clone(),
            FetchClient::new(aws.sqs.clone(), names.clone()),
            run.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while until() {
                let s = Instant::now();
                match client
                    .fetch(&format!("load-{run}"), "load", Duration::from_secs(20))
                    .await
                {
                    Ok(_) => t["fetch"].ok(s.elapsed()),
                    Err(e) => t["fetch"].err(e),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    // A stream of the artists table, again and again.
    {
        let (t, url, key) = (tallies.clone(), o.streamer_url.clone(), o.api_key.clone());
        tasks.push(tokio::spawn(async move {
            while until() {
                let s = Instant::now();
                let result = async {
                    let mut r = lambdaless_client::stream::request(
                        &url,
                        "GET",
                        "/stream/artists?page_size=200",
                        &[("x-api-key", &key)],
                    )
                    .await?;
                    anyhow::ensure!(r.status == 200, "stream answered {}", r.status);
                    let mut lines = 0u64;
                    while let Some(line) = r.next_line().await? {
                        anyhow::ensure!(!line.contains("\"error\""), "stream error line: {line}");
                        lines += 1;
                    }
                    anyhow::Ok(lines)
                }
                .await;
                match result {
                    Ok(_) => t["stream"].ok(s.elapsed()),
                    Err(e) => t["stream"].err(e),
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
    }

    // Progress.
    let started = Instant::now();
    while until() {
        tokio::time::sleep(
            Duration::from_secs(5).min(deadline.saturating_duration_since(Instant::now())),
        )
        .await;
        let line: Vec<String> = KINDS
            .iter()
            .map(|k| {
                format!(
                    "{k} {} ({} err)",
                    tallies[k].count(),
                    tallies[k].errors.load(Ordering::Relaxed)
                )
            })
            .collect();
        eprintln!(
            "[{:>3} s] {}",
            started.elapsed().as_secs(),
            line.join(" · ")
        );
    }
    for t in tasks {
        let _ = t.await;
    }

    // Nothing lost: every accepted user exists, every device message is stored.
    eprintln!("load: checking that every accepted user and device message was stored…");
    let accepted = accepted_users.lock().expect("accepted").clone();
    let sent = sent_devices.load(Ordering::Relaxed);
    let check_until = Instant::now() + Duration::from_secs(120);
    let (mut users_missing, mut devices_missing);
    loop {
        users_missing = 0usize;
        for id in &accepted {
            let found = aws
                .dynamodb
                .query()
                .table_name(names.name(names::USERS))
                .index_name(lambdaless_contracts::schema::USERS_BY_SQS_MESSAGE_ID)
                .key_condition_expression("sqsMessageId = :m")
                .expression_attribute_values(":m", AttributeValue::S(id.clone()))
                .send()
                .await
                .map(|o| o.count)
                .unwrap_or(0);
            if found == 0 {
                users_missing += 1;
            }
        }
        let stored = stored_count(&aws, &names, &thing).await?;
        devices_missing = sent.saturating_sub(stored);
        if (users_missing == 0 && devices_missing == 0) || Instant::now() > check_until {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    let secs = o.duration.as_secs_f64();
    let mut rows = Vec::new();
    let mut errors = 0;
    let mut notes = Vec::new();
    for k in KINDS {
        let t = &tallies[k];
        let samples = t.samples.lock().expect("tally").clone();
        let e = t.errors.load(Ordering::Relaxed);
        errors += e;
        if let Some(last) = t.last_error.lock().expect("tally").clone() {
            notes.push(format!("{k}: last error: {last}"));
        }
        rows.push(Row::new(
            format!(
                "{k}: {} ok ({:.1}/s), {e} errors",
                samples.len(),
                samples.len() as f64 / secs
            ),
            Measure::Latency {
                p50: quantile(&samples, 0.5),
                p99: quantile(&samples, 0.99),
            },
            None,
            "zero errors",
        ));
    }
    notes.insert(
        0,
        format!(
            "Lost: {users_missing} of {} accepted users, {devices_missing} of {sent} device messages (checked after the load).",
            accepted.len()
        ),
    );
    let section = Section {
        key: "load",
        title: format!("Sustained mixed load, {} s", o.duration.as_secs()),
        command: format!("lambdaless bench load --duration {}", o.duration.as_secs()),
        baseline: "none: absolute latencies of each kind of work while all run at once".to_owned(),
        rows,
        notes,
    };
    anyhow::ensure!(
        errors == 0 && users_missing == 0 && devices_missing == 0,
        "{}\n{errors} errors, {users_missing} users and {devices_missing} device messages lost",
        section.markdown()
    );
    Ok(section)
}

async fn stored_count(aws: &AwsClients, names: &Names, thing: &str) -> anyhow::Result<u64> {
    let mut count = 0u64;
    let mut start = None;
    loop {
        let out = aws
            .dynamodb
            .query()
            .table_name(names.name(names::DEVICE_MESSAGES))
            .key_condition_expression("#u = :u")
            .expression_attribute_names("#u", "uuid")
            .expression_attribute_values(":u", AttributeValue::S(thing.to_owned()))
            .select(aws_sdk_dynamodb::types::Select::Count)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(describe(&e)))?;
        count += out.count as u64;
        start = out.last_evaluated_key;
        if start.is_none() {
            return Ok(count);
        }
    }
}
