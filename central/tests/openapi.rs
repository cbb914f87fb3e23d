//! The OpenAPI document served at `/api/v1/openapi.json` describes exactly the API the
//! router serves: every `/api/…` route (and `/healthz`, `/readyz`, `/metrics`) with its methods is in
//! the document, the document names no route that does not exist, and every answer the
//! router gives — success and error, staff and agent routes — has its status listed for
//! its route and a body that validates against the listed schema (JSON Schema 2020-12,
//! formats checked; the schemas forbid unlisted fields and require every field central
//! writes). A field added, removed or renamed without the document following fails
//! `every_answer_of_every_route_matches_the_document`, naming the route and the field.
mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, header};
use common::*;
use protocol::operator::OperatorId;
use protocol::schema::{AeoStatus, Consignment, EventBody, PartyRole, PartyView, SCHEMA_VERSION};
use serde_json::{Value, json};
use tower::ServiceExt as _;
use uuid::Uuid;

/// `(method, path)` pairs of the JSON API routes in central/src/api.rs.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/api.rs"))
        .expect("api.rs");
    let mut out = BTreeSet::new();
    let mut rest = src.as_str();
    while let Some(i) = rest.find(".route(") {
        rest = &rest[i + ".route(".len()..];
        let Some(q1) = rest.find('"') else { break };
        let after = &rest[q1 + 1..];
        let Some(q2) = after.find('"') else { break };
        let path = &after[..q2];
        let tail = &after[q2 + 1..];
        let end = tail
            .find(".route(")
            .unwrap_or(tail.len())
            .min(tail.find(".layer(").unwrap_or(tail.len()));
        let handlers = &tail[..end];
        for method in ["get", "post", "put", "delete", "patch"] {
            if handlers.contains(&format!("{method}(")) {
                out.insert((method.to_owned(), path.to_owned()));
            }
        }
    }
    out
}

fn routes_in_document() -> BTreeSet<(String, String)> {
    let doc: serde_json::Value =
        serde_json::from_str(central::api::OPENAPI).expect("the document is JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            out.insert((method.clone(), path.clone()));
        }
    }
    out
}

#[test]
fn the_document_lists_exactly_the_routes_the_router_serves() {
    let source = routes_in_source();
    assert!(
        source.len() >= 20,
        "found only {} routes: is the source parser still right?",
        source.len()
    );
    let document = routes_in_document();
    let missing: Vec<_> = source.difference(&document).collect();
    let extra: Vec<_> = document.difference(&source).collect();
    assert!(
        missing.is_empty(),
        "routes missing from central/openapi.json: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "central/openapi.json names routes the router does not serve: {extra:?}"
    );
}

#[test]
fn every_reference_in_the_document_resolves() {
    let text = central::api::OPENAPI;
    let doc: serde_json::Value = serde_json::from_str(text).expect("json");
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let mut rest = text;
    let mut n = 0;
    while let Some(i) = rest.find("#/components/schemas/") {
        rest = &rest[i + "#/components/schemas/".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        assert!(schemas.contains_key(&name), "unresolved $ref to {name}");
        n += 1;
    }
    assert!(n > 10);
}

// ---------------------------------------------------------------------------------------
// every answer against the document
// ---------------------------------------------------------------------------------------

/// A request body.
enum Payload {
    None,
    Json(Value),
    /// Bytes sent as `application/json` as they are (malformed or oversized bodies).
    Raw(Vec<u8>),
    /// Bytes sent as `text/plain` (a body not declared JSON).
    Text(Vec<u8>),
}

/// Sends requests through the router and checks each answer against the document;
/// collects every mismatch so one run names them all.
struct Checker {
    doc: Value,
    /// `(method, path template, status)` answers seen.
    seen: BTreeSet<(String, String, u16)>,
    failures: Vec<String>,
    /// Client address the requests come from (the rate limiter keys on it).
    from: SocketAddr,
}

/// `~` and `/` escaped for a JSON pointer segment.
fn pointer_segment(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

impl Checker {
    fn new() -> Self {
        Self {
            doc: serde_json::from_str(central::api::OPENAPI).expect("the document is JSON"),
            seen: BTreeSet::new(),
            failures: Vec::new(),
            from: "127.0.0.1:40000".parse().expect("addr"),
        }
    }

    /// Sends `method uri` (an instance of the document's path `template`) and checks the
    /// answer; returns its status and JSON body (`Null` when empty or not JSON).
    async fn call(
        &mut self,
        app: &Router,
        method: &str,
        template: &str,
        uri: &str,
        token: Option<&str>,
        body: Payload,
    ) -> (u16, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let mut req = match body {
            Payload::None => req.body(Body::empty()),
            Payload::Json(v) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(serde_json::to_vec(&v).expect("json"))),
            Payload::Raw(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b)),
            Payload::Text(b) => req
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from(b)),
        }
        .expect("request");
        req.extensions_mut().insert(ConnectInfo(self.from));
        let resp = tokio::time::timeout(Duration::from_secs(30), app.clone().oneshot(req))
            .await
            .expect("answer in time")
            .expect("infallible");
        let status = resp.status().as_u16();
        let media = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_owned());
        // An event stream does not end; its status and media type are what can be checked.
        let bytes = if media.as_deref() == Some("text/event-stream") {
            Vec::new()
        } else {
            axum::body::to_bytes(resp.into_body(), 64 << 20)
                .await
                .expect("body")
                .to_vec()
        };
        let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        self.check(method, template, status, media.as_deref(), &bytes, &json);
        (status, json)
    }

    /// `GET uri` without a body.
    async fn get(
        &mut self,
        app: &Router,
        template: &str,
        uri: &str,
        token: Option<&str>,
    ) -> (u16, Value) {
        self.call(app, "GET", template, uri, token, Payload::None)
            .await
    }

    /// `POST uri` with a JSON body.
    async fn post(
        &mut self,
        app: &Router,
        template: &str,
        uri: &str,
        token: Option<&str>,
        body: Value,
    ) -> (u16, Value) {
        self.call(app, "POST", template, uri, token, Payload::Json(body))
            .await
    }

    fn fail(&mut self, what: String) {
        self.failures.push(what);
    }

    fn check(
        &mut self,
        method: &str,
        template: &str,
        status: u16,
        media: Option<&str>,
        bytes: &[u8],
        json: &Value,
    ) {
        let m = method.to_ascii_lowercase();
        let route = format!("{method} {template}");
        self.seen.insert((m.clone(), template.to_owned(), status));
        let op_ptr = format!("/paths/{}/{m}", pointer_segment(template));
        if self.doc.pointer(&op_ptr).is_none() {
            self.fail(format!("{route}: not in the document"));
            return;
        }
        let key = status.to_string();
        let mut resp_ptr = format!("{op_ptr}/responses/{key}");
        if self.doc.pointer(&resp_ptr).is_none() {
            if status >= 500
                && self
                    .doc
                    .pointer(&format!("{op_ptr}/responses/default"))
                    .is_some()
            {
                resp_ptr = format!("{op_ptr}/responses/default");
            } else {
                self.fail(format!(
                    "{route} answered {status}, which the document does not list for it (body: {})",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
                ));
                return;
            }
        }
        // A response may be a reference to components/responses.
        if let Some(r) = self
            .doc
            .pointer(&format!("{resp_ptr}/$ref"))
            .and_then(Value::as_str)
        {
            resp_ptr = r.trim_start_matches('#').to_owned();
        }
        let Some(content) = self.doc.pointer(&format!("{resp_ptr}/content")) else {
            if !bytes.is_empty() {
                self.fail(format!(
                    "{route} answered {status} with a body, but the document lists none"
                ));
            }
            return;
        };
        let Some(media) = media else {
            self.fail(format!("{route} answered {status} without a Content-Type"));
            return;
        };
        if content.get(media).is_none() {
            self.fail(format!(
                "{route} answered {status} as {media}, which the document does not list"
            ));
            return;
        }
        let schema_ptr = format!("{resp_ptr}/content/{}/schema", pointer_segment(media));
        let is_json = media == "application/json" || media.ends_with("+json");
        let instance = if is_json {
            if json.is_null() && bytes != b"null" {
                self.fail(format!(
                    "{route} answered {status} with a body that is not JSON"
                ));
                return;
            }
            json.clone()
        } else {
            Value::String(String::from_utf8_lossy(bytes).into_owned())
        };
        // The document itself is the schema resource, so its `$ref`s resolve; the root
        // refers to this answer's schema (unknown OpenAPI keywords are ignored).
        let mut root = self.doc.clone();
        // (A URI fragment: the braces of path templates are percent-encoded.)
        let fragment = schema_ptr.replace('{', "%7B").replace('}', "%7D");
        root["$ref"] = Value::String(format!("#{fragment}"));
        let validator = match jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
        {
            Ok(v) => v,
            Err(e) => {
                self.fail(format!(
                    "{route} {status}: the schema does not compile: {e}"
                ));
                return;
            }
        };
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("at {:?}: {e}", e.instance_path().as_str()))
            .collect();
        if !errors.is_empty() {
            self.fail(format!(
                "{route} answered {status} with a body the document does not describe:\n    {}",
                errors.join("\n    ")
            ));
        }
    }

    /// Every route was seen answering a success, and every answer the document lists
    /// for it (each 4xx included) was seen.
    fn check_coverage(&mut self) {
        let mut missing = Vec::new();
        let doc = self.doc.clone();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (m, op) in item.as_object().expect("path item") {
                let statuses: Vec<u16> = self
                    .seen
                    .iter()
                    .filter(|(sm, sp, _)| sm == m && sp == path)
                    .map(|(_, _, s)| *s)
                    .collect();
                if !statuses.iter().any(|s| (200..300).contains(s)) {
                    missing.push(format!("{m} {path}: no success answer exercised"));
                }
                for key in op["responses"].as_object().expect("responses").keys() {
                    if key == "default" {
                        continue;
                    }
                    let s: u16 = key.parse().expect("status");
                    if !statuses.contains(&s) {
                        missing.push(format!("{m} {path}: documented answer {s} not exercised"));
                    }
                }
            }
        }
        self.failures.extend(missing);
    }
}

fn declared(id: &str, port: &str) -> Consignment {
    declared_consignment(id, "CSQU3054383", port)
}

/// A FAST decision for a certified importer (AEO traffic in the programme figures).
fn aeo_fast_decision(g: &protocol::schema::GateId, op: &str) -> EventBody {
    let mut body = fast_decision(g);
    if let EventBody::Decision { decision } = &mut body {
        decision.parties = vec![PartyView {
            role: PartyRole::Importer,
            operator: Some(OperatorId::parse(op).expect("operator")),
            name: "Hafen Import GmbH".into(),
            status: Some(AeoStatus::Active),
            security: true,
            mra: None,
            contact_point: None,
        }];
    }
    body
}

async fn login(k: &mut Checker, c: &Router, user: &str, password: &str) -> String {
    let (s, j) = k
        .post(
            c,
            "/api/v1/login",
            "/api/v1/login",
            None,
            json!({"user": user, "password": password}),
        )
        .await;
    assert_eq!(s, 200, "{j}");
    j["token"].as_str().expect("token").to_owned()
}

#[allow(clippy::too_many_lines)]
#[tokio::test]
async fn every_answer_of_every_route_matches_the_document() {
    central::api::install_metrics_recorder().expect("metrics recorder");
    let e = env();
    let c = &e.central;
    // One router per central: the rate limiter's buckets live in it.
    let r = &central::app(c.clone());
    let k = &mut Checker::new();
    let g = gate("P1-G1");
    let agent = c.issue_agent_token(&g, "P1").expect("token");
    let other_agent = c.issue_agent_token(&gate("P1-G2"), "P1").expect("token");
    let op = "EU-AEO:DE123456789012345";
    c.import_records(vec![operator_record(op)], "test")
        .expect("records");
    c.import_consignments(vec![declared("B1", "P1")], "test")
        .expect("consignments");
    c.add_user("ana", "correct horse", "analyst").expect("user");
    c.add_user("root", "battery staple", "admin").expect("user");

    // operations
    k.get(r, "/healthz", "/healthz", None).await;
    k.get(r, "/readyz", "/readyz", None).await;
    k.get(r, "/metrics", "/metrics", None).await;
    let oa = "/api/v1/openapi.json";
    k.get(r, oa, oa, None).await;

    // agents: ingest two transactions with seal exceptions (two cases) and a chain break
    let ev = "/api/v1/agents/{gate}/events";
    let evu = "/api/v1/agents/P1-G1/events";
    let (t1, t2) = (Uuid::now_v7(), Uuid::now_v7());
    let entries = chain(
        &g,
        vec![
            transaction(&g, t1, "CSQU3054383"),
            seal_exception(&g, t1),
            transaction(&g, t2, "CSQU3054383"),
            seal_exception(&g, t2),
            aeo_fast_decision(&g, op),
        ],
    );
    let (s, j) = k.post(r, ev, evu, Some(&agent), batch(&g, &entries)).await;
    assert_eq!(s, 200, "{j}");
    let mut broken = chain(&g, (0..2).map(|_| fast_decision(&g)).collect());
    broken[1].seq = 7;
    broken[0].seq = 6;
    let (s, j) = k.post(r, ev, evu, Some(&agent), batch(&g, &broken)).await;
    assert_eq!(s, 200, "{j}");
    let good = Payload::Json(batch(&g, &entries));
    assert_eq!(k.call(r, "POST", ev, evu, None, good).await.0, 401);
    let good = Payload::Json(batch(&g, &entries));
    assert_eq!(
        k.call(r, "POST", ev, evu, Some(&other_agent), good).await.0,
        403
    );
    // A revoked token, and a token past its rotation grace, are refused with 403 and the
    // error document; the revoked gate shows `revoked_at` in the gate list below.
    let revoked = c.issue_agent_token(&gate("P1-G3"), "P1").expect("token");
    c.revoke_agent(&gate("P1-G3"), None, "test")
        .expect("revoke");
    let rotated = c.issue_agent_token(&gate("P1-G4"), "P1").expect("token");
    c.rotate_agent(&gate("P1-G4"), jiff::SignedDuration::ZERO, "test")
        .expect("rotate");
    for (name, token, what) in [
        ("P1-G3", &revoked, "revoked token"),
        ("P1-G4", &rotated, "token past its grace"),
    ] {
        let uri = format!("/api/v1/agents/{name}/events");
        let empty = Payload::Json(batch(&gate(name), &[]));
        let (s, j) = k.call(r, "POST", ev, &uri, Some(token), empty).await;
        assert_eq!(s, 403, "{what}: {j}");
    }
    let good = Payload::Json(batch(&g, &entries));
    let bad_gate = "/api/v1/agents/not%20a%20gate/events";
    k.call(r, "POST", ev, bad_gate, Some(&agent), good).await;
    let raw = Payload::Raw(b"{not json".to_vec());
    k.call(r, "POST", ev, evu, Some(&agent), raw).await;
    let wrong = Payload::Json(json!({"v": SCHEMA_VERSION}));
    k.call(r, "POST", ev, evu, Some(&agent), wrong).await;
    let huge = Payload::Raw(vec![b' '; 5 << 20]);
    assert_eq!(k.call(r, "POST", ev, evu, Some(&agent), huge).await.0, 413);
    let text = Payload::Text(serde_json::to_vec(&batch(&g, &entries)).expect("json"));
    assert_eq!(k.call(r, "POST", ev, evu, Some(&agent), text).await.0, 415);

    let hb = "/api/v1/agents/{gate}/heartbeat";
    let hbu = "/api/v1/agents/P1-G1/heartbeat";
    let beat = json!({
        "v": SCHEMA_VERSION, "agent": g, "at": jiff::Timestamp::now(),
        "devices": [{"device": "ocr1", "lane": "L1", "up": true, "detail": "ok",
                     "since": "2026-03-01T10:00:00Z"}],
        "replica_seq": 0, "journal_head": 5, "acked_seq": 5, "backlog": 0, "version": "test",
    });
    let (s, j) = k.post(r, hb, hbu, Some(&agent), beat.clone()).await;
    assert_eq!(s, 204, "{j}");
    k.post(r, hb, hbu, None, beat.clone()).await;
    k.post(r, hb, hbu, Some(&other_agent), beat.clone()).await;
    k.post(r, hb, hbu, Some(&agent), json!({"v": 1})).await;
    k.call(
        r,
        "POST",
        hb,
        hbu,
        Some(&agent),
        Payload::Raw(b"[".to_vec()),
    )
    .await;

    // registry
    let sn = "/api/v1/registry/snapshot";
    k.get(r, sn, "/api/v1/registry/snapshot?port=P1", Some(&agent))
        .await;
    k.get(r, sn, "/api/v1/registry/snapshot?port=P2", Some(&agent))
        .await;
    k.get(r, sn, sn, Some(&agent)).await;
    k.get(r, sn, "/api/v1/registry/snapshot?port=P1", None)
        .await;
    let mf = "/api/v1/registry/snapshot/manifest";
    let (status, manifest) = k
        .get(
            r,
            mf,
            "/api/v1/registry/snapshot/manifest?port=P1",
            Some(&agent),
        )
        .await;
    assert_eq!(status, 200, "{manifest}");
    for (uri, who) in [
        (
            "/api/v1/registry/snapshot/manifest?port=P2",
            Some(agent.as_str()),
        ),
        (mf, Some(agent.as_str())),
        ("/api/v1/registry/snapshot/manifest?port=P1", None),
    ] {
        k.get(r, mf, uri, who).await;
    }
    let manifest: Value =
        serde_json::from_str(manifest["payload"].as_str().expect("payload")).expect("manifest");
    let id = manifest["id"].as_str().expect("manifest id");
    assert!(
        !manifest["chunks"].as_array().expect("chunks").is_empty(),
        "the registry has records, so the snapshot has a chunk"
    );
    let ck = "/api/v1/registry/snapshot/chunks/{id}/{index}";
    let (status, chunk) = k
        .get(
            r,
            ck,
            &format!("/api/v1/registry/snapshot/chunks/{id}/0?port=P1"),
            Some(&agent),
        )
        .await;
    assert_eq!(status, 200, "{chunk}");
    for (uri, who) in [
        (
            format!("/api/v1/registry/snapshot/chunks/{id}/999?port=P1"),
            Some(agent.as_str()),
        ),
        (
            format!("/api/v1/registry/snapshot/chunks/{id}/x?port=P1"),
            Some(agent.as_str()),
        ),
        (
            format!("/api/v1/registry/snapshot/chunks/{id}/0?port=P2"),
            Some(agent.as_str()),
        ),
        (
            "/api/v1/registry/snapshot/chunks/00ff/0?port=P1".to_owned(),
            Some(agent.as_str()),
        ),
        (
            format!("/api/v1/registry/snapshot/chunks/{id}/0?port=P1"),
            None,
        ),
    ] {
        k.get(r, ck, &uri, who).await;
    }
    let ch = "/api/v1/registry/changes";
    for uri in [
        "/api/v1/registry/changes?port=P1&after=0",
        "/api/v1/registry/changes?port=P1&after=2&wait=0",
        "/api/v1/registry/changes?port=P1&after=99",
        "/api/v1/registry/changes?port=P1",
        "/api/v1/registry/changes?port=P1&after=x",
        "/api/v1/registry/changes?port=P2&after=0",
    ] {
        k.get(r, ch, uri, Some(&agent)).await;
    }
    k.get(r, ch, "/api/v1/registry/changes?port=P1&after=0", None)
        .await;
    let keys = "/api/v1/registry/keys";
    k.get(r, keys, keys, None).await;

    // staff login
    let staff = login(k, r, "ana", "correct horse").await;
    let admin = login(k, r, "root", "battery staple").await;
    let li = "/api/v1/login";
    let wrong = json!({"user": "ana", "password": "wrong"});
    assert_eq!(k.post(r, li, li, None, wrong).await.0, 401);
    k.post(r, li, li, None, json!({"user": "ana"})).await;
    k.call(r, "POST", li, li, None, Payload::Raw(b"{".to_vec()))
        .await;
    // logout: without a session 401; with one 204, after which the token is refused.
    let lo = "/api/v1/logout";
    k.call(r, "POST", lo, lo, None, Payload::None).await;
    let short = login(k, r, "ana", "correct horse").await;
    let (s, j) = k.call(r, "POST", lo, lo, Some(&short), Payload::None).await;
    assert_eq!(s, 204, "{j}");
    let (s, _) = k.call(r, "POST", lo, lo, Some(&short), Payload::None).await;
    assert_eq!(s, 401, "a logged-out token is refused");
    // Failed logins for one name are throttled (bounded: at most 30 tries).
    let mut throttled = false;
    for _ in 0..30 {
        let wrong = json!({"user": "eve", "password": "guess"});
        if k.post(r, li, li, None, wrong).await.0 == 429 {
            throttled = true;
            break;
        }
    }
    assert!(throttled, "failed logins are throttled");

    // registry status change (admin)
    let st = "/api/v1/registry/operators/{operator}/status";
    let stu = format!("/api/v1/registry/operators/{op}/status");
    let suspend = json!({"status": "SUSPENDED", "reason": "audit finding"});
    let (s, j) = k.post(r, st, &stu, Some(&admin), suspend.clone()).await;
    assert_eq!(s, 200, "{j}");
    let (s, j) = k.post(r, st, &stu, Some(&staff), suspend.clone()).await;
    assert_eq!(s, 403, "an analyst may not change the registry: {j}");
    k.post(r, st, &stu, None, suspend.clone()).await;
    // The admin's session with an unreadable or unknown operator, an empty reason, an
    // unknown status (each answer checked against the document).
    for (uri, body) in [
        (
            "/api/v1/registry/operators/nonsense/status",
            suspend.clone(),
        ),
        (
            "/api/v1/registry/operators/EU-AEO:DE999999999999999/status",
            suspend.clone(),
        ),
        (&stu, json!({"status": "SUSPENDED", "reason": " "})),
        (&stu, json!({"status": "GONE", "reason": "x"})),
    ] {
        k.post(r, st, uri, Some(&admin), body).await;
    }
    // agent credentials (admin): rotate with a grace (old and new token both work), revoke
    let ro = "/api/v1/gates/{gate}/rotate";
    let rou = "/api/v1/gates/P1-G1/rotate";
    let hour = || Payload::Json(json!({"grace_secs": 3600}));
    let (s, j) = k.call(r, "POST", ro, rou, Some(&admin), hour()).await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(j["old_tokens"], 1, "{j}");
    let fresh = j["token"].as_str().expect("new token").to_owned();
    for t in [&agent, &fresh] {
        let (s, j) = k.post(r, hb, hbu, Some(t), beat.clone()).await;
        assert_eq!(s, 204, "old and new token during the grace: {j}");
    }
    let (s, _) = k.call(r, "POST", ro, rou, Some(&staff), hour()).await;
    assert_eq!(s, 403, "an analyst may not rotate tokens");
    k.call(r, "POST", ro, rou, None, hour()).await;
    k.call(
        r,
        "POST",
        ro,
        "/api/v1/gates/P9-G9/rotate",
        Some(&admin),
        hour(),
    )
    .await;
    let too_long = Payload::Json(json!({"grace_secs": 400 * 86_400}));
    let (s, _) = k.call(r, "POST", ro, rou, Some(&admin), too_long).await;
    assert_eq!(s, 400, "a grace beyond a year is refused");
    let (s, _) = k.post(r, ro, rou, Some(&admin), json!({})).await;
    assert_eq!(s, 422, "grace_secs is required");
    let rv = "/api/v1/gates/{gate}/revoke";
    let rvu = "/api/v1/gates/P1-G2/revoke";
    let (s, j) = k.post(r, rv, rvu, Some(&admin), json!({})).await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(j["revoked"], 1, "{j}");
    let g2 = "/api/v1/agents/P1-G2/heartbeat";
    let mut beat2 = beat.clone();
    beat2["agent"] = json!("P1-G2");
    let (s, j) = k.post(r, hb, g2, Some(&other_agent), beat2).await;
    assert_eq!(s, 403, "a revoked token is refused at once: {j}");
    let (s, _) = k.post(r, rv, rvu, Some(&staff), json!({})).await;
    assert_eq!(s, 403, "an analyst may not revoke tokens");
    k.call(r, "POST", rv, rvu, None, Payload::None).await;
    let bad_fp = Payload::Json(json!({"cert_sha256": "abc"}));
    let (s, _) = k.call(r, "POST", rv, rvu, Some(&admin), bad_fp).await;
    assert_eq!(s, 400, "a malformed fingerprint is refused");
    let unknown = Payload::Json(json!({"gate": "P1-G2"}));
    let (s, _) = k.call(r, "POST", rv, rvu, Some(&admin), unknown).await;
    assert_eq!(s, 422, "unknown fields are refused");
    k.call(
        r,
        "POST",
        rv,
        "/api/v1/gates/P9-G9/revoke",
        Some(&admin),
        Payload::None,
    )
    .await;

    // staff user access (admin): a role change and a disable reach open sessions at once
    c.add_user("bea", "purple elephant", "analyst")
        .expect("user");
    let bea = login(k, r, "bea", "purple elephant").await;
    let ac = "/api/v1/users/{name}/access";
    let acu = "/api/v1/users/bea/access";
    let promote = || Payload::Json(json!({"role": "admin"}));
    let (s, j) = k.call(r, "POST", ac, acu, Some(&admin), promote()).await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(j["role"], "admin", "{j}");
    let (s, j) = k
        .post(r, rv, "/api/v1/gates/P1-G2/revoke", Some(&bea), json!({}))
        .await;
    assert_eq!(s, 200, "the promoted session may revoke at once: {j}");
    let disable = || Payload::Json(json!({"disabled": true}));
    let (s, j) = k.call(r, "POST", ac, acu, Some(&admin), disable()).await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(j["disabled"], true, "{j}");
    let (s, _) = k.get(r, "/api/v1/gates", "/api/v1/gates", Some(&bea)).await;
    assert_eq!(s, 401, "a disabled user's open session is refused at once");
    let (s, _) = k.call(r, "POST", ac, acu, Some(&staff), disable()).await;
    assert_eq!(s, 403, "an analyst may not manage users");
    k.call(r, "POST", ac, acu, None, disable()).await;
    let (s, _) = k.post(r, ac, acu, Some(&admin), json!({})).await;
    assert_eq!(s, 400, "nothing to change");
    let (s, _) = k
        .call(
            r,
            "POST",
            ac,
            "/api/v1/users/nobody/access",
            Some(&admin),
            disable(),
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = k.post(r, ac, acu, Some(&admin), json!({"role": 3})).await;
    assert_eq!(s, 422);

    // A change after the agent's last sequence answers the long poll.
    k.get(
        r,
        ch,
        "/api/v1/registry/changes?port=P1&after=2&wait=1",
        Some(&agent),
    )
    .await;

    // cases
    let cs = "/api/v1/cases";
    let (s, list) = k.get(r, cs, cs, Some(&staff)).await;
    assert_eq!(s, 200, "{list}");
    let ids: Vec<u64> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|c| c["id"].as_u64())
        .collect();
    assert!(
        ids.len() >= 3,
        "two seal exceptions and an integrity case: {list}"
    );
    k.get(r, cs, "/api/v1/cases?state=open&limit=1", Some(&staff))
        .await;
    k.get(r, cs, "/api/v1/cases?state=bogus", Some(&staff))
        .await;
    k.get(r, cs, cs, None).await;
    let stream = "/api/v1/cases/stream";
    k.get(r, stream, stream, Some(&staff)).await;
    k.get(r, stream, stream, None).await;
    let one = "/api/v1/cases/{id}";
    for id in &ids {
        k.get(r, one, &format!("/api/v1/cases/{id}"), Some(&staff))
            .await;
    }
    k.get(r, one, "/api/v1/cases/999999", Some(&staff)).await;
    k.get(r, one, "/api/v1/cases/abc", Some(&staff)).await;
    k.get(r, one, "/api/v1/cases/1", None).await;
    let act = "/api/v1/cases/{id}/{action}";
    let (a, b, d) = (ids[0], ids[1], ids[2]);
    let acts = [
        (a, "acknowledge", json!({"note": "on my way"})),
        (a, "assign", json!({"assignee": "ana", "note": "yours"})),
        (
            a,
            "resolve",
            json!({"outcome": {"outcome": "SEAL_REPLACED", "new_seal": "A125"}, "note": "replaced"}),
        ),
        (b, "resolve", json!({"outcome": {"outcome": "FALSE_READ"}})),
        (d, "acknowledge", json!({})),
        // refusals
        (a, "acknowledge", json!({})),
        (b, "assign", json!({})),
        (b, "resolve", json!({})),
        (b, "reopen", json!({})),
        (999_999, "acknowledge", json!({})),
    ];
    for (id, action, body) in acts {
        let uri = format!("/api/v1/cases/{id}/{action}");
        k.post(r, act, &uri, Some(&staff), body).await;
    }
    k.post(
        r,
        act,
        "/api/v1/cases/abc/acknowledge",
        Some(&staff),
        json!({}),
    )
    .await;
    k.post(
        r,
        act,
        &format!("/api/v1/cases/{d}/acknowledge"),
        None,
        json!({}),
    )
    .await;
    // The list again, now with acknowledged and resolved cases and their outcomes.
    k.get(r, cs, cs, Some(&staff)).await;
    for id in &ids {
        k.get(r, one, &format!("/api/v1/cases/{id}"), Some(&staff))
            .await;
    }

    // queries
    let q = [
        (
            "/api/v1/events",
            vec![
                "/api/v1/events",
                "/api/v1/events?limit=2&decision=inspect",
                "/api/v1/events?container=CSQU3054383&gate=P1-G1",
            ],
            vec!["/api/v1/events?limit=0", "/api/v1/events?decision=maybe"],
        ),
        ("/api/v1/gates", vec!["/api/v1/gates"], vec![]),
        ("/api/v1/alerts", vec!["/api/v1/alerts"], vec![]),
        (
            "/api/v1/audit",
            vec!["/api/v1/audit", "/api/v1/audit?after=1&limit=3"],
            vec!["/api/v1/audit?after=x"],
        ),
        (
            "/api/v1/stats/summary",
            vec!["/api/v1/stats/summary"],
            vec![],
        ),
        (
            "/api/v1/stats/hourly",
            vec![
                "/api/v1/stats/hourly?from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z",
                "/api/v1/stats/hourly?gate=P1-G1&from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z",
            ],
            vec!["/api/v1/stats/hourly?from=yesterday"],
        ),
        (
            "/api/v1/stats/programme",
            vec![
                "/api/v1/stats/programme?hours=0",
                "/api/v1/stats/programme?hours=0&limit=1",
            ],
            vec!["/api/v1/stats/programme?cursor=x"],
        ),
        (
            "/api/v1/export/events.csv",
            vec!["/api/v1/export/events.csv?from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z"],
            vec!["/api/v1/export/events.csv?from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z"],
        ),
        (
            "/api/v1/export/epcis",
            vec!["/api/v1/export/epcis?from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z"],
            vec!["/api/v1/export/epcis?gate=not%20a%20gate"],
        ),
    ];
    for (template, good, bad) in q {
        for uri in good.iter().chain(&bad) {
            k.get(r, template, uri, Some(&staff)).await;
        }
        k.get(r, template, template, None).await;
    }
    let (_, alerts) = k
        .get(r, "/api/v1/alerts", "/api/v1/alerts", Some(&staff))
        .await;
    assert!(
        alerts[0]["case_id"].is_u64(),
        "the chain break is an alert with a case: {alerts}"
    );
    let (_, gates) = k
        .get(r, "/api/v1/gates", "/api/v1/gates", Some(&staff))
        .await;
    assert!(
        gates[0]["last_heartbeat"]["heartbeat"]["devices"][0].is_object(),
        "{gates}"
    );
    let (_, figures) = k
        .get(
            r,
            "/api/v1/stats/programme",
            "/api/v1/stats/programme?hours=0",
            Some(&staff),
        )
        .await;
    assert!(
        !figures["per_operator"]["items"]
            .as_array()
            .expect("items")
            .is_empty()
            && !figures["per_programme"]
                .as_object()
                .expect("per programme")
                .is_empty(),
        "the per-operator and per-programme figures are exercised: {figures}"
    );

    // Storage away: a central on PostgreSQL whose server has stopped answers 503 (with
    // Retry-After, checked in tests/pg_scale.rs) to readiness, ingest and heartbeats.
    let mut cluster = common::pg::PgCluster::start();
    let url = cluster.create_database("central");
    let away = env_with(|cfg| {
        cfg.store = Some(central::config::StoreConfig {
            url: central::config::PgUrl::parse(&url).expect("PostgreSQL URL"),
            retention_months: None,
            ca_cert: None,
        });
    });
    let away_agent = away.central.issue_agent_token(&g, "P1").expect("token");
    cluster.stop();
    let ar = &central::app(away.central.clone());
    let (s, body) = k.get(ar, "/readyz", "/readyz", None).await;
    assert_eq!((s, &body["ready"]), (503, &json!(false)), "{body}");
    let one = Payload::Json(batch(&g, &chain(&g, vec![fast_decision(&g)])));
    let (s, body) = k.call(ar, "POST", ev, evu, Some(&away_agent), one).await;
    assert_eq!(s, 503, "{body}");
    let (s, body) = k.post(ar, hb, hbu, Some(&away_agent), beat.clone()).await;
    assert_eq!(s, 503, "{body}");
    drop(away);
    drop(cluster);

    // The request rate limit answers 429 on every limited route: one request spends a
    // burst of 1, the next from the same address is refused.
    let limited = env_with(|cfg| {
        cfg.rate_limit_per_s = 1;
        cfg.rate_limit_burst = 1;
    });
    let lr = &central::app(limited.central.clone());
    k.from = "127.0.0.2:40000".parse().expect("addr");
    k.get(lr, keys, keys, None).await;
    let doc = k.doc.clone();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (m, o) in item.as_object().expect("item") {
            if o["responses"].get("429").is_none() || path == li {
                continue;
            }
            let uri = path
                .replace("{id}", "1")
                .replace("{action}", "acknowledge")
                .replace("{operator}", op)
                .replace("{gate}", "P1-G1");
            let (s, _) = k
                .call(lr, &m.to_ascii_uppercase(), path, &uri, None, Payload::None)
                .await;
            assert_eq!(s, 429, "{m} {path} is rate limited");
        }
    }

    k.check_coverage();
    assert!(
        k.failures.is_empty(),
        "central's answers and central/openapi.json disagree ({} findings):\n  {}",
        k.failures.len(),
        k.failures.join("\n  ")
    );
}

/// The check names the route and the field when an answer gains, loses or renames a
/// field, or answers a status the document does not list.
#[test]
fn drift_is_reported_with_the_route_and_the_field() {
    let mut k = Checker::new();
    let check = |k: &mut Checker, status: u16, body: Value| {
        k.failures.clear();
        let bytes = serde_json::to_vec(&body).expect("json");
        k.check(
            "GET",
            "/api/v1/cases",
            status,
            Some("application/json"),
            &bytes,
            &body,
        );
        k.failures.join("\n")
    };
    assert_eq!(check(&mut k, 401, json!({"error": "no token"})), "");
    let added = check(&mut k, 401, json!({"error": "no token", "hint": "log in"}));
    assert!(
        added.contains("GET /api/v1/cases answered 401") && added.contains("hint"),
        "{added}"
    );
    let renamed = check(&mut k, 401, json!({"message": "no token"}));
    assert!(
        renamed.contains("message") && renamed.contains("error"),
        "{renamed}"
    );
    let page = json!({"items": [], "next_cursor": null});
    assert_eq!(check(&mut k, 200, page), "");
    let removed = check(&mut k, 200, json!({"items": []}));
    assert!(removed.contains("next_cursor"), "{removed}");
    let unlisted = check(&mut k, 418, json!({"error": "teapot"}));
    assert!(unlisted.contains("does not list"), "{unlisted}");
    // A case in the list is checked field by field, formats included.
    let case = json!({"items": [{
        "id": 1, "state": "OPEN",
        "subject": {"type": "SEAL_EXCEPTION", "transaction_id": Uuid::nil(), "reasons": ["SEAL_MISMATCH"]},
        "gate": "P1-G1", "lane": "L1", "opened_at": "2026-03-01T10:15:00Z",
        "updated_at": "2026-03-01T10:15:00Z", "assignee": null, "outcome": null,
        "notes": [], "history": [],
    }], "next_cursor": null});
    assert_eq!(check(&mut k, 200, case.clone()), "");
    let mut late = case.clone();
    late["items"][0]["updated_at"] = json!("yesterday");
    let late = check(&mut k, 200, late);
    assert!(late.contains("/items/0/updated_at"), "{late}");
    let mut extra = case;
    extra["items"][0]["reasons"] = json!([]);
    let extra = check(&mut k, 200, extra);
    assert!(extra.contains("reasons"), "{extra}");
}
