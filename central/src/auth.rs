//! Tokens and passwords.
//!
//! Agent and session tokens are 32 bytes from the operating system's CSPRNG, shown once as
//! 64 hex digits; central stores only their SHA-256 ([`crate::model::TokenHash`]). Staff
//! passwords are low-entropy, so they get Argon2id (RFC 9106) with a per-user salt.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use sha2::{Digest as _, Sha256};

use crate::model::TokenHash;

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
pub fn hash_password(password: &str, m_cost_kib: u32, t_cost: u32) -> anyhow::Result<String> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let a = argon(m_cost_kib, t_cost).map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    Ok(a.hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing password: {e}"))?
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

#[cfg(test)]
mod tests {
    use super::*;

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
