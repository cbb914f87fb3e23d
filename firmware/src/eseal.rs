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

use crate::{Error, elapsed};

/// Default answer timeout: a poll of the seals in range takes the reader up to a few
/// hundred milliseconds on the 433 MHz air interface (ISO/IEC 18000-7).
pub const DEFAULT_TIMEOUT_MS: u32 = 500;

/// Bytes read from the UART per [`SealReader::poll`] call at most.
const MAX_BYTES_PER_POLL: usize = 128;

#[derive(Debug, Clone, Copy)]
struct Outstanding {
    kind: u8,
    since_ms: u32,
}

/// An e-seal reader on a UART.
#[derive(Debug)]
pub struct SealReader<U> {
    uart: U,
    parser: eseal::Parser,
    outstanding: Option<Outstanding>,
    timeout_ms: u32,
    /// When the last byte was read, to notice a frame cut short.
    last_byte_ms: u32,
}

impl<U> SealReader<U>
where
    U: Read + Write + ReadReady,
{
    /// A driver with the [`DEFAULT_TIMEOUT_MS`].
    pub fn new(uart: U) -> Self {
        Self::with_timeout(uart, DEFAULT_TIMEOUT_MS)
    }

    /// A driver with the given answer timeout (measured from the request, and again from
    /// each seal report while a poll is in progress).
    pub fn with_timeout(uart: U, timeout_ms: u32) -> Self {
        Self {
            uart,
            parser: eseal::Parser::new(),
            outstanding: None,
            timeout_ms,
            last_byte_ms: 0,
        }
    }

    /// Give the UART back.
    pub fn release(self) -> U {
        self.uart
    }

    /// `true` while a request waits for its answer.
    pub fn is_waiting(&self) -> bool {
        self.outstanding.is_some()
    }

    /// Send `request`; its answers come out of [`poll`](Self::poll).
    pub fn send(&mut self, request: Request, now_ms: u32) -> Result<(), Error<U::Error>> {
        let mut buf = [0u8; 8];
        let n = request.encode(&mut buf)?;
        self.uart.write_all(&buf[..n]).map_err(Error::Uart)?;
        self.uart.flush().map_err(Error::Uart)?;
        self.outstanding = Some(Outstanding {
            kind: request.kind(),
            since_ms: now_ms,
        });
        Ok(())
    }

    /// Read what the UART has ready and return the next reply, if any; see
    /// [`UhfReader::poll`](crate::uhf::UhfReader::poll) for the meaning of each result.
    pub fn poll(&mut self, now_ms: u32) -> Result<Option<Reply>, Error<U::Error>> {
        if let Some(result) = self.parser.drain() {
            return self.accept(result, now_ms);
        }
        for _ in 0..MAX_BYTES_PER_POLL {
            if !self.uart.read_ready().map_err(Error::Uart)? {
                break;
            }
            let mut byte = [0u8; 1];
            if self.uart.read(&mut byte).map_err(Error::Uart)? == 0 {
                break;
            }
            self.last_byte_ms = now_ms;
            if let Some(result) = self.parser.push(byte[0]) {
                return self.accept(result, now_ms);
            }
        }
        if self.parser.pending() > 0
            && elapsed(now_ms, self.last_byte_ms) >= crate::LINE_IDLE_MS
            && let Some(result) = self.parser.idle()
        {
            return self.accept(result, now_ms);
        }
        match self.outstanding {
            Some(o) if elapsed(now_ms, o.since_ms) >= self.timeout_ms => {
                self.outstanding = None;
                Err(Error::Timeout)
            }
            _ => Ok(None),
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
        let waiting = self.outstanding.map(|o| o.kind);
        match (&reply, waiting) {
            (Reply::Seal(_), Some(eseal::kind::POLL)) => {
                // The poll is still running; the reader is alive.
                self.outstanding = Some(Outstanding {
                    kind: eseal::kind::POLL,
                    since_ms: now_ms,
                });
                Ok(Some(reply))
            }
            (Reply::Seal(_), _) => Ok(Some(reply)),
            (Reply::PollDone { .. }, Some(eseal::kind::POLL))
            | (Reply::Status { .. }, Some(eseal::kind::GET_STATUS))
            | (Reply::Nak(_), Some(_)) => {
                self.outstanding = None;
                Ok(Some(reply))
            }
            _ => Err(Error::Unexpected {
                command: frame.kind,
            }),
        }
    }
}
