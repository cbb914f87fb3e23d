//! The programme roll-ups ([`crate::rollup`]): the [`RollupSink`] inside an ingest's
//! write transaction, and the read of a range.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use redb::{
    Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle, WriteTransaction,
};
use uuid::Uuid;

use super::tables::{EVENTS, uuid_key};
use crate::model::StoredEvent;
use crate::rollup::{self, Batch, Half, ProgrammeCounts, Rollup, RollupSink};
use crate::store::{StoreError, decode, encode};

/// (hour start s, group, figure) → count.
pub(super) const PROGRAMME: TableDefinition<(i64, &str, &str), u64> =
    TableDefinition::new("programme_v1");
/// (day start s, group, figure) → count: the same counts by UTC day.
pub(super) const PROGRAMME_DAILY: TableDefinition<(i64, &str, &str), u64> =
    TableDefinition::new("programme_daily_v1");
/// Operator id → name as first declared.
pub(super) const PROGRAMME_NAMES: TableDefinition<&str, &str> =
    TableDefinition::new("programme_names_v1");
/// (gate, transaction id) → the halves waiting for their other half (`Vec<Half>`).
pub(super) const PROGRAMME_PENDING: TableDefinition<(&str, u128), &[u8]> =
    TableDefinition::new("programme_pending_v1");

/// Creates the tables (at open). A store made before the roll-ups (no `programme_v1`
/// table yet) gets them built from its stored events here, in the open's write
/// transaction; returns how many events were read for that (0 for any other store).
pub(super) fn create(tx: &WriteTransaction) -> Result<u64, StoreError> {
    let existed = tx.list_tables()?.any(|t| t.name() == PROGRAMME.name());
    tx.open_table(PROGRAMME)?;
    tx.open_table(PROGRAMME_DAILY)?;
    tx.open_table(PROGRAMME_NAMES)?;
    tx.open_table(PROGRAMME_PENDING)?;
    if existed {
        return Ok(0);
    }
    rebuild(tx)
}

/// Builds the roll-ups from every stored event, gate by gate in seq order, in batches of
/// [`rollup::REBUILD_CHUNK`] events, the way ingest would have; returns the events read.
fn rebuild(tx: &WriteTransaction) -> Result<u64, StoreError> {
    let events = tx.open_table(EVENTS)?;
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
        let daily = rollup::by_day(&r.counts);
        for (table, counts) in [(PROGRAMME, &r.counts), (PROGRAMME_DAILY, &daily)] {
            let mut t = self.tx.open_table(table)?;
            for ((start, group, figure), n) in counts {
                let key = (*start, group.as_str(), figure.as_str());
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
    let sp = rollup::spans(from, to);
    let r = db.begin_read()?;
    // Summed by "group\0figure" (neither holds a NUL: operator ids and codes are
    // checked), looked up through one reused buffer: most rows repeat a key already seen
    // on an earlier day, and then nothing is allocated.
    let mut sums: HashMap<String, u64> = HashMap::new();
    let mut key = String::new();
    // Keys are ordered by their start first: one range read per span.
    let reads = [
        (PROGRAMME, sp.hours[0]),
        (PROGRAMME_DAILY, sp.days),
        (PROGRAMME, sp.hours[1]),
    ];
    for (table, (a, b)) in reads {
        if a >= b {
            continue;
        }
        let t = r.open_table(table)?;
        for row in t.range((a, "", "")..(b, "", ""))? {
            let (k, v) = row?;
            let (_, group, figure) = k.value();
            key.clear();
            key.push_str(group);
            key.push('\0');
            key.push_str(figure);
            match sums.get_mut(key.as_str()) {
                Some(n) => *n += v.value(),
                None => {
                    sums.insert(key.clone(), v.value());
                }
            }
        }
    }
    let counts: BTreeMap<(String, String), u64> = sums
        .into_iter()
        .map(|(k, n)| {
            let (group, figure) = k.split_once('\0').unwrap_or((k.as_str(), ""));
            ((group.to_owned(), figure.to_owned()), n)
        })
        .collect();
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
