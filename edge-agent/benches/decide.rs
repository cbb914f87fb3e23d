//! Micro-benchmark of the decider (issue 9, figure 1), with divan.
//!
//! A replica of n operators and n consignments (n from `AEOGATE_BENCH_N`, default
//! 100,000; the full scale is 1,000,000: `AEOGATE_BENCH_N=1000000 cargo bench -p
//! edge-agent --bench decide`) is generated deterministically and loaded three ways:
//!
//! - `redb_replica`: the real thing, a `Store` on a redb file loaded through
//!   `Store::apply_batch`; each iteration takes a replica snapshot (one read transaction)
//!   and decides, as the agent does per closed transaction;
//! - `hashmap_baseline`: the same `decide` over operators and consignments indexed in
//!   `HashMap`s (one hash look-up each): the baseline;
//! - `memory_replica`: the agent's `MemoryReplica`, whose consignment look-up scans
//!   every consignment (O(n)), shown so that nobody mistakes it for the baseline.
//!
//! The data generator is the one `aeogate bench` uses (`src/bench/data.rs` of the root
//! package), so both see the same records and transactions.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use edge_agent::config::Routes;
use edge_agent::decider::{MemoryReplica, Policy, decide};
use edge_agent::store::Store;
use protocol::schema::GateTransaction;

#[path = "../../src/bench/data.rs"]
#[allow(dead_code)]
mod data;

/// Transactions cycled through (distinct containers, so look-ups are not all cache hits).
const POOL: usize = 4_096;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    indexed: data::IndexedReplica,
    memory: MemoryReplica,
    txs: Vec<GateTransaction>,
    policy: Policy,
    routes: Routes,
}

fn n() -> u64 {
    std::env::var("AEOGATE_BENCH_N")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(100_000)
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let n = n();
        eprintln!("decide bench: generating and loading {n} operators and {n} consignments");
        let dir = tempfile::tempdir().expect("a temporary directory for the replica");
        let store = data::loaded_store(&dir.path().join("replica.redb"), n, n)
            .expect("generated data loads into the store");
        Fixture {
            _dir: dir,
            store,
            indexed: data::IndexedReplica::generate(n, n).expect("generated data is valid"),
            memory: data::memory_replica(n, n).expect("generated data is valid"),
            txs: (0..POOL as u64)
                .map(|k| data::transaction(k, n).expect("generated transaction is valid"))
                .collect(),
            policy: data::policy(),
            routes: data::routes(),
        }
    })
}

fn next_tx(f: &Fixture) -> &GateTransaction {
    static I: AtomicUsize = AtomicUsize::new(0);
    &f.txs[I.fetch_add(1, Ordering::Relaxed) % f.txs.len()]
}

fn main() {
    // Load before timing starts, so the first benchmark is not charged for it.
    let _ = fixture();
    divan::main();
}

#[divan::bench]
fn redb_replica(b: divan::Bencher) {
    let f = fixture();
    let now = data::ts(data::NOW_S);
    b.with_inputs(|| next_tx(f)).bench_local_values(|tx| {
        let view = f.store.replica_view().expect("replica snapshot");
        decide(tx, &view, &f.policy, &f.routes, now)
    });
}

#[divan::bench]
fn redb_snapshot_only(b: divan::Bencher) {
    let f = fixture();
    b.bench_local(|| f.store.replica_view().expect("replica snapshot"));
}

#[divan::bench]
fn hashmap_baseline(b: divan::Bencher) {
    let f = fixture();
    let now = data::ts(data::NOW_S);
    b.with_inputs(|| next_tx(f))
        .bench_local_values(|tx| decide(tx, &f.indexed, &f.policy, &f.routes, now));
}

#[divan::bench(sample_count = 20, sample_size = 1)]
fn memory_replica(b: divan::Bencher) {
    let f = fixture();
    let now = data::ts(data::NOW_S);
    b.with_inputs(|| next_tx(f))
        .bench_local_values(|tx| decide(tx, &f.memory, &f.policy, &f.routes, now));
}
