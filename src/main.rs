//! The `aeogate` command line: identifier tools for installers and integrators,
//! the virtual lane board, and the demo.
//!
//! # Layout
//! - [`tools`]: `epc decode`, `container check` (one JSON object per input line).
//! - [`demo`]: `demo`, a whole port of entry on one machine.
//! - `agent`: runs an edge agent from this binary (the demo's gates use it).
//! - `board`: a virtual lane board on a pseudo-terminal (`aeogate::vboard`).
//! - `reader llrp`: a virtual fixed UHF reader speaking LLRP (`aeogate::vreader`).
//! - `bench`: the benchmark figures (`aeogate::bench`).
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

mod demo;
mod tools;

/// The allocator of the `central` binary (central/src/main.rs), so that central's code run
/// here (the demo's central, `bench` figure 5) allocates as it does there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// aeogate: AEO priority lanes at the port-of-entry gate.
#[derive(Debug, Parser)]
#[command(version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a whole port of entry on this machine: central, two gates of four lanes (virtual
    /// boards running the real firmware over pseudo-terminals), an MQTT broker, and traffic.
    Demo(DemoArgs),
    /// Run an edge agent (the same daemon as the `edge-agent` binary's `run`).
    Agent {
        /// The agent's configuration file (TOML; see docs/configuration.md).
        #[arg(long)]
        config: PathBuf,
        /// Shut down gracefully when standard input closes (how the demo stops its agents).
        #[arg(long)]
        stop_on_stdin_eof: bool,
    },
    /// Run a central instance (the same server as the `central` binary's `serve`); the
    /// demo runs its second instance on PostgreSQL this way.
    #[command(hide = true)]
    Central {
        /// Central's configuration file (TOML; see docs/configuration.md).
        #[arg(long)]
        config: PathBuf,
        /// Shut down gracefully when standard input closes.
        #[arg(long)]
        stop_on_stdin_eof: bool,
    },
    /// Measure the benchmark figures of docs/benchmarks.md, each beside its baseline.
    Bench {
        /// Figures by number or name (1/decision, 3/journal, 4/bootstrap, 5/ingest, …);
        /// none runs every implemented figure.
        which: Vec<String>,
        /// Records per kind (default 100,000).
        #[arg(long, default_value_t = 0)]
        n: usize,
        /// The full scale of the targets (1,000,000 records per kind).
        #[arg(long)]
        full: bool,
        /// Also write the results as a Markdown table to this file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Keep the stores figure 11 fills in this folder, and reuse them when it runs
        /// again with the same `--n`.
        #[arg(long)]
        keep: Option<PathBuf>,
    },
    /// Figure 1's redb replica alone, in its own process (run by `bench 1`, which reads the
    /// one line it prints).
    #[command(hide = true)]
    BenchDecide {
        /// The loaded bench store.
        #[arg(long)]
        store: PathBuf,
        /// Records per kind in it.
        #[arg(long)]
        n: u64,
        /// Decisions to time.
        #[arg(long)]
        decisions: u64,
        /// The replica file's page cache, MiB.
        #[arg(long)]
        replica_cache_mib: usize,
    },
    /// Run a virtual lane board on a pseudo-terminal: prints the tty path for the agent and
    /// runs a lane script (see docs/hardware.md, "Virtual board").
    Board {
        /// The lane the board serves.
        #[arg(long, default_value = "L1")]
        lane: String,
        /// A lane script to run; without one the board idles until Ctrl-C.
        #[arg(long)]
        script: Option<PathBuf>,
    },
    /// Virtual network readers.
    #[command(subcommand)]
    Reader(ReaderCommand),
    /// GS1 EPC tools.
    #[command(subcommand)]
    Epc(EpcCommand),
    /// ISO 6346 container number tools.
    #[command(subcommand)]
    Container(ContainerCommand),
}

#[derive(Debug, clap::Args)]
struct DemoArgs {
    /// Stop after this long (e.g. 60s, 5m), drain the journals to central and print a
    /// summary; without it the demo runs until Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Trucks per minute across all eight lanes.
    #[arg(long, default_value_t = 40.0)]
    rate: f64,
    /// Seed of the data set and the traffic (same seed, same run).
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Operators in the AEO registry.
    #[arg(long, default_value_t = 30_000)]
    operators: usize,
    /// Consignments of advance cargo (a day at the port).
    #[arg(long, default_value_t = 4_000)]
    consignments: usize,
    /// Keep the run's files (stores, configs, logs, certificates) in this directory
    /// instead of a temporary one.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// How long central stays unreachable in the outage fault (capped at a quarter of
    /// --duration).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    outage: Duration,
    /// Run central on this PostgreSQL database (postgres://…, an empty database) instead
    /// of a redb file: two instances share it, and a fault kills one of them mid-run.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
}

#[derive(Debug, Subcommand)]
enum ReaderCommand {
    /// A fixed UHF reader speaking LLRP 1.1 on TCP: accepts one client, honours ROSpec
    /// add/enable/start/stop/delete and reports the tags in its antennas' fields (see
    /// docs/integration.md, "LLRP readers").
    Llrp {
        /// Address to listen on (LLRP's port is 5084).
        #[arg(long, default_value = "127.0.0.1:5084")]
        listen: std::net::SocketAddr,
        /// Number of antennas (1..=N).
        #[arg(long, default_value_t = 4)]
        antennas: u16,
        /// A tag always in an antenna's field, as ANTENNA=EPCHEX (repeatable).
        #[arg(long = "tag", value_parser = aeogate::vreader::parse_tag_arg)]
        tags: Vec<(u16, Vec<u8>)>,
    },
}

#[derive(Debug, Subcommand)]
enum EpcCommand {
    /// Decode EPC memory-bank hex (SGTIN-96, SSCC-96, GRAI-96, GIAI-96; other headers as
    /// raw URIs).
    ///
    /// Reads one value per line from standard input when no value is given, and prints one
    /// JSON object per value, in order: {"input","valid":true,"scheme","uri","tag_uri",
    /// "hex","bits", and the fields} or {"input","valid":false,"error"}. A blank line is
    /// reported as invalid ("no EPC given"), so output line N always answers input line N.
    /// Exit status: 0 all valid, 1 any invalid, 2 usage error.
    Decode {
        /// EPC values as hex (spaces and a leading 0x are allowed).
        values: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ContainerCommand {
    /// Check ISO 6346 container numbers (owner code, category, serial, check digit).
    ///
    /// Reads one value per line from standard input when no value is given, and prints one
    /// JSON object per value, in order: {"input","valid":true,"owner","category","serial",
    /// "check_digit","canonical"} or {"input","valid":false,"error"}. A blank line is
    /// reported as invalid ("empty container number"), so output line N always answers
    /// input line N. Exit status: 0 all valid, 1 any invalid, 2 usage error.
    Check {
        /// Container numbers, e.g. CSQU3054383 or "csqu 305438 3".
        values: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version with exit 0 and usage errors with exit 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let result = match cli.command {
        Command::Demo(a) => demo::run(demo::DemoOptions {
            duration: a.duration,
            rate: a.rate,
            seed: a.seed,
            operators: a.operators,
            consignments: a.consignments,
            dir: a.dir,
            outage: a.outage,
            postgres: a.postgres,
        }),
        Command::Agent {
            config,
            stop_on_stdin_eof,
        } => run_agent(&config, stop_on_stdin_eof).map(|()| ExitCode::SUCCESS),
        Command::Central {
            config,
            stop_on_stdin_eof,
        } => run_central(&config, stop_on_stdin_eof).map(|()| ExitCode::SUCCESS),
        Command::Bench {
            which,
            n,
            full,
            out,
            keep,
        } => aeogate::bench::run(aeogate::bench::BenchArgs {
            which,
            n,
            full,
            out,
            keep,
        })
        .map(|()| ExitCode::SUCCESS),
        Command::BenchDecide {
            store,
            n,
            decisions,
            replica_cache_mib,
        } => aeogate::bench::decision::decide_alone(&store, n, decisions, replica_cache_mib)
            .map(|()| ExitCode::SUCCESS),
        Command::Board { lane, script } => {
            aeogate::vboard::run_board_cli(&lane, script.as_deref()).map(|()| ExitCode::SUCCESS)
        }
        Command::Reader(ReaderCommand::Llrp {
            listen,
            antennas,
            tags,
        }) => {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
            aeogate::vreader::run_reader_cli(listen, antennas, &tags).map(|()| ExitCode::SUCCESS)
        }
        Command::Epc(EpcCommand::Decode { values }) => tools::epc_decode(&values),
        Command::Container(ContainerCommand::Check { values }) => tools::container_check(&values),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("aeogate: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The text log and a two-thread runtime, as the agent and central run under this binary.
fn service_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    match aeogate_log::init(aeogate_log::Format::Text) {
        Ok(()) | Err(aeogate_log::LogError::AlreadySet) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()?)
}

/// Runs an edge agent until SIGINT/SIGTERM (or, when asked, until stdin closes).
fn run_agent(config: &std::path::Path, stop_on_stdin_eof: bool) -> anyhow::Result<()> {
    let cfg = edge_agent::config::Config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let rt = service_runtime()?;
    rt.block_on(async move { edge_agent::runtime::run(cfg, stop_signal(stop_on_stdin_eof)).await })
}

fn run_central(config: &std::path::Path, stop_on_stdin_eof: bool) -> anyhow::Result<()> {
    let cfg = central::Config::load(config)?;
    let rt = service_runtime()?;
    rt.block_on(async move {
        central::api::install_metrics_recorder()?;
        let hub = central::Central::open(&cfg)?;
        central::serve(hub, cfg, stop_signal(stop_on_stdin_eof)).await
    })
}

/// Cancelled on Ctrl-C, SIGTERM, or (with `stop_on_stdin_eof`) when standard input
/// closes. Call inside the runtime.
fn stop_signal(stop_on_stdin_eof: bool) -> tokio_util::sync::CancellationToken {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let watcher = shutdown.clone();
    tokio::spawn(async move {
        let stdin_closed = async {
            if stop_on_stdin_eof {
                let mut buf = [0u8; 64];
                let mut stdin = tokio::io::stdin();
                loop {
                    match tokio::io::AsyncReadExt::read(&mut stdin, &mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            } else {
                std::future::pending::<()>().await;
            }
        };
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let sigterm = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = sigterm => {}
            () = stdin_closed => {}
        }
        watcher.cancel();
    });
    shutdown
}
