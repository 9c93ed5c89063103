//! Streamer benchmarks: time to first byte vs one raw Scan page, items/s vs a
//! raw sequential Scan loop, and the streamer's peak RSS (VmHWM of `--pid`)
//! after streaming a small and then a large `artists` table.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::Select;
use lambdaless_contracts::{names, Names};
use lambdaless_runtime::aws::{describe, AwsClients};

use super::{ms, quantile};
use crate::stream;

const PAGE: i32 = 200;

pub(super) struct Options {
    pub url: String,
    pub api_key: String,
    pub pid: Option<u32>,
    pub small: u64,
    pub large: u64,
    pub rounds: usize,
}

pub(super) async fn run(aws: AwsClients, names: Names, o: Options) -> anyhow::Result<()> {
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

    let t50 = quantile(&ttfb, 0.5);
    let r50 = quantile(&raw_first, 0.5);
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (our, raw) = (median(&mut ours_rate), median(&mut raw_rate));
    println!(
        "streamer, page_size {PAGE}, {} rounds on {} items\n",
        o.rounds, o.small
    );
    println!("| measure | streamer | raw | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| time to first item (p50) | {} | {} (one Scan page) | {:.2}× |",
        ms(t50),
        ms(r50),
        t50.as_secs_f64() / r50.as_secs_f64()
    );
    println!(
        "| items/s (median) | {our:.0} | {raw:.0} (sequential Scan loop) | {:.2}× |",
        our / raw
    );
    match (hwm_small, hwm_large) {
        (Some(s), Some(l)) => println!(
            "| peak RSS (VmHWM) after {} vs {large_items} items ({:.1} s) | {} KiB | {} KiB | {:.2}× |",
            o.small,
            large_total.as_secs_f64(),
            s,
            l,
            l as f64 / s as f64
        ),
        _ => println!(
            "| {large_items} items streamed in {:.1} s | (pass --pid for peak RSS) | | |",
            large_total.as_secs_f64()
        ),
    }
    Ok(())
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
