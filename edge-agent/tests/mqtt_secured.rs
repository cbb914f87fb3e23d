//! The shipped broker configuration (`packaging/mosquitto/`) run by a real mosquitto: TLS
//! with a CA made here (rcgen), passwords made with `mosquitto_passwd`, and the shipped
//! ACL. The `edge-agent` binary connects over TLS with its CA pinned and its password
//! from a file. A lane sign sees the sign state but never the reasons and cannot publish
//! a lane state; an officer display sees the reasons; a client without an account is
//! refused.

mod io_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use io_support::{AgentProcess, Collector, Mosquitto, free_port};
use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use serde_json::Value;

const STATE: &str = "aeogate/G1/lanes/L1/state";
const DECISION: &str = "aeogate/G1/lanes/L1/decision";

struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    /// Another CA, which signed nothing the broker shows.
    other_ca: PathBuf,
}

fn make_pki(dir: &Path) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let ca = |name: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        CertifiedIssuer::self_signed(p, KeyPair::generate().expect("CA key")).expect("CA")
    };
    let issuer = ca("mqtt-test CA");
    let other = ca("someone else's CA");
    let key = KeyPair::generate().expect("broker key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("broker params")
        .signed_by(&key, &issuer)
        .expect("broker certificate");
    let pki = Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("broker.pem"),
        key: dir.join("broker.key"),
        other_ca: dir.join("other-ca.pem"),
    };
    std::fs::write(&pki.ca, issuer.pem()).expect("write ca");
    std::fs::write(&pki.other_ca, other.pem()).expect("write other ca");
    std::fs::write(&pki.cert, cert.pem()).expect("write cert");
    std::fs::write(&pki.key, key.serialize_pem()).expect("write key");
    pki
}

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Adds `user` with `password` to the mosquitto password file `file`.
fn add_account(file: &Path, user: &str, password: &str) {
    let mut cmd = Command::new("mosquitto_passwd");
    if !file.exists() {
        cmd.arg("-c");
    }
    let status = cmd
        .arg("-b")
        .arg(file)
        .arg(user)
        .arg(password)
        .status()
        .expect("mosquitto_passwd (package mosquitto) must be installed");
    assert!(status.success(), "mosquitto_passwd {user}");
}

/// The shipped configuration with this test's port and files in place of the installed
/// paths; every other line as shipped.
fn shipped_conf(port: u16, pki: &Pki, passwd: &Path) -> String {
    let shipped = std::fs::read_to_string(repo_file("packaging/mosquitto/aeogate.conf"))
        .expect("packaging/mosquitto/aeogate.conf");
    let acl = repo_file("packaging/mosquitto/aeogate.acl");
    let mut replaced = Vec::new();
    let mut out = String::new();
    for line in shipped.lines() {
        let key = line.split_whitespace().next().unwrap_or_default();
        let value = match key {
            "listener" => Some(format!("{port} 127.0.0.1")),
            "cafile" => Some(pki.ca.display().to_string()),
            "certfile" => Some(pki.cert.display().to_string()),
            "keyfile" => Some(pki.key.display().to_string()),
            "password_file" => Some(passwd.display().to_string()),
            "acl_file" => Some(acl.display().to_string()),
            _ => None,
        };
        match value {
            Some(v) => {
                replaced.push(key.to_owned());
                out.push_str(&format!("{key} {v}\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    replaced.sort();
    assert_eq!(
        replaced,
        [
            "acl_file",
            "cafile",
            "certfile",
            "keyfile",
            "listener",
            "password_file"
        ],
        "the shipped configuration names each file once"
    );
    // Test only: the broker runs as the test's user and reads this test's files.
    out.push_str(&format!("user {}\npersistence false\n", whoami()));
    out
}

/// The shipped broker on a free port, with a CA made in `dir` and the password file
/// holding `accounts` (user, password).
async fn shipped_broker(dir: &Path, accounts: &[(&str, &str)]) -> (Pki, u16, Mosquitto) {
    let pki = make_pki(dir);
    let passwd = dir.join("aeogate.passwd");
    for (user, password) in accounts {
        add_account(&passwd, user, password);
    }
    let port = free_port();
    let broker = Mosquitto::start_conf(dir, port, &shipped_conf(port, &pki, &passwd)).await;
    (pki, port, broker)
}

fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The accounts in the test's password file: (user, password).
const AGENT: (&str, &str) = ("aeogate-agent", "agent-pass-7Rk");
const READER: (&str, &str) = ("reader", "reader-pass-3Qz");
const SIGN: (&str, &str) = ("lane-sign", "sign-pass-9Wd");
const OFFICER: (&str, &str) = ("officer-display", "officer-pass-5Tb");

/// A [`Collector`] logged in as `login` over TLS trusting `ca`, subscribed to `topics`.
fn logged_in(port: u16, id: &str, ca: &Path, login: (&str, &str), topics: &[&str]) -> Collector {
    Collector::start(tls_client(port, id, ca, Some(login)), topics)
}

fn tls_client(port: u16, id: &str, ca: &Path, login: Option<(&str, &str)>) -> MqttOptions {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("ca pem") {
        roots.add(c.expect("ca cert")).expect("add root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(config))));
    if let Some((u, p)) = login {
        o.set_credentials(u, p);
    }
    o
}

fn write_agent_config(dir: &Path, port: u16, console: u16, ca: &Path, name: &str) -> PathBuf {
    let secret = dir.join("mqtt.password");
    std::fs::write(&secret, format!("{}\n", AGENT.1)).expect("write password");
    let text = format!(
        "[gate]\nid = \"G1\"\nport = \"PORT-A\"\n\n\
         [[lanes]]\nid = \"L1\"\npresence_loop = false\nquiet_close = \"300ms\"\n\
         [lanes.routes]\nfast = \"priority\"\nstandard = \"booth\"\ninspect = \"bay\"\n\n\
         [mqtt]\nhost = \"127.0.0.1\"\nport = {port}\nclient_id = \"{name}\"\n\
         username = \"aeogate-agent\"\npassword_file = \"{}\"\nca_cert = \"{}\"\n\n\
         [[mqtt.topics]]\nfilter = \"readers/L1/ocr\"\nlane = \"L1\"\nkind = \"ocr\"\n\n\
         [store]\npath = \"{}\"\n\n[policy]\nrandom_key = \"mqtt-secured-test-random-key\"\n\n\
         [console]\nbind = \"127.0.0.1:{console}\"\n",
        secret.display(),
        ca.display(),
        dir.join(format!("{name}.redb")).display(),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write config");
    path
}

fn json(p: &[u8]) -> Value {
    serde_json::from_slice(p).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_broker_keeps_reasons_from_signs_and_lane_topics_to_the_agent() {
    edge_agent::uplink::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let (pki, port, _broker) = shipped_broker(dir.path(), &[AGENT, READER, SIGN, OFFICER]).await;

    let officer = logged_in(port, "officer-1", &pki.ca, OFFICER, &["aeogate/#"]);
    let sign = logged_in(port, "sign-1", &pki.ca, SIGN, &["aeogate/#", DECISION]);
    let console = free_port();
    let cfg = write_agent_config(dir.path(), port, console, &pki.ca, "agent-G1");
    let _agent = AgentProcess::start(&cfg, console, &dir.path().join("agent.log")).await;
    for (who, c) in [("officer", &officer), ("sign", &sign)] {
        c.wait_until(
            &format!("{who} sees the agent online over TLS"),
            Duration::from_secs(20),
            |m| {
                m.iter()
                    .any(|(t, p)| t == "aeogate/G1/availability" && p == b"online")
            },
        )
        .await;
    }

    let reader = logged_in(port, "reader-1", &pki.ca, READER, &[]);
    reader
        .wait_until("the reader connected", Duration::from_secs(10), |_| {
            matches!(*reader.connected.lock().expect("lock"), Some(Ok(())))
        })
        .await;
    reader
        .publish("readers/L1/ocr", false, r#"{"container":"CSQU3054383"}"#)
        .await;
    let seen = officer
        .wait_until(
            "the officer sees the decision",
            Duration::from_secs(20),
            |m| m.iter().any(|(t, _)| t == DECISION),
        )
        .await;
    let decision = seen
        .iter()
        .find(|(t, _)| t == DECISION)
        .map(|(_, p)| json(p))
        .expect("decision");
    assert!(
        decision["reasons"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "{decision}"
    );
    sign.wait_until(
        "the sign sees the decided state",
        Duration::from_secs(20),
        |m| {
            m.iter()
                .any(|(t, p)| t == STATE && json(p)["transaction_id"] == decision["transaction_id"])
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sign_saw = sign.messages();
    assert!(
        sign_saw.iter().all(|(t, _)| t != DECISION),
        "a sign never receives the reasons topic"
    );
    assert!(
        sign_saw
            .iter()
            .all(|(_, p)| !String::from_utf8_lossy(p).contains("reasons")),
        "no message a sign receives carries reasons"
    );

    // A sign tries to show FAST on the lane: the broker drops it.
    let forged = r#"{"lane":"L1","open":true,"decision":"FAST","light":"GREEN","route":"FORGED","transaction_id":null,"at":"2026-03-01T10:00:00Z"}"#;
    sign.publish(STATE, true, forged).await;
    sign.publish(DECISION, false, forged).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let late = logged_in(port, "officer-2", &pki.ca, OFFICER, &["aeogate/#"]);
    let view = late
        .wait_until("the retained lane state", Duration::from_secs(10), |m| {
            m.iter().any(|(t, _)| t == STATE)
        })
        .await;
    let state = view
        .iter()
        .rev()
        .find(|(t, _)| t == STATE)
        .map(|(_, p)| json(p))
        .expect("state");
    assert_eq!(
        state["transaction_id"], decision["transaction_id"],
        "{state}"
    );
    assert!(
        officer
            .messages()
            .iter()
            .all(|(_, p)| !String::from_utf8_lossy(p).contains("FORGED")),
        "the forged lane state reached no one"
    );

    // No account, or a client that does not trust the broker's CA: refused.
    let anonymous = Collector::start(tls_client(port, "anon-1", &pki.ca, None), &["#"]);
    let wrong_ca = logged_in(port, "sign-2", &pki.other_ca, SIGN, &["#"]);
    for c in [&anonymous, &wrong_ca] {
        c.wait_until("a refused connection", Duration::from_secs(10), |_| {
            matches!(*c.connected.lock().expect("lock"), Some(Err(_)))
        })
        .await;
        assert!(c.messages().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_does_not_connect_to_a_broker_its_pinned_ca_did_not_sign() {
    edge_agent::uplink::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let (pki, port, _broker) = shipped_broker(dir.path(), &[AGENT, OFFICER]).await;
    let officer = logged_in(port, "officer-1", &pki.ca, OFFICER, &["aeogate/#"]);
    let console = free_port();
    let cfg = write_agent_config(dir.path(), port, console, &pki.other_ca, "agent-wrong-ca");
    let agent = AgentProcess::start(&cfg, console, &dir.path().join("agent.log")).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        officer.messages().is_empty(),
        "nothing was published by an agent that does not trust the broker"
    );
    assert_eq!(
        io_support::metric(&agent.base, "aeogate_mqtt_connections_total").await,
        Some(0.0)
    );
    let log = std::fs::read_to_string(dir.path().join("agent.log")).expect("agent log");
    assert!(!log.contains(AGENT.1), "the password is never logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lane_will_connections_use_tls_and_the_agents_account_and_say_offline_after_a_kill() {
    edge_agent::uplink::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let (pki, port, _broker) = shipped_broker(dir.path(), &[AGENT, SIGN]).await;
    let console = free_port();
    let cfg = write_agent_config(dir.path(), port, console, &pki.ca, "agent-G1");
    let mut agent = AgentProcess::start(&cfg, console, &dir.path().join("agent.log")).await;
    // The plain port is not open: the will connection can only be up over TLS, with the
    // agent's account (the broker refuses anonymous clients).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while io_support::metric(&agent.base, "aeogate_mqtt_lane_wills_connected").await != Some(1.0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lane will connection did not come up over TLS"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agent.kill();
    let sign = logged_in(port, "sign-late", &pki.ca, SIGN, &[STATE]);
    let seen = sign
        .wait_until("the lane's retained state", Duration::from_secs(20), |m| {
            m.iter().any(|(t, _)| t == STATE)
        })
        .await;
    let state = json(&seen.last().expect("state").1);
    assert_eq!(
        (&state["decision"], &state["open"]),
        (&Value::from("OFFLINE"), &Value::from(false)),
        "{state}"
    );
}
