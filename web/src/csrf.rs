//! The CSRF policy (OWASP CSRF Prevention Cheat Sheet, synchronizer token pattern).
//!
//! A request that can change state (any method but `GET`, `HEAD`, `OPTIONS`) and is
//! authenticated by the session cookie — the one credential a browser sends on its own —
//! must carry the session's CSRF token, in the [`HEADER`] header (script calls) or the
//! [`FORM_FIELD`] field of a form. A request authenticated by a bearer token carries no
//! ambient credential and needs none. Tokens are compared in constant time.
//!
//! Both binaries also run tower-http's `CsrfLayer`, which refuses state-changing
//! requests whose `Sec-Fetch-Site` / `Origin` say they come from another site.

use axum::http::{HeaderMap, Method};
use sha2::{Digest as _, Sha256};

/// Header carrying the token on script calls made with the cookie.
pub const HEADER: &str = "x-csrf-token";
/// Form field carrying the token.
pub const FORM_FIELD: &str = "csrf";

/// Why a request was refused for its CSRF token (answered `403`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CsrfError {
    #[error("the request carries no CSRF token")]
    Missing,
    #[error("the request's CSRF token is wrong")]
    Wrong,
}

impl axum::response::IntoResponse for CsrfError {
    /// `403 Forbidden` saying what was wrong.
    fn into_response(self) -> axum::response::Response {
        (axum::http::StatusCode::FORBIDDEN, self.to_string()).into_response()
    }
}

/// Whether a request of `method`, authenticated by cookie or not, must carry the token.
#[must_use]
pub fn needs_token(method: &Method, via_cookie: bool) -> bool {
    via_cookie && !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The token in the [`HEADER`] header, if any.
#[must_use]
pub fn from_header(headers: &HeaderMap) -> Option<&str> {
    headers.get(HEADER).and_then(|v| v.to_str().ok())
}

/// Checks the token a request carried against the session's.
///
/// # Errors
/// [`CsrfError`] naming the problem.
pub fn check(sent: Option<&str>, expected: &str) -> Result<(), CsrfError> {
    match sent {
        Some(t) if crate::secret::same_secret(t.trim(), expected) => Ok(()),
        Some(_) => Err(CsrfError::Wrong),
        None => Err(CsrfError::Missing),
    }
}

/// A CSRF token derived from the session token: SHA-256 of a fixed label and the token.
/// Only someone holding the session token (the cookie, which scripts cannot read) can
/// compute it, and it changes with every login; a store that keeps a random token per
/// session instead uses that.
#[must_use]
pub fn derive(session_token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"aeogate-csrf-v1\0");
    h.update(session_token.trim().as_bytes());
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unsafe_cookie_requests_need_a_token() {
        for (m, cookie, need) in [
            (Method::GET, true, false),
            (Method::HEAD, true, false),
            (Method::OPTIONS, true, false),
            (Method::POST, true, true),
            (Method::PUT, true, true),
            (Method::DELETE, true, true),
            (Method::PATCH, true, true),
            (Method::POST, false, false),
        ] {
            assert_eq!(needs_token(&m, cookie), need, "{m} cookie={cookie}");
        }
    }

    #[test]
    fn the_token_is_checked_whole_and_missing_is_told_apart() {
        let t = derive("aa");
        assert_eq!(t.len(), 64);
        assert_ne!(t, derive("ab"));
        assert_eq!(check(Some(&t), &t), Ok(()));
        assert_eq!(check(Some(&format!(" {t} ")), &t), Ok(()));
        assert_eq!(check(Some(&t[..63]), &t), Err(CsrfError::Wrong));
        assert_eq!(check(Some(""), &t), Err(CsrfError::Wrong));
        assert_eq!(check(None, &t), Err(CsrfError::Missing));
    }

    #[test]
    fn the_header_is_read() {
        let mut h = HeaderMap::new();
        assert_eq!(from_header(&h), None);
        h.insert(HEADER, "abc".parse().expect("value"));
        assert_eq!(from_header(&h), Some("abc"));
    }
}
