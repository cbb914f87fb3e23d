//! The agent's Prometheus metrics: the process-wide recorder and how it is built (bucket
//! sets), what every family means (`# HELP`), the series that exist from the start
//! (counters at 0), the build-info series, the `process_*` series read at each scrape, and
//! the gauges that are not event-driven (replica age, journal size, uplink backlog), kept
//! current by [`keep_gauges`].
//!
//! Every family the agent records is described here; a family recorded elsewhere without
//! a line here shows up in `/metrics` without `# HELP` (the system test runs promtool).

use std::sync::OnceLock;
use std::time::Duration;

use jiff::Timestamp;
use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, DeviceKind};
use crate::store::{Store, backlog};

/// Latency buckets, in seconds: a lane decision is expected in milliseconds, a slow one
/// in a second or two.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Buckets of the journal's commit time, in seconds: a commit (its fsync included) takes
/// well under a millisecond on a quiet SSD and tens of milliseconds on a busy disk.
const COMMIT_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 1.0,
];

/// Count buckets, for histograms of how many items went together.
const COUNT_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// The recorder's builder: seconds buckets for `*_seconds` histograms, count buckets for
/// the journal's group sizes.
#[must_use]
pub fn builder() -> PrometheusBuilder {
    let b = PrometheusBuilder::new();
    // A full name's buckets win over the `_seconds` suffix's.
    let b = match b.set_buckets_for_metric(
        Matcher::Full("aeogate_journal_commit_seconds".to_owned()),
        COMMIT_BUCKETS,
    ) {
        Ok(b) => b,
        Err(_) => PrometheusBuilder::new(),
    };
    let b = match b.set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), SECONDS_BUCKETS)
    {
        Ok(b) => b,
        Err(_) => PrometheusBuilder::new(),
    };
    match b.set_buckets_for_metric(
        Matcher::Full("aeogate_journal_group_requests".to_owned()),
        COUNT_BUCKETS,
    ) {
        Ok(b) => b,
        Err(_) => PrometheusBuilder::new(),
    }
}

/// The process-wide Prometheus recorder: installed once, with every family described;
/// later agents in the same process (tests) share it.
#[must_use]
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = builder().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::debug!("a metrics recorder was already installed; this one stays unused");
            }
            describe();
            handle
        })
        .clone()
}

/// Describes every family (once, after the recorder is installed) and sets the build-info
/// series.
pub fn describe() {
    describe_counter!(
        "aeogate_decisions_total",
        "Gate transactions decided, by lane and decision (FAST, STANDARD, INSPECT)."
    );
    describe_counter!(
        "aeogate_config_reloads_total",
        "Configuration reloads (SIGHUP, edge-agent reload), by outcome: applied, unchanged, refused (the running configuration stays)."
    );
    describe_counter!(
        "aeogate_decision_failures_total",
        "Gate transactions that could not be decided or journaled; the lane was not changed."
    );
    describe_counter!(
        "aeogate_orphan_reads_total",
        "Reads that arrived with no truck in the lane (journaled as orphan reads)."
    );
    describe_counter!(
        "aeogate_lane_refusals_total",
        "Trucks that arrived at a lane a supervisor had closed (journaled as LANE_REFUSED, never decided), by lane."
    );
    describe_gauge!("aeogate_lanes_closed", "Lanes a supervisor has closed now.");
    describe_counter!(
        "aeogate_lane_commands_dropped_total",
        "Lane commands not queued to the lane's board because its queue was full."
    );
    describe_counter!(
        "aeogate_lane_commands_unacked_total",
        "Lane commands the board did not acknowledge after every resend."
    );
    describe_counter!(
        "aeogate_officer_actions_total",
        "Officer actions (overrides, inspection results) recorded on the console, by lane."
    );
    describe_counter!(
        "aeogate_mqtt_malformed_total",
        "MQTT reader payloads that did not parse (recorded as UNREADABLE reads), by lane."
    );
    describe_counter!(
        "aeogate_mqtt_publish_dropped_total",
        "Lane-topic MQTT publishes that could not be handed to the connection (its task had ended)."
    );
    describe_counter!(
        "aeogate_mqtt_lane_states_superseded_total",
        "Lane states replaced by a newer state of the same lane before they were sent, by topic (state, decision)."
    );
    describe_counter!(
        "aeogate_mqtt_oversized_total",
        "MQTT reader payloads over the size limit (recorded as UNREADABLE reads), by lane."
    );
    describe_counter!(
        "aeogate_mqtt_retained_ignored_total",
        "Retained MQTT messages delivered on subscription and ignored (not fresh reads), by lane."
    );
    describe_counter!(
        "aeogate_mqtt_connections_total",
        "MQTT connections accepted by the broker (a fast-growing count means reconnects)."
    );
    describe_gauge!(
        "aeogate_mqtt_lane_wills_connected",
        "Lane will connections (one per lane, whose Last Will is the lane's OFFLINE state) now connected to the broker."
    );
    describe_counter!(
        "aeogate_mqtt_lane_will_failures_total",
        "Lane will connections lost or refused (each is retried with backoff; the lane's OFFLINE will may have been published)."
    );
    describe_counter!(
        "aeogate_board_faults_total",
        "Faults reported by a lane I/O board, by device and fault code."
    );
    describe_counter!(
        "aeogate_link_rejected_frames_total",
        "Serial link frames from a lane board rejected (COBS, CRC or decoding), by device."
    );
    describe_counter!(
        "aeogate_uhf_rejected_frames_total",
        "UHF module frames rejected (checksum, length or framing), by device."
    );
    describe_counter!(
        "aeogate_serial_reopens_total",
        "Times a serial device was reopened after an unplug, error or silence, by device."
    );
    describe_counter!(
        "aeogate_journal_write_failures_total",
        "Journal appends that failed (the store could not be written)."
    );
    describe_counter!(
        "aeogate_journal_held_dropped_total",
        "Entries held back while the journal was full that had to be dropped."
    );
    describe_counter!(
        "aeogate_replica_refused_total",
        "Registry batches, snapshots or statements refused by replication (unsigned: an answer without signed data), by reason."
    );
    describe_counter!(
        "aeogate_uplink_entries_total",
        "Journal entries acknowledged by central."
    );
    describe_counter!(
        "aeogate_uplink_failures_total",
        "Uplink batches to central that failed (retried with backoff)."
    );
    describe_counter!(
        "aeogate_uplink_yields_total",
        "Uplink batches read only after waiting for the lanes' journal and read-log writes (bounded per batch)."
    );
    describe_counter!(
        "aeogate_uplink_failovers_total",
        "Moves to the next central instance (central.urls) after a request failed."
    );
    describe_gauge!(
        "aeogate_device_up",
        "Whether a serial device is connected and talking (1) or not (0), by device."
    );
    describe_gauge!(
        "aeogate_journal_alarm",
        "1 while the journal is over its size limit and holding entries back, else 0."
    );
    describe_gauge!(
        "aeogate_journal_bytes",
        Unit::Bytes,
        "Size of the journal in the store."
    );
    describe_gauge!(
        "aeogate_journal_head",
        "Sequence number of the newest journal entry."
    );
    describe_gauge!(
        "aeogate_replica_age_seconds",
        Unit::Seconds,
        "Age of the registry replica: time since its as-of instant."
    );
    describe_gauge!(
        "aeogate_replica_sequence",
        "Registry change sequence the replica has applied."
    );
    describe_gauge!(
        "aeogate_replica_sync_ok",
        "1 when the last replication poll succeeded, else 0."
    );
    describe_gauge!(
        "aeogate_uplink_backlog",
        "Journal entries not yet acknowledged by central."
    );
    describe_gauge!(
        "aeogate_uplink_up",
        "1 when the last uplink call to central succeeded, else 0."
    );
    describe_gauge!(
        "aeogate_clock_offset_seconds",
        Unit::Seconds,
        "This gate's clock minus central's, as last measured (positive: the gate is ahead)."
    );
    describe_gauge!(
        "aeogate_clock_trusted",
        "1 while the gate's clock is within clock.max_offset of central's (FAST possible), else 0."
    );
    describe_gauge!(
        "aeogate_clock_host_synced",
        "1 when the host's kernel reports its clock synchronised (adjtimex), else 0."
    );
    describe_gauge!(
        "aeogate_board_clock_drift_seconds",
        Unit::Seconds,
        "A lane board's uptime advance minus the agent's elapsed time since the board's first heartbeat of this session, by device."
    );
    describe_gauge!(
        "aeogate_build_info",
        "Always 1; the labels name the running agent's version."
    );
    describe_histogram!(
        "aeogate_decision_seconds",
        Unit::Seconds,
        "Time from a transaction's close to its journaled decision, by lane."
    );
    describe_histogram!(
        "aeogate_close_to_lane_seconds",
        Unit::Seconds,
        "Time from a transaction's close to the lane command being sent."
    );
    describe_histogram!(
        "aeogate_read_log_seconds",
        Unit::Seconds,
        "Time to write a lane event to the read log (durable, group commit) before the device is answered."
    );
    describe_counter!(
        "aeogate_read_log_failures_total",
        "Lane events the read log could not write (held in memory only)."
    );
    describe_counter!(
        "aeogate_restored_transactions_total",
        "Gate transactions rebuilt from the read log after an agent restart (AGENT_RESTARTED)."
    );
    describe_histogram!(
        "aeogate_journal_group_requests",
        Unit::Count,
        "Journal appends written together in one durable commit (count buckets)."
    );
    describe_histogram!(
        "aeogate_journal_commit_seconds",
        Unit::Seconds,
        "Time of each durable journal commit (reads, decisions, the uplink's cursor, any prune), fsync included; a lane's decision waits for one."
    );
    metrics::gauge!("aeogate_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    metrics::gauge!("aeogate_mqtt_lane_wills_connected").set(0.0);
    for topic in ["state", "decision"] {
        metrics::counter!("aeogate_mqtt_lane_states_superseded_total", "topic" => topic)
            .increment(0);
    }
    for name in [
        "aeogate_mqtt_connections_total",
        "aeogate_mqtt_publish_dropped_total",
        "aeogate_mqtt_lane_will_failures_total",
        "aeogate_journal_write_failures_total",
        "aeogate_journal_held_dropped_total",
        "aeogate_read_log_failures_total",
        "aeogate_restored_transactions_total",
        "aeogate_uplink_entries_total",
        "aeogate_uplink_failures_total",
        "aeogate_uplink_failovers_total",
        "aeogate_uplink_yields_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    for why in [
        "unknown_key",
        "bad_pinned_key",
        "bad_signature",
        "payload",
        "wrong_port",
        "wrong_kind",
        "gap",
        "rollback",
        "replay",
        "numbering",
        "not_newer",
        "ahead",
        "unsigned",
        "store",
    ] {
        metrics::counter!("aeogate_replica_refused_total", "why" => why).increment(0);
    }
    aeogate_web::metrics::describe_process();
}

/// The per-lane and per-device counters of this configuration, at 0, so that a fresh
/// agent exposes them before anything happened.
pub fn init_series(cfg: &Config) {
    for outcome in ["applied", "unchanged", "refused"] {
        metrics::counter!("aeogate_config_reloads_total", "outcome" => outcome).increment(0);
    }
    for lane in &cfg.lanes {
        let lane = lane.id.to_string();
        for decision in ["FAST", "STANDARD", "INSPECT"] {
            metrics::counter!("aeogate_decisions_total", "lane" => lane.clone(), "decision" => decision)
                .increment(0);
        }
        for name in [
            "aeogate_decision_failures_total",
            "aeogate_orphan_reads_total",
            "aeogate_lane_refusals_total",
            "aeogate_lane_commands_dropped_total",
            "aeogate_officer_actions_total",
            "aeogate_mqtt_malformed_total",
            "aeogate_mqtt_oversized_total",
            "aeogate_mqtt_retained_ignored_total",
        ] {
            metrics::counter!(name, "lane" => lane.clone()).increment(0);
        }
    }
    for d in &cfg.devices {
        let device = d.name.clone();
        metrics::counter!("aeogate_serial_reopens_total", "device" => device.clone()).increment(0);
        match d.kind {
            DeviceKind::LaneBoard { .. } => {
                metrics::counter!("aeogate_link_rejected_frames_total", "device" => device.clone())
                    .increment(0);
                metrics::counter!("aeogate_lane_commands_unacked_total", "device" => device)
                    .increment(0);
            }
            DeviceKind::UhfModule { .. } => {
                metrics::counter!("aeogate_uhf_rejected_frames_total", "device" => device)
                    .increment(0);
            }
        }
    }
}

/// Sets the gauge of lanes closed by a supervisor.
pub fn set_closed_lanes(n: usize) {
    metrics::gauge!("aeogate_lanes_closed").set(n as f64);
}

/// Keeps gauges that are not event-driven current: replica age, journal size, backlog.
pub async fn keep_gauges(store: Store, staleness_bound: Duration, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let store = store.clone();
        let Ok((meta, head, acked, bytes)) = tokio::task::spawn_blocking(move || {
            (
                store.replica_meta(),
                store.journal_head(),
                store.acked_seq(),
                store.journal_bytes(),
            )
        })
        .await
        else {
            continue;
        };
        metrics::gauge!("aeogate_journal_head").set(head as f64);
        metrics::gauge!("aeogate_journal_bytes").set(bytes as f64);
        metrics::gauge!("aeogate_uplink_backlog").set(backlog(head, acked) as f64);
        metrics::gauge!("aeogate_replica_sequence").set(meta.sequence as f64);
        let fresh = crate::replica::freshness(&meta, Timestamp::now(), staleness_bound);
        if let Some(age) = fresh.age_s {
            metrics::gauge!("aeogate_replica_age_seconds").set(age as f64);
        }
    }
}
