//! The settings every service shares — log output, the health/metrics port,
//! the name prefix and the drain timeout — defined once, and the loader that
//! reads them beside each service's own settings.
//!
//! A service's settings struct keeps `deny_unknown_fields` and holds a
//! [`Common`] in a `#[serde(skip)]` field named `common`. serde's `flatten`
//! would turn `deny_unknown_fields` off, so [`load`] splits the keys itself:
//! the shared keys the service takes ([`CommonKeys`]) are read into
//! [`Common`], every other key goes to the service's struct, and a key
//! neither knows is refused naming it (the environment variable or the
//! file), as before. The keys stay top-level: `LAMBDALESS_ADMIN_PORT`,
//! `LAMBDALESS_LOG__FORMAT`, `prefix = "x"` in a file.

use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::value::StrDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::config::{self, ConfigError, LogSettings};
use crate::service::ServiceSettings;

/// Which shared settings a service takes, and under which names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommonKeys {
    /// The key of [`Common::port`]: `admin_port` (a separate health and
    /// metrics listener) or `port` (the service's own HTTP port).
    pub port: &'static str,
    /// Whether `prefix` is taken (every service that names queues or tables).
    pub prefix: bool,
    /// Whether `drain_timeout_secs` is taken (the workers).
    pub drain_timeout: bool,
}

/// The settings every service shares.
#[derive(Debug, Clone)]
pub struct Common {
    /// The keys this service takes (not a setting itself).
    pub keys: CommonKeys,
    /// `log.format` and `log.filter`.
    pub log: LogSettings,
    /// Serves `/healthz`, `/readyz` and `/metrics` — and, under the key
    /// `port`, the service itself. 0 picks a free port.
    pub port: u16,
    /// `prefix`: prepended to every queue and table name, so that several
    /// stacks can share one AWS account.
    pub prefix: String,
    /// `drain_timeout_secs`: on SIGTERM, how long the work in hand may take
    /// to finish. Keep it below the container's stop grace period.
    pub drain_timeout_secs: u64,
}

impl Common {
    /// An SQS or MQTT worker: `admin_port` 9090, `prefix`, `drain_timeout_secs` 20.
    pub fn worker() -> Self {
        Self::with(
            CommonKeys {
                port: "admin_port",
                prefix: true,
                drain_timeout: true,
            },
            9090,
        )
    }

    /// An HTTP service: `port` (the service port, also health and metrics), `prefix`.
    pub fn http(port: u16) -> Self {
        Self::with(
            CommonKeys {
                port: "port",
                prefix: true,
                drain_timeout: false,
            },
            port,
        )
    }

    /// The broker: `admin_port` 9090 only (it names no queue or table).
    pub fn broker() -> Self {
        Self::with(
            CommonKeys {
                port: "admin_port",
                prefix: false,
                drain_timeout: false,
            },
            9090,
        )
    }

    fn with(keys: CommonKeys, port: u16) -> Self {
        Self {
            keys,
            log: LogSettings::default(),
            port,
            prefix: String::new(),
            drain_timeout_secs: 20,
        }
    }

    /// The queue and table names under this prefix.
    pub fn names(&self) -> Result<lambdaless_contracts::Names, ConfigError> {
        config::names(&self.prefix)
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }

    /// The checks every service shares.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.names().map(|_| ())
    }

    fn takes(&self, key: &str) -> bool {
        key == "log"
            || key == self.keys.port
            || (self.keys.prefix && key == "prefix")
            || (self.keys.drain_timeout && key == "drain_timeout_secs")
    }

    fn key_names(&self) -> Vec<&'static str> {
        let mut keys = vec!["log", self.keys.port];
        if self.keys.prefix {
            keys.push("prefix");
        }
        if self.keys.drain_timeout {
            keys.push("drain_timeout_secs");
        }
        keys
    }

    /// Reads the value of the shared `key` into its field.
    fn take<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "log" => self.log = map.next_value()?,
            "prefix" => self.prefix = map.next_value()?,
            "drain_timeout_secs" => self.drain_timeout_secs = map.next_value()?,
            _ => self.port = map.next_value()?,
        }
        Ok(())
    }
}

/// Loads `S` from defaults, the TOML file named by `LAMBDALESS_CONFIG` and
/// the `LAMBDALESS_*` environment, its shared settings included.
pub fn load<S: ServiceSettings>() -> Result<S, ConfigError> {
    config::load::<Split<S>>().map(Split::finish)
}

/// [`load`] from defaults and the given file only, whatever the process
/// environment holds (for tests).
pub fn load_with_file<S: ServiceSettings>(file: Option<PathBuf>) -> Result<S, ConfigError> {
    config::load_with_file::<Split<S>>(file).map(Split::finish)
}

/// A service's own settings and the shared ones read beside them.
struct Split<S> {
    own: S,
    common: Common,
}

impl<S: ServiceSettings> Split<S> {
    fn finish(self) -> S {
        let mut own = self.own;
        *own.common_mut() = self.common;
        own.loaded();
        own
    }
}

impl<'de, S: ServiceSettings> Deserialize<'de> for Split<S> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(SplitVisitor(PhantomData))
    }
}

struct SplitVisitor<S>(PhantomData<S>);

impl<'de, S: ServiceSettings> Visitor<'de> for SplitVisitor<S> {
    type Value = Split<S>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table of settings")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Split<S>, A::Error> {
        let mut common = S::default().common_mut().clone();
        let own = S::deserialize(Own {
            map,
            common: &mut common,
        })?;
        Ok(Split { own, common })
    }
}

/// The settings map with the shared keys taken out, as the service's
/// struct sees it.
struct Own<'c, A> {
    map: A,
    common: &'c mut Common,
}

impl<'de, A: MapAccess<'de>> Deserializer<'de> for Own<'_, A> {
    type Error = A::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, A::Error> {
        visitor.visit_map(OwnMap {
            map: self.map,
            common: self.common,
            fields: None,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        visitor.visit_map(OwnMap {
            map: self.map,
            common: self.common,
            fields: Some(fields),
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

struct OwnMap<'c, A> {
    map: A,
    common: &'c mut Common,
    /// The service struct's own field names, to name every accepted key
    /// when one is unknown.
    fields: Option<&'static [&'static str]>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for OwnMap<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let mut seed = seed;
        loop {
            let key = KeySeed {
                seed,
                common: self.common,
                fields: self.fields,
            };
            match self.map.next_key_seed(key)? {
                None => return Ok(None),
                Some(Key::Own(value)) => return Ok(Some(value)),
                Some(Key::Common(name, back)) => {
                    self.common.take(&name, &mut self.map)?;
                    seed = back;
                }
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

/// One key: a shared one (handing the service's seed back), or the
/// service's own. Deciding inside the inner map's key deserialization keeps
/// its error reporting: a refused key is named as the user wrote it.
enum Key<K, V> {
    Common(String, K),
    Own(V),
}

struct KeySeed<'c, K> {
    seed: K,
    common: &'c Common,
    fields: Option<&'static [&'static str]>,
}

impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for KeySeed<'_, K> {
    type Value = Key<K, K::Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        let name = String::deserialize(deserializer)?;
        if self.common.takes(&name) {
            return Ok(Key::Common(name, self.seed));
        }
        if let Some(fields) = self.fields {
            if !fields.contains(&name.as_str()) {
                let mut known = self.common.key_names();
                known.extend(fields.iter().copied());
                return Err(de::Error::custom(format_args!(
                    "unknown setting `{name}`, expected one of `{}`",
                    known.join("`, `")
                )));
            }
        }
        let inner: StrDeserializer<'_, D::Error> = name.as_str().into_deserializer();
        self.seed.deserialize(inner).map(Key::Own)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Sample {
        #[serde(skip)]
        common: Common,
        pollers: usize,
        nested: Nested,
    }

    #[derive(Debug, Clone, Default, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Nested {
        depth: u8,
    }

    impl Default for Sample {
        fn default() -> Self {
            Self {
                common: Common::worker(),
                pollers: 2,
                nested: Nested::default(),
            }
        }
    }

    impl ServiceSettings for Sample {
        const SERVICE: &'static str = "sample";
        fn common_mut(&mut self) -> &mut Common {
            &mut self.common
        }
    }

    fn from_toml(name: &str, text: &str) -> Result<Sample, ConfigError> {
        let dir = std::env::temp_dir().join(format!("lambdaless-common-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(name);
        std::fs::write(&file, text).unwrap();
        load_with_file(Some(file))
    }

    #[test]
    fn defaults_hold_without_a_file() {
        let s: Sample = load_with_file(None).unwrap();
        assert_eq!((s.common.port, s.common.drain_timeout_secs), (9090, 20));
        assert_eq!(s.pollers, 2);
    }

    #[test]
    fn shared_and_own_keys_load_side_by_side() {
        let s = from_toml(
            "both.toml",
            "admin_port = 0\nprefix = \"t-\"\ndrain_timeout_secs = 3\npollers = 5\n\
             [log]\nformat = \"json\"\n[nested]\ndepth = 4\n",
        )
        .unwrap();
        assert_eq!(s.common.port, 0);
        assert_eq!(s.common.prefix, "t-");
        assert_eq!(s.common.drain_timeout(), Duration::from_secs(3));
        assert_eq!(s.common.log.format, config::LogFormat::Json);
        assert_eq!((s.pollers, s.nested.depth), (5, 4));
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let msg = from_toml("unknown.toml", "admin_prot = 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("admin_prot") && msg.contains("unknown.toml"),
            "{msg}"
        );
        assert!(
            msg.contains("`admin_port`") && msg.contains("`pollers`"),
            "{msg}"
        );
        let msg = from_toml("nested.toml", "[nested]\nwidth = 1\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("width"), "{msg}");
        // `port` is an HTTP service's key, not a worker's.
        let msg = from_toml("port.toml", "port = 1\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("unknown setting `port`"), "{msg}");
    }

    #[test]
    fn bad_shared_values_name_their_key() {
        let msg = from_toml("bad.toml", "admin_port = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("admin_port") && msg.contains("bad.toml"),
            "{msg}"
        );
        let msg = from_toml("badlog.toml", "[log]\nformat = \"xml\"\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("log.format"), "{msg}");
    }
}
