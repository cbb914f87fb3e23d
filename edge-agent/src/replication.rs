//! Replication client: keeps the local registry and advance-cargo replica current from
//! central (docs/delivery.md, "Replication").
//!
//! 1. The replica is bound to the gate's port (`Store::bind_port`); a store that holds
//!    another port's data is refused and replication stops (an integrity alert says why).
//! 2. A replica never loaded bootstraps from a chunked snapshot: the signed manifest
//!    `GET /api/v1/registry/snapshot/manifest?port=P`, then each chunk
//!    `GET /api/v1/registry/snapshot/chunks/{id}/{k}?port=P` (see "Chunked snapshot"
//!    below). A central that does not serve manifests (`404`) is asked for the whole
//!    snapshot in one envelope, `GET /api/v1/registry/snapshot?port=P`.
//! 3. Then it long-polls `GET /api/v1/registry/changes?port=P&after=SEQ&wait=S`.
//!
//! Every answer is a [`SignedEnvelope`]. [`verify_envelope`] checks the ed25519 signature
//! over the exact `payload` bytes with `verify_strict` (which also rejects small-order keys
//! and non-canonical signatures, RFC 8032 §5.1.7 plus the checks of ed25519-dalek's strict
//! mode) against the key pinned in configuration under the envelope's `key_id`, *before*
//! the payload is parsed. [`check_batch`] then requires the batch to name this port, to
//! follow the replica exactly (`after_seq == replica seq`; an older batch is a replay, a
//! batch ending below the replica a rollback, one starting above it a gap) and to number
//! its changes `after_seq+1 ..= last_seq`. Only then is it applied, in one write
//! transaction (`Store::apply_batch`, which checks sequence and port again).
//!
//! Freshness comes only from signed data ([`crate::replica::freshness`]). When nothing is
//! newer, central answers with a signed statement: an empty delta (`after_seq = last_seq
//! = SEQ`, no changes) whose `as_of` says "no changes after SEQ as of this time". A
//! statement or snapshot must be newer than the replica's as-of time ([`check_as_of`]:
//! an older or equal one is a replay), and no signed as-of may lie ahead of this clock
//! beyond [`CLOCK_TOLERANCE`]. An unsigned answer (`204`, from an older central or a man
//! in the middle) refreshes nothing and is retried with backoff. Rounds start at least
//! [`MIN_POLL_INTERVAL`] apart, whatever central answers.
//!
//! A refused batch is logged, counted (`aeogate_replica_refused_total{why}`) and journaled
//! as an `INTEGRITY_ALERT` so it reaches central; the replica stays as it was and the
//! client retries with backoff. On a gap the client re-bootstraps from a snapshot, and
//! accepts it only if it verifies and is not older than the replica (`last_seq >= replica
//! seq`): a snapshot can heal a missed change, never roll the registry back.
//!
//! # Chunked snapshot
//! The manifest is verified like a batch ([`verify_manifest`]) and checked like a snapshot
//! ([`check_manifest`]: port, not older than the replica, as-of rules, a chunk count that
//! matches its record count, chunks of at most [`MAX_CHUNK_RECORDS`]). Each chunk is read
//! up to [`MAX_CHUNK_BYTES`], its SHA-256 compared with the manifest's *before* it is
//! parsed ([`check_chunk`]), and applied into the store's staging tables together with
//! the progress (`Store::stage_chunk`), so at most one chunk is held and a broken
//! connection or a restart resumes at the next chunk of the same manifest. When every
//! chunk is staged, `Store::finish_staging` swaps the staging tables in by one write
//! transaction. A chunk whose hash differs is refused like a forged batch; a manifest
//! central no longer serves (`404` for a chunk) is dropped and the bootstrap starts again.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ed25519_dalek::{Signature, VerifyingKey};
use jiff::Timestamp;
use protocol::schema::{
    ChangeBatch, EventBody, SequencedChange, SignedEnvelope, SnapshotChunk, SnapshotManifest,
    check_version,
};
use reqwest::StatusCode;
use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::{CentralConfig, PinnedKey};
use crate::journal::Journal;
use crate::replica::{CLOCK_TOLERANCE, ReplicaMeta, SequenceError, check_sequence};

/// Least time between the starts of two registry requests, so an endpoint that answers
/// at once (a misbehaving central, or a man in the middle) cannot make the agent spin.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_secs(1);
use crate::uplink::CentralClient;

/// Why a registry batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The envelope names a key that is not pinned.
    #[error("signed with key {0:?}, which is not pinned in central.registry_keys")]
    UnknownKey(String),
    /// The pinned key is not a valid ed25519 public key (a configuration error).
    #[error("pinned key {0:?} is not a valid ed25519 public key")]
    BadPinnedKey(String),
    /// The signature is not 64 hex-encoded bytes.
    #[error("signature is not 128 hex digits")]
    SignatureEncoding,
    /// The signature does not verify.
    #[error("signature by key {0:?} does not verify over the payload")]
    BadSignature(String),
    /// The verified payload is not a change batch of a known version.
    #[error("payload does not parse as a change batch: {0}")]
    Payload(String),
    /// The batch is for another port.
    #[error("batch is for port {found:?}, this gate serves {expected:?}")]
    WrongPort {
        /// This gate's port.
        expected: String,
        /// The batch's port.
        found: String,
    },
    /// A snapshot where a delta was asked for, or the other way round.
    #[error("expected a {expected}, got a {found}")]
    WrongKind {
        /// What was asked for.
        expected: &'static str,
        /// What came.
        found: &'static str,
    },
    /// The batch starts after the replica's sequence: changes are missing.
    #[error("gap: replica is at {replica}, batch follows {after_seq}")]
    Gap {
        /// Replica sequence.
        replica: u64,
        /// The batch's `after_seq`.
        after_seq: u64,
    },
    /// The batch ends below the replica's sequence.
    #[error("rollback: replica is at {replica}, batch ends at {last_seq}")]
    Rollback {
        /// Replica sequence.
        replica: u64,
        /// The batch's `last_seq`.
        last_seq: u64,
    },
    /// The batch repeats changes already applied.
    #[error("replay: replica is at {replica}, batch follows {after_seq}")]
    Replay {
        /// Replica sequence.
        replica: u64,
        /// The batch's `after_seq`.
        after_seq: u64,
    },
    /// Change numbers are not `after_seq+1 ..= last_seq` in order.
    #[error("change sequence numbers are not contiguous from {after_seq} to {last_seq}")]
    Numbering {
        /// The batch's `after_seq`.
        after_seq: u64,
        /// The batch's `last_seq`.
        last_seq: u64,
    },
    /// A snapshot or "no changes" statement whose signed as-of time is not newer than
    /// the replica's: a replay, which must not refresh the replica.
    #[error("signed as of {as_of}, not newer than the replica's {held}: replayed")]
    NotNewer {
        /// The replica's signed as-of time.
        held: Timestamp,
        /// The batch's.
        as_of: Timestamp,
    },
    /// The signed as-of time lies ahead of this gate's clock beyond the tolerance.
    #[error("signed as of {as_of}, ahead of this gate's clock ({now}) by more than {}s", CLOCK_TOLERANCE.as_secs())]
    Ahead {
        /// The batch's as-of time.
        as_of: Timestamp,
        /// This gate's clock.
        now: Timestamp,
    },
    /// The store refused to apply it.
    #[error("store refused the batch: {0}")]
    Store(String),
    /// A verified snapshot manifest that is inconsistent in itself.
    #[error("snapshot manifest: {0}")]
    Manifest(String),
    /// A snapshot chunk whose bytes do not hash to the manifest's SHA-256 for it.
    #[error("snapshot {manifest} chunk {index}: SHA-256 {found} is not the signed {expected}")]
    ChunkHash {
        /// The manifest's id.
        manifest: String,
        /// The chunk's index.
        index: u32,
        /// The signed hash.
        expected: String,
        /// The hash of the bytes received.
        found: String,
    },
    /// A snapshot chunk that matches its hash but not its manifest.
    #[error("snapshot chunk: {0}")]
    Chunk(String),
}

impl Refused {
    /// Short label for the metric.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            Self::UnknownKey(_) => "unknown_key",
            Self::BadPinnedKey(_) => "bad_pinned_key",
            Self::SignatureEncoding | Self::BadSignature(_) => "bad_signature",
            Self::Payload(_) => "payload",
            Self::WrongPort { .. } => "wrong_port",
            Self::WrongKind { .. } => "wrong_kind",
            Self::Gap { .. } => "gap",
            Self::Rollback { .. } => "rollback",
            Self::Replay { .. } => "replay",
            Self::Numbering { .. } => "numbering",
            Self::NotNewer { .. } => "not_newer",
            Self::Ahead { .. } => "ahead",
            Self::Store(_) => "store",
            Self::Manifest(_) => "manifest",
            Self::ChunkHash { .. } => "chunk_hash",
            Self::Chunk(_) => "chunk",
        }
    }
}

/// Verifies `env` against the pinned `keys` and only then parses its payload.
///
/// # Errors
/// [`Refused`] naming the key or the failure.
pub fn verify_envelope(env: &SignedEnvelope, keys: &[PinnedKey]) -> Result<ChangeBatch, Refused> {
    verify_signature(env, keys)?;
    let batch: ChangeBatch =
        serde_json::from_str(&env.payload).map_err(|e| Refused::Payload(e.to_string()))?;
    check_version(batch.v).map_err(|e| Refused::Payload(e.to_string()))?;
    Ok(batch)
}

/// Verifies a snapshot manifest's envelope against the pinned `keys` (the same key and
/// check as a batch) and only then parses it.
///
/// # Errors
/// [`Refused`] naming the key or the failure.
pub fn verify_manifest(
    env: &SignedEnvelope,
    keys: &[PinnedKey],
) -> Result<SnapshotManifest, Refused> {
    verify_signature(env, keys)?;
    let m: SnapshotManifest =
        serde_json::from_str(&env.payload).map_err(|e| Refused::Payload(e.to_string()))?;
    check_version(m.v).map_err(|e| Refused::Payload(e.to_string()))?;
    Ok(m)
}

/// Most changes in one snapshot chunk an agent accepts (central cuts 10,000 by default).
pub const MAX_CHUNK_RECORDS: u32 = 50_000;
/// Most bytes of one snapshot chunk an agent reads: what it holds at most while
/// bootstrapping (a chunk of 10,000 records is about 4 MB).
pub const MAX_CHUNK_BYTES: usize = 64 * 1024 * 1024;
/// Most chunks in one manifest (a manifest of 10 billion records at the largest chunks).
const MAX_CHUNKS: usize = 200_000;

/// Checks that a verified manifest may replace a replica at `replica` with signed as-of
/// time `held` for `port` at `now`: the rules of a snapshot ([`check_as_of`], not older
/// than the replica), and a manifest consistent in itself.
///
/// # Errors
/// [`Refused`] saying which rule failed.
pub fn check_manifest(
    m: &SnapshotManifest,
    replica: u64,
    held: Option<Timestamp>,
    port: &str,
    now: Timestamp,
) -> Result<(), Refused> {
    if m.port != port {
        return Err(Refused::WrongPort {
            expected: port.into(),
            found: m.port.clone(),
        });
    }
    if m.last_seq < replica {
        return Err(Refused::Rollback {
            replica,
            last_seq: m.last_seq,
        });
    }
    check_statement_as_of(m.as_of, true, held, now)?;
    if m.chunk_records == 0 || m.chunk_records > MAX_CHUNK_RECORDS {
        return Err(Refused::Manifest(format!(
            "chunks of {} records; 1 to {MAX_CHUNK_RECORDS} are accepted",
            m.chunk_records
        )));
    }
    let expected = m.records.div_ceil(u64::from(m.chunk_records));
    if m.chunks.len() as u64 != expected || m.chunks.len() > MAX_CHUNKS {
        return Err(Refused::Manifest(format!(
            "{} chunks for {} records of at most {} each (expected {expected}, at most {MAX_CHUNKS})",
            m.chunks.len(),
            m.records,
            m.chunk_records
        )));
    }
    if let Some((k, _)) = m.chunks.iter().enumerate().find(|(_, h)| {
        h.len() != 64
            || !h
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }) {
        return Err(Refused::Manifest(format!(
            "chunk {k}'s hash is not 64 lowercase hex digits"
        )));
    }
    Ok(())
}

/// Checks chunk `index` of manifest `m` and only then parses it: its SHA-256 must be the
/// manifest's, then it must parse as that chunk, hold at most `chunk_records` changes and
/// none beyond the manifest's `last_seq`.
///
/// # Errors
/// [`Refused::ChunkHash`] for bytes that are not the signed ones; [`Refused::Chunk`] for a
/// chunk that does not fit its manifest.
pub fn check_chunk(
    m: &SnapshotManifest,
    index: u32,
    bytes: &[u8],
) -> Result<Vec<SequencedChange>, Refused> {
    let expected = m
        .chunks
        .get(index as usize)
        .ok_or_else(|| Refused::Chunk(format!("manifest {} has no chunk {index}", m.id)))?;
    let found = hex::encode(Sha256::digest(bytes));
    if found != *expected {
        return Err(Refused::ChunkHash {
            manifest: m.id.clone(),
            index,
            expected: expected.clone(),
            found,
        });
    }
    let chunk: SnapshotChunk =
        serde_json::from_slice(bytes).map_err(|e| Refused::Chunk(e.to_string()))?;
    check_version(chunk.v).map_err(|e| Refused::Chunk(e.to_string()))?;
    if chunk.index != index {
        return Err(Refused::Chunk(format!(
            "chunk {index} says it is chunk {}",
            chunk.index
        )));
    }
    if chunk.changes.len() > m.chunk_records as usize {
        return Err(Refused::Chunk(format!(
            "chunk {index} holds {} changes, more than {}",
            chunk.changes.len(),
            m.chunk_records
        )));
    }
    if let Some(c) = chunk.changes.iter().find(|c| c.seq > m.last_seq) {
        return Err(Refused::Chunk(format!(
            "chunk {index}: change {} is beyond the snapshot's last_seq {}",
            c.seq, m.last_seq
        )));
    }
    Ok(chunk.changes)
}

fn verify_signature(env: &SignedEnvelope, keys: &[PinnedKey]) -> Result<(), Refused> {
    let pinned = keys
        .iter()
        .find(|k| k.key_id == env.key_id)
        .ok_or_else(|| Refused::UnknownKey(env.key_id.clone()))?;
    let mut key = [0u8; 32];
    hex::decode_to_slice(pinned.public_key.trim(), &mut key)
        .map_err(|_| Refused::BadPinnedKey(pinned.key_id.clone()))?;
    let key =
        VerifyingKey::from_bytes(&key).map_err(|_| Refused::BadPinnedKey(pinned.key_id.clone()))?;
    let mut sig = [0u8; 64];
    hex::decode_to_slice(env.signature.trim(), &mut sig).map_err(|_| Refused::SignatureEncoding)?;
    let sig = Signature::from_bytes(&sig);
    key.verify_strict(env.payload.as_bytes(), &sig)
        .map_err(|_| Refused::BadSignature(env.key_id.clone()))
}

/// Checks that a verified `batch` may be applied to a replica at `replica` for `port`.
/// `snapshot` says which kind was asked for. A snapshot must not be older than the
/// replica; a delta must follow it exactly.
///
/// # Errors
/// [`Refused`] saying which rule failed.
pub fn check_batch(
    batch: &ChangeBatch,
    replica: u64,
    port: &str,
    snapshot: bool,
) -> Result<(), Refused> {
    let kind = |s: bool| if s { "snapshot" } else { "delta" };
    if batch.snapshot != snapshot {
        return Err(Refused::WrongKind {
            expected: kind(snapshot),
            found: kind(batch.snapshot),
        });
    }
    if batch.port != port {
        return Err(Refused::WrongPort {
            expected: port.into(),
            found: batch.port.clone(),
        });
    }
    check_sequence(replica, batch).map_err(Refused::from)
}

/// Checks a verified `batch`'s signed as-of time against the replica's (`held`) at
/// `now`: never ahead of this clock beyond [`CLOCK_TOLERANCE`]; a snapshot or a statement
/// (a delta without changes) strictly newer than `held`, so a replayed one cannot refresh
/// the replica. A delta with changes is kept from replays by the sequence rule. A `held`
/// time itself ahead of the clock (stored while the clocks disagreed) is not held against
/// a batch, so a corrected clock recovers.
///
/// # Errors
/// [`Refused::Ahead`], [`Refused::NotNewer`].
pub fn check_as_of(
    batch: &ChangeBatch,
    held: Option<Timestamp>,
    now: Timestamp,
) -> Result<(), Refused> {
    let statement = batch.snapshot || batch.changes.is_empty();
    check_statement_as_of(batch.as_of, statement, held, now)
}

/// [`check_as_of`] for a signed `as_of`; `statement` for a snapshot (whole or chunked) or
/// a delta without changes.
fn check_statement_as_of(
    as_of: Timestamp,
    statement: bool,
    held: Option<Timestamp>,
    now: Timestamp,
) -> Result<(), Refused> {
    let tolerance = jiff::SignedDuration::try_from(CLOCK_TOLERANCE).unwrap_or_default();
    let ahead = |t: Timestamp| now.checked_add(tolerance).is_ok_and(|limit| t > limit);
    if ahead(as_of) {
        return Err(Refused::Ahead { as_of, now });
    }
    if let Some(held) = held
        && statement
        && !ahead(held)
        && as_of <= held
    {
        return Err(Refused::NotNewer { held, as_of });
    }
    Ok(())
}

impl From<SequenceError> for Refused {
    fn from(e: SequenceError) -> Self {
        match e {
            SequenceError::Gap { current, after_seq } => Self::Gap {
                replica: current,
                after_seq,
            },
            // A delta that ends below the replica would roll it back; one that only starts
            // below it repeats applied changes.
            SequenceError::Behind {
                current, last_seq, ..
            } if last_seq < current => Self::Rollback {
                replica: current,
                last_seq,
            },
            SequenceError::Behind {
                current, after_seq, ..
            } => Self::Replay {
                replica: current,
                after_seq,
            },
            SequenceError::Rollback { current, last_seq } => Self::Rollback {
                replica: current,
                last_seq,
            },
            SequenceError::Numbering {
                after_seq,
                last_seq,
                ..
            } => Self::Numbering {
                after_seq,
                last_seq,
            },
        }
    }
}

/// What replication works with.
#[derive(Debug, Clone)]
pub struct Replication {
    /// The port of entry this gate serves (the replica's scope).
    pub port: String,
    /// Where refusals are recorded as integrity alerts; its store holds the replica.
    pub journal: Arc<Journal>,
    /// Stops the loop.
    pub shutdown: CancellationToken,
}

impl Replication {
    fn store(&self) -> &crate::store::Store {
        self.journal.store()
    }
}

enum Poll {
    Applied,
    Empty,
}

/// What went wrong in one round.
enum Failure {
    Refused(Refused),
    /// An answer without signed data (`204`): it proves nothing about the replica.
    Unsigned(String),
    /// `404`: central does not serve this (an older central, or a snapshot it dropped).
    NotServed(String),
    Transport(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::Transport(e)
    }
}

/// Sends a registry GET; `Ok` only for `200`.
async fn send(
    client: &CentralClient,
    path: &str,
    timeout: Duration,
) -> Result<reqwest::Response, Failure> {
    let (instance, req) = client.get(path, timeout);
    let resp = client
        .exchange(instance, req)
        .await
        .context("registry request failed")?;
    match resp.status() {
        StatusCode::OK => Ok(resp),
        StatusCode::NO_CONTENT => Err(Failure::Unsigned(format!(
            "central answered {path} with 204 and no signed statement; the replica is not refreshed"
        ))),
        StatusCode::NOT_FOUND => Err(Failure::NotServed(format!("central does not serve {path}"))),
        s => {
            let text = resp.text().await.unwrap_or_default();
            Err(Failure::Transport(anyhow::anyhow!(
                "central answered {s}: {}",
                text.chars().take(300).collect::<String>()
            )))
        }
    }
}

async fn fetch(
    client: &CentralClient,
    path: &str,
    timeout: Duration,
) -> Result<SignedEnvelope, Failure> {
    let resp = match send(client, path, timeout).await {
        Err(Failure::NotServed(why)) => {
            return Err(Failure::Transport(anyhow::anyhow!("{why} (404)")));
        }
        r => r?,
    };
    envelope(resp, "registry").await
}

/// Reads an answer's signed envelope; `what` names the statement in the error.
async fn envelope(resp: reqwest::Response, what: &str) -> Result<SignedEnvelope, Failure> {
    let env: SignedEnvelope = resp
        .json()
        .await
        .with_context(|| format!("{what} envelope does not parse"))?;
    Ok(env)
}

/// Reads a snapshot chunk's bytes, at most [`MAX_CHUNK_BYTES`].
async fn fetch_chunk(
    client: &CentralClient,
    path: &str,
    timeout: Duration,
) -> Result<Vec<u8>, Failure> {
    let mut resp = send(client, path, timeout).await?;
    let too_big = || {
        Failure::Refused(Refused::Chunk(format!(
            "{path}: longer than {MAX_CHUNK_BYTES} bytes"
        )))
    };
    let declared = resp.content_length().unwrap_or(0);
    if declared > MAX_CHUNK_BYTES as u64 {
        return Err(too_big());
    }
    let mut body = Vec::with_capacity(usize::try_from(declared).unwrap_or(0));
    // Bounded: every turn adds bytes, and more than MAX_CHUNK_BYTES ends it.
    while let Some(part) = resp.chunk().await.context("reading a snapshot chunk")? {
        if body.len() + part.len() > MAX_CHUNK_BYTES {
            return Err(too_big());
        }
        body.extend_from_slice(&part);
    }
    Ok(body)
}

async fn meta(shared: &Replication) -> anyhow::Result<ReplicaMeta> {
    let store = shared.store().clone();
    tokio::task::spawn_blocking(move || store.replica_meta())
        .await
        .context("replica task panicked")
}

async fn apply(shared: &Replication, batch: ChangeBatch) -> Result<u64, Failure> {
    let store = shared.store().clone();
    let last = batch.last_seq;
    tokio::task::spawn_blocking(move || {
        store.apply_batch(&batch)?;
        store.mark_synced(Timestamp::now())
    })
    .await
    .context("replica task panicked")?
    .map_err(|e| Failure::Refused(Refused::Store(e.to_string())))?;
    Ok(last)
}

async fn blocking<T: Send + 'static>(
    shared: &Replication,
    f: impl FnOnce(&crate::store::Store) -> Result<T, crate::replica::ReplicaError> + Send + 'static,
) -> Result<T, Failure> {
    let store = shared.store().clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .context("replica task panicked")?
        .map_err(|e| Failure::Refused(Refused::Store(e.to_string())))
}

/// Bootstraps from a chunked snapshot, resuming a staged one; from the whole snapshot
/// when central serves no manifest.
async fn bootstrap(
    shared: &Replication,
    client: &CentralClient,
    keys: &[PinnedKey],
) -> Result<Poll, Failure> {
    let held = meta(shared).await?;
    let staged = {
        let store = shared.store().clone();
        tokio::task::spawn_blocking(move || store.staged_snapshot())
            .await
            .context("replica task panicked")?
    };
    let (m, next) = match staged {
        Some(s) if s.manifest.port == shared.port => (s.manifest, s.next),
        _ => {
            let path = format!("/api/v1/registry/snapshot/manifest?port={}", shared.port);
            let env = match fetch_manifest(client, &path).await {
                Err(Failure::NotServed(_)) => {
                    return bootstrap_whole(shared, client, keys, &held).await;
                }
                r => r?,
            };
            let m = verify_manifest(&env, keys).map_err(Failure::Refused)?;
            check_manifest(
                &m,
                held.sequence,
                held.as_of,
                &shared.port,
                Timestamp::now(),
            )
            .map_err(Failure::Refused)?;
            let staged = m.clone();
            blocking(shared, move |s| s.begin_staging(&staged)).await?;
            tracing::info!(
                port = %shared.port, manifest = %m.id, chunks = m.chunks.len(),
                records = m.records, sequence = m.last_seq,
                "bootstrapping the replica from a chunked snapshot"
            );
            (m, 0)
        }
    };
    let total = u32::try_from(m.chunks.len()).unwrap_or(u32::MAX);
    if next > 0 {
        tracing::info!(manifest = %m.id, next, total, "resuming a staged snapshot");
    }
    for k in next..total {
        let path = format!(
            "/api/v1/registry/snapshot/chunks/{}/{k}?port={}",
            m.id, shared.port
        );
        let bytes = match fetch_chunk(client, &path, Duration::from_secs(60)).await {
            Err(Failure::NotServed(why)) => {
                // Central dropped this snapshot (expired, or restarted): start again.
                blocking(shared, crate::store::Store::abandon_staging).await?;
                return Err(Failure::Transport(anyhow::anyhow!(
                    "{why}: the staged snapshot is dropped and the bootstrap starts again"
                )));
            }
            r => r?,
        };
        let changes = check_chunk(&m, k, &bytes).map_err(Failure::Refused)?;
        drop(bytes);
        let id = m.id.clone();
        let staged = blocking(shared, move |s| s.stage_chunk(&id, k, &changes)).await;
        if let Err(e) = staged {
            // A chunk that matches its hash but cannot be applied: central's snapshot is
            // unusable, so the next attempt starts from a new manifest.
            blocking(shared, crate::store::Store::abandon_staging).await?;
            return Err(e);
        }
    }
    // The replica may have moved on while chunks were staged (a statement newer than
    // the manifest): then this snapshot is stale and a new one is fetched.
    let held = meta(shared).await?;
    let fits = check_statement_as_of(m.as_of, true, held.as_of, Timestamp::now());
    let id = m.id.clone();
    let finished = match fits {
        Ok(()) => blocking(shared, move |s| s.finish_staging(&id)).await,
        Err(why) => Err(Failure::Refused(why)),
    };
    if let Err(e) = finished {
        blocking(shared, crate::store::Store::abandon_staging).await?;
        return Err(e);
    }
    blocking(shared, |s| s.mark_synced(Timestamp::now())).await?;
    tracing::info!(port = %shared.port, sequence = m.last_seq, records = m.records, "replica loaded from a chunked snapshot");
    Ok(Poll::Applied)
}

async fn fetch_manifest(client: &CentralClient, path: &str) -> Result<SignedEnvelope, Failure> {
    let resp = send(client, path, Duration::from_secs(60)).await?;
    envelope(resp, "snapshot manifest").await
}

/// Bootstraps from the whole snapshot in one envelope (a central without manifests),
/// over the replica `held`.
async fn bootstrap_whole(
    shared: &Replication,
    client: &CentralClient,
    keys: &[PinnedKey],
    held: &ReplicaMeta,
) -> Result<Poll, Failure> {
    let path = format!("/api/v1/registry/snapshot?port={}", shared.port);
    let env = fetch(client, &path, Duration::from_secs(60)).await?;
    let batch = verify_envelope(&env, keys).map_err(Failure::Refused)?;
    check_batch(&batch, held.sequence, &shared.port, true).map_err(Failure::Refused)?;
    check_as_of(&batch, held.as_of, Timestamp::now()).map_err(Failure::Refused)?;
    let last = apply(shared, batch).await?;
    tracing::info!(port = %shared.port, sequence = last, "replica loaded from a snapshot");
    Ok(Poll::Applied)
}

async fn poll_changes(
    shared: &Replication,
    client: &CentralClient,
    keys: &[PinnedKey],
    wait: Duration,
) -> Result<Poll, Failure> {
    let held = meta(shared).await?;
    let current = held.sequence;
    let path = format!(
        "/api/v1/registry/changes?port={}&after={current}&wait={}",
        shared.port,
        wait.as_secs()
    );
    let env = fetch(client, &path, wait + Duration::from_secs(15)).await?;
    let batch = verify_envelope(&env, keys).map_err(Failure::Refused)?;
    check_batch(&batch, current, &shared.port, false).map_err(Failure::Refused)?;
    check_as_of(&batch, held.as_of, Timestamp::now()).map_err(Failure::Refused)?;
    let n = batch.changes.len();
    let last = apply(shared, batch).await?;
    if n == 0 {
        tracing::debug!(sequence = last, "central signed: no changes");
        return Ok(Poll::Empty);
    }
    tracing::info!(changes = n, sequence = last, "registry changes applied");
    Ok(Poll::Applied)
}

async fn refuse(shared: &Replication, why: &Refused) {
    metrics::counter!("aeogate_replica_refused_total", "why" => why.label()).increment(1);
    tracing::error!(port = %shared.port, error = %why, "registry batch refused; replica unchanged");
    if let Err(e) = shared
        .journal
        .append(vec![EventBody::IntegrityAlert {
            what: "REGISTRY_BATCH_REFUSED".into(),
            detail: why.to_string(),
        }])
        .await
    {
        tracing::error!(error = %format!("{e:#}"), "integrity alert not journaled");
    }
}

/// Runs replication until shutdown.
pub async fn run_replication(shared: Replication, client: CentralClient, cfg: CentralConfig) {
    let keys = cfg.registry_keys.clone();
    let wait = cfg.poll_wait.min(Duration::from_secs(60));
    {
        let store = shared.store().clone();
        let port = shared.port.clone();
        let bound = tokio::task::spawn_blocking(move || store.bind_port(&port)).await;
        match bound {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                refuse(&shared, &Refused::Store(e.to_string())).await;
                tracing::error!("replication stopped: the store holds another port's replica");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "replication stopped");
                return;
            }
        }
    }
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
    let mut need_snapshot = false;
    let mut last_start: Option<tokio::time::Instant> = None;
    loop {
        if shared.shutdown.is_cancelled() {
            return;
        }
        if let Some(at) = last_start {
            tokio::select! {
                () = shared.shutdown.cancelled() => return,
                () = tokio::time::sleep_until(at + MIN_POLL_INTERVAL) => {}
            }
        }
        last_start = Some(tokio::time::Instant::now());
        let loaded = match meta(&shared).await {
            Ok(m) => m.sequence > 0 || m.as_of.is_some(),
            Err(_) => false,
        };
        // A chunked snapshot staged before a restart or a broken connection is finished
        // first.
        let staging = {
            let store = shared.store().clone();
            tokio::task::spawn_blocking(move || store.staged_snapshot().is_some())
                .await
                .unwrap_or(false)
        };
        let round = async {
            if !loaded || need_snapshot || staging {
                bootstrap(&shared, &client, &keys).await
            } else {
                poll_changes(&shared, &client, &keys, wait).await
            }
        };
        let result = tokio::select! {
            () = shared.shutdown.cancelled() => return,
            r = round => r,
        };
        match result {
            Ok(_) => {
                backoff.reset();
                need_snapshot = false;
                metrics::gauge!("aeogate_replica_sync_ok").set(1.0);
                continue;
            }
            Err(Failure::Refused(why)) => {
                // A gap heals only through a snapshot (which must not be older).
                need_snapshot = matches!(why, Refused::Gap { .. });
                refuse(&shared, &why).await;
            }
            Err(Failure::Unsigned(why)) => {
                metrics::counter!("aeogate_replica_refused_total", "why" => "unsigned")
                    .increment(1);
                tracing::warn!(port = %shared.port, %why, "registry answer without signed data");
            }
            Err(Failure::Transport(e)) => {
                tracing::warn!(error = %format!("{e:#}"), "registry poll failed");
            }
            Err(Failure::NotServed(why)) => {
                tracing::warn!(%why, "registry poll failed (404)");
            }
        }
        metrics::gauge!("aeogate_replica_sync_ok").set(0.0);
        let delay = backoff.next_delay();
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};

    fn batch(after: u64, last: u64, snapshot: bool) -> ChangeBatch {
        let seqs: Vec<u64> = (after + 1..=last).collect();
        crate::replica::tests::batch(snapshot, after, last, &seqs)
    }

    fn signed(b: &ChangeBatch, key: &SigningKey, key_id: &str) -> SignedEnvelope {
        let payload = serde_json::to_string(b).expect("json");
        SignedEnvelope {
            key_id: key_id.into(),
            signature: hex::encode(key.sign(payload.as_bytes()).to_bytes()),
            payload,
        }
    }

    fn key() -> (SigningKey, Vec<PinnedKey>) {
        let sk = SigningKey::from_bytes(&[7u8; 32]);
        let pinned = vec![PinnedKey {
            key_id: "k1".into(),
            public_key: hex::encode(sk.verifying_key().to_bytes()),
        }];
        (sk, pinned)
    }

    #[test]
    fn accepts_a_batch_signed_by_a_pinned_key() {
        let (sk, keys) = key();
        let b = batch(3, 5, false);
        assert_eq!(verify_envelope(&signed(&b, &sk, "k1"), &keys), Ok(b));
    }

    #[test]
    fn refuses_an_altered_payload_an_unknown_key_and_a_foreign_signer() {
        let (sk, keys) = key();
        let mut env = signed(&batch(3, 5, false), &sk, "k1");
        env.payload = env.payload.replace("C4", "C9");
        assert_eq!(
            verify_envelope(&env, &keys),
            Err(Refused::BadSignature("k1".into()))
        );
        let env = signed(&batch(3, 5, false), &sk, "k2");
        assert_eq!(
            verify_envelope(&env, &keys),
            Err(Refused::UnknownKey("k2".into()))
        );
        let other = SigningKey::from_bytes(&[9u8; 32]);
        let env = signed(&batch(3, 5, false), &other, "k1");
        assert_eq!(
            verify_envelope(&env, &keys),
            Err(Refused::BadSignature("k1".into()))
        );
        let mut env = signed(&batch(3, 5, false), &sk, "k1");
        env.signature.truncate(10);
        assert_eq!(
            verify_envelope(&env, &keys),
            Err(Refused::SignatureEncoding)
        );
    }

    #[test]
    fn delta_must_follow_the_replica_exactly() {
        let mut misnumbered = batch(5, 7, false);
        misnumbered.changes.swap(0, 1);
        // (batch, port, expected) against a replica at 5 bound to PORT-A
        let cases = [
            (batch(5, 7, false), "PORT-A", "ok"),
            (batch(6, 7, false), "PORT-A", "gap"),
            (batch(4, 6, false), "PORT-A", "replay"),
            (batch(1, 3, false), "PORT-A", "rollback"),
            (batch(5, 7, false), "PORT-B", "wrong_port"),
            (misnumbered, "PORT-A", "numbering"),
            (batch(5, 7, true), "PORT-A", "wrong_kind"),
        ];
        for (b, port, want) in cases {
            let got = check_batch(&b, 5, port, false);
            let label = got.as_ref().map_or_else(Refused::label, |()| "ok");
            assert_eq!(
                label, want,
                "after {} last {} snapshot {} port {port}: {got:?}",
                b.after_seq, b.last_seq, b.snapshot
            );
        }
    }

    #[test]
    fn a_statement_must_be_newer_than_the_replica_and_not_ahead_of_the_clock() {
        let t = |s: &str| -> Timestamp { s.parse().expect("ts") };
        let now = t("2026-03-01T12:00:00Z");
        let held = Some(t("2026-03-01T11:59:00Z"));
        let with = |mut b: ChangeBatch, as_of: &str| {
            b.as_of = t(as_of);
            b
        };
        let statement = |as_of: &str| with(batch(5, 5, false), as_of);
        // (batch, held, expected)
        let cases: Vec<(ChangeBatch, Option<Timestamp>, &str)> = vec![
            (statement("2026-03-01T11:59:30Z"), held, "ok"),
            // The same statement again, or an older one: a replay.
            (statement("2026-03-01T11:59:00Z"), held, "not_newer"),
            (statement("2026-03-01T10:00:00Z"), held, "not_newer"),
            (
                with(batch(0, 9, true), "2026-03-01T11:00:00Z"),
                held,
                "not_newer",
            ),
            // Changes: the sequence rule keeps replays out; an older as-of is no refusal.
            (with(batch(5, 6, false), "2026-03-01T11:00:00Z"), held, "ok"),
            // Ahead of this clock beyond the tolerance, even with changes.
            (statement("2026-03-01T12:00:05Z"), held, "ok"),
            (statement("2026-03-01T12:05:00Z"), held, "ahead"),
            (
                with(batch(5, 6, false), "2026-03-02T12:00:00Z"),
                held,
                "ahead",
            ),
            // Nothing held yet.
            (statement("2026-03-01T10:00:00Z"), None, "ok"),
            // A held time ahead of the clock (stored while clocks disagreed) does not block.
            (
                statement("2026-03-01T11:59:30Z"),
                Some(t("2026-03-03T00:00:00Z")),
                "ok",
            ),
        ];
        for (b, held, want) in cases {
            let got = check_as_of(&b, held, now);
            let label = got.as_ref().map_or_else(Refused::label, |()| "ok");
            assert_eq!(label, want, "as_of {} held {held:?}: {got:?}", b.as_of);
        }
    }

    #[test]
    fn a_manifest_is_checked_like_a_snapshot_and_in_itself() {
        let t = |s: &str| -> Timestamp { s.parse().expect("ts") };
        let now = t("2026-03-01T12:00:00Z");
        let held = Some(t("2026-03-01T11:00:00Z"));
        let good = SnapshotManifest {
            v: protocol::schema::SCHEMA_VERSION,
            id: "m1".into(),
            port: "PORT-A".into(),
            last_seq: 9,
            as_of: t("2026-03-01T11:30:00Z"),
            chunk_records: 4,
            records: 9,
            chunks: vec!["a".repeat(64), "b".repeat(64), "0".repeat(64)],
        };
        let label = |m: &SnapshotManifest, replica: u64| {
            check_manifest(m, replica, held, "PORT-A", now).map_or_else(|e| e.label(), |()| "ok")
        };
        let with = |f: &dyn Fn(&mut SnapshotManifest)| {
            let mut m = good.clone();
            f(&mut m);
            m
        };
        assert_eq!(label(&good, 9), "ok");
        assert_eq!(label(&good, 10), "rollback");
        assert_eq!(label(&with(&|m| m.port = "PORT-B".into()), 0), "wrong_port");
        assert_eq!(
            label(&with(&|m| m.as_of = t("2026-03-01T10:00:00Z")), 0),
            "not_newer"
        );
        assert_eq!(
            label(&with(&|m| m.as_of = t("2026-03-02T10:00:00Z")), 0),
            "ahead"
        );
        assert_eq!(label(&with(&|m| m.chunk_records = 0), 0), "manifest");
        assert_eq!(
            label(&with(&|m| m.chunk_records = MAX_CHUNK_RECORDS + 1), 0),
            "manifest"
        );
        assert_eq!(label(&with(&|m| m.records = 13), 0), "manifest");
        assert_eq!(
            label(&with(&|m| m.chunks[1] = "B".repeat(64)), 0),
            "manifest"
        );
        assert_eq!(label(&with(&|m| m.chunks[2].truncate(63)), 0), "manifest");
    }

    #[test]
    fn a_snapshot_may_not_be_older_than_the_replica() {
        assert_eq!(check_batch(&batch(0, 9, true), 5, "PORT-A", true), Ok(()));
        assert!(matches!(
            check_batch(&batch(0, 4, true), 5, "PORT-A", true),
            Err(Refused::Rollback { .. })
        ));
    }
}
