//! Who may read what, and how much at once: the scope each allow-listed
//! table needs, and per-principal caps on concurrent streams and on the
//! scan segments they run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use lambdaless_contracts::names;
use lambdaless_runtime::auth::{self, SCOPES};
use lambdaless_runtime::error::ApiError;
use lambdaless_runtime::ConfigError;

/// The scope that reads a table when its allow-list entry names none.
pub fn default_scope(table: &str) -> &'static str {
    match table {
        names::CUSTOMERS | names::PRODUCTS | names::ORDERS | names::ORDER_ITEMS => {
            auth::ORDERS_READ
        }
        names::DEVICE_MESSAGES => auth::DEVICES_READ,
        names::DOCUMENTS => auth::FETCH,
        names::USERS => auth::USERS_READ,
        _ => auth::STREAM_READ,
    }
}

/// Parses allow-list entries `table` or `table=scope`.
pub fn parse_tables(entries: &[String]) -> Result<Vec<(String, &'static str)>, ConfigError> {
    entries
        .iter()
        .map(|entry| {
            let (table, scope) = match entry.split_once('=') {
                Some((t, s)) => {
                    let s = s.trim();
                    let scope = SCOPES.iter().find(|k| **k == s).ok_or_else(|| {
                        ConfigError::value(
                            "tables",
                            format!("{entry:?}: unknown scope (known: {})", SCOPES.join(" ")),
                        )
                    })?;
                    (t.trim(), *scope)
                }
                None => (entry.trim(), default_scope(entry.trim())),
            };
            if lambdaless_contracts::schema::table(table).is_none() {
                return Err(ConfigError::value(
                    "tables",
                    format!("{table:?} is not a lambdaless table"),
                ));
            }
            Ok((table.to_owned(), scope))
        })
        .collect()
}

/// Streams and segments in flight per principal.
#[derive(Clone)]
pub struct Slots {
    in_use: Arc<Mutex<HashMap<String, (usize, usize)>>>,
    max_streams: usize,
    max_segments: usize,
}

/// One stream's share of its principal's caps, given back when dropped.
pub struct Slot {
    slots: Slots,
    who: String,
    segments: usize,
}

impl Slots {
    pub fn new(max_streams: usize, max_segments: usize) -> Self {
        Self {
            in_use: Arc::default(),
            max_streams,
            max_segments,
        }
    }

    /// Reserves one stream of `segments` readers for `who`, or 429.
    pub fn acquire(&self, who: &str, segments: usize) -> Result<Slot, ApiError> {
        let mut in_use = self.in_use.lock().expect("slots lock");
        let (streams, used) = in_use.get(who).copied().unwrap_or((0, 0));
        let refuse = |message: String| ApiError::Throttled {
            message,
            wait: std::time::Duration::from_secs(1),
        };
        if streams >= self.max_streams {
            return Err(refuse(format!(
                "too many concurrent streams: this caller may run {} at once",
                self.max_streams
            )));
        }
        if used + segments > self.max_segments {
            return Err(refuse(format!(
                "too many scan segments in flight: this caller may run {} at once ({used} running)",
                self.max_segments
            )));
        }
        in_use.insert(who.to_owned(), (streams + 1, used + segments));
        Ok(Slot {
            slots: self.clone(),
            who: who.to_owned(),
            segments,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut in_use = self.slots.in_use.lock().expect("slots lock");
        if let Some((streams, used)) = in_use.get_mut(&self.who) {
            *streams -= 1;
            *used -= self.segments;
            if *streams == 0 {
                in_use.remove(&self.who);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_name_their_scope() {
        let t = parse_tables(&[
            "artists".into(),
            "orders".into(),
            "device-messages".into(),
            "documents=admin".into(),
        ])
        .unwrap();
        let scopes: Vec<&str> = t.iter().map(|(_, s)| *s).collect();
        assert_eq!(
            scopes,
            ["stream:read", "orders:read", "devices:read", "admin"]
        );
        assert!(parse_tables(&["artists=root".into()]).is_err());
        assert!(parse_tables(&["secrets".into()]).is_err());
    }

    #[test]
    fn caps_per_principal_are_given_back() {
        let slots = Slots::new(2, 5);
        let a = slots.acquire("a", 4).unwrap();
        assert!(slots.acquire("a", 2).is_err(), "segments over the cap");
        let b = slots.acquire("a", 1).unwrap();
        assert!(slots.acquire("a", 0).is_err(), "streams over the cap");
        assert!(slots.acquire("b", 5).is_ok(), "caps are per principal");
        drop(a);
        drop(b);
        let _c = slots.acquire("a", 5).unwrap();
    }
}
