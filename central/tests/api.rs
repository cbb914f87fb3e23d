//! Central's API through its router (`oneshot`), over a real redb file in a tempdir.
mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use protocol::operator::OperatorId;
use protocol::schema::{AeoStatus, Change, ChangeBatch, Consignment, GateId, SCHEMA_VERSION};
use uuid::Uuid;

/// Gate P1-G1 of port P1, and an agent token for it.
fn p1_g1(e: &Env) -> (GateId, String) {
    let g = gate("P1-G1");
    let token = e.central.issue_agent_token(&g, "P1").expect("token");
    (g, token)
}

// ---------------------------------------------------------------------------------------
// ingest
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn duplicate_and_out_of_order_batches_are_stored_once() {
    let e = env();
    let (g, token) = p1_g1(&e);
    let entries = chain(&g, (0..4).map(|_| fast_decision(&g)).collect());

    let a = ingest(&e.central, &g, &token, &entries[2..4]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert_eq!(
        (a.json["acked_through"].as_u64(), a.json["stored"].as_u64()),
        (Some(0), Some(2))
    );

    let a = ingest(&e.central, &g, &token, &entries[0..3]).await;
    assert_eq!(a.json["acked_through"], 4);
    assert_eq!(
        (a.json["stored"].as_u64(), a.json["duplicates"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(a.json["alerts"], serde_json::json!([]));

    let a = ingest(&e.central, &g, &token, &entries).await;
    assert_eq!(
        (a.json["stored"].as_u64(), a.json["duplicates"].as_u64()),
        (Some(0), Some(4))
    );

    let s = e.central.summary().expect("summary");
    assert_eq!(s.events_per_gate.get("P1-G1"), Some(&4));
    assert_eq!(s.decisions.get("FAST"), Some(&4));
    assert_eq!(s.alerts, 0);
}

#[tokio::test]
async fn forged_token_and_another_gates_token_are_refused_and_nothing_is_stored() {
    let e = env();
    let g1 = gate("P1-G1");
    let _t1 = e.central.issue_agent_token(&g1, "P1").expect("token");
    let t2 = e
        .central
        .issue_agent_token(&gate("P1-G2"), "P1")
        .expect("token");
    let body = batch(&g1, &chain(&g1, vec![fast_decision(&g1)]));
    let uri = "/api/v1/agents/P1-G1/events";

    let forged = "00".repeat(32);
    let a = call(&e.central, "POST", uri, Some(&forged), Some(&body)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.json["error"].is_string(), "{}", a.json);
    let a = call(&e.central, "POST", uri, None, Some(&body)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = call(&e.central, "POST", uri, Some(&t2), Some(&body)).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.json["error"].as_str().expect("error").contains("P1-G2"));

    assert!(
        e.central
            .summary()
            .expect("summary")
            .events_per_gate
            .is_empty()
    );
}

#[tokio::test]
async fn chain_break_raises_an_alert_and_opens_a_case() {
    let e = env();
    let (g, token) = p1_g1(&e);
    let good = chain(&g, vec![fast_decision(&g), fast_decision(&g)]);
    // Entry 2 re-chained onto a different predecessor: a valid hash, a broken link.
    let other = chain(&g, vec![fast_decision(&g), fast_decision(&g)]);
    ingest(&e.central, &g, &token, &good[..1]).await;
    let a = ingest(&e.central, &g, &token, &other[1..]).await;
    assert_eq!(a.status, StatusCode::OK);
    let alerts = a.json["alerts"].as_array().expect("alerts");
    assert_eq!(alerts.len(), 1, "{}", a.json);
    assert!(
        alerts[0]
            .as_str()
            .expect("text")
            .starts_with("CHAIN_BREAK at seq 2")
    );

    let s = e.central.summary().expect("summary");
    assert_eq!((s.alerts, s.cases_open), (1, 1));
    let cases = open_cases(&e.central).await;
    assert_eq!(cases["items"][0]["subject"]["type"], "INTEGRITY");
    assert_eq!(cases["items"][0]["subject"]["kind"], "CHAIN_BREAK");
}

#[tokio::test]
async fn tampered_entry_is_not_stored_and_reuse_of_a_seq_is_an_alert() {
    let e = env();
    let (g, token) = p1_g1(&e);
    let mut entries = chain(&g, vec![fast_decision(&g)]);
    let original = entries.clone();
    entries[0].body = seal_exception(&g, Uuid::now_v7());
    let a = ingest(&e.central, &g, &token, &entries).await;
    assert_eq!(
        (a.json["stored"].as_u64(), a.json["acked_through"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(
        a.json["alerts"][0]
            .as_str()
            .expect("alert")
            .starts_with("HASH_MISMATCH")
    );

    ingest(&e.central, &g, &token, &original).await;
    let rewritten = chain(&g, vec![seal_exception(&g, Uuid::now_v7())]);
    let a = ingest(&e.central, &g, &token, &rewritten).await;
    assert_eq!(a.json["acked_through"], 1);
    assert!(
        a.json["alerts"][0]
            .as_str()
            .expect("alert")
            .starts_with("SEQ_REUSED")
    );
}

#[tokio::test]
async fn an_entry_is_kept_as_the_agent_hashed_it_even_with_a_field_this_version_does_not_know() {
    let e = env();
    let (g, token) = p1_g1(&e);
    // A newer agent's decision: a body field this version does not read, in the hash.
    let [first] = &chain(&g, vec![fast_decision(&g)])[..] else {
        panic!("one entry")
    };
    let mut body = serde_json::to_value(&first.body).expect("body");
    body["lane_camera"] = "cam-7".into();
    let raw = serde_json::value::RawValue::from_string(body.to_string()).expect("raw");
    let hash = protocol::schema::entry_hash(
        &first.prev_hash,
        first.v,
        &g,
        first.seq,
        &first.id,
        &first.at,
        &*raw,
    )
    .expect("hash");
    let mut entry = serde_json::to_value(first).expect("entry");
    entry["hash"] = hash.clone().into();
    entry["body"] = body;
    let mut posted = batch(&g, &[]);
    posted["entries"] = serde_json::json!([entry]);
    let json = Some("application/json");
    let (s, text) = raw_ingest(
        &e.central,
        &g,
        &token,
        json,
        serde_json::to_vec(&posted).expect("json"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let ack: serde_json::Value = serde_json::from_str(&text).expect("ack");
    assert_eq!(ack["stored"], 1, "{ack}");
    assert_eq!(ack["alerts"], serde_json::json!([]), "not a hash mismatch");
    let staff = staff(&e.central).await;
    let a = get(&e.central, "/api/v1/events?gate=P1-G1", Some(&staff)).await;
    let stored = &a.json["items"][0]["entry"];
    assert_eq!(
        stored["hash"],
        hash.as_str(),
        "stored under the agent's hash"
    );
    assert_eq!(stored["body"]["decision"]["decision"], "FAST", "{stored}");

    // Bodies written with other spacing (re-encoded on their way) are still the entries
    // the agent hashed: stored, no mismatch.
    let g2 = gate("P1-G2");
    let token2 = e.central.issue_agent_token(&g2, "P1").expect("token");
    let entries = chain(&g2, vec![fast_decision(&g2), fast_decision(&g2)]);
    let spaced = serde_json::to_string_pretty(&batch(&g2, &entries)).expect("json");
    let (s, text) = raw_ingest(&e.central, &g2, &token2, json, spaced.into_bytes()).await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let ack: serde_json::Value = serde_json::from_str(&text).expect("ack");
    assert_eq!(
        (ack["stored"].as_u64(), ack["acked_through"].as_u64()),
        (Some(2), Some(2)),
        "{ack}"
    );
    assert_eq!(ack["alerts"], serde_json::json!([]), "{ack}");
}

#[tokio::test]
async fn too_many_entries_and_too_large_bodies_get_413_with_a_json_error() {
    let e = env();
    let (g, token) = p1_g1(&e);
    let uri = "/api/v1/agents/P1-G1/events";
    let entries = chain(&g, (0..1001).map(|_| fast_decision(&g)).collect());
    let a = ingest(&e.central, &g, &token, &entries).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        a.json["error"]
            .as_str()
            .expect("error")
            .contains("1001 entries")
    );

    let mut big = batch(&g, &[]);
    big["padding"] = serde_json::Value::String("x".repeat(5 << 20));
    let a = call(&e.central, "POST", uri, Some(&token), Some(&big)).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(a.json["error"].is_string(), "{}", a.json);
}

/// Posts `body` with `content_type` to gate `g`'s ingest endpoint; status and error text.
async fn raw_ingest(
    c: &central::Central,
    g: &protocol::schema::GateId,
    token: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, String) {
    let mut req = axum::http::Request::builder()
        .method("POST")
        .uri(format!("/api/v1/agents/{g}/events"))
        .header("authorization", format!("Bearer {token}"));
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = through_router(c, req.body(axum::body::Body::from(body)).expect("request")).await;
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn a_batch_that_is_not_json_or_not_a_batch_is_refused_with_its_reason_and_stores_nothing() {
    let e = env();
    let (g, token) = p1_g1(&e);
    let entries = chain(&g, (0..4).map(|_| fast_decision(&g)).collect());
    let good = serde_json::to_vec(&batch(&g, &entries[..3])).expect("json");

    let mut cut = good.clone();
    cut.truncate(good.len() / 2);
    let mut wrong = batch(&g, &entries[..3]);
    wrong["entries"] = serde_json::json!("not a list");
    let wrong = serde_json::to_vec(&wrong).expect("json");
    let json = Some("application/json");
    let stored = || {
        let s = e.central.summary().expect("summary");
        s.events_per_gate.get("P1-G1").copied()
    };
    // (content type, body, status, what the refusal says)
    let refused = [
        (
            None,
            good.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type",
        ),
        (
            Some("text/plain"),
            good.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type",
        ),
        (json, cut, StatusCode::BAD_REQUEST, "EOF"),
        (json, wrong, StatusCode::UNPROCESSABLE_ENTITY, "entries"),
    ];
    for (ct, body, status, says) in refused {
        let (s, text) = raw_ingest(&e.central, &g, &token, ct, body).await;
        assert_eq!(s, status, "{ct:?}: {text}");
        assert!(
            text.contains(says),
            "{ct:?}: the refusal says {says:?}: {text}"
        );
    }
    assert_eq!(stored(), None, "nothing stored from a refused body");

    // A JSON type with parameters, or a `+json` type, is JSON.
    let more = serde_json::to_vec(&batch(&g, &entries[3..])).expect("json");
    let accepted = [
        ("Application/JSON; charset=utf-8", good),
        ("application/vnd.aeogate+json", more),
    ];
    for (ct, body) in accepted {
        let (s, text) = raw_ingest(&e.central, &g, &token, Some(ct), body).await;
        assert_eq!(s, StatusCode::OK, "{ct}: {text}");
    }
    assert_eq!(stored(), Some(4));
}

// ---------------------------------------------------------------------------------------
// heartbeats
// ---------------------------------------------------------------------------------------

fn heartbeat(g: &protocol::schema::GateId) -> serde_json::Value {
    serde_json::json!({
        "v": SCHEMA_VERSION, "agent": g, "at": jiff::Timestamp::now(), "devices": [],
        "replica_seq": 0, "journal_head": 0, "acked_seq": 0, "backlog": 0, "version": "test",
    })
}

#[tokio::test]
async fn gate_without_heartbeats_for_stale_after_is_reported_stale() {
    let e = env_with(|c| c.stale_after = Duration::from_millis(300));
    let (g, token) = p1_g1(&e);
    let staff = staff(&e.central).await;
    let gates = get(&e.central, "/api/v1/gates", Some(&staff)).await;
    assert_eq!(gates.json[0]["stale"], true, "never heard from");

    let a = call(
        &e.central,
        "POST",
        "/api/v1/agents/P1-G1/heartbeat",
        Some(&token),
        Some(&heartbeat(&g)),
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.json);
    let gates = get(&e.central, "/api/v1/gates", Some(&staff)).await;
    assert_eq!(gates.json[0]["stale"], false, "{}", gates.json);
    assert!(gates.json[0]["last_heartbeat"]["clock_offset_ms"].is_i64());

    tokio::time::sleep(Duration::from_millis(400)).await;
    let gates = get(&e.central, "/api/v1/gates", Some(&staff)).await;
    assert_eq!(gates.json[0]["stale"], true);
}

// ---------------------------------------------------------------------------------------
// registry
// ---------------------------------------------------------------------------------------

fn consignment(id: &str, port: &str) -> Consignment {
    declared_consignment(id, "CSQU3054383", port)
}

const OPERATOR: &str = "EU-AEO:DE123456789012345";

/// Central with the operator [`OPERATOR`] registered; with the token of gate P1-G1, an
/// agent of port P1.
fn registry_env() -> (common::Env, String) {
    let e = env();
    let token = e
        .central
        .issue_agent_token(&gate("P1-G1"), "P1")
        .expect("token");
    e.central
        .import_records(vec![operator_record(OPERATOR)], "test")
        .expect("records");
    (e, token)
}

/// A whole snapshot is held in memory while it is made, so central makes one at a time:
/// a request meanwhile is answered 503 with `Retry-After` (and names the chunked
/// snapshot), and once the first is done the next is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whole_snapshot_asked_while_another_is_made_is_answered_503_with_retry_after() {
    use tower::ServiceExt as _;
    let (e, token) = registry_env();
    let records: Vec<_> = (0..10_000)
        .map(|i| operator_record(&format!("EU-AEO:DE{i:015}")))
        .collect();
    e.central.import_records(records, "test").expect("records");
    let ask = |c: central::Central, token: String| async move {
        let req = axum::http::Request::builder()
            .uri("/api/v1/registry/snapshot?port=P1")
            .header("authorization", format!("Bearer {token}"))
            .body(axum::body::Body::empty())
            .expect("request");
        let resp = tokio::time::timeout(Duration::from_secs(60), central::app(c).oneshot(req))
            .await
            .expect("answer in time")
            .expect("infallible");
        let status = resp.status();
        let retry = resp
            .headers()
            .get(axum::http::header::RETRY_AFTER)
            .map(|v| v.to_str().expect("ascii").to_owned());
        let body = axum::body::to_bytes(resp.into_body(), 256 << 20)
            .await
            .expect("body");
        (status, retry, body.len())
    };
    // Bounded: a few rounds of four requests at once; one round with an overlap suffices.
    let mut busy = None;
    for _ in 0..3 {
        let answers = futures_util::future::join_all(
            (0..4).map(|_| tokio::spawn(ask(e.central.clone(), token.clone()))),
        )
        .await;
        let answers: Vec<_> = answers.into_iter().map(|a| a.expect("task")).collect();
        assert!(
            answers.iter().any(|a| a.0 == StatusCode::OK),
            "one is made: {answers:?}"
        );
        for a in &answers {
            assert!(
                a.0 == StatusCode::OK || a.0 == StatusCode::SERVICE_UNAVAILABLE,
                "{a:?}"
            );
        }
        if let Some(a) = answers
            .iter()
            .find(|a| a.0 == StatusCode::SERVICE_UNAVAILABLE)
        {
            busy = Some(a.clone());
            break;
        }
    }
    let busy = busy.expect("four requests at once overlapped in at least one round");
    assert_eq!(busy.1.as_deref(), Some("5"), "Retry-After");
    let (status, _, len) = ask(e.central.clone(), token.clone()).await;
    assert_eq!(status, StatusCode::OK, "the next one alone is made");
    assert!(len > 10_000 * 100, "the whole snapshot: {len} bytes");
}

#[tokio::test]
async fn signed_snapshot_verifies_holds_only_the_ports_consignments_and_edits_fail() {
    let (e, token) = registry_env();
    let as_agent = |uri: &'static str| get(&e.central, uri, Some(&token));
    e.central
        .import_consignments(
            vec![consignment("B1", "P1"), consignment("B2", "P2")],
            "test",
        )
        .expect("consignments");
    let a = as_agent("/api/v1/registry/snapshot?port=P1").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    let (env, b) = verified(&e.central, a.json);
    assert_eq!(env.key_id, e.central.key_id());
    assert!(b.snapshot && b.after_seq == 0 && b.last_seq == 3 && b.port == "P1");
    let ids: Vec<_> = b
        .changes
        .iter()
        .filter_map(|c| match &c.change {
            Change::UpsertConsignment { consignment } => Some(consignment.id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(ids, ["B1"]);
    assert_eq!(b.changes.len(), 2);

    let mut forged = env.clone();
    forged.payload = forged.payload.replace("\"ACTIVE\"", "\"SUSPENDED\"");
    assert_ne!(forged.payload, env.payload);
    assert!(verify(&forged, &e.central.public_key_hex()).is_err());

    let a = as_agent("/api/v1/registry/snapshot?port=P2").await;
    assert_eq!(
        a.status,
        StatusCode::FORBIDDEN,
        "the token's scope is port P1"
    );
    let keys = get(&e.central, "/api/v1/registry/keys", None).await;
    assert_eq!(keys.json[0]["public_key"], e.central.public_key_hex());
}

#[tokio::test]
async fn changes_are_contiguous_filtered_by_port_and_a_signed_statement_when_nothing_is_newer() {
    let (e, token) = registry_env();
    let as_agent = |uri: &'static str| get(&e.central, uri, Some(&token));
    let op = OperatorId::parse(OPERATOR).expect("op");
    e.central
        .import_consignments(vec![consignment("B2", "P2")], "test")
        .expect("consignment");
    e.central
        .set_status(&op, AeoStatus::Suspended, "audit finding", "ana")
        .expect("status");

    let a = as_agent("/api/v1/registry/changes?port=P1&after=1").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    let (_, b) = verified(&e.central, a.json);
    assert_eq!(
        (b.after_seq, b.last_seq),
        (1, 3),
        "covers the P2 consignment's seq too"
    );
    assert_eq!(b.changes.len(), 1);
    assert!(matches!(
        b.changes[0].change,
        Change::SetStatus {
            status: AeoStatus::Suspended,
            ..
        }
    ));
    assert_eq!(b.changes[0].seq, 3);

    let started = std::time::Instant::now();
    let a = as_agent("/api/v1/registry/changes?port=P1&after=3&wait=1").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited for the long poll"
    );
    // Nothing newer: a signed "no changes after 3 as of now", which a replica may count
    // as fresh. Its as-of time is when central answered, not the last change's.
    let (_, b) = verified(&e.central, a.json);
    assert_eq!((b.after_seq, b.last_seq, b.snapshot), (3, 3, false));
    assert!(b.changes.is_empty());
    let since = jiff::Timestamp::now().duration_since(b.as_of);
    assert!(
        since >= jiff::SignedDuration::ZERO && since < jiff::SignedDuration::from_secs(5),
        "as of {}",
        b.as_of
    );

    // A change made during the wait answers the poll at once.
    let c2 = e.central.clone();
    let op2 = op.clone();
    let bg = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        c2.set_status(&op2, AeoStatus::Active, "reinstated", "ana")
            .expect("status");
    });
    let started = std::time::Instant::now();
    let a = as_agent("/api/v1/registry/changes?port=P1&after=3&wait=30").await;
    bg.await.expect("bg");
    assert_eq!(a.status, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(10));
    let b: ChangeBatch =
        serde_json::from_str(a.json["payload"].as_str().expect("payload")).expect("batch");
    assert_eq!((b.after_seq, b.last_seq), (3, 4));

    let a = as_agent("/api/v1/registry/changes?port=P1&after=99").await;
    assert_eq!(a.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn status_change_of_an_unknown_operator_is_refused() {
    let e = env();
    let op = OperatorId::parse("EU-AEO:DE123456789012345").expect("op");
    let err = e
        .central
        .set_status(&op, AeoStatus::Revoked, "x", "ana")
        .expect_err("unknown");
    assert!(format!("{err:#}").contains("not in the registry"));
    assert_eq!(e.central.summary().expect("summary").registry_seq, 0);
}

/// `text` written to the file `name` in the environment's folder; its path.
fn written(e: &common::Env, name: &str, text: &str) -> std::path::PathBuf {
    let path = e.dir.path().join(name);
    std::fs::write(&path, text).expect("write");
    path
}

/// Four operators, two of them (lines 3 and 5) not valid.
const OPERATORS_CSV: &str = "operator_id,name,authorisations,status,valid_from,roles\n\
     EU-AEO:DE123456789012345,Good GmbH,AEOF,active,2025-01-01,IMPORTER;CARRIER\n\
     EU-AEO:ZZ1,Bad Country,AEOF,active,2025-01-01,\n\
     US-CTPAT:OBOIMP92011,\"Good, Inc.\",SECURITY,ACTIVE,2025-02-01T00:00:00Z,\n\
     US-CTPAT:ABCD1234,No Status,SECURITY,sleeping,2025-01-01,\n";

#[test]
fn csv_import_reports_bad_rows_by_line_and_keeps_the_good_ones() {
    let e = env();
    let path = written(&e, "ops.csv", OPERATORS_CSV);
    let r = e
        .central
        .import_file(&path, None, "test", &mut |_| {})
        .expect("import");
    assert_eq!((r.rows, r.imported, r.last_seq), (4, 2, 2));
    let lines: Vec<_> = r.errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [3, 5]);
    assert!(
        r.errors[1].reason.contains("status \"sleeping\""),
        "{}",
        r.errors[1]
    );
    let op = OperatorId::parse("US-CTPAT:OBOIMP92011").expect("op");
    assert_eq!(
        e.central.operator(&op).expect("get").expect("kept").name,
        "Good, Inc."
    );
}

/// Three mutual recognition arrangements, the second (line 4) not valid.
const MRAS_JSON: &str = r#"[
  {"v": 1, "recognising": "EU-AEO", "partner": "US-CTPAT", "in_force_from": "2012-07-01T00:00:00Z",
   "security_only": true, "name": "EU-US"},
  {"v": 1, "recognising": "EU-AEO", "partner": "XX-NONE", "in_force_from": "2012-07-01T00:00:00Z",
   "security_only": true, "name": "bad programme"},
  {"v": 1, "recognising": "EU-AEO", "partner": "CA-PIP", "in_force_from": "2013-06-01T00:00:00Z",
   "security_only": true, "name": "EU-CA"}
]
"#;

#[test]
fn json_import_reports_bad_records_by_line_and_keeps_the_good_ones() {
    let e = env();
    let path = written(&e, "mras.json", MRAS_JSON);
    let mut seen = 0;
    let r = e
        .central
        .import_file(&path, None, "test", &mut |n| seen = n)
        .expect("import");
    assert_eq!((r.rows, r.imported, seen), (3, 2, 3));
    assert_eq!(r.errors.len(), 1);
    assert_eq!(r.errors[0].line, 4, "{}", r.errors[0]);
}

// ---------------------------------------------------------------------------------------
// cases
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn seal_exception_case_goes_through_its_life_cycle_with_audit_entries() {
    let e = env();
    let (g, token) = p1_g1(&e);
    e.central
        .import_consignments(vec![consignment("B1", "P1")], "test")
        .expect("cons");
    let txn = Uuid::now_v7();
    let entries = chain(
        &g,
        vec![transaction(&g, txn, "CSQU3054383"), seal_exception(&g, txn)],
    );
    let mut live = e.central.subscribe_cases();
    ingest(&e.central, &g, &token, &entries).await;
    let opened = live.try_recv().expect("the new case is published live");
    assert_eq!(opened.transaction_id(), Some(txn));

    let staff = staff(&e.central).await;
    let list = get(
        &e.central,
        "/api/v1/cases?state=open&reason=SEAL_MISMATCH&gate=P1-G1",
        Some(&staff),
    )
    .await;
    assert_eq!(
        list.json["items"].as_array().expect("items").len(),
        1,
        "{}",
        list.json
    );
    let id = list.json["items"][0]["id"].as_u64().expect("id");
    let detail = get(&e.central, &format!("/api/v1/cases/{id}"), Some(&staff)).await;
    assert_eq!(detail.json["transaction"]["id"], txn.to_string());
    assert_eq!(detail.json["decision"]["decision"], "INSPECT");
    assert_eq!(detail.json["declared"][0]["id"], "B1");

    let act = async |a: &str, body: Option<serde_json::Value>| {
        let uri = format!("/api/v1/cases/{id}/{a}");
        call(&e.central, "POST", &uri, Some(&staff), body.as_ref()).await
    };
    let a = act("acknowledge", None).await;
    assert_eq!(a.json["state"], "ACKNOWLEDGED", "{}", a.json);
    // A user that does not exist is refused, and the case keeps no assignee.
    let a = act("assign", Some(serde_json::json!({"assignee": "bo"}))).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.json);
    e.central
        .add_user("bo", "bo's long passphrase", "analyst")
        .expect("user");
    let a = act("assign", Some(serde_json::json!({"assignee": "bo"}))).await;
    assert_eq!(a.json["assignee"], "bo");
    let resolve = serde_json::json!({"outcome": {"outcome": "SEAL_REPLACED", "new_seal": "A9999"}, "note": "re-sealed"});
    let a = act("resolve", Some(resolve)).await;
    assert_eq!(a.json["state"], "RESOLVED", "{}", a.json);
    assert_eq!(a.json["outcome"]["new_seal"], "A9999");
    assert_eq!(a.json["history"].as_array().expect("history").len(), 4);
    let again = act("acknowledge", None).await;
    assert_eq!(again.status, StatusCode::CONFLICT);

    let audit = get(&e.central, "/api/v1/audit?limit=1000", Some(&staff)).await;
    let updates: Vec<_> = audit
        .json
        .as_array()
        .expect("audit")
        .iter()
        .filter(|a| a["action"] == "case.update")
        .map(|a| {
            (
                a["actor"].as_str().expect("actor").to_owned(),
                a["detail"].as_str().expect("detail").to_owned(),
            )
        })
        .collect();
    assert_eq!(updates.len(), 3, "{updates:?}");
    assert!(updates.iter().all(|(actor, _)| actor == "ana"));
    assert!(updates[2].1.contains("SEAL_REPLACED"));
    let s = e.central.summary().expect("summary");
    assert_eq!((s.cases_open, s.cases_resolved), (0, 1));
}

#[tokio::test]
async fn staff_endpoints_need_a_session() {
    let e = env();
    let a = get(&e.central, "/api/v1/cases", None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    e.central
        .add_user("ana", "correct horse", "analyst")
        .expect("user");
    let a = call(
        &e.central,
        "POST",
        "/api/v1/login",
        None,
        Some(&serde_json::json!({"user": "ana", "password": "wrong horse"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let agent = e
        .central
        .issue_agent_token(&gate("P1-G1"), "P1")
        .expect("token");
    let a = get(&e.central, "/api/v1/stats/summary", Some(&agent)).await;
    assert_eq!(
        a.status,
        StatusCode::UNAUTHORIZED,
        "an agent token is not a staff session"
    );
}

#[tokio::test]
async fn events_are_queryable_by_container_and_decision_with_pagination() {
    let e = env();
    let (g, token) = p1_g1(&e);
    let txn = Uuid::now_v7();
    let mut bodies = vec![seal_exception(&g, txn), transaction(&g, txn, "CSQU3054383")];
    bodies.extend((0..3).map(|_| fast_decision(&g)));
    let entries = chain(&g, bodies);
    ingest(&e.central, &g, &token, &entries).await;
    let staff = staff(&e.central).await;
    let as_staff = async |uri: &str| get(&e.central, uri, Some(&staff)).await;

    let a = as_staff("/api/v1/events?container=CSQU3054383").await;
    let seqs: Vec<_> = a.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["entry"]["seq"].as_u64())
        .collect();
    assert_eq!(
        seqs,
        [Some(1), Some(2)],
        "the decision stored before its transaction is indexed too"
    );

    let a = as_staff("/api/v1/events?decision=fast&limit=2").await;
    assert_eq!(a.json["items"].as_array().expect("items").len(), 2);
    let cursor = a.json["next_cursor"].as_str().expect("more").to_owned();
    let a = as_staff(&format!(
        "/api/v1/events?decision=FAST&limit=2&cursor={cursor}"
    ))
    .await;
    assert_eq!(a.json["items"].as_array().expect("items").len(), 1);
    assert!(a.json["next_cursor"].is_null());

    let a = as_staff(
        "/api/v1/stats/hourly?gate=P1-G1&from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z",
    )
    .await;
    assert_eq!(a.json[0]["fast"], 3, "{}", a.json);
    assert_eq!(a.json[0]["inspect"], 1);
    assert_eq!(a.json[0]["exceptions"], 1);
    assert_eq!(a.json[0]["exception_rate"], 0.25);
}

#[test]
fn plain_http_is_refused_unless_explicit_and_loopback() {
    let e = env_with(|c| c.allow_plain_http_on_loopback = false);
    let lo: std::net::SocketAddr = "127.0.0.1:8080".parse().expect("addr");
    assert!(central::server::check_transport(&e.cfg, lo).is_err());
    let mut cfg = e.cfg.clone();
    cfg.allow_plain_http_on_loopback = true;
    assert!(central::server::check_transport(&cfg, lo).is_ok());
    let err = central::server::check_transport(&cfg, "0.0.0.0:8080".parse().expect("addr"))
        .expect_err("not loopback");
    assert!(err.to_string().contains("loopback"), "{err}");
}

#[tokio::test]
async fn api_logout_ends_the_session() {
    let e = common::env();
    let staff = common::staff(&e.central).await;
    let a = get(&e.central, "/api/v1/cases", Some(&staff)).await;
    assert_eq!(a.status, StatusCode::OK);
    let a = call(&e.central, "POST", "/api/v1/logout", Some(&staff), None).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.json);
    let a = get(&e.central, "/api/v1/cases", Some(&staff)).await;
    assert_eq!(
        a.status,
        StatusCode::UNAUTHORIZED,
        "the token no longer works"
    );
    let a = call(&e.central, "POST", "/api/v1/logout", Some(&staff), None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}
