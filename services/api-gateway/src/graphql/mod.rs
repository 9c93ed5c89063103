//! Seed 3, the GraphQL orders read API (SPEC §5): `POST /graphql` executes
//! a query against [`schema::Query`]; `GET /graphql` serves a self-contained
//! playground page (no external assets, works offline). Depth and cost
//! limits refuse expensive queries before any read: a field costs one plus
//! its selection, and a list field multiplies the cost of its selection by
//! [`LIST_FACTOR`] (it may return that many entries or more), so aliases of
//! nested lists add up to what they would really read. Resolver failures
//! come back as GraphQL errors in a 200 response, never a crash.

pub mod schema;
pub mod store;

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextValidation};
use async_graphql::{EmptyMutation, EmptySubscription, ServerError, ValidationResult};
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use axum::{Json, Router};

use crate::error::ApiJson;
use schema::{Loaders, OrdersSchema, Query, Source};

/// How many entries a list field is assumed to return when a query is costed.
pub const LIST_FACTOR: usize = 10;

#[derive(Clone)]
pub struct GraphqlState {
    schema: OrdersSchema,
    source: Source,
}

impl GraphqlState {
    pub fn new(source: Source, max_depth: usize, max_complexity: usize) -> Self {
        let schema = async_graphql::Schema::build(Query, EmptyMutation, EmptySubscription)
            .limit_depth(max_depth)
            .extension(CostLimit(max_complexity))
            .finish();
        Self { schema, source }
    }

    pub fn store(&self) -> &Arc<store::Store> {
        &self.source.store
    }
}

/// Refuses, after validation and before any resolver runs, a query whose
/// cost exceeds the limit, with a message that says why.
struct CostLimit(usize);

impl ExtensionFactory for CostLimit {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(CostLimit(self.0))
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for CostLimit {
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await?;
        if result.complexity > self.0 {
            metrics::counter!("graphql_refused_total", "reason" => "cost").increment(1);
            return Err(vec![ServerError::new(
                format!(
                    "query is too complex: it costs {} and the limit is {} (one per field; \
                     a list field multiplies the cost of its selection by {LIST_FACTOR}); \
                     ask for fewer aliases or fewer nested lists",
                    result.complexity, self.0
                ),
                None,
            )]);
        }
        Ok(result)
    }
}

pub fn router(state: GraphqlState) -> Router {
    Router::new()
        .route("/graphql", axum::routing::post(execute))
        .with_state(state)
}

async fn execute(
    State(state): State<GraphqlState>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Response {
    // async-graphql defaults a missing `query` to ""; the document requires it.
    let query = body.get("query").and_then(|q| q.as_str()).unwrap_or("");
    if query.trim().is_empty() {
        return crate::error::ApiError::Invalid("query: a non-empty string is required".to_owned())
            .into_response();
    }
    let request: async_graphql::Request = match serde_json::from_value(body) {
        Ok(r) => r,
        Err(e) => return crate::error::ApiError::Invalid(e.to_string()).into_response(),
    };
    let request = request.data(Loaders::new(&state.source));
    let response = state.schema.execute(request).await;
    if response.is_err() {
        metrics::counter!("graphql_errors_total").increment(1);
    }
    Json(response).into_response()
}

pub async fn playground() -> Html<&'static str> {
    Html(PLAYGROUND)
}

/// A minimal offline playground: a query box, an API key box, and the answer.
const PLAYGROUND: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lambdaless GraphQL playground</title>
<style>body{font-family:sans-serif;margin:1em}textarea{width:100%;font-family:monospace}pre{background:#f4f4f4;padding:1em;white-space:pre-wrap}</style>
</head><body>
<h1>lambdaless orders GraphQL</h1>
<label>API key or JWT <input id="key" size="60" value="local-dev-key"></label>
<p><textarea id="query" rows="12">{
  orders(customerId: "4567") {
    orderId orderRef total
    items { quantity product { productId productName price } }
  }
}</textarea></p>
<p><textarea id="vars" rows="3" placeholder="variables (JSON)"></textarea></p>
<button id="run">Run</button>
<pre id="out"></pre>
<script>
document.getElementById('run').onclick = async () => {
  const out = document.getElementById('out');
  let variables = null;
  const v = document.getElementById('vars').value.trim();
  if (v) { try { variables = JSON.parse(v); } catch (e) { out.textContent = 'variables: ' + e; return; } }
  const res = await fetch('/graphql', {method: 'POST',
    headers: {'content-type': 'application/json', 'authorization': 'Bearer ' + document.getElementById('key').value},
    body: JSON.stringify({query: document.getElementById('query').value, variables})});
  out.textContent = res.status + '\n' + JSON.stringify(await res.json(), null, 2);
};
</script></body></html>
"#;
