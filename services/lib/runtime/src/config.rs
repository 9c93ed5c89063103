//! Layered, typed settings.
//!
//! Each service describes its settings as a struct with `#[serde(default)]` and
//! a `Default` impl (the built-in defaults). [`load`] then merges, in order, the
//! TOML file named by `LAMBDALESS_CONFIG` (when set; it must exist) and the
//! environment variables `LAMBDALESS_<FIELD>` where `__` separates nesting
//! levels (`LAMBDALESS_MQTT__HOST=broker`). A value that does not fit its field
//! stops start-up with an error naming the variable or file and the reason.

use std::path::PathBuf;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Environment variable naming the TOML settings file.
pub const CONFIG_ENV: &str = "LAMBDALESS_CONFIG";
/// Prefix of every setting's environment variable.
pub const ENV_PREFIX: &str = "LAMBDALESS_";

/// A setting that is missing, malformed or out of range.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("settings file {path} (from {CONFIG_ENV}) does not exist")]
    MissingFile { path: PathBuf },
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("invalid setting `{setting}`: {reason}")]
    Value { setting: String, reason: String },
}

impl ConfigError {
    /// A semantic check failed for one setting (named as its env variable).
    pub fn value(setting: &str, reason: impl Into<String>) -> Self {
        Self::Value {
            setting: format!("{ENV_PREFIX}{}", setting.replace('.', "__").to_uppercase()),
            reason: reason.into(),
        }
    }
}

/// Environment variables of lambdaless's own scripts and test harness that
/// share the prefix but are not service settings (see scripts/lib.sh).
const SCRIPT_VARIABLES: &[&str] = &[
    "config",
    "image_tag",
    "emulator",
    "cache_dir",
    "bind",
    "skip_cargo",
    "up_timeout",
    "force",
    "test_threads",
    "test_emulator_image",
    "throttle_rate",
    "schemathesis",
];

/// Loads `T` from defaults, the TOML file named by `LAMBDALESS_CONFIG` and the
/// `LAMBDALESS_*` environment.
pub fn load<T: DeserializeOwned>() -> Result<T, ConfigError> {
    let file = std::env::var_os(CONFIG_ENV).map(PathBuf::from);
    extract(
        file_layer(file)?.merge(
            Env::prefixed(ENV_PREFIX)
                .ignore(SCRIPT_VARIABLES)
                .split("__"),
        ),
    )
}

/// Defaults and the given settings file only: hermetic, whatever the process
/// environment holds (for tests and tools).
pub fn load_with_file<T: DeserializeOwned>(file: Option<PathBuf>) -> Result<T, ConfigError> {
    extract(file_layer(file)?)
}

fn file_layer(file: Option<PathBuf>) -> Result<Figment, ConfigError> {
    let mut figment = Figment::new();
    if let Some(path) = file {
        if !path.is_file() {
            return Err(ConfigError::MissingFile { path });
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    Ok(figment)
}

fn extract<T: DeserializeOwned>(figment: Figment) -> Result<T, ConfigError> {
    figment.extract::<T>().map_err(describe)
}

/// Names each failing setting the way the user wrote it: the environment
/// variable, or the key and the file.
fn describe(error: figment::Error) -> ConfigError {
    let lines: Vec<String> = error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".").to_lowercase();
            let origin = match &e.metadata {
                Some(md) if md.name.contains("environment") => {
                    format!("`{ENV_PREFIX}{}`", e.path.join("__").to_uppercase())
                }
                Some(md) => match &md.source {
                    Some(source) => format!("`{key}` in {source}"),
                    None => format!("`{key}` ({})", md.name),
                },
                None => format!("`{key}`"),
            };
            format!("{origin}: {}", e.kind)
        })
        .collect();
    ConfigError::Invalid(lines.join("; "))
}

/// Log output settings (`LAMBDALESS_LOG__FORMAT`, `RUST_LOG` for levels).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `json` in containers (one object per line), `text` for people.
    pub format: LogFormat,
    /// Filter used when `RUST_LOG` is unset.
    pub filter: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

/// How a service reaches the MQTT broker (ours in Compose, any broker in production).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttSettings {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// Client ids are `{client_id_prefix}-{random}` so replicas never collide.
    pub client_id_prefix: String,
    /// Largest packet sent or accepted; rumqttc's own default is only 10 KiB.
    pub max_packet_bytes: usize,
    pub keep_alive_secs: u64,
}

impl MqttSettings {
    /// The defaults, with client ids starting `{prefix}-` (one per service).
    pub fn client(prefix: &str) -> Self {
        Self {
            client_id_prefix: prefix.to_owned(),
            ..Self::default()
        }
    }
}

impl Default for MqttSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 1883,
            username: None,
            password: None,
            client_id_prefix: "lambdaless".to_owned(),
            max_packet_bytes: 256 * 1024,
            keep_alive_secs: 15,
        }
    }
}

impl MqttSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.host.is_empty() {
            return Err(ConfigError::value("mqtt.host", "must not be empty"));
        }
        if self.port == 0 {
            return Err(ConfigError::value("mqtt.port", "must be 1..=65535"));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_packet_bytes) {
            return Err(ConfigError::value(
                "mqtt.max_packet_bytes",
                "must be between 1024 and 16777216",
            ));
        }
        if self.keep_alive_secs < 5 {
            return Err(ConfigError::value(
                "mqtt.keep_alive_secs",
                "must be at least 5",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Default)]
    #[serde(default)]
    struct Sample {
        port: u16,
        mqtt: MqttSettings,
    }

    #[test]
    fn defaults_apply_without_file_or_env() {
        let s: Sample = load_with_file(None).unwrap();
        assert_eq!(s.port, 0);
        assert_eq!(s.mqtt.port, 1883);
    }

    #[test]
    fn missing_settings_file_is_named() {
        let err = load_with_file::<Sample>(Some("/nonexistent/x.toml".into())).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.toml"), "{err}");
    }

    #[test]
    fn file_values_load_and_bad_values_name_their_key() {
        let dir = std::env::temp_dir().join(format!("lambdaless-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(&good, "port = 8080\n[mqtt]\nhost = \"broker\"\n").unwrap();
        let s: Sample = load_with_file(Some(good)).unwrap();
        assert_eq!((s.port, s.mqtt.host.as_str()), (8080, "broker"));

        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "port = \"eighty\"\n").unwrap();
        let err = load_with_file::<Sample>(Some(bad)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("port") && msg.contains("bad.toml"), "{msg}");
    }

    #[test]
    fn semantic_errors_name_the_environment_variable() {
        let m = MqttSettings {
            port: 0,
            ..Default::default()
        };
        let msg = m.validate().unwrap_err().to_string();
        assert!(msg.contains("LAMBDALESS_MQTT__PORT"), "{msg}");
    }
}

/// Validates the name prefix setting and returns the resolver.
pub fn names(prefix: &str) -> Result<lambdaless_contracts::Names, ConfigError> {
    lambdaless_contracts::Names::new(prefix)
        .map_err(|e| ConfigError::value("prefix", e.to_string()))
}

/// Credentials accepted by the HTTP services (`api-gateway`, `streamer`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// API keys, their scopes and user: `key=scope scope@user,key2=*` (`*` grants all).
    pub api_keys: String,
    /// HS256 secret for JWT bearer tokens; JWTs are refused when unset.
    pub jwt_secret: Option<SecretString>,
    /// When set, a JWT's `iss` must equal it.
    pub jwt_issuer: Option<String>,
    /// When set, a JWT's `aud` must contain it.
    pub jwt_audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub jwt_leeway_secs: u64,
    /// Failed authentications a client address may make per minute before
    /// its requests get 429 (0 disables).
    pub failures_per_minute: u32,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            api_keys: String::new(),
            jwt_secret: None,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_leeway_secs: 30,
            failures_per_minute: 30,
        }
    }
}

impl AuthSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.jwt_leeway_secs > 300 {
            return Err(ConfigError::value(
                "auth.jwt_leeway_secs",
                "must be at most 300",
            ));
        }
        crate::auth::KeysAndJwt::from_settings(self).map(|_| ())
    }
}
