//! The pluggable authorizer of the HTTP services (the seeds' Lambda
//! authorizer): who is calling, and may they use this route?
//!
//! A request presents a credential as `x-api-key: KEY` or
//! `Authorization: Bearer <KEY or JWT>`. The [`Authorizer`] trait turns it
//! into a [`Principal`] with scopes and, where known, the user it acts as;
//! [`KeysAndJwt`] is the built-in one:
//!
//! - API keys from [`AuthSettings::api_keys`]: `key=scope scope@user,key2=*@local`.
//!   `@user` binds the key to a user id (its own reply queue for the fetch
//!   bridge); `*` grants every scope, `admin` included.
//! - HS256 JWTs signed with [`AuthSettings::jwt_secret`]: `exp` required,
//!   `nbf` honoured, both with [`AuthSettings::jwt_leeway_secs`]; `iss` and
//!   `aud` checked when configured; any other `alg` refused. Scopes come from
//!   a `scope` string or `scopes` list; the user is `sub`.
//!
//! [`require`] is the axum middleware guarding a group of routes: 429 while
//! the client address has spent its budget of failed attempts
//! ([`AuthSettings::failures_per_minute`]), 401 without or with a bad
//! credential, 403 without the group's scope, 429 over the principal's rate.
//! All refusals are [`ApiError`]s. On success the [`Principal`] is put in the
//! request extensions for the handlers and logs.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::config::{AuthSettings, ConfigError};
use crate::error::ApiError;
use crate::throttle::{Throttle, ThrottleSettings};

pub mod jwt;

/// Create users (`POST /users`).
pub const USERS_WRITE: &str = "users:write";
/// Read users and their creation status.
pub const USERS_READ: &str = "users:read";
/// The GraphQL orders API, and streaming the orders tables.
pub const ORDERS_READ: &str = "orders:read";
/// The request/reply fetch bridge (and streaming `documents`).
pub const FETCH: &str = "fetch";
/// Stream the `device-messages` table.
pub const DEVICES_READ: &str = "devices:read";
/// Stream the `artists` table.
pub const STREAM_READ: &str = "stream:read";
/// The streamer's bulk write `POST /dump`.
pub const STREAM_WRITE: &str = "stream:write";
/// Act for another user (`x-user-id` on the fetch bridge).
pub const ADMIN: &str = "admin";
/// Every scope a credential can carry; `*` in config grants them all.
pub const SCOPES: [&str; 8] = [
    USERS_WRITE,
    USERS_READ,
    ORDERS_READ,
    FETCH,
    DEVICES_READ,
    STREAM_READ,
    STREAM_WRITE,
    ADMIN,
];

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Stable, non-secret identity: throttling buckets and logs key on it
    /// (`key:N` for the N-th configured key, `jwt:{sub}` for a token).
    pub id: String,
    /// The user this caller acts as: a JWT's `sub`, or the user bound to a key.
    user: Option<String>,
    /// `None` means every scope (`*`).
    scopes: Option<BTreeSet<String>>,
}

impl Principal {
    pub fn new(
        id: impl Into<String>,
        user: Option<String>,
        scopes: Option<BTreeSet<String>>,
    ) -> Self {
        Self {
            id: id.into(),
            user,
            scopes,
        }
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        match &self.scopes {
            None => true,
            Some(s) => s.contains(scope) || s.contains("*"),
        }
    }

    /// The user this caller acts as, if its credential names one.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing credentials: send x-api-key or Authorization: Bearer")]
    Missing,
    #[error("invalid credentials")]
    Invalid,
    #[error("missing scope {0}")]
    Forbidden(&'static str),
    /// Too many failed attempts from this address.
    #[error("too many failed authentication attempts from this address")]
    Blocked(Duration),
    /// The principal is over its request rate.
    #[error("too many requests")]
    Throttled(Duration),
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let message = e.to_string();
        match e {
            AuthError::Missing | AuthError::Invalid => ApiError::Unauthorized(message),
            AuthError::Forbidden(_) => ApiError::Forbidden(message),
            AuthError::Blocked(wait) | AuthError::Throttled(wait) => {
                ApiError::Throttled { message, wait }
            }
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let reason = match &self {
            AuthError::Missing => "missing",
            AuthError::Invalid => "invalid",
            AuthError::Forbidden(_) => "forbidden",
            AuthError::Blocked(_) => "blocked",
            AuthError::Throttled(_) => "throttled",
        };
        if matches!(self, AuthError::Throttled(_)) {
            metrics::counter!("throttled_requests_total").increment(1);
        } else {
            metrics::counter!("auth_refused_total", "reason" => reason).increment(1);
        }
        ApiError::from(self).into_response()
    }
}

/// The future an [`Authorizer`] returns (boxed so the trait is object safe
/// and an implementation may call out over the network).
pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = Result<Principal, AuthError>> + Send + 'a>>;

/// Turns a presented credential into a principal. Implement it to plug in
/// another identity source (an OIDC introspection endpoint, a key table...).
pub trait Authorizer: Send + Sync + 'static {
    fn authorize<'a>(&'a self, credential: &'a str) -> AuthFuture<'a>;
}

/// API keys and HS256 JWTs, from [`AuthSettings`].
pub struct KeysAndJwt {
    keys: HashMap<String, Principal>,
    /// The HS256 secret; no JWT is accepted without one.
    jwt: Option<Vec<u8>>,
    rules: jwt::Rules,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    scopes: Option<ScopeList>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ScopeList {
    List(Vec<String>),
    Text(String),
}

impl KeysAndJwt {
    /// Parses `key=scope scope@user,key2=*`; an unknown scope, a bad user id
    /// or a malformed entry is a configuration error naming `auth.api_keys`.
    pub fn from_settings(settings: &AuthSettings) -> Result<Self, ConfigError> {
        let keys = parse_api_keys(&settings.api_keys)?;
        let jwt = settings
            .jwt_secret
            .as_ref()
            .map(|s| s.expose_secret().to_owned())
            .filter(|s| !s.is_empty())
            .map(|s| s.into_bytes());
        let rules = jwt::Rules {
            leeway_secs: settings.jwt_leeway_secs,
            issuer: settings.jwt_issuer.clone().filter(|s| !s.is_empty()),
            audience: settings.jwt_audience.clone().filter(|s| !s.is_empty()),
        };
        Ok(Self { keys, jwt, rules })
    }

    fn jwt(&self, token: &str) -> Result<Principal, AuthError> {
        let key = self.jwt.as_ref().ok_or(AuthError::Invalid)?;
        let claims = jwt::verify(token, key, &self.rules, jwt::now())
            .and_then(|map| {
                serde_json::from_value::<Claims>(serde_json::Value::Object(map))
                    .map_err(|_| jwt::JwtError::Type("sub/scope/scopes"))
            })
            .map_err(|e| {
                tracing::debug!(error = %e, "JWT refused");
                AuthError::Invalid
            })?;
        let mut scopes = BTreeSet::new();
        if let Some(s) = &claims.scope {
            scopes.extend(s.split_whitespace().map(str::to_owned));
        }
        match claims.scopes {
            Some(ScopeList::List(l)) => scopes.extend(l),
            Some(ScopeList::Text(s)) => scopes.extend(s.split_whitespace().map(str::to_owned)),
            None => {}
        }
        let user = claims.sub.filter(|s| !s.is_empty());
        let id = format!("jwt:{}", user.as_deref().unwrap_or("anonymous"));
        Ok(Principal::new(id, user, Some(scopes)))
    }
}

impl Authorizer for KeysAndJwt {
    fn authorize<'a>(&'a self, credential: &'a str) -> AuthFuture<'a> {
        let outcome = if let Some(p) = self.keys.get(credential) {
            Ok(p.clone())
        } else if credential.split('.').count() == 3 {
            self.jwt(credential)
        } else {
            Err(AuthError::Invalid)
        };
        Box::pin(std::future::ready(outcome))
    }
}

/// A user id as reply queues accept it: 1 to 64 of `A-Z a-z 0-9 - _`.
pub fn valid_user_id(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= 64
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn parse_api_keys(spec: &str) -> Result<HashMap<String, Principal>, ConfigError> {
    let bad = |reason: String| ConfigError::value("auth.api_keys", reason);
    let mut keys = HashMap::new();
    for (n, entry) in spec
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .enumerate()
    {
        let (key, grant) = entry
            .split_once('=')
            .ok_or_else(|| bad(format!("entry {} is not key=scopes[@user]", n + 1)))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(bad(format!("entry {} has an empty key", n + 1)));
        }
        let (scopes, user) = match grant.rsplit_once('@') {
            Some((scopes, user)) => {
                let user = user.trim();
                if !valid_user_id(user) {
                    return Err(bad(format!(
                        "entry {}: user {user:?} must be 1 to 64 of A-Z a-z 0-9 - _",
                        n + 1
                    )));
                }
                (scopes, Some(user.to_owned()))
            }
            None => (grant, None),
        };
        let mut set = BTreeSet::new();
        let mut all = false;
        for scope in scopes.split_whitespace() {
            if scope == "*" {
                all = true;
            } else if SCOPES.contains(&scope) {
                set.insert(scope.to_owned());
            } else {
                return Err(bad(format!(
                    "unknown scope {scope:?} (known: {}, *)",
                    SCOPES.join(" ")
                )));
            }
        }
        // The key itself is secret: identify it by entry number only.
        let principal = Principal::new(format!("key:{}", n + 1), user, (!all).then_some(set));
        keys.insert(key.to_owned(), principal);
    }
    Ok(keys)
}

/// The credential a request presents, if any.
pub fn credential(headers: &HeaderMap) -> Option<&str> {
    if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(key.trim());
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (kind, token) = auth.trim().split_once(' ')?;
    kind.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The throttles every guarded route of one service shares.
#[derive(Clone)]
pub struct Limits {
    /// Requests per principal.
    pub principal: Throttle,
    /// Failed authentications per client address.
    pub failures: Throttle,
}

impl Limits {
    pub fn new(auth: &AuthSettings, throttle: &ThrottleSettings) -> Self {
        Self {
            principal: Throttle::from_settings(throttle),
            failures: Throttle::per_minute(auth.failures_per_minute),
        }
    }

    /// No throttling at all (tests, tools).
    pub fn none() -> Self {
        Self {
            principal: Throttle::new(0.0, 1),
            failures: Throttle::per_minute(0),
        }
    }
}

/// What [`require`] needs: the authorizer, the shared limits and the scope
/// of the routes it guards (`None`: any authenticated caller; the handler
/// decides, as the streamer does per table).
#[derive(Clone)]
pub struct Guard {
    pub authorizer: Arc<dyn Authorizer>,
    pub limits: Limits,
    pub scope: Option<&'static str>,
}

impl Guard {
    pub fn new(authorizer: Arc<dyn Authorizer>, limits: Limits, scope: &'static str) -> Self {
        Self {
            authorizer,
            limits,
            scope: Some(scope),
        }
    }

    /// Any authenticated caller passes; the handler checks its scopes.
    pub fn authenticated(authorizer: Arc<dyn Authorizer>, limits: Limits) -> Self {
        Self {
            authorizer,
            limits,
            scope: None,
        }
    }

    /// Authenticates and checks the scope and the limits; `client` is the
    /// caller's address (failed attempts are counted per address).
    pub async fn check(
        &self,
        headers: &HeaderMap,
        client: Option<&str>,
    ) -> Result<Principal, AuthError> {
        let now = Instant::now();
        if let Some(addr) = client {
            self.limits
                .failures
                .check(addr, now)
                .map_err(AuthError::Blocked)?;
        }
        let credential = credential(headers)
            .filter(|c| !c.is_empty())
            .ok_or(AuthError::Missing)?;
        let principal = match self.authorizer.authorize(credential).await {
            Ok(p) => p,
            Err(e) => {
                if let (AuthError::Invalid, Some(addr)) = (&e, client) {
                    let _ = self.limits.failures.take(addr, now);
                }
                return Err(e);
            }
        };
        if let Some(scope) = self.scope {
            if !principal.has_scope(scope) {
                return Err(AuthError::Forbidden(scope));
            }
        }
        self.limits
            .principal
            .take(&principal.id, now)
            .map_err(AuthError::Throttled)?;
        Ok(principal)
    }
}

/// Middleware: `route_layer(axum::middleware::from_fn_with_state(guard, require))`.
/// The client address comes from axum's `ConnectInfo` (see [`crate::admin::serve`]).
pub async fn require(State(guard): State<Guard>, mut req: Request, next: Next) -> Response {
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string());
    match guard.check(req.headers(), client.as_deref()).await {
        Ok(principal) => {
            tracing::Span::current().record("principal", principal.id.as_str());
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests;
