//! Every record of the store, read in one snapshot, for a copy to another backend
//! ([`crate::store::copy`]).

use redb::{ReadableDatabase, ReadableTable};
use uuid::Uuid;

use super::RedbStore;
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
    /// the cases and alerts that name them), from one read transaction.
    ///
    /// # Errors
    /// A table cannot be read, a value does not decode, or `sink` fails.
    pub fn export(
        &self,
        sink: &mut dyn FnMut(Record) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let r = self.db.begin_read()?;
        for row in r.open_table(META)?.iter()? {
            let (k, v) = row?;
            sink(Record::Meta {
                name: k.value().to_owned(),
                n: v.value(),
            })?;
        }
        for row in r.open_table(COUNTERS)?.iter()? {
            let (k, v) = row?;
            let (scope, name) = k.value();
            sink(Record::Counter {
                scope: scope.to_owned(),
                name: name.to_owned(),
                n: v.value(),
            })?;
        }
        for row in r.open_table(HOURLY)?.iter()? {
            let (k, v) = row?;
            let (gate, hour, figure) = k.value();
            sink(Record::Hourly {
                gate: gate.to_owned(),
                hour,
                figure: figure.to_owned(),
                n: v.value(),
            })?;
        }
        for row in r.open_table(AGENT_TOKENS)?.iter()? {
            let (k, v) = row?;
            let token = k.value().to_vec();
            let agent = decode("agent_tokens_v1", hex_of(&token), v.value())?;
            sink(Record::AgentToken { token, agent })?;
        }
        for row in r.open_table(GATES)?.iter()? {
            let (k, v) = row?;
            let gate = k.value().to_owned();
            let value = json("gates_v1", &gate, v.value())?;
            sink(Record::Gate { gate, value })?;
        }
        for row in r.open_table(EVENTS)?.iter()? {
            let (k, v) = row?;
            let (gate, seq) = k.value();
            let value = json("events_v1", format!("{gate}/{seq}"), v.value())?;
            sink(Record::Event {
                gate: gate.to_owned(),
                value,
            })?;
        }
        for row in r.open_table(ALERTS)?.iter()? {
            let (k, v) = row?;
            sink(Record::Alert(decode("alerts_v1", k.value(), v.value())?))?;
        }
        let cases = r.open_table(CASES)?;
        for row in cases.iter()? {
            let (k, v) = row?;
            sink(Record::Case(decode("cases_v1", k.value(), v.value())?))?;
        }
        for row in r.open_table(CASE_BY_GATE_TXN)?.iter()? {
            let (k, v) = row?;
            let (gate, txn) = k.value();
            sink(Record::CaseLink {
                gate: gate.to_owned(),
                txn: Uuid::from_u128(txn),
                case: v.value(),
            })?;
        }
        // Links of the earlier layout (by transaction only) take the gate of their case.
        for row in r.open_table(CASE_BY_TXN)?.iter()? {
            let (k, v) = row?;
            let id = v.value();
            if let Some(c) = cases.get(id)? {
                let case: Case = decode("cases_v1", id, c.value())?;
                sink(Record::CaseLink {
                    gate: case.gate.to_string(),
                    txn: Uuid::from_u128(k.value()),
                    case: id,
                })?;
            }
        }
        for row in r.open_table(CHANGES)?.iter()? {
            let (k, v) = row?;
            sink(Record::Change(decode("changes_v1", k.value(), v.value())?))?;
        }
        for row in r.open_table(OPERATORS)?.iter()? {
            let (k, v) = row?;
            let o: Versioned<_> = decode("operators_v1", k.value(), v.value())?;
            sink(Record::Operator {
                seq: o.seq,
                record: o.value,
            })?;
        }
        for row in r.open_table(MRAS)?.iter()? {
            let (k, v) = row?;
            let (a, b) = k.value();
            let m: Versioned<_> = decode("mras_v1", format!("{a}/{b}"), v.value())?;
            sink(Record::Mra {
                seq: m.seq,
                record: m.value,
            })?;
        }
        for row in r.open_table(CONSIGNMENTS)?.iter()? {
            let (k, v) = row?;
            let c: Versioned<_> = decode("consignments_v1", k.value(), v.value())?;
            sink(Record::Consignment {
                seq: c.seq,
                record: c.value,
            })?;
        }
        for row in r.open_table(AUDIT)?.iter()? {
            let (k, v) = row?;
            sink(Record::Audit(decode("audit_v1", k.value(), v.value())?))?;
        }
        for row in r.open_table(USERS)?.iter()? {
            let (k, v) = row?;
            sink(Record::User(decode("users_v1", k.value(), v.value())?))?;
        }
        for row in r.open_table(SESSIONS)?.iter()? {
            let (k, v) = row?;
            let token = k.value().to_vec();
            let session = decode("sessions_v1", hex_of(&token), v.value())?;
            sink(Record::Session { token, session })?;
        }
        for row in r.open_table(COMPANIES)?.iter()? {
            let (k, v) = row?;
            let company = decode("companies_v1", k.value(), v.value())?;
            sink(Record::Company(Box::new(company)))?;
        }
        for row in r.open_table(DOCUMENTS)?.iter()? {
            let (k, v) = row?;
            sink(Record::Document {
                sha256: k.value().to_owned(),
                body: v.value().to_vec(),
            })?;
        }
        super::rollup_tables::export(&r, sink)
    }
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
