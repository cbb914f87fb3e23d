//! Helpers of the LLRP lane tests (`tests/llrp_lane.rs`, `tests/llrp_interop.rs`): the
//! agent in this process with board lanes and an `[[llrp]]` reader, health and decision
//! waits with deadlines, and the journaled transaction of a decision.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aeogate::vboard::{Truck, VirtualBoard, VirtualBoardConfig};
use aeogate::vreader::{VirtualReader, VirtualReaderConfig};
use edge_agent::runtime::AgentHandle;
use protocol::link::SealRead;
use protocol::schema::{Decision, DeviceHealth, EventBody, GateTransaction, LaneId};
use tokio_util::sync::CancellationToken;

/// Every wait gives up after this long, so a failure never hangs.
pub const WAIT: Duration = Duration::from_secs(15);
/// How long a truck stays in the lane.
pub const DWELL: Duration = Duration::from_secs(3);
/// The bound on noticing a reader fault.
pub const NOTICE: Duration = Duration::from_secs(5);

/// An SGTIN-96 tag on the tractor and the container's ISO 6346 number as an ASCII EPC.
pub fn tags() -> Vec<Vec<u8>> {
    vec![
        vec![
            0x30, 0x74, 0x25, 0x7B, 0xF7, 0x19, 0x4E, 0x40, 0x00, 0x00, 0x1A, 0x85,
        ],
        b"CSQU3054383\0".to_vec(),
    ]
}

pub fn eseals() -> Vec<SealRead> {
    vec![SealRead::sealed(0x0042, 0x0001_E240)]
}

pub fn board(lane: &str) -> Arc<VirtualBoard> {
    let cfg = VirtualBoardConfig {
        lane: lane.into(),
        loops: 1,
        ..VirtualBoardConfig::default()
    };
    Arc::new(VirtualBoard::spawn(cfg).expect("virtual board starts"))
}

pub async fn reader() -> VirtualReader {
    VirtualReader::start(
        VirtualReaderConfig {
            antennas: 4,
            cycle: Duration::from_millis(100),
        },
        ([127, 0, 0, 1], 0).into(),
    )
    .await
    .expect("virtual reader starts")
}

pub fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

pub fn lane_toml(id: &str, presence_loop: bool) -> String {
    format!(
        "[[lanes]]\nid = \"{id}\"\nname = \"Lane {id}\"\npresence_loop = {presence_loop}\n\
         transaction_timeout = \"60s\"\nquiet_close = \"2s\"\n\
         [lanes.routes]\nfast = \"{id} priority\"\nstandard = \"Lane 9\"\ninspect = \"Inspection bay\"\n\n"
    )
}

pub fn board_toml(b: &VirtualBoard, lane: &str) -> String {
    format!(
        "[[devices]]\nname = \"board-{lane}\"\nlane = \"{lane}\"\nkind = \"lane_board\"\npath = {}\n\
         silence_timeout = \"5s\"\nreopen_backoff_max = \"1s\"\n\n",
        toml_str(&b.tty_link().to_string_lossy())
    )
}

pub fn llrp_toml(reader: &VirtualReader, antennas: &str) -> String {
    llrp_toml_at(reader.addr().port(), antennas)
}

/// An `[[llrp]]` section for a reader on 127.0.0.1:`port` (27 dBm, 500 ms keepalive).
pub fn llrp_toml_at(port: u16, antennas: &str) -> String {
    format!(
        "[[llrp]]\nname = \"llrp-1\"\nhost = \"127.0.0.1\"\nport = {port}\nantennas = {{ {antennas} }}\n\
         tx_power_dbm = 27.0\nkeepalive = \"500ms\"\nsilence_timeout = \"1500ms\"\n\
         unique_window = \"2s\"\nreconnect_backoff_max = \"1s\"\n\n"
    )
}

pub async fn agent(
    sections: &str,
    dir: &tempfile::TempDir,
    stop: &CancellationToken,
) -> AgentHandle {
    let cfg =
        edge_agent::config::Config::from_toml_str(&agent_toml(sections, dir), "llrp lane agent")
            .expect("agent configuration parses");
    edge_agent::runtime::start(cfg, stop.clone())
        .await
        .expect("agent starts")
}

/// The agent started from `agent.toml` in `dir`, so `edge-agent reload` (here
/// [`reload`]) applies a changed file; returns the file's path too.
pub async fn reloadable_agent(
    sections: &str,
    dir: &tempfile::TempDir,
    stop: &CancellationToken,
) -> (AgentHandle, std::path::PathBuf) {
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, agent_toml(sections, dir)).expect("write agent.toml");
    let cfg = edge_agent::config::Config::load(&path).expect("agent configuration parses");
    let handle = edge_agent::runtime::start_from(cfg, Some(path.clone()), stop.clone())
        .await
        .expect("agent starts");
    (handle, path)
}

/// Writes `sections` as the agent's file in `dir` and asks the agent to reload it.
pub async fn reload(sections: &str, dir: &tempfile::TempDir) -> edge_agent::reload::Outcome {
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, agent_toml(sections, dir)).expect("write agent.toml");
    let socket = edge_agent::reload::control_socket_path(&dir.path().join("agent.redb"));
    edge_agent::reload::request_reload(&socket, None)
        .await
        .expect("the agent answers the reload")
}

fn agent_toml(sections: &str, dir: &tempfile::TempDir) -> String {
    // Random selection one in a million (policy keeps it above 0): the two lanes'
    // transactions have different ids, and a keyed random pick on one of them at 1 % or
    // 5 % would make equal reads decide differently.
    format!(
        "[gate]\nid = \"PORT1-G1\"\nname = \"llrp gate\"\nport = \"PORT1\"\n\n{sections}\
         [store]\npath = {}\n\n\
         [policy]\nname = \"llrp\"\nstaleness_bound = \"24h\"\nrequired_roles = [\"IMPORTER\", \"CARRIER\"]\n\
         home_programmes = [\"EU-AEO\"]\nrandom_rate_aeo = 0.000001\nrandom_rate_other = 0.000001\nrandom_key = \"llrp-lane-random-key\"\n\n\
         [console]\nbind = \"127.0.0.1:0\"\n",
        toml_str(&dir.path().join("agent.redb").to_string_lossy()),
    )
}

pub fn health(handle: &AgentHandle, device: &str) -> Option<DeviceHealth> {
    handle
        .shared
        .device_health()
        .into_iter()
        .find(|d| d.device == device)
}

/// Waits until `device` is `up` (or down); returns how long it took.
pub async fn wait_health(
    handle: &AgentHandle,
    device: &str,
    up: bool,
    within: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        if health(handle, device).is_some_and(|h| h.up == up) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{device} not {} within {within:?}: {:?}",
            if up { "up" } else { "down" },
            health(handle, device)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn decision(handle: &AgentHandle, lane: &LaneId) -> Decision {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(d) = handle.shared.live.get(lane).and_then(|l| l.last_decision) {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "no decision on {lane} within {WAIT:?}: {:?}; devices {:?}",
            handle.shared.live.get(lane),
            handle.shared.device_health()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn transaction(handle: &AgentHandle, d: &Decision) -> GateTransaction {
    let entries = handle.shared.store.entries(1, 10_000).expect("journal");
    entries
        .into_iter()
        .find_map(|e| match e.body {
            EventBody::Transaction { transaction } if transaction.id == d.transaction_id => {
                Some(transaction)
            }
            _ => None,
        })
        .expect("the decided transaction is journaled")
}

/// What the readers saw, without who saw it or when.
pub fn seen(tx: &GateTransaction) -> BTreeSet<String> {
    tx.reads
        .iter()
        .map(|r| format!("{:?} {:?}", r.source, r.value))
        .collect()
}

pub fn lane(s: &str) -> LaneId {
    LaneId::parse(s).expect("lane id")
}

/// An agent of the test's own, with its directory and stop token.
pub struct Running {
    pub dir: tempfile::TempDir,
    pub stop: CancellationToken,
    pub handle: AgentHandle,
}

impl Running {
    /// Stops the agent and waits for it, at most [`WAIT`].
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(WAIT, self.handle.join).await;
    }
}

/// An agent with lane L1 (no presence loop) read by the `[[llrp]]` section `llrp`,
/// returned once the reader is up.
pub async fn l1_on_reader(llrp: &str) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = CancellationToken::new();
    let sections = format!("{}{llrp}", lane_toml("L1", false));
    let handle = agent(&sections, &dir, &stop).await;
    wait_health(&handle, "llrp-1", true, WAIT).await;
    Running { dir, stop, handle }
}

/// A tag-less truck with its e-seal on `lane`'s board (the tags come from a reader).
pub fn truck_without_tags(lane: &VirtualBoard) {
    lane.arrive(Truck {
        tags: vec![],
        eseals: eseals(),
        dwell: DWELL,
    });
}

/// The reader's `antenna` reads [`tags`] for one dwell on L1, while L1's `board` (if it
/// has one) holds a tag-less truck; returns the transaction decided on L1.
pub async fn read_on_l1(
    handle: &AgentHandle,
    reader: &VirtualReader,
    antenna: u16,
    board: Option<&VirtualBoard>,
) -> GateTransaction {
    if let Some(b) = board {
        truck_without_tags(b);
    }
    reader.arrive(antenna, tags());
    tokio::time::sleep(DWELL).await;
    reader.leave(antenna);
    if let Some(b) = board {
        b.leave();
    }
    let d = decision(handle, &lane("L1")).await;
    transaction(handle, &d)
}

/// Lane L1 whose board reads the tags itself and lane L2 whose tags come from the
/// `[[llrp]]` reader on 127.0.0.1:`llrp_port` (antennas 1 and 2), in an agent started
/// with both boards and the reader up.
pub struct TwoLanes {
    pub board_lane: Arc<VirtualBoard>,
    pub llrp_lane: Arc<VirtualBoard>,
    pub handle: AgentHandle,
}

impl TwoLanes {
    pub async fn start(llrp_port: u16, dir: &tempfile::TempDir, stop: &CancellationToken) -> Self {
        let board_lane = board("L1");
        let llrp_lane = board("L2");
        let sections = format!(
            "{}{}{}{}{}",
            lane_toml("L1", true),
            lane_toml("L2", true),
            board_toml(&board_lane, "L1"),
            board_toml(&llrp_lane, "L2"),
            llrp_toml_at(llrp_port, "1 = \"L2\", 2 = \"L2\""),
        );
        let handle = agent(&sections, dir, stop).await;
        for device in ["board-L1", "board-L2", "llrp-1"] {
            wait_health(&handle, device, true, WAIT).await;
        }
        Self {
            board_lane,
            llrp_lane,
            handle,
        }
    }

    /// The same truck on both lanes: `reader(true)` has the reader read [`tags`] on L2,
    /// `reader(false)` ends that after the dwell. Asserts that L2's transaction holds the
    /// reader's reads and that both lanes saw the same, decided the same and gave the same
    /// reasons; returns the L2 transaction and both decisions.
    pub async fn same_truck(
        &self,
        mut reader: impl FnMut(bool),
    ) -> (GateTransaction, Decision, Decision) {
        self.board_lane.arrive(Truck {
            tags: tags(),
            eseals: eseals(),
            dwell: DWELL,
        });
        truck_without_tags(&self.llrp_lane);
        reader(true);
        tokio::time::sleep(DWELL).await;
        reader(false);
        self.board_lane.leave();
        self.llrp_lane.leave();
        let on_board = decision(&self.handle, &lane("L1")).await;
        let on_llrp = decision(&self.handle, &lane("L2")).await;
        let board_tx = transaction(&self.handle, &on_board);
        let llrp_tx = transaction(&self.handle, &on_llrp);
        assert!(
            llrp_tx.reads.iter().any(|r| r.device == "llrp-1"),
            "the LLRP reader's reads are in the L2 transaction: {:?}",
            llrp_tx.reads
        );
        assert_eq!(seen(&board_tx), seen(&llrp_tx), "same reads on both lanes");
        assert_eq!(on_board.decision, on_llrp.decision, "same decision");
        let codes = |d: &Decision| d.reasons.iter().map(|r| r.code).collect::<Vec<_>>();
        assert_eq!(codes(&on_board), codes(&on_llrp), "same reasons");
        (llrp_tx, on_board, on_llrp)
    }
}
