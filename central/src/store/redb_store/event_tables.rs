//! Agents, ingest of journal batches and heartbeats: the [`IngestTarget`] over one write
//! transaction (the rules are [`crate::ingest`]'s).

use std::collections::{BTreeSet, HashMap};

use jiff::{SignedDuration, Timestamp};
use protocol::schema::{EventBody, GateId, JournalEntry};
use redb::{Database, ReadableDatabase, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::case_tables::{CaseTx, store_alert};
use super::rollup_tables;
use super::tables::{
    AGENT_TOKENS, EVENT_IDS, EVENT_INDEX, EVENT_TXN, EVENTS, GATES, HOURLY, bump, uuid_key,
    write_audit,
};
use crate::ingest::{self, AgentState, IngestTarget, Link};
use crate::model::{AgentRecord, AlertKind, Case, GateHealth, StoredEvent, TokenHash};
use crate::stats;
use crate::store::{GateRow, IngestOutcome, StoreError, TokenChange, decode, encode};
use crate::{cases, rollup};

pub(super) fn load_gate(tx: &WriteTransaction, gate: &str) -> Result<Option<GateRow>, StoreError> {
    let t = tx.open_table(GATES)?;
    let v = t.get(gate)?;
    v.map(|g| decode("gates_v1", gate, g.value())).transpose()
}

/// The gate's row, or a new one (no port yet) for a gate that sends before it was
/// registered.
fn load_or_new_gate(tx: &WriteTransaction, gate: &GateId) -> Result<GateRow, StoreError> {
    Ok(load_gate(tx, gate.as_str())?.unwrap_or_else(|| GateRow {
        gate: gate.clone(),
        port: String::new(),
        state: AgentState::default(),
        health: None,
        revoked_at: None,
        last_config: None,
    }))
}

pub(super) fn save_gate(tx: &WriteTransaction, row: &GateRow) -> Result<(), StoreError> {
    tx.open_table(GATES)?
        .insert(row.gate.as_str(), encode(row)?.as_slice())?;
    Ok(())
}

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
    /// The gate transaction that [`IngestTarget::other_gate_of_transaction`] last found
    /// no stored entry about at all (so the entry being checked has no earlier entries of
    /// it to index under its containers either).
    unseen_txn: Option<u128>,
    /// Containers of the transactions stored by this batch, by transaction id.
    txn_containers: HashMap<u128, BTreeSet<String>>,
    /// Entries stored by this batch (the gate's event counter is bumped once).
    added: i64,
    /// Each entry's JSON, made before the write transaction, by (seq, hash).
    encoded: &'a HashMap<(u64, String), Vec<u8>>,
    /// Decisions by outcome, and hourly figures by (hour, figure), added up over the
    /// batch and written once at its end.
    decisions: HashMap<&'static str, i64>,
    hourly: HashMap<(i64, &'static str), u64>,
    /// The batch's programme roll-up halves, written at its end.
    rollup: rollup::Batch,
}

/// The stored form of a [`StoredEvent`] from the entry's JSON: the same bytes as
/// `encode(&StoredEvent { entry, received_at, chain_ok })` (fields in declaration order),
/// without serialising the entry again inside the write transaction.
fn stored_event_bytes(
    entry_json: &[u8],
    received_at: Timestamp,
    chain_ok: bool,
    refused: bool,
) -> Result<Vec<u8>, StoreError> {
    #[derive(Serialize)]
    struct Tail {
        received_at: Timestamp,
        chain_ok: bool,
        refused: bool,
    }
    // `{"received_at":…,"chain_ok":…,"refused":…}`: its opening brace is replaced by the
    // entry.
    let tail = encode(&Tail {
        received_at,
        chain_ok,
        refused,
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
    at: Timestamp,
}

impl<'a> Target<'a> {
    fn new(
        tx: &'a WriteTransaction,
        gate: &'a GateId,
        now: Timestamp,
        state: &'a mut AgentState,
        encoded: &'a HashMap<(u64, String), Vec<u8>>,
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
            unseen_txn: None,
            txn_containers: HashMap::new(),
            added: 0,
            encoded,
            decisions: HashMap::new(),
            hourly: HashMap::new(),
            rollup: rollup::Batch::default(),
        })
    }

    /// Ends the batch: the per-batch counters are written; returns the cases touched and
    /// the links of the entries stored.
    fn finish(self) -> Result<(Vec<Case>, HashMap<u64, Link>), StoreError> {
        let Target {
            tx,
            gate,
            cases,
            events,
            event_ids,
            event_index,
            event_txn,
            links,
            added,
            decisions,
            hourly,
            rollup,
            ..
        } = self;
        // Tables are closed before the counters' table is opened in the same transaction.
        drop((events, event_ids, event_index, event_txn));
        if added > 0 {
            bump(tx, &format!("gate:{gate}"), "events", added)?;
        }
        for (outcome, n) in decisions {
            bump(tx, "decision", outcome, n)?;
        }
        if !hourly.is_empty() {
            let mut h = tx.open_table(HOURLY)?;
            for ((hour, figure), by) in hourly {
                let key = (gate.as_str(), hour, figure);
                let n = h.get(key)?.map_or(0, |g| g.value()) + by;
                h.insert(key, n)?;
            }
        }
        rollup_tables::store(tx, gate.as_str(), rollup)?;
        Ok((cases, links))
    }

    fn index_event(&mut self, key: &str, at: i64, seq: u64) -> Result<(), StoreError> {
        self.event_index
            .insert((key, at, self.gate.as_str(), seq), ())?;
        Ok(())
    }

    /// This gate's events of the same transaction already stored.
    fn txn_events(&self, txn: &Uuid) -> Result<Vec<StoredEvent>, StoreError> {
        let keys: Vec<(String, u64)> = {
            let k = uuid_key(txn);
            let g = self.gate.as_str();
            let mut out = Vec::new();
            for row in self.event_txn.range((k, g, 0u64)..=(k, g, u64::MAX))? {
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
        *self.decisions.entry(outcome).or_default() += 1;
        self.rollup.decision(d);
        let hour = stats::hour_start(d.decided_at);
        for k in stats::hour_figures(d) {
            *self.hourly.entry((hour, k)).or_default() += 1;
        }
        metrics::counter!("central_decisions_total", "outcome" => outcome).increment(1);
        let changed = cases::on_decision(&mut CaseTx(self.tx), self.gate, d, seq, self.now)?;
        self.cases.extend(changed);
        Ok(())
    }

    fn on_officer_action(&mut self, a: &protocol::schema::OfficerAction) -> Result<(), StoreError> {
        let changed = cases::on_inspection_result(&mut CaseTx(self.tx), self.gate, a, self.now)?;
        self.cases.extend(changed);
        Ok(())
    }
}

impl IngestTarget for Target<'_> {
    type Error = StoreError;

    fn stored(&mut self, seq: u64) -> Result<Option<Link>, StoreError> {
        if let Some(l) = self.links.get(&seq) {
            return Ok(Some(l.clone()));
        }
        // Every stored entry raised `max_seq` (the gate row is read in this write
        // transaction): above it nothing is stored, and a batch's new entries, the usual
        // case, need no look-up.
        if seq > self.state.max_seq {
            return Ok(None);
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
                    at: e.entry.at,
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

    fn other_gate_of_transaction(
        &mut self,
        txn: &Uuid,
        gate: &GateId,
    ) -> Result<Option<String>, StoreError> {
        let k = uuid_key(txn);
        self.unseen_txn = None;
        let mut seen = false;
        // Bounded by the (few) entries stored about one transaction.
        for row in self
            .event_txn
            .range((k, "", 0u64)..=(k, "\u{7f}", u64::MAX))?
        {
            let (key, _) = row?;
            let (_, g, _) = key.value();
            if g != gate.as_str() {
                return Ok(Some(g.to_owned()));
            }
            seen = true;
        }
        if !seen {
            self.unseen_txn = Some(k);
        }
        Ok(None)
    }

    fn lane_of_transaction(&mut self, txn: &Uuid) -> Result<Option<String>, StoreError> {
        // This gate's entries about it (this write transaction sees its own inserts).
        Ok(self
            .txn_events(txn)?
            .iter()
            .find_map(|e| match &e.entry.body {
                EventBody::Transaction { transaction } => Some(transaction.lane.to_string()),
                EventBody::Decision { decision } => Some(decision.lane.to_string()),
                _ => None,
            }))
    }

    fn insert(
        &mut self,
        entry: &JournalEntry,
        chain_ok: bool,
        refused: bool,
    ) -> Result<(), StoreError> {
        let gate = self.gate.as_str();
        // What the gate-authority check of this entry, just before, found.
        let unseen_txn = self.unseen_txn.take();
        let bytes = match self.encoded.get(&(entry.seq, entry.hash.clone())) {
            Some(json) => stored_event_bytes(json, self.now, chain_ok, refused)?,
            None => stored_event_bytes(
                &serde_json::to_vec(entry).map_err(|e| StoreError::Backend(e.to_string()))?,
                self.now,
                chain_ok,
                refused,
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
                at: entry.at,
            },
        );
        self.state.events += 1;
        self.state.max_seq = self.state.max_seq.max(entry.seq);
        self.added += 1;
        if refused {
            // Evidence only: not indexed, so no query, export, statistic or case sees it.
            return Ok(());
        }

        let at = entry.at.as_millisecond();
        self.index_event("t", at, entry.seq)?;
        self.index_event(&format!("g:{gate}"), at, entry.seq)?;
        if let Some(lane) = ingest::lane_of(&entry.body) {
            self.index_event(&format!("l:{gate}/{lane}"), at, entry.seq)?;
        }
        if let Some(d) = ingest::decision_of(&entry.body) {
            self.index_event(&format!("d:{}", d.as_str()), at, entry.seq)?;
        }
        if let Some(txn) = ingest::transaction_of(&entry.body) {
            // Containers are named by the transaction; index this entry under them, and
            // when this is the transaction, index the entries that arrived before it.
            // A decision whose transaction came in this batch (the usual case: the agent
            // journals both together) takes the containers from memory.
            let cached = match &entry.body {
                EventBody::Transaction { .. } => None,
                _ => self.txn_containers.get(&uuid_key(&txn)).cloned(),
            };
            // Checking this entry's gate authority just found no entry about `txn`.
            let unseen = unseen_txn == Some(uuid_key(&txn));
            let others = if cached.is_some() || unseen {
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
            EventBody::Transaction { transaction } => self.rollup.transaction(transaction),
            EventBody::DeviceHealth { .. }
            | EventBody::OrphanRead { .. }
            | EventBody::ConsoleSession { .. }
            | EventBody::ConfigApplied { .. }
            | EventBody::LaneControl { .. }
            | EventBody::LaneRefused { .. } => {}
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

/// Advances the acknowledgement over stored entries (`stored`: those the caller's batch
/// just stored, known without a look-up) and raises a persisting gap.
fn gap_check(
    tx: &WriteTransaction,
    gate: &GateId,
    state: &mut AgentState,
    stored: &HashMap<u64, Link>,
    now: Timestamp,
    gap_alert_after: SignedDuration,
) -> Result<Option<Case>, StoreError> {
    let missing = {
        let ev = tx.open_table(EVENTS)?;
        state.advance(
            |s| {
                Ok::<_, StoreError>(
                    stored.contains_key(&s) || ev.get((gate.as_str(), s))?.is_some(),
                )
            },
            now,
            gap_alert_after,
        )?
    };
    match missing {
        Some(seq) => store_alert(
            tx,
            gate,
            seq,
            AlertKind::Gap,
            &ingest::gap_alert_text(seq, state),
            now,
        ),
        None => Ok(None),
    }
}

pub(super) fn add_agent(
    db: &Database,
    token: &TokenHash,
    agent: &AgentRecord,
) -> Result<(), StoreError> {
    let tx = db.begin_write()?;
    match load_gate(&tx, agent.gate.as_str())? {
        Some(row) if row.port != agent.port => {
            return Err(StoreError::GatePortConflict {
                gate: agent.gate.to_string(),
                existing: row.port,
                requested: agent.port.clone(),
            });
        }
        // A new token lifts a gate's revocation.
        Some(mut row) => {
            if row.revoked_at.take().is_some() {
                save_gate(&tx, &row)?;
            }
        }
        None => save_gate(
            &tx,
            &GateRow {
                gate: agent.gate.clone(),
                port: agent.port.clone(),
                state: AgentState::default(),
                health: None,
                revoked_at: None,
                last_config: None,
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

pub(super) fn agent_tokens(db: &Database, gate: &GateId) -> Result<Vec<AgentRecord>, StoreError> {
    let r = db.begin_read()?;
    let t = r.open_table(AGENT_TOKENS)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        let (k, v) = item?;
        let rec: AgentRecord = decode("agent_tokens_v1", hex::encode(k.value()), v.value())?;
        if rec.gate == *gate {
            out.push(rec);
        }
    }
    Ok(out)
}

pub(super) fn change_agent_tokens(db: &Database, c: TokenChange<'_>) -> Result<usize, StoreError> {
    let tx = db.begin_write()?;
    let Some(mut row) = load_gate(&tx, c.gate.as_str())? else {
        return Err(StoreError::UnknownGate(c.gate.to_string()));
    };
    let mut changed = 0;
    let mut tokens = Vec::new();
    {
        let mut t = tx.open_table(AGENT_TOKENS)?;
        let mut updates = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            let key = k.value().to_vec();
            let mut rec: AgentRecord = decode("agent_tokens_v1", hex::encode(&key), v.value())?;
            if rec.gate != *c.gate {
                continue;
            }
            if (c.change)(&mut rec) {
                changed += 1;
                updates.push((key, encode(&rec)?));
            }
            tokens.push(rec);
        }
        for (k, v) in updates {
            t.insert(k.as_slice(), v.as_slice())?;
        }
        if let Some((hash, rec)) = c.add {
            t.insert(hash.as_slice(), encode(rec)?.as_slice())?;
            tokens.push(rec.clone());
        }
    }
    let mark = crate::store::gate_revocation(&tokens, row.revoked_at, c.at);
    if mark != row.revoked_at {
        row.revoked_at = mark;
        save_gate(&tx, &row)?;
    }
    write_audit(&tx, c.actor, c.action, c.detail, c.at)?;
    tx.commit()?;
    Ok(changed)
}

pub(super) fn agent_for_token(
    db: &Database,
    token: &TokenHash,
) -> Result<Option<AgentRecord>, StoreError> {
    let r = db.begin_read()?;
    let t = r.open_table(AGENT_TOKENS)?;
    let v = t.get(token.as_slice())?;
    v.map(|g| decode("agent_tokens_v1", hex::encode(token), g.value()))
        .transpose()
}

/// A batch made ready for the write transaction: what needs no store is done before the
/// single writer is taken, so that several agents' batches do it in parallel — hashing
/// each entry, and its JSON.
#[derive(Debug)]
pub(super) struct Prepared {
    pub(super) gate: GateId,
    pub(super) entries: Vec<JournalEntry>,
    pub(super) now: Timestamp,
    pub(super) gap_alert_after: SignedDuration,
    hashes: Vec<Option<String>>,
    encoded: HashMap<(u64, String), Vec<u8>>,
}

impl Prepared {
    pub(super) fn new(
        gate: GateId,
        entries: Vec<JournalEntry>,
        now: Timestamp,
        gap_alert_after: SignedDuration,
    ) -> Result<Self, StoreError> {
        let hashes = ingest::check_hashes(&entries);
        let mut encoded = HashMap::with_capacity(entries.len());
        for e in &entries {
            let json = serde_json::to_vec(e).map_err(|err| StoreError::Backend(err.to_string()))?;
            encoded.insert((e.seq, e.hash.clone()), json);
        }
        Ok(Self {
            gate,
            entries,
            now,
            gap_alert_after,
            hashes,
            encoded,
        })
    }
}

/// Checks and stores one prepared batch inside `tx` (which may hold other batches too);
/// the caller commits.
pub(super) fn ingest_in(tx: &WriteTransaction, b: &Prepared) -> Result<IngestOutcome, StoreError> {
    let gate = &b.gate;
    let mut row = load_or_new_gate(tx, gate)?;
    let mut state = row.state.clone();
    let mut target = Target::new(tx, gate, b.now, &mut state, &b.encoded)?;
    let tally = ingest::ingest_checked(&mut target, &b.entries, &b.hashes)?;
    let (mut changed, stored) = target.finish()?;
    changed.extend(gap_check(
        tx,
        gate,
        &mut state,
        &stored,
        b.now,
        b.gap_alert_after,
    )?);
    row.state = state;
    if let Some(c) = ingest::last_config_change(&b.entries, &b.hashes, row.last_config.as_ref()) {
        row.last_config = Some(c);
    }
    save_gate(tx, &row)?;
    Ok(IngestOutcome {
        acked_through: row.state.acked_through,
        tally,
        cases: cases::last_by_id(changed),
    })
}

pub(super) fn record_heartbeat(
    db: &Database,
    health: &GateHealth,
    gap_alert_after: SignedDuration,
) -> Result<Vec<Case>, StoreError> {
    let tx = db.begin_write()?;
    let gate = &health.heartbeat.agent;
    let mut row = load_or_new_gate(&tx, gate)?;
    row.health = Some(health.clone());
    let mut state = row.state.clone();
    let c = gap_check(
        &tx,
        gate,
        &mut state,
        &HashMap::new(),
        health.received_at,
        gap_alert_after,
    )?;
    row.state = state;
    save_gate(&tx, &row)?;
    tx.commit()?;
    Ok(c.into_iter().collect())
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
        for (chain_ok, refused) in [(true, false), (false, false), (true, true)] {
            let expected = encode(&StoredEvent {
                entry: entry.clone(),
                received_at: at,
                chain_ok,
                refused,
            })
            .expect("encode");
            let json = serde_json::to_vec(&entry).expect("json");
            assert_eq!(
                stored_event_bytes(&json, at, chain_ok, refused).expect("bytes"),
                expected
            );
        }
    }
}
