//! Figure 1: decision latency with a replica of n operators and n consignments.
//!
//! The measured operation is what the agent does per closed transaction
//! (`edge_agent::pipeline`): take a replica read snapshot (`Store::replica_view`, one redb
//! read transaction) and run `decide` over it. The baseline runs the same `decide` over
//! [`IndexedReplica`] (one HashMap look-up per operator and per container). Both are
//! timed per decision, alternating in blocks of [`BLOCK`] transactions so that machine
//! noise falls on both alike, and every pair of decisions is compared: a baseline that
//! decided differently would not be doing the same work.
//!
//! The agent's own `MemoryReplica` is timed too, on fewer decisions: its
//! `consignment_for` scans every consignment, so it is O(n) per decision and not the
//! issue's baseline at scale.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use edge_agent::decider::decide;
use protocol::schema::LaneDecision;

use super::data::{self, IndexedReplica, loaded_store};
use super::stats::{Samples, peak_rss, rate, reset_peak_rss};
use super::{Ctx, Row, policy, routes};

/// Decisions per alternation block.
const BLOCK: usize = 500;
/// Target of issue 9: p99 per decision.
const TARGET_P99: Duration = Duration::from_micros(50);
/// Longest the MemoryReplica measure may run.
const MEMORY_BUDGET: Duration = Duration::from_secs(20);

/// Runs figure 1.
///
/// # Errors
/// Store errors, generator errors, or a baseline that decided differently.
pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let n = ctx.n as u64;
    let decisions = ctx.decisions();
    let (policy, routes) = (policy(), routes());
    let now = data::ts(data::NOW_S);

    let _ = reset_peak_rss();
    let t = Instant::now();
    let store = loaded_store(&ctx.path("fig1.redb"), n, n)?;
    let load = t.elapsed();
    let load_rss = peak_rss();
    let t = Instant::now();
    let indexed = IndexedReplica::generate(n, n)?;
    let index_build = t.elapsed();

    let txs = (0..decisions as u64)
        .map(|k| data::transaction(k, n))
        .collect::<Result<Vec<_>, _>>()?;
    let _ = reset_peak_rss();
    let mut redb = Samples::with_capacity(decisions);
    let mut view_only = Samples::with_capacity(decisions);
    let mut base = Samples::with_capacity(decisions);
    let mut outcomes = [0usize; 3];
    for block in txs.chunks(BLOCK) {
        let mut firsts = Vec::with_capacity(block.len());
        for tx in block {
            let t = Instant::now();
            let view = store.replica_view().context("replica snapshot")?;
            let taken = t.elapsed();
            let d = decide(tx, &view, &policy, &routes, now);
            drop(view);
            redb.push(t.elapsed());
            view_only.push(taken);
            firsts.push(d);
        }
        for (tx, first) in block.iter().zip(&firsts) {
            let t = Instant::now();
            let d = decide(tx, &indexed, &policy, &routes, now);
            base.push(t.elapsed());
            if d.decision != first.decision || d.reasons.len() != first.reasons.len() {
                bail!(
                    "transaction {}: redb replica decided {:?} ({} reasons), HashMap {:?} ({})",
                    tx.id,
                    first.decision,
                    first.reasons.len(),
                    d.decision,
                    d.reasons.len()
                );
            }
            outcomes[match d.decision {
                LaneDecision::Fast => 0,
                LaneDecision::Standard => 1,
                LaneDecision::Inspect => 2,
            }] += 1;
        }
    }
    let rss = peak_rss();
    drop(indexed);

    // The agent's MemoryReplica, on what fits the time budget.
    let memory = data::memory_replica(n, n)?;
    let mut mem = Samples::default();
    let started = Instant::now();
    for tx in txs.iter().take((decisions / 100).clamp(10, 1_000)) {
        let t = Instant::now();
        let _ = decide(tx, &memory, &policy, &routes, now);
        mem.push(t.elapsed());
        if started.elapsed() > MEMORY_BUDGET {
            break;
        }
    }
    drop(memory);

    let redb = redb.summary();
    let base = base.summary();
    let mem = mem.summary();
    let view_only = view_only.summary();
    let ratio = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) if !b.is_zero() => a.as_secs_f64() / b.as_secs_f64(),
        _ => 0.0,
    };
    let met = redb.p99.is_some_and(|p| p <= TARGET_P99);
    Ok(vec![
        Row::new("1", "decide, redb replica (snapshot + decide)")
            .latency(redb)
            .throughput(rate(redb.count, redb.total), "decisions")
            .target("p99 ≤ 50 µs", met)
            .note(format!(
                "p99 {:.1}× the HashMap baseline; outcomes FAST {} / STANDARD {} / INSPECT {}",
                ratio(redb.p99, base.p99),
                outcomes[0],
                outcomes[1],
                outcomes[2]
            )),
        Row::new("1", "baseline: decide, indexed HashMap")
            .latency(base)
            .throughput(rate(base.count, base.total), "decisions")
            .rss(rss)
            .note(format!(
                "index built in {:.2} s; peak RSS is the process while both replicas and the \
                 transactions are held (not the agent's)",
                index_build.as_secs_f64()
            )),
        Row::new("1", "  of which replica_view() (redb read txn)")
            .latency(view_only)
            .note("opening the read transaction and reading the replica meta"),
        Row::new("1", "agent MemoryReplica (linear consignment scan)")
            .latency(mem)
            .throughput(rate(mem.count, mem.total), "decisions")
            .note("O(n) per decision: not a baseline at scale"),
        Row::new("1", "load replica (apply_batch, chunks of 20,000)")
            .throughput(rate(2 * ctx.n, load), "records")
            .rss(load_rss)
            .note(format!(
                "{:.2} s for 2 × {} records",
                load.as_secs_f64(),
                ctx.n
            )),
    ])
}
