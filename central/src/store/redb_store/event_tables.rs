//! Agents, ingest of journal batches and heartbeats: the [`IngestTarget`] over one write
//! transaction (the rules are [`crate::ingest`]'s).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use jiff::{SignedDuration, Timestamp};
use protocol::schema::{EventBody, GateId, JournalEntry};
use redb::{Database, ReadableDatabase, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::case_tables::{CaseTx, store_alert};
use super::index_file::{ForIndex, IndexRow};
use super::index_pending;
use super::tables::{
    AGENT_TOKENS, COUNTERS, EVENT_IDS, EVENT_TXN, EVENTS, GATES, HOURLY, read_record, uuid_key,
    write_audit,
};
use crate::ingest::{self, AgentState, IngestTarget, Link};
use crate::model::{AgentRecord, AlertKind, Case, GateHealth, StoredEvent, TokenHash};
use crate::stats;
use crate::store::{
    AuditNote, Delivery, GateRow, IngestOutcome, StoreError, TokenChange, VALUE_VERSION, decode,
    encode, token_issued,
};
use crate::{cases, rollup};

pub(super) fn load_gate(tx: &WriteTransaction, gate: &str) -> Result<Option<GateRow>, StoreError> {
    let t = tx.open_table(GATES)?;
    let v = t.get(gate)?;
    v.map(|g| decode("gates_v1", gate, g.value())).transpose()
}

/// The gate's row, or a new one (no port yet) for a gate that sends before it was
/// registered.
fn load_or_new_gate(tx: &WriteTransaction, gate: &GateId) -> Result<GateRow, StoreError> {
    Ok(load_gate(tx, gate.as_str())?.unwrap_or_else(|| GateRow::new(gate.clone(), String::new())))
}

pub(super) fn save_gate(tx: &WriteTransaction, row: &GateRow) -> Result<(), StoreError> {
    tx.open_table(GATES)?
        .insert(row.gate.as_str(), encode(row)?.as_slice())?;
    Ok(())
}

/// One batch's ingest inside one write transaction. The event tables are opened once
/// for the batch, and what the batch itself stored (chain links, the containers of its
/// transactions, the transactions no other gate has entries about) is remembered, so
/// checking an entry against its predecessor or classifying a decision does not read
/// back and decode the JSON just written. What depends only on the entries (their stored
/// bytes, index keys, and the batch's figures) was made before the write transaction
/// ([`Prepared`]).
struct Target<'a> {
    tx: &'a WriteTransaction,
    gate: &'a GateId,
    now: Timestamp,
    state: &'a mut AgentState,
    batch: &'a Prepared,
    cases: Vec<Case>,
    events: redb::Table<'a, (&'static str, u64), &'static [u8]>,
    event_ids: redb::Table<'a, (&'static str, u128), u64>,
    /// The index rows of the entries stored, for the index file ([`super::index_file`]).
    index_rows: Vec<IndexRow>,
    event_txn: redb::Table<'a, (u128, &'static str, u64), ()>,
    /// Links of the entries stored by this batch, by seq.
    links: HashMap<u64, Link>,
    /// The gate transaction that [`IngestTarget::other_gate_of_transaction`] last found
    /// no stored entry about at all (so the entry being checked has no earlier entries of
    /// it to index under its containers either).
    unseen_txn: Option<u128>,
    /// Gate transactions that no other gate has an entry about: found so by this batch,
    /// whose own entries are the only ones written until it ends.
    own_txns: HashSet<u128>,
    /// Container index keys of the transactions stored by this batch, by transaction id.
    txn_containers: HashMap<u128, &'a [String]>,
    /// Where the next entry is expected in the batch (entries are checked in order).
    cursor: usize,
    /// Positions in the batch of the entries stored with effect (new, not refused).
    effect: Vec<usize>,
    /// Entries stored by this batch (the gate's event counter is bumped once).
    added: i64,
}

/// What a stored event's bytes start with: the value version, then `{"entry":`.
const STORED_PREFIX: &[u8] = &[
    VALUE_VERSION,
    b'{',
    b'"',
    b'e',
    b'n',
    b't',
    b'r',
    b'y',
    b'"',
    b':',
];

/// The end of a stored event's bytes after the entry's JSON and a comma:
/// `"received_at":…,"chain_ok":…,"refused":…}`.
pub(super) fn stored_event_tail(
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
    let json = serde_json::to_vec(&Tail {
        received_at,
        chain_ok,
        refused,
    })
    .map_err(|e| StoreError::Backend(e.to_string()))?;
    // Its opening brace is where the entry goes.
    Ok(json.get(1..).unwrap_or_default().to_vec())
}

/// The stored form of a [`StoredEvent`] from the entry's JSON: the same bytes as
/// `encode(&StoredEvent { entry, received_at, chain_ok, refused })` (fields in
/// declaration order), without serialising the entry again inside the write transaction.
fn stored_event_bytes(
    entry_json: &[u8],
    received_at: Timestamp,
    chain_ok: bool,
    refused: bool,
) -> Result<Vec<u8>, StoreError> {
    let tail = stored_event_tail(received_at, chain_ok, refused)?;
    let mut out = Vec::with_capacity(STORED_PREFIX.len() + entry_json.len() + 1 + tail.len());
    out.extend_from_slice(STORED_PREFIX);
    out.extend_from_slice(entry_json);
    out.push(b',');
    out.extend_from_slice(&tail);
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
        batch: &'a Prepared,
        state: &'a mut AgentState,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            tx,
            gate: &batch.gate,
            now: batch.now,
            state,
            batch,
            cases: Vec::new(),
            events: tx.open_table(EVENTS)?,
            event_ids: tx.open_table(EVENT_IDS)?,
            index_rows: Vec::with_capacity(batch.entries.len() * 5),
            event_txn: tx.open_table(EVENT_TXN)?,
            links: HashMap::new(),
            unseen_txn: None,
            own_txns: HashSet::new(),
            txn_containers: HashMap::new(),
            cursor: 0,
            effect: Vec::new(),
            added: 0,
        })
    }

    /// Ends the batch: the per-batch counters are written; returns the cases touched and
    /// the links of the entries stored.
    fn finish(self, out: &mut ForIndex) -> Result<(Vec<Case>, HashMap<u64, Link>), StoreError> {
        let Target {
            tx,
            gate,
            batch,
            cases,
            events,
            event_ids,
            index_rows,
            event_txn,
            links,
            effect,
            added,
            ..
        } = self;
        // Tables are closed before the counters' table is opened in the same transaction.
        drop((events, event_ids, event_txn));
        out.rows.extend(index_rows);
        let totals = batch.totals_of(&effect);
        {
            let mut counters = tx.open_table(COUNTERS)?;
            let mut bump = |scope: &str, name: &str, by: i64| -> Result<(), StoreError> {
                let cur = counters.get((scope, name))?.map_or(0, |g| g.value());
                counters.insert((scope, name), cur.saturating_add_signed(by))?;
                Ok(())
            };
            if added > 0 {
                bump(&format!("gate:{gate}"), "events", added)?;
            }
            for (outcome, n) in &totals.decisions {
                bump("decision", outcome, *n)?;
            }
        }
        if !totals.hourly.is_empty() {
            let mut h = tx.open_table(HOURLY)?;
            for ((hour, figure), by) in &totals.hourly {
                let key = (gate.as_str(), *hour, *figure);
                let n = h.get(key)?.map_or(0, |g| g.value()) + by;
                h.insert(key, n)?;
            }
        }
        out.gate = gate.to_string();
        out.seqs = index_pending::runs(
            effect
                .iter()
                .filter_map(|&i| batch.entries.get(i).map(|e| e.seq)),
        );
        if !totals.rollup.is_empty() {
            out.rollup = Some(totals.rollup);
        }
        Ok((cases, links))
    }

    /// Where `entry` is in the batch, and what was made for it. `ingest_checked` passes
    /// the batch's own entries in order, so this is the entry at the cursor or after it.
    fn position_of(&mut self, entry: &JournalEntry) -> Result<(usize, &'a Made), StoreError> {
        let batch: &'a Prepared = self.batch;
        let found = batch.entries[self.cursor.min(batch.entries.len())..]
            .iter()
            .position(|e| std::ptr::eq(e, entry))
            .map(|i| i + self.cursor)
            .or_else(|| {
                batch
                    .entries
                    .iter()
                    .position(|e| e.seq == entry.seq && e.hash == entry.hash)
            });
        let made = found.and_then(|i| Some((i, batch.made.get(i)?.as_ref()?)));
        match made {
            Some((i, m)) => {
                self.cursor = i + 1;
                Ok((i, m))
            }
            None => Err(StoreError::Backend(format!(
                "entry {} of gate {} is not one of its batch's verified entries",
                entry.seq, self.gate
            ))),
        }
    }

    fn index_event(&mut self, key: &str, at: i64, seq: u64) -> Result<(), StoreError> {
        self.index_rows
            .push((key.to_owned(), at, self.gate.as_str().to_owned(), seq));
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
        let own = gate == self.gate;
        if own && self.own_txns.contains(&k) {
            return Ok(None);
        }
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
        if own {
            self.own_txns.insert(k);
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
        let (position, made) = self.position_of(entry)?;
        if chain_ok && !refused {
            self.events
                .insert((gate, entry.seq), made.bytes.as_slice())?;
        } else {
            let json = made.bytes.get(made.json.clone()).unwrap_or_default();
            let bytes = stored_event_bytes(json, self.now, chain_ok, refused)?;
            self.events.insert((gate, entry.seq), bytes.as_slice())?;
        }
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
        self.effect.push(position);

        let at = entry.at.as_millisecond();
        self.index_event("t", at, entry.seq)?;
        let batch = self.batch;
        self.index_event(&batch.gate_key, at, entry.seq)?;
        for key in made.lane_key.iter().chain(&made.decision_key) {
            self.index_event(key, at, entry.seq)?;
        }
        if let Some(txn) = ingest::transaction_of(&entry.body) {
            let k = uuid_key(&txn);
            // Containers are named by the transaction; index this entry under them, and
            // when this is the transaction, index the entries that arrived before it.
            // A decision whose transaction came in this batch (the usual case: the agent
            // journals both together) takes the containers from memory.
            let is_transaction = matches!(entry.body, EventBody::Transaction { .. });
            let cached = if is_transaction {
                None
            } else {
                self.txn_containers.get(&k).copied()
            };
            // Checking this entry's gate authority just found no entry about `txn`.
            let unseen = unseen_txn == Some(k);
            let others = if cached.is_some() || unseen {
                Vec::new()
            } else {
                self.txn_events(&txn)?
            };
            let from_others: Vec<String>;
            let keys: &[String] = match cached {
                _ if is_transaction => {
                    self.txn_containers.insert(k, &made.container_keys);
                    &made.container_keys
                }
                Some(c) => c,
                None => {
                    let found: BTreeSet<String> = others
                        .iter()
                        .filter_map(|e| match &e.entry.body {
                            EventBody::Transaction { transaction } => {
                                Some(transaction.containers())
                            }
                            _ => None,
                        })
                        .flatten()
                        .map(|c| format!("c:{c}"))
                        .collect();
                    from_others = found.into_iter().collect();
                    &from_others
                }
            };
            for key in keys {
                self.index_event(key, at, entry.seq)?;
                if is_transaction {
                    for o in &others {
                        self.index_rows.push((
                            key.clone(),
                            o.entry.at.as_millisecond(),
                            o.entry.agent.as_str().to_owned(),
                            o.entry.seq,
                        ));
                    }
                }
            }
            self.event_txn.insert((k, gate, entry.seq), ())?;
        }
        let changed = cases::on_entry(&mut CaseTx(self.tx), self.gate, entry, self.now)?;
        self.cases.extend(changed);
        Ok(())
    }

    fn alert(&mut self, seq: u64, kind: AlertKind, detail: &str) -> Result<bool, StoreError> {
        let c = store_alert(self.tx, self.gate, seq, kind, detail, self.now)?;
        let new = c.is_some();
        self.cases.extend(c);
        Ok(new)
    }
}

pub(super) fn add_agent(
    db: &Database,
    token: &TokenHash,
    agent: &AgentRecord,
) -> Result<(), StoreError> {
    let tx = db.begin_write()?;
    if let Some(row) = GateRow::with_token(load_gate(&tx, agent.gate.as_str())?, agent)? {
        save_gate(&tx, &row)?;
    }
    tx.open_table(AGENT_TOKENS)?
        .insert(token.as_slice(), encode(agent)?.as_slice())?;
    let detail = token_issued(agent);
    write_audit(
        &tx,
        AuditNote::new(
            &agent.issued_by,
            "agent.token.issue",
            &detail,
            agent.issued_at,
        ),
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
    write_audit(&tx, AuditNote::new(c.actor, c.action, c.detail, c.at))?;
    tx.commit()?;
    Ok(changed)
}

pub(super) fn agent_for_token(
    db: &Database,
    token: &TokenHash,
) -> Result<Option<AgentRecord>, StoreError> {
    let shown = hex::encode(token);
    read_record(db, AGENT_TOKENS, "agent_tokens_v1", token.as_slice(), shown)
}

/// What storing one entry with effect writes, made from the entry alone.
#[derive(Debug)]
pub(super) struct Made {
    /// The stored event for `chain_ok` and not `refused` (the usual case), as
    /// [`stored_event_bytes`] makes it.
    pub(super) bytes: Vec<u8>,
    /// Where the entry's JSON lies in `bytes`, for the other flags.
    pub(super) json: std::ops::Range<usize>,
    /// The index keys `l:GATE/LANE` and `d:OUTCOME`, when the entry has them.
    pub(super) lane_key: Option<String>,
    pub(super) decision_key: Option<String>,
    /// For a gate transaction, its containers' index keys `c:CONTAINER`, each once.
    pub(super) container_keys: Vec<String>,
}

impl Made {
    /// Rule 1 for `e` (`None` when its hash matches its content, else why not, as
    /// [`ingest::check_hashes`] says it) and, when it matches, what storing it writes.
    /// With `raw`, the body's JSON as received, that text is hashed and stored; without,
    /// the body is serialised once, for the hash and for the stored bytes.
    pub(super) fn new(
        e: &JournalEntry,
        raw: Option<&RawValue>,
        tail: &[u8],
    ) -> Result<(Option<String>, Option<Self>), StoreError> {
        let json_err = |err: serde_json::Error| StoreError::Backend(err.to_string());
        let mut bytes = Vec::with_capacity(1_500);
        bytes.extend_from_slice(STORED_PREFIX);
        let start = bytes.len();
        if let Some(why) = ingest::checked_entry_json(e, raw, &mut bytes).map_err(json_err)? {
            return Ok((Some(why), None));
        }
        let json = start..bytes.len();
        bytes.push(b',');
        bytes.extend_from_slice(tail);
        let container_keys = match &e.body {
            EventBody::Transaction { transaction } => transaction
                .containers()
                .iter()
                .map(|c| format!("c:{c}"))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            _ => Vec::new(),
        };
        Ok((
            None,
            Some(Self {
                bytes,
                json,
                lane_key: ingest::lane_of(&e.body).map(|lane| format!("l:{}/{lane}", e.agent)),
                decision_key: ingest::decision_of(&e.body).map(|d| format!("d:{}", d.as_str())),
                container_keys,
            }),
        ))
    }
}

/// A batch's figures from the entries stored with effect (new, not refused): decisions
/// by outcome, hourly figures by (hour, figure), and the programme roll-up halves.
#[derive(Debug, Default)]
struct Totals {
    decisions: HashMap<&'static str, i64>,
    hourly: HashMap<(i64, &'static str), u64>,
    rollup: rollup::Batch,
}

impl Totals {
    fn add(&mut self, body: &EventBody) {
        match body {
            EventBody::Decision { decision: d } => {
                *self.decisions.entry(d.decision.as_str()).or_default() += 1;
                self.rollup.decision(d);
                let hour = stats::hour_start(d.decided_at);
                for k in stats::hour_figures(d) {
                    *self.hourly.entry((hour, k)).or_default() += 1;
                }
            }
            EventBody::Transaction { transaction } => self.rollup.transaction(transaction),
            _ => {}
        }
    }
}

/// A batch made ready for the write transaction: what needs no store is done before the
/// single writer is taken, so that several agents' batches do it in parallel — checking
/// each entry's hash, its stored bytes and index keys, and the batch's figures for when
/// every entry is stored with effect (the usual case).
#[derive(Debug)]
pub(super) struct Prepared {
    pub(super) gate: GateId,
    pub(super) entries: Vec<JournalEntry>,
    pub(super) now: Timestamp,
    pub(super) gap_alert_after: SignedDuration,
    hashes: Vec<Option<String>>,
    /// Per entry, for those whose hash verified.
    made: Vec<Option<Made>>,
    /// `g:GATE`.
    gate_key: String,
    /// The figures of every entry whose hash verified; taken by the first transaction
    /// that stores them all with effect (a batch retried alone adds them up again).
    totals: Mutex<Option<Totals>>,
}

impl Prepared {
    pub(super) fn new(batch: Delivery<'_>) -> Result<Self, StoreError> {
        let entries = batch.entries.to_vec();
        let tail = stored_event_tail(batch.now, true, false)?;
        let mut hashes = Vec::with_capacity(entries.len());
        let mut made = Vec::with_capacity(entries.len());
        let mut totals = Totals::default();
        for (i, e) in entries.iter().enumerate() {
            let (bad, m) = Made::new(e, batch.body(i), &tail)?;
            if m.is_some() {
                totals.add(&e.body);
            }
            hashes.push(bad);
            made.push(m);
        }
        Ok(Self {
            gate_key: format!("g:{}", batch.gate),
            gate: batch.gate.clone(),
            entries,
            now: batch.now,
            gap_alert_after: batch.gap_alert_after,
            hashes,
            made,
            totals: Mutex::new(Some(totals)),
        })
    }

    /// The figures of the entries at `effect` (positions in the batch, in order).
    fn totals_of(&self, effect: &[usize]) -> Totals {
        let verified = self.made.iter().filter(|m| m.is_some()).count();
        if effect.len() == verified
            && let Some(t) = self
                .totals
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
        {
            // Each position is stored at most once and only verified entries are stored:
            // as many as were verified means all of them.
            return t;
        }
        let mut t = Totals::default();
        for e in effect.iter().filter_map(|&i| self.entries.get(i)) {
            t.add(&e.body);
        }
        t
    }
}

/// Checks and stores one prepared batch inside `tx` (which may hold other batches too);
/// the batch's index rows and roll-up go to `out`, for the index file's writer
/// ([`super::index_file`]).
pub(super) fn ingest_in(
    tx: &WriteTransaction,
    b: &Prepared,
    out: &mut ForIndex,
) -> Result<IngestOutcome, StoreError> {
    let gate = &b.gate;
    let mut row = load_or_new_gate(tx, gate)?;
    let mut state = row.state.clone();
    let mut target = Target::new(tx, b, &mut state)?;
    let tally = ingest::ingest_checked(&mut target, &b.entries, &b.hashes)?;
    let (mut changed, stored) = target.finish(out)?;
    changed.extend(cases::gap_check(
        &mut CaseTx(tx),
        gate,
        &mut state,
        &stored,
        b.now,
        b.gap_alert_after,
    )?);
    row.ingested(state, &b.entries, &b.hashes);
    save_gate(tx, &row)?;
    Ok(IngestOutcome::new(&row, tally, changed))
}

pub(super) fn record_heartbeat(
    db: &Database,
    health: &GateHealth,
    gap_alert_after: SignedDuration,
) -> Result<Vec<Case>, StoreError> {
    let tx = db.begin_write()?;
    let mut row = load_or_new_gate(&tx, &health.heartbeat.agent)?;
    row.health = Some(health.clone());
    let book = &mut CaseTx(&tx);
    let at = health.received_at;
    let cases = cases::on_heartbeat(book, &row.gate, &mut row.state, at, gap_alert_after)?;
    save_gate(&tx, &row)?;
    tx.commit()?;
    Ok(cases)
}

#[cfg(test)]
pub(super) mod ingest_encoding_tests {
    use protocol::schema::{
        CloseReason, EventBody, GENESIS_HASH, GateId, GateTransaction, JournalEntry, LaneId, Read,
        ReadSource, ReadValue, SCHEMA_VERSION,
    };

    use super::{Made, StoredEvent, encode, stored_event_bytes, stored_event_tail};

    fn at() -> jiff::Timestamp {
        "2026-11-23T10:00:00.123Z".parse().expect("time")
    }

    /// An OCR read of container `number` at `at` (the redb store's tests share it).
    pub(in crate::store::redb_store) fn container_read(number: &str, at: jiff::Timestamp) -> Read {
        Read {
            source: ReadSource::Ocr,
            device: "ocr-1".into(),
            raw: number.into(),
            value: ReadValue::Container {
                number: number.parse().expect("container"),
            },
            first_at: at,
            last_at: at,
            count: 2,
            antenna: None,
            rssi: Some(-61),
            confidence: Some(97),
            entered_by: None,
        }
    }

    /// Entries 1..=3 of one chain: an alert with characters JSON escapes, a gate
    /// transaction naming a container twice and another once, and an alert.
    fn entries() -> Vec<JournalEntry> {
        let gate = GateId::parse("G1").expect("gate");
        let transaction = GateTransaction {
            v: SCHEMA_VERSION,
            id: uuid::Uuid::from_u128(7),
            gate: gate.clone(),
            lane: LaneId::parse("L2").expect("lane"),
            opened_at: at(),
            closed_at: at(),
            close_reason: CloseReason::Departure,
            reads: vec![
                container_read("MSCU1234566", at()),
                container_read("CSQU3054383", at()),
                container_read("MSCU1234566", at()),
            ],
        };
        let bodies = [
            EventBody::IntegrityAlert {
                what: "test \"quoted\" \u{e9}".into(),
                detail: "line\nbreak\t\u{1}".into(),
            },
            EventBody::Transaction { transaction },
            EventBody::IntegrityAlert {
                what: "w".into(),
                detail: "d".into(),
            },
        ];
        let numbered = (1..).zip(bodies).map(|(seq, body)| {
            let id = uuid::Uuid::from_u128(u128::from(seq));
            (seq, id, at(), body)
        });
        chained(&gate, GENESIS_HASH, numbered)
    }

    /// One chain of `gate`'s entries (seq, id, agent time, body), the first after the
    /// hash `prev` (the redb store's tests share it).
    pub(in crate::store::redb_store) fn chained(
        gate: &GateId,
        prev: &str,
        entries: impl IntoIterator<Item = (u64, uuid::Uuid, jiff::Timestamp, EventBody)>,
    ) -> Vec<JournalEntry> {
        let mut prev = prev.to_owned();
        entries
            .into_iter()
            .map(|(seq, id, at, body)| {
                let e = JournalEntry::new_chained(gate.clone(), seq, id, at, prev.clone(), body)
                    .expect("entry");
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    #[test]
    fn stored_event_bytes_are_what_encoding_the_stored_event_gives() {
        for entry in entries() {
            for (chain_ok, refused) in [(true, false), (false, false), (true, true)] {
                let expected = encode(&StoredEvent {
                    entry: entry.clone(),
                    received_at: at(),
                    chain_ok,
                    refused,
                })
                .expect("encode");
                let json = serde_json::to_vec(&entry).expect("json");
                assert_eq!(
                    stored_event_bytes(&json, at(), chain_ok, refused).expect("bytes"),
                    expected
                );
            }
        }
    }

    #[test]
    fn an_entry_made_before_the_writer_is_stored_as_encoding_it_gives() {
        let tail = stored_event_tail(at(), true, false).expect("tail");
        for entry in entries() {
            let (bad, made) = Made::new(&entry, None, &tail).expect("made");
            assert_eq!(bad, None, "seq {}", entry.seq);
            let made = made.expect("verified");
            let stored = StoredEvent {
                entry: entry.clone(),
                received_at: at(),
                chain_ok: true,
                refused: false,
            };
            assert_eq!(made.bytes, encode(&stored).expect("encode"));
            assert_eq!(
                made.bytes.get(made.json.clone()),
                Some(serde_json::to_vec(&entry).expect("json").as_slice())
            );
            let keys = match &entry.body {
                EventBody::Transaction { .. } => vec!["c:CSQU3054383", "c:MSCU1234566"],
                _ => vec![],
            };
            assert_eq!(made.container_keys, keys);
            let lane = matches!(entry.body, EventBody::Transaction { .. }).then_some("l:G1/L2");
            assert_eq!(made.lane_key.as_deref(), lane);
        }
    }

    #[test]
    fn an_entry_whose_hash_does_not_match_is_refused_with_its_own_checks_words() {
        let tail = stored_event_tail(at(), true, false).expect("tail");
        let mut altered = entries();
        if let EventBody::IntegrityAlert { detail, .. } = &mut altered[0].body {
            detail.push('!');
        }
        altered[1].prev_hash = "not hex".into();
        altered[2].hash = altered[1].hash.clone();
        for e in &altered {
            let (bad, made) = Made::new(e, None, &tail).expect("made");
            assert!(made.is_none(), "seq {}", e.seq);
            let expected = e.verify_hash().expect_err("altered").to_string();
            assert_eq!(bad, Some(expected), "seq {}", e.seq);
        }
    }
}
