//! Test doubles: a UART made of two `VecDeque<u8>` (what the device sends us, what we
//! wrote), and pins whose level lives in a shared cell, for tests that poll a pin an
//! unknown number of times (strict embedded-hal-mock expectations suit the drivers).
#![allow(dead_code, clippy::unwrap_used)]

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::rc::Rc;

use embedded_io::{ErrorKind, ErrorType, Read, ReadReady, Write};

pub fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[derive(Debug, Default)]
pub struct UartState {
    /// Bytes the device has sent, not yet read by the driver.
    pub rx: VecDeque<u8>,
    /// Bytes the driver wrote.
    pub tx: VecDeque<u8>,
    /// Make every read and write fail.
    pub broken: bool,
}

/// A UART whose two directions the test can reach through a clone.
#[derive(Debug, Clone, Default)]
pub struct FakeUart(pub Rc<RefCell<UartState>>);

impl FakeUart {
    pub fn new() -> Self {
        Self::default()
    }

    /// The device sends `bytes`.
    pub fn reply(&self, bytes: &[u8]) {
        self.0.borrow_mut().rx.extend(bytes);
    }

    /// Everything written so far, cleared.
    pub fn written(&self) -> Vec<u8> {
        self.0.borrow_mut().tx.drain(..).collect()
    }

    pub fn break_line(&self) {
        self.0.borrow_mut().broken = true;
    }
}

impl ErrorType for FakeUart {
    type Error = ErrorKind;
}

impl Read for FakeUart {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let mut s = self.0.borrow_mut();
        if s.broken {
            return Err(ErrorKind::BrokenPipe);
        }
        Ok(Read::read(&mut s.rx, buf).unwrap())
    }
}

impl ReadReady for FakeUart {
    fn read_ready(&mut self) -> Result<bool, ErrorKind> {
        let s = self.0.borrow();
        if s.broken {
            return Err(ErrorKind::BrokenPipe);
        }
        Ok(!s.rx.is_empty())
    }
}

impl Write for FakeUart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        let mut s = self.0.borrow_mut();
        if s.broken {
            return Err(ErrorKind::BrokenPipe);
        }
        Ok(Write::write(&mut s.tx, buf).unwrap())
    }

    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

/// An input pin whose level the test sets.
#[derive(Debug, Clone, Default)]
pub struct FakeInput(pub Rc<Cell<bool>>);

impl FakeInput {
    pub fn set(&self, high: bool) {
        self.0.set(high);
    }
}

impl embedded_hal::digital::ErrorType for FakeInput {
    type Error = Infallible;
}

impl embedded_hal::digital::InputPin for FakeInput {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        Ok(self.0.get())
    }

    fn is_low(&mut self) -> Result<bool, Infallible> {
        Ok(!self.0.get())
    }
}

/// Pin writes in order across pins: `(pin name, level)`.
pub type PinLog = Rc<RefCell<Vec<(&'static str, bool)>>>;

/// An output pin that records its level (`None` until first driven) and, optionally,
/// appends `(name, level)` to a shared log so tests can check the order across pins.
#[derive(Debug, Clone, Default)]
pub struct FakeOutput {
    pub level: Rc<Cell<Option<bool>>>,
    pub log: Option<(&'static str, PinLog)>,
}

impl FakeOutput {
    pub fn logged(name: &'static str, log: &PinLog) -> Self {
        Self {
            level: Rc::default(),
            log: Some((name, log.clone())),
        }
    }

    pub fn get(&self) -> Option<bool> {
        self.level.get()
    }

    fn drive(&mut self, high: bool) {
        self.level.set(Some(high));
        if let Some((name, log)) = &self.log {
            log.borrow_mut().push((name, high));
        }
    }
}

impl embedded_hal::digital::ErrorType for FakeOutput {
    type Error = Infallible;
}

impl embedded_hal::digital::OutputPin for FakeOutput {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.drive(false);
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Infallible> {
        self.drive(true);
        Ok(())
    }
}
