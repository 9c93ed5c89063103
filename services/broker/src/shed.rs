//! Load shedding at the door: a per-connection publish rate for every user
//! that is not a `service` (in practice `device` users), like AWS IoT
//! Core's per-connection publish limit.
//!
//! Why here and not in `mqtt-api`: rumqttd 0.20 delivers every message at the
//! subscription's QoS (`publish.qos = protocol::qos(qos)` in its router's
//! `forward_device_data`), so `mqtt-api`, subscribed at QoS 1, receives a
//! QoS 0 request exactly like a QoS 1 one, through rumqttd's fixed window of
//! 100 unacknowledged messages. A QoS 0 flood therefore never reaches a queue
//! of ours: it waits in rumqttd's log for `$share/mqtt-api/request/#`, ahead
//! of everyone else's requests. Only the front end still knows a publish's
//! QoS, so it sheds there:
//! - a QoS 0 PUBLISH over the rate is dropped and counted
//!   (`broker_publishes_shed_total`): QoS 0 promises nothing;
//! - a QoS 1/2 PUBLISH over the rate waits for its token while the front end
//!   stops reading that client's socket, so the client's own in-flight
//!   window fills and it slows down (`broker_publishes_delayed_total`).
//!   Nothing acknowledged is dropped.

use std::time::{Duration, Instant};

/// A token bucket: `rate` publishes per second on average, `burst` at once.
#[derive(Debug, Clone)]
pub(crate) struct PublishRate {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl PublishRate {
    /// A full bucket; `None` when `rate` is 0 (no limit).
    pub(crate) fn new(rate: u32, burst: u32, now: Instant) -> Option<Self> {
        (rate > 0).then(|| {
            let burst = f64::from(burst.max(1));
            Self {
                rate: f64::from(rate),
                burst,
                tokens: burst,
                last: now,
            }
        })
    }

    /// Takes one token, or says how long until one is there.
    pub(crate) fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_rate_is_no_limit() {
        assert!(PublishRate::new(0, 10, Instant::now()).is_none());
    }

    #[test]
    fn a_burst_passes_then_the_rate_applies() {
        let t0 = Instant::now();
        let mut r = PublishRate::new(100, 5, t0).unwrap();
        for _ in 0..5 {
            assert!(r.take(t0).is_ok());
        }
        let wait = r.take(t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(9) && wait <= Duration::from_millis(10),
            "{wait:?}"
        );
        // 10 ms later one token is back, and only one.
        let t1 = t0 + Duration::from_millis(10);
        assert!(r.take(t1).is_ok());
        assert!(r.take(t1).is_err());
        // A long pause refills up to the burst, never beyond.
        let t2 = t1 + Duration::from_secs(60);
        let passed = (0..100).filter(|_| r.take(t2).is_ok()).count();
        assert_eq!(passed, 5);
    }

    #[test]
    fn a_flood_passes_about_the_rate() {
        let t0 = Instant::now();
        let mut r = PublishRate::new(100, 100, t0).unwrap();
        // 50,000 publishes spread over 2 s: the burst plus 2 s of rate.
        let passed = (0..50_000u32)
            .filter(|i| {
                r.take(t0 + Duration::from_micros(u64::from(*i) * 40))
                    .is_ok()
            })
            .count();
        assert!((290..=301).contains(&passed), "{passed}");
    }
}
