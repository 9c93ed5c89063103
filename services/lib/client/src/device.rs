//! `lambdaless device ...`: talk to the seed 2 device API like a device or a
//! dashboard would, and wait for the answers the seed's scripts never showed.
//!
//! One MQTT connection per process, subscribed once to `response/+/{token}`
//! with one random token (the broker keeps every distinct filter forever, so
//! never one filter per request), plus `notification/...` where needed.

use std::time::Duration;

use anyhow::{bail, Context};
use lambdaless_contracts::{names, topics, Names};
use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, Publish, QoS};
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// How to reach the broker.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct MqttArgs {
    #[cfg_attr(
        feature = "clap",
        arg(
            long = "mqtt-host",
            env = "LAMBDALESS_MQTT__HOST",
            default_value = "localhost"
        )
    )]
    pub host: String,
    #[cfg_attr(
        feature = "clap",
        arg(
            long = "mqtt-port",
            env = "LAMBDALESS_MQTT__PORT",
            default_value_t = 1883
        )
    )]
    pub port: u16,
    #[cfg_attr(
        feature = "clap",
        arg(
            long = "mqtt-user",
            env = "LAMBDALESS_MQTT__USERNAME",
            default_value = "local"
        )
    )]
    pub user: String,
    #[cfg_attr(
        feature = "clap",
        arg(
            long = "mqtt-password",
            env = "LAMBDALESS_MQTT__PASSWORD",
            default_value = "local"
        )
    )]
    pub password: String,
}

/// A broker session of the CLI: publishes and the publishes it receives.
pub struct Session {
    client: AsyncClient,
    incoming: mpsc::UnboundedReceiver<Publish>,
    task: tokio::task::JoinHandle<()>,
    /// This process's token; every answer comes on `response/{op}/{token}`.
    pub token: String,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Session {
    /// Connects, subscribes to this process's response topics and `extra`,
    /// and waits for the broker to confirm every subscription.
    pub async fn connect(args: &MqttArgs, extra: &[String]) -> anyhow::Result<Self> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut options = MqttOptions::new(format!("cli-{}", &token[..12]), &args.host, args.port);
        options.set_credentials(&args.user, &args.password);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(256 * 1024, 256 * 1024);
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        let mut network = rumqttc::NetworkOptions::new();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        let mut filters = vec![topics::response_filter(&token)];
        filters.extend(extra.iter().cloned());
        for f in &filters {
            client.subscribe(f.clone(), QoS::AtLeastOnce).await?;
        }
        let (tx, incoming) = mpsc::unbounded_channel();
        let (ready_tx, mut ready) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send(p);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(Ok(()));
                    }
                    Ok(Event::Incoming(Packet::ConnAck(a)))
                        if a.code != ConnectReturnCode::Success =>
                    {
                        let _ =
                            ready_tx.send(Err(format!("broker refused the login: {:?}", a.code)));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        let broker = format!("{}:{}", args.host, args.port);
        for _ in &filters {
            match tokio::time::timeout(Duration::from_secs(10), ready.recv()).await {
                Ok(Some(Ok(()))) => {}
                Ok(Some(Err(e))) => bail!("MQTT broker {broker}: {e}"),
                _ => bail!("MQTT broker {broker}: no answer within 10 s"),
            }
        }
        Ok(Self {
            client,
            incoming,
            task,
            token,
        })
    }

    /// Publishes `payload` (JSON) at QoS 1.
    pub async fn publish(&self, topic: &str, payload: &Value) -> anyhow::Result<()> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.to_string())
            .await?;
        Ok(())
    }

    /// The next publish, or `None` after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Publish> {
        tokio::time::timeout(timeout, self.incoming.recv())
            .await
            .ok()
            .flatten()
    }

    /// Sends one API request and waits for its answer on `response/{op}/{token}`.
    pub async fn request(
        &mut self,
        op: &str,
        uuid: &str,
        rest: Option<&str>,
        mut payload: Value,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        payload["token"] = json!(self.token);
        self.publish(&topics::request(op, uuid, rest), &payload)
            .await?;
        let expected = topics::response(op, &self.token);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(p) = self.next(left).await else {
                bail!("no answer on {expected} within {timeout:?} (is mqtt-api running?)");
            };
            if p.topic == expected {
                return serde_json::from_slice(&p.payload).context("answer is not JSON");
            }
        }
    }
}

/// `device send THING [--body JSON]`: puts a message on `device-inbound` and
/// waits for mover's notification; returns the stored messageId.
pub async fn send_inbound(
    args: &MqttArgs,
    names: &Names,
    thing: &str,
    body: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<String> {
    if !topics::is_single_level(thing) {
        bail!("THING must be a single topic level (no / + #)");
    }
    let body: Value = match body {
        Some(b) => serde_json::from_str(b).context("--body is not JSON")?,
        None => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            json!({"thingName": thing, "epochTime": now.to_string(), "tempSensor1F": "72", "tempSensor2F": "70"})
        }
    };
    let mut session = Session::connect(args, &[topics::notification(thing)]).await?;
    let aws = lambdaless_runtime::aws::load().await;
    let queue = names.name(names::DEVICE_INBOUND);
    let url = aws
        .sqs
        .get_queue_url()
        .queue_name(&queue)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("queue {queue}: {}", lambdaless_runtime::aws::describe(&e)))?
        .queue_url
        .context("no queue URL")?;
    let sent = aws
        .sqs
        .send_message()
        .queue_url(url)
        .message_body(body.to_string())
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("send: {}", lambdaless_runtime::aws::describe(&e)))?;
    let sqs_id = sent.message_id.unwrap_or_default();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(p) = session.next(left).await else {
            bail!("sent as SQS message {sqs_id}, but no notification within {timeout:?} (is mover running? does the body name {thing}?)");
        };
        let note: Value = serde_json::from_slice(&p.payload).unwrap_or_default();
        if let Some(id) = note["messageId"].as_str() {
            if id.ends_with(&sqs_id) {
                return Ok(id.to_owned());
            }
        }
    }
}

/// `device watch [THING]`: prints every notification until interrupted.
pub async fn watch(args: &MqttArgs, thing: Option<&str>) -> anyhow::Result<()> {
    let filter = topics::notification(thing.unwrap_or("+"));
    let mut session = Session::connect(args, std::slice::from_ref(&filter)).await?;
    eprintln!("watching {filter} (Ctrl-C to stop)");
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            p = session.next(Duration::from_secs(3600)) => {
                if let Some(p) = p {
                    println!("{} {}", p.topic, String::from_utf8_lossy(&p.payload));
                }
            }
        }
    }
}
