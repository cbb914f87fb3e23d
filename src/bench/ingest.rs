//! Figure 5: central ingest. Four agents post, concurrently, batches of [`BATCH`]
//! hash-chained journal entries (n events in all), through central's ingest path in
//! process: the request body parsed as an `IngestBatch` with each body kept as received
//! (`ReceivedBatch`, as central's HTTP handler reads it), `central::ingest::check_batch`,
//! then `Store::ingest` on central's redb store (hash chain, deduplication, cases for seal
//! exceptions, acknowledgement; durable write transactions, the batches waiting for the
//! writer committed together), timed until every agent is answered and a search finds every
//! event (redb: the index file's writer has caught up). The HTTP layer
//! (TLS, routing, token look-up) is not in this figure; figure 6 will carry it.
//!
//! Events alternate transaction and decision entries; the decisions come from the real
//! decider over a small replica, so about one in ten is a seal exception that opens a
//! case, as on a real day. Two baselines, each on a fresh file: a raw redb
//! insert loop of the same entry bytes keyed by (gate, seq), one durable write
//! transaction per batch, four threads; and the schema's floor, the same events' rows
//! (event, id, index keys, transaction link) written into central's own redb tables by
//! the store's table code and group commit, with none of ingest's checks, cases,
//! counters or roll-ups (`central::store::FloorBatch`). The ingest runs first (its peak
//! RSS is its own); before each of the three runs dirty pages are written back and the
//! page cache dropped (when run as root), so that no run pays for the one before it.
//!
//! With [`PG_URL_VAR`] naming an empty PostgreSQL database, the same bodies are also
//! ingested into central's PostgreSQL store, beside a raw `COPY` of the same entry JSON
//! keyed by (gate, seq), one transaction per batch, one connection per agent.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use central::store::{Delivery, Store};
use central::{Central, Config};
use edge_agent::decider::decide;
use jiff::SignedDuration;
use protocol::schema::{
    EventBody, GENESIS_HASH, GateId, IngestBatch, JournalEntry, ReceivedBatch, SCHEMA_VERSION,
};
use redb::{Database, Durability, TableDefinition};
use uuid::Uuid;

use super::data::{self, IndexedReplica};
use super::stats::{Samples, peak_rss, rate, reset_peak_rss};
use super::{Ctx, Row, policy, routes};

/// Entries per posted batch.
pub const BATCH: usize = 500;
/// Concurrent agents.
pub const AGENTS: usize = 4;
const TARGET_PER_S: f64 = 50_000.0;
/// Operators and consignments of the small replica the decisions are made against.
const REPLICA: u64 = 2_000;
/// Milliseconds between one gate's consecutive journal entries in figure 5's batches.
/// Unset (or 0), every entry carries the same instant; set, each gate's entries rise in
/// time as an agent's replayed backlog does (10 ms: 250,000 entries span 42 minutes).
const SPREAD_VAR: &str = "AEOGATE_BENCH_SPREAD_MS";

/// Per agent, per batch: (seq, entry JSON).
type RawBatches = Vec<Vec<Vec<(u64, Vec<u8>)>>>;

const RAW: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("raw_events");

fn gate_of(agent: usize) -> anyhow::Result<GateId> {
    GateId::parse(&format!("PORT1-G{}", agent + 1)).context("bench gate id")
}

/// Milliseconds between one gate's entries ([`SPREAD_VAR`]; 0 when unset or unreadable).
fn spread_ms() -> i64 {
    std::env::var(SPREAD_VAR)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Agent `agent`'s journal of `events` entries, in batches of [`BATCH`], each batch the
/// JSON body an agent would post.
fn agent_bodies(
    agent: usize,
    events: usize,
    replica: &IndexedReplica,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let gate = gate_of(agent)?;
    let (policy, routes) = (policy(), routes());
    let now = data::ts(data::NOW_S);
    let spread_ms = spread_ms();
    let mut prev = GENESIS_HASH.to_string();
    let mut bodies = Vec::with_capacity(events.div_ceil(BATCH));
    let mut entries = Vec::with_capacity(BATCH);
    let mut tx = None;
    for i in 0..events {
        let seq = i as u64 + 1;
        let body = match tx.take() {
            None => {
                let k = (agent as u64) << 40 | seq;
                // Each agent journals its own gate's transactions (another gate's would
                // be refused as FOREIGN_GATE, stored as evidence only).
                let mut t = data::transaction(k, REPLICA)?;
                t.gate = gate.clone();
                tx = Some(t.clone());
                EventBody::Transaction { transaction: t }
            }
            Some(t) => EventBody::Decision {
                decision: decide(&t, replica, &policy, &routes, now),
            },
        };
        let id = Uuid::from_u128((agent as u128) << 64 | u128::from(seq));
        let at = now + SignedDuration::from_millis(spread_ms * i as i64);
        let e = JournalEntry::new_chained(gate.clone(), seq, id, at, prev, body)
            .map_err(|e| anyhow::anyhow!("chaining entry {seq}: {e}"))?;
        prev = e.hash.clone();
        entries.push(e);
        if entries.len() == BATCH || i + 1 == events {
            let batch = IngestBatch {
                v: SCHEMA_VERSION,
                batch_id: Uuid::from_u128((agent as u128) << 96 | u128::from(seq)),
                agent: gate.clone(),
                entries: std::mem::take(&mut entries),
            };
            bodies.push(serde_json::to_vec(&batch)?);
        }
    }
    Ok(bodies)
}

/// The environment variable naming an empty PostgreSQL database: when set, figure 5 is
/// also measured on PostgreSQL, beside a raw COPY of the same rows.
pub const PG_URL_VAR: &str = "AEOGATE_BENCH_PG_URL";

/// Posts every agent's bodies to `store` from one thread per agent; returns the merged
/// per-batch latencies, the wall time and the cases opened or changed.
fn drive(
    store: &dyn Store,
    bodies: &[Vec<Vec<u8>>],
    per_agent: usize,
    gap: SignedDuration,
) -> anyhow::Result<(Samples, Duration, usize)> {
    let started = Instant::now();
    let results: Vec<anyhow::Result<(Samples, u64, usize)>> = std::thread::scope(|s| {
        let handles: Vec<_> = bodies
            .iter()
            .enumerate()
            .map(|(a, agent)| {
                s.spawn(move || -> anyhow::Result<(Samples, u64, usize)> {
                    let gate = gate_of(a)?;
                    let mut lat = Samples::with_capacity(agent.len());
                    let mut acked = 0;
                    let mut cases = 0;
                    for body in agent {
                        let t = Instant::now();
                        let received =
                            ReceivedBatch::from_slice(body).context("parsing a batch")?;
                        let batch = &received.batch;
                        central::ingest::check_batch(&gate, batch)?;
                        let out = store.ingest(
                            Delivery::new(&gate, &batch.entries, jiff::Timestamp::now(), gap)
                                .with_bodies(&received.bodies),
                        )?;
                        lat.push(t.elapsed());
                        acked = out.acked_through;
                        cases += out.cases.len();
                    }
                    Ok((lat, acked, cases))
                })
            })
            .collect();
        join_all(handles)
    });
    // Until every event is found by a search as well (redb: the index file's writer has
    // applied every group the store's writer committed).
    store.events(&central::model::EventQuery {
        limit: 1,
        ..Default::default()
    })?;
    let wall = started.elapsed();
    let mut lat = Samples::default();
    let mut cases = 0;
    for r in results {
        let (s, acked, c) = r?;
        if acked != per_agent as u64 {
            bail!("an agent was acknowledged through {acked}, not {per_agent}");
        }
        cases += c;
        // Merged per-batch latencies (order across agents is irrelevant past the cold one).
        lat = merge(lat, s);
    }
    Ok((lat, wall, cases))
}

/// Runs `batch` for every batch of every agent, one thread per agent, as a baseline;
/// returns the merged latencies and the wall time.
fn baseline<S, T: Send>(
    items: Vec<Vec<T>>,
    per_agent_state: impl Fn(usize) -> anyhow::Result<S> + Sync,
    batch: impl Fn(&mut S, &GateId, T) -> anyhow::Result<()> + Sync,
) -> anyhow::Result<(Samples, Duration)> {
    let started = Instant::now();
    let results: Vec<anyhow::Result<Samples>> = std::thread::scope(|s| {
        let handles: Vec<_> = items
            .into_iter()
            .enumerate()
            .map(|(a, agent)| {
                let (per_agent_state, batch) = (&per_agent_state, &batch);
                s.spawn(move || -> anyhow::Result<Samples> {
                    let gate = gate_of(a)?;
                    let mut state = per_agent_state(a)?;
                    let mut lat = Samples::with_capacity(agent.len());
                    for item in agent {
                        let t = Instant::now();
                        batch(&mut state, &gate, item)?;
                        lat.push(t.elapsed());
                    }
                    Ok(lat)
                })
            })
            .collect();
        join_all(handles)
    });
    let wall = started.elapsed();
    let mut lat = Samples::default();
    for r in results {
        lat = merge(lat, r?);
    }
    Ok((lat, wall))
}

/// Every agent's batches, borrowed, for [`baseline`].
fn borrowed<T>(items: &[Vec<T>]) -> Vec<Vec<&T>> {
    items.iter().map(|a| a.iter().collect()).collect()
}

/// Before each of the redb runs: dirty pages written back (`sync`) and the page cache
/// dropped, so that no run pays for the writeback of the one before it or reads from a
/// cache the one before it filled (the raw loop ran at a third of its usual rate right
/// after the ingest's gigabyte). Returns whether the cache could be dropped (it needs
/// root) and how long the writeback took.
fn settle() -> (bool, Duration) {
    let (took, dropped) = super::stats::settle_page_cache();
    (dropped.is_ok(), took)
}

/// The process's CPU time so far (user and system, every thread), in seconds.
fn cpu_s() -> f64 {
    super::footprint::cpu_ticks_at("/proc/self/stat").unwrap_or(0) as f64
        / super::footprint::clock_ticks().max(1) as f64
}

/// Runs `f` on settled storage; returns its result, its wall and CPU time, and what
/// [`settle`] said.
fn settled<T>(f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<(T, f64, (bool, Duration))> {
    let s = settle();
    let cpu = cpu_s();
    let out = f()?;
    Ok((out, cpu_s() - cpu, s))
}

/// The schema's floor on redb: every agent's batches as the event rows central's redb
/// store writes for them ([`central::store::FloorBatch`]), made before timing.
fn redb_floor_batches(
    bodies: &[Vec<Vec<u8>>],
    now: jiff::Timestamp,
) -> anyhow::Result<Vec<Vec<central::store::FloorBatch>>> {
    bodies
        .iter()
        .enumerate()
        .map(|(a, agent)| {
            let gate = gate_of(a)?;
            let mut containers = std::collections::HashMap::new();
            agent
                .iter()
                .map(|body| {
                    let b: IngestBatch = serde_json::from_slice(body)?;
                    Ok(central::store::FloorBatch::new(
                        &gate,
                        &b.entries,
                        now,
                        &mut containers,
                    )?)
                })
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .collect()
}

fn join_all<T>(
    handles: Vec<std::thread::ScopedJoinHandle<'_, anyhow::Result<T>>>,
) -> Vec<anyhow::Result<T>> {
    handles
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("bench thread panicked")))
        })
        .collect()
}

/// The entries of every body, as (seq, entry JSON), per agent and batch.
fn raw_items(bodies: &[Vec<Vec<u8>>]) -> anyhow::Result<RawBatches> {
    bodies
        .iter()
        .map(|agent| {
            agent
                .iter()
                .map(|body| {
                    let b: IngestBatch = serde_json::from_slice(body)?;
                    b.entries
                        .iter()
                        .map(|e| Ok((e.seq, serde_json::to_vec(e)?)))
                        .collect::<anyhow::Result<Vec<_>>>()
                })
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .collect()
}

/// The tables of central's PostgreSQL schema an ingest fills for every event, in the
/// order a floor batch copies them (see [`floor_batches`]).
const FLOOR_TABLES: [&str; 4] = [
    "COPY event_keys (gate, seq, entry_id, hash, prev_hash, at_ms) FROM STDIN (FORMAT csv)",
    "COPY events (gate, seq, at_ms, lane, decision, txn, record) FROM STDIN (FORMAT csv)",
    "COPY event_containers (container, at_ms, gate, seq) FROM STDIN (FORMAT csv)",
    "COPY txn_containers (txn, container) FROM STDIN (FORMAT csv)",
];

/// A CSV field, quoted.
fn csv(out: &mut Vec<u8>, field: impl AsRef<[u8]>) {
    out.push(b'"');
    for &b in field.as_ref() {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// For the schema's floor: every batch of every agent as the rows central's PostgreSQL
/// store writes for its events (the entry's key and chain link, the event with its
/// query columns, one row per container of its transaction, the transaction's
/// containers), as CSV, one item per table of [`FLOOR_TABLES`] (the item's number is the
/// table's index). Made before timing; no checks, cases, counters or roll-ups.
fn floor_batches(raw: &RawBatches) -> anyhow::Result<RawBatches> {
    use std::io::Write as _;
    let mut out = Vec::with_capacity(raw.len());
    for (a, agent) in raw.iter().enumerate() {
        let gate = gate_of(a)?;
        let g = gate.as_str();
        let mut containers: std::collections::HashMap<Uuid, Vec<String>> =
            std::collections::HashMap::new();
        let mut batches = Vec::with_capacity(agent.len());
        for batch in agent {
            let mut t: [Vec<u8>; 4] = Default::default();
            let entries = batch
                .iter()
                .map(|(_, bytes)| serde_json::from_slice::<JournalEntry>(bytes))
                .collect::<Result<Vec<_>, _>>()?;
            // A transaction names its containers; the entries of it index under them.
            for e in &entries {
                if let EventBody::Transaction { transaction } = &e.body {
                    let c: Vec<String> = transaction
                        .containers()
                        .iter()
                        .map(ToString::to_string)
                        .collect();
                    for k in &c {
                        csv(&mut t[3], transaction.id.to_string());
                        t[3].push(b',');
                        csv(&mut t[3], k);
                        t[3].push(b'\n');
                    }
                    containers.insert(transaction.id, c);
                }
            }
            for (e, (_, bytes)) in entries.iter().zip(batch) {
                let at = e.at.as_millisecond();
                writeln!(
                    t[0],
                    "{g},{},{},{},{},{at}",
                    e.seq, e.id, e.hash, e.prev_hash
                )?;
                let txn = central::ingest::transaction_of(&e.body);
                write!(t[1], "{g},{},{at},", e.seq)?;
                if let Some(l) = central::ingest::lane_of(&e.body) {
                    csv(&mut t[1], l);
                }
                t[1].push(b',');
                if let Some(d) = central::ingest::decision_of(&e.body) {
                    t[1].extend_from_slice(d.as_str().as_bytes());
                }
                t[1].push(b',');
                if let Some(x) = txn {
                    write!(t[1], "{x}")?;
                }
                t[1].push(b',');
                csv(&mut t[1], bytes);
                t[1].push(b'\n');
                for k in txn.and_then(|x| containers.get(&x)).into_iter().flatten() {
                    csv(&mut t[2], k);
                    writeln!(t[2], ",{at},{g},{}", e.seq)?;
                }
            }
            batches.push((0u64..).zip(t).collect());
        }
        out.push(batches);
    }
    Ok(out)
}

/// What one backend's ingest measured: the per-batch latencies, the wall time, the cases
/// opened or changed, the peak RSS and the events its store holds afterwards.
struct Ingested {
    lat: Samples,
    wall: Duration,
    cases: usize,
    rss: Option<u64>,
    stored: u64,
}

impl Ingested {
    /// The ingest into `store` that [`drive`] measured (`wall` as the backend counts it),
    /// with the peak RSS now and the events `store` holds now.
    fn after(
        store: &dyn Store,
        lat: Samples,
        wall: Duration,
        cases: usize,
    ) -> anyhow::Result<Self> {
        let rss = peak_rss();
        let stored = store.summary()?.events_per_gate.values().sum();
        Ok(Self {
            lat,
            wall,
            cases,
            rss,
            stored,
        })
    }
}

/// The two rows of one backend: ingest, and its raw baseline.
struct Measured<'a> {
    backend: &'a str,
    baseline: &'a str,
    events: usize,
    ingest: Ingested,
    raw_lat: Samples,
    raw_wall: Duration,
    note: String,
}

impl Measured<'_> {
    fn rows(self) -> Vec<Row> {
        let Ingested {
            lat,
            wall,
            cases,
            rss,
            stored,
        } = self.ingest;
        let per_s = rate(self.events, wall);
        let raw_per_s = rate(self.events, self.raw_wall);
        let ratio = wall.as_secs_f64() / self.raw_wall.as_secs_f64().max(1e-9);
        vec![
            Row::new(
                "5",
                format!(
                    "central ingest ({}), {AGENTS} agents × batches of {BATCH}",
                    self.backend
                ),
            )
            .latency(lat.summary())
            .throughput(per_s, "events")
            .rss(rss)
            .target("≥ 50,000 events/s (1M events)", per_s >= TARGET_PER_S)
            .note(format!(
                "{} events in {:.2} s, {stored} stored, {cases} case updates; latency per batch; {}",
                self.events,
                wall.as_secs_f64(),
                self.note
            )),
            Row::new("5", self.baseline.to_owned())
                .latency(self.raw_lat.summary())
                .throughput(raw_per_s, "events")
                .note(format!(
                    "{:.2} s; ingest took {ratio:.1}× as long ({:.2}× the raw rate)",
                    self.raw_wall.as_secs_f64(),
                    1.0 / ratio.max(1e-9)
                )),
        ]
    }
}

/// Runs figure 5 (and, with [`PG_URL_VAR`] set, figure 5 on PostgreSQL).
///
/// # Errors
/// Central, store or generator errors, or an ingest that did not acknowledge everything.
pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let per_agent = ctx.n / AGENTS;
    let replica = IndexedReplica::generate(REPLICA, REPLICA)?;
    let t = Instant::now();
    let bodies = (0..AGENTS)
        .map(|a| agent_bodies(a, per_agent, &replica))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let prepare = t.elapsed();
    let cfg = Config::with_new_key_in(&ctx.dir, std::net::SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let gap = SignedDuration::try_from(cfg.gap_alert_after).unwrap_or(SignedDuration::MAX);
    let mut rows = Vec::new();
    if std::env::var(super::queries::SKIP_REDB_VAR).is_err() {
        rows.extend(run_redb(ctx, &cfg, &bodies, per_agent, prepare)?);
    }
    if let Ok(url) = std::env::var(PG_URL_VAR) {
        rows.extend(run_pg(&url, &bodies, &raw_items(&bodies)?, per_agent, gap)?);
    }
    Ok(rows)
}

/// Figure 5 on central's redb store, with its two baselines.
fn run_redb(
    ctx: &Ctx,
    cfg: &Config,
    bodies: &[Vec<Vec<u8>>],
    per_agent: usize,
    prepare: Duration,
) -> anyhow::Result<Vec<Row>> {
    let events = per_agent * AGENTS;
    let body_bytes: usize = bodies.iter().flatten().map(Vec::len).sum();

    let central = Central::open(cfg)?;
    let gap = SignedDuration::try_from(cfg.gap_alert_after).unwrap_or(SignedDuration::MAX);

    let _ = reset_peak_rss();
    let ((lat, wall, cases), cpu, ingest_settle) =
        settled(|| drive(central.store().as_ref(), bodies, per_agent, gap))?;
    let ingest = Ingested::after(central.store().as_ref(), lat, wall, cases)?;
    drop(central);

    let raw = raw_items(bodies)?;

    // Baseline: the same entry bytes, raw, on a fresh file.
    let raw_path = ctx.path("fig5-raw.redb");
    let ((raw_lat, raw_wall), raw_cpu, raw_settle) = settled(|| {
        let db = Database::create(&raw_path).context("raw redb")?;
        baseline(
            borrowed(&raw),
            |_| Ok(()),
            |(), gate, items| {
                let mut w = db.begin_write()?;
                w.set_durability(Durability::Immediate)?;
                {
                    let mut table = w.open_table(RAW)?;
                    for (seq, bytes) in items {
                        table.insert((gate.as_str(), *seq), bytes.as_slice())?;
                    }
                }
                w.commit()?;
                Ok(())
            },
        )
    })?;
    let _ = std::fs::remove_file(&raw_path);
    drop(raw);

    // Baseline: the schema's floor, central's own event tables, on a fresh file.
    let floor_batches = redb_floor_batches(bodies, jiff::Timestamp::now())?;
    let floor_path = ctx.path("fig5-floor.redb");
    let ((floor_lat, floor_wall), floor_cpu, floor_settle) = settled(|| {
        let store = central::store::RedbStore::open(&floor_path).context("floor store")?;
        baseline(
            floor_batches,
            |_| Ok(()),
            |(), _, batch| {
                store.write_floor(batch)?;
                Ok(())
            },
        )
    })?;
    let _ = std::fs::remove_file(&floor_path);
    let _ = std::fs::remove_file(central::store::redb_index_path(&floor_path));

    let per_event_us = |cpu: f64| cpu * 1e6 / events.max(1) as f64;
    let settle_note = |(dropped, took): (bool, Duration)| {
        format!(
            "sync {:.1} s before it{}",
            took.as_secs_f64(),
            if dropped { ", page cache dropped" } else { "" }
        )
    };
    let floor_per_s = rate(events, floor_wall);
    let floor_row = Row::new(
        "5",
        "baseline: the schema's floor, the same events' rows in central's redb tables, group commit",
    )
    .latency(floor_lat.summary())
    .throughput(floor_per_s, "events")
    .note(format!(
        "{:.2} s; events, ids, index keys (t, g:, l:, d:, c:) and transaction links through the \
         store's own tables and group commit, no checks, cases, counters or roll-ups; \
         process CPU {:.1} µs/event; {}; ingest ran at {:.2}× this rate, this at {:.2}× the raw loop's",
        floor_wall.as_secs_f64(),
        per_event_us(floor_cpu),
        settle_note(floor_settle),
        rate(events, wall) / floor_per_s.max(1e-9),
        floor_per_s / rate(events, raw_wall).max(1e-9),
    ));
    let mut rows = Measured {
        backend: "redb",
        baseline: "baseline: raw redb insert loop, same bytes, txn per batch, fresh file",
        events,
        ingest,
        raw_lat,
        raw_wall,
        note: format!(
            "bodies {} prepared in {:.1} s; process CPU {:.1} µs/event (the raw loop's {:.1}); {}; \
             the raw loop: {}",
            super::stats::fmt_bytes(Some(body_bytes as u64)),
            prepare.as_secs_f64(),
            per_event_us(cpu),
            per_event_us(raw_cpu),
            settle_note(ingest_settle),
            settle_note(raw_settle),
        ),
    }
    .rows();
    rows.push(floor_row);
    Ok(rows)
}

/// Figure 5 on PostgreSQL at `url` (an empty database): the same bodies through
/// `Store::ingest` on [`central::store::PgStore`], then a raw `COPY` of the same entry
/// JSON keyed by (gate, seq), one transaction per batch, one connection per agent.
fn run_pg(
    url: &str,
    bodies: &[Vec<Vec<u8>>],
    raw_items: &RawBatches,
    per_agent: usize,
    gap: SignedDuration,
) -> anyhow::Result<Vec<Row>> {
    let store = central::store::PgStore::open(url).context("opening the PostgreSQL store")?;
    let server = postmaster_of(url);
    let server_s = || {
        server
            .and_then(|pid| super::footprint::tree_cpu_ticks(pid).ok())
            .map(|t| t as f64 / super::footprint::clock_ticks().max(1) as f64)
    };
    let cpu0 = (cpu_s(), server_s());
    let _ = reset_peak_rss();
    // The programme roll-ups are folded from their queue as a central instance does
    // (`Central::open` runs the same loop), on a thread beside the agents; the ingest
    // counts as done once every batch is folded, not when the last is acknowledged.
    let started = Instant::now();
    let ingesting = AtomicBool::new(true);
    let (driven, folding) = std::thread::scope(|s| {
        let folder = s.spawn(|| fold_until_done(&store, &ingesting));
        let driven = drive(&store, bodies, per_agent, gap);
        ingesting.store(false, Ordering::SeqCst);
        let folding = folder
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the folder panicked")));
        (driven, folding)
    });
    let (lat, acked_wall, cases) = driven?;
    let (folds, folded) = folding?;
    let wall = started.elapsed();
    let cpu = (cpu_s() - cpu0.0, server_s().zip(cpu0.1).map(|(b, a)| b - a));
    let ingest = Ingested::after(&store, lat, wall, cases)?;
    drop(store);

    let connect = || postgres::Client::connect(url, postgres::NoTls).context("connecting");
    connect()?.batch_execute(
        "CREATE TABLE raw_events (gate TEXT NOT NULL, seq BIGINT NOT NULL, value JSON NOT NULL,
                                  PRIMARY KEY (gate, seq))",
    )?;
    let raw0 = (cpu_s(), server_s());
    let (raw_lat, raw_wall) = baseline(
        borrowed(raw_items),
        |_| connect(),
        |client, gate, items| {
            let mut tx = client.transaction()?;
            let mut w = tx.copy_in("COPY raw_events (gate, seq, value) FROM STDIN (FORMAT csv)")?;
            let mut buf = Vec::with_capacity(items.iter().map(|(_, b)| b.len() + 32).sum());
            for (seq, bytes) in items {
                buf.extend_from_slice(format!("{gate},{seq},").as_bytes());
                csv(&mut buf, bytes);
                buf.push(b'\n');
            }
            std::io::Write::write_all(&mut w, &buf)?;
            w.finish()?;
            tx.commit()?;
            Ok(())
        },
    )?;
    let raw_cpu = (cpu_s() - raw0.0, server_s().zip(raw0.1).map(|(b, a)| b - a));
    // The schema's floor: the same events' rows in central's own tables (emptied of the
    // ingest's rows, their partitions and indexes kept), copied straight in.
    let floor = floor_batches(raw_items)?;
    connect()?.batch_execute("TRUNCATE event_keys, events, event_containers, txn_containers")?;
    // The indexes of `events` as the schema has them (its primary key among them).
    let events_indexes: i64 = connect()?
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'events'",
            &[],
        )?
        .get(0);
    let floor0 = (cpu_s(), server_s());
    let (floor_lat, floor_wall) = baseline(
        borrowed(&floor),
        |_| connect(),
        |client, _, tables| {
            let mut tx = client.transaction()?;
            for (i, rows) in tables {
                if rows.is_empty() {
                    continue;
                }
                let sql = FLOOR_TABLES
                    .get(usize::try_from(*i)?)
                    .context("a floor table")?;
                let mut w = tx.copy_in(*sql)?;
                std::io::Write::write_all(&mut w, rows)?;
                w.finish()?;
            }
            tx.commit()?;
            Ok(())
        },
    )?;
    let floor_cpu = (
        cpu_s() - floor0.0,
        server_s().zip(floor0.1).map(|(b, a)| b - a),
    );
    let events = per_agent * AGENTS;
    let per_event = |(own, server): (f64, Option<f64>)| {
        let us = |s: f64| s * 1e6 / events.max(1) as f64;
        match server {
            Some(srv) => format!(
                "CPU {:.1} µs/event in this process, {:.1} in PostgreSQL's",
                us(own),
                us(srv)
            ),
            None => format!("CPU {:.1} µs/event in this process", us(own)),
        }
    };
    let floor_row = {
        let floor_per_s = rate(events, floor_wall);
        Row::new(
            "5",
            "baseline: the schema's floor, the same events' rows COPYed into central's tables, txn per batch",
        )
        .latency(floor_lat.summary())
        .throughput(floor_per_s, "events")
        .note(format!(
            "{:.2} s; event_keys, events ({events_indexes} indexes), event_containers, \
             txn_containers with their indexes, no checks, cases or roll-ups; {}; ingest ran at \
             {:.2}× this rate",
            floor_wall.as_secs_f64(),
            per_event(floor_cpu),
            rate(events, wall) / floor_per_s.max(1e-9)
        ))
    };
    let mut rows = Measured {
        backend: "PostgreSQL",
        baseline: "baseline: raw PostgreSQL COPY, same bytes, txn per batch",
        events,
        ingest,
        raw_lat,
        raw_wall,
        note: format!(
            "PostgreSQL durable (its defaults); last batch acknowledged after {:.2} s, \
             the roll-ups of all {folded} batches folded after {:.2} s in {folds} folds \
             (the rate counts to the latter); {}; the raw COPY's {}",
            acked_wall.as_secs_f64(),
            wall.as_secs_f64(),
            per_event(cpu),
            per_event(raw_cpu),
        ),
    }
    .rows();
    rows.push(floor_row);
    Ok(rows)
}

/// The PostgreSQL server's postmaster, when it runs on this machine: the parent of a
/// backend serving a new connection.
fn postmaster_of(url: &str) -> Option<u32> {
    let mut client = postgres::Client::connect(url, postgres::NoTls).ok()?;
    let backend: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .ok()?
        .get(0);
    let stat = std::fs::read_to_string(format!("/proc/{backend}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Folds the queued roll-ups as central's folder does (at its pace,
/// [`central::fold_pause`]) until `ingesting` is false, then what is left; returns the
/// folds that folded something and the batches folded.
fn fold_until_done(store: &dyn Store, ingesting: &AtomicBool) -> anyhow::Result<(u64, usize)> {
    let (mut folds, mut folded) = (0u64, 0usize);
    // Bounded in time: an hour is far beyond any run of this figure.
    let deadline = Instant::now() + Duration::from_secs(3_600);
    while Instant::now() < deadline {
        let still = ingesting.load(Ordering::SeqCst);
        let n = store.fold_rollups(central::FOLD_BATCHES)?;
        if n > 0 {
            folds += 1;
            folded += n;
        }
        // Once every batch is acknowledged, what is left is folded at once: the pause
        // spaces folds while batches arrive, it is not work to count.
        if !still {
            if n == 0 {
                return Ok((folds, folded));
            }
            continue;
        }
        // The pause in short steps, so the end of the ingest is seen at once.
        let until = Instant::now() + central::fold_pause(n);
        while ingesting.load(Ordering::SeqCst) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    bail!("the roll-ups were not folded within an hour")
}

fn merge(mut a: Samples, b: Samples) -> Samples {
    a.extend(b);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields of one CSV line with quoted fields (as [`csv`] writes them).
    fn fields(line: &str) -> Vec<String> {
        let (mut out, mut cur, mut quoted, mut chars) =
            (Vec::new(), String::new(), false, line.chars().peekable());
        while let Some(c) = chars.next() {
            match (c, quoted) {
                ('"', true) if chars.peek() == Some(&'"') => {
                    cur.push('"');
                    chars.next();
                }
                ('"', _) => quoted = !quoted,
                (',', false) => out.push(std::mem::take(&mut cur)),
                (c, _) => cur.push(c),
            }
        }
        out.push(cur);
        out
    }

    #[test]
    fn the_floor_holds_each_events_rows_with_its_own_bytes_and_its_transactions_containers() {
        let replica = IndexedReplica::generate(50, 50).expect("replica");
        let bodies: Vec<Vec<Vec<u8>>> = (0..2)
            .map(|a| agent_bodies(a, 2 * BATCH, &replica).expect("bodies"))
            .collect();
        let raw = raw_items(&bodies).expect("raw");
        let floor = floor_batches(&raw).expect("floor");
        let lines = |b: &[u8]| {
            String::from_utf8(b.to_vec())
                .expect("utf-8")
                .lines()
                .map(fields)
                .collect::<Vec<_>>()
        };
        let mut containers_named = 0;
        for (agent, batches) in raw.iter().zip(&floor) {
            for (items, tables) in agent.iter().zip(batches) {
                assert_eq!(tables.len(), FLOOR_TABLES.len());
                let keys = lines(&tables[0].1);
                let events = lines(&tables[1].1);
                assert_eq!((keys.len(), events.len()), (items.len(), items.len()));
                for ((seq, bytes), (k, ev)) in items.iter().zip(keys.iter().zip(&events)) {
                    let e: JournalEntry = serde_json::from_slice(bytes).expect("entry");
                    assert_eq!(k[1], seq.to_string());
                    assert_eq!(
                        (k[3].as_str(), k[4].as_str()),
                        (e.hash.as_str(), e.prev_hash.as_str())
                    );
                    assert_eq!(ev.len(), 7, "{ev:?}");
                    assert_eq!(
                        ev[6].as_bytes(),
                        bytes.as_slice(),
                        "the stored JSON is the entry's"
                    );
                    let txn = central::ingest::transaction_of(&e.body).map(|t| t.to_string());
                    assert_eq!(Some(ev[5].clone()).filter(|t| !t.is_empty()), txn);
                }
                for tc in lines(&tables[3].1) {
                    assert_eq!(tc.len(), 2);
                    containers_named += 1;
                }
                for ec in lines(&tables[2].1) {
                    assert_eq!(ec.len(), 4);
                }
            }
        }
        assert!(containers_named > 0, "transactions name containers");
    }
}
