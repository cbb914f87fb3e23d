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

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_redirects_stay_on_centrals_origin_in_chromium() {
    let chromium = browser::require_browser(&browser::repo());

    let e = common::env_with(|c| c.rate_limit_per_s = 0);
    e.central
        .add_user("ana.lima", "analyst-pass-2025", "analyst")
        .expect("user");
    let out = common::while_served(&e, async |base| {
        let env = vec![
            ("BASE_URL", base.into()),
            ("CHROMIUM", chromium.into()),
            ("USER_NAME", "ana.lima".into()),
            ("USER_PASS", "analyst-pass-2025".into()),
        ];
        let limit = Duration::from_secs(120);
        browser::run_node(&browser::repo(), "login-redirect.mjs", env, limit).await
    })
    .await;
    assert!(out.contains("login redirects ok"), "{out}");
}
