//! Tokens and passwords.
//!
//! Agent and session tokens are 32 bytes from the operating system's CSPRNG, shown once as
//! 64 hex digits; central stores only their SHA-256 ([`crate::model::TokenHash`]). Staff
//! passwords are low-entropy, so they get Argon2id (RFC 9106) with a per-user salt.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use sha2::{Digest as _, Sha256};

use crate::model::TokenHash;
use crate::store_error::StoreError;

/// Why an agent-token, staff-user or session operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("user {0} already exists")]
    UserExists(String),
    #[error("user {0} does not exist")]
    UnknownUser(String),
    #[error("gate {gate} is registered for port {existing}, not {requested}")]
    GatePortConflict {
        gate: String,
        existing: String,
        requested: String,
    },
    /// A malformed request: user name, role, password length, port, fingerprint.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Hash(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UserExists(u) => Self::UserExists(u),
            StoreError::UnknownUser(u) => Self::UnknownUser(u),
            StoreError::GatePortConflict {
                gate,
                existing,
                requested,
            } => Self::GatePortConflict {
                gate,
                existing,
                requested,
            },
            other => Self::Store(other),
        }
    }
}

/// The client certificate a TLS connection presented: hex SHA-256 of its DER, or `None`.
/// The server puts it into every request of the connection; the agent extractor checks it
/// against the certificate an agent token was registered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert(pub Option<String>);

/// Hex SHA-256 of a certificate's DER (how agent certificates are registered).
#[must_use]
pub fn cert_fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// A fresh token and its hash.
#[must_use]
pub fn new_token() -> (String, TokenHash) {
    let raw: [u8; 32] = rand::random();
    let token = hex::encode(raw);
    let hash = hash_token(&token);
    (token, hash)
}

/// SHA-256 of a token's text.
#[must_use]
pub fn hash_token(token: &str) -> TokenHash {
    Sha256::digest(token.trim().as_bytes()).into()
}

/// The token in an `Authorization: Bearer …` header value.
#[must_use]
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let v = header?.trim();
    let (scheme, rest) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

fn argon(m_cost_kib: u32, t_cost: u32) -> Result<Argon2<'static>, argon2::Error> {
    Ok(Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(m_cost_kib, t_cost, 1, None)?,
    ))
}

/// Hashes a password into a PHC string (the parameters travel inside it).
///
/// # Errors
/// When the cost parameters are out of Argon2's range.
pub fn hash_password(password: &str, m_cost_kib: u32, t_cost: u32) -> Result<String, AuthError> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt =
        SaltString::encode_b64(&salt_bytes).map_err(|e| AuthError::Hash(format!("salt: {e}")))?;
    let a = argon(m_cost_kib, t_cost)
        .map_err(|e| AuthError::Hash(format!("argon2 parameters: {e}")))?;
    Ok(a.hash_password(password.as_bytes(), &salt)
        .map_err(|e| AuthError::Hash(format!("hashing password: {e}")))?
        .to_string())
}

/// Whether `password` matches a PHC string from [`hash_password`].
#[must_use]
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

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

    /// Forgets a user's failures after a successful login (the address's stay).
    pub fn succeeded(&mut self, user: &str) {
        self.failures
            .remove(&format!("u:{}", user.trim().to_ascii_lowercase()));
    }
}

/// The CSRF token of a browser session: SHA-256 of a fixed label and the session token.
///
/// It is derived, not stored: only someone holding the session token (the cookie, which
/// scripts cannot read) can compute it, and it changes with every login.
#[must_use]
pub fn csrf_token(session_token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"aeogate-csrf-v1\0");
    h.update(session_token.trim().as_bytes());
    hex::encode(h.finalize())
}

/// Compares two secrets in time independent of where they differ.
#[must_use]
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_refuses_after_five_failures_per_user_until_the_window_moves() {
        let mut l = LoginLimiter::default();
        let t0: jiff::Timestamp = "2025-01-01T10:00:00Z".parse().expect("time");
        let ip: std::net::IpAddr = "127.0.0.1".parse().expect("ip");
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
        let mut l = LoginLimiter::default();
        let t0: jiff::Timestamp = "2025-01-01T10:00:00Z".parse().expect("time");
        let ip: std::net::IpAddr = "10.0.0.9".parse().expect("ip");
        for i in 0..MAX_FAILURES_PER_ADDR {
            l.failed(&format!("guess{i}"), Some(ip), t0);
        }
        assert!(l.check("fresh-name", Some(ip), t0).is_some());
        assert_eq!(l.check("fresh-name", None, t0), None);
        l.succeeded("guess1");
        assert!(
            l.check("guess1", Some(ip), t0).is_some(),
            "address still limited"
        );
    }

    #[test]
    fn csrf_token_is_per_session_and_compared_whole() {
        let a = csrf_token("aa");
        assert_eq!(a.len(), 64);
        assert_ne!(a, csrf_token("ab"));
        assert!(same_secret(&a, &csrf_token("aa")));
        assert!(!same_secret(&a, &a[..63]));
    }

    #[test]
    fn password_round_trip_and_wrong_password() {
        let phc = hash_password("correct horse", 64, 1).expect("hash");
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("wrong horse", &phc));
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }
}
