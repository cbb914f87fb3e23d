//! The README's first command, run for a short duration: the demo must start every part,
//! decide traffic in every outcome, survive its own faults, and end with every event the
//! gates journaled stored at central.

use std::process::Command;
use std::time::Duration;

fn number_after(text: &str, key: &str) -> Option<u64> {
    let i = text.find(key)? + key.len();
    text[i..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[test]
fn short_demo_decides_every_outcome_and_loses_no_event() {
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
        .arg("--dir")
        .arg(dir.path())
        .env("AEOGATE_DEMO_AGENT_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the demo");
    // Bounded: 45 s of traffic, the drain and the summary take well under 3 minutes.
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(_status) = child.try_wait().expect("wait") {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the demo did not end within 180 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
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
    assert!(stdout.contains("fault: the UHF reader"), "{stdout}");
    assert!(stdout.contains("central unreachable"), "{stdout}");
    assert!(stdout.contains("central reachable again"), "{stdout}");
}
