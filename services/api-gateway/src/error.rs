//! The one HTTP error type of api-gateway: every refusal becomes
//! `{"message": "..."}` with its status here, 5xx bodies stay generic (the
//! detail goes to the log), and JSON body rejections map onto it.

use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// 404 with a fixed, documented message.
    #[error("{0}")]
    NotFound(&'static str),
    /// 405: the route exists, the method does not.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    #[error("request body too large")]
    TooLarge,
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    /// 429; the client should wait this long.
    #[error("too many requests")]
    Throttled(Duration),
    /// 503: SQS or DynamoDB did not answer; the detail is logged only.
    #[error("a dependency is unavailable, retry later")]
    Unavailable(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Unavailable(detail) = &self {
            tracing::warn!(%detail, "dependency unavailable");
        }
        let mut response = (
            status,
            Json(serde_json::json!({"message": self.to_string()})),
        )
            .into_response();
        match &self {
            ApiError::Throttled(wait) => {
                let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_str(&secs.to_string()).expect("digits"),
                );
            }
            ApiError::Unavailable(_) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
            JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::TooLarge
            }
            JsonRejection::JsonDataError(e) => ApiError::Invalid(clean_serde(&e.body_text())),
            JsonRejection::JsonSyntaxError(e) => ApiError::Invalid(clean_serde(&e.body_text())),
            other => ApiError::Invalid(other.body_text()),
        }
    }
}

/// axum prefixes serde's message with its own; keep serde's (it names the field).
fn clean_serde(text: &str) -> String {
    text.split_once(": ")
        .map(|(_, rest)| rest.to_owned())
        .unwrap_or_else(|| text.to_owned())
}

/// `Json<T>` whose rejection is an [`ApiError`].
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(req, state).await?;
        Ok(ApiJson(value))
    }
}

/// Wraps any SDK error as a 503 with its one-line description logged.
pub fn unavailable<E, R>(op: &str, err: &aws_sdk_sqs::error::SdkError<E, R>) -> ApiError
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    ApiError::Unavailable(format!("{op}: {}", lambdaless_runtime::aws::describe(err)))
}

/// A JSON body kept verbatim next to its parsed form (the users API forwards
/// the body unchanged). Same refusals as [`ApiJson`].
pub struct RawJson<T>(pub T, pub String);

impl<S, T> FromRequest<S> for RawJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().eq_ignore_ascii_case("application/json"))
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::TooLarge
                } else {
                    ApiError::Invalid(e.body_text())
                }
            })?;
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| ApiError::Invalid("body is not UTF-8".to_owned()))?;
        let value = serde_json::from_str(&text).map_err(|e| ApiError::Invalid(e.to_string()))?;
        Ok(RawJson(value, text))
    }
}
