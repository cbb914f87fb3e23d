//! The CSV table: one row per decided transaction ([`CSV_COLUMNS`]).

use std::io;

use protocol::schema::{ActionKind, InspectionOutcome};

use super::ExportError;
use super::collect::{GateEvent, ReasonLine, eseal_state_str, reason_lines};
use super::csv_out::CsvOut;

/// The CSV header, one column per field (docs/central.md, "Exports"). Lists inside a
/// cell are separated by `;`.
pub const CSV_COLUMNS: &[&str] = &[
    "decided_at",
    "gate",
    "lane",
    "transaction_id",
    "arrived_at",
    "containers",
    "tags",
    "seals_declared",
    "seals_read",
    "eseals_declared",
    "eseals_read",
    "decision",
    "reasons",
    "priority",
    "route",
    "replica_seq",
    "replica_age_s",
    "replica_stale",
    "case_id",
    "case_state",
    "inspection_results",
];

fn join<I: IntoIterator<Item = S>, S: AsRef<str>>(items: I) -> String {
    let mut s = String::new();
    for (i, x) in items.into_iter().enumerate() {
        if i > 0 {
            s.push(';');
        }
        s.push_str(x.as_ref());
    }
    s
}

/// One reason code, with its parties in brackets: `PARTY_UNKNOWN (IMPORTER
/// EU-AEO:FR12345678901, CARRIER)` (a party without an operator id by its role alone).
fn reason_cell(l: &ReasonLine<'_>) -> String {
    let mut s = l.code.code().to_owned();
    for (i, p) in l.parties.iter().enumerate() {
        s.push_str(if i == 0 { " (" } else { ", " });
        s.push_str(p.role.as_str());
        if let Some(o) = &p.operator {
            s.push(' ');
            s.push_str(&o.to_string());
        }
    }
    if !l.parties.is_empty() {
        s.push(')');
    }
    s
}

pub(super) fn outcome_code(o: &InspectionOutcome) -> &'static str {
    match o {
        InspectionOutcome::SealIntact => "SEAL_INTACT",
        InspectionOutcome::SealReplaced { .. } => "SEAL_REPLACED",
        InspectionOutcome::ContainerOpened => "CONTAINER_OPENED",
        InspectionOutcome::DiscrepancyConfirmed => "DISCREPANCY_CONFIRMED",
        InspectionOutcome::FalseRead => "FALSE_READ",
    }
}

/// Writes one CSV row per decided transaction under a [`CSV_COLUMNS`] header, through
/// [`CsvOut`] (RFC 4180 quoting, formula-like cells defused; times in RFC 3339 UTC).
///
/// # Errors
/// When writing fails.
pub fn write_csv<W: io::Write>(events: &[GateEvent], out: W) -> Result<(), ExportError> {
    let mut w = CsvOut::new(out);
    w.row(CSV_COLUMNS)?;
    for e in events {
        let d = &e.decision;
        let eseals_read = e
            .eseals_read()
            .into_iter()
            .map(|(id, st)| format!("{id}:{}", eseal_state_str(st)));
        let inspections = e.inspections.iter().filter_map(|a| match &a.kind {
            ActionKind::InspectionResult { result, .. } => Some(match result {
                InspectionOutcome::SealReplaced { new_seal } => {
                    format!("SEAL_REPLACED:{new_seal}")
                }
                other => outcome_code(other).to_owned(),
            }),
            _ => None,
        });
        let row: Vec<String> = vec![
            d.decided_at.to_string(),
            d.gate.to_string(),
            d.lane.to_string(),
            d.transaction_id.to_string(),
            e.transaction
                .as_ref()
                .map(|t| t.opened_at.to_string())
                .unwrap_or_default(),
            join(e.containers()),
            join(e.tag_uris()),
            join(&e.declared_seals),
            join(e.seals_read()),
            join(&e.declared_eseals),
            join(eseals_read),
            d.decision.as_str().to_owned(),
            join(reason_lines(d).iter().map(reason_cell)),
            d.priority.to_string(),
            d.route.clone(),
            d.replica.sequence.to_string(),
            d.replica.age_s.map(|a| a.to_string()).unwrap_or_default(),
            d.replica.stale.to_string(),
            e.case
                .as_ref()
                .map(|c| c.id.to_string())
                .unwrap_or_default(),
            e.case
                .as_ref()
                .map(|c| c.state.as_str().to_owned())
                .unwrap_or_default(),
            join(inspections),
        ];
        w.row(&row)?;
    }
    w.finish()?;
    Ok(())
}
