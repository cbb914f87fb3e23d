//! When the journal refuses writes (a full disk), the gate keeps deciding — but grants no
//! priority, raises the alarm, holds the records, and journals them once it can.

mod support;

use std::time::Duration;

use edge_agent::runtime::AgentHandle;
use protocol::schema::{LaneDecision, LaneId, ReasonCode};

const STEP: Duration = Duration::from_secs(10);

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
    let (_dir, shutdown, handle) = support::start_with_replica(
        &support::lane_section(2, 'B', false, "1s"),
        "journal-full-test-key",
    )
    .await;
    let store = handle.shared.store.clone();

    // Normal: the declared, certified, sealed consignment goes FAST and is journaled.
    support::truck(&handle, &LaneId::parse("L2").expect("lane")).await;
    let first = next_decision(&handle, None).await;
    assert_eq!(first.decision, LaneDecision::Fast, "{:?}", first.reasons);
    assert!(journal_device_up(&handle));
    let head_before = store.journal_head();

    // The disk is full: the same truck again is decided — STANDARD, never FAST — and shown.
    store.refuse_journal_writes(true);
    support::truck(&handle, &LaneId::parse("L2").expect("lane")).await;
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
