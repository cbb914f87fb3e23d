//! Vendor MQTT formats through a real broker: mosquitto, an agent in this process with two
//! loop-less lanes whose RFID topics carry Impinj IoT device interface and Zebra IoT
//! Connector tag events (`format = "impinj"` / `"zebra"`), and a client publishing them as
//! the readers would. Each lane's truck is read, joined into one transaction and decided.

mod io_support;

use std::time::{Duration, Instant};

use edge_agent::runtime::AgentHandle;
use io_support::{Mosquitto, Observer, STEP, free_port};
use protocol::schema::{EventBody, GateTransaction, LaneId, ReadValue};
use tokio_util::sync::CancellationToken;

fn config(dir: &std::path::Path, mqtt_port: u16) -> edge_agent::config::Config {
    let lane = |id: &str| {
        format!(
            "[[lanes]]\nid = \"{id}\"\npresence_loop = false\nquiet_close = \"1s\"\n\
             [lanes.routes]\nfast = \"a\"\nstandard = \"b\"\ninspect = \"c\"\n\n"
        )
    };
    let text = format!(
        "[gate]\nid = \"G1\"\nport = \"PORT-A\"\n\n{}{}\
         [mqtt]\nhost = \"127.0.0.1\"\nport = {mqtt_port}\nclient_id = \"agent-vendor\"\n\n\
         [[mqtt.topics]]\nfilter = \"impinj/+/events\"\nlane = \"L1\"\nkind = \"rfid\"\nformat = \"impinj\"\n\n\
         [[mqtt.topics]]\nfilter = \"zebra/fx9600/data\"\nlane = \"L2\"\nkind = \"rfid\"\nformat = \"zebra\"\n\n\
         [store]\npath = \"{}\"\n\n[policy]\nrandom_key = \"vendor-test-random-key\"\n\n\
         [console]\nbind = \"127.0.0.1:0\"\n",
        lane("L1"),
        lane("L2"),
        dir.join("agent.redb").display(),
    );
    edge_agent::config::Config::from_toml_str(&text, "vendor agent").expect("config parses")
}

async fn transaction_on(handle: &AgentHandle, lane: &str) -> GateTransaction {
    let lane = LaneId::parse(lane).expect("lane");
    let deadline = Instant::now() + STEP;
    loop {
        let found = handle
            .shared
            .store
            .entries(1, 10_000)
            .expect("journal")
            .into_iter()
            .find_map(|e| match e.body {
                EventBody::Transaction { transaction } if transaction.lane == lane => {
                    Some(transaction)
                }
                _ => None,
            });
        if let Some(tx) = found {
            return tx;
        }
        assert!(Instant::now() < deadline, "no transaction on {lane}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn container(tx: &GateTransaction) -> Vec<String> {
    tx.reads
        .iter()
        .filter_map(|r| match &r.value {
            ReadValue::Container { number } => Some(number.as_str().to_owned()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impinj_and_zebra_tag_events_become_reads_of_their_lanes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Mosquitto::start(dir.path(), free_port()).await;
    let stop = CancellationToken::new();
    let handle = edge_agent::runtime::start(config(dir.path(), broker.port), stop.clone())
        .await
        .expect("agent starts");
    let publisher = Observer::start(broker.port, "vendor-readers", "probe");
    // The agent subscribes after its ConnAck: wait until it reports the broker up.
    let deadline = Instant::now() + STEP;
    while !handle
        .shared
        .device_health()
        .iter()
        .any(|d| d.device == "mqtt" && d.up)
    {
        assert!(
            Instant::now() < deadline,
            "agent never connected to mosquitto"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let now = jiff::Timestamp::now();
    // An R700 reports each tag as its own event; the container tag is ASCII
    // "CSQU3054383" + NUL. An inventory status event on the same topic carries no tag.
    for (epc, port) in [
        ("3074257BF7194E4000001A85", 1),
        ("435351553330353433383300", 2),
    ] {
        let event = format!(
            r#"{{"timestamp":"{now}","hostname":"impinj-gate","eventType":"tagInventory","tagInventoryEvent":{{"epcHex":"{epc}","antennaPort":{port},"peakRssiCdbm":-5500,"frequency":866900,"transmitPowerCdbm":3000}}}}"#
        );
        publisher.publish("impinj/r700-1/events", &event).await;
    }
    publisher
        .publish(
            "impinj/r700-1/events",
            r#"{"eventType":"inventoryStatus","inventoryStatusEvent":{"status":"running"}}"#,
        )
        .await;
    // The FX9600 batches its records in one message.
    let batch = format!(
        r#"[{{"data":{{"eventNum":1,"format":"epc","idHex":"3074257bf7194e4000001a85","antenna":1,"peakRssi":-60}},"timestamp":"{now}","type":"SIMPLE"}},{{"data":{{"eventNum":2,"format":"epc","idHex":"435351553330353433383300","antenna":2,"peakRssi":-62}},"timestamp":"{now}","type":"SIMPLE"}}]"#
    );
    publisher.publish("zebra/fx9600/data", &batch).await;

    let impinj = transaction_on(&handle, "L1").await;
    let zebra = transaction_on(&handle, "L2").await;
    for (name, tx) in [("impinj", &impinj), ("zebra", &zebra)] {
        assert_eq!(container(tx), vec!["CSQU3054383"], "{name}: {:?}", tx.reads);
        assert!(
            tx.reads.iter().any(
                |r| matches!(&r.value, ReadValue::Tag { uri, .. } if uri.starts_with("urn:epc:id:sgtin:"))
            ),
            "{name}: {:?}",
            tx.reads
        );
        assert!(
            tx.reads
                .iter()
                .all(|r| !matches!(r.value, ReadValue::Unreadable { .. })),
            "{name}: nothing unreadable: {:?}",
            tx.reads
        );
    }
    assert_eq!(impinj.reads.len(), 2, "the status event added no read");
    assert!(
        impinj
            .reads
            .iter()
            .any(|r| r.antenna == Some(2) && r.rssi == Some(-55)),
        "{:?}",
        impinj.reads
    );

    stop.cancel();
    let _ = tokio::time::timeout(STEP, handle.join).await;
}
