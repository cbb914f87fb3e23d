//! Chunked snapshots as central serves them (docs/delivery.md, "Chunked snapshot").
//!
//! A manifest request reads the port's snapshot once and, as the store hands it over
//! change by change, cuts it into chunks of [`CHUNK_RECORDS`] changes, writes each
//! chunk's JSON to a file in a folder of its own and hashes it (one chunk is held at a
//! time, not the registry); the signed manifest names the chunks' SHA-256. The chunks are
//! served from those files, by manifest id, for [`KEEP`] after the manifest was made, so
//! an agent reads the registry as it was at the manifest's `last_seq` however the registry
//! moves on meanwhile. At most [`MAX_KEPT`] snapshots are kept; the oldest goes first.
//! A snapshot is kept by the central instance that made it (with several instances on
//! PostgreSQL, a chunk asked of another instance is `404` and the agent starts again).
//!
//! Each running central keeps its chunk folders in a folder of its own,
//! `aeogate-snapshots-<pid>-<random>`, under the configured `snapshot_dir` (the system's
//! temporary folder by default), and holds an exclusive lock on that folder's `.lock`
//! file for as long as it runs. The operating system releases the lock when the process
//! ends however it ends, so at start central removes every sibling folder whose lock it
//! can take: what a central killed with chunks on disk left behind (a 1M-record port's
//! snapshot is about 400 MB). A folder whose lock is held belongs to a running instance
//! and is left alone.

use std::collections::VecDeque;
use std::fs::{File, TryLockError};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use protocol::schema::{SCHEMA_VERSION, SequencedChange, SnapshotChunk, SnapshotManifest};
use sha2::{Digest as _, Sha256};

use crate::store::{SnapshotHead, SnapshotVisit};
use crate::store_error::StoreError;

/// Changes per chunk: about 4 MB of JSON, what an agent holds at most while bootstrapping.
pub const CHUNK_RECORDS: u32 = 10_000;
/// How long a snapshot's chunks are served after its manifest was made: long enough for
/// a gate on a slow link to fetch a million records and resume once or twice.
pub const KEEP: Duration = Duration::from_secs(30 * 60);
/// Most snapshots kept at once (each is about as large as the port's registry as JSON).
pub const MAX_KEPT: usize = 8;
/// The name every running central's own folder starts with.
const OWN_PREFIX: &str = "aeogate-snapshots-";
/// The lock file inside that folder.
const LOCK_FILE: &str = ".lock";
/// A folder is only judged after it has been left unchanged this long, so one that a
/// central is making at this moment (its lock not yet taken) is never removed.
const SETTLE: Duration = Duration::from_secs(60);

struct Kept {
    id: String,
    port: String,
    made: Instant,
    chunks: u32,
    dir: tempfile::TempDir,
}

/// The snapshots whose chunks central serves.
pub struct Snapshots {
    /// Where this central's own folder is made (`snapshot_dir`).
    parent: PathBuf,
    /// Declared before `own`: the chunk folders go before the folder holding them.
    kept: Mutex<VecDeque<Kept>>,
    /// Made with the first snapshot, so commands that never serve one write nothing.
    own: Mutex<Option<Own>>,
}

/// This instance's own folder and the lock it holds on it while it runs.
struct Own {
    /// Declared before `_lock` so the folder is removed while the lock is still held.
    dir: tempfile::TempDir,
    _lock: File,
}

impl std::fmt::Debug for Snapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.kept.lock().map(|k| k.len()).unwrap_or(0);
        f.debug_struct("Snapshots")
            .field("parent", &self.parent)
            .field("kept", &n)
            .finish_non_exhaustive()
    }
}

/// Why a chunked snapshot could not be made.
#[derive(Debug, thiserror::Error)]
pub enum MakeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("snapshot chunk files: {0}")]
    Io(#[from] std::io::Error),
}

/// Cuts changes into chunk files as they come, hashing each.
struct ChunkWriter<'a> {
    dir: &'a Path,
    chunk_records: usize,
    part: Vec<SequencedChange>,
    hashes: Vec<String>,
    records: u64,
}

impl ChunkWriter<'_> {
    fn push(&mut self, c: SequencedChange) -> std::io::Result<()> {
        self.part.push(c);
        self.records += 1;
        if self.part.len() >= self.chunk_records {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the changes gathered so far as the next chunk (nothing when there are none).
    fn flush(&mut self) -> std::io::Result<()> {
        if self.part.is_empty() {
            return Ok(());
        }
        let index = u32::try_from(self.hashes.len()).map_err(std::io::Error::other)?;
        let bytes = serde_json::to_vec(&SnapshotChunk {
            v: SCHEMA_VERSION,
            index,
            changes: std::mem::take(&mut self.part),
        })?;
        self.hashes.push(hex::encode(Sha256::digest(&bytes)));
        let mut f = File::create(self.dir.join(index.to_string()))?;
        f.write_all(&bytes)?;
        Ok(())
    }
}

/// What [`Snapshots::clear_dead`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cleared {
    /// Folders of centrals that are no longer running, removed.
    pub removed: Vec<PathBuf>,
    /// Folders of running centrals (their lock held), or changed too recently to judge,
    /// left alone.
    pub in_use: usize,
}

impl Snapshots {
    /// Snapshots whose files go under `parent` (nothing is written until the first).
    #[must_use]
    pub fn new(parent: PathBuf) -> Self {
        Self {
            parent,
            kept: Mutex::new(VecDeque::new()),
            own: Mutex::new(None),
        }
    }

    /// Removes the folders under the parent that centrals no longer running left behind
    /// (see the module documentation); `central serve` does this when it starts.
    ///
    /// # Errors
    /// When the parent cannot be created or listed, or a dead folder cannot be removed.
    pub fn clear_dead(&self) -> std::io::Result<Cleared> {
        std::fs::create_dir_all(&self.parent)?;
        clear_dead(&self.parent)
    }

    /// This instance's own folder, made and locked now if it is not yet.
    ///
    /// # Errors
    /// When the parent, the folder or its lock file cannot be made.
    pub fn folder(&self) -> std::io::Result<PathBuf> {
        let mut own = self
            .own
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?;
        if let Some(o) = own.as_ref() {
            return Ok(o.dir.path().to_path_buf());
        }
        std::fs::create_dir_all(&self.parent)?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{OWN_PREFIX}{}-", std::process::id()))
            .tempdir_in(&self.parent)?;
        let lock = File::create(dir.path().join(LOCK_FILE))?;
        lock.try_lock().map_err(|e| match e {
            TryLockError::Error(e) => e,
            TryLockError::WouldBlock => std::io::Error::other("own snapshot folder is locked"),
        })?;
        let path = dir.path().to_path_buf();
        *own = Some(Own { dir, _lock: lock });
        Ok(path)
    }

    /// Writes the snapshot that `read` hands over (the port's, read in one consistent
    /// read by [`crate::store::Store::snapshot_each`]) into chunks of `chunk_records`
    /// changes as it comes, so only one chunk is held at a time, keeps them, and returns
    /// the manifest to sign.
    ///
    /// # Errors
    /// The read's error, or when the folder or a chunk file cannot be written.
    pub fn make(
        &self,
        port: &str,
        chunk_records: u32,
        read: impl FnOnce(&mut SnapshotVisit<'_>) -> Result<SnapshotHead, StoreError>,
    ) -> Result<SnapshotManifest, MakeError> {
        let chunk_records = chunk_records.max(1);
        let dir = tempfile::Builder::new()
            .prefix("snapshot-")
            .tempdir_in(self.folder()?)?;
        let mut w = ChunkWriter {
            dir: dir.path(),
            chunk_records: chunk_records as usize,
            part: Vec::new(),
            hashes: Vec::new(),
            records: 0,
        };
        let mut failed: Option<std::io::Error> = None;
        let head = read(&mut |c| {
            w.push(c).map_err(|e| {
                let why = format!("writing a snapshot chunk: {e}");
                failed = Some(e);
                StoreError::Backend(why)
            })
        });
        if let Some(e) = failed {
            return Err(MakeError::Io(e));
        }
        let head = head?;
        w.flush()?;
        let ChunkWriter {
            hashes, records, ..
        } = w;
        let id = hex::encode(rand::random::<[u8; 16]>());
        let manifest = SnapshotManifest {
            v: SCHEMA_VERSION,
            id: id.clone(),
            port: port.to_owned(),
            last_seq: head.last_seq,
            as_of: head.as_of,
            chunk_records,
            records,
            chunks: hashes,
        };
        let chunks = u32::try_from(manifest.chunks.len()).map_err(std::io::Error::other)?;
        let mut kept = self
            .kept
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?;
        Self::expire(&mut kept);
        while kept.len() >= MAX_KEPT {
            kept.pop_front();
        }
        kept.push_back(Kept {
            id,
            port: port.to_owned(),
            made: Instant::now(),
            chunks,
            dir,
        });
        Ok(manifest)
    }

    fn expire(kept: &mut VecDeque<Kept>) {
        kept.retain(|k| k.made.elapsed() < KEEP);
    }

    /// Chunk `index` of snapshot `id` for `port`: its bytes as hashed in the manifest, or
    /// `None` when this central does not keep that snapshot for that port (expired,
    /// dropped, never made) or it has no such chunk.
    ///
    /// # Errors
    /// When a kept chunk file cannot be read.
    pub fn chunk(&self, port: &str, id: &str, index: u32) -> std::io::Result<Option<Vec<u8>>> {
        let path = {
            let mut kept = self
                .kept
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?;
            Self::expire(&mut kept);
            match kept
                .iter()
                .find(|k| k.id == id && k.port == port && index < k.chunks)
            {
                Some(k) => k.dir.path().join(index.to_string()),
                None => return Ok(None),
            }
        };
        // Read outside the lock; a snapshot dropped meanwhile reads as not kept.
        match std::fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Removes the folders under `parent` left by centrals that no longer run: every
/// `aeogate-snapshots-*` folder unchanged for [`SETTLE`] whose `.lock` can be locked (or
/// that has none), and the
/// chunk folders of releases before the own folder (`aeogate-snapshot-*` directly under
/// `parent`) once they are older than [`KEEP`], when no central serves them any more.
fn clear_dead(parent: &Path) -> std::io::Result<Cleared> {
    let mut cleared = Cleared::default();
    for entry in std::fs::read_dir(parent)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = entry.path();
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let settled = |older_than: Duration| -> std::io::Result<bool> {
            Ok(entry
                .metadata()?
                .modified()
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age > older_than))
        };
        let dead = if name.starts_with(OWN_PREFIX) {
            settled(SETTLE)?
                && match File::open(path.join(LOCK_FILE)) {
                    Ok(f) => match f.try_lock() {
                        Ok(()) => true,
                        Err(TryLockError::WouldBlock) => false,
                        Err(TryLockError::Error(e)) => return Err(e),
                    },
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
                    Err(e) => return Err(e),
                }
        } else if name.starts_with("aeogate-snapshot-") {
            settled(KEEP)?
        } else {
            continue;
        };
        if dead {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => cleared.removed.push(path),
                // Another central starting at the same moment removed it first.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        } else if name.starts_with(OWN_PREFIX) {
            cleared.in_use += 1;
        }
    }
    Ok(cleared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;
    use protocol::schema::Change;

    /// Dates `dir` back beyond [`SETTLE`], as if it had been left unchanged that long.
    fn age(dir: &Path) {
        let past = std::time::SystemTime::now() - SETTLE - Duration::from_secs(1);
        File::open(dir)
            .and_then(|f| f.set_modified(past))
            .expect("set the folder's time");
    }

    fn snapshots(parent: &Path) -> Snapshots {
        Snapshots::new(parent.to_path_buf())
    }

    /// A read handing over `n` changes, as a store does.
    fn from(n: u64) -> impl FnOnce(&mut SnapshotVisit<'_>) -> Result<SnapshotHead, StoreError> {
        move |visit| {
            for c in changes(n) {
                visit(c)?;
            }
            Ok(SnapshotHead {
                last_seq: n,
                as_of: Timestamp::now(),
            })
        }
    }

    fn changes(n: u64) -> Vec<SequencedChange> {
        (1..=n)
            .map(|seq| SequencedChange {
                seq,
                change: Change::RemoveConsignment {
                    id: format!("C{seq}"),
                },
            })
            .collect()
    }

    #[test]
    fn chunks_hash_to_the_manifest_and_serve_only_for_their_port() {
        let parent = tempfile::tempdir().expect("tmp");
        let s = snapshots(parent.path());
        let m = s.make("PORT-A", 3, from(7)).expect("make");
        assert_eq!((m.records, m.chunks.len()), (7, 3));
        let mut seen = 0;
        for (k, h) in m.chunks.iter().enumerate() {
            let k = u32::try_from(k).expect("k");
            let bytes = s.chunk("PORT-A", &m.id, k).expect("read").expect("kept");
            assert_eq!(&hex::encode(Sha256::digest(&bytes)), h);
            let c: SnapshotChunk = serde_json::from_slice(&bytes).expect("chunk");
            assert_eq!(c.index, k);
            seen += c.changes.len();
        }
        assert_eq!(seen, 7);
        assert_eq!(s.chunk("PORT-B", &m.id, 0).expect("read"), None);
        assert_eq!(s.chunk("PORT-A", &m.id, 3).expect("read"), None);
        assert_eq!(s.chunk("PORT-A", "other", 0).expect("read"), None);
    }

    #[test]
    fn keeps_at_most_max_kept_snapshots_dropping_the_oldest() {
        let parent = tempfile::tempdir().expect("tmp");
        let s = snapshots(parent.path());
        let first = s.make("PORT-A", 10, from(1)).expect("make");
        for _ in 0..MAX_KEPT {
            s.make("PORT-A", 10, from(1)).expect("make");
        }
        assert_eq!(s.chunk("PORT-A", &first.id, 0).expect("read"), None);
    }

    #[test]
    fn a_dead_centrals_folder_is_removed_and_a_running_ones_is_kept() {
        let parent = tempfile::tempdir().expect("tmp");
        let running = snapshots(parent.path());
        let m = running.make("PORT-A", 2, from(3)).expect("make");
        // What a central killed with chunks on disk leaves: its folder, chunk files and
        // an unlocked `.lock` (the kernel released it with the process).
        let dead = parent.path().join(format!("{OWN_PREFIX}999999-x"));
        std::fs::create_dir_all(dead.join("snapshot-1")).expect("dead folder");
        std::fs::write(dead.join("snapshot-1").join("0"), b"[]").expect("chunk");
        File::create(dead.join(LOCK_FILE)).expect("lock file");
        age(&dead);
        // A folder made a moment ago, its lock not taken yet, is left alone.
        let young = parent.path().join(format!("{OWN_PREFIX}999998-y"));
        std::fs::create_dir_all(&young).expect("young folder");
        // A folder of another program with a name of its own is not central's.
        std::fs::create_dir_all(parent.path().join("other")).expect("other");

        let next = snapshots(parent.path());
        let cleared = next.clear_dead().expect("clear");
        assert_eq!(cleared.removed, vec![dead.clone()]);
        assert_eq!(
            cleared.in_use, 2,
            "the running central's folder is locked; the young one not yet judged"
        );
        assert!(!dead.exists());
        assert!(young.exists());
        assert!(parent.path().join("other").exists());
        assert!(
            running.chunk("PORT-A", &m.id, 0).expect("read").is_some(),
            "the running central still serves its chunks"
        );
        assert_eq!(
            std::fs::read_dir(parent.path()).expect("list").count(),
            3,
            "nothing is written before the first snapshot"
        );
        assert_ne!(next.folder().expect("own"), running.folder().expect("own"));

        // Dropped (a clean stop), a central removes its own folder.
        let own = running.folder().expect("own");
        drop(running);
        assert!(!own.exists());
    }

    #[test]
    fn a_folder_whose_owner_was_killed_is_cleared_by_the_next_start() {
        // A child process opens the snapshots in `parent`, makes one and is killed with
        // SIGKILL: no destructor runs, its lock goes with the process.
        let parent = tempfile::tempdir().expect("tmp");
        let exe = std::env::current_exe().expect("exe");
        let mut child = std::process::Command::new(exe)
            .args([
                "--exact",
                "snapshots::tests::hold_snapshots_until_killed",
                "--ignored",
                "--nocapture",
            ])
            .env("AEOGATE_TEST_SNAPSHOT_PARENT", parent.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let ready = parent.path().join("ready");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(ready.exists(), "the child made its snapshot");
        // While it runs, its folder is in use.
        let a = snapshots(parent.path());
        let own_a = a.folder().expect("own");
        let cleared = a.clear_dead().expect("clear");
        assert_eq!((cleared.removed.len(), cleared.in_use), (0, 2));
        child.kill().expect("kill");
        child.wait().expect("wait");
        for e in std::fs::read_dir(parent.path()).expect("list") {
            let e = e.expect("entry");
            if e.path() != own_a && e.file_type().expect("type").is_dir() {
                age(&e.path());
            }
        }
        let cleared = snapshots(parent.path()).clear_dead().expect("clear");
        assert_eq!(cleared.removed.len(), 1, "{cleared:?}");
        assert_eq!(cleared.in_use, 1, "only `a`'s, still running");
    }

    /// Run by the test above in a child process; ignored on its own.
    #[test]
    #[ignore = "a child process of a_folder_whose_owner_was_killed_is_cleared_by_the_next_start"]
    fn hold_snapshots_until_killed() {
        let Some(parent) = std::env::var_os("AEOGATE_TEST_SNAPSHOT_PARENT") else {
            return;
        };
        let parent = PathBuf::from(parent);
        let s = Snapshots::new(parent.clone());
        s.make("PORT-A", 2, from(3)).expect("make");
        std::fs::write(parent.join("ready"), b"").expect("ready");
        // Bounded: the parent kills this process within seconds; give up after 60 s.
        std::thread::sleep(Duration::from_secs(60));
    }
}
