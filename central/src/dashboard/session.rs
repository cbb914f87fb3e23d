//! Browser sessions: the login form, the session cookie, roles, the CSRF token, the
//! language choice and logout.
//!
//! The cookie holds the same 32-byte session token a `POST /api/v1/login` returns (stored
//! only as its SHA-256). It is `HttpOnly` (scripts cannot read it), `SameSite=Strict`
//! (RFC 6265bis §5.4.7: not sent on cross-site requests) and `Secure` whenever central
//! serves HTTPS.

use std::net::IpAddr;

use aeogate_web::cookie::{self, SessionCookie};
use aeogate_web::csrf::{self, CsrfError};
use axum::extract::{Form, FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{DOCTYPE, html};
use protocol::i18n::Lang;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{T, internal};
use crate::auth;
use crate::model::Role;
use crate::portal::COMPANY_ROLE;
use crate::service::{Central, LoginResult};

/// Central's session cookie: `aeogate_central_session` over plain HTTP (loopback tests
/// and demos), `__Host-aeogate_central_session` over HTTPS. It differs from the gate
/// console's, so logging in to one on the same host name does not log out of the other.
pub const COOKIE: SessionCookie = SessionCookie {
    plain: "aeogate_central_session",
    tls: "__Host-aeogate_central_session",
};

/// The session cookie's name over HTTPS (`tls`) or plain HTTP.
#[must_use]
pub fn cookie_name(tls: bool) -> &'static str {
    COOKIE.name(tls)
}

/// The `Set-Cookie` value for a session token (`Max-Age=0` and an empty token clear it).
fn session_cookie(tls: bool, token: &str, max_age: i64) -> String {
    COOKIE.set(tls, token, u64::try_from(max_age).unwrap_or(0))
}

/// A logged-in staff member in the browser.
#[derive(Debug, Clone)]
pub struct UiSession {
    /// The session token (from the cookie).
    pub token: String,
    pub user: String,
    pub role: Role,
    pub lang: Lang,
    /// The token forms and script calls must echo ([`auth::csrf_token`]).
    pub csrf: String,
}

impl UiSession {
    /// Checks a post that needs a permission (after its CSRF token, which [`FormPost`]
    /// checks): `allowed`, the session's role having it. `None` admits the post; otherwise
    /// the answer to send instead: `refusal` with 403.
    #[must_use]
    pub fn refuse(&self, allowed: bool, refusal: T) -> Option<Response> {
        (!allowed).then(|| super::error_page(self, StatusCode::FORBIDDEN, refusal.get(self.lang)))
    }
}

/// A logged-in session's CSRF token, which its forms and script calls must echo
/// ([`auth::csrf_token`]).
pub trait CsrfToken {
    /// The token.
    fn csrf(&self) -> &str;

    /// Checks the CSRF token in a form field or, failing that, the `x-csrf-token` header.
    ///
    /// # Errors
    /// [`CsrfError`] naming the problem.
    fn check_csrf_in(&self, form: Option<&str>, headers: &HeaderMap) -> Result<(), CsrfError> {
        csrf::check(form.or(csrf::from_header(headers)), self.csrf())
    }
}

impl CsrfToken for UiSession {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// A posted form's CSRF token field (`csrf`).
pub trait CsrfField {
    /// The token the form carried, if any.
    fn csrf(&self) -> Option<&str>;
}

/// A form post from a logged-in session `S`: central, the session, the path's parameters
/// `P` (`()` for none) and the form `F`, whose CSRF token (its field, else the
/// `x-csrf-token` header) matched the session's. Each is taken in that order, the token
/// checked last; the first that fails answers the request.
#[derive(Debug)]
pub struct FormPost<S, P, F>(pub Central, pub S, pub P, pub F);

impl<S, P, F> FromRequest<Central> for FormPost<S, P, F>
where
    S: FromRequestParts<Central, Rejection = Response> + CsrfToken + Send,
    P: FromRequestParts<Central, Rejection: IntoResponse> + Send,
    F: DeserializeOwned + CsrfField + Send,
{
    type Rejection = Response;
    async fn from_request(req: Request, c: &Central) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let session = S::from_request_parts(&mut parts, c).await?;
        let path = P::from_request_parts(&mut parts, c)
            .await
            .map_err(IntoResponse::into_response)?;
        let headers = parts.headers.clone();
        let Form(form) = Form::<F>::from_request(Request::from_parts(parts, body), c)
            .await
            .map_err(IntoResponse::into_response)?;
        session
            .check_csrf_in(form.csrf(), &headers)
            .map_err(IntoResponse::into_response)?;
        Ok(FormPost(c.clone(), session, path, form))
    }
}

/// Where a login or a language change goes when `next` is not acceptable.
const HOME: &str = "/cases";

/// A same-origin absolute path to return to after login, or [`HOME`]
/// ([`aeogate_web::redirect::safe_next`]).
fn safe_next(next: Option<&str>) -> &str {
    aeogate_web::redirect::safe_next(next, HOME)
}

fn login_redirect(parts: &Parts) -> Response {
    let next = parts
        .uri
        .path_and_query()
        .map_or("/cases", axum::http::uri::PathAndQuery::as_str);
    let mut q = String::from("/login?next=");
    for b in next.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.') {
            q.push(char::from(b));
        } else {
            q.push_str(&format!("%{b:02X}"));
        }
    }
    Redirect::to(&q).into_response()
}

/// The session the request's cookie names, with its user: `Err` answers the request
/// (a login redirect for a page, 401 for anything else, 500 on a store failure).
async fn cookie_session(
    parts: &Parts,
    c: &Central,
) -> Result<
    (
        String,
        crate::model::Session,
        Option<crate::model::StaffUser>,
    ),
    Response,
> {
    let reject = |parts: &Parts| {
        if parts.method == Method::GET {
            login_redirect(parts)
        } else {
            (StatusCode::UNAUTHORIZED, "log in first").into_response()
        }
    };
    let name = cookie_name(c.config().tls.is_some());
    let Some(token) = cookie::find(&parts.headers, name).map(str::to_owned) else {
        return Err(reject(parts));
    };
    let t = token.clone();
    let found = c
        .blocking(move |c| {
            let Some(s) = c.session(&t)? else {
                return Ok(None);
            };
            let user = c.user(&s.user)?;
            Ok::<_, crate::auth::AuthError>(Some((s, user)))
        })
        .await
        .map_err(|e| internal(&e))?;
    match found {
        Some((s, user)) => Ok((token, s, user)),
        None => Err(reject(parts)),
    }
}

impl FromRequestParts<Central> for UiSession {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, c: &Central) -> Result<Self, Response> {
        let (token, s, user) = cookie_session(parts, c).await?;
        // A role this build does not know grants nothing (a company user of the
        // programme portal has no staff role either).
        let Some(role) = Role::parse(&s.role) else {
            return Err((StatusCode::FORBIDDEN, "your account has no central role").into_response());
        };
        Ok(UiSession {
            csrf: auth::csrf_token(&token),
            token,
            user: s.user,
            role,
            lang: user.map(|u| u.lang).unwrap_or_default(),
        })
    }
}

/// A logged-in user of the programme portal: a company account.
#[derive(Debug, Clone)]
pub struct CompanySession {
    pub token: String,
    pub user: String,
    /// The operator id of the user's company (the only company it may see).
    pub company: String,
    pub lang: Lang,
    pub csrf: String,
}

impl CsrfToken for CompanySession {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

impl FromRequestParts<Central> for CompanySession {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, c: &Central) -> Result<Self, Response> {
        let (token, s, user) = cookie_session(parts, c).await?;
        let company = user
            .as_ref()
            .filter(|_| s.role == COMPANY_ROLE)
            .and_then(|u| u.company.clone());
        let Some(company) = company else {
            return Err((
                StatusCode::FORBIDDEN,
                "the programme portal is for company accounts; staff use the dashboard",
            )
                .into_response());
        };
        Ok(CompanySession {
            csrf: auth::csrf_token(&token),
            token,
            user: s.user,
            company,
            lang: user.map(|u| u.lang).unwrap_or_default(),
        })
    }
}

/// Any logged-in user, staff or company (for logout and the language choice).
#[derive(Debug, Clone)]
pub struct AnySession {
    token: String,
    user: String,
    csrf: String,
}

impl CsrfToken for AnySession {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

impl FromRequestParts<Central> for AnySession {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, c: &Central) -> Result<Self, Response> {
        let (token, s, _) = cookie_session(parts, c).await?;
        Ok(AnySession {
            csrf: auth::csrf_token(&token),
            token,
            user: s.user,
        })
    }
}

/// The client's address, when the server passes connection info.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

/// What a dashboard `GET` page works from: central, the logged-in session (the login page
/// for none) and the query string's parameters.
#[derive(Debug)]
pub struct UiPage {
    pub central: Central,
    pub session: UiSession,
    pub query: std::collections::HashMap<String, String>,
}

impl FromRequestParts<Central> for UiPage {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, c: &Central) -> Result<Self, Response> {
        let session = UiSession::from_request_parts(parts, c).await?;
        let Query(query) = Query::from_request_parts(parts, c)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(UiPage {
            central: c.clone(),
            session,
            query,
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(aeogate_web::client_ip(&parts.extensions)))
    }
}

/// The page language a visitor without a session asked for (`Accept-Language`).
pub fn page_lang(headers: &HeaderMap) -> Lang {
    aeogate_web::accept_language(headers)
        .and_then(Lang::from_accept_language)
        .unwrap_or_default()
}

fn login_form(l: Lang, next: &str, error: Option<String>) -> maud::Markup {
    html! {
        (DOCTYPE)
        html lang=(l.tag()) {
            (super::head(l, T::LogIn.get(l), None))
            body.login {
                main {
                    h1 { (T::AppName.get(l)) }
                    @if let Some(e) = error { p.error role="alert" { (e) } }
                    form method="post" action="/login" {
                        input type="hidden" name="next" value=(next);
                        label { (T::User.get(l)) input name="user" autocomplete="username" required autofocus; }
                        label { (T::Password.get(l)) input name="password" type="password" autocomplete="current-password" required; }
                        button.primary { (T::LogIn.get(l)) }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// `GET /login`.
pub async fn login_page(headers: HeaderMap, Query(q): Query<NextQuery>) -> Response {
    login_form(page_lang(&headers), safe_next(q.next.as_deref()), None).into_response()
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    user: String,
    password: String,
    next: Option<String>,
}

/// `POST /login`: checks the password (rate-limited) and sets the session cookie.
pub async fn login_submit(
    State(c): State<Central>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let l = page_lang(&headers);
    let next = safe_next(f.next.as_deref()).to_owned();
    let user = f.user.trim().to_owned();
    let out = c
        .blocking(move |c| c.login_limited(&user, &f.password, addr))
        .await;
    match out {
        Err(e) => internal(&e),
        Ok(LoginResult::Refused) => (
            StatusCode::UNAUTHORIZED,
            login_form(l, &next, Some(T::WrongLogin.get(l).to_owned())),
        )
            .into_response(),
        Ok(LoginResult::Throttled(wait)) => {
            let secs = aeogate_web::limiter::retry_after_secs(wait);
            let msg = format!("{} {secs} {}.", T::Throttled.get(l), T::Seconds.get(l));
            let r = (
                StatusCode::TOO_MANY_REQUESTS,
                login_form(l, &next, Some(msg)),
            );
            aeogate_web::limiter::with_retry_after(r.into_response(), wait)
        }
        Ok(LoginResult::Ok(token, s)) => {
            let max_age = s
                .expires_at
                .duration_since(jiff::Timestamp::now())
                .as_secs()
                .max(0);
            let cookie = session_cookie(c.config().tls.is_some(), &token, max_age);
            // A company account's home is the programme portal.
            let next = if s.role == COMPANY_ROLE && !next.starts_with("/portal") {
                "/portal"
            } else {
                next.as_str()
            };
            redirect_with_cookie(next, &cookie)
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    csrf: Option<String>,
}

impl CsrfField for CsrfForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

/// `POST /logout`: ends the session and clears the cookie.
pub async fn logout(FormPost(c, s, (), _): FormPost<AnySession, (), CsrfForm>) -> Response {
    let token = s.token.clone();
    if let Err(e) = c.blocking(move |c| c.logout(&token)).await {
        return internal(&e);
    }
    redirect_with_cookie("/login", &COOKIE.clear(c.config().tls.is_some()))
}

/// A redirect to `to` that sets `cookie`.
fn redirect_with_cookie(to: &str, cookie: &str) -> Response {
    cookie::with_set_cookie(Redirect::to(to).into_response(), cookie)
        .unwrap_or_else(|e| internal(&format!("session cookie header: {e}")))
}

#[derive(Debug, Deserialize)]
pub struct LangForm {
    csrf: Option<String>,
    lang: String,
}

impl CsrfField for LangForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

/// `POST /lang`: stores the user's language and goes back to the page.
pub async fn set_lang(
    headers: HeaderMap,
    FormPost(c, s, (), f): FormPost<AnySession, (), LangForm>,
) -> Response {
    let Some(lang) = Lang::parse(&f.lang) else {
        return (
            StatusCode::BAD_REQUEST,
            format!("language {:?}: expected en, es or pt", f.lang),
        )
            .into_response();
    };
    let user = s.user.clone();
    if let Err(e) = c.blocking(move |c| c.set_user_lang(&user, lang)).await {
        return internal(&e);
    }
    // Back to the page the selector was on (same origin only).
    let back = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| {
            let host = headers.get(header::HOST)?.to_str().ok()?;
            let rest = r.split_once("://")?.1;
            rest.strip_prefix(host).map(str::to_owned)
        });
    Redirect::to(safe_next(back.as_deref())).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_login_only_local_paths_are_followed_else_the_cases() {
        assert_eq!(safe_next(Some("/cases/4")), "/cases/4");
        assert_eq!(safe_next(Some("/\t/evil.example:8080/x")), "/cases");
        assert_eq!(safe_next(None), "/cases");
    }

    #[test]
    fn the_session_cookie_is_centrals_own_and_host_prefixed_over_tls() {
        let plain = session_cookie(false, "t", 60);
        assert!(
            plain.starts_with("aeogate_central_session=t; Path=/;"),
            "{plain}"
        );
        assert!(!plain.contains("Secure"));
        let tls = session_cookie(true, "t", 60);
        assert!(
            tls.starts_with("__Host-aeogate_central_session=t; Path=/;")
                && tls.ends_with("; Secure"),
            "{tls}"
        );
    }
}
