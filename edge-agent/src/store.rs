//! redb storage: the hash-chained journal and the registry replica.

use std::path::Path;
use std::sync::Arc;

use jiff::Timestamp;
use protocol::container::ContainerNumber;
use protocol::operator::OperatorId;
use protocol::schema::{
    ChangeBatch, Consignment, Decision, EventBody, GateId, GateTransaction, JournalEntry, LaneId,
    MraRecord, OfficerAction, RegistryRecord,
};
use uuid::Uuid;

use crate::decider::ReplicaView;

/// Errors opening the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store database: {0}")]
    Db(String),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// Errors of journal operations.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal database: {0}")]
    Db(String),
}

/// Errors of replica operations.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("replica database: {0}")]
    Db(String),
}

/// Replica bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplicaMeta {
    pub sequence: u64,
    pub as_of: Option<Timestamp>,
    pub last_sync: Option<Timestamp>,
    pub port: Option<String>,
}

/// The agent's local store. Cheap to clone; every method blocks.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    gate: GateId,
}

/// A read snapshot of the replica.
#[derive(Debug)]
pub struct ReplicaSnapshot {
    meta: ReplicaMeta,
}

impl ReplicaView for ReplicaSnapshot {
    fn operator(&self, _id: &OperatorId) -> Option<RegistryRecord> {
        None
    }
    fn consignment_for(&self, _c: &ContainerNumber) -> Option<Consignment> {
        None
    }
    fn mras(&self) -> Vec<MraRecord> {
        Vec::new()
    }
    fn sequence(&self) -> u64 {
        self.meta.sequence
    }
    fn as_of(&self) -> Option<Timestamp> {
        self.meta.as_of
    }
}

impl Store {
    /// Opens (or creates) the store.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn open(path: &Path, gate: GateId) -> Result<Store, StoreError> {
        let _ = path;
        Ok(Store {
            inner: Arc::new(Inner { gate }),
        })
    }

    /// Appends bodies in one durable write transaction.
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn append(
        &self,
        bodies: Vec<EventBody>,
        at: Timestamp,
    ) -> Result<Vec<JournalEntry>, JournalError> {
        let _ = (bodies, at, &self.inner.gate);
        Err(JournalError::Db("not implemented yet".into()))
    }

    #[must_use]
    pub fn journal_head(&self) -> u64 {
        0
    }

    #[must_use]
    pub fn acked_seq(&self) -> u64 {
        0
    }

    /// # Errors
    /// [`JournalError`].
    pub fn set_acked(&self, seq: u64) -> Result<(), JournalError> {
        let _ = seq;
        Ok(())
    }

    /// # Errors
    /// [`JournalError`].
    pub fn unacked(
        &self,
        max_entries: usize,
        exceptions_first: bool,
    ) -> Result<Vec<JournalEntry>, JournalError> {
        let _ = (max_entries, exceptions_first);
        Ok(Vec::new())
    }

    /// # Errors
    /// [`JournalError`].
    pub fn entry(&self, seq: u64) -> Result<Option<JournalEntry>, JournalError> {
        let _ = seq;
        Ok(None)
    }

    /// # Errors
    /// [`JournalError`].
    pub fn entries(&self, from_seq: u64, max: usize) -> Result<Vec<JournalEntry>, JournalError> {
        let _ = (from_seq, max);
        Ok(Vec::new())
    }

    /// # Errors
    /// [`JournalError`].
    pub fn verify_chain(&self) -> Result<u64, JournalError> {
        Ok(0)
    }

    #[must_use]
    pub fn oldest_unacked_at(&self) -> Option<Timestamp> {
        None
    }

    /// # Errors
    /// [`JournalError`].
    pub fn recent_transactions(
        &self,
        lane: Option<&LaneId>,
        container: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(GateTransaction, Option<Decision>)>, JournalError> {
        let _ = (lane, container, limit);
        Ok(Vec::new())
    }

    /// # Errors
    /// [`JournalError`].
    #[allow(clippy::type_complexity)]
    pub fn transaction(
        &self,
        id: &Uuid,
    ) -> Result<Option<(GateTransaction, Option<Decision>, Vec<OfficerAction>)>, JournalError> {
        let _ = id;
        Ok(None)
    }

    #[must_use]
    pub fn replica_meta(&self) -> ReplicaMeta {
        ReplicaMeta::default()
    }

    /// # Errors
    /// [`ReplicaError`].
    pub fn apply_batch(&self, batch: &ChangeBatch) -> Result<(), ReplicaError> {
        let _ = batch;
        Err(ReplicaError::Db("not implemented yet".into()))
    }

    /// # Errors
    /// [`ReplicaError`].
    pub fn replica_view(&self) -> Result<ReplicaSnapshot, ReplicaError> {
        Ok(ReplicaSnapshot {
            meta: self.replica_meta(),
        })
    }

    /// # Errors
    /// [`ReplicaError`].
    pub fn mark_synced(&self, at: Timestamp) -> Result<(), ReplicaError> {
        let _ = at;
        Ok(())
    }
}
