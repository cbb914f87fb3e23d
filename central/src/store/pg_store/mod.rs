//! [`Store`] on PostgreSQL: each operation is one transaction on a pooled connection.
//!
//! The client is the blocking `postgres` crate (the [`Store`] trait blocks, and async
//! callers already run it on `spawn_blocking`), pooled with `r2d2`. The schema is plain
//! SQL files under `migrations/`, embedded in the binary and applied in order at open,
//! each recorded in `schema_migrations` (docs/architecture.md, "PostgreSQL backend").
//!
//! Concurrency: transactions run at READ COMMITTED, and every read-modify-write takes
//! the row lock of what it changes first: an ingest locks its gate's row (so batches of
//! one gate are checked one after another, whichever connection carries them), registry
//! change numbers are an `UPDATE … RETURNING` on a `meta` row (so they have no gaps or
//! duplicates). Nothing an ingest writes is shared by every batch, so batches of
//! different gates run side by side: case, alert and audit ids come from sequences (a
//! rolled-back transaction leaves a gap), and counters are upserts into one shard per
//! connection ([`bump`]), summed when read.
//!
//! # Layout
//! - `migrations/`: the schema, one numbered SQL file per step.
//! - `event_tables`: agent tokens, gates, and ingest: the `IngestTarget` over one
//!   transaction (chain rules in [`crate::ingest`]), heartbeats and gap alerts.
//! - `case_tables`: cases and alerts, and the `CaseBook` the case rules write through.
//! - `registry_tables`: the change log and the current records, as a `RegistrySink`.
//! - `staff_tables`: audit log, staff users, sessions.
//! - `company_tables`: the programme portal's companies.
//! - `import`: records copied from another backend, as they are ([`crate::store::copy`]).
//! - `rollup_tables`: the programme roll-ups, written at ingest, read over a range.
//! - `retention`: dropping monthly event partitions past the retention.
//! - `fanout`: live updates across instances (LISTEN/NOTIFY), [`PgStore::follow`].
//! - `query`: read-only queries (events, gates, statistics, alerts).
//! - this module: [`PgStore`], the pool, the migrations and shared helpers; its
//!   [`Store`] operations are the families' functions (most of them written once for
//!   both backends, `store/operations.rs`).

mod case_tables;
mod company_tables;
mod event_tables;
mod fanout;
mod import;
mod query;
mod registry_tables;
mod retention;
mod rollup_tables;
mod staff_tables;
mod tls;
mod tx;

use std::collections::HashSet;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use protocol::i18n::Lang;
use protocol::operator::OperatorId;
use protocol::schema::{Change, Consignment, GateId, JournalEntry, RegistryRecord};
use r2d2_postgres::PostgresConnectionManager;
use serde::{Deserialize, Serialize};
use tx::{Statements, Tx};
use uuid::Uuid;

pub use self::fanout::LiveUpdate;
use super::{
    AuditNote, Delivery, Edit, GateRow, IngestOutcome, LoggedChange, SnapshotHead, SnapshotVisit,
    Stamp, Store, StoreError, case_changed,
};
use crate::cases::CaseError;
use crate::model::{
    AgentRecord, Alert, AuditEntry, Case, CaseQuery, EventQuery, GateHealth, HourStats, Page,
    Session, StaffUser, StoredEvent, Summary, TokenHash,
};
use crate::portal::Company;

/// The schema steps, in order; each runs once, in one transaction with its record.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("migrations/0001_initial.sql")),
    (2, include_str!("migrations/0002_companies.sql")),
    (3, include_str!("migrations/0003_concurrent_ingest.sql")),
    (4, include_str!("migrations/0004_programme.sql")),
    (5, include_str!("migrations/0005_documents.sql")),
    (6, include_str!("migrations/0006_programme_packed.sql")),
    (7, include_str!("migrations/0007_lean_event_rows.sql")),
    (8, include_str!("migrations/0008_programme_queue.sql")),
    (9, include_str!("migrations/0009_no_daily_rollup.sql")),
    (10, include_str!("migrations/0010_one_key_per_event.sql")),
    (
        11,
        include_str!("migrations/0011_event_records_as_text.sql"),
    ),
];

/// The migration that adds the programme roll-ups; the roll-ups of the events already
/// stored are built after the migrations, in their transaction.
const PROGRAMME_MIGRATION: i32 = 4;
/// The migration that adds the packed roll-ups by day and month; they are built from the
/// hourly counts after the migrations, in their transaction.
const PACKED_MIGRATION: i32 = 6;

/// Connections the pool keeps at most.
pub const POOL_SIZE: u32 = 16;

/// How long a readiness check waits for a connection.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// How long an operation waits for a connection before answering "unavailable".
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

type Pool = r2d2::Pool<PostgresConnectionManager<tls::MakeRustls>>;

/// The PostgreSQL store.
pub struct PgStore {
    /// Always `Some` until dropped (see the `Drop` impl).
    pool: Option<Pool>,
    /// Months (as `year * 12 + month - 1`) whose event partition is known to exist.
    partitions: Mutex<HashSet<i64>>,
    /// Where the pool connects (the live-update listener connects there too).
    config: postgres::Config,
    /// Plain or TLS connections (`[store] ca_cert`).
    tls: tls::MakeRustls,
    /// This store's (instance's) id in the notices it sends ([`fanout`]).
    instance: Uuid,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("connections", &self.pool().state().connections)
            .finish_non_exhaustive()
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        // `{:#}`-like detail: the server's message, not only "db error".
        match e.as_db_error() {
            // Connection exceptions (class 08) and the server shutting down or starting
            // (57P01..57P03): the database is away, not the request wrong.
            // Deadlock, serialization failure: the transaction was rolled back whole.
            Some(db) if matches!(db.code().code(), "40001" | "40P01") => conflict(&e),
            Some(db) if unavailable_state(db.code().code()) => {
                StoreError::Unavailable(format!("PostgreSQL: {db}"))
            }
            Some(db) => StoreError::Backend(format!("PostgreSQL: {db}")),
            None => {
                let mut msg = format!("PostgreSQL: {e}");
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg.push_str(&format!(": {s}"));
                    src = s.source();
                }
                // The connection closed, could not be made, or its socket failed.
                let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
                if e.is_closed() || io || e.to_string().starts_with("timeout waiting") {
                    StoreError::Unavailable(msg)
                } else {
                    StoreError::Backend(msg)
                }
            }
        }
    }
}

/// How often a transaction aborted by a deadlock or serialization failure is run again.
pub const CONFLICT_RETRIES: u32 = 5;

/// Leading words of the [`StoreError::Unavailable`] message of a deadlock or
/// serialization failure (what [`PgStore::write`] runs again).
const CONFLICT: &str = "PostgreSQL transaction conflict";

/// `e` as a conflict: the transaction was rolled back whole and [`PgStore::write`] runs
/// it again.
pub(super) fn conflict(e: &postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => StoreError::Unavailable(format!("{CONFLICT}: {db}")),
        None => StoreError::Unavailable(format!("{CONFLICT}: {e}")),
    }
}

fn is_conflict(e: &StoreError) -> bool {
    matches!(e, StoreError::Unavailable(m) if m.starts_with(CONFLICT))
}

/// SQLSTATEs that say the database is unreachable or going away, not that the statement
/// was wrong.
fn unavailable_state(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

impl From<r2d2::Error> for StoreError {
    fn from(e: r2d2::Error) -> Self {
        // The pool's only error: no healthy connection within its timeout.
        StoreError::Unavailable(format!("PostgreSQL connection pool: {e}"))
    }
}

impl PgStore {
    /// Ingested batches whose programme roll-ups wait in the queue, not yet folded
    /// ([`Store::fold_rollups`]): what the folder has still to do. Central reports it as
    /// the gauge `central_programme_queue_batches`.
    ///
    /// # Errors
    /// [`StoreError`] when the database does not answer.
    pub fn queued_rollups(&self) -> Result<u64, StoreError> {
        self.read(|tx| {
            let n: i64 = tx
                .query("SELECT count(*) FROM programme_queue", &[])?
                .first()
                .map_or(0, |r| r.get(0));
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }
    /// Connects to `url` (`postgres://user@host:port/db`, or key=value form) and brings
    /// the schema up to date.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the URL is invalid, the database unreachable, or a
    /// migration fails (nothing of a failed step is applied).
    pub fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, None)
    }

    /// As [`PgStore::open`]; with `ca_cert`, connections use TLS (as the URL's
    /// `sslmode` says) and trust only the CA certificates in that PEM file.
    ///
    /// # Errors
    /// As [`PgStore::open`]; an unreadable CA file; `sslmode=require` without a CA.
    pub fn open_with(url: &str, ca_cert: Option<&std::path::Path>) -> Result<Self, StoreError> {
        off_runtime(|| Self::open_here(url, ca_cert))
    }

    fn open_here(url: &str, ca_cert: Option<&std::path::Path>) -> Result<Self, StoreError> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Backend(format!("invalid PostgreSQL URL: {e}")))?;
        let tls = match ca_cert {
            Some(ca) => tls::MakeRustls::trusting(ca)?,
            None => tls::MakeRustls::none(),
        };
        if !tls.is_tls() {
            if config.get_ssl_mode() == postgres::config::SslMode::Require {
                return Err(StoreError::Backend(
                    "the URL says sslmode=require: set [store] ca_cert (the CA to trust)".into(),
                ));
            }
            config.ssl_mode(postgres::config::SslMode::Disable);
        }
        let manager = PostgresConnectionManager::new(config.clone(), tls.clone());
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(CONNECT_TIMEOUT)
            .build(manager)?;
        let store = Self {
            pool: Some(pool),
            partitions: Mutex::new(HashSet::new()),
            config,
            tls,
            instance: Uuid::now_v7(),
        };
        store.migrate()?;
        Ok(store)
    }

    fn pool(&self) -> &Pool {
        self.pool
            .as_ref()
            .unwrap_or_else(|| unreachable!("the pool is only taken when the store is dropped"))
    }

    /// Applies the migrations not yet applied; concurrent instances wait on one lock.
    fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.pool().get()?;
        in_transaction(
            &mut conn,
            postgres::Client::transaction,
            Self::apply_migrations,
        )
    }

    fn apply_migrations(tx: &mut Tx<'_>) -> Result<(), StoreError> {
        // Any constant shared by every instance; the lock ends with the transaction.
        tx.execute("SELECT pg_advisory_xact_lock(7310170001)", &[])?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version INTEGER PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )?;
        let applied: HashSet<i32> = tx
            .query("SELECT version FROM schema_migrations", &[])?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut ran = Vec::new();
        for (version, sql) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            tx.batch_execute(sql).map_err(|e| {
                StoreError::Backend(format!(
                    "schema migration {version}: {}",
                    StoreError::from(e)
                ))
            })?;
            tx.execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)",
                &[version],
            )?;
            ran.push(*version);
        }
        // Built once every table of the roll-ups exists: from the events for a schema
        // from before the roll-ups (all levels), else from the hourly counts for one from
        // before the packed levels.
        let started = std::time::Instant::now();
        if ran.contains(&PROGRAMME_MIGRATION) {
            let read = rollup_tables::rebuild(tx)?;
            if read > 0 {
                tracing::info!(
                    events = read,
                    took = ?started.elapsed(),
                    "programme roll-ups built from the stored events"
                );
            }
        } else if ran.contains(&PACKED_MIGRATION) {
            let (hourly, rows) = rollup_tables::build_packed(tx)?;
            crate::rollup::log_packed_built(hourly, rows, started.elapsed());
        }
        Ok(())
    }

    /// Runs `f` in one transaction on a pooled connection and commits it.
    ///
    /// A transaction PostgreSQL aborted for a deadlock or a serialization failure (rolled
    /// back whole, so running it again is safe) is run again, up to [`CONFLICT_RETRIES`]
    /// times with a short growing pause; after that the operation is
    /// [`StoreError::Unavailable`] (503, try again later).
    fn write<T: Send>(
        &self,
        mut f: impl FnMut(&mut Tx<'_>) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        off_runtime(|| {
            let mut attempt: u32 = 0;
            loop {
                let mut conn = self.pool().get()?;
                let result = in_transaction(&mut conn, postgres::Client::transaction, &mut f);
                match result {
                    Err(e) if is_conflict(&e) && attempt < CONFLICT_RETRIES => {
                        attempt += 1;
                        tracing::debug!(error = %e, attempt, "transaction conflict; running it again");
                        std::thread::sleep(Duration::from_millis(10 * u64::from(attempt)));
                    }
                    other => return other,
                }
            }
        })
    }

    /// Runs `f` in one read-only transaction (one snapshot for all its statements).
    fn read<T: Send>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        off_runtime(|| {
            let mut conn = self.pool().get()?;
            in_transaction(
                &mut conn,
                |c| {
                    c.build_transaction()
                        .isolation_level(postgres::IsolationLevel::RepeatableRead)
                        .read_only(true)
                        .start()
                },
                f,
            )
        })
    }

    /// Creates the monthly event partitions the entries' times fall in that do not exist
    /// yet, each in a short transaction of its own before the ingest's (DDL takes a lock
    /// on `events`). Returns the ones this call created, which have no statistics until
    /// they are analysed ([`PgStore::analyse_new`]).
    fn ensure_partitions(&self, entries: &[JournalEntry]) -> Result<Vec<String>, StoreError> {
        let mut created = Vec::new();
        let months: HashSet<(i16, i8)> = entries
            .iter()
            .map(|e| {
                let d = e.at.to_zoned(jiff::tz::TimeZone::UTC).date();
                (d.year(), d.month())
            })
            .collect();
        for (year, month) in months {
            let key = i64::from(year) * 12 + i64::from(month) - 1;
            if self.known_partition(key) {
                continue;
            }
            // The first and last months jiff can represent reach past its range: their
            // partitions are open-ended, so any entry time an agent sends has a home.
            let start = month_start_ms(year, month)
                .map_or_else(|_| "MINVALUE".to_owned(), |e| e.to_string());
            let (ny, nm) = if month == 12 {
                (year.saturating_add(1), 1)
            } else {
                (year, month + 1)
            };
            let end =
                month_start_ms(ny, nm).map_or_else(|_| "MAXVALUE".to_owned(), |e| e.to_string());
            let name = format!("events_{year:04}_{month:02}");
            let made = self.write(|tx| {
                tx.execute("SELECT pg_advisory_xact_lock(7310170002)", &[])?;
                let exists = tx
                    .query_one(
                        "SELECT to_regclass($1) IS NOT NULL",
                        &[&format!("\"{name}\"")],
                    )?
                    .get::<_, bool>(0);
                if !exists {
                    tx.batch_execute(&format!(
                        "CREATE TABLE \"{name}\" PARTITION OF events \
                         FOR VALUES FROM ({start}) TO ({end})"
                    ))?;
                }
                Ok(!exists)
            })?;
            if let Ok(mut known) = self.partitions.lock() {
                known.insert(key);
            }
            if made {
                created.push(name);
            }
        }
        Ok(created)
    }

    /// Analyses the month partitions `names` (just created, now holding their first rows),
    /// so the dashboard's queries on a new month are planned from its statistics at once,
    /// not from defaults until autovacuum's first analyse (up to a minute later). A failure
    /// is logged, not returned: the rows are stored, and autovacuum analyses them later.
    fn analyse_new(&self, names: &[String]) {
        for name in names {
            let analysed = off_runtime(|| -> Result<(), StoreError> {
                let mut conn = self.pool().get()?;
                conn.batch_execute(&format!("ANALYZE \"{name}\""))?;
                Ok(())
            });
            match analysed {
                Ok(()) => tracing::info!(partition = %name, "new event month analysed"),
                Err(e) => {
                    tracing::warn!(partition = %name, error = %e, "analysing a new event month failed; autovacuum will");
                }
            }
        }
    }

    fn known_partition(&self, key: i64) -> bool {
        self.partitions.lock().is_ok_and(|k| k.contains(&key))
    }
}

/// Tells the other instances about `cases` (opened or changed in `tx`).
fn notify_cases(tx: &mut Tx<'_>, from: Uuid, cases: &[Case]) -> Result<(), StoreError> {
    if cases.is_empty() {
        return Ok(());
    }
    let ids: Vec<u64> = cases.iter().map(|c| c.id).collect();
    fanout::notify(tx, from, &ids, None)
}

/// A pooled connection.
type Conn = r2d2::PooledConnection<PostgresConnectionManager<tls::MakeRustls>>;

/// Runs `f` in the transaction `begin` starts on `conn`, with the statements the
/// connection prepared before, and commits. The statements are kept for the connection's
/// next transaction only when all went well (see [`tx`]).
fn in_transaction<T>(
    conn: &mut Conn,
    begin: impl FnOnce(&mut postgres::Client) -> Result<postgres::Transaction<'_>, postgres::Error>,
    f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let statements = Conn::extensions_mut(conn)
        .remove::<Statements>()
        .unwrap_or_default();
    let (out, statements) = {
        let mut tx = Tx::new(begin(conn)?, statements);
        let out = f(&mut tx)?;
        (out, tx.commit()?)
    };
    Conn::extensions_mut(conn).insert(statements);
    Ok(out)
}

/// Runs `f` on a thread of its own when called from inside a tokio runtime: the
/// blocking client drives its connection with a runtime of its own, which tokio refuses
/// to start on a thread that is already running one (e.g. `Store` methods called from
/// an async test or from `Central::open` in `main`).
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Closing a connection blocks on the client's own runtime, which tokio refuses
        // on a runtime thread: the pool is dropped where `off_runtime` puts it.
        if let Some(pool) = self.pool.take() {
            off_runtime(move || drop(pool));
        }
    }
}

fn month_start_ms(year: i16, month: i8) -> Result<i64, StoreError> {
    let d = jiff::civil::Date::new(year, month, 1)
        .map_err(|e| StoreError::Backend(format!("event month {year}-{month}: {e}")))?;
    let ts = d
        .to_zoned(jiff::tz::TimeZone::UTC)
        .map_err(|e| StoreError::Backend(format!("event month {year}-{month}: {e}")))?
        .timestamp();
    Ok(ts.as_millisecond())
}

/// A value as the JSON column holds it.
pub(super) fn to_json<T: Serialize>(v: &T) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(v).map_err(|e| StoreError::Backend(e.to_string()))
}

/// A JSON column's value, or [`StoreError::Corrupt`] naming table and key.
pub(super) fn from_json<T: for<'de> Deserialize<'de>>(
    table: &'static str,
    key: impl fmt::Display,
    v: serde_json::Value,
) -> Result<T, StoreError> {
    serde_json::from_value(v).map_err(|e| corrupt(table, key, &e))
}

/// A record stored as JSON text (an event's, migration 11), read as [`from_json`] reads
/// a JSON column's.
pub(super) fn from_json_text<T: for<'de> Deserialize<'de>>(
    table: &'static str,
    key: impl fmt::Display,
    v: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(v).map_err(|e| corrupt(table, key, &e))
}

fn corrupt(table: &'static str, key: impl fmt::Display, e: &serde_json::Error) -> StoreError {
    StoreError::Corrupt {
        table,
        key: key.to_string(),
        why: e.to_string(),
    }
}

/// Stores `value` as the row of `table` whose `key_col` is `key`, unless there is one;
/// then `exists` is the error and nothing is written.
pub(super) fn insert_new<T: Serialize>(
    tx: &mut Tx<'_>,
    table: &str,
    key_col: &str,
    key: &str,
    value: &T,
    exists: impl FnOnce() -> StoreError,
) -> Result<(), StoreError> {
    let n = tx.execute(
        &format!(
            "INSERT INTO {table} ({key_col}, value) VALUES ($1, $2) \
             ON CONFLICT ({key_col}) DO NOTHING"
        ),
        &[&key, &to_json(value)?],
    )?;
    if n == 0 {
        return Err(exists());
    }
    Ok(())
}

/// Locks the row of `table` whose `key_col` is `key`, lets `change` change its value and
/// stores it back; returns the value with what `change` returned. `missing` is the error
/// when there is none; nothing is written when `change` fails.
pub(super) fn update_row<T: Serialize + for<'de> Deserialize<'de>, R>(
    tx: &mut Tx<'_>,
    table: &'static str,
    key_col: &str,
    key: &str,
    missing: impl FnOnce() -> StoreError,
    change: impl FnOnce(&mut T) -> Result<R, StoreError>,
) -> Result<(T, R), StoreError> {
    let select = format!("SELECT value FROM {table} WHERE {key_col} = $1 FOR UPDATE");
    let Some(row) = tx.query_opt(&select, &[&key])? else {
        return Err(missing());
    };
    let mut value: T = from_json(table, key, row.get(0))?;
    let out = change(&mut value)?;
    tx.execute(
        &format!("UPDATE {table} SET value = $2 WHERE {key_col} = $1"),
        &[&key, &to_json(&value)?],
    )?;
    Ok((value, out))
}

/// The rows of `sql` (key, then value) of `table`, each value read as [`from_json`] reads
/// it.
pub(super) fn json_rows<K, T>(
    tx: &mut Tx<'_>,
    table: &'static str,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<Vec<T>, StoreError>
where
    K: for<'r> postgres::types::FromSql<'r> + fmt::Display,
    T: for<'de> Deserialize<'de>,
{
    tx.query(sql, params)?
        .into_iter()
        .map(|r| from_json(table, r.get::<_, K>(0), r.get(1)))
        .collect()
}

/// Up to `limit` rows of `table` whose BIGINT `key_col` is above `after`, in its
/// order, each value read as [`from_json`] reads it.
pub(super) fn json_rows_after<T: for<'de> Deserialize<'de>>(
    tx: &mut Tx<'_>,
    table: &'static str,
    key_col: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<T>, StoreError> {
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let sql = format!(
        "SELECT {key_col}, value FROM {table} WHERE {key_col} > $1 ORDER BY {key_col} LIMIT $2"
    );
    json_rows::<i64, _>(tx, table, &sql, &[&after, &limit])
}

/// A `u64` for a BIGINT column; values above `i64::MAX` are refused, not wrapped.
pub(super) fn int(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Backend(format!("{v} exceeds BIGINT")))
}

/// A BIGINT column read back as the `u64` it was written from.
pub(super) fn uint(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The next id of `name` (`case_id`, `alert_id` or `audit_id`), from its sequence: no
/// row lock, so concurrent transactions do not wait for each other; an id is never
/// reused, a rolled-back transaction leaves a gap.
pub(super) fn next_id(tx: &mut Tx<'_>, name: &str) -> Result<u64, StoreError> {
    let seq = match name {
        "case_id" => "case_id_seq",
        "alert_id" => "alert_id_seq",
        "audit_id" => "audit_id_seq",
        other => return Err(StoreError::Backend(format!("no id sequence {other}"))),
    };
    let row = tx.query_one("SELECT nextval($1::text::regclass)", &[&seq])?;
    Ok(uint(row.get(0)))
}

/// The counter shard this connection writes: its backend pid modulo 64, so concurrent
/// transactions on different connections add to different rows (migration 3).
pub(super) const SHARD: &str = "(pg_backend_pid() % 64)::smallint";

/// Adds `by` to a counter (this connection's shard; the sum is read never below zero).
pub(super) fn bump(tx: &mut Tx<'_>, scope: &str, name: &str, by: i64) -> Result<(), StoreError> {
    tx.execute(
        &format!(
            "INSERT INTO counters (scope, name, shard, n) VALUES ($1, $2, {SHARD}, $3::bigint)
             ON CONFLICT (scope, name, shard) DO UPDATE SET n = counters.n + EXCLUDED.n"
        ),
        &[&scope, &name, &by],
    )?;
    Ok(())
}

/// Appends an audit entry.
pub(super) fn write_audit(tx: &mut Tx<'_>, note: AuditNote<'_>) -> Result<(), StoreError> {
    let id = next_id(tx, "audit_id")?;
    let e = note.entry(id);
    tx.execute(
        "INSERT INTO audit (id, value) VALUES ($1, $2)",
        &[&int(id)?, &to_json(&e)?],
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// the Store implementation: each operation is its family's function
// ---------------------------------------------------------------------------------------

impl Store for PgStore {
    family_operations!();

    fn ready(&self) -> Result<(), StoreError> {
        off_runtime(|| {
            let mut conn = self.pool().get_timeout(READY_TIMEOUT)?;
            conn.simple_query("SELECT 1")?;
            Ok(())
        })
    }

    fn change_agent_tokens(&self, mut c: super::TokenChange<'_>) -> Result<usize, StoreError> {
        // Rerun on a serialization failure: `change` only marks records, so calling it
        // again on the re-read tokens gives the same result.
        self.write(|tx| event_tables::change_agent_tokens(tx, &mut c))
    }

    fn ingest(&self, batch: Delivery<'_>) -> Result<IngestOutcome, StoreError> {
        let Delivery { entries, .. } = batch;
        let new_months = self.ensure_partitions(entries)?;
        let mut prepared = Some(event_tables::prepare(&batch)?);
        // The stored entry ids are read only when a run found one (`event_tables::ingest`).
        let mut read_ids = false;
        let outcome = self.write(|tx| {
            // A transaction run again (after a conflict) prepares the batch anew.
            let p = match prepared.take() {
                Some(p) => p,
                None => event_tables::prepare(&batch)?,
            };
            tx.index_reads_only()?;
            let out = event_tables::ingest(tx, batch, p, read_ids);
            // Whatever the conflict, the run after it reads them.
            read_ids |= out.as_ref().is_err_and(is_conflict);
            let out = out?;
            notify_cases(tx, self.instance, &out.cases)?;
            Ok(out)
        });
        if outcome.is_ok() && !new_months.is_empty() {
            self.analyse_new(&new_months);
        }
        outcome
    }

    fn record_heartbeat(
        &self,
        health: &GateHealth,
        gap_alert_after: SignedDuration,
    ) -> Result<Vec<Case>, StoreError> {
        self.write(|tx| {
            let cases = event_tables::record_heartbeat(tx, health, gap_alert_after)?;
            notify_cases(tx, self.instance, &cases)?;
            Ok(cases)
        })
    }

    fn fold_rollups(&self, max: usize) -> Result<usize, StoreError> {
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        self.write(|tx| {
            tx.index_reads_only()?;
            rollup_tables::fold(tx, max)
        })
    }

    fn append_changes(&self, changes: &[Change], by: Stamp<'_>) -> Result<u64, StoreError> {
        self.write(|tx| {
            let seq = registry_tables::append_changes(tx, changes, by)?;
            if !changes.is_empty() {
                fanout::notify(tx, self.instance, &[], Some(seq))?;
            }
            Ok(seq)
        })
    }

    fn update_case(
        &self,
        id: u64,
        by: Stamp<'_>,
        change: &mut dyn FnMut(&mut Case) -> Result<String, CaseError>,
    ) -> Result<Case, CaseError> {
        // `change` need not be `Send`: it runs on the caller's thread, and only the
        // transaction moves to a thread of its own (see `off_runtime`), handing the
        // loaded case over and the changed one back.
        let (to_caller, from_worker) = std::sync::mpsc::channel::<Result<Case, CaseError>>();
        let (to_worker, from_caller) =
            std::sync::mpsc::channel::<Result<(Case, String), CaseError>>();
        let transaction = move || -> Result<Case, CaseError> {
            let mut conn = self.pool().get().map_err(StoreError::from)?;
            // The case stays locked while the caller's change runs: one transaction
            // across the two channels, its statements not kept for the connection.
            let mut tx = Tx::new(
                conn.transaction().map_err(StoreError::from)?,
                Statements::default(),
            );
            let loaded = case_tables::load_case(&mut tx, id, true)
                .map_err(CaseError::from)
                .and_then(|c| c.ok_or(CaseError::NotFound(id)));
            let old = match &loaded {
                Ok(c) => c.state,
                Err(_) => {
                    let _ = to_caller.send(loaded.clone());
                    return loaded;
                }
            };
            if to_caller.send(loaded).is_err() {
                return Err(CaseError::NotFound(id));
            }
            let (c, what) = from_caller
                .recv()
                .map_err(|_| StoreError::Backend("case change abandoned".into()))??;
            case_tables::save_case(&mut tx, &c, Some(old))?;
            write_audit(&mut tx, by.note("case.update", &case_changed(id, &what)))?;
            fanout::notify(&mut tx, self.instance, &[c.id], None)?;
            tx.commit().map_err(StoreError::from)?;
            Ok(c)
        };
        std::thread::scope(|s| {
            let worker = s.spawn(transaction);
            let changed = match from_worker.recv() {
                Ok(Ok(mut c)) => change(&mut c).map(|what| (c, what)),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(StoreError::Backend("case transaction ended early".into()).into()),
            };
            let failed = changed.as_ref().err().cloned();
            let _ = to_worker.send(changed);
            let stored = worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            match failed {
                Some(e) => Err(e),
                None => stored,
            }
        })
    }
}
