//! The bytes the front end reads and writes itself: the CONNECT (to decide,
//! MQTT 3.1.1 and 5), the CONNACK (to refuse), the length of a packet and
//! the QoS and packet id of a PUBLISH (which rumqttd's decoded `Publish`
//! keeps private); and the server side of WebSocket (RFC 6455): the upgrade
//! and the framing. The refusing CONNACK of MQTT 5 is in [`v5`]. Everything
//! else after an accepted CONNECT goes through rumqttd's codec (`session`).

pub(crate) mod v5;

/// The MQTT protocol level of a session (CONNECT's protocol level).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Version {
    /// Level 4.
    #[default]
    V311,
    /// Level 5.
    V5,
}

/// CONNACK return codes of MQTT 3.1.1 (§3.2.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ReturnCode {
    UnacceptableProtocol = 1,
    IdentifierRejected = 2,
    ServerUnavailable = 3,
    NotAuthorized = 5,
}

/// The fields of a CONNECT the front end decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Connect {
    pub(crate) version: Version,
    pub(crate) client_id: String,
    pub(crate) clean_session: bool,
    pub(crate) keep_alive: u16,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WireError {
    #[error("first packet is not CONNECT")]
    NotConnect,
    #[error("packet of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// Answered with CONNACK 1: MQTT 3.1 clients learn what to retry with.
    #[error("protocol {name:?} level {level} is neither MQTT 3.1.1 nor 5")]
    UnsupportedProtocol { name: String, level: u8 },
}

/// Parses a CONNECT at the start of `buf`. `Ok(None)`: more bytes needed.
pub(crate) fn parse_connect(buf: &[u8], max_len: usize) -> Result<Option<Connect>, WireError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first >> 4 != 1 {
        return Err(WireError::NotConnect);
    }
    if first & 0x0f != 0 {
        return Err(WireError::Malformed("CONNECT flags must be 0"));
    }
    let Some((remaining, header_len)) = remaining_length(&buf[1..])? else {
        return Ok(None);
    };
    if remaining > max_len {
        return Err(WireError::TooLarge(remaining));
    }
    let end = 1 + header_len + remaining;
    if buf.len() < end {
        return Ok(None);
    }
    let mut r = Reader(&buf[1 + header_len..end]);
    let name = r.string()?;
    let level = r.u8()?;
    let version = match (name.as_str(), level) {
        ("MQTT", 4) => Version::V311,
        ("MQTT", 5) => Version::V5,
        _ => return Err(WireError::UnsupportedProtocol { name, level }),
    };
    let flags = r.u8()?;
    if flags & 0x01 != 0 {
        return Err(WireError::Malformed("reserved connect flag set"));
    }
    let will = flags & 0x04 != 0;
    if !will && flags & 0x38 != 0 {
        return Err(WireError::Malformed("will QoS or retain without a will"));
    }
    if (flags >> 3) & 0x03 == 3 {
        return Err(WireError::Malformed("will QoS 3"));
    }
    let has_user = flags & 0x80 != 0;
    let has_password = flags & 0x40 != 0;
    if has_password && !has_user {
        return Err(WireError::Malformed("password without user name"));
    }
    let keep_alive = r.u16()?;
    if version == Version::V5 {
        r.properties()?;
    }
    let client_id = r.string()?;
    if will {
        if version == Version::V5 {
            r.properties()?;
        }
        r.string()?;
        r.binary()?;
    }
    let username = if has_user { Some(r.string()?) } else { None };
    let password = if has_password {
        Some(r.binary()?.to_vec())
    } else {
        None
    };
    Ok(Some(Connect {
        version,
        client_id,
        clean_session: flags & 0x02 != 0,
        keep_alive,
        username,
        password,
    }))
}

/// Decodes the variable-length "remaining length"; `Ok(None)`: incomplete.
fn remaining_length(buf: &[u8]) -> Result<Option<(usize, usize)>, WireError> {
    let mut value = 0usize;
    for (i, byte) in buf.iter().enumerate().take(4) {
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 4 {
        Err(WireError::Malformed("remaining length longer than 4 bytes"))
    } else {
        Ok(None)
    }
}

#[cfg(test)]
fn encode_remaining_length(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Malformed("CONNECT shorter than its fields"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn binary(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// A variable byte integer (MQTT 5 property lengths).
    fn varint(&mut self) -> Result<usize, WireError> {
        match remaining_length(self.0)? {
            Some((value, len)) => {
                self.take(len)?;
                Ok(value)
            }
            None => Err(WireError::Malformed("truncated variable byte integer")),
        }
    }

    /// MQTT 5 properties: their length, then that many bytes (returned).
    fn properties(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.varint()?;
        self.take(len)
    }

    fn string(&mut self) -> Result<String, WireError> {
        let bytes = self.binary()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| WireError::Malformed("string is not UTF-8"))
    }
}

/// A CONNACK with `code` (session present is always 0 on a refusal).
pub(crate) fn connack(code: ReturnCode) -> [u8; 4] {
    [0x20, 0x02, 0x00, code as u8]
}

/// A clean-session CONNECT, for the tests.
#[cfg(test)]
pub(crate) fn encode_connect(
    client_id: &str,
    login: Option<(&str, &str)>,
    keep_alive: u16,
) -> Vec<u8> {
    let mut body = Vec::with_capacity(64);
    put_binary(&mut body, b"MQTT");
    body.push(4);
    body.push(0x02 | if login.is_some() { 0xc0 } else { 0 });
    body.extend_from_slice(&keep_alive.to_be_bytes());
    put_binary(&mut body, client_id.as_bytes());
    if let Some((user, password)) = login {
        put_binary(&mut body, user.as_bytes());
        put_binary(&mut body, password.as_bytes());
    }
    let mut packet = vec![0x10];
    encode_remaining_length(&mut packet, body.len());
    packet.extend_from_slice(&body);
    packet
}

#[cfg(test)]
fn put_binary(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Total length (fixed header included) of the packet at the start of
/// `buf`; `Ok(None)` until its fixed header is complete.
pub(crate) fn packet_len(buf: &[u8], max_len: usize) -> Result<Option<usize>, WireError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let Some((remaining, header_len)) = remaining_length(&buf[1..])? else {
        return Ok(None);
    };
    if remaining > max_len {
        return Err(WireError::TooLarge(remaining));
    }
    Ok(Some(1 + header_len + remaining))
}

/// The variable header and payload of a whole packet.
fn body(packet: &[u8]) -> Result<&[u8], WireError> {
    let (_, header_len) =
        remaining_length(&packet[1..])?.ok_or(WireError::Malformed("incomplete fixed header"))?;
    Ok(&packet[1 + header_len..])
}

pub(crate) const PUBLISH: u8 = 3;
/// The packet type of a whole packet.
pub(crate) fn packet_type(packet: &[u8]) -> u8 {
    packet[0] >> 4
}

/// What the ACL needs of a PUBLISH.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PublishHead<'a> {
    pub(crate) topic: &'a str,
    pub(crate) qos: u8,
    /// Present at QoS 1 and 2.
    pub(crate) pkid: Option<u16>,
}

pub(crate) fn parse_publish(packet: &[u8]) -> Result<PublishHead<'_>, WireError> {
    let qos = (packet[0] >> 1) & 0x03;
    if qos == 3 {
        return Err(WireError::Malformed("PUBLISH with QoS 3"));
    }
    let mut r = Reader(body(packet)?);
    let topic =
        std::str::from_utf8(r.binary()?).map_err(|_| WireError::Malformed("topic is not UTF-8"))?;
    let pkid = if qos > 0 { Some(r.u16()?) } else { None };
    Ok(PublishHead { topic, qos, pkid })
}

/// WebSocket (RFC 6455) pieces.
pub(crate) mod ws {
    use super::WireError;

    pub(crate) const OP_BINARY: u8 = 0x2;
    pub(crate) const OP_CLOSE: u8 = 0x8;

    pub(crate) const OP_PING: u8 = 0x9;
    pub(crate) const OP_PONG: u8 = 0xA;

    /// The value of a header in an HTTP head (first match, trimmed).
    pub(crate) fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
        head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
    pub(crate) fn accept_key(key: &str) -> String {
        use sha1::{Digest, Sha1};
        let mut h = Sha1::new();
        h.update(key.as_bytes());
        h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
        base64(&h.finalize())
    }

    fn base64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    /// A control frame the client sent.
    #[derive(Debug, PartialEq, Eq)]
    pub(crate) enum Control {
        Ping(Vec<u8>),
        Close,
    }

    /// The client side of a WebSocket stream, decoded as it arrives: each
    /// byte is parsed once (complete frames are consumed; only an
    /// incomplete frame waits in the buffer).
    #[derive(Debug, Default)]
    pub(crate) struct Decoder {
        buf: Vec<u8>,
        /// Frames decoded so far (data and control).
        pub(crate) frames: usize,
    }

    impl Decoder {
        /// Bytes received but not yet decoded (an incomplete frame).
        pub(crate) fn buffered(&self) -> usize {
            self.buf.len()
        }

        pub(crate) fn feed(&mut self, bytes: &[u8]) {
            self.buf.extend_from_slice(bytes);
        }

        /// Appends the payload of every complete data frame to `data` and
        /// returns the control frames among them, in order; a close frame
        /// ends the decoding. Frames over `max_frame` bytes are an error.
        pub(crate) fn decode(
            &mut self,
            data: &mut Vec<u8>,
            max_frame: usize,
        ) -> Result<Vec<Control>, WireError> {
            let mut controls = Vec::new();
            let mut at = 0;
            let result = loop {
                let rest = &self.buf[at..];
                let header = match frame_header(rest) {
                    Ok(Some(h)) => h,
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                };
                if header.payload_len > max_frame {
                    break Err(WireError::TooLarge(header.payload_len));
                }
                let total = header.header_len + header.payload_len;
                if rest.len() < total {
                    break Ok(());
                }
                let body = rest[header.header_len..total]
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ header.mask.map_or(0, |m| m[i % 4]));
                self.frames += 1;
                at += total;
                match rest[0] & 0x0f {
                    0x0..=0x2 => data.extend(body),
                    OP_PING => controls.push(Control::Ping(body.collect())),
                    OP_CLOSE => {
                        controls.push(Control::Close);
                        break Ok(());
                    }
                    OP_PONG => {}
                    _ => break Err(WireError::Malformed("unknown WebSocket opcode")),
                }
            };
            self.buf.drain(..at);
            result.map(|()| controls)
        }
    }

    /// End (exclusive) of an HTTP head: the index just after `\r\n\r\n`.
    pub(crate) fn head_end(buf: &[u8]) -> Option<usize> {
        buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
    }

    /// Whether an HTTP request head asks for a WebSocket upgrade.
    pub(crate) fn is_upgrade_request(head: &[u8]) -> bool {
        let text = String::from_utf8_lossy(head);
        text.starts_with("GET ")
            && text.lines().any(|line| {
                line.split_once(':').is_some_and(|(name, value)| {
                    name.trim().eq_ignore_ascii_case("upgrade")
                        && value.to_ascii_lowercase().contains("websocket")
                })
            })
    }

    /// A frame's header, as far as reading its payload needs.
    struct FrameHeader {
        header_len: usize,
        payload_len: usize,
        mask: Option<[u8; 4]>,
    }

    /// `None` when the header is not complete yet.
    fn frame_header(buf: &[u8]) -> Result<Option<FrameHeader>, WireError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        if buf[0] & 0x70 != 0 {
            return Err(WireError::Malformed("WebSocket extension bits set"));
        }
        let masked = buf[1] & 0x80 != 0;
        let (len, mut at) = match buf[1] & 0x7f {
            126 => {
                let Some(b) = buf.get(2..4) else {
                    return Ok(None);
                };
                (usize::from(u16::from_be_bytes([b[0], b[1]])), 4)
            }
            127 => {
                let Some(b) = buf.get(2..10) else {
                    return Ok(None);
                };
                let len = u64::from_be_bytes(b.try_into().expect("8 bytes"));
                (usize::try_from(len).unwrap_or(usize::MAX), 10)
            }
            n => (usize::from(n), 2),
        };
        let mask = if masked {
            let Some(m) = buf.get(at..at + 4) else {
                return Ok(None);
            };
            at += 4;
            Some([m[0], m[1], m[2], m[3]])
        } else {
            None
        };
        Ok(Some(FrameHeader {
            header_len: at,
            payload_len: len,
            mask,
        }))
    }

    /// One final frame; servers send unmasked, clients must mask.
    pub(crate) fn frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = Vec::with_capacity(payload.len() + 14);
        out.push(0x80 | opcode);
        let mask_bit = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(mask_bit | n as u8),
            n if n <= usize::from(u16::MAX) => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(m) => {
                out.extend_from_slice(&m);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connect_round_trips() {
        let packet = encode_connect("probe-1", Some(("local", "secret")), 30);
        let c = parse_connect(&packet, 1024).unwrap().unwrap();
        assert_eq!(c.client_id, "probe-1");
        assert_eq!(c.username.as_deref(), Some("local"));
        assert_eq!(c.password.as_deref(), Some(&b"secret"[..]));
        assert_eq!(c.keep_alive, 30);
        assert!(c.clean_session);
    }

    #[test]
    fn a_partial_connect_asks_for_more_bytes() {
        let packet = encode_connect("c", None, 10);
        for cut in 0..packet.len() {
            assert_eq!(
                parse_connect(&packet[..cut], 1024),
                Ok(None),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn oversized_and_foreign_packets_are_refused() {
        let packet = encode_connect(&"x".repeat(2000), None, 10);
        assert!(matches!(
            parse_connect(&packet, 1024),
            Err(WireError::TooLarge(_))
        ));
        assert_eq!(
            parse_connect(&[0x30, 0x00], 1024),
            Err(WireError::NotConnect)
        );
        let mut v6 = encode_connect("c", None, 10);
        v6[8] = 6;
        assert_eq!(
            parse_connect(&v6, 1024),
            Err(WireError::UnsupportedProtocol {
                name: "MQTT".into(),
                level: 6
            })
        );
    }

    #[test]
    fn the_websocket_decoder_parses_each_frame_once_as_it_arrives() {
        let packet = encode_connect("ws-client", Some(("u", "p")), 10);
        let (a, b) = packet.split_at(5);
        let mut stream = ws::frame(ws::OP_BINARY, a, Some([1, 2, 3, 4]));
        stream.extend(ws::frame(ws::OP_PING, b"hi", Some([9, 9, 9, 9])));
        stream.extend(ws::frame(0x0, b, Some([5, 6, 7, 8])));
        stream.extend(ws::frame(ws::OP_CLOSE, &[], Some([1, 1, 1, 1])));
        let mut d = ws::Decoder::default();
        let mut data = Vec::new();
        let mut controls = Vec::new();
        // One byte at a time: every prefix is a valid state.
        for byte in &stream {
            d.feed(std::slice::from_ref(byte));
            controls.extend(d.decode(&mut data, 1 << 20).unwrap());
        }
        assert_eq!(data, packet);
        assert_eq!(
            controls,
            vec![ws::Control::Ping(b"hi".to_vec()), ws::Control::Close]
        );
        assert_eq!(d.frames, 4);
        assert_eq!(d.buffered(), 0);
        let mut big = ws::Decoder::default();
        big.feed(&ws::frame(ws::OP_BINARY, &[0; 2000], None)[..4]);
        assert!(matches!(
            big.decode(&mut data, 1024),
            Err(WireError::TooLarge(2000))
        ));
    }

    #[test]
    fn the_accept_key_is_the_rfc_example() {
        assert_eq!(
            ws::accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let head = "GET / HTTP/1.1\r\nSec-WebSocket-Protocol: mqtt, x\r\n\r\n";
        assert_eq!(ws::header(head, "SEC-websocket-protocol"), Some("mqtt, x"));
    }

    #[test]
    fn http_heads_are_recognised() {
        let req = b"GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\r\nrest";
        let end = ws::head_end(req).unwrap();
        assert_eq!(&req[end..], b"rest");
        assert!(ws::is_upgrade_request(&req[..end]));
        assert!(!ws::is_upgrade_request(
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        ));
    }
}
