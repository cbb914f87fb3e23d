//! An edge agent whose token central bound to a client certificate replicates only when it
//! presents that certificate (`[central] client_cert`, `client_key`).

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

#[path = "common/agent_toml.rs"]
mod agent_toml;
#[path = "common/pki.rs"]
mod pki;

use pki::{ca, leaf};

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.to_string_lossy().into_owned()
}

fn agent_config(
    dir: &Path,
    url: &str,
    token: &str,
    ca: &str,
    key_id: &str,
    public_key: &str,
    identity: Option<(&str, &str)>,
) -> edge_agent::config::Config {
    let identity = identity.map_or_else(String::new, |(c, k)| {
        format!("client_cert = {c:?}\nclient_key = {k:?}\n")
    });
    let settings =
        format!("ca_cert = {ca:?}\n{identity}heartbeat_every = \"1s\"\npoll_wait = \"1s\"");
    let text = format!(
        "{}{}{}",
        agent_toml::gate_with_lane_l1("PORT-A-G1", "Inspection bay"),
        agent_toml::central(url, token, &settings, key_id, public_key),
        agent_toml::store_policy_console(dir, "mtls-test-random-key", "127.0.0.1:0"),
    );
    edge_agent::config::Config::from_toml_str(&text, "agent.toml").expect("valid agent config")
}

/// Starts an agent and reports whether its replica was bootstrapped within `within`.
async fn replicates(cfg: edge_agent::config::Config, within: Duration) -> bool {
    let stop = CancellationToken::new();
    let handle = edge_agent::runtime::start(cfg, stop.clone())
        .await
        .expect("agent starts");
    let deadline = std::time::Instant::now() + within;
    let mut loaded = false;
    while std::time::Instant::now() < deadline {
        if handle.shared.store.replica_meta().sequence > 0 {
            loaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), handle.join).await;
    loaded
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_replicates_with_its_certificate_and_not_without() {
    central::server::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let server_ca = ca("central CA");
    let agents_ca = ca("gate agents CA");
    let (server_cert, server_key) = leaf(&server_ca, &["localhost"], false);
    let (agent_cert, agent_key) = leaf(&agents_ca, &["PORT-A-G1"], true);

    let key_path = d.join("registry.key");
    central::generate_signing_key(&key_path).expect("signing key");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut cfg = central::Config::new(
        listener.local_addr().expect("addr"),
        d.join("central.redb"),
        key_path,
    );
    cfg.tls = Some(central::TlsConfig {
        cert_pem: write(d, "server.pem", &server_cert).into(),
        key_pem: write(d, "server.key", &server_key).into(),
        client_ca_pem: Some(write(d, "agents-ca.pem", &agents_ca.pem).into()),
    });
    let hub = central::Central::open(&cfg).expect("central");
    // Something to replicate, so that a loaded replica has a sequence above 0.
    let t0: jiff::Timestamp = "2012-07-01T00:00:00Z".parse().expect("ts");
    hub.import_mras(
        vec![protocol::schema::MraRecord {
            v: protocol::schema::SCHEMA_VERSION,
            recognising: protocol::operator::Programme::EuAeo,
            partner: protocol::operator::Programme::UsCtpat,
            in_force_from: t0,
            in_force_to: None,
            security_only: true,
            name: "EU–US mutual recognition".into(),
        }],
        "test",
    )
    .expect("import");
    let agent_cert_path = write(d, "agent.pem", &agent_cert);
    let agent_key_path = write(d, "agent.key", &agent_key);
    let fp = central::server::pem_cert_fingerprint(Path::new(&agent_cert_path)).expect("fp");
    let token = hub
        .issue_agent_token_with_cert(
            &protocol::schema::GateId::parse("PORT-A-G1").expect("gate"),
            "PORT-A",
            Some(fp),
        )
        .expect("token");
    let stop = CancellationToken::new();
    let server = tokio::spawn(central::serve_with_listener(
        hub.clone(),
        listener,
        cfg,
        stop.clone(),
    ));
    let url = format!("https://localhost:{port}");
    let ca_path = write(d, "central-ca.pem", &server_ca.pem);

    let (key_id, public_key) = (hub.key_id(), hub.public_key_hex());
    let config_in = |dir: &Path, identity: Option<(&str, &str)>| {
        agent_config(dir, &url, &token, &ca_path, &key_id, &public_key, identity)
    };

    // Without its certificate the agent is refused and its replica stays unloaded.
    let without = tempfile::tempdir().expect("tempdir");
    let cfg = config_in(without.path(), None);
    assert!(
        !replicates(cfg, Duration::from_secs(3)).await,
        "no certificate, no replica"
    );

    // With it, the snapshot is fetched, verified and applied.
    let with = tempfile::tempdir().expect("tempdir");
    let cfg = config_in(with.path(), Some((&agent_cert_path, &agent_key_path)));
    assert!(
        replicates(cfg, Duration::from_secs(15)).await,
        "the agent with its certificate replicates"
    );

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
}
