//! A lane decision for tests, shared by the library's unit tests and the integration
//! tests (`tests/common` includes this file).

use jiff::Timestamp;
use protocol::schema::{Decision, GateId, LaneDecision, LaneId, ReplicaFreshness, SCHEMA_VERSION};
use uuid::Uuid;

/// `decision` on `route` for transaction `transaction_id` at `gate`'s `lane`, decided at
/// `decided_at` on a fresh replica at sequence 1; no reasons, consignments or parties, not
/// a priority, policy `test`.
pub fn decision(
    transaction_id: Uuid,
    gate: GateId,
    lane: LaneId,
    decision: LaneDecision,
    route: &str,
    decided_at: Timestamp,
) -> Decision {
    Decision {
        v: SCHEMA_VERSION,
        transaction_id,
        gate,
        lane,
        decision,
        route: route.into(),
        reasons: vec![],
        priority: false,
        decided_at,
        replica: ReplicaFreshness {
            sequence: 1,
            as_of: None,
            age_s: None,
            stale: false,
        },
        consignments: vec![],
        parties: vec![],
        policy: "test".into(),
    }
}
