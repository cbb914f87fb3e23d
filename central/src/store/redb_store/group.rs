//! Group commit for ingest: several agents' batches in one durable write transaction.
//!
//! redb has one writer, and each commit is an fsync. An agent's batch is queued; the
//! first caller to take the writer commits everything queued at that moment (up to
//! [`MAX_GROUP_ENTRIES`]) in one write transaction, then hands each caller its own
//! outcome. A caller returns only once the transaction holding its batch has committed,
//! so an acknowledgement still names only entries on disk. Batches of the same gate are
//! applied in the order they were queued. Each stored batch's index rows and programme
//! roll-up go to the index file's writer ([`index_file`]), which folds the group's
//! roll-ups in memory and writes them once, with the group's rows.
//!
//! A batch that fails inside the group (a store error: checks that fail are alerts, not
//! errors) must not take the others down with it: the group's transaction is abandoned
//! and each of its batches is retried alone, so only the failing one is refused.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::Files;
use super::event_tables::{self, Prepared};
use super::floor::FloorBatch;
use super::index_file::{self, ForIndex};
use super::index_pending::{self, INDEX_PENDING};
use crate::store::{IngestOutcome, StoreError};

/// Most entries committed in one group (the first batch is always taken whole).
pub const MAX_GROUP_ENTRIES: usize = 8_000;

type Outcome = Result<IngestOutcome, StoreError>;

/// What a queued batch asks of the writer.
#[derive(Debug)]
pub(super) enum Work {
    /// An agent's batch, checked and stored by the ingest rules.
    Ingest(Box<Prepared>),
    /// The schema's floor: an ingest's event rows, written as they are (figure 5's
    /// baseline, [`FloorBatch`]).
    Floor(FloorBatch),
}

impl Work {
    fn entries(&self) -> usize {
        match self {
            Work::Ingest(b) => b.entries.len(),
            Work::Floor(b) => b.len(),
        }
    }
}

#[derive(Debug)]
struct Job {
    batch: Work,
    outcome: Mutex<Option<Outcome>>,
}

/// The queue of batches waiting for the writer, and the writer.
#[derive(Debug, Default)]
pub(super) struct GroupCommit {
    queue: Mutex<VecDeque<Arc<Job>>>,
    writer: Mutex<()>,
    /// Write transactions committed by ingest.
    commits: AtomicU64,
    /// The number of the last group the store committed (its index rows pending under
    /// it, [`index_file`]).
    groups: AtomicU64,
}

/// A lock that survives a panicking holder: what it guards is only ever replaced whole.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl GroupCommit {
    /// The writer of a store whose last committed group is `groups`.
    pub(super) fn new(groups: u64) -> Self {
        Self {
            groups: AtomicU64::new(groups),
            ..Self::default()
        }
    }

    /// Queues `batch`, and returns its outcome once the transaction holding it committed
    /// (or failed).
    pub(super) fn ingest(&self, db: &Files, batch: Work) -> Outcome {
        let job = Arc::new(Job {
            batch,
            outcome: Mutex::new(None),
        });
        lock(&self.queue).push_back(Arc::clone(&job));
        let _writer = lock(&self.writer);
        // Bounded: each pass takes at least one queued job, and this job stays queued
        // until a pass takes it, so there are at most as many passes as jobs ahead of it.
        loop {
            if let Some(done) = lock(&job.outcome).take() {
                return done;
            }
            let group = self.take_group();
            if group.is_empty() {
                return Err(StoreError::Backend(
                    "an ingest batch left the queue without an outcome".into(),
                ));
            }
            let outcomes = self.commit_group(db, &group);
            for (j, o) in group.iter().zip(outcomes) {
                *lock(&j.outcome) = Some(o);
            }
        }
    }

    /// Ingest's write transactions committed so far.
    #[cfg(test)]
    pub(super) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Batches queued and not yet taken by a writer.
    #[cfg(test)]
    fn queued(&self) -> usize {
        lock(&self.queue).len()
    }

    fn take_group(&self) -> Vec<Arc<Job>> {
        let mut q = lock(&self.queue);
        let mut entries = 0;
        let mut n = 0;
        for j in q.iter() {
            entries += j.batch.entries();
            if n > 0 && entries > MAX_GROUP_ENTRIES {
                break;
            }
            n += 1;
        }
        q.drain(..n).collect()
    }

    /// One transaction for the whole group; when it fails, one per batch.
    fn commit_group(&self, db: &Files, group: &[Arc<Job>]) -> Vec<Outcome> {
        if group.len() > 1 {
            match self.transaction(db, group) {
                Ok(outcomes) => {
                    metrics::histogram!("central_ingest_group_batches").record(group.len() as f64);
                    return outcomes.into_iter().map(Ok).collect();
                }
                Err(e) => tracing::warn!(
                    batches = group.len(),
                    error = %e,
                    "a grouped ingest failed; storing its batches one by one"
                ),
            }
        }
        group
            .iter()
            .map(|j| {
                self.transaction(db, std::slice::from_ref(j))?
                    .pop()
                    .ok_or_else(|| StoreError::Backend("ingest stored no outcome".into()))
            })
            .collect()
    }

    /// The group's write transaction on the store; its index rows go to the index
    /// file's writer as each batch is stored, and commit there after the store
    /// ([`index_file`]).
    fn transaction(
        &self,
        files: &Files,
        jobs: &[Arc<Job>],
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        let group = self.groups.load(Ordering::Acquire) + 1;
        files.indexer.keep_up(group);
        let prune = files.indexer.durable();
        let stored = self.store_transaction(&files.db, jobs, group, prune, &files.indexer);
        files.indexer.done(group, stored.is_ok());
        stored
    }

    fn store_transaction(
        &self,
        db: &redb::Database,
        jobs: &[Arc<Job>],
        group: u64,
        prune: u64,
        indexer: &index_file::Indexer,
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        let tx = db.begin_write()?;
        let mut outcomes = Vec::with_capacity(jobs.len());
        let mut pending = index_pending::Group::with_capacity(jobs.len());
        for j in jobs {
            let mut out = ForIndex::default();
            let done = match &j.batch {
                Work::Ingest(b) => event_tables::ingest_in(&tx, b, &mut out),
                Work::Floor(b) => b.write_in(&tx, &mut out).map(|()| IngestOutcome {
                    acked_through: b.last_seq(),
                    tally: crate::ingest::Tally {
                        stored: b.len() as u64,
                        ..Default::default()
                    },
                    cases: Vec::new(),
                }),
            };
            match done {
                Ok(o) => {
                    pending.add(&out);
                    // Should the indexer fail, the batch stays pending in the store.
                    indexer.batch(out);
                    outcomes.push(o);
                }
                Err(e) => {
                    // Nothing of the group is written; the error is the batch's.
                    let _ = tx.abort();
                    return Err(e);
                }
            }
        }
        let written = pending.encode().and_then(|bytes| {
            let mut t = tx.open_table(INDEX_PENDING)?;
            // What the index file holds durably needs keeping no more.
            t.retain_in(..=prune, |_, _| false)?;
            t.insert(group, bytes.as_slice())?;
            Ok(())
        });
        if let Err(e) = written {
            let _ = tx.abort();
            return Err(e);
        }
        tx.commit()?;
        self.groups.store(group, Ordering::Release);
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(outcomes)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::Duration;

    use jiff::{SignedDuration, Timestamp};
    use protocol::schema::{DeviceHealth, EventBody, GENESIS_HASH, GateId, JournalEntry};

    use super::super::RedbStore;
    use super::super::event_tables::ingest_encoding_tests::{chained, container_read};
    use super::super::tables::EVENTS;
    use super::lock;
    use crate::store::{Delivery, Store, StoreError};

    const NO_GAP_ALERT: SignedDuration = SignedDuration::from_hours(24);

    fn at() -> Timestamp {
        "2026-01-01T00:00:00Z".parse().expect("ts")
    }

    /// Entries `from..=to` of `gate`'s chain (`prev` is the hash before `from`).
    fn chain(gate: &str, from: u64, to: u64, prev: &str) -> Vec<JournalEntry> {
        let gate = GateId::parse(gate).expect("gate");
        let entries = (from..=to).map(|seq| {
            let body = EventBody::DeviceHealth {
                health: DeviceHealth {
                    device: "reader".into(),
                    lane: None,
                    up: true,
                    detail: seq.to_string(),
                    since: at(),
                },
            };
            (seq, uuid::Uuid::now_v7(), at(), body)
        });
        chained(&gate, prev, entries)
    }

    /// Posts each (gate, entries) from its own thread while the writer is held, waits
    /// until all are queued, checks none was answered, then lets the writer go; returns
    /// the outcomes in order.
    fn post_while_writer_held(
        store: &RedbStore,
        batches: &[(GateId, Vec<JournalEntry>)],
    ) -> Vec<Result<u64, StoreError>> {
        let before = store.gates().expect("gates");
        std::thread::scope(|s| {
            let writer = lock(&store.group.writer);
            let handles: Vec<_> = batches
                .iter()
                .map(|(g, e)| {
                    s.spawn(move || {
                        store
                            .ingest(Delivery::new(g, e, at(), NO_GAP_ALERT))
                            .map(|o| o.acked_through)
                    })
                })
                .collect();
            for _ in 0..1_000 {
                if store.group.queued() == batches.len() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            assert_eq!(store.group.queued(), batches.len(), "all queued");
            assert!(
                handles.iter().all(|h| !h.is_finished()),
                "no batch is answered before its transaction commits"
            );
            assert_eq!(
                store.gates().expect("gates"),
                before,
                "nothing is stored before the commit"
            );
            drop(writer);
            handles
                .into_iter()
                .map(|h| h.join().expect("join"))
                .collect()
        })
    }

    #[test]
    fn queued_batches_of_several_gates_commit_in_one_transaction_and_a_failing_one_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.redb");
        let g = |s: &str| GateId::parse(s).expect("gate");
        {
            let store = RedbStore::open(&path).expect("open");
            let first: Vec<_> = ["G1", "G2", "G3", "G9"]
                .iter()
                .map(|n| (g(n), chain(n, 1, 3, GENESIS_HASH)))
                .collect();
            let out = post_while_writer_held(&store, &first);
            assert!(
                out.iter().all(|o| matches!(o, Ok(3))),
                "each acknowledged through 3: {out:?}"
            );
            assert_eq!(store.group.commits(), 1, "four batches, one commit");

            // G9's stored entry 3 is made unreadable, so checking its entry 4 fails: a
            // store error that must not refuse G1's and G2's batches queued with it.
            {
                let w = store.files.db.begin_write().expect("write");
                w.open_table(EVENTS)
                    .expect("events")
                    .insert(("G9", 3), b"\x01not json".as_slice())
                    .expect("insert");
                w.commit().expect("commit");
            }
            let next = |n: &str| {
                let prev = first
                    .iter()
                    .find(|(gate, _)| gate.as_str() == n)
                    .and_then(|(_, c)| c.last())
                    .map(|e| e.hash.clone())
                    .expect("chain");
                (g(n), chain(n, 4, 5, &prev))
            };
            let second = vec![next("G1"), next("G9"), next("G2")];
            let out = post_while_writer_held(&store, &second);
            assert!(matches!(out[0], Ok(5)), "{:?}", out[0]);
            assert!(
                matches!(out[1], Err(StoreError::Corrupt { .. })),
                "{:?}",
                out[1]
            );
            assert!(matches!(out[2], Ok(5)), "{:?}", out[2]);
            assert_eq!(
                store.group.commits(),
                3,
                "the failed group is not committed; the two good batches are, alone"
            );
        }
        // What was acknowledged is on disk.
        let store = RedbStore::open(&path).expect("reopen");
        let acked: Vec<_> = store
            .gates()
            .expect("gates")
            .into_iter()
            .map(|r| (r.gate.to_string(), r.state.acked_through))
            .collect();
        assert_eq!(
            acked,
            vec![
                ("G1".into(), 5),
                ("G2".into(), 5),
                ("G3".into(), 3),
                ("G9".into(), 3)
            ]
        );
    }

    /// Entries 1..=2n of `gate`'s chain: n gate transactions (each naming one of two
    /// containers), each followed by its decision, the parties drawn from three operators (by `k`), decided in two hours.
    pub(in super::super) fn traffic(gate: &str, n: u64) -> Vec<JournalEntry> {
        use protocol::operator::OperatorId;
        use protocol::schema::{
            AeoStatus, CloseReason, Decision, GateTransaction, LaneDecision, LaneId, PartyRole,
            PartyView, SCHEMA_VERSION,
        };
        let g = GateId::parse(gate).expect("gate");
        let lane = LaneId::parse("L1").expect("lane");
        let ops = [
            "EU-AEO:DE123456789012345",
            "US-CTPAT:OBOIMP92011",
            "EU-AEO:FR123456789012",
        ];
        let mut out = Vec::new();
        for k in 0..n {
            let txn = uuid::Uuid::now_v7();
            let opened = at() + SignedDuration::from_mins(i64::try_from(k).unwrap_or(0));
            let closed =
                opened + SignedDuration::from_secs(30 + 97 * i64::try_from(k).unwrap_or(0));
            let party = |i: u64| PartyView {
                role: PartyRole::Importer,
                operator: Some(OperatorId::parse(ops[(i % 3) as usize]).expect("operator")),
                name: format!("Operator {}", i % 3),
                status: i.is_multiple_of(2).then_some(AeoStatus::Active),
                security: true,
                mra: None,
                contact_point: None,
            };
            let bodies = [
                EventBody::Transaction {
                    transaction: GateTransaction {
                        v: SCHEMA_VERSION,
                        id: txn,
                        gate: g.clone(),
                        lane: lane.clone(),
                        opened_at: opened,
                        closed_at: closed,
                        close_reason: CloseReason::Departure,
                        reads: vec![container_read(
                            ["MSCU1234566", "CSQU3054383"][(k % 2) as usize],
                            opened,
                        )],
                    },
                },
                EventBody::Decision {
                    decision: Decision {
                        parties: vec![party(k), party(k + 1)],
                        ..crate::test_decision::decision(
                            txn,
                            g.clone(),
                            lane.clone(),
                            [LaneDecision::Fast, LaneDecision::Standard][(k % 2) as usize],
                            "Exit",
                            closed,
                        )
                    },
                },
            ];
            out.extend(bodies);
        }
        chained_bodies(&g, out)
    }

    /// `bodies` as `gate`'s chain from its first entry, each at the same instant.
    pub(in super::super) fn chained_bodies(
        gate: &GateId,
        bodies: Vec<EventBody>,
    ) -> Vec<JournalEntry> {
        let mut prev = GENESIS_HASH.to_owned();
        let mut out = Vec::with_capacity(bodies.len());
        for (i, body) in bodies.into_iter().enumerate() {
            let e = JournalEntry::new_chained(
                gate.clone(),
                i as u64 + 1,
                uuid::Uuid::now_v7(),
                at(),
                prev,
                body,
            )
            .expect("entry");
            prev = e.hash.clone();
            out.push(e);
        }
        out
    }

    #[test]
    fn roll_ups_of_a_group_add_up_to_those_of_its_batches_stored_one_by_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (grouped, alone) = (
            RedbStore::open(&dir.path().join("grouped.redb")).expect("open"),
            RedbStore::open(&dir.path().join("alone.redb")).expect("open"),
        );
        let g = |s: &str| GateId::parse(s).expect("gate");
        // Three gates over the same operators and hours, and a transaction of G1 whose
        // decision comes in G1's second batch, queued in the same group as its first.
        let traffic: Vec<(GateId, Vec<JournalEntry>)> = ["G1", "G2", "G3"]
            .iter()
            .map(|n| (g(n), traffic(n, 40)))
            .collect();
        let (g1, g1_entries) = &traffic[0];
        let batches = vec![
            (g1.clone(), g1_entries[..41].to_vec()),
            traffic[1].clone(),
            traffic[2].clone(),
            (g1.clone(), g1_entries[41..].to_vec()),
        ];
        let out = post_while_writer_held(&grouped, &batches);
        assert!(out.iter().all(Result::is_ok), "{out:?}");
        assert_eq!(grouped.group.commits(), 1, "four batches, one commit");
        for (gate, entries) in &batches {
            alone
                .ingest(Delivery::new(gate, entries, at(), NO_GAP_ALERT))
                .expect("ingest");
        }
        assert_eq!(alone.group.commits(), 4);
        let (from, to) = (None, "2100-01-01T00:00:00Z".parse().expect("ts"));
        let counts = grouped.programme_counts(from, to).expect("counts");
        assert_eq!(counts, alone.programme_counts(from, to).expect("counts"));
        assert!(
            counts.counts.keys().any(|(_, f)| f.starts_with("t:")),
            "the split transaction's time is counted: {counts:?}"
        );
        assert_eq!(counts.names.len(), 3, "{counts:?}");
        // A month's and a day's read (the packed levels) and an hour's agree too.
        for from in ["2026-01-01T00:30:00Z", "2026-01-01T01:00:00Z"] {
            let from = Some(from.parse().expect("ts"));
            assert_eq!(
                grouped.programme_counts(from, to).expect("counts"),
                alone.programme_counts(from, to).expect("counts")
            );
        }
    }
}
