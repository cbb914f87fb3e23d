//! The registry: the change log, the current records (written through
//! [`RegistrySink`]; the rule is [`Change::apply`]), snapshots and lookups.

use jiff::Timestamp;
use protocol::operator::OperatorId;
use protocol::registry::RegistrySink;
use protocol::schema::{Change, Consignment, MraRecord, RegistryRecord, SequencedChange};
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction};

use super::tables::{
    CHANGES, CONSIGNMENT_INDEX, CONSIGNMENTS, META, MRAS, OPERATORS, Versioned, bump, read_after,
    read_record, write_audit,
};
use crate::registry::{self, consignment_index_keys};
use crate::store::{
    LoggedChange, SnapshotHead, SnapshotVisit, Stamp, StoreError, change_audits, decode, encode,
    refused_change,
};

fn mra_key(m: &MraRecord) -> (String, String) {
    (m.recognising.code().to_owned(), m.partner.code().to_owned())
}

/// The registry tables inside one write transaction, as a [`RegistrySink`] for the
/// change being logged under `seq`. Storage only: the rule is [`Change::apply`].
struct RegistryTx<'a> {
    tx: &'a WriteTransaction,
    seq: u64,
    /// The ports a consignment change concerns: before and after the change.
    ports: Option<Vec<String>>,
}

impl RegistrySink for RegistryTx<'_> {
    type Error = StoreError;

    fn operator(&mut self, id: &OperatorId) -> Result<Option<RegistryRecord>, StoreError> {
        let key = id.to_string();
        let t = self.tx.open_table(OPERATORS)?;
        let v = t.get(key.as_str())?;
        v.map(|g| decode::<Versioned<RegistryRecord>>("operators_v1", &key, g.value()))
            .transpose()
            .map(|o| o.map(|v| v.value))
    }

    fn put_operator(&mut self, record: &RegistryRecord) -> Result<(), StoreError> {
        let key = record.operator.to_string();
        let mut t = self.tx.open_table(OPERATORS)?;
        let v = Versioned {
            seq: self.seq,
            value: record.clone(),
        };
        let was = t.insert(key.as_str(), encode(&v)?.as_slice())?.is_some();
        drop(t);
        if !was {
            bump(self.tx, "registry", "operators", 1)?;
        }
        Ok(())
    }

    fn put_mra(&mut self, mra: &MraRecord) -> Result<(), StoreError> {
        let (a, b) = mra_key(mra);
        let v = Versioned {
            seq: self.seq,
            value: mra.clone(),
        };
        self.tx
            .open_table(MRAS)?
            .insert((a.as_str(), b.as_str()), encode(&v)?.as_slice())?;
        Ok(())
    }

    fn put_consignment(&mut self, consignment: &Consignment) -> Result<(), StoreError> {
        let old = remove_consignment(self.tx, &consignment.id)?;
        let v = Versioned {
            seq: self.seq,
            value: consignment.clone(),
        };
        self.tx
            .open_table(CONSIGNMENTS)?
            .insert(consignment.id.as_str(), encode(&v)?.as_slice())?;
        let mut idx = self.tx.open_table(CONSIGNMENT_INDEX)?;
        for k in consignment_index_keys(consignment) {
            idx.insert((k.as_str(), consignment.id.as_str()), ())?;
        }
        drop(idx);
        bump(self.tx, "registry", "consignments", 1)?;
        self.ports = Some(registry::consignment_ports(consignment, old));
        Ok(())
    }

    fn remove_consignment(&mut self, id: &str) -> Result<(), StoreError> {
        let old = remove_consignment(self.tx, id)?;
        self.ports = Some(old.map(|o| o.ports).unwrap_or_default());
        Ok(())
    }
}

/// Applies one change ([`Change::apply`]) under `seq`; returns the ports it concerns
/// (`None`: every port).
fn apply_change(
    tx: &WriteTransaction,
    change: &Change,
    seq: u64,
) -> Result<Option<Vec<String>>, StoreError> {
    let mut sink = RegistryTx {
        tx,
        seq,
        ports: None,
    };
    change.apply(&mut sink).map_err(refused_change)?;
    Ok(sink.ports)
}

/// Removes a consignment and its index rows; returns what was there.
fn remove_consignment(tx: &WriteTransaction, id: &str) -> Result<Option<Consignment>, StoreError> {
    let old: Option<Versioned<Consignment>> = {
        let mut t = tx.open_table(CONSIGNMENTS)?;
        let removed = t.remove(id)?;
        removed
            .map(|g| decode("consignments_v1", id, g.value()))
            .transpose()?
    };
    let Some(old) = old else { return Ok(None) };
    let mut idx = tx.open_table(CONSIGNMENT_INDEX)?;
    for k in consignment_index_keys(&old.value) {
        idx.remove((k.as_str(), id))?;
    }
    drop(idx);
    bump(tx, "registry", "consignments", -1)?;
    Ok(Some(old.value))
}

pub(super) fn append_changes(
    db: &Database,
    changes: &[Change],
    by: Stamp<'_>,
) -> Result<u64, StoreError> {
    let tx = db.begin_write()?;
    let mut seq = tx
        .open_table(META)?
        .get("change_seq")?
        .map_or(0, |g| g.value());
    let first = seq + 1;
    for change in changes {
        seq += 1;
        let ports = apply_change(&tx, change, seq)?;
        let logged = LoggedChange::new(seq, by.at, by.actor, change.clone(), ports);
        tx.open_table(CHANGES)?
            .insert(seq, encode(&logged)?.as_slice())?;
    }
    if !changes.is_empty() {
        tx.open_table(META)?.insert("change_seq", seq)?;
    }
    for (action, detail) in change_audits(changes, first) {
        write_audit(&tx, by.note(action, &detail))?;
    }
    tx.commit()?;
    Ok(seq)
}

pub(super) fn last_seq(db: &Database) -> Result<u64, StoreError> {
    let r = db.begin_read()?;
    Ok(r.open_table(META)?
        .get("change_seq")?
        .map_or(0, |g| g.value()))
}

pub(super) fn changes_after(
    db: &Database,
    after: u64,
    limit: usize,
) -> Result<Vec<LoggedChange>, StoreError> {
    read_after(db, CHANGES, "changes_v1", after, limit)
}

pub(super) fn snapshot_each(
    db: &Database,
    port: &str,
    now: Timestamp,
    visit: &mut SnapshotVisit<'_>,
) -> Result<SnapshotHead, StoreError> {
    let r = db.begin_read()?;
    let last_seq = r
        .open_table(META)?
        .get("change_seq")?
        .map_or(0, |g| g.value());
    let as_of = match r.open_table(CHANGES)?.get(last_seq)? {
        Some(g) => decode::<LoggedChange>("changes_v1", last_seq, g.value())?.at,
        None => now,
    };
    for row in r.open_table(OPERATORS)?.iter()? {
        let (k, v) = row?;
        let rec: Versioned<RegistryRecord> = decode("operators_v1", k.value(), v.value())?;
        visit(SequencedChange {
            seq: rec.seq,
            change: Change::UpsertOperator { record: rec.value },
        })?;
    }
    for row in r.open_table(MRAS)?.iter()? {
        let (k, v) = row?;
        let (a, b) = k.value();
        let m: Versioned<MraRecord> = decode("mras_v1", format!("{a}/{b}"), v.value())?;
        visit(SequencedChange {
            seq: m.seq,
            change: Change::UpsertMra { mra: m.value },
        })?;
    }
    each_indexed_consignment(&r, &registry::port_index_key(port), &mut |c| {
        visit(SequencedChange {
            seq: c.seq,
            change: Change::UpsertConsignment {
                consignment: c.value,
            },
        })
    })?;
    Ok(SnapshotHead { last_seq, as_of })
}

pub(super) fn operator(
    db: &Database,
    id: &OperatorId,
) -> Result<Option<RegistryRecord>, StoreError> {
    let key = id.to_string();
    let found: Option<Versioned<RegistryRecord>> =
        read_record(db, OPERATORS, "operators_v1", key.as_str(), &key)?;
    Ok(found.map(|v| v.value))
}

pub(super) fn consignments_for_container(
    db: &Database,
    container: &str,
) -> Result<Vec<Consignment>, StoreError> {
    let r = db.begin_read()?;
    let found = indexed_consignments(&r, &registry::container_index_key(container))?;
    Ok(found.into_iter().map(|c| c.value).collect())
}

/// The consignments indexed under `key` (see [`registry::consignment_index_keys`]), in
/// id order.
fn indexed_consignments(
    r: &ReadTransaction,
    key: &str,
) -> Result<Vec<Versioned<Consignment>>, StoreError> {
    let mut out = Vec::new();
    each_indexed_consignment(r, key, &mut |c| {
        out.push(c);
        Ok(())
    })?;
    Ok(out)
}

/// Hands `each` every consignment indexed under `key`, in id order.
fn each_indexed_consignment(
    r: &ReadTransaction,
    key: &str,
    each: &mut dyn FnMut(Versioned<Consignment>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let idx = r.open_table(CONSIGNMENT_INDEX)?;
    let cons = r.open_table(CONSIGNMENTS)?;
    for row in idx.range((key, "")..)? {
        let (k, _) = row?;
        let (indexed, id) = k.value();
        if indexed != key {
            break;
        }
        if let Some(v) = cons.get(id)? {
            each(decode("consignments_v1", id, v.value())?)?;
        }
    }
    Ok(())
}

pub(super) fn search_operators(
    db: &Database,
    text: &str,
    limit: usize,
) -> Result<Vec<RegistryRecord>, StoreError> {
    let needle = text.trim().to_lowercase();
    let r = db.begin_read()?;
    let t = r.open_table(OPERATORS)?;
    let mut out = Vec::new();
    // A full scan: the registry is tens of thousands of rows, read in one snapshot.
    for row in t.iter()? {
        if out.len() >= limit {
            break;
        }
        let (k, v) = row?;
        let key = k.value();
        let rec: Versioned<RegistryRecord> = decode("operators_v1", key, v.value())?;
        if key.to_lowercase().contains(&needle) || rec.value.name.to_lowercase().contains(&needle) {
            out.push(rec.value);
        }
    }
    Ok(out)
}

pub(super) fn operator_changes(
    db: &Database,
    id: &OperatorId,
    limit: usize,
) -> Result<Vec<LoggedChange>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let r = db.begin_read()?;
    let t = r.open_table(CHANGES)?;
    let mut out: std::collections::VecDeque<LoggedChange> = std::collections::VecDeque::new();
    for row in t.iter()? {
        let (k, v) = row?;
        let logged: LoggedChange = decode("changes_v1", k.value(), v.value())?;
        let about = match &logged.change {
            Change::UpsertOperator { record } => &record.operator == id,
            Change::SetStatus { operator, .. } => operator == id,
            _ => false,
        };
        if about {
            if out.len() == limit {
                out.pop_front();
            }
            out.push_back(logged);
        }
    }
    Ok(out.into())
}
