//! The store handle: the redb database and the journal's in-memory state, shared by the
//! journal and replica halves.
//!
//! The database sits behind a lock so that it can be closed and opened again while the
//! agent runs: after an I/O error (a full disk) redb refuses every later operation
//! ("Previous I/O error occurred") until the database is reopened ([`Store::reopen`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use protocol::schema::GateId;
use redb::{Database, ReadTransaction, ReadableDatabase as _, WriteTransaction};

use super::error::JournalError;

/// Default size of redb's page cache. redb's own default is 1 GiB, which a gate box with a
/// national-scale replica fills (docs/benchmarks.md, figure 3 RSS); the hot part of the
/// replica is the B-tree branch pages, a few MiB at a million records.
pub const DEFAULT_CACHE_BYTES: usize = 32 << 20;

/// The agent's local store. Cheap to clone; every method blocks.
#[derive(Debug, Clone)]
pub struct Store {
    pub(super) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    /// `None` between closing a failed database and opening it again.
    pub(super) db: RwLock<Option<Database>>,
    pub(super) path: PathBuf,
    pub(super) cache_bytes: usize,
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

/// The store's database, for modules that keep their own tables in the same file: it
/// begins transactions on whichever database is open now.
#[derive(Debug, Clone, Copy)]
pub struct StoreDatabase<'a> {
    store: &'a Store,
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
        let db = self
            .store
            .inner
            .db
            .read()
            .map_err(|_| redb::Error::DatabaseClosed)?;
        f(db.as_ref().ok_or(redb::Error::DatabaseClosed)?)
    }
}

impl Store {
    /// The underlying database, for tests that inspect or damage the file's tables. The
    /// agent's own modules go through the journal, replica and account operations.
    #[must_use]
    pub fn database(&self) -> StoreDatabase<'_> {
        StoreDatabase { store: self }
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
