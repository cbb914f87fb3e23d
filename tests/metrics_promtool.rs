//! Both daemons' `/metrics` pass `promtool check metrics` (Prometheus's own linter:
//! `# HELP` on every family, names, units, histogram buckets) on a fresh start and after
//! traffic: the real `central` and `edge-agent` binaries on loopback, officer actions on
//! two manual lanes opening gate transactions that are decided and forwarded.
//!
//! promtool comes from the Debian package `prometheus` (`scripts/test` installs it); the
//! test fails, and says so, when it is missing.

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{AgentSite, CentralSite, LaneSpec, Transport, burst_to_end};

async fn scrape(url: &str) -> String {
    let r = common::http_client(None)
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(r.status(), 200, "GET {url}");
    r.text().await.expect("metrics text")
}

/// Runs `promtool check metrics` on `text`; panics with promtool's findings unless clean.
fn promtool(what: &str, text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}); apt-get install prometheus (scripts/test does)")
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write metrics to promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics on {what} (exit {:?}):\n{}{}\n--- metrics ---\n{text}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_daemons_metrics_pass_promtool_fresh_and_after_traffic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut central = CentralSite::started(dir.path(), Transport::PlainHttp).await;
    let lanes = [LaneSpec::manual("L1"), LaneSpec::manual("L2")];
    let mut agent = AgentSite::beside(dir.path(), &central, &lanes, "24h");
    agent.start().await;
    let central_metrics = format!("{}/metrics", central.url);
    let agent_metrics = format!("{}/metrics", agent.base);

    let fresh_central = scrape(&central_metrics).await;
    let fresh_agent = scrape(&agent_metrics).await;
    promtool("central, fresh", &fresh_central);
    promtool("edge-agent, fresh", &fresh_agent);
    // Counters exist at 0 before anything happened; build info and process series too.
    assert_eq!(
        common::metric_value(
            &fresh_agent,
            "aeogate_decisions_total{lane=\"L1\",decision=\"FAST\"}"
        )
        .or_else(|| common::metric_value(
            &fresh_agent,
            "aeogate_decisions_total{decision=\"FAST\",lane=\"L1\"}"
        )),
        Some(0.0),
        "{fresh_agent}"
    );
    assert_eq!(
        common::metric_value(&fresh_agent, "aeogate_uplink_failures_total"),
        Some(0.0)
    );
    assert_eq!(
        common::metric_value(&fresh_central, "central_entries_stored_total"),
        Some(0.0)
    );
    assert_eq!(
        common::metric_value(
            &fresh_central,
            "central_decisions_total{outcome=\"INSPECT\"}"
        ),
        Some(0.0)
    );
    for text in [&fresh_agent, &fresh_central] {
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
        assert!(text.contains("_build_info{version=\""), "{text}");
    }

    // Traffic: officer manual entries open transactions on both lanes; each is decided,
    // journaled and forwarded to central.
    burst_to_end(agent.base.clone(), vec!["L1".into(), "L2".into()], 2, 6).await;
    let deadline = Instant::now() + common::STEP;
    let (after_central, after_agent) = loop {
        let c = scrape(&central_metrics).await;
        let a = scrape(&agent_metrics).await;
        let stored = common::metric_value(&c, "central_entries_stored_total").unwrap_or(0.0);
        let acked = common::metric_value(&a, "aeogate_uplink_entries_total").unwrap_or(0.0);
        let decided = a
            .lines()
            .filter(|l| l.starts_with("aeogate_decisions_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
        // Central counts the decisions it stored (once the batch is stored).
        let central_decided = c
            .lines()
            .filter(|l| l.starts_with("central_decisions_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
        if stored > 0.0
            && acked > 0.0
            && decided > 0.0
            && central_decided > 0.0
            && a.contains("aeogate_decision_seconds_bucket")
        {
            break (c, a);
        }
        assert!(
            Instant::now() < deadline,
            "no decided and forwarded traffic within {:?}:\n{a}\n{c}",
            common::STEP
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    promtool("central, after traffic", &after_central);
    promtool("edge-agent, after traffic", &after_agent);
    // The journal's group sizes are counted in count buckets, not seconds.
    assert!(
        after_agent.contains("aeogate_journal_group_requests_bucket{le=\"1\"}"),
        "{after_agent}"
    );
    assert!(
        !after_agent.contains("aeogate_journal_group_requests_bucket{le=\"0.001\"}"),
        "{after_agent}"
    );
    // The journal's commit times in their own finer buckets (a quarter millisecond up).
    assert!(
        after_agent.contains("aeogate_journal_commit_seconds_bucket{le=\"0.00025\"}"),
        "{after_agent}"
    );
    let commits = after_agent
        .lines()
        .find_map(|l| l.strip_prefix("aeogate_journal_commit_seconds_count "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert!(
        commits.is_some_and(|n| n >= 1.0),
        "commits timed: {commits:?}\n{after_agent}"
    );
    agent.terminate();
    central.stop();
}
