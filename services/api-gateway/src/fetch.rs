//! `GET /fetch/{fetchId}`: the fetch round trip of seed 1 over HTTP, through
//! the caller's reply queue `user-queue-{userId}` (SPEC §6).
//!
//! Whose reply queue: a JWT caller always fetches through its own `sub`; an
//! API-key caller (a trusted service acting for users) names the user in the
//! `x-user-id` header. Requires scope `fetch`. Answers: 200 with the document,
//! 404 not found, 400 no/invalid user or no reply queue, 504 when the
//! responder does not answer in time, 502 otherwise; errors as `{"message"}`.

use std::time::Duration;

use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use lambdaless_client::fetch::{FetchClient, FetchError};
use lambdaless_runtime::auth::Principal;
use serde_json::json;

/// Header naming the user an API-key caller fetches for.
pub const USER_HEADER: &str = "x-user-id";

#[derive(Clone)]
struct FetchState {
    client: FetchClient,
    timeout: Duration,
}

/// The route, ready to be merged into the gateway's router.
pub fn routes(client: FetchClient, timeout: Duration) -> Router {
    Router::new()
        .route("/fetch/{fetchId}", get(handler))
        .with_state(FetchState { client, timeout })
}

async fn handler(
    State(state): State<FetchState>,
    Path(fetch_id): Path<String>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
) -> Response {
    let jwt_subject = principal
        .as_ref()
        .and_then(|Extension(p)| p.id.strip_prefix("jwt:"))
        .filter(|sub| *sub != "anonymous");
    let header_user = headers.get(USER_HEADER).and_then(|v| v.to_str().ok());
    let Some(user) = jwt_subject.or(header_user) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("header {USER_HEADER} is required (or a JWT with a subject)"),
        );
    };
    match state.client.fetch(&fetch_id, user, state.timeout).await {
        Ok(data) => (StatusCode::OK, Json(data)).into_response(),
        Err(e) => {
            let status = match &e {
                FetchError::NotFound(_) => StatusCode::NOT_FOUND,
                FetchError::InvalidUser(_) | FetchError::NoReplyQueue(_) => StatusCode::BAD_REQUEST,
                FetchError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
                FetchError::Remote(_) | FetchError::Sqs(_) => {
                    tracing::warn!(fetch_id, error = %e, "fetch failed");
                    return error(
                        StatusCode::BAD_GATEWAY,
                        "the fetch could not be completed".into(),
                    );
                }
            };
            error(status, e.to_string())
        }
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({"message": message}))).into_response()
}
