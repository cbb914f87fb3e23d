//! The store's errors: opening it, and journal operations (replica operations fail with
//! [`crate::replica::ReplicaError`]).

use protocol::schema::ChainError;

use crate::replica::ReplicaError;

/// Errors opening the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or created.
    #[error("cannot open store {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: redb::Error,
    },
    /// The journal failed its check on open.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A replica of an older format could not be dropped on open.
    #[error("cannot drop the replica of an older format: {0}")]
    Replica(#[from] ReplicaError),
}

impl StoreError {
    /// Whether this is damage to the file (redb finds it corrupted, or cannot repair it),
    /// as opposed to a file that cannot be reached (permissions, another process).
    #[must_use]
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            Self::Open {
                source: redb::Error::Corrupted(_),
                ..
            } | Self::Journal(JournalError::Db(redb::Error::Corrupted(_)))
        )
    }
}

/// Errors of journal operations.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The database failed.
    #[error("journal storage: {0}")]
    Db(#[from] redb::Error),
    /// A stored entry is not valid JSON for this schema.
    #[error("journal entry {seq} is unreadable: {detail}")]
    Corrupt { seq: u64, detail: String },
    /// The hash chain is broken.
    #[error("journal hash chain broken at entry {seq}: {detail}")]
    Chain { seq: u64, detail: String },
    /// The entry could not be hashed.
    #[error("journal entry could not be hashed: {0}")]
    Hash(ChainError),
    /// Central cannot have acknowledged an entry that was never written.
    #[error("cannot acknowledge seq {seq}: journal head is {head}")]
    AckBeyondHead { seq: u64, head: u64 },
    /// Another thread panicked while holding the journal lock.
    #[error("journal lock poisoned")]
    Poisoned,
    /// Writes are refused (the fault drill of [`Store::refuse_journal_writes`](super::Store::refuse_journal_writes)).
    #[error("journal writes are refused (disk-full drill)")]
    Refused,
    /// The journal writer stopped (or failed) before answering; the write may not have
    /// happened, so the caller must treat it as not journaled.
    #[error("the journal writer stopped before confirming the write")]
    WriterStopped,
    /// The group commit this write was part of failed (nothing of the group was written).
    #[error("journal group commit failed: {0}")]
    GroupFailed(String),
}

impl JournalError {
    /// The same failure for another caller of a failed group commit (storage errors do not
    /// clone; their text does).
    #[must_use]
    pub fn for_group_member(&self) -> JournalError {
        match self {
            Self::Refused => Self::Refused,
            Self::Poisoned => Self::Poisoned,
            Self::WriterStopped => Self::WriterStopped,
            other => Self::GroupFailed(other.to_string()),
        }
    }
}

pub(super) fn jdb<E: Into<redb::Error>>(e: E) -> JournalError {
    JournalError::Db(e.into())
}
pub(super) fn rdb<E: Into<redb::Error>>(e: E) -> ReplicaError {
    ReplicaError::Db(e.into())
}
