//! The storage interface the rest of central uses, and its redb implementation.
//!
//! [`Store`] is deliberately narrow and speaks in domain operations ("ingest these
//! entries for this gate", "append these registry changes"), not in keys and values: a
//! backend implements each operation as one transaction of its own. That is what lets a
//! deployment that outgrows one machine add a distributed SQL backend (each operation one
//! serialisable SQL transaction, the indexes below as secondary indexes) without touching
//! the HTTP handlers. The rules that must not differ between backends live outside the
//! store and backends call them, implementing only their storage traits: the hash chain
//! and acknowledgement ([`crate::ingest`] over `IngestTarget`), when a case opens or gets
//! a note and what staff actions do ([`crate::cases`] over `CaseBook`, and
//! [`Store::update_case`]), how a registry change applies
//! ([`protocol::schema::Change::apply`] over `RegistrySink`), and which hourly figures a
//! decision counts under ([`crate::stats`]) and how the programme roll-ups grow
//! ([`crate::rollup::store`] over `RollupSink`).
//!
//! Every method blocks; async callers run them on `spawn_blocking`.
//!
//! [`RedbStore`] is the embedded default: one file, tables named `*_v1`, values are one
//! version byte ([`VALUE_VERSION`]) followed by JSON. [`PgStore`] keeps the same records
//! in PostgreSQL (`[store] url`), for deployments that outgrow one machine; both pass one
//! conformance suite (`central/tests/store_conformance.rs`).

#[macro_use]
mod operations;
pub mod copy;
mod pg_store;
mod redb_store;

use std::fmt;

use jiff::{SignedDuration, Timestamp};
use protocol::i18n::Lang;
use protocol::operator::OperatorId;
use protocol::registry::ApplyError;
use protocol::schema::{
    Change, Consignment, GateId, JournalEntry, RegistryRecord, SequencedChange,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::cases::CaseError;
use crate::ingest::{AgentState, Tally};
use crate::model::{
    AgentRecord, Alert, AuditEntry, Case, CaseQuery, EventQuery, GateHealth, HourStats, Page,
    Session, StaffUser, StoredEvent, Summary, TokenHash,
};
use crate::portal::Company;

pub use crate::model::{AuditNote, Stamp};
pub use crate::store_error::StoreError;
pub use pg_store::{LiveUpdate, PgStore};
pub use redb_store::index_file::path_for as redb_index_path;
pub use redb_store::{FloorBatch, RebuildReport, RedbStore, rebuild_index as rebuild_redb_index};

/// Leading byte of every stored value: the layout of the JSON that follows.
pub const VALUE_VERSION: u8 = 1;

/// A registry change as the log keeps it, with the ports it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedChange {
    pub seq: u64,
    pub at: Timestamp,
    pub actor: String,
    pub change: Change,
    /// Ports the change concerns; `None` for changes every port receives (operators,
    /// MRAs). For a consignment: the union of its ports before and after the change, so a
    /// port it moved away from learns to drop it.
    pub ports: Option<Vec<String>>,
}

impl LoggedChange {
    /// `change`, logged as change `seq` by `actor` at `at`, concerning `ports`.
    #[must_use]
    pub fn new(
        seq: u64,
        at: Timestamp,
        actor: &str,
        change: Change,
        ports: Option<Vec<String>>,
    ) -> Self {
        Self {
            seq,
            at,
            actor: actor.to_owned(),
            change,
            ports,
        }
    }
}

/// A change that [`Change::apply`] refused, as [`Store::append_changes`] reports it.
pub(crate) fn refused_change(e: ApplyError<StoreError>) -> StoreError {
    match e {
        ApplyError::UnknownOperator(op) => StoreError::UnknownOperator(op.to_string()),
        ApplyError::Schema(e) => StoreError::Refused(e.to_string()),
        ApplyError::Sink(e) => e,
    }
}

/// The audit entries (action, detail) of appending `changes` as the changes numbered
/// from `first` ([`Store::append_changes`]): one per status change, in order, then one
/// for all the others when there are any. Both backends write them.
pub(crate) fn change_audits(changes: &[Change], first: u64) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (seq, change) in (first..).zip(changes) {
        if let Change::SetStatus {
            operator,
            status,
            reason,
            ..
        } = change
        {
            let detail = format!("{operator} → {} ({reason}), seq {seq}", status.as_str());
            out.push(("registry.set_status", detail));
        }
    }
    let n = changes
        .iter()
        .filter(|c| !matches!(c, Change::SetStatus { .. }))
        .count();
    if n > 0 {
        let last = first + changes.len() as u64 - 1;
        let detail = format!("{n} upserts/removals, seq {first}..={last}");
        out.push(("registry.import", detail));
    }
    out
}

/// The registry as one port sees it, read in one consistent snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrySnapshot {
    pub last_seq: u64,
    /// Time of the change `last_seq` (or of the snapshot when the log is empty).
    pub as_of: Timestamp,
    /// One upsert per operator, MRA and port consignment, each with the seq of the change
    /// that last touched it, in seq order.
    pub changes: Vec<SequencedChange>,
}

/// What [`Store::snapshot_each`] hands each change to.
pub type SnapshotVisit<'a> = dyn FnMut(SequencedChange) -> Result<(), StoreError> + Send + 'a;

/// Where a snapshot read by [`Store::snapshot_each`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHead {
    pub last_seq: u64,
    /// Time of the change `last_seq` (or of the snapshot when the log is empty).
    pub as_of: Timestamp,
}

/// A gate with its agent state and latest heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateRow {
    pub gate: GateId,
    pub port: String,
    pub state: AgentState,
    pub health: Option<GateHealth>,
    /// Set when a token of the gate was revoked and none is usable; cleared when a new
    /// token is issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Timestamp>,
    /// The gate's latest `CONFIG_APPLIED` entry ([`crate::ingest::last_config_change`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_config: Option<crate::model::ConfigChange>,
}

impl GateRow {
    /// A gate's row before any of its entries or heartbeats (`port` empty for a gate
    /// that sends before it was registered).
    #[must_use]
    pub fn new(gate: GateId, port: String) -> Self {
        Self {
            gate,
            port,
            state: AgentState::default(),
            health: None,
            revoked_at: None,
            last_config: None,
        }
    }

    /// The row with a new token for `agent` stored, or what refuses it: a gate registered
    /// with another port. `None` when the stored row stays as it is; a new token lifts a
    /// gate's revocation. Both backends call it.
    pub(crate) fn with_token(
        stored: Option<Self>,
        agent: &AgentRecord,
    ) -> Result<Option<Self>, StoreError> {
        match stored {
            Some(row) if row.port != agent.port => Err(StoreError::GatePortConflict {
                gate: agent.gate.to_string(),
                existing: row.port,
                requested: agent.port.clone(),
            }),
            Some(mut row) => Ok(row.revoked_at.take().is_some().then_some(row)),
            None => Ok(Some(Self::new(agent.gate.clone(), agent.port.clone()))),
        }
    }
}

impl GateRow {
    /// Takes the agent state an ingest of `entries` left (`hashes`: each entry's hash
    /// check, as [`crate::ingest::ingest_checked`] had them) and the gate's latest
    /// configuration change among them ([`crate::ingest::last_config_change`]).
    pub(crate) fn ingested(
        &mut self,
        state: AgentState,
        entries: &[JournalEntry],
        hashes: &[Option<String>],
    ) {
        self.state = state;
        let latest = crate::ingest::last_config_change(entries, hashes, self.last_config.as_ref());
        if let Some(c) = latest {
            self.last_config = Some(c);
        }
    }
}

/// A batch of journal entries an agent delivered, as [`Store::ingest`] takes it.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// The gate whose journal the entries are.
    pub gate: &'a GateId,
    pub entries: &'a [JournalEntry],
    /// When central received the batch.
    pub now: Timestamp,
    /// How long a gap in the gate's journal may persist before it raises an alert.
    pub gap_alert_after: SignedDuration,
    /// Each entry's body as the JSON it arrived as ([`protocol::schema::ReceivedBatch`]),
    /// or nothing: the backend then serialises each body for its hash and stored JSON.
    pub bodies: &'a [&'a RawValue],
}

impl<'a> Delivery<'a> {
    /// The same delivery with each entry's body as received (`bodies[i]` is the text
    /// `entries[i].body` was read from); ignored unless there is one for every entry.
    #[must_use]
    pub fn with_bodies(self, bodies: &'a [&'a RawValue]) -> Self {
        Self { bodies, ..self }
    }

    /// The body of `entries[i]` as received, when the delivery has every entry's.
    #[must_use]
    pub fn body(&self, i: usize) -> Option<&'a RawValue> {
        if self.bodies.len() == self.entries.len() {
            self.bodies.get(i).copied()
        } else {
            None
        }
    }

    /// `gate`'s `entries`, received at `now`.
    #[must_use]
    pub fn new(
        gate: &'a GateId,
        entries: &'a [JournalEntry],
        now: Timestamp,
        gap_alert_after: SignedDuration,
    ) -> Self {
        Self {
            gate,
            entries,
            now,
            gap_alert_after,
            bodies: &[],
        }
    }
}

/// What a `change` of [`Store::update_user`] or [`Store::update_company`] does to the
/// record: returns the audit text, or refuses (nothing is written then).
pub type Edit<'a, T> = dyn FnMut(&mut T) -> Result<String, StoreError> + Send + 'a;

/// A change to a gate's agent tokens ([`Store::change_agent_tokens`]), made in one
/// transaction with one audit entry.
pub struct TokenChange<'a> {
    pub gate: &'a GateId,
    /// Called for every token of the gate; returns whether it changed the token.
    pub change: &'a mut (dyn FnMut(&mut AgentRecord) -> bool + Send),
    /// A token to add (rotation), stored after the changes.
    pub add: Option<(&'a TokenHash, &'a AgentRecord)>,
    pub actor: &'a str,
    pub action: &'a str,
    pub detail: &'a str,
    pub at: Timestamp,
}

impl fmt::Debug for TokenChange<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenChange")
            .field("gate", self.gate)
            .field("action", &self.action)
            .finish_non_exhaustive()
    }
}

/// The gate row's revocation mark after a token change: set (to `at`, or kept) when at
/// least one of the gate's tokens is revoked and none is usable at `at` (the others past
/// a rotation's grace), else cleared. Both backends call it.
pub(crate) fn gate_revocation(
    tokens: &[AgentRecord],
    previous: Option<Timestamp>,
    at: Timestamp,
) -> Option<Timestamp> {
    let revoked =
        tokens.iter().any(|t| t.revoked_at.is_some()) && tokens.iter().all(|t| !t.is_live(at));
    revoked.then(|| previous.unwrap_or(at))
}

/// What one ingest did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestOutcome {
    pub acked_through: u64,
    pub tally: Tally,
    /// Cases opened or changed by this batch (for the live stream).
    pub cases: Vec<Case>,
}

impl IngestOutcome {
    /// What an ingest that left the gate's row `row`, counted `tally` and opened or
    /// changed `cases` (each reported once, [`crate::cases::last_by_id`]) did.
    pub(crate) fn new(row: &GateRow, tally: Tally, cases: Vec<Case>) -> Self {
        Self {
            acked_through: row.state.acked_through,
            tally,
            cases: crate::cases::last_by_id(cases),
        }
    }
}

/// The narrow storage interface (see the module documentation).
pub trait Store: Send + Sync + fmt::Debug + 'static {
    // -- health -------------------------------------------------------------------------
    /// Whether the backend can serve requests now (central's `/readyz`). An embedded
    /// file that opened is always ready.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    fn ready(&self) -> Result<(), StoreError> {
        Ok(())
    }

    // -- agents -------------------------------------------------------------------------
    /// Stores a token hash for a gate; registers the gate with its port on first use.
    ///
    /// # Errors
    /// [`StoreError::GatePortConflict`] when the gate exists with another port.
    fn add_agent(&self, token: &TokenHash, agent: &AgentRecord) -> Result<(), StoreError>;
    /// The agent a token hash belongs to.
    fn agent_for_token(&self, token: &TokenHash) -> Result<Option<AgentRecord>, StoreError>;
    /// Every token record of `gate` (revoked and expired ones included), in no order.
    fn agent_tokens(&self, gate: &GateId) -> Result<Vec<AgentRecord>, StoreError>;
    /// Applies `c.change` to every token of `c.gate`, adds `c.add`, updates the gate's
    /// revocation mark ([`gate_revocation`]) and writes one audit entry, in one
    /// transaction. Returns how many existing tokens changed.
    ///
    /// # Errors
    /// [`StoreError::UnknownGate`] when the gate was never registered.
    fn change_agent_tokens(&self, c: TokenChange<'_>) -> Result<usize, StoreError>;

    // -- events -------------------------------------------------------------------------
    /// Checks and stores a batch (rules in [`crate::ingest`]) in one transaction; opens
    /// cases for seal exceptions and alerts.
    fn ingest(&self, batch: Delivery<'_>) -> Result<IngestOutcome, StoreError>;
    /// Records a heartbeat as the gate's latest health; may raise a persisting-gap alert.
    fn record_heartbeat(
        &self,
        health: &GateHealth,
        gap_alert_after: SignedDuration,
    ) -> Result<Vec<Case>, StoreError>;
    /// Every registered gate.
    fn gates(&self) -> Result<Vec<GateRow>, StoreError>;
    /// Events matching `q`, oldest first, one page.
    fn events(&self, q: &EventQuery) -> Result<Page<StoredEvent>, StoreError>;
    /// Every stored event of `gate` about one of its gate transactions.
    fn transaction_events(&self, gate: &GateId, txn: &Uuid)
    -> Result<Vec<StoredEvent>, StoreError>;
    /// Decision counts per gate and hour in `[from, to)`.
    fn hourly_stats(
        &self,
        gate: Option<&GateId>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<HourStats>, StoreError>;
    /// The programme roll-ups ([`crate::rollup`]) summed over the hours whose start is
    /// in `[hour_start(from), to)` (from the first hour when `from` is `None`).
    fn programme_counts(
        &self,
        from: Option<Timestamp>,
        to: Timestamp,
    ) -> Result<crate::rollup::ProgrammeCounts, StoreError>;
    /// Folds up to `max` ingested batches whose programme roll-ups wait in a queue
    /// (PostgreSQL: ingest queues them and any central instance folds them, many at
    /// once, one at a time; [`Store::programme_counts`] counts what still waits) and
    /// returns how many: 0 when nothing waits. A store that writes the
    /// roll-ups at ingest (redb) has nothing to fold.
    fn fold_rollups(&self, max: usize) -> Result<usize, StoreError> {
        let _ = max;
        Ok(0)
    }
    /// Totals.
    fn summary(&self) -> Result<Summary, StoreError>;
    /// Integrity alerts, newest first.
    fn alerts(&self, limit: usize) -> Result<Vec<Alert>, StoreError>;
    /// One alert.
    fn alert(&self, id: u64) -> Result<Option<Alert>, StoreError>;

    // -- registry -----------------------------------------------------------------------
    /// Appends changes to the log and applies them to the current registry, in one
    /// transaction, with one audit entry. Returns the last seq (the current one when
    /// `changes` is empty).
    ///
    /// # Errors
    /// [`StoreError::UnknownOperator`] for a status change of an operator not in the
    /// registry (nothing is appended).
    fn append_changes(&self, changes: &[Change], by: Stamp<'_>) -> Result<u64, StoreError>;
    /// The latest change seq (0 when the log is empty).
    fn last_seq(&self) -> Result<u64, StoreError>;
    /// Up to `limit` logged changes after `after`, in order.
    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<LoggedChange>, StoreError>;
    /// Everything a port replicates, in seq order, read in one consistent snapshot.
    ///
    /// # Errors
    /// As [`Store::snapshot_each`].
    fn snapshot(&self, port: &str, now: Timestamp) -> Result<RegistrySnapshot, StoreError> {
        let mut changes = Vec::new();
        let head = self.snapshot_each(port, now, &mut |c| {
            changes.push(c);
            Ok(())
        })?;
        changes.sort_by_key(|c| c.seq);
        Ok(RegistrySnapshot {
            last_seq: head.last_seq,
            as_of: head.as_of,
            changes,
        })
    }
    /// Everything a port replicates, handed to `visit` one change at a time in the
    /// backend's read order (operators, MRAs, then the port's consignments; not seq
    /// order) within one consistent read, so a caller that writes as it goes (the
    /// chunked snapshot) never holds the whole registry. A `visit` error ends the read.
    fn snapshot_each(
        &self,
        port: &str,
        now: Timestamp,
        visit: &mut SnapshotVisit<'_>,
    ) -> Result<SnapshotHead, StoreError>;
    /// One operator's current record.
    fn operator(&self, id: &OperatorId) -> Result<Option<RegistryRecord>, StoreError>;
    /// Consignments that declare a container.
    fn consignments_for_container(&self, container: &str) -> Result<Vec<Consignment>, StoreError>;

    // -- cases --------------------------------------------------------------------------
    /// Cases matching `q`, newest first, one page.
    fn cases(&self, q: &CaseQuery) -> Result<Page<Case>, StoreError>;
    /// One case.
    fn case(&self, id: u64) -> Result<Option<Case>, StoreError>;
    /// Loads a case, lets `change` change it (the rule, [`crate::cases::apply`], is the
    /// caller's), then saves it with an audit entry `case {id}: {what}` where `what` is
    /// what `change` returned, in one transaction. Nothing is written when `change` fails.
    ///
    /// # Errors
    /// [`CaseError::NotFound`], `change`'s error, or [`CaseError::Store`].
    fn update_case(
        &self,
        id: u64,
        by: Stamp<'_>,
        change: &mut dyn FnMut(&mut Case) -> Result<String, CaseError>,
    ) -> Result<Case, CaseError>;

    // -- audit, users, sessions ---------------------------------------------------------
    /// Appends an audit entry.
    fn audit(&self, note: AuditNote<'_>) -> Result<(), StoreError>;
    /// Audit entries with id > `after`, oldest first.
    fn audit_log(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
    /// Adds a staff user.
    ///
    /// # Errors
    /// [`StoreError::UserExists`].
    fn add_user(&self, user: &StaffUser) -> Result<(), StoreError>;
    /// A staff user by name.
    fn user(&self, name: &str) -> Result<Option<StaffUser>, StoreError>;
    /// Stores a session under its token hash.
    fn put_session(&self, token: &TokenHash, s: &Session) -> Result<(), StoreError>;
    /// A session by token hash (expired ones included; the caller checks).
    fn session(&self, token: &TokenHash) -> Result<Option<Session>, StoreError>;
    /// Ends a session (logout); ending an unknown one is not an error.
    fn delete_session(&self, token: &TokenHash) -> Result<(), StoreError>;
    /// Every staff user, by name.
    fn users(&self) -> Result<Vec<StaffUser>, StoreError>;
    /// Loads a user, lets `change` change them (the rule is the caller's), then saves them
    /// with an audit entry `user.access` stamped `by` whose detail is what `change` returned,
    /// in one transaction. Returns the changed user.
    ///
    /// # Errors
    /// [`StoreError::UnknownUser`], or `change`'s error (nothing is written then).
    fn update_user(
        &self,
        name: &str,
        by: Stamp<'_>,
        change: &mut Edit<'_, StaffUser>,
    ) -> Result<StaffUser, StoreError>;
    /// Sets a user's dashboard language, with an audit entry.
    ///
    /// # Errors
    /// [`StoreError::UnknownUser`].
    fn set_user_lang(&self, name: &str, lang: Lang, at: Timestamp) -> Result<(), StoreError>;

    // -- registry pages -----------------------------------------------------------------
    /// Operators whose id or name contains `text` (case-insensitive), by id, at most
    /// `limit`.
    fn search_operators(&self, text: &str, limit: usize)
    -> Result<Vec<RegistryRecord>, StoreError>;
    /// The logged changes about one operator (upserts and status changes), oldest first,
    /// at most the last `limit`.
    fn operator_changes(
        &self,
        id: &OperatorId,
        limit: usize,
    ) -> Result<Vec<LoggedChange>, StoreError>;

    // -- programme portal ---------------------------------------------------------------
    /// Adds a company (keyed by its operator id) and, when given, its first user, in one
    /// transaction with one audit entry `company.add` stamped `by`.
    ///
    /// # Errors
    /// [`StoreError::Refused`] when the company exists, [`StoreError::UserExists`].
    fn add_company(
        &self,
        company: &Company,
        user: Option<&StaffUser>,
        by: Stamp<'_>,
    ) -> Result<(), StoreError>;
    /// One company by its operator id's canonical text.
    fn company(&self, operator: &str) -> Result<Option<Company>, StoreError>;
    /// Every company, by operator id.
    fn companies(&self) -> Result<Vec<Company>, StoreError>;
    /// Loads a company, lets `change` change it (the rule, in [`crate::portal`], is the
    /// caller's), then saves it with an audit entry `company.change` whose detail is what
    /// `change` returned, in one transaction. Nothing is written when `change` fails.
    ///
    /// # Errors
    /// [`unknown_company`] when it is not registered, or `change`'s error.
    fn update_company(
        &self,
        operator: &str,
        by: Stamp<'_>,
        change: &mut Edit<'_, Company>,
    ) -> Result<Company, StoreError>;
    /// Stores a company document's bytes under their SHA-256 (lowercase hex, the
    /// caller's); the same bytes stored again change nothing. The company record lists
    /// the document ([`Store::update_company`], audited) after its bytes are stored, so a
    /// listed document always has them.
    ///
    /// # Errors
    /// Backend errors.
    fn put_document(&self, sha256: &str, body: &[u8]) -> Result<(), StoreError>;
    /// A document's bytes by their SHA-256.
    ///
    /// # Errors
    /// Backend errors.
    fn document(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError>;
}

/// The audit detail of [`Store::add_company`]; both backends write it.
pub(crate) fn company_added(company: &Company, user: Option<&StaffUser>) -> String {
    let mut out = format!("company {} ({})", company.operator, company.name);
    if let Some(u) = user {
        out.push_str(&format!(", user {}", u.name));
    }
    out
}

/// Adds a counter's value to the totals it feeds (`scope`, `name`: as ingest, the cases
/// and the registry count them); both backends sum theirs through it.
pub(crate) fn count_in_summary(s: &mut Summary, scope: &str, name: &str, n: u64) {
    match (scope, name) {
        (g, "events") if g.starts_with("gate:") => {
            s.events_per_gate.insert(g["gate:".len()..].to_owned(), n);
        }
        ("decision", outcome) => {
            s.decisions.insert(outcome.to_owned(), n);
        }
        ("cases", "OPEN") => s.cases_open = n,
        ("cases", "ACKNOWLEDGED") => s.cases_acknowledged = n,
        ("cases", "RESOLVED") => s.cases_resolved = n,
        ("alerts", "total") => s.alerts = n,
        ("registry", "operators") => s.operators = n,
        ("registry", "consignments") => s.consignments = n,
        _ => {}
    }
}

/// A page of events; when `more` follow, its cursor names the last event's (agent
/// time in ms, gate, seq), where the next page starts after.
pub(crate) fn event_page(
    items: Vec<StoredEvent>,
    more: bool,
    last: Option<(i64, &str, impl fmt::Display)>,
) -> Page<StoredEvent> {
    let next_cursor = last
        .filter(|_| more)
        .map(|(at, g, s)| format!("{at}.{g}.{s}"));
    Page { items, next_cursor }
}

/// The audit detail of issuing `agent`'s token; both backends write it.
pub(crate) fn token_issued(agent: &AgentRecord) -> String {
    format!("token for gate {} (port {})", agent.gate, agent.port)
}

/// The audit detail of [`Store::add_user`]; both backends write it.
pub(crate) fn user_added(user: &StaffUser) -> String {
    format!("user {} (role {})", user.name, user.role)
}

/// The audit detail of [`Store::update_case`] (`what`: the change's own text).
pub(crate) fn case_changed(id: u64, what: &str) -> String {
    format!("case {id}: {what}")
}

/// The audit detail of [`Store::update_user`] (`what`: the change's own text).
pub(crate) fn user_changed(name: &str, what: &str) -> String {
    format!("user {name}: {what}")
}

/// The audit detail of [`Store::update_company`] (`what`: the change's own text).
pub(crate) fn company_changed(operator: &str, what: &str) -> String {
    format!("company {operator}: {what}")
}

/// The change [`Store::set_user_lang`] makes to a user's record; both backends apply it.
pub(crate) fn set_lang(lang: Lang) -> impl FnMut(&mut StaffUser) -> Result<(), StoreError> {
    move |u| {
        u.lang = lang;
        Ok(())
    }
}

/// The audit detail of [`Store::set_user_lang`].
pub(crate) fn lang_set(lang: Lang) -> String {
    format!("language {}", lang.tag())
}

/// The error of [`Store::add_company`] for a company that is registered already.
pub(crate) fn company_exists(operator: &str) -> StoreError {
    StoreError::Refused(format!("company {operator} is already registered"))
}

/// The error of [`Store::update_user`] and [`Store::set_user_lang`] for an unknown user.
pub(crate) fn unknown_user(name: &str) -> StoreError {
    StoreError::UnknownUser(name.to_owned())
}

/// The error of [`Store::update_company`] for a company that is not registered.
pub(crate) fn unknown_company(operator: &str) -> StoreError {
    StoreError::Refused(format!("company {operator} is not registered"))
}

/// Encodes a value: version byte, then JSON.
///
/// # Errors
/// [`StoreError::Backend`] if serialisation fails (it does not for our records).
pub(crate) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![VALUE_VERSION];
    serde_json::to_writer(&mut out, v).map_err(|e| StoreError::Backend(e.to_string()))?;
    Ok(out)
}

/// Decodes a value written by [`encode`].
///
/// # Errors
/// [`StoreError::Corrupt`] naming table and key.
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(
    table: &'static str,
    key: impl fmt::Display,
    bytes: &[u8],
) -> Result<T, StoreError> {
    let corrupt = |why: String| StoreError::Corrupt {
        table,
        key: key.to_string(),
        why,
    };
    match bytes.split_first() {
        Some((&VALUE_VERSION, json)) => {
            serde_json::from_slice(json).map_err(|e| corrupt(e.to_string()))
        }
        Some((v, _)) => Err(corrupt(format!(
            "value version {v}; this build reads {VALUE_VERSION}"
        ))),
        None => Err(corrupt("empty value".into())),
    }
}
