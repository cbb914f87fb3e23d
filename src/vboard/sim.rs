//! Byte-level simulators of the lane's two readers, on the same wire formats as the real
//! modules (`protocol::reader`), so the firmware's real drivers talk to them unchanged.
//!
//! - [`SimUhf`]: a `BB … 7E` UHF RFID module (MagicRF M100 / R200 class). A single poll is
//!   answered with one tag notice per tag of the truck on the lane (PC word with the EPC
//!   length, Gen2 StoredCRC computed over PC+EPC), or with the "no tag" error frame.
//! - [`SimESeal`]: an e-seal reader adapter. A poll is answered with one SEAL frame per
//!   e-seal of the truck on the lane, then POLL_DONE.
//!
//! Both answer as soon as the command is written (a real module takes tens of
//! milliseconds; the drivers do not depend on the delay). While a
//! [`Fault::ReaderSilent`](super::Fault::ReaderSilent) lasts, the reader ignores every
//! command, as an unpowered or unplugged module would.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::rc::Rc;
use std::time::Instant;

use embedded_io::{ErrorType, Read, ReadReady, Write};
use protocol::reader::FrameError;
use protocol::reader::eseal::{self, Nak, Reply as SealReply, Request, SealReport};
use protocol::reader::uhf::{self, Command, FrameType, TagNotice};

use super::Truck;

/// What the readers can see, shared by both simulators inside the board thread.
#[derive(Debug)]
pub(crate) struct Scene {
    /// The truck on the lane, if any.
    pub truck: Option<Truck>,
    /// The UHF module ignores commands until then.
    pub uhf_silent_until: Option<Instant>,
    /// The e-seal reader ignores commands until then.
    pub seal_silent_until: Option<Instant>,
    /// Signal strengths and line noise.
    pub rng: Rng,
    /// Tags that cannot be sent in a Gen2 notice (empty, odd length, over 62 bytes).
    pub tags_unsendable: u64,
    /// What the UHF module has done.
    pub uhf: ReaderCounters,
    /// What the e-seal reader has done.
    pub eseal: ReaderCounters,
}

impl Scene {
    pub fn new(seed: u64) -> Self {
        Self {
            truck: None,
            uhf_silent_until: None,
            seal_silent_until: None,
            rng: Rng::new(seed),
            tags_unsendable: 0,
            uhf: ReaderCounters::default(),
            eseal: ReaderCounters::default(),
        }
    }
}

fn silent(until: Option<Instant>) -> bool {
    until.is_some_and(|t| Instant::now() < t)
}

/// SplitMix64 (Steele, Lea & Flood, "Fast splittable pseudorandom number generators",
/// OOPSLA 2014): a few lines, good enough for signal strengths and noise, and the same
/// sequence for the same seed so a scripted run repeats exactly.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64().to_le_bytes()[0]).collect()
    }

    /// A received signal strength between -70 and -41 dBm, typical of a tag or seal a few
    /// metres from the antenna.
    fn rssi(&mut self) -> i8 {
        -41 - i8::try_from(self.next_u64() % 30).unwrap_or(0)
    }
}

/// The Gen2 notice for `epc`, or `None` if no Gen2 tag can hold it: the PC length field
/// counts 16-bit words, 1..=31 of them (EPC TDS 1.13 §9, Table 9-3).
pub fn tag_notice(rssi: i8, epc: &[u8]) -> Option<TagNotice> {
    if epc.is_empty() || !epc.len().is_multiple_of(2) {
        return None;
    }
    let words = u16::try_from(epc.len() / 2).ok().filter(|&w| w <= 31)?;
    // PC bits 15..11: EPC length in words; UMI, XI and the toggle bit 0 (a GS1 EPC).
    let pc = words << 11;
    let epc = heapless::Vec::from_slice(epc).ok()?;
    Some(TagNotice::with_crc(rssi, pc, epc))
}

/// Counters kept by a simulated reader.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReaderCounters {
    /// Commands or requests recognised and answered.
    pub answered: u64,
    /// Commands ignored because the reader was silent.
    pub ignored: u64,
    /// Damaged or unknown frames received from the board.
    pub bad_frames: u64,
}

/// The UART side of a simulated reader: bytes the board writes are parsed and answered
/// (`handle`), answers wait in `to_board` until the board reads them.
macro_rules! sim_uart {
    ($name:ident) => {
        impl ErrorType for $name {
            type Error = Infallible;
        }

        impl Write for $name {
            fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
                let mut results = Vec::new();
                self.parser.push_slice(buf, |r| results.push(r));
                for r in results {
                    self.handle(r);
                }
                Ok(buf.len())
            }

            fn flush(&mut self) -> Result<(), Infallible> {
                Ok(())
            }
        }

        impl Read for $name {
            fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
                let n = buf.len().min(self.to_board.len());
                for (slot, byte) in buf.iter_mut().zip(self.to_board.drain(..n)) {
                    *slot = byte;
                }
                Ok(n)
            }
        }

        impl ReadReady for $name {
            fn read_ready(&mut self) -> Result<bool, Infallible> {
                Ok(!self.to_board.is_empty())
            }
        }
    };
}

/// A simulated `BB … 7E` UHF module on the board's UHF UART.
#[derive(Debug)]
pub struct SimUhf {
    scene: Rc<RefCell<Scene>>,
    parser: uhf::Parser,
    to_board: VecDeque<u8>,
    tx_power_centi_dbm: u16,
}

impl SimUhf {
    pub(crate) fn new(scene: Rc<RefCell<Scene>>) -> Self {
        Self {
            scene,
            parser: uhf::Parser::new(),
            to_board: VecDeque::new(),
            // 26 dBm, a common factory setting for these modules.
            tx_power_centi_dbm: 2600,
        }
    }

    fn respond(&mut self, command: u8, params: &[u8]) {
        let mut buf = [0u8; uhf::MAX_FRAME];
        if let Ok(n) = uhf::encode_frame(FrameType::Response, command, params, &mut buf) {
            self.to_board.extend(&buf[..n]);
        }
    }

    fn inventory(&mut self) {
        let mut scene = self.scene.borrow_mut();
        let tags = scene
            .truck
            .as_ref()
            .map(|t| t.tags.clone())
            .unwrap_or_default();
        let mut sent = 0usize;
        for epc in &tags {
            let rssi = scene.rng.rssi();
            let mut buf = [0u8; uhf::MAX_FRAME];
            match tag_notice(rssi, epc).map(|notice| notice.encode(&mut buf)) {
                Some(Ok(n)) => {
                    self.to_board.extend(&buf[..n]);
                    sent += 1;
                }
                _ => scene.tags_unsendable += 1,
            }
        }
        drop(scene);
        if sent == 0 {
            self.respond(uhf::code::ERROR, &[uhf::ERR_NO_TAG]);
        }
    }

    fn handle(&mut self, frame: Result<uhf::RawFrame, FrameError>) {
        let mut scene = self.scene.borrow_mut();
        let Ok(frame) = frame else {
            scene.uhf.bad_frames += 1;
            return;
        };
        if silent(scene.uhf_silent_until) {
            scene.uhf.ignored += 1;
            return;
        }
        let Some(command) = Command::from_frame(&frame) else {
            // Unknown commands go unanswered; the driver times out.
            scene.uhf.bad_frames += 1;
            return;
        };
        scene.uhf.answered += 1;
        drop(scene);
        match command {
            Command::SinglePoll => self.inventory(),
            Command::MultiPoll { count } => {
                // A bounded number of rounds per command keeps the answer short.
                for _ in 0..count.min(8) {
                    self.inventory();
                }
            }
            Command::StopMultiPoll => self.respond(uhf::code::STOP_MULTI_POLL, &[0]),
            Command::GetInfo(kind) => {
                let mut params = vec![kind as u8];
                params.extend_from_slice(b"aeogate virtual UHF module");
                self.respond(uhf::code::GET_INFO, &params);
            }
            Command::SetTxPower { centi_dbm } => {
                self.tx_power_centi_dbm = centi_dbm;
                self.respond(uhf::code::SET_TX_POWER, &[0]);
            }
            Command::GetTxPower => {
                let power = self.tx_power_centi_dbm.to_be_bytes();
                self.respond(uhf::code::GET_TX_POWER, &power);
            }
        }
    }
}

sim_uart!(SimUhf);

/// A simulated e-seal reader adapter on the board's e-seal UART.
#[derive(Debug)]
pub struct SimESeal {
    scene: Rc<RefCell<Scene>>,
    parser: eseal::Parser,
    to_board: VecDeque<u8>,
}

/// Firmware version the simulated e-seal reader reports, `major << 8 | minor`.
const ESEAL_FW_VERSION: u16 = 0x0100;

impl SimESeal {
    pub(crate) fn new(scene: Rc<RefCell<Scene>>) -> Self {
        Self {
            scene,
            parser: eseal::Parser::new(),
            to_board: VecDeque::new(),
        }
    }

    fn reply(&mut self, reply: &SealReply) {
        let mut buf = [0u8; eseal::MAX_FRAME];
        if let Ok(n) = reply.encode(&mut buf) {
            self.to_board.extend(&buf[..n]);
        }
    }

    fn handle(&mut self, frame: Result<eseal::RawFrame, FrameError>) {
        let mut scene = self.scene.borrow_mut();
        if silent(scene.seal_silent_until) {
            scene.eseal.ignored += 1;
            return;
        }
        let frame = match frame {
            Ok(frame) => frame,
            Err(FrameError::Checksum { .. }) => {
                scene.eseal.bad_frames += 1;
                drop(scene);
                self.reply(&SealReply::Nak(Nak::BadCrc));
                return;
            }
            Err(_) => {
                scene.eseal.bad_frames += 1;
                return;
            }
        };
        let Some(request) = Request::from_frame(&frame) else {
            scene.eseal.bad_frames += 1;
            drop(scene);
            self.reply(&SealReply::Nak(Nak::UnknownRequest));
            return;
        };
        scene.eseal.answered += 1;
        let seals = scene
            .truck
            .as_ref()
            .map(|t| t.eseals.clone())
            .unwrap_or_default();
        drop(scene);
        let in_range = u8::try_from(seals.len()).unwrap_or(u8::MAX);
        match request {
            Request::Poll => {
                for seal in seals.into_iter().take(usize::from(u8::MAX)) {
                    let rssi = self.scene.borrow_mut().rng.rssi();
                    self.reply(&SealReply::Seal(SealReport { seal, rssi }));
                }
                self.reply(&SealReply::PollDone { count: in_range });
            }
            Request::GetStatus => self.reply(&SealReply::Status {
                fw_version: ESEAL_FW_VERSION,
                in_range,
            }),
        }
    }
}

sim_uart!(SimESeal);
