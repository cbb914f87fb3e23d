//! Per-client request rate limit for the staff API and the dashboard: a token bucket per
//! client address (`rate_limit_per_s`, `rate_limit_burst` in the configuration).
//!
//! Agents' routes (ingest, heartbeats, registry replication) are not limited here: they
//! are authenticated per gate, bounded by batch size and long-poll, and a backlog after an
//! outage must drain at full speed. Health and metrics are not limited either, so that
//! monitoring keeps working under load.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Most addresses remembered; beyond it, buckets that are full again are forgotten.
const MAX_CLIENTS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by client address.
#[derive(Debug)]
pub struct RateLimiter {
    per_s: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    /// A limiter allowing `per_s` requests a second with bursts of `burst`; `None` when
    /// `per_s` is 0 (no limit).
    #[must_use]
    pub fn new(per_s: u32, burst: u32) -> Option<Arc<Self>> {
        (per_s > 0).then(|| {
            Arc::new(Self {
                per_s: f64::from(per_s),
                burst: f64::from(burst.max(1)),
                buckets: Mutex::new(HashMap::new()),
            })
        })
    }

    /// Takes one token for `ip` at `now`; `Err(seconds to wait)` when there is none.
    ///
    /// # Errors
    /// The seconds until a token is available.
    pub fn take(&self, ip: IpAddr, now: Instant) -> Result<(), f64> {
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&ip) {
            let (per_s, burst) = (self.per_s, self.burst);
            buckets
                .retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * per_s < burst);
        }
        let b = buckets.entry(ip).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refill = now.saturating_duration_since(b.at).as_secs_f64() * self.per_s;
        b.tokens = (b.tokens + refill).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err((1.0 - b.tokens) / self.per_s)
        }
    }
}

/// Whether `path` is exempt (agents' routes, health, metrics, static assets).
fn exempt(path: &str) -> bool {
    path.starts_with("/api/v1/agents/")
        || path.starts_with("/api/v1/registry/snapshot")
        || path.starts_with("/api/v1/registry/changes")
        || path == "/healthz"
        || path == "/readyz"
        || path == "/metrics"
        || path.starts_with("/assets/")
}

/// The middleware: `429 Too Many Requests` with `Retry-After` when the client's bucket is
/// empty. Requests whose client address is unknown (in-process tests) pass.
pub async fn limit(
    State(limiter): State<Option<Arc<RateLimiter>>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(limiter) = limiter else {
        return next.run(req).await;
    };
    if exempt(req.uri().path()) {
        return next.run(req).await;
    }
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip());
    let Some(ip) = ip else {
        return next.run(req).await;
    };
    match limiter.take(ip, Instant::now()) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            metrics::counter!("central_rate_limited_total").increment(1);
            let mut r = (
                StatusCode::TOO_MANY_REQUESTS,
                axum::Json(
                    serde_json::json!({"error": "too many requests from this address; slow down"}),
                ),
            )
                .into_response();
            // Whole seconds, rounded up, at least 1.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let secs = wait.ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_is_allowed_then_the_rate_holds() {
        let l = RateLimiter::new(10, 3).expect("limited");
        let ip: IpAddr = [192, 0, 2, 1].into();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.take(ip, t0).is_ok());
        }
        let wait = l.take(ip, t0).expect_err("bucket empty");
        assert!((wait - 0.1).abs() < 1e-9, "one token every 100 ms: {wait}");
        assert!(l.take(ip, t0 + Duration::from_millis(100)).is_ok());
        assert!(l.take(ip, t0 + Duration::from_millis(100)).is_err());
        // Another address has its own bucket.
        assert!(l.take([192, 0, 2, 2].into(), t0).is_ok());
    }

    #[test]
    fn zero_turns_the_limit_off_and_agent_routes_are_exempt() {
        assert!(RateLimiter::new(0, 10).is_none());
        assert!(exempt("/api/v1/agents/G1/events"));
        assert!(exempt("/api/v1/registry/changes"));
        assert!(exempt("/readyz"));
        assert!(!exempt("/api/v1/cases"));
        assert!(!exempt("/login"));
    }
}
