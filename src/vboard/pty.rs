//! The board's end of the agent link: the master side of a pseudo-terminal, behind the
//! embedded-io 0.7 traits the firmware's [`Board`](firmware::board::Board) expects.
//!
//! The agent opens the slave (`/dev/pts/N`) as it would a USB-serial adapter. This end
//! also keeps one slave handle open for its whole life: when every slave handle is closed,
//! reads on the master fail with EIO, and an agent restart must not kill the board.
//!
//! A real UART drops what it sends while nobody listens; a pty instead queues it on the
//! slave. So when more than [`STALE_BYTES`] are waiting on the slave (an agent that reads
//! never lets that many pile up), the queue is discarded, and an agent that opens the port
//! late sees at most that much old traffic.
//!
//! The link also carries out the link faults of [`Fault`](super::Fault): dropping outgoing
//! frames, writing line noise, and hanging up (closing the pty, then opening a new one).
//! It watches the frames in both directions (a second decoder on the same bytes) to
//! report the last lane command and count faults, without touching the firmware, and, when
//! asked ([`PtyLink::watch_frames`]), reports each frame with the instant it went into or
//! came out of the pty: the start and end points of the end-to-end benchmark (figure 2,
//! docs/benchmarks.md), taken where a physical board's UART would take them.

use std::collections::VecDeque;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use embedded_io::{ErrorKind, ErrorType, Read, ReadReady, Write};
use protocol::link::{Frame, LaneCommand, LinkDecoder, Message};
use serialport::{ClearBuffer, SerialPort, TTYPort};

/// Bytes waiting on the slave beyond which nobody is reading and they are discarded:
/// about forty heartbeats.
pub const STALE_BYTES: u32 = 1024;

/// How long one write waits for room in the pty before it counts as failed.
const WRITE_WAIT: Duration = Duration::from_millis(2);

/// Lane command sequence numbers remembered to count each command once, as the firmware
/// does (`firmware::lane::SEEN_SEQS`).
const SEEN_SEQS: usize = firmware::lane::SEEN_SEQS;

/// Counters kept by the link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Frames swallowed by [`Fault::DropFrames`](super::Fault::DropFrames).
    pub frames_dropped: u64,
    /// Noise bytes written by [`Fault::Garbage`](super::Fault::Garbage).
    pub garbage_bytes_sent: u64,
    /// Lane commands received, each `seq` counted once.
    pub commands_obeyed: u64,
    /// Fault frames sent, each `seq` counted once (faults are retransmitted until acked).
    pub faults_reported: u64,
    /// Hang-ups carried out.
    pub unplugs: u64,
    /// Times the stale slave queue was discarded.
    pub stale_discards: u64,
}

/// Which way a frame crossed the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameDirection {
    /// Written by the board into the pty, for the agent to read.
    ToAgent,
    /// Written by the agent, read by the board.
    FromAgent,
}

/// One intact frame on the link, as the board's end saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkFrame {
    pub direction: FrameDirection,
    /// For [`FrameDirection::ToAgent`], when the board's `write` of the whole frame into
    /// the pty returned; for [`FrameDirection::FromAgent`], when the board's read returned
    /// the frame's last byte (the board polls every millisecond).
    pub at: Instant,
    /// The same instant on the wall clock, to set beside the agent's timestamps.
    pub wall: jiff::Timestamp,
    /// Bytes of the frame on the wire, delimiter included: what sets its wire time at a
    /// real UART's baud rate (10 bits per byte with 8N1).
    pub wire_bytes: usize,
    pub frame: Frame,
}

#[derive(Debug)]
struct Pty {
    master: TTYPort,
    /// Keeps the slave open so the master never sees EIO; never read from.
    slave: TTYPort,
    path: PathBuf,
}

impl Pty {
    fn open() -> io::Result<Self> {
        let (mut master, slave) = TTYPort::pair().map_err(io::Error::other)?;
        master.set_timeout(WRITE_WAIT).map_err(io::Error::other)?;
        let path = slave
            .name()
            .map(PathBuf::from)
            .ok_or_else(|| io::Error::other("the pty slave has no path"))?;
        Ok(Self {
            master,
            slave,
            path,
        })
    }
}

/// The board's link UART, a pseudo-terminal master.
#[derive(Debug)]
pub struct PtyLink {
    pty: Option<Pty>,
    drop_next: u64,
    incoming: LinkDecoder,
    outgoing: LinkDecoder,
    command_seqs: VecDeque<u16>,
    fault_seqs: VecDeque<u16>,
    last_command: Option<LaneCommand>,
    counters: LinkCounters,
    /// Where watched frames go; dropped when the receiver is gone.
    watch: Option<Sender<LinkFrame>>,
    /// Bytes of the incoming frame being decoded.
    incoming_bytes: usize,
}

impl PtyLink {
    /// A link on a new pseudo-terminal.
    pub fn open() -> io::Result<Self> {
        Ok(Self {
            pty: Some(Pty::open()?),
            drop_next: 0,
            incoming: LinkDecoder::new(),
            outgoing: LinkDecoder::new(),
            command_seqs: VecDeque::new(),
            fault_seqs: VecDeque::new(),
            last_command: None,
            counters: LinkCounters::default(),
            watch: None,
            incoming_bytes: 0,
        })
    }

    /// From now on, send every intact frame in either direction to `to` (replacing any
    /// earlier watcher). Sending never blocks; the watcher should keep reading, since the
    /// channel grows while it does not. Stops by itself when the receiver is dropped.
    pub fn watch_frames(&mut self, to: Sender<LinkFrame>) {
        self.watch = Some(to);
    }

    fn report(&mut self, direction: FrameDirection, at: Instant, wire_bytes: usize, frame: Frame) {
        let Some(tx) = &self.watch else { return };
        let seen = LinkFrame {
            direction,
            at,
            wall: jiff::Timestamp::now(),
            wire_bytes,
            frame,
        };
        if tx.send(seen).is_err() {
            self.watch = None;
        }
    }

    /// The slave's path (`/dev/pts/N`), or `None` while hung up.
    pub fn path(&self) -> Option<&Path> {
        self.pty.as_ref().map(|p| p.path.as_path())
    }

    /// The last lane command received from the agent.
    pub fn last_command(&self) -> Option<&LaneCommand> {
        self.last_command.as_ref()
    }

    /// What the link has seen and done.
    pub fn counters(&self) -> &LinkCounters {
        &self.counters
    }

    /// Swallow the next `n` frames the board sends.
    pub fn drop_frames(&mut self, n: u64) {
        self.drop_next = self.drop_next.saturating_add(n);
    }

    /// Write `bytes` to the agent between frames, as line noise.
    pub fn write_garbage(&mut self, bytes: &[u8]) -> io::Result<()> {
        let pty = self.pty.as_mut().ok_or(io::ErrorKind::NotConnected)?;
        pty.master.write_all(bytes)?;
        self.counters.garbage_bytes_sent += bytes.len() as u64;
        Ok(())
    }

    /// Hang up: close both ends of the pty. The agent's reads then return end of file
    /// (or EIO), as when a USB-serial adapter is pulled out.
    pub fn unplug(&mut self) {
        if self.pty.take().is_some() {
            self.counters.unplugs += 1;
        }
    }

    /// Open a new pty after [`unplug`](Self::unplug); returns its slave's path.
    pub fn replug(&mut self) -> io::Result<PathBuf> {
        let pty = Pty::open()?;
        let path = pty.path.clone();
        self.pty = Some(pty);
        self.incoming.reset();
        self.outgoing.reset();
        self.incoming_bytes = 0;
        // The agent may come back numbering from anywhere.
        self.command_seqs.clear();
        Ok(path)
    }

    /// Discard the slave's queue if nobody has been reading it (see the module docs).
    pub fn discard_stale(&mut self) {
        let Some(pty) = self.pty.as_mut() else {
            return;
        };
        if pty.slave.bytes_to_read().is_ok_and(|n| n > STALE_BYTES)
            && pty.slave.clear(ClearBuffer::Input).is_ok()
        {
            self.counters.stale_discards += 1;
        }
    }

    fn watch_incoming(&mut self, bytes: &[u8], at: Instant) {
        for &b in bytes {
            self.incoming_bytes += 1;
            let Some(done) = self.incoming.push(b) else {
                continue;
            };
            let wire_bytes = std::mem::take(&mut self.incoming_bytes);
            let Ok(frame) = done else { continue };
            if self.watch.is_some() {
                self.report(FrameDirection::FromAgent, at, wire_bytes, frame.clone());
            }
            if let Message::LaneCommand(cmd) = frame.msg
                && !self.command_seqs.contains(&frame.seq)
            {
                if self.command_seqs.len() == SEEN_SEQS {
                    self.command_seqs.pop_front();
                }
                self.command_seqs.push_back(frame.seq);
                self.counters.commands_obeyed += 1;
                self.last_command = Some(cmd);
            }
        }
    }

    /// `bytes` is one whole frame (see [`Write::write`] below), written at `at`.
    fn watch_outgoing(&mut self, bytes: &[u8], at: Instant) {
        for &b in bytes {
            let Some(Ok(frame)) = self.outgoing.push(b) else {
                continue;
            };
            if self.watch.is_some() {
                self.report(FrameDirection::ToAgent, at, bytes.len(), frame.clone());
            }
            if matches!(frame.msg, Message::Fault { .. }) && !self.fault_seqs.contains(&frame.seq) {
                // The board keeps at most `firmware::lane::QUEUE` events in flight.
                if self.fault_seqs.len() == firmware::lane::QUEUE {
                    self.fault_seqs.pop_front();
                }
                self.fault_seqs.push_back(frame.seq);
                self.counters.faults_reported += 1;
            }
        }
    }
}

fn kind(e: &io::Error) -> ErrorKind {
    match e.kind() {
        io::ErrorKind::TimedOut => ErrorKind::TimedOut,
        io::ErrorKind::BrokenPipe => ErrorKind::BrokenPipe,
        io::ErrorKind::NotConnected => ErrorKind::NotConnected,
        io::ErrorKind::Interrupted => ErrorKind::Interrupted,
        _ => ErrorKind::Other,
    }
}

impl ErrorType for PtyLink {
    type Error = ErrorKind;
}

impl ReadReady for PtyLink {
    fn read_ready(&mut self) -> Result<bool, ErrorKind> {
        match self.pty.as_ref() {
            None => Ok(false),
            Some(pty) => pty
                .master
                .bytes_to_read()
                .map(|n| n > 0)
                .map_err(|_| ErrorKind::Other),
        }
    }
}

impl Read for PtyLink {
    /// Reads only what is already queued, so it never waits.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let Some(pty) = self.pty.as_mut() else {
            return Ok(0);
        };
        let ready = pty.master.bytes_to_read().map_err(|_| ErrorKind::Other)?;
        let want = buf.len().min(usize::try_from(ready).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = match pty.master.read(&mut buf[..want]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => 0,
            Err(e) => return Err(kind(&e)),
        };
        self.watch_incoming(&buf[..n], Instant::now());
        Ok(n)
    }
}

impl Write for PtyLink {
    /// Takes the whole buffer or fails: the board writes each frame with one
    /// `write_all`, so one call here is one frame (which is what `DropFrames` counts).
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        if self.drop_next > 0 {
            self.drop_next -= 1;
            self.counters.frames_dropped += 1;
            return Ok(buf.len());
        }
        let pty = self.pty.as_mut().ok_or(ErrorKind::NotConnected)?;
        pty.master.write_all(buf).map_err(|e| kind(&e))?;
        self.watch_outgoing(buf, Instant::now());
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::link::{MAX_FRAME, encode_frame};

    fn encoded(seq: u16, msg: Message) -> Vec<u8> {
        let mut buf = [0u8; MAX_FRAME];
        let n = encode_frame(&Frame::new(seq, msg), &mut buf).expect("frame encodes");
        buf[..n].to_vec()
    }

    #[test]
    fn watched_frames_carry_direction_instant_and_wire_length() {
        let mut link = PtyLink::open().expect("pty opens");
        let (tx, rx) = std::sync::mpsc::channel();
        link.watch_frames(tx);
        let out = encoded(
            7,
            Message::Presence {
                loop_id: 0,
                present: false,
            },
        );
        let before = Instant::now();
        Write::write(&mut link, &out).expect("frame written");
        let seen = rx
            .try_recv()
            .expect("the written frame is reported at once");
        assert_eq!(seen.direction, FrameDirection::ToAgent);
        assert_eq!(seen.wire_bytes, out.len());
        assert_eq!(seen.frame.seq, 7);
        assert!(seen.at >= before, "stamped after the write, not before");

        // The agent's side: write a frame into the slave, the board reads it.
        let path = link.path().expect("slave path").to_path_buf();
        let mut agent = serialport::new(path.to_string_lossy(), 115_200)
            .timeout(Duration::from_millis(50))
            .open_native()
            .expect("slave opens");
        let back = encoded(9, Message::Ack { seq: 7 });
        agent.write_all(&back).expect("agent writes");
        let mut buf = [0u8; 64];
        let deadline = Instant::now() + Duration::from_secs(2);
        let seen = loop {
            let _ = Read::read(&mut link, &mut buf).expect("board reads");
            if let Ok(f) = rx.try_recv() {
                break f;
            }
            assert!(Instant::now() < deadline, "the agent's frame never arrived");
            std::thread::sleep(Duration::from_millis(1));
        };
        assert_eq!(seen.direction, FrameDirection::FromAgent);
        assert_eq!(seen.wire_bytes, back.len());
        assert_eq!(seen.frame.msg, Message::Ack { seq: 7 });

        // A dropped receiver ends the watch without disturbing the link.
        drop(rx);
        Write::write(&mut link, &out).expect("still writes");
        Write::write(&mut link, &out).expect("still writes");
        assert!(link.watch.is_none());
    }
}
