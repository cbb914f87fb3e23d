//! The uplink's heavy local work — reading a backlog's batches from the journal and
//! encoding them, tens of milliseconds of CPU a batch — on a thread of its own that runs
//! [`BACKGROUND_NICE`] levels below the agent's CPU priority.
//!
//! On a gate box the lanes and the drain share the same cores. A truck's decision is due
//! a fixed grace after it leaves, whatever the uplink is doing; the backlog is due only
//! eventually. Below the lanes' priority the drain still takes every cycle the lanes
//! leave idle (the drain's rate is met with it, docs/benchmarks.md figure 6), but a lane
//! that wakes up gets the core at once instead of sharing it.
//!
//! One thread per process, started on first use, shared by the agent's uplink tasks;
//! jobs run one at a time in the order they come. A job that panics fails only its
//! caller; the thread goes on.

use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

/// How many `nice` levels below the agent's the background thread runs (capped at 19,
/// the lowest priority).
pub const BACKGROUND_NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

static WORKER: OnceLock<Mutex<Option<mpsc::Sender<Job>>>> = OnceLock::new();

/// The job did not return: it panicked, or the thread could not be started.
#[derive(Debug, thiserror::Error)]
#[error("the uplink's background job did not finish (it panicked, or its thread could not start)")]
pub struct JobFailed;

/// Runs `f` on the background thread and returns its result.
///
/// # Errors
/// [`JobFailed`] when `f` panicked or the thread could not be started.
pub async fn run<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, JobFailed> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    submit(job)?;
    rx.await.map_err(|_| JobFailed)
}

fn submit(job: Job) -> Result<(), JobFailed> {
    let cell = WORKER.get_or_init(|| Mutex::new(None));
    let mut worker = cell
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut job = job;
    // At most twice: a thread found gone (it cannot end while a sender lives, but the
    // process may be tearing down) is started again once.
    for _ in 0..2 {
        let sender = match worker.as_ref() {
            Some(s) => s.clone(),
            None => {
                let s = spawn().map_err(|e| {
                    tracing::warn!(error = %e, "the uplink's background thread could not start");
                    JobFailed
                })?;
                *worker = Some(s.clone());
                s
            }
        };
        match sender.send(job) {
            Ok(()) => return Ok(()),
            Err(mpsc::SendError(back)) => {
                job = back;
                *worker = None;
            }
        }
    }
    Err(JobFailed)
}

fn spawn() -> std::io::Result<mpsc::Sender<Job>> {
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("uplink-background".into())
        .spawn(move || {
            lower_priority();
            // Ends when every sender is gone (the process ends).
            while let Ok(job) = rx.recv() {
                // A panicking job drops its answer (its caller sees JobFailed); the
                // thread goes on with the next.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
        })?;
    Ok(tx)
}

/// Lowers this thread's priority by [`BACKGROUND_NICE`]; a failure is logged and the
/// thread runs at the agent's priority.
fn lower_priority() {
    if let Err(e) = lower_this_thread(BACKGROUND_NICE) {
        tracing::warn!(error = %e, "the uplink's background thread keeps the agent's priority");
    }
}

/// Lowers the calling thread's CPU priority by `by` `nice` levels (at most to 19, the
/// lowest) and returns its new `nice` value. Threads it starts afterwards inherit it.
///
/// # Errors
/// The system refused to tell or to change it.
pub fn lower_this_thread(by: i32) -> std::io::Result<i32> {
    let me = Some(rustix::thread::gettid());
    let nice = (rustix::process::getpriority_process(me)? + by).min(19);
    rustix::process::setpriority_process(me, nice)?;
    Ok(nice)
}

/// This thread's `nice` value.
///
/// # Errors
/// The system refused to tell.
pub fn current_nice() -> std::io::Result<i32> {
    Ok(rustix::process::getpriority_process(Some(
        rustix::thread::gettid(),
    ))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_below_the_callers_priority_and_a_panic_fails_only_its_caller() {
        let mine = current_nice().expect("nice");
        let theirs = run(|| current_nice().expect("nice")).await.expect("ran");
        assert_eq!(
            theirs,
            (mine + BACKGROUND_NICE).min(19),
            "ran {BACKGROUND_NICE} below"
        );
        assert_ne!(
            run(|| std::thread::current().id()).await.expect("ran"),
            std::thread::current().id(),
            "on a thread of its own"
        );

        #[allow(clippy::panic)]
        let failed = run(|| -> u8 { panic!("a job that panics") }).await;
        assert!(failed.is_err(), "the panicking job's caller is told");
        assert_eq!(run(|| 7).await.expect("the thread goes on"), 7);
    }
}
