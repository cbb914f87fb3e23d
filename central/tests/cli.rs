//! The `central` command line as an operator meets it: standard input for files, exit
//! statuses, password prompts, progress, log options and errors.
#![allow(clippy::unwrap_used)]

#[path = "../../tests/common/process.rs"]
mod process;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("central.key");
    let out = Command::new(env!("CARGO_BIN_EXE_central"))
        .args(["keys", "generate", "--out"])
        .arg(&key)
        .output()
        .expect("run central");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let config = dir.path().join("central.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nstore_path = {:?}\nsigning_key_path = {:?}\nallow_plain_http_on_loopback = true\n",
            dir.path().join("central.redb"),
            key
        ),
    )
    .expect("config");
    Setup { dir, config }
}

/// Fails, showing `bytes`, unless they hold `needle`.
fn assert_says(bytes: &[u8], needle: &str) {
    let said = text(bytes);
    assert!(said.contains(needle), "{said}");
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn central(s: &Setup, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_central"));
    cmd.arg("--config")
        .arg(&s.config)
        .args(args)
        .env_remove("CENTRAL_CONFIG")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied());
    process::output_with_stdin(&mut cmd, stdin)
}

const OPERATORS: &str = "operator_id,name,authorisations,status,valid_from,roles\n\
    EU-AEO:DE123456789012345,Good GmbH,AEOF,active,2025-01-01,IMPORTER\n\
    EU-AEO:ZZ1,Bad Country,AEOF,active,2025-01-01,\n\
    US-CTPAT:OBOIMP92011,\"Good, Inc.\",SECURITY,ACTIVE,2025-02-01,\n";

#[test]
fn registry_import_reads_standard_input_for_a_dash() {
    let s = setup();
    let good: String = OPERATORS
        .lines()
        .filter(|l| !l.contains("ZZ1"))
        .map(|l| format!("{l}\n"))
        .collect();
    let out = central(&s, &["registry", "import", "-"], &good, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_says(&out.stdout, "<stdin>: 2 rows, 2 imported, 0 refused");
}

#[test]
fn registry_import_with_refused_rows_exits_1_and_keeps_the_good_rows() {
    let s = setup();
    let file = s.dir.path().join("ops.csv");
    std::fs::write(&file, OPERATORS).expect("write");
    let out = central(&s, &["registry", "import", file.to_str().unwrap()], "", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("line 3:"), "{err}");
    assert!(err.contains("1 of 3 rows"), "{err}");
    assert_says(&out.stdout, "3 rows, 2 imported, 1 refused");
}

#[test]
fn a_user_error_prints_one_line_and_no_backtrace_even_with_rust_backtrace() {
    let s = setup();
    let missing = s.dir.path().join("no-such.csv");
    let out = central(
        &s,
        &["registry", "import", missing.to_str().unwrap()],
        "",
        &[("RUST_BACKTRACE", "1")],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.starts_with("central: "), "{err}");
    assert!(err.contains("no-such.csv"), "{err}");
    assert!(!err.to_lowercase().contains("backtrace"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn an_invalid_rust_log_is_refused_by_name() {
    let s = setup();
    let out = central(
        &s,
        &["registry", "import", "-"],
        "",
        &[("RUST_LOG", "info,central=shouty")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("RUST_LOG") && err.contains("central=shouty"),
        "{err}"
    );
}

#[test]
fn import_progress_off_a_terminal_is_plain_lines() {
    let s = setup();
    let csv = traders(10_000);
    let out = central(&s, &["registry", "import", "-"], &csv, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("<stdin>: 10000 rows read"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "escape codes off a terminal: {err:?}"
    );
}

/// A registry CSV of `n` active AEO-F traders.
fn traders(n: u32) -> String {
    let mut csv = String::from("operator_id,name,authorisations,status,valid_from\n");
    for i in 0..n {
        csv.push_str(&format!(
            "EU-AEO:DE{i:015},Trader {i},AEOF,active,2025-01-01\n"
        ));
    }
    csv
}

/// Runs `central ARGS` on a pseudo-terminal (util-linux `script`), writing `input` to it
/// once `wait_for` has appeared (or after 10 s); returns everything the terminal showed.
fn on_a_terminal(s: &Setup, args: &[&str], wait_for: &str, input: &str) -> String {
    let mut line = format!(
        "{} --config {}",
        env!("CARGO_BIN_EXE_central"),
        s.config.display()
    );
    for a in args {
        line.push(' ');
        line.push_str(a);
    }
    let log = s.dir.path().join("typescript");
    process::typed_on_a_terminal(&line, &log, &["CENTRAL_CONFIG"], wait_for, input)
}

#[test]
fn user_add_on_a_terminal_does_not_echo_the_password() {
    let s = setup();
    let shown = on_a_terminal(
        &s,
        &["user", "add", "alice", "--role", "admin"],
        "password for alice",
        "Tr0ub4dor-and-3\n",
    );
    assert!(shown.contains("password for alice"), "{shown}");
    assert!(shown.contains("user alice added"), "{shown}");
    assert!(!shown.contains("Tr0ub4dor"), "password echoed: {shown}");
}

#[test]
fn import_progress_on_a_terminal_is_a_bar() {
    let s = setup();
    let csv = traders(2_000);
    let file = s.dir.path().join("ops.csv");
    std::fs::write(&file, csv).expect("write");
    let shown = on_a_terminal(&s, &["registry", "import", file.to_str().unwrap()], "", "");
    assert!(shown.contains("rows read"), "{shown}");
    assert!(shown.contains('\u{1b}'), "no terminal drawing: {shown:?}");
    assert!(shown.contains("2000 rows, 2000 imported"), "{shown}");
}

#[test]
fn serve_logs_json_lines_with_json_logs_and_plain_text_off_a_terminal() {
    for json in [true, false] {
        let s = setup();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_central"));
        cmd.arg("--config").arg(&s.config).arg("serve");
        if json {
            cmd.arg("--json-logs");
        }
        let mut child = cmd
            .env_remove("CENTRAL_CONFIG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
        let mut first = String::new();
        std::io::BufRead::read_line(&mut stderr, &mut first).expect("a log line");
        child.kill().expect("kill");
        let _ = child.wait();
        assert!(!first.contains('\u{1b}'), "escape codes: {first:?}");
        let parsed = serde_json::from_str::<serde_json::Value>(&first);
        if json {
            let v = parsed.unwrap_or_else(|e| panic!("not JSON ({e}): {first}"));
            assert_eq!(v["level"], "INFO", "{first}");
            assert!(v["fields"]["message"].is_string(), "{first}");
        } else {
            assert!(parsed.is_err(), "text logs expected: {first}");
            assert!(first.contains("INFO"), "{first}");
        }
    }
}

#[test]
fn packaged_man_pages_match_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_central"))
        .arg("man")
        .arg(dir.path())
        .output()
        .expect("run central");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let packaged = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/man/central");
    let names = |d: &Path| -> std::collections::BTreeSet<String> {
        std::fs::read_dir(d)
            .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let hint = "regenerate with `cargo run -p central -- man packaging/man/central`";
    assert_eq!(names(dir.path()), names(&packaged), "{hint}");
    for name in names(dir.path()) {
        assert_eq!(
            std::fs::read_to_string(dir.path().join(&name)).unwrap(),
            std::fs::read_to_string(packaged.join(&name)).unwrap(),
            "{name} differs; {hint}"
        );
    }
}

#[test]
fn agent_add_reads_the_certificate_from_standard_input_for_a_dash() {
    let s = setup();
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["gate-1.example".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    let out = central(
        &s,
        &[
            "agent", "add", "PORT1-G1", "--port", "PORT-A", "--cert", "-",
        ],
        &cert.pem(),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).trim().is_empty(), "a token is printed");
    let bad = central(
        &s,
        &[
            "agent", "add", "PORT1-G2", "--port", "PORT-A", "--cert", "-",
        ],
        "not a certificate\n",
        &[],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("standard input holds no certificate"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn rebuild_index_writes_the_index_file_again_and_moves_a_found_one_aside() {
    let s = setup();
    // Any command that opens the store makes it and its index file.
    let out = central(&s, &["registry", "import", "-"], OPERATORS, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let store = s.dir.path().join("central.redb");
    let index = central::store::redb_index_path(&store);
    assert!(index.exists());
    std::fs::remove_file(&index).unwrap();
    let store_arg = store.to_str().unwrap();
    let out = central(&s, &["rebuild-index", "--store", store_arg], "", &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_says(&out.stdout, "0 events read, 0 index rows");
    assert!(index.exists());
    // Again: the file found there is moved aside, not deleted.
    let out = central(&s, &["rebuild-index", "--store", store_arg], "", &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_says(&out.stdout, "moved aside: ");
    let aside = std::fs::read_dir(s.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("central.index.redb.aside-"))
        .count();
    assert_eq!(aside, 1);
    // A store that is not there: one line naming it, exit 1, nothing created.
    let none = s.dir.path().join("none.redb");
    let out = central(
        &s,
        &["rebuild-index", "--store", none.to_str().unwrap()],
        "",
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_says(&out.stderr, "does not exist");
    assert!(!none.exists());
}
