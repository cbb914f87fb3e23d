//! The registry: the change log, the current records (written through
//! [`RegistrySink`]; the rule is [`Change::apply`]), snapshots and lookups.

use super::tx::Tx;
use jiff::Timestamp;
use protocol::operator::OperatorId;
use protocol::registry::RegistrySink;
use protocol::schema::{Change, Consignment, MraRecord, RegistryRecord, SequencedChange};

use super::{bump, from_json, int, json_rows, json_rows_after, to_json, uint, write_audit};
use crate::registry;
use crate::store::{
    LoggedChange, SnapshotHead, SnapshotVisit, Stamp, StoreError, change_audits, refused_change,
};

pub(super) use crate::registry::consignment_index_keys;

/// The registry tables inside one transaction, as a [`RegistrySink`] for the change
/// being logged under `seq`. Storage only: the rule is [`Change::apply`].
struct RegistryTx<'a, 'b> {
    tx: &'a mut Tx<'b>,
    seq: i64,
    /// The ports a consignment change concerns: before and after the change.
    ports: Option<Vec<String>>,
}

impl RegistrySink for RegistryTx<'_, '_> {
    type Error = StoreError;

    fn operator(&mut self, id: &OperatorId) -> Result<Option<RegistryRecord>, StoreError> {
        operator(self.tx, id)
    }

    fn put_operator(&mut self, record: &RegistryRecord) -> Result<(), StoreError> {
        let key = record.operator.to_string();
        // xmax = 0 only for a freshly inserted row: tells a new operator from a replaced one.
        let row = self.tx.query_one(
            "INSERT INTO operators (id, seq, value) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET seq = EXCLUDED.seq, value = EXCLUDED.value
             RETURNING (xmax = 0)",
            &[&key, &self.seq, &to_json(record)?],
        )?;
        if row.get::<_, bool>(0) {
            bump(self.tx, "registry", "operators", 1)?;
        }
        Ok(())
    }

    fn put_mra(&mut self, mra: &MraRecord) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT INTO mras (recognising, partner, seq, value) VALUES ($1, $2, $3, $4)
             ON CONFLICT (recognising, partner)
             DO UPDATE SET seq = EXCLUDED.seq, value = EXCLUDED.value",
            &[
                &mra.recognising.code(),
                &mra.partner.code(),
                &self.seq,
                &to_json(mra)?,
            ],
        )?;
        Ok(())
    }

    fn put_consignment(&mut self, consignment: &Consignment) -> Result<(), StoreError> {
        let old = remove_consignment(self.tx, &consignment.id)?;
        self.tx.execute(
            "INSERT INTO consignments (id, seq, value) VALUES ($1, $2, $3)",
            &[&consignment.id, &self.seq, &to_json(consignment)?],
        )?;
        let keys = consignment_index_keys(consignment);
        self.tx.execute(
            "INSERT INTO consignment_index (key, id)
             SELECT k, $2 FROM unnest($1::text[]) AS k ON CONFLICT DO NOTHING",
            &[&keys, &consignment.id],
        )?;
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

/// Removes a consignment and its index rows; returns what was there.
fn remove_consignment(tx: &mut Tx<'_>, id: &str) -> Result<Option<Consignment>, StoreError> {
    let Some(row) = tx.query_opt(
        "DELETE FROM consignments WHERE id = $1 RETURNING value",
        &[&id],
    )?
    else {
        return Ok(None);
    };
    let old: Consignment = from_json("consignments", id, row.get(0))?;
    tx.execute("DELETE FROM consignment_index WHERE id = $1", &[&id])?;
    bump(tx, "registry", "consignments", -1)?;
    Ok(Some(old))
}

/// The operator a logged change is about (for the operator's history page).
pub(super) fn operator_of(change: &Change) -> Option<String> {
    match change {
        Change::UpsertOperator { record } => Some(record.operator.to_string()),
        Change::SetStatus { operator, .. } => Some(operator.to_string()),
        _ => None,
    }
}

pub(super) fn append_changes(
    tx: &mut Tx<'_>,
    changes: &[Change],
    by: Stamp<'_>,
) -> Result<u64, StoreError> {
    // The row lock on the sequence serialises appends across connections and
    // instances: change numbers have no gaps and no duplicates.
    let mut seq: i64 = tx
        .query_one(
            "SELECT n FROM meta WHERE name = 'change_seq' FOR UPDATE",
            &[],
        )?
        .get(0);
    let first = seq + 1;
    for change in changes {
        seq += 1;
        let mut sink = RegistryTx {
            tx,
            seq,
            ports: None,
        };
        change.apply(&mut sink).map_err(refused_change)?;
        let ports = sink.ports;
        let logged = LoggedChange::new(uint(seq), by.at, by.actor, change.clone(), ports);
        tx.execute(
            "INSERT INTO changes (seq, operator, value) VALUES ($1, $2, $3)",
            &[&seq, &operator_of(change), &to_json(&logged)?],
        )?;
    }
    if !changes.is_empty() {
        tx.execute("UPDATE meta SET n = $1 WHERE name = 'change_seq'", &[&seq])?;
    }
    for (action, detail) in change_audits(changes, uint(first)) {
        write_audit(tx, by.note(action, &detail))?;
    }
    Ok(uint(seq))
}

pub(super) fn last_seq(tx: &mut Tx<'_>) -> Result<u64, StoreError> {
    let n: i64 = tx
        .query_one("SELECT n FROM meta WHERE name = 'change_seq'", &[])?
        .get(0);
    Ok(uint(n))
}

pub(super) fn changes_after(
    tx: &mut Tx<'_>,
    after: u64,
    limit: usize,
) -> Result<Vec<LoggedChange>, StoreError> {
    json_rows_after(tx, "changes", "seq", after, limit)
}

/// Rows fetched at a time while a snapshot is read.
const SNAPSHOT_PAGE: i32 = 2_000;

pub(super) fn snapshot_each(
    tx: &mut Tx<'_>,
    port: &str,
    now: Timestamp,
    visit: &mut SnapshotVisit<'_>,
) -> Result<SnapshotHead, StoreError> {
    let last = last_seq(tx)?;
    let as_of = match tx.query_opt("SELECT value FROM changes WHERE seq = $1", &[&int(last)?])? {
        Some(r) => from_json::<LoggedChange>("changes", last, r.get(0))?.at,
        None => now,
    };
    tx.query_pages(
        "SELECT id, seq, value FROM operators",
        &[],
        SNAPSHOT_PAGE,
        &mut |r| {
            let record: RegistryRecord = from_json("operators", r.get::<_, String>(0), r.get(2))?;
            visit(SequencedChange {
                seq: uint(r.get(1)),
                change: Change::UpsertOperator { record },
            })
        },
    )?;
    tx.query_pages(
        "SELECT recognising, partner, seq, value FROM mras",
        &[],
        SNAPSHOT_PAGE,
        &mut |r| {
            let key = format!("{}/{}", r.get::<_, String>(0), r.get::<_, String>(1));
            let mra: MraRecord = from_json("mras", key, r.get(3))?;
            visit(SequencedChange {
                seq: uint(r.get(2)),
                change: Change::UpsertMra { mra },
            })
        },
    )?;
    let key = registry::port_index_key(port);
    tx.query_pages(
        "SELECT c.id, c.seq, c.value FROM consignment_index i
         JOIN consignments c ON c.id = i.id WHERE i.key = $1 ORDER BY c.id",
        &[&key],
        SNAPSHOT_PAGE,
        &mut |r| {
            let consignment: Consignment =
                from_json("consignments", r.get::<_, String>(0), r.get(2))?;
            visit(SequencedChange {
                seq: uint(r.get(1)),
                change: Change::UpsertConsignment { consignment },
            })
        },
    )?;
    Ok(SnapshotHead {
        last_seq: last,
        as_of,
    })
}

pub(super) fn operator(
    tx: &mut Tx<'_>,
    id: &OperatorId,
) -> Result<Option<RegistryRecord>, StoreError> {
    let key = id.to_string();
    tx.query_opt("SELECT value FROM operators WHERE id = $1", &[&key])?
        .map(|r| from_json("operators", &key, r.get(0)))
        .transpose()
}

pub(super) fn consignments_for_container(
    tx: &mut Tx<'_>,
    container: &str,
) -> Result<Vec<Consignment>, StoreError> {
    let key = registry::container_index_key(container);
    json_rows::<String, _>(
        tx,
        "consignments",
        "SELECT c.id, c.value FROM consignment_index i
         JOIN consignments c ON c.id = i.id WHERE i.key = $1 ORDER BY c.id",
        &[&key],
    )
}

pub(super) fn search_operators(
    tx: &mut Tx<'_>,
    text: &str,
    limit: usize,
) -> Result<Vec<RegistryRecord>, StoreError> {
    let needle = text.trim().to_lowercase();
    let mut out = Vec::new();
    // A scan in id order, matched here with Unicode lower case (as the redb backend
    // does): the registry is tens of thousands of rows, read in one snapshot.
    for r in tx.query("SELECT id, value FROM operators ORDER BY id", &[])? {
        if out.len() >= limit {
            break;
        }
        let id: String = r.get(0);
        let rec: RegistryRecord = from_json("operators", &id, r.get(1))?;
        if id.to_lowercase().contains(&needle) || rec.name.to_lowercase().contains(&needle) {
            out.push(rec);
        }
    }
    Ok(out)
}

pub(super) fn operator_changes(
    tx: &mut Tx<'_>,
    id: &OperatorId,
    limit: usize,
) -> Result<Vec<LoggedChange>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut out: Vec<LoggedChange> = json_rows::<i64, _>(
        tx,
        "changes",
        "SELECT seq, value FROM changes WHERE operator = $1 ORDER BY seq DESC LIMIT $2",
        &[&id.to_string(), &limit],
    )?;
    out.reverse();
    Ok(out)
}
