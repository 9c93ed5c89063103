//! Writing a batch of items with BatchWriteItem, item by item accountable.
//!
//! - Items with the same key are written once (DynamoDB refuses a batch holding duplicates).
//! - Items DynamoDB leaves unprocessed (throttling) are retried with backoff.
//! - A batch DynamoDB refuses as a whole with a ValidationException is split in halves until
//!   the refused items are alone: those are [`Written::Refused`] with DynamoDB's message (for
//!   the DLQ), the others are written. Key-size and number limits are checked before writing
//!   (`lambdaless_contracts::limits`), so this path catches what those checks cannot know.
//! - Any other error is retried; items still unwritten after the attempts are
//!   [`Written::Failed`] (the caller leaves their messages queued).

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_sdk_dynamodb::Client as DynamoDb;

use crate::aws;

/// Attempts per (sub-)batch at writing what is still unprocessed.
pub const WRITE_ATTEMPTS: u32 = 6;
/// BatchWriteItem's limit.
pub const MAX_BATCH_ITEMS: usize = 25;

pub type Item = HashMap<String, AttributeValue>;

/// What became of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    Stored,
    /// DynamoDB refuses the item itself; the text is its message.
    Refused(String),
    /// Not written after every attempt (throttled, unreachable).
    Failed(String),
}

/// Why a BatchWriteItem call failed.
#[derive(Debug, Clone)]
pub enum WriteError {
    /// The request is invalid (some item in it): retrying it unchanged cannot help.
    Validation(String),
    /// Anything else: worth retrying.
    Other(String),
}

/// One BatchWriteItem call on one table: the unprocessed requests, or the error.
pub trait BatchWriter: Send + Sync {
    fn write(
        &self,
        table: &str,
        requests: Vec<WriteRequest>,
    ) -> impl Future<Output = Result<Vec<WriteRequest>, WriteError>> + Send;
}

impl BatchWriter for DynamoDb {
    async fn write(
        &self,
        table: &str,
        requests: Vec<WriteRequest>,
    ) -> Result<Vec<WriteRequest>, WriteError> {
        match self
            .batch_write_item()
            .request_items(table, requests)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .unprocessed_items
                .and_then(|mut m| m.remove(table))
                .unwrap_or_default()),
            Err(e) => {
                let text = aws::describe(&e);
                if e.code() == Some("ValidationException") {
                    Err(WriteError::Validation(
                        e.message().map(str::to_owned).unwrap_or(text),
                    ))
                } else {
                    Err(WriteError::Other(text))
                }
            }
        }
    }
}

/// Writes `items` (any number) to `table`; `key` names the key attributes. Returns one
/// [`Written`] per item, in order.
pub async fn write_items<W: BatchWriter>(
    writer: &W,
    table: &str,
    key: &[&str],
    items: &[Item],
    backoff: Duration,
) -> Vec<Written> {
    // The first item with each key is written; later copies share its fate.
    let mut first: HashMap<Vec<String>, usize> = HashMap::new();
    let mut copy_of: Vec<usize> = Vec::with_capacity(items.len());
    let mut unique = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let k = key_values(item, key);
        let j = *first.entry(k).or_insert_with(|| {
            unique.push(i);
            i
        });
        copy_of.push(j);
    }
    let mut results: HashMap<usize, Written> = HashMap::new();
    for chunk in unique.chunks(MAX_BATCH_ITEMS) {
        write_bisecting(
            writer,
            table,
            key,
            items,
            chunk.to_vec(),
            backoff,
            &mut results,
        )
        .await;
    }
    copy_of
        .iter()
        .map(|j| {
            results
                .get(j)
                .cloned()
                .unwrap_or_else(|| Written::Failed("not written".to_owned()))
        })
        .collect()
}

fn key_values(item: &Item, key: &[&str]) -> Vec<String> {
    key.iter()
        .map(|k| match item.get(*k) {
            Some(AttributeValue::S(s)) | Some(AttributeValue::N(s)) => s.clone(),
            Some(other) => format!("{other:?}"),
            None => String::new(),
        })
        .collect()
}

fn request(item: &Item) -> WriteRequest {
    let put = PutRequest::builder()
        .set_item(Some(item.clone()))
        .build()
        .expect("item is set");
    WriteRequest::builder().put_request(put).build()
}

/// Writes the items at `indexes`, splitting on a ValidationException.
async fn write_bisecting<W: BatchWriter>(
    writer: &W,
    table: &str,
    key: &[&str],
    items: &[Item],
    indexes: Vec<usize>,
    backoff: Duration,
    results: &mut HashMap<usize, Written>,
) {
    // Sub-batches still to write; split ones are pushed back (depth-first, so at most
    // log2(25) levels of pending halves).
    let mut pending = vec![indexes];
    while let Some(batch) = pending.pop() {
        match write_with_retries(writer, table, key, items, &batch, backoff).await {
            Ok(unwritten) => {
                for i in batch {
                    let outcome = match unwritten.get(&i) {
                        Some(error) => Written::Failed(error.clone()),
                        None => Written::Stored,
                    };
                    results.insert(i, outcome);
                }
            }
            Err(reason) if batch.len() == 1 => {
                tracing::warn!(%reason, "DynamoDB refuses an item");
                results.insert(batch[0], Written::Refused(reason));
            }
            Err(reason) => {
                tracing::info!(%reason, items = batch.len(), "DynamoDB refuses the batch; splitting it to find the refused items");
                let (a, b) = batch.split_at(batch.len() / 2);
                pending.push(b.to_vec());
                pending.push(a.to_vec());
            }
        }
    }
}

/// One sub-batch with retries of unprocessed items and transient errors. `Ok` maps the
/// indexes still unwritten after every attempt to the last error; `Err` is a
/// ValidationException for the batch as it stood.
async fn write_with_retries<W: BatchWriter>(
    writer: &W,
    table: &str,
    key: &[&str],
    items: &[Item],
    batch: &[usize],
    backoff: Duration,
) -> Result<HashMap<usize, String>, String> {
    let by_key: HashMap<Vec<String>, usize> = batch
        .iter()
        .map(|&i| (key_values(&items[i], key), i))
        .collect();
    let mut remaining: Vec<usize> = batch.to_vec();
    let mut last_error = String::from("left unprocessed by DynamoDB");
    for attempt in 1..=WRITE_ATTEMPTS {
        let requests = remaining.iter().map(|&i| request(&items[i])).collect();
        match writer.write(table, requests).await {
            Ok(unprocessed) => {
                remaining = unprocessed
                    .iter()
                    .filter_map(|w| {
                        let item = &w.put_request.as_ref()?.item;
                        by_key.get(&key_values(item, key)).copied()
                    })
                    .collect();
                last_error = String::from("left unprocessed by DynamoDB");
            }
            Err(WriteError::Validation(reason)) => return Err(reason),
            Err(WriteError::Other(error)) => {
                tracing::warn!(%error, attempt, "BatchWriteItem failed");
                last_error = error;
            }
        }
        if remaining.is_empty() {
            return Ok(HashMap::new());
        }
        if attempt < WRITE_ATTEMPTS {
            tokio::time::sleep(backoff * 2u32.pow(attempt)).await;
        }
    }
    Ok(remaining
        .into_iter()
        .map(|i| (i, last_error.clone()))
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Refuses any batch containing an item whose `bad` attribute is set, leaves the item
    /// keyed `slow` unprocessed on its first write, and fails the first `fail_first` calls.
    #[derive(Default)]
    struct Fake {
        calls: Mutex<Vec<usize>>,
        stored: Mutex<Vec<String>>,
        slow_seen: Mutex<bool>,
        fail_first: Mutex<u32>,
    }

    impl BatchWriter for Fake {
        async fn write(
            &self,
            _table: &str,
            requests: Vec<WriteRequest>,
        ) -> Result<Vec<WriteRequest>, WriteError> {
            self.calls.lock().unwrap().push(requests.len());
            {
                let mut fail = self.fail_first.lock().unwrap();
                if *fail > 0 {
                    *fail -= 1;
                    return Err(WriteError::Other("throttled".into()));
                }
            }
            let item = |w: &WriteRequest| w.put_request.clone().unwrap().item;
            if requests.iter().any(|w| item(w).contains_key("bad")) {
                return Err(WriteError::Validation("Number overflow".into()));
            }
            let mut unprocessed = Vec::new();
            for w in requests {
                let id = item(&w)["id"].as_s().unwrap().clone();
                let mut slow = self.slow_seen.lock().unwrap();
                if id == "slow" && !*slow {
                    *slow = true;
                    unprocessed.push(w);
                } else {
                    self.stored.lock().unwrap().push(id);
                }
            }
            Ok(unprocessed)
        }
    }

    fn item(id: &str, bad: bool) -> Item {
        let mut item = HashMap::from([("id".to_owned(), AttributeValue::S(id.to_owned()))]);
        if bad {
            item.insert("bad".to_owned(), AttributeValue::Bool(true));
        }
        item
    }

    #[tokio::test(start_paused = true)]
    async fn one_poison_item_is_isolated_and_the_rest_stored() {
        let fake = Fake::default();
        let items: Vec<Item> = (0..10).map(|i| item(&format!("m{i}"), i == 6)).collect();
        let out = write_items(&fake, "t", &["id"], &items, Duration::from_millis(1)).await;
        for (i, w) in out.iter().enumerate() {
            if i == 6 {
                assert_eq!(w, &Written::Refused("Number overflow".into()));
            } else {
                assert_eq!(w, &Written::Stored, "item {i}");
            }
        }
        assert_eq!(fake.stored.lock().unwrap().len(), 9);
        // 10 → 5+5 → the clean half in one call; the poisoned half split down to one item.
        assert!(fake.calls.lock().unwrap().len() <= 8, "{:?}", fake.calls);
    }

    #[tokio::test(start_paused = true)]
    async fn two_poison_items_and_unprocessed_retries() {
        let fake = Fake::default();
        let mut items: Vec<Item> = (0..25)
            .map(|i| item(&format!("m{i}"), i == 0 || i == 24))
            .collect();
        items.push(item("slow", false));
        items.push(item("m3", false)); // a duplicate key: written once, same outcome
        let out = write_items(&fake, "t", &["id"], &items, Duration::from_millis(1)).await;
        assert!(matches!(out[0], Written::Refused(_)));
        assert!(matches!(out[24], Written::Refused(_)));
        assert_eq!(out[25], Written::Stored, "the unprocessed item was retried");
        assert_eq!(out[26], Written::Stored);
        assert_eq!(out.iter().filter(|w| **w == Written::Stored).count(), 25);
        let stored = fake.stored.lock().unwrap();
        assert_eq!(stored.iter().filter(|s| *s == "m3").count(), 1);
    }

    /// Writes one good item through a writer whose first `failures` calls fail.
    async fn write_after_failures(failures: u32) -> Vec<Written> {
        let fake = Fake {
            fail_first: Mutex::new(failures),
            ..Fake::default()
        };
        let items = [item("a", false)];
        write_items(&fake, "t", &["id"], &items, Duration::from_millis(1)).await
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_then_reported() {
        assert_eq!(write_after_failures(2).await, vec![Written::Stored]);
        assert_eq!(
            write_after_failures(100).await,
            vec![Written::Failed("throttled".into())]
        );
    }
}
