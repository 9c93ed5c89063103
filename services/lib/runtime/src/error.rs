//! The one HTTP error type of the HTTP services (`api-gateway`, `streamer`,
//! and the authorizer in front of both): every refusal is JSON
//! `{"message": "..."}` with its status chosen here. 5xx bodies stay generic
//! (the detail goes to the log only); 401 carries `WWW-Authenticate`, 429 and
//! 503 carry `Retry-After`.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// The JSON body of every refusal: `{"message": "..."}`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ErrorBody {
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// 401: no credential, or one that is not valid.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated, but not allowed (the message names the scope).
    #[error("{0}")]
    Forbidden(String),
    /// 404 with a fixed, documented message.
    #[error("{0}")]
    NotFound(String),
    /// 405: the route exists, the method does not.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    #[error("request body too large")]
    TooLarge,
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    /// 429; the client should wait this long.
    #[error("{message}")]
    Throttled { message: String, wait: Duration },
    /// 502: a downstream service answered, but not usefully; detail logged.
    #[error("the request could not be completed")]
    BadGateway(String),
    /// 503: SQS or DynamoDB did not answer; the detail is logged only.
    #[error("a dependency is unavailable, retry later")]
    Unavailable(String),
    /// 504: a downstream service did not answer in time.
    #[error("{0}")]
    Timeout(String),
    /// 500: a bug or an unexpected state; the detail is logged only.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// 429 "too many requests", retry after `wait`.
    pub fn throttled(wait: Duration) -> Self {
        Self::Throttled {
            message: "too many requests".to_owned(),
            wait,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::Unavailable(detail) => tracing::warn!(%detail, "dependency unavailable"),
            ApiError::BadGateway(detail) => tracing::warn!(%detail, "downstream failed"),
            ApiError::Internal(detail) => tracing::error!(%detail, "request failed"),
            _ => {}
        }
        let body = ErrorBody {
            message: self.to_string(),
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::Throttled { wait, .. } => {
                let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_str(&secs.to_string()).expect("digits"),
                );
            }
            ApiError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

/// The fallback of every HTTP service: 404 `{"message":"no such route"}`.
pub async fn no_such_route() -> ApiError {
    ApiError::not_found("no such route")
}

/// The method fallback of every HTTP service: 405.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// A queue that cannot be reached is a dependency that is down: 503, with
/// the detail logged, not shown.
impl From<crate::aws::QueueError> for ApiError {
    fn from(e: crate::aws::QueueError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_refusal_is_a_message_with_its_status() {
        let cases = [
            (
                ApiError::Invalid("name: too short".into()),
                400,
                "name: too short",
            ),
            (
                ApiError::Unauthorized("invalid credentials".into()),
                401,
                "invalid credentials",
            ),
            (
                ApiError::throttled(Duration::from_millis(1500)),
                429,
                "too many requests",
            ),
            (
                ApiError::Internal("secret detail".into()),
                500,
                "internal error",
            ),
            (
                ApiError::Unavailable("sqs down at 10.0.0.1".into()),
                503,
                "a dependency is unavailable, retry later",
            ),
        ];
        for (error, status, message) in cases {
            let response = error.into_response();
            assert_eq!(response.status().as_u16(), status);
            let retry = response.headers().get(header::RETRY_AFTER).cloned();
            let auth = response.headers().get(header::WWW_AUTHENTICATE).cloned();
            let bytes = axum::body::to_bytes(response.into_body(), 1024)
                .await
                .unwrap();
            let body: ErrorBody = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(body.message, message);
            match status {
                429 => assert_eq!(retry.unwrap(), "2"),
                503 => assert_eq!(retry.unwrap(), "1"),
                401 => assert_eq!(auth.unwrap(), "Bearer"),
                _ => assert!(retry.is_none()),
            }
        }
    }
}
