//! Idempotent creation of the queues (each with its DLQ and redrive policy)
//! and tables (with their GSIs) of SPEC §2.
//!
//! Running it again changes nothing: existing queues keep their URL and
//! attributes unless the redrive policy differs from the contract, existing
//! tables are left alone except for a missing index, which is added.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, KeySchemaElement, KeyType as DynKeyType, Projection,
    ProjectionType, ScalarAttributeType, TableStatus,
};
use aws_sdk_sqs::types::QueueAttributeName;
use lambdaless_contracts::names::{self, MAX_RECEIVE_COUNT};
use lambdaless_contracts::schema::{self, KeyAttr, KeyType, TableSpec};
use lambdaless_contracts::Names;
use lambdaless_runtime::aws::{describe, AwsClients};

/// Something `provision` could not do.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("the AWS endpoint did not answer within {0:?}: {1}")]
    Unreachable(Duration, String),
    #[error("queue {queue}: {reason}")]
    Queue { queue: String, reason: String },
    #[error("table {table}: {reason}")]
    Table { table: String, reason: String },
}

/// What a run did, resource by resource.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
}

impl Report {
    fn merge(&mut self, change: Change, what: String) {
        match change {
            Change::Created => self.created.push(what),
            Change::Updated => self.updated.push(what),
            Change::Unchanged => self.unchanged.push(what),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Created,
    Updated,
    Unchanged,
}

/// Creates lambdaless's resources under one name prefix.
pub struct Provisioner {
    aws: AwsClients,
    names: Names,
}

impl Provisioner {
    pub fn new(aws: AwsClients, names: Names) -> Self {
        Self { aws, names }
    }

    /// Waits until both SQS and DynamoDB answer, at most `timeout`.
    pub async fn wait_until_reachable(&self, timeout: Duration) -> Result<(), ProvisionError> {
        let deadline = Instant::now() + timeout;
        loop {
            let sqs = self.aws.sqs.list_queues().max_results(1).send().await;
            let ddb = self.aws.dynamodb.list_tables().limit(1).send().await;
            let last = match (sqs, ddb) {
                (Ok(_), Ok(_)) => return Ok(()),
                (Err(e), _) => format!("SQS: {}", describe(&e)),
                (_, Err(e)) => format!("DynamoDB: {}", describe(&e)),
            };
            if Instant::now() >= deadline {
                return Err(ProvisionError::Unreachable(timeout, last));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Creates everything of SPEC §2 plus the reply queues of `users`.
    pub async fn provision(&self, users: &[String]) -> Result<Report, ProvisionError> {
        let mut report = Report::default();
        for queue in names::QUEUES {
            let dlq = self.names.dlq(queue);
            let (dlq_url, change) = self.ensure_queue(&dlq, None).await?;
            report.merge(change, format!("queue {dlq}"));
            let arn = self.queue_arn(&dlq, &dlq_url).await?;
            let redrive = serde_json::json!({
                "deadLetterTargetArn": arn,
                "maxReceiveCount": MAX_RECEIVE_COUNT.to_string(),
            })
            .to_string();
            let main = self.names.name(queue);
            let (_, change) = self.ensure_queue(&main, Some(redrive)).await?;
            report.merge(change, format!("queue {main}"));
        }
        for user in users {
            let name = self.names.user_queue(user);
            let (_, change) = self.ensure_queue(&name, None).await?;
            report.merge(change, format!("queue {name}"));
        }
        for spec in schema::TABLES {
            let name = self.names.name(spec.name);
            let change = self.ensure_table(spec, &name).await?;
            report.merge(change, format!("table {name}"));
        }
        Ok(report)
    }

    async fn ensure_queue(
        &self,
        name: &str,
        redrive: Option<String>,
    ) -> Result<(String, Change), ProvisionError> {
        let err = |reason: String| ProvisionError::Queue {
            queue: name.to_owned(),
            reason,
        };
        if let Ok(out) = self.aws.sqs.get_queue_url().queue_name(name).send().await {
            let url = out.queue_url.unwrap_or_default();
            let Some(wanted) = redrive else {
                return Ok((url, Change::Unchanged));
            };
            let attrs = self
                .aws
                .sqs
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(QueueAttributeName::RedrivePolicy)
                .send()
                .await
                .map_err(|e| err(describe(&e)))?;
            let current = attrs
                .attributes
                .and_then(|mut a| a.remove(&QueueAttributeName::RedrivePolicy));
            if same_redrive(current.as_deref(), &wanted) {
                return Ok((url, Change::Unchanged));
            }
            self.aws
                .sqs
                .set_queue_attributes()
                .queue_url(&url)
                .attributes(QueueAttributeName::RedrivePolicy, wanted)
                .send()
                .await
                .map_err(|e| err(describe(&e)))?;
            return Ok((url, Change::Updated));
        }
        let mut create = self.aws.sqs.create_queue().queue_name(name);
        if let Some(redrive) = redrive {
            create = create.attributes(QueueAttributeName::RedrivePolicy, redrive);
        }
        let out = create.send().await.map_err(|e| err(describe(&e)))?;
        Ok((out.queue_url.unwrap_or_default(), Change::Created))
    }

    async fn queue_arn(&self, name: &str, url: &str) -> Result<String, ProvisionError> {
        let out = self
            .aws
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| ProvisionError::Queue {
                queue: name.to_owned(),
                reason: describe(&e),
            })?;
        out.attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .ok_or_else(|| ProvisionError::Queue {
                queue: name.to_owned(),
                reason: "no QueueArn attribute".to_owned(),
            })
    }

    async fn ensure_table(&self, spec: &TableSpec, name: &str) -> Result<Change, ProvisionError> {
        let err = |reason: String| ProvisionError::Table {
            table: name.to_owned(),
            reason,
        };
        let existing = self
            .aws
            .dynamodb
            .describe_table()
            .table_name(name)
            .send()
            .await;
        let change = match existing {
            Ok(out) => {
                let present: BTreeSet<String> = out
                    .table
                    .and_then(|t| t.global_secondary_indexes)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|g| g.index_name)
                    .collect();
                let missing: Vec<_> = spec
                    .gsis
                    .iter()
                    .filter(|g| !present.contains(g.name))
                    .collect();
                if missing.is_empty() {
                    return Ok(Change::Unchanged);
                }
                for gsi in missing {
                    self.aws
                        .dynamodb
                        .update_table()
                        .table_name(name)
                        .attribute_definitions(attr_def(gsi.hash))
                        .global_secondary_index_updates(
                            GlobalSecondaryIndexUpdate::builder()
                                .create(
                                    CreateGlobalSecondaryIndexAction::builder()
                                        .index_name(gsi.name)
                                        .key_schema(key(gsi.hash, DynKeyType::Hash))
                                        .projection(all())
                                        .build()
                                        .map_err(|e| err(e.to_string()))?,
                                )
                                .build(),
                        )
                        .send()
                        .await
                        .map_err(|e| err(describe(&e)))?;
                }
                Change::Updated
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                let mut defs: Vec<KeyAttr> = vec![spec.hash];
                defs.extend(spec.range);
                defs.extend(spec.gsis.iter().map(|g| g.hash));
                defs.sort_by_key(|a| a.name);
                defs.dedup_by_key(|a| a.name);
                let mut create = self
                    .aws
                    .dynamodb
                    .create_table()
                    .table_name(name)
                    .billing_mode(BillingMode::PayPerRequest)
                    .set_attribute_definitions(Some(defs.into_iter().map(attr_def).collect()))
                    .key_schema(key(spec.hash, DynKeyType::Hash));
                if let Some(range) = spec.range {
                    create = create.key_schema(key(range, DynKeyType::Range));
                }
                for gsi in spec.gsis {
                    create = create.global_secondary_indexes(
                        GlobalSecondaryIndex::builder()
                            .index_name(gsi.name)
                            .key_schema(key(gsi.hash, DynKeyType::Hash))
                            .projection(all())
                            .build()
                            .map_err(|e| err(e.to_string()))?,
                    );
                }
                match create.send().await {
                    Ok(_) => Change::Created,
                    // Another provisioner created it in between.
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_resource_in_use_exception()) =>
                    {
                        Change::Unchanged
                    }
                    Err(e) => return Err(err(describe(&e))),
                }
            }
            Err(e) => return Err(err(describe(&e))),
        };
        self.wait_active(name).await?;
        Ok(change)
    }

    async fn wait_active(&self, name: &str) -> Result<(), ProvisionError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self
                .aws
                .dynamodb
                .describe_table()
                .table_name(name)
                .send()
                .await
                .map_err(|e| ProvisionError::Table {
                    table: name.to_owned(),
                    reason: describe(&e),
                })?;
            let active = out.table.is_some_and(|table| {
                let gsis_active = table
                    .global_secondary_indexes
                    .unwrap_or_default()
                    .iter()
                    .all(|g| {
                        g.index_status
                            .as_ref()
                            .is_none_or(|s| s.as_str() == "ACTIVE")
                    });
                table.table_status == Some(TableStatus::Active) && gsis_active
            });
            if active {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ProvisionError::Table {
                    table: name.to_owned(),
                    reason: "not ACTIVE after 60 s".to_owned(),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Compares redrive policies by meaning (AWS may reorder or retype fields).
fn same_redrive(current: Option<&str>, wanted: &str) -> bool {
    let parse = |s: &str| -> Option<(String, String)> {
        let v: serde_json::Value = serde_json::from_str(s).ok()?;
        let arn = v.get("deadLetterTargetArn")?.as_str()?.to_owned();
        let count = match v.get("maxReceiveCount")? {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        Some((arn, count))
    };
    match (current.and_then(parse), parse(wanted)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

fn attr_def(attr: KeyAttr) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(attr.name)
        .attribute_type(match attr.kind {
            KeyType::S => ScalarAttributeType::S,
            KeyType::N => ScalarAttributeType::N,
        })
        .build()
        .expect("name and type are set")
}

fn key(attr: KeyAttr, kind: DynKeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(attr.name)
        .key_type(kind)
        .build()
        .expect("name and type are set")
}

fn all() -> Projection {
    Projection::builder()
        .projection_type(ProjectionType::All)
        .build()
}

#[cfg(test)]
mod tests {
    use super::same_redrive;

    #[test]
    fn redrive_policies_compare_by_meaning() {
        let wanted = r#"{"deadLetterTargetArn":"arn:x","maxReceiveCount":"5"}"#;
        assert!(same_redrive(
            Some(r#"{"maxReceiveCount":5,"deadLetterTargetArn":"arn:x"}"#),
            wanted
        ));
        assert!(!same_redrive(
            Some(r#"{"maxReceiveCount":3,"deadLetterTargetArn":"arn:x"}"#),
            wanted
        ));
        assert!(!same_redrive(None, wanted));
    }
}
