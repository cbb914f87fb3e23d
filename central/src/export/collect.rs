//! Reading one range of decided gate transactions from the store and joining each with
//! its transaction, inspection results and case ([`GateEvent`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::Timestamp;
use protocol::schema::{
    ActionKind, Decision, ESealState, EventBody, GateId, GateTransaction, OfficerAction, PartyView,
    ReadValue, ReasonCode,
};
use uuid::Uuid;

use super::{ExportError, MAX_EXPORT_TRANSACTIONS, MAX_PAGES, PAGE};
use crate::model::{CaseOutcome, CaseQuery, CaseState, EventQuery};
use crate::store::{Store, StoreError};

/// Which decisions to export: those whose journal entry time (`at`) is in `[from, to)`,
/// of one gate or of all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportQuery {
    pub gate: Option<GateId>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

/// One reason code of a decision with every party its reasons name: the exports give one
/// line per code, so two parties sharing `PARTY_UNKNOWN` make one `PARTY_UNKNOWN` with
/// both parties inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonLine<'a> {
    pub code: ReasonCode,
    /// The parties of the code's reasons, in the decision's order, each once.
    pub parties: Vec<&'a PartyView>,
}

/// The decision's reasons merged by code, in the order each code first appears.
#[must_use]
pub fn reason_lines(d: &Decision) -> Vec<ReasonLine<'_>> {
    let mut lines: Vec<ReasonLine<'_>> = Vec::new();
    for r in &d.reasons {
        let i = match lines.iter().position(|l| l.code == r.code) {
            Some(i) => i,
            None => {
                lines.push(ReasonLine {
                    code: r.code,
                    parties: Vec::new(),
                });
                lines.len() - 1
            }
        };
        for p in &r.parties {
            if !lines[i].parties.contains(&p) {
                lines[i].parties.push(p);
            }
        }
    }
    lines
}

/// The case opened for a transaction's seal exception.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseRef {
    pub id: u64,
    pub state: CaseState,
    pub outcome: Option<CaseOutcome>,
}

/// One decided gate transaction with everything the exports show.
#[derive(Debug, Clone, PartialEq)]
pub struct GateEvent {
    pub decision: Decision,
    /// The transaction's reads (`None` when only the decision reached central).
    pub transaction: Option<GateTransaction>,
    /// Officers' inspection results for the transaction, oldest first.
    pub inspections: Vec<OfficerAction>,
    /// Seal numbers declared for the containers read: those the decision's reasons name,
    /// and those of the decision's consignments still in the registry at export time.
    pub declared_seals: BTreeSet<String>,
    /// E-seal ids declared, from the same sources.
    pub declared_eseals: BTreeSet<String>,
    pub case: Option<CaseRef>,
}

impl GateEvent {
    /// Transaction id.
    #[must_use]
    pub fn transaction_id(&self) -> Uuid {
        self.decision.transaction_id
    }

    /// Container numbers read, in first-read order.
    #[must_use]
    pub fn containers(&self) -> Vec<String> {
        self.transaction
            .as_ref()
            .map(|t| t.containers().iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    /// EPC pure identity URIs of the tags read (raw EPCs are not identities and are left
    /// out), in first-read order.
    #[must_use]
    pub fn tag_uris(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in self.transaction.iter().flat_map(|t| &t.reads) {
            if let ReadValue::Tag { uri, .. } = &r.value
                && uri.starts_with("urn:epc:id:")
                && !out.contains(uri)
            {
                out.push(uri.clone());
            }
        }
        out
    }

    /// Mechanical seal numbers read.
    #[must_use]
    pub fn seals_read(&self) -> BTreeSet<String> {
        self.transaction
            .iter()
            .flat_map(|t| &t.reads)
            .filter_map(|r| match &r.value {
                ReadValue::Seal { number } => Some(number.to_string()),
                _ => None,
            })
            .collect()
    }

    /// E-seals read with the worst state each reported (tampered over opened over sealed).
    #[must_use]
    pub fn eseals_read(&self) -> BTreeMap<String, ESealState> {
        let rank = |s: ESealState| match s {
            ESealState::Sealed => 0,
            ESealState::Opened => 1,
            ESealState::Tampered => 2,
        };
        let mut out = BTreeMap::new();
        for r in self.transaction.iter().flat_map(|t| &t.reads) {
            if let ReadValue::ESeal { id, state, .. } = &r.value {
                let e = out.entry(id.to_string()).or_insert(*state);
                if rank(*state) > rank(*e) {
                    *e = *state;
                }
            }
        }
        out
    }

    /// The EPCs of the EPCIS events: containers as BIC URIs, then the tags' identities.
    #[must_use]
    pub fn epc_list(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .containers()
            .iter()
            .map(|c| format!("urn:epc:id:bic:{c}"))
            .collect();
        for t in self.tag_uris() {
            if !out.contains(&t) {
                out.push(t);
            }
        }
        out
    }
}

pub(super) fn eseal_state_str(s: ESealState) -> &'static str {
    match s {
        ESealState::Sealed => "SEALED",
        ESealState::Opened => "OPENED",
        ESealState::Tampered => "TAMPERED",
    }
}

/// Reads the decided transactions matching `q`, oldest decision first, with their
/// transactions, inspection results, declared seals and cases.
///
/// # Errors
/// [`ExportError::EmptyRange`] when `from >= to`; [`ExportError::TooLarge`] past
/// [`MAX_EXPORT_TRANSACTIONS`] (or when the store needs more than a bounded number of
/// pages); store errors.
pub fn collect(store: &dyn Store, q: &ExportQuery) -> Result<Vec<GateEvent>, ExportError> {
    if let (Some(from), Some(to)) = (q.from, q.to)
        && from >= to
    {
        return Err(ExportError::EmptyRange { from, to });
    }
    let too_large = ExportError::TooLarge {
        limit: MAX_EXPORT_TRANSACTIONS,
    };

    // 1. The decisions in range; a transaction decided twice keeps its latest decision.
    // Keyed by (gate, transaction): each gate's transactions are its own.
    let mut decisions: HashMap<(GateId, Uuid), Decision> = HashMap::new();
    let mut cursor = None;
    for page_no in 0.. {
        if page_no == MAX_PAGES {
            return Err(too_large);
        }
        let page = store.events(&EventQuery {
            gate: q.gate.clone(),
            from: q.from,
            to: q.to,
            cursor: cursor.take(),
            limit: PAGE,
            ..EventQuery::default()
        })?;
        for e in page.items {
            if let EventBody::Decision { decision } = e.entry.body {
                let key = (e.entry.agent, decision.transaction_id);
                match decisions.get(&key) {
                    Some(d) if d.decided_at > decision.decided_at => {}
                    _ => {
                        decisions.insert(key, decision);
                    }
                }
            }
        }
        if decisions.len() > MAX_EXPORT_TRANSACTIONS {
            return Err(too_large);
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut decisions: Vec<Decision> = decisions.into_values().collect();
    decisions.sort_by_key(|d| (d.decided_at, d.transaction_id));

    // 2. Each transaction's other entries, and what was declared.
    let mut out = Vec::with_capacity(decisions.len());
    for decision in decisions {
        let mut transaction: Option<GateTransaction> = None;
        let mut inspections = Vec::new();
        for e in store.transaction_events(&decision.gate, &decision.transaction_id)? {
            match e.entry.body {
                EventBody::Transaction { transaction: t }
                    if transaction
                        .as_ref()
                        .is_none_or(|old| t.closed_at >= old.closed_at) =>
                {
                    transaction = Some(t);
                }
                EventBody::OfficerAction { action }
                    if matches!(action.kind, ActionKind::InspectionResult { .. }) =>
                {
                    inspections.push(action);
                }
                _ => {}
            }
        }
        inspections.sort_by_key(|a| (a.at, a.id));
        let mut ev = GateEvent {
            decision,
            transaction,
            inspections,
            declared_seals: BTreeSet::new(),
            declared_eseals: BTreeSet::new(),
            case: None,
        };
        declared(store, &mut ev)?;
        out.push(ev);
    }

    // 3. Cases of the seal exceptions.
    let mut wanted: HashMap<(GateId, Uuid), usize> = out
        .iter()
        .enumerate()
        .filter(|(_, e)| e.decision.is_seal_exception())
        .map(|(i, e)| ((e.decision.gate.clone(), e.transaction_id()), i))
        .collect();
    let mut cursor = None;
    for page_no in 0.. {
        if wanted.is_empty() {
            break;
        }
        if page_no == MAX_PAGES {
            return Err(too_large);
        }
        let page = store.cases(&CaseQuery {
            gate: q.gate.clone(),
            cursor: cursor.take(),
            limit: PAGE,
            ..CaseQuery::default()
        })?;
        for c in page.items {
            if let Some(i) = c
                .transaction_id()
                .and_then(|t| wanted.remove(&(c.gate.clone(), t)))
                && let Some(ev) = out.get_mut(i)
            {
                ev.case = Some(CaseRef {
                    id: c.id,
                    state: c.state,
                    outcome: c.outcome,
                });
            }
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Ok(out)
}

/// Fills the declared seals: what the decision's reasons name (they survive the
/// consignment leaving the registry), and the seals of the decision's consignments that
/// are still there.
fn declared(store: &dyn Store, ev: &mut GateEvent) -> Result<(), StoreError> {
    for r in &ev.decision.reasons {
        if let Some(v) = r.detail.get("declared") {
            ev.declared_seals.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
        }
        if let Some(v) = r.detail.get("declared_eseal") {
            ev.declared_eseals.insert(v.trim().to_owned());
        }
    }
    if ev.decision.consignments.is_empty() {
        return Ok(());
    }
    let containers = ev
        .transaction
        .as_ref()
        .map(GateTransaction::containers)
        .unwrap_or_default();
    for cn in &containers {
        for k in store.consignments_for_container(cn.as_str())? {
            if !ev.decision.consignments.contains(&k.id) {
                continue;
            }
            for d in k.containers.iter().filter(|d| &d.number == cn) {
                ev.declared_seals
                    .extend(d.seals.iter().map(ToString::to_string));
                ev.declared_eseals
                    .extend(d.eseals.iter().map(ToString::to_string));
            }
        }
    }
    Ok(())
}
