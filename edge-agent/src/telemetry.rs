//! The agent's metrics: the process-wide Prometheus recorder and the gauges that are not
//! event-driven (replica age, journal size, uplink backlog).

use std::sync::OnceLock;
use std::time::Duration;

use jiff::Timestamp;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use crate::store::{Store, backlog};

/// The process-wide Prometheus recorder: installed once; later agents in the same process
/// (tests) share it.
#[must_use]
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ])
                .map_or_else(
                    |_| PrometheusBuilder::new().build_recorder(),
                    |b| b.build_recorder(),
                );
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::debug!("a metrics recorder was already installed; this one stays unused");
            }
            handle
        })
        .clone()
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
        let fresh =
            crate::replica::freshness(meta.current_as_of(), Timestamp::now(), staleness_bound);
        if let Some(age) = fresh.age_s {
            metrics::gauge!("aeogate_replica_age_seconds").set(age as f64);
        }
    }
}
