//! Scale-out: several replicas of mover and fetch-responder compete for the
//! same SQS queues (competing consumers); the work is split and every message
//! is handled exactly once from the user's point of view. (mqtt-api replicas
//! sharing `$share/mqtt-api/request/#`: mqtt_api.rs.)

use std::time::Duration;

use lambdaless_client::fetch::FetchClient;
use lambdaless_client::provision::Provisioner;
use lambdaless_contracts::names;
use lambdaless_testkit::{eventually, http_get, Stack, ADMIN_PORT};
use serde_json::json;

use crate::devices::{assert_stored_once, queue_depth, send_stream, stored_sqs_ids};
use crate::mqtt_api::queue_url;

/// Sum of a counter's samples whose labels contain every one of `needles`.
fn counted(metrics: &str, name: &str, needles: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && needles.iter().all(|n| l.contains(n)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn replica_counts(
    stack: &Stack,
    service: &str,
    n: usize,
    name: &str,
    needles: &[&str],
) -> Vec<f64> {
    let mut counts = Vec::new();
    for i in 1..=n {
        let port = stack
            .service(&format!("{service}#{i}"))
            .host_port(ADMIN_PORT)
            .await;
        let (_, metrics) = http_get(port, "/metrics").await.unwrap();
        counts.push(counted(&metrics, name, needles));
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_movers_and_two_responders_split_the_work_and_handle_each_message_once() {
    const N: usize = 300;
    const FETCHES: usize = 40;
    let mut stack = Stack::start().await;
    Provisioner::new(stack.aws.clone(), stack.names.clone())
        .provision(&["scaler".to_owned()])
        .await
        .expect("provision succeeds");
    stack.start_broker().await;
    for i in 1..=3 {
        stack
            .start_replica("mover", i, &[("LAMBDALESS_DEVICES__POLLERS", "1")])
            .await;
    }
    for i in 1..=2 {
        stack.start_replica("fetch-responder", i, &[]).await;
    }

    // Devices: every message stored once, each mover stored some.
    let inbound = queue_url(&stack, names::DEVICE_INBOUND).await;
    let sent = send_stream(&stack, &inbound, N).await;
    eventually(Duration::from_secs(120), "every message stored", || async {
        (stored_sqs_ids(&stack).await.len() >= N && queue_depth(&stack, &inbound).await == 0)
            .then_some(())
    })
    .await;
    assert_stored_once(&stack, sent).await;
    let per_mover = replica_counts(
        &stack,
        "mover",
        3,
        "mover_messages_total",
        &["pipeline=\"devices\"", "outcome=\"stored\""],
    )
    .await;
    assert!(per_mover.iter().sum::<f64>() >= N as f64, "{per_mover:?}");
    assert!(
        per_mover.iter().all(|&n| n > 0.0),
        "a mover replica got nothing: {per_mover:?}"
    );

    // Fetches: every fetch gets its own document, both responders answered.
    let table = stack.names.name(names::DOCUMENTS);
    for i in 0..FETCHES {
        let item = lambdaless_runtime::dynamo_json::to_item(
            json!({"id": format!("d{i}"), "n": i}).as_object().unwrap(),
        );
        stack
            .aws
            .dynamodb
            .put_item()
            .table_name(&table)
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
    }
    let client = FetchClient::new(stack.aws.sqs.clone(), stack.names.clone());
    let fetches = (0..FETCHES).map(|i| {
        let client = client.clone();
        async move {
            (
                i,
                client
                    .fetch(&format!("d{i}"), "scaler", Duration::from_secs(60))
                    .await,
            )
        }
    });
    for (i, result) in futures::future::join_all(fetches).await {
        let data = result.unwrap_or_else(|e| panic!("fetch {i}: {e}"));
        assert_eq!(data["n"], json!(i), "fetch {i} got another answer");
    }
    let per_responder = replica_counts(
        &stack,
        "fetch-responder",
        2,
        "fetch_responder_requests_total",
        &["outcome=\"replied\""],
    )
    .await;
    assert_eq!(
        per_responder.iter().sum::<f64>(),
        FETCHES as f64,
        "each fetch answered once: {per_responder:?}"
    );
    assert!(
        per_responder.iter().all(|&n| n > 0.0),
        "a responder got nothing: {per_responder:?}"
    );
}
