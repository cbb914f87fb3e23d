//! The running system for the whole-system figures (2, 6, 7): an in-process MQTT broker,
//! virtual lane boards on real pseudo-terminals, the edge agent started in this process
//! from a TOML configuration (the same parser as the `edge-agent` binary), and a lane
//! topic subscriber that stamps each decision message with the instant it arrived.
//!
//! Everything listens on 127.0.0.1. The agent's lanes have one presence loop each, as on
//! a gate with loop detectors: a transaction opens when the loop reports a vehicle and
//! closes one `DEPARTURE_GRACE` (1 s, `edge_agent::assembler`) after the loop clears.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use jiff::Timestamp;
use protocol::link::Message;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::vboard::{FrameDirection, LinkFrame, Truck, VirtualBoard, VirtualBoardConfig};

/// Baud rate configured for every lane board, the agent's default (8N1: 10 bits a byte).
pub const BAUD: u32 = 115_200;

/// Runs a whole-system figure on a two-worker tokio runtime of its own.
///
/// # Errors
/// When the runtime cannot be built, or as the figure.
pub fn block_on<T>(fig: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?
        .block_on(fig)
}

/// Wire time of `bytes` at [`BAUD`] with 8N1 framing (start, 8 data, stop bits).
#[must_use]
pub fn wire_time(bytes: usize) -> Duration {
    let bits = u64::try_from(bytes).unwrap_or(u64::MAX).saturating_mul(10);
    Duration::from_nanos(bits.saturating_mul(1_000_000_000) / u64::from(BAUD))
}

/// How the agent reaches central, when it does.
#[derive(Debug, Clone)]
pub struct CentralLink {
    pub url: String,
    pub token: String,
    pub key_id: String,
    pub public_key: String,
    pub uplink_batch: usize,
    pub heartbeat_every: Duration,
}

/// The agent configuration `text` ([`agent_toml`]) parsed, `what` naming it in an error,
/// and the lanes of its `boards`.
///
/// # Errors
/// The configuration does not parse.
pub fn agent_config(
    text: &str,
    boards: &[Arc<VirtualBoard>],
    what: &str,
) -> anyhow::Result<(edge_agent::config::Config, Vec<String>)> {
    let cfg = edge_agent::config::Config::from_toml_str(text, what)?;
    let lanes = boards.iter().map(|b| b.lane().to_string()).collect();
    Ok((cfg, lanes))
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// The agent configuration's `[central]` section for `c` (with its registry key).
#[must_use]
pub fn central_toml(c: &CentralLink) -> String {
    format!(
        "[central]\nurl = {}\ntoken = {}\nuplink_batch = {}\nheartbeat_every = \"{}ms\"\npoll_wait = \"5s\"\n\n\
         [[central.registry_keys]]\nkey_id = {}\npublic_key = {}\n\n",
        toml_str(&c.url),
        toml_str(&c.token),
        c.uplink_batch,
        c.heartbeat_every.as_millis(),
        toml_str(&c.key_id),
        toml_str(&c.public_key),
    )
}

/// The agent configuration text: one presence-loop lane per board, each board a
/// `lane_board` device at [`BAUD`], lane topics under `aeogate/<gate>/lanes`, OCR topics
/// `portal/<gate>/<lane>/ocr`, the console on a free loopback port.
#[must_use]
pub fn agent_toml(
    gate: &str,
    boards: &[Arc<VirtualBoard>],
    broker: SocketAddr,
    store: &Path,
    central: Option<&CentralLink>,
) -> String {
    let mut t = String::new();
    let _ = write!(
        t,
        "[gate]\nid = {}\nname = \"bench gate\"\nport = \"PORT1\"\n\n",
        toml_str(gate)
    );
    for b in boards {
        let lane = b.lane();
        let _ = write!(
            t,
            "[[lanes]]\nid = \"{lane}\"\nname = \"Lane {lane}\"\npresence_loop = true\ntransaction_timeout = \"60s\"\n\
             [lanes.routes]\nfast = \"Lane 1 priority\"\nstandard = \"Lane 2\"\ninspect = \"Inspection bay\"\n\n"
        );
    }
    for b in boards {
        let _ = write!(
            t,
            "[[devices]]\nname = \"board-{}\"\nlane = \"{}\"\nkind = \"lane_board\"\npath = {}\nbaud = {BAUD}\nsilence_timeout = \"5s\"\nreopen_backoff_max = \"1s\"\n\n",
            b.lane(),
            b.lane(),
            toml_str(&b.tty_link().to_string_lossy())
        );
    }
    let _ = write!(
        t,
        "[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nclient_id = \"bench-agent-{gate}\"\nlane_topic_prefix = \"aeogate/{gate}/lanes\"\n\n",
        broker.port()
    );
    for b in boards {
        let lane = b.lane();
        let _ = write!(
            t,
            "[[mqtt.topics]]\nfilter = \"portal/{gate}/{lane}/ocr\"\nlane = \"{lane}\"\nkind = \"ocr\"\n\n"
        );
    }
    let _ = write!(
        t,
        "[store]\npath = {}\n\n",
        toml_str(&store.to_string_lossy())
    );
    if let Some(c) = central {
        t.push_str(&central_toml(c));
    }
    t.push_str(
        "[policy]\nname = \"bench\"\nstaleness_bound = \"24h\"\nrequired_roles = [\"IMPORTER\", \"CARRIER\"]\nhome_programmes = [\"EU-AEO\"]\n\
         random_rate_aeo = 0.01\nrandom_rate_other = 0.05\nrandom_key = \"bench-random-key\"\n\n[console]\nbind = \"127.0.0.1:0\"\n",
    );
    t
}

/// `n` virtual boards with one presence loop each, lanes `L1`…`Ln`.
///
/// # Errors
/// A pseudo-terminal cannot be opened.
pub fn boards(n: usize) -> anyhow::Result<Vec<Arc<VirtualBoard>>> {
    (1..=n)
        .map(|i| {
            let cfg = VirtualBoardConfig {
                lane: format!("L{i}"),
                loops: 1,
                seed: i as u64,
                ..VirtualBoardConfig::default()
            };
            VirtualBoard::spawn(cfg)
                .map(Arc::new)
                .with_context(|| format!("virtual board L{i}"))
        })
        .collect()
}

/// A decision message seen on a lane topic.
#[derive(Debug, Clone)]
pub struct LaneMessage {
    /// When the subscriber's event loop returned it.
    pub received: Instant,
    pub received_wall: Timestamp,
    pub lane: String,
    pub transaction_id: Option<String>,
    pub decision: String,
    /// When the agent decided (its `LaneState::at`).
    pub decided_at: Option<Timestamp>,
}

fn parse_lane_message(payload: &[u8], received: Instant) -> Option<LaneMessage> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let s = |k: &str| v.get(k).and_then(serde_json::Value::as_str);
    Some(LaneMessage {
        received,
        received_wall: Timestamp::now(),
        lane: s("lane")?.to_owned(),
        transaction_id: s("transaction_id").map(str::to_owned),
        decision: s("decision")?.to_owned(),
        decided_at: s("at").and_then(|t| t.parse().ok()),
    })
}

/// A client with `opts` (keep-alive 30 s) subscribed to `filter` at QoS 1, returned once
/// the broker acknowledged the subscription.
///
/// # Errors
/// The broker cannot be reached or does not acknowledge within 5 s.
pub(crate) async fn subscribed(
    opts: MqttOptions,
    filter: &str,
) -> anyhow::Result<(AsyncClient, rumqttc::EventLoop)> {
    subscribed_with(opts, filter, false).await
}

/// [`subscribed`], with TCP_NODELAY on the client's socket when `nodelay`.
///
/// # Errors
/// As [`subscribed`].
pub(crate) async fn subscribed_with(
    mut opts: MqttOptions,
    filter: &str,
    nodelay: bool,
) -> anyhow::Result<(AsyncClient, rumqttc::EventLoop)> {
    let (host, port) = opts.broker_address();
    let id = opts.client_id();
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut ev) = AsyncClient::new(opts, 64);
    if nodelay {
        set_nodelay(&mut ev);
    }
    client
        .subscribe(filter, QoS::AtLeastOnce)
        .await
        .with_context(|| format!("subscribing {id} to {filter}"))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ev.poll()).await {
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => return Ok((client, ev)),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => anyhow::bail!("{id} cannot reach the broker {host}:{port}: {e}"),
            Err(_) => anyhow::bail!(
                "the broker {host}:{port} did not acknowledge {id}'s subscription within 5 s"
            ),
        }
    }
}

/// Sets TCP_NODELAY on the socket `ev` connects: a measuring client's own writes (its
/// publishes, its PUBACKs) then leave at once instead of waiting, under Nagle's algorithm,
/// for the acknowledgement of the one before.
pub(crate) fn set_nodelay(ev: &mut rumqttc::EventLoop) {
    let mut net = ev.network_options();
    net.set_tcp_nodelay(true);
    ev.set_network_options(net);
}

/// One unbounded channel per lane: the senders and the receivers, by lane name.
pub(crate) fn lane_channels<T>(
    lanes: &[String],
) -> (
    HashMap<String, mpsc::UnboundedSender<T>>,
    HashMap<String, mpsc::UnboundedReceiver<T>>,
) {
    lanes
        .iter()
        .map(|l| {
            let (tx, rx) = mpsc::unbounded_channel();
            ((l.clone(), tx), (l.clone(), rx))
        })
        .unzip()
}

/// Runs the event loop `ev` of `client` on the current runtime until `stop`, handing every
/// publish, with the instant it arrived, to `on_publish`; after a connection error it waits
/// `retry` before polling again (the client reconnects).
pub fn forward_publishes(
    client: AsyncClient,
    mut ev: rumqttc::EventLoop,
    retry: Duration,
    stop: CancellationToken,
    mut on_publish: impl FnMut(rumqttc::Publish, Instant) + Send + 'static,
) {
    tokio::spawn(async move {
        let _client = client;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                e = ev.poll() => match e {
                    Ok(Event::Incoming(Packet::Publish(p))) => on_publish(p, Instant::now()),
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(retry).await,
                }
            }
        }
    });
}

/// Runs the event loop `ev` of a publishing client on the current runtime until `stop`;
/// after a connection error it waits `retry` before polling again (the client reconnects).
pub(crate) fn drive_event_loop(
    mut ev: rumqttc::EventLoop,
    retry: Duration,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                e = ev.poll() => if e.is_err() {
                    tokio::time::sleep(retry).await;
                }
            }
        }
    });
}

/// Subscribes to `aeogate/<gate>/lanes/+/decision` (QoS 1, as the agent publishes) and
/// routes each message to the receiver of its lane. Returns once the subscription is
/// acknowledged.
///
/// # Errors
/// The broker does not acknowledge the subscription within 5 s.
pub async fn lane_subscriber(
    broker: SocketAddr,
    gate: &str,
    lanes: &[String],
    stop: CancellationToken,
) -> anyhow::Result<HashMap<String, mpsc::UnboundedReceiver<LaneMessage>>> {
    // Each subscriber needs its own client id: the broker drops the older session of a
    // client id that connects again (MQTT 3.1.1 §3.1.4), and two subscribers taking turns
    // would each lose their subscription.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let opts = MqttOptions::new(
        format!("bench-lanes-{}-{k}", std::process::id()),
        "127.0.0.1",
        broker.port(),
    );
    let (client, ev) = subscribed(opts, &format!("aeogate/{gate}/lanes/+/decision")).await?;
    let (senders, receivers) = lane_channels(lanes);
    forward_publishes(client, ev, Duration::from_millis(50), stop, move |p, at| {
        if let Some(m) = parse_lane_message(&p.payload, at)
            && let Some(tx) = senders.get(&m.lane)
        {
            let _ = tx.send(m);
        }
    });
    Ok(receivers)
}

/// The last departure frame (`Presence { present: false }`) the board wrote, and the
/// first lane command it read after it, among the frames queued in `frames` so far.
#[must_use]
pub fn departure_and_command(
    frames: &Receiver<LinkFrame>,
) -> (Option<LinkFrame>, Option<LinkFrame>) {
    let mut departure: Option<LinkFrame> = None;
    let mut command: Option<LinkFrame> = None;
    while let Ok(f) = frames.try_recv() {
        match (&f.direction, &f.frame.msg) {
            (FrameDirection::ToAgent, Message::Presence { present: false, .. }) => {
                departure = Some(f);
                command = None;
            }
            (FrameDirection::FromAgent, Message::LaneCommand(_))
                if departure.is_some() && command.is_none() =>
            {
                command = Some(f);
            }
            _ => {}
        }
    }
    (departure, command)
}

/// Waits for every lane driver in `tasks`: their samples, in task order, and how many
/// trucks they lost.
///
/// # Errors
/// A lane driver panicked.
pub async fn join_lane_drivers<T>(
    tasks: Vec<tokio::task::JoinHandle<(Vec<T>, usize)>>,
) -> anyhow::Result<(Vec<T>, usize)> {
    let mut samples = Vec::new();
    let mut lost = 0;
    for t in tasks {
        let (s, l) = t.await.context("lane driver panicked")?;
        samples.extend(s);
        lost += l;
    }
    Ok((samples, lost))
}

/// Waits for the lane's next decision message, at most `within`.
pub async fn next_decision(
    rx: &mut mpsc::UnboundedReceiver<LaneMessage>,
    within: Duration,
) -> Option<LaneMessage> {
    tokio::time::timeout(within, rx.recv()).await.ok().flatten()
}

/// A truck that shows one UHF tag (a 96-bit SGTIN) and nothing else.
#[must_use]
pub fn plain_truck() -> Truck {
    Truck {
        tags: vec![vec![
            0x30, 0x74, 0x25, 0x7B, 0xF7, 0x19, 0x4E, 0x40, 0x00, 0x00, 0x1A, 0x85,
        ]],
        eseals: Vec::new(),
        dwell: Duration::from_millis(100),
    }
}

/// Waits until every board's link is up (the agent has opened the pty and answers).
///
/// # Errors
/// A board's link is not up within `within`.
pub async fn links_up(boards: &[Arc<VirtualBoard>], within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    for b in boards {
        while !b.stats().link_up {
            if Instant::now() > deadline {
                anyhow::bail!(
                    "the agent did not bring up the link of board {} within {within:?}",
                    b.lane()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

/// Bare MQTT round trip through the broker at `broker`: one client publishes at QoS 1,
/// another receives; `n` samples, one at a time, from publish call to receipt.
///
/// # Errors
/// The broker cannot be reached or a message does not arrive within 2 s.
pub async fn mqtt_round_trips(
    broker: SocketAddr,
    n: usize,
) -> anyhow::Result<crate::bench::stats::Samples> {
    let stop = CancellationToken::new();
    let sub = MqttOptions::new("bench-rt-sub", "127.0.0.1", broker.port());
    let (sub, sub_ev) = subscribed(sub, "bench/rt").await?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Instant>();
    let retry = Duration::from_millis(50);
    forward_publishes(sub, sub_ev, retry, stop.clone(), move |_, at| {
        let _ = tx.send(at);
    });
    let mut po = MqttOptions::new("bench-rt-pub", "127.0.0.1", broker.port());
    po.set_keep_alive(Duration::from_secs(30));
    let (publ, pub_ev) = AsyncClient::new(po, 64);
    drive_event_loop(pub_ev, retry, stop.clone());
    let mut samples = crate::bench::stats::Samples::with_capacity(n);
    let payload = vec![b'x'; 200];
    for _ in 0..n {
        let t = Instant::now();
        publ.publish("bench/rt", QoS::AtLeastOnce, false, payload.clone())
            .await
            .context("publishing a round-trip message")?;
        let got = tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .context("a round-trip message did not arrive within 2 s")?
            .context("round-trip subscriber stopped")?;
        samples.push(got.saturating_duration_since(t));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stop.cancel();
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_time_is_ten_bits_a_byte_at_the_baud_rate() {
        // 23 bytes at 115,200 baud: 230 bits, 1.996 ms.
        assert_eq!(wire_time(23), Duration::from_nanos(1_996_527));
        assert_eq!(wire_time(0), Duration::ZERO);
    }

    #[test]
    fn agent_configuration_parses_with_and_without_central() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = boards(2).expect("boards");
        let broker: SocketAddr = ([127, 0, 0, 1], 1883).into();
        let plain = agent_toml("PORT1-G1", &b, broker, &dir.path().join("a.redb"), None);
        let cfg = edge_agent::config::Config::from_toml_str(&plain, "bench").expect("parses");
        assert_eq!(cfg.lanes.len(), 2);
        let (parsed, lanes) = agent_config(&plain, &b, "bench").expect("parses");
        assert_eq!(parsed.lanes.len(), 2);
        assert_eq!(lanes, [b[0].lane().to_string(), b[1].lane().to_string()]);
        assert!(cfg.lanes.iter().all(|l| l.presence_loop));
        assert!(cfg.central.is_none());
        let link = CentralLink {
            url: "http://127.0.0.1:9".into(),
            token: "t".into(),
            key_id: "k".into(),
            public_key: "00".repeat(32),
            uplink_batch: 1000,
            heartbeat_every: Duration::from_millis(1500),
        };
        let with = agent_toml(
            "PORT1-G1",
            &b,
            broker,
            &dir.path().join("a.redb"),
            Some(&link),
        );
        let cfg = edge_agent::config::Config::from_toml_str(&with, "bench").expect("parses");
        let c = cfg.central.expect("central configured");
        assert_eq!(
            (c.uplink_batch, c.heartbeat_every),
            (1000, Duration::from_millis(1500))
        );
    }

    #[test]
    fn a_store_in_postgres_replaces_the_redb_file() {
        let listen: SocketAddr = ([127, 0, 0, 1], 0).into();
        let mut cfg = central::Config::new(listen, "central.redb".into(), "key".into());
        assert!(store_in_postgres(&mut cfg, "mysql://db").is_err());
        assert_eq!(
            (cfg.store.is_none(), cfg.store_path.as_path()),
            (true, std::path::Path::new("central.redb"))
        );
        store_in_postgres(&mut cfg, "postgres://bench@127.0.0.1/bench").expect("a PostgreSQL URL");
        assert_eq!(cfg.store_path, std::path::PathBuf::new());
        let store = cfg.store.expect("store configured");
        assert_eq!(store.url.expose(), "postgres://bench@127.0.0.1/bench");
        assert_eq!((store.retention_months, store.ca_cert), (None, None));
    }

    #[test]
    fn round_trips_arrive_through_the_in_process_broker() {
        let broker = crate::broker::start().expect("in-process MQTT broker");
        let samples = block_on(mqtt_round_trips(broker.addr, 3)).expect("round trips");
        assert_eq!(samples.len(), 3);
    }
}

/// Central in this process, plain HTTP on 127.0.0.1 (allowed on loopback only).
///
/// It runs on its own runtime ([`CentralRuntime`]: two workers and its own blocking
/// pool), as it would in its own process: the agent's runtime workers and the figure's
/// lane drivers never wait behind central's request handling, only share the cores.
#[derive(Debug)]
pub struct CentralUnderTest {
    pub hub: central::Central,
    pub url: String,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub runtime: CentralRuntime,
}

/// Central's own runtime; shut down without waiting when dropped (a figure drops it from
/// async code, where a runtime may not block).
#[derive(Debug)]
pub struct CentralRuntime(Option<tokio::runtime::Runtime>);

impl Drop for CentralRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Central's store in the PostgreSQL database at `url` instead of a redb file (no
/// retention limit, plain connections).
///
/// # Errors
/// `url` is not a PostgreSQL URL.
pub fn store_in_postgres(cfg: &mut central::Config, url: &str) -> Result<(), String> {
    let url = central::config::PgUrl::parse(url)?;
    cfg.store_path = std::path::PathBuf::new();
    cfg.store = Some(central::config::StoreConfig {
        url,
        retention_months: None,
        ca_cert: None,
    });
    Ok(())
}

/// Opens central on a fresh store in `dir`, imports `n_ops` operators, `n_cons`
/// consignments and the bench MRA, and serves it on a free loopback port.
///
/// # Errors
/// The store, key, import or listener fails.
pub async fn start_central(
    dir: &Path,
    n_ops: u64,
    n_cons: u64,
) -> anyhow::Result<CentralUnderTest> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || open_central(&dir, n_ops, n_cons))
        .await
        .context("opening central")?
}

/// How many `nice` levels central's threads run below the agent's when apart
/// ([`start_central_apart`]): central then takes only the cores the agent leaves idle.
pub const CENTRAL_NICE: i32 = 10;

/// As [`start_central`], but central stands apart from the agent as on its own machine:
/// its store in `dir` (a folder on another device than the agent's journal, e.g. a RAM
/// folder) and every thread of it (runtime workers, blocking pool, the store's own
/// threads) `nice` levels below the agent's, so that it takes only the cores the agent
/// leaves idle and never the agent's disk. Threads inherit their creator's priority:
/// central is opened, and its runtime built, on one thread lowered first.
///
/// # Errors
/// As [`start_central`], or the priority cannot be lowered.
pub async fn start_central_apart(
    dir: &Path,
    n_ops: u64,
    n_cons: u64,
    nice: i32,
) -> anyhow::Result<CentralUnderTest> {
    let dir = dir.to_owned();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("central-host".into())
        .spawn(move || {
            let r = edge_agent::uplink::background::lower_this_thread(nice)
                .context("lowering central's priority")
                .and_then(|_| open_central(&dir, n_ops, n_cons));
            let _ = tx.send(r);
        })
        .context("starting central's thread")?;
    rx.await.context("central's thread ended")?
}

fn open_central(dir: &Path, n_ops: u64, n_cons: u64) -> anyhow::Result<CentralUnderTest> {
    use super::data;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding central")?;
    let addr = listener.local_addr()?;
    let mut cfg = central::Config::with_new_key_in(dir, addr)?;
    cfg.allow_plain_http_on_loopback = true;
    let hub = central::Central::open(&cfg)?;
    let ops = (0..n_ops)
        .map(data::operator)
        .collect::<Result<Vec<_>, _>>()?;
    hub.import_records(ops, "bench")?;
    hub.import_mras(vec![data::mra()], "bench")?;
    let cons = (0..n_cons)
        .map(|j| data::consignment(j, n_ops))
        .collect::<Result<Vec<_>, _>>()?;
    hub.import_consignments(cons, "bench")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("central")
        .enable_all()
        .build()
        .context("central's runtime")?;
    let stop = CancellationToken::new();
    let task = {
        let (hub, stop) = (hub.clone(), stop.clone());
        runtime.spawn(async move { central::serve_with_listener(hub, listener, cfg, stop).await })
    };
    Ok(CentralUnderTest {
        hub,
        url: format!("http://{addr}"),
        stop,
        task,
        runtime: CentralRuntime(Some(runtime)),
    })
}

/// The agent's link to `c` for gate `gate`, with a fresh agent token.
///
/// # Errors
/// Central refuses to issue the token.
pub fn central_link(
    c: &CentralUnderTest,
    gate: &str,
    uplink_batch: usize,
    heartbeat_every: Duration,
) -> anyhow::Result<CentralLink> {
    let g = protocol::schema::GateId::parse(gate).context("gate id")?;
    Ok(CentralLink {
        url: c.url.clone(),
        token: c.hub.issue_agent_token(&g, super::data::PORT)?,
        key_id: c.hub.key_id(),
        public_key: c.hub.public_key_hex(),
        uplink_batch,
        heartbeat_every,
    })
}

/// Waits until the agent's replica holds central's registry (sequence > 0).
///
/// # Errors
/// Not replicated within `within`.
pub async fn replicated(store: &edge_agent::store::Store, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while store.replica_meta().sequence == 0 {
        if Instant::now() > deadline {
            anyhow::bail!("the agent's replica was not loaded from central within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// A second loopback door to a running central that holds its visitors until opened.
///
/// The listener is bound at once, so the kernel completes every TCP handshake and keeps
/// the connection in its accept queue (listen(2) backlog); nothing reads from it until
/// [`HeldDoor::open`] is cancelled, when the same central starts serving on it too. A
/// client that was started against [`HeldDoor::url`] therefore sees a slow first answer,
/// not a refused connection, and does not fall into its retry back-off: figure 6 uses it
/// to let an agent's lanes settle before its backlog starts to drain.
#[derive(Debug)]
pub struct HeldDoor {
    pub url: String,
    /// Cancel to start serving.
    pub open: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Binds a [`HeldDoor`] for `c`, stopping with `stop`.
///
/// # Errors
/// The listener cannot be bound.
pub fn held_door(
    c: &CentralUnderTest,
    dir: &Path,
    stop: CancellationToken,
) -> anyhow::Result<HeldDoor> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding the held door")?;
    let addr = listener.local_addr()?;
    // Only the transport settings matter to `serve_with_listener`: the store is `c.hub`.
    let mut cfg = central::Config::new(
        addr,
        dir.join("central.redb"),
        dir.join("central-signing.key"),
    );
    cfg.allow_plain_http_on_loopback = true;
    let open = CancellationToken::new();
    let task = {
        let (hub, open) = (c.hub.clone(), open.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = open.cancelled() => {}
                () = stop.cancelled() => return Ok(()),
            }
            central::serve_with_listener(hub, listener, cfg, stop).await
        })
    };
    Ok(HeldDoor {
        url: format!("http://{addr}"),
        open,
        task,
    })
}
