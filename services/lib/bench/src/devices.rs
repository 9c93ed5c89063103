//! `bench devices`: mover's `devices` pipeline (in process, its real code)
//! against the raw loop (receive 10 → BatchWriteItem → DeleteMessageBatch)
//! and a one-message-at-a-time mover like the seed's Lambda (receive 1 →
//! PutItem → DeleteMessage). Each side starts from the same queue depth:
//! the queue is filled with N messages, then drained, and timed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use lambdaless_contracts::{device, names, Names};
use lambdaless_runtime::aws::{self, AwsClients};
use lambdaless_runtime::config::MqttSettings;
use lambdaless_runtime::{dynamo_json, mqtt};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::report::{Measure, Row, Section};
use lambdaless_client::device::MqttArgs;

/// Runs the benchmark. The one-at-a-time side drains only `single`
/// messages from a queue filled with that many: on moto every receive costs
/// time in proportion to the queue's depth, so a shallower queue favours it,
/// and a 5,000-message drain one by one takes many minutes.
pub async fn run(
    args: &MqttArgs,
    messages: usize,
    single: usize,
    pollers: usize,
) -> anyhow::Result<Section> {
    let aws = aws::load().await;
    let names = super::fresh_names(&aws).await?;
    let inbound = aws
        .sqs
        .get_queue_url()
        .queue_name(names.name(names::DEVICE_INBOUND))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(aws::describe(&e)))?
        .queue_url
        .unwrap_or_default();
    let table = names.name(names::DEVICE_MESSAGES);

    fill(&aws, &inbound, messages, "raw").await?;
    let started = Instant::now();
    raw_loop(&aws, &inbound, &table).await?;
    let raw = started.elapsed();

    fill(&aws, &inbound, messages, "mover").await?;
    let started = Instant::now();
    mover(&aws, &names, args, pollers, &inbound).await?;
    let ours = started.elapsed();

    let single_n = single.clamp(1, messages);
    fill(&aws, &inbound, single_n, "single").await?;
    let started = Instant::now();
    one_at_a_time(&aws, &inbound, &table).await?;
    let single = started.elapsed();

    let rate = |d: Duration| Measure::Rate(messages as f64 / d.as_secs_f64());
    let single_rate = Measure::Rate(single_n as f64 / single.as_secs_f64());
    Ok(Section {
        key: "mover",
        title: format!("mover devices pipeline, {messages} messages"),
        command: format!("lambdaless bench devices --messages {messages} --single {single_n} --pollers {pollers}"),
        baseline: "the same emulator, same queue depth, drained by the raw calls".to_owned(),
        rows: vec![
            Row::new(
                format!("mover ({pollers} pollers) vs raw loop: receive 10 → BatchWriteItem → DeleteMessageBatch"),
                rate(ours),
                Some(rate(raw)),
                "≥ 0.8×",
            ),
            Row::new(
                format!("mover vs one at a time: receive 1 → PutItem → DeleteMessage (the seed's Lambda), {single_n} messages"),
                rate(ours),
                Some(single_rate),
                "≥ 5×",
            ),
        ],
        notes: vec![format!(
            "Seconds to drain: mover {:.2} and raw loop {:.2} for {messages} messages each, \
             one at a time {:.2} for {single_n} (a shallower queue, which favours it on moto).",
            ours.as_secs_f64(),
            raw.as_secs_f64(),
            single.as_secs_f64()
        )],
    })
}

async fn fill(aws: &AwsClients, url: &str, n: usize, tag: &str) -> anyhow::Result<()> {
    let batches: Vec<Vec<SendMessageBatchRequestEntry>> = (0..n)
        .collect::<Vec<_>>()
        .chunks(10)
        .map(|chunk| {
            chunk
                .iter()
                .map(|i| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(
                            json!({"thingName": format!("bench-{tag}-{}", i % 50), "epochTime": i.to_string(), "tempSensor1F": "72", "n": i})
                                .to_string(),
                        )
                        .build()
                        .expect("entry is complete")
                })
                .collect()
        })
        .collect();
    for group in batches.chunks(8) {
        let sends = group.iter().map(|entries| {
            aws.sqs
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries.clone()))
                .send()
        });
        for r in futures::future::join_all(sends).await {
            r.map_err(|e| anyhow::anyhow!(aws::describe(&e)))?;
        }
    }
    Ok(())
}

async fn depth(aws: &AwsClients, url: &str) -> anyhow::Result<u64> {
    let out = aws
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(aws::describe(&e)))?;
    Ok(out
        .attributes
        .unwrap_or_default()
        .values()
        .filter_map(|v| v.parse::<u64>().ok())
        .sum())
}

fn item(body: &str, sent_ms: u64, sqs_id: &str) -> Option<HashMap<String, AttributeValue>> {
    let parsed: Value = serde_json::from_str(body).ok()?;
    let keys = device::DeviceKeys::default().extract(&parsed).ok()?;
    let Value::Object(map) = &parsed else {
        return None;
    };
    Some(HashMap::from([
        ("uuid".to_owned(), AttributeValue::S(keys.uuid)),
        (
            "messageId".to_owned(),
            AttributeValue::S(device::stored_message_id(
                &keys.message_id_value,
                sent_ms,
                sqs_id,
            )),
        ),
        (
            "body".to_owned(),
            AttributeValue::M(dynamo_json::to_item(map)),
        ),
    ]))
}

async fn raw_loop(aws: &AwsClients, url: &str, table: &str) -> anyhow::Result<()> {
    loop {
        let out = aws
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(aws::describe(&e)))?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            if depth(aws, url).await? == 0 {
                return Ok(());
            }
            continue;
        }
        let writes: Vec<WriteRequest> = messages
            .iter()
            .filter_map(|m| {
                let sent = m
                    .attributes
                    .as_ref()?
                    .get(&MessageSystemAttributeName::SentTimestamp)?
                    .parse()
                    .ok()?;
                let item = item(m.body.as_deref()?, sent, m.message_id.as_deref()?)?;
                Some(
                    WriteRequest::builder()
                        .put_request(PutRequest::builder().set_item(Some(item)).build().ok()?)
                        .build(),
                )
            })
            .collect();
        aws.dynamodb
            .batch_write_item()
            .request_items(table, writes)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(aws::describe(&e)))?;
        let entries = messages
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle.as_deref()?)
                    .build()
                    .ok()
            })
            .collect();
        aws.sqs
            .delete_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(aws::describe(&e)))?;
    }
}

async fn one_at_a_time(aws: &AwsClients, url: &str, table: &str) -> anyhow::Result<()> {
    loop {
        let out = aws
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(1)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(aws::describe(&e)))?;
        let Some(m) = out.messages.unwrap_or_default().into_iter().next() else {
            if depth(aws, url).await? == 0 {
                return Ok(());
            }
            continue;
        };
        let sent = m
            .attributes
            .as_ref()
            .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if let Some(item) = item(
            m.body.as_deref().unwrap_or_default(),
            sent,
            m.message_id.as_deref().unwrap_or_default(),
        ) {
            aws.dynamodb
                .put_item()
                .table_name(table)
                .set_item(Some(item))
                .send()
                .await
                .map_err(|e| anyhow::anyhow!(aws::describe(&e)))?;
        }
        aws.sqs
            .delete_message()
            .queue_url(url)
            .receipt_handle(m.receipt_handle.unwrap_or_default())
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(aws::describe(&e)))?;
    }
}

async fn mover(
    aws: &AwsClients,
    names: &Names,
    args: &MqttArgs,
    pollers: usize,
    url: &str,
) -> anyhow::Result<()> {
    let settings = mover::DevicesSettings {
        pollers,
        wait_secs: 1,
        ..mover::DevicesSettings::default()
    };
    let stop = CancellationToken::new();
    let mqtt_settings = MqttSettings {
        host: args.host.clone(),
        port: args.port,
        username: Some(args.user.clone()),
        password: Some(args.password.clone().into()),
        client_id_prefix: "bench-mover".to_owned(),
        ..MqttSettings::default()
    };
    let parts = mqtt::connect(&mqtt_settings, Vec::new(), false, stop.clone());
    let worker = mover::devices::worker(aws, names, &settings, parts.connection, &stop)
        .await
        .ok_or_else(|| anyhow::anyhow!("queues not resolved"))?;
    let tracker = tokio_util::task::TaskTracker::new();
    worker.spawn(pollers, &tracker, &stop);
    while depth(aws, url).await? > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    tracker.close();
    tracker.wait().await;
    Ok(())
}
