//! The uplink's drain rules, sans-IO: which batch to ask the journal for, where central's
//! acknowledgement moves the cursor, and what to do after each attempt. The task in
//! [`super`] does the I/O (journal reads, HTTP, sleeps) and follows [`Next`].
//!
//! - A batch is `central.uplink_batch` entries, clamped to `1..=`[`MAX_BATCH_ENTRIES`].
//! - The first batch of a drain round (after start, an idle journal or a failure) carries
//!   seal exceptions and integrity alerts first when the backlog is larger than a batch;
//!   later batches go in journal order, which lets central's contiguous cursor advance.
//! - In journal order with more than a batch waiting, [`IN_FLIGHT`] consecutive batches
//!   are sent at once: central stores whichever arrives first and acknowledges
//!   contiguously (`acked_through` covers the later batch only once the earlier one is
//!   stored), so the cursor rules below hold unchanged, and the agent's reading and
//!   encoding of one batch overlaps central's commit of the other (which central's group
//!   commit may make one).
//! - Before reading its next batch the drain yields to the lanes ([`yield_to_lanes`]): while
//!   a lane's journal or read-log write is queued and not yet answered, and for
//!   [`LANE_QUIET`] after the last answer (the decision's publish and lane command follow
//!   it), and while a lane's timer is due within [`LANE_DUE_HORIZON`] (its decision comes
//!   then) until [`LANE_QUIET`] after it, but at most [`LANE_YIELD_MAX`] before each attempt, so busy lanes slow the drain
//!   and never stop it. Yielding changes when a batch is read, not which: the cursor and
//!   acknowledgement rules are untouched.
//! - The cursor moves to central's `acked_through`, never past the journal head and never
//!   backwards.
//! - An answer that does not move the cursor is a stall (central misses an earlier entry
//!   or refuses these): wait with backoff instead of resending at once. A failure backs off
//!   too and starts a new round; a delivery resets the backoff.

use std::time::Duration;

use crate::backoff::Backoff;

/// Most entries central accepts in one batch (docs/delivery.md; a larger batch is refused
/// with 413 every time, so a larger `central.uplink_batch` would never drain).
pub const MAX_BATCH_ENTRIES: usize = 1_000;

/// Consecutive batches in flight while draining a backlog in journal order.
pub const IN_FLIGHT: usize = 2;

/// Longest an idle uplink waits for a new entry before looking again.
pub const IDLE_WAIT: Duration = Duration::from_secs(5);

/// How long after the lanes' last write was answered the drain still waits: a decision's
/// commit is followed by its lane command and publish, which need the cores for a
/// millisecond or two (figure 2: read → lane about 3 ms in all).
pub const LANE_QUIET: Duration = Duration::from_millis(5);

/// Longest the drain yields to the lanes before one attempt: lanes that are never quiet
/// (a truck every 170 ms on a busy gate, each with several reads) slow the drain by at
/// most this per attempt instead of stopping it.
pub const LANE_YIELD_MAX: Duration = Duration::from_millis(60);
/// A lane timer due within this long holds the next attempt until it is due (an attempt
/// of two 1,000-entry batches is some tens of milliseconds of the agent's cores; in
/// figure 6, 40 ms left the live p99 at 2.1-2.2x idle, 60 ms gave 1.6x and 2.3x).
pub const LANE_DUE_HORIZON: Duration = Duration::from_millis(60);

/// First wait after a failure or stall.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Longest wait after failures or stalls.
const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// What to read from the journal for the next batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPlan {
    /// Most entries.
    pub max: usize,
    /// Seal exceptions and integrity alerts first.
    pub exceptions_first: bool,
    /// Consecutive batches to send at once (1 or [`IN_FLIGHT`]): the first `max`
    /// unacknowledged entries, then the `max` entries after the last of those, and so on.
    pub batches: usize,
}

/// What the task does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Send the next batch at once.
    SendAgain,
    /// Nothing to send: wait for an append, at most this long.
    WaitForEntries(Duration),
    /// Wait this long, then try again.
    Retry(Duration),
}

/// Whether the drain reads its next batch now or yields to the lanes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Yield {
    /// Read and send now.
    Go,
    /// A lane write is pending: wait for an answer, at most this long.
    UntilAnswered(Duration),
    /// The lanes were just answered: wait this long.
    For(Duration),
}

/// Before an attempt: `pending` lane writes queued and not yet answered, `since_last` the
/// time since the last one was answered (`None` before the first), `yielded` how long the
/// drain has already yielded before this attempt.
#[must_use]
pub fn yield_to_lanes(
    pending: usize,
    since_last: Option<Duration>,
    due_in: Option<Duration>,
    yielded: Duration,
) -> Yield {
    let Some(left) = LANE_YIELD_MAX.checked_sub(yielded).filter(|l| !l.is_zero()) else {
        return Yield::Go;
    };
    if pending > 0 {
        return Yield::UntilAnswered(left);
    }
    // A lane decides when its timer is due: an attempt started now would still be running
    // then, so wait until it is due and its write is queued.
    if let Some(d) = due_in.filter(|d| *d <= LANE_DUE_HORIZON) {
        return Yield::For((d + LANE_QUIET).min(left));
    }
    match since_last {
        Some(t) if t < LANE_QUIET => Yield::For((LANE_QUIET - t).min(left)),
        _ => Yield::Go,
    }
}

/// The drain's state between attempts.
#[derive(Debug, Clone)]
pub struct Drain {
    batch: usize,
    new_round: bool,
    backoff: Backoff,
}

impl Drain {
    /// A drain of batches of `batch` entries (clamped to `1..=MAX_BATCH_ENTRIES`), at the
    /// start of a round.
    #[must_use]
    pub fn new(batch: usize) -> Self {
        Self {
            batch: batch.clamp(1, MAX_BATCH_ENTRIES),
            new_round: true,
            backoff: Backoff::new(BACKOFF_BASE, BACKOFF_CAP),
        }
    }

    /// The next batch to read, given the current backlog.
    #[must_use]
    pub fn plan(&self, backlog: u64) -> BatchPlan {
        let more_than_a_batch = backlog > self.batch as u64;
        let exceptions_first = self.new_round && more_than_a_batch;
        BatchPlan {
            max: self.batch,
            exceptions_first,
            // Out of journal order, a second window would overlap the first's exceptions.
            batches: if more_than_a_batch && !exceptions_first {
                IN_FLIGHT
            } else {
                1
            },
        }
    }

    /// Where central's `acked_through` moves a cursor at `acked` in a journal whose head is
    /// `head`: `None` when it does not move.
    #[must_use]
    pub fn cursor_target(acked: u64, head: u64, acked_through: u64) -> Option<u64> {
        let target = acked_through.min(head);
        (target > acked).then_some(target)
    }

    /// The journal had nothing to send.
    pub fn on_nothing(&mut self) -> Next {
        self.backoff.reset();
        self.new_round = true;
        Next::WaitForEntries(IDLE_WAIT)
    }

    /// Central answered a batch; `advanced` says whether the cursor moved. `jitter` in
    /// `[0, 1]` is the backoff's random draw.
    pub fn on_answer(&mut self, advanced: bool, jitter: f64) -> Next {
        self.new_round = false;
        if advanced {
            self.backoff.reset();
            Next::SendAgain
        } else {
            Next::Retry(self.backoff.next_delay_with(jitter))
        }
    }

    /// The attempt failed (transport, central's refusal, the journal).
    pub fn on_error(&mut self, jitter: f64) -> Next {
        self.new_round = true;
        Next::Retry(self.backoff.next_delay_with(jitter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_size_is_clamped_to_what_central_accepts() {
        assert_eq!(Drain::new(0).plan(0).max, 1);
        assert_eq!(Drain::new(200).plan(0).max, 200);
        assert_eq!(Drain::new(50_000).plan(0).max, MAX_BATCH_ENTRIES);
    }

    #[test]
    fn exceptions_go_first_only_at_the_start_of_a_round_with_a_large_backlog() {
        let mut d = Drain::new(10);
        // (backlog, exceptions first)
        for (backlog, want) in [(0, false), (10, false), (11, true), (10_000, true)] {
            assert_eq!(d.plan(backlog).exceptions_first, want, "backlog {backlog}");
        }
        assert_eq!(d.on_answer(true, 0.5), Next::SendAgain);
        assert!(
            !d.plan(10_000).exceptions_first,
            "later batches go in order"
        );
        assert!(matches!(d.on_answer(false, 0.5), Next::Retry(_)));
        assert!(!d.plan(10_000).exceptions_first, "a stall keeps the round");
        assert!(matches!(d.on_error(0.5), Next::Retry(_)));
        assert!(
            d.plan(10_000).exceptions_first,
            "a failure starts a new round"
        );
        assert_eq!(d.on_answer(true, 0.5), Next::SendAgain);
        assert_eq!(d.on_nothing(), Next::WaitForEntries(IDLE_WAIT));
        assert!(
            d.plan(10_000).exceptions_first,
            "an idle journal starts a new round"
        );
    }

    #[test]
    fn several_batches_go_at_once_only_in_journal_order_with_more_than_a_batch_waiting() {
        let mut d = Drain::new(10);
        assert_eq!(
            d.plan(10_000).batches,
            1,
            "the round starts with exceptions first"
        );
        assert_eq!(d.on_answer(true, 0.5), Next::SendAgain);
        // (backlog, batches)
        for (backlog, want) in [(0, 1), (10, 1), (11, IN_FLIGHT), (10_000, IN_FLIGHT)] {
            assert_eq!(d.plan(backlog).batches, want, "backlog {backlog}");
        }
        assert!(matches!(d.on_error(0.5), Next::Retry(_)));
        assert_eq!(d.plan(10_000).batches, 1, "a failure starts a new round");
    }

    #[test]
    fn the_drain_yields_to_pending_and_just_answered_lane_writes_within_its_bound() {
        let ms = Duration::from_millis;
        let max = LANE_YIELD_MAX;
        let h = LANE_DUE_HORIZON;
        // (pending, since the last answer, the lanes' next timer, yielded so far, what to do)
        let cases = [
            (0, None, None, ms(0), Yield::Go),
            (0, Some(LANE_QUIET), None, ms(0), Yield::Go),
            (0, Some(ms(60_000)), None, ms(0), Yield::Go),
            (0, Some(ms(0)), None, ms(0), Yield::For(LANE_QUIET)),
            (0, Some(ms(2)), None, ms(0), Yield::For(LANE_QUIET - ms(2))),
            (0, Some(ms(0)), None, max - ms(1), Yield::For(ms(1))),
            (1, None, None, ms(0), Yield::UntilAnswered(max)),
            (
                3,
                Some(ms(1)),
                None,
                ms(20),
                Yield::UntilAnswered(max - ms(20)),
            ),
            (1, Some(ms(0)), None, max, Yield::Go),
            (1, Some(ms(0)), None, max * 2, Yield::Go),
            (0, Some(ms(0)), None, max, Yield::Go),
            // A lane's timer due soon holds the attempt until it is due and a little after.
            (
                0,
                None,
                Some(ms(10)),
                ms(0),
                Yield::For(ms(10) + LANE_QUIET),
            ),
            (
                0,
                Some(ms(60_000)),
                Some(h),
                ms(0),
                Yield::For((h + LANE_QUIET).min(max)),
            ),
            (0, None, Some(ms(0)), ms(0), Yield::For(LANE_QUIET)),
            (0, None, Some(h + ms(1)), ms(0), Yield::Go),
            (0, None, Some(ms(30)), ms(40), Yield::For(max - ms(40))),
            (0, None, Some(ms(10)), max, Yield::Go),
            // A pending write comes first.
            (
                2,
                None,
                Some(ms(10)),
                ms(5),
                Yield::UntilAnswered(max - ms(5)),
            ),
        ];
        for (pending, since, due, yielded, want) in cases {
            assert_eq!(
                yield_to_lanes(pending, since, due, yielded),
                want,
                "pending {pending} since {since:?} due {due:?} yielded {yielded:?}"
            );
        }
    }

    #[test]
    fn cursor_moves_only_forward_and_never_past_the_head() {
        // (acked, head, acked_through, target)
        let cases = [
            (5, 10, 8, Some(8)),
            (5, 10, 12, Some(10)),
            (5, 10, 5, None),
            (5, 10, 3, None),
            (10, 10, 40, None),
            (0, 0, 0, None),
        ];
        for (acked, head, through, want) in cases {
            assert_eq!(
                Drain::cursor_target(acked, head, through),
                want,
                "acked {acked} head {head} through {through}"
            );
        }
    }

    #[test]
    fn stalls_and_failures_back_off_exponentially_and_a_delivery_resets_it() {
        let mut d = Drain::new(10);
        let waits: Vec<Duration> = (0..9)
            .map(|_| match d.on_answer(false, 1.0) {
                Next::Retry(w) => w,
                other => panic!("a stall retries later, got {other:?}"),
            })
            .collect();
        assert_eq!(waits[0], BACKOFF_BASE);
        assert_eq!(waits[1], BACKOFF_BASE * 2);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
        assert_eq!(*waits.last().expect("waits"), BACKOFF_CAP);
        assert_eq!(
            d.on_error(0.0),
            Next::Retry(BACKOFF_BASE / 2),
            "full jitter down to half the base"
        );
        assert_eq!(d.on_answer(true, 1.0), Next::SendAgain);
        assert_eq!(
            d.on_error(1.0),
            Next::Retry(BACKOFF_BASE),
            "reset by the delivery"
        );
    }
}
