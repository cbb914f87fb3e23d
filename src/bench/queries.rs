//! Figure 11: central's staff queries over a store of n events (issue 17's 10,000,000),
//! on redb and, with [`PG_URL_VAR`] set, on PostgreSQL.
//!
//! The store is filled through `Store::ingest`, the write path agents use (hash chain,
//! deduplication, event indexes, cases for seal exceptions, hourly figures, programme
//! roll-ups), from one thread per gate in batches of [`BATCH`] entries, each batch
//! ingested with central's clock at its last entry, as a central running through the year
//! would have. The data: [`PORTS`] ports × [`GATES_PER_PORT`] gates × [`LANES`] lanes,
//! alternating gate transactions and decisions over the year before
//! [`data::NOW_S`]; transactions of figure 5's generator (80 % clean, 10 % seal
//! mismatch, 5 % undeclared, 5 % seal not read) against [`REPLICA`] operators and
//! consignments, each with a time at the gate of 45 s to 15 min ([`dwell_s`]); decisions from the real
//! decider. About 7 % of events are seal exceptions that open a case. After the fill,
//! [`ACTED`] cases are acknowledged and as many resolved through `Store::update_case`, so
//! the state filters have something to find.
//!
//! Then each query is timed [`RUNS`] times ([`PROGRAMME_RUNS`] for the programme figures), with its parameter (gate, case, container,
//! window) varied deterministically: the exceptions page (the first page of open cases,
//! of one gate's cases, of one gate's open cases, of the last 24 h, and the tenth page of
//! open cases by its cursor), a case's detail as the case page loads it, the event search
//! by container and by gate and time window, and the programme figures for a month and
//! for a year (the roll-ups' sums and the page's figures made from them). The baseline is the same queries, the same number of times, over a store
//! of a tenth of the events spread over the same year, filled and measured in the same
//! run.
//!
//! With [`COLD_VAR`] set, the container search is timed a second time ([`COLD_RUNS`]
//! runs) with the kernel's page cache dropped before each run (not timed): every page
//! the query needs and the database's own buffers do not hold comes from the disk, as it
//! does once a store outgrows the machine's memory (PostgreSQL at 10M events). It needs
//! root (`/proc/sys/vm/drop_caches`) and, on PostgreSQL, a cluster with small
//! `shared_buffers` (the note gives the cluster's) for the run to be cold.
//!
//! With `--keep DIR` the redb stores stay in DIR and a later run with the same `--n`
//! measures them without refilling; on PostgreSQL the databases `aeogate_q_<n>` (created
//! in the cluster [`PG_URL_VAR`] names) stay and are reused the same way.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use central::dashboard::programme::from_counts;
use central::model::{CaseAction, CaseOutcome, CaseQuery, CaseState, EventQuery};
use central::store::{Delivery, Stamp, Store};
use central::{Central, Config};
use edge_agent::decider::{ReplicaView, decide};
use jiff::{SignedDuration, Timestamp};
use protocol::container::ContainerNumber;
use protocol::operator::OperatorId;
use protocol::schema::{
    Change, Consignment, EventBody, GENESIS_HASH, GateId, JournalEntry, LaneId, MraRecord,
    RegistryRecord,
};
use uuid::Uuid;

use super::data::{self, IndexedReplica};
use super::stats::{Samples, fmt_bytes, peak_rss, rate, reset_peak_rss};
use super::{Ctx, Row, policy, routes};

pub use super::ingest::PG_URL_VAR;

/// Entries per ingested batch: the most an agent may post ([`central::ingest::MAX_ENTRIES`]).
pub const BATCH: usize = central::ingest::MAX_ENTRIES;
/// Ports, gates per port and lanes per gate of the filled store.
pub const PORTS: usize = 3;
pub const GATES_PER_PORT: usize = 4;
pub const LANES: u64 = 4;
/// Operators and consignments the decisions are made against (also in central's
/// registry, for the case detail's declared consignments).
pub const REPLICA: u64 = 2_000;
/// Timed runs of each exceptions page, case and event query.
pub const RUNS: usize = 300;
/// Timed runs of each programme figure (a year's read is about 0.1 s at 1M events since
/// the monthly roll-ups; it took seconds before, when the count was lowered from 300).
pub const PROGRAMME_RUNS: usize = 100;
/// Timed runs of the container search with a cold page cache ([`COLD_VAR`]): each drops
/// the whole machine's page cache, so fewer than [`RUNS`].
pub const COLD_RUNS: usize = 100;
/// Cases acknowledged, and as many resolved, after the fill.
pub const ACTED: u64 = 500;
/// The exceptions page's page size (the dashboard's).
const PAGE: usize = 100;
const YEAR_S: i64 = 365 * 86_400;
/// Targets of issue 17: exceptions page and case queries, and programme figures for a
/// year.
const CASE_TARGET: Duration = Duration::from_millis(100);
const YEAR_TARGET: Duration = Duration::from_millis(500);

fn gates() -> anyhow::Result<Vec<GateId>> {
    let mut out = Vec::with_capacity(PORTS * GATES_PER_PORT);
    for p in 1..=PORTS {
        for g in 1..=GATES_PER_PORT {
            out.push(GateId::parse(&format!("PORT{p}-G{g}")).context("bench gate id")?);
        }
    }
    Ok(out)
}

/// The replica as an agent would hold it at `now`: loaded an hour before.
struct ReplicaAt<'a>(&'a IndexedReplica, Timestamp);

impl ReplicaView for ReplicaAt<'_> {
    fn operator(&self, id: &OperatorId) -> Option<RegistryRecord> {
        self.0.operator(id)
    }
    fn consignment_for(&self, c: &ContainerNumber) -> Option<Consignment> {
        self.0.consignment_for(c)
    }
    fn mras(&self) -> Vec<MraRecord> {
        self.0.mras()
    }
    fn sequence(&self) -> u64 {
        self.0.sequence()
    }
    fn as_of(&self) -> Option<Timestamp> {
        Some(self.1 - SignedDuration::from_hours(1))
    }
}

/// Time at the gate of transaction `k`, seconds: 85 % from 45 s to 150 s, the rest
/// from 150 s to 15 min (a truck sent aside, a slow check).
fn dwell_s(k: u64) -> i64 {
    let r = data::mix(7, k);
    let s = if r % 100 < 85 {
        45 + (r >> 8) % 105
    } else {
        150 + (r >> 8) % 750
    };
    i64::try_from(s).unwrap_or(0)
}

/// The first second of the year the events cover.
fn year_start() -> i64 {
    data::NOW_S - YEAR_S
}

/// One gate's journal of `events` entries over the year, generated a batch at a time.
struct Journal<'a> {
    gate: GateId,
    index: u64,
    events: u64,
    next: u64,
    prev: String,
    replica: &'a IndexedReplica,
}

impl Journal<'_> {
    /// The next batch, or `None` when the journal is written.
    fn batch(&mut self) -> anyhow::Result<Option<(Vec<JournalEntry>, Timestamp)>> {
        if self.next >= self.events {
            return Ok(None);
        }
        let (policy, routes) = (policy(), routes());
        let txns = self.events.div_ceil(2).max(1);
        let mut out = Vec::with_capacity(BATCH);
        let mut last = data::ts(year_start());
        while out.len() < BATCH && self.next < self.events {
            let i = self.next / 2;
            let k = self.index << 40 | i;
            // Transactions spread evenly over the year, each gate offset a little.
            let offset = i64::try_from(i).unwrap_or(i64::MAX).saturating_mul(YEAR_S)
                / i64::try_from(txns).unwrap_or(i64::MAX);
            let closed_s = year_start() + offset + i64::try_from(self.index * 7).unwrap_or(0);
            let at = data::ts(closed_s);
            let mut t = data::transaction(k, REPLICA)?;
            t.gate = self.gate.clone();
            t.lane = LaneId::parse(&format!("L{}", 1 + data::mix(6, k) % LANES))
                .context("bench lane id")?;
            let dwell = dwell_s(k);
            t.opened_at = data::ts(closed_s - dwell);
            t.closed_at = at;
            for r in &mut t.reads {
                r.first_at = at;
                r.last_at = at;
            }
            for half in 0..2 {
                if self.next >= self.events {
                    break;
                }
                let seq = self.next + 1;
                let body = if half == 0 {
                    EventBody::Transaction {
                        transaction: t.clone(),
                    }
                } else {
                    EventBody::Decision {
                        decision: decide(&t, &ReplicaAt(self.replica, at), &policy, &routes, at),
                    }
                };
                let id = Uuid::from_u128(u128::from(self.index) << 64 | u128::from(seq));
                let e = JournalEntry::new_chained(
                    self.gate.clone(),
                    seq,
                    id,
                    at,
                    std::mem::take(&mut self.prev),
                    body,
                )
                .map_err(|e| anyhow::anyhow!("chaining entry {seq}: {e}"))?;
                self.prev.clone_from(&e.hash);
                out.push(e);
                self.next += 1;
                last = at;
            }
        }
        Ok(Some((out, last)))
    }
}

/// What filling a store did.
struct Filled {
    took: Duration,
    rss: Option<u64>,
    /// Batches whose roll-ups were still queued when the fill ended (PostgreSQL: central's
    /// folder runs beside the fill), and how long folding them took after it.
    behind: (usize, Duration),
}

/// Fills `store` with `n` events (see the module documentation), one thread per gate.
fn fill(store: &dyn Store, n: usize, replica: &IndexedReplica) -> anyhow::Result<Filled> {
    let gates = gates()?;
    let at = data::ts(year_start());
    store
        .append_changes(&registry_changes()?, Stamp::new("bench", at))
        .context("loading central's registry")?;
    let per_gate = (n / gates.len()) as u64;
    let gap = SignedDuration::from_hours(24);
    let _ = reset_peak_rss();
    let started = Instant::now();
    let results: Vec<anyhow::Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = gates
            .iter()
            .enumerate()
            .map(|(i, gate)| {
                s.spawn(move || -> anyhow::Result<()> {
                    let mut j = Journal {
                        gate: gate.clone(),
                        index: i as u64,
                        events: per_gate,
                        next: 0,
                        prev: GENESIS_HASH.to_string(),
                        replica,
                    };
                    // Bounded: each pass ingests at least one entry of a finite journal.
                    while let Some((entries, now)) = j.batch()? {
                        let out = store.ingest(Delivery::new(gate, &entries, now, gap))?;
                        let want = entries.last().map_or(0, |e| e.seq);
                        if out.acked_through != want {
                            bail!(
                                "{gate}: acknowledged through {}, not {want}",
                                out.acked_through
                            );
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("fill thread panicked")))
            })
            .collect()
    });
    for r in results {
        r?;
    }
    let took = started.elapsed();
    let rss = peak_rss();
    // Staff work some cases: the oldest acknowledged, the next resolved.
    let now = Timestamp::now();
    for id in 1..=2 * ACTED {
        let action = if id <= ACTED {
            CaseAction::Acknowledge { note: None }
        } else {
            CaseAction::Resolve {
                outcome: CaseOutcome::SealVerifiedIntact,
                note: Some("seal checked at the bay".into()),
            }
        };
        match store.update_case(id, Stamp::new("officer1", now), &mut |c| {
            central::cases::apply(c, &action, "officer1", now)
        }) {
            Ok(_) | Err(central::cases::CaseError::NotFound(_)) => {}
            Err(e) => return Err(anyhow::anyhow!("case {id}: {e}")),
        }
    }
    Ok(Filled {
        took,
        rss,
        behind: (0, Duration::ZERO),
    })
}

/// The registry the decisions were made against, as central's change log holds it.
fn registry_changes() -> anyhow::Result<Vec<Change>> {
    let mut out = vec![Change::UpsertMra { mra: data::mra() }];
    for i in 0..REPLICA {
        out.push(Change::UpsertOperator {
            record: data::operator(i)?,
        });
    }
    for j in 0..REPLICA {
        out.push(Change::UpsertConsignment {
            consignment: data::consignment(j, REPLICA)?,
        });
    }
    Ok(out)
}

fn stored_events(store: &dyn Store) -> anyhow::Result<u64> {
    Ok(store.summary()?.events_per_gate.values().sum())
}

/// Where a store of `n` events lives.
enum Place {
    Redb(PathBuf),
    Pg(String),
}

/// Opens (filling when empty) central over the store of `n` events at `place`.
/// Returns central, the fill (`None` when reused) and the events stored.
fn open_filled(
    ctx: &Ctx,
    place: &Place,
    n: usize,
    replica: &IndexedReplica,
) -> anyhow::Result<(Central, Option<Filled>, u64)> {
    let key_dir = tempfile::tempdir_in(&ctx.dir).context("central's key folder")?;
    let mut cfg = Config::with_new_key_in(
        key_dir.path(),
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
    )?;
    match place {
        Place::Redb(path) => cfg.store_path.clone_from(path),
        Place::Pg(url) => super::system::store_in_postgres(&mut cfg, url)
            .map_err(|e| anyhow::anyhow!("{PG_URL_VAR}: {e}"))?,
    }
    let central = Central::open(&cfg)?;
    let want = (n / (PORTS * GATES_PER_PORT) * PORTS * GATES_PER_PORT) as u64;
    let have = stored_events(central.store().as_ref())?;
    if have == want {
        fold_all(&central)?;
        return Ok((central, None, have));
    }
    if have != 0 {
        bail!("the store holds {have} events, not {want}: remove it to fill it anew");
    }
    let mut filled = fill(central.store().as_ref(), n, replica)?;
    let t = Instant::now();
    filled.behind = (fold_all(&central)?, t.elapsed());
    let have = stored_events(central.store().as_ref())?;
    if have != want {
        bail!("filled {have} events, not {want}");
    }
    Ok((central, Some(filled), have))
}

/// Folds what waits in the programme roll-ups' queue (PostgreSQL), so the queries read
/// the roll-ups as a central keeping up with its ingest has them.
/// Returns how many batches it folded.
fn fold_all(central: &Central) -> anyhow::Result<usize> {
    let mut folded = 0;
    // Bounded: each fold takes up to FOLD_BATCHES of the finite queue.
    for _ in 0..1_000_000 {
        match central.store().fold_rollups(central::FOLD_BATCHES)? {
            0 => return Ok(folded),
            n => folded += n,
        }
    }
    bail!("the roll-ups' queue did not empty")
}

/// A query timed a number of times; `run(i)` performs run `i` and returns how many items it
/// found.
struct Timed {
    name: &'static str,
    samples: Samples,
    found: usize,
}

fn time(
    name: &'static str,
    run: impl FnMut(u64) -> anyhow::Result<usize>,
) -> anyhow::Result<Timed> {
    time_n(name, RUNS, Cache::Warm, run)
}

/// The page cache before each run of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cache {
    /// As the previous runs left it.
    Warm,
    /// Dropped before each run (not timed).
    Dropped,
}

fn time_n(
    name: &'static str,
    runs: usize,
    cache: Cache,
    mut run: impl FnMut(u64) -> anyhow::Result<usize>,
) -> anyhow::Result<Timed> {
    let mut samples = Samples::with_capacity(runs);
    let mut found = 0;
    for i in 0..runs as u64 {
        if cache == Cache::Dropped {
            super::stats::settle_page_cache().1?;
        }
        let t = Instant::now();
        found += run(i).with_context(|| format!("query {name}"))?;
        samples.push(t.elapsed());
    }
    Ok(Timed {
        name,
        samples,
        found,
    })
}

fn case_query(state: Option<CaseState>, gate: Option<GateId>) -> CaseQuery {
    CaseQuery {
        state,
        gate,
        lane: None,
        reason: None,
        from: None,
        to: None,
        cursor: None,
        limit: PAGE,
    }
}

/// The container search's first page for run `i`; returns the events found.
fn container_page(central: &Central, i: u64) -> anyhow::Result<usize> {
    let c = data::container(data::mix(10, i) % REPLICA)?;
    Ok(central
        .events(&EventQuery {
            container: Some(c.to_string()),
            limit: PAGE,
            ..EventQuery::default()
        })?
        .items
        .len())
}

/// Every query of the figure against `central` (with `cold`, the container search again
/// with a cold page cache).
fn measure(central: &Central, cold: bool) -> anyhow::Result<Vec<Timed>> {
    let gates = gates()?;
    let gate = |i: u64| gates[(data::mix(8, i) % gates.len() as u64) as usize].clone();
    let end = data::ts(data::NOW_S);
    let summary = central.summary()?;
    let cases = summary.cases_open + summary.cases_acknowledged + summary.cases_resolved;
    // The open cases' tenth page, by the cursor of the ninth.
    let mut cursor = None;
    for _ in 0..9 {
        let p = central.cases(&CaseQuery {
            cursor: cursor.take(),
            ..case_query(Some(CaseState::Open), None)
        })?;
        cursor = p.next_cursor;
    }
    // The cases on the first page a query answers.
    let cases_on = |q: &CaseQuery| -> anyhow::Result<usize> { Ok(central.cases(q)?.items.len()) };
    let mut out = vec![
        time("exceptions page: open cases, first page", |_| {
            cases_on(&case_query(Some(CaseState::Open), None))
        })?,
        time("exceptions page: one gate's cases", |i| {
            cases_on(&case_query(None, Some(gate(i))))
        })?,
        time("exceptions page: one gate's open cases", |i| {
            cases_on(&case_query(Some(CaseState::Open), Some(gate(i))))
        })?,
        time("exceptions page: resolved cases", |_| {
            cases_on(&case_query(Some(CaseState::Resolved), None))
        })?,
        time("exceptions page: cases of the last 24 h", |_| {
            cases_on(&CaseQuery {
                from: Some(end - SignedDuration::from_hours(24)),
                ..case_query(None, None)
            })
        })?,
        time("exceptions page: open cases, page 10 by cursor", |_| {
            cases_on(&CaseQuery {
                cursor: cursor.clone(),
                ..case_query(Some(CaseState::Open), None)
            })
        })?,
        time(
            "case detail (case, its events, declared consignments)",
            |i| {
                let id = 1 + data::mix(9, i) % cases.max(1);
                Ok(usize::from(central.case_detail(id)?.is_some()))
            },
        )?,
        time("event search: by container, first page", |i| {
            container_page(central, i)
        })?,
        time("event search: one gate, one day, first page", |i| {
            let day = i64::try_from(data::mix(11, i) % 364).unwrap_or(0);
            let from = data::ts(year_start() + day * 86_400);
            Ok(central
                .events(&EventQuery {
                    gate: Some(gate(i)),
                    from: Some(from),
                    to: Some(from + SignedDuration::from_hours(24)),
                    limit: PAGE,
                    ..EventQuery::default()
                })?
                .items
                .len())
        })?,
    ];
    let month = time_n(
        "programme figures: a month",
        PROGRAMME_RUNS,
        Cache::Warm,
        |i| {
            let m = i64::try_from(i % 11).unwrap_or(0);
            let from = data::ts(year_start() + m * 30 * 86_400 + 1_800);
            let c = central.programme_counts(Some(from), from + SignedDuration::from_hours(720))?;
            Ok(from_counts(&c).per_operator.len())
        },
    )?;
    let year = time_n(
        "programme figures: the year",
        PROGRAMME_RUNS,
        Cache::Warm,
        |_| {
            let c = central.programme_counts(Some(data::ts(year_start())), end)?;
            Ok(from_counts(&c).per_operator.len())
        },
    )?;
    out.push(month);
    out.push(year);
    if cold {
        out.push(time_n(
            "event search: by container, first page, cold page cache",
            COLD_RUNS,
            Cache::Dropped,
            |i| container_page(central, i),
        )?);
    }
    Ok(out)
}

/// The rows of one backend: each query at n beside the same query at n / 10.
fn rows(
    backend: &str,
    n: u64,
    base_n: u64,
    at_n: Vec<Timed>,
    at_base: Vec<Timed>,
    fill_note: &str,
) -> Vec<Row> {
    let mut out = Vec::new();
    for (t, b) in at_n.into_iter().zip(at_base) {
        let (target, limit) = if t.name.starts_with("programme") {
            ("≤ 500 ms p99 (the year)", YEAR_TARGET)
        } else {
            ("≤ 100 ms p99", CASE_TARGET)
        };
        let s = t.samples.summary();
        let bs = b.samples.summary();
        let met = s.p99.is_some_and(|p| p <= limit);
        let row = Row::new("11", format!("{} ({backend}, {n} events)", t.name)).latency(s);
        let row = if t.name == "programme figures: a month" {
            row
        } else {
            row.target(target, met)
        };
        out.push(row.note(format!(
            "{:.1} items per run; at {base_n} events p50 {} p99 {}",
            t.found as f64 / s.count.max(1) as f64,
            super::stats::fmt_duration(bs.p50),
            super::stats::fmt_duration(bs.p99),
        )));
    }
    if let Some(first) = out.first_mut() {
        first.note = format!("{}; {fill_note}", first.note);
    }
    out
}

fn fill_note(label: &str, n: u64, filled: Option<&Filled>, size: Option<u64>) -> String {
    let size = size.map_or_else(String::new, |b| format!(", {} on disk", fmt_bytes(Some(b))));
    match filled {
        Some(f) => format!(
            "{label}: {n} events filled in {:.0} s ({:.0} events/s, peak RSS {}){size}{}",
            f.took.as_secs_f64(),
            rate(usize::try_from(n).unwrap_or(usize::MAX), f.took),
            fmt_bytes(f.rss),
            match f.behind {
                (0, _) => String::new(),
                (b, t) => format!(
                    "; the roll-ups' folder was {b} batches behind at the end, folded in {:.1} s",
                    t.as_secs_f64()
                ),
            }
        ),
        None => format!("{label}: {n} events, store reused{size}"),
    }
}

fn file_size(p: &Path) -> Option<u64> {
    std::fs::metadata(p).ok().map(|m| m.len())
}

/// Measures one backend: the store of n / 10 events (the baseline), then of n.
fn backend(
    ctx: &Ctx,
    name: &str,
    place: impl Fn(usize) -> anyhow::Result<Place>,
    replica: &IndexedReplica,
) -> anyhow::Result<Vec<Row>> {
    let n = ctx.n;
    let base = (n / 10).max(PORTS * GATES_PER_PORT * 2);
    let cold = std::env::var(COLD_VAR).is_ok();
    let mut measured = Vec::new();
    let mut notes = Vec::new();
    for size in [base, n] {
        let p = place(size)?;
        let (central, filled, stored) = open_filled(ctx, &p, size, replica)?;
        let on_disk = match &p {
            Place::Redb(path) => file_size(path),
            Place::Pg(_) => None,
        };
        let mut note = fill_note(name, stored, filled.as_ref(), on_disk);
        if let Place::Pg(url) = &p {
            note.push_str(&format!(", shared_buffers {}", shared_buffers(url)?));
        }
        notes.push(note);
        println!("  {}", notes.last().map_or("", String::as_str));
        let t = Instant::now();
        measured.push((stored, measure(&central, cold)?));
        println!(
            "  queries over {stored} events took {:.1} s",
            t.elapsed().as_secs_f64()
        );
        drop(central);
    }
    let (Some((n_stored, at_n)), Some((base_stored, at_base))) = (measured.pop(), measured.pop())
    else {
        bail!("both stores measured");
    };
    Ok(rows(
        name,
        n_stored,
        base_stored,
        at_n,
        at_base,
        &notes.join("; "),
    ))
}

/// The database URL `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> anyhow::Result<String> {
    let (head, query) = url.split_once('?').unwrap_or((url, ""));
    let scheme_end = head.find("://").context("a URL postgres://…")? + 3;
    let host_end = head[scheme_end..]
        .find('/')
        .map_or(head.len(), |i| scheme_end + i);
    let q = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    Ok(format!("{}/{db}{q}", &head[..host_end]))
}

/// The cluster's `shared_buffers` (PostgreSQL's own page cache), as it reports it.
fn shared_buffers(url: &str) -> anyhow::Result<String> {
    let mut c = postgres::Client::connect(url, postgres::NoTls).context("connecting")?;
    Ok(c.query_one("SHOW shared_buffers", &[])?.get(0))
}

/// The PostgreSQL database for `n` events in the cluster of `url`, created when missing.
fn pg_database(url: &str, n: usize) -> anyhow::Result<Place> {
    let db = format!("aeogate_q_{n}");
    let mut admin = postgres::Client::connect(url, postgres::NoTls).context("connecting")?;
    if admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])?
        .is_none()
    {
        admin.batch_execute(&format!("CREATE DATABASE {db}"))?;
    }
    Ok(Place::Pg(with_database(url, &db)?))
}

/// Runs figure 11 on redb and, with [`PG_URL_VAR`] set, on PostgreSQL.
///
/// # Errors
/// Store or generator errors, a store left with another number of events, or an
/// ingest that did not acknowledge a batch.
pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let replica = IndexedReplica::generate(REPLICA, REPLICA)?;
    let dir = ctx.keep.clone().unwrap_or_else(|| ctx.dir.clone());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut rows = Vec::new();
    if std::env::var(SKIP_REDB_VAR).is_err() {
        rows.extend(backend(
            ctx,
            "redb",
            |size| Ok(Place::Redb(dir.join(format!("queries-{size}.redb")))),
            &replica,
        )?);
    }
    if let Ok(url) = std::env::var(PG_URL_VAR) {
        let url = Arc::new(url);
        rows.extend(backend(
            ctx,
            "PostgreSQL",
            |size| pg_database(&url, size),
            &replica,
        )?);
    }
    Ok(rows)
}

/// Set to measure only PostgreSQL.
pub const SKIP_REDB_VAR: &str = "AEOGATE_BENCH_SKIP_REDB";
/// Set to time the container search with a cold page cache as well (see the module
/// documentation).
pub const COLD_VAR: &str = "AEOGATE_BENCH_COLD";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_replaced_keeping_host_and_parameters() {
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5432/postgres?sslmode=disable", "x")
                .expect("url"),
            "postgres://u@127.0.0.1:5432/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgresql://u@h:1", "x").expect("url"),
            "postgresql://u@h:1/x"
        );
    }
}
