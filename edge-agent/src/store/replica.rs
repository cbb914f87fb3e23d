//! The replica half of the store: operators, MRAs and consignments (postcard values
//! behind an encoding byte), their indexes and the replica's bookkeeping; applying a
//! verified batch all or nothing; read snapshots for the decider.

use jiff::Timestamp;
use protocol::container::ContainerNumber;
use protocol::operator::OperatorId;
use protocol::schema::{ChangeBatch, Consignment, MraRecord, RegistryRecord};
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
        if batch.snapshot {
            // Deleting a table frees its pages without visiting every entry.
            w.delete_table(OPERATORS).map_err(rdb)?;
            w.delete_table(LINKS).map_err(rdb)?;
            w.delete_table(MRAS).map_err(rdb)?;
            w.delete_table(CONSIGNMENTS).map_err(rdb)?;
            w.delete_multimap_table(BY_CONTAINER).map_err(rdb)?;
        }
        {
            let mut sink = WriteSink::open(&w)?;
            // On error `w` drops uncommitted: redb aborts it, nothing is applied.
            apply_changes(&mut sink, batch)?;
        }
        meta.sequence = batch.last_seq;
        // The signed as-of time only moves forward; when it does, the monotonic clock
        // restarts with it.
        let advanced = meta.as_of.is_none_or(|held| batch.as_of > held);
        if advanced {
            meta.as_of = Some(batch.as_of);
        }
        meta.port = Some(batch.port.clone());
        write_replica_meta(&w, &meta)?;
        w.commit().map_err(rdb)?;
        if advanced && let Ok(mut v) = self.inner.replica_verified.lock() {
            *v = Some(std::time::Instant::now());
        }
        Ok(())
    }

    /// A read snapshot of the replica for [`crate::decider::decide`]. Holds a redb read
    /// transaction: use it and drop it; never hold it across an `.await`.
    ///
    /// # Errors
    /// [`ReplicaError`].
    pub fn replica_view(&self) -> Result<ReplicaSnapshot, ReplicaError> {
        let r = self.replica_database().begin_read().map_err(rdb)?;
        let meta = {
            let t = r.open_table(REPLICA_META).map_err(rdb)?;
            let mut meta = read_replica_meta(&t)?;
            meta.verified_elapsed = self.verified_elapsed();
            meta
        };
        // Opened once here rather than per look-up: a decision makes several.
        Ok(ReplicaSnapshot {
            ops: r.open_table(OPERATORS).map_err(rdb)?,
            links: r.open_table(LINKS).map_err(rdb)?,
            mras: r.open_table(MRAS).map_err(rdb)?,
            consignments: r.open_table(CONSIGNMENTS).map_err(rdb)?,
            by_container: r.open_multimap_table(BY_CONTAINER).map_err(rdb)?,
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
    fn open(w: &'t WriteTransaction) -> Result<Self, ReplicaError> {
        Ok(Self {
            ops: w.open_table(OPERATORS).map_err(rdb)?,
            links: w.open_table(LINKS).map_err(rdb)?,
            mras: w.open_table(MRAS).map_err(rdb)?,
            consignments: w.open_table(CONSIGNMENTS).map_err(rdb)?,
            by_container: w.open_multimap_table(BY_CONTAINER).map_err(rdb)?,
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
