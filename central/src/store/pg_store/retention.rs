//! Retention: dropping whole monthly event partitions (`events_YYYY_MM`) older than a
//! cutoff. A dropped month leaves no bloat behind (no row deletes in `events`); its
//! index entries by transaction go with the partition, and the container index rows of
//! those months are deleted with it. Kept: the
//! chain keys (`event_keys`, so a resent old entry is still recognised and the chain
//! still links), cases, alerts, the registry, audit, counters and hourly figures.

use super::{PgStore, StoreError, month_start_ms};

impl PgStore {
    /// Drops the event partitions of months before `(year, month)` (the partition of that
    /// month is kept). Returns the partitions dropped, oldest first.
    ///
    /// # Errors
    /// An impossible month, or the database fails (what was dropped stays dropped).
    pub fn drop_months_before(&self, year: i16, month: i8) -> Result<Vec<String>, StoreError> {
        let cutoff_ms = month_start_ms(year, month)?;
        let names: Vec<String> = self.read(|tx| {
            Ok(tx
                .query(
                    "SELECT c.relname::text FROM pg_inherits i
                       JOIN pg_class c ON c.oid = i.inhrelid
                      WHERE i.inhparent = 'events'::regclass",
                    &[],
                )?
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect())
        })?;
        let mut old: Vec<(i16, i8, String)> = names
            .into_iter()
            .filter_map(|n| {
                let (y, m) = n.strip_prefix("events_")?.rsplit_once('_')?;
                let (y, m) = (y.parse::<i16>().ok()?, m.parse::<i8>().ok()?);
                ((y, m) < (year, month)).then_some((y, m, n))
            })
            .collect();
        old.sort();
        let mut dropped = Vec::new();
        for (y, m, name) in old {
            self.write(|tx| {
                // The lock partition creation takes: no month is created while one drops.
                tx.execute("SELECT pg_advisory_xact_lock(7310170002)", &[])?;
                tx.batch_execute(&format!("DROP TABLE IF EXISTS \"{name}\""))?;
                Ok(())
            })?;
            if let Ok(mut known) = self.partitions.lock() {
                known.remove(&(i64::from(y) * 12 + i64::from(m) - 1));
            }
            dropped.push(name);
        }
        if !dropped.is_empty() {
            self.write(|tx| {
                tx.execute(
                    "DELETE FROM event_containers WHERE at_ms < $1",
                    &[&cutoff_ms],
                )?;
                Ok(())
            })?;
            tracing::info!(?dropped, "event months past retention dropped");
        }
        Ok(dropped)
    }

    /// Applies a retention of `months` at `now`: keeps the current month and the `months`
    /// before it.
    ///
    /// # Errors
    /// As [`PgStore::drop_months_before`].
    pub fn apply_retention(
        &self,
        months: u32,
        now: jiff::Timestamp,
    ) -> Result<Vec<String>, StoreError> {
        let d = now.to_zoned(jiff::tz::TimeZone::UTC).date();
        let index = i64::from(d.year()) * 12 + i64::from(d.month()) - 1 - i64::from(months);
        let year = i16::try_from(index.div_euclid(12))
            .map_err(|_| StoreError::Backend(format!("retention of {months} months")))?;
        let month = i8::try_from(index.rem_euclid(12) + 1)
            .map_err(|_| StoreError::Backend(format!("retention of {months} months")))?;
        self.drop_months_before(year, month)
    }
}
