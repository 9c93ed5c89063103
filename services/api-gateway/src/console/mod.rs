//! The live web console (SPEC §9, issue #11): `GET /console` serves one
//! plain page that shows and drives the five patterns, with every asset
//! compiled into the binary (no CDN, no build step).
//!
//! - `/console`: the page, rendered here (asset names, the optional pre-filled
//!   key), with a strict Content-Security-Policy (`default-src 'self'`, no
//!   inline script or style) and an `ETag`. It holds no data, so it needs no
//!   credential; everything it shows comes from guarded routes.
//! - `/console/assets/console-{hash}.{js,css}`: content-hashed names, cached
//!   for a year (`immutable`); a new build gets new names.
//! - `/console/ticket`, `/console/events`: the live event stream ([`events`]).
//! - `/console/devices/*`, `/console/stream/{table}`: the buttons ([`actions`]).
//! - `/console/health`: every service's readiness and headline metrics ([`health`]).
//!
//! [`doc`] describes every one of these routes in `GET /openapi.json`.
//!
//! The page calls the public routes (`/users`, `/status`, `/graphql`,
//! `/fetch`) directly with the key the user typed. Nothing here sits on
//! those routes' path: the console adds no middleware to the API.

pub mod actions;
pub mod doc;
pub mod events;
pub mod health;
pub mod settings;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use lambdaless_contracts::{names, Names};
use lambdaless_runtime::auth::{self, Authorizer, Guard, Limits};
use lambdaless_runtime::aws::AwsClients;
use lambdaless_runtime::MqttSettings;
use tokio_util::sync::CancellationToken;

pub use settings::ConsoleSettings;

const PAGE: &str = include_str!("../../console/index.html");
const SCRIPT: &str = include_str!("../../console/console.js");
const STYLE: &str = include_str!("../../console/console.css");

/// The Content-Security-Policy of every console response.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// FNV-1a: a stable content hash for asset names and ETags (not a security boundary).
fn fnv(text: &str) -> String {
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// Versioned asset names: `console-{hash}.js`, `console-{hash}.css`.
static ASSETS: LazyLock<(String, String)> = LazyLock::new(|| {
    (
        format!("console-{}.js", fnv(SCRIPT)),
        format!("console-{}.css", fnv(STYLE)),
    )
});

/// Escapes text for an HTML attribute value or element content.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page with its asset names and pre-filled key.
pub fn render_page(prefill_api_key: &str) -> String {
    let (js, css) = &*ASSETS;
    PAGE.replace("{{script}}", &format!("/console/assets/{js}"))
        .replace("{{style}}", &format!("/console/assets/{css}"))
        .replace("{{prefill}}", &escape_html(prefill_api_key))
}

/// What [`router`] needs from the gateway.
pub struct Deps {
    pub settings: ConsoleSettings,
    pub authorizer: Arc<dyn Authorizer>,
    pub limits: Limits,
    pub aws: AwsClients,
    pub names: Names,
    /// The gateway's own port (`self` in `health_targets`).
    pub port: u16,
    pub stop: CancellationToken,
}

#[derive(Clone)]
struct PageState {
    html: Arc<str>,
    etag: HeaderValue,
}

/// Every `/console` route; an empty router when the console is switched off.
pub fn router(deps: Deps) -> Router {
    let s = &deps.settings;
    if !s.enabled {
        return Router::new();
    }
    let guarded =
        |router: Router, guard: Guard| router.route_layer(from_fn_with_state(guard, auth::require));
    let scoped =
        |scope: &'static str| Guard::new(deps.authorizer.clone(), deps.limits.clone(), scope);
    let any_caller = || Guard::authenticated(deps.authorizer.clone(), deps.limits.clone());

    let html = render_page(&s.prefill_api_key);
    let etag = HeaderValue::from_str(&format!("\"{}\"", fnv(&html))).expect("hex is a header");
    let site = Router::new()
        .route("/console", get(page))
        .with_state(PageState {
            html: html.into(),
            etag,
        })
        .route("/console/assets/{name}", get(asset));

    let events_state = events::EventsState {
        hub: Arc::new(events::Hub::new(s.clone(), deps.stop.clone())),
        tickets: Arc::new(events::Tickets::new(Duration::from_secs(s.ticket_ttl_secs))),
        guard: scoped(auth::DEVICES_READ),
    };
    let ticket = guarded(
        Router::new()
            .route("/console/ticket", post(events::ticket))
            .with_state(events_state.clone()),
        scoped(auth::DEVICES_READ),
    );
    let stream_events = Router::new()
        .route("/console/events", get(events::events))
        .with_state(events_state);

    let device_mqtt = MqttSettings {
        username: Some(s.device_username.clone()),
        password: s.device_password.clone(),
        client_id_prefix: format!("{}-device", s.mqtt.client_id_prefix),
        ..s.mqtt.clone()
    };
    let actions_state = actions::ActionsState {
        aws: deps.aws.clone(),
        device_inbound: lambdaless_runtime::aws::NamedQueue::new(
            deps.aws.sqs.clone(),
            deps.names.name(names::DEVICE_INBOUND),
        ),
        device: Arc::default(),
        device_mqtt,
        streamer_url: s.streamer_url.trim_end_matches('/').to_owned(),
        stop: deps.stop.clone(),
    };
    // Sending device messages and publishing requests act for the console's
    // own SQS producer and broker user: `admin` only.
    let drive = guarded(
        Router::new()
            .route(
                "/console/devices/messages",
                post(actions::send_device_message),
            )
            .route("/console/devices/requests", post(actions::device_request))
            .with_state(actions_state.clone()),
        scoped(auth::ADMIN),
    );
    // Any caller: the streamer checks the table's scope with the same credential.
    let stream = guarded(
        Router::new()
            .route("/console/stream/{table}", get(actions::stream))
            .with_state(actions_state),
        any_caller(),
    );
    let targets = s.targets().unwrap_or_default();
    let health = guarded(
        Router::new()
            .route("/console/health", get(health::health))
            .with_state(health::HealthState::new(targets, deps.port)),
        any_caller(),
    );

    site.merge(ticket)
        .merge(stream_events)
        .merge(drive)
        .merge(stream)
        .merge(health)
}

fn secure_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// `GET /console`: revalidated on every load (`no-cache` + `ETag`).
async fn page(State(state): State<PageState>, headers: HeaderMap) -> Response {
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == state.etag.as_bytes());
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            state.html.to_string(),
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, state.etag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secure_headers(h);
    response
}

/// `GET /console/assets/{name}`: only the current build's names exist.
async fn asset(Path(name): Path<String>) -> Response {
    let (js, css) = &*ASSETS;
    let (content_type, body) = if &name == js {
        ("text/javascript; charset=utf-8", SCRIPT)
    } else if &name == css {
        ("text/css; charset=utf-8", STYLE)
    } else {
        return lambdaless_runtime::error::ApiError::not_found("no such asset").into_response();
    };
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    secure_headers(h);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_its_versioned_assets_and_escapes_the_key() {
        let html = render_page("k\"><script>x</script>");
        let (js, css) = &*ASSETS;
        assert!(
            html.contains(&format!("src=\"/console/assets/{js}\"")),
            "{html}"
        );
        assert!(html.contains(&format!("href=\"/console/assets/{css}\"")));
        assert!(!html.contains("<script>x"), "the key is escaped");
        assert!(html.contains("k&quot;&gt;&lt;script&gt;"));
        assert!(!html.contains("{{"), "every placeholder is filled");
        // No inline script or style: the CSP allows only 'self'.
        assert!(!html.contains("<script>") && !html.contains("<style") && !html.contains("style="));
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no other origin"
        );
    }

    #[test]
    fn the_script_inserts_message_text_only_as_text() {
        assert!(!SCRIPT.contains("innerHTML") && !SCRIPT.contains("outerHTML"));
        assert!(!SCRIPT.contains("insertAdjacentHTML") && !SCRIPT.contains("document.write"));
        assert!(!SCRIPT.contains("eval(") && !SCRIPT.contains("new Function"));
        assert!(!SCRIPT.contains("http://") && !SCRIPT.contains("https://"));
        assert!(!STYLE.contains("url(") && !STYLE.contains("@import"));
    }
}
