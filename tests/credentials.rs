//! Credential life cycle against the real `central` binary on loopback: an agent token
//! rotated with a grace period (old and new both work, then the old one is refused), a
//! revoked token refused with 403 by the running central at once, the same from the CLI
//! (`central agent revoke`), and the gate shown as revoked in the gate list.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{CentralSite, GATE, STEP, Transport, binary, http_client};
use serde_json::{Value, json};

const ADMIN: (&str, &str) = ("cred-admin", "cred-admin-password-7");

/// A central with an admin user, running.
async fn central(dir: &std::path::Path) -> CentralSite {
    let mut site = CentralSite::create(dir, Transport::PlainHttp);
    site.open()
        .add_user(ADMIN.0, ADMIN.1, "admin")
        .expect("admin user");
    site.start().await;
    site
}

/// Central started in `dir`, an HTTP client, and the administrator's session.
async fn central_with_admin(dir: &std::path::Path) -> (CentralSite, reqwest::Client, String) {
    let site = central(dir).await;
    let http = http_client(None);
    let admin = login(&http, &site, ADMIN).await;
    (site, http, admin)
}

async fn login(http: &reqwest::Client, site: &CentralSite, who: (&str, &str)) -> String {
    common::login(http, &site.url, who).await
}

/// The status of `request` sent with `token` as bearer (and the step timeout); `what` names
/// it if it fails.
async fn status_of(request: reqwest::RequestBuilder, token: &str, what: &str) -> u16 {
    request
        .bearer_auth(token)
        .timeout(STEP)
        .send()
        .await
        .expect(what)
        .status()
        .as_u16()
}

/// The status of one heartbeat sent with `token`.
async fn heartbeat(http: &reqwest::Client, site: &CentralSite, token: &str) -> u16 {
    let beat = json!({
        "v": protocol::schema::SCHEMA_VERSION, "agent": GATE, "at": jiff::Timestamp::now(),
        "devices": [], "replica_seq": 0, "journal_head": 0, "acked_seq": 0, "backlog": 0,
        "version": "credentials-test",
    });
    let url = format!("{}/api/v1/agents/{GATE}/heartbeat", site.url);
    status_of(http.post(url).json(&beat), token, "heartbeat request").await
}

async fn admin_post(
    http: &reqwest::Client,
    site: &CentralSite,
    session: &str,
    what: &str,
    body: Value,
) -> Value {
    let r = http
        .post(format!("{}/api/v1/gates/{GATE}/{what}", site.url))
        .bearer_auth(session)
        .json(&body)
        .timeout(STEP)
        .send()
        .await
        .expect("admin request");
    assert_eq!(r.status().as_u16(), 200, "{what}");
    r.json().await.expect("admin answer")
}

async fn gate_status(http: &reqwest::Client, site: &CentralSite, session: &str) -> Value {
    let all: Value = http
        .get(format!("{}/api/v1/gates", site.url))
        .bearer_auth(session)
        .timeout(STEP)
        .send()
        .await
        .expect("gates request")
        .json()
        .await
        .expect("gates answer");
    all.as_array()
        .and_then(|a| a.iter().find(|g| g["gate"] == GATE).cloned())
        .expect("the test gate is listed")
}

fn central_cli(site: &CentralSite, args: &[&str]) -> std::process::Output {
    Command::new(binary("central"))
        .arg("--config")
        .arg(&site.config_path)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run central")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_works_during_the_grace_and_is_refused_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (site, http, admin) = central_with_admin(dir.path()).await;
    assert_eq!(heartbeat(&http, &site, &site.token).await, 204);

    let grace = Duration::from_secs(2);
    let rotated = Instant::now();
    let r = admin_post(
        &http,
        &site,
        &admin,
        "rotate",
        json!({"grace_secs": grace.as_secs()}),
    )
    .await;
    assert_eq!(r["old_tokens"], 1, "{r}");
    let new = r["token"].as_str().expect("new token").to_owned();
    assert_ne!(new, site.token);
    // Within the grace both tokens work.
    assert_eq!(heartbeat(&http, &site, &site.token).await, 204);
    assert_eq!(heartbeat(&http, &site, &new).await, 204);
    assert!(
        rotated.elapsed() < grace,
        "the checks within the grace took too long to mean anything"
    );
    // After it the old one is refused, the new one still works (bounded wait).
    let deadline = Instant::now() + grace + STEP;
    let refused = loop {
        let s = heartbeat(&http, &site, &site.token).await;
        if s != 204 || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(refused, 403, "the old token after the grace");
    assert!(rotated.elapsed() >= grace, "refused before the grace ended");
    assert_eq!(heartbeat(&http, &site, &new).await, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_at_once_and_the_gate_shows_revoked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut site, http, admin) = central_with_admin(dir.path()).await;
    assert_eq!(heartbeat(&http, &site, &site.token).await, 204);
    assert_eq!(
        gate_status(&http, &site, &admin).await["revoked_at"],
        Value::Null
    );

    let r = admin_post(&http, &site, &admin, "revoke", json!({})).await;
    assert_eq!(r["revoked"], 1, "{r}");
    assert_eq!(heartbeat(&http, &site, &site.token).await, 403);
    let g = gate_status(&http, &site, &admin).await;
    assert!(g["revoked_at"].is_string(), "{g}");
    // The gate health page shows it.
    let page = http
        .get(format!("{}/gates", site.url))
        .header(
            "cookie",
            format!(
                "{}={admin}",
                central::dashboard::session::cookie_name(false)
            ),
        )
        .timeout(STEP)
        .send()
        .await
        .expect("page request")
        .text()
        .await
        .expect("page");
    assert!(
        page.contains(r#"class="gate revoked""#) && page.contains("REVOKED"),
        "{page}"
    );
    // An analyst may not revoke.
    let analyst = login(&http, &site, common::STAFF).await;
    let s = http
        .post(format!("{}/api/v1/gates/{GATE}/revoke", site.url))
        .bearer_auth(&analyst)
        .json(&json!({}))
        .timeout(STEP)
        .send()
        .await
        .expect("request")
        .status();
    assert_eq!(s.as_u16(), 403);

    // The CLI, on the stopped central: a new token lifts the mark, `agent rotate --grace
    // 0s` replaces it at once, and `agent revoke` revokes the replacement.
    site.stop();
    let add = central_cli(&site, &["agent", "add", GATE, "--port", common::PORT]);
    assert!(add.status.success(), "{add:?}");
    let added = String::from_utf8(add.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    let rotate = central_cli(&site, &["agent", "rotate", GATE, "--grace", "0s"]);
    assert!(rotate.status.success(), "{rotate:?}");
    let token = String::from_utf8(rotate.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    assert_eq!(token.len(), added.len(), "one token on standard output");
    let bad = central_cli(&site, &["agent", "rotate", GATE, "--grace", "-1h"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    site.start().await;
    assert_eq!(heartbeat(&http, &site, &added).await, 403);
    assert_eq!(heartbeat(&http, &site, &token).await, 204);
    assert_eq!(
        gate_status(&http, &site, &admin).await["revoked_at"],
        Value::Null
    );
    site.stop();
    let revoke = central_cli(&site, &["agent", "revoke", GATE]);
    assert!(revoke.status.success(), "{revoke:?}");
    let out = String::from_utf8_lossy(&revoke.stdout);
    assert!(out.contains("1 token(s) revoked"), "{out}");
    let unknown = central_cli(&site, &["agent", "revoke", "PORT9-G9"]);
    assert_eq!(unknown.status.code(), Some(1));
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(err.contains("PORT9-G9"), "{err}");
    site.start().await;
    assert_eq!(heartbeat(&http, &site, &token).await, 403);
}

async fn staff_get(http: &reqwest::Client, site: &CentralSite, session: &str, path: &str) -> u16 {
    let url = format!("{}{path}", site.url);
    status_of(http.get(url), session, "staff request").await
}

async fn set_access(
    http: &reqwest::Client,
    site: &CentralSite,
    admin: &str,
    name: &str,
    body: Value,
) -> u16 {
    let url = format!("{}/api/v1/users/{name}/access", site.url);
    status_of(http.post(url).json(&body), admin, "access request").await
}

/// The status of the dashboard's gate page with `session` as the cookie.
async fn dashboard(site: &CentralSite, session: &str) -> reqwest::StatusCode {
    let name = central::dashboard::session::cookie_name(false);
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(format!("{}/gates", site.url))
        .header("cookie", format!("{name}={session}"))
        .timeout(STEP)
        .send()
        .await
        .expect("page request")
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_users_open_session_is_refused_at_once_and_a_role_change_applies_to_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut site, http, admin) = central_with_admin(dir.path()).await;
    let analyst = login(&http, &site, common::STAFF).await;
    let (name, _) = common::STAFF;
    assert_eq!(
        staff_get(&http, &site, &analyst, "/api/v1/gates").await,
        200
    );
    assert_eq!(dashboard(&site, &analyst).await.as_u16(), 200);

    // Promoted: the open session may revoke at once; demoted again: it may not.
    let revoke = |session: String| {
        let http = http.clone();
        let url = format!("{}/api/v1/gates/{GATE}/revoke", site.url);
        async move {
            http.post(url)
                .bearer_auth(session)
                .json(&json!({}))
                .timeout(STEP)
                .send()
                .await
                .expect("revoke request")
                .status()
                .as_u16()
        }
    };
    assert_eq!(revoke(analyst.clone()).await, 403);
    assert_eq!(
        set_access(&http, &site, &admin, name, json!({"role": "admin"})).await,
        200
    );
    assert_eq!(revoke(analyst.clone()).await, 200);
    assert_eq!(
        set_access(&http, &site, &admin, name, json!({"role": "analyst"})).await,
        200
    );
    assert_eq!(revoke(analyst.clone()).await, 403);

    // Disabled: the open session is refused on its next request, and so is a new login.
    assert_eq!(
        set_access(&http, &site, &admin, name, json!({"disabled": true})).await,
        200
    );
    assert_eq!(
        staff_get(&http, &site, &analyst, "/api/v1/gates").await,
        401
    );
    let r = http
        .post(format!("{}/api/v1/login", site.url))
        .json(&json!({"user": common::STAFF.0, "password": common::STAFF.1}))
        .timeout(STEP)
        .send()
        .await
        .expect("login request");
    assert_eq!(r.status().as_u16(), 401);
    // The dashboard refuses the session's cookie too (a redirect to the login page).
    assert!(dashboard(&site, &analyst).await.is_redirection());

    // The CLI on the stopped central re-enables the user; a new login works again.
    site.stop();
    let out = central_cli(&site, &["user", "enable", name]);
    assert!(out.status.success(), "{out:?}");
    let out = central_cli(&site, &["user", "disable", "nobody"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    site.start().await;
    let again = login(&http, &site, common::STAFF).await;
    assert_eq!(staff_get(&http, &site, &again, "/api/v1/gates").await, 200);

    // The dashboard's user page (admin): the form disables the user, whose new session
    // is refused at once; an analyst cannot open the page.
    let cookie = |session: &str| {
        format!(
            "{}={session}",
            central::dashboard::session::cookie_name(false)
        )
    };
    let users_page = |session: String| {
        let http = http.clone();
        let url = format!("{}/users", site.url);
        let cookie = cookie(&session);
        async move {
            let r = http
                .get(url)
                .header("cookie", cookie)
                .timeout(STEP)
                .send()
                .await
                .expect("users page");
            (r.status().as_u16(), r.text().await.expect("page"))
        }
    };
    let (status, page) = users_page(admin.clone()).await;
    assert_eq!(status, 200);
    assert!(page.contains(&format!("data-user=\"{name}\"")), "{page}");
    assert_eq!(users_page(again.clone()).await.0, 403);
    let form = http
        .post(format!("{}/users/{name}/access", site.url))
        .header("cookie", cookie(&admin))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "csrf={}&role=analyst&state=disabled",
            central::auth::csrf_token(&admin)
        ))
        .timeout(STEP)
        .send()
        .await
        .expect("form post");
    assert!(
        form.status().is_success() || form.status().is_redirection(),
        "{}",
        form.status()
    );
    assert_eq!(staff_get(&http, &site, &again, "/api/v1/gates").await, 401);
    let (_, page) = users_page(admin.clone()).await;
    assert!(page.contains("disabled"), "{page}");
}

fn agent_cli(site: &common::AgentSite, args: &[&str], stdin: &str) -> std::process::Output {
    let mut cmd = Command::new(binary("edge-agent"));
    cmd.args(args)
        .arg("--config")
        .arg(&site.config_path)
        .env("RUST_LOG", "warn");
    common::process::output_with_stdin(&mut cmd, stdin)
}

async fn console_lanes(http: &reqwest::Client, agent: &common::AgentSite, session: &str) -> u16 {
    let url = format!("{}/api/v1/lanes", agent.base);
    status_of(http.get(url), session, "console request").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_console_account_loses_its_open_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = CentralSite::started(dir.path(), Transport::PlainHttp).await;
    let lanes = [common::LaneSpec::manual("L1")];
    let mut agent = common::AgentSite::beside(dir.path(), &hub, &lanes, "1h");
    let pw = "console-officer-password-3";
    let add = agent_cli(
        &agent,
        &["user", "add", "olga", "--role", "officer"],
        &format!("{pw}\n"),
    );
    assert!(add.status.success(), "{add:?}");
    agent.start().await;
    let http = http_client(None);
    let body = json!({"name": "olga", "password": pw});
    let request = http
        .post(format!("{}/api/v1/login", agent.base))
        .json(&body);
    let response = request.timeout(STEP).send().await.expect("login request");
    let answer: Value = response.json().await.expect("login answer");
    let session = answer["token"]
        .as_str()
        .expect("console session")
        .to_owned();
    assert_eq!(console_lanes(&http, &agent, &session).await, 200);

    // The account is disabled with the agent stopped (the store is one process's); the
    // session, which survives restarts, is refused by the restarted agent.
    agent.terminate();
    let out = agent_cli(&agent, &["user", "disable", "olga"], "");
    assert!(out.status.success(), "{out:?}");
    let list = agent_cli(&agent, &["user", "list"], "");
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("olga\tofficer\ten\tdisabled"),
        "{list:?}"
    );
    agent.start().await;
    assert_eq!(console_lanes(&http, &agent, &session).await, 401);
    let s = http
        .post(format!("{}/api/v1/login", agent.base))
        .json(&json!({"name": "olga", "password": pw}))
        .timeout(STEP)
        .send()
        .await
        .expect("login request")
        .status();
    assert_eq!(s.as_u16(), 401, "a disabled account cannot log in");
}
