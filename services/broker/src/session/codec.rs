//! rumqttd's codec for a session, and what the session takes from the
//! client's CONNECT (including its will).

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use rumqttd::protocol::v4::V4;
use rumqttd::protocol::v5::V5;
use rumqttd::protocol::{
    self, LastWill, LastWillProperties, Packet, Protocol, Publish, PublishProperties, QoS,
};

use crate::acl::Role;
use crate::wire::Version;

/// rumqttd's codec for the session's protocol level.
pub(super) enum Codec {
    V4(V4),
    V5(V5),
}

impl Codec {
    fn new(version: Version) -> Self {
        match version {
            Version::V311 => Self::V4(V4),
            Version::V5 => Self::V5(V5),
        }
    }

    /// The next whole packet of `input`, or `None` until more bytes come.
    pub(super) fn read(
        &mut self,
        input: &mut BytesMut,
        max: usize,
    ) -> Result<Option<Packet>, protocol::Error> {
        let read = match self {
            Self::V4(c) => c.read_mut(input, max),
            Self::V5(c) => c.read_mut(input, max),
        };
        match read {
            Ok(packet) => Ok(Some(packet)),
            Err(protocol::Error::InsufficientBytes(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Appends `packet` to `out`. MQTT 3.1.1 has no properties: rumqttd's
    /// v4 encoder refuses (panics on) packets that carry any, such as a
    /// publish from an MQTT 5 client with a Response Topic, so they go.
    pub(super) fn write(&self, packet: Packet, out: &mut BytesMut) -> Result<(), protocol::Error> {
        match self {
            Self::V5(c) => c.write(packet, out).map(drop),
            Self::V4(c) => {
                let packet = match packet {
                    Packet::Publish(p, _) => Packet::Publish(p, None),
                    Packet::PubAck(p, _) => Packet::PubAck(p, None),
                    Packet::PubRec(p, _) => Packet::PubRec(p, None),
                    Packet::PubRel(p, _) => Packet::PubRel(p, None),
                    Packet::PubComp(p, _) => Packet::PubComp(p, None),
                    Packet::SubAck(p, _) => Packet::SubAck(p, None),
                    Packet::UnsubAck(p, _) => Packet::UnsubAck(p, None),
                    Packet::ConnAck(p, _) => Packet::ConnAck(p, None),
                    // A server never sends DISCONNECT in MQTT 3.1.1.
                    Packet::Disconnect(..)
                    | Packet::Connect(..)
                    | Packet::Subscribe(..)
                    | Packet::Unsubscribe(..)
                    | Packet::PingReq(_) => return Ok(()),
                    p @ Packet::PingResp(_) => p,
                };
                c.write(packet, out).map(drop)
            }
        }
    }
}

/// The will a client left in its CONNECT.
pub(super) struct Will {
    will: LastWill,
    properties: Option<LastWillProperties>,
}

impl Will {
    /// MQTT 5: seconds to wait before publishing (at most the session's
    /// expiry interval).
    pub(super) fn delay(&self, session_expiry: u32) -> Duration {
        let delay = self
            .properties
            .as_ref()
            .and_then(|p| p.delay_interval)
            .unwrap_or(0);
        Duration::from_secs(u64::from(delay.min(session_expiry)))
    }

    /// The will as a PUBLISH (QoS 2 is sent at QoS 1: the session that
    /// would complete the QoS 2 handshake is gone).
    pub(super) fn publish(self) -> Packet {
        let qos = match self.will.qos {
            QoS::AtMostOnce => 0u8,
            _ => 1,
        };
        // `Publish`'s QoS and packet id are private to rumqttd; its own
        // serialized form is the public way to set them.
        let mut raw = BytesMut::with_capacity(5 + self.will.topic.len() + self.will.message.len());
        raw.put_u8(0x30 | u8::from(self.will.retain) | (qos << 1));
        raw.put_u16(1);
        raw.put_u16(self.will.topic.len() as u16);
        raw.extend_from_slice(&self.will.topic);
        raw.extend_from_slice(&self.will.message);
        let properties = self.properties.map(|p| PublishProperties {
            payload_format_indicator: p.payload_format_indicator,
            message_expiry_interval: p.message_expiry_interval,
            topic_alias: None,
            response_topic: p.response_topic,
            correlation_data: p.correlation_data,
            user_properties: p.user_properties,
            subscription_identifiers: Vec::new(),
            content_type: p.content_type,
        });
        Packet::Publish(Publish::deserialize(raw.freeze()), properties)
    }
}

/// A CONNECT decoded by rumqttd's codec, with what followed it.
pub(crate) struct Start {
    pub(super) codec: Codec,
    /// Bytes after the CONNECT.
    pub(super) input: BytesMut,
    pub(super) client_id: String,
    pub(super) clean_session: bool,
    pub(super) keep_alive: u16,
    pub(super) session_expiry: u32,
    pub(super) topic_alias_max: u16,
    pub(super) will: Option<Will>,
}

impl Start {
    /// Decodes the CONNECT at the start of `bytes` (already judged complete
    /// and well-formed by `wire::parse_connect`).
    pub(crate) fn decode(
        version: Version,
        bytes: &[u8],
        max_packet: usize,
    ) -> Result<Self, String> {
        let mut codec = Codec::new(version);
        let mut input = BytesMut::from(bytes);
        let packet = codec
            .read(&mut input, max_packet)
            .map_err(|e| format!("CONNECT: {e}"))?
            .ok_or("CONNECT incomplete")?;
        let Packet::Connect(connect, properties, will, will_properties, _login) = packet else {
            return Err("first packet is not CONNECT".to_owned());
        };
        Ok(Self {
            codec,
            input,
            client_id: connect.client_id,
            clean_session: connect.clean_session,
            keep_alive: connect.keep_alive,
            session_expiry: properties
                .as_ref()
                .and_then(|p| p.session_expiry_interval)
                .unwrap_or(0),
            topic_alias_max: properties.and_then(|p| p.topic_alias_max).unwrap_or(0),
            will: will.map(|will| Will {
                will,
                properties: will_properties,
            }),
        })
    }

    /// Whether `role` may leave this will: its topic is one the role may
    /// publish on, and its Response Topic one the role may subscribe to.
    pub(crate) fn will_allowed(&self, role: Role) -> bool {
        let Some(will) = &self.will else {
            return true;
        };
        let topic_ok = std::str::from_utf8(&will.will.topic).is_ok_and(|t| role.may_publish(t));
        let response_ok = will
            .properties
            .as_ref()
            .and_then(|p| p.response_topic.as_deref())
            .is_none_or(|t| role.may_subscribe(t));
        topic_ok && response_ok
    }
}
