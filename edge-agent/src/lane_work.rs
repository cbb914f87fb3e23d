//! Lane work in progress, for the uplink to yield to: how many of the lanes' journal and
//! read-log writes are queued and not yet answered, and when the last one was answered.
//!
//! The journal writer ([`crate::journal::JournalWriter::append_consuming`]) and the read
//! log ([`crate::readlog::ReadLog::log`]) hold a [`LaneWorkGuard`] from the moment a
//! request is queued until its answer has come back; the uplink's cursor writes do not.
//! The pipeline sets when the lanes' next timer is due ([`LaneWork::set_next_due`]). The
//! uplink reads [`LaneWork::pending`], [`LaneWork::since_last`] and [`LaneWork::due_in`]
//! before it reads and sends its next batch, and waits on [`LaneWork::done`] (docs/delivery.md, "Yielding to
//! the lanes"). Nothing here waits: it is a counter, a time and a notification.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::sync::futures::Notified;
use tokio::time::Instant;

/// The lanes' writes in progress (one per agent, shared by the journal and the read log).
#[derive(Debug, Default)]
pub struct LaneWork {
    pending: AtomicUsize,
    /// When the last write was answered (tokio's clock, so paused-time tests see it).
    last_done: Mutex<Option<Instant>>,
    /// Woken whenever a write is answered.
    done: Notify,
    /// When the lanes' next timer is due (a departure grace ending, a quiet close): the
    /// pipeline decides then, so the uplink keeps clear of it. `None` when no lane has one.
    next_due: Mutex<Option<Instant>>,
}

/// One lane write in progress: counted from [`LaneWork::begin`] until dropped.
#[derive(Debug)]
#[must_use = "the write counts as pending only while the guard is held"]
pub struct LaneWorkGuard(Arc<LaneWork>);

impl LaneWork {
    /// A new, idle signal.
    #[must_use]
    pub fn new() -> Arc<LaneWork> {
        Arc::default()
    }

    /// A lane write was queued; it counts as pending until the guard is dropped.
    pub fn begin(self: &Arc<Self>) -> LaneWorkGuard {
        self.pending.fetch_add(1, Ordering::SeqCst);
        LaneWorkGuard(self.clone())
    }

    /// Lane writes queued and not yet answered.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// Time since the last lane write was answered; `None` before the first.
    #[must_use]
    pub fn since_last(&self) -> Option<Duration> {
        self.last_done
            .lock()
            .ok()
            .and_then(|t| *t)
            .map(|t| t.elapsed())
    }

    /// The pipeline's next timer ([`crate::assembler::Assembler::next_deadline`]), set
    /// each time it goes back to waiting.
    pub fn set_next_due(&self, at: Option<Instant>) {
        if let Ok(mut d) = self.next_due.lock() {
            *d = at;
        }
    }

    /// How long until the lanes' next timer is due; `None` when no lane has one or it is
    /// past (the lane being decided then shows as a pending write).
    #[must_use]
    pub fn due_in(&self) -> Option<Duration> {
        let now = Instant::now();
        self.next_due
            .lock()
            .ok()
            .and_then(|d| *d)
            .and_then(|at| at.checked_duration_since(now))
    }

    /// A future that resolves when a lane write is next answered; create and `enable` it
    /// before looking at [`LaneWork::pending`] so that an answer in between is not missed.
    pub fn done(&self) -> Notified<'_> {
        self.done.notified()
    }
}

impl Drop for LaneWorkGuard {
    fn drop(&mut self) {
        // The time first, so whoever sees the count fall also sees when it fell.
        if let Ok(mut t) = self.0.last_done.lock() {
            *t = Some(Instant::now());
        }
        self.0.pending.fetch_sub(1, Ordering::SeqCst);
        self.0.done.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_write_is_pending_while_its_guard_is_held_and_dated_when_dropped() {
        let w = LaneWork::new();
        assert_eq!((w.pending(), w.since_last()), (0, None));
        let a = w.begin();
        let b = w.begin();
        assert_eq!(w.pending(), 2);
        drop(a);
        assert_eq!(w.pending(), 1);
        tokio::time::sleep(Duration::from_millis(7)).await;
        assert_eq!(w.since_last(), Some(Duration::from_millis(7)));
        let done = w.done();
        tokio::pin!(done);
        done.as_mut().enable();
        drop(b);
        assert_eq!(w.pending(), 0);
        assert_eq!(w.since_last(), Some(Duration::ZERO));
        tokio::time::timeout(Duration::from_millis(1), done)
            .await
            .expect("the answer wakes a waiter registered before it");
    }

    #[tokio::test(start_paused = true)]
    async fn the_lanes_next_timer_counts_down_and_is_gone_once_past() {
        let w = LaneWork::new();
        assert_eq!(w.due_in(), None);
        w.set_next_due(Some(Instant::now() + Duration::from_millis(30)));
        assert_eq!(w.due_in(), Some(Duration::from_millis(30)));
        tokio::time::sleep(Duration::from_millis(12)).await;
        assert_eq!(w.due_in(), Some(Duration::from_millis(18)));
        tokio::time::sleep(Duration::from_millis(18)).await;
        assert_eq!(w.due_in(), Some(Duration::ZERO), "due now");
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(w.due_in(), None, "past");
        w.set_next_due(None);
        assert_eq!(w.due_in(), None);
    }
}
