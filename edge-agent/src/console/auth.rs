//! Logging in and out, the session extractor, CSRF tokens and login rate limiting.
//!
//! A request is authenticated by the session cookie ([`COOKIE`]: `aeogate_agent_session`,
//! or `__Host-aeogate_agent_session` and `Secure` when the console is served over TLS)
//! or by `Authorization: Bearer <token>` (scripts; the token from `POST /api/v1/login`).
//! The cookie is `HttpOnly` and `SameSite=Strict`, so script on the page cannot read it
//! and other sites' pages do not send it ([`aeogate_web::cookie`]).
//!
//! Cross-site request forgery is stopped twice over: tower-http's
//! [`CsrfLayer`](tower_http::csrf::CsrfLayer) refuses state-changing requests whose
//! `Sec-Fetch-Site` / `Origin` say they come from another site, and the project's CSRF
//! policy ([`aeogate_web::csrf`]) asks every state-changing request authenticated by
//! cookie to echo the session's CSRF token (`X-CSRF-Token` header, or the `csrf` field
//! of a form). Bearer requests carry no ambient credential and need no token.
//!
//! Failed logins are limited per account and per client address by the project's login
//! limiter ([`aeogate_web::limiter::LoginLimiter`]: an attempt is counted before its
//! password is checked), so password guessing is slow whichever of the two an attacker
//! varies, and concurrent guesses cannot slip past the limit.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use aeogate_web::cookie::{self, SessionCookie};
use aeogate_web::csrf;
use aeogate_web::limiter::LoginLimiter;
use aeogate_web::session::SessionStore as _;
use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use protocol::i18n::Lang;
use protocol::schema::{ConsoleSession, ConsoleSessionKind, EventBody, SCHEMA_VERSION};
use serde::{Deserialize, Serialize};

use crate::journal::Journal;

use super::users::{Role, SESSION_TTL, SessionRecord, UserError, Users};

/// The console's session cookie: its own name (not central's), `__Host-` over TLS.
pub const COOKIE: SessionCookie = SessionCookie {
    plain: "aeogate_agent_session",
    tls: "__Host-aeogate_agent_session",
};
/// Header carrying the CSRF token on script calls made with the cookie.
pub const CSRF_HEADER: &str = csrf::HEADER;

/// Console-wide state: accounts, the limiter, cookie flags.
#[derive(Debug)]
pub struct Console {
    /// Accounts and sessions.
    pub users: Users,
    /// Login rate limiting.
    pub limiter: Mutex<LoginLimiter>,
    /// The console is served over TLS: cookies are `Secure` and `__Host-` prefixed.
    pub tls: bool,
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
        if !self.via_cookie || csrf::check(Some(given), &self.session.csrf).is_ok() {
            Ok(())
        } else {
            Err(AuthError::Forbidden(
                "the form's CSRF token does not match this session; reload the page".into(),
            ))
        }
    }
}

/// Why a request was refused.
#[derive(Debug)]
pub enum AuthError {
    /// No valid session: pages redirect to the login page, the API answers 401.
    Unauthenticated { api: bool },
    /// A session without the right (role, CSRF token).
    Forbidden(String),
    /// A request that does not parse (a login body that is not the expected JSON).
    BadRequest(String),
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
            Self::BadRequest(msg) => {
                (StatusCode::BAD_REQUEST, Json(serde_json::json!({ "error": msg }))).into_response()
            }
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

impl<S> FromRequestParts<S> for Authed
where
    S: Send + Sync,
    Arc<Console>: FromRef<S>,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let api = parts.uri.path().starts_with("/api/");
        let console = Arc::<Console>::from_ref(state);
        let (token, via_cookie) = match cookie::bearer_of(&parts.headers) {
            Some(t) => (t.to_owned(), false),
            None => match COOKIE.find(&parts.headers, console.tls) {
                Some(t) => (t.to_owned(), true),
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
        let is_form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        // Forms carry the token in their body; their handlers check it.
        if csrf::needs_token(&parts.method, via_cookie)
            && !is_form
            && csrf::check(csrf::from_header(&parts.headers), &authed.session.csrf).is_err()
        {
            return Err(AuthError::Forbidden(
                "missing or wrong X-CSRF-Token for this session".into(),
            ));
        }
        Ok(authed)
    }
}

/// The `Set-Cookie` value for a new session.
pub(super) fn session_cookie(token: &str, tls: bool) -> String {
    COOKIE.set(tls, token, SESSION_TTL.as_secs())
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
    /// Too many failed logins: how long until the next may be tried.
    Limited(jiff::SignedDuration),
}

fn limiter(console: &Console) -> Result<std::sync::MutexGuard<'_, LoginLimiter>, AuthError> {
    console
        .limiter
        .lock()
        .map_err(|_| AuthError::Internal("login limiter lock poisoned".into()))
}

/// Longest account name a journal entry keeps (what was typed at a failed login).
const JOURNALED_NAME_CHARS: usize = 64;

/// Journals a login, a failed or throttled attempt, or a logout, so central sees who
/// could act at the lanes and who tried to. A journal that refuses the write holds the
/// record (and raises its alarm) rather than locking officers out of the console.
async fn journal_session(
    journal: &Journal,
    kind: ConsoleSessionKind,
    user: &str,
    role: Option<Role>,
    client: Option<IpAddr>,
) {
    let at = jiff::Timestamp::now();
    let body = EventBody::ConsoleSession {
        session: ConsoleSession {
            v: SCHEMA_VERSION,
            gate: journal.store().gate().clone(),
            kind,
            user: user.chars().take(JOURNALED_NAME_CHARS).collect(),
            role: role.map(|r| r.as_str().to_owned()),
            client: client.map(|a| a.to_string()),
            at,
        },
    };
    match journal.append_at(vec![body.clone()], at).await {
        Ok(_) => journal.notify_appended(),
        Err(e) => journal.failed(&e, vec![body], Vec::new()),
    }
}

pub(super) async fn attempt(
    console: &Arc<Console>,
    journal: &Journal,
    client: Option<IpAddr>,
    f: LoginForm,
) -> Result<Attempt, AuthError> {
    let name = f.name.trim().to_owned();
    let at = jiff::Timestamp::now();
    let shown_client = client.map_or_else(|| "unknown".to_owned(), |a| a.to_string());
    // Reserve the attempt before the password is verified, so concurrent guesses cannot
    // all pass the check before any failure is recorded.
    let reserved = limiter(console)?.reserve(&name, client, at);
    if let Err(wait) = reserved {
        tracing::warn!(user = %name, client = %shown_client, "login refused: too many failures");
        journal_session(
            journal,
            ConsoleSessionKind::LoginThrottled,
            &name,
            None,
            client,
        )
        .await;
        return Ok(Attempt::Limited(wait));
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
            limiter(console)?.succeeded(&name, client, at);
            tracing::info!(user = %name, role = %rec.role, client = %shown_client, "console login");
            journal_session(
                journal,
                ConsoleSessionKind::Login,
                &name,
                Some(rec.role),
                client,
            )
            .await;
            Ok(Attempt::Ok(token, rec))
        }
        None => {
            tracing::warn!(user = %name, client = %shown_client, "console login failed");
            journal_session(
                journal,
                ConsoleSessionKind::LoginFailed,
                &name,
                None,
                client,
            )
            .await;
            Ok(Attempt::Refused)
        }
    }
}

/// The login page's language: the browser's preference, else English.
#[must_use]
pub fn browser_lang(headers: &HeaderMap) -> Lang {
    aeogate_web::accept_language(headers)
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
    State(journal): State<Arc<Journal>>,
    req_ext: axum::http::Extensions,
    body: Result<Json<LoginForm>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, AuthError> {
    let Json(f) = body.map_err(|e| AuthError::BadRequest(e.body_text()))?;
    Ok(
        match attempt(&console, &journal, aeogate_web::client_ip(&req_ext), f).await? {
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
            Attempt::Limited(wait) => aeogate_web::limiter::with_retry_after(
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    Json(
                        serde_json::json!({"error": "too many failed logins; wait a few minutes"}),
                    ),
                )
                    .into_response(),
                wait,
            ),
        },
    )
}

/// Body of the logout form.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    /// The session's CSRF token.
    #[serde(default)]
    pub csrf: String,
}

async fn end(
    console: &Console,
    journal: &Journal,
    authed: &Authed,
    client: Option<IpAddr>,
    redirect: bool,
) -> Result<Response, AuthError> {
    let users = console.users.clone();
    let token = authed.token.clone();
    tokio::task::spawn_blocking(move || users.end_session(&token))
        .await
        .map_err(|e| AuthError::Internal(e.to_string()))??;
    tracing::info!(user = %authed.user(), "console logout");
    journal_session(
        journal,
        ConsoleSessionKind::Logout,
        authed.user(),
        Some(authed.role()),
        client,
    )
    .await;
    let r = if redirect {
        Redirect::to("/login").into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    };
    cookie::with_set_cookie(r, &COOKIE.clear(console.tls))
        .map_err(|e| AuthError::Internal(format!("session cookie header: {e}")))
}

/// `POST /logout` (form with the CSRF token).
pub async fn logout_form(
    State(console): State<Arc<Console>>,
    State(journal): State<Arc<Journal>>,
    req_ext: axum::http::Extensions,
    authed: Authed,
    Form(f): Form<CsrfForm>,
) -> Result<Response, AuthError> {
    authed.check_form_csrf(&f.csrf)?;
    let client = aeogate_web::client_ip(&req_ext);
    end(&console, &journal, &authed, client, true).await
}

/// `POST /api/v1/logout`.
pub async fn logout_api(
    State(console): State<Arc<Console>>,
    State(journal): State<Arc<Journal>>,
    req_ext: axum::http::Extensions,
    authed: Authed,
) -> Result<Response, AuthError> {
    end(
        &console,
        &journal,
        &authed,
        aeogate_web::client_ip(&req_ext),
        false,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_cookie_is_its_own_and_host_prefixed_over_tls() {
        let plain = session_cookie("t", false);
        assert!(plain.starts_with("aeogate_agent_session=t; Path=/; HttpOnly; SameSite=Strict"));
        assert!(!plain.contains("Secure"));
        let tls = session_cookie("t", true);
        assert!(
            tls.starts_with("__Host-aeogate_agent_session=t; Path=/;"),
            "{tls}"
        );
        assert!(tls.ends_with("; Secure"), "{tls}");
    }
}
