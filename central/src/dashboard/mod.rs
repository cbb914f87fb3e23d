//! The central staff dashboard: server-rendered HTML (maud) with a small embedded script
//! and style sheet, served by central itself (no third-party assets, nothing from the
//! internet).
//!
//! # Layout
//! - [`text`]: the UI strings in English, Spanish and Portuguese.
//! - [`session`]: browser sessions (cookie), roles, the CSRF token, login and logout.
//! - [`cases`]: the live exceptions queue, the case page and case actions.
//! - [`gates`]: the gate health grid.
//! - [`charts`]: hourly decision charts (plain SVG written here, see [`svg`]).
//! - [`programme`]: AEO benefit figures with their CSV export.
//! - [`registry`]: operator search, record and status history, status changes.
//! - [`users`]: staff accounts (admin): disable, enable, change role.
//! - [`portal`]: the programme portal's company side (registration, company page,
//!   self-assessment, application); [`applications`]: the officers' side (queue, a
//!   company's file, decisions); [`portal_text`]: their strings.
//!
//! # Security
//! Every page but `/login` and the static assets needs a session cookie (`HttpOnly`,
//! `SameSite=Strict`, `Secure` when central serves HTTPS). Every state-changing request
//! passes two checks: tower-http's CSRF layer refuses cross-origin requests by
//! `Sec-Fetch-Site` / `Origin` (the Fetch Metadata scheme), and the handler requires the
//! session's CSRF token ([`crate::auth::csrf_token`]) in the form or the `x-csrf-token`
//! header. State changes are audited with user and time by the store.

pub mod applications;
pub mod cases;
pub mod charts;
pub mod gates;
pub mod portal;
pub mod portal_text;
pub mod programme;
pub mod registry;
pub mod session;
pub mod svg;
pub mod text;
pub mod users;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::{SignedDuration, Timestamp};
use maud::{DOCTYPE, Markup, html};
use protocol::i18n::Lang;

use crate::service::Central;
use session::UiSession;
pub use text::T;

const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// The dashboard's routes (state: [`Central`]), to be merged into [`crate::api::app`].
pub fn router() -> Router<Central> {
    Router::new()
        .route(
            "/",
            get(|| async { axum::response::Redirect::to("/cases") }),
        )
        .route(
            "/login",
            get(session::login_page).post(session::login_submit),
        )
        .route("/logout", post(session::logout))
        .route("/lang", post(session::set_lang))
        .route("/assets/app.js", get(app_js))
        .route("/assets/app.css", get(app_css))
        .route("/cases", get(cases::queue))
        .route("/cases/rows", get(cases::rows))
        .route("/cases/stream", get(cases::stream))
        .route("/cases/{id}", get(cases::page))
        .route("/cases/{id}/{action}", post(cases::act))
        .route("/gates", get(gates::grid))
        .route("/charts", get(charts::page))
        .route("/programme", get(programme::page))
        .route("/programme.csv", get(programme::csv))
        .route("/registry", get(registry::search))
        .route("/registry/{operator}", get(registry::operator))
        .route("/registry/{operator}/status", post(registry::set_status))
        .route("/users", get(users::page))
        .route("/users/{name}/access", post(users::set_access))
        .route(
            "/applications",
            get(applications::queue).post(applications::add),
        )
        .route("/applications/{operator}", get(applications::file))
        .route("/applications/{operator}/{action}", post(applications::act))
        .route("/portal", get(portal::home))
        .route(
            "/portal/register",
            get(portal::register_form).post(portal::register),
        )
        .route(
            "/portal/assessment",
            get(portal::assessment).post(portal::save_assessment),
        )
        .route("/portal/apply", post(portal::apply))
        .route("/portal/findings/{id}", post(portal::answer_finding))
        .route("/portal/messages", post(portal::post_message))
        .route("/portal/users", post(portal::add_user))
        .layer(tower_http::csrf::CsrfLayer::new())
}

async fn app_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        APP_JS,
    )
        .into_response()
}

async fn app_css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        APP_CSS,
    )
        .into_response()
}

/// Which page of the navigation is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Exceptions,
    Gates,
    Charts,
    Programme,
    Registry,
    Applications,
    Users,
}

/// The `<head>` of every page: charset, viewport, title and style sheet; pages behind a
/// session also carry its CSRF token (`csrf`) and the script that sends it.
fn head(l: Lang, title: &str, csrf: Option<&str>) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            @if let Some(token) = csrf { meta name="csrf-token" content=(token); }
            title { (title) " · " (T::AppName.get(l)) }
            link rel="stylesheet" href="/assets/app.css";
            @if csrf.is_some() { script src="/assets/app.js" defer {} }
        }
    }
}

/// The page frame: navigation, user, language selector and logout.
pub fn layout(s: &UiSession, nav: Nav, title: &str, body: Markup) -> Markup {
    let l = s.lang;
    let item = |n: Nav, href: &str, t: T| {
        html! { a href=(href) class=@if n == nav { "current" } { (t.get(l)) } }
    };
    html! {
        (DOCTYPE)
        html lang=(l.tag()) {
            (head(l, title, Some(&s.csrf)))
            body {
                header.top {
                    span.brand { (T::AppName.get(l)) }
                    nav {
                        (item(Nav::Exceptions, "/cases", T::Exceptions))
                        (item(Nav::Gates, "/gates", T::Gates))
                        (item(Nav::Charts, "/charts", T::Charts))
                        (item(Nav::Programme, "/programme", T::Programme))
                        (item(Nav::Registry, "/registry", T::Registry))
                        a href="/applications" class=@if nav == Nav::Applications { "current" } { (portal_text::T::Applications.get(l)) }
                        @if s.role.may_manage_credentials() { (item(Nav::Users, "/users", T::Users)) }
                    }
                    div.who {
                        span.user { (s.user) " (" (s.role.as_str()) ")" }
                        form.inline method="post" action="/lang" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            label { span.sr { (T::Language.get(l)) }
                                select name="lang" data-autosubmit {
                                    @for o in Lang::ALL {
                                        option value=(o.tag()) selected[o == l] { (lang_name(o)) }
                                    }
                                }
                            }
                            noscript { button { (T::Save.get(l)) } }
                        }
                        form.inline method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            button.link { (T::LogOut.get(l)) }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// A language's own name.
#[must_use]
pub fn lang_name(l: Lang) -> &'static str {
    match l {
        Lang::En => "English",
        Lang::Es => "Español",
        Lang::Pt => "Português",
    }
}

/// An error page (or fragment) with a status.
pub fn error_page(s: &UiSession, status: StatusCode, message: &str) -> Response {
    (
        status,
        layout(
            s,
            Nav::Exceptions,
            status.canonical_reason().unwrap_or("Error"),
            html! { p.error { (message) } },
        ),
    )
        .into_response()
}

/// A store or internal failure as a plain 500 page; the cause goes to the log.
pub fn internal(e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "dashboard request failed");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error: see central's log",
    )
        .into_response()
}

/// `2025-01-31 14:05:09` in UTC (the whole programme spans time zones; staff read UTC).
#[must_use]
pub fn fmt_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S").to_string()
}

/// A duration for people: `45 s`, `12 min`, `3 h 5 min`, `2 d 4 h`.
#[must_use]
pub fn fmt_duration(d: SignedDuration) -> String {
    let s = d.as_secs().unsigned_abs();
    let sign = if d.is_negative() { "-" } else { "" };
    if s < 120 {
        format!("{sign}{s} s")
    } else if s < 3600 {
        format!("{sign}{} min", s / 60)
    } else if s < 86_400 {
        format!("{sign}{} h {} min", s / 3600, (s % 3600) / 60)
    } else {
        format!("{sign}{} d {} h", s / 86_400, (s % 86_400) / 3600)
    }
}

/// The time range choices the pages offer, in hours (0 = all time).
pub const RANGES: [(u32, T); 6] = [
    (1, T::LastHour),
    (6, T::Last6h),
    (24, T::Last24h),
    (72, T::Last3d),
    (168, T::Last7d),
    (0, T::AllTime),
];

/// Parses a `hours` query value to one of [`RANGES`], else `default`.
#[must_use]
pub fn parse_hours(v: Option<&String>, default: u32) -> u32 {
    v.and_then(|s| s.parse::<u32>().ok())
        .filter(|h| RANGES.iter().any(|(r, _)| r == h))
        .unwrap_or(default)
}

/// Start of a range of `hours` before `now` (`None` for all time).
#[must_use]
pub fn range_start(hours: u32, now: Timestamp) -> Option<Timestamp> {
    (hours > 0)
        .then(|| {
            now.checked_sub(SignedDuration::from_hours(i64::from(hours)))
                .ok()
        })
        .flatten()
}

/// Percent with one decimal.
#[must_use]
pub fn pct(x: f64) -> String {
    format!("{:.1} %", x * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(fmt_duration(SignedDuration::from_secs(45)), "45 s");
        assert_eq!(fmt_duration(SignedDuration::from_secs(600)), "10 min");
        assert_eq!(
            fmt_duration(SignedDuration::from_secs(3 * 3600 + 300)),
            "3 h 5 min"
        );
        assert_eq!(fmt_duration(SignedDuration::from_secs(-30)), "-30 s");
    }

    #[test]
    fn only_offered_ranges_are_accepted() {
        assert_eq!(parse_hours(Some(&"6".to_owned()), 24), 6);
        assert_eq!(parse_hours(Some(&"5".to_owned()), 24), 24);
        assert_eq!(parse_hours(Some(&"x".to_owned()), 24), 24);
        assert_eq!(parse_hours(None, 24), 24);
    }
}
