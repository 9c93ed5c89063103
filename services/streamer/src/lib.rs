//! `streamer`: streams DynamoDB query and scan pages over HTTP as NDJSON as
//! they arrive (seed 5), with bounded memory and backpressure.
//!
//! Routes: `GET /stream/{table}` ([`stream`]: the scope the table names,
//! see [`access`]) and `POST /dump` ([`dump`]: scope `stream:write`), behind
//! the shared authorizer (the gateway's key/JWT rules, failed-attempt and
//! per-principal throttles); `/healthz`, `/readyz`, `/metrics` and
//! `/openapi.json` beside them.

pub mod access;
pub mod dump;
pub mod openapi;
pub mod stream;

use axum::routing::{get, post};
use axum::Router;
use lambdaless_contracts::{names, Names};
use lambdaless_runtime::auth::{self, Guard, Limits};
use lambdaless_runtime::aws;
use lambdaless_runtime::config::{AuthSettings, ConfigError};
use lambdaless_runtime::ThrottleSettings;
use lambdaless_runtime::{admin, error, Common, Readiness, Run, ServiceSettings, Started};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub auth: AuthSettings,
    /// Per-principal request rate (the gateway's `LAMBDALESS_THROTTLE__*`).
    pub throttle: ThrottleSettings,
    /// Tables that may be streamed: `name` (the table's own scope, see
    /// [`access::default_scope`]) or `name=scope`.
    pub tables: Vec<String>,
    /// Streams one principal may run at once.
    pub max_streams_per_principal: usize,
    /// Scan segments one principal may run at once, over all its streams.
    pub max_segments_per_principal: usize,
    /// Largest `count` of one `POST /dump`.
    pub max_dump_count: u64,
    /// `log`, `port` (the service port, also `/healthz`, `/readyz`,
    /// `/metrics`), `prefix`.
    #[serde(skip)]
    pub common: Common,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_streams_per_principal: 4,
            max_segments_per_principal: 16,
            max_dump_count: 100_000,
            auth: AuthSettings::default(),
            throttle: ThrottleSettings::default(),
            tables: [
                names::ARTISTS,
                names::DOCUMENTS,
                names::DEVICE_MESSAGES,
                names::CUSTOMERS,
                names::PRODUCTS,
                names::ORDERS,
                names::ORDER_ITEMS,
            ]
            .map(str::to_owned)
            .to_vec(),
            common: Common::http(8081),
        }
    }
}

impl ServiceSettings for Settings {
    const SERVICE: &'static str = "streamer";

    fn common_mut(&mut self) -> &mut Common {
        &mut self.common
    }

    fn validate(&self) -> Result<(), ConfigError> {
        access::parse_tables(&self.tables)?;
        self.auth.validate()?;
        self.throttle.validate()?;
        if self.max_streams_per_principal == 0 {
            return Err(ConfigError::value(
                "max_streams_per_principal",
                "must be ≥ 1",
            ));
        }
        if self.max_segments_per_principal == 0 {
            return Err(ConfigError::value(
                "max_segments_per_principal",
                "must be ≥ 1",
            ));
        }
        if !(1..=dump::MAX_COUNT).contains(&self.max_dump_count) {
            return Err(ConfigError::value(
                "max_dump_count",
                format!("must be 1..={}", dump::MAX_COUNT),
            ));
        }
        Ok(())
    }
}

/// What the handlers share; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub names: Names,
    /// Allow-listed logical table names and the scope reading each.
    pub tables: std::sync::Arc<[(String, &'static str)]>,
    pub slots: access::Slots,
    /// Largest `segments` of one stream.
    pub max_segments: i32,
    pub max_dump_count: u64,
}

/// A built, not yet running, streamer.
pub type App = lambdaless_runtime::App<Streamer>;

/// The streamer's own part: the routes of [`Run::run`].
pub struct Streamer;

impl Run for Streamer {
    type Settings = Settings;

    /// Nothing beyond the service port: the routes are made in `run`.
    async fn prepare(_: &Settings) -> anyhow::Result<Self> {
        Ok(Streamer)
    }

    /// Serves until `shutdown`, then lets in-flight requests finish.
    async fn run(self, started: Started<Settings>) -> anyhow::Result<()> {
        let (base, settings, shutdown) = started.into_parts();
        let (aws, names) = (base.aws().clone(), base.names()?);
        let readiness = Readiness::default().with(aws::dynamodb_check(
            aws.dynamodb.clone(),
            names.name(names::ARTISTS),
        ));
        let s = &settings;
        let max_segments = s
            .max_segments_per_principal
            .min(stream::MAX_SEGMENTS as usize) as i32;
        let state = AppState {
            dynamodb: aws.dynamodb.clone(),
            names: names.clone(),
            tables: access::parse_tables(&s.tables)?.into(),
            slots: access::Slots::new(s.max_streams_per_principal, s.max_segments_per_principal),
            max_segments: (s
                .max_segments_per_principal
                .min(stream::MAX_SEGMENTS as usize)) as i32,
            max_dump_count: s.max_dump_count,
        };
        let authorizer: std::sync::Arc<dyn auth::Authorizer> =
            std::sync::Arc::new(auth::KeysAndJwt::from_settings(&s.auth)?);
        let limits = Limits::new(&s.auth, &s.throttle);
        let guard = |guard: Guard| axum::middleware::from_fn_with_state(guard, auth::require);
        // Any authenticated caller reaches the stream handler, which checks the table's scope.
        let streams = Router::new()
            .route("/stream/{table}", get(stream::handler))
            .with_state(state.clone())
            .route_layer(guard(Guard::authenticated(
                authorizer.clone(),
                limits.clone(),
            )));
        let dumps = Router::new()
            .route("/dump", post(dump::handler))
            .with_state(state)
            .route_layer(guard(Guard::new(authorizer, limits, auth::STREAM_WRITE)));
        let router = base
            .admin_router(readiness)
            .merge(streams)
            .merge(dumps)
            .route(
                "/openapi.json",
                openapi::route(openapi::document_for(s.max_dump_count, max_segments)),
            )
            .fallback(error::no_such_route)
            .method_not_allowed_fallback(error::method_not_allowed)
            .layer(axum::middleware::from_fn(admin::track_http));
        base.serve(router, shutdown).await
    }
}
