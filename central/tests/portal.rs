//! The AEO programme portal through HTTP: a company from self-registration to
//! certification (then suspension), with the registry record and the signed replication
//! feed agents read checked at the end; and the portal's rows of the auth matrix: a
//! company sees only its own data, company sessions reach no staff page or API route,
//! staff sessions are refused on company pages, and certification needs an officer other
//! than the one who validated.

mod common;

use axum::http::StatusCode;
use central::Central;
use central::portal::{Answer, FindingKind, Met, STARTER, Status};
use central::service::{PORTAL_SOURCE, Registration};
use common::{Env, env, form_login, gate, get, page, verified};
use protocol::operator::OperatorId;
use protocol::schema::{AeoStatus, Authorisation, Change, ChangeBatch};

const OP_A: &str = "EU-AEO:DE123456789012345";
const OP_B: &str = "EU-AEO:FR12345678901";
const PASSWORD: &str = "a long company passphrase";

fn registration(op: &str, user: &str) -> Registration {
    Registration {
        operator: op.into(),
        name: format!("Company {user}"),
        kind: "EXPORTER".into(),
        user: user.into(),
        password: PASSWORD.into(),
    }
}

/// The form fields answering every starter requirement `met`.
fn answers(met: &str) -> Vec<(String, String)> {
    STARTER
        .iter()
        .flat_map(|r| {
            [
                (format!("met.{}", r.id), met.to_owned()),
                (format!("evidence.{}", r.id), format!("procedure {}", r.id)),
            ]
        })
        .collect()
}

async fn post(c: &Central, session: &str, uri: &str, form: &[(&str, &str)]) -> StatusCode {
    let p = page(c, "POST", uri, Some(session), form).await;
    assert!(
        p.status != StatusCode::INTERNAL_SERVER_ERROR,
        "{uri}: {}",
        p.body
    );
    p.status
}

/// A central with staff users: `olga` and `pia` (admins), `tom` (analyst).
fn staffed() -> Env {
    let e = env();
    for (name, role) in [("olga", "admin"), ("pia", "admin"), ("tom", "analyst")] {
        e.central
            .add_user(name, &staff_passphrase(name), role)
            .expect(name);
    }
    e
}

fn staff_passphrase(name: &str) -> String {
    format!("{name}'s long passphrase")
}

/// A session of one of the [`staffed`] users.
async fn staff_session(c: &Central, name: &str) -> String {
    form_login(c, name, &staff_passphrase(name)).await.0
}

/// A session of a company user registered with [`PASSWORD`].
async fn company_session(c: &Central, user: &str) -> String {
    form_login(c, user, PASSWORD).await.0
}

/// The signed registry changes a port P1 gate reads after `seq`, verified.
async fn feed_after(c: &Central, agent: &str, seq: u64) -> ChangeBatch {
    let a = get(
        c,
        &format!("/api/v1/registry/changes?port=P1&after={seq}"),
        Some(agent),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    verified(c, a.json).1
}

#[allow(clippy::too_many_lines)]
#[tokio::test]
async fn a_company_goes_from_registration_to_certification_and_the_gates_receive_its_record() {
    let e = staffed();
    let c = &e.central;
    let agent = c
        .issue_agent_token(&gate("P1-G1"), "P1")
        .expect("agent token");
    let register = [
        ("operator", OP_A),
        ("name", "Acme Export"),
        ("kind", "EXPORTER"),
        ("user", "acme"),
        ("password", PASSWORD),
    ];
    let p = page(c, "POST", "/portal/register", None, &register).await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    let (acme, home) = form_login(c, "acme", PASSWORD).await;
    assert_eq!(home, "/portal", "a company account lands on the portal");
    let p = page(c, "GET", "/portal", Some(&acme), &[]).await;
    assert!(p.body.contains("id=\"pending\""), "{}", p.body);

    // A second user of the company sees the same company.
    let second = [
        ("user", "acme.two"),
        ("password", "another company passphrase"),
    ];
    assert_eq!(
        post(c, &acme, "/portal/users", &second).await,
        StatusCode::SEE_OTHER
    );
    let (two, _) = form_login(c, "acme.two", "another company passphrase").await;
    let p = page(c, "GET", "/portal", Some(&two), &[]).await;
    assert!(
        p.body.contains(OP_A) && p.body.contains("Acme Export"),
        "{}",
        p.body
    );

    // Nothing before an officer confirms the registration.
    let all_yes = answers("YES");
    let form: Vec<(&str, &str)> = all_yes
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        post(c, &acme, "/portal/assessment", &form).await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let olga = staff_session(c, "olga").await;
    let file = format!("/applications/{OP_A}");
    assert_eq!(
        post(c, &olga, &format!("{file}/confirm"), &[]).await,
        StatusCode::SEE_OTHER
    );

    // A must-requirement partly met is a gap, named, and blocks the application.
    let mut gap = form.clone();
    gap.retain(|(k, _)| *k != "met.CS-1");
    gap.push(("met.CS-1", "PARTLY"));
    assert_eq!(
        post(c, &acme, "/portal/assessment", &gap).await,
        StatusCode::SEE_OTHER
    );
    let p = page(c, "GET", "/portal/assessment", Some(&acme), &[]).await;
    assert!(p.body.contains("data-gap=\"CS-1\""), "{}", p.body);
    assert_eq!(
        post(c, &acme, "/portal/apply", &[]).await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        post(c, &acme, "/portal/assessment", &form).await,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        post(c, &acme, "/portal/apply", &[]).await,
        StatusCode::SEE_OTHER
    );
    let p = page(c, "GET", "/portal", Some(&acme), &[]).await;
    p.shows("data-status=\"SUBMITTED\"", "the status");
    assert!(
        !p.body.contains("id=\"benefits\""),
        "no figures before certification"
    );

    // The officer's queue shows it; review, visit, one required change and one
    // recommendation, validation.
    let p = page(c, "GET", "/applications", Some(&olga), &[]).await;
    p.shows(&format!("data-company=\"{OP_A}\""), "the officer's queue");
    for (action, fields) in [
        ("review", vec![]),
        ("schedule", vec![("date", "2026-12-15")]),
        (
            "finding",
            vec![
                ("requirement", "CS-2"),
                ("kind", "REQUIRED_CHANGE"),
                ("deadline", "2027-01-31"),
                ("text", "Log every seal issued by number and name"),
            ],
        ),
        (
            "finding",
            vec![
                ("requirement", "CV-2"),
                ("kind", "RECOMMENDATION"),
                ("text", "Track trucks on the port run"),
            ],
        ),
        ("validate", vec![("note", "visit done")]),
    ] {
        let s = post(c, &olga, &format!("{file}/{action}"), &fields).await;
        assert_eq!(s, StatusCode::SEE_OTHER, "{action}");
    }
    let p = page(c, "GET", "/portal", Some(&acme), &[]).await;
    p.shows("data-status=\"VALIDATED\"", "the status");
    p.shows("olga", "the handling official's name");

    // The validating officer may not certify; another may once the change is answered.
    let before = c.registry_seq().expect("seq");
    assert_eq!(
        post(c, &olga, &format!("{file}/certify"), &[]).await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let pia = staff_session(c, "pia").await;
    assert_eq!(
        post(c, &pia, &format!("{file}/certify"), &[]).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the required change is not answered yet"
    );
    assert_eq!(
        post(c, &acme, "/portal/findings/2", &[("text", "noted")]).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a recommendation needs no answer"
    );
    assert_eq!(
        post(
            c,
            &acme,
            "/portal/findings/1",
            &[("text", "Seal log in use")]
        )
        .await,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        c.registry_seq().expect("seq"),
        before,
        "nothing certified yet"
    );
    assert_eq!(
        post(
            c,
            &pia,
            &format!("{file}/contact"),
            &[("name", "Pia Ramos"), ("phone", "+49 40 1234")]
        )
        .await,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        post(c, &pia, &format!("{file}/certify"), &[("note", "all met")]).await,
        StatusCode::SEE_OTHER
    );

    // The registry record, and the same change in the signed feed a gate of any port reads.
    let op = OperatorId::parse(OP_A).expect("op");
    let record = c.operator(&op).expect("read").expect("a registry record");
    assert_eq!(record.status, AeoStatus::Active);
    assert_eq!(record.source, PORTAL_SOURCE);
    assert_eq!(record.authorisations, vec![Authorisation::Aeos]);
    assert!(record.valid_to.is_some_and(|to| to > record.valid_from));
    assert_eq!(
        record.contact_point.as_ref().map(|cp| cp.name.as_str()),
        Some("Pia Ramos")
    );
    let batch = feed_after(c, &agent, before).await;
    assert!(
        batch.changes.iter().any(|s| matches!(&s.change,
            Change::UpsertOperator { record } if record.operator == op && record.status == AeoStatus::Active)),
        "{:?}",
        batch.changes
    );
    let p = page(c, "GET", "/applications", Some(&olga), &[]).await;
    let figures = p.body.split("id=\"figures\"").nth(1).unwrap_or_default();
    assert!(figures.contains("Certified members: 1"), "{figures}");
    assert!(figures.contains("EXPORTER 1"), "members by type: {figures}");
    assert!(figures.contains("(1)"), "one decision timed: {figures}");
    let p = page(c, "GET", "/portal", Some(&acme), &[]).await;
    p.shows("data-status=\"CERTIFIED\"", "the status");
    p.shows("id=\"benefits\"", "its figures");
    p.shows("Pia Ramos", "the contact point");

    // Suspension in the portal reaches the feed as well; the company sees the reason.
    let certified = c.registry_seq().expect("seq");
    assert_eq!(
        post(
            c,
            &pia,
            &format!("{file}/suspend"),
            &[("note", "seal log not kept")]
        )
        .await,
        StatusCode::SEE_OTHER
    );
    let record = c.operator(&op).expect("read").expect("record");
    assert_eq!(record.status, AeoStatus::Suspended);
    let batch = feed_after(c, &agent, certified).await;
    assert_eq!(batch.changes.len(), 1, "{:?}", batch.changes);
    let p = page(c, "GET", "/portal", Some(&acme), &[]).await;
    p.shows("data-status=\"SUSPENDED\"", "the status");
    assert!(p.body.contains("seal log not kept"), "{}", p.body);

    // Every step is in the audit log with who did it.
    let audit = c.audit_log(0, 1000).expect("audit");
    let by = |actor: &str, what: &str| {
        audit
            .iter()
            .any(|a| a.actor == actor && a.detail.contains(what))
    };
    assert!(by("acme", "application submitted"));
    assert!(by("olga", "VISIT_SCHEDULED -> VALIDATED"));
    assert!(by("pia", "VALIDATED -> CERTIFIED"));
}

/// Takes a confirmed company to VALIDATED by `validator` through the service.
fn validated(c: &Central, op: &str, user: &str, validator: &str) {
    c.register_company(&registration(op, user), Some("olga"))
        .expect("company");
    let all = STARTER
        .iter()
        .map(|r| {
            let a = Answer {
                met: Met::Yes,
                evidence: "procedure".into(),
            };
            (r.id.to_owned(), a)
        })
        .collect();
    c.save_assessment(op, all, user).expect("answers");
    c.submit_application(op, user).expect("submitted");
    c.move_application(op, Status::UnderReview, "", validator)
        .expect("review");
    let on = jiff::civil::Date::constant(2026, 12, 1);
    c.schedule_visit(op, on, validator).expect("visit");
    c.add_finding(op, "TR-2", FindingKind::Recommendation, "drills", validator)
        .expect("finding");
    c.move_application(op, Status::Validated, "", validator)
        .expect("validated");
}

#[tokio::test]
async fn certification_needs_an_admin_other_than_the_validating_officer() {
    let e = staffed();
    let c = &e.central;
    validated(c, OP_A, "acme", "olga");
    let uri = format!("/applications/{OP_A}/certify");
    let olga = staff_session(c, "olga").await;
    let tom = staff_session(c, "tom").await;
    let pia = staff_session(c, "pia").await;
    assert_eq!(
        post(c, &olga, &uri, &[]).await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(post(c, &tom, &uri, &[]).await, StatusCode::FORBIDDEN);
    let op = OperatorId::parse(OP_A).expect("op");
    assert_eq!(
        c.operator(&op).expect("read"),
        None,
        "refusals change nothing"
    );
    assert_eq!(post(c, &pia, &uri, &[]).await, StatusCode::SEE_OTHER);
    assert_eq!(
        c.operator(&op).expect("read").map(|r| r.status),
        Some(AeoStatus::Active)
    );
}

#[tokio::test]
async fn a_company_user_sees_its_own_company_only_and_no_staff_page_or_route() {
    let e = staffed();
    let c = &e.central;
    validated(c, OP_A, "acme", "olga");
    validated(c, OP_B, "bravo", "olga");
    let acme = company_session(c, "acme").await;
    let p = page(c, "GET", "/portal", Some(&acme), &[]).await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(
        p.body.contains(OP_A) && !p.body.contains(OP_B),
        "{}",
        p.body
    );

    let file_b = format!("/applications/{OP_B}");
    let document_b = format!("{file_b}/documents/1");
    for uri in [
        "/cases",
        "/gates",
        "/charts",
        "/programme",
        "/registry",
        "/users",
        "/applications",
        file_b.as_str(),
        document_b.as_str(),
    ] {
        let p = page(c, "GET", uri, Some(&acme), &[]).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "GET {uri}");
        assert!(
            !p.body.contains(OP_B),
            "GET {uri} shows nothing of another company"
        );
    }
    for uri in [
        format!("{file_b}/certify"),
        format!("{file_b}/message"),
        format!("{file_b}/revoke"),
        format!("/applications/{OP_A}/revoke"),
        format!("/applications/{OP_A}/certify"),
        format!("/registry/{OP_A}/status"),
        "/cases/1/acknowledge".to_owned(),
        "/users/olga/access".to_owned(),
        "/applications".to_owned(),
    ] {
        assert_eq!(
            post(c, &acme, &uri, &[("text", "x"), ("status", "ACTIVE")]).await,
            StatusCode::FORBIDDEN,
            "POST {uri}"
        );
    }
    for uri in ["/api/v1/cases", "/api/v1/gates", "/api/v1/audit"] {
        assert_eq!(
            get(c, uri, Some(&acme)).await.status,
            StatusCode::FORBIDDEN,
            "{uri}"
        );
    }
    assert_eq!(
        c.company(OP_B)
            .expect("b")
            .and_then(|b| b.application)
            .map(|a| a.status),
        Some(Status::Validated)
    );

    // Staff sessions are refused on the company pages, and nobody reaches them unlogged.
    let olga = staff_session(c, "olga").await;
    assert_eq!(
        page(c, "GET", "/portal", Some(&olga), &[]).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(c, &olga, "/portal/messages", &[("text", "hi")]).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(c, &olga, "/portal/documents", &[("text", "hi")]).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        page(c, "GET", "/portal/documents/1", Some(&olga), &[])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let p = page(c, "GET", "/portal", None, &[]).await;
    assert!(p.status.is_redirection(), "{}", p.status);
    assert!(p.location.is_some_and(|l| l.starts_with("/login")));
}

/// One raw request through the router with the session's cookie; status, headers, body.
async fn raw(
    c: &Central,
    method: &str,
    uri: &str,
    session: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    use tower::ServiceExt as _;
    let mut req = axum::http::Request::builder().method(method).uri(uri);
    if let Some(t) = session {
        let name = central::dashboard::session::cookie_name(false);
        req = req.header("cookie", format!("{name}={t}"));
    }
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let req = req.body(axum::body::Body::from(body)).expect("request");
    let resp = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        central::app(c.clone()).oneshot(req),
    )
    .await
    .expect("answer in time")
    .expect("infallible");
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 16 << 20).await.expect("body");
    (parts.status, parts.headers, bytes.to_vec())
}

const BOUNDARY: &str = "----aeogate-test-boundary";

/// The upload form as a browser sends it: the session's CSRF token and one file.
fn upload_form(session: &str, file_name: &str, file: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{}\r\n",
            central::auth::csrf_token(session)
        )
        .as_bytes(),
    );
    out.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(file);
    out.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    out
}

async fn upload(c: &Central, session: &str, file_name: &str, file: &[u8]) -> (StatusCode, String) {
    let (status, _, body) = raw(
        c,
        "POST",
        "/portal/documents",
        Some(session),
        Some(&format!("multipart/form-data; boundary={BOUNDARY}")),
        upload_form(session, file_name, file),
    )
    .await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A small PDF-looking file whose bytes differ per `tag`.
fn pdf(tag: &str) -> Vec<u8> {
    format!("%PDF-1.7\n% security procedures of {tag}\n%%EOF\n").into_bytes()
}

#[tokio::test]
async fn a_company_uploads_documents_that_only_it_and_officers_can_download() {
    let e = staffed();
    let c = &e.central;
    validated(c, OP_A, "acme", "olga");
    validated(c, OP_B, "bravo", "olga");
    let acme = company_session(c, "acme").await;
    let bravo = company_session(c, "bravo").await;
    let tom = staff_session(c, "tom").await;

    let plan = pdf("acme");
    let (status, body) = upload(c, &acme, "C:\\scans\\security plan.pdf", &plan).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let hash = central::portal::documents::sha256_hex(&plan);
    let listed = c.company(OP_A).expect("a").expect("a").documents;
    assert_eq!(listed.len(), 1);
    let d = &listed[0];
    assert_eq!(
        (d.name.as_str(), d.size, d.sha256.as_str(), d.by.as_str()),
        (
            "security plan.pdf",
            plan.len() as u64,
            hash.as_str(),
            "acme"
        )
    );

    // Listed with name, size, hash and uploader on the company's page and the officers'.
    let file = format!("/applications/{OP_A}");
    for (uri, who) in [("/portal", &acme), (file.as_str(), &tom)] {
        let p = page(c, "GET", uri, Some(who), &[]).await;
        assert_eq!(p.status, StatusCode::OK, "{uri}");
        for want in [
            "security plan.pdf",
            hash.as_str(),
            &plan.len().to_string(),
            "acme",
        ] {
            assert!(p.body.contains(want), "{uri} lists {want}: {}", p.body);
        }
    }

    // The company and any programme officer download the very bytes.
    let officer_uri = format!("{file}/documents/{}", d.id);
    for (uri, who) in [
        (format!("/portal/documents/{}", d.id), &acme),
        (officer_uri.clone(), &tom),
    ] {
        let (status, headers, body) = raw(c, "GET", &uri, Some(who), None, Vec::new()).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(body, plan, "{uri}");
        assert_eq!(headers["content-type"], "application/pdf");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let disposition = headers["content-disposition"].to_str().expect("ascii");
        assert!(disposition.starts_with("attachment;"), "{disposition}");
    }

    // Another company: its own document #1 is its own; the first company's is out of reach.
    let theirs = pdf("bravo");
    assert_eq!(
        upload(c, &bravo, "b.pdf", &theirs).await.0,
        StatusCode::SEE_OTHER
    );
    let (status, _, body) = raw(
        c,
        "GET",
        "/portal/documents/1",
        Some(&bravo),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, theirs));
    let (status, _, body) = raw(
        c,
        "GET",
        "/portal/documents/2",
        Some(&bravo),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!String::from_utf8_lossy(&body).contains("security plan"));
    let (status, _, body) = raw(c, "GET", &officer_uri, Some(&bravo), None, Vec::new()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_ne!(body, plan);
    let (status, _, _) = raw(c, "GET", &officer_uri, None, None, Vec::new()).await;
    assert!(status.is_redirection(), "{status}");

    // The upload is audited with the uploader, the name, the size and the hash.
    let audit = c.audit_log(0, 1_000).expect("audit");
    assert!(
        audit.iter().any(|a| a.actor == "acme"
            && a.action == "company.change"
            && a.detail.contains("security plan.pdf")
            && a.detail.contains(&hash)),
        "{audit:?}"
    );
}

#[tokio::test]
async fn an_upload_too_large_or_not_a_pdf_png_or_jpeg_is_refused_and_not_listed() {
    let e = staffed();
    let c = &e.central;
    validated(c, OP_A, "acme", "olga");
    let acme = company_session(c, "acme").await;

    let mut big = pdf("big");
    big.resize(central::portal::MAX_DOCUMENT_BYTES + 1, b' ');
    let (status, body) = upload(c, &acme, "big.pdf", &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        body.contains(&central::portal::MAX_DOCUMENT_BYTES.to_string()),
        "the refusal names the limit: {body}"
    );

    // Named .pdf, but an executable by content.
    let (status, body) = upload(c, &acme, "plan.pdf", b"MZ\x90\x00\x03 not a pdf").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");

    // A PNG and a JPEG are accepted whatever their name says.
    let png = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13];
    assert_eq!(
        upload(c, &acme, "photo.txt", &png).await.0,
        StatusCode::SEE_OTHER
    );
    let jpeg = [0xff, 0xd8, 0xff, 0xe0, 0, 16, b'J', b'F', b'I', b'F'];
    assert_eq!(
        upload(c, &acme, "gate.jpg", &jpeg).await.0,
        StatusCode::SEE_OTHER
    );

    // Without the session's CSRF token nothing is stored.
    let mut form = upload_form(&acme, "x.pdf", &pdf("x"));
    let token = central::auth::csrf_token(&acme);
    let at = form
        .windows(token.len())
        .position(|w| w == token.as_bytes())
        .expect("token in the form");
    form[at] ^= 1;
    let (status, _, _) = raw(
        c,
        "POST",
        "/portal/documents",
        Some(&acme),
        Some(&format!("multipart/form-data; boundary={BOUNDARY}")),
        form,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let kinds: Vec<&str> = c
        .company(OP_A)
        .expect("a")
        .expect("a")
        .documents
        .iter()
        .map(|d| d.kind.as_str())
        .collect();
    assert_eq!(kinds, ["PNG", "JPEG"]);
}

/// A company certified by `pia` after `olga` validated it.
fn certified(c: &Central, op: &str, user: &str) {
    validated(c, op, user, "olga");
    c.certify(op, "all met", "pia").expect("certified");
}

#[tokio::test]
async fn revocation_in_the_portal_reaches_the_feed_and_the_company_sees_why_and_how_to_respond() {
    let e = staffed();
    let c = &e.central;
    let agent = c
        .issue_agent_token(&gate("P1-G1"), "P1")
        .expect("agent token");
    certified(c, OP_A, "acme");
    let before = c.registry_seq().expect("seq");
    let uri = format!("/applications/{OP_A}/revoke");
    let tom = staff_session(c, "tom").await;
    let pia = staff_session(c, "pia").await;
    let acme = company_session(c, "acme").await;
    assert_eq!(
        post(c, &tom, &uri, &[("note", "x")]).await,
        StatusCode::FORBIDDEN,
        "revoking changes the registry: admins only"
    );
    assert_eq!(
        post(c, &pia, &uri, &[("note", " ")]).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a reason is required"
    );
    assert_eq!(
        c.registry_seq().expect("seq"),
        before,
        "refusals change nothing"
    );
    assert_eq!(
        post(c, &pia, &uri, &[("note", "forged seal records")]).await,
        StatusCode::SEE_OTHER
    );

    let op = OperatorId::parse(OP_A).expect("op");
    let record = c.operator(&op).expect("read").expect("record");
    assert_eq!(record.status, AeoStatus::Revoked);
    let batch = feed_after(c, &agent, before).await;
    assert!(
        batch.changes.iter().any(|s| matches!(&s.change,
            Change::SetStatus { operator, status: AeoStatus::Revoked, reason, .. }
                if *operator == op && reason == "forged seal records")),
        "{:?}",
        batch.changes
    );

    let p = page(c, "GET", "/portal", Some(&acme), &[]).await;
    assert!(p.body.contains("data-status=\"REVOKED\""), "{}", p.body);
    assert!(
        p.body.contains("forged seal records"),
        "the reason: {}",
        p.body
    );
    assert!(
        p.body.contains("id=\"respond\""),
        "how to respond: {}",
        p.body
    );
    assert!(!p.body.contains("id=\"registry-change\""), "{}", p.body);

    // The company responds in its message thread; an empty message is refused.
    assert_eq!(
        post(c, &acme, "/portal/messages", &[("text", " ")]).await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let response = [("text", "Seal records for the audit attached")];
    assert_eq!(
        post(c, &acme, "/portal/messages", &response).await,
        StatusCode::SEE_OTHER
    );
    let p = page(c, "GET", "/portal", Some(&acme), &[]).await;
    p.shows(
        "Seal records for the audit attached",
        "the company's message",
    );

    // Revocation is final: neither certification nor suspension follows it.
    for action in ["certify", "suspend", "revoke"] {
        assert_eq!(
            post(
                c,
                &pia,
                &format!("/applications/{OP_A}/{action}"),
                &[("note", "again")]
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{action}"
        );
    }
    assert!(
        c.audit_log(0, 1_000)
            .expect("audit")
            .iter()
            .any(|a| a.actor == "pia" && a.detail.contains("CERTIFIED -> REVOKED"))
    );
}

#[tokio::test]
async fn a_status_changed_on_the_registry_page_shows_on_the_company_page_with_its_reason() {
    let e = staffed();
    let c = &e.central;
    certified(c, OP_A, "acme");
    let acme = company_session(c, "acme").await;
    let olga = staff_session(c, "olga").await;
    let p = page(c, "GET", "/portal", Some(&acme), &[]).await;
    assert!(!p.body.contains("id=\"registry-change\""), "{}", p.body);

    let form = [
        ("status", "SUSPENDED"),
        ("reason", "audit of the seal register"),
    ];
    assert_eq!(
        post(c, &olga, &format!("/registry/{OP_A}/status"), &form).await,
        StatusCode::SEE_OTHER
    );
    for (uri, who) in [
        ("/portal".to_owned(), &acme),
        (format!("/applications/{OP_A}"), &olga),
    ] {
        let p = page(c, "GET", &uri, Some(who), &[]).await;
        let notice = p
            .body
            .split("id=\"registry-change\"")
            .nth(1)
            .unwrap_or_default();
        assert!(
            notice.contains("SUSPENDED") && notice.contains("audit of the seal register"),
            "{uri}: {}",
            p.body
        );
    }
    let p = page(c, "GET", "/portal", Some(&acme), &[]).await;
    assert!(
        p.body.contains("id=\"respond\" data-status=\"SUSPENDED\""),
        "how to respond: {}",
        p.body
    );

    // Reinstated on the registry page: the registry agrees with the certification again.
    let form = [("status", "ACTIVE"), ("reason", "register in order")];
    assert_eq!(
        post(c, &olga, &format!("/registry/{OP_A}/status"), &form).await,
        StatusCode::SEE_OTHER
    );
    let p = page(c, "GET", "/portal", Some(&acme), &[]).await;
    assert!(!p.body.contains("id=\"registry-change\""), "{}", p.body);
    assert!(!p.body.contains("id=\"respond\""), "{}", p.body);
}

#[tokio::test]
async fn requirements_are_shown_in_the_readers_language_with_their_sources() {
    let e = staffed();
    let c = &e.central;
    c.register_company(&registration(OP_A, "acme"), Some("olga"))
        .expect("company");
    let acme = company_session(c, "acme").await;
    let cs1 = STARTER.iter().find(|r| r.id == "CS-1").expect("CS-1");
    for (lang, l) in [
        ("es", protocol::i18n::Lang::Es),
        ("pt", protocol::i18n::Lang::Pt),
        ("en", protocol::i18n::Lang::En),
    ] {
        assert_eq!(
            post(c, &acme, "/lang", &[("lang", lang)]).await,
            StatusCode::SEE_OTHER
        );
        let p = page(c, "GET", "/portal/assessment", Some(&acme), &[]).await;
        assert_eq!(p.status, StatusCode::OK);
        let row = p
            .body
            .split("data-requirement=\"CS-1\"")
            .nth(1)
            .and_then(|r| r.split("</tr>").next())
            .unwrap_or_default();
        let esc = |s: &str| s.replace('&', "&amp;").replace('"', "&quot;");
        assert!(row.contains(&esc(cs1.title_in(l))), "{lang}: {row}");
        assert!(row.contains(&esc(cs1.explanation_in(l))), "{lang}: {row}");
        assert!(
            row.contains(cs1.source) && row.contains(cs1.section),
            "{lang}: {row}"
        );
    }
}

#[tokio::test]
async fn an_admin_lists_company_accounts_on_the_users_page_and_disables_one() {
    let e = staffed();
    let c = &e.central;
    validated(c, OP_A, "acme", "olga");
    let acme = company_session(c, "acme").await;
    let olga = staff_session(c, "olga").await;
    let tom = staff_session(c, "tom").await;

    let p = page(c, "GET", "/users", Some(&olga), &[]).await;
    assert_eq!(p.status, StatusCode::OK);
    let listed = p
        .body
        .split("id=\"company-users\"")
        .nth(1)
        .unwrap_or_default();
    assert!(
        listed.contains("data-user=\"acme\"") && listed.contains(OP_A),
        "{}",
        p.body
    );
    assert_eq!(
        page(c, "GET", "/users", Some(&tom), &[]).await.status,
        StatusCode::FORBIDDEN
    );
    let access = "/users/acme/access";
    assert_eq!(
        post(c, &tom, access, &[("state", "disabled")]).await,
        StatusCode::FORBIDDEN,
        "admins only"
    );
    assert_eq!(
        post(c, &olga, access, &[("state", "active"), ("role", "admin")]).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a company account never gets a staff role"
    );

    assert_eq!(
        post(c, &olga, access, &[("state", "disabled")]).await,
        StatusCode::SEE_OTHER
    );
    let p = page(c, "GET", "/portal", Some(&acme), &[]).await;
    assert!(
        p.status.is_redirection() || p.status.is_client_error(),
        "the open session ends: {}",
        p.status
    );
    let p = page(
        c,
        "POST",
        "/login",
        None,
        &[("user", "acme"), ("password", PASSWORD)],
    )
    .await;
    assert!(
        !p.status.is_redirection() && p.set_cookie.is_none(),
        "no new session for a disabled account: {} {:?}",
        p.status,
        p.set_cookie
    );
    let user = c.user("acme").expect("read").expect("acme");
    assert!(user.disabled);
    assert_eq!(user.role, central::portal::COMPANY_ROLE);
    assert!(
        c.audit_log(0, 1_000)
            .expect("audit")
            .iter()
            .any(|a| a.actor == "olga"
                && a.detail.contains("acme")
                && a.detail.contains("disabled")),
        "audited"
    );

    assert_eq!(
        post(c, &olga, access, &[("state", "active")]).await,
        StatusCode::SEE_OTHER
    );
    let (again, home) = form_login(c, "acme", PASSWORD).await;
    assert_eq!(home, "/portal");
    assert_eq!(
        page(c, "GET", "/portal", Some(&again), &[]).await.status,
        StatusCode::OK
    );
}

/// Every form post of the portal and the dashboard refuses a session's request whose
/// CSRF token is not the session's (403 saying so), with every other field in place, and
/// changes nothing.
#[tokio::test]
async fn every_form_post_refuses_a_wrong_csrf_token() {
    let e = staffed();
    let c = &e.central;
    validated(c, OP_A, "acme", "olga");
    let acme = company_session(c, "acme").await;
    let olga = staff_session(c, "olga").await;
    let before = c.company(OP_A).expect("read").expect("acme");
    let fields = [
        ("csrf", "not the session's"),
        ("text", "x"),
        ("user", "ann"),
        ("password", "ann's long passphrase"),
        ("lang", "es"),
        ("operator", OP_B),
        ("name", "Bravo"),
        ("kind", "EXPORTER"),
        ("status", "SUSPENDED"),
        ("reason", "x"),
        ("state", "disabled"),
    ];
    for (session, uri) in [
        (&acme, "/portal/assessment".to_owned()),
        (&acme, "/portal/apply".to_owned()),
        (&acme, "/portal/findings/1".to_owned()),
        (&acme, "/portal/messages".to_owned()),
        (&acme, "/portal/users".to_owned()),
        (&acme, "/lang".to_owned()),
        (&acme, "/logout".to_owned()),
        (&olga, "/applications".to_owned()),
        (&olga, format!("/applications/{OP_A}/review")),
        (&olga, "/cases/1/acknowledge".to_owned()),
        (&olga, format!("/registry/{OP_A}/status")),
        (&olga, "/users/tom/access".to_owned()),
        (&olga, "/lang".to_owned()),
        (&olga, "/logout".to_owned()),
    ] {
        let p = page(c, "POST", &uri, Some(session), &fields).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{uri}: {}", p.body);
        assert_eq!(p.body, "the request's CSRF token is wrong", "{uri}");
    }
    assert_eq!(c.company(OP_A).expect("read"), Some(before));
    assert!(c.company(OP_B).expect("read").is_none());
    assert!(c.user("ann").expect("read").is_none());
    assert!(!c.user("tom").expect("read").expect("tom").disabled);
    for session in [&acme, &olga] {
        let p = page(c, "GET", "/portal", Some(session), &[]).await;
        assert!(!p.status.is_redirection(), "still logged in: {}", p.status);
    }
}
