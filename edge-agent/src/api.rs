//! The console API (axum): lane states, transaction history, officer actions, live updates,
//! metrics and health probes. [`app`] builds the router; serving is the runtime's job.
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /api/v1/lanes` | every lane: open transaction, last decision, what the lane shows, its devices, replica freshness, degraded flags |
//! | `GET /api/v1/transactions?lane=&container=&limit=` | recent transactions with their decisions, newest first |
//! | `GET /api/v1/transactions/{id}` | one transaction, its decision and officer actions |
//! | `POST /api/v1/lanes/{lane}/actions` | an officer action, attributed to the session's user, journaled; an override changes the lane |
//! | `POST /api/v1/lanes/{lane}/close` | `{"reason": "…"}`: a supervisor closes the lane (sign red and "LANE CLOSED", barrier down, no transaction opens there); journaled, kept across a restart; `409` if already closed |
//! | `POST /api/v1/lanes/{lane}/reopen` | `{"reason": "…"}`: a supervisor reopens it (back to the safe state, waiting for the next truck); `409` if open |
//! | `GET /api/v1/events` | server-sent events: a `lane` event with the lane's state on every change |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /healthz` | 200 while the process serves |
//! | `GET /readyz` | 200 when the store is open, the journal takes writes and the console up; body flags a stale replica and down devices |
//!
//! Everything except `/metrics`, `/healthz`, `/readyz` and the login needs a session
//! ([`crate::console::auth`]): the session cookie (with the `X-CSRF-Token` header on
//! state-changing calls) or `Authorization: Bearer <token>` from `POST /api/v1/login`.
//! The JSON API carries risk reasons, so it is for officers and supervisors only; an
//! operator account gets 403. An override applies to the decided transaction the lane
//! shows now (any other transaction: `409`, nothing journaled or changed); officers may
//! override a lane only towards a stricter one (FAST → STANDARD → INSPECT); relaxing a
//! lane takes a supervisor, with a reason. The console's pages
//! ([`crate::console`]) are merged into the same router, behind the same CSRF layer.

use std::convert::Infallible;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt as _;
use jiff::Timestamp;
use protocol::schema::{
    ActionKind, Decision, DeviceHealth, EventBody, GateTransaction, LaneId, OfficerAction,
    ReadSource, SCHEMA_VERSION,
};
use serde::{Deserialize, Serialize};
use tokio_stream::wrappers::BroadcastStream;
use uuid::Uuid;

use crate::assembler::{AssemblerEvent, RawRead};
use crate::console::{Authed, auth::AuthError};
use crate::live::LaneLive;
use crate::officer::{self, Refusal};
use crate::replica::{ReplicaMeta, ReplicaStatus};
use crate::state::AppState;

/// Largest request body accepted (an officer action is well under 1 KiB).
const BODY_LIMIT: usize = 16 * 1024;
/// Most transactions one history request returns.
const MAX_LIMIT: usize = 500;

/// The console router over the agent's shared state: the JSON API, the console's pages
/// and probes, behind CSRF protection.
///
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/lanes", get(lanes))
        .route("/api/v1/transactions", get(transactions))
        .route("/api/v1/transactions/{id}", get(transaction))
        .route("/api/v1/lanes/{lane}/actions", post(action))
        .route(
            "/api/v1/lanes/{lane}/close",
            post(close_or_reopen_lane::<true>),
        )
        .route(
            "/api/v1/lanes/{lane}/reopen",
            post(close_or_reopen_lane::<false>),
        )
        .route("/api/v1/events", get(events))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(crate::console::routes())
        .layer(tower_http::csrf::CsrfLayer::new())
        .layer(tower_http::limit::RequestBodyLimitLayer::new(BODY_LIMIT))
        .with_state(state)
}

/// An API error: status and `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthenticated { .. } => {
                ApiError(StatusCode::UNAUTHORIZED, "log in first".into())
            }
            AuthError::Forbidden(m) => ApiError(StatusCode::FORBIDDEN, m),
            AuthError::BadRequest(m) => bad_request(m),
            AuthError::Internal(m) => internal(m),
        }
    }
}

fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "console request failed");
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// Replica freshness now, from its bookkeeping.
#[must_use]
pub fn replica_status(shared: &AppState, meta: &ReplicaMeta) -> ReplicaStatus {
    ReplicaStatus::of(meta, Timestamp::now(), shared.staleness_bound_now())
}

async fn replica_meta(shared: &AppState) -> Result<ReplicaMeta, ApiError> {
    let store = shared.store.clone();
    tokio::task::spawn_blocking(move || store.replica_meta())
        .await
        .map_err(internal)
}

/// One lane as `GET /api/v1/lanes` shows it.
#[derive(Debug, Serialize)]
pub struct LaneReport {
    /// Live state.
    #[serde(flatten)]
    pub live: LaneLive,
    /// Devices serving this lane (and lane-less ones such as the MQTT connection).
    pub devices: Vec<DeviceHealth>,
    /// Replica freshness (the same for every lane).
    pub replica: ReplicaStatus,
    /// What keeps this lane from working fully, in words.
    pub degraded: Vec<String>,
}

async fn lanes(
    State(s): State<AppState>,
    authed: Authed,
) -> Result<Json<Vec<LaneReport>>, ApiError> {
    authed.require_customs()?;
    let meta = replica_meta(&s).await?;
    let replica = replica_status(&s, &meta);
    let health = s.device_health();
    let out = s
        .live
        .snapshot()
        .into_iter()
        .map(|live| {
            let devices: Vec<DeviceHealth> = health
                .iter()
                .filter(|d| d.lane.as_ref().is_none_or(|l| l == &live.lane))
                .cloned()
                .collect();
            let mut degraded: Vec<String> = devices
                .iter()
                .filter(|d| !d.up)
                .map(|d| format!("device {} down: {}", d.device, d.detail))
                .collect();
            if replica.stale {
                degraded.push("registry replica stale: priority (FAST) suspended".into());
            }
            LaneReport {
                live,
                devices,
                replica: replica.clone(),
                degraded,
            }
        })
        .collect();
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    lane: Option<String>,
    container: Option<String>,
    limit: Option<usize>,
}

/// A transaction with its decision.
#[derive(Debug, Serialize)]
pub struct TransactionRow {
    /// The transaction.
    pub transaction: GateTransaction,
    /// Its decision, if journaled.
    pub decision: Option<Decision>,
}

async fn transactions(
    State(s): State<AppState>,
    authed: Authed,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<Vec<TransactionRow>>, ApiError> {
    authed.require_customs()?;
    let lane = match q.lane.as_deref().filter(|l| !l.is_empty()) {
        Some(l) => Some(LaneId::parse(l).map_err(|e| bad_request(e.to_string()))?),
        None => None,
    };
    let container = q
        .container
        .map(|c| c.trim().to_uppercase())
        .filter(|c| !c.is_empty());
    if container
        .as_ref()
        .is_some_and(|c| c.len() > 11 || !c.chars().all(|ch| ch.is_ascii_alphanumeric()))
    {
        return Err(bad_request(
            "container: at most 11 letters and digits (a number or its prefix)",
        ));
    }
    let limit = q.limit.unwrap_or(50).clamp(1, MAX_LIMIT);
    let store = s.store.clone();
    let rows = tokio::task::spawn_blocking(move || {
        store.recent_transactions(lane.as_ref(), container.as_deref(), limit)
    })
    .await
    .map_err(internal)?
    .map_err(internal)?;
    Ok(Json(
        rows.into_iter()
            .map(|(transaction, decision)| TransactionRow {
                transaction,
                decision,
            })
            .collect(),
    ))
}

/// `GET /api/v1/transactions/{id}`.
#[derive(Debug, Serialize)]
pub struct TransactionDetail {
    /// The transaction.
    pub transaction: GateTransaction,
    /// Its decision.
    pub decision: Option<Decision>,
    /// Officer actions on it, oldest first.
    pub actions: Vec<OfficerAction>,
}

async fn transaction(
    State(s): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
) -> Result<Json<TransactionDetail>, ApiError> {
    authed.require_customs()?;
    let id = Uuid::parse_str(&id).map_err(|e| bad_request(format!("transaction id: {e}")))?;
    let store = s.store.clone();
    let found = tokio::task::spawn_blocking(move || store.transaction(&id))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    match found {
        Some((transaction, decision, actions)) => Ok(Json(TransactionDetail {
            transaction,
            decision,
            actions,
        })),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no transaction {id} in this gate's journal"),
        )),
    }
}

/// Body of `POST /api/v1/lanes/{lane}/actions`: the transaction (optional for a manual
/// entry into whatever is open) and the action, tagged by `"action"` as in
/// [`ActionKind`], e.g.
/// `{"transaction_id":"…","action":"OVERRIDE","to":"INSPECT","reason":"driver behaviour","note":""}`.
#[derive(Debug, Deserialize)]
pub struct ActionRequest {
    /// The transaction acted on.
    #[serde(default)]
    pub transaction_id: Option<Uuid>,
    /// What the officer did.
    #[serde(flatten)]
    pub kind: ActionKind,
}

/// Answer to an action: the journal sequence it was written at.
#[derive(Debug, Serialize)]
pub struct ActionAccepted {
    /// Journal sequence of the action.
    pub seq: u64,
    /// The recorded action.
    pub action: OfficerAction,
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Invalid(m) => bad_request(m),
            Refusal::Forbidden(m) => ApiError(StatusCode::FORBIDDEN, m),
            Refusal::Conflict(m) => ApiError(StatusCode::CONFLICT, m),
        }
    }
}

async fn action(
    State(s): State<AppState>,
    authed: Authed,
    Path(lane): Path<String>,
    body: Result<Json<ActionRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<ActionAccepted>), ApiError> {
    authed.require_customs()?;
    let user = authed.user().to_owned();
    let lane = LaneId::parse(&lane).map_err(|e| bad_request(e.to_string()))?;
    let lane_cfg = s.lane(&lane).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("no lane {lane} at this gate"),
        )
    })?;
    let Json(req) = body.map_err(|e| bad_request(e.body_text()))?;
    officer::check_shape(&req.kind, req.transaction_id)?;
    // An override binds to the decided transaction the lane shows now (of this lane, so
    // never another lane's truck).
    let current = if matches!(req.kind, ActionKind::Override { .. }) {
        let shown = s.live.get(&lane).and_then(|l| l.shown);
        Some(officer::bind_override(
            &lane,
            shown.as_ref(),
            req.transaction_id,
        )?)
    } else {
        None
    };
    officer::check_action(authed.role(), &req.kind, req.transaction_id, current)?;
    if let Some(tx) = req.transaction_id {
        let store = s.store.clone();
        let journaled = tokio::task::spawn_blocking(move || store.transaction(&tx))
            .await
            .map_err(internal)?
            .map_err(internal)?;
        officer::check_lane(&lane, tx, journaled.as_ref().map(|(t, ..)| &t.lane))?;
    }
    let now = Timestamp::now();
    let action = OfficerAction {
        v: SCHEMA_VERSION,
        id: Uuid::now_v7(),
        transaction_id: req.transaction_id,
        gate: s.gate.clone(),
        lane: lane.clone(),
        officer: user.clone(),
        role: authed.role().as_str().into(),
        at: now,
        kind: req.kind,
    };
    let entries = s
        .journal
        .append(vec![EventBody::OfficerAction {
            action: action.clone(),
        }])
        .await
        .map_err(|e| internal(format!("{e:#}")))?;
    let seq = entries.first().map_or(0, |e| e.seq);
    metrics::counter!("aeogate_officer_actions_total", "lane" => lane.to_string()).increment(1);
    tracing::info!(%lane, officer = %user, seq, "officer action journaled");

    match &action.kind {
        ActionKind::Override { to, .. } => {
            let state =
                officer::override_state(&lane, action.transaction_id, *to, &lane_cfg.routes, now);
            // Shown only if the lane still shows that transaction: a truck that arrived
            // while the override was being journaled keeps its own state.
            let tx = action.transaction_id;
            let shown = s.live.show_if(
                &lane,
                state,
                |now| now.and_then(|n| n.transaction_id) == tx,
                |st| s.actuators.show(st),
            );
            if !shown {
                return Err(ApiError(
                    StatusCode::CONFLICT,
                    format!(
                        "lane {lane} moved on to another truck while the override was recorded: it is journaled (seq {seq}) against its transaction but not shown"
                    ),
                ));
            }
        }
        ActionKind::ManualEntry { value } => {
            let read = RawRead {
                lane: lane.clone(),
                source: ReadSource::Manual,
                device: "console".into(),
                raw: serde_json::to_string(value).unwrap_or_default(),
                value: value.clone(),
                at: now,
                antenna: None,
                rssi: None,
                confidence: None,
                entered_by: Some(user),
            };
            if s.events.send(AssemblerEvent::Read(read)).await.is_err() {
                return Err(ApiError(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the agent is stopping; the entry was journaled but not added to a transaction"
                        .into(),
                ));
            }
        }
        ActionKind::Confirm | ActionKind::InspectionResult { .. } => {}
    }
    Ok((StatusCode::CREATED, Json(ActionAccepted { seq, action })))
}

/// Body of `POST /api/v1/lanes/{lane}/close` and `/reopen`.
#[derive(Debug, Deserialize)]
pub struct LaneControlRequest {
    /// Why (required).
    pub reason: String,
}

/// Answer to a lane close or reopen.
#[derive(Debug, Serialize)]
pub struct LaneControlAccepted {
    /// Journal sequence of the `LANE_CONTROL` entry.
    pub seq: u64,
    pub lane: LaneId,
    pub closed: bool,
    pub reason: String,
    pub by: String,
    pub at: Timestamp,
}

/// `POST /api/v1/lanes/{lane}/close` (`CLOSE`) or `/reopen`.
async fn close_or_reopen_lane<const CLOSE: bool>(
    State(s): State<AppState>,
    authed: Authed,
    Path(lane): Path<String>,
    body: Result<Json<LaneControlRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<LaneControlAccepted>), ApiError> {
    let Json(req) = body.map_err(|e| bad_request(e.body_text()))?;
    let done = lane_control(&s, &authed, &lane, CLOSE, req.reason).await?;
    Ok((StatusCode::CREATED, Json(done)))
}

/// Closes (`close`) or reopens a lane for the session's user (the API's and the console
/// form's common path): checks the role and reason ([`officer::check_lane_control`]),
/// records the lane's state durably, journals `LANE_CONTROL`, then shows it on the lane.
/// The durable record comes first so that a crash never leaves a lane open that a
/// supervisor was told is closed; it is undone if the journal refuses the entry.
///
/// # Errors
/// `400` for a bad lane id or reason, `403` for a role other than supervisor, `404` for a
/// lane not at this gate, `409` when the lane already is as asked, `500` when it cannot be
/// recorded (nothing changed then).
pub async fn lane_control(
    s: &AppState,
    authed: &Authed,
    lane: &str,
    close: bool,
    reason: String,
) -> Result<LaneControlAccepted, ApiError> {
    authed.require_customs()?;
    officer::check_lane_control(authed.role(), &reason)?;
    let reason = reason.trim().to_owned();
    let lane = LaneId::parse(lane).map_err(|e| bad_request(e.to_string()))?;
    if s.lane(&lane).is_none() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no lane {lane} at this gate"),
        ));
    }
    if s.live.is_closed(&lane) == close {
        let now = if close { "closed" } else { "open" };
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("lane {lane} is already {now}; nothing was changed"),
        ));
    }
    let user = authed.user().to_owned();
    let now = Timestamp::now();
    let closure = close.then(|| crate::store::LaneClosure {
        reason: reason.clone(),
        by: user.clone(),
        since: now,
    });
    let previous = s.live.get(&lane).and_then(|l| l.closed);
    let record = |c: Option<crate::store::LaneClosure>| {
        let store = s.store.clone();
        let lane = lane.clone();
        async move {
            tokio::task::spawn_blocking(move || store.set_lane_closure(&lane, c.as_ref()))
                .await
                .map_err(internal)?
                .map_err(internal)
        }
    };
    record(closure.clone()).await?;
    let entries = match s
        .journal
        .append(vec![EventBody::LaneControl {
            lane: lane.clone(),
            closed: close,
            reason: reason.clone(),
            by: user.clone(),
        }])
        .await
    {
        Ok(e) => e,
        Err(e) => {
            if let Err(undo) = record(previous).await {
                tracing::error!(%lane, error = ?undo, "lane control could not be undone after the journal refused it");
            }
            return Err(internal(format!("{e:#}")));
        }
    };
    let seq = entries.first().map_or(0, |e| e.seq);
    let state = if close {
        protocol::schema::LaneState::closed(&lane, now)
    } else {
        protocol::schema::LaneState::waiting(&lane, None, now)
    };
    s.live
        .set_closed(&lane, closure, state, |st| s.actuators.show(st));
    crate::telemetry::set_closed_lanes(s.live.closed_lanes().len());
    tracing::warn!(%lane, closed = close, by = %user, %reason, seq, "lane control journaled");
    Ok(LaneControlAccepted {
        seq,
        lane,
        closed: close,
        reason,
        by: user,
        at: now,
    })
}

async fn events(
    State(s): State<AppState>,
    authed: Authed,
) -> Result<Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    authed.require_customs()?;
    let stream = BroadcastStream::new(s.live.subscribe())
        .map(|m| {
            Ok(match m {
                Ok(lane) => Event::default()
                    .event("lane")
                    .json_data(&lane)
                    .unwrap_or_else(|_| Event::default().event("resync")),
                // A slow client missed updates: it refetches /api/v1/lanes.
                Err(_) => Event::default().event("resync").data(""),
            })
        })
        .take_until(s.shutdown.clone().cancelled_owned());
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    aeogate_web::metrics::collect_process();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            aeogate_web::metrics::CONTENT_TYPE,
        )],
        s.metrics.render(),
    )
}

/// `GET /readyz` body.
#[derive(Debug, Serialize)]
pub struct Readiness {
    /// Ready to decide lanes.
    pub ready: bool,
    /// The store answers.
    pub store: bool,
    /// The journal takes writes (false while a full disk refuses them and records are
    /// held, until the store is reopened and they are written).
    pub journal: bool,
    /// Replica freshness; a stale replica leaves the agent ready (it decides, without
    /// FAST) but is flagged.
    pub replica: ReplicaStatus,
    /// Devices that are down.
    pub devices_down: Vec<String>,
}

async fn readyz(State(s): State<AppState>) -> Result<Response, ApiError> {
    let store = s.store.clone();
    let store_ok =
        tokio::task::spawn_blocking(move || store.entries(store.journal_head(), 1).is_ok())
            .await
            .unwrap_or(false);
    let meta = replica_meta(&s).await?;
    let journal = s.journal.writable();
    let r = Readiness {
        ready: store_ok && journal,
        store: store_ok,
        journal,
        replica: replica_status(&s, &meta),
        devices_down: s
            .device_health()
            .into_iter()
            .filter(|d| !d.up)
            .map(|d| d.device)
            .collect(),
    };
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, Json(r)).into_response())
}
