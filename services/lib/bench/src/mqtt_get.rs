//! `bench mqtt-get`: latency of the API's `get` (publish request → answer
//! received, through the stack's broker and mqtt-api) against a raw GetItem
//! of the same item, sampled alternately in the same run. The item is
//! written to the stack's own `device-messages` table (its `--prefix`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use lambdaless_contracts::{names, Names};
use lambdaless_runtime::aws;
use serde_json::json;

use super::quantile;
use super::report::{Measure, Row, Section};
use lambdaless_client::device::{MqttArgs, Session};

/// Runs the benchmark.
pub async fn run(args: &MqttArgs, names: &Names, samples: usize) -> anyhow::Result<Section> {
    let aws = aws::load().await;
    let table = names.name(names::DEVICE_MESSAGES);
    let (uuid, message_id) = ("bench-thing", "1700000000-1700000000000-bench");
    let body = json!({"thingName": uuid, "epochTime": "1700000000", "tempSensor1F": "72", "tempSensor2F": 70});
    let item = HashMap::from([
        ("uuid".to_owned(), AttributeValue::S(uuid.to_owned())),
        (
            "messageId".to_owned(),
            AttributeValue::S(message_id.to_owned()),
        ),
        (
            "body".to_owned(),
            AttributeValue::M(lambdaless_runtime::dynamo_json::to_item(
                body.as_object().expect("object"),
            )),
        ),
    ]);
    aws.dynamodb
        .put_item()
        .table_name(&table)
        .set_item(Some(item))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(aws::describe(&e)))?;

    let mut session = Session::connect(args, &[]).await?;
    // Warm up (and wait until mqtt-api has subscribed).
    let mut warm = 0;
    while session
        .request(
            "get",
            uuid,
            Some(message_id),
            json!({}),
            Duration::from_secs(2),
        )
        .await
        .is_err()
    {
        warm += 1;
        anyhow::ensure!(warm < 15, "mqtt-api did not answer");
    }

    let mut raw = Vec::with_capacity(samples);
    let mut api = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        aws.dynamodb
            .get_item()
            .table_name(&table)
            .key("uuid", AttributeValue::S(uuid.to_owned()))
            .key("messageId", AttributeValue::S(message_id.to_owned()))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(aws::describe(&e)))?;
        raw.push(t.elapsed());
        let t = Instant::now();
        let answer = session
            .request(
                "get",
                uuid,
                Some(message_id),
                json!({}),
                Duration::from_secs(10),
            )
            .await?;
        api.push(t.elapsed());
        anyhow::ensure!(answer.get("body").is_some(), "unexpected answer {answer}");
    }
    // The broker's share: an echo through the same broker, no DynamoDB.
    let echo = super::broker::echo_round_trips(args, samples.min(300)).await?;
    let latency = |v: &[Duration]| Measure::Latency {
        p50: quantile(v, 0.5),
        p99: quantile(v, 0.99),
    };
    let section = Section {
        key: "mqtt-get",
        title: format!("mqtt-api get, {samples} sequential requests"),
        command: format!("lambdaless bench mqtt-get --samples {samples}"),
        baseline: "a raw GetItem of the same item, alternating in the same run".to_owned(),
        rows: vec![Row::new(
            "get: request published → answer received (broker + mqtt-api) vs raw GetItem",
            latency(&api),
            Some(latency(&raw)),
            "p50 ≤ raw + 0.5 ms",
        )],
        notes: vec![format!(
            "Overhead p50 {:.2} ms, p99 {:.2} ms. Of that, the broker path alone (an echo \
             client in this process answering through the same broker, no DynamoDB) takes \
             p50 {:.2} / p99 {:.2} ms; the rest is mqtt-api's own GetItem against the emulator.",
            (quantile(&api, 0.5).as_secs_f64() - quantile(&raw, 0.5).as_secs_f64()) * 1e3,
            (quantile(&api, 0.99).as_secs_f64() - quantile(&raw, 0.99).as_secs_f64()) * 1e3,
            quantile(&echo, 0.5).as_secs_f64() * 1e3,
            quantile(&echo, 0.99).as_secs_f64() * 1e3,
        )],
    };
    Ok(section)
}
