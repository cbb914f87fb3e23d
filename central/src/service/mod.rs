//! [`Central`]: the opened store, the signing key and the live channels, with the
//! operations the HTTP API, the dashboard, the CLI and the demo call. Handlers reach the
//! store only through these operations; each family answers with its own error enum, and
//! [`crate::errors`] maps those to HTTP statuses once.
//!
//! # Layout
//! - this module: [`Central`] itself (opening, the live channels, [`Central::blocking`]).
//! - `agents`: agent tokens, ingest of journal batches and heartbeats
//!   ([`crate::ingest::IngestError`]).
//! - `registry`: imports, status changes, signed snapshots and change batches
//!   ([`crate::registry::RegistryError`]).
//! - `staff`: staff users, logins and sessions ([`crate::auth::AuthError`]).
//! - `cases`: case detail and staff actions on cases ([`crate::cases::CaseError`]).
//! - `portal`: the programme portal: companies, self-assessment, applications,
//!   certification and suspension through the registry's change path
//!   ([`PortalError`]).
//! - `queries`: read-only views (events, gates, alerts, audit, statistics, operators,
//!   exports).
//!
//! Methods here block (they call the store directly); async code calls them through
//! [`Central::blocking`].

mod agents;
mod cases;
mod portal;
mod queries;
mod registry;
mod staff;

use std::sync::Arc;

use protocol::schema::GateId;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::auth;
use crate::config::Config;
use crate::model::Case;
use crate::signing::Signer;
use crate::store::{RedbStore, Store, StoreError};

pub use portal::{PORTAL_SOURCE, PortalError, Registration, parse_kind};
pub use registry::{IMPORT_CHUNK, ImportReport};
pub use staff::LoginResult;

struct Inner {
    store: Arc<dyn Store>,
    signer: Signer,
    cfg: Config,
    /// Latest registry change seq, for long-polling replicas.
    registry_seq: watch::Sender<u64>,
    /// Every new or changed case, for the live stream.
    cases: broadcast::Sender<Case>,
    /// Cancelled when the server shuts down: ends live streams and long polls.
    stop: CancellationToken,
    /// Failed logins per user name and client address.
    limiter: std::sync::Mutex<auth::LoginLimiter>,
    /// Staff passwords at the configured Argon2id cost (with the dummy hash verified
    /// against when a login names an unknown user, [`Central::login`]).
    passwords: aeogate_web::password::Passwords,
    /// Chunked snapshots whose chunks are served.
    snapshots: crate::snapshots::Snapshots,
    /// Held while a whole snapshot is made: it is read, sorted and serialised in memory
    /// (about 1.2 GiB for a 1M-record port), so one is made at a time and a second
    /// request meanwhile is answered 503 with `Retry-After` (the chunked snapshot, which
    /// agents use first, holds one chunk and is not limited).
    whole_snapshot: std::sync::Mutex<()>,
}

/// Central's state. Cheap to clone.
#[derive(Clone)]
pub struct Central {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Central {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Central")
            .field("store", &self.inner.store)
            .field("signer", &self.inner.signer)
            .finish_non_exhaustive()
    }
}

/// A malformed port-of-entry name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadPort(String);

/// Checks a port-of-entry name: 1..=32 characters from `[A-Za-z0-9._-]` (the same rule
/// as gate names, so it is safe in paths, keys and logs).
///
/// # Errors
/// Saying what is wrong.
pub fn check_port(port: &str) -> Result<(), BadPort> {
    GateId::parse(port)
        .map(|_| ())
        .map_err(|e| BadPort(e.to_string().replace("gate id", "port")))
}

/// Queued ingest batches folded into the programme roll-ups in one transaction at most
/// (each a few kilobytes: a fold holds a few megabytes).
pub const FOLD_BATCHES: usize = 1_000;
/// How long the roll-up folder waits after a fold that found fewer than
/// [`FOLD_BATCHES`] queued. A fold's writes grow with the hours and groups its batches
/// count, not with the batches: at 40,000 events/s, folds a second apart wrote about
/// 155,000 hourly and 107,000 packed rows per million events. Readers count what is
/// queued, so the figures stay exact whatever the pause.
const FOLD_PAUSE: std::time::Duration = std::time::Duration::from_secs(2);

/// How long the roll-up folder waits after folding `folded` batches: not at all after a
/// full fold (more may wait), else [`FOLD_PAUSE`], so that a fold takes many batches at
/// once (its writes grow with the hours and groups counted, not with the batches).
#[must_use]
pub fn fold_pause(folded: usize) -> std::time::Duration {
    if folded >= FOLD_BATCHES {
        std::time::Duration::ZERO
    } else {
        FOLD_PAUSE
    }
}

impl Central {
    /// Opens the store (the PostgreSQL database of `[store] url`, else the redb file
    /// `store_path`) and loads the signing key named in `cfg`.
    ///
    /// # Errors
    /// When either cannot be opened.
    pub fn open(cfg: &Config) -> anyhow::Result<Central> {
        use anyhow::Context as _;
        let (store, pg): (Arc<dyn Store>, _) = match &cfg.store {
            Some(pg) => {
                let s = Arc::new(
                    crate::store::PgStore::open_with(pg.url.expose(), pg.ca_cert.as_deref())
                        .with_context(|| format!("opening store {:?}", pg.url))?,
                );
                (s.clone(), Some(s))
            }
            None => (
                Arc::new(
                    RedbStore::open(&cfg.store_path)
                        .with_context(|| format!("opening store {}", cfg.store_path.display()))?,
                ),
                None,
            ),
        };
        let signer = Signer::load(&cfg.signing_key_path)?;
        let central = Self::with_store(store, signer, cfg.clone())?;
        if let Some(pg) = pg {
            central.follow_other_instances(pg.clone())?;
            central.keep_rollups_folded(pg.clone())?;
            if let Some(months) = cfg.store.as_ref().and_then(|s| s.retention_months) {
                central.keep_retention(pg, months.get())?;
            }
        }
        Ok(central)
    }

    /// Folds the ingested batches queued for the programme roll-ups
    /// ([`crate::store::Store::fold_rollups`]) as they come, on a thread of its own that
    /// ends within a second of this central being dropped or stopped. What it leaves
    /// queued (stopped, or the database down) is counted by readers all the same and
    /// folded by any instance later.
    fn keep_rollups_folded(&self, pg: Arc<crate::store::PgStore>) -> std::io::Result<()> {
        use crate::store::Store as _;
        self.spawn_tied("central-rollups", move |_, go_on| {
            while go_on() {
                let folded = pg.fold_rollups(FOLD_BATCHES);
                if let Ok(n) = &folded {
                    metrics::counter!("central_programme_folded_batches_total")
                        .increment(*n as u64);
                    // What is left: a queue that grows while the folder runs flat out is
                    // a folder behind its ingest (a backfill, or too few instances).
                    if let Ok(left) = pg.queued_rollups() {
                        metrics::gauge!("central_programme_queue_batches").set(left as f64);
                    }
                }
                let pause = match folded {
                    Ok(n) => fold_pause(n),
                    Err(e) => {
                        tracing::warn!(error = %e, "programme roll-ups: folding the queued batches failed; trying again in a second");
                        std::time::Duration::from_secs(1)
                    }
                };
                // In short steps, so the thread ends soon after its central.
                let until = std::time::Instant::now() + pause;
                while go_on() && std::time::Instant::now() < until {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
        })
    }

    /// Drops event months past `months` now and every hour after, on a thread of its own
    /// that ends within a second of this central being dropped or stopped.
    fn keep_retention(&self, pg: Arc<crate::store::PgStore>, months: u32) -> std::io::Result<()> {
        self.spawn_tied("central-retention", move |_, go_on| {
            while go_on() {
                if let Err(e) = pg.apply_retention(months, jiff::Timestamp::now()) {
                    tracing::warn!(error = %e, "retention: dropping old event months failed; trying again in an hour");
                }
                // An hour, in one-second steps so that stopping is not held up.
                for _ in 0..3_600 {
                    if !go_on() {
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
            }
        })
    }

    /// Feeds the live channels with what other instances on the same PostgreSQL
    /// database do (cases they open or change, registry changes), on a thread of its own
    /// that ends within a second of this central being dropped or stopped.
    fn follow_other_instances(&self, pg: Arc<crate::store::PgStore>) -> std::io::Result<()> {
        use crate::store::LiveUpdate;
        self.spawn_tied("central-live-updates", move |weak, go_on| {
            pg.follow(go_on, &mut |update| {
                let Some(inner) = weak.upgrade() else { return };
                match update {
                    LiveUpdate::Case(c) => {
                        let _ = inner.cases.send(*c);
                    }
                    LiveUpdate::RegistrySeq(seq) => {
                        inner.registry_seq.send_if_modified(|s| {
                            let newer = seq > *s;
                            if newer {
                                *s = seq;
                            }
                            newer
                        });
                    }
                }
            });
        })
    }

    /// Runs `work` on a thread named `name`, without keeping this central alive: `work`
    /// gets a weak handle and `go_on`, true until this central is dropped or stopped.
    fn spawn_tied(
        &self,
        name: &str,
        work: impl FnOnce(&std::sync::Weak<Inner>, &dyn Fn() -> bool) + Send + 'static,
    ) -> std::io::Result<()> {
        let weak = Arc::downgrade(&self.inner);
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let go_on = || {
                    weak.upgrade()
                        .is_some_and(|inner| !inner.stop.is_cancelled())
                };
                work(&weak, &go_on);
            })?;
        Ok(())
    }

    /// Builds central over any [`Store`] backend.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn with_store(
        store: Arc<dyn Store>,
        signer: Signer,
        cfg: Config,
    ) -> Result<Central, StoreError> {
        let seq = store.last_seq()?;
        let snapshots = crate::snapshots::Snapshots::new(
            cfg.snapshot_dir.clone().unwrap_or_else(std::env::temp_dir),
        );
        let (registry_seq, _) = watch::channel(seq);
        let (cases, _) = broadcast::channel(1024);
        Ok(Central {
            inner: Arc::new(Inner {
                store,
                signer,
                passwords: aeogate_web::password::Passwords::new(aeogate_web::password::Cost {
                    m_cost_kib: cfg.argon2_m_cost_kib,
                    t_cost: cfg.argon2_t_cost,
                }),
                cfg,
                registry_seq,
                cases,
                stop: CancellationToken::new(),
                limiter: std::sync::Mutex::new(auth::LoginLimiter::default()),
                snapshots,
                whole_snapshot: std::sync::Mutex::new(()),
            }),
        })
    }

    /// The storage backend, for benchmarks and tests that measure or inspect it
    /// directly. The API, the dashboard, the CLI and the wiring use the operations of
    /// [`Central`]: `central/clippy.toml` disallows this method inside the crate, so
    /// `cargo clippy -D warnings` refuses a handler that reaches for the store.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The configuration central was opened with.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.inner.cfg
    }

    /// Removes what centrals no longer running left under `snapshot_dir` (their
    /// snapshot folders; see [`crate::snapshots`]). `central serve` does it at start.
    ///
    /// # Errors
    /// When the folder cannot be listed or a dead folder cannot be removed.
    pub fn clear_dead_snapshots(&self) -> std::io::Result<crate::snapshots::Cleared> {
        self.inner.snapshots.clear_dead()
    }

    /// Cancelled at shutdown.
    #[must_use]
    pub fn stop_token(&self) -> &CancellationToken {
        &self.inner.stop
    }

    /// Runs blocking work (store calls) off the async workers. A task that panicked is
    /// reported as a storage failure.
    ///
    /// # Errors
    /// The closure's error, or [`StoreError::Backend`] if it panicked.
    pub async fn blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Central) -> Result<T, E> + Send + 'static,
    {
        let c = self.clone();
        match tokio::task::spawn_blocking(move || f(&c)).await {
            Ok(r) => r,
            Err(e) => Err(StoreError::Backend(format!("blocking task failed: {e}")).into()),
        }
    }

    /// Whether the storage answers now (`/readyz`). Blocks: call it through
    /// [`Central::blocking`].
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] (or another storage error) while it does not.
    pub fn ready(&self) -> Result<(), StoreError> {
        self.inner.store.ready()
    }

    /// Subscribes to new and changed cases.
    #[must_use]
    pub fn subscribe_cases(&self) -> broadcast::Receiver<Case> {
        self.inner.cases.subscribe()
    }

    /// Subscribes to the registry's latest seq.
    #[must_use]
    pub fn subscribe_registry(&self) -> watch::Receiver<u64> {
        self.inner.registry_seq.subscribe()
    }

    fn publish_cases(&self, cases: Vec<Case>) {
        for c in cases {
            // No subscriber is fine: nobody is watching the live view.
            let _ = self.inner.cases.send(c);
        }
    }

    /// Hex of the signing key's public key.
    #[must_use]
    pub fn public_key_hex(&self) -> String {
        self.inner.signer.public_key_hex()
    }

    /// The signing key's id.
    #[must_use]
    pub fn key_id(&self) -> String {
        self.inner.signer.key_id().to_owned()
    }
}
