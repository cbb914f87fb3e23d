//! aeogate central.
//!
//! Errors go to standard error as one `central: …` message (no backtrace, whatever
//! `RUST_BACKTRACE` says: they are the user's to fix, not the program's); the status is 1,
//! or 2 for an invalid `RUST_LOG`. `central man DIR` writes the manual pages (roff; `packaging/man/` holds them).
use std::io::{BufRead as _, IsTerminal as _, Read as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use central::registry::{Format, ImportKind};
use central::{Central, Config};
use clap::{Parser, Subcommand};
use protocol::operator::OperatorId;
use protocol::schema::{AeoStatus, GateId};
use tokio_util::sync::CancellationToken;

/// Ingest parses every batch into many small strings, across the server's threads; glibc's
/// allocator took 22 % of the ingest's CPU in this process allocating and freeing them,
/// mimalloc 9 % (docs/benchmarks.md, figure 5).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// aeogate central: collects gate events, signs the AEO registry, tracks seal-exception cases.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML); see docs/central.md.
    #[arg(
        long,
        short,
        global = true,
        env = "CENTRAL_CONFIG",
        default_value = "central.toml"
    )]
    config: PathBuf,
    /// Log as JSON lines (for a log collector) instead of text.
    #[arg(long, global = true)]
    json_logs: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Serve the API until interrupted.
    Serve,
    /// Agent tokens.
    #[command(subcommand)]
    Agent(AgentCmd),
    /// Registry authority.
    #[command(subcommand)]
    Registry(RegistryCmd),
    /// Signing keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Staff users.
    #[command(subcommand)]
    User(UserCmd),
    /// Export decided gate transactions (docs/central.md, "Exports").
    #[command(subcommand)]
    Export(ExportCmd),
    /// Copy a redb store into a PostgreSQL database (events, chains, registry log, cases,
    /// alerts, users, sessions, audit, agents, figures), then verify counts, chain heads
    /// and the registry head. Run it again to resume a copy that stopped part-way. Stop
    /// central first; the configuration file is not read.
    Migrate {
        /// The redb store file to copy from (left unchanged).
        #[arg(long)]
        from: PathBuf,
        /// The PostgreSQL database to copy into: `postgres://user:password@host/db`.
        #[arg(long)]
        to: String,
        /// PEM file of the CA that signed the database server's certificate (TLS).
        #[arg(long)]
        ca_cert: Option<PathBuf>,
    },
    /// Rebuild a redb store's index file (`<store>.index.redb`: the event index and the
    /// programme roll-ups) from the store's events, when it is lost or damaged and no
    /// backup taken with the store is at hand. A file found at the index's path is moved
    /// aside, not deleted. Stop central first; the configuration file is not read.
    RebuildIndex {
        /// The redb store file (`store_path`).
        #[arg(long)]
        store: PathBuf,
    },
    /// Write the manual pages (roff: central.1 and one per subcommand) into DIR.
    #[command(hide = true)]
    Man {
        /// An existing directory.
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ExportCmd {
    /// GS1 EPCIS 2.0 JSON-LD document.
    Epcis(ExportArgs),
    /// CSV, one row per decided transaction.
    Csv(ExportArgs),
}

#[derive(Debug, clap::Args)]
struct ExportArgs {
    /// Only this gate (default: every gate).
    #[arg(long)]
    gate: Option<GateId>,
    /// Start of the range, RFC 3339 (default: 24 hours before --to).
    #[arg(long)]
    from: Option<jiff::Timestamp>,
    /// End of the range, exclusive, RFC 3339 (default: now).
    #[arg(long)]
    to: Option<jiff::Timestamp>,
    /// Write here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum AgentCmd {
    /// Issue a token for a gate (printed once; only its hash is stored).
    Add {
        gate: GateId,
        /// Port of entry the gate belongs to (its replication scope).
        #[arg(long)]
        port: String,
        /// The agent's client certificate (PEM; `-` reads standard input): the token is
        /// then accepted only over TLS connections presenting this certificate (needs
        /// `[tls] client_ca_pem`).
        #[arg(long)]
        cert: Option<PathBuf>,
    },
    /// Revoke a gate's tokens at once: the agent's next request is refused (403) and the
    /// gate health page shows the gate as revoked. `agent add` issues a new token.
    Revoke {
        gate: GateId,
        /// Revoke only the tokens bound to this client certificate (PEM; `-` reads
        /// standard input), e.g. when the gate box's key was exposed.
        #[arg(long)]
        cert: Option<PathBuf>,
        /// Who revokes (for the audit log).
        #[arg(long, default_value = "central")]
        actor: String,
    },
    /// Issue a new token for a gate (printed once) and keep its current tokens working for
    /// the grace period only; the new token keeps the gate's client-certificate binding.
    Rotate {
        gate: GateId,
        /// How long the old token still works, e.g. `24h`, `90m`, `0s` (refused at once).
        #[arg(long, value_parser = parse_grace)]
        grace: jiff::SignedDuration,
        /// Who rotates (for the audit log).
        #[arg(long, default_value = "central")]
        actor: String,
    },
}

fn parse_grace(s: &str) -> Result<jiff::SignedDuration, String> {
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|e| format!("{s:?}: {e} (e.g. 24h, 90m, 0s)"))?;
    if d.is_negative() {
        return Err(format!("{s:?}: the grace period cannot be negative"));
    }
    Ok(d)
}

#[derive(Debug, Subcommand)]
enum RegistryCmd {
    /// Import operators, MRAs or consignments from CSV (`.csv`) or JSON. Good rows are
    /// imported; when any row is refused the status is 1.
    Import {
        /// The file; `-` reads standard input (format from --format, or guessed: JSON when
        /// the text starts with `[` or `{`, else CSV).
        file: PathBuf,
        #[arg(long)]
        kind: Option<ImportKind>,
        /// csv or json (default: from the file's extension, `.csv` or else JSON).
        #[arg(long, value_parser = parse_format)]
        format: Option<Format>,
        #[arg(long, default_value = "import")]
        actor: String,
    },
    /// Change an operator's status (active = reinstate).
    SetStatus {
        operator: OperatorId,
        #[arg(long, value_parser = parse_status)]
        status: AeoStatus,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        actor: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCmd {
    /// Write a new ed25519 signing key file (never overwrites).
    Generate {
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum UserCmd {
    /// Add a staff user; the password is prompted for without echo on a terminal, else
    /// read from the first line of standard input.
    Add {
        name: String,
        /// `analyst` (views, works cases) or `admin` (also changes the registry).
        #[arg(long, default_value = "analyst")]
        role: String,
    },
    /// Disable a staff user: no new logins, and open sessions are refused from their next
    /// request.
    Disable {
        name: String,
        /// Who disables (for the audit log).
        #[arg(long, default_value = "central")]
        actor: String,
    },
    /// Enable a disabled staff user again.
    Enable {
        name: String,
        /// Who enables (for the audit log).
        #[arg(long, default_value = "central")]
        actor: String,
    },
    /// Change a staff user's role; open sessions get it from their next request.
    SetRole {
        name: String,
        /// `analyst` or `admin`.
        #[arg(long)]
        role: String,
        /// Who changes it (for the audit log).
        #[arg(long, default_value = "central")]
        actor: String,
    },
}

fn parse_status(s: &str) -> Result<AeoStatus, String> {
    match s.to_ascii_lowercase().as_str() {
        "active" => Ok(AeoStatus::Active),
        "suspended" => Ok(AeoStatus::Suspended),
        "revoked" => Ok(AeoStatus::Revoked),
        "withdrawn" => Ok(AeoStatus::Withdrawn),
        "expired" => Ok(AeoStatus::Expired),
        _ => Err(format!(
            "{s:?}: expected active, suspended, revoked, withdrawn or expired"
        )),
    }
}

fn parse_format(s: &str) -> Result<Format, String> {
    match s.to_ascii_lowercase().as_str() {
        "csv" => Ok(Format::Csv),
        "json" => Ok(Format::Json),
        _ => Err(format!("{s:?}: expected csv or json")),
    }
}

/// Rows between progress lines on stderr when it is not a terminal.
const PROGRESS_EVERY: usize = 10_000;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(code) = aeogate_log::init_daemon("central", cli.json_logs) {
        return code;
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("central: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Cmd::Man { dir } = &cli.cmd {
        clap_mangen::generate_to(<Cli as clap::CommandFactory>::command(), dir)
            .with_context(|| format!("writing the manual pages to {}", dir.display()))?;
        return Ok(());
    }
    if let Cmd::Keys(KeysCmd::Generate { out }) = &cli.cmd {
        central::generate_signing_key(out)?;
        let s = central::signing::Signer::load(out)?;
        println!(
            "key_id = {}\npublic_key = {}",
            s.key_id(),
            s.public_key_hex()
        );
        return Ok(());
    }
    if let Cmd::Migrate { from, to, ca_cert } = &cli.cmd {
        return migrate(from, to, ca_cert.as_deref());
    }
    if let Cmd::RebuildIndex { store } = &cli.cmd {
        let r = central::store::rebuild_redb_index(store).with_context(|| {
            format!(
                "rebuilding the index of {} (is central stopped?)",
                store.display()
            )
        })?;
        if let Some(aside) = &r.moved_aside {
            println!("moved aside: {}", aside.display());
        }
        println!(
            "rebuilt {}: {} events read, {} index rows, programme roll-ups from the same events",
            r.index.display(),
            r.events,
            r.rows
        );
        return Ok(());
    }
    let cfg = Config::load(&cli.config)?;
    let central = Central::open(&cfg)?;
    match cli.cmd {
        Cmd::Serve => serve(central, cfg),
        Cmd::Agent(AgentCmd::Add { gate, port, cert }) => {
            let fp = match cert.as_deref() {
                Some(p) if p.as_os_str() == "-" => Some(stdin_cert_fingerprint()?),
                Some(p) => Some(central::server::pem_cert_fingerprint(p)?),
                None => None,
            };
            let token = central.issue_agent_token_with_cert(&gate, &port, fp)?;
            eprintln!("token for gate {gate} (port {port}); it is shown only this once:");
            println!("{token}");
            Ok(())
        }
        Cmd::Agent(AgentCmd::Revoke { gate, cert, actor }) => {
            let fp = match cert.as_deref() {
                Some(p) if p.as_os_str() == "-" => Some(stdin_cert_fingerprint()?),
                Some(p) => Some(central::server::pem_cert_fingerprint(p)?),
                None => None,
            };
            let n = central.revoke_agent(&gate, fp.as_deref(), &actor)?;
            println!("gate {gate}: {n} token(s) revoked");
            Ok(())
        }
        Cmd::Agent(AgentCmd::Rotate { gate, grace, actor }) => {
            let (token, n) = central.rotate_agent(&gate, grace, &actor)?;
            eprintln!(
                "new token for gate {gate}; {n} old token(s) work for {grace:#} more. \
                 It is shown only this once:"
            );
            println!("{token}");
            Ok(())
        }
        Cmd::Registry(RegistryCmd::Import {
            file,
            kind,
            format,
            actor,
        }) => import(&central, &file, kind, format, &actor),
        Cmd::Registry(RegistryCmd::SetStatus {
            operator,
            status,
            reason,
            actor,
        }) => {
            let seq = central.set_status(&operator, status, &reason, &actor)?;
            println!("{operator} is {} (seq {seq})", status.as_str());
            Ok(())
        }
        Cmd::User(UserCmd::Add { name, role }) => {
            let pw = read_password(&format!("password for {name}: "))?;
            central.add_user(&name, &pw, &role)?;
            println!("user {name} added (role {role})");
            Ok(())
        }
        Cmd::User(UserCmd::Disable { name, actor }) => {
            central.set_user_disabled(&name, true, &actor)?;
            println!("user {name} disabled");
            Ok(())
        }
        Cmd::User(UserCmd::Enable { name, actor }) => {
            central.set_user_disabled(&name, false, &actor)?;
            println!("user {name} enabled");
            Ok(())
        }
        Cmd::User(UserCmd::SetRole { name, role, actor }) => {
            central.set_user_role(&name, &role, &actor)?;
            println!("user {name} now has role {role}");
            Ok(())
        }
        Cmd::Export(cmd) => export(&central, &cmd),
        Cmd::Keys(_) | Cmd::Man { .. } | Cmd::Migrate { .. } | Cmd::RebuildIndex { .. } => Ok(()),
    }
}

/// `central migrate`: copies, verifies, prints what it copied; fails on any difference.
fn migrate(
    from: &std::path::Path,
    to: &str,
    ca_cert: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    if !from.exists() {
        anyhow::bail!(
            "{} does not exist (the redb store to copy from)",
            from.display()
        );
    }
    let url = central::config::PgUrl::parse(to).map_err(|e| anyhow::anyhow!("--to: {e}"))?;
    let source = central::store::RedbStore::open(from)
        .with_context(|| format!("opening the redb store {}", from.display()))?;
    let target = central::store::PgStore::open_with(url.expose(), ca_cert)
        .with_context(|| format!("opening the PostgreSQL database {url:?}"))?;
    let report = central::store::copy::copy(&source, &target)
        .context("copying (run the same command again to resume)")?;
    for (kind, n) in &report.copied {
        let t = report
            .target
            .get(kind)
            .map_or("-".to_owned(), u64::to_string);
        println!("{kind:<18} {n:>10} copied {t:>10} in the target");
    }
    if report.differences.is_empty() {
        println!(
            "verified: counts, chain heads, summary, programme roll-ups and registry head are equal"
        );
        Ok(())
    } else {
        for d in &report.differences {
            eprintln!("difference: {d}");
        }
        anyhow::bail!(
            "the copy differs from the source in {} ways",
            report.differences.len()
        )
    }
}

/// The fingerprint of the first certificate in the PEM text on standard input.
fn stdin_cert_fingerprint() -> anyhow::Result<String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut pem = Vec::new();
    std::io::stdin()
        .read_to_end(&mut pem)
        .context("reading the certificate from standard input")?;
    let cert = CertificateDer::pem_slice_iter(&pem)
        .next()
        .context("standard input holds no certificate")?
        .context("standard input holds a malformed certificate")?;
    Ok(central::auth::cert_fingerprint(&cert))
}

/// The password: prompted for without echo when standard input is a terminal, else the
/// first line of standard input.
fn read_password(prompt: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return rpassword::prompt_password(prompt).context("reading the password");
    }
    let mut pw = String::new();
    stdin
        .lock()
        .read_line(&mut pw)
        .context("reading the password")?;
    Ok(pw.trim_end_matches(['\r', '\n']).to_owned())
}

/// Progress of an import on standard error: a bar (spinner, rows, rate) on a terminal,
/// otherwise a plain line every [`PROGRESS_EVERY`] rows.
struct ImportProgress {
    bar: Option<indicatif::ProgressBar>,
    name: String,
}

impl ImportProgress {
    fn new(name: String) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                None,
                indicatif::ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{spinner} {msg}: {pos} rows read ({per_sec})",
            ) {
                bar.set_style(style);
            }
            bar.set_message(name.clone());
            bar
        });
        Self { bar, name }
    }

    fn row(&self, n: usize) {
        match &self.bar {
            Some(bar) => bar.set_position(n as u64),
            None if n.is_multiple_of(PROGRESS_EVERY) => {
                eprintln!("{}: {n} rows read", self.name);
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn import(
    central: &Central,
    file: &Path,
    kind: Option<ImportKind>,
    format: Option<Format>,
    actor: &str,
) -> anyhow::Result<()> {
    let stdin = file.as_os_str() == "-";
    let name = if stdin {
        "<stdin>".to_owned()
    } else {
        file.display().to_string()
    };
    let progress = ImportProgress::new(name.clone());
    let mut on_row = |n: usize| progress.row(n);
    let report = if stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the import from standard input")?;
        let format = format.unwrap_or_else(|| {
            if text.trim_start().starts_with(['[', '{']) {
                Format::Json
            } else {
                Format::Csv
            }
        });
        central
            .import_text(&text, format, kind, actor, &mut on_row)
            .context("importing from standard input")
    } else {
        match format {
            Some(format) => {
                let text =
                    std::fs::read_to_string(file).with_context(|| format!("reading {name}"))?;
                central
                    .import_text(&text, format, kind, actor, &mut on_row)
                    .with_context(|| format!("importing {name}"))
            }
            None => central
                .import_file(file, kind, actor, &mut on_row)
                .map_err(anyhow::Error::from),
        }
    };
    progress.finish();
    let r = report?;
    for e in &r.errors {
        eprintln!("{name}: {e}");
    }
    println!(
        "{name}: {} rows, {} imported, {} refused; registry at seq {}",
        r.rows,
        r.imported,
        r.errors.len(),
        r.last_seq
    );
    if r.imported == 0 && !r.errors.is_empty() {
        bail!("no row of {name} could be imported");
    }
    if !r.errors.is_empty() {
        bail!(
            "{} of {} rows of {name} were refused (the other rows were imported)",
            r.errors.len(),
            r.rows
        );
    }
    Ok(())
}

fn export(central: &Central, cmd: &ExportCmd) -> anyhow::Result<()> {
    use central::export::{self, ExportQuery};
    use std::io::Write as _;
    let (args, epcis) = match cmd {
        ExportCmd::Epcis(a) => (a, true),
        ExportCmd::Csv(a) => (a, false),
    };
    let to = args.to.unwrap_or_else(jiff::Timestamp::now);
    let from = match args.from {
        Some(f) => f,
        None => to.checked_sub(jiff::SignedDuration::from_hours(24))?,
    };
    let q = ExportQuery {
        gate: args.gate.clone(),
        from: Some(from),
        to: Some(to),
    };
    let events = central.export_events(&q)?;
    let mut out: Box<dyn std::io::Write> = match &args.out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    if epcis {
        let doc = export::epcis_document(&events, &central.config().export, jiff::Timestamp::now());
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
    } else {
        export::write_csv(&events, &mut out)?;
    }
    out.flush().context("writing the export")?;
    eprintln!(
        "{} decided transactions from {from} to {to}{}",
        events.len(),
        args.out
            .as_ref()
            .map(|p| format!(" written to {}", p.display()))
            .unwrap_or_default()
    );
    Ok(())
}

fn serve(central: Central, cfg: Config) -> anyhow::Result<()> {
    // What a central killed with snapshot files on disk left behind; a folder in use by
    // another running instance is kept.
    match central.clear_dead_snapshots() {
        Ok(c) if !c.removed.is_empty() => tracing::info!(
            removed = c.removed.len(),
            in_use = c.in_use,
            "removed the snapshot folders of centrals that no longer run"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not clear old snapshot folders"),
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        central::api::install_metrics_recorder()?;
        let shutdown = CancellationToken::new();
        central::server::cancel_on_signals(shutdown.clone())
            .context("installing the SIGTERM/SIGINT handlers")?;
        central::serve(central, cfg, shutdown).await
    })
}
