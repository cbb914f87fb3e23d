//! Firmware for the aeogate lane I/O board.
//!
//! The board sits between a gate lane's hardware and the gate box's edge agent: it polls
//! the UHF RFID reader and the e-seal reader, debounces the vehicle-presence loops, drives
//! the lane light and barrier, and speaks the [`protocol::link`] frames to the agent over
//! a serial link. It is `no_std`, uses no heap, and touches hardware only through the
//! embedded-hal 1.0 and embedded-io 0.7 traits, so the same code runs on a Cortex-M board
//! and, with simulated pins and a pseudo-terminal, on a host as a virtual board.
//!
//! # Layout
//! - [`lane`]: the lane state machine ([`lane::LaneController`]), sans-IO: events and the
//!   time go in, actions come out. It owns the safety rules.
//! - [`board`]: glue that wires the drivers and the link UART to a `LaneController`;
//!   call [`board::Board::poll`] from the main loop.
//! - [`uhf`]: driver for the `BB … 7E` UART UHF RFID module.
//! - [`eseal`]: driver for the e-seal reader (frame format in `docs/hardware.md`).
//! - [`port`]: what both reader drivers are: the UART, the frame parser, the outstanding
//!   request and its timeouts.
//! - [`presence`]: debounced presence-loop inputs.
//! - [`outputs`]: lane light and barrier outputs.
//!
//! Time is a `u32` millisecond counter from any monotonic source; every comparison uses
//! wrapping subtraction, so the counter may wrap (every ~49.7 days).
#![no_std]
#![deny(missing_docs)]

pub mod board;
pub mod eseal;
pub mod lane;
pub mod outputs;
pub mod port;
pub mod presence;
pub mod uhf;

use core::fmt;

use protocol::reader::FrameError;

/// Milliseconds from `since` to `now` on a wrapping `u32` clock.
pub const fn elapsed(now_ms: u32, since_ms: u32) -> u32 {
    now_ms.wrapping_sub(since_ms)
}

/// A partial reader frame followed by this much silence is abandoned
/// ([`FrameError::Truncated`]) and the bytes after its start are scanned again. At
/// 115200 bit/s 8N1 a byte takes 87 µs, so this is a gap of over 200 byte times; the
/// readers send each frame back to back.
pub const LINE_IDLE_MS: u32 = 20;

/// Errors from the UART reader drivers, generic over the UART's error so it is never lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error<E> {
    /// The UART reported an error.
    Uart(E),
    /// A frame from the reader failed its checksum.
    Checksum {
        /// Computed over the received bytes.
        expected: u16,
        /// Carried by the frame.
        found: u16,
    },
    /// No answer within the driver's timeout.
    Timeout,
    /// A valid frame that answers nothing outstanding (for example a response to another
    /// command, or our own command echoed back by a miswired line).
    Unexpected {
        /// Its command or message type byte.
        command: u8,
    },
    /// The reader refused the command with this error code.
    Rejected {
        /// The reader's error or status code.
        code: u8,
    },
    /// A frame that is damaged or malformed in another way (framing, length, tag CRC).
    Frame(FrameError),
}

impl<E> Error<E> {
    fn from_frame(e: FrameError) -> Self {
        match e {
            FrameError::Checksum { expected, found } => Error::Checksum { expected, found },
            other => Error::Frame(other),
        }
    }
}

impl<E: fmt::Debug> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Uart(e) => write!(f, "UART error: {e:?}"),
            Error::Checksum { expected, found } => {
                write!(
                    f,
                    "reader frame checksum mismatch: computed {expected:#06x}, frame carries {found:#06x}"
                )
            }
            Error::Timeout => f.write_str("reader did not answer in time"),
            Error::Unexpected { command } => write!(f, "unexpected reader frame {command:#04x}"),
            Error::Rejected { code } => {
                write!(f, "reader refused the command with code {code:#04x}")
            }
            Error::Frame(e) => write!(f, "bad reader frame: {e}"),
        }
    }
}

impl<E: fmt::Debug> core::error::Error for Error<E> {}

impl<E> From<FrameError> for Error<E> {
    fn from(e: FrameError) -> Self {
        Self::from_frame(e)
    }
}
