//! The lane pipeline's task: events into the assembler; each closed gate transaction is
//! decided (replica snapshot, in `spawn_blocking`), journaled with its decision, and only
//! then shown on the lane. Closings that come together are journaled as one group. The
//! task does not wait for the commit: it goes on with the next events and timers, and
//! applies every output's effect on the lanes and the live view in the order of the
//! outputs, each once the commits before it are answered (`Effects`).
//!
//! At shutdown the task folds in what the sources had queued, closes open transactions
//! (`SHUTDOWN`), decides and journals them without moving the lane (the board falls back
//! to its safe state when the link goes quiet).
//!
//! A lane a supervisor closed ([`LiveLanes::set_closed`]) is closed in the assembler
//! before every event is handled: no transaction opens there, and a truck arriving is
//! journaled as `LANE_REFUSED` (never decided). A decision for a transaction that was open
//! when the lane closed is journaled but not shown: the lane stays closed.
//!
//! With the read log ([`Pipeline::read_log`], [`crate::readlog`]), every journal write
//! also removes the logged events it accounts for (a decided transaction's events, an
//! orphan read, a presence change that belonged to no truck), in the same commit. At
//! start the task replays what the log still holds into the assembler before taking new
//! events: the truck that was in the lane when the agent stopped gets its own
//! transaction again, decided when it leaves, with `AGENT_RESTARTED` (never FAST: reads
//! made while the agent was down may be missing).
//!
//! While the gate's clock is off from central's beyond `clock.max_offset`
//! ([`crate::clock`]), every decision gets `CLOCK_UNTRUSTED` and FAST becomes STANDARD.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesOrdered;
use jiff::Timestamp;
use protocol::schema::{
    Decision, EventBody, GateTransaction, JournalEntry, LANE_REFUSED_CLOSED, LaneDecision, LaneId,
    LaneState, Read, Reason, ReasonCode,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::actuators::Actuators;
use crate::assembler::{Assembler, AssemblerEvent, AssemblerOutput, RawRead};
use crate::clock::{Clock, ClockView, StepWatch};
use crate::config::LaneConfig;
use crate::decider::{Policy, decide};
use crate::journal::Journal;
use crate::live::LiveLanes;
use crate::replica::MemoryReplica;
use crate::store::Store;

/// Capacity of the source → assembler channel. Small on purpose: the assembler is fast,
/// and a full queue slows sources down instead of losing reads.
pub const EVENT_QUEUE: usize = 64;

/// Longest the assembler task sleeps between timer checks. It wakes at the assembler's
/// next deadline ([`Assembler::next_deadline`]), so this bounds how late a step of the
/// wall clock is noticed ([`crate::clock::StepWatch`]; the lanes' timers are then moved
/// with it, [`Assembler::clock_stepped`]).
const TICK: Duration = Duration::from_secs(1);

/// What the pipeline task works with.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Lanes as configured (routes per lane).
    pub lanes: Vec<LaneConfig>,
    /// Decision policy.
    pub policy: Policy,
    /// Replica snapshots for deciding.
    pub store: Store,
    /// Where transactions, decisions and orphan reads are written.
    pub journal: Arc<Journal>,
    /// Live lane state for the console.
    pub live: Arc<LiveLanes>,
    /// Lane outputs.
    pub actuators: Arc<Actuators>,
    /// The sources log lane events ([`crate::readlog`]): replay the log at start and
    /// remove events from it with the journal writes that account for them.
    pub read_log: bool,
    /// The clock's trust: an untrusted clock gives no FAST (`CLOCK_UNTRUSTED`).
    pub clock: Arc<Clock>,
}

/// A new set of lanes and policy for the running pipeline (live reconfiguration,
/// [`crate::reload`]).
#[derive(Debug)]
pub struct Reconfigure {
    pub lanes: Vec<LaneConfig>,
    pub policy: Policy,
    /// The running policy's id, for the journal.
    pub old_policy: String,
    /// What changes, one line each, for the journal.
    pub changes: Vec<String>,
    /// Answered once the new configuration is in effect.
    pub done: tokio::sync::oneshot::Sender<()>,
}

/// The task's own state besides the assembler: which transactions were rebuilt from the
/// read log, presence changes to remove from the log with the next write, and the lane
/// effects still waiting for their commits.
#[derive(Debug, Default)]
struct Books {
    restored: BTreeSet<Uuid>,
    spent: Vec<Vec<u8>>,
    effects: Effects,
}

/// Most lane effects waiting for their commits before the task stops taking events and
/// timers (and so the sources slow down) until the journal catches up.
const EFFECTS_MAX: usize = 1024;

/// What an output does to the lanes and the live view, applied by the task.
type Apply = Box<dyn FnOnce(&Pipeline, &mut DecisionMetrics) + Send>;

/// An effect that is applied once its journal write is answered.
type Pending = Pin<Box<dyn Future<Output = Apply> + Send>>;

/// The lane effects of the outputs handled so far, applied strictly in the order of the
/// outputs: a decision's once its commit is answered, and every effect after it (on any
/// lane) behind it. The lanes and the live view see what they would if each output were
/// handled to its end before the next; meanwhile the task goes on taking events and
/// timers, and the next closings are decided and queued while the commit is on disk (so
/// reads are acknowledged and lanes' timers run during the commit, not after it).
#[derive(Default)]
struct Effects {
    waiting: FuturesOrdered<Pending>,
    metrics: DecisionMetrics,
}

impl std::fmt::Debug for Effects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Effects")
            .field("waiting", &self.waiting.len())
            .field("metrics", &self.metrics)
            .finish()
    }
}

impl Effects {
    /// Applies `f` now when nothing waits before it, else queues it behind what does.
    fn now(
        &mut self,
        shared: &Pipeline,
        f: impl FnOnce(&Pipeline, &mut DecisionMetrics) + Send + 'static,
    ) {
        if self.waiting.is_empty() {
            f(shared, &mut self.metrics);
        } else {
            self.waiting
                .push_back(Box::pin(std::future::ready(Box::new(f) as Apply)));
        }
    }

    /// Queues an effect that is applied when `f` resolves (after everything before it).
    fn later(&mut self, f: impl Future<Output = Apply> + Send + 'static) {
        self.waiting.push_back(Box::pin(f));
    }

    /// Room for more effects ([`EFFECTS_MAX`]).
    fn has_room(&self) -> bool {
        self.waiting.len() < EFFECTS_MAX
    }

    /// The next effect whose turn it is, once answered; pending while none waits.
    async fn next(&mut self) -> Apply {
        match self.waiting.next().await {
            Some(apply) => apply,
            None => std::future::pending().await,
        }
    }

    fn apply(&mut self, shared: &Pipeline, apply: Apply) {
        apply(shared, &mut self.metrics);
    }

    /// Waits for every queued effect and applies it, in order.
    async fn settle(&mut self, shared: &Pipeline) {
        while let Some(apply) = self.waiting.next().await {
            apply(shared, &mut self.metrics);
        }
    }
}

/// Each lane's decision series, looked up once per lane and decision instead of by label
/// on every decision (the label strings and the registry look-up were about 3 % of the
/// agent's CPU at saturation, docs/benchmarks.md figure 10). Holds the configured lanes
/// only: it is emptied when the lanes are reconfigured.
#[derive(Default)]
struct DecisionMetrics {
    lanes: HashMap<LaneId, LaneMetrics>,
    close_to_lane: Option<metrics::Histogram>,
}

struct LaneMetrics {
    seconds: metrics::Histogram,
    /// `aeogate_decisions_total` by decision, made on the first of each.
    decisions: Vec<(LaneDecision, metrics::Counter)>,
}

impl std::fmt::Debug for DecisionMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionMetrics")
            .field("lanes", &self.lanes.len())
            .finish_non_exhaustive()
    }
}

impl DecisionMetrics {
    /// Counts a decision on `lane` that took `seconds` from its group's start.
    fn decided(&mut self, lane: &LaneId, decision: LaneDecision, seconds: f64) {
        let m = self.lanes.entry(lane.clone()).or_insert_with(|| LaneMetrics {
            seconds: metrics::histogram!("aeogate_decision_seconds", "lane" => lane.to_string()),
            decisions: Vec::with_capacity(3),
        });
        m.seconds.record(seconds);
        match m.decisions.iter().find(|(d, _)| *d == decision) {
            Some((_, counter)) => counter.increment(1),
            None => {
                let counter = metrics::counter!("aeogate_decisions_total", "lane" => lane.to_string(), "decision" => decision.as_str());
                counter.increment(1);
                m.decisions.push((decision, counter));
            }
        }
    }

    fn close_to_lane(&mut self, seconds: f64) {
        self.close_to_lane
            .get_or_insert_with(|| metrics::histogram!("aeogate_close_to_lane_seconds"))
            .record(seconds);
    }
}

impl Pipeline {
    fn lane(&self, lane: &LaneId) -> Option<&LaneConfig> {
        self.lanes.iter().find(|l| &l.id == lane)
    }

    /// Closes and reopens lanes in the assembler as the live state has them.
    fn sync_closed(&self, assembler: &mut Assembler) {
        // The common case, checked on every event: no lane closed on either side.
        if !self.live.any_closed() && !assembler.any_closed() {
            return;
        }
        let closed = self.live.closed_lanes();
        for l in &self.lanes {
            let is = closed.iter().any(|(c, _)| c == &l.id);
            if assembler.is_closed(&l.id) != is {
                assembler.set_closed(&l.id, is);
                tracing::info!(lane = %l.id, closed = is, "lane control applied to the assembler");
            }
        }
    }
}

pub async fn run(
    mut shared: Arc<Pipeline>,
    mut assembler: Assembler,
    mut rx: mpsc::Receiver<AssemblerEvent>,
    mut reconfigure: mpsc::Receiver<Reconfigure>,
    shutdown: CancellationToken,
) {
    let mut books = Books::default();
    shared.sync_closed(&mut assembler);
    if shared.read_log {
        assembler = assembler.tracking();
        let outputs = replay(shared.as_ref(), &mut assembler, &mut books).await;
        process(shared.as_ref(), &mut assembler, &mut books, outputs, true).await;
        books.effects.settle(shared.as_ref()).await;
    }
    let mut steps = StepWatch::new(Timestamp::now(), std::time::Instant::now());
    loop {
        notice_step(&mut steps, &mut assembler);
        // Sleep until the earliest timer (a departure grace ending, a timeout, a held read
        // expiring), so a closing is decided when it is due, not at the next fixed tick.
        let due = assembler.next_deadline().map(|at| {
            Duration::try_from(at.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO)
        });
        // The uplink keeps clear of the moment a lane decides (`lane_work`).
        shared
            .journal
            .writer()
            .lane_work()
            .set_next_due(due.map(|d| tokio::time::Instant::now() + d));
        let wait = due.map_or(TICK, |d| d.min(TICK));
        let room = books.effects.has_room();
        let outputs = tokio::select! {
            // A decision's lane state goes out as soon as its commit is answered.
            apply = books.effects.next() => {
                books.effects.apply(shared.as_ref(), apply);
                continue;
            }
            ev = rx.recv(), if room => match ev {
                Some(ev) => {
                    // Whatever queued meanwhile (a burst) is taken too, so its closings
                    // are journaled as one group.
                    shared.sync_closed(&mut assembler);
                    let mut outputs = hand_in(&mut steps, &mut assembler, ev);
                    for _ in 0..EVENT_QUEUE {
                        let Ok(ev) = rx.try_recv() else { break };
                        shared.sync_closed(&mut assembler);
                        outputs.extend(hand_in(&mut steps, &mut assembler, ev));
                    }
                    outputs
                }
                None => break,
            },
            () = tokio::time::sleep(wait), if room => {
                notice_step(&mut steps, &mut assembler);
                assembler.tick(Timestamp::now())
            }
            Some(rc) = reconfigure.recv() => {
                shared = apply(shared, &mut assembler, &mut books, rc).await;
                continue;
            }
            () = shutdown.cancelled() => break,
        };
        process(shared.as_ref(), &mut assembler, &mut books, outputs, true).await;
    }
    // What was decided before the stop goes out on the lanes first.
    books.effects.settle(shared.as_ref()).await;
    // Whatever the sources had already queued is folded in before closing.
    while let Ok(ev) = rx.try_recv() {
        let outputs = assembler.handle(ev);
        process(shared.as_ref(), &mut assembler, &mut books, outputs, false).await;
    }
    let outputs = assembler.close_all(Timestamp::now());
    process(shared.as_ref(), &mut assembler, &mut books, outputs, false).await;
    books.effects.settle(shared.as_ref()).await;
}

/// Applies a new configuration between two events: what is queued is folded in first;
/// a removed lane's open transaction is closed and decided under the configuration it
/// opened with; `CONFIG_APPLIED` is journaled; every decision after it uses the new
/// lanes and policy. Open transactions of kept lanes go on.
async fn apply(
    shared: Arc<Pipeline>,
    assembler: &mut Assembler,
    books: &mut Books,
    rc: Reconfigure,
) -> Arc<Pipeline> {
    let Reconfigure {
        lanes,
        policy,
        old_policy,
        changes,
        done,
    } = rc;
    let outputs = assembler.reconfigure(&lanes, Timestamp::now());
    process(shared.as_ref(), assembler, books, outputs, true).await;
    // Every decision under the old configuration is on its lane before the new one applies.
    books.effects.settle(shared.as_ref()).await;
    let body = EventBody::ConfigApplied {
        old_policy,
        new_policy: policy.id(),
        changes,
    };
    match shared
        .journal
        .append_at(vec![body.clone()], Timestamp::now())
        .await
    {
        Ok(_) => shared.journal.notify_appended(),
        Err(e) => shared.journal.failed(&e, vec![body], Vec::new()),
    }
    shared.live.set_lanes(&lanes);
    books.effects.metrics = DecisionMetrics::default();
    // Everything but the lanes and the policy carries over.
    let next = Arc::new(Pipeline {
        lanes,
        policy,
        ..(*shared).clone()
    });
    let _ = done.send(());
    next
}

/// Feeds the events left in the read log to the assembler, in the order logged, and
/// notes every transaction they open or close as restored.
async fn replay(
    shared: &Pipeline,
    assembler: &mut Assembler,
    books: &mut Books,
) -> Vec<AssemblerOutput> {
    let store = shared.store.clone();
    let events =
        match tokio::task::spawn_blocking(move || crate::readlog::ReadLog::replay(&store)).await {
            Ok(Ok(events)) => events,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the read log could not be read; nothing replayed");
                return Vec::new();
            }
            Err(e) => {
                tracing::error!(error = %e, "read log replay task failed");
                return Vec::new();
            }
        };
    if events.is_empty() {
        return Vec::new();
    }
    let mut outputs = Vec::new();
    for ev in events.iter().cloned() {
        outputs.extend(assembler.handle(ev));
    }
    books.restored.extend(assembler.open_ids());
    books
        .restored
        .extend(outputs.iter().filter_map(|o| match o {
            AssemblerOutput::Closed(tx) => Some(tx.id),
            _ => None,
        }));
    metrics::counter!("aeogate_restored_transactions_total").increment(books.restored.len() as u64);
    tracing::warn!(
        events = events.len(),
        transactions = books.restored.len(),
        "agent restarted with lane events not yet journaled; their transactions are rebuilt (AGENT_RESTARTED)"
    );
    outputs
}

/// Hands `ev` to the assembler after [`notice_step`]; an event stamped before a step
/// just seen (queued while the clock stepped) is handed in as such.
fn hand_in(
    steps: &mut StepWatch,
    assembler: &mut Assembler,
    ev: AssemblerEvent,
) -> Vec<AssemblerOutput> {
    notice_step(steps, assembler);
    match steps.stamped_before_step(ev.at(), Timestamp::now(), std::time::Instant::now()) {
        Some(step) => assembler.handle_stamped_before_step(ev, step),
        None => assembler.handle(ev),
    }
}

/// Looks for a step of the wall clock since the last look, and moves the timers of the
/// lanes with a truck in progress with it ([`Assembler::clock_stepped`]), before the
/// assembler is handed an event or a time read after the step.
fn notice_step(steps: &mut StepWatch, assembler: &mut Assembler) {
    if let Some(step) = steps.observe(Timestamp::now(), std::time::Instant::now()) {
        tracing::warn!(
            step_ms = step.as_millis(),
            "the wall clock stepped; lanes with a truck in progress keep their timers"
        );
        assembler.clock_stepped(step);
    }
}

async fn process(
    shared: &Pipeline,
    assembler: &mut Assembler,
    books: &mut Books,
    outputs: Vec<AssemblerOutput>,
    actuate: bool,
) {
    books
        .spent
        .extend(assembler.take_spent().iter().map(crate::readlog::encode));
    let mut closed: Vec<Closing> = Vec::new();
    for out in outputs {
        if !matches!(out, AssemblerOutput::Closed(_)) && !closed.is_empty() {
            conclude_closed(
                shared,
                std::mem::take(&mut closed),
                actuate,
                &mut books.effects,
            )
            .await;
        }
        match out {
            AssemblerOutput::Opened {
                lane,
                id,
                at,
                transaction,
            } => {
                // A truck arrived: the previous decision was not for it; the lane shows
                // its safe state until this truck's own decision.
                let waiting = actuate.then(|| LaneState::waiting(&lane, Some(id), at));
                books.effects.now(shared, move |shared, _| {
                    // Driven and recorded under the lanes' lock (an override checks it).
                    shared.live.update(&lane, |l| {
                        l.open = Some(transaction);
                        if let Some(state) = waiting
                            && l.closed.is_none()
                        {
                            shared.actuators.show(&state);
                            l.shown = Some(state);
                        }
                    });
                });
            }
            AssemblerOutput::Updated {
                lane, transaction, ..
            } => {
                books.effects.now(shared, move |shared, _| {
                    shared.live.update(&lane, |l| l.open = Some(transaction));
                });
            }
            // A truck decided while on the loop has left: back to the safe state.
            AssemblerOutput::Cleared { lane, at } => {
                if actuate {
                    let state = LaneState::waiting(&lane, None, at);
                    books.effects.now(shared, move |shared, _| {
                        shared
                            .live
                            .show_if(&lane, state, |_| true, |s| shared.actuators.show(s));
                    });
                }
            }
            // Consecutive closings are concluded together (one journal group).
            AssemblerOutput::Closed(tx) => {
                let mut consumed: Vec<Vec<u8>> = assembler
                    .take_consumed(tx.id)
                    .iter()
                    .map(crate::readlog::encode)
                    .collect();
                consumed.append(&mut books.spent);
                let restored = books.restored.remove(&tx.id);
                closed.push(Closing {
                    tx,
                    consumed,
                    restored,
                });
            }
            AssemblerOutput::Refused { lane, at, reads } => {
                refused(shared, books, lane, at, reads).await;
            }
            AssemblerOutput::OrphanRead(read) => {
                metrics::counter!("aeogate_orphan_reads_total", "lane" => read.lane.to_string())
                    .increment(1);
                tracing::info!(lane = %read.lane, device = %read.device, raw = %read.raw, "read with no truck in the lane");
                let lane = read.lane.clone();
                books.effects.now(shared, move |shared, _| {
                    shared.live.update(&lane, |l| l.orphan_reads += 1);
                });
                let lane = read.lane.clone();
                let mut consumed =
                    vec![crate::readlog::encode(&AssemblerEvent::Read(read.clone()))];
                consumed.append(&mut books.spent);
                let body = EventBody::OrphanRead {
                    lane,
                    read: as_read(read),
                };
                let answer = shared
                    .journal
                    .queue_at_returning(vec![body], Timestamp::now(), consumed)
                    .await;
                books.effects.later(async move {
                    let answer = answer.await;
                    Box::new(move |shared: &Pipeline, _: &mut DecisionMetrics| match answer {
                        Ok(_) => shared.journal.notify_appended(),
                        Err(u) => {
                            tracing::error!(error = %format!("{:#}", u.error), "could not journal a read with no truck in the lane");
                        }
                    }) as Apply
                });
            }
        }
    }
    if !closed.is_empty() {
        conclude_closed(shared, closed, actuate, &mut books.effects).await;
    }
    // Presence changes that belonged to no truck leave the log with the next write; with
    // none coming in this round, on their own.
    if !books.spent.is_empty() && shared.read_log {
        let spent = std::mem::take(&mut books.spent);
        let answer = shared
            .journal
            .queue_at_returning(Vec::new(), Timestamp::now(), spent)
            .await;
        books.effects.later(async move {
            let answer = answer.await;
            Box::new(move |_: &Pipeline, _: &mut DecisionMetrics| {
                if let Err(u) = answer {
                    tracing::warn!(error = %u.error, "presence changes could not be removed from the read log; a restart replays them (harmless)");
                }
            }) as Apply
        });
    }
}

fn as_read(read: RawRead) -> Read {
    Read {
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
    }
}

/// Repeats of one value from one device counted, as in a transaction.
fn folded(reads: Vec<RawRead>) -> Vec<Read> {
    let mut out: Vec<Read> = Vec::new();
    for r in reads {
        if let Some(x) = out
            .iter_mut()
            .find(|x| x.source == r.source && x.device == r.device && x.value == r.value)
        {
            x.count = x.count.saturating_add(1);
            x.first_at = x.first_at.min(r.at);
            x.last_at = x.last_at.max(r.at);
        } else {
            out.push(as_read(r));
        }
    }
    out
}

/// A truck arrived at a closed lane: journaled as `LANE_REFUSED` with its reads (which
/// leave the read log in the same write); nothing is decided and the lane stays closed.
async fn refused(
    shared: &Pipeline,
    books: &mut Books,
    lane: LaneId,
    at: Timestamp,
    reads: Vec<RawRead>,
) {
    metrics::counter!("aeogate_lane_refusals_total", "lane" => lane.to_string()).increment(1);
    tracing::warn!(%lane, reads = reads.len(), "a truck arrived at a closed lane; no transaction opened");
    let shown = lane.clone();
    books.effects.now(shared, move |shared, _| {
        shared.live.update(&shown, |l| l.refusals += 1);
    });
    let mut consumed: Vec<Vec<u8>> = reads
        .iter()
        .map(|r| crate::readlog::encode(&AssemblerEvent::Read(r.clone())))
        .collect();
    consumed.append(&mut books.spent);
    let body = EventBody::LaneRefused {
        lane,
        cause: LANE_REFUSED_CLOSED.into(),
        at,
        reads: folded(reads),
    };
    let answer = shared
        .journal
        .queue_at_returning(vec![body], Timestamp::now(), consumed)
        .await;
    books.effects.later(async move {
        let answer = answer.await;
        Box::new(
            move |shared: &Pipeline, _: &mut DecisionMetrics| match answer {
                Ok(_) => shared.journal.notify_appended(),
                // Held for a later write, like a decision's records.
                Err(u) => {
                    let crate::journal::Unwritten {
                        error,
                        bodies,
                        consumed,
                    } = *u;
                    if !bodies.is_empty() {
                        shared.journal.failed(&error, bodies, consumed);
                    }
                }
            },
        ) as Apply
    });
}

/// A closed transaction on its way to its decision.
struct Closing {
    tx: GateTransaction,
    /// Its events, encoded for the read log.
    consumed: Vec<Vec<u8>>,
    /// Rebuilt from the read log after a restart.
    restored: bool,
}

/// Decides `closed` (one group) and queues its journal writes; its effect on the lanes
/// ([`finish`], each transaction then no longer open) waits in `effects` for the commit.
async fn conclude_closed(
    shared: &Pipeline,
    closed: Vec<Closing>,
    actuate: bool,
    effects: &mut Effects,
) {
    let (failed, journaled, answers) = conclude_all(shared, closed).await;
    effects.later(async move {
        let answers = futures_util::future::join_all(answers).await;
        Box::new(move |shared: &Pipeline, counted: &mut DecisionMetrics| {
            let finished = journaled.into_iter().zip(answers).map(|(j, answer)| {
                let lane = j.lane.clone();
                (lane, finish(shared, j, answer, actuate, counted))
            });
            for (lane, result) in failed.into_iter().map(|(l, e)| (l, Err(e))).chain(finished) {
                if let Err(e) = result {
                    metrics::counter!("aeogate_decision_failures_total", "lane" => lane.to_string())
                        .increment(1);
                    tracing::error!(%lane, error = %format!("{e:#}"), "transaction could not be decided; the lane was not changed");
                }
                // Its transaction is closed; a later opening on the lane follows in the
                // effects.
                shared.live.update(&lane, |l| l.open = None);
            }
        }) as Apply
    });
}

/// Turns a decision that could not be journaled into one that grants no priority: FAST
/// becomes STANDARD, and the reason says why.
fn hold_decision(decision: &mut Decision, routes: &crate::decider::Routes) {
    no_priority(decision, routes);
    decision
        .reasons
        .push(Reason::new(ReasonCode::JournalUnavailable));
}

/// A FAST decision becomes STANDARD, to the standard route, without its "all checks
/// passed" reason; any other stays as it is.
fn no_priority(decision: &mut Decision, routes: &crate::decider::Routes) {
    if decision.decision == LaneDecision::Fast {
        decision.decision = LaneDecision::Standard;
        decision
            .reasons
            .retain(|r| r.code != ReasonCode::AllChecksPassed);
        decision.route = routes.standard.clone();
    }
}

/// Adds `AGENT_RESTARTED` to the decision of a transaction rebuilt after a restart: it
/// may lack reads made while the agent was down, so FAST becomes STANDARD.
fn restarted_decision(decision: &mut Decision, routes: &crate::decider::Routes) {
    no_priority(decision, routes);
    decision
        .reasons
        .push(Reason::new(ReasonCode::AgentRestarted));
}

/// Adds `CLOCK_UNTRUSTED` to a decision made while the gate's clock is off from
/// central's beyond the bound: the times it records are not evidence, so FAST becomes
/// STANDARD. The detail says by how much and which way.
pub fn clock_decision(decision: &mut Decision, routes: &crate::decider::Routes, clock: &ClockView) {
    if clock.trusted {
        return;
    }
    no_priority(decision, routes);
    let mut r =
        Reason::new(ReasonCode::ClockUntrusted).with("max_offset_ms", clock.max_offset.as_millis());
    if let Some(s) = clock.sample() {
        r = r
            .with("offset_ms", s.offset.as_millis())
            .with(
                "clock",
                if s.offset.is_negative() {
                    "gate behind central"
                } else {
                    "gate ahead of central"
                },
            )
            .with("measured_at", s.at);
    }
    // After the INSPECT and STANDARD reasons, before the informational ones.
    let at = decision
        .reasons
        .iter()
        .position(|r| crate::decider::outcome_of(r.code).is_none())
        .unwrap_or(decision.reasons.len());
    decision.reasons.insert(at, r);
}

/// A decided transaction waiting for its journal answer.
struct Prepared {
    decision: Decision,
    tx: GateTransaction,
    consumed: Vec<Vec<u8>>,
    now: Timestamp,
    routes: crate::decider::Routes,
    started: std::time::Instant,
}

/// A transaction and its decision as journal bodies, moved (not copied): the journal
/// hands them back when it cannot take them ([`crate::journal::Unwritten`]).
fn journal_bodies(decision: Decision, transaction: GateTransaction) -> Vec<EventBody> {
    vec![
        EventBody::Transaction { transaction },
        EventBody::Decision { decision },
    ]
}

/// What showing a decision needs of its transaction once the journal has it.
struct Journaled {
    lane: LaneId,
    transaction_id: Uuid,
    closed_at: Timestamp,
    routes: crate::decider::Routes,
    started: std::time::Instant,
}

/// What deciding a group gives: the transactions that could not be decided, and for the
/// others what showing each needs, beside its journal write's answer.
type Concluded = (
    Vec<(LaneId, anyhow::Error)>,
    Vec<Journaled>,
    Vec<crate::journal::Answer>,
);

/// Decides closed transactions and queues each transaction with its decision for the
/// journal (queued together, so the journal writer commits a burst as one group). Each
/// decision may be shown only once its answer says it is on disk ([`finish`]).
async fn conclude_all(shared: &Pipeline, txs: Vec<Closing>) -> Concluded {
    let mut failed = Vec::new();
    let mut journaled = Vec::with_capacity(txs.len());
    let mut answers = Vec::with_capacity(txs.len());
    for (lane, p) in prepare_all(shared, txs).await {
        match p {
            Ok(p) => {
                let Prepared {
                    decision,
                    tx,
                    consumed,
                    now,
                    routes,
                    started,
                } = p;
                journaled.push(Journaled {
                    lane: tx.lane.clone(),
                    transaction_id: tx.id,
                    closed_at: tx.closed_at,
                    routes,
                    started,
                });
                // Journal, then act: the answer comes only after the commit holding its
                // records (and removing its events from the read log).
                answers.push(
                    shared
                        .journal
                        .queue_at_returning(journal_bodies(decision, tx), now, consumed)
                        .await,
                );
            }
            Err(e) => failed.push((lane, e)),
        }
    }
    (failed, journaled, answers)
}

/// The decision among journal bodies (moved out of them).
fn decision_of(bodies: impl IntoIterator<Item = EventBody>) -> Option<Decision> {
    bodies.into_iter().find_map(|b| match b {
        EventBody::Decision { decision } => Some(decision),
        _ => None,
    })
}

/// Decides every closing of a group on one blocking thread against one replica
/// snapshot (one hop off the runtime for the group, not one per truck).
async fn prepare_all(
    shared: &Pipeline,
    closings: Vec<Closing>,
) -> Vec<(LaneId, anyhow::Result<Prepared>)> {
    let mut out = Vec::with_capacity(closings.len());
    let mut work = Vec::with_capacity(closings.len());
    for closing in closings {
        let lane = closing.tx.lane.clone();
        match shared.lane(&lane) {
            Some(cfg) => work.push((closing, cfg.routes.clone())),
            None => out.push((
                lane.clone(),
                Err(anyhow::anyhow!("lane {lane} is not configured")),
            )),
        }
    }
    if work.is_empty() {
        return out;
    }
    let lanes: Vec<LaneId> = work.iter().map(|(c, _)| c.tx.lane.clone()).collect();
    let policy = shared.policy.clone();
    let store = shared.store.clone();
    let clock = shared.clock.clone();
    let started = std::time::Instant::now();
    let decided = tokio::task::spawn_blocking(move || {
        let view = store.replica_view();
        if let Err(e) = &view {
            // Fail safe: an unreadable replica is an empty one, which never yields FAST.
            tracing::error!(error = %e, "replica unreadable; deciding without it");
        }
        let empty = MemoryReplica::new();
        let clock = clock.view();
        work.into_iter()
            .map(|(closing, routes)| {
                let Closing {
                    tx,
                    consumed,
                    restored,
                } = closing;
                let now = Timestamp::now();
                let mut decision = match &view {
                    Ok(view) => decide(&tx, view, &policy, &routes, now),
                    Err(_) => decide(&tx, &empty, &policy, &routes, now),
                };
                if restored {
                    restarted_decision(&mut decision, &routes);
                }
                clock_decision(&mut decision, &routes, &clock);
                Prepared {
                    decision,
                    tx,
                    consumed,
                    now,
                    routes,
                    started,
                }
            })
            .collect::<Vec<_>>()
    })
    .await;
    match decided {
        Ok(prepared) => out.extend(prepared.into_iter().map(|p| (p.tx.lane.clone(), Ok(p)))),
        Err(e) => out.extend(
            lanes
                .into_iter()
                .map(|lane| (lane, Err(anyhow::anyhow!("decision task panicked: {e}")))),
        ),
    }
    out
}

fn finish(
    shared: &Pipeline,
    j: Journaled,
    answer: Result<Vec<JournalEntry>, Box<crate::journal::Unwritten>>,
    actuate: bool,
    counted: &mut DecisionMetrics,
) -> anyhow::Result<()> {
    let Journaled {
        lane,
        transaction_id,
        closed_at,
        routes,
        started,
    } = j;
    let decision = match answer {
        Ok(entries) => {
            shared.journal.notify_appended();
            decision_of(entries.into_iter().map(|e| e.body))
        }
        Err(unwritten) => {
            // The journal cannot be written (a full disk): the truck still gets a lane,
            // but never a priority one, and the records are held for a later write.
            let crate::journal::Unwritten {
                error,
                mut bodies,
                consumed,
            } = *unwritten;
            let mut held = None;
            for b in &mut bodies {
                if let EventBody::Decision { decision } = b {
                    hold_decision(decision, &routes);
                    held = Some(decision.clone());
                }
            }
            if !bodies.is_empty() {
                shared.journal.failed(&error, bodies, consumed);
            }
            held
        }
    };
    let Some(decision) = decision else {
        // No answer from the writer at all (it went away outside a commit; a failed or
        // panicking commit hands the records back): the lane keeps its safe state.
        anyhow::bail!("transaction {transaction_id}: the journal writer stopped before answering");
    };
    let state = LaneState::from_decision(&decision);
    counted.decided(&lane, decision.decision, started.elapsed().as_secs_f64());
    if let Ok(since_close) = Timestamp::now().duration_since(closed_at).try_into() {
        let d: std::time::Duration = since_close;
        counted.close_to_lane(d.as_secs_f64());
    }
    tracing::info!(
        %lane,
        transaction = %decision.transaction_id,
        decision = %decision.decision,
        reasons = ?decision.reasons.iter().map(|r| r.code.code()).collect::<Vec<_>>(),
        "decided"
    );
    // Driven and recorded under the lanes' lock (an override checks it); the decision
    // moves into the live view (no copy).
    shared.live.update(&lane, |l| {
        l.last_decision = Some(decision);
        if actuate && l.closed.is_none() {
            shared.actuators.show(&state);
            l.shown = Some(state);
        }
    });
    Ok(())
}
