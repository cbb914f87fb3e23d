//! The programme roll-ups ([`crate::rollup`]): the [`RollupSink`] inside an ingest's
//! write transaction, and the read of a range.

use std::collections::BTreeMap;

use jiff::Timestamp;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use uuid::Uuid;

use super::tables::uuid_key;
use crate::rollup::{self, Half, ProgrammeCounts, Rollup, RollupSink};
use crate::stats;
use crate::store::{StoreError, decode, encode};

/// (hour start s, group, figure) → count.
pub(super) const PROGRAMME: TableDefinition<(i64, &str, &str), u64> =
    TableDefinition::new("programme_v1");
/// Operator id → name as first declared.
pub(super) const PROGRAMME_NAMES: TableDefinition<&str, &str> =
    TableDefinition::new("programme_names_v1");
/// (gate, transaction id) → the halves waiting for their other half (`Vec<Half>`).
pub(super) const PROGRAMME_PENDING: TableDefinition<(&str, u128), &[u8]> =
    TableDefinition::new("programme_pending_v1");

/// Creates the tables (at open).
pub(super) fn create(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(PROGRAMME)?;
    tx.open_table(PROGRAMME_NAMES)?;
    tx.open_table(PROGRAMME_PENDING)?;
    Ok(())
}

struct Sink<'a> {
    tx: &'a WriteTransaction,
    gate: &'a str,
}

impl RollupSink for Sink<'_> {
    type Error = StoreError;

    fn take_pending(&mut self, txns: &[Uuid]) -> Result<Vec<(Uuid, Vec<Half>)>, StoreError> {
        let mut t = self.tx.open_table(PROGRAMME_PENDING)?;
        let mut out = Vec::new();
        for txn in txns {
            if let Some(v) = t.remove((self.gate, uuid_key(txn)))? {
                let halves: Vec<Half> = decode(
                    "programme_pending_v1",
                    format_args!("{}/{txn}", self.gate),
                    v.value(),
                )?;
                out.push((*txn, halves));
            }
        }
        Ok(out)
    }

    fn write(&mut self, r: Rollup) -> Result<(), StoreError> {
        {
            let mut t = self.tx.open_table(PROGRAMME)?;
            for ((hour, group, figure), n) in &r.counts {
                let key = (*hour, group.as_str(), figure.as_str());
                let cur = t.get(key)?.map_or(0, |g| g.value());
                t.insert(key, cur.saturating_add_signed(*n))?;
            }
        }
        {
            let mut t = self.tx.open_table(PROGRAMME_NAMES)?;
            for (op, name) in &r.names {
                if t.get(op.as_str())?.is_none() {
                    t.insert(op.as_str(), name.as_str())?;
                }
            }
        }
        let mut t = self.tx.open_table(PROGRAMME_PENDING)?;
        for (txn, halves) in &r.pending {
            t.insert((self.gate, uuid_key(txn)), encode(halves)?.as_slice())?;
        }
        Ok(())
    }
}

/// Brings the roll-ups up to date with one batch, in its write transaction.
pub(super) fn store(
    tx: &WriteTransaction,
    gate: &str,
    batch: rollup::Batch,
) -> Result<(), StoreError> {
    rollup::store(&mut Sink { tx, gate }, batch)
}

pub(super) fn programme_counts(
    db: &Database,
    from: Option<Timestamp>,
    to: Timestamp,
) -> Result<ProgrammeCounts, StoreError> {
    let from_h = from.map_or(i64::MIN, stats::hour_start);
    let to_h = to.as_second();
    let r = db.begin_read()?;
    let t = r.open_table(PROGRAMME)?;
    let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
    if from_h < to_h {
        // Keys are ordered by hour first: one range read over the hours asked for.
        for row in t.range((from_h, "", "")..(to_h, "", ""))? {
            let (k, v) = row?;
            let (_, group, figure) = k.value();
            *counts
                .entry((group.to_owned(), figure.to_owned()))
                .or_default() += v.value();
        }
    }
    let names_t = r.open_table(PROGRAMME_NAMES)?;
    let mut names = BTreeMap::new();
    for (group, _) in counts.keys() {
        if let Some(op) = group.strip_prefix(rollup::OPERATOR)
            && !names.contains_key(op)
            && let Some(n) = names_t.get(op)?
        {
            names.insert(op.to_owned(), n.value().to_owned());
        }
    }
    Ok(ProgrammeCounts { counts, names })
}
