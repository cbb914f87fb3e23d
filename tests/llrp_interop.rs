//! LLRP against implementations written by others, installed by `scripts/test`:
//!
//! - the agent's LLRP client against a reader built with `llrpjs` (npm, pinned in
//!   `tests/llrp/package-lock.json`; the reader is `tests/llrp/llrpjs_reader.mjs`): llrpjs
//!   decodes every message the client sends, the client installs its ROSpec and keeps the
//!   keepalives acknowledged, a truck read there gets the same decision as on a board lane,
//!   an antenna event and the reader's process dying show as device health;
//! - `sllurp` (PyPI, pinned in `tests/llrp/requirements.txt`) as the client of the virtual
//!   reader (`tests/llrp/sllurp_client.py`): it configures the reader its own way and gets
//!   the tags of each antenna.
#![cfg(unix)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aeogate::vreader::{VirtualReader, VirtualReaderConfig};
use common::*;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

#[path = "llrp/common.rs"]
mod common;

fn llrp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/llrp")
}

/// The llrpjs reader as a child process; killed on drop.
struct JsReader {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl Drop for JsReader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl JsReader {
    fn start(port: u16) -> JsReader {
        assert!(
            llrp_dir().join("node_modules/llrpjs").exists(),
            "llrpjs is not installed: run scripts/test (or `npm ci --prefix tests/llrp --ignore-scripts`)"
        );
        let mut child = Command::new("node")
            .arg(llrp_dir().join("llrpjs_reader.mjs"))
            .arg(port.to_string())
            .current_dir(llrp_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node starts (the test command installs Node.js packages with npm)");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && tx.send(v).is_err()
                {
                    break;
                }
            }
        });
        let mut r = JsReader {
            child,
            stdin,
            lines,
            seen: Vec::new(),
        };
        r.wait_for(|v| v["event"] == "listening", "listening");
        r
    }

    /// Everything printed so far.
    fn drain(&mut self) -> &[Value] {
        while let Ok(v) = self.lines.try_recv() {
            self.seen.push(v);
        }
        &self.seen
    }

    fn wait_for(&mut self, pred: impl Fn(&Value) -> bool, what: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        if let Some(v) = self.drain().iter().find(|v| pred(v)) {
            return v.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    assert!(v["event"] != "error", "llrpjs reported an error: {v}");
                    if pred(&v) {
                        return v;
                    }
                }
                Err(_) => panic!(
                    "llrpjs reader: no {what} within {WAIT:?}; it printed {:?}",
                    self.seen
                ),
            }
        }
    }

    fn command(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write to the llrpjs reader");
        self.stdin.flush().expect("flush");
        let cmd = line
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        self.wait_for(|v| v["event"] == "done" && v["command"] == cmd, line);
    }

    fn messages(&mut self, name: &str) -> Vec<Value> {
        self.drain()
            .iter()
            .filter(|v| v["event"] == "message" && v["name"] == name)
            .cloned()
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_client_works_with_an_llrpjs_reader() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut js = JsReader::start(port);
    let stop = CancellationToken::new();
    let lanes = TwoLanes::start(port, &dir, &stop).await;

    // llrpjs decoded what the client sent: the ROSpec over antennas 1 and 2 at the row for
    // 27 dBm of its 15.00 + 0.5·(i−1) dBm table (row 25), the 500 ms keepalive.
    let add = js.wait_for(|v| v["event"] == "rospec", "ADD_ROSPEC");
    assert_eq!(add["antennas"], serde_json::json!([1, 2]), "{add}");
    assert_eq!(add["power"], serde_json::json!([25, 25]), "{add}");
    let config = js.wait_for(|v| v["event"] == "config", "SET_READER_CONFIG");
    assert_eq!(config["keepalive_ms"], 500, "{config}");
    js.wait_for(|v| v["name"] == "START_ROSPEC", "START_ROSPEC");

    // The same truck on a board lane and on the llrpjs reader's lane.
    lanes
        .same_truck(|arrives| {
            if arrives {
                for epc in tags() {
                    js.command(&format!("arrive 1 {}", hex::encode(epc)));
                }
            } else {
                js.command("leave 1");
            }
        })
        .await;
    assert!(
        !js.messages("KEEPALIVE_ACK").is_empty(),
        "the client acknowledged llrpjs's keepalives"
    );

    // An antenna event from llrpjs.
    js.command("antenna 2 0");
    wait_health(&lanes.handle, "llrp-1/antenna-2", false, NOTICE).await;
    js.command("antenna 2 1");
    wait_health(&lanes.handle, "llrp-1/antenna-2", true, NOTICE).await;

    // The reader's process dies.
    drop(js);
    let took = wait_health(&lanes.handle, "llrp-1", false, NOTICE).await;
    println!("llrpjs reader's death noticed after {took:?}");

    stop.cancel();
    let _ = tokio::time::timeout(WAIT, lanes.handle.join).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sllurp_client_reads_the_virtual_reader() {
    let python = llrp_dir().join(".venv/bin/python");
    assert!(
        python.exists(),
        "sllurp is not installed: run scripts/test (it makes tests/llrp/.venv from tests/llrp/requirements.txt)"
    );
    let reader = VirtualReader::start(
        VirtualReaderConfig {
            antennas: 4,
            cycle: Duration::from_millis(100),
        },
        ([127, 0, 0, 1], 0).into(),
    )
    .await
    .expect("virtual reader starts");
    let [truck_tag, container_tag] = <[Vec<u8>; 2]>::try_from(tags()).expect("two tags");
    reader.arrive(1, vec![truck_tag.clone()]);
    reader.arrive(3, vec![container_tag.clone()]);
    // A tag on an antenna sllurp does not inventory must not be reported.
    reader.arrive(4, vec![vec![0xE2; 12]]);
    let port = reader.addr().port();
    let script = llrp_dir().join("sllurp_client.py");
    let output = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(python)
            .arg(script)
            .args(["127.0.0.1", &port.to_string(), "3", "1,3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python runs");
        // Bounded: a client that never finishes is killed and the test fails.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait().expect("wait").is_some() {
                break;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("sllurp client still running after 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().expect("python output")
    })
    .await
    .expect("join");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "sllurp did not start an inventory: {text}"
    );
    let result: Value = serde_json::from_str(text.trim()).expect("sllurp_client prints JSON");
    let tags = &result["tags"];
    assert_eq!(
        tags[hex::encode_upper(&truck_tag)],
        serde_json::json!([1]),
        "{result}"
    );
    assert_eq!(
        tags[hex::encode_upper(&container_tag)],
        serde_json::json!([3]),
        "{result}"
    );
    assert_eq!(
        tags.as_object().map(serde_json::Map::len),
        Some(2),
        "only the inventoried antennas' tags: {result}"
    );
    let stats = reader.stats();
    assert!(
        stats.received.get(&protocol::llrp::msg::ADD_ROSPEC) >= Some(&1),
        "sllurp added its own ROSpec: {stats:?}"
    );
    assert!(stats.tag_reports > 0, "{stats:?}");
}
