//! Lane boards added, moved and removed by a live reload (docs/configuration.md,
//! "Reloading"): the real `central` and `edge-agent` binaries on loopback and virtual
//! boards (the real firmware on ptys).
//!
//! 1. A board for a new lane L2 is added with the lane by one reload: it shows in the
//!    lanes' device health and trucks on L2 are decided.
//! 2. L1's board "moves" (its path in the configuration changes to another link to the
//!    same pty) while a truck is on L1's loop: the truck is decided once, with its tag
//!    read, and the lane's transaction stays open across the change.
//! 3. The L2 board is removed: it is gone from the device health, and from the gate's
//!    heartbeat at central.
//!
//! What must hold: nothing lost or duplicated between the journal and central; each
//! truck decided exactly once.
#![cfg(unix)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use aeogate::vboard::Truck;
use common::{
    AgentSite, CentralSite, LaneSpec, STEP, Transport, assert_exactly_once, count, edit, reload,
    stored_events,
};
use protocol::schema::EventBody;
use serde_json::Value;

/// A truck carrying container `j`'s RFID tag.
fn truck(j: u64) -> Truck {
    common::container_truck(j, Duration::from_millis(700))
}

fn toml_str(p: &Path) -> String {
    toml::Value::String(p.to_string_lossy().into_owned()).to_string()
}

fn lane_l2() -> String {
    "[[lanes]]\nid = \"L2\"\npresence_loop = true\nquiet_close = \"500ms\"\ntransaction_timeout = \"60s\"\n[lanes.routes]\nfast = \"L2 priority\"\nstandard = \"L2 standard\"\ninspect = \"L2 inspection\"\n\n".into()
}

fn board_section(name: &str, lane: &str, path: &Path) -> String {
    format!(
        "[[devices]]\nname = \"{name}\"\nlane = \"{lane}\"\nkind = \"lane_board\"\npath = {}\nsilence_timeout = \"2s\"\nreopen_backoff_max = \"1s\"\n\n",
        toml_str(path)
    )
}

/// Every device the agent reports on `lane` (`GET /api/v1/lanes`): name → up.
async fn lane_devices(agent: &AgentSite, lane: &str) -> Vec<(String, bool)> {
    let v: Value = agent.get_json("/api/v1/lanes").await;
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["lane"] == lane)
        .flat_map(|l| l["devices"].as_array().cloned().unwrap_or_default())
        .filter_map(|d| Some((d["device"].as_str()?.to_owned(), d["up"].as_bool()?)))
        .collect()
}

/// Waits until `f` holds for the devices reported on `lane`.
async fn wait_devices(
    agent: &AgentSite,
    lane: &str,
    what: &str,
    f: impl Fn(&[(String, bool)]) -> bool,
) {
    let deadline = Instant::now() + STEP;
    loop {
        let d = lane_devices(agent, lane).await;
        if f(&d) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: devices on {lane}: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boards_added_moved_and_removed_by_reload_lose_no_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut central = CentralSite::started(dir.path(), Transport::PlainHttp).await;
    let l1 = common::loop_board("L1", 21);
    let lanes = [LaneSpec::on_board("L1", l1.tty_link())];
    let mut agent = AgentSite::beside(dir.path(), &central, &lanes, "24h");
    agent.start().await;
    let staff = central.staff().await;
    wait_devices(&agent, "L1", "board-L1 up", |d| {
        d.contains(&("board-L1".into(), true))
    })
    .await;

    // 1. A new lane with its board, by one reload.
    let l2 = common::loop_board("L2", 22);
    edit(&agent, |t| {
        t.replacen(
            "[[devices]]",
            &format!(
                "{}{}[[devices]]",
                lane_l2(),
                board_section("board-L2", "L2", &l2.tty_link())
            ),
            1,
        )
    });
    let (ok, answer) = reload(&agent);
    assert!(
        ok && answer.contains("lane L2 added") && answer.contains("device board-L2 added"),
        "{answer}"
    );
    wait_devices(&agent, "L2", "the added board-L2 comes up", |d| {
        d.contains(&("board-L2".into(), true))
    })
    .await;
    l2.arrive(truck(1));
    tokio::time::sleep(Duration::from_millis(700)).await;
    l2.leave();
    agent.wait_decided("L2", 1).await;

    // 2. L1's board moves to another path with a truck on its loop.
    let moved = dir.path().join("board-L1-moved");
    std::os::unix::fs::symlink(l1.tty_link(), &moved).expect("second link to the L1 board");
    l1.arrive(truck(2));
    tokio::time::sleep(Duration::from_millis(500)).await;
    edit(&agent, |t| {
        t.replace(&toml_str(&l1.tty_link()), &toml_str(&moved))
    });
    let asked = Instant::now();
    let (ok, answer) = reload(&agent);
    assert!(
        ok && answer.contains("device board-L1 changed: path"),
        "{answer}"
    );
    let answered = asked.elapsed();
    wait_devices(&agent, "L1", "the moved board-L1 comes up again", |d| {
        d.contains(&("board-L1".into(), true))
    })
    .await;
    println!(
        "board moved: reload answered after {answered:?}, board up again after {:?}",
        asked.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    l1.leave();
    let row = agent.wait_decided("L1", 1).await;
    // A truck decided twice would show as a second transaction a moment later.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        agent.decided("L1").await,
        1,
        "the truck is decided once: {row}"
    );

    // 3. The L2 board is removed (the lane stays, manual).
    edit(&agent, |t| {
        t.replace(&board_section("board-L2", "L2", &l2.tty_link()), "")
    });
    let (ok, answer) = reload(&agent);
    assert!(ok && answer.contains("device board-L2 removed"), "{answer}");
    wait_devices(&agent, "L2", "the removed board-L2 is gone", |d| {
        !d.iter().any(|(n, _)| n == "board-L2")
    })
    .await;
    staff
        .wait_gate("central's gate status still lists board-L2", |g| {
            let names: Vec<&str> = g["last_heartbeat"]["heartbeat"]["devices"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d["device"].as_str())
                .collect();
            names.contains(&"board-L1") && !names.contains(&"board-L2")
        })
        .await;

    let since = jiff::Timestamp::now();
    staff.wait_drained(since, STEP).await;
    agent.terminate();
    central.stop();

    let journal = agent.journal();
    let stored = stored_events(&central.open());
    let counts = count(&journal, &stored);
    assert_exactly_once("devices reloaded", &counts, &journal, &[]);

    // The truck on L1 during the move: one transaction, with its container tag.
    let l1_tx: Vec<_> = journal
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Transaction { transaction } if transaction.lane.as_str() == "L1" => {
                Some(transaction.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(l1_tx.len(), 1, "{l1_tx:#?}");
    let container = aeogate::bench::data::container(2)
        .expect("container")
        .to_string();
    assert!(
        l1_tx[0]
            .containers()
            .iter()
            .any(|c| c.as_str() == container),
        "the truck's tag read is in its transaction: {:?}",
        l1_tx[0].reads
    );
    let applied: Vec<Vec<String>> = journal
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::ConfigApplied { changes, .. } => Some(changes.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        applied,
        vec![
            vec![
                "lane L2 added".to_string(),
                "device board-L2 added".to_string()
            ],
            vec!["device board-L1 changed: path".to_string()],
            vec!["device board-L2 removed".to_string()],
        ]
    );
}
