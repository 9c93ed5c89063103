//! `GET /openapi.json`: the streamer's OpenAPI 3.1 document, generated from
//! the annotations on its handlers (every route it serves, the NDJSON media
//! type, the `{"message"}` error body and both credential schemes).

use axum::Json;
use lambdaless_runtime::error::ErrorBody;
use lambdaless_runtime::openapi::{self as common, Security, StreamMode, StreamParams};
use serde::Serialize;
use utoipa::{IntoParams, OpenApi, ToSchema};

/// Query parameters of `POST /dump`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct DumpParams {
    /// Items to write (default 2000; at most `max_dump_count`, 100000 by default).
    #[param(minimum = 1, maximum = 100000)]
    count: Option<u64>,
}

/// What `POST /dump` reports.
#[derive(Debug, Serialize, ToSchema)]
pub struct DumpReport {
    pub count: u64,
    pub seconds: f64,
}

#[utoipa::path(get, path = "/stream/{table}", operation_id = "stream",
    description = "Streams the table as NDJSON, one item per line, each DynamoDB page as soon \
        as it is read. Needs the scope the table names (artists: stream:read, device-messages: \
        devices:read, documents: fetch, customers/products/orders/order_items: orders:read). \
        A read failure mid-stream ends it with a last line {\"error\": \"...\"}.",
    params(("table" = String, Path, description = "an allow-listed logical table name"), StreamParams),
    responses(
        (status = 200, description = "one JSON item per line", body = Object, content_type = "application/x-ndjson"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "the table needs another scope"),
        (status = 404, body = ErrorBody, description = "table not available for streaming"),
        (status = 429, body = ErrorBody, description = "over the rate, or too many streams or segments at once")),
    security(("api_key" = []), ("bearer" = [])))]
#[allow(dead_code)]
fn stream_doc() {}

#[utoipa::path(post, path = "/dump", operation_id = "dump", params(DumpParams),
    description = "Writes `count` generated artists items (seed 5's shape) with BatchWriteItem.",
    responses((status = 200, body = DumpReport),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 500, body = ErrorBody)),
    security(("api_key" = ["stream:write"]), ("bearer" = ["stream:write"])))]
#[allow(dead_code)]
fn dump_doc() {}

#[derive(OpenApi)]
#[openapi(
    info(title = "lambdaless streamer", description = "NDJSON streams of DynamoDB scans and queries (seed 5)."),
    paths(stream_doc, dump_doc, document,
        common::healthz, common::readyz, common::metrics),
    components(schemas(ErrorBody, DumpReport, StreamMode)),
    modifiers(&Security)
)]
pub struct ApiDoc;

#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi", description = "This document.",
    responses((status = 200, description = "OpenAPI 3.1", body = Object)))]
#[allow(dead_code)]
fn document() {}

/// The document with this installation's bounds on `count` and `segments`.
pub fn document_for(max_dump_count: u64, max_segments: i32) -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serialises");
    let mut bound = |path: &str, method: &str, param: &str, max: serde_json::Value| {
        if let Some(params) = doc["paths"][path][method]["parameters"].as_array_mut() {
            for p in params.iter_mut().filter(|p| p["name"] == param) {
                p["schema"]["maximum"] = max.clone();
            }
        }
    };
    bound("/dump", "post", "count", max_dump_count.into());
    bound("/stream/{table}", "get", "segments", max_segments.into());
    doc
}

/// `GET /openapi.json`.
pub fn route(doc: serde_json::Value) -> axum::routing::MethodRouter {
    let doc = std::sync::Arc::new(doc);
    axum::routing::get(move || {
        let doc = doc.clone();
        async move { Json(doc.as_ref().clone()) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_with_its_bounds() {
        let doc = document_for(50, 4);
        for path in [
            "/stream/{table}",
            "/dump",
            "/openapi.json",
            "/healthz",
            "/readyz",
            "/metrics",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} missing");
        }
        let stream = &doc["paths"]["/stream/{table}"]["get"];
        assert!(
            stream["responses"]["200"]["content"]["application/x-ndjson"].is_object(),
            "{stream}"
        );
        let text = doc.to_string();
        assert!(
            text.contains("\"maximum\":50") && text.contains("\"maximum\":4"),
            "{text}"
        );
        assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
    }
}
