//! The lane over a restarting board and between trucks: a virtual board (the real firmware
//! on a pty) and the edge agent in this process, the board as the lane's `lane_board`.
//!
//! - **A board reset or replaced faster than the silence timeout** (issue 14, item 2): the
//!   firmware stops and a new boot starts behind the same pty, so the agent's port never
//!   sees a hang-up or a silence. The new boot numbers its frames from 0, the numbers the
//!   old boot used a moment ago; a replacement board may also have been running longer, so
//!   its uptime does not go back. A truck arriving within half a second of the new board
//!   must still be decided (`docs/hardware.md`, "Boot announcement").
//! - **The lane between trucks** (issue 14, item 3): after a truck is decided and has left,
//!   the next truck meets a red light, and the barrier is down before that truck leaves the
//!   loops, until its own decision (`docs/hardware.md`, safety rule 4; `docs/decisions.md`,
//!   "Between trucks").
#![cfg(unix)]

#[path = "common/board_lane.rs"]
mod board_lane;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aeogate::bench::system::forward_publishes;
use aeogate::vboard::{Fault, Truck, VirtualBoard};
use board_lane::{BoardAgentToml, board, lane};
use edge_agent::runtime::AgentHandle;
use protocol::link::{Barrier, Light};
use protocol::schema::{Decision, LaneDecision, LaneSignal};
use tokio_util::sync::CancellationToken;

/// Every wait gives up after this long, so a failure never hangs.
const WAIT: Duration = Duration::from_secs(10);
/// How long a truck stays on the loop.
const DWELL: Duration = Duration::from_secs(2);
/// A board command or a loop change shows on the pins within this long (loop debounce
/// 50 ms, link round trip, the agent's decision path).
const REACT: Duration = Duration::from_millis(500);

fn truck(last: u8) -> Truck {
    board_lane::sgtin_truck(last, vec![], DWELL)
}

/// An agent with one presence-loop lane served by `board`, no MQTT and no central. Random
/// selection as rare as the policy allows (a rate must be above 0): with an empty replica
/// every truck is STANDARD (amber, barrier up).
async fn agent(
    board: &VirtualBoard,
    dir: &tempfile::TempDir,
    stop: &CancellationToken,
) -> AgentHandle {
    agent_with_mqtt(board, dir, stop, None, "60s").await
}

/// [`agent`], publishing its lane topics to the broker on `mqtt_port` if given.
async fn agent_with_mqtt(
    board: &VirtualBoard,
    dir: &tempfile::TempDir,
    stop: &CancellationToken,
    mqtt_port: Option<u16>,
    transaction_timeout: &str,
) -> AgentHandle {
    let mqtt = mqtt_port.map_or_else(String::new, |port| {
        format!(
            "[mqtt]\nhost = \"127.0.0.1\"\nport = {port}\nclient_id = \"agent-lane-test\"\n\
             lane_topic_prefix = \"aeogate/PORT1-G1/lanes\"\n\n"
        )
    });
    BoardAgentToml {
        name: "lane test",
        transaction_timeout,
        random_rates: ("1e-9", "1e-9"),
        random_key: "lane-test-random-key",
        extra: &mqtt,
    }
    .start(board, dir, stop)
    .await
}

async fn device_up(handle: &AgentHandle) {
    board_lane::device_up(handle, "board-L1", WAIT).await;
}

/// Waits until the board's pins show `light` and `barrier`.
async fn pins_show(board: &VirtualBoard, light: Light, barrier: Barrier, what: &str) {
    board_lane::pins_show(board, light, barrier, what, WAIT).await;
}

fn last_decision(handle: &AgentHandle) -> Option<Decision> {
    handle
        .shared
        .live
        .get(&lane())
        .and_then(|l| l.last_decision)
}

/// The lane's next decision after `previous` (by transaction), within `within`.
async fn next_decision(
    handle: &AgentHandle,
    previous: Option<&Decision>,
    within: Duration,
) -> Option<Decision> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(d) = last_decision(handle)
            && previous.is_none_or(|p| p.transaction_id != d.transaction_id)
        {
            return Some(d);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Drives `truck` through the lane and returns its decision, which must come.
async fn drive_through(
    handle: &AgentHandle,
    board: &VirtualBoard,
    truck: Truck,
    previous: Option<&Decision>,
    what: &str,
) -> Decision {
    board.arrive(truck);
    tokio::time::sleep(DWELL).await;
    board.leave();
    let d = next_decision(handle, previous, WAIT).await;
    let live = handle.shared.live.get(&lane()).expect("lane L1 is live");
    d.unwrap_or_else(|| {
        panic!(
            "{what}: no decision on L1 within {WAIT:?} after the truck left; open transaction \
             {:?}, orphan reads {}, board {:?}, devices {:?}",
            live.open,
            live.orphan_reads,
            board.stats(),
            handle.shared.device_health()
        )
    })
}

/// The board restarts (dark 200 ms, then a new boot whose clock reads `uptime_ms`; its
/// first `lost` frames never reach the agent), and 300 ms later a truck drives on.
async fn truck_after_a_quick_restart(uptime_ms: u32, lost: u64, what: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let board = board(2);
    let stop = CancellationToken::new();
    let handle = agent(&board, &dir, &stop).await;
    device_up(&handle).await;
    // The first board is used for a while: its frame numbers are the ones the new boot
    // will use.
    let first = drive_through(&handle, &board, truck(0x01), None, "before the restart").await;
    let old_boot = board.stats().boot_id;

    board.inject(Fault::Restart {
        down_ms: 200,
        uptime_ms,
    });
    if lost > 0 {
        board.inject(Fault::DropFrames(lost));
    }
    let deadline = Instant::now() + WAIT;
    while board.stats().restarts == 0 {
        assert!(Instant::now() < deadline, "the board did not restart");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_ne!(board.stats().boot_id, old_boot, "a new boot identifier");
    // Within half a second of the new board, the next truck drives on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = drive_through(&handle, &board, truck(0x02), Some(&first), what).await;
    assert_ne!(second.transaction_id, first.transaction_id);
    let live = handle.shared.live.get(&lane()).expect("lane L1 is live");
    assert_eq!(live.orphan_reads, 0, "{what}: every read joined its truck");
    let (tx, _, _) = handle
        .shared
        .store
        .transaction(&second.transaction_id)
        .expect("store readable")
        .expect("the second truck's transaction is journaled");
    let raws: Vec<&str> = tx.reads.iter().map(|r| r.raw.as_str()).collect();
    assert_eq!(
        raws,
        ["3074257BF7194E4000001A02"],
        "{what}: the second truck's tag, and nothing of the first, in its transaction"
    );
    stop.cancel();
    let _ = tokio::time::timeout(WAIT, handle.join).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truck_right_after_a_board_replaced_within_half_a_second_is_decided() {
    // The replacement has been powered for ten minutes: its uptime does not go back.
    truck_after_a_quick_restart(600_000, 0, "replaced board").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truck_right_after_a_board_reset_within_half_a_second_is_decided() {
    truck_after_a_quick_restart(0, 0, "reset board").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truck_after_a_quick_reset_whose_first_frames_were_lost_is_decided() {
    // The new boot's first heartbeat and first announcement are lost on the line (noise
    // while the board restarts): the agent hears of the new boot only from the resent
    // announcement, and no event of the new boot may come before it.
    truck_after_a_quick_restart(0, 2, "reset board, first frames lost").await;
}

/// Polls `probe` every 10 ms until it gives a value, at most [`WAIT`]; past that, panics
/// with what its last answer said was still missing.
async fn wait_for<T>(mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        match probe() {
            Ok(value) => return value,
            Err(missing) => assert!(Instant::now() < deadline, "{missing}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every message on the lane topics of L1, as (topic, `decision` field, transaction id).
type LaneMessages = Arc<std::sync::Mutex<Vec<(String, String, String)>>>;

/// Subscribes to L1's lane topics on the broker at `port`; returns what arrives.
async fn watch_lane_topics(port: u16, stop: &CancellationToken) -> LaneMessages {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let mut opts = MqttOptions::new("lane-test-watcher", "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut ev) = AsyncClient::new(opts, 64);
    client
        .subscribe("aeogate/PORT1-G1/lanes/L1/+", QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ev.poll()).await {
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => break,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("the lane topic watcher cannot reach the broker: {e}"),
            Err(_) => panic!("the broker did not acknowledge the subscription in {WAIT:?}"),
        }
    }
    let seen: LaneMessages = Arc::default();
    let out = Arc::clone(&seen);
    let retry = Duration::from_millis(50);
    forward_publishes(client, ev, retry, stop.clone(), move |p, _| {
        let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap_or_default();
        let field = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        if let Ok(mut seen) = out.lock() {
            seen.push((p.topic.clone(), field("decision"), field("transaction_id")));
        }
    });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_truck_meets_red_and_a_lowered_barrier_until_its_own_decision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let board = board(2);
    let stop = CancellationToken::new();
    let broker = aeogate::broker::start().expect("in-process MQTT broker");
    let topics = watch_lane_topics(broker.addr.port(), &stop).await;
    let handle = agent_with_mqtt(&board, &dir, &stop, Some(broker.addr.port()), "60s").await;
    device_up(&handle).await;
    // Connected before the first truck, so that no lane state is published twice (once
    // queued, once republished as retained on connecting).
    board_lane::device_up(&handle, "mqtt", WAIT).await;

    let first = drive_through(&handle, &board, truck(0x01), None, "first truck").await;
    assert_eq!(first.decision, LaneDecision::Standard, "{first:?}");
    pins_show(
        &board,
        Light::Amber,
        Barrier::Raise,
        "first truck's decision",
    )
    .await;

    // The next truck drives on: red at once. The barrier may not be lowered onto it
    // while it is on the loops (safety rule 1), but the old decision is gone.
    board.arrive(truck(0x02));
    tokio::time::sleep(REACT).await;
    let on_loop_until = Instant::now() + DWELL;
    let mut samples = 0;
    while Instant::now() < on_loop_until {
        assert_eq!(
            board.lights(),
            Light::Red,
            "the next truck, undecided, on the loop: the light must be red"
        );
        samples += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let shown = handle
        .shared
        .live
        .get(&lane())
        .and_then(|l| l.shown)
        .expect("the lane shows something");
    assert_eq!(
        shown.decision,
        LaneSignal::Waiting,
        "the agent shows the lane waiting, not the first truck's decision: {shown:?}"
    );
    assert_ne!(shown.transaction_id, Some(first.transaction_id));
    let state_topic = "aeogate/PORT1-G1/lanes/L1/state";
    let last_state = topics
        .lock()
        .expect("lane messages")
        .iter()
        .rfind(|(topic, _, _)| topic == state_topic)
        .cloned();
    let (_, decision, tx) = last_state.expect("the lane state was published");
    assert_eq!(
        decision, "WAITING",
        "the MQTT lane state shows the lane waiting, not the first truck's decision"
    );
    assert_ne!(tx, first.transaction_id.to_string());

    // It leaves the loops towards the barrier: the barrier is down before its decision,
    // and stays down, red, until the decision comes.
    board.leave();
    let left = Instant::now();
    let mut down_seen = false;
    let second = loop {
        if let Some(d) = last_decision(&handle)
            && d.transaction_id != first.transaction_id
        {
            break d;
        }
        assert!(left.elapsed() < WAIT, "no decision for the second truck");
        assert_eq!(board.lights(), Light::Red, "undecided: red");
        if left.elapsed() >= REACT {
            assert_eq!(
                board.barrier(),
                Barrier::Lower,
                "the loops are clear and the truck is undecided: the barrier is down"
            );
            down_seen = true;
            samples += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(
        down_seen,
        "the decision came within {REACT:?} of the truck leaving the loops (departure grace \
         is 1 s): the barrier was never sampled"
    );
    assert!(samples > 50, "sampled the lane {samples} times");
    // Its own decision then shows.
    assert_eq!(second.decision, LaneDecision::Standard);
    pins_show(
        &board,
        Light::Amber,
        Barrier::Raise,
        "second truck's decision",
    )
    .await;
    let seen = wait_for(|| {
        let seen = topics.lock().expect("lane messages").clone();
        let decisions = seen
            .iter()
            .filter(|(t, _, _)| t.ends_with("/decision"))
            .count();
        if decisions >= 2 {
            Ok(seen)
        } else {
            Err(format!("the second decision was not published: {seen:?}"))
        }
    })
    .await;
    let decisions: Vec<&str> = seen
        .iter()
        .filter(|(topic, _, _)| topic.ends_with("/decision"))
        .map(|(_, d, _)| d.as_str())
        .collect();
    assert_eq!(
        decisions,
        ["STANDARD", "STANDARD"],
        "the decision topic carries decisions only"
    );
    // Not counting the safe state (no transaction) every lane gets on connecting.
    let states: Vec<&str> = seen
        .iter()
        .filter(|(topic, d, tx)| topic.ends_with("/state") && !(d == "WAITING" && tx.is_empty()))
        .map(|(_, d, _)| d.as_str())
        .collect();
    assert_eq!(
        states,
        ["WAITING", "STANDARD", "WAITING", "STANDARD"],
        "each truck: waiting on arrival, then its decision"
    );
    stop.cancel();
    let _ = tokio::time::timeout(WAIT, handle.join).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truck_decided_while_on_the_loop_leaves_the_lane_safe_behind_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let board = board(2);
    let stop = CancellationToken::new();
    // The transaction closes on its timeout while the truck still stands on the loop.
    let handle = agent_with_mqtt(&board, &dir, &stop, None, "2s").await;
    device_up(&handle).await;
    board.arrive(truck(0x01));
    let decided = next_decision(&handle, None, WAIT)
        .await
        .expect("decided on the transaction timeout");
    assert_eq!(decided.decision, LaneDecision::Standard, "{decided:?}");
    pins_show(&board, Light::Amber, Barrier::Raise, "decided on the loop").await;
    board.leave();
    // It has left: red, barrier down, and the agent shows the lane waiting for the next.
    pins_show(&board, Light::Red, Barrier::Lower, "the decided truck left").await;
    let s = wait_for(|| {
        let shown = handle.shared.live.get(&lane()).and_then(|l| l.shown);
        match shown {
            Some(s) if s.decision == LaneSignal::Waiting => Ok(s),
            _ => Err(format!(
                "the agent still shows {shown:?} after the decided truck left"
            )),
        }
    })
    .await;
    assert_eq!(s.transaction_id, None, "no truck in the lane: {s:?}");
    stop.cancel();
    let _ = tokio::time::timeout(WAIT, handle.join).await;
}
