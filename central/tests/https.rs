//! The full stack over real HTTPS on 127.0.0.1:0: a CA and a server certificate made with
//! rcgen, reqwest trusting that CA, and a clean shutdown with an SSE stream open.
mod common;

use std::time::Duration;

use common::*;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn serves_https_with_a_private_ca_and_shuts_down_with_a_stream_open() {
    central::server::install_crypto_provider();
    let ca = pki::ca("test CA");
    let (cert_pem, key_pem) = pki::leaf(&ca, &["localhost"], false);
    let e = env_with(|_| {});
    let cert = e.dir.path().join("server.pem");
    let key = e.dir.path().join("server.key");
    std::fs::write(&cert, &cert_pem).expect("cert");
    std::fs::write(&key, &key_pem).expect("key");
    let mut cfg = e.cfg.clone();
    cfg.allow_plain_http_on_loopback = false;
    cfg.tls = Some(central::TlsConfig {
        cert_pem: cert,
        key_pem: key,
        client_ca_pem: None,
    });
    let shutdown = CancellationToken::new();
    let (addr, server) = serve_on_loopback(&e.central, &cfg, &shutdown);
    let port = addr.port();

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).expect("ca"))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let base = format!("https://localhost:{port}");
    let health: serde_json::Value = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz over TLS")
        .json()
        .await
        .expect("json");
    assert_eq!(health["status"], "ok");

    let g = gate("P1-G1");
    let token = e.central.issue_agent_token(&g, "P1").expect("token");
    let txn = uuid::Uuid::now_v7();
    let entries = chain(&g, vec![fast_decision(&g), seal_exception(&g, txn)]);
    let ack: protocol::schema::IngestAck = client
        .post(format!("{base}/api/v1/agents/P1-G1/events"))
        .bearer_auth(&token)
        .json(&batch(&g, &entries[..1]))
        .send()
        .await
        .expect("ingest")
        .json()
        .await
        .expect("ack");
    assert_eq!(ack.acked_through, 1);

    // A client that does not trust the CA is refused by TLS itself.
    let untrusting = reqwest::Client::builder().build().expect("client");
    assert!(
        untrusting
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err()
    );

    let session = staff(&e.central).await;
    let mut stream = open_case_stream(&client, &base, &session).await;

    // A seal exception ingested now reaches the open stream as a `case` event.
    client
        .post(format!("{base}/api/v1/agents/P1-G1/events"))
        .bearer_auth(&token)
        .json(&batch(&g, &entries[1..]))
        .send()
        .await
        .expect("ingest");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let seen = read_stream_until(&mut stream, &txn.to_string(), deadline).await;
    assert!(seen.contains("event: case"), "{seen}");

    shutdown.cancel();
    let done = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("shutdown does not wait for the open stream")
        .expect("join");
    assert!(done.is_ok(), "{done:?}");
    drop(stream);
}
