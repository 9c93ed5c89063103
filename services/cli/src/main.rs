//! `lambdaless`: provision resources and talk to a running stack.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use lambdaless_cli::provision::Provisioner;
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
    /// Seed 2 device messages: send, query, get, next, delete, watch (waits for answers).
    Device(cli_device::DeviceArgs),
    /// Benchmarks of seed 2 (devices, mqtt-get) against raw emulator calls.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// mover's devices pipeline vs the raw batch loop vs one-at-a-time.
    Devices {
        #[command(flatten)]
        mqtt: lambdaless_cli::device::MqttArgs,
        #[arg(long, default_value_t = 5000)]
        messages: usize,
        #[arg(long, default_value_t = 2)]
        pollers: usize,
    },
    /// mqtt-api `get` round trip vs a raw GetItem.
    MqttGet {
        #[command(flatten)]
        mqtt: lambdaless_cli::device::MqttArgs,
        #[arg(long, default_value_t = 500)]
        samples: usize,
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
            Command::Device(args) => cli_device::run(args, names).await,
            Command::Bench(BenchCommand::Devices {
                mqtt,
                messages,
                pollers,
            }) => lambdaless_cli::bench::devices::run(&mqtt, messages, pollers).await,
            Command::Bench(BenchCommand::MqttGet { mqtt, samples }) => {
                lambdaless_cli::bench::mqtt_get::run(&mqtt, samples).await
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
