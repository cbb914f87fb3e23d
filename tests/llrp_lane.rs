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

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aeogate::vboard::{Truck, VirtualBoard, VirtualBoardConfig};
use aeogate::vreader::{VirtualReader, VirtualReaderConfig};
use edge_agent::runtime::AgentHandle;
use protocol::link::{BatteryLevel, SealRead, SealStatus};
use protocol::schema::{Decision, DeviceHealth, EventBody, GateTransaction, LaneId};
use tokio_util::sync::CancellationToken;

/// Every wait gives up after this long, so a failure never hangs.
const WAIT: Duration = Duration::from_secs(15);
/// How long a truck stays in the lane.
const DWELL: Duration = Duration::from_secs(3);
/// The bound on noticing a reader fault.
const NOTICE: Duration = Duration::from_secs(5);

/// An SGTIN-96 tag on the tractor and the container's ISO 6346 number as an ASCII EPC.
fn tags() -> Vec<Vec<u8>> {
    vec![
        vec![
            0x30, 0x74, 0x25, 0x7B, 0xF7, 0x19, 0x4E, 0x40, 0x00, 0x00, 0x1A, 0x85,
        ],
        b"CSQU3054383\0".to_vec(),
    ]
}

fn eseals() -> Vec<SealRead> {
    vec![SealRead {
        manufacturer: 0x0042,
        tag_id: 0x0001_E240,
        status: SealStatus::Sealed,
        battery: BatteryLevel::Ok,
        sealed_at: None,
        opened_at: None,
    }]
}

fn board(lane: &str) -> Arc<VirtualBoard> {
    let cfg = VirtualBoardConfig {
        lane: lane.into(),
        loops: 1,
        ..VirtualBoardConfig::default()
    };
    Arc::new(VirtualBoard::spawn(cfg).expect("virtual board starts"))
}

async fn reader() -> VirtualReader {
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

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn lane_toml(id: &str, presence_loop: bool) -> String {
    format!(
        "[[lanes]]\nid = \"{id}\"\nname = \"Lane {id}\"\npresence_loop = {presence_loop}\n\
         transaction_timeout = \"60s\"\nquiet_close = \"2s\"\n\
         [lanes.routes]\nfast = \"{id} priority\"\nstandard = \"Lane 9\"\ninspect = \"Inspection bay\"\n\n"
    )
}

fn board_toml(b: &VirtualBoard, lane: &str) -> String {
    format!(
        "[[devices]]\nname = \"board-{lane}\"\nlane = \"{lane}\"\nkind = \"lane_board\"\npath = {}\n\
         silence_timeout = \"5s\"\nreopen_backoff_max = \"1s\"\n\n",
        toml_str(&b.tty_link().to_string_lossy())
    )
}

fn llrp_toml(reader: &VirtualReader, antennas: &str) -> String {
    format!(
        "[[llrp]]\nname = \"llrp-1\"\nhost = \"127.0.0.1\"\nport = {}\nantennas = {{ {antennas} }}\n\
         tx_power_dbm = 27.0\nkeepalive = \"500ms\"\nsilence_timeout = \"1500ms\"\n\
         unique_window = \"2s\"\nreconnect_backoff_max = \"1s\"\n\n",
        reader.addr().port()
    )
}

async fn agent(sections: &str, dir: &tempfile::TempDir, stop: &CancellationToken) -> AgentHandle {
    let text = format!(
        "[gate]\nid = \"PORT1-G1\"\nname = \"llrp gate\"\nport = \"PORT1\"\n\n{sections}\
         [store]\npath = {}\n\n\
         [policy]\nname = \"llrp\"\nstaleness_bound = \"24h\"\nrequired_roles = [\"IMPORTER\", \"CARRIER\"]\n\
         home_programmes = [\"EU-AEO\"]\nrandom_rate_aeo = 0.01\nrandom_rate_other = 0.05\nrandom_key = \"llrp-lane-random-key\"\n\n\
         [console]\nbind = \"127.0.0.1:0\"\n",
        toml_str(&dir.path().join("agent.redb").to_string_lossy()),
    );
    let cfg = edge_agent::config::Config::from_toml_str(&text, "llrp lane agent")
        .expect("agent configuration parses");
    edge_agent::runtime::start(cfg, stop.clone())
        .await
        .expect("agent starts")
}

fn health(handle: &AgentHandle, device: &str) -> Option<DeviceHealth> {
    handle
        .shared
        .device_health()
        .into_iter()
        .find(|d| d.device == device)
}

/// Waits until `device` is `up` (or down); returns how long it took.
async fn wait_health(handle: &AgentHandle, device: &str, up: bool, within: Duration) -> Duration {
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

async fn decision(handle: &AgentHandle, lane: &LaneId) -> Decision {
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

fn transaction(handle: &AgentHandle, d: &Decision) -> GateTransaction {
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
fn seen(tx: &GateTransaction) -> BTreeSet<String> {
    tx.reads
        .iter()
        .map(|r| format!("{:?} {:?}", r.source, r.value))
        .collect()
}

fn lane(s: &str) -> LaneId {
    LaneId::parse(s).expect("lane id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truck_on_an_llrp_lane_gets_the_same_decision_as_on_a_board_lane() {
    let dir = tempfile::tempdir().expect("tempdir");
    let board_lane = board("L1");
    let llrp_lane = board("L2");
    let reader = reader().await;
    let stop = CancellationToken::new();
    let sections = format!(
        "{}{}{}{}{}",
        lane_toml("L1", true),
        lane_toml("L2", true),
        board_toml(&board_lane, "L1"),
        board_toml(&llrp_lane, "L2"),
        llrp_toml(&reader, "1 = \"L2\", 2 = \"L2\""),
    );
    let handle = agent(&sections, &dir, &stop).await;
    for device in ["board-L1", "board-L2", "llrp-1"] {
        wait_health(&handle, device, true, WAIT).await;
    }

    // The same truck: on L1 the board's UHF module reads its tags; on L2 the board only
    // has its loop and e-seal reader, and the LLRP reader's antennas read the tags.
    board_lane.arrive(Truck {
        tags: tags(),
        eseals: eseals(),
        dwell: DWELL,
    });
    llrp_lane.arrive(Truck {
        tags: vec![],
        eseals: eseals(),
        dwell: DWELL,
    });
    reader.arrive(1, tags());
    tokio::time::sleep(DWELL).await;
    reader.leave(1);
    board_lane.leave();
    llrp_lane.leave();

    let on_board = decision(&handle, &lane("L1")).await;
    let on_llrp = decision(&handle, &lane("L2")).await;
    let board_tx = transaction(&handle, &on_board);
    let llrp_tx = transaction(&handle, &on_llrp);
    assert!(
        llrp_tx.reads.iter().any(|r| r.device == "llrp-1"),
        "the LLRP reader's reads are in the L2 transaction: {:?}",
        llrp_tx.reads
    );
    assert!(
        llrp_tx
            .containers()
            .iter()
            .any(|c| c.as_str() == "CSQU3054383"),
        "the container tag was read over LLRP: {:?}",
        llrp_tx.reads
    );
    assert_eq!(seen(&board_tx), seen(&llrp_tx), "same reads on both lanes");
    assert_eq!(on_board.decision, on_llrp.decision, "same decision");
    let codes = |d: &Decision| d.reasons.iter().map(|r| r.code).collect::<Vec<_>>();
    assert_eq!(codes(&on_board), codes(&on_llrp), "same reasons");
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
    let _ = tokio::time::timeout(WAIT, handle.join).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_faults_show_as_device_health_within_5s_and_recover() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reader = reader().await;
    let stop = CancellationToken::new();
    let sections = format!(
        "{}{}",
        lane_toml("L1", false),
        llrp_toml(&reader, "1 = \"L1\", 2 = \"L1\""),
    );
    let handle = agent(&sections, &dir, &stop).await;
    wait_health(&handle, "llrp-1", true, WAIT).await;
    wait_health(&handle, "llrp-1/antenna-2", true, WAIT).await;

    // The reader drops the connection and refuses new ones for a while.
    reader.refuse_for(Duration::from_secs(2));
    reader.drop_connection(false);
    let took = wait_health(&handle, "llrp-1", false, NOTICE).await;
    println!("dropped connection noticed after {took:?}");
    wait_health(&handle, "llrp-1", true, WAIT).await;

    // The reader announces the close (ConnectionCloseEvent), then drops.
    reader.refuse_for(Duration::from_secs(2));
    reader.drop_connection(true);
    let took = wait_health(&handle, "llrp-1", false, NOTICE).await;
    println!("announced close noticed after {took:?}");
    wait_health(&handle, "llrp-1", true, WAIT).await;

    // The reader goes silent: no keepalives, reports or answers, the socket left open.
    reader.set_silent(true);
    let took = wait_health(&handle, "llrp-1", false, NOTICE).await;
    println!("silent reader noticed after {took:?}");
    let detail = health(&handle, "llrp-1")
        .map(|h| h.detail)
        .unwrap_or_default();
    assert!(detail.contains("silent"), "down for silence: {detail}");
    reader.set_silent(false);
    wait_health(&handle, "llrp-1", true, WAIT).await;

    // An antenna cable is pulled: that antenna's health, not the reader's.
    reader.set_antenna(2, false);
    let took = wait_health(&handle, "llrp-1/antenna-2", false, NOTICE).await;
    println!("disconnected antenna noticed after {took:?}");
    assert!(
        health(&handle, "llrp-1").is_some_and(|h| h.up),
        "the reader stays up"
    );
    assert!(
        health(&handle, "llrp-1/antenna-1").is_some_and(|h| h.up),
        "the other antenna stays up"
    );
    reader.set_antenna(2, true);
    wait_health(&handle, "llrp-1/antenna-2", true, NOTICE).await;

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
    reader.arrive(2, tags());
    tokio::time::sleep(DWELL).await;
    reader.leave(2);
    let d = decision(&handle, &lane("L1")).await;
    let tx = transaction(&handle, &d);
    assert!(
        tx.reads
            .iter()
            .any(|r| r.device == "llrp-1" && r.antenna == Some(2)),
        "{:?}",
        tx.reads
    );

    stop.cancel();
    let _ = tokio::time::timeout(WAIT, handle.join).await;
}
