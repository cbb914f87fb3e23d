//! Figure 10's second baseline: the agent's input and output alone, with none of its
//! logic, over the same broker and driven by the same closed loop.
//!
//! What the agent must do for a truck, whatever it decides, is done here and nothing
//! else: the OCR read comes in over MQTT (QoS 1, manual acks, a persistent session), is
//! written durably to a read log before its PUBACK, the lane's WAITING state goes out
//! (retained), the lane closes [`super::mqtt::QUIET_CLOSE`] after the read, two journal
//! entries of the agent's size (the transaction and its decision, SHA-256 chained) are
//! committed durably in the same write transaction that removes the read from the read
//! log, and then the decided state (retained) and the decision event go out. Reads that
//! arrive while a commit runs are written together (group commit), as the agent does.
//! There is no assembler, replica look-up, policy, live view, console, metrics or uplink.
//!
//! Its CPU a decision (the utime + stime of its two threads: the runtime's and the
//! writer's) is what this machine charges for the agent's I/O with these parts (rumqttc,
//! redb, mosquitto on loopback): the part of the agent's figure that no change to the
//! agent's own logic can remove.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use redb::{Database, Durability, TableDefinition};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::footprint::cpu_ticks_at;

/// The read log: one record a read (the payload and an envelope of the agent's size).
const READS: TableDefinition<u64, &[u8]> = TableDefinition::new("floor_reads");
/// The journal: two entries a truck.
const JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("floor_journal");
/// Bytes of one journal entry: the size of the agent's entries (figure 5's events, which
/// are agents' journal entries, are about 1,100 bytes each).
pub const ENTRY_BYTES: usize = 1_100;
/// Bytes the agent's read log adds to a read's payload (lane, source, times, kind).
const READ_ENVELOPE: usize = 100;
/// Bytes of a lane state message (the sign's state) and of a decision event.
const STATE_BYTES: usize = 250;
const DECISION_BYTES: usize = 700;

/// Topic the driver publishes a lane's reads on.
pub fn topic_in(lane: &str) -> String {
    format!("floor/in/{lane}")
}

/// The lane a decision topic of the floor belongs to.
pub fn decision_lane(topic: &str) -> Option<&str> {
    topic.strip_prefix("floor/out/")?.strip_suffix("/decision")
}

/// What the writer thread is asked to commit.
enum Write {
    /// Reads to log (their PUBACK waits for the commit).
    Reads(Vec<Publish>),
    /// Lanes whose truck closed: journal its two entries and consume its reads.
    Close(Vec<String>),
}

/// What a commit made durable.
enum Written {
    Reads(Vec<Publish>),
    Closed(Vec<String>),
}

/// The writer: takes every request queued, commits them in one durable transaction, and
/// hands each part back, until the channel closes.
fn writer(
    db: &Database,
    rx: &std_mpsc::Receiver<Write>,
    done: &mpsc::UnboundedSender<Written>,
    commits: &Mutex<Vec<Commit>>,
) -> anyhow::Result<()> {
    let mut next_read = 0u64;
    let mut next_entry = 0u64;
    let mut prev_hash = [0u8; 32];
    let mut pending_reads: HashMap<String, Vec<u64>> = HashMap::new();
    let template = vec![b'x'; ENTRY_BYTES];
    while let Ok(first) = rx.recv() {
        let mut window = vec![first];
        while let Ok(more) = rx.try_recv() {
            window.push(more);
        }
        let began = std::time::Instant::now();
        let mut w = db.begin_write()?;
        w.set_durability(Durability::Immediate)?;
        let mut logged = Vec::new();
        let mut closed = Vec::new();
        {
            let mut reads = w.open_table(READS)?;
            let mut journal = w.open_table(JOURNAL)?;
            for req in window {
                match req {
                    Write::Reads(ps) => {
                        for p in ps {
                            let lane = p.topic.rsplit('/').next().unwrap_or_default().to_owned();
                            let mut record = Vec::with_capacity(p.payload.len() + READ_ENVELOPE);
                            record.extend_from_slice(&p.payload);
                            record.resize(p.payload.len() + READ_ENVELOPE, b' ');
                            next_read += 1;
                            reads.insert(next_read, record.as_slice())?;
                            pending_reads.entry(lane).or_default().push(next_read);
                            logged.push(p);
                        }
                    }
                    Write::Close(lanes) => {
                        for lane in lanes {
                            for key in pending_reads.remove(&lane).unwrap_or_default() {
                                reads.remove(key)?;
                            }
                            // The transaction and its decision, each chained to the last.
                            for _ in 0..2 {
                                let mut entry = template.clone();
                                let mut h = Sha256::new();
                                h.update(prev_hash);
                                h.update(&entry);
                                prev_hash = h.finalize().into();
                                entry[..32].copy_from_slice(&prev_hash);
                                next_entry += 1;
                                journal.insert(next_entry, entry.as_slice())?;
                            }
                            closed.push(lane);
                        }
                    }
                }
            }
        }
        w.commit()?;
        if let Ok(mut c) = commits.lock() {
            c.push(Commit {
                took: began.elapsed(),
                reads: logged.len(),
                closed: closed.len(),
            });
        }
        if !logged.is_empty() {
            let _ = done.send(Written::Reads(logged));
        }
        if !closed.is_empty() {
            let _ = done.send(Written::Closed(closed));
        }
    }
    Ok(())
}

/// One commit of the floor's writer: how long it took (the write transaction from its
/// start to its durable commit, fsync included) and what it held.
#[derive(Debug, Clone, Copy)]
pub struct Commit {
    pub took: Duration,
    /// Reads logged (each waits for this commit for its PUBACK).
    pub reads: usize,
    /// Trucks closed (two journal entries each).
    pub closed: usize,
}

/// The running floor client: its threads' CPU time and its commits can be read at any
/// moment.
#[derive(Debug)]
pub struct Floor {
    handle: std::thread::JoinHandle<()>,
    threads: Arc<Mutex<Vec<String>>>,
    commits: Arc<Mutex<Vec<Commit>>>,
}

impl Floor {
    /// utime + stime of the floor's two threads so far, in clock ticks.
    #[must_use]
    pub fn cpu_ticks(&self) -> u64 {
        self.threads
            .lock()
            .map(|t| t.iter().filter_map(|p| cpu_ticks_at(p).ok()).sum())
            .unwrap_or(0)
    }

    /// The commits made since the last call.
    #[must_use]
    pub fn take_commits(&self) -> Vec<Commit> {
        self.commits
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
    }

    /// Waits for the floor's threads to end (after its `stop` was cancelled).
    pub fn join(self) {
        let _ = self.handle.join();
    }
}

/// Tells the thread that started a client, once, whether the client subscribed.
pub(crate) struct Ready(Option<std_mpsc::Sender<Result<(), String>>>);

impl Ready {
    /// A reporter, and the receiver [`wait_ready`] waits on.
    pub(crate) fn channel() -> (Self, std_mpsc::Receiver<Result<(), String>>) {
        let (tx, rx) = std_mpsc::channel();
        (Self(Some(tx)), rx)
    }

    /// A single-threaded runtime for the client; `None`, the failure reported, when it
    /// cannot be built.
    pub(crate) fn runtime(&mut self) -> Option<tokio::runtime::Runtime> {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => Some(rt),
            Err(e) => {
                self.failed(e.to_string());
                None
            }
        }
    }

    /// The subscription is acknowledged.
    pub(crate) fn subscribed(&mut self) {
        self.report(Ok(()));
    }

    /// The client could not start, for `why`.
    pub(crate) fn failed(&mut self, why: impl Into<String>) {
        self.report(Err(why.into()));
    }

    /// Only the first report reaches the starting thread.
    fn report(&mut self, result: Result<(), String>) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(result);
        }
    }
}

/// Waits (at most 10 s) for the report of the `what` client's thread.
pub(crate) fn wait_ready(
    ready: &std_mpsc::Receiver<Result<(), String>>,
    what: &str,
) -> anyhow::Result<()> {
    match ready.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => bail!("{what} client: {e}"),
        Err(_) => bail!("the {what} client did not subscribe within 10 s"),
    }
}

/// Notes the calling thread's `/proc/<pid>/task/<tid>/stat`, to read its CPU time from
/// another thread.
fn note_this_thread(threads: &Mutex<Vec<String>>) {
    if let Ok(link) = std::fs::read_link("/proc/thread-self")
        && let Ok(mut t) = threads.lock()
    {
        t.push(format!("/proc/{}/stat", link.display()));
    }
}

/// Starts the floor client on a thread of its own (a single-threaded runtime, and a
/// writer thread for its commits) over a new redb file at `store`; it runs until `stop`.
///
/// # Errors
/// The store cannot be created, or the client does not subscribe within 10 s.
pub fn start(
    broker: SocketAddr,
    store: &Path,
    quiet_close: Duration,
    stop: CancellationToken,
) -> anyhow::Result<Floor> {
    let db = Database::create(store).context("the floor's store")?;
    {
        let w = db.begin_write()?;
        w.open_table(READS)?;
        w.open_table(JOURNAL)?;
        w.commit()?;
    }
    let (mut ready, ready_rx) = Ready::channel();
    let threads = Arc::new(Mutex::new(Vec::new()));
    let noted = threads.clone();
    let commits = Arc::new(Mutex::new(Vec::new()));
    let written = commits.clone();
    let handle = std::thread::spawn(move || {
        note_this_thread(&noted);
        let (write_tx, write_rx) = std_mpsc::channel::<Write>();
        let (done_tx, done_rx) = mpsc::unbounded_channel::<Written>();
        let writer_noted = noted.clone();
        let writer = std::thread::spawn(move || {
            note_this_thread(&writer_noted);
            if let Err(e) = writer(&db, &write_rx, &done_tx, &written) {
                eprintln!("figure 10 floor: the writer stopped: {e:#}");
            }
        });
        let Some(rt) = ready.runtime() else {
            return;
        };
        rt.block_on(run(broker, quiet_close, write_tx, done_rx, ready, stop));
        let _ = writer.join();
    });
    wait_ready(&ready_rx, "floor")?;
    Ok(Floor {
        handle,
        threads,
        commits,
    })
}

/// The floor's runtime thread: polls the broker, hands reads to the writer, acknowledges
/// and answers what the writer made durable, closes lanes `quiet_close` after their
/// read. Dropping `write` at the end ends the writer.
async fn run(
    broker: SocketAddr,
    quiet_close: Duration,
    write: std_mpsc::Sender<Write>,
    mut written: mpsc::UnboundedReceiver<Written>,
    mut ready: Ready,
    stop: CancellationToken,
) {
    let mut opts = MqttOptions::new("bench-floor", "127.0.0.1", broker.port());
    opts.set_keep_alive(Duration::from_secs(30))
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_inflight(edge_agent::sources::mqtt::OUTGOING_INFLIGHT);
    let (client, mut ev) = AsyncClient::new(opts, 10_000);
    // As the agent's client: a state written right after a PUBACK must not wait for the
    // broker's delayed ACK (Nagle).
    super::system::set_nodelay(&mut ev);
    if client
        .subscribe("floor/in/+", QoS::AtLeastOnce)
        .await
        .is_err()
    {
        ready.failed("floor subscribe");
        return;
    }
    let state = vec![b's'; STATE_BYTES];
    let event = vec![b'd'; DECISION_BYTES];
    // Every truck closes the same time after its read: the queue is in due order.
    let mut closing: VecDeque<(Instant, String)> = VecDeque::new();
    let far = Duration::from_secs(3_600);
    loop {
        let due = closing
            .front()
            .map_or_else(|| Instant::now() + far, |(at, _)| *at);
        tokio::select! {
            () = stop.cancelled() => break,
            e = ev.poll() => match e {
                Ok(Event::Incoming(Packet::SubAck(_))) => ready.subscribed(),
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if write.send(Write::Reads(vec![p])).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            Some(w) = written.recv() => match w {
                Written::Reads(ps) => {
                    for p in ps {
                        let lane = p.topic.rsplit('/').next().unwrap_or_default().to_owned();
                        let _ = client.ack(&p).await;
                        let _ = client
                            .publish(format!("floor/out/{lane}/state"), QoS::AtLeastOnce, true, state.clone())
                            .await;
                        closing.push_back((Instant::now() + quiet_close, lane));
                    }
                }
                Written::Closed(lanes) => {
                    for lane in lanes {
                        let _ = client
                            .publish(format!("floor/out/{lane}/state"), QoS::AtLeastOnce, true, state.clone())
                            .await;
                        let _ = client
                            .publish(format!("floor/out/{lane}/decision"), QoS::AtLeastOnce, false, event.clone())
                            .await;
                    }
                }
            },
            () = tokio::time::sleep_until(due) => {
                let now = Instant::now();
                let mut lanes = Vec::new();
                while closing.front().is_some_and(|(at, _)| *at <= now) {
                    if let Some((_, lane)) = closing.pop_front() {
                        lanes.push(lane);
                    }
                }
                if !lanes.is_empty() && write.send(Write::Close(lanes)).is_err() {
                    break;
                }
            }
        }
    }
    drop(write);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_thread_reports_once_whether_it_subscribed() {
        let (mut ready, rx) = Ready::channel();
        ready.subscribed();
        ready.failed("too late");
        assert!(wait_ready(&rx, "echo").is_ok());
        let (mut ready, rx) = Ready::channel();
        ready.failed("echo subscribe");
        let err = wait_ready(&rx, "echo").expect_err("failed").to_string();
        assert_eq!(err, "echo client: echo subscribe");
    }

    #[test]
    fn the_floor_s_topics_map_to_their_lanes() {
        assert_eq!(topic_in("L7"), "floor/in/L7");
        assert_eq!(decision_lane("floor/out/L7/decision"), Some("L7"));
        assert_eq!(decision_lane("floor/out/L7/state"), None);
        assert_eq!(decision_lane("aeogate/G/lanes/L7/decision"), None);
    }
}
