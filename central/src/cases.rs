//! The case life cycle: opening a case for a seal exception or an integrity alert, and the
//! staff actions that move it `OPEN → ACKNOWLEDGED → RESOLVED`.
//!
//! Plain functions over [`Case`]. During ingest, the rules for when a case opens or
//! gets a note ([`on_decision`], [`on_inspection_result`], [`on_alert`]) run over a
//! [`CaseBook`], which a storage backend implements inside its write transaction (storage
//! only); staff actions ([`apply`]) run inside the backend's `update_case`.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use protocol::schema::{ActionKind, Decision, EventBody, GateId, JournalEntry, OfficerAction};
use uuid::Uuid;

use crate::ingest::{AgentState, Link};
use crate::model::AuditNote;
use crate::model::{
    Alert, AlertKind, Case, CaseAction, CaseEvent, CaseOutcome, CaseState, CaseSubject,
};
use crate::store_error::StoreError;

/// Why a case operation failed: the action does not fit the case, or storage failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaseError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("case {0} does not exist")]
    NotFound(u64),
    #[error("case {id} is resolved; a resolved case cannot be {action}")]
    Resolved { id: u64, action: &'static str },
    #[error("case {id} is already acknowledged")]
    AlreadyAcknowledged { id: u64 },
    #[error("assignee must not be empty")]
    EmptyAssignee,
    #[error("assignee {0:?} is not a staff user")]
    UnknownAssignee(String),
}

/// A new case for a decision that [`Decision::is_seal_exception`].
#[must_use]
pub fn open_for_decision(id: u64, d: &Decision, at: Timestamp) -> Case {
    let reasons: Vec<_> = d.reasons.iter().map(|r| r.code).collect();
    let codes: Vec<_> = reasons.iter().map(|c| c.code()).collect();
    Case {
        id,
        state: CaseState::Open,
        subject: CaseSubject::SealException {
            transaction_id: d.transaction_id,
            reasons,
        },
        gate: d.gate.clone(),
        lane: Some(d.lane.clone()),
        opened_at: at,
        updated_at: at,
        assignee: None,
        outcome: None,
        notes: Vec::new(),
        history: vec![CaseEvent {
            at,
            actor: format!("agent:{}", d.gate),
            what: format!("opened: {} ({})", d.decision, codes.join(", ")),
        }],
    }
}

/// A new case for an integrity alert.
#[must_use]
pub fn open_for_alert(id: u64, a: &Alert) -> Case {
    Case {
        id,
        state: CaseState::Open,
        subject: CaseSubject::Integrity {
            alert_id: a.id,
            kind: a.kind,
        },
        gate: a.gate.clone(),
        lane: None,
        opened_at: a.at,
        updated_at: a.at,
        assignee: None,
        outcome: None,
        notes: Vec::new(),
        history: vec![CaseEvent {
            at: a.at,
            actor: "central".into(),
            what: format!("opened: {} at seq {}: {}", a.kind.as_str(), a.seq, a.detail),
        }],
    }
}

fn outcome_text(o: &CaseOutcome) -> String {
    match o {
        CaseOutcome::SealVerifiedIntact => "SEAL_VERIFIED_INTACT".into(),
        CaseOutcome::SealReplaced { new_seal } => format!("SEAL_REPLACED (new seal {new_seal})"),
        CaseOutcome::DiscrepancyConfirmed => "DISCREPANCY_CONFIRMED".into(),
        CaseOutcome::FalseRead => "FALSE_READ".into(),
    }
}

/// Applies a staff action and appends it to the case history. Returns the history line
/// (also the audit text).
///
/// # Errors
/// [`CaseError`] when the action does not fit the case's state.
pub fn apply(
    case: &mut Case,
    action: &CaseAction,
    actor: &str,
    at: Timestamp,
) -> Result<String, CaseError> {
    let (what, note) = match action {
        CaseAction::Acknowledge { note } => {
            match case.state {
                CaseState::Resolved => {
                    return Err(CaseError::Resolved {
                        id: case.id,
                        action: "acknowledged",
                    });
                }
                CaseState::Acknowledged => {
                    return Err(CaseError::AlreadyAcknowledged { id: case.id });
                }
                CaseState::Open => {}
            }
            case.state = CaseState::Acknowledged;
            ("acknowledged".to_owned(), note)
        }
        CaseAction::Assign { assignee, note } => {
            if case.state == CaseState::Resolved {
                return Err(CaseError::Resolved {
                    id: case.id,
                    action: "assigned",
                });
            }
            let assignee = assignee.trim();
            if assignee.is_empty() {
                return Err(CaseError::EmptyAssignee);
            }
            case.assignee = Some(assignee.to_owned());
            (format!("assigned to {assignee}"), note)
        }
        CaseAction::Resolve { outcome, note } => {
            if case.state == CaseState::Resolved {
                return Err(CaseError::Resolved {
                    id: case.id,
                    action: "resolved again",
                });
            }
            case.state = CaseState::Resolved;
            case.outcome = Some(outcome.clone());
            (format!("resolved: {}", outcome_text(outcome)), note)
        }
    };
    if let Some(n) = note.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        case.notes.push(CaseEvent {
            at,
            actor: actor.to_owned(),
            what: n.to_owned(),
        });
    }
    case.history.push(CaseEvent {
        at,
        actor: actor.to_owned(),
        what: what.clone(),
    });
    case.updated_at = at;
    Ok(what)
}

/// Notes an automatic event (e.g. an officer's inspection result arriving from the gate).
pub fn note_event(case: &mut Case, actor: &str, what: String, at: Timestamp) {
    case.history.push(CaseEvent {
        at,
        actor: actor.to_owned(),
        what,
    });
    case.updated_at = at;
}

/// What the case rules need from storage inside a backend's ingest transaction.
pub trait CaseBook {
    type Error;
    /// The case opened for `gate`'s gate transaction `txn`, if any (never another gate's).
    ///
    /// # Errors
    /// Storage failures.
    fn case_id_for_transaction(
        &mut self,
        gate: &GateId,
        txn: Uuid,
    ) -> Result<Option<u64>, Self::Error>;
    /// A stored case.
    ///
    /// # Errors
    /// Storage failures.
    fn load_case(&mut self, id: u64) -> Result<Option<Case>, Self::Error>;
    /// The next case id.
    ///
    /// # Errors
    /// Storage failures.
    fn new_case_id(&mut self) -> Result<u64, Self::Error>;
    /// Saves a case; `old` is its state before the change (`None` for a new case).
    ///
    /// # Errors
    /// Storage failures.
    fn save_case(&mut self, case: &Case, old: Option<CaseState>) -> Result<(), Self::Error>;
    /// Records which case `gate`'s gate transaction's exception opened.
    ///
    /// # Errors
    /// Storage failures.
    fn link_transaction(&mut self, gate: &GateId, txn: Uuid, case: u64) -> Result<(), Self::Error>;
    /// Appends an audit entry.
    ///
    /// # Errors
    /// Storage failures.
    fn audit(&mut self, note: AuditNote<'_>) -> Result<(), Self::Error>;
    /// Whether an alert of `kind` is stored for `gate`'s journal entry `seq`.
    ///
    /// # Errors
    /// Storage failures.
    fn alert_exists(
        &mut self,
        gate: &GateId,
        seq: u64,
        kind: AlertKind,
    ) -> Result<bool, Self::Error>;
    /// Whether `gate`'s journal entry `seq` is stored.
    ///
    /// # Errors
    /// Storage failures.
    fn entry_stored(&mut self, gate: &GateId, seq: u64) -> Result<bool, Self::Error>;
    /// The next alert id.
    ///
    /// # Errors
    /// Storage failures.
    fn new_alert_id(&mut self) -> Result<u64, Self::Error>;
    /// Stores a new alert under its (gate, seq, kind) and counts it in the alert total.
    ///
    /// # Errors
    /// Storage failures.
    fn save_alert(&mut self, alert: &Alert) -> Result<(), Self::Error>;
}

/// A decision arrived (journal entry `seq` of `gate`): a seal exception opens one case
/// per gate transaction; the same decision arriving again is noted on that case. Returns
/// the case opened or changed.
///
/// # Errors
/// The book's storage failures.
pub fn on_decision<B: CaseBook + ?Sized>(
    book: &mut B,
    gate: &GateId,
    d: &Decision,
    seq: u64,
    now: Timestamp,
) -> Result<Option<Case>, B::Error> {
    if !d.is_seal_exception() {
        return Ok(None);
    }
    let agent = format!("agent:{gate}");
    if let Some(id) = book.case_id_for_transaction(gate, d.transaction_id)? {
        let Some(mut c) = book.load_case(id)? else {
            return Ok(None);
        };
        let old = c.state;
        note_event(
            &mut c,
            &agent,
            format!("decision received again at seq {seq}"),
            now,
        );
        book.save_case(&c, Some(old))?;
        return Ok(Some(c));
    }
    let id = book.new_case_id()?;
    let c = open_for_decision(id, d, now);
    book.save_case(&c, None)?;
    book.link_transaction(gate, d.transaction_id, id)?;
    let detail = format!("case {id} for transaction {}", d.transaction_id);
    book.audit(AuditNote::new(&agent, "case.open", &detail, now))?;
    metrics::counter!("central_cases_opened_total").increment(1);
    Ok(Some(c))
}

/// An officer action arrived from `gate`: an inspection result is noted on the case of
/// that gate's transaction, if it has one. Returns the changed case.
///
/// # Errors
/// The book's storage failures.
pub fn on_inspection_result<B: CaseBook + ?Sized>(
    book: &mut B,
    gate: &GateId,
    a: &OfficerAction,
    now: Timestamp,
) -> Result<Option<Case>, B::Error> {
    let (Some(txn), ActionKind::InspectionResult { result, note }) = (a.transaction_id, &a.kind)
    else {
        return Ok(None);
    };
    let Some(id) = book.case_id_for_transaction(gate, txn)? else {
        return Ok(None);
    };
    let Some(mut c) = book.load_case(id)? else {
        return Ok(None);
    };
    let old = c.state;
    let result = serde_json::to_string(result).unwrap_or_default();
    note_event(
        &mut c,
        &format!("officer:{}", a.officer),
        format!("inspection result at the gate: {result} {note}"),
        now,
    );
    book.save_case(&c, Some(old))?;
    Ok(Some(c))
}

/// An integrity alert of `kind` on `gate`'s journal entry `seq`: stored once per
/// (gate, seq, kind), and a new one opens its case. Returns the case when the alert is new.
///
/// # Errors
/// The book's storage failures.
pub fn on_alert<B: CaseBook + ?Sized>(
    book: &mut B,
    gate: &GateId,
    seq: u64,
    kind: AlertKind,
    detail: &str,
    at: Timestamp,
) -> Result<Option<Case>, B::Error> {
    if book.alert_exists(gate, seq, kind)? {
        return Ok(None);
    }
    let id = book.new_alert_id()?;
    let case_id = book.new_case_id()?;
    let alert = Alert {
        id,
        gate: gate.clone(),
        seq,
        kind,
        detail: detail.to_owned(),
        at,
        case_id: Some(case_id),
    };
    book.save_alert(&alert)?;
    let case = open_for_alert(case_id, &alert);
    book.save_case(&case, None)?;
    let detail = format!(
        "{} at {} seq {}: {} (case {case_id})",
        alert.kind.as_str(),
        alert.gate,
        alert.seq,
        alert.detail
    );
    book.audit(AuditNote::new("central", "alert.raise", &detail, alert.at))?;
    metrics::counter!("central_integrity_alerts_total", "kind" => kind.as_str()).increment(1);
    Ok(Some(case))
}

/// A journal entry of `gate` was stored with effect: a decision, an officer's
/// inspection result or an integrity alert the agent reported goes to its rule
/// ([`on_decision`], [`on_inspection_result`], [`on_alert`] as
/// [`AlertKind::AgentReported`]); other entries touch no case. Returns the case opened
/// or changed.
///
/// # Errors
/// The book's storage failures.
pub fn on_entry<B: CaseBook + ?Sized>(
    book: &mut B,
    gate: &GateId,
    entry: &JournalEntry,
    now: Timestamp,
) -> Result<Option<Case>, B::Error> {
    match &entry.body {
        EventBody::Decision { decision } => on_decision(book, gate, decision, entry.seq, now),
        EventBody::OfficerAction { action } => on_inspection_result(book, gate, action, now),
        EventBody::IntegrityAlert { what, detail } => {
            let detail = format!("{what}: {detail}");
            on_alert(
                book,
                gate,
                entry.seq,
                AlertKind::AgentReported,
                &detail,
                now,
            )
        }
        EventBody::Transaction { .. }
        | EventBody::DeviceHealth { .. }
        | EventBody::OrphanRead { .. }
        | EventBody::ConsoleSession { .. }
        | EventBody::ConfigApplied { .. }
        | EventBody::LaneControl { .. }
        | EventBody::LaneRefused { .. } => Ok(None),
    }
}

/// Advances `gate`'s acknowledgement ([`AgentState::advance`]) over its stored entries
/// (`known`: entries known stored without asking the book, e.g. the batch's own) and
/// raises a gap that persisted as a [`AlertKind::Gap`] alert ([`on_alert`]). Returns the
/// case when the alert is new.
///
/// # Errors
/// The book's storage failures.
pub fn gap_check<B: CaseBook + ?Sized>(
    book: &mut B,
    gate: &GateId,
    state: &mut AgentState,
    known: &HashMap<u64, Link>,
    now: Timestamp,
    gap_alert_after: SignedDuration,
) -> Result<Option<Case>, B::Error> {
    let stored = |s| Ok(known.contains_key(&s) || book.entry_stored(gate, s)?);
    let Some(seq) = state.advance(stored, now, gap_alert_after)? else {
        return Ok(None);
    };
    let detail = crate::ingest::gap_alert_text(seq, state);
    on_alert(book, gate, seq, AlertKind::Gap, &detail, now)
}

/// A heartbeat of `gate` arrived at `now`: [`gap_check`] with no entry known stored
/// beforehand. Returns the case opened, if any.
///
/// # Errors
/// The book's storage failures.
pub fn on_heartbeat<B: CaseBook + ?Sized>(
    book: &mut B,
    gate: &GateId,
    state: &mut AgentState,
    now: Timestamp,
    gap_alert_after: SignedDuration,
) -> Result<Vec<Case>, B::Error> {
    let opened = gap_check(book, gate, state, &HashMap::new(), now, gap_alert_after)?;
    Ok(opened.into_iter().collect())
}

/// The last state of each case a batch changed, in id order (a case changed twice in
/// one batch is reported once).
#[must_use]
pub fn last_by_id(cases: Vec<Case>) -> Vec<Case> {
    let mut m: std::collections::BTreeMap<u64, Case> = std::collections::BTreeMap::new();
    for c in cases {
        m.insert(c.id, c);
    }
    m.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::schema::GateId;

    fn alert_case() -> Case {
        let a = Alert {
            id: 1,
            gate: GateId::parse("G1").expect("gate"),
            seq: 3,
            kind: AlertKind::ChainBreak,
            detail: "x".into(),
            at: Timestamp::UNIX_EPOCH,
            case_id: None,
        };
        open_for_alert(7, &a)
    }

    #[test]
    fn resolved_cases_refuse_further_actions() {
        let mut c = alert_case();
        let t = Timestamp::UNIX_EPOCH;
        apply(
            &mut c,
            &CaseAction::Resolve {
                outcome: CaseOutcome::FalseRead,
                note: None,
            },
            "ana",
            t,
        )
        .expect("resolve from open");
        let err = apply(&mut c, &CaseAction::Acknowledge { note: None }, "ana", t);
        assert_eq!(
            err,
            Err(CaseError::Resolved {
                id: 7,
                action: "acknowledged"
            })
        );
        assert_eq!(c.history.len(), 2);
    }

    #[test]
    fn blank_assignee_is_refused() {
        let mut c = alert_case();
        let a = CaseAction::Assign {
            assignee: "  ".into(),
            note: None,
        };
        assert_eq!(
            apply(&mut c, &a, "ana", Timestamp::UNIX_EPOCH),
            Err(CaseError::EmptyAssignee)
        );
    }
}
