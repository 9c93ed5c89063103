//! MQTT 5 on the wire, as far as the front end writes it itself: the
//! reason codes of a refusing CONNACK. Everything after an accepted CONNECT
//! goes through rumqttd's own codec (`session`).

use super::{ReturnCode, Version};

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

#[cfg(test)]
mod tests {
    use super::super::{encode_remaining_length, parse_connect, put_binary};
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
    fn v5_refusals_use_reason_codes() {
        assert_eq!(
            connack(Version::V5, ReturnCode::NotAuthorized),
            [0x20, 0x03, 0x00, 0x86, 0x00]
        );
        assert_eq!(
            connack(Version::V311, ReturnCode::NotAuthorized),
            [0x20, 0x02, 0x00, 5]
        );
    }
}
