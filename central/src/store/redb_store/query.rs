//! Read-only queries: events, gates, statistics, alerts.

use std::collections::BTreeMap;
use std::ops::Bound;

use jiff::Timestamp;
use protocol::schema::GateId;
use redb::{Database, ReadableDatabase, ReadableTable};
use uuid::Uuid;

use super::Files;
use super::tables::{
    ALERTS, COUNTERS, EVENT_INDEX, EVENT_TXN, EVENTS, GATES, HOURLY, MAX_SCAN, META, decode_rows,
    index_row_key, index_row_of, read_record, uuid_key,
};
use crate::ingest::{decision_of, lane_of};
use crate::model::{Alert, EventQuery, HourStats, Page, StoredEvent, Summary};
use crate::stats;
use crate::store::{GateRow, StoreError, count_in_summary, decode, event_page};

fn parse_cursor4(c: &str) -> Option<(i64, String, u64)> {
    let mut it = c.splitn(3, '.');
    let at = it.next()?.parse().ok()?;
    let gate = it.next()?.to_owned();
    let seq = it.next()?.parse().ok()?;
    Some((at, gate, seq))
}

pub(super) fn gates(db: &Database) -> Result<Vec<GateRow>, StoreError> {
    let r = db.begin_read()?;
    decode_rows(r.open_table(GATES)?.iter()?, "gates_v1")
}

/// A page of events: the index file's rows in order, each event read from the store. It
/// waits until the index has applied what the store had committed, so an acknowledged
/// event is found; the index is read first: the store's snapshot, taken after, holds
/// every event it names (the index commits after the store, [`super::index_file`]).
pub(super) fn events(db: &Files, q: &EventQuery) -> Result<Page<StoredEvent>, StoreError> {
    let key = match (&q.container, &q.gate, &q.lane, q.decision) {
        (Some(c), _, _, _) => format!("c:{c}"),
        (None, Some(g), Some(l), _) => format!("l:{g}/{l}"),
        (None, _, _, Some(d)) => format!("d:{}", d.as_str()),
        (None, Some(g), None, None) => format!("g:{g}"),
        _ => "t".to_owned(),
    };
    let from = q.from.map_or(i64::MIN, |t| t.as_millisecond());
    let to = q.to.map_or(i64::MAX, |t| t.as_millisecond());
    let cursor = q.cursor.as_deref().and_then(parse_cursor4);
    if key.contains('\0') || cursor.as_ref().is_some_and(|(_, g, _)| g.contains('\0')) {
        // No index key or gate holds a NUL (and the keys' encoding relies on it).
        return Ok(event_page(Vec::new(), false, None::<(i64, &str, u64)>));
    }
    db.indexer.wait()?;
    let ri = db.index.begin_read()?;
    let idx = ri.open_table(EVENT_INDEX)?;
    let r = db.db.begin_read()?;
    let events = r.open_table(EVENTS)?;
    let bound = |at: i64, g: &str, s: u64| {
        let mut out = Vec::with_capacity(key.len() + g.len() + 18);
        index_row_key(&key, at, g, s, &mut out);
        out
    };
    // After the cursor's row, or from the first row at `from`; before the first at `to`.
    let start = match &cursor {
        Some((at, g, s)) => bound(*at, g, *s),
        None => bound(from, "", 0),
    };
    let start = match cursor {
        Some(_) => Bound::Excluded(start.as_slice()),
        None => Bound::Included(start.as_slice()),
    };
    let end = bound(to, "", 0);
    let limit = q.limit.clamp(1, 1_000);
    let mut items = Vec::new();
    let mut last = None;
    let mut scanned = 0usize;
    let mut more = false;
    for row in idx.range::<&[u8]>((start, Bound::Excluded(end.as_slice())))? {
        let (k, _) = row?;
        let bytes = k.value();
        let (_, at, g, s) = index_row_of(bytes).ok_or_else(|| StoreError::Corrupt {
            table: "event_index_v2",
            key: String::from_utf8_lossy(bytes).into_owned(),
            why: "not an index row's key".into(),
        })?;
        scanned += 1;
        if items.len() >= limit || scanned > MAX_SCAN {
            more = true;
            break;
        }
        last = Some((at, g.to_owned(), s));
        let Some(v) = events.get((g, s))? else {
            continue;
        };
        let e: StoredEvent = decode("events_v1", format!("{g}/{s}"), v.value())?;
        if q.gate.as_ref().is_some_and(|want| want != &e.entry.agent)
            || q.lane
                .as_ref()
                .is_some_and(|want| lane_of(&e.entry.body) != Some(want.as_str()))
            || q.decision
                .is_some_and(|want| decision_of(&e.entry.body) != Some(want))
        {
            continue;
        }
        items.push(e);
    }
    Ok(event_page(
        items,
        more,
        last.as_ref().map(|(at, g, s)| (*at, g.as_str(), s)),
    ))
}

pub(super) fn transaction_events(
    db: &Database,
    gate: &GateId,
    txn: &Uuid,
) -> Result<Vec<StoredEvent>, StoreError> {
    let r = db.begin_read()?;
    let t = r.open_table(EVENT_TXN)?;
    let ev = r.open_table(EVENTS)?;
    let k = uuid_key(txn);
    let g = gate.as_str();
    let mut out = Vec::new();
    for row in t.range((k, g, 0u64)..=(k, g, u64::MAX))? {
        let (key, _) = row?;
        let (_, g, s) = key.value();
        if let Some(v) = ev.get((g, s))? {
            out.push(decode("events_v1", format!("{g}/{s}"), v.value())?);
        }
    }
    Ok(out)
}

pub(super) fn hourly_stats(
    db: &Database,
    gate: Option<&GateId>,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<HourStats>, StoreError> {
    let (from_h, to_h) = (stats::hour_start(from), to.as_second());
    let r = db.begin_read()?;
    let t = r.open_table(HOURLY)?;
    let mut acc: BTreeMap<(String, i64), HourStats> = BTreeMap::new();
    for row in t.iter()? {
        let (k, v) = row?;
        let (g, hour, kind) = k.value();
        if gate.is_some_and(|want| want.as_str() != g) || hour < from_h || hour >= to_h {
            continue;
        }
        let s = acc.entry((g.to_owned(), hour)).or_default();
        stats::add_count(s, kind, v.value());
    }
    Ok(acc
        .into_iter()
        .map(|((g, hour), s)| stats::finish_hour(&g, hour, s))
        .collect())
}

pub(super) fn summary(db: &Database) -> Result<Summary, StoreError> {
    let r = db.begin_read()?;
    let c = r.open_table(COUNTERS)?;
    let mut s = Summary::default();
    for row in c.iter()? {
        let (k, v) = row?;
        let (scope, name) = k.value();
        let n = v.value();
        count_in_summary(&mut s, scope, name, n);
    }
    let g = r.open_table(GATES)?;
    for row in g.iter()? {
        let (k, v) = row?;
        let gr: GateRow = decode("gates_v1", k.value(), v.value())?;
        s.acked_through_per_gate
            .insert(gr.gate.to_string(), gr.state.acked_through);
    }
    s.registry_seq = r
        .open_table(META)?
        .get("change_seq")?
        .map_or(0, |g| g.value());
    Ok(s)
}

pub(super) fn alerts(db: &Database, limit: usize) -> Result<Vec<Alert>, StoreError> {
    let r = db.begin_read()?;
    let t = r.open_table(ALERTS)?;
    decode_rows(t.iter()?.rev().take(limit), "alerts_v1")
}

pub(super) fn alert(db: &Database, id: u64) -> Result<Option<Alert>, StoreError> {
    read_record(db, ALERTS, "alerts_v1", id, id)
}
