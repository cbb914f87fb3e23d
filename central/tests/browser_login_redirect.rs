//! The login's `next` in a real browser: central on 127.0.0.1, headless Chromium driven
//! by `tests/browser/login-redirect.mjs` (playwright-core) follows crafted login links
//! (tab or newline before `//host`, backslashes, other origins) and must stay on
//! central's origin, landing on the home page for any `next` central cannot use.
//!
//! Needs node, `npm ci --prefix tests/browser` and Debian's chromium (`scripts/test`
//! installs them); the test fails naming whichever is missing.

#[path = "../../tests/common/browser.rs"]
mod browser;
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_redirects_stay_on_centrals_origin_in_chromium() {
    let chromium = browser::require_browser(&repo());

    let e = common::env_with(|c| c.rate_limit_per_s = 0);
    e.central
        .add_user("ana.lima", "analyst-pass-2025", "analyst")
        .expect("user");
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
    let script = repo().join("tests/browser/login-redirect.mjs");
    let run = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::task::spawn_blocking(move || {
            Command::new("node")
                .arg(script)
                .env("BASE_URL", &base)
                .env("CHROMIUM", &chromium)
                .env("USER_NAME", "ana.lima")
                .env("USER_PASS", "analyst-pass-2025")
                .output()
                .expect("run node")
        }),
    )
    .await
    .expect("the browser run ends within 2 minutes")
    .expect("join");
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    let out = String::from_utf8_lossy(&run.stdout);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{out}\n{err}");
    assert!(out.contains("login redirects ok"), "{out}\n{err}");
}
