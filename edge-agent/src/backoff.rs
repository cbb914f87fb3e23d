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
}
