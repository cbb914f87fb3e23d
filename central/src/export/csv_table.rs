//! The CSV table: one row per decided transaction ([`CSV_COLUMNS`]).

use std::io;

use protocol::schema::{ActionKind, InspectionOutcome};

use super::ExportError;
use super::collect::{GateEvent, eseal_state_str};

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

/// A free-text cell that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab,
/// CR at the start) gets a leading `'` (OWASP "CSV Injection"). Identifiers in the other
/// columns are parsed values and are written as they are.
fn text_cell(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    }
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

/// Writes one CSV row per decided transaction under a [`CSV_COLUMNS`] header (RFC 4180
/// quoting; times in RFC 3339 UTC).
///
/// # Errors
/// When writing fails.
pub fn write_csv<W: io::Write>(events: &[GateEvent], out: W) -> Result<(), ExportError> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(CSV_COLUMNS)?;
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
            join(d.reasons.iter().map(|r| r.code.code())),
            d.priority.to_string(),
            text_cell(&d.route),
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
        w.write_record(&row)?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_like_free_text_is_defused() {
        assert_eq!(text_cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(text_cell("Lane 1 priority"), "Lane 1 priority");
    }
}
