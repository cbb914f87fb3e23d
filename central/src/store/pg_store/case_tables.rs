//! Cases: storing them, the case book the ingest rules write through, queries.

use jiff::Timestamp;
use postgres::Transaction;
use postgres::types::ToSql;
use protocol::schema::GateId;
use uuid::Uuid;

use super::{bump, from_json, int, next_id, to_json, write_audit};
use crate::cases::{self, CaseBook};
use crate::model::{Alert, AlertKind, Case, CaseQuery, CaseState, Page};
use crate::store::StoreError;

/// A stored case; `for_update` locks its row until the transaction ends.
pub(super) fn load_case(
    tx: &mut Transaction<'_>,
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

/// Saves a case and keeps the per-state counters in step.
pub(super) fn save_case(
    tx: &mut Transaction<'_>,
    case: &Case,
    old: Option<CaseState>,
) -> Result<(), StoreError> {
    let reasons: Vec<&str> = case.reasons().iter().map(|r| r.code()).collect();
    tx.execute(
        "INSERT INTO cases (id, state, gate, lane, reasons, opened_at_ms, value)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, gate = EXCLUDED.gate,
             lane = EXCLUDED.lane, reasons = EXCLUDED.reasons,
             opened_at_ms = EXCLUDED.opened_at_ms, value = EXCLUDED.value",
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
    if old != Some(case.state) {
        if let Some(o) = old {
            bump(tx, "cases", o.as_str(), -1)?;
        }
        bump(tx, "cases", case.state.as_str(), 1)?;
    }
    Ok(())
}

/// The case tables inside one transaction, as the [`CaseBook`] the case rules write
/// through.
pub(super) struct CaseTx<'a, 'b>(pub(super) &'a mut Transaction<'b>);

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

    fn audit(
        &mut self,
        actor: &str,
        action: &str,
        detail: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        write_audit(self.0, actor, action, detail, at)
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

    fn new_alert_id(&mut self) -> Result<u64, StoreError> {
        next_id(self.0, "alert_id")
    }

    fn save_alert(&mut self, alert: &Alert) -> Result<(), StoreError> {
        self.0.execute(
            "INSERT INTO alerts (id, gate, seq, kind, value) VALUES ($1, $2, $3, $4, $5)",
            &[
                &int(alert.id)?,
                &alert.gate.as_str(),
                &int(alert.seq)?,
                &alert.kind.as_str(),
                &to_json(alert)?,
            ],
        )?;
        bump(self.0, "alerts", "total", 1)
    }
}

/// Stores an alert once per (gate, seq, kind) and opens its case ([`cases::on_alert`]).
/// Returns the case when the alert is new.
pub(super) fn store_alert(
    tx: &mut Transaction<'_>,
    gate: &GateId,
    seq: u64,
    kind: AlertKind,
    detail: &str,
    at: Timestamp,
) -> Result<Option<Case>, StoreError> {
    cases::on_alert(&mut CaseTx(tx), gate, seq, kind, detail, at)
}

pub(super) fn cases(tx: &mut Transaction<'_>, q: &CaseQuery) -> Result<Page<Case>, StoreError> {
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
