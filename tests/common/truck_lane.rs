//! One lane of a gate with a truck driving through it, for system tests: the real
//! `central` and `edge-agent` binaries on loopback and a virtual lane board (the real
//! firmware) on a pty; trucks carry the benchmark data's containers.

use std::time::{Duration, Instant};

use aeogate::vboard::{Truck, VirtualBoard, VirtualBoardConfig};
use serde_json::{Value, json};

use crate::common::{
    AGENT_TOKEN, AgentSite, CentralLink, CentralSite, LaneSpec, STEP, Transport, http_client,
};

pub fn container(j: u64) -> String {
    aeogate::bench::data::container(j)
        .expect("container")
        .to_string()
}

/// A truck carrying container `j`'s RFID tag (the container number's ASCII in the EPC
/// bank, as a container tag reader reports it).
pub fn truck(j: u64) -> Truck {
    let mut epc = container(j).into_bytes();
    epc.push(0);
    Truck {
        tags: vec![epc],
        eseals: Vec::new(),
        dwell: Duration::from_millis(700),
    }
}

/// Central with the benchmark's consignment 0 (container 0, seal 0, AEO parties), a
/// virtual board on lane L1 and an agent (not started) whose lane L1 is that board's.
pub fn site(dir: &std::path::Path, seed: u64) -> (CentralSite, VirtualBoard, AgentSite) {
    let central = CentralSite::create(&dir.join("central"), Transport::PlainHttp);
    let board = VirtualBoard::spawn(VirtualBoardConfig {
        lane: "L1".into(),
        loops: 1,
        seed,
        ..VirtualBoardConfig::default()
    })
    .expect("virtual board");
    let lanes = vec![LaneSpec::on_board("L1", board.tty_link())];
    let agent = AgentSite::create(
        &dir.join("agent"),
        &CentralLink::to(&central),
        &lanes,
        "24h",
    );
    (central, board, agent)
}

pub async fn get(agent: &AgentSite, path: &str) -> Option<Value> {
    let r = http_client(None)
        .get(format!("{}{path}", agent.base))
        .bearer_auth(AGENT_TOKEN)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    r.json().await.ok()
}

/// Waits until the agent's board link is up and, with `replica`, its replica is loaded
/// and fresh.
pub async fn ready(agent: &AgentSite, replica: bool) {
    let deadline = Instant::now() + STEP;
    loop {
        if let Some(r) = get(agent, "/readyz").await {
            let board_up = r["devices_down"]
                .as_array()
                .is_some_and(|d| !d.iter().any(|d| d == "board-L1"));
            let fresh = r["replica"]["stale"] == false && r["replica"]["sequence"] != 0;
            if board_up && (fresh || !replica) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the agent was not ready in {STEP:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until L1's open transaction holds `text` (a container number): the read went
/// through the link, so the board has its ack.
pub async fn open_holds(agent: &AgentSite, text: &str) {
    let deadline = Instant::now() + STEP;
    loop {
        if let Some(lanes) = get(agent, "/api/v1/lanes").await
            && lanes[0]["open"].to_string().contains(text)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "L1's open transaction never held {text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An officer enters seal `j` (the declared seal of consignment `j`) on L1.
pub async fn enter_seal(agent: &AgentSite, j: u64) {
    let seal = aeogate::bench::data::seal(j).expect("seal").to_string();
    let r = http_client(None)
        .post(format!("{}/api/v1/lanes/L1/actions", agent.base))
        .bearer_auth(AGENT_TOKEN)
        .json(&json!({"action": "MANUAL_ENTRY", "value": {"kind": "SEAL", "number": seal}}))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("manual entry");
    assert_eq!(r.status(), 201, "manual entry accepted");
}
