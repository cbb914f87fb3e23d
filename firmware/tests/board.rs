//! The whole board: drivers, link and state machine together, on fake UARTs and pins.
#![allow(clippy::unwrap_used)]

mod common;

use common::{FakeInput, FakeOutput, FakeUart, hex};
use embedded_hal::digital::PinState;
use firmware::board::{Board, Peripherals};
use firmware::eseal::SealReader;
use firmware::lane::Config;
use firmware::outputs::{BarrierOutput, LaneLights};
use firmware::presence::{Debounced, Polarity};
use firmware::uhf::UhfReader;
use heapless::String;
use protocol::link::Barrier;
use protocol::link::{
    BatteryLevel, FaultCode, Frame, LaneCommand, Light, LinkDecoder, MAX_FRAME, Message, SealRead,
    SealStatus, encode_frame,
};
use protocol::reader::eseal;

type TestBoard = Board<
    FakeUart,
    FakeUart,
    FakeUart,
    FakeInput,
    FakeOutput,
    FakeOutput,
    FakeOutput,
    FakeOutput,
    2,
>;

struct Rig {
    board: TestBoard,
    link: FakeUart,
    uhf: FakeUart,
    seal: FakeUart,
    loops: [FakeInput; 2],
    lamps: [FakeOutput; 3],
    barrier: FakeOutput,
    agent: LinkDecoder,
    now: u32,
}

const DEBOUNCE_MS: u32 = 50;

impl Rig {
    fn new() -> Self {
        let (link, uhf, seal) = (FakeUart::new(), FakeUart::new(), FakeUart::new());
        let loops = [FakeInput::default(), FakeInput::default()];
        let lamps = [
            FakeOutput::default(),
            FakeOutput::default(),
            FakeOutput::default(),
        ];
        let barrier = FakeOutput::default();
        let io = Peripherals {
            link: link.clone(),
            uhf: UhfReader::new(uhf.clone()),
            seal: SealReader::new(seal.clone()),
            loops: [
                Debounced::new(loops[0].clone(), Polarity::ActiveHigh, DEBOUNCE_MS),
                Debounced::new(loops[1].clone(), Polarity::ActiveHigh, DEBOUNCE_MS),
            ],
            lights: LaneLights::new(lamps[0].clone(), lamps[1].clone(), lamps[2].clone()),
            barrier: BarrierOutput::new(barrier.clone(), PinState::High),
        };
        let cfg = Config {
            board_id: 42,
            ..Config::default()
        };
        Self {
            board: Board::new(io, cfg, 0),
            link,
            uhf,
            seal,
            loops,
            lamps,
            barrier,
            agent: LinkDecoder::new(),
            now: 0,
        }
    }

    /// A board whose boot announcement the agent has acknowledged, so its events flow.
    fn linked() -> Self {
        let mut rig = Self::new();
        rig.run(10);
        rig.ack_hello();
        rig
    }

    /// Acknowledges the boot announcements sent since the last read; returns how many.
    fn ack_hello(&mut self) -> usize {
        let hellos: Vec<u16> = self
            .sent_to_agent()
            .into_iter()
            .filter(|f| matches!(f.msg, Message::Hello(_)))
            .map(|f| f.seq)
            .collect();
        for &seq in &hellos {
            self.agent_sends(60_000 + seq, Message::Ack { seq });
        }
        self.run(10);
        hellos.len()
    }

    /// Run the main loop every 10 ms for `ms`.
    fn run(&mut self, ms: u32) {
        for _ in 0..ms / 10 {
            self.now += 10;
            self.board.poll(self.now);
        }
    }

    /// Frames the board sent to the agent since the last call.
    fn sent_to_agent(&mut self) -> Vec<Frame> {
        let bytes = self.link.written();
        bytes
            .iter()
            .filter_map(|&b| self.agent.push(b))
            .map(Result::unwrap)
            .collect()
    }

    fn messages(&mut self) -> Vec<Message> {
        self.sent_to_agent().into_iter().map(|f| f.msg).collect()
    }

    fn agent_sends(&self, seq: u16, msg: Message) {
        let mut buf = [0u8; MAX_FRAME];
        let n = encode_frame(&Frame::new(seq, msg), &mut buf).unwrap();
        self.link.reply(&buf[..n]);
    }

    fn command(&self, seq: u16, light: Light, barrier: Barrier) {
        self.agent_sends(
            seq,
            Message::LaneCommand(LaneCommand {
                light,
                barrier,
                route: 0,
                text: String::new(),
            }),
        );
    }

    fn light(&self) -> [Option<bool>; 3] {
        [
            self.lamps[0].get(),
            self.lamps[1].get(),
            self.lamps[2].get(),
        ]
    }

    /// Barrier pin: high = raise.
    fn barrier_raised(&self) -> Option<bool> {
        self.barrier.get()
    }
}

#[test]
fn boots_red_and_lowers_once_the_loops_settle_clear() {
    let mut rig = Rig::new();
    rig.run(10);
    assert_eq!(rig.light(), [Some(true), Some(false), Some(false)]);
    assert_eq!(rig.barrier_raised(), None, "loops not settled yet");
    rig.run(DEBOUNCE_MS);
    assert_eq!(rig.barrier_raised(), Some(false));
}

#[test]
fn vehicle_arrival_reaches_the_agent() {
    let mut rig = Rig::linked();
    rig.run(100);
    rig.sent_to_agent();
    rig.loops[1].set(true);
    rig.run(100);
    assert!(rig.messages().contains(&Message::Presence {
        loop_id: 1,
        present: true
    }));
}

#[test]
fn lane_command_drives_the_outputs_and_is_acked() {
    let mut rig = Rig::new();
    rig.run(100);
    rig.command(9, Light::Green, Barrier::Raise);
    rig.run(10);
    assert_eq!(rig.light(), [Some(false), Some(false), Some(true)]);
    assert_eq!(rig.barrier_raised(), Some(true));
    assert!(rig.messages().contains(&Message::Ack { seq: 9 }));
}

#[test]
fn command_after_line_noise_is_still_obeyed() {
    let mut rig = Rig::new();
    rig.run(100);
    rig.link.reply(&[0x13, 0x99, 0x00, 0x42, 0x42]);
    rig.command(3, Light::Amber, Barrier::Lower);
    rig.run(10);
    assert_eq!(rig.light(), [Some(false), Some(true), Some(false)]);
}

#[test]
fn tag_from_the_module_reaches_the_agent() {
    let mut rig = Rig::linked();
    assert_eq!(rig.uhf.written(), hex("BB00220000227E"), "single poll sent");
    rig.uhf
        .reply(&hex("BB02220011C9340030751FEB705C5904E3D50D703A76EF7E"));
    rig.run(10);
    let tags: Vec<_> = rig
        .messages()
        .into_iter()
        .filter_map(|m| match m {
            Message::TagRead(t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(tags.len(), 1);
    assert_eq!(tags[0].epc.as_slice(), hex("30751FEB705C5904E3D50D70"));
    assert_eq!(tags[0].rssi, -55);
}

#[test]
fn seal_from_the_reader_reaches_the_agent() {
    let mut rig = Rig::linked();
    assert_eq!(
        rig.seal.written(),
        [0x02, 0x01, 0x01, 0x3E, 0x1F, 0x03],
        "poll sent"
    );
    let seal = SealRead {
        manufacturer: 7,
        tag_id: 1234,
        status: SealStatus::Opened,
        battery: BatteryLevel::Low,
        sealed_at: None,
        opened_at: None,
    };
    let mut buf = [0u8; eseal::MAX_FRAME];
    let mut n = eseal::Reply::Seal(eseal::SealReport {
        seal: seal.clone(),
        rssi: -50,
    })
    .encode(&mut buf)
    .unwrap();
    rig.seal.reply(&buf[..n]);
    n = eseal::Reply::PollDone { count: 1 }
        .encode(&mut buf)
        .unwrap();
    rig.seal.reply(&buf[..n]);
    rig.run(10);
    assert!(rig.messages().contains(&Message::SealRead(seal)));
}

#[test]
fn silent_module_is_reported_as_a_fault() {
    let mut rig = Rig::linked();
    // Three unanswered polls: UHF every 100 ms (200 ms timeout), e-seal every 1 s.
    rig.run(3_000);
    let faults: Vec<_> = rig
        .messages()
        .into_iter()
        .filter_map(|m| match m {
            Message::Fault { code, detail } => Some((code, detail)),
            _ => None,
        })
        .collect();
    assert!(faults.contains(&(FaultCode::ReaderSilent, 0)), "{faults:?}");
    assert!(faults.contains(&(FaultCode::ReaderSilent, 1)), "{faults:?}");
}

#[test]
fn dead_link_keeps_the_barrier_up_over_a_vehicle() {
    let mut rig = Rig::new();
    rig.run(100);
    rig.command(1, Light::Green, Barrier::Raise);
    rig.run(10);
    rig.loops[0].set(true);
    rig.run(4_000);
    assert_eq!(
        rig.light(),
        [Some(true), Some(false), Some(false)],
        "safe state: red"
    );
    assert_eq!(
        rig.barrier_raised(),
        Some(true),
        "vehicle still on the loop"
    );
    rig.loops[0].set(false);
    rig.run(100);
    assert_eq!(rig.barrier_raised(), Some(false));
}

#[test]
fn no_event_leaves_before_the_boot_announcement_is_acknowledged() {
    let mut rig = Rig::new();
    rig.loops[1].set(true);
    rig.run(500);
    let before = rig.sent_to_agent();
    assert!(
        before
            .iter()
            .all(|f| matches!(f.msg, Message::Hello(_) | Message::Heartbeat(_))),
        "only the announcement (resent) and heartbeats before its ack: {before:?}"
    );
    let hello = before
        .iter()
        .find(|f| matches!(f.msg, Message::Hello(h) if h.board_id == 42))
        .expect("the board announced its boot");
    rig.agent_sends(100, Message::Ack { seq: hello.seq });
    rig.run(20);
    assert!(rig.messages().contains(&Message::Presence {
        loop_id: 1,
        present: true
    }));
}

#[test]
fn heartbeat_names_the_board() {
    let mut rig = Rig::new();
    rig.run(10);
    let beat = rig.messages().into_iter().find_map(|m| match m {
        Message::Heartbeat(h) => Some(h),
        _ => None,
    });
    assert_eq!(beat.unwrap().board_id, 42);
}

#[test]
fn broken_link_uart_is_counted_not_fatal() {
    let mut rig = Rig::new();
    rig.link.break_line();
    rig.run(100);
    let stats = rig.board.stats();
    assert!(stats.link_write_errors > 0 && stats.link_read_errors > 0);
    assert_eq!(rig.light(), [Some(true), Some(false), Some(false)]);
}
