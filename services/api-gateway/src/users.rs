//! Seed 4, the asynchronous users API (SPEC §4): `POST /users` validates the
//! body and queues it on `users-create` unchanged; `mover` creates the user;
//! `GET /status/{messageId}` and `GET /users/{userId}` read the result.
//!
//! The user id is a pure function of the SQS MessageId
//! ([`lambdaless_contracts::user::user_id`]), so the status lookup is one
//! consistent GetItem rather than an eventually consistent index query.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
pub use lambdaless_contracts::user::valid_email;
use lambdaless_contracts::user::{user_id, NewUser};
use lambdaless_runtime::aws::{AwsClients, NamedQueue};
use serde::{Deserialize, Serialize};

use utoipa::ToSchema;

pub use crate::error::ErrorBody;
use crate::error::{unavailable, ApiError, RawJson};

/// Shared by the users handlers.
#[derive(Clone)]
pub struct UsersState {
    pub aws: AwsClients,
    /// `users-create`.
    pub queue: NamedQueue,
    pub table: String,
}

/// Body of `POST /users`; any other field is refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// 5 to 100 characters.
    #[schema(min_length = 5, max_length = 100)]
    pub name: String,
    /// An e-mail address (`local@domain.tld`).
    #[schema(format = "email", max_length = 254)]
    pub email: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    /// SQS MessageId; poll `GET /status/{messageId}` with it.
    pub message_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub message_id: String,
    pub user_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub user_id: String,
    pub name: String,
    pub email: String,
    /// RFC 3339.
    pub created_at: String,
}

pub fn router(state: UsersState) -> (Router, Router) {
    let write = Router::new()
        .route("/users", post(create_user))
        .with_state(state.clone());
    let read = Router::new()
        .route("/status/{message_id}", get(status))
        .route("/users/{user_id}", get(get_user))
        .with_state(state);
    (write, read)
}

impl CreateUser {
    /// The rules of SPEC §4 (one implementation, in `contracts`, shared with `mover`); the
    /// message names the failing field.
    pub fn validate(&self) -> Result<(), ApiError> {
        NewUser {
            name: self.name.clone(),
            email: self.email.clone(),
        }
        .validate()
        .map_err(|e| ApiError::Invalid(e.to_string()))
    }
}

#[utoipa::path(post, path = "/users", request_body = CreateUser,
    responses(
        (status = 202, description = "Queued", body = Accepted,
            headers(("X-SQS-Message-ID" = String), ("Location" = String, description = "/status/{messageId}"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("api_key" = ["users:write"]), ("bearer" = ["users:write"])))]
pub async fn create_user(
    State(state): State<UsersState>,
    RawJson(body, raw): RawJson<CreateUser>,
) -> Result<Response, ApiError> {
    body.validate()?;
    let message_id = state.queue.send(raw).await?;
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-sqs-message-id",
        message_id
            .parse()
            .map_err(|_| ApiError::Unavailable("odd MessageId".into()))?,
    );
    headers.insert(
        header::LOCATION,
        format!("/status/{message_id}")
            .parse()
            .map_err(|_| ApiError::Unavailable("odd MessageId".into()))?,
    );
    Ok((StatusCode::ACCEPTED, headers, Json(Accepted { message_id })).into_response())
}

#[utoipa::path(get, path = "/status/{messageId}",
    params(("messageId" = String, Path, description = "MessageId returned by POST /users")),
    responses((status = 200, body = Status), (status = 404, body = ErrorBody, description = "message ID not found"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = ["users:read"]), ("bearer" = ["users:read"])))]
pub async fn status(
    State(state): State<UsersState>,
    Path(message_id): Path<String>,
) -> Result<Json<Status>, ApiError> {
    let user_id = user_id(&message_id);
    match load(&state, &user_id).await? {
        Some(_) => Ok(Json(Status {
            message_id,
            user_id,
        })),
        None => Err(ApiError::not_found("message ID not found")),
    }
}

#[utoipa::path(get, path = "/users/{userId}",
    params(("userId" = String, Path)),
    responses((status = 200, body = User), (status = 404, body = ErrorBody, description = "user not found"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = ["users:read"]), ("bearer" = ["users:read"])))]
pub async fn get_user(
    State(state): State<UsersState>,
    Path(user_id): Path<String>,
) -> Result<Json<User>, ApiError> {
    let item = load(&state, &user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("user not found"))?;
    let s = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    Ok(Json(User {
        user_id: s("userId"),
        name: s("name"),
        email: s("email"),
        created_at: s("createdAt"),
    }))
}

async fn load(
    state: &UsersState,
    user_id: &str,
) -> Result<Option<HashMap<String, AttributeValue>>, ApiError> {
    metrics::counter!("dynamodb_calls_total", "operation" => "GetItem").increment(1);
    let out = state
        .aws
        .dynamodb
        .get_item()
        .table_name(&state.table)
        .key("userId", AttributeValue::S(user_id.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| unavailable("GetItem", &e))?;
    Ok(out.item)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, email: &str) -> CreateUser {
        CreateUser {
            name: name.to_owned(),
            email: email.to_owned(),
        }
    }

    #[test]
    fn name_and_email_rules_name_the_field() {
        assert!(user("Alice Smith", "alice@example.com").validate().is_ok());
        let short = user("Al", "alice@example.com").validate().unwrap_err();
        assert!(short.to_string().starts_with("name"));
        let long = user(&"x".repeat(101), "a@b.co").validate().unwrap_err();
        assert!(long.to_string().starts_with("name"));
        assert!(user(&"é".repeat(100), "a@b.co").validate().is_ok());
        for bad in [
            "", "alice", "alice@", "@b.co", "a@b", "a b@c.de", "a@b@c.de", "a@-b.de",
        ] {
            let e = user("Alice Smith", bad).validate().unwrap_err();
            assert!(e.to_string().starts_with("email"), "{bad}");
        }
    }
}
