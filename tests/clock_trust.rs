//! Trusted time (docs/clock.md) over the real `central` and `edge-agent` binaries on
//! loopback, the agent's clock moved by Debian's libfaketime:
//!
//! - an agent 10 s ahead of central, or 10 s behind, measures that offset (within 1 s)
//!   on its exchanges with central, a clean AEO truck that would be FAST is STANDARD with
//!   `CLOCK_UNTRUSTED` (and not for a stale replica), and central's gate status shows the
//!   offset the agent measured, untrusted;
//! - the same truck with the agent's clock right is FAST;
//! - an agent that measured its clock out of bound and is restarted with central
//!   unreachable still gives no FAST: the bad measurement is not forgotten;
//! - an agent run 60 s ahead, then restarted with the right clock, journals entries whose
//!   time runs back: central stores them and raises `TIME_BACKWARDS`.
//!
//! On main (no clock measurement) the faked agents give FAST and report no offset.

mod common;

use std::time::{Duration, Instant};

use common::{AgentSite, CentralSite, LaneSpec, STEP, Transport, clean_truck, reasons};
use serde_json::Value;

/// Waits until the agent has a replica loaded and fresh, and has measured its clock.
async fn ready(agent: &AgentSite) {
    let deadline = Instant::now() + STEP;
    loop {
        let lanes: Value = agent.get_json("/api/v1/lanes").await;
        let replica = &lanes[0]["replica"];
        let measured = agent.metric("aeogate_clock_offset_seconds").await.is_some();
        if replica["sequence"].as_u64().unwrap_or(0) > 0 && replica["stale"] == false && measured {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "agent never ready (replica {replica}, clock measured {measured})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until central's gate status carries a heartbeat with the agent's clock report
/// satisfying `f`; returns the report.
async fn central_clock(central: &CentralSite, f: impl Fn(&Value) -> bool) -> Value {
    let clock = |gate: &Value| gate["last_heartbeat"]["heartbeat"]["clock"].clone();
    let staff = central.staff().await;
    let gate = staff
        .wait_gate("central never showed the expected clock", |g| f(&clock(g)))
        .await;
    clock(&gate)
}

/// Central, started, in `dir/central`, and an agent in `dir/agent` with one manual lane
/// L1, keeping its journal 24 h, started with its clock moved by `fake` (libfaketime
/// syntax; `None`: the right clock) and [`ready`].
async fn central_and_ready_agent(
    dir: &std::path::Path,
    fake: Option<&str>,
) -> (CentralSite, AgentSite) {
    let mut central = CentralSite::create(&dir.join("central"), Transport::PlainHttp);
    central.start().await;
    let mut agent = AgentSite::beside(dir, &central, &[LaneSpec::manual("L1")], "24h");
    match fake {
        Some(offset) => agent.start_with_clock_offset(offset).await,
        None => agent.start().await,
    }
    ready(&agent).await;
    (central, agent)
}

/// Runs central and an agent whose clock is moved by `fake` (libfaketime syntax; `None`:
/// the right clock); returns the decision of one clean AEO truck, the offset the agent
/// measured (s) and the clock report central shows.
async fn truck_under(fake: Option<&str>) -> (Value, f64, Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut central, mut agent) = central_and_ready_agent(dir.path(), fake).await;
    let offset = agent
        .metric("aeogate_clock_offset_seconds")
        .await
        .expect("offset measured");
    let decision = clean_truck(&agent, 0).await;
    let trusted = fake.is_none();
    let clock = central_clock(&central, |c| c["trusted"] == trusted).await;
    eprintln!("clock moved by {fake:?}: agent measured {offset:.3} s; central shows {clock}");
    agent.terminate();
    central.stop();
    (decision, offset, clock)
}

fn assert_untrusted(decision: &Value, offset: f64, clock: &Value, fake_s: f64) {
    assert!(
        (offset - fake_s).abs() <= 1.0,
        "agent measured {offset} s, clock moved by {fake_s} s"
    );
    assert_eq!(decision["decision"], "STANDARD", "{decision}");
    let codes = reasons(decision);
    assert!(codes.contains(&"CLOCK_UNTRUSTED".to_owned()), "{codes:?}");
    assert!(
        !codes.contains(&"REPLICA_STALE".to_owned()),
        "the replica is fresh (measured monotonic, from signed data): {codes:?}"
    );
    let untrusted = decision["reasons"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["code"] == "CLOCK_UNTRUSTED"))
        .expect("the reason");
    let detail_ms: f64 = untrusted["detail"]["offset_ms"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("offset_ms in the reason's detail");
    assert!((detail_ms / 1000.0 - fake_s).abs() <= 1.0, "{untrusted}");
    let central_ms = clock["offset_ms"].as_f64().expect("offset at central");
    assert!(
        (central_ms / 1000.0 - fake_s).abs() <= 1.0,
        "central shows {central_ms} ms: {clock}"
    );
    assert_eq!(clock["trusted"], false, "{clock}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_ten_seconds_ahead_gives_no_fast_and_central_shows_the_offset() {
    let (decision, offset, clock) = truck_under(Some("+10s")).await;
    assert_untrusted(&decision, offset, &clock, 10.0);
}

// Behind by 10 s, central's signed as-of times are at most 10 s ahead of the agent's clock
// when they arrive (they were signed before), so the replica's "as-of ahead of the clock"
// rule (more than 10 s) does not fire: the reason is the clock's, not the replica's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_ten_seconds_behind_gives_no_fast_and_central_shows_the_offset() {
    let (decision, offset, clock) = truck_under(Some("-10s")).await;
    assert_untrusted(&decision, offset, &clock, -10.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_with_the_right_clock_gives_fast() {
    let (decision, offset, clock) = truck_under(None).await;
    assert!(offset.abs() < 1.0, "measured {offset} s without a fake");
    assert_eq!(decision["decision"], "FAST", "{decision}");
    assert!(!reasons(&decision).contains(&"CLOCK_UNTRUSTED".to_owned()));
    assert_eq!(clock["trusted"], true, "{clock}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_central_unreachable_remembers_an_untrusted_clock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut central, mut agent) = central_and_ready_agent(dir.path(), Some("+10s")).await;
    assert_eq!(agent.metric("aeogate_clock_trusted").await, Some(0.0));
    agent.terminate();
    // Central goes away; the agent comes back with the right clock but cannot check it.
    central.stop();
    agent.start().await;
    let d = clean_truck(&agent, 0).await;
    assert_eq!(d["decision"], "STANDARD", "{d}");
    assert!(reasons(&d).contains(&"CLOCK_UNTRUSTED".to_owned()), "{d}");
    // Central back: measured within bound, FAST again.
    central.start().await;
    let deadline = Instant::now() + STEP;
    while agent.metric("aeogate_clock_trusted").await != Some(1.0) {
        assert!(Instant::now() < deadline, "clock never trusted again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let d = clean_truck(&agent, 1).await;
    assert_eq!(d["decision"], "FAST", "{d}");
    agent.terminate();
    central.stop();
}

/// Central's alerts of `kind`.
async fn alerts_of(central: &CentralSite, kind: &str) -> Vec<Value> {
    let all = central.staff().await.get_json("/api/v1/alerts").await;
    all.as_array()
        .map(|a| a.iter().filter(|x| x["kind"] == kind).cloned().collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_set_back_between_runs_is_flagged_time_backwards_at_central() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut central, mut agent) = central_and_ready_agent(dir.path(), Some("+60s")).await;
    clean_truck(&agent, 0).await;
    let staff = central.staff().await;
    let what = "the first run's entries never reached central";
    staff.wait_gate_count("acked_through", 2, what).await;
    assert!(alerts_of(&central, "TIME_BACKWARDS").await.is_empty());
    agent.terminate();
    let before = staff.gate().await.expect("gate")["acked_through"]
        .as_u64()
        .unwrap_or(0);
    // The clock is corrected (set back 60 s) and the agent restarted.
    agent.start().await;
    clean_truck(&agent, 1).await;
    let deadline = Instant::now() + STEP;
    let flagged = loop {
        let found = alerts_of(&central, "TIME_BACKWARDS").await;
        if !found.is_empty() {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "no TIME_BACKWARDS alert at central"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(flagged.len(), 1, "one step back, one alert: {flagged:?}");
    let seq = flagged[0]["seq"].as_u64().expect("seq");
    assert!(
        seq > before,
        "the first entry of the second run: {flagged:?}"
    );
    assert!(
        flagged[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("went back")),
        "{flagged:?}"
    );
    agent.terminate();
    central.stop();
}
