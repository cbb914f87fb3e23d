//! Driver for the e-seal reader: an ISO 18185 reader adapter that talks to seals over the
//! air and to the board over a UART, in the frame format of
//! [`protocol::reader::eseal`]: `STX | LEN | TYPE | PAYLOAD | CRC-16/IBM-3740 (BE) | ETX`
//! (byte layout in `docs/hardware.md`).
//!
//! A [`Request::Poll`] is answered by one [`Reply::Seal`] per seal in range and then
//! [`Reply::PollDone`]; [`Request::GetStatus`] by [`Reply::Status`]; a refused request by
//! [`Reply::Nak`]. Like the UHF driver, [`SealReader::poll`] never blocks and reports
//! [`Error::Timeout`] when a request goes unanswered.

use embedded_io::{Read, ReadReady, Write};
use protocol::reader::FrameError;
use protocol::reader::eseal::{self, Reply, Request};

use crate::Error;
use crate::port::ReaderPort;

/// Default answer timeout: a poll of the seals in range takes the reader up to a few
/// hundred milliseconds on the 433 MHz air interface (ISO/IEC 18000-7).
pub const DEFAULT_TIMEOUT_MS: u32 = 500;

/// Bytes read from the UART per [`SealReader::poll`] call at most.
const MAX_BYTES_PER_POLL: usize = 128;

/// An e-seal reader on a UART.
pub type SealReader<U> = ReaderPort<U, eseal::Eseal, { eseal::MAX_FRAME }>;

impl<U> SealReader<U>
where
    U: Read + Write + ReadReady,
{
    /// A driver with the [`DEFAULT_TIMEOUT_MS`].
    pub fn new(uart: U) -> Self {
        Self::with_timeout(uart, DEFAULT_TIMEOUT_MS)
    }

    /// Send `request`; its answers come out of [`poll`](Self::poll).
    pub fn send(&mut self, request: Request, now_ms: u32) -> Result<(), Error<U::Error>> {
        let mut buf = [0u8; 8];
        let n = request.encode(&mut buf)?;
        self.send_frame(&buf[..n], request.kind(), now_ms)
    }

    /// Read what the UART has ready and return the next reply, if any; see
    /// [`UhfReader::poll`](crate::uhf::UhfReader::poll) for the meaning of each result.
    pub fn poll(&mut self, now_ms: u32) -> Result<Option<Reply>, Error<U::Error>> {
        match self.next_frame(now_ms, MAX_BYTES_PER_POLL)? {
            Some(result) => self.accept(result, now_ms),
            None => Ok(None),
        }
    }

    fn accept(
        &mut self,
        result: Result<eseal::RawFrame, FrameError>,
        now_ms: u32,
    ) -> Result<Option<Reply>, Error<U::Error>> {
        let frame = result?;
        if frame.kind & 0x80 == 0 {
            // Requests have the top bit clear: our own frame looped back.
            return Err(Error::Unexpected {
                command: frame.kind,
            });
        }
        let reply = Reply::parse(&frame)?;
        match (&reply, self.outstanding()) {
            (Reply::Seal(_), Some(eseal::kind::POLL)) => {
                // The poll is still running; the reader is alive.
                self.wait_from(eseal::kind::POLL, now_ms);
                Ok(Some(reply))
            }
            (Reply::Seal(_), _) => Ok(Some(reply)),
            (Reply::PollDone { .. }, Some(eseal::kind::POLL))
            | (Reply::Status { .. }, Some(eseal::kind::GET_STATUS))
            | (Reply::Nak(_), Some(_)) => {
                self.answered();
                Ok(Some(reply))
            }
            _ => Err(Error::Unexpected {
                command: frame.kind,
            }),
        }
    }
}
