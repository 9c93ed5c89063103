//! Seed 5 streaming against the `streamer` container and the real emulator:
//! completeness in every mode, incremental delivery, disconnects, refusals,
//! and the artists dump.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use lambdaless_client::stream::{request, Response};
use lambdaless_contracts::names;
use lambdaless_testkit::{eventually, http_get, Stack, API_KEY};
use serde_json::Value;

const PKS: [&str; 3] = ["dev-a", "dev-b", "dev-c"];
const ITEMS: usize = 3000;

/// A stack with the streamer and `device-messages` holding 3,000 items, 1,000 per pk.
async fn stack() -> (Stack, String) {
    let mut stack = Stack::start().await;
    stack.provision().await;
    let table = stack.names.name(names::DEVICE_MESSAGES);
    let writes: Vec<WriteRequest> = (0..ITEMS)
        .map(|i| {
            let item = HashMap::from([
                ("uuid".to_owned(), AttributeValue::S(PKS[i % 3].to_owned())),
                (
                    "messageId".to_owned(),
                    AttributeValue::S(format!("m-{i:05}")),
                ),
                ("n".to_owned(), AttributeValue::N(i.to_string())),
                ("pad".to_owned(), AttributeValue::S("x".repeat(100))),
            ]);
            WriteRequest::builder()
                .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
                .build()
        })
        .collect();
    for chunk in writes.chunks(25) {
        let mut pending = chunk.to_vec();
        while !pending.is_empty() {
            let out = stack
                .aws
                .dynamodb
                .batch_write_item()
                .request_items(&table, pending)
                .send()
                .await
                .unwrap();
            pending = out
                .unprocessed_items
                .and_then(|mut m| m.remove(&table))
                .unwrap_or_default();
        }
    }
    stack.start_service("streamer").await;
    let port = stack.service("streamer").host_port(8081).await;
    (stack, format!("http://127.0.0.1:{port}"))
}

async fn get(base: &str, path: &str) -> Response {
    request(base, "GET", path, &[("x-api-key", API_KEY)])
        .await
        .unwrap()
}

/// Every line of a successful stream, parsed.
async fn lines(base: &str, path: &str) -> Vec<Value> {
    let mut r = get(base, path).await;
    assert_eq!(r.status, 200, "{path}");
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let mut out = Vec::new();
    while let Some(line) = r.next_line().await.unwrap() {
        let v: Value = serde_json::from_str(&line).unwrap();
        assert!(v.get("error").is_none(), "{path} failed: {line}");
        out.push(v);
    }
    out
}

fn assert_exactly_once(items: &[Value], expected: usize, what: &str) {
    let keys: HashSet<(String, String)> = items
        .iter()
        .map(|v| {
            (
                v["uuid"].as_str().unwrap().to_owned(),
                v["messageId"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(items.len(), expected, "{what}: line count");
    assert_eq!(keys.len(), expected, "{what}: duplicates");
}

/// A counter or gauge of the streamer's `/metrics` (0 when not yet reported).
async fn metric(stack: &Stack, name: &str) -> f64 {
    let port = stack.service("streamer").host_port(8081).await;
    let (_, body) = http_get(port, "/metrics").await.unwrap();
    body.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with([' ', '{']))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_item_arrives_exactly_once_in_scan_query_and_parallel_scan() {
    let (_stack, base) = stack().await;
    let scan = lines(&base, "/stream/device-messages?page_size=250").await;
    assert_exactly_once(&scan, ITEMS, "scan");
    // Plain JSON, not DynamoDB's typed form.
    assert!(
        scan[0]["n"].is_number() && scan[0]["pad"].is_string(),
        "{}",
        scan[0]
    );

    let mut queried = Vec::new();
    for pk in PKS {
        let items = lines(
            &base,
            &format!("/stream/device-messages?mode=query&pk={pk}&page_size=300"),
        )
        .await;
        assert_eq!(items.len(), ITEMS / 3, "query {pk}");
        assert!(
            items.iter().all(|v| v["uuid"] == pk),
            "query {pk} leaked other pks"
        );
        queried.extend(items);
    }
    assert_exactly_once(&queried, ITEMS, "query");

    let parallel = lines(&base, "/stream/device-messages?segments=4&page_size=200").await;
    assert_exactly_once(&parallel, ITEMS, "parallel scan");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_line_arrives_before_the_scan_ends_and_a_disconnect_stops_the_reads() {
    let (stack, base) = stack().await;
    // One item per page: 3,000 pages to read in all.
    let mut r = get(&base, "/stream/device-messages?page_size=1").await;
    assert_eq!(r.status, 200);
    let first = r.next_line().await.unwrap().expect("a first line");
    assert!(serde_json::from_str::<Value>(&first).unwrap()["uuid"].is_string());
    let read_so_far = metric(&stack, "streamer_pages_read_total").await;
    assert!(
        read_so_far < ITEMS as f64,
        "the first line came only after all {read_so_far} pages were read"
    );
    assert_eq!(metric(&stack, "streamer_streams_active").await, 1.0);
    drop(r);
    eventually(
        Duration::from_secs(30),
        "the stream to be cancelled",
        || async {
            (metric(&stack, "streamer_streams_cancelled_total").await == 1.0).then_some(())
        },
    )
    .await;
    assert_eq!(metric(&stack, "streamer_streams_active").await, 0.0);
    let read = metric(&stack, "streamer_pages_read_total").await;
    assert!(
        read < ITEMS as f64,
        "reading went on to the end ({read} pages)"
    );
    let service = stack.service("streamer");
    assert!(service.state().0, "streamer died:\n{}", service.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_and_tables_are_refused_and_dump_writes_artists() {
    let mut stack = Stack::start().await;
    stack.provision().await;
    stack.start_service("streamer").await;
    let port = stack.service("streamer").host_port(8081).await;
    let base = format!("http://127.0.0.1:{port}");
    for (path, status) in [
        ("/stream/users", 404),
        ("/stream/nope", 404),
        ("/stream/artists?page_size=0", 400),
        ("/stream/artists?page_size=1001", 400),
        ("/stream/artists?page_size=ten", 400),
        ("/stream/artists?mode=sideways", 400),
        ("/stream/artists?mode=query", 400),
        ("/stream/artists?segments=0", 400),
        ("/stream/artists?mode=query&pk=a&segments=2", 400),
    ] {
        let r = get(&base, path).await;
        assert_eq!(r.status, status, "{path}");
        let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert!(body["message"].is_string(), "{path}: {body}");
    }
    let r = request(&base, "GET", "/stream/artists", &[]).await.unwrap();
    assert_eq!(r.status, 401, "no key");
    let r = request(&base, "POST", "/dump?count=0", &[("x-api-key", API_KEY)])
        .await
        .unwrap();
    assert_eq!(r.status, 400);

    let r = request(&base, "POST", "/dump?count=120", &[("x-api-key", API_KEY)])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let report: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(report["count"], 120);
    assert!(report["seconds"].is_number());
    let artists = lines(&base, "/stream/artists?page_size=50").await;
    assert_eq!(artists.len(), 120);
    for a in &artists {
        for field in ["id", "followers", "genres", "name", "popularity"] {
            assert!(a[field].is_string(), "{field} of {a}");
        }
        let size = a.to_string().len();
        assert!((100..=250).contains(&size), "{size} bytes: {a}");
    }
    let ids: HashSet<_> = artists.iter().map(|a| a["id"].clone()).collect();
    assert_eq!(ids.len(), 120);

    // The CLI prints the same stream as NDJSON, with its count on stderr.
    let url = format!("http://{}:8081", stack.service("streamer").name);
    let (code, out) = stack
        .run_once(
            "lambdaless",
            &["stream", "artists", "--segments", "3"],
            &[
                ("LAMBDALESS_STREAMER_URL", &url),
                ("LAMBDALESS_API_KEY", API_KEY),
            ],
        )
        .await;
    assert_eq!(code, 0, "{out}");
    let printed: HashSet<Value> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].clone())
        .collect();
    assert_eq!(printed, ids);
    assert!(out.contains("120 items"), "{out}");
}
