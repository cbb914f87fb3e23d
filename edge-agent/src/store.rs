//! redb storage: the hash-chained journal and the registry replica, in one file.
//!
//! Every method blocks (redb is a blocking API); async callers use `spawn_blocking`.
//! [`Store`] is `Clone + Send + Sync` (an `Arc` inside). Journal entries are the
//! protocol's JSON records (each carries its own schema version `v`, checked on read);
//! replica values are postcard behind an encoding byte, so a decision's look-ups do not
//! parse JSON. Tables carry a version suffix: a new value encoding is a new table name
//! (the replica's JSON `*_v1` tables became `*_v2`; an old replica is dropped on open and
//! bootstrapped again from a snapshot). redb's page cache is bounded
//! ([`DEFAULT_CACHE_BYTES`]) because the agent's resident memory grows toward it.
//!
//! # Journal
//! `journal_v1` maps `seq → JournalEntry` (JSON). `seq` starts at 1 and has no gaps when
//! written; each entry's `hash` chains to its predecessor through
//! [`JournalEntry::new_chained`] (the one hash function shared with central).
//! [`Store::append`] writes a whole batch of bodies in one write transaction with
//! `Durability::Immediate` and returns only after the commit, so "journal, then act"
//! holds: whatever an entry describes happened after it was on disk. Meta (`head`,
//! `acked`, `bytes`, last hash) lives in the same transaction, so a crash leaves either
//! all of a batch or none of it. On open the tail is verified (the last entry's own hash,
//! its link to the one before, and the stored last hash).
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
//! [`ReplicaMeta`]. [`Store::apply_batch`] applies a verified [`ChangeBatch`] all or
//! nothing in one write transaction, refusing gaps, replays, rollbacks and batches for
//! another port (docs/delivery.md, "Replication").

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use jiff::Timestamp;
use protocol::container::ContainerNumber;
use protocol::operator::OperatorId;
use protocol::schema::{
    ChainError, ChangeBatch, Consignment, Decision, EventBody, GENESIS_HASH, GateId,
    GateTransaction, JournalEntry, LaneId, MraRecord, OfficerAction, RegistryRecord, check_version,
};
use redb::{
    Database, Durability, MultimapTable, MultimapTableDefinition, ReadTransaction,
    ReadableDatabase, ReadableTable, Table, TableDefinition, TableHandle, WriteTransaction,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::replica::{ReplicaError, ReplicaMeta};
use crate::replica::{ReplicaSink, ReplicaView, Unreadable, apply_changes, check_batch};

const JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("journal_v1");
const JOURNAL_META: TableDefinition<&str, u64> = TableDefinition::new("journal_meta_v1");
const JOURNAL_TEXT: TableDefinition<&str, &str> = TableDefinition::new("journal_text_v1");
const BY_TX: MultimapTableDefinition<u128, u64> = MultimapTableDefinition::new("journal_by_tx_v1");
/// Seqs of entries that are seal/container exceptions or integrity alerts.
const EXCEPTIONS: TableDefinition<u64, ()> = TableDefinition::new("journal_exceptions_v1");

// Replica values are postcard with a leading encoding byte ([`REPLICA_ENCODING`]); the
// `_v1` tables held JSON and are dropped on open (see [`migrate_replica_v1`]).
const OPERATORS: TableDefinition<&str, &[u8]> = TableDefinition::new("replica_operators_v2");
const LINKS: TableDefinition<&str, &str> = TableDefinition::new("replica_operator_links_v1");
const MRAS: TableDefinition<&str, &[u8]> = TableDefinition::new("replica_mras_v2");
const CONSIGNMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("replica_consignments_v2");
const BY_CONTAINER: MultimapTableDefinition<&str, &str> =
    MultimapTableDefinition::new("replica_by_container_v1");
const REPLICA_META: TableDefinition<&str, &[u8]> = TableDefinition::new("replica_meta_v1");
/// The JSON-valued replica tables of earlier releases.
const OLD_JSON_TABLES: [&str; 3] = [
    "replica_operators_v1",
    "replica_mras_v1",
    "replica_consignments_v1",
];

/// First byte of every replica value: postcard (serde data model, field order of the
/// protocol structs) of the schema record. A record whose struct gains or reorders a field
/// needs a new byte and a new table name.
const REPLICA_ENCODING: u8 = 1;

/// Default size of redb's page cache. redb's own default is 1 GiB, which a gate box with a
/// national-scale replica fills (docs/benchmarks.md, figure 3 RSS); the hot part of the
/// replica is the B-tree branch pages, a few MiB at a million records.
pub const DEFAULT_CACHE_BYTES: usize = 32 << 20;

/// Most entries [`Store::recent_transactions`] scans before giving up.
const RECENT_SCAN_LIMIT: usize = 50_000;
/// Most entries one prune pass deletes (bounds the time an append can take).
const PRUNE_BATCH: usize = 10_000;

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
    /// Writes are refused (the fault drill of [`Store::refuse_journal_writes`]).
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

fn jdb<E: Into<redb::Error>>(e: E) -> JournalError {
    JournalError::Db(e.into())
}
fn rdb<E: Into<redb::Error>>(e: E) -> ReplicaError {
    ReplicaError::Db(e.into())
}

/// The uplink backlog: entries written up to `head` that central has not acknowledged
/// (its cursor is `acked`). The one definition, used by the uplink, its heartbeat, the
/// gauges and the console.
#[must_use]
pub fn backlog(head: u64, acked: u64) -> u64 {
    head.saturating_sub(acked)
}

/// The agent's local store. Cheap to clone; every method blocks.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Database,
    gate: GateId,
    /// Journal state, also the writer lock for the journal.
    journal: Mutex<JournalState>,
    /// Writer lock for the replica (redb allows one write transaction at a time anyway;
    /// this keeps check-then-apply atomic).
    replica: Mutex<()>,
    /// Fault drill: while set, every journal write fails as on a full disk.
    refuse_writes: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Clone)]
struct JournalState {
    head: u64,
    acked: u64,
    bytes: u64,
    last_hash: String,
    max_bytes: u64,
}

fn is_exception(body: &EventBody) -> bool {
    match body {
        EventBody::Decision { decision } => decision.is_seal_exception(),
        EventBody::IntegrityAlert { .. } => true,
        _ => false,
    }
}

fn indexed_tx(body: &EventBody) -> Option<Uuid> {
    match body {
        EventBody::Transaction { transaction } => Some(transaction.id),
        EventBody::Decision { decision } => Some(decision.transaction_id),
        EventBody::OfficerAction { action } => action.transaction_id,
        _ => None,
    }
}

fn decode_entry(seq: u64, bytes: &[u8]) -> Result<JournalEntry, JournalError> {
    let e: JournalEntry = serde_json::from_slice(bytes).map_err(|err| JournalError::Corrupt {
        seq,
        detail: err.to_string(),
    })?;
    check_version(e.v).map_err(|err| JournalError::Corrupt {
        seq,
        detail: err.to_string(),
    })?;
    Ok(e)
}

fn read_meta_u64(
    t: &impl ReadableTable<&'static str, u64>,
    key: &str,
) -> Result<u64, JournalError> {
    Ok(t.get(key).map_err(jdb)?.map_or(0, |v| v.value()))
}

impl Store {
    /// Opens (or creates) the store and verifies the journal's tail.
    ///
    /// # Errors
    /// [`StoreError::Open`] when the file cannot be opened; [`StoreError::Journal`] when the
    /// tail of the hash chain does not verify.
    pub fn open(path: &Path, gate: GateId) -> Result<Store, StoreError> {
        Self::open_with_cache(path, gate, DEFAULT_CACHE_BYTES)
    }

    /// [`Store::open`] with redb's page cache bounded to `cache_bytes` (half of it at most
    /// holds a write transaction's dirty pages; the rest caches reads). The agent's
    /// resident memory grows toward this bound, so it is the main memory setting.
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_with_cache(
        path: &Path,
        gate: GateId,
        cache_bytes: usize,
    ) -> Result<Store, StoreError> {
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|e| StoreError::Open {
                path: path.display().to_string(),
                source: e.into(),
            })?;
        migrate_replica_v1(&db)?;
        // Create every table so readers never meet a missing one.
        let w = db.begin_write().map_err(jdb)?;
        {
            w.open_table(JOURNAL).map_err(jdb)?;
            w.open_table(JOURNAL_META).map_err(jdb)?;
            w.open_table(JOURNAL_TEXT).map_err(jdb)?;
            w.open_multimap_table(BY_TX).map_err(jdb)?;
            w.open_table(EXCEPTIONS).map_err(jdb)?;
            w.open_table(OPERATORS).map_err(jdb)?;
            w.open_table(LINKS).map_err(jdb)?;
            w.open_table(MRAS).map_err(jdb)?;
            w.open_table(CONSIGNMENTS).map_err(jdb)?;
            w.open_multimap_table(BY_CONTAINER).map_err(jdb)?;
            w.open_table(REPLICA_META).map_err(jdb)?;
        }
        w.commit().map_err(jdb)?;

        let r = db.begin_read().map_err(jdb)?;
        let meta = r.open_table(JOURNAL_META).map_err(jdb)?;
        let text = r.open_table(JOURNAL_TEXT).map_err(jdb)?;
        let journal = r.open_table(JOURNAL).map_err(jdb)?;
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
        verify_tail(&journal, &state)?;
        drop((meta, text, journal, r));
        Ok(Store {
            inner: Arc::new(Inner {
                db,
                gate,
                journal: Mutex::new(state),
                replica: Mutex::new(()),
                refuse_writes: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// The underlying database, for modules that keep their own tables in the same file
    /// (the console's accounts and sessions, [`crate::console::users`]).
    #[must_use]
    pub fn database(&self) -> &Database {
        &self.inner.db
    }

    fn jstate(&self) -> Result<MutexGuard<'_, JournalState>, JournalError> {
        self.inner
            .journal
            .lock()
            .map_err(|_| JournalError::Poisoned)
    }

    /// Sets the journal disk bound (`store.max_journal_bytes`); pruning happens on the
    /// next append or acknowledgement.
    pub fn set_journal_limit(&self, max_bytes: u64) {
        if let Ok(mut s) = self.inner.journal.lock() {
            s.max_bytes = max_bytes;
        }
    }

    /// Fault drill (and tests): while `on`, every journal append fails with
    /// [`JournalError::Refused`], as it would on a full disk, so that the alarm and the
    /// held-decision path can be exercised without filling a disk.
    pub fn refuse_journal_writes(&self, on: bool) {
        self.inner
            .refuse_writes
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Bytes of journal entries currently stored (the quantity the disk bound limits).
    #[must_use]
    pub fn journal_bytes(&self) -> u64 {
        self.inner.journal.lock().map_or(0, |s| s.bytes)
    }

    /// Appends bodies, chained and numbered, in one durable write transaction (group
    /// commit); returns the entries only after the commit.
    ///
    /// # Errors
    /// [`JournalError`]; nothing is written when an error is returned.
    pub fn append(
        &self,
        bodies: Vec<EventBody>,
        at: Timestamp,
    ) -> Result<Vec<JournalEntry>, JournalError> {
        let mut out = self.append_groups(vec![(bodies, at)])?;
        Ok(out.pop().unwrap_or_default())
    }

    /// Appends several groups of bodies, each with its own time, in one durable write
    /// transaction (the journal writer's group commit: one fsync for everything queued).
    /// Groups keep their order and get consecutive sequence numbers; the result holds each
    /// group's entries, in the order given.
    ///
    /// # Errors
    /// [`JournalError`]; nothing of any group is written when an error is returned.
    pub fn append_groups(
        &self,
        groups: Vec<(Vec<EventBody>, Timestamp)>,
    ) -> Result<Vec<Vec<JournalEntry>>, JournalError> {
        if groups.iter().all(|(b, _)| b.is_empty()) {
            return Ok(groups.iter().map(|_| Vec::new()).collect());
        }
        if self
            .inner
            .refuse_writes
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(JournalError::Refused);
        }
        let mut st = self.jstate()?;
        let mut next = st.clone();
        let mut w = self.inner.db.begin_write().map_err(jdb)?;
        w.set_durability(Durability::Immediate).map_err(jdb)?;
        let mut out = Vec::with_capacity(groups.len());
        {
            let mut journal = w.open_table(JOURNAL).map_err(jdb)?;
            let mut by_tx = w.open_multimap_table(BY_TX).map_err(jdb)?;
            let mut exceptions = w.open_table(EXCEPTIONS).map_err(jdb)?;
            for (bodies, at) in groups {
                let mut group = Vec::with_capacity(bodies.len());
                for body in bodies {
                    let seq = next.head + 1;
                    let exception = is_exception(&body);
                    let tx_id = indexed_tx(&body);
                    let entry = JournalEntry::new_chained(
                        self.inner.gate.clone(),
                        seq,
                        Uuid::now_v7(),
                        at,
                        next.last_hash.clone(),
                        body,
                    )
                    .map_err(JournalError::Hash)?;
                    let bytes = serde_json::to_vec(&entry).map_err(|e| JournalError::Corrupt {
                        seq,
                        detail: e.to_string(),
                    })?;
                    journal.insert(seq, bytes.as_slice()).map_err(jdb)?;
                    if let Some(id) = tx_id {
                        by_tx.insert(id.as_u128(), seq).map_err(jdb)?;
                    }
                    if exception {
                        exceptions.insert(seq, ()).map_err(jdb)?;
                    }
                    next.head = seq;
                    next.bytes += bytes.len() as u64;
                    next.last_hash = entry.hash.clone();
                    group.push(entry);
                }
                out.push(group);
            }
        }
        prune(&w, &mut next)?;
        write_journal_meta(&w, &next)?;
        w.commit().map_err(jdb)?;
        *st = next;
        Ok(out)
    }

    /// Highest sequence written (0 when empty).
    #[must_use]
    pub fn journal_head(&self) -> u64 {
        self.inner.journal.lock().map_or(0, |s| s.head)
    }

    /// Highest sequence central acknowledged.
    #[must_use]
    pub fn acked_seq(&self) -> u64 {
        self.inner.journal.lock().map_or(0, |s| s.acked)
    }

    /// Journal entries central has not acknowledged ([`backlog`] of head and cursor, read
    /// together).
    #[must_use]
    pub fn backlog(&self) -> u64 {
        self.inner
            .journal
            .lock()
            .map_or(0, |s| backlog(s.head, s.acked))
    }

    /// Advances the acknowledged cursor (never backwards; a lower value is ignored) and
    /// prunes if the journal is over its bound.
    ///
    /// # Errors
    /// [`JournalError::AckBeyondHead`] when `seq` was never written.
    pub fn set_acked(&self, seq: u64) -> Result<(), JournalError> {
        let mut st = self.jstate()?;
        if seq > st.head {
            return Err(JournalError::AckBeyondHead { seq, head: st.head });
        }
        if seq <= st.acked {
            return Ok(());
        }
        let mut next = st.clone();
        next.acked = seq;
        let mut w = self.inner.db.begin_write().map_err(jdb)?;
        w.set_durability(Durability::Immediate).map_err(jdb)?;
        prune(&w, &mut next)?;
        write_journal_meta(&w, &next)?;
        w.commit().map_err(jdb)?;
        *st = next;
        Ok(())
    }

    /// Unacknowledged entries (seq > acked), oldest first, at most `max_entries`; with
    /// `exceptions_first`, seal/container exceptions and integrity alerts come first.
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn unacked(
        &self,
        max_entries: usize,
        exceptions_first: bool,
    ) -> Result<Vec<JournalEntry>, JournalError> {
        let acked = self.acked_seq();
        let r = self.inner.db.begin_read().map_err(jdb)?;
        let journal = r.open_table(JOURNAL).map_err(jdb)?;
        let mut out = Vec::new();
        let mut taken = BTreeSet::new();
        if exceptions_first {
            let ex = r.open_table(EXCEPTIONS).map_err(jdb)?;
            for item in ex.range(acked + 1..).map_err(jdb)? {
                if out.len() >= max_entries {
                    break;
                }
                let seq = item.map_err(jdb)?.0.value();
                if let Some(v) = journal.get(seq).map_err(jdb)? {
                    out.push(decode_entry(seq, v.value())?);
                    taken.insert(seq);
                }
            }
        }
        for item in journal.range(acked + 1..).map_err(jdb)? {
            if out.len() >= max_entries {
                break;
            }
            let (k, v) = item.map_err(jdb)?;
            let seq = k.value();
            if !taken.contains(&seq) {
                out.push(decode_entry(seq, v.value())?);
            }
        }
        Ok(out)
    }

    /// One entry, if stored (pruned entries are gone).
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn entry(&self, seq: u64) -> Result<Option<JournalEntry>, JournalError> {
        let r = self.inner.db.begin_read().map_err(jdb)?;
        let journal = r.open_table(JOURNAL).map_err(jdb)?;
        match journal.get(seq).map_err(jdb)? {
            Some(v) => Ok(Some(decode_entry(seq, v.value())?)),
            None => Ok(None),
        }
    }

    /// Up to `max` stored entries with seq ≥ `from_seq`, ascending.
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn entries(&self, from_seq: u64, max: usize) -> Result<Vec<JournalEntry>, JournalError> {
        let r = self.inner.db.begin_read().map_err(jdb)?;
        let journal = r.open_table(JOURNAL).map_err(jdb)?;
        let mut out = Vec::new();
        for item in journal.range(from_seq..).map_err(jdb)?.take(max) {
            let (k, v) = item.map_err(jdb)?;
            out.push(decode_entry(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// Verifies every stored entry's hash and the link between consecutive stored
    /// entries, and that the last one is the recorded head; returns how many were checked.
    ///
    /// # Errors
    /// [`JournalError::Chain`] at the first break.
    pub fn verify_chain(&self) -> Result<u64, JournalError> {
        let st = self.jstate()?.clone();
        let r = self.inner.db.begin_read().map_err(jdb)?;
        let journal = r.open_table(JOURNAL).map_err(jdb)?;
        let mut prev: Option<JournalEntry> = None;
        let mut n = 0;
        for item in journal.iter().map_err(jdb)? {
            let (k, v) = item.map_err(jdb)?;
            let seq = k.value();
            let e = decode_entry(seq, v.value())?;
            check_entry(&e, seq, prev.as_ref(), &self.inner.gate)?;
            n += 1;
            prev = Some(e);
        }
        if let Some(last) = &prev
            && last.seq == st.head
            && last.hash != st.last_hash
        {
            return Err(JournalError::Chain {
                seq: last.seq,
                detail: "last entry's hash differs from the recorded chain head".into(),
            });
        }
        Ok(n)
    }

    /// Time of the oldest unacknowledged entry.
    #[must_use]
    pub fn oldest_unacked_at(&self) -> Option<Timestamp> {
        let acked = self.acked_seq();
        self.entries(acked + 1, 1)
            .ok()
            .and_then(|v| v.into_iter().next())
            .map(|e| e.at)
    }

    /// The most recent transactions (newest first) with their decisions, optionally for
    /// one lane and/or a container number (case-insensitive substring), for the console.
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn recent_transactions(
        &self,
        lane: Option<&LaneId>,
        container: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(GateTransaction, Option<Decision>)>, JournalError> {
        let needle = container.map(|c| c.trim().to_ascii_uppercase());
        let r = self.inner.db.begin_read().map_err(jdb)?;
        let journal = r.open_table(JOURNAL).map_err(jdb)?;
        let by_tx = r.open_multimap_table(BY_TX).map_err(jdb)?;
        let mut out = Vec::new();
        for item in journal.iter().map_err(jdb)?.rev().take(RECENT_SCAN_LIMIT) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(jdb)?;
            let e = decode_entry(k.value(), v.value())?;
            let EventBody::Transaction { transaction } = e.body else {
                continue;
            };
            if lane.is_some_and(|l| *l != transaction.lane) {
                continue;
            }
            if let Some(n) = &needle
                && !transaction
                    .containers()
                    .iter()
                    .any(|c| c.as_str().contains(n.as_str()))
            {
                continue;
            }
            let mut decision = None;
            for s in by_tx.get(transaction.id.as_u128()).map_err(jdb)? {
                let seq = s.map_err(jdb)?.value();
                if let Some(v) = journal.get(seq).map_err(jdb)?
                    && let EventBody::Decision { decision: d } = decode_entry(seq, v.value())?.body
                {
                    decision = Some(d);
                }
            }
            out.push((transaction, decision));
        }
        Ok(out)
    }

    /// One transaction with its latest decision and the officer actions on it.
    ///
    /// # Errors
    /// [`JournalError`].
    #[allow(clippy::type_complexity)]
    pub fn transaction(
        &self,
        id: &Uuid,
    ) -> Result<Option<(GateTransaction, Option<Decision>, Vec<OfficerAction>)>, JournalError> {
        let r = self.inner.db.begin_read().map_err(jdb)?;
        let journal = r.open_table(JOURNAL).map_err(jdb)?;
        let by_tx = r.open_multimap_table(BY_TX).map_err(jdb)?;
        let mut tx = None;
        let mut decision = None;
        let mut actions = Vec::new();
        for s in by_tx.get(id.as_u128()).map_err(jdb)? {
            let seq = s.map_err(jdb)?.value();
            let Some(v) = journal.get(seq).map_err(jdb)? else {
                continue;
            };
            match decode_entry(seq, v.value())?.body {
                EventBody::Transaction { transaction } => tx = Some(transaction),
                EventBody::Decision { decision: d } => decision = Some(d),
                EventBody::OfficerAction { action } => actions.push(action),
                _ => {}
            }
        }
        Ok(tx.map(|t| (t, decision, actions)))
    }

    // -----------------------------------------------------------------------------------
    // Replica
    // -----------------------------------------------------------------------------------

    /// Replica bookkeeping (default when unreadable, which reads as "never loaded").
    #[must_use]
    pub fn replica_meta(&self) -> ReplicaMeta {
        self.try_replica_meta().unwrap_or_default()
    }

    fn try_replica_meta(&self) -> Result<ReplicaMeta, ReplicaError> {
        let r = self.inner.db.begin_read().map_err(rdb)?;
        let t = r.open_table(REPLICA_META).map_err(rdb)?;
        read_replica_meta(&t)
    }

    /// Binds the replica to a port of entry. A fresh replica records it; one already
    /// bound to another port refuses (it holds another port's data).
    ///
    /// # Errors
    /// [`ReplicaError::WrongPort`].
    pub fn bind_port(&self, port: &str) -> Result<(), ReplicaError> {
        let _g = self
            .inner
            .replica
            .lock()
            .map_err(|_| ReplicaError::Schema("replica lock poisoned".into()))?;
        let mut meta = self.try_replica_meta()?;
        match &meta.port {
            Some(p) if p == port => Ok(()),
            Some(p) => Err(ReplicaError::WrongPort {
                expected: p.clone(),
                found: port.into(),
            }),
            None => {
                meta.port = Some(port.into());
                let w = self.inner.db.begin_write().map_err(rdb)?;
                write_replica_meta(&w, &meta)?;
                w.commit().map_err(rdb)
            }
        }
    }

    /// Applies a verified change batch: a snapshot replaces the replica; a delta must
    /// follow the current sequence exactly. All or nothing, one write transaction.
    ///
    /// # Errors
    /// [`ReplicaError::Gap`], [`ReplicaError::Replay`], [`ReplicaError::Rollback`],
    /// [`ReplicaError::WrongPort`], [`ReplicaError::Malformed`],
    /// [`ReplicaError::UnknownOperator`]; the replica is unchanged after any error.
    pub fn apply_batch(&self, batch: &ChangeBatch) -> Result<(), ReplicaError> {
        let _g = self
            .inner
            .replica
            .lock()
            .map_err(|_| ReplicaError::Schema("replica lock poisoned".into()))?;
        let mut meta = self.try_replica_meta()?;
        check_batch(&meta, batch)?;
        let mut w = self.inner.db.begin_write().map_err(rdb)?;
        w.set_durability(Durability::Immediate).map_err(rdb)?;
        if batch.snapshot {
            // Deleting a table frees its pages without visiting every entry.
            w.delete_table(OPERATORS).map_err(rdb)?;
            w.delete_table(LINKS).map_err(rdb)?;
            w.delete_table(MRAS).map_err(rdb)?;
            w.delete_table(CONSIGNMENTS).map_err(rdb)?;
            w.delete_multimap_table(BY_CONTAINER).map_err(rdb)?;
        }
        {
            let mut sink = WriteSink::open(&w)?;
            // On error `w` drops uncommitted: redb aborts it, nothing is applied.
            apply_changes(&mut sink, batch)?;
        }
        meta.sequence = batch.last_seq;
        meta.as_of = Some(batch.as_of);
        meta.port = Some(batch.port.clone());
        write_replica_meta(&w, &meta)?;
        w.commit().map_err(rdb)?;
        Ok(())
    }

    /// A read snapshot of the replica for [`crate::decider::decide`]. Holds a redb read
    /// transaction: use it and drop it; never hold it across an `.await`.
    ///
    /// # Errors
    /// [`ReplicaError`].
    pub fn replica_view(&self) -> Result<ReplicaSnapshot, ReplicaError> {
        let r = self.inner.db.begin_read().map_err(rdb)?;
        let meta = {
            let t = r.open_table(REPLICA_META).map_err(rdb)?;
            read_replica_meta(&t)?
        };
        Ok(ReplicaSnapshot { r, meta })
    }

    /// Records that central confirmed, at `at`, that nothing newer than the replica exists.
    ///
    /// # Errors
    /// [`ReplicaError`].
    pub fn mark_synced(&self, at: Timestamp) -> Result<(), ReplicaError> {
        let _g = self
            .inner
            .replica
            .lock()
            .map_err(|_| ReplicaError::Schema("replica lock poisoned".into()))?;
        let mut meta = self.try_replica_meta()?;
        meta.last_sync = Some(meta.last_sync.map_or(at, |s| s.max(at)));
        let w = self.inner.db.begin_write().map_err(rdb)?;
        write_replica_meta(&w, &meta)?;
        w.commit().map_err(rdb)
    }
}

fn check_entry(
    e: &JournalEntry,
    seq: u64,
    prev: Option<&JournalEntry>,
    gate: &GateId,
) -> Result<(), JournalError> {
    let chain = |detail: String| JournalError::Chain { seq, detail };
    if e.seq != seq {
        return Err(chain(format!(
            "stored under seq {seq} but says seq {}",
            e.seq
        )));
    }
    if &e.agent != gate {
        return Err(chain(format!(
            "written by agent {} (this is {gate})",
            e.agent
        )));
    }
    e.verify_hash().map_err(|err| chain(err.to_string()))?;
    if seq == 1 && e.prev_hash != GENESIS_HASH {
        return Err(chain(
            "first entry does not start from the genesis hash".into(),
        ));
    }
    if let Some(p) = prev
        && p.seq + 1 == seq
        && e.prev_hash != p.hash
    {
        return Err(chain(format!(
            "prev_hash does not match entry {}'s hash",
            p.seq
        )));
    }
    Ok(())
}

fn verify_tail(
    journal: &impl ReadableTable<u64, &'static [u8]>,
    st: &JournalState,
) -> Result<(), JournalError> {
    let Some((k, v)) = journal.last().map_err(jdb)? else {
        if st.head != 0 && st.acked < st.head {
            return Err(JournalError::Chain {
                seq: st.head,
                detail: "journal is empty but its head says entries exist".into(),
            });
        }
        return Ok(());
    };
    let seq = k.value();
    let last = decode_entry(seq, v.value())?;
    drop((k, v));
    if seq != st.head {
        return Err(JournalError::Chain {
            seq,
            detail: format!(
                "last stored entry is {seq} but the recorded head is {}",
                st.head
            ),
        });
    }
    let prev = match seq.checked_sub(1) {
        Some(p) if p > 0 => match journal.get(p).map_err(jdb)? {
            Some(pv) => Some(decode_entry(p, pv.value())?),
            None => None,
        },
        _ => None,
    };
    check_entry(&last, seq, prev.as_ref(), &last.agent.clone())?;
    if last.hash != st.last_hash {
        return Err(JournalError::Chain {
            seq,
            detail: "last entry's hash differs from the recorded chain head".into(),
        });
    }
    Ok(())
}

fn write_journal_meta(w: &WriteTransaction, st: &JournalState) -> Result<(), JournalError> {
    let mut meta = w.open_table(JOURNAL_META).map_err(jdb)?;
    meta.insert("head", st.head).map_err(jdb)?;
    meta.insert("acked", st.acked).map_err(jdb)?;
    meta.insert("bytes", st.bytes).map_err(jdb)?;
    let mut text = w.open_table(JOURNAL_TEXT).map_err(jdb)?;
    text.insert("last_hash", st.last_hash.as_str())
        .map_err(jdb)?;
    Ok(())
}

/// Deletes acknowledged routine entries, oldest first, until the journal is at 90 % of
/// its bound (hysteresis, so not every append prunes).
fn prune(w: &WriteTransaction, st: &mut JournalState) -> Result<(), JournalError> {
    if st.bytes <= st.max_bytes {
        return Ok(());
    }
    let target = st.max_bytes / 10 * 9;
    let mut journal = w.open_table(JOURNAL).map_err(jdb)?;
    let exceptions = w.open_table(EXCEPTIONS).map_err(jdb)?;
    let mut by_tx = w.open_multimap_table(BY_TX).map_err(jdb)?;
    let mut victims: Vec<(u64, u64, Option<Uuid>)> = Vec::new();
    let mut freed = 0u64;
    for item in journal.range(..=st.acked).map_err(jdb)? {
        if st.bytes - freed <= target || victims.len() >= PRUNE_BATCH {
            break;
        }
        let (k, v) = item.map_err(jdb)?;
        let seq = k.value();
        if exceptions.get(seq).map_err(jdb)?.is_some() {
            continue;
        }
        let len = v.value().len() as u64;
        let tx = decode_entry(seq, v.value())
            .ok()
            .and_then(|e| indexed_tx(&e.body));
        victims.push((seq, len, tx));
        freed += len;
    }
    for (seq, _, tx) in &victims {
        journal.remove(*seq).map_err(jdb)?;
        if let Some(id) = tx {
            by_tx.remove(id.as_u128(), *seq).map_err(jdb)?;
        }
    }
    st.bytes -= freed;
    Ok(())
}

/// Drops a replica kept in the JSON tables of earlier releases and marks the replica as
/// never loaded (keeping its port), so replication bootstraps it again from a snapshot:
/// one snapshot is cheaper and simpler than converting in place, and the decider treats
/// the empty replica as missing data (never FAST) until then.
fn migrate_replica_v1(db: &Database) -> Result<(), ReplicaError> {
    let r = db.begin_read().map_err(rdb)?;
    let names: Vec<String> = r
        .list_tables()
        .map_err(rdb)?
        .map(|h| h.name().to_string())
        .collect();
    drop(r);
    if !OLD_JSON_TABLES.iter().any(|t| names.iter().any(|n| n == t)) {
        return Ok(());
    }
    let mut w = db.begin_write().map_err(rdb)?;
    w.set_durability(Durability::Immediate).map_err(rdb)?;
    for name in OLD_JSON_TABLES {
        w.delete_table(TableDefinition::<&str, &[u8]>::new(name))
            .map_err(rdb)?;
    }
    w.delete_table(LINKS).map_err(rdb)?;
    w.delete_multimap_table(BY_CONTAINER).map_err(rdb)?;
    let port = {
        let t = w.open_table(REPLICA_META).map_err(rdb)?;
        read_replica_meta(&t).map(|m| m.port).unwrap_or(None)
    };
    write_replica_meta(
        &w,
        &ReplicaMeta {
            port,
            ..ReplicaMeta::default()
        },
    )?;
    w.commit().map_err(rdb)?;
    tracing::warn!(
        "the replica was stored in an older format; it is dropped and loads again from a snapshot"
    );
    Ok(())
}

fn read_replica_meta(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<ReplicaMeta, ReplicaError> {
    match t.get("meta").map_err(rdb)? {
        Some(v) => serde_json::from_slice(v.value())
            .map_err(|e| ReplicaError::Schema(format!("replica meta: {e}"))),
        None => Ok(ReplicaMeta::default()),
    }
}

fn write_replica_meta(w: &WriteTransaction, meta: &ReplicaMeta) -> Result<(), ReplicaError> {
    let bytes = serde_json::to_vec(meta).map_err(|e| ReplicaError::Schema(e.to_string()))?;
    let mut t = w.open_table(REPLICA_META).map_err(rdb)?;
    t.insert("meta", bytes.as_slice()).map_err(rdb)?;
    Ok(())
}

/// Encodes a replica value into `buf` (cleared first): [`REPLICA_ENCODING`], then postcard.
fn encode_into<T: Serialize>(v: &T, buf: &mut Vec<u8>) -> Result<(), ReplicaError> {
    buf.clear();
    buf.push(REPLICA_ENCODING);
    let taken = std::mem::take(buf);
    *buf = postcard::to_extend(v, taken).map_err(|e| ReplicaError::Schema(e.to_string()))?;
    Ok(())
}

fn decode<T: for<'de> Deserialize<'de>>(
    what: &str,
    key: &str,
    bytes: &[u8],
) -> Result<T, ReplicaError> {
    match bytes.split_first() {
        Some((&REPLICA_ENCODING, rest)) => postcard::from_bytes(rest)
            .map_err(|e| ReplicaError::Schema(format!("{what} {key}: {e}"))),
        Some((other, _)) => Err(ReplicaError::Schema(format!(
            "{what} {key}: unknown encoding {other} (expected {REPLICA_ENCODING})"
        ))),
        None => Err(ReplicaError::Schema(format!("{what} {key}: empty value"))),
    }
}

fn mra_key(m: &MraRecord) -> String {
    format!("{}>{}", m.recognising, m.partner)
}

/// The replica tables of one write transaction, opened once for the whole batch.
struct WriteSink<'t> {
    ops: Table<'t, &'static str, &'static [u8]>,
    links: Table<'t, &'static str, &'static str>,
    mras: Table<'t, &'static str, &'static [u8]>,
    consignments: Table<'t, &'static str, &'static [u8]>,
    by_container: MultimapTable<'t, &'static str, &'static str>,
    /// Reused encoding buffer (one allocation per batch, not per record).
    buf: Vec<u8>,
}

impl<'t> WriteSink<'t> {
    fn open(w: &'t WriteTransaction) -> Result<Self, ReplicaError> {
        Ok(Self {
            ops: w.open_table(OPERATORS).map_err(rdb)?,
            links: w.open_table(LINKS).map_err(rdb)?,
            mras: w.open_table(MRAS).map_err(rdb)?,
            consignments: w.open_table(CONSIGNMENTS).map_err(rdb)?,
            by_container: w.open_multimap_table(BY_CONTAINER).map_err(rdb)?,
            buf: Vec::with_capacity(512),
        })
    }
}

impl ReplicaSink for WriteSink<'_> {
    fn upsert_operator(&mut self, record: &RegistryRecord) -> Result<(), ReplicaError> {
        let key = record.operator.to_string();
        let old: Option<RegistryRecord> = match self.ops.get(key.as_str()).map_err(rdb)? {
            Some(v) => Some(decode("operator", &key, v.value())?),
            None => None,
        };
        if let Some(old) = old {
            for l in &old.linked_ids {
                self.links.remove(l.to_string().as_str()).map_err(rdb)?;
            }
        }
        for l in &record.linked_ids {
            self.links
                .insert(l.to_string().as_str(), key.as_str())
                .map_err(rdb)?;
        }
        encode_into(record, &mut self.buf)?;
        self.ops
            .insert(key.as_str(), self.buf.as_slice())
            .map_err(rdb)?;
        Ok(())
    }

    fn current_operator(
        &mut self,
        id: &OperatorId,
    ) -> Result<Option<RegistryRecord>, ReplicaError> {
        let key = id.to_string();
        match self.ops.get(key.as_str()).map_err(rdb)? {
            Some(v) => Ok(Some(decode("operator", &key, v.value())?)),
            None => Ok(None),
        }
    }

    fn upsert_mra(&mut self, mra: &MraRecord) -> Result<(), ReplicaError> {
        encode_into(mra, &mut self.buf)?;
        self.mras
            .insert(mra_key(mra).as_str(), self.buf.as_slice())
            .map_err(rdb)?;
        Ok(())
    }

    fn upsert_consignment(&mut self, consignment: &Consignment) -> Result<(), ReplicaError> {
        self.remove_consignment(&consignment.id)?;
        for d in &consignment.containers {
            self.by_container
                .insert(d.number.as_str(), consignment.id.as_str())
                .map_err(rdb)?;
        }
        encode_into(consignment, &mut self.buf)?;
        self.consignments
            .insert(consignment.id.as_str(), self.buf.as_slice())
            .map_err(rdb)?;
        Ok(())
    }

    fn remove_consignment(&mut self, id: &str) -> Result<(), ReplicaError> {
        let old: Option<Consignment> = match self.consignments.get(id).map_err(rdb)? {
            Some(v) => Some(decode("consignment", id, v.value())?),
            None => None,
        };
        if let Some(old) = old {
            for d in &old.containers {
                self.by_container
                    .remove(d.number.as_str(), id)
                    .map_err(rdb)?;
            }
            self.consignments.remove(id).map_err(rdb)?;
        }
        Ok(())
    }
}

/// A read snapshot of the replica (a redb read transaction). A record that cannot be read
/// is [`Unreadable`] through the `try_` look-ups (the decider's `REPLICA_UNREADABLE`) and
/// "not found" through the plain ones; either way never FAST.
#[derive(Debug)]
pub struct ReplicaSnapshot {
    r: ReadTransaction,
    meta: ReplicaMeta,
}

impl ReplicaSnapshot {
    /// The replica bookkeeping this snapshot was taken with.
    #[must_use]
    pub fn meta(&self) -> &ReplicaMeta {
        &self.meta
    }

    fn get_operator(&self, id: &OperatorId) -> Result<Option<RegistryRecord>, ReplicaError> {
        let ops = self.r.open_table(OPERATORS).map_err(rdb)?;
        let key = id.to_string();
        if let Some(v) = ops.get(key.as_str()).map_err(rdb)? {
            return Ok(Some(decode("operator", &key, v.value())?));
        }
        let links = self.r.open_table(LINKS).map_err(rdb)?;
        let Some(primary) = links.get(key.as_str()).map_err(rdb)? else {
            return Ok(None);
        };
        match ops.get(primary.value()).map_err(rdb)? {
            Some(v) => Ok(Some(decode("operator", primary.value(), v.value())?)),
            None => Ok(None),
        }
    }

    fn get_consignment(&self, c: &ContainerNumber) -> Result<Option<Consignment>, ReplicaError> {
        let idx = self.r.open_multimap_table(BY_CONTAINER).map_err(rdb)?;
        let t = self.r.open_table(CONSIGNMENTS).map_err(rdb)?;
        let mut best: Option<Consignment> = None;
        for id in idx.get(c.as_str()).map_err(rdb)? {
            let id = id.map_err(rdb)?;
            if let Some(v) = t.get(id.value()).map_err(rdb)? {
                let k: Consignment = decode("consignment", id.value(), v.value())?;
                if best
                    .as_ref()
                    .is_none_or(|b| (k.as_of, &k.id) > (b.as_of, &b.id))
                {
                    best = Some(k);
                }
            }
        }
        Ok(best)
    }

    fn get_mras(&self) -> Result<Vec<MraRecord>, ReplicaError> {
        let t = self.r.open_table(MRAS).map_err(rdb)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(rdb)? {
            let (k, v) = item.map_err(rdb)?;
            out.push(decode("mra", k.value(), v.value())?);
        }
        Ok(out)
    }
}

impl ReplicaView for ReplicaSnapshot {
    fn operator(&self, id: &OperatorId) -> Option<RegistryRecord> {
        self.get_operator(id)
            .inspect_err(|e| tracing::warn!(error = %e, operator = %id, "replica lookup failed"))
            .ok()
            .flatten()
    }
    fn consignment_for(&self, c: &ContainerNumber) -> Option<Consignment> {
        self.get_consignment(c)
            .inspect_err(|e| tracing::warn!(error = %e, container = %c, "replica lookup failed"))
            .ok()
            .flatten()
    }
    fn mras(&self) -> Vec<MraRecord> {
        self.get_mras()
            .inspect_err(|e| tracing::warn!(error = %e, "replica MRA lookup failed"))
            .unwrap_or_default()
    }
    fn sequence(&self) -> u64 {
        self.meta.sequence
    }
    fn as_of(&self) -> Option<Timestamp> {
        self.meta.current_as_of()
    }
    fn try_operator(&self, id: &OperatorId) -> Result<Option<RegistryRecord>, Unreadable> {
        self.get_operator(id).map_err(|e| {
            tracing::warn!(error = %e, operator = %id, "replica lookup failed");
            Unreadable(e.to_string())
        })
    }
    fn try_consignment_for(&self, c: &ContainerNumber) -> Result<Option<Consignment>, Unreadable> {
        self.get_consignment(c).map_err(|e| {
            tracing::warn!(error = %e, container = %c, "replica lookup failed");
            Unreadable(e.to_string())
        })
    }
    fn try_mras(&self) -> Result<Vec<MraRecord>, Unreadable> {
        self.get_mras().map_err(|e| {
            tracing::warn!(error = %e, "replica MRA lookup failed");
            Unreadable(e.to_string())
        })
    }
}
