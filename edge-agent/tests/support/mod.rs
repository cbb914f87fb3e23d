//! Shared fixtures: a declared consignment with certified parties, and its transaction.
#![allow(dead_code)]

#[path = "../../../tests/common/agent_toml.rs"]
pub mod agent_toml;
pub mod change_batch;
#[path = "../../../tests/common/page.rs"]
pub mod page;
#[path = "../../../tests/common/stand_in.rs"]
pub mod stand_in;

use std::time::Duration;

use edge_agent::config::Routes;
use edge_agent::decider::{MemoryReplica, Policy, random_draw};
use jiff::Timestamp;
use protocol::container::ContainerNumber;
use protocol::operator::{OperatorId, Programme};
use protocol::schema::{
    AeoStatus, Authorisation, CloseReason, Consignment, ContactPoint, DeclaredContainer, EventBody,
    GateId, GateTransaction, LaneId, MraRecord, Party, PartyRole, Read, ReadSource, ReadValue,
    RegistryRecord, SCHEMA_VERSION,
};
use protocol::seal::SealNumber;
use uuid::Uuid;

pub const CONTAINER: &str = "CSQU3054383";
pub const OTHER_CONTAINER: &str = "TASU1170000";
pub const SEAL: &str = "ABC123456";
pub const IMPORTER: &str = "EU-AEO:DE123456789012345";
pub const CARRIER: &str = "EU-AEO:NL123456789";
pub const US_IMPORTER: &str = "US-CTPAT:OBOIMP92011";

/// Gate `G1`, the gate the store tests journal for.
pub fn gate() -> GateId {
    GateId::parse("G1").expect("gate")
}

/// Integrity alert number `n` (in its detail): a journal entry with nothing else to it.
pub fn numbered_alert(n: u64) -> EventBody {
    EventBody::IntegrityAlert {
        what: "TEST".into(),
        detail: format!("entry {n}"),
    }
}

pub fn now() -> Timestamp {
    "2026-06-01T12:00:00Z".parse().expect("ts")
}

pub fn ago(secs: i64) -> Timestamp {
    Timestamp::from_second(now().as_second() - secs).expect("ts")
}

pub fn op(id: &str) -> OperatorId {
    OperatorId::parse(id).expect("operator id")
}

pub fn cn(s: &str) -> ContainerNumber {
    ContainerNumber::parse(s).expect("container")
}

pub fn policy() -> Policy {
    Policy {
        name: "test".into(),
        staleness_bound: Duration::from_secs(24 * 3600),
        required_roles: vec![PartyRole::Importer, PartyRole::Carrier],
        home_programmes: vec![Programme::EuAeo],
        random_rate_aeo: 0.005,
        random_rate_other: 0.03,
        random_key: "test-random-key-0123456789".into(),
        eseal_low_battery_is_reason: false,
    }
}

pub fn routes() -> Routes {
    Routes {
        fast: "FAST lane".into(),
        standard: "STANDARD lane".into(),
        inspect: "INSPECT bay".into(),
    }
}

pub fn record(id: &str, auth: Vec<Authorisation>, status: AeoStatus) -> RegistryRecord {
    RegistryRecord {
        v: SCHEMA_VERSION,
        operator: op(id),
        name: format!("Operator {id}"),
        authorisations: auth,
        status,
        status_since: ago(86_400 * 100),
        valid_from: ago(86_400 * 365),
        valid_to: None,
        roles: vec![],
        contact_point: Some(ContactPoint {
            name: format!("Security desk {id}"),
            phone: Some("+31 10 000 0000".into()),
            email: None,
        }),
        linked_ids: vec![],
        source: "test".into(),
        as_of: ago(3600),
    }
}

/// A snapshot's records: an AEO-F importer, an AEO-S carrier and [`consignment`].
pub fn replica_changes() -> Vec<protocol::schema::Change> {
    use protocol::schema::Change;
    vec![
        Change::UpsertOperator {
            record: record(IMPORTER, vec![Authorisation::Aeof], AeoStatus::Active),
        },
        Change::UpsertOperator {
            record: record(CARRIER, vec![Authorisation::Aeos], AeoStatus::Active),
        },
        Change::UpsertConsignment {
            consignment: consignment(),
        },
    ]
}

/// Creates a store file at `path` as an earlier release left it: what `old` writes and
/// that release's replica meta (`replica_meta_v1`): a replica at seq 7 bound to `PORT-A`.
pub fn write_old_store(path: &std::path::Path, old: impl FnOnce(&redb::WriteTransaction)) {
    let db = redb::Database::create(path).expect("create");
    let w = db.begin_write().expect("write");
    old(&w);
    write_old_replica_meta(&w);
    w.commit().expect("commit");
}

/// Opens a table of an earlier release's store file, for writing into it.
pub fn old_table<'t>(
    w: &'t redb::WriteTransaction,
    name: &str,
) -> redb::Table<'t, &'static str, &'static [u8]> {
    w.open_table(redb::TableDefinition::new(name))
        .expect("old table")
}

fn write_old_replica_meta(w: &redb::WriteTransaction) {
    let mut meta = old_table(w, "replica_meta_v1");
    meta.insert(
        "meta",
        br#"{"sequence":7,"as_of":"2026-01-01T00:00:00Z","last_sync":null,"port":"PORT-A"}"#
            .as_slice(),
    )
    .expect("meta");
}

/// Serves `app` on a free loopback port; returns its base URL.
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// Waits, at most `within`, until `f` holds; panics naming `what` if it never does.
pub async fn eventually(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    tokio::time::timeout(within, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never happened: {what}"));
}

pub fn consignment() -> Consignment {
    Consignment {
        v: SCHEMA_VERSION,
        id: "K1".into(),
        containers: vec![DeclaredContainer {
            number: cn(CONTAINER),
            seals: vec![SealNumber::parse(SEAL).expect("seal")],
            eseals: vec![],
        }],
        parties: vec![
            Party {
                role: PartyRole::Importer,
                operator: Some(op(IMPORTER)),
                name: "Importer GmbH".into(),
            },
            Party {
                role: PartyRole::Carrier,
                operator: Some(op(CARRIER)),
                name: "Carrier BV".into(),
            },
        ],
        holds: vec![],
        ports: vec!["PORT-A".into()],
        as_of: ago(7200),
    }
}

pub fn mra(partner: Programme, from: Timestamp, security_only: bool) -> MraRecord {
    MraRecord {
        v: SCHEMA_VERSION,
        recognising: Programme::EuAeo,
        partner,
        in_force_from: from,
        in_force_to: None,
        security_only,
        name: format!("EU-{partner} MRA"),
    }
}

/// A loaded, fresh replica where everything for FAST is in place.
pub fn replica() -> MemoryReplica {
    let mut r = MemoryReplica::new();
    r.insert_operator(record(
        IMPORTER,
        vec![Authorisation::Aeof],
        AeoStatus::Active,
    ));
    r.insert_operator(record(
        CARRIER,
        vec![Authorisation::Aeos],
        AeoStatus::Active,
    ));
    r.insert_consignment(consignment());
    r.set_loaded(42, ago(3600));
    r
}

pub fn read(source: ReadSource, value: ReadValue) -> Read {
    Read {
        source,
        device: format!("{source:?}").to_lowercase(),
        raw: String::new(),
        value,
        first_at: ago(30),
        last_at: ago(25),
        count: 3,
        antenna: None,
        rssi: None,
        confidence: None,
        entered_by: None,
    }
}

pub fn container_read(s: &str) -> Read {
    read(ReadSource::Ocr, ReadValue::Container { number: cn(s) })
}

pub fn seal_read(s: &str) -> Read {
    read(
        ReadSource::Ocr,
        ReadValue::Seal {
            number: SealNumber::parse(s).expect("seal"),
        },
    )
}

/// A transaction id the test policy does not select at random (draw ≥ 0.5).
pub fn unselected_id() -> Uuid {
    (1u128..)
        .map(Uuid::from_u128)
        .find(|id| random_draw(&policy().random_key, id) >= 0.5)
        .expect("some id is not selected")
}

/// A transaction id selected even at the AEO rate.
pub fn selected_id() -> Uuid {
    (1u128..)
        .map(Uuid::from_u128)
        .find(|id| random_draw(&policy().random_key, id) < 0.001)
        .expect("some id is selected")
}

pub fn tx(reads: Vec<Read>) -> GateTransaction {
    GateTransaction {
        v: SCHEMA_VERSION,
        id: unselected_id(),
        gate: GateId::parse("G1").expect("gate"),
        lane: LaneId::parse("L1").expect("lane"),
        opened_at: ago(40),
        closed_at: ago(10),
        close_reason: CloseReason::Departure,
        reads,
    }
}

/// The transaction that passes every check against [`replica`].
pub fn good_tx() -> GateTransaction {
    tx(vec![container_read(CONTAINER), seal_read(SEAL)])
}

/// Gate G1 at PORT-A with lane L1 (a presence loop) and its three routes: the head of
/// the test configurations (sections after it are the test's own).
pub fn gate_g1_lane_l1() -> String {
    agent_toml::gate_with_lane_l1("G1", "Inspection bay A")
}

/// [`gate_g1_lane_l1`] with a policy key: the smallest valid configuration.
pub fn one_lane_toml() -> String {
    format!(
        "{}\n[policy]\nrandom_key = \"a-long-enough-random-key\"\n",
        gate_g1_lane_l1()
    )
}

/// An agent with lanes L1 (presence loop) and L2 (none), its store in `dir`, the console
/// on 127.0.0.1:0, no devices and no central.
pub fn two_lane_config(dir: &std::path::Path) -> edge_agent::config::Config {
    let text = format!(
        r#"{gate}
[[lanes]]
id = "L2"
presence_loop = false
quiet_close = "60s"
[lanes.routes]
fast = "Lane 2 priority"
standard = "Lane 2 standard"
inspect = "Inspection bay B"
{tail}"#,
        gate = gate_g1_lane_l1(),
        tail = agent_toml::store_policy_console(dir, "test-key-not-secret", "127.0.0.1:0"),
    );
    edge_agent::config::Config::from_toml_str(&text, "test.toml").expect("valid test config")
}

/// The console's state built from parts over `store` (a journal writer on it, no
/// actuators, no central), as the runtime would build it; the assembler's end of the
/// event channel is returned beside it.
pub fn app_state(
    cfg: &edge_agent::config::Config,
    store: edge_agent::store::Store,
) -> (
    edge_agent::state::AppState,
    tokio::sync::mpsc::Receiver<edge_agent::assembler::AssemblerEvent>,
) {
    use std::sync::Arc;
    let (journal, journal_health, _writer) = edge_agent::journal::Journal::start(store.clone());
    let (events_tx, events) = tokio::sync::mpsc::channel(8);
    let state = edge_agent::state::AppState {
        gate: cfg.gate.id.clone(),
        lanes: cfg.lanes.clone().into(),
        staleness_bound: cfg.policy.staleness_bound,
        console: edge_agent::console::console(&store, false).expect("console"),
        store,
        journal,
        live: Arc::new(edge_agent::live::LiveLanes::new(&cfg.lanes)),
        devices: edge_agent::live::Devices::new(vec![journal_health]),
        actuators: Arc::new(edge_agent::actuators::Actuators::new(None)),
        events: events_tx,
        metrics: edge_agent::telemetry::metrics_handle(),
        central_configured: false,
        clock: Arc::new(edge_agent::clock::Clock::new(cfg.clock.max_offset, None)),
        shutdown: tokio_util::sync::CancellationToken::new(),
        reload: Arc::default(),
    };
    (state, events)
}

/// A PORT-A registry snapshot of `changes` as of `as_of`, numbered 1, 2, … and ending at
/// `last_seq`.
pub fn snapshot_at(
    as_of: Timestamp,
    last_seq: u64,
    changes: Vec<protocol::schema::Change>,
) -> protocol::schema::ChangeBatch {
    protocol::schema::ChangeBatch {
        v: SCHEMA_VERSION,
        port: "PORT-A".into(),
        snapshot: true,
        after_seq: 0,
        last_seq,
        as_of,
        changes: changes
            .into_iter()
            .zip(1..)
            .map(|(change, seq)| protocol::schema::SequencedChange { seq, change })
            .collect(),
    }
}

/// Cancels an agent's `shutdown` and waits, at most `within`, for it to stop cleanly.
pub async fn stop_agent(
    shutdown: &tokio_util::sync::CancellationToken,
    join: tokio::task::JoinHandle<anyhow::Result<()>>,
    within: Duration,
) {
    shutdown.cancel();
    tokio::time::timeout(within, join)
        .await
        .expect("the agent stops")
        .expect("joined")
        .expect("clean stop");
}

/// A `[[lanes]]` section for lane `L{n}` and its three routes (inspection at `bay`).
pub fn lane_section(n: u8, bay: char, presence_loop: bool, quiet_close: &str) -> String {
    format!(
        "[[lanes]]\nid = \"L{n}\"\npresence_loop = {presence_loop}\nquiet_close = \"{quiet_close}\"\n\
         [lanes.routes]\nfast = \"Lane {n} priority\"\nstandard = \"Lane {n} standard\"\n\
         inspect = \"Inspection bay {bay}\"\n"
    )
}

/// An agent with `lanes` (lane sections, [`lane_section`]) at gate `G1`, its store
/// `agent.redb` in `dir`, random selection almost never drawn (policy key `key`), the
/// console on 127.0.0.1:0, no devices and no central.
pub fn lanes_config(dir: &std::path::Path, lanes: &str, key: &str) -> edge_agent::config::Config {
    let text = format!(
        r#"
[gate]
id = "G1"
port = "PORT-A"

{lanes}
[store]
path = "{}"

[policy]
random_key = "{key}"
random_rate_aeo = 0.000001
random_rate_other = 0.000002

[console]
bind = "127.0.0.1:0"
"#,
        dir.join("agent.redb").display()
    );
    edge_agent::config::Config::from_toml_str(&text, "test.toml").expect("valid test config")
}

/// A fresh replica in `dir`'s `agent.redb` in which [`consignment`] passes every check.
pub fn load_passing_replica(dir: &std::path::Path) {
    let store = edge_agent::store::Store::open(&dir.join("agent.redb"), gate()).expect("store");
    let changes = vec![
        protocol::schema::Change::UpsertOperator {
            record: record(IMPORTER, vec![Authorisation::Aeof], AeoStatus::Active),
        },
        protocol::schema::Change::UpsertOperator {
            record: record(CARRIER, vec![Authorisation::Aeos], AeoStatus::Active),
        },
        protocol::schema::Change::UpsertConsignment {
            consignment: consignment(),
        },
    ];
    let batch = snapshot_at(Timestamp::now(), 3, changes);
    store.apply_batch(&batch).expect("snapshot applies");
}

/// A truck of [`consignment`] on `lane`: its container and seal OCR reads, straight to the
/// running agent's pipeline.
pub async fn truck(handle: &edge_agent::runtime::AgentHandle, lane: &LaneId) {
    let raw = |value: ReadValue, raw: &str| edge_agent::assembler::RawRead {
        lane: lane.clone(),
        source: ReadSource::Ocr,
        device: "portal".into(),
        raw: raw.into(),
        value,
        at: Timestamp::now(),
        antenna: None,
        rssi: None,
        confidence: Some(95),
        entered_by: None,
    };
    for ev in [
        raw(
            ReadValue::Container {
                number: cn(CONTAINER),
            },
            CONTAINER,
        ),
        raw(
            ReadValue::Seal {
                number: SealNumber::parse(SEAL).expect("seal"),
            },
            SEAL,
        ),
    ] {
        handle
            .shared
            .events
            .send(edge_agent::assembler::AssemblerEvent::Read(ev))
            .await
            .expect("assembler running");
    }
}

/// A running agent ([`lanes_config`]) over a fresh store with [`load_passing_replica`]; the
/// folder and the token that stops it come with it.
pub async fn start_with_replica(
    lanes: &str,
    key: &str,
) -> (
    tempfile::TempDir,
    tokio_util::sync::CancellationToken,
    edge_agent::runtime::AgentHandle,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    load_passing_replica(dir.path());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let handle = edge_agent::runtime::start(lanes_config(dir.path(), lanes, key), shutdown.clone())
        .await
        .expect("agent starts");
    (dir, shutdown, handle)
}
