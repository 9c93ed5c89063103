//! `api-gateway`: the HTTP front door (seed 4 users API, seed 3 GraphQL orders
//! API, seed 1 fetch bridge) with authentication, throttling and OpenAPI.
//!
//! Layers, outermost first: request id (set, echoed, in every log line's
//! span) → CORS → HTTP metrics → body limit → per route group: the
//! authorizer ([`lambdaless_runtime::auth::require`]: failed attempts per
//! address, credential, the group's scope, the per-principal throttle).
//! `/healthz`, `/readyz`, `/metrics`, `/openapi.json` and the playground page
//! need no credentials.

pub mod console;
pub mod error;
pub mod graphql;
pub mod openapi;
mod settings;
pub mod users;

pub mod fetch;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue, Method, Request};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::get;
use axum::Router;
use lambdaless_contracts::names;
use lambdaless_runtime::auth::{self, Authorizer, Guard, KeysAndJwt, Limits};
use lambdaless_runtime::aws;
use lambdaless_runtime::{admin, Base, Readiness, Run, Started};
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use settings::{GraphqlSettings, Settings, ThrottleSettings};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A built, not yet running, api-gateway.
pub type App = lambdaless_runtime::App<Gateway>;

/// The gateway's own part: its authorizer.
pub struct Gateway {
    authorizer: Arc<dyn Authorizer>,
}

impl Run for Gateway {
    type Settings = Settings;

    /// Prepares the authorizer from the configured keys.
    async fn prepare(settings: &Settings) -> anyhow::Result<Self> {
        let authorizer: Arc<dyn Authorizer> = Arc::new(KeysAndJwt::from_settings(&settings.auth)?);
        Ok(Self { authorizer })
    }

    /// Serves until `shutdown`, then lets in-flight requests finish.
    async fn run(self, started: Started<Settings>) -> anyhow::Result<()> {
        let (base, settings, shutdown) = started.into_parts();
        let router = self.router(&base, &settings, &shutdown)?;
        base.serve(router, shutdown).await
    }
}

impl Gateway {
    /// The whole HTTP surface; `shutdown` also ends the console's event streams.
    pub fn router(
        &self,
        base: &Base,
        s: &Settings,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Router> {
        let (aws, names) = (base.aws(), base.names()?);
        let limits = Limits::new(&s.auth, &s.throttle);
        let guarded = |router: Router, scope: &'static str| {
            router.route_layer(from_fn_with_state(
                Guard::new(self.authorizer.clone(), limits.clone(), scope),
                auth::require,
            ))
        };

        let users_state = users::UsersState {
            aws: aws.clone(),
            queue: aws::NamedQueue::new(aws.sqs.clone(), names.name(names::USERS_CREATE)),
            table: names.name(names::USERS),
        };
        let (write, read) = users::router(users_state);

        let source = graphql::schema::Source {
            store: Arc::new(graphql::store::Store {
                db: aws.dynamodb.clone(),
                cache: graphql::store::Cache::new(
                    Duration::from_secs(s.graphql.cache_ttl_secs),
                    s.graphql.cache_capacity,
                ),
            }),
            tables: graphql::schema::Tables {
                customers: names.name(names::CUSTOMERS),
                products: names.name(names::PRODUCTS),
                orders: names.name(names::ORDERS),
                order_items: names.name(names::ORDER_ITEMS),
            },
        };
        let gql = graphql::GraphqlState::new(source, s.graphql.max_depth, s.graphql.max_complexity);

        let readiness = Readiness::default()
            .with(aws::sqs_check(
                aws.sqs.clone(),
                names.name(names::USERS_CREATE),
            ))
            .with(aws::dynamodb_check(
                aws.dynamodb.clone(),
                names.name(names::USERS),
            ));

        let router = Router::new()
            .merge(guarded(write, auth::USERS_WRITE))
            .merge(guarded(read, auth::USERS_READ))
            .merge(guarded(graphql::router(gql.clone()), auth::ORDERS_READ))
            .merge(guarded(
                fetch::routes(
                    lambdaless_client::fetch::FetchClient::new(aws.sqs.clone(), names.clone()),
                    Duration::from_secs(s.fetch_timeout_secs),
                ),
                auth::FETCH,
            ))
            .merge(console::router(console::Deps {
                settings: s.console.clone(),
                authorizer: self.authorizer.clone(),
                limits: limits.clone(),
                aws: aws.clone(),
                names: names.clone(),
                port: base.local_addr().port(),
                stop: shutdown.clone(),
            }))
            .route("/graphql", get(graphql::playground))
            .route("/openapi.json", get(openapi::document))
            .merge(base.admin_router(readiness))
            .fallback(error::no_such_route)
            .method_not_allowed_fallback(error::method_not_allowed)
            .layer(DefaultBodyLimit::max(s.body_limit_bytes))
            .layer(from_fn(admin::track_http))
            .layer(cors(&s.cors_origins))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(
                TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                    let id = req
                        .headers()
                        .get(&REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    tracing::info_span!("request", request_id = %id, method = %req.method(),
                    path = %req.uri().path(), principal = tracing::field::Empty)
                }),
            )
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid));
        Ok(router)
    }
}

fn cors(origins: &str) -> CorsLayer {
    let allow = if origins.trim() == "*" {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .split(',')
                .filter_map(|o| HeaderValue::from_str(o.trim()).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("x-api-key"),
        ])
        .expose_headers([
            HeaderName::from_static("x-sqs-message-id"),
            header::LOCATION,
            header::RETRY_AFTER,
            REQUEST_ID,
        ])
        .max_age(Duration::from_secs(600))
}
