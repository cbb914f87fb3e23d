//! The replica half of the store: operators, MRAs and consignments (postcard values
//! behind an encoding byte), their indexes and the replica's bookkeeping; applying a
//! verified batch all or nothing; staging a chunked snapshot and swapping it in; read
//! snapshots for the decider.
//!
//! The replica's tables come in two sets ([`TABLE_SETS`]). The meta table's `tables` key
//! names the live one (absent: set 0); readers and deltas use only the live set. A
//! chunked snapshot is written chunk by chunk into the other set (the staging set), its
//! progress under the meta table's `staging` key in the same transaction as each chunk,
//! and swapped in by one write transaction that flips `tables`, writes the replica's
//! bookkeeping and drops the old set: a reader sees the old replica or the new one,
//! never a part of either.

use jiff::Timestamp;
use protocol::container::ContainerNumber;
use protocol::operator::OperatorId;
use protocol::schema::{
    ChangeBatch, Consignment, MraRecord, RegistryRecord, SequencedChange, SnapshotManifest,
};
use redb::{
    Durability, MultimapTable, MultimapTableDefinition, ReadOnlyMultimapTable, ReadOnlyTable,
    ReadableTable, Table, TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};

use super::error::rdb;
use super::handle::Store;
use crate::replica::{
    ReplicaError, ReplicaMeta, ReplicaSink, ReplicaView, Unreadable, apply_changes, check_batch,
};

// The replica's own file ([`super::replica_path`]). Values are postcard with a leading
// encoding byte ([`REPLICA_ENCODING`]); the `_v1` tables of earlier releases held JSON in
// the store file and are dropped on open (see [`super::migrate::move_replica_out`]).
pub(super) const OPERATORS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("replica_operators_v2");
pub(super) const LINKS: TableDefinition<&str, &str> =
    TableDefinition::new("replica_operator_links_v1");
pub(super) const MRAS: TableDefinition<&str, &[u8]> = TableDefinition::new("replica_mras_v2");
pub(super) const CONSIGNMENTS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("replica_consignments_v2");
pub(super) const BY_CONTAINER: MultimapTableDefinition<&str, &str> =
    MultimapTableDefinition::new("replica_by_container_v1");
pub(super) const REPLICA_META: TableDefinition<&str, &[u8]> =
    TableDefinition::new("replica_meta_v1");

/// One set of replica tables.
pub(super) struct ReplicaTables {
    pub(super) operators: TableDefinition<'static, &'static str, &'static [u8]>,
    pub(super) links: TableDefinition<'static, &'static str, &'static str>,
    pub(super) mras: TableDefinition<'static, &'static str, &'static [u8]>,
    pub(super) consignments: TableDefinition<'static, &'static str, &'static [u8]>,
    pub(super) by_container: MultimapTableDefinition<'static, &'static str, &'static str>,
}

impl std::fmt::Debug for ReplicaTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use redb::TableHandle as _;
        f.debug_struct("ReplicaTables")
            .field("operators", &self.operators.name())
            .finish_non_exhaustive()
    }
}

/// The two table sets: the live replica is one, a chunked snapshot is staged in the other.
pub(super) const TABLE_SETS: [ReplicaTables; 2] = [
    ReplicaTables {
        operators: OPERATORS,
        links: LINKS,
        mras: MRAS,
        consignments: CONSIGNMENTS,
        by_container: BY_CONTAINER,
    },
    ReplicaTables {
        operators: TableDefinition::new("replica_operators_v2_b"),
        links: TableDefinition::new("replica_operator_links_v1_b"),
        mras: TableDefinition::new("replica_mras_v2_b"),
        consignments: TableDefinition::new("replica_consignments_v2_b"),
        by_container: MultimapTableDefinition::new("replica_by_container_v1_b"),
    },
];

/// Every this many staged chunks, one is committed durably (see [`Store::stage_chunk`]).
pub const STAGE_DURABLE_EVERY: u32 = 10;

/// Meta key of the live table set (one byte, 0 or 1; absent: 0).
const LIVE_SET_KEY: &str = "tables";
/// Meta key of a chunked snapshot being staged ([`StagedSnapshot`], JSON).
const STAGING_KEY: &str = "staging";

/// A chunked snapshot being staged: its verified manifest and the next chunk to apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedSnapshot {
    /// The manifest, as verified when staging began.
    pub manifest: SnapshotManifest,
    /// Index of the next chunk to apply (`manifest.chunks.len()` when all are staged).
    pub next: u32,
}

/// First byte of every replica value: postcard (serde data model, field order of the
/// protocol structs) of the schema record. A record whose struct gains or reorders a field
/// needs a new byte and a new table name.
const REPLICA_ENCODING: u8 = 1;

impl Store {
    /// Replica bookkeeping (default when unreadable, which reads as "never loaded").
    #[must_use]
    pub fn replica_meta(&self) -> ReplicaMeta {
        self.try_replica_meta().unwrap_or_default()
    }

    fn try_replica_meta(&self) -> Result<ReplicaMeta, ReplicaError> {
        let r = self.replica_database().begin_read().map_err(rdb)?;
        let t = r.open_table(REPLICA_META).map_err(rdb)?;
        let mut meta = read_replica_meta(&t)?;
        meta.verified_elapsed = self.verified_elapsed();
        Ok(meta)
    }

    fn verified_elapsed(&self) -> Option<std::time::Duration> {
        self.inner
            .replica_verified
            .lock()
            .ok()
            .and_then(|v| v.map(|at| at.elapsed()))
    }

    /// The start of every replica write: the replica's lock (writes one at a time) and
    /// its meta as it stands.
    fn replica_write_start(
        &self,
    ) -> Result<(std::sync::MutexGuard<'_, ()>, ReplicaMeta), ReplicaError> {
        let guard = self
            .inner
            .replica
            .lock()
            .map_err(|_| ReplicaError::Schema("replica lock poisoned".into()))?;
        Ok((guard, self.try_replica_meta()?))
    }

    /// Binds the replica to a port of entry. A fresh replica records it; one already
    /// bound to another port refuses (it holds another port's data).
    ///
    /// # Errors
    /// [`ReplicaError::WrongPort`].
    pub fn bind_port(&self, port: &str) -> Result<(), ReplicaError> {
        let (_g, mut meta) = self.replica_write_start()?;
        match &meta.port {
            Some(p) if p == port => Ok(()),
            Some(p) => Err(ReplicaError::WrongPort {
                expected: p.clone(),
                found: port.into(),
            }),
            None => {
                meta.port = Some(port.into());
                let w = self.replica_database().begin_write().map_err(rdb)?;
                write_replica_meta(&w, &meta)?;
                w.commit().map_err(rdb)
            }
        }
    }

    /// Applies a verified change batch: a snapshot replaces the replica; a delta must
    /// follow the current sequence exactly. All or nothing, one write transaction.
    ///
    /// # Errors
    /// [`ReplicaError::Gap`], [`ReplicaError::Replay`], [`ReplicaError::Rollback`],
    /// [`ReplicaError::WrongPort`], [`ReplicaError::Malformed`],
    /// [`ReplicaError::UnknownOperator`]; the replica is unchanged after any error.
    pub fn apply_batch(&self, batch: &ChangeBatch) -> Result<(), ReplicaError> {
        let (_g, mut meta) = self.replica_write_start()?;
        check_batch(&meta, batch)?;
        let mut w = self.replica_database().begin_write().map_err(rdb)?;
        w.set_durability(Durability::Immediate).map_err(rdb)?;
        let set = &TABLE_SETS[live_set_in(&w)?];
        if batch.snapshot {
            clear_set(&w, set)?;
        }
        {
            let mut sink = WriteSink::open(&w, set)?;
            // On error `w` drops uncommitted: redb aborts it, nothing is applied.
            apply_changes(&mut sink, &batch.changes)?;
        }
        meta.sequence = batch.last_seq;
        let advanced = advance_as_of(&mut meta, batch.as_of);
        meta.port = Some(batch.port.clone());
        write_replica_meta(&w, &meta)?;
        w.commit().map_err(rdb)?;
        if advanced {
            self.restart_verified_clock();
        }
        Ok(())
    }

    fn restart_verified_clock(&self) {
        if let Ok(mut v) = self.inner.replica_verified.lock() {
            *v = Some(std::time::Instant::now());
        }
    }

    /// The chunked snapshot being staged, if any (none when unreadable).
    #[must_use]
    pub fn staged_snapshot(&self) -> Option<StagedSnapshot> {
        let r = self.replica_database().begin_read().ok()?;
        let t = r.open_table(REPLICA_META).ok()?;
        read_staging(&t).ok().flatten()
    }

    /// Starts staging a verified chunked snapshot: empties the staging table set and
    /// records `manifest` with chunk 0 next, replacing any snapshot staged before. The live
    /// replica is not touched.
    ///
    /// # Errors
    /// [`ReplicaError::WrongPort`] for a manifest of another port's replica;
    /// [`ReplicaError::Rollback`] for one older than the replica; storage errors.
    pub fn begin_staging(&self, manifest: &SnapshotManifest) -> Result<(), ReplicaError> {
        let (_g, meta) = self.replica_write_start()?;
        check_manifest_fits(&meta, manifest)?;
        let mut w = self.replica_database().begin_write().map_err(rdb)?;
        w.set_durability(Durability::Immediate).map_err(rdb)?;
        let staging = &TABLE_SETS[1 - live_set_in(&w)?];
        clear_set(&w, staging)?;
        write_staging(
            &w,
            Some(&StagedSnapshot {
                manifest: manifest.clone(),
                next: 0,
            }),
        )?;
        w.commit().map_err(rdb)
    }

    /// Applies chunk `index` of the staged snapshot `manifest_id` into the staging table
    /// set and moves its progress to the next chunk, in one write transaction: durable for
    /// every [`STAGE_DURABLE_EVERY`]-th chunk, the others made durable by the next durable
    /// commit of the store (a crash in between resumes a few chunks earlier). The live
    /// replica is not touched.
    ///
    /// # Errors
    /// [`ReplicaError::Malformed`] when no such snapshot is staged, when `index` is not
    /// the next chunk, or a change lies beyond the manifest's `last_seq`; the errors of
    /// applying the changes. Nothing is staged after an error.
    pub fn stage_chunk(
        &self,
        manifest_id: &str,
        index: u32,
        changes: &[SequencedChange],
    ) -> Result<(), ReplicaError> {
        let (_g, _meta) = self.replica_write_start()?;
        let mut w = self.replica_database().begin_write().map_err(rdb)?;
        // Chunk and progress commit together, so a crash loses both or neither; only every
        // STAGE_DURABLE_EVERY-th chunk waits for the disk (a crash repeats at most that
        // many chunks; the swap itself is durable).
        let durable = index.saturating_add(1).is_multiple_of(STAGE_DURABLE_EVERY);
        w.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })
        .map_err(rdb)?;
        let mut staged = staged_in(&w, manifest_id)?;
        if staged.next != index {
            return Err(ReplicaError::Malformed(format!(
                "chunk {index} of snapshot {manifest_id}, but chunk {} is next",
                staged.next
            )));
        }
        let last_seq = staged.manifest.last_seq;
        if let Some(c) = changes.iter().find(|c| c.seq > last_seq) {
            return Err(ReplicaError::Malformed(format!(
                "snapshot change {} is beyond its last_seq {last_seq}",
                c.seq
            )));
        }
        let staging = &TABLE_SETS[1 - live_set_in(&w)?];
        {
            let mut sink = WriteSink::open(&w, staging)?;
            apply_changes(&mut sink, changes)?;
        }
        staged.next = index.saturating_add(1);
        write_staging(&w, Some(&staged))?;
        w.commit().map_err(rdb)
    }

    /// Swaps the fully staged snapshot `manifest_id` in: in one durable write transaction
    /// the staging set becomes the live replica, the bookkeeping takes the manifest's
    /// sequence, port and as-of time, and the old set is dropped. Returns the new sequence.
    ///
    /// # Errors
    /// [`ReplicaError::Malformed`] when no such snapshot is staged or chunks are missing;
    /// [`ReplicaError::WrongPort`], [`ReplicaError::Rollback`] as [`Self::begin_staging`]
    /// (the replica may have moved on since). The replica is unchanged after an error.
    pub fn finish_staging(&self, manifest_id: &str) -> Result<u64, ReplicaError> {
        let (_g, mut meta) = self.replica_write_start()?;
        let mut w = self.replica_database().begin_write().map_err(rdb)?;
        w.set_durability(Durability::Immediate).map_err(rdb)?;
        let staged = staged_in(&w, manifest_id)?;
        let m = &staged.manifest;
        let total = u32::try_from(m.chunks.len()).unwrap_or(u32::MAX);
        if staged.next != total {
            return Err(ReplicaError::Malformed(format!(
                "snapshot {manifest_id} has {total} chunks, {} staged",
                staged.next
            )));
        }
        check_manifest_fits(&meta, m)?;
        let live = live_set_in(&w)?;
        clear_set(&w, &TABLE_SETS[live])?;
        {
            let mut t = w.open_table(REPLICA_META).map_err(rdb)?;
            t.insert(LIVE_SET_KEY, [u8::from(live == 0)].as_slice())
                .map_err(rdb)?;
        }
        meta.sequence = m.last_seq;
        let advanced = advance_as_of(&mut meta, m.as_of);
        meta.port = Some(m.port.clone());
        write_replica_meta(&w, &meta)?;
        write_staging(&w, None)?;
        w.commit().map_err(rdb)?;
        if advanced {
            self.restart_verified_clock();
        }
        Ok(meta.sequence)
    }

    /// Drops a staged snapshot (central no longer serves it, or it cannot be finished):
    /// empties the staging set and forgets the progress. The live replica is not touched.
    ///
    /// # Errors
    /// Storage errors.
    pub fn abandon_staging(&self) -> Result<(), ReplicaError> {
        let (_g, _meta) = self.replica_write_start()?;
        let mut w = self.replica_database().begin_write().map_err(rdb)?;
        w.set_durability(Durability::Immediate).map_err(rdb)?;
        let staging = &TABLE_SETS[1 - live_set_in(&w)?];
        clear_set(&w, staging)?;
        write_staging(&w, None)?;
        w.commit().map_err(rdb)
    }

    /// A read snapshot of the replica for [`crate::decider::decide`]. Holds a redb read
    /// transaction: use it and drop it; never hold it across an `.await`.
    ///
    /// # Errors
    /// [`ReplicaError`].
    pub fn replica_view(&self) -> Result<ReplicaSnapshot, ReplicaError> {
        let r = self.replica_database().begin_read().map_err(rdb)?;
        let (meta, set) = {
            let t = r.open_table(REPLICA_META).map_err(rdb)?;
            let mut meta = read_replica_meta(&t)?;
            meta.verified_elapsed = self.verified_elapsed();
            (meta, read_live_set(&t)?)
        };
        // Opened once here rather than per look-up: a decision makes several.
        let tables = &TABLE_SETS[set];
        Ok(ReplicaSnapshot {
            ops: r.open_table(tables.operators).map_err(rdb)?,
            links: r.open_table(tables.links).map_err(rdb)?,
            mras: r.open_table(tables.mras).map_err(rdb)?,
            consignments: r.open_table(tables.consignments).map_err(rdb)?,
            by_container: r.open_multimap_table(tables.by_container).map_err(rdb)?,
            meta,
        })
    }

    /// Records the agent's time `at` of the last verified batch or statement that moved
    /// the signed as-of time forward. It is bookkeeping only: freshness comes from the
    /// signed as-of time ([`crate::replica::freshness`]), and a `last_sync` ahead of the
    /// clock (written by a run whose clock was ahead) reads stale until the next one.
    ///
    /// # Errors
    /// [`ReplicaError`].
    pub fn mark_synced(&self, at: Timestamp) -> Result<(), ReplicaError> {
        let (_g, mut meta) = self.replica_write_start()?;
        meta.last_sync = Some(at);
        let w = self.replica_database().begin_write().map_err(rdb)?;
        write_replica_meta(&w, &meta)?;
        w.commit().map_err(rdb)
    }
}

pub(super) fn read_replica_meta(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<ReplicaMeta, ReplicaError> {
    match t.get("meta").map_err(rdb)? {
        Some(v) => serde_json::from_slice(v.value())
            .map_err(|e| ReplicaError::Schema(format!("replica meta: {e}"))),
        None => Ok(ReplicaMeta::default()),
    }
}

/// The signed as-of time only moves forward; says whether it did (then the monotonic
/// clock restarts with it).
fn advance_as_of(meta: &mut ReplicaMeta, as_of: Timestamp) -> bool {
    let advanced = meta.as_of.is_none_or(|held| as_of > held);
    if advanced {
        meta.as_of = Some(as_of);
    }
    advanced
}

/// A chunked snapshot may replace the replica only for its port and not older than it.
fn check_manifest_fits(meta: &ReplicaMeta, m: &SnapshotManifest) -> Result<(), ReplicaError> {
    if let Some(p) = &meta.port
        && *p != m.port
    {
        return Err(ReplicaError::WrongPort {
            expected: p.clone(),
            found: m.port.clone(),
        });
    }
    if m.last_seq < meta.sequence {
        return Err(ReplicaError::Rollback {
            current: meta.sequence,
            last_seq: m.last_seq,
        });
    }
    Ok(())
}

fn read_live_set(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<usize, ReplicaError> {
    match t.get(LIVE_SET_KEY).map_err(rdb)? {
        None => Ok(0),
        Some(v) => match v.value() {
            [0] => Ok(0),
            [1] => Ok(1),
            other => Err(ReplicaError::Schema(format!(
                "replica meta: live table set {other:?} is neither 0 nor 1"
            ))),
        },
    }
}

fn live_set_in(w: &WriteTransaction) -> Result<usize, ReplicaError> {
    let t = w.open_table(REPLICA_META).map_err(rdb)?;
    read_live_set(&t)
}

fn read_staging(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Option<StagedSnapshot>, ReplicaError> {
    match t.get(STAGING_KEY).map_err(rdb)? {
        Some(v) => serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| ReplicaError::Schema(format!("staged snapshot: {e}"))),
        None => Ok(None),
    }
}

fn staged_in(w: &WriteTransaction, manifest_id: &str) -> Result<StagedSnapshot, ReplicaError> {
    let t = w.open_table(REPLICA_META).map_err(rdb)?;
    match read_staging(&t)? {
        Some(s) if s.manifest.id == manifest_id => Ok(s),
        Some(s) => Err(ReplicaError::Malformed(format!(
            "snapshot {manifest_id} is not staged (snapshot {} is)",
            s.manifest.id
        ))),
        None => Err(ReplicaError::Malformed(format!(
            "snapshot {manifest_id} is not staged"
        ))),
    }
}

fn write_staging(w: &WriteTransaction, s: Option<&StagedSnapshot>) -> Result<(), ReplicaError> {
    let mut t = w.open_table(REPLICA_META).map_err(rdb)?;
    match s {
        Some(s) => {
            let bytes = serde_json::to_vec(s).map_err(|e| ReplicaError::Schema(e.to_string()))?;
            t.insert(STAGING_KEY, bytes.as_slice()).map_err(rdb)?;
        }
        None => {
            t.remove(STAGING_KEY).map_err(rdb)?;
        }
    }
    Ok(())
}

/// Empties a table set. Deleting a table frees its pages without visiting every entry;
/// opening it again leaves every table present, so readers never meet a missing one.
fn clear_set(w: &WriteTransaction, set: &ReplicaTables) -> Result<(), ReplicaError> {
    w.delete_table(set.operators).map_err(rdb)?;
    w.delete_table(set.links).map_err(rdb)?;
    w.delete_table(set.mras).map_err(rdb)?;
    w.delete_table(set.consignments).map_err(rdb)?;
    w.delete_multimap_table(set.by_container).map_err(rdb)?;
    open_set(w, set)
}

/// Opens (creating) every table of a set.
pub(super) fn open_set(w: &WriteTransaction, set: &ReplicaTables) -> Result<(), ReplicaError> {
    w.open_table(set.operators).map_err(rdb)?;
    w.open_table(set.links).map_err(rdb)?;
    w.open_table(set.mras).map_err(rdb)?;
    w.open_table(set.consignments).map_err(rdb)?;
    w.open_multimap_table(set.by_container).map_err(rdb)?;
    Ok(())
}

pub(super) fn write_replica_meta(
    w: &WriteTransaction,
    meta: &ReplicaMeta,
) -> Result<(), ReplicaError> {
    let bytes = serde_json::to_vec(meta).map_err(|e| ReplicaError::Schema(e.to_string()))?;
    let mut t = w.open_table(REPLICA_META).map_err(rdb)?;
    t.insert("meta", bytes.as_slice()).map_err(rdb)?;
    Ok(())
}

/// Encodes a replica value into `buf` (cleared first): [`REPLICA_ENCODING`], then postcard.
fn encode_into<T: Serialize>(v: &T, buf: &mut Vec<u8>) -> Result<(), ReplicaError> {
    buf.clear();
    buf.push(REPLICA_ENCODING);
    let taken = std::mem::take(buf);
    *buf = postcard::to_extend(v, taken).map_err(|e| ReplicaError::Schema(e.to_string()))?;
    Ok(())
}

fn decode<T: for<'de> Deserialize<'de>>(
    what: &str,
    key: &str,
    bytes: &[u8],
) -> Result<T, ReplicaError> {
    match bytes.split_first() {
        Some((&REPLICA_ENCODING, rest)) => postcard::from_bytes(rest)
            .map_err(|e| ReplicaError::Schema(format!("{what} {key}: {e}"))),
        Some((other, _)) => Err(ReplicaError::Schema(format!(
            "{what} {key}: unknown encoding {other} (expected {REPLICA_ENCODING})"
        ))),
        None => Err(ReplicaError::Schema(format!("{what} {key}: empty value"))),
    }
}

fn mra_key(m: &MraRecord) -> String {
    format!("{}>{}", m.recognising, m.partner)
}

/// The replica tables of one write transaction, opened once for the whole batch.
struct WriteSink<'t> {
    ops: Table<'t, &'static str, &'static [u8]>,
    links: Table<'t, &'static str, &'static str>,
    mras: Table<'t, &'static str, &'static [u8]>,
    consignments: Table<'t, &'static str, &'static [u8]>,
    by_container: MultimapTable<'t, &'static str, &'static str>,
    /// Reused encoding buffer (one allocation per batch, not per record).
    buf: Vec<u8>,
}

impl<'t> WriteSink<'t> {
    fn open(w: &'t WriteTransaction, set: &ReplicaTables) -> Result<Self, ReplicaError> {
        Ok(Self {
            ops: w.open_table(set.operators).map_err(rdb)?,
            links: w.open_table(set.links).map_err(rdb)?,
            mras: w.open_table(set.mras).map_err(rdb)?,
            consignments: w.open_table(set.consignments).map_err(rdb)?,
            by_container: w.open_multimap_table(set.by_container).map_err(rdb)?,
            buf: Vec::with_capacity(512),
        })
    }
}

impl ReplicaSink for WriteSink<'_> {
    fn upsert_operator(&mut self, record: &RegistryRecord) -> Result<(), ReplicaError> {
        let key = record.operator.to_string();
        let old: Option<RegistryRecord> = match self.ops.get(key.as_str()).map_err(rdb)? {
            Some(v) => Some(decode("operator", &key, v.value())?),
            None => None,
        };
        if let Some(old) = old {
            for l in &old.linked_ids {
                self.links.remove(l.to_string().as_str()).map_err(rdb)?;
            }
        }
        for l in &record.linked_ids {
            self.links
                .insert(l.to_string().as_str(), key.as_str())
                .map_err(rdb)?;
        }
        encode_into(record, &mut self.buf)?;
        self.ops
            .insert(key.as_str(), self.buf.as_slice())
            .map_err(rdb)?;
        Ok(())
    }

    fn current_operator(
        &mut self,
        id: &OperatorId,
    ) -> Result<Option<RegistryRecord>, ReplicaError> {
        let key = id.to_string();
        match self.ops.get(key.as_str()).map_err(rdb)? {
            Some(v) => Ok(Some(decode("operator", &key, v.value())?)),
            None => Ok(None),
        }
    }

    fn upsert_mra(&mut self, mra: &MraRecord) -> Result<(), ReplicaError> {
        encode_into(mra, &mut self.buf)?;
        self.mras
            .insert(mra_key(mra).as_str(), self.buf.as_slice())
            .map_err(rdb)?;
        Ok(())
    }

    fn upsert_consignment(&mut self, consignment: &Consignment) -> Result<(), ReplicaError> {
        self.remove_consignment(&consignment.id)?;
        for d in &consignment.containers {
            self.by_container
                .insert(d.number.as_str(), consignment.id.as_str())
                .map_err(rdb)?;
        }
        encode_into(consignment, &mut self.buf)?;
        self.consignments
            .insert(consignment.id.as_str(), self.buf.as_slice())
            .map_err(rdb)?;
        Ok(())
    }

    fn remove_consignment(&mut self, id: &str) -> Result<(), ReplicaError> {
        let old: Option<Consignment> = match self.consignments.get(id).map_err(rdb)? {
            Some(v) => Some(decode("consignment", id, v.value())?),
            None => None,
        };
        if let Some(old) = old {
            for d in &old.containers {
                self.by_container
                    .remove(d.number.as_str(), id)
                    .map_err(rdb)?;
            }
            self.consignments.remove(id).map_err(rdb)?;
        }
        Ok(())
    }
}

/// A read snapshot of the replica (the tables of one redb read transaction, which they
/// keep open). A record that cannot be read is [`Unreadable`] through the `try_` look-ups
/// (the decider's `REPLICA_UNREADABLE`) and "not found" through the plain ones; either way
/// never FAST.
pub struct ReplicaSnapshot {
    ops: ReadOnlyTable<&'static str, &'static [u8]>,
    links: ReadOnlyTable<&'static str, &'static str>,
    mras: ReadOnlyTable<&'static str, &'static [u8]>,
    consignments: ReadOnlyTable<&'static str, &'static [u8]>,
    by_container: ReadOnlyMultimapTable<&'static str, &'static str>,
    meta: ReplicaMeta,
}

impl std::fmt::Debug for ReplicaSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaSnapshot")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl ReplicaSnapshot {
    /// The replica bookkeeping this snapshot was taken with.
    #[must_use]
    pub fn meta(&self) -> &ReplicaMeta {
        &self.meta
    }

    fn get_operator(&self, id: &OperatorId) -> Result<Option<RegistryRecord>, ReplicaError> {
        let (ops, links) = (&self.ops, &self.links);
        let key = id.to_string();
        if let Some(v) = ops.get(key.as_str()).map_err(rdb)? {
            return Ok(Some(decode("operator", &key, v.value())?));
        }
        let Some(primary) = links.get(key.as_str()).map_err(rdb)? else {
            return Ok(None);
        };
        match ops.get(primary.value()).map_err(rdb)? {
            Some(v) => Ok(Some(decode("operator", primary.value(), v.value())?)),
            None => Ok(None),
        }
    }

    fn get_consignment(&self, c: &ContainerNumber) -> Result<Option<Consignment>, ReplicaError> {
        let (idx, t) = (&self.by_container, &self.consignments);
        let mut best: Option<Consignment> = None;
        for id in idx.get(c.as_str()).map_err(rdb)? {
            let id = id.map_err(rdb)?;
            if let Some(v) = t.get(id.value()).map_err(rdb)? {
                let k: Consignment = decode("consignment", id.value(), v.value())?;
                if best
                    .as_ref()
                    .is_none_or(|b| (k.as_of, &k.id) > (b.as_of, &b.id))
                {
                    best = Some(k);
                }
            }
        }
        Ok(best)
    }

    fn get_mras(&self) -> Result<Vec<MraRecord>, ReplicaError> {
        let mut out = Vec::new();
        for item in self.mras.iter().map_err(rdb)? {
            let (k, v) = item.map_err(rdb)?;
            out.push(decode("mra", k.value(), v.value())?);
        }
        Ok(out)
    }
}

impl ReplicaView for ReplicaSnapshot {
    fn operator(&self, id: &OperatorId) -> Option<RegistryRecord> {
        self.get_operator(id)
            .inspect_err(|e| tracing::warn!(error = %e, operator = %id, "replica lookup failed"))
            .ok()
            .flatten()
    }
    fn consignment_for(&self, c: &ContainerNumber) -> Option<Consignment> {
        self.get_consignment(c)
            .inspect_err(|e| tracing::warn!(error = %e, container = %c, "replica lookup failed"))
            .ok()
            .flatten()
    }
    fn mras(&self) -> Vec<MraRecord> {
        self.get_mras()
            .inspect_err(|e| tracing::warn!(error = %e, "replica MRA lookup failed"))
            .unwrap_or_default()
    }
    fn sequence(&self) -> u64 {
        self.meta.sequence
    }
    fn as_of(&self) -> Option<Timestamp> {
        self.meta.as_of
    }
    fn freshness_meta(&self) -> ReplicaMeta {
        self.meta.clone()
    }
    fn try_operator(&self, id: &OperatorId) -> Result<Option<RegistryRecord>, Unreadable> {
        self.get_operator(id).map_err(|e| {
            tracing::warn!(error = %e, operator = %id, "replica lookup failed");
            Unreadable(e.to_string())
        })
    }
    fn try_consignment_for(&self, c: &ContainerNumber) -> Result<Option<Consignment>, Unreadable> {
        self.get_consignment(c).map_err(|e| {
            tracing::warn!(error = %e, container = %c, "replica lookup failed");
            Unreadable(e.to_string())
        })
    }
    fn try_mras(&self) -> Result<Vec<MraRecord>, Unreadable> {
        self.get_mras().map_err(|e| {
            tracing::warn!(error = %e, "replica MRA lookup failed");
            Unreadable(e.to_string())
        })
    }
}
