//! The lane decision: a pure function of (gate transaction, replica view, policy, time).

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use protocol::container::ContainerNumber;
use protocol::operator::{OperatorId, Programme};
use protocol::schema::{
    ChangeBatch, Consignment, Decision, GateTransaction, LaneDecision, MraRecord, PartyRole,
    RegistryRecord, ReplicaFreshness, SCHEMA_VERSION,
};

use crate::config::Routes;

/// Decision policy (the `[policy]` section of the configuration).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    pub staleness_bound: Duration,
    pub required_roles: Vec<PartyRole>,
    pub home_programmes: Vec<Programme>,
    pub random_rate_aeo: f64,
    pub random_rate_other: f64,
    pub random_key: String,
    pub eseal_low_battery_is_reason: bool,
}

impl Policy {
    /// Name plus a short hash of the settings.
    #[must_use]
    pub fn id(&self) -> String {
        self.name.clone()
    }
}

/// Read access to the registry replica.
pub trait ReplicaView {
    fn operator(&self, id: &OperatorId) -> Option<RegistryRecord>;
    fn consignment_for(&self, c: &ContainerNumber) -> Option<Consignment>;
    fn mras(&self) -> Vec<MraRecord>;
    fn sequence(&self) -> u64;
    fn as_of(&self) -> Option<Timestamp>;
}

/// An in-memory replica for tests and benchmarks.
#[derive(Debug, Clone, Default)]
pub struct MemoryReplica {
    operators: HashMap<OperatorId, RegistryRecord>,
    consignments: HashMap<String, Consignment>,
    mras: Vec<MraRecord>,
    sequence: u64,
    as_of: Option<Timestamp>,
}

impl MemoryReplica {
    /// An empty, never-loaded replica.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl ReplicaView for MemoryReplica {
    fn operator(&self, id: &OperatorId) -> Option<RegistryRecord> {
        self.operators.get(id).cloned()
    }
    fn consignment_for(&self, c: &ContainerNumber) -> Option<Consignment> {
        self.consignments
            .values()
            .find(|k| k.containers.iter().any(|d| &d.number == c))
            .cloned()
    }
    fn mras(&self) -> Vec<MraRecord> {
        self.mras.clone()
    }
    fn sequence(&self) -> u64 {
        self.sequence
    }
    fn as_of(&self) -> Option<Timestamp> {
        self.as_of
    }
}

/// Decides the lane for a closed gate transaction.
#[must_use]
pub fn decide(
    tx: &GateTransaction,
    replica: &dyn ReplicaView,
    policy: &Policy,
    routes: &Routes,
    now: Timestamp,
) -> Decision {
    Decision {
        v: SCHEMA_VERSION,
        transaction_id: tx.id,
        gate: tx.gate.clone(),
        lane: tx.lane.clone(),
        decision: LaneDecision::Standard,
        route: routes.standard.clone(),
        reasons: Vec::new(),
        priority: false,
        decided_at: now,
        replica: ReplicaFreshness {
            sequence: replica.sequence(),
            as_of: replica.as_of(),
            age_s: None,
            stale: true,
        },
        consignments: Vec::new(),
        parties: Vec::new(),
        policy: policy.id(),
    }
}

#[allow(dead_code)]
fn _unused(_: &ChangeBatch) {}
