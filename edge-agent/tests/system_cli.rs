//! The `edge-agent` command line.

use std::process::Command;

fn check_config(text: &str) -> std::process::Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, text).expect("write");
    Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("run edge-agent")
}

const GOOD: &str = r#"
[gate]
id = "G1"
port = "PORT-A"

[[lanes]]
id = "L1"
[lanes.routes]
fast = "Lane 1 priority"
standard = "Lane 1 standard"
inspect = "Inspection bay A"

[policy]
random_key = "a-long-enough-random-key"
"#;

#[test]
fn check_config_prints_ok_for_a_valid_file() {
    let out = check_config(GOOD);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK");
}

#[test]
fn check_config_names_the_key_and_line_and_exits_1() {
    let bad = GOOD.replace("fast = \"Lane 1 priority\"", "fast = \"\"");
    let out = check_config(&bad);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 9") && err.contains("lanes[0].routes.fast"),
        "{err}"
    );
}
