//! `lambdaless`: provision resources and talk to a running stack.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use lambdaless_client::provision::Provisioner;
use lambdaless_contracts::Names;

mod cli_device;

#[derive(Parser)]
#[command(
    name = "lambdaless",
    version,
    about = "Self-hosted AWS serverless patterns: provision, seed, query, bench"
)]
struct Cli {
    /// Prefix of every queue and table name (for sharing one AWS account).
    #[arg(long, global = true, env = "LAMBDALESS_PREFIX", default_value = "")]
    prefix: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create every queue (with DLQ and redrive policy) and table (with GSIs); safe to repeat.
    Provision {
        /// Wait up to this many seconds for the AWS endpoint to answer first.
        #[arg(long, default_value_t = 30)]
        wait: u64,
        /// Also create the reply queue `user-queue-ID` of this user (repeatable).
        #[arg(long = "user", value_name = "ID")]
        users: Vec<String>,
    },
    /// Fetch a document through the user's reply queue (seed 1) and print it as JSON.
    Fetch {
        /// The document id (`documents.id`).
        id: String,
        /// The user whose reply queue `user-queue-USER` receives the answer.
        #[arg(long)]
        user: String,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// Stream a table from the streamer as NDJSON on stdout, with a live count on stderr.
    Stream {
        /// Logical table name (e.g. artists).
        table: String,
        #[arg(long, value_parser = ["scan", "query"], default_value = "scan")]
        mode: String,
        /// Hash key value (mode query).
        #[arg(long)]
        pk: Option<String>,
        /// Parallel scan segments (mode scan).
        #[arg(long)]
        segments: Option<u32>,
        #[arg(long)]
        page_size: Option<u32>,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Write N generated artists through the streamer's `POST /dump`.
    Dump {
        #[arg(long, default_value_t = 2000)]
        count: u64,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Seed 2 device messages: send, query, get, next, delete, watch (waits for answers).
    Device(cli_device::DeviceArgs),
    /// Load demo data.
    Seed {
        #[command(subcommand)]
        what: SeedWhat,
    },
    /// Measure a feature against the raw emulator calls it needs, in the same run.
    #[command(subcommand)]
    Bench(lambdaless_bench::Bench),
}

/// Where the streamer listens and how to authenticate.
#[derive(clap::Args)]
struct HttpArgs {
    #[arg(
        long,
        env = "LAMBDALESS_STREAMER_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    url: String,
    #[arg(long, env = "LAMBDALESS_API_KEY", default_value = "local-dev-key")]
    api_key: String,
}

#[derive(Subcommand)]
enum SeedWhat {
    /// Customers, products, orders and order items for the GraphQL API (seed 3),
    /// including the sample row: order 52 / orderRef 123123 / customer 4567 / notebook_red.
    Orders {
        #[arg(long, default_value_t = 100)]
        customers: usize,
        #[arg(long, default_value_t = 50)]
        products: usize,
        #[arg(long, default_value_t = 1000)]
        orders: usize,
        #[arg(long, default_value_t = 3)]
        items_per_order: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let names = match Names::new(cli.prefix.clone()) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("lambdaless: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Provision { wait, users } => provision(names, wait, users).await,
            Command::Fetch { id, user, timeout } => fetch(names, id, user, timeout).await,
            Command::Stream {
                table,
                mode,
                pk,
                segments,
                page_size,
                http,
            } => {
                let mut query = vec![format!("mode={mode}")];
                query.extend(pk.map(|v| format!("pk={}", lambdaless_client::stream::encode(&v))));
                query.extend(segments.map(|v| format!("segments={v}")));
                query.extend(page_size.map(|v| format!("page_size={v}")));
                let path = format!("/stream/{table}?{}", query.join("&"));
                stream(&http.url, &path, &http.api_key).await
            }
            Command::Dump { count, http } => dump(&http.url, count, &http.api_key).await,
            Command::Bench(bench) => bench.run(names).await,
            Command::Device(args) => cli_device::run(args, names).await,
            Command::Seed {
                what:
                    SeedWhat::Orders {
                        customers,
                        products,
                        orders,
                        items_per_order,
                    },
            } => {
                let sizes = lambdaless_client::seed::Sizes {
                    customers,
                    products,
                    orders,
                    items_per_order,
                };
                seed_orders(names, sizes).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lambdaless: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn provision(names: Names, wait: u64, users: Vec<String>) -> anyhow::Result<()> {
    let provisioner = Provisioner::new(lambdaless_runtime::aws::load().await, names);
    provisioner
        .wait_until_reachable(Duration::from_secs(wait))
        .await?;
    let report = provisioner.provision(&users).await?;
    for what in &report.created {
        println!("created   {what}");
    }
    for what in &report.updated {
        println!("updated   {what}");
    }
    println!(
        "provisioned: {} created, {} updated, {} already in place",
        report.created.len(),
        report.updated.len(),
        report.unchanged.len()
    );
    Ok(())
}

async fn fetch(names: Names, id: String, user: String, timeout: u64) -> anyhow::Result<()> {
    let sqs = lambdaless_runtime::aws::load().await.sqs;
    let client = lambdaless_client::fetch::FetchClient::new(sqs, names);
    let data = client
        .fetch(&id, &user, Duration::from_secs(timeout))
        .await?;
    println!("{}", serde_json::to_string_pretty(&data)?);
    Ok(())
}

async fn stream(url: &str, path: &str, api_key: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut response =
        lambdaless_client::stream::request(url, "GET", path, &[("x-api-key", api_key)]).await?;
    if response.status != 200 {
        let status = response.status;
        anyhow::bail!("streamer answered {status}: {}", response.text().await?);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let started = std::time::Instant::now();
    let mut count: u64 = 0;
    while let Some(line) = response.next_line().await? {
        if line.starts_with("{\"error\"") {
            out.flush()?;
            eprintln!();
            anyhow::bail!("stream ended with an error after {count} items: {line}");
        }
        writeln!(out, "{line}")?;
        count += 1;
        if count.is_multiple_of(500) {
            out.flush()?;
            eprint!("\r{count} items");
        }
    }
    out.flush()?;
    eprintln!(
        "\r{count} items in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn dump(url: &str, count: u64, api_key: &str) -> anyhow::Result<()> {
    let response = lambdaless_client::stream::request(
        url,
        "POST",
        &format!("/dump?count={count}"),
        &[("x-api-key", api_key)],
    )
    .await?;
    let status = response.status;
    let body = response.text().await?;
    anyhow::ensure!(status == 200, "streamer answered {status}: {body}");
    println!("{body}");
    Ok(())
}
async fn seed_orders(names: Names, sizes: lambdaless_client::seed::Sizes) -> anyhow::Result<()> {
    let aws = lambdaless_runtime::aws::load().await;
    let w = lambdaless_client::seed::seed_orders(&aws.dynamodb, &names, sizes, true).await?;
    println!(
        "seeded: {} customers, {} products, {} orders, {} order items (sample: order 52, customer 4567)",
        w.customers, w.products, w.orders, w.order_items
    );
    Ok(())
}
