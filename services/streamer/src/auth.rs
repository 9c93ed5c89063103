//! Authentication hook of the streamer's routes.
//!
//! The rules are the gateway's (SPEC §8): `x-api-key: KEY` or
//! `Authorization: Bearer KEY`, keys from `auth.api_keys` (`key=scope scope`,
//! `*` = all scopes); the streamer needs scope `stream`. With no keys and no
//! JWT secret configured the routes are open (logged at start-up).
//!
//! Integration point: the shared authorizer of `api-gateway` (which also
//! verifies JWT bearer tokens) replaces [`Authorizer::check`] at merge; the
//! middleware [`require`] and its place in the router stay as they are.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use lambdaless_runtime::AuthSettings;

use crate::error::ApiError;

/// The scope the streamer's routes need.
pub const SCOPE: &str = "stream";

#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    /// Key → scopes.
    keys: Arc<HashMap<String, Vec<String>>>,
    open: bool,
}

impl Authorizer {
    pub fn new(settings: &AuthSettings) -> Self {
        let keys: HashMap<String, Vec<String>> = settings
            .api_keys
            .split(',')
            .filter_map(|entry| {
                let (key, scopes) = entry.split_once('=').unwrap_or((entry, ""));
                let key = key.trim();
                (!key.is_empty()).then(|| {
                    (
                        key.to_owned(),
                        scopes.split_whitespace().map(str::to_owned).collect(),
                    )
                })
            })
            .collect();
        let open = keys.is_empty() && settings.jwt_secret.is_none();
        if open {
            tracing::warn!("no API keys configured: the streamer's routes are open");
        }
        Self {
            keys: Arc::new(keys),
            open,
        }
    }

    /// Accepts a request whose credentials grant [`SCOPE`].
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.open {
            return Ok(());
        }
        let presented = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .or_else(|| {
                headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
            })
            .ok_or(ApiError::Unauthorized)?;
        let scopes = self
            .keys
            .get(presented.trim())
            .ok_or(ApiError::Unauthorized)?;
        if scopes.iter().any(|s| s == "*" || s == SCOPE) {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

/// Middleware: refuses the request unless [`Authorizer::check`] accepts it.
pub async fn require(State(auth): State<Authorizer>, req: Request, next: Next) -> Response {
    match auth.check(req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(k: &str, v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
        h
    }

    #[test]
    fn keys_need_the_stream_scope() {
        let auth = Authorizer::new(&AuthSettings {
            api_keys: "all=*,s=stream fetch,f=fetch".into(),
            jwt_secret: None,
        });
        assert!(auth.check(&headers("x-api-key", "all")).is_ok());
        assert!(auth.check(&headers("authorization", "Bearer s")).is_ok());
        assert!(matches!(
            auth.check(&headers("x-api-key", "f")),
            Err(ApiError::Forbidden)
        ));
        assert!(matches!(
            auth.check(&headers("x-api-key", "x")),
            Err(ApiError::Unauthorized)
        ));
        assert!(matches!(
            auth.check(&HeaderMap::new()),
            Err(ApiError::Unauthorized)
        ));
        assert!(Authorizer::new(&AuthSettings::default())
            .check(&HeaderMap::new())
            .is_ok());
    }
}
