//! A virtual fixed UHF reader speaking LLRP 1.1 on a TCP port (`aeogate reader llrp`), for
//! the demo and the tests.
//!
//! It serves one client at a time, as a fixed reader does: on connect it reports a
//! `ConnectionAttemptEvent` (a second client is refused with status 2 and closed); it
//! answers version negotiation, capabilities (antenna count, a transmit power table of
//! 10.00–30.00 dBm in 0.25 dB steps), antenna properties (GET_READER_CONFIG: which cables
//! are connected) and SET_READER_CONFIG (event notifications,
//! keepalive period, default report spec, reset); it keeps ROSpecs through
//! add/enable/start/stop/disable/delete with the states of LLRP 1.1 §7 (disabled →
//! inactive → active; an immediate start trigger activates on enable); while a ROSpec is
//! active, every inventory cycle reports the tags in the field of its antennas as
//! `RO_ACCESS_REPORT`s, shaped by the ROSpec's report spec (N tags per report, the content
//! selector's fields; trigger 0 holds them for GET_REPORT). It sends keepalives when asked
//! to and counts their acknowledgements.
//!
//! The test and demo side drives the field ([`VirtualReader::arrive`], [`leave`]) and the
//! faults a gate sees: an antenna cable pulled ([`set_antenna`], reported as an
//! `AntennaEvent` when the client enabled antenna events), the reader going silent (no
//! keepalives, reports or answers, the connection left open), the connection dropped, and
//! connections refused for a while.
//!
//! [`leave`]: VirtualReader::leave
//! [`set_antenna`]: VirtualReader::set_antenna

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use std::io::Write as _;

use anyhow::Context as _;
use protocol::llrp::{
    self, Capabilities, Check, ContentSelector, EventData, Header, Message, PowerLevel,
    ReaderEvent, ReportSpec, RoSpec, RoSpecOp, Status, TagReport, event, msg, status,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How often the virtual reader runs an inventory round on its active ROSpecs.
pub const DEFAULT_CYCLE: Duration = Duration::from_millis(200);
/// Reports held for GET_REPORT (report trigger 0) beyond this are dropped, oldest first.
const MAX_HELD_REPORTS: usize = 10_000;

/// Settings of a virtual reader.
#[derive(Debug, Clone)]
pub struct VirtualReaderConfig {
    /// Antennas 1..=`antennas`.
    pub antennas: u16,
    /// Time between inventory rounds.
    pub cycle: Duration,
}

impl Default for VirtualReaderConfig {
    fn default() -> Self {
        Self {
            antennas: 4,
            cycle: DEFAULT_CYCLE,
        }
    }
}

/// What the reader has done, for tests and the command line's status line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReaderStats {
    /// Client connections served (refused ones not counted).
    pub connections: u64,
    /// Connections refused (a client was already connected, or refusing was asked for).
    pub refused: u64,
    /// Messages received, by message type.
    pub received: BTreeMap<u16, u64>,
    /// TagReportData sent.
    pub tag_reports: u64,
    pub keepalives_sent: u64,
    pub keepalive_acks: u64,
    /// ROSpecs currently added, by id, with their state (0 disabled, 1 inactive, 2 active).
    pub rospecs: BTreeMap<u32, u8>,
    /// Whether a client is connected now.
    pub connected: bool,
    /// Protocol version in use on the current (or last) connection.
    pub version: u8,
    /// Transmit power index the client last configured per antenna.
    pub power_index: BTreeMap<u16, u16>,
}

#[derive(Debug)]
struct Shared {
    cfg: VirtualReaderConfig,
    /// Tags in the field of each antenna.
    field: BTreeMap<u16, Vec<Vec<u8>>>,
    disconnected: BTreeSet<u16>,
    /// Antenna events waiting for the connection task.
    pending_events: Vec<ReaderEvent>,
    silent: bool,
    refuse_until: Option<Instant>,
    /// Bumped to make the connection task drop its socket.
    drop_generation: u64,
    /// Whether a drop sends a ConnectionCloseEvent first.
    drop_gracefully: bool,
    stats: ReaderStats,
    // Reader configuration, kept across connections like a real reader's.
    rospecs: BTreeMap<u32, RoSpecState>,
    keepalive: Option<Duration>,
    notify: BTreeMap<u16, bool>,
    default_report: ReportSpec,
    hold_reports: Vec<TagReport>,
}

#[derive(Debug, Clone)]
struct RoSpecState {
    spec: RoSpec,
    state: u8,
    started: Option<Instant>,
}

/// A running virtual LLRP reader. Dropping it stops it.
#[derive(Debug)]
pub struct VirtualReader {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    stop: CancellationToken,
}

impl Drop for VirtualReader {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn capabilities(antennas: u16) -> Capabilities {
    Capabilities {
        max_antennas: Some(antennas),
        manufacturer: Some(0),
        model: Some(1),
        firmware: Some(concat!("aeogate-virtual-reader ", env!("CARGO_PKG_VERSION")).into()),
        power_levels: (0..=80u16)
            .map(|i| PowerLevel {
                index: i + 1,
                dbm_x100: 1000 + 25 * i.cast_signed(),
            })
            .collect(),
    }
}

fn default_report() -> ReportSpec {
    ReportSpec {
        trigger: 2,
        n: 0,
        content: ContentSelector::GATE_READS,
    }
}

fn default_notify() -> BTreeMap<u16, bool> {
    // Readers start with every event off but the ones LLRP 1.1 §13.2.6.1 makes mandatory
    // to report (connection attempt and close are always sent).
    BTreeMap::new()
}

impl VirtualReader {
    /// Starts a reader listening on `bind` (port 0 picks a free port).
    pub async fn start(cfg: VirtualReaderConfig, bind: SocketAddr) -> anyhow::Result<Self> {
        anyhow::ensure!(cfg.antennas > 0, "a reader needs at least one antenna");
        anyhow::ensure!(
            !cfg.cycle.is_zero(),
            "the inventory cycle must be longer than zero"
        );
        let listener = TcpListener::bind(bind)
            .await
            .with_context(|| format!("bind the LLRP listener on {bind}"))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Mutex::new(Shared {
            cfg,
            field: BTreeMap::new(),
            disconnected: BTreeSet::new(),
            pending_events: Vec::new(),
            silent: false,
            refuse_until: None,
            drop_generation: 0,
            drop_gracefully: false,
            stats: ReaderStats {
                version: llrp::VERSION_1_0_1,
                ..ReaderStats::default()
            },
            rospecs: BTreeMap::new(),
            keepalive: None,
            notify: default_notify(),
            default_report: default_report(),
            hold_reports: Vec::new(),
        }));
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, shared.clone(), stop.clone()));
        Ok(Self { addr, shared, stop })
    }

    /// The address clients connect to.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Tags enter the field of `antenna` (replacing what was there).
    pub fn arrive(&self, antenna: u16, tags: Vec<Vec<u8>>) {
        lock(&self.shared).field.insert(antenna, tags);
    }

    /// The field of `antenna` empties.
    pub fn leave(&self, antenna: u16) {
        lock(&self.shared).field.remove(&antenna);
    }

    /// Connects or disconnects an antenna's cable; the client hears of it by an
    /// `AntennaEvent` when it enabled antenna events.
    pub fn set_antenna(&self, antenna: u16, connected: bool) {
        let mut s = lock(&self.shared);
        let changed = if connected {
            s.disconnected.remove(&antenna)
        } else {
            s.disconnected.insert(antenna)
        };
        if changed {
            s.pending_events
                .push(ReaderEvent::Antenna { connected, antenna });
        }
    }

    /// Stops (or resumes) sending anything: keepalives, reports and answers.
    pub fn set_silent(&self, silent: bool) {
        lock(&self.shared).silent = silent;
    }

    /// Drops the current connection; `graceful` sends a `ConnectionCloseEvent` first.
    pub fn drop_connection(&self, graceful: bool) {
        let mut s = lock(&self.shared);
        s.drop_generation += 1;
        s.drop_gracefully = graceful;
    }

    /// Closes every connection attempt during the next `for_how_long`.
    pub fn refuse_for(&self, for_how_long: Duration) {
        lock(&self.shared).refuse_until = Some(Instant::now() + for_how_long);
    }

    /// What the reader has done so far.
    #[must_use]
    pub fn stats(&self) -> ReaderStats {
        let s = lock(&self.shared);
        let mut stats = s.stats.clone();
        stats.rospecs = s.rospecs.iter().map(|(id, r)| (*id, r.state)).collect();
        stats
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Mutex<Shared>>, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((mut socket, peer)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = socket.set_nodelay(true);
        let (busy, refusing, version) = {
            let s = lock(&shared);
            (
                s.stats.connected,
                s.refuse_until.is_some_and(|t| Instant::now() < t),
                s.stats.version,
            )
        };
        if refusing {
            lock(&shared).stats.refused += 1;
            drop(socket);
            continue;
        }
        if busy {
            // LLRP 1.1 §14.2.1: "failed, a client-initiated connection already exists".
            lock(&shared).stats.refused += 1;
            let refusal = notification(vec![ReaderEvent::ConnectionAttempt { status: 2 }]);
            let _ = socket.write_all(&refusal.encode(version, 0)).await;
            continue;
        }
        {
            let mut s = lock(&shared);
            s.stats.connected = true;
            s.stats.connections += 1;
            s.stats.version = llrp::VERSION_1_0_1;
        }
        tracing::info!(%peer, "LLRP client connected");
        let conn = Connection {
            shared: shared.clone(),
            version: llrp::VERSION_1_0_1,
            next_id: 1,
            last_keepalive: Instant::now(),
        };
        let shared = shared.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let result = conn.run(socket, &stop).await;
            lock(&shared).stats.connected = false;
            tracing::info!(%peer, ?result, "LLRP client connection ended");
        });
    }
}

fn notification(events: Vec<ReaderEvent>) -> Message {
    let now = jiff::Timestamp::now().as_microsecond();
    Message::ReaderEventNotification(EventData {
        timestamp_us: u64::try_from(now).unwrap_or(0),
        utc: true,
        events,
    })
}

struct Connection {
    shared: Arc<Mutex<Shared>>,
    version: u8,
    next_id: u32,
    last_keepalive: Instant,
}

#[derive(Debug)]
enum Ended {
    ClientClosed,
    Dropped,
    Stopped,
    Closed,
}

impl Connection {
    async fn run(
        mut self,
        mut socket: TcpStream,
        stop: &CancellationToken,
    ) -> anyhow::Result<Ended> {
        let (generation, cycle) = {
            let s = lock(&self.shared);
            (s.drop_generation, s.cfg.cycle)
        };
        let hello = notification(vec![ReaderEvent::ConnectionAttempt { status: 0 }]);
        self.send(&mut socket, &hello).await?;
        let mut buf: Vec<u8> = Vec::with_capacity(4096);
        let mut chunk = [0u8; 4096];
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let mut last_round = Instant::now();
        loop {
            tokio::select! {
                () = stop.cancelled() => return Ok(Ended::Stopped),
                read = socket.read(&mut chunk) => {
                    let n = read?;
                    if n == 0 {
                        return Ok(Ended::ClientClosed);
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Check::Complete { len } = llrp::check(&buf, llrp::DEFAULT_MAX_MESSAGE)? {
                        let frame: Vec<u8> = buf.drain(..len).collect();
                        if self.on_frame(&mut socket, &frame).await? {
                            return Ok(Ended::Closed);
                        }
                    }
                }
                _ = tick.tick() => {
                    let (dropped, graceful, events, silent) = {
                        let mut s = lock(&self.shared);
                        (
                            s.drop_generation != generation,
                            s.drop_gracefully,
                            std::mem::take(&mut s.pending_events),
                            s.silent,
                        )
                    };
                    if dropped {
                        if graceful {
                            let _ = self.send(&mut socket, &notification(vec![ReaderEvent::ConnectionClose])).await;
                        }
                        return Ok(Ended::Dropped);
                    }
                    if silent {
                        continue;
                    }
                    let enabled = lock(&self.shared).notify.get(&event::ANTENNA).copied().unwrap_or(false);
                    if enabled && !events.is_empty() {
                        self.send(&mut socket, &notification(events)).await?;
                    }
                    self.keepalive(&mut socket).await?;
                    if last_round.elapsed() >= cycle {
                        last_round = Instant::now();
                        self.inventory_round(&mut socket).await?;
                    }
                }
            }
        }
    }

    async fn send(&mut self, socket: &mut TcpStream, m: &Message) -> anyhow::Result<()> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.send_with_id(socket, m, id).await
    }

    async fn send_with_id(
        &mut self,
        socket: &mut TcpStream,
        m: &Message,
        id: u32,
    ) -> anyhow::Result<()> {
        socket.write_all(&m.encode(self.version, id)).await?;
        Ok(())
    }

    async fn keepalive(&mut self, socket: &mut TcpStream) -> anyhow::Result<()> {
        let period = lock(&self.shared).keepalive;
        if let Some(period) = period
            && self.last_keepalive.elapsed() >= period
        {
            self.last_keepalive = Instant::now();
            lock(&self.shared).stats.keepalives_sent += 1;
            self.send(socket, &Message::Keepalive).await?;
        }
        Ok(())
    }

    /// One inventory round: every active ROSpec reads the tags on its connected antennas.
    async fn inventory_round(&mut self, socket: &mut TcpStream) -> anyhow::Result<()> {
        let now = Instant::now();
        let mut out: Vec<Message> = Vec::new();
        {
            let mut guard = lock(&self.shared);
            let s = &mut *guard;
            let mut ended = Vec::new();
            for (id, r) in &mut s.rospecs {
                if r.state != 2 {
                    continue;
                }
                if r.spec.stop_trigger == 1
                    && r.started.is_some_and(|t| {
                        now.duration_since(t)
                            >= Duration::from_millis(u64::from(r.spec.stop_duration_ms))
                    })
                {
                    r.state = 1;
                    ended.push(*id);
                    continue;
                }
                let spec = r.spec.report.unwrap_or(s.default_report);
                let mut reads = Vec::new();
                for ai in &r.spec.ai_specs {
                    let antennas: Vec<u16> = if ai.antennas.contains(&0) {
                        (1..=s.cfg.antennas).collect()
                    } else {
                        ai.antennas.clone()
                    };
                    for a in antennas {
                        if s.disconnected.contains(&a) {
                            continue;
                        }
                        for epc in s.field.get(&a).into_iter().flatten() {
                            reads.push(tag_report(*id, a, epc, spec.content));
                        }
                    }
                }
                s.stats.tag_reports += reads.len() as u64;
                if spec.trigger == 0 {
                    s.hold_reports.extend(reads);
                    let excess = s.hold_reports.len().saturating_sub(MAX_HELD_REPORTS);
                    s.hold_reports.drain(..excess);
                } else if !reads.is_empty() {
                    let n = if spec.n == 0 {
                        reads.len()
                    } else {
                        usize::from(spec.n)
                    };
                    for batch in reads.chunks(n) {
                        out.push(Message::RoAccessReport(batch.to_vec()));
                    }
                }
            }
            if s.notify.get(&event::ROSPEC).copied().unwrap_or(false) {
                for id in ended {
                    out.push(notification(vec![ReaderEvent::RoSpec {
                        kind: 1,
                        rospec_id: id,
                    }]));
                }
            }
        }
        for m in &out {
            self.send(socket, m).await?;
        }
        Ok(())
    }

    /// Answers one whole client message; `true` when the connection is to close.
    async fn on_frame(&mut self, socket: &mut TcpStream, frame: &[u8]) -> anyhow::Result<bool> {
        let (header, message) = match llrp::decode(frame) {
            Ok(decoded) => decoded,
            Err(e) => {
                let id = u32::from_be_bytes([frame[6], frame[7], frame[8], frame[9]]);
                let m =
                    Message::ErrorMessage(Status::error(status::M_PARAMETER_ERROR, &e.to_string()));
                self.send_with_id(socket, &m, id).await?;
                return Ok(false);
            }
        };
        let silent = {
            let mut s = lock(&self.shared);
            *s.stats.received.entry(header.kind).or_default() += 1;
            s.silent
        };
        if silent {
            return Ok(false);
        }
        let (reply, close) = self.answer(header, message);
        for m in reply {
            self.send_with_id(socket, &m, header.id).await?;
        }
        Ok(close)
    }

    /// The reader's answers to one message, and whether to close afterwards.
    fn answer(&mut self, header: Header, message: Message) -> (Vec<Message>, bool) {
        let ok = |kind: u16| Message::Response {
            kind,
            status: Status::success(),
        };
        let fail = |kind: u16, code: u16, text: &str| Message::Response {
            kind,
            status: Status::error(code, text),
        };
        let mut guard = lock(&self.shared);
        let s = &mut *guard;
        let reply = match message {
            Message::GetSupportedVersion => Message::GetSupportedVersionResponse {
                current: self.version,
                supported: llrp::VERSION_1_1,
                status: Status::success(),
            },
            Message::SetProtocolVersion { version } => {
                if version == llrp::VERSION_1_0_1 || version == llrp::VERSION_1_1 {
                    let answer = ok(msg::SET_PROTOCOL_VERSION_RESPONSE);
                    // The answer goes out in the version asked for (§17.1.4).
                    self.version = version;
                    s.stats.version = version;
                    answer
                } else {
                    fail(
                        msg::SET_PROTOCOL_VERSION_RESPONSE,
                        status::M_UNSUPPORTED_VERSION,
                        "versions 1 and 2 are supported",
                    )
                }
            }
            Message::GetReaderCapabilities { .. } => Message::GetReaderCapabilitiesResponse {
                status: Status::success(),
                capabilities: capabilities(s.cfg.antennas),
            },
            Message::SetReaderConfig(cfg) => {
                if cfg.reset_to_factory_default {
                    s.rospecs.clear();
                    s.keepalive = None;
                    s.notify = default_notify();
                    s.default_report = default_report();
                    s.stats.power_index.clear();
                }
                for (kind, on) in cfg.event_notifications {
                    s.notify.insert(kind, on);
                }
                if let Some(ms) = cfg.keepalive_ms {
                    s.keepalive = (ms > 0).then(|| Duration::from_millis(u64::from(ms)));
                }
                if let Some(r) = cfg.report {
                    s.default_report = r;
                }
                for a in cfg.antenna_configs {
                    if let Some(t) = a.transmitter {
                        s.stats.power_index.insert(a.antenna, t.power_index);
                    }
                }
                ok(msg::SET_READER_CONFIG_RESPONSE)
            }
            Message::AddRoSpec(spec) => {
                if spec.id == 0 || s.rospecs.contains_key(&spec.id) {
                    fail(
                        msg::ADD_ROSPEC_RESPONSE,
                        status::A_INVALID,
                        "ROSpecID is 0 or in use",
                    )
                } else if spec.current_state != 0 {
                    fail(
                        msg::ADD_ROSPEC_RESPONSE,
                        status::A_INVALID,
                        "a new ROSpec must be disabled",
                    )
                } else if spec.ai_specs.is_empty() {
                    fail(
                        msg::ADD_ROSPEC_RESPONSE,
                        status::A_INVALID,
                        "the ROSpec has no AISpec",
                    )
                } else {
                    for ai in &spec.ai_specs {
                        for inv in &ai.inventory {
                            for a in &inv.antenna_configs {
                                if let Some(t) = a.transmitter {
                                    s.stats.power_index.insert(a.antenna, t.power_index);
                                }
                            }
                        }
                    }
                    s.rospecs.insert(
                        spec.id,
                        RoSpecState {
                            spec,
                            state: 0,
                            started: None,
                        },
                    );
                    ok(msg::ADD_ROSPEC_RESPONSE)
                }
            }
            Message::RoSpec { op, id } => rospec_op(s, op, id),
            Message::DeleteAccessSpec { .. } => ok(msg::DELETE_ACCESSSPEC_RESPONSE),
            Message::KeepaliveAck => {
                s.stats.keepalive_acks += 1;
                return (vec![], false);
            }
            Message::EnableEventsAndReports => return (vec![], false),
            Message::CloseConnection => return (vec![ok(msg::CLOSE_CONNECTION_RESPONSE)], true),
            Message::Other {
                kind: msg::GET_REPORT,
                ..
            } => {
                let held = std::mem::take(&mut s.hold_reports);
                return (vec![Message::RoAccessReport(held)], false);
            }
            Message::GetReaderConfig { antenna, requested } => {
                // Antenna properties are reported (for "all" and for "antenna
                // properties"); the rest of the configuration is not.
                let wanted = requested == 0 || requested == llrp::REQUESTED_ANTENNA_PROPERTIES;
                let antennas = (1..=s.cfg.antennas)
                    .filter(|a| wanted && (antenna == 0 || antenna == *a))
                    .map(|a| llrp::AntennaState {
                        antenna: a,
                        connected: !s.disconnected.contains(&a),
                        gain: 600,
                    })
                    .collect();
                Message::GetReaderConfigResponse {
                    status: Status::success(),
                    antennas,
                }
            }
            other => Message::ErrorMessage(Status::error(
                status::M_UNSUPPORTED_MESSAGE,
                &format!("message type {} is not supported here", other.kind()),
            )),
        };
        let _ = header;
        (vec![reply], false)
    }
}

fn rospec_op(s: &mut Shared, op: RoSpecOp, id: u32) -> Message {
    let kind = op.response_kind();
    let answer = |code: u16, text: &str| Message::Response {
        kind,
        status: if code == status::M_SUCCESS {
            Status::success()
        } else {
            Status::error(code, text)
        },
    };
    let all = id == 0 && matches!(op, RoSpecOp::Delete | RoSpecOp::Disable);
    if all {
        if op == RoSpecOp::Delete {
            s.rospecs.clear();
        } else {
            for r in s.rospecs.values_mut() {
                r.state = 0;
            }
        }
        return answer(status::M_SUCCESS, "");
    }
    let Some(r) = s.rospecs.get_mut(&id) else {
        return answer(status::A_INVALID, "no ROSpec with this id");
    };
    match op {
        RoSpecOp::Delete => {
            s.rospecs.remove(&id);
        }
        RoSpecOp::Enable => {
            if r.state == 0 {
                r.state = 1;
                if r.spec.start_trigger == 1 {
                    r.state = 2;
                    r.started = Some(Instant::now());
                }
            }
        }
        RoSpecOp::Start => {
            if r.state == 0 {
                return answer(status::A_INVALID, "the ROSpec is disabled");
            }
            r.state = 2;
            r.started = Some(Instant::now());
        }
        RoSpecOp::Stop => {
            if r.state != 2 {
                return answer(status::A_INVALID, "the ROSpec is not active");
            }
            r.state = 1;
        }
        RoSpecOp::Disable => r.state = 0,
    }
    answer(status::M_SUCCESS, "")
}

fn tag_report(rospec: u32, antenna: u16, epc: &[u8], content: ContentSelector) -> TagReport {
    let now = u64::try_from(jiff::Timestamp::now().as_microsecond()).unwrap_or(0);
    // A plausible RSSI for a tag a few metres from the antenna, varying per read.
    let rssi = -55 - i8::try_from(now % 11).unwrap_or(0);
    TagReport {
        epc: epc.to_vec(),
        rospec_id: content.has(ContentSelector::ROSPEC_ID).then_some(rospec),
        antenna: content.has(ContentSelector::ANTENNA_ID).then_some(antenna),
        peak_rssi: content.has(ContentSelector::PEAK_RSSI).then_some(rssi),
        channel_index: content.has(ContentSelector::CHANNEL_INDEX).then_some(1),
        first_seen_utc_us: content.has(ContentSelector::FIRST_SEEN).then_some(now),
        last_seen_utc_us: content.has(ContentSelector::LAST_SEEN).then_some(now),
        first_seen_uptime_us: None,
        seen_count: content.has(ContentSelector::TAG_SEEN_COUNT).then_some(1),
        pc: None,
    }
}

/// `aeogate reader llrp`: serves a virtual reader on `listen` until Ctrl-C, with `tags`
/// (antenna, EPC) permanently in the field, and prints a status line every few seconds.
pub fn run_reader_cli(
    listen: SocketAddr,
    antennas: u16,
    tags: &[(u16, Vec<u8>)],
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(1)
        .build()?;
    rt.block_on(async move {
        let reader = VirtualReader::start(
            VirtualReaderConfig {
                antennas,
                ..VirtualReaderConfig::default()
            },
            listen,
        )
        .await?;
        let mut field: BTreeMap<u16, Vec<Vec<u8>>> = BTreeMap::new();
        for (antenna, epc) in tags {
            anyhow::ensure!(
                (1..=antennas).contains(antenna),
                "antenna {antenna} is not one of 1..={antennas}"
            );
            field.entry(*antenna).or_default().push(epc.clone());
        }
        for (antenna, epcs) in field {
            reader.arrive(antenna, epcs);
        }
        let _ = writeln!(std::io::stdout(), "LLRP reader listening on {}", reader.addr());
        let _ = std::io::stdout().flush();
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = every.tick() => {
                    let s = reader.stats();
                    // A closed standard output (the reader piped into `head`) must not
                    // stop the reader.
                    let _ = writeln!(
                        std::io::stdout(),
                        "connected {} · connections {} · ROSpecs {:?} · tag reports {} · keepalives {} (acked {})",
                        s.connected, s.connections, s.rospecs, s.tag_reports, s.keepalives_sent, s.keepalive_acks
                    );
                }
            }
        }
        Ok(())
    })
}

/// Parses `ANTENNA=EPCHEX` as given to `aeogate reader llrp --tag`.
pub fn parse_tag_arg(text: &str) -> Result<(u16, Vec<u8>), String> {
    let (antenna, epc) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected ANTENNA=EPCHEX"))?;
    let antenna: u16 = antenna
        .trim()
        .parse()
        .map_err(|_| format!("{antenna:?} is not an antenna number"))?;
    let epc = hex::decode(epc.trim()).map_err(|e| format!("{epc:?} is not hex: {e}"))?;
    if epc.is_empty() || epc.len() > 62 || epc.len() % 2 != 0 {
        return Err(format!(
            "an EPC is 2 to 62 bytes, a whole number of 16-bit words; {} bytes given",
            epc.len()
        ));
    }
    Ok((antenna, epc))
}
