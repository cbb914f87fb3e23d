//! [`Store`] on redb: the store's file, ACID write transactions with `Durability::Immediate`
//! (one fsync per commit, so an `IngestAck` is only sent for entries on disk), and the
//! index file beside it (the event index and the programme roll-ups), written by a thread
//! of its own and durable about once a second, what it derives from each group kept
//! pending in the store until then ([`index_file`]).
//!
//! # Tables
//! | table | key | value |
//! |---|---|---|
//! | `agent_tokens_v1` | SHA-256 of token | `AgentRecord` |
//! | `gates_v1` | gate | `GateRow` (port, ack state, latest heartbeat) |
//! | `events_v1` | (gate, seq) | `StoredEvent` |
//! | `event_ids_v1` | (gate, entry id) | seq |
//! | `event_index_v2`, in the index file | (index key, at ms, gate, seq) as bytes in that order (`tables::index_row_key`) | () — index keys `t` (all), `g:GATE`, `l:GATE/LANE`, `c:CONTAINER`, `d:FAST` … |
//! | `event_txn_v1` | (transaction id, gate, seq) | () |
//! | `alerts_v1`, `alert_keys_v1` | id; (gate, seq, kind) → id | `Alert` |
//! | `cases_v1`, `case_index_v1`, `case_by_txn_v1` | id; (`all` or `s:STATE`, id); txn → id | `Case` |
//! | `counters_v1` | (scope, name) | u64 |
//! | `hourly_v1` | (gate, hour start s, FAST/STANDARD/INSPECT/EXCEPTION) | u64 |
//! | `programme_v1`, in the index file | (hour start s, group, FAST/STANDARD/INSPECT or `t:BUCKET`) | u64 ([`crate::rollup`]) |
//! | `programme_packed_v1`, in the index file | (level: day or month, period start s, group) | the group's figures in that period ([`crate::rollup::pack`]) |
//! | `programme_names_v1`, `programme_pending_v1`, in the index file | operator id; (gate, transaction id) | name as first declared; `Vec<Half>` |
//! | `index_pending_v2` | group number | the gate and runs of seqs each of the group's batches stored with effect, until the index file holds the group on disk (`index_pending_v1`, the rows and queued roll-ups themselves, from earlier versions: applied and deleted on open) |
//! | `changes_v1` | seq | `LoggedChange` |
//! | `operators_v1`, `mras_v1`, `consignments_v1` | operator id; (recognising, partner); consignment id | current record with the seq that last wrote it |
//! | `consignment_index_v1` | (`c:CONTAINER` or `p:PORT`, consignment id) | () |
//! | `audit_v1`, `users_v1`, `sessions_v1`, `meta_v1` | id; name; token hash; name | … |
//!
//! # Layout
//! - `tables`: the table definitions and the helpers every family shares (reading,
//!   inserting and updating records; ids, counters, audit entries).
//! - `event_tables`: agent tokens, gates, and ingest: the `IngestTarget` over one write
//!   transaction (chain rules in [`crate::ingest`]), heartbeats and gap alerts.
//! - `floor`: the schema's floor, figure 5's baseline: an ingest's event rows written as
//!   they are, through the same tables and group commit.
//! - `group`: group commit — batches that queue while the writer is busy are stored in
//!   one write transaction (one fsync), each caller answered after that commit.
//! - `case_tables`: cases and alerts, and the `CaseBook` the case rules write through.
//! - `registry_tables`: the change log and the current records, as a `RegistrySink`.
//! - `staff_tables`: audit log, staff users, sessions.
//! - `rollup_tables`: the programme roll-ups, folded by the index file's writer, read
//!   over a range.
//! - `query`: read-only queries (events, gates, statistics, alerts).
//! - this module: [`RedbStore`], whose [`Store`] operations are those functions (most
//!   of them written once for both backends, `store/operations.rs`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use protocol::i18n::Lang;
use protocol::operator::OperatorId;
use protocol::schema::{Change, Consignment, GateId, RegistryRecord};
use redb::Database;
use uuid::Uuid;

use super::{
    AuditNote, Delivery, Edit, GateRow, IngestOutcome, LoggedChange, SnapshotHead, SnapshotVisit,
    Stamp, Store, StoreError,
};
use crate::cases::CaseError;
use crate::model::{
    AgentRecord, Alert, AuditEntry, Case, CaseQuery, EventQuery, GateHealth, HourStats, Page,
    Session, StaffUser, StoredEvent, Summary, TokenHash,
};
use crate::portal::Company;

/// redb's page cache for central: bounded (redb's default is 1 GiB), large enough to keep
/// the indexes a day of a port network's events touches in memory.
pub const CACHE_BYTES: usize = 256 << 20;

/// The index file's page cache ([`index_file`]): its pages are small keys, a day's of
/// which fit well within it.
pub const INDEX_CACHE_BYTES: usize = 128 << 20;

/// The store's two files: the store and its event index ([`index_file`]). Family
/// functions that read or write the store alone take it as the `Database` it derefs to.
#[derive(Debug)]
pub(super) struct Files {
    db: Arc<Database>,
    index: Arc<Database>,
    indexer: index_file::Indexer,
}

impl std::ops::Deref for Files {
    type Target = Database;

    fn deref(&self) -> &Database {
        &self.db
    }
}

/// The embedded default store.
#[derive(Debug)]
pub struct RedbStore {
    files: Files,
    /// Ingest's writer: batches queued while it is busy commit together.
    group: group::GroupCommit,
}

impl RedbStore {
    /// Opens (or creates) the store file and creates every table, so readers never meet a
    /// missing table.
    ///
    /// # Errors
    /// When the file cannot be opened or is locked by another process.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, index_file::COMMIT_EVERY)
    }

    /// [`RedbStore::open`] with the index file's transaction committing after
    /// `index_commit_every` (tests hold it open to see what it holds before a search).
    fn open_with(path: &Path, index_commit_every: Duration) -> Result<Self, StoreError> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)?;
        let tx = db.begin_write()?;
        {
            tx.open_table(AGENT_TOKENS)?;
            tx.open_table(GATES)?;
            tx.open_table(EVENTS)?;
            tx.open_table(EVENT_IDS)?;
            tx.open_table(EVENT_TXN)?;
            tx.open_table(ALERTS)?;
            tx.open_table(ALERT_KEYS)?;
            tx.open_table(CASES)?;
            tx.open_table(CASE_INDEX)?;
            tx.open_table(CASE_BY_TXN)?;
            tx.open_table(CASE_BY_GATE_TXN)?;
            tx.open_table(COUNTERS)?;
            tx.open_table(HOURLY)?;
            tx.open_table(META)?;
            tx.open_table(CHANGES)?;
            tx.open_table(OPERATORS)?;
            tx.open_table(MRAS)?;
            tx.open_table(CONSIGNMENTS)?;
            tx.open_table(CONSIGNMENT_INDEX)?;
            tx.open_table(AUDIT)?;
            tx.open_table(USERS)?;
            tx.open_table(SESSIONS)?;
            tx.open_table(COMPANIES)?;
            tx.open_table(DOCUMENTS)?;
            rollup_tables::drop_daily(&tx)?;
        }
        tx.commit()?;
        let (index, groups) = index_file::open(path, &db, INDEX_CACHE_BYTES)?;
        let (db, index) = (Arc::new(db), Arc::new(index));
        let indexer = index_file::Indexer::start(
            Arc::clone(&db),
            Arc::clone(&index),
            groups,
            index_commit_every,
        )?;
        Ok(Self {
            files: Files { db, index, indexer },
            group: group::GroupCommit::new(groups),
        })
    }

    /// Runs a family function that only reads (for `family_operations!`); it begins
    /// its own read transaction.
    fn read<T>(&self, f: impl FnOnce(&Files) -> Result<T, StoreError>) -> Result<T, StoreError> {
        f(&self.files)
    }

    /// Runs a family function that writes (for `family_operations!`); it begins and
    /// commits its own write transaction.
    fn write<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        f(&self.files.db)
    }

    /// Writes the schema's floor for a batch (figure 5's baseline, [`FloorBatch`]):
    /// queued with ingest's batches and committed durably with its group, as an ingest
    /// is. Returns the highest seq written.
    ///
    /// # Errors
    /// Storage errors.
    pub fn write_floor(&self, batch: FloorBatch) -> Result<u64, StoreError> {
        self.group
            .ingest(&self.files, group::Work::Floor(batch))
            .map(|o| o.acked_through)
    }
}

impl Drop for RedbStore {
    /// Makes the index file's last commits durable, so the next open has nothing to apply
    /// (it would apply them from the store's pending groups otherwise).
    fn drop(&mut self) {
        self.files.indexer.stop();
        if let Ok(tx) = self.files.index.begin_write() {
            let _ = tx.commit();
        }
    }
}

mod case_tables;
mod company_tables;
mod event_tables;
mod export;
mod floor;
mod group;
pub mod index_file;
mod index_pending;
mod index_rebuild;
mod query;
mod registry_tables;
mod rollup_tables;
mod staff_tables;
mod tables;

pub use floor::FloorBatch;
pub use index_rebuild::{RebuildReport, rebuild as rebuild_index};
use tables::{
    AGENT_TOKENS, ALERT_KEYS, ALERTS, AUDIT, CASE_BY_GATE_TXN, CASE_BY_TXN, CASE_INDEX, CASES,
    CHANGES, COMPANIES, CONSIGNMENT_INDEX, CONSIGNMENTS, COUNTERS, DOCUMENTS, EVENT_IDS, EVENT_TXN,
    EVENTS, GATES, HOURLY, META, MRAS, OPERATORS, SESSIONS, USERS,
};

// ---------------------------------------------------------------------------------------
// the Store implementation: each operation is its family's function
// ---------------------------------------------------------------------------------------

impl Store for RedbStore {
    family_operations!();

    fn change_agent_tokens(&self, c: super::TokenChange<'_>) -> Result<usize, StoreError> {
        event_tables::change_agent_tokens(&self.files.db, c)
    }

    fn ingest(&self, batch: Delivery<'_>) -> Result<IngestOutcome, StoreError> {
        let batch = event_tables::Prepared::new(batch)?;
        self.group
            .ingest(&self.files, group::Work::Ingest(Box::new(batch)))
    }

    fn record_heartbeat(
        &self,
        health: &GateHealth,
        gap_alert_after: SignedDuration,
    ) -> Result<Vec<Case>, StoreError> {
        event_tables::record_heartbeat(&self.files.db, health, gap_alert_after)
    }

    fn append_changes(&self, changes: &[Change], by: Stamp<'_>) -> Result<u64, StoreError> {
        registry_tables::append_changes(&self.files.db, changes, by)
    }

    fn update_case(
        &self,
        id: u64,
        by: Stamp<'_>,
        change: &mut dyn FnMut(&mut Case) -> Result<String, CaseError>,
    ) -> Result<Case, CaseError> {
        case_tables::update_case(&self.files.db, id, by, change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{decode, encode};

    #[test]
    fn values_carry_a_version_byte_and_refuse_other_versions() {
        let bytes = encode(&42u32).expect("encode");
        assert_eq!(bytes[0], super::super::VALUE_VERSION);
        let mut other = bytes.clone();
        other[0] = 9;
        let err = decode::<u32>("t_v1", "k", &other).expect_err("version 9");
        assert!(err.to_string().contains("value version 9"), "{err}");
        assert_eq!(decode::<u32>("t_v1", "k", &bytes).expect("decode"), 42);
    }

    #[test]
    fn reopening_keeps_the_change_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.redb");
        {
            let s = RedbStore::open(&path).expect("open");
            let id = "R1".to_owned();
            s.append_changes(
                &[Change::RemoveConsignment { id }],
                Stamp::new("t", Timestamp::UNIX_EPOCH),
            )
            .expect("append");
        }
        let s = RedbStore::open(&path).expect("reopen");
        assert_eq!(s.last_seq().expect("seq"), 1);
    }
}
