//! The store's check at start: redb's integrity check, then the journal's hash chain from
//! the last acknowledged entry to the head. Damage is repaired so that the journal can
//! still be sent, and said in the journal itself, so that central is told:
//!
//! - an entry that fails its check (unreadable, or its own hash does not match, or it
//!   says another seq or agent) is **quarantined**: its raw bytes move to
//!   `journal_quarantine_v1`, and a marker entry takes its seq — an integrity alert
//!   `JOURNAL_ENTRY_QUARANTINED` chained to the entry before it, saying what was lost.
//!   The entry after a marker keeps its link to the lost original (central reports that
//!   link as a chain break, which is the truth); the agent's own chain check accepts it.
//!   A seq missing between the cursor and the head gets a marker the same way, so the
//!   uplink never waits on a hole;
//! - when redb's integrity check repaired the file and the journal lost its last entries
//!   (the repair rolls back to the last intact commit), their seqs get markers, so new
//!   entries do not reuse numbers central may already hold;
//! - a file redb cannot open or repair ("all roots are corrupted") is **moved aside**
//!   (`<store>.damaged-<unix seconds>`, kept as evidence) and a new store is made; every
//!   journal entry that can still be found in the old file's bytes and verifies (own hash,
//!   this gate) is carried over with its seq and hash, gaps get markers, and a
//!   `STORE_REPLACED` alert says what was recovered and what was not. The new store has no
//!   replica (replication bootstraps it from a snapshot) and no console accounts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use protocol::schema::{EventBody, GENESIS_HASH, GateId, JournalEntry};
use redb::{Database, Durability, ReadableDatabase as _, ReadableTable as _, TableDefinition};
use uuid::Uuid;

use super::error::{JournalError, jdb};
use super::handle::JournalState;
use super::journal::{EXCEPTIONS, JOURNAL, check_entry, decode_entry, write_journal_meta};

/// Raw bytes of quarantined journal entries, by the seq they were stored under.
pub(super) const QUARANTINE: TableDefinition<u64, &[u8]> =
    TableDefinition::new("journal_quarantine_v1");

pub use super::journal::ALERT_ENTRY_QUARANTINED;
use super::journal::is_marker;
/// Alert of a store file that could not be opened and was replaced.
pub const ALERT_STORE_REPLACED: &str = "STORE_REPLACED";
/// Alert of a store file redb repaired at start.
pub const ALERT_STORE_REPAIRED: &str = "STORE_REPAIRED";

/// Most markers one start writes (a bound on the work a damaged meta table can cause).
const MAX_MARKERS: u64 = 100_000;

/// A seq to mark, and why.
struct Damage {
    seq: u64,
    reason: String,
    raw: Option<Vec<u8>>,
}

/// Checks the journal from the cursor to the head; quarantines what fails and writes
/// markers for it and for missing seqs. Returns what was found, in words (empty when
/// nothing).
pub(super) fn check_journal(
    db: &Database,
    st: &mut JournalState,
    gate: &GateId,
) -> Result<Vec<String>, JournalError> {
    let mut damage = Vec::new();
    {
        let r = db.begin_read().map_err(jdb)?;
        let journal = r.open_table(JOURNAL).map_err(jdb)?;
        let mut expect = st.acked + 1;
        let mut prev: Option<JournalEntry> = match st.acked {
            0 => None,
            a => journal
                .get(a)
                .map_err(jdb)?
                .and_then(|v| decode_entry(a, v.value()).ok()),
        };
        for item in journal.range(st.acked + 1..).map_err(jdb)? {
            let (k, v) = item.map_err(jdb)?;
            let seq = k.value();
            while expect < seq && (damage.len() as u64) < MAX_MARKERS {
                damage.push(Damage {
                    seq: expect,
                    reason: "the entry is missing".into(),
                    raw: None,
                });
                expect += 1;
            }
            expect = seq + 1;
            let checked = decode_entry(seq, v.value())
                .and_then(|e| check_entry(&e, seq, None, gate).map(|()| e));
            match checked {
                Ok(e) => {
                    if let Some(p) = &prev
                        && p.seq + 1 == seq
                        && !is_marker(p)
                        && e.prev_hash != p.hash
                    {
                        tracing::error!(
                            seq,
                            "journal entry {seq} does not link to entry {}; both verify on their own, so both are kept and sent",
                            p.seq
                        );
                    }
                    prev = Some(e);
                }
                Err(err) => {
                    damage.push(Damage {
                        seq,
                        reason: err.to_string(),
                        raw: Some(v.value().to_vec()),
                    });
                    prev = None;
                }
            }
        }
        // Entries that should be there up to the recorded head.
        while expect <= st.head && (damage.len() as u64) < MAX_MARKERS {
            damage.push(Damage {
                seq: expect,
                reason: "the entry is missing".into(),
                raw: None,
            });
            expect += 1;
        }
    }
    if damage.is_empty() {
        return Ok(Vec::new());
    }
    write_markers(db, st, gate, damage)
}

/// Writes a marker for each damaged or missing seq (and keeps the raw bytes), in one
/// durable transaction; returns a line per seq.
fn write_markers(
    db: &Database,
    st: &mut JournalState,
    gate: &GateId,
    damage: Vec<Damage>,
) -> Result<Vec<String>, JournalError> {
    let mut lines = Vec::new();
    let mut w = db.begin_write().map_err(jdb)?;
    w.set_durability(Durability::Immediate).map_err(jdb)?;
    {
        let mut journal = w.open_table(JOURNAL).map_err(jdb)?;
        let mut quarantine = w.open_table(QUARANTINE).map_err(jdb)?;
        let mut exceptions = w.open_table(EXCEPTIONS).map_err(jdb)?;
        for d in damage {
            let prev_hash = match d.seq.checked_sub(1) {
                Some(0) | None => GENESIS_HASH.to_string(),
                Some(p) => journal
                    .get(p)
                    .map_err(jdb)?
                    .and_then(|v| decode_entry(p, v.value()).ok())
                    .map_or_else(|| GENESIS_HASH.to_string(), |e| e.hash),
            };
            let kept = match &d.raw {
                Some(raw) => {
                    quarantine.insert(d.seq, raw.as_slice()).map_err(jdb)?;
                    format!(
                        "its {} raw bytes are kept in the store's journal_quarantine_v1 table",
                        raw.len()
                    )
                }
                None => "nothing of it is left".into(),
            };
            let detail = format!(
                "journal entry {} failed the check at start ({}); {kept}; what it recorded does not reach central",
                d.seq, d.reason
            );
            tracing::error!(seq = d.seq, %detail, "journal entry quarantined");
            let marker = JournalEntry::new_chained(
                gate.clone(),
                d.seq,
                Uuid::now_v7(),
                Timestamp::now(),
                prev_hash,
                EventBody::IntegrityAlert {
                    what: ALERT_ENTRY_QUARANTINED.into(),
                    detail: detail.clone(),
                },
            )
            .map_err(JournalError::Hash)?;
            let bytes = serde_json::to_vec(&marker).map_err(|e| JournalError::Corrupt {
                seq: d.seq,
                detail: e.to_string(),
            })?;
            journal.insert(d.seq, bytes.as_slice()).map_err(jdb)?;
            exceptions.insert(d.seq, ()).map_err(jdb)?;
            if d.seq >= st.head {
                st.head = d.seq;
                st.last_hash = marker.hash.clone();
            }
            lines.push(detail);
        }
    }
    write_journal_meta(&w, st)?;
    w.commit().map_err(jdb)?;
    Ok(lines)
}

/// Appends an integrity alert to the journal at open (before anything else can write).
pub(super) fn append_alert(
    db: &Database,
    st: &mut JournalState,
    gate: &GateId,
    what: &str,
    detail: String,
) -> Result<(), JournalError> {
    let seq = st.head + 1;
    let entry = JournalEntry::new_chained(
        gate.clone(),
        seq,
        Uuid::now_v7(),
        Timestamp::now(),
        st.last_hash.clone(),
        EventBody::IntegrityAlert {
            what: what.into(),
            detail,
        },
    )
    .map_err(JournalError::Hash)?;
    let bytes = serde_json::to_vec(&entry).map_err(|e| JournalError::Corrupt {
        seq,
        detail: e.to_string(),
    })?;
    let mut w = db.begin_write().map_err(jdb)?;
    w.set_durability(Durability::Immediate).map_err(jdb)?;
    {
        let mut journal = w.open_table(JOURNAL).map_err(jdb)?;
        journal.insert(seq, bytes.as_slice()).map_err(jdb)?;
        let mut exceptions = w.open_table(EXCEPTIONS).map_err(jdb)?;
        exceptions.insert(seq, ()).map_err(jdb)?;
    }
    st.head = seq;
    st.bytes += bytes.len() as u64;
    st.last_hash = entry.hash;
    write_journal_meta(&w, st)?;
    w.commit().map_err(jdb)?;
    Ok(())
}

/// Where a damaged store file is moved: `<store>.damaged-<unix seconds>`.
pub(super) fn aside_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".damaged-{}", Timestamp::now().as_second()));
    PathBuf::from(name)
}

/// Every journal entry of `gate` found in `bytes` (a store file redb cannot open) whose
/// own hash verifies, by seq. Entries are JSON objects starting `{"v":`; each candidate is
/// parsed where it starts, and one that does not parse or verify is skipped.
pub(super) fn salvage(bytes: &[u8], gate: &GateId) -> BTreeMap<u64, JournalEntry> {
    const START: &[u8] = b"{\"v\":";
    let mut out = BTreeMap::new();
    let mut i = 0;
    while let Some(off) = find(&bytes[i..], START) {
        let at = i + off;
        let mut it = serde_json::Deserializer::from_slice(&bytes[at..]).into_iter::<JournalEntry>();
        if let Some(Ok(e)) = it.next()
            && &e.agent == gate
            && e.seq > 0
            && e.verify_hash().is_ok()
        {
            out.entry(e.seq).or_insert(e);
        }
        i = at + 1;
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Puts salvaged entries with a seq above the head back into the journal, each with its
/// own seq and hash, and moves the head to the last of them; the seqs between that
/// [`check_journal`] then finds missing get markers. Returns how many were put back.
pub(super) fn restore(
    db: &Database,
    st: &mut JournalState,
    found: &BTreeMap<u64, JournalEntry>,
) -> Result<usize, JournalError> {
    let mut n = 0;
    let mut w = db.begin_write().map_err(jdb)?;
    w.set_durability(Durability::Immediate).map_err(jdb)?;
    {
        let mut journal = w.open_table(JOURNAL).map_err(jdb)?;
        let mut exceptions = w.open_table(EXCEPTIONS).map_err(jdb)?;
        for (seq, e) in found.range(st.head + 1..) {
            let bytes = serde_json::to_vec(e).map_err(|err| JournalError::Corrupt {
                seq: *seq,
                detail: err.to_string(),
            })?;
            journal.insert(*seq, bytes.as_slice()).map_err(jdb)?;
            if matches!(e.body, EventBody::IntegrityAlert { .. })
                || matches!(&e.body, EventBody::Decision { decision } if decision.is_seal_exception())
            {
                exceptions.insert(*seq, ()).map_err(jdb)?;
            }
            st.bytes += bytes.len() as u64;
            st.head = *seq;
            st.last_hash = e.hash.clone();
            n += 1;
        }
    }
    write_journal_meta(&w, st)?;
    w.commit().map_err(jdb)?;
    Ok(n)
}

/// The journal head as stored (for comparing before and after redb's repair).
pub(super) fn stored_head(db: &Database) -> Option<u64> {
    let r = db.begin_read().ok()?;
    let meta = r.open_table(super::journal::JOURNAL_META).ok()?;
    meta.get("head").ok()?.map(|v| v.value())
}
