//! The programme portal in a real browser: central on 127.0.0.1, headless Chromium
//! driven by `tests/browser/portal.mjs` (playwright-core) walks a company from
//! self-registration through the self-assessment, the application, a validation visit
//! with one required change and one recommendation, to certification by a second admin;
//! then the operator's registry record is checked here. Screenshots go to
//! `target/screens/`; with `AEOGATE_UPDATE_SCREENS=1` also to `docs/screens/`.
//!
//! Needs node, `npm ci --prefix tests/browser` and Debian's chromium (`scripts/test`
//! installs them); the test fails naming whichever is missing.

#[path = "../../tests/common/browser.rs"]
mod browser;
mod common;

use std::time::Duration;

use protocol::operator::OperatorId;
use protocol::schema::AeoStatus;

const OPERATOR: &str = "EU-AEO:DE123456789012345";
const STAFF_PASS: &str = "officer passphrase 2026";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_company_is_walked_from_registration_to_certification_in_chromium() {
    let chromium = browser::require_browser(&browser::repo());
    let e = common::env_with(|c| c.rate_limit_per_s = 0);
    for user in ["olga.officer", "pia.admin"] {
        e.central.add_user(user, STAFF_PASS, "admin").expect("user");
    }
    let screens = browser::screens_dir(&browser::repo());
    let out = common::while_served(&e, async |base| {
        let env = vec![
            ("BASE_URL", base.into()),
            ("CHROMIUM", chromium.into()),
            ("OPERATOR", OPERATOR.into()),
            ("OFFICER_USER", "olga.officer".into()),
            ("CERTIFIER_USER", "pia.admin".into()),
            ("STAFF_PASS", STAFF_PASS.into()),
            ("SCREENS", screens.clone().into()),
        ];
        let limit = Duration::from_secs(180);
        browser::run_node(&browser::repo(), "portal.mjs", env, limit).await
    })
    .await;
    assert!(out.contains("portal walk ok"), "{out}");

    let op = OperatorId::parse(OPERATOR).expect("op");
    let record = e.central.operator(&op).expect("read").expect("record");
    assert_eq!(record.status, AeoStatus::Active);
    let audit = e.central.audit_log(0, 1000).expect("audit");
    assert!(
        audit
            .iter()
            .any(|a| a.actor == "pia.admin" && a.detail.contains("VALIDATED -> CERTIFIED")),
        "the second admin certified"
    );

    browser::update_docs(&browser::repo(), &screens, "portal-");
}
