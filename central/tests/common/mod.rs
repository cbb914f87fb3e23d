//! Helpers shared by central's integration tests.
#![allow(dead_code)]

pub mod pg;
#[path = "../../../tests/common/pki.rs"]
pub mod pki;
#[path = "../../src/test_decision.rs"]
pub mod test_decision;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use central::{Central, Config};
use jiff::Timestamp;
use protocol::schema::{
    ActionKind, CloseReason, Decision, EventBody, GENESIS_HASH, GateId, GateTransaction,
    JournalEntry, LaneDecision, LaneId, OfficerAction, Read, ReadSource, ReadValue, Reason,
    ReasonCode, SCHEMA_VERSION,
};
use tower::ServiceExt as _;
use uuid::Uuid;

/// An active AEO-F operator `id` named `Operator {id}`, valid since 2025.
pub fn operator_record(id: &str) -> protocol::schema::RegistryRecord {
    protocol::schema::RegistryRecord {
        v: SCHEMA_VERSION,
        operator: protocol::operator::OperatorId::parse(id).expect("operator"),
        name: format!("Operator {id}"),
        authorisations: vec![protocol::schema::Authorisation::Aeof],
        status: protocol::schema::AeoStatus::Active,
        status_since: ts("2025-01-01T00:00:00Z"),
        valid_from: ts("2025-01-01T00:00:00Z"),
        valid_to: None,
        roles: vec![],
        contact_point: None,
        linked_ids: vec![],
        source: "test".into(),
        as_of: ts("2026-01-01T00:00:00Z"),
    }
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub cfg: Config,
    pub central: Central,
}

pub fn env_with(tweak: impl FnOnce(&mut Config)) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = "127.0.0.1:0".parse().expect("addr");
    let mut cfg = Config::with_new_key_in(dir.path(), listen).expect("key");
    cfg.allow_plain_http_on_loopback = true;
    // Cheap hashing keeps tests fast; production uses the OWASP default.
    cfg.argon2_m_cost_kib = 64;
    cfg.argon2_t_cost = 1;
    tweak(&mut cfg);
    let central = Central::open(&cfg).expect("open central");
    Env { dir, cfg, central }
}

/// Writes `central.toml` in `dir` for the `central` binary: `cfg`'s store and key, plain
/// HTTP on `listen` (a loopback address), then `extra` lines.
pub fn write_config(
    dir: &std::path::Path,
    cfg: &Config,
    listen: &str,
    extra: &str,
) -> std::path::PathBuf {
    let config = dir.join("central.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{listen}\"\nstore_path = {:?}\nsigning_key_path = {:?}\nallow_plain_http_on_loopback = true\n{extra}",
            cfg.store_path, cfg.signing_key_path
        ),
    )
    .expect("config");
    config
}

/// Central `c` served with `cfg` on a free loopback port until `stop`: its address and
/// the server's task.
pub fn serve_on_loopback(
    c: &Central,
    cfg: &Config,
    stop: &tokio_util::sync::CancellationToken,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(central::serve_with_listener(
        c.clone(),
        listener,
        cfg.clone(),
        stop.clone(),
    ));
    (addr, task)
}

/// Central `e` served on a free loopback port (plain HTTP) while `run`, given the base
/// URL, runs; then stopped (waiting at most 10 s). What `run` returned.
pub async fn while_served<T>(e: &Env, run: impl AsyncFnOnce(String) -> T) -> T {
    central::server::install_crypto_provider();
    let stop = tokio_util::sync::CancellationToken::new();
    let (addr, server) = serve_on_loopback(&e.central, &e.cfg, &stop);
    let out = run(format!("http://{addr}")).await;
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    out
}

pub fn env() -> Env {
    env_with(|_| {})
}

pub fn gate(s: &str) -> GateId {
    GateId::parse(s).expect("gate")
}

pub fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

/// A seal-exception decision for a transaction.
pub fn seal_exception(g: &GateId, txn: Uuid) -> EventBody {
    EventBody::Decision {
        decision: Decision {
            reasons: vec![Reason::new(ReasonCode::SealMismatch).with("read", "A124")],
            ..test_decision::decision(
                txn,
                g.clone(),
                LaneId::parse("L1").expect("lane"),
                LaneDecision::Inspect,
                "Inspection bay",
                ts("2026-03-01T10:15:00Z"),
            )
        },
    }
}

pub fn fast_decision(g: &GateId) -> EventBody {
    let EventBody::Decision { mut decision } = seal_exception(g, Uuid::now_v7()) else {
        unreachable!()
    };
    decision.decision = LaneDecision::Fast;
    decision.reasons = vec![Reason::new(ReasonCode::AllChecksPassed)];
    EventBody::Decision { decision }
}

pub fn transaction(g: &GateId, txn: Uuid, container: &str) -> EventBody {
    let at = ts("2026-03-01T10:14:00Z");
    EventBody::Transaction {
        transaction: GateTransaction {
            v: SCHEMA_VERSION,
            id: txn,
            gate: g.clone(),
            lane: LaneId::parse("L1").expect("lane"),
            opened_at: at,
            closed_at: at,
            close_reason: CloseReason::Departure,
            reads: vec![Read {
                source: ReadSource::Ocr,
                device: "ocr1".into(),
                raw: container.into(),
                value: ReadValue::Container {
                    number: container.parse().expect("container"),
                },
                first_at: at,
                last_at: at,
                count: 1,
                antenna: None,
                rssi: None,
                confidence: Some(97),
                entered_by: None,
            }],
        },
    }
}

/// A valid chain of entries 1..=n with the given bodies.
pub fn chain(g: &GateId, bodies: Vec<EventBody>) -> Vec<JournalEntry> {
    let start = ts("2026-03-01T10:15:00Z");
    chain_at(
        g,
        (0..)
            .zip(bodies)
            .map(|(i, body)| (start + jiff::SignedDuration::from_secs(i), body))
            .collect(),
    )
}

/// A valid hash chain 1..=n for `g` over bodies written at their times.
pub fn chain_at(g: &GateId, bodies: Vec<(Timestamp, EventBody)>) -> Vec<JournalEntry> {
    let mut prev = GENESIS_HASH.to_owned();
    (1..)
        .zip(bodies)
        .map(|(seq, (at, body))| {
            let e =
                JournalEntry::new_chained(g.clone(), seq, Uuid::now_v7(), at, prev.clone(), body)
                    .expect("entry");
            prev = e.hash.clone();
            e
        })
        .collect()
}

/// Officer `officer`'s action `kind` at 10:20 on `lane` of gate `g`, about transaction `txn`.
pub fn officer_action(
    g: &GateId,
    lane: &str,
    txn: Uuid,
    officer: &str,
    kind: ActionKind,
) -> EventBody {
    EventBody::OfficerAction {
        action: OfficerAction {
            v: SCHEMA_VERSION,
            id: Uuid::now_v7(),
            transaction_id: Some(txn),
            gate: g.clone(),
            lane: LaneId::parse(lane).expect("lane"),
            officer: officer.into(),
            role: "officer".into(),
            at: ts("2026-03-01T10:20:00Z"),
            kind,
        },
    }
}

/// [`chain`] of a truck's gate transaction for `container`, the seal exception decided on
/// it, then `more`.
pub fn exception_chain(
    g: &GateId,
    txn: Uuid,
    container: &str,
    more: Vec<EventBody>,
) -> Vec<JournalEntry> {
    let mut bodies = vec![transaction(g, txn, container), seal_exception(g, txn)];
    bodies.extend(more);
    chain(g, bodies)
}

pub fn batch(g: &GateId, entries: &[JournalEntry]) -> serde_json::Value {
    serde_json::json!({
        "v": SCHEMA_VERSION,
        "batch_id": Uuid::now_v7(),
        "agent": g,
        "entries": entries,
    })
}

pub struct Answer {
    pub status: StatusCode,
    pub json: serde_json::Value,
}

/// Posts `entries` as one batch of gate `g` to its ingest endpoint with the agent `token`.
pub async fn ingest(c: &Central, g: &GateId, token: &str, entries: &[JournalEntry]) -> Answer {
    let uri = format!("/api/v1/agents/{g}/events");
    call(c, "POST", &uri, Some(token), Some(&batch(g, entries))).await
}

/// `GET uri` through the router, with `token` if given.
pub async fn get(c: &Central, uri: &str, token: Option<&str>) -> Answer {
    call(c, "GET", uri, token, None).await
}

/// One request through the router.
pub async fn call(
    c: &Central,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(b).expect("json"))),
        None => req.body(Body::empty()),
    }
    .expect("request");
    let resp = through_router(c, req).await;
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20)
        .await
        .expect("body");
    let json = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
        })
    };
    Answer { status, json }
}

/// `req` through central's router, answered within 30 s.
pub async fn through_router(c: &Central, req: Request<Body>) -> axum::response::Response {
    tokio::time::timeout(
        Duration::from_secs(30),
        central::app(c.clone()).oneshot(req),
    )
    .await
    .expect("answer in time")
    .expect("infallible")
}

/// A dashboard answer: status, `Location` (of a redirect), `Set-Cookie` and the page.
pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub set_cookie: Option<String>,
    pub body: String,
}

impl Page {
    /// Fails, saying `what` and showing the page, unless the page holds `needle`.
    pub fn shows(&self, needle: &str, what: &str) {
        assert!(self.body.contains(needle), "{what}: {}", self.body);
    }
}

/// One browser-like request through the router: the session token as central's cookie,
/// a form body (urlencoded; `csrf` added for the session when it has none).
pub async fn page(
    c: &Central,
    method: &str,
    uri: &str,
    session: Option<&str>,
    form: &[(&str, &str)],
) -> Page {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = session {
        let name = central::dashboard::session::cookie_name(false);
        req = req.header("cookie", format!("{name}={t}"));
    }
    let mut fields: Vec<(String, String)> = form
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    if let (Some(t), "POST") = (session, method)
        && !fields.iter().any(|(k, _)| k == "csrf")
    {
        fields.push(("csrf".into(), central::auth::csrf_token(t)));
    }
    let body = fields
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let req = req
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .expect("request");
    let resp = through_router(c, req).await;
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (status, location, set_cookie) = (resp.status(), header("location"), header("set-cookie"));
    let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
        .await
        .expect("body");
    Page {
        status,
        location,
        set_cookie,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// `application/x-www-form-urlencoded` escaping of one name or value.
fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Logs in through the dashboard's form; returns the session token from the cookie and
/// where the login sent the browser.
pub async fn form_login(c: &Central, user: &str, password: &str) -> (String, String) {
    let p = page(
        c,
        "POST",
        "/login",
        None,
        &[("user", user), ("password", password)],
    )
    .await;
    assert!(
        p.status.is_redirection(),
        "login {user}: {} {}",
        p.status,
        p.body
    );
    let cookie = p.set_cookie.expect("session cookie");
    let token = cookie
        .split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_owned())
        .expect("cookie value");
    (token, p.location.unwrap_or_default())
}

/// Adds a staff user and logs in; returns the session token.
pub async fn staff(c: &Central) -> String {
    c.add_user("ana", "correct horse", "supervisor")
        .expect("user");
    let a = call(
        c,
        "POST",
        "/api/v1/login",
        None,
        Some(&serde_json::json!({"user": "ana", "password": "correct horse"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    a.json["token"].as_str().expect("token").to_owned()
}

pub fn counts(v: &serde_json::Value) -> BTreeMap<String, u64> {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

/// Logs `user` in at the central serving `base` (waiting at most 20 s) and returns the
/// session token.
pub async fn login(http: &reqwest::Client, base: &str, user: &str, password: &str) -> String {
    let body = serde_json::json!({"user": user, "password": password});
    let request = http.post(format!("{base}/api/v1/login")).json(&body);
    let response = request.timeout(Duration::from_secs(20)).send().await;
    let answer: serde_json::Value = response.expect("login").json().await.expect("login answer");
    answer["token"].as_str().expect("session token").to_owned()
}

/// `GET base/api/v1/cases/stream` with the staff `session`: the open event stream.
pub async fn open_case_stream(
    http: &reqwest::Client,
    base: &str,
    session: &str,
) -> reqwest::Response {
    let stream = http
        .get(format!("{base}/api/v1/cases/stream"))
        .bearer_auth(session)
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), 200);
    stream
}

/// Reads `stream` until what it sent holds `text`, failing at `deadline`; returns all it
/// read.
pub async fn read_stream_until(
    stream: &mut reqwest::Response,
    text: &str,
    deadline: tokio::time::Instant,
) -> String {
    let mut seen = String::new();
    while !seen.contains(text) {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .unwrap_or_else(|_| panic!("{text} not on the stream in time: {seen}"))
            .expect("stream chunk")
            .expect("stream still open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    seen
}

/// A consignment `id` declared for `port`: one container, no seals, parties or holds.
pub fn declared_consignment(
    id: &str,
    container: &str,
    port: &str,
) -> protocol::schema::Consignment {
    protocol::schema::Consignment {
        v: SCHEMA_VERSION,
        id: id.into(),
        containers: vec![protocol::schema::DeclaredContainer {
            number: container.parse().expect("container"),
            seals: vec![],
            eseals: vec![],
        }],
        parties: vec![],
        holds: vec![],
        ports: vec![port.into()],
        as_of: ts("2026-03-01T00:00:00Z"),
    }
}

/// The open cases (`GET /api/v1/cases?state=open`) as a supervisor sees them.
pub async fn open_cases(c: &Central) -> serde_json::Value {
    let staff = staff(c).await;
    call(c, "GET", "/api/v1/cases?state=open", Some(&staff), None)
        .await
        .json
}

/// Export locations for a gate in UTC−5 at SGLN 0614141.00777.0, lane L1 read at
/// SGLN 0614141.00777.GATE3.
pub fn gate3_locations() -> central::export::GateLocations {
    use central::export::{GateLocations, Sgln, Zone};
    let mut loc = GateLocations {
        time_zone: Some(Zone::parse("-05:00").expect("zone")),
        biz_location: Some(Sgln::parse("urn:epc:id:sgln:0614141.00777.0").expect("sgln")),
        ..GateLocations::default()
    };
    loc.read_points.insert(
        LaneId::parse("L1").expect("lane"),
        Sgln::parse("urn:epc:id:sgln:0614141.00777.GATE3").expect("sgln"),
    );
    loc
}

/// Verifies a signed envelope with central's public key (hex) and reads its batch.
pub fn verify(
    env: &protocol::schema::SignedEnvelope,
    public_hex: &str,
) -> Result<protocol::schema::ChangeBatch, String> {
    let mut pk = [0u8; 32];
    hex::decode_to_slice(public_hex, &mut pk).map_err(|e| e.to_string())?;
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk).map_err(|e| e.to_string())?;
    let mut sig = [0u8; 64];
    hex::decode_to_slice(&env.signature, &mut sig).map_err(|e| e.to_string())?;
    vk.verify_strict(
        env.payload.as_bytes(),
        &ed25519_dalek::Signature::from_bytes(&sig),
    )
    .map_err(|e| e.to_string())?;
    serde_json::from_str(&env.payload).map_err(|e| e.to_string())
}

/// The signed envelope `json` holds, and its batch, verified with central's key.
pub fn verified(
    c: &central::Central,
    json: serde_json::Value,
) -> (
    protocol::schema::SignedEnvelope,
    protocol::schema::ChangeBatch,
) {
    let env: protocol::schema::SignedEnvelope = serde_json::from_value(json).expect("envelope");
    let b = verify(&env, &c.public_key_hex()).expect("verifies");
    (env, b)
}
