//! What both UART reader drivers are: a [`ReaderPort`] holding the UART, the frame parser,
//! and the one request that waits for its answer. It reads only what the UART has ready, abandons a
//! frame cut short once the line has been quiet for [`LINE_IDLE_MS`](crate::LINE_IDLE_MS),
//! and reports [`Error::Timeout`] when the outstanding request goes unanswered. What a
//! reply means stays with each driver.

use embedded_io::{Read, ReadReady, Write};
use protocol::reader::{Format, FrameError, FrameParser};

use crate::{Error, elapsed};

/// A frame of format `F`, or why the bytes were not one.
type Parsed<F> = Result<<F as Format>::Frame, FrameError>;

#[derive(Debug, Clone, Copy)]
struct Outstanding {
    /// Command or message type byte of the request.
    code: u8,
    since_ms: u32,
}

/// A reader module on a UART, speaking format `F` (frames of at most `CAP` bytes).
#[derive(Debug)]
pub struct ReaderPort<U, F, const CAP: usize> {
    uart: U,
    parser: FrameParser<F, CAP>,
    outstanding: Option<Outstanding>,
    timeout_ms: u32,
    /// When the last byte was read, to notice a frame cut short.
    last_byte_ms: u32,
}

impl<U, F, const CAP: usize> ReaderPort<U, F, CAP>
where
    U: Read + Write + ReadReady,
    F: Format,
{
    /// A driver with the given answer timeout (measured from the request, and again from
    /// each report of a request still in progress).
    pub fn with_timeout(uart: U, timeout_ms: u32) -> Self {
        Self {
            uart,
            parser: FrameParser::new(),
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

    /// The code of the request waiting for its answer, if any.
    pub(crate) fn outstanding(&self) -> Option<u8> {
        self.outstanding.map(|o| o.code)
    }

    /// Write an encoded request; it waits for its answer from `now_ms` (a request still
    /// waiting is abandoned).
    pub(crate) fn send_frame(
        &mut self,
        frame: &[u8],
        code: u8,
        now_ms: u32,
    ) -> Result<(), Error<U::Error>> {
        self.uart.write_all(frame).map_err(Error::Uart)?;
        self.uart.flush().map_err(Error::Uart)?;
        self.wait_from(code, now_ms);
        Ok(())
    }

    /// The request `code` waits (again) from `now_ms`.
    pub(crate) fn wait_from(&mut self, code: u8, now_ms: u32) {
        self.outstanding = Some(Outstanding {
            code,
            since_ms: now_ms,
        });
    }

    /// The outstanding request has its answer.
    pub(crate) fn answered(&mut self) {
        self.outstanding = None;
    }

    /// The next frame, or framing error, from what is buffered and what the UART has ready
    /// (at most `max_bytes` bytes read). `Ok(None)`: nothing complete yet.
    pub(crate) fn next_frame(
        &mut self,
        now_ms: u32,
        max_bytes: usize,
    ) -> Result<Option<Parsed<F>>, Error<U::Error>> {
        if let Some(result) = self.parser.drain() {
            return Ok(Some(result));
        }
        for _ in 0..max_bytes {
            if !self.uart.read_ready().map_err(Error::Uart)? {
                break;
            }
            let mut byte = [0u8; 1];
            if self.uart.read(&mut byte).map_err(Error::Uart)? == 0 {
                break;
            }
            self.last_byte_ms = now_ms;
            if let Some(result) = self.parser.push(byte[0]) {
                return Ok(Some(result));
            }
        }
        if self.parser.pending() > 0
            && elapsed(now_ms, self.last_byte_ms) >= crate::LINE_IDLE_MS
            && let Some(result) = self.parser.idle()
        {
            return Ok(Some(result));
        }
        match self.outstanding {
            Some(o) if elapsed(now_ms, o.since_ms) >= self.timeout_ms => {
                self.outstanding = None;
                Err(Error::Timeout)
            }
            _ => Ok(None),
        }
    }
}
