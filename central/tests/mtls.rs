//! Agents with client certificates (mutual TLS), over real HTTPS on 127.0.0.1:0: a token
//! registered with a certificate is accepted only from a connection that presented that
//! certificate; a token without one keeps working with the token alone; a certificate
//! from another CA does not get through the handshake; revoking a certificate's binding
//! refuses its token at once while a token bound to its replacement works.
mod common;

use std::path::Path;
use std::time::Duration;

use common::pki::{ca, leaf};
use common::*;
use tokio_util::sync::CancellationToken;

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write pem");
    p
}

fn client(server_ca: &str, identity: Option<&(String, String)>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .tls_certs_only([reqwest::Certificate::from_pem(server_ca.as_bytes()).expect("ca")]);
    if let Some((cert, key)) = identity {
        let pem = format!("{cert}\n{key}");
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"));
    }
    b.build().expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_bound_token_needs_its_certificate() {
    central::server::install_crypto_provider();
    let server_ca = ca("central CA");
    let agent_ca = ca("gate agents CA");
    let rogue_ca = ca("somebody else");
    let e = env_with(|_| {});
    let dir = e.dir.path();
    let (server_cert, server_key) = leaf(&server_ca, &["localhost"], false);
    let g1 = leaf(&agent_ca, &["PORT-A-G1"], true);
    let g2 = leaf(&agent_ca, &["PORT-A-G2"], true);
    let rogue = leaf(&rogue_ca, &["PORT-A-G1"], true);

    let mut cfg = e.cfg.clone();
    cfg.allow_plain_http_on_loopback = false;
    cfg.tls = Some(central::TlsConfig {
        cert_pem: write(dir, "server.pem", &server_cert),
        key_pem: write(dir, "server.key", &server_key),
        client_ca_pem: Some(write(dir, "agents-ca.pem", &agent_ca.pem)),
    });
    let g1_fp = central::server::pem_cert_fingerprint(&write(dir, "g1.pem", &g1.0)).expect("fp");
    let bound = e
        .central
        .issue_agent_token_with_cert(&gate("PORT-A-G1"), "PORT-A", Some(g1_fp))
        .expect("token");
    let plain = e
        .central
        .issue_agent_token(&gate("PORT-A-G3"), "PORT-A")
        .expect("token");

    let stop = CancellationToken::new();
    let (addr, server) = serve_on_loopback(&e.central, &cfg, &stop);
    let port = addr.port();
    let url = format!("https://localhost:{port}/api/v1/registry/snapshot?port=PORT-A");
    let status = |c: reqwest::Client, token: String| {
        let url = url.clone();
        async move {
            for _ in 0..50 {
                match c.get(&url).bearer_auth(&token).send().await {
                    Ok(r) => return Ok(r.status().as_u16()),
                    Err(e) if e.is_connect() && e.to_string().contains("refused") => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            Err("central did not come up".to_owned())
        }
    };

    // The bound token with its own certificate: accepted.
    assert_eq!(
        status(client(&server_ca.pem, Some(&g1)), bound.clone()).await,
        Ok(200)
    );
    // The same token without a certificate, or with another gate's: refused.
    assert_eq!(
        status(client(&server_ca.pem, None), bound.clone()).await,
        Ok(403)
    );
    assert_eq!(
        status(client(&server_ca.pem, Some(&g2)), bound.clone()).await,
        Ok(403)
    );
    // A certificate from a CA central does not trust fails the handshake itself.
    let r = status(client(&server_ca.pem, Some(&rogue)), bound.clone()).await;
    assert!(
        r.is_err(),
        "an untrusted client certificate must not connect: {r:?}"
    );
    // A token issued without a certificate keeps working with the token alone, and staff
    // (browsers, without a certificate) still reach central.
    assert_eq!(status(client(&server_ca.pem, None), plain).await, Ok(200));
    // Revoking the certificate's binding refuses its token at once, presented with the
    // certificate or not; the gate's token for a new certificate works.
    let g1_new = leaf(&agent_ca, &["PORT-A-G1"], true);
    let g1_new_fp =
        central::server::pem_cert_fingerprint(&write(dir, "g1-new.pem", &g1_new.0)).expect("fp");
    let replacement = e
        .central
        .issue_agent_token_with_cert(&gate("PORT-A-G1"), "PORT-A", Some(g1_new_fp))
        .expect("token");
    let g1_fp = central::server::pem_cert_fingerprint(&dir.join("g1.pem")).expect("fp");
    assert_eq!(
        e.central
            .revoke_agent(&gate("PORT-A-G1"), Some(&g1_fp), "test")
            .expect("revoke"),
        1
    );
    assert_eq!(
        status(client(&server_ca.pem, Some(&g1)), bound.clone()).await,
        Ok(403)
    );
    assert_eq!(
        status(client(&server_ca.pem, Some(&g1_new)), replacement).await,
        Ok(200)
    );
    let health = client(&server_ca.pem, None)
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200);

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
}

#[test]
fn a_fingerprint_is_64_hex_digits() {
    let e = env_with(|_| {});
    assert!(
        e.central
            .issue_agent_token_with_cert(&gate("G1"), "PORT-A", Some("abc".into()))
            .is_err()
    );
}
