//! schemathesis (PyPI; installed by scripts/install-deps.sh, found through
//! `LAMBDALESS_SCHEMATHESIS`) against the `/openapi.json` of `api-gateway`
//! and `streamer` in the suite's containers: `--checks all` minus the
//! exclusions below, each with its reason; any finding fails the test.
//!
//! Excluded checks:
//! - `positive_data_acceptance`: some rules span several parameters and
//!   cannot be written in OpenAPI (`pk` only with `mode=query`, `segments`
//!   only with `mode=scan`), and the users API's e-mail check is stricter
//!   than the `email` format, so schema-valid requests may rightly get 400.
//! - `use_after_free`, `ensure_resource_availability`: stateful checks over
//!   create/delete links; neither service deletes anything.
//!
//! The stack has what every console route needs (the broker for
//! `POST /console/devices/requests`, the streamer behind
//! `GET /console/stream/{table}`, whose streams end), so those operations are
//! generated like the others. One operation is excluded:
//! - `console_events` (`GET /console/events`): a Server-Sent Events stream that
//!   by design never ends while the gateway runs, so every authorised call
//!   would hit the request timeout. Its answers are asserted in
//!   `console::the_console_event_stream_needs_a_credential_or_a_fresh_ticket`
//!   (401 without or with a bad credential, used ticket, the `text/event-stream`
//!   200) and `console::fifty_open_event_streams_keep_the_gateway_under_64_mib`
//!   (events reach every stream).

use std::process::Command;

use lambdaless_client::provision::Provisioner;
use lambdaless_testkit::{Stack, API_KEY};

const EXCLUDED: &str = "positive_data_acceptance,use_after_free,ensure_resource_availability";
/// api-gateway operations (by `operationId`) not generated; see the module doc.
const GATEWAY_EXCLUDED_OPERATIONS: &[&str] = &["console_events"];

fn schemathesis() -> String {
    std::env::var("LAMBDALESS_SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".to_owned())
}

/// Runs schemathesis against the service on `port`, without the operations
/// `excluded`; panics with its report on any finding.
async fn run(port: u16, what: &str, excluded: &[&str]) {
    let bin = schemathesis();
    let schema = format!("http://127.0.0.1:{port}/openapi.json");
    let header = format!("x-api-key: {API_KEY}");
    let args = [
        "run",
        schema.as_str(),
        "--checks",
        "all",
        "--exclude-checks",
        EXCLUDED,
        "--header",
        header.as_str(),
        "--max-examples",
        "25",
        "--seed",
        "20261203",
        "--request-timeout",
        "20",
        "--workers",
        "2",
        "--no-color",
    ];
    let mut argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    for id in excluded {
        argv.extend(["--exclude-operation-id".to_owned(), (*id).to_owned()]);
    }
    let out = tokio::task::spawn_blocking(move || Command::new(&bin).args(&argv).output())
        .await
        .expect("joins")
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): run scripts/install-deps.sh, or set LAMBDALESS_SCHEMATHESIS",
                schemathesis()
            )
        });
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("schemathesis against {what}:\n{report}");
    assert!(
        out.status.success(),
        "schemathesis found problems in {what} (exit {:?}):\n{report}",
        out.status.code()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_on_either_http_service() {
    let mut stack = Stack::start().await;
    stack.provision().await;
    // The console's device requests publish through the broker.
    stack.start_broker().await;
    // The fetch bridge answers for local-dev-key's user `local`.
    Provisioner::new(stack.aws.clone(), stack.names.clone())
        .provision(&["local".to_owned()])
        .await
        .expect("reply queue");
    stack.start_service("fetch-responder").await;
    // Generated bad credentials must get 401 (not the per-address 429), and
    // dumps stay small so every generated count is quick.
    let no_block = ("LAMBDALESS_AUTH__FAILURES_PER_MINUTE", "0");
    // The console's broker users, streamer and health targets in this stack.
    let console = crate::console::console_env(&stack);
    let mut gateway_env = vec![no_block, ("LAMBDALESS_FETCH_TIMEOUT_SECS", "5")];
    gateway_env.extend(console.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let streamer_env = vec![no_block, ("LAMBDALESS_MAX_DUMP_COUNT", "50")];
    for (service, env) in [("api-gateway", gateway_env), ("streamer", streamer_env)] {
        stack.start_service_unchecked(service, &env).await;
        let port = lambdaless_testkit::service_port(service);
        lambdaless_testkit::wait_ready(stack.service(service), port).await;
    }
    let gateway = stack.service("api-gateway").host_port(8080).await;
    let streamer = stack.service("streamer").host_port(8081).await;
    run(gateway, "api-gateway", GATEWAY_EXCLUDED_OPERATIONS).await;
    run(streamer, "streamer", &[]).await;
}
