//! The operations of SPEC §3 against DynamoDB and SQS. Each takes the parsed
//! topic and payload and returns the JSON answer; the caller publishes it.
//! Dependency failures become a generic error answer, the detail is logged.

use aws_sdk_dynamodb::types::AttributeValue;
use lambdaless_contracts::api::{self, Answer, ErrorAnswer, OutboundMessage, RequestPayload};
use lambdaless_contracts::topics::RequestTopic;
use lambdaless_contracts::{names, Names};
use lambdaless_runtime::aws::{self, AwsClients};
use lambdaless_runtime::dynamo_json;

/// The outcome label of the `mqtt_api_requests_total` counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Answered with the operation's success shape.
    Ok,
    /// Answered with one of the seed's error shapes (not found and the like).
    NotFound,
    /// A dependency failed; answered with a generic error.
    Failed,
}

impl Outcome {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NotFound => "error",
            Self::Failed => "failed",
        }
    }
}

/// Everything the handlers need; cheap to clone.
#[derive(Clone)]
pub(crate) struct Operations {
    aws: AwsClients,
    table: String,
    /// `device-outbound`, where `send` puts messages for other devices.
    outbound: aws::NamedQueue,
}

impl Operations {
    pub(crate) fn new(aws: AwsClients, names: &Names) -> Self {
        Self {
            outbound: aws::NamedQueue::new(aws.sqs.clone(), names.name(names::DEVICE_OUTBOUND)),
            table: names.name(names::DEVICE_MESSAGES),
            aws,
        }
    }

    /// Answers one request (whose token was already checked).
    pub(crate) async fn answer(
        &self,
        topic: &RequestTopic<'_>,
        payload: &RequestPayload,
    ) -> (Answer, Outcome) {
        let result = match *topic {
            RequestTopic::Query { uuid } => self.query(uuid).await,
            RequestTopic::Get { uuid, message_id } => self.get(uuid, message_id).await,
            RequestTopic::Next { uuid, message_id } => self.next(uuid, message_id).await,
            RequestTopic::Delete { uuid, message_id } => self.delete(uuid, message_id).await,
            RequestTopic::Send { uuid, recipient } => self.send(uuid, recipient, payload).await,
            RequestTopic::Unknown { .. } => {
                return (
                    Answer::error(api::UNKNOWN_OPERATION, None),
                    Outcome::NotFound,
                )
            }
        };
        match result {
            Ok(answer) => answer,
            Err(detail) => {
                tracing::warn!(op = topic.op(), error = %detail, "request failed");
                let uuid = match *topic {
                    RequestTopic::Query { uuid }
                    | RequestTopic::Get { uuid, .. }
                    | RequestTopic::Next { uuid, .. }
                    | RequestTopic::Delete { uuid, .. }
                    | RequestTopic::Send { uuid, .. } => Some(uuid),
                    RequestTopic::Unknown { .. } => None,
                };
                (
                    Answer::error(api::TEMPORARILY_UNAVAILABLE, uuid),
                    Outcome::Failed,
                )
            }
        }
    }

    /// The first message id of `uuid` in one direction of the sort key.
    async fn edge(&self, uuid: &str, newest: bool) -> Result<Option<String>, String> {
        let out = self
            .aws
            .dynamodb
            .query()
            .table_name(&self.table)
            .key_condition_expression("#u = :u")
            .expression_attribute_names("#u", "uuid")
            .expression_attribute_names("#m", "messageId")
            .expression_attribute_values(":u", AttributeValue::S(uuid.to_owned()))
            .projection_expression("#m")
            .scan_index_forward(!newest)
            .limit(1)
            .send()
            .await
            .map_err(|e| aws::describe(&e))?;
        Ok(first_message_id(out.items))
    }

    async fn query(&self, uuid: &str) -> Result<(Answer, Outcome), String> {
        let (newest, oldest) = tokio::try_join!(self.edge(uuid, true), self.edge(uuid, false))?;
        Ok(match (newest, oldest) {
            (Some(newest), Some(oldest)) => (
                Answer::Query {
                    newest_message_id: newest,
                    oldest_message_id: oldest,
                    uuid: uuid.to_owned(),
                },
                Outcome::Ok,
            ),
            _ => (
                Answer::error(api::NO_MESSAGES, Some(uuid)),
                Outcome::NotFound,
            ),
        })
    }

    async fn get(&self, uuid: &str, message_id: &str) -> Result<(Answer, Outcome), String> {
        let out = self
            .aws
            .dynamodb
            .get_item()
            .table_name(&self.table)
            .key("uuid", AttributeValue::S(uuid.to_owned()))
            .key("messageId", AttributeValue::S(message_id.to_owned()))
            .send()
            .await
            .map_err(|e| aws::describe(&e))?;
        Ok(match out.item.as_ref().and_then(|i| i.get("body")) {
            Some(body) => (
                Answer::Get {
                    body: dynamo_json::from_attribute(body),
                    message_id: message_id.to_owned(),
                    uuid: uuid.to_owned(),
                },
                Outcome::Ok,
            ),
            None => (
                Answer::Error(ErrorAnswer {
                    error: api::MESSAGE_NOT_AVAILABLE.to_owned(),
                    uuid: Some(uuid.to_owned()),
                    message_id: Some(message_id.to_owned()),
                    ..ErrorAnswer::default()
                }),
                Outcome::NotFound,
            ),
        })
    }

    async fn next(&self, uuid: &str, message_id: &str) -> Result<(Answer, Outcome), String> {
        let out = self
            .aws
            .dynamodb
            .query()
            .table_name(&self.table)
            .key_condition_expression("#u = :u AND #m > :m")
            .expression_attribute_names("#u", "uuid")
            .expression_attribute_names("#m", "messageId")
            .expression_attribute_values(":u", AttributeValue::S(uuid.to_owned()))
            .expression_attribute_values(":m", AttributeValue::S(message_id.to_owned()))
            .projection_expression("#m")
            .scan_index_forward(true)
            .limit(1)
            .send()
            .await
            .map_err(|e| aws::describe(&e))?;
        Ok(match first_message_id(out.items) {
            Some(next) => (
                Answer::Next {
                    next_message_id: next,
                    specified_message_id: message_id.to_owned(),
                    uuid: uuid.to_owned(),
                },
                Outcome::Ok,
            ),
            None => (
                Answer::Error(ErrorAnswer {
                    error: api::NO_NEWER_MESSAGES.to_owned(),
                    uuid: Some(uuid.to_owned()),
                    specified_message_id: Some(message_id.to_owned()),
                    ..ErrorAnswer::default()
                }),
                Outcome::NotFound,
            ),
        })
    }

    async fn delete(&self, uuid: &str, message_id: &str) -> Result<(Answer, Outcome), String> {
        self.aws
            .dynamodb
            .delete_item()
            .table_name(&self.table)
            .key("uuid", AttributeValue::S(uuid.to_owned()))
            .key("messageId", AttributeValue::S(message_id.to_owned()))
            .send()
            .await
            .map_err(|e| aws::describe(&e))?;
        Ok((
            Answer::Deleted {
                message_id: message_id.to_owned(),
                uuid: uuid.to_owned(),
            },
            Outcome::Ok,
        ))
    }

    async fn send(
        &self,
        uuid: &str,
        recipient: &str,
        request: &RequestPayload,
    ) -> Result<(Answer, Outcome), String> {
        let Some(message) = request.payload.clone() else {
            return Ok((
                Answer::error(api::MISSING_PAYLOAD, Some(uuid)),
                Outcome::NotFound,
            ));
        };
        let outbound = OutboundMessage {
            sender: uuid.to_owned(),
            recipient: recipient.to_owned(),
            message,
            client_message_id: request
                .client_message_id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        };
        let body = serde_json::to_string(&outbound).expect("outbound message serializes");
        let message_id = self.outbound.send(body).await.map_err(|e| e.to_string())?;
        Ok((
            Answer::Sent {
                uuid: uuid.to_owned(),
                sqs_message_id: message_id,
            },
            Outcome::Ok,
        ))
    }
}

fn first_message_id(
    items: Option<Vec<std::collections::HashMap<String, AttributeValue>>>,
) -> Option<String> {
    items?
        .into_iter()
        .next()?
        .remove("messageId")?
        .as_s()
        .ok()
        .cloned()
}
