//! The exceptions queue (live), the case page and case actions.
//!
//! The queue page holds a server-rendered table; the script listens to
//! `GET /cases/stream` (Server-Sent Events, one `case` event per new or changed case) and
//! refetches the table body from `GET /cases/rows` with the page's filters, so a new seal
//! exception shows within a second of its ingest without reloading the page.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::{Stream, StreamExt as _};
use jiff::Timestamp;
use maud::{Markup, html};
use protocol::i18n::{Lang, detail_label, reason_text};
use protocol::schema::{
    ActionKind, GateId, InspectionOutcome, LaneDecision, LaneId, Read, ReadValue, ReasonCode,
};
use protocol::seal::SealNumber;
use serde::Deserialize;
use tokio_stream::wrappers::BroadcastStream;

use super::session::{CsrfField, FormPost, UiPage, UiSession};
use super::{Nav, RANGES, T, error_page, fmt_duration, fmt_time, internal, layout, range_start};
use crate::errors::HttpStatus as _;
use crate::model::{Case, CaseAction, CaseDetail, CaseOutcome, CaseQuery, CaseState, CaseSubject};
use crate::service::Central;
use crate::store::StoreError;

/// Rows the queue shows per page.
const PAGE: usize = 100;

/// The queue's filters, parsed from the query string. Unparseable values are reported,
/// not ignored.
#[derive(Debug, Clone, Default)]
struct Filters {
    port: Option<String>,
    gate: Option<GateId>,
    lane: Option<LaneId>,
    reason: Option<ReasonCode>,
    /// `None` = every state.
    state: Option<CaseState>,
    hours: u32,
    cursor: Option<String>,
}

impl Filters {
    fn parse(q: &HashMap<String, String>) -> Result<Self, String> {
        let nonempty = |k: &str| q.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
        Ok(Filters {
            port: nonempty("port").map(str::to_owned),
            gate: nonempty("gate")
                .map(|g| GateId::parse(g).map_err(|e| format!("gate {g:?}: {e}")))
                .transpose()?,
            lane: nonempty("lane")
                .map(|l| LaneId::parse(l).map_err(|e| format!("lane {l:?}: {e}")))
                .transpose()?,
            reason: nonempty("reason")
                .map(|r| {
                    ReasonCode::from_code(&r.to_ascii_uppercase())
                        .ok_or_else(|| format!("reason {r:?} is not a reason code"))
                })
                .transpose()?,
            state: match nonempty("state") {
                None => Some(CaseState::Open),
                Some("all") => None,
                Some(s) => Some(CaseState::parse(s).ok_or_else(|| {
                    format!("state {s:?}: expected open, acknowledged, resolved or all")
                })?),
            },
            hours: super::parse_hours(q.get("hours"), 0),
            cursor: nonempty("cursor").map(str::to_owned),
        })
    }

    /// The filters as a query string (without the cursor).
    fn query_string(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = &self.port {
            parts.push(format!("port={p}"));
        }
        if let Some(g) = &self.gate {
            parts.push(format!("gate={g}"));
        }
        if let Some(l) = &self.lane {
            parts.push(format!("lane={l}"));
        }
        if let Some(r) = self.reason {
            parts.push(format!("reason={}", r.code()));
        }
        parts.push(format!(
            "state={}",
            self.state.map_or("all", |s| match s {
                CaseState::Open => "open",
                CaseState::Acknowledged => "acknowledged",
                CaseState::Resolved => "resolved",
            })
        ));
        if self.hours > 0 {
            parts.push(format!("hours={}", self.hours));
        }
        parts.join("&")
    }
}

fn state_text(s: CaseState, l: Lang) -> &'static str {
    match s {
        CaseState::Open => T::StateOpen.get(l),
        CaseState::Acknowledged => T::StateAcknowledged.get(l),
        CaseState::Resolved => T::StateResolved.get(l),
    }
}

fn state_class(s: CaseState) -> &'static str {
    match s {
        CaseState::Open => "badge open",
        CaseState::Acknowledged => "badge ack",
        CaseState::Resolved => "badge resolved",
    }
}

fn subject_text(c: &Case, l: Lang) -> Markup {
    match &c.subject {
        CaseSubject::SealException { reasons, .. } => html! {
            @for (i, r) in reasons.iter().enumerate() {
                @if i > 0 { "; " }
                span title=(r.code()) { (reason_text(*r, l)) }
            }
        },
        CaseSubject::Integrity { kind, .. } => html! {
            span.integrity { (T::IntegrityAlert.get(l)) ": " (kind.as_str()) }
        },
    }
}

/// Cases matching the filters, one page, and the gates of each port.
/// One page of cases, the next cursor, and every (port, gate).
type Loaded = (Vec<Case>, Option<String>, Vec<(String, GateId)>);

fn load(c: &Central, f: &Filters) -> Result<Loaded, StoreError> {
    let now = Timestamp::now();
    let gates: Vec<(String, GateId)> = c.gate_ports()?;
    let page = c.cases(&CaseQuery {
        state: f.state,
        gate: f.gate.clone(),
        lane: f.lane.clone(),
        reason: f.reason,
        from: range_start(f.hours, now),
        to: None,
        cursor: f.cursor.clone(),
        limit: PAGE,
    })?;
    let items = match &f.port {
        None => page.items,
        Some(p) => page
            .items
            .into_iter()
            .filter(|case| gates.iter().any(|(port, g)| port == p && *g == case.gate))
            .collect(),
    };
    Ok((items, page.next_cursor, gates))
}

fn rows_markup(cases: &[Case], l: Lang) -> Markup {
    html! {
        @if cases.is_empty() {
            tr.empty { td colspan="7" { (T::NoCases.get(l)) } }
        }
        @for c in cases {
            tr data-case=(c.id) class=(if c.state == CaseState::Open { "case open" } else { "case" }) {
                td { a href={"/cases/" (c.id)} { "#" (c.id) } }
                td { (fmt_time(c.opened_at)) }
                td { (c.gate) @if let Some(lane) = &c.lane { " / " (lane) } }
                td.subject { (subject_text(c, l)) }
                td { span class=(state_class(c.state)) { (state_text(c.state, l)) } }
                td { (c.assignee.as_deref().unwrap_or("—")) }
                td { a.button href={"/cases/" (c.id)} { (T::Case.get(l)) " →" } }
            }
        }
    }
}

/// `GET /cases`: the exceptions queue with its filters.
pub async fn queue(p: UiPage) -> Response {
    let (c, s, q) = (p.central, p.session, p.query);
    let l = s.lang;
    let f = match Filters::parse(&q) {
        Ok(f) => f,
        Err(e) => return error_page(&s, StatusCode::BAD_REQUEST, &e),
    };
    let f2 = f.clone();
    let (cases, next, gates) = match c.blocking(move |c| load(c, &f2)).await {
        Ok(x) => x,
        Err(e) => return internal(&e),
    };
    let ports: BTreeSet<&str> = gates.iter().map(|(p, _)| p.as_str()).collect();
    let qs = f.query_string();
    let body = html! {
        form.filters method="get" action="/cases" {
            label { (T::Port.get(l)) select name="port" {
                option value="" { (T::Any.get(l)) }
                @for p in &ports { option value=(p) selected[f.port.as_deref() == Some(*p)] { (p) } }
            } }
            label { (T::Gate.get(l)) select name="gate" {
                option value="" { (T::Any.get(l)) }
                @for (_, g) in &gates { option value=(g) selected[f.gate.as_ref() == Some(g)] { (g) } }
            } }
            label { (T::Lane.get(l)) input name="lane" size="4" value=(f.lane.as_ref().map(LaneId::as_str).unwrap_or("")); }
            label { (T::Reason.get(l)) select name="reason" {
                option value="" { (T::Any.get(l)) }
                @for r in EXCEPTION_REASONS {
                    option value=(r.code()) selected[f.reason == Some(*r)] { (reason_text(*r, l)) }
                }
            } }
            label { (T::State.get(l)) select name="state" {
                @for (v, st) in [("open", Some(CaseState::Open)), ("acknowledged", Some(CaseState::Acknowledged)), ("resolved", Some(CaseState::Resolved)), ("all", None)] {
                    option value=(v) selected[f.state == st] {
                        @if let Some(st) = st { (state_text(st, l)) } @else { (T::Any.get(l)) }
                    }
                }
            } }
            label { (T::Since.get(l)) select name="hours" {
                @for (h, t) in RANGES { option value=(h) selected[f.hours == h] { (t.get(l)) } }
            } }
            button { (T::Filter.get(l)) }
        }
        p.live { span.dot {} (T::Live.get(l)) }
        table.cases {
            thead { tr {
                th { "#" } th { (T::Opened.get(l)) } th { (T::Gate.get(l)) " / " (T::Lane.get(l)) }
                th { (T::Subject.get(l)) } th { (T::State.get(l)) } th { (T::Assignee.get(l)) } th {}
            } }
            tbody #case-rows data-live-src={"/cases/rows?" (qs)} data-live-stream="/cases/stream" {
                (rows_markup(&cases, l))
            }
        }
        @if let Some(n) = next {
            p { a href={"/cases?" (qs) "&cursor=" (n)} { (T::Older.get(l)) " →" } }
        }
    };
    layout(&s, Nav::Exceptions, T::Exceptions.get(l), body).into_response()
}

/// Reason codes that open cases (the seal and container exceptions).
const EXCEPTION_REASONS: &[ReasonCode] = &[
    ReasonCode::SealMismatch,
    ReasonCode::SealMissing,
    ReasonCode::ESealOpened,
    ReasonCode::ESealTampered,
    ReasonCode::ContainerMismatch,
    ReasonCode::ContainerReadConflict,
];

/// `GET /cases/rows`: the queue's table body, for the live refresh.
pub async fn rows(p: UiPage) -> Response {
    let (c, s, q) = (p.central, p.session, p.query);
    let f = match Filters::parse(&q) {
        Ok(f) => Filters { cursor: None, ..f },
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    match c.blocking(move |c| load(c, &f)).await {
        Ok((cases, _, _)) => rows_markup(&cases, s.lang).into_response(),
        Err(e) => internal(&e),
    }
}

/// `GET /cases/stream`: one `case` event (`{"id", "state"}`) per new or changed case;
/// `resync` when this client fell behind. Ends at shutdown.
pub async fn stream(
    State(c): State<Central>,
    _s: UiSession,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = BroadcastStream::new(c.subscribe_cases())
        .map(|m| {
            Ok(match m {
                Ok(case) => Event::default().event("case").data(
                    serde_json::json!({ "id": case.id, "state": case.state.as_str() }).to_string(),
                ),
                Err(_lagged) => Event::default().event("resync").data(""),
            })
        })
        .take_until(c.stop_token().clone().cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::default())
}

fn decision_class(d: LaneDecision) -> &'static str {
    match d {
        LaneDecision::Fast => "decision fast",
        LaneDecision::Standard => "decision standard",
        LaneDecision::Inspect => "decision inspect",
    }
}

fn read_value(r: &Read) -> Markup {
    match &r.value {
        ReadValue::Container { number } => {
            html! { (T::Container.get(Lang::En).to_lowercase()) " " strong { (number) } }
        }
        ReadValue::Tag { uri, .. } => html! { "tag " code { (uri) } },
        ReadValue::Seal { number } => html! { "seal " strong { (number) } },
        ReadValue::ESeal {
            id,
            state,
            battery_pct,
        } => html! {
            "e-seal " strong { (id) } " " (format!("{state:?}").to_uppercase())
            @if let Some(b) = battery_pct { " · " (b) " %" }
        },
        ReadValue::Plate { text } => html! { "plate " strong { (text) } },
        ReadValue::Unreadable { what, error } => html! { span.error { (what) ": " (error) } },
    }
}

fn outcome_text(o: &CaseOutcome, l: Lang) -> String {
    match o {
        CaseOutcome::SealVerifiedIntact => T::OutcomeIntact.get(l).to_owned(),
        CaseOutcome::SealReplaced { new_seal } => {
            format!("{}: {new_seal}", T::OutcomeReplaced.get(l))
        }
        CaseOutcome::DiscrepancyConfirmed => T::OutcomeDiscrepancy.get(l).to_owned(),
        CaseOutcome::FalseRead => T::OutcomeFalseRead.get(l).to_owned(),
    }
}

fn inspection_text(o: &InspectionOutcome) -> String {
    match o {
        InspectionOutcome::SealIntact => "SEAL_INTACT".into(),
        InspectionOutcome::SealReplaced { new_seal } => format!("SEAL_REPLACED → {new_seal}"),
        InspectionOutcome::ContainerOpened => "CONTAINER_OPENED".into(),
        InspectionOutcome::DiscrepancyConfirmed => "DISCREPANCY_CONFIRMED".into(),
        InspectionOutcome::FalseRead => "FALSE_READ".into(),
    }
}

fn case_markup(s: &UiSession, d: &CaseDetail, users: &[String], error: Option<&str>) -> Markup {
    let l = s.lang;
    let c = &d.case;
    html! {
        @if let Some(e) = error { p.error role="alert" { (e) } }
        p.casehead {
            span class=(state_class(c.state)) #case-state { (state_text(c.state, l)) }
            " " (c.gate) @if let Some(lane) = &c.lane { " / " (T::Lane.get(l)) " " (lane) }
            " · " (T::Opened.get(l)) " " (fmt_time(c.opened_at))
            @if let Some(a) = &c.assignee { " · " (T::Assignee.get(l)) ": " strong #case-assignee { (a) } }
            @if let Some(o) = &c.outcome { " · " (T::Outcome.get(l)) ": " strong #case-outcome { (outcome_text(o, l)) } }
        }
        @if let Some(dec) = &d.decision {
            section {
                div class=(decision_class(dec.decision)) { (dec.decision.as_str()) }
                p { (T::Route.get(l)) ": " (dec.route) }
                h2 { (T::Reasons.get(l)) }
                ul.reasons {
                    @for r in &dec.reasons {
                        li {
                            strong { (reason_text(r.code, l)) } " " code { (r.code.code()) }
                            @if !r.detail.is_empty() {
                                br; small { @for (k, v) in &r.detail { (detail_label(k, l).unwrap_or(k)) ": " (v) "  " } }
                            }
                            // The customs contact points of the parties (AEO priority inspection).
                            @for p in r.parties.iter().filter(|p| p.contact_point.is_some()) {
                                @if let Some(cp) = &p.contact_point {
                                    br; small.contact {
                                        (p.role.as_str()) " " @if let Some(o) = &p.operator { (o) } ": " (cp.name)
                                        @if let Some(ph) = &cp.phone { " · " a href=(format!("tel:{}", ph.chars().filter(|c| c.is_ascii_digit() || *c == '+').collect::<String>())) { (ph) } }
                                        @if let Some(em) = &cp.email { " · " a href=(format!("mailto:{em}")) { (em) } }
                                    }
                                }
                            }
                        }
                    }
                }
                p.small { (T::Replica.get(l)) ": seq " (dec.replica.sequence)
                    @if let Some(a) = dec.replica.age_s { ", " (T::Age.get(l)) " " (fmt_duration(jiff::SignedDuration::from_secs(i64::try_from(a).unwrap_or(i64::MAX)))) }
                    @if dec.replica.stale { " — " strong.error { "REPLICA_STALE" } }
                }
                h2 { (T::Parties.get(l)) }
                table { thead { tr { th { (T::Role.get(l)) } th { (T::Operator.get(l)) } th { (T::Name.get(l)) } th { (T::Status.get(l)) } th { (T::Security.get(l)) } th { (T::Mra.get(l)) } } }
                    tbody { @for p in &dec.parties { tr {
                        td { (p.role.as_str()) }
                        td { @if let Some(o) = &p.operator { a href={"/registry/" (o)} { (o) } } @else { "—" } }
                        td { (p.name) }
                        td { (p.status.map_or("—", |st| st.as_str())) }
                        td { (if p.security { "✓" } else { "—" }) }
                        td { (p.mra.as_deref().unwrap_or("—")) }
                    } } }
                }
            }
        }
        @if let Some(t) = &d.transaction {
            section {
                h2 { (T::Transaction.get(l)) }
                p { code { (t.id) } " · " (T::Opened.get(l)) " " (fmt_time(t.opened_at)) " · " (T::Closed.get(l)) " " (fmt_time(t.closed_at))
                    " · " (T::TimeAtGate.get(l)) " " (fmt_duration(t.closed_at.duration_since(t.opened_at))) " · " (format!("{:?}", t.close_reason).to_uppercase()) }
                h2 { (T::Reads.get(l)) }
                table.reads { thead { tr { th { (T::Source.get(l)) } th { (T::Device.get(l)) } th { (T::Value.get(l)) } th { (T::Raw.get(l)) } th { (T::Count.get(l)) } th { (T::When.get(l)) } th { (T::EnteredBy.get(l)) } } }
                    tbody { @for r in &t.reads { tr {
                        td { span.src { (format!("{:?}", r.source).to_uppercase()) } }
                        td { (r.device) }
                        td { (read_value(r)) }
                        td { code { (r.raw) } }
                        td { (r.count) }
                        td { (fmt_time(r.first_at)) }
                        td { (r.entered_by.as_deref().unwrap_or("")) }
                    } } }
                }
            }
        }
        @if !d.declared.is_empty() {
            section {
                h2 { (T::Declared.get(l)) }
                @for k in &d.declared {
                    h3 { (T::Consignment.get(l)) " " (k.id) }
                    table { thead { tr { th { (T::Container.get(l)) } th { (T::Seals.get(l)) } th { (T::ESeals.get(l)) } } }
                        tbody { @for dc in &k.containers { tr {
                            td { (dc.number) }
                            td { @for (i, sn) in dc.seals.iter().enumerate() { @if i > 0 { ", " } (sn) } }
                            td { @for (i, e) in dc.eseals.iter().enumerate() { @if i > 0 { ", " } (e) } }
                        } } }
                    }
                    ul { @for p in &k.parties { li { (p.role.as_str()) ": " (p.name) @if let Some(o) = &p.operator { " (" a href={"/registry/" (o)} { (o) } ")" } } } }
                    @if !k.holds.is_empty() {
                        p { (T::Holds.get(l)) ": " @for h in &k.holds { (format!("{:?}", h.kind)) " " (h.reference) " " (h.note) "; " } }
                    }
                }
            }
        }
        @if let Some(a) = &d.alert {
            section { h2 { (T::Alert.get(l)) " " (a.kind.as_str()) }
                p { (a.gate) " seq " (a.seq) " · " (fmt_time(a.at)) } p { code { (a.detail) } } }
        }
        @if c.transaction_id().is_some() {
            section {
                h2 { (T::OfficerResults.get(l)) }
                @if d.officer_results.is_empty() { p.muted { (T::NoOfficerResult.get(l)) } }
                @for a in &d.officer_results {
                    @if let ActionKind::InspectionResult { result, note } = &a.kind {
                        p.officer { strong { (inspection_text(result)) } " — " (a.officer) " (" (a.role) "), " (fmt_time(a.at)) @if !note.is_empty() { ": " (note) } }
                    }
                }
            }
            // Overrides the gate journaled against this transaction from its own lane
            // (another lane's are refused at ingest, FOREIGN_LANE).
            @if !d.overrides.is_empty() {
                section #case-overrides {
                    h2 { (T::Overrides.get(l)) }
                    @for a in &d.overrides {
                        @if let ActionKind::Override { to, reason, note } = &a.kind {
                            p.officer { (T::OverrideTo.get(l)) " " strong { (to.as_str()) } " — " (reason) @if !note.is_empty() { ": " (note) } " — " (a.officer) " (" (a.role) "), " (a.lane) ", " (fmt_time(a.at)) }
                        }
                    }
                }
            }
        }
        section {
            h2 { (T::History.get(l)) }
            table.history { thead { tr { th { (T::When.get(l)) } th { (T::Who.get(l)) } th { (T::What.get(l)) } } }
                tbody { @for h in &c.history { tr { td { (fmt_time(h.at)) } td.actor { (h.actor) } td { (h.what) } } } }
            }
        }
        @if c.state == CaseState::Resolved {
            p.muted { (T::CaseResolved.get(l)) }
        } @else {
            section.actions {
                @if c.state == CaseState::Open {
                    form method="post" action={"/cases/" (c.id) "/acknowledge"} {
                        input type="hidden" name="csrf" value=(s.csrf);
                        label { (T::Note.get(l)) input name="note"; }
                        button #do-acknowledge { (T::Acknowledge.get(l)) }
                    }
                }
                form method="post" action={"/cases/" (c.id) "/assign"} {
                    input type="hidden" name="csrf" value=(s.csrf);
                    label { (T::Assignee.get(l)) select name="assignee" {
                        @for u in users { option value=(u) selected[c.assignee.as_deref() == Some(u.as_str())] { (u) } }
                    } }
                    label { (T::Note.get(l)) input name="note"; }
                    button #do-assign { (T::Assign.get(l)) }
                }
                form method="post" action={"/cases/" (c.id) "/resolve"} {
                    input type="hidden" name="csrf" value=(s.csrf);
                    label { (T::Outcome.get(l)) select name="outcome" #outcome required {
                        option value="" { "—" }
                        option value="SEAL_VERIFIED_INTACT" { (T::OutcomeIntact.get(l)) }
                        option value="SEAL_REPLACED" { (T::OutcomeReplaced.get(l)) }
                        option value="DISCREPANCY_CONFIRMED" { (T::OutcomeDiscrepancy.get(l)) }
                        option value="FALSE_READ" { (T::OutcomeFalseRead.get(l)) }
                    } }
                    label { (T::NewSeal.get(l)) input name="new_seal" #new-seal autocomplete="off"; }
                    label.wide { (T::Note.get(l)) textarea name="note" rows="2" {} }
                    button.primary #do-resolve { (T::Resolve.get(l)) }
                }
            }
        }
    }
}

async fn render_case(
    c: &Central,
    s: &UiSession,
    id: u64,
    error: Option<(StatusCode, String)>,
) -> Response {
    let l = s.lang;
    let out = c
        .blocking(move |c| {
            let d = c.case_detail(id)?;
            let users = c.users()?.into_iter().map(|u| u.name).collect::<Vec<_>>();
            Ok::<_, crate::auth::AuthError>((d, users))
        })
        .await;
    match out {
        Err(e) => internal(&e),
        Ok((None, _)) => error_page(s, StatusCode::NOT_FOUND, T::NotFound.get(l)),
        Ok((Some(d), users)) => {
            let title = format!("{} #{}", T::Case.get(l), d.case.id);
            let (status, msg) = match error {
                Some((st, m)) => (st, Some(m)),
                None => (StatusCode::OK, None),
            };
            (
                status,
                layout(
                    s,
                    Nav::Exceptions,
                    &title,
                    case_markup(s, &d, &users, msg.as_deref()),
                ),
            )
                .into_response()
        }
    }
}

fn parse_id(id: &str) -> Option<u64> {
    id.parse().ok()
}

/// `GET /cases/{id}`.
pub async fn page(State(c): State<Central>, s: UiSession, Path(id): Path<String>) -> Response {
    match parse_id(&id) {
        Some(id) => render_case(&c, &s, id, None).await,
        None => error_page(&s, StatusCode::NOT_FOUND, T::NotFound.get(s.lang)),
    }
}

/// The case action form.
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    csrf: Option<String>,
    note: Option<String>,
    assignee: Option<String>,
    outcome: Option<String>,
    new_seal: Option<String>,
}

impl CsrfField for ActionForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

/// Parses a case action from the form; the error says what to fix.
fn parse_action(
    action: &str,
    f: &ActionForm,
    known_users: &[String],
) -> Result<CaseAction, String> {
    let note = f
        .note
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    match action {
        "acknowledge" => Ok(CaseAction::Acknowledge { note }),
        "assign" => {
            let a = f.assignee.as_deref().map(str::trim).unwrap_or_default();
            if !known_users.iter().any(|u| u == a) {
                return Err(format!("assignee {a:?} is not a staff user"));
            }
            Ok(CaseAction::Assign {
                assignee: a.to_owned(),
                note,
            })
        }
        "resolve" => {
            let outcome = match f.outcome.as_deref().unwrap_or_default() {
                "SEAL_VERIFIED_INTACT" => CaseOutcome::SealVerifiedIntact,
                "SEAL_REPLACED" => {
                    let raw = f.new_seal.as_deref().unwrap_or_default().trim();
                    if raw.is_empty() {
                        return Err("a replaced seal needs the new seal number".into());
                    }
                    let new_seal = SealNumber::parse(raw)
                        .map_err(|e| format!("new seal number {raw:?}: {e}"))?;
                    CaseOutcome::SealReplaced { new_seal }
                }
                "DISCREPANCY_CONFIRMED" => CaseOutcome::DiscrepancyConfirmed,
                "FALSE_READ" => CaseOutcome::FalseRead,
                "" => return Err("choose an outcome".into()),
                o => return Err(format!("outcome {o:?} is not one of the offered outcomes")),
            };
            Ok(CaseAction::Resolve { outcome, note })
        }
        other => Err(format!("unknown case action {other:?}")),
    }
}

/// `POST /cases/{id}/{acknowledge|assign|resolve}`: applies the action (audited by the
/// store), publishes the changed case, and returns to the case page.
pub async fn act(
    FormPost(c, s, Path((id, action)), f): FormPost<UiSession, Path<(String, String)>, ActionForm>,
) -> Response {
    let Some(id) = parse_id(&id) else {
        return error_page(&s, StatusCode::NOT_FOUND, T::NotFound.get(s.lang));
    };
    let users = match c.blocking(|c| c.users()).await {
        Ok(u) => u.into_iter().map(|u| u.name).collect::<Vec<_>>(),
        Err(e) => return internal(&e),
    };
    let action = match parse_action(&action, &f, &users) {
        Ok(a) => a,
        Err(msg) => {
            return render_case(&c, &s, id, Some((StatusCode::UNPROCESSABLE_ENTITY, msg))).await;
        }
    };
    let user = s.user.clone();
    let out = c.blocking(move |c| c.act_on_case(id, &action, &user)).await;
    match out {
        Ok(_) => Redirect::to(&format!("/cases/{id}")).into_response(),
        Err(e) => {
            let status = e.status();
            if status.is_server_error() {
                internal(&e)
            } else {
                render_case(&c, &s, id, Some((status, e.to_string()))).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_page_lists_the_overrides_made_at_the_gate_in_every_language() {
        use protocol::schema::{GateId, LaneId, OfficerAction};
        let txn = uuid::Uuid::now_v7();
        let gate = GateId::parse("G1").expect("gate");
        let case = Case {
            id: 4,
            state: CaseState::Open,
            subject: CaseSubject::SealException {
                transaction_id: txn,
                reasons: Vec::new(),
            },
            gate: gate.clone(),
            lane: None,
            opened_at: Timestamp::UNIX_EPOCH,
            updated_at: Timestamp::UNIX_EPOCH,
            assignee: None,
            outcome: None,
            notes: Vec::new(),
            history: Vec::new(),
        };
        let action = OfficerAction {
            v: 1,
            id: uuid::Uuid::now_v7(),
            transaction_id: Some(txn),
            gate,
            lane: LaneId::parse("L2").expect("lane"),
            officer: "ana".into(),
            role: "officer".into(),
            at: Timestamp::UNIX_EPOCH,
            kind: ActionKind::Override {
                to: LaneDecision::Inspect,
                reason: "seal looks tampered".into(),
                note: String::new(),
            },
        };
        let mut d = CaseDetail::of(case);
        for (lang, heading) in [
            (Lang::En, "Lane overrides at the gate"),
            (Lang::Es, "Cambios de carril en la puerta"),
            (Lang::Pt, "Alterações de faixa no portão"),
        ] {
            let s = UiSession {
                token: String::new(),
                user: "bea".into(),
                role: crate::model::Role::Analyst,
                lang,
                csrf: String::new(),
            };
            d.overrides.clear();
            let none = case_markup(&s, &d, &[], None).into_string();
            assert!(
                !none.contains("case-overrides"),
                "no section without overrides"
            );
            d.overrides.push(action.clone());
            let page = case_markup(&s, &d, &[], None).into_string();
            assert!(page.contains("case-overrides"), "{page}");
            assert!(page.contains(heading), "{lang:?}: {page}");
            for part in ["INSPECT", "seal looks tampered", "ana", "L2"] {
                assert!(page.contains(part), "{part} missing: {page}");
            }
        }
    }

    fn form(outcome: &str, seal: &str) -> ActionForm {
        ActionForm {
            csrf: None,
            note: Some("  checked at bay 3 ".into()),
            assignee: Some("bea".into()),
            outcome: Some(outcome.into()),
            new_seal: Some(seal.into()),
        }
    }

    #[test]
    fn replaced_seal_needs_a_valid_new_number() {
        let users = vec!["bea".to_owned()];
        assert!(parse_action("resolve", &form("SEAL_REPLACED", ""), &users).is_err());
        let ok = parse_action("resolve", &form("SEAL_REPLACED", "EU1234567"), &users)
            .expect("valid seal");
        assert!(
            matches!(ok, CaseAction::Resolve { outcome: CaseOutcome::SealReplaced { .. }, note: Some(n) } if n == "checked at bay 3")
        );
        assert!(parse_action("resolve", &form("", ""), &users).is_err());
        assert!(parse_action("resolve", &form("BURN_IT", ""), &users).is_err());
    }

    #[test]
    fn assign_only_to_known_staff() {
        assert!(parse_action("assign", &form("", ""), &["bea".to_owned()]).is_ok());
        assert!(parse_action("assign", &form("", ""), &["ana".to_owned()]).is_err());
        assert!(parse_action("delete", &form("", ""), &[]).is_err());
    }

    #[test]
    fn filters_default_to_open_cases_and_reject_bad_values() {
        let f = Filters::parse(&HashMap::new()).expect("empty");
        assert_eq!(f.state, Some(CaseState::Open));
        let mut q = HashMap::new();
        q.insert("state".to_owned(), "all".to_owned());
        q.insert("reason".to_owned(), "seal_mismatch".to_owned());
        let f = Filters::parse(&q).expect("parsed");
        assert_eq!((f.state, f.reason), (None, Some(ReasonCode::SealMismatch)));
        q.insert("reason".to_owned(), "NOPE".to_owned());
        assert!(Filters::parse(&q).is_err());
    }
}
