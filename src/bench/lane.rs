//! Figure 2: read to lane command, end to end.
//!
//! Eight virtual boards (the real firmware on pseudo-terminals), the edge agent in this
//! process with one presence-loop lane per board, an in-process rumqttd broker, and a
//! subscriber on the lane decision topics. Every lane runs trucks one after another:
//! arrive, 100 ms on the loop, leave, wait for the lane's decision message.
//!
//! **What is timed.** A decision happens when the transaction closes, and on a loop lane it
//! closes on departure: the loop clears, and the agent waits `DEPARTURE_GRACE` (1 s, so a
//! trailer's gap does not split a truck in two) before closing. So the clock starts when
//! the board's `write` of the departure frame (`Presence { present: false }`) into the pty
//! returns ([`VirtualBoard::watch_frames`](crate::vboard::VirtualBoard::watch_frames)) —
//! the frame that triggers the close — and stops when the subscriber receives the lane's
//! decision message. The grace is policy, not processing, and is subtracted; what remains
//! is the agent's (and broker's) own latency, held against the target of 5 ms beyond the
//! frame's wire time. The board's 50 ms loop debounce comes before the frame is written
//! and is not in the figure. Two parts are reported beside it, from the agent's own
//! decision timestamp (`LaneState::at`, taken when deciding starts): frame → decision
//! start (link, assembler, and the wait for the assembler's timer), and decision start →
//! lane topic (decide, durable journal append, publish, broker). The lane command back at
//! the board is reported too (the board reads its pty every millisecond).
//!
//! Baselines in the same run: the departure frame's wire time at [`system::BAUD`], and a
//! bare MQTT round trip (QoS 1 publish → subscriber receipt) through the same broker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use super::stats::{Samples, peak_rss, rate, reset_peak_rss};
use super::system::{self, LaneMessage};
use super::{Ctx, FULL_N, Row};
use crate::broker;
use crate::vboard::{LinkFrame, VirtualBoard};

/// Lanes driven at once.
pub const LANES: usize = 8;
/// The agent's departure grace (`edge_agent::assembler::DEPARTURE_GRACE`).
pub const GRACE: Duration = Duration::from_secs(1);
/// Target: p99 at most this much beyond the frame's wire time.
pub const TARGET: Duration = Duration::from_millis(5);
/// Longest wait for one decision.
const DECISION_WAIT: Duration = Duration::from_secs(5);

/// Trucks per lane: 40 (320 samples, about a minute), 125 at full scale.
fn per_lane(ctx: &Ctx) -> usize {
    if ctx.n >= FULL_N { 125 } else { 40 }
}

/// One truck's timings.
#[derive(Debug, Clone)]
struct Sample {
    departure: LinkFrame,
    command: Option<LinkFrame>,
    message: LaneMessage,
}

/// `later − earlier` on the wall clock, zero if negative.
fn wall_between(earlier: Timestamp, later: Timestamp) -> Duration {
    Duration::try_from(later.duration_since(earlier)).unwrap_or(Duration::ZERO)
}

/// Runs figure 2.
///
/// # Errors
/// The broker, a board or the agent cannot be started, or no decision arrives.
pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    super::system::block_on(measure(ctx))
}

async fn drive_lane(
    board: Arc<VirtualBoard>,
    frames: std::sync::mpsc::Receiver<LinkFrame>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<LaneMessage>,
    trucks: usize,
    offset: Duration,
) -> (Vec<Sample>, usize) {
    tokio::time::sleep(offset).await;
    let mut out = Vec::with_capacity(trucks);
    let mut lost = 0;
    for _ in 0..trucks {
        board.arrive(system::plain_truck());
        tokio::time::sleep(Duration::from_millis(100)).await;
        board.leave();
        let Some(message) = system::next_decision(&mut rx, DECISION_WAIT).await else {
            lost += 1;
            continue;
        };
        // The lane command reaches the board's pty about when the topic message leaves.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (departure, command) = system::departure_and_command(&frames);
        match departure {
            Some(departure) if departure.at <= message.received => out.push(Sample {
                departure,
                command,
                message,
            }),
            _ => lost += 1,
        }
    }
    (out, lost)
}

async fn measure(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let gate = "PORT1-G1";
    let broker = tokio::task::spawn_blocking(broker::start).await??;
    let boards = system::boards(LANES)?;
    let store = ctx.path("fig2-agent.redb");
    let text = system::agent_toml(gate, &boards, broker.addr, &store, None);
    let (cfg, lanes) = system::agent_config(&text, &boards, "figure 2 agent")
        .context("figure 2 agent configuration")?;
    let stop = CancellationToken::new();
    let mut subs = system::lane_subscriber(broker.addr, gate, &lanes, stop.clone()).await?;
    let rss_ok = reset_peak_rss();
    let agent = edge_agent::runtime::start(cfg, stop.clone()).await?;
    system::links_up(&boards, Duration::from_secs(10)).await?;

    let trucks = per_lane(ctx);
    let started = Instant::now();
    let mut tasks = Vec::new();
    let cycle = Duration::from_millis(1_300);
    for (i, b) in boards.iter().enumerate() {
        let rx = subs
            .remove(&b.lane().to_string())
            .context("lane subscriber missing a lane")?;
        let frames = b.watch_frames();
        let offset = cycle.mul_f64(i as f64 / LANES as f64);
        tasks.push(tokio::spawn(drive_lane(
            b.clone(),
            frames,
            rx,
            trucks,
            offset,
        )));
    }
    let (mut samples, lost) = system::join_lane_drivers(tasks).await?;
    let elapsed = started.elapsed();
    let peak = peak_rss();
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), agent.join).await;
    if samples.is_empty() {
        anyhow::bail!("no decision reached the lane topics ({lost} trucks without one)");
    }
    // Samples in completion order, so the first is the cold one.
    samples.sort_by_key(|s| s.message.received);

    let mut beyond = Samples::with_capacity(samples.len());
    let mut raw = Samples::with_capacity(samples.len());
    let mut to_decide = Samples::with_capacity(samples.len());
    let mut decide_to_topic = Samples::with_capacity(samples.len());
    let mut to_board = Samples::default();
    let mut wire = Samples::with_capacity(samples.len());
    let mut wire_max = Duration::ZERO;
    for s in &samples {
        let total = s.message.received.saturating_duration_since(s.departure.at);
        raw.push(total);
        beyond.push(total.saturating_sub(GRACE));
        let w = system::wire_time(s.departure.wire_bytes);
        wire_max = wire_max.max(w);
        wire.push(w);
        if let Some(d) = s.message.decided_at {
            to_decide.push(wall_between(s.departure.wall, d).saturating_sub(GRACE));
            decide_to_topic.push(wall_between(d, s.message.received_wall));
        }
        if let Some(c) = &s.command {
            to_board.push(
                c.at.saturating_duration_since(s.departure.at)
                    .saturating_sub(GRACE),
            );
        }
    }
    let decisions = samples.len();
    let rt_samples = system::mqtt_round_trips(broker.addr, 1_000).await?;

    let beyond = beyond.summary();
    let limit = TARGET + wire_max;
    let met = beyond.p99.is_some_and(|p| p <= limit);
    let rss_note = if rss_ok {
        ""
    } else {
        " (peak RSS of the whole run)"
    };
    Ok(vec![
        Row::new("2", "departure frame → lane topic, beyond the 1 s grace")
            .latency(beyond)
            .throughput(rate(decisions, elapsed), "decisions")
            .rss(peak)
            .target(format!("p99 ≤ 5 ms + wire {:.2} ms", wire_max.as_secs_f64() * 1e3), met)
            .note(format!(
                "{LANES} lanes × {trucks} trucks, one at a time per lane; {lost} without a decision; agent, broker and boards in this process{rss_note}"
            )),
        Row::new("2", "of which frame → decision start (link, assembler timer)")
            .latency(to_decide.summary())
            .note("wall clock; the agent's LaneState::at"),
        Row::new("2", "of which decision start → lane topic (decide, journal, publish)")
            .latency(decide_to_topic.summary())
            .note("wall clock"),
        Row::new("2", "departure frame → lane command read by the board, beyond grace")
            .latency(to_board.summary())
            .note("the board reads its pty every 1 ms"),
        Row::new("2", "departure frame → lane topic, grace included")
            .latency(raw.summary()),
        Row::new("2", "baseline: departure frame wire time")
            .latency(wire.summary())
            .note(format!("frame bytes × 10 bits / {} baud", system::BAUD)),
        Row::new("2", "baseline: bare MQTT round trip, QoS 1, same broker")
            .latency(rt_samples.summary())
            .note("200-byte payload, one at a time"),
    ])
}
