//! The CSV export of a known gate day (ingested through the real ingest path), over the
//! API and through the `central export` command on the same redb file.
mod common;
mod export_fixture;

use std::collections::HashMap;
use std::process::Command;

use central::export::CSV_COLUMNS;
use export_fixture::*;

/// Rows as column → cell, keyed by transaction id; checks the header on the way.
fn rows(text: &str) -> HashMap<String, HashMap<String, String>> {
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = r
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(header, CSV_COLUMNS);
    let mut out = HashMap::new();
    for rec in r.records() {
        let rec = rec.expect("record");
        let row: HashMap<String, String> = header
            .iter()
            .cloned()
            .zip(rec.iter().map(str::to_owned))
            .collect();
        out.insert(row["transaction_id"].clone(), row);
    }
    out
}

#[tokio::test]
async fn one_row_per_decided_transaction_of_the_gate_and_day() {
    let day = gate_day(|_| {}).await;
    let a = day.export_ok("events.csv", "text/csv; charset=utf-8").await;
    let disp = a
        .headers
        .get("content-disposition")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        disp.contains("aeogate-P1-G1-20260304T000000Z.csv"),
        "{disp}"
    );
    let rows = rows(&a.text());
    let t = day.txns;
    let mut got: Vec<&String> = rows.keys().collect();
    got.sort();
    let mut want: Vec<String> = [t.fast, t.standard, t.mismatch, t.intact, t.hold, t.bobtail]
        .iter()
        .map(ToString::to_string)
        .collect();
    want.sort();
    assert_eq!(got, want.iter().collect::<Vec<_>>());

    let fast = &rows[&t.fast.to_string()];
    assert_eq!(fast["decided_at"], "2026-03-04T08:00:20Z");
    assert_eq!(fast["arrived_at"], "2026-03-04T08:00:00Z");
    assert_eq!(fast["gate"], "P1-G1");
    assert_eq!(fast["lane"], "L1");
    assert_eq!(fast["containers"], "CSQU3054383");
    assert_eq!(fast["tags"], "urn:epc:id:sgtin:0614141.812345.6789");
    assert_eq!(fast["seals_declared"], "CBP1234567");
    assert_eq!(fast["seals_read"], "CBP1234567");
    assert_eq!(fast["eseals_read"], "0042-0001E240:SEALED");
    assert_eq!(fast["decision"], "FAST");
    assert_eq!(fast["reasons"], "ALL_CHECKS_PASSED");
    assert_eq!(fast["priority"], "false");
    assert_eq!(fast["replica_age_s"], "120");
    assert_eq!(fast["case_id"], "");

    // One entry per code, the parties inside it, in the decision's order.
    assert_eq!(
        rows[&t.standard.to_string()]["reasons"],
        "PARTY_UNKNOWN (IMPORTER EU-AEO:FR12345678901, CARRIER);PARTY_NO_SECURITY"
    );

    let mismatch = &rows[&t.mismatch.to_string()];
    assert_eq!(mismatch["decision"], "INSPECT");
    assert_eq!(mismatch["reasons"], "SEAL_MISMATCH");
    assert_eq!(mismatch["seals_declared"], "ABC1234567");
    assert_eq!(mismatch["seals_read"], "XYZ9999999");
    assert!(mismatch["case_id"].parse::<u64>().is_ok(), "{mismatch:?}");
    assert_eq!(mismatch["case_state"], "OPEN");

    let intact = &rows[&t.intact.to_string()];
    assert_eq!(intact["inspection_results"], "SEAL_INTACT");
    assert_eq!(intact["eseals_read"], "0042-0001E241:OPENED");
    assert_ne!(intact["case_id"], mismatch["case_id"]);

    assert_eq!(rows[&t.bobtail.to_string()]["containers"], "");
    assert_eq!(
        rows[&t.hold.to_string()]["case_id"],
        "",
        "a risk hold opens no case"
    );
}

#[tokio::test]
async fn free_text_is_quoted_and_formulas_are_defused() {
    let day = gate_day(|_| {}).await;
    let text = day.export("events.csv").await.text();
    // RFC 4180: a cell with a comma or quote is quoted, inner quotes doubled.
    assert!(text.contains(r#","Lane 2, ""standard"" queue","#), "{text}");
    let rows = rows(&text);
    assert_eq!(
        rows[&day.txns.standard.to_string()]["route"],
        "Lane 2, \"standard\" queue"
    );
    assert_eq!(
        rows[&day.txns.hold.to_string()]["route"],
        "'=Inspection bay"
    );
}

#[tokio::test]
async fn the_export_command_writes_the_same_rows_as_the_api() {
    let day = gate_day(|_| {}).await;
    let api = day.export("events.csv").await.text();
    let common::Env { dir, cfg, central } = day.env;
    drop(central); // the command opens the same redb file, which allows one owner
    let config = common::write_config(dir.path(), &cfg, "127.0.0.1:0", "");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_central"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .env_remove("CENTRAL_CONFIG")
            .output()
            .expect("run central");
        assert!(
            out.status.success(),
            "central {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };

    let csv_path = dir.path().join("day.csv");
    let csv_arg = csv_path.to_str().expect("utf-8 path");
    let out = run(&[
        "export", "csv", "--gate", GATE, "--from", FROM, "--to", TO, "--out", csv_arg,
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("6 decided transactions"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&csv_path).expect("csv"), api);

    // EPCIS to standard output.
    let out = run(&[
        "export", "epcis", "--gate", GATE, "--from", FROM, "--to", TO,
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("EPCIS JSON");
    assert_eq!(doc["type"], "EPCISDocument");
    assert_eq!(steps_by_txn(&doc).len(), 5);
}
