//! Officer actions, sans-IO: who may act, what an override may do, and what an action must
//! carry. The console's HTTP handler ([`crate::api`]) does the I/O around it: for an
//! override it asks [`bind_override`] what the lane shows, asks [`check_action`], journals
//! the action, and shows [`override_state`] on the lane.
//!
//! The override policy: an override binds to the transaction the lane shows now, decided
//! (any other transaction, or a lane still waiting for a decision, is a
//! [`Refusal::Conflict`]: nothing is journaled or shown). An officer may send that truck
//! only to a stricter lane (FAST → STANDARD → INSPECT); relaxing a lane takes a
//! supervisor, who must give a reason like every override. When the current lane of the
//! transaction is unknown, only INSPECT is safe without a supervisor.

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
    /// The action does not fit what the lane shows now (an override naming a transaction
    /// the lane does not show).
    #[error("{0}")]
    Conflict(String),
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

/// What the lane shows now for `transaction`, if the lane's shown state is about it and
/// is a decision (not the safe state while the truck waits for one).
#[must_use]
pub fn shown_decision(shown: Option<&LaneState>, transaction: Uuid) -> Option<LaneDecision> {
    shown
        .filter(|s| s.transaction_id == Some(transaction))
        .and_then(|s| s.decision.decided())
}

/// Binds an override on `lane` to what the lane `shown` now: the named `transaction` must
/// be the one the lane shows, with its decision (not the safe state while the truck waits
/// for one). Returns that decision, the one the override changes.
///
/// # Errors
/// [`Refusal::Invalid`] without a transaction; [`Refusal::Conflict`] naming what the lane
/// shows instead.
pub fn bind_override(
    lane: &LaneId,
    shown: Option<&LaneState>,
    transaction: Option<Uuid>,
) -> Result<LaneDecision, Refusal> {
    let Some(tx) = transaction else {
        return Err(Refusal::Invalid(
            "transaction_id is required for an override".into(),
        ));
    };
    let shown_tx = shown.and_then(|s| s.transaction_id);
    if shown_tx != Some(tx) {
        let now = shown_tx.map_or_else(
            || "no transaction".to_owned(),
            |t| format!("transaction {t}"),
        );
        return Err(Refusal::Conflict(format!(
            "lane {lane} shows {now}, not {tx}: an override applies only to the transaction the lane shows; nothing was changed"
        )));
    }
    shown_decision(shown, tx).ok_or_else(|| {
        Refusal::Conflict(format!(
            "lane {lane} has no decision yet for transaction {tx}; an override applies once the lane shows one; nothing was changed"
        ))
    })
}

/// Checks that an action on `lane` about `transaction` does not reach into another lane:
/// `journaled_on` is the lane the gate journaled that transaction on (`None` when this
/// gate has not journaled it).
///
/// # Errors
/// [`Refusal::Conflict`] naming both lanes.
pub fn check_lane(
    lane: &LaneId,
    transaction: Uuid,
    journaled_on: Option<&LaneId>,
) -> Result<(), Refusal> {
    match journaled_on {
        Some(other) if other != lane => Err(Refusal::Conflict(format!(
            "transaction {transaction} is lane {other}'s, not lane {lane}'s: act on it from lane {other}; nothing was changed"
        ))),
        _ => Ok(()),
    }
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

/// Checks what an action must carry, whoever sends it: texts present and within
/// [`MAX_TEXT`], a manual entry of a kind that can be typed, a transaction for every
/// action but a manual entry.
///
/// # Errors
/// [`Refusal::Invalid`] saying what is wrong.
pub fn check_shape(kind: &ActionKind, transaction: Option<Uuid>) -> Result<(), Refusal> {
    match kind {
        ActionKind::Confirm => {}
        ActionKind::Override { reason, note, .. } => {
            check_text("reason", reason, true)?;
            check_text("note", note, false)?;
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

/// Checks an action by `role` on `transaction`, given the lane's `current` decision for it
/// (from [`bind_override`] for an override; `None` when unknown): [`check_shape`], then
/// the override policy.
///
/// # Errors
/// [`Refusal::Invalid`] as [`check_shape`]; [`Refusal::Forbidden`] for an officer
/// relaxing a lane.
pub fn check_action(
    role: Role,
    kind: &ActionKind,
    transaction: Option<Uuid>,
    current: Option<LaneDecision>,
) -> Result<(), Refusal> {
    check_shape(kind, transaction)?;
    if let ActionKind::Override { to, .. } = kind
        // Unknown current lane: only the strictest is safe without a supervisor.
        && role == Role::Officer
        && current.map_or(*to != LaneDecision::Inspect, |c| *to < c)
    {
        return Err(Refusal::Forbidden(format!(
            "an officer may only send a truck to a stricter lane (now {}); relaxing it to {to} takes a supervisor",
            current.map_or("unknown", LaneDecision::as_str)
        )));
    }
    Ok(())
}

/// Checks that `role` may close or reopen a lane, with `reason`: supervisors only (a
/// closed lane stops every truck there; an officer asks a supervisor), and a reason is
/// required, within [`MAX_TEXT`].
///
/// # Errors
/// [`Refusal::Forbidden`] for any other role; [`Refusal::Invalid`] for a missing or
/// overlong reason.
pub fn check_lane_control(role: Role, reason: &str) -> Result<(), Refusal> {
    if role != Role::Supervisor {
        return Err(Refusal::Forbidden(format!(
            "closing or reopening a lane takes a supervisor; the {role} role cannot"
        )));
    }
    check_text("reason", reason, true)
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

    fn state(lane: &str, tx: u128, decision: Option<LaneDecision>) -> LaneState {
        let lane = LaneId::parse(lane).expect("lane");
        let at: Timestamp = "2026-03-01T10:00:00Z".parse().expect("ts");
        match decision {
            Some(d) => {
                let routes = Routes {
                    fast: "F".into(),
                    standard: "S".into(),
                    inspect: "I".into(),
                };
                override_state(&lane, Some(Uuid::from_u128(tx)), d, &routes, at)
            }
            None => LaneState::waiting(&lane, Some(Uuid::from_u128(tx)), at),
        }
    }

    #[test]
    fn an_override_binds_to_the_decided_transaction_the_lane_shows() {
        let l1 = LaneId::parse("L1").expect("lane");
        let fast7 = state("L1", 7, Some(Fast));
        let waiting7 = state("L1", 7, None);
        let cleared = LaneState::waiting(&l1, None, fast7.at);
        // (shown, named, expected)
        /// Bound to a decision, or refused as `conflict` / `invalid`.
        type Expected = Result<LaneDecision, &'static str>;
        let cases: Vec<(Option<&LaneState>, Option<Uuid>, Expected)> = vec![
            (Some(&fast7), tx(), Ok(Fast)),
            // Another transaction (another lane's truck, or one that has left).
            (Some(&fast7), Some(Uuid::from_u128(8)), Err("conflict")),
            // The truck on the loop has no decision yet.
            (Some(&waiting7), tx(), Err("conflict")),
            // The decided truck left; the lane waits for the next.
            (Some(&cleared), tx(), Err("conflict")),
            // Nothing shown since start.
            (None, tx(), Err("conflict")),
            (Some(&fast7), None, Err("invalid")),
        ];
        for (shown, named, expected) in cases {
            let got = bind_override(&l1, shown, named);
            match (expected, &got) {
                (Ok(d), Ok(g)) => assert_eq!(*g, d),
                (Err("conflict"), Err(Refusal::Conflict(m))) => {
                    assert!(
                        m.contains("lane L1") && m.contains("nothing was changed"),
                        "{m}"
                    );
                }
                (Err("invalid"), Err(Refusal::Invalid(_))) => {}
                (e, g) => panic!("{shown:?} {named:?}: expected {e:?}, got {g:?}"),
            }
        }
    }

    #[test]
    fn an_action_may_not_reach_into_another_lanes_transaction() {
        let (l1, l2) = (
            LaneId::parse("L1").expect("lane"),
            LaneId::parse("L2").expect("lane"),
        );
        let t = Uuid::from_u128(7);
        assert_eq!(check_lane(&l1, t, Some(&l1)), Ok(()));
        assert_eq!(check_lane(&l1, t, None), Ok(()));
        assert!(matches!(
            check_lane(&l1, t, Some(&l2)),
            Err(Refusal::Conflict(m)) if m.contains("lane L2's")
        ));
    }

    #[test]
    fn the_conflict_names_the_transaction_the_lane_shows() {
        let l2 = LaneId::parse("L2").expect("lane");
        let shown = state("L2", 9, Some(Fast));
        let Err(Refusal::Conflict(m)) = bind_override(&l2, Some(&shown), tx()) else {
            panic!("a conflict");
        };
        assert!(m.contains(&Uuid::from_u128(9).to_string()), "{m}");
        assert!(m.contains(&Uuid::from_u128(7).to_string()), "{m}");
    }

    /// Bound to what the lane shows, then the role's policy: the whole path of an override.
    #[test]
    fn officer_and_supervisor_overrides_of_the_shown_transaction() {
        let l1 = LaneId::parse("L1").expect("lane");
        // (role, shown, to, allowed)
        let cases = [
            (Officer, Fast, Standard, true),
            (Officer, Fast, Inspect, true),
            (Officer, Standard, Inspect, true),
            (Officer, Standard, Fast, false),
            (Officer, Inspect, Standard, false),
            (Officer, Inspect, Fast, false),
            (Supervisor, Inspect, Fast, true),
            (Supervisor, Standard, Fast, true),
        ];
        for (role, shown, to, allowed) in cases {
            let s = state("L1", 7, Some(shown));
            let current = bind_override(&l1, Some(&s), tx()).expect("bound");
            let got = check_action(role, &over(to), tx(), Some(current));
            assert_eq!(got.is_ok(), allowed, "{role} {shown} -> {to}: {got:?}");
        }
        // Relaxing needs a reason even for a supervisor.
        let blank = ActionKind::Override {
            to: Fast,
            reason: " ".into(),
            note: String::new(),
        };
        assert!(matches!(
            check_action(Supervisor, &blank, tx(), Some(Inspect)),
            Err(Refusal::Invalid(_))
        ));
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

    #[test]
    fn only_a_supervisor_closes_a_lane_and_only_with_a_reason() {
        assert!(check_lane_control(Supervisor, "resurfacing").is_ok());
        for role in [Officer, Operator] {
            assert!(matches!(
                check_lane_control(role, "resurfacing"),
                Err(Refusal::Forbidden(_))
            ));
        }
        assert!(matches!(
            check_lane_control(Supervisor, "  "),
            Err(Refusal::Invalid(m)) if m.contains("reason")
        ));
        assert!(matches!(
            check_lane_control(Supervisor, &"x".repeat(MAX_TEXT + 1)),
            Err(Refusal::Invalid(_))
        ));
    }
}
