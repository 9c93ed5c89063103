//! The foundation: every service starts healthy, provision is idempotent, the
//! device slice stores a message, the broker enforces passwords, and bad
//! settings or missing dependencies are reported clearly.

use std::time::Duration;

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use lambdaless_contracts::device::DLQ_REASON_ATTRIBUTE;
use lambdaless_contracts::names;
use lambdaless_testkit::{eventually, http_get, service_port, Stack, SERVICES};
use rumqttc::ConnectReturnCode;
use serde_json::{json, Value};

use crate::mqtt_client::{self, ConnectOutcome};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_container_becomes_healthy() {
    let mut stack = Stack::start().await;
    let (code, out) = stack
        .run_once("lambdaless", &["provision", "--wait", "30"], &[])
        .await;
    assert_eq!(code, 0, "provision failed:\n{out}");
    assert!(
        out.contains("provisioned: 16 created"),
        "unexpected provision output:\n{out}"
    );
    stack.start_broker().await;
    for service in SERVICES {
        stack.start_service(service).await;
    }
    let broker_admin = stack
        .broker()
        .host_port(lambdaless_testkit::ADMIN_PORT)
        .await;
    let (status, metrics) = http_get(broker_admin, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains("broker"),
        "broker /metrics has no broker figures:\n{metrics:.2000}"
    );
    for service in SERVICES {
        let port = stack
            .service(service)
            .host_port(service_port(service))
            .await;
        let (status, body) = http_get(port, "/healthz").await.unwrap();
        assert_eq!(status, 200, "{service} /healthz: {body}");
        let (status, body) = http_get(port, "/readyz").await.unwrap();
        assert_eq!(status, 200, "{service} /readyz: {body}");
        let checks: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(checks["status"], "ready", "{service}: {body}");
        let (status, _) = http_get(port, "/metrics").await.unwrap();
        assert_eq!(status, 200, "{service} /metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provision_twice_changes_nothing() {
    let stack = Stack::start().await;
    let (code, first) = stack.run_once("lambdaless", &["provision"], &[]).await;
    assert_eq!(code, 0, "{first}");
    let url = stack
        .queue_url(&stack.names.name(names::DEVICE_INBOUND))
        .await;
    let redrive_policy = || async {
        stack
            .aws
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()
    };
    let before = redrive_policy().await;
    let redrive: Value = serde_json::from_str(&before[&QueueAttributeName::RedrivePolicy]).unwrap();
    assert!(redrive["deadLetterTargetArn"]
        .as_str()
        .unwrap()
        .ends_with(&stack.names.dlq(names::DEVICE_INBOUND)));
    assert_eq!(
        redrive["maxReceiveCount"].to_string().trim_matches('"'),
        "5"
    );

    let (code, second) = stack.run_once("lambdaless", &["provision"], &[]).await;
    assert_eq!(code, 0, "{second}");
    assert!(
        second.contains("provisioned: 0 created, 0 updated, 16 already in place"),
        "{second}"
    );
    assert_eq!(before, redrive_policy().await);
    let tables = stack
        .aws
        .dynamodb
        .list_tables()
        .send()
        .await
        .unwrap()
        .table_names
        .unwrap_or_default();
    let ours: Vec<_> = tables
        .iter()
        .filter(|t| t.starts_with(&stack.prefix))
        .collect();
    assert_eq!(ours.len(), 8, "{ours:?}");
    let users = stack
        .aws
        .dynamodb
        .describe_table()
        .table_name(stack.names.name(names::USERS))
        .send()
        .await
        .unwrap();
    let gsis = users.table.unwrap().global_secondary_indexes.unwrap();
    assert_eq!(gsis[0].index_name.as_deref(), Some("by-sqs-message-id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_message_is_stored_then_announced() {
    let mut stack = Stack::start().await;
    stack.provision().await;
    stack.start_broker().await;
    let mut watcher =
        mqtt_client::connect(stack.broker_mqtt_port().await, &["notification/#"]).await;
    stack.start_service("mover").await;

    let inbound = stack
        .queue_url(&stack.names.name(names::DEVICE_INBOUND))
        .await;
    let body = json!({"thingName":"testThing","epochTime":"1564669331","tempSensor1F":"72","tempSensor2F":70});
    let sent = stack
        .aws
        .sqs
        .send_message()
        .queue_url(&inbound)
        .message_body(body.to_string())
        .send()
        .await
        .unwrap();
    let sqs_id = sent.message_id.unwrap();

    let notification = watcher.next(Duration::from_secs(30)).await;
    assert_eq!(notification.topic, "notification/testThing");
    let note: Value = serde_json::from_slice(&notification.payload).unwrap();
    assert_eq!(note["uuid"], "testThing");
    let message_id = note["messageId"].as_str().unwrap().to_owned();
    let parts: Vec<&str> = message_id.splitn(3, '-').collect();
    assert_eq!(parts[0], "1564669331");
    assert!(
        parts[1].parse::<u64>().unwrap() > 1_600_000_000_000,
        "SentTimestamp in ms: {message_id}"
    );
    assert_eq!(parts[2], sqs_id);

    let item = stack
        .aws
        .dynamodb
        .get_item()
        .table_name(stack.names.name(names::DEVICE_MESSAGES))
        .key(
            "uuid",
            aws_sdk_dynamodb::types::AttributeValue::S("testThing".into()),
        )
        .key(
            "messageId",
            aws_sdk_dynamodb::types::AttributeValue::S(message_id.clone()),
        )
        .send()
        .await
        .unwrap()
        .item
        .expect("the notified message is stored");
    let stored = lambdaless_runtime::dynamo_json::from_item(&item);
    assert_eq!(
        stored["body"], body,
        "body stored whole, numbers as numbers"
    );
    assert!(stored["storedAt"].as_str().unwrap().starts_with("20"));

    // Deleted from the queue only after the write: nothing left to receive.
    let depth = stack.depth_of_url(&inbound).await;
    assert_eq!(
        depth,
        lambdaless_testkit::Depth {
            visible: 0,
            in_flight: 0
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_device_messages_go_to_the_dlq_with_the_reason() {
    let mut stack = Stack::start().await;
    stack.provision().await;
    stack.start_broker().await;
    stack.start_service("mover").await;
    let sqs = &stack.aws.sqs;
    let inbound = stack
        .queue_url(&stack.names.name(names::DEVICE_INBOUND))
        .await;
    let dlq = stack
        .queue_url(&stack.names.dlq(names::DEVICE_INBOUND))
        .await;
    for body in ["this is not json", r#"{"epochTime":"1"}"#] {
        sqs.send_message()
            .queue_url(&inbound)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let mut reasons = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while reasons.len() < 2 && std::time::Instant::now() < deadline {
        let out = sqs
            .receive_message()
            .queue_url(&dlq)
            .max_number_of_messages(10)
            .wait_time_seconds(2)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        for m in out.messages.unwrap_or_default() {
            let reason = m.message_attributes.as_ref().unwrap()[DLQ_REASON_ATTRIBUTE]
                .string_value
                .clone()
                .unwrap();
            reasons.push((m.body.unwrap(), reason));
        }
    }
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    let reason_for = |body: &str| {
        reasons
            .iter()
            .find(|(b, _)| b == body)
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| panic!("{body:?} not in the DLQ: {reasons:?}"))
    };
    assert_eq!(
        reason_for(r#"{"epochTime":"1"}"#),
        "field `thingName` is missing"
    );
    let not_json = reason_for("this is not json");
    assert!(not_json.starts_with("body is not JSON"), "{not_json}");
    stack.wait_empty(&inbound).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_refuses_a_bad_password() {
    let mut stack = Stack::start().await;
    stack.start_broker().await;
    let port = stack.broker_mqtt_port().await;
    match mqtt_client::try_connect(port, "local", "wrong").await {
        ConnectOutcome::Refused(code) => assert!(
            matches!(
                code,
                ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized
            ),
            "{code:?}"
        ),
        other => panic!("wrong password was not refused: {other:?}"),
    }
    assert!(matches!(
        mqtt_client::try_connect(port, "nobody", "local").await,
        ConnectOutcome::Refused(_)
    ));
    assert_eq!(
        mqtt_client::try_connect(port, "local", "local").await,
        ConnectOutcome::Accepted
    );
    // The accepted user really talks through it.
    let mut client = mqtt_client::connect(port, &["echo/#"]).await;
    client.publish("echo/1", &json!({"hello": "broker"})).await;
    let got = client.next(Duration::from_secs(10)).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&got.payload).unwrap(),
        json!({"hello": "broker"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_setting_stops_start_up_and_names_itself() {
    let stack = Stack::start().await;
    let (code, out) = stack
        .run_once("mover", &[], &[("LAMBDALESS_DEVICES__POLLERS", "lots")])
        .await;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("POLLERS") || out.contains("pollers"),
        "error does not name the setting:\n{out}"
    );
    assert!(!out.contains("panicked"), "{out}");
    let (code, out) = stack
        .run_once("mover", &[], &[("LAMBDALESS_DEVICES__POLLERS", "0")])
        .await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("LAMBDALESS_DEVICES__POLLERS"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_dependencies_show_in_readyz_not_as_a_crash() {
    let mut stack = Stack::start().await;
    // No broker and no provisioned queues: the mover must stay up and say why it is not ready.
    let nowhere = format!("http://ll-nowhere-{}:4566", stack.id);
    let mover = stack
        .start_service_unchecked(
            "mover",
            &[
                ("AWS_ENDPOINT_URL", nowhere.as_str()),
                ("LAMBDALESS_MQTT__HOST", "ll-no-broker"),
            ],
        )
        .await;
    let port = mover.host_port(lambdaless_testkit::ADMIN_PORT).await;
    let body = eventually(Duration::from_secs(30), "a 503 from /readyz", || async {
        match http_get(port, "/readyz").await {
            Ok((503, body)) => Some(body),
            _ => None,
        }
    })
    .await;
    let report: Value = serde_json::from_str(&body).unwrap();
    for dep in ["sqs", "dynamodb", "broker"] {
        assert!(
            report["checks"][dep].is_string() && report["checks"][dep] != "ok",
            "{dep} not reported down: {body}"
        );
    }
    let (status, _) = http_get(port, "/healthz").await.unwrap();
    assert_eq!(status, 200);
    assert!(mover.state().0, "mover exited:\n{}", mover.logs());
}
