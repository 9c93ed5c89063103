//! `lambdaless bench ...`: each benchmark times a feature and, in the same
//! run, the raw emulator calls that feature cannot do without, and prints a
//! markdown table with the ratio. Run them against a running stack (the
//! standard `AWS_*` variables point at its emulator).
//!
//! `devices` and `mqtt-get` provision their own resources under a fresh
//! `bench{random}-` prefix and run the service code (mover's
//! `devices::Pipeline`, mqtt-api's `App`) in process, so only the AWS
//! endpoint and an MQTT broker need to be running.

pub mod devices;
mod fetch;
pub mod mqtt_get;
mod stream;

use std::time::Duration;

use lambdaless_contracts::Names;

#[derive(clap::Subcommand)]
pub enum Bench {
    /// mover's devices pipeline vs the raw batch loop vs one-at-a-time.
    Devices {
        #[command(flatten)]
        mqtt: crate::device::MqttArgs,
        #[arg(long, default_value_t = 5000)]
        messages: usize,
        #[arg(long, default_value_t = 2)]
        pollers: usize,
    },
    /// mqtt-api `get` round trip vs a raw GetItem.
    MqttGet {
        #[command(flatten)]
        mqtt: crate::device::MqttArgs,
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
        match self {
            Self::Devices {
                mqtt,
                messages,
                pollers,
            } => devices::run(&mqtt, messages, pollers).await,
            Self::MqttGet { mqtt, samples } => mqtt_get::run(&mqtt, samples).await,
            Self::Fetch { rounds, user } => fetch::run(aws, names, rounds, &user).await,
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
                .await
            }
        }
    }
}

/// A fresh prefix with everything provisioned under it.
pub async fn fresh_names(aws: &lambdaless_runtime::aws::AwsClients) -> anyhow::Result<Names> {
    let prefix = format!("bench{}-", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let names = Names::new(prefix)?;
    let p = crate::provision::Provisioner::new(aws.clone(), names.clone());
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

/// Milliseconds with two decimals and no unit, for tables whose header says ms.
pub(crate) fn ms_plain(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
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
