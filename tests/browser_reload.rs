//! The console after live reconfigurations, in a real browser: headless Chromium driven by
//! `tests/browser/reload.mjs` (playwright-core) against an agent started in-process from a
//! configuration file, reloaded over its control socket (what `edge-agent reload` does).
//!
//! A refused reload shows a banner naming the key and its line, in the officer's language;
//! an applied one replaces it with the policy ids before and after. The screenshot
//! `agent-reload-refused.png` goes to `target/screens/` (and to `docs/screens/` with
//! `AEOGATE_UPDATE_SCREENS=1`).
#![cfg(unix)]

#[path = "common/browser.rs"]
mod browser;

use std::path::{Path, PathBuf};
use std::time::Duration;

use edge_agent::config::Config;
use edge_agent::console::Role;
use edge_agent::reload::{control_socket_path, request_reload};
use protocol::i18n::Lang;
use protocol::schema::GateId;
use tokio_util::sync::CancellationToken;

const PASSWORD: &str = "gate-booth-password-1";
const LIMIT: Duration = Duration::from_secs(120);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn config_text(store: &Path, policy: &str, rate: &str) -> String {
    format!(
        "[gate]\nid = \"PORT1-G1\"\nname = \"reload gate\"\nport = \"PORT1\"\n\n\
         [[lanes]]\nid = \"L1\"\nname = \"Lane 1\"\npresence_loop = false\n\
         [lanes.routes]\nfast = \"L1 priority\"\nstandard = \"L1 standard\"\ninspect = \"L1 inspection\"\n\n\
         [store]\npath = {}\n\n\
         [policy]\nname = \"{policy}\"\nrandom_rate_aeo = {rate}\nrandom_rate_other = 0.01\nrandom_key = \"browser-reload-random-key\"\n\n\
         [console]\nbind = \"127.0.0.1:0\"\n",
        toml::Value::String(store.to_string_lossy().into_owned())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_a_refused_reload_with_key_and_line_in_chromium() {
    browser::require_browser(&root());
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("agent.redb");
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, config_text(&store, "browser-p1", "0.001")).expect("write config");
    let gate = GateId::parse("PORT1-G1").expect("gate");
    for (name, lang) in [("ana.officer", Lang::En), ("eva.oficial", Lang::Es)] {
        edge_agent::console::add_user_to_store_file(
            &store,
            gate.clone(),
            name,
            PASSWORD,
            Role::Officer,
            lang,
        )
        .expect("account");
    }
    let cfg = Config::load(&path).expect("valid config");
    let stop = CancellationToken::new();
    let agent = edge_agent::runtime::start_from(cfg, Some(path.clone()), stop.clone())
        .await
        .expect("agent starts");
    let socket = control_socket_path(&store);

    let screens = browser::screens_dir(&root());
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(root().join("tests/browser/reload.mjs"))
        .env("AGENT_URL", format!("http://{}", agent.console_addr))
        .env("PASSWORD", PASSWORD)
        .env("SCREENS", &screens);
    let run = browser::run_script(cmd, "reload.mjs", LIMIT, async |line: &str| {
        let text = match line {
            "@@reload:invalid" => config_text(&store, "browser-p1", "7.0"),
            "@@reload:policy" => config_text(&store, "browser-p2", "0.001"),
            _ => return None,
        };
        std::fs::write(&path, text).expect("write config");
        let outcome = request_reload(&socket, None).await.expect("agent answers");
        let expected = line.ends_with("invalid");
        Some(if outcome.is_refused() == expected {
            "ok".to_string()
        } else {
            format!("unexpected: {}", outcome.to_text())
        })
    })
    .await;
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), agent.join).await;
    run.assert_passed();
    browser::update_docs(&root(), &screens, "agent-reload-refused");
}
