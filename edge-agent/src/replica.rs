//! The registry replica as the decider sees it, and the rules every replica follows.
//!
//! - [`ReplicaView`]: read access to one consistent snapshot (the store's
//!   `ReplicaSnapshot`, or [`MemoryReplica`]).
//! - [`ReplicaMeta`]: the bookkeeping (sequence, as-of, last sync, port).
//! - [`freshness`]: the one answer to "how old is the replica, and is it too old".
//! - [`check_sequence`]: the one sequence rule for change batches; [`check_batch`] adds
//!   version and port.
//! - `apply_changes` over a `ReplicaSink`: how a batch's changes land in a replica.
//! - [`MemoryReplica`]: the in-memory replica (tests, benchmarks, and the decider's
//!   fail-safe empty replica).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use jiff::Timestamp;
use protocol::container::ContainerNumber;
use protocol::operator::{OperatorId, Programme};
use protocol::schema::{
    ChangeBatch, Consignment, MraRecord, RegistryRecord, SchemaError, SequencedChange,
    check_version,
};
use serde::{Deserialize, Serialize};

/// Errors of replica operations.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The database failed.
    #[error("replica storage: {0}")]
    Db(#[from] redb::Error),
    /// The batch does not continue the replica: changes are missing in between.
    #[error("batch follows seq {found} but the replica is at {expected}: changes are missing")]
    Gap { expected: u64, found: u64 },
    /// The batch repeats changes already applied.
    #[error("batch follows seq {after_seq} but the replica is already at {current}: replayed")]
    Replay { current: u64, after_seq: u64 },
    /// The snapshot is older than the replica.
    #[error("snapshot at seq {last_seq} would roll the replica back from {current}")]
    Rollback { current: u64, last_seq: u64 },
    /// The batch is for another port of entry.
    #[error("batch is for port {found:?}; this replica serves {expected:?}")]
    WrongPort { expected: String, found: String },
    /// The batch is inconsistent in itself.
    #[error("malformed batch: {0}")]
    Malformed(String),
    /// A status change names an operator the replica does not hold.
    #[error("change {seq} sets the status of unknown operator {operator}")]
    UnknownOperator { seq: u64, operator: String },
    /// A record has a newer schema version, or a stored record is unreadable.
    #[error("replica record: {0}")]
    Schema(String),
}

impl From<SequenceError> for ReplicaError {
    fn from(e: SequenceError) -> Self {
        match e {
            SequenceError::Gap { current, after_seq } => Self::Gap {
                expected: current,
                found: after_seq,
            },
            SequenceError::Behind {
                current, after_seq, ..
            } => Self::Replay { current, after_seq },
            SequenceError::Rollback { current, last_seq } => Self::Rollback { current, last_seq },
            SequenceError::Numbering { detail, .. } => Self::Malformed(detail),
        }
    }
}

impl From<SchemaError> for ReplicaError {
    fn from(e: SchemaError) -> Self {
        Self::Schema(e.to_string())
    }
}

/// Replica bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReplicaMeta {
    /// Last applied change sequence (0: never loaded).
    pub sequence: u64,
    /// Central's signed as-of time: the replica holds everything central held then (the
    /// latest verified batch or "no changes up to `sequence`" statement).
    pub as_of: Option<Timestamp>,
    /// Agent (wall clock) time at which `as_of` was last moved forward by verified data.
    pub last_sync: Option<Timestamp>,
    /// Port of entry this replica serves.
    pub port: Option<String>,
    /// Monotonic time since this process last moved `as_of` forward, measured when the
    /// bookkeeping was read; `None` when it has not since it started. Not stored.
    #[serde(skip)]
    pub verified_elapsed: Option<Duration>,
}

/// Where replica changes are written: the store's write transaction or a
/// [`MemoryReplica`]. Shared so both apply batches identically.
/// Records are passed by reference so that applying a batch never copies it whole.
pub(crate) trait ReplicaSink {
    fn upsert_operator(&mut self, record: &RegistryRecord) -> Result<(), ReplicaError>;
    fn current_operator(&mut self, id: &OperatorId)
    -> Result<Option<RegistryRecord>, ReplicaError>;
    fn upsert_mra(&mut self, mra: &MraRecord) -> Result<(), ReplicaError>;
    fn upsert_consignment(&mut self, consignment: &Consignment) -> Result<(), ReplicaError>;
    fn remove_consignment(&mut self, id: &str) -> Result<(), ReplicaError>;
}

/// Checks that `batch` may be applied on top of `meta`: schema version, port, and the
/// sequence rule ([`check_sequence`]).
///
/// # Errors
/// The [`ReplicaError`] naming the rule the batch breaks.
pub fn check_batch(meta: &ReplicaMeta, batch: &ChangeBatch) -> Result<(), ReplicaError> {
    check_version(batch.v)?;
    if let Some(p) = &meta.port
        && *p != batch.port
    {
        return Err(ReplicaError::WrongPort {
            expected: p.clone(),
            found: batch.port.clone(),
        });
    }
    check_sequence(meta.sequence, batch)?;
    Ok(())
}

/// How a change batch breaks the sequence rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    /// A delta starts after the replica's sequence: changes are missing in between.
    #[error("gap: the replica is at {current}, the batch follows {after_seq}")]
    Gap { current: u64, after_seq: u64 },
    /// A delta starts before the replica's sequence: it repeats applied changes (and, when
    /// it also ends before it, would roll the replica back).
    #[error("the replica is at {current}, the batch covers {after_seq}..={last_seq}")]
    Behind {
        current: u64,
        after_seq: u64,
        last_seq: u64,
    },
    /// A snapshot older than the replica.
    #[error("snapshot at {last_seq} would roll the replica back from {current}")]
    Rollback { current: u64, last_seq: u64 },
    /// The batch's own numbering is inconsistent.
    #[error("{detail}")]
    Numbering {
        after_seq: u64,
        last_seq: u64,
        detail: String,
    },
}

/// The one sequence rule for registry change batches (docs/delivery.md, "Replication"),
/// used by replication before applying, by the store and by [`MemoryReplica`]:
///
/// - `last_seq` never precedes `after_seq`;
/// - a snapshot may not be older than the replica (`last_seq >= current`) and holds no
///   change beyond its `last_seq`;
/// - a delta follows the replica exactly (`after_seq == current`) and numbers its changes
///   `after_seq + 1 ..= last_seq`, one each, in order.
///
/// # Errors
/// The [`SequenceError`] naming the first rule broken, in the order above.
pub fn check_sequence(current: u64, batch: &ChangeBatch) -> Result<(), SequenceError> {
    let (after_seq, last_seq) = (batch.after_seq, batch.last_seq);
    let numbering = |detail: String| SequenceError::Numbering {
        after_seq,
        last_seq,
        detail,
    };
    if last_seq < after_seq {
        return Err(numbering(format!(
            "last_seq {last_seq} precedes after_seq {after_seq}"
        )));
    }
    if batch.snapshot {
        if last_seq < current {
            return Err(SequenceError::Rollback { current, last_seq });
        }
        if let Some(c) = batch.changes.iter().find(|c| c.seq > last_seq) {
            return Err(numbering(format!(
                "snapshot change {} is beyond its last_seq {last_seq}",
                c.seq
            )));
        }
        return Ok(());
    }
    if after_seq > current {
        return Err(SequenceError::Gap { current, after_seq });
    }
    if after_seq < current {
        return Err(SequenceError::Behind {
            current,
            after_seq,
            last_seq,
        });
    }
    for (i, c) in batch.changes.iter().enumerate() {
        let expected = after_seq + 1 + i as u64;
        if c.seq != expected {
            return Err(numbering(format!(
                "change {i} has seq {}, expected {expected}",
                c.seq
            )));
        }
    }
    let n = batch.changes.len() as u64;
    if after_seq + n != last_seq {
        return Err(numbering(format!(
            "{n} changes after {after_seq} do not reach last_seq {last_seq}"
        )));
    }
    Ok(())
}

/// Applies a batch's (or a snapshot chunk's) changes to a sink (the caller clears it first
/// for a snapshot). The rule is protocol's ([`protocol::registry`], shared with central);
/// this adapts the sink to it.
pub(crate) fn apply_changes(
    sink: &mut dyn ReplicaSink,
    changes: &[SequencedChange],
) -> Result<(), ReplicaError> {
    struct Sink<'a>(&'a mut dyn ReplicaSink);
    impl protocol::registry::RegistrySink for Sink<'_> {
        type Error = ReplicaError;
        fn operator(&mut self, id: &OperatorId) -> Result<Option<RegistryRecord>, ReplicaError> {
            self.0.current_operator(id)
        }
        fn put_operator(&mut self, record: &RegistryRecord) -> Result<(), ReplicaError> {
            self.0.upsert_operator(record)
        }
        fn put_mra(&mut self, mra: &MraRecord) -> Result<(), ReplicaError> {
            self.0.upsert_mra(mra)
        }
        fn put_consignment(&mut self, c: &Consignment) -> Result<(), ReplicaError> {
            self.0.upsert_consignment(c)
        }
        fn remove_consignment(&mut self, id: &str) -> Result<(), ReplicaError> {
            self.0.remove_consignment(id)
        }
    }
    let mut sink = Sink(sink);
    for sc in changes {
        sc.change.apply(&mut sink).map_err(|e| match e {
            protocol::registry::ApplyError::UnknownOperator(op) => ReplicaError::UnknownOperator {
                seq: sc.seq,
                operator: op.to_string(),
            },
            protocol::registry::ApplyError::Schema(e) => e.into(),
            protocol::registry::ApplyError::Sink(e) => e,
        })?;
    }
    Ok(())
}

/// How far central's signed as-of time, or the replica's last sync, may lie ahead of this
/// gate's clock and still count: clock skew between two NTP-disciplined hosts is well
/// under a second; beyond this the clock (this one or central's) is wrong, and a replica
/// whose age cannot be measured is stale.
pub const CLOCK_TOLERANCE: Duration = Duration::from_secs(10);

/// How old the replica is at a moment, against the policy's staleness bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Whole seconds since the replica was known current; `None` when never loaded.
    pub age_s: Option<u64>,
    /// Never loaded, older than the bound, or of unmeasurable age (a time ahead of the
    /// clock): no lane may be FAST.
    pub stale: bool,
    /// The signed as-of time or the last sync lies ahead of this clock by more than
    /// [`CLOCK_TOLERANCE`] (a clock that was, or is, wrong).
    pub ahead: bool,
}

/// The one freshness rule. Freshness comes only from central's signed as-of time
/// (`meta.as_of`, moved only by verified data), measured two ways, the older one counting:
/// by this clock (`now - as_of`), and, since this process last verified data, by the
/// monotonic clock (`meta.verified_elapsed`), which no jump of the wall clock moves. An
/// as-of or last sync more than [`CLOCK_TOLERANCE`] ahead of `now` is stale (a clock
/// that jumped, or a `last_sync` written by a run whose clock was ahead), as is a replica
/// never loaded or older than `bound`.
#[must_use]
pub fn freshness(meta: &ReplicaMeta, now: Timestamp, bound: Duration) -> Freshness {
    let Some(as_of) = meta.as_of else {
        return Freshness {
            age_s: None,
            stale: true,
            ahead: false,
        };
    };
    let tolerance = i64::try_from(CLOCK_TOLERANCE.as_secs()).unwrap_or(i64::MAX);
    let ahead_of_now = |t: Timestamp| t.as_second().saturating_sub(now.as_second()) > tolerance;
    let ahead = ahead_of_now(as_of) || meta.last_sync.is_some_and(ahead_of_now);
    let by_clock = u64::try_from(now.as_second().saturating_sub(as_of.as_second())).unwrap_or(0);
    let by_monotonic = meta.verified_elapsed.map_or(0, |d| d.as_secs());
    let age = by_clock.max(by_monotonic);
    Freshness {
        age_s: Some(age),
        stale: ahead || age > bound.as_secs(),
        ahead,
    }
}

/// Replica freshness as the console, the API and the readiness probe show it.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaStatus {
    /// Last applied change sequence.
    pub sequence: u64,
    /// Central's as-of time.
    pub as_of: Option<Timestamp>,
    /// Last poll that confirmed nothing newer.
    pub last_sync: Option<Timestamp>,
    /// Seconds since the replica was known current.
    pub age_s: Option<u64>,
    /// Older than the policy's staleness bound (or never loaded, or of unmeasurable age):
    /// no lane can be FAST.
    pub stale: bool,
    /// The signed as-of time or the last sync lies ahead of this gate's clock.
    pub clock_ahead: bool,
}

impl ReplicaStatus {
    /// The status of a replica with this bookkeeping at `now`.
    #[must_use]
    pub fn of(meta: &ReplicaMeta, now: Timestamp, bound: Duration) -> Self {
        let f = freshness(meta, now, bound);
        Self {
            sequence: meta.sequence,
            as_of: meta.as_of,
            last_sync: meta.last_sync,
            age_s: f.age_s,
            stale: f.stale,
            clock_ahead: f.ahead,
        }
    }
}

/// Read access to the registry replica. Implementations answer from one consistent
/// snapshot.
pub trait ReplicaView {
    /// The operator with this id, or whose record lists it among `linked_ids`.
    fn operator(&self, id: &OperatorId) -> Option<RegistryRecord>;
    /// The consignment declaring this container (the most recent when several do).
    fn consignment_for(&self, c: &ContainerNumber) -> Option<Consignment>;
    /// Every MRA known.
    fn mras(&self) -> Vec<MraRecord>;
    /// Last applied change sequence (0 when never loaded).
    fn sequence(&self) -> u64;
    /// Central's as-of time of that sequence; `None` when never loaded.
    fn as_of(&self) -> Option<Timestamp>;

    /// The bookkeeping [`freshness`] reads. The default suits views without a sync
    /// history (tests, benchmarks): sequence and as-of only.
    fn freshness_meta(&self) -> ReplicaMeta {
        ReplicaMeta {
            sequence: self.sequence(),
            as_of: self.as_of(),
            ..ReplicaMeta::default()
        }
    }

    /// As [`ReplicaView::operator`], telling a record that is there but cannot be read
    /// from one that is absent. The default suits views that cannot fail to read.
    ///
    /// # Errors
    /// [`Unreadable`] when the record exists but cannot be read.
    fn try_operator(&self, id: &OperatorId) -> Result<Option<RegistryRecord>, Unreadable> {
        Ok(self.operator(id))
    }

    /// As [`ReplicaView::consignment_for`], telling an unreadable record from an absent one.
    ///
    /// # Errors
    /// [`Unreadable`] when a consignment declaring `c` cannot be read.
    fn try_consignment_for(&self, c: &ContainerNumber) -> Result<Option<Consignment>, Unreadable> {
        Ok(self.consignment_for(c))
    }

    /// As [`ReplicaView::mras`], telling an unreadable table from an empty one.
    ///
    /// # Errors
    /// [`Unreadable`] when an MRA record cannot be read.
    fn try_mras(&self) -> Result<Vec<MraRecord>, Unreadable> {
        Ok(self.mras())
    }
}

/// A replica record that is there but cannot be read (a damaged value, a storage error):
/// unverifiable data, which the decider reports as `REPLICA_UNREADABLE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unreadable(pub String);

/// A `HashMap`-backed replica for tests and benchmarks; applies change batches with
/// the same rules as the store.
#[derive(Debug, Clone, Default)]
pub struct MemoryReplica {
    operators: HashMap<OperatorId, RegistryRecord>,
    links: HashMap<OperatorId, OperatorId>,
    consignments: HashMap<String, Consignment>,
    /// Consignment ids by declared container, so a look-up is not a scan.
    by_container: HashMap<ContainerNumber, BTreeSet<String>>,
    mras: BTreeMap<(Programme, Programme), MraRecord>,
    meta: ReplicaMeta,
}

impl MemoryReplica {
    /// An empty, never-loaded replica.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts or replaces an operator (indexing its linked ids).
    pub fn insert_operator(&mut self, record: RegistryRecord) {
        if let Some(old) = self.operators.get(&record.operator) {
            for l in &old.linked_ids {
                self.links.remove(l);
            }
        }
        for l in &record.linked_ids {
            self.links.insert(l.clone(), record.operator.clone());
        }
        self.operators.insert(record.operator.clone(), record);
    }

    /// Inserts or replaces a consignment (indexing its containers).
    pub fn insert_consignment(&mut self, consignment: Consignment) {
        self.remove_consignment_by_id(&consignment.id);
        for d in &consignment.containers {
            self.by_container
                .entry(d.number)
                .or_default()
                .insert(consignment.id.clone());
        }
        self.consignments
            .insert(consignment.id.clone(), consignment);
    }

    fn remove_consignment_by_id(&mut self, id: &str) {
        let Some(old) = self.consignments.remove(id) else {
            return;
        };
        for d in &old.containers {
            if let Some(ids) = self.by_container.get_mut(&d.number) {
                ids.remove(id);
                if ids.is_empty() {
                    self.by_container.remove(&d.number);
                }
            }
        }
    }

    fn clear(&mut self) {
        self.operators.clear();
        self.links.clear();
        self.consignments.clear();
        self.by_container.clear();
        self.mras.clear();
    }

    /// Inserts or replaces an MRA (keyed by recognising and partner programme).
    pub fn insert_mra(&mut self, mra: MraRecord) {
        self.mras.insert((mra.recognising, mra.partner), mra);
    }

    /// Sets the applied sequence and its as-of time (as if a batch had been applied).
    pub fn set_loaded(&mut self, sequence: u64, as_of: Timestamp) {
        self.meta.sequence = sequence;
        self.meta.as_of = Some(as_of);
    }

    /// Replica bookkeeping.
    #[must_use]
    pub fn meta(&self) -> &ReplicaMeta {
        &self.meta
    }

    /// Applies a change batch with the store's rules (sequence continuity, port), all or
    /// nothing.
    ///
    /// # Errors
    /// As [`crate::store::Store::apply_batch`]: [`check_batch`], then a change naming an
    /// unknown operator or of a newer schema version.
    pub fn apply(&mut self, batch: &ChangeBatch) -> Result<(), ReplicaError> {
        check_batch(&self.meta, batch)?;
        let mut next = self.clone();
        if batch.snapshot {
            next.clear();
        }
        apply_changes(&mut next, &batch.changes)?;
        next.meta.sequence = batch.last_seq;
        next.meta.as_of = Some(batch.as_of);
        next.meta.port = Some(batch.port.clone());
        *self = next;
        Ok(())
    }
}

impl ReplicaSink for MemoryReplica {
    fn upsert_operator(&mut self, record: &RegistryRecord) -> Result<(), ReplicaError> {
        self.insert_operator(record.clone());
        Ok(())
    }
    fn current_operator(
        &mut self,
        id: &OperatorId,
    ) -> Result<Option<RegistryRecord>, ReplicaError> {
        Ok(self.operators.get(id).cloned())
    }
    fn upsert_mra(&mut self, mra: &MraRecord) -> Result<(), ReplicaError> {
        self.insert_mra(mra.clone());
        Ok(())
    }
    fn upsert_consignment(&mut self, consignment: &Consignment) -> Result<(), ReplicaError> {
        self.insert_consignment(consignment.clone());
        Ok(())
    }
    fn remove_consignment(&mut self, id: &str) -> Result<(), ReplicaError> {
        self.remove_consignment_by_id(id);
        Ok(())
    }
}

impl ReplicaView for MemoryReplica {
    fn operator(&self, id: &OperatorId) -> Option<RegistryRecord> {
        self.operators
            .get(id)
            .or_else(|| self.links.get(id).and_then(|p| self.operators.get(p)))
            .cloned()
    }
    fn consignment_for(&self, c: &ContainerNumber) -> Option<Consignment> {
        self.by_container
            .get(c)?
            .iter()
            .filter_map(|id| self.consignments.get(id))
            .max_by(|a, b| a.as_of.cmp(&b.as_of).then_with(|| a.id.cmp(&b.id)))
            .cloned()
    }
    fn mras(&self) -> Vec<MraRecord> {
        self.mras.values().cloned().collect()
    }
    fn sequence(&self) -> u64 {
        self.meta.sequence
    }
    fn as_of(&self) -> Option<Timestamp> {
        self.meta.as_of
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    mod change_batch {
        include!("../tests/support/change_batch.rs");
    }

    /// A batch for port `PORT-A` whose changes carry `seqs`.
    pub(crate) fn batch(snapshot: bool, after: u64, last: u64, seqs: &[u64]) -> ChangeBatch {
        let as_of = "2026-03-01T00:00:00Z".parse().expect("ts");
        change_batch::removals(snapshot, after, last, seqs.iter().copied(), as_of)
    }

    #[test]
    fn sequence_rule_table() {
        use SequenceError as E;
        type Want = fn(&Result<(), SequenceError>) -> bool;
        let cases: &[(&str, u64, ChangeBatch, Want)] = &[
            (
                "delta following exactly",
                5,
                batch(false, 5, 7, &[6, 7]),
                |r| r.is_ok(),
            ),
            ("empty delta", 5, batch(false, 5, 5, &[]), |r| r.is_ok()),
            ("delta with a gap", 5, batch(false, 6, 7, &[7]), |r| {
                matches!(
                    r,
                    Err(E::Gap {
                        current: 5,
                        after_seq: 6
                    })
                )
            }),
            ("delta replaying", 5, batch(false, 4, 6, &[5, 6]), |r| {
                matches!(
                    r,
                    Err(E::Behind {
                        current: 5,
                        after_seq: 4,
                        last_seq: 6
                    })
                )
            }),
            ("delta wholly behind", 5, batch(false, 1, 3, &[2, 3]), |r| {
                matches!(r, Err(E::Behind { last_seq: 3, .. }))
            }),
            ("delta out of order", 5, batch(false, 5, 7, &[7, 6]), |r| {
                matches!(r, Err(E::Numbering { .. }))
            }),
            (
                "delta short of last_seq",
                5,
                batch(false, 5, 8, &[6, 7]),
                |r| matches!(r, Err(E::Numbering { .. })),
            ),
            ("last before after", 5, batch(false, 5, 4, &[]), |r| {
                matches!(r, Err(E::Numbering { .. }))
            }),
            ("snapshot newer", 5, batch(true, 0, 9, &[1, 9]), |r| {
                r.is_ok()
            }),
            ("snapshot equal", 5, batch(true, 0, 5, &[2]), |r| r.is_ok()),
            ("snapshot older", 5, batch(true, 0, 4, &[1]), |r| {
                matches!(
                    r,
                    Err(E::Rollback {
                        current: 5,
                        last_seq: 4
                    })
                )
            }),
            (
                "snapshot change beyond last",
                0,
                batch(true, 0, 4, &[5]),
                |r| matches!(r, Err(E::Numbering { .. })),
            ),
        ];
        for (name, current, b, want) in cases {
            let got = check_sequence(*current, b);
            assert!(want(&got), "{name}: got {got:?}");
        }
    }

    #[test]
    fn memory_replica_and_store_rule_agree_on_refusals() {
        let mut m = MemoryReplica::new();
        m.apply(&batch(true, 0, 3, &[1, 2, 3])).expect("snapshot");
        assert!(matches!(
            m.apply(&batch(false, 4, 5, &[5])),
            Err(ReplicaError::Gap {
                expected: 3,
                found: 4
            })
        ));
        assert!(matches!(
            m.apply(&batch(false, 1, 2, &[2])),
            Err(ReplicaError::Replay { .. })
        ));
        let mut other = batch(false, 3, 4, &[4]);
        other.port = "PORT-B".into();
        assert!(matches!(
            m.apply(&other),
            Err(ReplicaError::WrongPort { .. })
        ));
        assert_eq!(m.meta().sequence, 3);
        m.apply(&batch(false, 3, 4, &[4])).expect("delta");
        assert_eq!(m.meta().sequence, 4);
    }

    #[test]
    fn freshness_table() {
        let t = |s: &str| -> Timestamp { s.parse().expect("ts") };
        let now = t("2026-03-02T00:00:00Z");
        let day = Duration::from_secs(86_400);
        let meta = |as_of: Option<&str>, last_sync: Option<&str>, mono: Option<u64>| ReplicaMeta {
            sequence: 3,
            as_of: as_of.map(t),
            last_sync: last_sync.map(t),
            port: None,
            verified_elapsed: mono.map(Duration::from_secs),
        };
        let f = |age_s: Option<u64>, stale: bool, ahead: bool| Freshness {
            age_s,
            stale,
            ahead,
        };
        let cases = [
            // Never loaded.
            (meta(None, None, None), f(None, true, false)),
            (
                meta(Some("2026-03-01T00:00:00Z"), None, None),
                f(Some(86_400), false, false),
            ),
            (
                meta(Some("2026-02-28T23:59:59Z"), None, None),
                f(Some(86_401), true, false),
            ),
            // A recent last sync does not make an old signed as-of fresh.
            (
                meta(
                    Some("2026-02-27T00:00:00Z"),
                    Some("2026-03-01T23:59:00Z"),
                    None,
                ),
                f(Some(3 * 86_400), true, false),
            ),
            // The monotonic clock counts when the wall clock went back.
            (
                meta(Some("2026-03-01T23:00:00Z"), None, Some(90_000)),
                f(Some(90_000), true, false),
            ),
            (
                meta(Some("2026-03-01T23:00:00Z"), None, Some(60)),
                f(Some(3_600), false, false),
            ),
            // Within the tolerance ahead: age 0, fresh.
            (
                meta(Some("2026-03-02T00:00:05Z"), None, None),
                f(Some(0), false, false),
            ),
            // A signed as-of ahead of the clock: stale.
            (
                meta(Some("2026-03-03T00:00:00Z"), None, None),
                f(Some(0), true, true),
            ),
            // A last sync written by a run whose clock was two days ahead: stale.
            (
                meta(
                    Some("2026-03-01T23:59:00Z"),
                    Some("2026-03-03T23:59:00Z"),
                    None,
                ),
                f(Some(60), true, true),
            ),
        ];
        for (m, want) in cases {
            assert_eq!(freshness(&m, now, day), want, "{m:?}");
        }
    }

    #[test]
    fn status_counts_age_from_the_signed_as_of_only() {
        let meta = ReplicaMeta {
            sequence: 7,
            as_of: Some("2026-03-01T00:00:00Z".parse().expect("ts")),
            last_sync: Some("2026-03-01T23:00:00Z".parse().expect("ts")),
            port: None,
            verified_elapsed: None,
        };
        let now: Timestamp = "2026-03-02T00:00:00Z".parse().expect("ts");
        let s = ReplicaStatus::of(&meta, now, Duration::from_secs(1800));
        assert_eq!((s.sequence, s.age_s, s.stale), (7, Some(86_400), true));
    }
}
