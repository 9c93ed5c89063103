//! `GET /openapi.json`: the OpenAPI 3.1 document generated from the handler
//! annotations and request types of [`crate::users`], so the document and the
//! validation cannot drift apart, and from [`crate::console::doc`] for the
//! console's routes: every route the gateway serves. No UI is bundled.

use axum::Json;
use lambdaless_runtime::error::ErrorBody;
use lambdaless_runtime::openapi::{self as common, Security};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::console::doc as console;
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
    info(title = "lambdaless api-gateway", description = "Async users API (seed 4), GraphQL orders API (seed 3), fetch bridge (seed 1), web console (SPEC §9)."),
    paths(users::create_user, users::status, users::get_user, graphql_post, graphql_get,
        fetch::fetch_document, document, common::healthz, common::readyz, common::metrics,
        console::page, console::asset, console::ticket, console::events, console::device_message,
        console::device_request, console::stream, console::health),
    components(schemas(users::CreateUser, users::Accepted, users::Status, users::User, ErrorBody,
        GraphqlRequest, GraphqlResponse, console::Ticket, console::DeviceMessage,
        console::DeviceMessageQueued, console::DeviceOp, console::DeviceRequestDoc,
        console::DeviceRequestSent, console::ServiceHealth, console::ConsoleHealth,
        lambdaless_runtime::openapi::StreamMode)),
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
            "/console",
            "/console/assets/{name}",
            "/console/ticket",
            "/console/events",
            "/console/devices/messages",
            "/console/devices/requests",
            "/console/stream/{table}",
            "/console/health",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} missing");
        }
    }

    #[test]
    fn console_routes_state_their_media_types_credentials_and_rules() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let op = |path: &str, method: &str| doc["paths"][path][method].clone();
        let events = op("/console/events", "get");
        assert!(events["responses"]["200"]["content"]["text/event-stream"].is_object());
        for status in ["401", "403", "429", "503"] {
            let body = &events["responses"][status]["content"]["application/json"]["schema"];
            assert_eq!(body["$ref"], "#/components/schemas/ErrorBody", "{status}");
        }
        // A ticket stands in for the credential, so no credential is also allowed.
        let security = events["security"].as_array().unwrap();
        assert!(security.iter().any(|s| s.as_object().unwrap().is_empty()));
        assert_eq!(events["security"][1]["api_key"][0], "devices:read");
        let stream = op("/console/stream/{table}", "get");
        assert!(stream["responses"]["200"]["content"]["application/x-ndjson"].is_object());
        for status in ["401", "403", "404", "429"] {
            assert!(stream["responses"][status].is_object(), "{status}");
        }
        let names: Vec<&str> = stream["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["table", "mode", "pk", "page_size", "segments"]);
        for path in ["/console/devices/messages", "/console/devices/requests"] {
            assert_eq!(op(path, "post")["security"][0]["api_key"][0], "admin");
            assert!(op(path, "post")["responses"]["503"].is_object());
        }
        assert!(
            op("/console", "get")["security"].is_null(),
            "the page is public"
        );
        let request = &doc["components"]["schemas"]["DeviceRequestDoc"];
        assert_eq!(request["additionalProperties"], false, "{request}");
        assert_eq!(request["required"], serde_json::json!(["op", "uuid"]));
        // The schema's operations are exactly the ones the handler accepts.
        let ops = &doc["components"]["schemas"]["DeviceOp"]["enum"];
        assert_eq!(*ops, serde_json::json!(["query", "get", "next", "delete"]));
        let message = &doc["components"]["schemas"]["DeviceMessage"];
        assert_eq!(message["type"], "object", "{message}");
    }
}
