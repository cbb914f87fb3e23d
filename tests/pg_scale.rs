//! Central on PostgreSQL at scale (docs/scale-out.md): the real `central` and `edge-agent`
//! binaries on loopback over a PostgreSQL cluster each test starts itself
//! (central/tests/common/pg.rs: `initdb` in a temporary folder, stopped by PID).
//!
//! - PostgreSQL stopped mid-traffic: central answers `/readyz` and ingest 503 with
//!   `Retry-After`, the agent keeps deciding, and when the database returns the backlog
//!   drains exactly once.
//! - Two central instances on one database, the agent configured with both
//!   (`central.urls`): one instance SIGKILLed and restarted 20 times under traffic; lost =
//!   duplicated = out of order = 0 per lane, and no chain alert although the gate's
//!   batches landed on both instances.
//! - The same batch sent to both instances at once is stored once.
//! - The primary lost with ingest under way and its synchronous standby promoted: central
//!   moves to it and every event it acknowledged is there.
//!
//! Each ends, like tests/fault_uplink.rs, by comparing the agent's journal with what
//! central stored.

mod common;
#[path = "../central/tests/common/pg.rs"]
#[allow(dead_code)]
mod pg;

use std::time::{Duration, Instant};

use common::{
    AgentSite, CentralLink, CentralSite, RunningBurst, STEP, Transport, assert_exactly_once,
    burst_to_end, http_client, ledger, stop_and_count, wait_count, wait_drained,
};
use pg::PgCluster;
use serde_json::Value;

fn manual_lanes() -> Vec<common::LaneSpec> {
    vec![
        common::LaneSpec::manual("L1"),
        common::LaneSpec::manual("L2"),
    ]
}

/// An agent (not started) in `dir/agent` with the manual lanes, sending over `link` and
/// keeping its journal 24 h.
fn manual_agent(dir: &std::path::Path, link: &CentralLink) -> AgentSite {
    AgentSite::create(&dir.join("agent"), link, &manual_lanes(), "24h")
}

fn lane_names() -> Vec<String> {
    vec!["L1".into(), "L2".into()]
}

/// `GET {base}/readyz`: status, `Retry-After` (seconds) and body.
async fn readyz(base: &str) -> (u16, Option<u64>, Value) {
    let r = http_client(None)
        .get(format!("{base}/readyz"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("readyz request");
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (status, retry, r.json().await.unwrap_or(Value::Null))
}

/// Decided transactions on both lanes, as the agent's console lists them.
/// Waits (at most [`STEP`]) until central at `base` is ready; failing says what it was
/// waiting `after`.
async fn wait_ready(base: &str, after: &str) {
    let deadline = Instant::now() + STEP;
    loop {
        let (status, _, body) = readyz(base).await;
        if status == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "central not ready {STEP:?} after {after}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Central on the PostgreSQL database at `url` and an agent with manual lanes beside it,
/// both under `dir` and started.
async fn sites_on(dir: &std::path::Path, url: &str) -> (CentralSite, AgentSite) {
    let mut central = CentralSite::create_on(&dir.join("central"), Transport::PlainHttp, Some(url));
    central.start().await;
    let mut agent = manual_agent(dir, &CentralLink::to(&central));
    agent.start().await;
    (central, agent)
}

async fn decided(agent: &AgentSite) -> usize {
    agent.decided("L1").await + agent.decided("L2").await
}

/// The agent's `aeogate_uplink_failovers_total`.
/// Waits (at most 30 s) until every instance's `/metrics` reports the programme roll-ups'
/// queue empty after its last fold and the instances together have folded batches since
/// they last started.
async fn rollups_folded(instances: &[&CentralSite]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut queued = Vec::new();
        let mut folded = 0.0;
        for c in instances {
            let text = match common::http_client(None)
                .get(format!("{}/metrics", c.url))
                .timeout(Duration::from_secs(5))
                .send()
                .await
            {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            queued.push(common::metric_value(
                &text,
                "central_programme_queue_batches",
            ));
            folded += common::metric_value(&text, "central_programme_folded_batches_total")
                .unwrap_or(0.0);
        }
        if folded > 0.0 && queued.iter().all(|q| *q == Some(0.0)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the roll-ups' queue did not empty: queued {queued:?}, folded {folded}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn failovers(agent: &AgentSite) -> f64 {
    let text = agent.metrics().await.expect("agent metrics");
    common::metric_value(&text, "aeogate_uplink_failovers_total").unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_stopped_mid_traffic_makes_central_unready_while_lanes_decide_and_nothing_is_lost()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut db = PgCluster::start();
    let url = db.create_database("central");
    let (mut central, mut agent) = sites_on(dir.path(), &url).await;
    let (status, _, body) = readyz(&central.url).await;
    assert_eq!(
        (status, &body["ready"]),
        (200, &Value::Bool(true)),
        "{body}"
    );

    let load = RunningBurst::spawn(agent.base.clone(), lane_names(), 2, 1_000_000);
    let out = load.out.clone();
    wait_count(&out, 40).await;

    // The database goes away under traffic.
    db.stop();
    let (status, retry, body) = readyz(&central.url).await;
    assert_eq!(status, 503, "readyz while PostgreSQL is down: {body}");
    assert_eq!(body["ready"], Value::Bool(false), "{body}");
    assert!(retry.is_some_and(|s| s > 0), "readyz carries Retry-After");
    let ingest = http_client(None)
        .post(format!(
            "{}/api/v1/agents/{}/events",
            central.url,
            common::GATE
        ))
        .bearer_auth(&central.token)
        .json(&serde_json::json!({}))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("ingest request");
    assert_eq!(ingest.status(), 503, "ingest while PostgreSQL is down");
    assert!(
        ingest
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|s| s > 0),
        "ingest's 503 carries Retry-After"
    );
    // The lanes keep deciding and the console keeps journaling.
    let (decided_then, count_then) = (
        decided(&agent).await,
        out.count.load(std::sync::atomic::Ordering::Relaxed),
    );
    wait_count(&out, count_then + 60).await;
    let deadline = Instant::now() + STEP;
    while decided(&agent).await <= decided_then {
        assert!(
            Instant::now() < deadline,
            "no lane decided while PostgreSQL was down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The database returns: central is ready again and the backlog drains exactly once.
    db.restart();
    wait_ready(&central.url, "PostgreSQL returned").await;
    wait_count(&out, count_then + 100).await;
    load.stop().await;
    wait_drained(&central).await;
    let (counts, journal) = stop_and_count(&mut agent, &mut central);
    assert_exactly_once("PostgreSQL outage", &counts, &journal, &out.acked());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_database_one_sigkilled_twenty_times_lose_and_duplicate_nothing() {
    const CYCLES: u64 = 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = PgCluster::start();
    let url = db.create_database("central");
    let mut a = CentralSite::create_on(&dir.path().join("a"), Transport::PlainHttp, Some(&url));
    let mut b = a.instance(&dir.path().join("b"));
    a.start().await;
    b.start().await;
    let mut agent = manual_agent(dir.path(), &CentralLink::to(&a).or(&b));
    agent.start().await;
    let load = RunningBurst::spawn(agent.base.clone(), lane_names(), 2, 1_000_000);
    let out = load.out.clone();
    let started = Instant::now();
    let mut target = 0;
    for cycle in 0..CYCLES {
        // Let some batches through, then kill one instance with ingest under way; the
        // agent's batch in flight to it fails and goes to the other.
        target += 12 + (cycle % 4) * 5;
        wait_count(&out, target).await;
        let victim = if cycle % 2 == 0 { &mut a } else { &mut b };
        victim.kill();
        tokio::time::sleep(Duration::from_millis(100 + (cycle % 3) * 150)).await;
        victim.start().await;
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(240),
        "{CYCLES} kill cycles took {took:?}"
    );
    load.stop().await;
    wait_drained(&b).await;
    rollups_folded(&[&a, &b]).await;
    let moved = failovers(&agent).await;
    assert!(
        moved >= 1.0,
        "the agent moved to the other instance at least once ({moved})"
    );
    agent.terminate();
    a.stop();
    b.stop();
    let (counts, journal) = ledger(&agent, &a.open());
    assert_exactly_once(
        &format!("two instances, one SIGKILLed × {CYCLES} ({took:?}, {moved} failovers)"),
        &counts,
        &journal,
        &out.acked(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_batch_sent_to_two_instances_at_once_is_stored_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = PgCluster::start();
    let url = db.create_database("central");
    let mut a = CentralSite::create_on(&dir.path().join("a"), Transport::PlainHttp, Some(&url));
    let mut b = a.instance(&dir.path().join("b"));
    // The agent journals with no central reachable (a port nobody listens on), so its
    // entries are still to be delivered when it stops.
    let nowhere = format!("http://127.0.0.1:{}", common::free_port());
    let mut agent = manual_agent(dir.path(), &CentralLink::to(&a).via(&nowhere));
    agent.start().await;
    let out = burst_to_end(agent.base.clone(), lane_names(), 2, 20).await;
    agent.terminate();
    let journal = agent.journal();
    assert!(
        journal.len() >= 40 && journal.len() <= 1_000,
        "the burst was journaled, in one batch's size: {}",
        journal.len()
    );
    a.start().await;
    b.start().await;

    // Four copies of one batch, two to each instance, all at once.
    let batch = protocol::schema::IngestBatch {
        v: protocol::schema::SCHEMA_VERSION,
        batch_id: uuid::Uuid::now_v7(),
        agent: protocol::schema::GateId::parse(common::GATE).expect("gate"),
        entries: journal.clone(),
    };
    let http = http_client(None);
    let sends: Vec<_> = [&a, &b, &a, &b]
        .map(|site| {
            tokio::spawn(
                http.post(format!(
                    "{}/api/v1/agents/{}/events",
                    site.url,
                    common::GATE
                ))
                .bearer_auth(&site.token)
                .json(&batch)
                .timeout(STEP)
                .send(),
            )
        })
        .into_iter()
        .collect();
    let mut stored = 0;
    let mut duplicates = 0;
    for send in sends {
        let r = send.await.expect("send task").expect("ingest request");
        assert_eq!(r.status(), 200, "every copy is answered");
        let ack: protocol::schema::IngestAck = r.json().await.expect("acknowledgement");
        assert_eq!(ack.acked_through, journal.len() as u64, "{ack:?}");
        stored += ack.stored;
        duplicates += ack.duplicates;
    }
    assert_eq!(
        (stored, duplicates),
        (journal.len() as u64, 3 * journal.len() as u64),
        "one copy stored, three recognised as resends"
    );
    a.stop();
    b.stop();
    let (counts, _) = ledger(&agent, &a.open());
    assert_exactly_once("one batch, four copies", &counts, &journal, &out.acked());
}

/// The database machine is lost: the primary is SIGKILLed with ingest under way and its
/// synchronous standby promoted. Central, configured with both hosts
/// (`target_session_attrs=read-write`), reconnects to the promoted standby, and the ledger
/// there shows every event the agent journaled stored exactly once. Since the agent never
/// sends an acknowledged event again, an event central acknowledged before the loss that
/// had not reached the standby would show as lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_a_promoted_synchronous_standby_keeps_every_acknowledged_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let mut primary = PgCluster::start_with(true);
    primary.create_database("central");
    let standby = primary.sync_standby();
    eprintln!(
        "primary and synchronous standby up in {:?}",
        started.elapsed()
    );
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/central?target_session_attrs=read-write",
        primary.port(),
        standby.port()
    );
    let (mut central, mut agent) = sites_on(dir.path(), &url).await;
    let load = RunningBurst::spawn(agent.base.clone(), lane_names(), 2, 1_000_000);
    let out = load.out.clone();
    wait_count(&out, 60).await;
    // Central has acknowledged events before the primary is lost.
    let staff = central.staff().await;
    let what = "central stored no events";
    staff.wait_gate_count("events_stored", 40, what).await;
    eprintln!("traffic under way at {:?}", started.elapsed());
    primary.kill();
    standby.promote();
    wait_ready(&central.url, "the standby was promoted").await;
    eprintln!(
        "central ready on the promoted standby at {:?}",
        started.elapsed()
    );
    let count_then = out.count.load(std::sync::atomic::Ordering::Relaxed);
    wait_count(&out, count_then + 60).await;
    load.stop().await;
    wait_drained(&central).await;
    let (counts, journal) = stop_and_count(&mut agent, &mut central);
    assert_exactly_once(
        "failover to a promoted synchronous standby",
        &counts,
        &journal,
        &out.acked(),
    );
    drop(standby);
}
