//! The console's routes in the gateway's OpenAPI document (SPEC §4, §9):
//! every `/console` route with its credential, parameters, bodies and
//! answers, including the `text/event-stream` and `application/x-ndjson`
//! streams. The handlers live in [`super`], [`super::events`],
//! [`super::actions`] and [`super::health`]; the request body types here
//! state the same rules those handlers check.
//!
//! When the console is switched off (`console.enabled = false`) every route
//! below answers 404.

// The annotated functions only carry the documentation; they are never called.
#![allow(dead_code)]

use lambdaless_runtime::error::ErrorBody;
use serde::Serialize;
use utoipa::ToSchema;

/// What `POST /console/ticket` hands out.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ticket {
    /// Random, single use: open `GET /console/events?ticket=...` with it.
    #[schema(min_length = 64, max_length = 64)]
    pub ticket: String,
    /// How long it stays valid (`console.ticket_ttl_secs`).
    pub expires_in_secs: u64,
}

/// Body of `POST /console/devices/messages`: any JSON object, queued unchanged.
#[derive(Debug, ToSchema)]
pub struct DeviceMessage(pub serde_json::Map<String, serde_json::Value>);

/// What `POST /console/devices/messages` answers.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceMessageQueued {
    /// The SQS MessageId on `device-inbound`.
    pub message_id: String,
}

/// The seed 2 operation a console request publishes.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeviceOp {
    Query,
    Get,
    Next,
    Delete,
}

/// Body of `POST /console/devices/requests`; any other field is refused.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeviceRequestDoc {
    pub op: DeviceOp,
    /// The device (`thingName`): one topic level, no `/`, `+`, `#` or NUL, at most 1024 bytes.
    #[schema(min_length = 1, max_length = 1024, pattern = "^[^/+#\\x00]+$")]
    pub uuid: String,
    /// Needed by `get`, `next` and `delete` (no `+`, `#`, NUL or empty level); ignored by `query`.
    pub message_id: Option<String>,
}

/// What `POST /console/devices/requests` answers.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRequestSent {
    /// `request/{op}/{uuid}[/{messageId}]`.
    pub topic: String,
    /// The fresh token in the request's payload.
    pub token: String,
    /// `response/{op}/{token}`: the answer arrives there, visible on `/console/events`.
    pub response_topic: String,
}

/// One service in `GET /console/health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceHealth {
    pub name: String,
    /// `ready`, `not ready`, `error` or `unreachable`.
    pub state: String,
    /// The service's `/readyz` checks, or `{"error": "..."}` when it did not answer.
    pub checks: Option<serde_json::Value>,
    /// Headline metrics, each summed over its labels.
    pub metrics: std::collections::BTreeMap<String, f64>,
}

/// What `GET /console/health` answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsoleHealth {
    pub services: Vec<ServiceHealth>,
}

#[utoipa::path(get, path = "/console", operation_id = "console_page", tag = "console",
    description = "The console page. It holds no data, so it needs no credential; it is \
        revalidated on every load (`Cache-Control: no-cache`, `ETag`) and carries a strict \
        Content-Security-Policy.",
    params(("If-None-Match" = Option<String>, Header, description = "the ETag of a copy already held")),
    responses(
        (status = 200, description = "the page", body = String, content_type = "text/html"),
        (status = 304, description = "the held copy is current")))]
fn page() {}

#[utoipa::path(get, path = "/console/assets/{name}", operation_id = "console_asset", tag = "console",
    description = "The page's script and style sheet under content-hashed names \
        (`console-{hash}.js`, `console-{hash}.css`), cached for a year; only the current \
        build's names exist.",
    params(("name" = String, Path, description = "an asset name from the page")),
    responses(
        (status = 200, description = "the asset", content(
            (String = "text/javascript"), (String = "text/css"))),
        (status = 404, body = ErrorBody, description = "no such asset")))]
fn asset() {}

#[utoipa::path(post, path = "/console/ticket", operation_id = "console_ticket", tag = "console",
    description = "A single-use ticket, valid for `ticket_ttl_secs`, that opens one \
        `GET /console/events` from a browser (`EventSource` cannot send headers).",
    responses((status = 200, body = Ticket),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "over the rate, or too many tickets outstanding")),
    security(("api_key" = ["devices:read"]), ("bearer" = ["devices:read"])))]
fn ticket() {}

#[utoipa::path(get, path = "/console/events", operation_id = "console_events", tag = "console",
    description = "Server-Sent Events until the gateway shuts down: `hello` and every 5 s \
        `broker` (`{\"broker\": bool}`, whether the gateway's observer connection is up), \
        one unnamed event per publish on `notification/#` and `response/#` \
        (`{\"topic\",\"payload\",\"bytes\",\"truncated\",\"at\"}`), and `lagged` \
        (`{\"missed\": n}`) when the reader fell too far behind. Needs `devices:read`: \
        either a credential header or a ticket from `POST /console/ticket`.",
    params(("ticket" = Option<String>, Query, description = "a fresh ticket, when no credential header is sent")),
    responses(
        (status = 200, description = "the event stream", body = String, content_type = "text/event-stream"),
        (status = 401, body = ErrorBody, description = "no credential, a bad one, or an unknown or used ticket"),
        (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "over the rate, or too many failed attempts"),
        (status = 503, body = ErrorBody, description = "too many event streams open (`max_event_clients`)")),
    security((), ("api_key" = ["devices:read"]), ("bearer" = ["devices:read"])))]
fn events() {}

#[utoipa::path(post, path = "/console/devices/messages", operation_id = "console_device_message", tag = "console",
    description = "Queues a device message on SQS `device-inbound` unchanged, as the seed's \
        producers do; `mover` stores it.",
    request_body = DeviceMessage,
    responses((status = 202, body = DeviceMessageQueued),
        (status = 400, body = ErrorBody, description = "not a JSON object"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "SQS did not answer")),
    security(("api_key" = ["admin"]), ("bearer" = ["admin"])))]
fn device_message() {}

#[utoipa::path(post, path = "/console/devices/requests", operation_id = "console_device_request", tag = "console",
    description = "Publishes one seed 2 request `request/{op}/{uuid}[/{messageId}]` with a fresh \
        token as the console's `device`-role broker user; the answer arrives on \
        `response/{op}/{token}`, visible on `GET /console/events`.",
    request_body = DeviceRequestDoc,
    responses((status = 202, body = DeviceRequestSent),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "the console's broker connection is not up")),
    security(("api_key" = ["admin"]), ("bearer" = ["admin"])))]
fn device_request() {}

#[utoipa::path(get, path = "/console/stream/{table}", operation_id = "console_stream", tag = "console",
    description = "The streamer's `GET /stream/{table}` relayed line by line on the gateway's \
        origin with the caller's credential: the streamer checks the table's scope and its own \
        limits, and its status and error body are passed on.",
    params(("table" = String, Path, description = "an allow-listed logical table name", example = "artists"),
        lambdaless_runtime::openapi::StreamParams),
    responses(
        (status = 200, description = "one JSON item per line", body = Object, content_type = "application/x-ndjson"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "the table needs another scope"),
        (status = 404, body = ErrorBody, description = "table not available for streaming"),
        (status = 429, body = ErrorBody, description = "over the rate, or too many streams or segments at once"),
        (status = 502, body = ErrorBody, description = "the streamer did not answer")),
    security(("api_key" = []), ("bearer" = [])))]
fn stream() {}

#[utoipa::path(get, path = "/console/health", operation_id = "console_health", tag = "console",
    description = "Every configured service's `/readyz` and headline metrics, polled by the \
        gateway (each at most 2 s) and shared by all callers for 2 s.",
    responses((status = 200, body = ConsoleHealth),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
fn health() {}
