//! Uplink and replication against a stand-in central on 127.0.0.1:0 that follows
//! docs/delivery.md: contiguous `acked_through`, bearer tokens, signed registry batches.

mod support;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ed25519_dalek::{Signer as _, SigningKey};
use edge_agent::config::Config;
use edge_agent::runtime::{AgentHandle, start};
use edge_agent::store::Store;
use jiff::Timestamp;
use protocol::schema::{
    ChangeBatch, EventBody, Heartbeat, IngestBatch, JournalEntry, SignedEnvelope,
};
use support::stand_in::{refused_batches, store_batch};
use support::{agent_toml, gate_g1_lane_l1};
use tokio_util::sync::CancellationToken;

const STEP: Duration = Duration::from_secs(10);
const TOKEN: &str = "agent-token-for-tests";

#[derive(Default)]
struct Central {
    stored: BTreeMap<u64, JournalEntry>,
    fail_next: usize,
    rejected_while_failing: usize,
    heartbeats: Vec<Heartbeat>,
    snapshot: Option<SignedEnvelope>,
    changes: VecDeque<SignedEnvelope>,
    /// Hold each batch until one that arrived after it has been answered (at most
    /// [`HOLD`]), so batches sent at once are stored out of order.
    hold: bool,
    /// Batches received so far.
    received: usize,
    /// Arrival numbers of the batches answered so far.
    answered: Vec<usize>,
    /// Times each entry was received.
    receipts: BTreeMap<u64, usize>,
    /// (first seq of a batch, first seq of the batch that arrived while it was held).
    overtaken: Vec<(u64, u64)>,
    /// When each batch arrived.
    arrivals: Vec<std::time::Instant>,
}

/// Longest a held batch waits for a later one to be answered.
const HOLD: Duration = Duration::from_millis(300);

type Shared = Arc<Mutex<Central>>;

fn authorised(h: &HeaderMap) -> bool {
    h.get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {TOKEN}"))
}

async fn events(
    State(c): State<Shared>,
    Path(gate): Path<String>,
    h: HeaderMap,
    Json(b): Json<IngestBatch>,
) -> Response {
    if !authorised(&h) || gate != "G1" {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let first = b.entries.first().map_or(0, |e| e.seq);
    let (hold, arrival) = {
        let mut c = c.lock().expect("lock");
        c.received += 1;
        c.arrivals.push(std::time::Instant::now());
        for e in &b.entries {
            *c.receipts.entry(e.seq).or_default() += 1;
        }
        (c.hold, c.received)
    };
    if hold {
        let start = tokio::time::Instant::now();
        loop {
            let (overtaken, later_arrived) = {
                let c = c.lock().expect("lock");
                (
                    c.answered.iter().any(|a| *a > arrival),
                    c.received > arrival,
                )
            };
            // A batch with a later one beside it waits for that one to be answered.
            let limit = if later_arrived { HOLD * 3 } else { HOLD };
            if overtaken || start.elapsed() >= limit {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let mut c = c.lock().expect("lock");
    if hold && c.answered.iter().any(|a| *a > arrival) {
        // A batch that arrived while this one waited was stored first.
        let later = c.stored.keys().next_back().copied().unwrap_or(0);
        c.overtaken.push((first, later));
    }
    c.answered.push(arrival);
    if c.fail_next > 0 {
        c.fail_next -= 1;
        c.rejected_while_failing += 1;
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"error": "maintenance"})),
        )
            .into_response();
    }
    Json(store_batch(&mut c.stored, b.entries)).into_response()
}

async fn heartbeat(State(c): State<Shared>, Json(hb): Json<Heartbeat>) -> StatusCode {
    c.lock().expect("lock").heartbeats.push(hb);
    StatusCode::NO_CONTENT
}

async fn snapshot(State(c): State<Shared>) -> Response {
    match c.lock().expect("lock").snapshot.clone() {
        Some(s) => Json(s).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn changes(
    State(c): State<Shared>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let next = c.lock().expect("lock").changes.pop_front();
    match next {
        Some(s) => Json(s).into_response(),
        None => {
            // Nothing queued: central's signed "no changes after `after` as of now".
            tokio::time::sleep(Duration::from_millis(200)).await;
            let after: u64 = q.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
            let mut statement = batch(false, after, after);
            statement.changes.clear();
            Json(sign(&statement, &signing_key())).into_response()
        }
    }
}

async fn central(state: Shared) -> String {
    let app = Router::new()
        .route("/api/v1/agents/{gate}/events", post(events))
        .route("/api/v1/agents/{gate}/heartbeat", post(heartbeat))
        .route("/api/v1/registry/snapshot", get(snapshot))
        .route("/api/v1/registry/changes", get(changes))
        .with_state(state);
    support::serve(app).await
}

fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[42u8; 32])
}

fn sign(batch: &ChangeBatch, key: &SigningKey) -> SignedEnvelope {
    let payload = serde_json::to_string(batch).expect("json");
    SignedEnvelope {
        key_id: "registry-test".into(),
        signature: hex::encode(key.sign(payload.as_bytes()).to_bytes()),
        payload,
    }
}

/// A snapshot (with no changes) or a delta removing the consignments of `after + 1..=last`.
fn batch(snapshot: bool, after: u64, last: u64) -> ChangeBatch {
    let seqs = (after + 1..=last).filter(|_| !snapshot);
    support::change_batch::removals(snapshot, after, last, seqs, Timestamp::now())
}

fn config(dir: &std::path::Path, url: &str) -> Config {
    Config::from_toml_str(&config_text(dir, url), "test.toml").expect("valid config")
}

fn config_text(dir: &std::path::Path, url: &str) -> String {
    let pk = hex::encode(signing_key().verifying_key().to_bytes());
    let settings = "uplink_batch = 3\nheartbeat_every = \"200ms\"\npoll_wait = \"1s\"";
    format!(
        "{}{}{}",
        gate_g1_lane_l1(),
        agent_toml::central(url, TOKEN, settings, "registry-test", &pk),
        agent_toml::store_policy_console(dir, "uplink-test-random-key", "127.0.0.1:0"),
    )
}

async fn started(dir: &std::path::Path, state: &Shared) -> (AgentHandle, CancellationToken) {
    let url = central(state.clone()).await;
    let shutdown = CancellationToken::new();
    let h = start(config(dir, &url), shutdown.clone())
        .await
        .expect("agent starts");
    (h, shutdown)
}

/// A fresh stand-in central and an agent started against it as [`started`] (in a
/// directory of its own), once central has acknowledged what the agent journaled at start.
struct CaughtUp {
    /// Holds the agent's files until the test ends.
    _dir: tempfile::TempDir,
    state: Shared,
    h: AgentHandle,
    shutdown: CancellationToken,
    store: Store,
}

impl CaughtUp {
    async fn stop(self) {
        support::stop_agent(&self.shutdown, self.h.join, STEP).await;
    }
}

async fn caught_up() -> CaughtUp {
    let dir = tempfile::tempdir().expect("tempdir");
    let state: Shared = Arc::default();
    let (h, shutdown) = started(dir.path(), &state).await;
    let store = h.shared.store.clone();
    eventually("the start's entries acknowledged", || {
        store.acked_seq() == store.journal_head()
    })
    .await;
    CaughtUp {
        _dir: dir,
        state,
        h,
        shutdown,
        store,
    }
}

async fn eventually(what: &str, f: impl FnMut() -> bool) {
    support::eventually(what, STEP, f).await;
}

fn alert(n: usize) -> EventBody {
    EventBody::IntegrityAlert {
        what: "TEST".into(),
        detail: format!("entry {n}"),
    }
}

/// Journals alerts numbered `n` through the agent's journal.
async fn journal_alerts(h: &AgentHandle, n: std::ops::Range<usize>) {
    h.shared
        .journal
        .append(n.map(alert).collect())
        .await
        .expect("journal");
}

/// Central stored the entries 1 to `head`, and only them.
fn assert_stored_in_order(c: &Central, head: u64) {
    let seqs: Vec<u64> = c.stored.keys().copied().collect();
    assert_eq!(seqs, (1..=head).collect::<Vec<_>>());
}

/// The entries central received more than once, with their counts.
fn resent(c: &Central) -> Vec<(&u64, &usize)> {
    c.receipts.iter().filter(|(_, n)| **n > 1).collect()
}

#[tokio::test]
async fn uplink_retries_and_advances_the_cursor_only_on_acknowledgement() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state: Shared = Arc::default();
    state.lock().expect("lock").fail_next = 2;
    let (h, shutdown) = started(dir.path(), &state).await;
    journal_alerts(&h, 0..7).await;

    eventually("central refused twice", || {
        state.lock().expect("lock").rejected_while_failing == 2
    })
    .await;
    let store = h.shared.store.clone();
    eventually("all 7 entries at central and acknowledged", || {
        state.lock().expect("lock").stored.len() >= 7 && store.acked_seq() >= 7
    })
    .await;
    assert_eq!(
        store.acked_seq(),
        store.journal_head(),
        "cursor at the head, never beyond"
    );
    {
        let c = state.lock().expect("lock");
        assert_stored_in_order(&c, store.journal_head());
        assert!(
            c.heartbeats
                .iter()
                .any(|hb| hb.journal_head >= 7 && hb.agent.as_str() == "G1")
        );
    }
    support::stop_agent(&shutdown, h.join, STEP).await;
}

#[tokio::test]
async fn a_backlog_goes_two_batches_at_a_time_and_an_overtaken_batch_still_moves_the_cursor_once() {
    // Whatever the agent journaled at start goes first, one batch at a time.
    let a = caught_up().await;
    a.state.lock().expect("lock").hold = true;
    // 24 entries, batches of 3: after the first batch of the round, two go at once.
    journal_alerts(&a.h, 0..24).await;
    eventually("all entries at central and acknowledged", || {
        a.store.acked_seq() == a.store.journal_head() && a.store.journal_head() > 0
    })
    .await;
    {
        let c = a.state.lock().expect("lock");
        assert_stored_in_order(&c, a.store.journal_head());
        assert!(
            !c.overtaken.is_empty(),
            "some batch arrived while the one before it was still in flight ({} batches, \
             receipts {:?})",
            c.received,
            c.receipts
        );
        assert!(
            c.overtaken.iter().any(|(held, later)| later > held),
            "a later window was stored before the earlier one: {:?}",
            c.overtaken
        );
        let resent = resent(&c);
        assert!(
            resent.is_empty(),
            "each entry sent once (an overtaken batch's answer does not make the agent send \
             again): {resent:?}"
        );
    }
    a.stop().await;
}

#[tokio::test]
async fn the_drain_waits_while_a_lane_write_is_pending_and_still_drains_everything_once() {
    let a = caught_up().await;
    let lanes = a.h.shared.journal.writer().lane_work().clone();
    // A lane's write queued and not answered, for the whole drain.
    let pending = lanes.begin();
    let before = a.state.lock().expect("lock").received;
    let appended_at = std::time::Instant::now();
    journal_alerts(&a.h, 0..24).await;
    assert_eq!(
        lanes.pending(),
        1,
        "the append was answered, the lane's write is not"
    );
    assert!(
        lanes.since_last().is_some(),
        "the append counted as lane work"
    );
    eventually("all entries at central and acknowledged", || {
        a.store.acked_seq() == a.store.journal_head()
    })
    .await;
    {
        let c = a.state.lock().expect("lock");
        let first = c.arrivals.get(before).expect("a batch after the append");
        assert!(
            first.duration_since(appended_at) >= edge_agent::uplink::drain::LANE_YIELD_MAX,
            "the first batch waited for the pending write, up to the bound: {:?}",
            first.duration_since(appended_at)
        );
        assert_stored_in_order(&c, a.store.journal_head());
        let resent = resent(&c);
        assert!(resent.is_empty(), "each entry sent once: {resent:?}");
    }
    // Answered: the next entries drain too.
    drop(pending);
    journal_alerts(&a.h, 24..30).await;
    eventually("the later entries acknowledged", || {
        a.store.acked_seq() == a.store.journal_head()
    })
    .await;
    assert_eq!(
        a.state.lock().expect("lock").stored.len() as u64,
        a.store.journal_head()
    );
    a.stop().await;
}

#[tokio::test]
async fn replication_bootstraps_refuses_a_forged_batch_and_applies_the_next_good_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state: Shared = Arc::default();
    let key = signing_key();
    {
        let mut c = state.lock().expect("lock");
        c.snapshot = Some(sign(&batch(true, 0, 5), &key));
        let mut forged = sign(&batch(false, 5, 6), &key);
        forged.payload = forged.payload.replace("C6", "C7");
        c.changes.push_back(forged);
        c.changes.push_back(sign(
            &batch(false, 5, 7),
            &SigningKey::from_bytes(&[1u8; 32]),
        ));
        c.changes.push_back(sign(&batch(false, 5, 6), &key));
    }
    let (h, shutdown) = started(dir.path(), &state).await;
    let store = h.shared.store.clone();
    eventually("replica at 6 after the good delta", || {
        store.replica_meta().sequence == 6
    })
    .await;
    let meta = store.replica_meta();
    assert!(meta.last_sync.is_some(), "marked synced");

    // Both refusals were journaled as integrity alerts and reached central.
    eventually("two alerts delivered", || {
        refused_batches(&state.lock().expect("lock").stored).len() == 2
    })
    .await;
    support::stop_agent(&shutdown, h.join, STEP).await;
}

#[test]
fn plain_http_to_a_remote_central_is_refused_at_start() {
    // Refused when the configuration is read (by `run` and `check-config` alike), naming
    // the key; the central client refuses the same on its own.
    let dir = tempfile::tempdir().expect("tempdir");
    for (url, why) in [
        ("http://192.0.2.10:8443", "loopback"),
        ("https://central.example.invalid", "ca_cert"),
    ] {
        let err =
            Config::from_toml_str(&config_text(dir.path(), url), "test.toml").expect_err("refused");
        let text = err.to_string();
        assert!(text.contains("central.url") && text.contains(why), "{text}");
    }
}

#[tokio::test]
async fn a_gap_is_healed_only_by_a_snapshot_that_is_not_older() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state: Shared = Arc::default();
    let key = signing_key();
    state.lock().expect("lock").snapshot = Some(sign(&batch(true, 0, 5), &key));
    let (h, shutdown) = started(dir.path(), &state).await;
    let store = h.shared.store.clone();
    eventually("bootstrapped at 5", || store.replica_meta().sequence == 5).await;

    // Changes 6 and 7 never arrive; central now offers 8..9 and a snapshot at 9.
    {
        let mut c = state.lock().expect("lock");
        c.changes.push_back(sign(&batch(false, 7, 9), &key));
        c.snapshot = Some(sign(&batch(true, 0, 9), &key));
    }
    eventually("healed from the snapshot at 9", || {
        store.replica_meta().sequence == 9
    })
    .await;
    eventually("the gap was reported to central", || {
        state.lock().expect("lock").stored.values().any(|e| {
            matches!(&e.body, EventBody::IntegrityAlert { detail, .. } if detail.contains("gap"))
        })
    })
    .await;

    // Another gap, but the only snapshot is older than the replica: refused, replica kept.
    {
        let mut c = state.lock().expect("lock");
        c.changes.push_back(sign(&batch(false, 11, 12), &key));
        c.snapshot = Some(sign(&batch(true, 0, 4), &key));
    }
    eventually("the old snapshot was refused as a rollback", || {
        state.lock().expect("lock").stored.values().any(|e| {
            matches!(&e.body, EventBody::IntegrityAlert { detail, .. } if detail.contains("rollback"))
        })
    })
    .await;
    assert_eq!(store.replica_meta().sequence, 9, "replica unchanged");
    support::stop_agent(&shutdown, h.join, STEP).await;
}
