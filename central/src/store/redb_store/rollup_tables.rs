//! The programme roll-ups ([`crate::rollup`]), in the index file ([`super::index_file`]):
//! the [`RollupSink`] inside the index file's write transaction of a group (or of a
//! catch-up), moving them there from a store that kept them in its own file, and the
//! read of a range.

use std::collections::BTreeMap;

use jiff::Timestamp;
use redb::{
    Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle, WriteTransaction,
};
use uuid::Uuid;

use super::Files;
use super::tables::{EVENTS, uuid_key};
use crate::model::StoredEvent;
use crate::rollup::{self, Batch, Half, HourCounts, ProgrammeCounts, RollupSink};
use crate::store::{StoreError, decode, encode};

/// (hour start s, group, figure) → count.
pub(super) const PROGRAMME: TableDefinition<(i64, &str, &str), u64> =
    TableDefinition::new("programme_v1");
/// (day start s, group, figure) → count: the hourly counts by UTC day. No longer kept
/// (they are the hourly counts added up by day, which an export makes from those); a
/// store that has the table gets it deleted on open.
pub(super) const PROGRAMME_DAILY: TableDefinition<(i64, &str, &str), u64> =
    TableDefinition::new("programme_daily_v1");
/// (level code, period start s, group) → the group's figures in that day or month
/// ([`rollup::pack`]).
pub(super) const PROGRAMME_PACKED: TableDefinition<(u8, i64, &str), &[u8]> =
    TableDefinition::new("programme_packed_v1");
/// Operator id → name as first declared.
pub(super) const PROGRAMME_NAMES: TableDefinition<&str, &str> =
    TableDefinition::new("programme_names_v1");
/// (gate, transaction id) → the halves waiting for their other half (`Vec<Half>`).
pub(super) const PROGRAMME_PENDING: TableDefinition<(&str, u128), &[u8]> =
    TableDefinition::new("programme_pending_v1");

/// At the store's open, in its write transaction: a store that still keeps the daily
/// counts has them deleted (every write kept them equal to the hourly counts added up by
/// day, which is how an export makes them now).
pub(super) fn drop_daily(tx: &WriteTransaction) -> Result<(), StoreError> {
    let had = tx
        .list_tables()?
        .any(|t| t.name() == PROGRAMME_DAILY.name());
    if had && tx.delete_table(PROGRAMME_DAILY)? {
        tracing::info!(
            "programme daily counts dropped: the packed day level and the hourly counts hold them"
        );
    }
    Ok(())
}

/// Puts the roll-ups in the index file (`index`, written by its own thread), at open,
/// before the store's pending groups are applied to it:
/// - a store that kept them in its own file (before they moved) has its tables copied
///   into the index file in one transaction, then deleted from the store (a crash in
///   between copies them again on the next open: the store's are still the whole
///   roll-ups, as no ingest ran since);
/// - a store made before the roll-ups (no tables in either file) has them built from its
///   stored events;
/// - roll-ups from before the packed levels get those built from the hourly counts.
pub(super) fn into_index(db: &Database, index: &Database) -> Result<(), StoreError> {
    let in_store = {
        let r = db.begin_read()?;
        let names: Vec<String> = r.list_tables()?.map(|t| t.name().to_owned()).collect();
        [
            PROGRAMME.name(),
            PROGRAMME_PACKED.name(),
            PROGRAMME_NAMES.name(),
            PROGRAMME_PENDING.name(),
        ]
        .into_iter()
        .filter(|t| names.iter().any(|n| n == t))
        .map(str::to_owned)
        .collect::<Vec<_>>()
    };
    let tx = index.begin_write()?;
    let names: Vec<String> = tx.list_tables()?.map(|t| t.name().to_owned()).collect();
    let has = |t: &str| names.iter().any(|n| n == t);
    let started = std::time::Instant::now();
    // Whatever the store holds is copied before it is deleted there.
    let moved = !in_store.is_empty();
    let packed_existed = if moved {
        // What an earlier, interrupted move left here is copied again.
        tx.delete_table(PROGRAMME)?;
        tx.delete_table(PROGRAMME_PACKED)?;
        tx.delete_table(PROGRAMME_NAMES)?;
        tx.delete_table(PROGRAMME_PENDING)?;
        let rows = copy_from_store(db, &tx)?;
        tracing::info!(rows, "programme roll-ups moved into the index file");
        in_store.iter().any(|t| t == PROGRAMME_PACKED.name())
    } else {
        has(PROGRAMME_PACKED.name())
    };
    let existed = moved || has(PROGRAMME.name());
    tx.open_table(PROGRAMME)?;
    tx.open_table(PROGRAMME_PACKED)?;
    tx.open_table(PROGRAMME_NAMES)?;
    tx.open_table(PROGRAMME_PENDING)?;
    if !existed {
        let events = rebuild(db, &tx)?;
        if events > 0 {
            tracing::info!(
                events,
                took = ?started.elapsed(),
                "programme roll-ups built from the stored events"
            );
        }
    } else if !packed_existed {
        let (hourly, rows) = build_packed(&tx)?;
        if hourly > 0 {
            tracing::info!(
                hourly,
                rows,
                took = ?started.elapsed(),
                "programme roll-ups by day and month packed from the hourly counts"
            );
        }
    }
    tx.commit()?;
    if !in_store.is_empty() {
        let tx = db.begin_write()?;
        tx.delete_table(PROGRAMME)?;
        tx.delete_table(PROGRAMME_PACKED)?;
        tx.delete_table(PROGRAMME_NAMES)?;
        tx.delete_table(PROGRAMME_PENDING)?;
        tx.commit()?;
    }
    Ok(())
}

/// Builds the packed levels from the hourly counts; returns the hourly rows read and the
/// packed rows written.
fn build_packed(tx: &WriteTransaction) -> Result<(u64, u64), StoreError> {
    let hourly = tx.open_table(PROGRAMME)?;
    let mut read = 0u64;
    // A level's period start is the same from an hour as from its day.
    let packed = rollup::packed_from_daily(hourly.iter()?.map(|row| {
        let (k, v) = row?;
        let (hour, group, figure) = k.value();
        read += 1;
        Ok::<_, StoreError>((hour, group.to_owned(), figure.to_owned(), v.value()))
    }))?;
    let rows = packed.len() as u64;
    add_packed(tx, &packed)?;
    Ok((read, rows))
}

/// Adds packed increments to the stored rows.
fn add_packed(
    tx: &WriteTransaction,
    packed: &BTreeMap<(rollup::Level, i64, String), rollup::Packed>,
) -> Result<(), StoreError> {
    let mut t = tx.open_table(PROGRAMME_PACKED)?;
    for ((level, start, group), figures) in packed {
        let key = (level.code(), *start, group.as_str());
        // A stored row is added to where it is found (one lookup); a new one inserted.
        if let Some(mut stored) = t.get_mut(key)? {
            let row = rollup::add_packed(Some(stored.value()), figures)
                .map_err(|why| corrupt(key, why))?;
            stored.insert(row.as_slice())?;
            continue;
        }
        let row = rollup::add_packed(None, figures).map_err(|why| corrupt(key, why))?;
        t.insert(key, row.as_slice())?;
    }
    Ok(())
}

fn corrupt((level, start, group): (u8, i64, &str), why: String) -> StoreError {
    StoreError::Corrupt {
        table: "programme_packed_v1",
        key: format!("{level}/{start}/{group}"),
        why,
    }
}

/// Builds the roll-ups in `tx` (the index file's) from every event of the store `db`,
/// gate by gate in seq order, in batches of [`rollup::REBUILD_CHUNK`] events, the way
/// ingest would have; returns the events read.
fn rebuild(db: &Database, tx: &WriteTransaction) -> Result<u64, StoreError> {
    let r = db.begin_read()?;
    let events = match r.open_table(EVENTS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let mut read = 0u64;
    let mut current: Option<String> = None;
    let mut batch = Batch::default();
    let mut in_batch = 0usize;
    for row in events.iter()? {
        let (k, v) = row?;
        let (gate, seq) = k.value();
        if current.as_deref() != Some(gate) || in_batch >= rollup::REBUILD_CHUNK {
            if let Some(g) = current.take() {
                store(tx, &g, std::mem::take(&mut batch))?;
            }
            current = Some(gate.to_owned());
            in_batch = 0;
        }
        let e: StoredEvent = decode("events_v1", format_args!("{gate}/{seq}"), v.value())?;
        batch.event(&e);
        in_batch += 1;
        read += 1;
    }
    if let Some(g) = current {
        store(tx, &g, batch)?;
    }
    Ok(read)
}

/// Copies the store's roll-up tables (those it has) into `tx`; returns the rows copied.
fn copy_from_store(db: &Database, tx: &WriteTransaction) -> Result<u64, StoreError> {
    fn copy<K: redb::Key + 'static, V: redb::Value + 'static>(
        r: &redb::ReadTransaction,
        tx: &WriteTransaction,
        def: TableDefinition<K, V>,
    ) -> Result<u64, StoreError>
    where
        for<'a> K::SelfType<'a>: std::borrow::Borrow<K::SelfType<'a>>,
        for<'a> V::SelfType<'a>: std::borrow::Borrow<V::SelfType<'a>>,
    {
        let from = match r.open_table(def) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let mut to = tx.open_table(def)?;
        let mut n = 0u64;
        for row in from.iter()? {
            let (k, v) = row?;
            to.insert(k.value(), v.value())?;
            n += 1;
        }
        Ok(n)
    }
    let r = db.begin_read()?;
    Ok(copy(&r, tx, PROGRAMME)?
        + copy(&r, tx, PROGRAMME_PACKED)?
        + copy(&r, tx, PROGRAMME_NAMES)?
        + copy(&r, tx, PROGRAMME_PENDING)?)
}

struct Sink<'a> {
    tx: &'a WriteTransaction,
}

impl RollupSink for Sink<'_> {
    type Error = StoreError;

    fn take_pending(
        &mut self,
        gate: &str,
        txns: &[Uuid],
    ) -> Result<Vec<(Uuid, Vec<Half>)>, StoreError> {
        let mut t = self.tx.open_table(PROGRAMME_PENDING)?;
        let mut out = Vec::new();
        for txn in txns {
            if let Some(v) = t.remove((gate, uuid_key(txn)))? {
                let halves: Vec<Half> = decode(
                    "programme_pending_v1",
                    format_args!("{gate}/{txn}"),
                    v.value(),
                )?;
                out.push((*txn, halves));
            }
        }
        Ok(out)
    }

    fn put_pending(
        &mut self,
        gate: &str,
        pending: BTreeMap<Uuid, Vec<Half>>,
    ) -> Result<(), StoreError> {
        let mut t = self.tx.open_table(PROGRAMME_PENDING)?;
        for (txn, halves) in &pending {
            t.insert((gate, uuid_key(txn)), encode(halves)?.as_slice())?;
        }
        Ok(())
    }

    fn add_counts(
        &mut self,
        counts: HourCounts,
        names: BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        write_counts(self.tx, &counts, &names)
    }
}

/// Adds `counts` (by hour) to the hourly and packed levels, and stores the names of
/// operators that have none.
fn write_counts(
    tx: &WriteTransaction,
    counts: &HourCounts,
    names: &BTreeMap<String, String>,
) -> Result<(), StoreError> {
    add_packed(tx, &rollup::packed(counts))?;
    {
        let mut t = tx.open_table(PROGRAMME)?;
        for ((start, group, figure), n) in counts {
            let key = (*start, group.as_str(), figure.as_str());
            if let Some(mut stored) = t.get_mut(key)? {
                let sum = stored.value().saturating_add_signed(*n);
                stored.insert(sum)?;
                continue;
            }
            t.insert(key, 0u64.saturating_add_signed(*n))?;
        }
    }
    let mut t = tx.open_table(PROGRAMME_NAMES)?;
    for (op, name) in names {
        if t.get(op.as_str())?.is_none() {
            t.insert(op.as_str(), name.as_str())?;
        }
    }
    Ok(())
}

/// The roll-ups of the batches of one index file transaction (a group, or a catch-up): a
/// [`rollup::Fold`], written when the last batch is stored.
#[derive(Debug, Default)]
pub(super) struct GroupRollup(rollup::Fold);

impl GroupRollup {
    /// Pairs one batch's halves with the gate's stored ones, writes what stays pending
    /// and keeps the counts for [`GroupRollup::write`].
    pub(super) fn add(
        &mut self,
        tx: &WriteTransaction,
        gate: &str,
        batch: Batch,
    ) -> Result<(), StoreError> {
        self.0.add(&mut Sink { tx }, gate, batch)
    }

    /// Writes the counts and names of every batch added.
    pub(super) fn write(self, tx: &WriteTransaction) -> Result<(), StoreError> {
        self.0.write(&mut Sink { tx })
    }
}

/// Brings the roll-ups up to date with one batch, in its write transaction.
pub(super) fn store(
    tx: &WriteTransaction,
    gate: &str,
    batch: rollup::Batch,
) -> Result<(), StoreError> {
    rollup::store(&mut Sink { tx }, gate, batch)
}

/// The roll-ups over a range, read from the index file once it holds every group the
/// store had committed when called.
pub(super) fn programme_counts(
    files: &Files,
    from: Option<Timestamp>,
    to: Timestamp,
) -> Result<ProgrammeCounts, StoreError> {
    let sp = rollup::spans(from, to);
    files.indexer.wait()?;
    let r = files.index.begin_read()?;
    let mut sums = rollup::Sums::default();
    // Keys are ordered by their start first (after the level): one range read per span.
    let hourly = r.open_table(PROGRAMME)?;
    for (a, b) in sp.hours {
        if a >= b {
            continue;
        }
        for row in hourly.range((a, "", "")..(b, "", ""))? {
            let (k, v) = row?;
            let (_, group, figure) = k.value();
            sums.add(group, figure, v.value());
        }
    }
    let packed = r.open_table(PROGRAMME_PACKED)?;
    let reads = [
        (rollup::Level::Day, sp.days[0]),
        (rollup::Level::Month, sp.months),
        (rollup::Level::Day, sp.days[1]),
    ];
    for (level, (a, b)) in reads {
        if a >= b {
            continue;
        }
        let l = level.code();
        for row in packed.range((l, a, "")..(l, b, ""))? {
            let (k, v) = row?;
            let key = k.value();
            sums.add_packed(key.2, v.value())
                .map_err(|why| corrupt(key, why))?;
        }
    }
    let counts = sums.counts();
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
