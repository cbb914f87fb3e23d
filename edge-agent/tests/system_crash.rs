//! Crash test at the agent's level: SIGKILL the `edge-agent` binary during a burst of
//! journaled writes, restart it, and check that every write it acknowledged is in the
//! journal with the hash chain intact (the idea of redb's `crash_consistency` tests).

mod io_support;
mod support;

use std::sync::Arc;
use std::time::Duration;

use edge_agent::store::Store;
use io_support::{AgentProcess, STEP, free_port};
use protocol::schema::{EventBody, GateId};
use serde_json::{Value, json};
use tokio::sync::Mutex;

fn write_config(dir: &std::path::Path, console_port: u16) -> std::path::PathBuf {
    let text = format!(
        r#"
[gate]
id = "G1"
port = "PORT-A"

{lane}
[store]
path = "{store}"

[policy]
random_key = "crash-test-random-key"

[console]
bind = "127.0.0.1:{console_port}"
"#,
        lane = support::lane_section(1, 'A', false, "1s"),
        store = dir.join("agent.redb").display(),
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).expect("write config");
    // The console needs a session; one is stored before the agent starts.
    io_support::store_officer_session(&dir.join("agent.redb"), TOKEN);
    path
}

/// Bearer token of the stored console session.
const TOKEN: &str = "system-test-console-session-token-000001";

fn action(i: usize) -> Value {
    match i % 3 {
        0 => json!({"transaction_id": uuid::Uuid::now_v7(), "action": "CONFIRM"}),
        1 => {
            json!({"transaction_id": uuid::Uuid::now_v7(), "action": "INSPECTION_RESULT", "result": {"outcome": "SEAL_INTACT"}, "note": format!("burst {i}")})
        }
        _ => {
            json!({"action": "MANUAL_ENTRY", "value": {"kind": "CONTAINER", "number": "CSQU3054383"}})
        }
    }
}

/// Posts actions from 4 workers until a request fails; returns (seq, action id) of every
/// action the agent acknowledged.
async fn burst(base: String, acked: Arc<Mutex<Vec<(u64, String)>>>) {
    edge_agent::uplink::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let mut workers = Vec::new();
    for _ in 0..4 {
        let client = client.clone();
        let base = base.clone();
        let acked = acked.clone();
        workers.push(tokio::spawn(async move {
            for i in 0..2000 {
                let r = client
                    .post(format!("{base}/api/v1/lanes/L1/actions"))
                    .bearer_auth(TOKEN)
                    .json(&action(i))
                    .send()
                    .await;
                let Ok(r) = r else { return };
                if r.status() != 201 {
                    return;
                }
                let Ok(body) = r.json::<Value>().await else {
                    return;
                };
                let seq = body["seq"].as_u64().expect("seq");
                let id = body["action"]["id"].as_str().expect("id").to_owned();
                acked.lock().await.push((seq, id));
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_burst_loses_no_acknowledged_entry_and_keeps_the_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let console = free_port();
    let cfg = write_config(dir.path(), console);
    let mut agent = AgentProcess::start(&cfg, console, &dir.path().join("agent-1.log")).await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let load = tokio::spawn(burst(agent.base.clone(), acked.clone()));
    tokio::time::timeout(STEP, async {
        while acked.lock().await.len() < 60 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the burst gets going");
    agent.kill();
    tokio::time::timeout(STEP, load)
        .await
        .expect("burst stops")
        .expect("no panic");
    let acked = acked.lock().await.clone();
    let highest = acked
        .iter()
        .map(|(s, _)| *s)
        .max()
        .expect("some acknowledged");

    // Restart on the same store: it opens (tail verified), and numbering continues.
    let mut agent = AgentProcess::start(&cfg, console, &dir.path().join("agent-2.log")).await;
    edge_agent::uplink::install_crypto_provider();
    let r: Value = reqwest::Client::new()
        .post(format!("{}/api/v1/lanes/L1/actions", agent.base))
        .bearer_auth(TOKEN)
        .json(&json!({"transaction_id": uuid::Uuid::now_v7(), "action": "CONFIRM"}))
        .timeout(STEP)
        .send()
        .await
        .expect("post after restart")
        .json()
        .await
        .expect("json");
    assert!(
        r["seq"].as_u64().expect("seq") > highest,
        "no journal seq is reused after a crash"
    );
    assert!(agent.terminate().success(), "clean exit on SIGTERM");

    let store = Store::open(
        &dir.path().join("agent.redb"),
        GateId::parse("G1").expect("gate"),
    )
    .expect("store opens after the crash");
    let checked = store.verify_chain().expect("hash chain intact");
    assert!(checked > highest, "{checked} entries checked");
    for (seq, id) in &acked {
        let entry = store
            .entry(*seq)
            .expect("read")
            .unwrap_or_else(|| panic!("acknowledged entry {seq} lost"));
        match entry.body {
            EventBody::OfficerAction { action } => {
                assert_eq!(&action.id.to_string(), id, "entry {seq}")
            }
            other => panic!("entry {seq} is not the acknowledged action: {other:?}"),
        }
    }
}
