//! The replica's stored encoding on real redb files: every field of the replicated records
//! comes back as it went in, a replica of the older JSON format is dropped and re-bootstrapped,
//! and the in-memory replica finds consignments through its container index.

mod support;

use edge_agent::decider::{MemoryReplica, ReplicaView};
use edge_agent::store::Store;
use protocol::operator::Programme;
use protocol::schema::{
    AeoStatus, Authorisation, Change, ChangeBatch, DeclaredContainer, Hold, HoldKind, PartyRole,
    SCHEMA_VERSION, SequencedChange,
};
use protocol::seal::ESealId;
use support::*;

fn snapshot(last_seq: u64, changes: Vec<Change>) -> ChangeBatch {
    snapshot_at(now(), last_seq, changes)
}

#[test]
fn every_field_of_replicated_records_survives_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.redb");
    // One record with every optional field set, one with every optional field empty.
    let mut full = record(IMPORTER, vec![Authorisation::Aeof], AeoStatus::Active);
    full.valid_to = Some(ago(-86_400));
    full.roles = vec![PartyRole::Importer, PartyRole::Broker];
    full.linked_ids = vec![op(US_IMPORTER)];
    let mut bare = record(CARRIER, vec![], AeoStatus::Suspended);
    bare.contact_point = None;
    let mut k = consignment();
    k.containers.push(DeclaredContainer {
        number: cn(OTHER_CONTAINER),
        seals: vec![],
        eseals: vec![ESealId::parse("0042-0001e240").expect("e-seal id")],
    });
    k.holds = vec![Hold {
        kind: HoldKind::InspectionOrder,
        reference: "IO-7".into(),
        note: "scan at bay B".into(),
    }];
    let mut m = mra(Programme::UsCtpat, ago(86_400), true);
    m.in_force_to = Some(ago(-86_400 * 30));
    let batch = snapshot(
        4,
        vec![
            Change::UpsertOperator {
                record: full.clone(),
            },
            Change::UpsertOperator {
                record: bare.clone(),
            },
            Change::UpsertConsignment {
                consignment: k.clone(),
            },
            Change::UpsertMra { mra: m.clone() },
        ],
    );
    Store::open(&path, gate())
        .expect("open")
        .apply_batch(&batch)
        .expect("snapshot applies");

    let store = Store::open(&path, gate()).expect("reopen");
    let view = store.replica_view().expect("view");
    assert_eq!(view.operator(&op(IMPORTER)), Some(full.clone()));
    assert_eq!(
        view.operator(&op(US_IMPORTER)),
        Some(full),
        "found through its linked id"
    );
    assert_eq!(view.operator(&op(CARRIER)), Some(bare));
    assert_eq!(view.consignment_for(&cn(CONTAINER)), Some(k.clone()));
    assert_eq!(view.consignment_for(&cn(OTHER_CONTAINER)), Some(k));
    assert_eq!(view.mras(), vec![m]);
}

#[test]
fn a_replica_in_the_older_json_tables_is_dropped_and_loads_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.redb");
    // What an earlier release left: JSON values in `_v1` tables, a replica at seq 7.
    write_old_store(&path, |w| {
        let json = serde_json::to_vec(&record(IMPORTER, vec![], AeoStatus::Active)).expect("json");
        old_table(w, "replica_operators_v1")
            .insert(IMPORTER, json.as_slice())
            .expect("insert");
    });
    let store = Store::open(&path, gate()).expect("open migrates");
    let meta = store.replica_meta();
    assert_eq!(meta.sequence, 0, "never loaded: replication bootstraps");
    assert_eq!(meta.as_of, None);
    assert_eq!(
        meta.port.as_deref(),
        Some("PORT-A"),
        "the port binding stays"
    );
    let tables: Vec<String> = store
        .database()
        .begin_read()
        .expect("read")
        .list_tables()
        .expect("tables")
        .map(|t| redb::TableHandle::name(&t).to_string())
        .collect();
    assert!(
        !tables.iter().any(|t| t == "replica_operators_v1"),
        "old table still there: {tables:?}"
    );
    // And the replica loads again from a snapshot.
    store
        .apply_batch(&snapshot(
            9,
            vec![Change::UpsertOperator {
                record: record(IMPORTER, vec![], AeoStatus::Active),
            }],
        ))
        .expect("snapshot");
    let view = store.replica_view().expect("view");
    assert_eq!(view.sequence(), 9);
    assert!(view.operator(&op(IMPORTER)).is_some());
}

#[test]
fn memory_replica_finds_the_latest_consignment_of_a_container_and_forgets_removed_ones() {
    let mut r = MemoryReplica::new();
    let older = consignment();
    let mut newer = consignment();
    newer.id = "K2".into();
    newer.as_of = ago(60);
    r.insert_consignment(older.clone());
    r.insert_consignment(newer.clone());
    assert_eq!(r.consignment_for(&cn(CONTAINER)), Some(newer.clone()));

    // K2 is replaced by a version that no longer declares the container.
    let mut moved = newer;
    moved.containers[0].number = cn(OTHER_CONTAINER);
    r.insert_consignment(moved.clone());
    assert_eq!(r.consignment_for(&cn(CONTAINER)), Some(older));
    assert_eq!(r.consignment_for(&cn(OTHER_CONTAINER)), Some(moved));

    let batch = ChangeBatch {
        v: SCHEMA_VERSION,
        port: "PORT-A".into(),
        snapshot: false,
        after_seq: 0,
        last_seq: 1,
        as_of: now(),
        changes: vec![SequencedChange {
            seq: 1,
            change: Change::RemoveConsignment { id: "K1".into() },
        }],
    };
    r.apply(&batch).expect("delta applies");
    assert_eq!(r.consignment_for(&cn(CONTAINER)), None);
}
