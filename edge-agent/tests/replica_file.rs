//! The replica in its own redb file beside the store file: it survives a restart with its
//! own cache bound, a failed batch leaves it as it was across a restart, a replica left in
//! the store file by an earlier release is dropped and loads again, and a replica file
//! redb cannot open is made again empty without touching the journal.

mod support;

use edge_agent::decider::{ReplicaView, decide};
use edge_agent::store::{CacheSizes, ReplicaError, Store, replica_path};
use protocol::schema::{AeoStatus, Change, EventBody, LaneDecision};
use redb::{ReadableDatabase, TableHandle};
use support::*;

/// One MiB caches: the smallest the configuration allows.
const SMALL: CacheSizes = CacheSizes {
    journal: 1 << 20,
    replica: 1 << 20,
};

fn tables(db: &redb::Database) -> Vec<String> {
    let r = db.begin_read().expect("read");
    let mut names: Vec<String> = r
        .list_tables()
        .expect("tables")
        .map(|t| t.name().to_string())
        .collect();
    names.extend(
        r.list_multimap_tables()
            .expect("multimap tables")
            .map(|t| redb::MultimapTableHandle::name(&t).to_string()),
    );
    names
}

fn store_tables(s: &Store) -> Vec<String> {
    let r = s.database().begin_read().expect("read");
    r.list_tables()
        .expect("tables")
        .map(|t| t.name().to_string())
        .chain(
            r.list_multimap_tables()
                .expect("multimap tables")
                .map(|t| redb::MultimapTableHandle::name(&t).to_string()),
        )
        .collect()
}

fn health() -> EventBody {
    EventBody::DeviceHealth {
        health: protocol::schema::DeviceHealth {
            device: "dev".into(),
            lane: None,
            up: true,
            detail: "x".into(),
            since: now(),
        },
    }
}

/// A store at `path` with a small cache, its replica loaded from a snapshot at seq 3.
fn loaded(path: &std::path::Path) -> Store {
    let s = Store::open_with_cache(path, gate(), SMALL).expect("open");
    s.apply_batch(&snapshot_at(ago(60), 3, replica_changes()))
        .expect("snapshot");
    s
}

#[test]
fn the_replica_lives_in_its_own_file_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.redb");
    {
        let s = loaded(&path);
        s.append(vec![health()], now()).expect("append");
    }
    assert_eq!(replica_path(&path), dir.path().join("agent.replica.redb"));
    assert!(replica_path(&path).exists());

    let s = Store::open_with_cache(&path, gate(), SMALL).expect("reopen");
    assert!(
        !store_tables(&s).iter().any(|t| t.starts_with("replica_")),
        "replica tables in the store file: {:?}",
        store_tables(&s)
    );
    assert_eq!(s.journal_head(), 1);
    let view = s.replica_view().expect("view");
    assert_eq!(view.sequence(), 3);
    assert_eq!(view.freshness_meta().port.as_deref(), Some("PORT-A"));
    let d = decide(&good_tx(), &view, &policy(), &routes(), now());
    assert_eq!(d.decision, LaneDecision::Fast, "{:?}", d.reasons);
}

#[test]
fn a_failed_batch_leaves_the_replica_file_as_it_was_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.redb");
    {
        let s = loaded(&path);
        let mut bad = snapshot_at(
            ago(30),
            5,
            vec![
                Change::RemoveConsignment { id: "K1".into() },
                Change::SetStatus {
                    operator: op("EU-AEO:FR12345678901"),
                    status: AeoStatus::Revoked,
                    reason: "x".into(),
                    actor: "y".into(),
                    at: ago(1),
                },
            ],
        );
        bad.snapshot = false;
        bad.after_seq = 3;
        for (c, seq) in bad.changes.iter_mut().zip(4..) {
            c.seq = seq;
        }
        assert!(matches!(
            s.apply_batch(&bad),
            Err(ReplicaError::UnknownOperator { seq: 5, .. })
        ));
    }
    let s = Store::open_with_cache(&path, gate(), SMALL).expect("reopen");
    let view = s.replica_view().expect("view");
    assert_eq!(view.sequence(), 3);
    assert!(
        view.consignment_for(&cn(CONTAINER)).is_some(),
        "the batch's first change was not kept"
    );
}

/// On the store's replica, left empty, the decider does not open the lane.
fn assert_empty_replica_is_not_fast(s: &Store) {
    let view = s.replica_view().expect("view");
    let d = decide(&good_tx(), &view, &policy(), &routes(), now());
    assert_ne!(
        d.decision,
        LaneDecision::Fast,
        "an empty replica decides FAST"
    );
}

#[test]
fn a_replica_left_in_the_store_file_is_dropped_keeping_its_port_and_loads_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.redb");
    // What the previous release left: the postcard replica tables and their indexes in
    // the store file, a replica at seq 7 bound to PORT-A.
    write_old_store(&path, |w| {
        old_table(w, "replica_operators_v2")
            .insert(IMPORTER, [1u8, 0].as_slice())
            .expect("insert");
        let mut idx: redb::MultimapTable<&str, &str> = w
            .open_multimap_table(redb::MultimapTableDefinition::new(
                "replica_by_container_v1",
            ))
            .expect("old index");
        idx.insert(CONTAINER, "K1").expect("insert");
    });
    let s = Store::open(&path, gate()).expect("open migrates");
    let meta = s.replica_meta();
    assert_eq!(meta.sequence, 0, "never loaded: replication bootstraps");
    assert_eq!(
        meta.port.as_deref(),
        Some("PORT-A"),
        "the port binding stays"
    );
    assert!(
        !store_tables(&s).iter().any(|t| t.starts_with("replica_")),
        "{:?}",
        store_tables(&s)
    );
    assert_empty_replica_is_not_fast(&s);
    assert!(matches!(
        s.bind_port("PORT-B"),
        Err(ReplicaError::WrongPort { .. })
    ));

    s.apply_batch(&snapshot_at(ago(60), 3, replica_changes()))
        .expect("snapshot");
    drop(s);
    let s = Store::open(&path, gate()).expect("reopen");
    let view = s.replica_view().expect("view");
    assert_eq!(view.sequence(), 3, "the reloaded replica is kept");
    assert!(view.operator(&op(IMPORTER)).is_some());
}

#[test]
fn a_replica_file_redb_cannot_open_is_made_again_empty_and_the_journal_stays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.redb");
    {
        let s = loaded(&path);
        s.append(vec![health(), health()], now()).expect("append");
    }
    std::fs::write(replica_path(&path), vec![0x5Au8; 64 * 1024]).expect("garble");

    let s = Store::open_with_cache(&path, gate(), SMALL).expect("opens anyway");
    assert_eq!(s.journal_head(), 2);
    assert_eq!(s.verify_chain().expect("chain"), 2);
    assert_eq!(s.replica_meta().sequence, 0);
    assert_empty_replica_is_not_fast(&s);
    s.apply_batch(&snapshot_at(ago(60), 3, replica_changes()))
        .expect("loads again");
    drop(s);
    let db = redb::Database::open(replica_path(&path)).expect("a valid redb file");
    assert!(tables(&db).iter().any(|t| t == "replica_operators_v2"));
}
