//! One storage conformance suite, run against every backend: each test function takes a
//! `&dyn Store`, and `conformance!` runs it once on a redb file and once on a PostgreSQL
//! database of a cluster the test starts itself (common/pg.rs).

mod common;

use central::cases::{self, CaseError};
use central::dashboard::programme;
use central::ingest::AgentState;
use central::model::{
    AgentRecord, AlertKind, CaseAction, CaseQuery, CaseState, EventQuery, Page, Session, StaffUser,
    StoredEvent,
};
use central::store::{
    AuditNote, Delivery, PgStore, RedbStore, Stamp, Store, StoreError, TokenChange,
};
use common::{
    chain, chain_at, exception_chain, fast_decision, gate, officer_action, seal_exception,
    transaction, ts,
};
use jiff::{SignedDuration, Timestamp};
use protocol::i18n::Lang;
use protocol::operator::OperatorId;
use protocol::schema::{
    AeoStatus, Change, Consignment, ConsoleSession, ConsoleSessionKind, EventBody, GENESIS_HASH,
    GateId, JournalEntry, LaneDecision, LaneId, RegistryRecord, SCHEMA_VERSION,
};
use uuid::Uuid;

/// A store of one backend and whatever must outlive it (its file or its cluster).
struct Backend {
    store: Box<dyn Store>,
    _keep: Box<dyn std::any::Any>,
}

fn redb() -> Backend {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open(&dir.path().join("c.redb")).expect("open redb");
    Backend {
        store: Box::new(store),
        _keep: Box::new(dir),
    }
}

fn postgres() -> Backend {
    let (cluster, url) = common::pg::PgCluster::with_central();
    let store = PgStore::open(&url).expect("open PostgreSQL store");
    Backend {
        store: Box::new(store),
        // Dropped after the store (fields drop in order): the pool closes first.
        _keep: Box::new(cluster),
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod on_redb {
            $( #[test] fn $name() { super::$name(&*super::redb().store) } )*
        }
        mod on_postgres {
            $( #[test] fn $name() {
                let b = super::postgres();
                super::$name(&*b.store)
            } )*
        }
    };
}

conformance!(
    ingest_is_idempotent_and_acknowledges_the_stored_prefix,
    a_resent_batch_with_new_entries_counts_only_the_new_ones,
    batches_out_of_order_are_chained_and_acknowledged_when_the_gap_closes,
    a_chain_break_is_stored_flagged_with_one_alert_and_case,
    a_batch_of_far_apart_entries_is_checked_against_the_stored_ones_beside_each,
    a_reused_seq_keeps_the_first_entry,
    a_seal_exception_opens_one_case_and_its_repeat_is_noted,
    another_gates_entry_about_a_transaction_is_refused_with_an_alert,
    an_officer_action_from_another_lane_is_refused_with_an_alert,
    staff_actions_on_cases_follow_the_rules_and_are_audited,
    case_queries_filter_and_page_newest_first,
    event_queries_by_container_gate_lane_and_decision_page_in_time_order,
    a_containers_events_page_by_cursor_in_time_order_and_leave_out_other_containers,
    pages_of_events_across_gates_sharing_milliseconds_and_months_join_to_the_whole,
    hourly_figures_and_summary_count_decisions,
    heartbeat_raises_a_gap_alert_once_the_gap_persists,
    registry_changes_are_logged_applied_and_snapshotted_per_port,
    a_snapshot_read_change_by_change_holds_the_whole_snapshot_and_stops_on_error,
    a_status_change_of_an_unknown_operator_appends_nothing,
    agents_tokens_and_gate_ports,
    token_changes_revoke_expire_and_add_in_one_step_and_mark_the_gate,
    users_sessions_and_audit,
    a_user_update_is_stored_with_its_audit_entry_or_not_at_all,
    a_company_is_added_with_its_user_and_changed_whole_or_not_at_all,
    a_document_is_stored_once_under_its_hash_and_read_back_whole,
    text_with_control_characters_is_stored_and_read_back_unchanged,
    entries_dated_at_the_ends_of_the_calendar_are_stored,
    console_logins_and_logouts_are_stored_and_another_gates_are_refused,
    lane_control_and_refused_trucks_are_stored_under_their_lane,
    an_entry_whose_agent_time_runs_back_is_stored_with_a_time_backwards_alert,
    the_latest_config_change_is_kept_on_the_gate_row,
    programme_figures_from_roll_ups_equal_a_direct_computation_over_the_events,
    programme_figures_over_many_decisions_and_days_are_exact,
    programme_figures_over_months_and_across_a_year_end_are_exact,
);

const NO_GAP_ALERT: SignedDuration = SignedDuration::from_hours(24);

fn now() -> Timestamp {
    ts("2026-03-01T12:00:00Z")
}

fn ingest(s: &dyn Store, entries: &[JournalEntry]) -> central::store::IngestOutcome {
    let g = entries[0].agent.clone();
    s.ingest(Delivery::new(&g, entries, now(), NO_GAP_ALERT))
        .expect("ingest")
}

fn alert_kinds(s: &dyn Store) -> Vec<AlertKind> {
    let mut k: Vec<_> = s
        .alerts(100)
        .expect("alerts")
        .into_iter()
        .map(|a| a.kind)
        .collect();
    k.sort_by_key(|k| k.as_str());
    k
}

/// `n` chained FAST decisions (they count, and open no case).
fn plain_chain(g: &str, n: u64) -> Vec<JournalEntry> {
    let g = gate(g);
    chain(&g, (0..n).map(|_| fast_decision(&g)).collect())
}

fn all_events(s: &dyn Store, q: EventQuery) -> Vec<(String, u64)> {
    stored_events(s, q)
        .iter()
        .map(|e| (e.entry.agent.to_string(), e.entry.seq))
        .collect()
}

/// Every event matching `q`, read page by page.
fn stored_events(s: &dyn Store, q: EventQuery) -> Vec<StoredEvent> {
    Page::collect_all(1_000, |cursor| {
        s.events(&EventQuery {
            cursor,
            ..q.clone()
        })
    })
    .expect("events")
}

fn query() -> EventQuery {
    EventQuery {
        gate: None,
        lane: None,
        container: None,
        decision: None,
        from: None,
        to: None,
        cursor: None,
        limit: 100,
    }
}

fn case_query() -> CaseQuery {
    CaseQuery {
        state: None,
        gate: None,
        lane: None,
        reason: None,
        from: None,
        to: None,
        cursor: None,
        limit: 100,
    }
}

// ---------------------------------------------------------------------------------------
// ingest
// ---------------------------------------------------------------------------------------

fn ingest_is_idempotent_and_acknowledges_the_stored_prefix(s: &dyn Store) {
    let c = plain_chain("G1", 5);
    let first = ingest(s, &c);
    assert_eq!((first.tally.stored, first.tally.duplicates), (5, 0));
    assert_eq!(first.acked_through, 5);
    let again = ingest(s, &c);
    assert_eq!((again.tally.stored, again.tally.duplicates), (0, 5));
    assert_eq!(again.acked_through, 5);
    let sum = s.summary().expect("summary");
    assert_eq!(sum.events_per_gate.get("G1"), Some(&5));
    assert_eq!(sum.acked_through_per_gate.get("G1"), Some(&5));
    assert_eq!(sum.decisions.get("FAST"), Some(&5));
    assert!(s.alerts(10).expect("alerts").is_empty());
    let ev = all_events(s, query());
    assert_eq!(ev.len(), 5);
}

fn a_resent_batch_with_new_entries_counts_only_the_new_ones(s: &dyn Store) {
    let c = plain_chain("G1", 5);
    ingest(s, &c[..3]);
    let again = ingest(s, &c);
    assert_eq!((again.tally.stored, again.tally.duplicates), (2, 3));
    // The batch's decisions stored now, not its duplicates.
    assert_eq!(
        again.tally.decisions,
        std::collections::BTreeMap::from([("FAST", 2)])
    );
    let sum = s.summary().expect("summary");
    assert_eq!(sum.events_per_gate.get("G1"), Some(&5));
    assert_eq!(sum.decisions.get("FAST"), Some(&5));
    let hours = s
        .hourly_stats(None, ts("2026-03-01T00:00:00Z"), ts("2026-03-02T00:00:00Z"))
        .expect("hourly");
    let fast: u64 = hours.iter().map(|h| h.fast).sum();
    assert_eq!(fast, 5, "{hours:?}");
}

fn batches_out_of_order_are_chained_and_acknowledged_when_the_gap_closes(s: &dyn Store) {
    let c = plain_chain("G1", 6);
    let late = ingest(s, &c[3..]);
    assert_eq!(late.tally.stored, 3);
    assert_eq!(late.acked_through, 0, "entries 1..=3 are missing");
    let early = ingest(s, &c[..3]);
    assert_eq!(early.tally.stored, 3);
    assert_eq!(early.acked_through, 6);
    assert!(alert_kinds(s).is_empty(), "{:?}", alert_kinds(s));
    let gates = s.gates().expect("gates");
    assert_eq!(gates.len(), 1);
    assert_eq!(
        gates[0].state,
        AgentState {
            acked_through: 6,
            max_seq: 6,
            events: 6,
            gap_since: None
        }
    );
}

/// A batch whose entries lie far apart (a backend may read a batch's stored neighbours by
/// one range of seqs when they are close, and one by one otherwise): each entry is still
/// checked against the stored entry before it.
fn a_batch_of_far_apart_entries_is_checked_against_the_stored_ones_beside_each(s: &dyn Store) {
    let g = gate("G1");
    let c = plain_chain("G1", 40);
    assert_eq!(ingest(s, &c[10..30]).tally.stored, 20, "seqs 11..=30");
    // Seq 31 chained to nothing stored; seq 10 the true entry before the stored 11.
    let forged = JournalEntry::new_chained(
        g.clone(),
        31,
        Uuid::now_v7(),
        c[30].at,
        GENESIS_HASH.into(),
        fast_decision(&g),
    )
    .expect("entry");
    let out = ingest(s, &[c[9].clone(), forged]);
    assert_eq!(out.tally.stored, 2);
    assert_eq!(
        alert_kinds(s),
        vec![AlertKind::ChainBreak],
        "{:?}",
        out.tally.alerts
    );
    assert_eq!(s.alerts(10).expect("alerts")[0].seq, 31);
    // The entries before: everything through the forged one is stored, nothing else broke.
    let out = ingest(s, &c[..9]);
    assert_eq!(out.acked_through, 31);
    assert_eq!(
        alert_kinds(s),
        vec![AlertKind::ChainBreak],
        "one break only"
    );
}

fn a_chain_break_is_stored_flagged_with_one_alert_and_case(s: &dyn Store) {
    let g = gate("G1");
    let c = plain_chain("G1", 2);
    let forged = JournalEntry::new_chained(
        g.clone(),
        3,
        Uuid::now_v7(),
        c[1].at,
        GENESIS_HASH.into(),
        fast_decision(&g),
    )
    .expect("entry");
    let mut entries = c.clone();
    entries.push(forged.clone());
    let out = ingest(s, &entries);
    assert_eq!(out.tally.stored, 3);
    assert_eq!(
        out.acked_through, 3,
        "a flagged entry still advances the cursor"
    );
    assert_eq!(out.tally.alerts.len(), 1, "{:?}", out.tally.alerts);
    assert_eq!(alert_kinds(s), vec![AlertKind::ChainBreak]);
    let alert = s.alerts(10).expect("alerts").remove(0);
    assert_eq!(alert.seq, 3);
    let case_id = alert.case_id.expect("the alert opened a case");
    assert_eq!(
        s.case(case_id).expect("case").expect("stored").state,
        CaseState::Open
    );
    assert_eq!(s.alert(alert.id).expect("alert"), Some(alert.clone()));
    let stored = s
        .events(&EventQuery {
            gate: Some(g),
            ..query()
        })
        .expect("events");
    let flags: Vec<_> = stored
        .items
        .iter()
        .map(|e| (e.entry.seq, e.chain_ok))
        .collect();
    assert_eq!(flags, vec![(1, true), (2, true), (3, false)]);
    let again = ingest(s, &[forged]);
    assert_eq!(again.tally.duplicates, 1);
    assert_eq!(s.alerts(10).expect("alerts").len(), 1, "same alert once");
}

fn a_reused_seq_keeps_the_first_entry(s: &dyn Store) {
    let g = gate("G1");
    let c = plain_chain("G1", 1);
    ingest(s, &c);
    let other = JournalEntry::new_chained(
        g.clone(),
        1,
        Uuid::now_v7(),
        c[0].at,
        GENESIS_HASH.into(),
        seal_exception(&g, Uuid::now_v7()),
    )
    .expect("entry");
    let out = ingest(s, &[other]);
    assert_eq!(out.tally.stored, 0);
    assert_eq!(alert_kinds(s), vec![AlertKind::SeqReused]);
    let ev = s.events(&query()).expect("events");
    assert_eq!(ev.items.len(), 1);
    assert_eq!(ev.items[0].entry.hash, c[0].hash);
    // An id already stored under another seq is not stored again.
    let mut moved = c[0].clone();
    moved.seq = 2;
    moved.prev_hash = c[0].hash.clone();
    let moved = JournalEntry::new_chained(g, 2, c[0].id, c[0].at, c[0].hash.clone(), moved.body)
        .expect("entry");
    let out = ingest(s, &[moved]);
    assert_eq!(out.tally.stored, 0);
    assert!(alert_kinds(s).contains(&AlertKind::IdReused));
}

// ---------------------------------------------------------------------------------------
// cases
// ---------------------------------------------------------------------------------------

fn a_seal_exception_opens_one_case_and_its_repeat_is_noted(s: &dyn Store) {
    let g = gate("G1");
    let txn = Uuid::now_v7();
    let c = exception_chain(&g, txn, "CSQU3054383", vec![seal_exception(&g, txn)]);
    let out = ingest(s, &c);
    assert_eq!(out.cases.len(), 1, "one case per gate transaction");
    let case = &out.cases[0];
    assert_eq!(case.state, CaseState::Open);
    assert_eq!(
        case.history.len(),
        2,
        "opened, then noted: {:?}",
        case.history
    );
    let page = s.cases(&case_query()).expect("cases");
    assert_eq!(page.items.len(), 1);
    assert_eq!(&page.items[0], case);
    let sum = s.summary().expect("summary");
    assert_eq!(sum.cases_open, 1);
    let audit = s.audit_log(0, 100).expect("audit");
    assert!(audit.iter().any(|a| a.action == "case.open"), "{audit:?}");
}

fn another_gates_entry_about_a_transaction_is_refused_with_an_alert(s: &dyn Store) {
    let (g1, g2) = (gate("G1"), gate("G2"));
    let txn = Uuid::now_v7();
    let first = chain(&g1, vec![transaction(&g1, txn, "CSQU3054383")]);
    ingest(s, &first);
    // G2 journals a seal exception naming G1's transaction (under its own gate).
    let foreign = chain(&g2, vec![seal_exception(&g2, txn)]);
    let out = ingest(s, &foreign);
    assert_eq!(out.acked_through, 1, "refused entries are acknowledged");
    assert!(
        out.tally.decisions.is_empty(),
        "a refused decision is not counted: {:?}",
        out.tally.decisions
    );
    assert!(
        alert_kinds(s).contains(&AlertKind::ForeignTransaction),
        "{:?}",
        alert_kinds(s)
    );
    // Nothing of G2's entry reaches G1's transaction, the event lists or a seal case.
    let g1_events: Vec<u64> = s
        .transaction_events(&g1, &txn)
        .expect("txn")
        .iter()
        .map(|e| e.entry.seq)
        .collect();
    assert_eq!(g1_events, vec![1]);
    assert!(s.transaction_events(&g2, &txn).expect("txn").is_empty());
    assert!(
        all_events(
            s,
            EventQuery {
                gate: Some(g2.clone()),
                ..query()
            }
        )
        .is_empty()
    );
    let cases = s.cases(&case_query()).expect("cases");
    assert!(
        cases
            .items
            .iter()
            .all(|c| c.gate == g2 && c.transaction_id().is_none()),
        "{:?}",
        cases.items
    );
    // Sent again, it is a duplicate, not a second alert.
    ingest(s, &foreign);
    let foreign_alerts = alert_kinds(s)
        .into_iter()
        .filter(|k| *k == AlertKind::ForeignTransaction)
        .count();
    assert_eq!(foreign_alerts, 1);
}

/// An override on `lane` of gate `g` about `txn`.
fn override_on(g: &GateId, lane: &str, txn: Uuid) -> EventBody {
    let kind = protocol::schema::ActionKind::Override {
        to: LaneDecision::Inspect,
        reason: "r".into(),
        note: String::new(),
    };
    officer_action(g, lane, txn, "o", kind)
}

fn an_officer_action_from_another_lane_is_refused_with_an_alert(s: &dyn Store) {
    let g1 = gate("G1");
    let (t1, t2) = (Uuid::now_v7(), Uuid::now_v7());
    // Lane L1's truck t1 with an override from L2 in the same batch; truck t2 (L1) whose
    // override from L2 comes in a later batch; and a proper override from L1.
    let all = chain(
        &g1,
        vec![
            transaction(&g1, t1, "CSQU3054383"),
            override_on(&g1, "L2", t1),
            transaction(&g1, t2, "MSCU1234566"),
            override_on(&g1, "L2", t2),
            override_on(&g1, "L1", t2),
        ],
    );
    ingest(s, &all[..3]);
    let out = ingest(s, &all[3..]);
    assert_eq!(out.acked_through, 5, "refused entries are acknowledged");
    let foreign = alert_kinds(s)
        .into_iter()
        .filter(|k| *k == AlertKind::ForeignLane)
        .count();
    assert_eq!(foreign, 2, "{:?}", alert_kinds(s));
    let seqs = |t: &Uuid| -> Vec<u64> {
        s.transaction_events(&g1, t)
            .expect("txn")
            .iter()
            .map(|e| e.entry.seq)
            .collect()
    };
    assert_eq!(seqs(&t1), vec![1]);
    assert_eq!(seqs(&t2), vec![3, 5]);
}

fn staff_actions_on_cases_follow_the_rules_and_are_audited(s: &dyn Store) {
    let g = gate("G1");
    let txn = Uuid::now_v7();
    let out = ingest(s, &chain(&g, vec![seal_exception(&g, txn)]));
    let id = out.cases[0].id;
    let at = now();
    let ack = s
        .update_case(id, Stamp::new("ana", at), &mut |c| {
            cases::apply(c, &CaseAction::Acknowledge { note: None }, "ana", at)
        })
        .expect("acknowledge");
    assert_eq!(ack.state, CaseState::Acknowledged);
    let twice = s.update_case(id, Stamp::new("ana", at), &mut |c| {
        cases::apply(c, &CaseAction::Acknowledge { note: None }, "ana", at)
    });
    assert_eq!(twice, Err(CaseError::AlreadyAcknowledged { id }));
    assert_eq!(
        s.case(id).expect("case").expect("stored").history.len(),
        2,
        "a refused action writes nothing"
    );
    let missing = s.update_case(9_999, Stamp::new("ana", at), &mut |_| Ok(String::new()));
    assert_eq!(missing, Err(CaseError::NotFound(9_999)));
    let sum = s.summary().expect("summary");
    assert_eq!((sum.cases_open, sum.cases_acknowledged), (0, 1));
    let audit = s.audit_log(0, 100).expect("audit");
    assert!(
        audit
            .iter()
            .any(|a| a.action == "case.update" && a.detail == format!("case {id}: acknowledged")),
        "{audit:?}"
    );
}

fn case_queries_filter_and_page_newest_first(s: &dyn Store) {
    for name in ["G1", "G2"] {
        let g = gate(name);
        let bodies = (0..3).map(|_| seal_exception(&g, Uuid::now_v7())).collect();
        ingest(s, &chain(&g, bodies));
    }
    let all = s.cases(&case_query()).expect("cases");
    let ids: Vec<u64> = all.items.iter().map(|c| c.id).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first");
    assert_eq!(ids.len(), 6);
    let g2 = s
        .cases(&CaseQuery {
            gate: Some(gate("G2")),
            ..case_query()
        })
        .expect("cases");
    assert_eq!(g2.items.len(), 3);
    assert!(g2.items.iter().all(|c| c.gate.as_str() == "G2"));
    let pages = Page::collect_all(10, |cursor| {
        s.cases(&CaseQuery {
            cursor,
            limit: 2,
            ..case_query()
        })
    });
    let seen: Vec<u64> = pages.expect("page").iter().map(|c| c.id).collect();
    assert_eq!(seen, ids, "pages join to the whole list");
    let by_reason = s
        .cases(&CaseQuery {
            reason: Some(protocol::schema::ReasonCode::SealMismatch),
            lane: Some(LaneId::parse("L1").expect("lane")),
            state: Some(CaseState::Open),
            ..case_query()
        })
        .expect("cases");
    assert_eq!(by_reason.items.len(), 6);
    let none = s
        .cases(&CaseQuery {
            state: Some(CaseState::Resolved),
            ..case_query()
        })
        .expect("cases");
    assert!(none.items.is_empty());
}

// ---------------------------------------------------------------------------------------
// dashboard queries
// ---------------------------------------------------------------------------------------

fn event_queries_by_container_gate_lane_and_decision_page_in_time_order(s: &dyn Store) {
    let (g1, g2) = (gate("G1"), gate("G2"));
    let (t1, t2) = (Uuid::now_v7(), Uuid::now_v7());
    // G1: the decision arrives before its transaction; the container index still finds it.
    let c1 = chain(
        &g1,
        vec![
            fast_decision(&g1),
            seal_exception(&g1, t1),
            transaction(&g1, t1, "CSQU3054383"),
        ],
    );
    ingest(s, &c1[..2]);
    ingest(s, &c1[2..]);
    ingest(
        s,
        &chain(
            &g2,
            vec![transaction(&g2, t2, "MSKU9070323"), seal_exception(&g2, t2)],
        ),
    );
    let by_container = all_events(
        s,
        EventQuery {
            container: Some("CSQU3054383".into()),
            ..query()
        },
    );
    assert_eq!(by_container, vec![("G1".into(), 2), ("G1".into(), 3)]);
    let paged = all_events(
        s,
        EventQuery {
            limit: 1,
            ..query()
        },
    );
    assert_eq!(paged.len(), 5);
    assert_eq!(
        paged,
        all_events(s, query()),
        "pages join to the whole list"
    );
    let inspect = all_events(
        s,
        EventQuery {
            decision: Some(LaneDecision::Inspect),
            ..query()
        },
    );
    assert_eq!(inspect.len(), 2);
    let lane = all_events(
        s,
        EventQuery {
            gate: Some(g2.clone()),
            lane: Some(LaneId::parse("L1").expect("lane")),
            ..query()
        },
    );
    assert_eq!(lane, vec![("G2".into(), 1), ("G2".into(), 2)]);
    let window = all_events(
        s,
        EventQuery {
            gate: Some(g1.clone()),
            from: Some(c1[1].at),
            to: Some(c1[2].at),
            ..query()
        },
    );
    assert_eq!(window, vec![("G1".into(), 2)]);
    let txn: Vec<u64> = s
        .transaction_events(&g1, &t1)
        .expect("txn")
        .iter()
        .map(|e| e.entry.seq)
        .collect();
    assert_eq!(txn, vec![2, 3]);
    // A transaction is looked up under its gate: another gate sees none of it.
    assert!(s.transaction_events(&g2, &t1).expect("txn").is_empty());
}

/// Events of three gates at the same milliseconds, in two lanes and across a month's
/// end: every query without a container (all gates, one gate, one lane with and without
/// its gate, a time window) pages by cursor, at every page size, to exactly the events it
/// matches in (time, gate, seq) order.
fn pages_of_events_across_gates_sharing_milliseconds_and_months_join_to_the_whole(s: &dyn Store) {
    let t = |i: i64| ts("2026-02-28T23:59:58Z") + SignedDuration::from_secs(i);
    let in_lane = |g: &GateId, lane: &str| {
        let EventBody::Decision { mut decision } = fast_decision(g) else {
            unreachable!()
        };
        decision.lane = LaneId::parse(lane).expect("lane");
        EventBody::Decision { decision }
    };
    // (gate, seconds after t(0), lane) of each gate's entries, in its seq order.
    let plan: [(&str, &[(i64, &str)]); 3] = [
        (
            "G1",
            &[(0, "L1"), (0, "L2"), (2, "L2"), (3, "L1"), (3, "L1")],
        ),
        ("G2", &[(0, "L2"), (1, "L1"), (2, "L2"), (3, "L2")]),
        ("G3", &[(1, "L1"), (2, "L1"), (2, "L1"), (4, "L2")]),
    ];
    // Every stored event: (at, gate, seq, lane).
    let mut stored: Vec<(Timestamp, String, u64, String)> = Vec::new();
    for (g, events) in plan {
        let gid = gate(g);
        let entries = chain_at(
            &gid,
            events
                .iter()
                .map(|&(i, lane)| (t(i), in_lane(&gid, lane)))
                .collect(),
        );
        // Two batches, so a gate's pages span what two ingests stored.
        ingest(s, &entries[..2]);
        ingest(s, &entries[2..]);
        for (e, &(i, lane)) in entries.iter().zip(events) {
            stored.push((t(i), g.to_owned(), e.seq, lane.to_owned()));
        }
    }
    stored.sort();
    let g2 = gate("G2");
    let l2 = LaneId::parse("L2").expect("lane");
    type Stored = (Timestamp, String, u64, String);
    type Keep<'a> = Box<dyn Fn(&Stored) -> bool + 'a>;
    let cases: Vec<(&str, EventQuery, Keep)> = vec![
        ("all gates", query(), Box::new(|_| true)),
        (
            "one gate",
            EventQuery {
                gate: Some(g2.clone()),
                ..query()
            },
            Box::new(|e| e.1 == "G2"),
        ),
        (
            "one gate's lane",
            EventQuery {
                gate: Some(g2.clone()),
                lane: Some(l2.clone()),
                ..query()
            },
            Box::new(|e| e.1 == "G2" && e.3 == "L2"),
        ),
        (
            "a lane of every gate",
            EventQuery {
                lane: Some(l2.clone()),
                ..query()
            },
            Box::new(|e| e.3 == "L2"),
        ),
        (
            "a window across the month's end",
            EventQuery {
                from: Some(t(1)),
                to: Some(t(3)),
                ..query()
            },
            Box::new(|e| e.0 >= t(1) && e.0 < t(3)),
        ),
    ];
    for (what, q, keep) in cases {
        let want: Vec<(String, u64)> = stored
            .iter()
            .filter(|e| keep(e))
            .map(|e| (e.1.clone(), e.2))
            .collect();
        assert!(!want.is_empty(), "{what}: the plan has such events");
        for limit in [1, 2, 3, 5, 100] {
            assert_eq!(
                all_events(s, EventQuery { limit, ..q.clone() }),
                want,
                "{what}, pages of {limit}"
            );
        }
    }
}

fn a_containers_events_page_by_cursor_in_time_order_and_leave_out_other_containers(s: &dyn Store) {
    let (g1, g2) = (gate("G1"), gate("G2"));
    let t = |i: i64| ts("2026-03-01T10:00:00Z") + SignedDuration::from_secs(i * 60);
    let (x, y) = ("CSQU3054383", "MSKU9070323");
    let txn = |g: &GateId, c: &str| transaction(g, Uuid::now_v7(), c);
    // Events of the other container share milliseconds with the container's: at the
    // other gate (G2's at t(0)) and at the same one (G1's at t(3)).
    ingest(
        s,
        &chain_at(
            &g1,
            vec![
                (t(0), txn(&g1, x)),
                (t(1), txn(&g1, x)),
                (t(3), txn(&g1, y)),
                (t(3), txn(&g1, x)),
            ],
        ),
    );
    ingest(
        s,
        &chain_at(
            &g2,
            vec![
                (t(0), txn(&g2, y)),
                (t(1), txn(&g2, x)),
                (t(3), txn(&g2, x)),
                (t(4), txn(&g2, x)),
            ],
        ),
    );
    let of_x = |q: EventQuery| {
        all_events(
            s,
            EventQuery {
                container: Some(x.into()),
                ..q
            },
        )
    };
    let key = |g: &str, seq: u64| (g.to_owned(), seq);
    let whole = vec![
        key("G1", 1),
        key("G1", 2),
        key("G2", 2),
        key("G1", 4),
        key("G2", 3),
        key("G2", 4),
    ];
    assert_eq!(of_x(query()), whole);
    for limit in [1, 2, 4, 5] {
        assert_eq!(
            of_x(EventQuery { limit, ..query() }),
            whole,
            "pages of {limit}"
        );
    }
    let first = s
        .events(&EventQuery {
            container: Some(x.into()),
            limit: 6,
            ..query()
        })
        .expect("events");
    assert_eq!((first.items.len(), first.next_cursor), (6, None));
    assert_eq!(
        of_x(EventQuery {
            gate: Some(g2.clone()),
            limit: 2,
            ..query()
        }),
        vec![key("G2", 2), key("G2", 3), key("G2", 4)]
    );
    assert_eq!(
        of_x(EventQuery {
            from: Some(t(1)),
            to: Some(t(3)),
            limit: 1,
            ..query()
        }),
        vec![key("G1", 2), key("G2", 2)]
    );
    // A lane filter reads the events with the container's rows in one statement.
    assert_eq!(
        of_x(EventQuery {
            lane: Some(LaneId::parse("L1").expect("lane")),
            limit: 4,
            ..query()
        }),
        whole
    );
    assert!(
        of_x(EventQuery {
            decision: Some(LaneDecision::Fast),
            ..query()
        })
        .is_empty()
    );
    assert!(
        all_events(
            s,
            EventQuery {
                container: Some("TGHU1234560".into()),
                ..query()
            }
        )
        .is_empty()
    );
}

fn hourly_figures_and_summary_count_decisions(s: &dyn Store) {
    let g = gate("G1");
    let bodies = vec![
        fast_decision(&g),
        fast_decision(&g),
        seal_exception(&g, Uuid::now_v7()),
    ];
    ingest(s, &chain(&g, bodies));
    let hours = s
        .hourly_stats(None, ts("2026-03-01T00:00:00Z"), ts("2026-03-02T00:00:00Z"))
        .expect("hourly");
    assert_eq!(hours.len(), 1, "{hours:?}");
    let h = &hours[0];
    assert_eq!((h.fast, h.inspect), (2, 1), "{h:?}");
    let other_gate = s
        .hourly_stats(
            Some(&gate("G9")),
            ts("2026-03-01T00:00:00Z"),
            ts("2026-03-02T00:00:00Z"),
        )
        .expect("hourly");
    assert!(other_gate.is_empty());
    let before = s
        .hourly_stats(None, ts("2026-02-01T00:00:00Z"), ts("2026-03-01T10:00:00Z"))
        .expect("hourly");
    assert!(before.is_empty());
    let sum = s.summary().expect("summary");
    assert_eq!(sum.decisions.get("FAST"), Some(&2));
    assert_eq!(sum.decisions.get("INSPECT"), Some(&1));
}

fn heartbeat_raises_a_gap_alert_once_the_gap_persists(s: &dyn Store) {
    let c = plain_chain("G1", 3);
    let g = gate("G1");
    let t0 = now();
    let gap = SignedDuration::from_mins(5);
    s.ingest(Delivery::new(&g, &c[2..], t0, gap))
        .expect("ingest");
    s.ingest(Delivery::new(
        &g,
        &c[2..],
        t0 + SignedDuration::from_mins(1),
        gap,
    ))
    .expect("ingest");
    assert!(alert_kinds(s).is_empty(), "not yet");
    let out = s
        .ingest(Delivery::new(
            &g,
            &c[2..],
            t0 + SignedDuration::from_mins(6),
            gap,
        ))
        .expect("ingest");
    assert_eq!(out.cases.len(), 1);
    assert_eq!(alert_kinds(s), vec![AlertKind::Gap]);
    assert_eq!(s.alerts(10).expect("alerts")[0].seq, 1);
    s.ingest(Delivery::new(
        &g,
        &c[..2],
        t0 + SignedDuration::from_mins(7),
        gap,
    ))
    .expect("ingest");
    assert_eq!(s.gates().expect("gates")[0].state.gap_since, None);
}

fn console_session(g: &GateId, kind: ConsoleSessionKind) -> EventBody {
    EventBody::ConsoleSession {
        session: ConsoleSession {
            v: SCHEMA_VERSION,
            gate: g.clone(),
            kind,
            user: "ana.officer".into(),
            role: (kind != ConsoleSessionKind::LoginFailed).then(|| "officer".into()),
            client: Some("10.1.2.3".into()),
            at: now(),
        },
    }
}

fn console_logins_and_logouts_are_stored_and_another_gates_are_refused(s: &dyn Store) {
    let (g1, g2, g3) = (gate("G1"), gate("G2"), gate("G3"));
    let c = chain(
        &g1,
        [
            ConsoleSessionKind::LoginFailed,
            ConsoleSessionKind::LoginThrottled,
            ConsoleSessionKind::Login,
            ConsoleSessionKind::Logout,
        ]
        .into_iter()
        .map(|k| console_session(&g1, k))
        .collect(),
    );
    let out = ingest(s, &c);
    assert_eq!((out.acked_through, out.tally.stored), (4, 4));
    let stored: Vec<JournalEntry> = s
        .events(&query())
        .expect("events")
        .items
        .into_iter()
        .map(|e| e.entry)
        .collect();
    assert_eq!(stored, c, "stored as sent, in order");
    assert!(alert_kinds(s).is_empty(), "{:?}", alert_kinds(s));
    assert!(s.cases(&case_query()).expect("cases").items.is_empty());
    // G3's journal saying someone logged in at G2 is evidence, not a G2 login.
    let foreign = chain(&g3, vec![console_session(&g2, ConsoleSessionKind::Login)]);
    assert_eq!(ingest(s, &foreign).acked_through, 1);
    assert_eq!(alert_kinds(s), vec![AlertKind::ForeignGate]);
}

fn lane_control_and_refused_trucks_are_stored_under_their_lane(s: &dyn Store) {
    let g = gate("G1");
    let lane = LaneId::parse("L2").expect("lane");
    let c = chain(
        &g,
        vec![
            EventBody::LaneControl {
                lane: lane.clone(),
                closed: true,
                reason: "loop repair".into(),
                by: "sup1".into(),
            },
            EventBody::LaneRefused {
                lane: lane.clone(),
                cause: protocol::schema::LANE_REFUSED_CLOSED.into(),
                at: now(),
                reads: vec![],
            },
            EventBody::LaneControl {
                lane: lane.clone(),
                closed: false,
                reason: "repaired".into(),
                by: "sup1".into(),
            },
        ],
    );
    let out = ingest(s, &c);
    assert_eq!((out.acked_through, out.tally.stored), (3, 3));
    let mut q = query();
    q.lane = Some(lane);
    let stored: Vec<JournalEntry> = s
        .events(&q)
        .expect("events")
        .items
        .into_iter()
        .map(|e| e.entry)
        .collect();
    assert_eq!(stored, c, "found under their lane, as sent");
    q.lane = Some(LaneId::parse("L1").expect("lane"));
    assert!(s.events(&q).expect("events").items.is_empty());
    assert!(alert_kinds(s).is_empty(), "{:?}", alert_kinds(s));
    assert!(s.cases(&case_query()).expect("cases").items.is_empty());
    // The heartbeat's closed lanes are kept with the gate's health.
    let closed = protocol::schema::ClosedLane {
        lane: LaneId::parse("L2").expect("lane"),
        reason: "loop repair".into(),
        since: ts("2026-06-01T12:00:00Z"),
    };
    let health = central::model::GateHealth {
        heartbeat: protocol::schema::Heartbeat {
            v: SCHEMA_VERSION,
            agent: g.clone(),
            at: now(),
            devices: vec![],
            replica_seq: 0,
            replica_as_of: None,
            journal_head: 3,
            acked_seq: 3,
            backlog: 0,
            oldest_unacked_at: None,
            version: "test".into(),
            closed_lanes: vec![closed.clone()],
            clock: None,
        },
        received_at: now(),
        clock_offset_ms: 0,
    };
    s.record_heartbeat(&health, NO_GAP_ALERT)
        .expect("heartbeat");
    let row = s
        .gates()
        .expect("gates")
        .into_iter()
        .find(|r| r.gate == g)
        .expect("gate row");
    assert_eq!(
        row.health.expect("health").heartbeat.closed_lanes,
        vec![closed]
    );
}

fn config_applied(old: &str, new: &str, changes: &[&str]) -> EventBody {
    EventBody::ConfigApplied {
        old_policy: old.into(),
        new_policy: new.into(),
        changes: changes.iter().map(|c| (*c).to_owned()).collect(),
    }
}

fn the_latest_config_change_is_kept_on_the_gate_row(s: &dyn Store) {
    let g = gate("G1");
    let c = chain(
        &g,
        vec![
            config_applied("p1#00000001", "p2#00000002", &["policy p1 → p2"]),
            fast_decision(&g),
            config_applied(
                "p2#00000002",
                "p2#00000002",
                &["lane L3 added", "lane L1 changed: routes"],
            ),
            fast_decision(&g),
        ],
    );
    // The later change arrives first: an older one after it does not replace it.
    assert_eq!(ingest(s, &c[2..]).tally.stored, 2);
    assert_eq!(ingest(s, &c[..2]).acked_through, 4);
    let row = s
        .gates()
        .expect("gates")
        .into_iter()
        .find(|r| r.gate == g)
        .expect("the gate's row");
    let last = row.last_config.expect("a config change on the row");
    assert_eq!(last.seq, 3);
    assert_eq!(
        (last.old_policy.as_str(), last.new_policy.as_str()),
        ("p2#00000002", "p2#00000002")
    );
    assert_eq!(
        last.changes,
        vec!["lane L3 added", "lane L1 changed: routes"]
    );
    assert!(alert_kinds(s).is_empty(), "{:?}", alert_kinds(s));
}

fn text_with_control_characters_is_stored_and_read_back_unchanged(s: &dyn Store) {
    // Agents forward what hardware sent; a NUL or other control character in a string
    // must not make a batch unstorable (it would be refused on every resend).
    let g = gate("G1");
    let c = chain(
        &g,
        vec![EventBody::IntegrityAlert {
            what: "reader\u{0}noise".into(),
            detail: "bytes \u{1}\u{7f} end".into(),
        }],
    );
    let out = ingest(s, &c);
    assert_eq!(out.tally.stored, 1);
    let ev = s.events(&query()).expect("events");
    assert_eq!(ev.items[0].entry, c[0]);
    let alert = s.alerts(1).expect("alerts").remove(0);
    assert!(alert.detail.contains('\u{0}'), "{alert:?}");
    let case = s.case(alert.case_id.expect("case")).expect("case");
    assert!(case.is_some());
}

fn an_entry_whose_agent_time_runs_back_is_stored_with_a_time_backwards_alert(s: &dyn Store) {
    // The gate's clock is stepped back 60 s between seq 2 and seq 3; seq 3 arrives last,
    // after seq 4, so both the predecessor and the successor checks are exercised.
    let g = gate("G1");
    let t0 = ts("2026-03-01T10:15:00Z");
    let entries = chain_at(
        &g,
        [0, 1, -59, -58]
            .map(|back| (t0 + SignedDuration::from_secs(back), fast_decision(&g)))
            .into(),
    );
    let first = ingest(
        s,
        &[entries[0].clone(), entries[1].clone(), entries[3].clone()],
    );
    assert!(first.tally.alerts.is_empty(), "{:?}", first.tally.alerts);
    let out = ingest(s, &[entries[2].clone()]);
    assert_eq!(
        (out.tally.stored, out.acked_through),
        (1, 4),
        "stored, with effect"
    );
    assert_eq!(alert_kinds(s), vec![AlertKind::TimeBackwards]);
    let alert = s.alerts(10).expect("alerts").remove(0);
    assert_eq!(alert.seq, 3);
    assert!(alert.detail.contains("went back"), "{alert:?}");
    assert!(alert.case_id.is_some(), "the alert opened a case");
    let again = ingest(s, &[entries[2].clone()]);
    assert_eq!(again.tally.duplicates, 1);
    assert_eq!(s.alerts(10).expect("alerts").len(), 1, "same alert once");
    // Central keeps the gate's order: the chain by sequence, every entry flagged intact.
    let stored = all_events(
        s,
        EventQuery {
            gate: Some(g),
            ..query()
        },
    );
    let mut seqs: Vec<u64> = stored.iter().map(|(_, seq)| *seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
}

fn entries_dated_at_the_ends_of_the_calendar_are_stored(s: &dyn Store) {
    // An agent's clock is not trusted: whatever time it wrote, the entry is kept.
    let g = gate("G1");
    let entries = chain_at(
        &g,
        vec![
            (Timestamp::MAX, fast_decision(&g)),
            (Timestamp::MIN, fast_decision(&g)),
        ],
    );
    let out = ingest(s, &entries);
    assert_eq!((out.tally.stored, out.acked_through), (2, 2));
    let seqs: Vec<u64> = s
        .events(&query())
        .expect("events")
        .items
        .iter()
        .map(|e| e.entry.seq)
        .collect();
    assert_eq!(seqs, vec![2, 1], "oldest first");
}

// ---------------------------------------------------------------------------------------
// registry
// ---------------------------------------------------------------------------------------

fn consignment(id: &str, container: &str, port: &str) -> Consignment {
    common::declared_consignment(id, container, port)
}

/// The chunked snapshot reads the registry change by change (`snapshot_each`): over
/// several of the backend's fetch pages it hands over exactly the snapshot (operators, MRAs
/// and only this port's consignments, each once with its seq), and an error from the
/// visitor ends the read there.
fn a_snapshot_read_change_by_change_holds_the_whole_snapshot_and_stops_on_error(s: &dyn Store) {
    const OPERATORS: usize = 4_500;
    let mut changes: Vec<Change> = (0..OPERATORS)
        .map(|i| Change::UpsertOperator {
            record: common::operator_record(&format!("EU-AEO:DE{i:015}")),
        })
        .collect();
    for i in 0..2_500 {
        let port = if i % 2 == 0 { "NLRTM" } else { "BEANR" };
        changes.push(Change::UpsertConsignment {
            consignment: consignment(&format!("C{i}"), "CSQU3054383", port),
        });
    }
    let at = now();
    let last = s
        .append_changes(&changes, Stamp::new("importer", at))
        .expect("append");

    let mut seen = Vec::new();
    let head = s
        .snapshot_each("NLRTM", now(), &mut |c| {
            seen.push(c);
            Ok(())
        })
        .expect("snapshot_each");
    assert_eq!((head.last_seq, head.as_of), (last, at));
    assert_eq!(
        seen.len(),
        OPERATORS + 1_250,
        "operators and NLRTM's consignments"
    );
    let whole = s.snapshot("NLRTM", now()).expect("snapshot");
    assert_eq!((whole.last_seq, whole.as_of), (head.last_seq, head.as_of));
    seen.sort_by_key(|c| c.seq);
    assert_eq!(seen, whole.changes, "the same changes, each once");
    assert!(seen.iter().all(|c| match &c.change {
        Change::UpsertConsignment { consignment } => consignment.ports == vec!["NLRTM".to_owned()],
        Change::UpsertOperator { .. } => true,
        other => panic!("unexpected {other:?}"),
    }));

    let mut visits = 0;
    let err = s
        .snapshot_each("NLRTM", now(), &mut |_| {
            visits += 1;
            if visits == 10 {
                Err(StoreError::Backend("chunk file full".into()))
            } else {
                Ok(())
            }
        })
        .expect_err("the visitor's error ends the read");
    assert_eq!(visits, 10);
    assert!(err.to_string().contains("chunk file full"), "{err}");
}

fn registry_changes_are_logged_applied_and_snapshotted_per_port(s: &dyn Store) {
    let a = "EU-AEO:DE123456789012345";
    let b = "EU-AEO:FR987654321098765";
    let at = now();
    let seq = s
        .append_changes(
            &[
                Change::UpsertOperator {
                    record: RegistryRecord {
                        name: "Alpha Logistics".into(),
                        ..common::operator_record(a)
                    },
                },
                Change::UpsertOperator {
                    record: RegistryRecord {
                        name: "Beta Freight".into(),
                        ..common::operator_record(b)
                    },
                },
                Change::UpsertConsignment {
                    consignment: consignment("C1", "CSQU3054383", "NLRTM"),
                },
                Change::UpsertConsignment {
                    consignment: consignment("C2", "MSKU9070323", "BEANR"),
                },
            ],
            Stamp::new("importer", at),
        )
        .expect("append");
    assert_eq!(seq, 4);
    let op = OperatorId::parse(a).expect("op");
    let later = at + SignedDuration::from_hours(1);
    let seq = s
        .append_changes(
            &[
                Change::SetStatus {
                    operator: op.clone(),
                    status: AeoStatus::Suspended,
                    reason: "audit".into(),
                    actor: "ana".into(),
                    at: later,
                },
                // C2 moves from Antwerp to Rotterdam: both ports learn of it.
                Change::UpsertConsignment {
                    consignment: consignment("C2", "MSKU9070323", "NLRTM"),
                },
            ],
            Stamp::new("ana", later),
        )
        .expect("append");
    assert_eq!(seq, 6);
    assert_eq!(s.last_seq().expect("seq"), 6);
    let rec = s.operator(&op).expect("operator").expect("stored");
    assert_eq!(
        (rec.status, rec.status_since, rec.as_of),
        (AeoStatus::Suspended, later, later)
    );
    let log = s.changes_after(3, 10).expect("changes");
    assert_eq!(log.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![4, 5, 6]);
    assert_eq!(log[2].ports, Some(vec!["BEANR".into(), "NLRTM".into()]));
    assert_eq!(log[1].ports, None);
    let snap = s.snapshot("NLRTM", now()).expect("snapshot");
    assert_eq!(snap.last_seq, 6);
    assert_eq!(snap.as_of, later);
    let seqs: Vec<u64> = snap.changes.iter().map(|c| c.seq).collect();
    assert_eq!(
        seqs,
        vec![2, 3, 5, 6],
        "operators, and this port's consignments"
    );
    let antwerp = s.snapshot("BEANR", now()).expect("snapshot");
    assert_eq!(antwerp.changes.len(), 2, "operators only: C2 moved away");
    let found = s.consignments_for_container("MSKU9070323").expect("c");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].ports, vec!["NLRTM".to_owned()]);
    let names: Vec<String> = s
        .search_operators("beta", 10)
        .expect("search")
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, vec!["Beta Freight".to_owned()]);
    assert_eq!(s.search_operators("eu-aeo", 1).expect("search").len(), 1);
    let hist = s.operator_changes(&op, 10).expect("history");
    assert_eq!(hist.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![1, 5]);
    let last = s.operator_changes(&op, 1).expect("history");
    assert_eq!(last.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![5]);
    let sum = s.summary().expect("summary");
    assert_eq!(
        (sum.operators, sum.consignments, sum.registry_seq),
        (2, 2, 6)
    );
    let audit = s.audit_log(0, 100).expect("audit");
    assert!(audit.iter().any(|e| e.action == "registry.set_status"));
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.action == "registry.import")
            .count(),
        2
    );
}

fn a_status_change_of_an_unknown_operator_appends_nothing(s: &dyn Store) {
    let err = s
        .append_changes(
            &[
                Change::RemoveConsignment { id: "X".into() },
                Change::SetStatus {
                    operator: OperatorId::parse("EU-AEO:DE123456789012345").expect("op"),
                    status: AeoStatus::Revoked,
                    reason: "r".into(),
                    actor: "ana".into(),
                    at: now(),
                },
            ],
            Stamp::new("ana", now()),
        )
        .expect_err("unknown operator");
    assert!(matches!(err, StoreError::UnknownOperator(_)), "{err}");
    assert_eq!(s.last_seq().expect("seq"), 0);
    assert!(s.changes_after(0, 10).expect("changes").is_empty());
    assert!(s.audit_log(0, 10).expect("audit").is_empty());
}

// ---------------------------------------------------------------------------------------
// agents, users, sessions, audit
// ---------------------------------------------------------------------------------------

fn agents_tokens_and_gate_ports(s: &dyn Store) {
    let agent = AgentRecord {
        gate: gate("G1"),
        port: "NLRTM".into(),
        issued_at: now(),
        issued_by: "ana".into(),
        cert_sha256: None,
        revoked_at: None,
        expires_at: None,
    };
    s.add_agent(&[1; 32], &agent).expect("add");
    assert_eq!(
        s.agent_for_token(&[1; 32]).expect("get"),
        Some(agent.clone())
    );
    assert_eq!(s.agent_for_token(&[2; 32]).expect("get"), None);
    let elsewhere = AgentRecord {
        port: "BEANR".into(),
        ..agent.clone()
    };
    let err = s.add_agent(&[2; 32], &elsewhere).expect_err("other port");
    assert!(matches!(err, StoreError::GatePortConflict { .. }), "{err}");
    assert_eq!(s.agent_for_token(&[2; 32]).expect("get"), None);
    s.add_agent(&[3; 32], &agent)
        .expect("second token, same port");
    let gates = s.gates().expect("gates");
    assert_eq!(gates.len(), 1);
    assert_eq!(gates[0].port, "NLRTM");
    let audit = s.audit_log(0, 10).expect("audit");
    assert_eq!(audit.len(), 2);
}

fn token_record(g: &str, cert: Option<&str>) -> AgentRecord {
    AgentRecord {
        gate: gate(g),
        port: "NLRTM".into(),
        issued_at: now(),
        issued_by: "ana".into(),
        cert_sha256: cert.map(str::to_owned),
        revoked_at: None,
        expires_at: None,
    }
}

/// Revokes the tokens `pick` selects (those not yet revoked); returns how many changed.
fn revoke_where(
    s: &dyn Store,
    g: &GateId,
    at: Timestamp,
    pick: impl Fn(&AgentRecord) -> bool + Sync,
) -> Result<usize, StoreError> {
    let mut change = |r: &mut AgentRecord| {
        if r.revoked_at.is_some() || !pick(r) {
            return false;
        }
        r.revoked_at = Some(at);
        true
    };
    s.change_agent_tokens(TokenChange {
        gate: g,
        change: &mut change,
        add: None,
        actor: "ana",
        action: "agent.token.revoke",
        detail: "test",
        at,
    })
}

fn token_changes_revoke_expire_and_add_in_one_step_and_mark_the_gate(s: &dyn Store) {
    let g = gate("G1");
    let cert = "ab".repeat(32);
    s.add_agent(&[1; 32], &token_record("G1", None))
        .expect("add");
    s.add_agent(&[2; 32], &token_record("G1", Some(&cert)))
        .expect("add");
    s.add_agent(&[9; 32], &token_record("G9", None))
        .expect("add");
    assert_eq!(
        revoke_where(s, &gate("G2"), now(), |_| true),
        Err(StoreError::UnknownGate("G2".into()))
    );

    // Only the certificate's token is revoked; the gate still has a usable token.
    let t1 = now() + SignedDuration::from_mins(1);
    let n = revoke_where(s, &g, t1, |r| {
        r.cert_sha256.as_deref() == Some(cert.as_str())
    });
    assert_eq!(n, Ok(1));
    let two = s.agent_for_token(&[2; 32]).expect("get").expect("token 2");
    assert_eq!(two.revoked_at, Some(t1));
    let one = s.agent_for_token(&[1; 32]).expect("get").expect("token 1");
    assert_eq!(one.revoked_at, None);
    let row = |name: &str| {
        s.gates()
            .expect("gates")
            .into_iter()
            .find(|r| r.gate.as_str() == name)
            .expect("gate row")
    };
    assert_eq!(row("G1").revoked_at, None);

    // Rotation: the live token gets a deadline, the new token is added, in one step.
    let until = t1 + SignedDuration::from_hours(24);
    let mut expire = |r: &mut AgentRecord| {
        if r.revoked_at.is_some() {
            return false;
        }
        r.expires_at = Some(until);
        true
    };
    let new = token_record("G1", None);
    let n = s.change_agent_tokens(TokenChange {
        gate: &g,
        change: &mut expire,
        add: Some((&[3; 32], &new)),
        actor: "ana",
        action: "agent.token.rotate",
        detail: "test",
        at: t1,
    });
    assert_eq!(n, Ok(1));
    let one = s.agent_for_token(&[1; 32]).expect("get").expect("token 1");
    assert_eq!(one.expires_at, Some(until));
    assert_eq!(s.agent_for_token(&[3; 32]).expect("get"), Some(new));
    assert_eq!(s.agent_tokens(&g).expect("tokens").len(), 3);
    assert_eq!(s.agent_tokens(&gate("G9")).expect("tokens").len(), 1);

    // Revoking the rest marks the gate; another gate's token is untouched.
    let t2 = t1 + SignedDuration::from_mins(1);
    assert_eq!(revoke_where(s, &g, t2, |_| true), Ok(2));
    assert_eq!(row("G1").revoked_at, Some(t2));
    assert_eq!(row("G9").revoked_at, None);
    let nine = s.agent_for_token(&[9; 32]).expect("get").expect("token 9");
    assert_eq!(nine.revoked_at, None);
    // Revoking again changes nothing and keeps the first time.
    assert_eq!(
        revoke_where(s, &g, t2 + SignedDuration::from_mins(1), |_| true),
        Ok(0)
    );
    assert_eq!(row("G1").revoked_at, Some(t2));
    // A new token lifts the mark.
    s.add_agent(&[4; 32], &token_record("G1", None))
        .expect("add");
    assert_eq!(row("G1").revoked_at, None);
    let actions: Vec<String> = s
        .audit_log(0, 100)
        .expect("audit")
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| a.starts_with("agent.token.revoke"))
            .count(),
        3,
        "{actions:?}"
    );
    assert!(
        actions.iter().any(|a| a == "agent.token.rotate"),
        "{actions:?}"
    );
}

/// The newest audit entry is `(actor, action, detail)`.
fn assert_last_audit(s: &dyn Store, expected: (&str, &str, &str)) {
    let audit = s.audit_log(0, 1_000).expect("audit");
    let last = audit.last().expect("an audit entry");
    assert_eq!(
        (
            last.actor.as_str(),
            last.action.as_str(),
            last.detail.as_str()
        ),
        expected
    );
}

/// An enabled staff user of no company, created now.
fn staff_user(name: &str, role: &str) -> StaffUser {
    StaffUser {
        name: name.into(),
        role: role.into(),
        password_phc: "$argon2id$x".into(),
        created_at: now(),
        lang: Lang::default(),
        disabled: false,
        company: None,
    }
}

fn a_user_update_is_stored_with_its_audit_entry_or_not_at_all(s: &dyn Store) {
    let user = staff_user("bea", "analyst");
    s.add_user(&user).expect("add");
    let changed = s
        .update_user("bea", Stamp::new("root", now()), &mut |u| {
            u.disabled = true;
            u.role = "admin".into();
            Ok("disabled, role admin".into())
        })
        .expect("update");
    assert!(changed.disabled);
    assert_eq!(s.user("bea").expect("user"), Some(changed));
    assert_last_audit(s, ("root", "user.access", "user bea: disabled, role admin"));
    let audited = s.audit_log(0, 10).expect("audit").len();
    // A refused change writes nothing.
    let err = s
        .update_user("bea", Stamp::new("root", now()), &mut |u| {
            u.disabled = false;
            Err(StoreError::Refused("no".into()))
        })
        .expect_err("refused");
    assert_eq!(err, StoreError::Refused("no".into()));
    assert!(s.user("bea").expect("user").expect("bea").disabled);
    assert_eq!(s.audit_log(0, 10).expect("audit").len(), audited);
    assert_eq!(
        s.update_user("nobody", Stamp::new("root", now()), &mut |_| Ok(
            String::new()
        )),
        Err(StoreError::UnknownUser("nobody".into()))
    );
}

fn users_sessions_and_audit(s: &dyn Store) {
    let user = staff_user("ana", "supervisor");
    s.add_user(&user).expect("add");
    assert_eq!(s.add_user(&user), Err(StoreError::UserExists("ana".into())));
    assert_eq!(s.user("ana").expect("user"), Some(user.clone()));
    assert_eq!(s.user("bob").expect("user"), None);
    let fr = Lang::parse("es").expect("es");
    s.set_user_lang("ana", fr, now()).expect("lang");
    assert_eq!(s.user("ana").expect("user").expect("ana").lang, fr);
    assert_eq!(
        s.set_user_lang("bob", fr, now()),
        Err(StoreError::UnknownUser("bob".into()))
    );
    assert_eq!(s.users().expect("users").len(), 1);
    let session = Session {
        user: "ana".into(),
        role: "supervisor".into(),
        expires_at: now(),
    };
    s.put_session(&[7; 32], &session).expect("put");
    assert_eq!(s.session(&[7; 32]).expect("get"), Some(session));
    s.delete_session(&[7; 32]).expect("delete");
    s.delete_session(&[7; 32]).expect("deleting again is fine");
    assert_eq!(s.session(&[7; 32]).expect("get"), None);
    s.audit(AuditNote::new("ana", "export.csv", "events", now()))
        .expect("audit");
    let log = s.audit_log(0, 100).expect("audit");
    let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, vec!["user.add", "user.lang", "export.csv"]);
    let ids: Vec<u64> = log.iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert_eq!(s.audit_log(2, 100).expect("audit").len(), 1);
    assert_eq!(s.audit_log(0, 1).expect("audit").len(), 1);
}

// ---------------------------------------------------------------------------------------
// the backend chosen by configuration, through central's API
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn central_configured_with_a_postgres_url_ingests_and_serves_cases() {
    let (_cluster, url) = common::pg::PgCluster::with_central();
    let e = common::env_with(|cfg| {
        cfg.store_path = std::path::PathBuf::new();
        cfg.store = Some(central::config::StoreConfig {
            url: central::config::PgUrl::parse(&url).expect("url"),
            retention_months: None,
            ca_cert: None,
        });
    });
    assert!(
        !e.dir.path().join("central.redb").exists(),
        "no redb file is opened"
    );
    let g = gate("P1-G1");
    let token = e.central.issue_agent_token(&g, "P1").expect("token");
    let txn = Uuid::now_v7();
    let entries = chain(
        &g,
        vec![transaction(&g, txn, "CSQU3054383"), seal_exception(&g, txn)],
    );
    let uri = "/api/v1/agents/P1-G1/events";
    let a = common::call(
        &e.central,
        "POST",
        uri,
        Some(&token),
        Some(&common::batch(&g, &entries)),
    )
    .await;
    assert_eq!(a.status, axum::http::StatusCode::OK, "{}", a.json);
    assert_eq!(a.json["acked_through"], 2);
    let cases = common::open_cases(&e.central).await;
    assert_eq!(cases["items"][0]["subject"]["type"], "SEAL_EXCEPTION");
    // The data is in the database: a second store on the same URL sees it.
    let other = PgStore::open(&url).expect("second store");
    assert_eq!(
        other
            .summary()
            .expect("summary")
            .acked_through_per_gate
            .get("P1-G1"),
        Some(&2)
    );
}

// ---------------------------------------------------------------------------------------
// a rough ingest rate, both backends durable (run with --ignored --nocapture)
// ---------------------------------------------------------------------------------------

fn ingest_rate(s: &dyn Store, gates: usize, batches: usize, per_batch: usize) -> f64 {
    let chains: Vec<Vec<JournalEntry>> = (0..gates)
        .map(|i| {
            let g = gate(&format!("G{i}"));
            chain(
                &g,
                (0..batches * per_batch)
                    .map(|_| fast_decision(&g))
                    .collect(),
            )
        })
        .collect();
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        for c in &chains {
            scope.spawn(move || {
                for b in c.chunks(per_batch) {
                    let out = ingest(s, b);
                    assert_eq!(out.tally.stored, b.len() as u64);
                }
            });
        }
    });
    let n = gates * batches * per_batch;
    let sum = s.summary().expect("summary");
    assert_eq!(sum.events_per_gate.values().sum::<u64>(), n as u64);
    n as f64 / started.elapsed().as_secs_f64()
}

#[test]
#[ignore = "a measurement, not a check; prints events/s"]
fn measure_ingest_rate_on_both_backends() {
    let (gates, batches, per_batch) = (4, 20, 500);
    let dir = tempfile::tempdir().expect("tempdir");
    let redb = RedbStore::open(&dir.path().join("c.redb")).expect("redb");
    let redb_rate = ingest_rate(&redb, gates, batches, per_batch);
    let cluster = common::pg::PgCluster::start_with(true);
    let pg = PgStore::open(&cluster.create_database("central")).expect("pg");
    let pg_rate = ingest_rate(&pg, gates, batches, per_batch);
    println!(
        "ingest, {gates} agents x {batches} batches x {per_batch} FAST decisions, durable: \
         redb {redb_rate:.0} events/s, PostgreSQL {pg_rate:.0} events/s"
    );
}

// ---------------------------------------------------------------------------------------
// two stores (two central instances) on one PostgreSQL database
// ---------------------------------------------------------------------------------------

#[test]
fn the_same_batch_at_two_instances_at_once_is_stored_once() {
    let (_cluster, url) = common::pg::PgCluster::with_central();
    let (a, b) = (
        PgStore::open(&url).expect("a"),
        PgStore::open(&url).expect("b"),
    );
    let c = plain_chain("G1", 300);
    let (ta, tb) = std::thread::scope(|s| {
        let ha = s.spawn(|| ingest(&a, &c).tally);
        let hb = s.spawn(|| ingest(&b, &c).tally);
        (ha.join().expect("a"), hb.join().expect("b"))
    });
    assert_eq!(ta.stored + tb.stored, 300, "{ta:?} {tb:?}");
    assert_eq!(ta.duplicates + tb.duplicates, 300, "{ta:?} {tb:?}");
    let sum = b.summary().expect("summary");
    assert_eq!(sum.events_per_gate.get("G1"), Some(&300));
    assert_eq!(sum.acked_through_per_gate.get("G1"), Some(&300));
    assert!(a.alerts(10).expect("alerts").is_empty());
}

#[test]
fn registry_change_numbers_from_two_instances_have_no_gaps_or_duplicates() {
    let (_cluster, url) = common::pg::PgCluster::with_central();
    let stores = [
        PgStore::open(&url).expect("a"),
        PgStore::open(&url).expect("b"),
    ];
    std::thread::scope(|s| {
        for (i, st) in stores.iter().enumerate() {
            s.spawn(move || {
                for n in 0..20 {
                    let id = format!("C{i}-{n}");
                    st.append_changes(
                        &[
                            Change::RemoveConsignment { id: id.clone() },
                            Change::RemoveConsignment { id },
                        ],
                        Stamp::new("importer", now()),
                    )
                    .expect("append");
                }
            });
        }
    });
    let log = stores[0].changes_after(0, 1_000).expect("log");
    let seqs: Vec<u64> = log.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, (1..=80).collect::<Vec<u64>>());
    // Each append's two changes are adjacent: appends do not interleave.
    for pair in log.chunks(2) {
        assert_eq!(
            serde_json::to_string(&pair[0].change).expect("json"),
            serde_json::to_string(&pair[1].change).expect("json")
        );
    }
    assert_eq!(stores[1].last_seq().expect("seq"), 80);
}

fn a_company_is_added_with_its_user_and_changed_whole_or_not_at_all(s: &dyn Store) {
    let op = protocol::operator::OperatorId::parse("EU-AEO:DE123456789012345").expect("op");
    let company = central::portal::Company::new(
        op,
        "Acme".into(),
        protocol::schema::PartyRole::Exporter,
        "acme.admin",
        false,
        now(),
    );
    let user = StaffUser {
        company: Some(company.operator.to_string()),
        ..staff_user("acme.admin", central::portal::COMPANY_ROLE)
    };
    s.add_company(&company, Some(&user), Stamp::new("acme.admin", now()))
        .expect("add");
    let key = "EU-AEO:DE123456789012345";
    assert_eq!(s.company(key).expect("company"), Some(company.clone()));
    assert_eq!(s.user("acme.admin").expect("user"), Some(user.clone()));
    assert!(matches!(
        s.add_company(&company, None, Stamp::new("x", now())),
        Err(StoreError::Refused(_))
    ));
    let changed = s
        .update_company(key, Stamp::new("olga", now()), &mut |c| {
            c.confirmed_by = Some("olga".into());
            Ok("confirmed".into())
        })
        .expect("update");
    assert_eq!(s.companies().expect("all"), vec![changed.clone()]);
    assert_last_audit(
        s,
        (
            "olga",
            "company.change",
            "company EU-AEO:DE123456789012345: confirmed",
        ),
    );
    let err = s
        .update_company(key, Stamp::new("olga", now()), &mut |c| {
            c.name = "Other".into();
            Err(StoreError::Refused("no".into()))
        })
        .expect_err("refused");
    assert_eq!(err, StoreError::Refused("no".into()));
    assert_eq!(s.company(key).expect("company"), Some(changed));
    assert!(
        s.update_company("EU-AEO:FR1", Stamp::new("o", now()), &mut |_| Ok(
            String::new()
        ))
        .is_err()
    );
}

fn a_document_is_stored_once_under_its_hash_and_read_back_whole(s: &dyn Store) {
    // Every byte value, and more than one page of either backend.
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let hash = central::portal::documents::sha256_hex(&body);
    assert_eq!(s.document(&hash).expect("read"), None);
    s.put_document(&hash, &body).expect("put");
    s.put_document(&hash, &body).expect("the same bytes again");
    assert_eq!(s.document(&hash).expect("read"), Some(body));
    let empty = central::portal::documents::sha256_hex(b"");
    assert_eq!(s.document(&empty).expect("read"), None);
}

// -- programme roll-ups -----------------------------------------------------------------

const EU_OP: &str = "EU-AEO:DE123456789012345";
const US_OP: &str = "US-CTPAT:OBOIMP92011";

/// A decision about `txn` decided at `at` with parties (operator, status).
fn party_decision(
    g: &GateId,
    txn: Uuid,
    d: LaneDecision,
    at: Timestamp,
    parties: &[(&str, Option<AeoStatus>)],
) -> EventBody {
    let EventBody::Decision { mut decision } = seal_exception(g, txn) else {
        unreachable!()
    };
    decision.decision = d;
    // No seal exception: no case is opened.
    decision.reasons = vec![];
    decision.decided_at = at;
    decision.parties = parties
        .iter()
        .map(|(op, status)| protocol::schema::PartyView {
            role: protocol::schema::PartyRole::Importer,
            operator: Some(OperatorId::parse(op).expect("operator")),
            name: format!("Name of {op}"),
            status: *status,
            security: true,
            mra: None,
            contact_point: None,
        })
        .collect();
    EventBody::Decision { decision }
}

/// A gate transaction `secs` long.
fn timed_transaction(g: &GateId, txn: Uuid, secs: i64) -> EventBody {
    let EventBody::Transaction { mut transaction } = transaction(g, txn, "CSQU3054383") else {
        unreachable!()
    };
    transaction.closed_at = transaction.opened_at + SignedDuration::from_secs(secs);
    EventBody::Transaction { transaction }
}

/// The programme figures from `from`, read with the ingested batches still queued for
/// the roll-ups (PostgreSQL) and again once they are folded: both must agree.
fn figures(s: &dyn Store, from: Option<Timestamp>) -> programme::Benefits {
    let read = || {
        programme::from_counts(
            &s.programme_counts(from, ts("2100-01-01T00:00:00Z"))
                .expect("programme counts"),
        )
    };
    let queued = read();
    // Bounded: each fold takes up to 3 of the finite queue.
    for _ in 0..100_000 {
        if s.fold_rollups(3).expect("fold") == 0 {
            break;
        }
    }
    assert_eq!(read(), queued, "the same figures queued and folded");
    queued
}

/// The events without the decisions decided before `from`.
fn decided_from(events: &[StoredEvent], from: Timestamp) -> Vec<StoredEvent> {
    events
        .iter()
        .filter(|e| match &e.entry.body {
            EventBody::Decision { decision } => decision.decided_at >= from,
            _ => true,
        })
        .cloned()
        .collect()
}

fn programme_figures_from_roll_ups_equal_a_direct_computation_over_the_events(s: &dyn Store) {
    use AeoStatus::{Active, Suspended};
    let g = gate("G1");
    let t: Vec<Uuid> = (0..7).map(|_| Uuid::now_v7()).collect();
    let (h10, h11) = (ts("2026-03-01T10:20:00Z"), ts("2026-03-01T11:05:00Z"));
    let entries = chain(
        &g,
        vec![
            // Decision, then its transaction, in one batch.
            party_decision(&g, t[0], LaneDecision::Fast, h10, &[(EU_OP, Some(Active))]),
            timed_transaction(&g, t[0], 61),
            // Transaction first.
            timed_transaction(&g, t[1], 300),
            party_decision(
                &g,
                t[1],
                LaneDecision::Inspect,
                h10,
                &[(EU_OP, Some(Suspended)), (US_OP, Some(Active))],
            ),
            // Its transaction comes in the next batch.
            party_decision(&g, t[2], LaneDecision::Standard, h10, &[]),
            // Its decision comes in the next batch.
            timed_transaction(&g, t[3], 50),
            // Never a transaction.
            party_decision(
                &g,
                t[4],
                LaneDecision::Fast,
                h11,
                &[(EU_OP, Some(Active)), (US_OP, Some(Active))],
            ),
            // -- second batch --
            timed_transaction(&g, t[2], 900),
            party_decision(&g, t[3], LaneDecision::Fast, h11, &[(US_OP, Some(Active))]),
            // Never a decision.
            timed_transaction(&g, t[5], 20),
            party_decision(&g, t[6], LaneDecision::Inspect, h11, &[(US_OP, None)]),
        ],
    );
    ingest(s, &entries[..7]);
    ingest(s, &entries[7..]);
    // A batch sent again changes nothing.
    ingest(s, &entries[7..]);
    let events = stored_events(s, query());
    let direct = programme::benefits(&events);
    assert_eq!(
        (direct.aeo.transactions, direct.non_aeo.transactions),
        (3, 3),
        "{direct:?}"
    );
    assert_eq!(direct.aeo.times.values().sum::<u64>(), 2, "t0 and t3");
    assert_eq!(direct.per_programme.len(), 2, "{direct:?}");
    assert_eq!(figures(s, None), direct);
    let hour11 = ts("2026-03-01T11:00:00Z");
    let later = programme::benefits(&decided_from(&events, hour11));
    assert_eq!(later.aeo.transactions + later.non_aeo.transactions, 3);
    assert_eq!(figures(s, Some(ts("2026-03-01T11:59:59Z"))), later);
    // Up to 11:00 exactly: the hour of 10:00 only.
    let early: Vec<StoredEvent> = events
        .iter()
        .filter(|e| {
            !matches!(&e.entry.body, EventBody::Decision { decision } if decision.decided_at >= hour11)
        })
        .cloned()
        .collect();
    let up_to_11 = programme::from_counts(&s.programme_counts(None, hour11).expect("counts"));
    assert_eq!(up_to_11.aeo.transactions + up_to_11.non_aeo.transactions, 3);
    assert_eq!(up_to_11, programme::benefits(&early));
    assert_eq!(
        figures(s, Some(ts("2026-03-01T12:00:00Z"))),
        programme::Benefits::default()
    );
}

fn programme_figures_over_many_decisions_and_days_are_exact(s: &dyn Store) {
    use AeoStatus::{Active, Suspended};
    // No cap on the events a range covers: the figures of 30,000 decisions over 35
    // days, read whole days from the daily counts and the ends by the hour.
    const N: usize = 30_000;
    let g = gate("G1");
    let start = ts("2026-03-01T00:00:00Z");
    let mut bodies = Vec::with_capacity(N + N / 10);
    for i in 0..N {
        let txn = Uuid::now_v7();
        let d = [
            LaneDecision::Fast,
            LaneDecision::Inspect,
            LaneDecision::Standard,
        ][i % 3];
        let status = if i % 2 == 0 { Active } else { Suspended };
        let op = if i % 5 == 0 { US_OP } else { EU_OP };
        let at = start + SignedDuration::from_secs(i as i64 * 100);
        bodies.push(party_decision(&g, txn, d, at, &[(op, Some(status))]));
        if i % 10 == 0 {
            bodies.push(timed_transaction(&g, txn, (i % 4000) as i64));
        }
    }
    let entries = chain(&g, bodies);
    for part in entries.chunks(2_000) {
        ingest(s, part);
    }
    let events: Vec<StoredEvent> = entries
        .into_iter()
        .map(|entry| StoredEvent {
            entry,
            received_at: now(),
            chain_ok: true,
            refused: false,
        })
        .collect();
    let direct = programme::benefits(&events);
    assert_eq!(
        direct.aeo.transactions + direct.non_aeo.transactions,
        N as u64
    );
    assert_eq!(figures(s, None), direct);
    // Ranges that start 10 h and 10 days 5 h in (whole days after a part of one).
    for from in [
        start + SignedDuration::from_hours(10),
        start + SignedDuration::from_hours(245),
    ] {
        assert_eq!(
            figures(s, Some(from)),
            programme::benefits(&decided_from(&events, from))
        );
    }
}

/// The events without the decisions outside `[from, to)`.
fn decided_between(events: &[StoredEvent], from: Timestamp, to: Timestamp) -> Vec<StoredEvent> {
    events
        .iter()
        .filter(|e| match &e.entry.body {
            EventBody::Decision { decision } => {
                decision.decided_at >= from && decision.decided_at < to
            }
            _ => true,
        })
        .cloned()
        .collect()
}

fn programme_figures_over_months_and_across_a_year_end_are_exact(s: &dyn Store) {
    use AeoStatus::{Active, Suspended};
    // A decision every 97 minutes from mid-November to March, so every hour of a range
    // read from the months, the days at its ends and the hours at theirs counts.
    let g = gate("G1");
    let start = ts("2025-11-10T03:17:00Z");
    let mut bodies = Vec::new();
    for i in 0..1_700i64 {
        let txn = Uuid::now_v7();
        let d = [
            LaneDecision::Fast,
            LaneDecision::Inspect,
            LaneDecision::Standard,
        ][(i % 3) as usize];
        let status = if i % 4 == 0 { Suspended } else { Active };
        let op = if i % 5 == 0 { US_OP } else { EU_OP };
        let at = start + SignedDuration::from_mins(97 * i);
        bodies.push(party_decision(&g, txn, d, at, &[(op, Some(status))]));
        if i % 3 != 2 {
            bodies.push(timed_transaction(&g, txn, 40 + (i * 37) % 1_500));
        }
    }
    let entries = chain(&g, bodies);
    for part in entries.chunks(500) {
        ingest(s, part);
    }
    let events = stored_events(s, query());
    // Every range read with the batches queued for the roll-ups (PostgreSQL), then again
    // once they are folded.
    for pass in ["queued", "folded"] {
        if pass == "folded" {
            // Bounded: each fold takes up to 5 of the finite queue.
            for _ in 0..100_000 {
                if s.fold_rollups(5).expect("fold") == 0 {
                    break;
                }
            }
        }
        for (from, to) in [
            // Starting mid-month, ending mid-day.
            ("2025-11-17T05:00:00Z", "2026-02-14T13:00:00Z"),
            // Across the year's end, within two months.
            ("2025-12-20T07:00:00Z", "2026-01-10T19:00:00Z"),
            // Whole months exactly.
            ("2025-12-01T00:00:00Z", "2026-02-01T00:00:00Z"),
            // A month and an hour, a day short of a month.
            ("2026-01-01T00:00:00Z", "2026-02-01T01:00:00Z"),
            ("2026-01-02T00:00:00Z", "2026-02-01T00:00:00Z"),
            // Within one day, and from the first hour on.
            ("2026-01-31T22:00:00Z", "2026-02-01T02:00:00Z"),
            ("2025-11-10T03:00:00Z", "2026-03-10T00:00:00Z"),
        ] {
            let (from, to) = (ts(from), ts(to));
            let got = programme::from_counts(&s.programme_counts(Some(from), to).expect("counts"));
            let want = programme::benefits(&decided_between(&events, from, to));
            assert!(want.aeo.transactions > 0, "{from} – {to}");
            assert_eq!(got, want, "{pass}: {from} – {to}");
        }
        // Mid-hour ends count their whole hours.
        let got = s
            .programme_counts(Some(ts("2025-12-20T07:40:00Z")), ts("2026-01-10T18:10:00Z"))
            .expect("counts");
        let want = decided_between(
            &events,
            ts("2025-12-20T07:00:00Z"),
            ts("2026-01-10T19:00:00Z"),
        );
        assert_eq!(
            programme::from_counts(&got),
            programme::benefits(&want),
            "{pass}"
        );
    }
}

// -- roll-ups of a store made before them -----------------------------------------------

/// Gate transactions with their decisions (`pairs` of them, AEO and not, every 7th
/// one's transaction missing), then halves whose other half comes in the last two
/// entries, so pairing has to cross from the built roll-ups to a later ingest.
fn traffic_across_a_rebuild(g: &GateId, pairs: usize) -> Vec<JournalEntry> {
    use AeoStatus::Active;
    let start = ts("2026-03-01T00:00:00Z");
    let mut bodies = Vec::with_capacity(2 * pairs + 8);
    for i in 0..pairs {
        let txn = Uuid::now_v7();
        let at = start + SignedDuration::from_secs(i as i64 * 7);
        let (d, parties): (_, &[_]) = match i % 3 {
            0 => (LaneDecision::Fast, &[(EU_OP, Some(Active))]),
            1 => (LaneDecision::Inspect, &[(US_OP, None)]),
            _ => (LaneDecision::Standard, &[]),
        };
        bodies.push(party_decision(g, txn, d, at, parties));
        if i % 7 != 0 {
            bodies.push(timed_transaction(g, txn, (i % 900) as i64));
        }
    }
    let (t1, t2) = (Uuid::now_v7(), Uuid::now_v7());
    let h = ts("2026-03-02T10:00:00Z");
    bodies.push(timed_transaction(g, t1, 300));
    bodies.push(party_decision(
        g,
        t2,
        LaneDecision::Standard,
        h,
        &[(US_OP, Some(AeoStatus::Suspended))],
    ));
    // -- after the roll-ups are built --
    bodies.push(party_decision(
        g,
        t1,
        LaneDecision::Inspect,
        h,
        &[(EU_OP, Some(Active))],
    ));
    bodies.push(timed_transaction(g, t2, 900));
    chain(g, bodies)
}

/// Ingests all but the last two entries of each gate's traffic (in batches of 500).
fn ingest_before_rebuild(s: &dyn Store, traffic: &[Vec<JournalEntry>]) {
    for entries in traffic {
        for part in entries[..entries.len() - 2].chunks(500) {
            ingest(s, part);
        }
    }
}

/// Ingests the last two entries of each gate's traffic; the roll-ups then equal the
/// direct computation over the stored events.
fn roll_ups_after_rebuild_equal_the_direct_figures(s: &dyn Store, traffic: &[Vec<JournalEntry>]) {
    for entries in traffic {
        ingest(s, &entries[entries.len() - 2..]);
    }
    let direct = programme::benefits(&stored_events(s, query()));
    assert!(direct.aeo.transactions > 0 && direct.non_aeo.transactions > 0);
    assert_eq!(figures(s, None), direct);
}

/// Ingests traffic into a store opened by `open`, takes it back to before the roll-ups
/// with `back_to_before`, then opens it again: the roll-ups are built (`name` labels the
/// time it took) and equal the direct figures, and a third open does not build them again.
fn roll_ups_are_built_once_on_open<S: Store>(
    name: &str,
    open: impl Fn() -> S,
    back_to_before: impl FnOnce(),
) {
    let traffic = [
        traffic_across_a_rebuild(&gate("G1"), 5_000),
        traffic_across_a_rebuild(&gate("G2"), 10),
    ];
    let events: usize = traffic.iter().map(Vec::len).sum::<usize>() - 4;
    ingest_before_rebuild(&open(), &traffic);
    back_to_before();
    let started = std::time::Instant::now();
    let s = open();
    eprintln!(
        "{name}: roll-ups built from {events} events in {:?}",
        started.elapsed()
    );
    roll_ups_after_rebuild_equal_the_direct_figures(&s, &traffic);
    drop(s);
    // Opened again: built once, not again (the counts would double).
    let s = open();
    assert_eq!(
        figures(&s, None),
        programme::benefits(&stored_events(&s, query()))
    );
}

/// [`roll_ups_are_built_once_on_open`] on a redb store that `back_to_before` takes back
/// to an earlier layout, in one write transaction on the store's file and one on its
/// index file (which holds the roll-ups now).
fn redb_roll_ups_are_built_once_on_open(
    name: &str,
    back_to_before: impl FnOnce(&redb::WriteTransaction, &redb::WriteTransaction),
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.redb");
    roll_ups_are_built_once_on_open(
        name,
        || RedbStore::open(&path).expect("open"),
        || rewrite_redb(&path, back_to_before),
    );
}

/// [`roll_ups_are_built_once_on_open`] on a PostgreSQL schema that `sql` takes back to
/// an earlier version (`back_to`, what a failure says).
fn postgres_roll_ups_are_built_once_on_open(name: &str, sql: &str, back_to: &str) {
    let (_cluster, url) = common::pg::PgCluster::with_central();
    roll_ups_are_built_once_on_open(
        name,
        || PgStore::open(&url).expect("open"),
        || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
            c.batch_execute(sql).expect(back_to);
        },
    );
}

/// Runs `f` in one write transaction on the store's file and one on its index file.
fn rewrite_redb(
    path: &std::path::Path,
    f: impl FnOnce(&redb::WriteTransaction, &redb::WriteTransaction),
) {
    let db = redb::Database::open(path).expect("raw open");
    let index = redb::Database::open(central::store::redb_index_path(path)).expect("index file");
    let (tx, itx) = (
        db.begin_write().expect("write"),
        index.begin_write().expect("write"),
    );
    f(&tx, &itx);
    tx.commit().expect("commit");
    itx.commit().expect("commit");
}

type HourlyCounts = redb::TableDefinition<'static, (i64, &'static str, &'static str), u64>;
const REDB_HOURLY: HourlyCounts = redb::TableDefinition::new("programme_v1");
const REDB_PACKED: redb::TableDefinition<'static, (u8, i64, &'static str), &'static [u8]> =
    redb::TableDefinition::new("programme_packed_v1");
const REDB_NAMES: redb::TableDefinition<'static, &'static str, &'static str> =
    redb::TableDefinition::new("programme_names_v1");
const REDB_PENDING: redb::TableDefinition<'static, (&'static str, u128), &'static [u8]> =
    redb::TableDefinition::new("programme_pending_v1");

/// Moves one table's rows from `from` to `to` and deletes it from `from`.
fn move_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    from: &redb::WriteTransaction,
    to: &redb::WriteTransaction,
    def: redb::TableDefinition<K, V>,
) -> usize
where
    for<'a> K::SelfType<'a>: std::borrow::Borrow<K::SelfType<'a>>,
    for<'a> V::SelfType<'a>: std::borrow::Borrow<V::SelfType<'a>>,
{
    use redb::ReadableTable;
    let mut n = 0;
    {
        let src = from.open_table(def).expect("source table");
        let mut dst = to.open_table(def).expect("target table");
        for row in src.iter().expect("rows") {
            let (k, v) = row.expect("row");
            dst.insert(k.value(), v.value()).expect("insert");
            n += 1;
        }
    }
    assert!(from.delete_table(def).expect("delete"));
    n
}

/// The layout from before the index file held the roll-ups: their tables in the store's
/// own file (`packed`: with the packed levels, which came later).
fn roll_ups_back_into_the_store(
    store: &redb::WriteTransaction,
    index: &redb::WriteTransaction,
    packed: bool,
) {
    assert!(move_table(index, store, REDB_HOURLY) > 0);
    move_table(index, store, REDB_NAMES);
    move_table(index, store, REDB_PENDING);
    if packed {
        assert!(move_table(index, store, REDB_PACKED) > 0);
    } else {
        assert!(index.delete_table(REDB_PACKED).expect("delete"));
    }
}

fn table_names(db: &redb::Database) -> Vec<String> {
    use redb::ReadableDatabase;
    let r = db.begin_read().expect("read");
    r.list_tables()
        .expect("tables")
        .map(|t| redb::TableHandle::name(&t).to_owned())
        .collect()
}

#[test]
fn a_redb_store_from_before_the_roll_ups_gets_them_built_on_open() {
    // The store as central kept it before the roll-ups: no programme tables.
    redb_roll_ups_are_built_once_on_open("redb", |store, index| {
        for tx in [store, index] {
            let tables: Vec<_> = tx
                .list_tables()
                .expect("tables")
                .filter(|t| redb::TableHandle::name(t).starts_with("programme"))
                .collect();
            for t in tables {
                tx.delete_table(t).expect("delete");
            }
        }
    });
}

#[test]
fn a_redb_store_that_kept_its_roll_ups_in_its_own_file_has_them_moved_to_the_index_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.redb");
    let traffic = [
        traffic_across_a_rebuild(&gate("G1"), 2_000),
        traffic_across_a_rebuild(&gate("G2"), 10),
    ];
    let before = {
        let s = RedbStore::open(&path).expect("open");
        ingest_before_rebuild(&s, &traffic);
        figures(&s, None)
    };
    rewrite_redb(&path, |store, index| {
        roll_ups_back_into_the_store(store, index, true)
    });
    // The first open moves them; ingest goes on from them.
    let s = RedbStore::open(&path).expect("open");
    assert_eq!(figures(&s, None), before);
    roll_ups_after_rebuild_equal_the_direct_figures(&s, &traffic);
    drop(s);
    // The second finds them moved (not doubled).
    let s = RedbStore::open(&path).expect("open");
    assert_eq!(
        figures(&s, None),
        programme::benefits(&stored_events(&s, query()))
    );
    drop(s);
    let store = table_names(&redb::Database::open(&path).expect("store"));
    assert!(
        !store.iter().any(|n| n.starts_with("programme")),
        "{store:?}"
    );
    let index =
        table_names(&redb::Database::open(central::store::redb_index_path(&path)).expect("index"));
    for t in [
        "programme_v1",
        "programme_packed_v1",
        "programme_names_v1",
        "programme_pending_v1",
    ] {
        assert!(index.iter().any(|n| n == t), "{t} in {index:?}");
    }
}

#[test]
fn a_redb_store_that_kept_daily_counts_drops_them_and_exports_its_hourly_rows() {
    use redb::ReadableTable;
    const DAILY: HourlyCounts = redb::TableDefinition::new("programme_daily_v1");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.redb");
    let traffic = [
        traffic_across_a_rebuild(&gate("G1"), 2_000),
        traffic_across_a_rebuild(&gate("G2"), 10),
    ];
    ingest_before_rebuild(&RedbStore::open(&path).expect("open"), &traffic);
    // The store as central kept it before: the roll-ups in the store's own file, the
    // daily counts beside the hourly ones, each day's count the sum of its hours'.
    let mut daily: std::collections::BTreeMap<(i64, String, String), u64> = Default::default();
    let mut hours: std::collections::BTreeMap<(i64, String, String), u64> = Default::default();
    rewrite_redb(&path, |tx, index| {
        roll_ups_back_into_the_store(tx, index, true);
        let hourly = tx.open_table(REDB_HOURLY).expect("hourly");
        for row in hourly.iter().expect("rows") {
            let (k, v) = row.expect("row");
            let (hour, group, figure) = k.value();
            hours.insert((hour, group.to_owned(), figure.to_owned()), v.value());
            let day = hour - hour.rem_euclid(86_400);
            *daily
                .entry((day, group.to_owned(), figure.to_owned()))
                .or_default() += v.value();
        }
        let mut t = tx.open_table(DAILY).expect("daily");
        for ((day, group, figure), n) in &daily {
            t.insert((*day, group.as_str(), figure.as_str()), *n)
                .expect("insert");
        }
    });
    assert!(daily.len() > 3, "{daily:?}");
    let s = RedbStore::open(&path).expect("reopen");
    let mut exported = std::collections::BTreeMap::new();
    s.export(&mut |r| {
        if let central::store::copy::Record::Programme {
            start,
            group,
            figure,
            n,
        } = r
        {
            exported.insert((start, group, figure), n);
        }
        Ok(())
    })
    .expect("export");
    // The hourly counts only: the target builds its days and months from them.
    assert_eq!(exported, hours, "a copy carries the hourly counts");
    roll_ups_after_rebuild_equal_the_direct_figures(&s, &traffic);
    drop(s);
    let store = table_names(&redb::Database::open(&path).expect("store"));
    assert!(
        !store.iter().any(|n| n.starts_with("programme")),
        "{store:?}"
    );
    let index =
        table_names(&redb::Database::open(central::store::redb_index_path(&path)).expect("index"));
    assert!(index.iter().any(|n| n == "programme_v1"), "{index:?}");
}

#[test]
fn a_postgres_schema_from_before_the_roll_ups_gets_them_built_by_the_migration() {
    // The schema at version 3, as central kept it before the roll-ups.
    postgres_roll_ups_are_built_once_on_open(
        "PostgreSQL",
        "DROP TABLE programme_hourly, programme_names, programme_pending, programme_packed;
         DELETE FROM schema_migrations WHERE version IN (4, 6, 9);",
        "back to version 3",
    );
}

#[test]
fn a_redb_store_from_before_the_packed_roll_ups_gets_them_built_from_the_hourly_ones() {
    // The store as central kept it before the packed levels: the hourly counts, names and
    // pending halves in the store's own file.
    redb_roll_ups_are_built_once_on_open("redb, packed", |store, index| {
        roll_ups_back_into_the_store(store, index, false);
    });
}

#[test]
fn a_postgres_schema_from_before_the_packed_roll_ups_gets_them_built_by_the_migration() {
    // The schema at version 5, as central kept it before the packed levels.
    postgres_roll_ups_are_built_once_on_open(
        "PostgreSQL, packed",
        "DROP TABLE programme_packed;
         DELETE FROM schema_migrations WHERE version = 6;",
        "back to version 5",
    );
}

#[test]
fn concurrent_batches_count_exactly_and_a_later_batch_folds_a_periods_shards_into_one_row() {
    use AeoStatus::{Active, Suspended};
    let (_cluster, url) = common::pg::PgCluster::with_central();
    let store = PgStore::open(&url).expect("open");
    let start = ts("2026-03-01T00:00:00Z");
    // Every gate's decisions cover the same days and groups, so concurrent batches (on
    // connections of different shards) write the same packed rows.
    let traffic = |g: &GateId, n: i64, step_s: i64| {
        let mut bodies = Vec::new();
        for i in 0..n {
            let txn = Uuid::now_v7();
            let d = [LaneDecision::Fast, LaneDecision::Inspect][(i % 2) as usize];
            let status = if i % 3 == 0 { Suspended } else { Active };
            let op = if i % 4 == 0 { US_OP } else { EU_OP };
            let at = start + SignedDuration::from_secs(i * step_s);
            bodies.push(party_decision(g, txn, d, at, &[(op, Some(status))]));
            bodies.push(timed_transaction(g, txn, 30 + i % 600));
        }
        chain(g, bodies)
    };
    let gates: Vec<GateId> = ["G1", "G2", "G3", "G4"].into_iter().map(gate).collect();
    // Four gates ingest while two folders fold the queued batches into the roll-ups as
    // they come (one at a time: the other waits for the fold to be free).
    let ingesting = std::sync::atomic::AtomicUsize::new(gates.len());
    let folded = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|sc| {
        for g in &gates {
            let entries = traffic(g, 600, 431);
            let (store, ingesting) = (&store, &ingesting);
            sc.spawn(move || {
                for part in entries.chunks(40) {
                    ingest(store, part);
                }
                ingesting.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
        for _ in 0..2 {
            let (store, ingesting, folded) = (&store, &ingesting, &folded);
            sc.spawn(move || {
                // Bounded: 60 batches a gate, and a pause while nothing waits.
                for _ in 0..10_000 {
                    let n = store.fold_rollups(7).expect("fold");
                    folded.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
                    if ingesting.load(std::sync::atomic::Ordering::SeqCst) == 0 && n == 0 {
                        break;
                    }
                    if n == 0 {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                }
            });
        }
    });
    let direct = programme::benefits(&stored_events(&store, query()));
    assert_eq!(direct.aeo.transactions + direct.non_aeo.transactions, 2_400);
    assert_eq!(figures(&store, None), direct);
    assert_eq!(
        store.fold_rollups(50).expect("fold"),
        0,
        "the folders left nothing"
    );
    let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    let queued: i64 = c
        .query_one("SELECT count(*) FROM programme_queue", &[])
        .expect("queue")
        .get(0);
    assert_eq!(queued, 0, "every queued batch folded");
    assert_eq!(store.queued_rollups().expect("queued"), 0);
    assert!(
        folded.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "the folders folded batches while the gates ingested"
    );
    assert_eq!(
        figures(&store, None),
        direct,
        "the same figures once folded"
    );
    // One more batch, alone, with every group in the month, queued and folded on its
    // own: the month's rows of other shards are folded into its shard's, one row per
    // (month, group) is left, and the figures stay exact, queued and folded.
    let last = traffic(&gate("G5"), 12, 86_400);
    ingest(&store, &last);
    let direct = programme::benefits(&stored_events(&store, query()));
    let read = || {
        programme::from_counts(
            &store
                .programme_counts(None, ts("2100-01-01T00:00:00Z"))
                .expect("counts"),
        )
    };
    assert_eq!(read(), direct, "counted while queued");
    assert_eq!(
        store.queued_rollups().expect("queued"),
        1,
        "one batch waits"
    );
    assert_eq!(store.fold_rollups(50).expect("fold"), 1);
    assert_eq!(store.queued_rollups().expect("queued"), 0);
    assert_eq!(read(), direct, "counted once folded");
    let row = c
        .query_one(
            "SELECT count(*), count(DISTINCT (start, grp)) FROM programme_packed WHERE level = 2",
            &[],
        )
        .expect("count");
    let (rows, keys): (i64, i64) = (row.get(0), row.get(1));
    assert!(keys >= 6, "{keys} (month, group) keys");
    assert_eq!(rows, keys, "one row per (month, group)");
}
