//! Trusted time: how far this gate's clock is from central's (docs/clock.md).
//!
//! Every request the agent makes to central (event batches, heartbeats, registry polls)
//! is a clock sample. Central stamps each answer with `X-Aeogate-Time: t2, t3` (when it
//! received the request and when it answered, RFC 3339, its own clock); the agent notes
//! t1 (request sent) and t4 (answer received) on its own clock. As in NTP (RFC 5905
//! §8), the agent's offset from central is `((t1 - t2) + (t4 - t3)) / 2` (positive: the
//! gate is ahead) and the round-trip delay `(t4 - t1) - (t3 - t2)`; the true offset lies
//! within half the delay of the estimate. Of the last [`SAMPLES`] samples the one with
//! the least delay is used (NTP's clock filter: the shortest round trip is the least
//! distorted by queueing).
//!
//! An offset beyond `clock.max_offset` makes the clock untrusted: decisions get
//! `CLOCK_UNTRUSTED` and never FAST, the console shows a banner, heartbeats carry the
//! offset. An out-of-bound measurement is kept on disk beside the store, so a restart
//! does not forget it: the clock stays untrusted until central measures it in bound
//! again. A gate that has not measured its clock since it started (no central configured,
//! or central unreachable) and has no out-of-bound measurement on record has nothing to
//! go by; its clock is then trusted as the host keeps it, and the host's own
//! synchronisation state (kernel `adjtimex`) is reported beside it.
//!
//! [`ClockFilter`] is the sans-IO core (samples in, state out); [`Clock`] is the shell
//! that reads the clock, the kernel and the file, and publishes the metrics.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use protocol::schema::ClockReport;
use serde::{Deserialize, Serialize};

pub use protocol::schema::TIME_HEADER;

/// How many recent samples the filter keeps (NTP's clock filter keeps eight).
pub const SAMPLES: usize = 8;

/// One exchange with central, measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// Agent clock minus central clock: positive when the gate is ahead.
    pub offset: SignedDuration,
    /// Round trip minus central's processing time (never negative).
    pub delay: SignedDuration,
    /// When it was taken (agent clock, t4).
    pub at: Timestamp,
}

impl Sample {
    /// The sample of an exchange: `t1` request sent and `t4` answer received (agent
    /// clock), `t2` request received and `t3` answer sent (central's clock).
    #[must_use]
    pub fn from_times(t1: Timestamp, t2: Timestamp, t3: Timestamp, t4: Timestamp) -> Self {
        let out = t1.duration_since(t2); // t1 - t2
        let back = t4.duration_since(t3); // t4 - t3
        let offset = (out + back) / 2;
        let delay = (t4.duration_since(t1) - t3.duration_since(t2)).max(SignedDuration::ZERO);
        Self {
            offset,
            delay,
            at: t4,
        }
    }
}

/// Parses central's `X-Aeogate-Time` value: `"<t2>, <t3>"`, two RFC 3339 timestamps.
///
/// # Errors
/// A text saying what is wrong (missing part, unparsable time, t3 before t2).
pub fn parse_time_header(value: &str) -> Result<(Timestamp, Timestamp), String> {
    let (a, b) = value
        .split_once(',')
        .ok_or_else(|| format!("{TIME_HEADER} {value:?}: expected \"<received>, <sent>\""))?;
    let t2: Timestamp = a
        .trim()
        .parse()
        .map_err(|e| format!("{TIME_HEADER} receive time {a:?}: {e}"))?;
    let t3: Timestamp = b
        .trim()
        .parse()
        .map_err(|e| format!("{TIME_HEADER} send time {b:?}: {e}"))?;
    if t3 < t2 {
        return Err(format!("{TIME_HEADER}: sent {t3} before received {t2}"));
    }
    Ok((t2, t3))
}

/// The header value for a request received at `t2` and answered at `t3`.
#[must_use]
pub fn time_header_value(t2: Timestamp, t3: Timestamp) -> String {
    format!("{t2}, {t3}")
}

/// What the host's kernel says about its clock (`adjtimex`, read only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSync {
    /// The kernel is told the clock is synchronised (`STA_UNSYNC` clear: an NTP daemon
    /// such as chronyd or systemd-timesyncd disciplines it).
    pub synced: bool,
    /// The kernel's maximum error estimate.
    pub max_error: Duration,
}

/// Where the clock's trust comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// Measured against central in this run.
    Measured(Sample),
    /// Measured out of bound by an earlier run, not measured since.
    Carried(Sample),
    /// Never measured: no central, or not reached yet.
    Unmeasured,
}

/// The clock's state as decisions, the console and heartbeats see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockView {
    pub basis: Basis,
    /// Whether FAST may be granted.
    pub trusted: bool,
    pub max_offset: Duration,
    /// `None`: the host does not say (not Linux, or the call failed).
    pub host: Option<HostSync>,
}

impl ClockView {
    /// The sample the state rests on, if any.
    #[must_use]
    pub fn sample(&self) -> Option<Sample> {
        match self.basis {
            Basis::Measured(s) | Basis::Carried(s) => Some(s),
            Basis::Unmeasured => None,
        }
    }

    /// The offset (agent minus central), if measured.
    #[must_use]
    pub fn offset(&self) -> Option<SignedDuration> {
        self.sample().map(|s| s.offset)
    }

    /// What goes in a heartbeat.
    #[must_use]
    pub fn report(&self) -> ClockReport {
        let s = self.sample();
        ClockReport {
            offset_ms: s.map(|s| millis(s.offset)),
            delay_ms: s.map(|s| millis(s.delay)),
            trusted: self.trusted,
            host_synced: self.host.map(|h| h.synced),
            max_offset_ms: i64::try_from(self.max_offset.as_millis()).unwrap_or(i64::MAX),
            measured_at: s.map(|s| s.at),
        }
    }
}

fn millis(d: SignedDuration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(if d.is_negative() { i64::MIN } else { i64::MAX })
}

/// Whether `offset` is within `bound` either way.
fn within(offset: SignedDuration, bound: Duration) -> bool {
    offset.unsigned_abs() <= bound
}

/// The sans-IO clock filter: the last [`SAMPLES`] samples, the bound, and an
/// out-of-bound sample carried over from an earlier run.
#[derive(Debug, Clone)]
pub struct ClockFilter {
    samples: VecDeque<Sample>,
    max_offset: Duration,
    carried: Option<Sample>,
}

impl ClockFilter {
    #[must_use]
    pub fn new(max_offset: Duration) -> Self {
        Self {
            samples: VecDeque::with_capacity(SAMPLES),
            max_offset,
            carried: None,
        }
    }

    /// Starts untrusted from an out-of-bound sample of an earlier run (kept until a
    /// new sample arrives). A carried sample within the bound is ignored.
    #[must_use]
    pub fn carrying(mut self, sample: Sample) -> Self {
        if !within(sample.offset, self.max_offset) {
            self.carried = Some(sample);
        }
        self
    }

    /// Changes the bound (a live reload of `clock.max_offset`); the kept samples are
    /// judged against the new bound from now on.
    pub fn set_max_offset(&mut self, max_offset: Duration) {
        self.max_offset = max_offset;
    }

    /// Adds a sample (the oldest goes when [`SAMPLES`] are kept).
    pub fn add(&mut self, sample: Sample) {
        if self.samples.len() == SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
        self.carried = None;
    }

    /// The kept sample with the least delay (the newest of equals).
    #[must_use]
    pub fn best(&self) -> Option<Sample> {
        self.samples.iter().rev().min_by_key(|s| s.delay).copied()
    }

    /// The state, given what the host says.
    #[must_use]
    pub fn view(&self, host: Option<HostSync>) -> ClockView {
        let basis = match (self.best(), self.carried) {
            (Some(s), _) => Basis::Measured(s),
            (None, Some(s)) => Basis::Carried(s),
            (None, None) => Basis::Unmeasured,
        };
        let trusted = match basis {
            Basis::Measured(s) | Basis::Carried(s) => within(s.offset, self.max_offset),
            Basis::Unmeasured => true,
        };
        ClockView {
            basis,
            trusted,
            max_offset: self.max_offset,
            host,
        }
    }
}

/// Reads the kernel's clock synchronisation state. `None` where it cannot be read.
///
/// The one `unsafe` call of the agent: no maintained crate wraps `adjtimex(2)`.
#[must_use]
#[allow(unsafe_code)]
pub fn host_sync() -> Option<HostSync> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `timex` is plain data; with `modes = 0` adjtimex only reads the state
        // into it (no privilege needed).
        let mut tx: libc::timex = unsafe { std::mem::zeroed() };
        let state = unsafe { libc::adjtimex(&mut tx) };
        if state < 0 {
            return None;
        }
        let synced = tx.status & libc::STA_UNSYNC == 0 && state != libc::TIME_ERROR;
        Some(HostSync {
            synced,
            max_error: Duration::from_micros(u64::try_from(tx.maxerror).unwrap_or(0)),
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// The clock shell: the filter behind a lock, the file that carries an out-of-bound
/// measurement over a restart, and the metrics.
#[derive(Debug)]
pub struct Clock {
    filter: Mutex<ClockFilter>,
    file: Option<PathBuf>,
}

impl Clock {
    /// A clock with `max_offset`, remembering out-of-bound measurements in `file`
    /// (`None`: in memory only). An unreadable file is logged and ignored.
    #[must_use]
    pub fn new(max_offset: Duration, file: Option<PathBuf>) -> Self {
        let mut filter = ClockFilter::new(max_offset);
        if let Some(path) = &file
            && let Some(s) = read_carried(path)
        {
            filter = filter.carrying(s);
            if !within(s.offset, max_offset) {
                tracing::warn!(offset_ms = millis(s.offset), measured_at = %s.at, "clock was out of bound when last measured; untrusted until central measures it again");
            }
        }
        let clock = Self {
            filter: Mutex::new(filter),
            file,
        };
        clock.publish(&clock.view());
        clock
    }

    /// The file beside the store that carries an out-of-bound measurement.
    #[must_use]
    pub fn file_beside(store: &Path) -> PathBuf {
        let mut name = store.file_name().unwrap_or_default().to_os_string();
        name.push(".clock.json");
        store.with_file_name(name)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClockFilter> {
        self.filter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies `change` to the filter; the views before and after it.
    fn change(&self, change: impl FnOnce(&mut ClockFilter)) -> (ClockView, ClockView) {
        let mut f = self.lock();
        let before = f.view(None);
        change(&mut f);
        (before, f.view(None))
    }

    /// The current state.
    #[must_use]
    pub fn view(&self) -> ClockView {
        self.lock().view(host_sync())
    }

    /// Notes one exchange: `t1` before sending, `t4` on the answer, and the answer's
    /// headers. An answer without the header (an older central, a proxy's error page)
    /// is no sample.
    pub fn observe(&self, t1: Timestamp, headers: &reqwest::header::HeaderMap, t4: Timestamp) {
        let Some(value) = headers.get(TIME_HEADER) else {
            return;
        };
        let parsed = value
            .to_str()
            .map_err(|e| e.to_string())
            .and_then(parse_time_header);
        match parsed {
            Ok((t2, t3)) => self.add(Sample::from_times(t1, t2, t3, t4)),
            Err(e) => tracing::debug!(error = %e, "central's time stamp not understood"),
        }
    }

    /// Adds a sample; logs and records a change of trust.
    pub fn add(&self, sample: Sample) {
        let (before, after) = self.change(|f| f.add(sample));
        if before.trusted != after.trusted || before.basis == Basis::Unmeasured {
            let offset_ms = after.offset().map(millis);
            if after.trusted {
                tracing::info!(?offset_ms, "clock measured against central: within bound");
            } else {
                tracing::warn!(
                    ?offset_ms,
                    max_offset = ?after.max_offset,
                    "clock off from central beyond the bound: no FAST until corrected"
                );
            }
            self.remember(&after);
        }
        self.publish(&after);
    }

    /// Applies a new `clock.max_offset` (live reload): trust is judged against it at once;
    /// a change of trust is logged and remembered like one a sample makes.
    pub fn set_max_offset(&self, max_offset: Duration) {
        let (before, after) = self.change(|f| f.set_max_offset(max_offset));
        if before.trusted != after.trusted {
            tracing::warn!(
                offset_ms = ?after.offset().map(millis),
                ?max_offset,
                trusted = after.trusted,
                "clock bound changed by a reload: trust changed"
            );
            self.remember(&after);
        }
        self.publish(&after);
    }

    /// Writes (untrusted) or removes (trusted) the carried measurement.
    fn remember(&self, view: &ClockView) {
        let Some(path) = &self.file else { return };
        let result = match (view.trusted, view.sample()) {
            (false, Some(s)) => serde_json::to_vec(&s)
                .map_err(std::io::Error::other)
                .and_then(|b| std::fs::write(path, b)),
            _ => match std::fs::remove_file(path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                r => r,
            },
        };
        if let Err(e) = result {
            tracing::warn!(file = %path.display(), error = %e, "cannot record the clock state");
        }
    }

    /// Sets the clock gauges.
    pub fn publish(&self, view: &ClockView) {
        metrics::gauge!("aeogate_clock_trusted").set(if view.trusted { 1.0 } else { 0.0 });
        if let Some(o) = view.offset() {
            metrics::gauge!("aeogate_clock_offset_seconds").set(o.as_secs_f64());
        }
        if let Some(h) = view.host {
            metrics::gauge!("aeogate_clock_host_synced").set(if h.synced { 1.0 } else { 0.0 });
        }
    }
}

fn read_carried(path: &Path) -> Option<Sample> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read the clock state");
            return None;
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "clock state file does not parse; ignored");
            None
        }
    }
}

/// Drift of a lane board's clock against the agent's monotonic clock: the board's
/// uptime advance minus the agent's elapsed time since the first heartbeat of the boot.
/// Positive: the board's clock runs fast. Reported only (the board keeps no time that
/// enters a decision).
#[derive(Debug, Clone, Default)]
pub struct BoardDrift {
    start: Option<(u32, u32, std::time::Instant)>,
}

impl BoardDrift {
    /// Notes a heartbeat of boot `boot_id` with `uptime_ms`, heard at `now`; returns the
    /// drift so far. A new boot (or an uptime that went back) starts over.
    pub fn observe(
        &mut self,
        boot_id: u32,
        uptime_ms: u32,
        now: std::time::Instant,
    ) -> Option<f64> {
        match self.start {
            Some((boot, up0, t0)) if boot == boot_id && uptime_ms >= up0 => {
                let board = f64::from(uptime_ms - up0) / 1000.0;
                let agent = now.saturating_duration_since(t0).as_secs_f64();
                Some(board - agent)
            }
            _ => {
                self.start = Some((boot_id, uptime_ms, now));
                None
            }
        }
    }
}

/// The smallest wall-clock step [`StepWatch`] reports: well above the scheduling delay
/// between reading the two clocks and the rate at which time synchronisation slews.
pub const STEP_THRESHOLD: SignedDuration = SignedDuration::from_millis(500);

/// Tells when the wall clock stepped: between two looks, the wall clock should have
/// advanced as far as the monotonic one; what it advanced more or less is a step (set
/// back or forward by hand, or stepped by time synchronisation). Sans-IO: both clocks
/// are read by the caller.
#[derive(Debug, Clone, Copy)]
pub struct StepWatch {
    last: (Timestamp, std::time::Instant),
    /// The last step seen, and when (monotonic).
    step: Option<(SignedDuration, std::time::Instant)>,
}

/// How long after a step an event may still arrive stamped before it (queued between
/// its source and the lane task).
pub const STEP_CARRY: std::time::Duration = std::time::Duration::from_secs(5);

impl StepWatch {
    /// Starts watching from the clocks read now.
    #[must_use]
    pub fn new(wall: Timestamp, mono: std::time::Instant) -> Self {
        Self {
            last: (wall, mono),
            step: None,
        }
    }

    /// The wall clock read `wall` when the monotonic clock read `mono`: how far the wall
    /// clock stepped since the last look (positive: forward), when at least
    /// [`STEP_THRESHOLD`] either way.
    pub fn observe(&mut self, wall: Timestamp, mono: std::time::Instant) -> Option<SignedDuration> {
        let (wall0, mono0) = self.last;
        self.last = (wall, mono);
        let elapsed = SignedDuration::try_from(mono.saturating_duration_since(mono0)).ok()?;
        let step = wall.duration_since(wall0).checked_sub(elapsed)?;
        let stepped = step.abs() >= STEP_THRESHOLD;
        if stepped {
            self.step = Some((step, mono));
        }
        stepped.then_some(step)
    }

    /// The last step, when an event stamped `at` was stamped before it: the step was seen
    /// less than [`STEP_CARRY`] ago, and `at` is nearer the wall clock's `now` once moved
    /// by the step than as it stands. `mono` is the monotonic clock read with `now`.
    #[must_use]
    pub fn stamped_before_step(
        &self,
        at: Timestamp,
        now: Timestamp,
        mono: std::time::Instant,
    ) -> Option<SignedDuration> {
        let (step, seen) = self.step?;
        if mono.saturating_duration_since(seen) > STEP_CARRY {
            return None;
        }
        let moved = at.checked_add(step).ok()?;
        (now.duration_since(moved).abs() < now.duration_since(at).abs()).then_some(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wall_clock_that_keeps_pace_is_no_step_and_a_set_back_or_forward_one_is() {
        let t0 = ts("2026-03-01T10:00:00Z");
        let m0 = std::time::Instant::now();
        let mut watch = StepWatch::new(t0, m0);
        let at = |wall_ms: i64, mono_ms: u64| {
            (
                t0 + SignedDuration::from_millis(wall_ms),
                m0 + Duration::from_millis(mono_ms),
            )
        };
        // (wall since t0, monotonic since m0) at each look, and the step it reports.
        let cases: [((i64, u64), Option<i64>); 6] = [
            ((1_000, 1_000), None),
            ((2_300, 2_000), None),
            ((3_300, 3_000), None),
            ((-3_595_700, 4_000), Some(-3_600_000)),
            ((-3_594_700, 5_000), None),
            ((8_000, 6_000), Some(3_601_700)),
        ];
        for ((wall, mono), want) in cases {
            let (w, m) = at(wall, mono);
            assert_eq!(
                watch.observe(w, m),
                want.map(SignedDuration::from_millis),
                "look at wall {wall} ms, monotonic {mono} ms"
            );
        }
    }

    #[test]
    fn an_event_stamped_before_a_step_is_told_apart_for_a_while() {
        let t0 = ts("2026-03-01T10:00:00Z");
        let m0 = std::time::Instant::now();
        let ms = SignedDuration::from_millis;
        let mut watch = StepWatch::new(t0, m0);
        let at = |wall_ms: i64| t0 + ms(wall_ms);
        let mono = |mono_ms: u64| m0 + Duration::from_millis(mono_ms);
        assert_eq!(
            watch.stamped_before_step(at(990), at(1_000), mono(1_000)),
            None,
            "no step yet"
        );
        // Set back an hour at 2 s: the wall clock reads 2 s - 1 h.
        let back = ms(-3_600_000);
        assert_eq!(watch.observe(at(2_010) + back, mono(2_010)), Some(back));
        let now = at(2_020) + back;
        assert_eq!(
            watch.stamped_before_step(at(1_995), now, mono(2_020)),
            Some(back),
            "stamped before"
        );
        assert_eq!(
            watch.stamped_before_step(at(2_005) + back, now, mono(2_020)),
            None,
            "stamped after"
        );
        let later = at(8_000) + back;
        assert_eq!(
            watch.stamped_before_step(at(1_995), later, mono(8_000)),
            None,
            "long after the step"
        );
        // Forward an hour.
        let mut watch = StepWatch::new(t0, m0);
        let fwd = ms(3_600_000);
        assert_eq!(watch.observe(at(2_010) + fwd, mono(2_010)), Some(fwd));
        assert_eq!(
            watch.stamped_before_step(at(1_995), at(2_020) + fwd, mono(2_020)),
            Some(fwd)
        );
        assert_eq!(
            watch.stamped_before_step(at(2_015) + fwd, at(2_020) + fwd, mono(2_020)),
            None
        );
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    /// The sample of one exchange, from its four times: sent, received by central,
    /// answered by central, answer received.
    fn measured(times: [&str; 4]) -> Sample {
        let [t1, t2, t3, t4] = times.map(ts);
        Sample::from_times(t1, t2, t3, t4)
    }

    fn sample(offset_ms: i64, delay_ms: i64) -> Sample {
        Sample {
            offset: SignedDuration::from_millis(offset_ms),
            delay: SignedDuration::from_millis(delay_ms),
            at: ts("2026-12-04T12:00:00Z"),
        }
    }

    #[test]
    fn a_gate_ten_seconds_ahead_measures_plus_ten_seconds() {
        // Central at 12:00:00.000 receives, answers 10 ms later; 20 ms each way.
        let s = measured([
            "2026-12-04T12:00:09.980Z",
            "2026-12-04T12:00:00.000Z",
            "2026-12-04T12:00:00.010Z",
            "2026-12-04T12:00:10.030Z",
        ]);
        assert_eq!(s.offset, SignedDuration::from_secs(10));
        assert_eq!(s.delay, SignedDuration::from_millis(40));
    }

    #[test]
    fn a_gate_behind_measures_a_negative_offset() {
        let s = measured([
            "2026-12-04T11:59:49.990Z",
            "2026-12-04T12:00:00.000Z",
            "2026-12-04T12:00:00.000Z",
            "2026-12-04T11:59:50.010Z",
        ]);
        assert_eq!(s.offset, SignedDuration::from_secs(-10));
        assert_eq!(s.delay, SignedDuration::from_millis(20));
    }

    #[test]
    fn the_header_round_trips_and_bad_values_are_refused() {
        let t2 = ts("2026-12-04T12:00:00.123456789Z");
        let t3 = ts("2026-12-04T12:00:00.2Z");
        assert_eq!(parse_time_header(&time_header_value(t2, t3)), Ok((t2, t3)));
        assert!(parse_time_header("2026-12-04T12:00:00Z").is_err());
        assert!(parse_time_header("yesterday, today").is_err());
        assert!(parse_time_header(&time_header_value(t3, t2)).is_err());
    }

    #[test]
    fn the_sample_with_the_least_delay_is_used() {
        let mut f = ClockFilter::new(Duration::from_secs(2));
        f.add(sample(5_000, 900)); // a slow round trip, distorted
        f.add(sample(100, 20));
        f.add(sample(3_000, 600));
        let v = f.view(None);
        assert_eq!(v.offset(), Some(SignedDuration::from_millis(100)));
        assert!(v.trusted);
    }

    #[test]
    fn only_the_last_eight_samples_are_kept() {
        let mut f = ClockFilter::new(Duration::from_secs(2));
        f.add(sample(0, 1)); // best, but pushed out by eight later ones
        for _ in 0..SAMPLES {
            f.add(sample(10_000, 50));
        }
        let v = f.view(None);
        assert!(!v.trusted);
        assert_eq!(v.offset(), Some(SignedDuration::from_secs(10)));
    }

    #[test]
    fn an_offset_beyond_the_bound_either_way_is_untrusted() {
        for (off, trusted) in [
            (2_000, true),
            (2_001, false),
            (-2_000, true),
            (-2_500, false),
        ] {
            let mut f = ClockFilter::new(Duration::from_secs(2));
            f.add(sample(off, 10));
            assert_eq!(f.view(None).trusted, trusted, "offset {off} ms");
        }
    }

    #[test]
    fn unmeasured_is_trusted_but_a_carried_out_of_bound_offset_is_not() {
        let f = ClockFilter::new(Duration::from_secs(2));
        assert_eq!(f.view(None).basis, Basis::Unmeasured);
        assert!(f.view(None).trusted);
        let mut f = ClockFilter::new(Duration::from_secs(2)).carrying(sample(-9_000, 10));
        let v = f.view(None);
        assert!(matches!(v.basis, Basis::Carried(_)) && !v.trusted);
        f.add(sample(30, 10));
        assert!(f.view(None).trusted);
        // A carried sample within the bound carries nothing.
        let f = ClockFilter::new(Duration::from_secs(2)).carrying(sample(100, 10));
        assert_eq!(f.view(None).basis, Basis::Unmeasured);
    }

    #[test]
    fn an_out_of_bound_measurement_survives_a_restart_through_the_file() {
        let dir = tempfile::tempdir().expect("dir");
        let file = Clock::file_beside(&dir.path().join("agent.redb"));
        let clock = Clock::new(Duration::from_secs(2), Some(file.clone()));
        clock.add(sample(12_000, 10));
        assert!(!clock.view().trusted);
        let again = Clock::new(Duration::from_secs(2), Some(file.clone()));
        assert!(!again.view().trusted, "a restart forgot the bad clock");
        again.add(sample(10, 10));
        assert!(again.view().trusted);
        assert!(!file.exists());
        assert!(
            Clock::new(Duration::from_secs(2), Some(file))
                .view()
                .trusted
        );
    }

    #[test]
    fn the_report_carries_offset_delay_and_trust() {
        let mut f = ClockFilter::new(Duration::from_secs(2));
        f.add(sample(-3_200, 14));
        let r = f
            .view(Some(HostSync {
                synced: true,
                max_error: Duration::from_millis(5),
            }))
            .report();
        assert_eq!(r.offset_ms, Some(-3_200));
        assert_eq!(r.delay_ms, Some(14));
        assert!(!r.trusted);
        assert_eq!(r.host_synced, Some(true));
        assert_eq!(r.max_offset_ms, 2_000);
    }

    #[test]
    fn board_drift_compares_uptime_with_elapsed_time_and_restarts_on_a_new_boot() {
        let t0 = std::time::Instant::now();
        let mut d = BoardDrift::default();
        assert_eq!(d.observe(7, 1_000, t0), None);
        let drift = d
            .observe(7, 11_010, t0 + Duration::from_secs(10))
            .expect("drift");
        assert!((drift - 0.010).abs() < 1e-9, "{drift}");
        assert_eq!(d.observe(8, 500, t0 + Duration::from_secs(11)), None);
    }
}
