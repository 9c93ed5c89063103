//! Settings of the web console (`[console]` in `config/api-gateway.toml`,
//! `LAMBDALESS_CONSOLE__*`): where the broker, the streamer and the services'
//! health endpoints are, and the limits of the live event stream.

use lambdaless_runtime::config::{ConfigError, MqttSettings};
use secrecy::SecretString;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleSettings {
    /// Serve `/console` and its routes at all (off: they answer 404).
    pub enabled: bool,
    /// Written into the page's key field (the local Compose stack puts
    /// `local-dev-key` here); empty in production, where each person types theirs.
    pub prefill_api_key: String,
    /// The broker connection that reads `notification/#` and `response/#`:
    /// an `observer`-role user. Opened when the first event stream starts.
    pub mqtt: MqttSettings,
    /// The `device`-role user (same broker) the console's query/get/next/delete
    /// buttons publish `request/...` as; it never subscribes.
    pub device_username: String,
    pub device_password: Option<SecretString>,
    /// The streamer's base URL; `/console/stream/{table}` proxies to it.
    pub streamer_url: String,
    /// The services the Health panel polls: `name=http://host:port,...`
    /// (`self` is this gateway). Each is asked `/readyz` and `/metrics`.
    pub health_targets: String,
    /// Events kept for slow browsers; one that falls further behind skips
    /// ahead (it is told how many it missed) instead of growing memory.
    pub event_buffer: usize,
    /// Event streams open at once; beyond it `/console/events` answers 503.
    pub max_event_clients: usize,
    /// Longest payload an event carries; longer ones are cut (and marked).
    pub max_event_payload_bytes: usize,
    /// How long the ticket `POST /console/ticket` hands out is valid (single use).
    pub ticket_ttl_secs: u64,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            prefill_api_key: String::new(),
            mqtt: MqttSettings {
                client_id_prefix: "api-gateway-console".to_owned(),
                ..MqttSettings::default()
            },
            device_username: "local".to_owned(),
            device_password: None,
            streamer_url: "http://127.0.0.1:8081".to_owned(),
            health_targets: "api-gateway=self,broker=http://broker:9090,mover=http://mover:9090,\
                mqtt-api=http://mqtt-api:9090,fetch-responder=http://fetch-responder:9090,\
                streamer=http://streamer:8081"
                .to_owned(),
            event_buffer: 256,
            max_event_clients: 256,
            max_event_payload_bytes: 16 * 1024,
            ticket_ttl_secs: 30,
        }
    }
}

impl ConsoleSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        self.mqtt.validate().map_err(|e| match e {
            ConfigError::Value { setting, reason } => ConfigError::Value {
                setting: setting.replace("LAMBDALESS_MQTT__", "LAMBDALESS_CONSOLE__MQTT__"),
                reason,
            },
            other => other,
        })?;
        if !self.streamer_url.starts_with("http://") {
            return Err(ConfigError::value(
                "console.streamer_url",
                "must be an http:// URL",
            ));
        }
        self.targets()?;
        if !(1..=65_536).contains(&self.event_buffer) {
            return Err(ConfigError::value(
                "console.event_buffer",
                "must be between 1 and 65536",
            ));
        }
        if self.max_event_clients == 0 {
            return Err(ConfigError::value(
                "console.max_event_clients",
                "must be ≥ 1",
            ));
        }
        if !(256..=1024 * 1024).contains(&self.max_event_payload_bytes) {
            return Err(ConfigError::value(
                "console.max_event_payload_bytes",
                "must be between 256 and 1048576",
            ));
        }
        if !(1..=3600).contains(&self.ticket_ttl_secs) {
            return Err(ConfigError::value(
                "console.ticket_ttl_secs",
                "must be between 1 and 3600",
            ));
        }
        Ok(())
    }

    /// `health_targets` as (name, base URL or `self`).
    pub fn targets(&self) -> Result<Vec<(String, String)>, ConfigError> {
        let mut out = Vec::new();
        for entry in self
            .health_targets
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (name, url) = entry.split_once('=').ok_or_else(|| {
                ConfigError::value(
                    "console.health_targets",
                    format!("{entry:?} is not name=http://host:port"),
                )
            })?;
            let url = url.trim();
            if url != "self" && !url.starts_with("http://") {
                return Err(ConfigError::value(
                    "console.health_targets",
                    format!("{name}: {url:?} must be `self` or an http:// URL"),
                ));
            }
            out.push((name.trim().to_owned(), url.trim_end_matches('/').to_owned()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_name_the_compose_services() {
        let s = ConsoleSettings::default();
        s.validate().unwrap();
        let names: Vec<String> = s.targets().unwrap().into_iter().map(|t| t.0).collect();
        assert_eq!(
            names,
            [
                "api-gateway",
                "broker",
                "mover",
                "mqtt-api",
                "fetch-responder",
                "streamer"
            ]
        );
    }

    #[test]
    fn bad_values_name_their_setting() {
        let s = ConsoleSettings {
            health_targets: "mover=ftp://x".into(),
            ..Default::default()
        };
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("LAMBDALESS_CONSOLE__HEALTH_TARGETS"));
        let mut s = ConsoleSettings::default();
        s.mqtt.port = 0;
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("LAMBDALESS_CONSOLE__MQTT__PORT"));
    }
}
