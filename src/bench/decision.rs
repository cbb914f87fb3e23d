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
//! The agent's own `MemoryReplica` is timed too, on fewer decisions.
//!
//! Before that comparison, the redb replica alone is timed once per replica cache size
//! ([`REPLICA_CACHES`]) with the peak RSS beside the p99, each in its own process
//! ([`decide_alone`]): the store opened with that cache (the journal file's cache at its
//! default), [`WARM`] untimed decisions, then the timed ones, each transaction generated
//! just before it, so the process holds only the store and one transaction as the agent
//! would.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use edge_agent::decider::decide;
use protocol::schema::LaneDecision;

use edge_agent::store::{CacheSizes, DEFAULT_REPLICA_CACHE_BYTES, Store, replica_path};

use super::data::{self, IndexedReplica, loaded_store};
use super::footprint::{clock_ticks, cpu_ticks_at};
use super::stats::{Samples, Summary, current_rss, peak_rss, rate, reset_peak_rss};
use super::{Ctx, Row, gate, policy, routes};

/// Decisions per alternation block.
const BLOCK: usize = 500;
/// Target of issue 9: p99 per decision.
const TARGET_P99: Duration = Duration::from_micros(50);
/// Longest the MemoryReplica measure may run.
const MEMORY_BUDGET: Duration = Duration::from_secs(20);
/// Replica cache sizes timed alone, in MiB.
const REPLICA_CACHES: [usize; 4] = [16, 32, 64, 128];
/// Untimed decisions before each cache size's timed ones (the agent decides with a warm
/// cache).
const WARM: u64 = 10_000;
/// Target of issue 18: the agent's resident memory with the replica loaded.
const TARGET_RSS: u64 = 100 * 1_000_000;

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
    drop(store);
    let mut rows = Vec::new();
    for mib in REPLICA_CACHES {
        rows.push(alone(ctx, mib << 20)?);
    }
    let store = Store::open_with_cache(&ctx.path("fig1.redb"), gate()?, CacheSizes::default())
        .context("opening the bench store again")?;
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
    rows.extend([
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
    ]);
    Ok(rows)
}

/// The redb replica alone with a replica cache of `cache` bytes, measured in a child
/// process ([`decide_alone`], `aeogate bench-decide`) so that its RSS is the store's and
/// the decisions', not this process's.
fn alone(ctx: &Ctx, cache: usize) -> anyhow::Result<Row> {
    let exe = std::env::current_exe().context("locating the aeogate binary")?;
    let out = std::process::Command::new(exe)
        .arg("bench-decide")
        .arg("--store")
        .arg(ctx.path("fig1.redb"))
        .args(["--n", &ctx.n.to_string()])
        .args(["--decisions", &ctx.decisions().to_string()])
        .args(["--replica-cache-mib", &(cache >> 20).to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running aeogate bench-decide")?;
    if !out.status.success() {
        bail!("aeogate bench-decide failed: {}", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<u64> = text
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("aeogate bench-decide printed {text:?}"))?;
    let &[count, p50, p99, p999, max, cold, total, before, peak, cpu] = v.as_slice() else {
        bail!("aeogate bench-decide printed {text:?}");
    };
    let ns = |x: u64| Some(Duration::from_nanos(x));
    let s = Summary {
        count: usize::try_from(count).unwrap_or(usize::MAX),
        p50: ns(p50),
        p99: ns(p99),
        p999: ns(p999),
        max: ns(max),
        cold: ns(cold),
        total: Duration::from_nanos(total),
    };
    let met = s.p99.is_some_and(|p| p <= TARGET_P99) && peak <= TARGET_RSS;
    let mut row = Row::new(
        "1",
        format!("decide, redb replica alone, {} MiB replica cache", cache >> 20),
    )
    .latency(s)
    .throughput(rate(s.count, s.total), "decisions")
    .rss(Some(peak))
    .note(format!(
        "CPU {:.1} µs a decision (mean, preemption excluded); own process: peak RSS over opening, {WARM} warm-up and the timed decisions; {:.1} MiB before opening the store; replica file {:.0} MiB",
        cpu as f64 / 1_000.0 / count.max(1) as f64,
        before as f64 / f64::from(1 << 20),
        std::fs::metadata(replica_path(&ctx.path("fig1.redb")))
            .map_or(0.0, |m| m.len() as f64 / f64::from(1 << 20))
    ));
    if cache == DEFAULT_REPLICA_CACHE_BYTES {
        row = row.target("p99 ≤ 50 µs with RSS ≤ 100 MB (default cache)", met);
    }
    Ok(row)
}

/// `aeogate bench-decide`: opens the store at `store` (n operators and n consignments)
/// with a replica cache of `cache_mib` MiB, decides [`WARM`] transactions untimed and
/// `decisions` timed, each generated just before it, and prints on one line: count, p50,
/// p99, p99.9, max, cold and total in ns, the RSS before opening the store and the
/// process's peak RSS in bytes, and the thread's CPU time over the timed decisions in ns
/// (utime + stime, less the CPU of generating the same transactions again).
///
/// # Errors
/// Store errors, generator errors.
pub fn decide_alone(store: &Path, n: u64, decisions: u64, cache_mib: usize) -> anyhow::Result<()> {
    let (policy, routes) = (policy(), routes());
    let now = data::ts(data::NOW_S);
    let before = current_rss().unwrap_or(0);
    let caches = CacheSizes {
        replica: cache_mib << 20,
        ..CacheSizes::default()
    };
    let store =
        Store::open_with_cache(store, gate()?, caches).context("opening the bench store")?;
    let decide_one = |k: u64| -> anyhow::Result<Duration> {
        let tx = data::transaction(k, n)?;
        let t = Instant::now();
        let view = store.replica_view().context("replica snapshot")?;
        let d = decide(&tx, &view, &policy, &routes, now);
        drop(view);
        let took = t.elapsed();
        std::hint::black_box(d);
        Ok(took)
    };
    for k in decisions..decisions + WARM {
        decide_one(k)?;
    }
    let mut samples = Samples::with_capacity(usize::try_from(decisions).unwrap_or(0));
    let ticks = || cpu_ticks_at("/proc/thread-self/stat");
    let t0 = ticks()?;
    for k in 0..decisions {
        samples.push(decide_one(k)?);
    }
    let t1 = ticks()?;
    // The same transactions generated without deciding: their CPU is taken off.
    for k in 0..decisions {
        std::hint::black_box(data::transaction(k, n)?);
    }
    let t2 = ticks()?;
    let cpu_ns = (t1 - t0).saturating_sub(t2 - t1) * 1_000_000_000 / clock_ticks().max(1);
    let peak = peak_rss().unwrap_or(0);
    let s = samples.summary();
    let ns = |d: Option<Duration>| d.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    println!(
        "{} {} {} {} {} {} {} {before} {peak} {cpu_ns}",
        s.count,
        ns(s.p50),
        ns(s.p99),
        ns(s.p999),
        ns(s.max),
        ns(s.cold),
        ns(Some(s.total))
    );
    Ok(())
}
