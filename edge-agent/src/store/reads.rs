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

use redb::{Durability, ReadableTable, TableDefinition, TableError};

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
        self.durably(events, log_in)
    }

    /// Removes one logged entry per event in `events` (as [`Store::append_groups_consuming`]
    /// does), in one durable write transaction: used at start for the events of records
    /// held in the held-records file, which account for them.
    ///
    /// # Errors
    /// [`JournalError`]; nothing is removed then.
    pub fn unlog_reads(&self, events: &[Vec<u8>]) -> Result<(), JournalError> {
        self.durably(events, consume_in)
    }

    /// Runs `change` over `events` (when there are any) in one durable write transaction.
    fn durably(
        &self,
        events: &[Vec<u8>],
        change: fn(&redb::WriteTransaction, &[Vec<u8>]) -> Result<(), JournalError>,
    ) -> Result<(), JournalError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut w = self.database().begin_write().map_err(jdb)?;
        w.set_durability(Durability::Immediate).map_err(jdb)?;
        change(&w, events)?;
        w.commit().map_err(jdb)
    }

    /// Every logged event, oldest first, as `(seq, bytes)`.
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn logged_reads(&self) -> Result<Vec<(u64, Vec<u8>)>, JournalError> {
        let r = self.database().begin_read().map_err(jdb)?;
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

/// Appends `events` to the read log inside `w`, after its last entry.
pub(super) fn log_in(w: &redb::WriteTransaction, events: &[Vec<u8>]) -> Result<(), JournalError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut t = w.open_table(READ_LOG).map_err(jdb)?;
    let mut next = t
        .last()
        .map_err(jdb)?
        .map_or(1, |(k, _)| k.value().saturating_add(1));
    for e in events {
        t.insert(next, e.as_slice()).map_err(jdb)?;
        next = next.saturating_add(1);
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use protocol::schema::{EventBody, GateId};

    use super::*;

    fn store(dir: &tempfile::TempDir) -> Store {
        Store::open(
            &dir.path().join("s.redb"),
            GateId::parse("G1").expect("gate"),
        )
        .expect("store")
    }

    fn body() -> EventBody {
        EventBody::IntegrityAlert {
            what: "test".into(),
            detail: "read log test".into(),
        }
    }

    #[test]
    fn logged_events_come_back_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(&dir);
        assert!(s.logged_reads().expect("empty log").is_empty());
        s.log_reads(&[b"a".to_vec(), b"b".to_vec()]).expect("log");
        s.log_reads(&[b"a".to_vec()]).expect("log");
        let got: Vec<Vec<u8>> = s
            .logged_reads()
            .expect("read")
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(got, [b"a".to_vec(), b"b".to_vec(), b"a".to_vec()]);
    }

    #[test]
    fn a_journal_write_removes_one_entry_per_consumed_event_in_the_same_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(&dir);
        s.log_reads(&[b"a".to_vec(), b"b".to_vec(), b"a".to_vec(), b"c".to_vec()])
            .expect("log");
        let head = s.journal_head();
        s.append_groups_consuming(
            vec![(vec![body()], Timestamp::UNIX_EPOCH)],
            &[b"a".to_vec(), b"c".to_vec(), b"not logged".to_vec()],
        )
        .expect("append");
        assert_eq!(s.journal_head(), head + 1);
        let left: Vec<(u64, Vec<u8>)> = s.logged_reads().expect("read");
        assert_eq!(
            left,
            [(2, b"b".to_vec()), (3, b"a".to_vec())],
            "the oldest `a` and the `c` are gone"
        );
    }

    #[test]
    fn a_refused_journal_write_removes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(&dir);
        s.log_reads(&[b"a".to_vec()]).expect("log");
        s.refuse_journal_writes(true);
        assert!(
            s.append_groups_consuming(
                vec![(vec![body()], Timestamp::UNIX_EPOCH)],
                &[b"a".to_vec()]
            )
            .is_err()
        );
        assert_eq!(s.logged_reads().expect("read").len(), 1);
    }
}
