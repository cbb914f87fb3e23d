//! The store's check at start on a real redb file whose journal entries were damaged
//! through redb itself (so redb's own checksums are fine and the journal's check must
//! find it): the damaged entry is quarantined with its raw bytes, a marker takes its seq,
//! and every other entry is still there to send.

mod support;

use edge_agent::store::{ALERT_ENTRY_QUARANTINED, Store};
use jiff::Timestamp;
use protocol::schema::EventBody;
use redb::{ReadableTable as _, TableDefinition};
use support::{gate, numbered_alert};

const JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("journal_v1");
const QUARANTINE: TableDefinition<u64, &[u8]> = TableDefinition::new("journal_quarantine_v1");

/// A store with `n` entries, closed; returns its path.
fn store_with(dir: &std::path::Path, n: u64) -> std::path::PathBuf {
    let path = dir.join("agent.redb");
    let store = Store::open(&path, gate()).expect("open");
    for i in 1..=n {
        store
            .append(vec![numbered_alert(i)], Timestamp::now())
            .expect("append");
    }
    path
}

/// Rewrites entry `seq` through redb with `f` applied to its stored bytes.
fn rewrite(path: &std::path::Path, seq: u64, f: impl FnOnce(Vec<u8>) -> Vec<u8>) {
    let db = redb::Database::open(path).expect("redb open");
    let w = db.begin_write().expect("write");
    {
        let mut t = w.open_table(JOURNAL).expect("journal");
        let old = t.get(seq).expect("get").expect("entry").value().to_vec();
        t.insert(seq, f(old).as_slice()).expect("insert");
    }
    w.commit().expect("commit");
}

fn is_marker(store: &Store, seq: u64) -> bool {
    matches!(
        store.entry(seq).expect("read").expect("stored").body,
        EventBody::IntegrityAlert { what, .. } if what == ALERT_ENTRY_QUARANTINED
    )
}

#[test]
fn an_unreadable_entry_is_quarantined_and_the_others_are_still_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = store_with(dir.path(), 6);
    rewrite(&path, 3, |_| b"{\"v\":1,\"agent\":\"G1\",garbled".to_vec());
    let store = Store::open(&path, gate()).expect("a damaged journal does not stop the start");
    assert!(is_marker(&store, 3));
    let unacked = store
        .unacked(100, false)
        .expect("the uplink can read every entry");
    assert_eq!(
        unacked.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6]
    );
    assert_eq!(store.verify_chain().expect("chain"), 6);
    let r = store.database().begin_read().expect("read");
    let q = r.open_table(QUARANTINE).expect("quarantine table");
    assert_eq!(
        q.get(3).expect("get").expect("kept").value(),
        b"{\"v\":1,\"agent\":\"G1\",garbled"
    );
    drop((q, r));
    let next = store
        .append(vec![numbered_alert(7)], Timestamp::now())
        .expect("append");
    assert_eq!(next[0].seq, 7);
    assert!(store.verify_chain().is_ok());
}

#[test]
fn a_changed_digit_in_the_head_entry_is_quarantined_and_the_chain_goes_on_from_the_marker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = store_with(dir.path(), 4);
    rewrite(&path, 4, |bytes| {
        let text = String::from_utf8(bytes).expect("json");
        text.replacen("entry 4", "entry 5", 1).into_bytes()
    });
    let store = Store::open(&path, gate()).expect("start");
    assert!(is_marker(&store, 4));
    let marker = store.entry(4).expect("read").expect("marker");
    let next = store
        .append(vec![numbered_alert(5)], Timestamp::now())
        .expect("append");
    assert_eq!(next[0].prev_hash, marker.hash);
    assert_eq!(store.verify_chain().expect("chain"), 5);
}

#[test]
fn an_acknowledged_entry_is_not_checked_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = store_with(dir.path(), 3);
    {
        let store = Store::open(&path, gate()).expect("open");
        store.set_acked(2).expect("ack");
    }
    rewrite(&path, 1, |_| b"garbled".to_vec());
    let store = Store::open(&path, gate()).expect("start");
    assert_eq!(
        store.unacked(10, false).expect("unacked")[0].seq,
        3,
        "only what central has not acknowledged is sent"
    );
}
