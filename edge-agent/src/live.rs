//! What every lane is doing now (the open transaction, the last decision, what the lane
//! shows) and the health of every device: the live state the pipeline writes and the
//! console, the API and the heartbeat read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use jiff::Timestamp;
use protocol::schema::{Decision, DeviceHealth, GateTransaction, LaneId, LaneState};
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::config::LaneConfig;
use crate::store::LaneClosure;

/// What a lane is doing, for the console and its live view.
#[derive(Debug, Clone, Serialize)]
pub struct LaneLive {
    /// The lane.
    pub lane: LaneId,
    /// Its configured name.
    pub name: String,
    /// The transaction being assembled, if a truck is in the lane.
    pub open: Option<GateTransaction>,
    /// The last decision made on this lane.
    pub last_decision: Option<Decision>,
    /// What the lane shows now (the last decision, or an officer's override).
    pub shown: Option<LaneState>,
    /// Reads that arrived with no open transaction on a lane with a loop, since start.
    pub orphan_reads: u64,
    /// Set while a supervisor has the lane closed: why, by whom, since when.
    pub closed: Option<LaneClosure>,
    /// Trucks refused at this lane while it was closed, since start.
    pub refusals: u64,
    /// When any of this changed.
    pub updated_at: Timestamp,
}

impl LaneLive {
    /// A configured lane with nothing happening on it.
    fn idle(l: &LaneConfig, now: Timestamp) -> Self {
        Self {
            lane: l.id.clone(),
            name: l.name.clone(),
            open: None,
            last_decision: None,
            shown: None,
            orphan_reads: 0,
            closed: None,
            refusals: 0,
            updated_at: now,
        }
    }
}

/// Live lane states with a broadcast of every change (the console's SSE feed).
#[derive(Debug)]
pub struct LiveLanes {
    lanes: Mutex<HashMap<LaneId, LaneLive>>,
    updates: broadcast::Sender<LaneLive>,
    /// How many lanes are closed, kept under the lanes' lock by [`LiveLanes::set_closed`]
    /// and [`LiveLanes::set_lanes`] (the only writers of `closed`), so the pipeline's
    /// check before every event is one load, not a pass over every lane.
    closed: AtomicUsize,
}

impl LiveLanes {
    /// Every configured lane, idle.
    #[must_use]
    pub fn new(lanes: &[LaneConfig]) -> Self {
        let now = Timestamp::now();
        let map = lanes
            .iter()
            .map(|l| (l.id.clone(), LaneLive::idle(l, now)))
            .collect();
        Self {
            lanes: Mutex::new(map),
            updates: broadcast::channel(64).0,
            closed: AtomicUsize::new(0),
        }
    }

    /// Takes a new set of lanes (live reconfiguration): new lanes idle, removed lanes
    /// gone, kept lanes keep their state under their new name.
    pub fn set_lanes(&self, lanes: &[LaneConfig]) {
        let Ok(mut map) = self.lanes.lock() else {
            return;
        };
        let now = Timestamp::now();
        map.retain(|id, _| lanes.iter().any(|l| &l.id == id));
        self.closed.store(
            map.values().filter(|l| l.closed.is_some()).count(),
            Ordering::SeqCst,
        );
        for l in lanes {
            let live = map
                .entry(l.id.clone())
                .or_insert_with(|| LaneLive::idle(l, now));
            if live.name != l.name {
                live.name = l.name.clone();
                live.updated_at = now;
                self.announce(live);
            }
        }
    }

    /// Broadcasts `l` to the console's feeds; with none listening (no console open), the
    /// copy of the lane (its open transaction and last decision) is not made.
    fn announce(&self, l: &LaneLive) {
        if self.updates.receiver_count() > 0 {
            let _ = self.updates.send(l.clone());
        }
    }

    /// Applies `f` to `lane`'s state and broadcasts the result.
    pub fn update(&self, lane: &LaneId, f: impl FnOnce(&mut LaneLive)) {
        let Ok(mut lanes) = self.lanes.lock() else {
            return;
        };
        if let Some(l) = lanes.get_mut(lane) {
            f(l);
            l.updated_at = Timestamp::now();
            self.announce(l);
        }
    }

    /// Puts `state` on `lane`: `show` drives the lane (sign, barrier, topics) and the state
    /// is recorded, both under the lanes' lock, so two writers cannot leave the lane
    /// physically showing one state while the console records the other. Does nothing
    /// unless `only_if` holds for what the lane shows now, and nothing on a closed lane
    /// (only [`LiveLanes::set_closed`] changes what it shows); returns whether it was shown.
    pub fn show_if(
        &self,
        lane: &LaneId,
        state: LaneState,
        only_if: impl FnOnce(Option<&LaneState>) -> bool,
        show: impl FnOnce(&LaneState),
    ) -> bool {
        self.show_locked(lane, state, show, |l| {
            l.closed.is_none() && only_if(l.shown.as_ref())
        })
    }

    /// Closes (`Some`) or reopens (`None`) `lane`: records it and shows `state` (the closed
    /// state, or the safe state of a reopened lane) through `show`, under the lanes' lock.
    /// Returns `false` for a lane that is not configured.
    pub fn set_closed(
        &self,
        lane: &LaneId,
        closure: Option<LaneClosure>,
        state: LaneState,
        show: impl FnOnce(&LaneState),
    ) -> bool {
        self.show_locked(lane, state, show, |l| {
            match (l.closed.is_some(), closure.is_some()) {
                (false, true) => {
                    self.closed.fetch_add(1, Ordering::SeqCst);
                }
                (true, false) => {
                    self.closed.fetch_sub(1, Ordering::SeqCst);
                }
                _ => {}
            }
            l.closed = closure;
            true
        })
    }

    /// Under the lanes' lock: unless `ready` (which may change `lane`'s record) says no,
    /// shows `state` through `show`, records and announces it. Returns whether it was
    /// shown (`false` for a lane that is not configured).
    fn show_locked(
        &self,
        lane: &LaneId,
        state: LaneState,
        show: impl FnOnce(&LaneState),
        ready: impl FnOnce(&mut LaneLive) -> bool,
    ) -> bool {
        let Ok(mut lanes) = self.lanes.lock() else {
            return false;
        };
        let Some(l) = lanes.get_mut(lane) else {
            return false;
        };
        if !ready(l) {
            return false;
        }
        show(&state);
        l.shown = Some(state);
        l.updated_at = Timestamp::now();
        self.announce(l);
        true
    }

    /// Whether any lane is closed now.
    #[must_use]
    pub fn any_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst) > 0
    }

    /// The lanes closed now, with why.
    #[must_use]
    pub fn closed_lanes(&self) -> Vec<(LaneId, LaneClosure)> {
        self.lanes
            .lock()
            .map(|l| {
                l.values()
                    .filter_map(|x| x.closed.clone().map(|c| (x.lane.clone(), c)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether `lane` is closed now.
    #[must_use]
    pub fn is_closed(&self, lane: &LaneId) -> bool {
        self.lanes
            .lock()
            .ok()
            .and_then(|l| l.get(lane).map(|x| x.closed.is_some()))
            .unwrap_or(false)
    }

    /// Every lane, in configuration order of ids.
    #[must_use]
    pub fn snapshot(&self) -> Vec<LaneLive> {
        let mut v: Vec<LaneLive> = self
            .lanes
            .lock()
            .map(|l| l.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| a.lane.cmp(&b.lane));
        v
    }

    /// One lane.
    #[must_use]
    pub fn get(&self, lane: &LaneId) -> Option<LaneLive> {
        self.lanes.lock().ok()?.get(lane).cloned()
    }

    /// A receiver of every change.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<LaneLive> {
        self.updates.subscribe()
    }
}

/// The health of every device (serial ports, LLRP readers and their antennas, the MQTT
/// connection, the journal). Devices come and go with a reload ([`crate::devices`]).
/// Cheap to clone; clones share the list.
#[derive(Debug, Clone, Default)]
pub struct Devices(Arc<RwLock<Vec<DeviceEntry>>>);

/// One health channel and the configured device it belongs to (an LLRP antenna belongs
/// to its reader).
#[derive(Debug, Clone)]
struct DeviceEntry {
    owner: String,
    rx: watch::Receiver<DeviceHealth>,
}

impl Devices {
    /// Over these health channels, each its own owner.
    #[must_use]
    pub fn new(devices: Vec<watch::Receiver<DeviceHealth>>) -> Self {
        let d = Self::default();
        for rx in devices {
            let owner = rx.borrow().device.clone();
            d.add(&owner, rx);
        }
        d
    }

    /// Every device's current health.
    #[must_use]
    pub fn health(&self) -> Vec<DeviceHealth> {
        self.0
            .read()
            .map(|d| d.iter().map(|e| e.rx.borrow().clone()).collect())
            .unwrap_or_default()
    }

    /// The health channels (one per device).
    #[must_use]
    pub fn receivers(&self) -> Vec<watch::Receiver<DeviceHealth>> {
        self.0
            .read()
            .map(|d| d.iter().map(|e| e.rx.clone()).collect())
            .unwrap_or_default()
    }

    /// Adds a health channel of the configured device `owner`.
    pub fn add(&self, owner: &str, rx: watch::Receiver<DeviceHealth>) {
        if let Ok(mut d) = self.0.write() {
            d.push(DeviceEntry {
                owner: owner.to_owned(),
                rx,
            });
        }
    }

    /// Removes every health channel of the configured device `owner`.
    pub fn remove(&self, owner: &str) {
        if let Ok(mut d) = self.0.write() {
            d.retain(|e| e.owner != owner);
        }
    }
}

/// Publishes one device's health. `since` changes only when the device goes up or down, so
/// a console can say "down for 3 min" while the detail text keeps changing.
#[derive(Debug, Clone)]
pub struct HealthReporter {
    tx: watch::Sender<DeviceHealth>,
}

impl HealthReporter {
    /// A reporter for `device` on `lane`, starting down ("not opened yet").
    #[must_use]
    pub fn new(device: &str, lane: Option<LaneId>) -> (Self, watch::Receiver<DeviceHealth>) {
        let (tx, rx) = watch::channel(DeviceHealth {
            device: device.to_owned(),
            lane,
            up: false,
            detail: "not opened yet".into(),
            since: Timestamp::now(),
        });
        (Self { tx }, rx)
    }

    /// Another receiver of this device's health.
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<DeviceHealth> {
        self.tx.subscribe()
    }

    /// The device works; `detail` says how.
    pub fn up(&self, detail: impl Into<String>) {
        self.set(true, detail.into());
    }

    /// The device does not work; `detail` says why.
    pub fn down(&self, detail: impl Into<String>) {
        self.set(false, detail.into());
    }

    /// The current state.
    #[must_use]
    pub fn current(&self) -> DeviceHealth {
        self.tx.borrow().clone()
    }

    fn set(&self, up: bool, detail: String) {
        self.tx.send_if_modified(|h| {
            if h.up == up && h.detail == detail {
                return false;
            }
            if h.up != up {
                h.since = Timestamp::now();
                if up {
                    tracing::info!(device = %h.device, %detail, "device up");
                } else {
                    tracing::warn!(device = %h.device, %detail, "device down");
                }
            }
            h.up = up;
            h.detail = detail;
            true
        });
    }
}

/// The configured lanes, shared between the console and live reconfiguration
/// ([`crate::reload`]), which replaces them as a whole.
#[derive(Debug, Clone)]
pub struct Lanes(Arc<RwLock<Arc<[LaneConfig]>>>);

impl Lanes {
    /// The lanes now, in configuration order.
    #[must_use]
    pub fn get(&self) -> Arc<[LaneConfig]> {
        self.0
            .read()
            .map(|l| l.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Replaces the lanes.
    pub fn set(&self, lanes: &[LaneConfig]) {
        let new: Arc<[LaneConfig]> = lanes.to_vec().into();
        match self.0.write() {
            Ok(mut l) => *l = new,
            Err(e) => *e.into_inner() = new,
        }
    }
}

impl From<Vec<LaneConfig>> for Lanes {
    fn from(lanes: Vec<LaneConfig>) -> Self {
        Self(Arc::new(RwLock::new(lanes.into())))
    }
}
