//! One client session after its CONNECT was accepted: the client's socket
//! on one side, an in-process link to rumqttd's router on the other
//! (`router`), with the role's topic ACL and the publish rate between them.
//!
//! Client → router: the client's bytes (decoded from WebSocket frames on the
//! WebSocket listener) are split into packets by rumqttd's own codec, checked
//! and handed to the router in batches, one wake-up per read. A refused
//! PUBLISH is dropped and acknowledged here (MQTT 5: reason 0x87 "Not
//! authorized"), refused SUBSCRIBE filters are taken out and get 0x80 (MQTT 5:
//! 0x87) in their place in the router's SUBACK.
//!
//! Router → client: whatever the router has for the session is encoded into
//! one buffer and written with one call.
//!
//! The session also keeps what rumqttd's listeners kept: the keep-alive
//! (no packet for 1.5 × keep-alive ends it) and the will, published when the
//! session ends without DISCONNECT (after the MQTT 5 Will Delay Interval, if
//! the client does not come back before it). Router sessions are named
//! `{user}:{client id}`, so a client can only take over a session of its own
//! user.

mod codec;
mod filter;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use metrics::{counter, Counter};
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::protocol::{self, ConnAck, ConnectReturnCode, Packet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;

use codec::Codec;
pub(crate) use codec::Start;
use filter::{Filter, Flow};

use crate::acl::Role;
use crate::router::{self, LinkOptions, Router};
use crate::shed::PublishRate;
use crate::telemetry;
use crate::wire::{ws, Version};

/// Socket read buffer per session.
const READ_BUFFER: usize = 8 * 1024;
/// How long the client's data may wait for its TCP acknowledgement when
/// nothing more comes: until the timer's next tick, at most a millisecond
/// (Linux would wait up to 40 ms; see `ack_at_once`).
const ACK_DELAY: Duration = Duration::ZERO;
/// Notifications from the router written in one go, at most.
const MAX_WRITE_BATCH: usize = 256;

/// What the session is, besides its sockets.
pub(crate) struct Session {
    pub(crate) listener: &'static str,
    pub(crate) user: String,
    pub(crate) role: Role,
    pub(crate) version: Version,
    pub(crate) max_packet: usize,
    /// Packets handed to the router per wake-up, at most.
    pub(crate) max_batch: usize,
    pub(crate) rate: Option<PublishRate>,
    /// WebSocket: the client's frame decoder.
    pub(crate) ws: Option<ws::Decoder>,
}

/// An open router session, ready to run.
pub(crate) struct Opened {
    session: Session,
    start: Start,
    tx: LinkTx,
    rx: LinkRx,
    connack: Packet,
}

/// How a session ended.
enum End {
    /// The client sent DISCONNECT.
    Disconnected,
    /// The client closed its socket.
    Closed,
    KeepAlive,
    /// A packet rumqttd's codec or our checks refused, or a socket error.
    Error(String),
    /// The router ended the session (taken over by a client with the same
    /// id, or refused by the router).
    Router(String),
}

impl End {
    /// For the log.
    fn describe(&self) -> String {
        match self {
            Self::Disconnected => "client sent DISCONNECT".to_owned(),
            Self::Closed => "client closed".to_owned(),
            Self::KeepAlive => "keep-alive expired".to_owned(),
            Self::Error(e) => format!("error: {e}"),
            Self::Router(e) => format!("ended by the router: {e}"),
        }
    }

    fn fires_will(&self) -> bool {
        !matches!(self, Self::Disconnected | Self::Router(_))
    }
}

impl Session {
    /// Registers the session with the router. `Err` carries the CONNACK
    /// refusal reason to log; the caller answers "server unavailable".
    pub(crate) async fn open(self, router: &Router, start: Start) -> Result<Opened, String> {
        let generated = start.client_id.is_empty();
        let client_id = if generated {
            format!("lambdaless-{}", uuid::Uuid::new_v4().simple())
        } else {
            start.client_id.clone()
        };
        let options = LinkOptions {
            client_id: format!("{}:{client_id}", self.user),
            clean_session: start.clean_session,
            topic_alias_max: start.topic_alias_max,
        };
        let (tx, rx, notification) = router.link(options).await?;
        let Some(Packet::ConnAck(ack, properties)) = Option::<Packet>::from(notification) else {
            return Err("the router answered the CONNECT with something else".to_owned());
        };
        let properties = match (self.version, generated) {
            (Version::V5, true) => {
                let mut p = properties.unwrap_or_else(empty_connack_properties);
                p.assigned_client_identifier = Some(client_id);
                Some(p)
            }
            _ => properties,
        };
        Ok(Opened {
            session: self,
            start,
            tx,
            rx,
            connack: Packet::ConnAck(ack, properties),
        })
    }
}

fn empty_connack_properties() -> protocol::ConnAckProperties {
    protocol::ConnAckProperties {
        session_expiry_interval: None,
        receive_max: None,
        max_qos: None,
        retain_available: None,
        max_packet_size: None,
        assigned_client_identifier: None,
        topic_alias_max: None,
        reason_string: None,
        user_properties: Vec::new(),
        wildcard_subscription_available: None,
        subscription_identifiers_available: None,
        shared_subscription_available: None,
        server_keep_alive: None,
        response_information: None,
        server_reference: None,
        authentication_method: None,
        authentication_data: None,
    }
}

/// The client's socket, both halves, with its framing and counters.
struct Client<'a> {
    rx: ReadHalf<'a>,
    tx: WriteHalf<'a>,
    ws: Option<ws::Decoder>,
    max_frame: usize,
    received: Counter,
    sent: Counter,
    out: BytesMut,
}

impl Client<'_> {
    /// Encodes `packets` and writes them with one call (one WebSocket frame).
    async fn send(
        &mut self,
        codec: &Codec,
        packets: impl IntoIterator<Item = Packet>,
    ) -> Result<(), String> {
        self.out.clear();
        for packet in packets {
            codec
                .write(packet, &mut self.out)
                .map_err(|e| e.to_string())?;
        }
        if self.out.is_empty() {
            return Ok(());
        }
        let framed;
        let bytes: &[u8] = match self.ws {
            Some(_) => {
                framed = ws::frame(ws::OP_BINARY, &self.out, None);
                &framed
            }
            None => &self.out,
        };
        self.tx.write_all(bytes).await.map_err(|e| e.to_string())?;
        self.sent.increment(bytes.len() as u64);
        Ok(())
    }

    /// Reads what is there into `input` (MQTT bytes). `Ok(None)`: the
    /// client closed (or sent a WebSocket close); otherwise the pongs owed
    /// for WebSocket pings, to be written by [`Client::pong`] (not here: a
    /// read may be cancelled, and a half-written frame would corrupt the
    /// stream).
    async fn read(
        &mut self,
        raw: &mut Vec<u8>,
        input: &mut BytesMut,
    ) -> Result<Option<Vec<Vec<u8>>>, String> {
        raw.clear();
        let n = self.rx.read_buf(raw).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(None);
        }
        self.received.increment(n as u64);
        let Some(decoder) = &mut self.ws else {
            input.extend_from_slice(raw);
            return Ok(Some(Vec::new()));
        };
        decoder.feed(raw);
        let mut mqtt = Vec::new();
        let controls = decoder
            .decode(&mut mqtt, self.max_frame)
            .map_err(|e| e.to_string())?;
        input.extend_from_slice(&mqtt);
        let mut pongs = Vec::new();
        for control in controls {
            match control {
                ws::Control::Ping(payload) => pongs.push(payload),
                ws::Control::Close => return Ok(None),
            }
        }
        Ok(Some(pongs))
    }

    async fn pong(&mut self, payload: &[u8]) -> Result<(), String> {
        let pong = ws::frame(ws::OP_PONG, payload, None);
        self.tx.write_all(&pong).await.map_err(|e| e.to_string())?;
        self.sent.increment(pong.len() as u64);
        Ok(())
    }
}

impl Opened {
    /// Answers the CONNECT, then serves the session until it ends.
    /// Returns how it ended, for the log.
    pub(crate) async fn run(self, mut stream: TcpStream) -> String {
        let Opened {
            session,
            start,
            mut tx,
            mut rx,
            connack,
        } = self;
        let Start {
            mut codec,
            mut input,
            keep_alive,
            session_expiry,
            will,
            ..
        } = start;
        let listener = session.listener;
        let (crx, ctx) = stream.split();
        let mut client = Client {
            rx: crx,
            tx: ctx,
            ws: session.ws,
            max_frame: 2 * session.max_packet,
            received: counter!(telemetry::RECEIVED_BYTES, "listener" => listener),
            sent: counter!(telemetry::SENT_BYTES, "listener" => listener),
            out: BytesMut::with_capacity(READ_BUFFER),
        };
        let mut filter = Filter {
            listener,
            role: session.role,
            version: session.version,
            max_packet: session.max_packet,
            rate: session.rate,
            aliases: HashMap::new(),
            refused_qos2: HashSet::new(),
            subacks: HashMap::new(),
            held: None,
            received: counter!(telemetry::PUBLISHES_RECEIVED),
        };
        let end = serve(
            &mut client,
            &mut codec,
            &mut input,
            &mut filter,
            &mut tx,
            &mut rx,
            connack,
            keep_alive,
            session.max_batch,
        )
        .await;
        let _ = client.tx.shutdown().await;
        drop(client);
        drop(stream);
        if matches!(end, End::Error(_)) {
            counter!(telemetry::SESSION_ERRORS, "listener" => listener).increment(1);
        }
        let how = end.describe();
        if !matches!(end, End::Router(_)) {
            if let Some(will) = will.filter(|_| end.fires_will()) {
                let delay = will.delay(session_expiry);
                if delay.is_zero() || !taken_over_within(&mut rx, delay).await {
                    counter!(telemetry::WILLS_PUBLISHED, "listener" => listener).increment(1);
                    let _ = tx.send(will.publish()).await;
                }
            }
            // Ends the router's session (and keeps it if it is persistent).
            let _ = tx.send(router::disconnect()).await;
        }
        how
    }
}

/// The session's loop; returns how it ended.
#[allow(clippy::too_many_arguments)]
async fn serve(
    client: &mut Client<'_>,
    codec: &mut Codec,
    input: &mut BytesMut,
    filter: &mut Filter,
    tx: &mut LinkTx,
    rx: &mut LinkRx,
    connack: Packet,
    keep_alive: u16,
    max_batch: usize,
) -> End {
    if let Packet::ConnAck(ConnAck { code, .. }, _) = &connack {
        if *code != ConnectReturnCode::Success {
            let _ = client.send(codec, [connack]).await;
            return End::Router("the router refused the session".to_owned());
        }
    }
    if let Err(e) = client.send(codec, [connack]).await {
        return End::Error(e);
    }
    // The keep-alive the client declared, with the 50% grace MQTT allows.
    let grace = Duration::from_millis(u64::from(keep_alive) * 1500);
    let expiry = tokio::time::sleep(grace);
    tokio::pin!(expiry);
    let mut raw = Vec::with_capacity(READ_BUFFER);
    let mut forward = Vec::new();
    let mut reply = Vec::new();
    let mut paused: Option<Instant> = None;
    // When to acknowledge what the client sent, if nothing else was read by
    // then (see `ack_at_once`).
    let mut ack_due: Option<Instant> = None;
    loop {
        let mut full = false;
        if paused.is_none() {
            let flow = match filter.process(codec, input, &mut forward, &mut reply, max_batch) {
                Ok(flow) => flow,
                Err(e) => return End::Error(e),
            };
            if let Err(e) = to_router(tx, &mut forward).await {
                return End::Router(e);
            }
            if let Err(e) = client.send(codec, reply.drain(..)).await {
                return End::Error(e);
            }
            match flow {
                Flow::Read => {}
                // Whole packets are left in `input`: on with them right
                // after the router's output.
                Flow::Full => full = true,
                Flow::Pause(until) => paused = Some(until),
                Flow::Disconnected => return End::Disconnected,
            }
        }
        let reading = paused.is_none() && !full;
        let event = tokio::select! {
            // The router's output first: it frees the client's window.
            biased;
            note = rx.next() => Event::Router(note.map_err(|e| e.to_string())),
            () = std::future::ready(()), if full => Event::Resume,
            () = sleep_until(paused), if paused.is_some() => Event::Resume,
            read = client.read(&mut raw, input), if reading => Event::Client(read),
            () = sleep_until(ack_due), if ack_due.is_some() => Event::AckDue,
            () = &mut expiry => return End::KeepAlive,
        };
        match event {
            Event::Resume => paused = None,
            Event::AckDue => {
                ack_at_once(&client.rx);
                ack_due = None;
            }
            Event::Client(Ok(Some(pongs))) => {
                expiry.as_mut().reset(tokio::time::Instant::now() + grace);
                ack_due = Some(Instant::now() + ACK_DELAY);
                for payload in pongs {
                    if let Err(e) = client.pong(&payload).await {
                        return End::Error(e);
                    }
                }
            }
            Event::Client(Ok(None)) => return End::Closed,
            Event::Client(Err(e)) => return End::Error(e),
            Event::Router(note) => {
                if let Some(end) = deliver(client, codec, filter, rx, note).await {
                    return end;
                }
            }
        }
    }
}

/// What woke the session's loop. (A notification is large, but this lives
/// on the stack for one turn of the loop.)
#[allow(clippy::large_enum_variant)]
enum Event {
    Router(Result<Option<rumqttd::Notification>, String>),
    Client(Result<Option<Vec<Vec<u8>>>, String>),
    Resume,
    AckDue,
}

/// Writes what the router has for the client: `first` and whatever else is
/// queued, in one write. `Some` if the session ends.
async fn deliver(
    client: &mut Client<'_>,
    codec: &Codec,
    filter: &mut Filter,
    rx: &mut LinkRx,
    first: Result<Option<rumqttd::Notification>, String>,
) -> Option<End> {
    let mut notes = Vec::new();
    match first {
        Ok(note) => notes.extend(note),
        Err(e) => return Some(End::Router(e)),
    }
    while notes.len() < MAX_WRITE_BATCH {
        // Only what is already there: polled once, never waited for (a zero
        // timeout would wait for the timer's next tick, up to a millisecond).
        match ready_now(rx.next()).await {
            Some(Ok(Some(note))) => notes.push(note),
            Some(Err(e)) => return Some(End::Router(e.to_string())),
            Some(Ok(None)) | None => break,
        }
    }
    let mut unscheduled = false;
    let mut router_disconnect = None;
    let mut packets = Vec::with_capacity(notes.len());
    for note in notes {
        match Option::<Packet>::from(note) {
            None => unscheduled = true,
            Some(Packet::SubAck(ack, props)) => {
                packets.push(Packet::SubAck(filter.merge_suback(ack), props));
            }
            Some(Packet::Disconnect(d, props)) => {
                router_disconnect = Some(format!("{:?}", d.reason_code));
                packets.push(Packet::Disconnect(d, props));
            }
            Some(packet) => packets.push(packet),
        }
    }
    if let Err(e) = client.send(codec, packets).await {
        return Some(End::Error(e));
    }
    if let Some(reason) = router_disconnect {
        return Some(End::Router(reason));
    }
    if unscheduled {
        // The router held this session's outgoing data until what it sent
        // was written.
        if let Err(e) = rx.wake().await {
            return Some(End::Router(e.to_string()));
        }
    }
    None
}

/// Polls `future` once: its output if it is ready, `None` if it would wait.
async fn ready_now<F: std::future::Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| match future.as_mut().poll(cx) {
        std::task::Poll::Ready(out) => std::task::Poll::Ready(Some(out)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}

async fn sleep_until(until: Option<Instant>) {
    if let Some(until) = until {
        tokio::time::sleep_until(until.into()).await;
    }
}

/// Hands the batch to the router: every packet into the session's queue,
/// then one wake-up.
async fn to_router(tx: &mut LinkTx, forward: &mut Vec<Packet>) -> Result<(), String> {
    let Some(last) = forward.pop() else {
        return Ok(());
    };
    tx.buffer().extend(forward.drain(..));
    tx.send(last).await.map(drop).map_err(|e| e.to_string())
}

/// Waits out a will's delay. `true` if the router ended the session first
/// (the client came back and took it over: the will is not sent).
async fn taken_over_within(rx: &mut LinkRx, delay: Duration) -> bool {
    let drain = async {
        loop {
            match rx.next().await {
                Ok(Some(rumqttd::Notification::Unschedule)) => {
                    if rx.wake().await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    };
    tokio::time::timeout(delay, drain).await.is_ok()
}

/// Acknowledges what was read from a client, once the client went quiet
/// for [`ACK_DELAY`].
///
/// Delayed ACKs (Linux holds an ACK up to 40 ms, hoping to piggyback it on
/// a reply) meet Nagle's algorithm on the client, which holds a small packet
/// while an earlier one is unacknowledged. Most MQTT clients (paho, most
/// device SDKs) leave Nagle on: a client that answers a QoS 1 PUBLISH with
/// its PUBACK and then publishes again sends the PUBLISH only once the PUBACK
/// is ACKed, and a PUBACK gets no reply to ride on — a 40 ms stall per
/// message, measured with paho (`lambdaless bench broker`).
///
/// Setting TCP_QUICKACK sends the pending ACK now. Set after every read,
/// it cost paho about 10% of its QoS 1 messages/s (median of six
/// interleaved runs each: 0.87× Mosquitto, against 0.97× when deferred): an
/// ACK that follows each read at once releases each of the client's small
/// packets on its own. So a read only arms a timer that fires on the
/// runtime's next tick (≤ 1 ms) unless the client sends more first: a client
/// waiting on its ACK waits under a millisecond, not 40, and a streaming
/// client keeps coalescing. (With a 1 ms delay instead of the next tick:
/// 0.90×, and round trips of 1.3 ms.)
fn ack_at_once(from: &ReadHalf<'_>) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = AsRef::<TcpStream>::as_ref(from).set_quickack(true);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = from;
}
