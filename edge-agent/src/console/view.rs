//! What the screens show, gathered in one blocking pass over live state, the journal and
//! the replica (call from `spawn_blocking`).

use std::collections::BTreeMap;

use jiff::Timestamp;
use protocol::schema::{
    Consignment, Decision, DeviceHealth, GateTransaction, LaneDecision, LaneId, OfficerAction,
};

use crate::clock::ClockView;
use crate::live::LaneLive;
use crate::replica::ReplicaStatus;
use crate::replica::ReplicaView as _;
use crate::state::AppState;

/// An unacknowledged entry older than this means central is not taking events.
pub const CENTRAL_LATE_S: i64 = 30;

/// Gate-wide condition: replica freshness and delivery to central.
#[derive(Debug, Clone)]
pub struct GateStatus {
    /// Replica freshness.
    pub replica: ReplicaStatus,
    /// Journal entries central has not acknowledged.
    pub backlog: u64,
    /// Central configured and the oldest unacknowledged entry older than
    /// [`CENTRAL_LATE_S`].
    pub central_down: bool,
    /// Every device's health.
    pub devices: Vec<DeviceHealth>,
    /// The gate's clock against central's.
    pub clock: ClockView,
}

/// Gate-wide status now.
#[must_use]
pub fn gate_status(shared: &AppState) -> GateStatus {
    let meta = shared.store.replica_meta();
    let backlog = shared.store.backlog();
    let central_down = shared.central_configured
        && backlog > 0
        && shared
            .store
            .oldest_unacked_at()
            .is_some_and(|t| Timestamp::now().as_second() - t.as_second() > CENTRAL_LATE_S);
    GateStatus {
        replica: ReplicaStatus::of(&meta, Timestamp::now(), shared.staleness_bound_now()),
        backlog,
        central_down,
        devices: shared.device_health(),
        clock: shared.clock.view(),
    }
}

impl GateStatus {
    /// Devices of `lane` (and lane-less ones) that are down.
    #[must_use]
    pub fn down_for(&self, lane: &LaneId) -> Vec<&DeviceHealth> {
        self.devices
            .iter()
            .filter(|d| !d.up && d.lane.as_ref().is_none_or(|l| l == lane))
            .collect()
    }

    /// Whether `lane` works less than fully.
    #[must_use]
    pub fn degraded(&self, lane: &LaneId) -> bool {
        self.replica.stale
            || self.central_down
            || !self.clock.trusted
            || !self.down_for(lane).is_empty()
    }
}

/// One lane for the officer: live state, the transaction on screen and what was declared.
#[derive(Debug, Clone)]
pub struct LaneView {
    /// Live state.
    pub live: LaneLive,
    /// The truck on screen: the open transaction, else the last decided one.
    pub transaction: Option<GateTransaction>,
    /// Whether `transaction` is still being read.
    pub reading: bool,
    /// The decision of `transaction`, when decided.
    pub decision: Option<Decision>,
    /// Officer actions on it.
    pub actions: Vec<OfficerAction>,
    /// Consignments declaring the containers read, by container number.
    pub declared: BTreeMap<String, Consignment>,
}

/// Gathers one lane's view.
#[must_use]
pub fn lane_view(shared: &AppState, lane: &LaneId) -> Option<LaneView> {
    let live = shared.live.get(lane)?;
    let (transaction, reading, decision, actions) = match (&live.open, &live.last_decision) {
        (Some(open), _) => (Some(open.clone()), true, None, Vec::new()),
        (None, Some(d)) => match shared.store.transaction(&d.transaction_id) {
            Ok(Some((tx, dec, actions))) => (Some(tx), false, dec.or(Some(d.clone())), actions),
            _ => (None, false, Some(d.clone()), Vec::new()),
        },
        (None, None) => (None, false, None, Vec::new()),
    };
    let mut declared = BTreeMap::new();
    if let (Some(tx), Ok(replica)) = (&transaction, shared.store.replica_view()) {
        for c in tx.containers() {
            if let Some(cons) = replica.consignment_for(&c) {
                declared.insert(c.to_string(), cons);
            }
        }
    }
    Some(LaneView {
        live,
        transaction,
        reading,
        decision,
        actions,
        declared,
    })
}

/// Trucks sent per route and the FAST share over the last hour, per lane and gate-wide.
#[derive(Debug, Clone, Default)]
pub struct HourFigures {
    /// `(lane, route) → count`.
    pub per_route: BTreeMap<(LaneId, String), u32>,
    /// `lane → (fast, all)`.
    pub per_lane: BTreeMap<LaneId, (u32, u32)>,
    /// `(fast, all)` over the gate.
    pub gate: (u32, u32),
}

impl HourFigures {
    /// FAST share in percent, `None` with no decisions.
    #[must_use]
    pub fn share((fast, all): (u32, u32)) -> Option<u32> {
        (all > 0).then(|| fast * 100 / all)
    }
}

/// Figures of the last hour from the newest journaled decisions.
#[must_use]
pub fn hour_figures(shared: &AppState) -> HourFigures {
    let mut f = HourFigures::default();
    let since = Timestamp::now().as_second() - 3600;
    let rows = shared
        .store
        .recent_transactions(None, None, 500)
        .unwrap_or_default();
    for (_, d) in rows {
        let Some(d) = d else { continue };
        if d.decided_at.as_second() < since {
            continue;
        }
        *f.per_route
            .entry((d.lane.clone(), d.route.clone()))
            .or_default() += 1;
        let fast = u32::from(d.decision == LaneDecision::Fast);
        let e = f.per_lane.entry(d.lane.clone()).or_default();
        e.0 += fast;
        e.1 += 1;
        f.gate.0 += fast;
        f.gate.1 += 1;
    }
    f
}
