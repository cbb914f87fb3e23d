//! A chunked snapshot from central in process, applied by the agent's real path (verify
//! the manifest, check each chunk's hash, stage it in redb, swap), holds exactly what the
//! one-envelope snapshot holds, and still does after the registry moved on.

use std::time::Duration;

use aeogate::bench::data;
use central::{Central, Config};
use edge_agent::config::PinnedKey;
use edge_agent::decider::ReplicaView as _;
use edge_agent::replication::{
    check_batch, check_chunk, check_manifest, verify_envelope, verify_manifest,
};
use edge_agent::store::Store;
use protocol::schema::{AeoStatus, Change, ChangeBatch, GateId, SnapshotManifest};

const OPERATORS: u64 = 12_000;
const CONSIGNMENTS: u64 = 10_000;

fn central(dir: &std::path::Path) -> Central {
    let key = dir.join("central.key");
    central::generate_signing_key(&key).expect("key");
    let mut cfg = Config::new(
        "127.0.0.1:0".parse().expect("addr"),
        dir.join("central.redb"),
        key,
    );
    cfg.argon2_m_cost_kib = 1024;
    cfg.argon2_t_cost = 1;
    cfg.stale_after = Duration::from_secs(60);
    let c = Central::open(&cfg).expect("central opens");
    c.import_mras(vec![data::mra()], "test").expect("mra");
    let ops = (0..OPERATORS)
        .map(|i| data::operator(i).expect("operator"))
        .collect();
    c.import_records(ops, "test").expect("operators");
    let cons = (0..CONSIGNMENTS)
        .map(|j| data::consignment(j, OPERATORS).expect("consignment"))
        .collect();
    c.import_consignments(cons, "test").expect("consignments");
    c
}

fn keys(c: &Central) -> Vec<PinnedKey> {
    vec![PinnedKey {
        key_id: c.key_id(),
        public_key: c.public_key_hex(),
    }]
}

fn store(dir: &std::path::Path, name: &str) -> Store {
    Store::open(&dir.join(name), GateId::parse("G1").expect("gate")).expect("store")
}

/// Bootstraps `s` from the chunked snapshot `m` as replication does.
fn load_chunked(c: &Central, s: &Store, m: &SnapshotManifest) {
    check_manifest(m, 0, None, data::PORT, jiff::Timestamp::now()).expect("manifest fits");
    s.begin_staging(m).expect("staging begins");
    for k in 0..u32::try_from(m.chunks.len()).expect("chunks") {
        let bytes = c
            .snapshot_chunk(data::PORT, &m.id, k)
            .expect("chunk read")
            .expect("chunk kept");
        let changes = check_chunk(m, k, &bytes).expect("chunk matches its hash");
        s.stage_chunk(&m.id, k, &changes).expect("chunk staged");
    }
    s.finish_staging(&m.id).expect("swapped in");
}

/// Every record of `whole` reads the same from both stores.
fn same_content(whole: &ChangeBatch, a: &Store, b: &Store) {
    let (va, vb) = (a.replica_view().expect("a"), b.replica_view().expect("b"));
    assert_eq!(va.sequence(), vb.sequence());
    assert_eq!(va.mras(), vb.mras());
    assert!(!va.mras().is_empty());
    for sc in &whole.changes {
        match &sc.change {
            Change::UpsertOperator { record } => {
                let got = vb.operator(&record.operator);
                assert_eq!(got.as_ref(), Some(record), "operator {}", record.operator);
                assert_eq!(va.operator(&record.operator), got);
            }
            Change::UpsertConsignment { consignment } => {
                for d in &consignment.containers {
                    let got = vb.consignment_for(&d.number);
                    assert!(got.is_some(), "container {}", d.number);
                    assert_eq!(va.consignment_for(&d.number), got);
                }
            }
            _ => {}
        }
    }
}

#[test]
fn a_chunked_snapshot_holds_what_the_whole_snapshot_holds_while_the_registry_moves_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = central(dir.path());
    let keys = keys(&c);
    let whole = verify_envelope(&c.snapshot_envelope(data::PORT).expect("snapshot"), &keys)
        .expect("whole snapshot verifies");
    check_batch(&whole, 0, data::PORT, true).expect("whole snapshot fits");
    let m = verify_manifest(&c.snapshot_manifest(data::PORT).expect("manifest"), &keys)
        .expect("manifest verifies");
    assert_eq!(m.records, whole.changes.len() as u64);
    assert_eq!(m.last_seq, whole.last_seq);
    assert!(m.chunks.len() >= 3, "{} chunks", m.chunks.len());

    // The registry moves on after the manifest: its chunks still hold the state at
    // last_seq (and still match their hashes).
    let moved = data::operator(5).expect("operator").operator;
    c.set_status(&moved, AeoStatus::Revoked, "audit", "ana")
        .expect("status");

    let a = store(dir.path(), "whole.redb");
    a.apply_batch(&whole).expect("whole snapshot applies");
    let b = store(dir.path(), "chunked.redb");
    load_chunked(&c, &b, &m);
    same_content(&whole, &a, &b);
    assert_eq!(b.replica_meta().sequence, whole.last_seq);
    let held = b
        .replica_view()
        .expect("view")
        .operator(&moved)
        .expect("held");
    assert_ne!(
        held.status,
        AeoStatus::Revoked,
        "the state at the manifest's last_seq"
    );

    // A chunk asked for under another port, or of a manifest never made, is not served.
    assert_eq!(c.snapshot_chunk("PORT9", &m.id, 0).expect("read"), None);
    assert_eq!(
        c.snapshot_chunk(data::PORT, "00000000000000000000000000000000", 0)
            .expect("read"),
        None
    );
}
