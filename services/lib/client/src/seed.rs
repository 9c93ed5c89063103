//! `lambdaless seed orders`: a generated data set for the GraphQL orders API
//! (seed 3) of any size, always including the seed's sample row (order `52`,
//! orderRef `123123`, customer `4567`, product `notebook` named
//! `notebook_red` at 19.99). Writes with BatchWriteItem (25 items a call,
//! UnprocessedItems retried with backoff) and draws a progress bar on stderr.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_sdk_dynamodb::Client as DynamoDb;
use lambdaless_contracts::{names, Names};
use lambdaless_runtime::aws;

type Item = HashMap<String, AttributeValue>;

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("BatchWriteItem on {table} failed: {reason}")]
    Write { table: String, reason: String },
    #[error("{table}: items still unprocessed after {attempts} attempts")]
    Unprocessed { table: String, attempts: u32 },
}

/// Sizes of the generated data set (the sample row comes on top).
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub customers: usize,
    pub products: usize,
    pub orders: usize,
    /// Items per generated order.
    pub items_per_order: usize,
}

/// What was written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub customers: usize,
    pub products: usize,
    pub orders: usize,
    pub order_items: usize,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
fn item(pairs: Vec<(&str, AttributeValue)>) -> Item {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Every item of the data set, per logical table, deterministic for given sizes.
pub fn generate(sizes: Sizes) -> Vec<(&'static str, Vec<Item>)> {
    let customers_n = sizes.customers.max(1);
    let products_n = sizes.products.max(1);
    let mut customers = vec![item(vec![
        ("customerId", s("4567")),
        ("name", s("Jane Doe")),
        ("email", s("jane.doe@example.com")),
    ])];
    customers.extend((1..=sizes.customers).map(|i| {
        item(vec![
            ("customerId", s(format!("c{i}"))),
            ("name", s(format!("Customer {i}"))),
            ("email", s(format!("customer{i}@example.com"))),
        ])
    }));
    let mut products = vec![item(vec![
        ("productId", s("notebook")),
        ("productName", s("notebook_red")),
        ("price", n("19.99")),
    ])];
    products.extend((1..=sizes.products).map(|i| {
        let cents = 100 + (i * 7919) % 9900;
        item(vec![
            ("productId", s(format!("p{i}"))),
            ("productName", s(format!("product_{i}"))),
            ("price", n(format!("{}.{:02}", cents / 100, cents % 100))),
        ])
    }));
    let mut orders = vec![item(vec![
        ("orderId", s("52")),
        ("customerId", s("4567")),
        ("orderRef", n(123123)),
        ("createdAt", s("2019-09-01T12:00:00Z")),
    ])];
    let mut order_items = vec![item(vec![
        ("orderId", s("52")),
        ("orderItemId", s("1")),
        ("productId", s("notebook")),
        ("quantity", n(1)),
    ])];
    for i in 1..=sizes.orders {
        let order_id = format!("o{i}");
        orders.push(item(vec![
            ("orderId", s(order_id.clone())),
            ("customerId", s(format!("c{}", 1 + i % customers_n))),
            ("orderRef", n(100_000 + i)),
            ("createdAt", s("2024-01-01T00:00:00Z")),
        ]));
        for k in 1..=sizes.items_per_order {
            order_items.push(item(vec![
                ("orderId", s(order_id.clone())),
                ("orderItemId", s(k.to_string())),
                (
                    "productId",
                    s(format!("p{}", 1 + (i * 31 + k) % products_n)),
                ),
                ("quantity", n(1 + (i + k) % 5)),
            ]));
        }
    }
    if sizes.products == 0 {
        order_items.retain(|it| it.get("productId") == Some(&s("notebook")));
    }
    vec![
        (names::CUSTOMERS, customers),
        (names::PRODUCTS, products),
        (names::ORDERS, orders),
        (names::ORDER_ITEMS, order_items),
    ]
}

/// A one-line progress bar on stderr (only redrawn when the percentage moves).
struct Progress {
    total: usize,
    done: usize,
    shown: usize,
    started: Instant,
    enabled: bool,
}

impl Progress {
    fn advance(&mut self, by: usize) {
        self.done += by;
        let pct = self.done * 100 / self.total.max(1);
        if !self.enabled || (pct == self.shown && self.done < self.total) {
            return;
        }
        self.shown = pct;
        let filled = pct * 30 / 100;
        let rate = self.done as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        eprint!(
            "\r[{}{}] {pct:>3}% {}/{} items, {rate:.0}/s",
            "#".repeat(filled),
            "-".repeat(30 - filled),
            self.done,
            self.total
        );
        if self.done >= self.total {
            eprintln!();
        }
        let _ = std::io::stderr().flush();
    }
}

/// Writes the data set; `progress` draws the bar.
pub async fn seed_orders(
    db: &DynamoDb,
    names: &Names,
    sizes: Sizes,
    progress: bool,
) -> Result<Written, SeedError> {
    let data = generate(sizes);
    let total = data.iter().map(|(_, v)| v.len()).sum();
    let mut bar = Progress {
        total,
        done: 0,
        shown: usize::MAX,
        started: Instant::now(),
        enabled: progress,
    };
    let mut written = Written::default();
    for (table, items) in data {
        let physical = names.name(table);
        for chunk in items.chunks(25) {
            write_batch(db, &physical, chunk).await?;
            bar.advance(chunk.len());
        }
        match table {
            names::CUSTOMERS => written.customers = items.len(),
            names::PRODUCTS => written.products = items.len(),
            names::ORDERS => written.orders = items.len(),
            _ => written.order_items = items.len(),
        }
    }
    Ok(written)
}

/// Writes up to 25 items with BatchWriteItem, retrying unprocessed ones.
pub async fn write_batch(db: &DynamoDb, table: &str, items: &[Item]) -> Result<(), SeedError> {
    let mut requests: Vec<WriteRequest> = items
        .iter()
        .map(|i| {
            WriteRequest::builder()
                .put_request(
                    PutRequest::builder()
                        .set_item(Some(i.clone()))
                        .build()
                        .expect("item is set"),
                )
                .build()
        })
        .collect();
    let mut attempt = 0u32;
    while !requests.is_empty() {
        attempt += 1;
        let out = db
            .batch_write_item()
            .request_items(table, requests.clone())
            .send()
            .await
            .map_err(|e| SeedError::Write {
                table: table.to_owned(),
                reason: aws::describe(&e),
            })?;
        requests = out
            .unprocessed_items
            .and_then(|mut m| m.remove(table))
            .unwrap_or_default();
        if requests.is_empty() {
            break;
        }
        if attempt >= 8 {
            return Err(SeedError::Unprocessed {
                table: table.to_owned(),
                attempts: attempt,
            });
        }
        tokio::time::sleep(Duration::from_millis(25 * 2u64.pow(attempt))).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_set_has_the_sample_row_and_the_sizes() {
        let data = generate(Sizes {
            customers: 3,
            products: 4,
            orders: 10,
            items_per_order: 3,
        });
        let count = |t: &str| data.iter().find(|(n, _)| *n == t).unwrap().1.len();
        assert_eq!(count(names::CUSTOMERS), 4);
        assert_eq!(count(names::PRODUCTS), 5);
        assert_eq!(count(names::ORDERS), 11);
        assert_eq!(count(names::ORDER_ITEMS), 31);
        let orders = &data.iter().find(|(n, _)| *n == names::ORDERS).unwrap().1;
        let sample = &orders[0];
        assert_eq!(sample["orderId"], s("52"));
        assert_eq!(sample["orderRef"], n(123123));
        assert_eq!(sample["customerId"], s("4567"));
        let products = &data.iter().find(|(n, _)| *n == names::PRODUCTS).unwrap().1;
        assert_eq!(products[0]["productName"], s("notebook_red"));
        assert_eq!(products[0]["price"], n("19.99"));
    }
}
