//! Bootstrap from a chunked snapshot (docs/delivery.md, "Chunked snapshot"): the store's
//! staging tables and their swap, and the replication client against a stand-in central on
//! 127.0.0.1:0 that serves a signed manifest and its chunks and counts every request.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ed25519_dalek::{Signer as _, SigningKey};
use edge_agent::config::Config;
use edge_agent::decider::{ReplicaView as _, decide};
use edge_agent::runtime::{AgentHandle, start};
use edge_agent::store::Store;
use jiff::Timestamp;
use protocol::schema::{
    AeoStatus, Authorisation, Change, ChangeBatch, IngestAck, IngestBatch, JournalEntry,
    LaneDecision, ReasonCode, SCHEMA_VERSION, SequencedChange, SignedEnvelope, SnapshotChunk,
    SnapshotManifest,
};
use sha2::{Digest as _, Sha256};
use support::stand_in::{refused_batches, store_batch};
use support::{agent_toml, gate_g1_lane_l1};
use tokio_util::sync::CancellationToken;

const STEP: Duration = Duration::from_secs(15);
const TOKEN: &str = "agent-token-for-tests";
const MANIFEST_ID: &str = "00112233445566778899aabbccddeeff";

fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[42u8; 32])
}

fn sign(payload: String) -> SignedEnvelope {
    SignedEnvelope {
        key_id: "registry-test".into(),
        signature: hex::encode(signing_key().sign(payload.as_bytes()).to_bytes()),
        payload,
    }
}

/// `n` operators, numbered seq 1..=n.
fn operators(n: u64, status: AeoStatus) -> Vec<SequencedChange> {
    (1..=n)
        .map(|seq| SequencedChange {
            seq,
            change: Change::UpsertOperator {
                record: support::record(&operator_id(seq), vec![Authorisation::Aeof], status),
            },
        })
        .collect()
}

fn operator_id(i: u64) -> String {
    format!("EU-AEO:DE{:015}", 200_000_000_000_000 + i)
}

/// A manifest for PORT-A cutting `changes` into chunks of `per`, and the chunks' bytes.
fn chunked(changes: Vec<SequencedChange>, per: usize) -> (SnapshotManifest, Vec<Vec<u8>>) {
    let last_seq = changes.iter().map(|c| c.seq).max().unwrap_or(0);
    let records = changes.len() as u64;
    let chunks: Vec<Vec<u8>> = changes
        .chunks(per)
        .enumerate()
        .map(|(i, part)| {
            serde_json::to_vec(&SnapshotChunk {
                v: SCHEMA_VERSION,
                index: u32::try_from(i).expect("index"),
                changes: part.to_vec(),
            })
            .expect("json")
        })
        .collect();
    let manifest = SnapshotManifest {
        v: SCHEMA_VERSION,
        id: MANIFEST_ID.into(),
        port: "PORT-A".into(),
        last_seq,
        as_of: Timestamp::now(),
        chunk_records: u32::try_from(per).expect("per"),
        records,
        chunks: chunks
            .iter()
            .map(|c| hex::encode(Sha256::digest(c)))
            .collect(),
    };
    (manifest, chunks)
}

// ---------------------------------------------------------------------------------------
// the store: staging and the swap
// ---------------------------------------------------------------------------------------

fn open(dir: &std::path::Path) -> Store {
    Store::open(&dir.join("agent.redb"), support::gate()).expect("store")
}

/// A replica where the good truck is FAST: both parties active, the consignment declared.
fn fast_replica(store: &Store) {
    let changes = vec![
        Change::UpsertOperator {
            record: support::record(
                support::IMPORTER,
                vec![Authorisation::Aeof],
                AeoStatus::Active,
            ),
        },
        Change::UpsertOperator {
            record: support::record(
                support::CARRIER,
                vec![Authorisation::Aeos],
                AeoStatus::Active,
            ),
        },
        Change::UpsertConsignment {
            consignment: support::consignment(),
        },
    ];
    store
        .apply_batch(&support::snapshot_at(support::ago(5), 3, changes))
        .expect("snapshot applies");
}

/// The good truck's lane at the test clock, and whether the replica counted as stale.
fn decision(store: &Store) -> (LaneDecision, bool) {
    let view = store.replica_view().expect("view");
    let d = decide(
        &support::good_tx(),
        &view,
        &support::policy(),
        &support::routes(),
        support::now(),
    );
    let stale = d.reasons.iter().any(|r| r.code == ReasonCode::ReplicaStale);
    (d.decision, stale)
}

/// The same registry, but the importer suspended: in two chunks.
fn suspended_importer() -> (SnapshotManifest, Vec<Vec<u8>>) {
    let changes = vec![
        SequencedChange {
            seq: 4,
            change: Change::UpsertOperator {
                record: support::record(
                    support::IMPORTER,
                    vec![Authorisation::Aeof],
                    AeoStatus::Suspended,
                ),
            },
        },
        SequencedChange {
            seq: 2,
            change: Change::UpsertOperator {
                record: support::record(
                    support::CARRIER,
                    vec![Authorisation::Aeos],
                    AeoStatus::Active,
                ),
            },
        },
        SequencedChange {
            seq: 3,
            change: Change::UpsertConsignment {
                consignment: support::consignment(),
            },
        },
    ];
    let (m, chunks) = chunked(changes, 2);
    (
        SnapshotManifest {
            as_of: support::ago(1),
            ..m
        },
        chunks,
    )
}

fn stage(store: &Store, m: &SnapshotManifest, chunks: &[Vec<u8>], k: u32) {
    let changes =
        edge_agent::replication::check_chunk(m, k, &chunks[k as usize]).expect("chunk checks");
    store.stage_chunk(&m.id, k, &changes).expect("chunk stages");
}

#[test]
fn a_decision_during_staging_sees_the_old_replica_and_the_swap_replaces_it_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    fast_replica(&store);
    let fast = (LaneDecision::Fast, false);
    assert_eq!(decision(&store), fast, "the old replica gives FAST");

    let (m, chunks) = suspended_importer();
    store.begin_staging(&m).expect("staging begins");
    stage(&store, &m, &chunks, 0);
    // Chunk 0 staged the suspended importer: the live replica does not show it.
    assert_eq!(decision(&store), fast, "staging is invisible");
    assert_eq!(store.replica_meta().sequence, 3);
    let err = store.finish_staging(&m.id).expect_err("a chunk is missing");
    assert!(err.to_string().contains("1 staged"), "{err}");
    assert_eq!(decision(&store), fast, "a failed swap changes nothing");

    stage(&store, &m, &chunks, 1);
    let before = store.replica_view().expect("view");
    assert_eq!(store.finish_staging(&m.id).expect("swap"), 4);
    let (lane, stale) = decision(&store);
    assert!(!stale, "the new replica is fresh");
    assert_ne!(
        lane,
        LaneDecision::Fast,
        "the new replica suspends the importer"
    );
    assert_eq!(store.replica_meta().sequence, 4);
    assert_eq!(store.replica_meta().as_of, Some(m.as_of));
    assert_eq!(
        store.staged_snapshot(),
        None,
        "the progress is gone with the swap"
    );
    // A view taken before the swap still reads the old replica whole.
    let importer = before
        .operator(&support::op(support::IMPORTER))
        .expect("held");
    assert_eq!(importer.status, AeoStatus::Active);
    assert_eq!(before.sequence(), 3);
}

#[test]
fn a_replica_never_loaded_stays_not_loaded_until_the_swap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let (m, chunks) = chunked(operators(5, AeoStatus::Active), 2);
    store.begin_staging(&m).expect("staging begins");
    stage(&store, &m, &chunks, 0);
    stage(&store, &m, &chunks, 1);
    let view = store.replica_view().expect("view");
    assert_eq!((view.sequence(), view.as_of()), (0, None));
    assert!(view.operator(&support::op(&operator_id(1))).is_none());
    drop(view);
    stage(&store, &m, &chunks, 2);
    store.finish_staging(&m.id).expect("swap");
    let view = store.replica_view().expect("view");
    assert_eq!(view.sequence(), 5);
    for i in 1..=5 {
        assert!(
            view.operator(&support::op(&operator_id(i))).is_some(),
            "operator {i}"
        );
    }
}

#[test]
fn staging_progress_survives_reopening_the_store_and_takes_only_the_next_chunk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (m, chunks) = chunked(operators(5, AeoStatus::Active), 2);
    {
        let store = open(dir.path());
        store.begin_staging(&m).expect("staging begins");
        stage(&store, &m, &chunks, 0);
    }
    let store = open(dir.path());
    let staged = store.staged_snapshot().expect("still staged");
    assert_eq!((staged.manifest.id.as_str(), staged.next), (MANIFEST_ID, 1));
    let again = edge_agent::replication::check_chunk(&m, 0, &chunks[0]).expect("chunk");
    assert!(
        store.stage_chunk(&m.id, 0, &again).is_err(),
        "chunk 0 twice"
    );
    assert!(
        store.stage_chunk("another", 1, &again).is_err(),
        "another manifest"
    );
    stage(&store, &m, &chunks, 1);
    stage(&store, &m, &chunks, 2);
    store.finish_staging(&m.id).expect("swap");
    assert_eq!(store.replica_meta().sequence, 5);
}

#[test]
fn a_chunk_that_is_not_the_signed_one_is_refused_before_it_is_parsed() {
    let (m, chunks) = chunked(operators(4, AeoStatus::Active), 2);
    let mut forged = chunks[1].clone();
    let at = forged.len() / 2;
    forged[at] ^= 0x01;
    let why = edge_agent::replication::check_chunk(&m, 1, &forged).expect_err("refused");
    assert_eq!(why.label(), "chunk_hash");
    // Not JSON at all: still a hash refusal, as nothing is parsed first.
    let why = edge_agent::replication::check_chunk(&m, 1, b"\xff\xfe").expect_err("refused");
    assert_eq!(why.label(), "chunk_hash");
    // The right bytes under another index.
    let why = edge_agent::replication::check_chunk(&m, 0, &chunks[1]).expect_err("refused");
    assert_eq!(why.label(), "chunk_hash");
}

// ---------------------------------------------------------------------------------------
// the replication client against a stand-in central
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct Stand {
    manifest: Option<SignedEnvelope>,
    /// The id of the snapshot whose chunks are served.
    id: String,
    chunks: Vec<Vec<u8>>,
    manifest_requests: usize,
    /// Requests per chunk index.
    chunk_requests: BTreeMap<u32, usize>,
    /// Chunk served with a flipped byte while set.
    corrupt: Option<u32>,
    /// Chunk whose next answer breaks off half way (the connection drops).
    break_once: Option<u32>,
    /// Chunks from this index on are answered 503 while set.
    hold_from: Option<u32>,
    stored: BTreeMap<u64, JournalEntry>,
}

type Shared = Arc<Mutex<Stand>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Stand> {
    s.lock().expect("stand-in state")
}

async fn events(State(s): State<Shared>, Json(b): Json<IngestBatch>) -> Json<IngestAck> {
    Json(store_batch(&mut lock(&s).stored, b.entries))
}

async fn manifest(State(s): State<Shared>) -> Response {
    let mut st = lock(&s);
    st.manifest_requests += 1;
    match st.manifest.clone() {
        Some(env) => Json(env).into_response(),
        None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

async fn chunk(State(s): State<Shared>, Path((id, k)): Path<(String, u32)>) -> Response {
    let mut st = lock(&s);
    *st.chunk_requests.entry(k).or_default() += 1;
    if id != st.id || k as usize >= st.chunks.len() {
        return StatusCode::NOT_FOUND.into_response();
    }
    if st.hold_from.is_some_and(|h| k >= h) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let mut bytes = st.chunks[k as usize].clone();
    if st.corrupt == Some(k) {
        let at = bytes.len() / 2;
        bytes[at] ^= 0x01;
    }
    if st.break_once == Some(k) {
        st.break_once = None;
        // Half the chunk, then the connection fails.
        let half = bytes[..bytes.len() / 2].to_vec();
        let parts: Vec<Result<Vec<u8>, std::io::Error>> = vec![
            Ok(half),
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection broken",
            )),
        ];
        return Response::builder()
            .header("content-type", "application/json")
            .header("content-length", bytes.len().to_string())
            .body(Body::from_stream(futures_util::stream::iter(parts)))
            .expect("response");
    }
    ([("content-type", "application/json")], bytes).into_response()
}

async fn changes(Query(q): Query<BTreeMap<String, String>>) -> Response {
    // Nothing after `after`, signed, as of now.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after: u64 = q.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let statement = ChangeBatch {
        v: SCHEMA_VERSION,
        snapshot: false,
        after_seq: after,
        last_seq: after,
        port: "PORT-A".into(),
        as_of: Timestamp::now(),
        changes: Vec::new(),
    };
    Json(sign(serde_json::to_string(&statement).expect("json"))).into_response()
}

async fn stand_in(state: Shared) -> String {
    let app = Router::new()
        .route("/api/v1/agents/{gate}/events", post(events))
        .route(
            "/api/v1/agents/{gate}/heartbeat",
            post(|| async { StatusCode::NO_CONTENT }),
        )
        .route("/api/v1/registry/snapshot/manifest", get(manifest))
        .route("/api/v1/registry/snapshot/chunks/{id}/{k}", get(chunk))
        .route("/api/v1/registry/changes", get(changes))
        .with_state(state);
    support::serve(app).await
}

fn serving(changes: Vec<SequencedChange>, per: usize) -> Shared {
    let (m, chunks) = chunked(changes, per);
    Arc::new(Mutex::new(Stand {
        manifest: Some(sign(serde_json::to_string(&m).expect("json"))),
        id: m.id,
        chunks,
        ..Stand::default()
    }))
}

fn config(dir: &std::path::Path, url: &str) -> Config {
    let pk = hex::encode(signing_key().verifying_key().to_bytes());
    let settings = "uplink_batch = 3\nheartbeat_every = \"200ms\"\npoll_wait = \"1s\"";
    let text = format!(
        "{}{}{}",
        gate_g1_lane_l1(),
        agent_toml::central(url, TOKEN, settings, "registry-test", &pk),
        agent_toml::store_policy_console(dir, "chunked-test-random-key", "127.0.0.1:0"),
    );
    Config::from_toml_str(&text, "test.toml").expect("valid config")
}

async fn started(dir: &std::path::Path, url: &str) -> (AgentHandle, CancellationToken) {
    let shutdown = CancellationToken::new();
    let h = start(config(dir, url), shutdown.clone())
        .await
        .expect("agent starts");
    (h, shutdown)
}

async fn eventually(what: &str, f: impl FnMut() -> bool) {
    support::eventually(what, STEP, f).await;
}

fn refusals(s: &Shared) -> Vec<String> {
    refused_batches(&lock(s).stored)
}

fn requests(s: &Shared) -> (usize, Vec<usize>) {
    let st = lock(s);
    let n = u32::try_from(st.chunks.len()).expect("chunks");
    let per_chunk = (0..n)
        .map(|k| st.chunk_requests.get(&k).copied().unwrap_or(0))
        .collect();
    (st.manifest_requests, per_chunk)
}

/// A stand-in central serving `n` active operators in chunks of ten (as `set` leaves
/// it), and an agent started against it.
struct Bootstrap {
    state: Shared,
    /// The stand-in's URL, for starting the agent again.
    url: String,
    agent: AgentHandle,
    shutdown: CancellationToken,
}

async fn bootstrap(dir: &std::path::Path, n: u64, set: impl FnOnce(&mut Stand)) -> Bootstrap {
    let state = serving(operators(n, AeoStatus::Active), 10);
    set(&mut lock(&state));
    let url = stand_in(state.clone()).await;
    let (agent, shutdown) = started(dir, &url).await;
    Bootstrap {
        state,
        url,
        agent,
        shutdown,
    }
}

impl Bootstrap {
    fn store(&self) -> &Store {
        &self.agent.shared.store
    }

    async fn stop(self) {
        support::stop_agent(&self.shutdown, self.agent.join, STEP).await;
    }
}

/// Waits until `store`'s replica is at `sequence`; then the requests `state` counted, as
/// [`requests`].
async fn loaded(store: &Store, state: &Shared, sequence: u64) -> (usize, Vec<usize>) {
    eventually("replica loaded", || {
        store.replica_meta().sequence == sequence
    })
    .await;
    requests(state)
}

#[tokio::test]
async fn bootstraps_chunk_by_chunk_after_refusing_a_modified_chunk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = bootstrap(dir.path(), 25, |s| s.corrupt = Some(1)).await;

    eventually("the modified chunk was refused and reported", || {
        refusals(&b.state)
            .iter()
            .any(|d| d.contains("chunk 1") && d.contains("SHA-256"))
    })
    .await;
    assert_eq!(b.store().replica_meta().sequence, 0, "replica untouched");
    assert!(
        b.store()
            .replica_view()
            .expect("view")
            .operator(&support::op(&operator_id(1)))
            .is_none(),
        "nothing of the snapshot is visible"
    );

    lock(&b.state).corrupt = None;
    let (manifests, per_chunk) = loaded(b.store(), &b.state, 25).await;
    let view = b.store().replica_view().expect("view");
    for i in 1..=25 {
        assert!(
            view.operator(&support::op(&operator_id(i))).is_some(),
            "operator {i}"
        );
    }
    drop(view);
    assert_eq!(manifests, 1, "the refusal kept the staged progress");
    assert_eq!(per_chunk[0], 1, "chunk 0 was not fetched again");
    assert!(per_chunk[1] >= 2, "chunk 1 fetched again after its refusal");
    assert_eq!(per_chunk[2], 1);
    b.stop().await;
}

#[tokio::test]
async fn a_connection_broken_during_a_chunk_resumes_at_that_chunk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = bootstrap(dir.path(), 50, |s| s.break_once = Some(3)).await;
    let (manifests, per_chunk) = loaded(&b.agent.shared.store, &b.state, 50).await;
    assert_eq!(manifests, 1);
    // Chunks 0..=2 applied once; the connection broke in chunk 3, fetched again; 4 once.
    assert_eq!(per_chunk, vec![1, 1, 1, 2, 1]);
    assert!(
        refusals(&b.state).is_empty(),
        "a broken connection is no refusal"
    );
    b.stop().await;
}

#[tokio::test]
async fn an_agent_restarted_mid_bootstrap_resumes_at_the_next_chunk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = bootstrap(dir.path(), 40, |s| s.hold_from = Some(2)).await;
    let (state, url) = (b.state.clone(), b.url.clone());
    eventually("chunks 0 and 1 staged, chunk 2 asked for", || {
        lock(&state).chunk_requests.contains_key(&2)
    })
    .await;
    let staged = b.agent.shared.store.staged_snapshot().expect("staged");
    assert_eq!(staged.next, 2);
    assert_eq!(b.agent.shared.store.replica_meta().sequence, 0);
    b.stop().await;

    lock(&state).hold_from = None;
    let (h, shutdown) = started(dir.path(), &url).await;
    let (manifests, per_chunk) = loaded(&h.shared.store, &state, 40).await;
    assert_eq!(manifests, 1, "the same manifest, kept in the store");
    assert_eq!(&per_chunk[..2], &[1, 1], "chunks 0 and 1 not fetched again");
    assert_eq!(per_chunk[3], 1);
    support::stop_agent(&shutdown, h.join, STEP).await;
}

#[tokio::test]
async fn a_snapshot_central_no_longer_keeps_is_started_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = bootstrap(dir.path(), 30, |s| s.hold_from = Some(1)).await;
    eventually("chunk 0 staged, chunk 1 asked for", || {
        lock(&b.state).chunk_requests.contains_key(&1)
    })
    .await;
    // Central forgets the snapshot (its chunks answer 404) and offers a new one.
    let (m, chunks) = chunked(operators(30, AeoStatus::Active), 10);
    let m = SnapshotManifest {
        id: "feedfeedfeedfeedfeedfeedfeedfeed".into(),
        ..m
    };
    {
        let mut st = lock(&b.state);
        st.manifest = Some(sign(serde_json::to_string(&m).expect("json")));
        st.id = m.id.clone();
        st.chunks = chunks;
        st.hold_from = None;
    }
    eventually("replica loaded from the new snapshot", || {
        b.store().replica_meta().sequence == 30
    })
    .await;
    let (manifests, per_chunk) = requests(&b.state);
    assert_eq!(
        manifests, 2,
        "a new manifest after the old one's chunk was gone"
    );
    assert_eq!(per_chunk[0], 2, "chunk 0 of each snapshot");
    assert!(
        refusals(&b.state).is_empty(),
        "a dropped snapshot is no refusal"
    );
    b.stop().await;
}
