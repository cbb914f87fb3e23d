//! Fixed network UHF readers over LLRP (`[[llrp]]` in the configuration): one task per
//! reader, a sans-IO [`Session`] that holds the protocol, and a thin TCP shell.
//!
//! A session, after TCP connect:
//!
//! 1. waits for the reader's `ConnectionAttemptEvent` (a non-zero status means another
//!    client holds the reader: the connection is closed and retried);
//! 2. `GET_READER_CAPABILITIES`: checks every configured antenna exists and picks the
//!    transmit power table entry for `tx_power_dbm`;
//! 3. `GET_READER_CONFIG` for the antennas' properties: an antenna whose cable is already
//!    unplugged is reported down from the start (a reader that cannot say is trusted);
//!    then `DELETE_ROSPEC 0`: removes whatever ROSpecs an earlier client left;
//! 4. `SET_READER_CONFIG`: antenna and ROSpec event notifications on, a periodic keepalive,
//!    events and reports not held for a later connection;
//! 5. `ADD_ROSPEC` (one AISpec over the configured antennas, an AntennaConfiguration with
//!    the transmit power per antenna, a report per tag with antenna id, peak RSSI, first
//!    seen time and seen count), `ENABLE_ROSPEC`, `START_ROSPEC`;
//! 6. then runs: tag reports become reads of the lane each antenna is mapped to (after the
//!    unique-per-truck filter), `KEEPALIVE`s are acknowledged, antenna events become the
//!    health of `<reader>/antenna-<n>`; a `ConnectionCloseEvent`, the end of the agent's
//!    ROSpec (the reader stopped it) or any read error ends the connection, and the next
//!    one installs the ROSpec again.
//!
//! Every step has a deadline (a reader that does not answer within [`RESPONSE_TIMEOUT`] is
//! down); once running, silence longer than `silence_timeout` (no keepalive, no report) is
//! a fault. A failed connection is reopened with exponential [`Backoff`]; the reader's
//! health says why it is down. By default the client frames messages as LLRP 1.0.1
//! (header version 1): every message and parameter it uses is the same in 1.1, and readers
//! of either version accept it. With `version = "1.1"` it first negotiates LLRP 1.1
//! (`GET_SUPPORTED_VERSION`, then `SET_PROTOCOL_VERSION` when the reader is not already at
//! 1.1) and falls back to 1.0.1 when the reader answers with an error or does not
//! support 1.1.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jiff::Timestamp;
use protocol::llrp::{
    self, AntennaConfig, Check, ContentSelector, Header, Message, ReaderConfig, ReaderEvent,
    ReportSpec, RoSpec, RoSpecOp, TagReport, Transmitter, event,
};
use protocol::schema::{DeviceHealth, LaneId, ReadSource};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{AssemblerEvent, Backoff, HealthReporter, RawRead, tag_value};
use crate::config::LlrpReaderConfig;

/// The ROSpec id this client installs.
pub const ROSPEC_ID: u32 = 0x0AE0_0001;
/// How long a reader may take to answer one request (or to greet a new connection).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Entries of the unique-per-truck filter kept per reader (oldest dropped beyond it).
const MAX_FILTER_ENTRIES: usize = 10_000;

/// Spawns one task per configured reader; returns the health receivers (the reader's and
/// one per antenna) for the runtime's device list.
pub fn spawn_all(
    readers: &[LlrpReaderConfig],
    events: &mpsc::Sender<AssemblerEvent>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> Vec<watch::Receiver<DeviceHealth>> {
    readers
        .iter()
        .flat_map(|cfg| spawn_reader(cfg, events, tracker, shutdown.clone()).1)
        .collect()
}

/// Spawns the task of one reader, running until `shutdown`; returns the task and its
/// health receivers (the reader's, then one per antenna).
pub fn spawn_reader(
    cfg: &LlrpReaderConfig,
    events: &mpsc::Sender<AssemblerEvent>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> (
    tokio::task::JoinHandle<()>,
    Vec<watch::Receiver<DeviceHealth>>,
) {
    let lanes = cfg.lanes();
    let lane = (lanes.len() == 1).then(|| lanes[0].clone());
    let (health, rx) = HealthReporter::new(&cfg.name, lane);
    let mut receivers = vec![rx];
    let mut antennas = BTreeMap::new();
    for (id, lane) in &cfg.antennas {
        let (reporter, rx) =
            HealthReporter::new(&antenna_device(&cfg.name, *id), Some(lane.clone()));
        receivers.push(rx);
        antennas.insert(*id, reporter);
    }
    let task = tracker.spawn(run_llrp_reader(
        cfg.clone(),
        events.clone(),
        health,
        antennas,
        shutdown,
    ));
    (task, receivers)
}

/// Device name of one antenna of a reader.
#[must_use]
pub fn antenna_device(reader: &str, antenna: u16) -> String {
    format!("{reader}/antenna-{antenna}")
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("connection lost: {0}")]
    Io(#[from] std::io::Error),
    #[error("the reader closed the connection")]
    Closed,
    #[error("the reader announced it is closing the connection")]
    CloseEvent,
    #[error("the reader refused the connection (status {0}: another client holds it)")]
    Refused(u16),
    #[error("malformed message from the reader: {0}")]
    Protocol(#[from] llrp::LlrpError),
    #[error("{step} failed: status {code} {description}")]
    Rejected {
        step: &'static str,
        code: u16,
        description: String,
    },
    #[error("no answer to {0} within {RESPONSE_TIMEOUT:?}")]
    NoAnswer(&'static str),
    #[error("silent for {0:?} (no keepalive, no report)")]
    Silent(Duration),
    #[error("the reader ended the inventory (ROSpec event {0})")]
    RoSpecEnded(u8),
    #[error("antenna {antenna} is configured but the reader has {max}")]
    NoSuchAntenna { antenna: u16, max: u16 },
    #[error("the assembler stopped")]
    ChannelClosed,
}

/// The step a session is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Greeting,
    Version,
    SetVersion,
    Capabilities,
    AntennaProperties,
    DeleteRoSpecs,
    SetConfig,
    AddRoSpec,
    Enable,
    Start,
    Running,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Self::Greeting => "the connection greeting",
            Self::Version => "GET_SUPPORTED_VERSION",
            Self::SetVersion => "SET_PROTOCOL_VERSION",
            Self::Capabilities => "GET_READER_CAPABILITIES",
            Self::AntennaProperties => "GET_READER_CONFIG",
            Self::DeleteRoSpecs => "DELETE_ROSPEC",
            Self::SetConfig => "SET_READER_CONFIG",
            Self::AddRoSpec => "ADD_ROSPEC",
            Self::Enable => "ENABLE_ROSPEC",
            Self::Start => "START_ROSPEC",
            Self::Running => "the inventory",
        }
    }
}

/// What the shell must do after feeding the session.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write these bytes to the reader.
    Send(Vec<u8>),
    /// The inventory runs: the reader is up.
    Up(String),
    /// A tag read for a lane.
    Read {
        lane: LaneId,
        antenna: u16,
        report: TagReport,
    },
    /// An antenna was reported (dis)connected.
    Antenna { antenna: u16, connected: bool },
}

/// One connection's protocol state, sans IO: messages and the time go in, actions come out.
#[derive(Debug)]
pub struct Session {
    antennas: BTreeMap<u16, LaneId>,
    tx_power_dbm: Option<f64>,
    keepalive: Duration,
    silence_timeout: Duration,
    unique_window: Duration,
    step: Step,
    /// Header version of what the session sends: 1 until LLRP 1.1 is negotiated.
    version: u8,
    /// Whether to negotiate LLRP 1.1 (configuration `version = "1.1"`).
    want_1_1: bool,
    next_id: u32,
    /// Id of the request awaiting its answer.
    awaiting: Option<u32>,
    deadline: Instant,
    power_index: Option<u16>,
    /// Antennas the reader said are unplugged when the session started.
    unplugged: Vec<u16>,
    /// Unique-per-truck filter: (lane, EPC) → last time seen.
    last_seen: HashMap<(LaneId, Vec<u8>), Instant>,
}

impl Session {
    /// A session for a connection just opened at `now`.
    #[must_use]
    pub fn new(cfg: &LlrpReaderConfig, now: Instant) -> Self {
        Self {
            antennas: cfg.antennas.clone(),
            tx_power_dbm: cfg.tx_power_dbm,
            keepalive: cfg.keepalive,
            silence_timeout: cfg.silence_timeout,
            unique_window: cfg.unique_window,
            step: Step::Greeting,
            version: llrp::VERSION_1_0_1,
            want_1_1: cfg.version == llrp::VERSION_1_1,
            next_id: 1,
            awaiting: None,
            deadline: now + RESPONSE_TIMEOUT,
            power_index: None,
            unplugged: Vec::new(),
            last_seen: HashMap::new(),
        }
    }

    /// When [`Session::on_timeout`] is due.
    #[must_use]
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the inventory runs.
    #[must_use]
    pub fn running(&self) -> bool {
        self.step == Step::Running
    }

    /// The deadline passed without what it waited for.
    pub fn on_timeout(&self, now: Instant) -> Result<(), SessionError> {
        if now < self.deadline {
            return Ok(());
        }
        Err(if self.step == Step::Running {
            SessionError::Silent(self.silence_timeout)
        } else {
            SessionError::NoAnswer(self.step.name())
        })
    }

    fn request(&mut self, m: &Message, now: Instant) -> Action {
        self.request_as(m, self.version, now)
    }

    fn request_as(&mut self, m: &Message, version: u8, now: Instant) -> Action {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.awaiting = Some(id);
        self.deadline = now + RESPONSE_TIMEOUT;
        Action::Send(m.encode(version, id))
    }

    /// The protocol version the session speaks (1: LLRP 1.0.1, 2: LLRP 1.1).
    #[must_use]
    pub fn version(&self) -> u8 {
        self.version
    }

    /// Moves the session to `step` and sends that step's request `m`.
    fn step_to(&mut self, step: Step, m: &Message, now: Instant) -> Action {
        self.step = step;
        self.request(m, now)
    }

    /// Version negotiation is over (or was not asked for): read the capabilities.
    fn capabilities(&mut self, now: Instant) -> Action {
        self.step_to(
            Step::Capabilities,
            &Message::GetReaderCapabilities { requested: 0 },
            now,
        )
    }

    /// Before configuring: delete every ROSpec on the reader (id 0).
    fn delete_rospecs(&mut self, now: Instant) -> Action {
        let m = Message::RoSpec {
            op: RoSpecOp::Delete,
            id: 0,
        };
        self.step_to(Step::DeleteRoSpecs, &m, now)
    }

    /// Moves to `step` by `op` on the agent's ROSpec.
    fn rospec_op(&mut self, step: Step, op: RoSpecOp, now: Instant) -> Action {
        let m = Message::RoSpec { op, id: ROSPEC_ID };
        self.step_to(step, &m, now)
    }

    fn expect_success(&self, status: &llrp::Status) -> Result<(), SessionError> {
        if status.is_success() {
            Ok(())
        } else {
            Err(SessionError::Rejected {
                step: self.step.name(),
                code: status.code,
                description: status.description.clone(),
            })
        }
    }

    fn rospec(&self) -> RoSpec {
        let antenna_configs = self
            .antennas
            .keys()
            .map(|&antenna| AntennaConfig {
                antenna,
                transmitter: self.power_index.map(|power_index| Transmitter {
                    hop_table_id: 1,
                    channel_index: 1,
                    power_index,
                }),
            })
            .collect();
        RoSpec::gen2_inventory(
            ROSPEC_ID,
            self.antennas.keys().copied().collect(),
            antenna_configs,
            Some(ReportSpec {
                trigger: 1,
                n: 1,
                content: ContentSelector::GATE_READS,
            }),
        )
    }

    /// Feeds one message from the reader.
    pub fn on_message(
        &mut self,
        header: Header,
        message: Message,
        now: Instant,
    ) -> Result<Vec<Action>, SessionError> {
        let mut out = Vec::new();
        if self.step == Step::Running {
            self.deadline = now + self.silence_timeout;
        }
        match message {
            Message::Keepalive => {
                out.push(Action::Send(
                    Message::KeepaliveAck.encode(self.version, header.id),
                ));
            }
            Message::ReaderEventNotification(data) => {
                for e in data.events {
                    match e {
                        ReaderEvent::ConnectionAttempt { status }
                            if self.step == Step::Greeting =>
                        {
                            if status != 0 {
                                return Err(SessionError::Refused(status));
                            }
                            if self.want_1_1 {
                                // GET_SUPPORTED_VERSION exists only in 1.1 (§17.1.1).
                                self.step = Step::Version;
                                out.push(self.request_as(
                                    &Message::GetSupportedVersion,
                                    llrp::VERSION_1_1,
                                    now,
                                ));
                            } else {
                                out.push(self.capabilities(now));
                            }
                        }
                        ReaderEvent::ConnectionClose => return Err(SessionError::CloseEvent),
                        ReaderEvent::Antenna { connected, antenna }
                            if self.antennas.contains_key(&antenna) =>
                        {
                            out.push(Action::Antenna { antenna, connected });
                        }
                        ReaderEvent::ReaderException { message } => {
                            tracing::warn!(%message, "LLRP reader exception");
                        }
                        // 1 ended, 2 preempted: with no stop trigger, only the reader ends it.
                        ReaderEvent::RoSpec { kind, rospec_id }
                            if rospec_id == ROSPEC_ID
                                && kind != 0
                                && self.step == Step::Running =>
                        {
                            return Err(SessionError::RoSpecEnded(kind));
                        }
                        _ => {}
                    }
                }
            }
            Message::RoAccessReport(tags) => {
                for report in tags {
                    if let Some(a) = self.tag(report, now) {
                        out.push(a);
                    }
                }
            }
            Message::ErrorMessage(status)
                if self.awaiting == Some(header.id)
                    && matches!(self.step, Step::Version | Step::SetVersion) =>
            {
                // A 1.0.1 reader answers 1.1's negotiation with an error: speak 1.0.1.
                tracing::info!(code = status.code, "LLRP 1.1 not available; using 1.0.1");
                self.awaiting = None;
                self.version = llrp::VERSION_1_0_1;
                out.push(self.capabilities(now));
            }
            Message::ErrorMessage(status)
                if self.awaiting == Some(header.id) && self.step == Step::AntennaProperties =>
            {
                // A reader that does not report antenna properties: trust its antennas.
                tracing::debug!(code = status.code, "GET_READER_CONFIG refused");
                self.awaiting = None;
                out.push(self.delete_rospecs(now));
            }
            Message::ErrorMessage(status) => {
                if self.awaiting == Some(header.id) {
                    return Err(SessionError::Rejected {
                        step: self.step.name(),
                        code: status.code,
                        description: status.description,
                    });
                }
                tracing::warn!(code = status.code, description = %status.description, "LLRP error message");
            }
            m if self.awaiting == Some(header.id) => {
                self.awaiting = None;
                out.extend(self.advance(m, now)?);
            }
            m => tracing::debug!(kind = m.kind(), "LLRP message ignored"),
        }
        Ok(out)
    }

    /// The answer to the awaited request arrived: check it, send the next request.
    fn advance(&mut self, m: Message, now: Instant) -> Result<Vec<Action>, SessionError> {
        let mut out = Vec::new();
        match (self.step, m) {
            (
                Step::Version,
                Message::GetSupportedVersionResponse {
                    current,
                    supported,
                    status,
                },
            ) => {
                if !status.is_success() || supported < llrp::VERSION_1_1 {
                    self.version = llrp::VERSION_1_0_1;
                    out.push(self.capabilities(now));
                } else if current == llrp::VERSION_1_1 {
                    self.version = llrp::VERSION_1_1;
                    out.push(self.capabilities(now));
                } else {
                    self.step = Step::SetVersion;
                    out.push(self.request_as(
                        &Message::SetProtocolVersion {
                            version: llrp::VERSION_1_1,
                        },
                        llrp::VERSION_1_1,
                        now,
                    ));
                }
            }
            (Step::SetVersion, Message::Response { status, .. }) => {
                self.version = if status.is_success() {
                    llrp::VERSION_1_1
                } else {
                    llrp::VERSION_1_0_1
                };
                out.push(self.capabilities(now));
            }
            (
                Step::Capabilities,
                Message::GetReaderCapabilitiesResponse {
                    status,
                    capabilities,
                },
            ) => {
                self.expect_success(&status)?;
                if let Some(max) = capabilities.max_antennas
                    && let Some(&antenna) = self.antennas.keys().find(|&&a| a > max)
                {
                    return Err(SessionError::NoSuchAntenna { antenna, max });
                }
                self.power_index = match self.tx_power_dbm {
                    Some(dbm) => {
                        #[allow(clippy::cast_possible_truncation)] // validated 0..=33 dBm
                        let x100 = (dbm * 100.0).round() as i16;
                        capabilities.power_index_for(x100)
                    }
                    None => capabilities.max_power().map(|p| p.index),
                };
                let m = Message::GetReaderConfig {
                    antenna: 0,
                    requested: llrp::REQUESTED_ANTENNA_PROPERTIES,
                };
                out.push(self.step_to(Step::AntennaProperties, &m, now));
            }
            (Step::AntennaProperties, Message::GetReaderConfigResponse { status, antennas }) => {
                if status.is_success() {
                    self.unplugged = antennas
                        .iter()
                        .filter(|a| !a.connected && self.antennas.contains_key(&a.antenna))
                        .map(|a| a.antenna)
                        .collect();
                } else {
                    tracing::debug!(code = status.code, "antenna properties not available");
                }
                out.push(self.delete_rospecs(now));
            }
            (Step::DeleteRoSpecs, Message::Response { status, .. }) => {
                // A reader with nothing to delete may answer with an error: not a fault.
                if !status.is_success() {
                    tracing::debug!(code = status.code, "DELETE_ROSPEC 0 answered with an error");
                }
                let config = ReaderConfig {
                    reset_to_factory_default: false,
                    event_notifications: vec![
                        (event::ANTENNA, true),
                        (event::ROSPEC, true),
                        (event::READER_EXCEPTION, true),
                    ],
                    keepalive_ms: Some(u32::try_from(self.keepalive.as_millis()).unwrap_or(60_000)),
                    hold_events_and_reports: Some(false),
                    antenna_configs: Vec::new(),
                    report: None,
                };
                out.push(self.step_to(Step::SetConfig, &Message::SetReaderConfig(config), now));
            }
            (Step::SetConfig, Message::Response { status, .. }) => {
                self.expect_success(&status)?;
                let m = Message::AddRoSpec(self.rospec());
                out.push(self.step_to(Step::AddRoSpec, &m, now));
            }
            (Step::AddRoSpec, Message::Response { status, .. }) => {
                self.expect_success(&status)?;
                out.push(self.rospec_op(Step::Enable, RoSpecOp::Enable, now));
            }
            (Step::Enable, Message::Response { status, .. }) => {
                self.expect_success(&status)?;
                out.push(self.rospec_op(Step::Start, RoSpecOp::Start, now));
            }
            (Step::Start, Message::Response { status, .. }) => {
                self.expect_success(&status)?;
                self.step = Step::Running;
                self.deadline = now + self.silence_timeout;
                let list: Vec<String> = self.antennas.keys().map(u16::to_string).collect();
                out.push(Action::Up(format!(
                    "inventory running on antennas {}",
                    list.join(", ")
                )));
                for &antenna in self.antennas.keys() {
                    out.push(Action::Antenna {
                        antenna,
                        connected: !self.unplugged.contains(&antenna),
                    });
                }
            }
            (step, m) => {
                return Err(SessionError::Rejected {
                    step: step.name(),
                    code: 0,
                    description: format!("unexpected answer of message type {}", m.kind()),
                });
            }
        }
        Ok(out)
    }

    /// One tag report: map the antenna to its lane, then the unique-per-truck filter.
    fn tag(&mut self, report: TagReport, now: Instant) -> Option<Action> {
        let antenna = match report.antenna {
            Some(a) => a,
            // Without an antenna id only a reader serving one lane can be attributed.
            None if self.antennas.len() == 1 => *self.antennas.keys().next()?,
            None => {
                metrics::counter!("aeogate_llrp_unattributed_reports_total").increment(1);
                return None;
            }
        };
        let Some(lane) = self.antennas.get(&antenna).cloned() else {
            metrics::counter!("aeogate_llrp_unmapped_antenna_reports_total").increment(1);
            return None;
        };
        if !self.unique_window.is_zero() {
            let window = self.unique_window;
            let key = (lane.clone(), report.epc.clone());
            let fresh = self
                .last_seen
                .get(&key)
                .is_none_or(|&seen| now.duration_since(seen) >= window);
            if self.last_seen.len() >= MAX_FILTER_ENTRIES {
                self.last_seen
                    .retain(|_, seen| now.duration_since(*seen) < window);
            }
            if self.last_seen.len() < MAX_FILTER_ENTRIES || self.last_seen.contains_key(&key) {
                self.last_seen.insert(key, now);
            }
            if !fresh {
                return None;
            }
        }
        Some(Action::Read {
            lane,
            antenna,
            report,
        })
    }
}

/// A tag report as a read for the assembler.
fn raw_read(device: &str, lane: LaneId, antenna: u16, report: &TagReport) -> RawRead {
    let (raw, value) = tag_value(&report.epc);
    let at = report
        .first_seen_utc_us
        .and_then(|us| i64::try_from(us).ok())
        .and_then(|us| Timestamp::from_microsecond(us).ok())
        // A reader clock far from ours (unset, or another time zone mistaken for UTC)
        // must not move a read out of its truck's transaction: trust it within a minute.
        .filter(|t| t.duration_since(Timestamp::now()).abs() < jiff::SignedDuration::from_secs(60))
        .unwrap_or_else(Timestamp::now);
    RawRead {
        lane,
        source: ReadSource::Rfid,
        device: device.to_owned(),
        raw,
        value,
        at,
        antenna: u8::try_from(antenna).ok(),
        rssi: report.peak_rssi.map(i16::from),
        confidence: None,
        entered_by: None,
    }
}

/// Runs one reader until shutdown: connect, run a session, reconnect with backoff.
pub async fn run_llrp_reader(
    cfg: LlrpReaderConfig,
    events: mpsc::Sender<AssemblerEvent>,
    health: HealthReporter,
    antennas: BTreeMap<u16, HealthReporter>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(500), cfg.reconnect_backoff_max);
    loop {
        let result = tokio::select! {
            () = shutdown.cancelled() => break,
            r = connection(&cfg, &events, &health, &antennas, &shutdown) => r,
        };
        let (ran, err) = match result {
            Ok(()) => break,
            Err((ran, e)) => (ran, e),
        };
        if matches!(err, SessionError::ChannelClosed) {
            break;
        }
        if ran {
            backoff.reset();
        }
        metrics::counter!("aeogate_llrp_connection_failures_total", "device" => cfg.name.clone())
            .increment(1);
        health.down(err.to_string());
        for a in antennas.values() {
            a.down("reader not connected");
        }
        let wait = backoff.next_delay();
        tracing::warn!(device = %cfg.name, error = %err, ?wait, "LLRP reader connection failed; reconnecting");
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(wait) => {}
        }
    }
    health.down("stopped");
    for a in antennas.values() {
        a.down("stopped");
    }
}

/// One connection. `Ok` on shutdown; otherwise the error and whether the inventory ran.
async fn connection(
    cfg: &LlrpReaderConfig,
    events: &mpsc::Sender<AssemblerEvent>,
    health: &HealthReporter,
    antennas: &BTreeMap<u16, HealthReporter>,
    shutdown: &CancellationToken,
) -> Result<(), (bool, SessionError)> {
    let addr = (cfg.host.as_str(), cfg.port);
    let mut socket = match tokio::time::timeout(RESPONSE_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err((false, SessionError::Connect(e))),
        Err(_) => {
            return Err((
                false,
                SessionError::Connect(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                )),
            ));
        }
    };
    let _ = socket.set_nodelay(true);
    let mut session = Session::new(cfg, Instant::now());
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 8192];
    loop {
        let n = tokio::select! {
            () = shutdown.cancelled() => {
                // Leave the reader idle for whoever connects next (best effort).
                let stop = Message::RoSpec { op: RoSpecOp::Delete, id: ROSPEC_ID }.encode(session.version(), 0);
                let close = Message::CloseConnection.encode(session.version(), 0);
                let _ = tokio::time::timeout(Duration::from_millis(500), async {
                    socket.write_all(&stop).await?;
                    socket.write_all(&close).await
                }).await;
                return Ok(());
            }
            () = tokio::time::sleep_until(session.deadline()) => {
                session.on_timeout(Instant::now()).map_err(|e| (session.running(), e))?;
                continue;
            }
            read = socket.read(&mut chunk) => match read {
                Ok(0) => return Err((session.running(), SessionError::Closed)),
                Ok(n) => n,
                Err(e) => return Err((session.running(), SessionError::Io(e))),
            },
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            let len = match llrp::check(&buf, llrp::DEFAULT_MAX_MESSAGE) {
                Ok(Check::Complete { len }) => len,
                Ok(Check::Incomplete { .. }) => break,
                Err(e) => return Err((session.running(), e.into())),
            };
            let decoded = llrp::decode(&buf[..len]);
            buf.drain(..len);
            let (header, message) = decoded.map_err(|e| (session.running(), e.into()))?;
            let actions = session
                .on_message(header, message, Instant::now())
                .map_err(|e| (session.running(), e))?;
            for action in actions {
                match action {
                    Action::Send(bytes) => socket
                        .write_all(&bytes)
                        .await
                        .map_err(|e| (session.running(), SessionError::Io(e)))?,
                    Action::Up(detail) => health.up(detail),
                    Action::Antenna { antenna, connected } => {
                        if let Some(h) = antennas.get(&antenna) {
                            if connected {
                                h.up("connected");
                            } else {
                                h.down("antenna disconnected (reader event)");
                            }
                        }
                    }
                    Action::Read {
                        lane,
                        antenna,
                        report,
                    } => {
                        let read = raw_read(&cfg.name, lane, antenna, &report);
                        events
                            .send(AssemblerEvent::Read(read))
                            .await
                            .map_err(|_| (true, SessionError::ChannelClosed))?;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::llrp::{AntennaState, Capabilities, EventData, PowerLevel, Status, msg};

    fn cfg() -> LlrpReaderConfig {
        LlrpReaderConfig {
            name: "r1".into(),
            host: "127.0.0.1".into(),
            port: 5084,
            antennas: [(1, lane("L1")), (2, lane("L2"))].into_iter().collect(),
            tx_power_dbm: Some(25.0),
            keepalive: Duration::from_secs(1),
            silence_timeout: Duration::from_secs(3),
            unique_window: Duration::from_secs(5),
            reconnect_backoff_max: Duration::from_secs(5),
            version: llrp::VERSION_1_0_1,
        }
    }

    fn lane(s: &str) -> LaneId {
        LaneId::parse(s).expect("lane")
    }

    fn header(kind: u16, id: u32) -> Header {
        Header {
            version: 1,
            kind,
            length: 10,
            id,
        }
    }

    fn sent(actions: &[Action]) -> Vec<(Header, Message)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(b) => Some(llrp::decode(b).expect("client sends valid LLRP")),
                _ => None,
            })
            .collect()
    }

    fn reader_event(event: ReaderEvent) -> Message {
        Message::ReaderEventNotification(EventData {
            timestamp_us: 1,
            utc: true,
            events: vec![event],
        })
    }

    fn greeting(status: u16) -> Message {
        reader_event(ReaderEvent::ConnectionAttempt { status })
    }

    /// A new session for `c`, greeted by the reader; with what it sent back.
    fn greeted(c: &LlrpReaderConfig, now: Instant) -> (Session, Vec<Action>) {
        let mut s = Session::new(c, now);
        let out = s
            .on_message(header(msg::READER_EVENT_NOTIFICATION, 0), greeting(0), now)
            .expect("greeting");
        (s, out)
    }

    /// A session just greeted, the id of its first request (GET_READER_CAPABILITIES)
    /// and the time.
    fn asked_for_capabilities(c: &LlrpReaderConfig) -> (Session, u32, Instant) {
        let now = Instant::now();
        let (s, out) = greeted(c, now);
        let id = sent(&out)[0].0.id;
        (s, id, now)
    }

    fn ok(kind: u16) -> Message {
        Message::Response {
            kind,
            status: Status::success(),
        }
    }

    /// Drives a session through setup; returns it running.
    fn running(now: Instant) -> Session {
        let (mut s, mut out) = greeted(&cfg(), now);
        let caps = Message::GetReaderCapabilitiesResponse {
            status: Status::success(),
            capabilities: Capabilities {
                max_antennas: Some(4),
                power_levels: (0..=80)
                    .map(|i| PowerLevel {
                        index: i + 1,
                        dbm_x100: 1000 + 25 * i.cast_signed(),
                    })
                    .collect(),
                ..Capabilities::default()
            },
        };
        let answers = [
            caps,
            Message::GetReaderConfigResponse {
                status: Status::success(),
                antennas: vec![
                    AntennaState {
                        antenna: 1,
                        connected: true,
                        gain: 0,
                    },
                    AntennaState {
                        antenna: 2,
                        connected: false,
                        gain: 0,
                    },
                ],
            },
            ok(msg::DELETE_ROSPEC_RESPONSE),
            ok(msg::SET_READER_CONFIG_RESPONSE),
            ok(msg::ADD_ROSPEC_RESPONSE),
            ok(msg::ENABLE_ROSPEC_RESPONSE),
            ok(msg::START_ROSPEC_RESPONSE),
        ];
        for answer in answers {
            let (h, _) = sent(&out).pop().expect("a request was sent");
            out = s
                .on_message(header(answer.kind(), h.id), answer, now)
                .expect("step");
        }
        assert!(s.running());
        // Antenna 2 was reported unplugged by GET_READER_CONFIG.
        assert!(out.contains(&Action::Antenna {
            antenna: 2,
            connected: false
        }));
        assert!(out.contains(&Action::Antenna {
            antenna: 1,
            connected: true
        }));
        s
    }

    #[test]
    fn setup_installs_a_rospec_over_the_configured_antennas_at_the_asked_power() {
        let now = Instant::now();
        let (_, out) = greeted(&cfg(), now);
        assert!(matches!(
            sent(&out)[0].1,
            Message::GetReaderCapabilities { .. }
        ));
        let s = running(now);
        let spec = s.rospec();
        assert_eq!(spec.ai_specs[0].antennas, vec![1, 2]);
        // 25.00 dBm is row 61 of 10.00 + 0.25·(i−1).
        let power = spec.ai_specs[0].inventory[0].antenna_configs[0]
            .transmitter
            .expect("transmitter")
            .power_index;
        assert_eq!(power, 61);
    }

    #[test]
    fn refused_greeting_is_an_error() {
        let now = Instant::now();
        let mut s = Session::new(&cfg(), now);
        assert!(matches!(
            s.on_message(header(msg::READER_EVENT_NOTIFICATION, 0), greeting(2), now),
            Err(SessionError::Refused(2))
        ));
    }

    #[test]
    fn rejected_step_names_the_step() {
        let (mut s, id, now) = asked_for_capabilities(&cfg());
        let e = s
            .on_message(
                header(msg::ERROR_MESSAGE, id),
                Message::ErrorMessage(Status::error(109, "nope")),
                now,
            )
            .expect_err("rejected");
        assert!(e.to_string().contains("GET_READER_CAPABILITIES"), "{e}");
    }

    #[test]
    fn keepalive_is_acknowledged_with_its_id() {
        let now = Instant::now();
        let mut s = running(now);
        let out = s
            .on_message(header(msg::KEEPALIVE, 77), Message::Keepalive, now)
            .expect("keepalive");
        let acks = sent(&out);
        assert_eq!(acks[0].0.id, 77);
        assert_eq!(acks[0].1, Message::KeepaliveAck);
    }

    #[test]
    fn silence_past_the_timeout_is_a_fault() {
        let now = Instant::now();
        let s = running(now);
        assert!(s.on_timeout(now + Duration::from_secs(2)).is_ok());
        assert!(matches!(
            s.on_timeout(now + Duration::from_secs(3)),
            Err(SessionError::Silent(_))
        ));
    }

    #[test]
    fn no_answer_during_setup_is_a_fault() {
        let now = Instant::now();
        let s = Session::new(&cfg(), now);
        assert!(matches!(
            s.on_timeout(now + RESPONSE_TIMEOUT),
            Err(SessionError::NoAnswer(_))
        ));
    }

    /// What the session does with reader report `id` at `at`: one tag (`epc` repeated)
    /// on `antenna`.
    fn report(s: &mut Session, id: u32, antenna: Option<u16>, epc: u8, at: Instant) -> Vec<Action> {
        let tags = Message::RoAccessReport(vec![TagReport {
            epc: vec![epc; 12],
            antenna,
            ..TagReport::default()
        }]);
        s.on_message(header(msg::RO_ACCESS_REPORT, id), tags, at)
            .expect("report")
    }

    fn reads(actions: &[Action]) -> Vec<(LaneId, u16)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Read { lane, antenna, .. } => Some((lane.clone(), *antenna)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn reads_go_to_the_antennas_lane() {
        let now = Instant::now();
        let mut s = running(now);
        let out = report(&mut s, 9, Some(2), 0x30, now);
        assert_eq!(reads(&out), vec![(lane("L2"), 2)]);
        let out = report(&mut s, 10, Some(3), 0x31, now);
        assert!(reads(&out).is_empty(), "antenna 3 is not mapped");
    }

    #[test]
    fn a_tag_is_forwarded_once_while_it_stays_in_the_field() {
        let now = Instant::now();
        let mut s = running(now);
        let mut forwarded = 0;
        for i in 0..20u32 {
            let at = now + Duration::from_millis(200) * i;
            let out = report(&mut s, i, Some(1), 0x30, at);
            forwarded += reads(&out).len();
        }
        assert_eq!(forwarded, 1);
        // Gone for longer than the window: the next truck carrying it is read again.
        let later = now + Duration::from_secs(4) + Duration::from_secs(5);
        let out = report(&mut s, 99, Some(1), 0x30, later);
        assert_eq!(reads(&out).len(), 1);
    }

    #[test]
    fn antenna_event_for_a_mapped_antenna_is_reported() {
        let now = Instant::now();
        let mut s = running(now);
        let e = reader_event(ReaderEvent::Antenna {
            connected: false,
            antenna: 2,
        });
        let out = s
            .on_message(header(msg::READER_EVENT_NOTIFICATION, 5), e, now)
            .expect("event");
        assert_eq!(
            out,
            vec![Action::Antenna {
                antenna: 2,
                connected: false
            }]
        );
    }

    #[test]
    fn connection_close_event_ends_the_session() {
        let now = Instant::now();
        let mut s = running(now);
        let e = reader_event(ReaderEvent::ConnectionClose);
        assert!(matches!(
            s.on_message(header(msg::READER_EVENT_NOTIFICATION, 5), e, now),
            Err(SessionError::CloseEvent)
        ));
    }

    #[test]
    fn missing_antenna_on_the_reader_is_reported() {
        let mut c = cfg();
        c.antennas.insert(8, lane("L1"));
        let (mut s, id, now) = asked_for_capabilities(&c);
        let caps = Message::GetReaderCapabilitiesResponse {
            status: Status::success(),
            capabilities: Capabilities {
                max_antennas: Some(4),
                ..Capabilities::default()
            },
        };
        assert!(matches!(
            s.on_message(header(msg::GET_READER_CAPABILITIES_RESPONSE, id), caps, now),
            Err(SessionError::NoSuchAntenna { antenna: 8, max: 4 })
        ));
    }

    #[test]
    fn the_end_of_the_agents_rospec_ends_the_session() {
        let now = Instant::now();
        let mut s = running(now);
        let e = reader_event(ReaderEvent::RoSpec {
            kind: 1,
            rospec_id: ROSPEC_ID,
        });
        assert!(matches!(
            s.on_message(header(msg::READER_EVENT_NOTIFICATION, 5), e, now),
            Err(SessionError::RoSpecEnded(1))
        ));
    }

    #[test]
    fn a_reader_without_antenna_properties_is_trusted() {
        let (mut s, id, now) = asked_for_capabilities(&cfg());
        let caps = Message::GetReaderCapabilitiesResponse {
            status: Status::success(),
            capabilities: Capabilities::default(),
        };
        let out = s
            .on_message(header(msg::GET_READER_CAPABILITIES_RESPONSE, id), caps, now)
            .expect("capabilities");
        let (h, m) = sent(&out).pop().expect("GET_READER_CONFIG sent");
        assert!(matches!(m, Message::GetReaderConfig { .. }));
        let refusal = Message::ErrorMessage(Status::error(109, "unsupported"));
        let out = s
            .on_message(header(msg::ERROR_MESSAGE, h.id), refusal, now)
            .expect("not fatal");
        assert!(matches!(
            sent(&out)[0].1,
            Message::RoSpec {
                op: RoSpecOp::Delete,
                id: 0
            }
        ));
    }

    fn greeted_wanting_1_1() -> (Session, u32, Instant) {
        let now = Instant::now();
        let mut c = cfg();
        c.version = llrp::VERSION_1_1;
        let (s, out) = greeted(&c, now);
        let (h, m) = sent(&out).pop().expect("sent");
        assert_eq!((h.version, m), (2, Message::GetSupportedVersion));
        (s, h.id, now)
    }

    #[test]
    fn llrp_1_1_is_negotiated_when_configured() {
        let (mut s, id, now) = greeted_wanting_1_1();
        let answer = Message::GetSupportedVersionResponse {
            current: 1,
            supported: 2,
            status: Status::success(),
        };
        let out = s
            .on_message(header(msg::GET_SUPPORTED_VERSION_RESPONSE, id), answer, now)
            .expect("versions");
        let (h, m) = sent(&out).pop().expect("sent");
        assert_eq!(m, Message::SetProtocolVersion { version: 2 });
        let out = s
            .on_message(
                header(msg::SET_PROTOCOL_VERSION_RESPONSE, h.id),
                ok(msg::SET_PROTOCOL_VERSION_RESPONSE),
                now,
            )
            .expect("set");
        let (h, m) = sent(&out).pop().expect("sent");
        assert!(matches!(m, Message::GetReaderCapabilities { .. }));
        assert_eq!(h.version, 2, "after negotiation the client speaks 1.1");
    }

    #[test]
    fn a_1_0_1_reader_refusing_negotiation_is_spoken_to_in_1_0_1() {
        let (mut s, id, now) = greeted_wanting_1_1();
        let refusal = Message::ErrorMessage(Status::error(
            protocol::llrp::status::M_UNSUPPORTED_VERSION,
            "1.0.1 only",
        ));
        let out = s
            .on_message(header(msg::ERROR_MESSAGE, id), refusal, now)
            .expect("not fatal");
        let (h, m) = sent(&out).pop().expect("sent");
        assert!(matches!(m, Message::GetReaderCapabilities { .. }));
        assert_eq!(h.version, 1);
    }
}
