//! Officer actions, sans-IO: who may act, what an override may do, and what an action must
//! carry. The console's HTTP handler ([`crate::api`]) does the I/O around it: it finds the
//! lane's current decision when [`needs_current_decision`] says so, asks [`check_action`],
//! journals the action, and shows [`override_state`] on the lane.
//!
//! The override policy: an officer may send a truck only to a stricter lane
//! (FAST → STANDARD → INSPECT); relaxing a lane takes a supervisor. When the current lane
//! of the transaction is unknown, only INSPECT is safe without a supervisor.

use jiff::Timestamp;
use protocol::schema::{ActionKind, LaneDecision, LaneId, LaneState, ReadValue, ReasonCode};
use uuid::Uuid;

use crate::console::users::Role;
use crate::decider::Routes;

/// Longest free text (reason, note, plate) in an officer action, in bytes.
pub const MAX_TEXT: usize = 1000;

/// Why an action is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The request itself is wrong (a missing or overlong field, a value that cannot be
    /// entered by hand).
    #[error("{0}")]
    Invalid(String),
    /// The role may not do this.
    #[error("{0}")]
    Forbidden(String),
}

/// Whether `role` may use the officer console and its actions at all.
///
/// # Errors
/// [`Refusal::Forbidden`] naming the role.
pub fn authorise(role: Role) -> Result<(), Refusal> {
    if role.is_customs() {
        Ok(())
    } else {
        Err(Refusal::Forbidden(format!(
            "the {role} role cannot use the officer console or its API"
        )))
    }
}

/// Whether checking this action needs the lane's current decision for its transaction
/// (an officer's override: it may only make the lane stricter).
#[must_use]
pub fn needs_current_decision(role: Role, kind: &ActionKind) -> bool {
    role == Role::Officer && matches!(kind, ActionKind::Override { .. })
}

/// What the lane shows now for `transaction`, if the lane's shown state is about it and
/// is a decision (not the safe state while the truck waits for one).
#[must_use]
pub fn shown_decision(shown: Option<&LaneState>, transaction: Uuid) -> Option<LaneDecision> {
    shown
        .filter(|s| s.transaction_id == Some(transaction))
        .and_then(|s| s.decision.decided())
}

fn check_text(field: &str, text: &str, required: bool) -> Result<(), Refusal> {
    if required && text.trim().is_empty() {
        return Err(Refusal::Invalid(format!("{field} is required")));
    }
    if text.len() > MAX_TEXT {
        return Err(Refusal::Invalid(format!(
            "{field} is longer than {MAX_TEXT} bytes"
        )));
    }
    Ok(())
}

/// Checks an action by `role` on `transaction`, given the lane's `current` decision for it
/// (looked up when [`needs_current_decision`]; `None` when unknown or not looked up).
///
/// # Errors
/// [`Refusal::Invalid`] for a missing or overlong text, a manual entry of a kind that
/// cannot be typed, or a missing transaction; [`Refusal::Forbidden`] for an officer
/// relaxing a lane.
pub fn check_action(
    role: Role,
    kind: &ActionKind,
    transaction: Option<Uuid>,
    current: Option<LaneDecision>,
) -> Result<(), Refusal> {
    match kind {
        ActionKind::Confirm => {}
        ActionKind::Override { reason, note, to } => {
            check_text("reason", reason, true)?;
            check_text("note", note, false)?;
            // Unknown current lane: only the strictest is safe without a supervisor.
            if role == Role::Officer && current.map_or(*to != LaneDecision::Inspect, |c| *to < c) {
                return Err(Refusal::Forbidden(format!(
                    "an officer may only send a truck to a stricter lane (now {}); relaxing it to {to} takes a supervisor",
                    current.map_or("unknown", LaneDecision::as_str)
                )));
            }
        }
        ActionKind::InspectionResult { note, .. } => check_text("note", note, false)?,
        ActionKind::ManualEntry { value } => match value {
            ReadValue::Container { .. } | ReadValue::Seal { .. } | ReadValue::ESeal { .. } => {}
            ReadValue::Plate { text } => check_text("plate", text, true)?,
            ReadValue::Tag { .. } | ReadValue::Unreadable { .. } => {
                return Err(Refusal::Invalid(
                    "a manual entry is a CONTAINER, SEAL, ESEAL or PLATE value".into(),
                ));
            }
        },
    }
    let needs_tx = !matches!(kind, ActionKind::ManualEntry { .. });
    if needs_tx && transaction.is_none() {
        return Err(Refusal::Invalid(
            "transaction_id is required for this action".into(),
        ));
    }
    Ok(())
}

/// The state an override puts on `lane`: the route of `to`, `OFFICER_OVERRIDE`, no
/// priority.
#[must_use]
pub fn override_state(
    lane: &LaneId,
    transaction: Option<Uuid>,
    to: LaneDecision,
    routes: &Routes,
    at: Timestamp,
) -> LaneState {
    LaneState {
        lane: lane.clone(),
        transaction_id: transaction,
        decision: to.into(),
        route: routes.of(to).to_owned(),
        reasons: vec![ReasonCode::OfficerOverride],
        priority: false,
        at,
        officer_override: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LaneDecision::{Fast, Inspect, Standard};
    use Role::{Officer, Operator, Supervisor};
    use protocol::schema::LaneSignal;

    fn over(to: LaneDecision) -> ActionKind {
        ActionKind::Override {
            to,
            reason: "driver behaviour".into(),
            note: String::new(),
        }
    }

    fn tx() -> Option<Uuid> {
        Some(Uuid::from_u128(7))
    }

    #[test]
    fn only_customs_roles_are_authorised() {
        assert_eq!(authorise(Officer), Ok(()));
        assert_eq!(authorise(Supervisor), Ok(()));
        assert!(matches!(authorise(Operator), Err(Refusal::Forbidden(_))));
    }

    #[test]
    fn override_policy_table() {
        // (role, current, to, allowed)
        let cases = [
            (Officer, Some(Fast), Standard, true),
            (Officer, Some(Fast), Inspect, true),
            (Officer, Some(Standard), Inspect, true),
            (Officer, Some(Standard), Standard, true),
            (Officer, Some(Inspect), Standard, false),
            (Officer, Some(Inspect), Fast, false),
            (Officer, Some(Standard), Fast, false),
            (Officer, None, Inspect, true),
            (Officer, None, Standard, false),
            (Officer, None, Fast, false),
            (Supervisor, Some(Inspect), Fast, true),
            (Supervisor, None, Fast, true),
        ];
        for (role, current, to, allowed) in cases {
            let got = check_action(role, &over(to), tx(), current);
            if allowed {
                assert_eq!(got, Ok(()), "{role} {current:?} -> {to}");
            } else {
                assert!(
                    matches!(got, Err(Refusal::Forbidden(_))),
                    "{role} {current:?} -> {to}: {got:?}"
                );
            }
        }
    }

    #[test]
    fn only_an_officers_override_needs_the_current_decision() {
        assert!(needs_current_decision(Officer, &over(Inspect)));
        assert!(!needs_current_decision(Supervisor, &over(Fast)));
        assert!(!needs_current_decision(Officer, &ActionKind::Confirm));
    }

    #[test]
    fn action_shape_table() {
        let long = "x".repeat(MAX_TEXT + 1);
        let cases: Vec<(ActionKind, Option<Uuid>, bool)> = vec![
            (ActionKind::Confirm, tx(), true),
            (ActionKind::Confirm, None, false),
            (
                ActionKind::Override {
                    to: Inspect,
                    reason: "  ".into(),
                    note: String::new(),
                },
                tx(),
                false,
            ),
            (
                ActionKind::Override {
                    to: Inspect,
                    reason: "r".into(),
                    note: long.clone(),
                },
                tx(),
                false,
            ),
            (
                ActionKind::ManualEntry {
                    value: ReadValue::Plate {
                        text: "AB12".into(),
                    },
                },
                None,
                true,
            ),
            (
                ActionKind::ManualEntry {
                    value: ReadValue::Plate {
                        text: String::new(),
                    },
                },
                None,
                false,
            ),
            (
                ActionKind::ManualEntry {
                    value: ReadValue::Unreadable {
                        what: "x".into(),
                        error: "y".into(),
                    },
                },
                None,
                false,
            ),
        ];
        for (kind, t, ok) in cases {
            let got = check_action(Supervisor, &kind, t, None);
            assert_eq!(got.is_ok(), ok, "{kind:?} {t:?}: {got:?}");
            if !ok {
                assert!(matches!(got, Err(Refusal::Invalid(_))), "{got:?}");
            }
        }
    }

    #[test]
    fn override_state_takes_the_route_of_the_new_lane_and_no_priority() {
        let routes = Routes {
            fast: "F".into(),
            standard: "S".into(),
            inspect: "I".into(),
        };
        let lane = LaneId::parse("L1").expect("lane");
        let at: Timestamp = "2026-03-01T10:00:00Z".parse().expect("ts");
        let s = override_state(&lane, tx(), Standard, &routes, at);
        assert_eq!(
            (s.decision, s.route.as_str(), s.priority, s.officer_override),
            (LaneSignal::Decided(Standard), "S", false, true)
        );
        assert_eq!(s.reasons, [ReasonCode::OfficerOverride]);
        assert_eq!(shown_decision(Some(&s), Uuid::from_u128(7)), Some(Standard));
        assert_eq!(shown_decision(Some(&s), Uuid::from_u128(8)), None);
    }

    #[test]
    fn a_lane_waiting_for_a_truck_shows_no_decision_for_it() {
        let lane = LaneId::parse("L1").expect("lane");
        let at: Timestamp = "2026-03-01T10:00:00Z".parse().expect("ts");
        let id = Uuid::from_u128(7);
        let waiting = LaneState::waiting(&lane, Some(id), at);
        assert_eq!(shown_decision(Some(&waiting), id), None);
        assert_eq!(shown_decision(None, id), None);
    }
}
