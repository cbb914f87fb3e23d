//! A read over MQTT survives an agent crash (issue 14, failure 1): the `edge-agent`
//! binary and a mosquitto broker; a reader publishes a container read (QoS 1) and the
//! agent is SIGKILLed a moment later, at delays from 0 to 1 s. After each restart the
//! read must be in exactly one decided gate transaction: either it was in the agent's
//! read log before its PUBACK (the transaction is rebuilt, `AGENT_RESTARTED`), or it was
//! not acknowledged and the broker delivers it again to the agent's persistent session.

mod io_support;

use std::path::Path;
use std::time::Duration;

use edge_agent::store::Store;
use io_support::{AgentProcess, Mosquitto, MqttAgentToml, Observer, STEP, free_port};
use protocol::schema::{EventBody, GateId, LaneDecision, ReadValue, ReasonCode};
use serde_json::Value;

const TOKEN: &str = "system-test-console-session-token-000002";

fn write_config(dir: &Path, mqtt_port: u16, console_port: u16) -> std::path::PathBuf {
    MqttAgentToml {
        lane: "presence_loop = false\nquiet_close = \"2s\"\ntransaction_timeout = \"10s\"",
        devices: "",
        client_id: "agent-G1-crash",
        ocr_filter: "readers/l1/ocr",
        mqtt_port,
        console_port,
    }
    .write(dir, TOKEN)
}

async fn lanes(base: &str) -> Option<Value> {
    edge_agent::uplink::install_crypto_provider();
    reqwest::Client::new()
        .get(format!("{base}/api/v1/lanes"))
        .bearer_auth(TOKEN)
        .timeout(STEP)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Waits until the agent is connected to the broker.
async fn mqtt_up(base: &str) {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        if let Some(l) = lanes(base).await
            && l[0]["devices"]
                .as_array()
                .is_some_and(|d| d.iter().any(|d| d["device"] == "mqtt" && d["up"] == true))
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent did not connect to the broker"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until no transaction is open on L1: the previous read's transaction (rebuilt
/// from the read log, or opened by the broker's redelivery) closed after its quiet time,
/// so the next read is another truck's.
async fn lane_idle(base: &str) {
    // A redelivered publish arrives just after the connection.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        if let Some(l) = lanes(base).await
            && l[0]["open"].is_null()
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lane did not become idle"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Containers with valid ISO 6346 check digits, one per kill.
const CONTAINERS: [&str; 6] = [
    "CSQU3054383",
    "MSCU1234566",
    "TGHU1234567",
    "MAEU1234567",
    "HLXU1234561",
    "CMAU1234564",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_published_just_before_an_agent_kill_is_in_exactly_one_transaction() {
    for c in CONTAINERS {
        protocol::container::ContainerNumber::parse(c)
            .unwrap_or_else(|e| panic!("test container {c} is valid: {e}"));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mqtt_port = free_port();
    let console_port = free_port();
    let _broker = Mosquitto::start(dir.path(), mqtt_port).await;
    let config = write_config(dir.path(), mqtt_port, console_port);
    let reader = Observer::start(mqtt_port, "ocr-reader", "readers/none");
    let delays_ms = [0u64, 50, 150, 300, 600, 1_000];
    for (i, (container, delay)) in CONTAINERS.iter().zip(delays_ms).enumerate() {
        let mut agent = AgentProcess::start(
            &config,
            console_port,
            &dir.path().join(format!("agent-{i}.log")),
        )
        .await;
        mqtt_up(&agent.base).await;
        lane_idle(&agent.base).await;
        reader
            .publish(
                "readers/l1/ocr",
                &format!(r#"{{"container":"{container}","confidence":90}}"#),
            )
            .await;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        agent.kill();
    }
    // The last restart: whatever was logged or is still at the broker is decided.
    let mut agent =
        AgentProcess::start(&config, console_port, &dir.path().join("agent-last.log")).await;
    mqtt_up(&agent.base).await;
    // Quiet close (2 s) of the last rebuilt or redelivered transaction, and its decision.
    lane_idle(&agent.base).await;
    let status = agent.terminate();
    assert!(status.success(), "agent stopped cleanly: {status}");

    let store = Store::open(
        &dir.path().join("agent.redb"),
        GateId::parse("G1").expect("gate"),
    )
    .expect("store opens");
    let entries = store.entries(1, 100_000).expect("journal readable");
    let mut txs: Vec<(uuid::Uuid, Vec<String>)> = Vec::new();
    let mut decisions: Vec<protocol::schema::Decision> = Vec::new();
    for e in &entries {
        match &e.body {
            EventBody::Transaction { transaction } => txs.push((
                transaction.id,
                transaction
                    .reads
                    .iter()
                    .filter_map(|r| match &r.value {
                        ReadValue::Container { number } => Some(number.to_string()),
                        _ => None,
                    })
                    .collect(),
            )),
            EventBody::Decision { decision } => decisions.push(decision.clone()),
            _ => {}
        }
    }
    for container in CONTAINERS {
        let holding: Vec<_> = txs
            .iter()
            .filter(|(_, cs)| cs.iter().any(|c| c == container))
            .collect();
        assert_eq!(
            holding.len(),
            1,
            "{container}: exactly one transaction holds the read published before the kill; transactions: {txs:?}"
        );
        let (id, cs) = holding[0];
        assert!(
            cs.iter().all(|c| c == container),
            "{container}: its transaction holds no other read's container: {cs:?}"
        );
        let ds: Vec<_> = decisions
            .iter()
            .filter(|d| d.transaction_id == *id)
            .collect();
        assert_eq!(ds.len(), 1, "{container}: decided exactly once");
        if ds[0]
            .reasons
            .iter()
            .any(|r| r.code == ReasonCode::AgentRestarted)
        {
            assert_ne!(ds[0].decision, LaneDecision::Fast);
        }
    }
}
