//! Tokens and passwords.
//!
//! Agent and session tokens are 32 bytes from the operating system's CSPRNG, shown once as
//! 64 hex digits; central stores only their SHA-256 ([`crate::model::TokenHash`]). Staff
//! passwords get the project's one Argon2id configuration and strength rule, and logins
//! the one login limiter, all from [`aeogate_web`].

use sha2::{Digest as _, Sha256};

pub use aeogate_web::cookie::bearer;
pub use aeogate_web::csrf::derive as csrf_token;
pub use aeogate_web::limiter::{LoginLimiter, MAX_FAILURES_PER_ADDR, MAX_FAILURES_PER_USER};
pub use aeogate_web::password::{MIN_CHARS as MIN_PASSWORD_CHARS, verify as verify_password};
pub use aeogate_web::secret::same_secret;

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
    let token = aeogate_web::secret::random_token();
    let hash = hash_token(&token);
    (token, hash)
}

/// SHA-256 of a token's text.
#[must_use]
pub fn hash_token(token: &str) -> TokenHash {
    aeogate_web::secret::digest(token.trim())
}

impl From<aeogate_web::password::PasswordError> for AuthError {
    fn from(e: aeogate_web::password::PasswordError) -> Self {
        match e {
            aeogate_web::password::PasswordError::Weak(why) => Self::Invalid(why),
            aeogate_web::password::PasswordError::Hash(why) => Self::Hash(why),
        }
    }
}

/// Refuses a password that is too short or too easy to guess
/// ([`aeogate_web::password::check_strength`]).
///
/// # Errors
/// [`AuthError::Invalid`] saying why.
pub fn check_password_strength(password: &str, user: &str) -> Result<(), AuthError> {
    Ok(aeogate_web::password::check_strength(password, user)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_weak_staff_password_is_an_invalid_request() {
        let e = check_password_strength("password", "ana");
        assert!(matches!(e, Err(AuthError::Invalid(_))), "{e:?}");
        check_password_strength("analyst-pass-2025", "ana").expect("strong");
    }
}
