//! Driver for the `BB … 7E` UART UHF RFID module family (MagicRF M100 / R200 class, e.g.
//! the JRD-4035 in M5Stack's UHF RFID unit), 115200 bit/s 8N1.
//!
//! Protocol: `Header 0xBB | Type | Command | PL(2) | Parameters | Checksum | 0x7E`, checksum
//! the low byte of the sum from Type to the last parameter (m5stack/M5Unit-UHF-RFID
//! `src/CMD.h`, `src/UNIT_UHF_RFID.cpp`); frames are encoded and parsed by
//! [`protocol::reader::uhf`]. A single poll (0x22) is answered by one notice per tag
//! (RSSI, PC, EPC, StoredCRC) or by an error frame with code
//! [`ERR_NO_TAG`](protocol::reader::uhf::ERR_NO_TAG).
//!
//! The driver never blocks in [`UhfReader::poll`]: it reads only what the UART has ready
//! and tracks the outstanding command against the time passed in, reporting
//! [`Error::Timeout`] when the module does not answer. The blocking helpers
//! ([`UhfReader::request`] and friends) are for start-up configuration.

use embedded_hal::delay::DelayNs;
use embedded_io::{Read, ReadReady, Write};
use heapless::Vec;
use protocol::reader::uhf::{self, Command, FrameType, InfoKind, Reply};

use crate::Error;
use crate::port::ReaderPort;

/// Default answer timeout. An inventory round on these modules takes tens of
/// milliseconds; 200 ms leaves room for a round with many tags.
pub const DEFAULT_TIMEOUT_MS: u32 = 200;

/// Bytes read from the UART per [`UhfReader::poll`] call at most, so one call stays short
/// even when the module streams notices.
const MAX_BYTES_PER_POLL: usize = 256;

/// A `BB … 7E` module on a UART.
pub type UhfReader<U> = ReaderPort<U, uhf::Uhf, { uhf::MAX_FRAME }>;

impl<U> UhfReader<U>
where
    U: Read + Write + ReadReady,
{
    /// A driver with the [`DEFAULT_TIMEOUT_MS`].
    pub fn new(uart: U) -> Self {
        Self::with_timeout(uart, DEFAULT_TIMEOUT_MS)
    }

    /// Send `command`; its answer comes out of [`poll`](Self::poll). A command still
    /// waiting is abandoned.
    pub fn send(&mut self, command: Command, now_ms: u32) -> Result<(), Error<U::Error>> {
        let mut buf = [0u8; 16];
        let n = command.encode(&mut buf)?;
        self.send_frame(&buf[..n], command.code(), now_ms)
    }

    /// Read what the UART has ready and return the next reply, if any.
    ///
    /// - `Ok(Some(reply))`: a frame from the module: tag notices (also unsolicited ones from
    ///   a multiple poll), the answer to the outstanding command, or an error frame.
    /// - `Ok(None)`: nothing complete yet.
    /// - `Err(Timeout)`: the outstanding command went unanswered; it is dropped.
    /// - `Err(Checksum | Frame | Unexpected)`: a bad or unrequested frame was dropped; call
    ///   again, later bytes may hold more. A frame cut short is reported as
    ///   `Frame(Truncated)` once the line has been quiet for [`LINE_IDLE_MS`](crate::LINE_IDLE_MS).
    pub fn poll(&mut self, now_ms: u32) -> Result<Option<Reply>, Error<U::Error>> {
        match self.next_frame(now_ms, MAX_BYTES_PER_POLL)? {
            Some(result) => self.accept(result),
            None => Ok(None),
        }
    }

    fn accept(
        &mut self,
        result: Result<uhf::RawFrame, protocol::reader::FrameError>,
    ) -> Result<Option<Reply>, Error<U::Error>> {
        let frame = result?;
        if frame.kind == FrameType::Command {
            // Modules never send commands: this is our own frame looped back.
            return Err(Error::Unexpected {
                command: frame.command,
            });
        }
        let reply = match Reply::parse(&frame) {
            Ok(reply) => reply,
            Err(e) => {
                // The module answered, even if with a damaged tag.
                self.answered();
                return Err(e.into());
            }
        };
        match (&reply, self.outstanding()) {
            (_, Some(code)) if reply.answers(code) => {
                self.answered();
                Ok(Some(reply))
            }
            // Notices of a multiple poll, and error frames, arrive without a request.
            (Reply::Tag(_) | Reply::Error { .. }, _) => Ok(Some(reply)),
            _ => Err(Error::Unexpected {
                command: frame.command,
            }),
        }
    }

    /// Send `command` and wait for its answer, polling every millisecond with `delay`.
    /// Tag notices that arrive meanwhile are discarded. For start-up configuration.
    pub fn request(
        &mut self,
        command: Command,
        delay: &mut impl DelayNs,
    ) -> Result<Reply, Error<U::Error>> {
        let mut now = 0u32;
        self.send(command, now)?;
        loop {
            match self.poll(now)? {
                Some(Reply::Error { code }) => return Err(Error::Rejected { code }),
                Some(reply) if reply.answers(command.code()) && !matches!(reply, Reply::Tag(_)) => {
                    return Ok(reply);
                }
                Some(_) => continue,
                None => {
                    delay.delay_ms(1);
                    now = now.wrapping_add(1);
                }
            }
        }
    }

    /// Set the transmit power, in 0.01 dBm (2000 = 20.00 dBm).
    pub fn set_tx_power(
        &mut self,
        centi_dbm: u16,
        delay: &mut impl DelayNs,
    ) -> Result<(), Error<U::Error>> {
        match self.request(Command::SetTxPower { centi_dbm }, delay)? {
            Reply::Status { status: 0, .. } => Ok(()),
            Reply::Status { status, .. } => Err(Error::Rejected { code: status }),
            _ => Err(Error::Unexpected {
                command: uhf::code::SET_TX_POWER,
            }),
        }
    }

    /// Read one of the module's information strings.
    pub fn info(
        &mut self,
        kind: InfoKind,
        delay: &mut impl DelayNs,
    ) -> Result<Vec<u8, { uhf::MAX_PARAMS }>, Error<U::Error>> {
        match self.request(Command::GetInfo(kind), delay)? {
            Reply::Info { text, .. } => Ok(text),
            _ => Err(Error::Unexpected {
                command: uhf::code::GET_INFO,
            }),
        }
    }
}
