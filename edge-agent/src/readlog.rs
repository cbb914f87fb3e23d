//! The read log as the sources use it: a lane event is written durably
//! ([`Store::log_reads`]) before the source answers the device that sent it (the lane
//! board's link ack, the broker's PUBACK), and the pipeline removes it in the journal
//! write that records where it ended ([`crate::journal::Journal::append_at_consuming`]).
//! At start the pipeline replays what is left ([`ReadLog::replay`]): the trucks that were
//! in the lane when the agent stopped, whose records were not yet journaled.
//!
//! One writer (a thread of the runtime's blocking pool) takes every request queued while the previous commit was on disk and
//! writes them in one transaction (group commit), so several ports and the broker share
//! one fsync. In the running agent that writer is the journal's
//! ([`ReadLog::sharing`]): a commit window's reads and decisions share one fsync. A failed write is logged and counted (`aeogate_read_log_failures_total`);
//! the source still answers and forwards the event (a full disk must not stop the lane),
//! which is then only in memory, as before the log existed.

use std::sync::Mutex;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::assembler::AssemblerEvent;
use crate::journal::{Journal, JournalWriter, LogRequest, WriteRequest};
use crate::lane_work::LaneWork;
use crate::store::{JournalError, Store};

/// The encoding of an event in the read log; its bytes are also its identity when the
/// journal consumes it, so the same event always encodes the same way.
#[must_use]
pub fn encode(event: &AssemblerEvent) -> Vec<u8> {
    // A plain data enum of strings, numbers and timestamps: serialising cannot fail.
    serde_json::to_vec(event).unwrap_or_default()
}

/// The read log's writer.
#[derive(Debug)]
pub struct ReadLog {
    store: Store,
    queue: Mutex<Option<mpsc::Sender<WriteRequest>>>,
    /// Writes queued and not yet answered (the journal writer's count when shared).
    lanes: std::sync::Arc<LaneWork>,
}

impl ReadLog {
    /// Starts a writer of its own on the current runtime; it ends after
    /// [`ReadLog::close`] once what was queued is written.
    #[must_use]
    pub fn start(store: Store) -> (ReadLog, JoinHandle<()>) {
        // A writer no journal uses: the read log holds its only queue.
        let (writer, task) = JournalWriter::start(store);
        (ReadLog::sharing_writer(&writer), task)
    }

    /// A read log whose events go through the journal's writer, sharing its commit
    /// windows: the reads and the decisions queued while the previous commit was on disk
    /// are written in one transaction (one fsync instead of one for each). The writer
    /// ends once this read log and the journal are both closed.
    #[must_use]
    pub fn sharing(journal: &Journal) -> ReadLog {
        ReadLog::sharing_writer(journal.writer())
    }

    /// [`ReadLog::sharing`] with a bare [`JournalWriter`].
    #[must_use]
    pub fn sharing_writer(writer: &JournalWriter) -> ReadLog {
        ReadLog {
            store: writer.store().clone(),
            queue: Mutex::new(writer.queue()),
            lanes: writer.lane_work().clone(),
        }
    }

    /// Writes `events` durably, grouped with whatever else is queued; returns after the
    /// commit. Answer the device only after this returns `Ok`.
    ///
    /// # Errors
    /// The store's error (nothing of this call was written then).
    pub async fn log(&self, events: &[AssemblerEvent]) -> Result<(), JournalError> {
        if events.is_empty() {
            return Ok(());
        }
        let _pending = self.lanes.begin();
        let encoded: Vec<Vec<u8>> = events.iter().map(encode).collect();
        let started = std::time::Instant::now();
        let queue = self.queue.lock().ok().and_then(|q| q.clone());
        let result = match queue {
            Some(queue) => {
                let (reply, answer) = oneshot::channel();
                match queue
                    .send(WriteRequest::Log(LogRequest {
                        events: encoded,
                        reply,
                    }))
                    .await
                {
                    Ok(()) => answer.await.unwrap_or(Err(JournalError::WriterStopped)),
                    Err(mpsc::error::SendError(WriteRequest::Log(req))) => {
                        self.direct(req.events).await
                    }
                    Err(mpsc::error::SendError(_)) => Err(JournalError::WriterStopped),
                }
            }
            None => self.direct(encoded).await,
        };
        metrics::histogram!("aeogate_read_log_seconds").record(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            metrics::counter!("aeogate_read_log_failures_total").increment(1);
            tracing::error!(error = %e, "a lane event could not be written to the read log; it is held in memory only");
        }
        result
    }

    async fn direct(&self, events: Vec<Vec<u8>>) -> Result<(), JournalError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.log_reads(&events))
            .await
            .unwrap_or(Err(JournalError::WriterStopped))
    }

    /// Stops grouping: later calls write directly. A writer of its own
    /// ([`ReadLog::start`]) writes what is queued and ends.
    pub fn close(&self) {
        if let Ok(mut q) = self.queue.lock() {
            q.take();
        }
    }

    /// The events left in the store's read log, oldest first: what the pipeline replays
    /// at start. An entry that does not decode (a damaged value) is reported and skipped.
    ///
    /// # Errors
    /// The store's error reading the log.
    pub fn replay(store: &Store) -> Result<Vec<AssemblerEvent>, JournalError> {
        let mut out = Vec::new();
        for (seq, bytes) in store.logged_reads()? {
            match serde_json::from_slice::<AssemblerEvent>(&bytes) {
                Ok(ev) => out.push(ev),
                Err(e) => {
                    tracing::error!(seq, error = %e, "read log entry unreadable; skipped");
                }
            }
        }
        Ok(out)
    }
}
