//! Read-only queries: events, gates, statistics, alerts.

use std::collections::{BTreeMap, HashMap};

use super::tx::Tx;
use jiff::Timestamp;
use postgres::types::ToSql;
use protocol::schema::GateId;
use uuid::Uuid;

use super::{from_json, from_json_text, int, uint};
use crate::model::{Alert, EventQuery, HourStats, Page, StoredEvent, Summary};
use crate::stats;
use crate::store::{GateRow, StoreError, count_in_summary, event_page};

fn parse_cursor(c: &str) -> Option<EventKey> {
    let mut it = c.splitn(3, '.');
    let at = it.next()?.parse().ok()?;
    let gate = it.next()?.to_owned();
    let seq = it.next()?.parse().ok()?;
    Some((at, gate, seq))
}

pub(super) fn gates(tx: &mut Tx<'_>) -> Result<Vec<GateRow>, StoreError> {
    tx.query("SELECT gate, value FROM gates ORDER BY gate", &[])?
        .into_iter()
        .map(|r| from_json("gates", r.get::<_, String>(0), r.get(1)))
        .collect()
}

/// Heap pages a container page's events are read ahead by (`effective_io_concurrency` for
/// its bitmap heap scan): enough for a page of up to [`MAX_EVENT_PAGE`] events to have
/// most of its reads in flight at once.
const CONTAINER_READ_AHEAD: u32 = 128;
/// The largest page of events a query returns.
const MAX_EVENT_PAGE: usize = 1_000;

type EventKey = (i64, String, i64);

/// Events matching `q`, a page of them in (time, gate, seq) order.
///
/// A search by container (without a lane or decision filter) reads its page's keys from
/// `event_containers` first and then the events in one bitmap heap scan with
/// [`CONTAINER_READ_AHEAD`]: a container's events lie in about as many heap pages as there
/// are events, and a nested loop (the one statement joining the two tables) reads them one
/// probe at a time, each page not cached a random read waited for alone (figure 11,
/// docs/benchmarks.md). It sets `enable_indexscan` and `effective_io_concurrency` for the
/// rest of its transaction, which is its own ([`PgStore::events`](super::PgStore)).
pub(super) fn events(tx: &mut Tx<'_>, q: &EventQuery) -> Result<Page<StoredEvent>, StoreError> {
    let limit = q.limit.clamp(1, MAX_EVENT_PAGE);
    if let Some(c) = &q.container
        && q.lane.is_none()
        && q.decision.is_none()
        && let Some(page) = container_page(tx, c, q, limit)?
    {
        return Ok(page);
    }
    joined_events(tx, q, limit)
}

/// The page of events by container without a lane or decision filter, its keys first;
/// `None` when a key found has no event (its month dropped by retention while its
/// container rows stay, until they are deleted after it).
fn container_page(
    tx: &mut Tx<'_>,
    container: &str,
    q: &EventQuery,
    limit: usize,
) -> Result<Option<Page<StoredEvent>>, StoreError> {
    let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
    let gate = q.gate.as_ref().map(|g| g.as_str().to_owned());
    let from = q.from.map(|t| t.as_millisecond());
    let to = q.to.map(|t| t.as_millisecond());
    let cursor = q.cursor.as_deref().and_then(parse_cursor);
    let mut sql = String::from(
        "SELECT c.at_ms, c.gate, c.seq FROM event_containers c WHERE c.container = $1",
    );
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&container];
    push_filters(&mut sql, &mut params, "c", &gate, &from, &to, &cursor);
    params.push(&fetch);
    sql.push_str(&format!(
        " ORDER BY c.at_ms, c.gate, c.seq LIMIT ${}",
        params.len()
    ));
    let keys: Vec<EventKey> = tx
        .query(&sql, &params)?
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let (Some(lo), Some(hi)) = (
        keys.iter().map(|k| k.0).min(),
        keys.iter().map(|k| k.0).max(),
    ) else {
        return Ok(Some(Page {
            items: Vec::new(),
            next_cursor: None,
        }));
    };
    let ats: Vec<i64> = keys.iter().map(|k| k.0).collect();
    // A bitmap heap scan reads its heap pages in file order with `posix_fadvise` read-ahead
    // up to `effective_io_concurrency`; an index scan (which the planner takes for a
    // hundred keys) reads them one by one. The bounds let PostgreSQL prune the months
    // outside the keys' times whatever plan it keeps for the statement.
    tx.batch_execute(&format!(
        "SET LOCAL enable_indexscan = off; \
         SET LOCAL effective_io_concurrency = {CONTAINER_READ_AHEAD}"
    ))?;
    let rows = tx.query(
        "SELECT at_ms, gate, seq, COALESCE(record, value::text) FROM events
         WHERE at_ms = ANY($1) AND at_ms >= $2 AND at_ms <= $3",
        &[&ats, &lo, &hi],
    )?;
    // An event of another gate at one of the same milliseconds is read too, and left out.
    let mut found: HashMap<EventKey, String> = HashMap::with_capacity(keys.len());
    for r in rows {
        found.insert((r.get(0), r.get(1), r.get(2)), r.get(3));
    }
    let more = keys.len() > limit;
    let mut items = Vec::with_capacity(limit.min(keys.len()));
    for (i, k) in keys.iter().enumerate() {
        let Some(v) = found.remove(k) else {
            return Ok(None);
        };
        if i < limit {
            items.push(from_json_text("events", format!("{}/{}", k.1, k.2), &v)?);
        }
    }
    let last = keys.get(limit - 1).map(|(at, g, s)| (*at, g.as_str(), s));
    Ok(Some(event_page(items, more, last)))
}

/// Appends the gate, time window and cursor conditions on the table aliased `k` to `sql`.
fn push_filters<'a>(
    sql: &mut String,
    params: &mut Vec<&'a (dyn ToSql + Sync)>,
    k: &str,
    gate: &'a Option<String>,
    from: &'a Option<i64>,
    to: &'a Option<i64>,
    cursor: &'a Option<EventKey>,
) {
    if let Some(g) = gate {
        params.push(g);
        sql.push_str(&format!(" AND {k}.gate = ${}", params.len()));
    }
    if let Some(f) = from {
        params.push(f);
        sql.push_str(&format!(" AND {k}.at_ms >= ${}", params.len()));
    }
    if let Some(t) = to {
        params.push(t);
        sql.push_str(&format!(" AND {k}.at_ms < ${}", params.len()));
    }
    if let Some((at, g, s)) = cursor {
        params.push(at);
        let n = params.len();
        params.push(g);
        params.push(s);
        sql.push_str(&format!(
            " AND ({k}.at_ms, {k}.gate, {k}.seq) > (${n}, ${}, ${})",
            n + 1,
            n + 2
        ));
    }
}

/// Events matching `q` in one statement: the container index joined to the events, or
/// the events table with the index that fits the filters.
fn joined_events(
    tx: &mut Tx<'_>,
    q: &EventQuery,
    limit: usize,
) -> Result<Page<StoredEvent>, StoreError> {
    let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
    let container = q.container.clone();
    let gate = q.gate.as_ref().map(|g| g.as_str().to_owned());
    let lane = q.lane.as_ref().map(|l| l.as_str().to_owned());
    let decision = q.decision.map(|d| d.as_str().to_owned());
    let from = q.from.map(|t| t.as_millisecond());
    let to = q.to.map(|t| t.as_millisecond());
    let cursor = q.cursor.as_deref().and_then(parse_cursor);
    // With a container, the container index drives the query (its rows carry the event's
    // key); otherwise the events table with the index that fits the filters.
    let (mut sql, k) = match &container {
        Some(_) => (
            String::from(
                "SELECT COALESCE(e.record, e.value::text), c.at_ms, c.gate, c.seq
                 FROM event_containers c
                 JOIN events e ON e.gate = c.gate AND e.seq = c.seq AND e.at_ms = c.at_ms
                 WHERE true",
            ),
            "c",
        ),
        None => (
            String::from(
                "SELECT COALESCE(e.record, e.value::text), e.at_ms, e.gate, e.seq
                 FROM events e WHERE true",
            ),
            "e",
        ),
    };
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
    if let Some(c) = &container {
        params.push(c);
        sql.push_str(&format!(" AND c.container = ${}", params.len()));
    }
    if let Some(l) = &lane {
        params.push(l);
        sql.push_str(&format!(" AND e.lane = ${}", params.len()));
    }
    if let Some(d) = &decision {
        params.push(d);
        sql.push_str(&format!(" AND e.decision = ${}", params.len()));
    }
    push_filters(&mut sql, &mut params, k, &gate, &from, &to, &cursor);
    params.push(&fetch);
    sql.push_str(&format!(
        " ORDER BY {k}.at_ms, {k}.gate, {k}.seq LIMIT ${}",
        params.len()
    ));
    let rows = tx.query(&sql, &params)?;
    let more = rows.len() > limit;
    let mut items = Vec::with_capacity(limit);
    let mut last = None;
    for r in rows.into_iter().take(limit) {
        let (at, g, s): (i64, String, i64) = (r.get(1), r.get(2), r.get(3));
        items.push(from_json_text("events", format!("{g}/{s}"), r.get(0))?);
        last = Some((at, g, s));
    }
    Ok(event_page(
        items,
        more,
        last.as_ref().map(|(at, g, s)| (*at, g.as_str(), s)),
    ))
}

pub(super) fn transaction_events(
    tx: &mut Tx<'_>,
    gate: &GateId,
    txn: &Uuid,
) -> Result<Vec<StoredEvent>, StoreError> {
    tx.query(
        "SELECT gate, seq, COALESCE(record, value::text) FROM events
         WHERE txn = $1 AND gate = $2 ORDER BY seq",
        &[txn, &gate.as_str()],
    )?
    .into_iter()
    .map(|r| {
        let key = format!("{}/{}", r.get::<_, String>(0), r.get::<_, i64>(1));
        from_json_text("events", key, r.get(2))
    })
    .collect()
}

pub(super) fn hourly_stats(
    tx: &mut Tx<'_>,
    gate: Option<&GateId>,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<HourStats>, StoreError> {
    let (from_h, to_h) = (stats::hour_start(from), to.as_second());
    let gate = gate.map(|g| g.as_str().to_owned());
    let rows = tx.query(
        "SELECT gate, hour, figure, n FROM hourly
         WHERE hour >= $1 AND hour < $2 AND ($3::text IS NULL OR gate = $3)
         ORDER BY gate, hour",
        &[&from_h, &to_h, &gate],
    )?;
    let mut acc: BTreeMap<(String, i64), HourStats> = BTreeMap::new();
    for r in rows {
        let (g, hour, figure, n): (String, i64, String, i64) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        let s = acc.entry((g, hour)).or_default();
        stats::add_count(s, &figure, uint(n));
    }
    Ok(acc
        .into_iter()
        .map(|((g, hour), s)| stats::finish_hour(&g, hour, s))
        .collect())
}

pub(super) fn summary(tx: &mut Tx<'_>) -> Result<Summary, StoreError> {
    let mut s = Summary::default();
    // A counter is the sum of its shards (`bump`), never below zero.
    for r in tx.query(
        "SELECT scope, name, GREATEST(sum(n), 0)::bigint FROM counters GROUP BY scope, name",
        &[],
    )? {
        let (scope, name, n): (String, String, i64) = (r.get(0), r.get(1), r.get(2));
        let n = uint(n);
        count_in_summary(&mut s, &scope, &name, n);
    }
    for gr in gates(tx)? {
        s.acked_through_per_gate
            .insert(gr.gate.to_string(), gr.state.acked_through);
    }
    s.registry_seq = super::registry_tables::last_seq(tx)?;
    Ok(s)
}

pub(super) fn alerts(tx: &mut Tx<'_>, limit: usize) -> Result<Vec<Alert>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    tx.query(
        "SELECT id, value FROM alerts ORDER BY id DESC LIMIT $1",
        &[&limit],
    )?
    .into_iter()
    .map(|r| from_json("alerts", r.get::<_, i64>(0), r.get(1)))
    .collect()
}

pub(super) fn alert(tx: &mut Tx<'_>, id: u64) -> Result<Option<Alert>, StoreError> {
    tx.query_opt("SELECT value FROM alerts WHERE id = $1", &[&int(id)?])?
        .map(|r| from_json("alerts", id, r.get(0)))
        .transpose()
}
