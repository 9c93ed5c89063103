//! Topic access by role, in the spirit of an AWS IoT Core policy.
//!
//! Every broker user has a role (`users.<name>.role`, default `device`). The
//! front end checks each SUBSCRIBE filter and each PUBLISH topic a client
//! sends against it: a refused filter gets SUBACK 0x80, a refused PUBLISH is
//! dropped (acknowledged as MQTT requires, so the client does not resend it
//! forever) and counted in `broker_acl_denied_total`; neither disconnects.
//!
//! | role | may publish | may subscribe |
//! |---|---|---|
//! | `service` | anything | anything (our workers: `$share/mqtt-api/request/#`, `response/#`, `notification/#`) |
//! | `device` | `request/…` | `response/{op or +}/{token}` with a concrete token, and `notification/…` |
//! | `observer` | nothing | `response/…` and `notification/…` (dashboards, audit) |
//!
//! So a device can neither join the API's shared subscription, nor read
//! another client's answers through a wildcard, nor forge an answer. A
//! token is the device's secret: whoever knows it reads its answers, as in
//! the seed.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Our workers and admin tools: no topic restrictions.
    Service,
    /// The default: requests out, its own answers and notifications in.
    #[default]
    Device,
    /// Read-only: every answer and notification.
    Observer,
}

impl Role {
    pub(crate) const ALL: [Self; 3] = [Self::Service, Self::Device, Self::Observer];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Service => "service",
            Self::Device => "device",
            Self::Observer => "observer",
        }
    }

    /// Whether this role may publish on `topic` (a topic name, no wildcards).
    pub(crate) fn may_publish(self, topic: &str) -> bool {
        match self {
            Self::Service => true,
            Self::Device => topic
                .strip_prefix("request/")
                .is_some_and(|rest| !rest.is_empty()),
            Self::Observer => false,
        }
    }

    /// Whether this role may subscribe to `filter`.
    pub(crate) fn may_subscribe(self, filter: &str) -> bool {
        if self == Self::Service {
            return true;
        }
        // `$share/...`, `$SYS/...`: never for devices and observers.
        if filter.starts_with('$') {
            return false;
        }
        let levels: Vec<&str> = filter.split('/').collect();
        let under_notification = levels[0] == "notification" && levels.len() > 1;
        match self {
            Self::Service => true,
            Self::Observer => under_notification || (levels[0] == "response" && levels.len() > 1),
            Self::Device => {
                let concrete = |level: &str| !level.is_empty() && !level.contains(['+', '#']);
                let own_response = levels.len() == 3
                    && levels[0] == "response"
                    && (levels[1] == "+" || concrete(levels[1]))
                    && concrete(levels[2]);
                under_notification || own_response
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Role::{Device, Observer, Service};

    #[test]
    fn devices_publish_requests_only() {
        assert!(Device.may_publish("request/get/t1/m1"));
        assert!(Device.may_publish("request/query/t1"));
        for topic in [
            "response/get/tok",
            "notification/t1",
            "request/",
            "requests/x",
            "bench/x",
        ] {
            assert!(!Device.may_publish(topic), "{topic}");
        }
    }

    #[test]
    fn devices_subscribe_their_own_answers_and_notifications() {
        for filter in [
            "response/get/tok-1",
            "response/+/tok-1",
            "notification/#",
            "notification/t1",
            "notification/+",
        ] {
            assert!(Device.may_subscribe(filter), "{filter}");
        }
        for filter in [
            "#",
            "+/#",
            "response/#",
            "response/+/#",
            "response/get/+",
            "response/+/+",
            "response/get/#",
            "response/get/tok/more",
            "response/invalid",
            "$share/mqtt-api/request/#",
            "$share/x/response/get/tok",
            "request/#",
            "notification",
            "response/get/",
        ] {
            assert!(!Device.may_subscribe(filter), "{filter}");
        }
    }

    #[test]
    fn observers_read_answers_and_notifications_and_publish_nothing() {
        for filter in [
            "response/#",
            "response/+/tok",
            "notification/#",
            "response/invalid",
        ] {
            assert!(Observer.may_subscribe(filter), "{filter}");
        }
        for filter in ["#", "request/#", "$share/mqtt-api/request/#", "+/get/tok"] {
            assert!(!Observer.may_subscribe(filter), "{filter}");
        }
        for topic in ["request/get/t/m", "response/get/tok", "notification/t"] {
            assert!(!Observer.may_publish(topic), "{topic}");
        }
    }

    #[test]
    fn services_are_not_restricted() {
        assert!(Service.may_subscribe("$share/mqtt-api/request/#"));
        assert!(Service.may_subscribe("#"));
        assert!(Service.may_publish("response/get/tok"));
        assert!(Service.may_publish("notification/t1"));
    }
}
