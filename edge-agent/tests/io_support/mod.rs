//! Real parts for the agent's system tests: a simulated lane board on a pty, a mosquitto
//! broker, the `edge-agent` binary, and an MQTT observer.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use protocol::link::{self, Frame, LaneCommand, LinkDecoder, Message, TagRead};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tokio_serial::{SerialPort as _, SerialStream};
use tokio_util::sync::CancellationToken;

mod heartbeat;
use heartbeat::board_heartbeat;

pub const STEP: Duration = Duration::from_secs(10);

/// A free TCP port on 127.0.0.1 (bound, read back, released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("addr").port()
}

/// A lane board on the master side of a pty: acks the agent's frames, hands lane commands
/// to the test, sends heartbeats every 500 ms and resends its events until acked.
pub struct BoardSim {
    out: mpsc::Sender<Message>,
    pub commands: mpsc::Receiver<LaneCommand>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// A new pty pair (master, slave) whose slave `link`, a symlink, now points at; the
/// link is swapped in one rename, as a replugged device appears.
pub fn pty_behind(link: &Path) -> (SerialStream, SerialStream) {
    let (master, slave) = SerialStream::pair().expect("pty pair");
    let slave_path = slave.name().expect("slave path");
    let tmp = link.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&slave_path, &tmp).expect("symlink");
    std::fs::rename(&tmp, link).expect("repoint symlink");
    (master, slave)
}

impl BoardSim {
    /// A new pty whose slave `link` (a symlink) now points at.
    pub fn plug(link: &Path) -> BoardSim {
        let (master, slave) = pty_behind(link);
        let (out, out_rx) = mpsc::channel(64);
        let (cmd_tx, commands) = mpsc::channel(64);
        let stop = CancellationToken::new();
        let task = tokio::spawn(board_task(master, slave, out_rx, cmd_tx, stop.clone()));
        BoardSim {
            out,
            commands,
            stop,
            task,
        }
    }

    pub async fn send(&self, msg: Message) {
        self.out.send(msg).await.expect("board task alive");
    }

    pub async fn presence(&self, present: bool) {
        self.send(Message::Presence {
            loop_id: 0,
            present,
        })
        .await;
    }

    /// A tag whose EPC bank holds `container` as ASCII.
    pub async fn container_tag(&self, container: &str) {
        let mut epc = heapless::Vec::new();
        epc.extend_from_slice(container.as_bytes()).expect("fits");
        epc.push(0).expect("fits");
        self.send(Message::TagRead(TagRead {
            antenna: 1,
            rssi: -50,
            pc: 0x3000,
            epc,
        }))
        .await;
    }

    /// The next lane command the agent sent.
    pub async fn next_command(&mut self) -> LaneCommand {
        tokio::time::timeout(STEP, self.commands.recv())
            .await
            .expect("a lane command in time")
            .expect("board task alive")
    }

    /// Pulls the plug: the pty disappears.
    pub async fn unplug(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn board_task(
    mut master: SerialStream,
    slave: SerialStream,
    mut out: mpsc::Receiver<Message>,
    commands: mpsc::Sender<LaneCommand>,
    stop: CancellationToken,
) {
    let _keep_slave = slave;
    let mut decoder = LinkDecoder::new();
    let mut seq: u16 = 0;
    let mut pending: Vec<(u16, Message, tokio::time::Instant)> = Vec::new();
    let mut seen_cmds: Vec<u16> = Vec::new();
    let mut heartbeat = tokio::time::interval(Duration::from_millis(500));
    let mut resend = tokio::time::interval(Duration::from_millis(300));
    let started = tokio::time::Instant::now();
    let mut buf = [0u8; 256];
    loop {
        let mut to_write: Vec<Frame> = Vec::new();
        tokio::select! {
            () = stop.cancelled() => return,
            _ = heartbeat.tick() => {
                seq = seq.wrapping_add(1);
                to_write.push(Frame::new(seq, board_heartbeat(
                    0xB007_0001,
                    u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX),
                    u8::try_from(pending.len()).unwrap_or(u8::MAX),
                )));
            }
            _ = resend.tick() => {
                let now = tokio::time::Instant::now();
                for (s, m, at) in &mut pending {
                    if now.duration_since(*at) >= Duration::from_millis(300) {
                        *at = now;
                        to_write.push(Frame::new(*s, m.clone()));
                    }
                }
            }
            msg = out.recv() => {
                let Some(msg) = msg else { return };
                seq = seq.wrapping_add(1);
                pending.push((seq, msg.clone(), tokio::time::Instant::now()));
                to_write.push(Frame::new(seq, msg));
            }
            read = master.read(&mut buf) => {
                let Ok(n) = read else { return };
                if n == 0 { return; }
                for &b in &buf[..n] {
                    let Some(Ok(frame)) = decoder.push(b) else { continue };
                    match frame.msg {
                        Message::Ack { seq: acked } => pending.retain(|(s, _, _)| *s != acked),
                        Message::LaneCommand(cmd) => {
                            seq = seq.wrapping_add(1);
                            to_write.push(Frame::new(seq, Message::Ack { seq: frame.seq }));
                            if !seen_cmds.contains(&frame.seq) {
                                seen_cmds.push(frame.seq);
                                let _ = commands.try_send(cmd);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        for f in to_write {
            let mut b = [0u8; link::MAX_FRAME];
            let n = link::encode_frame(&f, &mut b).expect("encode");
            if master.write_all(&b[..n]).await.is_err() {
                return;
            }
        }
    }
}

/// A mosquitto broker on 127.0.0.1:`port` with a minimal configuration.
pub struct Mosquitto {
    pub port: u16,
    conf: PathBuf,
    child: Child,
}

fn mosquitto_binary() -> PathBuf {
    for p in ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    PathBuf::from("mosquitto")
}

impl Mosquitto {
    /// An anonymous broker without persistence on 127.0.0.1:`port`; waits for the port.
    pub async fn start(dir: &Path, port: u16) -> Mosquitto {
        let text = format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n");
        Mosquitto::start_conf(dir, port, &text).await
    }

    pub async fn restart(&mut self) {
        self.stop();
        self.child = spawn_mosquitto(&self.conf);
        wait_for_port(self.port).await;
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `attempt` until it reports success, for at most [`STEP`]; fails saying `what`.
/// `attempt` paces itself (it waits for an answer, or sleeps, before it reports).
pub async fn retry_until(what: &str, mut attempt: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + STEP;
    while !attempt().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
    }
}

pub async fn wait_for_port(port: u16) {
    tokio::time::timeout(STEP, async {
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("port comes up in time");
}

/// The `edge-agent` binary, killed when dropped.
pub struct AgentProcess {
    pub child: Child,
    pub base: String,
}

impl AgentProcess {
    pub async fn start(config: &Path, console_port: u16, log_path: &Path) -> AgentProcess {
        let log = std::fs::File::create(log_path).expect("agent log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start edge-agent");
        let deadline = tokio::time::Instant::now() + STEP;
        while tokio::net::TcpStream::connect(("127.0.0.1", console_port))
            .await
            .is_err()
        {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(log_path).unwrap_or_default();
                panic!("edge-agent exited with {status} before its console came up:\n{log}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "edge-agent console did not come up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        AgentProcess {
            child,
            base: format!("http://127.0.0.1:{console_port}"),
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        panic!("agent did not stop within 10 s of SIGTERM");
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An MQTT client that records everything published under its filter and can publish.
pub struct Observer {
    pub client: AsyncClient,
    pub messages: mpsc::Receiver<(String, Vec<u8>)>,
    /// Messages received while waiting for another topic, oldest first.
    backlog: std::collections::VecDeque<(String, Vec<u8>)>,
    stop: CancellationToken,
}

impl Observer {
    pub fn start(port: u16, id: &str, filter: &str) -> Observer {
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let (tx, messages) = mpsc::channel(256);
        let stop = CancellationToken::new();
        let filter = filter.to_owned();
        let sub = client.clone();
        let stop2 = stop.clone();
        tokio::spawn(async move {
            loop {
                let polled = tokio::select! {
                    () = stop2.cancelled() => return,
                    p = eventloop.poll() => p,
                };
                match polled {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = sub.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.try_send((p.topic.clone(), p.payload.to_vec()));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        Observer {
            client,
            messages,
            backlog: std::collections::VecDeque::new(),
            stop,
        }
    }

    /// Publishes (QoS 1), retrying while the broker is away.
    /// Forgets messages kept so far on `topic`.
    pub fn discard(&mut self, topic: &str) {
        self.backlog.retain(|(t, _)| t != topic);
    }

    pub async fn publish(&self, topic: &str, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .await
            .expect("queue publish");
    }

    /// The next message on `topic` (messages on other topics are kept for later).
    pub async fn next_on(&mut self, topic: &str) -> serde_json::Value {
        if let Some(i) = self.backlog.iter().position(|(t, _)| t == topic) {
            let (_, body) = self.backlog.remove(i).expect("index from position");
            return serde_json::from_slice(&body).expect("payload is JSON");
        }
        tokio::time::timeout(STEP, async {
            loop {
                let (t, body) = self.messages.recv().await.expect("observer alive");
                if t == topic {
                    return serde_json::from_slice(&body).expect("payload is JSON");
                }
                self.backlog.push_back((t, body));
            }
        })
        .await
        .unwrap_or_else(|_| panic!("a message on {topic} in time"))
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Mosquitto {
    /// A mosquitto broker on 127.0.0.1:`port` with the configuration `text` (written to
    /// `dir`); waits for the port.
    pub async fn start_conf(dir: &Path, port: u16, text: &str) -> Mosquitto {
        let conf = dir.join(format!("mosquitto-{port}.conf"));
        std::fs::write(&conf, text).expect("write mosquitto.conf");
        let child = spawn_mosquitto(&conf);
        wait_for_port(port).await;
        Mosquitto { port, conf, child }
    }
}

/// mosquitto with the configuration file `conf`, its output discarded.
fn spawn_mosquitto(conf: &Path) -> Child {
    Command::new(mosquitto_binary())
        .arg("-c")
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto must be installed (scripts/test installs it with apt)")
}

/// Messages received: (topic, payload), oldest first.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

/// An MQTT client that keeps every message it receives (topic, payload) and the newest per
/// topic, and how its connection attempts went.
pub struct Collector {
    pub client: AsyncClient,
    log: Received,
    /// Outcome of the last connection attempt: `Ok` after a ConnAck, the error otherwise.
    pub connected: std::sync::Arc<std::sync::Mutex<Option<Result<(), String>>>>,
    stop: CancellationToken,
}

impl Collector {
    /// Connects with `opts` and subscribes to `filters` (QoS 1) on every connection.
    pub fn start(mut opts: MqttOptions, filters: &[&str]) -> Collector {
        opts.set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(4 << 20, 4 << 20);
        let (client, mut eventloop) = AsyncClient::new(opts, 256);
        let log: Received = std::sync::Arc::default();
        let connected = std::sync::Arc::new(std::sync::Mutex::new(None));
        let stop = CancellationToken::new();
        let filters: Vec<String> = filters.iter().map(|f| (*f).to_owned()).collect();
        let (sub, log2, conn2, stop2) =
            (client.clone(), log.clone(), connected.clone(), stop.clone());
        tokio::spawn(async move {
            for _ in 0..100_000 {
                let polled = tokio::select! {
                    () = stop2.cancelled() => return,
                    p = eventloop.poll() => p,
                };
                match polled {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        *conn2.lock().expect("lock") = Some(Ok(()));
                        for f in &filters {
                            let _ = sub.try_subscribe(f.clone(), QoS::AtLeastOnce);
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        log2.lock()
                            .expect("lock")
                            .push((p.topic.clone(), p.payload.to_vec()));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        *conn2.lock().expect("lock") = Some(Err(e.to_string()));
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        Collector {
            client,
            log,
            connected,
            stop,
        }
    }

    /// A plain client on 127.0.0.1:`port`.
    pub fn plain(port: u16, id: &str, filters: &[&str]) -> Collector {
        Collector::start(MqttOptions::new(id, "127.0.0.1", port), filters)
    }

    /// Every message so far, oldest first.
    pub fn messages(&self) -> Vec<(String, Vec<u8>)> {
        self.log.lock().expect("lock").clone()
    }

    /// The newest message on each topic.
    pub fn latest(&self) -> std::collections::HashMap<String, Vec<u8>> {
        self.messages().into_iter().collect()
    }

    /// Waits (at most `within`) until `pred` holds for the messages so far; returns them.
    pub async fn wait_until(
        &self,
        what: &str,
        within: Duration,
        pred: impl Fn(&[(String, Vec<u8>)]) -> bool,
    ) -> Vec<(String, Vec<u8>)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let seen = self.messages();
            if pred(&seen) {
                return seen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never happened: {what}; {} messages seen",
                seen.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Publishes (QoS 1), waiting for room in the client's queue.
    pub async fn publish(&self, topic: &str, retain: bool, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload.into())
            .await
            .expect("queue publish");
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The console's JSON answer at `url`, asked with the bearer `token`.
pub async fn console_json(url: &str, token: &str) -> serde_json::Value {
    edge_agent::uplink::install_crypto_provider();
    reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .timeout(STEP)
        .send()
        .await
        .expect("console answers")
        .json()
        .await
        .expect("JSON")
}

/// The value of the Prometheus series `series` (name with its labels, as rendered) on the
/// agent's `/metrics`, or `None` when absent.
pub async fn metric(base: &str, series: &str) -> Option<f64> {
    edge_agent::uplink::install_crypto_provider();
    let text = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .timeout(STEP)
        .send()
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("metrics text");
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Stores an hour-long officer session `token` for gate G1 in the agent's store file, so
/// a test can use the console without logging in.
pub fn store_officer_session(store: &Path, token: &str) {
    let gate = protocol::schema::GateId::parse("G1").expect("gate");
    let (role, hour) = (
        edge_agent::console::Role::Officer,
        Duration::from_secs(3600),
    );
    edge_agent::console::add_session_to_store_file(store, gate, "system-tests", role, token, hour)
        .expect("console session stored");
}

/// The configuration the MQTT system tests give the agent: gate G1 with one lane L1 whose
/// OCR reads come over MQTT, a store and a console in the test's directory.
pub struct MqttAgentToml<'a> {
    /// Lines of L1's `[[lanes]]` table after its id (timings, presence loop).
    pub lane: &'a str,
    /// `[[devices]]` tables, or empty.
    pub devices: &'a str,
    pub client_id: &'a str,
    /// Topic filter mapped to L1's OCR reads.
    pub ocr_filter: &'a str,
    pub mqtt_port: u16,
    pub console_port: u16,
}

impl MqttAgentToml<'_> {
    /// The TOML text, with the store at `dir/agent.redb`.
    pub fn text(&self, dir: &Path) -> String {
        let MqttAgentToml {
            lane,
            devices,
            client_id,
            ocr_filter,
            mqtt_port,
            console_port,
        } = self;
        format!(
            r#"
[gate]
id = "G1"
port = "PORT-A"

[[lanes]]
id = "L1"
{lane}
[lanes.routes]
fast = "Lane 1 priority"
standard = "Lane 1 standard"
inspect = "Inspection bay A"
{devices}
[mqtt]
host = "127.0.0.1"
port = {mqtt_port}
client_id = "{client_id}"
lane_topic_prefix = "aeogate/G1/lanes"

[[mqtt.topics]]
filter = "{ocr_filter}"
lane = "L1"
kind = "ocr"

[store]
path = "{store}"

[policy]
random_key = "system-test-random-key"

[console]
bind = "127.0.0.1:{console_port}"
"#,
            store = dir.join("agent.redb").display(),
        )
    }

    /// Writes `dir/agent.toml` and stores an officer console session `token` before the
    /// agent starts; returns the configuration's path.
    pub fn write(&self, dir: &Path, token: &str) -> PathBuf {
        let path = dir.join("agent.toml");
        std::fs::write(&path, self.text(dir)).expect("write config");
        store_officer_session(&dir.join("agent.redb"), token);
        path
    }
}
