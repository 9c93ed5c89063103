//! The web console (issue #11) against real containers: a real headless
//! Chromium (through chromedriver) opens `/console`, drives every pattern
//! from the page and sees the live answers, message text stays text, and no
//! request leaves the stack's origin. Also: the event stream refuses callers
//! without credentials, and 50 open streams fit in 64 MiB of gateway memory.
//!
//! `LL_CONSOLE_SCREENSHOT=path.png` makes the browser test save the
//! page with its live data there (`scripts/console-screenshot.sh`).

use std::time::{Duration, Instant};

use lambdaless_client::provision::Provisioner;
use lambdaless_client::seed::{seed_orders, Sizes};
use lambdaless_client::stream::{request, Response};
use lambdaless_contracts::names;
use lambdaless_testkit::webdriver::Browser;
use lambdaless_testkit::{docker_cli, eventually, Stack, API_KEY, MQTT_OBSERVER_PASSWORD};
use lambdaless_testkit::{MQTT_OBSERVER_USER, MQTT_PASSWORD, MQTT_SERVICE_PASSWORD, MQTT_USER};
use serde_json::{json, Value};

/// Artists the streamer dumps; the page must count exactly these.
const ARTISTS: usize = 300;
/// A device body that would run script if it were ever parsed as HTML.
const XSS: &str = r#"<script>window.__xss=1</script>"><img src=x onerror="window.__xss=2">"#;

/// The gateway's console settings for this stack (broker, streamer, health targets).
pub(crate) fn console_env(stack: &Stack) -> Vec<(String, String)> {
    let id = &stack.id;
    let broker = format!("ll-broker-{id}");
    vec![
        ("LAMBDALESS_CONSOLE__MQTT__HOST".into(), broker.clone()),
        (
            "LAMBDALESS_CONSOLE__MQTT__USERNAME".into(),
            MQTT_OBSERVER_USER.into(),
        ),
        (
            "LAMBDALESS_CONSOLE__MQTT__PASSWORD".into(),
            MQTT_OBSERVER_PASSWORD.into(),
        ),
        (
            "LAMBDALESS_CONSOLE__DEVICE_USERNAME".into(),
            MQTT_USER.into(),
        ),
        (
            "LAMBDALESS_CONSOLE__DEVICE_PASSWORD".into(),
            MQTT_PASSWORD.into(),
        ),
        (
            "LAMBDALESS_CONSOLE__STREAMER_URL".into(),
            format!("http://ll-streamer-{id}:8081"),
        ),
        (
            "LAMBDALESS_CONSOLE__HEALTH_TARGETS".into(),
            format!(
                "api-gateway=self,broker=http://{broker}:9090,mover=http://ll-mover-{id}:9090,\
                 mqtt-api=http://ll-mqtt-api-{id}:9090,fetch-responder=http://ll-fetch-responder-{id}:9090,streamer=http://ll-streamer-{id}:8081"
            ),
        ),
    ]
}

async fn start_gateway(stack: &mut Stack, extra: &[(String, String)]) -> String {
    let extra: Vec<(&str, &str)> = extra
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    stack.start_service_with("api-gateway", &extra, &[]).await;
    let port = stack.service("api-gateway").host_port(8080).await;
    format!("http://127.0.0.1:{port}")
}

async fn call(base: &str, method: &str, path: &str, key: Option<&str>) -> Response {
    let headers: Vec<(&str, &str)> = key.map(|k| ("x-api-key", k)).into_iter().collect();
    request(base, method, path, &headers)
        .await
        .expect("the gateway answers")
}

/// Polls the page until `id`'s text satisfies `ok`; returns it.
async fn wait_text(browser: &Browser, id: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let text = browser.text_of(id).await.expect("the page answers");
        if ok(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; #{id} shows {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_drives_every_pattern_in_a_real_browser_without_leaving_its_origin() {
    // Fail, never skip, when the browser is missing.
    let browser = Browser::start(1400, 2300)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let mut stack = Stack::start().await;
    // The reply queue of `local`, the user the test key is bound to (as in Compose).
    Provisioner::new(stack.aws.clone(), stack.names.clone())
        .provision(&["local".to_owned()])
        .await
        .expect("provision succeeds");
    let sizes = Sizes {
        customers: 5,
        products: 5,
        orders: 10,
        items_per_order: 2,
    };
    seed_orders(&stack.aws.dynamodb, &stack.names, sizes, false)
        .await
        .unwrap();
    let doc = json!({ "id": "doc-1", "title": "hello from the console" });
    stack
        .put_item(names::DOCUMENTS, doc.as_object().unwrap())
        .await;
    stack.start_broker().await;
    for service in ["mover", "mqtt-api", "fetch-responder", "streamer"] {
        stack.start_service(service).await;
    }
    let env = console_env(&stack);
    let base = start_gateway(&mut stack, &env).await;
    let streamer = format!(
        "http://127.0.0.1:{}",
        stack.service("streamer").host_port(8081).await
    );
    let dump = call(
        &streamer,
        "POST",
        &format!("/dump?count={ARTISTS}"),
        Some(API_KEY),
    )
    .await;
    let status = dump.status;
    assert_eq!(status, 200, "{:?}", dump.text().await);

    browser.goto(&format!("{base}/console")).await.unwrap();
    browser.type_into("#api-key", API_KEY).await.unwrap();
    browser.click("#key-use").await.unwrap();
    wait_text(&browser, "live", "the event stream and the broker", |t| {
        t == "live"
    })
    .await;

    // Devices: a message with hostile text, its notification, then query and get over MQTT.
    let thing = format!("thing-{}", stack.id);
    browser.type_into("#thing", &thing).await.unwrap();
    let body = json!({ "note": XSS }).to_string();
    browser.type_into("#device-body", &body).await.unwrap();
    browser.click("#device-send").await.unwrap();
    wait_text(&browser, "device-sent", "the message to be queued", |t| {
        t.starts_with("202")
    })
    .await;
    let topic = format!("notification/{thing}");
    wait_text(&browser, "notifications", "the notification", |t| {
        t.contains(&topic)
    })
    .await;
    browser.click("#req-query").await.unwrap();
    let answer = wait_text(&browser, "device-answer", "the query answer", |t| {
        t.contains("newestMessageId")
    })
    .await;
    assert!(answer.contains(&thing), "{answer}");
    browser.click("#req-get").await.unwrap();
    let got = wait_text(&browser, "device-answer", "the get answer", |t| {
        t.contains("note")
    })
    .await;
    // Shown as JSON text: the tags are there, character for character.
    assert!(got.contains("<script>window.__xss=1</script>"), "{got}");
    assert!(got.contains("<img src=x onerror="), "{got}");
    let responses = browser.text_of("responses").await.unwrap();
    assert!(
        responses.contains("response/query/") && responses.contains("response/get/"),
        "{responses}"
    );

    // Users: 202 + messageId, /status polled until the user exists, then the user.
    browser
        .type_into("#user-email", "ada@console.example.com")
        .await
        .unwrap();
    browser.click("#user-create").await.unwrap();
    let user = wait_text(&browser, "user-result", "the created user", |t| {
        t.contains("userId")
    })
    .await;
    assert!(user.contains("ada@console.example.com"), "{user}");
    let log = browser.text_of("user-log").await.unwrap();
    assert!(log.contains("202, messageId"), "{log}");

    // Stream: the artists the streamer dumped, counted live, with the time to the first item.
    browser.click("#stream-run").await.unwrap();
    wait_text(&browser, "stream-state", "the stream to end", |t| {
        t.starts_with("done")
    })
    .await;
    assert_eq!(
        browser.text_of("stream-count").await.unwrap(),
        ARTISTS.to_string()
    );
    assert!(browser
        .text_of("stream-first")
        .await
        .unwrap()
        .ends_with(" ms"));

    // Orders, fetch and health: answered, through the gateway.
    browser.click("#gql-run").await.unwrap();
    wait_text(&browser, "gql-result", "order 52", |t| {
        t.contains("orderRef")
    })
    .await;
    browser.click("#fetch-run").await.unwrap();
    wait_text(&browser, "fetch-result", "the document", |t| {
        t.contains("hello from the console")
    })
    .await;
    assert!(browser
        .text_of("fetch-time")
        .await
        .unwrap()
        .ends_with(" ms"));
    let b = &browser;
    eventually(
        Duration::from_secs(60),
        "six services shown ready",
        || async move {
            let ready = b
                .exec(
                    "return document.querySelectorAll('#health-rows td.ok').length",
                    json!([]),
                )
                .await
                .unwrap();
            (ready.as_u64() >= Some(6)).then_some(())
        },
    )
    .await;

    // Nothing from a message ran or became markup.
    let dom = browser
        .exec(
            "return { xss: window.__xss === undefined ? null : window.__xss, \
               imgs: document.querySelectorAll('img').length, \
               scripts: document.querySelectorAll('script').length }",
            json!([]),
        )
        .await
        .unwrap();
    assert_eq!(
        dom,
        json!({"xss": null, "imgs": 0, "scripts": 1}),
        "message text became markup"
    );

    // Every request the page made went to the stack's own origin.
    let seen = browser
        .exec(
            "return { origin: location.origin, urls: performance.getEntriesByType('resource')\
               .map(e => e.name).concat(performance.getEntriesByType('navigation').map(e => e.name)) }",
            json!([]),
        )
        .await
        .unwrap();
    let origin = seen["origin"].as_str().unwrap();
    assert_eq!(origin, base);
    let urls: Vec<&str> = seen["urls"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(urls.len() >= 5, "{urls:?}");
    for url in &urls {
        assert!(
            url.starts_with(&format!("{origin}/")),
            "a request left the origin: {url}"
        );
    }

    if let Ok(path) = std::env::var("LL_CONSOLE_SCREENSHOT") {
        browser
            .exec("window.scrollTo(0, 0); return null", json!([]))
            .await
            .unwrap();
        let png = browser.screenshot().await.unwrap();
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("{path}: {e}"));
        eprintln!("console screenshot written to {path}");
    }
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_event_stream_needs_a_credential_or_a_fresh_ticket() {
    let mut stack = Stack::start().await;
    stack.provision().await;
    let base = start_gateway(&mut stack, &[]).await;

    let page = call(&base, "GET", "/console", None).await;
    assert_eq!(page.status, 200);
    let csp = page
        .header("content-security-policy")
        .unwrap_or_default()
        .to_owned();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("/console/assets/console-"));

    for (method, path) in [
        ("GET", "/console/events"),
        ("GET", "/console/events?ticket=0123456789abcdef"),
        ("POST", "/console/ticket"),
        ("GET", "/console/health"),
        ("GET", "/console/stream/artists"),
    ] {
        let r = call(&base, method, path, None).await;
        assert_eq!(r.status, 401, "{method} {path} without credentials");
    }
    let r = call(&base, "GET", "/console/events", Some("wrong-key")).await;
    assert_eq!(r.status, 401);

    let t = call(&base, "POST", "/console/ticket", Some(API_KEY)).await;
    assert_eq!(t.status, 200);
    let ticket: Value = serde_json::from_str(&t.text().await.unwrap()).unwrap();
    let path = format!(
        "/console/events?ticket={}",
        ticket["ticket"].as_str().unwrap()
    );
    let mut events = call(&base, "GET", &path, None).await;
    assert_eq!(events.status, 200);
    assert_eq!(events.header("content-type"), Some("text/event-stream"));
    let first = events.next_line().await.unwrap().unwrap();
    assert_eq!(first, "event: hello");
    assert_eq!(
        call(&base, "GET", &path, None).await.status,
        401,
        "a ticket is single use"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_open_event_streams_keep_the_gateway_under_64_mib() {
    let mut stack = Stack::start().await;
    stack.provision().await;
    stack.start_broker().await;
    let env = console_env(&stack);
    let base = start_gateway(&mut stack, &env).await;

    let mut streams = Vec::new();
    for _ in 0..50 {
        let s = call(&base, "GET", "/console/events", Some(API_KEY)).await;
        assert_eq!(s.status, 200);
        streams.push(s);
    }
    // Events reach every stream: 20 notifications of 1 KiB published as a service would.
    let mqtt: lambdaless_runtime::MqttSettings = serde_json::from_value(json!({
        "host": "127.0.0.1", "port": stack.broker_mqtt_port().await,
        "username": "service", "password": MQTT_SERVICE_PASSWORD,
    }))
    .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let publisher = lambdaless_runtime::mqtt::connect(&mqtt, vec![], false, stop.clone());
    eventually(Duration::from_secs(30), "the test publisher", || {
        let up = publisher.connection.is_connected();
        async move { up.then_some(()) }
    })
    .await;
    // The gateway's observer connection is up once a stream says so (at the
    // latest in the `broker` event every 5 s).
    let up = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = streams[0].next_line().await.unwrap() {
            if line == r#"data: {"broker":true}"# {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        up,
        Ok(true),
        "the gateway never reported its broker connection"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pad = "x".repeat(1024);
    for n in 0..20 {
        let payload = json!({ "uuid": "mem-test", "messageId": n.to_string(), "pad": pad });
        publisher
            .connection
            .publish_acked(
                "notification/mem-test".into(),
                payload.to_string().into_bytes(),
            )
            .unwrap();
    }
    for (i, s) in streams.iter_mut().enumerate() {
        let seen = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = s.next_line().await.unwrap() {
                if line.contains("\"messageId\":\"19\"") {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(
            seen,
            Ok(true),
            "stream {i} did not get the last notification"
        );
    }
    let gateway = stack.service("api-gateway").id().to_owned();
    let out = docker_cli(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.MemUsage}}",
        &gateway,
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mib = parse_mib(text.split('/').next().unwrap_or_default());
    eprintln!("api-gateway with 50 open event streams: {text}");
    assert!(
        mib < 64.0,
        "api-gateway uses {mib:.1} MiB with 50 streams (limit 64)"
    );
    stop.cancel();

    // SIGTERM ends the open streams, so the gateway exits cleanly within its grace period.
    let gateway = stack.service("api-gateway");
    gateway.stop(20);
    assert_eq!(gateway.state(), (false, 0), "{}", gateway.logs());
    drop(streams);
}

/// `12.5MiB`, `900KiB`, `1.1GiB` → MiB.
fn parse_mib(text: &str) -> f64 {
    let t = text.trim();
    let (number, unit) = t.split_at(t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len()));
    let n: f64 = number
        .parse()
        .unwrap_or_else(|_| panic!("docker stats: {text:?}"));
    match unit {
        "B" => n / 1048576.0,
        "KiB" | "kB" => n / 1024.0,
        "MiB" | "MB" => n,
        "GiB" | "GB" => n * 1024.0,
        other => panic!("docker stats unit {other:?}"),
    }
}
