//! Registry replication under attack and isolation (docs/delivery.md, "How the fault
//! tests check the contract"): the real `edge-agent` binary replicating from a stand-in
//! central written here (a minimal HTTP server on loopback that signs with a test key,
//! takes the agent's event batches and counts the integrity alerts in them).
//!
//! - forged, modified, replayed, gapped and rolled-back batches are each refused, the
//!   replica stays as it was, and an `INTEGRITY_ALERT` reaches central for each;
//! - a replica past its staleness bound never yields FAST (`REPLICA_STALE`), and FAST
//!   comes back once a signed statement confirms the replica current again;
//! - freshness comes only from signed data: a central answering `204` to every poll, or
//!   replaying an old signed "no changes" statement, lets the replica go stale, and the
//!   agent polls it at most once a second;
//! - a run with the clock two days ahead (Debian's libfaketime) leaves no freshness
//!   behind: the next run, with the right clock and central unreachable, reads stale.

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aeogate::bench::data;
use common::stand_in::{refused_batches, store_batch};
use common::{
    AgentSite, CentralLink, GATE, LaneSpec, Request, STEP, clean_truck, json_response, reasons,
    response, serve,
};
use ed25519_dalek::{Signer as _, SigningKey};
use edge_agent::decider::ReplicaView as _;
use protocol::schema::{AeoStatus, Change, ChangeBatch, IngestBatch, JournalEntry, SignedEnvelope};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "stand-in-central-agent-token";
const KEY_ID: &str = "registry-test";

fn registry_key() -> SigningKey {
    SigningKey::from_bytes(&[42u8; 32])
}

fn sign(batch: &ChangeBatch, key: &SigningKey) -> SignedEnvelope {
    let payload = serde_json::to_string(batch).expect("JSON");
    SignedEnvelope {
        key_id: KEY_ID.into(),
        signature: hex::encode(key.sign(payload.as_bytes()).to_bytes()),
        payload,
    }
}

/// The registry the agent should end up with: MRA, operator 0, consignment 0 (seq 1..=3).
fn snapshot(as_of: jiff::Timestamp) -> ChangeBatch {
    let mut b = data::snapshot(1, 1).expect("snapshot");
    b.as_of = as_of;
    b
}

fn delta(after_seq: u64, changes: Vec<Change>) -> ChangeBatch {
    let mut b = data::batch(false, after_seq, changes);
    b.as_of = jiff::Timestamp::now();
    b
}

/// A change that, if applied, would be visible: consignment 0 disappears.
fn remove_consignment_0() -> Vec<Change> {
    vec![Change::RemoveConsignment {
        id: data::consignment(0, 1).expect("consignment").id,
    }]
}

/// The stand-in central's state.
#[derive(Default)]
struct Stand {
    stored: BTreeMap<u64, JournalEntry>,
    snapshot: Option<SignedEnvelope>,
    changes: VecDeque<SignedEnvelope>,
    /// Registry endpoints answer 503 (central unreachable for replication).
    registry_down: bool,
    /// With nothing queued, answer `204` at once (no signed statement): what an older
    /// central or a man in the middle does.
    unsigned_empty: bool,
    /// With nothing queued, answer this (an old signed statement) instead of a new one.
    replay: Option<SignedEnvelope>,
    /// The last "no changes" statement signed.
    last_statement: Option<SignedEnvelope>,
    /// Signed statements answered.
    statements: u64,
    /// Requests to the changes endpoint.
    changes_requests: u64,
}

type Shared = Arc<Mutex<Stand>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Stand> {
    s.lock().expect("stand-in state")
}

async fn handle(s: Shared, req: Request) -> Vec<u8> {
    if req.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
        return json_response(401, &json!({"error": "bad token"}));
    }
    let path = req.target.split('?').next().unwrap_or_default();
    match (req.method.as_str(), path) {
        ("POST", p) if p == format!("/api/v1/agents/{GATE}/events") => {
            let Ok(batch) = serde_json::from_slice::<IngestBatch>(&req.body) else {
                return json_response(400, &json!({"error": "not an IngestBatch"}));
            };
            json_response(200, &store_batch(&mut lock(&s).stored, batch.entries))
        }
        ("POST", p) if p == format!("/api/v1/agents/{GATE}/heartbeat") => {
            response(204, "text/plain", b"")
        }
        ("GET", "/api/v1/registry/snapshot") => {
            let st = lock(&s);
            match (&st.snapshot, st.registry_down) {
                (Some(env), false) => json_response(200, env),
                _ => json_response(503, &json!({"error": "registry unavailable"})),
            }
        }
        ("GET", "/api/v1/registry/changes") => {
            let (next, unsigned, replay) = {
                let mut st = lock(&s);
                st.changes_requests += 1;
                if st.registry_down {
                    return json_response(503, &json!({"error": "registry unavailable"}));
                }
                (st.changes.pop_front(), st.unsigned_empty, st.replay.clone())
            };
            match (next, unsigned, replay) {
                (Some(env), ..) => json_response(200, &env),
                (None, true, _) => response(204, "text/plain", b""),
                (None, false, Some(old)) => json_response(200, &old),
                (None, false, None) => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    // Central's signed "no changes after `after` as of now".
                    let after: u64 = req
                        .target
                        .split(['?', '&'])
                        .find_map(|p| p.strip_prefix("after="))
                        .and_then(|a| a.parse().ok())
                        .unwrap_or(0);
                    let mut b = data::batch(false, after, Vec::new());
                    b.last_seq = after;
                    b.as_of = jiff::Timestamp::now();
                    let env = sign(&b, &registry_key());
                    let mut st = lock(&s);
                    st.last_statement = Some(env.clone());
                    st.statements += 1;
                    json_response(200, &env)
                }
            }
        }
        _ => json_response(404, &json!({"error": "no such route"})),
    }
}

async fn stand_in(state: Shared, stop: CancellationToken) -> CentralLink {
    let addr = serve(
        Arc::new(move |req| Box::pin(handle(state.clone(), req))),
        stop,
    )
    .await;
    CentralLink {
        url: format!("http://{addr}"),
        more: Vec::new(),
        token: TOKEN.into(),
        key_id: KEY_ID.into(),
        public_key: hex::encode(registry_key().verifying_key().to_bytes()),
        ca_cert: None,
    }
}

/// The agent's replica status as its console shows it.
async fn replica(agent: &AgentSite) -> Value {
    let lanes: Value = agent.get_json("/api/v1/lanes").await;
    lanes[0]["replica"].clone()
}

async fn wait_replica(agent: &AgentSite, what: &str, f: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + STEP;
    loop {
        let r = replica(agent).await;
        if f(&r) {
            return;
        }
        assert!(Instant::now() < deadline, "replica never {what}: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The refused-batch alerts central has received.
fn refusals(s: &Shared) -> Vec<String> {
    refused_batches(&lock(s).stored)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_modified_replayed_gapped_and_rolled_back_batches_are_refused_and_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = registry_key();
    let state: Shared = Arc::default();
    {
        let mut st = lock(&state);
        st.snapshot = Some(sign(&snapshot(jiff::Timestamp::now()), &key));
        // A good delta: consignment 1 arrives (seq 4).
        st.changes.push_back(sign(
            &delta(
                3,
                vec![Change::UpsertConsignment {
                    consignment: data::consignment(1, 1).expect("consignment"),
                }],
            ),
            &key,
        ));
    }
    let stop = CancellationToken::new();
    let link = stand_in(state.clone(), stop.clone()).await;
    let mut agent = AgentSite::create(
        &dir.path().join("agent"),
        &link,
        &[LaneSpec::manual("L1")],
        "24h",
    );
    agent.start().await;
    wait_replica(&agent, "reached seq 4", |r| r["sequence"] == 4).await;

    {
        let mut st = lock(&state);
        // Forged: a key that is not the pinned one, under the pinned key's id.
        st.changes.push_back(sign(
            &delta(4, remove_consignment_0()),
            &SigningKey::from_bytes(&[7u8; 32]),
        ));
        // Modified: signed by the right key, then altered on the way.
        let mut modified = sign(&delta(4, remove_consignment_0()), &key);
        modified.payload = modified.payload.replace("DECL0000000000", "DECL0000000001");
        st.changes.push_back(modified);
        // Replayed: the delta already applied (3 → 4), correctly signed.
        st.changes.push_back(sign(
            &delta(
                3,
                vec![Change::UpsertConsignment {
                    consignment: data::consignment(1, 1).expect("consignment"),
                }],
            ),
            &key,
        ));
        // Rolled back: a batch ending below the replica.
        st.changes
            .push_back(sign(&delta(1, remove_consignment_0()), &key));
        // Gapped: changes 5 and 6 never arrive. The agent then asks for a snapshot, and
        // central offers one older than the replica: a rollback too.
        st.changes
            .push_back(sign(&delta(6, remove_consignment_0()), &key));
        let mut old = data::batch(true, 0, vec![Change::UpsertMra { mra: data::mra() }]);
        old.as_of = jiff::Timestamp::now();
        st.snapshot = Some(sign(&old, &key));
    }

    let deadline = Instant::now() + Duration::from_secs(45);
    while refusals(&state).len() < 6 {
        assert!(
            Instant::now() < deadline,
            "not every refusal reached central: {:#?}",
            refusals(&state)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(replica(&agent).await["sequence"], 4, "replica unchanged");
    agent.terminate();
    stop.cancel();

    let details = refusals(&state);
    let with = |s: &str| details.iter().filter(|d| d.contains(s)).count();
    assert_eq!(
        with("does not verify"),
        2,
        "forged and modified: {details:#?}"
    );
    assert_eq!(with("replay"), 1, "replayed: {details:#?}");
    assert_eq!(with("gap"), 1, "gapped: {details:#?}");
    assert_eq!(
        with("rollback"),
        2,
        "rolled back (delta and snapshot): {details:#?}"
    );

    // The replica is exactly what the good batches made it.
    let journal = agent.journal();
    let store = agent.store();
    assert_eq!(store.replica_meta().sequence, 4);
    let view = store.replica_view().expect("replica view");
    assert!(
        view.consignment_for(&data::container(0).expect("c0"))
            .is_some(),
        "consignment 0 kept"
    );
    assert!(
        view.consignment_for(&data::container(1).expect("c1"))
            .is_some(),
        "consignment 1 kept"
    );
    let op = view
        .operator(&data::operator_id(0).expect("op0"))
        .expect("operator 0 kept");
    assert_eq!(op.status, AeoStatus::Active);

    // Every journaled entry (the alerts among them) reached the stand-in central.
    let stored = lock(&state).stored.clone();
    let missing: Vec<u64> = journal
        .iter()
        .filter(|e| stored.get(&e.seq).is_none_or(|s| s.hash != e.hash))
        .map(|e| e.seq)
        .collect();
    assert!(
        missing.is_empty(),
        "journaled but not at central: {missing:?}"
    );
}
/// A clean AEO truck after `decided_before` decisions, on the stale replica, gets STANDARD
/// with `REPLICA_STALE` among its reasons.
async fn stale_gives_standard(agent: &AgentSite, decided_before: usize) {
    let d = clean_truck(agent, decided_before).await;
    assert_eq!(d["decision"], "STANDARD", "stale replica: {d}");
    assert!(reasons(&d).contains(&"REPLICA_STALE".to_owned()), "{d}");
}

/// Central reachable again for replication: the replica turns fresh, and a clean AEO truck
/// after `decided_before` decisions gets FAST.
async fn central_back_gives_fast(agent: &AgentSite, state: &Shared, decided_before: usize) {
    lock(state).registry_down = false;
    wait_replica(agent, "fresh again", |r| r["stale"] == false).await;
    let d = clean_truck(agent, decided_before).await;
    assert_eq!(d["decision"], "FAST", "fresh again: {d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_past_its_staleness_bound_never_gives_fast() {
    let (_dir, mut agent, state, stop) = agent_on_stand_in("2s").await;
    agent.start().await;
    wait_replica(&agent, "loaded and fresh", |r| {
        r["sequence"] == 3 && r["stale"] == false
    })
    .await;

    let d = clean_truck(&agent, 0).await;
    assert_eq!(d["decision"], "FAST", "fresh replica, clean AEO truck: {d}");

    // Central unreachable for replication; the 2 s bound passes.
    lock(&state).registry_down = true;
    wait_replica(&agent, "stale", |r| r["stale"] == true).await;
    stale_gives_standard(&agent, 1).await;

    // Central back: a poll confirms the replica current, FAST returns.
    central_back_gives_fast(&agent, &state, 2).await;
    agent.terminate();
    stop.cancel();
}

/// The agent's directory (held while the agent runs), an agent replicating from a stand-in
/// central, the stand-in's state and its stop token.
type OnStandIn = (tempfile::TempDir, AgentSite, Shared, CancellationToken);

/// An agent (staleness bound `bound`, not started) replicating from a stand-in central
/// that serves the test snapshot.
async fn agent_on_stand_in(bound: &str) -> OnStandIn {
    let dir = tempfile::tempdir().expect("tempdir");
    let state: Shared = Arc::default();
    lock(&state).snapshot = Some(sign(&snapshot(jiff::Timestamp::now()), &registry_key()));
    let stop = CancellationToken::new();
    let link = stand_in(state.clone(), stop.clone()).await;
    let agent = AgentSite::create(
        &dir.path().join("agent"),
        &link,
        &[LaneSpec::manual("L1")],
        bound,
    );
    (dir, agent, state, stop)
}

/// A fresh agent (staleness bound `bound`) replicating from a stand-in central with the
/// test snapshot; returns once a signed statement has refreshed the replica.
async fn fresh_agent(bound: &str) -> OnStandIn {
    let (dir, mut agent, state, stop) = agent_on_stand_in(bound).await;
    agent.start().await;
    wait_replica(&agent, "loaded and fresh", |r| {
        r["sequence"] == 3 && r["stale"] == false
    })
    .await;
    let deadline = Instant::now() + STEP;
    while lock(&state).statements < 2 {
        assert!(Instant::now() < deadline, "no signed statements served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (dir, agent, state, stop)
}

/// Waits until the console reads the replica stale; returns how long that took.
async fn time_to_stale(agent: &AgentSite) -> Duration {
    let started = Instant::now();
    wait_replica(agent, "stale", |r| r["stale"] == true).await;
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_central_answering_204_forever_does_not_keep_the_replica_fresh() {
    let (_dir, mut agent, state, stop) = fresh_agent("3s").await;
    let before = lock(&state).changes_requests;
    lock(&state).unsigned_empty = true;
    // Within the 3 s bound, plus the last statement's age and the console's polling.
    let took = time_to_stale(&agent).await;
    assert!(took <= Duration::from_secs(8), "stale only after {took:?}");
    let d = clean_truck(&agent, 0).await;
    assert_ne!(d["decision"], "FAST", "unsigned answers: {d}");
    assert!(reasons(&d).contains(&"REPLICA_STALE".to_owned()), "{d}");
    // An endpoint answering at once is polled at most once a second (backing off).
    let window = Instant::now();
    let at_start = lock(&state).changes_requests;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let polls = lock(&state).changes_requests - at_start;
    let total = lock(&state).changes_requests - before;
    let secs = (Instant::now() - window).as_secs() + 1;
    assert!(
        polls <= secs,
        "{polls} polls in {secs} s ({total} since 204s began)"
    );
    agent.terminate();
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_signed_statement_does_not_refresh_the_replica() {
    let (_dir, mut agent, state, stop) = fresh_agent("3s").await;
    {
        // From now on every poll gets the last genuine statement again.
        let mut st = lock(&state);
        st.replay = st.last_statement.clone();
        assert!(st.replay.is_some());
    }
    let took = time_to_stale(&agent).await;
    assert!(took <= Duration::from_secs(8), "stale only after {took:?}");
    let d = clean_truck(&agent, 0).await;
    assert_ne!(d["decision"], "FAST", "replayed statement: {d}");
    assert!(reasons(&d).contains(&"REPLICA_STALE".to_owned()), "{d}");
    // The replay is refused and reported to central.
    let deadline = Instant::now() + STEP;
    while !refusals(&state).iter().any(|r| r.contains("not newer")) {
        assert!(
            Instant::now() < deadline,
            "no refusal of the replay reached central: {:?}",
            refusals(&state)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A new statement refreshes it again.
    lock(&state).replay = None;
    wait_replica(&agent, "fresh again", |r| r["stale"] == false).await;
    agent.terminate();
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_the_clock_two_days_ahead_leaves_no_freshness_behind() {
    let (_dir, mut agent, state, stop) = agent_on_stand_in("3s").await;
    // First run: the gate's clock two days ahead. It loads the replica and takes signed
    // statements (its console session has expired by its clock, so the stand-in counts).
    agent.start_with_clock_offset("+2d").await;
    let deadline = Instant::now() + STEP;
    while lock(&state).statements < 3 {
        assert!(Instant::now() < deadline, "no statements taken under +2d");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agent.terminate();
    {
        let meta = agent.store().replica_meta();
        assert_eq!(meta.sequence, 3, "{meta:?}");
        let ahead = meta
            .last_sync
            .is_some_and(|t| t > jiff::Timestamp::now() + jiff::SignedDuration::from_hours(40));
        assert!(ahead, "the first run recorded its clock's time: {meta:?}");
    }

    // Second run: the right clock, central unreachable for replication.
    lock(&state).registry_down = true;
    agent.start().await;
    let took = time_to_stale(&agent).await;
    assert!(took <= Duration::from_secs(8), "stale only after {took:?}");
    let r = replica(&agent).await;
    assert_eq!(r["clock_ahead"], true, "{r}");
    stale_gives_standard(&agent, 0).await;

    // Central back: a new signed statement makes it fresh, and FAST returns.
    central_back_gives_fast(&agent, &state, 1).await;
    agent.terminate();
    stop.cancel();
}
