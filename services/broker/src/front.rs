//! The public listeners: a thin front end before rumqttd.
//!
//! rumqttd 0.20 answers a failed login by closing the socket without a
//! CONNACK, so clients cannot tell bad credentials from a broker that is down
//! (rumqttc just retries forever). Each public connection therefore starts
//! here: the front end reads the CONNECT (inside WebSocket frames on the WS
//! listener), decides, and either answers with a CONNACK refusal code or
//! opens a loopback connection to rumqttd, forwards the bytes it read
//! unchanged, and relays both ways until either side closes.
//!
//! | refusal | CONNACK |
//! |---|---|
//! | not MQTT 3.1.1 (3.1, 5) | 1 unacceptable protocol version |
//! | client id rumqttd cannot take (`+ # / $`, or empty without clean session) | 2 identifier rejected |
//! | `max_connections` sessions open, or rumqttd unreachable | 3 server unavailable |
//! | no login, unknown user, wrong password | 5 not authorized |
//!
//! A CONNECT with keep-alive 0 is closed without CONNACK, as rumqttd itself
//! would do (MQTT 3.1.1 has no code for it).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::{counter, gauge, Counter};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{field, Instrument, Span};

use crate::auth::Users;
use crate::telemetry;
use crate::wire::{self, ws, Connect, ReturnCode, WireError};

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
    pub(crate) max_packet: usize,
    pub(crate) handshake_timeout: Duration,
}

impl Gate {
    /// Decides on a CONNECT: a session slot, or the refusal code. The login
    /// comes first: nothing else is judged for a client not logged in.
    fn admit(
        &self,
        transport: Transport,
        connect: &Connect,
    ) -> Result<OwnedSemaphorePermit, Option<ReturnCode>> {
        let listener = transport.label();
        if let Err(failure) = self
            .users
            .check(connect.username.as_deref(), connect.password.as_deref())
        {
            counter!(telemetry::AUTH_FAILURES, "listener" => listener, "reason" => failure.label())
                .increment(1);
            tracing::warn!(reason = failure.label(), "login refused");
            return Err(Some(ReturnCode::NotAuthorized));
        }
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
            Ok(permit) => Ok(permit),
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
            let conn = Conn {
                transport: self.transport,
                upstream: self.upstream,
                gate: self.gate.clone(),
            };
            let span = tracing::info_span!(
                "client",
                listener = self.transport.label(),
                %peer,
                client_id = field::Empty,
                user = field::Empty,
            );
            tokio::spawn(conn.run(stream).instrument(span));
        }
    }
}

/// What a successful handshake hands to the relay.
struct Admitted {
    upstream: TcpStream,
    /// Client bytes already read (the CONNECT and anything after it).
    pending: Vec<u8>,
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
    gate: Arc<Gate>,
}

impl Conn {
    async fn run(self, mut client: TcpStream) {
        let _ = client.set_nodelay(true);
        let listener = self.transport.label();
        let handshake = async {
            match self.transport {
                Transport::Tcp => self.tcp_handshake(&mut client).await,
                Transport::WebSocket => self.ws_handshake(&mut client).await,
            }
        };
        let admitted = match tokio::time::timeout(self.gate.handshake_timeout, handshake).await {
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
        let permit = self.admit(&connect)?;
        let upstream = self
            .connect_upstream()
            .await
            .map_err(|()| self.reply(ReturnCode::ServerUnavailable))?;
        Ok(Admitted {
            upstream,
            pending: buf,
            _permit: permit,
        })
    }

    /// Relays the HTTP upgrade to rumqttd, then reads the CONNECT from the
    /// client's frames without altering them.
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
        let mut upstream = match self.connect_upstream().await {
            Ok(s) => s,
            Err(()) => return Err(Refusal::Reply(http_error(503, "Service Unavailable", ""))),
        };
        let frames = buf.split_off(head_end);
        upstream.write_all(&buf).await.map_err(|_| Refusal::Close)?;

        let mut response = Vec::with_capacity(256);
        loop {
            if ws::head_end(&response).is_some() {
                break;
            }
            if response.len() > MAX_HTTP_HEAD {
                return Err(Refusal::Close);
            }
            match upstream.read_buf(&mut response).await {
                Ok(0) | Err(_) => return Err(Refusal::Close),
                Ok(_) => {}
            }
        }
        client
            .write_all(&response)
            .await
            .map_err(|_| Refusal::Close)?;
        if ws::status(&response) != Some(101) {
            refused(listener, "handshake");
            return Err(Refusal::Close);
        }

        let mut frames = frames;
        let connect = loop {
            // Room for one packet a client sends right behind its CONNECT.
            let payload = match ws::payload(&frames, 2 * self.gate.max_packet) {
                Ok(p) => p,
                Err(e) => return Err(self.malformed(&e)),
            };
            if payload.closed {
                refused(listener, "closed");
                return Err(Refusal::Close);
            }
            match self.parse(&payload.data)? {
                Some(connect) => break connect,
                None => read_more(client, &mut frames, self.transport).await?,
            }
        };
        // On a refusal, dropping `upstream` closes rumqttd's side.
        let permit = self.admit(&connect)?;
        Ok(Admitted {
            upstream,
            pending: frames,
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
                Err(self.reply(ReturnCode::UnacceptableProtocol))
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
    fn reply(&self, code: ReturnCode) -> Refusal {
        let connack = wire::connack(code);
        Refusal::Reply(match self.transport {
            Transport::Tcp => connack.to_vec(),
            Transport::WebSocket => {
                let mut out = ws::frame(ws::OP_BINARY, &connack, None);
                out.extend(ws::frame(ws::OP_CLOSE, &1000u16.to_be_bytes(), None));
                out
            }
        })
    }

    /// The gate's decision, as a refusal in this transport's framing.
    fn admit(&self, connect: &Connect) -> Result<OwnedSemaphorePermit, Refusal> {
        self.gate
            .admit(self.transport, connect)
            .map_err(|code| match code {
                Some(code) => self.reply(code),
                None => Refusal::Close,
            })
    }

    async fn connect_upstream(&self) -> Result<TcpStream, ()> {
        match TcpStream::connect(self.upstream).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                Ok(s)
            }
            Err(e) => {
                refused(self.transport.label(), "upstream");
                tracing::error!(error = %e, upstream = %self.upstream, "embedded rumqttd unreachable");
                Err(())
            }
        }
    }

    /// Forwards the bytes read so far, then copies both ways until either
    /// side closes.
    async fn relay(self, mut client: TcpStream, admitted: Admitted) {
        let Admitted {
            mut upstream,
            pending,
            _permit,
        } = admitted;
        let listener = self.transport.label();
        let received = counter!(telemetry::RECEIVED_BYTES, "listener" => listener);
        let sent = counter!(telemetry::SENT_BYTES, "listener" => listener);
        if upstream.write_all(&pending).await.is_err() {
            refused(listener, "upstream");
            return;
        }
        received.increment(pending.len() as u64);
        let _session = SessionGauge::open(listener);
        let started = Instant::now();
        tracing::info!("session started");
        let (mut client_rx, mut client_tx) = client.split();
        let (mut upstream_rx, mut upstream_tx) = upstream.split();
        let ended = tokio::select! {
            r = pump(&mut client_rx, &mut upstream_tx, &received, |_| ()) => r.map(|()| "client closed"),
            r = pump(&mut upstream_rx, &mut client_tx, &sent, ack_at_once) => r.map(|()| "broker closed"),
        };
        let duration_ms = started.elapsed().as_millis() as u64;
        match ended {
            Ok(by) => tracing::info!(duration_ms, by, "session ended"),
            Err(e) => tracing::info!(duration_ms, error = %e, "session ended"),
        }
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

/// rumqttd leaves Nagle's algorithm on for its sockets, so when it writes two
/// small packets back to back (a PUBACK, then a PUBLISH) the second waits
/// until the first is acknowledged, and Linux delays that ACK by up to 40 ms.
/// Asking for an immediate ACK after every read from rumqttd releases its
/// next packet after one loopback round trip instead. (The flag is not
/// sticky: the kernel may fall back to delayed ACKs, hence every read.)
fn ack_at_once(upstream: &tokio::net::tcp::ReadHalf<'_>) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = AsRef::<TcpStream>::as_ref(upstream).set_quickack(true);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = upstream;
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
