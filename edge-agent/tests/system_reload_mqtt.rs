//! MQTT topic mappings changed live: the `edge-agent` binary and a mosquitto broker. The
//! configuration's `[[mqtt.topics]]` filter of lane L1 is changed and `edge-agent reload`
//! applies it on the running agent: publishes on the old filter no longer reach the lane,
//! publishes on the new one do, the open transaction keeps its earlier read, and the
//! broker connection is the same one throughout (no reconnect).

mod io_support;

use std::process::Command;
use std::time::Duration;

use io_support::{
    AgentProcess, Mosquitto, MqttAgentToml, Observer, console_json, free_port, metric, retry_until,
};

const TOKEN: &str = "system-test-console-session-token-000002";

fn config(mqtt_port: u16, console_port: u16, ocr_filter: &str) -> MqttAgentToml<'_> {
    MqttAgentToml {
        lane: "presence_loop = false\nquiet_close = \"60s\"\ntransaction_timeout = \"120s\"",
        devices: "",
        client_id: "agent-G1-reload",
        ocr_filter,
        mqtt_port,
        console_port,
    }
}

async fn lane_reads(base: &str) -> Vec<String> {
    let lanes = console_json(&format!("{base}/api/v1/lanes"), TOKEN).await;
    lanes[0]["open"]["reads"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["raw"].as_str().map(str::to_owned))
        .collect()
}

/// Publishes `container` on `topic` every 200 ms until the open transaction holds it.
async fn read_arrives(base: &str, observer: &Observer, topic: &str, container: &str) {
    let payload = format!(r#"{{"container":"{container}","confidence":93}}"#);
    let what = format!("{container} on {topic} never reached lane L1");
    retry_until(&what, async || {
        observer.publish(topic, &payload).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        lane_reads(base).await.iter().any(|r| r.contains(container))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_topic_mapping_applies_without_reconnecting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Mosquitto::start(dir.path(), free_port()).await;
    let console = free_port();
    let path = config(broker.port, console, "readers/old/ocr").write(dir.path(), TOKEN);
    let agent = AgentProcess::start(&path, console, &dir.path().join("agent.log")).await;
    let observer = Observer::start(broker.port, "reload-publisher", "probe");

    read_arrives(&agent.base, &observer, "readers/old/ocr", "CSQU3054383").await;
    assert_eq!(
        metric(&agent.base, "aeogate_mqtt_connections_total").await,
        Some(1.0)
    );

    std::fs::write(
        &path,
        config(broker.port, console, "readers/new/ocr").text(dir.path()),
    )
    .expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .arg("reload")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run edge-agent reload");
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{answer}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        answer.contains("readers/old/ocr") && answer.contains("readers/new/ocr"),
        "the answer lists the mapping removed and the one added: {answer}"
    );

    observer
        .publish(
            "readers/old/ocr",
            r#"{"container":"MSKU9070323","confidence":93}"#,
        )
        .await;
    read_arrives(&agent.base, &observer, "readers/new/ocr", "TGHU1234567").await;
    let reads = lane_reads(&agent.base).await;
    assert!(
        reads.iter().any(|r| r.contains("CSQU3054383")),
        "the open transaction keeps its read from before: {reads:?}"
    );
    assert!(
        !reads.iter().any(|r| r.contains("MSKU9070323")),
        "the old filter no longer feeds the lane: {reads:?}"
    );
    assert_eq!(
        metric(&agent.base, "aeogate_mqtt_connections_total").await,
        Some(1.0),
        "the broker connection was kept"
    );
    drop(agent);
}
