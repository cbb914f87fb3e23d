//! The device supervisor: runs one task per configured device (`[[devices]]`: lane boards
//! and UHF modules; `[[llrp]]`: fixed readers) and changes the set at run time when a
//! reload adds, removes or changes one.
//!
//! Every device runs under its own child of the agent's shutdown token. Stopping one
//! cancels that token and waits (bounded by [`STOP_TIMEOUT`]) for its task to end, so a
//! moved board's old port is closed before the new task opens a port, and a board that
//! stays on the same path is never opened twice. Nothing acknowledged is lost by a stop: a
//! lane board's reads are in the read log before the board is acknowledged
//! ([`crate::readlog`]), and the board resends what was not acknowledged when the new
//! task opens the port. The assembler is not touched, so an open transaction on the lane
//! stays open across the change.
//!
//! Each device's health channels are in [`Devices`] (console, heartbeat) while it runs and
//! journaled by [`crate::journal::record_health`]; a lane board's command channel is in
//! [`Actuators`] while it runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::schema::DeviceHealth;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::actuators::Actuators;
use crate::config::{DeviceConfig, DeviceKind, LlrpReaderConfig};
use crate::journal::Journal;
use crate::live::{Devices, HealthReporter, LiveLanes};
use crate::readlog::ReadLog;
use crate::sources::AssemblerEvent;
use crate::sources::serial::{SerialDevice, run_lane_board_logged, run_uhf_module};

/// Longest a stopping device's task is waited for.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Queue of lane commands to one board (the board's link is quick; a few suffice).
const COMMAND_QUEUE: usize = 8;

/// A device to run: a serial device or an LLRP reader.
#[derive(Debug, Clone, PartialEq)]
enum Spec {
    Serial(DeviceConfig),
    Llrp(LlrpReaderConfig),
}

impl Spec {
    fn name(&self) -> &str {
        match self {
            Spec::Serial(d) => &d.name,
            Spec::Llrp(r) => &r.name,
        }
    }
}

#[derive(Debug)]
struct Running {
    spec: Spec,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Runs the configured devices; see the module documentation.
#[derive(Debug)]
pub struct DeviceSupervisor {
    parts: Parts,
    running: Mutex<HashMap<String, Running>>,
}

/// What the supervisor needs from the agent.
#[derive(Debug)]
pub struct Parts {
    pub events: mpsc::Sender<AssemblerEvent>,
    pub read_log: Arc<ReadLog>,
    pub actuators: Arc<Actuators>,
    pub devices: Devices,
    pub live: Arc<LiveLanes>,
    pub journal: Arc<Journal>,
    pub tracker: TaskTracker,
    pub shutdown: CancellationToken,
}

impl DeviceSupervisor {
    /// A supervisor running nothing yet.
    #[must_use]
    pub fn new(parts: Parts) -> Self {
        Self {
            parts,
            running: Mutex::new(HashMap::new()),
        }
    }

    /// Starts every device of a configuration (at agent start).
    pub fn start_all(&self, serial: &[DeviceConfig], llrp: &[LlrpReaderConfig]) {
        for spec in specs(serial, llrp) {
            self.start(spec);
        }
    }

    /// Makes the running devices those of `serial` and `llrp`: stops the devices removed
    /// or changed (waiting for each to end), then starts the added and changed ones.
    pub async fn apply(&self, serial: &[DeviceConfig], llrp: &[LlrpReaderConfig]) {
        let wanted = specs(serial, llrp);
        let stopping: Vec<Running> = {
            let Ok(mut running) = self.running.lock() else {
                return;
            };
            let gone: Vec<String> = running
                .iter()
                .filter(|(name, r)| !wanted.iter().any(|w| w.name() == *name && *w == r.spec))
                .map(|(name, _)| name.clone())
                .collect();
            gone.iter().filter_map(|n| running.remove(n)).collect()
        };
        for r in stopping {
            self.stop(r).await;
        }
        if self.parts.shutdown.is_cancelled() {
            return;
        }
        for spec in wanted {
            let started = self
                .running
                .lock()
                .map(|r| r.contains_key(spec.name()))
                .unwrap_or(true);
            if !started {
                self.start(spec);
            }
        }
    }

    async fn stop(&self, r: Running) {
        let name = r.spec.name().to_owned();
        // The pipeline stops commanding the board first: nothing is queued to a task that
        // is ending.
        self.parts.actuators.remove_link(&name);
        r.stop.cancel();
        if tokio::time::timeout(STOP_TIMEOUT, r.task).await.is_err() {
            tracing::warn!(device = %name, timeout = ?STOP_TIMEOUT, "device task did not stop in time; going on");
        }
        self.parts.devices.remove(&name);
        tracing::info!(device = %name, "device stopped (configuration reload)");
    }

    fn start(&self, spec: Spec) {
        let stop = self.parts.shutdown.child_token();
        let name = spec.name().to_owned();
        let (task, receivers) = match &spec {
            Spec::Serial(d) => self.start_serial(d, stop.clone()),
            Spec::Llrp(r) => crate::sources::llrp::spawn_reader(
                r,
                &self.parts.events,
                &self.parts.tracker,
                stop.clone(),
            ),
        };
        for rx in receivers {
            self.parts.tracker.spawn(crate::journal::record_health(
                self.parts.journal.clone(),
                rx.clone(),
                self.parts.shutdown.clone(),
            ));
            self.parts.devices.add(&name, rx);
        }
        if let Ok(mut running) = self.running.lock() {
            running.insert(name, Running { spec, stop, task });
        }
    }

    fn start_serial(
        &self,
        d: &DeviceConfig,
        stop: CancellationToken,
    ) -> (JoinHandle<()>, Vec<watch::Receiver<DeviceHealth>>) {
        let (reporter, rx) = HealthReporter::new(&d.name, Some(d.lane.clone()));
        let (DeviceKind::LaneBoard { path, baud } | DeviceKind::UhfModule { path, baud }) = &d.kind;
        let dev = SerialDevice {
            name: d.name.clone(),
            lane: d.lane.clone(),
            path: path.clone(),
            baud: *baud,
            silence_timeout: d.silence_timeout,
            reopen_backoff_max: d.reopen_backoff_max,
        };
        let task = match d.kind {
            DeviceKind::LaneBoard { .. } => {
                let (tx, commands) = mpsc::channel(COMMAND_QUEUE);
                // A board started while its lane shows a decision or a closure is told
                // at once; the commands wait in the queue until the port is open.
                if let Some(shown) = self.parts.live.get(&d.lane).and_then(|l| l.shown) {
                    let _ = tx.try_send(crate::actuators::command_for(&shown));
                }
                self.parts.actuators.add_link(&d.name, d.lane.clone(), tx);
                self.parts.tracker.spawn(run_lane_board_logged(
                    dev,
                    self.parts.events.clone(),
                    Some(self.parts.read_log.clone()),
                    commands,
                    reporter,
                    stop,
                ))
            }
            DeviceKind::UhfModule { .. } => self.parts.tracker.spawn(run_uhf_module(
                dev,
                self.parts.events.clone(),
                reporter,
                stop,
            )),
        };
        (task, vec![rx])
    }
}

fn specs(serial: &[DeviceConfig], llrp: &[LlrpReaderConfig]) -> Vec<Spec> {
    serial
        .iter()
        .cloned()
        .map(Spec::Serial)
        .chain(llrp.iter().cloned().map(Spec::Llrp))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_config::with;

    fn module(path: &str) -> String {
        format!(
            "\n[[devices]]\nname = \"L1-uhf\"\nlane = \"L1\"\nkind = \"uhf_module\"\npath = \"{path}\"\n"
        )
    }

    fn names(devices: &Devices) -> Vec<String> {
        devices.health().into_iter().map(|h| h.device).collect()
    }

    #[tokio::test]
    async fn devices_follow_the_configuration_without_duplicates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::Store::open(
            &dir.path().join("agent.redb"),
            protocol::schema::GateId::parse("G1").expect("gate id"),
        )
        .expect("store");
        let (journal, _health, _writer) = Journal::start(store.clone());
        let (read_log, _log_writer) = ReadLog::start(store);
        let (events, _rx) = mpsc::channel(8);
        let devices = Devices::default();
        let shutdown = CancellationToken::new();
        let cfg = with("");
        let supervisor = DeviceSupervisor::new(Parts {
            events,
            read_log: Arc::new(read_log),
            actuators: Arc::new(Actuators::new(None)),
            devices: devices.clone(),
            live: Arc::new(LiveLanes::new(&cfg.lanes)),
            journal,
            tracker: TaskTracker::new(),
            shutdown: shutdown.clone(),
        });
        supervisor.start_all(&cfg.devices, &cfg.llrp);
        assert!(names(&devices).is_empty());

        // No such port: the module stays down and keeps retrying, which is enough here.
        let missing = dir.path().join("no-such-port");
        let one = with(&module(&missing.to_string_lossy()));
        supervisor.apply(&one.devices, &one.llrp).await;
        assert_eq!(names(&devices), vec!["L1-uhf".to_string()]);

        let moved = with(&module(&dir.path().join("moved").to_string_lossy()));
        supervisor.apply(&moved.devices, &moved.llrp).await;
        assert_eq!(
            names(&devices),
            vec!["L1-uhf".to_string()],
            "a changed device is replaced, not added twice"
        );
        let spec = supervisor
            .running
            .lock()
            .expect("lock")
            .get("L1-uhf")
            .map(|r| r.spec.clone());
        assert_eq!(spec, Some(Spec::Serial(moved.devices[0].clone())));

        let none = with("");
        supervisor.apply(&none.devices, &none.llrp).await;
        assert!(names(&devices).is_empty(), "{:?}", names(&devices));
        assert!(supervisor.running.lock().expect("lock").is_empty());
        shutdown.cancel();
    }
}
