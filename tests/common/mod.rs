//! Shared parts of the delivery fault tests (docs/delivery.md, "How the fault tests check
//! the contract"): the real `central` and `edge-agent` binaries as child processes on
//! loopback, a load generator over the agent's console API, a minimal HTTP/1.1 server and
//! client for stand-ins and proxies, and the ledger that compares what an agent journaled
//! with what central stored.
//!
//! Every wait has a deadline ([`STEP`] unless said otherwise); every child process is
//! killed when its handle is dropped, so a failing assertion leaves nothing running.
#![allow(dead_code)]

pub mod pki;
pub mod process;
pub mod stand_in;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use central::model::{AlertKind, EventQuery, StoredEvent};
use edge_agent::store::Store;
use protocol::schema::{EventBody, GateId, JournalEntry};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// The default bound of one wait.
pub const STEP: Duration = Duration::from_secs(20);
/// The gate every test agent is.
pub const GATE: &str = "PORT1-G1";
/// The port of entry (the benchmark data's port, whose consignments the tests use).
pub const PORT: &str = aeogate::bench::data::PORT;
/// The staff account the tests create at central to read its query API.
pub const STAFF: (&str, &str) = ("fault-tests", "fault-tests-password-1");
/// Bearer token of the console session stored in every [`AgentSite`] before it starts
/// (the agent's API needs a session).
pub const AGENT_TOKEN: &str = "fault-tests-agent-console-session-token-01";

/// The path of a workspace binary next to `aeogate` in the target directory.
///
/// # Panics
/// When it is not built (`cargo test --workspace` builds every workspace binary first;
/// `cargo test -p aeogate` alone does not).
pub fn binary(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_aeogate")).with_file_name(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace --bins` (or `cargo test --workspace`) before these tests",
        path.display()
    );
    path
}

/// A free TCP port on 127.0.0.1 (bound, read back, released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

fn gate() -> GateId {
    GateId::parse(GATE).expect("valid gate id")
}

/// Waits until something listens on `port`, failing early (with the log) when `child`
/// exits first.
async fn wait_listening(port: u16, child: &mut Child, log: &Path, what: &str) {
    let deadline = Instant::now() + STEP;
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{what} exited with {status} before listening on {port}:\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port} within {STEP:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Starts the workspace binary `name` with `args` (logging at `warn` into `log`, no stdin or
/// stdout) and waits until it listens on `port`.
async fn start_logged(name: &str, args: &[&OsStr], log: &Path, port: u16) -> Child {
    start_wrapped(FakeClock::None, "warn", name, args, log, port).await
}

/// Debian's libfaketime for multi-threaded programs (package `libfaketime`, pulled in by
/// `faketime`).
fn libfaketime() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("faketime/libfaketimeMT.so.1"))
        .find(|p| p.exists());
    found.expect("libfaketime is not installed: apt-get install faketime")
}

/// How a started process's clock is moved (Debian's libfaketime, preloaded).
#[derive(Debug, Clone, Copy)]
pub enum FakeClock<'a> {
    /// The clock as it is.
    None,
    /// Every clock moved by an offset (libfaketime's `FAKETIME` syntax, e.g. `+2d`).
    Offset(&'a str),
    /// The wall clock moved by the offset written in this file (same syntax), read again
    /// every second, so a test steps the clock by rewriting it; the monotonic clock is
    /// left as it is, as on a host whose clock is set back or forward.
    Stepped(&'a Path),
}

/// As [`start_logged`], with Debian's libfaketime preloaded as `faketime` says.
/// Preloaded rather than through the `faketime` wrapper, so the child is the binary
/// itself and signals reach it.
async fn start_wrapped(
    faketime: FakeClock<'_>,
    log_filter: &str,
    name: &str,
    args: &[&OsStr],
    log: &Path,
    port: u16,
) -> Child {
    let mut command = Command::new(binary(name));
    match faketime {
        FakeClock::None => {}
        FakeClock::Offset(offset) => {
            command
                .env("LD_PRELOAD", libfaketime())
                .env("FAKETIME", offset);
        }
        FakeClock::Stepped(file) => {
            command
                .env("LD_PRELOAD", libfaketime())
                .env("FAKETIME_TIMESTAMP_FILE", file)
                .env("FAKETIME_CACHE_DURATION", "1")
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
    }
    let mut child = spawn_logged(command.args(args), log_filter, log)
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    wait_listening(port, &mut child, log, name).await;
    child
}

/// Spawns `command` logging at `log_filter` (`RUST_LOG`) into a new file `log`, with no
/// stdin or stdout.
pub fn spawn_logged(command: &mut Command, log_filter: &str, log: &Path) -> std::io::Result<Child> {
    command
        .env("RUST_LOG", log_filter)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("create the log file"))
        .spawn()
}

/// SIGKILL (no shutdown at all) and reap, if `child` runs.
fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Sends `signal` (a `kill` name such as `INT` or `TERM`) and waits up to `within` for the
/// exit; SIGKILL after that. Returns the status and whether it exited in time.
fn signal_and_wait(child: &mut Child, signal: &str, within: Duration) -> (ExitStatus, bool) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return (status, true);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    (child.wait().expect("wait after SIGKILL"), false)
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

// --- TLS -------------------------------------------------------------------------------

/// A private CA and central's server certificate for 127.0.0.1, as PEM files.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// Makes a CA and a server certificate for `127.0.0.1` / `localhost` in `dir`.
pub fn make_pki(dir: &Path) -> Pki {
    let ca = pki::ca("fault-test CA");
    let (cert, key) = pki::leaf(&ca, &["127.0.0.1", "localhost"], false);
    let pki = Pki {
        ca_cert: dir.join("ca.pem"),
        server_cert: dir.join("central.pem"),
        server_key: dir.join("central.key"),
    };
    std::fs::write(&pki.ca_cert, &ca.pem).expect("write ca.pem");
    std::fs::write(&pki.server_cert, cert).expect("write central.pem");
    std::fs::write(&pki.server_key, key).expect("write central.key");
    pki
}

// --- central ---------------------------------------------------------------------------

/// How central serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain HTTP, allowed on loopback by `allow_plain_http_on_loopback`.
    PlainHttp,
    /// HTTPS with a private CA the agent pins.
    Tls,
}

/// A central deployment in a directory: its configuration, store, signing key, the
/// agent token for [`GATE`], and (while running) its process.
pub struct CentralSite {
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub cfg: central::Config,
    pub port: u16,
    /// Base URL agents use (`http://…` or `https://…`).
    pub url: String,
    pub token: String,
    pub key_id: String,
    pub public_key: String,
    pub ca_cert: Option<PathBuf>,
    child: Option<Child>,
    starts: usize,
}

impl CentralSite {
    /// Creates the deployment: signing key, configuration file, the registry (benchmark
    /// operator 0, its MRA, and consignment 0 for [`PORT`]), a token for [`GATE`] and a
    /// staff user. Nothing runs yet.
    pub fn create(dir: &Path, transport: Transport) -> CentralSite {
        Self::create_on(dir, transport, None)
    }

    /// A central in `dir/central` serving over `transport`, started.
    pub async fn started(dir: &Path, transport: Transport) -> CentralSite {
        let mut c = CentralSite::create(&dir.join("central"), transport);
        c.start().await;
        c
    }

    /// As [`CentralSite::create`], storing in the PostgreSQL database `pg_url` (`[store]
    /// url`) instead of a redb file when given.
    pub fn create_on(dir: &Path, transport: Transport, pg_url: Option<&str>) -> CentralSite {
        std::fs::create_dir_all(dir).expect("central dir");
        let port = free_port();
        let key = dir.join("registry-signing.key");
        central::generate_signing_key(&key).expect("signing key");
        let listen: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut cfg = central::Config::new(listen, dir.join("central.redb"), key.clone());
        cfg.stale_after = Duration::from_secs(5);
        cfg.argon2_m_cost_kib = 1024;
        cfg.argon2_t_cost = 1;
        let mut text = format!(
            "listen = \"{listen}\"\nstore_path = {}\nsigning_key_path = {}\nstale_after = \"5s\"\nargon2_m_cost_kib = 1024\nargon2_t_cost = 1\n",
            toml_str(&cfg.store_path.to_string_lossy()),
            toml_str(&key.to_string_lossy()),
        );
        let (url, ca_cert) = match transport {
            Transport::PlainHttp => {
                cfg.allow_plain_http_on_loopback = true;
                text.push_str("allow_plain_http_on_loopback = true\n");
                (format!("http://127.0.0.1:{port}"), None)
            }
            Transport::Tls => {
                let pki = make_pki(dir);
                text.push_str(&format!(
                    "\n[tls]\ncert_pem = {}\nkey_pem = {}\n",
                    toml_str(&pki.server_cert.to_string_lossy()),
                    toml_str(&pki.server_key.to_string_lossy())
                ));
                cfg.tls = Some(central::TlsConfig {
                    cert_pem: pki.server_cert,
                    key_pem: pki.server_key,
                    client_ca_pem: None,
                });
                (format!("https://127.0.0.1:{port}"), Some(pki.ca_cert))
            }
        };
        if let Some(url) = pg_url {
            // One store: the database instead of the file.
            text = text.replace(
                &format!(
                    "store_path = {}\n",
                    toml_str(&cfg.store_path.to_string_lossy())
                ),
                "",
            );
            text.push_str(&format!("\n[store]\nurl = {}\n", toml_str(url)));
            cfg.store = Some(central::config::StoreConfig {
                url: central::config::PgUrl::parse(url).expect("PostgreSQL URL"),
                retention_months: None,
                ca_cert: None,
            });
        }
        let config_path = dir.join("central.toml");
        std::fs::write(&config_path, text).expect("write central.toml");
        let (token, key_id, public_key) = {
            let hub = central::Central::open(&cfg).expect("central store opens");
            use aeogate::bench::data;
            hub.import_mras(vec![data::mra()], "fault-test")
                .expect("import MRA");
            hub.import_records(vec![data::operator(0).expect("operator")], "fault-test")
                .expect("import operator");
            hub.import_consignments(
                vec![data::consignment(0, 1).expect("consignment")],
                "fault-test",
            )
            .expect("import consignment");
            hub.add_user(STAFF.0, STAFF.1, "analyst")
                .expect("staff user");
            (
                hub.issue_agent_token(&gate(), PORT).expect("agent token"),
                hub.key_id(),
                hub.public_key_hex(),
            )
        };
        CentralSite {
            dir: dir.to_path_buf(),
            config_path,
            cfg,
            port,
            url,
            token,
            key_id,
            public_key,
            ca_cert,
            child: None,
            starts: 0,
        }
    }

    /// Another instance of this deployment in `dir`: the same configuration, store and
    /// signing key, listening on a port of its own (several instances on one PostgreSQL
    /// database). Nothing runs yet.
    pub fn instance(&self, dir: &Path) -> CentralSite {
        std::fs::create_dir_all(dir).expect("instance dir");
        let port = free_port();
        let text = std::fs::read_to_string(&self.config_path).expect("read central.toml");
        let text = text.replace(
            &format!("listen = \"127.0.0.1:{}\"", self.port),
            &format!("listen = \"127.0.0.1:{port}\""),
        );
        let config_path = dir.join("central.toml");
        std::fs::write(&config_path, text).expect("write central.toml");
        let mut cfg = self.cfg.clone();
        cfg.listen = ([127, 0, 0, 1], port).into();
        CentralSite {
            dir: dir.to_path_buf(),
            config_path,
            cfg,
            port,
            url: self
                .url
                .replace(&format!(":{}", self.port), &format!(":{port}")),
            token: self.token.clone(),
            key_id: self.key_id.clone(),
            public_key: self.public_key.clone(),
            ca_cert: self.ca_cert.clone(),
            child: None,
            starts: 0,
        }
    }

    /// Starts `central serve` and waits until it listens.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "central already running");
        self.starts += 1;
        let log = self.dir.join(format!("central-{}.log", self.starts));
        let args = [
            OsStr::new("--config"),
            self.config_path.as_os_str(),
            OsStr::new("serve"),
        ];
        self.child = Some(start_logged("central", &args, &log, self.port).await);
    }

    /// SIGKILL: no shutdown at all.
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }

    /// SIGINT (what `central serve` stops on) and a bounded wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let (_, clean) = signal_and_wait(&mut c, "INT", Duration::from_secs(15));
            assert!(clean, "central did not stop within 15 s of SIGINT");
        }
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Opens the stopped central's store with the `central` library.
    pub fn open(&self) -> central::Central {
        assert!(
            self.child.is_none(),
            "stop central before opening its store"
        );
        central::Central::open(&self.cfg).expect("central store opens")
    }

    /// A staff session on the running central (HTTP API).
    pub async fn staff(&self) -> StaffClient {
        let http = http_client(self.ca_cert.as_deref());
        let token = login(&http, &self.url, STAFF).await;
        StaffClient {
            http,
            base: self.url.clone(),
            token,
        }
    }
}

impl Drop for CentralSite {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A reqwest client trusting `ca` (when given), ring provider installed.
pub fn http_client(ca: Option<&Path>) -> reqwest::Client {
    edge_agent::uplink::install_crypto_provider();
    let mut b = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).expect("read CA");
        b = b.tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("CA PEM")]);
    }
    b.build().expect("HTTP client")
}

/// Central's staff API, logged in.
pub struct StaffClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl StaffClient {
    /// `GET path` as the staff user, its JSON body.
    pub async fn get_json(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("staff request")
            .json()
            .await
            .expect("staff JSON")
    }

    /// `GET /api/v1/gates`, the entry for [`GATE`].
    pub async fn gate(&self) -> Option<Value> {
        let r = self
            .http
            .get(format!("{}/api/v1/gates", self.base))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let all: Value = r.json().await.ok()?;
        all.as_array()?.iter().find(|g| g["gate"] == GATE).cloned()
    }

    /// Waits (at most [`STEP`]) until the entry for [`GATE`] satisfies `f`, and returns it;
    /// panics saying what did not happen (`what`) with the last entry.
    pub async fn wait_gate(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + STEP;
        loop {
            let gate = self.gate().await.unwrap_or_default();
            if f(&gate) {
                return gate;
            }
            assert!(
                Instant::now() < deadline,
                "{what} in {STEP:?}; last gate status: {gate}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (at most [`STEP`]) until the gate's counter `field` is at least `n`, as
    /// [`wait_gate`](Self::wait_gate).
    pub async fn wait_gate_count(&self, field: &str, n: u64, what: &str) -> Value {
        self.wait_gate(what, |g| g[field].as_u64().unwrap_or(0) >= n)
            .await
    }

    /// Waits until a heartbeat sent after `since` reports no backlog and central has
    /// stored as many events as that heartbeat says the agent journaled.
    pub async fn wait_drained(&self, since: jiff::Timestamp, within: Duration) {
        // A soak leaves a larger backlog; allow it proportionally more time.
        let within = within.max(Duration::from_secs(
            std::env::var("AEOGATE_SOAK_CYCLES")
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0),
        ));
        let deadline = Instant::now() + within;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            if let Some(g) = self.gate().await {
                let hb = &g["last_heartbeat"]["heartbeat"];
                let at: Option<jiff::Timestamp> = hb["at"].as_str().and_then(|s| s.parse().ok());
                if at.is_some_and(|a| a > since)
                    && hb["backlog"] == 0
                    && g["events_stored"] == hb["journal_head"]
                    && g["acked_through"] == hb["journal_head"]
                {
                    return;
                }
                last = g;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "the agent's journal did not drain to central within {within:?}; last gate status: {last}"
        );
    }
}

// --- edge agent ------------------------------------------------------------------------

/// One lane of a test agent.
#[derive(Debug, Clone)]
pub struct LaneSpec {
    pub id: String,
    pub presence_loop: bool,
    /// A lane board on this serial path (a virtual board's `tty_link`).
    pub board: Option<PathBuf>,
}

impl LaneSpec {
    /// A lane without a loop or devices, fed by the console's manual entries; its
    /// transactions close after 500 ms without reads, or 1 s after opening.
    pub fn manual(id: &str) -> LaneSpec {
        LaneSpec {
            id: id.into(),
            presence_loop: false,
            board: None,
        }
    }
}

/// What an agent's configuration says about central.
#[derive(Debug, Clone)]
pub struct CentralLink {
    pub url: String,
    /// Further instances after `url` (`central.urls`); empty for one central.
    pub more: Vec<String>,
    pub token: String,
    pub key_id: String,
    pub public_key: String,
    pub ca_cert: Option<PathBuf>,
}

impl CentralLink {
    pub fn to(site: &CentralSite) -> CentralLink {
        CentralLink {
            url: site.url.clone(),
            more: Vec::new(),
            token: site.token.clone(),
            key_id: site.key_id.clone(),
            public_key: site.public_key.clone(),
            ca_cert: site.ca_cert.clone(),
        }
    }

    /// Also `site`, another instance on the same database (failover, `central.urls`).
    pub fn or(mut self, site: &CentralSite) -> CentralLink {
        self.more.push(site.url.clone());
        self
    }

    /// The same central, reached through `url` (a proxy).
    pub fn via(mut self, url: &str) -> CentralLink {
        self.url = url.into();
        self
    }
}

/// An edge agent deployment in a directory: configuration, store and (while running)
/// the `edge-agent` process.
pub struct AgentSite {
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub store_path: PathBuf,
    pub console_port: u16,
    /// `http://127.0.0.1:<console>`.
    pub base: String,
    /// The agent's `RUST_LOG` (`warn` unless a test needs more in its logs).
    pub log_filter: &'static str,
    child: Option<Child>,
    starts: usize,
}

impl AgentSite {
    /// Writes the configuration. `staleness` is the policy's `staleness_bound`.
    pub fn create(
        dir: &Path,
        link: &CentralLink,
        lanes: &[LaneSpec],
        staleness: &str,
    ) -> AgentSite {
        std::fs::create_dir_all(dir).expect("agent dir");
        let console_port = free_port();
        let store_path = dir.join("agent.redb");
        let mut t = format!("[gate]\nid = \"{GATE}\"\nport = \"{PORT}\"\n\n");
        for l in lanes {
            t.push_str(&format!(
                "[[lanes]]\nid = \"{id}\"\npresence_loop = {pl}\nquiet_close = \"500ms\"\ntransaction_timeout = \"{tt}\"\n[lanes.routes]\nfast = \"{id} priority\"\nstandard = \"{id} standard\"\ninspect = \"{id} inspection\"\n\n",
                id = l.id,
                pl = l.presence_loop,
                tt = if l.presence_loop { "60s" } else { "1s" },
            ));
        }
        for l in lanes {
            if let Some(path) = &l.board {
                t.push_str(&format!(
                    "[[devices]]\nname = \"board-{id}\"\nlane = \"{id}\"\nkind = \"lane_board\"\npath = {p}\nsilence_timeout = \"2s\"\nreopen_backoff_max = \"1s\"\n\n",
                    id = l.id,
                    p = toml_str(&path.to_string_lossy()),
                ));
            }
        }
        let urls = if link.more.is_empty() {
            format!("url = {}", toml_str(&link.url))
        } else {
            let all: Vec<String> = std::iter::once(&link.url)
                .chain(&link.more)
                .map(|u| toml_str(u))
                .collect();
            format!("urls = [{}]", all.join(", "))
        };
        t.push_str(&format!(
            "[store]\npath = {}\n\n[central]\n{urls}\ntoken = {}\n",
            toml_str(&store_path.to_string_lossy()),
            toml_str(&link.token),
        ));
        if let Some(ca) = &link.ca_cert {
            t.push_str(&format!("ca_cert = {}\n", toml_str(&ca.to_string_lossy())));
        }
        t.push_str(&format!(
            "uplink_batch = 200\nheartbeat_every = \"250ms\"\npoll_wait = \"1s\"\n\n[[central.registry_keys]]\nkey_id = {}\npublic_key = {}\n\n",
            toml_str(&link.key_id),
            toml_str(&link.public_key),
        ));
        // Random selection practically off, so a clean AEO truck is FAST unless a rule says
        // otherwise (the rates must be strictly between 0 and 1).
        t.push_str(&format!(
            "[policy]\nstaleness_bound = \"{staleness}\"\nrandom_rate_aeo = 0.000001\nrandom_rate_other = 0.000001\nrandom_key = \"fault-test-random-key\"\n\n[console]\nbind = \"127.0.0.1:{console_port}\"\n"
        ));
        let config_path = dir.join("agent.toml");
        std::fs::write(&config_path, t).expect("write agent.toml");
        edge_agent::console::add_session_to_store_file(
            &store_path,
            gate(),
            "fault-tests",
            edge_agent::console::Role::Officer,
            AGENT_TOKEN,
            Duration::from_secs(24 * 3600),
        )
        .expect("console session stored");
        AgentSite {
            dir: dir.to_path_buf(),
            config_path,
            store_path,
            console_port,
            base: format!("http://127.0.0.1:{console_port}"),
            child: None,
            log_filter: "warn",
            starts: 0,
        }
    }

    /// Sets `central.uplink_batch` (200, the default, unless changed).
    pub fn set_uplink_batch(&self, n: usize) {
        let text = std::fs::read_to_string(&self.config_path).expect("read agent.toml");
        let text = text.replace("uplink_batch = 200\n", &format!("uplink_batch = {n}\n"));
        std::fs::write(&self.config_path, text).expect("write agent.toml");
    }

    /// Starts `edge-agent run` and waits for its console.
    pub async fn start(&mut self) {
        self.start_run(FakeClock::None).await;
    }

    /// Starts `edge-agent run` under libfaketime with its clocks moved by `offset`
    /// (libfaketime's `FAKETIME` syntax, e.g. `+2d`; Debian package `faketime`).
    pub async fn start_with_clock_offset(&mut self, offset: &str) {
        self.start_run(FakeClock::Offset(offset)).await;
    }

    /// Starts `edge-agent run` with its wall clock moved by the offset in `file`
    /// ([`FakeClock::Stepped`]): rewriting the file steps the agent's clock.
    pub async fn start_with_clock_file(&mut self, file: &Path) {
        self.start_run(FakeClock::Stepped(file)).await;
    }

    /// `edge-agent run` logging to the next `agent-N.log`, its clocks moved by `faketime`.
    async fn start_run(&mut self, faketime: FakeClock<'_>) {
        assert!(self.child.is_none(), "agent already running");
        self.starts += 1;
        let log = self.dir.join(format!("agent-{}.log", self.starts));
        let args = [
            OsStr::new("run"),
            OsStr::new("--config"),
            self.config_path.as_os_str(),
        ];
        self.child = Some(
            start_wrapped(
                faketime,
                self.log_filter,
                "edge-agent",
                &args,
                &log,
                self.console_port,
            )
            .await,
        );
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }

    /// The running agent's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM and a bounded wait for a clean exit.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let (status, clean) = signal_and_wait(&mut c, "TERM", Duration::from_secs(20));
            assert!(
                clean && status.success(),
                "agent did not stop cleanly on SIGTERM: {status}"
            );
        }
    }

    /// The stopped agent's whole journal, after checking its hash chain.
    pub fn journal(&self) -> Vec<JournalEntry> {
        assert!(
            self.child.is_none(),
            "stop the agent before reading its store"
        );
        let store = Store::open(&self.store_path, gate()).expect("agent store opens");
        let checked = store.verify_chain().expect("agent hash chain intact");
        let head = store.journal_head();
        assert_eq!(checked, head, "every journal entry is checked");
        let mut out = Vec::new();
        let mut from = 1;
        while from <= head {
            let page = store.entries(from, 1_000).expect("read journal");
            let Some(last) = page.last() else { break };
            from = last.seq + 1;
            out.extend(page);
        }
        out
    }

    /// The stopped agent's store.
    pub fn store(&self) -> Store {
        assert!(
            self.child.is_none(),
            "stop the agent before opening its store"
        );
        Store::open(&self.store_path, gate()).expect("agent store opens")
    }

    /// A request to the agent's console API with session `token`, `body` sent as JSON.
    pub async fn send_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> reqwest::Result<reqwest::Response> {
        let mut request = http_client(None)
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .timeout(Duration::from_secs(5));
        if let Some(b) = body {
            request = request.json(b);
        }
        request.send().await
    }

    /// [`AgentSite::send_as`] with the stored session.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> reqwest::Result<reqwest::Response> {
        self.send_as(AGENT_TOKEN, method, path, body).await
    }

    /// A request as session `token`: the status and the JSON body (`Null` if none).
    async fn answer_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let r = self.send_as(token, method, path, body).await;
        let r = r.expect("console request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `POST path` with `body` as session `token`: the status and the JSON body.
    pub async fn post_as(&self, token: &str, path: &str, body: &Value) -> (u16, Value) {
        self.answer_as(token, reqwest::Method::POST, path, Some(body))
            .await
    }

    /// `GET path` on the console API: the status and the JSON body (`Null` if none).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.answer_as(AGENT_TOKEN, reqwest::Method::GET, path, None)
            .await
    }

    /// `POST path` with `body` on the console API: the status and the JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.answer_as(AGENT_TOKEN, reqwest::Method::POST, path, Some(body))
            .await
    }

    /// An officer's manual entry of a `kind` ("CONTAINER", "SEAL") `number` on `lane`: the
    /// answer's status and body.
    pub async fn manual_entry(&self, lane: &str, kind: &str, number: &str) -> (u16, Value) {
        let body = json!({"action": "MANUAL_ENTRY", "value": {"kind": kind, "number": number}});
        self.post(&format!("/api/v1/lanes/{lane}/actions"), &body)
            .await
    }

    /// Keys in a clean AEO truck on `lane`: benchmark container 0 and its declared seal.
    pub async fn key_in_clean_truck(&self, lane: &str) {
        for (kind, number) in [
            (
                "CONTAINER",
                aeogate::bench::data::container(0).expect("c0").to_string(),
            ),
            (
                "SEAL",
                aeogate::bench::data::seal(0).expect("s0").to_string(),
            ),
        ] {
            let (status, body) = self.manual_entry(lane, kind, &number).await;
            assert_eq!(status, 201, "{body}");
        }
    }

    /// `GET path` on the console API: the JSON body, `None` if the agent did not answer
    /// with one.
    pub async fn try_get(&self, path: &str) -> Option<Value> {
        let r = self.send(reqwest::Method::GET, path, None).await.ok()?;
        r.json().await.ok()
    }

    /// `GET path` on the console API: the JSON body.
    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.send(reqwest::Method::GET, path, None).await;
        r.expect("console request")
            .json()
            .await
            .expect("console JSON")
    }

    /// The agent's `/metrics` text, `None` if it did not answer.
    pub async fn metrics(&self) -> Option<String> {
        let r = http_client(None)
            .get(format!("{}/metrics", self.base))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        r.text().await.ok()
    }

    /// The value of the unlabelled series `name` on the agent's `/metrics`.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        metric_value(&self.metrics().await?, name)
    }

    /// `GET /api/v1/transactions?lane=…`: (transaction, decision) rows, newest first.
    pub async fn transactions(&self, lane: &str) -> Vec<Value> {
        let v = self
            .get_json(&format!("/api/v1/transactions?lane={lane}&limit=500"))
            .await;
        v.as_array().cloned().unwrap_or_default()
    }

    /// Decided transactions on `lane`.
    pub async fn decided(&self, lane: &str) -> usize {
        self.transactions(lane)
            .await
            .iter()
            .filter(|r| r["decision"].is_object())
            .count()
    }

    /// Waits until `lane` has at least `n` decided transactions; returns the newest row.
    pub async fn wait_decided(&self, lane: &str, n: usize) -> Value {
        let deadline = Instant::now() + STEP;
        loop {
            let rows = self.transactions(lane).await;
            if rows.iter().filter(|r| r["decision"].is_object()).count() >= n {
                return rows.into_iter().next().expect("a row");
            }
            assert!(
                Instant::now() < deadline,
                "lane {lane} did not reach {n} decisions in {STEP:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A virtual lane board for `lane` with one presence loop, its randomness from `seed`.
pub fn loop_board(lane: &str, seed: u64) -> aeogate::vboard::VirtualBoard {
    aeogate::vboard::VirtualBoard::spawn(aeogate::vboard::VirtualBoardConfig {
        lane: lane.into(),
        loops: 1,
        seed,
        ..aeogate::vboard::VirtualBoardConfig::default()
    })
    .expect("virtual board")
}

/// Central in `dir/central` over `transport`; lane L1 on a one-loop virtual board (seeded
/// `seed`) and lane L2 keyed in by officers, their agent in `dir/agent` sending to central
/// and keeping 24 h. Central and the agent started; with central's staff API, logged in.
pub async fn central_board_and_manual_lane(
    dir: &Path,
    transport: Transport,
    seed: u64,
) -> (
    CentralSite,
    aeogate::vboard::VirtualBoard,
    AgentSite,
    StaffClient,
) {
    let central = CentralSite::started(dir, transport).await;
    let board = loop_board("L1", seed);
    let lanes = [
        LaneSpec::on_board("L1", board.tty_link()),
        LaneSpec::manual("L2"),
    ];
    let mut agent = AgentSite::beside(dir, &central, &lanes, "24h");
    agent.start().await;
    let staff = central.staff().await;
    (central, board, agent, staff)
}

/// The value of the series `name` (with its labels, as rendered) in a Prometheus text
/// exposition.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

impl Drop for AgentSite {
    fn drop(&mut self) {
        self.kill();
    }
}

// --- load ------------------------------------------------------------------------------

/// What a burst achieved: the officer actions the agent acknowledged (journal seq, id).
#[derive(Debug, Default)]
pub struct Burst {
    pub acked: std::sync::Mutex<Vec<(u64, String)>>,
    pub count: AtomicU64,
}

impl Burst {
    pub fn acked(&self) -> Vec<(u64, String)> {
        self.acked.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

fn action(i: u64) -> Value {
    use aeogate::bench::data;
    match i % 4 {
        0 => {
            json!({"action": "MANUAL_ENTRY", "value": {"kind": "CONTAINER", "number": data::container(i % 50).expect("container").to_string()}})
        }
        1 => {
            json!({"action": "MANUAL_ENTRY", "value": {"kind": "SEAL", "number": data::seal(i % 50).expect("seal").to_string()}})
        }
        2 => json!({"transaction_id": uuid::Uuid::now_v7(), "action": "CONFIRM"}),
        // An override binds to the truck its lane shows (a made-up transaction is a 409),
        // so the burst records inspection results, which need no truck on the lane.
        _ => {
            json!({"transaction_id": uuid::Uuid::now_v7(), "action": "INSPECTION_RESULT", "result": {"outcome": "SEAL_INTACT"}, "note": format!("burst {i}")})
        }
    }
}

/// Posts officer actions and manual entries to the agent's console from `workers`
/// concurrent clients, spread over `lanes`, until `stop`, a refused request (the agent
/// died), or `max` actions per worker. Manual entries open gate transactions, which are
/// then decided and journaled too.
pub async fn burst(
    base: String,
    lanes: Vec<String>,
    workers: usize,
    max: u64,
    stop: CancellationToken,
    out: Arc<Burst>,
) {
    let http = http_client(None);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (http, base, stop, out) = (http.clone(), base.clone(), stop.clone(), out.clone());
        let lanes = lanes.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..max {
                if stop.is_cancelled() {
                    return;
                }
                let lane = &lanes[(i as usize + w) % lanes.len()];
                let sent = http
                    .post(format!("{base}/api/v1/lanes/{lane}/actions"))
                    .bearer_auth(AGENT_TOKEN)
                    .json(&action(i * workers as u64 + w as u64))
                    .timeout(Duration::from_secs(3))
                    .send();
                let r = tokio::select! {
                    () = stop.cancelled() => return,
                    r = sent => r,
                };
                let Ok(r) = r else { return };
                if r.status() != 201 {
                    return;
                }
                let Ok(body) = r.json::<Value>().await else {
                    return;
                };
                if let (Some(seq), Some(id)) = (body["seq"].as_u64(), body["action"]["id"].as_str())
                {
                    if let Ok(mut a) = out.acked.lock() {
                        a.push((seq, id.to_owned()));
                    }
                    out.count.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Waits until `burst` has `n` acknowledged actions (bounded by [`STEP`]).
pub async fn wait_count(b: &Burst, n: u64) {
    let deadline = Instant::now() + STEP;
    while b.count.load(Ordering::Relaxed) < n {
        assert!(
            Instant::now() < deadline,
            "the burst did not reach {n} actions in {STEP:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// --- ledger ----------------------------------------------------------------------------

/// Every event central stores for [`GATE`], by seq.
pub fn stored_events(hub: &central::Central) -> Vec<StoredEvent> {
    let mut out = central::model::Page::collect_all(100_000, |cursor| {
        hub.store().events(&EventQuery {
            gate: Some(gate()),
            cursor,
            limit: 1_000,
            ..EventQuery::default()
        })
    })
    .expect("query central's events");
    out.sort_by_key(|e| e.entry.seq);
    out
}

/// Central's integrity alerts about the chain of [`GATE`] (agent-reported ones excluded).
pub fn chain_alerts(hub: &central::Central) -> Vec<String> {
    hub.store()
        .alerts(10_000)
        .expect("central's alerts")
        .into_iter()
        .filter(|a| a.kind != AlertKind::AgentReported)
        .map(|a| format!("{} seq {}: {}", a.kind.as_str(), a.seq, a.detail))
        .collect()
}

/// The lane an entry is about, if any.
pub fn lane_of(e: &JournalEntry) -> Option<String> {
    match &e.body {
        EventBody::Transaction { transaction } => Some(transaction.lane.to_string()),
        EventBody::Decision { decision } => Some(decision.lane.to_string()),
        EventBody::OfficerAction { action } => Some(action.lane.to_string()),
        _ => None,
    }
}

/// Journaled versus stored, the figures docs/delivery.md reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Entries the agent journaled.
    pub sent: usize,
    /// Entries central stores for the gate.
    pub stored: usize,
    /// Journaled, not stored.
    pub lost: usize,
    /// Stored more than once (same id), or stored but never journaled.
    pub duplicated: usize,
    /// Per lane, adjacent stored entries (by seq) whose journal order is reversed.
    pub out_of_order: usize,
    /// Stored under another seq or with another hash than journaled.
    pub altered: usize,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {} stored {} lost {} duplicated {} out-of-order {} altered {}",
            self.sent, self.stored, self.lost, self.duplicated, self.out_of_order, self.altered
        )
    }
}

/// Compares an agent's journal with what central stored.
pub fn count(journal: &[JournalEntry], stored: &[StoredEvent]) -> Counts {
    let by_id: HashMap<uuid::Uuid, &JournalEntry> = journal.iter().map(|e| (e.id, e)).collect();
    let mut seen: HashMap<uuid::Uuid, usize> = HashMap::new();
    let mut c = Counts {
        sent: journal.len(),
        stored: stored.len(),
        ..Counts::default()
    };
    for s in stored {
        *seen.entry(s.entry.id).or_default() += 1;
        match by_id.get(&s.entry.id) {
            None => c.duplicated += 1,
            Some(j) if j.seq != s.entry.seq || j.hash != s.entry.hash => c.altered += 1,
            Some(_) => {}
        }
    }
    c.duplicated += seen.values().map(|n| n - 1).sum::<usize>();
    c.lost = journal.iter().filter(|e| !seen.contains_key(&e.id)).count();
    // Per-lane order: the journal position of each stored entry, in central's seq order.
    let position: HashMap<uuid::Uuid, usize> =
        journal.iter().enumerate().map(|(i, e)| (e.id, i)).collect();
    let mut lanes: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for s in stored {
        if let (Some(lane), Some(p)) = (lane_of(&s.entry), position.get(&s.entry.id)) {
            lanes.entry(lane).or_default().push(*p);
        }
    }
    c.out_of_order = lanes
        .values()
        .map(|ps| ps.windows(2).filter(|w| w[0] >= w[1]).count())
        .sum();
    c
}

/// Asserts the contract on `counts` and that every action the console acknowledged is
/// in the journal.
pub fn assert_exactly_once(
    what: &str,
    counts: &Counts,
    journal: &[JournalEntry],
    acked: &[(u64, String)],
) {
    println!("{what}: {counts}");
    assert!(counts.sent > 0, "{what}: nothing was journaled");
    assert_eq!(
        (
            counts.lost,
            counts.duplicated,
            counts.out_of_order,
            counts.altered
        ),
        (0, 0, 0, 0),
        "{what}: {counts}"
    );
    assert_eq!(counts.sent, counts.stored, "{what}: {counts}");
    let ids: HashMap<u64, String> = journal
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::OfficerAction { action } => Some((e.seq, action.id.to_string())),
            _ => None,
        })
        .collect();
    for (seq, id) in acked {
        assert_eq!(
            ids.get(seq),
            Some(id),
            "{what}: acknowledged action {id} at seq {seq} is not in the journal"
        );
    }
}

// --- a minimal HTTP/1.1 exchange --------------------------------------------------------

/// Largest request or response the test servers and the proxy handle.
pub const MAX_MESSAGE: usize = 8 * 1024 * 1024;

/// One HTTP/1.1 request, as bytes and in parts.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Header lines (name, value), in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The request re-encoded with `Connection: close`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.target).into_bytes();
        for (n, v) in &self.headers {
            if !n.eq_ignore_ascii_case("connection") {
                out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
            }
        }
        out.extend_from_slice(b"connection: close\r\n\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// Reads one request (headers, then a `Content-Length` body); `None` on EOF, a malformed
/// or oversized request, or a chunked body (which no client here sends).
pub async fn read_request(s: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).ok()?.to_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let target = first.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    if headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        return None;
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map_or(Some(0), |(_, v)| v.parse().ok())?;
    if len > MAX_MESSAGE {
        return None;
    }
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

/// A complete response with a body and `Connection: close`.
pub fn response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        204 => "No Content",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Service Unavailable",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A JSON response.
pub fn json_response(status: u16, v: &impl serde::Serialize) -> Vec<u8> {
    response(
        status,
        "application/json",
        &serde_json::to_vec(v).expect("JSON"),
    )
}

type Handler = Arc<dyn Fn(Request) -> futures_boxed::BoxFuture<Vec<u8>> + Send + Sync>;

/// Boxed futures without pulling in another crate.
pub mod futures_boxed {
    pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;
}

/// Serves `handler` on 127.0.0.1:0, one request per connection, until `stop`.
pub async fn serve(handler: Handler, stop: CancellationToken) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => return,
                a = listener.accept() => a,
            };
            let Ok((mut s, _)) = accepted else { continue };
            let (handler, stop) = (handler.clone(), stop.clone());
            tokio::spawn(async move {
                let Some(req) = read_request(&mut s).await else {
                    return;
                };
                let out = tokio::select! {
                    () = stop.cancelled() => return,
                    out = handler(req) => out,
                };
                let _ = s.write_all(&out).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// Sends `req` to `upstream` on a fresh connection and reads the whole response (the
/// request says `Connection: close`, so the server closes after it).
pub async fn round_trip(upstream: SocketAddr, req: &Request) -> Option<Vec<u8>> {
    let work = async {
        let mut s = TcpStream::connect(upstream).await.ok()?;
        s.write_all(&req.to_bytes()).await.ok()?;
        let mut out = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..n]);
            if out.len() > MAX_MESSAGE {
                return None;
            }
        }
        Some(out)
    };
    tokio::time::timeout(Duration::from_secs(40), work)
        .await
        .ok()
        .flatten()
}

/// A [`burst`] running in the background: its tally, and what stops it.
pub struct RunningBurst {
    pub out: Arc<Burst>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl RunningBurst {
    /// Starts [`burst`] on `lanes` of the agent at `base` with `workers` clients, each
    /// sending at most `max` actions.
    pub fn spawn(base: String, lanes: Vec<String>, workers: usize, max: u64) -> Self {
        let out = Arc::new(Burst::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(burst(base, lanes, workers, max, stop.clone(), out.clone()));
        Self { out, stop, task }
    }

    /// Stops the burst and waits (bounded by [`STEP`]) for its clients to finish.
    pub async fn stop(self) -> Arc<Burst> {
        self.stop.cancel();
        tokio::time::timeout(STEP, self.task)
            .await
            .expect("the burst stops")
            .expect("burst task");
        self.out
    }
}

/// Waits (at most a minute) until central has stored everything the agents journaled.
pub async fn wait_drained(central: &CentralSite) {
    central
        .staff()
        .await
        .wait_drained(jiff::Timestamp::now(), Duration::from_secs(60))
        .await;
}

/// Stops the agent and central, checks central raised no chain alerts and returns the
/// ledger of what the agent journaled against what central stored, with the journal.
pub fn stop_and_count(
    agent: &mut AgentSite,
    central: &mut CentralSite,
) -> (Counts, Vec<JournalEntry>) {
    agent.terminate();
    central.stop();
    ledger(agent, &central.open())
}

/// Waits until central has stored everything the agent journaled, stops both, and asserts
/// the exactly-once contract for `what` with every action in `acked` journaled
/// ([`assert_exactly_once`]); returns the counts.
pub async fn drained_exactly_once(
    what: &str,
    agent: &mut AgentSite,
    central: &mut CentralSite,
    acked: &[(u64, String)],
) -> Counts {
    wait_drained(central).await;
    let (counts, journal) = stop_and_count(agent, central);
    assert_exactly_once(what, &counts, &journal, acked);
    counts
}

/// Checks central (`hub`, opened after it stopped) raised no chain alerts and returns the
/// ledger of what the stopped agent journaled against what central stored, with the journal.
pub fn ledger(agent: &AgentSite, hub: &central::Central) -> (Counts, Vec<JournalEntry>) {
    let journal = agent.journal();
    let alerts = chain_alerts(hub);
    assert!(
        alerts.is_empty(),
        "central raised chain alerts: {alerts:#?}"
    );
    (count(&journal, &stored_events(hub)), journal)
}

/// A truck carrying container `j`'s RFID tag (the container number's ASCII in the EPC
/// bank, as a container tag reader reports it) that stays `dwell` in the lane.
pub fn container_truck(j: u64, dwell: Duration) -> aeogate::vboard::Truck {
    let mut epc = aeogate::bench::data::container(j)
        .expect("container")
        .to_string()
        .into_bytes();
    epc.push(0);
    aeogate::vboard::Truck {
        tags: vec![epc],
        eseals: Vec::new(),
        dwell,
    }
}

/// How many cycles a soak runs: `AEOGATE_SOAK_CYCLES`, 200 unless set.
pub fn soak_cycles() -> usize {
    std::env::var("AEOGATE_SOAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

/// Logs `who` (user, password) in at the central serving `url`; the session token.
pub async fn login(http: &reqwest::Client, url: &str, who: (&str, &str)) -> String {
    let r: Value = http
        .post(format!("{url}/api/v1/login"))
        .json(&json!({"user": who.0, "password": who.1}))
        .timeout(STEP)
        .send()
        .await
        .expect("login request")
        .json()
        .await
        .expect("login answer");
    r["token"].as_str().expect("session token").to_owned()
}

/// Runs a [`burst`] of at most `max` actions per worker to its end; what it achieved.
pub async fn burst_to_end(
    base: String,
    lanes: Vec<String>,
    workers: usize,
    max: u64,
) -> Arc<Burst> {
    let out = Arc::new(Burst::default());
    burst(
        base,
        lanes,
        workers,
        max,
        CancellationToken::new(),
        out.clone(),
    )
    .await;
    out
}

impl LaneSpec {
    /// A lane with a presence loop, fed by the lane board at `link` (a virtual board's
    /// `tty_link`).
    pub fn on_board(id: &str, link: PathBuf) -> LaneSpec {
        LaneSpec {
            id: id.into(),
            presence_loop: true,
            board: Some(link),
        }
    }
}

impl AgentSite {
    /// An agent in `dir/agent` with `lanes`, sending to `central` and keeping `keep`.
    pub fn beside(dir: &Path, central: &CentralSite, lanes: &[LaneSpec], keep: &str) -> AgentSite {
        AgentSite::create(&dir.join("agent"), &CentralLink::to(central), lanes, keep)
    }
}

/// A clean truck on lane L1 of `agent`, keyed in by the officer (benchmark container 0
/// and its seal); waits for the lane's `decided_before + 1`-th decision and returns it.
pub async fn clean_truck(agent: &AgentSite, decided_before: usize) -> Value {
    agent.key_in_clean_truck("L1").await;
    agent.wait_decided("L1", decided_before + 1).await["decision"].clone()
}

/// The reason codes of a decision, in order.
pub fn reasons(decision: &Value) -> Vec<String> {
    decision["reasons"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter_map(|r| r["code"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `edge-agent reload --config <the agent's file>`: success and everything it printed.
pub fn reload(agent: &AgentSite) -> (bool, String) {
    let mut reload = Command::new(binary("edge-agent"));
    reload.arg("reload").arg("--config").arg(&agent.config_path);
    outcome(&mut reload)
}

/// Runs `cmd` to its end: whether it succeeded, and its stdout then its stderr.
pub fn outcome(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("the command runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Rewrites the agent's configuration file with `f` (it takes and returns the text).
pub fn edit(agent: &AgentSite, f: impl FnOnce(String) -> String) {
    let text = std::fs::read_to_string(&agent.config_path).expect("read agent.toml");
    std::fs::write(&agent.config_path, f(text)).expect("write agent.toml");
}
