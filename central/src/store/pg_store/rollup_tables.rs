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

/// Brings the roll-ups up to date with one batch, in its transaction.
pub(super) fn store(tx: &mut Tx<'_>, gate: &str, batch: rollup::Batch) -> Result<(), StoreError> {
    rollup::store(&mut Sink { tx, gate }, batch)
}

/// Builds the roll-ups from every stored event, gate by gate in seq order, in batches of
/// [`rollup::REBUILD_CHUNK`] events, the way ingest would have (a database migrated from
/// before the roll-ups); returns the events read. Refused entries are in
/// `refused_events`, not read here.
pub(super) fn rebuild(tx: &mut Tx<'_>) -> Result<u64, StoreError> {
    let chunk = i64::try_from(rollup::REBUILD_CHUNK).unwrap_or(i64::MAX);
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
    let mut counts = BTreeMap::new();
    let mut ops = Vec::new();
    for r in tx.query(
        "SELECT grp, figure, sum(n)::bigint FROM (
             SELECT grp, figure, n FROM programme_hourly
                 WHERE (hour >= $1 AND hour < $2) OR (hour >= $3 AND hour < $4)
             UNION ALL
             SELECT grp, figure, n FROM programme_daily WHERE day >= $5 AND day < $6
         ) AS c GROUP BY grp, figure",
        &[
            &sp.hours[0].0,
            &sp.hours[0].1,
            &sp.hours[1].0,
            &sp.hours[1].1,
            &sp.days.0,
            &sp.days.1,
        ],
    )? {
        let (group, figure): (String, String) = (r.get(0), r.get(1));
        if let Some(op) = group.strip_prefix(rollup::OPERATOR) {
            ops.push(op.to_owned());
        }
        counts.insert((group, figure), uint(r.get(2)));
    }
    let names = tx
        .query(
            "SELECT operator, name FROM programme_names WHERE operator = ANY($1)",
            &[&ops],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Ok(ProgrammeCounts { counts, names })
}
