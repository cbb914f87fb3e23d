//! Session and API tokens: 32 bytes from the operating system's CSPRNG (via the
//! OS-seeded thread RNG), shown as 64 hex digits; stored only as their SHA-256.

use sha2::{Digest as _, Sha256};

/// 32 random bytes as 64 hex digits.
#[must_use]
pub fn random_token() -> String {
    let raw: [u8; 32] = rand::random();
    hex::encode(raw)
}

/// SHA-256 of a token's text (what a store keeps instead of the token).
#[must_use]
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares two secrets in time independent of where they differ (only the lengths,
/// which are not secret, end the comparison early).
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
    fn tokens_are_fresh_hex_and_compared_whole() {
        let a = random_token();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, random_token());
        assert!(same_secret(&a, &a.clone()));
        assert!(!same_secret(&a, &a[..63]));
        assert!(!same_secret("ab", "ac"));
        assert_ne!(digest("a"), digest("b"));
    }
}
