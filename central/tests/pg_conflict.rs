//! A PostgreSQL transaction aborted as a deadlock victim is run again by the store, so the
//! operation succeeds instead of failing (a cluster of the test's own, common/pg.rs).

mod common;

use std::time::Duration;

use central::store::{PgStore, Store};
use common::ts;

#[test]
fn an_operation_chosen_as_deadlock_victim_is_run_again_and_succeeds() {
    let cluster = common::pg::PgCluster::start();
    let url = cluster.create_database("central");
    let store = PgStore::open(&url).expect("store");
    store
        .audit("test", "first", "", ts("2026-03-01T10:00:00Z"))
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
        std::thread::spawn(move || s.audit("test", "second", "", ts("2026-03-01T10:01:00Z")))
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
