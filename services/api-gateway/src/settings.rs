//! Settings of `api-gateway` (defaults here; `config/api-gateway.toml`; `LAMBDALESS_*`).

use lambdaless_runtime::config::{AuthSettings, ConfigError};
pub use lambdaless_runtime::ThrottleSettings;
use lambdaless_runtime::{Common, ServiceSettings};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub auth: AuthSettings,
    pub throttle: ThrottleSettings,
    /// Larger request bodies get 413.
    pub body_limit_bytes: usize,
    /// Allowed CORS origins: `*` or a comma-separated list.
    pub cors_origins: String,
    pub graphql: GraphqlSettings,
    /// `GET /fetch/{fetchId}`: how long to wait for fetch-responder's reply.
    pub fetch_timeout_secs: u64,
    /// The web console (`/console`).
    pub console: crate::console::ConsoleSettings,
    /// `log`, `prefix` and `port`: the gateway's HTTP port, which serves the
    /// health and metrics routes too.
    #[serde(skip)]
    pub common: Common,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            auth: AuthSettings::default(),
            throttle: ThrottleSettings::default(),
            body_limit_bytes: 16 * 1024,
            cors_origins: "*".to_owned(),
            graphql: GraphqlSettings::default(),
            fetch_timeout_secs: 10,
            console: Default::default(),
            common: Common::http(8080),
        }
    }
}

/// The GraphQL orders API (seed 3).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GraphqlSettings {
    /// How long a read stays in the cache (the seed's ElastiCache TTL); 0 disables it.
    pub cache_ttl_secs: u64,
    /// Most cached keys and query results.
    pub cache_capacity: usize,
    /// Deepest selection nesting accepted.
    pub max_depth: usize,
    /// Largest query cost accepted: one per field, and each list field
    /// multiplies the cost of its selection by [`crate::graphql::LIST_FACTOR`].
    pub max_complexity: usize,
}

impl Default for GraphqlSettings {
    fn default() -> Self {
        Self {
            cache_ttl_secs: 60,
            cache_capacity: 100_000,
            max_depth: 8,
            max_complexity: 2000,
        }
    }
}

impl ServiceSettings for Settings {
    const SERVICE: &'static str = "api-gateway";

    fn common_mut(&mut self) -> &mut Common {
        &mut self.common
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.auth.validate()?;
        self.throttle.validate()?;
        self.console.validate()?;
        if self.body_limit_bytes < 256 {
            return Err(ConfigError::value("body_limit_bytes", "must be ≥ 256"));
        }
        if self.graphql.max_depth == 0 || self.graphql.max_complexity == 0 {
            return Err(ConfigError::value(
                "graphql.max_depth",
                "limits must be ≥ 1",
            ));
        }
        Ok(())
    }
}
