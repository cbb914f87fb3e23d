//! The web rules the gate agent's officer console and central's dashboard share, written
//! once: secrets and their comparison, one Argon2id configuration with the password
//! strength rule, the login limiter, the CSRF policy, the session cookie, the safe
//! return path after login, and the traits each binary implements over its own store
//! (sessions) and its own people (roles).
//!
//! It depends on neither binary nor on their stores.
//!
//! # Layout
//! - [`secret`]: random tokens, their SHA-256 digest, comparison in constant time.
//! - [`password`]: Argon2id hashing and verifying ([`password::Passwords`], with the
//!   dummy hash for unknown users) and the strength rule (zxcvbn).
//! - [`limiter`]: the sans-IO login limiter (reserve an attempt before verifying).
//! - [`csrf`]: which requests need a CSRF token, where it is carried, how it is checked.
//! - [`cookie`]: the session cookie's name (`__Host-` over TLS), `Set-Cookie` values,
//!   finding a cookie or a bearer token in a request.
//! - [`redirect`]: the same-origin path a login may return to.
//! - [`session`]: the [`session::SessionStore`] and [`session::Role`] traits.
//! - [`metrics`]: the `process_*` series of `/metrics`.

pub mod cookie;
pub mod csrf;
pub mod limiter;
pub mod metrics;
pub mod password;
pub mod redirect;
pub mod secret;
pub mod session;

/// The client's address of a request, when the server passes connection info
/// (`into_make_service_with_connect_info`); `None` for in-process requests.
#[must_use]
pub fn client_ip(extensions: &axum::http::Extensions) -> Option<std::net::IpAddr> {
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

/// The `Accept-Language` header's value, when it is text: what a visitor without a
/// session asked its pages in (each binary picks one of its languages from it).
#[must_use]
pub fn accept_language(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
}
