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
use common::{env, form_login, gate, get, page, verified};
use protocol::operator::OperatorId;
use protocol::schema::{AeoStatus, Authorisation, Change};

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

/// Adds staff users: `olga` and `pia` (admins), `tom` (analyst).
fn officers(c: &Central) {
    c.add_user("olga", "olga's long passphrase", "admin")
        .expect("olga");
    c.add_user("pia", "pia's long passphrase", "admin")
        .expect("pia");
    c.add_user("tom", "tom's long passphrase", "analyst")
        .expect("tom");
}

#[allow(clippy::too_many_lines)]
#[tokio::test]
async fn a_company_goes_from_registration_to_certification_and_the_gates_receive_its_record() {
    let e = env();
    let c = &e.central;
    officers(c);
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
    let (olga, _) = form_login(c, "olga", "olga's long passphrase").await;
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
    assert!(p.body.contains("data-status=\"SUBMITTED\""), "{}", p.body);
    assert!(
        !p.body.contains("id=\"benefits\""),
        "no figures before certification"
    );

    // The officer's queue shows it; review, visit, one required change and one
    // recommendation, validation.
    let p = page(c, "GET", "/applications", Some(&olga), &[]).await;
    assert!(
        p.body.contains(&format!("data-company=\"{OP_A}\"")),
        "{}",
        p.body
    );
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
    assert!(p.body.contains("data-status=\"VALIDATED\""), "{}", p.body);
    assert!(
        p.body.contains("olga"),
        "the handling official's name: {}",
        p.body
    );

    // The validating officer may not certify; another may once the change is answered.
    let before = c.registry_seq().expect("seq");
    assert_eq!(
        post(c, &olga, &format!("{file}/certify"), &[]).await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let (pia, _) = form_login(c, "pia", "pia's long passphrase").await;
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
    let a = get(
        c,
        &format!("/api/v1/registry/changes?port=P1&after={before}"),
        Some(&agent),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    let batch = verified(c, a.json).1;
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
    assert!(p.body.contains("data-status=\"CERTIFIED\""), "{}", p.body);
    assert!(
        p.body.contains("id=\"benefits\""),
        "its figures: {}",
        p.body
    );
    assert!(
        p.body.contains("Pia Ramos"),
        "the contact point: {}",
        p.body
    );

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
    let a = get(
        c,
        &format!("/api/v1/registry/changes?port=P1&after={certified}"),
        Some(&agent),
    )
    .await;
    let batch = verified(c, a.json).1;
    assert_eq!(batch.changes.len(), 1, "{:?}", batch.changes);
    let p = page(c, "GET", "/portal", Some(&acme), &[]).await;
    assert!(p.body.contains("data-status=\"SUSPENDED\""), "{}", p.body);
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
    let e = env();
    let c = &e.central;
    officers(c);
    validated(c, OP_A, "acme", "olga");
    let uri = format!("/applications/{OP_A}/certify");
    let (olga, _) = form_login(c, "olga", "olga's long passphrase").await;
    let (tom, _) = form_login(c, "tom", "tom's long passphrase").await;
    let (pia, _) = form_login(c, "pia", "pia's long passphrase").await;
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
    let e = env();
    let c = &e.central;
    officers(c);
    validated(c, OP_A, "acme", "olga");
    validated(c, OP_B, "bravo", "olga");
    let (acme, _) = form_login(c, "acme", PASSWORD).await;
    let p = page(c, "GET", "/portal", Some(&acme), &[]).await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(
        p.body.contains(OP_A) && !p.body.contains(OP_B),
        "{}",
        p.body
    );

    let file_b = format!("/applications/{OP_B}");
    for uri in [
        "/cases",
        "/gates",
        "/charts",
        "/programme",
        "/registry",
        "/users",
        "/applications",
        file_b.as_str(),
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
    let (olga, _) = form_login(c, "olga", "olga's long passphrase").await;
    assert_eq!(
        page(c, "GET", "/portal", Some(&olga), &[]).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(c, &olga, "/portal/messages", &[("text", "hi")]).await,
        StatusCode::FORBIDDEN
    );
    let p = page(c, "GET", "/portal", None, &[]).await;
    assert!(p.status.is_redirection(), "{}", p.status);
    assert!(p.location.is_some_and(|l| l.starts_with("/login")));
}
