//! Console logins and logouts: journaled for central, throttled with `Retry-After`,
//! passwords held to the strength rule, and the console served over TLS with `Secure`,
//! `__Host-` cookies (over a real socket on 127.0.0.1:0).

mod support;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use edge_agent::console::{Role, add_user};
use edge_agent::state::AppState;
use edge_agent::store::Store;
use protocol::i18n::Lang;
use protocol::schema::{ConsoleSessionKind, EventBody};
use support::two_lane_config;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

const PASSWORD: &str = "gate-booth-password-1";

struct Rig {
    state: AppState,
    app: Router,
    _dir: tempfile::TempDir,
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = two_lane_config(dir.path());
    let store = Store::open(&cfg.store.path, cfg.gate.id.clone()).expect("store");
    add_user(&store, "ana", PASSWORD, Role::Officer, Lang::En).expect("account");
    let (state, _events) = support::app_state(&cfg, store);
    Rig {
        app: edge_agent::api::app(state.clone()),
        state,
        _dir: dir,
    }
}

fn login(name: &str, password: &str) -> Request<Body> {
    Request::post("/api/v1/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            serde_json::json!({"name": name, "password": password}).to_string(),
        ))
        .expect("request")
}

async fn send(app: &Router, req: Request<Body>) -> axum::response::Response {
    app.clone().oneshot(req).await.expect("infallible")
}

/// The console-session entries journaled so far: (kind, user, role).
fn journaled(store: &Store) -> Vec<(ConsoleSessionKind, String, Option<String>)> {
    store
        .entries(1, 1000)
        .expect("journal")
        .into_iter()
        .filter_map(|e| match e.body {
            EventBody::ConsoleSession { session } => {
                assert_eq!(session.gate.as_str(), "G1");
                Some((session.kind, session.user, session.role))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn logins_failed_logins_and_logouts_are_journaled() {
    let r = rig();
    let a = send(&r.app, login("ana", "not-her-password")).await;
    assert_eq!(a.status(), StatusCode::UNAUTHORIZED);
    let a = send(&r.app, login("ana", PASSWORD)).await;
    assert_eq!(a.status(), StatusCode::OK);
    let body = axum::body::to_bytes(a.into_body(), 1 << 16)
        .await
        .expect("body");
    let token = serde_json::from_slice::<serde_json::Value>(&body).expect("json")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let logout = Request::post("/api/v1/logout")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .expect("request");
    assert_eq!(send(&r.app, logout).await.status(), StatusCode::NO_CONTENT);

    let officer = Some("officer".to_owned());
    assert_eq!(
        journaled(&r.state.store),
        vec![
            (ConsoleSessionKind::LoginFailed, "ana".to_owned(), None),
            (ConsoleSessionKind::Login, "ana".to_owned(), officer.clone()),
            (ConsoleSessionKind::Logout, "ana".to_owned(), officer),
        ]
    );
}

#[tokio::test]
async fn a_throttled_login_says_when_to_try_again_and_is_journaled() {
    let r = rig();
    for _ in 0..aeogate_web::limiter::MAX_FAILURES_PER_USER {
        let a = send(&r.app, login("ana", "not-her-password")).await;
        assert_eq!(a.status(), StatusCode::UNAUTHORIZED);
    }
    let a = send(&r.app, login("ana", PASSWORD)).await;
    assert_eq!(a.status(), StatusCode::TOO_MANY_REQUESTS);
    let secs: u64 = a
        .headers()
        .get(header::RETRY_AFTER)
        .expect("Retry-After")
        .to_str()
        .expect("ascii")
        .parse()
        .expect("whole seconds");
    assert!((1..=300).contains(&secs), "{secs}");
    let form = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("name=ana&password={PASSWORD}")))
        .expect("request");
    let a = send(&r.app, form).await;
    assert_eq!(a.status(), StatusCode::TOO_MANY_REQUESTS, "the form too");
    assert!(a.headers().contains_key(header::RETRY_AFTER));
    let kinds: Vec<_> = journaled(&r.state.store).into_iter().map(|j| j.0).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == ConsoleSessionKind::LoginThrottled)
            .count(),
        2
    );
}

#[tokio::test]
async fn a_malformed_json_login_is_a_bad_request() {
    let r = rig();
    for body in ["{\"name\": \"ana\"", "[]", "{\"name\": 1, \"password\": 2}"] {
        let req = Request::post("/api/v1/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .expect("request");
        assert_eq!(
            send(&r.app, req).await.status(),
            StatusCode::BAD_REQUEST,
            "{body}"
        );
    }
    assert!(journaled(&r.state.store).is_empty(), "no login was tried");
}

#[test]
fn console_passwords_follow_centrals_strength_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(
        &dir.path().join("agent.redb"),
        protocol::schema::GateId::parse("G1").expect("gate"),
    )
    .expect("store");
    for weak in ["password123", "qwertyuiop12", "ana.officer1", "          "] {
        let e = add_user(&store, "ana.officer", weak, Role::Officer, Lang::En).expect_err(weak);
        let e = format!("{e:#}");
        assert!(
            e.contains("ana.officer") && e.contains("password"),
            "{weak}: {e}"
        );
    }
    add_user(
        &store,
        "ana.officer",
        "tall-copper-lantern",
        Role::Officer,
        Lang::En,
    )
    .expect("a strong password");
}

fn tls_files(dir: &std::path::Path) -> (edge_agent::config::ConsoleTls, reqwest::Certificate) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let cert_pem = cert.cert.pem();
    let tls = edge_agent::config::ConsoleTls {
        cert: dir.join("console.crt"),
        key: dir.join("console.key"),
    };
    std::fs::write(&tls.cert, &cert_pem).expect("write cert");
    std::fs::write(&tls.key, cert.signing_key.serialize_pem()).expect("write key");
    let root = reqwest::Certificate::from_pem(cert_pem.as_bytes()).expect("root");
    (tls, root)
}

#[tokio::test]
async fn over_tls_the_console_sets_a_secure_host_prefixed_cookie() {
    edge_agent::uplink::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = two_lane_config(dir.path());
    let store = Store::open(&cfg.store.path, cfg.gate.id.clone()).expect("store");
    add_user(&store, "ana", PASSWORD, Role::Officer, Lang::En).expect("account");
    drop(store);
    let (tls, root) = tls_files(dir.path());
    cfg.console.tls = Some(tls);
    let shutdown = CancellationToken::new();
    let handle = edge_agent::runtime::start(cfg, shutdown.clone())
        .await
        .expect("agent starts");
    let port = handle.console_addr.port();
    let client = reqwest::Client::builder()
        .tls_certs_only([root])
        .resolve("localhost", handle.console_addr)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let a = client
        .post(format!("https://localhost:{port}/login"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("name=ana&password={PASSWORD}"))
        .send()
        .await
        .expect("login over TLS");
    assert_eq!(a.status(), StatusCode::SEE_OTHER);
    let cookie = a.headers()[header::SET_COOKIE]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        cookie.starts_with("__Host-aeogate_agent_session="),
        "{cookie}"
    );
    assert!(
        cookie.contains("; Secure") && cookie.contains("Path=/"),
        "{cookie}"
    );
    assert!(!cookie.contains("Domain"), "{cookie}");
    // The cookie is what authenticates the next page.
    let pair = cookie.split(';').next().expect("pair").to_owned();
    let page = client
        .get(format!("https://localhost:{port}/console"))
        .header(header::COOKIE, pair)
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    // Plain HTTP to the TLS listener gets no answer.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(plain.is_err() || plain.is_ok_and(|r| !r.status().is_success()));
    support::stop_agent(&shutdown, handle.join, Duration::from_secs(15)).await;
}
