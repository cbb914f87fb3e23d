//! Lane light and barrier outputs.
//!
//! Each output pin drives a relay or a solid-state switch. The lane light has one pin per
//! lamp; at most one lamp is on, and a change switches the old lamp off before the new one
//! comes on, so two aspects are never shown together. The barrier has one "raise" pin that
//! the barrier controller reads as "hold the arm up": de-energised means lower, so a board
//! that loses power or resets asks for the lane closed. (The barrier controller's own
//! loop safety still applies; the lane state machine never *asks* to lower onto a vehicle.)

use embedded_hal::digital::{OutputPin, PinState};
use protocol::link::{Barrier, Light};

/// Three lamps of the lane light.
#[derive(Debug)]
pub struct LaneLights<R, A, G> {
    red: R,
    amber: A,
    green: G,
}

/// An error from one of the lamp pins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LampError<R, A, G> {
    /// The red lamp's pin.
    Red(R),
    /// The amber lamp's pin.
    Amber(A),
    /// The green lamp's pin.
    Green(G),
}

/// The error of [`LaneLights::set`] for these pin types.
pub type LightsError<R, A, G> = LampError<
    <R as embedded_hal::digital::ErrorType>::Error,
    <A as embedded_hal::digital::ErrorType>::Error,
    <G as embedded_hal::digital::ErrorType>::Error,
>;

impl<R: OutputPin, A: OutputPin, G: OutputPin> LaneLights<R, A, G> {
    /// Lamps on active-high pins. Call [`set`](Self::set) once to put them in a known state.
    pub fn new(red: R, amber: A, green: G) -> Self {
        Self { red, amber, green }
    }

    /// Give the pins back.
    pub fn release(self) -> (R, A, G) {
        (self.red, self.amber, self.green)
    }

    /// Show `light`: every other lamp off first, then the lamp on.
    pub fn set(&mut self, light: Light) -> Result<(), LightsError<R, A, G>> {
        let (r, a, g) = match light {
            Light::Off => (false, false, false),
            Light::Red => (true, false, false),
            Light::Amber => (false, true, false),
            Light::Green => (false, false, true),
        };
        // Offs before the on.
        if !r {
            self.red.set_low().map_err(LampError::Red)?;
        }
        if !a {
            self.amber.set_low().map_err(LampError::Amber)?;
        }
        if !g {
            self.green.set_low().map_err(LampError::Green)?;
        }
        if r {
            self.red.set_high().map_err(LampError::Red)?;
        }
        if a {
            self.amber.set_high().map_err(LampError::Amber)?;
        }
        if g {
            self.green.set_high().map_err(LampError::Green)?;
        }
        Ok(())
    }
}

/// The barrier's "raise" output.
#[derive(Debug)]
pub struct BarrierOutput<P> {
    pin: P,
    raise_level: PinState,
}

impl<P: OutputPin> BarrierOutput<P> {
    /// A barrier raised by driving `pin` to `raise_level` and lowered by the other level.
    pub fn new(pin: P, raise_level: PinState) -> Self {
        Self { pin, raise_level }
    }

    /// Give the pin back.
    pub fn release(self) -> P {
        self.pin
    }

    /// Drive the barrier. The caller (the lane state machine) decides whether lowering is
    /// safe; this only sets the pin.
    pub fn set(&mut self, barrier: Barrier) -> Result<(), P::Error> {
        let level = match barrier {
            Barrier::Raise => self.raise_level,
            Barrier::Lower => !self.raise_level,
        };
        self.pin.set_state(level)
    }
}
