//! What the store keeps of each group until the index file holds it on disk, and how the
//! index file is brought up to the store from it ([`super::index_file`]).
//!
//! The store's write transaction of a group records, under the group's number, which
//! entries each of its batches stored with effect: the gate and the runs of seqs
//! (`index_pending_v2`), a few bytes a batch. Everything the index file holds for those
//! entries (their index rows, and the batch's programme roll-up) is derived from the
//! stored events, as `central rebuild-index` derives it ([`event_rows`]), so a group the
//! index file lost is made again from the events: in the group's order, batch by batch,
//! each batch's roll-up folded as ingest folded it.
//!
//! Stores written by earlier versions kept the rows and queued roll-up batches themselves
//! (`index_pending_v1`); a group found there is applied from them, and the table is
//! deleted once the index file holds every group it names.

use std::collections::{BTreeSet, HashMap};

use protocol::schema::EventBody;
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition};

use super::index_file::{ForIndex, IndexRow, insert_rows};
use super::rollup_tables::GroupRollup;
use super::tables::{EVENT_TXN, EVENTS, has_table, uuid_key};
use crate::model::StoredEvent;
use crate::store::{StoreError, decode};
use crate::{ingest, rollup};

/// In the store's file: group number → the gate and stored seqs of each of its batches
/// ([`Group`]), kept until the index file holds the group on disk.
pub(super) const INDEX_PENDING: TableDefinition<u64, &[u8]> =
    TableDefinition::new("index_pending_v2");

/// The same, as earlier versions kept it: the group's index rows and queued roll-ups.
const INDEX_PENDING_V1: TableDefinition<u64, &[u8]> = TableDefinition::new("index_pending_v1");

/// Seqs as runs of consecutive ones: (first, last), both included, ascending.
pub(super) type Runs = Vec<(u64, u64)>;

/// `seqs` (in any order) as [`Runs`].
pub(super) fn runs(seqs: impl IntoIterator<Item = u64>) -> Runs {
    let mut all: Vec<u64> = seqs.into_iter().collect();
    all.sort_unstable();
    all.dedup();
    let mut out: Runs = Vec::new();
    for s in all {
        match out.last_mut() {
            Some((_, last)) if last.checked_add(1) == Some(s) => *last = s,
            _ => out.push((s, s)),
        }
    }
    out
}

/// One group as the store keeps it pending: each batch that stored entries with effect,
/// in the order they were stored, as (gate, [`Runs`] of those entries' seqs).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Group {
    batches: Vec<(String, Runs)>,
}

impl Group {
    pub(super) fn with_capacity(batches: usize) -> Self {
        Self {
            batches: Vec::with_capacity(batches),
        }
    }

    /// Adds one stored batch.
    pub(super) fn add(&mut self, b: &ForIndex) {
        if !b.seqs.is_empty() {
            self.batches.push((b.gate.clone(), b.seqs.clone()));
        }
    }

    pub(super) fn encode(&self) -> Result<Vec<u8>, StoreError> {
        postcard::to_allocvec(self)
            .map_err(|e| StoreError::Backend(format!("index_pending_v2: {e}")))
    }

    /// Makes the group's index rows and roll-ups again from the store's events (read in
    /// `store`) and writes them in `tx`; returns the rows written.
    fn apply(
        &self,
        store: &ReadTransaction,
        tx: &redb::WriteTransaction,
        fold: &mut GroupRollup,
    ) -> Result<usize, StoreError> {
        let events = store.open_table(EVENTS)?;
        let links = store.open_table(EVENT_TXN)?;
        let mut written = 0;
        for (gate, runs) in &self.batches {
            let mut made = Made::new(gate);
            for &(first, last) in runs {
                for row in events.range((gate.as_str(), first)..=(gate.as_str(), last))? {
                    let (k, v) = row?;
                    let seq = k.value().1;
                    made.event(&events, &links, seq, &stored(gate, seq, v.value())?)?;
                }
            }
            let Made {
                mut rows, batch, ..
            } = made;
            rows.sort_unstable();
            insert_rows(tx, &rows)?;
            written += rows.len();
            if !batch.is_empty() {
                fold.add(tx, gate, batch)?;
            }
        }
        Ok(written)
    }
}

/// A batch's index rows and roll-up, made again from its stored events.
struct Made<'g> {
    gate: &'g str,
    gate_key: String,
    rows: Vec<IndexRow>,
    batch: rollup::Batch,
    /// The gate's entries about each transaction looked up so far.
    txns: HashMap<u128, Txn>,
}

/// The gate's stored entries about one transaction: (seq, at ms) of each, and the
/// container keys its gate transaction entries name.
#[derive(Default)]
struct Txn {
    entries: Vec<(u64, i64)>,
    containers: BTreeSet<String>,
}

type Events = redb::ReadOnlyTable<(&'static str, u64), &'static [u8]>;
type Links = redb::ReadOnlyTable<(u128, &'static str, u64), ()>;

impl<'g> Made<'g> {
    fn new(gate: &'g str) -> Self {
        Self {
            gate,
            gate_key: format!("g:{gate}"),
            rows: Vec::new(),
            batch: rollup::Batch::default(),
            txns: HashMap::new(),
        }
    }

    /// The rows and roll-up of the stored event `e` (seq `seq`): its own rows, and when
    /// it is a gate transaction, the rows of the gate's other entries about it under its
    /// containers (ingest writes those when the transaction arrives after them).
    fn event(
        &mut self,
        events: &Events,
        links: &Links,
        seq: u64,
        e: &StoredEvent,
    ) -> Result<(), StoreError> {
        if e.refused {
            return Ok(());
        }
        self.batch.event(e);
        let Some(t) = ingest::transaction_of(&e.entry.body).map(|t| uuid_key(&t)) else {
            event_rows(&self.gate_key, self.gate, seq, e, None, &mut self.rows);
            return Ok(());
        };
        let txn = txn_of(&mut self.txns, events, links, self.gate, t)?;
        event_rows(
            &self.gate_key,
            self.gate,
            seq,
            e,
            Some(&txn.containers),
            &mut self.rows,
        );
        if let EventBody::Transaction { transaction } = &e.entry.body {
            let own: BTreeSet<String> = transaction
                .containers()
                .iter()
                .map(|c| format!("c:{c}"))
                .collect();
            for &(other, at) in txn.entries.iter().filter(|(o, _)| *o != seq) {
                for key in &own {
                    self.rows
                        .push((key.clone(), at, self.gate.to_owned(), other));
                }
            }
        }
        Ok(())
    }
}

/// `gate`'s stored entries about transaction `txn`, read once and kept in `cache`.
fn txn_of<'c>(
    cache: &'c mut HashMap<u128, Txn>,
    events: &Events,
    links: &Links,
    gate: &str,
    txn: u128,
) -> Result<&'c Txn, StoreError> {
    if let std::collections::hash_map::Entry::Vacant(slot) = cache.entry(txn) {
        let mut found = Txn::default();
        for row in links.range((txn, gate, 0u64)..=(txn, gate, u64::MAX))? {
            let seq = row?.0.value().2;
            let Some(v) = events.get((gate, seq))? else {
                continue;
            };
            let e = stored(gate, seq, v.value())?;
            found.entries.push((seq, e.entry.at.as_millisecond()));
            if let (false, EventBody::Transaction { transaction }) = (e.refused, &e.entry.body) {
                found
                    .containers
                    .extend(transaction.containers().iter().map(|c| format!("c:{c}")));
            }
        }
        slot.insert(found);
    }
    Ok(cache.entry(txn).or_default())
}

/// The index rows of the stored event `e` (seq `seq` of `gate`, not refused): `t`,
/// `g:GATE`, its lane and decision when it has them, and `containers`, the container keys
/// of its gate transaction.
pub(super) fn event_rows(
    gate_key: &str,
    gate: &str,
    seq: u64,
    e: &StoredEvent,
    containers: Option<&BTreeSet<String>>,
    rows: &mut Vec<IndexRow>,
) {
    let at = e.entry.at.as_millisecond();
    let mut push = |key: String| rows.push((key, at, gate.to_owned(), seq));
    push("t".to_owned());
    push(gate_key.to_owned());
    if let Some(lane) = ingest::lane_of(&e.entry.body) {
        push(format!("l:{}/{lane}", e.entry.agent));
    }
    if let Some(d) = ingest::decision_of(&e.entry.body) {
        push(format!("d:{}", d.as_str()));
    }
    for key in containers.into_iter().flatten() {
        push(key.clone());
    }
}

pub(super) fn stored(gate: &str, seq: u64, bytes: &[u8]) -> Result<StoredEvent, StoreError> {
    decode("events_v1", format_args!("{gate}/{seq}"), bytes)
}

/// A group pending in the store, in either table.
#[derive(Debug)]
pub(super) enum Pending {
    /// Its batches' stored seqs ([`Group`]).
    Seqs(Group),
    /// Its rows and queued roll-ups, as earlier versions kept them.
    Rows(RowsPending),
}

impl Pending {
    /// Writes the group's index rows and roll-ups in `tx`; returns the rows written.
    pub(super) fn apply(
        &self,
        store: &ReadTransaction,
        tx: &redb::WriteTransaction,
        fold: &mut GroupRollup,
    ) -> Result<usize, StoreError> {
        match self {
            Pending::Seqs(g) => g.apply(store, tx, fold),
            Pending::Rows(p) => {
                let rows = p.rows()?;
                insert_rows(tx, &rows)?;
                p.fold_into(tx, fold)?;
                Ok(rows.len())
            }
        }
    }
}

/// A group as earlier versions kept it pending: one encoded chunk of index rows a batch,
/// and each batch's queued roll-up ([`rollup::Batch::to_queued`]) with its gate.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct RowsPending {
    pub(super) chunks: Vec<Vec<u8>>,
    pub(super) rollups: Vec<(String, Vec<u8>)>,
}

/// Older still: the rows alone, from while the roll-ups were written in the store's own
/// transaction.
#[derive(serde::Deserialize)]
struct RowsOnly {
    chunks: Vec<Vec<u8>>,
}

impl RowsPending {
    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        match postcard::from_bytes::<RowsPending>(bytes) {
            Ok(p) => Ok(p),
            Err(e) => match postcard::take_from_bytes::<RowsOnly>(bytes) {
                Ok((old, [])) => Ok(RowsPending {
                    chunks: old.chunks,
                    rollups: Vec::new(),
                }),
                _ => Err(corrupt("index_pending_v1", &e)),
            },
        }
    }

    /// Every row of the group.
    pub(super) fn rows(&self) -> Result<Vec<IndexRow>, StoreError> {
        let mut out = Vec::new();
        for c in &self.chunks {
            let rows: Vec<IndexRow> =
                postcard::from_bytes(c).map_err(|e| corrupt("index_pending_v1", &e))?;
            out.extend(rows);
        }
        Ok(out)
    }

    /// Folds the group's roll-up batches into `fold`, in the order they were stored.
    fn fold_into(
        &self,
        tx: &redb::WriteTransaction,
        fold: &mut GroupRollup,
    ) -> Result<(), StoreError> {
        for (gate, bytes) in &self.rollups {
            let b = rollup::Batch::from_queued(bytes).map_err(|why| StoreError::Corrupt {
                table: "index_pending_v1",
                key: format!("roll-up of {gate}"),
                why,
            })?;
            fold.add(tx, gate, b)?;
        }
        Ok(())
    }
}

fn corrupt(table: &'static str, e: &postcard::Error) -> StoreError {
    StoreError::Corrupt {
        table,
        key: "group".into(),
        why: e.to_string(),
    }
}

/// The store's pending groups above `after`, from both tables, in order.
pub(super) fn after(db: &Database, after: u64) -> Result<Vec<(u64, Pending)>, StoreError> {
    let r = db.begin_read()?;
    let mut out = Vec::new();
    for (v2, def) in [(false, INDEX_PENDING_V1), (true, INDEX_PENDING)] {
        let t = match r.open_table(def) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        for row in t.range(after.saturating_add(1)..)? {
            let (k, v) = row?;
            let p = if v2 {
                Pending::Seqs(
                    postcard::from_bytes(v.value()).map_err(|e| corrupt("index_pending_v2", &e))?,
                )
            } else {
                Pending::Rows(RowsPending::decode(v.value())?)
            };
            out.push((k.value(), p));
        }
    }
    out.sort_by_key(|(g, _)| *g);
    Ok(out)
}

/// The store's last pending group in either table (0 for none).
pub(super) fn last_group(db: &Database) -> Result<u64, StoreError> {
    let r = db.begin_read()?;
    let mut last = 0;
    for def in [INDEX_PENDING_V1, INDEX_PENDING] {
        match r.open_table(def) {
            Ok(t) => last = last.max(t.last()?.map_or(0, |(k, _)| k.value())),
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(last)
}

/// Deletes the earlier versions' table, once the index file holds every group it names
/// on disk.
pub(super) fn drop_v1(db: &Database) -> Result<(), StoreError> {
    if has_table(db, INDEX_PENDING_V1)? {
        let tx = db.begin_write()?;
        tx.delete_table(INDEX_PENDING_V1)?;
        tx.commit()?;
    }
    Ok(())
}

/// Applies `pending` (in order) in `tx`, reading the events from `db`; returns the rows
/// written.
pub(super) fn apply_all(
    db: &Database,
    pending: &[(u64, Pending)],
    tx: &redb::WriteTransaction,
) -> Result<usize, StoreError> {
    let store = db.begin_read()?;
    let mut rows = 0usize;
    let mut fold = GroupRollup::default();
    for (_, p) in pending {
        rows += p.apply(&store, tx, &mut fold)?;
    }
    fold.write(tx)?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use protocol::schema::{GateId, JournalEntry};
    use redb::{Database, ReadableDatabase};

    use super::super::RedbStore;
    use super::super::group::tests::{chained_bodies, traffic};
    use super::super::index_file::tests::{deliver, roll_ups, rows_of, searches};
    use super::super::index_file::{IndexRow, applied, path_for};
    use super::super::tables::EVENTS;
    use super::{
        Group, INDEX_PENDING, INDEX_PENDING_V1, Pending, RowsPending, after, has_table, runs,
        stored,
    };
    use crate::rollup;

    #[test]
    fn seqs_become_runs_of_consecutive_ones() {
        assert_eq!(runs([]), vec![]);
        assert_eq!(runs([5, 3, 4, 4, 9, 10, 1]), vec![(1, 1), (3, 5), (9, 10)]);
        assert_eq!(
            runs([u64::MAX, u64::MAX - 1]),
            vec![(u64::MAX - 1, u64::MAX)]
        );
    }

    /// Gate G1's traffic in two batches of 20 entries, then G2's with each decision
    /// journalled before its transaction, in batches of three (a decision's containers
    /// then come from a transaction in a later batch).
    fn batches() -> Vec<(GateId, Vec<JournalEntry>)> {
        let g1 = GateId::parse("G1").expect("gate");
        let g2 = GateId::parse("G2").expect("gate");
        let mut out: Vec<_> = traffic("G1", 20)
            .chunks(20)
            .map(|c| (g1.clone(), c.to_vec()))
            .collect();
        let mut bodies: Vec<_> = traffic("G2", 20).into_iter().map(|e| e.body).collect();
        for pair in bodies.chunks_mut(2) {
            pair.swap(0, 1);
        }
        out.extend(
            chained_bodies(&g2, bodies)
                .chunks(3)
                .map(|c| (g2.clone(), c.to_vec())),
        );
        out
    }

    /// Ingests `batches` into the store at `path`, one group each, and closes it.
    fn ingest(path: &Path, batches: &[(GateId, Vec<JournalEntry>)]) {
        let s = RedbStore::open(path).expect("open");
        for (g, entries) in batches {
            deliver(&s, g, entries);
        }
    }

    /// What staff see in the store at `path` once opened: the searches and roll-ups.
    fn seen(path: &Path) -> (Vec<(String, u64)>, String) {
        let s = RedbStore::open(path).expect("open");
        (searches(&s), roll_ups(&s))
    }

    struct Lost {
        dir: tempfile::TempDir,
        /// What staff saw, and the index rows, before the index file lost its groups.
        seen: (Vec<(String, u64)>, String),
        rows: Vec<IndexRow>,
        /// The rows of the index file as it was after the first batches.
        saved_rows: Vec<IndexRow>,
    }

    impl Lost {
        fn path(&self) -> std::path::PathBuf {
            self.dir.path().join("c.redb")
        }
    }

    /// A store whose index file lost the groups after the first nine batches, as a crash
    /// leaves it when their commits had not reached the disk: a copy taken after the
    /// first nine, put back, and the store's records of the later groups as it wrote them
    /// (one batch a group), before the index file's commits let it delete them.
    fn lost_groups() -> Lost {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.redb");
        let saved = dir.path().join("saved.redb");
        let all = batches();
        let (first, rest) = all.split_at(9);
        ingest(&path, first);
        std::fs::copy(path_for(&path), &saved).expect("save");
        ingest(&path, rest);
        let seen = seen(&path);
        let rows = rows_of(&Database::open(path_for(&path)).expect("index"));
        std::fs::copy(&saved, path_for(&path)).expect("put back");
        let index = Database::open(path_for(&path)).expect("index");
        let saved_rows = rows_of(&index);
        assert!(saved_rows.len() < rows.len(), "the copy lacks rows");
        let done = applied(&index).expect("applied");
        let db = Database::open(&path).expect("store");
        let tx = db.begin_write().expect("write");
        {
            let mut t = tx.open_table(INDEX_PENDING).expect("pending");
            for (n, (gate, entries)) in (1u64..).zip(&all).skip_while(|(n, _)| *n <= done) {
                let g = Group {
                    batches: vec![(gate.to_string(), runs(entries.iter().map(|e| e.seq)))],
                };
                t.insert(n, g.encode().expect("encode").as_slice())
                    .expect("insert");
            }
        }
        tx.commit().expect("commit");
        Lost {
            dir,
            seen,
            rows,
            saved_rows,
        }
    }

    /// The store's pending groups above what the index file at its path applied.
    fn lost_pending(path: &Path) -> (u64, Vec<(u64, Pending)>) {
        let done = applied(&Database::open(path_for(path)).expect("index")).expect("applied");
        let db = Database::open(path).expect("store");
        (done, after(&db, done).expect("pending"))
    }

    #[test]
    fn groups_the_index_file_lost_are_made_again_from_the_stored_events() {
        let lost = lost_groups();
        let path = lost.path();
        let (_, pending) = lost_pending(&path);
        assert!(
            pending.len() >= 7
                && pending.last().map(|(g, _)| *g) == Some(16)
                && pending.iter().all(|(_, p)| matches!(p, Pending::Seqs(_))),
            "{pending:?}"
        );
        assert_eq!(
            seen(&path),
            lost.seen,
            "every event found, every count once"
        );
        let index = Database::open(path_for(&path)).expect("index");
        assert_eq!(rows_of(&index), lost.rows, "the same rows as ingest wrote");
        assert_eq!(
            applied(&index).expect("applied"),
            pending.last().expect("last").0
        );
    }

    #[test]
    fn groups_kept_as_rows_by_earlier_versions_are_applied_and_their_table_deleted() {
        let lost = lost_groups();
        let path = lost.path();
        let (done, pending) = lost_pending(&path);
        let last = pending.last().expect("pending").0;
        // The lost groups as earlier versions kept them: their rows, and each batch's
        // queued roll-up, under the group's number in `index_pending_v1`.
        let rows: Vec<IndexRow> = lost
            .rows
            .iter()
            .filter(|r| !lost.saved_rows.contains(r))
            .cloned()
            .collect();
        let db = Database::open(&path).expect("store");
        let mut rollups = Vec::new();
        {
            let r = db.begin_read().expect("read");
            let events = r.open_table(EVENTS).expect("events");
            for (_, p) in &pending {
                let Pending::Seqs(g) = p else {
                    panic!("written as seqs")
                };
                for (gate, runs) in &g.batches {
                    let mut b = rollup::Batch::default();
                    for &(first, last) in runs {
                        for row in events
                            .range((gate.as_str(), first)..=(gate.as_str(), last))
                            .expect("range")
                        {
                            let (k, v) = row.expect("row");
                            b.event(&stored(gate, k.value().1, v.value()).expect("event"));
                        }
                    }
                    if !b.is_empty() {
                        rollups.push((gate.clone(), b.to_queued().expect("queued")));
                    }
                }
            }
        }
        let old = RowsPending {
            chunks: vec![postcard::to_allocvec(&rows).expect("rows")],
            rollups,
        };
        let tx = db.begin_write().expect("write");
        {
            let mut v2 = tx.open_table(INDEX_PENDING).expect("v2");
            v2.retain_in(done + 1.., |_, _| false)
                .expect("take the lost groups");
            tx.open_table(INDEX_PENDING_V1)
                .expect("v1")
                .insert(last, postcard::to_allocvec(&old).expect("old").as_slice())
                .expect("v1");
        }
        tx.commit().expect("commit");
        drop(db);
        assert!(matches!(
            &lost_pending(&path).1[..],
            [(_, Pending::Rows(_))]
        ));
        assert_eq!(
            seen(&path),
            lost.seen,
            "every event found, every count once"
        );
        assert_eq!(
            rows_of(&Database::open(path_for(&path)).expect("index")),
            lost.rows
        );
        assert!(
            !has_table(&Database::open(&path).expect("store"), INDEX_PENDING_V1).expect("read"),
            "the earlier versions' table is deleted once applied"
        );
    }
}
