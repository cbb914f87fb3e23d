//! Central's Prometheus metrics: what every family means (`# HELP`), the series that exist
//! from the start (counters at 0), the build-info series, and the `process_*` series read
//! at each scrape.
//!
//! Every family central records is described here; a family recorded elsewhere without a
//! line here shows up in `/metrics` without `# HELP` (the tests run promtool).

use metrics::{describe_counter, describe_gauge};

use crate::model::AlertKind;

/// Describes every family, sets the build-info series and registers every counter at 0
/// (once, after the recorder is installed).
pub fn describe() {
    describe_counter!(
        "central_programme_folded_batches_total",
        "Ingested batches whose programme roll-ups were folded from the queue (PostgreSQL)."
    );
    describe_gauge!(
        "central_programme_queue_batches",
        "Ingested batches whose programme roll-ups wait in the queue, after the last fold (PostgreSQL)."
    );
    describe_counter!(
        "central_entries_received_total",
        "Journal entries received from agents in ingest batches."
    );
    describe_counter!(
        "central_entries_stored_total",
        "Received journal entries stored for the first time."
    );
    describe_counter!(
        "central_entries_duplicate_total",
        "Received journal entries already stored with the same hash (resends)."
    );
    describe_counter!(
        "central_decisions_total",
        "Decided gate transactions stored, by outcome (FAST, STANDARD, INSPECT)."
    );
    describe_counter!(
        "central_cases_opened_total",
        "Cases opened (seal exceptions and integrity alerts)."
    );
    describe_counter!(
        "central_integrity_alerts_total",
        "Integrity alerts raised on ingest or reported by agents, by kind."
    );
    describe_counter!(
        "central_registry_changes_total",
        "Registry changes appended to the signed change log."
    );
    describe_counter!(
        "central_snapshots_served_total",
        "Signed registry snapshots served to agents."
    );
    describe_counter!(
        "central_snapshot_manifests_served_total",
        "Signed chunked-snapshot manifests served to agents."
    );
    describe_counter!(
        "central_snapshot_chunks_served_total",
        "Chunks of chunked snapshots served to agents."
    );
    describe_counter!(
        "central_exports_total",
        "Exports of decided transactions served, by format (csv, epcis)."
    );
    describe_counter!(
        "central_auth_failures_total",
        "Refused authentications, by who (agent token, agent certificate, staff login, throttled login)."
    );
    describe_counter!(
        "central_rate_limited_total",
        "Requests refused by the per-client rate limit."
    );
    describe_gauge!(
        "central_build_info",
        "Always 1; the labels name the running central's version."
    );
    metrics::gauge!("central_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    for name in [
        "central_entries_received_total",
        "central_entries_stored_total",
        "central_entries_duplicate_total",
        "central_cases_opened_total",
        "central_registry_changes_total",
        "central_snapshots_served_total",
        "central_snapshot_manifests_served_total",
        "central_snapshot_chunks_served_total",
        "central_rate_limited_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    for outcome in ["FAST", "STANDARD", "INSPECT"] {
        metrics::counter!("central_decisions_total", "outcome" => outcome).increment(0);
    }
    for kind in [
        AlertKind::HashMismatch,
        AlertKind::ChainBreak,
        AlertKind::SeqReused,
        AlertKind::IdReused,
        AlertKind::Gap,
        AlertKind::AgentReported,
        AlertKind::ForeignGate,
        AlertKind::ForeignTransaction,
        AlertKind::ForeignLane,
        AlertKind::TimeBackwards,
    ] {
        metrics::counter!("central_integrity_alerts_total", "kind" => kind.as_str()).increment(0);
    }
    for format in ["csv", "epcis"] {
        metrics::counter!("central_exports_total", "format" => format).increment(0);
    }
    for who in ["agent", "agent_cert", "staff", "throttled"] {
        metrics::counter!("central_auth_failures_total", "who" => who).increment(0);
    }
    aeogate_web::metrics::describe_process();
}
