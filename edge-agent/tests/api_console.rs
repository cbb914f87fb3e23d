//! The console API of a started agent, over a real socket on 127.0.0.1:0: what needs the
//! whole agent (live feeds ending at shutdown, the assembler behind a manual entry). The
//! router's rules (sessions, roles, CSRF, actions) are tested with `oneshot` in
//! `api_router.rs`.

mod support;

use std::time::Duration;

use edge_agent::console::{Role, add_session_to_store_file};
use edge_agent::runtime::{AgentHandle, start};
use serde_json::{Value, json};
use support::two_lane_config;
use tokio_util::sync::CancellationToken;

const STEP: Duration = Duration::from_secs(5);

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
    let handle = start(two_lane_config(dir), shutdown.clone())
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
    // An override applies to the decided transaction the lane shows.
    let l1 = protocol::schema::LaneId::parse("L1").expect("lane");
    let decided = protocol::schema::LaneState {
        lane: l1.clone(),
        transaction_id: Some(tx),
        decision: protocol::schema::LaneDecision::Inspect.into(),
        route: "L1 inspection".into(),
        reasons: Vec::new(),
        priority: false,
        at: jiff::Timestamp::now(),
        officer_override: false,
    };
    handle.shared.live.update(&l1, |l| l.shown = Some(decided));
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
    support::stop_agent(&shutdown, handle.join, STEP).await;
    let lane = protocol::schema::LaneId::parse("L2").expect("lane");
    let rows = store
        .recent_transactions(Some(&lane), None, 10)
        .expect("history");
    let (tx, decision) = rows.first().expect("the open transaction was journaled");
    assert_eq!(tx.close_reason, protocol::schema::CloseReason::Shutdown);
    assert_eq!(tx.reads[0].entered_by.as_deref(), Some("o.smith"));
    assert!(decision.is_some(), "decided for the record");
}
