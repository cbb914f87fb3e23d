//! What each binary provides over its own store and its own people.

use std::fmt::Display;

/// Sessions kept by a store, looked up by the token a client presents (stores keep only
/// the token's digest, [`crate::secret::digest`]). Blocking; async callers use
/// `spawn_blocking`.
pub trait SessionStore {
    /// A live session.
    type Session;
    /// The store's error.
    type Error;

    /// The live (unexpired) session of `token`, if any.
    ///
    /// # Errors
    /// Storage failures.
    fn session(&self, token: &str) -> Result<Option<Self::Session>, Self::Error>;

    /// Ends the session of `token` (nothing when there is none).
    ///
    /// # Errors
    /// Storage failures.
    fn end_session(&self, token: &str) -> Result<(), Self::Error>;
}

/// A role people log in with. The agent's (officer, supervisor, operator) and central's
/// (analyst, admin) differ in what they allow, but are named, parsed and shown alike;
/// a name a build does not know grants nothing.
pub trait Role: Copy + Display + Sized + 'static {
    /// Every role, least privileged first.
    const ALL: &'static [Self];

    /// The role's name.
    fn as_str(self) -> &'static str;

    /// Parses a role name (case-insensitive, surrounding spaces ignored) among
    /// [`Role::ALL`]; `None` for anything else.
    #[must_use]
    fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        Self::ALL
            .iter()
            .copied()
            .find(|r| r.as_str().eq_ignore_ascii_case(s))
    }

    /// The names of every role, for error messages ("officer, supervisor or operator").
    #[must_use]
    fn names() -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|r| r.as_str()).collect();
        match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.join(""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum R {
        Low,
        High,
    }
    impl Display for R {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.as_str())
        }
    }
    impl Role for R {
        const ALL: &'static [Self] = &[R::Low, R::High];
        fn as_str(self) -> &'static str {
            match self {
                R::Low => "low",
                R::High => "high",
            }
        }
    }

    #[test]
    fn roles_parse_by_name_and_unknown_names_grant_nothing() {
        assert_eq!(R::parse(" HIGH "), Some(R::High));
        assert_eq!(R::parse("low"), Some(R::Low));
        assert_eq!(R::parse("root"), None);
        assert_eq!(R::parse(""), None);
        assert_eq!(R::names(), "low or high");
    }
}
