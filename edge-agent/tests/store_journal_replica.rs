//! The redb store on real files: durability across reopen, chain, acks, pruning, replica.

mod support;

use edge_agent::decider::{ReplicaView, decide};
use edge_agent::store::{ReplicaError, Store};
use protocol::schema::{
    Change, ChangeBatch, EventBody, LaneDecision, ReasonCode, SCHEMA_VERSION, SequencedChange,
};
use support::*;

fn health(n: usize) -> EventBody {
    EventBody::DeviceHealth {
        health: protocol::schema::DeviceHealth {
            device: format!("dev{n}"),
            lane: None,
            up: true,
            detail: "x".repeat(200),
            since: now(),
        },
    }
}

#[test]
fn appended_entries_survive_drop_and_reopen_and_chain_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.redb");
    let first = {
        let s = Store::open(&path, gate()).expect("open");
        let a = s.append(vec![health(1), health(2)], now()).expect("append");
        s.append(vec![health(3)], now()).expect("append");
        assert_eq!(s.journal_head(), 3);
        a
        // dropped without any close
    };
    let s = Store::open(&path, gate()).expect("reopen");
    assert_eq!(s.journal_head(), 3);
    assert_eq!(s.verify_chain().expect("chain"), 3);
    assert_eq!(s.entry(1).expect("entry"), Some(first[0].clone()));
    let more = s
        .append(vec![health(4)], now())
        .expect("append after reopen");
    assert_eq!(more[0].seq, 4);
    assert_eq!(more[0].prev_hash, s.entry(3).expect("e3").expect("e3").hash);
    assert_eq!(s.verify_chain().expect("chain"), 4);
}

#[test]
fn acks_are_monotonic_and_bounded_by_head() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(&dir.path().join("a.redb"), gate()).expect("open");
    s.append((0..5).map(health).collect(), now())
        .expect("append");
    assert!(s.set_acked(6).is_err());
    s.set_acked(3).expect("ack");
    s.set_acked(2).expect("lower ack is ignored");
    assert_eq!(s.acked_seq(), 3);
    let un = s.unacked(10, false).expect("unacked");
    assert_eq!(un.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 5]);
    assert_eq!(s.oldest_unacked_at(), Some(now()));
}

#[test]
fn exceptions_first_puts_alerts_ahead() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(&dir.path().join("a.redb"), gate()).expect("open");
    s.append(
        vec![health(1), health(2), numbered_alert(3), health(4)],
        now(),
    )
    .expect("append");
    let seqs: Vec<u64> = s
        .unacked(3, true)
        .expect("unacked")
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, vec![3, 1, 2]);
}

#[test]
fn acknowledged_routine_entries_are_pruned_but_not_exceptions_or_unacked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(&dir.path().join("a.redb"), gate()).expect("open");
    s.append(vec![numbered_alert(0)], now()).expect("append");
    for i in 0..20 {
        s.append(vec![health(i)], now()).expect("append");
    }
    let full = s.journal_bytes();
    s.set_acked(15).expect("ack");
    s.set_journal_limit(full / 2);
    s.append(vec![health(99)], now())
        .expect("append triggers pruning");
    assert!(s.journal_bytes() <= full / 2, "pruned to the bound");
    assert!(s.entry(1).expect("e1").is_some(), "integrity alert kept");
    assert!(
        s.entry(2).expect("e2").is_none(),
        "oldest acknowledged routine entry pruned"
    );
    for seq in 16..=22 {
        assert!(
            s.entry(seq).expect("entry").is_some(),
            "unacknowledged {seq} kept"
        );
    }
    assert!(s.verify_chain().expect("remaining chain verifies") > 0);
}

#[test]
fn a_journal_far_over_its_bound_is_pruned_a_bounded_slice_at_each_commit() {
    use edge_agent::store::{PRUNE_BATCH, PRUNE_SLICE_WITH_LANES};
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(&dir.path().join("a.redb"), gate()).expect("open");
    let n = 3 * PRUNE_BATCH + 10;
    s.append((0..n).map(health).collect(), now())
        .expect("append");
    s.set_acked(n as u64).expect("ack");
    let full = s.journal_bytes();
    let limit = full / 10;
    s.set_journal_limit(limit);
    let kept = |s: &Store| {
        (1..=n as u64)
            .filter(|q| s.entry(*q).expect("entry").is_some())
            .count()
    };
    // A commit with lane work (an append here; a lane's decision or read in the agent)
    // prunes a small slice of the oldest acknowledged entries, never the whole excess.
    s.append(vec![health(n)], now()).expect("append");
    assert_eq!(
        kept(&s),
        n - PRUNE_SLICE_WITH_LANES,
        "one small slice pruned"
    );
    let pruned = PRUNE_SLICE_WITH_LANES as u64;
    assert!(s.entry(pruned).expect("e").is_none());
    assert!(s.entry(pruned + 1).expect("e").is_some(), "oldest first");
    // A commit that moves the cursor only prunes a batch.
    s.set_acked(n as u64 + 1).expect("ack");
    assert_eq!(
        kept(&s),
        n - PRUNE_SLICE_WITH_LANES - PRUNE_BATCH,
        "a batch at the cursor's commit"
    );
    // An append larger than the slice prunes twice what it appends.
    let big = PRUNE_SLICE_WITH_LANES + 4;
    s.append(((n + 1)..(n + 1 + big)).map(health).collect(), now())
        .expect("append");
    assert_eq!(
        kept(&s),
        n - PRUNE_SLICE_WITH_LANES - PRUNE_BATCH - 2 * big,
        "twice the append"
    );
    // Bounded: the cursor's commits reach 90 % of the bound within n / batch of them.
    let mut head = (n + 1 + big) as u64;
    for i in 0..n / PRUNE_BATCH + 2 {
        if s.journal_bytes() <= limit / 10 * 9 {
            break;
        }
        s.append(vec![health(n + 1 + big + i)], now())
            .expect("append");
        head += 1;
        s.set_acked(head).expect("ack");
    }
    assert!(
        s.journal_bytes() <= limit / 10 * 9 + full / n as u64 * 4,
        "pruned to 90 % of the bound: {} of {limit}",
        s.journal_bytes()
    );
    assert!(s.verify_chain().expect("remaining chain verifies") > 0);
}

#[test]
fn transactions_and_decisions_are_found_for_the_console() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(&dir.path().join("a.redb"), gate()).expect("open");
    let t = good_tx();
    let d = decide(&t, &replica(), &policy(), &routes(), now());
    s.append(
        vec![
            EventBody::Transaction {
                transaction: t.clone(),
            },
            EventBody::Decision {
                decision: d.clone(),
            },
        ],
        now(),
    )
    .expect("append");
    let (tx, dec, actions) = s.transaction(&t.id).expect("lookup").expect("found");
    assert_eq!(tx, t);
    assert_eq!(dec, Some(d.clone()));
    assert!(actions.is_empty());
    let recent = s
        .recent_transactions(None, Some("3054"), 10)
        .expect("recent");
    assert_eq!(recent.len(), 1);
    assert!(
        s.recent_transactions(None, Some("TASU"), 10)
            .expect("recent")
            .is_empty()
    );
}

fn batch(snapshot: bool, after: u64, last: u64, port: &str, changes: Vec<Change>) -> ChangeBatch {
    ChangeBatch {
        v: SCHEMA_VERSION,
        snapshot,
        after_seq: after,
        last_seq: last,
        port: port.into(),
        as_of: ago(60),
        changes: changes
            .into_iter()
            .enumerate()
            .map(|(i, change)| SequencedChange {
                seq: after + 1 + i as u64,
                change,
            })
            .collect(),
    }
}

fn snapshot() -> ChangeBatch {
    batch(true, 0, 3, "PORT-A", replica_changes())
}

/// A new store at `path` for port `PORT-A`, its replica loaded from [`snapshot`].
fn store_with_snapshot(path: &std::path::Path) -> Store {
    let s = Store::open(path, gate()).expect("open");
    s.bind_port("PORT-A").expect("bind");
    s.apply_batch(&snapshot()).expect("snapshot");
    s
}

#[test]
fn replica_from_snapshot_decides_fast() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store_with_snapshot(&dir.path().join("a.redb"));
    let view = s.replica_view().expect("view");
    assert_eq!(view.sequence(), 3);
    let d = decide(&good_tx(), &view, &policy(), &routes(), now());
    assert_eq!(d.decision, LaneDecision::Fast, "{:?}", d.reasons);
}

#[test]
fn apply_batch_refuses_gap_replay_rollback_and_wrong_port_leaving_replica_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store_with_snapshot(&dir.path().join("a.redb"));
    let suspend = |after| {
        batch(
            false,
            after,
            after + 1,
            "PORT-A",
            vec![Change::SetStatus {
                operator: op(IMPORTER),
                status: protocol::schema::AeoStatus::Suspended,
                reason: "audit".into(),
                actor: "central".into(),
                at: ago(30),
            }],
        )
    };
    let before = s.replica_meta();
    assert!(matches!(
        s.apply_batch(&suspend(5)),
        Err(ReplicaError::Gap {
            expected: 3,
            found: 5
        })
    ));
    assert!(matches!(
        s.apply_batch(&suspend(1)),
        Err(ReplicaError::Replay { .. })
    ));
    let mut wrong = suspend(3);
    wrong.port = "PORT-B".into();
    assert!(matches!(
        s.apply_batch(&wrong),
        Err(ReplicaError::WrongPort { .. })
    ));
    let mut old = snapshot();
    old.last_seq = 2;
    old.changes.truncate(2);
    assert!(matches!(
        s.apply_batch(&old),
        Err(ReplicaError::Rollback {
            current: 3,
            last_seq: 2
        })
    ));
    // The stored bookkeeping is unchanged (the monotonic age is read, not stored).
    let stored = |m: edge_agent::replica::ReplicaMeta| edge_agent::replica::ReplicaMeta {
        verified_elapsed: None,
        ..m
    };
    assert_eq!(stored(s.replica_meta()), stored(before));
    let view = s.replica_view().expect("view");
    assert_eq!(
        view.operator(&op(IMPORTER)).expect("importer").status,
        protocol::schema::AeoStatus::Active
    );
    drop(view);

    s.apply_batch(&suspend(3))
        .expect("contiguous batch applies");
    let view = s.replica_view().expect("view");
    assert_eq!(view.sequence(), 4);
    assert_eq!(
        view.operator(&op(IMPORTER)).expect("importer").status,
        protocol::schema::AeoStatus::Suspended
    );
}

#[test]
fn failing_batch_is_all_or_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(&dir.path().join("a.redb"), gate()).expect("open");
    s.apply_batch(&snapshot()).expect("snapshot");
    let b = batch(
        false,
        3,
        5,
        "PORT-A",
        vec![
            Change::RemoveConsignment { id: "K1".into() },
            Change::SetStatus {
                operator: op("EU-AEO:FR12345678901"),
                status: protocol::schema::AeoStatus::Revoked,
                reason: "x".into(),
                actor: "y".into(),
                at: ago(1),
            },
        ],
    );
    assert!(matches!(
        s.apply_batch(&b),
        Err(ReplicaError::UnknownOperator { seq: 5, .. })
    ));
    let view = s.replica_view().expect("view");
    assert!(
        view.consignment_for(&cn(CONTAINER)).is_some(),
        "first change rolled back"
    );
    assert_eq!(view.sequence(), 3);
}

#[test]
fn snapshot_replaces_the_replica() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(&dir.path().join("a.redb"), gate()).expect("open");
    s.apply_batch(&snapshot()).expect("snapshot");
    let empty = batch(true, 0, 10, "PORT-A", vec![]);
    s.apply_batch(&empty).expect("second snapshot");
    let view = s.replica_view().expect("view");
    assert!(view.operator(&op(IMPORTER)).is_none());
    assert!(view.consignment_for(&cn(CONTAINER)).is_none());
    assert_eq!(view.sequence(), 10);
}

#[test]
fn only_the_signed_as_of_time_makes_the_replica_fresh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(&dir.path().join("a.redb"), gate()).expect("open");
    let bound = std::time::Duration::from_secs(3600);
    let mut b = snapshot();
    b.as_of = ago(48 * 3600);
    s.apply_batch(&b).expect("snapshot");
    // A recent sync time (what an unsigned "nothing new" used to record) is bookkeeping.
    s.mark_synced(ago(10)).expect("synced");
    let view = s.replica_view().expect("view");
    assert_eq!(view.as_of(), Some(ago(48 * 3600)));
    assert_eq!(s.replica_meta().last_sync, Some(ago(10)));
    let f = edge_agent::replica::freshness(&s.replica_meta(), ago(0), bound);
    assert!(f.stale, "{f:?}");
    drop(view);
    // A signed "no changes after 3" statement of now refreshes it, and starts the
    // monotonic clock.
    let mut statement = batch(false, 3, 3, "PORT-A", vec![]);
    statement.as_of = ago(0);
    s.apply_batch(&statement).expect("statement");
    let meta = s.replica_meta();
    assert_eq!(meta.as_of, Some(ago(0)));
    assert!(meta.verified_elapsed.is_some_and(|d| d.as_secs() < 5));
    assert!(!edge_agent::replica::freshness(&meta, ago(0), bound).stale);
    // An older signed time never moves it back.
    let mut old = batch(false, 3, 3, "PORT-A", vec![]);
    old.as_of = ago(7200);
    s.apply_batch(&old).expect("applies");
    assert_eq!(s.replica_meta().as_of, Some(ago(0)));
}

#[test]
fn a_last_sync_ahead_of_the_clock_reads_stale_after_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("a.redb");
    {
        let s = Store::open(&path, gate()).expect("open");
        let mut b = snapshot();
        b.as_of = ago(60);
        s.apply_batch(&b).expect("snapshot");
        // Written by a run whose clock was two days ahead.
        s.mark_synced(ago(-2 * 86_400)).expect("synced");
    }
    let s = Store::open(&path, gate()).expect("reopen");
    let meta = s.replica_meta();
    assert_eq!(
        meta.verified_elapsed, None,
        "a new process has verified nothing yet"
    );
    let f = edge_agent::replica::freshness(&meta, ago(0), std::time::Duration::from_secs(3600));
    assert!(f.stale && f.ahead, "{f:?}");
}

#[test]
fn a_damaged_operator_record_is_unreadable_not_unknown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(&dir.path().join("a.redb"), gate()).expect("open");
    s.apply_batch(&snapshot()).expect("snapshot");
    // Damage the importer's stored value in the replica table itself.
    let operators: redb::TableDefinition<&str, &[u8]> =
        redb::TableDefinition::new("replica_operators_v2");
    let w = s.replica_database().begin_write().expect("write");
    {
        let mut t = w.open_table(operators).expect("table");
        let key = op(IMPORTER).to_string();
        t.insert(key.as_str(), &[0xFFu8, 0x00, 0x13][..])
            .expect("insert");
    }
    w.commit().expect("commit");

    let view = s.replica_view().expect("view");
    assert!(view.try_operator(&op(IMPORTER)).is_err());
    assert!(view.try_operator(&op(CARRIER)).expect("readable").is_some());
    let d = decide(&good_tx(), &view, &policy(), &routes(), now());
    let codes: Vec<ReasonCode> = d.reasons.iter().map(|r| r.code).collect();
    assert_eq!(d.decision, LaneDecision::Standard, "{codes:?}");
    assert!(codes.contains(&ReasonCode::ReplicaUnreadable), "{codes:?}");
    assert!(!codes.contains(&ReasonCode::PartyUnknown), "{codes:?}");
}

#[test]
fn a_cursor_moved_on_its_own_survives_a_close_and_the_next_lane_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("a.redb");
    {
        let s = Store::open(&path, gate()).expect("open");
        s.append((0..5).map(health).collect(), now())
            .expect("append");
        // The uplink's cursor alone: a commit that is not flushed by itself.
        let r = s.log_and_append(&[], Vec::new(), &[], Some(3));
        r.acked.expect("cursor moved");
        assert_eq!(s.acked_seq(), 3);
        // A lane's commit after it is durable, and carries the cursor with it.
        s.append(vec![health(5)], now()).expect("append");
        let r = s.log_and_append(&[], Vec::new(), &[], Some(4));
        r.acked.expect("cursor moved");
    }
    let s = Store::open(&path, gate()).expect("reopen");
    assert_eq!(s.acked_seq(), 4, "a closed store keeps its last cursor");
    assert_eq!(s.journal_head(), 6);
    assert!(s.verify_chain().expect("chain") > 0);
}
