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

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use protocol::operator::OperatorId;
use protocol::schema::AeoStatus;

const OPERATOR: &str = "EU-AEO:DE123456789012345";
const STAFF_PASS: &str = "officer passphrase 2026";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_company_is_walked_from_registration_to_certification_in_chromium() {
    let chromium = browser::require_browser(&repo());
    let e = common::env_with(|c| c.rate_limit_per_s = 0);
    for user in ["olga.officer", "pia.admin"] {
        e.central.add_user(user, STAFF_PASS, "admin").expect("user");
    }
    central::server::install_crypto_provider();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(central::serve_with_listener(
        e.central.clone(),
        listener,
        e.cfg.clone(),
        stop.clone(),
    ));
    let base = format!("http://{addr}");
    let screens = repo().join("target/screens");
    std::fs::create_dir_all(&screens).expect("screens dir");
    let script = repo().join("tests/browser/portal.mjs");
    let shots = screens.clone();
    let run = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::task::spawn_blocking(move || {
            Command::new("node")
                .arg(script)
                .env("BASE_URL", &base)
                .env("CHROMIUM", &chromium)
                .env("OPERATOR", OPERATOR)
                .env("OFFICER_USER", "olga.officer")
                .env("CERTIFIER_USER", "pia.admin")
                .env("STAFF_PASS", STAFF_PASS)
                .env("SCREENS", &shots)
                .output()
                .expect("run node")
        }),
    )
    .await
    .expect("the browser run ends within 3 minutes")
    .expect("join");
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    let out = String::from_utf8_lossy(&run.stdout);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{out}\n{err}");
    assert!(out.contains("portal walk ok"), "{out}\n{err}");

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

    if std::env::var("AEOGATE_UPDATE_SCREENS").is_ok_and(|v| v == "1") {
        let docs = repo().join("docs/screens");
        for e in std::fs::read_dir(&screens).expect("screens") {
            let p = e.expect("entry").path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.starts_with("portal-") && name.ends_with(".png") {
                std::fs::copy(&p, docs.join(name)).expect("copy screen");
            }
        }
    }
}
