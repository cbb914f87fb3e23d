//! The wall clock stepped with a truck in the lane: the real `central` and `edge-agent`
//! binaries on loopback, a virtual lane board (the real firmware) on a pty, and the
//! agent's wall clock stepped by Debian's libfaketime while its monotonic clock runs on,
//! as on a host whose clock is set by hand or stepped by time synchronisation.
//!
//! - Stepped forward an hour while a truck stands on the loop: its transaction does not
//!   time out at the step (a timeout counted on the wall clock would be an hour old), and
//!   the truck is decided when it leaves, after the whole departure grace.
//! - Set back an hour during the departure grace: the truck is decided when the grace
//!   ends, not an hour later.

mod common;
#[path = "common/truck_lane.rs"]
mod truck_lane;

use std::path::Path;
use std::time::{Duration, Instant};

use truck_lane::{container, enter_seal, open_holds, ready, site, truck};

/// The lane's departure grace in this test: long enough to step the clock inside it.
const GRACE: Duration = Duration::from_secs(4);

fn set_clock(file: &Path, offset: &str) {
    std::fs::write(file, format!("{offset}\n")).expect("write the clock offset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_stepped_with_a_truck_in_the_lane_neither_holds_nor_rushes_its_decision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = dir.path().join("clock-offset");
    set_clock(&clock, "+0");
    let (mut central, board, mut agent) = site(dir.path(), 21);
    common::edit(&agent, |t| {
        t.replace(
            "presence_loop = true\n",
            &format!(
                "presence_loop = true\ndeparture_grace = \"{}s\"\n",
                GRACE.as_secs()
            ),
        )
    });
    central.start().await;
    agent.start_with_clock_file(&clock).await;
    ready(&agent, true).await;

    // Forward an hour with the truck on the loop (libfaketime reads the file each second).
    board.arrive(truck(0));
    open_holds(&agent, &container(0)).await;
    set_clock(&clock, "+1h");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        agent.decided("L1").await,
        0,
        "decided at the step, the truck still on the loop: {:?}",
        agent.transactions("L1").await
    );
    enter_seal(&agent, 0).await;
    board.leave();
    let left = Instant::now();
    let first = agent.wait_decided("L1", 1).await;
    let took = left.elapsed();
    assert_eq!(first["transaction"]["close_reason"], "DEPARTURE", "{first}");
    assert!(
        took >= GRACE,
        "decided {took:?} after leaving, within the grace"
    );

    // Back an hour, half a second into the next truck's departure grace.
    board.arrive(truck(0));
    tokio::time::sleep(Duration::from_millis(500)).await;
    enter_seal(&agent, 0).await;
    board.leave();
    let left = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    set_clock(&clock, "+0");
    let second = agent.wait_decided("L1", 2).await;
    let took = left.elapsed();
    assert!(
        took >= GRACE - Duration::from_millis(100) && took < GRACE + Duration::from_secs(4),
        "decided {took:?} after leaving, the grace being {GRACE:?}: {second}"
    );
    agent.terminate();
    central.stop();
}
