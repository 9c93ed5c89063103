//! `GET /fetch/{fetchId}`: the fetch round trip of seed 1 over HTTP, through
//! the caller's own reply queue `user-queue-{userId}` (SPEC §6, §9).
//!
//! Whose reply queue: the caller's own user, a JWT's `sub` or the user bound
//! to an API key (`key=fetch@alice`). A principal holding the `admin` scope
//! may name another user in the `x-user-id` header; anyone else sending it
//! gets 403. Requires scope `fetch`. Answers: 200 with the document, 404 not
//! found, 400 no user or no reply queue, 504 when the responder does not
//! answer in time, 502 otherwise; every error as `{"message"}`.

use std::time::Duration;

use axum::extract::{Extension, Path, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use lambdaless_client::fetch::{FetchClient, FetchError};
use lambdaless_runtime::auth::{Principal, ADMIN};
use serde_json::Value;

use crate::error::ApiError;

/// Header naming the user an `admin` caller fetches for.
pub const USER_HEADER: &str = "x-user-id";

#[derive(Clone)]
pub struct FetchState {
    client: FetchClient,
    timeout: Duration,
}

/// The route, ready to be merged into the gateway's router.
pub fn routes(client: FetchClient, timeout: Duration) -> Router {
    Router::new()
        .route("/fetch/{fetchId}", get(fetch_document))
        .with_state(FetchState { client, timeout })
}

/// Whose reply queue a caller fetches through.
pub fn reply_user<'a>(
    principal: &'a Principal,
    header: Option<&'a str>,
) -> Result<&'a str, ApiError> {
    match header {
        Some(user) if principal.has_scope(ADMIN) => Ok(user),
        Some(_) => Err(ApiError::Forbidden(format!(
            "header {USER_HEADER} needs scope {ADMIN}; without it the caller's own user is used"
        ))),
        None => principal.user().ok_or_else(|| {
            ApiError::Invalid(
                "this credential names no user: use a JWT with `sub`, or an API key bound to a \
                 user (key=fetch@USER)"
                    .to_owned(),
            )
        }),
    }
}

#[utoipa::path(get, path = "/fetch/{fetchId}",
    description = "Seed 1's round trip: sends a fetch request with the caller's reply queue \
        (JWT `sub`, or the user bound to the API key) and returns the document. \
        `x-user-id` names another user and needs scope `admin`.",
    params(("fetchId" = String, Path, description = "`id` of the item in `documents`"),
        ("x-user-id" = Option<String>, Header, description = "act for this user (scope admin only)")),
    responses(
        (status = 200, description = "The document", body = Object),
        (status = 400, body = crate::error::ErrorBody, description = "no user, invalid user or no reply queue"),
        (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody, description = "document not found"),
        (status = 429, body = crate::error::ErrorBody), (status = 502, body = crate::error::ErrorBody),
        (status = 504, body = crate::error::ErrorBody, description = "no reply in time")),
    security(("api_key" = ["fetch"]), ("bearer" = ["fetch"])))]
pub async fn fetch_document(
    State(state): State<FetchState>,
    Path(fetch_id): Path<String>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Map<String, Value>>, ApiError> {
    let header = match headers.get(USER_HEADER) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::Invalid(format!("header {USER_HEADER} is not text")))?,
        ),
    };
    let user = reply_user(&principal, header)?;
    match state.client.fetch(&fetch_id, user, state.timeout).await {
        Ok(data) => Ok(Json(data)),
        Err(e) => Err(match &e {
            FetchError::NotFound(_) => ApiError::NotFound(e.to_string()),
            FetchError::InvalidUser(_) | FetchError::NoReplyQueue(_) => {
                ApiError::Invalid(e.to_string())
            }
            FetchError::Timeout { .. } => ApiError::Timeout(e.to_string()),
            FetchError::Remote(_) | FetchError::Sqs(_) => {
                ApiError::BadGateway(format!("fetch {fetch_id}: {e}"))
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_user_unless_admin_names_another() {
        let scoped = |scopes: &[&str]| Some(scopes.iter().map(|s| s.to_string()).collect());
        let alice = Principal::new("key:1", Some("alice".into()), scoped(&["fetch"]));
        assert_eq!(reply_user(&alice, None).unwrap(), "alice");
        assert!(matches!(
            reply_user(&alice, Some("bob")),
            Err(ApiError::Forbidden(_))
        ));
        let admin = Principal::new("key:2", None, scoped(&["fetch", "admin"]));
        assert_eq!(reply_user(&admin, Some("bob")).unwrap(), "bob");
        assert!(matches!(
            reply_user(&admin, None),
            Err(ApiError::Invalid(_))
        ));
        let all = Principal::new("key:3", Some("local".into()), None);
        assert_eq!(reply_user(&all, Some("bob")).unwrap(), "bob");
    }
}
