//! `lambdaless bench ...`: each benchmark times a feature and, in the same
//! run, the raw emulator calls that feature cannot do without, and prints a
//! markdown table with the ratio. Run them against a running stack (the
//! standard `AWS_*` variables point at its emulator).
//!
//! `devices` provisions its own resources under a fresh `bench{random}-`
//! prefix and runs mover's `devices::Pipeline` in process; `broker` starts
//! its two brokers itself; the others measure the running stack.

pub mod all;
mod broker;
pub mod devices;
mod fetch;
mod graphql;
mod http;
mod load;
pub mod mqtt_get;
pub mod report;
mod stream;
mod users;

use std::time::Duration;

use lambdaless_contracts::Names;

/// Where api-gateway answers, and with which key.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayArgs {
    #[arg(
        long = "api-url",
        env = "LAMBDALESS_API_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    #[arg(long, env = "LAMBDALESS_API_KEY", default_value = "local-dev-key")]
    pub api_key: String,
}

#[derive(clap::Subcommand)]
pub enum Bench {
    /// Every benchmark against the running stack; writes docs/benchmarks.md and its charts.
    All(all::Options),
    /// Our broker vs Mosquitto (both started here on loopback), same clients.
    Broker {
        /// Our broker binary (default: `broker` next to this executable).
        #[arg(long)]
        broker_bin: Option<std::path::PathBuf>,
        #[arg(long, default_value = "mosquitto")]
        mosquitto_bin: String,
        #[arg(long, default_value_t = 2000)]
        round_trips: usize,
        #[arg(long, default_value_t = 20_000)]
        messages: usize,
        /// Also measure a broker already listening on this loopback port.
        #[arg(long)]
        also_port: Option<u16>,
        /// Python with paho-mqtt (default: $LAMBDALESS_PAHO_PYTHON, else the
        /// venv scripts/install-deps.sh makes under the cache directory).
        #[arg(long)]
        paho_python: Option<std::path::PathBuf>,
    },
    /// A sustained mixed load (users, GraphQL, MQTT, device messages, fetches,
    /// a stream) with progress; fails on any error or lost message.
    Load {
        #[command(flatten)]
        gateway: GatewayArgs,
        #[command(flatten)]
        mqtt: lambdaless_client::device::MqttArgs,
        #[arg(
            long,
            env = "LAMBDALESS_STREAMER_URL",
            default_value = "http://127.0.0.1:8081"
        )]
        streamer_url: String,
        /// Seconds of load.
        #[arg(long, default_value_t = 60)]
        duration: u64,
    },
    /// POST /users and GET /users/{id} vs raw SendMessage and GetItem.
    Users {
        #[command(flatten)]
        gateway: GatewayArgs,
        #[arg(long, default_value_t = 300)]
        samples: usize,
    },
    /// Cached product query under wrk; uncached orders(customerId) calls and latency.
    Graphql {
        #[command(flatten)]
        gateway: GatewayArgs,
        #[arg(long, default_value = "wrk")]
        wrk: String,
        /// Where wrk sends its load (default: --api-url).
        #[arg(long)]
        wrk_url: Option<String>,
        /// Seconds of each wrk run.
        #[arg(long = "duration", default_value_t = 10)]
        duration_s: u64,
        #[arg(long, default_value_t = 8)]
        connections: u32,
        /// Customers (10 orders × 3 items each) queried uncached.
        #[arg(long, default_value_t = 30)]
        customers: usize,
    },
    /// mover's devices pipeline vs the raw batch loop vs one-at-a-time.
    Devices {
        #[command(flatten)]
        mqtt: lambdaless_client::device::MqttArgs,
        #[arg(long, default_value_t = 5000)]
        messages: usize,
        /// Messages the one-at-a-time side drains (from a queue that deep).
        #[arg(long, default_value_t = 500)]
        single: usize,
        #[arg(long, default_value_t = 2)]
        pollers: usize,
    },
    /// mqtt-api `get` round trip vs a raw GetItem.
    MqttGet {
        #[command(flatten)]
        mqtt: lambdaless_client::device::MqttArgs,
        #[arg(long, default_value_t = 500)]
        samples: usize,
    },
    /// Fetch round trip through fetch-responder vs the raw call chain
    /// (send, receive, delete, GetItem, send, receive, delete).
    Fetch {
        #[arg(long, default_value_t = 200)]
        rounds: usize,
        /// Reply-queue user (created if missing).
        #[arg(long, default_value = "bench")]
        user: String,
    },
    /// Streamer time to first byte, throughput, and peak memory vs raw Scan calls.
    Stream {
        #[arg(
            long,
            env = "LAMBDALESS_STREAMER_URL",
            default_value = "http://127.0.0.1:8081"
        )]
        url: String,
        #[arg(long, env = "LAMBDALESS_API_KEY", default_value = "local-dev-key")]
        api_key: String,
        /// PID of a streamer running on this host, for its peak RSS (VmHWM).
        #[arg(long)]
        pid: Option<u32>,
        /// Items of the small and the large run.
        #[arg(long, default_value_t = 2000)]
        small: u64,
        #[arg(long, default_value_t = 50_000)]
        large: u64,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
}

impl Bench {
    pub async fn run(self, names: Names) -> anyhow::Result<()> {
        let aws = lambdaless_runtime::aws::load().await;
        let section = match self {
            Self::All(options) => return all::run(aws, names, options).await,
            Self::Broker {
                broker_bin,
                mosquitto_bin,
                round_trips,
                messages,
                also_port,
                paho_python,
            } => {
                broker::run(broker::Options {
                    broker_bin,
                    mosquitto_bin,
                    round_trips,
                    messages,
                    also_port,
                    paho_python,
                })
                .await?
            }
            Self::Load {
                gateway,
                mqtt,
                streamer_url,
                duration,
            } => {
                load::run(
                    aws,
                    names,
                    load::Options {
                        url: gateway.url,
                        streamer_url,
                        api_key: gateway.api_key,
                        mqtt,
                        duration: Duration::from_secs(duration),
                    },
                )
                .await?
            }
            Self::Users { gateway, samples } => {
                users::run(
                    aws,
                    names,
                    users::Options {
                        url: gateway.url,
                        api_key: gateway.api_key,
                        samples,
                    },
                )
                .await?
            }
            Self::Graphql {
                gateway,
                wrk,
                wrk_url,
                duration_s,
                connections,
                customers,
            } => {
                graphql::run(
                    aws,
                    names,
                    graphql::Options {
                        url: gateway.url,
                        api_key: gateway.api_key,
                        wrk,
                        wrk_url,
                        duration_s,
                        connections,
                        customers,
                    },
                )
                .await?
            }
            Self::Devices {
                mqtt,
                messages,
                single,
                pollers,
            } => devices::run(&mqtt, messages, single, pollers).await?,
            Self::MqttGet { mqtt, samples } => mqtt_get::run(&mqtt, &names, samples).await?,
            Self::Fetch { rounds, user } => fetch::run(aws, names, rounds, &user).await?,
            Self::Stream {
                url,
                api_key,
                pid,
                small,
                large,
                rounds,
            } => {
                stream::run(
                    aws,
                    names,
                    stream::Options {
                        url,
                        api_key,
                        pid,
                        small,
                        large,
                        rounds,
                    },
                )
                .await?
            }
        };
        section.print();
        Ok(())
    }
}

/// A fresh prefix with everything provisioned under it.
pub async fn fresh_names(aws: &lambdaless_runtime::aws::AwsClients) -> anyhow::Result<Names> {
    let prefix = format!("bench{}-", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let names = Names::new(prefix)?;
    let p = lambdaless_client::provision::Provisioner::new(aws.clone(), names.clone());
    p.wait_until_reachable(Duration::from_secs(30)).await?;
    p.provision(&[]).await?;
    Ok(names)
}

/// The nearest-rank `q` quantile (0..=1) of `samples` (any order).
pub(crate) fn quantile(samples: &[Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let idx = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[idx]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_pick_the_nearest_rank() {
        let s: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(quantile(&s, 0.5), Duration::from_millis(51));
        assert_eq!(quantile(&s, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
