//! Wire formats of the reader modules a lane uses, shared by the firmware (which drives
//! them) and the agent (which may read a module directly). No heap; every parser bounds
//! lengths, verifies checksums and resynchronises after garbage.
//!
//! - [`uhf`]: the `BB … 7E` UART UHF RFID module family (MagicRF M100 / R200 class).
//! - [`eseal`]: aeogate's frame format for an ISO 18185 e-seal reader adapter
//!   (byte layout in `docs/hardware.md`).
//!
//! Both streaming parsers work the same way ("check, then parse"): bytes are buffered from
//! a start byte; once the header gives the length, the whole frame is checked. When a
//! candidate fails (bad type, oversize length, bad end byte, bad checksum) only its start
//! byte is dropped and the buffered bytes after it are scanned again, so a good frame that
//! arrived behind garbage, or inside a false start, is still found. A rejected candidate is
//! reported once; false starts found while rescanning it are skipped quietly (counted in
//! `skipped`) until a frame is accepted or the buffer runs empty. `push` returns at most
//! one result per byte; after it returns `Some`, call `drain` until `None` to collect
//! results that were already buffered (or use `push_slice`).
//!
//! A false start can also declare a length that swallows a good frame behind it and then
//! wait for bytes that never come. So when the line goes quiet (drivers use a gap of many
//! byte times) the caller calls `idle` until `None`: the partial frame is abandoned
//! ([`FrameError::Truncated`]) and the bytes after its start are scanned again.

use heapless::Vec;

/// Errors from encoding or parsing reader frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Checksum or CRC mismatch.
    #[error("checksum mismatch: computed {expected:#06x}, frame carries {found:#06x}")]
    Checksum {
        /// Computed over the received bytes.
        expected: u16,
        /// Carried by the frame.
        found: u16,
    },
    /// The byte where the end marker belongs is something else.
    #[error("end byte {found:#04x} where {expected:#04x} belongs")]
    EndByte {
        /// Byte found.
        found: u8,
        /// End marker of the format.
        expected: u8,
    },
    /// Frame type byte not defined by the format.
    #[error("unknown frame type {found:#04x}")]
    BadType {
        /// Byte found.
        found: u8,
    },
    /// The declared length exceeds what this parser accepts.
    #[error("declared length {declared} exceeds the limit of {limit}")]
    Oversize {
        /// Length in the header.
        declared: usize,
        /// Largest accepted.
        limit: usize,
    },
    /// The line went quiet in the middle of a frame.
    #[error("frame cut short after {have} bytes")]
    Truncated {
        /// Bytes received from the start byte on.
        have: usize,
    },
    /// The frame is intact but its parameters do not have the length its kind requires.
    #[error("frame kind {kind:#04x} with {len} parameter bytes")]
    BadLength {
        /// Command or message type.
        kind: u8,
        /// Parameter bytes present.
        len: usize,
    },
    /// A field holds a value the format does not define.
    #[error("field {field} holds undefined value {value:#04x}")]
    BadValue {
        /// Field name.
        field: &'static str,
        /// Value found.
        value: u8,
    },
    /// A tag notice's EPC length disagrees with the length field of its PC word.
    #[error("PC word says {pc_words} EPC words but the notice carries {epc_bytes} bytes")]
    TagLength {
        /// PC bits 15..11 (EPC length in 16-bit words).
        pc_words: u8,
        /// EPC bytes in the notice.
        epc_bytes: usize,
    },
    /// The tag's StoredCRC does not match its PC+EPC: the air interface corrupted the read.
    #[error("tag CRC mismatch: computed {expected:#06x}, tag reported {found:#06x}")]
    TagCrc {
        /// CRC-16/GENIBUS computed over PC+EPC.
        expected: u16,
        /// StoredCRC reported with the tag.
        found: u16,
    },
    /// The output buffer cannot hold the encoded frame.
    #[error("need {needed} bytes to encode, buffer has {available}")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Buffer size.
        available: usize,
    },
}

/// Outcome of checking a buffer that starts with a format's start byte.
#[derive(Debug)]
pub enum Check {
    /// More bytes are needed.
    Incomplete,
    /// `buf[..len]` is a whole frame with valid framing and checksum.
    Complete(usize),
    /// The candidate starting at `buf[0]` is not a frame.
    Invalid(FrameError),
}

/// Byte buffer with backtracking resynchronisation, shared by both parsers.
///
/// Invariant after every `step` that returns `None`: either the buffer is empty, or it
/// holds an incomplete candidate whose declared length fits `CAP`, so `append` always has
/// room (a `Some` from `step` removes at least one byte).
#[derive(Debug, Clone)]
struct Scanner<const CAP: usize> {
    buf: [u8; CAP],
    len: usize,
    /// Bytes of the last returned frame, removed before the buffer is touched again.
    returned: usize,
    /// Bytes dropped while looking for a start byte.
    skipped: u32,
    /// An error was reported and the bytes after it are being rescanned.
    resyncing: bool,
}

impl<const CAP: usize> Scanner<CAP> {
    const fn new() -> Self {
        Self {
            buf: [0; CAP],
            len: 0,
            returned: 0,
            skipped: 0,
            resyncing: false,
        }
    }

    fn remove_front(&mut self, n: usize) {
        let n = n.min(self.len);
        self.buf.copy_within(n..self.len, 0);
        self.len -= n;
    }

    fn append(&mut self, byte: u8) {
        let returned = core::mem::take(&mut self.returned);
        self.remove_front(returned);
        if self.len < CAP {
            self.buf[self.len] = byte;
            self.len += 1;
        } else {
            // Unreachable by the invariant above; dropping the oldest byte keeps it safe.
            self.remove_front(1);
            self.skipped = self.skipped.wrapping_add(1);
            self.buf[self.len] = byte;
            self.len += 1;
        }
    }

    /// The next result from the buffered bytes: `Ok(n)` means `self.buf[..n]` is a frame
    /// (removed on the next call).
    fn step(&mut self, start: u8, check: fn(&[u8]) -> Check) -> Option<Result<usize, FrameError>> {
        let returned = core::mem::take(&mut self.returned);
        self.remove_front(returned);
        loop {
            match self.buf[..self.len].iter().position(|&b| b == start) {
                Some(0) => {}
                Some(at) => {
                    self.skipped = self.skipped.wrapping_add(at as u32);
                    self.remove_front(at);
                }
                None => {
                    self.skipped = self.skipped.wrapping_add(self.len as u32);
                    self.len = 0;
                    self.resyncing = false;
                    return None;
                }
            }
            match check(&self.buf[..self.len]) {
                Check::Incomplete => return None,
                Check::Complete(n) => {
                    self.resyncing = false;
                    self.returned = n;
                    return Some(Ok(n));
                }
                Check::Invalid(err) => {
                    self.remove_front(1);
                    if self.resyncing {
                        // Start bytes inside a rejected frame are tried quietly: one bad
                        // frame yields one error, not one per byte that looks like a start.
                        self.skipped = self.skipped.wrapping_add(1);
                        continue;
                    }
                    self.resyncing = true;
                    return Some(Err(err));
                }
            }
        }
    }

    /// Like `step`, but the line has gone quiet: a candidate still waiting for bytes will
    /// never complete, so it is abandoned (reported once as `Truncated`) and the bytes
    /// after its start are scanned again.
    fn idle(&mut self, start: u8, check: fn(&[u8]) -> Check) -> Option<Result<usize, FrameError>> {
        loop {
            if let Some(result) = self.step(start, check) {
                return Some(result);
            }
            if self.len == 0 {
                return None;
            }
            let have = self.len;
            self.remove_front(1);
            if !self.resyncing {
                self.resyncing = true;
                return Some(Err(FrameError::Truncated { have }));
            }
            self.skipped = self.skipped.wrapping_add(1);
        }
    }

    /// Bytes buffered that are not yet a result (a partial frame).
    fn pending(&self) -> usize {
        self.len - self.returned
    }

    fn reset(&mut self) {
        self.len = 0;
        self.returned = 0;
        self.resyncing = false;
    }
}

/// A reader frame format, as far as the streaming [`FrameParser`] needs it.
pub trait Format {
    /// A frame with valid framing and checksum, not yet interpreted.
    type Frame;
    /// The byte every frame starts with.
    const START: u8;
    /// Checks a buffer that starts with [`Format::START`].
    fn check(buf: &[u8]) -> Check;
    /// Reads the frame out of `buf`, which [`Format::check`] found `Complete`.
    fn frame(buf: &[u8]) -> Option<Self::Frame>;
}

/// Streaming parser for one [`Format`] (either direction), buffering at most `CAP` bytes.
/// Used as [`uhf::Parser`] and [`eseal::Parser`].
#[derive(Debug, Clone)]
pub struct FrameParser<F, const CAP: usize> {
    scan: Scanner<CAP>,
    format: core::marker::PhantomData<F>,
}

impl<F: Format, const CAP: usize> Default for FrameParser<F, CAP> {
    fn default() -> Self {
        Self::new()
    }
}

impl<F: Format, const CAP: usize> FrameParser<F, CAP> {
    /// An empty parser.
    pub const fn new() -> Self {
        Self {
            scan: Scanner::new(),
            format: core::marker::PhantomData,
        }
    }

    /// Feed one byte; returns the first frame or framing error it completes.
    pub fn push(&mut self, byte: u8) -> Option<Result<F::Frame, FrameError>> {
        self.scan.append(byte);
        self.drain()
    }

    /// The next result already buffered after a resynchronisation, if any.
    pub fn drain(&mut self) -> Option<Result<F::Frame, FrameError>> {
        let result = self.scan.step(F::START, F::check)?;
        self.frame(result)
    }

    /// The line has gone quiet (no byte for much longer than a byte time): abandon a
    /// partial frame, reporting it once as [`FrameError::Truncated`], and return the next
    /// result from the bytes after its start. Call until `None`.
    pub fn idle(&mut self) -> Option<Result<F::Frame, FrameError>> {
        let result = self.scan.idle(F::START, F::check)?;
        self.frame(result)
    }

    /// Bytes of a partial frame held, waiting for the rest.
    pub fn pending(&self) -> usize {
        self.scan.pending()
    }

    fn frame(&self, result: Result<usize, FrameError>) -> Option<Result<F::Frame, FrameError>> {
        match result {
            Ok(n) => F::frame(&self.scan.buf[..n]).map(Ok),
            Err(e) => Some(Err(e)),
        }
    }

    /// Feed bytes, calling `f` with every result in order.
    pub fn push_slice(&mut self, bytes: &[u8], mut f: impl FnMut(Result<F::Frame, FrameError>)) {
        for &b in bytes {
            let mut next = self.push(b);
            while let Some(result) = next {
                f(result);
                next = self.drain();
            }
        }
    }

    /// Bytes discarded so far while looking for the start byte.
    pub fn skipped(&self) -> u32 {
        self.scan.skipped
    }

    /// Forget buffered bytes.
    pub fn reset(&mut self) {
        self.scan.reset();
    }
}

/// The `BB … 7E` UART UHF RFID module family (MagicRF M100 / R200 class, e.g. the
/// JRD-4035 in M5Stack's UHF RFID unit), 115200 bit/s 8N1.
///
/// Frame: `0xBB | Type | Command | PL MSB | PL LSB | Parameters[PL] | Checksum | 0x7E`, with
/// Type 0x00 command (host → module), 0x01 response, 0x02 notice, and
/// `Checksum = (Type + Command + PL MSB + PL LSB + Σ Parameters) & 0xFF`
/// (m5stack/M5Unit-UHF-RFID `src/CMD.h` and `src/UNIT_UHF_RFID.cpp`; DOMAIN §4.6).
pub mod uhf {
    use super::{Check, Format, FrameError, FrameParser, Vec};
    use crc::{CRC_16_GENIBUS, Crc};

    /// Start of every frame.
    pub const HEADER: u8 = 0xBB;
    /// End of every frame.
    pub const END: u8 = 0x7E;
    /// Largest parameter block this parser accepts. A 496-bit-EPC tag notice needs 67.
    pub const MAX_PARAMS: usize = 128;
    /// Largest whole frame: header, type, command, two length bytes, checksum, end.
    pub const MAX_FRAME: usize = MAX_PARAMS + 7;
    /// Largest EPC a tag notice may carry (Gen2 PC length field: 31 words).
    pub const MAX_EPC: usize = 62;

    /// Gen2 StoredCRC: CRC-16 poly 0x1021, preset 0xFFFF, ones-complement output, over
    /// PC+EPC (EPC Gen2 / ISO 18000-63; EPC TDS 1.13 §9). The `crc` catalogue calls it
    /// CRC-16/GENIBUS.
    pub const TAG_CRC: Crc<u16> = Crc::<u16>::new(&CRC_16_GENIBUS);

    /// Command codes (M5Unit-UHF-RFID `src/CMD.h`).
    pub mod code {
        /// Get module information; parameter selects hardware / software / manufacturer.
        pub const GET_INFO: u8 = 0x03;
        /// One inventory round; the module answers with a notice per tag, or an error
        /// frame with [`super::ERR_NO_TAG`] when it found none.
        pub const SINGLE_POLL: u8 = 0x22;
        /// Repeated inventory rounds; parameters `0x22`, count (u16 BE).
        pub const MULTI_POLL: u8 = 0x27;
        /// Stop a multiple poll.
        pub const STOP_MULTI_POLL: u8 = 0x28;
        /// Set transmit power, centi-dBm (u16 BE).
        pub const SET_TX_POWER: u8 = 0xB6;
        /// Get transmit power.
        pub const GET_TX_POWER: u8 = 0xB7;
        /// Command byte of an error response.
        pub const ERROR: u8 = 0xFF;
    }

    /// Error code the module returns when an inventory round found no tag (the
    /// `BB 01 FF 00 01 15 16 7E` frame that independent client libraries name "tag not
    /// found"). It still proves the module is alive.
    pub const ERR_NO_TAG: u8 = 0x15;

    /// Reserved first parameter of a multiple poll (CMD.h).
    const MULTI_POLL_RESERVED: u8 = 0x22;

    /// The Type byte.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum FrameType {
        /// Host → module.
        Command,
        /// Module → host, answering a command.
        Response,
        /// Module → host, unsolicited (tag reads).
        Notice,
    }

    impl FrameType {
        /// Wire value.
        pub const fn byte(self) -> u8 {
            match self {
                FrameType::Command => 0x00,
                FrameType::Response => 0x01,
                FrameType::Notice => 0x02,
            }
        }

        /// From the wire value.
        pub const fn from_byte(b: u8) -> Option<Self> {
            match b {
                0x00 => Some(FrameType::Command),
                0x01 => Some(FrameType::Response),
                0x02 => Some(FrameType::Notice),
                _ => None,
            }
        }
    }

    /// What [`Command::GetInfo`] asks for (CMD.h parameter of command 0x03).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum InfoKind {
        /// Hardware version string.
        Hardware = 0x00,
        /// Software version string.
        Software = 0x01,
        /// Manufacturer string.
        Manufacturer = 0x02,
    }

    /// Host → module commands this crate encodes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Command {
        /// Module information.
        GetInfo(InfoKind),
        /// One inventory round.
        SinglePoll,
        /// `count` inventory rounds, reported as notices.
        MultiPoll {
            /// Number of rounds.
            count: u16,
        },
        /// Stop a multiple poll.
        StopMultiPoll,
        /// Set transmit power.
        SetTxPower {
            /// Power in 0.01 dBm (2000 = 20.00 dBm).
            centi_dbm: u16,
        },
        /// Read transmit power.
        GetTxPower,
    }

    impl Command {
        /// The command byte.
        pub const fn code(&self) -> u8 {
            match self {
                Command::GetInfo(_) => code::GET_INFO,
                Command::SinglePoll => code::SINGLE_POLL,
                Command::MultiPoll { .. } => code::MULTI_POLL,
                Command::StopMultiPoll => code::STOP_MULTI_POLL,
                Command::SetTxPower { .. } => code::SET_TX_POWER,
                Command::GetTxPower => code::GET_TX_POWER,
            }
        }

        /// Encode as a complete frame; returns the bytes written.
        pub fn encode(&self, out: &mut [u8]) -> Result<usize, FrameError> {
            let mut params = [0u8; 3];
            let params: &[u8] = match *self {
                Command::GetInfo(kind) => {
                    params[0] = kind as u8;
                    &params[..1]
                }
                Command::MultiPoll { count } => {
                    let [hi, lo] = count.to_be_bytes();
                    params = [MULTI_POLL_RESERVED, hi, lo];
                    &params
                }
                Command::SetTxPower { centi_dbm } => {
                    let [hi, lo] = centi_dbm.to_be_bytes();
                    params[..2].copy_from_slice(&[hi, lo]);
                    &params[..2]
                }
                Command::SinglePoll | Command::StopMultiPoll | Command::GetTxPower => &[],
            };
            encode_frame(FrameType::Command, self.code(), params, out)
        }

        /// Recognise a command frame (for a simulated module). `None` if the frame is not a
        /// command this crate knows, or its parameters do not fit the command.
        pub fn from_frame(frame: &RawFrame) -> Option<Self> {
            if frame.kind != FrameType::Command {
                return None;
            }
            let p = frame.params.as_slice();
            Some(match (frame.command, p) {
                (code::GET_INFO, [0x00]) => Command::GetInfo(InfoKind::Hardware),
                (code::GET_INFO, [0x01]) => Command::GetInfo(InfoKind::Software),
                (code::GET_INFO, [0x02]) => Command::GetInfo(InfoKind::Manufacturer),
                (code::SINGLE_POLL, []) => Command::SinglePoll,
                (code::MULTI_POLL, [MULTI_POLL_RESERVED, hi, lo]) => Command::MultiPoll {
                    count: u16::from_be_bytes([*hi, *lo]),
                },
                (code::STOP_MULTI_POLL, []) => Command::StopMultiPoll,
                (code::SET_TX_POWER, [hi, lo]) => Command::SetTxPower {
                    centi_dbm: u16::from_be_bytes([*hi, *lo]),
                },
                (code::GET_TX_POWER, []) => Command::GetTxPower,
                _ => return None,
            })
        }
    }

    /// The checksum rule: low byte of the sum of Type, Command, PL and parameters.
    pub fn checksum(type_to_last_param: &[u8]) -> u8 {
        type_to_last_param
            .iter()
            .fold(0u8, |acc, &b| acc.wrapping_add(b))
    }

    /// Encode any frame; returns the bytes written.
    pub fn encode_frame(
        kind: FrameType,
        command: u8,
        params: &[u8],
        out: &mut [u8],
    ) -> Result<usize, FrameError> {
        if params.len() > MAX_PARAMS {
            return Err(FrameError::Oversize {
                declared: params.len(),
                limit: MAX_PARAMS,
            });
        }
        let total = params.len() + 7;
        if out.len() < total {
            return Err(FrameError::BufferTooSmall {
                needed: total,
                available: out.len(),
            });
        }
        let [pl_hi, pl_lo] = (params.len() as u16).to_be_bytes();
        out[..5].copy_from_slice(&[HEADER, kind.byte(), command, pl_hi, pl_lo]);
        out[5..5 + params.len()].copy_from_slice(params);
        out[total - 2] = checksum(&out[1..total - 2]);
        out[total - 1] = END;
        Ok(total)
    }

    /// A frame with valid framing and checksum, not yet interpreted.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct RawFrame {
        /// Type byte.
        pub kind: FrameType,
        /// Command byte.
        pub command: u8,
        /// Parameters.
        pub params: Vec<u8, MAX_PARAMS>,
    }

    /// A tag observation from a poll notice: `RSSI | PC(2) | EPC(n) | CRC(2)`
    /// (M5Unit-UHF-RFID `saveCardInfo`; DOMAIN §4.6).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct TagNotice {
        /// Received signal strength, dBm (the byte is two's complement).
        pub rssi: i8,
        /// Gen2 Protocol Control word.
        pub pc: u16,
        /// EPC bytes, as many as the PC length field says.
        pub epc: Vec<u8, MAX_EPC>,
        /// The tag's StoredCRC, verified against PC+EPC.
        pub crc: u16,
    }

    impl TagNotice {
        /// Encode as a notice frame (for a simulated module).
        pub fn encode(&self, out: &mut [u8]) -> Result<usize, FrameError> {
            let mut params = [0u8; 5 + MAX_EPC];
            let n = 5 + self.epc.len();
            params[0] = self.rssi as u8;
            params[1..3].copy_from_slice(&self.pc.to_be_bytes());
            params[3..3 + self.epc.len()].copy_from_slice(&self.epc);
            params[n - 2..n].copy_from_slice(&self.crc.to_be_bytes());
            encode_frame(FrameType::Notice, code::SINGLE_POLL, &params[..n], out)
        }

        /// A notice for `pc` + `epc` with the correct StoredCRC (for simulated tags).
        pub fn with_crc(rssi: i8, pc: u16, epc: Vec<u8, MAX_EPC>) -> Self {
            let crc = tag_crc(pc, &epc);
            Self { rssi, pc, epc, crc }
        }
    }

    /// CRC-16/GENIBUS over PC (big-endian) then EPC.
    pub fn tag_crc(pc: u16, epc: &[u8]) -> u16 {
        let mut digest = TAG_CRC.digest();
        digest.update(&pc.to_be_bytes());
        digest.update(epc);
        digest.finalize()
    }

    /// A module frame, interpreted.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Reply {
        /// A tag notice from a single or multiple poll, StoredCRC verified.
        Tag(TagNotice),
        /// An error response; [`ERR_NO_TAG`] ends an inventory that found nothing.
        Error {
            /// Error code.
            code: u8,
        },
        /// Module information string (bytes as sent; usually ASCII).
        Info {
            /// Which string.
            kind: u8,
            /// The string.
            text: Vec<u8, MAX_PARAMS>,
        },
        /// Transmit power.
        TxPower {
            /// 0.01 dBm.
            centi_dbm: u16,
        },
        /// A one-byte status response to a command (0x00 = success), e.g. to set power or
        /// stop a multiple poll.
        Status {
            /// The command answered.
            command: u8,
            /// The status byte.
            status: u8,
        },
        /// Any other valid frame.
        Other(RawFrame),
    }

    impl Reply {
        /// Interpret a frame from the module.
        pub fn parse(frame: &RawFrame) -> Result<Self, FrameError> {
            let p = frame.params.as_slice();
            let bad_len = FrameError::BadLength {
                kind: frame.command,
                len: p.len(),
            };
            match (frame.kind, frame.command) {
                (FrameType::Notice, code::SINGLE_POLL) => parse_tag(p).map(Reply::Tag),
                (FrameType::Response, code::ERROR) => match p.first() {
                    Some(&code) => Ok(Reply::Error { code }),
                    None => Err(bad_len),
                },
                (FrameType::Response, code::GET_INFO) => match p.split_first() {
                    Some((&kind, text)) => Ok(Reply::Info {
                        kind,
                        text: Vec::from_slice(text).map_err(|_| bad_len)?,
                    }),
                    None => Err(bad_len),
                },
                (FrameType::Response, code::GET_TX_POWER) => match p {
                    [hi, lo] => Ok(Reply::TxPower {
                        centi_dbm: u16::from_be_bytes([*hi, *lo]),
                    }),
                    _ => Err(bad_len),
                },
                (FrameType::Response, command @ (code::SET_TX_POWER | code::STOP_MULTI_POLL)) => {
                    match p {
                        [status] => Ok(Reply::Status {
                            command,
                            status: *status,
                        }),
                        _ => Err(bad_len),
                    }
                }
                _ => Ok(Reply::Other(frame.clone())),
            }
        }

        /// The command this reply answers, for matching it to an outstanding request.
        /// Errors answer any command; tag notices answer polls.
        pub fn answers(&self, command: u8) -> bool {
            match self {
                Reply::Tag(_) => matches!(command, code::SINGLE_POLL | code::MULTI_POLL),
                Reply::Error { .. } => true,
                Reply::Info { .. } => command == code::GET_INFO,
                Reply::TxPower { .. } => command == code::GET_TX_POWER,
                Reply::Status { command: c, .. } => *c == command,
                Reply::Other(f) => f.command == command,
            }
        }
    }

    fn parse_tag(p: &[u8]) -> Result<TagNotice, FrameError> {
        let bad_len = FrameError::BadLength {
            kind: code::SINGLE_POLL,
            len: p.len(),
        };
        let [rssi, pc_hi, pc_lo, rest @ ..] = p else {
            return Err(bad_len);
        };
        let Some((epc, crc)) = rest.split_last_chunk::<2>() else {
            return Err(bad_len);
        };
        let pc = u16::from_be_bytes([*pc_hi, *pc_lo]);
        // PC bits 15..11: EPC length in 16-bit words (EPC TDS 1.13 §9, Table 9-3).
        let pc_words = (pc >> 11) as u8;
        if usize::from(pc_words) * 2 != epc.len() {
            return Err(FrameError::TagLength {
                pc_words,
                epc_bytes: epc.len(),
            });
        }
        let found = u16::from_be_bytes(*crc);
        let expected = tag_crc(pc, epc);
        if expected != found {
            return Err(FrameError::TagCrc { expected, found });
        }
        Ok(TagNotice {
            rssi: *rssi as i8,
            pc,
            // Cannot fail: 31 words at most is 62 bytes.
            epc: Vec::from_slice(epc).map_err(|_| bad_len)?,
            crc: found,
        })
    }

    /// The `BB … 7E` format, for [`FrameParser`].
    #[derive(Debug, Clone)]
    pub struct Uhf;

    impl Format for Uhf {
        type Frame = RawFrame;
        const START: u8 = HEADER;

        fn check(buf: &[u8]) -> Check {
            if let Some(&t) = buf.get(1)
                && FrameType::from_byte(t).is_none()
            {
                return Check::Invalid(FrameError::BadType { found: t });
            }
            let [_, _, _, pl_hi, pl_lo, ..] = buf else {
                return Check::Incomplete;
            };
            let declared = usize::from(u16::from_be_bytes([*pl_hi, *pl_lo]));
            if declared > MAX_PARAMS {
                return Check::Invalid(FrameError::Oversize {
                    declared,
                    limit: MAX_PARAMS,
                });
            }
            let total = declared + 7;
            if buf.len() < total {
                return Check::Incomplete;
            }
            if buf[total - 1] != END {
                return Check::Invalid(FrameError::EndByte {
                    found: buf[total - 1],
                    expected: END,
                });
            }
            let expected = checksum(&buf[1..total - 2]);
            let found = buf[total - 2];
            if expected != found {
                return Check::Invalid(FrameError::Checksum {
                    expected: expected.into(),
                    found: found.into(),
                });
            }
            Check::Complete(total)
        }

        fn frame(frame: &[u8]) -> Option<RawFrame> {
            let kind = FrameType::from_byte(frame[1])?;
            let params = &frame[5..frame.len() - 2];
            Some(RawFrame {
                kind,
                command: frame[2],
                params: Vec::from_slice(params).ok()?,
            })
        }
    }

    /// Streaming parser for `BB … 7E` frames (either direction).
    pub type Parser = FrameParser<Uhf, MAX_FRAME>;
}

/// aeogate's frame format for an ISO 18185 e-seal reader adapter (the reader that talks to
/// seals over the ISO 18185 / ISO/IEC 18000-7 air interface and to the board over UART).
///
/// ```text
/// STX 0x02 | LEN | TYPE | PAYLOAD[LEN-1] | CRC MSB | CRC LSB | ETX 0x03
/// ```
///
/// `LEN` counts `TYPE` and `PAYLOAD` (1..=[`MAX_LEN`](eseal::MAX_LEN)). The CRC is
/// CRC-16/IBM-3740 (poly 0x1021, init 0xFFFF, no reflection, no xorout: the CCITT
/// polynomial that seal readers such as Hi-G-Tek's already use) over `LEN`, `TYPE` and
/// `PAYLOAD`, sent big-endian. Multi-byte fields are big-endian. Message types and
/// payloads are listed on [`eseal::Request`] and [`eseal::Reply`] and in
/// `docs/hardware.md`.
pub mod eseal {
    use super::{Check, Format, FrameError, FrameParser, Vec};
    use crate::link::{BatteryLevel, EpochMinutes, SealRead, SealStatus};
    use crc::{CRC_16_IBM_3740, Crc};

    /// Start of frame.
    pub const STX: u8 = 0x02;
    /// End of frame.
    pub const ETX: u8 = 0x03;
    /// Largest `LEN` (type + payload bytes) accepted.
    pub const MAX_LEN: usize = 32;
    /// Largest whole frame.
    pub const MAX_FRAME: usize = MAX_LEN + 5;
    /// Frame CRC.
    pub const FRAME_CRC: Crc<u16> = Crc::<u16>::new(&CRC_16_IBM_3740);
    /// A timestamp field with this value means "not reported".
    pub const NO_TIME: u32 = u32::MAX;

    /// Message type bytes. Requests have the top bit clear, replies set.
    pub mod kind {
        /// Host → reader: report every seal in range (no payload).
        pub const POLL: u8 = 0x01;
        /// Host → reader: report reader status (no payload).
        pub const GET_STATUS: u8 = 0x02;
        /// Reader → host: one seal (16-byte payload).
        pub const SEAL: u8 = 0x81;
        /// Reader → host: end of a poll (1-byte payload: seals reported).
        pub const POLL_DONE: u8 = 0x82;
        /// Reader → host: status (3-byte payload: firmware version u16, seals in range u8).
        pub const STATUS: u8 = 0x83;
        /// Reader → host: request refused (1-byte payload: [`super::Nak`] code).
        pub const NAK: u8 = 0xEE;
    }

    /// Host → reader requests.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Request {
        /// Report every seal in range, then [`Reply::PollDone`].
        Poll,
        /// Report [`Reply::Status`].
        GetStatus,
    }

    impl Request {
        /// Type byte.
        pub const fn kind(self) -> u8 {
            match self {
                Request::Poll => kind::POLL,
                Request::GetStatus => kind::GET_STATUS,
            }
        }

        /// Encode as a complete frame.
        pub fn encode(self, out: &mut [u8]) -> Result<usize, FrameError> {
            encode_frame(self.kind(), &[], out)
        }

        /// Recognise a request frame (for a simulated reader).
        pub fn from_frame(frame: &RawFrame) -> Option<Self> {
            match (frame.kind, frame.payload.as_slice()) {
                (kind::POLL, []) => Some(Request::Poll),
                (kind::GET_STATUS, []) => Some(Request::GetStatus),
                _ => None,
            }
        }
    }

    /// Why the reader refused a request.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Nak {
        /// The request failed its CRC at the reader.
        BadCrc = 0x01,
        /// Unknown request type.
        UnknownRequest = 0x02,
        /// The reader is busy with a previous request.
        Busy = 0x03,
    }

    /// A seal as the reader reports it.
    ///
    /// Payload (16 bytes): `manufacturer u16 | tag_id u32 | status u8 | battery u8 |
    /// sealed_at u32 | opened_at u32 | rssi i8`, where status is 1 sealed, 2 opened, 3
    /// tampered; battery 0 ok, 1 low, 2 critical; times are minutes since
    /// 1970-01-01T00:00Z (the reader converts the seal's ISO 18185-2 CCYYMMDDHHMM UTC) or
    /// [`NO_TIME`].
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct SealReport {
        /// The seal, as the link carries it.
        pub seal: SealRead,
        /// Signal strength at the reader, dBm.
        pub rssi: i8,
    }

    const SEAL_PAYLOAD: usize = 17;

    impl SealReport {
        fn to_payload(&self) -> [u8; SEAL_PAYLOAD] {
            let s = &self.seal;
            let mut p = [0u8; SEAL_PAYLOAD];
            p[0..2].copy_from_slice(&s.manufacturer.to_be_bytes());
            p[2..6].copy_from_slice(&s.tag_id.to_be_bytes());
            p[6] = match s.status {
                SealStatus::Sealed => 1,
                SealStatus::Opened => 2,
                SealStatus::Tampered => 3,
            };
            p[7] = match s.battery {
                BatteryLevel::Ok => 0,
                BatteryLevel::Low => 1,
                BatteryLevel::Critical => 2,
            };
            let time = |t: Option<EpochMinutes>| t.map_or(NO_TIME, |m| m.0).to_be_bytes();
            p[8..12].copy_from_slice(&time(s.sealed_at));
            p[12..16].copy_from_slice(&time(s.opened_at));
            p[16] = self.rssi as u8;
            p
        }

        fn from_payload(p: &[u8]) -> Result<Self, FrameError> {
            let p: &[u8; SEAL_PAYLOAD] = p.try_into().map_err(|_| FrameError::BadLength {
                kind: kind::SEAL,
                len: p.len(),
            })?;
            let status = match p[6] {
                1 => SealStatus::Sealed,
                2 => SealStatus::Opened,
                3 => SealStatus::Tampered,
                value => {
                    return Err(FrameError::BadValue {
                        field: "status",
                        value,
                    });
                }
            };
            let battery = match p[7] {
                0 => BatteryLevel::Ok,
                1 => BatteryLevel::Low,
                2 => BatteryLevel::Critical,
                value => {
                    return Err(FrameError::BadValue {
                        field: "battery",
                        value,
                    });
                }
            };
            let time = |b: [u8; 4]| {
                Some(u32::from_be_bytes(b))
                    .filter(|&m| m != NO_TIME)
                    .map(EpochMinutes)
            };
            Ok(SealReport {
                seal: SealRead {
                    manufacturer: u16::from_be_bytes([p[0], p[1]]),
                    tag_id: u32::from_be_bytes([p[2], p[3], p[4], p[5]]),
                    status,
                    battery,
                    sealed_at: time([p[8], p[9], p[10], p[11]]),
                    opened_at: time([p[12], p[13], p[14], p[15]]),
                },
                rssi: p[16] as i8,
            })
        }
    }

    /// Reader → host messages.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Reply {
        /// A seal in range.
        Seal(SealReport),
        /// A poll is complete.
        PollDone {
            /// Seals reported in this poll.
            count: u8,
        },
        /// Reader status.
        Status {
            /// Reader firmware version.
            fw_version: u16,
            /// Seals currently in range.
            in_range: u8,
        },
        /// The reader refused the request.
        Nak(Nak),
    }

    impl Reply {
        /// Interpret a frame from the reader.
        pub fn parse(frame: &RawFrame) -> Result<Self, FrameError> {
            let p = frame.payload.as_slice();
            let bad_len = FrameError::BadLength {
                kind: frame.kind,
                len: p.len(),
            };
            match frame.kind {
                kind::SEAL => SealReport::from_payload(p).map(Reply::Seal),
                kind::POLL_DONE => match p {
                    [count] => Ok(Reply::PollDone { count: *count }),
                    _ => Err(bad_len),
                },
                kind::STATUS => match p {
                    [hi, lo, in_range] => Ok(Reply::Status {
                        fw_version: u16::from_be_bytes([*hi, *lo]),
                        in_range: *in_range,
                    }),
                    _ => Err(bad_len),
                },
                kind::NAK => match p {
                    [0x01] => Ok(Reply::Nak(Nak::BadCrc)),
                    [0x02] => Ok(Reply::Nak(Nak::UnknownRequest)),
                    [0x03] => Ok(Reply::Nak(Nak::Busy)),
                    [value] => Err(FrameError::BadValue {
                        field: "nak",
                        value: *value,
                    }),
                    _ => Err(bad_len),
                },
                found => Err(FrameError::BadType { found }),
            }
        }

        /// Encode as a complete frame (for a simulated reader).
        pub fn encode(&self, out: &mut [u8]) -> Result<usize, FrameError> {
            match self {
                Reply::Seal(report) => encode_frame(kind::SEAL, &report.to_payload(), out),
                Reply::PollDone { count } => encode_frame(kind::POLL_DONE, &[*count], out),
                Reply::Status {
                    fw_version,
                    in_range,
                } => {
                    let [hi, lo] = fw_version.to_be_bytes();
                    encode_frame(kind::STATUS, &[hi, lo, *in_range], out)
                }
                Reply::Nak(code) => encode_frame(kind::NAK, &[*code as u8], out),
            }
        }
    }

    /// Encode a frame of type `kind` with `payload`; returns the bytes written.
    pub fn encode_frame(kind: u8, payload: &[u8], out: &mut [u8]) -> Result<usize, FrameError> {
        let len = payload.len() + 1;
        if len > MAX_LEN {
            return Err(FrameError::Oversize {
                declared: len,
                limit: MAX_LEN,
            });
        }
        let total = len + 5;
        if out.len() < total {
            return Err(FrameError::BufferTooSmall {
                needed: total,
                available: out.len(),
            });
        }
        out[0] = STX;
        out[1] = len as u8;
        out[2] = kind;
        out[3..3 + payload.len()].copy_from_slice(payload);
        let crc = FRAME_CRC.checksum(&out[1..total - 3]);
        out[total - 3..total - 1].copy_from_slice(&crc.to_be_bytes());
        out[total - 1] = ETX;
        Ok(total)
    }

    /// A frame with valid framing and CRC, not yet interpreted.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct RawFrame {
        /// Type byte.
        pub kind: u8,
        /// Payload.
        pub payload: Vec<u8, MAX_LEN>,
    }

    /// The e-seal reader format, for [`FrameParser`].
    #[derive(Debug, Clone)]
    pub struct Eseal;

    impl Format for Eseal {
        type Frame = RawFrame;
        const START: u8 = STX;

        fn check(buf: &[u8]) -> Check {
            let Some(&len) = buf.get(1) else {
                return Check::Incomplete;
            };
            let len = usize::from(len);
            if len == 0 {
                return Check::Invalid(FrameError::BadLength { kind: 0, len: 0 });
            }
            if len > MAX_LEN {
                return Check::Invalid(FrameError::Oversize {
                    declared: len,
                    limit: MAX_LEN,
                });
            }
            let total = len + 5;
            if buf.len() < total {
                return Check::Incomplete;
            }
            if buf[total - 1] != ETX {
                return Check::Invalid(FrameError::EndByte {
                    found: buf[total - 1],
                    expected: ETX,
                });
            }
            let expected = FRAME_CRC.checksum(&buf[1..total - 3]);
            let found = u16::from_be_bytes([buf[total - 3], buf[total - 2]]);
            if expected != found {
                return Check::Invalid(FrameError::Checksum { expected, found });
            }
            Check::Complete(total)
        }

        fn frame(frame: &[u8]) -> Option<RawFrame> {
            Some(RawFrame {
                kind: frame[2],
                payload: Vec::from_slice(&frame[3..frame.len() - 3]).ok()?,
            })
        }
    }

    /// Streaming parser for e-seal reader frames (either direction).
    pub type Parser = FrameParser<Eseal, MAX_FRAME>;
}
