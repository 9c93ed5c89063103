//! The `devices` pipeline of `mover` under interruption: stopped with
//! SIGTERM mid-stream, or killed so that messages it received (and maybe
//! wrote) are redelivered. Either way every sent message ends up stored
//! exactly once, and the inbound queue ends empty.

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::QueueAttributeName;
use lambdaless_contracts::names;
use lambdaless_testkit::{docker_cli, eventually, Stack};
use serde_json::json;

use crate::mqtt_api::queue_url;

const THING: &str = "streamThing";

/// Sends `n` messages for [`THING`] in batches of 10; returns their SQS ids.
pub(crate) async fn send_stream(stack: &Stack, inbound: &str, n: usize) -> Vec<String> {
    let bodies: Vec<String> = (0..n)
        .map(|i| json!({"thingName": THING, "epochTime": i, "seq": i}).to_string())
        .collect();
    stack.send_batch(inbound, &bodies).await
}

/// The SQS ids inside every stored messageId of [`THING`] (duplicates kept).
pub(crate) async fn stored_sqs_ids(stack: &Stack) -> Vec<String> {
    let mut ids = Vec::new();
    let mut start = None;
    loop {
        let out = stack
            .aws
            .dynamodb
            .query()
            .table_name(stack.names.name(names::DEVICE_MESSAGES))
            .key_condition_expression("#u = :u")
            .expression_attribute_names("#u", "uuid")
            .expression_attribute_values(":u", AttributeValue::S(THING.into()))
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        for item in out.items.unwrap_or_default() {
            let id = item["messageId"].as_s().unwrap();
            // {epochTime}-{SentTimestamp}-{SQS MessageId}
            ids.push(id.splitn(3, '-').nth(2).unwrap().to_owned());
        }
        start = out.last_evaluated_key;
        if start.is_none() {
            return ids;
        }
    }
}

/// Asserts that the stored messages of [`THING`] are exactly `sent`, each once.
pub(crate) async fn assert_stored_once(stack: &Stack, sent: Vec<String>) {
    let stored = stored_sqs_ids(stack).await;
    assert_eq!(
        stored.len(),
        sent.len(),
        "a message was stored twice (or under different keys)"
    );
    let stored: HashSet<String> = stored.into_iter().collect();
    let sent: HashSet<String> = sent.into_iter().collect();
    assert_eq!(stored, sent);
}

pub(crate) async fn queue_depth(stack: &Stack, url: &str) -> u64 {
    stack.depth_of_url(url).await.total()
}

/// Sends `n` valid users-create messages; returns their SQS ids.
pub(crate) async fn send_users(stack: &Stack, n: usize) -> Vec<String> {
    let url = queue_url(stack, names::USERS_CREATE).await;
    let bodies: Vec<String> = (0..n)
        .map(|i| {
            json!({"name": format!("Crash Test {i}"), "email": format!("crash{i}@example.com")})
                .to_string()
        })
        .collect();
    stack.send_batch(&url, &bodies).await
}

/// Every stored user as (userId, sqsMessageId).
pub(crate) async fn stored_users(stack: &Stack) -> Vec<(String, String)> {
    let mut users = Vec::new();
    let mut start = None;
    loop {
        let out = stack
            .aws
            .dynamodb
            .scan()
            .table_name(stack.names.name(names::USERS))
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        for item in out.items.unwrap_or_default() {
            users.push((
                item["userId"].as_s().unwrap().clone(),
                item["sqsMessageId"].as_s().unwrap().clone(),
            ));
        }
        start = out.last_evaluated_key;
        if start.is_none() {
            return users;
        }
    }
}

/// Starts mover, streams `n` device messages and `users` users-create
/// messages, interrupts mover with `interrupt` once some are stored, starts
/// it again, and checks that every message is stored exactly once (one user
/// per message, with the userId derived from its SQS id), and nothing is
/// left queued or dead-lettered.
async fn interrupted_stream_loses_nothing(
    n: usize,
    users: usize,
    interrupt: impl Fn(&lambdaless_testkit::Running),
) {
    let mut stack = Stack::start().await;
    stack.provision().await;
    let inbound = queue_url(&stack, names::DEVICE_INBOUND).await;
    // Short visibility: messages the interrupted mover held come back soon.
    // A long stream makes moto slow (its SQS costs grow with the queue), so
    // it gets a longer one, or batches would time out and churn.
    let visibility: u64 = if n > 500 { 20 } else { 3 };
    let (visibility, extend_after) = (visibility.to_string(), (visibility / 3).to_string());
    stack
        .aws
        .sqs
        .set_queue_attributes()
        .queue_url(&inbound)
        .attributes(QueueAttributeName::VisibilityTimeout, &visibility)
        .send()
        .await
        .unwrap();
    stack
        .aws
        .sqs
        .set_queue_attributes()
        .queue_url(queue_url(&stack, names::USERS_CREATE).await)
        .attributes(QueueAttributeName::VisibilityTimeout, &visibility)
        .send()
        .await
        .unwrap();
    stack.start_broker().await;
    stack
        .start_service_unchecked(
            "mover",
            &[
                ("LAMBDALESS_DEVICES__POLLERS", "4"),
                (
                    "LAMBDALESS_DEVICES__EXTEND_VISIBILITY_AFTER_SECS",
                    &extend_after,
                ),
                ("LAMBDALESS_DEVICES__VISIBILITY_TIMEOUT_SECS", &visibility),
            ],
        )
        .await;
    lambdaless_testkit::wait_ready(stack.service("mover"), lambdaless_testkit::ADMIN_PORT).await;

    let (sent, sent_users, ()) = tokio::join!(
        send_stream(&stack, &inbound, n),
        send_users(&stack, users),
        async {
            eventually(Duration::from_secs(60), "some messages stored", || async {
                (stored_sqs_ids(&stack).await.len() >= 20).then_some(())
            })
            .await;
            interrupt(stack.service("mover"));
        }
    );
    let stored_at_interrupt = stored_sqs_ids(&stack).await.len();
    assert!(
        stored_at_interrupt < n,
        "mover finished before the interruption"
    );
    stack.service("mover").start_again();

    let deadline = std::time::Instant::now() + Duration::from_secs(480);
    loop {
        // The queue's depth is cheap to ask; the stored items (a query of up
        // to n items, which loads moto) only once the queue is empty.
        let depth = queue_depth(&stack, &inbound).await;
        let (stored, made) = if depth == 0 {
            (
                stored_sqs_ids(&stack).await.len(),
                stored_users(&stack).await.len(),
            )
        } else {
            (0, 0)
        };
        if stored >= n && depth == 0 && made >= users {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "after 480 s: {stored}/{n} stored, {depth} queued, {made}/{users} users\n{}",
            stack
                .service("mover")
                .logs()
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert_eq!(sent.len(), n);
    assert_stored_once(&stack, sent).await;
    let dlq = queue_url(&stack, &format!("{}-dlq", names::DEVICE_INBOUND)).await;
    assert_eq!(queue_depth(&stack, &dlq).await, 0, "nothing dead-lettered");

    let made = stored_users(&stack).await;
    assert_eq!(made.len(), users, "one user per users-create message");
    let by_message: HashSet<String> = made.iter().map(|(_, m)| m.clone()).collect();
    assert_eq!(
        by_message,
        sent_users.iter().cloned().collect::<HashSet<_>>()
    );
    for (user_id, message_id) in &made {
        assert_eq!(user_id, &lambdaless_contracts::user::user_id(message_id));
    }
    let users_dlq = queue_url(&stack, &format!("{}-dlq", names::USERS_CREATE)).await;
    assert_eq!(
        queue_depth(&stack, &users_dlq).await,
        0,
        "no user dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mover_stopped_with_sigterm_mid_stream_loses_nothing() {
    interrupted_stream_loses_nothing(300, 20, |mover| {
        mover.stop(30);
        let (running, code) = mover.state();
        assert!(!running);
        assert_eq!(code, 0, "mover did not exit cleanly:\n{}", mover.logs());
        assert!(mover.logs().contains("shutdown signal received"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mover_killed_mid_2000_messages_stores_each_once_and_makes_no_duplicate_users() {
    interrupted_stream_loses_nothing(2000, 100, |mover| {
        let out = docker_cli(&["kill", "-s", "KILL", mover.id()]);
        assert!(out.status.success());
    })
    .await;
}
