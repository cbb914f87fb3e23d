//! Replication client: keeps the local registry and advance-cargo replica current from
//! central (docs/delivery.md, "Replication").
//!
//! 1. The replica is bound to the gate's port (`Store::bind_port`); a store that holds
//!    another port's data is refused and replication stops (an integrity alert says why).
//! 2. A replica never loaded bootstraps from `GET /api/v1/registry/snapshot?port=P`.
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

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ed25519_dalek::{Signature, VerifyingKey};
use jiff::Timestamp;
use protocol::schema::{ChangeBatch, EventBody, SignedEnvelope, check_version};
use reqwest::StatusCode;
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
        }
    }
}

/// Verifies `env` against the pinned `keys` and only then parses its payload.
///
/// # Errors
/// [`Refused`] naming the key or the failure.
pub fn verify_envelope(env: &SignedEnvelope, keys: &[PinnedKey]) -> Result<ChangeBatch, Refused> {
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
        .map_err(|_| Refused::BadSignature(env.key_id.clone()))?;
    let batch: ChangeBatch =
        serde_json::from_str(&env.payload).map_err(|e| Refused::Payload(e.to_string()))?;
    check_version(batch.v).map_err(|e| Refused::Payload(e.to_string()))?;
    Ok(batch)
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
    let tolerance = jiff::SignedDuration::try_from(CLOCK_TOLERANCE).unwrap_or_default();
    let ahead = |t: Timestamp| now.checked_add(tolerance).is_ok_and(|limit| t > limit);
    if ahead(batch.as_of) {
        return Err(Refused::Ahead {
            as_of: batch.as_of,
            now,
        });
    }
    let statement = batch.snapshot || batch.changes.is_empty();
    if let Some(held) = held
        && statement
        && !ahead(held)
        && batch.as_of <= held
    {
        return Err(Refused::NotNewer {
            held,
            as_of: batch.as_of,
        });
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
    Transport(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::Transport(e)
    }
}

async fn fetch(
    client: &CentralClient,
    path: &str,
    timeout: Duration,
) -> Result<SignedEnvelope, Failure> {
    let (instance, req) = client.get(path, timeout);
    let t1 = jiff::Timestamp::now();
    let resp = req
        .send()
        .await
        .inspect_err(|_| client.failed(instance))
        .context("registry request failed")?;
    client.observe(t1, &resp);
    if resp.status().is_server_error() {
        client.failed(instance);
    }
    match resp.status() {
        StatusCode::NO_CONTENT => Err(Failure::Unsigned(format!(
            "central answered {path} with 204 and no signed statement; the replica is not refreshed"
        ))),
        StatusCode::OK => {
            let env: SignedEnvelope = resp
                .json()
                .await
                .context("registry envelope does not parse")?;
            Ok(env)
        }
        s => {
            let text = resp.text().await.unwrap_or_default();
            Err(Failure::Transport(anyhow::anyhow!(
                "central answered {s}: {}",
                text.chars().take(300).collect::<String>()
            )))
        }
    }
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

async fn bootstrap(
    shared: &Replication,
    client: &CentralClient,
    keys: &[PinnedKey],
) -> Result<Poll, Failure> {
    let held = meta(shared).await?;
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
        let round = async {
            if !loaded || need_snapshot {
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
        assert_eq!(check_batch(&batch(5, 7, false), 5, "PORT-A", false), Ok(()));
        assert!(matches!(
            check_batch(&batch(6, 7, false), 5, "PORT-A", false),
            Err(Refused::Gap { .. })
        ));
        assert!(matches!(
            check_batch(&batch(4, 6, false), 5, "PORT-A", false),
            Err(Refused::Replay { .. })
        ));
        assert!(matches!(
            check_batch(&batch(1, 3, false), 5, "PORT-A", false),
            Err(Refused::Rollback { .. })
        ));
        assert!(matches!(
            check_batch(&batch(5, 7, false), 5, "PORT-B", false),
            Err(Refused::WrongPort { .. })
        ));
        let mut b = batch(5, 7, false);
        b.changes.swap(0, 1);
        assert!(matches!(
            check_batch(&b, 5, "PORT-A", false),
            Err(Refused::Numbering { .. })
        ));
        assert!(matches!(
            check_batch(&batch(5, 7, true), 5, "PORT-A", false),
            Err(Refused::WrongKind { .. })
        ));
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
    fn a_snapshot_may_not_be_older_than_the_replica() {
        assert_eq!(check_batch(&batch(0, 9, true), 5, "PORT-A", true), Ok(()));
        assert!(matches!(
            check_batch(&batch(0, 4, true), 5, "PORT-A", true),
            Err(Refused::Rollback { .. })
        ));
    }
}
