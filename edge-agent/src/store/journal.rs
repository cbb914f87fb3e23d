//! The journal half of the store: `journal_v1` and its meta, index and exception
//! tables; appends (group commit), the acknowledgement cursor, pruning, chain checks and
//! the console's history queries.

use std::collections::BTreeSet;

use jiff::Timestamp;
use protocol::schema::{
    Decision, EntryJson, EventBody, GENESIS_HASH, GateId, GateTransaction, JournalEntry, LaneId,
    OfficerAction, SCHEMA_VERSION, check_version, entry_hash,
};
use redb::{Durability, MultimapTableDefinition, ReadableTable, TableDefinition, WriteTransaction};
use uuid::Uuid;

use super::error::{JournalError, jdb};
use super::handle::{JournalState, Store};

pub(super) const JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("journal_v1");
pub(super) const JOURNAL_META: TableDefinition<&str, u64> = TableDefinition::new("journal_meta_v1");
pub(super) const JOURNAL_TEXT: TableDefinition<&str, &str> =
    TableDefinition::new("journal_text_v1");
pub(super) const BY_TX: MultimapTableDefinition<u128, u64> =
    MultimapTableDefinition::new("journal_by_tx_v1");
/// Seqs of entries that are seal/container exceptions or integrity alerts.
pub(super) const EXCEPTIONS: TableDefinition<u64, ()> =
    TableDefinition::new("journal_exceptions_v1");

/// Most entries [`Store::recent_transactions`] scans before giving up.
const RECENT_SCAN_LIMIT: usize = 50_000;
/// Most entries one prune pass deletes in a commit that only moves the uplink's cursor.
/// A journal over its bound is pruned in the same write transaction as a commit, and the
/// lanes' next appends wait behind it; each pruned entry's transaction id is read and the
/// entry removed with its index row, so the slice bounds what a commit adds (it was
/// 10,000). A journal far over its bound (a long backlog acknowledged at tens of
/// thousands of entries a second) is pruned a slice at every commit.
pub const PRUNE_BATCH: usize = 256;

/// Most entries a commit that carries lane work (a decision, a read, a consumed read)
/// prunes, unless it appends more: it then prunes twice what it appends, so the journal
/// still shrinks towards its bound while the lanes write. A lane's commit is what a truck
/// waits on; the bulk of the pruning rides on the uplink's cursor commits
/// ([`PRUNE_BATCH`]).
pub const PRUNE_SLICE_WITH_LANES: usize = 16;

/// What [`Store::log_and_append`] answers, part by part.
#[derive(Debug)]
pub struct WindowResult {
    /// The read log's events.
    pub logged: Result<(), JournalError>,
    /// The journal's entries, per group.
    pub appended: Result<Vec<Vec<JournalEntry>>, JournalError>,
    /// The acknowledged cursor.
    pub acked: Result<(), JournalError>,
    /// When `appended` is an error: the groups, handed back as given (nothing of them was
    /// written), so a caller can hold its records without having kept a copy. Empty
    /// otherwise.
    pub unwritten: Vec<(Vec<EventBody>, Timestamp)>,
}

/// The uplink backlog: entries written up to `head` that central has not acknowledged
/// (its cursor is `acked`). The one definition, used by the uplink, its heartbeat, the
/// gauges and the console.
#[must_use]
pub fn backlog(head: u64, acked: u64) -> u64 {
    head.saturating_sub(acked)
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

/// A journal entry but its body: what [`chained_entry`] makes for a body it only borrows.
struct EntryHead {
    seq: u64,
    id: Uuid,
    at: Timestamp,
    prev_hash: String,
    hash: String,
}

impl EntryHead {
    fn with_body(self, gate: &GateId, body: EventBody) -> JournalEntry {
        JournalEntry {
            v: SCHEMA_VERSION,
            agent: gate.clone(),
            seq: self.seq,
            id: self.id,
            at: self.at,
            prev_hash: self.prev_hash,
            hash: self.hash,
            body,
        }
    }
}

/// The entry that follows `prev_hash` (a new id, its hash computed as
/// [`protocol::schema::entry_hash`] defines it) but its body, and its stored bytes, the
/// body serialised once for both. The body is only borrowed: it becomes part of the entry
/// once the write transaction holding it has committed ([`EntryHead::with_body`]).
fn chained_entry(
    gate: &GateId,
    seq: u64,
    at: Timestamp,
    prev_hash: &str,
    body: &EventBody,
) -> Result<(EntryHead, Vec<u8>), JournalError> {
    let unserialisable = |e: serde_json::Error| JournalError::Corrupt {
        seq,
        detail: e.to_string(),
    };
    let id = Uuid::now_v7();
    let json = serde_json::value::to_raw_value(body).map_err(unserialisable)?;
    let hash = entry_hash(prev_hash, SCHEMA_VERSION, gate, seq, &id, &at, &*json)
        .map_err(JournalError::Hash)?;
    let bytes = serde_json::to_vec(&EntryJson {
        v: SCHEMA_VERSION,
        agent: gate,
        seq,
        id: &id,
        at: &at,
        prev_hash,
        hash: &hash,
        body: &*json,
    })
    .map_err(unserialisable)?;
    let head = EntryHead {
        seq,
        id,
        at,
        prev_hash: prev_hash.to_owned(),
        hash,
    };
    Ok((head, bytes))
}

pub(super) fn decode_entry(seq: u64, bytes: &[u8]) -> Result<JournalEntry, JournalError> {
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

pub(super) fn read_meta_u64(
    t: &impl ReadableTable<&'static str, u64>,
    key: &str,
) -> Result<u64, JournalError> {
    Ok(t.get(key).map_err(jdb)?.map_or(0, |v| v.value()))
}

impl Store {
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
        self.append_groups_consuming(groups, &[])
    }

    /// [`Store::append_groups`] that also removes `consumed` events from the read log
    /// (`store/reads.rs`) in the same write transaction: the events the journaled
    /// records account for.
    ///
    /// # Errors
    /// As [`Store::append_groups`]; nothing is written or removed then.
    pub fn append_groups_consuming(
        &self,
        groups: Vec<(Vec<EventBody>, Timestamp)>,
        consumed: &[Vec<u8>],
    ) -> Result<Vec<Vec<JournalEntry>>, JournalError> {
        let journal_work = !(groups.iter().all(|(b, _)| b.is_empty()) && consumed.is_empty());
        if journal_work && self.refusing_journal_writes() {
            return Err(JournalError::Refused);
        }
        let written = self
            .append_groups_once(&[], groups, consumed, None)
            .map_err(|(e, _)| e);
        if let Err(e) = &written {
            self.note_journal_error(e);
        }
        written
    }

    /// One durable write transaction (one fsync) for a commit window of the agent's
    /// writer: `log` (encoded lane events, [`Store::log_reads`]) goes into the read log,
    /// then `groups` are appended and `consumed` removed as
    /// [`Store::append_groups_consuming`] does, and the acknowledged cursor moves to `ack`
    /// as [`Store::set_acked`] does. The parts succeed or fail together, except while
    /// journal writes are refused ([`Store::refuse_journal_writes`]): then the read log
    /// and the cursor are written on their own and the journal part is refused.
    pub fn log_and_append(
        &self,
        log: &[Vec<u8>],
        groups: Vec<(Vec<EventBody>, Timestamp)>,
        consumed: &[Vec<u8>],
        ack: Option<u64>,
    ) -> WindowResult {
        let journal_work = !(groups.iter().all(|(b, _)| b.is_empty()) && consumed.is_empty());
        if journal_work && self.refusing_journal_writes() {
            return WindowResult {
                logged: self.log_reads(log),
                appended: Err(JournalError::Refused),
                acked: ack.map_or(Ok(()), |a| self.set_acked(a)),
                unwritten: groups,
            };
        }
        if let Some(seq) = ack {
            let head = self.journal_head();
            if seq > head {
                let mut r = self.log_and_append(log, groups, consumed, None);
                r.acked = Err(JournalError::AckBeyondHead { seq, head });
                return r;
            }
        }
        match self.append_groups_once(log, groups, consumed, ack) {
            Ok(entries) => WindowResult {
                logged: Ok(()),
                appended: Ok(entries),
                acked: Ok(()),
                unwritten: Vec::new(),
            },
            Err((e, groups)) => {
                self.note_journal_error(&e);
                WindowResult {
                    logged: Err(e.for_group_member()),
                    acked: Err(e.for_group_member()),
                    appended: Err(e),
                    unwritten: groups,
                }
            }
        }
    }

    fn refusing_journal_writes(&self) -> bool {
        self.inner
            .refuse_writes
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Writes `log`, `groups` and `consumed` (and moves the cursor to `ack`) in one
    /// durable write transaction; the entries take their bodies only after the commit.
    /// On an error nothing was written and the groups are handed back as given, also when
    /// the write panicked ([`JournalError::WriterStopped`]): the records are the caller's
    /// to hold, not lost with the write.
    #[allow(clippy::type_complexity)]
    fn append_groups_once(
        &self,
        log: &[Vec<u8>],
        groups: Vec<(Vec<EventBody>, Timestamp)>,
        consumed: &[Vec<u8>],
        ack: Option<u64>,
    ) -> Result<Vec<Vec<JournalEntry>>, (JournalError, Vec<(Vec<EventBody>, Timestamp)>)> {
        let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.write_groups(log, &groups, consumed, ack)
        }));
        match written {
            Ok(Ok(heads)) => Ok(heads
                .into_iter()
                .zip(groups)
                .map(|(heads, (bodies, _))| {
                    heads
                        .into_iter()
                        .zip(bodies)
                        .map(|(head, body)| head.with_body(&self.inner.gate, body))
                        .collect()
                })
                .collect()),
            Ok(Err(e)) => Err((e, groups)),
            Err(_) => Err((JournalError::WriterStopped, groups)),
        }
    }

    fn write_groups(
        &self,
        log: &[Vec<u8>],
        groups: &[(Vec<EventBody>, Timestamp)],
        consumed: &[Vec<u8>],
        ack: Option<u64>,
    ) -> Result<Vec<Vec<EntryHead>>, JournalError> {
        if log.is_empty()
            && groups.iter().all(|(b, _)| b.is_empty())
            && consumed.is_empty()
            && ack.is_none()
        {
            return Ok(groups.iter().map(|_| Vec::new()).collect());
        }
        let appended: usize = groups.iter().map(|(b, _)| b.len()).sum();
        let lane_work = appended > 0 || !log.is_empty() || !consumed.is_empty();
        let mut st = self.jstate()?;
        let mut next = st.clone();
        let mut w = self.database().begin_write().map_err(jdb)?;
        // A commit that only moves the uplink's cursor (and prunes) is not flushed on its
        // own: the next durable commit makes it durable, and a crash before that only
        // sends central again what it already acknowledged, which it stores once. Lane
        // work is always durable when the commit returns.
        w.set_durability(if lane_work {
            Durability::Immediate
        } else {
            Durability::None
        })
        .map_err(jdb)?;
        super::reads::log_in(&w, log)?;
        let mut out = Vec::with_capacity(groups.len());
        {
            let mut journal = w.open_table(JOURNAL).map_err(jdb)?;
            let mut by_tx = w.open_multimap_table(BY_TX).map_err(jdb)?;
            let mut exceptions = w.open_table(EXCEPTIONS).map_err(jdb)?;
            for (bodies, at) in groups {
                let mut group = Vec::with_capacity(bodies.len());
                for body in bodies {
                    let seq = next.head + 1;
                    let (head, bytes) =
                        chained_entry(&self.inner.gate, seq, *at, &next.last_hash, body)?;
                    journal.insert(seq, bytes.as_slice()).map_err(jdb)?;
                    if let Some(id) = indexed_tx(body) {
                        by_tx.insert(id.as_u128(), seq).map_err(jdb)?;
                    }
                    if is_exception(body) {
                        exceptions.insert(seq, ()).map_err(jdb)?;
                    }
                    next.head = seq;
                    next.bytes += bytes.len() as u64;
                    next.last_hash.clone_from(&head.hash);
                    group.push(head);
                }
                out.push(group);
            }
        }
        super::reads::consume_in(&w, consumed)?;
        // Never backwards, never past the head (the caller checked it against the head
        // before these appends, which only move it further).
        if let Some(seq) = ack
            && seq > next.acked
            && seq <= next.head
        {
            next.acked = seq;
        }
        prune(&w, &mut next, prune_budget(lane_work, appended))?;
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
        let written = self.set_acked_once(seq);
        if let Err(e) = &written {
            self.note_journal_error(e);
        }
        written
    }

    fn set_acked_once(&self, seq: u64) -> Result<(), JournalError> {
        let mut st = self.jstate()?;
        if seq > st.head {
            return Err(JournalError::AckBeyondHead { seq, head: st.head });
        }
        if seq <= st.acked {
            return Ok(());
        }
        let mut next = st.clone();
        next.acked = seq;
        let mut w = self.database().begin_write().map_err(jdb)?;
        w.set_durability(Durability::Immediate).map_err(jdb)?;
        prune(&w, &mut next, PRUNE_BATCH)?;
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
        let r = self.database().begin_read().map_err(jdb)?;
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
        let r = self.database().begin_read().map_err(jdb)?;
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
        let r = self.database().begin_read().map_err(jdb)?;
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
        let r = self.database().begin_read().map_err(jdb)?;
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
        let r = self.database().begin_read().map_err(jdb)?;
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

    /// Whether the transaction `id` is in the journal.
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn has_transaction(&self, id: &Uuid) -> Result<bool, JournalError> {
        let r = self.database().begin_read().map_err(jdb)?;
        let by_tx = r.open_multimap_table(BY_TX).map_err(jdb)?;
        let found = by_tx.get(id.as_u128()).map_err(jdb)?.next().is_some();
        Ok(found)
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
        let r = self.database().begin_read().map_err(jdb)?;
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
}

pub(super) fn check_entry(
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
    // The entry after a marker links to the lost original, not to the marker.
    if let Some(p) = prev
        && p.seq + 1 == seq
        && !is_marker(p)
        && e.prev_hash != p.hash
    {
        return Err(chain(format!(
            "prev_hash does not match entry {}'s hash",
            p.seq
        )));
    }
    Ok(())
}

pub(super) fn verify_tail(
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

pub(super) fn write_journal_meta(
    w: &WriteTransaction,
    st: &JournalState,
) -> Result<(), JournalError> {
    let mut meta = w.open_table(JOURNAL_META).map_err(jdb)?;
    meta.insert("head", st.head).map_err(jdb)?;
    meta.insert("acked", st.acked).map_err(jdb)?;
    meta.insert("bytes", st.bytes).map_err(jdb)?;
    let mut text = w.open_table(JOURNAL_TEXT).map_err(jdb)?;
    text.insert("last_hash", st.last_hash.as_str())
        .map_err(jdb)?;
    Ok(())
}

/// How many entries a commit may prune: [`PRUNE_BATCH`] for a commit without lane work,
/// else [`PRUNE_SLICE_WITH_LANES`] or twice what it appends, whichever is more.
fn prune_budget(lane_work: bool, appended: usize) -> usize {
    if lane_work {
        PRUNE_SLICE_WITH_LANES.max(appended.saturating_mul(2))
    } else {
        PRUNE_BATCH
    }
}

/// The transaction an entry's stored bytes are indexed under ([`indexed_tx`] of its
/// body), read without decoding the body: the body's `type` picks the one field that
/// carries the id and only that field is parsed. For the entries the journal writes the
/// answer is the decoded entry's (tested); bytes this cannot read are decoded whole.
fn stored_tx(seq: u64, bytes: &[u8]) -> Option<Uuid> {
    #[derive(serde::Deserialize)]
    struct Entry<'a> {
        #[serde(borrow)]
        body: Body<'a>,
    }
    #[derive(serde::Deserialize)]
    struct Body<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        #[serde(borrow, default)]
        transaction: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow, default)]
        decision: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow, default)]
        action: Option<&'a serde_json::value::RawValue>,
    }
    #[derive(serde::Deserialize)]
    struct Id {
        id: Uuid,
    }
    #[derive(serde::Deserialize)]
    struct TxId {
        transaction_id: Option<Uuid>,
    }
    let quick = || -> Option<Option<Uuid>> {
        let e: Entry<'_> = serde_json::from_slice(bytes).ok()?;
        fn field(raw: Option<&serde_json::value::RawValue>) -> Option<&str> {
            raw.map(serde_json::value::RawValue::get)
        }
        match e.body.kind {
            "TRANSACTION" => {
                let id: Id = serde_json::from_str(field(e.body.transaction)?).ok()?;
                Some(Some(id.id))
            }
            "DECISION" => {
                let d: TxId = serde_json::from_str(field(e.body.decision)?).ok()?;
                Some(Some(d.transaction_id?))
            }
            "OFFICER_ACTION" => {
                let a: TxId = serde_json::from_str(field(e.body.action)?).ok()?;
                Some(a.transaction_id)
            }
            _ => Some(None),
        }
    };
    quick().unwrap_or_else(|| {
        decode_entry(seq, bytes)
            .ok()
            .and_then(|e| indexed_tx(&e.body))
    })
}

/// Deletes acknowledged routine entries, oldest first, until the journal is at 90 % of
/// its bound (hysteresis, so not every append prunes), at most `budget` of them.
fn prune(w: &WriteTransaction, st: &mut JournalState, budget: usize) -> Result<(), JournalError> {
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
        if st.bytes - freed <= target || victims.len() >= budget {
            break;
        }
        let (k, v) = item.map_err(jdb)?;
        let seq = k.value();
        if exceptions.get(seq).map_err(jdb)?.is_some() {
            continue;
        }
        let len = v.value().len() as u64;
        let tx = stored_tx(seq, v.value());
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

/// Marker of a journal entry that failed its check at start or went missing: written in
/// its seq by the start-up check (`store/check.rs`) so the uplink never waits on a hole.
pub const ALERT_ENTRY_QUARANTINED: &str = "JOURNAL_ENTRY_QUARANTINED";

/// Whether `e` is a marker written in place of a lost entry.
pub(super) fn is_marker(e: &JournalEntry) -> bool {
    matches!(&e.body, EventBody::IntegrityAlert { what, .. } if what == ALERT_ENTRY_QUARANTINED)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use protocol::schema::{CloseReason, LaneId};

    fn gate() -> GateId {
        GateId::parse("G1").expect("gate")
    }

    fn transaction() -> EventBody {
        EventBody::Transaction {
            transaction: GateTransaction {
                v: SCHEMA_VERSION,
                id: Uuid::now_v7(),
                gate: gate(),
                lane: LaneId::parse("L1").expect("lane"),
                opened_at: Timestamp::UNIX_EPOCH,
                closed_at: Timestamp::UNIX_EPOCH,
                close_reason: CloseReason::Departure,
                reads: Vec::new(),
            },
        }
    }

    /// The stored bytes are what serialising the entry itself gives, and its hash is the
    /// one [`JournalEntry::verify_hash`] recomputes.
    fn check(body: EventBody, prev_hash: &str) {
        let (head, bytes) =
            chained_entry(&gate(), 7, Timestamp::UNIX_EPOCH, prev_hash, &body).expect("entry");
        let entry = head.with_body(&gate(), body);
        assert_eq!(bytes, serde_json::to_vec(&entry).expect("json"));
        entry.verify_hash().expect("hash verifies");
        assert_eq!(decode_entry(7, &bytes).expect("decodes"), entry);
    }

    #[test]
    fn an_entry_serialised_once_stores_the_bytes_and_hash_of_the_entry_itself() {
        check(transaction(), GENESIS_HASH);
        check(
            EventBody::ConfigApplied {
                old_policy: "p1".into(),
                new_policy: "p2 \"quoted\" \\ é \u{1}".into(),
                changes: vec!["lane L3 added".into(), String::new()],
            },
            &"ab".repeat(32),
        );
    }

    #[test]
    fn an_entry_after_a_malformed_previous_hash_is_refused() {
        let err = chained_entry(&gate(), 1, Timestamp::UNIX_EPOCH, "not hex", &transaction());
        assert!(
            matches!(err, Err(JournalError::Hash(_))),
            "{:?}",
            err.map(|(_, bytes)| bytes)
        );
    }

    fn decision(tx: Uuid) -> EventBody {
        EventBody::Decision {
            decision: protocol::schema::Decision {
                v: SCHEMA_VERSION,
                transaction_id: tx,
                gate: gate(),
                lane: LaneId::parse("L1").expect("lane"),
                decision: protocol::schema::LaneDecision::Inspect,
                route: "Lane 3 \"inspection\" é".into(),
                reasons: Vec::new(),
                priority: false,
                decided_at: Timestamp::UNIX_EPOCH,
                replica: protocol::schema::ReplicaFreshness {
                    sequence: 1,
                    as_of: None,
                    age_s: None,
                    stale: true,
                },
                consignments: vec!["C1".into()],
                parties: Vec::new(),
                policy: "p1".into(),
            },
        }
    }

    fn action(tx: Option<Uuid>) -> EventBody {
        EventBody::OfficerAction {
            action: protocol::schema::OfficerAction {
                v: SCHEMA_VERSION,
                id: Uuid::now_v7(),
                transaction_id: tx,
                gate: gate(),
                lane: LaneId::parse("L1").expect("lane"),
                officer: "o1".into(),
                role: "officer".into(),
                at: Timestamp::UNIX_EPOCH,
                kind: protocol::schema::ActionKind::Confirm,
            },
        }
    }

    /// `stored_tx` answers what decoding the whole entry and [`indexed_tx`] answer.
    fn same_tx_as_decoded(bytes: &[u8]) {
        let decoded = decode_entry(3, bytes)
            .ok()
            .and_then(|e| indexed_tx(&e.body));
        assert_eq!(
            stored_tx(3, bytes),
            decoded,
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }

    #[test]
    fn the_pruned_entry_s_transaction_is_read_without_decoding_its_body() {
        let tx = Uuid::now_v7();
        let bodies = [
            transaction(),
            decision(tx),
            action(Some(tx)),
            action(None),
            EventBody::IntegrityAlert {
                what: "transaction".into(),
                detail: "{\"decision\":1}".into(),
            },
        ];
        for body in bodies {
            let want = indexed_tx(&body);
            let (_, bytes) = chained_entry(&gate(), 3, Timestamp::UNIX_EPOCH, GENESIS_HASH, &body)
                .expect("entry");
            assert_eq!(stored_tx(3, &bytes), want);
            same_tx_as_decoded(&bytes);
        }
        // Bytes the quick read cannot take are decoded whole: no transaction when they
        // do not decode either, never a made-up one.
        for bad in [
            &b"not json"[..],
            b"{}",
            br#"{"body":{"type":"TRANSACTION","transaction":{"id":"x"}}}"#,
        ] {
            same_tx_as_decoded(bad);
            assert_eq!(stored_tx(3, bad), None);
        }
    }

    #[test]
    fn a_commit_with_lane_work_prunes_a_small_slice_and_a_cursor_commit_a_batch() {
        assert_eq!(prune_budget(false, 0), PRUNE_BATCH);
        assert_eq!(prune_budget(true, 0), PRUNE_SLICE_WITH_LANES);
        assert_eq!(prune_budget(true, 3), PRUNE_SLICE_WITH_LANES);
        assert_eq!(prune_budget(true, 100), 200, "twice what it appends");
    }

    proptest! {
        #[test]
        fn any_alert_text_is_stored_as_the_entry_serialises(what in ".*", detail in "\\PC*") {
            check(EventBody::IntegrityAlert { what, detail }, GENESIS_HASH);
        }
    }
}
