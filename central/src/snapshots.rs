//! Chunked snapshots as central serves them (docs/delivery.md, "Chunked snapshot").
//!
//! A manifest request reads the port's snapshot once, cuts it into chunks of
//! [`CHUNK_RECORDS`] changes, writes each chunk's JSON to a file in a temporary folder of
//! its own and hashes it; the signed manifest names the chunks' SHA-256. The chunks are
//! served from those files, by manifest id, for [`KEEP`] after the manifest was made, so
//! an agent reads the registry as it was at the manifest's `last_seq` however the registry
//! moves on meanwhile. At most [`MAX_KEPT`] snapshots are kept; the oldest goes first.
//! A snapshot is kept by the central instance that made it (with several instances on
//! PostgreSQL, a chunk asked of another instance is `404` and the agent starts again).

use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use protocol::schema::{SCHEMA_VERSION, SequencedChange, SnapshotChunk, SnapshotManifest};
use sha2::{Digest as _, Sha256};

/// Changes per chunk: about 4 MB of JSON, what an agent holds at most while bootstrapping.
pub const CHUNK_RECORDS: u32 = 10_000;
/// How long a snapshot's chunks are served after its manifest was made: long enough for
/// a gate on a slow link to fetch a million records and resume once or twice.
pub const KEEP: Duration = Duration::from_secs(30 * 60);
/// Most snapshots kept at once (each is about as large as the port's registry as JSON).
pub const MAX_KEPT: usize = 8;

struct Kept {
    id: String,
    port: String,
    made: Instant,
    chunks: u32,
    dir: tempfile::TempDir,
}

/// The snapshots whose chunks central serves.
#[derive(Default)]
pub struct Snapshots {
    kept: Mutex<VecDeque<Kept>>,
}

impl std::fmt::Debug for Snapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.kept.lock().map(|k| k.len()).unwrap_or(0);
        f.debug_struct("Snapshots").field("kept", &n).finish()
    }
}

impl Snapshots {
    /// Cuts `changes` (the port's snapshot at `last_seq`, in a stable order) into chunks
    /// of `chunk_records`, keeps them, and returns the manifest to sign.
    ///
    /// # Errors
    /// When the temporary folder or a chunk file cannot be written.
    pub fn make(
        &self,
        port: &str,
        last_seq: u64,
        as_of: Timestamp,
        changes: Vec<SequencedChange>,
        chunk_records: u32,
    ) -> std::io::Result<SnapshotManifest> {
        let chunk_records = chunk_records.max(1);
        let dir = tempfile::Builder::new()
            .prefix("aeogate-snapshot-")
            .tempdir()?;
        let id = hex::encode(rand::random::<[u8; 16]>());
        let records = changes.len() as u64;
        let mut hashes = Vec::new();
        let mut rest = changes.into_iter();
        // Bounded: each turn takes up to `chunk_records` changes off a finite list.
        loop {
            let part: Vec<SequencedChange> = rest.by_ref().take(chunk_records as usize).collect();
            if part.is_empty() {
                break;
            }
            let index = u32::try_from(hashes.len()).map_err(std::io::Error::other)?;
            let bytes = serde_json::to_vec(&SnapshotChunk {
                v: SCHEMA_VERSION,
                index,
                changes: part,
            })?;
            hashes.push(hex::encode(Sha256::digest(&bytes)));
            let mut f = std::fs::File::create(dir.path().join(index.to_string()))?;
            f.write_all(&bytes)?;
        }
        let manifest = SnapshotManifest {
            v: SCHEMA_VERSION,
            id: id.clone(),
            port: port.to_owned(),
            last_seq,
            as_of,
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

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::schema::Change;

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
        let s = Snapshots::default();
        let m = s
            .make("PORT-A", 7, Timestamp::now(), changes(7), 3)
            .expect("make");
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
        let s = Snapshots::default();
        let first = s
            .make("PORT-A", 1, Timestamp::now(), changes(1), 10)
            .expect("make");
        for _ in 0..MAX_KEPT {
            s.make("PORT-A", 1, Timestamp::now(), changes(1), 10)
                .expect("make");
        }
        assert_eq!(s.chunk("PORT-A", &first.id, 0).expect("read"), None);
    }
}
