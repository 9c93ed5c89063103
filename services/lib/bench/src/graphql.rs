//! `bench graphql`: the GraphQL orders API.
//!
//! - A cached `product(productId)` query under load from `wrk` (Debian's
//!   package), against `GET /healthz` of the same server under the same load
//!   (the floor: HTTP and routing without GraphQL or auth).
//! - `orders(customerId)` for customers with 10 orders × 3 items each, every
//!   query uncached (a fresh customer each time, products of its own):
//!   emulator calls per query, read from the gateway's
//!   `dynamodb_calls_total`, and latency against the same three raw calls
//!   made by this process (index Query, items statement, products
//!   BatchGetItem).

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use lambdaless_contracts::schema::ORDERS_BY_CUSTOMER;
use lambdaless_contracts::{names, Names};
use lambdaless_runtime::aws::{describe, AwsClients};
use serde_json::{json, Value};

use super::http::Connection;
use super::quantile;
use super::report::{Measure, Row, Section};

pub(crate) struct Options {
    pub(crate) url: String,
    pub(crate) api_key: String,
    pub(crate) wrk: String,
    /// Where wrk sends its load, when not `url` (e.g. the container's own
    /// address, to keep Docker's userland port proxy out of the measurement).
    pub(crate) wrk_url: Option<String>,
    pub(crate) duration_s: u64,
    pub(crate) connections: u32,
    pub(crate) customers: usize,
}

type Item = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

async fn put_all(aws: &AwsClients, table: &str, items: Vec<Item>) -> anyhow::Result<()> {
    for chunk in items.chunks(25) {
        lambdaless_client::seed::write_batch(&aws.dynamodb, table, chunk).await?;
    }
    Ok(())
}

/// wrk's figures.
struct Load {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
}

fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (num, scale) = if let Some(v) = text.strip_suffix("us") {
        (v, 1e-6)
    } else if let Some(v) = text.strip_suffix("ms") {
        (v, 1e-3)
    } else if let Some(v) = text.strip_suffix('s') {
        (v, 1.0)
    } else {
        return None;
    };
    num.parse::<f64>()
        .ok()
        .map(|v| Duration::from_secs_f64(v * scale))
}

/// Reads `wrk --latency` output.
fn parse_wrk(out: &str) -> anyhow::Result<Load> {
    let mut load = Load {
        per_second: 0.0,
        p50: Duration::ZERO,
        p99: Duration::ZERO,
        errors: 0,
    };
    for line in out.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("Requests/sec:"), Some(v)) => load.per_second = v.parse()?,
            (Some("50%"), Some(v)) => load.p50 = parse_duration(v).unwrap_or_default(),
            (Some("99%"), Some(v)) => load.p99 = parse_duration(v).unwrap_or_default(),
            (Some("Non-2xx"), _) => {
                load.errors += line
                    .rsplit(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1)
            }
            (Some("Socket"), Some("errors:")) => {
                // "Socket errors: connect 0, read 0, write 0, timeout 0"
                load.errors += line
                    .split(',')
                    .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    anyhow::ensure!(
        load.per_second > 0.0,
        "no Requests/sec in wrk's output:\n{out}"
    );
    Ok(load)
}

fn wrk(o: &Options, path: &str, script: Option<&std::path::Path>) -> anyhow::Result<Load> {
    let mut cmd = Command::new(&o.wrk);
    cmd.args(["-t2", "--latency"])
        .arg(format!("-c{}", o.connections))
        .arg(format!("-d{}s", o.duration_s));
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    let base = o.wrk_url.as_deref().unwrap_or(&o.url);
    cmd.arg(format!("{}{path}", base.trim_end_matches('/')));
    let out = cmd
        .output()
        .map_err(|e| anyhow::anyhow!("running {} (apt-get install wrk): {e}", o.wrk))?;
    anyhow::ensure!(
        out.status.success(),
        "wrk failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_wrk(&String::from_utf8_lossy(&out.stdout))
}

fn lua_string(s: &str) -> String {
    format!("{s:?}")
}

async fn calls(http: &mut Connection) -> anyhow::Result<f64> {
    let reply = http.send("GET", "/metrics", b"").await?;
    let text = String::from_utf8_lossy(&reply.body);
    Ok(text
        .lines()
        .filter(|l| l.starts_with("dynamodb_calls_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

pub(crate) async fn run(aws: AwsClients, names: Names, o: Options) -> anyhow::Result<Section> {
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let mut http = Connection::open(&o.url, &[("x-api-key", &o.api_key)]).await?;

    // 1. Cached product under wrk.
    let product = format!("bench-{run_id}-notebook");
    put_all(
        &aws,
        &names.name(names::PRODUCTS),
        vec![HashMap::from([
            ("productId".to_owned(), s(&product)),
            ("productName".to_owned(), s("notebook_red")),
            ("price".to_owned(), AttributeValue::N("19.99".into())),
        ])],
    )
    .await?;
    let query = json!({ "query": format!("{{ product(productId: \"{product}\") {{ productId productName price }} }}") })
        .to_string();
    let first = http.send("POST", "/graphql", query.as_bytes()).await?;
    let v: Value = serde_json::from_slice(&first.body)?;
    anyhow::ensure!(
        v["data"]["product"]["price"] == 19.99,
        "unexpected answer: {v}"
    );
    let dir = std::env::temp_dir().join(format!("lambdaless-wrk-{run_id}"));
    std::fs::create_dir_all(&dir)?;
    let script = dir.join("product.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = {}\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"x-api-key\"] = {}\n",
            lua_string(&query),
            lua_string(&o.api_key)
        ),
    )?;
    let cached = wrk(&o, "/graphql", Some(&script));
    let floor = wrk(&o, "/healthz", None);
    let _ = std::fs::remove_dir_all(&dir);
    let (cached, floor) = (cached?, floor?);

    // 2. orders(customerId), uncached.
    let customers: Vec<String> = (0..o.customers)
        .map(|c| format!("bench-{run_id}-c{c}"))
        .collect();
    let (mut orders, mut items, mut products) = (Vec::new(), Vec::new(), Vec::new());
    for c in &customers {
        for p in 0..3 {
            products.push(HashMap::from([
                ("productId".to_owned(), s(format!("{c}-p{p}"))),
                ("productName".to_owned(), s(format!("product {p}"))),
                (
                    "price".to_owned(),
                    AttributeValue::N(format!("{}.50", p + 1)),
                ),
            ]));
        }
        for n in 0..10 {
            let order_id = format!("{c}-o{n}");
            orders.push(HashMap::from([
                ("orderId".to_owned(), s(&order_id)),
                ("customerId".to_owned(), s(c)),
                ("orderRef".to_owned(), AttributeValue::N(n.to_string())),
                ("createdAt".to_owned(), s("2024-01-01T00:00:00Z")),
            ]));
            for p in 0..3 {
                items.push(HashMap::from([
                    ("orderId".to_owned(), s(&order_id)),
                    ("orderItemId".to_owned(), s(p.to_string())),
                    ("productId".to_owned(), s(format!("{c}-p{p}"))),
                    ("quantity".to_owned(), AttributeValue::N("2".into())),
                ]));
            }
        }
    }
    put_all(&aws, &names.name(names::PRODUCTS), products).await?;
    put_all(&aws, &names.name(names::ORDERS), orders).await?;
    put_all(&aws, &names.name(names::ORDER_ITEMS), items).await?;

    let (mut api, mut raw, mut per_query) = (Vec::new(), Vec::new(), Vec::new());
    for c in &customers {
        let t = Instant::now();
        raw_chain(&aws, &names, c).await?;
        raw.push(t.elapsed());

        let before = calls(&mut http).await?;
        let body = json!({ "query": format!("{{ orders(customerId: \"{c}\") {{ orderId total items {{ quantity product {{ productName price }} }} }} }}") })
            .to_string();
        let t = Instant::now();
        let reply = http.send("POST", "/graphql", body.as_bytes()).await?;
        api.push(t.elapsed());
        per_query.push(calls(&mut http).await? - before);
        let v: Value = serde_json::from_slice(&reply.body)?;
        let got = v["data"]["orders"].as_array().map_or(0, Vec::len);
        anyhow::ensure!(got == 10, "orders({c}) returned {got} orders: {v}");
        // 2 × (1.50 + 2.50 + 3.50) = 15.00 per order.
        anyhow::ensure!(v["data"]["orders"][0]["total"] == 15.0, "wrong total: {v}");
    }
    let max_calls = per_query.iter().copied().fold(0.0, f64::max);

    let lat = |p50, p99| Measure::Latency { p50, p99 };
    Ok(Section {
        key: "graphql",
        title: "GraphQL orders API".to_owned(),
        command: format!(
            "lambdaless bench graphql --duration {} --connections {} --customers {}",
            o.duration_s, o.connections, o.customers
        ),
        baseline: "wrk on GET /healthz of the same server; for orders, the three raw calls the query needs".to_owned(),
        rows: vec![
            Row::new(
                format!("cached product(productId), wrk {} connections, {} s: requests/s", o.connections, o.duration_s),
                Measure::Rate(cached.per_second),
                Some(Measure::Rate(floor.per_second)),
                "≥ 10,000/s, zero errors",
            ),
            Row::new(
                "cached product(productId) latency under that load",
                lat(cached.p50, cached.p99),
                Some(lat(floor.p50, floor.p99)),
                "p99 ≤ 5 ms",
            ),
            Row::new(
                format!("orders(customerId), 10 orders × 3 items, uncached ({} customers)", o.customers),
                Measure::Latency {
                    p50: quantile(&api, 0.5),
                    p99: quantile(&api, 0.99),
                },
                Some(Measure::Latency {
                    p50: quantile(&raw, 0.5),
                    p99: quantile(&raw, 0.99),
                }),
                "",
            ),
            Row::new(
                "orders(customerId): emulator calls per query (most of any query) vs one Query per order",
                Measure::Count(max_calls),
                Some(Measure::Count(12.0)),
                "≤ 4",
            ),
        ],
        notes: vec![format!(
            "wrk (2 threads) at {}; errors (non-2xx and socket errors): product query {}, /healthz {}. \
             wrk and the gateway share this machine's 2 cores, so /healthz's own p99 shows the \
             scheduling floor.",
            o.wrk_url.as_deref().unwrap_or(&o.url),
            cached.errors,
            floor.errors
        )],
    })
}

/// What one uncached `orders(customerId)` needs at least: the index Query,
/// one statement for every order's items, one BatchGetItem for the products.
async fn raw_chain(aws: &AwsClients, names: &Names, customer: &str) -> anyhow::Result<()> {
    let orders = aws
        .dynamodb
        .query()
        .table_name(names.name(names::ORDERS))
        .index_name(ORDERS_BY_CUSTOMER)
        .key_condition_expression("customerId = :c")
        .expression_attribute_values(":c", s(customer))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(describe(&e)))?
        .items
        .unwrap_or_default();
    let ids: Vec<AttributeValue> = orders
        .iter()
        .filter_map(|o| o.get("orderId").cloned())
        .collect();
    let condition = vec!["\"orderId\" = ?"; ids.len()].join(" OR ");
    let items = aws
        .dynamodb
        .execute_statement()
        .statement(format!(
            "SELECT * FROM \"{}\" WHERE {condition}",
            names.name(names::ORDER_ITEMS)
        ))
        .set_parameters(Some(ids))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(describe(&e)))?
        .items
        .unwrap_or_default();
    let mut product_ids: Vec<String> = items
        .iter()
        .filter_map(|i| match i.get("productId") {
            Some(AttributeValue::S(p)) => Some(p.clone()),
            _ => None,
        })
        .collect();
    product_ids.sort();
    product_ids.dedup();
    let keys = product_ids
        .into_iter()
        .map(|p| HashMap::from([("productId".to_owned(), s(p))]))
        .collect();
    aws.dynamodb
        .batch_get_item()
        .request_items(
            names.name(names::PRODUCTS),
            KeysAndAttributes::builder().set_keys(Some(keys)).build()?,
        )
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(describe(&e)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "Running 5s test @ http://127.0.0.1:8080/graphql
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.10ms    1.01ms  20.11ms   90.00%
  Latency Distribution
     50%    1.93ms
     75%    2.40ms
     90%    3.00ms
     99%  650.00us
  52000 requests in 5.00s, 9.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:  10400.50
Transfer/sec:      1.80MB
";

    #[test]
    fn wrk_output_is_read() {
        let load = parse_wrk(OUT).unwrap();
        assert_eq!(load.per_second, 10400.5);
        assert_eq!(load.p50, Duration::from_micros(1930));
        assert_eq!(load.p99, Duration::from_micros(650));
        assert_eq!(load.errors, 10);
        assert!(parse_wrk("garbage").is_err());
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
    }
}
