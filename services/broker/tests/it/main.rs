//! The broker as its clients see it: real sockets on 127.0.0.1, no mocks.

mod helpers;
mod sessions;
mod shedding;

use std::collections::BTreeSet;
use std::time::Duration;

use helpers::{
    connack, http_get, sample, spawn_app, spawn_app_with, subscribed, until, ws_connect, TestApp,
};
use rumqttc::{AsyncClient, ConnectReturnCode, ConnectionError, Event, Packet, QoS};
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_subscribes_and_receives_its_own_qos1_publish() {
    let app = spawn_app().await;
    let (client, mut eventloop) = app.client("echo").await;

    subscribed(&client, &mut eventloop, "it/echo/#", QoS::AtLeastOnce).await;

    // Close to the 256 KiB packet limit the project's clients use.
    let payload = vec![b'x'; 200 * 1024];
    client
        .publish("it/echo/big", QoS::AtLeastOnce, false, payload.clone())
        .await
        .unwrap();
    let received = until(&mut eventloop, |p| match p {
        Packet::Publish(publish) => Some(publish),
        _ => None,
    })
    .await;
    assert_eq!(received.topic, "it/echo/big");
    assert_eq!(received.qos, QoS::AtLeastOnce);
    assert_eq!(received.payload.len(), payload.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_with_connack_not_authorized() {
    let app = spawn_app().await;
    let (_client, mut eventloop) =
        AsyncClient::new(app.options("intruder", Some(("local", "wrong"))), 8);
    let refusal = connack(&mut eventloop).await.unwrap_err();
    assert!(
        matches!(
            refusal,
            ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized)
        ),
        "{refusal:?}"
    );
    let metrics = app.metrics().await;
    let failures = sample(
        &metrics,
        "broker_auth_failures_total",
        "reason=\"bad_password\"",
    );
    assert!(failures >= Some(1.0), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_user_and_a_client_without_login_are_refused() {
    let app = spawn_app().await;
    for login in [Some(("mallory", "local")), None] {
        let (_client, mut eventloop) = AsyncClient::new(app.options("stranger", login), 8);
        let refusal = connack(&mut eventloop).await.unwrap_err();
        assert!(
            matches!(
                refusal,
                ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized)
            ),
            "{login:?}: {refusal:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_subscribers_split_the_messages() {
    let app = spawn_app().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut subscribers = Vec::new();
    for name in ["worker-a", "worker-b"] {
        let (client, mut eventloop) = app.client(name).await;
        subscribed(&client, &mut eventloop, "$share/g/t/#", QoS::AtLeastOnce).await;
        let tx = tx.clone();
        subscribers.push(tokio::spawn(async move {
            let _client = client;
            while let Ok(event) = eventloop.poll().await {
                if let Event::Incoming(Packet::Publish(p)) = event {
                    let _ = tx.send((name, String::from_utf8(p.payload.to_vec()).unwrap()));
                }
            }
        }));
    }

    let (publisher, mut eventloop) = app.client("producer").await;
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    for i in 0..20 {
        publisher
            .publish("t/jobs", QoS::AtLeastOnce, false, i.to_string())
            .await
            .unwrap();
    }

    let mut seen = BTreeSet::new();
    let mut per_worker = [0usize; 2];
    tokio::time::timeout(Duration::from_secs(5), async {
        while seen.len() < 20 {
            let (name, payload) = rx.recv().await.unwrap();
            assert!(
                seen.insert(payload.clone()),
                "message {payload} delivered twice"
            );
            per_worker[usize::from(name == "worker-b")] += 1;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("20 messages within 5 s; got {}", seen.len()));
    assert_eq!(per_worker.iter().sum::<usize>(), 20);
    assert!(
        per_worker.iter().all(|&n| n > 0),
        "both workers got some: {per_worker:?}"
    );
    for s in subscribers {
        s.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_and_metrics_report_the_broker() {
    let app = spawn_app().await;
    let (status, body) = http_get(app.admin, "/readyz").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(http_get(app.admin, "/healthz").await.unwrap().0, 200);

    let (client, mut eventloop) = app.client("metered").await;
    client
        .publish("it/metered", QoS::AtLeastOnce, false, "m")
        .await
        .unwrap();
    until(&mut eventloop, |p| {
        matches!(p, Packet::PubAck(_)).then_some(())
    })
    .await;

    let metrics = app.metrics().await;
    assert!(
        sample(&metrics, "broker_connections", "listener=\"mqtt\"") >= Some(1.0),
        "{metrics}"
    );
    for name in [
        "broker_connections_total",
        "broker_auth_failures_total",
        "broker_received_bytes_total",
        "broker_sent_bytes_total",
        "broker_session_errors_total",
        "broker_wills_published_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }
    // Counted as the session hands the publish to the router.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = app.metrics().await;
        if sample(&metrics, "broker_publishes_received_total", "") >= Some(1.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no publish counted:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_clients_log_in_and_get_refusal_codes_too() {
    let app = spawn_app().await;
    assert_eq!(ws_connect(app.ws, ("local", "local")).await, 0);
    assert_eq!(ws_connect(app.ws, ("local", "wrong")).await, 5);
    assert_eq!(ws_connect(app.ws, ("nobody", "local")).await, 5);
    let (status, body) = http_get(app.ws, "/").await.unwrap();
    assert_eq!(
        status, 426,
        "a plain HTTP request is told to upgrade: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_beyond_max_connections_get_server_unavailable() {
    let app = spawn_app_with(|s| s.max_connections = 1).await;
    let (first, mut first_loop) = app.client("first").await;
    let (_second, mut eventloop) =
        AsyncClient::new(app.options("second", Some(("local", "local"))), 8);
    let refusal = connack(&mut eventloop).await.unwrap_err();
    assert!(
        matches!(
            refusal,
            ConnectionError::ConnectionRefused(ConnectReturnCode::ServiceUnavailable)
        ),
        "{refusal:?}"
    );
    // The first session is unaffected.
    subscribed(&first, &mut first_loop, "it/one", QoS::AtMostOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_over_the_payload_limit_ends_the_session() {
    let app = spawn_app_with(|s| s.max_payload_bytes = 64 * 1024).await;
    let mut options = app.options("greedy", Some(("local", "local")));
    options.set_max_packet_size(1024 * 1024, 1024 * 1024);
    let (client, mut eventloop) = AsyncClient::new(options, 8);
    connack(&mut eventloop).await.unwrap();
    client
        .publish("it/big", QoS::AtLeastOnce, false, vec![0u8; 100 * 1024])
        .await
        .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .expect("an outcome within 5 s");
    assert!(
        outcome.is_err(),
        "an oversized publish must not be acknowledged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_accepting_and_run_returns_promptly() {
    let TestApp {
        mqtt,
        shutdown,
        task,
        ..
    } = spawn_app().await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("run returns within 2 s")
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(mqtt).await.is_err(),
        "listener closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_mode_admits_clients_without_login() {
    let app = spawn_app_with(|s| {
        s.users.clear();
        s.allow_anonymous = true;
    })
    .await;
    let (_client, mut eventloop) = AsyncClient::new(app.options("anonymous", None), 8);
    connack(&mut eventloop).await.expect("no login needed");
}

/// Opens a socket and sends nothing: a half-open login.
async fn half_open(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(addr).await.unwrap()
}

/// Whether the broker closed `stream` (read returns 0 or an error) within 5 s.
async fn closed_by_broker(stream: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_sockets_beyond_max_pending_connects_make_room_for_a_login() {
    let app = spawn_app_with(|s| {
        s.max_pending_connects = 8;
        s.connection_timeout_ms = 60_000;
    })
    .await;
    let mut flood = Vec::new();
    for _ in 0..40 {
        flood.push(half_open(app.mqtt).await);
    }
    // The oldest were closed to keep at most 8 waiting, long before the
    // 60 s CONNECT deadline.
    assert!(
        closed_by_broker(&mut flood[0]).await,
        "the oldest half-open socket is closed"
    );
    // A client that logs in right away is served, over TCP and WebSocket.
    // (`client` waits for CONNACK 0.)
    let (_client, _eventloop) = app.client("prompt").await;
    assert_eq!(ws_connect(app.ws, ("local", "local")).await, 0);
    let metrics = app.metrics().await;
    assert!(
        sample(
            &metrics,
            "broker_connects_refused_total",
            "reason=\"pending_connects\""
        )
        .is_some_and(|n| n >= 30.0),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_frame_flood_before_connect_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(|s| s.connection_timeout_ms = 60_000).await;
    let mut stream = tokio::net::TcpStream::connect(app.ws).await.unwrap();
    stream
        .write_all(
            b"GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Protocol: mqtt\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = vec![0u8; 1024];
    let n = stream.read(&mut head).await.unwrap();
    let head = String::from_utf8_lossy(&head[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    // Empty masked binary frames, far more than a CONNECT needs.
    let empty = [0x82u8, 0x80, 1, 2, 3, 4];
    let flood: Vec<u8> = empty
        .iter()
        .copied()
        .cycle()
        .take(empty.len() * 1000)
        .collect();
    let _ = stream.write_all(&flood).await;
    assert!(
        closed_by_broker(&mut stream).await,
        "the flood is cut off before the 60 s deadline"
    );
    let metrics = app.metrics().await;
    assert!(
        sample(
            &metrics,
            "broker_connects_refused_total",
            "reason=\"ws_frames\""
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    assert_eq!(ws_connect(app.ws, ("local", "local")).await, 0);
}
