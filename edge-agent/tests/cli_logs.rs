//! The `edge-agent` command line's input and logging: `-` as standard input, an invalid
//! `RUST_LOG`, no colour codes off a terminal, JSON log lines.
#![allow(clippy::unwrap_used)]

#[path = "../../tests/common/process.rs"]
mod process;
mod support;

use std::process::Command;

use support::one_lane_toml;

fn agent(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edge-agent"));
    cmd.args(args)
        .env_remove("RUST_LOG")
        .envs(env.iter().copied());
    process::output_with_stdin(&mut cmd, stdin)
}

#[test]
fn check_config_reads_standard_input_for_a_dash() {
    let out = agent(&["check-config", "-"], &one_lane_toml(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK");
    let bad = agent(
        &["check-config", "-"],
        &one_lane_toml().replace("port = ", "prot = "),
        &[],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("<stdin>"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
fn run_refuses_an_invalid_rust_log_by_name() {
    let out = agent(
        &["run", "--config", "/nonexistent/agent.toml"],
        "",
        &[("RUST_LOG", "edge_agent=chatty")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("RUST_LOG") && err.contains("edge_agent=chatty"),
        "{err}"
    );
}

#[test]
fn logs_off_a_terminal_carry_no_colour_codes_and_json_logs_are_json() {
    // A configuration that `run` refuses after logging is set up: the failure is logged.
    for json in [false, true] {
        let mut args = vec!["run", "--config", "/nonexistent/agent.toml"];
        if json {
            args.push("--json-logs");
        }
        let out = agent(&args, "", &[]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains('\u{1b}'), "escape codes: {err:?}");
        let first = err.lines().next().unwrap_or_default();
        assert!(first.contains("ERROR"), "{err}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(first).is_ok(),
            json,
            "{err}"
        );
    }
}

#[test]
fn packaged_man_pages_match_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = agent(&["man", dir.path().to_str().unwrap()], "", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let packaged =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/man/edge-agent");
    assert_same_dir(dir.path(), &packaged);
}

/// Same file names, same contents; the message says how to regenerate.
fn assert_same_dir(generated: &std::path::Path, packaged: &std::path::Path) {
    let names = |d: &std::path::Path| -> std::collections::BTreeSet<String> {
        std::fs::read_dir(d)
            .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let hint = "regenerate with `cargo run -p edge-agent -- man packaging/man/edge-agent`";
    assert_eq!(names(generated), names(packaged), "{hint}");
    for name in names(generated) {
        assert_eq!(
            std::fs::read_to_string(generated.join(&name)).unwrap(),
            std::fs::read_to_string(packaged.join(&name)).unwrap(),
            "{name} differs; {hint}"
        );
    }
}

#[test]
fn user_add_on_a_terminal_does_not_echo_the_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    let store = dir.path().join("agent.redb");
    std::fs::write(
        &config,
        format!(
            "{}\n[store]\npath = {:?}\n",
            one_lane_toml(),
            store.to_str().unwrap()
        ),
    )
    .unwrap();
    // util-linux `script` gives the command a terminal of its own (a pty as its
    // controlling terminal); what the terminal showed is written to `log`.
    let log = dir.path().join("typescript");
    let line = format!(
        "{} user add alice --role officer --config {}",
        env!("CARGO_BIN_EXE_edge-agent"),
        config.display()
    );
    let shown =
        process::typed_on_a_terminal(&line, &log, &[], "password for alice", "Correct-Horse-9\n");
    assert!(
        shown.contains("account alice (officer, en) saved"),
        "{shown}"
    );
    assert!(!shown.contains("Correct-Horse"), "password echoed: {shown}");
}
