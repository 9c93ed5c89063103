//! Runtime plumbing shared by every lambdaless binary, written once.
//!
//! - [`config`]: typed settings, defaults → TOML file (`LAMBDALESS_CONFIG`) → `LAMBDALESS_*` env.
//! - [`common`]: the settings every service shares (log, port, prefix, drain timeout), read
//!   beside each service's own.
//! - [`telemetry`]: JSON or human logs and the Prometheus recorder.
//! - [`shutdown`]: SIGTERM/SIGINT as a [`tokio_util::sync::CancellationToken`] plus a drain helper.
//! - [`admin`]: `/healthz`, `/readyz` and `/metrics`, and the HTTP server loop.
//! - [`aws`]: SQS and DynamoDB clients from the standard `AWS_*` variables.
//! - [`mqtt`]: a self-healing MQTT connection whose event loop is always polled.
//! - [`auth`], [`throttle`], [`error`]: the HTTP services' authorizer, rate limits and
//!   their one JSON error type.
//! - [`service`]: the start-up skeleton: the one [`App`] shape (`build`, `local_addr`,
//!   `run(shutdown)`) over each service's [`Run`], the [`Base`] every `App` holds (admin, readiness, drain), and the
//!   `main` every service binary calls, including the `healthcheck` subcommand used by
//!   container health checks.

pub mod admin;
pub mod auth;
pub mod aws;
pub mod common;
pub mod config;
pub mod dynamo_json;
pub mod error;
pub mod healthcheck;
pub mod mqtt;
pub mod openapi;
pub mod service;
pub mod shutdown;
pub mod telemetry;
pub mod throttle;
pub mod worker;

pub use admin::{Readiness, ReadinessCheck};
pub use common::Common;
pub use config::{AuthSettings, ConfigError, LogSettings, MqttSettings};
pub use error::ApiError;
pub use service::{App, Base, Run, ServiceSettings, Started};
pub use throttle::ThrottleSettings;
