//! Settings of `mover` (defaults here; `config/mover.toml`; `LAMBDALESS_*`).

use lambdaless_contracts::device::{DEFAULT_MESSAGE_ID_KEY, DEFAULT_UUID_KEY};
use lambdaless_runtime::config::{ConfigError, MqttSettings};
use lambdaless_runtime::{Common, ServiceSettings};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where stored-message notifications are published.
    pub mqtt: MqttSettings,
    pub devices: DevicesSettings,
    pub users: UsersSettings,
    /// What every worker takes (see [`Common`]); on SIGTERM the batches in
    /// hand get `drain_timeout_secs` to finish.
    #[serde(skip)]
    pub common: Common,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            mqtt: MqttSettings::client("mover"),
            devices: DevicesSettings::default(),
            users: UsersSettings::default(),
            common: Common::worker(),
        }
    }
}

/// The seed 2 pipeline: `device-inbound` → `device-messages`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DevicesSettings {
    pub enabled: bool,
    /// Concurrent long polls (competing consumers inside one replica).
    pub pollers: usize,
    /// Long-poll wait, 0..=20 s.
    pub wait_secs: i32,
    /// A batch whose write (with retries) is still running after this many
    /// seconds gets its visibility timeout extended, and again every period.
    pub extend_visibility_after_secs: u64,
    /// The visibility timeout, in seconds, each extension sets.
    pub visibility_timeout_secs: i32,
    /// Field naming the device; dots reach nested fields.
    pub uuid_key: String,
    /// Field ordering a device's messages; dots reach nested fields.
    pub message_id_key: String,
}

impl Default for DevicesSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            pollers: 2,
            wait_secs: 20,
            extend_visibility_after_secs: 10,
            visibility_timeout_secs: 30,
            uuid_key: DEFAULT_UUID_KEY.to_owned(),
            message_id_key: DEFAULT_MESSAGE_ID_KEY.to_owned(),
        }
    }
}

/// The seed 4 pipeline: `users-create` → `users` + `user-queue-{userId}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsersSettings {
    pub enabled: bool,
    /// Concurrent long polls.
    pub pollers: usize,
    /// Long-poll wait, 0..=20 s.
    pub wait_secs: i32,
}

impl Default for UsersSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            pollers: 1,
            wait_secs: 20,
        }
    }
}

impl ServiceSettings for Settings {
    const SERVICE: &'static str = "mover";

    fn common_mut(&mut self) -> &mut Common {
        &mut self.common
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.mqtt.validate()?;
        if !(1..=64).contains(&self.devices.pollers) {
            return Err(ConfigError::value("devices.pollers", "must be 1..=64"));
        }
        if !(0..=20).contains(&self.devices.wait_secs) {
            return Err(ConfigError::value("devices.wait_secs", "must be 0..=20"));
        }
        if self.devices.extend_visibility_after_secs == 0 {
            return Err(ConfigError::value(
                "devices.extend_visibility_after_secs",
                "must be at least 1",
            ));
        }
        if !(2..=43_200).contains(&self.devices.visibility_timeout_secs)
            || self.devices.visibility_timeout_secs as u64
                <= self.devices.extend_visibility_after_secs
        {
            return Err(ConfigError::value(
                "devices.visibility_timeout_secs",
                "must be 2..=43200 and above extend_visibility_after_secs",
            ));
        }
        if !(1..=64).contains(&self.users.pollers) {
            return Err(ConfigError::value("users.pollers", "must be 1..=64"));
        }
        if !(0..=20).contains(&self.users.wait_secs) {
            return Err(ConfigError::value("users.wait_secs", "must be 0..=20"));
        }
        if self.devices.uuid_key.is_empty() || self.devices.message_id_key.is_empty() {
            return Err(ConfigError::value(
                "devices.uuid_key",
                "key names must not be empty",
            ));
        }
        Ok(())
    }
}
