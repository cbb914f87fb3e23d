//! Passwords: one Argon2id configuration (RFC 9106) for every account of the project,
//! and one strength rule.
//!
//! Hashes are PHC strings, so the parameters travel inside each hash and a changed cost
//! applies to new hashes only. [`Passwords`] also verifies against a dummy hash of the
//! same cost when a login names an unknown user, so the answer's timing does not tell
//! which user names exist.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Argon2id's cost. The default is OWASP's recommendation (Password Storage Cheat
/// Sheet): m = 19 MiB, t = 2, p = 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// Memory, KiB.
    pub m_cost_kib: u32,
    /// Iterations.
    pub t_cost: u32,
}

impl Default for Cost {
    fn default() -> Self {
        Self {
            m_cost_kib: 19 * 1024,
            t_cost: 2,
        }
    }
}

/// Why a password could not be hashed or was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// Too short or too easy to guess, saying why.
    #[error("{0}")]
    Weak(String),
    /// The cost is out of Argon2's range, or hashing failed.
    #[error("{0}")]
    Hash(String),
}

/// Hashes a password into a PHC string with a fresh 16-byte salt.
///
/// # Errors
/// [`PasswordError::Hash`] when the cost is out of Argon2's range.
pub fn hash(password: &str, cost: Cost) -> Result<String, PasswordError> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes)
        .map_err(|e| PasswordError::Hash(format!("salt: {e}")))?;
    let params = Params::new(cost.m_cost_kib, cost.t_cost, 1, None)
        .map_err(|e| PasswordError::Hash(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| PasswordError::Hash(format!("hashing password: {e}")))?
        .to_string())
}

/// Whether `password` matches a PHC string from [`hash`] (with the parameters it names).
#[must_use]
pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Hashing and verifying at one cost, with the dummy hash for unknown users.
#[derive(Debug, Default)]
pub struct Passwords {
    cost: Cost,
    dummy: OnceLock<String>,
}

impl Passwords {
    /// Passwords hashed at `cost`.
    #[must_use]
    pub fn new(cost: Cost) -> Self {
        Self {
            cost,
            dummy: OnceLock::new(),
        }
    }

    /// Hashes a password at this cost.
    ///
    /// # Errors
    /// As [`hash`].
    pub fn hash(&self, password: &str) -> Result<String, PasswordError> {
        hash(password, self.cost)
    }

    /// Verifies `password` against a stored hash, or, when the user is unknown
    /// (`None`), against a hash of a random secret at the same cost, so both cases take
    /// as long. `true` only for a stored hash that matches.
    #[must_use]
    pub fn verify(&self, password: &str, stored: Option<&str>) -> bool {
        match stored {
            Some(phc) => verify(password, phc),
            None => {
                let _ = verify(password, self.dummy());
                false
            }
        }
    }

    fn dummy(&self) -> &str {
        self.dummy
            .get_or_init(|| hash(&crate::secret::random_token(), self.cost).unwrap_or_default())
    }
}

/// Shortest password, in characters.
pub const MIN_CHARS: usize = 8;
/// Weakest zxcvbn score a password may have: 3, "safely unguessable: moderate protection
/// from an offline slow-hash scenario" (fewer than 10^10 guesses scores 2).
pub const MIN_SCORE: zxcvbn::Score = zxcvbn::Score::Three;
/// Characters of a password the estimator looks at: its cost grows with length, and a
/// prefix's strength is a lower bound of the whole's.
const STRENGTH_CHARS: usize = 128;

/// Refuses a password shorter than [`MIN_CHARS`] or weaker than [`MIN_SCORE`] by the
/// zxcvbn estimate (dictionary words, names, keyboard patterns, repeats, dates; the
/// user name counts as a known word).
///
/// # Errors
/// [`PasswordError::Weak`] saying why, with zxcvbn's advice when it has some.
pub fn check_strength(password: &str, user: &str) -> Result<(), PasswordError> {
    if password.chars().count() < MIN_CHARS {
        return Err(PasswordError::Weak(format!(
            "password must be at least {MIN_CHARS} characters"
        )));
    }
    let probe: String = password.chars().take(STRENGTH_CHARS).collect();
    let estimate = zxcvbn::zxcvbn(&probe, &[user]);
    if estimate.score() >= MIN_SCORE {
        return Ok(());
    }
    let mut why = format!(
        "password is too easy to guess (strength {} of 4, at least {} needed)",
        u8::from(estimate.score()),
        u8::from(MIN_SCORE)
    );
    if let Some(f) = estimate.feedback() {
        if let Some(w) = f.warning() {
            why.push_str(&format!(": {w}"));
        }
        for s in f.suggestions() {
            why.push_str(&format!("; {s}"));
        }
    }
    Err(PasswordError::Weak(why))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: Cost = Cost {
        m_cost_kib: 64,
        t_cost: 1,
    };

    #[test]
    fn weak_passwords_are_refused_and_strong_ones_accepted() {
        for weak in [
            "password",
            "        ",
            "12345678",
            "ana12345",
            "qwertyuiop",
            "Password1",
            "short",
        ] {
            let e = check_strength(weak, "ana");
            assert!(matches!(e, Err(PasswordError::Weak(_))), "{weak:?}: {e:?}");
        }
        for strong in ["correct horse", "analyst-pass-2025", "vX9#qLm2!tRz"] {
            check_strength(strong, "ana").expect(strong);
        }
    }

    #[test]
    fn password_round_trip_and_wrong_password() {
        let phc = hash("correct horse", CHEAP).expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        assert!(verify("correct horse", &phc));
        assert!(!verify("wrong horse", &phc));
        assert!(!verify("correct horse", "not a phc string"));
    }

    #[test]
    fn an_unknown_user_never_verifies_but_costs_a_hash() {
        let p = Passwords::new(CHEAP);
        let phc = p.hash("correct horse").expect("hash");
        assert!(p.verify("correct horse", Some(&phc)));
        assert!(!p.verify("correct horse", None));
        assert!(p.dummy().starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
    }

    #[test]
    fn the_default_cost_is_owasps() {
        assert_eq!(
            Cost::default(),
            Cost {
                m_cost_kib: 19456,
                t_cost: 2
            }
        );
        assert!(
            hash(
                "x",
                Cost {
                    m_cost_kib: 1,
                    t_cost: 0
                }
            )
            .is_err()
        );
    }
}
