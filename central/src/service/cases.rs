//! The case desk: lists, the detail staff work a case from, staff actions.

use jiff::Timestamp;
use protocol::schema::{ActionKind, EventBody, GateTransaction};

use super::Central;
use crate::cases::{self, CaseError};
use crate::model::{Case, CaseAction, CaseDetail, CaseQuery, CaseSubject, Page};
use crate::store::{Stamp, StoreError};

impl Central {
    /// Cases matching `q`, newest first, one page.
    ///
    /// # Errors
    /// Store errors.
    pub fn cases(&self, q: &CaseQuery) -> Result<Page<Case>, StoreError> {
        self.inner.store.cases(q)
    }

    /// Applies a staff action to a case ([`cases::apply`]), audited, and publishes the
    /// changed case to the live stream.
    ///
    /// # Errors
    /// [`CaseError`]: no such case, an action that does not fit its state, or storage.
    pub fn act_on_case(
        &self,
        id: u64,
        action: &CaseAction,
        actor: &str,
    ) -> Result<Case, CaseError> {
        if let CaseAction::Assign { assignee, .. } = action {
            let name = assignee.trim();
            if !name.is_empty() && self.inner.store.user(name)?.is_none() {
                return Err(CaseError::UnknownAssignee(name.to_owned()));
            }
        }
        let at = Timestamp::now();
        let case = self
            .inner
            .store
            .update_case(id, Stamp::new(actor, at), &mut |c| {
                cases::apply(c, action, actor, at)
            })?;
        self.publish_cases(vec![case.clone()]);
        Ok(case)
    }

    /// A case with everything staff need to work it: the gate transaction and its reads,
    /// the decision, the consignments declared for its containers, the officers'
    /// inspection results and the alert. `None` when there is no such case.
    ///
    /// # Errors
    /// Store errors.
    pub fn case_detail(&self, id: u64) -> Result<Option<CaseDetail>, StoreError> {
        let store = &self.inner.store;
        let Some(case) = store.case(id)? else {
            return Ok(None);
        };
        let mut d = CaseDetail::of(case);
        if let Some(txn) = d.case.transaction_id() {
            for e in store.transaction_events(&d.case.gate, &txn)? {
                match e.entry.body {
                    EventBody::Transaction { transaction } => d.transaction = Some(transaction),
                    EventBody::Decision { decision } => d.decision = Some(decision),
                    EventBody::OfficerAction { action }
                        if matches!(action.kind, ActionKind::InspectionResult { .. }) =>
                    {
                        d.officer_results.push(action);
                    }
                    EventBody::OfficerAction { action }
                        if matches!(action.kind, ActionKind::Override { .. }) =>
                    {
                        d.overrides.push(action);
                    }
                    _ => {}
                }
            }
            let containers = d
                .transaction
                .as_ref()
                .map(GateTransaction::containers)
                .unwrap_or_default();
            for cn in containers {
                for k in store.consignments_for_container(cn.as_str())? {
                    if !d.declared.iter().any(|x| x.id == k.id) {
                        d.declared.push(k);
                    }
                }
            }
        }
        if let CaseSubject::Integrity { alert_id, .. } = d.case.subject {
            d.alert = store.alert(alert_id)?;
        }
        Ok(Some(d))
    }
}
