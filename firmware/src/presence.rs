//! Debounced vehicle-presence inputs.
//!
//! An inductive loop detector signals "vehicle present" on a relay or open-collector
//! output, which contact bounce and electrical noise from the lane make chatter. A level
//! counts only after it has been read unchanged for the debounce time; until the first
//! level has settled the state is unknown (`None`), and the lane treats unknown as
//! occupied.

use embedded_hal::digital::InputPin;

use crate::elapsed;

/// Which pin level means "vehicle present".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polarity {
    /// High = present.
    ActiveHigh,
    /// Low = present (typical for an open-collector detector output with a pull-up).
    ActiveLow,
}

/// A presence loop input with a debounce time, sampled from the main loop.
#[derive(Debug)]
pub struct Debounced<P> {
    pin: P,
    polarity: Polarity,
    debounce_ms: u32,
    /// Last level read, and since when it has been read unchanged.
    candidate: Option<(bool, u32)>,
    stable: Option<bool>,
}

impl<P: InputPin> Debounced<P> {
    /// A loop on `pin` whose level must hold `debounce_ms` to count.
    pub fn new(pin: P, polarity: Polarity, debounce_ms: u32) -> Self {
        Self {
            pin,
            polarity,
            debounce_ms,
            candidate: None,
            stable: None,
        }
    }

    /// Give the pin back.
    pub fn release(self) -> P {
        self.pin
    }

    /// Debounced state: `Some(true)` vehicle present, `None` not settled yet.
    pub fn state(&self) -> Option<bool> {
        self.stable
    }

    /// Read the pin. Returns `Some(present)` when the debounced state changes (including
    /// when it first settles).
    pub fn sample(&mut self, now_ms: u32) -> Result<Option<bool>, P::Error> {
        let high = self.pin.is_high()?;
        let present = match self.polarity {
            Polarity::ActiveHigh => high,
            Polarity::ActiveLow => !high,
        };
        let since = match self.candidate {
            Some((level, since)) if level == present => since,
            _ => {
                self.candidate = Some((present, now_ms));
                now_ms
            }
        };
        if self.stable != Some(present) && elapsed(now_ms, since) >= self.debounce_ms {
            self.stable = Some(present);
            return Ok(Some(present));
        }
        Ok(None)
    }
}
