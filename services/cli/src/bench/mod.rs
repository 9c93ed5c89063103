//! `lambdaless bench ...`: rerunnable measurements that compare our services
//! with the raw emulator calls measured in the same run, against the same
//! endpoint, printed as markdown tables.
//!
//! Each run provisions its own resources under a fresh `bench{random}-`
//! prefix and runs the service code (mover's `devices::Pipeline`, mqtt-api's
//! `App`) in process, so only the AWS endpoint (`AWS_ENDPOINT_URL`) and an
//! MQTT broker need to be running.

pub mod devices;
pub mod mqtt_get;

use std::time::Duration;

use lambdaless_contracts::Names;
use lambdaless_runtime::aws::AwsClients;

/// A fresh prefix with everything provisioned under it.
pub async fn fresh_names(aws: &AwsClients) -> anyhow::Result<Names> {
    let prefix = format!("bench{}-", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let names = Names::new(prefix)?;
    let p = crate::provision::Provisioner::new(aws.clone(), names.clone());
    p.wait_until_reachable(Duration::from_secs(30)).await?;
    p.provision(&[]).await?;
    Ok(names)
}

/// The value at quantile `q` (0..=1) of sorted samples.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}
