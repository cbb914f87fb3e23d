//! The schema's floor on redb, a baseline for ingest (benchmark figure 5): the rows an
//! ingest writes for each event stored with effect — the event, its id, its index keys
//! (`t`, `g:GATE`, `l:GATE/LANE`, `d:OUTCOME`, `c:CONTAINER`) and its transaction link —
//! written into the store's own tables by the same table definitions, one write
//! transaction per group of queued batches as ingest commits them. Nothing else: no
//! chain, hash or duplicate checks, no cases, counters, hourly figures or roll-ups, no
//! gate row. The rows are made before the write ([`FloorBatch::new`]), so what a floor
//! write costs is the storage of an ingest's event rows and nothing of its rules.

use std::collections::HashMap;

use jiff::Timestamp;
use protocol::schema::{EventBody, GateId, JournalEntry};
use redb::WriteTransaction;
use uuid::Uuid;

use super::event_tables::{Made, stored_event_tail};
use super::index_file::ForIndex;
use super::index_pending;
use super::tables::{EVENT_IDS, EVENT_TXN, EVENTS, uuid_key};
use crate::ingest;
use crate::store::StoreError;

/// One entry's rows.
#[derive(Debug)]
struct Rows {
    seq: u64,
    id: u128,
    at_ms: i64,
    /// The stored event, as ingest stores an entry whose chain holds.
    bytes: Vec<u8>,
    /// Index keys other than `t` and `g:GATE`.
    keys: Vec<String>,
    txn: Option<u128>,
}

/// A batch of one gate's entries made into the rows ingest would write for them.
#[derive(Debug)]
pub struct FloorBatch {
    gate: GateId,
    gate_key: String,
    rows: Vec<Rows>,
}

impl FloorBatch {
    /// The rows of `entries` of `gate`, received at `now`. `containers` holds the
    /// container index keys of the gate transactions seen so far (by transaction id), for
    /// the decisions and officer actions about them; this batch's transactions are added.
    /// An entry whose hash does not match its content is left out (ingest would store it
    /// as evidence only, with no index rows).
    ///
    /// # Errors
    /// When an entry cannot be serialised.
    pub fn new(
        gate: &GateId,
        entries: &[JournalEntry],
        now: Timestamp,
        containers: &mut HashMap<Uuid, Vec<String>>,
    ) -> Result<Self, StoreError> {
        let tail = stored_event_tail(now, true, false)?;
        let mut rows = Vec::with_capacity(entries.len());
        for e in entries {
            let (_, Some(made)) = Made::new(e, None, &tail)? else {
                continue;
            };
            let txn = ingest::transaction_of(&e.body);
            if let (EventBody::Transaction { transaction }, false) =
                (&e.body, made.container_keys.is_empty())
            {
                containers.insert(transaction.id, made.container_keys.clone());
            }
            let mut keys: Vec<String> = made
                .lane_key
                .iter()
                .chain(&made.decision_key)
                .cloned()
                .collect();
            keys.extend(
                txn.and_then(|t| containers.get(&t))
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
            rows.push(Rows {
                seq: e.seq,
                id: uuid_key(&e.id),
                at_ms: e.at.as_millisecond(),
                bytes: made.bytes,
                keys,
                txn: txn.as_ref().map(uuid_key),
            });
        }
        Ok(Self {
            gate: gate.clone(),
            gate_key: format!("g:{gate}"),
            rows,
        })
    }

    /// Entries in the batch (what a group counts).
    pub(super) fn len(&self) -> usize {
        self.rows.len()
    }

    /// The highest seq written (0 for none).
    pub(super) fn last_seq(&self) -> u64 {
        self.rows.iter().map(|r| r.seq).max().unwrap_or(0)
    }

    /// Writes the batch's rows inside `tx`, its gate, seqs and index rows into `out` (for
    /// the index file, as ingest's).
    pub(super) fn write_in(
        &self,
        tx: &WriteTransaction,
        out: &mut ForIndex,
    ) -> Result<(), StoreError> {
        let gate = self.gate.as_str();
        out.gate = gate.to_owned();
        out.seqs = index_pending::runs(self.rows.iter().map(|r| r.seq));
        let index = &mut out.rows;
        let mut events = tx.open_table(EVENTS)?;
        let mut ids = tx.open_table(EVENT_IDS)?;
        let mut txns = tx.open_table(EVENT_TXN)?;
        for r in &self.rows {
            events.insert((gate, r.seq), r.bytes.as_slice())?;
            ids.insert((gate, r.id), r.seq)?;
            let row = |k: &str| (k.to_owned(), r.at_ms, gate.to_owned(), r.seq);
            index.push(row("t"));
            index.push(row(&self.gate_key));
            index.extend(r.keys.iter().map(|k| row(k)));
            if let Some(t) = r.txn {
                txns.insert((t, gate, r.seq), ())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use jiff::{SignedDuration, Timestamp};
    use protocol::schema::GateId;
    use redb::{ReadableDatabase, ReadableTable};

    use super::super::RedbStore;
    use super::super::group::tests::traffic;
    use super::super::tables::{EVENT_IDS, EVENT_INDEX, EVENT_TXN, EVENTS, index_row_of};
    use super::FloorBatch;
    use crate::store::{Delivery, Store};

    type Contents = (
        Vec<((String, u64), Vec<u8>)>,
        Vec<((String, u128), u64)>,
        Vec<(String, i64, String, u64)>,
        Vec<(u128, String, u64)>,
    );

    /// Every row of the four event tables (the index in the index file).
    fn contents(s: &RedbStore) -> Contents {
        s.files
            .indexer
            .wait()
            .expect("the index holds what the store committed");
        let r = s.files.db.begin_read().expect("read");
        let ri = s.files.index.begin_read().expect("read index");
        let events = r.open_table(EVENTS).expect("events");
        let ids = r.open_table(EVENT_IDS).expect("ids");
        let index = ri.open_table(EVENT_INDEX).expect("index");
        let txn = r.open_table(EVENT_TXN).expect("txn");
        (
            events
                .iter()
                .expect("iter")
                .map(|row| {
                    let (k, v) = row.expect("row");
                    let (g, s) = k.value();
                    ((g.to_owned(), s), v.value().to_vec())
                })
                .collect(),
            ids.iter()
                .expect("iter")
                .map(|row| {
                    let (k, v) = row.expect("row");
                    let (g, id) = k.value();
                    ((g.to_owned(), id), v.value())
                })
                .collect(),
            index
                .iter()
                .expect("iter")
                .map(|row| {
                    let (k, _) = row.expect("row");
                    let (key, at, g, s) = index_row_of(k.value()).expect("an index row's key");
                    (key.to_owned(), at, g.to_owned(), s)
                })
                .collect(),
            txn.iter()
                .expect("iter")
                .map(|row| {
                    let (k, _) = row.expect("row");
                    let (t, g, s) = k.value();
                    (t, g.to_owned(), s)
                })
                .collect(),
        )
    }

    #[test]
    fn the_floor_writes_exactly_the_event_rows_an_ingest_of_the_same_batches_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ingested = RedbStore::open(&dir.path().join("ingest.redb")).expect("open");
        let floor = RedbStore::open(&dir.path().join("floor.redb")).expect("open");
        let now: Timestamp = "2026-01-02T00:00:00Z".parse().expect("ts");
        for gate in ["G1", "G2"] {
            let g = GateId::parse(gate).expect("gate");
            let entries = traffic(gate, 30);
            // A transaction's decision in the next batch takes its containers from an
            // earlier batch.
            let mut containers = HashMap::new();
            for part in [&entries[..21], &entries[21..]] {
                let out = ingested
                    .ingest(Delivery::new(&g, part, now, SignedDuration::from_hours(24)))
                    .expect("ingest");
                assert_eq!(out.tally.stored, part.len() as u64);
                let batch = FloorBatch::new(&g, part, now, &mut containers).expect("floor");
                floor.write_floor(batch).expect("write");
            }
        }
        let (events, ids, index, txn) = contents(&ingested);
        assert_eq!(events.len(), 120);
        assert!(
            index.iter().any(|(k, ..)| k.starts_with("c:")),
            "transactions name containers"
        );
        assert!(index.iter().any(|(k, ..)| k.starts_with("d:")));
        assert_eq!(contents(&floor), (events, ids, index, txn));
    }
}
