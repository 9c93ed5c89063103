//! The public listeners: a thin front end before rumqttd.
//!
//! rumqttd 0.20 answers a failed login by closing the socket without a
//! CONNACK, so clients cannot tell bad credentials from a broker that is down
//! (rumqttc just retries forever). Each public connection therefore starts
//! here: the front end reads the CONNECT (inside WebSocket frames on the WS
//! listener, whose WebSocket it terminates itself), decides, and either
//! answers with a CONNACK refusal code or opens a loopback connection to
//! rumqttd's MQTT listener and relays both ways until either side closes.
//!
//! The relay applies the topic ACL of the user's role (`acl`): it reads the
//! packet boundaries in both directions, drops refused PUBLISHes
//! (answering PUBACK/PUBREC itself), takes refused filters out of a
//! SUBSCRIBE and puts 0x80 in their place in rumqttd's SUBACK. A `service`
//! user over TCP is relayed byte for byte, without parsing.
//!
//! Before login, work is bounded: at most `max_pending_connects` sockets
//! may be without a session at once (beyond that the oldest is closed, so a
//! flood of half-open sockets cannot lock out a client that logs in
//! promptly), each
//! has `connection_timeout_ms` to send its CONNECT, and a WebSocket client
//! at most [`MAX_PRE_CONNECT_FRAMES`] frames and twice the packet limit in
//! bytes, decoded once as they arrive.
//!
//! MQTT 5 clients (CONNECT protocol level 5) are relayed to rumqttd's MQTT 5
//! listener instead, through the same login check and ACL (MQTT 5 packets
//! carry properties, see `wire::v5`); a device's PUBLISH whose Response
//! Topic names a topic the device may not subscribe to is refused like one
//! on a forbidden topic (PUBACK reason 0x87). Refusals are answered with
//! MQTT 5 reason codes: 0x84, 0x85, 0x88, 0x86 in the order of the table, and
//! a refused filter gets 0x87 in the SUBACK. Topic aliases a client sets
//! (rumqttd offers 4096) are remembered per session, so a PUBLISH that names
//! its topic by alias only is checked against the topic the alias stands for.
//!
//! | refusal | CONNACK |
//! |---|---|
//! | not MQTT 3.1.1 or 5 (3.1) | 1 unacceptable protocol version |
//! | client id rumqttd cannot take (`+ # / $`, or empty without clean session) | 2 identifier rejected |
//! | `max_connections` sessions open, or rumqttd unreachable | 3 server unavailable |
//! | no login, unknown user, wrong password | 5 not authorized |
//!
//! A CONNECT with keep-alive 0 is closed without CONNACK, as rumqttd itself
//! would do (MQTT 3.1.1 has no code for it).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics::{counter, gauge, Counter};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{field, Instrument, Span};

use crate::acl::Role;
use crate::auth::Users;
use crate::shed::PublishRate;
use crate::telemetry;
use crate::wire::{self, v5, ws, Connect, ReturnCode, Version, WireError};

/// WebSocket frames (data or control, empty or not) a client may send
/// before its CONNECT is complete.
pub(crate) const MAX_PRE_CONNECT_FRAMES: usize = 64;
/// Topic aliases remembered per MQTT 5 session (rumqttd accepts 1..=4096).
const MAX_TOPIC_ALIASES: usize = 4096;
/// Partially refused SUBSCRIBEs awaiting rumqttd's SUBACK, per session.
const MAX_PENDING_SUBACKS: usize = 1024;

/// Largest HTTP head accepted on the WebSocket listener (and from rumqttd).
const MAX_HTTP_HEAD: usize = 16 * 1024;
/// Relay buffer per direction and session.
const RELAY_BUFFER: usize = 8 * 1024;
/// After a refusal, how long the reply may take to drain before the socket
/// is dropped (closing with unread input would reset it and lose the reply).
const LINGER: Duration = Duration::from_secs(1);

/// Which public listener a connection came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Tcp,
    WebSocket,
}

impl Transport {
    fn label(self) -> &'static str {
        match self {
            Self::Tcp => "mqtt",
            Self::WebSocket => "ws",
        }
    }
}

/// The admission policy both listeners share.
pub(crate) struct Gate {
    pub(crate) users: Users,
    pub(crate) sessions: Arc<Semaphore>,
    /// Sockets accepted whose CONNECT is not decided yet.
    pub(crate) pending: Arc<Pending>,
    pub(crate) max_packet: usize,
    pub(crate) handshake_timeout: Duration,
    /// Publishes per second and burst for each non-`service` connection
    /// (rate 0: no limit), see `shed`.
    pub(crate) device_publish_rate: (u32, u32),
}

impl Gate {
    /// Decides on a CONNECT: a session slot, or the refusal code. The login
    /// comes first: nothing else is judged for a client not logged in.
    fn admit(
        &self,
        transport: Transport,
        connect: &Connect,
    ) -> Result<(OwnedSemaphorePermit, Role), Option<ReturnCode>> {
        let listener = transport.label();
        let role = match self
            .users
            .check(connect.username.as_deref(), connect.password.as_deref())
        {
            Ok(role) => role,
            Err(failure) => {
                counter!(telemetry::AUTH_FAILURES, "listener" => listener, "reason" => failure.label())
                    .increment(1);
                tracing::warn!(reason = failure.label(), "login refused");
                return Err(Some(ReturnCode::NotAuthorized));
            }
        };
        let bad_id = connect.client_id.contains(['+', '#', '/', '$'])
            || (connect.client_id.is_empty() && !connect.clean_session);
        if bad_id {
            refused(listener, "client_id");
            tracing::warn!("client id refused: rumqttd takes no '+ # / $' and no empty id without clean session");
            return Err(Some(ReturnCode::IdentifierRejected));
        }
        if connect.keep_alive == 0 {
            refused(listener, "keep_alive");
            tracing::warn!("CONNECT with keep-alive 0 closed: rumqttd requires a keep-alive");
            return Err(None);
        }
        match self.sessions.clone().try_acquire_owned() {
            Ok(permit) => Ok((permit, role)),
            Err(_) => {
                refused(listener, "max_connections");
                tracing::warn!("session refused: max_connections reached");
                Err(Some(ReturnCode::ServerUnavailable))
            }
        }
    }
}

fn refused(listener: &'static str, reason: &'static str) {
    counter!(telemetry::CONNECTS_REFUSED, "listener" => listener, "reason" => reason).increment(1);
}

/// One public listener.
pub(crate) struct Front {
    pub(crate) transport: Transport,
    pub(crate) listener: TcpListener,
    /// rumqttd's loopback listener for the same transport.
    pub(crate) upstream: SocketAddr,
    /// rumqttd's loopback MQTT 5 listener.
    pub(crate) upstream_v5: SocketAddr,
    pub(crate) gate: Arc<Gate>,
}

impl Front {
    /// Accepts until `stop`; each connection runs on a task of its own.
    pub(crate) async fn serve(self, stop: CancellationToken) {
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => return,
                accepted = self.listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, typically: back off a little.
                    tracing::warn!(error = %e, listener = self.transport.label(), "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let pending = Pending::enter(&self.gate.pending, self.transport.label());
            let conn = Conn {
                transport: self.transport,
                upstream: self.upstream,
                upstream_v5: self.upstream_v5,
                gate: self.gate.clone(),
            };
            let span = tracing::info_span!(
                "client",
                listener = self.transport.label(),
                %peer,
                client_id = field::Empty,
                user = field::Empty,
            );
            tokio::spawn(conn.run(stream, pending).instrument(span));
        }
    }
}

/// The sockets before their CONNECT, oldest first.
pub(crate) struct Pending {
    cap: usize,
    queue: Mutex<(u64, std::collections::VecDeque<(u64, CancellationToken)>)>,
}

impl Pending {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap,
            queue: Mutex::new((0, std::collections::VecDeque::with_capacity(cap))),
        }
    }

    /// Takes a slot for a new socket; at the cap, the oldest socket's slot
    /// is taken back (that socket is closed).
    fn enter(pending: &Arc<Self>, listener: &'static str) -> PendingSlot {
        let evicted = CancellationToken::new();
        let mut guard = pending.queue.lock().expect("never poisoned");
        let (next, queue) = &mut *guard;
        if queue.len() >= pending.cap {
            if let Some((_, oldest)) = queue.pop_front() {
                oldest.cancel();
                refused(listener, "pending_connects");
            }
        }
        *next += 1;
        let id = *next;
        queue.push_back((id, evicted.clone()));
        PendingSlot {
            pending: pending.clone(),
            id,
            evicted,
        }
    }
}

/// A socket's place among the [`Pending`]; leaves it when dropped.
struct PendingSlot {
    pending: Arc<Pending>,
    id: u64,
    /// Cancelled when newer sockets pushed this one out.
    evicted: CancellationToken,
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut guard = self.pending.queue.lock().expect("never poisoned");
        if let Some(at) = guard.1.iter().position(|(id, _)| *id == self.id) {
            guard.1.remove(at);
        }
    }
}

/// What a successful handshake hands to the relay.
struct Admitted {
    upstream: TcpStream,
    /// Client MQTT bytes already read (the CONNECT and anything after it).
    pending: Vec<u8>,
    role: Role,
    version: Version,
    /// WebSocket: the client's frame decoder, holding any incomplete frame.
    ws: Option<ws::Decoder>,
    _permit: OwnedSemaphorePermit,
}

/// How a handshake ended without a session.
enum Refusal {
    /// Say this to the client, then close.
    Reply(Vec<u8>),
    /// Close without a word.
    Close,
}

struct Conn {
    transport: Transport,
    upstream: SocketAddr,
    upstream_v5: SocketAddr,
    gate: Arc<Gate>,
}

impl Conn {
    async fn run(self, mut client: TcpStream, pending: PendingSlot) {
        let _ = client.set_nodelay(true);
        let listener = self.transport.label();
        let handshake = async {
            match self.transport {
                Transport::Tcp => self.tcp_handshake(&mut client).await,
                Transport::WebSocket => self.ws_handshake(&mut client).await,
            }
        };
        let decided = tokio::select! {
            d = tokio::time::timeout(self.gate.handshake_timeout, handshake) => d,
            () = pending.evicted.cancelled() => {
                tracing::debug!("closed before its CONNECT: max_pending_connects newer sockets came");
                return;
            }
        };
        drop(pending);
        let admitted = match decided {
            Ok(Ok(admitted)) => admitted,
            Ok(Err(Refusal::Reply(bytes))) => {
                let _ = client.write_all(&bytes).await;
                linger(&mut client).await;
                return;
            }
            Ok(Err(Refusal::Close)) => return,
            Err(_) => {
                refused(listener, "timeout");
                tracing::debug!("no CONNECT within the connection timeout");
                return;
            }
        };
        self.relay(client, admitted).await;
    }

    /// Reads the CONNECT from a plain TCP client.
    async fn tcp_handshake(&self, client: &mut TcpStream) -> Result<Admitted, Refusal> {
        let mut buf = Vec::with_capacity(256);
        let connect = loop {
            match self.parse(&buf)? {
                Some(connect) => break connect,
                None => read_more(client, &mut buf, self.transport).await?,
            }
        };
        let (permit, role) = self.admit(&connect)?;
        let upstream = self
            .connect_upstream(connect.version)
            .await
            .map_err(|()| self.reply(connect.version, ReturnCode::ServerUnavailable))?;
        Ok(Admitted {
            upstream,
            pending: buf,
            role,
            version: connect.version,
            ws: None,
            _permit: permit,
        })
    }

    /// Answers the HTTP upgrade itself, then reads the CONNECT from the
    /// client's frames, decoding each byte once.
    async fn ws_handshake(&self, client: &mut TcpStream) -> Result<Admitted, Refusal> {
        let listener = self.transport.label();
        let mut buf = Vec::with_capacity(1024);
        let head_end = loop {
            if let Some(end) = ws::head_end(&buf) {
                break end;
            }
            if buf.len() > MAX_HTTP_HEAD {
                refused(listener, "http_head");
                return Err(Refusal::Reply(http_error(
                    431,
                    "Request Header Fields Too Large",
                    "",
                )));
            }
            read_more(client, &mut buf, self.transport).await?;
        };
        if !ws::is_upgrade_request(&buf[..head_end]) {
            refused(listener, "not_websocket");
            return Err(Refusal::Reply(http_error(
                426,
                "Upgrade Required",
                "This is MQTT over WebSocket: connect with a WebSocket client, subprotocol \"mqtt\".\n",
            )));
        }
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let Some(key) = ws::header(&head, "sec-websocket-key").filter(|k| !k.is_empty()) else {
            refused(listener, "handshake");
            return Err(Refusal::Reply(http_error(
                400,
                "Bad Request",
                "Sec-WebSocket-Key is missing.\n",
            )));
        };
        // MQTT over WebSocket names the subprotocol "mqtt" (3.1.1); some old
        // clients offer "mqttv3.1".
        let offered = ws::header(&head, "sec-websocket-protocol").unwrap_or_default();
        let protocol = ["mqtt", "mqttv3.1"]
            .into_iter()
            .find(|p| offered.split(',').any(|o| o.trim().eq_ignore_ascii_case(p)));
        let mut response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n",
            ws::accept_key(key)
        );
        if let Some(p) = protocol {
            response.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
        }
        response.push_str("\r\n");
        client
            .write_all(response.as_bytes())
            .await
            .map_err(|_| Refusal::Close)?;

        let max_bytes = 2 * self.gate.max_packet;
        let mut decoder = ws::Decoder::default();
        decoder.feed(&buf[head_end..]);
        let mut mqtt = Vec::with_capacity(256);
        let mut read = Vec::with_capacity(RELAY_BUFFER);
        let connect = loop {
            // Room for one packet a client sends right behind its CONNECT.
            let controls = decoder
                .decode(&mut mqtt, max_bytes)
                .map_err(|e| self.malformed(&e))?;
            for control in controls {
                match control {
                    ws::Control::Ping(payload) => client
                        .write_all(&ws::frame(ws::OP_PONG, &payload, None))
                        .await
                        .map_err(|_| Refusal::Close)?,
                    ws::Control::Close => {
                        refused(listener, "closed");
                        return Err(Refusal::Close);
                    }
                }
            }
            if decoder.frames > MAX_PRE_CONNECT_FRAMES {
                refused(listener, "ws_frames");
                tracing::debug!(
                    frames = decoder.frames,
                    "too many WebSocket frames before CONNECT"
                );
                return Err(Refusal::Close);
            }
            if mqtt.len() + decoder.buffered() > max_bytes + 14 {
                return Err(self.malformed(&WireError::TooLarge(mqtt.len() + decoder.buffered())));
            }
            match self.parse(&mqtt)? {
                Some(connect) => break connect,
                None => {
                    read.clear();
                    read_more(client, &mut read, self.transport).await?;
                    decoder.feed(&read);
                }
            }
        };
        let (permit, role) = self.admit(&connect)?;
        let upstream = self
            .connect_upstream(connect.version)
            .await
            .map_err(|()| self.reply(connect.version, ReturnCode::ServerUnavailable))?;
        Ok(Admitted {
            upstream,
            pending: mqtt,
            role,
            version: connect.version,
            ws: Some(decoder),
            _permit: permit,
        })
    }

    /// `Some(connect)` once complete; protocol errors become refusals.
    fn parse(&self, buf: &[u8]) -> Result<Option<Connect>, Refusal> {
        match wire::parse_connect(buf, self.gate.max_packet) {
            Ok(c) => {
                if let Some(c) = &c {
                    Span::current().record("client_id", c.client_id.as_str());
                    if let Some(user) = &c.username {
                        Span::current().record("user", user.as_str());
                    }
                }
                Ok(c)
            }
            Err(e @ WireError::UnsupportedProtocol { .. }) => {
                refused(self.transport.label(), "protocol");
                tracing::info!(error = %e, "CONNECT refused");
                Err(self.reply(Version::V311, ReturnCode::UnacceptableProtocol))
            }
            Err(e) => Err(self.malformed(&e)),
        }
    }

    fn malformed(&self, e: &WireError) -> Refusal {
        refused(self.transport.label(), "malformed");
        tracing::debug!(error = %e, "connection dropped before a session");
        Refusal::Close
    }

    /// A CONNACK refusal in this transport's framing.
    fn reply(&self, version: Version, code: ReturnCode) -> Refusal {
        let connack = v5::connack(version, code);
        Refusal::Reply(match self.transport {
            Transport::Tcp => connack,
            Transport::WebSocket => {
                let mut out = ws::frame(ws::OP_BINARY, &connack, None);
                out.extend(ws::frame(ws::OP_CLOSE, &1000u16.to_be_bytes(), None));
                out
            }
        })
    }

    /// The gate's decision, as a refusal in this transport's framing.
    fn admit(&self, connect: &Connect) -> Result<(OwnedSemaphorePermit, Role), Refusal> {
        self.gate
            .admit(self.transport, connect)
            .map_err(|code| match code {
                Some(code) => self.reply(connect.version, code),
                None => Refusal::Close,
            })
    }

    async fn connect_upstream(&self, version: Version) -> Result<TcpStream, ()> {
        let upstream = match version {
            Version::V311 => self.upstream,
            Version::V5 => self.upstream_v5,
        };
        match TcpStream::connect(upstream).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                Ok(s)
            }
            Err(e) => {
                refused(self.transport.label(), "upstream");
                tracing::error!(error = %e, %upstream, "embedded rumqttd unreachable");
                Err(())
            }
        }
    }

    /// Forwards the bytes read so far, then relays both ways until either
    /// side closes: byte for byte for a `service` user over TCP, packet by
    /// packet through the role's ACL otherwise.
    async fn relay(self, mut client: TcpStream, admitted: Admitted) {
        let Admitted {
            mut upstream,
            pending,
            role,
            version,
            ws,
            _permit,
        } = admitted;
        let listener = self.transport.label();
        let received = counter!(telemetry::RECEIVED_BYTES, "listener" => listener);
        let sent = counter!(telemetry::SENT_BYTES, "listener" => listener);
        let _session = SessionGauge::open(listener);
        let started = Instant::now();
        tracing::info!(
            role = role.label(),
            mqtt5 = version == Version::V5,
            "session started"
        );
        let (mut client_rx, mut client_tx) = client.split();
        let (mut upstream_rx, mut upstream_tx) = upstream.split();
        let ended = if role == Role::Service && ws.is_none() {
            if upstream_tx.write_all(&pending).await.is_err() {
                refused(listener, "upstream");
                return;
            }
            received.increment(pending.len() as u64);
            tokio::select! {
                r = pump(&mut client_rx, &mut upstream_tx, &received, ack_at_once) => r.map(|()| "client closed"),
                r = pump(&mut upstream_rx, &mut client_tx, &sent, ack_at_once) => r.map(|()| "broker closed"),
            }
        } else {
            let (inject_tx, inject_rx) = mpsc::channel(64);
            let filter = Filter {
                role,
                version,
                listener,
                max_packet: self.gate.max_packet,
                subacks: Arc::new(Mutex::new(HashMap::new())),
                refused_qos2: HashSet::new(),
                inject: inject_tx,
                aliases: HashMap::new(),
                rate: PublishRate::new(
                    self.gate.device_publish_rate.0,
                    self.gate.device_publish_rate.1,
                    Instant::now(),
                ),
            };
            let subacks = filter.subacks.clone();
            let websocket = ws.is_some();
            let up = client_to_broker(
                &mut client_rx,
                &mut upstream_tx,
                filter,
                pending,
                ws,
                &received,
            );
            let down = Downstream {
                version,
                websocket,
                max_packet: self.gate.max_packet,
                subacks,
            };
            tokio::select! {
                r = up => r.map(|()| "client closed"),
                r = down.run(&mut upstream_rx, &mut client_tx, inject_rx, &sent) => r.map(|()| "broker closed"),
            }
        };
        let duration_ms = started.elapsed().as_millis() as u64;
        match ended {
            Ok(by) => tracing::info!(duration_ms, by, "session ended"),
            Err(e) => tracing::info!(duration_ms, error = %e, "session ended"),
        }
    }
}

/// What the client→broker side asks the broker→client side to send.
enum Inject {
    /// A whole MQTT packet (an acknowledgement of something refused).
    Packet(Vec<u8>),
    /// A WebSocket pong with this payload.
    Pong(Vec<u8>),
}

/// The ACL, applied to the client's packets.
struct Filter {
    role: Role,
    version: Version,
    listener: &'static str,
    max_packet: usize,
    /// Packet id of a SUBSCRIBE sent on with some filters taken out → which
    /// of its filters were allowed, in order.
    subacks: Arc<Mutex<HashMap<u16, Vec<bool>>>>,
    /// Packet ids of refused QoS 2 PUBLISHes, until their PUBREL.
    refused_qos2: HashSet<u16>,
    inject: mpsc::Sender<Inject>,
    /// This connection's publish rate (`None`: no limit).
    rate: Option<PublishRate>,
    /// MQTT 5 topic aliases the client set: alias → topic.
    aliases: HashMap<u16, String>,
}

fn invalid(e: WireError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

impl Filter {
    /// Moves the complete packets at the start of `buf` into `out` (or
    /// refuses them) and returns how many bytes it consumed, and, when a
    /// QoS 1/2 PUBLISH is over the connection's rate, how long to wait
    /// before calling again (that PUBLISH is left unconsumed).
    async fn process(
        &mut self,
        buf: &[u8],
        out: &mut Vec<u8>,
    ) -> std::io::Result<(usize, Option<Duration>)> {
        let mut at = 0;
        while let Some(len) = wire::packet_len(&buf[at..], self.max_packet).map_err(invalid)? {
            if buf.len() - at < len {
                break;
            }
            let packet = &buf[at..at + len];
            let start = at;
            at += len;
            match wire::packet_type(packet) {
                wire::PUBLISH if self.role != Role::Service => {
                    let mut head = wire::parse_publish(packet).map_err(invalid)?;
                    // MQTT 5: answers go only where this user may subscribe,
                    // and a topic alias stands for the topic it was set with.
                    let response_ok = match self.version {
                        Version::V311 => true,
                        Version::V5 => {
                            let props = v5::publish_props(packet).map_err(invalid)?;
                            if let Some(alias) = props.topic_alias {
                                if head.topic.is_empty() {
                                    head.topic =
                                        self.aliases.get(&alias).map_or("", String::as_str);
                                } else if self.aliases.len() < MAX_TOPIC_ALIASES
                                    || self.aliases.contains_key(&alias)
                                {
                                    self.aliases.insert(alias, head.topic.to_owned());
                                }
                            }
                            props
                                .response_topic
                                .is_none_or(|t| self.role.may_subscribe(t))
                        }
                    };
                    if response_ok && self.role.may_publish(head.topic) {
                        if let Some(rate) = &mut self.rate {
                            if let Err(wait) = rate.take(Instant::now()) {
                                if head.qos > 0 {
                                    counter!(telemetry::PUBLISHES_DELAYED, "listener" => self.listener)
                                        .increment(1);
                                    return Ok((start, Some(wait)));
                                }
                                counter!(telemetry::PUBLISHES_SHED, "listener" => self.listener)
                                    .increment(1);
                                continue;
                            }
                        }
                        out.extend_from_slice(packet);
                        continue;
                    }
                    self.denied("publish");
                    tracing::debug!(topic = head.topic, "PUBLISH refused by the ACL");
                    match (head.qos, head.pkid) {
                        (1, Some(pkid)) => {
                            self.send(v5::refused_puback(self.version, pkid)).await?;
                        }
                        (2, Some(pkid)) => {
                            self.refused_qos2.insert(pkid);
                            self.send(wire::encode_ack(wire::PUBREC_BYTE, pkid).to_vec())
                                .await?;
                        }
                        _ => {}
                    }
                }
                wire::PUBREL if !self.refused_qos2.is_empty() => {
                    let pkid = wire::parse_pkid(packet).map_err(invalid)?;
                    if self.refused_qos2.remove(&pkid) {
                        self.send(wire::encode_ack(wire::PUBCOMP_BYTE, pkid).to_vec())
                            .await?;
                    } else {
                        out.extend_from_slice(packet);
                    }
                }
                wire::SUBSCRIBE if self.role != Role::Service => {
                    let sub = v5::parse_subscribe(packet, self.version).map_err(invalid)?;
                    let allowed: Vec<bool> = sub
                        .filters
                        .iter()
                        .map(|(f, _)| self.role.may_subscribe(f))
                        .collect();
                    for ((filter, _), ok) in sub.filters.iter().zip(&allowed) {
                        if !ok {
                            self.denied("subscribe");
                            tracing::debug!(
                                filter = filter.as_str(),
                                "SUBSCRIBE filter refused by the ACL"
                            );
                        }
                    }
                    if allowed.iter().all(|ok| *ok) {
                        out.extend_from_slice(packet);
                    } else if !allowed.iter().any(|ok| *ok) {
                        let codes = vec![v5::suback_failure(self.version); allowed.len()];
                        self.send(v5::encode_suback(self.version, sub.pkid, &[], &codes))
                            .await?;
                    } else {
                        let kept = v5::Subscribe {
                            pkid: sub.pkid,
                            properties: sub.properties,
                            filters: sub
                                .filters
                                .into_iter()
                                .zip(&allowed)
                                .filter(|(_, ok)| **ok)
                                .map(|(f, _)| f)
                                .collect(),
                        };
                        {
                            let mut subacks = self.subacks.lock().expect("never poisoned");
                            if subacks.len() >= MAX_PENDING_SUBACKS {
                                return Err(invalid(WireError::Malformed(
                                    "too many SUBSCRIBEs without SUBACK",
                                )));
                            }
                            subacks.insert(sub.pkid, allowed);
                        }
                        out.extend(v5::encode_subscribe(self.version, &kept));
                    }
                }
                _ => out.extend_from_slice(packet),
            }
        }
        Ok((at, None))
    }

    fn denied(&self, action: &'static str) {
        counter!(telemetry::ACL_DENIED, "listener" => self.listener, "action" => action, "role" => self.role.label())
            .increment(1);
    }

    async fn send(&self, packet: Vec<u8>) -> std::io::Result<()> {
        self.inject
            .send(Inject::Packet(packet))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

/// Client → rumqttd, through the ACL (and the WebSocket decoder).
async fn client_to_broker<W>(
    from: &mut tokio::net::tcp::ReadHalf<'_>,
    to: &mut W,
    mut filter: Filter,
    mut mqtt: Vec<u8>,
    mut ws: Option<ws::Decoder>,
    counted: &Counter,
) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let max_frame = 2 * filter.max_packet;
    let mut buf = vec![0u8; RELAY_BUFFER];
    let mut out = Vec::with_capacity(RELAY_BUFFER);
    // The bytes read during the handshake.
    counted.increment(mqtt.len() as u64);
    loop {
        out.clear();
        let (consumed, wait) = filter.process(&mqtt, &mut out).await?;
        mqtt.drain(..consumed);
        if !out.is_empty() {
            to.write_all(&out).await?;
        }
        if let Some(wait) = wait {
            // Over the publish rate at QoS 1/2: read nothing more from this
            // client until a token is back (back-pressure, see `shed`).
            tokio::time::sleep(wait).await;
            continue;
        }
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        ack_at_once(from);
        counted.increment(n as u64);
        match &mut ws {
            None => mqtt.extend_from_slice(&buf[..n]),
            Some(decoder) => {
                decoder.feed(&buf[..n]);
                for control in decoder.decode(&mut mqtt, max_frame).map_err(invalid)? {
                    match control {
                        ws::Control::Ping(payload) => filter
                            .inject
                            .send(Inject::Pong(payload))
                            .await
                            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?,
                        ws::Control::Close => return Ok(()),
                    }
                }
            }
        }
    }
}

/// rumqttd → client: whole packets only, so that what the filter injects
/// lands between them; SUBACKs of filtered SUBSCRIBEs get their 0x80s.
struct Downstream {
    version: Version,
    websocket: bool,
    max_packet: usize,
    subacks: Arc<Mutex<HashMap<u16, Vec<bool>>>>,
}

impl Downstream {
    async fn run<W>(
        self,
        from: &mut tokio::net::tcp::ReadHalf<'_>,
        to: &mut W,
        mut inject: mpsc::Receiver<Inject>,
        counted: &Counter,
    ) -> std::io::Result<()>
    where
        W: AsyncWrite + Unpin,
    {
        let mut buf = vec![0u8; RELAY_BUFFER];
        let mut pending: Vec<u8> = Vec::with_capacity(RELAY_BUFFER);
        let mut out = Vec::with_capacity(RELAY_BUFFER);
        loop {
            tokio::select! {
                n = from.read(&mut buf) => {
                    let n = n?;
                    if n == 0 {
                        return Ok(());
                    }
                    ack_at_once(from);
                    pending.extend_from_slice(&buf[..n]);
                    out.clear();
                    let consumed = self.complete_packets(&pending, &mut out)?;
                    pending.drain(..consumed);
                    if !out.is_empty() {
                        self.write(to, ws::OP_BINARY, &out, counted).await?;
                    }
                }
                Some(injected) = inject.recv() => match injected {
                    Inject::Packet(p) => self.write(to, ws::OP_BINARY, &p, counted).await?,
                    Inject::Pong(p) => self.write(to, ws::OP_PONG, &p, counted).await?,
                },
            }
        }
    }

    fn complete_packets(&self, buf: &[u8], out: &mut Vec<u8>) -> std::io::Result<usize> {
        let mut at = 0;
        // rumqttd's packets are within our limit plus their own header.
        while let Some(len) = wire::packet_len(&buf[at..], self.max_packet + 16).map_err(invalid)? {
            if buf.len() - at < len {
                break;
            }
            let packet = &buf[at..at + len];
            at += len;
            if wire::packet_type(packet) == wire::SUBACK {
                let (pkid, properties, codes) =
                    v5::parse_suback(packet, self.version).map_err(invalid)?;
                let allowed = self.subacks.lock().expect("never poisoned").remove(&pkid);
                if let Some(allowed) = allowed {
                    let failure = v5::suback_failure(self.version);
                    let mut theirs = codes.iter();
                    let merged: Vec<u8> = allowed
                        .iter()
                        .map(|ok| {
                            if *ok {
                                theirs.next().copied().unwrap_or(failure)
                            } else {
                                failure
                            }
                        })
                        .collect();
                    out.extend(v5::encode_suback(self.version, pkid, &properties, &merged));
                    continue;
                }
            }
            out.extend_from_slice(packet);
        }
        Ok(at)
    }

    async fn write<W>(
        &self,
        to: &mut W,
        opcode: u8,
        bytes: &[u8],
        counted: &Counter,
    ) -> std::io::Result<()>
    where
        W: AsyncWrite + Unpin,
    {
        if self.websocket {
            let frame = ws::frame(opcode, bytes, None);
            to.write_all(&frame).await?;
            counted.increment(frame.len() as u64);
        } else if opcode == ws::OP_BINARY {
            to.write_all(bytes).await?;
            counted.increment(bytes.len() as u64);
        }
        Ok(())
    }
}

/// Counts a session in `broker_connections` for as long as it lives.
struct SessionGauge(&'static str);

impl SessionGauge {
    fn open(listener: &'static str) -> Self {
        counter!(telemetry::CONNECTIONS_TOTAL, "listener" => listener).increment(1);
        gauge!(telemetry::CONNECTIONS, "listener" => listener).increment(1.0);
        Self(listener)
    }
}

impl Drop for SessionGauge {
    fn drop(&mut self) {
        gauge!(telemetry::CONNECTIONS, "listener" => self.0).decrement(1.0);
    }
}

/// Acknowledges at once what was just read, on both sockets of a session.
///
/// Delayed ACKs (Linux holds an ACK up to 40 ms, hoping to piggyback it on
/// a reply) meet Nagle's algorithm on the other side, which holds a small
/// packet while an earlier one is unacknowledged:
/// - client side: most MQTT clients (paho, most device SDKs) leave Nagle on.
///   A client that answers a QoS 1 PUBLISH with its PUBACK and then
///   publishes again sends the PUBLISH only once the PUBACK is ACKed, and a
///   PUBACK gets no reply to ride on: a 40 ms stall per message, measured
///   with paho (`lambdaless bench broker`). Mosquitto mostly escapes it by
///   delivering before it acknowledges; rumqttd acknowledges first.
/// - rumqttd side: rumqttd 0.20 never sets TCP_NODELAY on the sockets it
///   accepts, so when it writes two small packets back to back (a PUBACK,
///   then a PUBLISH) the second waits for our ACK of the first.
///
/// The flag is not sticky (the kernel falls back to delayed ACKs), hence
/// after every read; setting it also sends an ACK that is already pending.
fn ack_at_once(from: &tokio::net::tcp::ReadHalf<'_>) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = AsRef::<TcpStream>::as_ref(from).set_quickack(true);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = from;
}

async fn pump<'a, W>(
    from: &mut tokio::net::tcp::ReadHalf<'a>,
    to: &mut W,
    counted: &Counter,
    after_read: impl Fn(&tokio::net::tcp::ReadHalf<'a>),
) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; RELAY_BUFFER];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        after_read(from);
        to.write_all(&buf[..n]).await?;
        counted.increment(n as u64);
    }
}

async fn read_more(
    client: &mut TcpStream,
    buf: &mut Vec<u8>,
    transport: Transport,
) -> Result<(), Refusal> {
    match client.read_buf(buf).await {
        Ok(n) if n > 0 => Ok(()),
        _ => {
            refused(transport.label(), "closed");
            tracing::debug!("client closed before its CONNECT");
            Err(Refusal::Close)
        }
    }
}

/// Half-closes, then lets the peer read the reply and close first.
async fn linger(client: &mut TcpStream) {
    let _ = client.shutdown().await;
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(LINGER, async {
        while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

fn http_error(status: u16, reason: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
