//! The HTTP API ([`app`]): agent ingest and heartbeats (docs/delivery.md), registry
//! replication, staff login, cases with a live stream, queries, exports (CSV and GS1 EPCIS
//! 2.0, see [`crate::export`]), health and metrics.
//!
//! Every error answer is `{"error": "..."}` with a 4xx/5xx status.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::rejection::{BytesRejection, JsonRejection, MissingJsonContentType};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use jiff::{SignedDuration, Timestamp};
use metrics_exporter_prometheus::PrometheusHandle;
use protocol::operator::OperatorId;
use protocol::schema::{
    AeoStatus, GateId, Heartbeat, IngestAck, IngestBatch, LaneDecision, LaneId, ReasonCode,
    ReceivedBatch, TIME_HEADER,
};
use serde::{Deserialize, Serialize};
use tokio_stream::wrappers::BroadcastStream;

use crate::auth;
use crate::cases::CaseError;
use crate::errors::ApiError;
use crate::export::{self, ExportQuery};
use crate::ingest::{self, MAX_BODY_BYTES};
use crate::model::{
    AgentRecord, CaseAction, CaseDetail, CaseOutcome, CaseQuery, CaseState, EventQuery, Session,
    TokenRefusal,
};
use crate::service::{Central, LoginResult, check_port};

/// Longest long-poll wait on `/registry/changes` (docs/delivery.md).
pub const MAX_WAIT_S: u64 = 60;
/// Largest body for requests other than ingest.
const SMALL_BODY_BYTES: usize = 64 * 1024;

static METRICS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder once; later calls return the same handle.
///
/// # Errors
/// When another recorder was installed by someone else.
pub fn install_metrics_recorder() -> anyhow::Result<PrometheusHandle> {
    if let Some(h) = METRICS.get() {
        return Ok(h.clone());
    }
    let h = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| anyhow::anyhow!("installing the metrics recorder: {e}"))?;
    crate::telemetry::describe();
    Ok(METRICS.get_or_init(|| h).clone())
}

// ---------------------------------------------------------------------------------------
// errors
// ---------------------------------------------------------------------------------------

fn json_rejection(r: &JsonRejection) -> ApiError {
    ApiError::new(r.status(), r.body_text())
}

type ApiResult<T> = Result<T, ApiError>;

// ---------------------------------------------------------------------------------------
// authentication
// ---------------------------------------------------------------------------------------

fn bearer_of(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    auth::bearer(Some(v)).map(str::to_owned)
}

/// The agent behind a request's bearer token.
#[derive(Debug)]
pub struct Agent(pub AgentRecord);

impl FromRequestParts<Central> for Agent {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, c: &Central) -> Result<Self, ApiError> {
        let token = bearer_of(&parts.headers).ok_or_else(ApiError::unauthorized)?;
        let rec = c.blocking(move |c| c.agent_for_token(&token)).await?;
        let rec = rec.ok_or_else(|| {
            metrics::counter!("central_auth_failures_total", "who" => "agent").increment(1);
            ApiError::unauthorized()
        })?;
        // Revocation and the end of a rotation's grace apply from the next request on:
        // every request reads the token record.
        if let Some(why) = rec.refusal(Timestamp::now()) {
            metrics::counter!("central_auth_failures_total", "who" => "agent_revoked").increment(1);
            let msg = match why {
                TokenRefusal::Revoked(at) => {
                    format!("the token of gate {} was revoked at {at}", rec.gate)
                }
                TokenRefusal::Expired(at) => format!(
                    "the token of gate {} was replaced by a rotation; its grace period ended at {at}",
                    rec.gate
                ),
            };
            return Err(ApiError::new(StatusCode::FORBIDDEN, msg));
        }
        // A token bound to a client certificate is good only with that certificate.
        if let Some(want) = &rec.cert_sha256 {
            let presented = parts
                .extensions
                .get::<crate::auth::PeerCert>()
                .and_then(|p| p.0.as_deref());
            if presented != Some(want.as_str()) {
                metrics::counter!("central_auth_failures_total", "who" => "agent_cert")
                    .increment(1);
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "gate {} must present its registered client certificate",
                        rec.gate
                    ),
                ));
            }
        }
        Ok(Agent(rec))
    }
}

/// A logged-in staff member.
#[derive(Debug)]
pub struct Staff(pub Session);

impl FromRequestParts<Central> for Staff {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, c: &Central) -> Result<Self, ApiError> {
        let token = bearer_of(&parts.headers).ok_or_else(ApiError::unauthorized)?;
        let s = c.blocking(move |c| c.session(&token)).await?;
        let s = s.ok_or_else(|| {
            metrics::counter!("central_auth_failures_total", "who" => "staff").increment(1);
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing, unknown or expired session token",
            )
        })?;
        // Least privilege: a session without a staff role (a company user of the
        // programme portal) reaches no staff route.
        if crate::model::Role::parse(&s.role).is_none() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("role {} has no access to the staff API", s.role),
            ));
        }
        Ok(Staff(s))
    }
}

fn parse_gate(s: &str) -> ApiResult<GateId> {
    GateId::parse(s).map_err(|e| ApiError::bad(e.to_string()))
}

// ---------------------------------------------------------------------------------------
// router
// ---------------------------------------------------------------------------------------

/// The whole API. Routers are functions: tests drive it with `oneshot`.
pub fn app(central: Central) -> Router {
    let ingest = Router::new()
        .route("/api/v1/agents/{gate}/events", post(post_events))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/api/v1/agents/{gate}/heartbeat", post(post_heartbeat))
        .route("/api/v1/registry/snapshot", get(get_snapshot))
        .route(
            "/api/v1/registry/snapshot/manifest",
            get(get_snapshot_manifest),
        )
        .route(
            "/api/v1/registry/snapshot/chunks/{id}/{index}",
            get(get_snapshot_chunk),
        )
        .route("/api/v1/registry/changes", get(get_changes))
        .route("/api/v1/registry/keys", get(get_keys))
        .route(
            "/api/v1/registry/operators/{operator}/status",
            post(post_status),
        )
        .route("/api/v1/login", post(post_login))
        .route("/api/v1/logout", post(post_logout))
        .route("/api/v1/cases", get(get_cases))
        .route("/api/v1/cases/stream", get(get_case_stream))
        .route("/api/v1/cases/{id}", get(get_case))
        .route("/api/v1/cases/{id}/{action}", post(post_case_action))
        .route("/api/v1/events", get(get_events))
        .route("/api/v1/gates", get(get_gates))
        .route("/api/v1/gates/{gate}/revoke", post(post_gate_revoke))
        .route("/api/v1/gates/{gate}/rotate", post(post_gate_rotate))
        .route("/api/v1/users/{name}/access", post(post_user_access))
        .route("/api/v1/alerts", get(get_alerts))
        .route("/api/v1/audit", get(get_audit))
        .route("/api/v1/stats/summary", get(get_summary))
        .route("/api/v1/stats/hourly", get(get_hourly))
        .route("/api/v1/stats/programme", get(get_programme))
        .route("/api/v1/openapi.json", get(get_openapi))
        .route("/api/v1/export/events.csv", get(get_export_csv))
        .route("/api/v1/export/epcis", get(get_export_epcis))
        .merge(crate::dashboard::router())
        .layer(DefaultBodyLimit::max(SMALL_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            crate::ratelimit::RateLimiter::new(
                central.config().rate_limit_per_s,
                central.config().rate_limit_burst,
            ),
            crate::ratelimit::limit,
        ))
        .merge(ingest)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(central)
        .layer(axum::middleware::from_fn(stamp_time))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

/// Stamps every answer with central's receive and send times ([`TIME_HEADER`]), so each
/// agent request is also a clock sample (docs/clock.md).
async fn stamp_time(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let received = Timestamp::now();
    let mut resp = next.run(req).await;
    let value = format!("{received}, {}", Timestamp::now());
    if let Ok(v) = header::HeaderValue::from_str(&value) {
        resp.headers_mut().insert(TIME_HEADER, v);
    }
    resp
}

/// The OpenAPI 3.1 document of this API (`central/openapi.json`, checked against the
/// router by a test).
pub const OPENAPI: &str = include_str!("../openapi.json");

async fn get_openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

#[derive(Debug, Deserialize)]
struct ProgrammeQuery {
    /// Hours back from now (default 24; 0 = all time).
    hours: Option<u32>,
    cursor: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/stats/programme?hours=&cursor=&limit=`: the benefit figures (AEO vs
/// non-AEO inspection rate, FAST share, median time at gate; per programme; per operator,
/// paginated).
async fn get_programme(
    State(c): State<Central>,
    _staff: Staff,
    Query(q): Query<ProgrammeQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let hours = q.hours.unwrap_or(24);
    let from = (hours > 0)
        .then(|| {
            Timestamp::now()
                .checked_sub(jiff::SignedDuration::from_hours(i64::from(hours)))
                .ok()
        })
        .flatten();
    let offset = match q.cursor.as_deref() {
        None | Some("") => 0,
        Some(c) => c.parse::<usize>().map_err(|_| {
            ApiError::new(StatusCode::BAD_REQUEST, "cursor is not one this API issued")
        })?,
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let b = c
        .blocking(move |c| crate::dashboard::programme::load(c, from))
        .await?;
    Ok(Json(crate::dashboard::programme::benefits_json(
        &b, offset, limit,
    )))
}

async fn healthz(State(c): State<Central>) -> ApiResult<Json<serde_json::Value>> {
    let seq = c.blocking(|c| c.registry_seq()).await?;
    Ok(Json(
        serde_json::json!({ "status": "ok", "registry_seq": seq }),
    ))
}

/// `GET /readyz`: whether this instance can serve now (its storage answers). A load
/// balancer or an agent's failover sends traffic elsewhere while it answers 503.
async fn readyz(State(c): State<Central>) -> Response {
    match c.blocking(|c| c.ready()).await {
        Ok(()) => Json(serde_json::json!({ "ready": true })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(
                    header::RETRY_AFTER,
                    axum::http::HeaderValue::from(crate::errors::RETRY_AFTER_S),
                )],
                Json(serde_json::json!({ "ready": false, "error": e.to_string() })),
            )
                .into_response()
        }
    }
}

async fn metrics_text() -> Response {
    match METRICS.get() {
        Some(h) => {
            aeogate_web::metrics::collect_process();
            (
                [(header::CONTENT_TYPE, aeogate_web::metrics::CONTENT_TYPE)],
                h.render(),
            )
                .into_response()
        }
        None => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no metrics recorder in this process",
        )
        .into_response(),
    }
}

// ---------------------------------------------------------------------------------------
// agents
// ---------------------------------------------------------------------------------------

/// Whether `headers` say the body is JSON (`application/json` or a `+json` type), as
/// axum's `Json` extractor requires.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(v) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = v.split(';').next().unwrap_or_default().trim();
    let Some((kind, sub)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (sub.eq_ignore_ascii_case("json")
            || sub
                .rsplit_once('+')
                .is_some_and(|(_, suffix)| suffix.eq_ignore_ascii_case("json")))
}

/// An agent's batch. The body (up to [`MAX_BODY_BYTES`], a thousand entries) is parsed
/// on the blocking pool with the store work, not on an async worker: parsing a full
/// batch takes milliseconds, and a worker held that long delays every other request it
/// serves (heartbeats, the staff screens' streams). Refusals are those of axum's `Json`
/// extractor: 415 without a JSON content type, 413 over the limit, 400 for bad JSON,
/// 422 for JSON that is not a batch.
async fn post_events(
    State(c): State<Central>,
    Path(gate): Path<String>,
    Agent(agent): Agent,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<IngestAck>> {
    let gate = parse_gate(&gate)?;
    ingest::for_gate(&agent, &gate)?;
    if !is_json(&headers) {
        return Err(json_rejection(&MissingJsonContentType::default().into()));
    }
    let body = body.map_err(|r| json_rejection(&r.into()))?;
    let ack = c
        .blocking(move |c| {
            // Each body is kept as the text it arrived as, to be hashed and stored as is.
            // A body this read refuses is read again as axum reads it, for the refusal's
            // wording (which field, 400 or 422).
            let received = match ReceivedBatch::from_slice(&body) {
                Ok(r) => r,
                Err(_) => {
                    let Json(batch) =
                        Json::<IngestBatch>::from_bytes(&body).map_err(|r| json_rejection(&r))?;
                    ReceivedBatch {
                        batch,
                        bodies: Vec::new(),
                    }
                }
            };
            c.ingest(&agent, &gate, &received).map_err(ApiError::from)
        })
        .await?;
    Ok(Json(ack))
}

async fn post_heartbeat(
    State(c): State<Central>,
    Path(gate): Path<String>,
    Agent(agent): Agent,
    body: Result<Json<Heartbeat>, JsonRejection>,
) -> ApiResult<StatusCode> {
    let gate = parse_gate(&gate)?;
    ingest::for_gate(&agent, &gate)?;
    let Json(hb) = body.map_err(|r| json_rejection(&r))?;
    c.blocking(move |c| c.heartbeat(&agent, &gate, hb)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct RegistryParams {
    port: Option<String>,
    after: Option<String>,
    wait: Option<String>,
}

fn port_for(agent: &AgentRecord, p: &RegistryParams) -> ApiResult<String> {
    let port = p
        .port
        .as_deref()
        .ok_or_else(|| ApiError::bad("query parameter port is required"))?;
    check_port(port).map_err(|e| ApiError::bad(e.to_string()))?;
    if agent.port != port {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "gate {} replicates port {}, not {port}",
                agent.gate, agent.port
            ),
        ));
    }
    Ok(port.to_owned())
}

async fn get_snapshot(
    State(c): State<Central>,
    Agent(agent): Agent,
    Query(p): Query<RegistryParams>,
) -> ApiResult<Response> {
    let port = port_for(&agent, &p)?;
    let env = c.blocking(move |c| c.snapshot_envelope(&port)).await?;
    metrics::counter!("central_snapshots_served_total").increment(1);
    Ok(Json(env).into_response())
}

async fn get_snapshot_manifest(
    State(c): State<Central>,
    Agent(agent): Agent,
    Query(p): Query<RegistryParams>,
) -> ApiResult<Response> {
    let port = port_for(&agent, &p)?;
    let env = c.blocking(move |c| c.snapshot_manifest(&port)).await?;
    metrics::counter!("central_snapshot_manifests_served_total").increment(1);
    Ok(Json(env).into_response())
}

async fn get_snapshot_chunk(
    State(c): State<Central>,
    Path((id, index)): Path<(String, String)>,
    Agent(agent): Agent,
    Query(p): Query<RegistryParams>,
) -> ApiResult<Response> {
    let port = port_for(&agent, &p)?;
    let index: u32 = index
        .parse()
        .map_err(|_| ApiError::bad(format!("chunk {index:?} is not a chunk number")))?;
    let gone = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("snapshot {id:?} chunk {index} is not kept; fetch a new manifest"),
        )
    };
    if id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(gone());
    }
    let (id2, p2) = (id.clone(), port);
    let bytes = c
        .blocking(move |c| c.snapshot_chunk(&p2, &id2, index))
        .await?
        .ok_or_else(gone)?;
    metrics::counter!("central_snapshot_chunks_served_total").increment(1);
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        bytes,
    )
        .into_response())
}

async fn get_changes(
    State(c): State<Central>,
    Agent(agent): Agent,
    Query(p): Query<RegistryParams>,
) -> ApiResult<Response> {
    let port = port_for(&agent, &p)?;
    let after: u64 = match p.after.as_deref() {
        Some(s) => s
            .parse()
            .map_err(|_| ApiError::bad(format!("after {s:?} is not a sequence number")))?,
        None => return Err(ApiError::bad("query parameter after is required")),
    };
    let wait: u64 = match p.wait.as_deref() {
        Some(s) => s
            .parse::<u64>()
            .map_err(|_| ApiError::bad(format!("wait {s:?} is not a number of seconds")))?
            .min(MAX_WAIT_S),
        None => 0,
    };
    let mut rx = c.subscribe_registry();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    // Bounded: each turn either answers or waits for a new seq, until the deadline.
    loop {
        let current = *rx.borrow_and_update();
        if after > current {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "after={after} is beyond central's latest change {current}; fetch a snapshot"
                ),
            ));
        }
        if current > after {
            break;
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { break },
            () = tokio::time::sleep_until(deadline) => break,
            () = c.stop_token().cancelled() => break,
        }
    }
    // The changes, or the signed statement that there are none after `after` as of now.
    let env = c
        .blocking(move |c| c.changes_envelope(&port, after))
        .await?;
    Ok(Json(env).into_response())
}

#[derive(Debug, Serialize)]
struct KeyInfo {
    key_id: String,
    public_key: String,
    current: bool,
}

async fn get_keys(State(c): State<Central>) -> Json<Vec<KeyInfo>> {
    let mut keys = vec![KeyInfo {
        key_id: c.key_id(),
        public_key: c.public_key_hex(),
        current: true,
    }];
    keys.extend(c.config().published_keys.iter().map(|k| KeyInfo {
        key_id: k.key_id.clone(),
        public_key: k.public_key.clone(),
        current: false,
    }));
    Json(keys)
}

// ---------------------------------------------------------------------------------------
// staff
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct Login {
    user: String,
    password: String,
}

async fn post_login(
    State(c): State<Central>,
    crate::dashboard::session::ClientAddr(addr): crate::dashboard::session::ClientAddr,
    body: Result<Json<Login>, JsonRejection>,
) -> ApiResult<Response> {
    // Any body that is not `{"user", "password"}` JSON is the client's mistake: 400.
    let Json(l) = body.map_err(|r| ApiError::bad(r.body_text()))?;
    let out = c
        .blocking(move |c| c.login_limited(&l.user, &l.password, addr))
        .await?;
    match out {
        LoginResult::Ok(token, s) => Ok(Json(serde_json::json!({
            "token": token, "user": s.user, "role": s.role, "expires_at": s.expires_at,
        }))
        .into_response()),
        LoginResult::Refused => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong user name or password",
        )),
        LoginResult::Throttled(wait) => {
            let secs = wait.as_secs().max(1);
            let mut r = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many failed logins; try again in {secs} s"),
            )
            .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
            Ok(r)
        }
    }
}

/// `POST /api/v1/logout`: ends the session of the bearer token the request carries.
async fn post_logout(
    State(c): State<Central>,
    Staff(_): Staff,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let token = bearer_of(&headers).ok_or_else(ApiError::unauthorized)?;
    c.blocking(move |c| c.logout(&token)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct StatusBody {
    status: AeoStatus,
    reason: String,
}

async fn post_status(
    State(c): State<Central>,
    Staff(s): Staff,
    Path(op): Path<String>,
    body: Result<Json<StatusBody>, JsonRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    if !crate::model::Role::parse(&s.role).is_some_and(crate::model::Role::may_change_registry) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "role {} may not change an operator's status (admin only)",
                s.role
            ),
        ));
    }
    let op = OperatorId::parse(&op).map_err(|e| ApiError::bad(format!("operator {op:?}: {e}")))?;
    let Json(b) = body.map_err(|r| json_rejection(&r))?;
    if b.reason.trim().is_empty() {
        return Err(ApiError::bad("reason is required"));
    }
    let seq = c
        .blocking(move |c| c.set_status(&op, b.status, &b.reason, &s.user))
        .await?;
    Ok(Json(serde_json::json!({ "seq": seq })))
}

fn require_credentials_admin(s: &Session) -> ApiResult<()> {
    if crate::model::Role::parse(&s.role).is_some_and(crate::model::Role::may_manage_credentials) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        format!(
            "role {} may not revoke or rotate agent tokens (admin only)",
            s.role
        ),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    /// Only the tokens bound to this client certificate (hex SHA-256 of its DER).
    cert_sha256: Option<String>,
}

async fn post_gate_revoke(
    State(c): State<Central>,
    Staff(s): Staff,
    Path(gate): Path<String>,
    body: Result<Json<RevokeBody>, JsonRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    require_credentials_admin(&s)?;
    let gate = parse_gate(&gate)?;
    // An empty body revokes every token of the gate.
    let b = match body {
        Ok(Json(b)) => b,
        Err(JsonRejection::MissingJsonContentType(_)) => RevokeBody::default(),
        Err(r) => return Err(json_rejection(&r)),
    };
    let g = gate.clone();
    let n = c
        .blocking(move |c| c.revoke_agent(&g, b.cert_sha256.as_deref(), &s.user))
        .await?;
    Ok(Json(serde_json::json!({ "gate": gate, "revoked": n })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    /// How long the old tokens still work, in seconds.
    grace_secs: u64,
}

async fn post_gate_rotate(
    State(c): State<Central>,
    Staff(s): Staff,
    Path(gate): Path<String>,
    body: Result<Json<RotateBody>, JsonRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    require_credentials_admin(&s)?;
    let gate = parse_gate(&gate)?;
    let Json(b) = body.map_err(|r| json_rejection(&r))?;
    let grace = i64::try_from(b.grace_secs)
        .ok()
        .filter(|s| *s <= 366 * 86_400)
        .map(SignedDuration::from_secs)
        .ok_or_else(|| ApiError::bad("grace_secs must be at most 366 days"))?;
    let g = gate.clone();
    let (token, n) = c
        .blocking(move |c| c.rotate_agent(&g, grace, &s.user))
        .await?;
    Ok(Json(serde_json::json!({
        "gate": gate,
        "token": token,
        "old_tokens": n,
        "grace_secs": b.grace_secs,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessBody {
    /// `true` disables the user, `false` enables them again.
    disabled: Option<bool>,
    /// The new role, `analyst` or `admin`.
    role: Option<String>,
}

/// `POST /api/v1/users/{name}/access`: disable, enable or change the role of a staff
/// user; takes effect on the user's open sessions at their next request.
async fn post_user_access(
    State(c): State<Central>,
    Staff(s): Staff,
    Path(name): Path<String>,
    body: Result<Json<AccessBody>, JsonRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    require_credentials_admin(&s)?;
    let Json(b) = body.map_err(|r| json_rejection(&r))?;
    if b.disabled.is_none() && b.role.is_none() {
        return Err(ApiError::bad("give disabled, role or both"));
    }
    if name == s.user && (b.disabled == Some(true) || b.role.is_some()) {
        return Err(ApiError::bad(
            "an admin cannot disable themselves or change their own role",
        ));
    }
    let n = name.clone();
    let user = c
        .blocking(move |c| {
            if let Some(role) = &b.role {
                c.set_user_role(&n, role, &s.user)?;
            }
            if let Some(d) = b.disabled {
                c.set_user_disabled(&n, d, &s.user)?;
            }
            c.user(&n)
        })
        .await?
        .ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, format!("user {name} does not exist"))
        })?;
    Ok(Json(serde_json::json!({
        "name": user.name,
        "role": user.role,
        "disabled": user.disabled,
    })))
}

fn parse_ts(name: &str, v: Option<&String>) -> ApiResult<Option<Timestamp>> {
    v.map(|s| {
        s.parse::<Timestamp>()
            .map_err(|e| ApiError::bad(format!("{name} {s:?} is not an RFC 3339 time: {e}")))
    })
    .transpose()
}

fn parse_limit(v: Option<&String>) -> ApiResult<usize> {
    v.map_or(Ok(100), |s| {
        s.parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::bad(format!("limit {s:?} must be 1..=1000")))
    })
}

async fn get_cases(
    State(c): State<Central>,
    Staff(_): Staff,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let query = CaseQuery {
        state: q
            .get("state")
            .map(|s| {
                CaseState::parse(s).ok_or_else(|| {
                    ApiError::bad(format!(
                        "state {s:?}: expected open, acknowledged or resolved"
                    ))
                })
            })
            .transpose()?,
        gate: q.get("gate").map(|g| parse_gate(g)).transpose()?,
        lane: q
            .get("lane")
            .map(|l| LaneId::parse(l).map_err(|e| ApiError::bad(e.to_string())))
            .transpose()?,
        reason: q
            .get("reason")
            .map(|r| {
                ReasonCode::from_code(&r.to_ascii_uppercase())
                    .ok_or_else(|| ApiError::bad(format!("reason {r:?} is not a reason code")))
            })
            .transpose()?,
        from: parse_ts("from", q.get("from"))?,
        to: parse_ts("to", q.get("to"))?,
        cursor: q.get("cursor").cloned(),
        limit: parse_limit(q.get("limit"))?,
    };
    let page = c.blocking(move |c| c.cases(&query)).await?;
    Ok(Json(page).into_response())
}

async fn get_case(
    State(c): State<Central>,
    Staff(_): Staff,
    Path(id): Path<String>,
) -> ApiResult<Json<CaseDetail>> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::bad(format!("case id {id:?} is not a number")))?;
    let detail = c
        .blocking(move |c| c.case_detail(id))
        .await?
        .ok_or_else(|| ApiError::from(CaseError::NotFound(id)))?;
    Ok(Json(detail))
}

#[derive(Debug, Deserialize)]
struct ActionBody {
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    assignee: Option<String>,
    #[serde(default)]
    outcome: Option<CaseOutcome>,
}

async fn post_case_action(
    State(c): State<Central>,
    Staff(s): Staff,
    Path((id, action)): Path<(String, String)>,
    body: Option<Json<ActionBody>>,
) -> ApiResult<Json<crate::model::Case>> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::bad(format!("case id {id:?} is not a number")))?;
    let b = body.map_or(
        ActionBody {
            note: None,
            assignee: None,
            outcome: None,
        },
        |Json(b)| b,
    );
    let action = match action.as_str() {
        "acknowledge" => CaseAction::Acknowledge { note: b.note },
        "assign" => CaseAction::Assign {
            assignee: b.assignee.ok_or_else(|| ApiError::bad("assignee is required"))?,
            note: b.note,
        },
        "resolve" => CaseAction::Resolve {
            outcome: b.outcome.ok_or_else(|| {
                ApiError::bad("outcome is required: {\"outcome\": \"SEAL_VERIFIED_INTACT\" | \"SEAL_REPLACED\" (with new_seal) | \"DISCREPANCY_CONFIRMED\" | \"FALSE_READ\"}")
            })?,
            note: b.note,
        },
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("unknown case action {other:?}: acknowledge, assign or resolve"),
            ));
        }
    };
    let case = c
        .blocking(move |c| c.act_on_case(id, &action, &s.user))
        .await?;
    Ok(Json(case))
}

async fn get_case_stream(
    State(c): State<Central>,
    Staff(_): Staff,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = BroadcastStream::new(c.subscribe_cases())
        .map(|m| {
            Ok(match m {
                Ok(case) => Event::default()
                    .event("case")
                    .json_data(&case)
                    .unwrap_or_else(|_| Event::default().event("resync").data("")),
                // A slow client missed cases: tell it to refetch the list.
                Err(_lagged) => Event::default().event("resync").data(""),
            })
        })
        .take_until(c.stop_token().clone().cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn get_events(
    State(c): State<Central>,
    Staff(_): Staff,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let query = EventQuery {
        gate: q.get("gate").map(|g| parse_gate(g)).transpose()?,
        lane: q
            .get("lane")
            .map(|l| LaneId::parse(l).map_err(|e| ApiError::bad(e.to_string())))
            .transpose()?,
        container: q
            .get("container")
            .map(|s| {
                protocol::container::ContainerNumber::parse(s)
                    .map(|n| n.to_string())
                    .map_err(|e| ApiError::bad(format!("container {s:?}: {e}")))
            })
            .transpose()?,
        decision: q
            .get("decision")
            .map(|d| match d.to_ascii_uppercase().as_str() {
                "FAST" => Ok(LaneDecision::Fast),
                "STANDARD" => Ok(LaneDecision::Standard),
                "INSPECT" => Ok(LaneDecision::Inspect),
                _ => Err(ApiError::bad(format!(
                    "decision {d:?}: expected FAST, STANDARD or INSPECT"
                ))),
            })
            .transpose()?,
        from: parse_ts("from", q.get("from"))?,
        to: parse_ts("to", q.get("to"))?,
        cursor: q.get("cursor").cloned(),
        limit: parse_limit(q.get("limit"))?,
    };
    let page = c.blocking(move |c| c.events(&query)).await?;
    Ok(Json(page).into_response())
}

async fn get_gates(State(c): State<Central>, Staff(_): Staff) -> ApiResult<Response> {
    let gates = c.blocking(|c| c.gates(Timestamp::now())).await?;
    Ok(Json(gates).into_response())
}

async fn get_alerts(State(c): State<Central>, Staff(_): Staff) -> ApiResult<Response> {
    let alerts = c.blocking(|c| c.alerts(1000)).await?;
    Ok(Json(alerts).into_response())
}

async fn get_audit(
    State(c): State<Central>,
    Staff(_): Staff,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let after = match q.get("after") {
        Some(s) => s
            .parse::<u64>()
            .map_err(|_| ApiError::bad(format!("after {s:?} is not a number")))?,
        None => 0,
    };
    let limit = parse_limit(q.get("limit"))?;
    let log = c.blocking(move |c| c.audit_log(after, limit)).await?;
    Ok(Json(log).into_response())
}

async fn get_summary(State(c): State<Central>, Staff(_): Staff) -> ApiResult<Response> {
    let s = c.blocking(|c| c.summary()).await?;
    Ok(Json(s).into_response())
}

async fn get_hourly(
    State(c): State<Central>,
    Staff(_): Staff,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let gate = q.get("gate").map(|g| parse_gate(g)).transpose()?;
    let now = Timestamp::now();
    let to = parse_ts("to", q.get("to"))?.unwrap_or(now);
    let from = parse_ts("from", q.get("from"))?
        .unwrap_or_else(|| to.checked_sub(SignedDuration::from_hours(24)).unwrap_or(to));
    let stats = c
        .blocking(move |c| c.hourly_stats(gate.as_ref(), from, to))
        .await?;
    Ok(Json(stats).into_response())
}

// ---------------------------------------------------------------------------------------
// exports (docs/central.md, "Exports")
// ---------------------------------------------------------------------------------------

/// `gate`, `from` and `to` of an export request; the range defaults to the 24 hours
/// before `to`, and `to` to now.
fn export_query(q: &HashMap<String, String>) -> ApiResult<ExportQuery> {
    let gate = q.get("gate").map(|g| parse_gate(g)).transpose()?;
    let to = parse_ts("to", q.get("to"))?.unwrap_or_else(Timestamp::now);
    let from = parse_ts("from", q.get("from"))?
        .unwrap_or_else(|| to.checked_sub(SignedDuration::from_hours(24)).unwrap_or(to));
    if from >= to {
        return Err(ApiError::bad(format!(
            "from ({from}) must be before to ({to})"
        )));
    }
    Ok(ExportQuery {
        gate,
        from: Some(from),
        to: Some(to),
    })
}

fn export_name(q: &ExportQuery, ext: &str) -> String {
    let gate = q.gate.as_ref().map_or("all-gates", GateId::as_str);
    let day = q
        .from
        .map(|t| t.strftime("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_default();
    format!("attachment; filename=\"aeogate-{gate}-{day}.{ext}\"")
}

async fn get_export_csv(
    State(c): State<Central>,
    Staff(_): Staff,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let query = export_query(&q)?;
    let name = export_name(&query, "csv");
    let body = c
        .blocking(move |c| {
            let events = c.export_events(&query)?;
            let mut out = Vec::new();
            export::write_csv(&events, &mut out)?;
            Ok::<_, export::ExportError>(out)
        })
        .await?;
    metrics::counter!("central_exports_total", "format" => "csv").increment(1);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, name),
        ],
        body,
    )
        .into_response())
}

async fn get_export_epcis(
    State(c): State<Central>,
    Staff(_): Staff,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let query = export_query(&q)?;
    let name = export_name(&query, "jsonld");
    let body = c
        .blocking(move |c| {
            let events = c.export_events(&query)?;
            let doc = export::epcis_document(&events, &c.config().export, Timestamp::now());
            serde_json::to_vec_pretty(&doc).map_err(|e| export::ExportError::Io(e.into()))
        })
        .await?;
    metrics::counter!("central_exports_total", "format" => "epcis").increment(1);
    Ok((
        [
            (header::CONTENT_TYPE, "application/ld+json".to_owned()),
            (header::CONTENT_DISPOSITION, name),
        ],
        body,
    )
        .into_response())
}
