//! The first truck on a lane right after the agent's serial link comes up is decided like
//! any other: a virtual board (the real firmware on a pty) and the edge agent in this
//! process, with the board as the lane's `lane_board` device on a presence-loop lane.
//!
//! Three orders of events are covered: the truck drives on as soon as the agent reports
//! the board up; the truck is already on the loop before the agent has opened the port
//! (the board's presence report then went out while nobody was listening); and the truck
//! waits on the loop so long before the link comes up that the board's event queue
//! overflows and drops that presence report. The last is what the board's re-announcement
//! of its loops at link-up (`docs/hardware.md`, "Sequencing and acknowledgement") is for:
//! without it the truck's reads all end as orphans and it gets no transaction.
#![cfg(unix)]

#[path = "common/board_lane.rs"]
mod board_lane;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aeogate::vboard::{Truck, VirtualBoard, VirtualBoardConfig};
use board_lane::{BoardAgentToml, board, lane};
use edge_agent::runtime::AgentHandle;
use protocol::link::SealRead;
use protocol::schema::Decision;
use tokio_util::sync::CancellationToken;

/// Every wait gives up after this long, so a failure never hangs.
const WAIT: Duration = Duration::from_secs(10);
/// How long the truck stays on the loop.
const DWELL: Duration = Duration::from_secs(3);

fn truck() -> Truck {
    board_lane::sgtin_truck(0x85, vec![SealRead::sealed(0x0042, 0x0001_E240)], DWELL)
}

/// An agent with one presence-loop lane served by `board`, no MQTT and no central.
async fn agent(
    board: &VirtualBoard,
    dir: &tempfile::TempDir,
    stop: &CancellationToken,
) -> AgentHandle {
    BoardAgentToml {
        name: "first truck",
        transaction_timeout: "60s",
        random_rates: ("0.01", "0.05"),
        random_key: "first-truck-random-key",
        extra: "",
    }
    .start(board, dir, stop)
    .await
}

async fn device_up(handle: &AgentHandle) {
    board_lane::device_up(handle, "board-L1", WAIT).await;
}

async fn decision(handle: &AgentHandle, within: Duration) -> Option<Decision> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(d) = handle
            .shared
            .live
            .get(&lane())
            .and_then(|l| l.last_decision)
        {
            return Some(d);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The truck's transaction holds what the readers saw on it.
fn assert_decided(handle: &AgentHandle, d: Option<Decision>, what: &str) {
    let live = handle.shared.live.get(&lane()).expect("lane L1 is live");
    let d = d.unwrap_or_else(|| {
        panic!(
            "{what}: no decision on L1 within {WAIT:?} after the truck left; \
             open transaction {:?}, orphan reads {}, devices {:?}",
            live.open,
            live.orphan_reads,
            handle.shared.device_health()
        )
    });
    assert_eq!(d.lane, lane(), "{what}: decided on the truck's lane");
    assert_eq!(
        live.orphan_reads, 0,
        "{what}: every read of the truck joined its transaction"
    );
}

async fn truck_right_after_link_up(loops: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let board = board(loops);
    let stop = CancellationToken::new();
    let handle = agent(&board, &dir, &stop).await;
    device_up(&handle).await;
    board.arrive(truck());
    tokio::time::sleep(DWELL).await;
    board.leave();
    let d = decision(&handle, WAIT).await;
    assert_decided(&handle, d, "truck right after link up");
    stop.cancel();
    let _ = tokio::time::timeout(WAIT, handle.join).await;
}

async fn truck_before_the_agent_opens_the_port(loops: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let board = board(loops);
    board.arrive(truck());
    // Let the loops settle and the board report them with nobody listening.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stop = CancellationToken::new();
    let handle = agent(&board, &dir, &stop).await;
    device_up(&handle).await;
    tokio::time::sleep(DWELL).await;
    board.leave();
    let d = decision(&handle, WAIT).await;
    assert_decided(
        &handle,
        d,
        "truck already on the loop before the port opened",
    );
    stop.cancel();
    let _ = tokio::time::timeout(WAIT, handle.join).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_truck_after_link_up_is_decided_one_loop() {
    truck_right_after_link_up(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_truck_after_link_up_is_decided_two_loops() {
    truck_right_after_link_up(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truck_on_the_loop_before_the_port_opens_is_decided_one_loop() {
    truck_before_the_agent_opens_the_port(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truck_on_the_loop_before_the_port_opens_is_decided_two_loops() {
    truck_before_the_agent_opens_the_port(2).await;
}

fn board_with(loops: usize, firmware: firmware::lane::Config) -> Arc<VirtualBoard> {
    let cfg = VirtualBoardConfig {
        lane: "L1".into(),
        loops,
        firmware,
        ..VirtualBoardConfig::default()
    };
    Arc::new(VirtualBoard::spawn(cfg).expect("virtual board starts"))
}

/// A truck waits on the loop while no agent listens, long enough for the board's event
/// queue to overflow with its reads (readers report it again and again) and drop the
/// presence report that would open its transaction. The readers here repeat every 100 ms
/// so that this takes a second, not the half minute it takes with the default hold-off.
async fn truck_waiting_while_the_queue_overflows(loops: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let board = board_with(
        loops,
        firmware::lane::Config {
            repeat_holdoff_ms: 100,
            seal_poll_ms: 100,
            ..firmware::lane::Config::default()
        },
    );
    board.arrive(truck());
    // 16 queued events at about 20 a second, plus overflow reports: well past full, and
    // past the virtual board's discard of unread link bytes (`vboard::STALE_BYTES`).
    tokio::time::sleep(Duration::from_millis(5_000)).await;
    let stop = CancellationToken::new();
    let handle = agent(&board, &dir, &stop).await;
    device_up(&handle).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    board.leave();
    let d = decision(&handle, WAIT).await;
    let live = handle.shared.live.get(&lane()).expect("lane L1 is live");
    assert!(
        d.is_some(),
        "a truck that sat on the loop before the link came up got no decision; \
         open transaction {:?}, orphan reads {}",
        live.open,
        live.orphan_reads
    );
    stop.cancel();
    let _ = tokio::time::timeout(WAIT, handle.join).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truck_waiting_while_the_board_queue_overflows_is_decided_one_loop() {
    truck_waiting_while_the_queue_overflows(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truck_waiting_while_the_board_queue_overflows_is_decided_two_loops() {
    truck_waiting_while_the_queue_overflows(2).await;
}
