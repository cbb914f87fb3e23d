//! The agent's store under a full disk (docs/delivery.md, "A full disk"): the real
//! `central` and `edge-agent` binaries, a virtual lane board on a pty, and the agent's store
//! on a small tmpfs that the test fills and frees. The journal must recover by itself
//! (no restart), `/readyz` must say false while it cannot write, the trucks decided
//! meanwhile must reach the journal in order and central exactly once, with an alert, and
//! a stop while the disk is full must keep the held records.
//!
//! Needs root (to mount the tmpfs); without it the test says so and does nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use aeogate::vboard::{Truck, VirtualBoard};
use central::model::AlertKind;
use common::{
    AgentSite, CentralSite, LaneSpec, STEP, Transport, assert_exactly_once, count, stored_events,
};
use edge_agent::store::HeldFile;
use protocol::schema::{EventBody, JournalEntry, LaneDecision};
use serde_json::Value;

/// A tmpfs mounted for the test, unmounted (lazily) when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).expect("mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Writes zeros into `path` until the file system refuses (bounded by `max` bytes).
fn fill(path: &Path, max: u64) -> u64 {
    use std::io::Write as _;
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 64 << 10];
    let mut written = 0;
    while written < max {
        match f.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n as u64,
        }
    }
    let _ = f.sync_all();
    written
}

fn truck(j: u64) -> Truck {
    common::container_truck(j, Duration::from_millis(600))
}

async fn get(agent: &AgentSite, path: &str) -> (u16, Value) {
    agent.get(path).await
}

/// The lane's last decision, from the agent's live state (held decisions are not in the
/// journal, so the history API would not show them); `Err` when the console does not
/// answer (its sessions are in the store, which is closed while it cannot be reopened).
async fn last_decision(agent: &AgentSite) -> Result<Option<Value>, u16> {
    let (status, lanes) = get(agent, "/api/v1/lanes").await;
    if status != 200 {
        return Err(status);
    }
    Ok(lanes.as_array().and_then(|a| {
        a.iter()
            .find(|l| l["lane"] == "L1")
            .map(|l| l["last_decision"].clone())
            .filter(Value::is_object)
    }))
}

/// Drives one truck through the lane and returns its decision. While the console cannot
/// answer (the store is closed: the journal cannot write), the decision is seen on the
/// lane board instead (a command after the truck's WAITING that is not red), and returned
/// as `{"seen_on": "board"}`: a decision made while the journal could not write.
async fn pass(board: &VirtualBoard, agent: &AgentSite, j: u64) -> Value {
    let before = last_decision(agent)
        .await
        .ok()
        .flatten()
        .map(|d| d["transaction_id"].clone());
    let commands = board.stats().commands_obeyed;
    let decided = decided_in_logs(agent);
    board.arrive(truck(j));
    tokio::time::sleep(Duration::from_millis(600)).await;
    board.leave();
    let deadline = Instant::now() + STEP;
    loop {
        // Only a decision the agent logged after this truck arrived is this truck's: the
        // console may answer again (after an error) with the previous truck's decision,
        // and the board can obey a command that is not this truck's decision.
        let logged = decided_in_logs(agent) > decided;
        match last_decision(agent).await {
            Ok(Some(d)) if logged && Some(&d["transaction_id"]) != before.as_ref() => return d,
            Ok(_) => {}
            Err(_) => {
                if logged
                    && board.stats().commands_obeyed >= commands + 2
                    && board
                        .last_command()
                        .is_some_and(|c| c.light != protocol::link::Light::Red)
                {
                    return serde_json::json!({"seen_on": "board"});
                }
            }
        }
        if Instant::now() >= deadline {
            panic!(
                "truck {j} was not decided in {STEP:?}; agent logs:\n{}",
                agent_logs(agent)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many decisions the agent has logged, across its starts.
fn decided_in_logs(agent: &AgentSite) -> usize {
    (1..20)
        .filter_map(|i| std::fs::read_to_string(agent.dir.join(format!("agent-{i}.log"))).ok())
        .map(|text| {
            text.lines()
                .filter(|l| l.contains(": decided ") || l.contains("\"message\":\"decided\""))
                .count()
        })
        .sum()
}

/// The tail of every log the agent wrote (for a failure message).
fn agent_logs(agent: &AgentSite) -> String {
    let mut out = String::new();
    for i in 1..20 {
        if let Ok(text) = std::fs::read_to_string(agent.dir.join(format!("agent-{i}.log"))) {
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            out.push_str(&format!("--- agent-{i}.log\n"));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

/// Central's open cases (`GET /api/v1/cases`, as the case desk lists them), as JSON text.
async fn central_cases(central: &CentralSite) -> String {
    central
        .staff()
        .await
        .get_json("/api/v1/cases")
        .await
        .to_string()
}

fn held(decision: &Value) -> bool {
    decision["seen_on"] == "board"
        || decision["reasons"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["code"] == "JOURNAL_UNAVAILABLE"))
}

async fn ready(agent: &AgentSite) -> (u16, bool) {
    let (status, body) = get(agent, "/readyz").await;
    (status, body["journal"].as_bool().unwrap_or(true))
}

async fn wait_ready(agent: &AgentSite, within: Duration) {
    let deadline = Instant::now() + within;
    while ready(agent).await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the agent did not become ready again within {within:?} of the disk being freed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Drives trucks on a full disk until `n` of them were held (the journal refused them);
/// redb reuses pages it already owns, so some commits still fit between refusals. Returns
/// the held decisions and how often `/readyz` said not ready (503, journal false) right
/// after one.
async fn pass_until_held(
    board: &VirtualBoard,
    agent: &AgentSite,
    next: &mut u64,
    n: usize,
) -> (Vec<Value>, usize) {
    let mut out = Vec::new();
    let mut not_ready = 0;
    for _ in 0..20 {
        let d = pass(board, agent, *next).await;
        *next += 1;
        if held(&d) {
            if ready(agent).await == (503, false) {
                not_ready += 1;
            }
            assert_ne!(d["decision"], "FAST", "a held decision is never FAST");
            out.push(d);
            if out.len() == n {
                return (out, not_ready);
            }
        }
    }
    panic!("the full disk refused no journal write in 20 trucks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_holds_decisions_recovers_without_restart_and_keeps_them_across_a_stop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(disk) = Tmpfs::mount(&dir.path().join("disk"), "12m") else {
        println!("SKIPPED: cannot mount a tmpfs (needs root); the full-disk test did not run");
        return;
    };
    let mut central = CentralSite::started(dir.path(), Transport::PlainHttp).await;
    let board = common::loop_board("L1", 11);
    let lanes = vec![LaneSpec::on_board("L1", board.tty_link())];
    let mut agent = AgentSite::beside(dir.path(), &central, &lanes, "24h");
    // The store (and the held-records file beside it) on the small disk; the
    // configuration and logs elsewhere.
    let store = disk.path.join("agent.redb");
    std::fs::copy(&agent.store_path, &store).expect("store onto the tmpfs");
    let text = std::fs::read_to_string(&agent.config_path).expect("config");
    let text = text.replace(
        &toml::Value::String(agent.store_path.to_string_lossy().into_owned()).to_string(),
        &toml::Value::String(store.to_string_lossy().into_owned()).to_string(),
    );
    std::fs::write(&agent.config_path, text).expect("config");
    agent.store_path = store;
    // Each decision's log line tells `pass` which truck was decided.
    agent.log_filter = "warn,edge_agent::pipeline=info";
    agent.start().await;
    let staff = central.staff().await;

    let mut j = 0;
    for _ in 0..2 {
        let d = pass(&board, &agent, j).await;
        j += 1;
        assert!(!held(&d), "{d}");
    }
    assert_eq!(ready(&agent).await, (200, true));

    // The disk fills up: trucks are still decided (never FAST), the journal refuses them,
    // and the agent is not ready.
    let filler = disk.path.join("filler");
    fill(&filler, 64 << 20);
    let (first_held, not_ready) = pass_until_held(&board, &agent, &mut j, 3).await;
    assert!(
        not_ready > 0,
        "/readyz said ready (or did not name the journal) right after every held decision"
    );

    // Space comes back: the store is reopened, the held decisions are journaled, no restart.
    std::fs::remove_file(&filler).expect("free the disk");
    wait_ready(&agent, Duration::from_secs(30)).await;
    let d = pass(&board, &agent, j).await;
    j += 1;
    assert!(!held(&d), "writes resumed: {d}");
    // The outage is reported once the journal has taken writes for a while.
    tokio::time::sleep(Duration::from_secs(7)).await;

    // Full again, and the agent stops while records are held: they survive the stop in
    // the held-records file. (On a nearly full disk redb sometimes finds room again before
    // the stop, and then the held records are journaled before it; the test tries again.)
    let held_path = edge_agent::journal::held_file_path(&agent.store_path);
    let mut second_held = Vec::new();
    let mut kept = Vec::new();
    for _ in 0..5 {
        fill(&filler, 64 << 20);
        let (h, _) = pass_until_held(&board, &agent, &mut j, 1).await;
        second_held.extend(h);
        agent.terminate();
        kept = HeldFile::read(&held_path);
        std::fs::remove_file(&filler).expect("free the disk");
        agent.start().await;
        wait_ready(&agent, Duration::from_secs(30)).await;
        if !kept.is_empty() {
            break;
        }
    }
    assert!(
        !kept.is_empty(),
        "in 5 stops on a full disk, no held record was left for the held-records file"
    );
    let d = pass(&board, &agent, j).await;
    j += 1;
    assert!(!held(&d), "{d}");
    let since = jiff::Timestamp::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    staff.wait_drained(since, STEP).await;

    agent.terminate();
    // Central's case desk lists the outages (the alert cases staff work).
    let cases = central_cases(&central).await;
    assert!(
        cases.contains("JOURNAL_WRITE_FAILED"),
        "no JOURNAL_WRITE_FAILED case at central: {cases}"
    );
    central.stop();
    let journal = agent.journal();
    let hub = central.open();
    let stored = stored_events(&hub);
    let counts = count(&journal, &stored);
    assert_exactly_once("full disk", &counts, &journal, &[]);

    // Every truck has exactly one decision in the journal, and the held ones are there
    // with their reason, in the order they were decided.
    let decisions: Vec<&protocol::schema::Decision> = journal
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Decision { decision } => Some(decision),
            _ => None,
        })
        .collect();
    // Each decision with its reason codes and its transaction's reads, so a mismatch
    // shows which truck was decided twice (or not at all).
    let listing: Vec<String> = decisions
        .iter()
        .map(|d| {
            let reads = journal
                .iter()
                .find_map(|e| match &e.body {
                    EventBody::Transaction { transaction }
                        if transaction.id == d.transaction_id =>
                    {
                        Some(format!(
                            "{:?} {:?}",
                            transaction.close_reason,
                            transaction.containers()
                        ))
                    }
                    _ => None,
                })
                .unwrap_or_else(|| "no transaction record".into());
            let codes: Vec<String> = d.reasons.iter().map(|r| format!("{:?}", r.code)).collect();
            format!(
                "{} {:?} {codes:?} reads {reads}",
                d.transaction_id, d.decision
            )
        })
        .collect();
    assert_eq!(
        decisions.len() as u64,
        j,
        "trucks driven = decisions journaled:\n{}",
        listing.join("\n")
    );
    let position = |id: &Value| {
        decisions
            .iter()
            .position(|d| Value::String(d.transaction_id.to_string()) == *id)
    };
    let mut last = None;
    for h in first_held
        .iter()
        .chain(&second_held)
        .filter(|h| h["seen_on"] != "board")
    {
        let p = position(&h["transaction_id"]).unwrap_or_else(|| {
            panic!(
                "held decision {} is not in the journal",
                h["transaction_id"]
            )
        });
        assert!(
            last < Some(p),
            "held decisions are journaled in the order they were made"
        );
        last = Some(p);
        assert_eq!(decisions[p].decision, LaneDecision::Standard);
    }

    // Central was told, once per outage, and its case desk shows it.
    let alerts: Vec<String> = hub
        .store()
        .alerts(1_000)
        .expect("alerts")
        .into_iter()
        .filter(|a| a.kind == AlertKind::AgentReported && a.detail.contains("JOURNAL_WRITE_FAILED"))
        .map(|a| a.detail)
        .collect();
    assert!(alerts.len() >= 2, "one alert per outage: {alerts:#?}");
    // What the held-records file kept across the stop is in the journal.
    for g in &kept {
        for b in &g.bodies {
            if let EventBody::Transaction { transaction } = b {
                assert!(
                    journal.iter().any(|e| matches!(&e.body, EventBody::Transaction { transaction: t } if t.id == transaction.id)),
                    "kept transaction {} is not in the journal",
                    transaction.id
                );
            }
        }
    }
    assert!(
        alerts.iter().any(|a| a.contains("across a stop")),
        "{alerts:#?}"
    );
    drop(board);
    drop(disk);
}

// --- damaged store files ----------------------------------------------------------------

/// Journal entries found in a store file's bytes (the JSON objects the journal stores),
/// with every offset each entry's id appears at. Read without redb, so that a file left by
/// SIGKILL stays as it was.
fn entries_in_file(path: &Path) -> std::collections::BTreeMap<u64, (JournalEntry, Vec<usize>)> {
    let bytes = std::fs::read(path).expect("read the store file");
    let mut out: std::collections::BTreeMap<u64, (JournalEntry, Vec<usize>)> =
        std::collections::BTreeMap::new();
    let start = b"{\"v\":";
    let mut i = 0;
    while let Some(off) = bytes[i..].windows(start.len()).position(|w| w == start) {
        let at = i + off;
        let mut it = serde_json::Deserializer::from_slice(&bytes[at..]).into_iter::<JournalEntry>();
        if let Some(Ok(e)) = it.next()
            && e.verify_hash().is_ok()
        {
            out.entry(e.seq).or_insert((e, Vec::new())).1.push(at);
        }
        i = at + 1;
    }
    out
}

/// How the store file is damaged.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// One digit of the entry's time changed, in every copy of the entry.
    Digit,
    /// The first 64 bytes of the 4 KiB page holding the entry zeroed (a B-tree node's
    /// header).
    PageHeader,
}

fn damage(path: &Path, entry: &JournalEntry, offsets: &[usize], how: Damage) {
    let mut bytes = std::fs::read(path).expect("read");
    for &at in offsets {
        match how {
            Damage::Digit => {
                let text = serde_json::to_string(&entry.at).expect("time");
                let needle = format!("\"at\":{text}");
                let from = at;
                let p = bytes[from..]
                    .windows(needle.len())
                    .position(|w| w == needle.as_bytes())
                    .expect("the entry's time")
                    + from
                    + 7; // the second digit of the year
                bytes[p] = if bytes[p] == b'2' { b'3' } else { b'2' };
            }
            Damage::PageHeader => {
                let page = at / 4096 * 4096;
                bytes[page..page + 64].fill(0);
            }
        }
    }
    std::fs::write(path, bytes).expect("write");
}

/// Journals a dozen entries with central away, stops the agent (`kill`: SIGKILL, else
/// SIGTERM), damages entry 5 in the file, starts central and the agent again. Returns
/// (entries before the damage by seq, the damaged entry's id, central's stored ids,
/// central's agent-reported alerts).
async fn damaged_store_run(kill: bool, how: Damage) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut central = CentralSite::create(&dir.path().join("central"), Transport::PlainHttp);
    let mut agent = AgentSite::beside(dir.path(), &central, &[LaneSpec::manual("L1")], "24h");
    agent.start().await;
    common::burst_to_end(agent.base.clone(), vec!["L1".into()], 1, 12).await;
    // Manual entries' transactions close 1 s after opening and are decided.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    if kill {
        agent.kill();
    } else {
        agent.terminate();
    }
    let before = entries_in_file(&agent.store_path);
    let (target, offsets) = before.get(&5).cloned().expect("entry 5 in the file");
    assert!(before.len() >= 10, "{} entries journaled", before.len());
    damage(&agent.store_path, &target, &offsets, how);

    central.start().await;
    agent.start().await;
    // The agent keeps deciding.
    let number = aeogate::bench::data::container(1)
        .expect("container")
        .to_string();
    let body = serde_json::json!({"action": "MANUAL_ENTRY", "value": {"kind": "CONTAINER", "number": number}});
    let r = agent
        .send(
            reqwest::Method::POST,
            "/api/v1/lanes/L1/actions",
            Some(&body),
        )
        .await;
    let after_start = match r {
        Ok(r) if r.status() == 201 => true,
        // A replaced store has no console accounts: decide through the lane instead.
        _ => false,
    };
    let staff = central.staff().await;
    let since = jiff::Timestamp::now();
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    staff.wait_drained(since, STEP).await;
    agent.terminate();
    central.stop();
    let hub = central.open();
    let stored: std::collections::HashSet<uuid::Uuid> =
        stored_events(&hub).iter().map(|e| e.entry.id).collect();
    let alerts: Vec<String> = hub
        .store()
        .alerts(1_000)
        .expect("alerts")
        .into_iter()
        .filter(|a| a.kind == AlertKind::AgentReported)
        .map(|a| a.detail)
        .collect();
    let missing: Vec<u64> = before
        .iter()
        .filter(|(_, (e, _))| !stored.contains(&e.id))
        .map(|(s, _)| *s)
        .collect();
    println!(
        "{how:?} kill={kill}: entries {} missing at central {missing:?}; alerts {alerts:#?}",
        before.len()
    );
    match how {
        Damage::Digit => assert_eq!(
            missing,
            vec![5],
            "every entry but the damaged one reaches central"
        ),
        Damage::PageHeader => assert!(
            missing.len() < before.len() / 2
                && before.range(..5).all(|(_, (e, _))| stored.contains(&e.id)),
            "entries before the damage reach central; missing {missing:?}"
        ),
    }
    assert!(
        alerts
            .iter()
            .any(|a| a.contains("JOURNAL_ENTRY_QUARANTINED")
                || a.contains("STORE_REPAIRED")
                || a.contains("STORE_REPLACED")),
        "central has an integrity alert about the damage: {alerts:#?}"
    );
    if after_start {
        let journal = agent.journal();
        assert!(
            journal
                .iter()
                .any(|e| matches!(&e.body, EventBody::Decision { .. }) && e.seq > target.seq + 5),
            "the agent decided after the damage"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_digit_in_an_unacknowledged_entry_after_sigterm_quarantines_only_it() {
    damaged_store_run(false, Damage::Digit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_digit_in_an_unacknowledged_entry_after_sigkill_quarantines_only_it() {
    damaged_store_run(true, Damage::Digit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_btree_page_still_sends_the_entries_before_it() {
    damaged_store_run(false, Damage::PageHeader).await;
}
