//! A lane's own state topic says `OFFLINE` when the agent is gone (issue 16): the
//! `edge-agent` binary and a real mosquitto. Each lane has a will-only connection whose
//! Last Will is the lane's retained `OFFLINE` state, so a sign that subscribes only to its
//! lane's state topic — after the agent died — does not see the last FAST. Without lane
//! wills (as before them) the last state stays retained.

mod io_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use io_support::{AgentProcess, Collector, Mosquitto, STEP, free_port, metric};
use protocol::schema::GateId;
use serde_json::{Value, json};

const TOKEN: &str = "lane-wills-test-supervisor-session-token-01";
const L1_STATE: &str = "aeogate/G1/lanes/L1/state";

/// An agent configuration with lanes `L1`..`L<lanes>` and `mqtt.lane_wills` as given
/// (absent: the default), and a supervisor's console session.
fn write_config(
    dir: &Path,
    mqtt_port: u16,
    console_port: u16,
    lanes: usize,
    lane_wills: Option<bool>,
) -> PathBuf {
    let mut text = String::from("[gate]\nid = \"G1\"\nport = \"PORT-A\"\n\n");
    for i in 1..=lanes {
        text.push_str(&format!(
            "[[lanes]]\nid = \"L{i}\"\npresence_loop = false\nquiet_close = \"300ms\"\n\
             [lanes.routes]\nfast = \"priority\"\nstandard = \"booth\"\ninspect = \"bay\"\n\n"
        ));
    }
    text.push_str(&format!(
        "[mqtt]\nhost = \"127.0.0.1\"\nport = {mqtt_port}\nclient_id = \"agent-G1\"\n"
    ));
    if let Some(w) = lane_wills {
        text.push_str(&format!("lane_wills = {w}\n"));
    }
    text.push_str(&format!(
        "\n[store]\npath = \"{}\"\n\n[policy]\nrandom_key = \"lane-wills-test-random-key\"\n\n\
         [console]\nbind = \"127.0.0.1:{console_port}\"\n",
        dir.join("agent.redb").display()
    ));
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).expect("write config");
    edge_agent::console::add_session_to_store_file(
        &dir.join("agent.redb"),
        GateId::parse("G1").expect("gate"),
        "lane-wills-test",
        edge_agent::console::Role::Supervisor,
        TOKEN,
        Duration::from_secs(3600),
    )
    .expect("console session stored");
    path
}

/// A broker and the agent configured by [`write_config`] on it, logging to `dir/log`;
/// with the configuration's path and the console's port, for a restart.
async fn broker_and_agent(
    dir: &Path,
    lanes: usize,
    lane_wills: Option<bool>,
    log: &str,
) -> (Mosquitto, AgentProcess, PathBuf, u16) {
    let broker = Mosquitto::start(dir, free_port()).await;
    let console = free_port();
    let cfg = write_config(dir, broker.port, console, lanes, lane_wills);
    let agent = AgentProcess::start(&cfg, console, &dir.join(log)).await;
    (broker, agent, cfg, console)
}

/// How many lanes the tests of many lanes configure.
const MANY_LANES: usize = 200;

/// A broker and an agent of [`MANY_LANES`] lanes on it, every lane's will connection up.
async fn many_lanes(dir: &Path) -> (Mosquitto, AgentProcess) {
    let (broker, agent, _, _) = broker_and_agent(dir, MANY_LANES, None, "agent.log").await;
    wills_connected(&agent.base, MANY_LANES, Duration::from_secs(30)).await;
    (broker, agent)
}

async fn post_action(base: &str, lane: &str, body: &Value) -> (u16, Value) {
    edge_agent::uplink::install_crypto_provider();
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/lanes/{lane}/actions"))
        .bearer_auth(TOKEN)
        .json(body)
        .timeout(STEP)
        .send()
        .await
        .expect("action request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn json_of(p: &[u8]) -> Value {
    serde_json::from_slice(p).expect("lane state is JSON")
}

/// Waits until the agent's `aeogate_mqtt_lane_wills_connected` is `n`.
async fn wills_connected(base: &str, n: usize, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let v = metric(base, "aeogate_mqtt_lane_wills_connected").await;
        #[allow(clippy::cast_precision_loss)]
        if v == Some(n as f64) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "lane will connections: {v:?}, expected {n}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a new subscriber to `filter` receives as retained, per topic (waits until
/// `count` topics have answered).
async fn retained(port: u16, id: &str, filter: &str, count: usize) -> Vec<(String, Value)> {
    let late = Collector::plain(port, id, &[filter]);
    let seen = late
        .wait_until(
            &format!("{count} retained states on {filter}"),
            Duration::from_secs(20),
            |m| {
                m.iter()
                    .map(|(t, _)| t)
                    .collect::<std::collections::HashSet<_>>()
                    .len()
                    >= count
            },
        )
        .await;
    seen.into_iter().map(|(t, p)| (t, json_of(&p))).collect()
}

/// The agent up, a truck entered by hand on L1 and its decision overridden to FAST by a
/// supervisor: the retained state of L1 is FAST.
async fn fast_on_l1(agent: &AgentProcess, port: u16) {
    let watch = Collector::plain(port, "watch-fast", &[L1_STATE]);
    let (status, body) = post_action(
        &agent.base,
        "L1",
        &json!({"action": "MANUAL_ENTRY", "value": {"kind": "CONTAINER", "number": "CSQU3054383"}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let seen = watch
        .wait_until("L1 decided", Duration::from_secs(20), |m| {
            m.iter().any(|(_, p)| {
                let s = json_of(p);
                s["decision"] != "WAITING" && !s["transaction_id"].is_null()
            })
        })
        .await;
    let tx = seen
        .iter()
        .map(|(_, p)| json_of(p))
        .find(|s| s["decision"] != "WAITING" && !s["transaction_id"].is_null())
        .expect("decided")["transaction_id"]
        .clone();
    let (status, body) = post_action(
        &agent.base,
        "L1",
        &json!({"transaction_id": tx, "action": "OVERRIDE", "to": "FAST", "reason": "cleared by the booth", "note": ""}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    watch
        .wait_until("L1 shows FAST", Duration::from_secs(20), |m| {
            m.iter().any(|(_, p)| json_of(p)["decision"] == "FAST")
        })
        .await;
}

/// Connects with `id` (the broker closes the connection that had it), then disconnects.
async fn take_client_id(port: u16, id: &str) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet};
    let (client, mut eventloop) = AsyncClient::new(MqttOptions::new(id, "127.0.0.1", port), 4);
    tokio::time::timeout(STEP, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    client.try_disconnect().expect("queue DISCONNECT");
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
                Ok(_) => {}
                Err(e) => panic!("taking the client id {id}: {e}"),
            }
        }
    })
    .await
    .expect("took the client id in time");
}

fn assert_offline(state: &Value) {
    assert_eq!(state["decision"], "OFFLINE", "{state}");
    assert_eq!(state["open"], false, "{state}");
    assert_eq!(state["light"], "RED", "{state}");
    assert_eq!(state["route"], "", "{state}");
    assert!(state["transaction_id"].is_null(), "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_leaves_offline_on_the_lane_topic_and_a_restart_shows_the_lane_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, mut agent, cfg, console) =
        broker_and_agent(dir.path(), 1, None, "agent-1.log").await;
    wills_connected(&agent.base, 1, STEP).await;
    fast_on_l1(&agent, broker.port).await;

    agent.kill();
    // On main (no lane wills) this is the FAST the agent left.
    let after_kill = retained(broker.port, "late-sign-1", L1_STATE, 1).await;
    assert_offline(&after_kill[0].1);

    let agent = AgentProcess::start(&cfg, console, &dir.path().join("agent-2.log")).await;
    wills_connected(&agent.base, 1, STEP).await;
    // Each will connection's CONNACK republishes the lane's state: give the last one time
    // to arrive, then a new subscriber sees the live lane.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_restart = retained(broker.port, "late-sign-2", L1_STATE, 1).await;
    let s = &after_restart[0].1;
    assert_eq!(
        (&s["decision"], &s["open"]),
        (&json!("WAITING"), &json!(true)),
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_leaves_offline_retained_published_once_before_offline_availability() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, mut agent, _, _) = broker_and_agent(dir.path(), 1, None, "agent.log").await;
    wills_connected(&agent.base, 1, STEP).await;
    fast_on_l1(&agent, broker.port).await;
    let live = Collector::plain(
        broker.port,
        "sign-live",
        &[L1_STATE, "aeogate/G1/availability"],
    );
    live.wait_until("subscribed", STEP, |m| {
        m.iter()
            .any(|(t, p)| t == L1_STATE && json_of(p)["decision"] == "FAST")
    })
    .await;

    let status = agent.terminate();
    assert!(status.success(), "agent stopped cleanly: {status}");
    let seen = live
        .wait_until("availability offline", STEP, |m| {
            m.iter().any(|(_, p)| p == b"offline")
        })
        .await;
    // Anything a will would still publish arrives within this.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen_after = live.messages();
    assert_eq!(
        seen.len(),
        seen_after.len(),
        "nothing after `offline`: {seen_after:?}"
    );
    let offline_states: Vec<usize> = seen_after
        .iter()
        .enumerate()
        .filter(|(_, (t, p))| t == L1_STATE && json_of(p)["decision"] == "OFFLINE")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        offline_states.len(),
        1,
        "OFFLINE published once (the will was discarded): {seen_after:?}"
    );
    let availability = seen_after
        .iter()
        .position(|(_, p)| p == b"offline")
        .expect("offline");
    assert!(
        offline_states[0] < availability,
        "OFFLINE state, then `offline`"
    );
    let after_stop = retained(broker.port, "late-sign", L1_STATE, 1).await;
    assert_offline(&after_stop[0].1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_lane_wills_a_killed_agent_leaves_its_last_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, mut agent, _, _) = broker_and_agent(dir.path(), 1, Some(false), "agent.log").await;
    fast_on_l1(&agent, broker.port).await;
    assert_eq!(
        metric(&agent.base, "aeogate_mqtt_lane_wills_connected").await,
        Some(0.0)
    );
    agent.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_kill = retained(broker.port, "late-sign", L1_STATE, 1).await;
    assert_eq!(after_kill[0].1["decision"], "FAST", "{:?}", after_kill[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_lanes_each_get_a_will_connection_and_all_say_offline_after_a_kill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, mut agent) = many_lanes(dir.path()).await;
    assert_eq!(
        metric(&agent.base, "aeogate_mqtt_lane_will_failures_total").await,
        Some(0.0)
    );
    agent.kill();
    let states = retained(
        broker.port,
        "late-sign",
        "aeogate/G1/lanes/+/state",
        MANY_LANES,
    )
    .await;
    let latest: std::collections::HashMap<String, Value> = states.into_iter().collect();
    assert_eq!(latest.len(), MANY_LANES);
    for i in 1..=MANY_LANES {
        let s = &latest[&format!("aeogate/G1/lanes/L{i}/state")];
        assert_offline(s);
        assert_eq!(s["lane"], format!("L{i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_will_fired_while_the_agent_runs_is_replaced_by_the_lanes_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, agent, _, _) = broker_and_agent(dir.path(), 1, None, "agent.log").await;
    wills_connected(&agent.base, 1, STEP).await;
    fast_on_l1(&agent, broker.port).await;
    let live = Collector::plain(broker.port, "sign-live", &[L1_STATE]);
    live.wait_until("subscribed", STEP, |m| !m.is_empty()).await;

    // Another client takes the will connection's client id: the broker closes the
    // agent's will connection and publishes its will; the agent reconnects it.
    take_client_id(broker.port, "agent-G1-lane-L1").await;
    let seen = live
        .wait_until(
            "the will fired, then FAST again",
            Duration::from_secs(20),
            |m| {
                let i = m
                    .iter()
                    .position(|(_, p)| json_of(p)["decision"] == "OFFLINE");
                i.is_some_and(|i| m[i..].iter().any(|(_, p)| json_of(p)["decision"] == "FAST"))
            },
        )
        .await;
    assert!(
        metric(&agent.base, "aeogate_mqtt_lane_will_failures_total")
            .await
            .is_some_and(|n| n >= 1.0),
        "the lost will connection is counted"
    );
    wills_connected(&agent.base, 1, STEP).await;
    let last = json_of(&seen.last().expect("a state").1);
    assert_eq!(last["decision"], "FAST", "{seen:?}");
    let after = retained(broker.port, "late-sign", L1_STATE, 1).await;
    assert_eq!(after[0].1["decision"], "FAST", "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_of_two_hundred_lanes_says_offline_once_per_lane() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, mut agent) = many_lanes(dir.path()).await;
    let live = Collector::plain(broker.port, "signs", &["aeogate/G1/lanes/+/state"]);
    live.wait_until("every lane's state", STEP, |m| m.len() >= MANY_LANES)
        .await;
    let status = agent.terminate();
    assert!(status.success(), "agent stopped cleanly: {status}");
    let is_offline = |p: &[u8]| json_of(p)["decision"] == "OFFLINE";
    live.wait_until("every lane OFFLINE", STEP, |m| {
        m.iter().filter(|(_, p)| is_offline(p)).count() >= MANY_LANES
    })
    .await;
    // Anything a will would still publish arrives within this.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut per_lane: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (t, p) in live.messages() {
        if is_offline(&p) {
            *per_lane.entry(t).or_default() += 1;
        }
    }
    assert_eq!(per_lane.len(), MANY_LANES);
    assert!(
        per_lane.values().all(|n| *n == 1),
        "the wills were discarded: {per_lane:?}"
    );
}
