//! The aeogate edge agent daemon.
//!
//! `edge-agent run --config FILE` runs until SIGINT or SIGTERM; `edge-agent check-config
//! FILE` validates a configuration and prints `OK` or the error with its key and line;
//! `edge-agent user add NAME --role ROLE [--lang es] --config FILE` creates a console
//! account (password from the first line of standard input) in the store of a stopped
//! agent, and `edge-agent user list --config FILE` lists them.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use edge_agent::config::Config;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// aeogate edge agent: reads lane hardware, decides lanes, forwards events to central.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Log as JSON lines (for a log collector) instead of text.
    #[arg(long, global = true)]
    json_logs: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent.
    Run {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file and exit (status 1 when invalid).
    CheckConfig {
        /// Configuration file (TOML).
        file: PathBuf,
    },
    /// Console accounts (run while the agent is stopped: the store is one process's).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create or replace an account; the password is read from the first line of stdin.
    Add {
        /// Login name (letters, digits, '.', '_', '-').
        name: String,
        /// officer, supervisor or operator.
        #[arg(long)]
        role: String,
        /// Screen language: en, es or pt.
        #[arg(long, default_value = "en")]
        lang: String,
        /// The agent's configuration file (for the store path and gate).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// List accounts (name, role, language).
    List {
        /// The agent's configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn user_command(cmd: UserCommand) -> anyhow::Result<()> {
    use edge_agent::console::{Role, Users};
    match cmd {
        UserCommand::Add {
            name,
            role,
            lang,
            config,
        } => {
            let cfg = Config::load(&config)?;
            let role = Role::parse(&role)?;
            let lang = protocol::i18n::Lang::parse(&lang)
                .with_context(|| format!("language {lang:?}: expected en, es or pt"))?;
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                eprint!("password for {name}: ");
            }
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("reading the password from stdin")?;
            let password = password.trim_end_matches(['\r', '\n']);
            edge_agent::console::add_user_to_store_file(
                &cfg.store.path,
                cfg.gate.id.clone(),
                &name,
                password,
                role,
                lang,
            )?;
            println!("account {name} ({role}, {lang}) saved");
            Ok(())
        }
        UserCommand::List { config } => {
            let cfg = Config::load(&config)?;
            let store = edge_agent::store::Store::open(&cfg.store.path, cfg.gate.id.clone())
                .with_context(|| format!("opening the store {}", cfg.store.path.display()))?;
            for u in Users::open(&store)?.list()? {
                println!("{}\t{}\t{}", u.name, u.role, u.lang);
            }
            Ok(())
        }
    }
}

fn init_logging(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(_) => {
                println!("OK");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::User { command } => match user_command(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("edge-agent: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Run { config } => {
            init_logging(cli.json_logs);
            match run(&config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "edge agent failed");
                    eprintln!("edge-agent: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn run(path: &std::path::Path) -> anyhow::Result<()> {
    let cfg = Config::load(path)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("stopping");
            signals.cancel();
        });
        edge_agent::runtime::run(cfg, shutdown).await
    })
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
