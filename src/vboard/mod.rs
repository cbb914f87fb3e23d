//! The virtual lane board: the real firmware ([`firmware::board::Board`], with its lane
//! state machine, safety rules and reader drivers) running in a host thread against
//! simulated pins and readers, speaking the link protocol over a real pseudo-terminal.
//!
//! The edge agent opens the pty exactly as it would open the USB-serial adapter of a
//! physical board, so the demo and the system tests exercise the code that ships on the
//! board. A test or a script plays the lane: trucks [`arrive`](VirtualBoard::arrive) (the
//! presence loops go occupied, the readers start seeing the truck's tags and e-seals) and
//! [`leave`](VirtualBoard::leave), and [`Fault`]s break the link or a reader.
//!
//! Wiring follows `docs/hardware.md`: presence loops active low (the detector pulls the
//! input to ground), lamps active high, barrier "hold raised" active high.
//!
//! # Threads
//! The board runs in its own thread, polling every millisecond with a millisecond clock
//! from [`Instant`] (wrapped to `u32` like the board's). The handle talks to it through a
//! channel; what the thread drives (lamps, barrier) is read straight from the simulated
//! pins, and everything else from a snapshot it publishes after each poll. Dropping the
//! handle stops the thread and waits a bounded time for it.
//!
//! # Layout
//! - this module: [`VirtualBoard`] (the handle and the board thread), [`Truck`], [`Fault`].
//! - `pins`: [`SimPin`], a GPIO whose level is shared with the handle.
//! - `sim`: [`SimUhf`] and [`SimESeal`], byte-level reader simulators.
//! - `pty`: [`PtyLink`], the link UART on a pseudo-terminal, with the link faults.
//! - `script`: lane scripts ([`parse_script`], [`run_script`]) and [`run_board_cli`].

mod pins;
mod pty;
mod script;
mod sim;

use std::cell::RefCell;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use embedded_hal::digital::PinState;
use firmware::board::{Board, Peripherals};
use firmware::eseal::SealReader;
use firmware::outputs::{BarrierOutput, LaneLights};
use firmware::presence::{Debounced, Polarity};
use firmware::uhf::UhfReader;
use protocol::link::{Barrier, LaneCommand, Light, SealRead};
use protocol::schema::LaneId;

pub use pins::SimPin;
pub use pty::{FrameDirection, LinkCounters, LinkFrame, PtyLink, STALE_BYTES};
pub use script::{Script, ScriptError, Step, parse_script, run_board_cli, run_script};
pub use sim::{ReaderCounters, Rng, SimESeal, SimUhf, tag_notice};

use sim::Scene;

/// Presence-loop debounce of the virtual board, in the 50–200 ms range that suits loop
/// detectors (`docs/hardware.md`, Timing).
pub const LOOP_DEBOUNCE_MS: u32 = 50;

/// Period of the board thread's main loop.
const POLL_PERIOD: Duration = Duration::from_millis(1);

/// How often the slave queue is checked for stale bytes.
const STALE_CHECK: Duration = Duration::from_millis(100);

/// How long dropping a [`VirtualBoard`] waits for its thread.
const JOIN_WAIT: Duration = Duration::from_secs(2);

/// Control messages handled per main-loop pass at most.
const CONTROLS_PER_PASS: usize = 64;

/// How to build a virtual board.
#[derive(Debug, Clone)]
pub struct VirtualBoardConfig {
    /// The lane the board serves (a `LaneId`: letters, digits, `.`, `_`, `-`); names the
    /// stable link path.
    pub lane: String,
    /// Presence loops wired: 1 or 2.
    pub loops: usize,
    /// The firmware's configuration (`loops` is overridden by the field above).
    pub firmware: firmware::lane::Config,
    /// Seed for signal strengths and line noise, so a run repeats exactly.
    pub seed: u64,
}

impl Default for VirtualBoardConfig {
    fn default() -> Self {
        Self {
            lane: "L1".into(),
            loops: 2,
            firmware: firmware::lane::Config::default(),
            seed: 0,
        }
    }
}

/// A truck on the lane, as the readers see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Truck {
    /// EPC memory-bank contents (after the PC word) of every UHF tag on the truck: 96-bit
    /// SGTIN/GIAI/GRAI, a container tag… A Gen2 EPC is 1..=31 16-bit words; others cannot
    /// be sent and are counted in [`BoardSimStats::tags_unsendable`] (see [`Truck::check`]).
    pub tags: Vec<Vec<u8>>,
    /// Its ISO 18185 e-seals, as the e-seal reader reports them.
    pub eseals: Vec<SealRead>,
    /// How long it stays (informational; scripts use `wait`).
    pub dwell: Duration,
}

/// Why a [`Truck`] cannot be shown to the readers as it stands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TruckError {
    /// An EPC is not a whole number of 16-bit words from 1 to 31.
    #[error(
        "tag {index} has {len} EPC bytes; a Gen2 EPC is 2 to 62 bytes, an even number (EPC TDS 1.13 §9)"
    )]
    BadEpcLength {
        /// Position in [`Truck::tags`].
        index: usize,
        /// Its length.
        len: usize,
    },
}

impl Truck {
    /// Checks that every tag can be carried in a Gen2 tag notice.
    pub fn check(&self) -> Result<(), TruckError> {
        for (index, epc) in self.tags.iter().enumerate() {
            if sim::tag_notice(0, epc).is_none() {
                return Err(TruckError::BadEpcLength {
                    index,
                    len: epc.len(),
                });
            }
        }
        Ok(())
    }
}

/// Something to break.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Write these bytes to the agent, between two frames.
    Garbage(Vec<u8>),
    /// Swallow the next `n` frames the board sends (the board thinks they went out).
    DropFrames(u64),
    /// A reader ignores every command for a while: `uhf` the UHF module, else the e-seal
    /// reader.
    ReaderSilent {
        /// `true` for the UHF module, `false` for the e-seal reader.
        uhf: bool,
        /// How long, in milliseconds.
        for_ms: u64,
    },
    /// Hang up the link: close the pty, and after `for_ms` open a new one (whose path
    /// differs; [`VirtualBoard::tty_link`] follows it).
    Unplug {
        /// How long the link stays down, in milliseconds.
        for_ms: u64,
    },
    /// The board restarts (a reset, a power cycle, or another board swapped in) behind a
    /// link adapter that stays connected, like a USB-serial adapter powered by the gate
    /// box: the pty stays open. The firmware stops for `down_ms` with its outputs
    /// de-energised (lamps off, barrier lower request), then a new firmware instance starts
    /// with a new boot identifier, its clock reading `uptime_ms` (0 for a reset; a
    /// replacement board may have been running for a while), numbering its frames from 0.
    Restart {
        /// How long the board is dark, in milliseconds.
        down_ms: u64,
        /// The new board's uptime when it starts, in milliseconds.
        uptime_ms: u32,
    },
}

/// What the virtual board has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoardSimStats {
    /// Frames the firmware sent (including those a fault then dropped).
    pub frames_sent: u64,
    /// Frames the firmware received intact.
    pub frames_received: u64,
    /// Frames swallowed by [`Fault::DropFrames`].
    pub frames_dropped: u64,
    /// Lane commands received, each `seq` once (the firmware obeys each `seq` once).
    pub commands_obeyed: u64,
    /// Fault frames the firmware sent, each `seq` once.
    pub faults_reported: u64,
    /// Noise bytes written by [`Fault::Garbage`].
    pub garbage_bytes_sent: u64,
    /// Hang-ups carried out.
    pub unplugs: u64,
    /// Restarts carried out ([`Fault::Restart`]).
    pub restarts: u64,
    /// The boot identifier of the firmware running now.
    pub boot_id: u32,
    /// Link writes that failed (hung up, or the pty full).
    pub link_write_errors: u64,
    /// Link reads that failed.
    pub link_read_errors: u64,
    /// Times the slave queue was discarded because nobody read it.
    pub stale_discards: u64,
    /// The UHF module simulator.
    pub uhf: ReaderCounters,
    /// The e-seal reader simulator.
    pub eseal: ReaderCounters,
    /// Tags that could not be sent (see [`Truck::check`]).
    pub tags_unsendable: u64,
    /// The firmware considers the agent link up.
    pub link_up: bool,
    /// Presence bits the firmware last reported (bit n = loop n).
    pub presence: u8,
}

enum Control {
    Arrive(Truck),
    Leave,
    Inject(Fault),
    WatchFrames(Sender<LinkFrame>),
}

#[derive(Debug)]
struct Observed {
    tty_path: PathBuf,
    last_command: Option<LaneCommand>,
    stats: BoardSimStats,
    thread_error: Option<String>,
}

#[derive(Debug)]
struct Shared {
    stop: AtomicBool,
    loops: Vec<SimPin>,
    red: SimPin,
    amber: SimPin,
    green: SimPin,
    barrier: SimPin,
    link_path: PathBuf,
    observed: Mutex<Observed>,
}

impl Shared {
    fn observed(&self) -> std::sync::MutexGuard<'_, Observed> {
        self.observed.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running virtual board. Dropping it stops the board and removes its link path.
#[derive(Debug)]
pub struct VirtualBoard {
    lane: LaneId,
    shared: Arc<Shared>,
    control: Sender<Control>,
    thread: Option<JoinHandle<()>>,
    /// Holds the stable link path; removed on drop.
    _dir: tempfile::TempDir,
}

impl VirtualBoard {
    /// Open a pty, point the stable link path at it, and start the board thread.
    pub fn spawn(cfg: VirtualBoardConfig) -> anyhow::Result<VirtualBoard> {
        let lane = LaneId::parse(&cfg.lane).context("virtual board lane")?;
        if !(1..=2).contains(&cfg.loops) {
            bail!(
                "a virtual board has 1 or 2 presence loops, not {}",
                cfg.loops
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("aeogate-vboard-")
            .tempdir()
            .context("creating the directory for the link path")?;
        let link_path = dir.path().join(format!("lane-{lane}.tty"));
        let link = PtyLink::open().context("opening a pseudo-terminal for the agent link")?;
        let tty_path = link
            .path()
            .map(Path::to_path_buf)
            .context("the new pty has no slave path")?;
        point_link(&link_path, &tty_path).with_context(|| {
            format!("linking {} to {}", link_path.display(), tty_path.display())
        })?;

        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            // Pulled up: high is "no vehicle" on an active-low loop input.
            loops: (0..cfg.loops).map(|_| SimPin::new(true)).collect(),
            red: SimPin::default(),
            amber: SimPin::default(),
            green: SimPin::default(),
            barrier: SimPin::default(),
            link_path,
            observed: Mutex::new(Observed {
                tty_path,
                last_command: None,
                stats: BoardSimStats::default(),
                thread_error: None,
            }),
        });
        let (control, rx) = mpsc::channel();
        let thread_shared = Arc::clone(&shared);
        let loops = cfg.loops;
        let thread = thread::Builder::new()
            .name(format!("vboard-{lane}"))
            .spawn(move || match loops {
                1 => board_thread::<1>(cfg, link, &thread_shared, &rx),
                _ => board_thread::<2>(cfg, link, &thread_shared, &rx),
            })
            .context("starting the board thread")?;
        Ok(VirtualBoard {
            lane,
            shared,
            control,
            thread: Some(thread),
            _dir: dir,
        })
    }

    /// The lane this board serves.
    pub fn lane(&self) -> &LaneId {
        &self.lane
    }

    /// The pty slave the agent opens now (`/dev/pts/N`). Changes after
    /// [`Fault::Unplug`]; configure the agent with [`tty_link`](Self::tty_link) instead.
    pub fn tty_path(&self) -> PathBuf {
        self.shared.observed().tty_path.clone()
    }

    /// A stable path (a symlink in a temporary directory) that always points at the
    /// current pty, like a `/dev/serial/by-id/…` link; it is absent while unplugged.
    pub fn tty_link(&self) -> PathBuf {
        self.shared.link_path.clone()
    }

    /// A truck drives onto the lane: every loop goes occupied and the readers see its tags
    /// and e-seals. Replaces any truck already there.
    pub fn arrive(&self, truck: Truck) {
        self.send(Control::Arrive(truck));
    }

    /// The truck drives off: the loops clear and the readers see nothing.
    pub fn leave(&self) {
        self.send(Control::Leave);
    }

    /// Break something.
    pub fn inject(&self, fault: Fault) {
        self.send(Control::Inject(fault));
    }

    /// Every intact frame on the link from now on (both directions), each with the
    /// instant it was written into the pty or read from it, for latency measurements
    /// that start where a physical board's UART would (docs/benchmarks.md, figure 2).
    /// Keep reading the receiver: frames queue up in it until it is dropped.
    pub fn watch_frames(&self) -> Receiver<LinkFrame> {
        let (tx, rx) = mpsc::channel();
        self.send(Control::WatchFrames(tx));
        rx
    }

    /// The lamp lit now (`Off` if none; the firmware never lights two).
    pub fn lights(&self) -> Light {
        let s = &self.shared;
        if s.red.level() {
            Light::Red
        } else if s.amber.level() {
            Light::Amber
        } else if s.green.level() {
            Light::Green
        } else {
            Light::Off
        }
    }

    /// The barrier as its output is driven now (de-energised is lower).
    pub fn barrier(&self) -> Barrier {
        if self.shared.barrier.level() {
            Barrier::Raise
        } else {
            Barrier::Lower
        }
    }

    /// The last lane command the board received.
    pub fn last_command(&self) -> Option<LaneCommand> {
        self.shared.observed().last_command.clone()
    }

    /// Counters and state, as of the last pass of the main loop.
    pub fn stats(&self) -> BoardSimStats {
        self.shared.observed().stats.clone()
    }

    /// Why the board thread stopped on its own, if it did.
    pub fn thread_error(&self) -> Option<String> {
        self.shared.observed().thread_error.clone()
    }

    fn send(&self, control: Control) {
        // A board thread that has stopped has recorded why (`thread_error`).
        let _ = self.control.send(control);
    }
}

impl Drop for VirtualBoard {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        let Some(thread) = self.thread.take() else {
            return;
        };
        let deadline = Instant::now() + JOIN_WAIT;
        while !thread.is_finished() && Instant::now() < deadline {
            thread::sleep(POLL_PERIOD);
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
        // Otherwise the thread is left to end on its own; it holds nothing but its pty.
    }
}

/// Point the symlink `link` at `target`, replacing it atomically (a new link renamed over
/// the old one), so an agent opening `link` never finds it missing mid-change.
fn point_link(link: &Path, target: &Path) -> io::Result<()> {
    let fresh = link.with_extension("tty.new");
    match fs::remove_file(&fresh) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::os::unix::fs::symlink(target, &fresh)?;
    fs::rename(&fresh, link)
}

fn remove_link(link: &Path) {
    // Absent already is fine: the link is only there to be followed.
    let _ = fs::remove_file(link);
}

/// The board's millisecond clock: wraps every ~49.7 days like the firmware's `u32` time.
fn millis(start: Instant) -> u32 {
    (start.elapsed().as_millis() & u128::from(u32::MAX)) as u32
}

/// The board's clock: `base` at `epoch`, counting milliseconds like the firmware's `u32`.
#[derive(Debug, Clone, Copy)]
struct Clock {
    epoch: Instant,
    base: u32,
}

impl Clock {
    fn starting_at(base: u32) -> Self {
        Self {
            epoch: Instant::now(),
            base,
        }
    }

    fn now(&self) -> u32 {
        self.base.wrapping_add(millis(self.epoch))
    }
}

/// A firmware configuration for a new boot: `cfg` with a fresh boot identifier.
fn boot_config(cfg: &firmware::lane::Config) -> firmware::lane::Config {
    firmware::lane::Config {
        boot_id: rand::random(),
        ..cfg.clone()
    }
}

/// Takes the firmware down as a reset does: outputs de-energised, every driver's state
/// gone; returns the bare pins, readers and link for the next boot.
fn power_down<const N: usize>(board: SimBoard<N>) -> SimParts<N> {
    let io = board.release();
    let (red, amber, green) = io.lights.release();
    let barrier = io.barrier.release();
    for pin in [&red, &amber, &green, &barrier] {
        pin.set_level(false);
    }
    SimParts {
        link: io.link,
        uhf: io.uhf.release(),
        seal: io.seal.release(),
        loops: io.loops.map(Debounced::release),
        lights: (red, amber, green),
        barrier,
    }
}

/// What a board is built from, between boots.
struct SimParts<const N: usize> {
    link: PtyLink,
    uhf: SimUhf,
    seal: SimESeal,
    loops: [SimPin; N],
    lights: (SimPin, SimPin, SimPin),
    barrier: SimPin,
}

/// Starts the firmware on `parts`. Its clock ([`Clock`]) reads the board's uptime, so the
/// firmware started at 0.
fn boot<const N: usize>(parts: SimParts<N>, cfg: firmware::lane::Config) -> SimBoard<N> {
    let (red, amber, green) = parts.lights;
    let io = Peripherals {
        link: parts.link,
        uhf: UhfReader::new(parts.uhf),
        seal: SealReader::new(parts.seal),
        loops: parts
            .loops
            .map(|pin| Debounced::new(pin, Polarity::ActiveLow, LOOP_DEBOUNCE_MS)),
        lights: LaneLights::new(red, amber, green),
        barrier: BarrierOutput::new(parts.barrier, PinState::High),
    };
    Board::new(io, cfg, 0)
}

fn board_thread<const N: usize>(
    cfg: VirtualBoardConfig,
    link: PtyLink,
    shared: &Shared,
    control: &Receiver<Control>,
) {
    let mut clock = Clock::starting_at(0);
    let scene = Rc::new(RefCell::new(Scene::new(cfg.seed)));
    let parts = SimParts {
        link,
        uhf: sim::SimUhf::new(Rc::clone(&scene)),
        seal: sim::SimESeal::new(Rc::clone(&scene)),
        loops: std::array::from_fn(|i| shared.loops.get(i).cloned().unwrap_or_default()),
        lights: (
            shared.red.clone(),
            shared.amber.clone(),
            shared.green.clone(),
        ),
        barrier: shared.barrier.clone(),
    };
    let firmware_cfg = cfg.firmware.clone();
    let mut board = Some(boot(parts, boot_config(&firmware_cfg)));
    let mut dark: Option<(Instant, u32, SimParts<N>)> = None;
    let mut restarts = 0u64;
    let mut replug_at: Option<Instant> = None;
    let mut last_stale_check = Instant::now();

    while !shared.stop.load(Ordering::Acquire) {
        for _ in 0..CONTROLS_PER_PASS {
            let c = match control.try_recv() {
                Ok(c) => c,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            };
            match c {
                Control::Arrive(truck) => {
                    scene.borrow_mut().truck = Some(truck);
                    shared.loops.iter().for_each(|p| p.set_level(false));
                }
                Control::Leave => {
                    scene.borrow_mut().truck = None;
                    shared.loops.iter().for_each(|p| p.set_level(true));
                }
                Control::WatchFrames(tx) => {
                    if let Some(b) = board.as_mut() {
                        b.io_mut().link.watch_frames(tx);
                    } else if let Some((_, _, parts)) = dark.as_mut() {
                        parts.link.watch_frames(tx);
                    }
                }
                Control::Inject(Fault::Restart { down_ms, uptime_ms }) => {
                    if let Some(b) = board.take() {
                        dark = Some((after_ms(down_ms), uptime_ms, power_down(b)));
                    }
                }
                Control::Inject(fault) => {
                    let link = match (board.as_mut(), dark.as_mut()) {
                        (Some(b), _) => &mut b.io_mut().link,
                        (None, Some((_, _, parts))) => &mut parts.link,
                        (None, None) => continue,
                    };
                    if let Some(at) = inject(fault, link, &scene, shared) {
                        replug_at = Some(at);
                    }
                }
            }
        }
        if dark
            .as_ref()
            .is_some_and(|(until, _, _)| Instant::now() >= *until)
            && let Some((_, uptime_ms, parts)) = dark.take()
        {
            clock = Clock::starting_at(uptime_ms);
            board = Some(boot(parts, boot_config(&firmware_cfg)));
            restarts += 1;
        }
        let Some(b) = board.as_mut() else {
            thread::sleep(POLL_PERIOD);
            continue;
        };
        if replug_at.is_some_and(|t| Instant::now() >= t) {
            match b.io_mut().link.replug() {
                Ok(path) => {
                    replug_at = None;
                    if point_link(&shared.link_path, &path).is_err() {
                        shared.observed().thread_error =
                            Some(format!("could not re-point {}", shared.link_path.display()));
                    }
                    shared.observed().tty_path = path;
                }
                // Try again shortly; the link stays down meanwhile.
                Err(_) => replug_at = Some(Instant::now() + Duration::from_millis(100)),
            }
        }

        b.poll(clock.now());

        if last_stale_check.elapsed() >= STALE_CHECK {
            last_stale_check = Instant::now();
            b.io_mut().link.discard_stale();
        }
        publish(b, &scene, shared, restarts);
        thread::sleep(POLL_PERIOD);
    }
}

/// Carry out `fault`; returns when to replug if it was a hang-up.
fn inject(
    fault: Fault,
    link: &mut PtyLink,
    scene: &RefCell<Scene>,
    shared: &Shared,
) -> Option<Instant> {
    match fault {
        Fault::Garbage(bytes) => {
            // Nothing to write into while hung up; the noise is lost like on a bare wire.
            let _ = link.write_garbage(&bytes);
            None
        }
        Fault::DropFrames(n) => {
            link.drop_frames(n);
            None
        }
        Fault::ReaderSilent { uhf, for_ms } => {
            let until = Some(after_ms(for_ms));
            let mut scene = scene.borrow_mut();
            if uhf {
                scene.uhf_silent_until = until;
            } else {
                scene.seal_silent_until = until;
            }
            None
        }
        Fault::Unplug { for_ms } => {
            link.unplug();
            remove_link(&shared.link_path);
            Some(after_ms(for_ms))
        }
        // Carried out by the board thread itself (it replaces the firmware).
        Fault::Restart { .. } => None,
    }
}

/// `ms` from now; a span past what `Instant` can hold means "a year" (never, in practice).
fn after_ms(ms: u64) -> Instant {
    let now = Instant::now();
    now.checked_add(Duration::from_millis(ms))
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

type SimBoard<const N: usize> =
    Board<PtyLink, SimUhf, SimESeal, SimPin, SimPin, SimPin, SimPin, SimPin, N>;

fn publish<const N: usize>(
    board: &mut SimBoard<N>,
    scene: &RefCell<Scene>,
    shared: &Shared,
    restarts: u64,
) {
    let fw = board.stats();
    let boot_id = board.lane().config().boot_id;
    let link_up = board.lane().link_up();
    let presence = board.lane().presence();
    let link = &board.io_mut().link;
    let counters = link.counters().clone();
    let last_command = link.last_command().cloned();
    let scene = scene.borrow();
    let mut observed = shared.observed();
    if last_command.is_some() {
        observed.last_command = last_command;
    }
    observed.stats = BoardSimStats {
        frames_sent: u64::from(fw.frames_sent),
        frames_received: u64::from(fw.frames_received),
        frames_dropped: counters.frames_dropped,
        commands_obeyed: counters.commands_obeyed,
        faults_reported: counters.faults_reported,
        garbage_bytes_sent: counters.garbage_bytes_sent,
        unplugs: counters.unplugs,
        restarts,
        boot_id,
        link_write_errors: u64::from(fw.link_write_errors),
        link_read_errors: u64::from(fw.link_read_errors),
        stale_discards: counters.stale_discards,
        uhf: scene.uhf,
        eseal: scene.eseal,
        tags_unsendable: scene.tags_unsendable,
        link_up,
        presence,
    };
}
