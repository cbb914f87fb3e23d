//! Writing records copied from another backend ([`crate::store::copy`]) as they are.
//! Every statement leaves a row that is already there alone (or sets it to the source's
//! value), so importing the same records again changes nothing: an interrupted copy is
//! resumed by running it again.

use std::collections::{BTreeMap, BTreeSet};

use super::tx::Tx;
use protocol::schema::{EventBody, JournalEntry};
use uuid::Uuid;

use super::registry_tables::{consignment_index_keys, operator_of};
use super::{PgStore, StoreError, case_tables, int, to_json};
use crate::ingest;
use crate::store::copy::Record;

impl PgStore {
    /// Writes `records` in one transaction (events' monthly partitions are created first).
    ///
    /// # Errors
    /// A record does not fit the schema, or the database fails.
    pub fn import(&self, records: &[Record]) -> Result<(), StoreError> {
        let mut entries = Vec::new();
        for r in records {
            if let Record::Event { value, .. } = r
                && !refused(value)
            {
                entries.push(entry_of(value)?);
            }
        }
        self.ensure_partitions(&entries)?;
        self.write(|tx| {
            let mut events = Vec::new();
            for r in records {
                match r {
                    Record::Event { gate, value } => events.push((gate.as_str(), value)),
                    other => import_one(tx, other)?,
                }
            }
            import_events(tx, &events)
        })
    }

    /// Rows per record family, as [`Record::kind`] names them.
    ///
    /// # Errors
    /// The database fails.
    pub fn row_counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        const TABLES: &[(&str, &str)] = &[
            ("hourly figures", "hourly"),
            ("agent tokens", "agent_tokens"),
            ("gates", "gates"),
            ("events", "event_keys"),
            ("alerts", "alerts"),
            ("cases", "cases"),
            ("case links", "case_by_txn"),
            ("registry changes", "changes"),
            ("operators", "operators"),
            ("MRAs", "mras"),
            ("consignments", "consignments"),
            ("audit entries", "audit"),
            ("users", "users"),
            ("sessions", "sessions"),
            ("companies", "companies"),
            ("documents", "documents"),
            (
                "programme figures",
                "(SELECT DISTINCT hour, grp, figure FROM programme_hourly) AS p",
            ),
            ("programme names", "programme_names"),
            ("programme pending halves", "programme_pending"),
        ];
        self.read(|tx| {
            let mut out = BTreeMap::new();
            for (kind, table) in TABLES {
                let n: i64 = tx
                    .query_one(&format!("SELECT count(*) FROM {table}"), &[])?
                    .get(0);
                out.insert((*kind).to_owned(), super::uint(n));
            }
            Ok(out)
        })
    }
}

fn refused(value: &serde_json::Value) -> bool {
    value["refused"].as_bool().unwrap_or(false)
}

fn entry_of(value: &serde_json::Value) -> Result<JournalEntry, StoreError> {
    serde_json::from_value(value["entry"].clone()).map_err(|e| StoreError::Corrupt {
        table: "events",
        key: value["entry"]["seq"].to_string(),
        why: e.to_string(),
    })
}

fn import_one(tx: &mut Tx<'_>, r: &Record) -> Result<(), StoreError> {
    match r {
        // Case, alert and audit ids come from sequences (migration 3): the sequence is
        // set so the next id follows the last one copied.
        Record::Meta { name, n }
            if matches!(name.as_str(), "case_id" | "alert_id" | "audit_id") =>
        {
            tx.execute(
                "SELECT setval($1::text::regclass, GREATEST($2::bigint, 1), $2::bigint > 0)",
                &[&format!("{name}_seq"), &int(*n)?],
            )?;
        }
        Record::Meta { name, n } => {
            tx.execute(
                "INSERT INTO meta (name, n) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET n = EXCLUDED.n",
                &[name, &int(*n)?],
            )?;
        }
        // Set, not added: the copied value becomes the whole counter (shard 0).
        Record::Counter { scope, name, n } => {
            tx.execute(
                "DELETE FROM counters WHERE scope = $1 AND name = $2 AND shard <> 0",
                &[scope, name],
            )?;
            tx.execute(
                "INSERT INTO counters (scope, name, shard, n) VALUES ($1, $2, 0, $3)
                 ON CONFLICT (scope, name, shard) DO UPDATE SET n = EXCLUDED.n",
                &[scope, name, &int(*n)?],
            )?;
        }
        Record::Hourly {
            gate,
            hour,
            figure,
            n,
        } => {
            tx.execute(
                "INSERT INTO hourly (gate, hour, figure, n) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (gate, hour, figure) DO UPDATE SET n = EXCLUDED.n",
                &[gate, hour, figure, &int(*n)?],
            )?;
        }
        // Set, not added, like the counters: the copied count is the whole figure.
        Record::Programme {
            start,
            group,
            figure,
            n,
        } => {
            tx.execute(
                "DELETE FROM programme_hourly
                 WHERE hour = $1 AND grp = $2 AND figure = $3 AND shard <> 0",
                &[start, group, figure],
            )?;
            tx.execute(
                "INSERT INTO programme_hourly (hour, grp, figure, shard, n)
                 VALUES ($1, $2, $3, 0, $4)
                 ON CONFLICT (hour, grp, figure, shard) DO UPDATE SET n = EXCLUDED.n",
                &[start, group, figure, &int(*n)?],
            )?;
        }
        Record::ProgrammeName { operator, name } => {
            tx.execute(
                "INSERT INTO programme_names (operator, name) VALUES ($1, $2)
                 ON CONFLICT (operator) DO UPDATE SET name = EXCLUDED.name",
                &[operator, name],
            )?;
        }
        Record::ProgrammePending { gate, txn, halves } => {
            tx.execute(
                "INSERT INTO programme_pending (gate, txn, value) VALUES ($1, $2, $3)
                 ON CONFLICT (gate, txn) DO UPDATE SET value = EXCLUDED.value",
                &[gate, txn, &to_json(halves)?],
            )?;
        }
        Record::AgentToken { token, agent } => {
            tx.execute(
                "INSERT INTO agent_tokens (token, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[token, &to_json(agent)?],
            )?;
        }
        Record::Gate { gate, value } => {
            tx.execute(
                "INSERT INTO gates (gate, value) VALUES ($1, $2)
                 ON CONFLICT (gate) DO UPDATE SET value = EXCLUDED.value",
                &[gate, value],
            )?;
        }
        Record::Event { .. } => {}
        Record::Alert(a) => case_tables::insert_alert(tx, a, "ON CONFLICT DO NOTHING")?,
        Record::Case(c) => case_tables::insert_case(tx, c, "ON CONFLICT DO NOTHING")?,
        Record::CaseLink { gate, txn, case } => {
            tx.execute(
                "INSERT INTO case_by_txn (gate, txn, case_id) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[gate, txn, &int(*case)?],
            )?;
        }
        Record::Change(c) => {
            tx.execute(
                "INSERT INTO changes (seq, operator, value) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&int(c.seq)?, &operator_of(&c.change), &to_json(c)?],
            )?;
        }
        Record::Operator { seq, record } => {
            tx.execute(
                "INSERT INTO operators (id, seq, value) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&record.operator.to_string(), &int(*seq)?, &to_json(record)?],
            )?;
        }
        Record::Mra { seq, record } => {
            tx.execute(
                "INSERT INTO mras (recognising, partner, seq, value) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
                &[
                    &record.recognising.code(),
                    &record.partner.code(),
                    &int(*seq)?,
                    &to_json(record)?,
                ],
            )?;
        }
        Record::Consignment { seq, record } => {
            tx.execute(
                "INSERT INTO consignments (id, seq, value) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&record.id, &int(*seq)?, &to_json(record)?],
            )?;
            tx.execute(
                "INSERT INTO consignment_index (key, id)
                 SELECT k, $2 FROM unnest($1::text[]) AS k ON CONFLICT DO NOTHING",
                &[&consignment_index_keys(record), &record.id],
            )?;
        }
        Record::Audit(a) => {
            tx.execute(
                "INSERT INTO audit (id, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&int(a.id)?, &to_json(a)?],
            )?;
        }
        Record::User(u) => {
            tx.execute(
                "INSERT INTO users (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&u.name, &to_json(u)?],
            )?;
        }
        Record::Session { token, session } => {
            tx.execute(
                "INSERT INTO sessions (token, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[token, &to_json(session)?],
            )?;
        }
        Record::Company(c) => {
            tx.execute(
                "INSERT INTO companies (operator, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&c.operator.to_string(), &to_json(c)?],
            )?;
        }
        Record::Document { sha256, body } => {
            tx.execute(
                "INSERT INTO documents (sha256, body) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[sha256, body],
            )?;
        }
    }
    Ok(())
}

/// Stored events with their keys, transaction and container index rows, as ingest
/// writes them (one multi-row insert per table).
fn import_events(tx: &mut Tx<'_>, events: &[(&str, &serde_json::Value)]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut k_gate = Vec::new();
    let mut k_seq = Vec::new();
    let mut k_id = Vec::new();
    let mut k_hash = Vec::new();
    let mut k_prev = Vec::new();
    let mut k_at = Vec::new();
    let (mut e_gate, mut e_seq, mut e_at) = (Vec::new(), Vec::new(), Vec::new());
    let (mut e_lane, mut e_decision, mut e_txn, mut e_value) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut r_gate, mut r_seq, mut r_at, mut r_value) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut txn_rows: Vec<Uuid> = Vec::new();
    let mut txn_containers: BTreeSet<(Uuid, String)> = BTreeSet::new();
    for (gate, value) in events {
        let e = entry_of(value)?;
        let seq = int(e.seq)?;
        let at = e.at.as_millisecond();
        k_gate.push((*gate).to_owned());
        k_seq.push(seq);
        k_id.push(e.id);
        k_hash.push(e.hash.clone());
        k_prev.push(e.prev_hash.clone());
        k_at.push(at);
        if refused(value) {
            r_gate.push((*gate).to_owned());
            r_seq.push(seq);
            r_at.push(at);
            r_value.push((*value).clone());
            continue;
        }
        let txn = ingest::transaction_of(&e.body);
        e_gate.push((*gate).to_owned());
        e_seq.push(seq);
        e_at.push(at);
        e_lane.push(ingest::lane_of(&e.body).map(str::to_owned));
        e_decision.push(ingest::decision_of(&e.body).map(|d| d.as_str().to_owned()));
        e_txn.push(txn);
        // As text, as ingest stores it (migration 11).
        e_value.push(value.to_string());
        if let Some(t) = txn {
            txn_rows.push(t);
            if let EventBody::Transaction { transaction } = &e.body {
                for c in transaction.containers() {
                    txn_containers.insert((t, c.to_string()));
                }
            }
        }
    }
    tx.execute(
        "INSERT INTO event_keys (gate, seq, entry_id, hash, prev_hash, at_ms)
         SELECT * FROM unnest($1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::text[],
                              $6::bigint[])
         ON CONFLICT DO NOTHING",
        &[&k_gate, &k_seq, &k_id, &k_hash, &k_prev, &k_at],
    )?;
    if !e_seq.is_empty() {
        tx.execute(
            "INSERT INTO events (gate, seq, at_ms, lane, decision, txn, record)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[],
                                  $5::text[], $6::uuid[], $7::text[])
             ON CONFLICT DO NOTHING",
            &[
                &e_gate,
                &e_seq,
                &e_at,
                &e_lane,
                &e_decision,
                &e_txn,
                &e_value,
            ],
        )?;
    }
    if !r_seq.is_empty() {
        tx.execute(
            "INSERT INTO refused_events (gate, seq, at_ms, value)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::json[])
             ON CONFLICT DO NOTHING",
            &[&r_gate, &r_seq, &r_at, &r_value],
        )?;
    }
    if !txn_rows.is_empty() {
        if !txn_containers.is_empty() {
            let (tc, cc): (Vec<Uuid>, Vec<String>) = txn_containers.into_iter().unzip();
            tx.execute(
                "INSERT INTO txn_containers (txn, container)
                 SELECT * FROM unnest($1::uuid[], $2::text[]) ON CONFLICT DO NOTHING",
                &[&tc, &cc],
            )?;
        }
        // Every entry of a transaction named here (this chunk's, and earlier ones when
        // the transaction itself arrives now) is indexed under its containers.
        let named: Vec<Uuid> = txn_rows
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        tx.execute(
            "INSERT INTO event_containers (container, at_ms, gate, seq)
             SELECT tc.container, e.at_ms, e.gate, e.seq
               FROM events e JOIN txn_containers tc ON tc.txn = e.txn
              WHERE e.txn = ANY($1)
             ON CONFLICT DO NOTHING",
            &[&named],
        )?;
    }
    Ok(())
}
