//! Delivery under failure (docs/delivery.md, "How the fault tests check the contract"):
//! the real `central` and `edge-agent` binaries on loopback, central stopped and started
//! again, the agent SIGKILLed during bursts, central SIGKILLed during ingest. Each test
//! ends by comparing the agent's journal (read from its redb file after it stopped) with
//! what central stored (read from central's redb file after it stopped): sent, stored,
//! lost, duplicated, out of order, and asserts lost = duplicated = out-of-order = 0.
//!
//! `scripts/soak` runs the SIGKILL cycles many more times (the `soak_*` tests, ignored by
//! default; `AEOGATE_SOAK_CYCLES` sets the count).

mod common;

use std::time::Duration;

use aeogate::vboard::{Fault, Truck, VirtualBoard};
use common::{
    AgentSite, CentralSite, Counts, LaneSpec, RunningBurst, Transport, assert_exactly_once,
    burst_to_end, drained_exactly_once, stop_and_count, wait_count,
};

fn manual_lanes() -> Vec<LaneSpec> {
    vec![LaneSpec::manual("L1"), LaneSpec::manual("L2")]
}

fn lane_names() -> Vec<String> {
    vec!["L1".into(), "L2".into()]
}

fn truck(j: u64) -> Truck {
    common::container_truck(j, Duration::from_millis(700))
}

/// Drives one truck through the virtual board's lane and waits for its decision.
async fn pass(board: &VirtualBoard, agent: &AgentSite, j: u64, decided_before: usize) {
    board.arrive(truck(j));
    tokio::time::sleep(Duration::from_millis(700)).await;
    board.leave();
    agent.wait_decided("L1", decided_before + 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn central_outage_lanes_keep_deciding_and_the_backlog_drains_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut central, board, mut agent, staff) =
        common::central_board_and_manual_lane(dir.path(), Transport::Tls, 7).await;

    let mut decided = 0;
    for j in 0..2 {
        pass(&board, &agent, j, decided).await;
        decided += 1;
    }

    // Central goes away. Lanes keep deciding, including across a serial unplug.
    central.stop();
    let commands_before = board.stats();
    board.inject(Fault::Unplug { for_ms: 800 });
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for j in 2..5 {
        pass(&board, &agent, j, decided).await;
        decided += 1;
    }
    let out = burst_to_end(agent.base.clone(), vec!["L2".into()], 2, 20).await;
    assert_eq!(
        out.acked().len(),
        40,
        "the console takes actions while central is away"
    );
    assert!(
        board.last_command().is_some() && board.stats() != commands_before,
        "decisions reached the lane board during the outage"
    );

    // Central is back: the backlog drains; traffic goes on meanwhile.
    central.start().await;
    for j in 5..7 {
        pass(&board, &agent, j, decided).await;
        decided += 1;
    }
    let since = jiff::Timestamp::now();
    staff.wait_drained(since, Duration::from_secs(60)).await;
    let (counts, journal) = stop_and_count(&mut agent, &mut central);
    assert_exactly_once("central outage", &counts, &journal, &out.acked());
    let decisions = journal
        .iter()
        .filter(|e| matches!(&e.body, protocol::schema::EventBody::Decision { decision } if decision.lane.as_str() == "L1"))
        .count();
    assert!(
        decisions >= 7,
        "every truck on L1 was decided and journaled: {decisions}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_larger_than_centrals_batch_limit_drains_with_a_large_uplink_batch() {
    // Central takes at most 1,000 entries per batch (413 above); with the largest batch
    // the configuration allows, a backlog past that limit must still drain completely.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut central = CentralSite::create(&dir.path().join("central"), Transport::PlainHttp);
    let mut agent = AgentSite::beside(dir.path(), &central, &manual_lanes(), "24h");
    agent.set_uplink_batch(1_000);
    agent.start().await;
    // Central is not running yet: the backlog grows past 1,000 entries.
    let out = burst_to_end(agent.base.clone(), lane_names(), 4, 275).await;
    assert_eq!(out.acked().len(), 1_100, "every action journaled");
    central.start().await;
    drained_exactly_once("large uplink batch", &mut agent, &mut central, &out.acked()).await;
}

/// Starts the agent, bursts, SIGKILLs it mid-burst, `cycles` times; then drains.
async fn agent_kill_cycles(cycles: usize) -> Counts {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut central = CentralSite::started(dir.path(), Transport::PlainHttp).await;
    let mut agent = AgentSite::beside(dir.path(), &central, &manual_lanes(), "24h");
    let mut acked = Vec::new();
    for cycle in 0..cycles {
        agent.start().await;
        let load = RunningBurst::spawn(agent.base.clone(), lane_names(), 3, 100_000);
        let out = load.out.clone();
        // Vary the moment of the kill from cycle to cycle.
        wait_count(&out, 10 + (cycle as u64 % 5) * 7).await;
        agent.kill();
        load.stop().await;
        acked.extend(out.acked());
    }
    agent.start().await;
    let what = format!("agent SIGKILL × {cycles}");
    drained_exactly_once(&what, &mut agent, &mut central, &acked).await
}

/// Keeps a burst going while central is SIGKILLed and restarted `cycles` times.
async fn central_kill_cycles(cycles: usize) -> Counts {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut central = CentralSite::started(dir.path(), Transport::PlainHttp).await;
    let mut agent = AgentSite::beside(dir.path(), &central, &manual_lanes(), "24h");
    agent.start().await;
    let load = RunningBurst::spawn(agent.base.clone(), lane_names(), 2, 1_000_000);
    let out = load.out.clone();
    let mut target = 0;
    for cycle in 0..cycles {
        // Let some batches through, then kill central with ingest under way.
        target += 12 + (cycle as u64 % 4) * 5;
        wait_count(&out, target).await;
        central.kill();
        tokio::time::sleep(Duration::from_millis(100 + (cycle as u64 % 3) * 150)).await;
        central.start().await;
    }
    load.stop().await;
    let what = format!("central SIGKILL × {cycles}");
    drained_exactly_once(&what, &mut agent, &mut central, &out.acked()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_sigkill_during_bursts_loses_and_duplicates_nothing() {
    agent_kill_cycles(20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn central_sigkill_during_ingest_loses_and_duplicates_nothing() {
    central_kill_cycles(10).await;
}

/// Runs `cycles` for the soak's count of cycles and prints its counts as `SOAK <name> …`
/// (the line `scripts/soak` shows).
async fn soak<F: Future<Output = Counts>>(name: &str, cycles: impl FnOnce(usize) -> F) {
    let n = common::soak_cycles();
    let c = cycles(n).await;
    println!("SOAK {name} cycles={n} {c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: run by scripts/soak"]
async fn soak_agent_sigkill() {
    soak("agent-sigkill", agent_kill_cycles).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: run by scripts/soak"]
async fn soak_central_sigkill() {
    soak("central-sigkill", central_kill_cycles).await;
}
