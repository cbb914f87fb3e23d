//! Every record of the store, read in one snapshot of the store's file and then one of
//! the index file's roll-ups, for a copy to another backend ([`crate::store::copy`]),
//! which runs on a store no ingest writes to.

use redb::{Key, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, Value};
use uuid::Uuid;

use super::RedbStore;
use super::rollup_tables::{PROGRAMME, PROGRAMME_NAMES, PROGRAMME_PENDING};
use super::tables::{
    AGENT_TOKENS, ALERTS, AUDIT, CASE_BY_GATE_TXN, CASE_BY_TXN, CASES, CHANGES, COMPANIES,
    CONSIGNMENTS, COUNTERS, DOCUMENTS, EVENTS, GATES, HOURLY, META, MRAS, OPERATORS, SESSIONS,
    USERS, Versioned,
};
use crate::model::Case;
use crate::store::copy::Record;
use crate::store::{StoreError, decode};

/// A stored value (version byte, JSON) as JSON, for records copied as they are.
fn json(
    table: &'static str,
    key: impl std::fmt::Display,
    bytes: &[u8],
) -> Result<serde_json::Value, StoreError> {
    decode(table, key, bytes)
}

impl RedbStore {
    /// Hands every record to `sink`, family by family (id counters first, events before
    /// the cases and alerts that name them), from one read transaction of the store's
    /// file, then the programme roll-ups from one of the index file's.
    ///
    /// # Errors
    /// A table cannot be read, a value does not decode, or `sink` fails.
    pub fn export(
        &self,
        sink: &mut dyn FnMut(Record) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let r = self.files.db.begin_read()?;
        each(&r, META, |name, n| {
            sink(Record::Meta {
                name: name.to_owned(),
                n,
            })
        })?;
        each(&r, COUNTERS, |(scope, name), n| {
            sink(Record::Counter {
                scope: scope.to_owned(),
                name: name.to_owned(),
                n,
            })
        })?;
        each(&r, HOURLY, |(gate, hour, figure), n| {
            sink(Record::Hourly {
                gate: gate.to_owned(),
                hour,
                figure: figure.to_owned(),
                n,
            })
        })?;
        each(&r, AGENT_TOKENS, |token, v| {
            let agent = decode("agent_tokens_v1", hex_of(token), v)?;
            sink(Record::AgentToken {
                token: token.to_vec(),
                agent,
            })
        })?;
        each(&r, GATES, |gate, v| {
            let value = json("gates_v1", gate, v)?;
            sink(Record::Gate {
                gate: gate.to_owned(),
                value,
            })
        })?;
        each(&r, EVENTS, |(gate, seq), v| {
            let value = json("events_v1", format!("{gate}/{seq}"), v)?;
            sink(Record::Event {
                gate: gate.to_owned(),
                value,
            })
        })?;
        each(&r, ALERTS, |id, v| {
            sink(Record::Alert(decode("alerts_v1", id, v)?))
        })?;
        each(&r, CASES, |id, v| {
            sink(Record::Case(decode("cases_v1", id, v)?))
        })?;
        each(&r, CASE_BY_GATE_TXN, |(gate, txn), case| {
            sink(Record::CaseLink {
                gate: gate.to_owned(),
                txn: Uuid::from_u128(txn),
                case,
            })
        })?;
        // Links of the earlier layout (by transaction only) take the gate of their case.
        let cases = r.open_table(CASES)?;
        each(&r, CASE_BY_TXN, |txn, id| {
            if let Some(c) = cases.get(id)? {
                let case: Case = decode("cases_v1", id, c.value())?;
                sink(Record::CaseLink {
                    gate: case.gate.to_string(),
                    txn: Uuid::from_u128(txn),
                    case: id,
                })?;
            }
            Ok(())
        })?;
        each(&r, CHANGES, |seq, v| {
            sink(Record::Change(decode("changes_v1", seq, v)?))
        })?;
        each(&r, OPERATORS, |id, v| {
            let o: Versioned<_> = decode("operators_v1", id, v)?;
            sink(Record::Operator {
                seq: o.seq,
                record: o.value,
            })
        })?;
        each(&r, MRAS, |(a, b), v| {
            let m: Versioned<_> = decode("mras_v1", format!("{a}/{b}"), v)?;
            sink(Record::Mra {
                seq: m.seq,
                record: m.value,
            })
        })?;
        each(&r, CONSIGNMENTS, |id, v| {
            let c: Versioned<_> = decode("consignments_v1", id, v)?;
            sink(Record::Consignment {
                seq: c.seq,
                record: c.value,
            })
        })?;
        each(&r, AUDIT, |id, v| {
            sink(Record::Audit(decode("audit_v1", id, v)?))
        })?;
        each(&r, USERS, |name, v| {
            sink(Record::User(decode("users_v1", name, v)?))
        })?;
        each(&r, SESSIONS, |token, v| {
            let session = decode("sessions_v1", hex_of(token), v)?;
            sink(Record::Session {
                token: token.to_vec(),
                session,
            })
        })?;
        each(&r, COMPANIES, |operator, v| {
            let company = decode("companies_v1", operator, v)?;
            sink(Record::Company(Box::new(company)))
        })?;
        each(&r, DOCUMENTS, |sha256, body| {
            sink(Record::Document {
                sha256: sha256.to_owned(),
                body: body.to_vec(),
            })
        })?;
        self.files.indexer.wait()?;
        export_rollups(&self.files.index.begin_read()?, sink)
    }
}

/// Hands every roll-up row to `sink`, for a copy to another backend.
fn export_rollups(
    r: &ReadTransaction,
    sink: &mut dyn FnMut(Record) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    each(r, PROGRAMME, |(start, group, figure), n| {
        sink(Record::Programme {
            start,
            group: group.to_owned(),
            figure: figure.to_owned(),
            n,
        })
    })?;
    each(r, PROGRAMME_NAMES, |operator, name| {
        sink(Record::ProgrammeName {
            operator: operator.to_owned(),
            name: name.to_owned(),
        })
    })?;
    each(r, PROGRAMME_PENDING, |(gate, txn), v| {
        let txn = Uuid::from_u128(txn);
        let halves = decode("programme_pending_v1", format_args!("{gate}/{txn}"), v)?;
        sink(Record::ProgrammePending {
            gate: gate.to_owned(),
            txn,
            halves,
        })
    })
}

/// Hands `f` every row of `table`, in key order.
pub(super) fn each<K: Key + 'static, V: Value + 'static>(
    r: &ReadTransaction,
    table: TableDefinition<K, V>,
    mut f: impl FnMut(K::SelfType<'_>, V::SelfType<'_>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    for row in r.open_table(table)?.iter()? {
        let (k, v) = row?;
        f(k.value(), v.value())?;
    }
    Ok(())
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
