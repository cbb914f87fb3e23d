//! The aeogate edge agent daemon.
//!
//! `edge-agent run --config FILE` runs until SIGINT or SIGTERM (SIGHUP reloads the
//! file live, `edge_agent::reload`); `edge-agent reload --config FILE` asks the running
//! agent to do so and prints its answer; `edge-agent check-config
//! FILE` validates a configuration (`-`: standard input) and prints `OK` or the error with
//! its key and line; `edge-agent user add NAME --role ROLE [--lang es] --config FILE`
//! creates a console account in the store of a stopped agent (the password is prompted
//! for without echo on a terminal, else read from the first line of standard input), and
//! `edge-agent user list --config FILE` lists them. `edge-agent man DIR` writes the
//! manual pages (roff), generated from these definitions (`packaging/man/` holds them).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use edge_agent::config::Config;
use tokio_util::sync::CancellationToken;

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
    /// Ask the running agent to reload its configuration (as SIGHUP does) and print its
    /// answer: the changes applied, or why the file was refused (key and line; exit 1).
    /// The agent is found by the control socket beside its store (`<store path>.control`).
    Reload {
        /// The configuration file to apply; also locates the agent's store. Default: the
        /// file the agent was started with, with the socket given by --socket.
        #[arg(long, short, required_unless_present = "socket")]
        config: Option<PathBuf>,
        /// The agent's control socket, when not found from --config.
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Validate a configuration file and exit (status 1 when invalid).
    CheckConfig {
        /// Configuration file (TOML); `-` reads standard input.
        file: PathBuf,
    },
    /// Write the manual pages (roff: edge-agent.1 and one per subcommand) into DIR.
    #[command(hide = true)]
    Man {
        /// An existing directory.
        dir: PathBuf,
    },
    /// Console accounts (run while the agent is stopped: the store is one process's).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create or replace an account; the password is prompted for without echo on a
    /// terminal, else read from the first line of standard input.
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
    /// Disable an account: its sessions end and it cannot log in.
    Disable {
        name: String,
        /// The agent's configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Enable a disabled account again.
    Enable {
        name: String,
        /// The agent's configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Change an account's role (officer, supervisor or operator); its sessions end.
    SetRole {
        name: String,
        #[arg(long)]
        role: String,
        /// The agent's configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// List accounts (name, role, language, and `disabled` for a disabled one).
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
            let password = read_password(&format!("password for {name}: "))?;
            let password = password.as_str();
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
        UserCommand::Disable { name, config } => {
            set_access(&config, &name, None, Some(true))?;
            println!("account {name} disabled");
            Ok(())
        }
        UserCommand::Enable { name, config } => {
            set_access(&config, &name, None, Some(false))?;
            println!("account {name} enabled");
            Ok(())
        }
        UserCommand::SetRole { name, role, config } => {
            let role = Role::parse(&role)?;
            set_access(&config, &name, Some(role), None)?;
            println!("account {name} now has role {role}");
            Ok(())
        }
        UserCommand::List { config } => {
            let cfg = Config::load(&config)?;
            let store = edge_agent::store::Store::open(&cfg.store.path, cfg.gate.id.clone())
                .with_context(|| format!("opening the store {}", cfg.store.path.display()))?;
            for u in Users::open(&store)?.list()? {
                let state = if u.disabled { "\tdisabled" } else { "" };
                println!("{}\t{}\t{}{state}", u.name, u.role, u.lang);
            }
            Ok(())
        }
    }
}

/// Changes an account's role or disabled state in the (stopped) agent's store.
fn set_access(
    config: &std::path::Path,
    name: &str,
    role: Option<edge_agent::console::Role>,
    disabled: Option<bool>,
) -> anyhow::Result<()> {
    let cfg = Config::load(config)?;
    let store = edge_agent::store::Store::open(&cfg.store.path, cfg.gate.id.clone())
        .with_context(|| format!("opening the store {}", cfg.store.path.display()))?;
    edge_agent::console::Users::open(&store)?.set_access(name, role, disabled)?;
    Ok(())
}

/// The password: prompted for without echo when standard input is a terminal, else the
/// first line of standard input.
fn read_password(prompt: &str) -> anyhow::Result<String> {
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return rpassword::prompt_password(prompt).context("reading the password");
    }
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .context("reading the password from stdin")?;
    Ok(password.trim_end_matches(['\r', '\n']).to_owned())
}

/// The configuration at `path`, or from standard input when `path` is `-`.
fn load_config(path: &Path) -> Result<Config, String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| format!("reading the configuration from standard input: {e}"))?;
        return Config::from_toml_str(&text, "<stdin>").map_err(|e| e.to_string());
    }
    Config::load(path).map_err(|e| e.to_string())
}

/// What `run` checks at start-up beyond the configuration file itself, so that
/// `check-config` refuses what `run` refuses: the central client (the CA file readable and
/// a PEM bundle, client certificate and key). Returns warnings that do not stop `run`: a
/// serial path that does not exist yet (the device may be plugged later; the agent retries).
fn preflight(cfg: &Config) -> Result<Vec<String>, String> {
    if let Some(c) = &cfg.central {
        edge_agent::uplink::CentralClient::new(c, &cfg.gate.id).map_err(|e| format!("{e:#}"))?;
    }
    let mut warnings = Vec::new();
    for d in &cfg.devices {
        let path = match &d.kind {
            edge_agent::config::DeviceKind::LaneBoard { path, .. }
            | edge_agent::config::DeviceKind::UhfModule { path, .. } => path,
        };
        if !path.exists() {
            warnings.push(format!(
                "device {:?}: serial path {} does not exist (yet); the agent keeps trying to open it",
                d.name,
                path.display()
            ));
        }
    }
    Ok(warnings)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match load_config(&file).and_then(|cfg| preflight(&cfg)) {
            Ok(warnings) => {
                for w in warnings {
                    eprintln!("warning: {w}");
                }
                println!("OK");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Reload { config, socket } => reload(config, socket),
        Command::User { command } => match user_command(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("edge-agent: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Man { dir } => {
            match clap_mangen::generate_to(<Cli as clap::CommandFactory>::command(), &dir) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!(
                        "edge-agent: writing the manual pages to {}: {e}",
                        dir.display()
                    );
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { config } => {
            if let Err(code) = aeogate_log::init_daemon("edge-agent", cli.json_logs) {
                return code;
            }
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

/// `edge-agent reload`: the socket from `--socket`, or beside the store that `config`
/// names (read without validating the rest: an invalid file is for the agent to refuse,
/// with its key and line).
#[cfg(unix)]
fn reload(config: Option<PathBuf>, socket: Option<PathBuf>) -> ExitCode {
    let config = config.map(|c| std::path::absolute(&c).unwrap_or(c));
    let socket = match socket {
        Some(s) => s,
        None => match config.as_deref().map(store_path_of) {
            Some(Ok(store)) => edge_agent::reload::control_socket_path(&store),
            Some(Err(e)) => {
                eprintln!("edge-agent: {e:#}");
                return ExitCode::FAILURE;
            }
            None => {
                eprintln!("edge-agent: give --config or --socket");
                return ExitCode::FAILURE;
            }
        },
    };
    let answer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .and_then(|rt| rt.block_on(edge_agent::reload::request_reload(&socket, config)));
    match answer {
        Ok(outcome) => {
            let text = outcome.to_text();
            if outcome.is_refused() {
                eprintln!("{text}");
                ExitCode::FAILURE
            } else {
                println!("{text}");
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("edge-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(unix))]
fn reload(_config: Option<PathBuf>, _socket: Option<PathBuf>) -> ExitCode {
    eprintln!("edge-agent: reload needs Unix sockets; restart the agent instead");
    ExitCode::FAILURE
}

/// `[store] path` of a configuration file, read without validating anything else.
#[cfg(unix)]
fn store_path_of(config: &Path) -> anyhow::Result<PathBuf> {
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("cannot read {}", config.display()))?;
    let value: toml::Table = toml::from_str(&text)
        .with_context(|| format!("{}: not TOML; give --socket", config.display()))?;
    Ok(PathBuf::from(
        value
            .get("store")
            .and_then(|s| s.get("path"))
            .and_then(toml::Value::as_str)
            .unwrap_or(edge_agent::config::DEFAULT_STORE_PATH),
    ))
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
        edge_agent::runtime::run_from(cfg, path.to_path_buf(), shutdown).await
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
