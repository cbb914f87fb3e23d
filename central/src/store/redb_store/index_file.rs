//! The event index and the programme roll-ups in a file of their own, written by a
//! second writer beside the store's.
//!
//! redb has one writer per file, and at ingest that writer was the bound: it stored each
//! event, its id and transaction link, cases, counters and roll-ups, and five index rows
//! (`t`, `g:GATE`, `l:GATE/LANE`, `d:OUTCOME`, `c:CONTAINER`) whose pages, the container
//! keys above all, were a third of what each commit wrote, and the roll-ups' reads and
//! rewrites of their rows a quarter of its time (docs/benchmarks.md, figure 5). The index
//! rows now go to `event_index_v2` and each batch's roll-up ([`crate::rollup::Batch`]) is
//! folded into the `programme_*` tables ([`super::rollup_tables`]) in the index file (the
//! store's path with the extension `index.redb`: `central.redb` → `central.index.redb`),
//! on a thread of their own, while the store's writer does the rest of the group on the
//! other core.
//!
//! # Ordering and crashes
//! The index's writer takes a group's rows and roll-up as the store's writer stores it,
//! and puts them into its write transaction once the store has committed the group (a
//! group the store abandons leaves nothing there). That transaction stays open across
//! groups and commits once it has been open [`COMMIT_EVERY`], or at once when a search
//! waits for it, so one commit carries many groups and each page their rows touch is
//! copied and written once. The agents of a group are answered after the store's commit,
//! and the index commits only groups the store has committed. So the
//! index never names an event the store does not hold (a query reads the index first, then
//! the store, in a newer snapshot), and a search or a programme figure waits until the
//! index has applied what the store had committed ([`Indexer::wait`]). The store's
//! transaction also keeps the group pending under its number: which entries each of its
//! batches stored (`index_pending_v2`, [`index_pending`]), from which the group's rows and
//! roll-ups are made again; the index file records the last group it applied
//! (`index_meta_v1`, `applied`) in the same transaction as the rows and counts. The index
//! commits without waiting for the disk (`Durability::None`) except about once a second
//! ([`DURABLE_EVERY`]), and the store deletes its pending groups only up to the index's
//! last durable commit. So on open, after a crash, and before a group when an index commit
//! failed, the pending groups above the index's `applied` are applied in order (the rows,
//! the roll-ups and the number in one transaction: each group once), and no index row or
//! count of an acknowledged event is lost.
//!
//! # Migration
//! A store written before the index had its own file keeps its rows in the store's
//! `event_index_v1`: on open they are copied into the index file in chunks, the index file
//! marked as holding them, and the store's table deleted (each step safe to repeat after
//! a crash); its roll-ups move the same way ([`super::rollup_tables::into_index`]). An
//! index file that keeps its rows as tuples (`event_index_v1`, before the keys were bytes
//! in their order, [`super::tables::index_row_key`]) has them rewritten the same way. A
//! store that holds events but whose index file is missing is refused with an
//! error naming the file, rather than answering searches without their events.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::index_pending::{self, Runs};
use super::rollup_tables::{self, GroupRollup};
use super::tables::{EVENT_INDEX, EVENT_INDEX_V1, EVENTS, has_table, index_row_key};
use crate::rollup;
use crate::store::StoreError;

/// One index row: (index key, at ms, gate, seq).
pub(super) type IndexRow = (String, i64, String, u64);

/// How often the index file's commits wait for the disk; in between they are visible at
/// once but durable only with the next durable one (the store keeps their groups pending).
pub(super) const DURABLE_EVERY: Duration = Duration::from_secs(1);
/// How long the index file's write transaction stays open across the store's groups
/// before it commits, unless a search waits for it: the rows and roll-up counts of many
/// groups in one commit, each page they touch (a container's, an operator's roll-up row)
/// copied and written once for all of them (docs/benchmarks.md, figure 5).
pub(super) const COMMIT_EVERY: Duration = Duration::from_millis(1_000);
/// In the index file: `applied` (the last group whose rows it holds) and `migrated` (1 once
/// a store's rows from before the index file are copied in).
const INDEX_META: TableDefinition<&str, u64> = TableDefinition::new("index_meta_v1");

/// Rows copied per transaction when moving a store's old index into the index file.
const MIGRATE_CHUNK: usize = 200_000;

/// The index file's path for the store at `path`.
#[must_use]
pub fn path_for(path: &Path) -> PathBuf {
    path.with_extension("index.redb")
}

/// What one stored batch hands the index file: its gate, the [`Runs`] of seqs it stored
/// with effect (what the store keeps pending, [`index_pending`]), their index rows, and
/// its part of the programme roll-ups when it stored decisions or gate transactions.
#[derive(Debug, Default)]
pub(super) struct ForIndex {
    pub(super) gate: String,
    pub(super) seqs: Runs,
    pub(super) rows: Vec<IndexRow>,
    pub(super) rollup: Option<rollup::Batch>,
}

/// The index file's last applied group.
pub(super) fn applied(index: &Database) -> Result<u64, StoreError> {
    let r = index.begin_read()?;
    let t = r.open_table(INDEX_META)?;
    Ok(t.get("applied")?.map_or(0, |g| g.value()))
}

pub(super) fn insert_rows(
    tx: &redb::WriteTransaction,
    rows: &[IndexRow],
) -> Result<(), StoreError> {
    let mut t = tx.open_table(EVENT_INDEX)?;
    let mut key = Vec::with_capacity(64);
    for (k, at, g, s) in rows {
        key.clear();
        index_row_key(k, *at, g, *s, &mut key);
        t.insert(key.as_slice(), ())?;
    }
    Ok(())
}

/// Marks a rebuilt index file ([`super::index_rebuild`]) as holding the store's rows from
/// before the index file and every group up to `group`, durably.
pub(super) fn mark_rebuilt(index: &Database, group: u64) -> Result<(), StoreError> {
    let tx = index.begin_write()?;
    tx.open_table(INDEX_META)?.insert("migrated", 1)?;
    set_applied(&tx, group)?;
    tx.commit()?;
    Ok(())
}

pub(super) fn set_applied(tx: &redb::WriteTransaction, group: u64) -> Result<(), StoreError> {
    let mut m = tx.open_table(INDEX_META)?;
    m.insert("applied", group)?;
    Ok(())
}

/// Brings the index file up to the store: applies, in order and durably, the store's
/// pending groups above the index's `applied`. Returns the number of the last group
/// both now hold.
pub(super) fn catch_up(db: &Database, index: &Database) -> Result<u64, StoreError> {
    let done = applied(index)?;
    let pending = index_pending::after(db, done)?;
    let Some(&(last, _)) = pending.last() else {
        return Ok(done);
    };
    let tx = index.begin_write()?;
    let rows = index_pending::apply_all(db, &pending, &tx)?;
    set_applied(&tx, last)?;
    tx.commit()?;
    tracing::warn!(
        from = done + 1,
        to = last,
        rows,
        "the event index and roll-ups were behind the store; the store's pending groups are applied now"
    );
    Ok(last)
}

/// Opens (or creates) the index file of the store at `path` (opened as `db`), moves an
/// old store's index rows into it and catches it up with the store. Returns the index
/// file and the number of the last group both hold.
///
/// # Errors
/// The file cannot be opened; the store holds events but the index file was missing; a
/// storage error while moving or applying rows.
pub(super) fn open(
    path: &Path,
    db: &Database,
    cache: usize,
) -> Result<(Database, u64), StoreError> {
    let ipath = path_for(path);
    let existed = ipath.exists();
    let index = Database::builder().set_cache_size(cache).create(&ipath)?;
    let tx = index.begin_write()?;
    let migrated = {
        tx.open_table(EVENT_INDEX)?;
        let m = tx.open_table(INDEX_META)?;
        m.get("migrated")?.is_some_and(|g| g.value() == 1)
    };
    tx.commit()?;
    // The index file's rows as tuples, from before `event_index_v2`.
    convert(&index)?;
    // The store's own index table, from before the index file.
    match has_table(db, EVENT_INDEX_V1)? {
        true if !migrated => migrate(db, &index)?,
        true => drop_old(db)?,
        false if !existed && !migrated => {
            let has_events = {
                let r = db.begin_read()?;
                match r.open_table(EVENTS) {
                    Ok(t) => !t.is_empty()?,
                    Err(redb::TableError::TableDoesNotExist(_)) => false,
                    Err(e) => return Err(e.into()),
                }
            };
            if has_events {
                drop(index);
                let _ = std::fs::remove_file(&ipath);
                return Err(StoreError::Backend(format!(
                    "the store {} holds events but its index file {} is missing: restore \
                     it from the backup taken with the store, or rebuild it from the store's \
                     events with `central rebuild-index --store {}`",
                    path.display(),
                    ipath.display(),
                    path.display()
                )));
            }
            let tx = index.begin_write()?;
            tx.open_table(INDEX_META)?.insert("migrated", 1)?;
            tx.commit()?;
        }
        false => {}
    }
    rollup_tables::into_index(db, &index)?;
    let group = catch_up(db, &index)?;
    // The index file now holds on disk every group the earlier versions' table names.
    index_pending::drop_v1(db)?;
    Ok((index, group))
}

/// Copies the store's old `event_index_v1` into the index file, marks it migrated, then
/// deletes the store's table.
fn migrate(db: &Database, index: &Database) -> Result<(), StoreError> {
    tracing::info!("moving the event index into its own file");
    let moved = copy_rows(db, index)?;
    let tx = index.begin_write()?;
    tx.open_table(INDEX_META)?.insert("migrated", 1)?;
    tx.commit()?;
    tracing::info!(rows = moved, "event index moved into its own file");
    drop_old(db)
}

/// Copies the rows of `from`'s `event_index_v1` into `to`'s event index, in chunks of
/// [`MIGRATE_CHUNK`] a transaction; returns how many.
fn copy_rows(from: &Database, to: &Database) -> Result<usize, StoreError> {
    let mut after: Option<IndexRow> = None;
    let mut moved = 0usize;
    loop {
        let chunk: Vec<IndexRow> = {
            let r = from.begin_read()?;
            let t = r.open_table(EVENT_INDEX_V1)?;
            let mut out = Vec::with_capacity(MIGRATE_CHUNK);
            let range = match &after {
                Some((k, at, g, s)) => t.range((
                    std::ops::Bound::Excluded((k.as_str(), *at, g.as_str(), *s)),
                    std::ops::Bound::Unbounded,
                ))?,
                None => t.range::<(&str, i64, &str, u64)>(..)?,
            };
            for row in range.take(MIGRATE_CHUNK) {
                let (k, _) = row?;
                let (key, at, g, s) = k.value();
                out.push((key.to_owned(), at, g.to_owned(), s));
            }
            out
        };
        let Some(last) = chunk.last().cloned() else {
            break;
        };
        let tx = to.begin_write()?;
        insert_rows(&tx, &chunk)?;
        tx.commit()?;
        moved += chunk.len();
        after = Some(last);
    }
    Ok(moved)
}

fn drop_old(db: &Database) -> Result<(), StoreError> {
    let tx = db.begin_write()?;
    tx.delete_table(EVENT_INDEX_V1)?;
    tx.commit()?;
    Ok(())
}

/// Rewrites an index file's rows kept as tuples (`event_index_v1`) into `event_index_v2`,
/// in chunks, then deletes the old table; safe to repeat after a crash (a row written
/// twice is one row).
fn convert(index: &Database) -> Result<(), StoreError> {
    if !has_table(index, EVENT_INDEX_V1)? {
        return Ok(());
    }
    tracing::info!("rewriting the event index's keys");
    let moved = copy_rows(index, index)?;
    let tx = index.begin_write()?;
    tx.delete_table(EVENT_INDEX_V1)?;
    tx.commit()?;
    tracing::info!(rows = moved, "event index keys rewritten");
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use jiff::{SignedDuration, Timestamp};
    use protocol::schema::GateId;
    use redb::{Database, ReadableDatabase, ReadableTable};

    use super::super::RedbStore;
    use super::super::group::tests::traffic;
    use super::super::index_pending;
    use super::super::tables::{EVENT_INDEX, EVENT_INDEX_V1, has_table, index_row_of};
    use super::{IndexRow, path_for};
    use crate::model::EventQuery;
    use crate::store::{Delivery, Store};

    fn at() -> Timestamp {
        "2026-01-01T00:00:00Z".parse().expect("ts")
    }

    /// A store at `path` holding two batches of gate G1's traffic (two groups).
    fn filled(path: &std::path::Path) -> Vec<(String, u64)> {
        let s = RedbStore::open(path).expect("open");
        ingest_traffic(&s, 20, 20);
        searches(&s)
    }

    /// A store at `c.redb` in `dir` filled by [`filled`]: its path, what its searches
    /// found, and its index rows.
    fn filled_rows(
        dir: &tempfile::TempDir,
    ) -> (std::path::PathBuf, Vec<(String, u64)>, Vec<IndexRow>) {
        let path = dir.path().join("c.redb");
        let found = filled(&path);
        let all = rows_of(&Database::open(path_for(&path)).expect("index"));
        (path, found, all)
    }

    /// Gate G1's traffic of `transactions` transactions, ingested in batches of `batch`
    /// entries (one group each).
    pub(in super::super) fn ingest_traffic(s: &RedbStore, transactions: u64, batch: usize) {
        let g = GateId::parse("G1").expect("gate");
        for part in traffic("G1", transactions).chunks(batch) {
            deliver(s, &g, part);
        }
    }

    /// Ingests `part` of `gate`'s chain as one batch, received at [`at`].
    pub(in super::super) fn deliver(
        s: &RedbStore,
        gate: &GateId,
        part: &[protocol::schema::JournalEntry],
    ) {
        s.ingest(Delivery::new(
            gate,
            part,
            at(),
            SignedDuration::from_hours(24),
        ))
        .expect("ingest");
    }

    /// (container or `all`, seq) of every event each search finds: by container, and all.
    pub(in super::super) fn searches(s: &RedbStore) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for c in [Some("MSCU1234566"), Some("CSQU3054383"), None] {
            let q = EventQuery {
                container: c.map(str::to_owned),
                limit: 1_000,
                ..EventQuery::default()
            };
            for e in s.events(&q).expect("search").items {
                out.push((c.unwrap_or("all").to_owned(), e.entry.seq));
            }
        }
        out
    }

    /// The store's programme roll-ups over all time, as one line.
    pub(in super::super) fn roll_ups(s: &RedbStore) -> String {
        let c = s
            .programme_counts(None, "2030-01-01T00:00:00Z".parse().expect("ts"))
            .expect("counts");
        format!("{:?} {:?}", c.counts, c.names)
    }

    pub(in super::super) fn rows_of(db: &Database) -> Vec<IndexRow> {
        let r = db.begin_read().expect("read");
        let t = r.open_table(EVENT_INDEX).expect("index");
        t.iter()
            .expect("iter")
            .map(|row| {
                let (k, _) = row.expect("row");
                let (key, at, g, s) = index_row_of(k.value()).expect("an index row's key");
                (key.to_owned(), at, g.to_owned(), s)
            })
            .collect()
    }

    /// Writes `rows` as tuples, as the store's own table and the index file's before
    /// `event_index_v2` kept them.
    fn insert_tuples(tx: &redb::WriteTransaction, rows: &[IndexRow]) {
        let mut t = tx.open_table(EVENT_INDEX_V1).expect("old table");
        for (k, at, g, s) in rows {
            t.insert((k.as_str(), *at, g.as_str(), *s), ())
                .expect("row");
        }
    }

    /// Run in a child process (the test binary again): ingests a batch and searches (the
    /// index's first commit waits for the disk), ingests 39 more at once and searches
    /// again (that commit does not), then aborts without unwinding, as a crash or SIGKILL
    /// ends a process.
    fn crash_after_ingest(path: &std::path::Path) -> ! {
        let s = RedbStore::open(path).expect("open");
        let g = GateId::parse("G1").expect("gate");
        for (i, part) in traffic("G1", 200).chunks(10).enumerate() {
            deliver(&s, &g, part);
            if i == 0 {
                assert_eq!(searches(&s).len(), 20);
            }
        }
        println!("INGESTED {}", searches(&s).len());
        println!("ROLLUPS {}", roll_ups(&s));
        std::process::abort();
    }

    #[test]
    fn a_process_that_dies_after_its_ingests_leaves_every_event_found_after_open() {
        const VAR: &str = "AEOGATE_TEST_INDEX_CRASH_STORE";
        if let Some(p) = std::env::var_os(VAR) {
            crash_after_ingest(std::path::Path::new(&p));
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.redb");
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "store::redb_store::index_file::tests::a_process_that_dies_after_its_ingests_leaves_every_event_found_after_open",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(VAR, &path)
            .output()
            .expect("child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "the child aborts: {stdout}");
        assert!(stdout.contains("INGESTED 800"), "{stdout}");
        let rolled = stdout
            .lines()
            .find_map(|l| l.strip_prefix("ROLLUPS "))
            .expect("the child's roll-ups")
            .to_owned();
        assert!(rolled.contains("FAST"), "{rolled}");
        let (behind, pending) = {
            let db = Database::open(&path).expect("store");
            let index = Database::open(path_for(&path)).expect("index");
            let behind = super::applied(&index).expect("applied");
            (
                behind,
                index_pending::after(&db, behind).expect("pending").len(),
            )
        };
        assert!(
            pending > 0,
            "the index lost its last groups with the process (applied {behind}): the case \
             this test is about"
        );
        let s = RedbStore::open(&path).expect("reopen");
        assert_eq!(
            searches(&s).len(),
            800,
            "every event is found after the open"
        );
        assert_eq!(
            roll_ups(&s),
            rolled,
            "the roll-ups count every acknowledged batch once"
        );
    }

    #[test]
    fn a_store_from_before_the_index_file_has_its_rows_moved_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, found, all) = filled_rows(&dir);
        // The single-file layout: the index rows in the store's own table, no index file.
        {
            let db = Database::open(&path).expect("store");
            let tx = db.begin_write().expect("write");
            insert_tuples(&tx, &all);
            tx.commit().expect("commit");
        }
        std::fs::remove_file(path_for(&path)).expect("remove index file");
        let s = RedbStore::open(&path).expect("open moves the rows");
        assert_eq!(searches(&s), found);
        drop(s);
        assert!(
            !has_table(&Database::open(&path).expect("store"), EVENT_INDEX_V1).expect("read"),
            "the store's old table is gone"
        );
        assert_eq!(
            rows_of(&Database::open(path_for(&path)).expect("index")),
            all
        );
        let s = RedbStore::open(&path).expect("reopen");
        assert_eq!(searches(&s), found, "a second open changes nothing");
    }

    #[test]
    fn an_index_file_keeping_its_rows_as_tuples_has_them_rewritten_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, found, all) = filled_rows(&dir);
        {
            let index = Database::open(path_for(&path)).expect("index");
            let tx = index.begin_write().expect("write");
            tx.delete_table(EVENT_INDEX).expect("delete");
            insert_tuples(&tx, &all);
            tx.commit().expect("commit");
        }
        let s = RedbStore::open(&path).expect("open rewrites the keys");
        assert_eq!(searches(&s), found);
        drop(s);
        let index = Database::open(path_for(&path)).expect("index");
        assert_eq!(rows_of(&index), all);
        assert!(
            !has_table(&index, EVENT_INDEX_V1).expect("read"),
            "the tuples' table is gone"
        );
    }

    /// Waits (at most 10 s) until the index's writer has taken group `group` in.
    fn taken(s: &RedbStore, group: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while s.files.indexer.shared.lock().taken < group {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer takes group {group} in"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn groups_commit_together_in_the_index_and_a_search_commits_them_at_once() {
        use std::time::Duration;
        let dir = tempfile::tempdir().expect("tempdir");
        let g = GateId::parse("G1").expect("gate");
        let deliver = |s: &RedbStore, part| deliver(s, &g, part);
        let entries = traffic("G1", 50);
        let chunks: Vec<_> = entries.chunks(20).collect();
        // The same traffic in a store with the shipped interval: what staff must see.
        let plain = RedbStore::open(&dir.path().join("plain.redb")).expect("open");
        for part in &chunks {
            deliver(&plain, part);
        }
        let s = RedbStore::open_with(&dir.path().join("c.redb"), Duration::from_secs(3_600))
            .expect("open");
        for part in &chunks[..3] {
            deliver(&s, part);
        }
        taken(&s, 3);
        {
            let st = s.files.indexer.shared.lock();
            assert_eq!(
                (st.committed, st.applied),
                (3, 0),
                "taken in, not committed"
            );
        }
        assert_eq!(super::applied(&s.files.index).expect("applied"), 0);
        assert!(rows_of(&s.files.index).is_empty(), "no row visible yet");
        let all = |s: &RedbStore| searches(s).iter().filter(|(c, _)| c == "all").count();
        assert_eq!(all(&s), 60, "a search commits what the store has");
        assert_eq!(
            super::applied(&s.files.index).expect("applied"),
            3,
            "three groups, one commit"
        );
        deliver(&s, chunks[3]);
        taken(&s, 4);
        assert_eq!(super::applied(&s.files.index).expect("applied"), 3);
        // A group the store abandons (its number then goes to the next) leaves nothing in
        // the index, and takes nothing of the group before it.
        s.files.indexer.batch(super::ForIndex {
            gate: "G1".into(),
            rows: vec![("t".into(), 0, "G1".into(), 999)],
            ..super::ForIndex::default()
        });
        s.files.indexer.done(5, false);
        deliver(&s, chunks[4]);
        assert_eq!(all(&s), 100);
        assert_eq!(all(&plain), 100);
        assert_eq!(super::applied(&s.files.index).expect("applied"), 5);
        assert_eq!(rows_of(&s.files.index), rows_of(&plain.files.index));
        assert_eq!(roll_ups(&s), roll_ups(&plain), "every count once");
        assert!(
            !s.files.indexer.shared.lock().behind,
            "no catch-up was needed"
        );
    }

    #[test]
    fn the_writer_waits_while_the_index_is_too_far_behind_and_not_while_it_catches_up() {
        use std::sync::Arc;
        use std::time::{Duration, Instant};

        use super::{Indexer, MAX_BEHIND, SEARCH_WAIT};
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Arc::new(Database::create(dir.path().join("s.redb")).expect("store"));
        let index = Arc::new(Database::create(dir.path().join("i.redb")).expect("index"));
        let ix = Indexer::start(db, index, 0, super::COMMIT_EVERY).expect("start");
        let t0 = Instant::now();
        ix.keep_up(MAX_BEHIND);
        assert!(t0.elapsed() < Duration::from_secs(1), "within the bound");
        // Too far behind: the writer goes on once the index has applied enough.
        let shared = Arc::clone(&ix.shared);
        let applier = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            shared.lock().taken = 40;
            shared.changed.notify_all();
        });
        let t0 = Instant::now();
        ix.keep_up(50);
        let waited = t0.elapsed();
        applier.join().expect("applier");
        assert!(
            waited >= Duration::from_millis(250) && waited < SEARCH_WAIT,
            "{waited:?}"
        );
        // Catching up from the store's pending groups, which the writer's next group starts:
        // no wait.
        ix.shared.lock().behind = true;
        let t0 = Instant::now();
        ix.keep_up(1_000);
        assert!(t0.elapsed() < Duration::from_secs(1));
        ix.stop();
    }

    #[test]
    fn a_store_with_events_and_no_index_file_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.redb");
        filled(&path);
        std::fs::remove_file(path_for(&path)).expect("remove index file");
        let err = RedbStore::open(&path).expect_err("no index file");
        assert!(err.to_string().contains("c.index.redb"), "{err}");
        assert!(
            !path_for(&path).exists(),
            "no empty index file is left to be taken for the real one"
        );
        // A new store makes its index file.
        let fresh = dir.path().join("new.redb");
        RedbStore::open(&fresh).expect("new store");
        assert!(path_for(&fresh).exists());
    }
}

/// What the store's writer tells the indexer thread.
enum Msg {
    /// One batch's rows and roll-up, for the group's transaction.
    Batch(ForIndex),
    /// The group's store transaction committed (`true`) or was abandoned (`false`).
    Done(u64, bool),
    /// Apply the store's pending groups now (a search found the index behind).
    CatchUp,
    /// Commit what the store has committed as soon as it can (a search waits for it).
    Flush,
    Stop,
}

#[derive(Debug, Default)]
struct State {
    /// The store's last committed group.
    committed: u64,
    /// The last group the index's writer has taken into its open transaction (or
    /// applied).
    taken: u64,
    /// The index's last applied group (visible to searches).
    applied: u64,
    /// The index's last group on disk: the store's pending groups up to it can go.
    durable: u64,
    /// An index commit failed: the index is behind until a catch-up succeeds.
    behind: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for a change of the state until `deadline`; `None` once it has passed.
    fn wait_changed<'a>(
        &self,
        st: std::sync::MutexGuard<'a, State>,
        deadline: std::time::Instant,
    ) -> Option<std::sync::MutexGuard<'a, State>> {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return None;
        }
        Some(
            self.changed
                .wait_timeout(st, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0,
        )
    }
}

/// The index file's writer: a thread that writes each group's rows once the store's
/// writer has committed the group, into a transaction it keeps open across groups and
/// commits once it has been open [`COMMIT_EVERY`] or when a search waits. The store's
/// writer answers the group's agents after its own
/// commit; a search waits until the index has applied every group the store had
/// committed when the search began ([`Indexer::wait`]).
#[derive(Debug)]
pub(super) struct Indexer {
    send: Mutex<mpsc::Sender<Msg>>,
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Batch(b) => write!(f, "Batch({} rows)", b.rows.len()),
            Msg::Done(g, ok) => write!(f, "Done({g}, {ok})"),
            Msg::CatchUp => f.write_str("CatchUp"),
            Msg::Flush => f.write_str("Flush"),
            Msg::Stop => f.write_str("Stop"),
        }
    }
}

/// Most groups the index may be behind the store's writer before the writer waits
/// ([`Indexer::keep_up`]).
pub(super) const MAX_BEHIND: u64 = 16;

/// Longest a search waits for the index to apply what the store has committed.
pub(super) const SEARCH_WAIT: Duration = Duration::from_secs(5);

impl Indexer {
    /// Starts the indexer of `index` beside the store `db`, both holding group `groups`,
    /// its transaction committing after `commit_every` ([`COMMIT_EVERY`]).
    ///
    /// # Errors
    /// The thread cannot be started.
    pub(super) fn start(
        db: Arc<Database>,
        index: Arc<Database>,
        groups: u64,
        commit_every: Duration,
    ) -> Result<Self, StoreError> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                committed: groups,
                taken: groups,
                applied: groups,
                durable: groups,
                behind: false,
            }),
            changed: Condvar::new(),
        });
        let (send, recv) = mpsc::channel();
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("event-index".into())
            .spawn(move || run(&db, &index, &s, &recv, commit_every))
            .map_err(|e| StoreError::Backend(format!("starting the event index writer: {e}")))?;
        Ok(Self {
            send: Mutex::new(send),
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    fn post(&self, m: Msg) {
        let s = self
            .send
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A stopped thread takes nothing more; what it missed stays pending in the store.
        let _ = s.send(m);
    }

    /// A batch's rows and roll-up for the group being stored.
    pub(super) fn batch(&self, batch: ForIndex) {
        self.post(Msg::Batch(batch));
    }

    /// The group's store transaction committed (or not).
    pub(super) fn done(&self, group: u64, stored: bool) {
        // Posted first: a search that sees the group committed and asks for a commit
        // ([`Indexer::wait`]) asks after the writer has the group.
        self.post(Msg::Done(group, stored));
        if stored {
            self.shared.lock().committed = group;
        }
    }

    /// Before the store's writer begins group `group`: waits while the index is more than
    /// [`MAX_BEHIND`] groups behind it, so the batches handed over and not yet applied
    /// stay bounded in memory. Not while the index is catching up from the store's
    /// pending groups (a group's end starts that), and never longer than [`SEARCH_WAIT`].
    pub(super) fn keep_up(&self, group: u64) {
        let deadline = std::time::Instant::now() + SEARCH_WAIT;
        let mut st = self.shared.lock();
        while !st.behind && st.taken.saturating_add(MAX_BEHIND) < group {
            match self.shared.wait_changed(st, deadline) {
                Some(next) => st = next,
                None => return,
            }
        }
    }

    /// The last group the index holds on disk.
    pub(super) fn durable(&self) -> u64 {
        self.shared.lock().durable
    }

    /// Waits until the index has applied every group the store had committed when called.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when it has not within [`SEARCH_WAIT`].
    pub(super) fn wait(&self) -> Result<(), StoreError> {
        let deadline = std::time::Instant::now() + SEARCH_WAIT;
        let mut st = self.shared.lock();
        let want = st.committed;
        let (mut asked, mut flushed) = (false, false);
        while st.applied < want {
            if st.behind && !asked {
                asked = true;
                drop(st);
                self.post(Msg::CatchUp);
                st = self.shared.lock();
                continue;
            }
            if !st.behind && !flushed {
                flushed = true;
                drop(st);
                self.post(Msg::Flush);
                st = self.shared.lock();
                continue;
            }
            let applied = st.applied;
            st = self.shared.wait_changed(st, deadline).ok_or_else(|| {
                StoreError::Unavailable(format!(
                    "the event index is behind the store (group {applied} of {want}); it \
                     catches up from the store's pending groups"
                ))
            })?;
        }
        Ok(())
    }

    /// Stops the thread once it has handled everything sent before.
    pub(super) fn stop(&self) {
        self.post(Msg::Stop);
        let t = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(t) = t {
            let _ = t.join();
        }
    }
}

/// The index file's write transaction while it is open, across the store's groups: it
/// holds only groups the store has committed, so it can commit at any time.
struct Open {
    tx: redb::WriteTransaction,
    began: Instant,
    /// The last group in `tx`.
    group: u64,
}

/// The index file's writer thread's state.
struct Writer<'a> {
    db: &'a Database,
    index: &'a Database,
    shared: &'a Shared,
    commit_every: Duration,
    /// The batches of the group the store is storing, until it commits or abandons it.
    storing: Vec<ForIndex>,
    open: Option<Open>,
    /// The roll-ups of the groups in `open`, written when it commits.
    fold: GroupRollup,
    durable_at: Option<Instant>,
}

impl Writer<'_> {
    fn batch(&mut self, b: ForIndex) {
        if !self.shared.lock().behind {
            self.storing.push(b);
        }
    }

    /// The store committed `group`: its batches go into the open transaction, which
    /// commits once it has been open its interval ([`COMMIT_EVERY`]).
    fn done(&mut self, group: u64) {
        let batches = std::mem::take(&mut self.storing);
        if self.shared.lock().behind {
            self.abandon();
            caught_up(self.db, self.index, self.shared, &mut self.durable_at);
            return;
        }
        if let Err(e) = self.take_in(group, batches) {
            self.abandon();
            fell_behind(self.shared, &e);
            return;
        }
        self.shared.lock().taken = group;
        self.shared.changed.notify_all();
        if self
            .open
            .as_ref()
            .is_some_and(|o| o.began.elapsed() >= self.commit_every)
        {
            self.commit();
        }
    }

    fn take_in(&mut self, group: u64, batches: Vec<ForIndex>) -> Result<(), StoreError> {
        let o = match self.open.take() {
            Some(o) => o,
            None => Open {
                tx: self.index.begin_write()?,
                began: Instant::now(),
                group,
            },
        };
        let o = self.open.insert(o);
        o.group = group;
        for mut b in batches {
            // In key order, each insert finds its leaf where the one before left off.
            b.rows.sort_unstable();
            insert_rows(&o.tx, &b.rows)?;
            if let Some(batch) = b.rollup {
                self.fold.add(&o.tx, &b.gate, batch)?;
            }
        }
        Ok(())
    }

    /// Drops the open transaction and the roll-ups in it (the store keeps its groups
    /// pending, from which they are applied again).
    fn abandon(&mut self) {
        self.fold = GroupRollup::default();
        if let Some(o) = self.open.take() {
            let _ = o.tx.abort();
        }
    }

    /// Commits the open transaction.
    fn commit(&mut self) {
        let Some(o) = self.open.take() else {
            return;
        };
        let fold = std::mem::take(&mut self.fold);
        let durable = self
            .durable_at
            .is_none_or(|at| at.elapsed() >= DURABLE_EVERY);
        let (mut tx, group) = (o.tx, o.group);
        let r = (|| {
            if !durable {
                tx.set_durability(redb::Durability::None)
                    .map_err(|e| StoreError::Backend(e.to_string()))?;
            }
            fold.write(&tx)?;
            set_applied(&tx, group)?;
            tx.commit()?;
            Ok(())
        })();
        match r {
            Ok(()) => {
                let mut st = self.shared.lock();
                st.applied = group;
                if durable {
                    st.durable = group;
                    self.durable_at = Some(Instant::now());
                }
                drop(st);
                self.shared.changed.notify_all();
            }
            Err(e) => fell_behind(self.shared, &e),
        }
    }

    /// How long the thread may wait for the next message before the open transaction is
    /// due; without end when none is open.
    fn patience(&self) -> Option<Duration> {
        let o = self.open.as_ref()?;
        Some(self.commit_every.saturating_sub(o.began.elapsed()))
    }
}

fn run(
    db: &Database,
    index: &Database,
    shared: &Shared,
    recv: &mpsc::Receiver<Msg>,
    commit_every: Duration,
) {
    let mut w = Writer {
        db,
        index,
        shared,
        commit_every,
        storing: Vec::new(),
        open: None,
        fold: GroupRollup::default(),
        durable_at: None,
    };
    loop {
        let m = match w.patience() {
            Some(left) => match recv.recv_timeout(left) {
                Ok(m) => m,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    w.commit();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            },
            None => match recv.recv() {
                Ok(m) => m,
                Err(_) => break,
            },
        };
        match m {
            Msg::Batch(b) => w.batch(b),
            // An abandoned group's batches go; nothing of them reached the index.
            Msg::Done(_, false) => w.storing.clear(),
            Msg::Done(group, true) => w.done(group),
            Msg::Flush => w.commit(),
            Msg::CatchUp => {
                if shared.lock().behind && w.open.is_none() {
                    caught_up(db, index, shared, &mut w.durable_at);
                }
            }
            Msg::Stop => break,
        }
    }
    // What the store committed goes in; a group it had not finished stays pending there.
    w.commit();
}

fn fell_behind(shared: &Shared, e: &StoreError) {
    tracing::error!(error = %e, "the event index's write failed; it catches up from the store's pending groups");
    shared.lock().behind = true;
    shared.changed.notify_all();
}

fn caught_up(
    db: &Database,
    index: &Database,
    shared: &Shared,
    durable_at: &mut Option<std::time::Instant>,
) {
    match catch_up(db, index) {
        Ok(g) => {
            let mut st = shared.lock();
            st.applied = st.applied.max(g);
            st.taken = st.taken.max(st.applied);
            st.durable = st.applied;
            st.behind = false;
            *durable_at = Some(std::time::Instant::now());
            drop(st);
            shared.changed.notify_all();
        }
        Err(e) => {
            tracing::error!(error = %e, "the event index could not catch up; it tries again with the next group");
        }
    }
}
