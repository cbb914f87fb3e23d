//! Programme roll-ups: the counts behind the programme page, kept up to date at ingest so
//! its figures are exact over any range and outlive event retention.
//!
//! Per UTC hour (of the decision's `decided_at`), group and figure, a count, and the
//! same per UTC day, so a long range reads days and only its ends by the hour
//! ([`spans`]):
//! - groups: [`AEO`] or [`NON_AEO`] traffic, `p:CODE` for each programme among the
//!   active parties of AEO traffic, `o:OPERATOR` for each declared operator (the rule of
//!   [`is_aeo`] and the page's module documentation);
//! - figures: the decision (`FAST`, `STANDARD`, `INSPECT`), and `t:B` for a decision whose
//!   gate transaction (same id, same gate) is stored, where `B` is the [`bucket_of`] its
//!   time at the gate (opened → closed) falls in.
//!
//! The decision and its gate transaction arrive as separate entries, in any order and
//! possibly in different batches. The half that comes first waits in a pending table
//! keyed by (gate, transaction); the other half takes it and the time is counted then.
//! [`Batch`] collects a batch's halves and counts without any I/O; a backend implements
//! [`RollupSink`] and calls [`store`] once per ingest, inside the ingest's transaction.

use std::collections::BTreeMap;

use jiff::Timestamp;
use protocol::schema::{AeoStatus, Decision, EventBody, GateTransaction};
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

/// What a range reads: hour starts `[a, b)` from the hourly roll-ups (its two ends) and
/// day starts `[a, b)` from the daily ones (the whole days between).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spans {
    pub hours: [(i64, i64); 2],
    pub days: (i64, i64),
}

/// The spans of the hours whose start is in `[hour_start(from), to)` (from the first
/// hour when `from` is `None`).
#[must_use]
pub fn spans(from: Option<Timestamp>, to: Timestamp) -> Spans {
    let first = stats::hour_start(from.unwrap_or(Timestamp::MIN));
    // The first hour start not included.
    let end = stats::hour_start(to) + if to.as_second() % HOUR == 0 { 0 } else { HOUR };
    if first >= end {
        return Spans {
            hours: [(first, first); 2],
            days: (first, first),
        };
    }
    let day_from = day_start(first + DAY - HOUR);
    let day_to = day_start(end);
    if day_from >= day_to {
        return Spans {
            hours: [(first, end), (end, end)],
            days: (end, end),
        };
    }
    Spans {
        hours: [(first, day_from), (day_to, end)],
        days: (day_from, day_to),
    }
}

/// The counts of `counts` (by hour) added up by day.
#[must_use]
pub fn by_day(
    counts: &BTreeMap<(i64, String, String), i64>,
) -> BTreeMap<(i64, String, String), i64> {
    let mut out: BTreeMap<(i64, String, String), i64> = BTreeMap::new();
    for ((hour, group, figure), n) in counts {
        *out.entry((day_start(*hour), group.clone(), figure.clone()))
            .or_default() += n;
    }
    out
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
    pub counts: BTreeMap<(i64, String, String), i64>,
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

/// The roll-up storage of one backend, inside an ingest's transaction.
pub trait RollupSink {
    type Error;
    /// Removes and returns the pending halves stored for these transactions of the gate.
    fn take_pending(&mut self, txns: &[Uuid]) -> Result<Vec<(Uuid, Vec<Half>)>, Self::Error>;
    /// Adds the counts, stores names of operators that have none, and stores the pending
    /// halves.
    fn write(&mut self, r: Rollup) -> Result<(), Self::Error>;
}

/// Brings the roll-ups up to date with one ingested batch. Both backends call it, once
/// per ingest, in the ingest's transaction.
///
/// # Errors
/// The sink's.
pub fn store<S: RollupSink>(sink: &mut S, batch: Batch) -> Result<(), S::Error> {
    if batch.is_empty() {
        return Ok(());
    }
    let stored = sink.take_pending(&batch.transactions())?;
    sink.write(batch.finish(stored))
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

    #[test]
    fn spans_cover_each_hour_of_a_range_once() {
        let base = ts("2026-03-01T00:00:00Z").as_second();
        // Ranges from within one hour up to four days, starting on and off boundaries.
        for (start_h, len_s) in [
            (0, 1),
            (0, 3_600),
            (5, 7_200),
            (23, 3_601),
            (0, 86_400),
            (7, 3 * 86_400 + 59),
            (0, 4 * 86_400),
            (3, 0),
        ] {
            let from = base + start_h * HOUR + 30;
            let to = from + len_s;
            let sp = spans(
                Some(Timestamp::from_second(from).expect("time")),
                Timestamp::from_second(to).expect("time"),
            );
            let mut covered = Vec::new();
            for (a, b) in sp.hours {
                covered.extend((a..b).step_by(3_600));
            }
            for d in (sp.days.0..sp.days.1).step_by(86_400) {
                covered.extend((d..d + DAY).step_by(3_600));
            }
            covered.sort_unstable();
            let want: Vec<i64> = (stats::hour_start(Timestamp::from_second(from).expect("time"))
                ..to)
                .step_by(3_600)
                .collect();
            assert_eq!(covered, want, "{start_h} h + {len_s} s: {sp:?}");
        }
        let all = spans(None, ts("2026-03-01T10:00:00Z"));
        assert_eq!(all.hours[1], (base, base + 10 * HOUR), "{all:?}");
        assert!(all.days.0 < all.days.1);
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
}
