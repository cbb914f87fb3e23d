//! The console API of a started agent, over a real socket on 127.0.0.1:0.

use std::time::Duration;

use edge_agent::config::Config;
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

async fn agent(dir: &std::path::Path) -> (AgentHandle, CancellationToken, String) {
    edge_agent::uplink::install_crypto_provider();
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
    assert_eq!(r.status(), 401, "no X-Officer header");
    let blank = json!({"transaction_id": tx, "action": "OVERRIDE", "to": "FAST", "reason": "  ", "note": ""});
    let r = c
        .post(&url)
        .header("X-Officer", "o.smith")
        .json(&blank)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400, "an override needs a reason");
    let r = c
        .post(format!("{base}/api/v1/lanes/L9/actions"))
        .header("X-Officer", "o.smith")
        .json(&override_body)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 404);
    let bad_container =
        json!({"action": "MANUAL_ENTRY", "value": {"kind": "CONTAINER", "number": "CSQU3054384"}});
    let r = c
        .post(&url)
        .header("X-Officer", "o.smith")
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
        .header("X-Officer", "o.smith")
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
        .send()
        .await
        .expect("sse");
    assert_eq!(resp.status(), 200);
    let mut body = resp;
    let tx = uuid::Uuid::now_v7();
    let r = client()
        .post(format!("{base}/api/v1/lanes/L1/actions"))
        .header("X-Officer", "o.smith")
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
        .header("X-Officer", "o.smith")
        .json(&json!({"action": "MANUAL_ENTRY", "value": {"kind": "CONTAINER", "number": "CSQU3054383"}}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 201);
    tokio::time::timeout(STEP, async {
        loop {
            let lanes: Value = c
                .get(format!("{base}/api/v1/lanes"))
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
