//! Simulated GPIO: a pin whose level lives in a shared atomic, so the virtual board's
//! thread drives it through the real firmware drivers while the owner of the
//! [`VirtualBoard`](super::VirtualBoard) handle watches (outputs) or sets (presence loops)
//! it from another thread.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use embedded_hal::digital::{ErrorType, InputPin, OutputPin};

/// One pin. Clones share the level. Reads and writes never fail, like a healthy GPIO.
#[derive(Debug, Clone, Default)]
pub struct SimPin(Arc<AtomicBool>);

impl SimPin {
    /// A pin at `high`.
    pub fn new(high: bool) -> Self {
        Self(Arc::new(AtomicBool::new(high)))
    }

    /// The level now.
    pub fn level(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Drive the level (the outside world acting on an input).
    pub fn set_level(&self, high: bool) {
        self.0.store(high, Ordering::Release);
    }
}

impl ErrorType for SimPin {
    type Error = Infallible;
}

impl InputPin for SimPin {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        Ok(self.level())
    }

    fn is_low(&mut self) -> Result<bool, Infallible> {
        Ok(!self.level())
    }
}

impl OutputPin for SimPin {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.set_level(false);
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Infallible> {
        self.set_level(true);
        Ok(())
    }
}
