//! When the journal refuses writes (a full disk), the gate keeps deciding — but grants no
//! priority, raises the alarm, holds the records, and journals them once it can.

mod support;

use std::time::Duration;

use edge_agent::assembler::{AssemblerEvent, RawRead};
use edge_agent::config::Config;
use edge_agent::runtime::{AgentHandle, start};
use jiff::Timestamp;
use protocol::schema::{Change, LaneDecision, LaneId, ReadSource, ReadValue, ReasonCode};
use protocol::seal::SealNumber;
use tokio_util::sync::CancellationToken;

const STEP: Duration = Duration::from_secs(10);

fn config(dir: &std::path::Path) -> Config {
    let text = format!(
        r#"
[gate]
id = "G1"
port = "PORT-A"

{}
[store]
path = "{}"

[policy]
random_key = "journal-full-test-key"
random_rate_aeo = 0.000001
random_rate_other = 0.000002

[console]
bind = "127.0.0.1:0"
"#,
        support::lane_section(2, 'B', false, "1s"),
        dir.join("agent.redb").display()
    );
    Config::from_toml_str(&text, "test.toml").expect("valid test config")
}

/// A fresh replica in which the support consignment passes every check.
fn load_replica(dir: &std::path::Path) {
    let store = edge_agent::store::Store::open(
        &dir.join("agent.redb"),
        protocol::schema::GateId::parse("G1").expect("gate"),
    )
    .expect("store");
    let changes = vec![
        Change::UpsertOperator {
            record: support::record(
                support::IMPORTER,
                vec![protocol::schema::Authorisation::Aeof],
                protocol::schema::AeoStatus::Active,
            ),
        },
        Change::UpsertOperator {
            record: support::record(
                support::CARRIER,
                vec![protocol::schema::Authorisation::Aeos],
                protocol::schema::AeoStatus::Active,
            ),
        },
        Change::UpsertConsignment {
            consignment: support::consignment(),
        },
    ];
    let batch = support::snapshot_at(Timestamp::now(), 3, changes);
    store.apply_batch(&batch).expect("snapshot applies");
}

async fn truck(handle: &AgentHandle) {
    let lane = LaneId::parse("L2").expect("lane");
    let raw = |value: ReadValue, raw: &str| RawRead {
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
                number: support::cn(support::CONTAINER),
            },
            support::CONTAINER,
        ),
        raw(
            ReadValue::Seal {
                number: SealNumber::parse(support::SEAL).expect("seal"),
            },
            support::SEAL,
        ),
    ] {
        handle
            .shared
            .events
            .send(AssemblerEvent::Read(ev))
            .await
            .expect("assembler running");
    }
}

/// Waits until the lane's last decision is a new one (another transaction id).
async fn next_decision(
    handle: &AgentHandle,
    after: Option<uuid::Uuid>,
) -> protocol::schema::Decision {
    let lane = LaneId::parse("L2").expect("lane");
    tokio::time::timeout(STEP, async {
        loop {
            if let Some(d) = handle.shared.live.get(&lane).and_then(|l| l.last_decision)
                && Some(d.transaction_id) != after
            {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("a decision within the step")
}

fn journal_device_up(handle: &AgentHandle) -> bool {
    handle
        .shared
        .device_health()
        .iter()
        .find(|d| d.device == "journal")
        .expect("the journal reports its health")
        .up
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_journal_suspends_priority_raises_the_alarm_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    load_replica(dir.path());
    let shutdown = CancellationToken::new();
    let handle = start(config(dir.path()), shutdown.clone())
        .await
        .expect("agent starts");
    let store = handle.shared.store.clone();

    // Normal: the declared, certified, sealed consignment goes FAST and is journaled.
    truck(&handle).await;
    let first = next_decision(&handle, None).await;
    assert_eq!(first.decision, LaneDecision::Fast, "{:?}", first.reasons);
    assert!(journal_device_up(&handle));
    let head_before = store.journal_head();

    // The disk is full: the same truck again is decided — STANDARD, never FAST — and shown.
    store.refuse_journal_writes(true);
    truck(&handle).await;
    let held = next_decision(&handle, Some(first.transaction_id)).await;
    assert_eq!(held.decision, LaneDecision::Standard);
    assert_eq!(held.route, "Lane 2 standard");
    assert!(
        held.reasons
            .iter()
            .any(|r| r.code == ReasonCode::JournalUnavailable),
        "{:?}",
        held.reasons
    );
    assert!(
        !held
            .reasons
            .iter()
            .any(|r| r.code == ReasonCode::AllChecksPassed)
    );
    let shown = handle
        .shared
        .live
        .get(&LaneId::parse("L2").expect("lane"))
        .and_then(|l| l.shown)
        .expect("the lane shows the held decision");
    assert_eq!(shown.decision, LaneDecision::Standard.into());
    assert!(!journal_device_up(&handle), "the alarm is up");
    assert_eq!(
        store.journal_head(),
        head_before,
        "nothing could be written"
    );

    // The disk has room again: the held records are journaled and the alarm clears.
    store.refuse_journal_writes(false);
    tokio::time::timeout(STEP, async {
        while !journal_device_up(&handle) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the alarm clears");
    assert!(
        store.journal_head() >= head_before + 2,
        "transaction and decision journaled"
    );
    let entry = store
        .transaction(&held.transaction_id)
        .expect("lookup")
        .expect("the held transaction is in the journal");
    let journaled = entry.1.expect("with its decision");
    assert_eq!(journaled.decision, LaneDecision::Standard);
    assert!(store.verify_chain().is_ok());

    support::stop_agent(&shutdown, handle.join, STEP).await;
}
