//! Registry pages: search an operator by id or name, see its record and status history
//! from the change log, and (admins only) suspend, reinstate or revoke it with a reason.
//! Each change shows which gates have applied it: a gate has applied change `seq` when
//! its last heartbeat reports a replica sequence at or beyond `seq` (operator changes go
//! to every port).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use jiff::Timestamp;
use maud::{Markup, html};
use protocol::operator::OperatorId;
use protocol::schema::{AeoStatus, Change};
use serde::Deserialize;

use super::session::{CsrfField, FormPost, UiPage, UiSession};
use super::{Nav, T, error_page, fmt_time, internal, layout};
use crate::registry::RegistryError;
use crate::service::Central;
use crate::store::{LoggedChange, StoreError};

/// Most search results shown.
const MAX_RESULTS: usize = 50;
/// Most history entries shown per operator.
const MAX_HISTORY: usize = 200;

/// `GET /registry?q=`.
pub async fn search(p: UiPage) -> Response {
    let (c, s, q) = (p.central, p.session, p.query);
    let l = s.lang;
    let text = q.get("q").map(|t| t.trim().to_owned()).unwrap_or_default();
    let t2 = text.clone();
    let out = c
        .blocking(move |c| c.search_operators(&t2, MAX_RESULTS))
        .await;
    let found = match out {
        Ok(f) => f,
        Err(e) => return internal(&e),
    };
    let body = html! {
        form.filters method="get" action="/registry" {
            label { (T::Search.get(l)) input name="q" value=(text) placeholder=(T::SearchHint.get(l)) autofocus; }
            button { (T::Search.get(l)) }
        }
        @if !text.is_empty() && found.is_empty() { p.muted { (T::NoOperators.get(l)) } }
        @if !found.is_empty() {
            table.operators { thead { tr { th { (T::Operator.get(l)) } th { (T::Name.get(l)) } th { (T::Status.get(l)) } th { (T::Authorisations.get(l)) } } }
                tbody { @for r in &found { tr {
                    td { a href={"/registry/" (r.operator)} { (r.operator) } }
                    td { (r.name) }
                    td { span class={"status " (r.status.as_str())} { (r.status.as_str()) } }
                    td { @for a in &r.authorisations { (format!("{a:?}").to_uppercase()) " " } }
                } } }
            }
        }
    };
    layout(&s, Nav::Registry, T::Registry.get(l), body).into_response()
}

fn change_text(ch: &LoggedChange) -> Markup {
    match &ch.change {
        Change::UpsertOperator { record } => {
            html! { (T::Imported.get(protocol::i18n::Lang::En).to_lowercase()) ": " (record.status.as_str()) " (" (record.source) ")" }
        }
        Change::SetStatus { status, reason, .. } => {
            html! { strong { (status.as_str()) } " — " (reason) }
        }
        _ => html! {},
    }
}

async fn render(
    c: &Central,
    s: &UiSession,
    raw: &str,
    error: Option<(StatusCode, String)>,
) -> Response {
    let l = s.lang;
    let id = match OperatorId::parse(raw) {
        Ok(id) => id,
        Err(e) => return error_page(s, StatusCode::NOT_FOUND, &format!("operator {raw:?}: {e}")),
    };
    let id2 = id.clone();
    let out = c
        .blocking(move |c| {
            let rec = c.operator(&id2)?;
            let history = c.operator_changes(&id2, MAX_HISTORY)?;
            let gates = c.gates(Timestamp::now())?;
            Ok::<_, StoreError>((rec, history, gates))
        })
        .await;
    let (rec, history, gates) = match out {
        Ok(x) => x,
        Err(e) => return internal(&e),
    };
    let Some(r) = rec else {
        return error_page(s, StatusCode::NOT_FOUND, T::NotFound.get(l));
    };
    let replica = |g: &crate::model::GateStatus| {
        g.last_heartbeat
            .as_ref()
            .map_or(0, |h| h.heartbeat.replica_seq)
    };
    let body = html! {
        @if let Some((_, e)) = &error { p.error role="alert" { (e) } }
        dl.record {
            dt { (T::Name.get(l)) } dd { (r.name) }
            dt { (T::Programme.get(l)) } dd { (id.programme().name()) " (" (id.programme().code()) ")" }
            dt { (T::Status.get(l)) } dd { span #op-status class={"status " (r.status.as_str())} { (r.status.as_str()) } " · " (T::Since.get(l)) " " (fmt_time(r.status_since)) }
            dt { (T::Authorisations.get(l)) } dd { @for a in &r.authorisations { (format!("{a:?}").to_uppercase()) " " } }
            dt { (T::ValidFrom.get(l)) } dd { (fmt_time(r.valid_from)) }
            dt { (T::ValidTo.get(l)) } dd { (r.valid_to.map(fmt_time).unwrap_or_else(|| "—".into())) }
            dt { (T::Role.get(l)) } dd { @for ro in &r.roles { (ro.as_str()) " " } }
            @if let Some(cp) = &r.contact_point { dt { "Contact" } dd { (cp.name) @if let Some(p) = &cp.phone { " · " (p) } @if let Some(e) = &cp.email { " · " (e) } } }
        }
        h2 { (T::StatusHistory.get(l)) }
        table.history #status-history { thead { tr { th { (T::Seq.get(l)) } th { (T::When.get(l)) } th { (T::Who.get(l)) } th { (T::Change.get(l)) } th { (T::AppliedAt.get(l)) } } }
            tbody { @for ch in history.iter().rev() {
                @let applied: Vec<&str> = gates.iter().filter(|g| replica(g) >= ch.seq).map(|g| g.gate.as_str()).collect();
                tr {
                    td { (ch.seq) } td { (fmt_time(ch.at)) } td.actor { (ch.actor) } td { (change_text(ch)) }
                    td.applied { (applied.len()) " / " (gates.len())
                        @for g in &gates {
                            @let yes = replica(g) >= ch.seq;
                            " " span class=(if yes { "gate-yes" } else { "gate-no" }) {
                                span aria-hidden="true" { (if yes { "✓ " } else { "✗ " }) } (g.gate)
                                span.sr { " " (if yes { T::GateApplied.get(l) } else { T::GatePending.get(l) }) }
                            }
                        } }
                }
            } }
        }
        h2 { (T::ChangeStatus.get(l)) }
        @if s.role.may_change_registry() {
            form.status method="post" action={"/registry/" (id) "/status"} {
                input type="hidden" name="csrf" value=(s.csrf);
                label { (T::Status.get(l)) select name="status" #new-status {
                    option value="SUSPENDED" { (T::Suspend.get(l)) }
                    option value="ACTIVE" { (T::Reinstate.get(l)) }
                    option value="REVOKED" { (T::Revoke.get(l)) }
                } }
                label.wide { (T::Reason.get(l)) input name="reason" #status-reason required; }
                button.primary #do-status { (T::ChangeStatus.get(l)) }
            }
        } @else {
            p.muted #admin-only { (T::AdminOnly.get(l)) }
        }
    };
    let title = format!("{} {}", T::Operator.get(l), id);
    let status = error.map_or(StatusCode::OK, |(st, _)| st);
    (status, layout(s, Nav::Registry, &title, body)).into_response()
}

/// `GET /registry/{operator}`.
pub async fn operator(State(c): State<Central>, s: UiSession, Path(op): Path<String>) -> Response {
    render(&c, &s, &op, None).await
}

/// The status change form.
#[derive(Debug, Deserialize)]
pub struct StatusForm {
    csrf: Option<String>,
    status: String,
    reason: Option<String>,
}

impl CsrfField for StatusForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

/// The statuses staff may set from the dashboard.
fn parse_status(s: &str) -> Option<AeoStatus> {
    match s {
        "SUSPENDED" => Some(AeoStatus::Suspended),
        "ACTIVE" => Some(AeoStatus::Active),
        "REVOKED" => Some(AeoStatus::Revoked),
        _ => None,
    }
}

/// `POST /registry/{operator}/status` (admin only): appends a `SET_STATUS` change, which
/// the store audits with the user and time.
pub async fn set_status(
    FormPost(c, s, Path(op), f): FormPost<UiSession, Path<String>, StatusForm>,
) -> Response {
    if let Some(refused) = s.refuse(s.role.may_change_registry(), T::AdminOnly) {
        return refused;
    }
    let l = s.lang;
    let Ok(id) = OperatorId::parse(&op) else {
        return error_page(&s, StatusCode::NOT_FOUND, T::NotFound.get(l));
    };
    let reason = f.reason.unwrap_or_default().trim().to_owned();
    let checked = match parse_status(&f.status) {
        None => Err(format!(
            "status {:?}: expected SUSPENDED, ACTIVE or REVOKED",
            f.status
        )),
        Some(_) if reason.is_empty() => Err(T::ReasonRequired.get(l).to_owned()),
        Some(status) => Ok(status),
    };
    let status = match checked {
        Ok(status) => status,
        Err(why) => {
            let problem = Some((StatusCode::UNPROCESSABLE_ENTITY, why));
            return render(&c, &s, &op, problem).await;
        }
    };
    let user = s.user.clone();
    match c
        .blocking(move |c| c.set_status(&id, status, &reason, &user))
        .await
    {
        Ok(_) => Redirect::to(&format!("/registry/{op}")).into_response(),
        Err(RegistryError::UnknownOperator(_)) => {
            error_page(&s, StatusCode::NOT_FOUND, T::NotFound.get(l))
        }
        Err(e) => internal(&e),
    }
}
