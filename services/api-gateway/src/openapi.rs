//! `GET /openapi.json`: the OpenAPI 3.1 document generated from the handler
//! annotations and request types of [`crate::users`], so the document and the
//! validation cannot drift apart. No UI is bundled (no assets to download).

use axum::Json;
use lambdaless_runtime::error::ErrorBody;
use lambdaless_runtime::openapi::{self as common, Security};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::{fetch, users};

/// Body of `POST /graphql`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GraphqlRequest {
    /// The GraphQL document (SPEC §5 schema; read-only).
    #[schema(min_length = 1)]
    pub query: String,
    pub variables: Option<serde_json::Map<String, serde_json::Value>>,
    pub operation_name: Option<String>,
}

/// A GraphQL response: `data`, and `errors` when anything was refused or failed
/// (validation, depth and cost limits, resolver errors all answer 200).
#[derive(Debug, Serialize, ToSchema)]
pub struct GraphqlResponse {
    pub data: Option<serde_json::Value>,
    pub errors: Option<Vec<serde_json::Value>>,
}

#[utoipa::path(post, path = "/graphql", operation_id = "graphql",
    description = "Executes a query of the orders read API. Queries deeper than the depth limit \
        or costing more than the cost limit (one per field, a list field multiplying its \
        selection by 10) are refused before any read, as GraphQL errors.",
    request_body = GraphqlRequest,
    responses((status = 200, body = GraphqlResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("api_key" = ["orders:read"]), ("bearer" = ["orders:read"])))]
#[allow(dead_code)]
fn graphql_post() {}

#[utoipa::path(get, path = "/graphql", operation_id = "playground",
    description = "An offline GraphQL playground page.",
    responses((status = 200, body = String, content_type = "text/html")))]
#[allow(dead_code)]
fn graphql_get() {}

#[derive(OpenApi)]
#[openapi(
    info(title = "lambdaless api-gateway", description = "Async users API (seed 4), GraphQL orders API (seed 3), fetch bridge (seed 1)."),
    paths(users::create_user, users::status, users::get_user, graphql_post, graphql_get,
        fetch::fetch_document, document, common::healthz, common::readyz, common::metrics),
    components(schemas(users::CreateUser, users::Accepted, users::Status, users::User, ErrorBody,
        GraphqlRequest, GraphqlResponse)),
    modifiers(&Security)
)]
pub struct ApiDoc;

#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi", description = "This document.",
    responses((status = 200, description = "OpenAPI 3.1", body = Object)))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_matches_validation() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let create = &doc["components"]["schemas"]["CreateUser"];
        assert_eq!(create["additionalProperties"], false, "{create}");
        assert_eq!(create["properties"]["name"]["minLength"], 5);
        assert_eq!(create["properties"]["name"]["maxLength"], 100);
        assert_eq!(create["properties"]["email"]["format"], "email");
        for path in [
            "/users",
            "/status/{messageId}",
            "/users/{userId}",
            "/graphql",
            "/fetch/{fetchId}",
            "/openapi.json",
            "/healthz",
            "/readyz",
            "/metrics",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} missing");
        }
    }
}
