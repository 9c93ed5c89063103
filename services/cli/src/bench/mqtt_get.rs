//! `bench mqtt-get`: latency of the API's `get` (publish request → answer
//! received, through the broker and mqtt-api running in process) against a
//! raw GetItem of the same item, sampled alternately in the same run.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use lambdaless_contracts::names;
use lambdaless_runtime::aws;
use lambdaless_runtime::config::MqttSettings;
use lambdaless_runtime::ServiceContext;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{ms_plain as ms, quantile};
use crate::device::{MqttArgs, Session};

/// Runs the benchmark and prints the table.
pub async fn run(args: &MqttArgs, samples: usize) -> anyhow::Result<()> {
    let aws = aws::load().await;
    let names = super::fresh_names(&aws).await?;
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

    let stop = CancellationToken::new();
    let settings = mqtt_api::Settings {
        admin_port: 0,
        prefix: names.prefix().to_owned(),
        mqtt: MqttSettings {
            host: args.host.clone(),
            port: args.port,
            username: Some(args.user.clone()),
            password: Some(args.password.clone().into()),
            client_id_prefix: "bench-mqtt-api".to_owned(),
            ..MqttSettings::default()
        },
        ..mqtt_api::Settings::default()
    };
    let app = mqtt_api::App::build(settings, ServiceContext::new("mqtt-api", stop.clone())).await?;
    let server = tokio::spawn(app.run());
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
    raw.sort();
    api.sort();
    println!("\n| {samples} sequential gets | p50 ms | p99 ms |");
    println!("|---|---|---|");
    println!(
        "| raw GetItem | {} | {} |",
        ms(quantile(&raw, 0.5)),
        ms(quantile(&raw, 0.99))
    );
    println!(
        "| mqtt-api get (request → answer via broker) | {} | {} |",
        ms(quantile(&api, 0.5)),
        ms(quantile(&api, 0.99))
    );
    println!(
        "| overhead (api − raw) | {} | {} |",
        ms(quantile(&api, 0.5).saturating_sub(quantile(&raw, 0.5))),
        ms(quantile(&api, 0.99).saturating_sub(quantile(&raw, 0.99)))
    );
    stop.cancel();
    let _ = server.await;
    Ok(())
}
