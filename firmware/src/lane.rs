//! The lane state machine: a sans-IO core that owns the board's behaviour and its safety
//! rules. It does no I/O and reads no clock: the caller passes each [`Event`] with the
//! current time to [`LaneController::handle`], then calls [`LaneController::poll`] until
//! it returns `None`, carrying out each [`Action`] (send a frame, set an output, poll a
//! reader).
//!
//! # Safety rules (no lane command can override them)
//!
//! 1. **The barrier never lowers while a vehicle may be present.** `SetBarrier(Lower)` is
//!    only emitted when every configured presence loop has reported and all are clear. A
//!    commanded lower that is held back is reported as [`FaultCode::BarrierLowerRefused`]
//!    and carried out when the last loop clears (if it is still what is wanted).
//! 2. **A silent link puts the lane in its safe state.** When no valid frame has come from
//!    the agent for `link_timeout_ms`, the light goes red and the barrier is asked to
//!    lower (which rule 1 holds back while a vehicle is present, so the barrier stays as
//!    it is until the vehicle leaves). The board starts in this state. When frames come
//!    back, [`FaultCode::LinkSilentRecovered`] is reported; the lane stays safe until the
//!    agent sends a new lane command. Whenever the link comes up (the first time too),
//!    the current state of every loop is queued as a `Presence` event: presence is
//!    reported as changes, and a change from while the link was down may be lost.
//! 3. **A reader that stops answering is reported and retried.** After
//!    `reader_silent_after` unanswered polls in a row, [`FaultCode::ReaderSilent`]; polls
//!    continue every `reader_retry_ms`; the first answer reports
//!    [`FaultCode::ReaderRecovered`].
//! 4. **The lane returns to its safe state between vehicles.** When a vehicle arrives
//!    (the loops go from all clear to any occupied) and when it has cleared (every loop
//!    reports clear again), the light goes red, the sign is cleared and the barrier is
//!    asked to lower — which rule 1 holds back while a loop is occupied. Whatever the agent
//!    last commanded was for the vehicle before: the next one meets a red light, and the
//!    barrier is down before it leaves the loops, until the agent decides for *it*.
//!
//! # Boot announcement
//!
//! Every boot has its own `boot_id` ([`Config::boot_id`]), carried in every heartbeat. On
//! every link-up — at start, and when the link returns after a timeout — a
//! [`Message::Hello`] goes at the head of the event queue, and no other event is sent
//! until the agent has acknowledged it. The agent thus learns of a new boot (and forgets
//! what it remembered of the old one: sequence numbers, presence order) before it sees any
//! event of the new boot, however quickly the board was reset or replaced.
//!
//! # Link reliability
//!
//! Every frame carries the next value of a wrapping `u16` sequence counter. Events
//! (tag reads, seal reads, presence changes, faults) wait in a bounded queue and are
//! (re)transmitted, at most `window` at a time, every `retry_ms` until the agent
//! acknowledges their `seq`. Heartbeats and acks are sent once. When the queue is full the
//! oldest tag read (else the oldest event other than the boot announcement) is dropped and
//! [`FaultCode::QueueOverflow`] reports how many. Every frame received from the agent except an ack is acknowledged,
//! duplicates included; a lane command is obeyed once per `seq` (the last
//! [`SEEN_SEQS`] are remembered, forgotten when the link times out).

use heapless::{String, Vec};
use protocol::link::{Barrier, Light};
use protocol::link::{
    BoardStatus, FaultCode, Frame, Heartbeat, Hello, LINK_CRC, LaneCommand, LinkError,
    MAX_TEXT_BYTES, Message, SealRead, TagRead,
};
use protocol::reader::uhf::TagNotice;

use crate::elapsed;

/// Events waiting for an acknowledgement, at most.
pub const QUEUE: usize = 16;
/// Received sequence numbers remembered for duplicate suppression.
pub const SEEN_SEQS: usize = 16;
/// Acknowledgements waiting to be sent, at most (more are dropped; the agent retransmits).
const ACKS: usize = 8;
/// Recently reported tags and seals remembered for the repeat hold-off.
const RECENT: usize = 16;
/// Presence loops a board can have (one bit each in the status byte).
pub const MAX_LOOPS: u8 = 8;

/// Board configuration. All times in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Board identity reported in heartbeats.
    pub board_id: u16,
    /// Identifies this boot, in the boot announcement and every heartbeat. It must differ
    /// from one start of the board to the next (a board derives it from a hardware entropy
    /// source at reset; the virtual board draws it at random); the default of 0 is for
    /// tests only.
    pub boot_id: u32,
    /// Firmware version reported in heartbeats, `major << 8 | minor`.
    pub fw_version: u16,
    /// Presence loops wired (1..=8), numbered from 0.
    pub loops: u8,
    /// Antenna (read point) number reported with tag reads.
    pub antenna: u8,
    /// No valid frame from the agent for this long → safe state.
    pub link_timeout_ms: u32,
    /// Heartbeat period.
    pub heartbeat_ms: u32,
    /// Retransmission interval for unacknowledged events.
    pub retry_ms: u32,
    /// Unacknowledged events in flight at once.
    pub window: u8,
    /// UHF inventory period while the reader answers.
    pub uhf_poll_ms: u32,
    /// E-seal poll period while the reader answers.
    pub seal_poll_ms: u32,
    /// A poll unanswered this long counts as a miss even if the driver said nothing.
    pub reader_answer_ms: u32,
    /// Consecutive misses before a reader is reported silent.
    pub reader_silent_after: u8,
    /// Poll period for a silent reader.
    pub reader_retry_ms: u32,
    /// The same tag (or the same seal in the same state) is reported at most once per
    /// this period; readers repeat a tag many times a second.
    pub repeat_holdoff_ms: u32,
    /// Error counters (checksums, tag CRCs, rejected link frames, dropped events) are
    /// reported at most once per this period.
    pub fault_report_ms: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            board_id: 0,
            boot_id: 0,
            fw_version: 0x0001,
            loops: 2,
            antenna: 1,
            link_timeout_ms: 3_000,
            heartbeat_ms: 1_000,
            retry_ms: 300,
            window: 4,
            uhf_poll_ms: 100,
            seal_poll_ms: 1_000,
            reader_answer_ms: 1_000,
            reader_silent_after: 3,
            reader_retry_ms: 2_000,
            repeat_holdoff_ms: 2_000,
            fault_report_ms: 1_000,
        }
    }
}

/// The readers the board drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// The UHF RFID module.
    Uhf = 0,
    /// The e-seal reader.
    ESeal = 1,
}

/// An output the board drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The lane light.
    Light = 0,
    /// The barrier.
    Barrier = 1,
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A presence loop's debounced state changed (or first settled).
    Presence {
        /// Loop number.
        loop_id: u8,
        /// Vehicle present.
        present: bool,
    },
    /// The UHF reader reported a tag (StoredCRC already verified).
    Tag(TagNotice),
    /// The e-seal reader reported a seal.
    Seal(SealRead),
    /// A reader answered a poll (any valid frame counts).
    ReaderAnswered(Reader),
    /// A reader did not answer a poll in time (or its UART failed).
    ReaderTimedOut(Reader),
    /// A reader sent a damaged frame (checksum, framing).
    ReaderBadFrame(Reader),
    /// The UHF reader reported a tag whose StoredCRC did not match.
    TagCrcMismatch,
    /// A frame arrived from the agent.
    LinkFrame(Frame),
    /// Bytes from the agent were rejected.
    LinkError(LinkError),
    /// Setting an output failed.
    OutputFailed(Output),
}

/// Something for the caller to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Encode and send this frame to the agent.
    Transmit(Frame),
    /// Show this light.
    SetLight(Light),
    /// Drive the barrier.
    SetBarrier(Barrier),
    /// Show this on the lane sign, if the lane has one.
    ShowSign {
        /// Route number (0 = none).
        route: u8,
        /// Text.
        text: String<MAX_TEXT_BYTES>,
    },
    /// Start a poll of this reader (single inventory, or e-seal poll).
    PollReader(Reader),
}

#[derive(Debug, Clone)]
struct Pending {
    frame: Frame,
    sent_ms: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default)]
struct ReaderState {
    last_poll_ms: Option<u32>,
    waiting: bool,
    misses: u8,
    silent: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    reader_checksum: u16,
    tag_crc: u16,
    link_rejected: u16,
    dropped: u16,
}

/// The lane state machine. See the module documentation for its rules.
#[derive(Debug, Clone)]
pub struct LaneController {
    cfg: Config,
    start_ms: u32,
    next_seq: u16,

    // Link.
    last_rx_ms: Option<u32>,
    link_up: bool,
    ever_up: bool,
    seen: Vec<u16, SEEN_SEQS>,
    acks: Vec<u16, ACKS>,
    queue: Vec<Pending, QUEUE>,
    /// `seq` of the boot announcement while the agent has not acknowledged it; until then
    /// it is the only event sent.
    hello_seq: Option<u16>,
    last_heartbeat_ms: Option<u32>,

    // Outputs: what is wanted, and what was last driven.
    want_light: Light,
    want_barrier: Barrier,
    driven_light: Option<Light>,
    driven_barrier: Option<Barrier>,
    /// Set when driving an output failed: outputs are retried `retry_ms` later.
    output_failed_ms: Option<u32>,
    sign: Option<(u8, String<MAX_TEXT_BYTES>)>,

    // Presence: bit n = loop n.
    present: u8,
    known: u8,

    readers: [ReaderState; 2],
    counters: Counters,
    last_fault_report_ms: u32,
    recent: Vec<(u32, u32), RECENT>,
}

impl LaneController {
    /// A controller starting at `now_ms`, in the safe state (red, barrier to be lowered
    /// once every loop reports clear), with the link down.
    pub fn new(cfg: Config, now_ms: u32) -> Self {
        let mut cfg = cfg;
        // Zero periods would make `poll` emit the same action forever.
        cfg.loops = cfg.loops.clamp(1, MAX_LOOPS);
        cfg.window = cfg.window.max(1);
        for t in [
            &mut cfg.heartbeat_ms,
            &mut cfg.retry_ms,
            &mut cfg.uhf_poll_ms,
            &mut cfg.seal_poll_ms,
            &mut cfg.reader_retry_ms,
            &mut cfg.reader_answer_ms,
            &mut cfg.fault_report_ms,
        ] {
            *t = (*t).max(1);
        }
        cfg.reader_silent_after = cfg.reader_silent_after.max(1);
        let mut lane = Self {
            cfg,
            start_ms: now_ms,
            next_seq: 0,
            last_rx_ms: None,
            link_up: false,
            ever_up: false,
            seen: Vec::new(),
            acks: Vec::new(),
            queue: Vec::new(),
            hello_seq: None,
            last_heartbeat_ms: None,
            want_light: Light::Red,
            want_barrier: Barrier::Lower,
            driven_light: None,
            driven_barrier: None,
            output_failed_ms: None,
            sign: None,
            present: 0,
            known: 0,
            readers: [ReaderState::default(); 2],
            counters: Counters::default(),
            last_fault_report_ms: now_ms,
            recent: Vec::new(),
        };
        lane.queue_hello(now_ms);
        lane
    }

    /// The configuration in force (periods of zero are raised to 1 ms).
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// `true` while the agent link is up.
    pub fn link_up(&self) -> bool {
        self.link_up
    }

    /// Light last driven, if any.
    pub fn light(&self) -> Option<Light> {
        self.driven_light
    }

    /// Barrier position last driven, if any.
    pub fn barrier(&self) -> Option<Barrier> {
        self.driven_barrier
    }

    /// Barrier position wanted (by the agent, or by the safe state).
    pub fn wanted_barrier(&self) -> Barrier {
        self.want_barrier
    }

    /// Presence bits as last reported (bit n = loop n).
    pub fn presence(&self) -> u8 {
        self.present
    }

    /// `true` unless every configured loop has reported and none has a vehicle.
    pub fn vehicle_may_be_present(&self) -> bool {
        let all = loop_mask(self.cfg.loops);
        self.present & all != 0 || self.known & all != all
    }

    /// Events waiting for an acknowledgement.
    pub fn unacked(&self) -> usize {
        self.queue.len()
    }

    /// `true` while the boot announcement of the current link-up waits for its
    /// acknowledgement (no other event is sent meanwhile).
    pub fn announcing(&self) -> bool {
        self.hello_seq.is_some()
    }

    /// Feed one event.
    pub fn handle(&mut self, now_ms: u32, event: Event) {
        match event {
            Event::Presence { loop_id, present } => self.on_presence(loop_id, present),
            Event::Tag(tag) => self.on_tag(now_ms, tag),
            Event::Seal(seal) => self.on_seal(now_ms, seal),
            Event::ReaderAnswered(r) => self.on_reader_answer(r),
            Event::ReaderTimedOut(r) => self.on_reader_miss(r),
            Event::ReaderBadFrame(_) => {
                self.counters.reader_checksum = self.counters.reader_checksum.saturating_add(1);
            }
            Event::TagCrcMismatch => {
                self.counters.tag_crc = self.counters.tag_crc.saturating_add(1)
            }
            Event::LinkFrame(frame) => self.on_frame(now_ms, frame),
            Event::LinkError(LinkError::UnknownMessage { seq, .. }) => {
                // Intact, just newer than this firmware: the agent is alive, and an ack
                // stops it retransmitting something this board cannot act on.
                self.link_alive(now_ms);
                self.push_ack(seq);
            }
            Event::LinkError(_) => {
                self.counters.link_rejected = self.counters.link_rejected.saturating_add(1);
            }
            Event::OutputFailed(output) => {
                match output {
                    Output::Light => self.driven_light = None,
                    Output::Barrier => self.driven_barrier = None,
                }
                self.output_failed_ms = Some(now_ms);
                self.enqueue(Message::Fault {
                    code: FaultCode::OutputError,
                    detail: output as u16,
                });
            }
        }
    }

    /// The next thing to do at `now_ms`, or `None` when there is nothing until time passes
    /// or an event arrives. Call until `None`.
    pub fn poll(&mut self, now_ms: u32) -> Option<Action> {
        self.check_link(now_ms);
        if let Some(action) = self.output_action(now_ms) {
            return Some(action);
        }
        if !self.acks.is_empty() {
            let seq = self.acks.remove(0);
            return Some(self.transmit(Message::Ack { seq }));
        }
        if let Some((route, text)) = self.sign.take() {
            return Some(Action::ShowSign { route, text });
        }
        self.expire_reader_polls(now_ms);
        self.report_counters(now_ms);
        if self
            .last_heartbeat_ms
            .is_none_or(|t| elapsed(now_ms, t) >= self.cfg.heartbeat_ms)
        {
            self.last_heartbeat_ms = Some(now_ms);
            let heartbeat = self.heartbeat(now_ms);
            return Some(self.transmit(heartbeat));
        }
        let window = usize::from(self.cfg.window);
        let retry_ms = self.cfg.retry_ms;
        let hello = self.hello_seq;
        if let Some(p) = self
            .queue
            .iter_mut()
            .filter(|p| hello.is_none_or(|seq| p.frame.seq == seq))
            .take(window)
            .find(|p| p.sent_ms.is_none_or(|t| elapsed(now_ms, t) >= retry_ms))
        {
            p.sent_ms = Some(now_ms);
            return Some(Action::Transmit(p.frame.clone()));
        }
        for reader in [Reader::Uhf, Reader::ESeal] {
            if let Some(action) = self.reader_action(now_ms, reader) {
                return Some(action);
            }
        }
        None
    }

    // ---- link ----

    fn transmit(&mut self, msg: Message) -> Action {
        let seq = self.take_seq();
        Action::Transmit(Frame::new(seq, msg))
    }

    fn take_seq(&mut self) -> u16 {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        seq
    }

    fn check_link(&mut self, now_ms: u32) {
        if let Some(last) = self.last_rx_ms
            && self.link_up
            && elapsed(now_ms, last) > self.cfg.link_timeout_ms
        {
            self.link_up = false;
            self.want_light = Light::Red;
            self.want_barrier = Barrier::Lower;
            // The agent may restart and number from anywhere.
            self.seen.clear();
            // Whoever answers next hears which boot this is before any further event.
            self.queue_hello(now_ms);
        }
    }

    /// Puts a boot announcement at the head of the queue (replacing one not yet
    /// acknowledged); the rest of the queue waits until the agent acknowledges it.
    fn queue_hello(&mut self, now_ms: u32) {
        if let Some(old) = self.hello_seq.take()
            && let Some(i) = self.queue.iter().position(|p| p.frame.seq == old)
        {
            self.queue.remove(i);
        }
        if self.queue.is_full() {
            self.drop_one();
        }
        let hello = Hello {
            boot_id: self.cfg.boot_id,
            uptime_ms: elapsed(now_ms, self.start_ms),
            board_id: self.cfg.board_id,
            fw_version: self.cfg.fw_version,
        };
        let frame = Frame::new(self.take_seq(), Message::Hello(hello));
        self.hello_seq = Some(frame.seq);
        // Room was made above.
        let _ = self.queue.insert(
            0,
            Pending {
                frame,
                sent_ms: None,
            },
        );
    }

    /// Drops one queued event to make room: the oldest tag read, else the oldest event
    /// other than the boot announcement.
    fn drop_one(&mut self) {
        let hello = self.hello_seq;
        let victim = self
            .queue
            .iter()
            .position(|p| matches!(p.frame.msg, Message::TagRead(_)))
            .or_else(|| {
                self.queue
                    .iter()
                    .position(|p| hello.is_none_or(|seq| p.frame.seq != seq))
            })
            .unwrap_or(0);
        self.queue.remove(victim);
        self.counters.dropped = self.counters.dropped.saturating_add(1);
    }

    fn link_alive(&mut self, now_ms: u32) {
        self.check_link(now_ms);
        if !self.link_up {
            if self.ever_up {
                let silent_ms = self.last_rx_ms.map_or(0, |t| elapsed(now_ms, t));
                let secs = u16::try_from(silent_ms / 1000).unwrap_or(u16::MAX);
                self.enqueue(Message::Fault {
                    code: FaultCode::LinkSilentRecovered,
                    detail: secs,
                });
            }
            self.link_up = true;
            self.ever_up = true;
            self.announce_presence();
        }
        self.last_rx_ms = Some(now_ms);
    }

    /// Queues the current state of every loop that has reported, after whatever is
    /// already queued. Presence is reported as changes, and a change queued while the
    /// link was down may have been dropped from a full queue (or been sent into a line
    /// nobody read): without this, an agent that comes up while a vehicle is on the loop
    /// would never open its transaction. Repeating a state the agent already knows is
    /// harmless to it.
    fn announce_presence(&mut self) {
        for loop_id in 0..self.cfg.loops {
            let bit = 1u8 << loop_id;
            if self.known & bit != 0 {
                self.enqueue(Message::Presence {
                    loop_id,
                    present: self.present & bit != 0,
                });
            }
        }
    }

    fn push_ack(&mut self, seq: u16) {
        // A full ack list drops this ack; the agent will retransmit and be acked then.
        let _ = self.acks.push(seq);
    }

    fn on_frame(&mut self, now_ms: u32, frame: Frame) {
        self.link_alive(now_ms);
        if let Message::Ack { seq } = frame.msg {
            if let Some(i) = self.queue.iter().position(|p| p.frame.seq == seq) {
                self.queue.remove(i);
            }
            if self.hello_seq == Some(seq) {
                self.hello_seq = None;
            }
            return;
        }
        self.push_ack(frame.seq);
        if self.seen.contains(&frame.seq) {
            return;
        }
        if self.seen.is_full() {
            self.seen.remove(0);
        }
        let _ = self.seen.push(frame.seq);
        if let Message::LaneCommand(cmd) = frame.msg {
            self.obey(cmd);
        }
        // Other messages from the agent carry nothing for the board; acknowledged above.
    }

    fn obey(&mut self, cmd: LaneCommand) {
        self.want_light = cmd.light;
        // A lower that is already wanted (the safe state, rules 2 and 4) and held back is
        // not reported again when the agent asks for it too.
        let newly_lower = cmd.barrier == Barrier::Lower && self.want_barrier != Barrier::Lower;
        self.want_barrier = cmd.barrier;
        if newly_lower
            && self.driven_barrier != Some(Barrier::Lower)
            && self.vehicle_may_be_present()
        {
            let blocking = self.present | !self.known & loop_mask(self.cfg.loops);
            self.enqueue(Message::Fault {
                code: FaultCode::BarrierLowerRefused,
                detail: u16::from(blocking),
            });
        }
        self.sign = Some((cmd.route, cmd.text));
    }

    fn enqueue(&mut self, msg: Message) {
        if self.queue.is_full() {
            self.drop_one();
        }
        let frame = Frame::new(self.take_seq(), msg);
        // Room was made above.
        let _ = self.queue.push(Pending {
            frame,
            sent_ms: None,
        });
    }

    fn heartbeat(&self, now_ms: u32) -> Message {
        Message::Heartbeat(Heartbeat {
            uptime_ms: elapsed(now_ms, self.start_ms),
            boot_id: self.cfg.boot_id,
            board_id: self.cfg.board_id,
            fw_version: self.cfg.fw_version,
            status: BoardStatus {
                link_ok: self.link_up,
                uhf_reader_ok: !self.readers[Reader::Uhf as usize].silent,
                seal_reader_ok: !self.readers[Reader::ESeal as usize].silent,
                light: self.driven_light.unwrap_or(self.want_light),
                barrier: self.driven_barrier.unwrap_or(self.want_barrier),
                presence: self.present,
                unacked: u8::try_from(self.queue.len()).unwrap_or(u8::MAX),
            },
        })
    }

    fn report_counters(&mut self, now_ms: u32) {
        if elapsed(now_ms, self.last_fault_report_ms) < self.cfg.fault_report_ms {
            return;
        }
        self.last_fault_report_ms = now_ms;
        let c = core::mem::take(&mut self.counters);
        for (code, count) in [
            (FaultCode::ReaderChecksum, c.reader_checksum),
            (FaultCode::TagCrc, c.tag_crc),
            (FaultCode::LinkRejected, c.link_rejected),
            (FaultCode::QueueOverflow, c.dropped),
        ] {
            if count > 0 {
                self.enqueue(Message::Fault {
                    code,
                    detail: count,
                });
            }
        }
    }

    // ---- outputs ----

    fn output_action(&mut self, now_ms: u32) -> Option<Action> {
        if let Some(failed) = self.output_failed_ms {
            if elapsed(now_ms, failed) < self.cfg.retry_ms {
                return None;
            }
            self.output_failed_ms = None;
        }
        if self.driven_light != Some(self.want_light) {
            self.driven_light = Some(self.want_light);
            return Some(Action::SetLight(self.want_light));
        }
        if self.driven_barrier != Some(self.want_barrier) {
            if self.want_barrier == Barrier::Lower && self.vehicle_may_be_present() {
                // Rule 1: held back until every loop is clear.
                return None;
            }
            self.driven_barrier = Some(self.want_barrier);
            return Some(Action::SetBarrier(self.want_barrier));
        }
        None
    }

    // ---- presence ----

    fn on_presence(&mut self, loop_id: u8, present: bool) {
        if loop_id >= self.cfg.loops {
            return;
        }
        let bit = 1u8 << loop_id;
        let was_known = self.known & bit != 0;
        let was_present = self.present & bit != 0;
        let occupied_before = self.present != 0;
        let clear_before = !self.vehicle_may_be_present();
        self.known |= bit;
        if present {
            self.present |= bit;
        } else {
            self.present &= !bit;
        }
        if !was_known || was_present != present {
            self.enqueue(Message::Presence { loop_id, present });
        }
        // Rule 4: a vehicle arrived, or the one on the loops has cleared them.
        let arrived = !occupied_before && self.present != 0;
        let cleared = occupied_before && !clear_before && !self.vehicle_may_be_present();
        if arrived || cleared {
            self.safe_state();
        }
    }

    /// Red, sign cleared, barrier to be lowered (held back by rule 1 while a vehicle may be
    /// present).
    fn safe_state(&mut self) {
        self.want_light = Light::Red;
        self.want_barrier = Barrier::Lower;
        self.sign = Some((0, String::new()));
    }

    // ---- readers ----

    fn on_reader_answer(&mut self, reader: Reader) {
        let r = &mut self.readers[reader as usize];
        r.waiting = false;
        r.misses = 0;
        if r.silent {
            r.silent = false;
            self.enqueue(Message::Fault {
                code: FaultCode::ReaderRecovered,
                detail: reader as u16,
            });
        }
    }

    fn on_reader_miss(&mut self, reader: Reader) {
        let silent_after = self.cfg.reader_silent_after;
        let r = &mut self.readers[reader as usize];
        r.waiting = false;
        r.misses = r.misses.saturating_add(1);
        if r.misses >= silent_after && !r.silent {
            r.silent = true;
            self.enqueue(Message::Fault {
                code: FaultCode::ReaderSilent,
                detail: reader as u16,
            });
        }
    }

    /// A poll the driver never reported back on counts as a miss after
    /// `reader_answer_ms`. Runs before the queue is served, as a miss may queue a fault.
    fn expire_reader_polls(&mut self, now_ms: u32) {
        for reader in [Reader::Uhf, Reader::ESeal] {
            let state = self.readers[reader as usize];
            if state.waiting
                && state
                    .last_poll_ms
                    .is_none_or(|asked| elapsed(now_ms, asked) >= self.cfg.reader_answer_ms)
            {
                self.on_reader_miss(reader);
            }
        }
    }

    fn reader_action(&mut self, now_ms: u32, reader: Reader) -> Option<Action> {
        if self.readers[reader as usize].waiting {
            return None;
        }
        let period = if self.readers[reader as usize].silent {
            self.cfg.reader_retry_ms
        } else {
            match reader {
                Reader::Uhf => self.cfg.uhf_poll_ms,
                Reader::ESeal => self.cfg.seal_poll_ms,
            }
        };
        let r = &mut self.readers[reader as usize];
        if r.last_poll_ms.is_some_and(|t| elapsed(now_ms, t) < period) {
            return None;
        }
        r.last_poll_ms = Some(now_ms);
        r.waiting = true;
        Some(Action::PollReader(reader))
    }

    fn on_tag(&mut self, now_ms: u32, tag: TagNotice) {
        let mut digest = LINK_CRC.digest();
        digest.update(b"T");
        digest.update(&tag.pc.to_be_bytes());
        digest.update(&tag.epc);
        if self.repeated(now_ms, digest.finalize()) {
            return;
        }
        self.enqueue(Message::TagRead(TagRead {
            antenna: self.cfg.antenna,
            rssi: tag.rssi,
            pc: tag.pc,
            epc: tag.epc,
        }));
    }

    fn on_seal(&mut self, now_ms: u32, seal: SealRead) {
        let mut digest = LINK_CRC.digest();
        digest.update(&[b'S', seal.status as u8, seal.battery as u8]);
        digest.update(&seal.manufacturer.to_be_bytes());
        digest.update(&seal.tag_id.to_be_bytes());
        if self.repeated(now_ms, digest.finalize()) {
            return;
        }
        self.enqueue(Message::SealRead(seal));
    }

    /// `true` if `key` was reported within the hold-off; records it otherwise.
    fn repeated(&mut self, now_ms: u32, key: u32) -> bool {
        let holdoff = self.cfg.repeat_holdoff_ms;
        if let Some(entry) = self.recent.iter_mut().find(|(k, _)| *k == key) {
            if elapsed(now_ms, entry.1) < holdoff {
                return true;
            }
            entry.1 = now_ms;
            return false;
        }
        if self.recent.is_full() {
            // Forget the entry reported longest ago.
            let oldest = self
                .recent
                .iter()
                .enumerate()
                .max_by_key(|(_, (_, t))| elapsed(now_ms, *t))
                .map_or(0, |(i, _)| i);
            self.recent.swap_remove(oldest);
        }
        let _ = self.recent.push((key, now_ms));
        false
    }
}

const fn loop_mask(loops: u8) -> u8 {
    if loops >= 8 { 0xFF } else { (1u8 << loops) - 1 }
}
