//! Figure 6: backlog drain under live load.
//!
//! An agent journal is pre-filled with `n` events (`n/2` transactions with their
//! decisions, group-committed 1,000 pairs per append), as after an outage. Central runs
//! in this process over plain HTTP on loopback. The agent is then started on that store
//! with central configured (uplink batch 1,000, the most central takes per batch) and two
//! lanes of virtual boards, and trucks keep passing on both lanes while the backlog
//! drains. Drain rate: central's stored count for the gate, polled every 250 ms, from
//! agent start until it holds every pre-filled event. Live decision latency: departure
//! frame → lane topic beyond the 1 s grace (as figure 2) while draining, against the same
//! measure on a second agent (another gate, same central, empty journal) run just before
//! in the same process: the idle baseline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use edge_agent::decider::{MemoryReplica, decide};
use edge_agent::store::Store;
use jiff::Timestamp;
use protocol::schema::{EventBody, GateId};
use tokio_util::sync::CancellationToken;

use super::stats::{Samples, peak_rss, rate, reset_peak_rss};
use super::system::{self, CentralUnderTest};
use super::{Ctx, Row, data, policy, routes};
use crate::broker;
use crate::vboard::VirtualBoard;

/// Target drain rate.
pub const TARGET_RATE: f64 = 20_000.0;
/// Pairs per pre-fill append.
const PREFILL_GROUP: usize = 1_000;
/// Longest the drain may take before the figure gives up.
const DRAIN_LIMIT: Duration = Duration::from_secs(300);
/// Registry at central.
const REGISTRY: u64 = 1_000;

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

/// Drives trucks one at a time on each board until `until` says stop or `max` per lane;
/// returns departure frame → lane topic beyond the grace.
async fn live(
    boards: &[Arc<VirtualBoard>],
    mut subs: std::collections::HashMap<
        String,
        tokio::sync::mpsc::UnboundedReceiver<system::LaneMessage>,
    >,
    max: usize,
    until: CancellationToken,
) -> anyhow::Result<(Samples, usize)> {
    let mut tasks = Vec::new();
    for (i, b) in boards.iter().enumerate() {
        let mut rx = subs
            .remove(&b.lane().to_string())
            .context("lane subscriber missing a lane")?;
        let frames = b.watch_frames();
        let (b, until) = (b.clone(), until.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(600 * i as u64)).await;
            let mut out = Vec::new();
            let mut lost = 0usize;
            for _ in 0..max {
                if until.is_cancelled() {
                    break;
                }
                b.arrive(system::plain_truck());
                tokio::time::sleep(Duration::from_millis(100)).await;
                b.leave();
                let Some(m) = system::next_decision(&mut rx, Duration::from_secs(10)).await else {
                    lost += 1;
                    continue;
                };
                let (dep, _) = system::departure_and_command(&frames);
                match dep {
                    Some(d) if d.at <= m.received => out.push((
                        m.received,
                        m.received
                            .saturating_duration_since(d.at)
                            .saturating_sub(super::lane::GRACE),
                    )),
                    _ => lost += 1,
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (out, lost)
        }));
    }
    let mut all = Vec::new();
    let mut lost = 0;
    for t in tasks {
        let (o, l) = t.await.context("lane driver panicked")?;
        all.extend(o);
        lost += l;
    }
    all.sort_by_key(|x| x.0);
    let mut s = Samples::with_capacity(all.len());
    for (_, d) in all {
        s.push(d);
    }
    Ok((s, lost))
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
    let events = ctx.n;
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
    let central = system::start_central(&dir, REGISTRY, REGISTRY).await?;
    let broker = tokio::task::spawn_blocking(broker::start).await??;
    let stop_all = CancellationToken::new();

    // Idle baseline: another gate, empty journal.
    let idle_boards = system::boards(2)?;
    let idle_link = system::central_link(&central, idle_gate, 1_000, Duration::from_secs(30))?;
    let text = system::agent_toml(
        idle_gate,
        &idle_boards,
        broker.addr,
        &dir.join("idle.redb"),
        Some(&idle_link),
    );
    let cfg = edge_agent::config::Config::from_toml_str(&text, "figure 6 idle agent")?;
    let lanes: Vec<String> = idle_boards.iter().map(|b| b.lane().to_string()).collect();
    let subs = system::lane_subscriber(broker.addr, idle_gate, &lanes, stop_all.clone()).await?;
    let idle_stop = CancellationToken::new();
    let idle_agent = edge_agent::runtime::start(cfg, idle_stop.clone()).await?;
    system::links_up(&idle_boards, Duration::from_secs(10)).await?;
    system::replicated(&idle_agent.shared.store, Duration::from_secs(30)).await?;
    let (idle, idle_lost) = live(&idle_boards, subs, 15, CancellationToken::new()).await?;
    idle_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), idle_agent.join).await;
    drop(idle_boards);

    // The backlog agent.
    let boards = system::boards(2)?;
    let link = system::central_link(&central, busy_gate, 1_000, Duration::from_secs(30))?;
    let text = system::agent_toml(busy_gate, &boards, broker.addr, &store_path, Some(&link));
    let cfg = edge_agent::config::Config::from_toml_str(&text, "figure 6 backlog agent")?;
    let lanes: Vec<String> = boards.iter().map(|b| b.lane().to_string()).collect();
    let subs = system::lane_subscriber(broker.addr, busy_gate, &lanes, stop_all.clone()).await?;
    let rss_ok = reset_peak_rss();
    let agent_stop = CancellationToken::new();
    let started = Instant::now();
    let agent = edge_agent::runtime::start(cfg, agent_stop.clone()).await?;
    system::links_up(&boards, Duration::from_secs(10)).await?;
    let drained = CancellationToken::new();
    let live_task = {
        let (boards, drained) = (boards.clone(), drained.clone());
        tokio::spawn(async move { live(&boards, subs, 10_000, drained).await })
    };
    let mut first_stored: Option<Duration> = None;
    let mut done: Option<Duration> = None;
    while started.elapsed() < DRAIN_LIMIT {
        let n = stored(&central, busy_gate);
        if n > 0 && first_stored.is_none() {
            first_stored = Some(started.elapsed());
        }
        if n >= head {
            done = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drained.cancel();
    let (busy, busy_lost) = live_task.await.context("live load task")??;
    let peak = peak_rss();
    let final_stored = stored(&central, busy_gate);
    agent_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), agent.join).await;
    stop_all.cancel();
    central.stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), central.task).await;

    let Some(took) = done else {
        anyhow::bail!(
            "the backlog of {head} events did not drain within {DRAIN_LIMIT:?} ({final_stored} stored)"
        );
    };
    let drain_rate = rate(usize::try_from(head).unwrap_or(usize::MAX), took);
    let idle = idle.summary();
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
                "{:.1} s from agent start to all stored; first stored after {}; pre-fill took {:.1} s; uplink batch 1,000{}",
                took.as_secs_f64(),
                super::stats::fmt_duration(first_stored),
                prefill_time.as_secs_f64(),
                if rss_ok { "" } else { "; peak RSS of the whole run" }
            )),
        Row::new("6", "live decisions while draining (frame → topic beyond grace)")
            .latency(busy)
            .target("p99 ≤ 2 × idle p99", within_2x)
            .note(format!("2 lanes, one truck at a time each; {busy_lost} without a decision")),
        Row::new("6", "baseline: live decisions idle (no backlog), same run")
            .latency(idle)
            .note(format!("another gate, empty journal, same central and broker; {idle_lost} without a decision")),
    ])
}
