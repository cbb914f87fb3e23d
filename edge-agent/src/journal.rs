//! The journal as the running agent uses it: the one writer (group commit), the records
//! held while the disk refuses writes, the alarm and the journal's own health, and the
//! "appended" notification the uplink waits on. Storage itself is [`crate::store`].
//!
//! Failure policy: when a write fails (a full disk), the caller's records are held in
//! memory and in the held-records file beside the store, oldest first
//! ([`Journal::failed`]), the journal's health goes down (so `/readyz` is false) and the
//! alarm gauge is raised. redb refuses everything after an I/O error until the database is
//! reopened, so [`retry_held`] reopens it (with backoff) once the disk takes writes again,
//! writes the held records back in order (before any new record), clears the alarm and
//! journals an integrity alert (`JOURNAL_WRITE_FAILED`) for central saying what happened.
//! Records still held at a stop — or a crash — are in the held-records file and are
//! journaled first at the next start. Decisions go on meanwhile, never FAST
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

use crate::backoff::Backoff;
use crate::lane_work::LaneWork;
use crate::live::HealthReporter;
use crate::store::{HeldFile, HeldGroup, JournalError, Store, WindowResult};

/// Most append requests the journal writer queues before callers wait to send.
const JOURNAL_QUEUE: usize = 1024;

/// Most bodies one group commit takes, so that a burst is written in bounded
/// transactions (each a few hundred kB of JSON) and the first caller is not kept waiting
/// for an unbounded batch.
const JOURNAL_GROUP_MAX_BODIES: usize = 512;

/// One caller's records, answered only after the commit that holds them.
pub(crate) struct AppendRequest {
    bodies: Vec<EventBody>,
    at: Timestamp,
    /// Read-log events these records account for, removed in the same commit.
    consumed: Vec<Vec<u8>>,
    reply: tokio::sync::oneshot::Sender<Result<Vec<JournalEntry>, Box<Unwritten>>>,
}

/// An append the journal did not take, handed back whole: the caller holds its records
/// ([`Journal::failed`]) without having kept a copy of them.
#[derive(Debug)]
pub struct Unwritten {
    /// Why nothing was written.
    pub error: JournalError,
    /// The bodies, as given.
    pub bodies: Vec<EventBody>,
    /// The read-log events they account for, as given.
    pub consumed: Vec<Vec<u8>>,
}

/// One source's lane events for the read log ([`crate::readlog`]), answered only after
/// the commit that holds them.
pub(crate) struct LogRequest {
    pub(crate) events: Vec<Vec<u8>>,
    pub(crate) reply: tokio::sync::oneshot::Sender<Result<(), JournalError>>,
}

/// What the writer takes: journal appends, read-log appends and the uplink's
/// acknowledged cursor share its commits.
pub(crate) enum WriteRequest {
    Append(AppendRequest),
    Log(LogRequest),
    Ack(AckRequest),
}

/// The uplink's new acknowledged cursor, answered after the commit that records it.
pub(crate) struct AckRequest {
    seq: u64,
    reply: tokio::sync::oneshot::Sender<Result<(), JournalError>>,
}

/// The agent's one journal writer: a thread that takes every append request queued while
/// the previous commit was on disk and writes them in one durable write transaction
/// ([`Store::log_and_append`]: group commit, one fsync for all of them), then answers each
/// caller. A caller acts only after its answer, so "journal, then act" holds for each
/// record; under a burst (a replay, several lanes closing at once) the journal runs at the
/// group rate instead of one fsync per decision (docs/benchmarks.md, figure 3).
///
/// The read log ([`crate::readlog::ReadLog::sharing`]) queues its lane events to the same
/// writer, so the reads that arrived and the decisions made during one commit window share
/// one write transaction and one fsync: each caller is still answered only after the
/// commit holding its own part.
#[derive(Debug)]
pub struct JournalWriter {
    store: Store,
    queue: Mutex<Option<mpsc::Sender<WriteRequest>>>,
    /// Group commits made by the writer (for the benchmark and the metrics).
    commits: Arc<std::sync::atomic::AtomicU64>,
    /// Appends queued and not yet answered (the uplink yields to them).
    lanes: Arc<LaneWork>,
}

impl std::fmt::Debug for AppendRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendRequest")
            .field("bodies", &self.bodies.len())
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for WriteRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Append(a) => a.fmt(f),
            Self::Log(l) => f
                .debug_struct("LogRequest")
                .field("events", &l.events.len())
                .finish_non_exhaustive(),
            Self::Ack(a) => f
                .debug_struct("AckRequest")
                .field("seq", &a.seq)
                .finish_non_exhaustive(),
        }
    }
}

/// Starts a writer over `store` on the current runtime: its queue, the writer's handle,
/// and its count of commits. The writer is one thread of the runtime's blocking pool that
/// takes a window of requests and commits it itself (no task and no blocking hand-off per
/// window); it ends once every sender is dropped and what was queued is written.
pub(crate) fn spawn_writer(
    store: Store,
) -> (
    mpsc::Sender<WriteRequest>,
    JoinHandle<()>,
    Arc<std::sync::atomic::AtomicU64>,
) {
    let (tx, rx) = mpsc::channel(JOURNAL_QUEUE);
    let commits = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = commits.clone();
    let task = tokio::task::spawn_blocking(move || journal_writer(&store, rx, &counted));
    (tx, task, commits)
}

impl JournalWriter {
    /// Starts the writer on the current tokio runtime (a thread of its blocking pool). It runs until
    /// [`JournalWriter::close`] (and the close of every read log sharing it) and then
    /// finishes what was queued; the handle resolves when it has.
    #[must_use]
    pub fn start(store: Store) -> (JournalWriter, JoinHandle<()>) {
        let (tx, task, commits) = spawn_writer(store.clone());
        (
            JournalWriter {
                store,
                queue: Mutex::new(Some(tx)),
                commits,
                lanes: LaneWork::new(),
            },
            task,
        )
    }

    /// Group commits the writer has made so far (successful or not).
    #[must_use]
    pub fn commits(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Requests in the writer's queue that it has not yet taken into a commit window.
    #[must_use]
    pub fn queued(&self) -> usize {
        self.queue()
            .map_or(0, |q| q.max_capacity().saturating_sub(q.capacity()))
    }

    /// The writer's queue while it takes requests (for a read log sharing it).
    pub(crate) fn queue(&self) -> Option<mpsc::Sender<WriteRequest>> {
        self.queue.lock().ok().and_then(|q| q.clone())
    }

    /// The store the writer writes to.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Every write but the uplink's cursor, from queued to answered (the uplink yields to
    /// them; a read log sharing this writer counts its writes here too).
    #[must_use]
    pub fn lane_work(&self) -> &Arc<LaneWork> {
        &self.lanes
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
        self.append_returning(bodies, at, consumed)
            .await
            .map_err(|u| u.error)
    }

    /// [`JournalWriter::append_consuming`] that hands the bodies and events back when
    /// they were not written ([`Unwritten`]), so the caller need not keep copies to hold
    /// them.
    ///
    /// # Errors
    /// As [`JournalWriter::append_consuming`], with what was not written. Should the
    /// writer stop without an answer (a panic in its commit), the bodies are lost with it:
    /// the error is [`JournalError::WriterStopped`] and the bodies are empty.
    pub async fn append_returning(
        &self,
        bodies: Vec<EventBody>,
        at: Timestamp,
        consumed: Vec<Vec<u8>>,
    ) -> Result<Vec<JournalEntry>, Box<Unwritten>> {
        self.queue_returning(bodies, at, consumed).await.await
    }

    /// [`JournalWriter::append_returning`] in two steps: returns once the append is in the
    /// writer's queue, behind every append queued before it (so appends queued one after
    /// the other are journaled in that order), with its answer to await later. The caller
    /// can go on with other work while the commit is on disk.
    pub async fn queue_returning(
        &self,
        bodies: Vec<EventBody>,
        at: Timestamp,
        consumed: Vec<Vec<u8>>,
    ) -> Answer {
        let pending = self.lanes.begin();
        let (bodies, consumed) = match self.queue() {
            Some(queue) => {
                let (reply, answer) = tokio::sync::oneshot::channel();
                let req = WriteRequest::Append(AppendRequest {
                    bodies,
                    at,
                    consumed,
                    reply,
                });
                match queue.send(req).await {
                    Ok(()) => {
                        return Box::pin(async move {
                            let _pending = pending;
                            answer.await.unwrap_or_else(|_| Err(writer_stopped()))
                        });
                    }
                    // Closed meanwhile: nothing was queued, write directly below.
                    Err(mpsc::error::SendError(WriteRequest::Append(req))) => {
                        (req.bodies, req.consumed)
                    }
                    Err(mpsc::error::SendError(_)) => {
                        return Box::pin(std::future::ready(Err(writer_stopped())));
                    }
                }
            }
            None => (bodies, consumed),
        };
        let store = self.store.clone();
        Box::pin(async move {
            let _pending = pending;
            append_direct(store, bodies, at, consumed).await
        })
    }

    /// Moves the acknowledged cursor to `seq` ([`Store::set_acked`]) in the writer's next
    /// commit, so the uplink's cursor takes no commit (and fsync) of its own that the
    /// lanes' appends would wait behind. After [`JournalWriter::close`] it writes on its
    /// own.
    ///
    /// # Errors
    /// As [`Store::set_acked`], or the commit's error.
    pub async fn set_acked(&self, seq: u64) -> Result<(), JournalError> {
        if let Some(queue) = self.queue() {
            let (reply, answer) = tokio::sync::oneshot::channel();
            if queue
                .send(WriteRequest::Ack(AckRequest { seq, reply }))
                .await
                .is_ok()
            {
                return answer.await.unwrap_or(Err(JournalError::WriterStopped));
            }
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.set_acked(seq))
            .await
            .unwrap_or(Err(JournalError::WriterStopped))
    }

    /// Stops taking requests into groups; the writer writes what is queued and ends.
    pub fn close(&self) {
        if let Ok(mut q) = self.queue.lock() {
            q.take();
        }
    }
}

/// An append's answer, awaited after it was queued ([`JournalWriter::queue_returning`]).
pub type Answer = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Vec<JournalEntry>, Box<Unwritten>>> + Send>,
>;

/// One append in a commit of its own (after the writer stopped taking requests).
async fn append_direct(
    store: Store,
    bodies: Vec<EventBody>,
    at: Timestamp,
    consumed: Vec<Vec<u8>>,
) -> Result<Vec<JournalEntry>, Box<Unwritten>> {
    tokio::task::spawn_blocking(move || {
        let r = store.log_and_append(&[], vec![(bodies, at)], &consumed, None);
        match r.appended {
            Ok(mut g) => Ok(g.pop().unwrap_or_default()),
            Err(error) => Err(Box::new(Unwritten {
                error,
                bodies: r
                    .unwritten
                    .into_iter()
                    .next()
                    .map(|(b, _)| b)
                    .unwrap_or_default(),
                consumed,
            })),
        }
    })
    .await
    .unwrap_or_else(|_| Err(writer_stopped()))
}

/// The answer when the writer ended without one: nothing of the append is known to be
/// written, and its bodies went with the writer.
fn writer_stopped() -> Box<Unwritten> {
    Box::new(Unwritten {
        error: JournalError::WriterStopped,
        bodies: Vec::new(),
        consumed: Vec::new(),
    })
}

/// The writer's loop, on its own blocking thread: waits for a request, takes every
/// request queued behind it (up to the window's bounds) and commits them together.
fn journal_writer(
    store: &Store,
    mut rx: mpsc::Receiver<WriteRequest>,
    commits: &std::sync::atomic::AtomicU64,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut window = Window::default();
        window.push(first);
        while window.bodies < JOURNAL_GROUP_MAX_BODIES && window.events < READ_LOG_GROUP_MAX {
            match rx.try_recv() {
                Ok(req) => window.push(req),
                Err(_) => break,
            }
        }
        // A panic in the commit drops every reply of the window (callers see
        // `WriterStopped`); the writer goes on with the next window.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            commit_window(store, window, commits);
        }));
    }
}

/// Most read-log events one commit takes.
const READ_LOG_GROUP_MAX: usize = 512;

/// The requests of one commit window.
#[derive(Default)]
struct Window {
    appends: Vec<AppendRequest>,
    logs: Vec<LogRequest>,
    acks: Vec<AckRequest>,
    bodies: usize,
    events: usize,
}

impl Window {
    fn push(&mut self, req: WriteRequest) {
        match req {
            WriteRequest::Append(a) => {
                self.bodies += a.bodies.len();
                self.appends.push(a);
            }
            WriteRequest::Log(l) => {
                self.events += l.events.len();
                self.logs.push(l);
            }
            WriteRequest::Ack(a) => self.acks.push(a),
        }
    }
}

/// Writes a window in one transaction and answers each caller. Nothing of a failed
/// window is written, and every caller gets the failure (and holds its records).
/// The commit is counted before anyone is answered.
fn commit_window(store: &Store, window: Window, commits: &std::sync::atomic::AtomicU64) {
    let Window {
        appends,
        logs,
        acks,
        ..
    } = window;
    if !appends.is_empty() {
        metrics::histogram!("aeogate_journal_group_requests").record(appends.len() as f64);
    }
    // Every request's consumed events in one list for the store; each request's count, to
    // hand its own back should the window fail.
    let mut consumed = Vec::new();
    let mut counts = Vec::with_capacity(appends.len());
    let (inputs, replies): (Vec<_>, Vec<_>) = appends
        .into_iter()
        .map(|r| {
            counts.push(r.consumed.len());
            consumed.extend(r.consumed);
            ((r.bodies, r.at), r.reply)
        })
        .unzip();
    let (events, log_replies): (Vec<Vec<Vec<u8>>>, Vec<_>) =
        logs.into_iter().map(|l| (l.events, l.reply)).unzip();
    let events: Vec<Vec<u8>> = events.into_iter().flatten().collect();
    // The furthest cursor asked for; a cursor never moves backwards.
    let ack = acks.iter().map(|a| a.seq).max();
    let began = std::time::Instant::now();
    let WindowResult {
        logged,
        appended,
        acked,
        unwritten,
    } = if replies.is_empty() && ack.is_none() {
        WindowResult {
            logged: store.log_reads(&events),
            appended: Ok(Vec::new()),
            acked: Ok(()),
            unwritten: Vec::new(),
        }
    } else {
        store.log_and_append(&events, inputs, &consumed, ack)
    };
    metrics::histogram!("aeogate_journal_commit_seconds").record(began.elapsed().as_secs_f64());
    commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    for reply in log_replies {
        let _ = reply.send(match &logged {
            Ok(()) => Ok(()),
            Err(e) => Err(e.for_group_member()),
        });
    }
    // The last asker gets the error itself (the uplink asks one at a time).
    let mut acked = Some(acked);
    let last = acks.len().saturating_sub(1);
    for (i, a) in acks.into_iter().enumerate() {
        let answer = match acked.as_ref() {
            Some(Err(e)) if i < last => Err(e.for_group_member()),
            _ if i == last => acked.take().unwrap_or(Ok(())),
            _ => Ok(()),
        };
        let _ = a.reply.send(answer);
    }
    match appended {
        Ok(entries) => {
            for (reply, e) in replies.into_iter().zip(entries) {
                let _ = reply.send(Ok(e));
            }
        }
        Err(e) => {
            // Each caller's own events, taken from the end of the list backwards.
            let mut own: Vec<Vec<Vec<u8>>> = counts
                .iter()
                .rev()
                .map(|n| consumed.split_off(consumed.len().saturating_sub(*n)))
                .collect();
            own.reverse();
            let mut bodies = unwritten.into_iter().map(|(b, _)| b);
            for (reply, consumed) in replies.into_iter().zip(own) {
                let _ = reply.send(Err(Box::new(Unwritten {
                    error: e.for_group_member(),
                    bodies: bodies.next().unwrap_or_default(),
                    consumed,
                })));
            }
        }
    }
}

/// Most groups of records held in memory while the journal refuses writes (about a day
/// of a busy lane); past it the oldest are dropped, counted and logged.
const HELD_MAX: usize = 20_000;

/// How often held records are offered to the journal again (and a failed database is
/// checked for reopening).
pub const HELD_RETRY: Duration = Duration::from_secs(1);

/// First and longest wait between attempts to reopen a database that failed a write.
const REOPEN_FIRST: Duration = Duration::from_secs(1);
const REOPEN_MAX: Duration = Duration::from_secs(15);

/// How long the journal must take writes with no new failure before an outage is over
/// and reported: a disk that is almost full lets some commits through between failures,
/// and that is one outage, not many.
const OUTAGE_SETTLE: Duration = Duration::from_secs(5);

/// Most held groups written back in one commit.
const HELD_FLUSH_GROUPS: usize = 256;

/// The integrity alert journaled (and so sent to central) when the journal takes writes
/// again after refusing them.
pub const ALERT_JOURNAL_WRITE_FAILED: &str = "JOURNAL_WRITE_FAILED";

/// What happened since the journal last refused a write, for the alert once it recovers.
#[derive(Debug, Clone)]
struct Outage {
    since: Timestamp,
    first_error: String,
    /// Writes refused (or the store found failed) in this outage, and when last.
    failures: u32,
    last_failure: tokio::time::Instant,
    /// Groups held in this outage (including ones found in the held-records file at start).
    held: usize,
    /// Groups found in the held-records file at start.
    replayed: usize,
    /// Groups dropped because the memory bound was reached.
    dropped: usize,
    /// Times the database was reopened.
    reopened: u32,
    /// Held transactions found already journaled when written back (a write reported as
    /// failed had been committed), as `id (shown DECISION)`.
    committed_anyway: Vec<String>,
}

/// The running agent's journal: every write goes through its [`JournalWriter`].
#[derive(Debug)]
pub struct Journal {
    store: Store,
    writer: JournalWriter,
    /// Records the journal could not take (a full disk), oldest first.
    held: Mutex<VecDeque<HeldGroup>>,
    /// Where held records are kept across a stop (`None` when it could not be reserved).
    held_file: Mutex<Option<HeldFile>>,
    held_path: std::path::PathBuf,
    /// One flush of held records at a time, so they reach the journal in order.
    flushing: tokio::sync::Mutex<()>,
    outage: Mutex<Option<Outage>>,
    /// The journal's own health, shown like a device: down while records are held.
    health: HealthReporter,
    /// Woken after every append (the uplink waits on it).
    appended: Notify,
}

impl Outage {
    fn new(first_error: String) -> Outage {
        Outage {
            since: Timestamp::now(),
            first_error,
            failures: 0,
            last_failure: tokio::time::Instant::now(),
            held: 0,
            replayed: 0,
            dropped: 0,
            reopened: 0,
            committed_anyway: Vec::new(),
        }
    }
}

impl Journal {
    /// Starts the writer over `store`. Returns the journal, its health channel (to
    /// list with the devices) and the writer's handle, which ends after [`Journal::close`]
    /// once what was queued is written.
    ///
    /// Records held when the agent last stopped (the held-records file beside the store)
    /// are taken back, ahead of anything new; the held-records file is reserved.
    #[must_use]
    pub fn start(store: Store) -> (Arc<Journal>, watch::Receiver<DeviceHealth>, JoinHandle<()>) {
        let (health, health_rx) = HealthReporter::new("journal", None);
        health.up("writing");
        let held_path = held_file_path(store.path());
        let (held_file, found) = match HeldFile::open(&held_path) {
            Ok((f, found)) => (Some(f), found),
            Err(e) => {
                tracing::error!(error = %e, "cannot reserve the held-records file; records held while the disk is full would not survive a stop");
                (None, HeldFile::read(&held_path))
            }
        };
        // Held records account for their trucks' lane events: those leave the read log
        // now, before the lanes replay it, so a restart does not rebuild a transaction
        // for a truck whose record is held (the held-records file keeps the record until
        // it is journaled).
        let consumed: Vec<Vec<u8>> = found.iter().flat_map(|g| g.consumed.clone()).collect();
        if let Err(e) = store.unlog_reads(&consumed) {
            tracing::error!(error = %e, "the lane events of held records could not be removed from the read log; a restart may rebuild their transactions");
        }
        // A group journaled just before a crash can still be in the file: keep only what
        // the journal does not have.
        let found: VecDeque<HeldGroup> = found
            .into_iter()
            .filter(|g| !already_journaled(&store, g))
            .collect();
        let outage = (!found.is_empty()).then(|| {
            tracing::warn!(
                groups = found.len(),
                file = %held_path.display(),
                "records held when the agent last stopped are journaled first"
            );
            health.down(format!(
                "{} groups of records held from the last run",
                found.len()
            ));
            Outage {
                since: Timestamp::now(),
                first_error: "records were held when the agent last stopped".into(),
                failures: 0,
                last_failure: tokio::time::Instant::now(),
                held: found.len(),
                replayed: found.len(),
                dropped: 0,
                reopened: 0,
                committed_anyway: Vec::new(),
            }
        });
        let (writer, task) = JournalWriter::start(store.clone());
        let journal = Arc::new(Journal {
            store,
            writer,
            held: Mutex::new(found),
            held_file: Mutex::new(held_file),
            held_path,
            flushing: tokio::sync::Mutex::new(()),
            outage: Mutex::new(outage),
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

    /// The journal's writer (a read log shares its commits: [`crate::readlog::ReadLog::sharing`]).
    #[must_use]
    pub fn writer(&self) -> &JournalWriter {
        &self.writer
    }

    /// Whether the journal takes writes now: nothing is held and the database needs no
    /// reopening (`/readyz` is false otherwise).
    #[must_use]
    pub fn writable(&self) -> bool {
        self.health.current().up && !self.store.needs_reopen()
    }

    /// Journals `bodies` durably (grouped with whatever else is queued) and wakes the
    /// uplink. Held records are written first, so the journal keeps their order.
    ///
    /// # Errors
    /// When the store refuses the write (nothing was journaled then).
    pub async fn append(&self, bodies: Vec<EventBody>) -> anyhow::Result<Vec<JournalEntry>> {
        let entries = self
            .append_at(bodies, Timestamp::now())
            .await
            .context("journal append failed")?;
        self.appended.notify_waiters();
        metrics::gauge!("aeogate_journal_head").set(self.store.journal_head() as f64);
        Ok(entries)
    }

    /// Journals `bodies` stamped `at`, without waking the uplink: the caller decides what
    /// a failure means ([`Journal::failed`]) and calls [`Journal::notify_appended`].
    /// Held records are written first; when they cannot be, neither is this.
    ///
    /// # Errors
    /// As [`JournalWriter::append`].
    pub async fn append_at(
        &self,
        bodies: Vec<EventBody>,
        at: Timestamp,
    ) -> Result<Vec<JournalEntry>, JournalError> {
        if self.held() > 0 {
            self.flush_held().await?;
        }
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

    /// [`Journal::append_at_consuming`] that hands back what was not written
    /// ([`JournalWriter::append_returning`]).
    ///
    /// # Errors
    /// As [`JournalWriter::append_returning`].
    pub async fn append_at_returning(
        &self,
        bodies: Vec<EventBody>,
        at: Timestamp,
        consumed: Vec<Vec<u8>>,
    ) -> Result<Vec<JournalEntry>, Box<Unwritten>> {
        self.writer.append_returning(bodies, at, consumed).await
    }

    /// [`Journal::append_at_returning`] in two steps ([`JournalWriter::queue_returning`]):
    /// queued now, in the order of calls; the answer comes with the commit.
    pub async fn queue_at_returning(
        &self,
        bodies: Vec<EventBody>,
        at: Timestamp,
        consumed: Vec<Vec<u8>>,
    ) -> Answer {
        self.writer.queue_returning(bodies, at, consumed).await
    }

    /// Moves the acknowledged cursor in the writer's next commit
    /// ([`JournalWriter::set_acked`]).
    ///
    /// # Errors
    /// As [`JournalWriter::set_acked`].
    pub async fn set_acked(&self, seq: u64) -> Result<(), JournalError> {
        self.writer.set_acked(seq).await
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

    /// Called when the journal refused `bodies`: raise the alarm, hold them (in memory and
    /// in the held-records file) and note the outage for central.
    /// `consumed`: the lane events (read-log encoding) the records account for; they leave
    /// the read log when the held records are journaled.
    pub fn failed(&self, error: &JournalError, bodies: Vec<EventBody>, consumed: Vec<Vec<u8>>) {
        metrics::counter!("aeogate_journal_write_failures_total").increment(1);
        metrics::gauge!("aeogate_journal_alarm").set(1.0);
        tracing::error!(error = %error, "ALARM: the journal refuses writes; decisions continue without priority and records are held");
        self.health.down(format!("journal refuses writes: {error}"));
        let mut dropped = 0;
        if let Ok(mut held) = self.held.lock() {
            if held.len() >= HELD_MAX {
                held.pop_front();
                dropped = 1;
                metrics::counter!("aeogate_journal_held_dropped_total").increment(1);
                tracing::error!("held-record buffer full: the oldest held records are dropped");
            }
            held.push_back(HeldGroup {
                at: Timestamp::now(),
                bodies,
                consumed,
            });
        }
        if let Ok(mut o) = self.outage.lock() {
            let o = o.get_or_insert_with(|| Outage::new(error.to_string()));
            o.failures += 1;
            o.last_failure = tokio::time::Instant::now();
            o.held += 1;
            o.dropped += dropped;
        }
        self.save_held();
    }

    /// Groups of records held now.
    #[must_use]
    pub fn held(&self) -> usize {
        self.held.lock().map_or(0, |h| h.len())
    }

    /// Stops grouping: the writer writes what is queued and ends; later appends
    /// write directly.
    pub fn close(&self) {
        self.writer.close();
    }

    /// Writes the held records to the held-records file (a small synchronous write: it
    /// happens only while the disk refuses the journal, and must be done before the
    /// caller goes on).
    fn save_held(&self) {
        let groups: Vec<HeldGroup> = self
            .held
            .lock()
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default();
        let Ok(mut file) = self.held_file.lock() else {
            return;
        };
        let Some(file) = file.as_mut() else {
            if !groups.is_empty() {
                tracing::error!(
                    held = groups.len(),
                    file = %self.held_path.display(),
                    "no held-records file: the held records are only in memory and are lost if the agent stops"
                );
            }
            return;
        };
        match file.save(&groups) {
            Ok(n) if n < groups.len() => tracing::error!(
                saved = n,
                not_saved = groups.len() - n,
                "the held-records file is full: the newest held records are only in memory"
            ),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "held records not saved"),
        }
    }

    /// Writes held records to the journal, oldest first, in bounded commits; returns how
    /// many groups were written.
    async fn flush_held(&self) -> Result<usize, JournalError> {
        let _one = self.flushing.lock().await;
        let mut written = 0;
        loop {
            let batch: Vec<HeldGroup> = self
                .held
                .lock()
                .map(|h| h.iter().take(HELD_FLUSH_GROUPS).cloned().collect())
                .unwrap_or_default();
            if batch.is_empty() {
                return Ok(written);
            }
            let n = batch.len();
            let store = self.store.clone();
            let found = tokio::task::spawn_blocking(move || write_back(&store, batch))
                .await
                .unwrap_or(Err(JournalError::WriterStopped))?;
            if !found.is_empty() {
                tracing::warn!(
                    transactions = ?found,
                    "a journal write reported as failed had been committed: those records are in the journal as first made, and their held copies are not written again"
                );
                if let Ok(mut o) = self.outage.lock() {
                    o.get_or_insert_with(|| Outage::new("a store write failed".into()))
                        .committed_anyway
                        .extend(found);
                }
            }
            if let Ok(mut h) = self.held.lock() {
                let n = n.min(h.len());
                h.drain(..n);
            }
            written += n;
            self.save_held();
            self.appended.notify_waiters();
        }
    }

    /// One pass of recovery: reopen a database that failed a write (at most as often as
    /// `backoff` allows), write back held records, and once nothing is held, clear the
    /// alarm and journal the outage as an integrity alert for central.
    async fn recover(
        &self,
        backoff: &mut Backoff,
        next_reopen: &mut tokio::time::Instant,
        stopping: bool,
    ) {
        if self.store.needs_reopen() {
            if self.health.current().up {
                self.health
                    .down("the store failed a write; reopening it once the disk takes writes");
                metrics::gauge!("aeogate_journal_alarm").set(1.0);
            }
            if let Ok(mut o) = self.outage.lock() {
                let o = o.get_or_insert_with(|| Outage::new("a store write failed".into()));
                o.last_failure = tokio::time::Instant::now();
            }
            // At a stop the held-records file keeps what is held; no reopen then.
            if stopping || tokio::time::Instant::now() < *next_reopen {
                return;
            }
            let store = self.store.clone();
            match tokio::task::spawn_blocking(move || store.reopen()).await {
                Ok(Ok(())) => {
                    backoff.reset();
                    if let Ok(mut o) = self.outage.lock()
                        && let Some(o) = o.as_mut()
                    {
                        o.reopened += 1;
                    }
                    tracing::warn!("the store was reopened after a failed write");
                }
                Ok(Err(e)) => {
                    let wait = backoff.next_delay();
                    *next_reopen = tokio::time::Instant::now() + wait;
                    tracing::warn!(error = %e, ?wait, "the store cannot be reopened yet");
                    return;
                }
                Err(_) => return,
            }
        }
        if self.held() > 0 {
            match self.flush_held().await {
                Ok(n) => tracing::warn!(groups = n, "held records journaled"),
                Err(e) => {
                    tracing::debug!(error = %e, "held records still refused");
                    return;
                }
            }
        }
        let outage = self.outage.lock().ok().and_then(|o| o.clone());
        let Some(o) = outage else { return };
        if !self.health.current().up {
            metrics::gauge!("aeogate_journal_alarm").set(0.0);
            self.health.up("writing again; held records journaled");
            tracing::warn!("the journal takes writes again; every held record is journaled");
        }
        // Reported once it is over (or at a stop, so that it is not lost).
        if !stopping && o.last_failure.elapsed() < OUTAGE_SETTLE {
            return;
        }
        let detail = format!(
            "the journal refused writes from {} to about {} ({} refusals; first: {}); {} groups of records were held{}{}{}{}, and all of them are journaled now",
            o.since,
            Timestamp::now(),
            o.failures,
            o.first_error,
            o.held,
            if o.replayed > 0 {
                format!(
                    " ({} of them across a stop, kept in {})",
                    o.replayed,
                    self.held_path.display()
                )
            } else {
                String::new()
            },
            if o.dropped > 0 {
                format!(
                    "; {} groups were dropped (the memory bound was reached) and are LOST",
                    o.dropped
                )
            } else {
                String::new()
            },
            if o.reopened > 0 {
                format!("; the store was reopened {} times", o.reopened)
            } else {
                String::new()
            },
            if o.committed_anyway.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} writes reported as failed had been committed, so the journal has these trucks' records as first made, not as the lane showed them: {}",
                    o.committed_anyway.len(),
                    o.committed_anyway.join(", ")
                )
            },
        );
        let alert = EventBody::IntegrityAlert {
            what: ALERT_JOURNAL_WRITE_FAILED.into(),
            detail: detail.clone(),
        };
        if self
            .writer
            .append(vec![alert], Timestamp::now())
            .await
            .is_err()
        {
            return;
        }
        if let Ok(mut g) = self.outage.lock() {
            *g = None;
        }
        self.appended.notify_waiters();
        tracing::warn!(%detail, "journal outage over; reported to central");
    }
}

/// The held-records file of the store at `store_path`: `<store>.held` beside it.
#[must_use]
pub fn held_file_path(store_path: &std::path::Path) -> std::path::PathBuf {
    let mut name = store_path.as_os_str().to_owned();
    name.push(".held");
    std::path::PathBuf::from(name)
}

/// Writes held groups back to the journal in one commit (their lane events leave the
/// read log in it), except those whose transaction the journal already has: a write
/// that failed can still have been committed (redb can report an I/O error after the
/// commit reached the file, e.g. while freeing pages on a full disk), and the truck
/// must not be recorded twice. Returns those transactions, as `id (shown DECISION)`.
fn write_back(store: &Store, batch: Vec<HeldGroup>) -> Result<Vec<String>, JournalError> {
    let mut found = Vec::new();
    let mut consumed = Vec::new();
    let mut groups = Vec::new();
    for g in batch {
        consumed.extend(g.consumed.iter().cloned());
        if already_journaled(store, &g) {
            found.push(held_summary(&g));
        } else {
            groups.push((g.bodies, g.at));
        }
    }
    store.append_groups_consuming(groups, &consumed)?;
    Ok(found)
}

/// A held group as the outage report names it: its transaction and what the lane showed.
fn held_summary(g: &HeldGroup) -> String {
    let mut id = None;
    let mut shown = None;
    for b in &g.bodies {
        match b {
            EventBody::Transaction { transaction } => id = Some(transaction.id),
            EventBody::Decision { decision } => shown = Some(decision.decision),
            _ => {}
        }
    }
    match (id, shown) {
        (Some(id), Some(d)) => format!("{id} (shown {d})"),
        (Some(id), None) => id.to_string(),
        _ => "a record".into(),
    }
}

/// Whether a held group's transaction is already in the journal (it was written just
/// before a crash that came before the held-records file was updated, or by a commit
/// that reported a failure after it reached the file).
fn already_journaled(store: &Store, g: &HeldGroup) -> bool {
    g.bodies.iter().any(|b| match b {
        EventBody::Transaction { transaction } => {
            store.has_transaction(&transaction.id).unwrap_or(false)
        }
        _ => false,
    })
}

/// Recovers the journal after refused writes until `shutdown`: reopens a store that
/// failed a write (with backoff), writes back held records oldest first, and clears the
/// alarm with an integrity alert to central once nothing is held. On shutdown, records
/// still held stay in the held-records file and are journaled at the next start.
pub async fn retry_held(journal: Arc<Journal>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(HELD_RETRY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut backoff = Backoff::new(REOPEN_FIRST, REOPEN_MAX);
    let mut next_reopen = tokio::time::Instant::now();
    loop {
        let stopping = tokio::select! {
            () = shutdown.cancelled() => true,
            _ = tick.tick() => false,
        };
        journal
            .recover(&mut backoff, &mut next_reopen, stopping)
            .await;
        if stopping {
            let left = journal.held();
            if left > 0 {
                let kept = journal
                    .held_file
                    .lock()
                    .map(|f| f.is_some())
                    .unwrap_or(false);
                if kept {
                    tracing::error!(
                        left,
                        file = %journal.held_path.display(),
                        "stopping with records the journal would not take; they are kept in the held-records file and journaled at the next start"
                    );
                } else {
                    tracing::error!(
                        left,
                        "stopping with records the journal would not take and no held-records file; they are lost"
                    );
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::schema::{CloseReason, GateId, GateTransaction, LaneId, SCHEMA_VERSION};

    fn tx_body(id: uuid::Uuid) -> EventBody {
        EventBody::Transaction {
            transaction: GateTransaction {
                v: SCHEMA_VERSION,
                id,
                gate: GateId::parse("G1").expect("gate"),
                lane: LaneId::parse("L1").expect("lane"),
                opened_at: Timestamp::UNIX_EPOCH,
                closed_at: Timestamp::UNIX_EPOCH,
                close_reason: CloseReason::Departure,
                reads: Vec::new(),
            },
        }
    }

    fn alert(what: &str) -> EventBody {
        EventBody::IntegrityAlert {
            what: what.into(),
            detail: String::new(),
        }
    }

    fn held(bodies: Vec<EventBody>) -> HeldGroup {
        HeldGroup {
            at: Timestamp::UNIX_EPOCH,
            bodies,
            consumed: Vec::new(),
        }
    }

    #[test]
    fn a_held_transaction_whose_failed_write_was_committed_is_not_journaled_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(
            &dir.path().join("s.redb"),
            GateId::parse("G1").expect("gate"),
        )
        .expect("store");
        let landed = uuid::Uuid::from_u128(1);
        let fresh = uuid::Uuid::from_u128(2);
        // The commit that reported a failure but reached the file.
        store
            .append_groups_consuming(
                vec![(
                    vec![tx_body(landed), alert("as first made")],
                    Timestamp::UNIX_EPOCH,
                )],
                &[],
            )
            .expect("append");
        let found = write_back(
            &store,
            vec![
                held(vec![tx_body(landed), alert("held copy")]),
                held(vec![tx_body(fresh), alert("held only")]),
            ],
        )
        .expect("write back");
        assert_eq!(found, vec![landed.to_string()]);
        let whats: Vec<String> = store
            .entries(1, 100)
            .expect("entries")
            .into_iter()
            .map(|e| match e.body {
                EventBody::Transaction { transaction } => transaction.id.to_string(),
                EventBody::IntegrityAlert { what, .. } => what,
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            whats,
            vec![
                landed.to_string(),
                "as first made".into(),
                fresh.to_string(),
                "held only".into()
            ]
        );
    }
}
