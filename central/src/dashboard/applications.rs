//! The programme officers' side of the portal: the queue (registrations to confirm,
//! open applications and unanswered required changes, oldest first), a company's file
//! with the actions its status allows, and adding a company.
//!
//! Any staff member works applications; certifying, suspending and reinstating change
//! the registry, so they need the role that may change it
//! ([`crate::model::Role::may_change_registry`]),
//! and certifying needs an official other than the one who validated.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use jiff::Timestamp;
use jiff::civil::Date;
use maud::html;
use protocol::schema::ContactPoint;
use serde::Deserialize;

use super::portal::{
    RegisterForm, application_block, assessment_table, document_response, documents_table,
    findings_table, register_fields, registry_change_block, status_text, thread,
};
use super::portal_text::T as P;
use super::session::{CsrfField, FormPost, UiSession};
use super::{Nav, T, error_page, fmt_duration, fmt_time, internal, layout};
use crate::errors::HttpStatus as _;
use crate::portal::{Company, FindingKind, Status};
use crate::service::{Central, PortalError};

/// A refusal on an officer's page: the rule's words with its status when the error is
/// the person's to fix (a 4xx), a logged internal error otherwise.
fn refused(s: &UiSession, e: &PortalError) -> Response {
    if e.status().is_client_error() {
        error_page(s, e.status(), &e.to_string())
    } else {
        internal(e)
    }
}

/// `GET /applications`: the officers' queue.
pub async fn queue(State(c): State<Central>, s: UiSession) -> Response {
    let l = s.lang;
    let companies = match c.blocking(|c| c.companies()).await {
        Ok(x) => x,
        Err(e) => return internal(&e),
    };
    let now = Timestamp::now();
    let mut pending: Vec<&Company> = companies
        .iter()
        .filter(|c| c.confirmed_by.is_none())
        .collect();
    pending.sort_by_key(|c| c.registered_at);
    let mut open: Vec<&Company> = companies
        .iter()
        .filter(|c| c.status().is_some_and(Status::is_open))
        .collect();
    open.sort_by_key(|c| {
        c.application
            .as_ref()
            .map(crate::portal::Application::since)
    });
    let mut changes: Vec<(&Company, &crate::portal::Finding)> = companies
        .iter()
        .flat_map(|c| {
            c.application
                .iter()
                .flat_map(|a| a.findings.iter().filter(|f| f.is_open()))
                .map(move |f| (c, f))
        })
        .collect();
    changes.sort_by_key(|(_, f)| f.at);
    let members: Vec<&Company> = companies
        .iter()
        .filter(|c| c.status() == Some(Status::Certified))
        .collect();
    let mut by_kind: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for m in &members {
        *by_kind.entry(m.kind.as_str()).or_default() += 1;
    }
    let decided: Vec<jiff::SignedDuration> = companies
        .iter()
        .filter_map(|c| c.application.as_ref())
        .filter_map(|a| {
            let d = a
                .history
                .iter()
                .find(|h| matches!(h.status, Status::Certified | Status::Refused))?;
            Some(d.at.duration_since(a.submitted_at))
        })
        .collect();
    let mean_decision = i32::try_from(decided.len())
        .ok()
        .filter(|n| *n > 0)
        .map(|n| decided.iter().copied().sum::<jiff::SignedDuration>() / n);
    let body = html! {
        section #figures {
            p { (P::Companies.get(l)) ": " (companies.len()) " · " (P::OpenApplications.get(l)) ": " (open.len()) " · " (P::Members.get(l)) ": " (members.len()) }
            @if !by_kind.is_empty() {
                p { (P::MembersByType.get(l)) ": " @for (k, n) in &by_kind { (k) " " (n) " · " } }
            }
            p { (P::TimeToDecision.get(l)) ": " @match mean_decision { Some(d) => { (fmt_duration(d)) " (" (decided.len()) ")" }, None => { "—" } } }
        }
        h2 { (P::PendingRegistrations.get(l)) }
        section #pending {
            @if pending.is_empty() { p.muted { (P::NoneWaiting.get(l)) } }
            @else { table { thead { tr { th { (P::Operator.get(l)) } th { (P::CompanyName.get(l)) } th { (P::OperatorKind.get(l)) } th { (P::Age.get(l)) } th {} } }
                tbody { @for co in &pending { tr data-company=(co.operator) {
                    td { a href={"/applications/" (co.operator)} { (co.operator) } } td { (co.name) } td { (co.kind.as_str()) }
                    td { (fmt_duration(now.duration_since(co.registered_at))) }
                    td { form.inline method="post" action={"/applications/" (co.operator) "/confirm"} {
                        input type="hidden" name="csrf" value=(s.csrf);
                        button.primary { (P::Confirm.get(l)) } } }
                } } } } }
        }
        h2 { (P::OpenApplications.get(l)) }
        section #queue {
            @if open.is_empty() { p.muted { (P::NoneWaiting.get(l)) } }
            @else { table { thead { tr { th { (P::Operator.get(l)) } th { (P::CompanyName.get(l)) } th { (P::Status.get(l)) } th { (P::Since.get(l)) } th { (P::Age.get(l)) } th { (P::Handler.get(l)) } } }
                tbody { @for co in &open { @if let Some(app) = &co.application { tr data-company=(co.operator) {
                    td { a href={"/applications/" (co.operator)} { (co.operator) } } td { (co.name) }
                    td { (status_text(app.status, l)) } td { (fmt_time(app.since())) }
                    td { (fmt_duration(now.duration_since(app.submitted_at))) }
                    td { (app.handler.as_deref().unwrap_or("—")) }
                } } } } } }
        }
        h2 { (P::OpenChanges.get(l)) }
        section #changes {
            @if changes.is_empty() { p.muted { (P::NoneWaiting.get(l)) } }
            @else { table { thead { tr { th { (P::Operator.get(l)) } th { "#" } th { (P::Requirement.get(l)) } th { (P::Deadline.get(l)) } th { (P::Age.get(l)) } } }
                tbody { @for (co, f) in &changes { tr {
                    td { a href={"/applications/" (co.operator)} { (co.operator) } } td { (f.id) } td { (f.requirement) }
                    td { @if let FindingKind::RequiredChange { deadline } = f.kind { (deadline) } }
                    td { (fmt_duration(now.duration_since(f.at))) }
                } } } } }
        }
        h2 { (P::AddCompany.get(l)) }
        section.actions {
            form #add-company method="post" action="/applications" {
                input type="hidden" name="csrf" value=(s.csrf);
                (register_fields(l))
                button.primary { (P::AddCompany.get(l)) }
            }
        }
    };
    layout(&s, Nav::Applications, P::Applications.get(l), body).into_response()
}

/// `POST /applications`: an officer adds a company (confirmed at once).
pub async fn add(FormPost(c, s, (), f): FormPost<UiSession, (), RegisterForm>) -> Response {
    let officer = s.user.clone();
    let r = f.registration();
    match c
        .blocking(move |c| c.register_company(&r, Some(&officer)))
        .await
    {
        Ok(co) => Redirect::to(&format!("/applications/{}", co.operator)).into_response(),
        Err(e) => refused(&s, &e),
    }
}

/// `GET /applications/{operator}`: a company's file and the actions its status allows.
pub async fn file(State(c): State<Central>, s: UiSession, Path(op): Path<String>) -> Response {
    let l = s.lang;
    let key = op.clone();
    let co = match c.blocking(move |c| c.company(&key)).await {
        Ok(Some(co)) => co,
        Ok(None) => return error_page(&s, StatusCode::NOT_FOUND, T::NotFound.get(l)),
        Err(e) => return internal(&e),
    };
    let op = co.operator.clone();
    let (record, changes) = match c
        .blocking(move |c| {
            let r = c.operator(&op)?;
            let ch = c.operator_changes(&op, 20)?;
            Ok::<_, crate::store::StoreError>((r, ch))
        })
        .await
    {
        Ok(x) => x,
        Err(e) => return internal(&e),
    };
    let set = c.requirements();
    let gaps = co.gaps(set);
    let status = co.status();
    let base = format!("/applications/{}", co.operator);
    let admin = s.role.may_change_registry();
    let action = |name: &str, label: P, fields: maud::Markup| {
        html! {
            form method="post" action={(base) "/" (name)} data-action=(name) {
                input type="hidden" name="csrf" value=(s.csrf);
                (fields)
                button.primary { (label.get(l)) }
            }
        }
    };
    let note = html! { label.wide { (P::Note.get(l)) input name="note"; } };
    let body = html! {
        section #company {
            p { (P::Operator.get(l)) ": " strong { a href={"/registry/" (co.operator)} { (co.operator) } } " · " (co.kind.as_str()) }
            p { (P::Users.get(l)) ": " (co.users.join(", ")) " · " (P::RegisteredBy.get(l)) " " (co.registered_by) " " (fmt_time(co.registered_at)) }
            @match &co.confirmed_by {
                Some(by) => p { (P::ConfirmedBy.get(l)) " " (by) },
                None => p.warn { (P::PendingConfirmation.get(l)) },
            }
            p #contact { (P::ContactPoint.get(l)) ": " @match &co.contact_point { Some(cp) => { strong { (cp.name) } }, None => { span.muted { (P::NotAssigned.get(l)) } } } }
        }
        h2 { (P::Application.get(l)) }
        section #application { (registry_change_block(&co, record.as_ref(), &changes, l)) (application_block(&co, l)) }
        section.actions #actions {
            @if co.confirmed_by.is_none() { (action("confirm", P::Confirm, html! {})) }
            @if matches!(status, Some(Status::Submitted | Status::InfoRequested)) { (action("review", P::TakeForReview, html! {})) }
            @if matches!(status, Some(Status::UnderReview | Status::VisitScheduled)) {
                (action("request-info", P::RequestInfo, html! { label.wide { (P::Reason.get(l)) input name="note" required; } }))
            }
            @if status == Some(Status::UnderReview) {
                (action("schedule", P::ScheduleVisit, html! { label { (P::VisitOn.get(l)) input name="date" type="date" required; } }))
            }
            @if status == Some(Status::VisitScheduled) {
                (action("finding", P::AddFinding, html! {
                    label { (P::Requirement.get(l)) select name="requirement" { @for r in set { option value=(r.id) { (r.id) " " (r.title_in(l)) } } } }
                    label { (P::Kind.get(l)) select name="kind" {
                        option value="REQUIRED_CHANGE" { (P::RequiredChange.get(l)) }
                        option value="RECOMMENDATION" { (P::Recommendation.get(l)) } } }
                    label { (P::Deadline.get(l)) input name="deadline" type="date"; }
                    label.wide { (P::Finding.get(l)) input name="text" required; }
                }))
                (action("validate", P::Validate, note.clone()))
            }
            @if matches!(status, Some(Status::Validated | Status::Suspended)) && admin {
                (action("certify", P::Certify, note.clone()))
            }
            @if status == Some(Status::Certified) && admin {
                (action("suspend", P::Suspend, html! { label.wide { (P::Reason.get(l)) input name="note" required; } }))
            }
            @if matches!(status, Some(Status::Certified | Status::Suspended)) && admin {
                (action("revoke", P::Revoke, html! { label.wide { (P::Reason.get(l)) input name="note" required; } }))
            }
            @if status.is_some_and(Status::is_open) {
                (action("refuse", P::Refuse, html! { label.wide { (P::Reason.get(l)) input name="note" required; } }))
            }
            @if !admin && matches!(status, Some(Status::Validated | Status::Certified | Status::Suspended)) {
                p.muted { (P::SecondOfficer.get(l)) }
            }
            (action("contact", P::SetContact, html! {
                label { (P::Name.get(l)) input name="name" required; }
                label { (P::Phone.get(l)) input name="phone"; }
                label { (P::Email.get(l)) input name="email" type="email"; }
            }))
        }
        @if co.application.as_ref().is_some_and(|a| !a.findings.is_empty()) {
            h2 { (P::Findings.get(l)) }
            section #findings { (findings_table(&co, l, None)) }
        }
        h2 { (P::Documents.get(l)) }
        section #documents { (documents_table(&co, l, &format!("{base}/documents"))) }
        h2 { (P::SelfAssessment.get(l)) }
        section #assessment {
            p { (P::Gaps.get(l)) ": " @if gaps.is_empty() { (P::NoGaps.get(l)) } @else { @for r in &gaps { strong { (r.id) } " " } } }
            (assessment_table(set, &co, l, false))
        }
        h2 { (P::Messages.get(l)) }
        section #messages {
            (thread(&co, l))
            (action("message", P::Send, html! { label.wide { (P::NewMessage.get(l)) textarea name="text" rows="3" required {} } }))
        }
    };
    let title = format!("{} · {}", co.name, co.operator);
    layout(&s, Nav::Applications, &title, body).into_response()
}

/// Every officer action's form fields (each action reads the ones it needs).
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    csrf: Option<String>,
    #[serde(default)]
    note: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    date: String,
    #[serde(default)]
    requirement: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    deadline: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    email: String,
}

impl CsrfField for ActionForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

fn date(what: &str, s: &str) -> Result<Date, PortalError> {
    s.trim()
        .parse::<Date>()
        .map_err(|_| PortalError::Refused(format!("{what}: expected a date (YYYY-MM-DD)")))
}

fn optional(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

/// `POST /applications/{operator}/{action}`: one officer action; audited by the store
/// with the officer's name.
pub async fn act(
    FormPost(c, s, Path((op, action)), f): FormPost<UiSession, Path<(String, String)>, ActionForm>,
) -> Response {
    let l = s.lang;
    let registry_change = matches!(action.as_str(), "certify" | "suspend" | "revoke");
    if registry_change && !s.role.may_change_registry() {
        return error_page(&s, StatusCode::FORBIDDEN, T::AdminOnly.get(l));
    }
    let who = s.user.clone();
    let key = op.clone();
    let out = c
        .blocking(move |c| {
            let (k, o) = (key.as_str(), who.as_str());
            match action.as_str() {
                "confirm" => c.confirm_company(k, o),
                "review" => c.move_application(k, Status::UnderReview, &f.note, o),
                "request-info" => c.move_application(k, Status::InfoRequested, &f.note, o),
                "validate" => c.move_application(k, Status::Validated, &f.note, o),
                "refuse" => c.move_application(k, Status::Refused, &f.note, o),
                "schedule" => c.schedule_visit(k, date("the visit", &f.date)?, o),
                "finding" => {
                    let kind = match f.kind.as_str() {
                        "RECOMMENDATION" => FindingKind::Recommendation,
                        "REQUIRED_CHANGE" => FindingKind::RequiredChange {
                            deadline: date("the deadline", &f.deadline)?,
                        },
                        other => {
                            return Err(PortalError::Refused(format!(
                                "finding kind {other:?}: expected REQUIRED_CHANGE or RECOMMENDATION"
                            )));
                        }
                    };
                    c.add_finding(k, &f.requirement, kind, &f.text, o)
                }
                "certify" => c.certify(k, &f.note, o),
                "suspend" => c.suspend_company(k, &f.note, o),
                "revoke" => c.revoke_company(k, &f.note, o),
                "message" => c.post_message(k, &f.text, o, true),
                "contact" => {
                    let cp = ContactPoint {
                        name: f.name.clone(),
                        phone: optional(&f.phone),
                        email: optional(&f.email),
                    };
                    c.set_contact_point(k, cp, o)
                }
                other => Err(PortalError::NotFound(format!("action {other}"))),
            }
        })
        .await;
    match out {
        Ok(co) => Redirect::to(&format!("/applications/{}", co.operator)).into_response(),
        Err(e) => refused(&s, &e),
    }
}

/// `GET /applications/{operator}/documents/{id}`: a company's document, for the programme's
/// officials (any staff session).
pub async fn download_document(
    State(c): State<Central>,
    s: UiSession,
    Path((op, id)): Path<(String, u32)>,
) -> Response {
    match c.blocking(move |c| c.company_document(&op, id)).await {
        Ok((d, body)) => document_response(&d, body),
        Err(e) => refused(&s, &e),
    }
}
