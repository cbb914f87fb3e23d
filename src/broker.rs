//! An in-process MQTT broker (rumqttd), on a free loopback port, for the demo and the
//! whole-system benchmarks.
//!
//! Networked readers (the OCR portals in the demo) publish to it and the agents publish
//! their lane topics to it, exactly as with a site's own broker; only its location differs.

use std::net::{SocketAddr, TcpListener};
use std::thread;

use anyhow::{Context, Result};

/// A running broker. It lives as long as the process (rumqttd has no stop call); the
/// demo starts one per run, and so does each benchmark figure that needs one.
#[derive(Debug)]
pub struct Broker {
    pub addr: SocketAddr,
}

/// Picks a free loopback port. The port is released again before the broker binds it, so
/// another process could take it in between; on loopback, in a demo or a benchmark, that
/// is acceptable.
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding a probe socket on 127.0.0.1")?;
    Ok(l.local_addr()?.port())
}

/// Starts rumqttd (MQTT 3.1.1) on 127.0.0.1 and waits until it accepts connections.
///
/// # Errors
/// When no port is free or the broker does not come up within five seconds.
pub fn start() -> Result<Broker> {
    let port = free_port()?;
    let text = format!(
        r#"
id = 0
[router]
id = 0
max_connections = 1000
max_outgoing_packet_count = 200
max_segment_size = 10485760
max_segment_count = 10

[v4.1]
name = "demo"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 1
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 100
    dynamic_filters = true
"#
    );
    let config: rumqttd::Config =
        toml::from_str(&text).context("in-process broker configuration")?;
    thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                eprintln!("in-process MQTT broker stopped: {e}");
            }
        })
        .context("starting the broker thread")?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(Broker { addr });
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!("the in-process MQTT broker did not start on {addr} within 5 s");
        }
        thread::sleep(std::time::Duration::from_millis(20));
    }
}
