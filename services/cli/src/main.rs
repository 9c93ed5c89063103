//! `lambdaless`: provision resources and talk to a running stack.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use lambdaless_cli::provision::Provisioner;
use lambdaless_contracts::Names;

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
    /// Load demo data.
    Seed {
        #[command(subcommand)]
        what: SeedWhat,
    },
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
            Command::Seed {
                what:
                    SeedWhat::Orders {
                        customers,
                        products,
                        orders,
                        items_per_order,
                    },
            } => {
                let sizes = lambdaless_cli::seed::Sizes {
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

async fn seed_orders(names: Names, sizes: lambdaless_cli::seed::Sizes) -> anyhow::Result<()> {
    let aws = lambdaless_runtime::aws::load().await;
    let w = lambdaless_cli::seed::seed_orders(&aws.dynamodb, &names, sizes, true).await?;
    println!(
        "seeded: {} customers, {} products, {} orders, {} order items (sample: order 52, customer 4567)",
        w.customers, w.products, w.orders, w.order_items
    );
    Ok(())
}
