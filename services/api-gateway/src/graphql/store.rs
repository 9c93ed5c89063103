//! Reads for the GraphQL API: DynamoDB behind a read-through TTL cache (the
//! seed's ElastiCache). Every DynamoDB request is counted in
//! `dynamodb_calls_total{operation}` and every cache lookup in
//! `graphql_cache_total{result="hit"|"miss"}`, so tests and benchmarks can
//! see how many round trips a query cost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use aws_sdk_dynamodb::Client as DynamoDb;

use lambdaless_runtime::aws;

pub type Item = HashMap<String, AttributeValue>;
/// What a cache entry holds: the items of one key or one query (maybe none).
pub type Items = Arc<Vec<Item>>;

/// A store read failed; the detail was logged, callers see a generic message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the orders store is unavailable, retry later")]
pub struct StoreError;

/// A bounded map of entries that expire `ttl` after they were read.
pub struct Cache {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, (Instant, Items)>>,
}

impl Cache {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            entries: Mutex::default(),
        }
    }

    pub fn get(&self, key: &str, now: Instant) -> Option<Items> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().expect("cache lock");
        let hit = entries
            .get(key)
            .filter(|(at, _)| now.duration_since(*at) < self.ttl)
            .map(|(_, v)| v.clone());
        let result = if hit.is_some() { "hit" } else { "miss" };
        metrics::counter!("graphql_cache_total", "result" => result).increment(1);
        hit
    }

    /// Like [`Cache::get`], but a miss is not counted: for a fast path that
    /// falls back to a read which counts (and caches) it.
    pub fn peek(&self, key: &str, now: Instant) -> Option<Items> {
        if self.ttl.is_zero() {
            return None;
        }
        let hit = self
            .entries
            .lock()
            .expect("cache lock")
            .get(key)
            .filter(|(at, _)| now.duration_since(*at) < self.ttl)
            .map(|(_, v)| v.clone());
        if hit.is_some() {
            metrics::counter!("graphql_cache_total", "result" => "hit").increment(1);
        }
        hit
    }

    pub fn put(&self, key: String, value: Items, now: Instant) {
        if self.ttl.is_zero() || self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.lock().expect("cache lock");
        if entries.len() >= self.capacity {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| now.duration_since(*at) < ttl);
            if entries.len() >= self.capacity {
                // Still full of live entries: start over rather than scan for the oldest.
                entries.clear();
            }
        }
        entries.insert(key, (now, value));
    }
}

/// DynamoDB reads of the orders tables, cached.
pub struct Store {
    pub db: DynamoDb,
    pub cache: Cache,
}

/// Keys per PartiQL statement (DynamoDB takes at most 50 in one `IN`/`OR`
/// list on the partition key).
pub const PARTIQL_KEYS: usize = 50;

/// `SELECT * FROM "table" WHERE "key" = ? OR ...` for `n` parameters. Names
/// come from our own schema, never from a request; quotes are doubled anyway.
fn select_by_keys(table: &str, key_attr: &str, n: usize) -> String {
    let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    let key = quote(key_attr);
    let condition = vec![format!("{key} = ?"); n].join(" OR ");
    format!("SELECT * FROM {} WHERE {condition}", quote(table))
}

fn counted(operation: &'static str) {
    metrics::counter!("dynamodb_calls_total", "operation" => operation).increment(1);
}

impl Store {
    /// The cached item of `table` with hash key `id` (`Some(None)`: cached as
    /// absent), or `None` when only a read can tell.
    pub fn cached_item(&self, table: &str, id: &str) -> Option<Option<Item>> {
        self.cache
            .peek(&format!("{table}#{id}"), Instant::now())
            .map(|items| items.first().cloned())
    }

    /// Items of `table` by their hash key `key_attr`, one BatchGetItem per
    /// 100 uncached keys (plus retries of unprocessed keys).
    pub async fn batch_get(
        &self,
        table: &str,
        key_attr: &str,
        ids: &[String],
    ) -> Result<HashMap<String, Item>, StoreError> {
        let now = Instant::now();
        let mut found = HashMap::new();
        let mut missing: Vec<String> = Vec::new();
        for id in ids {
            match self.cache.get(&format!("{table}#{id}"), now) {
                Some(items) => {
                    if let Some(item) = items.first() {
                        found.insert(id.clone(), item.clone());
                    }
                }
                None if !missing.contains(id) => missing.push(id.clone()),
                None => {}
            }
        }
        for chunk in missing.chunks(100) {
            let keys: Vec<Item> = chunk
                .iter()
                .map(|id| HashMap::from([(key_attr.to_owned(), AttributeValue::S(id.clone()))]))
                .collect();
            let mut request = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .build()
                    .expect("keys are set"),
            );
            let mut attempt = 0u32;
            let mut fetched: HashMap<String, Item> = HashMap::new();
            while let Some(keys) = request.take() {
                attempt += 1;
                counted("BatchGetItem");
                let out = self
                    .db
                    .batch_get_item()
                    .request_items(table, keys)
                    .send()
                    .await
                    .map_err(|e| {
                        tracing::warn!(error = %aws::describe(&e), operation = "BatchGetItem", "read failed");
                        StoreError
                    })?;
                for item in out
                    .responses
                    .and_then(|mut r| r.remove(table))
                    .unwrap_or_default()
                {
                    if let Some(AttributeValue::S(id)) = item.get(key_attr) {
                        fetched.insert(id.clone(), item);
                    }
                }
                request = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(table))
                    .filter(|k| !k.keys.is_empty());
                if request.is_some() {
                    if attempt >= 6 {
                        tracing::warn!(table, "BatchGetItem left keys unprocessed");
                        return Err(StoreError);
                    }
                    tokio::time::sleep(Duration::from_millis(20 * 2u64.pow(attempt))).await;
                }
            }
            let now = Instant::now();
            for id in chunk {
                let value = fetched.remove(id);
                let cached: Items = Arc::new(value.iter().cloned().collect());
                self.cache.put(format!("{table}#{id}"), cached, now);
                if let Some(item) = value {
                    found.insert(id.clone(), item);
                }
            }
        }
        Ok(found)
    }

    /// Every item of `table` whose hash key `key_attr` is one of `ids`,
    /// grouped by id: uncached ids are read with ONE PartiQL `ExecuteStatement`
    /// per [`PARTIQL_KEYS`] ids (`WHERE "k" = ? OR "k" = ? ...`, which DynamoDB
    /// serves as key lookups, not a scan), following `NextToken`.
    pub async fn query_many(
        &self,
        table: &str,
        key_attr: &str,
        ids: &[String],
    ) -> Result<HashMap<String, Items>, StoreError> {
        let now = Instant::now();
        let mut found = HashMap::new();
        let mut missing: Vec<String> = Vec::new();
        for id in ids {
            match self.cache.get(&format!("{table}/#{id}"), now) {
                Some(items) => {
                    found.insert(id.clone(), items);
                }
                None if !missing.contains(id) => missing.push(id.clone()),
                None => {}
            }
        }
        for chunk in missing.chunks(PARTIQL_KEYS) {
            let statement = select_by_keys(table, key_attr, chunk.len());
            let parameters: Vec<AttributeValue> = chunk
                .iter()
                .map(|id| AttributeValue::S(id.clone()))
                .collect();
            let mut grouped: HashMap<String, Vec<Item>> = HashMap::new();
            let mut next = None;
            loop {
                counted("ExecuteStatement");
                let out = self
                    .db
                    .execute_statement()
                    .statement(&statement)
                    .set_parameters(Some(parameters.clone()))
                    .set_next_token(next)
                    .send()
                    .await
                    .map_err(|e| {
                        tracing::warn!(error = %aws::describe(&e), operation = "ExecuteStatement", "read failed");
                        StoreError
                    })?;
                for item in out.items.unwrap_or_default() {
                    if let Some(AttributeValue::S(id)) = item.get(key_attr) {
                        grouped.entry(id.clone()).or_default().push(item);
                    }
                }
                next = out.next_token.filter(|t| !t.is_empty());
                if next.is_none() {
                    break;
                }
            }
            let now = Instant::now();
            for id in chunk {
                let items: Items = Arc::new(grouped.remove(id).unwrap_or_default());
                self.cache.put(format!("{table}/#{id}"), items.clone(), now);
                found.insert(id.clone(), items);
            }
        }
        Ok(found)
    }

    /// Every item whose `key_attr` is `id` in `table` (or its `index`), all pages.
    pub async fn query(
        &self,
        table: &str,
        index: Option<&str>,
        key_attr: &str,
        id: &str,
    ) -> Result<Items, StoreError> {
        let cache_key = format!("{table}/{}#{id}", index.unwrap_or(""));
        if let Some(hit) = self.cache.get(&cache_key, Instant::now()) {
            return Ok(hit);
        }
        let mut items = Vec::new();
        let mut start = None;
        loop {
            counted("Query");
            let out = self
                .db
                .query()
                .table_name(table)
                .set_index_name(index.map(str::to_owned))
                .key_condition_expression("#k = :v")
                .expression_attribute_names("#k", key_attr)
                .expression_attribute_values(":v", AttributeValue::S(id.to_owned()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| {
                    tracing::warn!(error = %aws::describe(&e), operation = "Query", "read failed");
                    StoreError
                })?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key.filter(|k| !k.is_empty());
            if start.is_none() {
                break;
            }
        }
        let items = Arc::new(items);
        self.cache.put(cache_key, items.clone(), Instant::now());
        Ok(items)
    }
}

/// A string attribute, or empty.
pub fn s(item: &Item, key: &str) -> String {
    match item.get(key) {
        Some(AttributeValue::S(v)) => v.clone(),
        Some(AttributeValue::N(v)) => v.clone(),
        _ => String::new(),
    }
}

/// A number attribute (N, or S holding a number), or 0.
pub fn n(item: &Item, key: &str) -> f64 {
    match item.get(key) {
        Some(AttributeValue::N(v)) | Some(AttributeValue::S(v)) => v.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partiql_selects_by_key_with_one_parameter_per_id() {
        assert_eq!(
            select_by_keys("p-order_items", "orderId", 3),
            r#"SELECT * FROM "p-order_items" WHERE "orderId" = ? OR "orderId" = ? OR "orderId" = ?"#
        );
        assert_eq!(
            select_by_keys("we\"ird", "k", 1),
            r#"SELECT * FROM "we""ird" WHERE "k" = ?"#
        );
    }

    #[test]
    fn entries_expire_after_ttl() {
        let cache = Cache::new(Duration::from_secs(10), 10);
        let t0 = Instant::now();
        cache.put("k".into(), Arc::new(Vec::new()), t0);
        assert!(cache.get("k", t0 + Duration::from_secs(9)).is_some());
        assert!(cache.get("k", t0 + Duration::from_secs(10)).is_none());
    }

    #[test]
    fn capacity_is_bounded() {
        let cache = Cache::new(Duration::from_secs(10), 2);
        let t0 = Instant::now();
        for k in ["a", "b", "c"] {
            cache.put(k.into(), Arc::new(Vec::new()), t0);
        }
        assert!(cache.entries.lock().unwrap().len() <= 2);
        assert!(cache.get("c", t0).is_some());
    }
}
