//! Token buckets keyed by a string: per principal (API Gateway's usage
//! plans: refilled at `rate_per_sec` up to `burst`) and per client address
//! for failed authentication. A request finding its bucket empty gets 429
//! with `Retry-After` (when one token will be back); [`crate::auth::require`]
//! applies both.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::config::ConfigError;

/// Per-principal token bucket (`LAMBDALESS_THROTTLE__*`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottleSettings {
    /// Sustained requests per second per principal; 0 disables throttling.
    pub rate_per_sec: f64,
    /// Requests a principal may make at once after being idle.
    pub burst: u32,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        Self {
            rate_per_sec: 5000.0,
            burst: 10000,
        }
    }
}

impl ThrottleSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.rate_per_sec.is_finite() || self.rate_per_sec < 0.0 {
            return Err(ConfigError::value("throttle.rate_per_sec", "must be ≥ 0"));
        }
        if self.burst == 0 {
            return Err(ConfigError::value("throttle.burst", "must be ≥ 1"));
        }
        Ok(())
    }
}

/// Buckets of every key seen; full (idle) ones are dropped when the map grows.
#[derive(Clone)]
pub struct Throttle {
    rate: f64,
    burst: f64,
    buckets: Arc<Mutex<HashMap<String, Bucket>>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Throttle {
    /// `rate_per_sec` ≤ 0 disables throttling.
    pub fn new(rate_per_sec: f64, burst: u32) -> Self {
        Self {
            rate: rate_per_sec,
            burst: f64::from(burst.max(1)),
            buckets: Arc::default(),
        }
    }

    pub fn from_settings(s: &ThrottleSettings) -> Self {
        Self::new(s.rate_per_sec, s.burst)
    }

    /// `burst` events a minute, refilled evenly; 0 disables.
    pub fn per_minute(burst: u32) -> Self {
        Self::new(f64::from(burst) / 60.0, burst)
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * self.rate;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.at = now;
    }

    fn wait(&self, tokens: f64) -> Duration {
        Duration::from_secs_f64((1.0 - tokens).max(0.0) / self.rate)
    }

    /// Takes one token for `who` at `now`, or says how long until one is back.
    pub fn take(&self, who: &str, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().expect("throttle lock");
        if buckets.len() > 100_000 {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(who.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        self.refill(bucket, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(self.wait(bucket.tokens))
        }
    }

    /// Whether `who` has a token left, without taking it (`Err`: how long until one is back).
    pub fn check(&self, who: &str, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().expect("throttle lock");
        match buckets.get_mut(who) {
            None => Ok(()),
            Some(bucket) => {
                self.refill(bucket, now);
                if bucket.tokens >= 1.0 {
                    Ok(())
                } else {
                    Err(self.wait(bucket.tokens))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_per_key() {
        let t = Throttle::new(2.0, 2);
        let t0 = Instant::now();
        assert!(t.take("a", t0).is_ok());
        assert!(t.check("a", t0).is_ok());
        assert!(t.take("a", t0).is_ok());
        let wait = t.take("a", t0).unwrap_err();
        assert!(wait <= Duration::from_millis(500) && wait > Duration::ZERO);
        assert!(t.check("a", t0).is_err());
        assert!(t.take("b", t0).is_ok(), "buckets are per key");
        assert!(t.take("a", t0 + Duration::from_millis(500)).is_ok());
    }

    #[test]
    fn per_minute_and_zero_rate() {
        let t = Throttle::per_minute(3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(t.take("ip", t0).is_ok());
        }
        let wait = t.take("ip", t0).unwrap_err();
        assert!(wait > Duration::from_secs(19) && wait <= Duration::from_secs(20));
        let off = Throttle::new(0.0, 1);
        for _ in 0..100 {
            assert!(off.take("a", Instant::now()).is_ok());
        }
        assert!(Throttle::per_minute(0).take("a", t0).is_ok());
    }
}
