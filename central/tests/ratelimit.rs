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
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let server = tokio::spawn(central::serve_with_listener(
        e.central.clone(),
        listener,
        e.cfg.clone(),
        stop.clone(),
    ));
    central::server::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let base = format!("http://{addr}");

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

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
}
