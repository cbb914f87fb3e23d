//! `aeogate bench`: whole-run benchmark figures of issue 9, each measured beside its
//! baseline in the same run so the ratio holds on a noisy machine (docs/benchmarks.md).
//!
//! Every figure reports, where they apply, p50 / p99 / p99.9 / max latency
//! (nearest-rank), the cold first sample, throughput and the peak RSS of the figure
//! (the kernel's high-water mark, restarted per figure).
//!
//! # Layout
//! - [`data`]: deterministic generator (operators, consignments, transactions, change
//!   batches) and the indexed HashMap baseline replica; shared with the `cargo bench`
//!   targets in `edge-agent/benches/`.
//! - [`stats`]: samples, percentiles, peak and current RSS.
//! - [`decision`]: figure 1, decision latency (redb replica vs HashMap).
//! - [`journal`]: figure 3, durable decisions per second (one commit per decision vs
//!   group commit) and agent-core RSS.
//! - [`bootstrap`]: figure 4, signed snapshot and 10,000-change delta vs raw redb.
//! - [`ingest`]: figure 5, central ingest from 4 concurrent agents vs a raw redb loop.
//! - [`system`]: the running system of figures 2, 6 and 7 (broker, virtual boards, the
//!   agent in process, lane topic subscriber, bare MQTT round trip).
//! - [`lane`]: figure 2, departure frame written into the pty → lane decision on MQTT.
//! - [`backlog`]: figure 6, a pre-filled journal drained to central under live load.
//! - [`screen`]: figure 7, seal exception at the gate → case on central's SSE stream.
//! - [`footprint`]: figure 8, release binary sizes, the idle agent's CPU and RSS.
//! - [`mqtt`]: figure 10, the agent over mosquitto at 50 trucks/s and at saturation
//!   (CPU per decision, decisions/s, lane states dropped) beside a bare broker echo.
//! - [`queries`]: figure 11, central's staff queries (exceptions page, case detail, event
//!   search, programme figures) over a store of n events, redb and PostgreSQL, beside the
//!   same queries over n / 10.

pub mod backlog;
pub mod bootstrap;
pub mod data;
pub mod decision;
pub mod footprint;
pub mod ingest;
pub mod journal;
pub mod lane;
pub mod mqtt;
pub mod mqtt_floor;
pub mod queries;
pub mod screen;
pub mod stats;
pub mod system;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use protocol::schema::GateId;

use stats::{Summary, fmt_bytes, fmt_duration};

/// Records per kind at the default scale (operators and consignments each).
pub const DEFAULT_N: usize = 100_000;
/// Records per kind at the issue's full scale (`--full`).
pub const FULL_N: usize = 1_000_000;
/// Most decisions timed one by one in figure 1.
pub const MAX_DECISIONS: usize = 100_000;

/// What to run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BenchArgs {
    /// Figures by number or name (`1`, `decision`, `3`, `journal`, `4`, `bootstrap`, `5`,
    /// `ingest`); empty runs every implemented figure.
    pub which: Vec<String>,
    /// Records per kind; 0 means [`DEFAULT_N`].
    pub n: usize,
    /// The issue's scale, [`FULL_N`] (overrides `n`).
    pub full: bool,
    /// Also write the results as a Markdown table to this file.
    pub out: Option<PathBuf>,
    /// Keep the stores a figure fills here (figure 11), and reuse them on the next run.
    pub keep: Option<PathBuf>,
}

/// Measures one figure.
pub type RunFigure = fn(&Ctx) -> anyhow::Result<Vec<Row>>;

/// One figure of issue 9.
#[derive(Debug, Clone, Copy)]
pub struct Figure {
    /// The issue's number for it.
    pub id: &'static str,
    /// Its name on the command line.
    pub name: &'static str,
    /// What it measures.
    pub about: &'static str,
    /// The measure, or while not implemented the reason it is not yet measured.
    pub run: Result<RunFigure, &'static str>,
}

/// Every figure of issue 9, in the order they run.
pub const FIGURES: &[Figure] = &[
    Figure {
        id: "1",
        name: "decision",
        about: "decider latency, redb replica vs in-memory HashMap",
        run: Ok(decision::run),
    },
    Figure {
        id: "2",
        name: "read-to-lane",
        about: "read to lane command, end to end",
        run: Ok(lane::run),
    },
    Figure {
        id: "3",
        name: "journal",
        about: "durable decisions per second, per-decision vs group commit; agent-core RSS",
        run: Ok(journal::run),
    },
    Figure {
        id: "4",
        name: "bootstrap",
        about: "chunked signed snapshot, whole snapshot and 10,000-change delta vs raw redb bulk insert",
        run: Ok(bootstrap::run),
    },
    Figure {
        id: "5",
        name: "ingest",
        about: "central ingest, 4 concurrent agents, durable, vs raw redb insert loop",
        run: Ok(ingest::run),
    },
    Figure {
        id: "6",
        name: "backlog",
        about: "backlog drain under live load",
        run: Ok(backlog::run),
    },
    Figure {
        id: "7",
        name: "exception-to-screen",
        about: "seal exception to the staff screen",
        run: Ok(screen::run),
    },
    Figure {
        id: "8",
        name: "footprint",
        about: "release binary sizes, agent idle CPU and RSS",
        run: Ok(footprint::run),
    },
    Figure {
        id: "10",
        name: "mqtt",
        about: "the agent over mosquitto at 50 trucks/s and at saturation, vs a bare broker echo",
        run: Ok(mqtt::run),
    },
    Figure {
        id: "11",
        name: "queries-10m",
        about: "central's staff queries over n stored events, redb and PostgreSQL, vs n / 10",
        run: Ok(queries::run),
    },
];

/// Whether a measured value met its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
    /// A baseline or an informational row: no target.
    None,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Row {
    /// Figure number.
    pub figure: &'static str,
    /// What was measured, e.g. "decide, redb replica".
    pub measure: String,
    /// Latency samples, when a latency.
    pub latency: Option<Summary>,
    /// Items per second and the item's name.
    pub throughput: Option<(f64, &'static str)>,
    /// Peak RSS during the measure (bytes).
    pub peak_rss: Option<u64>,
    /// The issue's target, in words.
    pub target: String,
    pub verdict: Verdict,
    /// Anything else a reader needs (counts, RSS at start, where time goes).
    pub note: String,
}

impl Row {
    /// A row with only a measure name.
    #[must_use]
    pub fn new(figure: &'static str, measure: impl Into<String>) -> Self {
        Row {
            figure,
            measure: measure.into(),
            latency: None,
            throughput: None,
            peak_rss: None,
            target: String::new(),
            verdict: Verdict::None,
            note: String::new(),
        }
    }

    #[must_use]
    pub fn latency(mut self, s: Summary) -> Self {
        self.latency = Some(s);
        self
    }

    #[must_use]
    pub fn throughput(mut self, per_s: f64, unit: &'static str) -> Self {
        self.throughput = Some((per_s, unit));
        self
    }

    #[must_use]
    pub fn rss(mut self, bytes: Option<u64>) -> Self {
        self.peak_rss = bytes;
        self
    }

    #[must_use]
    pub fn target(mut self, text: impl Into<String>, met: bool) -> Self {
        self.target = text.into();
        self.verdict = if met { Verdict::Met } else { Verdict::Missed };
        self
    }

    #[must_use]
    pub fn note(mut self, text: impl Into<String>) -> Self {
        self.note = text.into();
        self
    }
}

/// What every figure is given.
#[derive(Debug)]
pub struct Ctx {
    /// Records per kind.
    pub n: usize,
    /// Where the figure's redb files go (deleted at the end of the run).
    pub dir: PathBuf,
    /// Where a figure keeps the stores it fills, to reuse them (`--keep`).
    pub keep: Option<PathBuf>,
}

impl Ctx {
    /// Decisions timed one by one (figure 1).
    #[must_use]
    pub fn decisions(&self) -> usize {
        MAX_DECISIONS.min(self.n.max(1_000))
    }

    /// A fresh path in the run's directory.
    #[must_use]
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The gate every benchmark agent is.
///
/// # Errors
/// Never for this constant name.
pub fn gate() -> anyhow::Result<GateId> {
    GateId::parse("PORT1-G1").context("bench gate id")
}

pub use data::{policy, routes};

/// Runs the figures named in `args` and prints the report.
///
/// # Errors
/// An unknown or not-yet-measured figure name, a failed measure, or an unwritable
/// `out` file.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let figures = select(&args.which)?;
    let n = if args.full {
        FULL_N
    } else if args.n == 0 {
        DEFAULT_N
    } else {
        args.n
    };
    let tmp = tempfile::Builder::new()
        .prefix("aeogate-bench-")
        .tempdir()
        .context("creating the bench directory")?;
    let ctx = Ctx {
        n,
        dir: tmp.path().to_path_buf(),
        keep: args.keep.clone(),
    };
    let started = Instant::now();
    let mut rows = Vec::new();
    println!(
        "aeogate bench: {n} records per kind, figures {}, files in {}",
        figures.iter().map(|f| f.id).collect::<Vec<_>>().join(","),
        ctx.dir.display()
    );
    for f in &figures {
        let Ok(run) = f.run else { continue };
        println!("figure {} ({}) …", f.id, f.about);
        let t = Instant::now();
        let got = run(&ctx).with_context(|| format!("figure {} ({})", f.id, f.name))?;
        println!("{}", table(&got, false));
        println!("  figure {} took {:.1} s", f.id, t.elapsed().as_secs_f64());
        rows.extend(got);
    }
    let report = report(&rows, n, started.elapsed());
    println!("{report}");
    if let Some(out) = &args.out {
        std::fs::write(out, &report).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

/// The figures `which` names, in run order; every implemented one when empty.
///
/// # Errors
/// When a name is unknown or its figure is not yet measured.
pub fn select(which: &[String]) -> anyhow::Result<Vec<Figure>> {
    if which.is_empty() {
        return Ok(FIGURES.iter().filter(|f| f.run.is_ok()).copied().collect());
    }
    let mut out: Vec<Figure> = Vec::new();
    for w in which {
        let w = w.trim().to_ascii_lowercase();
        let Some(f) = FIGURES.iter().find(|f| f.id == w || f.name == w) else {
            let known: Vec<String> = FIGURES
                .iter()
                .map(|f| format!("{} ({})", f.id, f.name))
                .collect();
            bail!(
                "no benchmark figure {w:?}; figures are {}",
                known.join(", ")
            );
        };
        if let Err(why) = f.run {
            bail!("figure {} ({}) is not yet measured: {why}", f.id, f.name);
        }
        if !out.iter().any(|o| o.id == f.id) {
            out.push(*f);
        }
    }
    out.sort_by_key(|f| FIGURES.iter().position(|g| g.id == f.id));
    Ok(out)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or_else(|| "unknown".into(), |kib| fmt_bytes(Some(kib * 1024)));
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    format!("{cores} cores, {cpu}, {mem} memory")
}

fn report(rows: &[Row], n: usize, took: Duration) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## aeogate bench: {n} records per kind, {}, run took {:.1} s\n",
        machine(),
        took.as_secs_f64()
    );
    s.push_str(&table(rows, true));
    s
}

/// The rows as a Markdown table (also readable as plain text).
#[must_use]
pub fn table(rows: &[Row], with_header: bool) -> String {
    let mut s = String::new();
    if with_header {
        s.push_str("| fig | measure | n | p50 | p99 | p99.9 | max | cold | throughput | peak RSS | target | met | note |\n");
        s.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    }
    for r in rows {
        let l = r.latency;
        let count = l.map_or_else(|| "-".into(), |l| l.count.to_string());
        let tp = r
            .throughput
            .map_or_else(|| "-".into(), |(v, unit)| format!("{v:.0} {unit}/s"));
        let met = match r.verdict {
            Verdict::Met => "yes",
            Verdict::Missed => "**no**",
            Verdict::None => "",
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.figure,
            r.measure,
            count,
            fmt_duration(l.and_then(|l| l.p50)),
            fmt_duration(l.and_then(|l| l.p99)),
            fmt_duration(l.and_then(|l| l.p999)),
            fmt_duration(l.and_then(|l| l.max)),
            fmt_duration(l.and_then(|l| l.cold)),
            tp,
            fmt_bytes(r.peak_rss),
            r.target,
            met,
            r.note
        );
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn transaction_ids_are_time_ordered_like_the_agents_and_distinct() {
        let agent = |a: u64, seq: u64| data::transaction_id(a << 40 | seq);
        for a in 0..4 {
            assert_eq!(agent(a, 1).get_version_num(), 7);
            assert_eq!(agent(a, 1).get_variant(), uuid::Variant::RFC4122);
            // A gate's later transaction sorts later, also across a millisecond.
            assert!(agent(a, 1) < agent(a, 2) && agent(a, 2) < agent(a, 1_000));
        }
        // Gates at the same point of their sequence share the millisecond, not the id.
        let ids: std::collections::HashSet<uuid::Uuid> = (0..4)
            .flat_map(|a| (1..=100).map(move |s| agent(a, s)))
            .collect();
        assert_eq!(ids.len(), 400);
        // Later transactions of one gate sort after earlier ones of every gate.
        assert!((0..4).all(|a| agent(a, 50) > agent(3 - a, 10)));
    }

    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn empty_selection_runs_every_implemented_figure_in_order() {
        let ids: Vec<_> = select(&[])
            .expect("default selection")
            .iter()
            .map(|f| f.id)
            .collect();
        assert_eq!(ids, ["1", "2", "3", "4", "5", "6", "7", "8", "10", "11"]);
    }

    #[test]
    fn figures_are_chosen_by_number_or_name_in_issue_order_without_repeats() {
        let ids: Vec<_> = select(&names(&["ingest", "1", "Decision"]))
            .expect("valid names")
            .iter()
            .map(|f| f.id)
            .collect();
        assert_eq!(ids, ["1", "5"]);
    }

    #[test]
    fn unknown_figure_is_refused_with_the_list() {
        let e = select(&names(&["latency"]))
            .expect_err("unknown")
            .to_string();
        assert!(
            e.contains("\"latency\"") && e.contains("4 (bootstrap)"),
            "{e}"
        );
    }

    #[test]
    fn every_figure_of_the_issue_is_measured() {
        assert!(FIGURES.iter().all(|f| f.run.is_ok()));
        assert_eq!(FIGURES.len(), 10);
    }

    #[test]
    fn loaded_store_holds_every_generated_record() {
        use edge_agent::decider::ReplicaView;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = data::loaded_store(&dir.path().join("r.redb"), 50, 30).expect("load");
        assert_eq!(store.replica_meta().sequence, 1 + 50 + 30);
        let view = store.replica_view().expect("view");
        for i in [0, 9, 49] {
            let id = data::operator_id(i).expect("id");
            assert_eq!(view.operator(&id).map(|r| r.operator), Some(id));
        }
        let c = data::container(29).expect("container");
        assert_eq!(
            view.consignment_for(&c).map(|k| k.id),
            Some("DECL0000000029".into())
        );
        assert!(
            view.consignment_for(&data::container(30).expect("c"))
                .is_none()
        );
        assert_eq!(view.mras().len(), 1);
    }

    /// The whole-run command at a chosen scale, until `aeogate bench` is wired:
    /// `AEOGATE_BENCH_N=100000 AEOGATE_BENCH_WHICH=1,3 cargo test --release -p aeogate
    /// --lib bench::tests::whole_run -- --ignored --nocapture`.
    #[test]
    #[ignore = "a benchmark run, minutes at scale; run explicitly"]
    fn whole_run() {
        let n = std::env::var("AEOGATE_BENCH_N")
            .ok()
            .and_then(|v| v.replace('_', "").parse().ok())
            .unwrap_or(0);
        let which = std::env::var("AEOGATE_BENCH_WHICH")
            .map(|w| w.split(',').map(str::to_string).collect())
            .unwrap_or_default();
        let out = std::env::var("AEOGATE_BENCH_OUT").ok().map(PathBuf::from);
        run(BenchArgs {
            which,
            n,
            full: std::env::var("AEOGATE_BENCH_FULL").is_ok(),
            out,
            keep: std::env::var("AEOGATE_BENCH_KEEP").ok().map(PathBuf::from),
        })
        .expect("bench run");
    }
}
