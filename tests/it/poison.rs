//! Messages no retry can store: each is isolated and dead-lettered with the reason while the
//! rest of its batch is stored; a mover stopped right after a burst announces everything it
//! stored before it exits.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use lambdaless_contracts::device::DLQ_REASON_ATTRIBUTE;
use lambdaless_contracts::names;
use lambdaless_testkit::{eventually, Stack};
use serde_json::{json, Value};

use crate::mqtt_client;

/// Everything in the DLQ at `url` as body → reason, waiting until `n` arrived (60 s).
async fn dead_letters(stack: &Stack, url: &str, n: usize) -> HashMap<String, String> {
    let mut found = HashMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while found.len() < n && std::time::Instant::now() < deadline {
        if let Some(m) = stack
            .receive_one_from_url(url, Duration::from_secs(2))
            .await
        {
            let reason = m
                .attributes
                .get(DLQ_REASON_ATTRIBUTE)
                .cloned()
                .unwrap_or_else(|| panic!("dead letter without a reason: {:.80}", m.body));
            found.insert(m.body, reason);
        }
    }
    found
}

fn nested(levels: usize) -> Value {
    (0..levels).fold(json!(1), |inner, _| json!({ "n": inner }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_poison_message_is_dead_lettered_alone_with_dynamodbs_reason() {
    let mut stack = Stack::start().await;
    stack.provision().await;
    stack.start_broker().await;
    let inbound = stack
        .queue_url(&stack.names.name(names::DEVICE_INBOUND))
        .await;
    let dlq = stack
        .queue_url(&stack.names.dlq(names::DEVICE_INBOUND))
        .await;

    // (thing, poison body, what its reason must say)
    let kinds = [
        (
            "numberThing",
            json!({"thingName": "numberThing", "epochTime": "999", "x": 1e200}),
            "outside DynamoDB's range",
        ),
        (
            "longIdThing",
            json!({"thingName": "longIdThing", "epochTime": "9".repeat(1000)}),
            "key `messageId` is",
        ),
        (
            "deepThing",
            json!({"thingName": "deepThing", "epochTime": "999", "deep": nested(40)}),
            "nests deeper than DynamoDB's limit of 32 levels",
        ),
    ];
    for (thing, poison, _) in &kinds {
        let mut bodies: Vec<String> = (0..9)
            .map(|i| json!({"thingName": thing, "epochTime": i, "seq": i}).to_string())
            .collect();
        bodies.insert(4, poison.to_string());
        stack.send_batch(&inbound, &bodies).await;
    }
    // Started after the sends, so each batch of ten is in the queue when it polls.
    stack.start_service("mover").await;

    let stored = eventually(
        Duration::from_secs(60),
        "27 good messages stored",
        || async {
            let items = stack.scan(names::DEVICE_MESSAGES).await;
            (items.len() >= 27).then_some(items)
        },
    )
    .await;
    for (thing, _, _) in &kinds {
        let mine = stored.iter().filter(|i| i["uuid"] == *thing).count();
        assert_eq!(
            mine, 9,
            "{thing}: the 9 good messages of its batch are stored"
        );
    }
    assert_eq!(stored.len(), 27, "no poison message was stored");

    let dead = dead_letters(&stack, &dlq, 3).await;
    assert_eq!(dead.len(), 3, "exactly the three poison messages: {dead:?}");
    for (thing, poison, says) in &kinds {
        let reason = dead
            .get(&poison.to_string())
            .unwrap_or_else(|| panic!("{thing}'s poison message not in the DLQ: {dead:?}"));
        assert!(reason.contains(says), "{thing}: {reason}");
    }
    stack.wait_empty(&inbound).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_large_unusable_messages_all_reach_the_dlq_with_reasons() {
    let mut stack = Stack::start().await;
    stack.provision().await;
    stack.start_broker().await;
    let inbound = stack
        .queue_url(&stack.names.name(names::DEVICE_INBOUND))
        .await;
    let dlq = stack
        .queue_url(&stack.names.dlq(names::DEVICE_INBOUND))
        .await;
    // Together ~1 MB: no single SendMessageBatch to the DLQ can carry them.
    let bodies: Vec<String> = (0..10)
        .map(|i| format!("{i}:{}", "not json ".repeat(11_000)))
        .collect();
    for b in &bodies {
        stack.send_to_url(&inbound, b).await;
    }
    stack.start_service("mover").await;

    let dead = dead_letters(&stack, &dlq, 10).await;
    assert_eq!(dead.len(), 10, "all ten dead-lettered");
    for b in &bodies {
        let reason = dead.get(b).expect("body kept whole in the DLQ");
        assert!(reason.starts_with("body is not JSON"), "{reason}");
    }
    stack.wait_empty(&inbound).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_right_after_a_burst_announces_everything_stored() {
    let mut stack = Stack::start().await;
    stack.provision().await;
    stack.start_broker().await;
    let port = stack.broker_mqtt_port().await;
    let mut watcher = mqtt_client::connect(port, &["notification/#"]).await;
    let inbound = stack
        .queue_url(&stack.names.name(names::DEVICE_INBOUND))
        .await;
    stack.start_service("mover").await;

    let bodies: Vec<String> = (0..100)
        .map(|i| json!({"thingName": "burstThing", "epochTime": i}).to_string())
        .collect();
    stack.send_batch(&inbound, &bodies).await;
    let mover = stack.service("mover");
    mover.stop(30);
    let (running, code) = mover.state();
    assert!(!running);
    assert_eq!(code, 0, "mover exits cleanly:\n{}", mover.logs());

    // Everything stored before the exit was announced before the exit.
    let stored: HashSet<String> = stack
        .scan(names::DEVICE_MESSAGES)
        .await
        .into_iter()
        .map(|i| i["messageId"].as_str().unwrap().to_owned())
        .collect();
    let mut announced = HashSet::new();
    while let Some(p) = watcher.try_next(Duration::from_secs(2)).await {
        let n: Value = serde_json::from_slice(&p.payload).unwrap();
        announced.insert(n["messageId"].as_str().unwrap().to_owned());
    }
    let missing: Vec<_> = stored.difference(&announced).collect();
    assert!(
        missing.is_empty(),
        "{} of {} stored messages were never announced",
        missing.len(),
        stored.len()
    );

    // A new mover takes what was left; in the end all 100 are stored and announced.
    mover.start_again();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while announced.len() < 100 && std::time::Instant::now() < deadline {
        if let Some(p) = watcher.try_next(Duration::from_millis(500)).await {
            let n: Value = serde_json::from_slice(&p.payload).unwrap();
            announced.insert(n["messageId"].as_str().unwrap().to_owned());
        }
    }
    let all = announced.len();
    assert_eq!(all, 100);
    assert_eq!(stack.scan(names::DEVICE_MESSAGES).await.len(), 100);
}
