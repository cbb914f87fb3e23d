//! aeogate lane I/O board on an STM32F411 "Black Pill" (STM32F411CEU6, 25 MHz crystal).
//!
//! Wires the `firmware` crate's [`Board`] to real peripherals using the reference pin
//! assignment of `docs/hardware.md`:
//!
//! | signal | pin | peripheral |
//! |---|---|---|
//! | link TX / RX | PA2 / PA3 | USART2 |
//! | UHF TX / RX | PA9 / PA10 | USART1 |
//! | e-seal TX / RX | PA11 / PA12 | USART6 |
//! | loop 0 / loop 1 | PB0 / PB1 | input, pull-up, active low |
//! | red / amber / green | PB12 / PB13 / PB14 | push-pull output |
//! | barrier raise | PB15 | push-pull output, high = hold raised |
//! | status LED | PC13 | output, active low |
//!
//! # Layout (one file)
//! - `RxChannel`: receive side of a USART. The RXNE interrupt moves each byte into a
//!   ring buffer, so no byte is lost while the main loop is busy (a byte lasts 87 µs at
//!   115200 bit/s; sending one 80-byte link frame takes 7 ms).
//! - `Uart`: a USART as the embedded-io 0.7 `Read + ReadReady + Write` the drivers take.
//!   The HAL implements embedded-io 0.6, a different trait, so this adapts the HAL's
//!   embedded-hal-nb 1.0 word interface instead.
//! - A millisecond clock from SysTick, the independent watchdog, and the main loop, which
//!   calls [`Board::poll`] at least once a millisecond.
//! - `boot_id`: a new boot identifier at every start (`docs/hardware.md`, "Boot
//!   announcement").
#![no_std]
#![no_main]

use core::cell::RefCell;
use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::NVIC;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception};
use critical_section::Mutex;
use embedded_hal::digital::PinState;
use embedded_io::{ErrorKind, ErrorType, Read, ReadReady, Write};
use firmware::board::{Board, Peripherals};
use firmware::eseal::SealReader;
use firmware::lane::Config;
use firmware::outputs::{BarrierOutput, LaneLights};
use firmware::presence::{Debounced, Polarity};
use firmware::uhf::UhfReader;
use heapless::Deque;
use panic_halt as _;
use stm32f4xx_hal::adc::config::{AdcConfig, SampleTime};
use stm32f4xx_hal::adc::{Adc, Temperature};
use stm32f4xx_hal::pac::{self, Interrupt, USART1, USART2, USART6, interrupt};
use stm32f4xx_hal::prelude::*;
use stm32f4xx_hal::rcc::Config as ClockConfig;
use stm32f4xx_hal::serial::{self, Instance, Rx, RxListen, Tx};
use stm32f4xx_hal::signature::Uid;
use stm32f4xx_hal::watchdog::IndependentWatchdog;

/// Bytes buffered per USART between interrupt and main loop: at 115200 bit/s, 256 bytes
/// are 22 ms of continuous traffic, far more than the main loop ever lags.
const RX_BUFFER: usize = 256;

/// All three UARTs (DOMAIN: the UHF module's default; the link and e-seal reader match).
const BAUD: u32 = 115_200;

/// Board identity reported in heartbeats. One firmware image per lane board; set per
/// installation.
const BOARD_ID: u16 = 1;

/// Presence-loop debounce: within the 50–200 ms that suits loop detectors.
const LOOP_DEBOUNCE_MS: u32 = 100;

/// The independent watchdog resets a main loop stuck this long. A reset de-energises
/// the barrier output (lower request); the barrier controller's own loop interlock holds
/// the arm over a vehicle, as for a power cut (`docs/hardware.md`, Wiring).
const WATCHDOG_MS: u32 = 500;

/// Internal temperature-sensor conversions mixed into the boot identifier.
const BOOT_ID_SAMPLES: usize = 64;

/// Milliseconds since start, counted by the SysTick interrupt; wraps after ~49.7 days,
/// which the firmware's wrapping time arithmetic allows.
static MILLIS: AtomicU32 = AtomicU32::new(0);

/// Receive side of one USART: the HAL's `Rx`, owned by the interrupt once installed, and
/// the bytes it has received.
struct RxChannel<U: Instance> {
    rx: Mutex<RefCell<Option<Rx<U>>>>,
    bytes: Mutex<RefCell<Deque<u8, RX_BUFFER>>>,
    /// Bytes lost: buffer full, or overrun/framing/noise/parity errors.
    lost: AtomicU32,
}

impl<U: Instance> RxChannel<U> {
    const fn new() -> Self {
        Self {
            rx: Mutex::new(RefCell::new(None)),
            bytes: Mutex::new(RefCell::new(Deque::new())),
            lost: AtomicU32::new(0),
        }
    }

    /// Hand `rx` to the interrupt and start listening for received bytes.
    fn install(&self, mut rx: Rx<U>, irq: Interrupt) {
        rx.listen();
        critical_section::with(|cs| *self.rx.borrow_ref_mut(cs) = Some(rx));
        // SAFETY: unmasking can break a critical section that relies on the interrupt
        // being masked; none does here (the handler and the main loop share state only
        // through `critical_section::Mutex`), and the handler's `Rx` is installed above.
        unsafe { NVIC::unmask(irq) };
    }

    /// Body of the USART interrupt: move what was received into the buffer. Reading the
    /// data register clears RXNE and any error flag, so the interrupt does not re-fire.
    fn on_interrupt(&self) {
        critical_section::with(|cs| {
            let mut rx = self.rx.borrow_ref_mut(cs);
            let Some(rx) = rx.as_mut() else {
                return;
            };
            let mut bytes = self.bytes.borrow_ref_mut(cs);
            // The data register holds one byte; a few passes cover an error plus a byte.
            for _ in 0..4 {
                match embedded_hal_nb::serial::Read::read(rx) {
                    Ok(b) => {
                        if bytes.push_back(b).is_err() {
                            self.lost.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(nb::Error::WouldBlock) => break,
                    Err(nb::Error::Other(_)) => {
                        self.lost.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }

    fn is_empty(&self) -> bool {
        critical_section::with(|cs| self.bytes.borrow_ref(cs).is_empty())
    }

    /// Move buffered bytes into `out`; returns how many.
    fn take(&self, out: &mut [u8]) -> usize {
        critical_section::with(|cs| {
            let mut bytes = self.bytes.borrow_ref_mut(cs);
            let mut n = 0;
            for slot in out.iter_mut() {
                let Some(b) = bytes.pop_front() else { break };
                *slot = b;
                n += 1;
            }
            n
        })
    }
}

static LINK_RX: RxChannel<USART2> = RxChannel::new();
static UHF_RX: RxChannel<USART1> = RxChannel::new();
static SEAL_RX: RxChannel<USART6> = RxChannel::new();

#[interrupt]
fn USART2() {
    LINK_RX.on_interrupt();
}

#[interrupt]
fn USART1() {
    UHF_RX.on_interrupt();
}

#[interrupt]
fn USART6() {
    SEAL_RX.on_interrupt();
}

#[exception]
fn SysTick() {
    MILLIS.fetch_add(1, Ordering::Relaxed);
}

/// A USART as an embedded-io 0.7 byte stream: interrupt-fed receive, blocking transmit.
struct Uart<U: Instance + 'static> {
    tx: Tx<U>,
    rx: &'static RxChannel<U>,
}

impl<U: Instance> ErrorType for Uart<U> {
    type Error = ErrorKind;
}

impl<U: Instance> ReadReady for Uart<U> {
    fn read_ready(&mut self) -> Result<bool, ErrorKind> {
        Ok(!self.rx.is_empty())
    }
}

impl<U: Instance> Read for Uart<U> {
    /// Blocks until at least one byte is there, as embedded-io requires; the drivers only
    /// read after `read_ready`, so in practice it returns at once.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let n = self.rx.take(buf);
            if n > 0 {
                return Ok(n);
            }
            cortex_m::asm::wfi();
        }
    }
}

impl<U: Instance> Write for Uart<U>
where
    Tx<U>: embedded_hal_nb::serial::Write<u8>,
{
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        for &b in buf {
            nb::block!(embedded_hal_nb::serial::Write::write(&mut self.tx, b))
                .map_err(|_| ErrorKind::Other)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), ErrorKind> {
        nb::block!(embedded_hal_nb::serial::Write::flush(&mut self.tx))
            .map_err(|_| ErrorKind::Other)
    }
}

/// A boot identifier: CRC-32C over the chip's 96-bit unique ID (so a replacement board
/// differs) and the raw readings of the internal temperature sensor taken at the shortest
/// sample time (3 cycles), whose low bits carry conversion noise (so a reset or a power cycle
/// of the same board differs). The F411 has no hardware random generator. The agent also
/// treats a heartbeat uptime that went back as a restart, which covers the rare repeat.
fn boot_id(adc1: pac::ADC1, rcc: &mut stm32f4xx_hal::rcc::Rcc) -> u32 {
    let mut adc = Adc::new(adc1, true, AdcConfig::default(), rcc);
    adc.enable_temperature_and_vref();
    let mut digest = protocol::link::LINK_CRC.digest();
    let uid = Uid::get();
    digest.update(&uid.x().to_le_bytes());
    digest.update(&uid.y().to_le_bytes());
    digest.update(&[uid.waf_num()]);
    digest.update(uid.lot_num().as_bytes());
    for _ in 0..BOOT_ID_SAMPLES {
        let sample = adc.convert(&Temperature, SampleTime::Cycles_3);
        digest.update(&sample.to_le_bytes());
    }
    adc.disable_temperature_and_vref();
    digest.finalize()
}

/// Start-up cannot go on without these; the watchdog is not yet running, so a board that
/// fails here halts with its outputs de-energised (lamps off, barrier lower request).
fn halt() -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}

#[entry]
fn main() -> ! {
    let (Some(dp), Some(cp)) = (pac::Peripherals::take(), cortex_m::Peripherals::take()) else {
        halt()
    };
    // 25 MHz crystal on the Black Pill; 96 MHz core (the F411 allows 100).
    let mut rcc = dp.RCC.freeze(ClockConfig::hse(25.MHz()).sysclk(96.MHz()));

    let gpioa = dp.GPIOA.split(&mut rcc);
    let gpiob = dp.GPIOB.split(&mut rcc);
    let gpioc = dp.GPIOC.split(&mut rcc);

    // Outputs first, de-energised: lamps off, barrier asked to lower.
    let red = gpiob.pb12.into_push_pull_output();
    let amber = gpiob.pb13.into_push_pull_output();
    let green = gpiob.pb14.into_push_pull_output();
    let barrier = gpiob.pb15.into_push_pull_output();
    let mut status_led = gpioc
        .pc13
        .into_push_pull_output_in_state(stm32f4xx_hal::gpio::PinState::High);

    let serial_cfg = serial::config::Config::default().baudrate(BAUD.bps());
    let Ok(link) = dp
        .USART2
        .serial((gpioa.pa2, gpioa.pa3), serial_cfg, &mut rcc)
    else {
        halt()
    };
    let Ok(uhf) = dp
        .USART1
        .serial((gpioa.pa9, gpioa.pa10), serial_cfg, &mut rcc)
    else {
        halt()
    };
    let Ok(seal) = dp
        .USART6
        .serial((gpioa.pa11, gpioa.pa12), serial_cfg, &mut rcc)
    else {
        halt()
    };
    let (link_tx, link_rx) = link.split();
    let (uhf_tx, uhf_rx) = uhf.split();
    let (seal_tx, seal_rx) = seal.split();
    LINK_RX.install(link_rx, Interrupt::USART2);
    UHF_RX.install(uhf_rx, Interrupt::USART1);
    SEAL_RX.install(seal_rx, Interrupt::USART6);

    // SysTick at 1 kHz from the core clock.
    let mut syst = cp.SYST;
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(rcc.clocks.sysclk().raw() / 1_000 - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();

    let io = Peripherals {
        link: Uart {
            tx: link_tx,
            rx: &LINK_RX,
        },
        uhf: UhfReader::new(Uart {
            tx: uhf_tx,
            rx: &UHF_RX,
        }),
        seal: SealReader::new(Uart {
            tx: seal_tx,
            rx: &SEAL_RX,
        }),
        loops: [
            Debounced::new(
                gpiob.pb0.into_pull_up_input().erase(),
                Polarity::ActiveLow,
                LOOP_DEBOUNCE_MS,
            ),
            Debounced::new(
                gpiob.pb1.into_pull_up_input().erase(),
                Polarity::ActiveLow,
                LOOP_DEBOUNCE_MS,
            ),
        ],
        lights: LaneLights::new(red, amber, green),
        barrier: BarrierOutput::new(barrier, PinState::High),
    };
    let cfg = Config {
        board_id: BOARD_ID,
        boot_id: boot_id(dp.ADC1, &mut rcc),
        ..Config::default()
    };
    let mut board = Board::new(io, cfg, MILLIS.load(Ordering::Relaxed));

    let mut watchdog = IndependentWatchdog::new(dp.IWDG);
    watchdog.start(WATCHDOG_MS.millis());

    let mut led_toggled_ms = 0u32;
    loop {
        let now = MILLIS.load(Ordering::Relaxed);
        board.poll(now);
        watchdog.feed();

        // Status LED: slow blink with the agent link up, fast blink without.
        let period = if board.lane().link_up() { 500 } else { 100 };
        if firmware::elapsed(now, led_toggled_ms) >= period {
            led_toggled_ms = now;
            status_led.toggle();
        }
        // Sleep until the next SysTick or a received byte.
        cortex_m::asm::wfi();
    }
}
