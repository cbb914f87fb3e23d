//! The lane pipeline's task: events into the assembler; each closed gate transaction is
//! decided (replica snapshot, in `spawn_blocking`), journaled with its decision, and only
//! then shown on the lane. Closings that come together are journaled as one group.
//!
//! At shutdown the task folds in what the sources had queued, closes open transactions
//! (`SHUTDOWN`), decides and journals them without moving the lane (the board falls back
//! to its safe state when the link goes quiet).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use jiff::Timestamp;
use protocol::schema::{
    Decision, EventBody, GateTransaction, JournalEntry, LaneDecision, LaneId, LaneState, Read,
    Reason, ReasonCode,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::actuators::Actuators;
use crate::assembler::{Assembler, AssemblerEvent, AssemblerOutput};
use crate::config::LaneConfig;
use crate::decider::{Policy, decide};
use crate::journal::Journal;
use crate::live::LiveLanes;
use crate::replica::MemoryReplica;
use crate::store::{JournalError, Store};

/// Capacity of the source → assembler channel. Small on purpose: the assembler is fast,
/// and a full queue slows sources down instead of losing reads.
pub const EVENT_QUEUE: usize = 64;

/// Longest the assembler task sleeps between timer checks. It wakes at the assembler's
/// next deadline ([`Assembler::next_deadline`]), so this only bounds the effect of a wall
/// clock that jumps.
const TICK: Duration = Duration::from_secs(1);

/// What the pipeline task works with.
#[derive(Debug)]
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
}

impl Pipeline {
    fn lane(&self, lane: &LaneId) -> Option<&LaneConfig> {
        self.lanes.iter().find(|l| &l.id == lane)
    }
}

pub async fn run(
    shared: Arc<Pipeline>,
    mut assembler: Assembler,
    mut rx: mpsc::Receiver<AssemblerEvent>,
    shutdown: CancellationToken,
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
            () = shutdown.cancelled() => break,
        };
        process(shared.as_ref(), outputs, true).await;
    }
    // Whatever the sources had already queued is folded in before closing.
    while let Ok(ev) = rx.try_recv() {
        let outputs = assembler.handle(ev);
        process(shared.as_ref(), outputs, false).await;
    }
    let outputs = assembler.close_all(Timestamp::now());
    process(shared.as_ref(), outputs, false).await;
}

async fn process(shared: &Pipeline, outputs: Vec<AssemblerOutput>, actuate: bool) {
    let mut closed: Vec<GateTransaction> = Vec::new();
    for out in outputs {
        if !matches!(out, AssemblerOutput::Closed(_)) && !closed.is_empty() {
            conclude_closed(shared, std::mem::take(&mut closed), actuate).await;
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
                // Driven and recorded under the lanes' lock (an override checks it).
                shared.live.update(&lane, |l| {
                    l.open = Some(transaction);
                    if let Some(state) = waiting {
                        shared.actuators.show(&state);
                        l.shown = Some(state);
                    }
                });
            }
            AssemblerOutput::Updated {
                lane, transaction, ..
            } => {
                shared.live.update(&lane, |l| l.open = Some(transaction));
            }
            // A truck decided while on the loop has left: back to the safe state.
            AssemblerOutput::Cleared { lane, at } => {
                if actuate {
                    let state = LaneState::waiting(&lane, None, at);
                    shared
                        .live
                        .show_if(&lane, state, |_| true, |s| shared.actuators.show(s));
                }
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
                if let Err(e) = shared.journal.append(vec![body]).await {
                    tracing::error!(error = %format!("{e:#}"), "could not journal a read with no truck in the lane");
                }
            }
        }
    }
    if !closed.is_empty() {
        conclude_closed(shared, closed, actuate).await;
    }
}

async fn conclude_closed(shared: &Pipeline, closed: Vec<GateTransaction>, actuate: bool) {
    for (lane, result) in conclude_all(shared, closed, actuate).await {
        if let Err(e) = result {
            metrics::counter!("aeogate_decision_failures_total", "lane" => lane.to_string())
                .increment(1);
            tracing::error!(%lane, error = %format!("{e:#}"), "transaction could not be decided; the lane was not changed");
        }
        // Its transaction is closed; a later opening on the lane follows in the outputs.
        shared.live.update(&lane, |l| l.open = None);
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
    shared: &Pipeline,
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
            .journal
            .append_at(journal_bodies(&p.decision, &p.tx), p.now)
    }))
    .await;
    for (p, journaled) in prepared.into_iter().zip(answers) {
        let lane = p.tx.lane.clone();
        finish(shared, p, journaled, actuate);
        out.push((lane, Ok(())));
    }
    out
}

async fn prepare(shared: &Pipeline, tx: GateTransaction) -> anyhow::Result<Prepared> {
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
    shared: &Pipeline,
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
        Ok(_) => shared.journal.notify_appended(),
        Err(e) => {
            // The journal cannot be written (a full disk): the truck still gets a lane,
            // but never a priority one, and the records are held for a later write.
            hold_decision(&mut decision, &routes);
            shared.journal.failed(&e, journal_bodies(&decision, &tx));
        }
    }
    let lane = tx.lane.clone();
    let state = LaneState::from_decision(&decision);
    // Driven and recorded under the lanes' lock (an override checks it).
    shared.live.update(&lane, |l| {
        l.last_decision = Some(decision.clone());
        if actuate {
            shared.actuators.show(&state);
            l.shown = Some(state);
        }
    });
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
}
