//! `streamer`: streams DynamoDB query and scan pages over HTTP as NDJSON as
//! they arrive (seed 5), with bounded memory and backpressure.
//!
//! Routes: `GET /stream/{table}` ([`stream`]), `POST /dump` ([`dump`]), both
//! behind the shared authorizer (scope `fetch`, the gateway's key/JWT rules);
//! `/healthz`, `/readyz`, `/metrics` beside them.

pub mod dump;
pub mod error;
pub mod stream;

use std::net::SocketAddr;

use axum::routing::{get, post};
use axum::Router;
use lambdaless_contracts::{names, Names};
use lambdaless_runtime::auth;
use lambdaless_runtime::aws::{self, AwsClients};
use lambdaless_runtime::config::{AuthSettings, ConfigError, LogSettings};
use lambdaless_runtime::{admin, Readiness, ServiceContext, ServiceSettings};
use serde::Deserialize;
use tokio::net::TcpListener;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub log: LogSettings,
    /// The service port; also serves `/healthz`, `/readyz`, `/metrics`.
    pub port: u16,
    /// Prepended to every queue and table name.
    pub prefix: String,
    pub auth: AuthSettings,
    /// Logical names of the tables that may be streamed.
    pub tables: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            log: LogSettings::default(),
            port: 8081,
            prefix: String::new(),
            auth: AuthSettings::default(),
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
        }
    }
}

impl ServiceSettings for Settings {
    const SERVICE: &'static str = "streamer";

    fn log(&self) -> &LogSettings {
        &self.log
    }

    fn health_port(&self) -> u16 {
        self.port
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(t) = self
            .tables
            .iter()
            .find(|t| lambdaless_contracts::schema::table(t).is_none())
        {
            return Err(ConfigError::value(
                "tables",
                format!("{t:?} is not a lambdaless table"),
            ));
        }
        lambdaless_runtime::config::names(&self.prefix).map(|_| ())
    }
}

/// What the handlers share; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub names: Names,
    /// Allow-listed logical table names.
    pub tables: std::sync::Arc<[String]>,
}

pub struct App {
    settings: Settings,
    ctx: ServiceContext,
    listener: TcpListener,
    aws: AwsClients,
    names: Names,
}

impl App {
    /// Binds the service port (0 picks a free one).
    pub async fn build(settings: Settings, ctx: ServiceContext) -> anyhow::Result<Self> {
        let listener = admin::bind(settings.port).await?;
        let names = lambdaless_runtime::config::names(&settings.prefix)?;
        let aws = aws::load().await;
        Ok(Self {
            settings,
            ctx,
            listener,
            aws,
            names,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves until `ctx.shutdown`, then lets in-flight requests finish.
    pub async fn run(self) -> anyhow::Result<()> {
        let readiness = Readiness::default().with(aws::dynamodb_check(
            self.aws.dynamodb.clone(),
            self.names.name(names::ARTISTS),
        ));
        let state = AppState {
            dynamodb: self.aws.dynamodb.clone(),
            names: self.names.clone(),
            tables: self.settings.tables.clone().into(),
        };
        let authorizer: std::sync::Arc<dyn auth::Authorizer> =
            std::sync::Arc::new(auth::KeysAndJwt::from_settings(&self.settings.auth)?);
        let api = Router::new()
            .route("/stream/{table}", get(stream::handler))
            .route("/dump", post(dump::handler))
            .with_state(state)
            .route_layer(axum::middleware::from_fn_with_state(
                auth::Guard::new(authorizer, auth::FETCH),
                auth::require,
            ));
        let router = admin::router(readiness, self.ctx.metrics.clone())
            .merge(api)
            .fallback(|| async { error::ApiError::NotFound("no such route".to_owned()) })
            .method_not_allowed_fallback(|| async { error::ApiError::MethodNotAllowed })
            .layer(axum::middleware::from_fn(admin::track_http));
        let addr = self.local_addr();
        tracing::info!(startup_ms = self.ctx.elapsed_ms(), %addr, "streamer listening");
        admin::serve(self.listener, router, self.ctx.shutdown.clone()).await?;
        Ok(())
    }
}
