//! Streamer benchmarks: time to first byte vs one raw Scan page, items/s vs a
//! raw sequential Scan loop, and the streamer's peak RSS (VmHWM of `--pid`)
//! after streaming a small and then a large `artists` table.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::Select;
use lambdaless_contracts::{names, Names};
use lambdaless_runtime::aws::{describe, AwsClients};

use super::quantile;
use super::report::{Measure, Row, Section};
use lambdaless_client::stream;

const PAGE: i32 = 200;

pub(super) struct Options {
    pub url: String,
    pub api_key: String,
    pub pid: Option<u32>,
    pub small: u64,
    pub large: u64,
    pub rounds: usize,
}

pub(super) async fn run(aws: AwsClients, names: Names, o: Options) -> anyhow::Result<Section> {
    let table = names.name(names::ARTISTS);
    fill(&aws, &table, &o, o.small).await?;
    let mut ttfb = Vec::new();
    let mut raw_first = Vec::new();
    let mut ours_rate = Vec::new();
    let mut raw_rate = Vec::new();
    for _ in 0..o.rounds {
        let (first, total, items) = stream_all(&o).await?;
        ttfb.push(first);
        ours_rate.push(items as f64 / total.as_secs_f64());
        let (first, total, items) = raw_scan(&aws, &table).await?;
        raw_first.push(first);
        raw_rate.push(items as f64 / total.as_secs_f64());
    }
    let hwm_small = o.pid.map(vm_hwm_kib).transpose()?;
    fill(&aws, &table, &o, o.large).await?;
    let (_, large_total, large_items) = stream_all(&o).await?;
    let hwm_large = o.pid.map(vm_hwm_kib).transpose()?;

    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (our, raw) = (median(&mut ours_rate), median(&mut raw_rate));
    let latency = |v: &[Duration]| Measure::Latency {
        p50: quantile(v, 0.5),
        p99: quantile(v, 0.99),
    };
    let mut rows = vec![
        Row::new(
            "stream time to first item vs one raw Scan page",
            latency(&ttfb),
            Some(latency(&raw_first)),
            "≤ 1.2×",
        ),
        Row::new(
            format!(
                "items/s (median of {}) vs a sequential raw Scan loop",
                o.rounds
            ),
            Measure::Rate(our),
            Some(Measure::Rate(raw)),
            "≥ 0.9×",
        ),
    ];
    let mut notes = vec![format!(
        "{large_items} items streamed in {:.1} s.",
        large_total.as_secs_f64()
    )];
    match (hwm_small, hwm_large) {
        (Some(s), Some(l)) => rows.push(Row::new(
            format!(
                "streamer peak RSS after {large_items} items vs after {} items",
                o.small
            ),
            Measure::Bytes(l * 1024),
            Some(Measure::Bytes(s * 1024)),
            "≤ 1.2×",
        )),
        _ => notes.push(
            "Peak RSS not measured (pass --pid, or run `bench all` against the Compose stack)."
                .to_owned(),
        ),
    }
    Ok(Section {
        key: "stream",
        title: format!("Streamer, page_size {PAGE}, {} items", o.small),
        command: format!(
            "lambdaless bench stream --small {} --large {} --rounds {}",
            o.small, o.large, o.rounds
        ),
        baseline: "raw Scan calls from the benchmark process".to_owned(),
        rows,
        notes,
    })
}

/// Tops the artists table up to `target` items through `POST /dump`.
async fn fill(aws: &AwsClients, table: &str, o: &Options, target: u64) -> anyhow::Result<()> {
    let have = count(aws, table).await?;
    if have >= target {
        return Ok(());
    }
    let path = format!("/dump?count={}", target - have);
    let response = stream::request(&o.url, "POST", &path, &[("x-api-key", &o.api_key)]).await?;
    let status = response.status;
    let body = response.text().await?;
    anyhow::ensure!(status == 200, "dump answered {status}: {body}");
    eprintln!("dumped: {body}");
    Ok(())
}

async fn count(aws: &AwsClients, table: &str) -> anyhow::Result<u64> {
    let mut total = 0;
    let mut start = None;
    loop {
        let out = aws
            .dynamodb
            .scan()
            .table_name(table)
            .select(Select::Count)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(describe(&e)))?;
        total += out.count as u64;
        match out.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return Ok(total),
        }
    }
}

/// (time to first line, total time, lines).
async fn stream_all(o: &Options) -> anyhow::Result<(Duration, Duration, u64)> {
    let started = Instant::now();
    let path = format!("/stream/artists?page_size={PAGE}");
    let mut response = stream::request(&o.url, "GET", &path, &[("x-api-key", &o.api_key)]).await?;
    anyhow::ensure!(
        response.status == 200,
        "stream answered {}",
        response.status
    );
    let mut first = None;
    let mut n = 0;
    while let Some(line) = response.next_line().await? {
        first.get_or_insert_with(|| started.elapsed());
        anyhow::ensure!(!line.starts_with("{\"error\""), "stream failed: {line}");
        n += 1;
    }
    Ok((first.unwrap_or_default(), started.elapsed(), n))
}

/// The same reads done directly: (first page, whole loop, items).
async fn raw_scan(aws: &AwsClients, table: &str) -> anyhow::Result<(Duration, Duration, u64)> {
    let started = Instant::now();
    let mut first = None;
    let mut n = 0;
    let mut start = None;
    loop {
        let out = aws
            .dynamodb
            .scan()
            .table_name(table)
            .limit(PAGE)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(describe(&e)))?;
        first.get_or_insert_with(|| started.elapsed());
        n += out.items.map_or(0, |i| i.len() as u64);
        match out.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return Ok((first.unwrap_or_default(), started.elapsed(), n)),
        }
    }
}

/// Peak resident set size of a local process, in KiB.
fn vm_hwm_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/{pid}/status"))
}
