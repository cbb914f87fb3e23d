//! `edge-agent check-config` refuses every configuration `edge-agent run` refuses at
//! start-up, with the same error naming the key and its line (docs/configuration.md,
//! "Checking a configuration"). A table: each row is the shipped example with its
//! documented placeholders filled, then one thing changed; both commands run on the same
//! file.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{binary, make_pki};

/// The shipped example with its placeholders filled as its comments say: a real random
/// key, central's CA, and (for the test) the store in `dir` and the console on port 0.
fn filled_example(dir: &Path) -> String {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("edge-agent/agent.example.toml");
    let text = std::fs::read_to_string(example).expect("the shipped example");
    let pki = make_pki(dir);
    let toml_str = |s: &str| toml::Value::String(s.into()).to_string();
    let text = text
        .replace(
            "random_key = \"replace-with-a-long-random-secret\"",
            "random_key = \"9f2c41d7a8e05b3361c4e2d9a7f0b8c3\"",
        )
        .replace(
            "# ca_cert = \"/etc/aeogate/central-ca.pem\"",
            &format!("ca_cert = {}", toml_str(&pki.ca_cert.to_string_lossy())),
        )
        .replace(
            "path = \"/var/lib/aeogate/agent.redb\"",
            &format!(
                "path = {}",
                toml_str(&dir.join("agent.redb").to_string_lossy())
            ),
        )
        .replace("bind = \"127.0.0.1:8080\"", "bind = \"127.0.0.1:0\"");
    assert!(
        !text.contains("replace-with-a-long-random-secret") && text.contains("\nca_cert = "),
        "the example's placeholders moved; update this test and docs/configuration.md"
    );
    text
}

fn check_config(file: &Path) -> Output {
    Command::new(binary("edge-agent"))
        .arg("check-config")
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .expect("run check-config")
}

/// `edge-agent run` on `file`: its exit status and standard error if it stops within 10 s,
/// `None` (after stopping it) if it is still running then.
fn run(file: &Path) -> Option<(std::process::ExitStatus, String)> {
    let err = file.with_extension("stderr");
    let mut run = Command::new(binary("edge-agent"));
    run.args(["run", "--config"]).arg(file);
    let mut child = common::spawn_logged(&mut run, "warn", &err).expect("start run");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some((status, std::fs::read_to_string(&err).unwrap_or_default()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    aeogate::child::wait_or_kill(&mut child, Duration::from_secs(10));
    None
}

struct Row {
    name: &'static str,
    from: &'static str,
    to: String,
    /// Both commands' error must contain each.
    expect: Vec<String>,
    /// Text of the line the error must name (`line N`), when the error is in the file.
    line_of: Option<&'static str>,
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in the configuration"))
}

#[test]
fn check_config_refuses_what_run_refuses_with_the_same_key_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = filled_example(dir.path());
    let missing_ca = dir.path().join("no-such-ca.pem");
    let rows = [
        Row {
            name: "https without ca_cert",
            from: "\nca_cert = ",
            to: "\n# ca_cert = ".into(),
            expect: vec!["central.url".into(), "ca_cert is not set".into()],
            line_of: Some("url = \"https://central"),
        },
        Row {
            name: "http to a host that is not loopback",
            from: "url = \"https://central.example.invalid\"",
            to: "url = \"http://central.example.invalid\"".into(),
            expect: vec!["central.url".into(), "plain http".into()],
            line_of: Some("url = \"http://central"),
        },
        Row {
            name: "invalid MQTT filter",
            from: "filter = \"readers/eseal/l1\"",
            to: "filter = \"readers/#/rfid\"".into(),
            expect: vec!["mqtt.topics[1].filter".into(), "'#'".into()],
            line_of: Some("filter = \"readers/#/rfid\""),
        },
        Row {
            name: "wildcard in lane_topic_prefix",
            from: "lane_topic_prefix = \"aeogate/PORT1-G1/lanes\"",
            to: "lane_topic_prefix = \"aeogate/#\"".into(),
            expect: vec!["mqtt.lane_topic_prefix".into(), "no '+' or '#'".into()],
            line_of: Some("lane_topic_prefix = "),
        },
        Row {
            name: "placeholder random_key",
            from: "random_key = \"9f2c41d7a8e05b3361c4e2d9a7f0b8c3\"",
            to: "random_key = \"replace-with-a-long-random-secret\"".into(),
            expect: vec!["policy.random_key".into(), "placeholder".into()],
            line_of: Some("random_key = "),
        },
        Row {
            name: "unreadable CA file",
            from: "\nca_cert = ",
            to: format!(
                "\nca_cert = {}\n# was: ",
                toml::Value::String(missing_ca.to_string_lossy().into_owned())
            ),
            expect: vec!["central.ca_cert".into(), missing_ca.display().to_string()],
            line_of: None,
        },
    ];
    for (i, row) in rows.iter().enumerate() {
        assert!(
            good.contains(row.from),
            "{}: {:?} not in the example",
            row.name,
            row.from
        );
        let text = good.replacen(row.from, &row.to, 1);
        let file = dir.path().join(format!("row{i}.toml"));
        std::fs::write(&file, &text).expect("write row");
        let mut expect = row.expect.clone();
        // Errors found in the file name the line of the key.
        if let Some(needle) = row.line_of {
            expect.push(format!("line {}", line_of(&text, needle)));
        }
        let checked = check_config(&file);
        let check_err = String::from_utf8_lossy(&checked.stderr).into_owned();
        assert_eq!(
            checked.status.code(),
            Some(1),
            "{}: check-config must refuse it; stderr: {check_err}",
            row.name
        );
        let Some((status, run_err)) = run(&file) else {
            panic!(
                "{}: run did not refuse it (still running after 10 s)",
                row.name
            );
        };
        assert!(!status.success(), "{}: run must refuse it", row.name);
        for e in &expect {
            assert!(
                check_err.contains(e.as_str()),
                "{}: check-config's error lacks {e:?}: {check_err}",
                row.name
            );
            assert!(
                run_err.contains(e.as_str()),
                "{}: run's error lacks {e:?}: {run_err}",
                row.name
            );
        }
    }
}

#[test]
fn the_filled_example_passes_both_and_a_missing_serial_path_is_only_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("agent.toml");
    std::fs::write(&file, filled_example(dir.path())).expect("write");
    let checked = check_config(&file);
    let err = String::from_utf8_lossy(&checked.stderr);
    assert!(checked.status.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&checked.stdout).trim(), "OK");
    assert!(
        err.contains("warning:") && err.contains("/dev/ttyUSB0"),
        "a serial path that does not exist is named in a warning: {err}"
    );
    assert!(
        run(&file).is_none(),
        "run starts on the filled example and keeps running"
    );
}
