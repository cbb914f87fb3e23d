//! [`AppState`]: what the console's router serves from, built from the agent's parts (the
//! runtime builds it from the running agent; a test builds it from a store in a temporary
//! directory and drives the router with `oneshot`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use metrics_exporter_prometheus::PrometheusHandle;
use protocol::schema::{DeviceHealth, GateId, LaneId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::actuators::Actuators;
use crate::assembler::AssemblerEvent;
use crate::clock::Clock;
use crate::config::LaneConfig;
use crate::console::auth::Console;
use crate::journal::Journal;
use crate::live::{Devices, LiveLanes};
use crate::store::Store;

/// The console's state. Cheap to clone (every part is shared).
#[derive(Debug, Clone)]
pub struct AppState {
    /// This gate.
    pub gate: GateId,
    /// Lanes as configured.
    pub lanes: Arc<[LaneConfig]>,
    /// The policy's replica staleness bound (for the freshness shown).
    pub staleness_bound: Duration,
    /// The store (history, replica, accounts).
    pub store: Store,
    /// Where officer actions are written.
    pub journal: Arc<Journal>,
    /// Live lane states.
    pub live: Arc<LiveLanes>,
    /// Health of every device.
    pub devices: Devices,
    /// Lane outputs (an officer's override).
    pub actuators: Arc<Actuators>,
    /// Into the assembler (manual entries).
    pub events: mpsc::Sender<AssemblerEvent>,
    /// Prometheus rendering.
    pub metrics: PrometheusHandle,
    /// Whether a central is configured (a growing backlog then means it is unreachable).
    pub central_configured: bool,
    /// The gate's clock against central's (the console's clock banner).
    pub clock: Arc<Clock>,
    /// Ends the live feeds at shutdown.
    pub shutdown: CancellationToken,
    /// Accounts, sessions, login limits.
    pub console: Arc<Console>,
}

impl AppState {
    /// The configuration of `lane`.
    #[must_use]
    pub fn lane(&self, lane: &LaneId) -> Option<&LaneConfig> {
        self.lanes.iter().find(|l| &l.id == lane)
    }

    /// Current device healths.
    #[must_use]
    pub fn device_health(&self) -> Vec<DeviceHealth> {
        self.devices.health()
    }
}

impl FromRef<AppState> for Arc<Journal> {
    fn from_ref(state: &AppState) -> Self {
        state.journal.clone()
    }
}

impl FromRef<AppState> for Arc<Console> {
    fn from_ref(state: &AppState) -> Self {
        state.console.clone()
    }
}
