//! aeogate central.
use std::io::{BufRead as _, IsTerminal as _};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use central::registry::ImportKind;
use central::{Central, Config};
use clap::{Parser, Subcommand};
use protocol::operator::OperatorId;
use protocol::schema::{AeoStatus, GateId};
use tokio_util::sync::CancellationToken;

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
        /// The agent's client certificate (PEM): the token is then accepted only over TLS
        /// connections presenting this certificate (needs `[tls] client_ca_pem`).
        #[arg(long)]
        cert: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum RegistryCmd {
    /// Import operators, MRAs or consignments from CSV (`.csv`) or JSON.
    Import {
        file: PathBuf,
        #[arg(long)]
        kind: Option<ImportKind>,
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
    /// Add a staff user; the password is read from standard input.
    Add {
        name: String,
        /// `analyst` (views, works cases) or `admin` (also changes the registry).
        #[arg(long, default_value = "analyst")]
        role: String,
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

/// Rows between progress lines on stderr.
const PROGRESS_EVERY: usize = 10_000;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
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
    let cfg = Config::load(&cli.config)?;
    let central = Central::open(&cfg)?;
    match cli.cmd {
        Cmd::Serve => serve(central, cfg),
        Cmd::Agent(AgentCmd::Add { gate, port, cert }) => {
            let fp = cert
                .as_deref()
                .map(central::server::pem_cert_fingerprint)
                .transpose()?;
            let token = central.issue_agent_token_with_cert(&gate, &port, fp)?;
            eprintln!("token for gate {gate} (port {port}); it is shown only this once:");
            println!("{token}");
            Ok(())
        }
        Cmd::Registry(RegistryCmd::Import { file, kind, actor }) => {
            let mut progress = |n: usize| {
                if n.is_multiple_of(PROGRESS_EVERY) {
                    eprintln!("{}: {n} rows read", file.display());
                }
            };
            let r = central.import_file(&file, kind, &actor, &mut progress)?;
            for e in &r.errors {
                eprintln!("{}: {e}", file.display());
            }
            println!(
                "{}: {} rows, {} imported, {} refused; registry at seq {}",
                file.display(),
                r.rows,
                r.imported,
                r.errors.len(),
                r.last_seq
            );
            if r.imported == 0 && !r.errors.is_empty() {
                bail!("no row of {} could be imported", file.display());
            }
            Ok(())
        }
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
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprint!("password for {name}: ");
            }
            let mut pw = String::new();
            stdin
                .lock()
                .read_line(&mut pw)
                .context("reading the password")?;
            central.add_user(&name, pw.trim_end_matches(['\r', '\n']), &role)?;
            println!("user {name} added (role {role})");
            Ok(())
        }
        Cmd::Export(cmd) => export(&central, &cmd),
        Cmd::Keys(_) => Ok(()),
    }
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
    let events = export::collect(central.store().as_ref(), &q)?;
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
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        central::api::install_metrics_recorder()?;
        let shutdown = CancellationToken::new();
        central::server::cancel_on_signals(shutdown.clone())
            .context("installing the SIGTERM/SIGINT handlers")?;
        central::serve(central, cfg, shutdown).await
    })
}
