//! `fetch-responder`: answers seed 1's fetch requests. It reads `fetch-requests`,
//! looks the document up in `documents`, and replies on the requester's own
//! `user-queue-*` queue.
//!
//! Several pollers long-poll `fetch-requests` (see [`responder`]); requests
//! that are malformed or name a reply queue that is not ours are dead-lettered
//! with the reason, never answered ([`request`]).

/// The request and reply wire types live in `contracts`, shared with the client.
pub use lambdaless_contracts::fetch as request;
pub mod responder;

use lambdaless_contracts::names;
use lambdaless_runtime::aws;
use lambdaless_runtime::config::ConfigError;
use lambdaless_runtime::{Common, Readiness, Run, ServiceSettings, Started};
use serde::Deserialize;
use tokio_util::task::TaskTracker;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `log`, `admin_port`, `prefix`, `drain_timeout_secs` (the requests in
    /// hand on SIGTERM).
    #[serde(skip)]
    pub common: Common,
    /// Concurrent long polls on `fetch-requests` (each handles up to 10 at once).
    pub pollers: usize,
    /// Long-poll wait of each receive (0..=20 s).
    pub wait_secs: i32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            common: Common::worker(),
            pollers: 4,
            wait_secs: 20,
        }
    }
}

impl ServiceSettings for Settings {
    const SERVICE: &'static str = "fetch-responder";

    fn common_mut(&mut self) -> &mut Common {
        &mut self.common
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=64).contains(&self.pollers) {
            return Err(ConfigError::value("pollers", "must be between 1 and 64"));
        }
        if !(0..=20).contains(&self.wait_secs) {
            return Err(ConfigError::value("wait_secs", "must be between 0 and 20"));
        }
        Ok(())
    }
}

/// A built, not yet running, fetch-responder.
pub type App = lambdaless_runtime::App<Responder>;

/// The fetch-responder's own part: the pollers of [`Run::run`].
pub struct Responder;

impl Run for Responder {
    type Settings = Settings;

    /// Nothing to bind beyond the admin port: requests arrive over SQS.
    async fn prepare(_: &Settings) -> anyhow::Result<Self> {
        Ok(Responder)
    }

    /// Answers requests until `shutdown`, then finishes the ones in hand
    /// within the drain timeout.
    async fn run(self, started: Started<Settings>) -> anyhow::Result<()> {
        let (base, settings, shutdown) = started.into_parts();
        let (aws, names) = (base.aws().clone(), base.names()?);
        let readiness = Readiness::default()
            .with(aws::sqs_check(
                aws.sqs.clone(),
                names.name(names::FETCH_REQUESTS),
            ))
            .with(aws::dynamodb_check(
                aws.dynamodb.clone(),
                names.name(names::DOCUMENTS),
            ));
        let running = base.serve_admin(readiness)?;
        let tracker = TaskTracker::new();
        if let Some(worker) = responder::worker(&aws, &names, settings.wait_secs, &shutdown).await {
            worker.spawn(settings.pollers, &tracker, &shutdown);
        }
        shutdown.cancelled().await;
        running.drain(&tracker).await;
        running.stop().await
    }
}
