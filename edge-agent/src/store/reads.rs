//! The read log: a write-ahead of the lane events (reads and presence changes) a source
//! received, written before the source answers the device (the board's link ack, the
//! broker's PUBACK), so a crash between that answer and the journaled decision loses
//! nothing. `read_log_v1` maps a sequence number (ascending, in the order written) to the
//! event as JSON (`assembler::AssemblerEvent`; the bytes are the identity of an entry).
//!
//! An entry leaves the log in the journal's write transaction that records where its
//! event ended (the decided transaction, the orphan read), through
//! [`Store::append_groups_consuming`]: either both happen or neither, so a restart
//! replays exactly the events whose truck has no record yet, and never one whose truck
//! was already decided.

use redb::{Durability, ReadableDatabase, ReadableTable, TableDefinition, TableError};

use super::error::{JournalError, jdb};
use super::handle::Store;

pub(super) const READ_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("read_log_v1");

impl Store {
    /// Writes events (each already encoded) to the read log in one durable write
    /// transaction (group commit: one fsync for all of them); returns after the commit.
    ///
    /// # Errors
    /// [`JournalError`]; nothing is written then.
    pub fn log_reads(&self, events: &[Vec<u8>]) -> Result<(), JournalError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut w = self.inner.db.begin_write().map_err(jdb)?;
        w.set_durability(Durability::Immediate).map_err(jdb)?;
        {
            let mut t = w.open_table(READ_LOG).map_err(jdb)?;
            let mut next = t
                .last()
                .map_err(jdb)?
                .map_or(1, |(k, _)| k.value().saturating_add(1));
            for e in events {
                t.insert(next, e.as_slice()).map_err(jdb)?;
                next = next.saturating_add(1);
            }
        }
        w.commit().map_err(jdb)
    }

    /// Every logged event, oldest first, as `(seq, bytes)`.
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn logged_reads(&self) -> Result<Vec<(u64, Vec<u8>)>, JournalError> {
        let r = self.inner.db.begin_read().map_err(jdb)?;
        let t = match r.open_table(READ_LOG) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(jdb(e)),
        };
        let mut out = Vec::new();
        for item in t.iter().map_err(jdb)? {
            let (k, v) = item.map_err(jdb)?;
            out.push((k.value(), v.value().to_vec()));
        }
        Ok(out)
    }
}

/// Removes, inside `w`, one logged entry per event in `events` (the oldest entry with the
/// same bytes); an event with no entry (a source without a read log) removes nothing.
pub(super) fn consume_in(
    w: &redb::WriteTransaction,
    events: &[Vec<u8>],
) -> Result<(), JournalError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut t = w.open_table(READ_LOG).map_err(jdb)?;
    let mut wanted: std::collections::HashMap<&[u8], usize> = std::collections::HashMap::new();
    for e in events {
        *wanted.entry(e.as_slice()).or_default() += 1;
    }
    let mut remove = Vec::new();
    for item in t.iter().map_err(jdb)? {
        let (k, v) = item.map_err(jdb)?;
        if let Some(n) = wanted.get_mut(v.value())
            && *n > 0
        {
            *n -= 1;
            remove.push(k.value());
        }
    }
    for k in remove {
        t.remove(k).map_err(jdb)?;
    }
    Ok(())
}
