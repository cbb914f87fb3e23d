//! An officer's override binds to the truck its lane shows (docs/threat-model.md, "Who may
//! change which lane"), over the real `central` and `edge-agent` binaries on loopback: an
//! officer at lane 1 naming lane 2's FAST transaction gets `409` and nothing changes; the
//! override from lane 2 itself is journaled against that transaction and central's record
//! of it shows the override.

mod common;

use std::time::Duration;

use aeogate::bench::data;
use common::{AgentSite, CentralSite, LaneSpec, STEP, Transport};
use serde_json::{Value, json};

async fn post_action(agent: &AgentSite, lane: &str, body: &Value) -> (u16, Value) {
    agent
        .post(&format!("/api/v1/lanes/{lane}/actions"), body)
        .await
}

async fn lanes(agent: &AgentSite) -> Value {
    agent.get_json("/api/v1/lanes").await
}

/// Officer actions the agent journaled on transaction `tx`.
async fn actions_on(agent: &AgentSite, tx: &str) -> usize {
    agent.get_json(&format!("/api/v1/transactions/{tx}")).await["actions"]
        .as_array()
        .map_or(0, Vec::len)
}

async fn lane_shown(agent: &AgentSite, lane: &str) -> Value {
    lanes(agent)
        .await
        .as_array()
        .and_then(|a| a.iter().find(|l| l["lane"] == lane))
        .map(|l| l["shown"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_officer_cannot_override_another_lanes_truck_and_central_sees_the_real_override() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut central = CentralSite::started(dir.path(), Transport::PlainHttp).await;
    let mut agent = AgentSite::beside(
        dir.path(),
        &central,
        &[LaneSpec::manual("L1"), LaneSpec::manual("L2")],
        "1h",
    );
    agent.start().await;
    // The replica loads from central's signed snapshot; then a clean AEO truck is FAST.
    let deadline = std::time::Instant::now() + STEP;
    loop {
        if lanes(&agent).await[0]["replica"]["sequence"].as_u64() > Some(0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "replica never loaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agent.key_in_clean_truck("L2").await;
    let row = agent.wait_decided("L2", 1).await;
    assert_eq!(row["decision"]["decision"], "FAST", "{row}");
    let tx2 = row["transaction"]["id"].as_str().expect("id").to_owned();
    let shown_before = lane_shown(&agent, "L2").await;
    assert_eq!(shown_before["transaction_id"], tx2.as_str());

    // The officer at lane 1 names lane 2's FAST truck.
    let override_tx2 = json!({"transaction_id": tx2, "action": "OVERRIDE", "to": "INSPECT", "reason": "looks odd", "note": ""});
    let (status, body) = post_action(&agent, "L1", &override_tx2).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains(&tx2)),
        "{body}"
    );
    assert_eq!(
        lane_shown(&agent, "L2").await,
        shown_before,
        "lane 2 unchanged"
    );
    assert_eq!(actions_on(&agent, &tx2).await, 0, "nothing journaled");

    // From lane 2 the same override binds to its truck.
    let (status, body) = post_action(&agent, "L2", &override_tx2).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(actions_on(&agent, &tx2).await, 1);
    let shown = lane_shown(&agent, "L2").await;
    assert_eq!(
        (&shown["decision"], &shown["officer_override"]),
        (&json!("INSPECT"), &json!(true))
    );

    // Central files it under the truck's own transaction and container.
    let staff = central.staff().await;
    let container = data::container(0).expect("c0").to_string();
    let deadline = std::time::Instant::now() + STEP;
    loop {
        let events = staff
            .get_json(&format!("/api/v1/events?container={container}&limit=100"))
            .await;
        let found = events["items"].as_array().into_iter().flatten().any(|e| {
            let a = &e["entry"]["body"]["action"];
            a["transaction_id"] == tx2.as_str()
                && a["lane"] == "L2"
                && a["kind"]["action"] == "OVERRIDE"
                && e["refused"] == false
        });
        if found {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "central never showed the override of {tx2}: {events}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    agent.terminate();
    central.stop();
}
