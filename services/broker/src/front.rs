//! The public listeners: MQTT 3.1.1 and 5 over TCP and over WebSocket.
//!
//! rumqttd 0.20's own listeners answer a failed login by closing the socket
//! without a CONNACK, so clients cannot tell bad credentials from a broker
//! that is down (rumqttc just retries forever). Each public connection
//! therefore starts here: the front end reads the CONNECT (inside WebSocket
//! frames on the WS listener, whose WebSocket it terminates itself), decides,
//! and either answers with a CONNACK refusal code or opens a session with
//! rumqttd's router through an in-process link (`session`), which applies the
//! topic ACL of the user's role (`acl`) to every packet. No packet crosses a
//! second socket: rumqttd's listeners are not started.
//!
//! Before login, work is bounded: at most `max_pending_connects` sockets
//! may be without a session at once (beyond that the oldest is closed, so a
//! flood of half-open sockets cannot lock out a client that logs in
//! promptly), each
//! has `connection_timeout_ms` to send its CONNECT, and a WebSocket client
//! at most [`MAX_PRE_CONNECT_FRAMES`] frames and twice the packet limit in
//! bytes, decoded once as they arrive.
//!
//! MQTT 5 clients (CONNECT protocol level 5) get the same login check and
//! ACL; a device's PUBLISH whose Response Topic names a topic the device may
//! not subscribe to is refused like one on a forbidden topic (PUBACK reason
//! 0x87). Refusals are answered with MQTT 5 reason codes: 0x84, 0x85, 0x88,
//! 0x86 in the order of the table, and a refused filter gets 0x87 in the
//! SUBACK. Topic aliases a client sets are remembered per session, so a
//! PUBLISH that names its topic by alias only is checked against the topic
//! the alias stands for.
//!
//! | refusal | CONNACK |
//! |---|---|
//! | not MQTT 3.1.1 or 5 (3.1) | 1 unacceptable protocol version |
//! | client id rumqttd cannot take (`+ # / $`, or empty without clean session) | 2 identifier rejected |
//! | `max_connections` sessions open, or rumqttd's router full | 3 server unavailable |
//! | no login, unknown user, wrong password; a will on a topic the user may not publish on | 5 not authorized |
//!
//! A CONNECT with keep-alive 0 is closed without CONNACK, as rumqttd itself
//! would do (MQTT 3.1.1 has no code for it).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics::{counter, gauge};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{field, Instrument, Span};

use crate::acl::Role;
use crate::auth::Users;
use crate::router::Router;
use crate::session::{Session, Start};
use crate::shed::PublishRate;
use crate::telemetry;
use crate::wire::{self, v5, ws, Connect, ReturnCode, Version, WireError};

/// WebSocket frames (data or control, empty or not) a client may send
/// before its CONNECT is complete.
pub(crate) const MAX_PRE_CONNECT_FRAMES: usize = 64;

/// Largest HTTP head accepted on the WebSocket listener.
const MAX_HTTP_HEAD: usize = 16 * 1024;
/// Socket read buffer during the WebSocket handshake.
const READ_BUFFER: usize = 8 * 1024;
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
    /// Packets a session hands the router per wake-up (`max_inflight`).
    pub(crate) max_batch: usize,
    pub(crate) router: Router,
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

/// What a successful handshake hands to the session.
struct Admitted {
    session: Session,
    start: Start,
    version: Version,
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
        self.serve(client, admitted).await;
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
        self.accept(&connect, &buf, role, None, permit)
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
        let mut read = Vec::with_capacity(READ_BUFFER);
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
        self.accept(&connect, &mqtt, role, Some(decoder), permit)
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

    /// After the gate said yes: rumqttd's reading of the CONNECT, and the
    /// will's topic through the role's ACL.
    fn accept(
        &self,
        connect: &Connect,
        mqtt: &[u8],
        role: Role,
        ws: Option<ws::Decoder>,
        permit: OwnedSemaphorePermit,
    ) -> Result<Admitted, Refusal> {
        let start = Start::decode(connect.version, mqtt, self.gate.max_packet).map_err(|e| {
            refused(self.transport.label(), "malformed");
            tracing::debug!(error = %e, "CONNECT refused by rumqttd's codec");
            Refusal::Close
        })?;
        if !start.will_allowed(role) {
            counter!(telemetry::ACL_DENIED, "listener" => self.transport.label(), "action" => "will", "role" => role.label())
                .increment(1);
            tracing::warn!("CONNECT refused: the will's topic is not one this user may publish on");
            return Err(self.reply(connect.version, ReturnCode::NotAuthorized));
        }
        let session = Session {
            listener: self.transport.label(),
            user: connect.username.clone().unwrap_or_default(),
            role,
            version: connect.version,
            max_packet: self.gate.max_packet,
            max_batch: self.gate.max_batch,
            rate: PublishRate::new(
                self.gate.device_publish_rate.0,
                self.gate.device_publish_rate.1,
                Instant::now(),
            )
            .filter(|_| role != Role::Service),
            ws,
        };
        Ok(Admitted {
            session,
            start,
            version: connect.version,
            _permit: permit,
        })
    }

    /// Opens the router session and serves it until it ends.
    async fn serve(self, mut client: TcpStream, admitted: Admitted) {
        let Admitted {
            session,
            start,
            version,
            _permit,
        } = admitted;
        let listener = self.transport.label();
        let role = session.role;
        let opened = match session.open(&self.gate.router, start).await {
            Ok(opened) => opened,
            Err(e) => {
                refused(listener, "router");
                tracing::error!(error = %e, "session refused by rumqttd's router");
                if let Refusal::Reply(bytes) = self.reply(version, ReturnCode::ServerUnavailable) {
                    let _ = client.write_all(&bytes).await;
                }
                linger(&mut client).await;
                return;
            }
        };
        let _session = SessionGauge::open(listener);
        let started = Instant::now();
        tracing::info!(
            role = role.label(),
            mqtt5 = version == Version::V5,
            "session started"
        );
        let how = opened.run(client).await;
        tracing::info!(
            duration_ms = started.elapsed().as_millis() as u64,
            how,
            "session ended"
        );
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
