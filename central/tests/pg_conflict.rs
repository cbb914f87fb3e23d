//! A PostgreSQL transaction aborted as a deadlock victim is run again by the store, so the
//! operation succeeds instead of failing (a cluster of the test's own, common/pg.rs).

mod common;

use std::time::Duration;

use central::store::{AuditNote, Delivery, PgStore, Store};
use common::ts;

#[test]
fn an_operation_chosen_as_deadlock_victim_is_run_again_and_succeeds() {
    let (_cluster, url) = common::pg::PgCluster::with_central();
    let store = PgStore::open(&url).expect("store");
    store
        .audit(AuditNote::new(
            "test",
            "first",
            "",
            ts("2026-03-01T10:00:00Z"),
        ))
        .expect("first audit entry");

    // Another session takes the audit id the store will use next (uncommitted), and
    // detects deadlocks only after 10 s: the store's session (1 s, the default) detects
    // the cycle first and is the one PostgreSQL aborts.
    let mut other = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    other
        .batch_execute(
            "SET deadlock_timeout = '10s'; BEGIN; INSERT INTO audit (id, value) VALUES (2, '{}')",
        )
        .expect("hold audit id 2");
    let s = std::sync::Arc::new(store);
    let writer = {
        let s = s.clone();
        std::thread::spawn(move || {
            s.audit(AuditNote::new(
                "test",
                "second",
                "",
                ts("2026-03-01T10:01:00Z"),
            ))
        })
    };
    // The store now holds the audit counter's row and waits for id 2; wanting the counter
    // row closes the cycle.
    std::thread::sleep(Duration::from_millis(300));
    other
        .batch_execute("UPDATE meta SET n = n WHERE name = 'audit_id'")
        .expect("the other session is not the victim");
    other.batch_execute("ROLLBACK").expect("rollback");
    let result = writer.join().expect("writer thread");
    assert!(
        result.is_ok(),
        "the deadlock victim was run again: {result:?}"
    );
    let log = s.audit_log(0, 10).expect("audit log");
    let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, vec!["first", "second"]);
    assert_eq!(log[1].id, 2);
    drop(s);
}

/// A gate transaction's containers are copied as new rows (those stored before are read
/// first). When another transaction commits the same (transaction, container) row
/// between that read and the copy, the copy's unique violation makes the ingest a
/// conflict: it is run again whole, reads the row as stored, and succeeds.
#[test]
fn containers_stored_by_another_transaction_after_the_read_make_the_ingest_run_again() {
    let (_cluster, url) = common::pg::PgCluster::with_central();
    let store = std::sync::Arc::new(PgStore::open(&url).expect("store"));
    let g = common::gate("G1");
    let txn = uuid::Uuid::now_v7();
    let entries = common::chain(
        &g,
        vec![
            common::transaction(&g, uuid::Uuid::now_v7(), "MSKU9070323"),
            common::transaction(&g, txn, "CSQU3054383"),
            common::seal_exception(&g, txn),
        ],
    );
    let now = ts("2026-03-01T12:00:00Z");
    let gap_alert = jiff::SignedDuration::from_hours(24);
    // The gate's first batch (its row, the month's partition).
    store
        .ingest(Delivery::new(&g, &entries[..1], now, gap_alert))
        .expect("first batch");

    // Another session stores the row and keeps it uncommitted: the ingest reads no such
    // row, and its copy waits on the key until the other session ends.
    let mut other = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    other
        .batch_execute(&format!(
            "BEGIN; INSERT INTO txn_containers (txn, container) VALUES ('{txn}', 'CSQU3054383')"
        ))
        .expect("hold the row");
    let ingest = {
        let s = store.clone();
        let (g, entries) = (g.clone(), entries.clone());
        std::thread::spawn(move || s.ingest(Delivery::new(&g, &entries[1..], now, gap_alert)))
    };
    // Bounded: 20 s for the ingest's copy to wait on the other session's row.
    let mut waited = false;
    for _ in 0..200 {
        let n: i64 = other
            .query_one(
                // Waiting on this session's transaction: only the copy of the row's key
                // does (what `pg_stat_activity` names as its statement lags a copy).
                "SELECT count(*) FROM pg_locks
                 WHERE locktype = 'transactionid' AND NOT granted
                   AND transactionid::text = pg_current_xact_id()::text",
                &[],
            )
            .expect("activity")
            .get(0);
        if n > 0 {
            waited = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        waited,
        "the ingest's copy never waited on the other session's row"
    );
    other.batch_execute("COMMIT").expect("commit");

    let outcome = ingest.join().expect("ingest thread");
    let outcome = outcome.expect("the conflicting ingest was run again and succeeded");
    assert_eq!((outcome.acked_through, outcome.tally.stored), (3, 2));
    // Counted by the run that was stored, once (`central_decisions_total` is counted from
    // this after the store returns).
    assert_eq!(
        outcome.tally.decisions,
        std::collections::BTreeMap::from([("INSPECT", 1)])
    );
    assert_eq!(
        store
            .transaction_events(&g, &txn)
            .expect("transaction events")
            .len(),
        2
    );
    let rows: i64 = other
        .query_one(
            "SELECT count(*) FROM txn_containers WHERE txn = $1",
            &[&txn],
        )
        .expect("count")
        .get(0);
    assert_eq!(rows, 1, "the row is stored once");
}
