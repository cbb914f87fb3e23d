//! The login limiter (OWASP ASVS 4.0 §2.2.1), sans-IO: time is passed in, so the rule is
//! tested without waiting, and each binary keeps one behind a lock.
//!
//! An attempt is reserved (checked and counted as a failure in one step) *before* the
//! password is verified, so concurrent guesses each see the ones before them and no more
//! than the limit are ever verified; a login that succeeds gives its reservation back.

/// Failed logins one user name may have within [`LoginLimiter::WINDOW`].
pub const MAX_FAILURES_PER_USER: usize = 5;
/// Failed logins one client address may have within [`LoginLimiter::WINDOW`] (several
/// officers may share a booth's address, so this is looser than the per-user bound).
pub const MAX_FAILURES_PER_ADDR: usize = 20;
/// Most keys the limiter tracks; beyond this the oldest are forgotten, so a flood of
/// invented user names cannot grow memory without bound.
const MAX_KEYS: usize = 10_000;

/// Throttles password guessing (OWASP ASVS 4.0 §2.2.1): after
/// [`MAX_FAILURES_PER_USER`] failures for a user name, or [`MAX_FAILURES_PER_ADDR`] from
/// one client address, within [`LoginLimiter::WINDOW`], further attempts are refused
/// without checking the password until the oldest failure leaves the window.
///
/// Time is passed in, so the rule is tested without waiting.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    failures: std::collections::HashMap<String, std::collections::VecDeque<jiff::Timestamp>>,
}

impl LoginLimiter {
    /// The sliding window failures are counted in.
    pub const WINDOW: jiff::SignedDuration = jiff::SignedDuration::from_mins(5);

    fn keys(user: &str, addr: Option<std::net::IpAddr>) -> Vec<(String, usize)> {
        let mut keys = vec![(
            format!("u:{}", user.trim().to_ascii_lowercase()),
            MAX_FAILURES_PER_USER,
        )];
        if let Some(a) = addr {
            keys.push((format!("a:{a}"), MAX_FAILURES_PER_ADDR));
        }
        keys
    }

    fn prune(&mut self, now: jiff::Timestamp) {
        let cutoff = now.checked_sub(Self::WINDOW).unwrap_or(now);
        self.failures.retain(|_, q| {
            while q.front().is_some_and(|t| *t <= cutoff) {
                q.pop_front();
            }
            !q.is_empty()
        });
    }

    /// `Some(wait)` when an attempt for `user` from `addr` must be refused now, with how
    /// long until the next one may be tried.
    pub fn check(
        &mut self,
        user: &str,
        addr: Option<std::net::IpAddr>,
        now: jiff::Timestamp,
    ) -> Option<jiff::SignedDuration> {
        self.prune(now);
        Self::keys(user, addr)
            .into_iter()
            .filter_map(|(k, max)| {
                let q = self.failures.get(&k)?;
                (q.len() >= max).then(|| {
                    let oldest = q.front().copied().unwrap_or(now);
                    Self::WINDOW - now.duration_since(oldest)
                })
            })
            .max()
    }

    /// Checks the limit and, when the attempt may go ahead, counts it as a failure at
    /// once, in one step: concurrent attempts each see the ones before them, so no more
    /// than the limit are ever checked. A login that then succeeds gives its reservation
    /// back with [`LoginLimiter::succeeded`].
    ///
    /// # Errors
    /// How long until the next attempt may be tried, when this one must be refused.
    pub fn reserve(
        &mut self,
        user: &str,
        addr: Option<std::net::IpAddr>,
        now: jiff::Timestamp,
    ) -> Result<(), jiff::SignedDuration> {
        if let Some(wait) = self.check(user, addr, now) {
            return Err(wait);
        }
        self.failed(user, addr, now);
        Ok(())
    }

    /// Counts a failed attempt.
    pub fn failed(&mut self, user: &str, addr: Option<std::net::IpAddr>, now: jiff::Timestamp) {
        self.prune(now);
        if self.failures.len() >= MAX_KEYS {
            // Forget the key whose latest failure is oldest.
            if let Some(k) = self
                .failures
                .iter()
                .min_by_key(|(_, q)| q.back().copied())
                .map(|(k, _)| k.clone())
            {
                self.failures.remove(&k);
            }
        }
        for (k, max) in Self::keys(user, addr) {
            let q = self.failures.entry(k).or_default();
            q.push_back(now);
            while q.len() > max {
                q.pop_front();
            }
        }
    }

    /// Forgets a user's failures after a successful login, and gives back the address's
    /// reservation made at `at` by [`LoginLimiter::reserve`] (its earlier failures stay).
    pub fn succeeded(&mut self, user: &str, addr: Option<std::net::IpAddr>, at: jiff::Timestamp) {
        self.failures
            .remove(&format!("u:{}", user.trim().to_ascii_lowercase()));
        if let Some(a) = addr {
            let key = format!("a:{a}");
            if let Some(q) = self.failures.get_mut(&key) {
                if let Some(i) = q.iter().rposition(|t| *t == at) {
                    q.remove(i);
                }
                if q.is_empty() {
                    self.failures.remove(&key);
                }
            }
        }
    }
}

/// The `Retry-After` value (whole seconds, rounded up, at least 1) for a refusal that
/// lasts `wait`.
#[must_use]
pub fn retry_after_secs(wait: jiff::SignedDuration) -> u64 {
    let ms = wait.as_millis().max(0);
    u64::try_from((ms + 999) / 1000).unwrap_or(u64::MAX).max(1)
}

/// `response` (a `429`) with the `Retry-After` header for a refusal that lasts `wait`.
#[must_use]
pub fn with_retry_after(
    mut response: axum::response::Response,
    wait: jiff::SignedDuration,
) -> axum::response::Response {
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from(retry_after_secs(wait)),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty limiter, the test's start time and a client at `ip`.
    fn fresh(ip: &str) -> (LoginLimiter, jiff::Timestamp, std::net::IpAddr) {
        let t0 = "2025-01-01T10:00:00Z".parse().expect("time");
        (LoginLimiter::default(), t0, ip.parse().expect("ip"))
    }

    #[test]
    fn limiter_refuses_after_five_failures_per_user_until_the_window_moves() {
        let (mut l, t0, ip) = fresh("127.0.0.1");
        for i in 0..5 {
            assert_eq!(l.check("Ana", Some(ip), t0), None, "attempt {i} allowed");
            l.failed("Ana", Some(ip), t0);
        }
        let wait = l.check("ana", Some(ip), t0).expect("sixth refused");
        assert_eq!(wait, LoginLimiter::WINDOW);
        // Another user from the same address is not locked out by ana's failures.
        assert_eq!(l.check("bea", Some(ip), t0), None);
        let later = t0
            .checked_add(LoginLimiter::WINDOW + jiff::SignedDuration::from_secs(1))
            .expect("time");
        assert_eq!(l.check("ana", Some(ip), later), None, "window passed");
    }

    #[test]
    fn limiter_bounds_failures_per_address_across_user_names() {
        let (mut l, t0, ip) = fresh("10.0.0.9");
        for i in 0..MAX_FAILURES_PER_ADDR {
            l.failed(&format!("guess{i}"), Some(ip), t0);
        }
        assert!(l.check("fresh-name", Some(ip), t0).is_some());
        assert_eq!(l.check("fresh-name", None, t0), None);
        l.succeeded("guess1", None, t0);
        assert!(
            l.check("guess1", Some(ip), t0).is_some(),
            "address still limited"
        );
    }

    #[test]
    fn a_reservation_counts_before_the_password_is_checked() {
        let (mut l, t0, ip) = fresh("127.0.0.1");
        // Five attempts in flight at once, none finished: the sixth is refused.
        for i in 0..MAX_FAILURES_PER_USER {
            assert_eq!(l.reserve("ana", Some(ip), t0), Ok(()), "attempt {i}");
        }
        assert!(l.reserve("ana", Some(ip), t0).is_err());
        // A success gives back the user's failures and its own address reservation.
        let mut l = LoginLimiter::default();
        l.failed("x", Some(ip), t0);
        l.reserve("bea", Some(ip), t0).expect("allowed");
        l.succeeded("bea", Some(ip), t0);
        assert_eq!(l.failures.get(&format!("a:{ip}")).map(|q| q.len()), Some(1));
        assert!(!l.failures.contains_key("u:bea"));
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        use jiff::SignedDuration as D;
        assert_eq!(retry_after_secs(D::from_millis(1)), 1);
        assert_eq!(retry_after_secs(D::ZERO), 1);
        assert_eq!(retry_after_secs(D::from_millis(299_001)), 300);
        assert_eq!(retry_after_secs(LoginLimiter::WINDOW), 300);
        let r = with_retry_after(axum::response::Response::default(), D::from_millis(1500));
        assert_eq!(r.headers()[axum::http::header::RETRY_AFTER], "2");
    }
}
