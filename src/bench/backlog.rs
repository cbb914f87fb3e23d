//! Figure 6: backlog drain under live load.
//!
//! An agent journal is pre-filled with a backlog (pairs of a transaction and its
//! decision, group-committed 1,000 pairs per append), as after an outage: three times the
//! records per kind, at most [`FULL_N`] (300,000 events by default, 1,000,000 with
//! `--full`), so that the drain lasts long enough to time a hundred live decisions or
//! more. Central runs in this process over plain HTTP on loopback.
//!
//! The agent is started on that store with central configured (uplink batch 1,000, the
//! most central takes per batch) and [`LANES`] presence-loop lanes of virtual boards,
//! but its central address is a [`system::HeldDoor`]: connections are accepted by the
//! kernel and left unanswered. The lanes settle first (every board's link up and one
//! warm-up truck decided on every lane), then the door opens and the backlog drains.
//! Trucks keep passing on every lane, one at a time per lane (arrive, 100 ms on the
//! loop, leave, wait for the decision, 100 ms gap), from before the door opens until
//! [`AFTER_DRAIN`] after the backlog is acknowledged.
//!
//! - **Drain rate**: the backlog's size over the time from opening the door until the
//!   agent's acknowledged cursor covers it (central acknowledges only what it stored
//!   durably, docs/delivery.md).
//! - **Live decision latency** (figure 2's measure): departure frame written into the
//!   pty → decision message on the lane topic, beyond the 1 s departure grace, for the
//!   trucks whose departure fell between opening the door and the end of the drain.
//! - **Baselines in the same run**: the same measure on a second agent (another gate,
//!   same central and broker, empty journal, same number of lanes) run before, and on the
//!   backlog agent itself once its backlog is drained.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use edge_agent::decider::{MemoryReplica, decide};
use edge_agent::store::Store;
use jiff::Timestamp;
use protocol::schema::{EventBody, GateId};
use tokio_util::sync::CancellationToken;

use super::stats::{Samples, peak_rss, rate, reset_peak_rss};
use super::system::{self, CentralUnderTest};
use super::{Ctx, FULL_N, Row, data, policy, routes};
use crate::broker;
use crate::vboard::VirtualBoard;

/// Target drain rate.
pub const TARGET_RATE: f64 = 20_000.0;
/// Lanes on each agent (as figure 2: about six trucks a second in all).
pub const LANES: usize = 8;
/// How long the live load goes on once the backlog is drained (the second baseline).
pub const AFTER_DRAIN: Duration = Duration::from_secs(15);
/// How long the idle agent's lanes are timed after their warm-up.
const IDLE_RUN: Duration = Duration::from_secs(40);
/// Pairs per pre-fill append.
const PREFILL_GROUP: usize = 1_000;
/// Longest the drain may take before the figure gives up.
const DRAIN_LIMIT: Duration = Duration::from_secs(300);
/// Longest the lanes may take to settle (a warm-up truck decided on every lane).
const SETTLE_LIMIT: Duration = Duration::from_secs(15);
/// Longest wait for one truck's decision.
const DECISION_WAIT: Duration = Duration::from_secs(5);
/// Registry at central.
const REGISTRY: u64 = 1_000;

/// Set to run central beside the agent (same disk, same priority) instead of apart.
pub const CENTRAL_BESIDE_VAR: &str = "AEOGATE_BENCH_CENTRAL_BESIDE";

/// A temporary folder in RAM (`/dev/shm`) when the machine has one, else in the system's
/// temporary folder.
fn ram_folder() -> std::io::Result<tempfile::TempDir> {
    let shm = std::path::Path::new("/dev/shm");
    let b = tempfile::Builder::new()
        .prefix("aeogate-central-")
        .to_owned();
    if shm.is_dir() {
        b.tempdir_in(shm)
    } else {
        b.tempdir()
    }
}

/// Events in the backlog for `n` records per kind: 3n, at most [`FULL_N`], even.
#[must_use]
pub fn backlog_events(n: usize) -> usize {
    (n.saturating_mul(3)).min(FULL_N) & !1
}

fn prefill(path: &std::path::Path, gate: &GateId, events: usize) -> anyhow::Result<u64> {
    let store = Store::open(path, gate.clone()).context("opening the backlog store")?;
    let (policy, routes) = (policy(), routes());
    let empty = MemoryReplica::new();
    let pairs = events / 2;
    let mut k = 0usize;
    while k < pairs {
        let m = PREFILL_GROUP.min(pairs - k);
        let mut bodies = Vec::with_capacity(2 * m);
        for i in k..k + m {
            let mut tx = data::transaction(i as u64, REGISTRY)?;
            tx.gate = gate.clone();
            let d = decide(&tx, &empty, &policy, &routes, Timestamp::now());
            bodies.push(EventBody::Transaction { transaction: tx });
            bodies.push(EventBody::Decision { decision: d });
        }
        store
            .append(bodies, Timestamp::now())
            .context("pre-filling the journal")?;
        k += m;
    }
    Ok(store.journal_head())
}

fn stored(c: &CentralUnderTest, gate: &str) -> u64 {
    c.hub
        .summary()
        .ok()
        .and_then(|s| s.events_per_gate.get(gate).copied())
        .unwrap_or(0)
}

/// One truck on one lane.
#[derive(Debug, Clone, Copy)]
struct Passage {
    lane: usize,
    /// When its departure frame was written (or, without one, when it left the loop).
    departed: Instant,
    /// Departure frame → lane topic beyond the grace; `None` when no decision came within
    /// [`DECISION_WAIT`].
    beyond: Option<Duration>,
}

/// Every passage so far, shared between the lane drivers and the figure.
type Log = Arc<Mutex<Vec<Passage>>>;

/// Drives trucks one at a time on `board` until `stop`, logging each passage.
async fn drive_lane(
    lane: usize,
    board: Arc<VirtualBoard>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<system::LaneMessage>,
    offset: Duration,
    log: Log,
    stop: CancellationToken,
) {
    let frames = board.watch_frames();
    tokio::time::sleep(offset).await;
    // Bounded by `stop` (the figure cancels it within its own limits) and, in case it
    // never comes, by one truck's longest cycle into `DRAIN_LIMIT` twice over.
    let most = (2 * DRAIN_LIMIT.as_millis() / 1_200) as usize;
    for _ in 0..most {
        if stop.is_cancelled() {
            break;
        }
        // A decision that came after its truck was given up must not be taken for this one.
        while rx.try_recv().is_ok() {}
        let _ = system::departure_and_command(&frames);
        board.arrive(system::plain_truck());
        tokio::time::sleep(Duration::from_millis(100)).await;
        board.leave();
        let left = Instant::now();
        let message = system::next_decision(&mut rx, DECISION_WAIT).await;
        let (dep, _) = system::departure_and_command(&frames);
        let departed = dep.as_ref().map_or(left, |d| d.at);
        let beyond = match (&dep, &message) {
            (Some(d), Some(m)) if d.at <= m.received => Some(
                m.received
                    .saturating_duration_since(d.at)
                    .saturating_sub(super::lane::GRACE),
            ),
            _ => None,
        };
        if let Ok(mut l) = log.lock() {
            l.push(Passage {
                lane,
                departed,
                beyond,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts one driver per board; returns the shared log and the drivers.
fn start_lanes(
    boards: &[Arc<VirtualBoard>],
    mut subs: std::collections::HashMap<
        String,
        tokio::sync::mpsc::UnboundedReceiver<system::LaneMessage>,
    >,
    stop: &CancellationToken,
) -> anyhow::Result<(Log, Vec<tokio::task::JoinHandle<()>>)> {
    let log: Log = Arc::default();
    let cycle = Duration::from_millis(1_300);
    let mut tasks = Vec::with_capacity(boards.len());
    for (i, b) in boards.iter().enumerate() {
        let rx = subs
            .remove(&b.lane().to_string())
            .context("lane subscriber missing a lane")?;
        let offset = cycle.mul_f64(i as f64 / boards.len().max(1) as f64);
        tasks.push(tokio::spawn(drive_lane(
            i,
            b.clone(),
            rx,
            offset,
            log.clone(),
            stop.clone(),
        )));
    }
    Ok((log, tasks))
}

/// Waits until every one of `lanes` lanes has had a decided truck, at most
/// [`SETTLE_LIMIT`]; returns how long it took and the lanes that never settled.
async fn settle(log: &Log, lanes: usize) -> (Duration, usize) {
    let t = Instant::now();
    loop {
        let unsettled = log.lock().map_or(lanes, |l| {
            (0..lanes)
                .filter(|i| !l.iter().any(|p| p.lane == *i && p.beyond.is_some()))
                .count()
        });
        if unsettled == 0 || t.elapsed() >= SETTLE_LIMIT {
            return (t.elapsed(), unsettled);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops the drivers and returns every passage.
async fn stop_lanes(
    log: Log,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: &CancellationToken,
) -> anyhow::Result<Vec<Passage>> {
    stop.cancel();
    for t in tasks {
        t.await.context("lane driver panicked")?;
    }
    let mut all = log.lock().map(|l| l.clone()).unwrap_or_default();
    all.sort_by_key(|p| p.departed);
    Ok(all)
}

/// Latencies of the passages that departed in `[from, to)`, and how many had none.
fn window(passages: &[Passage], from: Instant, to: Instant) -> (Samples, usize) {
    let mut s = Samples::default();
    let mut lost = 0;
    for p in passages
        .iter()
        .filter(|p| p.departed >= from && p.departed < to)
    {
        match p.beyond {
            Some(d) => s.push(d),
            None => lost += 1,
        }
    }
    (s, lost)
}

/// Runs figure 6.
///
/// # Errors
/// A part cannot be started, or the backlog does not drain within 300 s.
pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    super::system::block_on(measure(ctx))
}

#[allow(clippy::too_many_lines)]
async fn measure(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let dir = ctx.path("fig6");
    std::fs::create_dir_all(&dir).context("figure 6 directory")?;
    let events = backlog_events(ctx.n);
    let busy_gate = "PORT1-G1";
    let idle_gate = "PORT1-G2";
    let gid = GateId::parse(busy_gate).context("gate")?;
    let store_path = dir.join("backlog.redb");
    let t = Instant::now();
    let head = {
        let p = store_path.clone();
        tokio::task::spawn_blocking(move || prefill(&p, &gid, events)).await??
    };
    let prefill_time = t.elapsed();
    // Central as deployed, on its own machine: its store on another device (a RAM
    // folder when there is one) and its threads below the agent's priority. With
    // `AEOGATE_BENCH_CENTRAL_BESIDE` set it shares the agent's disk and priority instead.
    let central_ram = match std::env::var_os(CENTRAL_BESIDE_VAR) {
        Some(_) => None,
        None => Some(ram_folder().context("central's folder")?),
    };
    let central = match &central_ram {
        Some(ram) => {
            system::start_central_apart(ram.path(), REGISTRY, REGISTRY, system::CENTRAL_NICE)
                .await?
        }
        None => system::start_central(&dir, REGISTRY, REGISTRY).await?,
    };
    let broker = tokio::task::spawn_blocking(broker::start).await??;
    let stop_all = CancellationToken::new();

    // Idle baseline: another gate, empty journal, the same number of lanes.
    let (idle, idle_lost, idle_unsettled, idle_commits) = {
        let boards = system::boards(LANES)?;
        let link = system::central_link(&central, idle_gate, 1_000, Duration::from_secs(30))?;
        let idle_store = dir.join("idle.redb");
        let text = system::agent_toml(idle_gate, &boards, broker.addr, &idle_store, Some(&link));
        let (cfg, lanes) = system::agent_config(&text, &boards, "figure 6 idle agent")?;
        let agent_stop = CancellationToken::new();
        let subs =
            system::lane_subscriber(broker.addr, idle_gate, &lanes, agent_stop.clone()).await?;
        let agent = edge_agent::runtime::start(cfg, agent_stop.clone()).await?;
        system::links_up(&boards, Duration::from_secs(10)).await?;
        system::replicated(&agent.shared.store, Duration::from_secs(30)).await?;
        let lanes_stop = CancellationToken::new();
        let (log, tasks) = start_lanes(&boards, subs, &lanes_stop)?;
        let (_, unsettled) = settle(&log, LANES).await;
        let from = Instant::now();
        let commits0 = commit_buckets();
        tokio::time::sleep(IDLE_RUN).await;
        let to = Instant::now();
        let idle_commits = super::stats::fmt_commits(&commits0, &commit_buckets());
        let passages = stop_lanes(log, tasks, &lanes_stop).await?;
        agent_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), agent.join).await;
        let (s, lost) = window(&passages, from, to);
        (s, lost, unsettled, idle_commits)
    };

    // The backlog agent, its central address held until the lanes have settled.
    let boards = system::boards(LANES)?;
    let door = system::held_door(&central, &dir, stop_all.clone())?;
    let mut link = system::central_link(&central, busy_gate, 1_000, Duration::from_secs(30))?;
    link.url.clone_from(&door.url);
    let text = system::agent_toml(busy_gate, &boards, broker.addr, &store_path, Some(&link));
    let (cfg, lanes) = system::agent_config(&text, &boards, "figure 6 backlog agent")?;
    let subs = system::lane_subscriber(broker.addr, busy_gate, &lanes, stop_all.clone()).await?;
    let rss_ok = reset_peak_rss();
    let agent_stop = CancellationToken::new();
    let agent = edge_agent::runtime::start(cfg, agent_stop.clone()).await?;
    system::links_up(&boards, Duration::from_secs(10)).await?;
    let lanes_stop = CancellationToken::new();
    let (log, tasks) = start_lanes(&boards, subs, &lanes_stop)?;
    let (settle_time, busy_unsettled) = settle(&log, LANES).await;

    let opened = Instant::now();
    let commits0 = commit_buckets();
    door.open.cancel();
    let mut first_stored: Option<Duration> = None;
    let mut done: Option<Duration> = None;
    while opened.elapsed() < DRAIN_LIMIT {
        if first_stored.is_none() && stored(&central, busy_gate) > 0 {
            first_stored = Some(opened.elapsed());
        }
        if agent.shared.store.acked_seq() >= head {
            done = Some(opened.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained_at = Instant::now();
    let busy_commits = super::stats::fmt_commits(&commits0, &commit_buckets());
    let peak = peak_rss();
    if done.is_some() {
        tokio::time::sleep(AFTER_DRAIN).await;
    }
    let after_end = Instant::now();
    let passages = stop_lanes(log, tasks, &lanes_stop).await?;
    let final_stored = stored(&central, busy_gate);
    agent_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), agent.join).await;
    stop_all.cancel();
    central.stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), central.task).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), door.task).await;

    let Some(took) = done else {
        anyhow::bail!(
            "the backlog of {head} events did not drain within {DRAIN_LIMIT:?} ({final_stored} stored)"
        );
    };
    let (busy, busy_lost) = window(&passages, opened, drained_at);
    let (after, after_lost) = window(&passages, drained_at, after_end);
    let warm_lost = passages
        .iter()
        .filter(|p| p.departed < opened && p.beyond.is_none())
        .count();
    let drain_rate = rate(usize::try_from(head).unwrap_or(usize::MAX), took);
    let idle = idle.summary();
    let busy_n = busy.len();
    let busy = busy.summary();
    let within_2x = match (idle.p99, busy.p99) {
        (Some(i), Some(b)) => b <= i * 2,
        _ => false,
    };
    Ok(vec![
        Row::new("6", format!("backlog drain, {head} events"))
            .throughput(drain_rate, "events")
            .rss(peak)
            .target("≥ 20,000 events/s", drain_rate >= TARGET_RATE)
            .note(format!(
                "{:.1} s from opening central's door to all acknowledged; first stored after {}; lanes settled in {:.1} s before{}; pre-fill took {:.1} s; uplink batch 1,000; {}{}",
                took.as_secs_f64(),
                super::stats::fmt_duration(first_stored),
                settle_time.as_secs_f64(),
                if busy_unsettled == 0 {
                    String::new()
                } else {
                    format!(" ({busy_unsettled} lanes without a warm-up decision)")
                },
                prefill_time.as_secs_f64(),
                if central_ram.is_some() {
                    format!("central apart (store in a RAM folder, threads at nice +{})", system::CENTRAL_NICE)
                } else {
                    "central beside the agent (same disk, same priority)".to_owned()
                },
                if rss_ok { "" } else { "; peak RSS of the whole run" }
            )),
        Row::new("6", "live decisions while draining (frame → topic beyond grace)")
            .latency(busy)
            .throughput(rate(busy_n, took), "decisions")
            .target("p99 ≤ 2 × idle p99", within_2x)
            .note(format!(
                "{LANES} lanes, one truck at a time each; {busy_lost} without a decision while draining, {warm_lost} in the warm-up; the agent's journal commits meanwhile: {busy_commits}"
            )),
        Row::new("6", "baseline: live decisions idle (no backlog), same run")
            .latency(idle)
            .note(format!(
                "another gate, empty journal, same central and broker, {LANES} lanes for {} s after a warm-up truck per lane; {idle_lost} without a decision; its journal commits meanwhile: {idle_commits}{}",
                IDLE_RUN.as_secs(),
                if idle_unsettled == 0 {
                    String::new()
                } else {
                    format!("; {idle_unsettled} lanes without a warm-up decision")
                }
            )),
        Row::new("6", "baseline: the same agent once drained, same run")
            .latency(after.summary())
            .note(format!(
                "the {} s after the backlog was acknowledged; {after_lost} without a decision",
                AFTER_DRAIN.as_secs()
            )),
    ])
}

/// The agents' journal commit times so far (`aeogate_journal_commit_seconds`: the agents
/// in this process share the metrics recorder, one agent runs at a time).
fn commit_buckets() -> Vec<(f64, f64)> {
    super::stats::histogram_buckets(
        &edge_agent::telemetry::metrics_handle().render(),
        "aeogate_journal_commit_seconds",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlog_is_three_times_the_scale_capped_at_the_full_scale() {
        assert_eq!(backlog_events(100_000), 300_000);
        assert_eq!(backlog_events(FULL_N), FULL_N);
        assert_eq!(backlog_events(500_001), FULL_N);
        assert_eq!(backlog_events(3), 8, "9 rounded down to whole pairs");
    }

    #[test]
    fn window_takes_departures_in_range_and_counts_the_lost() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let p = |ms, beyond| Passage {
            lane: 0,
            departed: at(ms),
            beyond,
        };
        let passages = [
            p(0, Some(Duration::from_millis(1))),
            p(100, Some(Duration::from_millis(7))),
            p(150, None),
            p(200, Some(Duration::from_millis(9))),
        ];
        let (s, lost) = window(&passages, at(100), at(200));
        assert_eq!(lost, 1);
        let s = s.summary();
        assert_eq!(s.count, 1);
        assert_eq!(s.max, Some(Duration::from_millis(7)));
    }
}
