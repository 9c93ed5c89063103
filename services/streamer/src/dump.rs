//! `POST /dump?count=N`: writes N generated `artists` items (seed 5's shape:
//! `id, followers, genres, name, popularity`, all strings, about 150 bytes)
//! with parallel BatchWriteItem, retrying unprocessed items, and reports
//! `{"count", "seconds"}`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_sdk_dynamodb::Client as DynamoDb;
use axum::extract::{Query, State};
use axum::Json;
use futures::StreamExt;
use lambdaless_contracts::names;
use lambdaless_runtime::aws;
use serde_json::{json, Value};

use lambdaless_runtime::error::ApiError;

use crate::AppState;

/// Largest `max_dump_count` setting.
pub const MAX_COUNT: u64 = 1_000_000;
/// BatchWriteItem calls in flight at once.
const PARALLEL: usize = 8;
const ATTEMPTS: u32 = 8;
const GENRES: [&str; 6] = ["rock", "pop", "jazz", "hip hop", "classical", "electronic"];

pub async fn handler(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let max = state.max_dump_count;
    if let Some(unknown) = params.keys().find(|k| k.as_str() != "count") {
        return Err(ApiError::Invalid(format!(
            "unknown parameter {unknown:?} (known: count)"
        )));
    }
    let count = match params.get("count") {
        None => 2000.min(max),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| ApiError::Invalid(format!("count must be 1..={max}, got {v:?}")))?,
    };
    let table = state.names.name(names::ARTISTS);
    let started = Instant::now();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let batches = (0..count).step_by(25).map(|first| {
        let items: Vec<WriteRequest> = (first..(first + 25).min(count))
            .map(|i| artist(&run, i))
            .collect();
        write(state.dynamodb.clone(), table.clone(), items)
    });
    let mut results = futures::stream::iter(batches).buffer_unordered(PARALLEL);
    while let Some(result) = results.next().await {
        result.map_err(ApiError::Internal)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(count, seconds, "artists dumped");
    Ok(Json(json!({"count": count, "seconds": seconds})))
}

fn artist(run: &str, i: u64) -> WriteRequest {
    let s = |v: String| AttributeValue::S(v);
    let h = i.wrapping_mul(2_654_435_761) ^ 0x5bd1_e995;
    let item = HashMap::from([
        ("id".to_owned(), s(format!("{run}-{i:08}"))),
        ("followers".to_owned(), s((h % 5_000_000).to_string())),
        (
            "genres".to_owned(),
            s(format!(
                "{}, {}",
                GENRES[(h % 6) as usize],
                GENRES[((h >> 8) % 6) as usize]
            )),
        ),
        (
            "name".to_owned(),
            s(format!("Generated Artist Number {i:08} of the Dump")),
        ),
        ("popularity".to_owned(), s((h % 101).to_string())),
    ]);
    let put = PutRequest::builder()
        .set_item(Some(item))
        .build()
        .expect("item is set");
    WriteRequest::builder().put_request(put).build()
}

async fn write(
    dynamodb: DynamoDb,
    table: String,
    mut items: Vec<WriteRequest>,
) -> Result<(), String> {
    for attempt in 1..=ATTEMPTS {
        match dynamodb
            .batch_write_item()
            .request_items(&table, items.clone())
            .send()
            .await
        {
            Ok(out) => {
                items = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&table))
                    .unwrap_or_default();
                if items.is_empty() {
                    return Ok(());
                }
            }
            Err(e) if attempt == ATTEMPTS => {
                return Err(format!("BatchWriteItem: {}", aws::describe(&e)))
            }
            Err(e) => tracing::warn!(error = %aws::describe(&e), attempt, "BatchWriteItem failed"),
        }
        tokio::time::sleep(Duration::from_millis(25 * 2u64.pow(attempt))).await;
    }
    Err(format!("{} items still unprocessed", items.len()))
}
