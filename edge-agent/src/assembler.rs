//! Sans-IO gate transaction assembly, per lane (DOMAIN §8; issue 4).
//!
//! Events and the current time go in, [`AssemblerOutput`]s come out; no clocks, no I/O.
//! The shell calls [`Assembler::handle`] for every event and [`Assembler::tick`] when
//! [`Assembler::next_deadline`] comes (the earliest time a timer below expires); `handle`
//! also runs the timers up to the event's time.
//!
//! Per lane:
//! - **Opening.** On a lane with a presence loop, the first loop to report a vehicle
//!   opens a transaction. On a lane without one, the first read opens it.
//! - **Folding.** A read joins the open transaction of its lane. Repeats of one value
//!   from one device (same source, device and normalised value) are counted, not kept:
//!   `count` grows, `first_at`/`last_at` widen; the first raw text is kept.
//! - **Closing.** When every loop has cleared and stayed clear for the lane's
//!   `departure_grace` (default [`DEPARTURE_GRACE`]; loop flicker as a trailer passes), with reason `DEPARTURE` at
//!   the time the loop cleared; when `transaction_timeout` has passed since opening
//!   (`TIMEOUT`); on a loop-less lane after `quiet_close` without reads (`DEPARTURE`); on
//!   shutdown (`SHUTDOWN`).
//! - **Clearing.** When every loop clears with no transaction open (the truck was decided
//!   while it stood on the loop, its transaction closed on timeout), [`AssemblerOutput::Cleared`]
//!   tells the shell to put the lane back in its safe state.
//! - **Reads with no open transaction** on a loop lane are held for the lane's
//!   `pre_open_grace` (default [`PRE_OPEN_GRACE`]):
//!   readers often see a tag before the loop triggers. If a presence opens a transaction
//!   within that time, they are folded into it; otherwise each is reported as
//!   [`AssemblerOutput::OrphanRead`] for the caller to journal. A read for a lane that is
//!   not configured is reported as an orphan at once. No read is ever dropped: each ends
//!   in a closed transaction or as an orphan.
//! - **Closed lanes** ([`Assembler::set_closed`]): no transaction opens. A truck arriving
//!   (a presence on a clear loop, or on a loop-less lane a read) is *refused*: its reads
//!   (those held for it, and those until it leaves) are gathered and reported once as
//!   [`AssemblerOutput::Refused`] when it leaves (every loop clear; on a loop-less lane
//!   `quiet_close` without reads), or at the lane's `transaction_timeout`, or at shutdown.
//!   A transaction open when the lane closes runs to its end as usual; a truck refused
//!   when the lane reopens stays refused until it leaves.
//! - **Consumption** (with [`Assembler::tracking`], for the read log of
//!   [`crate::readlog`]): every event handed in is accounted to exactly one place: the
//!   transaction it went into ([`Assembler::take_consumed`] when that transaction closes),
//!   an orphan read (the event is the orphan itself), or, for a presence change that
//!   belongs to no transaction, [`Assembler::take_spent`]. The shell removes each event
//!   from the read log in the write that journals where it ended, so a restart replays
//!   exactly the events whose truck has no record yet.
//! - **Clock steps** ([`Assembler::clock_stepped`]): when the shell sees the wall clock
//!   step (set back or forward, by hand or by time synchronisation), every lane with
//!   something in progress (a transaction, held reads, a refused truck) keeps its own
//!   time frame: what it holds stays in the clock it began in, events that come after
//!   the step are moved into that frame, and its timers are moved with the step, so a
//!   departure grace or a timeout lasts as long as configured — not an hour longer
//!   after the clock was set back an hour, nor cut short by a step forward. A lane with
//!   nothing in progress follows the clock as it is now, and a lane goes back to it as
//!   soon as it has nothing in progress.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use protocol::schema::{
    CloseReason, GateId, GateTransaction, LaneId, Read, ReadSource, ReadValue, SCHEMA_VERSION,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::LaneConfig;
// The lane timings' defaults belong to the configuration that applies them.
pub use crate::config::{DEPARTURE_GRACE, PRE_OPEN_GRACE};

/// One read as a source reports it, before folding. Serialisable for the read log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawRead {
    pub lane: LaneId,
    pub source: ReadSource,
    /// Device name from the configuration (or the MQTT topic mapping).
    pub device: String,
    /// The value as received, before normalisation.
    pub raw: String,
    pub value: ReadValue,
    pub at: Timestamp,
    pub antenna: Option<u8>,
    pub rssi: Option<i16>,
    pub confidence: Option<u8>,
    pub entered_by: Option<String>,
}

/// Input to the assembler. Serialisable for the read log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AssemblerEvent {
    Read(RawRead),
    /// A presence loop changed state.
    Presence {
        lane: LaneId,
        loop_id: u8,
        present: bool,
        at: Timestamp,
    },
}

impl AssemblerEvent {
    /// When the source stamped it (wall clock).
    #[must_use]
    pub fn at(&self) -> Timestamp {
        match self {
            AssemblerEvent::Read(r) => r.at,
            AssemblerEvent::Presence { at, .. } => *at,
        }
    }
}

/// Output of the assembler.
#[derive(Debug, Clone, PartialEq)]
pub enum AssemblerOutput {
    /// A transaction opened on a lane; `transaction` is it as opened (for the live view).
    Opened {
        lane: LaneId,
        id: Uuid,
        at: Timestamp,
        transaction: GateTransaction,
    },
    /// Reads were folded into the open transaction; `transaction` is it now (for the live
    /// view).
    Updated {
        lane: LaneId,
        id: Uuid,
        transaction: GateTransaction,
    },
    /// A transaction closed: decide it, journal it.
    Closed(GateTransaction),
    /// A read that belongs to no transaction: journal it so it is not lost.
    OrphanRead(RawRead),
    /// Every loop of a lane cleared with no transaction open: the vehicle that left was
    /// already decided (its transaction closed on timeout while it stood on the loop), so
    /// the lane goes back to its safe state.
    Cleared { lane: LaneId, at: Timestamp },
    /// A truck arrived at a closed lane: no transaction opened. `reads` are the reads that
    /// came with it (accounted to this refusal); journal it so nothing is lost.
    Refused {
        lane: LaneId,
        at: Timestamp,
        reads: Vec<RawRead>,
    },
}

/// A lane's assembly timings (its configuration's values; see [`LaneConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneTimings {
    pub pre_open_grace: std::time::Duration,
    pub departure_grace: std::time::Duration,
    pub quiet_close: std::time::Duration,
}

impl LaneTimings {
    /// The timings configured for `lane`.
    #[must_use]
    pub fn of(lane: &LaneConfig) -> Self {
        Self {
            pre_open_grace: lane.pre_open_grace,
            departure_grace: lane.departure_grace,
            quiet_close: lane.quiet_close,
        }
    }
}

fn signed(d: std::time::Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

/// `t + d`, held at the ends of the time line.
fn shifted(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_add(d).unwrap_or(if d.is_negative() {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

#[derive(Debug)]
struct OpenTx {
    tx: GateTransaction,
    last_read_at: Timestamp,
    departed_at: Option<Timestamp>,
    /// The events that went into this transaction (only when tracking).
    events: Vec<AssemblerEvent>,
}

#[derive(Debug)]
struct LaneState {
    cfg: LaneConfig,
    open: Option<OpenTx>,
    /// Reads waiting for a presence (loop lanes only), each with its time in this lane's
    /// frame (the read itself is kept as received).
    pending: Vec<(Timestamp, RawRead)>,
    /// Loops currently reporting a vehicle.
    present: BTreeSet<u8>,
    /// Whether events are accounted ([`Assembler::tracking`]).
    track: bool,
    /// Events of transactions closed and not yet taken by the shell.
    consumed: BTreeMap<Uuid, Vec<AssemblerEvent>>,
    /// Closed by a supervisor: no transaction opens.
    closed: bool,
    /// The truck being refused at this closed lane.
    refusing: Option<Refusing>,
    /// This lane's entry in [`Assembler::due`], as last refreshed (wall clock).
    deadline: Option<Timestamp>,
    /// How far the wall clock stepped while this lane had something in progress
    /// ([`Assembler::clock_stepped`]): a wall time less this is the lane's time. Zero
    /// whenever the lane has nothing in progress.
    shift: SignedDuration,
}

/// A truck at a closed lane, until it leaves.
#[derive(Debug)]
struct Refusing {
    at: Timestamp,
    last_read_at: Timestamp,
    reads: Vec<RawRead>,
}

/// Per-lane transaction assembly.
#[derive(Debug)]
pub struct Assembler {
    gate: GateId,
    lanes: BTreeMap<LaneId, LaneState>,
    /// Whether events are accounted ([`Assembler::tracking`]).
    track: bool,
    /// Presence changes that belong to no transaction, not yet taken.
    spent: Vec<AssemblerEvent>,
    /// Events of transactions closed on lanes since removed ([`Assembler::reconfigure`]),
    /// not yet taken.
    retired: BTreeMap<Uuid, Vec<AssemblerEvent>>,
    /// Every lane's next deadline ([`LaneState::next_deadline`], kept in
    /// `LaneState::deadline`), earliest first: a tick runs the timers of the lanes due
    /// only, and [`Assembler::next_deadline`] is the first entry, so neither costs a pass
    /// over every lane. Refreshed whenever a lane's state or timings change.
    due: BTreeSet<(Timestamp, LaneId)>,
    /// How many lanes are closed ([`Assembler::set_closed`]).
    closed: usize,
}

/// Re-reads `lane`'s next deadline into `due` after its state or timings changed.
fn refresh(due: &mut BTreeSet<(Timestamp, LaneId)>, lane: &mut LaneState) {
    if lane.idle() {
        lane.shift = SignedDuration::ZERO;
    }
    let next = lane.next_deadline().map(|d| shifted(d, lane.shift));
    if next == lane.deadline {
        return;
    }
    if let Some(old) = lane.deadline.take() {
        due.remove(&(old, lane.cfg.id.clone()));
    }
    if let Some(new) = next {
        due.insert((new, lane.cfg.id.clone()));
    }
    lane.deadline = next;
}

/// `r` as a transaction's read, seen at `at` (the lane's time).
fn to_read(r: RawRead, at: Timestamp) -> Read {
    Read {
        source: r.source,
        device: r.device,
        raw: r.raw,
        value: r.value,
        first_at: at,
        last_at: at,
        count: 1,
        antenna: r.antenna,
        rssi: r.rssi,
        confidence: r.confidence,
        entered_by: r.entered_by,
    }
}

/// Folds `r`, seen at `at` (the lane's time), into the open transaction.
fn fold(open: &mut OpenTx, r: RawRead, at: Timestamp) {
    open.last_read_at = open.last_read_at.max(at);
    open.tx.closed_at = open.tx.closed_at.max(at);
    if let Some(existing) = open
        .tx
        .reads
        .iter_mut()
        .find(|x| x.source == r.source && x.device == r.device && x.value == r.value)
    {
        existing.count = existing.count.saturating_add(1);
        existing.first_at = existing.first_at.min(at);
        existing.last_at = existing.last_at.max(at);
        if existing.rssi.is_none() {
            existing.rssi = r.rssi;
        }
        return;
    }
    open.tx.reads.push(to_read(r, at));
}

impl LaneState {
    /// Nothing in progress: no transaction, no held read, no refused truck.
    fn idle(&self) -> bool {
        self.open.is_none() && self.pending.is_empty() && self.refusing.is_none()
    }

    /// A wall-clock time in this lane's frame.
    fn lane_time(&self, wall: Timestamp) -> Timestamp {
        shifted(wall, -self.shift)
    }

    fn open_at(&mut self, gate: &GateId, at: Timestamp, out: &mut Vec<AssemblerOutput>) {
        let id = Uuid::now_v7();
        let tx = GateTransaction {
            v: SCHEMA_VERSION,
            id,
            gate: gate.clone(),
            lane: self.cfg.id.clone(),
            opened_at: at,
            closed_at: at,
            close_reason: CloseReason::Departure,
            reads: Vec::new(),
        };
        out.push(AssemblerOutput::Opened {
            lane: self.cfg.id.clone(),
            id,
            at,
            transaction: tx.clone(),
        });
        self.open = Some(OpenTx {
            tx,
            last_read_at: at,
            departed_at: None,
            events: Vec::new(),
        });
    }

    fn close(&mut self, reason: CloseReason, at: Timestamp, out: &mut Vec<AssemblerOutput>) {
        if let Some(mut o) = self.open.take() {
            o.tx.close_reason = reason;
            o.tx.closed_at = at.max(o.tx.opened_at);
            if self.track {
                self.consumed.insert(o.tx.id, o.events);
            }
            out.push(AssemblerOutput::Closed(o.tx));
        }
    }

    /// The earliest time at which [`LaneState::run_timers`] would close the open
    /// transaction or give up a held read; each term mirrors a condition there.
    fn next_deadline(&self) -> Option<Timestamp> {
        let mut next: Option<Timestamp> = None;
        let mut consider = |t: Timestamp| next = Some(next.map_or(t, |n| n.min(t)));
        if let Some(o) = &self.open {
            let timeout = SignedDuration::try_from(self.cfg.transaction_timeout)
                .unwrap_or(SignedDuration::MAX);
            consider(
                o.tx.opened_at
                    .checked_add(timeout)
                    .unwrap_or(Timestamp::MAX),
            );
            if let Some(d) = o.departed_at {
                consider(
                    d.checked_add(signed(self.cfg.departure_grace))
                        .unwrap_or(Timestamp::MAX),
                );
            }
            if !self.cfg.presence_loop && self.present.is_empty() {
                let quiet =
                    SignedDuration::try_from(self.cfg.quiet_close).unwrap_or(SignedDuration::MAX);
                consider(o.last_read_at.checked_add(quiet).unwrap_or(Timestamp::MAX));
            }
        }
        if let Some(d) = self.refusal_deadline() {
            consider(d);
        }
        // A held read is given up once it is strictly older than the grace.
        if let Some(oldest) = self.pending.iter().map(|(at, _)| *at).min() {
            consider(
                oldest
                    .checked_add(signed(self.cfg.pre_open_grace))
                    .and_then(|t| t.checked_add(SignedDuration::from_nanos(1)))
                    .unwrap_or(Timestamp::MAX),
            );
        }
        next
    }

    /// A truck's presence on this closed lane: refused, with the reads held for it (those
    /// older than the grace are orphans, as on an open lane).
    fn refuse_arrival(&mut self, at: Timestamp, out: &mut Vec<AssemblerOutput>) {
        let horizon = at
            .checked_sub(signed(self.cfg.pre_open_grace))
            .unwrap_or(Timestamp::MIN);
        let (reads, old): (Vec<_>, Vec<_>) =
            self.pending.drain(..).partition(|(t, _)| *t >= horizon);
        out.extend(old.into_iter().map(|(_, r)| AssemblerOutput::OrphanRead(r)));
        let last_read_at = reads.iter().map(|(t, _)| *t).max().unwrap_or(at);
        self.refusing = Some(Refusing {
            at,
            last_read_at,
            reads: reads.into_iter().map(|(_, r)| r).collect(),
        });
    }

    /// A read on this lane with no transaction open while it is closed or a truck is
    /// being refused: it joins the refused truck; on a loop lane with no truck on the
    /// loop it is held as usual (the presence that follows is refused with it); on a
    /// loop-less lane it is a truck arriving.
    /// `at` is the read's time in this lane's frame.
    fn refuse_read(&mut self, r: RawRead, at: Timestamp) {
        match &mut self.refusing {
            Some(f) => {
                f.last_read_at = f.last_read_at.max(at);
                f.reads.push(r);
            }
            None if self.cfg.presence_loop => self.pending.push((at, r)),
            None => {
                self.refusing = Some(Refusing {
                    at,
                    last_read_at: at,
                    reads: vec![r],
                });
            }
        }
    }

    /// The refused truck left (or the lane stopped waiting for it): report it.
    fn end_refusal(&mut self, out: &mut Vec<AssemblerOutput>) {
        if let Some(f) = self.refusing.take() {
            out.push(AssemblerOutput::Refused {
                lane: self.cfg.id.clone(),
                at: f.at,
                reads: f.reads,
            });
        }
    }

    /// Winds the lane up at wall time `now` (shutdown, or the lane removed): its open
    /// transaction closes with `reason`, a refused truck is reported and every held read
    /// is given up as an orphan.
    fn wind_up(&mut self, reason: CloseReason, now: Timestamp, out: &mut Vec<AssemblerOutput>) {
        self.close(reason, self.lane_time(now), out);
        self.end_refusal(out);
        out.extend(
            self.pending
                .drain(..)
                .map(|(_, r)| AssemblerOutput::OrphanRead(r)),
        );
    }

    /// When the refused truck is given up on: at the lane's transaction timeout, and on a
    /// loop-less lane after `quiet_close` without reads.
    fn refusal_deadline(&self) -> Option<Timestamp> {
        let f = self.refusing.as_ref()?;
        let timeout =
            f.at.checked_add(signed(self.cfg.transaction_timeout))
                .unwrap_or(Timestamp::MAX);
        if self.cfg.presence_loop {
            Some(timeout)
        } else {
            let quiet = f
                .last_read_at
                .checked_add(signed(self.cfg.quiet_close))
                .unwrap_or(Timestamp::MAX);
            Some(timeout.min(quiet))
        }
    }

    fn run_timers(&mut self, now: Timestamp, out: &mut Vec<AssemblerOutput>) {
        if self.refusal_deadline().is_some_and(|d| now >= d) {
            self.end_refusal(out);
        }
        if let Some(o) = &self.open {
            let timeout = SignedDuration::try_from(self.cfg.transaction_timeout)
                .unwrap_or(SignedDuration::MAX);
            let quiet =
                SignedDuration::try_from(self.cfg.quiet_close).unwrap_or(SignedDuration::MAX);
            let deadline =
                o.tx.opened_at
                    .checked_add(timeout)
                    .unwrap_or(Timestamp::MAX);
            if let Some(d) = o.departed_at
                && now
                    >= d.checked_add(signed(self.cfg.departure_grace))
                        .unwrap_or(Timestamp::MAX)
            {
                let at = d.min(deadline);
                let reason = if d >= deadline {
                    CloseReason::Timeout
                } else {
                    CloseReason::Departure
                };
                self.close(reason, at, out);
            } else if now >= deadline {
                self.close(CloseReason::Timeout, deadline, out);
            } else if !self.cfg.presence_loop
                && self.present.is_empty()
                && now >= o.last_read_at.checked_add(quiet).unwrap_or(Timestamp::MAX)
            {
                let at = o.last_read_at.checked_add(quiet).unwrap_or(now);
                self.close(CloseReason::Departure, at, out);
            }
        }
        let horizon = now
            .checked_sub(signed(self.cfg.pre_open_grace))
            .unwrap_or(Timestamp::MIN);
        if self.pending.is_empty() {
            return;
        }
        let (expired, keep): (Vec<_>, Vec<_>) =
            self.pending.drain(..).partition(|(t, _)| *t < horizon);
        self.pending = keep;
        out.extend(
            expired
                .into_iter()
                .map(|(_, r)| AssemblerOutput::OrphanRead(r)),
        );
    }
}

impl Assembler {
    /// An assembler for these lanes (the configuration's `lanes`).
    #[must_use]
    pub fn new(gate: GateId, lanes: &[LaneConfig]) -> Self {
        let lanes = lanes
            .iter()
            .map(|l| {
                (
                    l.id.clone(),
                    LaneState {
                        cfg: l.clone(),
                        open: None,
                        pending: Vec::new(),
                        present: BTreeSet::new(),
                        track: false,
                        consumed: BTreeMap::new(),
                        closed: false,
                        refusing: None,
                        deadline: None,
                        shift: SignedDuration::ZERO,
                    },
                )
            })
            .collect();
        Self {
            gate,
            lanes,
            track: false,
            spent: Vec::new(),
            retired: BTreeMap::new(),
            due: BTreeSet::new(),
            closed: 0,
        }
    }

    /// Accounts every event handed in from now on (see "Consumption" above); the shell
    /// must then take what [`Assembler::take_consumed`] and [`Assembler::take_spent`]
    /// hold, or they grow.
    #[must_use]
    pub fn tracking(mut self) -> Self {
        self.track = true;
        for lane in self.lanes.values_mut() {
            lane.track = true;
        }
        self
    }

    /// The events that went into the closed transaction `id` (empty when not tracking or
    /// already taken).
    pub fn take_consumed(&mut self, id: Uuid) -> Vec<AssemblerEvent> {
        self.lanes
            .values_mut()
            .find_map(|l| l.consumed.remove(&id))
            .or_else(|| self.retired.remove(&id))
            .unwrap_or_default()
    }

    /// Presence changes that belong to no transaction (a loop clearing after its truck
    /// was decided, a report for a lane that is not configured), oldest first.
    pub fn take_spent(&mut self) -> Vec<AssemblerEvent> {
        std::mem::take(&mut self.spent)
    }

    /// Closes (`true`) or reopens `lane`: while closed, no transaction opens there (see
    /// "Closed lanes" above). Returns `false` for a lane that is not configured.
    pub fn set_closed(&mut self, lane: &LaneId, closed: bool) -> bool {
        let Some(l) = self.lanes.get_mut(lane) else {
            return false;
        };
        match (l.closed, closed) {
            (false, true) => self.closed += 1,
            (true, false) => self.closed = self.closed.saturating_sub(1),
            _ => {}
        }
        l.closed = closed;
        true
    }

    /// Whether any lane is closed.
    #[must_use]
    pub fn any_closed(&self) -> bool {
        self.closed > 0
    }

    /// Whether `lane` is closed.
    #[must_use]
    pub fn is_closed(&self, lane: &LaneId) -> bool {
        self.lanes.get(lane).is_some_and(|l| l.closed)
    }

    /// Sets `lane`'s timings; they apply to the timers from now on (an open transaction's
    /// included). Returns `false` for a lane that is not configured.
    pub fn set_timings(&mut self, lane: &LaneId, timings: LaneTimings) -> bool {
        let Some(l) = self.lanes.get_mut(lane) else {
            return false;
        };
        l.cfg.pre_open_grace = timings.pre_open_grace;
        l.cfg.departure_grace = timings.departure_grace;
        l.cfg.quiet_close = timings.quiet_close;
        refresh(&mut self.due, l);
        true
    }

    /// Ids of the transactions open now, one per lane at most.
    #[must_use]
    pub fn open_ids(&self) -> Vec<Uuid> {
        self.lanes
            .values()
            .filter_map(|l| l.open.as_ref().map(|o| o.tx.id))
            .collect()
    }

    /// Folds one event in (after running the timers up to the event's time).
    pub fn handle(&mut self, ev: AssemblerEvent) -> Vec<AssemblerOutput> {
        self.handle_stamped_before_step(ev, SignedDuration::ZERO)
    }

    /// [`Assembler::handle`] for an event stamped before the wall clock stepped by `step`
    /// and handed in after the step was reported ([`Assembler::clock_stepped`]): its time
    /// is taken as `step` later, as the clock reads since (the event itself is kept as
    /// received). With a zero step it is [`Assembler::handle`].
    pub fn handle_stamped_before_step(
        &mut self,
        ev: AssemblerEvent,
        step: SignedDuration,
    ) -> Vec<AssemblerOutput> {
        let mut out = self.tick(shifted(ev.at(), step));
        let lane_id = match &ev {
            AssemblerEvent::Read(r) => r.lane.clone(),
            AssemblerEvent::Presence { lane, .. } => lane.clone(),
        };
        let presence =
            matches!(ev, AssemblerEvent::Presence { .. } if self.track).then(|| ev.clone());
        self.apply(ev, presence, step, &mut out);
        if let Some(lane) = self.lanes.get_mut(&lane_id) {
            refresh(&mut self.due, lane);
        }
        out
    }

    /// [`Assembler::handle`] after the timers: folds `ev` into its lane, its time taken as
    /// `correction` later; `presence` is the event again when it is a presence change to
    /// account for.
    fn apply(
        &mut self,
        ev: AssemblerEvent,
        presence: Option<AssemblerEvent>,
        correction: SignedDuration,
        out: &mut Vec<AssemblerOutput>,
    ) {
        match ev {
            AssemblerEvent::Read(r) => {
                let Some(lane) = self.lanes.get_mut(&r.lane) else {
                    out.push(AssemblerOutput::OrphanRead(r));
                    return;
                };
                let at = lane.lane_time(shifted(r.at, correction));
                if lane.open.is_none() && (lane.closed || lane.refusing.is_some()) {
                    lane.refuse_read(r, at);
                    return;
                }
                if lane.open.is_none() && !lane.cfg.presence_loop {
                    lane.open_at(&self.gate, at, out);
                }
                match &mut lane.open {
                    Some(o) => {
                        if lane.track {
                            o.events.push(AssemblerEvent::Read(r.clone()));
                        }
                        fold(o, r, at);
                        out.push(AssemblerOutput::Updated {
                            lane: lane.cfg.id.clone(),
                            id: o.tx.id,
                            transaction: o.tx.clone(),
                        });
                    }
                    None => lane.pending.push((at, r)),
                }
            }
            AssemblerEvent::Presence {
                lane,
                loop_id,
                present,
                at,
            } => {
                let Some(lane) = self.lanes.get_mut(&lane) else {
                    self.spent.extend(presence);
                    return;
                };
                let at = lane.lane_time(shifted(at, correction));
                if present {
                    let arrived = lane.present.is_empty();
                    lane.present.insert(loop_id);
                    match &mut lane.open {
                        Some(o) => o.departed_at = None,
                        None if lane.refusing.is_some() => {}
                        None if lane.closed => {
                            if arrived {
                                lane.refuse_arrival(at, out);
                            }
                        }
                        None => {
                            lane.open_at(&self.gate, at, out);
                            let horizon = at
                                .checked_sub(signed(lane.cfg.pre_open_grace))
                                .unwrap_or(Timestamp::MIN);
                            let pending = std::mem::take(&mut lane.pending);
                            let mut folded = false;
                            if let Some(o) = &mut lane.open {
                                for (t, r) in pending {
                                    if t >= horizon {
                                        if lane.track {
                                            o.events.push(AssemblerEvent::Read(r.clone()));
                                        }
                                        fold(o, r, t);
                                        folded = true;
                                    } else {
                                        out.push(AssemblerOutput::OrphanRead(r));
                                    }
                                }
                                if folded {
                                    out.push(AssemblerOutput::Updated {
                                        lane: lane.cfg.id.clone(),
                                        id: o.tx.id,
                                        transaction: o.tx.clone(),
                                    });
                                }
                            }
                        }
                    }
                } else {
                    let was_present = lane.present.remove(&loop_id);
                    if lane.present.is_empty() {
                        match &mut lane.open {
                            Some(o) if o.departed_at.is_none() => o.departed_at = Some(at),
                            Some(_) => {}
                            None if lane.refusing.is_some() => lane.end_refusal(out),
                            None if was_present && !lane.closed => {
                                out.push(AssemblerOutput::Cleared {
                                    lane: lane.cfg.id.clone(),
                                    at,
                                })
                            }
                            None => {}
                        }
                    }
                }
            }
        }
        // A presence change belongs to the transaction open on its lane after it (the one
        // it opened, or kept open), else to none.
        if let Some(ev) = presence {
            let AssemblerEvent::Presence { lane, .. } = &ev else {
                return;
            };
            match self.lanes.get_mut(lane).and_then(|l| l.open.as_mut()) {
                Some(o) => o.events.push(ev),
                None => self.spent.push(ev),
            }
        }
    }

    /// Advances time: closes transactions whose timers expired and reports held reads
    /// that no transaction claimed.
    pub fn tick(&mut self, now: Timestamp) -> Vec<AssemblerOutput> {
        let mut out = Vec::new();
        // Only lanes whose deadline has come can act (a tick before a lane's deadline
        // changes nothing there); they run in lane order, as a pass over all lanes would.
        let mut due: Vec<LaneId> = Vec::new();
        while let Some((at, _)) = self.due.first()
            && *at <= now
        {
            if let Some((_, lane)) = self.due.pop_first() {
                due.push(lane);
            }
        }
        due.sort();
        for id in due {
            if let Some(lane) = self.lanes.get_mut(&id) {
                lane.deadline = None;
                lane.run_timers(lane.lane_time(now), &mut out);
                refresh(&mut self.due, lane);
            }
        }
        out
    }

    /// The wall clock stepped by `by` (forward when positive): every lane with something
    /// in progress keeps its time frame, so its timers run for the time that really
    /// passes (see "Clock steps" above). A step of a few milliseconds is as harmless to
    /// report as to leave out; the shell reports steps it can tell from scheduling delay.
    pub fn clock_stepped(&mut self, by: SignedDuration) {
        for lane in self.lanes.values_mut() {
            if lane.idle() {
                continue;
            }
            lane.shift = lane.shift.checked_add(by).unwrap_or(if by.is_negative() {
                SignedDuration::MIN
            } else {
                SignedDuration::MAX
            });
            refresh(&mut self.due, lane);
        }
    }

    /// The earliest time at which [`Assembler::tick`] would close a transaction or report
    /// a held read as an orphan, if no event comes first; `None` when nothing is waiting
    /// on a timer. A shell sleeps until then instead of ticking on a fixed period, so a
    /// departure is decided as soon as its [`DEPARTURE_GRACE`] ends rather than at the
    /// next tick after it. `tick` at this time (or later) closes something; `tick` before
    /// it closes nothing.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.due.first().map(|(at, _)| *at)
    }

    /// [`Assembler::next_deadline`] computed by a pass over every lane (what the index
    /// must always agree with).
    #[cfg(test)]
    fn scanned_deadline(&self) -> Option<Timestamp> {
        self.lanes
            .values()
            .filter_map(|l| l.next_deadline().map(|d| shifted(d, l.shift)))
            .min()
    }

    /// The in-progress transaction on a lane (reads so far; `closed_at` is the last read).
    #[must_use]
    pub fn open(&self, lane: &LaneId) -> Option<&GateTransaction> {
        self.lanes.get(lane)?.open.as_ref().map(|o| &o.tx)
    }

    /// Closes every open transaction with reason `SHUTDOWN` and reports every held read
    /// as an orphan.
    pub fn close_all(&mut self, now: Timestamp) -> Vec<AssemblerOutput> {
        let mut out = Vec::new();
        for lane in self.lanes.values_mut() {
            lane.wind_up(CloseReason::Shutdown, now, &mut out);
            lane.present.clear();
            lane.deadline = None;
            lane.shift = SignedDuration::ZERO;
        }
        self.due.clear();
        out
    }

    /// Takes a new set of lanes (live reconfiguration). A lane still configured keeps its
    /// open transaction, its held reads and its loops, and follows its new settings from
    /// now on; a new lane starts idle; a removed lane's open transaction is closed
    /// (`LANE_REMOVED`, to be decided as usual) and its held reads are reported as orphans.
    pub fn reconfigure(&mut self, lanes: &[LaneConfig], now: Timestamp) -> Vec<AssemblerOutput> {
        let mut out = Vec::new();
        let gone: Vec<LaneId> = self
            .lanes
            .keys()
            .filter(|id| !lanes.iter().any(|l| &l.id == *id))
            .cloned()
            .collect();
        for id in gone {
            let Some(mut lane) = self.lanes.remove(&id) else {
                continue;
            };
            lane.wind_up(CloseReason::LaneRemoved, now, &mut out);
            self.retired.append(&mut lane.consumed);
            if lane.closed {
                self.closed = self.closed.saturating_sub(1);
            }
            if let Some(at) = lane.deadline {
                self.due.remove(&(at, id));
            }
        }
        for cfg in lanes {
            match self.lanes.get_mut(&cfg.id) {
                Some(lane) => {
                    lane.cfg = cfg.clone();
                    refresh(&mut self.due, lane);
                }
                None => {
                    self.lanes.insert(
                        cfg.id.clone(),
                        LaneState {
                            cfg: cfg.clone(),
                            open: None,
                            pending: Vec::new(),
                            present: BTreeSet::new(),
                            track: self.track,
                            consumed: BTreeMap::new(),
                            closed: false,
                            refusing: None,
                            deadline: None,
                            shift: SignedDuration::ZERO,
                        },
                    );
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;
    use protocol::schema::{ReadSource, ReadValue};

    use super::*;
    use crate::decider::Routes;

    mod fixture {
        use super::{Assembler, GateId, LaneConfig, LaneId, Routes};
        include!("../tests/assembler_support/lanes.rs");
    }
    use fixture::{Lanes, on_g1};

    /// A transaction times out after 30 s; a loop-less lane closes after 4 s quiet.
    const LANES: Lanes = Lanes {
        transaction_timeout: Duration::from_secs(30),
        quiet_close: Duration::from_secs(4),
    };

    fn lane(id: &str, presence_loop: bool) -> LaneConfig {
        LANES.lane(id, presence_loop)
    }

    fn asm() -> Assembler {
        LANES.assembler()
    }

    /// An assembler with a truck on L1: its loop present since `t(0)`.
    fn truck_on_l1() -> Assembler {
        let mut a = asm();
        a.handle(presence(true, t(0)));
        a
    }

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(1_800_000_000_000 + ms).expect("timestamp")
    }

    fn read(lane: &str, value: u8, at: Timestamp) -> AssemblerEvent {
        AssemblerEvent::Read(RawRead {
            lane: LaneId::parse(lane).expect("lane id"),
            source: ReadSource::Ocr,
            device: "cam".into(),
            raw: format!("R{value}"),
            value: ReadValue::Unreadable {
                what: format!("R{value}"),
                error: "test".into(),
            },
            at,
            antenna: None,
            rssi: None,
            confidence: None,
            entered_by: None,
        })
    }

    fn presence(present: bool, at: Timestamp) -> AssemblerEvent {
        AssemblerEvent::Presence {
            lane: LaneId::parse("L1").expect("lane id"),
            loop_id: 0,
            present,
            at,
        }
    }

    fn timed_out(out: &[AssemblerOutput]) -> bool {
        out.iter().any(|o| {
            matches!(
                o,
                AssemblerOutput::Closed(_) | AssemblerOutput::OrphanRead(_)
            )
        })
    }

    #[test]
    fn departure_deadline_is_the_end_of_the_grace() {
        let mut a = asm();
        assert_eq!(a.next_deadline(), None, "nothing open, nothing held");
        a.handle(presence(true, t(0)));
        assert_eq!(
            a.next_deadline(),
            Some(t(30_000)),
            "an open transaction waits for its timeout"
        );
        a.handle(presence(false, t(2_000)));
        assert_eq!(a.next_deadline(), Some(t(3_000)), "departure + 1 s grace");
        assert!(!timed_out(&a.tick(t(2_999))));
        assert!(timed_out(&a.tick(t(3_000))));
        assert_eq!(a.next_deadline(), None);
    }

    const HOUR: SignedDuration = SignedDuration::from_hours(1);

    fn closed(out: &[AssemblerOutput]) -> Vec<&GateTransaction> {
        out.iter()
            .filter_map(|o| match o {
                AssemblerOutput::Closed(tx) => Some(tx),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_clock_set_back_an_hour_during_the_grace_does_not_hold_the_truck_an_hour() {
        let mut a = truck_on_l1();
        a.handle(read("L1", 1, t(500)));
        a.handle(presence(false, t(2_000)));
        // At t(2_400) the clock is set back an hour: the grace ends 600 ms later.
        a.clock_stepped(-HOUR);
        assert_eq!(a.next_deadline(), Some(t(3_000) - HOUR));
        assert!(closed(&a.tick(t(2_999) - HOUR)).is_empty());
        let out = a.tick(t(3_000) - HOUR);
        let tx = closed(&out);
        assert_eq!(tx.len(), 1, "{out:?}");
        assert_eq!(tx[0].close_reason, CloseReason::Departure);
        // What the transaction holds stays in the clock it began in.
        assert_eq!((tx[0].opened_at, tx[0].closed_at), (t(0), t(2_000)));
        assert_eq!(a.next_deadline(), None);
    }

    #[test]
    fn a_clock_set_forward_an_hour_does_not_cut_the_grace_or_the_timeout_short() {
        let mut a = truck_on_l1();
        a.handle(presence(false, t(2_000)));
        a.clock_stepped(HOUR);
        assert!(
            closed(&a.tick(t(2_500) + HOUR)).is_empty(),
            "grace not over"
        );
        assert_eq!(closed(&a.tick(t(3_000) + HOUR)).len(), 1);

        // A truck that stays: its timeout counts the time that passed, not the step.
        let mut a = truck_on_l1();
        a.clock_stepped(HOUR);
        assert!(closed(&a.tick(t(29_999) + HOUR)).is_empty());
        let out = a.tick(t(30_000) + HOUR);
        assert_eq!(
            closed(&out)[0].close_reason,
            CloseReason::Timeout,
            "{out:?}"
        );
    }

    #[test]
    fn events_after_a_step_join_the_transaction_in_its_own_clock() {
        let mut a = asm();
        // A loop-less lane: reads open it, `quiet_close` (4 s) without reads closes it.
        a.handle(read("L2", 1, t(0)));
        a.clock_stepped(-HOUR);
        a.handle(read("L2", 2, t(3_000) - HOUR));
        assert!(
            closed(&a.tick(t(6_999) - HOUR)).is_empty(),
            "quiet since t(3_000)"
        );
        let out = a.tick(t(7_000) - HOUR);
        let tx = closed(&out);
        assert_eq!(tx.len(), 1, "{out:?}");
        let last: Vec<Timestamp> = tx[0].reads.iter().map(|r| r.last_at).collect();
        assert_eq!(last, vec![t(0), t(3_000)]);
        assert_eq!(tx[0].closed_at, t(7_000));
    }

    #[test]
    fn an_event_stamped_before_a_step_and_handed_in_after_it_is_taken_in_its_own_clock() {
        let mut a = truck_on_l1();
        a.handle(read("L2", 1, t(0)));
        a.clock_stepped(-HOUR);
        // Stamped at t(900), before the clock was set back, handed in after.
        let late = read("L2", 2, t(900));
        let out = a.handle_stamped_before_step(late.clone(), -HOUR);
        assert!(closed(&out).is_empty(), "nothing is due yet: {out:?}");
        let l1 = LaneId::parse("L1").expect("lane");
        let l2 = LaneId::parse("L2").expect("lane");
        assert!(
            a.open(&l1).is_some(),
            "the truck on the loop is not timed out"
        );
        let last: Vec<Timestamp> = a
            .open(&l2)
            .map(|x| x.reads.iter().map(|r| r.last_at).collect())
            .unwrap_or_default();
        assert_eq!(last, vec![t(0), t(900)]);
        // Handed in as stamped, the same event would have run every timer an hour ahead.
        let mut b = truck_on_l1();
        b.clock_stepped(-HOUR);
        assert_eq!(
            closed(&b.handle(late)).len(),
            1,
            "the truck on the loop timed out"
        );
    }

    #[test]
    fn a_lane_with_nothing_in_progress_follows_the_clock_as_it_is() {
        let mut a = truck_on_l1();
        a.handle(presence(false, t(1_000)));
        a.clock_stepped(-HOUR);
        assert_eq!(closed(&a.tick(t(2_000) - HOUR)).len(), 1);
        // L1 is idle again, L2 was idle at the step: both open in the clock as it is now.
        a.handle(presence(true, t(5_000) - HOUR));
        a.handle(read("L2", 1, t(5_000) - HOUR));
        assert_eq!(
            a.open(&LaneId::parse("L1").expect("lane"))
                .map(|x| x.opened_at),
            Some(t(5_000) - HOUR)
        );
        assert_eq!(
            a.open(&LaneId::parse("L2").expect("lane"))
                .map(|x| x.opened_at),
            Some(t(5_000) - HOUR)
        );
        a.handle(presence(false, t(6_000) - HOUR));
        assert_eq!(a.next_deadline(), Some(t(7_000) - HOUR));
    }

    #[test]
    fn a_read_held_across_a_step_expires_after_its_grace_as_it_was_received() {
        let mut a = asm().tracking();
        let held = read("L1", 1, t(0));
        a.handle(held.clone());
        a.clock_stepped(-HOUR);
        assert!(
            !timed_out(&a.tick(t(5_000) - HOUR)),
            "not strictly older yet"
        );
        let out = a.tick(t(5_001) - HOUR);
        let AssemblerEvent::Read(r) = held else {
            unreachable!("a read")
        };
        assert_eq!(
            out,
            vec![AssemblerOutput::OrphanRead(r)],
            "the read as received"
        );
        assert_eq!(a.next_deadline(), None);
    }

    fn cleared(out: &[AssemblerOutput]) -> bool {
        out.iter()
            .any(|o| matches!(o, AssemblerOutput::Cleared { .. }))
    }

    #[test]
    fn a_truck_decided_on_the_loop_clears_the_lane_when_it_leaves() {
        let mut a = truck_on_l1();
        assert!(
            timed_out(&a.tick(t(30_000))),
            "closed on timeout, still on the loop"
        );
        let out = a.handle(presence(false, t(31_000)));
        assert!(cleared(&out), "{out:?}");
        assert!(
            !cleared(&a.handle(presence(false, t(32_000)))),
            "a repeated clear report is not another departure"
        );
    }

    #[test]
    fn an_ordinary_departure_is_not_a_clearing() {
        let mut a = truck_on_l1();
        assert!(!cleared(&a.handle(presence(false, t(2_000)))));
        assert!(!cleared(&a.tick(t(3_000))));
    }

    #[test]
    fn a_held_read_expires_just_after_its_grace() {
        let mut a = asm();
        a.handle(read("L1", 1, t(0)));
        let d = a.next_deadline().expect("a held read has a deadline");
        assert_eq!(d, t(5_000) + SignedDuration::from_nanos(1));
        assert!(!timed_out(&a.tick(t(5_000))), "not strictly older yet");
        assert!(timed_out(&a.tick(d)));
    }

    #[test]
    fn a_loopless_lane_closes_when_quiet() {
        let mut a = asm();
        a.handle(read("L2", 1, t(0)));
        a.handle(read("L2", 2, t(1_000)));
        assert_eq!(a.next_deadline(), Some(t(5_000)), "last read + quiet_close");
    }

    fn tracked() -> Assembler {
        asm().tracking()
    }

    fn closed_ids(out: &[AssemblerOutput]) -> Vec<Uuid> {
        out.iter()
            .filter_map(|o| match o {
                AssemblerOutput::Closed(tx) => Some(tx.id),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_closed_transaction_accounts_for_the_events_that_made_it() {
        let mut a = tracked();
        let evs = [
            read("L1", 1, t(0)),
            presence(true, t(500)),
            read("L1", 2, t(1_000)),
            read("L1", 2, t(1_100)),
            presence(false, t(2_000)),
        ];
        for e in evs.iter().cloned() {
            a.handle(e);
        }
        let ids = closed_ids(&a.tick(t(3_000)));
        assert_eq!(ids.len(), 1);
        let consumed = a.take_consumed(ids[0]);
        assert_eq!(consumed.len(), evs.len(), "{consumed:?}");
        for e in &evs {
            assert!(consumed.contains(e), "{e:?} accounted to its transaction");
        }
        assert!(a.take_spent().is_empty());
        assert!(a.take_consumed(ids[0]).is_empty(), "taken once");
    }

    #[test]
    fn a_clearing_after_a_decision_on_the_loop_belongs_to_no_transaction() {
        let mut a = tracked();
        a.handle(presence(true, t(0)));
        let ids = closed_ids(&a.tick(t(30_000)));
        assert_eq!(ids.len(), 1, "closed on timeout");
        assert_eq!(a.take_consumed(ids[0]), vec![presence(true, t(0))]);
        let leave = presence(false, t(31_000));
        a.handle(leave.clone());
        assert_eq!(a.take_spent(), vec![leave]);
    }

    fn l(id: &str) -> LaneId {
        LaneId::parse(id).expect("lane id")
    }

    fn opened(out: &[AssemblerOutput]) -> bool {
        out.iter()
            .any(|o| matches!(o, AssemblerOutput::Opened { .. }))
    }

    fn refused(out: &[AssemblerOutput]) -> Vec<usize> {
        out.iter()
            .filter_map(|o| match o {
                AssemblerOutput::Refused { reads, .. } => Some(reads.len()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_closed_loop_lane_refuses_a_truck_with_all_its_reads_when_it_leaves() {
        let mut a = asm();
        assert!(a.set_closed(&l("L1"), true));
        assert!(a.handle(read("L1", 1, t(0))).is_empty(), "held as usual");
        let out = a.handle(presence(true, t(1_000)));
        assert!(!opened(&out) && refused(&out).is_empty(), "{out:?}");
        assert_eq!(a.open(&l("L1")), None);
        assert!(
            a.handle(read("L1", 2, t(1_500))).is_empty(),
            "joins the refused truck"
        );
        let out = a.handle(presence(false, t(2_000)));
        assert!(!cleared(&out) && !timed_out(&out), "{out:?}");
        assert_eq!(refused(&out), vec![2], "refused once, with both reads");
        assert_eq!(a.next_deadline(), None, "nothing waits on a timer");
    }

    #[test]
    fn a_refused_truck_that_never_leaves_is_reported_at_the_timeout() {
        let mut a = asm();
        a.set_closed(&l("L1"), true);
        a.handle(presence(true, t(0)));
        assert_eq!(a.next_deadline(), Some(t(30_000)));
        assert!(refused(&a.tick(t(29_999))).is_empty());
        assert_eq!(refused(&a.tick(t(30_000))), vec![0]);
    }

    #[test]
    fn a_reopened_lane_opens_transactions_again() {
        let mut a = asm();
        a.set_closed(&l("L1"), true);
        a.handle(presence(true, t(0)));
        assert_eq!(refused(&a.handle(presence(false, t(500)))), vec![0]);
        assert!(a.set_closed(&l("L1"), false));
        assert!(!a.is_closed(&l("L1")));
        let out = a.handle(presence(true, t(1_000)));
        assert!(opened(&out) && refused(&out).is_empty(), "{out:?}");
    }

    #[test]
    fn a_truck_refused_when_the_lane_reopens_stays_refused_until_it_leaves() {
        let mut a = asm();
        a.set_closed(&l("L1"), true);
        a.handle(presence(true, t(0)));
        a.set_closed(&l("L1"), false);
        assert!(!opened(&a.handle(read("L1", 1, t(100)))));
        assert_eq!(refused(&a.handle(presence(false, t(500)))), vec![1]);
        assert!(opened(&a.handle(presence(true, t(1_000)))));
    }

    #[test]
    fn a_closed_loopless_lane_refuses_one_truck_per_quiet_gap() {
        let mut a = asm();
        a.set_closed(&l("L2"), true);
        assert!(refused(&a.handle(read("L2", 1, t(0)))).is_empty());
        assert!(a.handle(read("L2", 2, t(3_000))).is_empty(), "same truck");
        // quiet_close is 4 s after the last read.
        assert_eq!(a.next_deadline(), Some(t(7_000)));
        assert_eq!(refused(&a.tick(t(7_000))), vec![2]);
        assert!(
            a.handle(read("L2", 3, t(8_000))).is_empty(),
            "the next truck"
        );
        assert_eq!(
            refused(&a.close_all(t(9_000))),
            vec![1],
            "reported at shutdown"
        );
        assert_eq!(a.open(&l("L2")), None);
    }

    #[test]
    fn closing_a_lane_lets_its_open_transaction_end_as_usual() {
        let mut a = truck_on_l1();
        a.set_closed(&l("L1"), true);
        a.handle(presence(false, t(500)));
        let out = a.tick(t(1_500));
        assert_eq!(closed_ids(&out).len(), 1, "{out:?}");
    }

    #[test]
    fn closing_an_unknown_lane_is_refused() {
        let mut a = asm();
        assert!(!a.set_closed(&l("L9"), true));
        assert!(!a.is_closed(&l("L9")));
    }

    #[test]
    fn departure_grace_is_per_lane() {
        let mut slow = lane("L1", true);
        slow.departure_grace = Duration::from_secs(3);
        let mut a = on_g1(&[slow]);
        a.handle(presence(true, t(0)));
        a.handle(presence(false, t(1_000)));
        assert_eq!(a.next_deadline(), Some(t(4_000)));
        assert!(
            closed_ids(&a.tick(t(3_999))).is_empty(),
            "still in its grace"
        );
        assert_eq!(closed_ids(&a.tick(t(4_000))).len(), 1);
    }

    #[test]
    fn pre_open_grace_is_per_lane_and_can_be_changed() {
        let mut a = asm();
        let mut timings = LaneTimings::of(&lane("L1", true));
        timings.pre_open_grace = Duration::from_secs(1);
        assert!(a.set_timings(&l("L1"), timings));
        a.handle(read("L1", 1, t(0)));
        // 2 s later the read is past the 1 s grace: an orphan, not part of the truck.
        let out = a.handle(presence(true, t(2_000)));
        assert!(opened(&out), "{out:?}");
        assert!(
            out.iter()
                .any(|o| matches!(o, AssemblerOutput::OrphanRead(_))),
            "{out:?}"
        );
        assert!(a.open(&l("L1")).is_some_and(|tx| tx.reads.is_empty()));
    }

    #[test]
    fn reconfiguring_keeps_the_open_transaction_of_a_kept_lane() {
        let mut a = tracked();
        a.handle(presence(true, t(0)));
        a.handle(read("L1", 1, t(100)));
        let mut l1 = lane("L1", true);
        l1.routes.fast = "new fast".into();
        let out = a.reconfigure(&[l1, lane("L3", false)], t(200));
        assert!(out.is_empty(), "nothing closes: {out:?}");
        let open = a
            .open(&LaneId::parse("L1").expect("lane"))
            .expect("still open");
        assert_eq!(open.reads.len(), 1);
        a.handle(presence(false, t(1_000)));
        let ids = closed_ids(&a.tick(t(2_000)));
        assert_eq!(ids.len(), 1, "closed on departure as usual");
        assert_eq!(a.take_consumed(ids[0]).len(), 3, "its events accounted");
    }

    #[test]
    fn a_removed_lane_closes_its_transaction_and_gives_up_its_held_reads() {
        let mut a = tracked();
        a.handle(read("L1", 9, t(0)));
        a.handle(read("L2", 1, t(0)));
        let out = a.reconfigure(&[lane("L1", true)], t(500));
        let closed: Vec<&GateTransaction> = out
            .iter()
            .filter_map(|o| match o {
                AssemblerOutput::Closed(tx) => Some(tx),
                _ => None,
            })
            .collect();
        assert_eq!(closed.len(), 1, "{out:?}");
        assert_eq!(closed[0].close_reason, CloseReason::LaneRemoved);
        assert_eq!(closed[0].lane.as_str(), "L2");
        assert_eq!(a.take_consumed(closed[0].id).len(), 1, "kept after removal");
        assert!(a.open(&LaneId::parse("L2").expect("lane")).is_none());
        let orphan = a.handle(read("L2", 2, t(600)));
        assert!(
            matches!(orphan.as_slice(), [AssemblerOutput::OrphanRead(_)]),
            "a read for a removed lane is an orphan: {orphan:?}"
        );
    }

    #[test]
    fn an_added_lane_takes_reads() {
        let mut a = tracked();
        let out = a.reconfigure(
            &[lane("L1", true), lane("L2", false), lane("L3", false)],
            t(0),
        );
        assert!(out.is_empty());
        let out = a.handle(read("L3", 1, t(100)));
        assert!(
            out.iter().any(
                |o| matches!(o, AssemblerOutput::Opened { lane, .. } if lane.as_str() == "L3")
            ),
            "{out:?}"
        );
    }

    #[test]
    fn an_untracked_assembler_keeps_no_events() {
        let mut a = truck_on_l1();
        a.handle(presence(false, t(100)));
        let ids = closed_ids(&a.tick(t(2_000)));
        assert_eq!(ids.len(), 1);
        assert!(a.take_consumed(ids[0]).is_empty());
        assert!(a.take_spent().is_empty());
    }

    #[test]
    fn a_tick_closes_exactly_the_lanes_whose_quiet_close_has_passed_among_many() {
        let lanes: Vec<LaneConfig> = (0..300).map(|i| lane(&format!("Q{i}"), false)).collect();
        let mut a = on_g1(&lanes);
        // Lane i reads at i ms; quiet_close is 4 s.
        for i in 0..300 {
            a.handle(read(&format!("Q{i}"), 1, t(i)));
        }
        assert_eq!(
            a.next_deadline(),
            Some(t(4_000)),
            "the first lane's quiet_close"
        );
        let closed: Vec<String> = a
            .tick(t(4_099))
            .iter()
            .filter_map(|o| match o {
                AssemblerOutput::Closed(tx) => Some(tx.lane.to_string()),
                _ => None,
            })
            .collect();
        let mut want: Vec<String> = (0..100).map(|i| format!("Q{i}")).collect();
        want.sort();
        assert_eq!(
            closed, want,
            "lanes 0..99 are due, in lane order; none other"
        );
        assert_eq!(a.next_deadline(), Some(t(4_100)));
        // A read on a due lane before the tick moves its deadline.
        a.handle(read("Q100", 2, t(4_100)));
        assert_eq!(a.next_deadline(), Some(t(4_101)), "Q100 stays open");
        assert_eq!(a.next_deadline(), a.scanned_deadline());
        assert!(a.open(&LaneId::parse("Q100").expect("lane")).is_some());
    }

    #[test]
    fn changed_timings_and_removed_lanes_move_the_next_deadline() {
        let mut a = asm();
        a.handle(read("L2", 1, t(0)));
        assert_eq!(a.next_deadline(), Some(t(4_000)));
        let l2 = LaneId::parse("L2").expect("lane");
        a.set_timings(
            &l2,
            LaneTimings {
                pre_open_grace: Duration::from_secs(5),
                departure_grace: Duration::from_secs(1),
                quiet_close: Duration::from_secs(1),
            },
        );
        assert_eq!(
            a.next_deadline(),
            Some(t(1_000)),
            "the new quiet_close applies"
        );
        let out = a.reconfigure(&[lane("L1", true)], t(500));
        assert!(out.iter().any(|o| matches!(o, AssemblerOutput::Closed(_))));
        assert_eq!(a.next_deadline(), None, "the removed lane waits on nothing");
        assert!(a.tick(t(10_000)).is_empty());
    }

    #[derive(Debug, Clone)]
    enum Ev {
        Read {
            loop_lane: bool,
            value: u8,
        },
        Presence(bool),
        /// The wall clock steps by this many milliseconds.
        Step(i64),
    }

    fn ev() -> impl Strategy<Value = (Ev, i64)> {
        let e = prop_oneof![
            6 => (any::<bool>(), 0u8..4).prop_map(|(loop_lane, value)| Ev::Read { loop_lane, value }),
            4 => any::<bool>().prop_map(Ev::Presence),
            1 => prop::sample::select(vec![-3_600_000i64, -2_000, 1_500, 3_600_000]).prop_map(Ev::Step),
        ];
        (e, 0i64..8_000)
    }

    /// Where a run of generated events stands: the time passed and how far the wall clock
    /// stepped, in milliseconds; an event's wall time is their sum.
    #[derive(Default)]
    struct Walk {
        now: i64,
        stepped: i64,
    }

    impl Walk {
        /// `dt` later: the assembler event `e` stands for at that wall time, or `None` for
        /// a clock step, which `a` is told of.
        fn next(&mut self, a: &mut Assembler, e: Ev, dt: i64) -> Option<AssemblerEvent> {
            self.now += dt;
            let wall = t(self.now + self.stepped);
            match e {
                Ev::Read { loop_lane, value } => {
                    Some(read(if loop_lane { "L1" } else { "L2" }, value, wall))
                }
                Ev::Presence(present) => Some(presence(present, wall)),
                Ev::Step(ms) => {
                    self.stepped += ms;
                    a.clock_stepped(SignedDuration::from_millis(ms));
                    None
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Every event handed to a tracking assembler ends in exactly one place: a closed
        /// transaction's events, an orphan read, or the spent presence changes — so the
        /// read log removes each exactly once.
        #[test]
        fn every_event_is_accounted_exactly_once(events in proptest::collection::vec(ev(), 1..60)) {
            let mut a = tracked();
            let mut w = Walk::default();
            let mut handed = Vec::new();
            let mut outputs = Vec::new();
            for (e, dt) in events {
                let Some(event) = w.next(&mut a, e, dt) else {
                    continue;
                };
                handed.push(event.clone());
                outputs.extend(a.handle(event));
            }
            outputs.extend(a.close_all(t(w.now + w.stepped + 100_000)));
            let mut accounted = a.take_spent();
            for o in outputs {
                match o {
                    AssemblerOutput::Closed(tx) => accounted.extend(a.take_consumed(tx.id)),
                    AssemblerOutput::OrphanRead(r) => accounted.push(AssemblerEvent::Read(r)),
                    _ => {}
                }
            }
            let key = |e: &AssemblerEvent| format!("{e:?}");
            let mut want: Vec<String> = handed.iter().map(key).collect();
            let mut got: Vec<String> = accounted.iter().map(key).collect();
            want.sort();
            got.sort();
            prop_assert_eq!(got, want);
        }

        /// The deadline is exact: a tick a nanosecond before it changes nothing, a tick
        /// at it closes a transaction or gives up a read.
        #[test]
        fn next_deadline_is_exactly_when_tick_acts(events in proptest::collection::vec(ev(), 1..60)) {
            let mut a = asm();
            let mut w = Walk::default();
            for (e, dt) in events {
                let Some(event) = w.next(&mut a, e, dt) else {
                    prop_assert_eq!(a.next_deadline(), a.scanned_deadline(), "the index agrees after a step");
                    continue;
                };
                a.handle(event);
                prop_assert_eq!(a.next_deadline(), a.scanned_deadline(), "the index agrees with a pass over the lanes");
                if let Some(d) = a.next_deadline() {
                    let before = d.checked_sub(SignedDuration::from_nanos(1)).expect("in range");
                    prop_assert!(!timed_out(&a.tick(before)), "tick before the deadline acted");
                    prop_assert_eq!(a.next_deadline(), Some(d), "a tick that acts on nothing changes nothing");
                    prop_assert!(timed_out(&a.tick(d)), "tick at the deadline did nothing");
                    prop_assert_eq!(a.next_deadline(), a.scanned_deadline(), "the index agrees after a tick");
                    w.now = w.now.max(d.as_millisecond() - 1_800_000_000_000 - w.stepped);
                }
            }
        }
    }
}
