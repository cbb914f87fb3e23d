//! The agent's MQTT connection against a real mosquitto, with the `edge-agent` binary (its
//! own `/metrics`): thousands of lanes subscribed and every lane state delivered,
//! availability and the lanes' OFFLINE wills after a kill, retained reader messages that are not
//! fresh reads, oversized payloads that do not cost the connection, and a reconnect
//! backoff that a broker dropping the agent at once cannot reset.

mod io_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use io_support::{AgentProcess, Collector, Mosquitto, free_port, metric};
use serde_json::Value;

/// Loop-less lanes `L0`..`L{n-1}`, each read by an OCR portal on `readers/L<i>/ocr`.
fn write_config(dir: &Path, lanes: usize, mqtt_port: u16, console_port: u16) -> PathBuf {
    write_config_closing(dir, lanes, mqtt_port, console_port, 300)
}

/// [`write_config`] with the lanes closing `quiet_close_ms` after their last read.
fn write_config_closing(
    dir: &Path,
    lanes: usize,
    mqtt_port: u16,
    console_port: u16,
    quiet_close_ms: u64,
) -> PathBuf {
    let mut text = String::from("[gate]\nid = \"G1\"\nport = \"PORT-A\"\n\n");
    for i in 0..lanes {
        text.push_str(&format!(
            "[[lanes]]\nid = \"L{i}\"\npresence_loop = false\nquiet_close = \"{quiet_close_ms}ms\"\n\
             [lanes.routes]\nfast = \"priority\"\nstandard = \"booth\"\ninspect = \"bay\"\n\n"
        ));
    }
    text.push_str(&format!(
        "[mqtt]\nhost = \"127.0.0.1\"\nport = {mqtt_port}\nclient_id = \"agent-G1\"\n\n"
    ));
    for i in 0..lanes {
        text.push_str(&format!(
            "[[mqtt.topics]]\nfilter = \"readers/L{i}/ocr\"\nlane = \"L{i}\"\nkind = \"ocr\"\n\n"
        ));
    }
    text.push_str(&format!(
        "[store]\npath = \"{}\"\n\n[policy]\nrandom_key = \"mqtt-lanes-test-random-key\"\n\n\
         [console]\nbind = \"127.0.0.1:{console_port}\"\n",
        dir.join("agent.redb").display()
    ));
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body).expect("JSON payload")
}

fn state_topic(lane: usize) -> String {
    format!("aeogate/G1/lanes/L{lane}/state")
}

const AVAILABILITY: &str = "aeogate/G1/availability";

fn says(msgs: &[(String, Vec<u8>)], topic: &str, payload: &str) -> bool {
    msgs.iter()
        .rev()
        .find(|(t, _)| t == topic)
        .is_some_and(|(_, p)| p == payload.as_bytes())
}

/// A broker in `dir`, and a configuration of `lanes` lanes on it with the console's port.
async fn broker_and_config(dir: &Path, lanes: usize) -> (Mosquitto, u16, PathBuf) {
    let broker = Mosquitto::start(dir, free_port()).await;
    let console = free_port();
    let cfg = write_config(dir, lanes, broker.port, console);
    (broker, console, cfg)
}

/// A broker that queues up to 100,000 messages for a client: a burst of a read on each of
/// thousands of lanes is more than mosquitto queues by default (1,000 messages, then it
/// drops them), so the shipped configuration raises the queue too.
async fn deep_queue_broker(dir: &Path) -> Mosquitto {
    let port = free_port();
    Mosquitto::start_conf(
        dir,
        port,
        &format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
             max_queued_messages 100000\n"
        ),
    )
    .await
}

/// An agent of `lanes` lanes closing `quiet_close_ms` after their last read, on a
/// [`deep_queue_broker`] in `dir`, online; with a watcher of `topic` and the availability.
async fn many_lanes_online(
    dir: &Path,
    lanes: usize,
    quiet_close_ms: u64,
    topic: &str,
) -> (Mosquitto, Collector, AgentProcess) {
    let broker = deep_queue_broker(dir).await;
    let console = free_port();
    let cfg = write_config_closing(dir, lanes, broker.port, console, quiet_close_ms);
    let watcher = Collector::plain(broker.port, "watcher", &[topic, AVAILABILITY]);
    let agent = AgentProcess::start(&cfg, console, &dir.join("agent.log")).await;
    // `online` comes after the subscriptions and every lane's state.
    wait_online(&watcher, "the agent online", 60).await;
    (broker, watcher, agent)
}

/// Waits until `watcher` has seen the agent say `online`.
async fn wait_online(watcher: &Collector, what: &str, secs: u64) {
    watcher
        .wait_until(what, Duration::from_secs(secs), |m| {
            says(m, AVAILABILITY, "online")
        })
        .await;
}

/// One OCR read of the same container on each of lanes `L0`..`L{lanes-1}`, in lane order.
async fn read_on_every_lane(readers: &Collector, lanes: usize) {
    for i in 0..lanes {
        readers
            .publish(
                &format!("readers/L{i}/ocr"),
                false,
                r#"{"container":"CSQU3054383","confidence":93}"#,
            )
            .await;
    }
}

/// A client that subscribes after the fact and reports what the broker retained.
async fn late_view(
    port: u16,
    id: &str,
    expect_topics: usize,
) -> std::collections::HashMap<String, Vec<u8>> {
    let late = Collector::plain(port, id, &["aeogate/G1/#"]);
    late.wait_until("the retained messages", Duration::from_secs(10), |m| {
        m.len() >= expect_topics
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    late.latest()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_lanes_are_all_subscribed_and_every_lane_state_arrives() {
    const LANES: usize = 2_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, watcher, agent) =
        many_lanes_online(dir.path(), LANES, 300, "aeogate/G1/lanes/+/state").await;

    let readers = Collector::plain(broker.port, "readers", &[]);
    let started = std::time::Instant::now();
    read_on_every_lane(&readers, LANES).await;
    // Every lane's newest state is a decision: every subscription was active and no lane
    // state was lost on the way out.
    let decided = |m: &[(String, Vec<u8>)]| {
        let latest: std::collections::HashMap<&str, &[u8]> =
            m.iter().map(|(t, p)| (t.as_str(), p.as_slice())).collect();
        (0..LANES).all(|i| {
            latest
                .get(state_topic(i).as_str())
                .is_some_and(|p| json(p)["decision"] != "WAITING")
        })
    };
    watcher
        .wait_until("every lane decided", Duration::from_secs(240), decided)
        .await;
    eprintln!(
        "{LANES} reads on {LANES} lanes decided and every lane state retained in {:?}",
        started.elapsed()
    );
    let last = late_view(broker.port, "late", LANES + 1).await;
    let s = json(&last[&state_topic(LANES - 1)]);
    assert_ne!(
        s["decision"], "WAITING",
        "the last lane's read was decided: {s}"
    );
    assert!(
        s.get("reasons").is_none(),
        "the sign topic carries no reasons: {s}"
    );
    assert!((0..LANES).all(|i| json(&last[&state_topic(i)])["decision"] != "WAITING"));

    assert_eq!(
        metric(&agent.base, "aeogate_mqtt_publish_dropped_total").await,
        Some(0.0)
    );
    assert_eq!(
        metric(&agent.base, "aeogate_mqtt_connections_total").await,
        Some(1.0),
        "one connection throughout"
    );
    let superseded = metric(
        &agent.base,
        "aeogate_mqtt_lane_states_superseded_total{topic=\"state\"}",
    )
    .await;
    assert!(superseded.is_some(), "superseded states are counted");
}

/// Decision events (`<lane>/decision`) seen so far.
fn decisions(m: &[(String, Vec<u8>)]) -> usize {
    m.iter().filter(|(t, _)| t.ends_with("/decision")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_truck_gets_its_decision_while_reads_and_lane_states_cross_on_many_lanes() {
    // Every lane gets a truck, round after round, each round as soon as the last one was
    // decided: reads keep arriving while the lanes' states go out, so PUBACKs for the
    // reads share the client's request queue with hundreds of lane state publishes. A
    // PUBACK that is not sent leaves the broker's in-flight window one slot smaller for
    // good (mosquitto's default is 20), and once it is used up no read reaches the agent.
    const LANES: usize = 300;
    const ROUNDS: usize = 8;
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, watcher, agent) =
        many_lanes_online(dir.path(), LANES, 20, "aeogate/G1/lanes/+/decision").await;
    let readers = Collector::plain(broker.port, "readers", &[]);
    for round in 1..=ROUNDS {
        read_on_every_lane(&readers, LANES).await;
        watcher
            .wait_until(
                &format!("every truck of round {round} decided"),
                Duration::from_secs(60),
                |m| decisions(m) >= round * LANES,
            )
            .await;
    }
    assert_eq!(
        decisions(&watcher.messages()),
        ROUNDS * LANES,
        "one decision event per truck"
    );
    assert_eq!(
        metric(&agent.base, "aeogate_mqtt_publish_dropped_total").await,
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_kill_a_late_subscriber_sees_offline_and_a_restart_replaces_the_old_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, console, cfg) = broker_and_config(dir.path(), 2).await;
    let watcher = Collector::plain(broker.port, "watcher", &["aeogate/G1/#"]);
    let mut agent = AgentProcess::start(&cfg, console, &dir.path().join("agent.log")).await;
    wait_online(&watcher, "online", 20).await;
    let readers = Collector::plain(broker.port, "readers", &[]);
    readers
        .publish("readers/L0/ocr", false, r#"{"container":"CSQU3054383"}"#)
        .await;
    let decided = watcher
        .wait_until("L0 decided", Duration::from_secs(20), |m| {
            m.iter()
                .any(|(t, p)| t == &state_topic(0) && json(p)["decision"] != "WAITING")
        })
        .await;
    let tx = decided
        .iter()
        .rev()
        .find(|(t, _)| t == &state_topic(0))
        .map(|(_, p)| json(p)["transaction_id"].clone())
        .expect("state");

    // SIGKILL: the broker publishes the Last Wills (availability and the lanes').
    agent.kill();
    watcher
        .wait_until("the Last Wills", Duration::from_secs(20), |m| {
            says(m, AVAILABILITY, "offline")
                && m.iter()
                    .any(|(t, p)| t == &state_topic(0) && json(p)["decision"] == "OFFLINE")
        })
        .await;
    let view = late_view(broker.port, "late-after-kill", 3).await;
    assert_eq!(view[AVAILABILITY], b"offline", "the Last Will says offline");
    let left = json(&view[&state_topic(0)]);
    assert_ne!(
        left["transaction_id"], tx,
        "the decision is not left behind"
    );
    assert_eq!(
        (&left["decision"], &left["open"]),
        (&Value::from("OFFLINE"), &Value::Bool(false)),
        "the lane's own will says OFFLINE (docs/integration.md): {left}"
    );

    // A restart replaces the old decision with the safe state before it says online.
    let mut agent = AgentProcess::start(&cfg, console, &dir.path().join("agent2.log")).await;
    let late = Collector::plain(broker.port, "late-after-restart", &["aeogate/G1/#"]);
    wait_online(&late, "online again", 20).await;
    let view = late.latest();
    let s = json(&view[&state_topic(0)]);
    assert_eq!(s["decision"], "WAITING", "{s}");
    assert_eq!(s["transaction_id"], Value::Null, "{s}");
    assert_eq!(s["open"], true);

    // A clean stop says every lane OFFLINE and the agent offline itself.
    assert!(agent.terminate().success());
    let view = late_view(broker.port, "late-after-stop", 3).await;
    assert_eq!(view[AVAILABILITY], b"offline");
    for lane in 0..2 {
        let s = json(&view[&state_topic(lane)]);
        assert_eq!(
            (s["open"].clone(), s["light"].clone(), s["decision"].clone()),
            (
                Value::Bool(false),
                Value::from("RED"),
                Value::from("OFFLINE")
            ),
            "{s}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_and_oversized_reader_messages_cost_neither_a_transaction_nor_the_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, console, cfg) = broker_and_config(dir.path(), 3).await;
    let big = format!(r#"{{"container":"{}"}}"#, "A".repeat(100 * 1024));
    // Left on the broker before the agent starts: a 100 KiB message on L1's topic and a
    // well-formed read on L2's, both retained.
    let readers = Collector::plain(broker.port, "readers", &[]);
    readers.publish("readers/L1/ocr", true, big.clone()).await;
    readers
        .publish("readers/L2/ocr", true, r#"{"container":"CSQU3054383"}"#)
        .await;
    let watcher = Collector::plain(broker.port, "watcher", &["aeogate/G1/#"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let agent = AgentProcess::start(&cfg, console, &dir.path().join("agent.log")).await;
    wait_online(&watcher, "online", 20).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for lane in ["L1", "L2"] {
        assert_eq!(
            metric(
                &agent.base,
                &format!("aeogate_mqtt_retained_ignored_total{{lane=\"{lane}\"}}")
            )
            .await,
            Some(1.0),
            "{lane}: the retained message was seen and ignored"
        );
    }
    let msgs = watcher.messages();
    assert!(
        !msgs.iter().any(|(t, _)| t.ends_with("/decision")),
        "no retained message opened a transaction"
    );

    // A 100 KiB message now: an UNREADABLE read on its lane, the connection stays.
    readers.publish("readers/L0/ocr", false, big).await;
    let msgs = watcher
        .wait_until("L0's decision", Duration::from_secs(20), |m| {
            m.iter().any(|(t, _)| t == "aeogate/G1/lanes/L0/decision")
        })
        .await;
    let d = msgs
        .iter()
        .find(|(t, _)| t == "aeogate/G1/lanes/L0/decision")
        .map(|(_, p)| json(p))
        .expect("decision");
    assert!(
        d["reasons"]
            .as_array()
            .is_some_and(|r| r.iter().any(|c| c == "UNREADABLE_READ")),
        "the oversized payload is an unreadable read: {d}"
    );
    assert_ne!(d["decision"], "FAST");
    assert_eq!(
        metric(&agent.base, "aeogate_mqtt_oversized_total{lane=\"L0\"}").await,
        Some(1.0)
    );
    // The same connection still carries reads.
    readers
        .publish("readers/L1/ocr", false, r#"{"container":"CSQU3054383"}"#)
        .await;
    watcher
        .wait_until("L1's decision", Duration::from_secs(20), |m| {
            m.iter().any(|(t, _)| t == "aeogate/G1/lanes/L1/decision")
        })
        .await;
    assert_eq!(
        metric(&agent.base, "aeogate_mqtt_connections_total").await,
        Some(1.0),
        "never reconnected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_drops_the_agent_at_once_does_not_get_a_reconnect_storm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, console, cfg) = broker_and_config(dir.path(), 1).await;
    // A retained message larger than the agent takes (1 MiB): every connection fails as
    // soon as the subscription delivers it.
    let readers = Collector::plain(broker.port, "readers", &[]);
    readers
        .publish("readers/L0/ocr", true, vec![b'x'; 2 << 20])
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let agent = AgentProcess::start(&cfg, console, &dir.path().join("agent.log")).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let connections = metric(&agent.base, "aeogate_mqtt_connections_total")
        .await
        .expect("series");
    // Waits growing 0.25, 0.5, 1, 2, 4 s (jittered, never below 125 ms): about 7
    // connections in 8 s, against one every 125 to 250 ms when each connection resets it.
    assert!(
        (1.0..=15.0).contains(&connections),
        "{connections} connections in 8 s"
    );
}
