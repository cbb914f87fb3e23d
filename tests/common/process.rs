//! Runs a program with text on its standard input and collects what it printed: the
//! command-line tests of every crate use it (by `#[path]`).
#![allow(dead_code)]

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `cmd` (its program, arguments and environment set), writes `stdin` to its standard
/// input and closes it, and waits for it to end.
pub fn output_with_stdin(cmd: &mut Command, stdin: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the program");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait for the program")
}

/// Runs the shell command `line` on a pseudo-terminal of its own (util-linux `script`,
/// which writes what the terminal showed to `log`), without `RUST_LOG` or `env_remove`;
/// types `input` once `wait_for` has appeared (or after 10 s). Asserts that the command
/// succeeded and returns everything the terminal showed.
pub fn typed_on_a_terminal(
    line: &str,
    log: &Path,
    env_remove: &[&str],
    wait_for: &str,
    input: &str,
) -> String {
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-f", "-e", "-c", line])
        .arg(log)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for name in env_remove {
        cmd.env_remove(name);
    }
    let mut child = cmd
        .spawn()
        .expect("util-linux script is needed for the terminal tests");
    let shown = || {
        std::fs::read(log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !shown().contains(wait_for) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // The prompt is printed just before echo is switched off.
    std::thread::sleep(Duration::from_millis(300));
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).expect("type");
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    let shown = shown();
    assert!(
        out.status.success(),
        "{}{shown}",
        String::from_utf8_lossy(&out.stdout)
    );
    shown
}
