//! The console's router (JSON API, pages, login) driven with `oneshot` over an
//! [`AppState`] built in the test from a real store in a temporary directory: no socket,
//! no running agent. The full stack over a real socket is `api_console.rs`.

mod support;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use edge_agent::assembler::AssemblerEvent;
use edge_agent::console::{Role, Users, add_user};
use edge_agent::state::AppState;
use edge_agent::store::Store;
use protocol::i18n::Lang;
use protocol::schema::{
    ActionKind, EventBody, LaneDecision, LaneId, LaneSignal, LaneState, ReadValue, ReasonCode,
};
use serde_json::{Value, json};
use support::two_lane_config;
use tokio::sync::mpsc;
use tower::ServiceExt as _;

const OFFICER: &str = "officer-session-token-for-tests-0000000001";
const SUPERVISOR: &str = "supervisor-session-token-for-tests-00000002";

/// A router over a state built from parts, with the assembler's end of the event channel.
struct Rig {
    state: AppState,
    app: Router,
    events: mpsc::Receiver<AssemblerEvent>,
    _dir: tempfile::TempDir,
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = two_lane_config(dir.path());
    let store = Store::open(&cfg.store.path, cfg.gate.id.clone()).expect("store");
    let users = Users::open(&store).expect("accounts");
    for (name, role, token) in [
        ("o.smith", Role::Officer, OFFICER),
        ("s.jones", Role::Supervisor, SUPERVISOR),
    ] {
        users
            .insert_session(token, name, role, Lang::En, Duration::from_secs(600))
            .expect("session");
    }
    let (state, events) = support::app_state(&cfg, store);
    Rig {
        app: edge_agent::api::app(state.clone()),
        state,
        events,
        _dir: dir,
    }
}

/// Puts a decided state for `tx` on `lane`, as the pipeline does after a decision.
fn show(state: &AppState, lane_id: &str, tx: uuid::Uuid, decision: LaneDecision) {
    let shown = LaneState {
        lane: lane(lane_id),
        transaction_id: Some(tx),
        decision: decision.into(),
        route: format!("{lane_id} {decision}"),
        reasons: vec![ReasonCode::PartyUnknown],
        priority: false,
        at: jiff::Timestamp::now(),
        officer_override: false,
    };
    state.live.update(&lane(lane_id), |l| l.shown = Some(shown));
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("json body")
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn send(app: &Router, req: Request<Body>) -> Answer {
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body")
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

fn get(path: &str, bearer: Option<&str>) -> Request<Body> {
    let mut b = Request::get(path);
    if let Some(t) = bearer {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    b.body(Body::empty()).expect("request")
}

fn post_json(path: &str, bearer: Option<&str>, body: &Value) -> Request<Body> {
    let mut b = Request::post(path).header(header::CONTENT_TYPE, "application/json");
    if let Some(t) = bearer {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    b.body(Body::from(body.to_string())).expect("request")
}

fn lane(id: &str) -> LaneId {
    LaneId::parse(id).expect("lane")
}

#[tokio::test]
async fn lanes_report_a_never_loaded_replica_as_stale_and_ready_stays_up() {
    let r = rig();
    let a = send(&r.app, get("/api/v1/lanes", Some(OFFICER))).await;
    assert_eq!(a.status, StatusCode::OK);
    let lanes = a.json();
    assert_eq!(lanes[0]["lane"], "L1");
    assert_eq!(lanes[0]["replica"]["stale"], true);
    let degraded = lanes[0]["degraded"].to_string();
    assert!(degraded.contains("replica stale"), "{degraded}");

    let ready = send(&r.app, get("/readyz", None)).await;
    assert_eq!(ready.status, StatusCode::OK);
    let ready = ready.json();
    assert_eq!(
        (ready["ready"].clone(), ready["replica"]["stale"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(
        send(&r.app, get("/healthz", None)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn officer_actions_are_validated_then_journaled_with_the_officer() {
    let r = rig();
    let url = "/api/v1/lanes/L1/actions";
    let tx = uuid::Uuid::now_v7();
    let override_body = json!({"transaction_id": tx, "action": "OVERRIDE", "to": "INSPECT", "reason": "driver behaviour", "note": ""});

    let a = send(&r.app, post_json(url, None, &override_body)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "no session");
    let blank = json!({"transaction_id": tx, "action": "OVERRIDE", "to": "FAST", "reason": "  ", "note": ""});
    let a = send(&r.app, post_json(url, Some(OFFICER), &blank)).await;
    assert_eq!(
        a.status,
        StatusCode::BAD_REQUEST,
        "an override needs a reason"
    );
    let a = send(
        &r.app,
        post_json("/api/v1/lanes/L9/actions", Some(OFFICER), &override_body),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let bad_container =
        json!({"action": "MANUAL_ENTRY", "value": {"kind": "CONTAINER", "number": "CSQU3054384"}});
    let a = send(&r.app, post_json(url, Some(OFFICER), &bad_container)).await;
    assert_eq!(
        a.status,
        StatusCode::BAD_REQUEST,
        "a container number with a wrong check digit is refused"
    );
    assert!(a.json()["error"].as_str().is_some_and(|e| !e.is_empty()));
    let no_tx = json!({"action": "CONFIRM"});
    let a = send(&r.app, post_json(url, Some(OFFICER), &no_tx)).await;
    assert_eq!(
        a.status,
        StatusCode::BAD_REQUEST,
        "a confirmation names its transaction"
    );

    // The lane shows no decision for `tx`: nothing to override.
    let head = r.state.store.journal_head();
    let a = send(&r.app, post_json(url, Some(OFFICER), &override_body)).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text());
    assert_eq!(r.state.store.journal_head(), head, "nothing journaled");

    show(&r.state, "L1", tx, LaneDecision::Standard);
    let a = send(&r.app, post_json(url, Some(OFFICER), &override_body)).await;
    assert_eq!(a.status, StatusCode::CREATED);
    let seq = a.json()["seq"].as_u64().expect("seq");
    let entry = r
        .state
        .store
        .entry(seq)
        .expect("read journal")
        .expect("entry exists");
    match entry.body {
        EventBody::OfficerAction { action } => {
            assert_eq!(action.officer, "o.smith");
            assert_eq!(action.transaction_id, Some(tx));
            assert!(matches!(
                action.kind,
                ActionKind::Override {
                    to: LaneDecision::Inspect,
                    ..
                }
            ));
        }
        other => panic!("expected an officer action, got {other:?}"),
    }
    let shown = r
        .state
        .live
        .get(&lane("L1"))
        .and_then(|l| l.shown)
        .expect("the override is shown");
    assert_eq!(
        (shown.decision, shown.route.as_str(), shown.officer_override),
        (LaneDecision::Inspect.into(), "Inspection bay A", true)
    );
    assert_eq!(shown.reasons, [ReasonCode::OfficerOverride]);
    let lanes = send(&r.app, get("/api/v1/lanes", Some(OFFICER)))
        .await
        .json();
    assert_eq!(lanes[0]["shown"]["decision"], "INSPECT");
    assert_eq!(lanes[0]["shown"]["officer_override"], true);

    let metrics = send(&r.app, get("/metrics", None)).await.text();
    assert!(
        metrics.contains("aeogate_officer_actions_total"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_manual_entry_is_journaled_and_handed_to_the_assembler() {
    let mut r = rig();
    let entry =
        json!({"action": "MANUAL_ENTRY", "value": {"kind": "CONTAINER", "number": "CSQU3054383"}});
    let a = send(
        &r.app,
        post_json("/api/v1/lanes/L2/actions", Some(OFFICER), &entry),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    match r.events.try_recv().expect("an event for the assembler") {
        AssemblerEvent::Read(read) => {
            assert_eq!(read.lane, lane("L2"));
            assert_eq!(read.entered_by.as_deref(), Some("o.smith"));
            assert!(matches!(read.value, ReadValue::Container { .. }));
        }
        other => panic!("expected a read, got {other:?}"),
    }
    // With the assembler gone (the agent stopping) the entry is journaled but refused.
    drop(r.events);
    let a = send(
        &r.app,
        post_json("/api/v1/lanes/L2/actions", Some(OFFICER), &entry),
    )
    .await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn an_officer_may_tighten_the_lane_shown_for_a_transaction_but_not_relax_it() {
    let r = rig();
    let tx = uuid::Uuid::now_v7();
    let shown = LaneState {
        lane: lane("L1"),
        transaction_id: Some(tx),
        decision: LaneDecision::Standard.into(),
        route: "Lane 1 standard".into(),
        reasons: vec![ReasonCode::PartyUnknown],
        priority: false,
        at: jiff::Timestamp::now(),
        officer_override: false,
    };
    r.state.live.update(&lane("L1"), |l| l.shown = Some(shown));
    let to = |d: &str| json!({"transaction_id": tx, "action": "OVERRIDE", "to": d, "reason": "OTHER", "note": ""});
    let url = "/api/v1/lanes/L1/actions";
    let a = send(&r.app, post_json(url, Some(OFFICER), &to("FAST"))).await;
    assert_eq!(
        a.status,
        StatusCode::FORBIDDEN,
        "officer relaxing STANDARD to FAST"
    );
    assert!(
        a.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("now STANDARD"))
    );
    let a = send(&r.app, post_json(url, Some(OFFICER), &to("STANDARD"))).await;
    assert_eq!(a.status, StatusCode::CREATED, "officer keeping STANDARD");
    let a = send(&r.app, post_json(url, Some(OFFICER), &to("INSPECT"))).await;
    assert_eq!(
        a.status,
        StatusCode::CREATED,
        "officer tightening to INSPECT"
    );
    let a = send(&r.app, post_json(url, Some(OFFICER), &to("STANDARD"))).await;
    assert_eq!(
        a.status,
        StatusCode::FORBIDDEN,
        "the lane now shows INSPECT"
    );
    let a = send(&r.app, post_json(url, Some(SUPERVISOR), &to("FAST"))).await;
    assert_eq!(a.status, StatusCode::CREATED, "supervisor relaxing");
    let other = json!({"transaction_id": uuid::Uuid::now_v7(), "action": "OVERRIDE", "to": "INSPECT", "reason": "OTHER", "note": ""});
    let a = send(&r.app, post_json(url, Some(OFFICER), &other)).await;
    assert_eq!(
        a.status,
        StatusCode::CONFLICT,
        "a transaction the lane does not show, even towards INSPECT"
    );
}

#[tokio::test]
async fn an_override_naming_another_lanes_transaction_is_a_conflict_and_changes_nothing() {
    let r = rig();
    let (t1, t2) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    show(&r.state, "L1", t1, LaneDecision::Inspect);
    show(&r.state, "L2", t2, LaneDecision::Fast);
    let head = r.state.store.journal_head();
    for (who, to) in [(OFFICER, "INSPECT"), (SUPERVISOR, "FAST")] {
        let body = json!({"transaction_id": t2, "action": "OVERRIDE", "to": to, "reason": "r", "note": ""});
        let a = send(
            &r.app,
            post_json("/api/v1/lanes/L1/actions", Some(who), &body),
        )
        .await;
        assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text());
        let msg = a.json()["error"].as_str().unwrap_or_default().to_owned();
        assert!(
            msg.contains(&t1.to_string()) && msg.contains(&t2.to_string()),
            "{msg}"
        );
    }
    assert_eq!(r.state.store.journal_head(), head, "nothing journaled");
    let shown = |l: &str| {
        r.state
            .live
            .get(&lane(l))
            .and_then(|l| l.shown)
            .expect("shown")
    };
    assert_eq!(shown("L1").decision, LaneDecision::Inspect.into());
    assert_eq!(shown("L2").decision, LaneDecision::Fast.into());
    assert!(!shown("L1").officer_override && !shown("L2").officer_override);
}

#[tokio::test]
async fn accounts_roles_csrf_and_login_limits() {
    let r = rig();
    add_user(
        &r.state.store,
        "ana",
        "ana-password-1",
        Role::Officer,
        Lang::Es,
    )
    .expect("officer account");
    add_user(
        &r.state.store,
        "terminal",
        "terminal-password-1",
        Role::Operator,
        Lang::En,
    )
    .expect("operator account");
    let app = &r.app;

    // Nothing but login, health and metrics without a session.
    assert_eq!(
        send(app, get("/api/v1/lanes", None)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let a = send(app, get("/console", None)).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.headers["location"], "/login");
    assert_eq!(send(app, get("/login", None)).await.status, StatusCode::OK);

    // Script login: a bearer token; the operator is kept away from reasons and actions.
    let login = |name: &str, pw: &str| {
        post_json(
            "/api/v1/login",
            None,
            &json!({"name": name, "password": pw}),
        )
    };
    let a = send(app, login("terminal", "terminal-password-1")).await;
    assert_eq!(a.status, StatusCode::OK);
    let op = a.json();
    let op_token = op["token"].as_str().expect("token").to_owned();
    assert_eq!(op["role"], "operator");
    for path in [
        "/api/v1/lanes",
        "/api/v1/transactions",
        "/console",
        "/console/history",
    ] {
        let a = send(app, get(path, Some(&op_token))).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{path} for an operator");
    }
    let manual_container =
        json!({"action": "MANUAL_ENTRY", "value": {"kind": "CONTAINER", "number": "CSQU3054383"}});
    let a = send(
        app,
        post_json(
            "/api/v1/lanes/L1/actions",
            Some(&op_token),
            &manual_container,
        ),
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::FORBIDDEN,
        "operators cannot act on lanes"
    );
    assert_eq!(
        send(app, get("/operator", Some(&op_token))).await.status,
        StatusCode::OK
    );

    // Browser login: cookie flags; cookie calls need the CSRF token and a same-site origin.
    let form = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("name=ana&password=ana-password-1"))
        .expect("request");
    let a = send(app, form).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let cookie = a.headers["set-cookie"].to_str().expect("ascii").to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().expect("pair").to_owned();
    let page = send(
        app,
        Request::get("/console")
            .header(header::COOKIE, &session)
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert!(html.contains("Consola del oficial"), "Spanish for ana");
    let csrf = support::page::csrf_meta(&html);
    let manual =
        json!({"action": "MANUAL_ENTRY", "value": {"kind": "SEAL", "number": "EU1234567"}});
    let cookie_post = |extra: &[(&str, &str)]| {
        let mut b = Request::post("/api/v1/lanes/L2/actions")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::COOKIE, &session);
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        b.body(Body::from(manual.to_string())).expect("request")
    };
    let a = send(app, cookie_post(&[])).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "cookie without CSRF token");
    let a = send(
        app,
        cookie_post(&[
            ("x-csrf-token", &csrf),
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "cross-site"),
        ]),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "cross-site request");
    let a = send(
        app,
        cookie_post(&[("x-csrf-token", &csrf), ("sec-fetch-site", "same-origin")]),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "same-origin with token");
    let accepted = a.json();
    assert_eq!(accepted["action"]["officer"], "ana");
    assert_eq!(accepted["action"]["role"], "officer");

    // An officer may tighten a lane but not relax it.
    let tx = uuid::Uuid::now_v7();
    show(&r.state, "L1", tx, LaneDecision::Standard);
    let relax = json!({"transaction_id": tx, "action": "OVERRIDE", "to": "FAST", "reason": "OTHER", "note": ""});
    let a = send(
        app,
        post_json("/api/v1/lanes/L1/actions", Some(OFFICER), &relax),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "officer relaxing");
    let a = send(
        app,
        post_json("/api/v1/lanes/L1/actions", Some(SUPERVISOR), &relax),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "supervisor relaxing");

    // Wrong passwords: refused, then rate limited even with the right one.
    for _ in 0..5 {
        let a = send(app, login("ana", "not-her-password")).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
    let a = send(app, login("ana", "ana-password-1")).await;
    assert_eq!(
        a.status,
        StatusCode::TOO_MANY_REQUESTS,
        "account locked for a while"
    );

    // Logout ends the session.
    let logout = Request::post("/api/v1/logout")
        .header(header::AUTHORIZATION, format!("Bearer {op_token}"))
        .body(Body::empty())
        .expect("request");
    assert_eq!(send(app, logout).await.status, StatusCode::NO_CONTENT);
    let a = send(app, get("/operator", Some(&op_token))).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "back to the login page");
}

#[tokio::test]
async fn a_supervisor_closes_and_reopens_a_lane_and_nothing_else_may_change_it_meanwhile() {
    let r = rig();
    let close = "/api/v1/lanes/L1/close";
    let why = json!({"reason": "loop repair"});
    let head = r.state.store.journal_head();
    let a = send(&r.app, post_json(close, Some(OFFICER), &why)).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "an officer: {}", a.text());
    let a = send(
        &r.app,
        post_json(close, Some(SUPERVISOR), &json!({"reason": ""})),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "no reason");
    let a = send(&r.app, post_json(close, Some(SUPERVISOR), &json!({}))).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "no reason field");
    let a = send(
        &r.app,
        post_json("/api/v1/lanes/L9/close", Some(SUPERVISOR), &why),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(r.state.store.journal_head(), head, "nothing journaled");

    // A truck's decision is on the lane when it closes.
    let tx = uuid::Uuid::now_v7();
    show(&r.state, "L1", tx, LaneDecision::Fast);
    let a = send(&r.app, post_json(close, Some(SUPERVISOR), &why)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    let entry = r
        .state
        .store
        .entry(a.json()["seq"].as_u64().expect("seq"))
        .expect("read journal")
        .expect("the entry");
    assert!(matches!(
        &entry.body,
        EventBody::LaneControl { closed: true, reason, by, .. } if reason == "loop repair" && by == "s.jones"
    ));
    let closures = r.state.store.lane_closures().expect("closures");
    assert_eq!(closures.len(), 1);
    assert_eq!(closures[0].0, lane("L1"));
    let live = r.state.live.get(&lane("L1")).expect("L1");
    assert_eq!(
        live.shown.map(|s| s.decision),
        Some(protocol::schema::LaneSignal::Closed)
    );
    let a = send(&r.app, post_json(close, Some(SUPERVISOR), &why)).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "already closed");

    // An override of the truck that was shown no longer finds it: the lane shows CLOSED.
    let over = json!({"transaction_id": tx, "action": "OVERRIDE", "to": "INSPECT", "reason": "driver behaviour", "note": ""});
    let a = send(
        &r.app,
        post_json("/api/v1/lanes/L1/actions", Some(SUPERVISOR), &over),
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text());
    // Nor may a state be shown on it by anyone but lane control.
    let shown = r.state.live.show_if(
        &lane("L1"),
        LaneState::waiting(&lane("L1"), None, jiff::Timestamp::now()),
        |_| true,
        |_| {},
    );
    assert!(
        !shown,
        "a closed lane shows only what lane control puts on it"
    );

    let reopen = "/api/v1/lanes/L1/reopen";
    let a = send(
        &r.app,
        post_json(reopen, Some(SUPERVISOR), &json!({"reason": "repaired"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    assert!(r.state.store.lane_closures().expect("closures").is_empty());
    let live = r.state.live.get(&lane("L1")).expect("L1");
    assert!(live.closed.is_none());
    assert_eq!(
        live.shown.map(|s| s.decision),
        Some(protocol::schema::LaneSignal::Waiting)
    );
    let a = send(
        &r.app,
        post_json(reopen, Some(SUPERVISOR), &json!({"reason": "again"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "already open");
}

/// The next `panel` event of an SSE feed, read from `body` within `within`.
async fn next_panel(body: &mut axum::body::BodyDataStream, within: Duration) -> String {
    use futures_util::StreamExt as _;
    let mut text = String::new();
    tokio::time::timeout(within, async {
        // An event ends with a blank line; a few frames at most make one.
        for _ in 0..64 {
            let Some(chunk) = body.next().await else {
                break;
            };
            text.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
            if text.contains("\n\n") {
                break;
            }
        }
    })
    .await
    .expect("a panel event in time");
    assert!(text.starts_with("event: panel\n"), "{text}");
    text
}

/// Opens the SSE feed at `path` as the officer.
async fn feed(app: &Router, path: &str) -> axum::body::BodyDataStream {
    let resp = app
        .clone()
        .oneshot(get(path, Some(OFFICER)))
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK, "{path}");
    assert_eq!(
        resp.headers()[header::CONTENT_TYPE],
        "text/event-stream",
        "{path}"
    );
    resp.into_body().into_data_stream()
}

#[tokio::test]
async fn the_lane_and_operator_feeds_send_their_panel_at_once_and_again_on_a_change() {
    let r = rig();
    let mut lane_feed = feed(&r.app, "/console/events?lane=L1").await;
    let mut grid_feed = feed(&r.app, "/operator/events").await;
    let first = next_panel(&mut lane_feed, Duration::from_secs(2)).await;
    assert!(first.contains("id=\"lane-live\""), "{first}");
    assert!(!first.contains("d-inspect"), "{first}");
    let grid = next_panel(&mut grid_feed, Duration::from_secs(2)).await;
    assert!(!grid.contains("L2 FAST"), "{grid}");

    // Each change is sent before the next refresh (every 3 s) is due.
    show(&r.state, "L2", uuid::Uuid::now_v7(), LaneDecision::Fast);
    let grid = next_panel(&mut grid_feed, Duration::from_secs(2)).await;
    assert!(grid.contains("L2 FAST"), "{grid}");
    r.state.live.update(&lane("L1"), |l| {
        let mut offline = LaneState::waiting(&l.lane, None, jiff::Timestamp::now());
        offline.decision = LaneSignal::Offline;
        l.shown = Some(offline);
    });
    let changed = next_panel(&mut lane_feed, Duration::from_secs(2)).await;
    assert!(
        changed.contains("d-inspect"),
        "offline shows red: {changed}"
    );
}
