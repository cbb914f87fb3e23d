//! The held-records file: records the journal could not take (a full disk), kept beside
//! the store so that a stop — or a crash — while the disk is full does not lose them.
//!
//! The file is reserved at start, while there is room: [`HELD_FILE_BYTES`] of zeros, so
//! that later writes overwrite blocks the file already owns and need no free space. It
//! holds two slots; each save goes to the slot the previous save did not use, so a save
//! torn by a crash leaves the previous one readable. A slot is
//!
//! ```text
//! magic "AEOHELD1" (8) | generation u64 LE | length u32 LE | SHA-256 (32) | JSON (length)
//! ```
//!
//! where the digest covers generation, length and JSON, and the JSON is the list of held
//! groups, oldest first. The valid slot with the higher generation is the current one; a
//! slot of zeros (never written) is empty.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use protocol::schema::EventBody;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Size of one slot.
const SLOT_BYTES: u64 = 2 << 20;
/// Size of the reserved file (two slots).
pub const HELD_FILE_BYTES: u64 = 2 * SLOT_BYTES;
const MAGIC: &[u8; 8] = b"AEOHELD1";
const HEADER: usize = 8 + 8 + 4 + 32;

/// One caller's records the journal refused, with the time they were to be journaled at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldGroup {
    pub at: Timestamp,
    pub bodies: Vec<EventBody>,
    /// The lane events (encoded as in the read log) these records account for: they leave
    /// the read log when the records are journaled, and at start, so that a restart never
    /// rebuilds a transaction for a truck whose record is held.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumed: Vec<Vec<u8>>,
}

/// Errors of the held-records file.
#[derive(Debug, thiserror::Error)]
pub enum HeldFileError {
    #[error("held-records file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The reserved file, open for saving.
#[derive(Debug)]
pub struct HeldFile {
    path: PathBuf,
    file: File,
    generation: u64,
}

impl HeldFile {
    /// Opens the file at `path`, creating and reserving it when it is missing or short;
    /// returns it with the groups it holds (oldest first; none when both slots are empty or
    /// damaged).
    ///
    /// # Errors
    /// When the file cannot be read, created or reserved (a disk already full at start).
    pub fn open(path: &Path) -> Result<(HeldFile, Vec<HeldGroup>), HeldFileError> {
        let io = |source| HeldFileError::Io {
            path: path.display().to_string(),
            source,
        };
        let (generation, groups) = match std::fs::read(path) {
            Ok(bytes) => current(&bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0, Vec::new()),
            Err(e) => return Err(io(e)),
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len < HELD_FILE_BYTES {
            // Zeros written (not a sparse length), so the blocks are the file's own.
            file.seek(SeekFrom::Start(len)).map_err(io)?;
            let chunk = vec![0u8; 64 << 10];
            let mut left = HELD_FILE_BYTES - len;
            while left > 0 {
                let n = left.min(chunk.len() as u64);
                file.write_all(&chunk[..usize::try_from(n).unwrap_or(chunk.len())])
                    .map_err(io)?;
                left -= n;
            }
            file.sync_all().map_err(io)?;
        }
        Ok((
            HeldFile {
                path: path.to_path_buf(),
                file,
                generation,
            },
            groups,
        ))
    }

    /// Reads the groups a file at `path` holds, without creating or reserving anything.
    #[must_use]
    pub fn read(path: &Path) -> Vec<HeldGroup> {
        let mut bytes = Vec::new();
        match File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)) {
            Ok(_) => current(&bytes).1,
            Err(_) => Vec::new(),
        }
    }

    /// Where the file is.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Saves `groups` (oldest first) durably in the other slot; returns how many were
    /// saved: the oldest that fit in a slot.
    ///
    /// # Errors
    /// When the write or its sync fails.
    pub fn save(&mut self, groups: &[HeldGroup]) -> Result<usize, HeldFileError> {
        let mut n = groups.len();
        let json = loop {
            let json = serde_json::to_vec(&groups[..n]).unwrap_or_else(|_| b"[]".to_vec());
            if json.len() + HEADER <= SLOT_BYTES as usize || n == 0 {
                break json;
            }
            // Too many for a slot: keep the oldest (they are journaled first).
            n = n * 3 / 4;
        };
        let generation = self.generation + 1;
        let len = u32::try_from(json.len()).unwrap_or(u32::MAX);
        let mut slot = Vec::with_capacity(HEADER + json.len());
        slot.extend_from_slice(MAGIC);
        slot.extend_from_slice(&generation.to_le_bytes());
        slot.extend_from_slice(&len.to_le_bytes());
        slot.extend_from_slice(&digest(generation, len, &json));
        slot.extend_from_slice(&json);
        let io = |source| HeldFileError::Io {
            path: self.path.display().to_string(),
            source,
        };
        self.file
            .seek(SeekFrom::Start((generation % 2) * SLOT_BYTES))
            .map_err(io)?;
        self.file.write_all(&slot).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.generation = generation;
        Ok(n)
    }
}

fn digest(generation: u64, len: u32, json: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(generation.to_le_bytes());
    h.update(len.to_le_bytes());
    h.update(json);
    h.finalize().into()
}

/// The current slot's generation and groups (0 and none when no slot is valid).
fn current(bytes: &[u8]) -> (u64, Vec<HeldGroup>) {
    let mut best: Option<(u64, Vec<HeldGroup>)> = None;
    for i in 0..2u64 {
        let start = usize::try_from(i * SLOT_BYTES).unwrap_or(usize::MAX);
        if let Some(slot) = bytes.get(start..)
            && let Some((generation, groups)) = parse_slot(slot)
            && best.as_ref().is_none_or(|(g, _)| generation > *g)
        {
            best = Some((generation, groups));
        }
    }
    best.unwrap_or_default()
}

fn parse_slot(slot: &[u8]) -> Option<(u64, Vec<HeldGroup>)> {
    if slot.get(..8)? != MAGIC {
        return None;
    }
    let generation = u64::from_le_bytes(slot.get(8..16)?.try_into().ok()?);
    let len = u32::from_le_bytes(slot.get(16..20)?.try_into().ok()?);
    let stored: [u8; 32] = slot.get(20..52)?.try_into().ok()?;
    let json = slot.get(HEADER..HEADER + usize::try_from(len).ok()?)?;
    if digest(generation, len, json) != stored {
        return None;
    }
    let groups = serde_json::from_slice(json).ok()?;
    Some((generation, groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(what: &str) -> HeldGroup {
        HeldGroup {
            at: Timestamp::UNIX_EPOCH,
            bodies: vec![EventBody::IntegrityAlert {
                what: what.into(),
                detail: String::new(),
            }],
            consumed: Vec::new(),
        }
    }

    #[test]
    fn a_saved_list_is_read_back_and_an_empty_save_clears_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.held");
        let (mut f, none) = HeldFile::open(&path).expect("reserve");
        assert!(none.is_empty());
        assert_eq!(
            std::fs::metadata(&path).expect("meta").len(),
            HELD_FILE_BYTES
        );
        let groups = vec![group("A"), group("B")];
        assert_eq!(f.save(&groups).expect("save"), 2);
        drop(f);
        let (mut f, back) = HeldFile::open(&path).expect("reopen");
        assert_eq!(back, groups);
        f.save(&[]).expect("clear");
        assert!(HeldFile::read(&path).is_empty());
    }

    #[test]
    fn a_torn_save_leaves_the_previous_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.held");
        let (mut f, _) = HeldFile::open(&path).expect("reserve");
        f.save(&[group("A")]).expect("first");
        f.save(&[group("A"), group("B")]).expect("second");
        drop(f);
        // Damage the newer slot (generation 2 lives in slot 0) inside its JSON.
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[HEADER + 3] ^= 0x55;
        std::fs::write(&path, &bytes).expect("write");
        assert_eq!(HeldFile::read(&path), vec![group("A")]);
    }
}
