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
//! | `changes_v1` | seq | `LoggedChange` |
//! | `operators_v1`, `mras_v1`, `consignments_v1` | operator id; (recognising, partner); consignment id | current record with the seq that last wrote it |
//! | `consignment_index_v1` | (`c:CONTAINER` or `p:PORT`, consignment id) | () |
//! | `audit_v1`, `users_v1`, `sessions_v1`, `meta_v1` | id; name; token hash; name | … |

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::path::Path;

use jiff::{SignedDuration, Timestamp};
use protocol::i18n::Lang;
use protocol::operator::OperatorId;
use protocol::schema::{
    ActionKind, Change, Consignment, EventBody, GateId, JournalEntry, LaneDecision, MraRecord,
    RegistryRecord, SequencedChange,
};
use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    GateRow, IngestOutcome, LoggedChange, RegistrySnapshot, Store, StoreError, decode, encode,
};
use crate::cases;
use crate::ingest::{self, AgentState, IngestTarget, Link};
use crate::model::{
    AgentRecord, Alert, AlertKind, AuditEntry, Case, CaseAction, CaseQuery, CaseState, EventQuery,
    GateHealth, HourStats, Page, Session, StaffUser, StoredEvent, Summary, TokenHash,
};

const AGENT_TOKENS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("agent_tokens_v1");
const GATES: TableDefinition<&str, &[u8]> = TableDefinition::new("gates_v1");
const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("events_v1");
const EVENT_IDS: TableDefinition<(&str, u128), u64> = TableDefinition::new("event_ids_v1");
const EVENT_INDEX: TableDefinition<(&str, i64, &str, u64), ()> =
    TableDefinition::new("event_index_v1");
const EVENT_TXN: TableDefinition<(u128, &str, u64), ()> = TableDefinition::new("event_txn_v1");
const ALERTS: TableDefinition<u64, &[u8]> = TableDefinition::new("alerts_v1");
const ALERT_KEYS: TableDefinition<(&str, u64, &str), u64> = TableDefinition::new("alert_keys_v1");
const CASES: TableDefinition<u64, &[u8]> = TableDefinition::new("cases_v1");
const CASE_INDEX: TableDefinition<(&str, u64), ()> = TableDefinition::new("case_index_v1");
const CASE_BY_TXN: TableDefinition<u128, u64> = TableDefinition::new("case_by_txn_v1");
const COUNTERS: TableDefinition<(&str, &str), u64> = TableDefinition::new("counters_v1");
const HOURLY: TableDefinition<(&str, i64, &str), u64> = TableDefinition::new("hourly_v1");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta_v1");
const CHANGES: TableDefinition<u64, &[u8]> = TableDefinition::new("changes_v1");
const OPERATORS: TableDefinition<&str, &[u8]> = TableDefinition::new("operators_v1");
const MRAS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("mras_v1");
const CONSIGNMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("consignments_v1");
const CONSIGNMENT_INDEX: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("consignment_index_v1");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_v1");
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users_v1");
const SESSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sessions_v1");

/// Most index rows one query examines before returning a page (with a cursor to go on).
const MAX_SCAN: usize = 20_000;

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Backend(redb::Error::from(e).to_string())
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// A record together with the change seq that last wrote it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Versioned<T> {
    seq: u64,
    value: T,
}

/// redb's page cache for central: bounded (redb's default is 1 GiB), large enough to keep
/// the indexes a day of a port network's events touches in memory.
pub const CACHE_BYTES: usize = 256 << 20;

/// The embedded default store.
#[derive(Debug)]
pub struct RedbStore {
    db: Database,
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
        }
        tx.commit()?;
        Ok(Self { db })
    }

    fn read(&self) -> Result<ReadTransaction, StoreError> {
        Ok(self.db.begin_read()?)
    }
}

// ---------------------------------------------------------------------------------------
// helpers shared by write paths
// ---------------------------------------------------------------------------------------

fn next_id(tx: &WriteTransaction, name: &str) -> Result<u64, StoreError> {
    let mut meta = tx.open_table(META)?;
    let n = meta.get(name)?.map_or(0, |g| g.value()) + 1;
    meta.insert(name, n)?;
    Ok(n)
}

fn bump(tx: &WriteTransaction, scope: &str, name: &str, by: i64) -> Result<(), StoreError> {
    let mut t = tx.open_table(COUNTERS)?;
    let cur = t.get((scope, name))?.map_or(0, |g| g.value());
    let new = cur.saturating_add_signed(by);
    t.insert((scope, name), new)?;
    Ok(())
}

fn write_audit(
    tx: &WriteTransaction,
    actor: &str,
    action: &str,
    detail: &str,
    at: Timestamp,
) -> Result<(), StoreError> {
    let id = next_id(tx, "audit_id")?;
    let e = AuditEntry {
        id,
        at,
        actor: actor.to_owned(),
        action: action.to_owned(),
        detail: detail.to_owned(),
    };
    tx.open_table(AUDIT)?.insert(id, encode(&e)?.as_slice())?;
    Ok(())
}

fn load_case(tx: &WriteTransaction, id: u64) -> Result<Option<Case>, StoreError> {
    let t = tx.open_table(CASES)?;
    let v = t.get(id)?;
    v.map(|g| decode("cases_v1", id, g.value())).transpose()
}

/// Saves a case and keeps its state index and counters in step.
fn save_case(tx: &WriteTransaction, case: &Case, old: Option<CaseState>) -> Result<(), StoreError> {
    tx.open_table(CASES)?
        .insert(case.id, encode(case)?.as_slice())?;
    let mut idx = tx.open_table(CASE_INDEX)?;
    if old != Some(case.state) {
        if let Some(o) = old {
            idx.remove((format!("s:{}", o.as_str()).as_str(), case.id))?;
            drop(idx);
            bump(tx, "cases", o.as_str(), -1)?;
            idx = tx.open_table(CASE_INDEX)?;
        }
        idx.insert(("all", case.id), ())?;
        idx.insert((format!("s:{}", case.state.as_str()).as_str(), case.id), ())?;
        drop(idx);
        bump(tx, "cases", case.state.as_str(), 1)?;
    }
    Ok(())
}

fn load_gate(tx: &WriteTransaction, gate: &str) -> Result<Option<GateRow>, StoreError> {
    let t = tx.open_table(GATES)?;
    let v = t.get(gate)?;
    v.map(|g| decode("gates_v1", gate, g.value())).transpose()
}

fn save_gate(tx: &WriteTransaction, row: &GateRow) -> Result<(), StoreError> {
    tx.open_table(GATES)?
        .insert(row.gate.as_str(), encode(row)?.as_slice())?;
    Ok(())
}

fn uuid_key(u: &Uuid) -> u128 {
    u.as_u128()
}

/// Stores an alert once per (gate, seq, kind) and opens its case. Returns the case when
/// the alert is new.
fn store_alert(
    tx: &WriteTransaction,
    gate: &GateId,
    seq: u64,
    kind: AlertKind,
    detail: &str,
    at: Timestamp,
) -> Result<Option<Case>, StoreError> {
    {
        let keys = tx.open_table(ALERT_KEYS)?;
        if keys.get((gate.as_str(), seq, kind.as_str()))?.is_some() {
            return Ok(None);
        }
    }
    let id = next_id(tx, "alert_id")?;
    let case_id = next_id(tx, "case_id")?;
    let alert = Alert {
        id,
        gate: gate.clone(),
        seq,
        kind,
        detail: detail.to_owned(),
        at,
        case_id: Some(case_id),
    };
    tx.open_table(ALERT_KEYS)?
        .insert((gate.as_str(), seq, kind.as_str()), id)?;
    tx.open_table(ALERTS)?
        .insert(id, encode(&alert)?.as_slice())?;
    bump(tx, "alerts", "total", 1)?;
    let case = cases::open_for_alert(case_id, &alert);
    save_case(tx, &case, None)?;
    write_audit(
        tx,
        "central",
        "alert.raise",
        &format!(
            "{} at {gate} seq {seq}: {detail} (case {case_id})",
            kind.as_str()
        ),
        at,
    )?;
    metrics::counter!("central_integrity_alerts_total", "kind" => kind.as_str()).increment(1);
    Ok(Some(case))
}

fn txn_of(body: &EventBody) -> Option<Uuid> {
    match body {
        EventBody::Transaction { transaction } => Some(transaction.id),
        EventBody::Decision { decision } => Some(decision.transaction_id),
        EventBody::OfficerAction { action } => action.transaction_id,
        EventBody::DeviceHealth { .. }
        | EventBody::IntegrityAlert { .. }
        | EventBody::OrphanRead { .. } => None,
    }
}

fn lane_of(body: &EventBody) -> Option<&str> {
    match body {
        EventBody::Transaction { transaction } => Some(transaction.lane.as_str()),
        EventBody::Decision { decision } => Some(decision.lane.as_str()),
        EventBody::OfficerAction { action } => Some(action.lane.as_str()),
        EventBody::DeviceHealth { health } => health.lane.as_ref().map(|l| l.as_str()),
        EventBody::IntegrityAlert { .. } => None,
        EventBody::OrphanRead { lane, .. } => Some(lane.as_str()),
    }
}

fn decision_of(body: &EventBody) -> Option<LaneDecision> {
    match body {
        EventBody::Decision { decision } => Some(decision.decision),
        _ => None,
    }
}

fn hour_start(t: Timestamp) -> i64 {
    t.as_second().div_euclid(3600) * 3600
}

// ---------------------------------------------------------------------------------------
// ingest target
// ---------------------------------------------------------------------------------------

/// One batch's ingest inside one write transaction. The event tables are opened once
/// for the batch, and what the batch itself stored (chain links, the containers of its
/// transactions) is remembered, so checking an entry against its predecessor or
/// classifying a decision does not read back and decode the JSON just written.
struct Target<'a> {
    tx: &'a WriteTransaction,
    gate: &'a GateId,
    now: Timestamp,
    state: &'a mut AgentState,
    cases: Vec<Case>,
    events: redb::Table<'a, (&'static str, u64), &'static [u8]>,
    event_ids: redb::Table<'a, (&'static str, u128), u64>,
    event_index: redb::Table<'a, (&'static str, i64, &'static str, u64), ()>,
    event_txn: redb::Table<'a, (u128, &'static str, u64), ()>,
    /// Links of the entries stored by this batch, by seq.
    links: HashMap<u64, Link>,
    /// Containers of the transactions stored by this batch, by transaction id.
    txn_containers: HashMap<u128, BTreeSet<String>>,
    /// Entries stored by this batch (the gate's event counter is bumped once).
    added: i64,
    /// Each entry's JSON, made before the write transaction, by (seq, hash).
    encoded: HashMap<(u64, String), Vec<u8>>,
}

/// The stored form of a [`StoredEvent`] from the entry's JSON: the same bytes as
/// `encode(&StoredEvent { entry, received_at, chain_ok })` (fields in declaration order),
/// without serialising the entry again inside the write transaction.
fn stored_event_bytes(
    entry_json: &[u8],
    received_at: Timestamp,
    chain_ok: bool,
) -> Result<Vec<u8>, StoreError> {
    #[derive(Serialize)]
    struct Tail {
        received_at: Timestamp,
        chain_ok: bool,
    }
    // `{"received_at":…,"chain_ok":…}`: its opening brace is replaced by the entry.
    let tail = encode(&Tail {
        received_at,
        chain_ok,
    })?;
    let (version, tail_json) = tail
        .split_first()
        .ok_or_else(|| StoreError::Backend("empty encoding".into()))?;
    let mut out = Vec::with_capacity(entry_json.len() + tail_json.len() + 12);
    out.push(*version);
    out.extend_from_slice(b"{\"entry\":");
    out.extend_from_slice(entry_json);
    out.push(b',');
    out.extend_from_slice(tail_json.get(1..).unwrap_or_default());
    Ok(out)
}

/// The part of a stored event the chain check needs; serde skips the rest of the JSON
/// without building it.
#[derive(Deserialize)]
struct StoredLink {
    entry: LinkFields,
}

#[derive(Deserialize)]
struct LinkFields {
    hash: String,
    prev_hash: String,
}

impl<'a> Target<'a> {
    fn new(
        tx: &'a WriteTransaction,
        gate: &'a GateId,
        now: Timestamp,
        state: &'a mut AgentState,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            tx,
            gate,
            now,
            state,
            cases: Vec::new(),
            events: tx.open_table(EVENTS)?,
            event_ids: tx.open_table(EVENT_IDS)?,
            event_index: tx.open_table(EVENT_INDEX)?,
            event_txn: tx.open_table(EVENT_TXN)?,
            links: HashMap::new(),
            txn_containers: HashMap::new(),
            added: 0,
            encoded: HashMap::new(),
        })
    }

    /// Ends the batch: the per-batch counters are written; returns the cases touched.
    fn finish(self) -> Result<Vec<Case>, StoreError> {
        let Target {
            tx,
            gate,
            cases,
            events,
            event_ids,
            event_index,
            event_txn,
            added,
            ..
        } = self;
        // Tables are closed before the counters' table is opened in the same transaction.
        drop((events, event_ids, event_index, event_txn));
        if added > 0 {
            bump(tx, &format!("gate:{gate}"), "events", added)?;
        }
        Ok(cases)
    }

    fn index_event(&mut self, key: &str, at: i64, seq: u64) -> Result<(), StoreError> {
        self.event_index
            .insert((key, at, self.gate.as_str(), seq), ())?;
        Ok(())
    }

    /// Events of the same transaction already stored (any gate).
    fn txn_events(&self, txn: &Uuid) -> Result<Vec<StoredEvent>, StoreError> {
        let keys: Vec<(String, u64)> = {
            let k = uuid_key(txn);
            let mut out = Vec::new();
            for row in self
                .event_txn
                .range((k, "", 0u64)..=(k, "\u{7f}", u64::MAX))?
            {
                let (key, _) = row?;
                let (_, g, s) = key.value();
                out.push((g.to_owned(), s));
            }
            out
        };
        let mut out = Vec::new();
        for (g, s) in keys {
            if let Some(v) = self.events.get((g.as_str(), s))? {
                out.push(decode("events_v1", format_args!("{g}/{s}"), v.value())?);
            }
        }
        Ok(out)
    }

    fn on_decision(&mut self, d: &protocol::schema::Decision, seq: u64) -> Result<(), StoreError> {
        let outcome = d.decision.as_str();
        bump(self.tx, "decision", outcome, 1)?;
        {
            let mut h = self.tx.open_table(HOURLY)?;
            let hour = hour_start(d.decided_at);
            let mut kinds = vec![outcome];
            if d.is_seal_exception() {
                kinds.push("EXCEPTION");
            }
            for k in kinds {
                let key = (self.gate.as_str(), hour, k);
                let n = h.get(key)?.map_or(0, |g| g.value()) + 1;
                h.insert(key, n)?;
            }
        }
        metrics::counter!("central_decisions_total", "outcome" => outcome).increment(1);
        if !d.is_seal_exception() {
            return Ok(());
        }
        let txn = uuid_key(&d.transaction_id);
        let existing = self
            .tx
            .open_table(CASE_BY_TXN)?
            .get(txn)?
            .map(|g| g.value());
        match existing {
            Some(id) => {
                if let Some(mut c) = load_case(self.tx, id)? {
                    let old = c.state;
                    cases::note_event(
                        &mut c,
                        &format!("agent:{}", self.gate),
                        format!("decision received again at seq {seq}"),
                        self.now,
                    );
                    save_case(self.tx, &c, Some(old))?;
                    self.cases.push(c);
                }
            }
            None => {
                let id = next_id(self.tx, "case_id")?;
                let c = cases::open_for_decision(id, d, self.now);
                save_case(self.tx, &c, None)?;
                self.tx.open_table(CASE_BY_TXN)?.insert(txn, id)?;
                write_audit(
                    self.tx,
                    &format!("agent:{}", self.gate),
                    "case.open",
                    &format!("case {id} for transaction {}", d.transaction_id),
                    self.now,
                )?;
                metrics::counter!("central_cases_opened_total").increment(1);
                self.cases.push(c);
            }
        }
        Ok(())
    }

    fn on_officer_action(&mut self, a: &protocol::schema::OfficerAction) -> Result<(), StoreError> {
        let (Some(txn), ActionKind::InspectionResult { result, note }) =
            (a.transaction_id, &a.kind)
        else {
            return Ok(());
        };
        let id = self
            .tx
            .open_table(CASE_BY_TXN)?
            .get(uuid_key(&txn))?
            .map(|g| g.value());
        if let Some(id) = id
            && let Some(mut c) = load_case(self.tx, id)?
        {
            let old = c.state;
            let result = serde_json::to_string(result).unwrap_or_default();
            cases::note_event(
                &mut c,
                &format!("officer:{}", a.officer),
                format!("inspection result at the gate: {result} {note}"),
                self.now,
            );
            save_case(self.tx, &c, Some(old))?;
            self.cases.push(c);
        }
        Ok(())
    }
}

impl IngestTarget for Target<'_> {
    type Error = StoreError;

    fn stored(&mut self, seq: u64) -> Result<Option<Link>, StoreError> {
        if let Some(l) = self.links.get(&seq) {
            return Ok(Some(l.clone()));
        }
        let v = self.events.get((self.gate.as_str(), seq))?;
        match v {
            None => Ok(None),
            Some(g) => {
                let e: StoredLink =
                    decode("events_v1", format_args!("{}/{seq}", self.gate), g.value())?;
                Ok(Some(Link {
                    hash: e.entry.hash,
                    prev_hash: e.entry.prev_hash,
                }))
            }
        }
    }

    fn seq_of_id(&mut self, id: &Uuid) -> Result<Option<u64>, StoreError> {
        Ok(self
            .event_ids
            .get((self.gate.as_str(), uuid_key(id)))?
            .map(|g| g.value()))
    }

    fn insert(&mut self, entry: &JournalEntry, chain_ok: bool) -> Result<(), StoreError> {
        let gate = self.gate.as_str();
        let bytes = match self.encoded.remove(&(entry.seq, entry.hash.clone())) {
            Some(json) => stored_event_bytes(&json, self.now, chain_ok)?,
            None => stored_event_bytes(
                &serde_json::to_vec(entry).map_err(|e| StoreError::Backend(e.to_string()))?,
                self.now,
                chain_ok,
            )?,
        };
        self.events.insert((gate, entry.seq), bytes.as_slice())?;
        self.event_ids
            .insert((gate, uuid_key(&entry.id)), entry.seq)?;
        self.links.insert(
            entry.seq,
            Link {
                hash: entry.hash.clone(),
                prev_hash: entry.prev_hash.clone(),
            },
        );
        self.state.events += 1;
        self.state.max_seq = self.state.max_seq.max(entry.seq);
        self.added += 1;

        let at = entry.at.as_millisecond();
        self.index_event("t", at, entry.seq)?;
        self.index_event(&format!("g:{gate}"), at, entry.seq)?;
        if let Some(lane) = lane_of(&entry.body) {
            self.index_event(&format!("l:{gate}/{lane}"), at, entry.seq)?;
        }
        if let Some(d) = decision_of(&entry.body) {
            self.index_event(&format!("d:{}", d.as_str()), at, entry.seq)?;
        }
        if let Some(txn) = txn_of(&entry.body) {
            // Containers are named by the transaction; index this entry under them, and
            // when this is the transaction, index the entries that arrived before it.
            // A decision whose transaction came in this batch (the usual case: the agent
            // journals both together) takes the containers from memory.
            let cached = match &entry.body {
                EventBody::Transaction { .. } => None,
                _ => self.txn_containers.get(&uuid_key(&txn)).cloned(),
            };
            let others = if cached.is_some() {
                Vec::new()
            } else {
                self.txn_events(&txn)?
            };
            let containers: BTreeSet<String> = match (&entry.body, cached) {
                (EventBody::Transaction { transaction }, _) => {
                    let c: BTreeSet<String> = transaction
                        .containers()
                        .iter()
                        .map(|c| c.to_string())
                        .collect();
                    self.txn_containers.insert(uuid_key(&txn), c.clone());
                    c
                }
                (_, Some(c)) => c,
                (_, None) => others
                    .iter()
                    .filter_map(|e| match &e.entry.body {
                        EventBody::Transaction { transaction } => Some(transaction.containers()),
                        _ => None,
                    })
                    .flatten()
                    .map(|c| c.to_string())
                    .collect(),
            };
            for c in &containers {
                let key = format!("c:{c}");
                self.index_event(&key, at, entry.seq)?;
                if matches!(entry.body, EventBody::Transaction { .. }) {
                    for o in &others {
                        self.event_index.insert(
                            (
                                key.as_str(),
                                o.entry.at.as_millisecond(),
                                o.entry.agent.as_str(),
                                o.entry.seq,
                            ),
                            (),
                        )?;
                    }
                }
            }
            self.event_txn
                .insert((uuid_key(&txn), gate, entry.seq), ())?;
        }
        match &entry.body {
            EventBody::Decision { decision } => self.on_decision(decision, entry.seq)?,
            EventBody::OfficerAction { action } => self.on_officer_action(action)?,
            EventBody::IntegrityAlert { what, detail } => {
                if let Some(c) = store_alert(
                    self.tx,
                    self.gate,
                    entry.seq,
                    AlertKind::AgentReported,
                    &format!("{what}: {detail}"),
                    self.now,
                )? {
                    self.cases.push(c);
                }
            }
            EventBody::Transaction { .. }
            | EventBody::DeviceHealth { .. }
            | EventBody::OrphanRead { .. } => {}
        }
        Ok(())
    }

    fn alert(&mut self, seq: u64, kind: AlertKind, detail: &str) -> Result<bool, StoreError> {
        let c = store_alert(self.tx, self.gate, seq, kind, detail, self.now)?;
        let new = c.is_some();
        self.cases.extend(c);
        Ok(new)
    }
}

fn gap_check(
    tx: &WriteTransaction,
    gate: &GateId,
    state: &mut AgentState,
    now: Timestamp,
    gap_alert_after: SignedDuration,
) -> Result<Option<Case>, StoreError> {
    let missing = {
        let ev = tx.open_table(EVENTS)?;
        state.advance(
            |s| Ok::<_, StoreError>(ev.get((gate.as_str(), s))?.is_some()),
            now,
            gap_alert_after,
        )?
    };
    match missing {
        Some(seq) => {
            let since = state.gap_since.map_or_else(String::new, |t| t.to_string());
            store_alert(
                tx,
                gate,
                seq,
                AlertKind::Gap,
                &format!(
                    "entry {seq} missing since {since} while entries up to {} are stored",
                    state.max_seq
                ),
                now,
            )
        }
        None => Ok(None),
    }
}

fn last_by_id(cases: Vec<Case>) -> Vec<Case> {
    let mut m: BTreeMap<u64, Case> = BTreeMap::new();
    for c in cases {
        m.insert(c.id, c);
    }
    m.into_values().collect()
}

// ---------------------------------------------------------------------------------------
// registry helpers
// ---------------------------------------------------------------------------------------

fn mra_key(m: &MraRecord) -> (String, String) {
    (m.recognising.code().to_owned(), m.partner.code().to_owned())
}

fn consignment_index_keys(c: &Consignment) -> Vec<String> {
    let mut keys: Vec<String> = c
        .containers
        .iter()
        .map(|d| format!("c:{}", d.number))
        .collect();
    keys.extend(c.ports.iter().map(|p| format!("p:{p}")));
    keys
}

fn apply_change(
    tx: &WriteTransaction,
    change: &Change,
    at: Timestamp,
    seq: u64,
) -> Result<Option<Vec<String>>, StoreError> {
    match change {
        Change::UpsertOperator { record } => {
            let key = record.operator.to_string();
            let mut t = tx.open_table(OPERATORS)?;
            let v = Versioned {
                seq,
                value: record.clone(),
            };
            let was = t.insert(key.as_str(), encode(&v)?.as_slice())?.is_some();
            drop(t);
            if !was {
                bump(tx, "registry", "operators", 1)?;
            }
            Ok(None)
        }
        Change::SetStatus {
            operator,
            status,
            at: status_at,
            ..
        } => {
            let key = operator.to_string();
            let mut t = tx.open_table(OPERATORS)?;
            let cur: Versioned<RegistryRecord> = match t.get(key.as_str())? {
                Some(g) => decode("operators_v1", &key, g.value())?,
                None => return Err(StoreError::UnknownOperator(key)),
            };
            let mut record = cur.value;
            record.status = *status;
            record.status_since = *status_at;
            record.as_of = at;
            let v = Versioned { seq, value: record };
            t.insert(key.as_str(), encode(&v)?.as_slice())?;
            Ok(None)
        }
        Change::UpsertMra { mra } => {
            let (a, b) = mra_key(mra);
            let v = Versioned {
                seq,
                value: mra.clone(),
            };
            tx.open_table(MRAS)?
                .insert((a.as_str(), b.as_str()), encode(&v)?.as_slice())?;
            Ok(None)
        }
        Change::UpsertConsignment { consignment } => {
            let old = remove_consignment(tx, &consignment.id)?;
            let v = Versioned {
                seq,
                value: consignment.clone(),
            };
            tx.open_table(CONSIGNMENTS)?
                .insert(consignment.id.as_str(), encode(&v)?.as_slice())?;
            let mut idx = tx.open_table(CONSIGNMENT_INDEX)?;
            for k in consignment_index_keys(consignment) {
                idx.insert((k.as_str(), consignment.id.as_str()), ())?;
            }
            drop(idx);
            bump(tx, "registry", "consignments", 1)?;
            let mut ports: BTreeSet<String> = consignment.ports.iter().cloned().collect();
            if let Some(o) = old {
                ports.extend(o.ports);
            }
            Ok(Some(ports.into_iter().collect()))
        }
        Change::RemoveConsignment { id } => {
            let old = remove_consignment(tx, id)?;
            Ok(Some(old.map(|o| o.ports).unwrap_or_default()))
        }
    }
}

/// Removes a consignment and its index rows; returns what was there.
fn remove_consignment(tx: &WriteTransaction, id: &str) -> Result<Option<Consignment>, StoreError> {
    let old: Option<Versioned<Consignment>> = {
        let mut t = tx.open_table(CONSIGNMENTS)?;
        let removed = t.remove(id)?;
        removed
            .map(|g| decode("consignments_v1", id, g.value()))
            .transpose()?
    };
    let Some(old) = old else { return Ok(None) };
    let mut idx = tx.open_table(CONSIGNMENT_INDEX)?;
    for k in consignment_index_keys(&old.value) {
        idx.remove((k.as_str(), id))?;
    }
    drop(idx);
    bump(tx, "registry", "consignments", -1)?;
    Ok(Some(old.value))
}

fn parse_cursor4(c: &str) -> Option<(i64, String, u64)> {
    let mut it = c.splitn(3, '.');
    let at = it.next()?.parse().ok()?;
    let gate = it.next()?.to_owned();
    let seq = it.next()?.parse().ok()?;
    Some((at, gate, seq))
}

// ---------------------------------------------------------------------------------------
// the Store implementation
// ---------------------------------------------------------------------------------------

impl Store for RedbStore {
    fn add_agent(&self, token: &TokenHash, agent: &AgentRecord) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        match load_gate(&tx, agent.gate.as_str())? {
            Some(row) if row.port != agent.port => {
                return Err(StoreError::GatePortConflict {
                    gate: agent.gate.to_string(),
                    existing: row.port,
                    requested: agent.port.clone(),
                });
            }
            Some(_) => {}
            None => save_gate(
                &tx,
                &GateRow {
                    gate: agent.gate.clone(),
                    port: agent.port.clone(),
                    state: AgentState::default(),
                    health: None,
                },
            )?,
        }
        tx.open_table(AGENT_TOKENS)?
            .insert(token.as_slice(), encode(agent)?.as_slice())?;
        write_audit(
            &tx,
            &agent.issued_by,
            "agent.token.issue",
            &format!("token for gate {} (port {})", agent.gate, agent.port),
            agent.issued_at,
        )?;
        tx.commit()?;
        Ok(())
    }

    fn agent_for_token(&self, token: &TokenHash) -> Result<Option<AgentRecord>, StoreError> {
        let r = self.read()?;
        let t = r.open_table(AGENT_TOKENS)?;
        let v = t.get(token.as_slice())?;
        v.map(|g| decode("agent_tokens_v1", hex::encode(token), g.value()))
            .transpose()
    }

    fn ingest(
        &self,
        gate: &GateId,
        entries: &[JournalEntry],
        now: Timestamp,
        gap_alert_after: SignedDuration,
    ) -> Result<IngestOutcome, StoreError> {
        // What needs no store is done before the single write transaction is taken, so
        // that several agents' batches do it in parallel: hashing each entry, and its JSON.
        let hashes = ingest::check_hashes(entries);
        let mut encoded = HashMap::with_capacity(entries.len());
        for e in entries {
            let json = serde_json::to_vec(e).map_err(|err| StoreError::Backend(err.to_string()))?;
            encoded.insert((e.seq, e.hash.clone()), json);
        }
        let tx = self.db.begin_write()?;
        let mut row = load_gate(&tx, gate.as_str())?.unwrap_or_else(|| GateRow {
            gate: gate.clone(),
            port: String::new(),
            state: AgentState::default(),
            health: None,
        });
        let mut state = row.state.clone();
        let mut target = Target::new(&tx, gate, now, &mut state)?;
        target.encoded = encoded;
        let tally = ingest::ingest_checked(&mut target, entries, &hashes)?;
        let mut changed = target.finish()?;
        changed.extend(gap_check(&tx, gate, &mut state, now, gap_alert_after)?);
        row.state = state;
        save_gate(&tx, &row)?;
        tx.commit()?;
        Ok(IngestOutcome {
            acked_through: row.state.acked_through,
            tally,
            cases: last_by_id(changed),
        })
    }

    fn record_heartbeat(
        &self,
        health: &GateHealth,
        gap_alert_after: SignedDuration,
    ) -> Result<Vec<Case>, StoreError> {
        let tx = self.db.begin_write()?;
        let gate = &health.heartbeat.agent;
        let mut row = load_gate(&tx, gate.as_str())?.unwrap_or_else(|| GateRow {
            gate: gate.clone(),
            port: String::new(),
            state: AgentState::default(),
            health: None,
        });
        row.health = Some(health.clone());
        let mut state = row.state.clone();
        let c = gap_check(&tx, gate, &mut state, health.received_at, gap_alert_after)?;
        row.state = state;
        save_gate(&tx, &row)?;
        tx.commit()?;
        Ok(c.into_iter().collect())
    }

    fn gates(&self) -> Result<Vec<GateRow>, StoreError> {
        let r = self.read()?;
        let t = r.open_table(GATES)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push(decode("gates_v1", k.value(), v.value())?);
        }
        Ok(out)
    }

    fn events(&self, q: &EventQuery) -> Result<Page<StoredEvent>, StoreError> {
        let key = match (&q.container, &q.gate, &q.lane, q.decision) {
            (Some(c), _, _, _) => format!("c:{c}"),
            (None, Some(g), Some(l), _) => format!("l:{g}/{l}"),
            (None, _, _, Some(d)) => format!("d:{}", d.as_str()),
            (None, Some(g), None, None) => format!("g:{g}"),
            _ => "t".to_owned(),
        };
        let from = q.from.map_or(i64::MIN, |t| t.as_millisecond());
        let to = q.to.map_or(i64::MAX, |t| t.as_millisecond());
        let cursor = q.cursor.as_deref().and_then(parse_cursor4);
        let r = self.read()?;
        let idx = r.open_table(EVENT_INDEX)?;
        let events = r.open_table(EVENTS)?;
        let start_owned;
        let start = match &cursor {
            Some((at, g, s)) => {
                start_owned = (key.as_str(), *at, g.as_str(), *s);
                Bound::Excluded(start_owned)
            }
            None => Bound::Included((key.as_str(), from, "", 0u64)),
        };
        let end = Bound::Excluded((key.as_str(), to, "", 0u64));
        let limit = q.limit.clamp(1, 1_000);
        let mut items = Vec::new();
        let mut last = None;
        let mut scanned = 0usize;
        let mut more = false;
        for row in idx.range((start, end))? {
            let (k, _) = row?;
            let (_, at, g, s) = k.value();
            scanned += 1;
            if items.len() >= limit || scanned > MAX_SCAN {
                more = true;
                break;
            }
            last = Some((at, g.to_owned(), s));
            let Some(v) = events.get((g, s))? else {
                continue;
            };
            let e: StoredEvent = decode("events_v1", format!("{g}/{s}"), v.value())?;
            if q.gate.as_ref().is_some_and(|want| want != &e.entry.agent)
                || q.lane
                    .as_ref()
                    .is_some_and(|want| lane_of(&e.entry.body) != Some(want.as_str()))
                || q.decision
                    .is_some_and(|want| decision_of(&e.entry.body) != Some(want))
            {
                continue;
            }
            items.push(e);
        }
        let next_cursor = if more {
            last.map(|(at, g, s)| format!("{at}.{g}.{s}"))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    fn transaction_events(&self, txn: &Uuid) -> Result<Vec<StoredEvent>, StoreError> {
        let r = self.read()?;
        let t = r.open_table(EVENT_TXN)?;
        let ev = r.open_table(EVENTS)?;
        let k = uuid_key(txn);
        let mut out = Vec::new();
        for row in t.range((k, "", 0u64)..=(k, "\u{7f}", u64::MAX))? {
            let (key, _) = row?;
            let (_, g, s) = key.value();
            if let Some(v) = ev.get((g, s))? {
                out.push(decode("events_v1", format!("{g}/{s}"), v.value())?);
            }
        }
        Ok(out)
    }

    fn hourly_stats(
        &self,
        gate: Option<&GateId>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<HourStats>, StoreError> {
        let (from_h, to_h) = (hour_start(from), to.as_second());
        let r = self.read()?;
        let t = r.open_table(HOURLY)?;
        let mut acc: BTreeMap<(String, i64), HourStats> = BTreeMap::new();
        for row in t.iter()? {
            let (k, v) = row?;
            let (g, hour, kind) = k.value();
            if gate.is_some_and(|want| want.as_str() != g) || hour < from_h || hour >= to_h {
                continue;
            }
            let s = acc.entry((g.to_owned(), hour)).or_default();
            let n = v.value();
            match kind {
                "FAST" => s.fast += n,
                "STANDARD" => s.standard += n,
                "INSPECT" => s.inspect += n,
                "EXCEPTION" => s.exceptions += n,
                _ => {}
            }
        }
        Ok(acc
            .into_iter()
            .map(|((g, hour), mut s)| {
                s.gate = GateId::parse(&g).ok();
                s.hour = Timestamp::from_second(hour).ok();
                let total = s.fast + s.standard + s.inspect;
                #[allow(clippy::cast_precision_loss)]
                {
                    s.exception_rate = if total == 0 {
                        0.0
                    } else {
                        s.exceptions as f64 / total as f64
                    };
                }
                s
            })
            .collect())
    }

    fn summary(&self) -> Result<Summary, StoreError> {
        let r = self.read()?;
        let c = r.open_table(COUNTERS)?;
        let mut s = Summary::default();
        for row in c.iter()? {
            let (k, v) = row?;
            let (scope, name) = k.value();
            let n = v.value();
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
        let g = r.open_table(GATES)?;
        for row in g.iter()? {
            let (k, v) = row?;
            let gr: GateRow = decode("gates_v1", k.value(), v.value())?;
            s.acked_through_per_gate
                .insert(gr.gate.to_string(), gr.state.acked_through);
        }
        s.registry_seq = r
            .open_table(META)?
            .get("change_seq")?
            .map_or(0, |g| g.value());
        Ok(s)
    }

    fn alerts(&self, limit: usize) -> Result<Vec<Alert>, StoreError> {
        let r = self.read()?;
        let t = r.open_table(ALERTS)?;
        let mut out = Vec::new();
        for row in t.iter()?.rev().take(limit) {
            let (k, v) = row?;
            out.push(decode("alerts_v1", k.value(), v.value())?);
        }
        Ok(out)
    }

    fn alert(&self, id: u64) -> Result<Option<Alert>, StoreError> {
        let r = self.read()?;
        let t = r.open_table(ALERTS)?;
        let v = t.get(id)?;
        v.map(|g| decode("alerts_v1", id, g.value())).transpose()
    }

    fn append_changes(
        &self,
        changes: &[Change],
        actor: &str,
        at: Timestamp,
    ) -> Result<u64, StoreError> {
        let tx = self.db.begin_write()?;
        let mut seq = tx
            .open_table(META)?
            .get("change_seq")?
            .map_or(0, |g| g.value());
        let first = seq + 1;
        for change in changes {
            seq += 1;
            let ports = apply_change(&tx, change, at, seq)?;
            let logged = LoggedChange {
                seq,
                at,
                actor: actor.to_owned(),
                change: change.clone(),
                ports,
            };
            tx.open_table(CHANGES)?
                .insert(seq, encode(&logged)?.as_slice())?;
            if let Change::SetStatus {
                operator,
                status,
                reason,
                ..
            } = change
            {
                write_audit(
                    &tx,
                    actor,
                    "registry.set_status",
                    &format!("{operator} → {} ({reason}), seq {seq}", status.as_str()),
                    at,
                )?;
            }
        }
        if !changes.is_empty() {
            tx.open_table(META)?.insert("change_seq", seq)?;
            let n = changes
                .iter()
                .filter(|c| !matches!(c, Change::SetStatus { .. }))
                .count();
            if n > 0 {
                write_audit(
                    &tx,
                    actor,
                    "registry.import",
                    &format!("{n} upserts/removals, seq {first}..={seq}"),
                    at,
                )?;
            }
        }
        tx.commit()?;
        Ok(seq)
    }

    fn last_seq(&self) -> Result<u64, StoreError> {
        let r = self.read()?;
        Ok(r.open_table(META)?
            .get("change_seq")?
            .map_or(0, |g| g.value()))
    }

    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<LoggedChange>, StoreError> {
        let r = self.read()?;
        let t = r.open_table(CHANGES)?;
        let mut out = Vec::new();
        for row in t
            .range((Bound::Excluded(after), Bound::Unbounded))?
            .take(limit)
        {
            let (k, v) = row?;
            out.push(decode("changes_v1", k.value(), v.value())?);
        }
        Ok(out)
    }

    fn snapshot(&self, port: &str, now: Timestamp) -> Result<RegistrySnapshot, StoreError> {
        let r = self.read()?;
        let last_seq = r
            .open_table(META)?
            .get("change_seq")?
            .map_or(0, |g| g.value());
        let as_of = match r.open_table(CHANGES)?.get(last_seq)? {
            Some(g) => decode::<LoggedChange>("changes_v1", last_seq, g.value())?.at,
            None => now,
        };
        let mut changes = Vec::new();
        for row in r.open_table(OPERATORS)?.iter()? {
            let (k, v) = row?;
            let rec: Versioned<RegistryRecord> = decode("operators_v1", k.value(), v.value())?;
            changes.push(SequencedChange {
                seq: rec.seq,
                change: Change::UpsertOperator { record: rec.value },
            });
        }
        for row in r.open_table(MRAS)?.iter()? {
            let (k, v) = row?;
            let (a, b) = k.value();
            let m: Versioned<MraRecord> = decode("mras_v1", format!("{a}/{b}"), v.value())?;
            changes.push(SequencedChange {
                seq: m.seq,
                change: Change::UpsertMra { mra: m.value },
            });
        }
        let key = format!("p:{port}");
        let idx = r.open_table(CONSIGNMENT_INDEX)?;
        let cons = r.open_table(CONSIGNMENTS)?;
        for row in idx.range((key.as_str(), "")..)? {
            let (k, _) = row?;
            let (p, id) = k.value();
            if p != key {
                break;
            }
            if let Some(v) = cons.get(id)? {
                let c: Versioned<Consignment> = decode("consignments_v1", id, v.value())?;
                changes.push(SequencedChange {
                    seq: c.seq,
                    change: Change::UpsertConsignment {
                        consignment: c.value,
                    },
                });
            }
        }
        changes.sort_by_key(|c| c.seq);
        Ok(RegistrySnapshot {
            last_seq,
            as_of,
            changes,
        })
    }

    fn operator(&self, id: &OperatorId) -> Result<Option<RegistryRecord>, StoreError> {
        let r = self.read()?;
        let t = r.open_table(OPERATORS)?;
        let key = id.to_string();
        let v = t.get(key.as_str())?;
        v.map(|g| decode::<Versioned<RegistryRecord>>("operators_v1", &key, g.value()))
            .transpose()
            .map(|o| o.map(|v| v.value))
    }

    fn consignments_for_container(&self, container: &str) -> Result<Vec<Consignment>, StoreError> {
        let r = self.read()?;
        let idx = r.open_table(CONSIGNMENT_INDEX)?;
        let cons = r.open_table(CONSIGNMENTS)?;
        let key = format!("c:{container}");
        let mut out = Vec::new();
        for row in idx.range((key.as_str(), "")..)? {
            let (k, _) = row?;
            let (c, id) = k.value();
            if c != key {
                break;
            }
            if let Some(v) = cons.get(id)? {
                out.push(decode::<Versioned<Consignment>>("consignments_v1", id, v.value())?.value);
            }
        }
        Ok(out)
    }

    fn cases(&self, q: &CaseQuery) -> Result<Page<Case>, StoreError> {
        let key = q
            .state
            .map_or_else(|| "all".to_owned(), |s| format!("s:{}", s.as_str()));
        let before = q
            .cursor
            .as_deref()
            .and_then(|c| c.parse::<u64>().ok())
            .unwrap_or(u64::MAX);
        let limit = q.limit.clamp(1, 1_000);
        let r = self.read()?;
        let idx = r.open_table(CASE_INDEX)?;
        let cases = r.open_table(CASES)?;
        let mut items = Vec::new();
        let mut last = None;
        let mut more = false;
        for (scanned, row) in idx
            .range((key.as_str(), 0u64)..(key.as_str(), before))?
            .rev()
            .enumerate()
        {
            let (k, _) = row?;
            let (_, id) = k.value();
            if items.len() >= limit || scanned >= MAX_SCAN {
                more = true;
                break;
            }
            last = Some(id);
            let Some(v) = cases.get(id)? else { continue };
            let c: Case = decode("cases_v1", id, v.value())?;
            if q.gate.as_ref().is_some_and(|g| g != &c.gate)
                || q.lane.as_ref().is_some_and(|l| c.lane.as_ref() != Some(l))
                || q.reason.is_some_and(|r| !c.reasons().contains(&r))
                || q.from.is_some_and(|t| c.opened_at < t)
                || q.to.is_some_and(|t| c.opened_at >= t)
            {
                continue;
            }
            items.push(c);
        }
        Ok(Page {
            items,
            next_cursor: if more {
                last.map(|i| i.to_string())
            } else {
                None
            },
        })
    }

    fn case(&self, id: u64) -> Result<Option<Case>, StoreError> {
        let r = self.read()?;
        let t = r.open_table(CASES)?;
        let v = t.get(id)?;
        v.map(|g| decode("cases_v1", id, g.value())).transpose()
    }

    fn act_on_case(
        &self,
        id: u64,
        action: &CaseAction,
        actor: &str,
        at: Timestamp,
    ) -> Result<Case, StoreError> {
        let tx = self.db.begin_write()?;
        let mut c = load_case(&tx, id)?.ok_or(cases::CaseError::NotFound(id))?;
        let old = c.state;
        let what = cases::apply(&mut c, action, actor, at)?;
        save_case(&tx, &c, Some(old))?;
        write_audit(&tx, actor, "case.update", &format!("case {id}: {what}"), at)?;
        tx.commit()?;
        Ok(c)
    }

    fn audit(
        &self,
        actor: &str,
        action: &str,
        detail: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        write_audit(&tx, actor, action, detail, at)?;
        tx.commit()?;
        Ok(())
    }

    fn audit_log(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let r = self.read()?;
        let t = r.open_table(AUDIT)?;
        let mut out = Vec::new();
        for row in t
            .range((Bound::Excluded(after), Bound::Unbounded))?
            .take(limit)
        {
            let (k, v) = row?;
            out.push(decode("audit_v1", k.value(), v.value())?);
        }
        Ok(out)
    }

    fn add_user(&self, user: &StaffUser) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(USERS)?;
            if t.get(user.name.as_str())?.is_some() {
                return Err(StoreError::UserExists(user.name.clone()));
            }
            t.insert(user.name.as_str(), encode(user)?.as_slice())?;
        }
        write_audit(
            &tx,
            "central",
            "user.add",
            &format!("user {} (role {})", user.name, user.role),
            user.created_at,
        )?;
        tx.commit()?;
        Ok(())
    }

    fn user(&self, name: &str) -> Result<Option<StaffUser>, StoreError> {
        let r = self.read()?;
        let t = r.open_table(USERS)?;
        let v = t.get(name)?;
        v.map(|g| decode("users_v1", name, g.value())).transpose()
    }

    fn put_session(&self, token: &TokenHash, s: &Session) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        tx.open_table(SESSIONS)?
            .insert(token.as_slice(), encode(s)?.as_slice())?;
        tx.commit()?;
        Ok(())
    }

    fn session(&self, token: &TokenHash) -> Result<Option<Session>, StoreError> {
        let r = self.read()?;
        let t = r.open_table(SESSIONS)?;
        let v = t.get(token.as_slice())?;
        v.map(|g| decode("sessions_v1", "session", g.value()))
            .transpose()
    }

    fn delete_session(&self, token: &TokenHash) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        tx.open_table(SESSIONS)?.remove(token.as_slice())?;
        tx.commit()?;
        Ok(())
    }

    fn users(&self) -> Result<Vec<StaffUser>, StoreError> {
        let r = self.read()?;
        let t = r.open_table(USERS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push(decode("users_v1", k.value(), v.value())?);
        }
        Ok(out)
    }

    fn set_user_lang(&self, name: &str, lang: Lang, at: Timestamp) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(USERS)?;
            let mut user: StaffUser = match t.get(name)? {
                Some(g) => decode("users_v1", name, g.value())?,
                None => return Err(StoreError::UnknownUser(name.to_owned())),
            };
            user.lang = lang;
            t.insert(name, encode(&user)?.as_slice())?;
        }
        write_audit(
            &tx,
            name,
            "user.lang",
            &format!("language {}", lang.tag()),
            at,
        )?;
        tx.commit()?;
        Ok(())
    }

    fn search_operators(
        &self,
        text: &str,
        limit: usize,
    ) -> Result<Vec<RegistryRecord>, StoreError> {
        let needle = text.trim().to_lowercase();
        let r = self.read()?;
        let t = r.open_table(OPERATORS)?;
        let mut out = Vec::new();
        // A full scan: the registry is tens of thousands of rows, read in one snapshot.
        for row in t.iter()? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = row?;
            let key = k.value();
            let rec: Versioned<RegistryRecord> = decode("operators_v1", key, v.value())?;
            if key.to_lowercase().contains(&needle)
                || rec.value.name.to_lowercase().contains(&needle)
            {
                out.push(rec.value);
            }
        }
        Ok(out)
    }

    fn operator_changes(
        &self,
        id: &OperatorId,
        limit: usize,
    ) -> Result<Vec<LoggedChange>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let r = self.read()?;
        let t = r.open_table(CHANGES)?;
        let mut out: std::collections::VecDeque<LoggedChange> = std::collections::VecDeque::new();
        for row in t.iter()? {
            let (k, v) = row?;
            let logged: LoggedChange = decode("changes_v1", k.value(), v.value())?;
            let about = match &logged.change {
                Change::UpsertOperator { record } => &record.operator == id,
                Change::SetStatus { operator, .. } => operator == id,
                _ => false,
            };
            if about {
                if out.len() == limit {
                    out.pop_front();
                }
                out.push_back(logged);
            }
        }
        Ok(out.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

#[cfg(test)]
mod ingest_encoding_tests {
    use protocol::schema::{EventBody, GENESIS_HASH, GateId, JournalEntry};

    use super::{StoredEvent, encode, stored_event_bytes};

    #[test]
    fn stored_event_bytes_are_what_encoding_the_stored_event_gives() {
        let at: jiff::Timestamp = "2026-11-23T10:00:00.123Z".parse().expect("time");
        let entry = JournalEntry::new_chained(
            GateId::parse("G1").expect("gate"),
            7,
            uuid::Uuid::from_u128(42),
            at,
            GENESIS_HASH.to_owned(),
            EventBody::IntegrityAlert {
                what: "test \"quoted\"".into(),
                detail: "line\nbreak".into(),
            },
        )
        .expect("entry");
        for chain_ok in [true, false] {
            let expected = encode(&StoredEvent {
                entry: entry.clone(),
                received_at: at,
                chain_ok,
            })
            .expect("encode");
            let json = serde_json::to_vec(&entry).expect("json");
            assert_eq!(
                stored_event_bytes(&json, at, chain_ok).expect("bytes"),
                expected
            );
        }
    }
}
