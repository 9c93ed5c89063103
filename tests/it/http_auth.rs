//! Least privilege on the HTTP services, as a user sees it: JWT claims
//! (`exp`, `nbf`, `aud`), the fetch bridge using the caller's own reply
//! queue (`x-user-id` for `admin` only), the streamer's per-table scopes,
//! `/dump`'s own scope and bound, per-principal stream caps, failed
//! authentication throttled per address, and `/readyz` answered from cache.

use lambdaless_client::provision::Provisioner;
use lambdaless_contracts::names;
use lambdaless_testkit::{eventually, Stack, API_KEY};
use serde_json::{json, Value};

use crate::http::{counter, get_with_key, jwt, request};

const SECRET: &str = "http-auth-secret";
const AUDIENCE: &str = "lambdaless-tests";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn bearer(claims: Value) -> String {
    format!("Bearer {}", jwt(claims, SECRET))
}

/// A gateway and fetch-responder with alice's and bob's reply queues and a document.
async fn fetch_stack() -> (Stack, u16) {
    let mut stack = Stack::start().await;
    stack.provision().await;
    Provisioner::new(stack.aws.clone(), stack.names.clone())
        .provision(&["alice".to_owned(), "bob".to_owned()])
        .await
        .expect("reply queues");
    let doc = json!({"id": "doc-1", "title": "mine"});
    stack
        .put_item(names::DOCUMENTS, doc.as_object().unwrap())
        .await;
    stack.start_service("fetch-responder").await;
    let keys = format!(
        "{API_KEY}=*@local,alice-key=fetch@alice,carol-key=fetch@carol,anon-fetch=fetch,reader=users:read"
    );
    stack
        .start_service_unchecked(
            "api-gateway",
            &[
                ("LAMBDALESS_AUTH__API_KEYS", keys.as_str()),
                ("LAMBDALESS_AUTH__JWT_SECRET", SECRET),
                ("LAMBDALESS_AUTH__JWT_AUDIENCE", AUDIENCE),
            ],
        )
        .await;
    lambdaless_testkit::wait_ready(stack.service("api-gateway"), 8080).await;
    let port = stack.service("api-gateway").host_port(8080).await;
    (stack, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_claims_are_enforced_and_fetch_uses_the_callers_own_queue() {
    let (_stack, port) = fetch_stack().await;
    let exp = now() + 600;
    let read = |auth: String| async move {
        request(
            port,
            "GET",
            "/users/nobody",
            &[("authorization", &auth)],
            None,
        )
        .await
    };
    // A valid token passes authentication (404: no such user).
    let r = read(bearer(
        json!({"sub":"bob","scope":"users:read","exp":exp,"aud":AUDIENCE}),
    ))
    .await;
    assert_eq!(r.status, 404, "{}", r.body);
    for (what, claims) in [
        (
            "no exp",
            json!({"sub":"bob","scope":"users:read","aud":AUDIENCE}),
        ),
        (
            "expired",
            json!({"sub":"bob","scope":"users:read","aud":AUDIENCE,"exp":now() - 3600}),
        ),
        (
            "nbf an hour ahead",
            json!({"sub":"bob","scope":"users:read","aud":AUDIENCE,"exp":exp,"nbf":now() + 3600}),
        ),
        (
            "wrong aud",
            json!({"sub":"bob","scope":"users:read","aud":"someone-else","exp":exp}),
        ),
        (
            "no aud",
            json!({"sub":"bob","scope":"users:read","exp":exp}),
        ),
    ] {
        let r = read(bearer(claims)).await;
        assert_eq!(r.status, 401, "{what}: {}", r.body);
        assert_eq!(r.json()["message"], "invalid credentials", "{what}");
    }

    let fetch = |headers: Vec<(&'static str, String)>| async move {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = request(port, "GET", "/fetch/doc-1", &h, None).await;
        (r.status, r.json())
    };
    let key = |k: &str| ("x-api-key", k.to_owned());
    // A key bound to alice fetches through alice's queue, with no header.
    let (status, body) = fetch(vec![key("alice-key")]).await;
    assert_eq!(
        (status, &body),
        (200, &json!({"id":"doc-1","title":"mine"})),
        "{body}"
    );
    // A key bound to carol uses carol's queue, which does not exist: never anyone else's.
    let (status, body) = fetch(vec![key("carol-key")]).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("\"carol\""),
        "{body}"
    );
    // Naming another user needs the admin scope.
    let (status, body) = fetch(vec![key("alice-key"), ("x-user-id", "bob".into())]).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("admin"),
        "{body}"
    );
    let (status, body) = fetch(vec![key(API_KEY), ("x-user-id", "bob".into())]).await;
    assert_eq!(status, 200, "admin acts for bob: {body}");
    // A key bound to no user, and a token without sub, have no queue of their own.
    let (status, body) = fetch(vec![key("anon-fetch")]).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("no user"),
        "{body}"
    );
    let no_sub = bearer(json!({"scope":"fetch","exp":exp,"aud":AUDIENCE}));
    let (status, body) = fetch(vec![("authorization", no_sub.clone())]).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = fetch(vec![
        ("authorization", no_sub),
        ("x-user-id", "alice".into()),
    ])
    .await;
    assert_eq!(status, 403, "sub-less JWT naming a user: {body}");
    // A token's sub is its user.
    let bob = bearer(json!({"sub":"bob","scope":"fetch","exp":exp,"aud":AUDIENCE}));
    let (status, body) = fetch(vec![("authorization", bob)]).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = fetch(vec![key("reader")]).await;
    assert_eq!(status, 403, "fetch needs its scope");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_keys_from_one_address_get_429_and_readyz_is_cached() {
    let mut stack = Stack::start().await;
    stack.provision().await;
    stack.start_service("api-gateway").await;
    stack
        .start_service_unchecked(
            "streamer",
            &[
                ("LAMBDALESS_THROTTLE__RATE_PER_SEC", "0.1"),
                ("LAMBDALESS_THROTTLE__BURST", "3"),
            ],
        )
        .await;
    lambdaless_testkit::wait_ready(stack.service("streamer"), 8081).await;
    let gateway = stack.service("api-gateway").host_port(8080).await;
    let streamer = stack.service("streamer").host_port(8081).await;

    // The gateway's per-principal rate applies to the streamer too.
    for _ in 0..3 {
        let r = get_with_key(streamer, "/stream/documents", API_KEY).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = get_with_key(streamer, "/stream/documents", API_KEY).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.json()["message"], "too many requests");

    let mut statuses = Vec::new();
    for i in 0..300 {
        let key = format!("wrong-key-{i}");
        let r = get_with_key(gateway, "/users/nobody", &key).await;
        if r.status == 429 {
            assert!(r.header("retry-after").is_some(), "429 without Retry-After");
            assert!(
                r.json()["message"].as_str().unwrap().contains("failed"),
                "{}",
                r.body
            );
        }
        statuses.push(r.status);
    }
    let unauthorized = statuses.iter().filter(|s| **s == 401).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    eprintln!("300 wrong keys: {unauthorized} × 401, {throttled} × 429");
    assert!(statuses[..30].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(throttled >= 250, "{unauthorized} × 401, {throttled} × 429");
    assert_eq!(unauthorized + throttled, 300, "{statuses:?}");
    // The block covers good keys from that address too (no oracle for guesses).
    let r = get_with_key(gateway, "/users/nobody", API_KEY).await;
    assert_eq!(r.status, 429, "{}", r.body);
    // Health stays open.
    assert_eq!(
        request(gateway, "GET", "/healthz", &[], None).await.status,
        200
    );

    // The streamer throttles failures the same way...
    let mut streamer_429 = 0;
    for i in 0..40 {
        let key = format!("wrong-{i}");
        let r = get_with_key(streamer, "/stream/artists", &key).await;
        streamer_429 += usize::from(r.status == 429);
    }
    assert!(streamer_429 >= 5, "streamer: {streamer_429} × 429 of 40");

    // /readyz answers from a cached evaluation, not live AWS calls per probe.
    let (_, metrics) = lambdaless_testkit::http_get(streamer, "/metrics")
        .await
        .unwrap();
    let before = counter(&metrics, "readiness_evaluations_total", &[]);
    for _ in 0..50 {
        assert_eq!(
            request(streamer, "GET", "/readyz", &[], None).await.status,
            200
        );
    }
    let (_, metrics) = lambdaless_testkit::http_get(streamer, "/metrics")
        .await
        .unwrap();
    let evaluations = counter(&metrics, "readiness_evaluations_total", &[]) - before;
    eprintln!("50 × /readyz: {evaluations} evaluations");
    assert!(
        evaluations < 50.0,
        "{evaluations} evaluations for 50 probes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamer_tables_need_their_scope_and_dump_its_own() {
    let mut stack = Stack::start().await;
    stack.provision().await;
    let keys = format!(
        "{API_KEY}=*@local,fetcher=fetch@alice,artists=stream:read,writer=stream:write,devices=devices:read"
    );
    stack
        .start_service_unchecked(
            "streamer",
            &[
                ("LAMBDALESS_AUTH__API_KEYS", keys.as_str()),
                ("LAMBDALESS_MAX_STREAMS_PER_PRINCIPAL", "1"),
                ("LAMBDALESS_MAX_SEGMENTS_PER_PRINCIPAL", "4"),
            ],
        )
        .await;
    lambdaless_testkit::wait_ready(stack.service("streamer"), 8081).await;
    let base = format!(
        "http://127.0.0.1:{}",
        stack.service("streamer").host_port(8081).await
    );
    let call = |method: &'static str, path: String, key: &'static str| {
        let base = base.clone();
        async move {
            let r = lambdaless_client::stream::request(&base, method, &path, &[("x-api-key", key)])
                .await
                .unwrap();
            let status = r.status;
            (status, r.text().await.unwrap())
        }
    };
    let message = |body: &str| -> String {
        let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        v["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no message: {v}"))
            .to_owned()
    };

    // A fetch-only key writes nothing and reads only documents.
    let (status, body) = call("POST", "/dump?count=1000000".into(), "fetcher").await;
    assert_eq!(status, 403, "{body}");
    assert!(message(&body).contains("stream:write"), "{body}");
    for table in ["customers", "orders", "device-messages", "artists"] {
        let (status, body) = call("GET", format!("/stream/{table}"), "fetcher").await;
        assert_eq!(status, 403, "{table}: {body}");
        assert!(message(&body).contains("missing scope"), "{body}");
    }
    assert_eq!(
        call("GET", "/stream/documents".into(), "fetcher").await.0,
        200
    );
    assert_eq!(
        call("GET", "/stream/device-messages".into(), "devices")
            .await
            .0,
        200
    );
    let (status, _) = call("GET", "/stream/orders".into(), "artists").await;
    assert_eq!(status, 403);

    // /dump: its own scope, and a bounded count.
    let (status, body) = call("POST", "/dump?count=100001".into(), "writer").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        message(&body).contains("count must be 1..=100000"),
        "{body}"
    );
    let (status, body) = call("POST", "/dump?count=400".into(), "writer").await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = call("GET", "/stream/artists".into(), "writer").await;
    assert_eq!(status, 403, "writing is not reading");

    // Caps per principal: segments over the cap, and a second stream at once.
    let (status, body) = call("GET", "/stream/artists?segments=5".into(), "artists").await;
    assert_eq!(status, 400, "{body}");
    // 400 single-item pages keep the first stream busy while the second asks.
    let first = lambdaless_client::stream::request(
        &base,
        "GET",
        "/stream/artists?page_size=1",
        &[("x-api-key", "artists")],
    )
    .await
    .unwrap();
    assert_eq!(first.status, 200);
    let (status, body) = call("GET", "/stream/artists".into(), "artists").await;
    assert_eq!(status, 429, "{body}");
    assert!(message(&body).contains("concurrent streams"), "{body}");
    // Another principal is not affected; the slot comes back after a disconnect.
    assert_eq!(call("GET", "/stream/artists".into(), API_KEY).await.0, 200);
    drop(first);
    eventually(
        std::time::Duration::from_secs(30),
        "the stream slot back",
        || {
            let call = &call;
            async move {
                let (status, body) =
                    call("GET", "/stream/artists?segments=4".into(), "artists").await;
                (status == 200).then_some(body.lines().count())
            }
        },
    )
    .await;
}
