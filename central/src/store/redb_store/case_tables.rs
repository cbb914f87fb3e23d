//! Cases: storing them, the case book the ingest rules write through, queries.

use jiff::Timestamp;
use protocol::schema::GateId;
use redb::{Database, ReadableDatabase, ReadableTable, WriteTransaction};
use uuid::Uuid;

use super::tables::{
    ALERT_KEYS, ALERTS, CASE_BY_GATE_TXN, CASE_BY_TXN, CASE_INDEX, CASES, EVENTS, MAX_SCAN, bump,
    next_id, read_record, uuid_key, write_audit,
};
use crate::cases::{self, CaseBook, CaseError};
use crate::model::{Alert, AlertKind, Case, CaseQuery, CaseState, Page};
use crate::store::{AuditNote, Stamp, StoreError, case_changed, decode, encode};

pub(super) fn load_case(tx: &WriteTransaction, id: u64) -> Result<Option<Case>, StoreError> {
    let t = tx.open_table(CASES)?;
    let v = t.get(id)?;
    v.map(|g| decode("cases_v1", id, g.value())).transpose()
}

/// Saves a case and keeps its state index and counters in step.
pub(super) fn save_case(
    tx: &WriteTransaction,
    case: &Case,
    old: Option<CaseState>,
) -> Result<(), StoreError> {
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

/// The case tables inside one write transaction, as the [`CaseBook`] the case rules
/// write through.
pub(super) struct CaseTx<'a>(pub(super) &'a WriteTransaction);

impl CaseBook for CaseTx<'_> {
    type Error = StoreError;

    fn case_id_for_transaction(
        &mut self,
        gate: &GateId,
        txn: Uuid,
    ) -> Result<Option<u64>, StoreError> {
        let k = uuid_key(&txn);
        if let Some(id) = self
            .0
            .open_table(CASE_BY_GATE_TXN)?
            .get((gate.as_str(), k))?
            .map(|g| g.value())
        {
            return Ok(Some(id));
        }
        // A case linked before the (gate, transaction) key: only if it is this gate's.
        let old = self.0.open_table(CASE_BY_TXN)?.get(k)?.map(|g| g.value());
        match old {
            Some(id) => Ok(self
                .load_case(id)?
                .filter(|c| &c.gate == gate)
                .map(|c| c.id)),
            None => Ok(None),
        }
    }

    fn load_case(&mut self, id: u64) -> Result<Option<Case>, StoreError> {
        load_case(self.0, id)
    }

    fn new_case_id(&mut self) -> Result<u64, StoreError> {
        next_id(self.0, "case_id")
    }

    fn save_case(&mut self, case: &Case, old: Option<CaseState>) -> Result<(), StoreError> {
        save_case(self.0, case, old)
    }

    fn link_transaction(&mut self, gate: &GateId, txn: Uuid, case: u64) -> Result<(), StoreError> {
        self.0
            .open_table(CASE_BY_GATE_TXN)?
            .insert((gate.as_str(), uuid_key(&txn)), case)?;
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
        let keys = self.0.open_table(ALERT_KEYS)?;
        Ok(keys.get((gate.as_str(), seq, kind.as_str()))?.is_some())
    }

    fn entry_stored(&mut self, gate: &GateId, seq: u64) -> Result<bool, StoreError> {
        Ok(self
            .0
            .open_table(EVENTS)?
            .get((gate.as_str(), seq))?
            .is_some())
    }

    fn new_alert_id(&mut self) -> Result<u64, StoreError> {
        next_id(self.0, "alert_id")
    }

    fn save_alert(&mut self, alert: &Alert) -> Result<(), StoreError> {
        self.0.open_table(ALERT_KEYS)?.insert(
            (alert.gate.as_str(), alert.seq, alert.kind.as_str()),
            alert.id,
        )?;
        self.0
            .open_table(ALERTS)?
            .insert(alert.id, encode(alert)?.as_slice())?;
        bump(self.0, "alerts", "total", 1)
    }
}

/// Stores an alert once per (gate, seq, kind) and opens its case ([`cases::on_alert`]).
/// Returns the case when the alert is new.
pub(super) fn store_alert(
    tx: &WriteTransaction,
    gate: &GateId,
    seq: u64,
    kind: AlertKind,
    detail: &str,
    at: Timestamp,
) -> Result<Option<Case>, StoreError> {
    cases::on_alert(&mut CaseTx(tx), gate, seq, kind, detail, at)
}

pub(super) fn cases(db: &Database, q: &CaseQuery) -> Result<Page<Case>, StoreError> {
    let key = q
        .state
        .map_or_else(|| "all".to_owned(), |s| format!("s:{}", s.as_str()));
    let before = q
        .cursor
        .as_deref()
        .and_then(|c| c.parse::<u64>().ok())
        .unwrap_or(u64::MAX);
    let limit = q.limit.clamp(1, 1_000);
    let r = db.begin_read()?;
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

pub(super) fn case(db: &Database, id: u64) -> Result<Option<Case>, StoreError> {
    read_record(db, CASES, "cases_v1", id, id)
}

pub(super) fn update_case(
    db: &Database,
    id: u64,
    by: Stamp<'_>,
    change: &mut dyn FnMut(&mut Case) -> Result<String, CaseError>,
) -> Result<Case, CaseError> {
    let tx = db.begin_write().map_err(StoreError::from)?;
    let mut c = load_case(&tx, id)?.ok_or(CaseError::NotFound(id))?;
    let old = c.state;
    let what = change(&mut c)?;
    save_case(&tx, &c, Some(old))?;
    write_audit(&tx, by.note("case.update", &case_changed(id, &what)))?;
    tx.commit().map_err(StoreError::from)?;
    Ok(c)
}
