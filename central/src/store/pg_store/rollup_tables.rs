//! The programme roll-ups ([`crate::rollup`]): an ingest queues its batch's part
//! ([`queue`]), a fold adds many queued batches of all gates at once ([`fold`]: one
//! statement per table), and the read of a range counts the rows still queued beside
//! the folded ones.

use std::collections::BTreeMap;

use super::tx::Tx;
use jiff::Timestamp;
use uuid::Uuid;

use super::{from_json, from_json_text, to_json, uint};
use crate::model::StoredEvent;
use crate::rollup::{self, Batch, Half, HourCounts, ProgrammeCounts, RollupSink};
use crate::store::StoreError;

struct Sink<'a, 'b> {
    tx: &'a mut Tx<'b>,
}

impl RollupSink for Sink<'_, '_> {
    type Error = StoreError;

    fn take_pending(
        &mut self,
        gate: &str,
        txns: &[Uuid],
    ) -> Result<Vec<(Uuid, Vec<Half>)>, StoreError> {
        let rows = self.tx.query(
            "DELETE FROM programme_pending p USING unnest($2::uuid[]) AS u (txn)
             WHERE p.gate = $1 AND p.txn = u.txn
             RETURNING p.txn, p.value",
            &[&gate, &txns],
        )?;
        rows.iter()
            .map(|r| {
                let txn: Uuid = r.get(0);
                let halves: Vec<Half> =
                    from_json("programme_pending", format!("{gate}/{txn}"), r.get(1))?;
                Ok((txn, halves))
            })
            .collect()
    }

    fn put_pending(
        &mut self,
        gate: &str,
        pending: BTreeMap<Uuid, Vec<Half>>,
    ) -> Result<(), StoreError> {
        if pending.is_empty() {
            return Ok(());
        }
        let mut txns = Vec::with_capacity(pending.len());
        let mut values = Vec::with_capacity(pending.len());
        for (t, halves) in pending {
            txns.push(t);
            values.push(to_json(&halves)?);
        }
        self.tx.execute(
            "INSERT INTO programme_pending (gate, txn, value)
             SELECT $1::text, * FROM unnest($2::uuid[], $3::json[])",
            &[&gate, &txns, &values],
        )?;
        Ok(())
    }

    fn add_counts(
        &mut self,
        counts: HourCounts,
        names: BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        add_packed(self.tx, &rollup::packed(&counts))?;
        if !counts.is_empty() {
            let (mut h, mut g, mut f, mut n) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            // In key order, so concurrent writers lock shared rows in one order.
            for ((at, group, figure), k) in counts {
                h.push(at);
                g.push(group);
                f.push(figure);
                n.push(k);
            }
            self.tx.execute(
                &format!(
                    "INSERT INTO programme_hourly (hour, grp, figure, shard, n)
                     SELECT h, g, f, {ROLLUP_SHARD}, n
                         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[])
                         AS u (h, g, f, n)
                     ON CONFLICT (hour, grp, figure, shard)
                         DO UPDATE SET n = programme_hourly.n + EXCLUDED.n"
                ),
                &[&h, &g, &f, &n],
            )?;
        }
        if !names.is_empty() {
            let (ops, names): (Vec<String>, Vec<String>) = names.into_iter().unzip();
            self.tx.execute(
                "INSERT INTO programme_names (operator, name)
                 SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
                &[&ops, &names],
            )?;
        }
        Ok(())
    }
}

/// Brings the roll-ups up to date with batches of several gates in one transaction, as
/// one [`rollup::Fold`]: gates share most of their (hour, group, figure) rows, so a fold
/// of four gates writes about a quarter of the rows it would write gate by gate.
fn store_gates(
    tx: &mut Tx<'_>,
    gates: impl IntoIterator<Item = (String, Batch)>,
) -> Result<(), StoreError> {
    let mut sink = Sink { tx };
    let mut fold = rollup::Fold::default();
    for (gate, batch) in gates {
        fold.add(&mut sink, &gate, batch)?;
    }
    fold.write(&mut sink)
}

/// The shard the roll-ups are written to. Roll-ups are written by one transaction at a
/// time (a fold holds [`FOLD_LOCK`]; a rebuild or a copy runs alone), so one shard is
/// enough and its rows are updated in place. The rows of other shards, written by
/// concurrent ingests before the roll-ups were queued (migration 8), are folded into it
/// as they are met (see [`add_packed`]) or summed by readers.
const ROLLUP_SHARD: &str = "0::smallint";

/// Rounds of making and locking this shard's rows before a batch gives up (a row another
/// batch folded away between the two is made again in the next round).
const LOCK_ROUNDS: usize = 5;

type PackedKey = (i16, i64, String);

/// Adds packed increments to the roll-up shard of their rows ([`ROLLUP_SHARD`]): the
/// rows are made (empty) where missing, locked and read, added to here, and written
/// back; the lock keeps two writers (a fold beside a copy) from losing an increment.
///
/// The same period's rows of other shards that no transaction holds are folded into this
/// shard's row and deleted (`SKIP LOCKED`: never waited for), so a period ends up with
/// one row per group, however many connections wrote it before the roll-ups were
/// queued — a year reads a row per month and group.
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
             WHERE p.shard <> {ROLLUP_SHARD}
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
             WHERE p.level = u.l AND p.start = u.s AND p.grp = u.g AND p.shard = {ROLLUP_SHARD}"
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
             SELECT l, s, g, {ROLLUP_SHARD}, $4
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
             WHERE p.shard = {ROLLUP_SHARD}
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

/// Builds the packed levels anew from the hourly counts, a month at a time (a schema
/// from before them, or a copy's target); returns the hourly rows read and the packed
/// rows written.
pub(super) fn build_packed(tx: &mut Tx<'_>) -> Result<(u64, u64), StoreError> {
    tx.execute("DELETE FROM programme_packed", &[])?;
    let range = tx.query_one("SELECT min(hour), max(hour) FROM programme_hourly", &[])?;
    let (Some(first), Some(last)) = (
        range.get::<_, Option<i64>>(0),
        range.get::<_, Option<i64>>(1),
    ) else {
        return Ok((0, 0));
    };
    let (mut read, mut written) = (0u64, 0u64);
    let mut month = rollup::Level::Month.start(first);
    // Bounded: one round per month from the first hour to the last (at most the months a
    // timestamp holds), each a month further.
    for _ in 0..(12 * 20_000) {
        if month > last {
            break;
        }
        let next = rollup::Level::Month.start(month + 32 * rollup::DAY);
        let rows = tx.query(
            "SELECT hour, grp, figure, sum(n)::bigint FROM programme_hourly
                 WHERE hour >= $1 AND hour < $2 GROUP BY hour, grp, figure",
            &[&month, &next],
        )?;
        read += rows.len() as u64;
        let packed = rollup::packed_from_daily(rows.iter().map(|r| {
            // A level's period start is the same from an hour as from its day.
            Ok::<_, StoreError>((r.get(0), r.get(1), r.get(2), uint(r.get(3))))
        }))?;
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
    /// Builds the packed roll-ups by day and month anew from the hourly counts: after a
    /// copy from another backend, which carries the hourly counts. Returns the hourly
    /// rows read and the packed rows written.
    ///
    /// # Errors
    /// The database fails, or a stored row is unreadable.
    pub fn rebuild_packed_rollups(&self) -> Result<(u64, u64), StoreError> {
        self.write(build_packed)
    }
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
/// this transaction: per gate, the batches merged in the order they were queued and their
/// halves paired; the counts of all gates written once ([`store_gates`]). Waits while another transaction folds; returns how many were folded
/// (none: nothing was queued).
pub(super) fn fold(tx: &mut Tx<'_>, max: i64) -> Result<usize, StoreError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&FOLD_LOCK])?;
    let (ids, queue) = read_queue(tx, max)?;
    if ids.is_empty() {
        return Ok(0);
    }
    let folded = queue.batches();
    store_gates(tx, queue.into_gates())?;
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
        // `event_keys` holds each entry's time: the event is one probe of its month's
        // key (gate, at ms, seq); refused entries have a key and no event.
        let rows = tx.query(
            "SELECT k.gate, k.seq, COALESCE(e.record, e.value::text) FROM event_keys k
             JOIN events e ON e.gate = k.gate AND e.at_ms = k.at_ms AND e.seq = k.seq
             WHERE (k.gate, k.seq) > ($1, $2)
             ORDER BY k.gate, k.seq LIMIT $3",
            &[&after.0, &after.1, &chunk],
        )?;
        let Some(last) = rows.last() else { break };
        after = (last.get(0), last.get(1));
        let mut by_gate: BTreeMap<String, Batch> = BTreeMap::new();
        for r in &rows {
            let gate: String = r.get(0);
            let seq: i64 = r.get(1);
            let e: StoredEvent = from_json_text("events", format!("{gate}/{seq}"), r.get(2))?;
            by_gate.entry(gate).or_default().event(&e);
            read += 1;
        }
        store_gates(tx, by_gate)?;
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
