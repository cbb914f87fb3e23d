//! Agents, ingest of journal batches and heartbeats: the [`IngestTarget`] over one
//! transaction (the rules are [`crate::ingest`]'s).
//!
//! A batch's rows are collected while the rules run and written at its end: the entries'
//! keys and the events by binary `COPY`, the other tables with one multi-row
//! `INSERT … SELECT FROM unnest(…)` each; the chain links, entry ids and
//! gate transactions' containers the rules look up are read in a few queries before they
//! run. The gate's row is locked first,
//! so two batches of one gate (on any connection or instance) are checked one after the
//! other, and the primary keys on `event_keys` make a stored entry unique regardless.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::tx::{CopyRows, Tx};
use jiff::{SignedDuration, Timestamp};
use postgres::types::Type;
use protocol::schema::{EventBody, GateId, JournalEntry};
use uuid::Uuid;

use super::case_tables::{BufferedCases, CaseBuffer, CaseTx, bump_all, store_alert_buffered};
use super::rollup_tables;
use super::{from_json, int, to_json, uint, write_audit};
use crate::ingest::{self, AgentState, IngestTarget, Link};
use crate::model::{AgentRecord, AlertKind, Case, GateHealth, TokenHash};
use crate::stats;
use crate::store::{
    AuditNote, Delivery, GateRow, IngestOutcome, StoreError, TokenChange, token_issued,
};
use crate::{cases, rollup};

/// What an ingest computes before its transaction: rule 1 for every entry, and each
/// entry's stored value.
pub(super) struct Prepared {
    hashes: Vec<Option<String>>,
    /// By (seq, hash), for the entries whose hash matched: the stored value as an entry
    /// stored with effect has it (`chain_ok` true, `refused` false), and where the
    /// entry's JSON lies in it (for a value with other flags).
    values: HashMap<(u64, String), (String, std::ops::Range<usize>)>,
}

/// Rule 1 for every entry of `d` and, for those that pass, their stored values received at
/// its time ([`stored_value`]). Each body is hashed and stored as received when `d` has
/// it, else serialised once for both.
pub(super) fn prepare(d: &Delivery<'_>) -> Result<Prepared, StoreError> {
    let json_err = |err: serde_json::Error| StoreError::Backend(err.to_string());
    let now_json = serde_json::to_string(&d.now).map_err(json_err)?;
    let mut values = HashMap::with_capacity(d.entries.len());
    let mut hashes = Vec::with_capacity(d.entries.len());
    let mut entry_json = Vec::new();
    for (i, e) in d.entries.iter().enumerate() {
        entry_json.clear();
        let why = ingest::checked_entry_json(e, d.body(i), &mut entry_json).map_err(json_err)?;
        let matched = why.is_none();
        hashes.push(why);
        if matched {
            let (value, range) = stored_value(&entry_json, &now_json, true, false)?;
            values.insert((e.seq, e.hash.clone()), (value, range));
        }
    }
    Ok(Prepared { hashes, values })
}

/// A stored entry's (gate, seq, at ms).
type EntryAt = (String, i64, i64);

/// Rows of one batch, written at its end.
#[derive(Default)]
struct Rows {
    key_seq: Vec<i64>,
    key_id: Vec<Uuid>,
    key_hash: Vec<String>,
    key_prev: Vec<String>,
    key_at: Vec<i64>,
    ev_seq: Vec<i64>,
    ev_at: Vec<i64>,
    ev_lane: Vec<Option<String>>,
    ev_decision: Vec<Option<String>>,
    ev_txn: Vec<Option<Uuid>>,
    /// The stored events' JSON text, copied as text into `events.record` (migration 11).
    ev_value: Vec<String>,
    /// Entries refused by ingest's rules (gate authority): (seq, at ms, stored value).
    refused: Vec<(i64, i64, String)>,
    /// Events stored with effect (the gate's event counter).
    events: i64,
    /// Container index rows of this batch's entries, (container, at ms, gate, seq): new
    /// rows (the entries' keys are new in `event_keys` in this transaction), copied.
    containers: BTreeSet<(String, i64, String, i64)>,
    /// Container index rows of entries stored by earlier batches, when their transaction
    /// arrives now: inserted with `ON CONFLICT DO NOTHING` (an earlier entry of the same
    /// transaction may have indexed them already).
    stored_containers: BTreeSet<(String, i64, String, i64)>,
    /// (txn, container)
    txn_containers: BTreeSet<(Uuid, String)>,
    /// The stored entries naming a gate transaction: (txn, gate, seq, at ms).
    txn_rows: Vec<(Uuid, String, i64, i64)>,
    /// (scope, name) → increment
    counters: BTreeMap<(String, String), i64>,
    /// (gate, hour, figure) → increment
    hourly: BTreeMap<(String, i64, String), i64>,
    rollup: rollup::Batch,
}

struct Target<'a, 'b> {
    tx: &'a mut Tx<'b>,
    gate: &'a GateId,
    now: Timestamp,
    state: &'a mut AgentState,
    cases: Vec<Case>,
    /// Stored links of the seqs this batch touches (read before the rules run), and the
    /// links of what this batch stores.
    links: HashMap<u64, Link>,
    /// The seqs whose links were read up front (absent from `links`: not stored).
    read_seqs: HashSet<u64>,
    /// The gate transactions whose stored entries were read up front.
    read_txns: HashSet<Uuid>,
    /// Entry ids already stored for this gate, and those this batch stores.
    ids: HashMap<Uuid, u64>,
    /// Containers of the transactions stored by this batch.
    txn_containers: HashMap<Uuid, BTreeSet<String>>,
    /// For the gate transactions the batch's entries name, read before the rules run:
    /// their stored containers, and their stored entries (gate, seq, at ms).
    stored_txn_containers: HashMap<Uuid, BTreeSet<String>>,
    stored_txn_entries: HashMap<Uuid, Vec<(String, i64, i64)>>,
    /// Lanes of the transactions this batch journaled (its rows are written at the end).
    txn_lanes: HashMap<Uuid, String>,
    /// The stored values made before the transaction ([`Prepared`]).
    values: HashMap<(u64, String), (String, std::ops::Range<usize>)>,
    /// `now` as JSON, the stored events' `received_at`.
    now_json: String,
    rows: Rows,
    /// The batch's case writes, made at its end.
    case_buf: CaseBuffer,
}

/// A stored event's JSON text, `{"entry":…,"received_at":…,"chain_ok":…,"refused":…}`,
/// from the entry's JSON text (not parsed or built again), and where that text lies in it.
fn stored_value(
    entry_json: &[u8],
    received_at: &str,
    chain_ok: bool,
    refused: bool,
) -> Result<(String, std::ops::Range<usize>), StoreError> {
    let entry = std::str::from_utf8(entry_json)
        .map_err(|e| StoreError::Backend(format!("an entry's JSON is not UTF-8: {e}")))?;
    let mut v = String::with_capacity(entry.len() + received_at.len() + 64);
    v.push_str("{\"entry\":");
    let start = v.len();
    v.push_str(entry);
    let range = start..v.len();
    v.push_str(",\"received_at\":");
    v.push_str(received_at);
    v.push_str(if chain_ok {
        ",\"chain_ok\":true"
    } else {
        ",\"chain_ok\":false"
    });
    v.push_str(if refused {
        ",\"refused\":true}"
    } else {
        ",\"refused\":false}"
    });
    Ok((v, range))
}

impl Target<'_, '_> {
    /// Entries of a gate transaction of this gate, (gate, seq, at ms): those stored by
    /// earlier batches, and those stored by this batch.
    fn txn_entries(&self, txn: Uuid) -> (Vec<EntryAt>, Vec<EntryAt>) {
        // This gate's entries only: a transaction belongs to the gate that journaled it.
        let stored: Vec<EntryAt> = self
            .stored_txn_entries
            .get(&txn)
            .map(|rows| {
                rows.iter()
                    .filter(|(g, ..)| g == self.gate.as_str())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let batch = self
            .rows
            .txn_rows
            .iter()
            .filter(|(t, ..)| *t == txn)
            .map(|(_, g, s, at)| (g.clone(), *s, *at))
            .collect();
        (stored, batch)
    }

    /// Counts a decision stored with effect in the batch's hourly figures and roll-ups.
    fn count_decision(&mut self, d: &protocol::schema::Decision) {
        let hour = stats::hour_start(d.decided_at);
        for k in stats::hour_figures(d) {
            *self
                .rows
                .hourly
                .entry((self.gate.to_string(), hour, k.to_owned()))
                .or_default() += 1;
        }
        self.rows.rollup.decision(d);
    }

    /// Writes the batch's rows; `decisions` are those the rules stored, by outcome
    /// ([`ingest::Tally`]).
    fn flush(&mut self, decisions: &BTreeMap<&'static str, u64>) -> Result<(), StoreError> {
        let gate = self.gate.as_str();
        let mut r = std::mem::take(&mut self.rows);
        if !r.key_seq.is_empty() {
            // Binary COPY: no SQL text to parse per batch, no arrays to unpack, and the
            // server reads each value as it is (an event's record is text, not parsed again).
            let mut rows = CopyRows::new(&[
                Type::TEXT,
                Type::INT8,
                Type::UUID,
                Type::TEXT,
                Type::TEXT,
                Type::INT8,
            ]);
            for i in 0..r.key_seq.len() {
                rows.push(&[
                    &gate,
                    &r.key_seq[i],
                    &r.key_id[i],
                    &r.key_hash[i],
                    &r.key_prev[i],
                    &r.key_at[i],
                ])?;
            }
            // A key stored since the rules' reads, or an entry id they did not read
            // (`ingest`'s `read_ids`): a conflict, run again.
            self.tx.copy_new_rows(
                "COPY event_keys (gate, seq, entry_id, hash, prev_hash, at_ms)
                 FROM STDIN (FORMAT binary)",
                rows,
            )?;
        }
        if !r.ev_seq.is_empty() {
            let mut rows = CopyRows::new(&[
                Type::TEXT,
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::UUID,
                Type::TEXT,
            ]);
            // Each row: its record, and the other six values with their lengths.
            rows.reserve(r.ev_value.iter().map(|v| v.len() + 128).sum());
            for i in 0..r.ev_seq.len() {
                rows.push(&[
                    &gate,
                    &r.ev_seq[i],
                    &r.ev_at[i],
                    &r.ev_lane[i],
                    &r.ev_decision[i],
                    &r.ev_txn[i],
                    &r.ev_value[i],
                ])?;
            }
            // The record as text (migration 11): the server does not parse it again.
            self.tx.copy_rows(
                "COPY events (gate, seq, at_ms, lane, decision, txn, record)
                 FROM STDIN (FORMAT binary)",
                rows,
            )?;
        }
        if !r.refused.is_empty() {
            let (seq, at, value): (Vec<i64>, Vec<i64>, Vec<String>) = unzip3(r.refused);
            self.tx.execute(
                "INSERT INTO refused_events (gate, seq, at_ms, value)
                 SELECT $1, s, a, v::json
                 FROM unnest($2::bigint[], $3::bigint[], $4::text[]) AS u (s, a, v)",
                &[&gate, &seq, &at, &value],
            )?;
        }
        // A transaction's containers not stored yet: those stored were read up front. A
        // row another gate's batch stored since (naming the same transaction at the same
        // time) makes this one a conflict, run again, when the rules see that gate's
        // entries and refuse this batch's.
        let mut rows = CopyRows::new(&[Type::UUID, Type::TEXT]);
        for (t, c) in &r.txn_containers {
            if !self
                .stored_txn_containers
                .get(t)
                .is_some_and(|stored| stored.contains(c))
            {
                rows.push(&[t, c])?;
            }
        }
        if !rows.is_empty() {
            self.tx.copy_new_rows(
                "COPY txn_containers (txn, container) FROM STDIN (FORMAT binary)",
                rows,
            )?;
        }
        if !r.containers.is_empty() {
            let mut rows = CopyRows::new(&[Type::TEXT, Type::INT8, Type::TEXT, Type::INT8]);
            for (c, a, g, s) in &r.containers {
                rows.push(&[c, a, g, s])?;
            }
            self.tx.copy_rows(
                "COPY event_containers (container, at_ms, gate, seq) FROM STDIN (FORMAT binary)",
                rows,
            )?;
        }
        if !r.stored_containers.is_empty() {
            let (c, a, g, s): (Vec<String>, Vec<i64>, Vec<String>, Vec<i64>) =
                unzip4(r.stored_containers);
            self.tx.execute(
                "INSERT INTO event_containers (container, at_ms, gate, seq)
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[])
                 ON CONFLICT DO NOTHING",
                &[&c, &a, &g, &s],
            )?;
        }
        self.case_buf.write(self.tx)?;
        if r.events > 0 {
            *r.counters
                .entry((format!("gate:{gate}"), "events".into()))
                .or_default() += r.events;
        }
        for (outcome, n) in decisions {
            *r.counters
                .entry(("decision".into(), (*outcome).into()))
                .or_default() += int(*n)?;
        }
        for (k, n) in std::mem::take(&mut self.case_buf.counters) {
            *r.counters.entry(k).or_default() += n;
        }
        bump_all(self.tx, r.counters)?;
        if !r.hourly.is_empty() {
            let (keys, n): (Vec<(String, i64, String)>, Vec<i64>) = r.hourly.into_iter().unzip();
            let (g, h, f): (Vec<String>, Vec<i64>, Vec<String>) = unzip3(keys);
            self.tx.execute(
                "INSERT INTO hourly (gate, hour, figure, n)
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[])
                 ON CONFLICT (gate, hour, figure) DO UPDATE SET n = hourly.n + EXCLUDED.n",
                &[&g, &h, &f, &n],
            )?;
        }
        // Folded into the roll-ups later, many batches at once (`rollup_tables::fold`).
        rollup_tables::queue(self.tx, gate, &r.rollup)?;
        Ok(())
    }
}

fn unzip3<A, B, C>(v: impl IntoIterator<Item = (A, B, C)>) -> (Vec<A>, Vec<B>, Vec<C>) {
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for (x, y, z) in v {
        a.push(x);
        b.push(y);
        c.push(z);
    }
    (a, b, c)
}

fn unzip4<A, B, C, D>(
    v: impl IntoIterator<Item = (A, B, C, D)>,
) -> (Vec<A>, Vec<B>, Vec<C>, Vec<D>) {
    let (mut a, mut b, mut c, mut d) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (w, x, y, z) in v {
        a.push(w);
        b.push(x);
        c.push(y);
        d.push(z);
    }
    (a, b, c, d)
}

impl IngestTarget for Target<'_, '_> {
    type Error = StoreError;

    fn stored(&mut self, seq: u64) -> Result<Option<Link>, StoreError> {
        if let Some(l) = self.links.get(&seq) {
            return Ok(Some(l.clone()));
        }
        // Seqs next to the batch's were read up front (the gate's row lock keeps them as
        // read), and every stored entry raised `max_seq`: only another seq is read here.
        if self.read_seqs.contains(&seq) || seq > self.state.max_seq {
            return Ok(None);
        }
        let row = self.tx.query_opt(
            "SELECT hash, prev_hash, at_ms FROM event_keys WHERE gate = $1 AND seq = $2",
            &[&self.gate.as_str(), &int(seq)?],
        )?;
        Ok(row.map(|r| Link {
            hash: r.get(0),
            prev_hash: r.get(1),
            at: at_of_ms(r.get(2)),
        }))
    }

    fn seq_of_id(&mut self, id: &Uuid) -> Result<Option<u64>, StoreError> {
        Ok(self.ids.get(id).copied())
    }

    fn other_gate_of_transaction(
        &mut self,
        txn: &Uuid,
        gate: &GateId,
    ) -> Result<Option<String>, StoreError> {
        // The batch's transactions' stored entries (any gate) were read up front.
        if let Some(rows) = self.stored_txn_entries.get(txn) {
            return Ok(rows
                .iter()
                .find(|(g, ..)| g != gate.as_str())
                .map(|(g, ..)| g.clone()));
        }
        // Read up front and none stored: what this batch added since is its own gate's.
        if self.read_txns.contains(txn) {
            return Ok(None);
        }
        Ok(self
            .tx
            .query_opt(
                "SELECT gate FROM events WHERE txn = $1 AND gate <> $2 LIMIT 1",
                &[txn, &gate.as_str()],
            )?
            .map(|r| r.get(0)))
    }

    fn lane_of_transaction(&mut self, txn: &Uuid) -> Result<Option<String>, StoreError> {
        if let Some(l) = self.txn_lanes.get(txn) {
            return Ok(Some(l.clone()));
        }
        // A stored transaction or decision entry of this gate (refused ones are kept
        // apart, not in `events`).
        Ok(self
            .tx
            .query_opt(
                "SELECT lane FROM events WHERE gate = $1 AND txn = $2 AND lane IS NOT NULL \
                 AND (decision IS NOT NULL \
                      OR COALESCE(record::json, value)->'entry'->'body'->>'type' = 'TRANSACTION') \
                 LIMIT 1",
                &[&self.gate.as_str(), txn],
            )?
            .map(|r| r.get(0)))
    }

    fn insert(
        &mut self,
        entry: &JournalEntry,
        chain_ok: bool,
        refused: bool,
    ) -> Result<(), StoreError> {
        let value = match self.values.remove(&(entry.seq, entry.hash.clone())) {
            Some((value, _)) if chain_ok && !refused => value,
            Some((value, json)) => {
                stored_value(value[json].as_bytes(), &self.now_json, chain_ok, refused)?.0
            }
            None => {
                let json =
                    serde_json::to_vec(entry).map_err(|e| StoreError::Backend(e.to_string()))?;
                stored_value(&json, &self.now_json, chain_ok, refused)?.0
            }
        };
        let seq = int(entry.seq)?;
        let at = entry.at.as_millisecond();
        let txn = ingest::transaction_of(&entry.body);
        let r = &mut self.rows;
        r.key_seq.push(seq);
        r.key_id.push(entry.id);
        r.key_hash.push(entry.hash.clone());
        r.key_prev.push(entry.prev_hash.clone());
        r.key_at.push(at);
        self.links.insert(
            entry.seq,
            Link {
                hash: entry.hash.clone(),
                prev_hash: entry.prev_hash.clone(),
                // As stored (milliseconds), so a stored link reads the same.
                at: at_of_ms(at),
            },
        );
        self.ids.insert(entry.id, entry.seq);
        self.state.events += 1;
        self.state.max_seq = self.state.max_seq.max(entry.seq);
        if refused {
            // Evidence only: kept apart from `events`, so no query, export, statistic or
            // case sees it.
            self.rows.refused.push((seq, at, value));
            return Ok(());
        }
        match &entry.body {
            EventBody::Transaction { transaction } => {
                self.txn_lanes
                    .insert(transaction.id, transaction.lane.to_string());
            }
            EventBody::Decision { decision } => {
                self.txn_lanes
                    .insert(decision.transaction_id, decision.lane.to_string());
            }
            _ => {}
        }
        let r = &mut self.rows;
        r.ev_seq.push(seq);
        r.ev_at.push(at);
        r.ev_lane
            .push(ingest::lane_of(&entry.body).map(str::to_owned));
        r.ev_decision
            .push(ingest::decision_of(&entry.body).map(|d| d.as_str().to_owned()));
        r.ev_txn.push(txn);
        r.ev_value.push(value);
        r.events += 1;

        if let Some(txn) = txn {
            // Containers are named by the transaction; index this entry under them, and
            // when this is the transaction, index the entries that arrived before it.
            let gate = self.gate.to_string();
            let containers: BTreeSet<String> = match &entry.body {
                EventBody::Transaction { transaction } => {
                    let c: BTreeSet<String> = transaction
                        .containers()
                        .iter()
                        .map(|c| c.to_string())
                        .collect();
                    let (stored, batch) = self.txn_entries(txn);
                    for (o, k) in stored.iter().flat_map(|o| c.iter().map(move |k| (o, k))) {
                        self.rows
                            .stored_containers
                            .insert((k.clone(), o.2, o.0.clone(), o.1));
                    }
                    for (o, k) in batch.iter().flat_map(|o| c.iter().map(move |k| (o, k))) {
                        self.rows
                            .containers
                            .insert((k.clone(), o.2, o.0.clone(), o.1));
                    }
                    for k in &c {
                        self.rows.txn_containers.insert((txn, k.clone()));
                    }
                    self.txn_containers.insert(txn, c.clone());
                    c
                }
                _ => match self.txn_containers.get(&txn) {
                    Some(c) => c.clone(),
                    None => self
                        .stored_txn_containers
                        .get(&txn)
                        .cloned()
                        .unwrap_or_default(),
                },
            };
            for k in containers {
                self.rows.containers.insert((k, at, gate.clone(), seq));
            }
            self.rows.txn_rows.push((txn, gate, seq, at));
        }
        match &entry.body {
            EventBody::Decision { decision } => self.count_decision(decision),
            EventBody::Transaction { transaction } => self.rows.rollup.transaction(transaction),
            _ => {}
        }
        let book = &mut BufferedCases {
            tx: self.tx,
            buf: &mut self.case_buf,
        };
        let changed = cases::on_entry(book, self.gate, entry, self.now)?;
        self.cases.extend(changed);
        Ok(())
    }

    fn alert(&mut self, seq: u64, kind: AlertKind, detail: &str) -> Result<bool, StoreError> {
        let c = store_alert_buffered(
            self.tx,
            &mut self.case_buf,
            self.gate,
            seq,
            kind,
            detail,
            self.now,
        )?;
        let new = c.is_some();
        self.cases.extend(c);
        Ok(new)
    }
}

/// The gate's row, created empty when missing, locked until the transaction ends.
fn lock_gate(tx: &mut Tx<'_>, gate: &GateId) -> Result<GateRow, StoreError> {
    let empty = GateRow::new(gate.clone(), String::new());
    tx.execute(
        "INSERT INTO gates (gate, value) VALUES ($1, $2) ON CONFLICT (gate) DO NOTHING",
        &[&gate.as_str(), &to_json(&empty)?],
    )?;
    let row = tx.query_one(
        "SELECT value FROM gates WHERE gate = $1 FOR UPDATE",
        &[&gate.as_str()],
    )?;
    from_json("gates", gate, row.get(0))
}

fn save_gate(tx: &mut Tx<'_>, row: &GateRow) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE gates SET value = $2 WHERE gate = $1",
        &[&row.gate.as_str(), &to_json(row)?],
    )?;
    Ok(())
}

pub(super) fn add_agent(
    tx: &mut Tx<'_>,
    token: &TokenHash,
    agent: &AgentRecord,
) -> Result<(), StoreError> {
    let existing = tx
        .query_opt(
            "SELECT value FROM gates WHERE gate = $1 FOR UPDATE",
            &[&agent.gate.as_str()],
        )?
        .map(|r| from_json::<GateRow>("gates", &agent.gate, r.get(0)))
        .transpose()?;
    let new = existing.is_none();
    match GateRow::with_token(existing, agent)? {
        Some(row) if new => {
            tx.execute(
                "INSERT INTO gates (gate, value) VALUES ($1, $2)",
                &[&agent.gate.as_str(), &to_json(&row)?],
            )?;
        }
        Some(row) => save_gate(tx, &row)?,
        None => {}
    }
    tx.execute(
        "INSERT INTO agent_tokens (token, value) VALUES ($1, $2)
         ON CONFLICT (token) DO UPDATE SET value = EXCLUDED.value",
        &[&token.as_slice(), &to_json(agent)?],
    )?;
    let detail = token_issued(agent);
    write_audit(
        tx,
        AuditNote::new(
            &agent.issued_by,
            "agent.token.issue",
            &detail,
            agent.issued_at,
        ),
    )
}

pub(super) fn agent_tokens(tx: &mut Tx<'_>, gate: &GateId) -> Result<Vec<AgentRecord>, StoreError> {
    tx.query(
        "SELECT token, value FROM agent_tokens WHERE value->>'gate' = $1",
        &[&gate.as_str()],
    )?
    .into_iter()
    .map(|r| {
        let key: Vec<u8> = r.get(0);
        from_json("agent_tokens", hex::encode(&key), r.get(1))
    })
    .collect()
}

pub(super) fn change_agent_tokens(
    tx: &mut Tx<'_>,
    c: &mut TokenChange<'_>,
) -> Result<usize, StoreError> {
    let Some(row) = tx.query_opt(
        "SELECT value FROM gates WHERE gate = $1 FOR UPDATE",
        &[&c.gate.as_str()],
    )?
    else {
        return Err(StoreError::UnknownGate(c.gate.to_string()));
    };
    let mut row: GateRow = from_json("gates", c.gate, row.get(0))?;
    let rows = tx.query(
        "SELECT token, value FROM agent_tokens WHERE value->>'gate' = $1 FOR UPDATE",
        &[&c.gate.as_str()],
    )?;
    let mut changed = 0;
    let mut tokens = Vec::with_capacity(rows.len() + 1);
    for r in rows {
        let key: Vec<u8> = r.get(0);
        let mut rec: AgentRecord = from_json("agent_tokens", hex::encode(&key), r.get(1))?;
        if (c.change)(&mut rec) {
            changed += 1;
            tx.execute(
                "UPDATE agent_tokens SET value = $2 WHERE token = $1",
                &[&key, &to_json(&rec)?],
            )?;
        }
        tokens.push(rec);
    }
    if let Some((hash, rec)) = c.add {
        tx.execute(
            "INSERT INTO agent_tokens (token, value) VALUES ($1, $2)",
            &[&hash.as_slice(), &to_json(rec)?],
        )?;
        tokens.push(rec.clone());
    }
    let mark = crate::store::gate_revocation(&tokens, row.revoked_at, c.at);
    if mark != row.revoked_at {
        row.revoked_at = mark;
        save_gate(tx, &row)?;
    }
    write_audit(tx, AuditNote::new(c.actor, c.action, c.detail, c.at))?;
    Ok(changed)
}

pub(super) fn agent_for_token(
    tx: &mut Tx<'_>,
    token: &TokenHash,
) -> Result<Option<AgentRecord>, StoreError> {
    tx.query_opt(
        "SELECT value FROM agent_tokens WHERE token = $1",
        &[&token.as_slice()],
    )?
    .map(|r| from_json("agent_tokens", hex::encode(token), r.get(0)))
    .transpose()
}

/// Checks and stores a batch of `gate`'s entries in `tx`.
///
/// With `read_ids` false the entry ids stored before are not read: the rules take every
/// id as new, which it nearly always is, and an id stored before makes the copy of the
/// entries' keys fail on `event_keys`' unique (gate, entry id) as a conflict, so the
/// store runs the ingest again, with `read_ids` true, and the rules find the reused id
/// (saves a probe of that index per entry).
pub(super) fn ingest(
    tx: &mut Tx<'_>,
    batch: Delivery<'_>,
    prepared: Prepared,
    read_ids: bool,
) -> Result<IngestOutcome, StoreError> {
    let Delivery {
        gate,
        entries,
        now,
        gap_alert_after,
        ..
    } = batch;
    let mut row = lock_gate(tx, gate)?;
    let mut state = row.state.clone();
    // The links (and ids) the rules will ask for, in a query each.
    let mut seqs: HashSet<i64> = HashSet::new();
    for e in entries {
        let s = int(e.seq)?;
        seqs.extend([s - 1, s, s.saturating_add(1)]);
    }
    let seqs: Vec<i64> = seqs.into_iter().collect();
    let span = seqs.iter().min().zip(seqs.iter().max());
    let width = i64::try_from(seqs.len()).unwrap_or(i64::MAX);
    let link_rows = match span {
        // A batch's seqs are (nearly) consecutive: one range of the key index instead of
        // a probe each. What else the range holds is stored links all the same.
        Some((&lo, &hi)) if hi.saturating_sub(lo) < width.saturating_mul(2) => tx.query(
            "SELECT seq, hash, prev_hash, at_ms FROM event_keys
             WHERE gate = $1 AND seq BETWEEN $2 AND $3",
            &[&gate.as_str(), &lo, &hi],
        )?,
        _ => tx.query(
            "SELECT k.seq, k.hash, k.prev_hash, k.at_ms
             FROM unnest($2::bigint[]) AS u (seq)
             JOIN event_keys k ON k.gate = $1 AND k.seq = u.seq",
            &[&gate.as_str(), &seqs],
        )?,
    };
    let links: HashMap<u64, Link> = link_rows
        .iter()
        .map(|r| {
            (
                uint(r.get(0)),
                Link {
                    hash: r.get(1),
                    prev_hash: r.get(2),
                    at: at_of_ms(r.get(3)),
                },
            )
        })
        .collect();
    let known_ids: HashMap<Uuid, u64> = if read_ids {
        let ids: Vec<Uuid> = entries.iter().map(|e| e.id).collect();
        tx.query(
            "SELECT k.entry_id, k.seq
             FROM unnest($2::uuid[]) AS u (id)
             JOIN event_keys k ON k.gate = $1 AND k.entry_id = u.id",
            &[&gate.as_str(), &ids],
        )?
        .iter()
        .map(|r| (r.get(0), uint(r.get(1))))
        .collect()
    } else {
        HashMap::new()
    };
    let txns: Vec<Uuid> = entries
        .iter()
        .filter_map(|e| ingest::transaction_of(&e.body))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut stored_txn_containers: HashMap<Uuid, BTreeSet<String>> = HashMap::new();
    for r in tx.query(
        "SELECT txn, container FROM txn_containers WHERE txn = ANY($1)",
        &[&txns],
    )? {
        stored_txn_containers
            .entry(r.get(0))
            .or_default()
            .insert(r.get(1));
    }
    let mut stored_txn_entries: HashMap<Uuid, Vec<(String, i64, i64)>> = HashMap::new();
    for r in tx.query(
        // `txn IS NOT NULL` lets every plan use the partial index on `txn`.
        "SELECT e.txn, e.gate, e.seq, e.at_ms
         FROM unnest($1::uuid[]) AS u (txn)
         JOIN events e ON e.txn = u.txn
         WHERE e.txn IS NOT NULL",
        &[&txns],
    )? {
        stored_txn_entries
            .entry(r.get(0))
            .or_default()
            .push((r.get(1), r.get(2), r.get(3)));
    }
    // The batch's gate transactions that a decision or officer action may attach a case
    // to, with their stored cases.
    let case_txns: Vec<Uuid> = entries
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Decision { decision } if decision.is_seal_exception() => {
                Some(decision.transaction_id)
            }
            EventBody::OfficerAction { action } => action.transaction_id,
            _ => None,
        })
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let seal_exceptions: HashSet<Uuid> = entries
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Decision { decision } if decision.is_seal_exception() => {
                Some(decision.transaction_id)
            }
            _ => None,
        })
        .collect();
    let case_buf = CaseBuffer::new(tx, gate, &case_txns, &seal_exceptions)?;
    let (tally, mut changed, known) = {
        let mut target = Target {
            tx,
            gate,
            now,
            state: &mut state,
            cases: Vec::new(),
            links,
            read_seqs: seqs.iter().map(|s| uint(*s)).collect(),
            read_txns: txns.iter().copied().collect(),
            ids: known_ids,
            txn_containers: HashMap::new(),
            stored_txn_containers,
            stored_txn_entries,
            txn_lanes: HashMap::new(),
            values: prepared.values,
            now_json: serde_json::to_string(&now)
                .map_err(|e| StoreError::Backend(e.to_string()))?,
            rows: Rows::default(),
            case_buf,
        };
        let tally = ingest::ingest_checked(&mut target, entries, &prepared.hashes)?;
        target.flush(&tally.decisions)?;
        (tally, target.cases, target.links)
    };
    changed.extend(cases::gap_check(
        &mut CaseTx(tx),
        gate,
        &mut state,
        &known,
        now,
        gap_alert_after,
    )?);
    row.ingested(state, entries, &prepared.hashes);
    save_gate(tx, &row)?;
    Ok(IngestOutcome::new(&row, tally, changed))
}

pub(super) fn record_heartbeat(
    tx: &mut Tx<'_>,
    health: &GateHealth,
    gap_alert_after: SignedDuration,
) -> Result<Vec<Case>, StoreError> {
    let mut row = lock_gate(tx, &health.heartbeat.agent)?;
    row.health = Some(health.clone());
    let book = &mut CaseTx(tx);
    let at = health.received_at;
    let cases = cases::on_heartbeat(book, &row.gate, &mut row.state, at, gap_alert_after)?;
    save_gate(tx, &row)?;
    Ok(cases)
}

/// An `at_ms` column (agent time, Unix milliseconds) as a timestamp. The last
/// millisecond of the calendar (an agent's `Timestamp::MAX`, kept as evidence) is beyond
/// what jiff builds from milliseconds: the ends stand for themselves.
fn at_of_ms(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}
