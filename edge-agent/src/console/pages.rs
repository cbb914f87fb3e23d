//! The console's HTML (maud) and its live feeds.
//!
//! Live regions are rendered on the server for the viewer's role and language and pushed
//! as server-sent events (HTML Living Standard §9.2); `console.js` swaps them in. The
//! officer's forms sit outside the live region, so an update never wipes what is being
//! typed. The operator's screens are rendered without reason codes or texts at all: what
//! is not sent cannot leak.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::StreamExt as _;
use jiff::Timestamp;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use protocol::i18n::{Lang, detail_label, reason_text};
use protocol::schema::{
    ActionKind, Decision, InspectionOutcome, LaneDecision, LaneId, LaneSignal, OfficerAction,
    PartyView, ReadSource, ReadValue,
};
use serde::Deserialize;
use tokio_stream::wrappers::{BroadcastStream, IntervalStream};

use super::auth::{self, AuthError, Authed, Console};
use super::text::{OVERRIDE_REASONS, T};
use super::view::{self, GateStatus, HourFigures, LaneView};
use crate::state::AppState;

const SCRIPT: &str = include_str!("assets/console.js");
const STYLE: &str = include_str!("assets/console.css");
/// How often live screens are refreshed even without a lane change (replica age,
/// device health, backlog).
const REFRESH: Duration = Duration::from_secs(3);

/// `GET /assets/console.js`.
pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
        .into_response()
}

/// `GET /assets/console.css`.
pub async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        STYLE,
    )
        .into_response()
}

fn page(lang: Lang, title: &str, who: Option<&Authed>, gate: &str, body: Markup) -> Response {
    let m = html! {
        (DOCTYPE)
        html lang=(lang.tag()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(a) = who { meta name="csrf-token" content=(a.session.csrf); }
                title { (title) " · " (gate) }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
            }
            body {
                header.top {
                    span.brand { "aeogate · " (gate) }
                    @if let Some(a) = who {
                        nav {
                            @if a.role().is_customs() {
                                a href="/console" { (T::OfficerConsole.get(lang)) }
                                a href="/console/history" { (T::History.get(lang)) }
                            }
                            a href="/operator" { (T::OperatorView.get(lang)) }
                        }
                        form.logout method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(a.session.csrf);
                            span.who { (a.user()) " (" (a.role()) ")" }
                            button type="submit" { (T::SignOut.get(lang)) }
                        }
                    }
                }
                main { (body) }
            }
        }
    };
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
            ),
        ],
        m,
    )
        .into_response()
}

/// The login page, with an optional error.
pub fn login(lang: Lang, error: Option<T>, status: StatusCode) -> Response {
    let body = html! {
        section.login {
            h1 { (T::SignIn.get(lang)) }
            @if let Some(e) = error { p.error role="alert" { (e.get(lang)) } }
            form method="post" action="/login" {
                label { (T::UserName.get(lang)) input name="name" autocomplete="username" required autofocus; }
                label { (T::Password.get(lang)) input name="password" type="password" autocomplete="current-password" required; }
                button type="submit" { (T::SignIn.get(lang)) }
            }
        }
    };
    let mut r = page(lang, T::SignIn.get(lang), None, "", body);
    *r.status_mut() = status;
    r
}

/// `GET /login`.
pub async fn login_page(headers: HeaderMap) -> Response {
    login(auth::browser_lang(&headers), None, StatusCode::OK)
}

/// `POST /login` (form): sets the cookie and goes to the role's screen.
pub async fn login_form(
    State(console): State<Arc<Console>>,
    State(journal): State<Arc<crate::journal::Journal>>,
    headers: HeaderMap,
    req_ext: axum::http::Extensions,
    Form(f): Form<auth::LoginForm>,
) -> Result<Response, AuthError> {
    let lang = auth::browser_lang(&headers);
    Ok(
        match auth::attempt(&console, &journal, aeogate_web::client_ip(&req_ext), f).await? {
            auth::Attempt::Ok(token, _) => aeogate_web::cookie::with_set_cookie(
                Redirect::to("/").into_response(),
                &auth::session_cookie(&token, console.tls),
            )
            .map_err(|e| AuthError::Internal(format!("session cookie header: {e}")))?,
            auth::Attempt::Refused => login(lang, Some(T::LoginFailed), StatusCode::UNAUTHORIZED),
            auth::Attempt::Limited(wait) => aeogate_web::limiter::with_retry_after(
                login(
                    lang,
                    Some(T::TooManyAttempts),
                    StatusCode::TOO_MANY_REQUESTS,
                ),
                wait,
            ),
        },
    )
}

/// `GET /`: the role's screen.
pub async fn home(authed: Authed) -> Redirect {
    if authed.role().is_customs() {
        Redirect::to("/console")
    } else {
        Redirect::to("/operator")
    }
}

async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, AuthError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AuthError::Internal(e.to_string()))
}

fn decision_word(d: LaneDecision, lang: Lang) -> &'static str {
    match d {
        LaneDecision::Fast => T::Fast.get(lang),
        LaneDecision::Standard => T::Standard.get(lang),
        LaneDecision::Inspect => T::Inspect.get(lang),
    }
}

fn class_of(d: LaneDecision) -> &'static str {
    match d {
        LaneDecision::Fast => "d-fast",
        LaneDecision::Standard => "d-standard",
        LaneDecision::Inspect => "d-inspect",
    }
}

/// The decision's shape beside its word and colour, so the lane state never rests on
/// colour alone: a circle for FAST, a diamond for STANDARD, a triangle for INSPECT.
fn shape(d: LaneDecision) -> Markup {
    html! {
        svg.shape aria-hidden="true" focusable="false" viewBox="0 0 20 20" {
            @match d {
                LaneDecision::Fast => { circle cx="10" cy="10" r="9" {} }
                LaneDecision::Standard => { polygon points="10,0.5 19.5,10 10,19.5 0.5,10" {} }
                LaneDecision::Inspect => { polygon points="10,0.8 19.6,18.6 0.4,18.6" {} }
            }
        }
    }
}

/// A closed lane's mark beside its words: a bar across a circle (a "no entry" sign), so
/// the closed state never rests on colour alone; a lane closed because its agent is
/// offline carries it too.
fn closed_shape() -> Markup {
    html! {
        svg.shape aria-hidden="true" focusable="false" viewBox="0 0 20 20" {
            circle cx="10" cy="10" r="9" {}
            rect x="4" y="8" width="12" height="4" fill="#3d2a00" {}
        }
    }
}

/// What a closed lane shows on the officer console and the operator grid: the words, the
/// reason, who closed it (officers only) and since when.
fn closed_block(c: &crate::store::LaneClosure, small: bool, with_by: bool, lang: Lang) -> Markup {
    html! {
        div.decision.d-closed.(if small { "small" } else { "" }) data-closed="true" {
            (closed_shape())
            span.word { (T::LaneClosed.get(lang)) }
            span.route { (T::OverrideReason.get(lang)) ": " (c.reason) }
            span.since { (T::ClosedSince.get(lang)) " " (hhmmss(c.since)) }
            @if with_by { span.by { (T::ClosedBy.get(lang)) " " (c.by) } }
        }
    }
}

/// A phone number as a `tel:` URI (RFC 3966): the leading `+` and the digits.
fn tel_uri(phone: &str) -> String {
    let mut uri = String::from("tel:");
    for (i, c) in phone.trim().chars().enumerate() {
        if c.is_ascii_digit() || (i == 0 && c == '+') {
            uri.push(c);
        }
    }
    uri
}

/// The parties a reason is about, each as a card: who, status, and the customs contact
/// point with links to call and to write.
fn party_cards(parties: &[PartyView], lang: Lang) -> Markup {
    html! {
        div.cards {
            @for p in parties {
                div.party-card {
                    p.party-name { strong { (p.role.as_str()) } " · " (p.name) }
                    dl {
                        dt { (T::OperatorId.get(lang)) }
                        dd.mono { @if let Some(o) = &p.operator { (o) } @else { "—" } }
                        dt { (T::AeoStatus.get(lang)) }
                        dd.(match p.status { Some(protocol::schema::AeoStatus::Active) => "ok", _ => "bad" }) {
                            @match p.status { Some(st) => { (st.as_str()) } None => { (T::NotInRegistry.get(lang)) } }
                        }
                        @if let Some(cp) = &p.contact_point {
                            dt { (T::ContactPoint.get(lang)) }
                            dd {
                                (cp.name)
                                @if let Some(ph) = &cp.phone {
                                    br; (T::Phone.get(lang)) ": " a.tel href=(tel_uri(ph)) { (ph) }
                                }
                                @if let Some(em) = &cp.email {
                                    br; (T::Email.get(lang)) ": " a.mail href=(format!("mailto:{em}")) { (em) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One reason: its text in the viewer's language, the parties it is about as cards, and
/// its other specifics as a list of terms.
fn reason_item(r: &protocol::schema::Reason, lang: Lang) -> Markup {
    // What the party cards already say is not repeated in the list.
    let shown_on_card =
        |k: &str| !r.parties.is_empty() && matches!(k, "role" | "name" | "operator");
    html! {
        li.(format!("r-{}", r.code.code().to_ascii_lowercase())) {
            span.rtext { (reason_text(r.code, lang)) }
            @if !r.parties.is_empty() { (party_cards(&r.parties, lang)) }
            @if r.detail.keys().any(|k| !shown_on_card(k)) {
                dl.detail {
                    @for (k, val) in r.detail.iter().filter(|(k, _)| !shown_on_card(k)) {
                        dt data-key=(k) { (detail_label(k, lang).unwrap_or(k)) } dd { (val) }
                    }
                }
            }
        }
    }
}

fn source_word(s: ReadSource) -> &'static str {
    match s {
        ReadSource::Rfid => "RFID",
        ReadSource::Ocr => "OCR",
        ReadSource::ESealReader => "E-SEAL",
        ReadSource::Manual => "MANUAL",
    }
}

fn hhmmss(t: Timestamp) -> String {
    t.strftime("%H:%M:%S").to_string()
}

/// The last live reconfiguration: a banner when it was refused (key and line), a line
/// when it was applied; nothing before the first reload.
fn reload_notice(last: Option<&crate::reload::Outcome>, lang: Lang) -> Markup {
    use crate::reload::OutcomeKind;
    html! {
        @if let Some(o) = last {
            @match &o.result {
                OutcomeKind::Refused { error, key, line } => {
                    div.banner #reload-refused role="alert" {
                        strong { (T::ReloadRefused.get(lang)) } " · " (hhmmss(o.at))
                        ul {
                            @if let Some(k) = key {
                                li { (T::ConfigKey.get(lang)) ": " code { (k) }
                                    @if let Some(l) = line { " (" (T::ConfigLine.get(lang)) " " (l) ")" } }
                            }
                            li.mono { (error) }
                        }
                    }
                }
                OutcomeKind::Applied { old_policy, new_policy, changes } => {
                    p.reload #reload-applied {
                        (T::ReloadApplied.get(lang)) " · " (hhmmss(o.at)) " · " (T::PolicyWord.get(lang)) " "
                        (old_policy) " → " (new_policy) " · " (T::ChangesWord.get(lang)) ": " (changes.len())
                    }
                }
                OutcomeKind::Unchanged => {}
            }
        }
    }
}

/// Degraded-lane banner, or nothing.
fn banner(st: &GateStatus, lane: &LaneId, lang: Lang) -> Markup {
    let down = st.down_for(lane);
    html! {
        @if st.degraded(lane) {
            div.banner role="alert" {
                strong { (T::Degraded.get(lang)) }
                ul {
                    @for d in &down { li { (T::DeviceDown.get(lang)) ": " (d.device) " — " (d.detail) } }
                    @if st.replica.stale { li { (T::ReplicaStale.get(lang)) } }
                    @if st.central_down { li { (T::CentralDown.get(lang)) ": " (st.backlog) } }
                    @if !st.clock.trusted { li.clock { (clock_line(&st.clock, lang)) } }
                }
            }
        }
    }
}

/// "Clock untrusted: this gate is ahead of central by 10.0 s — no FAST …".
fn clock_line(clock: &crate::clock::ClockView, lang: Lang) -> Markup {
    let offset = clock.offset();
    html! {
        @if let Some(o) = offset {
            (if o.is_negative() { T::ClockBehind.get(lang) } else { T::ClockAhead.get(lang) })
            " " (format!("{:.1}", o.as_secs_f64().abs())) " s"
            " (" (T::ClockBound.get(lang)) " " (format!("{:.1}", clock.max_offset.as_secs_f64())) " s) — "
        }
        (T::ClockNoFast.get(lang))
    }
}

fn replica_line(st: &GateStatus, lang: Lang) -> Markup {
    html! {
        p.replica {
            (T::ReplicaAge.get(lang)) ": "
            @match st.replica.age_s {
                Some(a) => { (humantime::format_duration(Duration::from_secs(a))) }
                None => { (T::NeverLoaded.get(lang)) }
            }
            " · seq " (st.replica.sequence)
        }
    }
}

/// The officer's live panel of one lane.
fn lane_panel(v: &LaneView, st: &GateStatus, lang: Lang) -> Markup {
    let shown = v.live.shown.as_ref();
    let tx_id = v
        .transaction
        .as_ref()
        .map(|t| t.id.to_string())
        .unwrap_or_default();
    // What the lane shows for this truck (an override wins over the decision).
    let (word, class, route, overridden, priority) = match (&v.decision, shown) {
        (Some(d), Some(s)) if s.transaction_id == Some(d.transaction_id) => {
            let dec = s.decision.decided().unwrap_or(d.decision);
            (
                Some(dec),
                class_of(dec),
                s.route.clone(),
                s.officer_override,
                s.priority,
            )
        }
        (Some(d), _) => (
            Some(d.decision),
            class_of(d.decision),
            d.route.clone(),
            false,
            d.priority,
        ),
        (None, _) => (None, "d-none", String::new(), false, false),
    };
    // A lane state saying the agent is gone outranks any decision: closed, red.
    let offline = shown.is_some_and(|s| s.decision == LaneSignal::Offline);
    let (word, class) = if offline {
        (None, "d-inspect")
    } else {
        (word, class)
    };
    let decided = word.map(|w| w.as_str()).unwrap_or("");
    let exception = v.decision.as_ref().is_some_and(Decision::is_seal_exception);
    // What a screen reader announces when a new INSPECT arrives (console.js).
    let announce = word
        .map(|w| {
            format!(
                "{} · {} {} · {}: {route}",
                decision_word(w, lang),
                T::Lane.get(lang),
                v.live.lane,
                T::Route.get(lang)
            )
        })
        .unwrap_or_default();
    html! {
        div #lane-live data-tx=(tx_id) data-decision=(decided) data-exception=(exception) data-reading=(v.reading) data-announce=(announce) data-closed=(v.live.closed.is_some()) {
            (banner(st, &v.live.lane, lang))
            @if let Some(c) = &v.live.closed {
                (closed_block(c, false, true, lang))
                @if v.live.refusals > 0 { p.refusals { (T::Refusals.get(lang)) ": " (v.live.refusals) } }
            }
            // On a closed lane the last decision is history, not what the lane shows: small,
            // and labelled so.
            div.decision.(class).small[v.live.closed.is_some()] {
                @if v.reading {
                    span.word { (T::TruckInLane.get(lang)) "…" }
                } @else if offline {
                    (closed_shape())
                    span.word { (T::AgentOffline.get(lang)) }
                } @else if let Some(w) = word {
                    @if v.live.closed.is_some() { span.route { (T::LastDecision.get(lang)) ":" } }
                    (shape(w))
                    span.word { (decision_word(w, lang)) }
                    span.route { (T::Route.get(lang)) ": " (route) }
                    @if priority { span.flag { (T::Priority.get(lang)) } }
                    @if overridden { span.flag { (T::Overridden.get(lang)) } }
                } @else {
                    span.word { (T::LaneIdle.get(lang)) }
                }
            }
            @if let Some(d) = &v.decision {
                section.reasons {
                    h2 { (T::Reasons.get(lang)) }
                    ul { @for r in &d.reasons { (reason_item(r, lang)) } }
                }
            }
            @if let Some(tx) = &v.transaction { (reads_tables(tx, v, lang)) }
            @if let Some(d) = &v.decision { (parties_table(d, lang)) }
            (replica_line(st, lang))
        }
    }
}

fn reads_tables(tx: &protocol::schema::GateTransaction, v: &LaneView, lang: Lang) -> Markup {
    let containers = tx.containers();
    let declared_containers: Vec<String> = v.declared.keys().cloned().collect();
    let mut declared_seals: Vec<(String, String)> = Vec::new();
    for (c, cons) in &v.declared {
        for dc in cons.containers.iter().filter(|dc| dc.number.as_str() == c) {
            for s in &dc.seals {
                declared_seals.push((c.clone(), s.to_string()));
            }
            for e in &dc.eseals {
                declared_seals.push((c.clone(), e.to_string()));
            }
        }
    }
    html! {
        section.reads {
            h2 { (T::Containers.get(lang)) }
            table {
                thead { tr { th { (T::Read.get(lang)) } th { (T::Source.get(lang)) } th { (T::Declared.get(lang)) } } }
                tbody {
                    @for r in &tx.reads {
                        @if let ReadValue::Container { number } = &r.value {
                            tr.(if declared_containers.iter().any(|d| d == number.as_str()) { "match" } else { "nomatch" }) {
                                td.mono { (number) }
                                td { (source_word(r.source)) " " (r.device) @if let Some(who) = &r.entered_by { " (" (who) ")" } }
                                td.mono {
                                    @if declared_containers.iter().any(|d| d == number.as_str()) { (number) }
                                    @else { em { (T::NotDeclared.get(lang)) } }
                                }
                            }
                        }
                    }
                    @if containers.is_empty() { tr { td colspan="3" { em { (T::NotRead.get(lang)) } } } }
                }
            }
            h2 { (T::Seals.get(lang)) }
            table {
                thead { tr { th { (T::Declared.get(lang)) } th { (T::Read.get(lang)) } th { (T::Source.get(lang)) } } }
                tbody {
                    @for (_, s) in &declared_seals {
                        @let found = tx.reads.iter().find(|r| match &r.value {
                            ReadValue::Seal { number } => number.as_str() == s,
                            ReadValue::ESeal { id, .. } => &id.to_string() == s,
                            _ => false,
                        });
                        tr.(if found.is_some() { "match" } else { "nomatch" }) {
                            td.mono { (s) }
                            @match found {
                                Some(r) => {
                                    td.mono { (seal_value(&r.value, lang)) }
                                    td { (source_word(r.source)) }
                                }
                                None => { td { em { (T::NotRead.get(lang)) } } td {} }
                            }
                        }
                    }
                    @for r in &tx.reads {
                        @let text = match &r.value {
                            ReadValue::Seal { number } => Some(number.to_string()),
                            ReadValue::ESeal { id, .. } => Some(id.to_string()),
                            _ => None,
                        };
                        @if let Some(t) = text {
                            @if !declared_seals.iter().any(|(_, s)| *s == t) {
                                tr.nomatch {
                                    td { em { (T::NotDeclared.get(lang)) } }
                                    td.mono { (seal_value(&r.value, lang)) }
                                    td { (source_word(r.source)) @if let Some(who) = &r.entered_by { " (" (who) ")" } }
                                }
                            }
                        }
                    }
                }
            }
            @let others: Vec<_> = tx.reads.iter().filter(|r| matches!(r.value, ReadValue::Plate { .. } | ReadValue::Tag { .. } | ReadValue::Unreadable { .. })).collect();
            @if !others.is_empty() {
                h2 { (T::Vehicle.get(lang)) }
                ul.plain {
                    @for r in others {
                        li {
                            @match &r.value {
                                ReadValue::Plate { text } => { span.mono { (text) } }
                                ReadValue::Tag { uri, .. } => { span.mono { (uri) } }
                                ReadValue::Unreadable { what, error } => { (what) ": " (error) }
                                _ => {}
                            }
                            " · " (source_word(r.source)) " " (r.device)
                        }
                    }
                }
            }
        }
    }
}

fn seal_value(v: &ReadValue, lang: Lang) -> Markup {
    html! {
        @match v {
            ReadValue::Seal { number } => { (number) }
            ReadValue::ESeal { id, state, battery_pct } => {
                (id) " · " (format!("{state:?}").to_uppercase())
                @if let Some(b) = battery_pct { " · " (T::Battery.get(lang)) " " (b) "%" }
            }
            _ => {}
        }
    }
}

fn parties_table(d: &Decision, lang: Lang) -> Markup {
    html! {
        @if !d.parties.is_empty() {
            section.parties {
                h2 { (T::Parties.get(lang)) }
                table {
                    thead { tr {
                        th { (T::Role.get(lang)) } th { (T::OperatorId.get(lang)) } th { (T::Programme.get(lang)) }
                        th { (T::AeoStatus.get(lang)) } th { (T::Security.get(lang)) } th { (T::MraBasis.get(lang)) }
                    } }
                    tbody {
                        @for p in &d.parties {
                            tr {
                                td { (p.role.as_str()) br; small { (p.name) } }
                                td.mono { @if let Some(o) = &p.operator { (o) } @else { "—" } }
                                td { @if let Some(o) = &p.operator { (o.programme().code()) } @else { "—" } }
                                td.(match p.status { Some(protocol::schema::AeoStatus::Active) => "ok", _ => "bad" }) {
                                    @match p.status { Some(s) => { (s.as_str()) } None => { (T::NotInRegistry.get(lang)) } }
                                }
                                td { @if p.security { (T::Yes.get(lang)) } @else { (T::No.get(lang)) } }
                                td { @if let Some(m) = &p.mra { (m) } @else { "—" } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Query of the officer console and its feed.
#[derive(Debug, Deserialize)]
pub struct LaneQuery {
    /// The lane; the first configured one when absent.
    #[serde(default)]
    pub lane: Option<String>,
}

fn pick_lane(shared: &AppState, q: Option<&str>) -> Result<LaneId, AuthError> {
    match q.filter(|l| !l.is_empty()) {
        Some(l) => {
            let id = LaneId::parse(l).map_err(|e| AuthError::Forbidden(e.to_string()))?;
            shared
                .lane(&id)
                .map(|c| c.id)
                .ok_or_else(|| AuthError::Forbidden(format!("no lane {id} at this gate")))
        }
        None => shared
            .lanes
            .get()
            .first()
            .map(|c| c.id.clone())
            .ok_or_else(|| AuthError::Internal("no lanes configured".into())),
    }
}

async fn render_panel(shared: &AppState, lane: &LaneId, lang: Lang) -> Option<String> {
    let s = shared.clone();
    let lane = lane.clone();
    tokio::task::spawn_blocking(move || {
        let st = view::gate_status(&s);
        view::lane_view(&s, &lane).map(|v| lane_panel(&v, &st, lang).into_string())
    })
    .await
    .ok()
    .flatten()
}

/// `GET /console?lane=`.
pub async fn console(
    State(s): State<AppState>,
    authed: Authed,
    Query(q): Query<LaneQuery>,
) -> Result<Response, AuthError> {
    authed.require_customs()?;
    let lang = authed.lang();
    let lane = pick_lane(&s, q.lane.as_deref())?;
    let panel = render_panel(&s, &lane, lang).await.unwrap_or_default();
    let supervisor = authed.role() == super::Role::Supervisor;
    let lanes = s.lanes.get();
    let body = html! {
        (reload_notice(s.reload.last().as_ref(), lang))
        nav.lanes {
            @for l in lanes.iter() {
                a.(if l.id == lane { "current" } else { "" }) href=(format!("/console?lane={}", l.id)) { (T::Lane.get(lang)) " " (l.id) " · " (l.name) }
            }
        }
        p #live-status.live-off hidden { (T::LiveOff.get(lang)) }
        div #live data-feed=(format!("/console/events?lane={lane}")) data-lane=(lane) { (PreEscaped(panel)) }
        p #msg role="status" {}
        div #announce.sr-only role="alert" aria-atomic="true" {}
        section.actions #actions data-lane=(lane) {
            h2 { (T::Actions.get(lang)) }
            p.keys #shortcuts { (T::Shortcuts.get(lang)) }
            form #f-confirm data-action="CONFIRM" {
                button type="submit" { (T::Confirm.get(lang)) }
            }
            details open {
                summary { (T::Override.get(lang)) }
                form #f-override data-action="OVERRIDE" {
                    label { (T::OverrideTo.get(lang))
                        select name="to" {
                            @for d in [LaneDecision::Inspect, LaneDecision::Standard, LaneDecision::Fast] {
                                @if supervisor || d == LaneDecision::Inspect || d == LaneDecision::Standard {
                                    option value=(d.as_str()) { (decision_word(d, lang)) }
                                }
                            }
                        }
                    }
                    label { (T::OverrideReason.get(lang))
                        select name="reason" {
                            option value="" { (T::ChooseReason.get(lang)) }
                            @for (code, t) in OVERRIDE_REASONS { option value=(code) { (t.get(lang)) } }
                        }
                    }
                    label { (T::Note.get(lang)) input name="note" maxlength="1000"; }
                    button type="submit" { (T::Override.get(lang)) }
                }
            }
            details {
                summary { (T::InspectionResult.get(lang)) }
                form #f-inspection data-action="INSPECTION_RESULT" {
                    label { (T::Outcome.get(lang))
                        select name="result" {
                            option value="SEAL_INTACT" { (T::SealIntact.get(lang)) }
                            option value="SEAL_REPLACED" { (T::SealReplaced.get(lang)) }
                            option value="CONTAINER_OPENED" { (T::ContainerOpened.get(lang)) }
                            option value="DISCREPANCY_CONFIRMED" { (T::DiscrepancyConfirmed.get(lang)) }
                            option value="FALSE_READ" { (T::FalseRead.get(lang)) }
                        }
                    }
                    label { (T::NewSeal.get(lang)) input name="new_seal" maxlength="20" autocapitalize="characters"; }
                    label { (T::Note.get(lang)) input name="note" maxlength="1000"; }
                    button type="submit" { (T::Submit.get(lang)) }
                }
            }
            details {
                summary { (T::ManualEntry.get(lang)) }
                form #f-manual data-action="MANUAL_ENTRY" {
                    label { (T::ManualKind.get(lang))
                        select name="kind" {
                            option value="CONTAINER" { (T::Container.get(lang)) }
                            option value="SEAL" { (T::Seal.get(lang)) }
                        }
                    }
                    label { (T::Value.get(lang)) input name="number" maxlength="20" autocapitalize="characters"; }
                    button type="submit" { (T::Submit.get(lang)) }
                }
            }
            @if supervisor {
                details {
                    summary { (T::LaneControl.get(lang)) }
                    form #f-lane data-action="LANE_CONTROL" {
                        label { (T::LaneControlReason.get(lang)) input name="reason" required maxlength="1000"; }
                        button type="submit" name="op" value="close" { (T::CloseLane.get(lang)) }
                        " "
                        button type="submit" name="op" value="reopen" { (T::ReopenLane.get(lang)) }
                    }
                }
            }
        }
    };
    Ok(page(
        lang,
        T::OfficerConsole.get(lang),
        Some(&authed),
        s.gate.as_str(),
        body,
    ))
}

/// `GET /console/events?lane=`: the lane's panel on every change and every few seconds.
pub async fn console_events(
    State(s): State<AppState>,
    authed: Authed,
    Query(q): Query<LaneQuery>,
) -> Result<Response, AuthError> {
    authed.require_customs()?;
    let lane = pick_lane(&s, q.lane.as_deref())?;
    let lang = authed.lang();
    let watched = lane.clone();
    Ok(panel_feed(
        &s,
        move |l| l.lane == watched,
        move |shared| {
            let lane = lane.clone();
            async move { render_panel(&shared, &lane, lang).await.unwrap_or_default() }
        },
    ))
}

/// A stream of `panel` events: `render`'s HTML on every live change of a lane `wanted`
/// (and on a lagged subscription) and every [`REFRESH`], until the agent shuts down.
fn panel_feed<R, F>(
    s: &AppState,
    wanted: impl Fn(&crate::live::LaneLive) -> bool + Send + 'static,
    render: R,
) -> Response
where
    R: Fn(AppState) -> F + Send + 'static,
    F: Future<Output = String> + Send + 'static,
{
    let changes = BroadcastStream::new(s.live.subscribe())
        .filter(move |m| {
            let keep = m.as_ref().map_or(true, &wanted);
            async move { keep }
        })
        .map(|_| ());
    let ticks = IntervalStream::new(tokio::time::interval(REFRESH)).map(|_| ());
    let shared = s.clone();
    let stream = futures_util::stream::select(changes, ticks)
        .then(move |()| {
            let html = render(shared.clone());
            async move { Ok::<_, Infallible>(Event::default().event("panel").data(html.await)) }
        })
        .take_until(s.shutdown.clone().cancelled_owned());
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Query of the history page.
#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    /// Lane filter.
    #[serde(default)]
    pub lane: Option<String>,
    /// Container number or prefix.
    #[serde(default)]
    pub container: Option<String>,
}

/// `GET /console/history?lane=&container=`.
pub async fn history(
    State(s): State<AppState>,
    authed: Authed,
    Query(q): Query<HistoryQuery>,
) -> Result<Response, AuthError> {
    authed.require_customs()?;
    let lang = authed.lang();
    let lane = match q.lane.as_deref().filter(|l| !l.is_empty()) {
        Some(l) => Some(pick_lane(&s, Some(l))?),
        None => None,
    };
    let needle: String = q
        .container
        .unwrap_or_default()
        .trim()
        .to_ascii_uppercase()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(11)
        .collect();
    let store = s.store.clone();
    let (l2, n2) = (lane.clone(), needle.clone());
    let rows = blocking(move || {
        store.recent_transactions(
            l2.as_ref(),
            Some(n2.as_str()).filter(|n| !n.is_empty()),
            100,
        )
    })
    .await?
    .map_err(|e| AuthError::Internal(e.to_string()))?;
    let body = html! {
        h1 { (T::History.get(lang)) }
        form.search method="get" action="/console/history" {
            label { (T::Lane.get(lang))
                select name="lane" {
                    option value="" { (T::Lanes.get(lang)) }
                    @for l in s.lanes.get().iter() {
                        option value=(l.id) selected[lane.as_ref() == Some(&l.id)] { (l.id) " · " (l.name) }
                    }
                }
            }
            label { (T::SearchContainer.get(lang))
                input name="container" value=(needle) maxlength="11";
            }
            button type="submit" { (T::Search.get(lang)) }
        }
        @if rows.is_empty() { p { (T::NoTransactions.get(lang)) } }
        @else {
            table.history {
                thead { tr { th { (T::Time.get(lang)) } th { (T::Lane.get(lang)) } th { (T::Container.get(lang)) } th { (T::Decision.get(lang)) } th { (T::Reasons.get(lang)) } } }
                tbody {
                    @for (tx, d) in &rows {
                        tr {
                            td { a href=(format!("/console/tx/{}", tx.id)) { (tx.closed_at.strftime("%Y-%m-%d %H:%M:%S")) } }
                            td { (tx.lane) }
                            td.mono { @for c in tx.containers() { (c) " " } }
                            @match d {
                                Some(d) => {
                                    td { span.pill.(class_of(d.decision)) { (shape(d.decision)) (decision_word(d.decision, lang)) } }
                                    td { @for r in &d.reasons { (reason_text(r.code, lang)) br; } }
                                }
                                None => { td { "—" } td {} }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page(
        lang,
        T::History.get(lang),
        Some(&authed),
        s.gate.as_str(),
        body,
    ))
}

fn action_line(a: &OfficerAction, lang: Lang) -> Markup {
    html! {
        li {
            (hhmmss(a.at)) " · " (a.officer) " (" (a.role) ") · "
            @match &a.kind {
                ActionKind::Confirm => { (T::Confirm.get(lang)) }
                ActionKind::Override { to, reason, note } => { (T::Override.get(lang)) " → " (decision_word(*to, lang)) ": " (reason) " " (note) }
                ActionKind::InspectionResult { result, note } => {
                    (T::InspectionResult.get(lang)) ": "
                    @match result {
                        InspectionOutcome::SealIntact => { (T::SealIntact.get(lang)) }
                        InspectionOutcome::SealReplaced { new_seal } => { (T::SealReplaced.get(lang)) " " (new_seal) }
                        InspectionOutcome::ContainerOpened => { (T::ContainerOpened.get(lang)) }
                        InspectionOutcome::DiscrepancyConfirmed => { (T::DiscrepancyConfirmed.get(lang)) }
                        InspectionOutcome::FalseRead => { (T::FalseRead.get(lang)) }
                    }
                    " " (note)
                }
                ActionKind::ManualEntry { value } => { (T::ManualEntry.get(lang)) ": " (seal_or_value(value)) }
            }
        }
    }
}

fn seal_or_value(v: &ReadValue) -> String {
    match v {
        ReadValue::Container { number } => number.to_string(),
        ReadValue::Seal { number } => number.to_string(),
        ReadValue::ESeal { id, .. } => id.to_string(),
        ReadValue::Plate { text } => text.clone(),
        ReadValue::Tag { uri, .. } => uri.clone(),
        ReadValue::Unreadable { what, .. } => what.clone(),
    }
}

/// The page for a transaction this gate's journal does not hold, or for an id that is none:
/// 404, in the officer's language, with the way back to the history.
fn no_transaction(s: &AppState, authed: &Authed, id: &str) -> Response {
    let lang = authed.lang();
    let body = html! {
        h1 { (T::Transaction.get(lang)) }
        p.error { (T::NoSuchTransaction.get(lang)) ": " span.mono { (id) } }
        p { a href="/console/history" { (T::History.get(lang)) } }
    };
    let mut r = page(
        lang,
        T::Transaction.get(lang),
        Some(authed),
        s.gate.as_str(),
        body,
    );
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

/// `GET /console/tx/{id}`: the transaction, or [`no_transaction`].
pub async fn transaction(
    State(s): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
) -> Result<Response, AuthError> {
    authed.require_customs()?;
    let lang = authed.lang();
    let Ok(id) = uuid::Uuid::parse_str(&id) else {
        return Ok(no_transaction(&s, &authed, &id));
    };
    let shared = s.clone();
    let found = blocking(move || {
        let (tx, d, actions) = shared.store.transaction(&id).ok()??;
        let mut declared = std::collections::BTreeMap::new();
        if let Ok(replica) = shared.store.replica_view() {
            use crate::replica::ReplicaView as _;
            for c in tx.containers() {
                if let Some(cons) = replica.consignment_for(&c) {
                    declared.insert(c.to_string(), cons);
                }
            }
        }
        let live = shared.live.get(&tx.lane)?;
        Some((
            LaneView {
                live,
                transaction: Some(tx),
                reading: false,
                decision: d,
                actions,
                declared,
            },
            view::gate_status(&shared),
        ))
    })
    .await?;
    let Some((mut v, st)) = found else {
        return Ok(no_transaction(&s, &authed, &id.to_string()));
    };
    // Show this transaction's own decision, not what the lane shows now.
    v.live.shown = None;
    let actions = v.actions.clone();
    let body = html! {
        h1 { (T::Transaction.get(lang)) " " span.mono { (id) } }
        @if let Some(tx) = &v.transaction {
            p { (T::Lane.get(lang)) " " (tx.lane) " · " (T::Opened.get(lang)) " " (tx.opened_at.strftime("%Y-%m-%d %H:%M:%S")) " · " (T::Closed.get(lang)) " " (hhmmss(tx.closed_at)) }
        }
        (lane_panel(&v, &st, lang))
        h2 { (T::OfficerActions.get(lang)) }
        ul.plain { @for a in &actions { (action_line(a, lang)) } }
    };
    Ok(page(
        lang,
        T::Transaction.get(lang),
        Some(&authed),
        s.gate.as_str(),
        body,
    ))
}

/// The operator's grid: every lane's state, route, queue counts and FAST share, and no
/// reasons.
fn operator_grid(s: &AppState, st: &GateStatus, f: &HourFigures, lang: Lang) -> Markup {
    let lanes = s.live.snapshot();
    html! {
        div #grid {
            p.share { (T::FastShare.get(lang)) ": "
                strong { @match HourFigures::share(f.gate) { Some(p) => { (p) " %" } None => { "—" } } }
                " (" (f.gate.1) ")"
            }
            div.grid {
                @for l in &lanes {
                    @let shown = l.shown.as_ref();
                    @let dec = shown.and_then(|s| s.decision.decided());
                    div.lanecard.(if st.degraded(&l.lane) { "degraded" } else { "" }) data-lane=(l.lane) {
                        h2 { (T::Lane.get(lang)) " " (l.lane) " · " (l.name) }
                        p.state {
                            (T::State.get(lang)) ": "
                            @if l.closed.is_some() { (T::LaneClosed.get(lang)) }
                            @else if l.open.is_some() { (T::TruckInLane.get(lang)) } @else { (T::LaneIdle.get(lang)) }
                        }
                        @if let Some(c) = &l.closed {
                            (closed_block(c, true, false, lang))
                        } @else if shown.is_some_and(|s| s.decision == LaneSignal::Offline) {
                            div.decision.small.d-inspect {
                                (closed_shape())
                                span.word { (T::AgentOffline.get(lang)) }
                            }
                        } @else if let (Some(sh), Some(d)) = (shown, dec) {
                            div.decision.small.(class_of(d)) {
                                (shape(d))
                                span.word { (decision_word(d, lang)) }
                                span.route { (T::Route.get(lang)) ": " (sh.route) }
                                @if sh.priority { span.flag { (T::Priority.get(lang)) } }
                            }
                        }
                        @if st.degraded(&l.lane) {
                            ul.warn {
                                @for d in st.down_for(&l.lane) { li { (T::DeviceDown.get(lang)) ": " (d.device) } }
                                @if st.replica.stale { li { (T::ReplicaStale.get(lang)) } }
                                @if st.central_down { li { (T::CentralDown.get(lang)) ": " (st.backlog) } }
                                @if !st.clock.trusted { li.clock { (clock_line(&st.clock, lang)) } }
                            }
                        } @else {
                            p.ok { (T::Ok.get(lang)) }
                        }
                        h3 { (T::QueueCounts.get(lang)) }
                        table {
                            tbody {
                                @for ((lane, route), n) in &f.per_route {
                                    @if *lane == l.lane { tr { td { (route) } td.num { (n) } } }
                                }
                            }
                        }
                        p.share { (T::FastShare.get(lang)) ": "
                            @match f.per_lane.get(&l.lane).and_then(|x| HourFigures::share(*x)) { Some(p) => { (p) " %" } None => { "—" } }
                        }
                    }
                }
            }
        }
    }
}

async fn render_grid(shared: &AppState, lang: Lang) -> String {
    let s = shared.clone();
    tokio::task::spawn_blocking(move || {
        let st = view::gate_status(&s);
        let f = view::hour_figures(&s);
        operator_grid(&s, &st, &f, lang).into_string()
    })
    .await
    .unwrap_or_default()
}

/// `GET /operator`.
pub async fn operator(State(s): State<AppState>, authed: Authed) -> Result<Response, AuthError> {
    let lang = authed.lang();
    let grid = render_grid(&s, lang).await;
    let body = html! {
        h1 { (T::OperatorView.get(lang)) }
        p #live-status.live-off hidden { (T::LiveOff.get(lang)) }
        div #live data-feed="/operator/events" { (PreEscaped(grid)) }
    };
    Ok(page(
        lang,
        T::OperatorView.get(lang),
        Some(&authed),
        s.gate.as_str(),
        body,
    ))
}

/// `GET /operator/events`: the grid on every lane change and every few seconds.
pub async fn operator_events(
    State(s): State<AppState>,
    authed: Authed,
) -> Result<Response, AuthError> {
    let lang = authed.lang();
    Ok(panel_feed(
        &s,
        |_| true,
        move |shared| async move { render_grid(&shared, lang).await },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::schema::{AeoStatus, ContactPoint, PartyRole, Reason, ReasonCode};

    #[test]
    fn a_lane_showing_offline_renders_closed_and_red_in_every_language() {
        let lane = LaneId::parse("L1").expect("lane");
        let at: Timestamp = "2026-03-01T10:00:00Z".parse().expect("ts");
        let mut shown = protocol::schema::LaneState::waiting(&lane, None, at);
        shown.decision = LaneSignal::Offline;
        let view = LaneView {
            live: crate::live::LaneLive {
                lane: lane.clone(),
                name: "Lane 1".into(),
                open: None,
                last_decision: None,
                shown: Some(shown),
                orphan_reads: 0,
                updated_at: at,
                closed: None,
                refusals: 0,
            },
            transaction: None,
            reading: false,
            decision: None,
            actions: Vec::new(),
            declared: std::collections::BTreeMap::new(),
        };
        let st = GateStatus {
            replica: crate::replica::ReplicaStatus {
                sequence: 1,
                as_of: Some(at),
                last_sync: Some(at),
                age_s: Some(0),
                stale: false,
                clock_ahead: false,
            },
            backlog: 0,
            central_down: false,
            devices: Vec::new(),
            clock: crate::clock::ClockView {
                basis: crate::clock::Basis::Unmeasured,
                trusted: true,
                max_offset: std::time::Duration::from_secs(2),
                host: None,
            },
        };
        for (lang, text) in [
            (Lang::En, "Agent offline: lane closed"),
            (Lang::Es, "Agente fuera de línea: carril cerrado"),
            (Lang::Pt, "Agente fora de linha: faixa fechada"),
        ] {
            let html = lane_panel(&view, &st, lang).into_string();
            assert!(html.contains(text), "{html}");
            assert!(
                html.contains(r#"class="decision d-inspect""#),
                "red: {html}"
            );
            assert!(html.contains(r#"data-decision="""#), "no decision: {html}");
            // Not by colour alone: the closed lane's "no entry" mark beside the words.
            assert!(
                html.contains(r#"<svg class="shape""#) && html.contains("<rect"),
                "shape: {html}"
            );
        }
    }

    #[test]
    fn a_phone_number_becomes_a_tel_uri_of_plus_and_digits() {
        assert_eq!(tel_uri("+49 40 555-0100"), "tel:+49405550100");
        assert_eq!(tel_uri(" (040) 555 01 00 ext. 7"), "tel:04055501007");
        assert_eq!(tel_uri("0800 +1"), "tel:08001");
    }

    #[test]
    fn a_priority_reason_renders_its_parties_as_cards_with_links() {
        let party = PartyView {
            role: PartyRole::Importer,
            operator: None,
            name: "Importer <GmbH>".into(),
            status: Some(AeoStatus::Active),
            security: true,
            mra: None,
            contact_point: Some(ContactPoint {
                name: "Security desk".into(),
                phone: Some("+49 40 000 000".into()),
                email: Some("desk@importer.example".into()),
            }),
        };
        let r = Reason::new(ReasonCode::AeoPriorityInspection).with_party(party);
        let html = reason_item(&r, Lang::Es).into_string();
        assert!(html.contains(r#"class="party-card""#), "{html}");
        assert!(html.contains(r#"href="tel:+4940000000""#), "{html}");
        assert!(
            html.contains(r#"href="mailto:desk@importer.example""#),
            "{html}"
        );
        assert!(html.contains("Punto de contacto aduanero"), "{html}");
        assert!(html.contains("Importer &lt;GmbH&gt;"), "escaped: {html}");
        assert!(
            !html.contains("dl class=\"detail\""),
            "no key=value list: {html}"
        );
    }

    #[test]
    fn reason_details_are_labelled_in_words_in_the_officers_language() {
        let r = Reason::new(ReasonCode::ReplicaStale)
            .with("age_s", 154)
            .with("bound_s", 150)
            .with("unlabelled_key", "x");
        let html = reason_item(&r, Lang::Es).into_string();
        assert!(
            html.contains(r#"<dt data-key="age_s">Antigüedad (s)</dt><dd>154</dd>"#),
            "{html}"
        );
        assert!(html.contains(">Antigüedad admitida (s)</dt>"), "{html}");
        assert!(!html.contains(">age_s<"), "{html}");
        // A key without words is shown as it is rather than dropped.
        assert!(
            html.contains(r#"<dt data-key="unlabelled_key">unlabelled_key</dt>"#),
            "{html}"
        );
    }

    #[test]
    fn a_party_reason_does_not_repeat_the_card_in_its_details() {
        let party = PartyView {
            role: PartyRole::Carrier,
            operator: None,
            name: "Carrier Ltd".into(),
            status: None,
            security: false,
            mra: None,
            contact_point: None,
        };
        let r = Reason::new(ReasonCode::PartyUnknown)
            .with("role", "CARRIER")
            .with("name", "Carrier Ltd")
            .with("operator", "none declared")
            .with_party(party);
        let html = reason_item(&r, Lang::En).into_string();
        assert!(html.contains("not in registry"), "{html}");
        assert!(!html.contains(r#"data-key="role""#), "{html}");
        assert!(!html.contains("none declared"), "{html}");
    }
}
