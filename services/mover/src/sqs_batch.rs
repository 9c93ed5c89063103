//! The SQS steps every mover pipeline shares: dead-lettering unusable
//! messages with their reason, and deleting what was handled.

use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageAttributeValue, SendMessageBatchRequestEntry,
};
use aws_sdk_sqs::Client as Sqs;
use lambdaless_contracts::device::DLQ_REASON_ATTRIBUTE;
use lambdaless_runtime::aws;

/// Sends unusable messages to `dlq_url` with the reason as a message
/// attribute, then deletes from `queue_url` only those the DLQ accepted.
pub(crate) async fn dead_letter(
    sqs: &Sqs,
    queue_url: &str,
    dlq_url: &str,
    pipeline: &'static str,
    rejected: Vec<(Message, String)>,
) {
    let entries: Vec<SendMessageBatchRequestEntry> = rejected
        .iter()
        .enumerate()
        .map(|(i, (m, reason))| {
            let mut reason = reason.clone();
            reason.truncate(reason.floor_char_boundary(1024));
            let reason_attr = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(reason)
                .build()
                .expect("attribute is complete");
            SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                // SQS refuses empty bodies; the reason says what was wrong.
                .message_body(
                    m.body
                        .clone()
                        .filter(|b| !b.is_empty())
                        .unwrap_or_else(|| " ".to_owned()),
                )
                .message_attributes(DLQ_REASON_ATTRIBUTE, reason_attr)
                .build()
                .expect("entry is complete")
        })
        .collect();
    let sent: Vec<usize> = match sqs
        .send_message_batch()
        .queue_url(dlq_url)
        .set_entries(Some(entries))
        .send()
        .await
    {
        Ok(out) => out
            .successful
            .iter()
            .filter_map(|s| s.id.parse().ok())
            .collect(),
        Err(e) => {
            tracing::warn!(error = %aws::describe(&e), "cannot reach the DLQ; messages stay queued");
            Vec::new()
        }
    };
    for &i in &sent {
        let (m, reason) = &rejected[i];
        tracing::warn!(sqs_message_id = m.message_id.as_deref().unwrap_or(""), %reason, "dead-lettered");
    }
    let receipts: Vec<&str> = sent
        .iter()
        .filter_map(|&i| rejected[i].0.receipt_handle.as_deref())
        .collect();
    delete(sqs, queue_url, &receipts).await;
    metrics::counter!("mover_messages_total", "pipeline" => pipeline, "outcome" => "dead_lettered")
        .increment(sent.len() as u64);
}

/// Deletes by receipt handle, ten at a time. A failed delete is harmless:
/// the message is redelivered and its write repeats onto the same item.
pub(crate) async fn delete(sqs: &Sqs, queue_url: &str, receipts: &[&str]) {
    for chunk in receipts.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, r)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(*r)
                    .build()
                    .expect("entry is complete")
            })
            .collect();
        match sqs
            .delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) if !out.failed.is_empty() => {
                tracing::warn!(
                    failed = out.failed.len(),
                    "some deletes failed; those messages will be redelivered"
                );
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %aws::describe(&e), "delete failed; messages will be redelivered")
            }
        }
    }
}
