//! The running agent: wires sources → assembler → decider → journal → actuators, the
//! uplink and replication clients, and the console API.
//!
//! ```text
//! serial / MQTT sources ──(bounded mpsc, send().await)──> assembler task
//!   assembler task: handle / tick → on close: decide (replica snapshot, spawn_blocking)
//!                   → Store::append([Transaction, Decision]) durable → actuators
//!   device health (watch) ──> journal on up/down ──> uplink ──> central
//!   replication ──> Store::apply_batch          console API (axum) reads Shared
//! ```
//!
//! Shutdown ([`CancellationToken`]): sources stop; the assembler drains what was queued,
//! closes open transactions (`SHUTDOWN`), decides and journals them (without moving the
//! lane: the board falls back to its safe state when the link goes quiet); the uplink makes
//! a last attempt; the console stops (SSE streams end on the token; serving is bounded by
//! a timeout). [`AgentHandle::join`] resolves when all of it is done.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use jiff::Timestamp;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use protocol::schema::{
    Decision, DeviceHealth, EventBody, GateId, GateTransaction, JournalEntry, LaneDecision, LaneId,
    Read, Reason, ReasonCode,
};
use serde::Serialize;
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::actuators::Actuators;
use crate::assembler::{Assembler, AssemblerEvent, AssemblerOutput};
use crate::config::{Config, DeviceKind, LaneConfig};
use crate::decider::{MemoryReplica, Policy, decide};
use crate::sources::HealthReporter;
use crate::sources::mqtt::{LaneState, MqttLink};
use crate::sources::serial::{SerialDevice, run_lane_board, run_uhf_module};
use crate::store::{JournalError, Store};

/// Capacity of the source → assembler channel. Small on purpose: the assembler is fast,
/// and a full queue slows sources down instead of losing reads.
const EVENT_QUEUE: usize = 64;

/// Longest the assembler task sleeps between timer checks. It wakes at the assembler's
/// next deadline ([`Assembler::next_deadline`]), so this only bounds the effect of a wall
/// clock that jumps.
const TICK: Duration = Duration::from_secs(1);

/// Longest a clean stop waits for central to take the last of the journal.
const FINAL_FLUSH: Duration = Duration::from_secs(5);

/// Longest the console is given to finish requests at shutdown.
const SERVE_GRACE: Duration = Duration::from_secs(3);

/// Most append requests the journal writer queues before callers wait to send.
const JOURNAL_QUEUE: usize = 1024;

/// Most bodies one group commit takes, so that a burst is written in bounded
/// transactions (each a few hundred kB of JSON) and the first caller is not kept waiting
/// for an unbounded batch.
const JOURNAL_GROUP_MAX_BODIES: usize = 512;

/// One caller's records, answered only after the commit that holds them.
struct AppendRequest {
    bodies: Vec<EventBody>,
    at: Timestamp,
    reply: tokio::sync::oneshot::Sender<Result<Vec<JournalEntry>, JournalError>>,
}

/// The agent's one journal writer: a task that takes every append request queued while
/// the previous commit was on disk and writes them in one durable write transaction
/// ([`Store::append_groups`]: group commit, one fsync for all of them), then answers each
/// caller. A caller acts only after its answer, so "journal, then act" holds for each
/// record; under a burst (a replay, several lanes closing at once) the journal runs at the
/// group rate instead of one fsync per decision (docs/benchmarks.md, figure 3).
#[derive(Debug)]
pub struct JournalWriter {
    store: Store,
    queue: Mutex<Option<mpsc::Sender<AppendRequest>>>,
    /// Group commits made by the task (for the benchmark and the metrics).
    commits: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for AppendRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendRequest")
            .field("bodies", &self.bodies.len())
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

impl JournalWriter {
    /// Starts the writer task on the current tokio runtime. It runs until
    /// [`JournalWriter::close`] and then finishes what was queued; the handle resolves
    /// when it has.
    #[must_use]
    pub fn start(store: Store) -> (JournalWriter, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(JOURNAL_QUEUE);
        let commits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let task = tokio::spawn(journal_writer_task(store.clone(), rx, commits.clone()));
        (
            JournalWriter {
                store,
                queue: Mutex::new(Some(tx)),
                commits,
            },
            task,
        )
    }

    /// Group commits the writer task has made so far (successful or not).
    #[must_use]
    pub fn commits(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Journals `bodies` durably, grouped with whatever else is queued; returns this
    /// call's entries once they are on disk. After [`JournalWriter::close`] it appends on
    /// its own (one commit per call).
    ///
    /// # Errors
    /// The store's [`JournalError`] (nothing of this call was written then), or
    /// [`JournalError::WriterStopped`] when the writer ended without an answer.
    pub async fn append(
        &self,
        bodies: Vec<EventBody>,
        at: Timestamp,
    ) -> Result<Vec<JournalEntry>, JournalError> {
        let queue = self.queue.lock().ok().and_then(|q| q.clone());
        if let Some(queue) = queue {
            let (reply, answer) = tokio::sync::oneshot::channel();
            match queue.send(AppendRequest { bodies, at, reply }).await {
                Ok(()) => return answer.await.unwrap_or(Err(JournalError::WriterStopped)),
                // Closed meanwhile: nothing was queued, write directly below.
                Err(mpsc::error::SendError(req)) => {
                    return self.append_direct(req.bodies, at).await;
                }
            }
        }
        self.append_direct(bodies, at).await
    }

    async fn append_direct(
        &self,
        bodies: Vec<EventBody>,
        at: Timestamp,
    ) -> Result<Vec<JournalEntry>, JournalError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.append(bodies, at))
            .await
            .unwrap_or(Err(JournalError::WriterStopped))
    }

    /// Stops taking requests into groups; the task writes what is queued and ends.
    pub fn close(&self) {
        if let Ok(mut q) = self.queue.lock() {
            q.take();
        }
    }
}

async fn journal_writer_task(
    store: Store,
    mut rx: mpsc::Receiver<AppendRequest>,
    commits: Arc<std::sync::atomic::AtomicU64>,
) {
    while let Some(first) = rx.recv().await {
        let mut bodies = first.bodies.len();
        let mut group = vec![first];
        while bodies < JOURNAL_GROUP_MAX_BODIES {
            match rx.try_recv() {
                Ok(req) => {
                    bodies += req.bodies.len();
                    group.push(req);
                }
                Err(_) => break,
            }
        }
        let store = store.clone();
        // A panic in the commit drops every reply: callers see `WriterStopped`.
        let _ = tokio::task::spawn_blocking(move || commit_group(&store, group)).await;
        commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Writes a group in one transaction and answers each caller. Nothing of a failed group
/// is written, and every caller gets the failure (and holds its records).
fn commit_group(store: &Store, group: Vec<AppendRequest>) {
    metrics::histogram!("aeogate_journal_group_requests").record(group.len() as f64);
    let (inputs, replies): (Vec<_>, Vec<_>) = group
        .into_iter()
        .map(|r| ((r.bodies, r.at), r.reply))
        .unzip();
    match store.append_groups(inputs) {
        Ok(entries) => {
            for (reply, e) in replies.into_iter().zip(entries) {
                let _ = reply.send(Ok(e));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.for_group_member()));
            }
        }
    }
}

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
    /// When any of this changed.
    pub updated_at: Timestamp,
}

/// Live lane states with a broadcast of every change (the console's SSE feed).
#[derive(Debug)]
pub struct LiveLanes {
    lanes: Mutex<HashMap<LaneId, LaneLive>>,
    updates: broadcast::Sender<LaneLive>,
}

impl LiveLanes {
    fn new(lanes: &[LaneConfig]) -> Self {
        let now = Timestamp::now();
        let map = lanes
            .iter()
            .map(|l| {
                (
                    l.id.clone(),
                    LaneLive {
                        lane: l.id.clone(),
                        name: l.name.clone(),
                        open: None,
                        last_decision: None,
                        shown: None,
                        orphan_reads: 0,
                        updated_at: now,
                    },
                )
            })
            .collect();
        Self {
            lanes: Mutex::new(map),
            updates: broadcast::channel(64).0,
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
            let _ = self.updates.send(l.clone());
        }
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

/// State shared by the pipeline, the background clients and the console.
#[derive(Debug)]
pub struct Shared {
    /// This gate.
    pub gate: GateId,
    /// Replication scope (port of entry code).
    pub port: String,
    /// Lanes as configured.
    pub lanes: Vec<LaneConfig>,
    /// Decision policy.
    pub policy: Policy,
    /// The store.
    pub store: Store,
    /// Lane outputs.
    pub actuators: Actuators,
    /// Live lane states.
    pub live: LiveLanes,
    /// Health of every device (serial ports, the MQTT connection).
    pub devices: Vec<watch::Receiver<DeviceHealth>>,
    /// Into the assembler (manual entries from the console).
    pub events: mpsc::Sender<AssemblerEvent>,
    /// Woken after every journal append (the uplink waits on it).
    pub journal_appended: Notify,
    /// Prometheus rendering.
    pub metrics: PrometheusHandle,
    /// Whether a central is configured (replica freshness matters).
    pub central_configured: bool,
    /// Stops everything.
    pub shutdown: CancellationToken,
    /// Records the journal could not take (a full disk), oldest first, written again as
    /// soon as it can; see [`Shared::journal_failed`].
    pub held: Mutex<std::collections::VecDeque<Vec<EventBody>>>,
    /// The journal's own health, shown like a device: down while records are held.
    pub journal_health: crate::sources::HealthReporter,
    /// Every journal write of the running agent goes through it (group commit).
    pub journal_writer: JournalWriter,
}

/// Most groups of records held in memory while the journal refuses writes (about a day
/// of a busy lane); past it the oldest are dropped, counted and logged.
const HELD_MAX: usize = 20_000;

/// How often held records are offered to the journal again.
const HELD_RETRY: Duration = Duration::from_secs(2);

impl Shared {
    /// Called when the journal refused `bodies`: raise the alarm and hold them.
    pub fn journal_failed(&self, error: &crate::store::JournalError, bodies: Vec<EventBody>) {
        metrics::counter!("aeogate_journal_write_failures_total").increment(1);
        metrics::gauge!("aeogate_journal_alarm").set(1.0);
        tracing::error!(error = %error, "ALARM: the journal refuses writes; decisions continue without priority and records are held in memory");
        self.journal_health
            .down(format!("journal refuses writes: {error}"));
        if let Ok(mut held) = self.held.lock() {
            if held.len() >= HELD_MAX {
                held.pop_front();
                metrics::counter!("aeogate_journal_held_dropped_total").increment(1);
                tracing::error!("held-record buffer full: the oldest held records are dropped");
            }
            held.push_back(bodies);
        }
    }

    /// The configuration of `lane`.
    #[must_use]
    pub fn lane(&self, lane: &LaneId) -> Option<&LaneConfig> {
        self.lanes.iter().find(|l| &l.id == lane)
    }

    /// Journals `bodies` durably (one write transaction) and wakes the uplink.
    ///
    /// # Errors
    /// When the store refuses the write (nothing was journaled then).
    pub async fn journal(&self, bodies: Vec<EventBody>) -> anyhow::Result<Vec<JournalEntry>> {
        let entries = self
            .journal_writer
            .append(bodies, Timestamp::now())
            .await
            .context("journal append failed")?;
        self.journal_appended.notify_waiters();
        metrics::gauge!("aeogate_journal_head").set(self.store.journal_head() as f64);
        Ok(entries)
    }

    /// Current device healths.
    #[must_use]
    pub fn device_health(&self) -> Vec<DeviceHealth> {
        self.devices.iter().map(|d| d.borrow().clone()).collect()
    }
}

/// The process-wide Prometheus recorder: installed once; later agents in the same process
/// (tests) share it.
#[must_use]
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ])
                .map_or_else(
                    |_| PrometheusBuilder::new().build_recorder(),
                    |b| b.build_recorder(),
                );
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::debug!("a metrics recorder was already installed; this one stays unused");
            }
            handle
        })
        .clone()
}

/// A started agent.
#[derive(Debug)]
pub struct AgentHandle {
    /// Where the console listens (the real port when configured with port 0).
    pub console_addr: SocketAddr,
    /// Shared state (for tests and embedding).
    pub shared: Arc<Shared>,
    /// Resolves when the agent has stopped.
    pub join: JoinHandle<anyhow::Result<()>>,
}

/// Runs the agent until `shutdown` is cancelled.
///
/// # Errors
/// Startup failures (store, console bind, central client); errors of tasks at the end.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let handle = start(cfg, shutdown).await?;
    handle.join.await.context("agent task panicked")?
}

/// Starts the agent and returns once the console is listening.
///
/// # Errors
/// The store cannot be opened, the console address cannot be bound, or the central
/// client configuration is refused (plain http to a non-loopback host, unreadable CA).
pub async fn start(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<AgentHandle> {
    let metrics = metrics_handle();
    let store = {
        let path = cfg.store.path.clone();
        let gate = cfg.gate.id.clone();
        tokio::task::spawn_blocking(move || Store::open(&path, gate))
            .await
            .context("store open task panicked")?
            .with_context(|| format!("cannot open the store at {}", cfg.store.path.display()))?
    };
    store.set_journal_limit(cfg.store.max_journal_bytes);
    // Everything that can fail at startup happens before any task is spawned, so a
    // failed start leaves nothing running.
    let listener = tokio::net::TcpListener::bind(cfg.console.bind)
        .await
        .with_context(|| format!("cannot bind the console to {}", cfg.console.bind))?;
    let console_addr = listener.local_addr().context("console address")?;
    let central = match &cfg.central {
        Some(c) => Some(crate::uplink::CentralClient::new(c, &cfg.gate.id)?),
        None => None,
    };

    let tracker = TaskTracker::new();
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let mut devices = Vec::new();
    let mut link_commands = Vec::new();
    for d in &cfg.devices {
        let (reporter, rx) = HealthReporter::new(&d.name, Some(d.lane.clone()));
        devices.push(rx);
        let (path, baud) = match &d.kind {
            DeviceKind::LaneBoard { path, baud } | DeviceKind::UhfModule { path, baud } => {
                (path.clone(), *baud)
            }
        };
        let dev = SerialDevice {
            name: d.name.clone(),
            lane: d.lane.clone(),
            path,
            baud,
            silence_timeout: d.silence_timeout,
            reopen_backoff_max: d.reopen_backoff_max,
        };
        match d.kind {
            DeviceKind::LaneBoard { .. } => {
                let (tx, rx) = mpsc::channel(8);
                link_commands.push((d.lane.clone(), tx));
                tracker.spawn(run_lane_board(
                    dev,
                    events_tx.clone(),
                    rx,
                    reporter,
                    shutdown.clone(),
                ));
            }
            DeviceKind::UhfModule { .. } => {
                tracker.spawn(run_uhf_module(
                    dev,
                    events_tx.clone(),
                    reporter,
                    shutdown.clone(),
                ));
            }
        }
    }
    let mqtt = cfg.mqtt.as_ref().map(|m| {
        let (reporter, rx) = HealthReporter::new("mqtt", None);
        devices.push(rx);
        MqttLink::start(m, events_tx.clone(), reporter, shutdown.clone())
    });
    let (journal_health, journal_rx) = HealthReporter::new("journal", None);
    journal_health.up("writing");
    devices.push(journal_rx);
    let mut actuators = Actuators::new(mqtt.as_ref().map(|m| m.topics.clone()));
    for (lane, tx) in link_commands {
        actuators.add_link(lane, tx);
    }
    if let Some(m) = mqtt {
        tracker.spawn(async move {
            let _ = m.task.await;
        });
    }

    let (journal_writer, journal_writer_task) = JournalWriter::start(store.clone());
    let shared = Arc::new(Shared {
        gate: cfg.gate.id.clone(),
        port: cfg.gate.port.clone(),
        lanes: cfg.lanes.clone(),
        policy: cfg.policy.clone(),
        store,
        actuators,
        live: LiveLanes::new(&cfg.lanes),
        devices,
        events: events_tx,
        journal_appended: Notify::new(),
        metrics,
        central_configured: central.is_some(),
        shutdown: shutdown.clone(),
        held: Mutex::new(std::collections::VecDeque::new()),
        journal_health,
        journal_writer,
    });

    tracker.spawn(assembler_task(
        shared.clone(),
        Assembler::new(cfg.gate.id.clone(), &cfg.lanes),
        events_rx,
    ));
    for rx in shared.devices.clone() {
        tracker.spawn(health_journal_task(shared.clone(), rx));
    }
    tracker.spawn(gauge_task(shared.clone()));
    tracker.spawn(held_task(shared.clone()));
    let final_flush = central
        .clone()
        .zip(cfg.central.as_ref().map(|c| c.uplink_batch));
    if let (Some(client), Some(c)) = (central, cfg.central.clone()) {
        tracker.spawn(crate::uplink::run_uplink(
            shared.clone(),
            client.clone(),
            c.clone(),
        ));
        tracker.spawn(crate::replication::run_replication(
            shared.clone(),
            client,
            c,
        ));
    }

    tracing::info!(%console_addr, gate = %shared.gate, "console listening");
    let app = crate::api::app(shared.clone())?;
    let serve_shutdown = shutdown.clone();
    let server = tokio::spawn(async move {
        // Client addresses feed the console's login rate limiting.
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(serve_shutdown.cancelled_owned())
        .await
    });
    tracker.close();

    let join_shutdown = shutdown.clone();
    let join_shared = shared.clone();
    let join = tokio::spawn(async move {
        join_shutdown.cancelled().await;
        tracker.wait().await;
        if let Some((client, batch)) = final_flush {
            crate::uplink::final_flush(&join_shared, &client, batch, FINAL_FLUSH).await;
        }
        match tokio::time::timeout(SERVE_GRACE, server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "console server ended with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "console server task failed"),
            Err(_) => tracing::warn!("console still had open connections at shutdown; closed"),
        }
        // Every task that journals has ended: the writer finishes what is queued.
        join_shared.journal_writer.close();
        if journal_writer_task.await.is_err() {
            tracing::error!("the journal writer task failed at shutdown");
        }
        tracing::info!("agent stopped");
        Ok(())
    });
    Ok(AgentHandle {
        console_addr,
        shared,
        join,
    })
}

/// Offers held records to the journal again until it takes them, oldest first, and
/// clears the alarm when nothing is held any more.
async fn held_task(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(HELD_RETRY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            () = shared.shutdown.cancelled() => true,
            _ = tick.tick() => false,
        };
        loop {
            let next = shared.held.lock().ok().and_then(|h| h.front().cloned());
            let Some(bodies) = next else { break };
            let written = shared.journal_writer.append(bodies, Timestamp::now()).await;
            match written {
                Ok(_) => {
                    if let Ok(mut h) = shared.held.lock() {
                        h.pop_front();
                    }
                    shared.journal_appended.notify_waiters();
                }
                _ => break,
            }
        }
        let empty = shared.held.lock().map(|h| h.is_empty()).unwrap_or(false);
        if empty && !shared.journal_health.current().up {
            metrics::gauge!("aeogate_journal_alarm").set(0.0);
            shared
                .journal_health
                .up("writing again; held records journaled");
            tracing::warn!("the journal takes writes again; every held record is journaled");
        }
        if stopping {
            let left = shared.held.lock().map(|h| h.len()).unwrap_or(0);
            if left > 0 {
                tracing::error!(
                    left,
                    "stopping with records the journal would not take; they are lost"
                );
            }
            return;
        }
    }
}

async fn assembler_task(
    shared: Arc<Shared>,
    mut assembler: Assembler,
    mut rx: mpsc::Receiver<AssemblerEvent>,
) {
    loop {
        // Sleep until the earliest timer (a departure grace ending, a timeout, a held read
        // expiring), so a closing is decided when it is due, not at the next fixed tick.
        let wait = assembler.next_deadline().map_or(TICK, |at| {
            Duration::try_from(at.duration_since(Timestamp::now()))
                .unwrap_or(Duration::ZERO)
                .min(TICK)
        });
        let outputs = tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => {
                    // Whatever queued meanwhile (a burst) is taken too, so its closings
                    // are journaled as one group.
                    let mut outputs = assembler.handle(ev);
                    for _ in 0..EVENT_QUEUE {
                        let Ok(ev) = rx.try_recv() else { break };
                        outputs.extend(assembler.handle(ev));
                    }
                    outputs
                }
                None => break,
            },
            () = tokio::time::sleep(wait) => assembler.tick(Timestamp::now()),
            () = shared.shutdown.cancelled() => break,
        };
        process(&shared, &assembler, outputs, true).await;
    }
    // Whatever the sources had already queued is folded in before closing.
    while let Ok(ev) = rx.try_recv() {
        let outputs = assembler.handle(ev);
        process(&shared, &assembler, outputs, false).await;
    }
    let outputs = assembler.close_all(Timestamp::now());
    process(&shared, &assembler, outputs, false).await;
}

async fn process(
    shared: &Arc<Shared>,
    assembler: &Assembler,
    outputs: Vec<AssemblerOutput>,
    actuate: bool,
) {
    let mut closed: Vec<GateTransaction> = Vec::new();
    for out in outputs {
        if !matches!(out, AssemblerOutput::Closed(_)) && !closed.is_empty() {
            conclude_closed(shared, assembler, std::mem::take(&mut closed), actuate).await;
        }
        match out {
            AssemblerOutput::Opened { lane, .. } | AssemblerOutput::Updated { lane, .. } => {
                let open = assembler.open(&lane).cloned();
                shared.live.update(&lane, |l| l.open = open);
            }
            // Consecutive closings are concluded together (one journal group).
            AssemblerOutput::Closed(tx) => closed.push(tx),
            AssemblerOutput::OrphanRead(read) => {
                metrics::counter!("aeogate_orphan_reads_total", "lane" => read.lane.to_string())
                    .increment(1);
                tracing::info!(lane = %read.lane, device = %read.device, raw = %read.raw, "read with no truck in the lane");
                shared.live.update(&read.lane, |l| l.orphan_reads += 1);
                let lane = read.lane.clone();
                let body = EventBody::OrphanRead {
                    lane,
                    read: Read {
                        source: read.source,
                        device: read.device,
                        raw: read.raw,
                        value: read.value,
                        first_at: read.at,
                        last_at: read.at,
                        count: 1,
                        antenna: read.antenna,
                        rssi: read.rssi,
                        confidence: read.confidence,
                        entered_by: read.entered_by,
                    },
                };
                if let Err(e) = shared.journal(vec![body]).await {
                    tracing::error!(error = %format!("{e:#}"), "could not journal a read with no truck in the lane");
                }
            }
        }
    }
    if !closed.is_empty() {
        conclude_closed(shared, assembler, closed, actuate).await;
    }
}

async fn conclude_closed(
    shared: &Arc<Shared>,
    assembler: &Assembler,
    closed: Vec<GateTransaction>,
    actuate: bool,
) {
    for (lane, result) in conclude_all(shared, closed, actuate).await {
        if let Err(e) = result {
            metrics::counter!("aeogate_decision_failures_total", "lane" => lane.to_string())
                .increment(1);
            tracing::error!(%lane, error = %format!("{e:#}"), "transaction could not be decided; the lane was not changed");
        }
        let open = assembler.open(&lane).cloned();
        shared.live.update(&lane, |l| l.open = open);
    }
}

/// Turns a decision that could not be journaled into one that grants no priority: FAST
/// becomes STANDARD, and the reason says why.
fn hold_decision(decision: &mut Decision, routes: &crate::decider::Routes) {
    if decision.decision == LaneDecision::Fast {
        decision.decision = LaneDecision::Standard;
        decision
            .reasons
            .retain(|r| r.code != ReasonCode::AllChecksPassed);
        decision.route = routes.standard.clone();
    }
    decision
        .reasons
        .push(Reason::new(ReasonCode::JournalUnavailable));
}

/// A decided transaction waiting for its journal answer.
struct Prepared {
    decision: Decision,
    tx: GateTransaction,
    now: Timestamp,
    routes: crate::decider::Routes,
    started: std::time::Instant,
}

fn journal_bodies(d: &Decision, tx: &GateTransaction) -> Vec<EventBody> {
    vec![
        EventBody::Transaction {
            transaction: tx.clone(),
        },
        EventBody::Decision {
            decision: d.clone(),
        },
    ]
}

/// Decides closed transactions, journals each transaction with its decision (the appends
/// are queued together, so the journal writer commits a burst as one group), then, in
/// order and only after its commit, shows each decision on its lane.
async fn conclude_all(
    shared: &Arc<Shared>,
    txs: Vec<GateTransaction>,
    actuate: bool,
) -> Vec<(LaneId, anyhow::Result<()>)> {
    let mut out = Vec::with_capacity(txs.len());
    let mut prepared = Vec::with_capacity(txs.len());
    for tx in txs {
        let lane = tx.lane.clone();
        match prepare(shared, tx).await {
            Ok(p) => prepared.push(p),
            Err(e) => out.push((lane, Err(e))),
        }
    }
    // Journal, then act: each answer comes only after the commit holding its records.
    let answers = futures_util::future::join_all(prepared.iter().map(|p| {
        shared
            .journal_writer
            .append(journal_bodies(&p.decision, &p.tx), p.now)
    }))
    .await;
    for (p, journaled) in prepared.into_iter().zip(answers) {
        let lane = p.tx.lane.clone();
        finish(shared, p, journaled, actuate);
        out.push((lane, Ok(())));
    }
    out
}

async fn prepare(shared: &Arc<Shared>, tx: GateTransaction) -> anyhow::Result<Prepared> {
    let lane_cfg = shared
        .lane(&tx.lane)
        .with_context(|| format!("lane {} is not configured", tx.lane))?;
    let routes = lane_cfg.routes.clone();
    let policy = shared.policy.clone();
    let store = shared.store.clone();
    let started = std::time::Instant::now();
    tokio::task::spawn_blocking(move || {
        let now = Timestamp::now();
        let decision = match store.replica_view() {
            Ok(view) => decide(&tx, &view, &policy, &routes, now),
            Err(e) => {
                // Fail safe: an unreadable replica is an empty one, which never yields FAST.
                tracing::error!(error = %e, "replica unreadable; deciding without it");
                decide(&tx, &MemoryReplica::new(), &policy, &routes, now)
            }
        };
        Prepared {
            decision,
            tx,
            now,
            routes,
            started,
        }
    })
    .await
    .context("decision task panicked")
}

fn finish(
    shared: &Arc<Shared>,
    p: Prepared,
    journaled: Result<Vec<JournalEntry>, JournalError>,
    actuate: bool,
) {
    let Prepared {
        mut decision,
        tx,
        routes,
        started,
        ..
    } = p;
    match journaled {
        Ok(_) => shared.journal_appended.notify_waiters(),
        Err(e) => {
            // The journal cannot be written (a full disk): the truck still gets a lane,
            // but never a priority one, and the records are held for a later write.
            hold_decision(&mut decision, &routes);
            shared.journal_failed(&e, journal_bodies(&decision, &tx));
        }
    }
    let lane = tx.lane.clone();
    let state = LaneState::from_decision(&decision);
    if actuate {
        shared.actuators.show(&state);
    }
    metrics::counter!("aeogate_decisions_total", "lane" => lane.to_string(), "decision" => decision.decision.as_str())
        .increment(1);
    metrics::histogram!("aeogate_decision_seconds", "lane" => lane.to_string())
        .record(started.elapsed().as_secs_f64());
    if let Ok(since_close) = Timestamp::now().duration_since(tx.closed_at).try_into() {
        let d: std::time::Duration = since_close;
        metrics::histogram!("aeogate_close_to_lane_seconds").record(d.as_secs_f64());
    }
    tracing::info!(
        %lane,
        transaction = %decision.transaction_id,
        decision = %decision.decision,
        reasons = ?decision.reasons.iter().map(|r| r.code.code()).collect::<Vec<_>>(),
        "decided"
    );
    shared.live.update(&lane, |l| {
        l.last_decision = Some(decision);
        if actuate {
            l.shown = Some(state);
        }
    });
}

/// Journals a device going up or down (not every detail change), so central sees outages.
async fn health_journal_task(shared: Arc<Shared>, mut rx: watch::Receiver<DeviceHealth>) {
    let (mut last_up, device) = {
        let h = rx.borrow_and_update();
        (h.up, h.device.clone())
    };
    metrics::gauge!("aeogate_device_up", "device" => device).set(if last_up { 1.0 } else { 0.0 });
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            changed = rx.changed() => if changed.is_err() { return },
        }
        let health = rx.borrow_and_update().clone();
        metrics::gauge!("aeogate_device_up", "device" => health.device.clone()).set(if health.up {
            1.0
        } else {
            0.0
        });
        if health.up != last_up {
            last_up = health.up;
            if let Err(e) = shared
                .journal(vec![EventBody::DeviceHealth { health }])
                .await
            {
                tracing::error!(error = %format!("{e:#}"), "device health not journaled");
            }
        }
    }
}

/// Keeps gauges that are not event-driven current: replica age, journal size, backlog.
async fn gauge_task(shared: Arc<Shared>) {
    let mut every = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let store = shared.store.clone();
        let Ok((meta, head, acked, bytes)) = tokio::task::spawn_blocking(move || {
            (
                store.replica_meta(),
                store.journal_head(),
                store.acked_seq(),
                store.journal_bytes(),
            )
        })
        .await
        else {
            continue;
        };
        metrics::gauge!("aeogate_journal_head").set(head as f64);
        metrics::gauge!("aeogate_journal_bytes").set(bytes as f64);
        metrics::gauge!("aeogate_uplink_backlog").set(head.saturating_sub(acked) as f64);
        metrics::gauge!("aeogate_replica_sequence").set(meta.sequence as f64);
        let fresh = crate::replica::freshness(
            meta.current_as_of(),
            Timestamp::now(),
            shared.policy.staleness_bound,
        );
        if let Some(age) = fresh.age_s {
            metrics::gauge!("aeogate_replica_age_seconds").set(age as f64);
        }
    }
}
