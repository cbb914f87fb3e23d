//! `central migrate --from <redb> --to postgres://…` on a store the demo filled (gates,
//! events with their chains, seal-exception cases, alerts, the registry log, users,
//! audit, agent tokens, portal companies and their documents): the real binaries, a PostgreSQL cluster of the test's own
//! (central/tests/common/pg.rs). The copy must verify, read back equal through the same
//! `Store` queries on both backends, and resume after stopping part-way.

mod common;
#[path = "../central/tests/common/pg.rs"]
#[allow(dead_code)]
mod pg;

use std::path::Path;
use std::process::Command;

use central::ingest::transaction_of;
use central::model::{CaseQuery, EventQuery, Page};
use central::store::copy::Record;
use central::store::{PgStore, RedbStore, Store};
use pg::PgCluster;

/// Runs the demo for a short while with its files kept in `dir`; returns central's store.
fn demo_store(dir: &Path) -> std::path::PathBuf {
    let out = Command::new(env!("CARGO_BIN_EXE_aeogate"))
        .args(["demo", "--duration", "25s", "--rate", "120"])
        .args(["--operators", "500", "--consignments", "120"])
        .args(["--outage", "4s", "--seed", "11"])
        .arg("--dir")
        .arg(dir)
        .env("AEOGATE_DEMO_AGENT_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the demo");
    assert!(
        out.status.success(),
        "the demo failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let store = dir.join("central.redb");
    assert!(store.exists(), "the demo left {}", store.display());
    store
}

/// `central migrate`; its exit status and output.
fn migrate(from: &Path, to: &str) -> (bool, String) {
    let mut migrate = Command::new(common::binary("central"));
    migrate
        .args(["migrate", "--from"])
        .arg(from)
        .args(["--to", to]);
    common::outcome(migrate.env("RUST_LOG", "warn"))
}

/// Every event, oldest first, through the query API.
fn all_events(s: &dyn Store) -> Vec<central::model::StoredEvent> {
    Page::collect_all(10_000, |cursor| {
        s.events(&EventQuery {
            cursor,
            limit: 1_000,
            ..EventQuery::default()
        })
    })
    .expect("events")
}

fn all_cases(s: &dyn Store) -> Vec<central::model::Case> {
    Page::collect_all(10_000, |cursor| {
        s.cases(&CaseQuery {
            cursor,
            limit: 500,
            ..CaseQuery::default()
        })
    })
    .expect("cases")
}

/// Reads the same things from both stores and asserts them equal.
fn assert_same(a: &dyn Store, b: &dyn Store) {
    let events = all_events(a);
    assert!(
        events.len() > 50,
        "the demo stored events: {}",
        events.len()
    );
    assert_eq!(events, all_events(b), "events (with received_at, chain_ok)");
    let cases = all_cases(a);
    assert!(!cases.is_empty(), "the demo opened cases");
    assert_eq!(cases, all_cases(b), "cases with their history");
    assert_eq!(
        a.alerts(10_000).expect("alerts"),
        b.alerts(10_000).expect("alerts")
    );
    assert_eq!(
        a.gates().expect("gates"),
        b.gates().expect("gates"),
        "chain heads"
    );
    assert_eq!(a.summary().expect("summary"), b.summary().expect("summary"));
    assert_eq!(a.users().expect("users"), b.users().expect("users"));
    let companies = a.companies().expect("companies");
    assert_eq!(companies, b.companies().expect("companies"));
    let documents: Vec<&str> = companies
        .iter()
        .flat_map(|c| c.documents.iter().map(|d| d.sha256.as_str()))
        .collect();
    assert!(
        !documents.is_empty(),
        "the demo's companies uploaded documents"
    );
    for hash in documents {
        let body = b
            .document(hash)
            .expect("read")
            .expect("the document was copied");
        assert_eq!(central::portal::documents::sha256_hex(&body), hash);
        assert_eq!(Some(body), a.document(hash).expect("read"));
    }
    assert!(
        !a.users().expect("users").is_empty(),
        "the demo added users"
    );
    assert_eq!(
        a.audit_log(0, 100_000).expect("audit"),
        b.audit_log(0, 100_000).expect("audit")
    );
    let seq = a.last_seq().expect("seq");
    assert!(seq > 0, "the demo imported a registry");
    assert_eq!(seq, b.last_seq().expect("seq"), "registry head");
    assert_eq!(
        a.changes_after(0, 100_000).expect("changes"),
        b.changes_after(0, 100_000).expect("changes")
    );
    let now = jiff::Timestamp::now();
    for g in a.gates().expect("gates") {
        let (sa, sb) = (
            a.snapshot(&g.port, now).expect("snapshot"),
            b.snapshot(&g.port, now).expect("snapshot"),
        );
        assert_eq!(sa, sb, "registry snapshot of port {}", g.port);
    }
    let (from, to) = (
        jiff::Timestamp::UNIX_EPOCH,
        now.checked_add(jiff::SignedDuration::from_hours(24))
            .expect("time"),
    );
    assert_eq!(
        a.hourly_stats(None, from, to).expect("hourly"),
        b.hourly_stats(None, from, to).expect("hourly")
    );
    let (pa, pb) = (
        a.programme_counts(None, jiff::Timestamp::MAX)
            .expect("programme"),
        b.programme_counts(None, jiff::Timestamp::MAX)
            .expect("programme"),
    );
    assert!(!pa.counts.is_empty(), "the demo's decisions are rolled up");
    assert_eq!(pa, pb, "programme roll-ups");
    let txns = events
        .iter()
        .filter_map(|e| Some((e.entry.agent.clone(), transaction_of(&e.entry.body)?)));
    for (gate, txn) in txns.take(50) {
        assert_eq!(
            a.transaction_events(&gate, &txn).expect("txn events"),
            b.transaction_events(&gate, &txn).expect("txn events"),
        );
    }
}

#[test]
fn a_demo_store_moves_to_postgresql_verified_equal_and_resumes_after_stopping_part_way() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = demo_store(&dir.path().join("demo"));
    let db = PgCluster::start();

    // One run: copied and verified.
    let url = db.create_database("central");
    let (ok, text) = migrate(&source, &url);
    assert!(ok, "central migrate failed:\n{text}");
    assert!(text.contains("verified"), "{text}");
    println!("{text}");
    {
        let a = RedbStore::open(&source).expect("source");
        let b = PgStore::open(&url).expect("target");
        assert_same(&a, &b);
    }
    // Again on the same database: nothing doubles, still verified.
    let (ok, text) = migrate(&source, &url);
    assert!(ok && text.contains("verified"), "second run:\n{text}");

    // A copy that stopped part-way (half the records written) is completed by running
    // the command again.
    let url2 = db.create_database("resumed");
    {
        let a = RedbStore::open(&source).expect("source");
        let b = PgStore::open(&url2).expect("target");
        let mut records: Vec<Record> = Vec::new();
        a.export(&mut |r| {
            records.push(r);
            Ok(())
        })
        .expect("export");
        let half = records.len() / 2;
        for chunk in records[..half].chunks(central::store::copy::CHUNK) {
            b.import(chunk).expect("import half");
        }
    }
    let (ok, text) = migrate(&source, &url2);
    assert!(ok && text.contains("verified"), "resumed run:\n{text}");
    {
        let a = RedbStore::open(&source).expect("source");
        let b = PgStore::open(&url2).expect("target");
        assert_same(&a, &b);
    }

    // A wrong source or target is a clear error, not a panic.
    let (ok, text) = migrate(&dir.path().join("missing.redb"), &url);
    assert!(!ok && text.contains("does not exist"), "{text}");
    let (ok, text) = migrate(&source, "mysql://x@127.0.0.1/y");
    assert!(!ok && text.contains("--to"), "{text}");
}
