//! Moving up from redb to PostgreSQL (`central migrate`): every record of a redb store,
//! copied into a PostgreSQL database as it is (ids, times, chain state, case history,
//! counters and programme roll-ups unchanged; nothing is re-derived by the rules), then
//! verified. The packed programme roll-ups (by day and month) are not copied: the target
//! builds them from the hourly counts it received, after the last chunk and before the
//! verification, which compares the figures over all time (read from the monthly rows).
//!
//! The source is read in one redb read transaction (one consistent snapshot); the target
//! is written in chunks of [`CHUNK`] records, each chunk one transaction. Every write is
//! idempotent (a row already there is left alone; counters, figures and id counters are
//! set to the source's value), so a copy that stopped part-way — killed, the database
//! away — is resumed by running it again. Central instances on the target should be
//! stopped while it runs.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{PgStore, RedbStore, Store, StoreError};
use crate::model::{AgentRecord, Alert, AuditEntry, Case, Session, StaffUser};
use protocol::schema::{Consignment, MraRecord, RegistryRecord};

/// Records written to the target per transaction.
pub const CHUNK: usize = 1_000;
/// Document bytes held for one transaction before it is written (documents are up to
/// [`crate::portal::MAX_DOCUMENT_BYTES`] each).
pub const CHUNK_DOCUMENT_BYTES: usize = 32 * 1024 * 1024;

/// One record of a store, as both backends keep it.
#[derive(Debug, Clone)]
pub enum Record {
    /// An id counter (`change_seq`, `case_id`, `alert_id`, `audit_id`).
    Meta {
        name: String,
        n: u64,
    },
    /// A summary counter.
    Counter {
        scope: String,
        name: String,
        n: u64,
    },
    /// An hourly figure.
    Hourly {
        gate: String,
        hour: i64,
        figure: String,
        n: u64,
    },
    AgentToken {
        token: Vec<u8>,
        agent: AgentRecord,
    },
    /// A gate row (port, agent state with its chain head, latest health), as JSON.
    Gate {
        gate: String,
        value: serde_json::Value,
    },
    /// A stored event as JSON (`entry`, `received_at`, `chain_ok`, `refused`).
    Event {
        gate: String,
        value: serde_json::Value,
    },
    Alert(Alert),
    Case(Case),
    /// A case's link to a gate transaction.
    CaseLink {
        gate: String,
        txn: uuid::Uuid,
        case: u64,
    },
    Change(super::LoggedChange),
    Operator {
        seq: u64,
        record: RegistryRecord,
    },
    Mra {
        seq: u64,
        record: MraRecord,
    },
    Consignment {
        seq: u64,
        record: Consignment,
    },
    Audit(AuditEntry),
    User(StaffUser),
    Session {
        token: Vec<u8>,
        session: Session,
    },
    /// A programme portal company.
    Company(Box<crate::portal::Company>),
    /// A company document's bytes, by their SHA-256.
    Document {
        sha256: String,
        body: Vec<u8>,
    },
    /// A programme roll-up count ([`crate::rollup`]) of the hour that starts at `start`.
    Programme {
        start: i64,
        group: String,
        figure: String,
        n: u64,
    },
    /// An operator's name as the programme roll-ups keep it.
    ProgrammeName {
        operator: String,
        name: String,
    },
    /// Halves of a gate transaction waiting for the other half of their pair.
    ProgrammePending {
        gate: String,
        txn: uuid::Uuid,
        halves: Vec<crate::rollup::Half>,
    },
}

impl Record {
    /// The family the record counts under in a [`Report`].
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Meta { .. } => "id counters",
            Record::Counter { .. } => "counters",
            Record::Hourly { .. } => "hourly figures",
            Record::AgentToken { .. } => "agent tokens",
            Record::Gate { .. } => "gates",
            Record::Event { .. } => "events",
            Record::Alert(_) => "alerts",
            Record::Case(_) => "cases",
            Record::CaseLink { .. } => "case links",
            Record::Change(_) => "registry changes",
            Record::Operator { .. } => "operators",
            Record::Mra { .. } => "MRAs",
            Record::Consignment { .. } => "consignments",
            Record::Audit(_) => "audit entries",
            Record::User(_) => "users",
            Record::Session { .. } => "sessions",
            Record::Company(_) => "companies",
            Record::Document { .. } => "documents",
            Record::Programme { .. } => "programme figures",
            Record::ProgrammeName { .. } => "programme names",
            Record::ProgrammePending { .. } => "programme pending halves",
        }
    }
}

/// What a copy did and found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Records read from the source, per family.
    pub copied: BTreeMap<String, u64>,
    /// Rows in the target after the copy, per family (equal to `copied` when verified).
    pub target: BTreeMap<String, u64>,
    /// Differences the verification found (empty: verified equal).
    pub differences: Vec<String>,
}

/// Copies every record of `from` into `to`, then verifies (see the module documentation).
///
/// # Errors
/// Reading the source or writing the target failed; the copy can be run again.
pub fn copy(from: &RedbStore, to: &PgStore) -> Result<Report, StoreError> {
    let mut report = Report::default();
    let mut chunk: Vec<Record> = Vec::with_capacity(CHUNK);
    let mut held = 0;
    from.export(&mut |r| {
        *report.copied.entry(r.kind().to_owned()).or_default() += 1;
        if let Record::Document { body, .. } = &r {
            held += body.len();
        }
        chunk.push(r);
        if chunk.len() >= CHUNK || held >= CHUNK_DOCUMENT_BYTES {
            to.import(&std::mem::take(&mut chunk))?;
            held = 0;
        }
        Ok(())
    })?;
    to.import(&chunk)?;
    // The packed roll-ups are made from the hourly counts the copy carried.
    to.rebuild_packed_rollups()?;
    verify(from, to, &mut report)?;
    Ok(report)
}

/// Compares the target with the source: rows per family, every gate's row (chain head,
/// agent state, health), the summary figures, the programme roll-ups over all time, the
/// registry head, and every document a company lists (present in the target with the
/// SHA-256 it is listed with).
fn verify(from: &RedbStore, to: &PgStore, report: &mut Report) -> Result<(), StoreError> {
    report.target = to.row_counts()?;
    for (kind, n) in &report.copied {
        // Id counters and figures are set, not counted, and may pre-exist as zeros.
        if matches!(kind.as_str(), "id counters" | "counters") {
            continue;
        }
        let got = report.target.get(kind).copied().unwrap_or(0);
        if got != *n {
            report
                .differences
                .push(format!("{kind}: {n} in the source, {got} in the target"));
        }
    }
    let (a, b) = (from.gates()?, to.gates()?);
    if a != b {
        for g in &a {
            let other = b.iter().find(|x| x.gate == g.gate);
            if other != Some(g) {
                report.differences.push(format!(
                    "gate {}: source {:?}, target {:?}",
                    g.gate,
                    g.state,
                    other.map(|o| &o.state)
                ));
            }
        }
        if b.len() != a.len() {
            report.differences.push(format!(
                "gates: {} in the source, {} in the target",
                a.len(),
                b.len()
            ));
        }
    }
    let (a, b) = (from.summary()?, to.summary()?);
    if a != b {
        report
            .differences
            .push(format!("summary: source {a:?}, target {b:?}"));
    }
    verify_documents(from, to, report)?;
    let all_time = jiff::Timestamp::MAX;
    let (a, b) = (
        from.programme_counts(None, all_time)?,
        to.programme_counts(None, all_time)?,
    );
    if a != b {
        report.differences.push(format!(
            "programme roll-ups: {} figures in the source, {} in the target, not equal",
            a.counts.len(),
            b.counts.len()
        ));
    }
    let (a, b) = (from.last_seq()?, to.last_seq()?);
    let head = |s: &dyn Store, seq: u64| -> Result<Option<super::LoggedChange>, StoreError> {
        Ok(s.changes_after(seq.saturating_sub(1), 1)?
            .into_iter()
            .next())
    };
    if a != b || head(from, a)? != head(to, b)? {
        report
            .differences
            .push(format!("registry head: source seq {a}, target seq {b}"));
    }
    Ok(())
}

/// Every document a company of the source lists is in the target, and its bytes there
/// hash to the SHA-256 it is listed with.
fn verify_documents(from: &RedbStore, to: &PgStore, report: &mut Report) -> Result<(), StoreError> {
    for company in from.companies()? {
        for d in &company.documents {
            let found = to.document(&d.sha256)?;
            let ok = found
                .as_deref()
                .is_some_and(|b| crate::portal::documents::sha256_hex(b) == d.sha256);
            if !ok {
                report.differences.push(format!(
                    "company {} document #{} ({}): {} in the target",
                    company.operator,
                    d.id,
                    d.sha256,
                    if found.is_some() {
                        "different bytes"
                    } else {
                        "missing"
                    }
                ));
            }
        }
    }
    Ok(())
}
