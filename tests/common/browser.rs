//! What the browser tests share: the check that node, playwright-core and Chromium are
//! installed, and a runner for a script in `tests/browser` that talks to its test over
//! stdio (the script prints a request line, the test answers with one line).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

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
        let ScriptRun {
            script,
            transcript,
            stderr,
            status,
            ..
        } = self;
        assert!(self.finished, "{script} timed out\n{transcript}\n{stderr}");
        assert!(
            matches!(status, Some(Ok(s)) if s.success()),
            "{script} failed: {status:?}\n--- stdout\n{transcript}\n--- stderr\n{stderr}"
        );
    }
}

impl ScriptRun {
    /// Fails unless the script ended in time with exit code `code` (a failure it reports,
    /// not a crash) and its stderr says every one of `needles`.
    pub fn assert_failed_with(&self, code: i32, needles: &[&str]) {
        let ScriptRun {
            script,
            transcript,
            stderr,
            status,
            ..
        } = self;
        assert!(self.finished, "{script} timed out\n{transcript}\n{stderr}");
        assert!(
            matches!(status, Some(Ok(s)) if s.code() == Some(code)),
            "{script} should have failed with exit code {code}: {status:?}\n--- stdout\n{transcript}\n--- stderr\n{stderr}"
        );
        for n in needles {
            assert!(
                stderr.contains(n),
                "{script}: stderr does not say {n:?}\n--- stdout\n{transcript}\n--- stderr\n{stderr}"
            );
        }
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
