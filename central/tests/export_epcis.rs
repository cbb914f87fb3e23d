//! The EPCIS 2.0 export of a known gate day (ingested through the real ingest path):
//! which events each decided transaction yields, their fields and extensions, ids,
//! locations, time zones and the API's rules. Schema validation is in `epcis_schema.rs`.
mod common;
mod export_fixture;

use axum::http::StatusCode;
use central::export::{ExportConfig, ExportQuery};
use export_fixture::*;
use serde_json::Value;

fn events_of(doc: &Value, txn: uuid::Uuid) -> Vec<&Value> {
    doc["epcisBody"]["eventList"]
        .as_array()
        .expect("eventList")
        .iter()
        .filter(|e| e["aeogate:transactionID"] == urn(txn).as_str())
        .collect()
}

fn pair(step: &str, disp: &str) -> (String, String) {
    (step.to_owned(), disp.to_owned())
}

#[tokio::test]
async fn each_decided_transaction_yields_the_events_its_decision_calls_for() {
    let day = gate_day(|_| {}).await;
    let a = day.export_ok("epcis", "application/ld+json").await;
    let doc = a.json();
    let t = day.txns;
    let steps = steps_by_txn(&doc);

    assert_eq!(
        steps[&urn(t.fast)],
        [
            pair("arriving", "in_progress"),
            pair("departing", "in_transit")
        ]
    );
    assert_eq!(
        steps[&urn(t.standard)],
        [
            pair("arriving", "in_progress"),
            pair("departing", "in_transit")
        ]
    );
    assert_eq!(
        steps[&urn(t.mismatch)],
        [
            pair("arriving", "in_progress"),
            pair("inspecting", "non_conformant")
        ]
    );
    assert_eq!(
        steps[&urn(t.intact)],
        [
            pair("arriving", "in_progress"),
            pair("inspecting", "container_open"),
            pair("inspecting", "conformant"),
        ]
    );
    assert_eq!(
        steps[&urn(t.hold)],
        [pair("arriving", "in_progress"), pair("holding", "")]
    );
    // Nothing identified: no events, but listed so the reader knows it exists.
    assert!(!steps.contains_key(&urn(t.bobtail)));
    assert_eq!(
        doc["aeogate:omittedTransactions"],
        serde_json::json!([urn(t.bobtail)])
    );
    // Other gate and the next day are outside the export.
    assert!(!steps.contains_key(&urn(t.other_gate)));
    assert!(!steps.contains_key(&urn(t.next_day)));
    assert_eq!(steps.len(), 5);

    // Document order is event time order.
    let times: Vec<jiff::Timestamp> = doc["epcisBody"]["eventList"]
        .as_array()
        .expect("list")
        .iter()
        .map(|e| {
            e["eventTime"]
                .as_str()
                .expect("time")
                .parse()
                .expect("RFC 3339")
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert_eq!(doc["@context"][1]["aeogate"], central::export::EXTENSION_NS);
}

#[tokio::test]
async fn arriving_event_lists_containers_and_pure_identity_tags_but_not_raw_epcs() {
    let day = gate_day(|_| {}).await;
    let doc = day.export("epcis").await.json();
    let evs = events_of(&doc, day.txns.fast);
    let arriving = evs[0];
    assert_eq!(
        arriving["epcList"],
        serde_json::json!([
            "urn:epc:id:bic:CSQU3054383",
            "urn:epc:id:sgtin:0614141.812345.6789"
        ])
    );
    assert_eq!(arriving["action"], "OBSERVE");
    assert_eq!(arriving["type"], "ObjectEvent");
    assert_eq!(arriving["eventTime"], "2026-03-04T08:00:00.000Z");
    assert_eq!(arriving["eventTimeZoneOffset"], "+00:00");
    assert_eq!(
        arriving["aeogate:sealsRead"],
        serde_json::json!(["CBP1234567"])
    );
    assert_eq!(
        arriving["aeogate:eSealsRead"],
        serde_json::json!([{"aeogate:eSealID": "0042-0001E240", "aeogate:eSealState": "SEALED"}])
    );
    // The departing event carries the decision, and what was declared (from the registry).
    let departing = evs[1];
    assert_eq!(departing["eventTime"], "2026-03-04T08:00:20.000Z");
    assert_eq!(departing["aeogate:decision"], "FAST");
    assert_eq!(
        departing["aeogate:reasons"],
        serde_json::json!(["ALL_CHECKS_PASSED"])
    );
    assert_eq!(
        departing["aeogate:sealsDeclared"],
        serde_json::json!(["CBP1234567"])
    );
    assert_eq!(
        departing["aeogate:eSealsDeclared"],
        serde_json::json!(["0042-0001E240"])
    );
    assert_eq!(departing["aeogate:replicaAgeSeconds"], 120);
    assert!(departing.get("aeogate:caseID").is_none());
}

#[tokio::test]
async fn a_reason_code_shared_by_two_parties_is_one_entry_with_both_parties() {
    let day = gate_day(|_| {}).await;
    let doc = day.export("epcis").await.json();
    let departing = events_of(&doc, day.txns.standard)[1];
    assert_eq!(
        departing["aeogate:reasons"],
        serde_json::json!(["PARTY_UNKNOWN", "PARTY_NO_SECURITY"])
    );
    assert_eq!(
        departing["aeogate:reasonParties"],
        serde_json::json!([{
            "aeogate:reason": "PARTY_UNKNOWN",
            "aeogate:parties": [
                {"aeogate:role": "IMPORTER", "aeogate:operatorID": "EU-AEO:FR12345678901", "aeogate:name": "Importer SA"},
                {"aeogate:role": "CARRIER", "aeogate:name": "Carrier Ltd"},
            ],
        }])
    );
}

#[tokio::test]
async fn seal_mismatch_event_names_declared_and_read_seals_reasons_and_case() {
    let day = gate_day(|_| {}).await;
    let doc = day.export("epcis").await.json();
    let insp = events_of(&doc, day.txns.mismatch)[1];
    assert_eq!(insp["bizStep"], "inspecting");
    assert_eq!(insp["aeogate:decision"], "INSPECT");
    assert_eq!(
        insp["aeogate:reasons"],
        serde_json::json!(["SEAL_MISMATCH"])
    );
    assert_eq!(
        insp["aeogate:sealsDeclared"],
        serde_json::json!(["ABC1234567"])
    );
    assert_eq!(insp["aeogate:sealsRead"], serde_json::json!(["XYZ9999999"]));
    let case_id = insp["aeogate:caseID"].as_u64().expect("case id");
    let case = common::call(
        &day.env.central,
        "GET",
        &format!("/api/v1/cases/{case_id}"),
        Some(&day.staff),
        None,
    )
    .await;
    assert_eq!(
        case.json["case"]["subject"]["transaction_id"],
        day.txns.mismatch.to_string()
    );
}

#[tokio::test]
async fn officer_intact_result_is_conformant_and_leaves_the_container_closed() {
    let day = gate_day(|_| {}).await;
    let doc = day.export("epcis").await.json();
    let evs = events_of(&doc, day.txns.intact);
    assert_eq!(
        evs[1]["aeogate:reasons"],
        serde_json::json!(["ESEAL_OPENED"])
    );
    assert_eq!(
        evs[1]["aeogate:eSealsRead"],
        serde_json::json!([{"aeogate:eSealID": "0042-0001E241", "aeogate:eSealState": "OPENED"}])
    );
    let result = evs[2];
    assert_eq!(result["eventTime"], "2026-03-04T10:10:00.000Z");
    assert_eq!(result["disposition"], "conformant");
    assert_eq!(
        result["persistentDisposition"],
        serde_json::json!({"set": ["container_closed"]})
    );
    assert_eq!(result["aeogate:inspectionResult"], "SEAL_INTACT");
    assert_eq!(
        result["aeogate:officerActionID"],
        urn(day.txns.intact_action).as_str()
    );
    assert!(result["aeogate:caseID"].is_u64());
}

#[tokio::test]
async fn event_ids_are_unique_and_the_same_on_every_export() {
    let day = gate_day(|_| {}).await;
    let c = &day.env.central;
    let q = ExportQuery {
        gate: Some(common::gate(GATE)),
        from: Some(common::ts(FROM)),
        to: Some(common::ts(TO)),
    };
    let created = common::ts("2026-03-05T06:00:00Z");
    let export = || {
        let evs = c.export_events(&q).expect("collect");
        central::export::epcis_document(&evs, &c.config().export, created)
    };
    let (a, b) = (export(), export());
    assert_eq!(a, b, "same entries, same document");
    let ids: Vec<&str> = a["epcisBody"]["eventList"]
        .as_array()
        .expect("list")
        .iter()
        .map(|e| e["eventID"].as_str().expect("eventID"))
        .collect();
    let unique: std::collections::BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");
    assert!(ids.iter().all(|i| i.starts_with("urn:uuid:")));
    assert_eq!(a["creationDate"], "2026-03-05T06:00:00.000Z");
}

#[tokio::test]
async fn read_points_use_configured_sglns_and_the_base_uri_otherwise() {
    let day = gate_day(|cfg| {
        cfg.export = ExportConfig::default();
        cfg.export
            .gates
            .insert(common::gate(GATE), common::gate3_locations());
    })
    .await;
    let doc = day.export("epcis").await.json();
    let l1 = events_of(&doc, day.txns.fast)[0];
    assert_eq!(l1["readPoint"]["id"], "urn:epc:id:sgln:0614141.00777.GATE3");
    assert_eq!(l1["bizLocation"]["id"], "urn:epc:id:sgln:0614141.00777.0");
    assert_eq!(l1["eventTimeZoneOffset"], "-05:00");
    // eventTime stays UTC; the offset says where the gate's clock stood.
    assert_eq!(l1["eventTime"], "2026-03-04T08:00:00.000Z");
    let l2 = events_of(&doc, day.txns.standard)[0];
    assert_eq!(
        l2["readPoint"]["id"],
        "https://id.example.invalid/aeogate/gate/P1-G1/lane/L2"
    );
}

#[tokio::test]
async fn export_needs_a_staff_session_and_a_sensible_range() {
    let day = gate_day(|_| {}).await;
    let c = &day.env.central;
    for path in ["epcis", "events.csv"] {
        let a = get(c, &day_uri(path), None).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{path}");
        let a = get(c, &day_uri(path), Some("not-a-session")).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{path}");
        let uri = format!("/api/v1/export/{path}?from={TO}&to={FROM}");
        let a = get(c, &uri, Some(&day.staff)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(a.text().contains("must be before"), "{}", a.text());
        let a = get(
            c,
            &format!("/api/v1/export/{path}?from=yesterday"),
            Some(&day.staff),
        )
        .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(a.text().contains("RFC 3339"), "{}", a.text());
        let a = get(
            c,
            &format!("/api/v1/export/{path}?gate=a%20b"),
            Some(&day.staff),
        )
        .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{path}");
    }
}

#[tokio::test]
async fn without_a_gate_every_gate_of_the_range_is_exported() {
    let day = gate_day(|_| {}).await;
    let uri = format!("/api/v1/export/epcis?from={FROM}&to={TO}");
    let doc = get(&day.env.central, &uri, Some(&day.staff)).await.json();
    let steps = steps_by_txn(&doc);
    assert!(steps.contains_key(&urn(day.txns.other_gate)));
    assert!(!steps.contains_key(&urn(day.txns.next_day)));
    assert_eq!(steps.len(), 6);
}
