//! What the OpenAPI documents of both HTTP services share: the credential
//! schemes ([`Security`]) and the operational routes every service serves
//! (`/healthz`, `/readyz`, `/metrics`; bodies documented here, served by
//! [`crate::admin`]).

use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, ToSchema};

/// How the streamer's `GET /stream/{table}` (and the console's relay of it)
/// reads the table.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StreamMode {
    /// Every item (in `segments` parallel segments).
    Scan,
    /// The items whose partition key equals `pk`.
    Query,
}

/// Query parameters of the streamer's `GET /stream/{table}`, which the
/// console's `GET /console/stream/{table}` passes on unchanged; any other is
/// refused with 400.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct StreamParams {
    /// `scan` (default) or `query`.
    mode: Option<StreamMode>,
    /// Partition key value; required with `mode=query`, refused with `scan`.
    #[param(min_length = 1)]
    pk: Option<String>,
    /// Items per DynamoDB page (default 200).
    #[param(minimum = 1, maximum = 1000)]
    page_size: Option<i32>,
    /// Parallel scan segments (scan only; the per-caller cap may be lower).
    #[param(minimum = 1, maximum = 16)]
    segments: Option<i32>,
}

/// Adds the `api_key` (`x-api-key` header) and `bearer` (API key or HS256
/// JWT) security schemes.
pub struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("API key or HS256 JWT")
                    .build(),
            ),
        );
    }
}

/// `{"status": "alive"}`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Alive {
    status: String,
}

/// `{"status": "ready" | "not ready", "checks": {"dependency": "ok" | "reason"}}`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Ready {
    status: String,
    checks: std::collections::BTreeMap<String, String>,
}

#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "operations",
    description = "The process is alive (no dependency is called).",
    responses((status = 200, body = Alive)))]
pub fn healthz() {}

#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "operations",
    description = "Every dependency answers; the result is cached for about a second.",
    responses((status = 200, body = Ready), (status = 503, body = Ready, description = "a dependency is down")))]
pub fn readyz() {}

#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "operations",
    description = "Prometheus text exposition.",
    responses((status = 200, body = String, content_type = "text/plain")))]
pub fn metrics() {}
