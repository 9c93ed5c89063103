//! `bench all`: every benchmark against the running stack in one run, then
//! `docs/benchmarks.md` with the tables, the headline ratios and two SVG
//! charts, plus the memory of each service container. A benchmark that fails
//! is reported as failed in the document; the others still run.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use lambdaless_contracts::Names;
use lambdaless_runtime::aws::AwsClients;

use super::report::{self, Measure, Row, Section};
use super::GatewayArgs;
use lambdaless_client::device::MqttArgs;

#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    #[command(flatten)]
    gateway: GatewayArgs,
    #[command(flatten)]
    mqtt: MqttArgs,
    #[arg(
        long,
        env = "LAMBDALESS_STREAMER_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    streamer_url: String,
    /// Where the report and its charts are written.
    #[arg(long, default_value = "docs")]
    out: PathBuf,
    /// Docker Compose project of the stack (for memory and the streamer's PID).
    #[arg(long, default_value = "lambdaless")]
    project: String,
    /// Scale: 1 is the sizes; smaller values shorten every benchmark.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    #[arg(long, default_value = "wrk")]
    wrk: String,
    #[arg(long, default_value = "mosquitto")]
    mosquitto_bin: String,
    /// Only these benchmarks (comma-separated keys: broker,mqtt-get,mover,users,graphql,fetch,stream,load,memory).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

pub async fn run(aws: AwsClients, names: Names, o: Options) -> anyhow::Result<()> {
    let n = |base: usize| ((base as f64 * o.scale).round() as usize).max(1);
    let wanted = |key: &str| o.only.is_empty() || o.only.iter().any(|k| k == key);
    let started = Instant::now();
    let mut sections = Vec::new();
    let mut failed = Vec::new();
    let mut record = |key: &str, result: anyhow::Result<Section>| match result {
        Ok(s) => {
            s.print();
            sections.push(s);
        }
        Err(e) => {
            eprintln!("bench {key} failed: {e:#}");
            failed.push(format!("- `{key}` failed: {e:#}"));
        }
    };

    if wanted("broker") {
        eprintln!("== broker vs Mosquitto");
        record(
            "broker",
            super::broker::run(super::broker::Options {
                broker_bin: None,
                mosquitto_bin: o.mosquitto_bin.clone(),
                round_trips: n(2000),
                messages: n(20_000),
                also_port: None,
                paho_python: None,
            })
            .await,
        );
    }
    if wanted("mqtt-get") {
        eprintln!("== mqtt-api get");
        record(
            "mqtt-get",
            super::mqtt_get::run(&o.mqtt, &names, n(500)).await,
        );
    }
    if wanted("mover") {
        eprintln!("== mover devices pipeline");
        record(
            "mover",
            super::devices::run(&o.mqtt, n(5000), n(500), 2).await,
        );
    }
    if wanted("users") {
        eprintln!("== users API");
        record(
            "users",
            super::users::run(
                aws.clone(),
                names.clone(),
                super::users::Options {
                    url: o.gateway.url.clone(),
                    api_key: o.gateway.api_key.clone(),
                    samples: n(300),
                },
            )
            .await,
        );
    }
    if wanted("graphql") {
        eprintln!("== GraphQL");
        record(
            "graphql",
            super::graphql::run(
                aws.clone(),
                names.clone(),
                super::graphql::Options {
                    url: o.gateway.url.clone(),
                    api_key: o.gateway.api_key.clone(),
                    wrk: o.wrk.clone(),
                    wrk_url: container_ip(&o.project, "api-gateway")
                        .map(|ip| format!("http://{ip}:8080")),
                    duration_s: n(10) as u64,
                    connections: 8,
                    customers: n(30),
                },
            )
            .await,
        );
    }
    if wanted("fetch") {
        eprintln!("== fetch");
        record(
            "fetch",
            super::fetch::run(aws.clone(), names.clone(), n(200), "bench").await,
        );
    }
    if wanted("stream") {
        eprintln!("== streamer");
        let pid = container_pid(&o.project, "streamer");
        record(
            "stream",
            super::stream::run(
                aws.clone(),
                names.clone(),
                super::stream::Options {
                    url: o.streamer_url.clone(),
                    api_key: o.gateway.api_key.clone(),
                    pid,
                    small: n(2000) as u64,
                    large: n(20_000) as u64,
                    rounds: 3,
                },
            )
            .await,
        );
    }
    if wanted("load") {
        eprintln!("== sustained mixed load");
        record(
            "load",
            super::load::run(
                aws.clone(),
                names.clone(),
                super::load::Options {
                    url: o.gateway.url.clone(),
                    streamer_url: o.streamer_url.clone(),
                    api_key: o.gateway.api_key.clone(),
                    mqtt: o.mqtt.clone(),
                    duration: std::time::Duration::from_secs(n(60) as u64),
                },
            )
            .await,
        );
    }
    if wanted("memory") {
        record("memory", memory(&o.project));
    }

    let header = format!(
        "# lambdaless benchmarks\n\n\
         Generated by `lambdaless bench all{}` ({} s) against the Compose stack on this machine \
         (`scripts/bench.sh` starts it and runs this). Every lambdaless figure is paired with \
         its baseline measured in the same run — the raw emulator calls the feature cannot do \
         without, or Mosquitto for the broker — because absolute numbers on a shared 2-core \
         machine are noise; the ratios are the result. Latency ratios are lambdaless ÷ baseline \
         (lower is better); throughput ratios likewise lambdaless ÷ baseline (higher is better).\n\n{}",
        if o.scale == 1.0 {
            String::new()
        } else {
            format!(" --scale {}", o.scale)
        },
        started.elapsed().as_secs(),
        if failed.is_empty() {
            String::new()
        } else {
            format!("**Failed in this run:**\n\n{}\n\n", failed.join("\n"))
        }
    );
    let (md, charts) = report::document(&sections, &header);
    std::fs::create_dir_all(&o.out)?;
    std::fs::write(o.out.join("benchmarks.md"), md)?;
    for (name, svg) in charts {
        std::fs::write(o.out.join(name), svg)?;
    }
    eprintln!("wrote {}", o.out.join("benchmarks.md").display());
    anyhow::ensure!(failed.is_empty(), "{} benchmark(s) failed", failed.len());
    Ok(())
}

/// `docker inspect -f FORMAT` of the service's first Compose container.
fn inspect(project: &str, service: &str, format: &str) -> Option<String> {
    let out = Command::new("docker")
        .args(["inspect", "-f", format])
        .arg(format!("{project}_{service}_1"))
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The container's address on its Compose network (reachable from this
/// host without Docker's userland port proxy).
fn container_ip(project: &str, service: &str) -> Option<String> {
    let ips = inspect(
        project,
        service,
        "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
    )?;
    ips.split_whitespace().next().map(str::to_owned)
}

fn container_pid(project: &str, service: &str) -> Option<u32> {
    inspect(project, service, "{{.State.Pid}}")?
        .parse()
        .ok()
        .filter(|p| *p > 0)
}

/// Resident memory of each service container now (after the benchmarks).
fn memory(project: &str) -> anyhow::Result<Section> {
    let mut rows = Vec::new();
    for service in [
        "broker",
        "api-gateway",
        "mover",
        "mqtt-api",
        "fetch-responder",
        "streamer",
    ] {
        let Some(pid) = container_pid(project, service) else {
            continue;
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kib = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        rows.push(Row::new(
            format!("{service}: resident now (peak in the row's note)"),
            Measure::Bytes(kib("VmRSS:") * 1024),
            None,
            format!("≤ 30 MiB (peak {:.1} MiB)", kib("VmHWM:") as f64 / 1024.0),
        ));
    }
    anyhow::ensure!(
        !rows.is_empty(),
        "no containers of Compose project {project:?} found"
    );
    Ok(Section {
        key: "memory",
        title: "Memory per service".to_owned(),
        command: "lambdaless bench all --only memory".to_owned(),
        baseline: "none (absolute)".to_owned(),
        rows,
        notes: vec![
            "Read from /proc/PID/status of each container's process after the benchmarks ran."
                .to_owned(),
        ],
    })
}
