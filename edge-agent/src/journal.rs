//! The journal as the running agent uses it: the one writer (group commit), the records
//! held while the disk refuses writes, the alarm and the journal's own health, and the
//! "appended" notification the uplink waits on. Storage itself is [`crate::store`].
//!
//! Failure policy: when a write fails (a full disk), the caller's records are held in
//! memory, oldest first ([`Journal::failed`]), the journal's health goes down and the
//! alarm gauge is raised; [`retry_held`] offers them again every [`HELD_RETRY`] and clears
//! the alarm when nothing is held. Decisions go on meanwhile, never FAST
//! (`JOURNAL_UNAVAILABLE`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use jiff::Timestamp;
use protocol::schema::{DeviceHealth, EventBody, JournalEntry};
use tokio::sync::{Notify, futures::Notified, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::live::HealthReporter;
use crate::store::{JournalError, Store};

/// Most append requests the journal writer queues before callers wait to send.
const JOURNAL_QUEUE: usize = 1024;

/// Most bodies one group commit takes, so that a burst is written in bounded
/// transactions (each a few hundred kB of JSON) and the first caller is not kept waiting
/// for an unbounded batch.
const JOURNAL_GROUP_MAX_BODIES: usize = 512;

/// One caller's records, answered only after the commit that holds them.
struct AppendRequest {
    bodies: Vec<EventBody>,
    at: Timestamp,
    /// Read-log events these records account for, removed in the same commit.
    consumed: Vec<Vec<u8>>,
    reply: tokio::sync::oneshot::Sender<Result<Vec<JournalEntry>, JournalError>>,
}

/// The agent's one journal writer: a task that takes every append request queued while
/// the previous commit was on disk and writes them in one durable write transaction
/// ([`Store::append_groups`]: group commit, one fsync for all of them), then answers each
/// caller. A caller acts only after its answer, so "journal, then act" holds for each
/// record; under a burst (a replay, several lanes closing at once) the journal runs at the
/// group rate instead of one fsync per decision (docs/benchmarks.md, figure 3).
#[derive(Debug)]
pub struct JournalWriter {
    store: Store,
    queue: Mutex<Option<mpsc::Sender<AppendRequest>>>,
    /// Group commits made by the task (for the benchmark and the metrics).
    commits: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for AppendRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendRequest")
            .field("bodies", &self.bodies.len())
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

impl JournalWriter {
    /// Starts the writer task on the current tokio runtime. It runs until
    /// [`JournalWriter::close`] and then finishes what was queued; the handle resolves
    /// when it has.
    #[must_use]
    pub fn start(store: Store) -> (JournalWriter, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(JOURNAL_QUEUE);
        let commits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let task = tokio::spawn(journal_writer_task(store.clone(), rx, commits.clone()));
        (
            JournalWriter {
                store,
                queue: Mutex::new(Some(tx)),
                commits,
            },
            task,
        )
    }

    /// Group commits the writer task has made so far (successful or not).
    #[must_use]
    pub fn commits(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Journals `bodies` durably, grouped with whatever else is queued; returns this
    /// call's entries once they are on disk. After [`JournalWriter::close`] it appends on
    /// its own (one commit per call).
    ///
    /// # Errors
    /// The store's [`JournalError`] (nothing of this call was written then), or
    /// [`JournalError::WriterStopped`] when the writer ended without an answer.
    pub async fn append(
        &self,
        bodies: Vec<EventBody>,
        at: Timestamp,
    ) -> Result<Vec<JournalEntry>, JournalError> {
        self.append_consuming(bodies, at, Vec::new()).await
    }

    /// [`JournalWriter::append`] that also removes `consumed` from the read log in the
    /// same commit ([`Store::append_groups_consuming`]).
    ///
    /// # Errors
    /// As [`JournalWriter::append`]; nothing is removed then.
    pub async fn append_consuming(
        &self,
        bodies: Vec<EventBody>,
        at: Timestamp,
        consumed: Vec<Vec<u8>>,
    ) -> Result<Vec<JournalEntry>, JournalError> {
        let queue = self.queue.lock().ok().and_then(|q| q.clone());
        if let Some(queue) = queue {
            let (reply, answer) = tokio::sync::oneshot::channel();
            let req = AppendRequest {
                bodies,
                at,
                consumed,
                reply,
            };
            match queue.send(req).await {
                Ok(()) => return answer.await.unwrap_or(Err(JournalError::WriterStopped)),
                // Closed meanwhile: nothing was queued, write directly below.
                Err(mpsc::error::SendError(req)) => {
                    return self.append_direct(req.bodies, at, req.consumed).await;
                }
            }
        }
        self.append_direct(bodies, at, consumed).await
    }

    async fn append_direct(
        &self,
        bodies: Vec<EventBody>,
        at: Timestamp,
        consumed: Vec<Vec<u8>>,
    ) -> Result<Vec<JournalEntry>, JournalError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            store
                .append_groups_consuming(vec![(bodies, at)], &consumed)
                .map(|mut g| g.pop().unwrap_or_default())
        })
        .await
        .unwrap_or(Err(JournalError::WriterStopped))
    }

    /// Stops taking requests into groups; the task writes what is queued and ends.
    pub fn close(&self) {
        if let Ok(mut q) = self.queue.lock() {
            q.take();
        }
    }
}

async fn journal_writer_task(
    store: Store,
    mut rx: mpsc::Receiver<AppendRequest>,
    commits: Arc<std::sync::atomic::AtomicU64>,
) {
    while let Some(first) = rx.recv().await {
        let mut bodies = first.bodies.len();
        let mut group = vec![first];
        while bodies < JOURNAL_GROUP_MAX_BODIES {
            match rx.try_recv() {
                Ok(req) => {
                    bodies += req.bodies.len();
                    group.push(req);
                }
                Err(_) => break,
            }
        }
        let store = store.clone();
        // A panic in the commit drops every reply: callers see `WriterStopped`.
        let _ = tokio::task::spawn_blocking(move || commit_group(&store, group)).await;
        commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Writes a group in one transaction and answers each caller. Nothing of a failed group
/// is written, and every caller gets the failure (and holds its records).
fn commit_group(store: &Store, group: Vec<AppendRequest>) {
    metrics::histogram!("aeogate_journal_group_requests").record(group.len() as f64);
    let mut consumed = Vec::new();
    let (inputs, replies): (Vec<_>, Vec<_>) = group
        .into_iter()
        .map(|r| {
            consumed.extend(r.consumed);
            ((r.bodies, r.at), r.reply)
        })
        .unzip();
    match store.append_groups_consuming(inputs, &consumed) {
        Ok(entries) => {
            for (reply, e) in replies.into_iter().zip(entries) {
                let _ = reply.send(Ok(e));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.for_group_member()));
            }
        }
    }
}

/// Most groups of records held in memory while the journal refuses writes (about a day
/// of a busy lane); past it the oldest are dropped, counted and logged.
const HELD_MAX: usize = 20_000;

/// How often held records are offered to the journal again.
pub const HELD_RETRY: Duration = Duration::from_secs(2);

/// The running agent's journal: every write goes through its [`JournalWriter`].
#[derive(Debug)]
pub struct Journal {
    store: Store,
    writer: JournalWriter,
    /// Records the journal could not take (a full disk), oldest first.
    held: Mutex<VecDeque<Vec<EventBody>>>,
    /// The journal's own health, shown like a device: down while records are held.
    health: HealthReporter,
    /// Woken after every append (the uplink waits on it).
    appended: Notify,
}

impl Journal {
    /// Starts the writer task over `store`. Returns the journal, its health channel (to
    /// list with the devices) and the writer task, which ends after [`Journal::close`]
    /// once what was queued is written.
    #[must_use]
    pub fn start(store: Store) -> (Arc<Journal>, watch::Receiver<DeviceHealth>, JoinHandle<()>) {
        let (health, health_rx) = HealthReporter::new("journal", None);
        health.up("writing");
        let (writer, task) = JournalWriter::start(store.clone());
        let journal = Arc::new(Journal {
            store,
            writer,
            held: Mutex::new(VecDeque::new()),
            health,
            appended: Notify::new(),
        });
        (journal, health_rx, task)
    }

    /// The store the journal writes to.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Journals `bodies` durably (grouped with whatever else is queued) and wakes the
    /// uplink.
    ///
    /// # Errors
    /// When the store refuses the write (nothing was journaled then).
    pub async fn append(&self, bodies: Vec<EventBody>) -> anyhow::Result<Vec<JournalEntry>> {
        let entries = self
            .writer
            .append(bodies, Timestamp::now())
            .await
            .context("journal append failed")?;
        self.appended.notify_waiters();
        metrics::gauge!("aeogate_journal_head").set(self.store.journal_head() as f64);
        Ok(entries)
    }

    /// Journals `bodies` stamped `at`, without waking the uplink: the caller decides what
    /// a failure means ([`Journal::failed`]) and calls [`Journal::notify_appended`].
    ///
    /// # Errors
    /// As [`JournalWriter::append`].
    pub async fn append_at(
        &self,
        bodies: Vec<EventBody>,
        at: Timestamp,
    ) -> Result<Vec<JournalEntry>, JournalError> {
        self.writer.append(bodies, at).await
    }

    /// [`Journal::append_at`] that also removes `consumed` (encoded lane events) from
    /// the read log in the same commit, so a restart never replays what these records
    /// account for.
    ///
    /// # Errors
    /// As [`JournalWriter::append`].
    pub async fn append_at_consuming(
        &self,
        bodies: Vec<EventBody>,
        at: Timestamp,
        consumed: Vec<Vec<u8>>,
    ) -> Result<Vec<JournalEntry>, JournalError> {
        self.writer.append_consuming(bodies, at, consumed).await
    }

    /// Wakes whoever waits for new entries (the uplink).
    pub fn notify_appended(&self) {
        self.appended.notify_waiters();
    }

    /// A future that resolves at the next append; create and `enable` it before looking
    /// at the journal so that an append in between is not missed.
    pub fn appended(&self) -> Notified<'_> {
        self.appended.notified()
    }

    /// Called when the journal refused `bodies`: raise the alarm and hold them.
    pub fn failed(&self, error: &JournalError, bodies: Vec<EventBody>) {
        metrics::counter!("aeogate_journal_write_failures_total").increment(1);
        metrics::gauge!("aeogate_journal_alarm").set(1.0);
        tracing::error!(error = %error, "ALARM: the journal refuses writes; decisions continue without priority and records are held in memory");
        self.health.down(format!("journal refuses writes: {error}"));
        if let Ok(mut held) = self.held.lock() {
            if held.len() >= HELD_MAX {
                held.pop_front();
                metrics::counter!("aeogate_journal_held_dropped_total").increment(1);
                tracing::error!("held-record buffer full: the oldest held records are dropped");
            }
            held.push_back(bodies);
        }
    }

    /// Groups of records held now.
    #[must_use]
    pub fn held(&self) -> usize {
        self.held.lock().map_or(0, |h| h.len())
    }

    /// Stops grouping: the writer task writes what is queued and ends; later appends
    /// write directly.
    pub fn close(&self) {
        self.writer.close();
    }
}

/// Offers held records to the journal again until it takes them, oldest first, and
/// clears the alarm when nothing is held any more.
pub async fn retry_held(journal: Arc<Journal>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(HELD_RETRY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            () = shutdown.cancelled() => true,
            _ = tick.tick() => false,
        };
        loop {
            let next = journal.held.lock().ok().and_then(|h| h.front().cloned());
            let Some(bodies) = next else { break };
            let written = journal.writer.append(bodies, Timestamp::now()).await;
            match written {
                Ok(_) => {
                    if let Ok(mut h) = journal.held.lock() {
                        h.pop_front();
                    }
                    journal.appended.notify_waiters();
                }
                _ => break,
            }
        }
        let empty = journal.held.lock().map(|h| h.is_empty()).unwrap_or(false);
        if empty && !journal.health.current().up {
            metrics::gauge!("aeogate_journal_alarm").set(0.0);
            journal.health.up("writing again; held records journaled");
            tracing::warn!("the journal takes writes again; every held record is journaled");
        }
        if stopping {
            let left = journal.held.lock().map(|h| h.len()).unwrap_or(0);
            if left > 0 {
                tracing::error!(
                    left,
                    "stopping with records the journal would not take; they are lost"
                );
            }
            return;
        }
    }
}

/// Journals a device going up or down (not every detail change), so central sees outages.
pub async fn record_health(
    journal: Arc<Journal>,
    mut rx: watch::Receiver<DeviceHealth>,
    shutdown: CancellationToken,
) {
    let (mut last_up, device) = {
        let h = rx.borrow_and_update();
        (h.up, h.device.clone())
    };
    metrics::gauge!("aeogate_device_up", "device" => device).set(if last_up { 1.0 } else { 0.0 });
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = rx.changed() => if changed.is_err() { return },
        }
        let health = rx.borrow_and_update().clone();
        metrics::gauge!("aeogate_device_up", "device" => health.device.clone()).set(if health.up {
            1.0
        } else {
            0.0
        });
        if health.up != last_up {
            last_up = health.up;
            if let Err(e) = journal
                .append(vec![EventBody::DeviceHealth { health }])
                .await
            {
                tracing::error!(error = %format!("{e:#}"), "device health not journaled");
            }
        }
    }
}
