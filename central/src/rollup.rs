//! Programme roll-ups: the counts behind the programme page, kept up to date at ingest so
//! its figures are exact over any range and outlive event retention.
//!
//! Per UTC hour (of the decision's `decided_at`), group and figure, a count, and the
//! same per UTC day:
//! - groups: [`AEO`] or [`NON_AEO`] traffic, `p:CODE` for each programme among the
//!   active parties of AEO traffic, `o:OPERATOR` for each declared operator (the rule of
//!   [`is_aeo`] and the page's module documentation);
//! - figures: the decision (`FAST`, `STANDARD`, `INSPECT`), and `t:B` for a decision whose
//!   gate transaction (same id, same gate) is stored, where `B` is the [`bucket_of`] its
//!   time at the gate (opened → closed) falls in.
//!
//! Beside them, two packed levels ([`Level`]): per UTC day and per UTC calendar month,
//! one row per (period, group) holding all of that group's figures ([`pack`]), so a year
//! reads twelve rows per group instead of one per hour or day and figure. A range reads
//! whole months from the monthly level, the whole days at its ends from the daily packed
//! level, and the hours at its very ends from the hourly counts ([`spans`]). The
//! hourly counts are what a store copy carries; the packed levels are built from them
//! ([`packed_from_daily`], whose level starts are the same from an hour as from its
//! day).
//!
//! The decision and its gate transaction arrive as separate entries, in any order and
//! possibly in different batches. The half that comes first waits in a pending table
//! keyed by (gate, transaction); the other half takes it and the time is counted then.
//! [`Batch`] collects a batch's halves and counts without any I/O; a backend implements
//! [`RollupSink`] and writes batches through a [`Fold`]: redb the batches of one group
//! commit, inside its write transaction; PostgreSQL, which queues each ingest's batch,
//! many queued batches of all gates at once.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use protocol::schema::{AeoStatus, Decision, EventBody, GateTransaction, LaneDecision};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::StoredEvent;
use crate::stats;

/// Stored events per batch when a store's roll-ups are built from its events (a store
/// made before the roll-ups, on open or migration).
pub const REBUILD_CHUNK: usize = 10_000;

/// Seconds in an hour and in a day (UTC has no leap seconds in Unix time).
pub const HOUR: i64 = 3_600;
pub const DAY: i64 = 86_400;

/// The start of the UTC day an hour start (or any second) falls in.
#[must_use]
pub fn day_start(second: i64) -> i64 {
    second.div_euclid(DAY) * DAY
}

/// The start of the UTC calendar month a second falls in (`None` outside the times a
/// [`Timestamp`] holds).
#[must_use]
pub fn month_start(second: i64) -> Option<i64> {
    let date = Timestamp::from_second(second)
        .ok()?
        .to_zoned(TimeZone::UTC)
        .date()
        .first_of_month();
    Some(date.to_zoned(TimeZone::UTC).ok()?.timestamp().as_second())
}

/// The start of the UTC month after the one `second` falls in.
fn next_month_start(second: i64) -> Option<i64> {
    let date = Timestamp::from_second(second)
        .ok()?
        .to_zoned(TimeZone::UTC)
        .date()
        .last_of_month()
        .tomorrow()
        .ok()?;
    Some(date.to_zoned(TimeZone::UTC).ok()?.timestamp().as_second())
}

/// A packed roll-up level: one row per (period, group) with all the group's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Per UTC day.
    Day,
    /// Per UTC calendar month.
    Month,
}

impl Level {
    /// The level as stored (a key's first part).
    #[must_use]
    pub fn code(self) -> u8 {
        match self {
            Level::Day => 1,
            Level::Month => 2,
        }
    }

    /// The start of the period an hour start falls in.
    #[must_use]
    pub fn start(self, hour: i64) -> i64 {
        match self {
            Level::Day => day_start(hour),
            // Stored hours are times a decision carried, always in range.
            Level::Month => month_start(hour).unwrap_or_else(|| day_start(hour)),
        }
    }
}

/// What a range reads, each a span `[a, b)` of period starts: hour starts from the
/// hourly roll-ups (its two ends), day starts from the daily packed level (the whole
/// days at its ends) and month starts from the monthly packed level (the whole months
/// between).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spans {
    pub hours: [(i64, i64); 2],
    pub days: [(i64, i64); 2],
    pub months: (i64, i64),
}

/// The spans of the hours whose start is in `[hour_start(from), to)` (from the first
/// hour when `from` is `None`): each hour in exactly one span, and as few rows read as
/// the levels allow.
#[must_use]
pub fn spans(from: Option<Timestamp>, to: Timestamp) -> Spans {
    let first = stats::hour_start(from.unwrap_or(Timestamp::MIN));
    // The first hour start not included.
    let end = stats::hour_start(to) + if to.as_second() % HOUR == 0 { 0 } else { HOUR };
    let only_hours = |a: i64, b: i64| Spans {
        hours: [(a, b), (b, b)],
        days: [(b, b); 2],
        months: (b, b),
    };
    if first >= end {
        return only_hours(first, first);
    }
    let day_from = day_start(first + DAY - HOUR);
    let day_to = day_start(end);
    if day_from >= day_to {
        return only_hours(first, end);
    }
    let hours = [(first, day_from), (day_to, end)];
    // The first month start at or after `day_from`, and the last at or before `day_to`.
    // (The month of the first times a timestamp holds starts before them: `None`.)
    let m_from = match month_start(day_from) {
        Some(m) if m == day_from => Some(m),
        _ => next_month_start(day_from),
    };
    let months = m_from.zip(month_start(day_to));
    match months {
        Some((m_from, m_to)) if m_from < m_to => Spans {
            hours,
            days: [(day_from, m_from), (m_to, day_to)],
            months: (m_from, m_to),
        },
        _ => Spans {
            hours,
            days: [(day_from, day_to), (day_to, day_to)],
            months: (day_to, day_to),
        },
    }
}

/// Counts by (hour start s, group, figure): what a batch adds, or a range's figures.
pub type HourCounts = BTreeMap<(i64, String, String), i64>;

/// The counts of `counts` (by hour) added up by day.
#[must_use]
pub fn by_day(counts: &HourCounts) -> HourCounts {
    let mut out = HourCounts::new();
    for ((hour, group, figure), n) in counts {
        *out.entry((day_start(*hour), group.clone(), figure.clone()))
            .or_default() += n;
    }
    out
}

/// One group's figures in one period: figure index ([`figure_index`]) → count.
pub type Packed = BTreeMap<u16, u64>;

/// The packed levels' increments of `counts` (by hour): (level, period start, group) →
/// figures. A figure without an index (none that [`Batch`] counts) is left out.
#[must_use]
pub fn packed(counts: &HourCounts) -> BTreeMap<(Level, i64, String), Packed> {
    let mut out: BTreeMap<(Level, i64, String), Packed> = BTreeMap::new();
    for ((hour, group, figure), n) in counts {
        let (Some(i), Ok(n)) = (figure_index(figure), u64::try_from(*n)) else {
            continue;
        };
        for level in [Level::Day, Level::Month] {
            *out.entry((level, level.start(*hour), group.clone()))
                .or_default()
                .entry(i)
                .or_default() += n;
        }
    }
    out
}

/// Logs that the packed levels of a store made before them were built from its `hourly`
/// counts into `rows` packed rows (the same words on both backends).
pub fn log_packed_built(hourly: u64, rows: u64, took: std::time::Duration) {
    if hourly > 0 {
        tracing::info!(
            hourly,
            rows,
            took = ?took,
            "programme roll-ups by day and month packed from the hourly counts"
        );
    }
}

/// The packed levels built from unpacked counts by day or by hour (a store made before
/// them, or a copy's target): (level, period start, group) → figures.
pub fn packed_from_daily<E>(
    daily: impl IntoIterator<Item = Result<(i64, String, String, u64), E>>,
) -> Result<BTreeMap<(Level, i64, String), Packed>, E> {
    let mut out: BTreeMap<(Level, i64, String), Packed> = BTreeMap::new();
    for row in daily {
        let (day, group, figure, n) = row?;
        let Some(i) = figure_index(&figure) else {
            continue;
        };
        for level in [Level::Day, Level::Month] {
            *out.entry((level, level.start(day), group.clone()))
                .or_default()
                .entry(i)
                .or_default() += n;
        }
    }
    Ok(out)
}

/// The decisions in figure index order; the time buckets follow them.
const DECISIONS: [LaneDecision; 3] = [
    LaneDecision::Fast,
    LaneDecision::Standard,
    LaneDecision::Inspect,
];

/// A figure's index in a packed row: the decisions 0–2, then time bucket `B` at 3 + B.
#[must_use]
pub fn figure_index(figure: &str) -> Option<u16> {
    if let Some(b) = figure.strip_prefix(TIME) {
        let b: u16 = b.parse().ok()?;
        return b.checked_add(3);
    }
    DECISIONS
        .iter()
        .position(|d| d.as_str() == figure)
        .and_then(|i| u16::try_from(i).ok())
}

/// The figure of an index ([`figure_index`]).
#[must_use]
pub fn figure_name(index: u16) -> String {
    match index {
        0..=2 => DECISIONS[usize::from(index)].as_str().to_owned(),
        b => format!("{TIME}{}", b - 3),
    }
}

/// Version byte of a packed row.
const PACKED_VERSION: u8 = 1;

/// A packed row: the version byte, then per figure in index order its index and its
/// count, each an unsigned LEB128 varint (a few bytes per figure).
#[must_use]
pub fn pack(figures: &Packed) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + figures.len() * 4);
    out.push(PACKED_VERSION);
    for (i, n) in figures {
        put_varint(&mut out, u64::from(*i));
        put_varint(&mut out, *n);
    }
    out
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let low = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

/// Reads one varint at `*at`, moving past it.
fn get_varint(bytes: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes
            .get(*at)
            .ok_or_else(|| format!("packed row ends inside a number at byte {at}"))?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(format!(
        "packed row has a number longer than 64 bits before byte {at}"
    ))
}

/// Calls `each(index, count)` for every figure of a packed row ([`pack`]).
///
/// # Errors
/// The bytes are not a packed row (why, for [`crate::store::StoreError::Corrupt`]).
pub fn unpack(bytes: &[u8], mut each: impl FnMut(u16, u64)) -> Result<(), String> {
    match bytes.first() {
        Some(&PACKED_VERSION) => {}
        Some(v) => {
            return Err(format!(
                "packed row version {v}; this build reads {PACKED_VERSION}"
            ));
        }
        None => return Err("empty packed row".to_owned()),
    }
    let mut at = 1;
    while at < bytes.len() {
        let i = get_varint(bytes, &mut at)?;
        let i = u16::try_from(i).map_err(|_| format!("figure index {i} out of range"))?;
        each(i, get_varint(bytes, &mut at)?);
    }
    Ok(())
}

/// A stored packed row (if any) with `add` added to it.
///
/// # Errors
/// The stored bytes are not a packed row.
pub fn add_packed(stored: Option<&[u8]>, add: &Packed) -> Result<Vec<u8>, String> {
    let mut all = add.clone();
    if let Some(b) = stored {
        unpack(b, |i, n| {
            let e = all.entry(i).or_default();
            *e = e.saturating_add(n);
        })?;
    }
    Ok(pack(&all))
}

/// Sums of roll-up rows by group and figure, as a backend reads a range: packed rows
/// and single counts alike.
#[derive(Debug, Default)]
pub struct Sums {
    /// Group → count by figure index.
    by_group: HashMap<String, Vec<u64>>,
}

impl Sums {
    fn group(&mut self, group: &str) -> &mut Vec<u64> {
        // Looked up without allocating: most rows are of a group already seen.
        if !self.by_group.contains_key(group) {
            self.by_group.insert(group.to_owned(), Vec::new());
        }
        self.by_group.get_mut(group).expect("inserted above")
    }

    fn add_index(counts: &mut Vec<u64>, i: u16, n: u64) {
        let i = usize::from(i);
        if counts.len() <= i {
            counts.resize(i + 1, 0);
        }
        counts[i] = counts[i].saturating_add(n);
    }

    /// Adds one count (a figure without an index is left out, as [`packed`] leaves it).
    pub fn add(&mut self, group: &str, figure: &str, n: u64) {
        if let Some(i) = figure_index(figure) {
            Self::add_index(self.group(group), i, n);
        }
    }

    /// Adds a packed row's figures.
    ///
    /// # Errors
    /// The bytes are not a packed row.
    pub fn add_packed(&mut self, group: &str, packed: &[u8]) -> Result<(), String> {
        let counts = self.group(group);
        unpack(packed, |i, n| Self::add_index(counts, i, n))
    }

    /// (group, figure) → count, for every figure counted.
    #[must_use]
    pub fn counts(self) -> BTreeMap<(String, String), u64> {
        let mut out = BTreeMap::new();
        for (group, counts) in self.by_group {
            for (i, n) in counts.iter().enumerate() {
                if *n > 0 {
                    let i = u16::try_from(i).unwrap_or(u16::MAX);
                    out.insert((group.clone(), figure_name(i)), *n);
                }
            }
        }
        out
    }
}

/// Group of AEO traffic.
pub const AEO: &str = "AEO";
/// Group of non-AEO traffic.
pub const NON_AEO: &str = "NON_AEO";
/// Prefix of a programme's group.
pub const PROGRAMME: &str = "p:";
/// Prefix of an operator's group.
pub const OPERATOR: &str = "o:";
/// Prefix of a time-at-gate bucket's figure.
pub const TIME: &str = "t:";

/// Whether a decision's traffic is AEO traffic: every declared party found in the
/// registry with status `ACTIVE` (no party at all is non-AEO).
#[must_use]
pub fn is_aeo(d: &Decision) -> bool {
    !d.parties.is_empty()
        && d.parties
            .iter()
            .all(|p| p.status == Some(AeoStatus::Active))
}

/// Bucket ranges of time at the gate: (up to, width) in seconds. Each bucket is at most
/// 1/6 of its lower bound wide above 30 s (5 s below two minutes, 15 s below ten, one
/// minute below an hour, ten minutes below six hours); the last bucket is open.
const BUCKETS: [(i64, i64); 4] = [(120, 5), (600, 15), (3600, 60), (21_600, 600)];

/// The bucket a time at the gate (seconds; negative counts as 0) falls in.
#[must_use]
pub fn bucket_of(secs: i64) -> u16 {
    let s = secs.max(0);
    let mut first = 0i64;
    let mut from = 0i64;
    for (to, width) in BUCKETS {
        if s < to {
            return u16::try_from(first + (s - from) / width).unwrap_or(u16::MAX);
        }
        first += (to - from) / width;
        from = to;
    }
    u16::try_from(first).unwrap_or(u16::MAX)
}

/// A bucket's seconds: `[from, to)`, `to` `None` for the last, open bucket.
#[must_use]
pub fn bucket_bounds(bucket: u16) -> (i64, Option<i64>) {
    let mut b = i64::from(bucket);
    let mut from = 0i64;
    for (to, width) in BUCKETS {
        let n = (to - from) / width;
        if b < n {
            let lo = from + b * width;
            return (lo, Some(lo + width));
        }
        b -= n;
        from = to;
    }
    (from, None)
}

/// One half of the pair that makes a time at the gate, waiting for the other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Half {
    /// A decision: its hour and the groups it counts under.
    Decision { hour: i64, groups: Vec<String> },
    /// A gate transaction: its time at the gate in seconds.
    Time { secs: i64 },
}

/// What one batch adds to the roll-ups, once its halves are paired.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rollup {
    /// (hour start s, group, figure) → increment.
    pub counts: HourCounts,
    /// Operator id → name as declared (stored only when the operator has none yet).
    pub names: BTreeMap<String, String>,
    /// Halves still without their other half, by transaction.
    pub pending: BTreeMap<Uuid, Vec<Half>>,
}

/// A batch's decisions and gate transactions (only stored, non-refused entries).
#[derive(Debug, Default)]
pub struct Batch {
    out: Rollup,
    /// The batch's halves, by transaction.
    halves: BTreeMap<Uuid, Vec<Half>>,
}

/// The groups a decision counts under, and the declared operators' names.
fn groups(d: &Decision) -> (Vec<String>, Vec<(String, String)>) {
    let aeo = is_aeo(d);
    let mut groups = vec![if aeo { AEO } else { NON_AEO }.to_owned()];
    let mut names = Vec::new();
    for p in &d.parties {
        let Some(op) = &p.operator else { continue };
        if aeo {
            let g = format!("{PROGRAMME}{}", op.programme().code());
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
        let key = op.to_string();
        let g = format!("{OPERATOR}{key}");
        if !groups.contains(&g) {
            groups.push(g);
            names.push((key, p.name.clone()));
        }
    }
    (groups, names)
}

impl Batch {
    /// Counts a stored decision.
    pub fn decision(&mut self, d: &Decision) {
        let hour = stats::hour_start(d.decided_at);
        let (groups, names) = groups(d);
        for g in &groups {
            *self
                .out
                .counts
                .entry((hour, g.clone(), d.decision.as_str().to_owned()))
                .or_default() += 1;
        }
        for (op, name) in names {
            self.out.names.entry(op).or_insert(name);
        }
        self.halves
            .entry(d.transaction_id)
            .or_default()
            .push(Half::Decision { hour, groups });
    }

    /// Notes a stored gate transaction's time at the gate.
    pub fn transaction(&mut self, t: &GateTransaction) {
        let secs = t.closed_at.duration_since(t.opened_at).as_secs();
        self.halves
            .entry(t.id)
            .or_default()
            .push(Half::Time { secs });
    }

    /// Adds a stored event as ingest adds it: a decision or a gate transaction that was
    /// not refused; anything else counts nothing.
    pub fn event(&mut self, e: &StoredEvent) {
        if e.refused {
            return;
        }
        match &e.entry.body {
            EventBody::Decision { decision } => self.decision(decision),
            EventBody::Transaction { transaction } => self.transaction(transaction),
            _ => {}
        }
    }

    /// Whether the batch had neither decisions nor gate transactions.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.halves.is_empty()
    }

    /// The transactions whose stored pending halves the batch needs.
    #[must_use]
    pub fn transactions(&self) -> Vec<Uuid> {
        self.halves.keys().copied().collect()
    }

    /// Adds a later batch of the same gate: its counts, the names it saw first, and its
    /// halves after this batch's (so pairing stays oldest first).
    pub fn merge(&mut self, later: Batch) {
        for (k, n) in later.out.counts {
            *self.out.counts.entry(k).or_default() += n;
        }
        for (op, name) in later.out.names {
            self.out.names.entry(op).or_insert(name);
        }
        for (t, h) in later.halves {
            self.halves.entry(t).or_default().extend(h);
        }
    }

    /// The batch as it waits in a store's queue of batches not yet folded into the
    /// roll-ups ([`Batch::from_queued`] reads it back).
    ///
    /// # Errors
    /// None in practice: the encoding of plain integers, strings and ids.
    pub fn to_queued(&self) -> Result<Vec<u8>, String> {
        let q = QueuedRef {
            counts: self.out.counts.iter().collect(),
            names: self.out.names.iter().collect(),
            halves: self.halves.iter().collect(),
        };
        postcard::to_allocvec(&q).map_err(|e| e.to_string())
    }

    /// A batch from its queued form ([`Batch::to_queued`]).
    ///
    /// # Errors
    /// Bytes that are not a queued batch.
    pub fn from_queued(bytes: &[u8]) -> Result<Batch, String> {
        let q: Queued = postcard::from_bytes(bytes).map_err(|e| e.to_string())?;
        Ok(Batch {
            out: Rollup {
                counts: q.counts.into_iter().collect(),
                names: q.names.into_iter().collect(),
                pending: BTreeMap::new(),
            },
            halves: q.halves.into_iter().collect(),
        })
    }

    /// Pairs the batch's halves with the stored pending ones (taken from the store),
    /// oldest first: each time goes to one decision.
    #[must_use]
    pub fn finish(mut self, stored: Vec<(Uuid, Vec<Half>)>) -> Rollup {
        let mut all: BTreeMap<Uuid, Vec<Half>> = BTreeMap::new();
        for (t, h) in stored {
            all.entry(t).or_default().extend(h);
        }
        for (t, h) in std::mem::take(&mut self.halves) {
            all.entry(t).or_default().extend(h);
        }
        for (txn, halves) in all {
            let (mut decisions, mut times) = (Vec::new(), Vec::new());
            for h in halves {
                match h {
                    Half::Decision { hour, groups } => decisions.push((hour, groups)),
                    Half::Time { secs } => times.push(secs),
                }
            }
            let paired = decisions.len().min(times.len());
            for ((hour, groups), secs) in decisions.drain(..paired).zip(times.drain(..paired)) {
                let figure = format!("{TIME}{}", bucket_of(secs));
                for g in groups {
                    *self
                        .out
                        .counts
                        .entry((hour, g, figure.clone()))
                        .or_default() += 1;
                }
            }
            let rest: Vec<Half> = decisions
                .into_iter()
                .map(|(hour, groups)| Half::Decision { hour, groups })
                .chain(times.into_iter().map(|secs| Half::Time { secs }))
                .collect();
            if !rest.is_empty() {
                self.out.pending.insert(txn, rest);
            }
        }
        self.out
    }
}

/// A batch's queued form, as written ([`Batch::to_queued`]).
#[derive(Serialize)]
struct QueuedRef<'a> {
    counts: Vec<(&'a (i64, String, String), &'a i64)>,
    names: Vec<(&'a String, &'a String)>,
    halves: Vec<(&'a Uuid, &'a Vec<Half>)>,
}

/// A batch's queued form, as read back.
#[derive(Deserialize)]
struct Queued {
    counts: Vec<((i64, String, String), i64)>,
    names: Vec<(String, String)>,
    halves: Vec<(Uuid, Vec<Half>)>,
}

/// Queued batches of several gates merged per gate, oldest first: what folding them
/// into the roll-ups, or counting them beside the roll-ups, works on.
#[derive(Debug, Default)]
pub struct Queue {
    by_gate: BTreeMap<String, Batch>,
    batches: usize,
}

impl Queue {
    /// Adds the next queued batch (in the order they were queued).
    ///
    /// # Errors
    /// Bytes that are not a queued batch.
    pub fn push(&mut self, gate: &str, bytes: &[u8]) -> Result<(), String> {
        let batch = Batch::from_queued(bytes)?;
        match self.by_gate.get_mut(gate) {
            Some(b) => b.merge(batch),
            None => {
                self.by_gate.insert(gate.to_owned(), batch);
            }
        }
        self.batches += 1;
        Ok(())
    }

    /// How many queued batches were added.
    #[must_use]
    pub fn batches(&self) -> usize {
        self.batches
    }

    /// The merged batch of each gate.
    pub fn into_gates(self) -> impl Iterator<Item = (String, Batch)> {
        self.by_gate.into_iter()
    }
}

/// Adds to `sums` what a batch's roll-up holds for the hours of `sp`, and to `names` the
/// operators' names it declared that `names` lacks: how a reader counts a batch that is
/// still queued, beside the roll-ups already stored.
pub fn add_in_range(r: &Rollup, sp: &Spans, sums: &mut Sums, names: &mut BTreeMap<String, String>) {
    let (first, end) = (sp.hours[0].0, sp.hours[1].1);
    for ((hour, group, figure), n) in &r.counts {
        if let Ok(n) = u64::try_from(*n)
            && *hour >= first
            && *hour < end
        {
            sums.add(group, figure, n);
        }
    }
    for (op, name) in &r.names {
        names.entry(op.clone()).or_insert_with(|| name.clone());
    }
}

/// The roll-up storage of one backend, inside a write transaction.
pub trait RollupSink {
    type Error;
    /// Removes and returns the pending halves stored for these transactions of `gate`.
    fn take_pending(
        &mut self,
        gate: &str,
        txns: &[Uuid],
    ) -> Result<Vec<(Uuid, Vec<Half>)>, Self::Error>;
    /// Stores halves of `gate` still without their other half.
    fn put_pending(
        &mut self,
        gate: &str,
        pending: BTreeMap<Uuid, Vec<Half>>,
    ) -> Result<(), Self::Error>;
    /// Adds counts (hour start, group, figure) → increment to the hourly and packed
    /// levels, and stores the names of operators that have none.
    fn add_counts(
        &mut self,
        counts: HourCounts,
        names: BTreeMap<String, String>,
    ) -> Result<(), Self::Error>;
}

/// The roll-ups of several batches (of one gate or many) stored in one write transaction:
/// each batch's halves are paired with its gate's stored ones and what stays unpaired is
/// stored at once (so a later batch of the same gate pairs with it), while the counts and
/// names are added up here and written once, by [`Fold::write`]. Batches mostly count
/// under the same hours and groups, so each stored row is read and rewritten once per
/// transaction instead of once per batch; counts only ever increase, so the sum written
/// is what writing each batch's would have left.
#[derive(Debug, Default)]
pub struct Fold {
    counts: HourCounts,
    names: BTreeMap<String, String>,
}

impl Fold {
    /// Pairs `batch`'s halves with those stored for `gate`, stores what stays pending and
    /// keeps the counts and names.
    ///
    /// # Errors
    /// The sink's.
    pub fn add<S: RollupSink>(
        &mut self,
        sink: &mut S,
        gate: &str,
        batch: Batch,
    ) -> Result<(), S::Error> {
        if batch.is_empty() {
            return Ok(());
        }
        let stored = sink.take_pending(gate, &batch.transactions())?;
        let r = batch.finish(stored);
        sink.put_pending(gate, r.pending)?;
        for (k, n) in r.counts {
            *self.counts.entry(k).or_default() += n;
        }
        for (op, name) in r.names {
            // The first batch's name is the one declared first.
            self.names.entry(op).or_insert(name);
        }
        Ok(())
    }

    /// Writes the counts and names of every batch added.
    ///
    /// # Errors
    /// The sink's.
    pub fn write<S: RollupSink>(self, sink: &mut S) -> Result<(), S::Error> {
        if self.counts.is_empty() && self.names.is_empty() {
            return Ok(());
        }
        sink.add_counts(self.counts, self.names)
    }
}

/// Brings the roll-ups up to date with one batch of `gate` (a [`Fold`] of one).
///
/// # Errors
/// The sink's.
pub fn store<S: RollupSink>(sink: &mut S, gate: &str, batch: Batch) -> Result<(), S::Error> {
    let mut fold = Fold::default();
    fold.add(sink, gate, batch)?;
    fold.write(sink)
}

/// The roll-ups summed over a range of hours, as a backend reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProgrammeCounts {
    /// (group, figure) → count.
    pub counts: BTreeMap<(String, String), u64>,
    /// Names of the operators among the groups.
    pub names: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_second_falls_in_the_bucket_whose_bounds_hold_it() {
        for s in (0..30_000).step_by(7) {
            let b = bucket_of(s);
            let (lo, hi) = bucket_bounds(b);
            assert!(
                lo <= s && hi.is_none_or(|h| s < h),
                "{s} in {b}: {lo}..{hi:?}"
            );
        }
        assert_eq!(bucket_of(-5), 0);
        assert_eq!(bucket_bounds(bucket_of(1_000_000)), (21_600, None));
        assert_eq!(bucket_bounds(bucket_of(61)), (60, Some(65)));
    }

    /// The hour starts a range's spans cover, in order.
    fn covered(sp: &Spans) -> Vec<i64> {
        let mut covered = Vec::new();
        for (a, b) in sp.hours {
            covered.extend((a..b).step_by(3_600));
        }
        for (a, b) in sp.days {
            covered.extend((a..b).step_by(3_600));
        }
        let mut m = sp.months.0;
        for _ in 0..1_000 {
            if m >= sp.months.1 {
                break;
            }
            let next = next_month_start(m).expect("month");
            covered.extend((m..next).step_by(3_600));
            m = next;
        }
        covered.sort_unstable();
        covered
    }

    #[test]
    fn spans_cover_each_hour_of_a_range_once() {
        let base = ts("2026-03-01T00:00:00Z").as_second();
        // Ranges from within one hour up to fourteen months, starting on and off hour,
        // day and month boundaries (2026-03-01 starts a month), crossing a year's end.
        for (start_h, len_s) in [
            (0, 1),
            (0, 3_600),
            (5, 7_200),
            (23, 3_601),
            (0, 86_400),
            (7, 3 * 86_400 + 59),
            (0, 4 * 86_400),
            (3, 0),
            (0, 31 * 86_400),
            (0, 31 * 86_400 - 30),
            (-24, 33 * 86_400),
            (24 * 14 + 5, 60 * 86_400 + 7_000),
            (24 * 200 + 13, 90 * 86_400),
            (-24 * 40 - 1, 430 * 86_400),
        ] {
            let from = base + start_h * HOUR + 30;
            let to = from + len_s;
            let sp = spans(
                Some(Timestamp::from_second(from).expect("time")),
                Timestamp::from_second(to).expect("time"),
            );
            let want: Vec<i64> = (stats::hour_start(Timestamp::from_second(from).expect("time"))
                ..to)
                .step_by(3_600)
                .collect();
            assert_eq!(covered(&sp), want, "{start_h} h + {len_s} s: {sp:?}");
        }
        let all = spans(None, ts("2026-03-01T10:00:00Z"));
        assert_eq!(all.hours[1], (base, base + 10 * HOUR), "{all:?}");
        assert!(all.months.0 < all.months.1, "{all:?}");
    }

    #[test]
    fn a_year_reads_whole_months_and_only_its_ends_by_day_and_hour() {
        // The programme page's year: from 01:00 on 2025-01-01 to 2026-01-01 01:00.
        let sp = spans(Some(ts("2025-01-01T01:00:00Z")), ts("2026-01-01T00:30:00Z"));
        let s = |t: &str| ts(t).as_second();
        assert_eq!(
            sp.months,
            (s("2025-02-01T00:00:00Z"), s("2026-01-01T00:00:00Z"))
        );
        assert_eq!(
            sp.days[0],
            (s("2025-01-02T00:00:00Z"), s("2025-02-01T00:00:00Z"))
        );
        assert_eq!(sp.days[1].0, sp.days[1].1);
        assert_eq!(
            sp.hours[0],
            (s("2025-01-01T01:00:00Z"), s("2025-01-02T00:00:00Z"))
        );
        assert_eq!(
            sp.hours[1],
            (s("2026-01-01T00:00:00Z"), s("2026-01-01T01:00:00Z"))
        );
        // All time, to the last time a timestamp holds.
        let all = spans(None, Timestamp::MAX);
        assert!(all.months.0 < all.months.1, "{all:?}");
    }

    #[test]
    fn months_start_on_the_first_of_the_utc_month() {
        let s = |t: &str| ts(t).as_second();
        assert_eq!(
            month_start(s("2024-02-29T23:59:59Z")),
            Some(s("2024-02-01T00:00:00Z"))
        );
        assert_eq!(
            month_start(s("2026-01-01T00:00:00Z")),
            Some(s("2026-01-01T00:00:00Z"))
        );
        assert_eq!(
            next_month_start(s("2025-12-31T10:00:00Z")),
            Some(s("2026-01-01T00:00:00Z"))
        );
        assert_eq!(
            Level::Month.start(s("2025-07-09T13:00:00Z")),
            s("2025-07-01T00:00:00Z")
        );
        assert_eq!(
            Level::Day.start(s("2025-07-09T13:00:00Z")),
            s("2025-07-09T00:00:00Z")
        );
    }

    #[test]
    fn a_packed_row_reads_back_the_figures_it_holds_and_adds_up() {
        let mut f = Packed::new();
        for figure in ["FAST", "STANDARD", "INSPECT", "t:0", "t:136", "t:61"] {
            let i = figure_index(figure).expect("index");
            assert_eq!(figure_name(i), figure);
            f.insert(i, u64::from(i) * 1_000_003 + 1);
        }
        f.insert(0, u64::MAX);
        let row = pack(&f);
        let mut back = Packed::new();
        unpack(&row, |i, n| {
            back.insert(i, n);
        })
        .expect("unpack");
        assert_eq!(back, f);
        let twice = add_packed(Some(&row), &f).expect("add");
        let mut sums = Sums::default();
        sums.add_packed("AEO", &twice).expect("sum");
        sums.add("AEO", "t:61", 1);
        let c = sums.counts();
        assert_eq!(
            c[&("AEO".to_owned(), "FAST".to_owned())],
            u64::MAX,
            "saturates"
        );
        assert_eq!(
            c[&("AEO".to_owned(), "t:61".to_owned())],
            2 * (64 * 1_000_003 + 1) + 1
        );
        assert_eq!(figure_index("DETAINED"), None);
        assert!(unpack(&row[..row.len() - 1], |_, _| {}).is_err());
        assert!(unpack(&[9, 1, 1], |_, _| {}).is_err());
        assert!(unpack(&[], |_, _| {}).is_err());
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    #[test]
    fn a_time_pairs_with_one_waiting_decision_and_the_rest_waits() {
        let t = Uuid::from_u128(1);
        let d = Half::Decision {
            hour: 3600,
            groups: vec![AEO.into()],
        };
        let mut b = Batch::default();
        b.halves.insert(t, vec![Half::Time { secs: 61 }]);
        let r = b.finish(vec![(t, vec![d.clone(), d.clone()])]);
        let key = (3600, AEO.to_owned(), format!("{TIME}{}", bucket_of(61)));
        assert_eq!(r.counts.get(&key), Some(&1));
        assert_eq!(r.pending.get(&t), Some(&vec![d]));
    }

    /// A batch with `n` decisions of transactions `first..first + n` in `hour`, under
    /// the groups given, and the times of the transactions in `times`.
    fn batch(first: u128, n: u128, hour: i64, groups: &[&str], times: &[(u128, i64)]) -> Batch {
        let mut b = Batch::default();
        for t in first..first + n {
            let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
            for g in &groups {
                *b.out
                    .counts
                    .entry((hour, g.clone(), "FAST".to_owned()))
                    .or_default() += 1;
            }
            b.out
                .names
                .entry(format!("OP{t}"))
                .or_insert_with(|| format!("name {t} {hour}"));
            b.halves
                .entry(Uuid::from_u128(t))
                .or_default()
                .push(Half::Decision { hour, groups });
        }
        for (t, secs) in times {
            b.halves
                .entry(Uuid::from_u128(*t))
                .or_default()
                .push(Half::Time { secs: *secs });
        }
        b
    }

    #[test]
    fn a_batch_reads_back_from_its_queued_form() {
        let b = batch(1, 5, 7_200, &[AEO, "o:X"], &[(2, 40), (9, 700)]);
        let bytes = b.to_queued().expect("queued");
        let back = Batch::from_queued(&bytes).expect("back");
        assert_eq!(back.out, b.out);
        assert_eq!(back.halves, b.halves);
        assert!(Batch::from_queued(&bytes[..bytes.len() / 2]).is_err());
        assert!(Batch::from_queued(b"\xff\xff\xff").is_err());
    }

    /// Folds batches one by one, each taking the pending halves the previous left, as
    /// ingest did before the queue; returns the summed counts and what is left pending.
    fn one_by_one(batches: Vec<Batch>) -> (HourCounts, BTreeMap<Uuid, Vec<Half>>) {
        let mut counts = HourCounts::new();
        let mut pending: BTreeMap<Uuid, Vec<Half>> = BTreeMap::new();
        for b in batches {
            let take: Vec<(Uuid, Vec<Half>)> = b
                .transactions()
                .into_iter()
                .filter_map(|t| pending.remove(&t).map(|h| (t, h)))
                .collect();
            let r = b.finish(take);
            for (k, n) in r.counts {
                *counts.entry(k).or_default() += n;
            }
            pending.extend(r.pending);
        }
        (counts, pending)
    }

    #[test]
    fn queued_batches_merged_count_what_they_count_one_by_one() {
        // Decisions and their times split across batches in both orders, a time that
        // waits for a decision of a later batch, and a decision whose time never comes.
        let make = || {
            vec![
                batch(1, 4, 3_600, &[AEO, "o:A"], &[(10, 30)]),
                batch(
                    5,
                    3,
                    7_200,
                    &[NON_AEO, "o:B"],
                    &[(1, 61), (2, 200), (6, 901)],
                ),
                batch(
                    10,
                    2,
                    10_800,
                    &[AEO, "p:C"],
                    &[(3, 5_000), (5, 45), (11, 3)],
                ),
            ]
        };
        let (want, want_pending) = one_by_one(make());
        let mut q = Queue::default();
        for b in make() {
            q.push("G1", &b.to_queued().expect("queued")).expect("push");
        }
        assert_eq!(q.batches(), 3);
        let mut gates: Vec<(String, Batch)> = q.into_gates().collect();
        assert_eq!(gates.len(), 1);
        let (_, merged) = gates.pop().expect("one gate");
        let r = merged.finish(Vec::new());
        assert_eq!(r.counts, want);
        assert_eq!(r.pending, want_pending);
        assert!(!want_pending.is_empty(), "a half is left waiting");
        // The first name declared is the one kept.
        assert_eq!(r.names.get("OP1").map(String::as_str), Some("name 1 3600"));
    }

    /// A store's roll-ups in memory: counts, names (first kept), pending halves by
    /// (gate, transaction), and how many count writes it took.
    #[derive(Default)]
    struct MemSink {
        counts: HourCounts,
        names: BTreeMap<String, String>,
        pending: BTreeMap<(String, Uuid), Vec<Half>>,
        writes: usize,
    }

    impl RollupSink for MemSink {
        type Error = std::convert::Infallible;

        fn take_pending(
            &mut self,
            gate: &str,
            txns: &[Uuid],
        ) -> Result<Vec<(Uuid, Vec<Half>)>, Self::Error> {
            Ok(txns
                .iter()
                .filter_map(|t| self.pending.remove(&(gate.to_owned(), *t)).map(|h| (*t, h)))
                .collect())
        }

        fn put_pending(
            &mut self,
            gate: &str,
            pending: BTreeMap<Uuid, Vec<Half>>,
        ) -> Result<(), Self::Error> {
            for (t, h) in pending {
                self.pending.insert((gate.to_owned(), t), h);
            }
            Ok(())
        }

        fn add_counts(
            &mut self,
            counts: HourCounts,
            names: BTreeMap<String, String>,
        ) -> Result<(), Self::Error> {
            self.writes += 1;
            for (k, n) in counts {
                *self.counts.entry(k).or_default() += n;
            }
            for (op, name) in names {
                self.names.entry(op).or_insert(name);
            }
            Ok(())
        }
    }

    #[test]
    fn one_fold_of_several_gates_stores_what_storing_each_batch_alone_stores() {
        // Two gates with the same transaction ids (each gate pairs only its own halves),
        // a time waiting for a decision of a later batch of its gate, and one that never
        // gets one; gates in the order a fold takes them.
        let make = || {
            vec![
                ("G1", batch(1, 4, 3_600, &[AEO, "o:A"], &[(10, 30)])),
                ("G2", batch(1, 2, 3_600, &[AEO, "o:A"], &[(1, 61), (7, 5)])),
                ("G1", batch(10, 2, 7_200, &[NON_AEO, "o:B"], &[(2, 200)])),
                ("G2", batch(7, 1, 7_200, &[AEO, "p:C"], &[])),
            ]
        };
        let mut alone = MemSink::default();
        for (gate, b) in make() {
            store(&mut alone, gate, b).expect("store");
        }
        let mut folded = MemSink::default();
        let mut fold = Fold::default();
        for (gate, b) in make() {
            fold.add(&mut folded, gate, b).expect("add");
        }
        fold.write(&mut folded).expect("write");
        assert_eq!(folded.counts, alone.counts);
        assert_eq!(folded.pending, alone.pending);
        assert_eq!(folded.names, alone.names);
        assert_eq!(
            (alone.writes, folded.writes),
            (4, 1),
            "one write of the counts"
        );
        // G2's time of transaction 1 paired with G2's decision, not G1's.
        let paired = (3_600, AEO.to_owned(), format!("{TIME}{}", bucket_of(61)));
        assert_eq!(folded.counts.get(&paired), Some(&1));
        assert!(
            folded
                .pending
                .contains_key(&("G1".to_owned(), Uuid::from_u128(1)))
        );
        assert!(
            !folded
                .pending
                .contains_key(&("G2".to_owned(), Uuid::from_u128(1)))
        );
        assert_eq!(
            folded.names.get("OP1").map(String::as_str),
            Some("name 1 3600")
        );
    }

    #[test]
    fn a_queued_batch_counts_only_the_hours_of_the_range() {
        let b = batch(1, 2, 3_600, &[AEO], &[]).finish(Vec::new());
        let mut later = batch(3, 1, 7_200, &[AEO], &[]).finish(Vec::new());
        later.counts.extend(b.counts.clone());
        let sp = spans(
            Some(Timestamp::from_second(3_600).expect("ts")),
            Timestamp::from_second(7_200).expect("ts"),
        );
        let mut sums = Sums::default();
        let mut names = BTreeMap::new();
        add_in_range(&later, &sp, &mut sums, &mut names);
        assert_eq!(
            sums.counts().get(&(AEO.to_owned(), "FAST".to_owned())),
            Some(&2),
            "the hour from 1:00 only"
        );
        assert_eq!(names.get("OP3").map(String::as_str), Some("name 3 7200"));
    }
}
