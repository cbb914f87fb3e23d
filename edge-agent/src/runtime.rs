//! The running agent: wires sources → assembler → decider → journal → actuators, the
//! uplink and replication clients, and the console API.
//!
//! ```text
//! serial / MQTT sources ──(bounded mpsc, send().await)──> assembler task
//!   assembler task: handle / tick → on close: decide (replica snapshot, spawn_blocking)
//!                   → Store::append([Transaction, Decision]) durable → actuators
//!   device health (watch) ──> journal on up/down ──> uplink ──> central
//!   replication ──> Store::apply_batch          console API (axum) over AppState
//! ```
//!
//! Shutdown ([`CancellationToken`]): sources stop; the assembler drains what was queued,
//! closes open transactions (`SHUTDOWN`), decides and journals them (without moving the
//! lane: the board falls back to its safe state when the link goes quiet); the uplink makes
//! a last attempt; the console stops (SSE streams end on the token; serving is bounded by
//! a timeout). [`AgentHandle::join`] resolves when all of it is done.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::actuators::Actuators;
use crate::assembler::Assembler;
use crate::clock::Clock;
use crate::config::Config;
use crate::devices::DeviceSupervisor;
use crate::journal::Journal;
use crate::live::HealthReporter;
use crate::live::{Devices, LiveLanes};
use crate::pipeline::{EVENT_QUEUE, Pipeline};
use crate::readlog::ReadLog;
use crate::reload::{ReloadStatus, Reloader};
use crate::replication::Replication;
use crate::sources::mqtt::MqttLink;
use crate::state::AppState;
use crate::store::{CacheSizes, Store};
use crate::telemetry::{keep_gauges, metrics_handle};
use crate::uplink::Uplink;

/// Longest a clean stop waits for central to take the last of the journal.
const FINAL_FLUSH: Duration = Duration::from_secs(5);

/// Longest the console is given to finish requests at shutdown.
const SERVE_GRACE: Duration = Duration::from_secs(3);

/// A started agent.
#[derive(Debug)]
pub struct AgentHandle {
    /// Where the console listens (the real port when configured with port 0).
    pub console_addr: SocketAddr,
    /// The parts the console serves from (store, live lanes, devices; for tests and
    /// embedding).
    pub shared: AppState,
    /// Resolves when the agent has stopped.
    pub join: JoinHandle<anyhow::Result<()>>,
}

/// Runs the agent until `shutdown` is cancelled.
///
/// # Errors
/// The console's rustls configuration from its certificate chain and key (PEM files).
async fn console_tls(
    tls: &crate::config::ConsoleTls,
) -> anyhow::Result<axum_server::tls_rustls::RustlsConfig> {
    crate::uplink::install_crypto_provider();
    axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
        .await
        .with_context(|| {
            format!(
                "console TLS certificate {} and key {}",
                tls.cert.display(),
                tls.key.display()
            )
        })
}

/// Startup failures (store, console bind, central client); errors of tasks at the end.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let handle = start(cfg, shutdown).await?;
    handle.join.await.context("agent task panicked")?
}

/// [`run`] for an agent started from the file `path`: SIGHUP and `edge-agent reload`
/// (the control socket beside the store) reload it live ([`crate::reload`]).
///
/// # Errors
/// As [`run`]; also the control socket cannot be bound.
pub async fn run_from(
    cfg: Config,
    path: std::path::PathBuf,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let handle = start_from(cfg, Some(path), shutdown).await?;
    handle.join.await.context("agent task panicked")?
}

/// Starts the agent and returns once the console is listening.
///
/// # Errors
/// The store cannot be opened, the console address cannot be bound, or the central
/// client configuration is refused (plain http to a non-loopback host, unreadable CA).
pub async fn start(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<AgentHandle> {
    start_from(cfg, None, shutdown).await
}

/// [`start`], reloadable from `path` when given ([`run_from`]).
///
/// # Errors
/// As [`start`]; also the control socket cannot be bound.
pub async fn start_from(
    cfg: Config,
    path: Option<std::path::PathBuf>,
    shutdown: CancellationToken,
) -> anyhow::Result<AgentHandle> {
    let metrics = metrics_handle();
    crate::telemetry::init_series(&cfg);
    let store = {
        let path = cfg.store.path.clone();
        let gate = cfg.gate.id.clone();
        let caches = CacheSizes {
            replica: cfg.store.replica_cache_bytes,
            ..CacheSizes::default()
        };
        tokio::task::spawn_blocking(move || Store::open_with_cache(&path, gate, caches))
            .await
            .context("store open task panicked")?
            .with_context(|| format!("cannot open the store at {}", cfg.store.path.display()))?
    };
    store.set_journal_limit(cfg.store.max_journal_bytes);
    // Everything that can fail at startup happens before any task is spawned, so a
    // failed start leaves nothing running.
    let listener = tokio::net::TcpListener::bind(cfg.console.bind)
        .await
        .with_context(|| format!("cannot bind the console to {}", cfg.console.bind))?;
    let console_addr = listener.local_addr().context("console address")?;
    let console_tls = match &cfg.console.tls {
        Some(tls) => Some(console_tls(tls).await?),
        None => None,
    };
    let clock = Arc::new(Clock::new(
        cfg.clock.max_offset,
        Some(Clock::file_beside(&cfg.store.path)),
    ));
    let central = match &cfg.central {
        Some(c) => {
            Some(crate::uplink::CentralClient::new(c, &cfg.gate.id)?.with_clock(clock.clone()))
        }
        None => None,
    };

    let console = crate::console::console(&store, console_tls.is_some())?;
    if let Some(m) = &cfg.mqtt {
        crate::sources::mqtt::check(m)?;
    }

    let tracker = TaskTracker::new();
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    // Lane events are durable before a device is answered; the pipeline replays what is
    // left at start (crate::readlog). It shares the journal's writer, so the reads
    // and decisions of one commit window share one fsync.
    let (journal, journal_health, journal_writer_task) = Journal::start(store.clone());
    let read_log = Arc::new(ReadLog::sharing(&journal));
    let mut health = Vec::new();
    let mqtt: Option<MqttLink> = match &cfg.mqtt {
        Some(m) => {
            let (reporter, rx) = HealthReporter::new("mqtt", None);
            health.push(rx);
            let lanes: Vec<_> = cfg.lanes.iter().map(|l| l.id.clone()).collect();
            Some(MqttLink::start_logged(
                m,
                &lanes,
                events_tx.clone(),
                Some(read_log.clone()),
                reporter,
                shutdown.clone(),
            )?)
        }
        None => None,
    };
    health.push(journal_health);
    let mqtt_mappings = mqtt.as_ref().map(|m| m.mappings.clone());
    let actuators = Arc::new(Actuators::new(mqtt.as_ref().map(|m| {
        let topics: Arc<dyn crate::actuators::LanePublisher> = Arc::new(m.topics.clone());
        topics
    })));
    if let Some(m) = mqtt {
        tracker.spawn(async move {
            let _ = m.task.await;
        });
    }
    let live = Arc::new(LiveLanes::new(&cfg.lanes));
    let devices = Devices::default();
    let supervisor = Arc::new(DeviceSupervisor::new(crate::devices::Parts {
        events: events_tx.clone(),
        read_log: read_log.clone(),
        actuators: actuators.clone(),
        devices: devices.clone(),
        live: live.clone(),
        journal: journal.clone(),
        tracker: tracker.clone(),
        shutdown: shutdown.clone(),
    }));
    supervisor.start_all(&cfg.devices, &cfg.llrp);
    for rx in health {
        let owner = rx.borrow().device.clone();
        tracker.spawn(crate::journal::record_health(
            journal.clone(),
            rx.clone(),
            shutdown.clone(),
        ));
        devices.add(&owner, rx);
    }
    reapply_lane_closures(&store, &live, &actuators).await;

    let pipeline = Arc::new(Pipeline {
        lanes: cfg.lanes.clone(),
        policy: cfg.policy.clone(),
        store: store.clone(),
        journal: journal.clone(),
        live: live.clone(),
        actuators: actuators.clone(),
        read_log: true,
        clock: clock.clone(),
    });
    let (reconfigure_tx, reconfigure_rx) = mpsc::channel(1);
    tracker.spawn(crate::pipeline::run(
        pipeline,
        Assembler::new(cfg.gate.id.clone(), &cfg.lanes),
        events_rx,
        reconfigure_rx,
        shutdown.clone(),
    ));
    let reload_status = Arc::new(ReloadStatus::default());
    let lanes = crate::live::Lanes::from(cfg.lanes.clone());
    if let Some(path) = path {
        let reloader = Arc::new(Reloader::new(
            path,
            cfg.clone(),
            reconfigure_tx,
            reload_status.clone(),
            lanes.clone(),
            mqtt_mappings,
            clock.clone(),
            Some(supervisor),
        ));
        start_reload_triggers(&cfg, reloader, &tracker, &shutdown)?;
    }
    tracker.spawn(keep_gauges(
        store.clone(),
        cfg.policy.staleness_bound,
        shutdown.clone(),
    ));
    tracker.spawn(crate::journal::retry_held(
        journal.clone(),
        shutdown.clone(),
    ));
    let uplink = Uplink {
        gate: cfg.gate.id.clone(),
        journal: journal.clone(),
        devices: devices.clone(),
        clock: clock.clone(),
        shutdown: shutdown.clone(),
    };
    let final_flush = central
        .clone()
        .zip(cfg.central.as_ref().map(|c| c.uplink_batch));
    if let (Some(client), Some(c)) = (central.clone(), cfg.central.clone()) {
        tracker.spawn(crate::uplink::run_uplink(
            uplink.clone(),
            client.clone(),
            c.clone(),
        ));
        tracker.spawn(crate::replication::run_replication(
            Replication {
                port: cfg.gate.port.clone(),
                journal: journal.clone(),
                shutdown: shutdown.clone(),
            },
            client,
            c,
        ));
    }

    let state = AppState {
        gate: cfg.gate.id.clone(),
        lanes,
        staleness_bound: cfg.policy.staleness_bound,
        store,
        journal: journal.clone(),
        live,
        devices,
        actuators,
        events: events_tx,
        metrics,
        central_configured: central.is_some(),
        clock,
        shutdown: shutdown.clone(),
        console,
        reload: reload_status,
    };
    tracing::info!(%console_addr, gate = %state.gate, tls = console_tls.is_some(), "console listening");
    let app = crate::api::app(state.clone());
    // Client addresses feed the console's login rate limiting.
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    let serve_shutdown = shutdown.clone();
    let server = match console_tls {
        None => tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(serve_shutdown.cancelled_owned())
                .await
        }),
        Some(rustls) => {
            let listener = listener.into_std().context("console listener")?;
            let handle = axum_server::Handle::new();
            let h = handle.clone();
            tokio::spawn(async move {
                serve_shutdown.cancelled().await;
                h.graceful_shutdown(Some(SERVE_GRACE));
            });
            let server = axum_server::from_tcp_rustls(listener, rustls)
                .context("console TLS listener")?
                .handle(handle);
            tokio::spawn(async move { server.serve(app).await })
        }
    };
    tracker.close();

    let join_shutdown = shutdown.clone();
    let join = tokio::spawn(async move {
        join_shutdown.cancelled().await;
        tracker.wait().await;
        if let Some((client, batch)) = final_flush {
            crate::uplink::final_flush(&uplink, &client, batch, FINAL_FLUSH).await;
        }
        match tokio::time::timeout(SERVE_GRACE, server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "console server ended with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "console server task failed"),
            Err(_) => tracing::warn!("console still had open connections at shutdown; closed"),
        }
        // Every source has ended: the read log queues nothing more to the writer.
        read_log.close();
        // Every task that journals has ended: the writer finishes what is queued.
        journal.close();
        if journal_writer_task.await.is_err() {
            tracing::error!("the journal writer failed at shutdown");
        }
        tracing::info!("agent stopped");
        Ok(())
    });
    Ok(AgentHandle {
        console_addr,
        shared: state,
        join,
    })
}

/// SIGHUP and the control socket, each reloading through `reloader`.
#[cfg(unix)]
fn start_reload_triggers(
    cfg: &Config,
    reloader: Arc<Reloader>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let socket = crate::reload::control_socket_path(&cfg.store.path);
    tracker.spawn(crate::reload::serve_control(
        &socket,
        reloader.clone(),
        shutdown.clone(),
    )?);
    let mut hup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    let shutdown = shutdown.clone();
    tracker.spawn(async move {
        loop {
            tokio::select! {
                got = hup.recv() => {
                    if got.is_none() {
                        break;
                    }
                    tracing::info!("SIGHUP: reloading the configuration");
                    reloader.reload(None).await;
                }
                () = shutdown.cancelled() => break,
            }
        }
    });
    Ok(())
}

/// Without Unix signals and sockets, the configuration is read at start only.
#[cfg(not(unix))]
fn start_reload_triggers(
    _cfg: &Config,
    _reloader: Arc<Reloader>,
    _tracker: &TaskTracker,
    _shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    Ok(())
}

/// Closes again, on the lanes and in the live state, every lane a supervisor had closed
/// when the agent stopped (`lane_control_v1`); the pipeline then refuses trucks there
/// from its first event. A closure for a lane no longer configured is logged and kept.
async fn reapply_lane_closures(store: &Store, live: &LiveLanes, actuators: &Actuators) {
    let s = store.clone();
    let closures = match tokio::task::spawn_blocking(move || s.lane_closures()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "closed lanes could not be read from the store");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "closed lanes task failed");
            return;
        }
    };
    for (lane, closure) in closures {
        let state = protocol::schema::LaneState::closed(&lane, closure.since);
        let reason = closure.reason.clone();
        if live.set_closed(&lane, Some(closure), state, |st| actuators.show(st)) {
            tracing::warn!(%lane, %reason, "lane still closed from before the restart");
        } else {
            tracing::warn!(%lane, "a closed lane in the store is not configured; ignored");
        }
    }
    crate::telemetry::set_closed_lanes(live.closed_lanes().len());
}
