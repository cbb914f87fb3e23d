//! Read-only views: events, gates, alerts, audit, statistics and exports.

use jiff::{SignedDuration, Timestamp};
use protocol::schema::GateId;

use super::Central;
use crate::export::{self, ExportError, ExportQuery, GateEvent};
use crate::model::{
    Alert, AuditEntry, EventQuery, GateStatus, HourStats, Page, StoredEvent, Summary,
};
use crate::store::StoreError;

impl Central {
    /// Totals (events stored per gate, decisions by outcome, cases, alerts).
    ///
    /// # Errors
    /// Store errors.
    pub fn summary(&self) -> Result<Summary, StoreError> {
        self.inner.store.summary()
    }

    /// Every gate with its health; stale when the last heartbeat is older than
    /// `stale_after` (or there was none).
    ///
    /// # Errors
    /// Store errors.
    pub fn gates(&self, now: Timestamp) -> Result<Vec<GateStatus>, StoreError> {
        let stale_after =
            SignedDuration::try_from(self.inner.cfg.stale_after).unwrap_or(SignedDuration::MAX);
        let summary = self.inner.store.summary()?;
        Ok(self
            .inner
            .store
            .gates()?
            .into_iter()
            .map(|g| GateStatus {
                stale: g
                    .health
                    .as_ref()
                    .is_none_or(|h| now.duration_since(h.received_at) > stale_after),
                events_stored: summary
                    .events_per_gate
                    .get(g.gate.as_str())
                    .copied()
                    .unwrap_or(0),
                acked_through: g.state.acked_through,
                gate: g.gate,
                port: g.port,
                last_heartbeat: g.health,
                revoked_at: g.revoked_at,
                last_config: g.last_config,
            })
            .collect())
    }

    /// Every registered gate with its port.
    ///
    /// # Errors
    /// Store errors.
    pub fn gate_ports(&self) -> Result<Vec<(String, GateId)>, StoreError> {
        Ok(self
            .inner
            .store
            .gates()?
            .into_iter()
            .map(|g| (g.port, g.gate))
            .collect())
    }

    /// Events matching `q`, oldest first, one page.
    ///
    /// # Errors
    /// Store errors.
    pub fn events(&self, q: &EventQuery) -> Result<Page<StoredEvent>, StoreError> {
        self.inner.store.events(q)
    }

    /// Integrity alerts, newest first, at most `limit`.
    ///
    /// # Errors
    /// Store errors.
    pub fn alerts(&self, limit: usize) -> Result<Vec<Alert>, StoreError> {
        self.inner.store.alerts(limit)
    }

    /// Audit entries with id > `after`, oldest first, at most `limit`.
    ///
    /// # Errors
    /// Store errors.
    pub fn audit_log(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.store.audit_log(after, limit)
    }

    /// Decision counts per gate and hour in `[from, to)`.
    ///
    /// # Errors
    /// Store errors.
    pub fn hourly_stats(
        &self,
        gate: Option<&GateId>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<HourStats>, StoreError> {
        self.inner.store.hourly_stats(gate, from, to)
    }

    /// The programme roll-ups summed over the hours from the one `from` falls in (all
    /// when `None`) to `to`.
    ///
    /// # Errors
    /// Store errors.
    pub fn programme_counts(
        &self,
        from: Option<Timestamp>,
        to: Timestamp,
    ) -> Result<crate::rollup::ProgrammeCounts, StoreError> {
        self.inner.store.programme_counts(from, to)
    }

    /// The decided gate transactions an export covers ([`export::collect`]).
    ///
    /// # Errors
    /// [`ExportError`]: a range too large or empty, or storage.
    pub fn export_events(&self, q: &ExportQuery) -> Result<Vec<GateEvent>, ExportError> {
        export::collect(self.inner.store.as_ref(), q)
    }
}
