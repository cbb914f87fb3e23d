//! The store handle: the redb database and the journal's in-memory state, shared by the
//! journal and replica halves.

use std::sync::{Arc, Mutex, MutexGuard};

use protocol::schema::GateId;
use redb::Database;

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
    pub(super) db: Database,
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
    pub(super) refuse_writes: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Clone)]
pub(super) struct JournalState {
    pub(super) head: u64,
    pub(super) acked: u64,
    pub(super) bytes: u64,
    pub(super) last_hash: String,
    pub(super) max_bytes: u64,
}

impl Store {
    /// The underlying database, for modules that keep their own tables in the same file
    /// (the console's accounts and sessions, [`crate::console::users`]).
    #[must_use]
    pub fn database(&self) -> &Database {
        &self.inner.db
    }

    pub(super) fn jstate(&self) -> Result<MutexGuard<'_, JournalState>, JournalError> {
        self.inner
            .journal
            .lock()
            .map_err(|_| JournalError::Poisoned)
    }
}
