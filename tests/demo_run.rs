//! The README's first command, run for a short duration: the demo must start every part,
//! decide traffic in every outcome, survive its own faults, and end with every event the
//! gates journaled stored at central. While it runs, central (in the demo's process)
//! serves its Prometheus metrics. On PostgreSQL (`--postgres`), two central instances share
//! the database and one is killed mid-run.

#[path = "../central/tests/common/pg.rs"]
#[allow(dead_code)]
mod pg;

use std::io::BufRead as _;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `GET https://ADDR/metrics` from the demo's central, trusting the demo CA.
fn central_metrics(line: &str) -> (u16, String) {
    // "central dashboard: https://ADDR/  (certificate from the demo CA PATH; …"
    let addr = line
        .split("https://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no central address in {line:?}"));
    let ca = line
        .split("demo CA ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap_or_else(|| panic!("no demo CA in {line:?}"));
    edge_agent::uplink::install_crypto_provider();
    let pem = std::fs::read(ca.trim()).expect("demo CA certificate");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA PEM"))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let r = client
            .get(format!("https://{addr}/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    })
}

fn number_after(text: &str, key: &str) -> Option<u64> {
    let i = text.find(key)? + key.len();
    text[i..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Runs `aeogate demo` for 45 s with `extra` arguments; checks the summary every demo
/// must end with (journaled = stored, every outcome, both gates, the LLRP reader, the
/// faults reported, central's /metrics served) and returns what it printed.
fn short_demo(extra: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_aeogate"))
        .args([
            "demo",
            "--duration",
            "45s",
            "--rate",
            "120",
            "--operators",
            "4000",
            "--consignments",
            "600",
        ])
        .args(["--outage", "10s", "--seed", "7"])
        .args(extra)
        .arg("--dir")
        .arg(dir.path())
        .env("AEOGATE_DEMO_AGENT_LOG", "warn")
        .env("AEOGATE_DEMO_CENTRAL_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the demo");
    let printed = Arc::new(Mutex::new(String::new()));
    let reader = {
        let printed = printed.clone();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut p) = printed.lock() {
                    p.push_str(&line);
                    p.push('\n');
                }
            }
        })
    };
    let mut metrics_checked = false;
    // Bounded: 45 s of traffic, the drain and the summary take well under 3 minutes.
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(_status) = child.try_wait().expect("wait") {
            break;
        }
        let dashboard = printed.lock().ok().and_then(|p| {
            p.lines()
                .find(|l| l.starts_with("central dashboard: https://"))
                .map(str::to_owned)
        });
        if let (false, Some(line)) = (metrics_checked, dashboard) {
            let (status, body) = central_metrics(&line);
            assert_eq!(status, 200, "central /metrics in the demo: {body}");
            assert!(
                body.contains("# HELP central_entries_received_total"),
                "{body}"
            );
            metrics_checked = true;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the demo did not end within 180 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().expect("output");
    reader.join().expect("stdout reader");
    let stdout = printed.lock().map(|p| p.clone()).unwrap_or_default();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );

    let summary = stdout
        .split("== summary")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary in:\n{stdout}"));
    assert!(summary.contains("journaled = stored: yes"), "{summary}");
    let fast = number_after(summary, "FAST").expect("FAST count");
    let standard = number_after(summary, "STANDARD").expect("STANDARD count");
    let inspect = number_after(summary, "INSPECT").expect("INSPECT count");
    assert!(
        fast > 0 && standard > 0 && inspect > 0,
        "every outcome must occur: {summary}"
    );
    // Each gate line reports journaled = stored and something was journaled.
    let gate_lines: Vec<&str> = summary.lines().filter(|l| l.starts_with("gate ")).collect();
    assert_eq!(gate_lines.len(), 2, "{summary}");
    for line in gate_lines {
        let journaled = number_after(line, "events journaled").expect("journaled");
        let stored = number_after(line, "stored at central").expect("stored");
        assert!(journaled > 0, "{line}");
        assert_eq!(journaled, stored, "{line}");
    }
    assert!(metrics_checked, "central's address never printed: {stdout}");
    // The second gate's lanes were read over LLRP: the agent's client installed its ROSpec
    // on the virtual reader, got tag reports and kept the keepalives acknowledged.
    let llrp = summary
        .lines()
        .find(|l| l.starts_with("llrp reader of "))
        .unwrap_or_else(|| panic!("no LLRP reader line: {summary}"));
    assert!(number_after(llrp, ":").is_some_and(|n| n > 0), "{llrp}");
    assert!(
        number_after(llrp, "reports,").is_some_and(|n| n > 0),
        "{llrp}"
    );
    // The faults happened and were reported.
    assert_reported(
        &stdout,
        &[
            "fault: the UHF reader",
            "central unreachable",
            "central reachable again",
        ],
    );
    stdout
}

/// Asserts that the demo's output `stdout` contains each of `lines`.
fn assert_reported(stdout: &str, lines: &[&str]) {
    for line in lines {
        assert!(stdout.contains(line), "{line:?} not reported:\n{stdout}");
    }
}

#[test]
fn short_demo_decides_every_outcome_and_loses_no_event() {
    short_demo(&[]);
}

/// `aeogate demo --postgres URL`: two central instances on one PostgreSQL database (one in
/// the demo's process, one a child process the agents try first); the child is SIGKILLed
/// halfway and started again, and still every event the gates journaled is stored once.
#[test]
fn demo_on_postgresql_loses_a_central_instance_and_no_event() {
    let mut cluster = pg::PgCluster::start();
    let url = cluster.create_database("demo");
    let stdout = short_demo(&["--postgres", &url]);
    assert_reported(
        &stdout,
        &[
            "central on PostgreSQL: two instances on one database",
            "fault: central instance 2 killed (SIGKILL)",
            "central instance 2 started again",
        ],
    );
    // Both instances stored part of the traffic.
    let line = stdout
        .lines()
        .find(|l| l.starts_with("central instances: "))
        .unwrap_or_else(|| panic!("no instance line: {stdout}"));
    let first = number_after(line, "central instances:").expect("instance 1");
    let second = number_after(line, "(this process),").expect("instance 2");
    assert!(first > 0 && second > 0, "{line}");
    cluster.stop();
}
