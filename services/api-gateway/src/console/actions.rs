//! What the console's buttons do beyond the public API routes the page calls
//! directly (`/users`, `/graphql`, `/fetch`):
//!
//! - `POST /console/devices/messages`: a device message (a JSON object) onto
//!   SQS `device-inbound`, as the seed's producers do; `mover` stores it.
//! - `POST /console/devices/requests`: publishes the seed 2 request
//!   `request/{op}/{uuid}[/{messageId}]` with a fresh token as the console's
//!   `device`-role broker user; the answer arrives on `response/{op}/{token}`
//!   through the event stream.
//! - `GET /console/stream/{table}`: the streamer's NDJSON stream of a table,
//!   relayed line by line on the gateway's own origin with the caller's
//!   credential (the streamer checks the table's scope and its own limits).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use lambdaless_contracts::topics;
use lambdaless_runtime::auth;
use lambdaless_runtime::aws::{AwsClients, NamedQueue};
use lambdaless_runtime::mqtt::{self, MqttConnection};
use lambdaless_runtime::MqttSettings;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use crate::error::{ApiError, RawJson};

/// What the action routes share.
#[derive(Clone)]
pub struct ActionsState {
    pub aws: AwsClients,
    /// `device-inbound`.
    pub device_inbound: NamedQueue,
    /// The `device`-role connection, opened on the first request.
    pub device: Arc<OnceCell<MqttConnection>>,
    pub device_mqtt: MqttSettings,
    pub streamer_url: String,
    pub stop: CancellationToken,
}

/// `POST /console/devices/messages`: queue a device message on `device-inbound`.
pub async fn send_device_message(
    State(state): State<ActionsState>,
    RawJson(value, body): RawJson<Value>,
) -> Result<Response, ApiError> {
    if !value.is_object() {
        return Err(ApiError::Invalid(
            "a device message is a JSON object".to_owned(),
        ));
    }
    let id = state.device_inbound.send(body).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "messageId": id }))).into_response())
}

/// Body of `POST /console/devices/requests`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeviceRequest {
    /// `query`, `get`, `next` or `delete`.
    op: String,
    /// The device (`thingName`).
    uuid: String,
    /// Needed by `get`, `next` and `delete`.
    message_id: Option<String>,
}

/// The request topic of a console request, or why it cannot be sent.
pub fn request_topic(req: &DeviceRequest) -> Result<String, ApiError> {
    if !topics::is_single_level(&req.uuid) || req.uuid.len() > topics::MAX_LEVEL_BYTES {
        return Err(ApiError::Invalid(
            "uuid: one topic level (no /, +, #), at most 1024 bytes".to_owned(),
        ));
    }
    let id = req.message_id.as_deref().filter(|m| !m.is_empty());
    match (req.op.as_str(), id) {
        ("query", _) => Ok(topics::request("query", &req.uuid, None)),
        ("get" | "next" | "delete", Some(id)) if topics::is_message_id(id) && id.len() <= 1024 => {
            Ok(topics::request(&req.op, &req.uuid, Some(id)))
        }
        ("get" | "next" | "delete", _) => Err(ApiError::Invalid(format!(
            "messageId: {} needs a message id without + or #",
            req.op
        ))),
        _ => Err(ApiError::Invalid(
            "op: one of query, get, next, delete".to_owned(),
        )),
    }
}

/// `POST /console/devices/requests`: publish one seed 2 request.
pub async fn device_request(
    State(state): State<ActionsState>,
    RawJson(req, _): RawJson<DeviceRequest>,
) -> Result<Response, ApiError> {
    let topic = request_topic(&req)?;
    let conn = state
        .device
        .get_or_init(|| async {
            mqtt::connect(&state.device_mqtt, Vec::new(), false, state.stop.clone()).connection
        })
        .await;
    // The first request waits for the connection the console opens for it.
    for _ in 0..60 {
        if conn.is_connected() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !conn.is_connected() {
        return Err(ApiError::Unavailable(
            "the console's broker connection is not up".to_owned(),
        ));
    }
    let token = uuid::Uuid::new_v4().simple().to_string();
    let payload = json!({ "token": token }).to_string().into_bytes();
    conn.publish_acked(topic.clone(), payload)
        .map_err(|e| ApiError::Unavailable(format!("publish {topic}: {e}")))?;
    let response_topic = topics::response(&req.op, &token);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "topic": topic, "token": token, "responseTopic": response_topic })),
    )
        .into_response())
}

/// `GET /console/stream/{table}`: the streamer's stream, relayed.
pub async fn stream(
    State(state): State<ActionsState>,
    Path(table): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if table.is_empty()
        || !table
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ApiError::not_found("no such table"));
    }
    let credential = auth::credential(&headers).unwrap_or_default().to_owned();
    let mut path = format!("/stream/{table}");
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        path.push('?');
        path.push_str(&q);
    }
    let upstream = lambdaless_client::stream::request(
        &state.streamer_url,
        "GET",
        &path,
        &[("x-api-key", credential.as_str())],
    )
    .await
    .map_err(|e| ApiError::BadGateway(format!("streamer {}: {e}", state.streamer_url)))?;
    let status = StatusCode::from_u16(upstream.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = upstream
        .header("content-type")
        .unwrap_or("application/x-ndjson")
        .to_owned();
    let retry_after = upstream.header("retry-after").map(str::to_owned);
    let lines = futures::stream::unfold(upstream, |mut upstream| async move {
        match upstream.next_line().await {
            Ok(Some(mut line)) => {
                line.push('\n');
                Some((Ok::<_, std::io::Error>(Bytes::from(line)), upstream))
            }
            Ok(None) => None,
            Err(e) => Some((Err(e), upstream)),
        }
    });
    let stop = state.stop.clone();
    let body = Body::from_stream(futures::StreamExt::take_until(
        lines,
        stop.cancelled_owned(),
    ));
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    if let Ok(v) = content_type.parse::<HeaderValue>() {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Some(v) = retry_after.and_then(|v| v.parse::<HeaderValue>().ok()) {
        h.insert(header::RETRY_AFTER, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(op: &str, uuid: &str, id: Option<&str>) -> DeviceRequest {
        DeviceRequest {
            op: op.into(),
            uuid: uuid.into(),
            message_id: id.map(Into::into),
        }
    }

    #[test]
    fn request_topics_follow_the_seed_and_refuse_wildcards() {
        assert_eq!(
            request_topic(&req("query", "t1", None)).unwrap(),
            "request/query/t1"
        );
        assert_eq!(
            request_topic(&req("get", "t1", Some("17"))).unwrap(),
            "request/get/t1/17"
        );
        assert!(request_topic(&req("get", "t1", None)).is_err());
        assert!(request_topic(&req("query", "t/1", None)).is_err());
        assert!(request_topic(&req("query", "#", None)).is_err());
        assert!(request_topic(&req("next", "t1", Some("+"))).is_err());
        assert!(request_topic(&req("send", "t1", Some("t2"))).is_err());
    }
}
