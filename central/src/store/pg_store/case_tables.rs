//! Cases: storing them, the case book the ingest rules write through, queries.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::tx::Tx;
use jiff::Timestamp;
use postgres::types::ToSql;
use protocol::schema::GateId;
use uuid::Uuid;

use super::{SHARD, bump, from_json, int, next_id, to_json, uint, write_audit};
use crate::cases::{self, CaseBook};
use crate::model::{Alert, AlertKind, AuditEntry, Case, CaseQuery, CaseState, Page};
use crate::store::{AuditNote, StoreError};

/// A stored case; `for_update` locks its row until the transaction ends.
pub(super) fn load_case(
    tx: &mut Tx<'_>,
    id: u64,
    for_update: bool,
) -> Result<Option<Case>, StoreError> {
    let sql = if for_update {
        "SELECT value FROM cases WHERE id = $1 FOR UPDATE"
    } else {
        "SELECT value FROM cases WHERE id = $1"
    };
    tx.query_opt(sql, &[&int(id)?])?
        .map(|r| from_json("cases", id, r.get(0)))
        .transpose()
}

/// A stored case, read without a lock.
pub(super) fn case(tx: &mut Tx<'_>, id: u64) -> Result<Option<Case>, StoreError> {
    load_case(tx, id, false)
}

/// Saves a case and keeps the per-state counters in step.
pub(super) fn save_case(
    tx: &mut Tx<'_>,
    case: &Case,
    old: Option<CaseState>,
) -> Result<(), StoreError> {
    insert_case(
        tx,
        case,
        "ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, gate = EXCLUDED.gate,
             lane = EXCLUDED.lane, reasons = EXCLUDED.reasons,
             opened_at_ms = EXCLUDED.opened_at_ms, value = EXCLUDED.value",
    )?;
    if old != Some(case.state) {
        if let Some(o) = old {
            bump(tx, "cases", o.as_str(), -1)?;
        }
        bump(tx, "cases", case.state.as_str(), 1)?;
    }
    Ok(())
}

/// Inserts a case's row; `on_conflict` says what a row of its id already stored does.
pub(super) fn insert_case(
    tx: &mut Tx<'_>,
    case: &Case,
    on_conflict: &str,
) -> Result<(), StoreError> {
    let reasons: Vec<&str> = case.reasons().iter().map(|r| r.code()).collect();
    tx.execute(
        &format!(
            "INSERT INTO cases (id, state, gate, lane, reasons, opened_at_ms, value)
             VALUES ($1, $2, $3, $4, $5, $6, $7) {on_conflict}"
        ),
        &[
            &int(case.id)?,
            &case.state.as_str(),
            &case.gate.as_str(),
            &case.lane.as_ref().map(|l| l.as_str()),
            &reasons,
            &case.opened_at.as_millisecond(),
            &to_json(case)?,
        ],
    )?;
    Ok(())
}

/// Inserts an alert's row; `on_conflict` as for [`insert_case`] (empty: a stored one is
/// an error).
pub(super) fn insert_alert(
    tx: &mut Tx<'_>,
    alert: &Alert,
    on_conflict: &str,
) -> Result<(), StoreError> {
    tx.execute(
        &format!(
            "INSERT INTO alerts (id, gate, seq, kind, value) VALUES ($1, $2, $3, $4, $5)
             {on_conflict}"
        ),
        &[
            &int(alert.id)?,
            &alert.gate.as_str(),
            &int(alert.seq)?,
            &alert.kind.as_str(),
            &to_json(alert)?,
        ],
    )?;
    Ok(())
}

/// The case tables inside one transaction, as the [`CaseBook`] the case rules write
/// through.
pub(super) struct CaseTx<'a, 'b>(pub(super) &'a mut Tx<'b>);

impl CaseBook for CaseTx<'_, '_> {
    type Error = StoreError;

    fn case_id_for_transaction(
        &mut self,
        gate: &GateId,
        txn: Uuid,
    ) -> Result<Option<u64>, StoreError> {
        Ok(self
            .0
            .query_opt(
                "SELECT case_id FROM case_by_txn WHERE gate = $1 AND txn = $2",
                &[&gate.as_str(), &txn],
            )?
            .map(|r| super::uint(r.get(0))))
    }

    fn load_case(&mut self, id: u64) -> Result<Option<Case>, StoreError> {
        load_case(self.0, id, true)
    }

    fn new_case_id(&mut self) -> Result<u64, StoreError> {
        next_id(self.0, "case_id")
    }

    fn save_case(&mut self, case: &Case, old: Option<CaseState>) -> Result<(), StoreError> {
        save_case(self.0, case, old)
    }

    fn link_transaction(&mut self, gate: &GateId, txn: Uuid, case: u64) -> Result<(), StoreError> {
        self.0.execute(
            "INSERT INTO case_by_txn (gate, txn, case_id) VALUES ($1, $2, $3)
             ON CONFLICT (gate, txn) DO UPDATE SET case_id = EXCLUDED.case_id",
            &[&gate.as_str(), &txn, &int(case)?],
        )?;
        Ok(())
    }

    fn audit(&mut self, note: AuditNote<'_>) -> Result<(), StoreError> {
        write_audit(self.0, note)
    }

    fn alert_exists(
        &mut self,
        gate: &GateId,
        seq: u64,
        kind: AlertKind,
    ) -> Result<bool, StoreError> {
        Ok(self
            .0
            .query_opt(
                "SELECT 1 FROM alerts WHERE gate = $1 AND seq = $2 AND kind = $3",
                &[&gate.as_str(), &int(seq)?, &kind.as_str()],
            )?
            .is_some())
    }

    fn entry_stored(&mut self, gate: &GateId, seq: u64) -> Result<bool, StoreError> {
        Ok(self
            .0
            .query_opt(
                "SELECT 1 FROM event_keys WHERE gate = $1 AND seq = $2",
                &[&gate.as_str(), &int(seq)?],
            )?
            .is_some())
    }

    fn new_alert_id(&mut self) -> Result<u64, StoreError> {
        next_id(self.0, "alert_id")
    }

    fn save_alert(&mut self, alert: &Alert) -> Result<(), StoreError> {
        insert_alert(self.0, alert, "")?;
        bump(self.0, "alerts", "total", 1)
    }
}

/// The case writes of one ingest batch, kept in memory while its rules run and written
/// at its end in one statement per table ([`CaseBuffer::write`]). Through the statements
/// a seal exception makes on its own (look up the transaction's case, insert the case,
/// count it, link it, audit it: each a round trip, and each prepared first), opening 40
/// cases in a batch of 500 entries took over 500 round trips.
#[derive(Debug, Default)]
pub(super) struct CaseBuffer {
    /// The batch's gate, and which of its gate transactions have a stored case (read
    /// before the rules ran; a transaction not listed is looked up when asked).
    gate: String,
    known: HashMap<Uuid, Option<u64>>,
    /// Cases saved by the batch, by id: the last save of each.
    cases: BTreeMap<u64, Case>,
    /// (gate, transaction) → case, linked by the batch.
    links: BTreeMap<(String, Uuid), u64>,
    /// Alerts stored by the batch.
    alerts: Vec<Alert>,
    /// Audit entries, in order; their ids are taken when written.
    audits: Vec<AuditEntry>,
    /// Counter changes: (scope, name) → increment.
    pub(super) counters: BTreeMap<(String, String), i64>,
    /// Case ids taken from the sequence in one query for the cases the batch is expected
    /// to open, smallest last; one not used is a gap in the numbering, as a rolled-back
    /// transaction leaves.
    case_ids: Vec<u64>,
}

impl CaseBuffer {
    /// A buffer for `gate`'s batch, with the stored cases of the gate transactions
    /// `txns` read in one query.
    pub(super) fn new(
        tx: &mut Tx<'_>,
        gate: &GateId,
        txns: &[Uuid],
        seal_exceptions: &HashSet<Uuid>,
    ) -> Result<Self, StoreError> {
        let mut known: HashMap<Uuid, Option<u64>> = txns.iter().map(|t| (*t, None)).collect();
        if !txns.is_empty() {
            for r in tx.query(
                "SELECT c.txn, c.case_id
                 FROM unnest($2::uuid[]) AS u (txn)
                 JOIN case_by_txn c ON c.gate = $1 AND c.txn = u.txn",
                &[&gate.as_str(), &txns],
            )? {
                known.insert(r.get(0), Some(uint(r.get(1))));
            }
        }
        // A seal exception on a transaction without a case opens one: take their ids in
        // one query instead of one `nextval` round trip each.
        let opening = seal_exceptions
            .iter()
            .filter(|t| matches!(known.get(t), Some(None) | None))
            .count();
        let mut case_ids: Vec<u64> = if opening == 0 {
            Vec::new()
        } else {
            tx.query(
                "SELECT nextval('case_id_seq') FROM generate_series(1, $1::bigint)",
                &[&i64::try_from(opening).unwrap_or(i64::MAX)],
            )?
            .iter()
            .map(|r| uint(r.get(0)))
            .collect()
        };
        case_ids.sort_unstable_by(|a, b| b.cmp(a));
        Ok(Self {
            gate: gate.to_string(),
            known,
            case_ids,
            ..Self::default()
        })
    }

    fn count(&mut self, scope: &str, name: &str, by: i64) {
        *self
            .counters
            .entry((scope.to_owned(), name.to_owned()))
            .or_default() += by;
    }

    /// Writes the cases, links, alerts and audit entries (the counters are the caller's
    /// to write, with its own).
    pub(super) fn write(&mut self, tx: &mut Tx<'_>) -> Result<(), StoreError> {
        if !self.cases.is_empty() {
            let mut id = Vec::with_capacity(self.cases.len());
            let (mut state, mut gate, mut lane) = (Vec::new(), Vec::new(), Vec::new());
            let (mut reasons, mut opened, mut value) = (Vec::new(), Vec::new(), Vec::new());
            for c in self.cases.values() {
                id.push(int(c.id)?);
                state.push(c.state.as_str());
                gate.push(c.gate.as_str());
                lane.push(c.lane.as_ref().map(|l| l.as_str()));
                // Reason codes are SCREAMING_SNAKE identifiers: no commas.
                let codes: Vec<&str> = c.reasons().iter().map(|r| r.code()).collect();
                reasons.push(codes.join(","));
                opened.push(c.opened_at.as_millisecond());
                value.push(
                    serde_json::to_string(c).map_err(|e| StoreError::Backend(e.to_string()))?,
                );
            }
            tx.execute(
                "INSERT INTO cases (id, state, gate, lane, reasons, opened_at_ms, value)
                 SELECT i, s, g, l, string_to_array(r, ','), o, v::json
                 FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                             $6::bigint[], $7::text[]) AS u (i, s, g, l, r, o, v)
                 ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, gate = EXCLUDED.gate,
                     lane = EXCLUDED.lane, reasons = EXCLUDED.reasons,
                     opened_at_ms = EXCLUDED.opened_at_ms, value = EXCLUDED.value",
                &[&id, &state, &gate, &lane, &reasons, &opened, &value],
            )?;
            self.cases.clear();
        }
        if !self.links.is_empty() {
            let mut gate = Vec::with_capacity(self.links.len());
            let (mut txn, mut case) = (Vec::new(), Vec::new());
            for ((g, t), c) in &self.links {
                gate.push(g.as_str());
                txn.push(*t);
                case.push(int(*c)?);
            }
            tx.execute(
                "INSERT INTO case_by_txn (gate, txn, case_id)
                 SELECT * FROM unnest($1::text[], $2::uuid[], $3::bigint[])
                 ON CONFLICT (gate, txn) DO UPDATE SET case_id = EXCLUDED.case_id",
                &[&gate, &txn, &case],
            )?;
            self.links.clear();
        }
        if !self.alerts.is_empty() {
            let mut id = Vec::with_capacity(self.alerts.len());
            let (mut gate, mut seq, mut kind, mut value) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for a in &self.alerts {
                id.push(int(a.id)?);
                gate.push(a.gate.as_str());
                seq.push(int(a.seq)?);
                kind.push(a.kind.as_str());
                value.push(
                    serde_json::to_string(a).map_err(|e| StoreError::Backend(e.to_string()))?,
                );
            }
            tx.execute(
                "INSERT INTO alerts (id, gate, seq, kind, value)
                 SELECT i, g, s, k, v::json
                 FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[])
                     AS u (i, g, s, k, v)",
                &[&id, &gate, &seq, &kind, &value],
            )?;
            self.alerts.clear();
        }
        if !self.audits.is_empty() {
            let n = i64::try_from(self.audits.len()).unwrap_or(i64::MAX);
            let mut ids: Vec<i64> = tx
                .query(
                    "SELECT nextval('audit_id_seq') FROM generate_series(1, $1::bigint)",
                    &[&n],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
            // Ids in the order the entries were made.
            ids.sort_unstable();
            if ids.len() != self.audits.len() {
                return Err(StoreError::Backend(format!(
                    "asked for {} audit ids, got {}",
                    self.audits.len(),
                    ids.len()
                )));
            }
            let mut value = Vec::with_capacity(ids.len());
            for (id, mut e) in ids.iter().zip(std::mem::take(&mut self.audits)) {
                e.id = uint(*id);
                value.push(
                    serde_json::to_string(&e).map_err(|e| StoreError::Backend(e.to_string()))?,
                );
            }
            tx.execute(
                "INSERT INTO audit (id, value)
                 SELECT i, v::json FROM unnest($1::bigint[], $2::text[]) AS u (i, v)",
                &[&ids, &value],
            )?;
        }
        Ok(())
    }
}

/// Writes `counters` ((scope, name) → increment) into this connection's shards in one
/// statement.
pub(super) fn bump_all(
    tx: &mut Tx<'_>,
    counters: BTreeMap<(String, String), i64>,
) -> Result<(), StoreError> {
    let counters: Vec<_> = counters.into_iter().filter(|(_, n)| *n != 0).collect();
    if counters.is_empty() {
        return Ok(());
    }
    let ((scope, name), n): ((Vec<String>, Vec<String>), Vec<i64>) = counters.into_iter().unzip();
    tx.execute(
        &format!(
            "INSERT INTO counters (scope, name, shard, n)
             SELECT s, c, {SHARD}, n FROM unnest($1::text[], $2::text[], $3::bigint[])
                 AS u (s, c, n)
             ON CONFLICT (scope, name, shard) DO UPDATE SET n = counters.n + EXCLUDED.n"
        ),
        &[&scope, &name, &n],
    )?;
    Ok(())
}

/// The case book of one ingest batch: reads go to the batch's own writes first, then to
/// the database; writes are kept in the [`CaseBuffer`] until the batch ends.
pub(super) struct BufferedCases<'a, 'b> {
    pub(super) tx: &'a mut Tx<'b>,
    pub(super) buf: &'a mut CaseBuffer,
}

impl CaseBook for BufferedCases<'_, '_> {
    type Error = StoreError;

    fn case_id_for_transaction(
        &mut self,
        gate: &GateId,
        txn: Uuid,
    ) -> Result<Option<u64>, StoreError> {
        if let Some(id) = self.buf.links.get(&(gate.to_string(), txn)) {
            return Ok(Some(*id));
        }
        if gate.as_str() == self.buf.gate
            && let Some(known) = self.buf.known.get(&txn)
        {
            return Ok(*known);
        }
        CaseTx(self.tx).case_id_for_transaction(gate, txn)
    }

    fn load_case(&mut self, id: u64) -> Result<Option<Case>, StoreError> {
        if let Some(c) = self.buf.cases.get(&id) {
            return Ok(Some(c.clone()));
        }
        load_case(self.tx, id, true)
    }

    fn new_case_id(&mut self) -> Result<u64, StoreError> {
        match self.buf.case_ids.pop() {
            Some(id) => Ok(id),
            None => next_id(self.tx, "case_id"),
        }
    }

    fn save_case(&mut self, case: &Case, old: Option<CaseState>) -> Result<(), StoreError> {
        if old != Some(case.state) {
            if let Some(o) = old {
                self.buf.count("cases", o.as_str(), -1);
            }
            self.buf.count("cases", case.state.as_str(), 1);
        }
        self.buf.cases.insert(case.id, case.clone());
        Ok(())
    }

    fn link_transaction(&mut self, gate: &GateId, txn: Uuid, case: u64) -> Result<(), StoreError> {
        self.buf.links.insert((gate.to_string(), txn), case);
        Ok(())
    }

    fn audit(&mut self, note: AuditNote<'_>) -> Result<(), StoreError> {
        self.buf.audits.push(note.entry(0));
        Ok(())
    }

    fn alert_exists(
        &mut self,
        gate: &GateId,
        seq: u64,
        kind: AlertKind,
    ) -> Result<bool, StoreError> {
        if self
            .buf
            .alerts
            .iter()
            .any(|a| a.gate == *gate && a.seq == seq && a.kind == kind)
        {
            return Ok(true);
        }
        CaseTx(self.tx).alert_exists(gate, seq, kind)
    }

    fn entry_stored(&mut self, gate: &GateId, seq: u64) -> Result<bool, StoreError> {
        CaseTx(self.tx).entry_stored(gate, seq)
    }

    fn new_alert_id(&mut self) -> Result<u64, StoreError> {
        next_id(self.tx, "alert_id")
    }

    fn save_alert(&mut self, alert: &Alert) -> Result<(), StoreError> {
        self.buf.alerts.push(alert.clone());
        self.buf.count("alerts", "total", 1);
        Ok(())
    }
}

/// Stores an alert once per (gate, seq, kind) and opens its case ([`cases::on_alert`]),
/// through a batch's [`BufferedCases`]. Returns the case when the alert is new.
pub(super) fn store_alert_buffered(
    tx: &mut Tx<'_>,
    buf: &mut CaseBuffer,
    gate: &GateId,
    seq: u64,
    kind: AlertKind,
    detail: &str,
    at: Timestamp,
) -> Result<Option<Case>, StoreError> {
    cases::on_alert(&mut BufferedCases { tx, buf }, gate, seq, kind, detail, at)
}

pub(super) fn cases(tx: &mut Tx<'_>, q: &CaseQuery) -> Result<Page<Case>, StoreError> {
    let before = q
        .cursor
        .as_deref()
        .and_then(|c| c.parse::<u64>().ok())
        .map_or(i64::MAX, |c| i64::try_from(c).unwrap_or(i64::MAX));
    let limit = q.limit.clamp(1, 1_000);
    let mut sql = String::from("SELECT id, value FROM cases WHERE id < $1");
    let state = q.state.map(|s| s.as_str());
    let gate = q.gate.as_ref().map(|g| g.as_str());
    let lane = q.lane.as_ref().map(|l| l.as_str());
    let reason = q.reason.map(|r| r.code());
    let from = q.from.map(|t| t.as_millisecond());
    let to = q.to.map(|t| t.as_millisecond());
    let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&before];
    // Each filter that is set adds its clause, `?` standing for its parameter.
    let filters: [(Option<&(dyn ToSql + Sync)>, &str); 6] = [
        (state.as_ref().map(|v| v as _), "state = ?"),
        (gate.as_ref().map(|v| v as _), "gate = ?"),
        (lane.as_ref().map(|v| v as _), "lane = ?"),
        (reason.as_ref().map(|v| v as _), "? = ANY(reasons)"),
        (from.as_ref().map(|v| v as _), "opened_at_ms >= ?"),
        (to.as_ref().map(|v| v as _), "opened_at_ms < ?"),
    ];
    for (value, clause) in filters {
        if let Some(v) = value {
            params.push(v);
            sql.push_str(" AND ");
            sql.push_str(&clause.replace('?', &format!("${}", params.len())));
        }
    }
    params.push(&fetch);
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", params.len()));
    let rows = tx.query(&sql, &params)?;
    let more = rows.len() > limit;
    let mut items = Vec::with_capacity(limit);
    for r in rows.into_iter().take(limit) {
        items.push(from_json::<Case>("cases", r.get::<_, i64>(0), r.get(1))?);
    }
    let next_cursor = if more {
        items.last().map(|c| c.id.to_string())
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}
