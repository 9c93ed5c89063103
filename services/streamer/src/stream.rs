//! `GET /stream/{table}`: DynamoDB pages as NDJSON, each page written as soon
//! as it is read.
//!
//! Readers (one, or one per scan segment) put encoded pages into a bounded
//! channel the response body drains: a slow client fills the channel and the
//! readers wait, so memory stays at a few pages whatever the table size. When
//! the client goes away the body and its receiver are dropped; the readers see
//! the closed channel (even while a read is in flight) and stop. A failed read
//! ends the stream with a final `{"error": "..."}` line.

use std::collections::HashMap;
use std::convert::Infallible;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client as DynamoDb;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use lambdaless_contracts::schema::{self, KeyType};
use lambdaless_runtime::{aws, dynamo_json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use lambdaless_runtime::auth::Principal;
use lambdaless_runtime::error::ApiError;

use crate::access::Slot;
use crate::AppState;

/// Largest `segments` of a parallel scan (the per-principal cap may be lower).
pub const MAX_SEGMENTS: i32 = 16;

/// What to read.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Scan in `segments` parallel segments (1 = sequential).
    Scan { segments: i32 },
    /// Query the items whose hash key `key` equals `value`.
    Query { key: String, value: AttributeValue },
}

/// A validated stream request.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub logical: String,
    /// The scope that may read this table.
    pub scope: &'static str,
    pub mode: Mode,
    pub page_size: i32,
}

/// Validates the path and query; `allowed` holds the logical table names
/// with their scopes, `max_segments` bounds `segments`.
pub fn plan(
    table: &str,
    params: &HashMap<String, String>,
    allowed: &[(String, &'static str)],
    max_segments: i32,
) -> Result<Plan, ApiError> {
    let Some((_, scope)) = allowed.iter().find(|(t, _)| t == table) else {
        return Err(ApiError::NotFound(format!(
            "table {table:?} is not available for streaming"
        )));
    };
    if let Some(unknown) = params
        .keys()
        .find(|k| !matches!(k.as_str(), "mode" | "pk" | "page_size" | "segments"))
    {
        return Err(ApiError::Invalid(format!(
            "unknown parameter {unknown:?} (known: mode, pk, page_size, segments)"
        )));
    }
    let page_size = match params.get("page_size") {
        None => 200,
        Some(v) => v
            .parse::<i32>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::Invalid(format!("page_size must be 1..=1000, got {v:?}")))?,
    };
    let segments = match params.get("segments") {
        None => None,
        Some(v) => Some(
            v.parse::<i32>()
                .ok()
                .filter(|n| (1..=max_segments).contains(n))
                .ok_or_else(|| {
                    ApiError::Invalid(format!("segments must be 1..={max_segments}, got {v:?}"))
                })?,
        ),
    };
    let mode = match params.get("mode").map(String::as_str).unwrap_or("scan") {
        "scan" => {
            if params.contains_key("pk") {
                return Err(ApiError::Invalid("pk is only used with mode=query".into()));
            }
            Mode::Scan {
                segments: segments.unwrap_or(1),
            }
        }
        "query" => {
            if segments.is_some() {
                return Err(ApiError::Invalid(
                    "segments is only used with mode=scan".into(),
                ));
            }
            let pk = params
                .get("pk")
                .filter(|v| !v.is_empty())
                .ok_or_else(|| ApiError::Invalid("mode=query needs pk=VALUE".into()))?;
            let spec = schema::table(table).ok_or_else(|| {
                ApiError::Invalid(format!("table {table:?} has no known key to query"))
            })?;
            let value = match spec.hash.kind {
                KeyType::S => AttributeValue::S(pk.clone()),
                KeyType::N => {
                    pk.parse::<f64>().map_err(|_| {
                        ApiError::Invalid(format!("pk of {table:?} must be a number"))
                    })?;
                    AttributeValue::N(pk.clone())
                }
            };
            Mode::Query {
                key: spec.hash.name.to_owned(),
                value,
            }
        }
        other => {
            return Err(ApiError::Invalid(format!(
                "mode must be scan or query, got {other:?}"
            )))
        }
    };
    Ok(Plan {
        logical: table.to_owned(),
        scope,
        mode,
        page_size,
    })
}

pub async fn handler(
    State(state): State<AppState>,
    Path(table): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, ApiError> {
    let plan = plan(&table, &params, &state.tables, state.max_segments)?;
    if !principal.has_scope(plan.scope) {
        metrics::counter!("auth_refused_total", "reason" => "forbidden").increment(1);
        return Err(ApiError::Forbidden(format!(
            "missing scope {} (it reads table {table:?})",
            plan.scope
        )));
    }
    let physical = state.names.name(&plan.logical);
    let segments = match plan.mode {
        Mode::Scan { segments } => segments,
        Mode::Query { .. } => 1,
    };
    let slot = state.slots.acquire(&principal.id, segments as usize)?;
    // A few pages in flight in total: the readers wait for the client beyond that.
    let (tx, rx) = mpsc::channel::<Bytes>(segments.max(2) as usize);
    tokio::spawn(supervise(state.dynamodb.clone(), physical, plan, tx, slot));
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|page| (Ok::<_, Infallible>(page), rx))
    }));
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response())
}

/// Why a reader stopped early.
enum Stop {
    Disconnected,
    Failed(String),
}

/// Runs the readers of one stream and records how it ended; the caller's
/// `slot` is given back when it returns.
async fn supervise(
    dynamodb: DynamoDb,
    table: String,
    plan: Plan,
    tx: mpsc::Sender<Bytes>,
    slot: Slot,
) {
    let _slot = slot;
    metrics::gauge!("streamer_streams_active").increment(1.0);
    let stop = CancellationToken::new();
    let mut readers = JoinSet::new();
    match &plan.mode {
        Mode::Scan { segments } => {
            for segment in 0..*segments {
                let part = (*segments > 1).then_some((segment, *segments));
                readers.spawn(read(
                    dynamodb.clone(),
                    table.clone(),
                    plan.clone(),
                    part,
                    tx.clone(),
                    stop.clone(),
                ));
            }
        }
        Mode::Query { .. } => {
            readers.spawn(read(
                dynamodb.clone(),
                table.clone(),
                plan.clone(),
                None,
                tx.clone(),
                stop.clone(),
            ));
        }
    }
    let mut outcome = "complete";
    let mut failure = None;
    while let Some(joined) = readers.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(Stop::Disconnected)) => {
                outcome = "cancelled";
                stop.cancel();
            }
            Ok(Err(Stop::Failed(e))) => {
                if failure.is_none() {
                    failure = Some(e);
                }
                stop.cancel();
            }
            Err(e) => {
                failure.get_or_insert_with(|| format!("reader task failed: {e}"));
                stop.cancel();
            }
        }
    }
    if let Some(error) = failure {
        tracing::warn!(table, %error, "stream ended by a read error");
        outcome = "error";
        let line = format!("{}\n", serde_json::json!({ "error": error }));
        let _ = tx.send(Bytes::from(line)).await;
    }
    if outcome == "cancelled" {
        metrics::counter!("streamer_streams_cancelled_total").increment(1);
        tracing::info!(table, "client disconnected; reading stopped");
    }
    metrics::counter!("streamer_streams_total", "outcome" => outcome).increment(1);
    metrics::gauge!("streamer_streams_active").decrement(1.0);
}

/// Reads pages of one query or scan segment into the channel until the end,
/// a disconnect, a failure, or `stop`.
async fn read(
    dynamodb: DynamoDb,
    table: String,
    plan: Plan,
    segment: Option<(i32, i32)>,
    tx: mpsc::Sender<Bytes>,
    stop: CancellationToken,
) -> Result<(), Stop> {
    let mut start: Option<HashMap<String, AttributeValue>> = None;
    loop {
        let page = async {
            match &plan.mode {
                Mode::Scan { .. } => {
                    let mut req = dynamodb
                        .scan()
                        .table_name(&table)
                        .limit(plan.page_size)
                        .set_exclusive_start_key(start.take());
                    if let Some((s, total)) = segment {
                        req = req.segment(s).total_segments(total);
                    }
                    req.send()
                        .await
                        .map(|o| (o.items.unwrap_or_default(), o.last_evaluated_key))
                        .map_err(|e| aws::describe(&e))
                }
                Mode::Query { key, value } => dynamodb
                    .query()
                    .table_name(&table)
                    .limit(plan.page_size)
                    .key_condition_expression("#k = :v")
                    .expression_attribute_names("#k", key)
                    .expression_attribute_values(":v", value.clone())
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map(|o| (o.items.unwrap_or_default(), o.last_evaluated_key))
                    .map_err(|e| aws::describe(&e)),
            }
        };
        let (items, next) = tokio::select! {
            _ = tx.closed() => return Err(Stop::Disconnected),
            _ = stop.cancelled() => return Ok(()),
            r = page => r.map_err(Stop::Failed)?,
        };
        metrics::counter!("streamer_pages_read_total").increment(1);
        metrics::counter!("streamer_items_streamed_total").increment(items.len() as u64);
        if !items.is_empty() {
            let mut buf = Vec::with_capacity(items.len() * 192);
            for item in &items {
                serde_json::to_writer(&mut buf, &dynamo_json::from_item(item))
                    .map_err(|e| Stop::Failed(format!("item not encodable: {e}")))?;
                buf.push(b'\n');
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                sent = tx.send(Bytes::from(buf)) => sent.map_err(|_| Stop::Disconnected)?,
            }
        }
        match next {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn allowed() -> Vec<(String, &'static str)> {
        vec![
            ("artists".into(), "stream:read"),
            ("device-messages".into(), "devices:read"),
        ]
    }

    #[test]
    fn plans_scans_and_queries() {
        let plan = plan("artists", &p(&[]), &allowed(), MAX_SEGMENTS).unwrap();
        assert_eq!(plan.mode, Mode::Scan { segments: 1 });
        assert_eq!((plan.page_size, plan.scope), (200, "stream:read"));
        let plan = plan_ok(&[("mode", "query"), ("pk", "u1"), ("page_size", "1000")]);
        assert_eq!(
            plan.mode,
            Mode::Query {
                key: "uuid".into(),
                value: AttributeValue::S("u1".into())
            }
        );
        assert_eq!(
            plan_ok(&[("segments", "4")]).mode,
            Mode::Scan { segments: 4 }
        );
    }

    fn plan_ok(pairs: &[(&str, &str)]) -> Plan {
        plan("device-messages", &p(pairs), &allowed(), MAX_SEGMENTS).unwrap()
    }

    #[test]
    fn refuses_bad_parameters_and_tables() {
        assert!(matches!(
            plan("users", &p(&[]), &allowed(), MAX_SEGMENTS),
            Err(ApiError::NotFound(_))
        ));
        for bad in [
            &[("page_size", "0")][..],
            &[("page_size", "1001")],
            &[("page_size", "x")],
            &[("mode", "dump")],
            &[("mode", "query")],
            &[("mode", "query"), ("pk", "a"), ("segments", "2")],
            &[("pk", "a")],
            &[("segments", "0")],
            &[("segments", "17")],
            &[("limit", "3")],
        ] {
            assert!(
                matches!(
                    plan("artists", &p(bad), &allowed(), MAX_SEGMENTS),
                    Err(ApiError::Invalid(_))
                ),
                "{bad:?} accepted"
            );
        }
    }
}
