//! The real `central serve` binary stops gracefully on SIGTERM (how systemd stops it) and
//! on SIGINT (Ctrl-C): it exits 0, and every entry it acknowledged to an agent through the
//! ingest API is in its store when it starts again.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{chain, fast_decision, gate, seal_exception, transaction};
use protocol::schema::{EventBody, JournalEntry};
use uuid::Uuid;

const GATE: &str = "G1";
const STAFF: (&str, &str) = ("ana", "correct horse");
/// Bound of every wait in this file.
const STEP: Duration = Duration::from_secs(20);
/// Entries per ingest request.
const BATCH: usize = 20;

/// A stopped central: its configuration file, agent token and address.
struct Site {
    dir: tempfile::TempDir,
    config: PathBuf,
    token: String,
    base: String,
    port: u16,
    starts: usize,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

fn site() -> Site {
    let env = common::env();
    let token = env
        .central
        .issue_agent_token(&gate(GATE), "PORT1")
        .expect("agent token");
    env.central
        .add_user(STAFF.0, STAFF.1, "analyst")
        .expect("staff user");
    let common::Env { dir, cfg, central } = env;
    drop(central); // the binary opens the same redb file, which allows one owner
    let port = free_port();
    let config = common::write_config(
        dir.path(),
        &cfg,
        &format!("127.0.0.1:{port}"),
        "argon2_m_cost_kib = 64\nargon2_t_cost = 1\n",
    );
    Site {
        dir,
        config,
        token,
        base: format!("http://127.0.0.1:{port}"),
        port,
        starts: 0,
    }
}

impl Site {
    /// Starts `central serve` and waits until it answers `/healthz`.
    async fn start(&mut self) -> Child {
        self.starts += 1;
        let log = self.log();
        let mut child = Command::new(env!("CARGO_BIN_EXE_central"))
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .env_remove("CENTRAL_CONFIG")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start central");
        let http = client();
        let deadline = Instant::now() + STEP;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("central exited with {status} on start:\n{}", read(&log));
            }
            let up = http
                .get(format!("{}/healthz", self.base))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                return child;
            }
            assert!(
                Instant::now() < deadline,
                "central did not answer on port {} within {STEP:?}:\n{}",
                self.port,
                read(&log)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `signal` and checks that central exits 0 within [`STEP`].
    fn stop_cleanly(&self, child: &mut Child, signal: &str) {
        let status = signal_and_wait(child, signal);
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "exit after SIG{signal}:\n{}",
            read(&self.log())
        );
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join(format!("central-{}.log", self.starts))
    }

    /// Every event the running central stores for the gate, through the staff API.
    async fn stored(&self) -> Vec<JournalEntry> {
        let http = client();
        let token = common::login(&http, &self.base, STAFF.0, STAFF.1).await;
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..1_000 {
            let mut url = format!("{}/api/v1/events?gate={GATE}&limit=1000", self.base);
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let page: serde_json::Value = http
                .get(url)
                .bearer_auth(&token)
                .timeout(STEP)
                .send()
                .await
                .expect("events")
                .json()
                .await
                .expect("events answer");
            for item in page["items"].as_array().expect("items") {
                out.push(serde_json::from_value(item["entry"].clone()).expect("stored entry"));
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
        panic!("more than 1000 pages of events");
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn client() -> reqwest::Client {
    central::server::install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .build()
        .expect("HTTP client")
}

/// Sends `signal` (`TERM`, `INT`) to a child this test started and waits, bounded, for
/// its exit; SIGKILL if it does not come.
fn signal_and_wait(child: &mut Child, signal: &str) -> Option<ExitStatus> {
    let sent = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -{signal} failed");
    let deadline = Instant::now() + STEP;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// A chain of `n` entries: transactions and their decisions, some of them seal
/// exceptions (which open cases in the same write).
fn entries(n: usize) -> Vec<JournalEntry> {
    let g = gate(GATE);
    let bodies: Vec<EventBody> = (0..n / 2)
        .flat_map(|i| {
            let txn = Uuid::now_v7();
            let decision = if i % 5 == 0 {
                seal_exception(&g, txn)
            } else {
                let mut d = fast_decision(&g);
                if let EventBody::Decision { decision } = &mut d {
                    decision.transaction_id = txn;
                }
                d
            };
            [transaction(&g, txn, "MSKU9070323"), decision]
        })
        .collect();
    chain(&g, bodies)
}

/// Posts `entries` in order, batch by batch, until one is not acknowledged (central went
/// away) or all are; records the highest `acked_through` seen.
async fn post_all(base: String, token: String, entries: Vec<JournalEntry>, acked: Arc<AtomicU64>) {
    let http = client();
    let g = gate(GATE);
    for part in entries.chunks(BATCH) {
        let r = http
            .post(format!("{base}/api/v1/agents/{GATE}/events"))
            .bearer_auth(&token)
            .json(&common::batch(&g, part))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        let Ok(r) = r else { return };
        if !r.status().is_success() {
            return;
        }
        let Ok(ack) = r.json::<serde_json::Value>().await else {
            return;
        };
        let through = ack["acked_through"].as_u64().expect("acked_through");
        acked.fetch_max(through, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_ingest_exits_zero_and_keeps_every_acknowledged_entry() {
    let mut site = site();
    let sent = entries(4_000);
    let mut child = site.start().await;

    let acked = Arc::new(AtomicU64::new(0));
    let poster = tokio::spawn(post_all(
        site.base.clone(),
        site.token.clone(),
        sent.clone(),
        acked.clone(),
    ));
    let deadline = Instant::now() + STEP;
    while acked.load(Ordering::SeqCst) < 200 {
        assert!(
            Instant::now() < deadline,
            "central acknowledged only {} entries in {STEP:?}:\n{}",
            acked.load(Ordering::SeqCst),
            read(&site.log())
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Ingest is still going on when the signal arrives.
    let status = signal_and_wait(&mut child, "TERM");
    let log = read(&site.log());
    let status = status.unwrap_or_else(|| panic!("central did not exit on SIGTERM:\n{log}"));
    assert_eq!(status.code(), Some(0), "exit after SIGTERM:\n{log}");
    assert!(log.contains("SIGTERM"), "the log names the signal:\n{log}");
    tokio::time::timeout(STEP, poster)
        .await
        .expect("poster ends once central is gone")
        .expect("poster task");
    let acked = acked.load(Ordering::SeqCst);
    assert!(
        acked < sent.len() as u64,
        "the signal came after the whole chain was sent; nothing was interrupted"
    );

    let mut child = site.start().await;
    let stored = site.stored().await;
    site.stop_cleanly(&mut child, "INT");

    for want in sent.iter().take(usize::try_from(acked).expect("fits")) {
        let got = stored
            .iter()
            .find(|e| e.seq == want.seq)
            .unwrap_or_else(|| panic!("acknowledged entry {} is not stored", want.seq));
        assert_eq!(got.hash, want.hash, "entry {} stored as sent", want.seq);
        assert_eq!(got.id, want.id, "entry {} stored as sent", want.seq);
    }
}

#[tokio::test]
async fn sigint_stops_an_idle_central_with_exit_zero() {
    let mut site = site();
    let mut child = site.start().await;
    site.stop_cleanly(&mut child, "INT");
}

/// The entries of `dir`, sorted.
fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.expect("entry").path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Asks the running central for a chunked snapshot's manifest, as an agent does.
async fn manifest(site: &Site) {
    let r = client()
        .get(format!(
            "{}/api/v1/registry/snapshot/manifest?port=PORT1",
            site.base
        ))
        .bearer_auth(&site.token)
        .timeout(STEP)
        .send()
        .await
        .expect("manifest");
    assert_eq!(r.status(), 200, "manifest");
}

#[tokio::test]
async fn a_killed_centrals_snapshot_files_are_removed_at_the_next_start_and_a_clean_stop_leaves_none()
 {
    let mut site = site();
    let snap = site.dir.path().join("snapshots");
    let text = std::fs::read_to_string(&site.config).expect("config");
    std::fs::write(
        &site.config,
        format!("{text}snapshot_dir = {:?}\n", snap.display().to_string()),
    )
    .expect("config");

    let mut child = site.start().await;
    assert!(
        listing(&snap).is_empty(),
        "nothing before the first snapshot"
    );
    manifest(&site).await;
    let left = listing(&snap);
    assert_eq!(left.len(), 1, "one folder of the running central: {left:?}");
    // SIGKILL: no destructor runs, the files stay; the lock goes with the process.
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert_eq!(listing(&snap), left, "a killed central leaves its files");
    // A folder changed in the last minute is not judged (it may be being made).
    let past = std::time::SystemTime::now() - Duration::from_secs(120);
    std::fs::File::open(&left[0])
        .and_then(|f| f.set_modified(past))
        .expect("date the folder back");

    let mut child = site.start().await;
    assert!(
        listing(&snap).is_empty(),
        "the next start removed the dead central's folder"
    );
    assert!(
        read(&site.log()).contains("removed the snapshot folders"),
        "{}",
        read(&site.log())
    );
    manifest(&site).await;
    assert_eq!(listing(&snap).len(), 1);
    site.stop_cleanly(&mut child, "TERM");
    assert!(
        listing(&snap).is_empty(),
        "a clean stop removes its own folder"
    );
}
