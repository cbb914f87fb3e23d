//! Figure 3: decisions per second of one agent on one core with the journal durable, and
//! the agent core's memory with the replica loaded.
//!
//! One decision is what the agent does per closed transaction: replica snapshot,
//! `decide`, then `Store::append([Transaction, Decision])` (one redb write transaction
//! with `Durability::Immediate`, i.e. one fsync) before the lane may change. Measured two
//! ways: one append per decision (a quiet gate), and group commit (a burst: the decisions
//! queued while the previous commit was on disk go in one append of [`GROUP`] decisions).
//! The baseline writes the same JSON bytes to a bare redb table with the same durability,
//! one commit per decision and per group: the floor set by the disk's fsync.
//!
//! Agent RSS is reported as an upper bound: this process's resident set after the run,
//! which also holds what loading the replica left behind (allocator arenas, and redb's
//! page cache of the loading handle), with the growth from reopening the store to the end
//! of the run beside it. It leaves out the tokio runtime, the console and the MQTT
//! client, which only the running agent has (figure 8).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use edge_agent::decider::decide;
use edge_agent::journal::JournalWriter;
use edge_agent::store::Store;
use protocol::schema::EventBody;
use redb::{Database, Durability, TableDefinition};

use super::data::{self, loaded_store};
use super::stats::{Samples, current_rss, peak_rss, rate, reset_peak_rss};
use super::{Ctx, Row, gate, policy, routes};

/// Decisions per group commit.
pub const GROUP: usize = 100;
/// Target of issue 9: durable decisions per second on one core.
const TARGET_PER_S: f64 = 5_000.0;
/// Target of issue 9: agent RSS with the 1M-record replica.
const TARGET_RSS: u64 = 100 * 1024 * 1024;
/// Longest each measure may run.
const BUDGET: Duration = Duration::from_secs(15);

const RAW: TableDefinition<u64, &[u8]> = TableDefinition::new("raw_journal");

/// Runs figure 3.
///
/// # Errors
/// Store or generator errors.
pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let n = ctx.n as u64;
    let path = ctx.path("fig3.redb");
    drop(loaded_store(&path, n, n)?);
    let (policy, routes) = (policy(), routes());
    let now = data::ts(data::NOW_S);

    let _ = reset_peak_rss();
    let before_open = current_rss();
    let store = Store::open(&path, gate()?).context("reopening the bench store")?;
    let idle = current_rss();

    let decide_one = |k: u64| -> anyhow::Result<Vec<EventBody>> {
        let tx = data::transaction(k, n)?;
        let view = store.replica_view().context("replica snapshot")?;
        let d = decide(&tx, &view, &policy, &routes, now);
        drop(view);
        Ok(vec![
            EventBody::Transaction { transaction: tx },
            EventBody::Decision { decision: d },
        ])
    };

    // One append per decision.
    let single_max = ctx.decisions().min(5_000);
    let mut single = Samples::with_capacity(single_max);
    let mut raw_bodies: Vec<Vec<u8>> = Vec::new();
    let started = Instant::now();
    let mut k = 0u64;
    while single.len() < single_max && started.elapsed() < BUDGET {
        let t = Instant::now();
        let bodies = decide_one(k)?;
        let entries = store.append(bodies, now).context("journal append")?;
        single.push(t.elapsed());
        if raw_bodies.len() < single_max {
            for e in &entries {
                raw_bodies.push(serde_json::to_vec(e)?);
            }
        }
        k += 1;
    }
    let single_wall = started.elapsed();

    // Group commit.
    let group_max = (ctx.decisions() / GROUP).clamp(1, 200);
    let mut group = Samples::with_capacity(group_max);
    let mut grouped = 0usize;
    let started = Instant::now();
    while group.len() < group_max && started.elapsed() < BUDGET {
        let t = Instant::now();
        let mut bodies = Vec::with_capacity(2 * GROUP);
        for _ in 0..GROUP {
            bodies.extend(decide_one(k)?);
            k += 1;
        }
        store.append(bodies, now).context("journal append")?;
        group.push(t.elapsed());
        grouped += GROUP;
    }
    let group_wall = started.elapsed();

    // The live path: the agent's journal writer, fed as the runtime feeds it.
    let (live, live_wall, live_n, live_groups) =
        through_writer(&store, &decide_one, &mut k, now).context("journal writer burst")?;
    let rss_now = current_rss();
    let rss_peak = peak_rss();
    let chain = store.verify_chain().context("verifying the journal")?;
    drop(store);

    // Baseline: the same bytes into a bare table, same durability.
    let raw = Database::create(ctx.path("fig3-raw.redb")).context("raw redb")?;
    let mut raw_single = Samples::with_capacity(raw_bodies.len() / 2);
    let started = Instant::now();
    let mut seq = 0u64;
    for pair in raw_bodies.chunks(2) {
        let t = Instant::now();
        raw_commit(&raw, &mut seq, pair.iter())?;
        raw_single.push(t.elapsed());
    }
    let raw_single_wall = started.elapsed();
    let mut raw_group = Samples::default();
    let started = Instant::now();
    for chunk in raw_bodies.chunks(2 * GROUP) {
        let t = Instant::now();
        raw_commit(&raw, &mut seq, chunk.iter())?;
        raw_group.push(t.elapsed());
    }
    let raw_group_wall = started.elapsed();
    let raw_group_items = raw_bodies.len() / 2;

    let single = single.summary();
    let group = group.summary();
    let single_rate = rate(single.count, single_wall);
    let group_rate = rate(grouped, group_wall);
    let core = match (rss_now, before_open) {
        (Some(a), Some(b)) => Some(a.saturating_sub(b)),
        _ => None,
    };
    let idle_core = match (idle, before_open) {
        (Some(a), Some(b)) => Some(a.saturating_sub(b)),
        _ => None,
    };
    Ok(vec![
        Row::new("3", "decide + append, one commit per decision")
            .latency(single)
            .throughput(single_rate, "decisions")
            .target("≥ 5,000/s", single_rate >= TARGET_PER_S)
            .note(format!("{} chained entries verified after the run", chain)),
        Row::new("3", format!("decide + append, group commit of {GROUP}"))
            .latency(group)
            .throughput(group_rate, "decisions")
            .target("≥ 5,000/s", group_rate >= TARGET_PER_S)
            .note("latency is per group (one append)"),
        Row::new(
            "3",
            "decide + journal writer (the runtime's path), burst of concurrent decisions",
        )
        .latency(live)
        .throughput(rate(live_n, live_wall), "decisions")
        .target("≥ 5,000/s", rate(live_n, live_wall) >= TARGET_PER_S)
        .note(format!(
            "latency from queueing to the commit's answer; {live_groups} commits for \
             {live_n} decisions"
        )),
        Row::new("3", "baseline: raw redb, same bytes, commit per decision")
            .latency(raw_single.summary())
            .throughput(rate(raw_bodies.len() / 2, raw_single_wall), "decisions"),
        Row::new(
            "3",
            format!("baseline: raw redb, same bytes, commit per {GROUP}"),
        )
        .latency(raw_group.summary())
        .throughput(rate(raw_group_items, raw_group_wall), "decisions"),
        Row::new("3", "agent RSS upper bound: process RSS after the run")
            .rss(rss_now)
            .target(
                "< 100 MB with 1M replica",
                rss_now.is_some_and(|c| c < TARGET_RSS),
            )
            .note(format!(
                "includes what loading the replica left in this process ({} before reopening \
                 the store); growth from reopening to the end of the run {} (idle after open \
                 +{}); peak {}; excludes tokio, console, MQTT",
                super::stats::fmt_bytes(before_open),
                super::stats::fmt_bytes(core),
                super::stats::fmt_bytes(idle_core),
                super::stats::fmt_bytes(rss_peak)
            )),
    ])
}

fn raw_commit<'a>(
    db: &Database,
    seq: &mut u64,
    bodies: impl Iterator<Item = &'a Vec<u8>>,
) -> anyhow::Result<()> {
    let mut w = db.begin_write()?;
    w.set_durability(Durability::Immediate)?;
    {
        let mut t = w.open_table(RAW)?;
        for b in bodies {
            *seq += 1;
            t.insert(*seq, b.as_slice())?;
        }
    }
    w.commit()?;
    Ok(())
}

/// Decisions in the burst sent through the journal writer.
const BURST: usize = 5_000;

/// A burst through [`JournalWriter`]: decisions are made one after another and each is
/// queued to the writer as soon as it is made (as `pipeline::conclude_all` does), while
/// the writer commits whatever is queued as one group. Returns the per-decision latency
/// (queued to answered), the wall time, the decisions and the number of commits.
fn through_writer(
    store: &Store,
    decide_one: &dyn Fn(u64) -> anyhow::Result<Vec<EventBody>>,
    k: &mut u64,
    now: jiff::Timestamp,
) -> anyhow::Result<(super::stats::Summary, Duration, usize, u64)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let out = rt.block_on(async {
        let (writer, task) = JournalWriter::start(store.clone());
        let writer = std::sync::Arc::new(writer);
        let mut pending = tokio::task::JoinSet::new();
        let started = Instant::now();
        for _ in 0..BURST {
            if started.elapsed() > BUDGET {
                break;
            }
            let bodies = decide_one(*k)?;
            *k += 1;
            let w = writer.clone();
            let t = Instant::now();
            pending.spawn(async move { w.append(bodies, now).await.map(|_| t.elapsed()) });
            // Let the writer take what is queued (the runtime's tasks interleave alike).
            tokio::task::yield_now().await;
        }
        let mut samples = Samples::with_capacity(BURST);
        while let Some(done) = pending.join_next().await {
            samples.push(
                done.context("append task")?
                    .context("journal writer append")?,
            );
        }
        let wall = started.elapsed();
        let commits = writer.commits();
        writer.close();
        task.await.context("journal writer task")?;
        anyhow::Ok((samples, wall, commits))
    })?;
    let (samples, wall, commits) = out;
    let n = samples.len();
    Ok((samples.summary(), wall, n, commits))
}
