//! The console API of a started agent, over a real socket on 127.0.0.1:0.

use std::time::Duration;

use edge_agent::config::Config;
use edge_agent::console::{Role, add_session_to_store_file, add_user_to_store_file};
use edge_agent::runtime::{AgentHandle, start};
use protocol::schema::{ActionKind, EventBody, LaneDecision};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const STEP: Duration = Duration::from_secs(5);

fn config(dir: &std::path::Path) -> Config {
    let text = format!(
        r#"
[gate]
id = "G1"
port = "PORT-A"

[[lanes]]
id = "L1"
[lanes.routes]
fast = "Lane 1 priority"
standard = "Lane 1 standard"
inspect = "Inspection bay A"

[[lanes]]
id = "L2"
presence_loop = false
quiet_close = "60s"
[lanes.routes]
fast = "Lane 2 priority"
standard = "Lane 2 standard"
inspect = "Inspection bay B"

[store]
path = "{}"

[policy]
random_key = "test-key-not-secret"

[console]
bind = "127.0.0.1:0"
"#,
        dir.join("agent.redb").display()
    );
    Config::from_toml_str(&text, "test.toml").expect("valid test config")
}

/// Sessions stored before start, so most tests skip the (deliberately slow) password hash.
const OFFICER: &str = "officer-session-token-for-tests-0000000001";
const SUPERVISOR: &str = "supervisor-session-token-for-tests-00000002";

async fn agent(dir: &std::path::Path) -> (AgentHandle, CancellationToken, String) {
    edge_agent::uplink::install_crypto_provider();
    let gate = protocol::schema::GateId::parse("G1").expect("gate");
    let store = dir.join("agent.redb");
    for (name, role, token) in [
        ("o.smith", Role::Officer, OFFICER),
        ("s.jones", Role::Supervisor, SUPERVISOR),
    ] {
        add_session_to_store_file(
            &store,
            gate.clone(),
            name,
            role,
            token,
            Duration::from_secs(600),
        )
        .expect("session stored");
    }
    let shutdown = CancellationToken::new();
    let handle = start(config(dir), shutdown.clone())
        .await
        .expect("agent starts");
    let base = format!("http://{}", handle.console_addr);
    (handle, shutdown, base)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(STEP)
        .build()
        .expect("client")
}

#[tokio::test]
async fn lanes_report_a_never_loaded_replica_as_stale_and_ready_stays_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (handle, shutdown, base) = agent(dir.path()).await;
    let c = client();
    let lanes: Value = c
        .get(format!("{base}/api/v1/lanes"))
        .bearer_auth(OFFICER)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(lanes[0]["lane"], "L1");
    assert_eq!(lanes[0]["replica"]["stale"], true);
    let degraded = lanes[0]["degraded"].to_string();
    assert!(degraded.contains("replica stale"), "{degraded}");

    let ready = c.get(format!("{base}/readyz")).send().await.expect("get");
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.expect("json");
    assert_eq!(
        (ready["ready"].clone(), ready["replica"]["stale"].clone()),
        (json!(true), json!(true))
    );
    let healthz = c.get(format!("{base}/healthz")).send().await.expect("get");
    assert_eq!(healthz.status(), 200);

    shutdown.cancel();
    tokio::time::timeout(STEP, handle.join)
        .await
        .expect("stops")
        .expect("joined")
        .expect("clean stop");
}

#[tokio::test]
async fn officer_actions_are_validated_then_journaled_with_the_officer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (handle, shutdown, base) = agent(dir.path()).await;
    let c = client();
    let url = format!("{base}/api/v1/lanes/L1/actions");
    let tx = uuid::Uuid::now_v7();
    let override_body = json!({"transaction_id": tx, "action": "OVERRIDE", "to": "INSPECT", "reason": "driver behaviour", "note": ""});

    let r = c
        .post(&url)
        .json(&override_body)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 401, "no session");
    let blank = json!({"transaction_id": tx, "action": "OVERRIDE", "to": "FAST", "reason": "  ", "note": ""});
    let r = c
        .post(&url)
        .bearer_auth(OFFICER)
        .json(&blank)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400, "an override needs a reason");
    let r = c
        .post(format!("{base}/api/v1/lanes/L9/actions"))
        .bearer_auth(OFFICER)
        .json(&override_body)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 404);
    let bad_container =
        json!({"action": "MANUAL_ENTRY", "value": {"kind": "CONTAINER", "number": "CSQU3054384"}});
    let r = c
        .post(&url)
        .bearer_auth(OFFICER)
        .json(&bad_container)
        .send()
        .await
        .expect("post");
    assert_eq!(
        r.status(),
        400,
        "a container number with a wrong check digit is refused"
    );
    let err: Value = r.json().await.expect("json");
    assert!(err["error"].as_str().is_some_and(|e| !e.is_empty()));

    let r = c
        .post(&url)
        .bearer_auth(OFFICER)
        .json(&override_body)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 201);
    let accepted: Value = r.json().await.expect("json");
    let seq = accepted["seq"].as_u64().expect("seq");

    let entry = handle
        .shared
        .store
        .entry(seq)
        .expect("read journal")
        .expect("entry exists");
    match entry.body {
        EventBody::OfficerAction { action } => {
            assert_eq!(action.officer, "o.smith");
            assert_eq!(action.transaction_id, Some(tx));
            assert!(matches!(
                action.kind,
                ActionKind::Override {
                    to: LaneDecision::Inspect,
                    ..
                }
            ));
        }
        other => panic!("expected an officer action, got {other:?}"),
    }
    let lanes: Value = c
        .get(format!("{base}/api/v1/lanes"))
        .bearer_auth(OFFICER)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(lanes[0]["shown"]["decision"], "INSPECT");
    assert_eq!(lanes[0]["shown"]["officer_override"], true);

    let metrics = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("aeogate_officer_actions_total"),
        "{metrics}"
    );

    shutdown.cancel();
    tokio::time::timeout(STEP, handle.join)
        .await
        .expect("stops")
        .expect("joined")
        .expect("clean stop");
}

#[tokio::test]
async fn sse_streams_lane_changes_and_ends_at_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (handle, shutdown, base) = agent(dir.path()).await;
    let c = reqwest::Client::new();
    let resp = c
        .get(format!("{base}/api/v1/events"))
        .bearer_auth(OFFICER)
        .send()
        .await
        .expect("sse");
    assert_eq!(resp.status(), 200);
    let mut body = resp;
    let tx = uuid::Uuid::now_v7();
    let r = client()
        .post(format!("{base}/api/v1/lanes/L1/actions"))
        .bearer_auth(SUPERVISOR)
        .json(&json!({"transaction_id": tx, "action": "OVERRIDE", "to": "STANDARD", "reason": "queue", "note": ""}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 201);
    let mut seen = String::new();
    tokio::time::timeout(STEP, async {
        while !seen.contains("event: lane") || !seen.contains("STANDARD") {
            let chunk = body.chunk().await.expect("chunk").expect("stream open");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("a lane event in time");

    shutdown.cancel();
    // The open SSE stream must not hold the shutdown.
    tokio::time::timeout(STEP, handle.join)
        .await
        .expect("stops despite SSE")
        .expect("joined")
        .expect("clean stop");
    let rest = tokio::time::timeout(STEP, async {
        while let Ok(Some(_)) = body.chunk().await {}
    })
    .await;
    assert!(rest.is_ok(), "stream ended");
}

#[tokio::test]
async fn shutdown_closes_the_open_transaction_and_journals_it_with_a_decision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (handle, shutdown, base) = agent(dir.path()).await;
    let c = client();
    // A manual entry on a lane without a loop opens a transaction.
    let r = c
        .post(format!("{base}/api/v1/lanes/L2/actions"))
        .bearer_auth(OFFICER)
        .json(&json!({"action": "MANUAL_ENTRY", "value": {"kind": "CONTAINER", "number": "CSQU3054383"}}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 201);
    tokio::time::timeout(STEP, async {
        loop {
            let lanes: Value = c
                .get(format!("{base}/api/v1/lanes"))
                .bearer_auth(OFFICER)
                .send()
                .await
                .expect("get")
                .json()
                .await
                .expect("json");
            if lanes[1]["lane"] == "L2" && !lanes[1]["open"].is_null() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("transaction opens");

    let store = handle.shared.store.clone();
    shutdown.cancel();
    tokio::time::timeout(STEP, handle.join)
        .await
        .expect("stops")
        .expect("joined")
        .expect("clean stop");
    let lane = protocol::schema::LaneId::parse("L2").expect("lane");
    let rows = store
        .recent_transactions(Some(&lane), None, 10)
        .expect("history");
    let (tx, decision) = rows.first().expect("the open transaction was journaled");
    assert_eq!(tx.close_reason, protocol::schema::CloseReason::Shutdown);
    assert_eq!(tx.reads[0].entered_by.as_deref(), Some("o.smith"));
    assert!(decision.is_some(), "decided for the record");
}

#[tokio::test]
async fn accounts_roles_csrf_and_login_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gate = protocol::schema::GateId::parse("G1").expect("gate");
    let store = dir.path().join("agent.redb");
    add_user_to_store_file(
        &store,
        gate.clone(),
        "ana",
        "ana-password-1",
        Role::Officer,
        protocol::i18n::Lang::Es,
    )
    .expect("officer account");
    add_user_to_store_file(
        &store,
        gate,
        "terminal",
        "terminal-password-1",
        Role::Operator,
        protocol::i18n::Lang::En,
    )
    .expect("operator account");
    let (handle, shutdown, base) = agent(dir.path()).await;
    let c = reqwest::Client::builder()
        .timeout(STEP)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");

    // Nothing but login, health and metrics without a session.
    let r = c
        .get(format!("{base}/api/v1/lanes"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401);
    let r = c.get(format!("{base}/console")).send().await.expect("get");
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login");
    let r = c.get(format!("{base}/login")).send().await.expect("get");
    assert_eq!(r.status(), 200);

    // Script login: a bearer token; the operator is kept away from reasons and actions.
    let login = |name: &str, pw: &str| {
        c.post(format!("{base}/api/v1/login"))
            .json(&json!({"name": name, "password": pw}))
            .send()
    };
    let r = login("terminal", "terminal-password-1")
        .await
        .expect("login");
    assert_eq!(r.status(), 200);
    let op: Value = r.json().await.expect("json");
    let op_token = op["token"].as_str().expect("token").to_owned();
    assert_eq!(op["role"], "operator");
    for path in [
        "/api/v1/lanes",
        "/api/v1/transactions",
        "/console",
        "/console/history",
    ] {
        let r = c
            .get(format!("{base}{path}"))
            .bearer_auth(&op_token)
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 403, "{path} for an operator");
    }
    let r = c
        .post(format!("{base}/api/v1/lanes/L1/actions"))
        .bearer_auth(&op_token)
        .json(&json!({"action": "MANUAL_ENTRY", "value": {"kind": "CONTAINER", "number": "CSQU3054383"}}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403, "operators cannot act on lanes");
    let r = c
        .get(format!("{base}/operator"))
        .bearer_auth(&op_token)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);

    // Browser login: cookie flags; cookie calls need the CSRF token and a same-site origin.
    let r = c
        .post(format!("{base}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=ana&password=ana-password-1")
        .send()
        .await
        .expect("form login");
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().expect("pair").to_owned();
    let page = c
        .get(format!("{base}/console"))
        .header("cookie", &session)
        .send()
        .await
        .expect("console");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("Consola del oficial"), "Spanish for ana");
    let csrf = html
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("csrf meta")
        .to_owned();
    let manual =
        json!({"action": "MANUAL_ENTRY", "value": {"kind": "SEAL", "number": "EU1234567"}});
    let url = format!("{base}/api/v1/lanes/L2/actions");
    let r = c
        .post(&url)
        .header("cookie", &session)
        .json(&manual)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403, "cookie without CSRF token");
    let r = c
        .post(&url)
        .header("cookie", &session)
        .header("x-csrf-token", &csrf)
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .json(&manual)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403, "cross-site request");
    let r = c
        .post(&url)
        .header("cookie", &session)
        .header("x-csrf-token", &csrf)
        .header("sec-fetch-site", "same-origin")
        .json(&manual)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 201, "same-origin with token");
    let accepted: Value = r.json().await.expect("json");
    assert_eq!(accepted["action"]["officer"], "ana");
    assert_eq!(accepted["action"]["role"], "officer");

    // An officer may tighten a lane but not relax it.
    let tx = uuid::Uuid::now_v7();
    let relax = json!({"transaction_id": tx, "action": "OVERRIDE", "to": "FAST", "reason": "OTHER", "note": ""});
    let r = c
        .post(format!("{base}/api/v1/lanes/L1/actions"))
        .bearer_auth(OFFICER)
        .json(&relax)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403, "officer relaxing");
    let r = c
        .post(format!("{base}/api/v1/lanes/L1/actions"))
        .bearer_auth(SUPERVISOR)
        .json(&relax)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 201, "supervisor relaxing");

    // Wrong passwords: refused, then rate limited even with the right one.
    for _ in 0..5 {
        let r = login("ana", "not-her-password").await.expect("login");
        assert_eq!(r.status(), 401);
    }
    let r = login("ana", "ana-password-1").await.expect("login");
    assert_eq!(r.status(), 429, "account locked for a while");

    // Logout ends the session.
    let r = c
        .post(format!("{base}/api/v1/logout"))
        .bearer_auth(&op_token)
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), 204);
    let r = c
        .get(format!("{base}/operator"))
        .bearer_auth(&op_token)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 303, "back to the login page");

    shutdown.cancel();
    tokio::time::timeout(STEP, handle.join)
        .await
        .expect("stops")
        .expect("joined")
        .expect("clean stop");
}
