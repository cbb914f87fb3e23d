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
pub use crate::live::Lanes;
use crate::live::{Devices, LiveLanes};
use crate::store::Store;

/// The console's state. Cheap to clone (every part is shared).
#[derive(Debug, Clone)]
pub struct AppState {
    /// This gate.
    pub gate: GateId,
    /// Lanes as configured now (a live reconfiguration replaces them).
    pub lanes: Lanes,
    /// The policy's replica staleness bound at start (for the freshness shown; see
    /// [`AppState::staleness_bound_now`]).
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
    /// The last live reconfiguration's outcome ([`crate::reload`]).
    pub reload: Arc<crate::reload::ReloadStatus>,
}

impl AppState {
    /// The policy's replica staleness bound in force (a live reconfiguration may have
    /// changed it since start).
    #[must_use]
    pub fn staleness_bound_now(&self) -> Duration {
        self.reload
            .staleness_bound()
            .unwrap_or(self.staleness_bound)
    }

    /// The configuration of `lane`, as configured now.
    #[must_use]
    pub fn lane(&self, lane: &LaneId) -> Option<LaneConfig> {
        self.lanes.get().iter().find(|l| &l.id == lane).cloned()
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
