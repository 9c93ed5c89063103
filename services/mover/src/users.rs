//! The `users` pipeline (seed 4): `users-create` → `users`, then the user's
//! reply queue `user-queue-{userId}` (seed 1).
//!
//! The user id is the UUIDv5 of the SQS MessageId and `createdAt` is the
//! message's SentTimestamp, so a redelivered message writes the very same
//! item again: it cannot create a second user. Runs on the runtime's worker core: malformed
//! bodies (the same [`NewUser::validate`] as `api-gateway`) go to `users-create-dlq` with the
//! reason; the rest are written with BatchWriteItem, their reply queues created, and only
//! then are their messages deleted.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::primitives::{DateTime, DateTimeFormat};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::Message;
use lambdaless_contracts::user::{user_id, NewUser};
use lambdaless_contracts::{names, Names};
use lambdaless_runtime::aws::{self, AwsClients};
use lambdaless_runtime::worker::store::{self, Item, Written};
use lambdaless_runtime::worker::{self, Handler, Outcome, Polling, Worker};
use tokio_util::sync::CancellationToken;

use crate::settings::UsersSettings;

/// Creates users and their reply queues.
pub struct Users {
    aws: AwsClients,
    names: Names,
    table: String,
}

/// The stored item for a message, or why it cannot be stored. Pure, so the
/// idempotence of redelivery is a unit test.
fn user_item(sqs_message_id: &str, body: &str, sent_ms: u64) -> Result<(String, Item), String> {
    if sqs_message_id.is_empty() {
        return Err("message has no MessageId".to_owned());
    }
    let user: NewUser = serde_json::from_str(body).map_err(|e| format!("body: {e}"))?;
    user.validate().map_err(|e| e.to_string())?;
    let id = user_id(sqs_message_id);
    let sent = UNIX_EPOCH + Duration::from_millis(sent_ms);
    let created_at = DateTime::from(if sent_ms == 0 {
        SystemTime::now()
    } else {
        sent
    })
    .fmt(DateTimeFormat::DateTime)
    .unwrap_or_default();
    let item = HashMap::from([
        ("userId".to_owned(), AttributeValue::S(id.clone())),
        ("name".to_owned(), AttributeValue::S(user.name)),
        ("email".to_owned(), AttributeValue::S(user.email)),
        ("createdAt".to_owned(), AttributeValue::S(created_at)),
        (
            "sqsMessageId".to_owned(),
            AttributeValue::S(sqs_message_id.to_owned()),
        ),
    ]);
    Ok((id, item))
}

/// Resolves the queue URLs (waiting while SQS is not up) and builds the worker; `None` on
/// shutdown.
pub async fn worker(
    aws: &AwsClients,
    names: &Names,
    settings: &UsersSettings,
    shutdown: &CancellationToken,
) -> Option<Worker<Users>> {
    let inbound_url = aws::queue_url(&aws.sqs, &names.name(names::USERS_CREATE), shutdown).await?;
    let dlq_url = aws::queue_url(&aws.sqs, &names.dlq(names::USERS_CREATE), shutdown).await?;
    let handler = Users {
        aws: aws.clone(),
        names: names.clone(),
        table: names.name(names::USERS),
    };
    Some(
        Worker::new(aws.sqs.clone(), inbound_url, dlq_url, "users", handler)
            .counted_as("mover_messages_total")
            .polling(Polling {
                wait_secs: settings.wait_secs,
                ..Polling::default()
            }),
    )
}

impl Handler for Users {
    async fn handle(&self, batch: &[Message]) -> Vec<Outcome> {
        let mut outcomes = vec![Outcome::Done; batch.len()];
        let mut ready: Vec<(usize, String)> = Vec::new();
        let mut items = Vec::new();
        for (i, m) in batch.iter().enumerate() {
            match user_item(
                m.message_id.as_deref().unwrap_or_default(),
                m.body.as_deref().unwrap_or_default(),
                worker::sent_timestamp_ms(m),
            ) {
                Ok((id, item)) => {
                    ready.push((i, id));
                    items.push(item);
                }
                Err(reason) => outcomes[i] = Outcome::DeadLetter(reason),
            }
        }
        let written = store::write_items(
            &self.aws.dynamodb,
            &self.table,
            &["userId"],
            &items,
            Duration::from_millis(50),
        )
        .await;
        for ((i, id), written) in ready.into_iter().zip(written) {
            outcomes[i] = match written {
                // The reply queue is part of creating the user: without it the message
                // stays queued and the (idempotent) write repeats.
                Written::Stored => match self
                    .aws
                    .sqs
                    .create_queue()
                    .queue_name(self.names.user_queue(&id))
                    .send()
                    .await
                {
                    Ok(_) => Outcome::Done,
                    Err(e) => Outcome::Retry(format!(
                        "reply queue of {id} not created: {}",
                        aws::describe(&e)
                    )),
                },
                Written::Refused(reason) => {
                    Outcome::DeadLetter(format!("DynamoDB refused the item: {reason}"))
                }
                Written::Failed(error) => Outcome::Retry(error),
            };
        }
        outcomes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redelivery_writes_the_same_item() {
        let body = r#"{"name":"Alice Smith","email":"alice@example.com"}"#;
        let a = user_item("m-1", body, 1_700_000_000_000).unwrap();
        let b = user_item("m-1", body, 1_700_000_000_000).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.0, user_id("m-1"));
        assert_eq!(a.1["sqsMessageId"], AttributeValue::S("m-1".into()));
        assert_eq!(
            a.1["createdAt"],
            AttributeValue::S("2023-11-14T22:13:20Z".into())
        );
        assert_ne!(user_item("m-2", body, 0).unwrap().0, a.0);
    }

    #[test]
    fn malformed_bodies_have_reasons() {
        for (body, field) in [
            ("not json", "body"),
            (r#"{"name":"Alice Smith"}"#, "email"),
            (r#"{"name":"Al","email":"a@b.co"}"#, "name"),
            (r#"{"name":"Alice Smith","email":"nope"}"#, "email"),
            (r#"{"name":"Alice Smith","email":"a@b.co","x":1}"#, "x"),
        ] {
            let reason = user_item("m", body, 0).unwrap_err();
            assert!(reason.contains(field), "{body}: {reason}");
        }
    }
}
