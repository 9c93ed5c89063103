//! MQTT 5 on the wire, as far as the front end reads and writes it:
//! CONNACK reason codes, the properties of PUBLISH (for the Response
//! Topic the ACL checks), SUBSCRIBE and SUBACK (which carry properties
//! before their filters and reason codes), and acknowledgements with a
//! reason code. Everything else passes through untouched.

use super::{body, encode_remaining_length, put_binary, Reader, ReturnCode, Version, WireError};

/// SUBACK reason code "Not authorized".
pub(crate) const NOT_AUTHORIZED: u8 = 0x87;

impl ReturnCode {
    /// The MQTT 5 CONNACK reason code for the same refusal.
    pub(crate) fn v5_reason(self) -> u8 {
        match self {
            Self::UnacceptableProtocol => 0x84,
            Self::IdentifierRejected => 0x85,
            Self::ServerUnavailable => 0x88,
            // "Bad User Name or Password": no login, unknown user, wrong password.
            Self::NotAuthorized => 0x86,
        }
    }
}

/// A refusing CONNACK in `version`'s format.
pub(crate) fn connack(version: Version, code: ReturnCode) -> Vec<u8> {
    match version {
        Version::V311 => super::connack(code).to_vec(),
        // Session present 0, reason, no properties.
        Version::V5 => vec![0x20, 0x03, 0x00, code.v5_reason(), 0x00],
    }
}

/// A clean-start MQTT 5 CONNECT without properties, for the readiness probe.
pub(crate) fn encode_connect(
    client_id: &str,
    login: Option<(&str, &str)>,
    keep_alive: u16,
) -> Vec<u8> {
    let v4 = super::encode_connect(client_id, login, keep_alive);
    // Same fields, level 5, and an empty property list after the keep-alive.
    let mut body = super::body(&v4).expect("a whole packet").to_vec();
    body[6] = 5;
    body.insert(10, 0);
    let mut packet = vec![0x10];
    encode_remaining_length(&mut packet, body.len());
    packet.extend(body);
    packet
}

/// Reads an MQTT 5 CONNACK at the start of `buf`: `Some(reason code)` once
/// complete.
pub(crate) fn parse_connack(buf: &[u8]) -> Result<Option<u8>, WireError> {
    match buf.first() {
        None => return Ok(None),
        Some(0x20) => {}
        Some(_) => return Err(WireError::Malformed("expected CONNACK")),
    }
    let Some((remaining, header_len)) = super::remaining_length(&buf[1..])? else {
        return Ok(None);
    };
    if remaining < 2 {
        return Err(WireError::Malformed("CONNACK without reason code"));
    }
    if buf.len() < 1 + header_len + remaining {
        return Ok(None);
    }
    Ok(Some(buf[1 + header_len + 1]))
}

/// The refused-subscription code of `version`'s SUBACK.
pub(crate) fn suback_failure(version: Version) -> u8 {
    match version {
        Version::V311 => super::SUBACK_FAILURE,
        Version::V5 => NOT_AUTHORIZED,
    }
}

/// The properties of a PUBLISH the ACL needs (MQTT 5).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct PublishProps<'a> {
    pub(crate) response_topic: Option<&'a str>,
    pub(crate) topic_alias: Option<u16>,
}

/// The Response Topic and Topic Alias properties of a PUBLISH (MQTT 5).
pub(crate) fn publish_props(packet: &[u8]) -> Result<PublishProps<'_>, WireError> {
    let qos = (packet[0] >> 1) & 0x03;
    let mut r = Reader(body(packet)?);
    r.binary()?;
    if qos > 0 {
        r.u16()?;
    }
    let mut props = Reader(r.properties()?);
    let mut found = PublishProps::default();
    while !props.0.is_empty() {
        match props.u8()? {
            // Payload format indicator.
            0x01 => {
                props.take(1)?;
            }
            // Message expiry interval.
            0x02 => {
                props.take(4)?;
            }
            // Content type.
            0x03 => {
                props.binary()?;
            }
            0x08 => {
                let topic = std::str::from_utf8(props.binary()?)
                    .map_err(|_| WireError::Malformed("response topic is not UTF-8"))?;
                found.response_topic = Some(topic);
            }
            // Correlation data.
            0x09 => {
                props.binary()?;
            }
            // Subscription identifier.
            0x0b => {
                props.varint()?;
            }
            0x23 => {
                found.topic_alias = Some(props.u16()?);
            }
            // User property: a name and a value.
            0x26 => {
                props.binary()?;
                props.binary()?;
            }
            _ => return Err(WireError::Malformed("unknown PUBLISH property")),
        }
    }
    Ok(found)
}

/// A SUBSCRIBE: packet id, raw properties (MQTT 5), each (filter, options).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Subscribe {
    pub(crate) pkid: u16,
    pub(crate) properties: Vec<u8>,
    pub(crate) filters: Vec<(String, u8)>,
}

pub(crate) fn parse_subscribe(packet: &[u8], version: Version) -> Result<Subscribe, WireError> {
    let mut r = Reader(body(packet)?);
    let pkid = r.u16()?;
    let properties = match version {
        Version::V311 => Vec::new(),
        Version::V5 => r.properties()?.to_vec(),
    };
    let mut filters = Vec::new();
    while !r.0.is_empty() {
        let filter = r.string()?;
        let options = r.u8()?;
        filters.push((filter, options));
    }
    if filters.is_empty() {
        return Err(WireError::Malformed("SUBSCRIBE without a filter"));
    }
    Ok(Subscribe {
        pkid,
        properties,
        filters,
    })
}

/// A SUBSCRIBE with the given properties (MQTT 5) and filters.
pub(crate) fn encode_subscribe(version: Version, sub: &Subscribe) -> Vec<u8> {
    let mut body = sub.pkid.to_be_bytes().to_vec();
    if version == Version::V5 {
        encode_remaining_length(&mut body, sub.properties.len());
        body.extend_from_slice(&sub.properties);
    }
    for (filter, options) in &sub.filters {
        put_binary(&mut body, filter.as_bytes());
        body.push(*options);
    }
    let mut packet = vec![0x82];
    encode_remaining_length(&mut packet, body.len());
    packet.extend(body);
    packet
}

/// A SUBACK's packet id, raw properties (MQTT 5) and codes.
pub(crate) fn parse_suback(
    packet: &[u8],
    version: Version,
) -> Result<(u16, Vec<u8>, &[u8]), WireError> {
    let mut r = Reader(body(packet)?);
    let pkid = r.u16()?;
    let properties = match version {
        Version::V311 => Vec::new(),
        Version::V5 => r.properties()?.to_vec(),
    };
    if r.0.is_empty() {
        return Err(WireError::Malformed("SUBACK without return codes"));
    }
    Ok((pkid, properties, r.0))
}

pub(crate) fn encode_suback(
    version: Version,
    pkid: u16,
    properties: &[u8],
    codes: &[u8],
) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if version == Version::V5 {
        encode_remaining_length(&mut body, properties.len());
        body.extend_from_slice(properties);
    }
    body.extend_from_slice(codes);
    let mut packet = vec![0x90];
    encode_remaining_length(&mut packet, body.len());
    packet.extend(body);
    packet
}

/// The PUBACK of a refused QoS 1 PUBLISH: MQTT 5 says "Not authorized".
pub(crate) fn refused_puback(version: Version, pkid: u16) -> Vec<u8> {
    let [hi, lo] = pkid.to_be_bytes();
    match version {
        Version::V311 => vec![super::PUBACK_BYTE, 0x02, hi, lo],
        Version::V5 => vec![super::PUBACK_BYTE, 0x03, hi, lo, NOT_AUTHORIZED],
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse_connect, parse_publish, PublishHead};
    use super::*;

    /// An MQTT 5 CONNECT as mosquitto_pub -V mqttv5 sends it, with a
    /// property (session expiry) and a will with properties.
    fn connect_v5() -> Vec<u8> {
        let mut body = Vec::new();
        put_binary(&mut body, b"MQTT");
        body.push(5);
        // User, password, will (QoS 0), clean start.
        body.push(0xc0 | 0x04 | 0x02);
        body.extend_from_slice(&30u16.to_be_bytes());
        body.extend_from_slice(&[5, 0x11, 0, 0, 0, 60]);
        put_binary(&mut body, b"v5-client");
        body.extend_from_slice(&[2, 0x01, 1]);
        put_binary(&mut body, b"will/topic");
        put_binary(&mut body, b"bye");
        put_binary(&mut body, b"local");
        put_binary(&mut body, b"pw");
        let mut packet = vec![0x10];
        encode_remaining_length(&mut packet, body.len());
        packet.extend(body);
        packet
    }

    #[test]
    fn a_v5_connect_is_read_past_its_properties() {
        let c = parse_connect(&connect_v5(), 1024).unwrap().unwrap();
        assert_eq!(c.version, Version::V5);
        assert_eq!(c.client_id, "v5-client");
        assert_eq!(c.username.as_deref(), Some("local"));
        assert_eq!(c.password.as_deref(), Some(&b"pw"[..]));
        assert_eq!(c.keep_alive, 30);
        let packet = connect_v5();
        for cut in 0..packet.len() {
            assert_eq!(
                parse_connect(&packet[..cut], 1024),
                Ok(None),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn the_probe_connect_is_a_v5_connect() {
        let packet = encode_connect("probe", Some(("u", "p")), 10);
        let c = parse_connect(&packet, 1024).unwrap().unwrap();
        assert_eq!(c.version, Version::V5);
        assert_eq!(c.client_id, "probe");
        assert_eq!(c.username.as_deref(), Some("u"));
        assert_eq!(c.keep_alive, 10);
        // rumqttd's CONNACK carries a topic alias maximum.
        let connack = [0x20, 0x06, 0x00, 0x00, 0x03, 0x22, 0x10, 0x00];
        assert_eq!(parse_connack(&connack), Ok(Some(0)));
        assert_eq!(parse_connack(&connack[..5]), Ok(None));
        assert_eq!(
            parse_connack(&[0x20, 0x03, 0x00, 0x86, 0x00]),
            Ok(Some(0x86))
        );
        assert!(parse_connack(&[0x30, 0x00]).is_err());
    }

    #[test]
    fn v5_refusals_use_reason_codes() {
        assert_eq!(
            connack(Version::V5, ReturnCode::NotAuthorized),
            [0x20, 0x03, 0x00, 0x86, 0x00]
        );
        assert_eq!(
            connack(Version::V311, ReturnCode::NotAuthorized),
            [0x20, 0x02, 0x00, 5]
        );
        assert_eq!(refused_puback(Version::V5, 7), [0x40, 0x03, 0, 7, 0x87]);
    }

    #[test]
    fn a_v5_publish_names_its_response_topic() {
        let mut body = Vec::new();
        put_binary(&mut body, b"request/query/t1");
        body.extend_from_slice(&3u16.to_be_bytes());
        let mut props = vec![0x01, 1, 0x26];
        put_binary(&mut props, b"k");
        put_binary(&mut props, b"v");
        props.push(0x08);
        put_binary(&mut props, b"response/query/mine");
        props.push(0x09);
        put_binary(&mut props, b"\x00\x01corr");
        encode_remaining_length(&mut body, props.len());
        body.extend(props);
        body.extend_from_slice(b"{}");
        let mut packet = vec![0x32];
        encode_remaining_length(&mut packet, body.len());
        packet.extend(body);
        assert_eq!(
            parse_publish(&packet),
            Ok(PublishHead {
                topic: "request/query/t1",
                qos: 1,
                pkid: Some(3)
            })
        );
        assert_eq!(
            publish_props(&packet),
            Ok(PublishProps {
                response_topic: Some("response/query/mine"),
                topic_alias: None
            })
        );
        // No properties at all (QoS 0).
        let mut plain = vec![0x30];
        let mut body = Vec::new();
        put_binary(&mut body, b"t");
        body.push(0);
        body.extend_from_slice(b"x");
        encode_remaining_length(&mut plain, body.len());
        plain.extend(body);
        assert_eq!(publish_props(&plain), Ok(PublishProps::default()));
        // An empty topic and a topic alias instead.
        let mut aliased = vec![0x30];
        let mut body = Vec::new();
        put_binary(&mut body, b"");
        body.extend_from_slice(&[3, 0x23, 0, 7]);
        body.extend_from_slice(b"x");
        encode_remaining_length(&mut aliased, body.len());
        aliased.extend(body);
        assert_eq!(parse_publish(&aliased).unwrap().topic, "");
        assert_eq!(publish_props(&aliased).unwrap().topic_alias, Some(7));
    }

    #[test]
    fn v5_subscribe_and_suback_keep_their_properties() {
        let sub = Subscribe {
            pkid: 4,
            // Subscription identifier 9.
            properties: vec![0x0b, 9],
            filters: vec![("response/+/tok".to_owned(), 0x01), ("#".to_owned(), 0x21)],
        };
        let packet = encode_subscribe(Version::V5, &sub);
        assert_eq!(parse_subscribe(&packet, Version::V5), Ok(sub));
        let v4 = Subscribe {
            pkid: 5,
            properties: Vec::new(),
            filters: vec![("a".to_owned(), 1)],
        };
        let packet = encode_subscribe(Version::V311, &v4);
        assert_eq!(parse_subscribe(&packet, Version::V311), Ok(v4));

        let suback = encode_suback(Version::V5, 4, &[], &[1, NOT_AUTHORIZED]);
        assert_eq!(suback, [0x90, 0x05, 0, 4, 0, 1, 0x87]);
        assert_eq!(
            parse_suback(&suback, Version::V5),
            Ok((4, Vec::new(), &[1, 0x87][..]))
        );
        assert_eq!(
            parse_suback(
                &encode_suback(Version::V311, 6, &[], &[0x80]),
                Version::V311
            ),
            Ok((6, Vec::new(), &[0x80][..]))
        );
    }
}
