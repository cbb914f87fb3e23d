//! Live reconfiguration under traffic (docs/configuration.md, "Reloading"): the real
//! `central` and `edge-agent` binaries on loopback, a virtual board (the real firmware on a
//! pty) on lane L1 and officers' manual entries on L2 from concurrent clients, while the
//! configuration is reloaded several times with `edge-agent reload` and SIGHUP: a policy
//! change, a lane added, an invalid file, a key that needs a restart, the added lane
//! removed with a transaction open on it.
//!
//! What must hold: every reload answers (changes applied, or the refusal with key and
//! line); nothing acknowledged is lost or duplicated between the journal and central; every
//! transaction is decided (none dropped, also not the one open on a lane when it was
//! removed, nor the truck on L1 during a reload); each applied change is journaled as
//! `CONFIG_APPLIED` with the old and new policy ids and stored by central; decisions after
//! the policy change carry the new policy id.
#![cfg(unix)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aeogate::vboard::Truck;
use common::{
    AgentSite, Burst, STEP, Transport, assert_exactly_once, burst, chain_alerts, count, edit,
    reload, stored_events, wait_count,
};
use protocol::schema::{CloseReason, EventBody};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// A truck carrying container `j`'s RFID tag.
fn truck(j: u64) -> Truck {
    let mut epc = aeogate::bench::data::container(j)
        .expect("container")
        .to_string()
        .into_bytes();
    epc.push(0);
    Truck {
        tags: vec![epc],
        eseals: Vec::new(),
        dwell: Duration::from_millis(700),
    }
}
const LANE_L3: &str = "\n[[lanes]]\nid = \"L3\"\nname = \"Lane 3 (added live)\"\npresence_loop = false\nquiet_close = \"500ms\"\ntransaction_timeout = \"1s\"\n[lanes.routes]\nfast = \"L3 priority\"\nstandard = \"L3 standard\"\ninspect = \"L3 inspection\"\n";

/// A manual container entry on `lane`: the answer's status.
async fn manual_entry(agent: &AgentSite, lane: &str, j: u64) -> u16 {
    let number = aeogate::bench::data::container(j)
        .expect("container")
        .to_string();
    agent.manual_entry(lane, "CONTAINER", &number).await.0
}

/// The lanes the running agent reports (`GET /api/v1/lanes`).
async fn lanes(agent: &AgentSite) -> BTreeSet<String> {
    let v: Value = agent.get_json("/api/v1/lanes").await;
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["lane"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_traffic_lose_nothing_and_are_journaled_with_both_policies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut central, board, mut agent, staff) =
        common::central_board_and_manual_lane(dir.path(), Transport::PlainHttp, 11).await;

    // Officers type entries on L2 from two clients during every reload below.
    let stop_burst = CancellationToken::new();
    let out = Arc::new(Burst::default());
    let load = tokio::spawn(burst(
        agent.base.clone(),
        vec!["L2".into()],
        2,
        5_000,
        stop_burst.clone(),
        out.clone(),
    ));
    wait_count(&out, 20).await;
    let mut decided_l1 = 0;

    // 1. A policy change, with a truck on L1's loop while it is applied.
    board.arrive(truck(0));
    tokio::time::sleep(Duration::from_millis(300)).await;
    edit(&agent, |t| {
        t.replace("[policy]\n", "[policy]\nname = \"reload-p2\"\n")
    });
    let (ok, answer) = reload(&agent);
    assert!(ok, "the policy change is applied: {answer}");
    assert!(
        answer.contains("reload-p2#") && answer.contains("1 change"),
        "the answer names the new policy: {answer}"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    board.leave();
    decided_l1 += 1;
    let row = agent.wait_decided("L1", decided_l1).await;
    assert!(
        row["decision"]["policy"]
            .as_str()
            .is_some_and(|p| p.starts_with("reload-p2#")),
        "the truck on the loop during the reload is decided, under the new policy: {row}"
    );

    // 2. A lane added: it takes entries at once (on the running agent of before, a 404).
    edit(&agent, |t| format!("{t}{LANE_L3}"));
    let (ok, answer) = reload(&agent);
    assert!(ok && answer.contains("lane L3 added"), "{answer}");
    assert_eq!(manual_entry(&agent, "L3", 3).await, 201, "L3 takes entries");
    agent.wait_decided("L3", 1).await;

    // 3. An invalid file: refused with its key and line; the running configuration stays.
    let valid = std::fs::read_to_string(&agent.config_path).expect("read agent.toml");
    edit(&agent, |t| {
        t.replace("random_rate_aeo = 0.000001", "random_rate_aeo = 7.0")
    });
    let (ok, answer) = reload(&agent);
    assert!(!ok, "an invalid file is refused: {answer}");
    let line = valid
        .lines()
        .position(|l| l.starts_with("random_rate_aeo"))
        .expect("the key is in the file")
        + 1;
    assert!(
        answer.contains("policy.random_rate_aeo") && answer.contains(&format!("line {line}")),
        "the refusal names key and line {line}: {answer}"
    );
    std::fs::write(&agent.config_path, &valid).expect("restore agent.toml");
    let (ok, answer) = reload(&agent);
    assert!(
        ok && answer.contains("no change"),
        "after the refusal the agent runs the last valid configuration: {answer}"
    );

    // 4. A key that needs a restart: refused, naming it.
    let port = agent.console_port;
    edit(&agent, |t| {
        t.replace(
            &format!("127.0.0.1:{port}"),
            &format!("127.0.0.1:{}", common::free_port()),
        )
    });
    let (ok, answer) = reload(&agent);
    assert!(
        !ok && answer.contains("console.bind"),
        "a restart-only key is refused by name: {answer}"
    );
    std::fs::write(&agent.config_path, &valid).expect("restore agent.toml");

    // 5. SIGHUP removes L3 while a transaction is open on it.
    edit(&agent, |t| t.replace(LANE_L3, ""));
    assert_eq!(manual_entry(&agent, "L3", 4).await, 201);
    let pid = agent.pid().expect("agent runs");
    let hup = Command::new("kill")
        .arg("-HUP")
        .arg(pid.to_string())
        .status()
        .expect("kill -HUP");
    assert!(hup.success());
    let deadline = Instant::now() + STEP;
    while lanes(&agent).await.contains("L3") {
        assert!(Instant::now() < deadline, "SIGHUP did not remove L3");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The console's lane list follows right after the lanes' live state.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        manual_entry(&agent, "L3", 5).await,
        404,
        "a removed lane takes no entries"
    );

    // One more truck on L1 after all of it.
    board.arrive(truck(1));
    tokio::time::sleep(Duration::from_millis(700)).await;
    board.leave();
    decided_l1 += 1;
    agent.wait_decided("L1", decided_l1).await;

    let m = agent.metrics().await.expect("agent metrics");
    for (outcome, n) in [("applied", 3), ("refused", 2), ("unchanged", 1)] {
        let line = format!("aeogate_config_reloads_total{{outcome=\"{outcome}\"}} {n}");
        assert!(m.contains(&line), "{line} in the metrics:\n{m}");
    }

    stop_burst.cancel();
    let _ = load.await;
    let since = jiff::Timestamp::now();
    staff.wait_drained(since, STEP).await;
    // Central's gate status carries the latest change (the gate health page shows it).
    let g = staff.gate().await.expect("the gate's status at central");
    assert!(
        g["last_config"]["new_policy"]
            .as_str()
            .is_some_and(|p| p.starts_with("reload-p2#")),
        "{g}"
    );
    assert_eq!(
        g["last_config"]["changes"],
        json!(["lane L3 removed"]),
        "{g}"
    );
    agent.terminate();
    central.stop();

    let journal = agent.journal();
    let hub = central.open();
    let stored = stored_events(&hub);
    let alerts = chain_alerts(&hub);
    assert!(
        alerts.is_empty(),
        "central raised chain alerts: {alerts:#?}"
    );
    let counts = count(&journal, &stored);
    assert_exactly_once("reloads under traffic", &counts, &journal, &out.acked());

    // Every applied change journaled once, with both policy ids, and stored by central.
    let applied: Vec<(String, String, Vec<String>)> = journal
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::ConfigApplied {
                old_policy,
                new_policy,
                changes,
            } => Some((old_policy.clone(), new_policy.clone(), changes.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(applied.len(), 3, "{applied:#?}");
    assert!(applied[0].0 != applied[0].1 && applied[0].1.starts_with("reload-p2#"));
    assert_eq!(applied[1].2, vec!["lane L3 added".to_string()]);
    assert_eq!(applied[2].2, vec!["lane L3 removed".to_string()]);
    assert!(
        applied[1..]
            .iter()
            .all(|a| a.0 == a.1 && a.0 == applied[0].1)
    );
    let at_central = stored
        .iter()
        .filter(|s| matches!(s.entry.body, EventBody::ConfigApplied { .. }))
        .count();
    assert_eq!(at_central, 3, "central stores every applied change");

    // No transaction dropped: each has its decision; the policy changed once, in order.
    let mut decisions = BTreeMap::new();
    let mut policy_changed = false;
    for e in &journal {
        match &e.body {
            EventBody::ConfigApplied { .. } => policy_changed = true,
            EventBody::Decision { decision } => {
                assert_eq!(
                    decision.policy.starts_with("reload-p2#"),
                    policy_changed,
                    "decision {} under the policy in force when it was made",
                    decision.transaction_id
                );
                decisions.insert(decision.transaction_id, decision.clone());
            }
            _ => {}
        }
    }
    let mut l3 = Vec::new();
    for e in &journal {
        if let EventBody::Transaction { transaction } = &e.body {
            assert!(
                decisions.contains_key(&transaction.id),
                "transaction {} on {} has no decision",
                transaction.id,
                transaction.lane
            );
            if transaction.lane.as_str() == "L3" {
                l3.push(transaction.close_reason);
            }
        }
    }
    assert_eq!(l3.len(), 2, "both L3 transactions decided: {l3:?}");
    assert_eq!(l3[0], CloseReason::Departure, "the first closed by itself");
    // The second is closed by the removal, unless its quiet close (500 ms) came first.
    assert!(
        matches!(l3[1], CloseReason::LaneRemoved | CloseReason::Departure),
        "{l3:?}"
    );
}
