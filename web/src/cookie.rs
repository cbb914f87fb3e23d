//! The session cookie and the bearer token.
//!
//! The cookie is `HttpOnly` (scripts cannot read it) and `SameSite=Strict` (RFC 6265bis
//! §5.4.7: not sent on cross-site requests). Served over TLS it is also `Secure` and
//! carries the `__Host-` prefix (RFC 6265bis §4.1.3.2): browsers then accept it only
//! `Secure`, from this origin, for `Path=/` and without `Domain`, so a sibling host
//! cannot set or shadow it. Each binary has its own name, so logging in to one on the
//! same host name does not log out of the other.

use axum::http::{HeaderMap, header};

/// A session cookie's names: over plain HTTP, and over TLS (`__Host-` + the plain name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCookie {
    /// The name over plain HTTP (loopback tests, demos).
    pub plain: &'static str,
    /// The name over TLS.
    pub tls: &'static str,
}

impl SessionCookie {
    /// The name to use.
    #[must_use]
    pub fn name(self, tls: bool) -> &'static str {
        if tls { self.tls } else { self.plain }
    }

    /// The `Set-Cookie` value for a session token valid `max_age_s` seconds
    /// (`Max-Age=0` with an empty token clears it).
    #[must_use]
    pub fn set(self, tls: bool, token: &str, max_age_s: u64) -> String {
        format!(
            "{}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{}",
            self.name(tls),
            if tls { "; Secure" } else { "" }
        )
    }

    /// The `Set-Cookie` value that clears the cookie.
    #[must_use]
    pub fn clear(self, tls: bool) -> String {
        self.set(tls, "", 0)
    }

    /// The session token a request's cookie carries, if any.
    #[must_use]
    pub fn find(self, headers: &HeaderMap, tls: bool) -> Option<&str> {
        find(headers, self.name(tls))
    }
}

/// `response` with a `Set-Cookie` header of `value` (from [`SessionCookie::set`] or
/// [`SessionCookie::clear`]).
///
/// # Errors
/// The value holds a byte a header cannot carry (a token is hex, so only a bug does).
pub fn with_set_cookie(
    mut response: axum::response::Response,
    value: &str,
) -> Result<axum::response::Response, axum::http::header::InvalidHeaderValue> {
    let v = axum::http::HeaderValue::from_str(value)?;
    response.headers_mut().insert(header::SET_COOKIE, v);
    Ok(response)
}

/// The value of one cookie in a request's `Cookie` headers.
#[must_use]
pub fn find<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// The token of an `Authorization: Bearer …` header value (scheme case-insensitive;
/// an empty token is none).
#[must_use]
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let v = header?.trim();
    let (scheme, rest) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

/// The bearer token of a request, if any.
#[must_use]
pub fn bearer_of(headers: &HeaderMap) -> Option<&str> {
    bearer(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const C: SessionCookie = SessionCookie {
        plain: "x_session",
        tls: "__Host-x_session",
    };

    #[test]
    fn plain_and_tls_cookies() {
        let plain = C.set(false, "t", 60);
        assert_eq!(
            plain,
            "x_session=t; Path=/; HttpOnly; SameSite=Strict; Max-Age=60"
        );
        let tls = C.set(true, "t", 60);
        assert!(
            tls.starts_with("__Host-x_session=t; Path=/;") && tls.ends_with("; Secure"),
            "{tls}"
        );
        assert!(!tls.contains("Domain"), "{tls}");
        assert!(C.clear(true).starts_with("__Host-x_session=; Path=/;"));
        assert!(C.clear(false).contains("Max-Age=0"));
    }

    #[test]
    fn the_cookie_is_found_among_others_under_its_own_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; x_session=abc ; __Host-x_session=def; b=2"),
        );
        assert_eq!(C.find(&h, false), Some("abc"));
        assert_eq!(C.find(&h, true), Some("def"));
        assert_eq!(find(&h, "c"), None);
    }

    #[test]
    fn a_response_carries_the_cookie_it_is_given() {
        let r = with_set_cookie(axum::response::Response::default(), &C.set(true, "t", 9))
            .expect("header");
        assert_eq!(
            r.headers()[header::SET_COOKIE],
            C.set(true, "t", 9).as_str()
        );
        assert!(with_set_cookie(axum::response::Response::default(), "a\nb").is_err());
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer xyz"),
        );
        assert_eq!(bearer_of(&h), Some("xyz"));
    }
}
