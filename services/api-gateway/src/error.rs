//! The gateway's request extractors over the one HTTP error type of
//! [`lambdaless_runtime::error`]: JSON body rejections become
//! `{"message": "..."}` refusals naming the field, SDK errors a generic 503.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use axum::Json;
use serde::de::DeserializeOwned;

pub use lambdaless_runtime::error::{method_not_allowed, no_such_route, ApiError, ErrorBody};

/// Maps a JSON extractor's rejection onto the refusal a client should see.
pub fn json_rejection(rejection: JsonRejection) -> ApiError {
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
        let Json(value) = Json::<T>::from_request(req, state)
            .await
            .map_err(json_rejection)?;
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
