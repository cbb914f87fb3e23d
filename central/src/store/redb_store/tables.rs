//! The redb tables and the write helpers every family shares (ids, counters, audit).

use std::fmt;
use std::ops::Bound;

use redb::{
    AccessGuard, Database, Key, ReadableDatabase, ReadableTable, StorageError, TableDefinition,
    WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::{AuditNote, StoreError, decode, encode};

pub(super) const AGENT_TOKENS: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("agent_tokens_v1");
pub(super) const GATES: TableDefinition<&str, &[u8]> = TableDefinition::new("gates_v1");
pub(super) const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("events_v1");
pub(super) const EVENT_IDS: TableDefinition<(&str, u128), u64> =
    TableDefinition::new("event_ids_v1");
/// The event index, in the index file: one row per (index key, at ms, gate, seq), encoded
/// by [`index_row_key`] so that byte order (one `memcmp` a comparison) is that order.
pub(super) const EVENT_INDEX: TableDefinition<&[u8], ()> = TableDefinition::new("event_index_v2");
/// The event index as tuples: the index file's table before `event_index_v2`, and the
/// store's own from before the index file. Converted on open.
pub(super) const EVENT_INDEX_V1: TableDefinition<(&str, i64, &str, u64), ()> =
    TableDefinition::new("event_index_v1");
pub(super) const EVENT_TXN: TableDefinition<(u128, &str, u64), ()> =
    TableDefinition::new("event_txn_v1");
pub(super) const ALERTS: TableDefinition<u64, &[u8]> = TableDefinition::new("alerts_v1");
pub(super) const ALERT_KEYS: TableDefinition<(&str, u64, &str), u64> =
    TableDefinition::new("alert_keys_v1");
pub(super) const CASES: TableDefinition<u64, &[u8]> = TableDefinition::new("cases_v1");
pub(super) const CASE_INDEX: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("case_index_v1");
/// Before cases were keyed by (gate, transaction); read only, and only for a case whose
/// gate is the asking gate's.
pub(super) const CASE_BY_TXN: TableDefinition<u128, u64> = TableDefinition::new("case_by_txn_v1");
pub(super) const CASE_BY_GATE_TXN: TableDefinition<(&str, u128), u64> =
    TableDefinition::new("case_by_gate_txn_v1");
pub(super) const COUNTERS: TableDefinition<(&str, &str), u64> = TableDefinition::new("counters_v1");
pub(super) const HOURLY: TableDefinition<(&str, i64, &str), u64> =
    TableDefinition::new("hourly_v1");
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta_v1");
pub(super) const CHANGES: TableDefinition<u64, &[u8]> = TableDefinition::new("changes_v1");
pub(super) const OPERATORS: TableDefinition<&str, &[u8]> = TableDefinition::new("operators_v1");
pub(super) const MRAS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("mras_v1");
pub(super) const CONSIGNMENTS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("consignments_v1");
pub(super) const CONSIGNMENT_INDEX: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("consignment_index_v1");
pub(super) const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_v1");
pub(super) const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users_v1");
pub(super) const SESSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sessions_v1");
/// Programme portal companies by operator id ([`crate::portal::Company`]).
pub(super) const COMPANIES: TableDefinition<&str, &[u8]> = TableDefinition::new("companies_v1");
/// Company documents' bytes by their SHA-256 (lowercase hex).
pub(super) const DOCUMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("documents_v1");

/// Most index rows one query examines before returning a page (with a cursor to go on).
pub(super) const MAX_SCAN: usize = 20_000;

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Backend(redb::Error::from(e).to_string())
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// A record together with the change seq that last wrote it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Versioned<T> {
    pub(super) seq: u64,
    pub(super) value: T,
}

/// A table of records, each stored as [`encode`] writes it.
pub(super) type Records<K> = TableDefinition<'static, K, &'static [u8]>;

/// The record of `table` (`name` in errors, the key shown as `shown`) under `key`, in a
/// read transaction of its own.
pub(super) fn read_record<K: Key + 'static, T: DeserializeOwned>(
    db: &Database,
    table: Records<K>,
    name: &'static str,
    key: K::SelfType<'_>,
    shown: impl fmt::Display,
) -> Result<Option<T>, StoreError> {
    let r = db.begin_read()?;
    let t = r.open_table(table)?;
    let v = t.get(key)?;
    v.map(|g| decode(name, shown, g.value())).transpose()
}

/// Up to `limit` records of `table` (`name` in errors) keyed above `after`, in key
/// order, in a read transaction of its own.
pub(super) fn read_after<T: DeserializeOwned>(
    db: &Database,
    table: Records<u64>,
    name: &'static str,
    after: u64,
    limit: usize,
) -> Result<Vec<T>, StoreError> {
    let r = db.begin_read()?;
    let t = r.open_table(table)?;
    let rows = t.range((Bound::Excluded(after), Bound::Unbounded))?;
    decode_rows(rows.take(limit), name)
}

/// The records `rows` of a table (`name` in errors) read from, each decoded.
pub(super) fn decode_rows<'a, K, T>(
    rows: impl Iterator<
        Item = Result<(AccessGuard<'a, K>, AccessGuard<'a, &'static [u8]>), StorageError>,
    >,
    name: &'static str,
) -> Result<Vec<T>, StoreError>
where
    K: Key + 'static,
    for<'k> K::SelfType<'k>: fmt::Display,
    T: DeserializeOwned,
{
    rows.map(|row| {
        let (k, v) = row?;
        decode(name, k.value(), v.value())
    })
    .collect()
}

/// Stores `value` under `key` unless `table` holds a record there already; then
/// `exists` is the error and nothing is written.
pub(super) fn insert_new<T: Serialize>(
    tx: &WriteTransaction,
    table: Records<&'static str>,
    key: &str,
    value: &T,
    exists: impl FnOnce() -> StoreError,
) -> Result<(), StoreError> {
    let mut t = tx.open_table(table)?;
    if t.get(key)?.is_some() {
        return Err(exists());
    }
    t.insert(key, encode(value)?.as_slice())?;
    Ok(())
}

/// Loads the record of `table` (`name` in errors) under `key`, lets `change` change it
/// and stores it back; returns it with what `change` returned. `missing` is the error
/// when there is none; nothing is written when `change` fails.
pub(super) fn update_record<T: Serialize + DeserializeOwned, R>(
    tx: &WriteTransaction,
    table: Records<&'static str>,
    name: &'static str,
    key: &str,
    missing: impl FnOnce() -> StoreError,
    change: impl FnOnce(&mut T) -> Result<R, StoreError>,
) -> Result<(T, R), StoreError> {
    let mut t = tx.open_table(table)?;
    let mut value: T = match t.get(key)? {
        Some(g) => decode(name, key, g.value())?,
        None => return Err(missing()),
    };
    let out = change(&mut value)?;
    t.insert(key, encode(&value)?.as_slice())?;
    Ok((value, out))
}

pub(super) fn next_id(tx: &WriteTransaction, name: &str) -> Result<u64, StoreError> {
    let mut meta = tx.open_table(META)?;
    let n = meta.get(name)?.map_or(0, |g| g.value()) + 1;
    meta.insert(name, n)?;
    Ok(n)
}

pub(super) fn bump(
    tx: &WriteTransaction,
    scope: &str,
    name: &str,
    by: i64,
) -> Result<(), StoreError> {
    let mut t = tx.open_table(COUNTERS)?;
    let cur = t.get((scope, name))?.map_or(0, |g| g.value());
    let new = cur.saturating_add_signed(by);
    t.insert((scope, name), new)?;
    Ok(())
}

pub(super) fn write_audit(tx: &WriteTransaction, note: AuditNote<'_>) -> Result<(), StoreError> {
    let id = next_id(tx, "audit_id")?;
    let e = note.entry(id);
    tx.open_table(AUDIT)?.insert(id, encode(&e)?.as_slice())?;
    Ok(())
}

pub(super) fn uuid_key(u: &Uuid) -> u128 {
    u.as_u128()
}

/// Whether `db` holds the table `def`.
pub(super) fn has_table<K: Key + 'static, V: redb::Value + 'static>(
    db: &Database,
    def: TableDefinition<K, V>,
) -> Result<bool, StoreError> {
    let r = db.begin_read()?;
    match r.open_table(def) {
        Ok(_) => Ok(true),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Appends to `out` the [`EVENT_INDEX`] key of (`key`, `at`, `gate`, `seq`): `key`, a NUL,
/// `at` big-endian with its sign bit flipped, `gate`, a NUL, `seq` big-endian. Byte order
/// is the tuple's order, as long as neither string holds a NUL: index keys are made of
/// gate, lane and container identifiers and outcome words, all checked on the way in.
pub(super) fn index_row_key(key: &str, at: i64, gate: &str, seq: u64, out: &mut Vec<u8>) {
    out.reserve(key.len() + gate.len() + 18);
    out.extend_from_slice(key.as_bytes());
    out.push(0);
    out.extend_from_slice(&(at.cast_unsigned() ^ (1 << 63)).to_be_bytes());
    out.extend_from_slice(gate.as_bytes());
    out.push(0);
    out.extend_from_slice(&seq.to_be_bytes());
}

/// The (key, at, gate, seq) of an [`EVENT_INDEX`] key; `None` for bytes
/// [`index_row_key`] does not make.
pub(super) fn index_row_of(bytes: &[u8]) -> Option<(&str, i64, &str, u64)> {
    let nul = bytes.iter().position(|&b| b == 0)?;
    let key = std::str::from_utf8(bytes.get(..nul)?).ok()?;
    let rest = bytes.get(nul + 1..)?;
    let at = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?) ^ (1 << 63);
    let rest = rest.get(8..)?;
    let (gate, tail) = rest.split_at(rest.len().checked_sub(9)?);
    let (&[0], seq) = tail.split_at(1) else {
        return None;
    };
    Some((
        key,
        at.cast_signed(),
        std::str::from_utf8(gate)
            .ok()
            .filter(|g| !g.contains('\0'))?,
        u64::from_be_bytes(seq.try_into().ok()?),
    ))
}

#[cfg(test)]
mod tests {
    use super::{index_row_key, index_row_of};

    #[test]
    fn index_row_keys_sort_as_their_tuples_and_decode_back() {
        let rows = [
            ("c:MSCU1234566", 5, "G1", 9),
            ("c:MSCU1234566", -5, "G1", 9),
            ("c:MSCU1234566", 5, "G10", 1),
            ("c:MSCU1234566", 5, "G1", 10),
            ("c:MSCU1234566", 5, "", 0),
            ("c:MSCU123456", i64::MAX, "G1", u64::MAX),
            ("t", i64::MIN, "G1", 0),
            ("t", 0, "G", 3),
            ("g:G1", 1_767_225_600_000, "G1", 1),
        ];
        let mut tuples: Vec<_> = rows.to_vec();
        tuples.sort_unstable();
        let mut keys: Vec<Vec<u8>> = rows
            .iter()
            .map(|&(k, at, g, s)| {
                let mut out = Vec::new();
                index_row_key(k, at, g, s, &mut out);
                out
            })
            .collect();
        keys.sort_unstable();
        let decoded: Vec<_> = keys
            .iter()
            .map(|k| index_row_of(k).expect("decodes"))
            .collect();
        assert_eq!(decoded, tuples);
        assert_eq!(index_row_of(b"t"), None);
        assert_eq!(index_row_of(b"t\0short"), None);
        assert_eq!(
            index_row_of(&[0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            None
        );
    }
}
