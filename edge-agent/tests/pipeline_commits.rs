//! The lanes go on while a decision's commit is on disk: the pipeline takes the next
//! events and runs the lanes' timers meanwhile, and shows every decision only once its
//! commit is done, in the order the decisions were made.

mod support;

use std::time::Duration;

use edge_agent::runtime::AgentHandle;
use protocol::schema::{EventBody, LaneId};

/// Each lane's quiet close: a truck's transaction closes this long after its last read.
const QUIET_CLOSE: Duration = Duration::from_millis(300);

/// How long the test keeps the journal's commits waiting.
const STALL: Duration = Duration::from_millis(1500);

fn lane(n: u8) -> LaneId {
    LaneId::parse(&format!("L{n}")).expect("lane")
}

fn decided(handle: &AgentHandle, lane: &LaneId) -> bool {
    handle
        .shared
        .live
        .get(lane)
        .is_some_and(|l| l.last_decision.is_some())
}

/// The lanes of the journal's decisions, in journal order.
fn journaled_decision_lanes(handle: &AgentHandle) -> Vec<LaneId> {
    handle
        .shared
        .store
        .entries(1, 1_000)
        .expect("journal readable")
        .into_iter()
        .filter_map(|e| match e.body {
            EventBody::Decision { decision } => Some(decision.lane),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_s_truck_is_decided_while_another_lane_s_commit_is_on_disk_and_shown_after_it() {
    let (_dir, shutdown, handle) = support::start_with_replica(
        &format!(
            "{}{}",
            support::lane_section(1, 'A', false, "300ms"),
            support::lane_section(2, 'B', false, "300ms")
        ),
        "pipeline-commits-test-key",
    )
    .await;

    // The journal's writer cannot begin a commit while this write transaction is open.
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let store = handle.shared.store.clone();
    let holder = std::thread::spawn(move || {
        let w = store.database().begin_write().expect("write transaction");
        held_tx.send(()).expect("test waiting");
        let _ = release_rx.recv_timeout(Duration::from_secs(30));
        drop(w);
    });
    held_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the write transaction is held");

    // L2's truck closes and its decision waits for the held commit.
    support::truck(&handle, &lane(2)).await;
    tokio::time::sleep(QUIET_CLOSE * 2).await;
    assert!(
        !decided(&handle, &lane(2)),
        "a decision is shown before its commit"
    );
    // Meanwhile L1's truck comes and goes: its reads are taken, its quiet close runs and
    // it is decided while the commit is still held; its record waits in the writer's
    // queue behind L2's (a pipeline waiting on L2's commit would not have taken L1's
    // reads yet).
    support::truck(&handle, &lane(1)).await;
    support::eventually(
        "L1's decision waits in the journal writer's queue",
        STALL,
        || handle.shared.journal.writer().queued() >= 1,
    )
    .await;
    assert!(
        !decided(&handle, &lane(1)) && !decided(&handle, &lane(2)),
        "a decision is shown before its commit"
    );

    release_tx.send(()).expect("holder waiting");
    holder.join().expect("holder thread");
    support::eventually(
        "both lanes show their decisions",
        Duration::from_secs(10),
        || decided(&handle, &lane(1)) && decided(&handle, &lane(2)),
    )
    .await;
    assert_eq!(
        journaled_decision_lanes(&handle),
        [lane(2), lane(1)],
        "decisions are journaled in the order they were made"
    );
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), handle.join).await;
}
