//! The serial link between a lane I/O board and the edge agent.
//!
//! # Frame layout
//!
//! ```text
//! 0x00 | COBS( body | CRC-32C(body), little-endian ) | 0x00
//! body = postcard( version: u8, seq: u16, msg: Message )
//! ```
//!
//! - The body is [postcard] 1.x (stable wire format): `u8`/`i8` are one raw byte, wider
//!   integers are LEB128-style varints, an enum is its variant index (varint) followed by
//!   its fields in declaration order, an `Option` is a `0`/`1` byte then the value, a
//!   `heapless::Vec`/`String` is a varint length then the bytes. **Field order and variant
//!   order are the schema**: [`Message`] and the enums inside it are append-only.
//! - The CRC is CRC-32C (Castagnoli, `CRC_32_ISCSI` in the `crc` catalogue: poly
//!   0x1EDC6F41 reflected, init and xorout 0xFFFFFFFF), appended little-endian. It was
//!   chosen over CRC-16/IBM-3740 because these frames drive a barrier: CRC-32C keeps a
//!   Hamming distance of 6 far beyond our longest frame (Koopman, "32-bit cyclic redundancy
//!   codes for Internet applications", DSN 2002), so any 5 bit errors in a body are always
//!   detected and random corruption slips through with probability 2^-32 rather than 2^-16
//!   (a damaged COBS code byte moves bytes rather than flipping bits: the second case).
//!   The price is two bytes per frame and a 1 KiB table in flash.
//! - COBS (Cheshire & Baker, 1999) removes every 0x00 from the stuffed bytes, so 0x00
//!   only ever delimits. The encoder writes a delimiter *before and after* each frame:
//!   the leading one ends any line noise that arrived since the last frame, so noise never
//!   joins a good frame. Empty frames (two delimiters in a row) are skipped silently.
//!
//! # Decoding
//!
//! [`FrameDecoder`] is fed one byte at a time. It buffers the stuffed bytes up to its
//! capacity `N`, and at each delimiter it un-stuffs in place, checks the CRC, then the
//! version, then parses the body, rejecting trailing bytes. A frame longer than `N` is
//! reported once as [`LinkError::Oversize`] and the decoder skips to the next delimiter.
//! No input makes it panic or allocate.
//!
//! # Sequencing (the rules both ends follow; see `docs/hardware.md`)
//!
//! Each end numbers every frame it sends with its own wrapping `u16` counter. The receiver
//! answers every frame except an [`Message::Ack`] with `Ack { seq }`, duplicates included
//! (the first ack may have been lost). A sender retransmits an unacknowledged frame after a
//! retry interval; the receiver acts on a given `seq` once.

use core::fmt;

use crc::{CRC_32_ISCSI, Crc};
use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

/// The link protocol version carried in every frame. A receiver rejects other versions.
/// Appending a message variant or appending a field-free enum variant does not change it;
/// anything that changes the meaning of existing bytes does.
///
/// Version 2 added the board's boot identifier: a `boot_id` field in [`Heartbeat`] (after
/// `uptime_ms`, so version 1 heartbeats no longer parse) and the [`Message::Hello`] a board
/// sends first on every link-up. A board and an agent of different versions reject each
/// other's frames: the link stays down and the board keeps the lane in its safe state.
pub const LINK_VERSION: u8 = 2;

/// Maximum EPC length in bytes carried by [`Message::TagRead`]: the Gen2 PC length field
/// is 5 bits of 16-bit words (EPC TDS 1.13 §9, Table 9-3), so at most 31 words = 62 bytes.
pub const MAX_EPC_BYTES: usize = 62;

/// Maximum lane-sign text in [`Message::LaneCommand`], in UTF-8 bytes.
pub const MAX_TEXT_BYTES: usize = 32;

/// Bytes of CRC appended to the body.
pub const CRC_BYTES: usize = 4;

/// Largest postcard body of any message of [`LINK_VERSION`], in bytes.
///
/// Worst case is a `TagRead` with a 62-byte EPC: version 1 + seq 3 (varint u16) + variant 1
/// + antenna 1 + rssi 1 + pc 3 + length 1 + EPC 62 = 73. A test encodes that frame.
pub const MAX_BODY: usize = 73;

/// Capacity a receiver needs for every frame of this version, delimiters included: body +
/// CRC, plus COBS overhead of one byte per 254 (`cobs::max_encoding_length`), plus the two
/// delimiters. Receivers should use this (or [`LinkDecoder`]); frames longer than the
/// decoder's buffer are rejected as [`LinkError::Oversize`].
pub const MAX_FRAME: usize = cobs::max_encoding_length(MAX_BODY + CRC_BYTES) + 2;

/// A decoder sized for every frame of this protocol version.
pub type LinkDecoder = FrameDecoder<MAX_FRAME>;

/// CRC-32C as used by the link; see the module docs for the choice.
pub const LINK_CRC: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

/// One link frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// Protocol version, [`LINK_VERSION`] for frames this code sends.
    pub version: u8,
    /// The sender's sequence number for this frame (wrapping).
    pub seq: u16,
    /// The payload.
    pub msg: Message,
}

impl Frame {
    /// A frame of the current [`LINK_VERSION`].
    pub fn new(seq: u16, msg: Message) -> Self {
        Self {
            version: LINK_VERSION,
            seq,
            msg,
        }
    }
}

/// Every message on the link. Append-only: the variant index is on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Board → agent: a UHF tag was read (EPC Gen2 / ISO 18000-63).
    TagRead(TagRead),
    /// Board → agent: an ISO 18185 e-seal was read.
    SealRead(SealRead),
    /// Board → agent: a presence loop changed state (debounced).
    Presence {
        /// Loop number on this board, from 0.
        loop_id: u8,
        /// `true` while a vehicle is over the loop.
        present: bool,
    },
    /// Agent → board: what the lane should show and do.
    LaneCommand(LaneCommand),
    /// Board → agent, periodically: the board is alive; its state.
    Heartbeat(Heartbeat),
    /// Board → agent: something went wrong (or recovered).
    Fault {
        /// What happened.
        code: FaultCode,
        /// Code-specific detail; see [`FaultCode`].
        detail: u16,
    },
    /// Either way: the frame with this `seq` arrived intact.
    Ack {
        /// The acknowledged frame's sequence number.
        seq: u16,
    },
    /// Board → agent, first on every link-up (at start, and when the link returns after a
    /// timeout): which boot of which board is talking. The board sends no other event
    /// until the agent has acknowledged it, so an agent always learns of a new boot before
    /// it sees that boot's first event.
    Hello(Hello),
}

/// Number of [`Message`] variants this version knows; a higher variant index is reported
/// as [`LinkError::UnknownMessage`] so the receiver can still acknowledge it.
pub const MESSAGE_KINDS: u32 = 8;

/// A UHF tag observation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRead {
    /// Antenna (read point) number on this board.
    pub antenna: u8,
    /// Received signal strength in dBm.
    pub rssi: i8,
    /// Gen2 Protocol Control word (EPC TDS 1.13 §9, Table 9-3).
    pub pc: u16,
    /// EPC memory bank contents after the PC, as read.
    pub epc: Vec<u8, MAX_EPC_BYTES>,
}

/// Minutes since 1970-01-01T00:00Z. ISO 18185-2 records sealing and opening times as
/// CCYYMMDDHHMM UTC, i.e. to the minute; a `u32` of minutes reaches past the year 10000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EpochMinutes(pub u32);

/// An ISO 18185 e-seal observation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealRead {
    /// Manufacturer ID, part of the seal ID (ISO 18185-2).
    pub manufacturer: u16,
    /// Tag ID programmed at manufacture, the rest of the seal ID (ISO 18185-2).
    pub tag_id: u32,
    /// Seal state as the seal reports it.
    pub status: SealStatus,
    /// Battery state as the seal reports it.
    pub battery: BatteryLevel,
    /// When the seal was closed, if the seal reported it.
    pub sealed_at: Option<EpochMinutes>,
    /// When the seal was last opened, if the seal reported it.
    pub opened_at: Option<EpochMinutes>,
}

impl SealRead {
    /// An intact seal with a good battery that reported no sealing or opening time.
    pub const fn sealed(manufacturer: u16, tag_id: u32) -> Self {
        Self {
            manufacturer,
            tag_id,
            status: SealStatus::Sealed,
            battery: BatteryLevel::Ok,
            sealed_at: None,
            opened_at: None,
        }
    }
}

/// E-seal state (ISO 18185-2 status bit, plus the tamper flag readers report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SealStatus {
    /// Closed and intact since it was set.
    Sealed,
    /// The seal reports that it is open.
    Opened,
    /// The seal detected tampering (wire cut or changed) since it was set.
    Tampered,
}

/// E-seal battery state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BatteryLevel {
    /// Battery fine.
    Ok,
    /// Low-battery warning.
    Low,
    /// The seal may stop answering soon.
    Critical,
}

/// Lane light.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Light {
    /// All lamps off.
    Off,
    /// Stop. The safe state.
    Red,
    /// Proceed with care / wait for an officer.
    Amber,
    /// Proceed.
    Green,
}

/// Barrier position command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Barrier {
    /// Arm down, lane closed.
    Lower,
    /// Arm up, lane open.
    Raise,
}

/// What the lane should show and do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneCommand {
    /// Light to show.
    pub light: Light,
    /// Barrier position. The board never lowers onto a present vehicle, whatever this says.
    pub barrier: Barrier,
    /// Route number for the lane sign (0 = none).
    pub route: u8,
    /// Text for the lane sign.
    pub text: String<MAX_TEXT_BYTES>,
}

/// A board's boot announcement ([`Message::Hello`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Identifies this boot of the board: a new value on every start (reset, power cycle,
    /// replacement), the same for as long as the board runs. See [`Heartbeat::boot_id`].
    pub boot_id: u32,
    /// Milliseconds since the board started (wraps after ~49.7 days).
    pub uptime_ms: u32,
    /// Board identity (configuration).
    pub board_id: u16,
    /// Firmware version, `major << 8 | minor`.
    pub fw_version: u16,
}

/// Periodic board status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Milliseconds since the board started (wraps after ~49.7 days).
    pub uptime_ms: u32,
    /// Identifies this boot of the board (as in [`Hello`]). The agent treats a change as a
    /// new session at once: the new boot numbers its frames from anywhere, so sequence
    /// numbers remembered from the old one mean nothing.
    pub boot_id: u32,
    /// Board identity (configuration).
    pub board_id: u16,
    /// Firmware version, `major << 8 | minor`.
    pub fw_version: u16,
    /// Current state.
    pub status: BoardStatus,
}

/// The board's state as reported in a [`Heartbeat`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardStatus {
    /// The agent link is up (not timed out).
    pub link_ok: bool,
    /// The UHF reader answers.
    pub uhf_reader_ok: bool,
    /// The e-seal reader answers.
    pub seal_reader_ok: bool,
    /// Light currently driven.
    pub light: Light,
    /// Barrier currently driven.
    pub barrier: Barrier,
    /// Presence loops occupied: bit n = loop n.
    pub presence: u8,
    /// Frames waiting for an acknowledgement.
    pub unacked: u8,
}

/// Fault codes. Append-only. The meaning of `detail` is given per code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FaultCode {
    /// A reader stopped answering and is being retried. detail: reader number
    /// (0 = UHF, 1 = e-seal).
    ReaderSilent,
    /// A reader answers again after [`FaultCode::ReaderSilent`]. detail: reader number.
    ReaderRecovered,
    /// Frames from a reader failed their checksum. detail: count since the last report.
    ReaderChecksum,
    /// Tags whose Gen2 StoredCRC did not match PC+EPC were dropped. detail: count.
    TagCrc,
    /// The agent link was silent past the timeout and has come back; the lane was in its
    /// safe state meanwhile. detail: seconds of silence (saturating).
    LinkSilentRecovered,
    /// A commanded lower was held back because a vehicle is present; the barrier lowers
    /// when every loop is clear. detail: presence bits at the time.
    BarrierLowerRefused,
    /// The outgoing queue was full and events were dropped. detail: count dropped.
    QueueOverflow,
    /// Frames from the agent were rejected (CRC, framing, version). detail: count.
    LinkRejected,
    /// An output pin (light or barrier) reported an error. detail: 0 = light, 1 = barrier.
    OutputError,
}

/// Errors from encoding or decoding link frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The frame grew past the decoder's buffer before a delimiter arrived.
    #[error("frame longer than the {limit}-byte receive buffer; skipped to the next delimiter")]
    Oversize {
        /// The decoder's buffer size.
        limit: usize,
    },
    /// The stuffed bytes are not valid COBS.
    #[error("invalid COBS stuffing in a {len}-byte frame")]
    Cobs {
        /// Stuffed length.
        len: usize,
    },
    /// Too few bytes to hold a body and its CRC.
    #[error("frame of {len} bytes is shorter than the {min}-byte minimum")]
    TooShort {
        /// Un-stuffed length.
        len: usize,
        /// Minimum length.
        min: usize,
    },
    /// The CRC does not match the body.
    #[error("CRC mismatch: computed {expected:#010x}, frame carries {found:#010x}")]
    Crc {
        /// CRC computed over the received body.
        expected: u32,
        /// CRC carried by the frame.
        found: u32,
    },
    /// The frame is of another protocol version.
    #[error("link version {found} not supported (this end speaks {supported})")]
    Version {
        /// Version in the frame.
        found: u8,
        /// [`LINK_VERSION`].
        supported: u8,
    },
    /// A message kind newer than this code. The frame is intact, so it may be acknowledged.
    #[error("unknown message kind {kind} in frame seq {seq}")]
    UnknownMessage {
        /// The frame's sequence number.
        seq: u16,
        /// The message variant index.
        kind: u32,
    },
    /// The CRC matched but the body does not parse as a message of this version.
    #[error("malformed body in frame seq {seq}")]
    Malformed {
        /// The frame's sequence number (0 if it could not be read).
        seq: u16,
    },
    /// Bytes left over after the message.
    #[error("{count} trailing bytes after the message in frame seq {seq}")]
    TrailingBytes {
        /// The frame's sequence number.
        seq: u16,
        /// Bytes left over.
        count: usize,
    },
    /// The output buffer cannot hold the encoded frame.
    #[error("output buffer of {available} bytes too small for the frame")]
    BufferTooSmall {
        /// The output buffer's size.
        available: usize,
    },
    /// The message could not be serialised (a bug: every `Message` value is encodable).
    #[error("message could not be serialised")]
    Encode,
}

/// Encode `frame` into `out` as `0x00 | COBS(body | CRC) | 0x00`; returns the bytes written.
///
/// A buffer of [`MAX_FRAME`] bytes always suffices for frames of this version.
pub fn encode_frame(frame: &Frame, out: &mut [u8]) -> Result<usize, LinkError> {
    let mut body = [0u8; MAX_BODY + CRC_BYTES];
    // Every message of this version fits MAX_BODY (a test encodes the largest).
    let len = match postcard::to_slice(frame, &mut body[..MAX_BODY]) {
        Ok(used) => used.len(),
        Err(_) => return Err(LinkError::Encode),
    };
    let crc = LINK_CRC.checksum(&body[..len]);
    body[len..len + CRC_BYTES].copy_from_slice(&crc.to_le_bytes());
    let raw = &body[..len + CRC_BYTES];

    let too_small = LinkError::BufferTooSmall {
        available: out.len(),
    };
    if out.len() < 2 {
        return Err(too_small);
    }
    let end = out.len() - 1;
    out[0] = 0;
    let stuffed = cobs::try_encode(raw, &mut out[1..end]).map_err(|_| too_small)?;
    out[1 + stuffed] = 0;
    Ok(stuffed + 2)
}

/// Decode one frame from its un-stuffed bytes (body followed by the CRC).
pub fn decode_body(raw: &[u8]) -> Result<Frame, LinkError> {
    // Smallest body: version, seq, variant index, one field byte (e.g. `Ack { seq: 0 }`).
    const MIN: usize = 4 + CRC_BYTES;
    if raw.len() < MIN {
        return Err(LinkError::TooShort {
            len: raw.len(),
            min: MIN,
        });
    }
    let (body, crc_bytes) = raw.split_at(raw.len() - CRC_BYTES);
    let mut carried = [0u8; CRC_BYTES];
    carried.copy_from_slice(crc_bytes);
    let found = u32::from_le_bytes(carried);
    let expected = LINK_CRC.checksum(body);
    if expected != found {
        return Err(LinkError::Crc { expected, found });
    }

    // The header is read on its own first, so that a version or message kind this code does
    // not know is reported as such rather than as a malformed body.
    #[derive(Deserialize)]
    struct Head {
        version: u8,
        seq: u16,
        kind: u32,
    }
    let head: Head = postcard::take_from_bytes(body)
        .map_or(Err(LinkError::Malformed { seq: 0 }), |(h, _)| Ok(h))?;
    if head.version != LINK_VERSION {
        return Err(LinkError::Version {
            found: head.version,
            supported: LINK_VERSION,
        });
    }
    if head.kind >= MESSAGE_KINDS {
        return Err(LinkError::UnknownMessage {
            seq: head.seq,
            kind: head.kind,
        });
    }
    match postcard::take_from_bytes::<Frame>(body) {
        Ok((frame, [])) => Ok(frame),
        Ok((_, rest)) => Err(LinkError::TrailingBytes {
            seq: head.seq,
            count: rest.len(),
        }),
        Err(_) => Err(LinkError::Malformed { seq: head.seq }),
    }
}

/// Streaming frame decoder with an `N`-byte buffer for stuffed bytes (use [`LinkDecoder`]).
#[derive(Debug, Clone)]
pub struct FrameDecoder<const N: usize> {
    buf: [u8; N],
    len: usize,
    /// Set after an oversize frame: drop bytes until the next delimiter.
    skipping: bool,
}

impl<const N: usize> Default for FrameDecoder<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> FrameDecoder<N> {
    /// An empty decoder.
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
            skipping: false,
        }
    }

    /// Feed one byte. Returns `Some` when the byte completes a frame (a delimiter after
    /// stuffed bytes) or overflows the buffer.
    pub fn push(&mut self, byte: u8) -> Option<Result<Frame, LinkError>> {
        if byte == 0 {
            let len = core::mem::take(&mut self.len);
            if core::mem::take(&mut self.skipping) || len == 0 {
                return None;
            }
            return Some(self.finish(len));
        }
        if self.skipping {
            return None;
        }
        // A delimiter counts toward the frame's length in `MAX_FRAME`, but is not stored.
        if self.len + 2 >= N {
            self.len = 0;
            self.skipping = true;
            return Some(Err(LinkError::Oversize { limit: N }));
        }
        self.buf[self.len] = byte;
        self.len += 1;
        None
    }

    /// Feed bytes until one completes a frame or error. Returns that result and how many
    /// bytes were consumed; call again with the rest.
    pub fn push_slice(&mut self, bytes: &[u8]) -> (usize, Option<Result<Frame, LinkError>>) {
        for (i, &b) in bytes.iter().enumerate() {
            if let Some(result) = self.push(b) {
                return (i + 1, Some(result));
            }
        }
        (bytes.len(), None)
    }

    /// Forget any partial frame (for example after the port was reopened).
    pub fn reset(&mut self) {
        self.len = 0;
        self.skipping = false;
    }

    fn finish(&mut self, len: usize) -> Result<Frame, LinkError> {
        let stuffed = &mut self.buf[..len];
        let raw_len = cobs::decode_in_place(stuffed).map_err(|_| LinkError::Cobs { len })?;
        decode_body(&self.buf[..raw_len])
    }
}

impl fmt::Display for Light {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Light::Off => "off",
            Light::Red => "red",
            Light::Amber => "amber",
            Light::Green => "green",
        })
    }
}

impl fmt::Display for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Barrier::Lower => "lower",
            Barrier::Raise => "raise",
        })
    }
}
