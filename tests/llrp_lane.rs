//! Lanes read by a fixed UHF reader over LLRP: the edge agent in this process, its LLRP
//! client connected over loopback TCP to the virtual reader (`aeogate reader llrp`), and
//! virtual boards (the real firmware on ptys) for the lanes' loops and e-seal readers.
//!
//! - A truck whose tags the LLRP reader reads gets the same decision, for the same reads,
//!   as the same truck on a lane whose tags the board's own UHF module reads.
//! - The unplug cases: the reader dropping the connection (with and without a
//!   `ConnectionCloseEvent`), going silent (no keepalives), and an antenna reported
//!   disconnected each show as device health within 5 s, and each recovers without
//!   restarting the agent; a truck after all of them is still read.
#![cfg(unix)]

use std::time::Duration;

use common::*;
use protocol::schema::EventBody;
use tokio_util::sync::CancellationToken;

#[path = "llrp/common.rs"]
mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truck_on_an_llrp_lane_gets_the_same_decision_as_on_a_board_lane() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reader = reader().await;
    let stop = CancellationToken::new();
    let lanes = TwoLanes::start(reader.addr().port(), &dir, &stop).await;
    let handle = &lanes.handle;

    // The same truck: on L1 the board's UHF module reads its tags; on L2 the board only
    // has its loop and e-seal reader, and the LLRP reader's antennas read the tags.
    let (llrp_tx, _, _) = lanes
        .same_truck(|arrives| {
            if arrives {
                reader.arrive(1, tags());
            } else {
                reader.leave(1);
            }
        })
        .await;
    assert!(
        llrp_tx
            .containers()
            .iter()
            .any(|c| c.as_str() == "CSQU3054383"),
        "the container tag was read over LLRP: {:?}",
        llrp_tx.reads
    );
    assert_eq!(
        handle.shared.live.get(&lane("L2")).map(|l| l.orphan_reads),
        Some(0),
        "no LLRP read fell outside the truck's transaction"
    );
    let stats = reader.stats();
    assert_eq!(
        stats.rospecs.get(&edge_agent::sources::llrp::ROSPEC_ID),
        Some(&2),
        "the agent's ROSpec is active on the reader: {stats:?}"
    );
    // 27 dBm is row 69 of the virtual reader's 10.00 + 0.25·(i−1) dBm table.
    assert_eq!(stats.power_index.get(&1), Some(&69), "{stats:?}");
    assert!(
        stats.keepalive_acks > 0,
        "keepalives acknowledged: {stats:?}"
    );

    stop.cancel();
    let _ = tokio::time::timeout(WAIT, lanes.handle.join).await;
}

/// A reader added by a live reload (on the running agent of before, refused as "needs a
/// restart") connects and its tags arrive in the lane's transactions; removed again, it
/// is gone from the device health.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_added_by_reload_reads_tags_on_its_lane() {
    let dir = tempfile::tempdir().expect("tempdir");
    let l1 = board("L1");
    let reader = reader().await;
    let stop = CancellationToken::new();
    let without = format!("{}{}", lane_toml("L1", true), board_toml(&l1, "L1"));
    let (handle, _) = reloadable_agent(&without, &dir, &stop).await;
    wait_health(&handle, "board-L1", true, WAIT).await;
    assert!(
        health(&handle, "llrp-1").is_none(),
        "no reader configured yet"
    );

    let with = format!("{without}{}", llrp_toml(&reader, "1 = \"L1\""));
    let outcome = reload(&with, &dir).await;
    assert!(
        outcome.to_text().contains("llrp reader llrp-1 added"),
        "{}",
        outcome.to_text()
    );
    wait_health(&handle, "llrp-1", true, WAIT).await;
    wait_health(&handle, "llrp-1/antenna-1", true, WAIT).await;

    let tx = read_on_l1(&handle, &reader, 1, Some(&l1)).await;
    assert!(
        tx.reads.iter().any(|r| r.device == "llrp-1")
            && tx.containers().iter().any(|c| c.as_str() == "CSQU3054383"),
        "the added reader's tags are in the L1 transaction: {:?}",
        tx.reads
    );

    let outcome = reload(&without, &dir).await;
    assert!(
        outcome.to_text().contains("llrp reader llrp-1 removed"),
        "{}",
        outcome.to_text()
    );
    assert!(
        handle
            .shared
            .device_health()
            .iter()
            .all(|h| !h.device.starts_with("llrp-1")),
        "the removed reader and its antennas are gone: {:?}",
        handle.shared.device_health()
    );

    stop.cancel();
    let _ = tokio::time::timeout(WAIT, handle.join).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_faults_show_as_device_health_within_5s_and_recover() {
    let reader = reader().await;
    let run = l1_on_reader(&llrp_toml(&reader, "1 = \"L1\", 2 = \"L1\"")).await;
    let handle = &run.handle;
    wait_health(handle, "llrp-1/antenna-2", true, WAIT).await;

    // The reader drops the connection and refuses new ones for a while.
    reader.refuse_for(Duration::from_secs(2));
    reader.drop_connection(false);
    let took = wait_health(handle, "llrp-1", false, NOTICE).await;
    println!("dropped connection noticed after {took:?}");
    wait_health(handle, "llrp-1", true, WAIT).await;

    // The reader announces the close (ConnectionCloseEvent), then drops.
    reader.refuse_for(Duration::from_secs(2));
    reader.drop_connection(true);
    let took = wait_health(handle, "llrp-1", false, NOTICE).await;
    println!("announced close noticed after {took:?}");
    wait_health(handle, "llrp-1", true, WAIT).await;

    // The reader goes silent: no keepalives, reports or answers, the socket left open.
    reader.set_silent(true);
    let took = wait_health(handle, "llrp-1", false, NOTICE).await;
    println!("silent reader noticed after {took:?}");
    let detail = health(handle, "llrp-1")
        .map(|h| h.detail)
        .unwrap_or_default();
    assert!(detail.contains("silent"), "down for silence: {detail}");
    reader.set_silent(false);
    wait_health(handle, "llrp-1", true, WAIT).await;

    // An antenna cable is pulled: that antenna's health, not the reader's.
    reader.set_antenna(2, false);
    let took = wait_health(handle, "llrp-1/antenna-2", false, NOTICE).await;
    println!("disconnected antenna noticed after {took:?}");
    assert!(
        health(handle, "llrp-1").is_some_and(|h| h.up),
        "the reader stays up"
    );
    assert!(
        health(handle, "llrp-1/antenna-1").is_some_and(|h| h.up),
        "the other antenna stays up"
    );
    reader.set_antenna(2, true);
    wait_health(handle, "llrp-1/antenna-2", true, NOTICE).await;

    // Every fault went to the journal as a device health change.
    let journaled: Vec<(String, bool)> = handle
        .shared
        .store
        .entries(1, 10_000)
        .expect("journal")
        .into_iter()
        .filter_map(|e| match e.body {
            EventBody::DeviceHealth { health } => Some((health.device, health.up)),
            _ => None,
        })
        .collect();
    let downs = journaled
        .iter()
        .filter(|(d, up)| d == "llrp-1" && !up)
        .count();
    assert!(downs >= 3, "three reader faults journaled: {journaled:?}");
    assert!(
        journaled.contains(&("llrp-1/antenna-2".into(), false)),
        "{journaled:?}"
    );

    // Recovered without a restart: the next truck is read and decided.
    let tx = read_on_l1(handle, &reader, 2, None).await;
    assert!(
        tx.reads
            .iter()
            .any(|r| r.device == "llrp-1" && r.antenna == Some(2)),
        "{:?}",
        tx.reads
    );

    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn antenna_unplugged_before_the_agent_connects_is_reported_down() {
    let reader = reader().await;
    reader.set_antenna(2, false);
    let run = l1_on_reader(&llrp_toml(&reader, "1 = \"L1\", 2 = \"L1\"")).await;
    let handle = &run.handle;
    wait_health(handle, "llrp-1/antenna-1", true, NOTICE).await;
    // Before the session, every antenna is down "not opened yet"; the reader's answer
    // replaces that with the cable's state.
    let start = std::time::Instant::now();
    while !health(handle, "llrp-1/antenna-2").is_some_and(|h| h.detail.contains("disconnected")) {
        assert!(
            start.elapsed() < NOTICE,
            "antenna 2 not reported unplugged: {:?}",
            health(handle, "llrp-1/antenna-2")
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let h = health(handle, "llrp-1/antenna-2").expect("antenna 2 has a health");
    assert!(!h.up, "antenna 2 stays down while unplugged: {h:?}");
    reader.set_antenna(2, true);
    wait_health(handle, "llrp-1/antenna-2", true, NOTICE).await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llrp_1_1_is_negotiated_with_a_reader_that_speaks_it() {
    let reader = reader().await;
    let llrp = llrp_toml(&reader, "1 = \"L1\"").replace(
        "reconnect_backoff_max = \"1s\"\n",
        "reconnect_backoff_max = \"1s\"\nversion = \"1.1\"\n",
    );
    assert!(llrp.contains("version = \"1.1\""), "{llrp}");
    let run = l1_on_reader(&llrp).await;
    let handle = &run.handle;
    let stats = reader.stats();
    assert_eq!(stats.version, 2, "the session runs in LLRP 1.1: {stats:?}");
    assert_eq!(
        stats
            .received
            .get(&protocol::llrp::msg::SET_PROTOCOL_VERSION),
        Some(&1),
        "{stats:?}"
    );
    // Reads and keepalives flow in 1.1 framing.
    let tx = read_on_l1(handle, &reader, 1, None).await;
    assert!(
        tx.reads.iter().any(|r| r.device == "llrp-1"),
        "{:?}",
        tx.reads
    );
    assert!(reader.stats().keepalive_acks > 0);
    run.stop().await;
}
