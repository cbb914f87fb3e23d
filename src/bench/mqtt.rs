//! Figure 10: the agent driven over a real broker (mosquitto), at 50 trucks/s and at
//! saturation, beside a bare broker echo measured the same way in the same run.
//!
//! The agent is the `aeogate agent` daemon in a child process (so its CPU time is its
//! own: utime + stime from /proc/<pid>/stat), durable as deployed (read log before the
//! broker's PUBACK, journal with group commit), with the replica of the run's scale
//! loaded, [`LANES`] loop-less lanes each fed by an OCR topic, and its lane topics
//! published to the same broker. A truck is one OCR read of a declared container; the
//! lane closes after `quiet_close` ([`QUIET_CLOSE`]) without reads and the decision goes
//! out on `aeogate/<gate>/lanes/<lane>/decision`. Each lane runs closed loop: the next
//! truck is sent once the previous decision arrived (so nothing queues without bound).
//!
//! - **50 trucks/s**: 50 lanes, one truck a second each; latency = decision received −
//!   read published − `quiet_close`.
//! - **Saturation**: all [`LANES`] lanes back to back for [`SATURATION`]; decisions/s,
//!   agent CPU per decision, lane states dropped (`aeogate_mqtt_publish_dropped_total`,
//!   must stay 0) and superseded.
//! - **Broker echo** (baseline): a client on a thread of its own republishes every
//!   `echo/in/<lane>` message to `echo/out/<lane>` (QoS 1 both ways), driven by the same
//!   closed loop; its CPU per message is that thread's utime + stime.
//! - **The agent's I/O alone** (baseline, [`super::mqtt_floor`]): what the agent must do
//!   for a truck whatever it decides — the read logged durably before its PUBACK, the
//!   WAITING state, two chained journal entries committed, the decided state and the
//!   decision event — and nothing else, at 50 trucks/s and at saturation; its CPU per
//!   decision is the floor under the agent's.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::footprint::{clock_ticks, cpu_ticks, cpu_ticks_at, rss_of, spawn_agent, stop};
use super::stats::{Samples, fmt_bytes};
use super::{Ctx, Row, data, mqtt_floor, system};

/// Lanes of the agent (each its own OCR topic and lane topics).
pub const LANES: usize = 500;
/// Lanes driven at 50 trucks/s (one truck a second each).
pub const PACED_LANES: usize = 50;
/// The lanes' `quiet_close`: how long after the last read a loop-less lane closes.
pub const QUIET_CLOSE: Duration = Duration::from_millis(20);
/// How long each saturation phase runs.
pub const SATURATION: Duration = Duration::from_secs(15);
/// How long each 50 trucks/s phase runs.
pub const PACED: Duration = Duration::from_secs(20);
/// A truck whose decision does not arrive within this long is counted as lost.
const WAIT: Duration = Duration::from_secs(10);
const GATE: &str = "PORT1-G1";
/// Set to 1, figure 10 runs central too (in this process, at [`system::CENTRAL_NICE`]): the
/// agent loads its replica from central and forwards its journal to it, so its CPU a
/// decision includes the uplink.
const CENTRAL_VAR: &str = "AEOGATE_BENCH_FIG10_CENTRAL";

fn with_central() -> bool {
    std::env::var(CENTRAL_VAR).is_ok_and(|v| v == "1")
}

fn mosquitto_binary() -> anyhow::Result<std::path::PathBuf> {
    for p in ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"] {
        if Path::new(p).exists() {
            return Ok(p.into());
        }
    }
    bail!("figure 10 needs mosquitto (Debian package `mosquitto`; ./scripts/test installs it)")
}

/// The shipped broker configuration: the figure's broker runs with its queue and
/// in-flight limits.
const SHIPPED: &str = include_str!("../../packaging/mosquitto/aeogate.conf");

/// The value of a setting of [`SHIPPED`], when it has one.
fn shipped_word(key: &str) -> Option<&'static str> {
    SHIPPED.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        (words.next() == Some(key)).then(|| words.next()).flatten()
    })
}

/// A numeric setting of [`SHIPPED`].
fn shipped(key: &str) -> anyhow::Result<u32> {
    shipped_word(key)
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("packaging/mosquitto/aeogate.conf sets no number for {key}"))
}

/// Whether this run's broker sets TCP_NODELAY on its client sockets: the shipped
/// configuration's `set_tcp_nodelay`, or `AEOGATE_BENCH_MQTT_NODELAY` (`true`/`false`) to
/// compare the other.
fn broker_nodelay() -> anyhow::Result<bool> {
    let word = std::env::var("AEOGATE_BENCH_MQTT_NODELAY")
        .ok()
        .or_else(|| shipped_word("set_tcp_nodelay").map(str::to_owned))
        .unwrap_or_else(|| "false".to_owned());
    match word.as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => bail!("set_tcp_nodelay is true or false, not {other:?}"),
    }
}

/// The broker's in-flight window for this run: the shipped configuration's
/// `max_inflight_messages`, or `AEOGATE_BENCH_MQTT_INFLIGHT` to compare another.
fn broker_inflight() -> anyhow::Result<u32> {
    match std::env::var("AEOGATE_BENCH_MQTT_INFLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(n) => Ok(n),
        None => shipped("max_inflight_messages"),
    }
}

/// Starts mosquitto on a free loopback port with the queue limits of the shipped
/// configuration (packaging/mosquitto/aeogate.conf).
fn start_mosquitto(ctx: &Ctx) -> anyhow::Result<(Child, SocketAddr)> {
    let port = crate::broker::free_port()?;
    let conf = ctx.path("fig10-mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages {}\nmax_inflight_messages {}\nset_tcp_nodelay {}\n",
            shipped("max_queued_messages")?,
            broker_inflight()?,
            broker_nodelay()?
        ),
    )?;
    let log = std::fs::File::create(ctx.path("fig10-mosquitto.log"))?;
    let child = Command::new(mosquitto_binary()?)
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
        .context("starting mosquitto")?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            bail!("mosquitto did not listen on {addr} within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((child, addr))
}

fn agent_toml(
    broker: SocketAddr,
    store: &Path,
    console: u16,
    central: Option<&system::CentralLink>,
) -> String {
    use std::fmt::Write as _;
    let mut t = format!("[gate]\nid = \"{GATE}\"\nname = \"bench gate\"\nport = \"PORT1\"\n\n");
    for i in 1..=LANES {
        let _ = write!(
            t,
            "[[lanes]]\nid = \"L{i}\"\npresence_loop = false\nquiet_close = \"{}ms\"\ntransaction_timeout = \"30s\"\n\
             [lanes.routes]\nfast = \"Lane 1 priority\"\nstandard = \"Lane 2\"\ninspect = \"Inspection bay\"\n\n",
            QUIET_CLOSE.as_millis()
        );
    }
    let _ = write!(
        t,
        "[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nclient_id = \"bench-agent\"\nlane_topic_prefix = \"aeogate/{GATE}/lanes\"\n\n",
        broker.port()
    );
    for i in 1..=LANES {
        let _ = write!(
            t,
            "[[mqtt.topics]]\nfilter = \"readers/L{i}/ocr\"\nlane = \"L{i}\"\nkind = \"ocr\"\n\n"
        );
    }
    let _ = write!(
        t,
        "[store]\npath = {}\n\n",
        toml::Value::String(store.to_string_lossy().into_owned())
    );
    if let Some(c) = central {
        t.push_str(&system::central_toml(c));
    }
    t.push_str(
        "[policy]\nname = \"bench\"\nstaleness_bound = \"24h\"\nrequired_roles = [\"IMPORTER\", \"CARRIER\"]\nhome_programmes = [\"EU-AEO\"]\n\
         random_rate_aeo = 0.01\nrandom_rate_other = 0.05\nrandom_key = \"bench-random-key\"\n\n",
    );
    let _ = write!(t, "[console]\nbind = \"127.0.0.1:{console}\"\n");
    t
}

/// A client whose event loop runs on the current runtime until `stop`; every publish on
/// a topic `lane_of` maps to a lane (and `keep` accepts) is sent, with the instant it
/// arrived, to that lane's receiver.
async fn subscriber(
    broker: SocketAddr,
    id: &str,
    filter: &str,
    lanes: &[String],
    lane_of: fn(&str) -> Option<&str>,
    keep: fn(&[u8]) -> bool,
    stop: CancellationToken,
) -> anyhow::Result<HashMap<String, mpsc::UnboundedReceiver<Instant>>> {
    let opts = MqttOptions::new(id, "127.0.0.1", broker.port());
    let (client, ev) = system::subscribed_with(opts, filter, clients_nodelay()).await?;
    let (senders, receivers) = system::lane_channels(lanes);
    let retry = Duration::from_millis(20);
    system::forward_publishes(client, ev, retry, stop, move |p, at| {
        if keep(&p.payload)
            && let Some(tx) = lane_of(&p.topic).and_then(|l| senders.get(l))
        {
            let _ = tx.send(at);
        }
    });
    Ok(receivers)
}

/// A publishing client; its event loop runs until `stop`.
fn publisher(broker: SocketAddr, id: &str, stop: CancellationToken) -> AsyncClient {
    let mut opts = MqttOptions::new(id, "127.0.0.1", broker.port());
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_inflight(1_000);
    let (client, mut ev) = AsyncClient::new(opts, 10_000);
    if clients_nodelay() {
        system::set_nodelay(&mut ev);
    }
    system::drive_event_loop(ev, Duration::from_millis(20), stop);
    client
}

/// Whether the figure's own clients (the load generator's and the echo's) set
/// TCP_NODELAY, as the agent does: yes, unless `AEOGATE_BENCH_CLIENT_NODELAY=false`.
fn clients_nodelay() -> bool {
    std::env::var("AEOGATE_BENCH_CLIENT_NODELAY").map_or(true, |v| v != "false")
}

/// What a closed-loop run gave.
#[derive(Debug, Default)]
struct Driven {
    samples: Samples,
    done: u64,
    lost: u64,
    took: Duration,
}

impl Driven {
    /// Answers received a second.
    fn per_s(&self) -> f64 {
        self.done as f64 / self.took.as_secs_f64()
    }

    /// A figure-10 row for `measure`: the run's latency (its samples go into the row) and
    /// its rate in `unit`.
    fn row(&mut self, measure: String, unit: &'static str) -> Row {
        Row::new("10", measure)
            .latency(std::mem::take(&mut self.samples).summary())
            .throughput(self.per_s(), unit)
    }
}

/// The two loads figure 10 measures under.
#[derive(Debug, Clone, Copy)]
enum Load {
    /// The first [`PACED_LANES`] lanes, one truck (message) a second each, for [`PACED`].
    Paced,
    /// Every lane closed loop for [`SATURATION`].
    Saturation,
}

/// The readers' client and the lanes it publishes on.
struct Driver<'a> {
    client: &'a AsyncClient,
    lanes: &'a [String],
}

impl Driver<'_> {
    /// [`drive`] under `load`.
    async fn run(
        &self,
        load: Load,
        receivers: &mut HashMap<String, mpsc::UnboundedReceiver<Instant>>,
        topic: fn(&str) -> String,
        subtract: Duration,
    ) -> Driven {
        let (lanes, pace, length) = match load {
            Load::Paced => (
                &self.lanes[..PACED_LANES],
                Some(Duration::from_secs(1)),
                PACED,
            ),
            Load::Saturation => (self.lanes, None, SATURATION),
        };
        drive(self.client, receivers, lanes, topic, pace, length, subtract).await
    }
}

/// Drives `lanes` closed loop for `length`: publish a truck on `topic(lane)`, wait for the
/// lane's answer, record the time minus `subtract`; with `pace`, one truck per `pace` a
/// lane, the lanes' first trucks spread evenly over one `pace` (lane k of n starts k/n of
/// it late), so that trucks arrive one at a time as independent lanes' do, not all lanes
/// at once.
async fn drive(
    client: &AsyncClient,
    receivers: &mut HashMap<String, mpsc::UnboundedReceiver<Instant>>,
    lanes: &[String],
    topic: fn(&str) -> String,
    pace: Option<Duration>,
    length: Duration,
    subtract: Duration,
) -> Driven {
    let started = Instant::now();
    let end = started + length;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (k, lane) in lanes.iter().enumerate() {
        let Some(mut rx) = receivers.remove(lane) else {
            continue;
        };
        let (client, lane, next) = (client.clone(), lane.clone(), next.clone());
        let offset = pace.map_or(Duration::ZERO, |p| first_truck_after(p, k, lanes.len()));
        tasks.push(tokio::spawn(async move {
            let mut out = Driven::default();
            tokio::time::sleep(offset).await;
            while let Some(rest) = end.checked_duration_since(Instant::now()) {
                while rx.try_recv().is_ok() {}
                let j = next.fetch_add(1, Ordering::Relaxed) % 50_000;
                let body = format!(
                    "{{\"container\":\"{}\",\"confidence\":95}}",
                    data::container(j)
                        .map(|c| c.to_string())
                        .unwrap_or_default()
                );
                let t0 = Instant::now();
                if client
                    .publish(topic(&lane), QoS::AtLeastOnce, false, body)
                    .await
                    .is_err()
                {
                    out.lost += 1;
                    break;
                }
                match tokio::time::timeout(WAIT, rx.recv()).await {
                    Ok(Some(at)) => {
                        out.samples
                            .push(at.duration_since(t0).saturating_sub(subtract));
                        out.done += 1;
                    }
                    _ => {
                        out.lost += 1;
                        break;
                    }
                }
                if let Some(p) = pace {
                    let wait = p.saturating_sub(t0.elapsed()).min(rest);
                    tokio::time::sleep(wait).await;
                }
            }
            (lane, rx, out)
        }));
    }
    let mut all = Driven::default();
    for t in tasks {
        if let Ok((lane, rx, out)) = t.await {
            receivers.insert(lane, rx);
            all.samples.extend(out.samples);
            all.done += out.done;
            all.lost += out.lost;
        }
    }
    all.took = started.elapsed();
    all
}

/// How long after the start lane `k` of `n` paced one truck per `pace` sends its first:
/// `k/n` of `pace`, so the lanes' trucks arrive evenly spread.
fn first_truck_after(pace: Duration, k: usize, n: usize) -> Duration {
    let n = u32::try_from(n).unwrap_or(u32::MAX).max(1);
    (pace / n).saturating_mul(u32::try_from(k).unwrap_or(u32::MAX))
}

/// The measure of a saturation row: `what` at saturation, every lane (its `lanes`) closed
/// loop for [`SATURATION`].
fn saturation(what: &str, lanes: &str) -> String {
    format!(
        "{what} at saturation, {LANES} {lanes} closed loop, {} s",
        SATURATION.as_secs()
    )
}

fn lane_names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("L{i}")).collect()
}

fn decision_lane(topic: &str) -> Option<&str> {
    // aeogate/<gate>/lanes/<lane>/decision
    let mut parts = topic.split('/');
    let lane = parts.nth(3)?;
    (parts.next() == Some("decision")).then_some(lane)
}

fn echo_lane(topic: &str) -> Option<&str> {
    topic.strip_prefix("echo/out/")
}

fn not_waiting(payload: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| v.get("decision")?.as_str().map(|d| d != "WAITING"))
        .unwrap_or(false)
}

fn any_payload(_: &[u8]) -> bool {
    true
}

/// The agent's journal commit times so far (`aeogate_journal_commit_seconds`' buckets).
async fn agent_commit_buckets(console: u16) -> Vec<(f64, f64)> {
    let Ok(r) = reqwest::get(format!("http://127.0.0.1:{console}/metrics")).await else {
        return Vec::new();
    };
    super::stats::histogram_buckets(
        &r.text().await.unwrap_or_default(),
        "aeogate_journal_commit_seconds",
    )
}

/// One of the agent's counters from its console's /metrics (0 when absent).
async fn agent_counter(console: u16, name: &str) -> f64 {
    let Ok(r) = reqwest::get(format!("http://127.0.0.1:{console}/metrics")).await else {
        return f64::NAN;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit_once(' ')?.1.trim().parse::<f64>().ok())
        .sum()
}

/// The echo client: on a thread of its own with a single-threaded runtime, republishes
/// `echo/in/<lane>` to `echo/out/<lane>` until `stop`; returns its CPU ticks.
fn start_echo(
    broker: SocketAddr,
    stop: CancellationToken,
) -> anyhow::Result<std::thread::JoinHandle<u64>> {
    let (mut ready, ready_rx) = mqtt_floor::Ready::channel();
    let handle = std::thread::spawn(move || {
        let Some(rt) = ready.runtime() else {
            return 0;
        };
        rt.block_on(async move {
            let start = cpu_ticks_at("/proc/thread-self/stat").unwrap_or(0);
            let mut opts = MqttOptions::new("bench-echo", "127.0.0.1", broker.port());
            opts.set_keep_alive(Duration::from_secs(30));
            opts.set_inflight(1_000);
            let (client, mut ev) = AsyncClient::new(opts, 10_000);
            if clients_nodelay() {
                system::set_nodelay(&mut ev);
            }
            if client.subscribe("echo/in/+", QoS::AtLeastOnce).await.is_err() {
                ready.failed("echo subscribe");
                return 0;
            }
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    e = ev.poll() => match e {
                        Ok(Event::Incoming(Packet::SubAck(_))) => ready.subscribed(),
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            if let Some(lane) = p.topic.strip_prefix("echo/in/") {
                                let _ = client.try_publish(format!("echo/out/{lane}"), QoS::AtLeastOnce, false, p.payload);
                            }
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            }
            cpu_ticks_at("/proc/thread-self/stat")
                .unwrap_or(0)
                .saturating_sub(start)
        })
    });
    mqtt_floor::wait_ready(&ready_rx, "echo")?;
    Ok(handle)
}

/// Runs figure 10.
///
/// # Errors
/// mosquitto is missing, or the agent or a client cannot be started.
pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let (mut broker, addr) = start_mosquitto(ctx)?;
    let store_path = ctx.path("fig10-agent.redb");
    let n = u64::try_from(ctx.n).unwrap_or(u64::MAX);
    // With central, the agent loads its replica from central's registry (the same
    // records) and forwards its journal to it; without, the replica is loaded here.
    let central = if with_central() {
        let dir = ctx.path("fig10-central");
        std::fs::create_dir_all(&dir)?;
        Some(system::block_on(system::start_central_apart(
            &dir,
            n,
            n,
            system::CENTRAL_NICE,
        ))?)
    } else {
        drop(data::loaded_store(&store_path, n, n).context("loading the agent's replica")?);
        None
    };
    let link = central
        .as_ref()
        .map(|c| system::central_link(c, GATE, 1_000, Duration::from_secs(30)))
        .transpose()?;
    let console = crate::broker::free_port()?;
    let cfg = ctx.path("fig10-agent.toml");
    std::fs::write(&cfg, agent_toml(addr, &store_path, console, link.as_ref()))?;
    let log = std::fs::File::create(ctx.path("fig10-agent.log"))?;
    let mut aeogate = Command::new(std::env::current_exe().context("the aeogate executable")?);
    let mut agent = spawn_agent(aeogate.arg("agent"), &cfg, log).context("starting the agent")?;
    let floor_store = ctx.path("fig10-floor.redb");
    let result = system::block_on(measure(
        addr,
        &agent,
        broker.id(),
        console,
        &floor_store,
        central.is_some(),
    ));
    stop(&mut agent);
    if let Some(c) = central {
        c.stop.cancel();
    }
    let _ = broker.kill();
    let _ = broker.wait();
    result
}

#[allow(clippy::too_many_lines)]
async fn measure(
    addr: SocketAddr,
    agent: &Child,
    broker_pid: u32,
    console: u16,
    floor_store: &Path,
    uplink: bool,
) -> anyhow::Result<Vec<Row>> {
    // reqwest (the agent's /metrics) needs a TLS provider even for plain HTTP.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pid = agent.id();
    let stop = CancellationToken::new();
    let lanes = lane_names(LANES);
    let mut decisions = subscriber(
        addr,
        "bench-decisions",
        &format!("aeogate/{GATE}/lanes/+/decision"),
        &lanes,
        decision_lane,
        not_waiting,
        stop.clone(),
    )
    .await?;
    let client = publisher(addr, "bench-readers", stop.clone());
    if uplink {
        // Deciding against central's registry: the agent's replica loaded from it.
        let deadline = Instant::now() + Duration::from_secs(300);
        // NaN (no answer yet) and 0 (an empty replica) both mean not loaded.
        while agent_counter(console, "aeogate_replica_sequence")
            .await
            .partial_cmp(&0.0)
            != Some(std::cmp::Ordering::Greater)
        {
            if Instant::now() > deadline {
                bail!("the agent's replica was not loaded from central within 300 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // The agent is up once a read on the last lane comes back decided.
    let deadline = Instant::now() + Duration::from_secs(120);
    let last = lanes[LANES - 1].clone();
    loop {
        let probe = drive(
            &client,
            &mut decisions,
            std::slice::from_ref(&last),
            agent_topic,
            None,
            Duration::from_millis(1),
            QUIET_CLOSE,
        )
        .await;
        if probe.done > 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the agent decided no read within 120 s of starting");
        }
    }
    let ticks = clock_ticks() as f64;
    let mut rows = Vec::new();

    // 50 trucks/s.
    let driver = Driver {
        client: &client,
        lanes: &lanes,
    };
    let c0 = cpu_ticks(pid)?;
    let paced = driver
        .run(Load::Paced, &mut decisions, agent_topic, QUIET_CLOSE)
        .await;
    let paced_cpu = (cpu_ticks(pid)?.saturating_sub(c0)) as f64 / ticks;
    let paced_per_s = paced.per_s();
    let p = paced.samples.summary();
    let p99_ok = p.p99.is_some_and(|d| d <= Duration::from_millis(5)) && paced.lost == 0;
    rows.push(
        Row::new(
            "10",
            format!("agent over mosquitto, {PACED_LANES} lanes × 1 truck/s: read published → decision received, beyond quiet_close ({} ms)", QUIET_CLOSE.as_millis()),
        )
        .latency(p)
        .throughput(paced_per_s, "decisions")
        .target("p99 ≤ 5 ms", p99_ok)
        .note(format!(
            "{} decided, {} lost; agent CPU {:.0} µs a decision at this rate",
            paced.done,
            paced.lost,
            paced_cpu * 1e6 / paced.done.max(1) as f64
        )),
    );

    // Saturation.
    let dropped0 = agent_counter(console, "aeogate_mqtt_publish_dropped_total").await;
    let superseded_name = "aeogate_mqtt_lane_states_superseded_total{topic=\"state\"}";
    let superseded_decisions_name = "aeogate_mqtt_lane_states_superseded_total{topic=\"decision\"}";
    let superseded0 = agent_counter(console, superseded_name).await;
    let superseded_decisions0 = agent_counter(console, superseded_decisions_name).await;
    let commits_name = "aeogate_journal_group_requests_count";
    let commits0 = agent_counter(console, commits_name).await;
    let commit_times0 = agent_commit_buckets(console).await;
    let c0 = cpu_ticks(pid)?;
    let shares0 = Shares::now(broker_pid);
    let mut sat = driver
        .run(Load::Saturation, &mut decisions, agent_topic, QUIET_CLOSE)
        .await;
    let sat_cpu = (cpu_ticks(pid)?.saturating_sub(c0)) as f64 / ticks;
    let shares = Shares::now(broker_pid).since(&shares0, sat.took, ticks);
    let dropped = agent_counter(console, "aeogate_mqtt_publish_dropped_total").await - dropped0;
    let superseded = agent_counter(console, superseded_name).await - superseded0;
    let superseded_decisions =
        agent_counter(console, superseded_decisions_name).await - superseded_decisions0;
    let commits = agent_counter(console, commits_name).await - commits0;
    let commit_times =
        super::stats::fmt_commits(&commit_times0, &agent_commit_buckets(console).await);
    let uplinked = if uplink {
        format!(
            "on (batches of 1,000; central in this process at nice {}, counted with the load generator), {} entries not yet acknowledged at the end",
            system::CENTRAL_NICE,
            agent_counter(console, "aeogate_uplink_backlog").await
        )
    } else {
        "off (no central)".to_owned()
    };
    let (_, hwm) = rss_of(pid);
    let per_s = sat.per_s();
    let cpu_us = sat_cpu * 1e6 / sat.done.max(1) as f64;
    let core_share = sat_cpu / sat.took.as_secs_f64();
    rows.push(
        sat.row(saturation("agent over mosquitto", "lanes"), "decisions")
        .rss(hwm)
        .target("≥ 10,000 decisions/s, ≤ 60 µs CPU a decision, 0 lane states dropped", per_s >= 10_000.0 && cpu_us <= 60.0 && dropped == 0.0 && sat.lost == 0)
        .note(format!(
            "agent CPU {cpu_us:.0} µs a decision ({core_share:.2} of a core; meanwhile mosquitto {:.2}, the load generator {:.2}, the whole machine busy {:.2} of its {} cores); lane states dropped {dropped}, superseded on the state topic {superseded} (a WAITING replaced by its decision before it went out), on the decision topic {superseded_decisions}; {} trucks without a decision within 10 s; {commits} journal commits holding decisions ({:.1} decisions a commit; all the journal's commits: {commit_times}); broker in-flight window {}, TCP_NODELAY {}; uplink {uplinked}; agent peak RSS {}",
            shares.broker,
            shares.driver,
            shares.machine,
            shares.cores,
            sat.lost,
            sat.done as f64 / commits.max(1.0),
            broker_inflight()?,
            if broker_nodelay()? { "on" } else { "off" },
            fmt_bytes(hwm)
        )),
    );

    // The broker echo, driven the same way.
    let echo_stop = CancellationToken::new();
    let echo = start_echo(addr, echo_stop.clone())?;
    let mut echoes = subscriber(
        addr,
        "bench-echo-out",
        "echo/out/+",
        &lanes,
        echo_lane,
        any_payload,
        stop.clone(),
    )
    .await?;
    let mut paced_echo = driver
        .run(Load::Paced, &mut echoes, echo_topic, Duration::ZERO)
        .await;
    rows.push(
        paced_echo
            .row(
                format!(
                    "baseline: broker echo, {PACED_LANES} topics × 1 message/s, published → echoed back"
                ),
                "messages",
            )
            .note(format!(
                "{} echoed, {} lost",
                paced_echo.done, paced_echo.lost
            )),
    );
    let before = std::time::Instant::now();
    let mut sat_echo = driver
        .run(Load::Saturation, &mut echoes, echo_topic, Duration::ZERO)
        .await;
    let echo_took = before.elapsed();
    echo_stop.cancel();
    let echo_ticks = echo.join().unwrap_or(0) as f64 / ticks;
    let echoed = paced_echo.done + sat_echo.done;
    let echo_per_s = sat_echo.per_s();
    rows.push(
        sat_echo.row(saturation("baseline: broker echo", "topics"), "messages")
        .note(format!(
            "echo client CPU {:.0} µs a message over both runs ({:.2} of a core at saturation); {} lost; ratio agent/echo {:.2}× the rate",
            echo_ticks * 1e6 / echoed.max(1) as f64,
            echo_ticks / (echo_took + paced_echo.took).as_secs_f64(),
            sat_echo.lost,
            per_s / echo_per_s.max(1.0)
        )),
    );

    // The agent's input and output alone (mqtt_floor.rs), driven the same way.
    let floor_stop = CancellationToken::new();
    let floor = mqtt_floor::start(addr, floor_store, QUIET_CLOSE, floor_stop.clone())?;
    let mut floors = subscriber(
        addr,
        "bench-floor-out",
        "floor/out/+/decision",
        &lanes,
        mqtt_floor::decision_lane,
        any_payload,
        stop.clone(),
    )
    .await?;
    let mut paced_floor = driver
        .run(Load::Paced, &mut floors, mqtt_floor::topic_in, QUIET_CLOSE)
        .await;
    rows.push(
        paced_floor
            .row(
                format!("baseline: the agent's I/O alone, {PACED_LANES} lanes × 1 truck/s, beyond quiet_close"),
                "decisions",
            )
            .note(format!("{} decided, {} lost", paced_floor.done, paced_floor.lost)),
    );
    let c0 = floor.cpu_ticks();
    drop(floor.take_commits());
    let mut sat_floor = driver
        .run(
            Load::Saturation,
            &mut floors,
            mqtt_floor::topic_in,
            QUIET_CLOSE,
        )
        .await;
    let floor_cpu = floor.cpu_ticks().saturating_sub(c0) as f64 / ticks;
    let commits = floor.take_commits();
    let mut commit_times = Samples::default();
    for c in &commits {
        commit_times.push(c.took);
    }
    let reads_logged: usize = commits.iter().map(|c| c.reads).sum();
    let with_reads = commits.iter().filter(|c| c.reads > 0).count();
    let ct = commit_times.summary();
    floor_stop.cancel();
    floor.join();
    let floor_per_s = sat_floor.per_s();
    let floor_us = floor_cpu * 1e6 / sat_floor.done.max(1) as f64;
    rows.push(
        sat_floor.row(saturation("baseline: the agent's I/O alone", "lanes"), "decisions")
        .note(format!(
            "I/O floor CPU {floor_us:.0} µs a decision ({:.2} of a core): read log before PUBACK, WAITING state, two {}-byte chained entries, decided state and decision event, group commit; {} commits ({:.1}/s), each p50 {} / p99 {} / max {} (fsync included), {:.1} reads a commit that logged any (the broker's in-flight window is {}); {} lost; agent at {:.2}× the floor's CPU a decision and {:.2}× its rate",
            floor_cpu / sat_floor.took.as_secs_f64(),
            mqtt_floor::ENTRY_BYTES,
            commits.len(),
            commits.len() as f64 / sat_floor.took.as_secs_f64(),
            super::stats::fmt_duration(ct.p50),
            super::stats::fmt_duration(ct.p99),
            super::stats::fmt_duration(ct.max),
            reads_logged as f64 / with_reads.max(1) as f64,
            broker_inflight()?,
            sat_floor.lost,
            cpu_us / floor_us.max(f64::MIN_POSITIVE),
            per_s / floor_per_s.max(1.0)
        )),
    );
    stop.cancel();
    Ok(rows)
}

/// CPU counters read at one moment: mosquitto's, this process's (the load generator:
/// the driving clients; the floor and echo threads are idle while the agent is driven),
/// and the whole machine's busy and total time from `/proc/stat`.
struct Shares {
    broker: u64,
    driver: u64,
    busy: u64,
    total: u64,
}

/// Shares of a core over a phase.
struct PhaseShares {
    broker: f64,
    driver: f64,
    /// Busy cores of the whole machine (all processes).
    machine: f64,
    cores: usize,
}

impl Shares {
    fn now(broker_pid: u32) -> Self {
        let (busy, total) = machine_ticks().unwrap_or((0, 0));
        Self {
            broker: cpu_ticks(broker_pid).unwrap_or(0),
            driver: cpu_ticks(std::process::id()).unwrap_or(0),
            busy,
            total,
        }
    }

    fn since(&self, before: &Self, took: Duration, ticks: f64) -> PhaseShares {
        let secs = took.as_secs_f64().max(f64::MIN_POSITIVE) * ticks;
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let total = self.total.saturating_sub(before.total) as f64;
        PhaseShares {
            broker: self.broker.saturating_sub(before.broker) as f64 / secs,
            driver: self.driver.saturating_sub(before.driver) as f64 / secs,
            machine: if total > 0.0 {
                self.busy.saturating_sub(before.busy) as f64 / total * cores as f64
            } else {
                f64::NAN
            },
            cores,
        }
    }
}

/// The machine's busy and total CPU time in clock ticks (all cores), from `/proc/stat`'s
/// `cpu` line: idle and iowait are not busy.
fn machine_ticks() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_line(text.lines().next()?)
}

fn parse_cpu_line(line: &str) -> Option<(u64, u64)> {
    let mut f = line.split_whitespace();
    if f.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = f.map(|x| x.parse().ok()).collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

fn agent_topic(lane: &str) -> String {
    format!("readers/{lane}/ocr")
}

fn echo_topic(lane: &str) -> String {
    format!("echo/in/{lane}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_s_busy_time_leaves_out_idle_and_iowait() {
        assert_eq!(
            parse_cpu_line("cpu  100 5 50 1000 20 1 2 3 0 0"),
            Some((161, 1181))
        );
        assert_eq!(parse_cpu_line("cpu0 1 2 3 4"), None);
        assert_eq!(parse_cpu_line("cpu x"), None);
        assert!(machine_ticks().is_some_and(|(busy, total)| busy <= total));
    }

    #[test]
    fn paced_lanes_send_their_first_trucks_spread_over_one_pace() {
        let pace = Duration::from_secs(1);
        let starts: Vec<Duration> = (0..PACED_LANES)
            .map(|k| first_truck_after(pace, k, PACED_LANES))
            .collect();
        assert_eq!(starts[0], Duration::ZERO);
        assert_eq!(starts[1], Duration::from_millis(20));
        assert_eq!(starts[PACED_LANES - 1], Duration::from_millis(980));
        assert!(
            starts
                .windows(2)
                .all(|w| w[1] - w[0] == Duration::from_millis(20))
        );
        assert_eq!(first_truck_after(pace, 3, 0), Duration::from_secs(3));
    }

    #[test]
    fn the_shipped_broker_sets_tcp_nodelay_on_its_client_sockets() {
        // A lane state or a read behind Nagle's algorithm waits up to a delayed ACK.
        assert_eq!(shipped_word("set_tcp_nodelay"), Some("true"));
        assert_eq!(shipped_word("max_inflight_messages"), Some("500"));
    }

    #[test]
    fn lanes_come_from_the_decision_and_echo_topics_only() {
        assert_eq!(decision_lane("aeogate/G/lanes/L7/decision"), Some("L7"));
        assert_eq!(decision_lane("aeogate/G/lanes/L7/state"), None);
        assert_eq!(echo_lane("echo/out/L3"), Some("L3"));
        assert_eq!(echo_lane("echo/in/L3"), None);
        assert!(not_waiting(br#"{"decision":"FAST"}"#));
        assert!(!not_waiting(br#"{"decision":"WAITING"}"#));
        assert!(!not_waiting(b"garbage"));
    }

    /// The I/O floor over a real mosquitto: every truck answered after its quiet close,
    /// each read logged and then consumed, two chained entries journaled a truck.
    #[test]
    fn the_floor_answers_every_truck_and_journals_two_chained_entries_for_it() {
        use redb::{ReadableDatabase as _, ReadableTable as _, ReadableTableMetadata as _};
        use sha2::{Digest as _, Sha256};
        let dir = tempfile::tempdir().expect("tempdir");
        let ctx = Ctx {
            n: 1,
            dir: dir.path().to_path_buf(),
            keep: None,
        };
        let (mut broker, addr) = start_mosquitto(&ctx).expect("mosquitto (Debian package)");
        let store = ctx.path("floor.redb");
        let stop = CancellationToken::new();
        let floor = mqtt_floor::start(addr, &store, QUIET_CLOSE, stop.clone()).expect("floor");
        let lanes = lane_names(3);
        let driven = system::block_on(async {
            let mut answers = subscriber(
                addr,
                "t-floor-out",
                "floor/out/+/decision",
                &lanes,
                mqtt_floor::decision_lane,
                any_payload,
                stop.clone(),
            )
            .await
            .expect("subscriber");
            let client = publisher(addr, "t-floor-in", stop.clone());
            Ok(drive(
                &client,
                &mut answers,
                &lanes,
                mqtt_floor::topic_in,
                Some(Duration::from_millis(100)),
                Duration::from_secs(1),
                Duration::ZERO,
            )
            .await)
        })
        .expect("driven");
        let commits = floor.take_commits();
        stop.cancel();
        floor.join();
        let _ = broker.kill();
        let _ = broker.wait();
        assert_eq!(driven.lost, 0);
        assert!(
            driven.done >= 9,
            "three lanes, a truck each 100 ms: {}",
            driven.done
        );
        let done = usize::try_from(driven.done).expect("count");
        assert!(
            driven
                .samples
                .summary()
                .p50
                .is_some_and(|d| d >= QUIET_CLOSE),
            "a decision comes after the lane's quiet close"
        );
        assert_eq!(commits.iter().map(|c| c.reads).sum::<usize>(), done);
        assert_eq!(commits.iter().map(|c| c.closed).sum::<usize>(), done);
        let db = redb::Database::open(&store).expect("floor store");
        let r = db.begin_read().expect("read");
        let reads = r
            .open_table(redb::TableDefinition::<u64, &[u8]>::new("floor_reads"))
            .expect("reads");
        assert_eq!(
            reads.len().expect("len"),
            0,
            "every read consumed by its truck"
        );
        let journal = r
            .open_table(redb::TableDefinition::<u64, &[u8]>::new("floor_journal"))
            .expect("journal");
        let mut prev = [0u8; 32];
        let mut n = 0;
        for item in journal.iter().expect("iter") {
            let (_, v) = item.expect("entry");
            let v = v.value();
            assert_eq!(v.len(), mqtt_floor::ENTRY_BYTES);
            let mut body = v.to_vec();
            body[..32].copy_from_slice(&[b'x'; 32]);
            let h: [u8; 32] = Sha256::new()
                .chain_update(prev)
                .chain_update(&body)
                .finalize()
                .into();
            assert_eq!(v[..32], h, "entry {n} chained to the one before");
            prev = h;
            n += 1;
        }
        assert_eq!(n, 2 * done, "two entries a truck");
    }

    #[test]
    fn the_agent_configuration_is_accepted_by_the_agent() {
        let link = system::CentralLink {
            url: "http://127.0.0.1:9".into(),
            token: "t".into(),
            key_id: "k1".into(),
            public_key: "00".repeat(32),
            uplink_batch: 1_000,
            heartbeat_every: Duration::from_secs(30),
        };
        for central in [None, Some(&link)] {
            let text = agent_toml(
                ([127, 0, 0, 1], 1883).into(),
                Path::new("/tmp/fig10.redb"),
                9,
                central,
            );
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("a.toml");
            std::fs::write(&path, text).expect("write");
            let cfg = edge_agent::config::Config::load(&path).expect("valid configuration");
            assert_eq!(cfg.lanes.len(), LANES);
            assert_eq!(
                cfg.central.as_ref().map(|c| c.uplink_batch),
                central.map(|c| c.uplink_batch),
                "the uplink is configured exactly when central is"
            );
        }
    }
}
