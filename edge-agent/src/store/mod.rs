//! redb storage: the hash-chained journal in the store file, and the registry replica in
//! its own file beside it ([`replica_path`]: `agent.redb` → `agent.replica.redb`).
//!
//! Every method blocks (redb is a blocking API); async callers use `spawn_blocking`.
//! [`Store`] is `Clone + Send + Sync` (an `Arc` inside). Journal entries are the
//! protocol's JSON records (each carries its own schema version `v`, checked on read);
//! replica values are postcard behind an encoding byte, so a decision's look-ups do not
//! parse JSON. Tables carry a version suffix: a new value encoding is a new table name
//! (the replica's JSON `*_v1` tables became `*_v2`). A replica left in the store file by
//! an earlier release is dropped on open and bootstrapped again from a snapshot.
//!
//! Each file has its own bounded redb page cache ([`CacheSizes`]), because the agent's
//! resident memory grows toward their sum: the journal's writes then never evict the
//! replica pages that decisions read, and the replica's cache is sized per deployment
//! (`[store] replica_cache_bytes`).
//!
//! # Journal
//! `journal_v1` maps `seq → JournalEntry` (JSON). `seq` starts at 1 and has no gaps when
//! written; each entry's `hash` chains to its predecessor through
//! [`JournalEntry::new_chained`](protocol::schema::JournalEntry::new_chained) (the one hash function shared with central).
//! [`Store::append`] writes a whole batch of bodies in one write transaction with
//! `Durability::Immediate` and returns only after the commit, so "journal, then act"
//! holds: whatever an entry describes happened after it was on disk. Meta (`head`,
//! `acked`, `bytes`, last hash) lives in the same transaction, so a crash leaves either
//! all of a batch or none of it. On open the store is checked (`check`: redb's integrity
//! check, then every unacknowledged entry; damage is quarantined and marked, a file redb
//! cannot open is replaced) and the tail verified (the last entry's own hash, its link to
//! the one before, and the stored last hash).
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
//! another port (docs/delivery.md, "Replication"). A chunked snapshot is staged chunk by
//! chunk in a second set of replica tables ([`Store::begin_staging`],
//! [`Store::stage_chunk`]) and swapped in by one write transaction
//! ([`Store::finish_staging`]); its progress survives a restart ([`Store::staged_snapshot`]).
//!
//! # Layout
//! - `handle`: the [`Store`] handle (the two databases, journal state); `error`: the
//!   errors.
//! - `journal`: the journal tables and operations; [`backlog`].
//! - `replica`: the replica tables (two sets: live and staging), [`Store::apply_batch`],
//!   staging a chunked snapshot, [`ReplicaSnapshot`].
//! - `migrate`: layout migrations run by [`Store::open`] (the replica out of the store
//!   file).
//! - `accounts`: the console's account and session tables ([`Store::accounts`]), the only
//!   part of the file the console reaches.
//! - `check`: the check at start (redb's integrity check, the journal from the cursor to
//!   the head): quarantine, markers, replacing a file redb cannot open.
//! - `held`: the held-records file beside the store ([`HeldFile`]): records the journal
//!   could not take, kept across a stop while the disk is full.
//! - `lanes`: lane control (`lane_control_v1`): the lanes a supervisor closed
//!   ([`Store::lane_closures`], [`LaneClosure`]).
//! - `reads`: the read log (`read_log_v1`), the write-ahead of lane events that the
//!   journal consumes ([`Store::log_reads`], [`Store::append_groups_consuming`]).

mod accounts;
mod check;
mod error;
mod handle;
mod held;
mod journal;
mod lanes;
mod migrate;
mod reads;
mod replica;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use protocol::schema::{GENESIS_HASH, GateId};
use redb::{Database, ReadableDatabase};

pub use self::accounts::{AccountTable, AccountTables, AccountWrite};
pub use self::check::{ALERT_ENTRY_QUARANTINED, ALERT_STORE_REPAIRED, ALERT_STORE_REPLACED};
use self::error::jdb;
pub use self::error::{JournalError, StoreError};
pub use self::handle::{
    CacheSizes, DEFAULT_CACHE_BYTES, DEFAULT_REPLICA_CACHE_BYTES, Store, StoreDatabase,
    replica_path,
};
use self::handle::{Inner, JournalState};
pub use self::held::{HELD_FILE_BYTES, HeldFile, HeldFileError, HeldGroup};
use self::journal::{
    BY_TX, EXCEPTIONS, JOURNAL, JOURNAL_META, JOURNAL_TEXT, read_meta_u64, verify_tail,
};
pub use self::journal::{PRUNE_BATCH, PRUNE_SLICE_WITH_LANES, WindowResult, backlog};
pub use self::lanes::LaneClosure;
use self::migrate::move_replica_out;
use self::replica::{REPLICA_META, TABLE_SETS, open_set};
pub use self::replica::{ReplicaSnapshot, STAGE_DURABLE_EVERY, StagedSnapshot};
pub use crate::replica::{ReplicaError, ReplicaMeta};

impl Store {
    /// Opens (or creates) the store and its replica file with the default caches
    /// ([`CacheSizes::default`]) and verifies the journal's tail.
    ///
    /// # Errors
    /// [`StoreError::Open`] when a file cannot be opened; [`StoreError::Journal`] when the
    /// tail of the hash chain does not verify.
    pub fn open(path: &Path, gate: GateId) -> Result<Store, StoreError> {
        Self::open_with_cache(path, gate, CacheSizes::default())
    }

    /// [`Store::open`] with each file's redb page cache bounded (half of a cache at most
    /// holds a write transaction's dirty pages; the rest caches reads). The agent's
    /// resident memory grows toward the sum, so these are its main memory settings.
    ///
    /// A replica file redb cannot open is replaced by an empty one (the replica loads
    /// again from a snapshot, and decides nothing FAST until then); a replica left in the
    /// store file by an earlier release is dropped from it, keeping its port binding.
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_with_cache(
        path: &Path,
        gate: GateId,
        caches: CacheSizes,
    ) -> Result<Store, StoreError> {
        let (db, state) = match open_checked(path, &gate, caches.journal) {
            Ok(opened) => opened,
            Err(e) if e.is_damage() => replace_damaged(path, &gate, caches.journal, &e)?,
            Err(e) => return Err(e),
        };
        let replica_db = open_replica(&replica_path(path), caches.replica)?;
        move_replica_out(&db, &replica_db)?;
        Ok(Store {
            inner: Arc::new(Inner {
                db: RwLock::new(Some(db)),
                replica_db: RwLock::new(Some(replica_db)),
                path: path.to_path_buf(),
                caches,
                gate,
                journal: Mutex::new(state),
                replica: Mutex::new(()),
                refuse_writes: AtomicBool::new(false),
                needs_reopen: AtomicBool::new(false),
                replica_verified: std::sync::Mutex::new(None),
            }),
        })
    }

    /// Closes both databases and opens them again, reloading the journal's state from the
    /// file.
    /// After an I/O error (a full disk) redb refuses every operation until this is done;
    /// opening may itself need to write (redb repairs a file that was not closed cleanly),
    /// so it fails while the disk is still full, and the caller tries again later. Between
    /// a failed attempt and the next, every operation fails with
    /// [`redb::Error::DatabaseClosed`].
    ///
    /// # Errors
    /// [`StoreError::Open`] when the file cannot be opened again; [`StoreError::Journal`]
    /// when the reopened journal does not verify.
    pub fn reopen(&self) -> Result<(), StoreError> {
        // Lock order as everywhere: the journal state first, then the database.
        let mut st = self.jstate()?;
        let poisoned = |_| StoreError::Journal(JournalError::Poisoned);
        let mut slot = self.inner.db.write().map_err(poisoned)?;
        let mut replica_slot = self.inner.replica_db.write().map_err(poisoned)?;
        // Dropping a database closes the file and releases its lock (read transactions
        // still alive fail from then on), so it can be opened again.
        for old in [slot.take(), replica_slot.take()].into_iter().flatten() {
            if let Err(e) = old.close() {
                tracing::debug!(error = %e, "closing the failed database");
            }
        }
        let db = open_database(&self.inner.path, self.inner.caches.journal)?;
        let mut state = load_journal_state(&db)?;
        let replica_db =
            open_replica_database(&replica_path(&self.inner.path), self.inner.caches.replica)?;
        state.max_bytes = st.max_bytes;
        *st = state;
        *slot = Some(db);
        *replica_slot = Some(replica_db);
        self.inner.needs_reopen.store(false, Ordering::SeqCst);
        Ok(())
    }
}

/// Opens the database and checks it ([`check`]): redb's integrity check (entries a repair
/// rolled back are taken from the file's bytes where they verify, marked otherwise), then
/// the journal from the cursor to the head (damaged entries quarantined).
fn open_checked(
    path: &Path,
    gate: &GateId,
    cache_bytes: usize,
) -> Result<(Database, JournalState), StoreError> {
    // redb is meant to answer damage with an error; a panic on a malformed page is taken
    // as the same answer rather than ending the agent.
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        open_and_check(path, gate, cache_bytes)
    }));
    opened.unwrap_or_else(|_| {
        Err(StoreError::Open {
            path: path.display().to_string(),
            source: redb::Error::Corrupted("reading the store panicked".into()),
        })
    })
}

fn open_and_check(
    path: &Path,
    gate: &GateId,
    cache_bytes: usize,
) -> Result<(Database, JournalState), StoreError> {
    let mut db = open_database(path, cache_bytes)?;
    let head_before = check::stored_head(&db).unwrap_or(0);
    let clean = db.check_integrity().map_err(|e| StoreError::Open {
        path: path.display().to_string(),
        source: e.into(),
    })?;
    let mut state = load_meta(&db)?;
    if !clean {
        let head_after = state.head;
        let mut detail = format!(
            "redb's integrity check failed at start and repaired the store file (journal head {head_before} before, {head_after} after)"
        );
        if head_before > head_after {
            let found = std::fs::read(path)
                .map(|bytes| check::salvage(&bytes, gate))
                .unwrap_or_default();
            let back = check::restore(&db, &mut state, &found)?;
            state.head = state.head.max(head_before);
            detail.push_str(&format!(
                "; of the {} entries the repair rolled back, {back} were recovered from the file's bytes, the rest are marked lost",
                head_before - head_after
            ));
        }
        tracing::error!(%detail, "store repaired");
        check::check_journal(&db, &mut state, gate)?;
        check::append_alert(&db, &mut state, gate, check::ALERT_STORE_REPAIRED, detail)?;
    } else {
        check::check_journal(&db, &mut state, gate)?;
    }
    {
        let r = db.begin_read().map_err(jdb)?;
        let journal = r.open_table(JOURNAL).map_err(jdb)?;
        verify_tail(&journal, &state)?;
    }
    Ok((db, state))
}

/// A store file redb cannot open or repair: move it aside (kept as evidence), make a new
/// one, carry over every journal entry found in the old file's bytes that verifies, and
/// say what happened in a `STORE_REPLACED` alert. Never refuses to start for damage.
fn replace_damaged(
    path: &Path,
    gate: &GateId,
    cache_bytes: usize,
    error: &StoreError,
) -> Result<(Database, JournalState), StoreError> {
    let aside = check::aside_path(path);
    let io = |e: std::io::Error| StoreError::Open {
        path: path.display().to_string(),
        source: redb::Error::Io(e),
    };
    let bytes = std::fs::read(path).map_err(io)?;
    let found = check::salvage(&bytes, gate);
    drop(bytes);
    std::fs::rename(path, &aside).map_err(io)?;
    tracing::error!(%error, aside = %aside.display(), "the store file is damaged beyond repair; it is kept aside and a new store is made");
    let db = open_database(path, cache_bytes)?;
    let mut state = load_meta(&db)?;
    let summary = match (found.keys().next(), found.keys().next_back()) {
        (Some(&first), Some(&last)) => {
            state.acked = first - 1;
            state.head = first - 1;
            state.last_hash = found[&first].prev_hash.clone();
            check::restore(&db, &mut state, &found)?;
            format!(
                "journal entries {first}..={last} found in its bytes: {} verified and carried over, {} unrecoverable (marked); entries before {first} were not found (central keeps those it acknowledged)",
                found.len(),
                (last - first + 1) - found.len() as u64
            )
        }
        _ => "no journal entry could be recovered from it".into(),
    };
    check::check_journal(&db, &mut state, gate)?;
    let detail = format!(
        "the store file could not be opened ({error}); it was moved to {} and a new store made; {summary}; console accounts must be added again",
        aside.display()
    );
    tracing::error!(%detail, "store replaced");
    check::append_alert(&db, &mut state, gate, check::ALERT_STORE_REPLACED, detail)?;
    Ok((db, state))
}

fn create_database(path: &Path, cache_bytes: usize) -> Result<Database, StoreError> {
    Database::builder()
        .set_cache_size(cache_bytes)
        .create(path)
        .map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            source: e.into(),
        })
}

/// Opens (or creates) the store file and every journal table, so readers never meet a
/// missing one.
fn open_database(path: &Path, cache_bytes: usize) -> Result<Database, StoreError> {
    let db = create_database(path, cache_bytes)?;
    let w = db.begin_write().map_err(jdb)?;
    {
        w.open_table(JOURNAL).map_err(jdb)?;
        w.open_table(JOURNAL_META).map_err(jdb)?;
        w.open_table(JOURNAL_TEXT).map_err(jdb)?;
        w.open_multimap_table(BY_TX).map_err(jdb)?;
        w.open_table(EXCEPTIONS).map_err(jdb)?;
    }
    w.commit().map_err(jdb)?;
    Ok(db)
}

/// Opens (or creates) the replica file and every replica table (both sets).
fn open_replica_database(path: &Path, cache_bytes: usize) -> Result<Database, StoreError> {
    let db = create_database(path, cache_bytes)?;
    let w = db.begin_write().map_err(jdb)?;
    {
        for set in &TABLE_SETS {
            open_set(&w, set)?;
        }
        w.open_table(REPLICA_META).map_err(jdb)?;
    }
    w.commit().map_err(jdb)?;
    Ok(db)
}

/// Whether `e` says the replica file's bytes are not a usable redb file (rather than that
/// it could not be reached: permissions, a lock, a full disk).
fn replica_damaged(e: &StoreError) -> bool {
    let invalid = |io: &std::io::Error| {
        matches!(
            io.kind(),
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
        )
    };
    e.is_damage()
        || matches!(e, StoreError::Open { source: redb::Error::Io(io), .. } if invalid(io))
}

/// Opens the replica file at start, checked by redb's integrity check (a repair leaves the
/// last committed state, so an applied batch is still whole or absent). A file redb cannot
/// open is deleted and made again empty: the replica is a copy of central's registry and
/// loads again from a snapshot, and an empty replica never decides FAST.
fn open_replica(path: &Path, cache_bytes: usize) -> Result<Database, StoreError> {
    let opened = std::panic::catch_unwind(|| -> Result<Database, StoreError> {
        let mut db = open_replica_database(path, cache_bytes)?;
        let clean = db.check_integrity().map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            source: e.into(),
        })?;
        if !clean {
            tracing::error!(path = %path.display(), "redb's integrity check failed at start and repaired the replica file");
        }
        Ok(db)
    });
    let error = match opened {
        Ok(Ok(db)) => return Ok(db),
        Ok(Err(e)) if !replica_damaged(&e) => return Err(e),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "reading the replica file panicked".to_string(),
    };
    tracing::error!(%error, path = %path.display(), "the replica file is damaged beyond repair; it is deleted and the replica loads again from a snapshot");
    std::fs::remove_file(path).map_err(|e| StoreError::Open {
        path: path.display().to_string(),
        source: redb::Error::Io(e),
    })?;
    open_replica_database(path, cache_bytes)
}

/// The journal's head, cursor, size and last hash as stored, after checking the tail.
fn load_journal_state(db: &Database) -> Result<JournalState, StoreError> {
    let state = load_meta(db)?;
    let r = db.begin_read().map_err(jdb)?;
    let journal = r.open_table(JOURNAL).map_err(jdb)?;
    verify_tail(&journal, &state)?;
    Ok(state)
}

/// The journal's head, cursor, size and last hash as stored.
fn load_meta(db: &Database) -> Result<JournalState, StoreError> {
    let r = db.begin_read().map_err(jdb)?;
    let meta = r.open_table(JOURNAL_META).map_err(jdb)?;
    let text = r.open_table(JOURNAL_TEXT).map_err(jdb)?;
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
    Ok(state)
}
