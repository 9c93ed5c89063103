//! The pluggable authorizer of the HTTP services (the seeds' Lambda
//! authorizer): who is calling, and may they use this route?
//!
//! A request presents a credential as `x-api-key: KEY` or
//! `Authorization: Bearer <KEY or JWT>`. The [`Authorizer`] trait turns it
//! into a [`Principal`] with scopes; [`KeysAndJwt`] is the built-in one (API
//! keys from [`AuthSettings::api_keys`], HS256 JWTs signed with
//! [`AuthSettings::jwt_secret`] carrying a `scope` string or `scopes` list).
//! [`require`] is the axum middleware guarding a group of routes with one
//! scope: 401 without or with a bad credential, 403 without the scope, both
//! as `{"message": "..."}`. On success the [`Principal`] is put in the request
//! extensions for later layers (throttling per principal, logs).

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::config::{AuthSettings, ConfigError};

/// Create users (`POST /users`).
pub const USERS_WRITE: &str = "users:write";
/// Read users and their creation status.
pub const USERS_READ: &str = "users:read";
/// The GraphQL orders API.
pub const ORDERS_READ: &str = "orders:read";
/// The request/reply fetch bridge and the streamer.
pub const FETCH: &str = "fetch";
/// Every scope a credential can carry; `*` in config grants them all.
pub const SCOPES: [&str; 4] = [USERS_WRITE, USERS_READ, ORDERS_READ, FETCH];

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Stable, non-secret identity: throttling buckets and logs key on it.
    pub id: String,
    /// `None` means every scope (`*`).
    scopes: Option<BTreeSet<String>>,
}

impl Principal {
    pub fn new(id: impl Into<String>, scopes: Option<BTreeSet<String>>) -> Self {
        Self {
            id: id.into(),
            scopes,
        }
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        match &self.scopes {
            None => true,
            Some(s) => s.contains(scope) || s.contains("*"),
        }
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
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let status = match self {
            AuthError::Missing | AuthError::Invalid => StatusCode::UNAUTHORIZED,
            AuthError::Forbidden(_) => StatusCode::FORBIDDEN,
        };
        metrics::counter!("auth_refused_total", "status" => status.as_str().to_owned())
            .increment(1);
        let mut response = (
            status,
            Json(serde_json::json!({"message": self.to_string()})),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
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
    jwt: Option<DecodingKey>,
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
    /// Parses `key=scope scope,key2=*`; an unknown scope or a malformed entry
    /// is a configuration error naming `auth.api_keys`.
    pub fn from_settings(settings: &AuthSettings) -> Result<Self, ConfigError> {
        let keys = parse_api_keys(&settings.api_keys)?;
        let jwt = settings
            .jwt_secret
            .as_ref()
            .map(|s| s.expose_secret().to_owned())
            .filter(|s| !s.is_empty())
            .map(|s| DecodingKey::from_secret(s.as_bytes()));
        Ok(Self { keys, jwt })
    }

    fn jwt(&self, token: &str) -> Result<Principal, AuthError> {
        let key = self.jwt.as_ref().ok_or(AuthError::Invalid)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims.clear();
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| {
            tracing::debug!(error = %e, "JWT refused");
            AuthError::Invalid
        })?;
        let claims = data.claims;
        let mut scopes = BTreeSet::new();
        if let Some(s) = &claims.scope {
            scopes.extend(s.split_whitespace().map(str::to_owned));
        }
        match claims.scopes {
            Some(ScopeList::List(l)) => scopes.extend(l),
            Some(ScopeList::Text(s)) => scopes.extend(s.split_whitespace().map(str::to_owned)),
            None => {}
        }
        let id = format!(
            "jwt:{}",
            claims.sub.unwrap_or_else(|| "anonymous".to_owned())
        );
        Ok(Principal::new(id, Some(scopes)))
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

fn parse_api_keys(spec: &str) -> Result<HashMap<String, Principal>, ConfigError> {
    let mut keys = HashMap::new();
    for (n, entry) in spec
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .enumerate()
    {
        let (key, scopes) = entry.split_once('=').ok_or_else(|| {
            ConfigError::value(
                "auth.api_keys",
                format!("entry {} is not key=scopes", n + 1),
            )
        })?;
        let key = key.trim();
        if key.is_empty() {
            return Err(ConfigError::value(
                "auth.api_keys",
                format!("entry {} has an empty key", n + 1),
            ));
        }
        let mut set = BTreeSet::new();
        let mut all = false;
        for scope in scopes.split_whitespace() {
            if scope == "*" {
                all = true;
            } else if SCOPES.contains(&scope) {
                set.insert(scope.to_owned());
            } else {
                return Err(ConfigError::value(
                    "auth.api_keys",
                    format!("unknown scope {scope:?} (known: {}, *)", SCOPES.join(" ")),
                ));
            }
        }
        // The key itself is secret: identify it by entry number only.
        let principal = Principal::new(format!("key:{}", n + 1), (!all).then_some(set));
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

/// What [`require`] needs: the authorizer and the scope of the routes it guards.
#[derive(Clone)]
pub struct Guard {
    pub authorizer: Arc<dyn Authorizer>,
    pub scope: &'static str,
}

impl Guard {
    pub fn new(authorizer: Arc<dyn Authorizer>, scope: &'static str) -> Self {
        Self { authorizer, scope }
    }

    /// Authenticates and checks the scope.
    pub async fn check(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        let credential = credential(headers).ok_or(AuthError::Missing)?;
        if credential.is_empty() {
            return Err(AuthError::Missing);
        }
        let principal = self.authorizer.authorize(credential).await?;
        if !principal.has_scope(self.scope) {
            return Err(AuthError::Forbidden(self.scope));
        }
        Ok(principal)
    }
}

/// Middleware: `route_layer(axum::middleware::from_fn_with_state(guard, require))`.
pub async fn require(State(guard): State<Guard>, mut req: Request, next: Next) -> Response {
    match guard.check(req.headers()).await {
        Ok(principal) => {
            tracing::Span::current().record("principal", principal.id.as_str());
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    fn settings(keys: &str, secret: Option<&str>) -> AuthSettings {
        AuthSettings {
            api_keys: keys.to_owned(),
            jwt_secret: secret.map(|s| s.to_owned().into()),
        }
    }

    fn headers(k: &str, v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
        h
    }

    fn token(claims: serde_json::Value, secret: &str) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn api_keys_and_scopes() {
        let a: Arc<dyn Authorizer> = Arc::new(
            KeysAndJwt::from_settings(&settings("all=*, reader=users:read", None)).unwrap(),
        );
        let write = Guard::new(a.clone(), USERS_WRITE);
        assert!(write.check(&headers("x-api-key", "all")).await.is_ok());
        assert!(write
            .check(&headers("authorization", "Bearer all"))
            .await
            .is_ok());
        assert_eq!(
            write.check(&headers("x-api-key", "reader")).await,
            Err(AuthError::Forbidden(USERS_WRITE))
        );
        assert_eq!(
            write.check(&headers("x-api-key", "nope")).await,
            Err(AuthError::Invalid)
        );
        assert_eq!(
            write.check(&HeaderMap::new()).await,
            Err(AuthError::Missing)
        );
        let read = Guard::new(a, USERS_READ);
        assert!(read.check(&headers("x-api-key", "reader")).await.is_ok());
    }

    #[test]
    fn bad_key_specs_name_the_setting() {
        for spec in ["novalue", "=users:read", "k=users:delete"] {
            let err = KeysAndJwt::from_settings(&settings(spec, None))
                .err()
                .expect(spec);
            assert!(
                err.to_string().contains("LAMBDALESS_AUTH__API_KEYS"),
                "{err}"
            );
        }
    }

    #[tokio::test]
    async fn jwt_scopes_signature_and_expiry() {
        let a: Arc<dyn Authorizer> =
            Arc::new(KeysAndJwt::from_settings(&settings("", Some("s3cret"))).unwrap());
        let g = Guard::new(a, ORDERS_READ);
        let ok = token(
            serde_json::json!({"sub":"u1","scope":"orders:read"}),
            "s3cret",
        );
        let p = g
            .check(&headers("authorization", &format!("Bearer {ok}")))
            .await
            .unwrap();
        assert_eq!(p.id, "jwt:u1");
        let list = token(serde_json::json!({"scopes":["orders:read"]}), "s3cret");
        assert!(g
            .check(&headers("authorization", &format!("Bearer {list}")))
            .await
            .is_ok());
        let other = token(serde_json::json!({"scope":"users:read"}), "s3cret");
        assert_eq!(
            g.check(&headers("authorization", &format!("Bearer {other}")))
                .await,
            Err(AuthError::Forbidden(ORDERS_READ))
        );
        let forged = token(serde_json::json!({"scope":"orders:read"}), "wrong");
        assert_eq!(
            g.check(&headers("authorization", &format!("Bearer {forged}")))
                .await,
            Err(AuthError::Invalid)
        );
        let expired = token(serde_json::json!({"scope":"orders:read","exp":1}), "s3cret");
        assert_eq!(
            g.check(&headers("authorization", &format!("Bearer {expired}")))
                .await,
            Err(AuthError::Invalid)
        );
    }
}
