//! Readiness: a real MQTT login on each of rumqttd's loopback listeners.
//!
//! A successful CONNACK proves the listener accepts, the router registers
//! sessions and the login check runs. The probe then just closes: rumqttd
//! handles a DISCONNECT followed by a close as two disconnections and logs
//! an error for the second. The public listeners are the front end's own sockets, bound before start-up
//! completes; what they depend on is exactly this.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use secrecy::ExposeSecret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::auth::ProbeLogin;
use crate::wire::{self, ws};

/// Keep-alive the probe declares (rumqttd refuses 0); it disconnects at once.
const KEEP_ALIVE_SECS: u16 = 10;
/// Bounds every read of the probe.
const MAX_REPLY_BYTES: usize = 16 * 1024;

/// Probes the broker's loopback listeners with one login each.
#[derive(Clone)]
pub(crate) struct Probe {
    pub(crate) mqtt: SocketAddr,
    pub(crate) ws: SocketAddr,
    /// rumqttd's MQTT 5 listener.
    pub(crate) v5: SocketAddr,
    /// `None` in anonymous mode (rumqttd then checks no login).
    pub(crate) login: Option<ProbeLogin>,
}

impl Probe {
    /// Every listener answers a CONNECT with CONNACK 0.
    pub(crate) async fn check(&self) -> Result<(), String> {
        let (mqtt, ws, v5) = tokio::join!(self.mqtt_login(), self.ws_login(), self.v5_login());
        mqtt.map_err(|e| format!("MQTT listener: {e}"))?;
        ws.map_err(|e| format!("WebSocket listener: {e}"))?;
        v5.map_err(|e| format!("MQTT 5 listener: {e}"))
    }

    fn connect_packet(&self) -> Vec<u8> {
        let (client_id, login) = self.identity();
        wire::encode_connect(&client_id, login, KEEP_ALIVE_SECS)
    }

    /// A fresh client id and the probe's login.
    fn identity(&self) -> (String, Option<(&str, &str)>) {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let client_id = format!(
            "lambdaless-probe-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let login = self
            .login
            .as_ref()
            .map(|l| (l.user.as_str(), l.password.expose_secret()));
        (client_id, login)
    }

    async fn v5_login(&self) -> Result<(), String> {
        let mut stream = TcpStream::connect(self.v5)
            .await
            .map_err(|e| e.to_string())?;
        let (client_id, login) = self.identity();
        stream
            .write_all(&wire::v5::encode_connect(
                &client_id,
                login,
                KEEP_ALIVE_SECS,
            ))
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::with_capacity(16);
        let code = loop {
            if let Some(code) = wire::v5::parse_connack(&buf).map_err(|e| e.to_string())? {
                break code;
            }
            read_more(&mut stream, &mut buf).await?;
        };
        expect_accepted(code)
    }

    async fn mqtt_login(&self) -> Result<(), String> {
        let mut stream = TcpStream::connect(self.mqtt)
            .await
            .map_err(|e| e.to_string())?;
        stream
            .write_all(&self.connect_packet())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::with_capacity(4);
        let code = loop {
            if let Some(code) = wire::parse_connack(&buf).map_err(|e| e.to_string())? {
                break code;
            }
            read_more(&mut stream, &mut buf).await?;
        };
        expect_accepted(code)
    }

    async fn ws_login(&self) -> Result<(), String> {
        let mut stream = TcpStream::connect(self.ws)
            .await
            .map_err(|e| e.to_string())?;
        let request = format!(
            "GET /mqtt HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: bGFtYmRhbGVzcy1wcm9iZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: mqtt\r\n\r\n",
            self.ws
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(end) = ws::head_end(&buf) {
                break end;
            }
            read_more(&mut stream, &mut buf).await?;
        };
        match ws::status(&buf[..head_end]) {
            Some(101) => {}
            other => return Err(format!("WebSocket handshake answered {other:?}")),
        }
        let mask = Some(rand_mask());
        stream
            .write_all(&ws::frame(ws::OP_BINARY, &self.connect_packet(), mask))
            .await
            .map_err(|e| e.to_string())?;
        let mut frames = buf.split_off(head_end);
        let code = loop {
            let payload = ws::payload(&frames, MAX_REPLY_BYTES).map_err(|e| e.to_string())?;
            if payload.closed {
                return Err("closed before CONNACK".to_owned());
            }
            if let Some(code) = wire::parse_connack(&payload.data).map_err(|e| e.to_string())? {
                break code;
            }
            read_more(&mut stream, &mut frames).await?;
        };
        expect_accepted(code)
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
    if buf.len() > MAX_REPLY_BYTES {
        return Err("reply too long".to_owned());
    }
    match stream.read_buf(buf).await {
        Ok(0) => Err("connection closed before CONNACK".to_owned()),
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

fn expect_accepted(code: u8) -> Result<(), String> {
    if code == 0 {
        Ok(())
    } else {
        Err(format!("CONNECT refused with code {code}"))
    }
}

/// Clients mask frames; the key need not be secret here, only present.
fn rand_mask() -> [u8; 4] {
    let id = uuid::Uuid::new_v4();
    let b = id.as_bytes();
    [b[0], b[1], b[2], b[3]]
}
