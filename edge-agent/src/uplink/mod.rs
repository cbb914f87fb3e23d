//! Uplink: drains the journal to central and sends heartbeats (docs/delivery.md).
//!
//! - Batches of at most `central.uplink_batch` unacknowledged entries (never more than
//!   central's [`MAX_BATCH_ENTRIES`]) are posted to
//!   `POST {url}/api/v1/agents/{gate}/events` as an [`IngestBatch`]. The acknowledged
//!   cursor moves only to central's `acked_through` (never past the journal head), so an
//!   entry central has not confirmed is sent again, and nothing is ever deleted for being
//!   sent. Central deduplicates by `(agent, seq)`.
//! - With a backlog larger than one batch, the first batch of each drain round carries seal
//!   exceptions and integrity alerts first (`Store::unacked(.., true)`), so central opens
//!   those cases before the routine backlog arrives; later batches go in order, which is
//!   what lets central's contiguous `acked_through` advance.
//! - Failures back off exponentially with full jitter (0.5 s to 60 s).
//!
//! - Before each batch the drain yields to the lanes' journal and read-log writes
//!   ([`drain::yield_to_lanes`], [`crate::lane_work`]), within a bound.
//! - The journal is read and each batch encoded to JSON on a blocking thread, off the async
//!   runtime's workers that the lanes' tasks run on: the encoding of two batches of 1,000
//!   entries is several milliseconds of CPU.
//!
//! These rules are [`drain`], sans-IO with table tests; this module is the I/O around them.
//! - A heartbeat goes to `POST {url}/api/v1/agents/{gate}/heartbeat` every
//!   `central.heartbeat_every`.
//!
//! The HTTP client ([`CentralClient`]) uses rustls with the ring provider and trusts only
//! the CA in `central.ca_cert`; plain `http://` is accepted only for a loopback host (tests
//! and a central on the same box).
//!
//! Failover: with `central.urls`, the client talks to one instance at a time and moves to
//! the next (round robin) when a request to it fails in transport or is answered 5xx
//! (e.g. 503 while its database is away). The instances share one database, so the
//! cursor and acknowledgement rules above do not change: a batch whose answer was lost
//! is sent again, to whichever instance is current, and stored once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use jiff::Timestamp;
use protocol::schema::{
    ClosedLane, GateId, Heartbeat, IngestAck, IngestBatch, SCHEMA_VERSION, check_version,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use self::drain::{Drain, Next, Yield};
use crate::clock::Clock;
use crate::config::CentralConfig;
use crate::journal::Journal;
use crate::lane_work::LaneWork;
use crate::live::Devices;
use crate::store::backlog;

/// How long a delivery in flight may still take once the agent is stopping.
const LAST_ATTEMPT: Duration = Duration::from_secs(2);

/// Most rounds of one yield (each waits for an answer or a timer); the time bound
/// [`drain::LANE_YIELD_MAX`] ends it first in practice.
const YIELD_ROUNDS: usize = 1_000;

pub mod background;
pub mod drain;

pub use drain::MAX_BATCH_ENTRIES;

/// Installs ring as the process's rustls crypto provider (once; a provider already
/// installed is kept). Every TLS user in the process must agree on one provider.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An HTTP client for central with the agent's credentials.
#[derive(Debug, Clone)]
pub struct CentralClient {
    http: reqwest::Client,
    /// Base URLs of the central instances, in configuration order.
    bases: Arc<[String]>,
    /// Index into `bases` of the instance in use (shared by every clone).
    current: Arc<AtomicUsize>,
    token: String,
    gate: GateId,
    /// Every answer from central is a clock sample (crate::clock).
    clock: Option<Arc<Clock>>,
}

/// Whether `url`'s host is a loopback address or `localhost`.
#[must_use]
pub fn is_loopback_url(url: &reqwest::Url) -> bool {
    crate::config::is_loopback_url(url)
}

impl CentralClient {
    /// Builds the client for `cfg`.
    ///
    /// # Errors
    /// An unparsable URL, `http://` to a non-loopback host, `https://` without
    /// `central.ca_cert`, an unreadable or invalid CA file.
    pub fn new(cfg: &CentralConfig, gate: &GateId) -> anyhow::Result<Self> {
        install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .user_agent(concat!("aeogate-edge-agent/", env!("CARGO_PKG_VERSION")));
        let urls = if cfg.urls.is_empty() {
            std::slice::from_ref(&cfg.url)
        } else {
            cfg.urls.as_slice()
        };
        let mut https = false;
        for u in urls {
            let url = reqwest::Url::parse(u)
                .with_context(|| format!("central.url {u:?} is not a URL"))?;
            match url.scheme() {
                "http" if is_loopback_url(&url) => {}
                "http" => bail!(
                    "central.url {u}: plain http is only allowed to a loopback host; use https with central.ca_cert"
                ),
                "https" => https = true,
                other => bail!("central.url {u}: scheme {other:?} is not http or https"),
            }
        }
        if https {
            let path = cfg.ca_cert.as_ref().with_context(|| {
                    format!("central.url {} is https but central.ca_cert is not set (the agent trusts only central's CA)", urls.join(", "))
                })?;
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read central.ca_cert {}", path.display()))?;
            // A bundle may hold more than one CA (the old and the new during a CA change).
            let certs = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
                format!(
                    "central.ca_cert {} is not a PEM certificate bundle",
                    path.display()
                )
            })?;
            if certs.is_empty() {
                bail!("central.ca_cert {} holds no certificate", path.display());
            }
            builder = builder.tls_certs_only(certs);
            if let (Some(cert), Some(key)) = (&cfg.client_cert, &cfg.client_key) {
                let mut pem = std::fs::read(cert).with_context(|| {
                    format!("cannot read central.client_cert {}", cert.display())
                })?;
                pem.push(b'\n');
                pem.extend(std::fs::read(key).with_context(|| {
                    format!("cannot read central.client_key {}", key.display())
                })?);
                let identity = reqwest::Identity::from_pem(&pem).with_context(|| {
                        format!(
                            "central.client_cert {} and client_key {} are not a PEM certificate and its key",
                            cert.display(),
                            key.display()
                        )
                    })?;
                builder = builder.identity(identity);
            }
        }
        Ok(Self {
            http: builder.build().context("building the HTTP client")?,
            bases: urls
                .iter()
                .map(|u| u.trim_end_matches('/').to_owned())
                .collect(),
            current: Arc::new(AtomicUsize::new(0)),
            token: cfg.token.clone(),
            gate: gate.clone(),
            clock: None,
        })
    }

    /// Measures `clock` against central on every answer.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Notes the clock sample of an answer to a request sent at `t1` (agent clock).
    fn observe(&self, t1: Timestamp, resp: &reqwest::Response) {
        if let Some(clock) = &self.clock {
            clock.observe(t1, resp.headers(), Timestamp::now());
        }
    }

    /// The instance in use: its index (for [`CentralClient::failed`]) and base URL.
    fn instance(&self) -> (usize, &str) {
        let i = self.current.load(Ordering::Relaxed) % self.bases.len();
        (i, &self.bases[i])
    }

    /// The base URL of the central instance in use.
    #[must_use]
    pub fn base(&self) -> &str {
        self.instance().1
    }

    /// A request to instance `index` failed: the next request goes to the next instance.
    /// Several requests failing against the same instance move on once, not once each.
    pub(crate) fn failed(&self, index: usize) {
        if self.bases.len() < 2 {
            return;
        }
        let next = (index + 1) % self.bases.len();
        if self
            .current
            .compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            tracing::warn!(from = %self.bases[index], to = %self.bases[next], "central instance failed; moving to the next");
            metrics::counter!("aeogate_uplink_failovers_total").increment(1);
        }
    }

    /// `GET {base}{path}` with the bearer token and a whole-request timeout; the index of
    /// the instance it goes to, for [`CentralClient::failed`].
    pub(crate) fn get(&self, path: &str, timeout: Duration) -> (usize, reqwest::RequestBuilder) {
        self.request(reqwest::Method::GET, path, timeout)
    }

    /// `{method} {base}{path}` with the bearer token and a whole-request timeout, as
    /// [`CentralClient::get`].
    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        timeout: Duration,
    ) -> (usize, reqwest::RequestBuilder) {
        let (i, base) = self.instance();
        let req = self
            .http
            .request(method, format!("{base}{path}"))
            .bearer_auth(&self.token)
            .timeout(timeout);
        (i, req)
    }

    /// Sends `req`, built for instance `index`: notes the answer's clock sample, and moves
    /// on from the instance when the request fails or central answers with a server error.
    pub(crate) async fn exchange(
        &self,
        index: usize,
        req: reqwest::RequestBuilder,
    ) -> reqwest::Result<reqwest::Response> {
        let t1 = Timestamp::now();
        let resp = req.send().await.inspect_err(|_| self.failed(index))?;
        self.observe(t1, &resp);
        if resp.status().is_server_error() {
            self.failed(index);
        }
        Ok(resp)
    }

    /// Posts one batch; returns central's acknowledgement.
    ///
    /// # Errors
    /// Transport errors, a non-200 answer (with central's error text), an unparsable or
    /// too new acknowledgement.
    pub async fn post_events(&self, batch: &IngestBatch) -> anyhow::Result<IngestAck> {
        let body = serde_json::to_vec(batch).context("encoding the batch")?;
        self.post_encoded(body).await
    }

    /// Posts one batch already encoded as JSON (an [`IngestBatch`]); returns central's
    /// acknowledgement.
    ///
    /// # Errors
    /// As [`CentralClient::post_events`].
    pub async fn post_encoded(&self, body: Vec<u8>) -> anyhow::Result<IngestAck> {
        let path = format!("/api/v1/agents/{}/events", self.gate);
        let (i, req) = self.request(reqwest::Method::POST, &path, Duration::from_secs(30));
        let req = req
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let resp = self
            .exchange(i, req)
            .await
            .with_context(|| format!("sending events to central {}", self.bases[i]))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            bail!(
                "central refused the batch: {status}: {}",
                text.chars().take(300).collect::<String>()
            );
        }
        let ack: IngestAck = resp
            .json()
            .await
            .inspect_err(|_| self.failed(i))
            .context("central's acknowledgement does not parse")?;
        check_version(ack.v).map_err(|e| anyhow::anyhow!("central's acknowledgement: {e}"))?;
        Ok(ack)
    }

    /// Posts a heartbeat.
    ///
    /// # Errors
    /// Transport errors or a non-success answer.
    pub async fn post_heartbeat(&self, hb: &Heartbeat) -> anyhow::Result<()> {
        let path = format!("/api/v1/agents/{}/heartbeat", self.gate);
        let (i, req) = self.request(reqwest::Method::POST, &path, Duration::from_secs(10));
        let resp = self
            .exchange(i, req.json(hb))
            .await
            .context("sending heartbeat to central")?;
        if !resp.status().is_success() {
            bail!("central refused the heartbeat: {}", resp.status());
        }
        Ok(())
    }
}

/// What the uplink works with.
#[derive(Debug, Clone)]
pub struct Uplink {
    /// This gate (the batches' and heartbeats' sender).
    pub gate: GateId,
    /// The journal to drain (and its store's cursor).
    pub journal: Arc<Journal>,
    /// Device health for the heartbeat.
    pub devices: Devices,
    /// The clock's state for the heartbeat.
    pub clock: Arc<Clock>,
    /// Stops the loops.
    pub shutdown: CancellationToken,
}

/// Builds the heartbeat from the agent's current state.
pub async fn heartbeat(shared: &Uplink) -> anyhow::Result<Heartbeat> {
    let store = shared.journal.store().clone();
    let (meta, head, acked, oldest, closed) = tokio::task::spawn_blocking(move || {
        (
            store.replica_meta(),
            store.journal_head(),
            store.acked_seq(),
            store.oldest_unacked_at(),
            store.lane_closures(),
        )
    })
    .await
    .context("heartbeat task panicked")?;
    Ok(Heartbeat {
        v: SCHEMA_VERSION,
        agent: shared.gate.clone(),
        at: Timestamp::now(),
        devices: shared.devices.health(),
        replica_seq: meta.sequence,
        replica_as_of: meta.as_of,
        journal_head: head,
        acked_seq: acked,
        backlog: backlog(head, acked),
        oldest_unacked_at: oldest,
        version: env!("CARGO_PKG_VERSION").into(),
        closed_lanes: closed
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "closed lanes not readable for the heartbeat");
                Vec::new()
            })
            .into_iter()
            .map(|(lane, c)| ClosedLane {
                lane,
                reason: c.reason,
                since: c.since,
            })
            .collect(),
        clock: Some(shared.clock.view().report()),
    })
}

/// Drains the journal to central and sends heartbeats until shutdown; then makes one last
/// short attempt to deliver what is pending.
pub async fn run_uplink(shared: Uplink, client: CentralClient, cfg: CentralConfig) {
    let hb_task = {
        let shared = shared.clone();
        let client = client.clone();
        let every = cfg.heartbeat_every;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shared.shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let beat = async {
                    let hb = heartbeat(&shared).await?;
                    client.post_heartbeat(&hb).await
                };
                tokio::select! {
                    () = shared.shutdown.cancelled() => return,
                    r = beat => if let Err(e) = r {
                        tracing::debug!(error = %format!("{e:#}"), "heartbeat not delivered");
                    },
                }
            }
        })
    };

    let mut drain = Drain::new(cfg.uplink_batch);
    let lanes = shared.journal.writer().lane_work().clone();
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => {}
            _ = yield_to_lanes(&lanes) => {}
        }
        // Registered before looking, so an append between the look and the wait wakes us.
        let appended = shared.journal.appended();
        tokio::pin!(appended);
        appended.as_mut().enable();
        let attempt = drain_once(&shared, &client, drain.clone());
        tokio::pin!(attempt);
        let result = tokio::select! {
            r = &mut attempt => r,
            // Stopping: the request in flight gets a short grace, then is abandoned (its
            // entries stay unacknowledged and go with the next start).
            () = shared.shutdown.cancelled() => match tokio::time::timeout(LAST_ATTEMPT, &mut attempt).await {
                Ok(r) => r,
                Err(_) => break,
            },
        };
        let stalled = matches!(result, Ok(Drained::Answered { advanced: false }));
        let next = match result {
            Ok(Drained::Nothing) => {
                metrics::gauge!("aeogate_uplink_up").set(1.0);
                drain.on_nothing()
            }
            Ok(Drained::Answered { advanced: true }) => {
                metrics::gauge!("aeogate_uplink_up").set(1.0);
                drain.on_answer(true, rand::random())
            }
            Ok(Drained::Answered { advanced: false }) => {
                let next = drain.on_answer(false, rand::random());
                if let Next::Retry(wait) = next {
                    // Central answered but its cursor did not move (it is missing an
                    // earlier entry or refusing these): resending at once would only spin.
                    tracing::warn!(
                        ?wait,
                        "central did not advance its acknowledgement; retrying later"
                    );
                }
                next
            }
            Err(e) => {
                metrics::gauge!("aeogate_uplink_up").set(0.0);
                metrics::counter!("aeogate_uplink_failures_total").increment(1);
                let next = drain.on_error(rand::random());
                if let Next::Retry(wait) = next
                    && !shared.shutdown.is_cancelled()
                {
                    tracing::warn!(error = %format!("{e:#}"), ?wait, "uplink to central failed; retrying");
                }
                next
            }
        };
        if shared.shutdown.is_cancelled() {
            break;
        }
        match next {
            Next::SendAgain => {}
            Next::WaitForEntries(most) => {
                tokio::select! {
                    () = shared.shutdown.cancelled() => {}
                    () = &mut appended => {}
                    () = tokio::time::sleep(most) => {}
                }
            }
            Next::Retry(wait) => {
                tokio::select! {
                    // Stopping while stalled: another try would stall the same way.
                    () = shared.shutdown.cancelled() => if stalled { break },
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
    let _ = hb_task.await;
}

/// At shutdown, after every task has journaled its last entries (transactions closed by
/// the shutdown, devices going down): one last bounded attempt to hand the backlog to
/// central, and a last heartbeat, so a clean stop leaves nothing behind that central
/// could have had. What is not acknowledged within `within` stays in the journal and goes
/// with the next start.
pub async fn final_flush(shared: &Uplink, client: &CentralClient, batch: usize, within: Duration) {
    let work = async {
        let mut drain = Drain::new(batch);
        loop {
            let next = match drain_once(shared, client, drain.clone()).await {
                Ok(Drained::Nothing) => break,
                Ok(Drained::Answered { advanced }) => drain.on_answer(advanced, 0.0),
                Err(_) => return,
            };
            if next != Next::SendAgain {
                return;
            }
        }
        if let Ok(hb) = heartbeat(shared).await {
            let _ = client.post_heartbeat(&hb).await;
        }
    };
    if tokio::time::timeout(within, work).await.is_err() {
        tracing::warn!(
            ?within,
            "central did not take the whole backlog before shutdown; it stays journaled"
        );
    }
}

/// Waits while the lanes' writes are pending or were just answered, or a lane's timer is
/// about to be due ([`drain::yield_to_lanes`]), at most [`drain::LANE_YIELD_MAX`]; returns how long.
pub async fn yield_to_lanes(lanes: &LaneWork) -> Duration {
    let start = tokio::time::Instant::now();
    for _ in 0..YIELD_ROUNDS {
        // Registered before looking, so an answer in between is not missed.
        let answered = lanes.done();
        tokio::pin!(answered);
        answered.as_mut().enable();
        match drain::yield_to_lanes(
            lanes.pending(),
            lanes.since_last(),
            lanes.due_in(),
            start.elapsed(),
        ) {
            Yield::Go => break,
            Yield::UntilAnswered(most) => {
                let _ = tokio::time::timeout(most, answered).await;
            }
            Yield::For(wait) => tokio::time::sleep(wait).await,
        }
    }
    let yielded = start.elapsed();
    if !yielded.is_zero() {
        metrics::counter!("aeogate_uplink_yields_total").increment(1);
    }
    yielded
}

/// One batch, encoded.
struct Encoded {
    body: Vec<u8>,
    entries: usize,
}

/// Reads the next batches from the journal (as `drain` plans them) and encodes each as an
/// [`IngestBatch`], on the uplink's background thread, below the lanes' priority
/// ([`background`]). Empty when nothing is unacknowledged.
async fn read_batches(shared: &Uplink, drain: &Drain) -> anyhow::Result<Vec<Encoded>> {
    let store = shared.journal.store().clone();
    let gate = shared.gate.clone();
    let drain = drain.clone();
    background::run(move || read_and_encode(&store, &gate, &drain))
        .await
        .context("the uplink's journal read panicked")?
}

fn read_and_encode(
    store: &crate::store::Store,
    gate: &GateId,
    drain: &Drain,
) -> anyhow::Result<Vec<Encoded>> {
    let plan = drain.plan(store.backlog());
    let mut windows = vec![
        store
            .unacked(plan.max, plan.exceptions_first)
            .context("reading the journal")?,
    ];
    // Journal order: each further window starts after the last entry of the one before it
    // (unacknowledged entries are never pruned).
    while windows.len() < plan.batches {
        // A short window reached the head: nothing comes after it.
        let Some(last) = windows
            .last()
            .filter(|w| w.len() == plan.max)
            .and_then(|w| w.last())
        else {
            break;
        };
        let next = store
            .entries(last.seq + 1, plan.max)
            .context("reading the journal")?;
        if next.is_empty() {
            break;
        }
        windows.push(next);
    }
    windows
        .into_iter()
        .filter(|w| !w.is_empty())
        .map(|entries| {
            let count = entries.len();
            let batch = IngestBatch {
                v: SCHEMA_VERSION,
                batch_id: Uuid::now_v7(),
                agent: gate.clone(),
                entries,
            };
            Ok(Encoded {
                body: serde_json::to_vec(&batch).context("encoding a batch")?,
                entries: count,
            })
        })
        .collect()
}

/// What one attempt came to.
enum Drained {
    /// Nothing unacknowledged.
    Nothing,
    /// Central answered a batch; `advanced` when its acknowledgement moved the cursor.
    Answered { advanced: bool },
}

async fn drain_once(
    shared: &Uplink,
    client: &CentralClient,
    drain: Drain,
) -> anyhow::Result<Drained> {
    let batches = read_batches(shared, &drain).await?;
    if batches.is_empty() {
        return Ok(Drained::Nothing);
    }
    let counts: Vec<usize> = batches.iter().map(|b| b.entries).collect();
    // All in flight at once; central's acknowledgement is contiguous whatever order they
    // are stored in, so the furthest one answered is where the cursor may move.
    let answers =
        futures_util::future::join_all(batches.into_iter().map(|b| client.post_encoded(b.body)))
            .await;
    let mut through = None;
    let mut failure = None;
    for (count, answer) in counts.into_iter().zip(answers) {
        match answer {
            Ok(ack) => {
                for alert in &ack.alerts {
                    tracing::error!(%alert, "central reports an integrity problem with this gate's journal");
                }
                metrics::counter!("aeogate_uplink_entries_total").increment(count as u64);
                tracing::debug!(
                    count,
                    acked_through = ack.acked_through,
                    stored = ack.stored,
                    duplicates = ack.duplicates,
                    "batch delivered"
                );
                through = through.max(Some(ack.acked_through));
            }
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    // What was acknowledged is recorded even when another batch of the same attempt
    // failed (that one goes again with the next attempt).
    let mut advanced = false;
    if let Some(through) = through {
        let store = shared.journal.store();
        let head = store.journal_head();
        let target = Drain::cursor_target(store.acked_seq(), head, through);
        if let Some(to) = target {
            // In the journal writer's next commit, beside the lanes' appends, rather than
            // a commit of its own that they would wait behind.
            shared
                .journal
                .set_acked(to)
                .await
                .context("recording central's acknowledgement")?;
        }
        metrics::gauge!("aeogate_uplink_backlog").set(backlog(head, store.acked_seq()) as f64);
        advanced = target.is_some();
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(Drained::Answered { advanced }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn the_drain_waits_for_a_pending_lane_write_and_goes_on_just_after_its_answer() {
        let lanes = LaneWork::new();
        let pending = lanes.begin();
        let waiting = tokio::spawn({
            let lanes = lanes.clone();
            async move { yield_to_lanes(&lanes).await }
        });
        tokio::time::sleep(10 * MS).await;
        assert!(!waiting.is_finished(), "held while the write is pending");
        drop(pending);
        let yielded = waiting.await.expect("yield task");
        assert_eq!(
            yielded,
            10 * MS + drain::LANE_QUIET,
            "resumes the quiet time after the answer"
        );
        // Quiet lanes cost the drain nothing.
        tokio::time::sleep(drain::LANE_QUIET).await;
        assert_eq!(yield_to_lanes(&lanes).await, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn the_drain_keeps_clear_of_a_lane_timer_about_to_be_due() {
        let lanes = LaneWork::new();
        lanes.set_next_due(Some(tokio::time::Instant::now() + 20 * MS));
        assert_eq!(
            yield_to_lanes(&lanes).await,
            20 * MS + drain::LANE_QUIET,
            "waits until the timer is due and the quiet time after it"
        );
        // The pipeline waits for its next timer, far off: the drain goes at once.
        lanes.set_next_due(Some(tokio::time::Instant::now() + 900 * MS));
        assert_eq!(yield_to_lanes(&lanes).await, Duration::ZERO);
        lanes.set_next_due(None);
        assert_eq!(yield_to_lanes(&lanes).await, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn lanes_that_are_never_quiet_hold_the_drain_only_up_to_its_bound() {
        let lanes = LaneWork::new();
        let stuck = lanes.begin();
        assert_eq!(yield_to_lanes(&lanes).await, drain::LANE_YIELD_MAX);
        drop(stuck);
        // A write answered every 3 ms, each pending for 1 ms: never quiet for 5 ms.
        let busy = tokio::spawn({
            let lanes = lanes.clone();
            async move {
                for _ in 0..100 {
                    let w = lanes.begin();
                    tokio::time::sleep(MS).await;
                    drop(w);
                    tokio::time::sleep(2 * MS).await;
                }
            }
        });
        assert_eq!(yield_to_lanes(&lanes).await, drain::LANE_YIELD_MAX);
        busy.abort();
    }

    fn config(urls: &[&str]) -> CentralConfig {
        CentralConfig {
            url: urls[0].to_owned(),
            urls: urls.iter().map(|u| (*u).to_owned()).collect(),
            token: "t".into(),
            ca_cert: None,
            client_cert: None,
            client_key: None,
            registry_keys: Vec::new(),
            uplink_batch: 10,
            heartbeat_every: Duration::from_secs(1),
            poll_wait: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_failed_instance_hands_over_to_the_next_once() {
        let gate = GateId::parse("P1-G1").expect("gate");
        let c = CentralClient::new(
            &config(&["http://127.0.0.1:1/", "http://127.0.0.1:2"]),
            &gate,
        )
        .expect("client");
        let other = c.clone();
        assert_eq!(c.base(), "http://127.0.0.1:1");
        c.failed(0);
        // A second failure seen against the same instance (another request in flight)
        // does not move past the instance just taken over.
        other.failed(0);
        assert_eq!(other.base(), "http://127.0.0.1:2");
        c.failed(1);
        assert_eq!(c.base(), "http://127.0.0.1:1");
    }

    #[test]
    fn one_instance_stays_put_and_every_url_is_checked() {
        let gate = GateId::parse("P1-G1").expect("gate");
        let c = CentralClient::new(&config(&["http://127.0.0.1:1"]), &gate).expect("client");
        c.failed(0);
        assert_eq!(c.base(), "http://127.0.0.1:1");
        let e = CentralClient::new(
            &config(&["http://127.0.0.1:1", "http://central.example"]),
            &gate,
        )
        .expect_err("plain http off loopback");
        assert!(e.to_string().contains("central.example"), "{e}");
        let e = CentralClient::new(
            &config(&["http://127.0.0.1:1", "https://central.example"]),
            &gate,
        )
        .expect_err("https without a CA");
        assert!(e.to_string().contains("ca_cert"), "{e}");
    }
}
