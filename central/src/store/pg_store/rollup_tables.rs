//! The programme roll-ups ([`crate::rollup`]): the [`RollupSink`] inside an ingest's
//! transaction (one statement per table, like the rest of a batch's rows), and the read
//! of a range.

use std::collections::BTreeMap;

use super::tx::Tx;
use jiff::Timestamp;
use uuid::Uuid;

use super::{SHARD, from_json, to_json, uint};
use crate::model::StoredEvent;
use crate::rollup::{self, Batch, Half, ProgrammeCounts, Rollup, RollupSink};
use crate::store::StoreError;

struct Sink<'a, 'b> {
    tx: &'a mut Tx<'b>,
    gate: &'a str,
}

impl RollupSink for Sink<'_, '_> {
    type Error = StoreError;

    fn take_pending(&mut self, txns: &[Uuid]) -> Result<Vec<(Uuid, Vec<Half>)>, StoreError> {
        let rows = self.tx.query(
            "DELETE FROM programme_pending WHERE gate = $1 AND txn = ANY($2)
             RETURNING txn, value",
            &[&self.gate, &txns],
        )?;
        rows.iter()
            .map(|r| {
                let txn: Uuid = r.get(0);
                let halves: Vec<Half> = from_json(
                    "programme_pending",
                    format!("{}/{txn}", self.gate),
                    r.get(1),
                )?;
                Ok((txn, halves))
            })
            .collect()
    }

    fn write(&mut self, r: Rollup) -> Result<(), StoreError> {
        add_packed(self.tx, &rollup::packed(&r.counts))?;
        let daily = rollup::by_day(&r.counts);
        for (table, start, counts) in [
            ("programme_hourly", "hour", r.counts),
            ("programme_daily", "day", daily),
        ] {
            if counts.is_empty() {
                continue;
            }
            let (mut h, mut g, mut f, mut n) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            // In key order, so concurrent batches lock shared rows in one order.
            for ((at, group, figure), k) in counts {
                h.push(at);
                g.push(group);
                f.push(figure);
                n.push(k);
            }
            self.tx.execute(
                &format!(
                    "INSERT INTO {table} ({start}, grp, figure, shard, n)
                     SELECT h, g, f, {SHARD}, n
                         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[])
                         AS u (h, g, f, n)
                     ON CONFLICT ({start}, grp, figure, shard)
                         DO UPDATE SET n = {table}.n + EXCLUDED.n"
                ),
                &[&h, &g, &f, &n],
            )?;
        }
        if !r.names.is_empty() {
            let (ops, names): (Vec<String>, Vec<String>) = r.names.into_iter().unzip();
            self.tx.execute(
                "INSERT INTO programme_names (operator, name)
                 SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
                &[&ops, &names],
            )?;
        }
        if !r.pending.is_empty() {
            let mut txns = Vec::new();
            let mut values = Vec::new();
            for (t, halves) in r.pending {
                txns.push(t);
                values.push(to_json(&halves)?);
            }
            self.tx.execute(
                "INSERT INTO programme_pending (gate, txn, value)
                 SELECT $1::text, * FROM unnest($2::uuid[], $3::json[])",
                &[&self.gate, &txns, &values],
            )?;
        }
        Ok(())
    }
}

/// Rounds of making and locking this shard's rows before a batch gives up (a row another
/// batch folded away between the two is made again in the next round).
const LOCK_ROUNDS: usize = 5;

type PackedKey = (i16, i64, String);

/// Adds packed increments to this connection's shard of their rows: the rows are made
/// (empty) where missing, locked and read, added to here, and written back. Only this
/// connection writes its shard, and the lock keeps it so should two connections share one.
///
/// The same period's rows of other shards that no transaction holds are folded into this
/// shard's row and deleted (`SKIP LOCKED`: never waited for), so a period ends up with
/// about as many rows as batches were writing it at once, not one per connection that
/// ever wrote it — a year reads a row or two per month and group, not sixteen.
fn add_packed(
    tx: &mut Tx<'_>,
    packed: &BTreeMap<(rollup::Level, i64, String), rollup::Packed>,
) -> Result<(), StoreError> {
    if packed.is_empty() {
        return Ok(());
    }
    // In key order, so concurrent batches lock shared rows in one order.
    let keys: Vec<PackedKey> = packed
        .keys()
        .map(|(level, start, group)| (i16::from(level.code()), *start, group.clone()))
        .collect();
    let mut own = lock_own(tx, &keys)?;
    for _ in 0..LOCK_ROUNDS {
        let missing: Vec<PackedKey> = keys
            .iter()
            .filter(|k| !own.contains_key(*k))
            .cloned()
            .collect();
        if missing.is_empty() {
            break;
        }
        own.extend(lock_own(tx, &missing)?);
    }
    if own.len() < keys.len() {
        return Err(StoreError::Backend(format!(
            "programme_packed: {} of {} rows of this shard could not be locked in {LOCK_ROUNDS} rounds",
            keys.len() - own.len(),
            keys.len()
        )));
    }
    let (l, s, g) = columns(&keys);
    let others = tx.query(
        &format!(
            "SELECT p.level, p.start, p.grp, p.shard, p.figures FROM programme_packed p
                 JOIN unnest($1::smallint[], $2::bigint[], $3::text[]) AS u (l, s, g)
                 ON p.level = u.l AND p.start = u.s AND p.grp = u.g
             WHERE p.shard <> {SHARD}
             FOR UPDATE OF p SKIP LOCKED"
        ),
        &[&l, &s, &g],
    )?;
    let mut sums: BTreeMap<PackedKey, rollup::Packed> = BTreeMap::new();
    for ((level, start, group), add) in packed {
        sums.insert(
            (i16::from(level.code()), *start, group.clone()),
            add.clone(),
        );
    }
    let (mut fl, mut fs, mut fg, mut fshard) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in &others {
        let key: PackedKey = (r.get(0), r.get(1), r.get(2));
        let shard: i16 = r.get(3);
        let figures = sums.entry(key.clone()).or_default();
        rollup::unpack(r.get(4), |i, n| {
            let e = figures.entry(i).or_default();
            *e = e.saturating_add(n);
        })
        .map_err(|why| corrupt(&key, why))?;
        fl.push(key.0);
        fs.push(key.1);
        fg.push(key.2);
        fshard.push(shard);
    }
    let mut rows = Vec::with_capacity(keys.len());
    for key in &keys {
        let add = sums.get(key).cloned().unwrap_or_default();
        let row = rollup::add_packed(own.get(key).map(Vec::as_slice), &add)
            .map_err(|why| corrupt(key, why))?;
        rows.push(row);
    }
    tx.execute(
        &format!(
            "UPDATE programme_packed p SET figures = u.f
                 FROM unnest($1::smallint[], $2::bigint[], $3::text[], $4::bytea[])
                     AS u (l, s, g, f)
             WHERE p.level = u.l AND p.start = u.s AND p.grp = u.g AND p.shard = {SHARD}"
        ),
        &[&l, &s, &g, &rows],
    )?;
    if !fl.is_empty() {
        tx.execute(
            "DELETE FROM programme_packed p
                 USING unnest($1::smallint[], $2::bigint[], $3::text[], $4::smallint[])
                     AS u (l, s, g, sh)
             WHERE p.level = u.l AND p.start = u.s AND p.grp = u.g AND p.shard = u.sh",
            &[&fl, &fs, &fg, &fshard],
        )?;
    }
    Ok(())
}

fn columns(keys: &[PackedKey]) -> (Vec<i16>, Vec<i64>, Vec<&str>) {
    let (mut l, mut s, mut g) = (Vec::new(), Vec::new(), Vec::new());
    for (level, start, group) in keys {
        l.push(*level);
        s.push(*start);
        g.push(group.as_str());
    }
    (l, s, g)
}

/// Makes this shard's rows of `keys` where missing (empty), then locks and reads those
/// that exist now: a row folded away by another batch after the first statement is not
/// among them.
fn lock_own(
    tx: &mut Tx<'_>,
    keys: &[PackedKey],
) -> Result<BTreeMap<PackedKey, Vec<u8>>, StoreError> {
    let (l, s, g) = columns(keys);
    let empty = rollup::pack(&rollup::Packed::new());
    tx.execute(
        &format!(
            "INSERT INTO programme_packed (level, start, grp, shard, figures)
             SELECT l, s, g, {SHARD}, $4
                 FROM unnest($1::smallint[], $2::bigint[], $3::text[]) AS u (l, s, g)
             ON CONFLICT DO NOTHING"
        ),
        &[&l, &s, &g, &empty],
    )?;
    let rows = tx.query(
        &format!(
            "SELECT p.level, p.start, p.grp, p.figures FROM programme_packed p
                 JOIN unnest($1::smallint[], $2::bigint[], $3::text[]) AS u (l, s, g)
                 ON p.level = u.l AND p.start = u.s AND p.grp = u.g
             WHERE p.shard = {SHARD}
             ORDER BY p.level, p.start, p.grp
             FOR UPDATE OF p"
        ),
        &[&l, &s, &g],
    )?;
    Ok(rows
        .iter()
        .map(|r| ((r.get(0), r.get(1), r.get(2)), r.get(3)))
        .collect())
}

fn corrupt(key: &PackedKey, why: String) -> StoreError {
    StoreError::Corrupt {
        table: "programme_packed",
        key: format!("{}/{}/{}", key.0, key.1, key.2),
        why,
    }
}

/// Builds the packed levels anew from the daily counts, a month at a time (a schema
/// from before them, or a copy's target); returns the daily rows read and the packed
/// rows written.
pub(super) fn build_packed(tx: &mut Tx<'_>) -> Result<(u64, u64), StoreError> {
    tx.execute("DELETE FROM programme_packed", &[])?;
    let range = tx.query_one("SELECT min(day), max(day) FROM programme_daily", &[])?;
    let (Some(first), Some(last)) = (
        range.get::<_, Option<i64>>(0),
        range.get::<_, Option<i64>>(1),
    ) else {
        return Ok((0, 0));
    };
    let (mut read, mut written) = (0u64, 0u64);
    let mut month = rollup::Level::Month.start(first);
    // Bounded: one round per month from the first day to the last (at most the months a
    // timestamp holds), each a month further.
    for _ in 0..(12 * 20_000) {
        if month > last {
            break;
        }
        let next = rollup::Level::Month.start(month + 32 * rollup::DAY);
        let rows = tx.query(
            "SELECT day, grp, figure, sum(n)::bigint FROM programme_daily
                 WHERE day >= $1 AND day < $2 GROUP BY day, grp, figure",
            &[&month, &next],
        )?;
        read += rows.len() as u64;
        let packed = rollup::packed_from_daily(
            rows.iter()
                .map(|r| Ok::<_, StoreError>((r.get(0), r.get(1), r.get(2), uint(r.get(3))))),
        )?;
        written += packed.len() as u64;
        let (mut l, mut s, mut g, mut f) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for ((level, start, group), figures) in packed {
            l.push(i16::from(level.code()));
            s.push(start);
            g.push(group);
            f.push(rollup::pack(&figures));
        }
        tx.execute(
            "INSERT INTO programme_packed (level, start, grp, shard, figures)
             SELECT l, s, g, 0, f
                 FROM unnest($1::smallint[], $2::bigint[], $3::text[], $4::bytea[])
                 AS u (l, s, g, f)",
            &[&l, &s, &g, &f],
        )?;
        month = next;
    }
    Ok((read, written))
}

impl super::PgStore {
    /// Builds the packed roll-ups by day and month anew from the daily counts: after a
    /// copy from another backend, which carries the hourly and daily counts. Returns the
    /// daily rows read and the packed rows written.
    ///
    /// # Errors
    /// The database fails, or a stored row is unreadable.
    pub fn rebuild_packed_rollups(&self) -> Result<(u64, u64), StoreError> {
        self.write(build_packed)
    }
}

/// Brings the roll-ups up to date with one batch, in its transaction.
pub(super) fn store(tx: &mut Tx<'_>, gate: &str, batch: rollup::Batch) -> Result<(), StoreError> {
    rollup::store(&mut Sink { tx, gate }, batch)
}

/// Queues an ingested batch's roll-up for [`fold`], in the ingest's transaction: one row,
/// where writing the roll-ups would touch a few rows per decision.
pub(super) fn queue(tx: &mut Tx<'_>, gate: &str, batch: &rollup::Batch) -> Result<(), StoreError> {
    if batch.is_empty() {
        return Ok(());
    }
    let bytes = batch.to_queued().map_err(StoreError::Backend)?;
    tx.execute(
        "INSERT INTO programme_queue (gate, batch) VALUES ($1, $2)",
        &[&gate, &bytes],
    )?;
    Ok(())
}

/// The key of the advisory lock that lets one transaction at a time, of any central
/// instance, fold the queue (two folding the same gate's halves at once could each
/// leave its half waiting for the other).
const FOLD_LOCK: i64 = 0x6165_6f67_5f66_6f6c;

/// Folds up to `max` of the oldest queued batches into the roll-ups and deletes them, in
/// this transaction: per gate, the batches merged in the order they were queued, then
/// stored once. Waits while another transaction folds; returns how many were folded
/// (none: nothing was queued).
pub(super) fn fold(tx: &mut Tx<'_>, max: i64) -> Result<usize, StoreError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&FOLD_LOCK])?;
    let (ids, queue) = read_queue(tx, max)?;
    if ids.is_empty() {
        return Ok(0);
    }
    let folded = queue.batches();
    for (gate, batch) in queue.into_gates() {
        store(tx, &gate, batch)?;
    }
    // The rows read, by id: a row with a lower id may commit after the read (ids are
    // taken before commit), and it waits for the next fold.
    tx.execute("DELETE FROM programme_queue WHERE id = ANY($1)", &[&ids])?;
    Ok(folded)
}

/// The ids of up to `max` of the oldest queued batches, and the batches merged per gate.
fn read_queue(tx: &mut Tx<'_>, max: i64) -> Result<(Vec<i64>, rollup::Queue), StoreError> {
    let rows = tx.query(
        "SELECT id, gate, batch FROM programme_queue ORDER BY id LIMIT $1",
        &[&max],
    )?;
    let mut queue = rollup::Queue::default();
    let mut ids = Vec::with_capacity(rows.len());
    for r in &rows {
        let id: i64 = r.get(0);
        ids.push(id);
        queue
            .push(r.get(1), r.get(2))
            .map_err(|why| StoreError::Corrupt {
                table: "programme_queue",
                key: id.to_string(),
                why,
            })?;
    }
    Ok((ids, queue))
}

/// Adds the batches still queued to `sums` and `names`, for the range `sp`, as folding
/// them would (their halves paired with the pending ones, read, not taken): in the
/// reader's snapshot each batch is either queued or folded, never both.
fn add_queued(
    tx: &mut Tx<'_>,
    sp: &rollup::Spans,
    sums: &mut rollup::Sums,
    names: &mut BTreeMap<String, String>,
) -> Result<(), StoreError> {
    let (_, queue) = read_queue(tx, i64::MAX)?;
    for (gate, batch) in queue.into_gates() {
        let pending = read_pending(tx, &gate, &batch.transactions())?;
        rollup::add_in_range(&batch.finish(pending), sp, sums, names);
    }
    Ok(())
}

/// The pending halves stored for these transactions of `gate`.
fn read_pending(
    tx: &mut Tx<'_>,
    gate: &str,
    txns: &[Uuid],
) -> Result<Vec<(Uuid, Vec<Half>)>, StoreError> {
    tx.query(
        "SELECT txn, value FROM programme_pending WHERE gate = $1 AND txn = ANY($2)",
        &[&gate, &txns],
    )?
    .iter()
    .map(|r| {
        let txn: Uuid = r.get(0);
        let halves: Vec<Half> = from_json("programme_pending", format!("{gate}/{txn}"), r.get(1))?;
        Ok((txn, halves))
    })
    .collect()
}

/// Builds the roll-ups from every stored event, gate by gate in seq order, in batches of
/// [`rollup::REBUILD_CHUNK`] events, the way ingest would have (a database migrated from
/// before the roll-ups); returns the events read. Refused entries are in
/// `refused_events`, not read here.
pub(super) fn rebuild(tx: &mut Tx<'_>) -> Result<u64, StoreError> {
    let chunk = i64::try_from(rollup::REBUILD_CHUNK).unwrap_or(i64::MAX);
    // Whatever packed rows a schema taken back to before the roll-ups kept, and the
    // queued batches: they are of stored events, which this counts.
    tx.execute("DELETE FROM programme_packed", &[])?;
    tx.execute("DELETE FROM programme_queue", &[])?;
    let events: i64 = tx.query_one("SELECT count(*) FROM events", &[])?.get(0);
    let mut after: (String, i64) = (String::new(), -1);
    let mut read = 0u64;
    // Bounded: every round but the last reads a full chunk of the events counted above.
    for _ in 0..=(events / chunk + 1) {
        let rows = tx.query(
            "SELECT gate, seq, value FROM events WHERE (gate, seq) > ($1, $2)
             ORDER BY gate, seq LIMIT $3",
            &[&after.0, &after.1, &chunk],
        )?;
        let Some(last) = rows.last() else { break };
        after = (last.get(0), last.get(1));
        let mut by_gate: BTreeMap<String, Batch> = BTreeMap::new();
        for r in &rows {
            let gate: String = r.get(0);
            let seq: i64 = r.get(1);
            let e: StoredEvent = from_json("events", format!("{gate}/{seq}"), r.get(2))?;
            by_gate.entry(gate).or_default().event(&e);
            read += 1;
        }
        for (gate, batch) in by_gate {
            store(tx, &gate, batch)?;
        }
    }
    Ok(read)
}

pub(super) fn programme_counts(
    tx: &mut Tx<'_>,
    from: Option<Timestamp>,
    to: Timestamp,
) -> Result<ProgrammeCounts, StoreError> {
    let sp = rollup::spans(from, to);
    let mut sums = rollup::Sums::default();
    for r in tx.query(
        "SELECT grp, figure, sum(n)::bigint FROM programme_hourly
             WHERE (hour >= $1 AND hour < $2) OR (hour >= $3 AND hour < $4)
             GROUP BY grp, figure",
        &[
            &sp.hours[0].0,
            &sp.hours[0].1,
            &sp.hours[1].0,
            &sp.hours[1].1,
        ],
    )? {
        sums.add(r.get(0), r.get(1), uint(r.get(2)));
    }
    let (day, month) = (
        i16::from(rollup::Level::Day.code()),
        i16::from(rollup::Level::Month.code()),
    );
    for r in tx.query(
        "SELECT grp, figures FROM programme_packed
             WHERE (level = $1 AND start >= $2 AND start < $3)
                OR (level = $1 AND start >= $4 AND start < $5)
                OR (level = $6 AND start >= $7 AND start < $8)",
        &[
            &day,
            &sp.days[0].0,
            &sp.days[0].1,
            &sp.days[1].0,
            &sp.days[1].1,
            &month,
            &sp.months.0,
            &sp.months.1,
        ],
    )? {
        let group: &str = r.get(0);
        sums.add_packed(group, r.get(1))
            .map_err(|why| StoreError::Corrupt {
                table: "programme_packed",
                key: group.to_owned(),
                why,
            })?;
    }
    let mut queued_names = BTreeMap::new();
    add_queued(tx, &sp, &mut sums, &mut queued_names)?;
    let counts = sums.counts();
    let ops: Vec<&str> = counts
        .keys()
        .filter_map(|(group, _)| group.strip_prefix(rollup::OPERATOR))
        .collect();
    let mut names: BTreeMap<String, String> = tx
        .query(
            "SELECT operator, name FROM programme_names WHERE operator = ANY($1)",
            &[&ops],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // A name is stored once, the first declared: a queued one only where none is.
    for op in ops {
        if let Some(name) = queued_names.remove(op) {
            names.entry(op.to_owned()).or_insert(name);
        }
    }
    Ok(ProgrammeCounts { counts, names })
}
