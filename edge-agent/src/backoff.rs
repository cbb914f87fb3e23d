//! Reconnection and retry delays: exponential backoff with full jitter, used by every
//! source, the uplink and replication.

use std::time::Duration;

use rand::Rng as _;

/// Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And
/// Jitter", 2015): the n-th wait is uniform in `[0, min(cap, base · 2ⁿ)]`, so many agents
/// that lost the same broker or central do not come back in lock step.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `base` and never waiting longer than `cap`.
    #[must_use]
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }

    /// The ceiling of the next wait (before jitter), without consuming an attempt.
    #[must_use]
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The next wait: uniform in `[base/2, ceiling]` — full jitter, but never so short that
    /// a dead device is hammered in a tight loop.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_with(rand::rng().random_range(0.0..=1.0f64))
    }

    /// [`Backoff::next_delay`] with the random draw given (`jitter` in `[0, 1]`, clamped):
    /// for sans-IO callers and tests.
    pub fn next_delay_with(&mut self, jitter: f64) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let floor = (self.base / 2).min(ceiling);
        let span = ceiling.saturating_sub(floor);
        floor
            + span.mul_f64(if jitter.is_nan() {
                0.0
            } else {
                jitter.clamp(0.0, 1.0)
            })
    }

    /// Start over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Attempts since the last reset.
    #[must_use]
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// A connection must stay up this long before the reconnect backoff starts over.
pub const STABLE_AFTER: Duration = Duration::from_secs(30);

/// When to retry a connection that keeps being lost: the [`Backoff`] starts over only
/// after a connection has stayed up for `stable_after`. A connection that is accepted and
/// then fails at once (a broker that refuses the session, a message the client cannot
/// take, a TLS or login failure after connecting) keeps growing the wait instead of
/// reconnecting several times a second. Sans-IO: the caller passes the time.
#[derive(Debug, Clone)]
pub struct Reconnect {
    backoff: Backoff,
    stable_after: Duration,
    up_since: Option<std::time::Instant>,
}

impl Reconnect {
    /// A policy over `backoff` that trusts a connection after `stable_after`.
    #[must_use]
    pub fn new(backoff: Backoff, stable_after: Duration) -> Self {
        Self {
            backoff,
            stable_after,
            up_since: None,
        }
    }

    /// The connection is up (at `now`).
    pub fn connected(&mut self, now: std::time::Instant) {
        self.up_since = Some(now);
    }

    /// The connection was lost or could not be made (at `now`): how long to wait before
    /// the next attempt, `jitter` in `[0, 1]` as for [`Backoff::next_delay_with`].
    pub fn lost(&mut self, now: std::time::Instant, jitter: f64) -> Duration {
        if self
            .up_since
            .take()
            .is_some_and(|t| now.saturating_duration_since(t) >= self.stable_after)
        {
            self.backoff.reset();
        }
        self.backoff.next_delay_with(jitter)
    }

    /// [`Reconnect::lost`] with a random jitter.
    pub fn lost_now(&mut self) -> Duration {
        self.lost(
            std::time::Instant::now(),
            rand::rng().random_range(0.0..=1.0f64),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        for _ in 0..10 {
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(1), "{d:?} exceeds the cap");
            assert!(d >= Duration::from_millis(50), "{d:?} below the floor");
        }
        assert_eq!(b.ceiling(), Duration::from_secs(1));
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }

    fn policy() -> Reconnect {
        Reconnect::new(
            Backoff::new(Duration::from_millis(250), Duration::from_secs(10)),
            Duration::from_secs(30),
        )
    }

    #[test]
    fn a_connection_that_fails_at_once_does_not_reset_the_backoff() {
        let mut r = policy();
        let t0 = std::time::Instant::now();
        let mut waits = Vec::new();
        let mut now = t0;
        for _ in 0..8 {
            // Accepted, then lost 50 ms later (a broker that drops us on every connect).
            r.connected(now);
            now += Duration::from_millis(50);
            let w = r.lost(now, 1.0);
            waits.push(w);
            now += w;
        }
        assert!(
            waits.windows(2).all(|w| w[1] >= w[0]),
            "waits must not fall back: {waits:?}"
        );
        assert_eq!(
            waits.last().copied(),
            Some(Duration::from_secs(10)),
            "{waits:?}"
        );
        // Eight such connections took more than 20 s, not a second and a half.
        assert!(now - t0 > Duration::from_secs(20), "{:?}", now - t0);
    }

    #[test]
    fn a_connection_that_stayed_up_starts_the_backoff_over() {
        let mut r = policy();
        let t0 = std::time::Instant::now();
        for _ in 0..6 {
            let _ = r.lost(t0, 1.0);
        }
        r.connected(t0);
        let w = r.lost(t0 + Duration::from_secs(31), 1.0);
        assert_eq!(w, Duration::from_millis(250));
        // Never connected: failing attempts keep growing.
        let mut never = policy();
        let first = never.lost(t0, 1.0);
        let second = never.lost(t0, 1.0);
        assert!(second > first);
    }
}
