//! redb storage: the hash-chained journal and the registry replica, in one file.
//!
//! Every method blocks (redb is a blocking API); async callers use `spawn_blocking`.
//! [`Store`] is `Clone + Send + Sync` (an `Arc` inside). Journal entries are the
//! protocol's JSON records (each carries its own schema version `v`, checked on read);
//! replica values are postcard behind an encoding byte, so a decision's look-ups do not
//! parse JSON. Tables carry a version suffix: a new value encoding is a new table name
//! (the replica's JSON `*_v1` tables became `*_v2`; an old replica is dropped on open and
//! bootstrapped again from a snapshot). redb's page cache is bounded
//! ([`DEFAULT_CACHE_BYTES`]) because the agent's resident memory grows toward it.
//!
//! # Journal
//! `journal_v1` maps `seq → JournalEntry` (JSON). `seq` starts at 1 and has no gaps when
//! written; each entry's `hash` chains to its predecessor through
//! [`JournalEntry::new_chained`](protocol::schema::JournalEntry::new_chained) (the one hash function shared with central).
//! [`Store::append`] writes a whole batch of bodies in one write transaction with
//! `Durability::Immediate` and returns only after the commit, so "journal, then act"
//! holds: whatever an entry describes happened after it was on disk. Meta (`head`,
//! `acked`, `bytes`, last hash) lives in the same transaction, so a crash leaves either
//! all of a batch or none of it. On open the tail is verified (the last entry's own hash,
//! its link to the one before, and the stored last hash).
//!
//! Disk bound: when the JSON bytes of the journal exceed the configured limit,
//! acknowledged routine entries are deleted oldest-first down to 90 % of the limit.
//! Unacknowledged entries, seal/container exception decisions and integrity alerts are
//! never pruned. [`Store::verify_chain`] checks every remaining entry's hash and every
//! link between consecutive remaining entries.
//!
//! # Replica
//! Operators by canonical operator id (plus a linked-id index), MRAs by
//! `recognising>partner`, consignments by id (plus a container index), and the
//! [`ReplicaMeta`]. [`Store::apply_batch`] applies a verified [`ChangeBatch`](protocol::schema::ChangeBatch) all or
//! nothing in one write transaction, refusing gaps, replays, rollbacks and batches for
//! another port (docs/delivery.md, "Replication").
//!
//! # Layout
//! - `handle`: the [`Store`] handle (database, journal state); `error`: the errors.
//! - `journal`: the journal tables and operations; [`backlog`].
//! - `replica`: the replica tables, [`Store::apply_batch`], [`ReplicaSnapshot`].
//! - `migrate`: layout migrations run by [`Store::open`].
//! - `reads`: the read log (`read_log_v1`), the write-ahead of lane events that the
//!   journal consumes ([`Store::log_reads`], [`Store::append_groups_consuming`]).
//! - [`Store::database`] hands the raw database to the console, which keeps its accounts
//!   and sessions in tables of its own in the same file.

mod error;
mod handle;
mod journal;
mod migrate;
mod reads;
mod replica;

use std::path::Path;
use std::sync::{Arc, Mutex};

use protocol::schema::{GENESIS_HASH, GateId};
use redb::{Database, ReadableDatabase};

use self::error::jdb;
pub use self::error::{JournalError, StoreError};
pub use self::handle::{DEFAULT_CACHE_BYTES, Store};
use self::handle::{Inner, JournalState};
pub use self::journal::backlog;
use self::journal::{
    BY_TX, EXCEPTIONS, JOURNAL, JOURNAL_META, JOURNAL_TEXT, read_meta_u64, verify_tail,
};
use self::migrate::migrate_replica_v1;
pub use self::replica::ReplicaSnapshot;
use self::replica::{BY_CONTAINER, CONSIGNMENTS, LINKS, MRAS, OPERATORS, REPLICA_META};
pub use crate::replica::{ReplicaError, ReplicaMeta};

impl Store {
    /// Opens (or creates) the store and verifies the journal's tail.
    ///
    /// # Errors
    /// [`StoreError::Open`] when the file cannot be opened; [`StoreError::Journal`] when the
    /// tail of the hash chain does not verify.
    pub fn open(path: &Path, gate: GateId) -> Result<Store, StoreError> {
        Self::open_with_cache(path, gate, DEFAULT_CACHE_BYTES)
    }

    /// [`Store::open`] with redb's page cache bounded to `cache_bytes` (half of it at most
    /// holds a write transaction's dirty pages; the rest caches reads). The agent's
    /// resident memory grows toward this bound, so it is the main memory setting.
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_with_cache(
        path: &Path,
        gate: GateId,
        cache_bytes: usize,
    ) -> Result<Store, StoreError> {
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|e| StoreError::Open {
                path: path.display().to_string(),
                source: e.into(),
            })?;
        migrate_replica_v1(&db)?;
        // Create every table so readers never meet a missing one.
        let w = db.begin_write().map_err(jdb)?;
        {
            w.open_table(JOURNAL).map_err(jdb)?;
            w.open_table(JOURNAL_META).map_err(jdb)?;
            w.open_table(JOURNAL_TEXT).map_err(jdb)?;
            w.open_multimap_table(BY_TX).map_err(jdb)?;
            w.open_table(EXCEPTIONS).map_err(jdb)?;
            w.open_table(OPERATORS).map_err(jdb)?;
            w.open_table(LINKS).map_err(jdb)?;
            w.open_table(MRAS).map_err(jdb)?;
            w.open_table(CONSIGNMENTS).map_err(jdb)?;
            w.open_multimap_table(BY_CONTAINER).map_err(jdb)?;
            w.open_table(REPLICA_META).map_err(jdb)?;
        }
        w.commit().map_err(jdb)?;

        let r = db.begin_read().map_err(jdb)?;
        let meta = r.open_table(JOURNAL_META).map_err(jdb)?;
        let text = r.open_table(JOURNAL_TEXT).map_err(jdb)?;
        let journal = r.open_table(JOURNAL).map_err(jdb)?;
        let state = JournalState {
            head: read_meta_u64(&meta, "head")?,
            acked: read_meta_u64(&meta, "acked")?,
            bytes: read_meta_u64(&meta, "bytes")?,
            last_hash: text
                .get("last_hash")
                .map_err(jdb)?
                .map_or_else(|| GENESIS_HASH.to_string(), |v| v.value().to_string()),
            max_bytes: u64::MAX,
        };
        verify_tail(&journal, &state)?;
        drop((meta, text, journal, r));
        Ok(Store {
            inner: Arc::new(Inner {
                db,
                gate,
                journal: Mutex::new(state),
                replica: Mutex::new(()),
                refuse_writes: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }
}
