//! The `edge-agent` command line.

mod support;

use std::process::Command;

use support::one_lane_toml;

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

#[test]
fn check_config_prints_ok_for_a_valid_file() {
    let out = check_config(&one_lane_toml());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK");
}

#[test]
fn check_config_names_the_key_and_line_and_exits_1() {
    let bad = one_lane_toml().replace("fast = \"Lane 1 priority\"", "fast = \"\"");
    let out = check_config(&bad);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 9") && err.contains("lanes[0].routes.fast"),
        "{err}"
    );
}
