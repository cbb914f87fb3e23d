//! A client that makes too many requests to the staff API is slowed down with `429` and
//! `Retry-After`, over a real socket; agents' ingest is not counted.

mod common;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_gets_429_and_agents_are_not_limited() {
    let e = common::env_with(|c| {
        c.rate_limit_per_s = 1;
        c.rate_limit_burst = 3;
    });
    let (base, stop, server) = serve(&e).await;
    let client = http_client(5);

    // The burst: three answers from the API itself (no session: 401).
    for _ in 0..3 {
        let r = client
            .get(format!("{base}/api/v1/cases"))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 401);
    }
    let r = client
        .get(format!("{base}/api/v1/cases"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 429);
    let retry: u64 = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in whole seconds");
    assert!((1..=2).contains(&retry), "{retry}");

    // Agents' routes and health are not limited, even from the same address.
    for _ in 0..5 {
        let r = client
            .post(format!("{base}/api/v1/agents/G1/heartbeat"))
            .body("{}")
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 401, "refused for its token, not for the rate");
        let h = client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .expect("health");
        assert_eq!(h.status(), 200);
    }

    // A second later the bucket holds a token again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = client
        .get(format!("{base}/api/v1/cases"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401);

    shut_down(stop, server).await;
}

/// Starts central on a loopback port with `tweak`; returns its base URL, the stop token
/// and the server task.
async fn serve(
    e: &common::Env,
) -> (
    String,
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let stop = CancellationToken::new();
    let (addr, server) = common::serve_on_loopback(&e.central, &e.cfg, &stop);
    central::server::install_crypto_provider();
    (format!("http://{addr}"), stop, server)
}

/// A client whose requests give up after `secs` seconds.
fn http_client(secs: u64) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(secs))
        .build()
        .expect("client")
}

/// The status of a login as `user` with `password` posted to `url`.
async fn login_status(client: &reqwest::Client, url: &str, user: &str, password: &str) -> u16 {
    client
        .post(url)
        .json(&serde_json::json!({"user": user, "password": password}))
        .send()
        .await
        .expect("login")
        .status()
        .as_u16()
}

/// Stops the server [`serve`] started and waits (bounded) for it to end.
async fn shut_down(stop: CancellationToken, server: tokio::task::JoinHandle<anyhow::Result<()>>) {
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_wrong_passwords_are_limited_before_they_are_checked() {
    // The request-rate limit is off: every 429 here comes from the login limit.
    let e = common::env_with(|c| {
        c.rate_limit_per_s = 0;
    });
    e.central
        .add_user("ana", "correct horse", "analyst")
        .expect("user");
    let (base, stop, server) = serve(&e).await;
    let client = http_client(30);
    let tries: Vec<_> = (0..60)
        .map(|i| {
            let client = client.clone();
            let url = format!("{base}/api/v1/login");
            tokio::spawn(
                async move { login_status(&client, &url, "ana", &format!("guess {i}")).await },
            )
        })
        .collect();
    let mut checked = 0;
    let mut refused = 0;
    for t in tries {
        match t.await.expect("task") {
            401 => checked += 1,
            429 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(checked + refused, 60);
    assert!(
        checked <= central::auth::MAX_FAILURES_PER_USER,
        "{checked} passwords checked, {refused} refused"
    );
    shut_down(stop, server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_user_takes_as_long_as_a_wrong_password() {
    // The OWASP Argon2id cost central uses by default, so the hash dominates the time.
    let e = common::env_with(|c| {
        c.rate_limit_per_s = 0;
        c.argon2_m_cost_kib = 19_456;
        c.argon2_t_cost = 2;
    });
    e.central
        .add_user("ana", "correct horse", "analyst")
        .expect("user");
    let (base, stop, server) = serve(&e).await;
    let client = http_client(30);
    let timed = |user: String| {
        let client = client.clone();
        let url = format!("{base}/api/v1/login");
        async move {
            let t = std::time::Instant::now();
            assert_eq!(
                login_status(&client, &url, &user, "not it at all").await,
                401
            );
            t.elapsed()
        }
    };
    // Interleaved, so load on the machine falls on both kinds alike.
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..4 {
        known.push(timed("ana".to_owned()).await);
        unknown.push(timed(format!("nobody{i}")).await);
    }
    known.sort();
    unknown.sort();
    let (k, u) = (known[2], unknown[2]);
    assert!(
        u * 2 >= k,
        "unknown user answered in {u:?}, wrong password in {k:?}: the difference names users"
    );
    shut_down(stop, server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_json_login_is_a_bad_request() {
    let e = common::env_with(|c| c.rate_limit_per_s = 0);
    let (base, stop, server) = serve(&e).await;
    let client = http_client(10);
    for (content_type, body) in [
        ("application/json", "{"),
        ("application/json", "[]"),
        ("application/json", "{\"user\": 1}"),
        ("text/plain", "{\"user\":\"ana\",\"password\":\"x\"}"),
    ] {
        let r = client
            .post(format!("{base}/api/v1/login"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("login");
        assert_eq!(r.status(), 400, "{content_type} {body}");
        let v: serde_json::Value = r.json().await.expect("a JSON error");
        assert!(v["error"].is_string(), "{v}");
    }
    shut_down(stop, server).await;
}
