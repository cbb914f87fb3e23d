//! [`Store`] on redb: one file, ACID write transactions with `Durability::Immediate`
//! (one fsync per commit, so an `IngestAck` is only sent for entries on disk).
//!
//! # Tables
//! | table | key | value |
//! |---|---|---|
//! | `agent_tokens_v1` | SHA-256 of token | `AgentRecord` |
//! | `gates_v1` | gate | `GateRow` (port, ack state, latest heartbeat) |
//! | `events_v1` | (gate, seq) | `StoredEvent` |
//! | `event_ids_v1` | (gate, entry id) | seq |
//! | `event_index_v1` | (index key, at ms, gate, seq) | () — index keys `t` (all), `g:GATE`, `l:GATE/LANE`, `c:CONTAINER`, `d:FAST` … |
//! | `event_txn_v1` | (transaction id, gate, seq) | () |
//! | `alerts_v1`, `alert_keys_v1` | id; (gate, seq, kind) → id | `Alert` |
//! | `cases_v1`, `case_index_v1`, `case_by_txn_v1` | id; (`all` or `s:STATE`, id); txn → id | `Case` |
//! | `counters_v1` | (scope, name) | u64 |
//! | `hourly_v1` | (gate, hour start s, FAST/STANDARD/INSPECT/EXCEPTION) | u64 |
//! | `programme_v1` | (hour start s, group, FAST/STANDARD/INSPECT or `t:BUCKET`) | u64 ([`crate::rollup`]) |
//! | `programme_packed_v1` | (level: day or month, period start s, group) | the group's figures in that period ([`crate::rollup::pack`]) |
//! | `programme_names_v1`, `programme_pending_v1` | operator id; (gate, transaction id) | name as first declared; `Vec<Half>` |
//! | `changes_v1` | seq | `LoggedChange` |
//! | `operators_v1`, `mras_v1`, `consignments_v1` | operator id; (recognising, partner); consignment id | current record with the seq that last wrote it |
//! | `consignment_index_v1` | (`c:CONTAINER` or `p:PORT`, consignment id) | () |
//! | `audit_v1`, `users_v1`, `sessions_v1`, `meta_v1` | id; name; token hash; name | … |
//!
//! # Layout
//! - `tables`: the table definitions and the write helpers every family shares (ids,
//!   counters, audit entries).
//! - `event_tables`: agent tokens, gates, and ingest: the `IngestTarget` over one write
//!   transaction (chain rules in [`crate::ingest`]), heartbeats and gap alerts.
//! - `floor`: the schema's floor, figure 5's baseline: an ingest's event rows written as
//!   they are, through the same tables and group commit.
//! - `group`: group commit — batches that queue while the writer is busy are stored in
//!   one write transaction (one fsync), each caller answered after that commit.
//! - `case_tables`: cases and alerts, and the `CaseBook` the case rules write through.
//! - `registry_tables`: the change log and the current records, as a `RegistrySink`.
//! - `staff_tables`: audit log, staff users, sessions.
//! - `rollup_tables`: the programme roll-ups, written at ingest, read over a range.
//! - `query`: read-only queries (events, gates, statistics, alerts).
//! - this module: [`RedbStore`], whose [`Store`] operations are those functions.

use std::path::Path;

use jiff::{SignedDuration, Timestamp};
use protocol::i18n::Lang;
use protocol::operator::OperatorId;
use protocol::schema::{Change, Consignment, GateId, JournalEntry, RegistryRecord};
use redb::Database;
use uuid::Uuid;

use super::{
    Edit, GateRow, IngestOutcome, LoggedChange, SnapshotHead, SnapshotVisit, Store, StoreError,
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

/// The embedded default store.
#[derive(Debug)]
pub struct RedbStore {
    db: Database,
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
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)?;
        let tx = db.begin_write()?;
        {
            tx.open_table(AGENT_TOKENS)?;
            tx.open_table(GATES)?;
            tx.open_table(EVENTS)?;
            tx.open_table(EVENT_IDS)?;
            tx.open_table(EVENT_INDEX)?;
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
            rollup_tables::create(&tx)?;
        }
        tx.commit()?;
        Ok(Self {
            db,
            group: group::GroupCommit::default(),
        })
    }

    /// Writes the schema's floor for a batch (figure 5's baseline, [`FloorBatch`]):
    /// queued with ingest's batches and committed durably with its group, as an ingest
    /// is. Returns the highest seq written.
    ///
    /// # Errors
    /// Storage errors.
    pub fn write_floor(&self, batch: FloorBatch) -> Result<u64, StoreError> {
        self.group
            .ingest(&self.db, group::Work::Floor(batch))
            .map(|o| o.acked_through)
    }
}

mod case_tables;
mod company_tables;
mod event_tables;
mod export;
mod floor;
mod group;
mod query;
mod registry_tables;
mod rollup_tables;
mod staff_tables;
mod tables;

pub use floor::FloorBatch;
use tables::{
    AGENT_TOKENS, ALERT_KEYS, ALERTS, AUDIT, CASE_BY_GATE_TXN, CASE_BY_TXN, CASE_INDEX, CASES,
    CHANGES, COMPANIES, CONSIGNMENT_INDEX, CONSIGNMENTS, COUNTERS, DOCUMENTS, EVENT_IDS,
    EVENT_INDEX, EVENT_TXN, EVENTS, GATES, HOURLY, META, MRAS, OPERATORS, SESSIONS, USERS,
};

// ---------------------------------------------------------------------------------------
// the Store implementation: each operation is its family's function
// ---------------------------------------------------------------------------------------

impl Store for RedbStore {
    fn add_agent(&self, token: &TokenHash, agent: &AgentRecord) -> Result<(), StoreError> {
        event_tables::add_agent(&self.db, token, agent)
    }

    fn agent_for_token(&self, token: &TokenHash) -> Result<Option<AgentRecord>, StoreError> {
        event_tables::agent_for_token(&self.db, token)
    }

    fn agent_tokens(&self, gate: &GateId) -> Result<Vec<AgentRecord>, StoreError> {
        event_tables::agent_tokens(&self.db, gate)
    }

    fn change_agent_tokens(&self, c: super::TokenChange<'_>) -> Result<usize, StoreError> {
        event_tables::change_agent_tokens(&self.db, c)
    }

    fn ingest(
        &self,
        gate: &GateId,
        entries: &[JournalEntry],
        now: Timestamp,
        gap_alert_after: SignedDuration,
    ) -> Result<IngestOutcome, StoreError> {
        let batch =
            event_tables::Prepared::new(gate.clone(), entries.to_vec(), now, gap_alert_after)?;
        self.group
            .ingest(&self.db, group::Work::Ingest(Box::new(batch)))
    }

    fn record_heartbeat(
        &self,
        health: &GateHealth,
        gap_alert_after: SignedDuration,
    ) -> Result<Vec<Case>, StoreError> {
        event_tables::record_heartbeat(&self.db, health, gap_alert_after)
    }

    fn gates(&self) -> Result<Vec<GateRow>, StoreError> {
        query::gates(&self.db)
    }

    fn events(&self, q: &EventQuery) -> Result<Page<StoredEvent>, StoreError> {
        query::events(&self.db, q)
    }

    fn transaction_events(
        &self,
        gate: &GateId,
        txn: &Uuid,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        query::transaction_events(&self.db, gate, txn)
    }

    fn hourly_stats(
        &self,
        gate: Option<&GateId>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<HourStats>, StoreError> {
        query::hourly_stats(&self.db, gate, from, to)
    }

    fn programme_counts(
        &self,
        from: Option<Timestamp>,
        to: Timestamp,
    ) -> Result<crate::rollup::ProgrammeCounts, StoreError> {
        rollup_tables::programme_counts(&self.db, from, to)
    }

    fn summary(&self) -> Result<Summary, StoreError> {
        query::summary(&self.db)
    }

    fn alerts(&self, limit: usize) -> Result<Vec<Alert>, StoreError> {
        query::alerts(&self.db, limit)
    }

    fn alert(&self, id: u64) -> Result<Option<Alert>, StoreError> {
        query::alert(&self.db, id)
    }

    fn append_changes(
        &self,
        changes: &[Change],
        actor: &str,
        at: Timestamp,
    ) -> Result<u64, StoreError> {
        registry_tables::append_changes(&self.db, changes, actor, at)
    }

    fn last_seq(&self) -> Result<u64, StoreError> {
        registry_tables::last_seq(&self.db)
    }

    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<LoggedChange>, StoreError> {
        registry_tables::changes_after(&self.db, after, limit)
    }

    fn snapshot_each(
        &self,
        port: &str,
        now: Timestamp,
        visit: &mut SnapshotVisit<'_>,
    ) -> Result<SnapshotHead, StoreError> {
        registry_tables::snapshot_each(&self.db, port, now, visit)
    }

    fn operator(&self, id: &OperatorId) -> Result<Option<RegistryRecord>, StoreError> {
        registry_tables::operator(&self.db, id)
    }

    fn consignments_for_container(&self, container: &str) -> Result<Vec<Consignment>, StoreError> {
        registry_tables::consignments_for_container(&self.db, container)
    }

    fn cases(&self, q: &CaseQuery) -> Result<Page<Case>, StoreError> {
        case_tables::cases(&self.db, q)
    }

    fn case(&self, id: u64) -> Result<Option<Case>, StoreError> {
        case_tables::case(&self.db, id)
    }

    fn update_case(
        &self,
        id: u64,
        actor: &str,
        at: Timestamp,
        change: &mut dyn FnMut(&mut Case) -> Result<String, CaseError>,
    ) -> Result<Case, CaseError> {
        case_tables::update_case(&self.db, id, actor, at, change)
    }

    fn audit(
        &self,
        actor: &str,
        action: &str,
        detail: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        staff_tables::audit(&self.db, actor, action, detail, at)
    }

    fn audit_log(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        staff_tables::audit_log(&self.db, after, limit)
    }

    fn add_user(&self, user: &StaffUser) -> Result<(), StoreError> {
        staff_tables::add_user(&self.db, user)
    }

    fn user(&self, name: &str) -> Result<Option<StaffUser>, StoreError> {
        staff_tables::user(&self.db, name)
    }

    fn put_session(&self, token: &TokenHash, s: &Session) -> Result<(), StoreError> {
        staff_tables::put_session(&self.db, token, s)
    }

    fn session(&self, token: &TokenHash) -> Result<Option<Session>, StoreError> {
        staff_tables::session(&self.db, token)
    }

    fn delete_session(&self, token: &TokenHash) -> Result<(), StoreError> {
        staff_tables::delete_session(&self.db, token)
    }

    fn users(&self) -> Result<Vec<StaffUser>, StoreError> {
        staff_tables::users(&self.db)
    }

    fn update_user(
        &self,
        name: &str,
        actor: &str,
        at: Timestamp,
        change: &mut Edit<'_, StaffUser>,
    ) -> Result<StaffUser, StoreError> {
        staff_tables::update_user(&self.db, name, actor, at, change)
    }

    fn set_user_lang(&self, name: &str, lang: Lang, at: Timestamp) -> Result<(), StoreError> {
        staff_tables::set_user_lang(&self.db, name, lang, at)
    }

    fn search_operators(
        &self,
        text: &str,
        limit: usize,
    ) -> Result<Vec<RegistryRecord>, StoreError> {
        registry_tables::search_operators(&self.db, text, limit)
    }

    fn operator_changes(
        &self,
        id: &OperatorId,
        limit: usize,
    ) -> Result<Vec<LoggedChange>, StoreError> {
        registry_tables::operator_changes(&self.db, id, limit)
    }

    fn add_company(
        &self,
        company: &Company,
        user: Option<&StaffUser>,
        actor: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        company_tables::add_company(&self.db, company, user, actor, at)
    }

    fn company(&self, operator: &str) -> Result<Option<Company>, StoreError> {
        company_tables::company(&self.db, operator)
    }

    fn companies(&self) -> Result<Vec<Company>, StoreError> {
        company_tables::companies(&self.db)
    }

    fn update_company(
        &self,
        operator: &str,
        actor: &str,
        at: Timestamp,
        change: &mut Edit<'_, Company>,
    ) -> Result<Company, StoreError> {
        company_tables::update_company(&self.db, operator, actor, at, change)
    }

    fn put_document(&self, sha256: &str, body: &[u8]) -> Result<(), StoreError> {
        company_tables::put_document(&self.db, sha256, body)
    }

    fn document(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        company_tables::document(&self.db, sha256)
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
                "t",
                Timestamp::UNIX_EPOCH,
            )
            .expect("append");
        }
        let s = RedbStore::open(&path).expect("reopen");
        assert_eq!(s.last_seq().expect("seq"), 1);
    }
}
