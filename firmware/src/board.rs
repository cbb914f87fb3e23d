//! Glue between the drivers, the agent link and the [`LaneController`].
//!
//! [`Board::poll`] is the body of the main loop: it samples the presence loops, reads the
//! link and the readers without blocking, feeds what it finds to the controller as
//! [`Event`]s, and carries out the controller's [`Action`]s. It is generic over every pin
//! and UART, so the firmware binary passes HAL peripherals and the virtual board passes
//! simulated pins and a pseudo-terminal.

use embedded_hal::digital::{InputPin, OutputPin};
use embedded_io::{Read, ReadReady, Write};
use heapless::String;
use protocol::link::{LinkDecoder, MAX_FRAME, MAX_TEXT_BYTES, encode_frame};
use protocol::reader::FrameError;
use protocol::reader::{eseal, uhf};

use crate::Error;
use crate::eseal::SealReader;
use crate::lane::{Action, Config, Event, LaneController, Output, Reader};
use crate::outputs::{BarrierOutput, LaneLights};
use crate::presence::Debounced;
use crate::uhf::UhfReader;

/// Link bytes handled per [`Board::poll`] at most, so one pass stays short.
const LINK_BYTES_PER_POLL: usize = 512;
/// Reader replies handled per reader per [`Board::poll`] at most.
const REPLIES_PER_POLL: usize = 16;
/// Controller actions carried out per [`Board::poll`] at most.
const ACTIONS_PER_POLL: usize = 64;

/// Everything the board drives.
#[derive(Debug)]
pub struct Peripherals<L, U, S, P, R, A, G, B, const LOOPS: usize> {
    /// UART to the edge agent.
    pub link: L,
    /// The UHF RFID module.
    pub uhf: UhfReader<U>,
    /// The e-seal reader.
    pub seal: SealReader<S>,
    /// Presence loops, loop `i` at index `i`.
    pub loops: [Debounced<P>; LOOPS],
    /// The lane light.
    pub lights: LaneLights<R, A, G>,
    /// The barrier.
    pub barrier: BarrierOutput<B>,
}

/// I/O failures the board absorbed (the lane carries on; these are for diagnostics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Link UART read errors.
    pub link_read_errors: u32,
    /// Link UART write errors (the frame is retransmitted if it was an event).
    pub link_write_errors: u32,
    /// Presence input read errors (the loop is then taken as occupied).
    pub loop_read_errors: u32,
    /// Frames sent to the agent.
    pub frames_sent: u32,
    /// Frames received from the agent.
    pub frames_received: u32,
}

/// A lane I/O board: peripherals plus the lane state machine.
#[derive(Debug)]
pub struct Board<L, U, S, P, R, A, G, B, const LOOPS: usize> {
    io: Peripherals<L, U, S, P, R, A, G, B, LOOPS>,
    lane: LaneController,
    decoder: LinkDecoder,
    stats: Stats,
    sign: Option<(u8, String<MAX_TEXT_BYTES>)>,
}

impl<L, U, S, P, R, A, G, B, const LOOPS: usize> Board<L, U, S, P, R, A, G, B, LOOPS>
where
    L: Read + Write + ReadReady,
    U: Read + Write + ReadReady,
    S: Read + Write + ReadReady,
    P: InputPin,
    R: OutputPin,
    A: OutputPin,
    G: OutputPin,
    B: OutputPin,
{
    /// A board starting at `now_ms`. `cfg.loops` is set to `LOOPS`.
    pub fn new(io: Peripherals<L, U, S, P, R, A, G, B, LOOPS>, cfg: Config, now_ms: u32) -> Self {
        let cfg = Config {
            loops: u8::try_from(LOOPS).unwrap_or(u8::MAX),
            ..cfg
        };
        Self {
            io,
            lane: LaneController::new(cfg, now_ms),
            decoder: LinkDecoder::new(),
            stats: Stats::default(),
            sign: None,
        }
    }

    /// The lane state machine (read-only).
    pub fn lane(&self) -> &LaneController {
        &self.lane
    }

    /// The peripherals (for a virtual board that inspects its simulated hardware).
    pub fn io_mut(&mut self) -> &mut Peripherals<L, U, S, P, R, A, G, B, LOOPS> {
        &mut self.io
    }

    /// I/O failures absorbed so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// What the lane sign was last asked to show.
    pub fn sign(&self) -> Option<&(u8, String<MAX_TEXT_BYTES>)> {
        self.sign.as_ref()
    }

    /// Give the peripherals back.
    pub fn release(self) -> Peripherals<L, U, S, P, R, A, G, B, LOOPS> {
        self.io
    }

    /// One pass of the main loop at `now_ms`. Never blocks on a reader or the link.
    pub fn poll(&mut self, now_ms: u32) {
        self.sample_loops(now_ms);
        self.read_link(now_ms);
        self.read_uhf(now_ms);
        self.read_seal(now_ms);
        for _ in 0..ACTIONS_PER_POLL {
            let Some(action) = self.lane.poll(now_ms) else {
                break;
            };
            self.carry_out(now_ms, action);
        }
    }

    fn sample_loops(&mut self, now_ms: u32) {
        for (i, input) in self.io.loops.iter_mut().enumerate() {
            let loop_id = u8::try_from(i).unwrap_or(u8::MAX);
            match input.sample(now_ms) {
                Ok(Some(present)) => self
                    .lane
                    .handle(now_ms, Event::Presence { loop_id, present }),
                Ok(None) => {}
                Err(_) => {
                    // An unreadable loop may have a vehicle on it.
                    self.stats.loop_read_errors = self.stats.loop_read_errors.wrapping_add(1);
                    if self.lane.presence() & (1 << (i % 8)) == 0 {
                        self.lane.handle(
                            now_ms,
                            Event::Presence {
                                loop_id,
                                present: true,
                            },
                        );
                    }
                }
            }
        }
    }

    fn read_link(&mut self, now_ms: u32) {
        let mut budget = LINK_BYTES_PER_POLL;
        while budget > 0 {
            match self.io.link.read_ready() {
                Ok(true) => {}
                Ok(false) => break,
                Err(_) => {
                    self.stats.link_read_errors = self.stats.link_read_errors.wrapping_add(1);
                    break;
                }
            }
            let mut chunk = [0u8; 64];
            let want = chunk.len().min(budget);
            let n = match self.io.link.read(&mut chunk[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(_) => {
                    self.stats.link_read_errors = self.stats.link_read_errors.wrapping_add(1);
                    break;
                }
            };
            budget -= n;
            for &byte in &chunk[..n] {
                match self.decoder.push(byte) {
                    Some(Ok(frame)) => {
                        self.stats.frames_received = self.stats.frames_received.wrapping_add(1);
                        self.lane.handle(now_ms, Event::LinkFrame(frame));
                    }
                    Some(Err(e)) => self.lane.handle(now_ms, Event::LinkError(e)),
                    None => {}
                }
            }
        }
    }

    fn read_uhf(&mut self, now_ms: u32) {
        for _ in 0..REPLIES_PER_POLL {
            let event = match self.io.uhf.poll(now_ms) {
                Ok(None) => break,
                Ok(Some(reply)) => {
                    self.lane.handle(now_ms, Event::ReaderAnswered(Reader::Uhf));
                    match reply {
                        uhf::Reply::Tag(tag) => Event::Tag(tag),
                        _ => continue,
                    }
                }
                Err(Error::Frame(FrameError::TagCrc { .. })) => {
                    self.lane.handle(now_ms, Event::ReaderAnswered(Reader::Uhf));
                    Event::TagCrcMismatch
                }
                Err(Error::Timeout | Error::Uart(_)) => {
                    self.lane.handle(now_ms, Event::ReaderTimedOut(Reader::Uhf));
                    break;
                }
                Err(_) => Event::ReaderBadFrame(Reader::Uhf),
            };
            self.lane.handle(now_ms, event);
        }
    }

    fn read_seal(&mut self, now_ms: u32) {
        for _ in 0..REPLIES_PER_POLL {
            let event = match self.io.seal.poll(now_ms) {
                Ok(None) => break,
                Ok(Some(reply)) => {
                    self.lane
                        .handle(now_ms, Event::ReaderAnswered(Reader::ESeal));
                    match reply {
                        eseal::Reply::Seal(report) => Event::Seal(report.seal),
                        _ => continue,
                    }
                }
                Err(Error::Timeout | Error::Uart(_)) => {
                    self.lane
                        .handle(now_ms, Event::ReaderTimedOut(Reader::ESeal));
                    break;
                }
                Err(_) => Event::ReaderBadFrame(Reader::ESeal),
            };
            self.lane.handle(now_ms, event);
        }
    }

    fn carry_out(&mut self, now_ms: u32, action: Action) {
        match action {
            Action::Transmit(frame) => {
                let mut buf = [0u8; MAX_FRAME];
                let sent = encode_frame(&frame, &mut buf)
                    .ok()
                    .and_then(|n| self.io.link.write_all(&buf[..n]).ok())
                    .and_then(|()| self.io.link.flush().ok());
                match sent {
                    Some(()) => self.stats.frames_sent = self.stats.frames_sent.wrapping_add(1),
                    None => {
                        self.stats.link_write_errors = self.stats.link_write_errors.wrapping_add(1)
                    }
                }
            }
            Action::SetLight(light) => {
                if self.io.lights.set(light).is_err() {
                    self.lane.handle(now_ms, Event::OutputFailed(Output::Light));
                }
            }
            Action::SetBarrier(barrier) => {
                if self.io.barrier.set(barrier).is_err() {
                    self.lane
                        .handle(now_ms, Event::OutputFailed(Output::Barrier));
                }
            }
            Action::ShowSign { route, text } => self.sign = Some((route, text)),
            Action::PollReader(Reader::Uhf) => {
                if self.io.uhf.send(uhf::Command::SinglePoll, now_ms).is_err() {
                    self.lane.handle(now_ms, Event::ReaderTimedOut(Reader::Uhf));
                }
            }
            Action::PollReader(Reader::ESeal) => {
                if self.io.seal.send(eseal::Request::Poll, now_ms).is_err() {
                    self.lane
                        .handle(now_ms, Event::ReaderTimedOut(Reader::ESeal));
                }
            }
        }
    }
}
