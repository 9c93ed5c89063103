//! The role's topic ACL and publish rate on the packets a client sends, and
//! the SUBACK of a SUBSCRIBE it filtered.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use bytes::BytesMut;
use metrics::{counter, Counter};
use rumqttd::protocol::{
    Packet, PubAck, PubAckReason, PubComp, PubCompReason, PubRec, PubRecReason, Publish,
    PublishProperties, SubAck, Subscribe, SubscribeReasonCode,
};

use super::codec::Codec;
use crate::acl::Role;
use crate::shed::PublishRate;
use crate::telemetry;
use crate::wire::{self, Version};

/// Topic aliases remembered per MQTT 5 session (rumqttd accepts 1..=4096).
const MAX_TOPIC_ALIASES: usize = 4096;
/// Partially refused SUBSCRIBEs awaiting the router's SUBACK, per session.
const MAX_PENDING_SUBACKS: usize = 1024;

/// What reading the client's packets asks for next.
pub(super) enum Flow {
    /// Read more from the socket.
    Read,
    /// The batch is full: hand it over, then go on with the input.
    Full,
    /// Over the publish rate at QoS 1/2: read nothing until then.
    Pause(Instant),
    /// DISCONNECT received.
    Disconnected,
}

/// The ACL state of one session.
pub(super) struct Filter {
    pub(super) listener: &'static str,
    pub(super) role: Role,
    pub(super) version: Version,
    pub(super) max_packet: usize,
    pub(super) rate: Option<PublishRate>,
    pub(super) aliases: HashMap<u16, String>,
    /// QoS 2 publishes refused under MQTT 3.1.1 (acknowledged with a plain
    /// PUBREC, so the client's PUBREL is ours to answer).
    pub(super) refused_qos2: HashSet<u16>,
    /// SUBSCRIBE packet id → which of its filters were allowed.
    pub(super) subacks: HashMap<u16, Vec<bool>>,
    /// A publish read but held back by the rate.
    pub(super) held: Option<(Packet, u8, Option<u16>)>,
    pub(super) received: Counter,
}

impl Filter {
    /// Reads whole packets from `input` into `forward` (for the router) and
    /// `reply` (answered here), until the input is used up, the batch is
    /// full, the rate says wait, or the client disconnects.
    pub(super) fn process(
        &mut self,
        codec: &mut Codec,
        input: &mut BytesMut,
        forward: &mut Vec<Packet>,
        reply: &mut Vec<Packet>,
        max_batch: usize,
    ) -> Result<Flow, String> {
        while forward.len() < max_batch {
            let (packet, qos, pkid) = match self.held.take() {
                Some(held) => held,
                None => {
                    // Only the ACL and the rate use them; a `service` has neither.
                    let (qos, pkid) = if self.role == Role::Service {
                        (0, None)
                    } else {
                        self.publish_head(input)?
                    };
                    match codec
                        .read(input, self.max_packet)
                        .map_err(|e| e.to_string())?
                    {
                        Some(packet) => (packet, qos, pkid),
                        None => return Ok(Flow::Read),
                    }
                }
            };
            match packet {
                Packet::Publish(publish, properties) => {
                    if self.role == Role::Service {
                        self.received.increment(1);
                        forward.push(Packet::Publish(publish, properties));
                        continue;
                    }
                    if !self.publish_allowed(&publish, properties.as_ref()) {
                        self.denied("publish");
                        tracing::debug!(topic = %String::from_utf8_lossy(&publish.topic), "PUBLISH refused by the ACL");
                        self.refuse_publish(qos, pkid, reply);
                        continue;
                    }
                    if let Some(rate) = &mut self.rate {
                        let now = Instant::now();
                        if let Err(wait) = rate.take(now) {
                            if qos > 0 {
                                counter!(telemetry::PUBLISHES_DELAYED, "listener" => self.listener)
                                    .increment(1);
                                self.held = Some((Packet::Publish(publish, properties), qos, pkid));
                                return Ok(Flow::Pause(now + wait));
                            }
                            counter!(telemetry::PUBLISHES_SHED, "listener" => self.listener)
                                .increment(1);
                            continue;
                        }
                    }
                    self.received.increment(1);
                    forward.push(Packet::Publish(publish, properties));
                }
                Packet::PubRel(rel, properties) => {
                    if self.refused_qos2.remove(&rel.pkid) {
                        reply.push(Packet::PubComp(
                            PubComp {
                                pkid: rel.pkid,
                                reason: PubCompReason::Success,
                            },
                            None,
                        ));
                    } else {
                        forward.push(Packet::PubRel(rel, properties));
                    }
                }
                Packet::Subscribe(subscribe, properties) if self.role != Role::Service => {
                    if let Some(kept) = self.subscribe(subscribe, reply)? {
                        forward.push(Packet::Subscribe(kept, properties));
                    }
                }
                Packet::Disconnect(disconnect, properties) => {
                    forward.push(Packet::Disconnect(disconnect, properties));
                    return Ok(Flow::Disconnected);
                }
                Packet::Connect(..) => return Err("a second CONNECT".to_owned()),
                Packet::ConnAck(..)
                | Packet::SubAck(..)
                | Packet::UnsubAck(..)
                | Packet::PingResp(_) => return Err("a packet only a server sends".to_owned()),
                other => forward.push(other),
            }
        }
        Ok(Flow::Full)
    }

    /// The QoS and packet id of a PUBLISH at the start of `input` (rumqttd
    /// keeps both private in its decoded `Publish`).
    fn publish_head(&self, input: &[u8]) -> Result<(u8, Option<u16>), String> {
        let Some(len) = wire::packet_len(input, self.max_packet).map_err(|e| e.to_string())? else {
            return Ok((0, None));
        };
        if input.len() < len || wire::packet_type(input) != wire::PUBLISH {
            return Ok((0, None));
        }
        let head = wire::parse_publish(&input[..len]).map_err(|e| e.to_string())?;
        Ok((head.qos, head.pkid))
    }

    /// The ACL on a PUBLISH: its topic (or the topic its alias stands
    /// for), and under MQTT 5 its Response Topic.
    fn publish_allowed(
        &mut self,
        publish: &Publish,
        properties: Option<&PublishProperties>,
    ) -> bool {
        let Ok(mut topic) = std::str::from_utf8(&publish.topic) else {
            return false;
        };
        let Some(properties) = properties else {
            return self.role.may_publish(topic);
        };
        if let Some(alias) = properties.topic_alias {
            if topic.is_empty() {
                topic = self.aliases.get(&alias).map_or("", String::as_str);
            } else if self.aliases.len() < MAX_TOPIC_ALIASES || self.aliases.contains_key(&alias) {
                self.aliases.insert(alias, topic.to_owned());
            }
        }
        self.role.may_publish(topic)
            && properties
                .response_topic
                .as_deref()
                .is_none_or(|t| self.role.may_subscribe(t))
    }

    /// Acknowledges a refused PUBLISH, so the client does not resend it.
    fn refuse_publish(&mut self, qos: u8, pkid: Option<u16>, reply: &mut Vec<Packet>) {
        let (Some(pkid), Version::V5) = (pkid, self.version) else {
            match (qos, pkid) {
                (1, Some(pkid)) => reply.push(Packet::PubAck(
                    PubAck {
                        pkid,
                        reason: PubAckReason::Success,
                    },
                    None,
                )),
                (2, Some(pkid)) => {
                    self.refused_qos2.insert(pkid);
                    reply.push(Packet::PubRec(
                        PubRec {
                            pkid,
                            reason: PubRecReason::Success,
                        },
                        None,
                    ));
                }
                _ => {}
            }
            return;
        };
        // MQTT 5 says why; a PUBREC with a failure reason ends the QoS 2 flow.
        match qos {
            1 => reply.push(Packet::PubAck(
                PubAck {
                    pkid,
                    reason: PubAckReason::NotAuthorized,
                },
                None,
            )),
            2 => reply.push(Packet::PubRec(
                PubRec {
                    pkid,
                    reason: PubRecReason::NotAuthorized,
                },
                None,
            )),
            _ => {}
        }
    }

    /// The ACL on a SUBSCRIBE: the allowed filters go on, the refused ones
    /// are remembered for the SUBACK (or, if none is allowed, answered now).
    fn subscribe(
        &mut self,
        subscribe: Subscribe,
        reply: &mut Vec<Packet>,
    ) -> Result<Option<Subscribe>, String> {
        let allowed: Vec<bool> = subscribe
            .filters
            .iter()
            .map(|f| self.role.may_subscribe(&f.path))
            .collect();
        for (filter, ok) in subscribe.filters.iter().zip(&allowed) {
            if !ok {
                self.denied("subscribe");
                tracing::debug!(
                    filter = filter.path.as_str(),
                    "SUBSCRIBE filter refused by the ACL"
                );
            }
        }
        if allowed.iter().all(|ok| *ok) {
            return Ok(Some(subscribe));
        }
        if !allowed.iter().any(|ok| *ok) {
            reply.push(Packet::SubAck(
                SubAck {
                    pkid: subscribe.pkid,
                    return_codes: vec![self.refusal(); allowed.len()],
                },
                None,
            ));
            return Ok(None);
        }
        if self.subacks.len() >= MAX_PENDING_SUBACKS {
            return Err("too many SUBSCRIBEs without SUBACK".to_owned());
        }
        let kept = Subscribe {
            pkid: subscribe.pkid,
            filters: subscribe
                .filters
                .into_iter()
                .zip(&allowed)
                .filter(|(_, ok)| **ok)
                .map(|(f, _)| f)
                .collect(),
        };
        self.subacks.insert(kept.pkid, allowed);
        Ok(Some(kept))
    }

    /// The router's SUBACK for a filtered SUBSCRIBE, with the refused
    /// filters put back in their places.
    pub(super) fn merge_suback(&mut self, mut suback: SubAck) -> SubAck {
        if let Some(allowed) = self.subacks.remove(&suback.pkid) {
            let refusal = self.refusal();
            let mut theirs = suback.return_codes.into_iter();
            suback.return_codes = allowed
                .iter()
                .map(|ok| {
                    if *ok {
                        theirs.next().unwrap_or(refusal)
                    } else {
                        refusal
                    }
                })
                .collect();
        }
        suback
    }

    fn refusal(&self) -> SubscribeReasonCode {
        match self.version {
            Version::V311 => SubscribeReasonCode::Failure,
            Version::V5 => SubscribeReasonCode::NotAuthorized,
        }
    }

    fn denied(&self, action: &'static str) {
        counter!(telemetry::ACL_DENIED, "listener" => self.listener, "action" => action, "role" => self.role.label())
            .increment(1);
    }
}
