//! Fetch round trip vs the minimal chain of raw calls one fetch needs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use lambdaless_contracts::{names, Names};
use lambdaless_runtime::aws::{describe, AwsClients};

use super::quantile;
use super::report::{Measure, Row, Section};
use lambdaless_client::fetch::FetchClient;
use lambdaless_client::provision::Provisioner;

const DOC: &str = "bench-doc";

pub(super) async fn run(
    aws: AwsClients,
    names: Names,
    rounds: usize,
    user: &str,
) -> anyhow::Result<Section> {
    let raw_user = format!("{user}-raw");
    Provisioner::new(aws.clone(), names.clone())
        .provision(&[user.to_owned(), raw_user.clone()])
        .await?;
    aws.dynamodb
        .put_item()
        .table_name(names.name(names::DOCUMENTS))
        .set_item(Some(HashMap::from([
            ("id".to_owned(), AttributeValue::S(DOC.into())),
            ("title".to_owned(), AttributeValue::S("benchmark".into())),
            ("size".to_owned(), AttributeValue::N("42".into())),
        ])))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(describe(&e)))?;
    let client = FetchClient::new(aws.sqs.clone(), names.clone());
    let raw_request = queue_url(&aws, &names.user_queue(&raw_user)).await?;
    let raw_reply = queue_url(&aws, &names.user_queue(&format!("{raw_user}2"))).await;
    let raw_reply = match raw_reply {
        Ok(url) => url,
        Err(_) => {
            Provisioner::new(aws.clone(), names.clone())
                .provision(&[format!("{raw_user}2")])
                .await?;
            queue_url(&aws, &names.user_queue(&format!("{raw_user}2"))).await?
        }
    };
    let table = names.name(names::DOCUMENTS);
    // Warm-up: connections, the responder's URL cache.
    for _ in 0..5 {
        client.fetch(DOC, user, Duration::from_secs(10)).await?;
        raw_chain(&aws, &raw_request, &raw_reply, &table).await?;
    }
    let mut ours = Vec::with_capacity(rounds);
    let mut raw = Vec::with_capacity(rounds);
    // Interleaved so both see the same emulator load.
    for _ in 0..rounds {
        let t = Instant::now();
        client.fetch(DOC, user, Duration::from_secs(10)).await?;
        ours.push(t.elapsed());
        let t = Instant::now();
        raw_chain(&aws, &raw_request, &raw_reply, &table).await?;
        raw.push(t.elapsed());
    }
    let latency = |v: &[Duration]| Measure::Latency {
        p50: quantile(v, 0.5),
        p99: quantile(v, 0.99),
    };
    Ok(Section {
        key: "fetch",
        title: format!("Fetch round trip, {rounds} rounds"),
        command: format!("lambdaless bench fetch --rounds {rounds}"),
        baseline: "the raw chain one fetch needs, in one task: send, receive, delete, GetItem, send, receive, delete".to_owned(),
        rows: vec![Row::new(
            "fetch (client library + fetch-responder) vs raw chain",
            latency(&ours),
            Some(latency(&raw)),
            "≤ 1.3×",
        )],
        notes: Vec::new(),
    })
}

async fn queue_url(aws: &AwsClients, name: &str) -> anyhow::Result<String> {
    Ok(aws
        .sqs
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(describe(&e)))?
        .queue_url
        .unwrap_or_default())
}

/// send, receive, delete, GetItem, send, receive, delete.
async fn raw_chain(
    aws: &AwsClients,
    request: &str,
    reply: &str,
    table: &str,
) -> anyhow::Result<()> {
    let sqs = &aws.sqs;
    for (i, url) in [request, reply].into_iter().enumerate() {
        if i == 1 {
            aws.dynamodb
                .get_item()
                .table_name(table)
                .key("id", AttributeValue::S(DOC.into()))
                .send()
                .await
                .map_err(|e| anyhow::anyhow!(describe(&e)))?;
        }
        sqs.send_message()
            .queue_url(url)
            .message_body(r#"{"nonce":1}"#)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(describe(&e)))?;
        loop {
            let out = sqs
                .receive_message()
                .queue_url(url)
                .wait_time_seconds(20)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!(describe(&e)))?;
            if let Some(m) = out.messages.unwrap_or_default().into_iter().next() {
                sqs.delete_message()
                    .queue_url(url)
                    .set_receipt_handle(m.receipt_handle)
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!(describe(&e)))?;
                break;
            }
        }
    }
    Ok(())
}
