//! Settings of `broker` (defaults here; `config/broker.toml`; `LAMBDALESS_*`).
//!
//! Users come from the `users` table: `LAMBDALESS_USERS__LOCAL=local` defines
//! the user `local` with password `local` and the default role `device`;
//! `LAMBDALESS_USERS__WORKER__PASSWORD=...` with
//! `LAMBDALESS_USERS__WORKER__ROLE=service` defines a user with a role (see
//! `acl` for what each role may do). Environment keys are lower-cased by
//! the loader, so user names given through the environment are lower case;
//! use the TOML file for others.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};

use lambdaless_runtime::config::{ConfigError, LogSettings};
use lambdaless_runtime::{Common, ServiceSettings};
use secrecy::{ExposeSecret, SecretString};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// rumqttd's connection timeout is a `u16` of milliseconds.
const MAX_CONNECTION_TIMEOUT_MS: u64 = u16::MAX as u64;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `log` and `admin_port`. rumqttd's own logs are off unless
    /// `log.filter` names `rumqttd` (it logs routine events, such as every
    /// client that sends DISCONNECT before closing, at ERROR); the front end
    /// logs sessions and refusals itself. `RUST_LOG`, when set, replaces the
    /// filter entirely.
    #[serde(skip)]
    pub common: Common,
    /// MQTT 3.1.1 and 5 over TCP.
    pub mqtt_listen: SocketAddr,
    /// MQTT 3.1.1 and 5 over WebSocket (browsers; any path, subprotocol `mqtt`).
    pub ws_listen: SocketAddr,
    /// User name → password (role `device`), or → `{ password, role }`.
    /// Every client must present one of these unless `allow_anonymous` is
    /// set.
    #[serde(deserialize_with = "deserialize_users")]
    pub users: BTreeMap<String, Account>,
    /// Accept clients that send no user name. Throwaway setups only; a
    /// client that does send a user name is still checked against `users`.
    pub allow_anonymous: bool,
    /// Largest MQTT packet a client may send (remaining length, bytes). The
    /// project's clients use 256 KiB packets.
    pub max_payload_bytes: usize,
    /// Packets rumqttd reads from one connection in one batch before handing
    /// them to its router (rumqttd's `max_inflight_count`). The outgoing
    /// QoS 1/2 window per client is fixed at 100 by rumqttd 0.20.
    pub max_inflight: usize,
    /// Established MQTT sessions across both listeners; one more gets
    /// CONNACK "server unavailable".
    pub max_connections: usize,
    /// Time a new socket has to complete the WebSocket handshake and send
    /// its CONNECT.
    pub connection_timeout_ms: u64,
    /// Connections still before their CONNECT (both listeners together);
    /// beyond this the oldest of them is closed, so half-open sockets cannot
    /// crowd out a client that logs in promptly.
    pub max_pending_connects: usize,
    /// Publishes per second one connection of a non-`service` user (a
    /// `device`) may send, like AWS IoT Core's per-connection limit; 0 is no
    /// limit. Over it, QoS 0 publishes are dropped (and counted), QoS 1/2
    /// ones wait: the front end stops reading that client (see `shed`).
    pub device_publish_rate: u32,
    /// Publishes such a connection may send at once above the rate. Small on
    /// purpose: what a flood gets through at once waits in the broker ahead
    /// of every other client's requests (mqtt-api serves some 70 a second on
    /// the emulator), so the burst is what a flood costs everyone else.
    pub device_publish_burst: u32,
}

/// One broker user.
#[derive(Debug, Clone)]
pub struct Account {
    pub password: SecretString,
    pub role: crate::acl::Role,
}

impl Account {
    /// A user with the default role, `device`.
    pub fn new(password: impl Into<String>) -> Self {
        Self::with_role(password, crate::acl::Role::default())
    }

    pub fn with_role(password: impl Into<String>, role: crate::acl::Role) -> Self {
        Self {
            password: SecretString::from(password.into()),
            role,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            common: Common {
                log: quiet_rumqttd(LogSettings::default()),
                ..Common::broker()
            },
            mqtt_listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 1883)),
            ws_listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 8083)),
            users: BTreeMap::new(),
            allow_anonymous: false,
            max_payload_bytes: 256 * 1024,
            max_inflight: 100,
            max_connections: 1000,
            connection_timeout_ms: 5000,
            max_pending_connects: 256,
            device_publish_rate: 100,
            device_publish_burst: 20,
        }
    }
}

impl ServiceSettings for Settings {
    const SERVICE: &'static str = "broker";

    fn common_mut(&mut self) -> &mut Common {
        &mut self.common
    }

    fn loaded(&mut self) {
        self.common.log = quiet_rumqttd(self.common.log.clone());
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.users.is_empty() && !self.allow_anonymous {
            return Err(ConfigError::value(
                "users",
                "no user configured: define one with LAMBDALESS_USERS__<NAME>=<password> \
                 (or set allow_anonymous = true, for throwaway setups only)",
            ));
        }
        for (name, account) in &self.users {
            let setting = format!("users.{name}");
            if name.is_empty() || name.len() > usize::from(u16::MAX) {
                return Err(ConfigError::value(
                    &setting,
                    "user names are 1..=65535 bytes",
                ));
            }
            if name.chars().any(char::is_control) {
                return Err(ConfigError::value(
                    &setting,
                    "user names contain no control characters",
                ));
            }
            let len = account.password.expose_secret().len();
            if len == 0 || len > usize::from(u16::MAX) {
                return Err(ConfigError::value(
                    &setting,
                    "passwords are 1..=65535 bytes",
                ));
            }
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_payload_bytes) {
            return Err(ConfigError::value(
                "max_payload_bytes",
                "must be between 1024 and 16777216",
            ));
        }
        if !(1..=10_000).contains(&self.max_inflight) {
            return Err(ConfigError::value("max_inflight", "must be 1..=10000"));
        }
        if !(1..=100_000).contains(&self.max_connections) {
            return Err(ConfigError::value("max_connections", "must be 1..=100000"));
        }
        if !(1..=100_000).contains(&self.max_pending_connects) {
            return Err(ConfigError::value(
                "max_pending_connects",
                "must be 1..=100000",
            ));
        }
        if self.device_publish_rate > 1_000_000 {
            return Err(ConfigError::value(
                "device_publish_rate",
                "must be 0 (no limit) ..=1000000",
            ));
        }
        if !(1..=1_000_000).contains(&self.device_publish_burst) {
            return Err(ConfigError::value(
                "device_publish_burst",
                "must be 1..=1000000",
            ));
        }
        if !(100..=MAX_CONNECTION_TIMEOUT_MS).contains(&self.connection_timeout_ms) {
            return Err(ConfigError::value(
                "connection_timeout_ms",
                format!("must be 100..={MAX_CONNECTION_TIMEOUT_MS}"),
            ));
        }
        let ports = [
            ("mqtt_listen", self.mqtt_listen.port()),
            ("ws_listen", self.ws_listen.port()),
            ("admin_port", self.common.port),
        ];
        for (i, (name, port)) in ports.iter().enumerate() {
            if *port != 0 && ports[..i].iter().any(|(_, p)| p == port) {
                return Err(ConfigError::value(
                    name,
                    format!("port {port} is already used by another listener"),
                ));
            }
        }
        Ok(())
    }
}

/// Appends `rumqttd=off` to a filter that does not mention rumqttd. Applied
/// again once loaded, because a partial `log` table (only `format`, as in
/// containers) takes the runtime's default filter.
fn quiet_rumqttd(mut log: LogSettings) -> LogSettings {
    if !log.filter.contains("rumqttd") {
        log.filter = format!("{},rumqttd=off", log.filter);
    }
    log
}

/// A user is a password (role `device`) or a table `{ password, role }`.
/// Passwords are strings, but the environment loader turns `1234` into a
/// number: take integers and booleans as their text. Quote a password with
/// leading zeros (`LAMBDALESS_USERS__BOB='"0123"'`).
fn deserialize_users<'de, D>(deserializer: D) -> Result<BTreeMap<String, Account>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    struct Password(#[serde(deserialize_with = "password_text")] String);

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Full {
        #[serde(deserialize_with = "password_text")]
        password: String,
        #[serde(default)]
        role: crate::acl::Role,
    }

    #[derive(Deserialize)]
    #[serde(
        untagged,
        expecting = "a password, or a table with `password` and `role` (service, device or observer)"
    )]
    enum User {
        Password(Password),
        Full(Full),
    }

    let raw = BTreeMap::<String, User>::deserialize(deserializer)?;
    Ok(raw
        .into_iter()
        .map(|(user, u)| {
            let account = match u {
                User::Password(Password(p)) => Account::new(p),
                User::Full(Full { password, role }) => Account::with_role(password, role),
            };
            (user, account)
        })
        .collect())
}

fn password_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    struct Text;

    impl Visitor<'_> for Text {
        type Value = String;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a password string")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }

        fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
            Ok(v)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }

        fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
            Ok(v.to_string())
        }

        fn visit_f64<E: de::Error>(self, _: f64) -> Result<String, E> {
            Err(E::custom(
                "a password that looks like a decimal number must be quoted",
            ))
        }
    }

    deserializer.deserialize_any(Text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_user() -> Settings {
        let mut s = Settings::default();
        s.users.insert("local".to_owned(), Account::new("local"));
        s
    }

    #[test]
    fn defaults_need_a_user_or_explicit_anonymous_access() {
        let err = Settings::default().validate().unwrap_err().to_string();
        assert!(err.contains("LAMBDALESS_USERS"), "{err}");
        assert!(with_user().validate().is_ok());
        let anonymous = Settings {
            allow_anonymous: true,
            ..Settings::default()
        };
        assert!(anonymous.validate().is_ok());
    }

    #[test]
    fn limits_are_range_checked_and_named() {
        let s = Settings {
            max_payload_bytes: 10,
            ..with_user()
        };
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("LAMBDALESS_MAX_PAYLOAD_BYTES"), "{err}");
        let s = Settings {
            connection_timeout_ms: 100_000,
            ..with_user()
        };
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("LAMBDALESS_CONNECTION_TIMEOUT_MS"), "{err}");
    }

    #[test]
    fn listeners_cannot_share_a_port() {
        let s = Settings {
            ws_listen: "0.0.0.0:1883".parse().unwrap(),
            ..with_user()
        };
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("LAMBDALESS_WS_LISTEN"), "{err}");
    }

    #[test]
    fn users_load_from_a_file_and_numeric_passwords_stay_text() {
        let dir = std::env::temp_dir().join(format!("broker-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("broker.toml");
        std::fs::write(
            &file,
            "mqtt_listen = \"127.0.0.1:1884\"\n[log]\nformat = \"json\"\n[users]\nalice = \"s3cret\"\nbob = 1234\n\
             [users.worker]\npassword = \"w\"\nrole = \"service\"\n",
        )
        .unwrap();
        let s: Settings = lambdaless_runtime::common::load_with_file(Some(file)).unwrap();
        assert_eq!(s.mqtt_listen.port(), 1884);
        let filter = &s.common.log.filter;
        assert!(filter.ends_with("rumqttd=off"), "{filter}");
        assert_eq!(s.users["alice"].password.expose_secret(), "s3cret");
        assert_eq!(s.users["alice"].role, crate::acl::Role::Device);
        assert_eq!(s.users["bob"].password.expose_secret(), "1234");
        assert_eq!(s.users["worker"].role, crate::acl::Role::Service);
        assert!(
            !format!("{s:?}").contains("s3cret"),
            "passwords never reach logs"
        );
    }

    #[test]
    fn empty_passwords_are_refused_by_name() {
        let mut s = with_user();
        s.users.insert("eve".to_owned(), Account::new(""));
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("LAMBDALESS_USERS__EVE"), "{err}");
    }
}
