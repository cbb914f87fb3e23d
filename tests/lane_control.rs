//! Lane control over real processes (issue 19): the `edge-agent` and `central` binaries on
//! loopback, and a virtual board (the real firmware on a pty) as the lane's board.
//!
//! A supervisor closes lane L1 with a reason through the console API: the board shows red
//! with the barrier down and the sign saying "LANE CLOSED", the API shows the lane
//! `CLOSED`. A truck then drives through: no transaction is opened or decided, the truck
//! is journaled as `LANE_REFUSED` (with its tag) and reaches central, and central's gate
//! health reports the closed lane from the heartbeat. The agent restarts: the lane is
//! still closed and refuses the next truck. Reopened, the next truck is decided, no
//! sooner than the lane's configured `departure_grace` (3 s here, not the 1 s default)
//! after it leaves the loops.
//!
//! On main none of this exists: the close endpoint is a 404 and the first truck is
//! decided.
#![cfg(unix)]

#[path = "common/board_lane.rs"]
mod board_lane;
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aeogate::vboard::{Truck, VirtualBoard, VirtualBoardConfig};
use common::{AGENT_TOKEN, AgentSite, CentralSite, GATE, LaneSpec, Transport};
use protocol::link::{Barrier, Light};
use protocol::schema::{EventBody, GateId};
use serde_json::{Value, json};

/// Every wait gives up after this long.
const WAIT: Duration = Duration::from_secs(20);
/// How long a truck stays on the loop.
const DWELL: Duration = Duration::from_millis(1500);
/// The lane's departure grace in this test (the default is 1 s).
const DEPARTURE_GRACE: Duration = Duration::from_secs(3);
/// The supervisor's console session.
const SUPERVISOR_TOKEN: &str = "lane-control-supervisor-session-token-0001";

fn truck(last: u8) -> Truck {
    board_lane::sgtin_truck(last, vec![], DWELL)
}

async fn post(site: &AgentSite, token: &str, path: &str, body: &Value) -> (u16, Value) {
    site.post_as(token, path, body).await
}

async fn lane_report(site: &AgentSite) -> Value {
    let all = site.get_json("/api/v1/lanes").await;
    all.as_array()
        .and_then(|a| a.iter().find(|l| l["lane"] == "L1").cloned())
        .expect("lane L1 reported")
}

async fn board_up(site: &AgentSite) {
    let deadline = Instant::now() + WAIT;
    loop {
        let l = lane_report(site).await;
        let up = l["devices"].as_array().is_some_and(|d| {
            d.iter()
                .any(|d| d["device"] == "board-L1" && d["up"] == true)
        });
        if up {
            return;
        }
        assert!(Instant::now() < deadline, "board-L1 not up: {l}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn pins_show(board: &VirtualBoard, light: Light, barrier: Barrier, what: &str) {
    board_lane::pins_show(board, light, barrier, what, WAIT).await;
}

/// Waits until the board has obeyed a command after the first `obeyed` and the last one
/// says "LANE CLOSED" (red and barrier down alone are also the board's state before any
/// command).
async fn commanded_closed(board: &VirtualBoard, obeyed: u64, what: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = board.last_command().map(|c| c.text.to_string());
        if board.stats().commands_obeyed > obeyed && text.as_deref() == Some("LANE CLOSED") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the board's last command is {text:?}, not LANE CLOSED"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A truck drives on and off a closed lane; the lane stays red with the barrier down the
/// whole time, and no transaction appears.
async fn refused_truck(site: &AgentSite, board: &VirtualBoard, tag: u8, refusals: u64) {
    board.arrive(truck(tag));
    let until = Instant::now() + DWELL;
    while Instant::now() < until {
        assert_eq!(
            (board.lights(), board.barrier()),
            (Light::Red, Barrier::Lower),
            "a truck at a closed lane meets red and a lowered barrier"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    board.leave();
    let deadline = Instant::now() + WAIT;
    loop {
        let l = lane_report(site).await;
        if l["refusals"].as_u64() == Some(refusals) {
            break;
        }
        assert!(Instant::now() < deadline, "the truck was not refused: {l}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Past the departure grace: a transaction, had one opened, would be decided by now.
    tokio::time::sleep(DEPARTURE_GRACE + Duration::from_millis(500)).await;
    assert_eq!(
        site.decided("L1").await,
        0,
        "nothing decided at a closed lane"
    );
    assert!(site.transactions("L1").await.is_empty());
    assert_eq!(
        (board.lights(), board.barrier()),
        (Light::Red, Barrier::Lower)
    );
    assert_eq!(lane_report(site).await["shown"]["decision"], "CLOSED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_lane_refuses_trucks_across_a_restart_until_reopened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut central = CentralSite::started(dir.path(), Transport::PlainHttp).await;
    let board = Arc::new(
        VirtualBoard::spawn(VirtualBoardConfig {
            lane: "L1".into(),
            loops: 1,
            ..VirtualBoardConfig::default()
        })
        .expect("virtual board starts"),
    );
    let lanes = [LaneSpec::on_board("L1", board.tty_link())];
    let mut site = AgentSite::beside(dir.path(), &central, &lanes, "24h");
    // The lane's own departure grace.
    let text = std::fs::read_to_string(&site.config_path).expect("agent.toml");
    let text = text.replacen(
        "presence_loop = true\n",
        &format!(
            "presence_loop = true\ndeparture_grace = \"{}s\"\n",
            DEPARTURE_GRACE.as_secs()
        ),
        1,
    );
    std::fs::write(&site.config_path, text).expect("agent.toml");
    edge_agent::console::add_session_to_store_file(
        &site.store_path,
        GateId::parse(GATE).expect("gate"),
        "sup1",
        edge_agent::console::Role::Supervisor,
        SUPERVISOR_TOKEN,
        Duration::from_secs(3600),
    )
    .expect("supervisor session");
    site.start().await;
    board_up(&site).await;

    // Who may close, and with what.
    let close = "/api/v1/lanes/L1/close";
    let reason = json!({"reason": "barrier maintenance"});
    assert_eq!(
        post(&site, AGENT_TOKEN, close, &reason).await.0,
        403,
        "an officer may not close a lane"
    );
    assert_eq!(
        post(&site, SUPERVISOR_TOKEN, close, &json!({"reason": " "}))
            .await
            .0,
        400,
        "a reason is required"
    );
    assert_eq!(
        post(&site, SUPERVISOR_TOKEN, "/api/v1/lanes/L9/close", &reason)
            .await
            .0,
        404
    );
    let obeyed = board.stats().commands_obeyed;
    let (status, body) = post(&site, SUPERVISOR_TOKEN, close, &reason).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (body["closed"].as_bool(), body["by"].as_str()),
        (Some(true), Some("sup1"))
    );
    assert_eq!(
        post(&site, SUPERVISOR_TOKEN, close, &reason).await.0,
        409,
        "already closed"
    );

    commanded_closed(&board, obeyed, "closed lane").await;
    pins_show(&board, Light::Red, Barrier::Lower, "closed lane").await;
    let l = lane_report(&site).await;
    assert_eq!(l["shown"]["decision"], "CLOSED", "{l}");
    assert_eq!(l["closed"]["reason"], "barrier maintenance", "{l}");

    refused_truck(&site, &board, 0x01, 1).await;

    // Central: the refusal and the lane control are stored, and the gate's heartbeat
    // lists the closed lane.
    let staff = central.staff().await;
    let deadline = Instant::now() + WAIT;
    loop {
        let events = staff
            .get_json(&format!("/api/v1/events?gate={GATE}&lane=L1&limit=100"))
            .await;
        let types: Vec<String> = events["events"]
            .as_array()
            .or_else(|| events["items"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|e| e["entry"]["body"]["type"].as_str().map(str::to_owned))
            .collect();
        let gate = staff.gate().await.unwrap_or_default();
        let closed = &gate["last_heartbeat"]["heartbeat"]["closed_lanes"];
        if types.iter().any(|t| t == "LANE_REFUSED")
            && types.iter().any(|t| t == "LANE_CONTROL")
            && closed[0]["lane"] == "L1"
        {
            assert_eq!(closed[0]["reason"], "barrier maintenance");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "central did not get the refusal and the closed lane: events {types:?}, gate {gate}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A restart keeps the lane closed.
    site.terminate();
    let obeyed = board.stats().commands_obeyed;
    site.start().await;
    board_up(&site).await;
    let l = lane_report(&site).await;
    assert_eq!(
        l["closed"]["reason"], "barrier maintenance",
        "closed after a restart: {l}"
    );
    assert_eq!(l["shown"]["decision"], "CLOSED", "{l}");
    commanded_closed(&board, obeyed, "closed lane after a restart").await;
    pins_show(
        &board,
        Light::Red,
        Barrier::Lower,
        "closed lane after a restart",
    )
    .await;
    refused_truck(&site, &board, 0x02, 1).await;

    // Reopened: the next truck is decided, and not before the lane's departure grace.
    let (status, body) = post(
        &site,
        SUPERVISOR_TOKEN,
        "/api/v1/lanes/L1/reopen",
        &json!({"reason": "maintenance done"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert!(lane_report(&site).await["closed"].is_null());
    board.arrive(truck(0x03));
    tokio::time::sleep(DWELL).await;
    board.leave();
    let left = Instant::now();
    let row = site.wait_decided("L1", 1).await;
    let waited = left.elapsed();
    assert!(
        waited >= DEPARTURE_GRACE - Duration::from_millis(100),
        "decided {waited:?} after the truck left: the lane's departure grace is {DEPARTURE_GRACE:?}"
    );
    assert_eq!(
        row["transaction"]["reads"][0]["raw"],
        "3074257BF7194E4000001A03"
    );

    // The journal holds both lane controls and both refusals, with the refused tags.
    site.terminate();
    let journal = site.journal();
    let controls: Vec<bool> = journal
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::LaneControl { closed, .. } => Some(*closed),
            _ => None,
        })
        .collect();
    assert_eq!(controls, [true, false]);
    let refused: Vec<Vec<String>> = journal
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::LaneRefused { cause, reads, .. } => {
                assert_eq!(cause, "LANE_CLOSED");
                Some(reads.iter().map(|r| r.raw.clone()).collect())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        refused,
        [["3074257BF7194E4000001A01"], ["3074257BF7194E4000001A02"]],
        "each refused truck is journaled with its tag"
    );
    let decisions = journal
        .iter()
        .filter(|e| matches!(e.body, EventBody::Decision { .. }))
        .count();
    assert_eq!(
        decisions, 1,
        "only the truck after the reopening was decided"
    );
    central.stop();
}
