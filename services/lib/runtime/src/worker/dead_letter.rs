//! Sending messages to a DLQ with the reason attached.
//!
//! SendMessageBatch takes at most 10 entries and 256 KiB in all (bodies plus attribute names,
//! types and values). Ten ~100 KB messages fit no single batch, and SQS refuses an oversized
//! batch as a whole, so entries are packed into batches that fit ([`pack`]); an entry that
//! fits no batch (or that a batch refused) is sent alone. The reason is cut to what still
//! fits, never dropped.

use aws_sdk_sqs::types::{Message, MessageAttributeValue, SendMessageBatchRequestEntry};
use aws_sdk_sqs::Client as Sqs;
use lambdaless_contracts::dlq::{truncate_reason, MAX_REASON_BYTES, REASON_ATTRIBUTE};

use crate::aws;

/// SQS's limit for one message and for one batch's total payload.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// SQS's limit of entries per batch.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// What the reason attribute costs besides its value: its name and its data type.
const ATTRIBUTE_OVERHEAD: usize = REASON_ATTRIBUTE.len() + "String".len();

/// The body sent to the DLQ: SQS refuses empty bodies (the reason says what was wrong).
fn body_of(message: &Message) -> &str {
    message
        .body
        .as_deref()
        .filter(|b| !b.is_empty())
        .unwrap_or(" ")
}

/// The reason, cut so that body + attribute stay within one message's limit.
fn reason_for<'r>(body: &str, reason: &'r str) -> &'r str {
    let room = MAX_PAYLOAD_BYTES
        .saturating_sub(body.len() + ATTRIBUTE_OVERHEAD)
        .min(MAX_REASON_BYTES);
    truncate_reason(reason, room)
}

/// Groups entries of the given sizes (in order) into batches of at most `max_entries` and
/// `max_bytes`. An entry larger than `max_bytes` gets a batch of its own.
pub fn pack(sizes: &[usize], max_entries: usize, max_bytes: usize) -> Vec<Vec<usize>> {
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut bytes = 0;
    for (i, &size) in sizes.iter().enumerate() {
        if !current.is_empty() && (current.len() == max_entries || bytes + size > max_bytes) {
            batches.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.push(i);
        bytes += size;
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// Sends each `(message, reason)` to `dlq_url`; returns the indexes the DLQ accepted (only
/// those may be deleted from the source queue).
pub async fn send(sqs: &Sqs, dlq_url: &str, rejected: &[(&Message, String)]) -> Vec<usize> {
    let sizes: Vec<usize> = rejected
        .iter()
        .map(|(m, reason)| {
            let body = body_of(m);
            body.len() + ATTRIBUTE_OVERHEAD + reason_for(body, reason).len()
        })
        .collect();
    let mut accepted = Vec::new();
    let mut alone = Vec::new();
    for batch in pack(&sizes, MAX_BATCH_ENTRIES, MAX_PAYLOAD_BYTES) {
        if batch.len() == 1 {
            alone.push(batch[0]);
            continue;
        }
        let entries = batch
            .iter()
            .map(|&i| {
                let (m, reason) = &rejected[i];
                let body = body_of(m);
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .message_attributes(REASON_ATTRIBUTE, attribute(reason_for(body, reason)))
                    .build()
                    .expect("entry is complete")
            })
            .collect();
        match sqs
            .send_message_batch()
            .queue_url(dlq_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => {
                accepted.extend(
                    out.successful
                        .iter()
                        .filter_map(|s| s.id.parse::<usize>().ok()),
                );
                alone.extend(out.failed.iter().filter_map(|f| f.id.parse::<usize>().ok()));
            }
            Err(e) => {
                tracing::warn!(error = %aws::describe(&e), entries = batch.len(), "DLQ batch refused; sending one at a time");
                alone.extend(batch);
            }
        }
    }
    for i in alone {
        let (m, reason) = &rejected[i];
        let body = body_of(m);
        match sqs
            .send_message()
            .queue_url(dlq_url)
            .message_body(body)
            .message_attributes(REASON_ATTRIBUTE, attribute(reason_for(body, reason)))
            .send()
            .await
        {
            Ok(_) => accepted.push(i),
            Err(e) => {
                tracing::warn!(error = %aws::describe(&e), "cannot reach the DLQ; the message stays queued (the redrive policy moves it later)");
            }
        }
    }
    for &i in &accepted {
        let (m, reason) = &rejected[i];
        tracing::warn!(sqs_message_id = m.message_id.as_deref().unwrap_or(""), %reason, "dead-lettered");
    }
    accepted.sort_unstable();
    accepted
}

fn attribute(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("attribute is complete")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_small_messages_make_one_batch() {
        assert_eq!(
            pack(&[100; 10], 10, MAX_PAYLOAD_BYTES),
            vec![(0..10).collect::<Vec<_>>()]
        );
        assert_eq!(pack(&[100; 12], 10, MAX_PAYLOAD_BYTES).len(), 2);
    }

    #[test]
    fn large_messages_are_split_by_bytes() {
        let batches = pack(&[100_000; 10], 10, MAX_PAYLOAD_BYTES);
        assert_eq!(batches.len(), 5);
        assert!(batches.iter().all(|b| b.len() == 2));
        let all: Vec<usize> = batches.into_iter().flatten().collect();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn an_oversized_entry_is_alone() {
        assert_eq!(
            pack(&[10, 300_000, 10], 10, MAX_PAYLOAD_BYTES),
            vec![vec![0], vec![1], vec![2]]
        );
    }

    #[test]
    fn the_reason_shrinks_to_fit_a_full_body() {
        let body = "x".repeat(MAX_PAYLOAD_BYTES - ATTRIBUTE_OVERHEAD - 10);
        assert_eq!(reason_for(&body, &"r".repeat(50)).len(), 10);
        assert_eq!(reason_for("{}", &"r".repeat(5000)).len(), MAX_REASON_BYTES);
    }
}
