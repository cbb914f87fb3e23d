//! The in-process lane tests' set-up: a virtual board (the real firmware on a pty) as the
//! `lane_board` of lane L1 of an edge agent started in the test's process.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use aeogate::vboard::{Truck, VirtualBoard, VirtualBoardConfig};
use edge_agent::runtime::AgentHandle;
use protocol::link::{Barrier, Light, SealRead};
use protocol::schema::LaneId;
use tokio_util::sync::CancellationToken;

/// A truck whose one RFID tag is the SGTIN-96 of the GS1 example with `last` as its final
/// byte (0x85 in the example), with `eseals`, staying `dwell` on the loop.
pub fn sgtin_truck(last: u8, eseals: Vec<SealRead>, dwell: Duration) -> Truck {
    Truck {
        tags: vec![vec![
            0x30, 0x74, 0x25, 0x7B, 0xF7, 0x19, 0x4E, 0x40, 0x00, 0x00, 0x1A, last,
        ]],
        eseals,
        dwell,
    }
}

/// A virtual board for lane L1 with `loops` presence loops.
pub fn board(loops: usize) -> Arc<VirtualBoard> {
    let cfg = VirtualBoardConfig {
        lane: "L1".into(),
        loops,
        ..VirtualBoardConfig::default()
    };
    Arc::new(VirtualBoard::spawn(cfg).expect("virtual board starts"))
}

/// `s` as a TOML string, quoted and escaped.
pub fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// Lane L1.
pub fn lane() -> LaneId {
    LaneId::parse("L1").expect("lane id")
}

/// The agent's configuration: gate PORT1-G1 with one presence-loop lane L1 whose
/// `lane_board` is `board`, the store in `dir`, no central; `name` names the gate ("`name`
/// gate") and the policy, `extra` is added at the end (an `[mqtt]` table, or empty).
pub struct BoardAgentToml<'a> {
    pub name: &'a str,
    pub transaction_timeout: &'a str,
    /// `random_rate_aeo` and `random_rate_other`.
    pub random_rates: (&'a str, &'a str),
    pub random_key: &'a str,
    pub extra: &'a str,
}

impl BoardAgentToml<'_> {
    pub fn text(&self, board: &VirtualBoard, dir: &tempfile::TempDir) -> String {
        let BoardAgentToml {
            name,
            transaction_timeout,
            random_rates: (aeo, other),
            random_key,
            extra,
        } = self;
        format!(
            "[gate]\nid = \"PORT1-G1\"\nname = \"{name} gate\"\nport = \"PORT1\"\n\n\
             [[lanes]]\nid = \"L1\"\nname = \"Lane 1\"\npresence_loop = true\ntransaction_timeout = {}\n\
             [lanes.routes]\nfast = \"Lane 1 priority\"\nstandard = \"Lane 2\"\ninspect = \"Inspection bay\"\n\n\
             [[devices]]\nname = \"board-L1\"\nlane = \"L1\"\nkind = \"lane_board\"\npath = {}\nbaud = 115200\n\
             silence_timeout = \"5s\"\nreopen_backoff_max = \"1s\"\n\n\
             [store]\npath = {}\n\n\
             [policy]\nname = \"{name}\"\nstaleness_bound = \"24h\"\nrequired_roles = [\"IMPORTER\", \"CARRIER\"]\n\
             home_programmes = [\"EU-AEO\"]\nrandom_rate_aeo = {aeo}\nrandom_rate_other = {other}\nrandom_key = \"{random_key}\"\n\n\
             [console]\nbind = \"127.0.0.1:0\"\n{extra}",
            toml_str(transaction_timeout),
            toml_str(&board.tty_link().to_string_lossy()),
            toml_str(&dir.path().join("agent.redb").to_string_lossy()),
        )
    }

    /// Starts the agent with this configuration until `stop`.
    pub async fn start(
        &self,
        board: &VirtualBoard,
        dir: &tempfile::TempDir,
        stop: &CancellationToken,
    ) -> AgentHandle {
        let text = self.text(board, dir);
        let what = format!("{} agent", self.name);
        let cfg = edge_agent::config::Config::from_toml_str(&text, &what)
            .expect("agent configuration parses");
        edge_agent::runtime::start(cfg, stop.clone())
            .await
            .expect("agent starts")
    }
}

/// Waits (at most `wait`) until the agent reports device `name` up.
pub async fn device_up(handle: &AgentHandle, name: &str, wait: Duration) {
    let deadline = Instant::now() + wait;
    loop {
        let health = handle.shared.device_health();
        if health.iter().any(|d| d.device == name && d.up) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not report {name} up within {wait:?}: {health:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits (at most `wait`) until the board's pins show `light` and `barrier`.
pub async fn pins_show(
    board: &VirtualBoard,
    light: Light,
    barrier: Barrier,
    what: &str,
    wait: Duration,
) {
    let deadline = Instant::now() + wait;
    while (board.lights(), board.barrier()) != (light, barrier) {
        assert!(
            Instant::now() < deadline,
            "{what}: the lane shows {:?} / {:?}, not {light:?} / {barrier:?}",
            board.lights(),
            board.barrier()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
