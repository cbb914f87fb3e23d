//! Serial sources: the lane I/O board link and a `BB … 7E` UHF module read directly.
//!
//! Both drivers are a sans-IO core plus a port shell:
//!
//! - [`LinkSession`] is the agent's half of the link protocol (`protocol::link`,
//!   `docs/hardware.md` "Sequencing and acknowledgement"): it numbers outgoing frames from
//!   a random start, acknowledges every board frame but an `Ack` (duplicates too), acts on
//!   a board `seq` once, and keeps the lane command in flight until the board acks it,
//!   resending every [`RETRY`]. It follows the board's boot identifier (in the board's
//!   `Hello` on link-up and in every heartbeat): a new boot is a new session at once,
//!   whatever the timing, so sequence numbers and presence order remembered from the old
//!   boot never hide the new boot's events. Time is passed in, so it is tested without a
//!   port.
//! - [`run_lane_board`] and [`run_uhf_module`] own a port: open, read with a silence
//!   timeout, write, and on hang-up (`Ok(0)`, which a hung-up tty returns forever), a read
//!   or write error or a silent line, close and reopen after an exponential, jittered,
//!   capped [`Backoff`]. Line noise only costs the frames it damages.
//!
//! Lane commands that arrive while the port is closed are *not* replayed after reopening:
//! the board falls back to its safe state (red, barrier down) when the link is silent,
//! and raising a barrier for a truck that may have left would be failing open.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use protocol::link::{
    self, BatteryLevel, FaultCode, Frame, LaneCommand, LinkDecoder, LinkError, Message, SealRead,
    SealStatus, TagRead,
};
use protocol::reader::uhf;
use protocol::schema::{ESealState, LaneId, ReadSource, ReadValue};
use protocol::seal::ESealId;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_serial::{SerialPortBuilderExt as _, SerialStream};
use tokio_util::sync::CancellationToken;

use super::{AssemblerEvent, Backoff, HealthReporter, RawRead, tag_value};
use crate::readlog::ReadLog;

/// Resend period for an unacknowledged lane command: the board's own `retry_ms`.
pub const RETRY: Duration = Duration::from_millis(300);

/// A lane command not acknowledged within this long is abandoned (and logged): by then the
/// board has timed the link out and shown its safe state, and a stale "raise" must not
/// arrive late.
pub const COMMAND_TTL: Duration = Duration::from_secs(3);

/// Board `seq`s remembered for duplicate suppression. The board keeps at most 4 events in
/// flight and resends only unacknowledged ones, so a resend is always among the last few.
const RECENT_SEQS: usize = 32;

/// Longest a write to the port may take before the port is considered stuck.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// What a serial port is and how patient to be with it.
#[derive(Debug, Clone)]
pub struct SerialDevice {
    /// Device name from the configuration (used in reads and health).
    pub name: String,
    /// Lane the device serves.
    pub lane: LaneId,
    /// Port path; prefer `/dev/serial/by-id/…` or a udev symlink, which survive a replug.
    pub path: PathBuf,
    /// Line speed (ignored by ptys).
    pub baud: u32,
    /// No valid frame for this long: the port is closed and reopened.
    pub silence_timeout: Duration,
    /// Longest wait between reopen attempts.
    pub reopen_backoff_max: Duration,
}

/// Something the board said, after sequencing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoardEvent {
    /// A UHF tag read.
    Tag(TagRead),
    /// An e-seal read.
    Seal(SealRead),
    /// A presence loop changed state.
    Presence {
        /// Loop number.
        loop_id: u8,
        /// Vehicle over the loop.
        present: bool,
    },
    /// Periodic board status.
    Heartbeat(link::Heartbeat),
    /// A board fault or recovery.
    Fault {
        /// What.
        code: FaultCode,
        /// Code-specific detail.
        detail: u16,
    },
    /// The board acknowledged the lane command sent as `seq`.
    CommandAcked {
        /// The command frame's seq.
        seq: u16,
    },
    /// A board boot not seen before on this link: the session starts afresh (reported
    /// before the event that revealed it).
    NewBoot {
        /// The boot seen before, if any (`None` for the first boot this session sees).
        previous: Option<u32>,
        /// The new boot.
        boot_id: u32,
        /// The board's uptime when it said so.
        uptime_ms: u32,
        /// Why it counts as a new boot.
        why: NewBootReason,
    },
}

/// How a board restart was recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewBootReason {
    /// The first boot identifier heard on this link.
    FirstContact,
    /// The boot identifier changed: the board was reset, power-cycled or replaced.
    BootIdChanged,
    /// Same boot identifier, but the uptime went back (by less than half the `u32`
    /// range, so not a wrap): a restart whose identifier happened to repeat.
    UptimeWentBack,
}

/// The agent's side of the link protocol, without I/O.
#[derive(Debug)]
pub struct LinkSession {
    next_seq: u16,
    recent: VecDeque<u16>,
    pending: Option<Pending>,
    /// The board boot this session talks to, once heard.
    boot: Option<u32>,
    last_uptime_ms: Option<u32>,
    /// Seq of the newest presence report applied, per loop. The board resends an
    /// unacknowledged frame, so after a frame lost on the wire an older presence report
    /// can arrive after a newer one; applying it would undo the newer state.
    presence_seq: std::collections::HashMap<u8, u16>,
}

/// Whether board seq `a` was sent before `b` (within half the wrapping `u16` space).
fn seq_before(a: u16, b: u16) -> bool {
    let d = b.wrapping_sub(a);
    d != 0 && d < 0x8000
}

#[derive(Debug)]
struct Pending {
    frame: Frame,
    first_sent: Instant,
    last_sent: Instant,
}

impl LinkSession {
    /// A session whose first frame is numbered `first_seq` (use a random value: the board
    /// remembers recent seqs, and a restarted agent must not collide with them).
    #[must_use]
    pub fn new(first_seq: u16) -> Self {
        Self {
            next_seq: first_seq,
            recent: VecDeque::with_capacity(RECENT_SEQS),
            pending: None,
            boot: None,
            last_uptime_ms: None,
            presence_seq: std::collections::HashMap::new(),
        }
    }

    /// The board boot this session talks to, once heard.
    #[must_use]
    pub fn boot(&self) -> Option<u32> {
        self.boot
    }

    /// Notes the boot and uptime a `Hello` or heartbeat carries; on a new boot, forgets
    /// everything remembered of the old one and says so.
    fn observe_boot(&mut self, boot_id: u32, uptime_ms: u32) -> Option<BoardEvent> {
        let why = match (self.boot, self.last_uptime_ms) {
            (None, _) => Some(NewBootReason::FirstContact),
            (Some(known), _) if known != boot_id => Some(NewBootReason::BootIdChanged),
            // Uptime wraps after ~49.7 days: a step back of more than half the range is
            // that wrap, not a restart.
            (Some(_), Some(prev)) if uptime_ms < prev && prev - uptime_ms < 0x8000_0000 => {
                Some(NewBootReason::UptimeWentBack)
            }
            _ => None,
        };
        self.last_uptime_ms = Some(uptime_ms);
        let why = why?;
        let previous = self.boot.replace(boot_id);
        // A new boot numbers its frames from anywhere and starts in the safe state: what
        // was remembered of the old one would hide its events, and a command in flight was
        // meant for a lane state that is gone. On first contact nothing of another boot
        // was remembered: frames heard before it (an agent that restarted while the board
        // kept its link up and resends what it queued) are this boot's, and forgetting
        // them would act on their resends a second time (a truck arriving twice).
        if why != NewBootReason::FirstContact {
            self.recent.clear();
            self.presence_seq.clear();
            self.pending = None;
        }
        Some(BoardEvent::NewBoot {
            previous,
            boot_id,
            uptime_ms,
            why,
        })
    }

    fn take_seq(&mut self) -> u16 {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        seq
    }

    /// Handles one intact frame from the board. Returns the ack to send (if any) and the
    /// events to act on, in order: none for a duplicate, an ack of nothing pending, or a
    /// message the board should not send; a [`BoardEvent::NewBoot`] before the event of a
    /// frame that revealed a new boot.
    pub fn receive(&mut self, frame: Frame) -> (Option<Frame>, Vec<BoardEvent>) {
        let mut events = Vec::new();
        if let Message::Ack { seq } = frame.msg {
            let acked = self.pending.as_ref().is_some_and(|p| p.frame.seq == seq);
            if acked {
                self.pending = None;
                events.push(BoardEvent::CommandAcked { seq });
            }
            return (None, events);
        }
        let ack = Some(self.ack(frame.seq));
        // Checked before duplicate suppression: the new boot's seq may be one the old boot
        // used.
        let boot = match &frame.msg {
            Message::Hello(h) => Some((h.boot_id, h.uptime_ms)),
            Message::Heartbeat(hb) => Some((hb.boot_id, hb.uptime_ms)),
            _ => None,
        };
        if let Some((boot_id, uptime_ms)) = boot {
            events.extend(self.observe_boot(boot_id, uptime_ms));
        }
        if self.recent.contains(&frame.seq) {
            return (ack, events);
        }
        if self.recent.len() == RECENT_SEQS {
            self.recent.pop_front();
        }
        self.recent.push_back(frame.seq);
        let event = match frame.msg {
            Message::TagRead(t) => Some(BoardEvent::Tag(t)),
            Message::SealRead(s) => Some(BoardEvent::Seal(s)),
            Message::Presence { loop_id, present } => {
                let stale = self
                    .presence_seq
                    .get(&loop_id)
                    .is_some_and(|&newest| seq_before(frame.seq, newest));
                if stale {
                    None
                } else {
                    self.presence_seq.insert(loop_id, frame.seq);
                    Some(BoardEvent::Presence { loop_id, present })
                }
            }
            Message::Heartbeat(h) => Some(BoardEvent::Heartbeat(h)),
            Message::Fault { code, detail } => Some(BoardEvent::Fault { code, detail }),
            // Acted on above (the boot it names).
            Message::Hello(_) => None,
            // A board never commands the agent; acknowledge and ignore.
            Message::LaneCommand(_) | Message::Ack { .. } => None,
        };
        events.extend(event);
        (ack, events)
    }

    /// The ack for a frame of a message kind this build does not know (intact, so it is
    /// acknowledged, but not acted on).
    pub fn ack(&mut self, seq: u16) -> Frame {
        let own = self.take_seq();
        Frame::new(own, Message::Ack { seq })
    }

    /// Queues `command` (replacing any command still unacknowledged: the lane shows the
    /// newest state) and returns the frame to send now.
    pub fn command(&mut self, command: LaneCommand, now: Instant) -> Frame {
        let seq = self.take_seq();
        let frame = Frame::new(seq, Message::LaneCommand(command));
        self.pending = Some(Pending {
            frame: frame.clone(),
            first_sent: now,
            last_sent: now,
        });
        frame
    }

    /// The command frame to resend at `now`, if one is due. A command older than
    /// [`COMMAND_TTL`] is dropped and returned as `Err` for logging.
    pub fn retransmit(&mut self, now: Instant) -> Result<Option<Frame>, Frame> {
        let Some(p) = self.pending.as_mut() else {
            return Ok(None);
        };
        if now.duration_since(p.first_sent) >= COMMAND_TTL {
            let p = self.pending.take().map(|p| p.frame);
            return p.map_or(Ok(None), Err);
        }
        if now.duration_since(p.last_sent) >= RETRY {
            p.last_sent = now;
            return Ok(Some(p.frame.clone()));
        }
        Ok(None)
    }

    /// When [`LinkSession::retransmit`] next has something to do.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.as_ref().map(|p| {
            let resend = p.last_sent + RETRY;
            resend.min(p.first_sent + COMMAND_TTL)
        })
    }

    /// Whether a command is waiting for its ack.
    #[must_use]
    pub fn command_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// The port was reopened: the board may have restarted, and a command in flight is
    /// abandoned (see the module docs). The boot heard last is kept, so that a board
    /// replaced while the port was closed is still reported as a new boot.
    pub fn reconnected(&mut self) {
        self.recent.clear();
        self.presence_seq.clear();
        self.pending = None;
    }
}

/// Why a port session ended.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The port could not be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// Port path.
        path: String,
        /// Cause.
        source: tokio_serial::Error,
    },
    /// A read returned 0 bytes: the device hung up or was unplugged.
    #[error("device hung up (read returned 0 bytes)")]
    HungUp,
    /// Reading failed.
    #[error("read failed: {0}")]
    Read(std::io::Error),
    /// Writing failed or stalled.
    #[error("write failed: {0}")]
    Write(std::io::Error),
    /// No valid frame arrived within the silence timeout.
    #[error("no valid frame for {0:?}")]
    Silent(Duration),
    /// The assembler is gone (the agent is stopping).
    #[error("event channel closed")]
    ChannelClosed,
}

fn open_port(dev: &SerialDevice) -> Result<SerialStream, PortError> {
    let path = dev.path.to_string_lossy().into_owned();
    tokio_serial::new(&path, dev.baud)
        .data_bits(tokio_serial::DataBits::Eight)
        .parity(tokio_serial::Parity::None)
        .stop_bits(tokio_serial::StopBits::One)
        .flow_control(tokio_serial::FlowControl::None)
        .open_native_async()
        .map_err(|source| PortError::Open { path, source })
}

async fn write_bytes(port: &mut SerialStream, bytes: &[u8]) -> Result<(), PortError> {
    match tokio::time::timeout(WRITE_TIMEOUT, port.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(PortError::Write(e)),
        Err(_) => Err(PortError::Write(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("write stalled for {WRITE_TIMEOUT:?}"),
        ))),
    }
}

async fn write_frame(port: &mut SerialStream, frame: &Frame) -> Result<(), PortError> {
    let mut buf = [0u8; link::MAX_FRAME];
    match link::encode_frame(frame, &mut buf) {
        Ok(n) => write_bytes(port, &buf[..n]).await,
        Err(e) => {
            // Cannot happen for frames of this version (MAX_FRAME fits the largest).
            tracing::error!(error = %e, "link frame could not be encoded");
            Ok(())
        }
    }
}

/// The reopen policy shared by the port drivers.
struct Reopener<'a> {
    dev: &'a SerialDevice,
    health: &'a HealthReporter,
    shutdown: &'a CancellationToken,
    backoff: Backoff,
}

impl<'a> Reopener<'a> {
    fn new(
        dev: &'a SerialDevice,
        health: &'a HealthReporter,
        shutdown: &'a CancellationToken,
    ) -> Self {
        Self {
            dev,
            health,
            shutdown,
            backoff: Backoff::new(Duration::from_millis(200), dev.reopen_backoff_max),
        }
    }

    /// Opens the port, or reports the failure and waits; `None` when stopping.
    async fn open(&mut self) -> Option<SerialStream> {
        loop {
            if self.shutdown.is_cancelled() {
                return None;
            }
            match open_port(self.dev) {
                Ok(port) => {
                    tracing::info!(device = %self.dev.name, path = %self.dev.path.display(), baud = self.dev.baud, "port opened");
                    self.health
                        .down("opened; waiting for the first valid frame");
                    return Some(port);
                }
                Err(e) => {
                    if !self.failed(&e, false).await {
                        return None;
                    }
                }
            }
        }
    }

    /// A session ended with `error`; reports it and waits before the next open. `progressed`
    /// (the session saw valid frames) resets the backoff first. Returns `false` when
    /// stopping.
    async fn failed(&mut self, error: &PortError, progressed: bool) -> bool {
        if matches!(error, PortError::ChannelClosed) {
            return false;
        }
        if progressed {
            self.backoff.reset();
        }
        metrics::counter!("aeogate_serial_reopens_total", "device" => self.dev.name.clone())
            .increment(1);
        self.health.down(error.to_string());
        let wait = self.backoff.next_delay();
        tracing::warn!(device = %self.dev.name, %error, ?wait, "port closed; reopening");
        tokio::select! {
            () = self.shutdown.cancelled() => false,
            () = tokio::time::sleep(wait) => true,
        }
    }
}

/// Runs the lane I/O board link on `dev` until `shutdown`.
///
/// Board events become [`AssemblerEvent`]s on `events` (tag and seal reads, presence);
/// heartbeats and faults update `health`; `commands` are sent as link lane commands and
/// resent until acknowledged.
pub async fn run_lane_board(
    dev: SerialDevice,
    events: mpsc::Sender<AssemblerEvent>,
    commands: mpsc::Receiver<LaneCommand>,
    health: HealthReporter,
    shutdown: CancellationToken,
) {
    run_lane_board_logged(dev, events, None, commands, health, shutdown).await;
}

/// [`run_lane_board`] with a read log: every board event that carries a read or a
/// presence change is written durably to `log` before the frame is acknowledged to the
/// board, so an agent killed after the ack still has it at its next start.
pub async fn run_lane_board_logged(
    dev: SerialDevice,
    events: mpsc::Sender<AssemblerEvent>,
    log: Option<Arc<ReadLog>>,
    mut commands: mpsc::Receiver<LaneCommand>,
    health: HealthReporter,
    shutdown: CancellationToken,
) {
    let mut session = LinkSession::new(rand::random());
    let mut reopener = Reopener::new(&dev, &health, &shutdown);
    while let Some(port) = reopener.open().await {
        session.reconnected();
        let mut progressed = false;
        let result = board_session(
            &dev,
            port,
            &mut session,
            &events,
            log.as_deref(),
            &mut commands,
            &health,
            &shutdown,
            &mut progressed,
        )
        .await;
        match result {
            Ok(()) => break,
            Err(e) => {
                if !reopener.failed(&e, progressed).await {
                    break;
                }
            }
        }
    }
    health.down("stopped");
}

#[allow(clippy::too_many_arguments)]
async fn board_session(
    dev: &SerialDevice,
    mut port: SerialStream,
    session: &mut LinkSession,
    events: &mpsc::Sender<AssemblerEvent>,
    log: Option<&ReadLog>,
    commands: &mut mpsc::Receiver<LaneCommand>,
    health: &HealthReporter,
    shutdown: &CancellationToken,
    progressed: &mut bool,
) -> Result<(), PortError> {
    let mut decoder = LinkDecoder::new();
    let mut buf = [0u8; 256];
    let mut last_valid = Instant::now();
    let mut commands_open = true;
    let mut drift = crate::clock::BoardDrift::default();
    loop {
        let silence_deadline = last_valid + dev.silence_timeout;
        let retransmit_at = session.next_deadline();
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            read = port.read(&mut buf) => {
                let n = match read {
                    Ok(0) => return Err(PortError::HungUp),
                    Ok(n) => n,
                    Err(e) => return Err(PortError::Read(e)),
                };
                let mut rest = &buf[..n];
                while !rest.is_empty() {
                    let (used, result) = decoder.push_slice(rest);
                    rest = &rest[used..];
                    let Some(result) = result else { continue };
                    match result {
                        Ok(frame) => {
                            last_valid = Instant::now();
                            *progressed = true;
                            if let Message::Heartbeat(hb) = &frame.msg
                                && let Some(d) = drift.observe(hb.boot_id, hb.uptime_ms, std::time::Instant::now())
                            {
                                metrics::gauge!("aeogate_board_clock_drift_seconds", "device" => dev.name.clone()).set(d);
                            }
                            let (ack, board_events) = session.receive(frame);
                            let lane_events: Vec<AssemblerEvent> = board_events
                                .into_iter()
                                .filter_map(|event| board_event(dev, event, health))
                                .collect();
                            // Durable before the board hears the ack (a failed write is
                            // counted and logged by the read log; the lane goes on).
                            if let Some(log) = log {
                                let _ = log.log(&lane_events).await;
                            }
                            if let Some(ack) = ack {
                                write_frame(&mut port, &ack).await?;
                            }
                            for ev in lane_events {
                                events.send(ev).await.map_err(|_| PortError::ChannelClosed)?;
                            }
                        }
                        Err(LinkError::UnknownMessage { seq, kind }) => {
                            last_valid = Instant::now();
                            tracing::warn!(device = %dev.name, seq, kind, "board sent a message kind this agent does not know; acknowledged, ignored");
                            let ack = session.ack(seq);
                            write_frame(&mut port, &ack).await?;
                        }
                        Err(e) => {
                            metrics::counter!("aeogate_link_rejected_frames_total", "device" => dev.name.clone()).increment(1);
                            tracing::debug!(device = %dev.name, error = %e, "link frame rejected");
                        }
                    }
                }
            }
            cmd = commands.recv(), if commands_open => {
                match cmd {
                    Some(cmd) => {
                        tracing::info!(device = %dev.name, light = %cmd.light, barrier = %cmd.barrier, text = %cmd.text, "lane command");
                        let frame = session.command(cmd, Instant::now());
                        write_frame(&mut port, &frame).await?;
                    }
                    None => commands_open = false,
                }
            }
            () = sleep_until_opt(retransmit_at) => {
                match session.retransmit(Instant::now()) {
                    Ok(Some(frame)) => write_frame(&mut port, &frame).await?,
                    Ok(None) => {}
                    Err(frame) => {
                        metrics::counter!("aeogate_lane_commands_unacked_total", "device" => dev.name.clone()).increment(1);
                        tracing::warn!(device = %dev.name, seq = frame.seq, "board did not acknowledge the lane command in time; abandoned");
                    }
                }
            }
            () = tokio::time::sleep_until(silence_deadline) => {
                return Err(PortError::Silent(dev.silence_timeout));
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What a board event means for the lane (a read or a presence change), if anything;
/// heartbeats, faults, acks and boots update health and the log.
fn board_event(
    dev: &SerialDevice,
    event: BoardEvent,
    health: &HealthReporter,
) -> Option<AssemblerEvent> {
    let now = Timestamp::now();
    match event {
        BoardEvent::Tag(tag) => {
            let (raw, value) = tag_value(&tag.epc);
            Some(AssemblerEvent::Read(RawRead {
                lane: dev.lane.clone(),
                source: ReadSource::Rfid,
                device: dev.name.clone(),
                raw,
                value,
                at: now,
                antenna: Some(tag.antenna),
                rssi: Some(i16::from(tag.rssi)),
                confidence: None,
                entered_by: None,
            }))
        }
        BoardEvent::Seal(seal) => Some(AssemblerEvent::Read(seal_read(dev, &seal, now))),
        BoardEvent::Presence { loop_id, present } => Some(AssemblerEvent::Presence {
            lane: dev.lane.clone(),
            loop_id,
            present,
            at: now,
        }),
        BoardEvent::Heartbeat(hb) => {
            health.up(heartbeat_detail(&hb));
            None
        }
        BoardEvent::Fault { code, detail } => {
            tracing::warn!(device = %dev.name, ?code, detail, "board fault");
            metrics::counter!("aeogate_board_faults_total", "device" => dev.name.clone(), "code" => format!("{code:?}")).increment(1);
            None
        }
        BoardEvent::CommandAcked { seq } => {
            tracing::debug!(device = %dev.name, seq, "lane command acknowledged");
            None
        }
        BoardEvent::NewBoot {
            previous,
            boot_id,
            uptime_ms,
            why,
        } => {
            match why {
                NewBootReason::FirstContact => {
                    tracing::info!(device = %dev.name, boot = format_args!("{boot_id:08x}"), uptime_ms, "board boot");
                }
                NewBootReason::BootIdChanged | NewBootReason::UptimeWentBack => {
                    metrics::counter!("aeogate_board_restarts_total", "device" => dev.name.clone())
                        .increment(1);
                    tracing::warn!(
                        device = %dev.name,
                        previous = format_args!("{:08x}", previous.unwrap_or_default()),
                        boot = format_args!("{boot_id:08x}"),
                        uptime_ms,
                        ?why,
                        "board restarted or replaced; new link session (sequence and presence order forgotten, lane command in flight dropped)"
                    );
                }
            }
            None
        }
    }
}

fn heartbeat_detail(hb: &link::Heartbeat) -> String {
    let s = &hb.status;
    let mut detail = format!(
        "board {} boot {:08x} fw {}.{} up {} s; light {}, barrier {}, presence {:#04b}",
        hb.board_id,
        hb.boot_id,
        hb.fw_version >> 8,
        hb.fw_version & 0xFF,
        hb.uptime_ms / 1000,
        s.light,
        s.barrier,
        s.presence
    );
    if !s.uhf_reader_ok {
        detail.push_str("; UHF reader not answering");
    }
    if !s.seal_reader_ok {
        detail.push_str("; e-seal reader not answering");
    }
    detail
}

/// The link reports e-seal battery as a level, not a percentage. `Low` and `Critical` map
/// to 10 % and 2 %, below any sensible low-battery threshold; `Ok` to none (unknown).
fn battery_pct(level: BatteryLevel) -> Option<u8> {
    match level {
        BatteryLevel::Ok => None,
        BatteryLevel::Low => Some(10),
        BatteryLevel::Critical => Some(2),
    }
}

fn seal_read(dev: &SerialDevice, seal: &SealRead, at: Timestamp) -> RawRead {
    let id = ESealId::new(seal.manufacturer, seal.tag_id);
    let state = match seal.status {
        SealStatus::Sealed => ESealState::Sealed,
        SealStatus::Opened => ESealState::Opened,
        SealStatus::Tampered => ESealState::Tampered,
    };
    RawRead {
        lane: dev.lane.clone(),
        source: ReadSource::ESealReader,
        device: dev.name.clone(),
        raw: format!("{id} {:?} battery {:?}", seal.status, seal.battery),
        value: ReadValue::ESeal {
            id,
            state,
            battery_pct: battery_pct(seal.battery),
        },
        at,
        antenna: None,
        rssi: None,
        confidence: None,
        entered_by: None,
    }
}

// ---------------------------------------------------------------------------------------
// BB … 7E UHF module read directly
// ---------------------------------------------------------------------------------------

/// One polling cycle of the UHF module: a transmit-power query (which every module answers,
/// so a module with no tag in front of it still proves it is alive) followed by a multiple
/// poll of [`UHF_ROUNDS`] inventory rounds.
pub const UHF_CYCLE: Duration = Duration::from_millis(500);

/// Inventory rounds per multiple poll. The module reports each tag found as a notice.
pub const UHF_ROUNDS: u16 = 20;

/// Line quiet time after which a partial module frame is abandoned (`docs/hardware.md`:
/// `LINE_IDLE_MS`, over 200 byte times at 115200 bit/s).
const LINE_IDLE: Duration = Duration::from_millis(20);

/// Runs a `BB … 7E` UHF module on `dev` until `shutdown`, turning tag notices into RFID
/// reads on `events` (antenna `None`: the module reports no antenna number).
pub async fn run_uhf_module(
    dev: SerialDevice,
    events: mpsc::Sender<AssemblerEvent>,
    health: HealthReporter,
    shutdown: CancellationToken,
) {
    let mut reopener = Reopener::new(&dev, &health, &shutdown);
    while let Some(port) = reopener.open().await {
        let mut progressed = false;
        match uhf_session(&dev, port, &events, &health, &shutdown, &mut progressed).await {
            Ok(()) => break,
            Err(e) => {
                if !reopener.failed(&e, progressed).await {
                    break;
                }
            }
        }
    }
    health.down("stopped");
}

async fn uhf_command(port: &mut SerialStream, cmd: uhf::Command) -> Result<(), PortError> {
    let mut out = [0u8; 16];
    match cmd.encode(&mut out) {
        Ok(n) => write_bytes(port, &out[..n]).await,
        Err(e) => {
            tracing::error!(error = %e, "UHF command could not be encoded");
            Ok(())
        }
    }
}

async fn uhf_session(
    dev: &SerialDevice,
    mut port: SerialStream,
    events: &mpsc::Sender<AssemblerEvent>,
    health: &HealthReporter,
    shutdown: &CancellationToken,
    progressed: &mut bool,
) -> Result<(), PortError> {
    let mut parser = uhf::Parser::new();
    let mut buf = [0u8; 256];
    let mut last_valid = Instant::now();
    let mut last_byte = Instant::now();
    let mut cycle = tokio::time::interval(UHF_CYCLE);
    cycle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut frames = Vec::new();
    loop {
        let idle_at = (parser.pending() > 0).then_some(last_byte + LINE_IDLE);
        tokio::select! {
            () = shutdown.cancelled() => {
                // Leave the module quiet for whoever opens it next.
                let _ = uhf_command(&mut port, uhf::Command::StopMultiPoll).await;
                return Ok(());
            }
            _ = cycle.tick() => {
                uhf_command(&mut port, uhf::Command::GetTxPower).await?;
                uhf_command(&mut port, uhf::Command::MultiPoll { count: UHF_ROUNDS }).await?;
            }
            read = port.read(&mut buf) => {
                let n = match read {
                    Ok(0) => return Err(PortError::HungUp),
                    Ok(n) => n,
                    Err(e) => return Err(PortError::Read(e)),
                };
                last_byte = Instant::now();
                parser.push_slice(&buf[..n], |r| frames.push(r));
            }
            () = sleep_until_opt(idle_at) => {
                while let Some(r) = parser.idle() {
                    frames.push(r);
                }
            }
            () = tokio::time::sleep_until(last_valid + dev.silence_timeout) => {
                return Err(PortError::Silent(dev.silence_timeout));
            }
        }
        for result in frames.drain(..) {
            let reply = result.and_then(|f| uhf::Reply::parse(&f));
            match reply {
                Ok(reply) => {
                    last_valid = Instant::now();
                    *progressed = true;
                    health.up("module answering");
                    if let uhf::Reply::Tag(tag) = reply {
                        let (raw, value) = tag_value(&tag.epc);
                        let read = RawRead {
                            lane: dev.lane.clone(),
                            source: ReadSource::Rfid,
                            device: dev.name.clone(),
                            raw,
                            value,
                            at: Timestamp::now(),
                            antenna: None,
                            rssi: Some(i16::from(tag.rssi)),
                            confidence: None,
                            entered_by: None,
                        };
                        events
                            .send(AssemblerEvent::Read(read))
                            .await
                            .map_err(|_| PortError::ChannelClosed)?;
                    }
                }
                Err(e) => {
                    metrics::counter!("aeogate_uhf_rejected_frames_total", "device" => dev.name.clone()).increment(1);
                    tracing::debug!(device = %dev.name, error = %e, "UHF frame rejected");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::link::{Barrier, Light};

    fn cmd() -> LaneCommand {
        LaneCommand {
            light: Light::Green,
            barrier: Barrier::Raise,
            route: 1,
            text: heapless::String::try_from("FAST").expect("fits"),
        }
    }

    #[test]
    fn acknowledges_every_frame_and_acts_on_each_seq_once() {
        let mut s = LinkSession::new(100);
        let f = Frame::new(
            7,
            Message::Presence {
                loop_id: 0,
                present: true,
            },
        );
        let (ack, ev) = s.receive(f.clone());
        assert_eq!(ack.map(|a| a.msg), Some(Message::Ack { seq: 7 }));
        assert_eq!(
            ev,
            [BoardEvent::Presence {
                loop_id: 0,
                present: true
            }]
        );
        let (ack, ev) = s.receive(f);
        assert_eq!(
            ack.map(|a| (a.seq, a.msg)),
            Some((101, Message::Ack { seq: 7 }))
        );
        assert_eq!(
            ev,
            [],
            "a resent frame is acked again but not acted on twice"
        );
    }

    #[test]
    fn an_older_presence_report_resent_after_a_newer_one_does_not_undo_it() {
        let mut s = LinkSession::new(0);
        let present = |seq, p| {
            Frame::new(
                seq,
                Message::Presence {
                    loop_id: 0,
                    present: p,
                },
            )
        };
        // Frame 10 (arrived) was lost on the wire; 11 (left) got through; 10 is resent.
        let (_, ev) = s.receive(present(11, false));
        assert_eq!(
            ev,
            [BoardEvent::Presence {
                loop_id: 0,
                present: false
            }]
        );
        let (ack, ev) = s.receive(present(10, true));
        assert_eq!(
            ack.map(|a| a.msg),
            Some(Message::Ack { seq: 10 }),
            "still acknowledged"
        );
        assert_eq!(ev, [], "the stale report is not applied");
        // Newer reports, across the u16 wrap, are applied; another loop is independent.
        assert!(!s.receive(present(12, true)).1.is_empty());
        let (_, ev) = s.receive(Frame::new(
            5,
            Message::Presence {
                loop_id: 1,
                present: true,
            },
        ));
        assert!(!ev.is_empty());
        let mut w = LinkSession::new(0);
        assert!(!w.receive(present(u16::MAX, true)).1.is_empty());
        assert!(
            !w.receive(present(0, false)).1.is_empty(),
            "0 follows 65535"
        );
        assert!(
            w.receive(present(u16::MAX - 1, true)).1.is_empty(),
            "65534 precedes 65535"
        );
        // A reopened port may be a restarted board numbering from anywhere: its first
        // presence report is applied whatever its seq.
        w.reconnected();
        assert!(
            !w.receive(present(3, true)).1.is_empty(),
            "applied after a reconnect"
        );
    }

    #[test]
    fn does_not_acknowledge_an_ack() {
        let mut s = LinkSession::new(0);
        let (ack, ev) = s.receive(Frame::new(3, Message::Ack { seq: 99 }));
        assert!(ack.is_none() && ev.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn resends_a_lane_command_until_acked() {
        let mut s = LinkSession::new(500);
        let t0 = Instant::now();
        let sent = s.command(cmd(), t0);
        assert_eq!(sent.seq, 500);
        assert_eq!(s.retransmit(t0 + Duration::from_millis(100)), Ok(None));
        let again = s.retransmit(t0 + RETRY).expect("within ttl").expect("due");
        assert_eq!(again, sent, "the same frame, same seq");
        let (_, ev) = s.receive(Frame::new(1, Message::Ack { seq: 500 }));
        assert_eq!(ev, [BoardEvent::CommandAcked { seq: 500 }]);
        assert!(!s.command_pending());
        assert_eq!(s.retransmit(t0 + RETRY * 3), Ok(None));
    }

    #[tokio::test(start_paused = true)]
    async fn abandons_a_command_after_its_ttl() {
        let mut s = LinkSession::new(0);
        let t0 = Instant::now();
        s.command(cmd(), t0);
        assert!(s.retransmit(t0 + COMMAND_TTL).is_err());
        assert!(!s.command_pending());
    }

    #[tokio::test(start_paused = true)]
    async fn a_newer_command_replaces_the_one_in_flight() {
        let mut s = LinkSession::new(10);
        let t0 = Instant::now();
        s.command(cmd(), t0);
        let second = s.command(cmd(), t0);
        let (_, ev) = s.receive(Frame::new(1, Message::Ack { seq: 10 }));
        assert_eq!(ev, [], "an ack for the replaced command settles nothing");
        assert!(s.command_pending());
        let (_, ev) = s.receive(Frame::new(2, Message::Ack { seq: second.seq }));
        assert_eq!(ev, [BoardEvent::CommandAcked { seq: 11 }]);
    }

    mod board {
        include!("../../tests/io_support/heartbeat.rs");
    }
    use board::board_heartbeat;

    fn hello(boot_id: u32, uptime_ms: u32) -> Message {
        Message::Hello(link::Hello {
            boot_id,
            uptime_ms,
            board_id: 1,
            fw_version: 0x0100,
        })
    }

    fn presence(seq: u16, present: bool) -> Frame {
        Frame::new(
            seq,
            Message::Presence {
                loop_id: 0,
                present,
            },
        )
    }

    fn new_boot(events: &[BoardEvent]) -> Option<(Option<u32>, u32, NewBootReason)> {
        events.iter().find_map(|e| match e {
            BoardEvent::NewBoot {
                previous,
                boot_id,
                why,
                ..
            } => Some((*previous, *boot_id, *why)),
            _ => None,
        })
    }

    /// A session that has talked to boot 0xA for a while: seqs 1..=3 used, loop 0 last
    /// reported clear at seq 3.
    fn session_with_boot_a() -> LinkSession {
        let mut s = LinkSession::new(0);
        let (_, ev) = s.receive(Frame::new(1, hello(0xA, 10)));
        assert_eq!(
            new_boot(&ev),
            Some((None, 0xA, NewBootReason::FirstContact))
        );
        assert!(!s.receive(presence(2, true)).1.is_empty());
        assert!(!s.receive(presence(3, false)).1.is_empty());
        s
    }

    #[test]
    fn a_replacement_board_with_a_longer_uptime_is_a_new_session() {
        let mut s = session_with_boot_a();
        // Another board, up for ten minutes, numbering from 0: its announcement first.
        let (ack, ev) = s.receive(Frame::new(0, hello(0xB, 600_000)));
        assert_eq!(ack.map(|a| a.msg), Some(Message::Ack { seq: 0 }));
        assert_eq!(
            new_boot(&ev),
            Some((Some(0xA), 0xB, NewBootReason::BootIdChanged))
        );
        assert_eq!(s.boot(), Some(0xB));
        // Seq 2 was a presence of the old board; from the new one it is a new event, and
        // an arrival at seq 1 is not older than the old board's departure at seq 3.
        let (_, ev) = s.receive(presence(1, true));
        assert_eq!(
            ev,
            [BoardEvent::Presence {
                loop_id: 0,
                present: true
            }]
        );
        assert!(!s.receive(presence(2, false)).1.is_empty());
    }

    #[test]
    fn a_new_boot_seen_first_in_a_heartbeat_is_reported_before_the_heartbeat() {
        let mut s = session_with_boot_a();
        let (_, ev) = s.receive(Frame::new(3, board_heartbeat(0xC, 5, 0)));
        assert!(matches!(
            ev.as_slice(),
            [BoardEvent::NewBoot { .. }, BoardEvent::Heartbeat(_)]
        ));
        assert!(
            !s.receive(presence(2, true)).1.is_empty(),
            "seq 2 of the new boot is new"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_boot_drops_the_command_in_flight() {
        let mut s = session_with_boot_a();
        s.command(cmd(), Instant::now());
        s.receive(Frame::new(0, hello(0xB, 0)));
        assert!(!s.command_pending(), "meant for the old boot's lane state");
    }

    #[test]
    fn the_same_boot_announcing_again_is_not_a_restart() {
        let mut s = session_with_boot_a();
        // The link timed out and came back: the board announces the same boot again.
        let (_, ev) = s.receive(Frame::new(4, hello(0xA, 20_000)));
        assert_eq!(new_boot(&ev), None);
        let (_, ev) = s.receive(Frame::new(5, board_heartbeat(0xA, 21_000, 0)));
        assert_eq!(new_boot(&ev), None);
        assert!(
            s.receive(presence(3, false)).1.is_empty(),
            "duplicates of the same boot are still suppressed"
        );
    }

    #[test]
    fn uptime_going_back_with_the_same_boot_id_is_a_restart_but_its_wrap_is_not() {
        let mut s = LinkSession::new(0);
        s.receive(Frame::new(1, board_heartbeat(7, 50_000, 0)));
        s.receive(presence(2, true));
        let (_, ev) = s.receive(Frame::new(1, board_heartbeat(7, 10, 0)));
        assert_eq!(
            new_boot(&ev),
            Some((Some(7), 7, NewBootReason::UptimeWentBack))
        );
        assert!(
            !s.receive(presence(2, true)).1.is_empty(),
            "seq 2 from the restarted board is a new event"
        );
        let mut w = LinkSession::new(0);
        w.receive(Frame::new(1, board_heartbeat(7, u32::MAX - 500, 0)));
        let (_, ev) = w.receive(Frame::new(2, board_heartbeat(7, 500, 0)));
        assert_eq!(new_boot(&ev), None, "49.7 days of uptime wrapped");
    }

    #[test]
    fn frames_heard_before_the_first_heartbeat_are_not_acted_on_again() {
        // A restarted agent reads what the board queued and resent while it was down:
        // events first, the board's first heartbeat after them, then older resends.
        let mut s = LinkSession::new(100);
        let (_, ev) = s.receive(presence(10, true));
        assert_eq!(
            ev,
            [BoardEvent::Presence {
                loop_id: 0,
                present: true
            }]
        );
        let (_, ev) = s.receive(presence(11, false));
        assert_eq!(
            ev,
            [BoardEvent::Presence {
                loop_id: 0,
                present: false
            }]
        );
        let (_, ev) = s.receive(Frame::new(12, board_heartbeat(0xA, 5_000, 0)));
        assert!(new_boot(&ev).is_some(), "first contact reported");
        let (ack, ev) = s.receive(presence(10, true));
        assert!(ack.is_some(), "a resend is acknowledged again");
        assert_eq!(ev, [], "but the truck does not arrive a second time");
    }

    #[test]
    fn a_board_replaced_while_the_port_was_closed_is_reported() {
        let mut s = session_with_boot_a();
        s.reconnected();
        let (_, ev) = s.receive(Frame::new(0, hello(0xB, 10)));
        assert_eq!(
            new_boot(&ev),
            Some((Some(0xA), 0xB, NewBootReason::BootIdChanged))
        );
    }
}
