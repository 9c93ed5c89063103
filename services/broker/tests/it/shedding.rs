//! The per-connection publish rate of non-`service` users: QoS 0 over the
//! rate is dropped and counted, QoS 1 over it waits (nothing acknowledged
//! is lost), a `service` user is never limited.

use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, Packet, QoS};
use tokio::sync::mpsc;

use crate::helpers::{sample, spawn_app_with, subscribed, TestApp};

/// A `service` subscriber on `request/#` that reports each payload.
async fn subscriber(app: &TestApp) -> mpsc::UnboundedReceiver<String> {
    let (client, mut eventloop) = app.client("api").await;
    subscribed(&client, &mut eventloop, "request/#", QoS::AtLeastOnce).await;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _client = client;
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = event {
                let _ = tx.send(String::from_utf8_lossy(&p.payload).into_owned());
            }
        }
    });
    rx
}

/// Everything `rx` gets until it has been quiet for 1 s.
async fn drain(rx: &mut mpsc::UnboundedReceiver<String>) -> usize {
    let mut n = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
        n += 1;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_over_its_publish_rate_is_shed_at_qos0_and_slowed_at_qos1() {
    let app = spawn_app_with(|s| {
        s.device_publish_rate = 50;
        s.device_publish_burst = 10;
    })
    .await;
    let mut received = subscriber(&app).await;
    let mut options = app.options("device", Some(("dev", "dev")));
    options.set_inflight(20);
    let (device, mut eventloop) = AsyncClient::new(options, 1000);
    let (acked_tx, mut acked) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(Packet::PubAck(_)) = event {
                let _ = acked_tx.send(());
            }
        }
    });

    // 500 QoS 0 publishes at once: about the burst gets through.
    for i in 0..500 {
        device
            .publish("request/flood", QoS::AtMostOnce, false, i.to_string())
            .await
            .unwrap();
    }
    let passed = drain(&mut received).await;
    assert!(
        (10..200).contains(&passed),
        "{passed} of 500 QoS 0 publishes passed"
    );
    let metrics = app.metrics().await;
    let shed = sample(&metrics, "broker_publishes_shed_total", "").unwrap_or(0.0);
    assert_eq!(shed as usize + passed, 500, "every drop is counted");

    // 60 QoS 1 publishes: all delivered and acknowledged, at the rate.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    for i in 0..60 {
        device
            .publish("request/steady", QoS::AtLeastOnce, false, i.to_string())
            .await
            .unwrap();
    }
    for n in 0..60 {
        tokio::time::timeout(Duration::from_secs(10), acked.recv())
            .await
            .unwrap_or_else(|_| panic!("PUBACK {n} of 60 within 10 s"));
    }
    let took = started.elapsed();
    assert_eq!(
        drain(&mut received).await,
        60,
        "every QoS 1 publish arrives"
    );
    // 60 publishes, a burst of at most 10, then 50/s: at least ~0.9 s.
    assert!(took >= Duration::from_millis(800), "took only {took:?}");
    let metrics = app.metrics().await;
    let delayed = sample(&metrics, "broker_publishes_delayed_total", "").unwrap_or(0.0);
    assert!(delayed > 0.0, "{metrics}");

    // A service user is not limited: 500 QoS 0 publishes all pass.
    let (service, mut eventloop) = app.client("service").await;
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    for i in 0..500 {
        service
            .publish("request/fast", QoS::AtMostOnce, false, i.to_string())
            .await
            .unwrap();
    }
    assert_eq!(drain(&mut received).await, 500);
}
