//! `aeogate demo`: a whole port of entry on one machine.
//!
//! What runs, all on loopback:
//! - **central**, in this process, on HTTPS with a CA and certificate made for the run, a
//!   fresh redb store, and the seeded data set ([`data`]) imported into its registry;
//! - an in-process **MQTT broker** ([`broker`]);
//! - **two gates of four lanes**: each lane a [`VirtualBoard`] running the real firmware
//!   over a pseudo-terminal, each gate an **edge agent** in a child process of its own
//!   (`aeogate agent`, the same code as the `edge-agent` binary), with its own redb file;
//!   the second gate's lanes are read by a fixed UHF reader over LLRP (a [`VirtualReader`]
//!   with an antenna per lane), their boards keeping the loops and e-seal readers;
//! - the **traffic generator** ([`traffic`]): trucks arrive on the boards' loops, their
//!   tags and e-seals are read by the boards' readers, and an OCR portal per lane publishes
//!   container and seal numbers over MQTT;
//! - the faults of a working day: a reader dropping out, and central unreachable for a
//!   while.
//!
//! A status line shows transactions, outcomes, open cases and the uplink backlog. With
//! `--duration` the run ends by itself: traffic stops, the agents drain their journals to
//! central, and a summary compares what the agents journaled with what central stored.

pub mod data;
pub mod link;
pub mod pki;
pub mod portal;
pub mod traffic;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aeogate::broker;
use aeogate::vboard::{Fault, Truck, VirtualBoard, VirtualBoardConfig};
use aeogate::vreader::{VirtualReader, VirtualReaderConfig};
use anyhow::{Context, Result, bail};
use edge_agent::console::Role;
use jiff::Timestamp;
use protocol::i18n::Lang;
use protocol::schema::GateId;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use self::data::PORT;
use self::traffic::Traffic;

/// Options of `aeogate demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// End after this long (then drain and print the summary); `None` runs until Ctrl-C.
    pub duration: Option<Duration>,
    /// Trucks per minute across all lanes.
    pub rate: f64,
    pub seed: u64,
    /// Registry size.
    pub operators: usize,
    /// Consignments of advance cargo.
    pub consignments: usize,
    /// Where the run's files go; a temporary directory when `None`.
    pub dir: Option<PathBuf>,
    /// How long central is unreachable in the outage fault.
    pub outage: Duration,
    /// Central on this PostgreSQL database (empty) instead of a redb file, as two
    /// instances: one in this process, one a child process that a fault kills mid-run.
    pub postgres: Option<String>,
}

const GATES: [&str; 2] = ["PORT-A-G1", "PORT-A-G2"];

/// The demo's one password (a local demonstration: printed at start).
const DEMO_PASSWORD: &str = "aeogate-demo";

/// Accounts created at every gate.
const AGENT_LOGINS: &[(&str, Role, Lang)] = &[
    ("officer", Role::Officer, Lang::En),
    ("oficial", Role::Officer, Lang::Es),
    ("supervisor", Role::Supervisor, Lang::Pt),
    ("operator", Role::Operator, Lang::En),
];

/// Accounts created at central.
const CENTRAL_LOGINS: &[(&str, &str)] = &[("analyst", "analyst"), ("admin", "admin")];
const LANES: [&str; 4] = ["L1", "L2", "L3", "L4"];

/// Outcome counts seen on the lane topics.
#[derive(Debug, Default)]
struct Outcomes {
    /// Trucks sent, by what they were meant to show.
    mix: std::sync::Mutex<BTreeMap<String, u64>>,
    fast: AtomicU64,
    standard: AtomicU64,
    inspect: AtomicU64,
    trucks: AtomicU64,
}

impl Outcomes {
    fn total(&self) -> u64 {
        self.fast.load(Ordering::Relaxed)
            + self.standard.load(Ordering::Relaxed)
            + self.inspect.load(Ordering::Relaxed)
    }
}

/// A gate: its agent process and its boards.
struct Gate {
    id: GateId,
    config_path: PathBuf,
    store_path: PathBuf,
    console: SocketAddr,
    log_path: PathBuf,
    boards: Vec<Arc<VirtualBoard>>,
    /// The fixed LLRP reader whose antenna `n` reads lane `n` (the second gate only).
    reader: Option<Arc<VirtualReader>>,
    child: Option<std::process::Child>,
}

/// The gate (index in `GATES`) whose lanes are read by the virtual LLRP reader.
const LLRP_GATE: usize = 1;

/// A preferred port when it is free (stable URLs for people), else any free one.
fn port_or_free(preferred: u16) -> Result<u16> {
    match TcpListener::bind(("127.0.0.1", preferred)) {
        Ok(_) => Ok(preferred),
        Err(_) => aeogate::broker::free_port(),
    }
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

#[allow(clippy::too_many_arguments)]
fn agent_config(
    gate: &GateId,
    name: &str,
    boards: &[Arc<VirtualBoard>],
    broker: SocketAddr,
    store: &Path,
    central_urls: &[String],
    token: &str,
    ca: &Path,
    key_id: &str,
    public_key: &str,
    console: SocketAddr,
    seed: u64,
    llrp: Option<SocketAddr>,
) -> String {
    let mut t = String::new();
    t.push_str(&format!(
        "[gate]\nid = {}\nname = {}\nport = {}\n\n",
        toml_str(gate.as_str()),
        toml_str(name),
        toml_str(PORT)
    ));
    for (i, lane) in LANES.iter().enumerate() {
        let n = i + 1;
        t.push_str(&format!(
            "[[lanes]]\nid = \"{lane}\"\nname = \"Lane {n}\"\npresence_loop = true\ntransaction_timeout = \"60s\"\n\
             [lanes.routes]\nfast = \"Lane {n} priority exit\"\nstandard = \"Primary booth {n}\"\ninspect = \"Secondary inspection bay\"\n\n"
        ));
    }
    for (lane, board) in LANES.iter().zip(boards) {
        t.push_str(&format!(
            "[[devices]]\nname = \"board-{lane}\"\nlane = \"{lane}\"\nkind = \"lane_board\"\npath = {}\nsilence_timeout = \"5s\"\nreopen_backoff_max = \"5s\"\n\n",
            toml_str(&board.tty_link().to_string_lossy())
        ));
    }
    if let Some(addr) = llrp {
        let antennas: Vec<String> = LANES
            .iter()
            .enumerate()
            .map(|(i, lane)| format!("{} = \"{lane}\"", i + 1))
            .collect();
        t.push_str(&format!(
            "[[llrp]]\nname = \"llrp-{gate}\"\nhost = \"127.0.0.1\"\nport = {}\nantennas = {{ {} }}\ntx_power_dbm = 30.0\n\n",
            addr.port(),
            antennas.join(", ")
        ));
    }
    t.push_str(&format!(
        "[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nclient_id = \"aeogate-agent-{gate}\"\nlane_topic_prefix = \"aeogate/{gate}/lanes\"\n\n",
        broker.port()
    ));
    for lane in LANES {
        t.push_str(&format!(
            "[[mqtt.topics]]\nfilter = \"portal/{gate}/{lane}/ocr\"\nlane = \"{lane}\"\nkind = \"ocr\"\n\n"
        ));
    }
    t.push_str(&format!(
        "[store]\npath = {}\n\n[central]\nurls = [{}]\ntoken = {}\nca_cert = {}\nuplink_batch = 500\nheartbeat_every = \"2s\"\npoll_wait = \"5s\"\n\n\
         [[central.registry_keys]]\nkey_id = {}\npublic_key = {}\n\n",
        toml_str(&store.to_string_lossy()),
        central_urls
            .iter()
            .map(|u| toml_str(u))
            .collect::<Vec<_>>()
            .join(", "),
        toml_str(token),
        toml_str(&ca.to_string_lossy()),
        toml_str(key_id),
        toml_str(public_key),
    ));
    t.push_str(&format!(
        "[policy]\nname = \"demo-port-a\"\nstaleness_bound = \"24h\"\nrequired_roles = [\"IMPORTER\", \"CARRIER\"]\nhome_programmes = [\"EU-AEO\"]\n\
         random_rate_aeo = 0.01\nrandom_rate_other = 0.04\nrandom_key = \"demo-{seed:016x}-{gate}\"\n\n[console]\nbind = \"{console}\"\n"
    ));
    t
}

fn spawn_agent(config: &Path, log: &Path) -> Result<std::process::Child> {
    spawn_daemon("agent", "AEOGATE_DEMO_AGENT_LOG", config, log)
}

/// Starts `aeogate <what> --config <config> --stop-on-stdin-eof` with its output in `log`
/// (appended: a restarted daemon keeps its earlier lines) and `RUST_LOG` from `log_env`
/// (`info` unless set).
fn spawn_daemon(
    what: &str,
    log_env: &str,
    config: &Path,
    log: &Path,
) -> Result<std::process::Child> {
    let exe = std::env::current_exe().context("locating the aeogate executable")?;
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("creating {}", log.display()))?;
    let err_file = log_file.try_clone()?;
    std::process::Command::new(exe)
        .arg(what)
        .arg("--config")
        .arg(config)
        .arg("--stop-on-stdin-eof")
        .env(
            "RUST_LOG",
            std::env::var(log_env).unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::from(log_file))
        .stderr(Stdio::from(err_file))
        .spawn()
        .with_context(|| format!("starting aeogate {what}"))
}

/// Waits until something listens on `addr` (a started daemon), at most `within`.
async fn wait_listening(addr: SocketAddr, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if Instant::now() >= deadline {
            bail!("nothing listens on {addr} after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Central's second instance on the demo's PostgreSQL database: a child process that the
/// "instance lost" fault kills with SIGKILL and starts again.
struct SecondCentral {
    config: PathBuf,
    log: PathBuf,
    addr: SocketAddr,
    child: Option<std::process::Child>,
}

impl SecondCentral {
    async fn start(&mut self) -> Result<()> {
        self.child = Some(spawn_daemon(
            "central",
            "AEOGATE_DEMO_CENTRAL_LOG",
            &self.config,
            &self.log,
        )?);
        wait_listening(self.addr, Duration::from_secs(30)).await
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_agent(&mut c, Duration::from_secs(15));
        }
    }
}

/// Stops an agent the way systemd would ask: its stdin closes, it shuts down gracefully;
/// after a bound it is killed.
fn stop_agent(child: &mut std::process::Child, within: Duration) {
    drop(child.stdin.take());
    aeogate::child::wait_or_kill(child, within);
}

/// Runs the demo; returns the process exit status.
///
/// # Errors
/// When a part cannot be started.
pub fn run(opts: DemoOptions) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()?;
    rt.block_on(run_async(opts))
}

#[allow(clippy::too_many_lines)]
async fn run_async(opts: DemoOptions) -> Result<ExitCode> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let started = Instant::now();
    let (dir, _tempdir) = match &opts.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            (d.clone(), None)
        }
        None => {
            let t = tempfile::Builder::new().prefix("aeogate-demo-").tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    println!(
        "aeogate demo — a port of entry with 2 gates × 4 lanes (files in {})",
        dir.display()
    );

    // --- data and central ------------------------------------------------------------
    let now = Timestamp::now();
    let data = Arc::new(data::generate(
        opts.seed,
        opts.operators,
        opts.consignments,
        now,
    ));
    let pki = pki::generate(&dir)?;
    let key_path = dir.join("registry-signing.key");
    central::generate_signing_key(&key_path)?;
    // Central listens on a free port; the agents reach it through a link the demo can cut
    // (the "central unreachable" fault), like a WAN between gate boxes and the data centre.
    let central_listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding central")?;
    let central_addr = central_listener.local_addr()?;
    let mut ccfg = central::Config::new(central_addr, dir.join("central.redb"), key_path);
    if let Some(url) = &opts.postgres {
        aeogate::bench::system::store_in_postgres(&mut ccfg, url)
            .map_err(|e| anyhow::anyhow!("--postgres: {e}"))?;
    }
    ccfg.tls = Some(central::TlsConfig {
        cert_pem: pki.server_cert.clone(),
        key_pem: pki.server_key.clone(),
        client_ca_pem: None,
    });
    ccfg.stale_after = Duration::from_secs(15);
    // Central runs in this process: its /metrics needs this process's recorder (the
    // agents are separate processes with their own).
    let metrics = central::api::install_metrics_recorder()?;
    let hub = central::Central::open(&ccfg)?;
    if opts.postgres.is_some() && !hub.summary()?.events_per_gate.is_empty() {
        bail!(
            "--postgres: the database already holds gate events; give the demo an empty database"
        );
    }
    let t0 = Instant::now();
    hub.import_records(data.operators.clone(), "demo-loader")?;
    hub.import_mras(data.mras.clone(), "demo-loader")?;
    hub.import_consignments(
        data.consignments
            .iter()
            .map(|c| c.consignment.clone())
            .collect(),
        "demo-loader",
    )?;
    println!(
        "registry: {} operators in {} programmes, {} MRAs, {} consignments (imported in {:.1} s)",
        data.operators.len(),
        data.operators
            .iter()
            .map(|r| r.operator.programme())
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        data.mras.len(),
        data.consignments.len(),
        t0.elapsed().as_secs_f64()
    );
    for (user, role) in CENTRAL_LOGINS {
        hub.add_user(user, DEMO_PASSWORD, role)
            .with_context(|| format!("creating the demo account {user}"))?;
    }
    portal::seed(&hub, DEMO_PASSWORD, "analyst")?;
    let mut tokens = BTreeMap::new();
    for g in GATES {
        let gate = GateId::parse(g)?;
        tokens.insert(g, hub.issue_agent_token(&gate, PORT)?);
    }
    let central_stop = CancellationToken::new();
    let central_task = {
        let (hub, ccfg, stop) = (hub.clone(), ccfg.clone(), central_stop.clone());
        tokio::spawn(async move {
            central::serve_with_listener(hub, central_listener, ccfg, stop).await
        })
    };
    let wan = link::Link::start(port_or_free(8443)?, central_addr, central_stop.clone()).await?;
    let mut central_urls = vec![format!("https://127.0.0.1:{}", wan.port())];
    // On PostgreSQL: a second instance on the same database, in a process of its own,
    // behind a link of its own; the agents try it first, so that losing it mid-run
    // sends them to the first.
    let mut second = None;
    let mut wan2 = None;
    if opts.postgres.is_some() {
        let addr: SocketAddr = ([127, 0, 0, 1], aeogate::broker::free_port()?).into();
        let mut cfg2 = ccfg.clone();
        cfg2.listen = addr;
        let config = dir.join("central-2.toml");
        std::fs::write(&config, toml::to_string(&cfg2).context("central-2.toml")?)?;
        let mut c = SecondCentral {
            config,
            log: dir.join("central-2.log"),
            addr,
            child: None,
        };
        c.start()
            .await
            .context("starting the second central instance")?;
        let l =
            link::Link::start(aeogate::broker::free_port()?, addr, central_stop.clone()).await?;
        central_urls.insert(0, format!("https://127.0.0.1:{}", l.port()));
        println!(
            "central on PostgreSQL: two instances on one database, https://{central_addr}/ (this process) and https://{addr}/ (pid {}, log {})",
            c.child.as_ref().map_or(0, std::process::Child::id),
            c.log.display()
        );
        second = Some(c);
        wan2 = Some(l);
    }
    let central_url = central_urls.join(", ");

    // --- broker and lanes --------------------------------------------------------------
    let broker = tokio::task::spawn_blocking(broker::start).await??;
    let mut gates = Vec::new();
    for (gi, g) in GATES.iter().enumerate() {
        let id = GateId::parse(g)?;
        let mut boards = Vec::new();
        for (li, lane) in LANES.iter().enumerate() {
            let cfg = VirtualBoardConfig {
                lane: (*lane).to_string(),
                loops: 1,
                seed: opts.seed.wrapping_add((gi * 10 + li) as u64),
                ..VirtualBoardConfig::default()
            };
            boards
                .push(Arc::new(VirtualBoard::spawn(cfg).with_context(|| {
                    format!("starting the board of {g}/{lane}")
                })?));
        }
        let console: SocketAddr = (
            [127, 0, 0, 1],
            port_or_free(8080 + u16::try_from(gi).unwrap_or(0))?,
        )
            .into();
        let reader = if gi == LLRP_GATE {
            let cfg = VirtualReaderConfig {
                antennas: u16::try_from(LANES.len()).unwrap_or(4),
                ..VirtualReaderConfig::default()
            };
            let r = VirtualReader::start(cfg, ([127, 0, 0, 1], 0).into())
                .await
                .with_context(|| format!("starting the LLRP reader of {g}"))?;
            Some(Arc::new(r))
        } else {
            None
        };
        let store_path = dir.join(format!("{g}.redb"));
        let text = agent_config(
            &id,
            &format!("Port A, gate {}", gi + 1),
            &boards,
            broker.addr,
            &store_path,
            &central_urls,
            &tokens[g],
            &pki.ca_cert,
            &hub.key_id(),
            &hub.public_key_hex(),
            console,
            opts.seed,
            reader.as_ref().map(|r| r.addr()),
        );
        let config_path = dir.join(format!("{g}.toml"));
        std::fs::write(&config_path, text)?;
        for (user, role, lang) in AGENT_LOGINS {
            edge_agent::console::add_user_to_store_file(
                &store_path,
                id.clone(),
                user,
                DEMO_PASSWORD,
                *role,
                *lang,
            )
            .with_context(|| format!("creating the demo account {user} at {g}"))?;
        }
        let log_path = dir.join(format!("{g}.log"));
        let child = spawn_agent(&config_path, &log_path)?;
        gates.push(Gate {
            id,
            config_path,
            store_path,
            console,
            log_path,
            boards,
            reader,
            child: Some(child),
        });
    }
    println!(
        "central dashboard: https://{central_addr}/  (certificate from the demo CA {}; agents reach central at {central_url})",
        pki.ca_cert.display()
    );
    for g in &gates {
        println!(
            "gate {}: officer console http://{}/   terminal operator view http://{}/operator   (agent log {})",
            g.id,
            g.console,
            g.console,
            g.log_path.display()
        );
        if let Some(r) = &g.reader {
            println!(
                "gate {}: lanes read by a fixed UHF reader over LLRP at {} (antenna n = lane Ln)",
                g.id,
                r.addr()
            );
        }
    }
    println!("demo logins (password {DEMO_PASSWORD:?} for all):");
    for (user, role, lang) in AGENT_LOGINS {
        println!(
            "  at each gate: {user:<12} {:<10} ({})",
            role.as_str(),
            lang.tag()
        );
    }
    for (user, role) in CENTRAL_LOGINS {
        println!("  at central:   {user:<12} {role}");
    }
    for (_, name, _, user, stage) in portal::COMPANIES {
        println!("  portal:       {user:<12} {name} ({})", stage.as_str());
    }
    println!(
        "MQTT broker: {}  (lane topics aeogate/<gate>/lanes/<lane>/state)",
        broker.addr
    );

    // --- MQTT: OCR portals publish, outcomes are counted from the lane topics ------------
    let outcomes = Arc::new(Outcomes::default());
    let mut mo = MqttOptions::new(
        format!("aeogate-demo-{}", std::process::id()),
        "127.0.0.1",
        broker.addr.port(),
    );
    mo.set_keep_alive(Duration::from_secs(10));
    mo.set_max_packet_size(64 * 1024, 64 * 1024);
    let (mqtt, mut eventloop) = AsyncClient::new(mo, 256);
    mqtt.subscribe("aeogate/+/lanes/+/decision", QoS::AtLeastOnce)
        .await?;
    let stop = CancellationToken::new();
    // Outcomes are counted until the agents have drained, after the traffic stops.
    let count_stop = CancellationToken::new();
    {
        let outcomes = outcomes.clone();
        let stop = count_stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    ev = eventloop.poll() => match ev {
                        Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => count_outcome(&outcomes, &p.payload),
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
            }
        });
    }

    // --- traffic -----------------------------------------------------------------------
    let traffic = Arc::new(Mutex::new(Traffic::new(opts.seed)));
    let lanes_total = GATES.len() * LANES.len();
    // Mean time between trucks on one lane, so that all lanes together make `rate`/min.
    let per_lane_gap =
        Duration::from_secs_f64((60.0 * lanes_total as f64 / opts.rate.max(0.1)).max(1.0));
    let mut lane_tasks = Vec::new();
    for (gi, g) in gates.iter().enumerate() {
        for (li, board) in g.boards.iter().enumerate() {
            let reader = g.reader.clone();
            let antenna = u16::try_from(li + 1).unwrap_or(1);
            let (board, data, traffic, mqtt, stop, outcomes) = (
                board.clone(),
                data.clone(),
                traffic.clone(),
                mqtt.clone(),
                stop.clone(),
                outcomes.clone(),
            );
            let topic = format!("portal/{}/{}/ocr", g.id, LANES[li]);
            let seed = opts.seed ^ ((gi * 8 + li) as u64) << 32;
            lane_tasks.push(tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed);
                // Stagger the lanes so trucks do not all arrive at once.
                let first = Duration::from_millis(rng.random_range(500..3_000));
                if sleep_or_stop(&stop, first).await {
                    return;
                }
                loop {
                    let visit = traffic.lock().await.next_visit(&data, 0.05);
                    // On an LLRP gate the fixed reader reads the tags; the board keeps the
                    // loop and the e-seal reader.
                    let board_tags = match &reader {
                        Some(r) => {
                            r.arrive(antenna, visit.tags.clone());
                            Vec::new()
                        }
                        None => visit.tags.clone(),
                    };
                    board.arrive(Truck { tags: board_tags, eseals: visit.eseals.clone(), dwell: visit.dwell });
                    outcomes.trucks.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut mix) = outcomes.mix.lock() {
                        let key = visit.scenario.map_or_else(|| "NoAdvanceData".to_owned(), |s| format!("{s:?}"));
                        *mix.entry(key).or_default() += 1;
                    }
                    if sleep_or_stop(&stop, Duration::from_millis(400)).await {
                        board.leave();
                        if let Some(r) = &reader {
                            r.leave(antenna);
                        }
                        return;
                    }
                    for c in &visit.ocr_containers {
                        let body = serde_json::json!({ "container": c, "confidence": rng.random_range(80..100) });
                        let _ = mqtt.publish(&topic, QoS::AtLeastOnce, false, body.to_string()).await;
                    }
                    for s in &visit.ocr_seals {
                        let body = serde_json::json!({ "seal": s });
                        let _ = mqtt.publish(&topic, QoS::AtLeastOnce, false, body.to_string()).await;
                    }
                    let stopped = sleep_or_stop(&stop, visit.dwell).await;
                    board.leave();
                    if let Some(r) = &reader {
                        r.leave(antenna);
                    }
                    if stopped {
                        return;
                    }
                    // The lane's cycle (arrival, dwell, gap) averages `per_lane_gap`.
                    let cycle = per_lane_gap.mul_f64(rng.random_range(0.6..1.4));
                    // At least 3 s between trucks: closer than that, the loop cannot tell two trucks from one.
                    let gap = cycle.saturating_sub(visit.dwell + Duration::from_millis(400)).max(Duration::from_secs(3));
                    if sleep_or_stop(&stop, gap).await {
                        return;
                    }
                }
            }));
        }
    }

    // --- faults, status line, end ----------------------------------------------------------
    let duration = opts.duration;
    let reader_fault_at = duration.map_or(Duration::from_secs(20), |d| d / 4);
    let outage_at = duration.map_or(Duration::from_secs(40), |d| d / 3);
    let outage_len = duration.map_or(opts.outage, |d| opts.outage.min(d / 4));
    // On PostgreSQL, the second central instance is killed (SIGKILL) halfway and started
    // again 10 s later.
    let instance_fault_at = duration.map_or(Duration::from_secs(60), |d| d / 2);
    let mut instance_killed: Option<Instant> = None;
    let mut instance_fault_done = second.is_none();
    let mut reader_fault_done = false;
    let mut outage_since: Option<Instant> = None;
    let mut outage_done = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = &mut ctrl_c => { println!(); println!("Ctrl-C: stopping traffic"); break; }
            _ = tick.tick() => {}
        }
        let elapsed = started.elapsed();
        if !reader_fault_done && elapsed >= reader_fault_at {
            reader_fault_done = true;
            gates[0].boards[2].inject(Fault::ReaderSilent {
                uhf: true,
                for_ms: 15_000,
            });
            println!(
                "\nfault: the UHF reader of {}/L3 stops answering for 15 s",
                gates[0].id
            );
        }
        if !outage_done && outage_since.is_none() && elapsed >= outage_at {
            println!(
                "\nfault: central unreachable for {} s (gates keep deciding; journals back up)",
                outage_len.as_secs()
            );
            wan.set_down(true);
            if let Some(l) = &wan2 {
                l.set_down(true);
            }
            outage_since = Some(Instant::now());
        }
        if let Some(since) = outage_since
            && since.elapsed() >= outage_len
        {
            wan.set_down(false);
            if let Some(l) = &wan2 {
                l.set_down(false);
            }
            outage_since = None;
            outage_done = true;
            println!("\ncentral reachable again: backlogs drain");
        }
        if !instance_fault_done
            && instance_killed.is_none()
            && elapsed >= instance_fault_at
            && let Some(c) = second.as_mut()
        {
            c.kill();
            instance_killed = Some(Instant::now());
            println!(
                "\nfault: central instance 2 killed (SIGKILL) mid-run; the agents move to instance 1"
            );
        }
        if let Some(at) = instance_killed
            && at.elapsed() >= Duration::from_secs(10)
            && let Some(c) = second.as_mut()
        {
            instance_killed = None;
            instance_fault_done = true;
            match c.start().await {
                Ok(()) => println!("\ncentral instance 2 started again"),
                Err(e) => println!("\ncentral instance 2 could not be started again: {e:#}"),
            }
        }
        print_status(&hub, &outcomes, elapsed, outage_since.is_some());
        if let Some(d) = duration
            && elapsed >= d
        {
            println!();
            break;
        }
    }

    // --- wind down -------------------------------------------------------------------------
    stop.cancel();
    for t in lane_tasks {
        let _ = t.await;
    }
    wan.set_down(false);
    if let Some(l) = &wan2 {
        l.set_down(false);
    }
    let stopped_at = Timestamp::now();
    println!("traffic stopped; waiting for lanes to close and journals to drain to central …");
    // Let transactions close on departure and be decided.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let drained = wait_for_drain(&hub, &gates, stopped_at, Duration::from_secs(90)).await;
    count_stop.cancel();
    for g in &mut gates {
        if let Some(mut child) = g.child.take() {
            tokio::task::spawn_blocking(move || stop_agent(&mut child, Duration::from_secs(15)))
                .await?;
        }
    }
    // The agents are stopped: read their journals directly for the exact count.
    let mut journaled = BTreeMap::new();
    for g in &gates {
        let store = edge_agent::store::Store::open(&g.store_path, g.id.clone())
            .with_context(|| format!("opening {}", g.store_path.display()))?;
        journaled.insert(g.id.to_string(), (store.journal_head(), store.acked_seq()));
    }
    if let Some(mut c) = second.take() {
        tokio::task::spawn_blocking(move || c.stop()).await?;
    }
    let summary = hub.summary()?;
    central_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), central_task).await;

    println!(
        "\n== summary after {:.0} s",
        started.elapsed().as_secs_f64()
    );
    println!("trucks:     {}", outcomes.trucks.load(Ordering::Relaxed));
    if let Ok(mix) = outcomes.mix.lock() {
        let parts: Vec<String> = mix.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("mix:        {}", parts.join(", "));
    }
    println!(
        "decisions:  {} (FAST {}, STANDARD {}, INSPECT {})",
        outcomes.total(),
        outcomes.fast.load(Ordering::Relaxed),
        outcomes.standard.load(Ordering::Relaxed),
        outcomes.inspect.load(Ordering::Relaxed)
    );
    println!(
        "open cases: {} (acknowledged {}, resolved {}); integrity alerts {}",
        summary.cases_open, summary.cases_acknowledged, summary.cases_resolved, summary.alerts
    );
    let mut all_equal = drained;
    for (gate, (head, acked)) in &journaled {
        let stored = summary.events_per_gate.get(gate).copied().unwrap_or(0);
        let ok = stored == *head;
        all_equal &= ok;
        println!(
            "gate {gate}: events journaled {head}, acknowledged {acked}, stored at central {stored} {}",
            if ok { "(equal)" } else { "(NOT EQUAL)" }
        );
    }
    let traffic_ok = outcomes.fast.load(Ordering::Relaxed) > 0
        && outcomes.standard.load(Ordering::Relaxed) > 0
        && outcomes.inspect.load(Ordering::Relaxed) > 0;
    println!(
        "journaled = stored: {}",
        if all_equal { "yes" } else { "NO" }
    );
    if opts.postgres.is_some() {
        let stored: u64 = summary.events_per_gate.values().sum();
        let here = counter_value(&metrics.render(), "central_entries_stored_total");
        println!(
            "central instances: {here} of {stored} events stored by instance 1 (this process), {} by instance 2",
            stored.saturating_sub(here)
        );
    }
    for g in &gates {
        if let Some(r) = &g.reader {
            let st = r.stats();
            println!(
                "llrp reader of {}: {} tag reports, {} keepalives acknowledged, {} connections, ROSpecs {:?}",
                g.id, st.tag_reports, st.keepalive_acks, st.connections, st.rospecs
            );
        }
    }
    for g in &gates {
        let _ = &g.config_path;
    }
    drop(gates);
    let _ = std::io::stdout().flush();
    if duration.is_some() && !all_equal {
        bail!("events journaled at the gates and stored at central differ");
    }
    if duration.is_some() && !traffic_ok {
        println!("note: not every outcome occurred; run longer or raise --rate");
    }
    Ok(ExitCode::SUCCESS)
}

/// A counter's value in Prometheus text (0 when absent).
fn counter_value(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0, |v| v as u64)
}

async fn sleep_or_stop(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        () = stop.cancelled() => true,
        () = tokio::time::sleep(d) => false,
    }
}

fn count_outcome(outcomes: &Outcomes, payload: &[u8]) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return;
    };
    if v.get("officer_override")
        .and_then(serde_json::Value::as_bool)
        == Some(true)
    {
        return;
    }
    match v.get("decision").and_then(|d| d.as_str()) {
        Some("FAST") => outcomes.fast.fetch_add(1, Ordering::Relaxed),
        Some("STANDARD") => outcomes.standard.fetch_add(1, Ordering::Relaxed),
        Some("INSPECT") => outcomes.inspect.fetch_add(1, Ordering::Relaxed),
        _ => 0,
    };
}

fn print_status(hub: &central::Central, o: &Outcomes, elapsed: Duration, outage: bool) {
    let (stored, cases) = match hub.summary() {
        Ok(s) => (s.events_per_gate.values().sum::<u64>(), s.cases_open),
        Err(_) => (0, 0),
    };
    let backlog: u64 = hub
        .gates(Timestamp::now())
        .map(|gs| {
            gs.iter()
                .filter_map(|g| g.last_heartbeat.as_ref())
                .map(|h| h.heartbeat.backlog)
                .sum()
        })
        .unwrap_or(0);
    let line = format!(
        "[{:>4}s] trucks {:>4} | FAST {:>4} STANDARD {:>4} INSPECT {:>4} | open cases {:>3} | backlog {:>4} | stored {:>5}{}   ",
        elapsed.as_secs(),
        o.trucks.load(Ordering::Relaxed),
        o.fast.load(Ordering::Relaxed),
        o.standard.load(Ordering::Relaxed),
        o.inspect.load(Ordering::Relaxed),
        cases,
        backlog,
        stored,
        if outage { " | CENTRAL UNREACHABLE" } else { "" }
    );
    // On a terminal the status line rewrites itself; in a log, one line every 10 s.
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        print!("\r{line}   ");
        let _ = std::io::stdout().flush();
    } else if elapsed.as_secs() % 10 < 2 {
        println!("{line}");
    }
}

/// Waits until, for every gate, a heartbeat sent after `since` reports no backlog and
/// central has stored as many events as that heartbeat says the gate journaled.
async fn wait_for_drain(
    hub: &central::Central,
    gates: &[Gate],
    since: Timestamp,
    within: Duration,
) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(statuses) = hub.gates(Timestamp::now()) {
            let done = gates.iter().all(|g| {
                statuses.iter().any(|st| {
                    st.gate == g.id
                        && st.last_heartbeat.as_ref().is_some_and(|h| {
                            h.heartbeat.at > since
                                && h.heartbeat.backlog == 0
                                && st.events_stored == h.heartbeat.journal_head
                        })
                })
            });
            if done {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}
