//! What the browser tests share: the check that node, playwright-core and Chromium are
//! installed, a runner for a script in `tests/browser` that only needs its environment,
//! and one for a script that talks to its test over stdio (the script prints a request
//! line, the test answers with one line).
#![allow(dead_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

/// The repository's root: the nearest folder at or above the including crate's manifest
/// that holds `tests/browser`.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|d| d.join("tests/browser").is_dir())
        .expect("repository root")
        .to_path_buf()
}

/// Asserts that node runs, `npm ci --prefix tests/browser` has been run under `repo` (the
/// repository's root) and Chromium is installed; returns Chromium's path (`$CHROMIUM`, or
/// Debian's `/usr/bin/chromium`).
pub fn require_browser(repo: &Path) -> PathBuf {
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is missing: run scripts/test (installs node, chromium and `npm ci --prefix tests/browser`)"
    );
    let chromium =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    assert!(
        chromium.exists(),
        "chromium is missing at {}: apt-get install -y chromium (scripts/test does)",
        chromium.display()
    );
    assert!(
        repo.join("tests/browser/node_modules/playwright-core")
            .is_dir(),
        "playwright-core is missing: npm ci --prefix tests/browser"
    );
    chromium
}

/// `target/screens` under `repo`, where the scripts put their screenshots; created.
pub fn screens_dir(repo: &Path) -> PathBuf {
    let screens = repo.join("target/screens");
    std::fs::create_dir_all(&screens).expect("screens dir");
    screens
}

/// With `AEOGATE_UPDATE_SCREENS=1`, copies the screenshots in `screens` named
/// `prefix*.png` to `docs/screens` under `repo`.
pub fn update_docs(repo: &Path, screens: &Path, prefix: &str) {
    if std::env::var("AEOGATE_UPDATE_SCREENS").is_ok_and(|v| v == "1") {
        let docs = repo.join("docs/screens");
        std::fs::create_dir_all(&docs).expect("docs/screens");
        for e in std::fs::read_dir(screens).expect("screens") {
            let p = e.expect("entry").path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.starts_with(prefix) && name.ends_with(".png") {
                std::fs::copy(&p, docs.join(name)).expect("copy screen");
            }
        }
    }
}

/// Runs `tests/browser/<script>` under `repo` (the repository's root) with node and
/// `env`, giving it at most `limit`; fails, with all it printed, unless it exits
/// successfully. Returns what it printed on stdout.
pub async fn run_node(
    repo: &Path,
    script: &str,
    env: Vec<(&'static str, OsString)>,
    limit: Duration,
) -> String {
    let path = repo.join("tests/browser").join(script);
    let out = tokio::time::timeout(
        limit,
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("node")
                .arg(path)
                .envs(env)
                .output()
                .expect("run node")
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("{script} did not end within {limit:?}"))
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed: {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    stdout
}

/// How a script run by [`run_script`] ended.
pub struct ScriptRun {
    script: String,
    finished: bool,
    status: Option<std::io::Result<ExitStatus>>,
    transcript: String,
    stderr: String,
}

impl ScriptRun {
    /// Fails, with the script's transcript and stderr, unless it ended in time and
    /// successfully.
    pub fn assert_passed(&self) {
        self.assert_ended(|s| s.success(), "failed");
    }

    /// Fails unless the script ended in time with exit code `code` (a failure it reports,
    /// not a crash) and its stderr says every one of `needles`.
    pub fn assert_failed_with(&self, code: i32, needles: &[&str]) {
        self.assert_ended(
            |s| s.code() == Some(code),
            &format!("should have failed with exit code {code}"),
        );
        let ScriptRun {
            script,
            transcript,
            stderr,
            ..
        } = self;
        for n in needles {
            assert!(
                stderr.contains(n),
                "{script}: stderr does not say {n:?}\n--- stdout\n{transcript}\n--- stderr\n{stderr}"
            );
        }
    }

    /// Fails, saying `otherwise`, unless the script ended in time with a status `ok` accepts.
    fn assert_ended(&self, ok: impl Fn(&ExitStatus) -> bool, otherwise: &str) {
        let ScriptRun {
            script,
            transcript,
            stderr,
            status,
            finished,
        } = self;
        assert!(*finished, "{script} timed out\n{transcript}\n{stderr}");
        assert!(
            matches!(status, Some(Ok(s)) if ok(s)),
            "{script} {otherwise}: {status:?}\n--- stdout\n{transcript}\n--- stderr\n{stderr}"
        );
    }

    /// What the script printed on stdout.
    pub fn transcript(&self) -> &str {
        &self.transcript
    }
}

/// Runs `node` as set up in `cmd` (the script and its environment), giving it at most
/// `limit`; every line it prints is echoed and passed to `answer`, and what that returns
/// is written back as one line.
pub async fn run_script(
    mut cmd: tokio::process::Command,
    script: &str,
    limit: Duration,
    mut answer: impl AsyncFnMut(&str) -> Option<String>,
) -> ScriptRun {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut transcript = String::new();
    let run = async {
        while let Some(line) = lines.next_line().await.expect("node output") {
            transcript.push_str(&line);
            transcript.push('\n');
            eprintln!("{script}: {line}");
            if let Some(a) = answer(&line).await {
                stdin
                    .write_all(format!("{a}\n").as_bytes())
                    .await
                    .expect("answer");
            }
        }
    };
    let finished = tokio::time::timeout(limit, run).await.is_ok();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .ok();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut e, &mut stderr).await;
    }
    ScriptRun {
        script: script.to_owned(),
        finished,
        status,
        transcript,
        stderr,
    }
}
