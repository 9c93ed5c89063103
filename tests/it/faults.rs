//! Faults: the broker restarted under the services, the emulator frozen for
//! 10 s under load, and a link to the emulator that adds latency and cuts
//! answers after their effect happened. (mover killed mid-stream: devices.rs.)

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use lambdaless_contracts::names;
use lambdaless_testkit::fault_proxy::FaultProxy;
use lambdaless_testkit::{docker_cli, eventually, http_get, Stack, ADMIN_PORT, MQTT_PORT};
use serde_json::json;

use crate::devices::{
    assert_stored_once, queue_depth, send_stream, send_users, stored_sqs_ids, stored_users,
};
use crate::mqtt_api::queue_url;
use crate::mqtt_client;

async fn short_visibility(stack: &Stack, queue: &str) -> String {
    let url = queue_url(stack, queue).await;
    stack
        .aws
        .sqs
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(QueueAttributeName::VisibilityTimeout, "3")
        .send()
        .await
        .unwrap();
    url
}

fn assert_running(stack: &Stack, service: &str) {
    let running = stack.service(service);
    let (up, code) = running.state();
    assert!(up, "{service} exited with {code}:\n{}", running.logs());
}

async fn readyz(port: u16) -> u16 {
    http_get(port, "/readyz").await.map(|(s, _)| s).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_broker_restart_mqtt_api_answers_within_5_s_and_mover_notifies_again() {
    let mut stack = Stack::start().await;
    stack.provision().await;
    stack.start_broker().await;
    stack.start_service("mover").await;
    stack.start_service("mqtt-api").await;

    let out = docker_cli(&["restart", "-t", "2", stack.broker().id()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let admin = stack.broker().current_host_port(ADMIN_PORT).unwrap();
    eventually(
        Duration::from_secs(60),
        "the broker to be back",
        || async move { (readyz(admin).await == 200).then_some(()) },
    )
    .await;
    let back = Instant::now();
    let port = stack.broker().current_host_port(MQTT_PORT).unwrap();
    let mut client = mqtt_client::connect(port, &["response/#", "notification/#"]).await;

    // The next request is answered within 5 s of the broker being back
    // (asked again every 500 ms: a request sent before mqtt-api has
    // subscribed again reaches nobody, as with any MQTT broker).
    let answered = loop {
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "no answer within 5 s of the broker's return\n{}",
            stack.service("mqtt-api").logs()
        );
        client
            .publish("request/query/restartThing", &json!({"token": "after"}))
            .await;
        let deadline = Instant::now() + Duration::from_millis(500);
        let mut got = None;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match tokio::time::timeout(left, client.next_any()).await {
                Ok(Some(p)) if p.topic == "response/query/after" => {
                    got = Some(p);
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if let Some(p) = got {
            break p;
        }
    };
    let answer: serde_json::Value = serde_json::from_slice(&answered.payload).unwrap();
    assert_eq!(answer["error"], "No messages available");
    eprintln!(
        "answered {} ms after the broker was back",
        back.elapsed().as_millis()
    );

    // mover publishes notifications on its new connection.
    let inbound = queue_url(&stack, names::DEVICE_INBOUND).await;
    stack
        .aws
        .sqs
        .send_message()
        .queue_url(&inbound)
        .message_body(json!({"thingName": "restartThing", "epochTime": "1"}).to_string())
        .send()
        .await
        .unwrap();
    loop {
        let p = client.next(Duration::from_secs(30)).await;
        if p.topic == "notification/restartThing" {
            break;
        }
    }
    for service in ["mover", "mqtt-api"] {
        assert_running(&stack, service);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulator_paused_for_10_s_under_load_makes_services_unready_and_loses_nothing() {
    const N: usize = 300;
    let mut stack = Stack::start().await;
    stack.provision().await;
    let inbound = short_visibility(&stack, names::DEVICE_INBOUND).await;
    stack.start_broker().await;
    stack
        .start_service_unchecked("mover", &[("LAMBDALESS_DEVICES__POLLERS", "4")])
        .await;
    lambdaless_testkit::wait_ready(stack.service("mover"), ADMIN_PORT).await;
    stack.start_service("api-gateway").await;
    let mover_admin = stack.service("mover").host_port(ADMIN_PORT).await;
    let gateway = stack.service("api-gateway").host_port(8080).await;

    let sent = send_stream(&stack, &inbound, N).await;
    let failures_before = stack
        .service("mover")
        .logs()
        .matches("receive failed")
        .count();
    let out = docker_cli(&["pause", stack.emulator().id()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let paused = Instant::now();

    // Both notice within a few seconds (probes time out after 2 s).
    eventually(
        Duration::from_secs(8),
        "mover and gateway to report not ready",
        || async {
            (readyz(mover_admin).await == 503 && readyz(gateway).await == 503).then_some(())
        },
    )
    .await;
    let (_, body) = http_get(gateway, "/readyz").await.unwrap();
    assert!(body.contains("sqs"), "{body}");
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(paused.elapsed())).await;
    for service in ["mover", "api-gateway"] {
        assert_running(&stack, service);
    }
    let out = docker_cli(&["unpause", stack.emulator().id()]);
    assert!(out.status.success());

    eventually(
        Duration::from_secs(120),
        "every message stored and the queue empty",
        || async {
            let stored = stored_sqs_ids(&stack).await;
            (stored.len() >= N && queue_depth(&stack, &inbound).await == 0).then_some(())
        },
    )
    .await;
    assert_stored_once(&stack, sent).await;
    eventually(Duration::from_secs(30), "both ready again", || async {
        (readyz(mover_admin).await == 200 && readyz(gateway).await == 200).then_some(())
    })
    .await;
    // Backing off, not spinning: a handful of failed receives, not thousands.
    let failures = stack
        .service("mover")
        .logs()
        .matches("receive failed")
        .count()
        - failures_before;
    assert!(
        failures <= 40,
        "{failures} failed receives in 10 s: spinning"
    );
    let dlq = queue_url(&stack, &format!("{}-dlq", names::DEVICE_INBOUND)).await;
    assert_eq!(queue_depth(&stack, &dlq).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_slow_link_that_cuts_answers_mover_stores_everything_once() {
    const N: usize = 200;
    const USERS: usize = 20;
    let mut stack = Stack::start().await;
    stack.provision().await;
    let inbound = short_visibility(&stack, names::DEVICE_INBOUND).await;
    short_visibility(&stack, names::USERS_CREATE).await;
    stack.start_broker().await;
    let emulator_port = stack.emulator().host_port(4566).await;
    let proxy = FaultProxy::start(
        stack.host_ip_inside(),
        SocketAddr::from(([127, 0, 0, 1], emulator_port)),
    )
    .await;
    let endpoint = format!("http://{}", proxy.addr);
    stack
        .start_service_unchecked(
            "mover",
            &[
                ("AWS_ENDPOINT_URL", endpoint.as_str()),
                ("LAMBDALESS_DEVICES__POLLERS", "2"),
                ("LAMBDALESS_DEVICES__WAIT_SECS", "1"),
                ("LAMBDALESS_USERS__WAIT_SECS", "1"),
            ],
        )
        .await;
    lambdaless_testkit::wait_ready(stack.service("mover"), ADMIN_PORT).await;
    proxy.set_latency(Duration::from_millis(25));
    proxy.cut_every(9);

    let (sent, sent_users) =
        tokio::join!(send_stream(&stack, &inbound, N), send_users(&stack, USERS));
    eventually(
        Duration::from_secs(180),
        "every message stored and both queues empty",
        || async {
            let users_url = queue_url(&stack, names::USERS_CREATE).await;
            (stored_sqs_ids(&stack).await.len() >= N
                && stored_users(&stack).await.len() >= USERS
                && queue_depth(&stack, &inbound).await == 0
                && queue_depth(&stack, &users_url).await == 0)
                .then_some(())
        },
    )
    .await;
    assert!(
        proxy.cut() > 0,
        "the proxy cut nothing: the test proved nothing"
    );
    assert_stored_once(&stack, sent).await;
    let users = stored_users(&stack).await;
    assert_eq!(users.len(), USERS, "a user was created twice");
    assert_eq!(
        users.into_iter().map(|(_, m)| m).collect::<HashSet<_>>(),
        sent_users.into_iter().collect::<HashSet<_>>()
    );
    assert_running(&stack, "mover");
    eprintln!(
        "proxy: {} connections, {} answers cut",
        proxy.connections(),
        proxy.cut()
    );
}
