//! SQS and DynamoDB clients built from the standard AWS configuration chain:
//! `AWS_ENDPOINT_URL` (the emulator in Compose, unset for real AWS),
//! `AWS_REGION`, and credentials from the environment, profile or instance role.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::Client as DynamoDb;
use aws_sdk_sqs::Client as Sqs;
use tokio_util::sync::CancellationToken;

use crate::admin::ReadinessCheck;

/// Both clients, cheap to clone (they share one connection pool each).
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub sqs: Sqs,
    pub dynamodb: DynamoDb,
}

/// Long polls wait up to 20 s, so one operation may take that long; the
/// operation timeout sits above it and the connect timeout stays short so an
/// unreachable endpoint is noticed quickly.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Loads the shared AWS configuration from the environment.
pub async fn load() -> AwsClients {
    clients(&loader().load().await)
}

/// The configuration loader with lambdaless's timeouts and retries; callers
/// may override endpoint, region or credentials before `load()`.
pub fn loader() -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        // The SDK's hyper client with rustls on the `ring` provider: HTTPS to real AWS
        // (system trust store, or SSL_CERT_FILE), plain HTTP to an emulator.
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                ))
                .build_https(),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(25))
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        )
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(4)
                .with_initial_backoff(Duration::from_millis(50)),
        )
}

/// Builds both clients from a loaded configuration.
pub fn clients(config: &aws_config::SdkConfig) -> AwsClients {
    AwsClients {
        sqs: Sqs::new(config),
        dynamodb: DynamoDb::new(config),
    }
}

/// A queue known by name whose URL is looked up once, on first use (so a
/// service starts while SQS is still down), then used to send.
#[derive(Clone, Debug)]
pub struct NamedQueue {
    sqs: Sqs,
    name: String,
    url: std::sync::Arc<tokio::sync::OnceCell<String>>,
}

/// A failed queue call: the operation and the SDK's one-line description.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{op}: {detail}")]
pub struct QueueError {
    pub op: &'static str,
    pub detail: String,
}

impl NamedQueue {
    pub fn new(sqs: Sqs, name: String) -> Self {
        Self {
            sqs,
            name,
            url: std::sync::Arc::default(),
        }
    }

    /// The physical queue name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The queue's URL (GetQueueUrl the first time).
    pub async fn url(&self) -> Result<&str, QueueError> {
        let url = self
            .url
            .get_or_try_init(|| async {
                self.sqs
                    .get_queue_url()
                    .queue_name(&self.name)
                    .send()
                    .await
                    .map_err(|e| QueueError {
                        op: "GetQueueUrl",
                        detail: describe(&e),
                    })?
                    .queue_url
                    .ok_or_else(|| QueueError {
                        op: "GetQueueUrl",
                        detail: "no URL in the answer".to_owned(),
                    })
            })
            .await?;
        Ok(url)
    }

    /// Sends `body`; returns the SQS MessageId.
    pub async fn send(&self, body: String) -> Result<String, QueueError> {
        let url = self.url().await?;
        let sent = self
            .sqs
            .send_message()
            .queue_url(url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| QueueError {
                op: "SendMessage",
                detail: describe(&e),
            })?;
        Ok(sent.message_id.unwrap_or_default())
    }
}

/// Flattens an SDK error into one line with its code and message (the debug
/// form of SDK errors is many lines of internals).
pub fn describe<E, R>(err: &aws_sdk_sqs::error::SdkError<E, R>) -> String
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_sqs::error::SdkError;
    match err {
        SdkError::ServiceError(e) => {
            let inner = e.err();
            format!(
                "{}: {}",
                inner.code().unwrap_or("ServiceError"),
                inner.message().unwrap_or("no message")
            )
        }
        SdkError::TimeoutError(_) => "request timed out".to_owned(),
        SdkError::DispatchFailure(e) => {
            if e.is_io() || e.is_timeout() {
                "endpoint unreachable".to_owned()
            } else {
                "request could not be sent".to_owned()
            }
        }
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    }
}

/// Resolves a queue URL, retrying with backoff while the emulator or AWS is
/// unreachable or the queue does not exist yet. `None` once `shutdown` fires.
pub async fn queue_url(sqs: &Sqs, name: &str, shutdown: &CancellationToken) -> Option<String> {
    let mut delay = Duration::from_millis(200);
    loop {
        match sqs.get_queue_url().queue_name(name).send().await {
            Ok(out) => {
                if let Some(url) = out.queue_url {
                    return Some(url);
                }
            }
            Err(e) => {
                tracing::warn!(queue = name, error = %describe(&e), retry_in_ms = delay.as_millis() as u64, "queue not reachable yet");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Readiness probe: the named queue exists and answers.
pub fn sqs_check(sqs: Sqs, queue: String) -> ReadinessCheck {
    ReadinessCheck::new("sqs", move || {
        let sqs = sqs.clone();
        let queue = queue.clone();
        async move {
            sqs.get_queue_url()
                .queue_name(&queue)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| format!("queue {queue}: {}", describe(&e)))
        }
    })
}

/// Readiness probe: the named table exists and answers.
pub fn dynamodb_check(dynamodb: DynamoDb, table: String) -> ReadinessCheck {
    ReadinessCheck::new("dynamodb", move || {
        let dynamodb = dynamodb.clone();
        let table = table.clone();
        async move {
            dynamodb
                .describe_table()
                .table_name(&table)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| format!("table {table}: {}", describe(&e)))
        }
    })
}
