//! The store handle: the two redb databases (the journal's file and the replica's file)
//! and the journal's in-memory state, shared by the journal and replica halves.
//!
//! Each database sits behind a lock so that it can be closed and opened again while the
//! agent runs: after an I/O error (a full disk) redb refuses every later operation
//! ("Previous I/O error occurred") until the database is reopened ([`Store::reopen`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use protocol::schema::GateId;
use redb::{Database, ReadTransaction, ReadableDatabase as _, WriteTransaction};

use super::error::JournalError;

/// Default size of the journal file's redb page cache. redb's own default is 1 GiB; the
/// journal's reads are its tail and the unacknowledged entries, so a small cache serves
/// them, and the agent's resident memory grows toward this bound.
pub const DEFAULT_CACHE_BYTES: usize = 32 << 20;

/// Default size of the replica file's redb page cache (`[store] replica_cache_bytes`).
/// Decisions read random operator and consignment pages; whatever part of the replica
/// the cache does not hold is read from the OS page cache on every look-up
/// (docs/benchmarks.md, figure 1: p99 and resident memory per cache size).
pub const DEFAULT_REPLICA_CACHE_BYTES: usize = 16 << 20;

/// The two page-cache bounds of a store. The agent's resident memory grows toward their
/// sum; they are separate so that the journal's write traffic does not evict the
/// replica's pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSizes {
    /// The journal file's cache ([`DEFAULT_CACHE_BYTES`]).
    pub journal: usize,
    /// The replica file's cache ([`DEFAULT_REPLICA_CACHE_BYTES`]).
    pub replica: usize,
}

impl Default for CacheSizes {
    fn default() -> Self {
        Self {
            journal: DEFAULT_CACHE_BYTES,
            replica: DEFAULT_REPLICA_CACHE_BYTES,
        }
    }
}

/// The agent's local store. Cheap to clone; every method blocks.
#[derive(Debug, Clone)]
pub struct Store {
    pub(super) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    /// The journal's file. `None` between closing a failed database and opening it again.
    pub(super) db: RwLock<Option<Database>>,
    /// The replica's file ([`replica_path`]), likewise.
    pub(super) replica_db: RwLock<Option<Database>>,
    pub(super) path: PathBuf,
    pub(super) caches: CacheSizes,
    pub(super) gate: GateId,
    /// Journal state, also the writer lock for the journal.
    pub(super) journal: Mutex<JournalState>,
    /// Writer lock for the replica (redb allows one write transaction at a time anyway;
    /// this keeps check-then-apply atomic).
    pub(super) replica: Mutex<()>,
    /// When this process last moved the replica's signed as-of time forward (monotonic,
    /// so freshness does not depend on the wall clock alone).
    pub(super) replica_verified: Mutex<Option<std::time::Instant>>,
    /// Fault drill: while set, every journal write fails as on a full disk.
    pub(super) refuse_writes: AtomicBool,
    /// Set when a write failed in a way only closing and reopening the database cures
    /// (an I/O error: redb then refuses everything until reopened).
    pub(super) needs_reopen: AtomicBool,
}

#[derive(Debug, Clone)]
pub(super) struct JournalState {
    pub(super) head: u64,
    pub(super) acked: u64,
    pub(super) bytes: u64,
    pub(super) last_hash: String,
    pub(super) max_bytes: u64,
}

/// The replica's file beside the store file `path`: `agent.redb` → `agent.replica.redb`.
#[must_use]
pub fn replica_path(path: &std::path::Path) -> PathBuf {
    path.with_extension("replica.redb")
}

/// One of the store's databases, for modules that keep their own tables in the same file:
/// it begins transactions on whichever database is open now.
#[derive(Debug, Clone, Copy)]
pub struct StoreDatabase<'a> {
    store: &'a Store,
    replica: bool,
}

impl StoreDatabase<'_> {
    /// A write transaction.
    ///
    /// # Errors
    /// redb's error; [`redb::Error::DatabaseClosed`] while the database is being reopened.
    pub fn begin_write(&self) -> Result<WriteTransaction, redb::Error> {
        self.with_db(|db| {
            db.begin_write().map_err(|e| {
                let e = redb::Error::from(e);
                self.store.note_db_error(&e);
                e
            })
        })
    }

    /// A read transaction.
    ///
    /// # Errors
    /// As [`StoreDatabase::begin_write`].
    pub fn begin_read(&self) -> Result<ReadTransaction, redb::Error> {
        self.with_db(|db| Ok(db.begin_read()?))
    }

    /// `f` on the open database; [`redb::Error::DatabaseClosed`] while it is being reopened.
    fn with_db<T>(
        &self,
        f: impl FnOnce(&redb::Database) -> Result<T, redb::Error>,
    ) -> Result<T, redb::Error> {
        let slot = if self.replica {
            &self.store.inner.replica_db
        } else {
            &self.store.inner.db
        };
        let db = slot.read().map_err(|_| redb::Error::DatabaseClosed)?;
        f(db.as_ref().ok_or(redb::Error::DatabaseClosed)?)
    }
}

impl Store {
    /// The journal's database (journal, read log, lane control, accounts), for tests that
    /// inspect or damage the file's tables. The agent's own modules go through the
    /// journal, replica and account operations.
    #[must_use]
    pub fn database(&self) -> StoreDatabase<'_> {
        StoreDatabase {
            store: self,
            replica: false,
        }
    }

    /// The replica's database (its own file, [`replica_path`]), as [`Store::database`].
    #[must_use]
    pub fn replica_database(&self) -> StoreDatabase<'_> {
        StoreDatabase {
            store: self,
            replica: true,
        }
    }

    /// The store file's path.
    #[must_use]
    pub fn path(&self) -> &std::path::Path {
        &self.inner.path
    }

    /// The gate this store belongs to.
    #[must_use]
    pub fn gate(&self) -> &GateId {
        &self.inner.gate
    }

    pub(super) fn jstate(&self) -> Result<MutexGuard<'_, JournalState>, JournalError> {
        self.inner
            .journal
            .lock()
            .map_err(|_| JournalError::Poisoned)
    }

    /// Whether a write failed in a way that only reopening the database cures.
    #[must_use]
    pub fn needs_reopen(&self) -> bool {
        self.inner.needs_reopen.load(Ordering::SeqCst)
    }

    /// Marks the database for reopening when `e` is an I/O failure (after which redb
    /// refuses every operation until reopened) or the database is closed.
    pub(super) fn note_db_error(&self, e: &redb::Error) {
        if matches!(
            e,
            redb::Error::Io(_) | redb::Error::PreviousIo | redb::Error::DatabaseClosed
        ) {
            self.inner.needs_reopen.store(true, Ordering::SeqCst);
        }
    }

    /// As [`Store::note_db_error`], for a journal operation's error.
    pub(super) fn note_journal_error(&self, e: &JournalError) {
        if let JournalError::Db(db) = e {
            self.note_db_error(db);
        }
    }
}
