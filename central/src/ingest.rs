//! Checking and storing agents' journal entries: the hash chain, deduplication and the
//! contiguous acknowledgement (docs/delivery.md, "Delivery guarantees").
//!
//! The rules live here, once, as plain code over the [`IngestTarget`] trait; a storage
//! backend implements the trait inside one of its write transactions, so every backend
//! applies exactly the same rules and a batch is checked and stored atomically.
//!
//! Per entry, in the order sent:
//! 1. the entry's own hash must match its content ([`JournalEntry::verify_hash`]), else
//!    `HASH_MISMATCH` and the entry is not stored (a resend may carry the good bytes);
//! 2. an entry whose `(agent, seq)` is already stored is a duplicate when the hash is the
//!    same, else `SEQ_REUSED` (the stored one stays);
//! 3. an `id` already stored under another seq is `ID_REUSED` and not stored;
//! 4. `prev_hash` must equal the stored hash of `seq - 1` (or [`GENESIS_HASH`] for seq 1),
//!    and the stored `seq + 1`, if it arrived first, must name this entry's hash as its
//!    `prev_hash`; a mismatch is `CHAIN_BREAK`. The entry is still stored (flagged) so the
//!    evidence is kept and the agent's cursor can advance; the alert opens a case.
//! 5. every field of the body that names a gate must name the authenticated agent's gate
//!    (`FOREIGN_GATE`), and a gate transaction belongs to the gate that first journaled
//!    it: another gate's entry naming it is `FOREIGN_TRANSACTION`. Such an entry is
//!    stored as evidence, flagged `refused`, so the agent's chain and cursor go on and its
//!    other entries are not held up; it has no effect (no index, statistics, case or
//!    export) and the alert opens a case for the sending gate. Likewise an officer action
//!    (override, inspection result, confirmation) naming a transaction that its gate
//!    journaled on another lane is `FOREIGN_LANE`: an action belongs to the lane whose
//!    truck it is about.
//!
//! 6. an entry's agent time (`at`) must not run back more than
//!    [`TIME_BACKWARDS_SLACK`] from the stored entry before it (`seq - 1`), nor the stored
//!    `seq + 1`, if it arrived first, from this one; else `TIME_BACKWARDS` (at the later
//!    seq). The entry is stored with effect: its order is its sequence, and the alert
//!    says its time is not evidence of that order (the gate's clock was stepped back).
//!
//! Lanes need no check across gates: central keys a lane by its gate (`gate/lane`), so a
//! lane name in one gate's entry can only ever name a lane of that gate.

use jiff::{SignedDuration, Timestamp};
use protocol::schema::{
    EventBody, GENESIS_HASH, GateId, IngestBatch, JournalEntry, SCHEMA_VERSION,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{AgentRecord, AlertKind};
use crate::store_error::StoreError;

/// Why an agent's batch or heartbeat was refused or not stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The token's gate is not the gate the request is for.
    #[error("this token belongs to gate {token}, not {path}")]
    WrongGate { token: String, path: String },
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("{0}")]
    HeartbeatVersion(protocol::schema::SchemaError),
    #[error("heartbeat names agent {found} but the path is for {path}")]
    HeartbeatAgent { found: String, path: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Most entries in one batch (docs/delivery.md).
pub const MAX_ENTRIES: usize = 1_000;
/// Largest request body for a batch (docs/delivery.md).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Checks that an agent's token is for the gate a request names.
///
/// # Errors
/// [`IngestError::WrongGate`].
pub fn for_gate(agent: &AgentRecord, gate: &GateId) -> Result<(), IngestError> {
    if &agent.gate == gate {
        Ok(())
    } else {
        Err(IngestError::WrongGate {
            token: agent.gate.to_string(),
            path: gate.to_string(),
        })
    }
}

/// Why a whole batch is refused before anything is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch names agent {found} but the path and token are for gate {expected}")]
    WrongAgent { expected: String, found: String },
    #[error("entry {index} (seq {seq}) names agent {found}; this batch is for gate {expected}")]
    EntryWrongAgent {
        index: usize,
        seq: u64,
        expected: String,
        found: String,
    },
    #[error("batch has {found} entries; at most {max} are accepted")]
    TooManyEntries { found: usize, max: usize },
    #[error("entry {index}: sequence numbers start at 1, found 0")]
    ZeroSeq { index: usize },
    #[error(
        "record version {found} (entry {index}) is newer than this central supports ({supported})"
    )]
    TooNew {
        index: usize,
        found: u16,
        supported: u16,
    },
}

/// Checks what can be checked without the store: sizes, names, versions.
///
/// # Errors
/// The first [`BatchError`] found.
pub fn check_batch(gate: &GateId, batch: &IngestBatch) -> Result<(), BatchError> {
    if batch.v > SCHEMA_VERSION {
        return Err(BatchError::TooNew {
            index: 0,
            found: batch.v,
            supported: SCHEMA_VERSION,
        });
    }
    if &batch.agent != gate {
        return Err(BatchError::WrongAgent {
            expected: gate.to_string(),
            found: batch.agent.to_string(),
        });
    }
    if batch.entries.len() > MAX_ENTRIES {
        return Err(BatchError::TooManyEntries {
            found: batch.entries.len(),
            max: MAX_ENTRIES,
        });
    }
    for (index, e) in batch.entries.iter().enumerate() {
        if &e.agent != gate {
            return Err(BatchError::EntryWrongAgent {
                index,
                seq: e.seq,
                expected: gate.to_string(),
                found: e.agent.to_string(),
            });
        }
        if e.seq == 0 {
            return Err(BatchError::ZeroSeq { index });
        }
        if e.v > SCHEMA_VERSION {
            return Err(BatchError::TooNew {
                index,
                found: e.v,
                supported: SCHEMA_VERSION,
            });
        }
    }
    Ok(())
}

/// The chain-relevant part of a stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub hash: String,
    pub prev_hash: String,
    /// The entry's agent time (rule 6), to the millisecond.
    pub at: Timestamp,
}

/// How far an entry's agent time may run back from its predecessor's before it is a
/// `TIME_BACKWARDS` alert (rule 6). Entries are journaled in order, but their times come
/// from the moment each was made (a decision's time is its transaction's close, taken
/// before the journal write), so small steps back are normal; 5 s is beyond any of them.
pub const TIME_BACKWARDS_SLACK: SignedDuration = SignedDuration::from_secs(5);

/// Rule 6 for the pair (`earlier` at seq - 1, `later` at seq): the alert text when the
/// later one's time runs back beyond the slack.
#[must_use]
pub fn time_backwards(earlier: Timestamp, later: Timestamp, seq: u64) -> Option<String> {
    let back = earlier.duration_since(later);
    (back > TIME_BACKWARDS_SLACK).then(|| {
        format!(
            "agent time {later} is {:.1} s before entry {}'s {earlier}: the gate's clock went back",
            back.as_secs_f64(),
            seq - 1
        )
    })
}

/// What a backend offers inside one write transaction for one agent.
pub trait IngestTarget {
    type Error;
    /// The stored entry `(agent, seq)`, if any.
    fn stored(&mut self, seq: u64) -> Result<Option<Link>, Self::Error>;
    /// The seq an entry id is stored under, if any.
    fn seq_of_id(&mut self, id: &Uuid) -> Result<Option<u64>, Self::Error>;
    /// A gate other than `gate` that has a stored entry naming gate transaction `txn`.
    fn other_gate_of_transaction(
        &mut self,
        txn: &Uuid,
        gate: &GateId,
    ) -> Result<Option<String>, Self::Error>;
    /// The lane on which this agent's gate journaled gate transaction `txn` (its
    /// transaction or decision entry, stored and not refused), if any.
    fn lane_of_transaction(&mut self, txn: &Uuid) -> Result<Option<String>, Self::Error>;
    /// Stores a new entry and, unless it is `refused` (rule 5: kept as evidence only),
    /// everything derived from it: indexes, statistics, cases.
    fn insert(
        &mut self,
        entry: &JournalEntry,
        chain_ok: bool,
        refused: bool,
    ) -> Result<(), Self::Error>;
    /// Records an integrity alert; returns `false` when the same alert was already stored.
    fn alert(&mut self, seq: u64, kind: AlertKind, detail: &str) -> Result<bool, Self::Error>;
}

/// Counts for the [`protocol::schema::IngestAck`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub stored: u64,
    pub duplicates: u64,
    pub alerts: Vec<String>,
    /// Decisions stored with effect, by outcome: counted (`central_decisions_total`) by
    /// the caller once the batch is stored, so a transaction the store runs again after a
    /// conflict counts its decisions once.
    pub decisions: std::collections::BTreeMap<&'static str, u64>,
}

fn raise<T: IngestTarget>(
    t: &mut T,
    tally: &mut Tally,
    seq: u64,
    kind: AlertKind,
    detail: String,
) -> Result<(), T::Error> {
    t.alert(seq, kind, &detail)?;
    tally
        .alerts
        .push(format!("{} at seq {seq}: {detail}", kind.as_str()));
    Ok(())
}

/// The gate transaction a body is about, if any.
#[must_use]
pub fn transaction_of(body: &EventBody) -> Option<Uuid> {
    match body {
        EventBody::Transaction { transaction } => Some(transaction.id),
        EventBody::Decision { decision } => Some(decision.transaction_id),
        EventBody::OfficerAction { action } => action.transaction_id,
        EventBody::DeviceHealth { .. }
        | EventBody::IntegrityAlert { .. }
        | EventBody::OrphanRead { .. }
        | EventBody::ConsoleSession { .. }
        | EventBody::ConfigApplied { .. }
        | EventBody::LaneControl { .. }
        | EventBody::LaneRefused { .. } => None,
    }
}

/// The lane a body names, if any (what the event indexes file it under).
#[must_use]
pub fn lane_of(body: &EventBody) -> Option<&str> {
    match body {
        EventBody::Transaction { transaction } => Some(transaction.lane.as_str()),
        EventBody::Decision { decision } => Some(decision.lane.as_str()),
        EventBody::OfficerAction { action } => Some(action.lane.as_str()),
        EventBody::DeviceHealth { health } => health.lane.as_ref().map(|l| l.as_str()),
        EventBody::IntegrityAlert { .. }
        | EventBody::ConsoleSession { .. }
        | EventBody::ConfigApplied { .. } => None,
        EventBody::OrphanRead { lane, .. }
        | EventBody::LaneControl { lane, .. }
        | EventBody::LaneRefused { lane, .. } => Some(lane.as_str()),
    }
}

/// The latest live configuration change among `entries` whose hash verified (`hashes` as
/// [`check_hashes`] returns them), if it is newer than `current`.
#[must_use]
pub fn last_config_change(
    entries: &[JournalEntry],
    hashes: &[Option<String>],
    current: Option<&crate::model::ConfigChange>,
) -> Option<crate::model::ConfigChange> {
    entries
        .iter()
        .zip(hashes)
        .filter(|(_, bad)| bad.is_none())
        .filter_map(|(e, _)| match &e.body {
            EventBody::ConfigApplied {
                old_policy,
                new_policy,
                changes,
            } => Some(crate::model::ConfigChange {
                seq: e.seq,
                at: e.at,
                old_policy: old_policy.clone(),
                new_policy: new_policy.clone(),
                changes: changes.clone(),
            }),
            _ => None,
        })
        .filter(|c| current.is_none_or(|cur| c.seq > cur.seq))
        .max_by_key(|c| c.seq)
}

/// The lane decision a body carries, if it is a decision.
#[must_use]
pub fn decision_of(body: &EventBody) -> Option<protocol::schema::LaneDecision> {
    match body {
        EventBody::Decision { decision } => Some(decision.decision),
        _ => None,
    }
}

/// The text of a gap alert: entry `seq` still missing while later ones are stored.
#[must_use]
pub fn gap_alert_text(seq: u64, state: &AgentState) -> String {
    let since = state.gap_since.map_or_else(String::new, |t| t.to_string());
    format!(
        "entry {seq} missing since {since} while entries up to {} are stored",
        state.max_seq
    )
}

/// The gate a body names in its own fields, if any.
#[must_use]
pub fn gate_named_by(body: &EventBody) -> Option<&GateId> {
    match body {
        EventBody::Transaction { transaction } => Some(&transaction.gate),
        EventBody::Decision { decision } => Some(&decision.gate),
        EventBody::OfficerAction { action } => Some(&action.gate),
        EventBody::ConsoleSession { session } => Some(&session.gate),
        EventBody::DeviceHealth { .. }
        | EventBody::IntegrityAlert { .. }
        | EventBody::OrphanRead { .. }
        | EventBody::ConfigApplied { .. }
        | EventBody::LaneControl { .. }
        | EventBody::LaneRefused { .. } => None,
    }
}

/// Rule 5: why entry `e` of agent `e.agent` must have no effect, if it must not.
fn refusal<T: IngestTarget>(
    t: &mut T,
    e: &JournalEntry,
) -> Result<Option<(AlertKind, String)>, T::Error> {
    if let Some(named) = gate_named_by(&e.body)
        && named != &e.agent
    {
        return Ok(Some((
            AlertKind::ForeignGate,
            format!(
                "the entry's body names gate {named}, but it was sent by gate {}",
                e.agent
            ),
        )));
    }
    if let Some(txn) = transaction_of(&e.body)
        && let Some(owner) = t.other_gate_of_transaction(&txn, &e.agent)?
    {
        return Ok(Some((
            AlertKind::ForeignTransaction,
            format!(
                "gate transaction {txn} belongs to gate {owner}, which journaled it first; \
                 gate {} may not add to it",
                e.agent
            ),
        )));
    }
    if let EventBody::OfficerAction { action } = &e.body
        && let Some(txn) = action.transaction_id
        && let Some(lane) = t.lane_of_transaction(&txn)?
        && lane != action.lane.as_str()
    {
        return Ok(Some((
            AlertKind::ForeignLane,
            format!(
                "officer action on lane {} names gate transaction {txn}, which gate {} \
                 journaled on lane {lane}",
                action.lane, e.agent
            ),
        )));
    }
    Ok(None)
}

/// Applies the rules in the module documentation to `entries` (already passed through
/// [`check_batch`]).
///
/// # Errors
/// Only the backend's own errors; integrity problems are alerts, not errors.
pub fn ingest_entries<T: IngestTarget>(
    t: &mut T,
    entries: &[JournalEntry],
) -> Result<Tally, T::Error> {
    ingest_checked(t, entries, &check_hashes(entries))
}

/// Rule 1 for `e` and, when its hash matches its content, the entry's JSON (the bytes
/// `serde_json::to_vec(e)` makes) appended to `out`, the body serialised once for both
/// ([`JournalEntry::verify_into_json`]); with `raw`, the body's JSON as received, that
/// text is hashed and kept instead, and the body is not serialised at all
/// ([`JournalEntry::verify_raw_into_json`]). Returns why the hash does not match, worded as
/// [`check_hashes`] words it (and `out` is left as it was), or `None` with the JSON
/// written.
///
/// # Errors
/// The entry does not serialise (not in practice: plain fields and strings).
pub fn checked_entry_json(
    e: &JournalEntry,
    raw: Option<&serde_json::value::RawValue>,
    out: &mut Vec<u8>,
) -> Result<Option<String>, serde_json::Error> {
    let checked = match raw {
        Some(raw) => e.verify_raw_into_json(raw, out)?,
        None => e.verify_into_json(out)?,
    };
    Ok(checked.err().map(|why| why.to_string()))
}

/// Rule 1 for every entry: `None` when the entry's hash matches its content, else why not.
/// It needs no store, so a backend runs it before taking its (single) write transaction,
/// and concurrent agents' batches hash in parallel.
#[must_use]
pub fn check_hashes(entries: &[JournalEntry]) -> Vec<Option<String>> {
    entries
        .iter()
        .map(|e| e.verify_hash().err().map(|err| err.to_string()))
        .collect()
}

/// [`ingest_entries`] with rule 1 already checked (`hashes` from [`check_hashes`], one
/// per entry, in order).
///
/// # Errors
/// Only the backend's own errors; integrity problems are alerts, not errors.
pub fn ingest_checked<T: IngestTarget>(
    t: &mut T,
    entries: &[JournalEntry],
    hashes: &[Option<String>],
) -> Result<Tally, T::Error> {
    let mut tally = Tally::default();
    for (i, e) in entries.iter().enumerate() {
        let bad_hash = match hashes.get(i) {
            Some(checked) => checked.clone(),
            None => e.verify_hash().err().map(|err| err.to_string()),
        };
        if let Some(err) = bad_hash {
            raise(t, &mut tally, e.seq, AlertKind::HashMismatch, err)?;
            continue;
        }
        if let Some(existing) = t.stored(e.seq)? {
            if existing.hash == e.hash {
                tally.duplicates += 1;
            } else {
                let detail = format!(
                    "stored hash {} but received {} for the same seq",
                    existing.hash, e.hash
                );
                raise(t, &mut tally, e.seq, AlertKind::SeqReused, detail)?;
            }
            continue;
        }
        if let Some(other) = t.seq_of_id(&e.id)? {
            let detail = format!("entry id {} is already stored as seq {other}", e.id);
            raise(t, &mut tally, e.seq, AlertKind::IdReused, detail)?;
            continue;
        }
        let prev = if e.seq == 1 {
            None
        } else {
            t.stored(e.seq - 1)?
        };
        let expected_prev = if e.seq == 1 {
            Some(GENESIS_HASH.to_owned())
        } else {
            prev.as_ref().map(|l| l.hash.clone())
        };
        let mut chain_ok = true;
        if let Some(expected) = expected_prev
            && expected != e.prev_hash
        {
            chain_ok = false;
            let detail = format!(
                "prev_hash {} but the stored entry {} has hash {expected}",
                e.prev_hash,
                e.seq - 1
            );
            raise(t, &mut tally, e.seq, AlertKind::ChainBreak, detail)?;
        }
        let next = t.stored(e.seq + 1)?;
        if let Some(next) = &next
            && next.prev_hash != e.hash
        {
            let detail = format!(
                "stored entry {} names prev_hash {} but entry {} has hash {}",
                e.seq + 1,
                next.prev_hash,
                e.seq,
                e.hash
            );
            raise(t, &mut tally, e.seq + 1, AlertKind::ChainBreak, detail)?;
        }
        if let Some(detail) = prev
            .as_ref()
            .and_then(|p| time_backwards(p.at, e.at, e.seq))
        {
            raise(t, &mut tally, e.seq, AlertKind::TimeBackwards, detail)?;
        }
        if let Some(detail) = next
            .as_ref()
            .and_then(|n| time_backwards(e.at, n.at, e.seq + 1))
        {
            raise(t, &mut tally, e.seq + 1, AlertKind::TimeBackwards, detail)?;
        }
        let refused = refusal(t, e)?;
        let is_refused = refused.is_some();
        if let Some((kind, detail)) = refused {
            raise(t, &mut tally, e.seq, kind, detail)?;
        }
        t.insert(e, chain_ok, is_refused)?;
        tally.stored += 1;
        if let (false, EventBody::Decision { decision }) = (is_refused, &e.body) {
            *tally
                .decisions
                .entry(decision.decision.as_str())
                .or_default() += 1;
        }
    }
    Ok(tally)
}

/// What central tracks per agent between batches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    /// Every entry `1..=acked_through` is stored.
    pub acked_through: u64,
    /// Highest seq stored.
    pub max_seq: u64,
    /// Entries stored.
    pub events: u64,
    /// Since when entries above `acked_through` wait for a missing one.
    pub gap_since: Option<Timestamp>,
}

impl AgentState {
    /// Advances `acked_through` over stored entries (`is_stored(seq)`), then updates the
    /// gap clock. Returns the first missing seq when a gap has persisted longer than
    /// `gap_alert_after` (the caller raises a `GAP` alert; the alert store deduplicates).
    ///
    /// # Errors
    /// The lookup's errors.
    pub fn advance<E>(
        &mut self,
        mut is_stored: impl FnMut(u64) -> Result<bool, E>,
        now: Timestamp,
        gap_alert_after: SignedDuration,
    ) -> Result<Option<u64>, E> {
        // Bounded by the number of stored entries above the old cursor.
        while self.acked_through < self.max_seq && is_stored(self.acked_through + 1)? {
            self.acked_through += 1;
        }
        if self.acked_through >= self.max_seq {
            self.gap_since = None;
            return Ok(None);
        }
        let since = *self.gap_since.get_or_insert(now);
        if now.duration_since(since) >= gap_alert_after {
            Ok(Some(self.acked_through + 1))
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::schema::{ActionKind, LaneId, OfficerAction};
    use std::collections::BTreeMap;

    #[derive(Default)]
    struct Mem {
        entries: BTreeMap<u64, JournalEntry>,
        alerts: Vec<(u64, AlertKind)>,
        owners: BTreeMap<Uuid, GateId>,
        lanes: BTreeMap<Uuid, String>,
        refused: Vec<u64>,
    }

    impl IngestTarget for Mem {
        type Error = std::convert::Infallible;
        fn stored(&mut self, seq: u64) -> Result<Option<Link>, Self::Error> {
            Ok(self.entries.get(&seq).map(|e| Link {
                hash: e.hash.clone(),
                prev_hash: e.prev_hash.clone(),
                at: e.at,
            }))
        }
        fn seq_of_id(&mut self, id: &Uuid) -> Result<Option<u64>, Self::Error> {
            Ok(self.entries.values().find(|e| &e.id == id).map(|e| e.seq))
        }
        fn other_gate_of_transaction(
            &mut self,
            txn: &Uuid,
            gate: &GateId,
        ) -> Result<Option<String>, Self::Error> {
            Ok(self
                .owners
                .get(txn)
                .filter(|g| *g != gate)
                .map(ToString::to_string))
        }
        fn lane_of_transaction(&mut self, txn: &Uuid) -> Result<Option<String>, Self::Error> {
            Ok(self.lanes.get(txn).cloned())
        }
        fn insert(
            &mut self,
            entry: &JournalEntry,
            _chain_ok: bool,
            refused: bool,
        ) -> Result<(), Self::Error> {
            self.entries.insert(entry.seq, entry.clone());
            if !refused && let EventBody::Decision { decision } = &entry.body {
                self.lanes
                    .insert(decision.transaction_id, decision.lane.to_string());
            }
            if refused {
                self.refused.push(entry.seq);
            } else if let Some(txn) = transaction_of(&entry.body) {
                self.owners
                    .entry(txn)
                    .or_insert_with(|| entry.agent.clone());
            }
            Ok(())
        }
        fn alert(&mut self, seq: u64, kind: AlertKind, _d: &str) -> Result<bool, Self::Error> {
            self.alerts.push((seq, kind));
            Ok(true)
        }
    }

    fn chain(n: u64) -> Vec<JournalEntry> {
        let at: Timestamp = "2026-01-01T00:00:00Z".parse().expect("ts");
        chain_at(&vec![at; usize::try_from(n).expect("n")])
    }

    /// A chain whose entries carry the agent times `times`, in sequence order.
    fn chain_at(times: &[Timestamp]) -> Vec<JournalEntry> {
        let gate = GateId::parse("G1").expect("gate");
        let mut prev = GENESIS_HASH.to_owned();
        (1..)
            .zip(times)
            .map(|(seq, &at)| {
                let body = EventBody::IntegrityAlert {
                    what: "t".into(),
                    detail: seq.to_string(),
                };
                let e = JournalEntry::new_chained(
                    gate.clone(),
                    seq,
                    Uuid::now_v7(),
                    at,
                    prev.clone(),
                    body,
                )
                .expect("entry");
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    fn ingest(m: &mut Mem, e: &[JournalEntry]) -> Tally {
        match ingest_entries(m, e) {
            Ok(t) => t,
            Err(never) => match never {},
        }
    }

    #[test]
    fn an_entry_whose_time_runs_back_beyond_the_slack_is_flagged_in_any_arrival_order() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().expect("ts");
        let s = SignedDuration::from_secs;
        // 2 s back is within the slack; 20 s back (seq 4) is a clock stepped back.
        let times = [t0, t0 + s(10), t0 + s(8), t0 - s(10), t0 - s(9)];
        let c = chain_at(&times);
        let mut m = Mem::default();
        let t = ingest(&mut m, &c);
        assert_eq!(t.stored, 5, "stored with effect");
        assert_eq!(m.alerts, vec![(4, AlertKind::TimeBackwards)]);
        assert!(
            t.alerts[0].contains("TIME_BACKWARDS at seq 4"),
            "{:?}",
            t.alerts
        );
        // The later entry arriving first: found when its predecessor arrives.
        let mut m = Mem::default();
        ingest(&mut m, &[c[3].clone(), c[4].clone()]);
        ingest(&mut m, &c[..3]);
        assert_eq!(m.alerts, vec![(4, AlertKind::TimeBackwards)]);
    }

    #[test]
    fn reversed_order_is_stored_without_alerts() {
        let c = chain(4);
        let mut m = Mem::default();
        let rev: Vec<_> = c.iter().rev().cloned().collect();
        let t = ingest(&mut m, &rev);
        assert_eq!((t.stored, t.duplicates), (4, 0));
        assert!(m.alerts.is_empty(), "{:?}", m.alerts);
    }

    #[test]
    fn late_predecessor_that_does_not_link_is_a_chain_break_of_its_successor() {
        let c = chain(3);
        let other = chain(3); // different ids and bodies' timestamps are equal, but ids differ
        let mut m = Mem::default();
        ingest(&mut m, &[c[0].clone(), c[2].clone()]);
        ingest(&mut m, &[other[1].clone()]);
        assert_eq!(
            m.alerts,
            vec![(2, AlertKind::ChainBreak), (3, AlertKind::ChainBreak)]
        );
    }

    #[test]
    fn same_seq_with_other_hash_is_refused_as_reuse() {
        let c = chain(1);
        let forged = JournalEntry::new_chained(
            c[0].agent.clone(),
            1,
            c[0].id,
            c[0].at,
            GENESIS_HASH.into(),
            EventBody::IntegrityAlert {
                what: "t".into(),
                detail: "rewritten".into(),
            },
        )
        .expect("entry");
        let forged = vec![forged];
        let mut m = Mem::default();
        ingest(&mut m, &c);
        let t = ingest(&mut m, &forged);
        assert_eq!(t.stored, 0);
        assert_eq!(m.alerts, vec![(1, AlertKind::SeqReused)]);
        assert_eq!(
            m.entries[&1].hash, c[0].hash,
            "the first stored entry stays"
        );
    }

    /// Entry `seq` of `sender` (first of its chain) confirming gate transaction `txn`,
    /// whose body names `named` as its gate.
    fn confirm(sender: &str, named: &str, txn: Uuid) -> JournalEntry {
        let at: Timestamp = "2026-01-01T00:00:00Z".parse().expect("ts");
        let action = OfficerAction {
            v: SCHEMA_VERSION,
            id: Uuid::now_v7(),
            transaction_id: Some(txn),
            gate: GateId::parse(named).expect("gate"),
            lane: LaneId::parse("L1").expect("lane"),
            officer: "ana".into(),
            role: "officer".into(),
            at,
            kind: ActionKind::Confirm,
        };
        JournalEntry::new_chained(
            GateId::parse(sender).expect("gate"),
            1,
            Uuid::now_v7(),
            at,
            GENESIS_HASH.into(),
            EventBody::OfficerAction { action },
        )
        .expect("entry")
    }

    #[test]
    fn a_body_naming_another_gate_is_kept_as_evidence_without_effect() {
        let mut m = Mem::default();
        let t = ingest(&mut m, &[confirm("G7", "G8", Uuid::now_v7())]);
        assert_eq!(t.stored, 1, "stored, so the cursor moves on");
        assert_eq!(m.alerts, vec![(1, AlertKind::ForeignGate)]);
        assert_eq!(m.refused, vec![1]);
        assert!(m.owners.is_empty(), "a refused entry claims no transaction");
    }

    #[test]
    fn another_gates_transaction_is_refused_and_its_owner_keeps_it() {
        let txn = Uuid::now_v7();
        let mut m = Mem::default();
        m.owners.insert(txn, GateId::parse("G8").expect("gate"));
        let t = ingest(&mut m, &[confirm("G7", "G7", txn)]);
        assert_eq!(t.stored, 1);
        assert_eq!(m.alerts, vec![(1, AlertKind::ForeignTransaction)]);
        assert_eq!(m.refused, vec![1]);
        // The owner's own entry about it is accepted.
        let mut m2 = Mem::default();
        m2.owners.insert(txn, GateId::parse("G8").expect("gate"));
        ingest(&mut m2, &[confirm("G8", "G8", txn)]);
        assert!(m2.alerts.is_empty() && m2.refused.is_empty());
    }

    #[test]
    fn an_officer_action_on_another_lanes_transaction_is_refused() {
        let txn = Uuid::now_v7();
        // (lane the gate journaled the transaction on, refused); the action is on L1.
        let cases = [(Some("L2"), true), (Some("L1"), false), (None, false)];
        for (journaled, refused) in cases {
            let mut m = Mem::default();
            if let Some(l) = journaled {
                m.lanes.insert(txn, l.into());
            }
            let t = ingest(&mut m, &[confirm("G7", "G7", txn)]);
            assert_eq!(t.stored, 1);
            if refused {
                assert_eq!(m.alerts, vec![(1, AlertKind::ForeignLane)], "{journaled:?}");
                assert_eq!(m.refused, vec![1]);
            } else {
                assert!(m.alerts.is_empty() && m.refused.is_empty(), "{journaled:?}");
            }
        }
    }

    #[test]
    fn gap_alert_only_after_the_gap_persists() {
        let mut s = AgentState {
            acked_through: 0,
            max_seq: 3,
            ..AgentState::default()
        };
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().expect("ts");
        let stored = |q: u64| Ok::<_, ()>(q != 2);
        let limit = SignedDuration::from_secs(60);
        assert_eq!(s.advance(stored, t0, limit), Ok(None));
        assert_eq!(s.acked_through, 1);
        let later = t0 + SignedDuration::from_secs(61);
        assert_eq!(s.advance(stored, later, limit), Ok(Some(2)));
        assert_eq!(s.advance(|_| Ok::<_, ()>(true), later, limit), Ok(None));
        assert_eq!((s.acked_through, s.gap_since), (3, None));
    }
}
