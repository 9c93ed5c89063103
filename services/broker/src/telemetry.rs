//! The broker's metrics, named once.
//!
//! The front end and its sessions count what they see, as it happens:
//! sessions, refused logins and connects, bytes, publishes routed, ACL
//! refusals. (rumqttd's own `metrics` 0.22 calls would not reach our 0.24
//! recorder; its exporter and meters timer are not started.)

use metrics::{counter, describe_counter, describe_gauge, gauge, Unit};

pub(crate) const CONNECTIONS: &str = "broker_connections";
pub(crate) const CONNECTIONS_TOTAL: &str = "broker_connections_total";
pub(crate) const AUTH_FAILURES: &str = "broker_auth_failures_total";
pub(crate) const CONNECTS_REFUSED: &str = "broker_connects_refused_total";
pub(crate) const RECEIVED_BYTES: &str = "broker_received_bytes_total";
pub(crate) const SENT_BYTES: &str = "broker_sent_bytes_total";
pub(crate) const PUBLISHES_RECEIVED: &str = "broker_publishes_received_total";
pub(crate) const SESSION_ERRORS: &str = "broker_session_errors_total";
pub(crate) const WILLS_PUBLISHED: &str = "broker_wills_published_total";
pub(crate) const ACL_DENIED: &str = "broker_acl_denied_total";
pub(crate) const PUBLISHES_SHED: &str = "broker_publishes_shed_total";
pub(crate) const PUBLISHES_DELAYED: &str = "broker_publishes_delayed_total";

/// The two public listeners, as the `listener` label.
pub(crate) const LISTENERS: [&str; 2] = ["mqtt", "ws"];

/// Describes every metric and registers it (adding zero: a second app in
/// the same process keeps the counts), so `/metrics` shows the full set from
/// the start.
pub(crate) fn register() {
    describe_gauge!(CONNECTIONS, "Established MQTT sessions, by listener.");
    describe_counter!(
        CONNECTIONS_TOTAL,
        "MQTT sessions accepted since start, by listener."
    );
    describe_counter!(
        AUTH_FAILURES,
        "CONNECTs refused with CONNACK 5 (not authorized), by listener and reason."
    );
    describe_counter!(
        CONNECTS_REFUSED,
        "Connections dropped or refused before a session for reasons other than login, by listener and reason."
    );
    describe_counter!(
        RECEIVED_BYTES,
        Unit::Bytes,
        "Bytes read from clients (WebSocket framing included)."
    );
    describe_counter!(
        SENT_BYTES,
        Unit::Bytes,
        "Bytes written to clients (WebSocket framing included)."
    );
    describe_counter!(
        PUBLISHES_RECEIVED,
        "PUBLISH packets handed to the router (after the ACL and the publish rate)."
    );
    describe_counter!(
        SESSION_ERRORS,
        "Sessions ended for a packet the broker refused (malformed, over max_payload_bytes, out of protocol) or a socket error, by listener."
    );
    describe_counter!(
        WILLS_PUBLISHED,
        "Will messages published for sessions that ended without DISCONNECT, by listener."
    );
    describe_counter!(
        ACL_DENIED,
        "PUBLISHes dropped and SUBSCRIBE filters refused (SUBACK 0x80) by the topic ACL, by listener, action and role."
    );
    describe_counter!(
        PUBLISHES_SHED,
        "QoS 0 PUBLISHes dropped because their connection was over device_publish_rate, by listener."
    );
    describe_counter!(
        PUBLISHES_DELAYED,
        "QoS 1/2 PUBLISHes held back (client not read) until their connection was within device_publish_rate, by listener."
    );
    for listener in LISTENERS {
        counter!(PUBLISHES_SHED, "listener" => listener).increment(0);
        counter!(PUBLISHES_DELAYED, "listener" => listener).increment(0);
        for action in ["publish", "subscribe"] {
            for role in crate::acl::Role::ALL {
                counter!(ACL_DENIED, "listener" => listener, "action" => action, "role" => role.label())
                    .increment(0);
            }
        }
        gauge!(CONNECTIONS, "listener" => listener).increment(0.0);
        counter!(CONNECTIONS_TOTAL, "listener" => listener).increment(0);
        counter!(RECEIVED_BYTES, "listener" => listener).increment(0);
        counter!(SENT_BYTES, "listener" => listener).increment(0);
        counter!(SESSION_ERRORS, "listener" => listener).increment(0);
        counter!(WILLS_PUBLISHED, "listener" => listener).increment(0);
        for failure in crate::auth::AuthFailure::ALL {
            counter!(AUTH_FAILURES, "listener" => listener, "reason" => failure.label())
                .increment(0);
        }
    }
    counter!(PUBLISHES_RECEIVED).increment(0);
}
