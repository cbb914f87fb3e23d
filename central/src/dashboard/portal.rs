//! The programme portal's company side: self-registration, the company page (status,
//! validity, contact point, findings to answer, message thread), the self-assessment
//! and the application.
//!
//! Every page takes a [`CompanySession`]: a company user sees its own company only (the
//! operator id comes from the account, never from the request), and staff sessions are
//! refused here as company sessions are refused on staff pages.

use std::collections::{BTreeMap, HashMap};

use axum::body::Body;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::StreamExt as _;
use maud::{Markup, html};
use protocol::i18n::Lang;
use protocol::schema::{AeoStatus, Change, PartyRole, RegistryRecord};

use super::portal_text::T as P;
use super::session::{CompanySession, CsrfField, CsrfToken as _, FormPost, page_lang};
use super::{T, fmt_time, internal};
use crate::errors::HttpStatus as _;
use crate::portal::documents::{FORM_OVERHEAD_BYTES, parse_form};
use crate::portal::{
    Answer, Category, Company, Document, FindingKind, Level, MAX_DOCUMENT_BYTES, Met, Requirement,
    Status,
};
use crate::service::{Central, PortalError, Registration};
use crate::store::LoggedChange;

/// The types of operator a company may register as.
pub const KINDS: [PartyRole; 8] = [
    PartyRole::Importer,
    PartyRole::Exporter,
    PartyRole::Carrier,
    PartyRole::Broker,
    PartyRole::Consolidator,
    PartyRole::TerminalOperator,
    PartyRole::Manufacturer,
    PartyRole::Warehouse,
];

/// A status's words.
#[must_use]
pub fn status_text(s: Status, l: Lang) -> &'static str {
    match s {
        Status::Submitted => P::StSubmitted.get(l),
        Status::UnderReview => P::StUnderReview.get(l),
        Status::InfoRequested => P::StInfoRequested.get(l),
        Status::VisitScheduled => P::StVisitScheduled.get(l),
        Status::Validated => P::StValidated.get(l),
        Status::Certified => P::StCertified.get(l),
        Status::Suspended => P::StSuspended.get(l),
        Status::Revoked => P::StRevoked.get(l),
        Status::Refused => P::StRefused.get(l),
    }
}

/// A category's words.
#[must_use]
pub fn category_text(c: Category, l: Lang) -> &'static str {
    match c {
        Category::BusinessPartner => P::CatBusinessPartner.get(l),
        Category::ContainerSeal => P::CatContainerSeal.get(l),
        Category::Conveyance => P::CatConveyance.get(l),
        Category::Procedural => P::CatProcedural.get(l),
        Category::PhysicalAccess => P::CatPhysicalAccess.get(l),
        Category::Personnel => P::CatPersonnel.get(l),
        Category::Training => P::CatTraining.get(l),
        Category::Cybersecurity => P::CatCybersecurity.get(l),
    }
}

/// A must / should badge.
#[must_use]
pub fn level_badge(v: Level, l: Lang) -> Markup {
    match v {
        Level::Must => html! { span.badge.open { (P::Must.get(l)) } },
        Level::Should => html! { span.badge.ack { (P::Should.get(l)) } },
    }
}

/// An answer's words.
#[must_use]
pub fn met_text(m: Met, l: Lang) -> &'static str {
    match m {
        Met::Yes => P::MetYes.get(l),
        Met::Partly => P::MetPartly.get(l),
        Met::No => P::MetNo.get(l),
    }
}

/// The page frame of the portal: its own navigation, user, language and logout.
fn frame(l: Lang, csrf: Option<&str>, user: Option<&str>, title: &str, body: Markup) -> Markup {
    let top = html! {
        @if let (Some(csrf), Some(user)) = (csrf, user) {
            nav {
                a href="/portal" { (P::CompanyPage.get(l)) }
                a href="/portal/assessment" { (P::SelfAssessment.get(l)) }
            }
            (super::who(l, csrf, html! { (user) }))
        }
    };
    super::frame(l, csrf, P::PortalName.get(l), title, top, body)
}

fn page(s: &CompanySession, title: &str, body: Markup) -> Markup {
    frame(s.lang, Some(&s.csrf), Some(&s.user), title, body)
}

/// A refusal or failure on a portal page: the rule's words with its status when the error
/// is the person's to fix (a 4xx, the same test as the officers' pages), a logged
/// internal error otherwise.
fn refused(s: &CompanySession, e: &PortalError) -> Response {
    if !e.status().is_client_error() {
        return internal(e);
    }
    (
        e.status(),
        page(s, P::NotPossible.get(s.lang), html! { p.error role="alert" { (e) } p { a href="/portal" { (P::CompanyPage.get(s.lang)) } } }),
    )
        .into_response()
}

async fn own_company(
    c: &Central,
    s: &CompanySession,
) -> Result<(Company, Option<RegistryRecord>), Response> {
    let key = s.company.clone();
    let out = c
        .blocking(move |c| {
            let company = c.company(&key)?;
            let record = match &company {
                Some(co) => c.operator(&co.operator)?,
                None => None,
            };
            Ok::<_, PortalError>((company, record))
        })
        .await;
    match out {
        Ok((Some(co), rec)) => Ok((co, rec)),
        Ok((None, _)) => Err(refused(s, &PortalError::NotFound(s.company.clone()))),
        Err(e) => Err(internal(&e)),
    }
}

/// The application's status history and the handling official (shared with the
/// officers' page).
#[must_use]
pub fn application_block(co: &Company, l: Lang) -> Markup {
    html! {
        @if let Some(app) = &co.application {
            p { (P::Status.get(l)) ": " strong #app-status data-status=(app.status.as_str()) { (status_text(app.status, l)) }
                " · " (P::Since.get(l)) " " (fmt_time(app.since())) }
            p { (P::Handler.get(l)) ": " strong #handler { (app.handler.as_deref().unwrap_or(P::NotAssigned.get(l))) } }
            @if let Some(on) = app.visit_on { p { (P::VisitOn.get(l)) ": " strong { (on) } } }
            p.small.muted { (P::TimeLimit.get(l)) }
            table.history { thead { tr { th { (P::Date.get(l)) } th { (P::Status.get(l)) } th { (P::By.get(l)) } th { (P::Note.get(l)) } } }
                tbody { @for h in &app.history { tr {
                    td { (fmt_time(h.at)) } td { (status_text(h.status, l)) } td { (h.by) } td { (h.note) }
                } } }
            }
        } @else {
            p #app-status data-status="NONE" { (P::NotApplied.get(l)) }
        }
    }
}

/// The registry's status when the application does not account for it (changed on the
/// registry page or by an import), with the latest registry change about the company:
/// what the company and officers see as its status in force.
#[must_use]
pub fn registry_change_block(
    co: &Company,
    record: Option<&RegistryRecord>,
    changes: &[LoggedChange],
    l: Lang,
) -> Markup {
    let Some(r) = record.filter(|r| co.registry_disagrees(r.status)) else {
        return html! {};
    };
    let last = changes.iter().rev().find(|c| {
        matches!(
            c.change,
            Change::SetStatus { .. } | Change::UpsertOperator { .. }
        )
    });
    html! {
        div.warn #registry-change role="status" data-status=(r.status.as_str()) {
            p { strong { (P::RegistryChanged.get(l)) ": " }
                span class={"status " (r.status.as_str())} { (r.status.as_str()) }
                " · " (P::Since.get(l)) " " (fmt_time(r.status_since)) }
            @if let Some(c) = last {
                p.small { (fmt_time(c.at)) " · " (c.actor) " · "
                    @match &c.change {
                        Change::SetStatus { reason, .. } => { (reason) }
                        _ => { (P::Source.get(l)) ": " (r.source) }
                    }
                }
            }
        }
    }
}

/// What the company can do about a suspension or revocation in force (decided in the
/// portal or in the registry).
fn respond_block(co: &Company, record: Option<&RegistryRecord>, l: Lang) -> Markup {
    let status = match record {
        Some(r) if co.registry_disagrees(r.status) => match r.status {
            AeoStatus::Suspended => Some(Status::Suspended),
            AeoStatus::Revoked => Some(Status::Revoked),
            _ => None,
        },
        _ => co.status(),
    };
    html! {
        @match status {
            Some(Status::Suspended) => { p.warn #respond data-status="SUSPENDED" { (P::SuspendedHelp.get(l)) " " a href="#messages" { (P::Messages.get(l)) } } },
            Some(Status::Revoked) => { p.warn #respond data-status="REVOKED" { (P::RevokedHelp.get(l)) " " a href="#messages" { (P::Messages.get(l)) } } },
            _ => {},
        }
    }
}

/// The registry changes about the company when its record disagrees with the application.
async fn changes_if_disagreeing(
    c: &Central,
    co: &Company,
    record: Option<&RegistryRecord>,
) -> Result<Vec<LoggedChange>, Response> {
    if !record.is_some_and(|r| co.registry_disagrees(r.status)) {
        return Ok(Vec::new());
    }
    let op = co.operator.clone();
    c.blocking(move |c| c.operator_changes(&op, 20))
        .await
        .map_err(|e| internal(&e))
}

/// `GET /portal`: the company page.
pub async fn home(State(c): State<Central>, s: CompanySession) -> Response {
    let (co, record) = match own_company(&c, &s).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let l = s.lang;
    // The company's own benefit figures once it is in the registry: its trucks against
    // non-AEO traffic over the last 7 days (the programme page's rule).
    let figures = if record.is_some() {
        let key = co.operator.to_string();
        let from = super::range_start(FIGURES_HOURS, jiff::Timestamp::now());
        match c.blocking(move |c| super::programme::load(c, from)).await {
            Ok(b) => Some((
                b.per_operator
                    .get(&key)
                    .map(|(_, f)| f.clone())
                    .unwrap_or_default(),
                b.non_aeo,
            )),
            Err(e) => return internal(&e),
        }
    } else {
        None
    };
    let changes = match changes_if_disagreeing(&c, &co, record.as_ref()).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let set = c.requirements();
    let answered = set.len() - co.unanswered(set).len();
    let gaps = co.gaps(set);
    let findings = co
        .application
        .as_ref()
        .map(|a| a.findings.as_slice())
        .unwrap_or_default();
    let body = html! {
        @if co.confirmed_by.is_none() { p.warn #pending role="status" { (P::PendingConfirmation.get(l)) } }
        section #company {
            p { (P::Operator.get(l)) ": " strong #operator { (co.operator) } " · " (co.kind.as_str()) }
            @if let Some(r) = &record {
                p #registry-status { (P::RegistryStatus.get(l)) ": " span class={"status " (r.status.as_str())} { (r.status.as_str()) }
                    " · " (P::ValidFrom.get(l)) " " (fmt_time(r.valid_from))
                    @if let Some(to) = r.valid_to { " · " (P::ValidTo.get(l)) " " (fmt_time(to)) } }
            }
            p #contact { (P::ContactPoint.get(l)) ": "
                @match &co.contact_point {
                    Some(cp) => { strong { (cp.name) } @if let Some(p) = &cp.phone { " · " (p) } @if let Some(e) = &cp.email { " · " (e) } }
                    None => { span.muted { (P::NotAssigned.get(l)) } }
                }
            }
        }
        h2 { (P::Application.get(l)) }
        section #application {
            (registry_change_block(&co, record.as_ref(), &changes, l))
            (application_block(&co, l))
            (respond_block(&co, record.as_ref(), l))
            @if co.application.is_none() {
                p { (P::Answered.get(l)) ": " (answered) " / " (set.len()) " · " (P::Gaps.get(l)) ": " (gaps.len()) " · "
                    a href="/portal/assessment" { (P::SelfAssessment.get(l)) } }
            }
        }
        h2 { (P::Documents.get(l)) }
        section #documents {
            (documents_table(&co, l, "/portal/documents"))
            @if co.confirmed_by.is_some() {
                form.filters #upload method="post" action="/portal/documents" enctype="multipart/form-data" {
                    input type="hidden" name="csrf" value=(s.csrf);
                    label { (P::DocumentFile.get(l)) input type="file" name="file" required accept=".pdf,.png,.jpg,.jpeg,application/pdf,image/png,image/jpeg"; }
                    button.primary { (P::Upload.get(l)) }
                }
                p.small.muted { (P::DocumentsHelp.get(l)) }
            }
        }
        @if let Some((own, other)) = &figures {
            h2 { (P::YourFigures.get(l)) }
            section #benefits {
                table { thead { tr { th {} th { (T::Transactions.get(l)) } th { (T::InspectionRate.get(l)) } th { (T::FastShare.get(l)) } th { (T::MedianTime.get(l)) } } }
                    tbody {
                        (figures_row(P::YourTrucks.get(l), own))
                        (figures_row(T::NonAeoTraffic.get(l), other))
                    } }
                p.small.muted { (P::FiguresHelp.get(l)) }
            }
        }
        @if !findings.is_empty() {
            h2 { (P::Findings.get(l)) }
            section #findings { (findings_table(&co, l, Some(&s.csrf))) }
        }
        h2 { (P::Users.get(l)) }
        section #users {
            p { (co.users.join(", ")) }
            form.filters method="post" action="/portal/users" {
                input type="hidden" name="csrf" value=(s.csrf);
                label { (T::User.get(l)) input name="user" required autocomplete="off"; }
                label { (T::Password.get(l)) input name="password" type="password" required autocomplete="new-password"; }
                button { (P::AddUser.get(l)) }
            }
        }
        h2 { (P::Messages.get(l)) }
        section #messages {
            (thread(&co, l))
            form method="post" action="/portal/messages" {
                input type="hidden" name="csrf" value=(s.csrf);
                label.wide { (P::NewMessage.get(l)) textarea name="text" rows="3" required {} }
                button.primary { (P::Send.get(l)) }
            }
        }
    };
    page(&s, &co.name, body).into_response()
}

/// Hours of gate data the company's own figures cover.
const FIGURES_HOURS: u32 = 168;

fn figures_row(label: &str, f: &super::programme::Figures) -> Markup {
    html! {
        tr {
            th { (label) }
            td.num { (f.transactions) }
            td.num { (super::pct(f.inspection_rate())) }
            td.num { (super::pct(f.fast_share())) }
            td.num { (super::programme::median_text(f)) }
        }
    }
}

/// The findings with their answers; `csrf` given (the company's page) adds an answer
/// form to each open required change.
#[must_use]
pub fn findings_table(co: &Company, l: Lang, csrf: Option<&str>) -> Markup {
    let findings = co
        .application
        .as_ref()
        .map(|a| a.findings.as_slice())
        .unwrap_or_default();
    html! {
        table.findings { thead { tr { th { "#" } th { (P::Requirement.get(l)) } th { (P::Kind.get(l)) } th { (P::Finding.get(l)) } th { (P::CompanyAnswer.get(l)) } } }
            tbody { @for f in findings { tr data-finding=(f.id) {
                td { (f.id) } td { (f.requirement) }
                td { @match f.kind {
                    FindingKind::RequiredChange { deadline } => { span.badge.open { (P::RequiredChange.get(l)) } br; span.small { (P::Deadline.get(l)) " " (deadline) } }
                    FindingKind::Recommendation => { span.badge.ack { (P::Recommendation.get(l)) } }
                } }
                td { (f.text) br; span.small.muted { (f.by) " · " (fmt_time(f.at)) } }
                td { @if let Some(a) = &f.answer { (a.text) br; span.small.muted { (a.by) " · " (fmt_time(a.at)) } }
                    @else if let (Some(csrf), true) = (csrf, f.is_open()) {
                        form method="post" action={"/portal/findings/" (f.id)} {
                            input type="hidden" name="csrf" value=(csrf);
                            label.wide { (P::YourAnswer.get(l)) textarea name="text" rows="2" required {} }
                            button.primary { (P::Send.get(l)) }
                        }
                    } }
            } } }
        }
    }
}

/// The company's documents; each name links to `base/{id}` (the company's or the
/// officers' download route).
#[must_use]
pub fn documents_table(co: &Company, l: Lang, base: &str) -> Markup {
    html! {
        @if co.documents.is_empty() { p.muted { (P::NoDocuments.get(l)) } }
        @else {
            table.documents { thead { tr { th { (P::DocumentFile.get(l)) } th { (P::DocumentType.get(l)) } th.num { (P::Size.get(l)) } th { (P::Sha256.get(l)) } th { (P::UploadedBy.get(l)) } th { (P::Date.get(l)) } } }
                tbody { @for d in &co.documents { tr data-document=(d.id) {
                    td { a href={(base) "/" (d.id)} download { (d.name) } }
                    td { (d.kind.as_str()) }
                    td.num { (d.size) }
                    td { code.small.hash { (d.sha256) } }
                    td { (d.by) }
                    td { (fmt_time(d.at)) }
                } } }
            }
        }
    }
}

/// A stored document as a download: its media type from its recognised kind, never
/// rendered in the page's origin (`attachment`, `nosniff`, a sandboxing policy).
#[must_use]
pub fn document_response(d: &Document, body: Vec<u8>) -> Response {
    let ascii: String = d
        .name
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in d.name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    let disposition = format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}");
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(d.kind.media_type()),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    r
}

/// Reads a request body up to `limit` bytes; `None` past it.
///
/// # Errors
/// The body could not be read (the client went away).
async fn read_limited(body: Body, limit: usize) -> Result<Option<Vec<u8>>, axum::Error> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if out.len() + chunk.len() > limit {
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(out))
}

/// `POST /portal/documents`: a company user uploads a document (`multipart/form-data`
/// with the fields `csrf` and `file`). Larger than [`MAX_DOCUMENT_BYTES`]: 413 naming the
/// limit; not a PDF, PNG or JPEG by content: 415.
pub async fn upload_document(
    State(c): State<Central>,
    s: CompanySession,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let limit = MAX_DOCUMENT_BYTES + FORM_OVERHEAD_BYTES;
    let too_large = PortalError::TooLarge {
        limit: MAX_DOCUMENT_BYTES,
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return refused(&s, &too_large);
    }
    let bytes = match read_limited(body, limit).await {
        Ok(Some(b)) => b,
        Ok(None) => return refused(&s, &too_large),
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("the upload was cut short: {e}"),
            )
                .into_response();
        }
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let parts = match parse_form(content_type, bytes.into()).await {
        Ok(p) => p,
        Err(e) => return refused(&s, &PortalError::Form(e)),
    };
    let csrf = parts
        .iter()
        .find(|p| p.name == "csrf")
        .map(|p| String::from_utf8_lossy(&p.body).into_owned());
    if let Err(e) = s.check_csrf_in(csrf.as_deref(), &headers) {
        return e.into_response();
    }
    let Some(file) = parts
        .iter()
        .find(|p| p.name == "file" && p.filename.is_some())
    else {
        return refused(
            &s,
            &PortalError::Refused("choose a document to upload".into()),
        );
    };
    let name = file.filename.clone().unwrap_or_default();
    let doc = file.body.to_vec();
    let key = s.company.clone();
    let user = s.user.clone();
    match c
        .blocking(move |c| c.upload_document(&key, &name, &doc, &user))
        .await
    {
        Ok(_) => Redirect::to("/portal#documents").into_response(),
        Err(e) => refused(&s, &e),
    }
}

/// `GET /portal/documents/{id}`: one of the company's own documents.
pub async fn download_document(
    State(c): State<Central>,
    s: CompanySession,
    Path(id): Path<u32>,
) -> Response {
    let key = s.company.clone();
    match c.blocking(move |c| c.company_document(&key, id)).await {
        Ok((d, body)) => document_response(&d, body),
        Err(e) => refused(&s, &e),
    }
}

/// The message thread.
#[must_use]
pub fn thread(co: &Company, l: Lang) -> Markup {
    html! {
        @if co.messages.is_empty() { p.muted { (P::NoMessages.get(l)) } }
        @for m in &co.messages {
            div.message data-official=(m.official) {
                p.small.muted { strong { (m.by) } @if m.official { " (" (P::Official.get(l)) ")" } " · " (fmt_time(m.at)) }
                p { (m.text) }
            }
        }
    }
}

/// The self-assessment as a table per category; `form` makes it editable.
#[must_use]
pub fn assessment_table(set: &[Requirement], co: &Company, l: Lang, form: bool) -> Markup {
    let mut cats: Vec<Category> = set.iter().map(|r| r.category).collect();
    cats.dedup();
    html! {
        @for cat in cats {
            h2 { (category_text(cat, l)) }
            table.requirements { thead { tr { th { (P::Requirement.get(l)) } th { (P::Explanation.get(l)) } th { (P::Answer.get(l)) } th { (P::Evidence.get(l)) } } }
                tbody { @for r in set.iter().filter(|r| r.category == cat) {
                    @let a = co.answers.get(r.id);
                    tr data-requirement=(r.id) {
                        td { strong { (r.id) } " " (level_badge(r.level, l)) br; (r.title_in(l)) }
                        td { (r.explanation_in(l)) br; span.small.muted { (P::Source.get(l)) ": " (r.source) ", " (r.section) } }
                        @if form {
                            td { label { span.sr { (P::Answer.get(l)) }
                                select name={"met." (r.id)} {
                                    option value="" selected[a.is_none()] { "—" }
                                    @for m in [Met::Yes, Met::Partly, Met::No] {
                                        option value=(m.as_str()) selected[a.map(|a| a.met) == Some(m)] { (met_text(m, l)) }
                                    }
                                } } }
                            td { label { span.sr { (P::Evidence.get(l)) }
                                textarea name={"evidence." (r.id)} rows="2" { (a.map_or("", |a| a.evidence.as_str())) } } }
                        } @else {
                            td { @if let Some(a) = a { (met_text(a.met, l)) } @else { span.muted { "—" } } }
                            td { (a.map_or("", |a| a.evidence.as_str())) }
                        }
                    }
                } }
            }
        }
    }
}

/// `GET /portal/assessment`: the self-assessment with its gaps, and the application
/// button once it is complete.
pub async fn assessment(State(c): State<Central>, s: CompanySession) -> Response {
    let (co, _) = match own_company(&c, &s).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let l = s.lang;
    let set = c.requirements();
    let open = co.unanswered(set);
    let gaps = co.gaps(set);
    let editable =
        co.confirmed_by.is_some() && matches!(co.status(), None | Some(Status::InfoRequested));
    let body = html! {
        p.small { (P::AssessmentHelp.get(l)) }
        section #gaps {
            h2 { (P::Gaps.get(l)) }
            @if !open.is_empty() { p.warn { (P::Unanswered.get(l)) ": " (open.len()) } }
            @if gaps.is_empty() { p.muted { (P::NoGaps.get(l)) } }
            @else { ul { @for r in &gaps { li data-gap=(r.id) { strong { (r.id) } " " (r.title_in(l)) } } } }
        }
        @if editable {
            form #assessment method="post" action="/portal/assessment" {
                input type="hidden" name="csrf" value=(s.csrf);
                (assessment_table(set, &co, l, true))
                p { button.primary { (P::SaveAssessment.get(l)) } }
            }
            @if co.application.is_none() {
                section.actions {
                    form method="post" action="/portal/apply" {
                        input type="hidden" name="csrf" value=(s.csrf);
                        p.small { (P::ApplyHelp.get(l)) }
                        button.primary #apply disabled[!open.is_empty() || !gaps.is_empty()] { (P::Apply.get(l)) }
                    }
                }
            }
        } @else {
            @if co.confirmed_by.is_none() { p.warn { (P::PendingConfirmation.get(l)) } }
            (assessment_table(set, &co, l, false))
        }
    };
    page(&s, P::SelfAssessment.get(l), body).into_response()
}

/// Reads the self-assessment form: `met.ID` and `evidence.ID` per requirement.
#[must_use]
pub fn parse_answers(
    set: &[Requirement],
    form: &HashMap<String, String>,
) -> BTreeMap<String, Answer> {
    set.iter()
        .filter_map(|r| {
            let met = Met::parse(form.get(&format!("met.{}", r.id))?)?;
            let evidence = form
                .get(&format!("evidence.{}", r.id))
                .map(|e| e.trim().to_owned())
                .unwrap_or_default();
            Some((r.id.to_owned(), Answer { met, evidence }))
        })
        .collect()
}

/// The self-assessment form: `met.ID` and `evidence.ID` per requirement, and `csrf`.
impl CsrfField for HashMap<String, String> {
    fn csrf(&self) -> Option<&str> {
        self.get("csrf").map(String::as_str)
    }
}

/// Runs a company action, then goes to `to` (or shows the refusal).
async fn act(
    c: Central,
    s: CompanySession,
    to: &str,
    f: impl FnOnce(&Central, &str, &str) -> Result<Company, PortalError> + Send + 'static,
) -> Response {
    let key = s.company.clone();
    let user = s.user.clone();
    match c.blocking(move |c| f(c, &key, &user)).await {
        Ok(_) => Redirect::to(to).into_response(),
        Err(e) => refused(&s, &e),
    }
}

/// `POST /portal/assessment`.
pub async fn save_assessment(
    FormPost(c, s, (), f): FormPost<CompanySession, (), HashMap<String, String>>,
) -> Response {
    let answers = parse_answers(c.requirements(), &f);
    act(c, s, "/portal/assessment", move |c, k, u| {
        c.save_assessment(k, answers, u)
    })
    .await
}

/// A form with the CSRF token and one text.
#[derive(Debug, serde::Deserialize)]
pub struct TextForm {
    csrf: Option<String>,
    #[serde(default)]
    text: String,
}

impl CsrfField for TextForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

/// `POST /portal/apply`.
pub async fn apply(FormPost(c, s, (), _): FormPost<CompanySession, (), TextForm>) -> Response {
    act(c, s, "/portal", |c, k, u| c.submit_application(k, u)).await
}

/// `POST /portal/findings/{id}`: the company answers a required change.
pub async fn answer_finding(
    FormPost(c, s, Path(id), f): FormPost<CompanySession, Path<u32>, TextForm>,
) -> Response {
    act(c, s, "/portal", move |c, k, u| {
        c.answer_finding(k, id, &f.text, u)
    })
    .await
}

/// `POST /portal/messages`.
pub async fn post_message(
    FormPost(c, s, (), f): FormPost<CompanySession, (), TextForm>,
) -> Response {
    act(c, s, "/portal#messages", move |c, k, u| {
        c.post_message(k, &f.text, u, false)
    })
    .await
}

/// The form adding a user to the company.
#[derive(Debug, serde::Deserialize)]
pub struct UserForm {
    csrf: Option<String>,
    user: String,
    password: String,
}

impl CsrfField for UserForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

/// `POST /portal/users`: a company user adds another account of the same company.
pub async fn add_user(FormPost(c, s, (), f): FormPost<CompanySession, (), UserForm>) -> Response {
    let (name, password) = (f.user.trim().to_owned(), f.password);
    act(c, s, "/portal#users", move |c, k, u| {
        c.add_company_user(k, &name, &password, u)
    })
    .await
}

/// The registration form's fields (also the officers' "add a company" form).
#[derive(Debug, serde::Deserialize)]
pub struct RegisterForm {
    #[serde(default)]
    pub csrf: Option<String>,
    pub operator: String,
    pub name: String,
    pub kind: String,
    pub user: String,
    pub password: String,
}

impl CsrfField for RegisterForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

impl RegisterForm {
    /// As the service takes it.
    #[must_use]
    pub fn registration(self) -> Registration {
        Registration {
            operator: self.operator,
            name: self.name,
            kind: self.kind,
            user: self.user.trim().to_owned(),
            password: self.password,
        }
    }
}

/// The registration fields (shared with the officers' form).
#[must_use]
pub fn register_fields(l: Lang) -> Markup {
    html! {
        label { (P::CompanyName.get(l)) input name="name" required autocomplete="organization"; }
        label { (P::Operator.get(l)) input name="operator" required placeholder="EU-AEO:DE123456789012345"; }
        label { (P::OperatorKind.get(l)) select name="kind" { @for k in KINDS { option value=(k.as_str()) { (k.as_str()) } } } }
        label { (T::User.get(l)) input name="user" required autocomplete="username"; }
        label { (T::Password.get(l)) input name="password" type="password" required autocomplete="new-password"; }
    }
}

fn register_page(l: Lang, error: Option<&str>, done: bool) -> Markup {
    let body = html! {
        @if done {
            p #registered role="status" { (P::Registered.get(l)) }
            p { a href="/login?next=/portal" { (T::LogIn.get(l)) } }
        } @else {
            p.small { (P::RegisterHelp.get(l)) }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form.filters #register method="post" action="/portal/register" {
                (register_fields(l))
                button.primary { (P::Register.get(l)) }
            }
            p.small { (P::HaveAccount.get(l)) " " a href="/login?next=/portal" { (T::LogIn.get(l)) } }
        }
    };
    frame(l, None, None, P::Register.get(l), body)
}

/// `GET /portal/register`.
pub async fn register_form(headers: HeaderMap) -> Response {
    register_page(page_lang(&headers), None, false).into_response()
}

/// `POST /portal/register`: a company registers itself; a programme officer confirms it.
pub async fn register(
    State(c): State<Central>,
    headers: HeaderMap,
    Form(f): Form<RegisterForm>,
) -> Response {
    let l = page_lang(&headers);
    let r = f.registration();
    match c.blocking(move |c| c.register_company(&r, None)).await {
        Ok(_) => (StatusCode::CREATED, register_page(l, None, true)).into_response(),
        Err(e @ (PortalError::Refused(_) | PortalError::Auth(_))) => {
            (e.status(), register_page(l, Some(&e.to_string()), false)).into_response()
        }
        Err(e) => internal(&e),
    }
}
