//! Rebuilding a store's index file from its events (`central rebuild-index`), for when the
//! file is lost or damaged and no backup taken with the store is at hand.
//!
//! Everything the index file holds is derived from the store's stored events, which a
//! redb store keeps for good: the event index rows (time, gate, lane, decision, and the
//! containers of each entry's gate transaction) and the programme roll-ups. The rebuild
//! writes a new file from them, in the order ingest would have, and marks it as holding
//! every group the store has kept pending (their events are among those read), so the
//! next open applies nothing twice. A file already at the index's path is moved aside,
//! never deleted. It runs on a stopped store: redb's lock refuses a store central holds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use protocol::schema::EventBody;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::index_file::{self, IndexRow};
use super::index_pending::{self, event_rows, stored};
use super::tables::{EVENT_INDEX, EVENT_INDEX_V1, EVENTS, has_table};
use super::{CACHE_BYTES, INDEX_CACHE_BYTES, rollup_tables};
use crate::ingest;
use crate::store::StoreError;

/// Index rows written per transaction.
const CHUNK: usize = 200_000;

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildReport {
    /// The new index file.
    pub index: PathBuf,
    /// Where the file found at the index's path was moved, if one was.
    pub moved_aside: Option<PathBuf>,
    /// Stored events read.
    pub events: u64,
    /// Event index rows written.
    pub rows: u64,
}

/// Rebuilds the index file of the redb store at `path` from its events.
///
/// # Errors
/// The store does not exist, is open in another process, or still keeps its index in
/// its own file (opening it moves that); a stored event does not decode; storage errors.
pub fn rebuild(path: &Path) -> Result<RebuildReport, StoreError> {
    if !path.exists() {
        return Err(StoreError::Backend(format!(
            "{} does not exist (the redb store whose index to rebuild)",
            path.display()
        )));
    }
    let db = Database::builder().set_cache_size(CACHE_BYTES).open(path)?;
    if has_table(&db, EVENT_INDEX_V1)? {
        return Err(StoreError::Backend(format!(
            "{} still keeps its event index in its own file: open it with central \
             once, which moves the index into its index file",
            path.display()
        )));
    }
    let ipath = index_file::path_for(path);
    let moved_aside = if ipath.exists() {
        let aside = aside_path(&ipath);
        std::fs::rename(&ipath, &aside).map_err(|e| {
            StoreError::Backend(format!(
                "moving {} aside to {}: {e}",
                ipath.display(),
                aside.display()
            ))
        })?;
        tracing::warn!(from = %ipath.display(), to = %aside.display(), "the old index file is moved aside");
        Some(aside)
    } else {
        None
    };
    let index = Database::builder()
        .set_cache_size(INDEX_CACHE_BYTES)
        .create(&ipath)?;
    let (events, rows) = index_rows(&db, &index)?;
    // The roll-ups: with no tables in either file, built from every stored event.
    rollup_tables::into_index(&db, &index)?;
    index_file::mark_rebuilt(&index, index_pending::last_group(&db)?)?;
    tracing::info!(events, rows, index = %ipath.display(), "event index and roll-ups rebuilt");
    Ok(RebuildReport {
        index: ipath,
        moved_aside,
        events,
        rows,
    })
}

/// A free name beside `ipath` for the file found there: `….index.redb.aside-<unix s>`.
fn aside_path(ipath: &Path) -> PathBuf {
    let now = jiff::Timestamp::now().as_second();
    let mut n = 0u32;
    loop {
        let mut name = ipath.as_os_str().to_owned();
        name.push(format!(".aside-{now}"));
        if n > 0 {
            name.push(format!("-{n}"));
        }
        let p = PathBuf::from(name);
        if !p.exists() {
            return p;
        }
        n += 1;
    }
}

/// Writes the event index rows of every stored event into `index`, gate by gate; returns
/// the events read and the rows written.
fn index_rows(db: &Database, index: &Database) -> Result<(u64, u64), StoreError> {
    let tx = index.begin_write()?;
    tx.open_table(EVENT_INDEX)?;
    tx.commit()?;
    let r = db.begin_read()?;
    let t = r.open_table(EVENTS)?;
    if t.is_empty()? {
        return Ok((0, 0));
    }
    // Each gate's first key, then the first key after its last seq: the next gate.
    let mut gates: Vec<String> = Vec::new();
    let mut row = t.first()?;
    while let Some((k, _)) = row {
        let g = k.value().0.to_owned();
        row = t
            .range((g.as_str(), u64::MAX)..)?
            .find(|r| r.as_ref().map_or(true, |(k, _)| k.value().0 != g))
            .transpose()?;
        gates.push(g);
    }
    let mut rows: Vec<IndexRow> = Vec::with_capacity(CHUNK);
    let (mut events, mut written) = (0u64, 0u64);
    for gate in &gates {
        // The containers of each of the gate's transactions, from its gate transaction
        // entries (an entry about a transaction is found under them, whichever came first).
        let mut containers: BTreeMap<u128, BTreeSet<String>> = BTreeMap::new();
        for row in t.range((gate.as_str(), 0u64)..=(gate.as_str(), u64::MAX))? {
            let (k, v) = row?;
            let e = stored(gate, k.value().1, v.value())?;
            if e.refused {
                continue;
            }
            if let EventBody::Transaction { transaction } = &e.entry.body {
                containers
                    .entry(transaction.id.as_u128())
                    .or_default()
                    .extend(transaction.containers().iter().map(|c| format!("c:{c}")));
            }
        }
        let gate_key = format!("g:{gate}");
        for row in t.range((gate.as_str(), 0u64)..=(gate.as_str(), u64::MAX))? {
            let (k, v) = row?;
            let seq = k.value().1;
            let e = stored(gate, seq, v.value())?;
            events += 1;
            if e.refused {
                continue;
            }
            let keys = ingest::transaction_of(&e.entry.body)
                .and_then(|txn| containers.get(&txn.as_u128()));
            event_rows(&gate_key, gate, seq, &e, keys, &mut rows);
            if rows.len() >= CHUNK {
                written += write(index, &mut rows)?;
            }
        }
    }
    written += write(index, &mut rows)?;
    Ok((events, written))
}

/// Writes `rows` (sorted, in one transaction) and empties it; returns how many.
fn write(index: &Database, rows: &mut Vec<IndexRow>) -> Result<u64, StoreError> {
    if rows.is_empty() {
        return Ok(0);
    }
    rows.sort_unstable();
    let tx = index.begin_write()?;
    index_file::insert_rows(&tx, rows)?;
    tx.commit()?;
    let n = rows.len() as u64;
    rows.clear();
    Ok(n)
}

#[cfg(test)]
mod tests {
    use jiff::{SignedDuration, Timestamp};
    use protocol::schema::GateId;
    use redb::Database;

    use super::super::RedbStore;
    use super::super::group::tests::{chained_bodies, traffic};
    use super::super::index_file::tests::{deliver, ingest_traffic, searches};
    use super::super::index_file::{IndexRow, path_for};
    use super::rebuild;
    use crate::rollup::ProgrammeCounts;
    use crate::store::{Delivery, Store};

    fn at() -> Timestamp {
        "2026-01-01T00:00:00Z".parse().expect("ts")
    }

    /// G1's traffic (each transaction before its decision), and G2's with each decision
    /// journalled before its transaction, in batches of three: a decision's containers
    /// then come from a transaction in a later batch.
    fn fill(s: &RedbStore) {
        ingest_traffic(s, 30, 7);
        let g2 = GateId::parse("G2").expect("gate");
        let mut bodies: Vec<_> = traffic("G2", 20).into_iter().map(|e| e.body).collect();
        for pair in bodies.chunks_mut(2) {
            pair.swap(0, 1);
        }
        for part in chained_bodies(&g2, bodies).chunks(3) {
            deliver(s, &g2, part);
        }
    }

    /// A store at `path` filled by [`fill`], and what staff saw in it.
    fn filled(path: &std::path::Path) -> (ProgrammeCounts, Vec<(String, u64)>) {
        let s = RedbStore::open(path).expect("open");
        fill(&s);
        seen(&s)
    }

    fn rows_of(path: &std::path::Path) -> Vec<IndexRow> {
        super::super::index_file::tests::rows_of(&Database::open(path_for(path)).expect("index"))
    }

    /// What staff see: the roll-ups, and (container or `all`, seq) of each search.
    fn seen(s: &RedbStore) -> (ProgrammeCounts, Vec<(String, u64)>) {
        let counts = s
            .programme_counts(None, "2030-01-01T00:00:00Z".parse().expect("ts"))
            .expect("counts");
        (counts, searches(s))
    }

    #[test]
    fn a_lost_index_file_is_rebuilt_with_the_rows_and_roll_ups_ingest_wrote() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.redb");
        let before = filled(&path);
        assert!(before.1.len() > 180, "{}", before.1.len());
        assert!(!before.0.counts.is_empty());
        let rows = rows_of(&path);
        std::fs::remove_file(path_for(&path)).expect("remove");
        RedbStore::open(&path).expect_err("refused without its index file");
        let report = rebuild(&path).expect("rebuild");
        assert_eq!(report.events, 100);
        assert_eq!(report.rows, rows.len() as u64);
        assert_eq!(report.moved_aside, None);
        assert_eq!(rows_of(&path), rows, "the same rows as ingest wrote");
        let s = RedbStore::open(&path).expect("open after the rebuild");
        assert_eq!(seen(&s), before);
        // Ingest goes on from it.
        let g1 = GateId::parse("G1").expect("gate");
        let more = traffic("G1", 31);
        s.ingest(Delivery::new(
            &g1,
            &more[60..],
            at(),
            SignedDuration::from_hours(24),
        ))
        .expect("ingest");
        assert!(seen(&s).1.len() > before.1.len());
    }

    #[test]
    fn a_damaged_index_file_is_moved_aside_and_the_index_rebuilt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.redb");
        let before = filled(&path);
        let damaged = b"not a redb file at all".repeat(100);
        std::fs::write(path_for(&path), &damaged).expect("damage");
        let err = RedbStore::open(&path).expect_err("a damaged index file");
        assert!(!err.to_string().is_empty());
        let report = rebuild(&path).expect("rebuild");
        let aside = report.moved_aside.expect("moved aside");
        assert_eq!(
            std::fs::read(&aside).expect("aside"),
            damaged,
            "kept as it was"
        );
        let s = RedbStore::open(&path).expect("open after the rebuild");
        assert_eq!(seen(&s), before);
    }

    #[test]
    fn a_store_central_holds_open_is_not_rebuilt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.redb");
        let s = RedbStore::open(&path).expect("open");
        fill(&s);
        rebuild(&path).expect_err("the store is open");
        assert!(
            path_for(&path).exists(),
            "the index file is left where it was"
        );
        drop(s);
        let missing = dir.path().join("none.redb");
        let err = rebuild(&missing).expect_err("no store");
        assert!(err.to_string().contains("does not exist"), "{err}");
        assert!(!missing.exists());
    }
}
