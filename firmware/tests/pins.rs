//! Presence inputs and lane outputs against embedded-hal-mock pins.
#![allow(clippy::unwrap_used)]

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use common::FakeOutput;
use embedded_hal::digital::PinState;
use embedded_hal_mock::eh1::MockError;
use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction as T};
use firmware::outputs::{BarrierOutput, LampError, LaneLights};
use firmware::presence::{Debounced, Polarity};
use protocol::link::{Barrier, Light};

fn input(levels: &[State]) -> PinMock {
    let t: Vec<T> = levels.iter().map(|&s| T::get(s)).collect();
    PinMock::new(&t)
}

/// Sample at each time, collecting the reported changes; checks the mock.
fn run(levels: &[State], times: &[u32], polarity: Polarity, debounce: u32) -> Vec<(u32, bool)> {
    let pin = input(levels);
    let mut d = Debounced::new(pin, polarity, debounce);
    let mut out = vec![];
    for &t in times {
        if let Some(p) = d.sample(t).unwrap() {
            out.push((t, p));
        }
    }
    d.release().done();
    out
}

use State::{High, Low};

#[test]
fn first_level_counts_after_the_debounce_time() {
    assert_eq!(
        run(&[Low, Low, Low], &[0, 20, 50], Polarity::ActiveHigh, 50),
        [(50, false)]
    );
}

#[test]
fn state_is_unknown_until_settled() {
    let mut d = Debounced::new(input(&[High]), Polarity::ActiveHigh, 50);
    d.sample(0).unwrap();
    assert_eq!(d.state(), None);
    d.release().done();
}

#[test]
fn reports_presence_after_it_holds() {
    let levels = [Low, Low, High, High, High];
    assert_eq!(
        run(&levels, &[0, 10, 20, 40, 70], Polarity::ActiveHigh, 10),
        [(10, false), (40, true)]
    );
}

#[test]
fn ignores_bounce_shorter_than_debounce() {
    let levels = [Low, Low, High, Low, High, Low, Low];
    assert_eq!(
        run(
            &levels,
            &[0, 30, 31, 33, 35, 37, 60],
            Polarity::ActiveHigh,
            30
        ),
        [(30, false)]
    );
}

#[test]
fn active_low_input_reports_low_as_present() {
    assert_eq!(
        run(&[Low, Low], &[0, 5], Polarity::ActiveLow, 5),
        [(5, true)]
    );
}

#[test]
fn debounces_across_clock_wrap() {
    let levels = [High, High, High];
    assert_eq!(
        run(&levels, &[u32::MAX - 5, 2, 14], Polarity::ActiveHigh, 20),
        [(14, true)]
    );
}

#[test]
fn zero_debounce_reports_at_once() {
    assert_eq!(run(&[High], &[7], Polarity::ActiveHigh, 0), [(7, true)]);
}

#[test]
fn pin_error_is_returned() {
    let err = MockError::Io(std::io::ErrorKind::NotConnected);
    let pin = PinMock::new(&[T::get(High).with_error(err.clone())]);
    let mut d = Debounced::new(pin, Polarity::ActiveHigh, 0);
    assert_eq!(d.sample(0), Err(err));
    d.release().done();
}

fn out(states: &[State]) -> PinMock {
    let t: Vec<T> = states.iter().map(|&s| T::set(s)).collect();
    PinMock::new(&t)
}

/// Sets `light` on fresh lamps and checks each lamp (red, amber, green) was driven to
/// the given level.
fn check_lamps(light: Light, red: State, amber: State, green: State) {
    let mut lights = LaneLights::new(out(&[red]), out(&[amber]), out(&[green]));
    lights.set(light).unwrap();
    let (mut r, mut a, mut g) = lights.release();
    r.done();
    a.done();
    g.done();
}

#[test]
fn green_light_drives_only_the_green_lamp() {
    check_lamps(Light::Green, Low, Low, High);
}

#[test]
fn off_switches_every_lamp_off() {
    check_lamps(Light::Off, Low, Low, Low);
}

#[test]
fn changing_light_switches_the_old_lamp_off_first() {
    let log = Rc::new(RefCell::new(vec![]));
    let mut lights = LaneLights::new(
        FakeOutput::logged("red", &log),
        FakeOutput::logged("amber", &log),
        FakeOutput::logged("green", &log),
    );
    lights.set(Light::Red).unwrap();
    log.borrow_mut().clear();
    lights.set(Light::Amber).unwrap();
    assert_eq!(
        *log.borrow(),
        [("red", false), ("green", false), ("amber", true)]
    );
}

#[test]
fn lamp_error_names_the_lamp() {
    let err = MockError::Io(std::io::ErrorKind::Other);
    // Red is wanted, so amber is switched off first, and fails.
    let mut lights = LaneLights::new(
        out(&[]),
        PinMock::new(&[T::set(Low).with_error(err.clone())]),
        out(&[]),
    );
    assert_eq!(lights.set(Light::Red), Err(LampError::Amber(err)));
    let (mut r, mut a, mut g) = lights.release();
    r.done();
    a.done();
    g.done();
}

/// Raises then lowers a barrier whose pin raises at `raise`, checking the levels driven.
fn check_raise_then_lower(raise: PinState, levels: &[State]) {
    let mut barrier = BarrierOutput::new(out(levels), raise);
    barrier.set(Barrier::Raise).unwrap();
    barrier.set(Barrier::Lower).unwrap();
    barrier.release().done();
}

#[test]
fn barrier_raise_and_lower_drive_the_configured_levels() {
    check_raise_then_lower(PinState::High, &[High, Low]);
}

#[test]
fn barrier_with_active_low_raise_pin() {
    check_raise_then_lower(PinState::Low, &[Low, High]);
}
