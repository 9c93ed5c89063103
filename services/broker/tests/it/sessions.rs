//! What a session keeps now that rumqttd's listeners are gone: wills, and
//! whose session a client id can take over.

use std::time::Duration;

use rumqttc::{AsyncClient, ConnectReturnCode, ConnectionError, Event, LastWill, Packet, QoS};

use crate::helpers::{connack, spawn_app, subscribed, until};

/// Polls `eventloop` for up to `wait`; the first incoming PUBLISH, if any.
async fn next_publish(
    eventloop: &mut rumqttc::EventLoop,
    wait: Duration,
) -> Option<rumqttc::Publish> {
    tokio::time::timeout(wait, async {
        loop {
            if let Event::Incoming(Packet::Publish(p)) =
                eventloop.poll().await.expect("watcher stays up")
            {
                return p;
            }
        }
    })
    .await
    .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_will_is_published_when_a_client_vanishes_and_not_after_disconnect() {
    let app = spawn_app().await;
    let (watcher, mut watching) = app.client("will-watcher").await;
    subscribed(&watcher, &mut watching, "wills/#", QoS::AtLeastOnce).await;

    // A client that says goodbye: no will.
    let mut options = app.options("polite", Some(("local", "local")));
    options.set_last_will(LastWill::new(
        "wills/polite",
        "gone",
        QoS::AtLeastOnce,
        false,
    ));
    let (polite, mut eventloop) = AsyncClient::new(options, 8);
    connack(&mut eventloop).await.unwrap();
    polite.disconnect().await.unwrap();
    while eventloop.poll().await.is_ok() {}

    // A client whose socket just closes: its will goes out.
    let mut options = app.options("vanishing", Some(("local", "local")));
    options.set_last_will(LastWill::new(
        "wills/vanishing",
        "lost",
        QoS::AtLeastOnce,
        false,
    ));
    let (_vanishing, mut eventloop) = AsyncClient::new(options, 8);
    connack(&mut eventloop).await.unwrap();
    drop(eventloop);

    let will = next_publish(&mut watching, Duration::from_secs(5))
        .await
        .expect("the vanished client's will within 5 s");
    assert_eq!(will.topic, "wills/vanishing");
    assert_eq!(&will.payload[..], b"lost");
    assert!(
        next_publish(&mut watching, Duration::from_millis(500))
            .await
            .is_none(),
        "no will for the client that disconnected"
    );
    let metrics = app.metrics().await;
    assert_eq!(
        crate::helpers::sample(&metrics, "broker_wills_published_total", ""),
        Some(1.0),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_leave_a_will_on_a_topic_it_may_not_publish_on() {
    let app = spawn_app().await;
    // A forged answer left as a will would reach whoever waits on it.
    let mut options = app.options("forger", Some(("dev", "dev")));
    options.set_last_will(LastWill::new(
        "response/get/someone",
        "{}",
        QoS::AtMostOnce,
        false,
    ));
    let (_c, mut eventloop) = AsyncClient::new(options, 8);
    match connack(&mut eventloop).await {
        Err(ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, ConnectReturnCode::NotAuthorized)
        }
        other => panic!("expected CONNACK 5, got {other:?}"),
    }

    // A will on a topic the device may publish on is fine.
    let mut options = app.options("honest", Some(("dev", "dev")));
    options.set_last_will(LastWill::new(
        "request/get/bye",
        "{}",
        QoS::AtMostOnce,
        false,
    ));
    let (_c, mut eventloop) = AsyncClient::new(options, 8);
    connack(&mut eventloop).await.expect("accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_is_taken_over_only_by_the_same_user() {
    let app = spawn_app().await;
    let (service, mut service_loop) = app.client("mqtt-api-1").await;
    subscribed(&service, &mut service_loop, "it/takeover", QoS::AtLeastOnce).await;

    // Another user with the same client id gets a session of its own.
    let (_device, mut device_loop) =
        AsyncClient::new(app.options("mqtt-api-1", Some(("dev", "dev"))), 8);
    connack(&mut device_loop)
        .await
        .expect("the device is accepted");
    let device_poll = tokio::spawn(async move { while device_loop.poll().await.is_ok() {} });

    service
        .publish("it/takeover", QoS::AtLeastOnce, false, "still here")
        .await
        .unwrap();
    let got = until(&mut service_loop, |p| match p {
        Packet::Publish(p) => Some(p),
        _ => None,
    })
    .await;
    assert_eq!(
        &got.payload[..],
        b"still here",
        "the service's session survived"
    );

    // The same user with the same id takes the session over (MQTT's rule).
    let (_again, mut again_loop) =
        AsyncClient::new(app.options("mqtt-api-1", Some(("local", "local"))), 8);
    connack(&mut again_loop).await.expect("accepted");
    let kicked = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if service_loop.poll().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(
        kicked.is_ok(),
        "the first session was ended by its own user's new one"
    );
    device_poll.abort();
}

/// Reads from `stream` until `n` bytes are there (5 s at most).
async fn read_at_least(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>, n: usize) {
    use tokio::io::AsyncReadExt;
    tokio::time::timeout(Duration::from_secs(5), async {
        while buf.len() < n {
            assert!(
                stream.read_buf(buf).await.unwrap() > 0,
                "closed early: {buf:?}"
            );
        }
    })
    .await
    .expect("an answer within 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt5_qos2_publish_the_acl_refuses_gets_pubrec_not_authorized() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app().await;
    let mut stream = tokio::net::TcpStream::connect(app.mqtt).await.unwrap();
    // MQTT 5 CONNECT: clean start, keep-alive 10, no properties, login dev/dev.
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0xc2, 0, 10, 0];
    for field in ["v5-qos2", "dev", "dev"] {
        body.extend_from_slice(&(field.len() as u16).to_be_bytes());
        body.extend_from_slice(field.as_bytes());
    }
    let mut connect = vec![0x10, body.len() as u8];
    connect.extend(body);
    stream.write_all(&connect).await.unwrap();
    let mut got = Vec::new();
    read_at_least(&mut stream, &mut got, 4).await;
    assert_eq!(&got[..2], &[0x20, got[1]], "CONNACK first: {got:?}");
    assert_eq!(got[3], 0, "accepted: {got:?}");
    let connack_len = 2 + usize::from(got[1]);
    read_at_least(&mut stream, &mut got, connack_len).await;
    got.drain(..connack_len);

    // QoS 2 PUBLISH on a topic a device may not publish on (a forged answer).
    let topic = b"response/get/someone";
    let mut body = (topic.len() as u16).to_be_bytes().to_vec();
    body.extend_from_slice(topic);
    body.extend_from_slice(&[0, 7, 0]); // packet id 7, no properties
    body.extend_from_slice(b"{}");
    let mut publish = vec![0x34, body.len() as u8];
    publish.extend(body);
    stream.write_all(&publish).await.unwrap();
    read_at_least(&mut stream, &mut got, 5).await;
    assert_eq!(got[0], 0x50, "a PUBREC: {got:?}");
    assert_eq!(&got[2..4], &[0, 7], "for packet 7: {got:?}");
    assert_eq!(
        got[4], 0x87,
        "reason Not authorized, which ends the QoS 2 flow: {got:?}"
    );
}
