//! System tests with real parts: the `edge-agent` binary, a mosquitto broker, and a lane
//! board simulated on a pty (the agent opens it through a symlink, as it would a
//! `/dev/serial/by-id` path). Reads come in over both the link and MQTT; the decision is
//! observed on the lane topic and as a lane command on the link.

mod io_support;

use std::path::Path;
use std::time::Duration;

use edge_agent::actuators::{lane_command, safe_command};
use io_support::{
    AgentProcess, BoardSim, Mosquitto, MqttAgentToml, Observer, STEP, console_json, free_port,
    retry_until,
};
use protocol::schema::LaneDecision;
use serde_json::Value;

fn write_config(dir: &Path, board: &Path, mqtt_port: u16, console_port: u16) -> std::path::PathBuf {
    let devices = format!(
        "\n[[devices]]\nname = \"board-l1\"\nlane = \"L1\"\nkind = \"lane_board\"\npath = \"{}\"\n\
         silence_timeout = \"3s\"\nreopen_backoff_max = \"500ms\"\n",
        board.display()
    );
    MqttAgentToml {
        lane: "transaction_timeout = \"60s\"",
        devices: &devices,
        client_id: "agent-G1",
        ocr_filter: "readers/l1/ocr",
        mqtt_port,
        console_port,
    }
    .write(dir, TOKEN)
}

/// Bearer token of the stored console session.
const TOKEN: &str = "system-test-console-session-token-000001";

async fn get_json(url: &str) -> Value {
    console_json(url, TOKEN).await
}

/// Polls `/api/v1/lanes` until `pred` holds for lane L1.
async fn wait_lane(base: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let url = format!("{base}/api/v1/lanes");
    let deadline = tokio::time::Instant::now() + STEP * 2;
    loop {
        let lanes = get_json(&url).await;
        if pred(&lanes[0]) {
            return lanes[0].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "lane never reached: {what}; last: {lanes:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn device_up(lane: &Value, name: &str) -> bool {
    lane["devices"]
        .as_array()
        .is_some_and(|d| d.iter().any(|d| d["device"] == name && d["up"] == true))
}

fn device_down(lane: &Value, name: &str) -> bool {
    lane["devices"]
        .as_array()
        .is_some_and(|d| d.iter().any(|d| d["device"] == name && d["up"] == false))
}

/// One truck: presence, an OCR read over MQTT, an RFID read over the link, departure.
/// Returns the lane state published for it and the lane command the board received.
async fn one_truck(
    base: &str,
    board: &mut BoardSim,
    observer: &mut Observer,
    container: &str,
    previous: Option<&str>,
) -> (Value, protocol::link::LaneCommand) {
    board.presence(true).await;
    wait_lane(base, "transaction open", |l| !l["open"].is_null()).await;
    observer
        .publish(
            "readers/l1/ocr",
            &format!(r#"{{"container":"{container}","confidence":93}}"#),
        )
        .await;
    board.container_tag(container).await;
    wait_lane(base, "both reads folded in", |l| {
        l["open"]["reads"].as_array().is_some_and(|r| r.len() >= 2)
    })
    .await;
    board.presence(false).await;
    // The truck's arrival put the lane in its safe state (WAITING), then came its decision.
    let mut waiting_for = None;
    let state = loop {
        let s = observer.next_on("aeogate/G1/lanes/L1/state").await;
        if s["decision"] == "WAITING" {
            waiting_for = Some(s["transaction_id"].clone());
            continue;
        }
        if previous.is_none_or(|p| s["transaction_id"] != p) {
            break s;
        }
    };
    assert_eq!(
        waiting_for.as_ref(),
        Some(&state["transaction_id"]),
        "the lane showed WAITING for this truck before its decision"
    );
    assert_eq!(
        board.next_command().await,
        safe_command(),
        "the safe state is commanded on arrival"
    );
    let cmd = board.next_command().await;
    (state, cmd)
}

fn decision_of(state: &Value) -> LaneDecision {
    match state["decision"].as_str() {
        Some("FAST") => LaneDecision::Fast,
        Some("STANDARD") => LaneDecision::Standard,
        Some("INSPECT") => LaneDecision::Inspect,
        other => panic!("no decision in lane state: {other:?}"),
    }
}

/// The agent on the board at `link` and the broker on `broker_port`, with an observer
/// (`observer_id`) of every topic; once both devices are up and the agent has subscribed.
async fn start_agent(
    dir: &Path,
    link: &Path,
    broker_port: u16,
    console: u16,
    observer_id: &str,
) -> (AgentProcess, Observer) {
    let cfg = write_config(dir, link, broker_port, console);
    let agent = AgentProcess::start(&cfg, console, &dir.join("agent.log")).await;
    let mut observer = Observer::start(broker_port, observer_id, "#");
    wait_observer_ready(&mut observer).await;
    wait_lane(&agent.base, "board and broker up", |l| {
        device_up(l, "board-l1") && device_up(l, "mqtt")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await; // the agent's SUBSCRIBE settles
    (agent, observer)
}

async fn wait_observer_ready(observer: &mut Observer) {
    retry_until("observer never subscribed", async || {
        observer.publish("probe", "{}").await;
        let probe = observer.next_on("probe");
        tokio::time::timeout(Duration::from_millis(300), probe)
            .await
            .is_ok()
    })
    .await;
    observer.discard("probe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_over_link_and_mqtt_become_a_decision_on_the_lane_topic_and_the_link() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("board-l1");
    let mut board = BoardSim::plug(&link);
    let broker = Mosquitto::start(dir.path(), free_port()).await;
    let console = free_port();
    let (agent, mut observer) =
        start_agent(dir.path(), &link, broker.port, console, "observer-1").await;

    let (state, cmd) = one_truck(&agent.base, &mut board, &mut observer, "CSQU3054383", None).await;
    let decision = decision_of(&state);
    assert_eq!(
        cmd,
        lane_command(decision, state["route"].as_str().expect("route"))
    );
    assert!(
        state.get("reasons").is_none(),
        "the sign topic carries no reasons: {state}"
    );
    let officer = observer.next_on("aeogate/G1/lanes/L1/decision").await;
    assert_eq!(officer["transaction_id"], state["transaction_id"]);
    assert!(
        officer["reasons"].as_array().is_some_and(|r| !r.is_empty()),
        "the officer topic carries the reasons: {officer}"
    );

    let id = state["transaction_id"].as_str().expect("transaction id");
    let detail = get_json(&format!("{}/api/v1/transactions/{id}", agent.base)).await;
    let reads = detail["transaction"]["reads"].as_array().expect("reads");
    let sources: Vec<&str> = reads.iter().filter_map(|r| r["source"].as_str()).collect();
    assert!(
        sources.contains(&"OCR") && sources.contains(&"RFID"),
        "{sources:?}"
    );
    assert!(
        reads.iter().all(|r| r["value"]["kind"] == "CONTAINER"),
        "{reads:#?}"
    );
    assert_eq!(detail["decision"]["decision"], state["decision"]);
    drop(broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_continue_after_a_serial_replug_and_a_broker_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("board-l1");
    let mut board = BoardSim::plug(&link);
    let mut broker = Mosquitto::start(dir.path(), free_port()).await;
    let console = free_port();
    let (agent, mut observer) =
        start_agent(dir.path(), &link, broker.port, console, "observer-2").await;
    let (first, _) = one_truck(&agent.base, &mut board, &mut observer, "CSQU3054383", None).await;
    let first_id = first["transaction_id"].as_str().expect("id").to_owned();

    // Unplug the board and restart the broker; both show as down.
    board.unplug().await;
    broker.stop();
    wait_lane(&agent.base, "board and broker down", |l| {
        device_down(l, "board-l1") && device_down(l, "mqtt")
    })
    .await;

    // Replug (a new pty behind the same path) and bring the broker back.
    let mut board = BoardSim::plug(&link);
    broker.restart().await;
    wait_lane(&agent.base, "board and broker back", |l| {
        device_up(l, "board-l1") && device_up(l, "mqtt")
    })
    .await;
    wait_observer_ready(&mut observer).await;
    // The broker lost its retained messages; the agent republished the lane state.
    let retained = observer.next_on("aeogate/G1/lanes/L1/state").await;
    assert_eq!(retained["transaction_id"], first["transaction_id"]);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (second, cmd) = one_truck(
        &agent.base,
        &mut board,
        &mut observer,
        "MSKU9070323",
        Some(&first_id),
    )
    .await;
    assert_ne!(second["transaction_id"], first["transaction_id"]);
    assert_eq!(
        cmd,
        lane_command(
            decision_of(&second),
            second["route"].as_str().expect("route")
        )
    );
}
