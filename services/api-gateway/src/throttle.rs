//! Per-principal throttling (API Gateway's usage plans): a token bucket per
//! authenticated caller, refilled at `rate_per_sec` up to `burst`. A request
//! finding the bucket empty gets 429 with `Retry-After` (when one token will
//! be back). Runs after authentication, so it keys on the principal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use lambdaless_runtime::auth::Principal;

use crate::error::ApiError;

/// Buckets of every principal seen; idle ones are dropped when the map grows.
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
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * self.rate;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }
}

/// Middleware; place it inside the auth layer.
pub async fn limit(State(throttle): State<Throttle>, req: Request, next: Next) -> Response {
    let who = req
        .extensions()
        .get::<Principal>()
        .map(|p| p.id.clone())
        .unwrap_or_else(|| "anonymous".to_owned());
    match throttle.take(&who, Instant::now()) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            metrics::counter!("throttled_requests_total").increment(1);
            ApiError::Throttled(wait).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_per_principal() {
        let t = Throttle::new(2.0, 2);
        let t0 = Instant::now();
        assert!(t.take("a", t0).is_ok());
        assert!(t.take("a", t0).is_ok());
        let wait = t.take("a", t0).unwrap_err();
        assert!(wait <= Duration::from_millis(500) && wait > Duration::ZERO);
        assert!(t.take("b", t0).is_ok(), "buckets are per principal");
        assert!(t.take("a", t0 + Duration::from_millis(500)).is_ok());
    }

    #[test]
    fn zero_rate_disables() {
        let t = Throttle::new(0.0, 1);
        for _ in 0..100 {
            assert!(t.take("a", Instant::now()).is_ok());
        }
    }
}
