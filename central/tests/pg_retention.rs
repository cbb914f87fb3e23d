//! Retention on PostgreSQL (`[store] retention_months`): whole monthly event partitions
//! older than the cutoff are dropped; newer months, the chain keys (a resent old entry is
//! still a duplicate), cases and figures stay. A cluster of the test's own (common/pg.rs).

// Inspects the PostgreSQL backend directly (what the store holds), as store tests do.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use central::config::{PgUrl, StoreConfig};
use central::model::EventQuery;
use central::store::{Delivery, PgStore, Store};
use common::*;
use jiff::{SignedDuration, Timestamp};
use protocol::schema::JournalEntry;
use uuid::Uuid;

/// A chain of decisions of gate `g`, one at each time.
fn dated(g: &protocol::schema::GateId, times: &[Timestamp]) -> Vec<JournalEntry> {
    common::chain_at(g, times.iter().map(|&at| (at, fast_decision(g))).collect())
}

fn months_of(s: &dyn Store) -> Vec<String> {
    let mut m: Vec<String> = s
        .events(&EventQuery {
            limit: 1_000,
            ..EventQuery::default()
        })
        .expect("events")
        .items
        .iter()
        .map(|e| e.entry.at.to_string()[..7].to_owned())
        .collect();
    m.dedup();
    m
}

/// A cluster of the test's own with central's database, the database's URL and a store
/// open on it.
fn pg_store() -> (common::pg::PgCluster, String, PgStore) {
    let (cluster, url) = common::pg::PgCluster::with_central();
    let s = PgStore::open(&url).expect("store");
    (cluster, url, s)
}

/// The row count PostgreSQL's statistics hold for `table` (`-1` until it is first
/// analysed or vacuumed).
fn counted_rows(db: &mut postgres::Client, table: &str) -> f32 {
    db.query_one(
        "SELECT reltuples FROM pg_class WHERE oid = to_regclass($1)",
        &[&table],
    )
    .expect("reltuples")
    .get(0)
}

#[test]
fn a_new_month_is_analysed_once_its_first_batch_is_stored() {
    let (_cluster, url, s) = pg_store();
    let mut db = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    let g = gate("P1-G1");
    // July 1st to 5th, one decision a day.
    let times: Vec<Timestamp> = (1..=5)
        .map(|day| ts(&format!("2024-07-{day:02}T08:00:00Z")))
        .collect();
    let entries = dated(&g, &times);
    let now = ts("2024-07-06T00:00:00Z");
    let deliver = |s: &PgStore, entries: &[JournalEntry]| {
        s.ingest(Delivery::new(
            &g,
            entries,
            now,
            SignedDuration::from_mins(5),
        ))
        .expect("ingest")
    };
    // The first batch creates July's partition; its statistics count the batch's rows
    // as soon as the batch is acknowledged.
    assert_eq!(deliver(&s, &entries[..3]).tally.stored, 3);
    assert_eq!(counted_rows(&mut db, "events_2024_07"), 3.0);
    // Later batches into the same month leave it to autovacuum, and so does a central
    // started again, which finds the month already there.
    assert_eq!(deliver(&s, &entries[3..4]).tally.stored, 1);
    drop(s);
    let again = PgStore::open(&url).expect("store again");
    assert_eq!(deliver(&again, &entries[4..]).tally.stored, 1);
    assert_eq!(counted_rows(&mut db, "events_2024_07"), 3.0);
    assert_eq!(months_of(&again), vec!["2024-07"]);
}

#[test]
fn months_before_the_cutoff_are_dropped_and_the_rest_stays() {
    let (_cluster, _, s) = pg_store();
    let g = gate("P1-G1");
    let entries = dated(
        &g,
        &[
            ts("2024-01-10T08:00:00Z"),
            ts("2024-02-29T23:59:59Z"),
            ts("2024-03-01T00:00:00Z"),
            ts("2024-06-15T12:00:00Z"),
        ],
    );
    let now = ts("2024-06-20T00:00:00Z");
    // Every delivery of this gate reaches central at `now`; a gap alerts after five minutes.
    let deliver = |entries: &[JournalEntry]| {
        s.ingest(Delivery::new(
            &g,
            entries,
            now,
            SignedDuration::from_mins(5),
        ))
    };
    let out = deliver(&entries).expect("ingest");
    assert_eq!(out.tally.stored, 4);
    let before = s.gates().expect("gates");
    let programme = s.programme_counts(None, Timestamp::MAX).expect("programme");
    let decided: u64 = programme
        .counts
        .iter()
        .filter(|((group, _), _)| group == "AEO" || group == "NON_AEO")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(decided, 4, "{programme:?}");

    // Keep the current month and two before it: January and February go.
    let dropped = s.apply_retention(3, now).expect("retention");
    assert_eq!(dropped, vec!["events_2024_01", "events_2024_02"]);
    assert_eq!(months_of(&s), vec!["2024-03", "2024-06"]);
    assert_eq!(
        s.programme_counts(None, Timestamp::MAX).expect("programme"),
        programme,
        "the programme roll-ups outlive the dropped months"
    );
    assert_eq!(
        s.gates().expect("gates"),
        before,
        "the chain head is unchanged"
    );
    // Again: nothing more to drop.
    assert!(s.apply_retention(3, now).expect("retention").is_empty());

    // The old entries resent are recognised, not stored again; the chain goes on.
    let out = deliver(&entries).expect("resend");
    assert_eq!((out.tally.stored, out.tally.duplicates), (0, 4));
    assert!(
        s.alerts(100).expect("alerts").is_empty(),
        "no alert on a resend"
    );
    let mut next = dated(&g, &[ts("2024-06-19T00:00:00Z")]);
    next[0] = JournalEntry::new_chained(
        g.clone(),
        5,
        Uuid::now_v7(),
        ts("2024-06-19T00:00:00Z"),
        entries[3].hash.clone(),
        fast_decision(&g),
    )
    .expect("entry");
    let out = deliver(&next).expect("next");
    assert_eq!((out.tally.stored, out.acked_through), (1, 5));
    assert!(
        s.alerts(100).expect("alerts").is_empty(),
        "the chain still links"
    );
    drop(s);
}

#[test]
fn central_applies_the_configured_retention_on_start() {
    let (_cluster, url) = common::pg::PgCluster::with_central();
    let g = gate("P1-G1");
    let now = Timestamp::now();
    let old = now
        .checked_sub(SignedDuration::from_hours(24 * 400))
        .expect("time");
    {
        let s = PgStore::open(&url).expect("store");
        s.ingest(Delivery::new(
            &g,
            &dated(&g, &[old, now]),
            now,
            SignedDuration::from_mins(5),
        ))
        .expect("ingest");
        assert_eq!(months_of(&s).len(), 2);
    }
    let e = env_with(|cfg| {
        cfg.store = Some(StoreConfig {
            url: PgUrl::parse(&url).expect("url"),
            retention_months: std::num::NonZeroU32::new(12),
            ca_cert: None,
        });
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let months = months_of(&**e.central.store());
        if months.len() == 1 {
            assert_eq!(months[0], now.to_string()[..7], "the current month stays");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the month 400 days back was not dropped: {months:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(e);
}

/// A month dropped while its container rows are not yet deleted (retention deletes them
/// in a transaction after the drop, and a crash between leaves them): a search by
/// container finds the events that are left, page by page.
#[test]
fn a_container_search_skips_rows_whose_month_is_gone() {
    let (_cluster, url, s) = pg_store();
    let g = gate("P1-G1");
    let times = [
        ts("2024-01-10T08:00:00Z"),
        ts("2024-01-20T08:00:00Z"),
        ts("2024-03-01T00:00:00Z"),
        ts("2024-03-02T00:00:00Z"),
        ts("2024-04-02T00:00:00Z"),
    ];
    let entries = common::chain_at(
        &g,
        times
            .iter()
            .map(|&at| (at, transaction(&g, Uuid::now_v7(), "CSQU3054383")))
            .collect(),
    );
    s.ingest(Delivery::new(
        &g,
        &entries,
        times[4],
        SignedDuration::from_mins(5),
    ))
    .expect("ingest");
    let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    c.batch_execute("DROP TABLE events_2024_01").expect("drop");
    let left: i64 = c
        .query_one("SELECT count(*) FROM event_containers", &[])
        .expect("count")
        .get(0);
    assert_eq!(left, 5, "the container rows of January stay");
    let query = |cursor, limit| EventQuery {
        container: Some("CSQU3054383".into()),
        cursor,
        limit,
        ..EventQuery::default()
    };
    let seqs = |events: &[central::model::StoredEvent]| -> Vec<u64> {
        events.iter().map(|e| e.entry.seq).collect()
    };
    for limit in [1, 2, 3, 100] {
        let first = s.events(&query(None, limit)).expect("first page");
        assert_eq!(
            seqs(&first.items),
            [3, 4, 5][..limit.min(3)],
            "first page of {limit}"
        );
        assert_eq!(
            first.next_cursor.is_some(),
            limit < 3,
            "first page of {limit}"
        );
        let all =
            central::model::Page::collect_all(1_000, |cursor| s.events(&query(cursor, limit)))
                .expect("events");
        assert_eq!(seqs(&all), vec![3, 4, 5], "pages of {limit}");
    }
    drop(s);
}

/// Events stored before migration 11 keep their record in the `json` column `value`;
/// those stored since carry it as text in `record`. Every read (a page by time, by
/// container, a transaction's entries) and the analysts' view `event_records` give the
/// same events from either form, and a row with neither or both is refused.
#[test]
fn events_stored_as_json_before_migration_11_read_like_those_stored_as_text() {
    let (_cluster, url, s) = pg_store();
    let g = gate("G1");
    let txn = Uuid::now_v7();
    let entries = common::chain(
        &g,
        vec![
            common::transaction(&g, txn, "CSQU3054383"),
            common::seal_exception(&g, txn),
            common::transaction(&g, Uuid::now_v7(), "MSKU9070323"),
        ],
    );
    let now = ts("2026-03-01T12:00:00Z");
    let gap = SignedDuration::from_hours(24);
    s.ingest(Delivery::new(&g, &entries[..2], now, gap))
        .expect("first batch");
    let reads = |s: &PgStore| {
        let page = s.events(&query_all()).expect("events");
        let by_container = s
            .events(&EventQuery {
                container: Some("CSQU3054383".into()),
                ..query_all()
            })
            .expect("events by container");
        let of_txn = s.transaction_events(&g, &txn).expect("transaction events");
        (page.items, by_container.items, of_txn)
    };
    let before = reads(&s);
    assert_eq!(before.0.len(), 2);
    assert_eq!(
        before.1.len(),
        2,
        "both entries name the container's transaction"
    );
    assert_eq!(before.2.len(), 2);

    // The first batch's rows as a store before migration 11 held them.
    let mut db = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    let moved = db
        .execute(
            "UPDATE events SET value = record::json, record = NULL WHERE record IS NOT NULL",
            &[],
        )
        .expect("rows in the old form");
    assert_eq!(moved, 2);
    assert_eq!(reads(&s), before, "the old form reads the same");

    // A batch after: one month holds both forms.
    s.ingest(Delivery::new(&g, &entries[2..], now, gap))
        .expect("second batch");
    let mixed: Vec<(i64, bool)> = db
        .query(
            "SELECT seq, record IS NOT NULL FROM events ORDER BY seq",
            &[],
        )
        .expect("forms")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(mixed, vec![(1, false), (2, false), (3, true)]);
    let page = s.events(&query_all()).expect("events").items;
    let seqs: Vec<u64> = page.iter().map(|e| e.entry.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(page[..2], before.0[..]);
    let viewed: Vec<String> = db
        .query(
            "SELECT value->'entry'->>'seq' FROM event_records ORDER BY seq",
            &[],
        )
        .expect("the analysts' view")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(viewed, vec!["1", "2", "3"]);

    for (what, sql) in [
        ("neither", "UPDATE events SET record = NULL WHERE seq = 3"),
        (
            "both",
            "UPDATE events SET record = value::text WHERE seq = 1",
        ),
    ] {
        let refused = db.execute(sql, &[]);
        assert!(
            refused.as_ref().is_err_and(|e| e
                .as_db_error()
                .is_some_and(|d| d.constraint() == Some("events_one_record"))),
            "a row with {what} form refused: {refused:?}"
        );
    }
}

fn query_all() -> EventQuery {
    EventQuery {
        limit: 100,
        ..EventQuery::default()
    }
}
