//! Logging in and out, the session extractor, CSRF tokens and login rate limiting.
//!
//! A request is authenticated by the `aeogate_agent_session` cookie (browsers) or by
//! `Authorization: Bearer <token>` (scripts; the token from `POST /api/v1/login`). The
//! cookie is `HttpOnly` and `SameSite=Strict` (and `Secure` when the console is served
//! over TLS), so script on the page cannot read it and other sites' pages do not send it.
//!
//! Cross-site request forgery is stopped twice over (OWASP CSRF Prevention Cheat Sheet):
//! tower-http's [`CsrfLayer`](tower_http::csrf::CsrfLayer) refuses state-changing
//! requests whose `Sec-Fetch-Site` / `Origin` say they come from another site, and every
//! state-changing request authenticated by cookie must also echo the session's CSRF token
//! (`X-CSRF-Token` header, or the `csrf` field of a form). Bearer requests carry no
//! ambient credential and need no token.
//!
//! Failed logins are limited per account and per client address ([`Limiter`]), so
//! password guessing is slow whichever of the two an attacker varies.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use protocol::i18n::Lang;
use serde::{Deserialize, Serialize};

use super::users::{Role, SESSION_TTL, SessionRecord, UserError, Users};

/// Name of the session cookie.
pub const COOKIE: &str = "aeogate_agent_session";
/// Header carrying the CSRF token on script calls made with the cookie.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Failed logins allowed per account within [`WINDOW`].
const PER_USER: u32 = 5;
/// Failed logins allowed per client address within [`WINDOW`].
const PER_CLIENT: u32 = 20;
/// The rate-limiting window.
const WINDOW: Duration = Duration::from_secs(300);
/// Most keys the limiter tracks (oldest windows are dropped beyond this).
const MAX_KEYS: usize = 10_000;

/// Console-wide state: accounts, the limiter, cookie flags.
#[derive(Debug)]
pub struct Console {
    /// Accounts and sessions.
    pub users: Users,
    /// Login rate limiting.
    pub limiter: Limiter,
    /// Mark cookies `Secure` (the console is served over TLS).
    pub secure_cookies: bool,
}

/// Counts failed logins per key in a fixed window.
#[derive(Debug, Default)]
pub struct Limiter {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Limiter {
    fn count(&self, key: &str, now: Instant) -> u32 {
        self.failures
            .lock()
            .ok()
            .and_then(|m| m.get(key).copied())
            .filter(|(_, since)| now.duration_since(*since) < WINDOW)
            .map_or(0, |(n, _)| n)
    }

    /// Whether a login for `user` from `client` may be tried now.
    #[must_use]
    pub fn allowed(&self, user: &str, client: &str) -> bool {
        let now = Instant::now();
        self.count(&format!("u:{user}"), now) < PER_USER
            && self.count(&format!("c:{client}"), now) < PER_CLIENT
    }

    /// Records a failed login.
    pub fn failed(&self, user: &str, client: &str) {
        let now = Instant::now();
        let Ok(mut m) = self.failures.lock() else {
            return;
        };
        if m.len() >= MAX_KEYS {
            m.retain(|_, (_, since)| now.duration_since(*since) < WINDOW);
        }
        for key in [format!("u:{user}"), format!("c:{client}")] {
            if m.len() >= MAX_KEYS && !m.contains_key(&key) {
                continue;
            }
            let e = m.entry(key).or_insert((0, now));
            if now.duration_since(e.1) >= WINDOW {
                *e = (0, now);
            }
            e.0 += 1;
        }
    }

    /// Clears an account's failures after a successful login.
    pub fn succeeded(&self, user: &str) {
        if let Ok(mut m) = self.failures.lock() {
            m.remove(&format!("u:{user}"));
        }
    }
}

/// An authenticated request's session.
#[derive(Debug, Clone)]
pub struct Authed {
    /// The session.
    pub session: SessionRecord,
    /// The token presented (to end the session at logout).
    pub token: String,
    /// Authenticated by cookie (a browser): state-changing requests need the CSRF token.
    pub via_cookie: bool,
}

impl Authed {
    /// The account name.
    #[must_use]
    pub fn user(&self) -> &str {
        &self.session.user
    }

    /// The role.
    #[must_use]
    pub fn role(&self) -> Role {
        self.session.role
    }

    /// The language.
    #[must_use]
    pub fn lang(&self) -> Lang {
        self.session.lang
    }

    /// Refuses unless the role is officer or supervisor.
    ///
    /// # Errors
    /// 403 naming the role.
    pub fn require_customs(&self) -> Result<(), AuthError> {
        crate::officer::authorise(self.role()).map_err(|r| AuthError::Forbidden(r.to_string()))
    }

    /// Checks a form's CSRF token (cookie sessions only).
    ///
    /// # Errors
    /// 403 when it does not match.
    pub fn check_form_csrf(&self, given: &str) -> Result<(), AuthError> {
        if !self.via_cookie || constant_time_eq(given.as_bytes(), self.session.csrf.as_bytes()) {
            Ok(())
        } else {
            Err(AuthError::Forbidden(
                "the form's CSRF token does not match this session; reload the page".into(),
            ))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a request was refused.
#[derive(Debug)]
pub enum AuthError {
    /// No valid session: pages redirect to the login page, the API answers 401.
    Unauthenticated { api: bool },
    /// A session without the right (role, CSRF token).
    Forbidden(String),
    /// The account store failed.
    Internal(String),
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        match self {
            Self::Unauthenticated { api: true } => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(serde_json::json!({"error": "log in first: POST /api/v1/login, then send the token as Authorization: Bearer"})),
            )
                .into_response(),
            Self::Unauthenticated { api: false } => Redirect::to("/login").into_response(),
            Self::Forbidden(msg) => {
                (StatusCode::FORBIDDEN, Json(serde_json::json!({ "error": msg }))).into_response()
            }
            Self::Internal(msg) => {
                tracing::error!(error = %msg, "console accounts unavailable");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(serde_json::json!({ "error": msg })),
                )
                    .into_response()
            }
        }
    }
}

impl From<UserError> for AuthError {
    fn from(e: UserError) -> Self {
        Self::Internal(e.to_string())
    }
}

/// The session token from the cookie header, if any.
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim().to_owned())
}

fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

impl<S> FromRequestParts<S> for Authed
where
    S: Send + Sync,
    Arc<Console>: FromRef<S>,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let api = parts.uri.path().starts_with("/api/");
        let console = Arc::<Console>::from_ref(state);
        let (token, via_cookie) = match bearer_token(&parts.headers) {
            Some(t) => (t, false),
            None => match cookie_token(&parts.headers) {
                Some(t) => (t, true),
                None => return Err(AuthError::Unauthenticated { api }),
            },
        };
        let users = console.users.clone();
        let lookup = token.clone();
        let session = tokio::task::spawn_blocking(move || users.session(&lookup))
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))??
            .ok_or(AuthError::Unauthenticated { api })?;
        let authed = Authed {
            session,
            token,
            via_cookie,
        };
        let unsafe_method = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        let is_form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        // Forms carry the token in their body; their handlers check it.
        if unsafe_method && via_cookie && !is_form {
            let given = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !constant_time_eq(given.as_bytes(), authed.session.csrf.as_bytes()) {
                return Err(AuthError::Forbidden(
                    "missing or wrong X-CSRF-Token for this session".into(),
                ));
            }
        }
        Ok(authed)
    }
}

pub(super) fn client_of(headers_ext: &axum::http::Extensions) -> String {
    headers_ext
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string())
}

/// The `Set-Cookie` value for a new session.
pub(super) fn session_cookie(token: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_TTL.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Credentials of a login.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    /// Account name.
    pub name: String,
    /// Password.
    pub password: String,
}

/// Result of a login attempt.
pub(super) enum Attempt {
    Ok(String, SessionRecord),
    Refused,
    Limited,
}

pub(super) async fn attempt(
    console: &Arc<Console>,
    client: String,
    f: LoginForm,
) -> Result<Attempt, AuthError> {
    let name = f.name.trim().to_owned();
    if !console.limiter.allowed(&name, &client) {
        tracing::warn!(user = %name, %client, "login refused: too many failures");
        return Ok(Attempt::Limited);
    }
    let users = console.users.clone();
    let n = name.clone();
    let found = tokio::task::spawn_blocking(move || {
        users
            .authenticate(&n, &f.password)
            .and_then(|u| u.map(|u| users.start_session(&u)).transpose())
    })
    .await
    .map_err(|e| AuthError::Internal(e.to_string()))??;
    match found {
        Some((token, rec)) => {
            console.limiter.succeeded(&name);
            tracing::info!(user = %name, role = %rec.role, %client, "console login");
            Ok(Attempt::Ok(token, rec))
        }
        None => {
            console.limiter.failed(&name, &client);
            tracing::warn!(user = %name, %client, "console login failed");
            Ok(Attempt::Refused)
        }
    }
}

/// The login page's language: the browser's preference, else English.
#[must_use]
pub fn browser_lang(headers: &HeaderMap) -> Lang {
    headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .and_then(Lang::from_accept_language)
        .unwrap_or_default()
}

/// Answer of `POST /api/v1/login`.
#[derive(Debug, Serialize)]
pub struct LoginAnswer {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    /// CSRF token (needed only when the cookie is used instead of the bearer token).
    pub csrf: String,
    /// Account name.
    pub user: String,
    /// Role.
    pub role: Role,
    /// Language.
    pub lang: Lang,
    /// Expiry.
    pub expires: jiff::Timestamp,
}

/// `POST /api/v1/login` (JSON `{"name","password"}`).
pub async fn login_json(
    State(console): State<Arc<Console>>,
    req_ext: axum::http::Extensions,
    body: Result<Json<LoginForm>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, AuthError> {
    let Json(f) = body.map_err(|e| AuthError::Forbidden(e.body_text()))?;
    Ok(match attempt(&console, client_of(&req_ext), f).await? {
        Attempt::Ok(token, rec) => Json(LoginAnswer {
            token,
            csrf: rec.csrf,
            user: rec.user,
            role: rec.role,
            lang: rec.lang,
            expires: rec.expires,
        })
        .into_response(),
        Attempt::Refused => (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({"error": "wrong user name or password"})),
        )
            .into_response(),
        Attempt::Limited => (
            StatusCode::TOO_MANY_REQUESTS,
            Json(serde_json::json!({"error": "too many failed logins; wait a few minutes"})),
        )
            .into_response(),
    })
}

/// Body of the logout form.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    /// The session's CSRF token.
    #[serde(default)]
    pub csrf: String,
}

async fn end(console: &Console, authed: &Authed, redirect: bool) -> Result<Response, AuthError> {
    let users = console.users.clone();
    let token = authed.token.clone();
    tokio::task::spawn_blocking(move || users.end_session(&token))
        .await
        .map_err(|e| AuthError::Internal(e.to_string()))??;
    tracing::info!(user = %authed.user(), "console logout");
    let mut r = if redirect {
        Redirect::to("/login").into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&clear_cookie(console.secure_cookies)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

/// `POST /logout` (form with the CSRF token).
pub async fn logout_form(
    State(console): State<Arc<Console>>,
    authed: Authed,
    Form(f): Form<CsrfForm>,
) -> Result<Response, AuthError> {
    authed.check_form_csrf(&f.csrf)?;
    end(&console, &authed, true).await
}

/// `POST /api/v1/logout`.
pub async fn logout_api(
    State(console): State<Arc<Console>>,
    authed: Authed,
) -> Result<Response, AuthError> {
    end(&console, &authed, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_blocks_an_account_after_five_failures_and_a_client_after_twenty() {
        let l = Limiter::default();
        for _ in 0..PER_USER {
            assert!(l.allowed("ana", "10.0.0.1"));
            l.failed("ana", "10.0.0.1");
        }
        assert!(
            !l.allowed("ana", "10.0.0.2"),
            "per account, whatever the address"
        );
        assert!(l.allowed("bob", "10.0.0.1"));
        for i in 0..PER_CLIENT {
            l.failed(&format!("u{i}"), "10.0.0.9");
        }
        assert!(
            !l.allowed("carla", "10.0.0.9"),
            "per address, whatever the account"
        );
        l.succeeded("ana");
        assert!(l.allowed("ana", "10.0.0.3"));
    }

    #[test]
    fn cookie_and_bearer_tokens_are_found() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; aeogate_agent_session=tok123 ; c=d"),
        );
        assert_eq!(cookie_token(&h).as_deref(), Some("tok123"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer xyz"),
        );
        assert_eq!(bearer_token(&h).as_deref(), Some("xyz"));
        assert!(session_cookie("t", false).contains("HttpOnly; SameSite=Strict"));
        assert!(session_cookie("t", true).ends_with("; Secure"));
    }
}
