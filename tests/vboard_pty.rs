//! The virtual board over a real pseudo-terminal: a test agent opens the pty slave as the
//! edge agent would, and speaks the link protocol with the real firmware behind it.
#![cfg(unix)]

use std::io::{ErrorKind, Read, Write};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use aeogate::vboard::{Fault, Truck, VirtualBoard, VirtualBoardConfig};
use protocol::link::{
    Barrier, FaultCode, Frame, LaneCommand, Light, LinkDecoder, MAX_FRAME, Message, SealRead,
    encode_frame,
};
use serialport::{ClearBuffer, SerialPort, TTYPort};

/// Every wait in these tests gives up after this long, so a failure never hangs.
const WAIT: Duration = Duration::from_secs(5);

/// A 96-bit SGTIN and a 96-bit GIAI.
const TAG_A: [u8; 12] = [
    0x30, 0x74, 0x25, 0x7B, 0xF7, 0x19, 0x4E, 0x40, 0x00, 0x00, 0x1A, 0x85,
];
const TAG_B: [u8; 12] = [
    0x34, 0x14, 0x25, 0x7B, 0xF4, 0x00, 0x00, 0x00, 0x00, 0x00, 0x30, 0x39,
];

fn seal() -> SealRead {
    SealRead::sealed(0x0042, 0x0001_E240)
}

fn truck() -> Truck {
    Truck {
        tags: vec![TAG_A.to_vec(), TAG_B.to_vec()],
        eseals: vec![seal()],
        dwell: Duration::from_secs(4),
    }
}

fn board() -> VirtualBoard {
    VirtualBoard::spawn(VirtualBoardConfig::default()).expect("virtual board starts")
}

/// A board and the agent's end of its pty, once the board's first heartbeat arrived.
fn linked() -> (VirtualBoard, Agent) {
    let board = board();
    let mut agent = Agent::open(&board.tty_path());
    assert!(agent.heartbeat().is_some(), "no heartbeat from the board");
    (board, agent)
}

/// The agent's end: acknowledges every frame it receives, as the edge agent does.
struct Agent {
    port: TTYPort,
    decoder: LinkDecoder,
    seq: u16,
    hung_up: bool,
}

impl Agent {
    fn open(path: &Path) -> Agent {
        let name = path.to_str().expect("pty paths are UTF-8");
        let port = serialport::new(name, 115_200)
            .timeout(Duration::from_millis(20))
            .open_native()
            .expect("the pty slave opens");
        // Whatever the board sent before anyone listened is old news.
        port.clear(ClearBuffer::Input).expect("clear input");
        Agent {
            port,
            decoder: LinkDecoder::new(),
            seq: 1000,
            hung_up: false,
        }
    }

    /// Open `path` as soon as it exists and opens (it is absent while unplugged).
    fn reopen(path: &Path) -> Agent {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(name) = path.to_str()
                && path.exists()
                && let Ok(port) = serialport::new(name, 115_200)
                    .timeout(Duration::from_millis(20))
                    .open_native()
            {
                return Agent {
                    port,
                    decoder: LinkDecoder::new(),
                    seq: 2000,
                    hung_up: false,
                };
            }
            assert!(
                Instant::now() < deadline,
                "{} never came back",
                path.display()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        self.port.write_all(bytes).expect("write to the board");
    }

    fn send(&mut self, msg: Message) -> u16 {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let mut buf = [0u8; MAX_FRAME];
        let n = encode_frame(&Frame::new(seq, msg), &mut buf).expect("encodes");
        self.write(&buf[..n]);
        seq
    }

    fn command(&mut self, light: Light, barrier: Barrier) -> (u16, LaneCommand) {
        let cmd = LaneCommand {
            light,
            barrier,
            route: 3,
            text: heapless::String::try_from("LANE 3").expect("fits"),
        };
        (self.send(Message::LaneCommand(cmd.clone())), cmd)
    }

    /// Read frames, acknowledging each, until one satisfies `want` (returned) or `WAIT`
    /// passes (`None`). Damaged frames are skipped, as line noise is.
    fn until(&mut self, mut want: impl FnMut(&Frame) -> bool) -> Option<Frame> {
        let deadline = Instant::now() + WAIT;
        let mut buf = [0u8; 256];
        while Instant::now() < deadline && !self.hung_up {
            let n = match self.port.read(&mut buf) {
                Ok(0) => {
                    self.hung_up = true;
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::TimedOut => continue,
                Err(_) => {
                    self.hung_up = true;
                    break;
                }
            };
            for &b in &buf[..n] {
                let Some(Ok(frame)) = self.decoder.push(b) else {
                    continue;
                };
                if !matches!(frame.msg, Message::Ack { .. }) {
                    self.send(Message::Ack { seq: frame.seq });
                }
                if want(&frame) {
                    return Some(frame);
                }
            }
        }
        None
    }

    /// Keep the link alive (acking) for `d`, collecting every frame.
    fn collect_for(&mut self, d: Duration) -> Vec<Frame> {
        let end = Instant::now() + d;
        let mut seen = Vec::new();
        let _ = self.until(|f| {
            seen.push(f.clone());
            Instant::now() >= end
        });
        seen
    }

    fn heartbeat(&mut self) -> Option<Frame> {
        self.until(|f| matches!(f.msg, Message::Heartbeat(_)))
    }

    fn ack_of(&mut self, seq: u16) -> Option<Frame> {
        self.until(|f| f.msg == Message::Ack { seq })
    }

    fn fault(&mut self, code: FaultCode) -> Option<Frame> {
        self.until(|f| matches!(f.msg, Message::Fault { code: c, .. } if c == code))
    }
}

/// Poll `cond` (keeping the link alive through `agent`) until it holds or `WAIT` passes.
fn eventually(agent: &mut Agent, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        agent.collect_for(Duration::from_millis(20));
    }
    cond()
}

#[test]
fn agent_sees_heartbeats_and_the_board_obeys_a_lane_command() {
    let (board, mut agent) = linked();

    let (seq, cmd) = agent.command(Light::Green, Barrier::Raise);
    assert!(
        agent.ack_of(seq).is_some(),
        "the board did not ack the command"
    );
    assert!(
        // The pins change at once; the board's observed command and counters are
        // published at the end of its pass, so they are waited for too.
        eventually(&mut agent, || board.lights() == Light::Green
            && board.barrier() == Barrier::Raise
            && board.last_command().is_some()
            && board.stats().commands_obeyed >= 1),
        "lights {:?}, barrier {:?}",
        board.lights(),
        board.barrier()
    );
    assert_eq!(board.last_command(), Some(cmd));
    assert_eq!(board.stats().commands_obeyed, 1);
    let beat = agent
        .until(|f| matches!(&f.msg, Message::Heartbeat(h) if h.status.link_ok))
        .expect("a heartbeat with the link up");
    let Message::Heartbeat(h) = beat.msg else {
        unreachable!()
    };
    assert_eq!(
        (h.status.light, h.status.barrier),
        (Light::Green, Barrier::Raise)
    );
}

#[test]
fn arrival_reports_presence_and_exactly_the_trucks_tags_and_seal() {
    let (board, mut agent) = linked();

    board.arrive(truck());
    let mut present = [false; 2];
    let mut tags = Vec::new();
    let mut seals = Vec::new();
    let done = agent.until(|f| {
        match &f.msg {
            Message::Presence {
                loop_id,
                present: true,
            } => present[usize::from(*loop_id) % 2] = true,
            Message::TagRead(t) => {
                assert_eq!(t.pc, 0x3000, "PC of a 96-bit EPC");
                if !tags.contains(&t.epc.to_vec()) {
                    tags.push(t.epc.to_vec());
                }
            }
            Message::SealRead(s) => seals.push(s.clone()),
            _ => {}
        }
        present == [true, true] && tags.len() == 2 && !seals.is_empty()
    });
    assert!(
        done.is_some(),
        "presence {present:?}, tags {tags:02X?}, seals {seals:?}"
    );
    tags.sort();
    let mut want = vec![TAG_A.to_vec(), TAG_B.to_vec()];
    want.sort();
    assert_eq!(tags, want);
    assert!(seals.iter().all(|s| *s == seal()), "{seals:?}");
}

#[test]
fn link_carries_on_after_garbage_from_the_agent() {
    let (board, mut agent) = linked();

    // Noise with delimiters in it, and a frame start cut short.
    let noise: Vec<u8> = (0u8..=255).chain([0x00, 0x09, 0x01, 0x05]).collect();
    agent.write(&noise);
    let (seq, _) = agent.command(Light::Amber, Barrier::Lower);
    assert!(agent.ack_of(seq).is_some(), "command after noise not acked");
    assert!(eventually(&mut agent, || board.lights() == Light::Amber));
    assert!(
        agent.fault(FaultCode::LinkRejected).is_some(),
        "the damaged bytes were not reported"
    );
}

#[test]
fn agent_decodes_frames_after_garbage_from_the_board() {
    let (board, mut agent) = linked();

    board.inject(Fault::Garbage(vec![
        0x01, 0x02, 0xFF, 0x00, 0x7E, 0x13, 0x37,
    ]));
    assert!(eventually(&mut agent, || board.stats().garbage_bytes_sent == 7));
    assert!(agent.heartbeat().is_some(), "no heartbeat after the noise");
}

#[test]
fn dropped_event_frames_are_sent_again() {
    let (board, mut agent) = linked();

    board.inject(Fault::DropFrames(3));
    board.arrive(Truck::default());
    assert!(
        agent
            .until(|f| matches!(f.msg, Message::Presence { present: true, .. }))
            .is_some(),
        "presence never arrived"
    );
    // The board thread publishes its counters after the pass that wrote the frame, so the
    // count may trail the frame by a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while board.stats().frames_dropped != 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(board.stats().frames_dropped, 3);
}

#[test]
fn agent_reopens_through_the_stable_link_after_an_unplug() {
    let board = board();
    let link = board.tty_link();
    let mut agent = Agent::open(&link);
    assert!(agent.heartbeat().is_some());

    board.inject(Fault::Unplug { for_ms: 300 });
    assert!(
        agent.heartbeat().is_none(),
        "frames flowed through a hung-up link"
    );
    assert!(agent.hung_up, "the agent's read never reported the hang-up");
    drop(agent);

    let mut agent = Agent::reopen(&link);
    assert!(agent.heartbeat().is_some(), "no heartbeat after replugging");
    assert_eq!(
        std::fs::read_link(&link).expect("the link exists"),
        board.tty_path()
    );
    assert_eq!(board.stats().unplugs, 1);
}

#[test]
fn barrier_stays_raised_over_a_present_truck_even_when_commanded_down() {
    let (board, mut agent) = linked();
    board.arrive(truck());
    assert!(
        agent
            .until(|f| matches!(f.msg, Message::Presence { present: true, .. }))
            .is_some()
    );
    // Raised for the truck on the loop (a decision before it left, an officer).
    agent.command(Light::Green, Barrier::Raise);
    assert!(eventually(&mut agent, || board.barrier() == Barrier::Raise));

    agent.command(Light::Red, Barrier::Lower);
    assert!(
        agent.fault(FaultCode::BarrierLowerRefused).is_some(),
        "the refused lower was not reported"
    );
    let end = Instant::now() + Duration::from_millis(500);
    while Instant::now() < end {
        assert_eq!(board.barrier(), Barrier::Raise, "lowered onto the truck");
        agent.collect_for(Duration::from_millis(20));
    }
    assert_eq!(board.lights(), Light::Red);

    board.leave();
    assert!(
        eventually(&mut agent, || board.barrier() == Barrier::Lower),
        "the wanted lower never happened once the lane was clear"
    );
}

#[test]
fn a_silent_reader_is_reported_and_its_recovery_too() {
    let (board, mut agent) = linked();

    board.inject(Fault::ReaderSilent {
        uhf: true,
        for_ms: 1500,
    });
    let silent = agent.fault(FaultCode::ReaderSilent).expect("ReaderSilent");
    assert!(matches!(silent.msg, Message::Fault { detail: 0, .. }));
    let back = agent
        .fault(FaultCode::ReaderRecovered)
        .expect("ReaderRecovered");
    assert!(matches!(back.msg, Message::Fault { detail: 0, .. }));
    assert!(board.stats().uhf.ignored > 0);
}

#[test]
fn a_fault_without_end_leaves_the_board_running() {
    let board = board();
    let mut agent = Agent::open(&board.tty_path());
    board.inject(Fault::ReaderSilent {
        uhf: false,
        for_ms: u64::MAX,
    });
    let before = board.stats().frames_sent;
    assert!(agent.heartbeat().is_some());
    assert!(agent.heartbeat().is_some());
    assert!(board.stats().frames_sent > before);
    assert_eq!(board.thread_error(), None);
}
