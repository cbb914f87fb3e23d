//! The programme roll-ups ([`crate::rollup`]): the [`RollupSink`] inside an ingest's
//! transaction (one statement per table, like the rest of a batch's rows), and the read
//! of a range.

use std::collections::BTreeMap;

use jiff::Timestamp;
use postgres::Transaction;
use uuid::Uuid;

use super::{from_json, to_json, uint};
use crate::rollup::{self, Half, ProgrammeCounts, Rollup, RollupSink};
use crate::stats;
use crate::store::StoreError;

struct Sink<'a, 'b> {
    tx: &'a mut Transaction<'b>,
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
                let halves: Vec<Half> =
                    from_json("programme_pending", format!("{}/{txn}", self.gate), r.get(1))?;
                Ok((txn, halves))
            })
            .collect()
    }

    fn write(&mut self, r: Rollup) -> Result<(), StoreError> {
        if !r.counts.is_empty() {
            let (mut h, mut g, mut f, mut n) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            // In key order, so concurrent batches lock shared rows in one order.
            for ((hour, group, figure), k) in r.counts {
                h.push(hour);
                g.push(group);
                f.push(figure);
                n.push(k);
            }
            self.tx.execute(
                "INSERT INTO programme_hourly (hour, grp, figure, n)
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[])
                 ON CONFLICT (hour, grp, figure) DO UPDATE SET n = programme_hourly.n + EXCLUDED.n",
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
                 SELECT $1, * FROM unnest($2::uuid[], $3::json[])",
                &[&self.gate, &txns, &values],
            )?;
        }
        Ok(())
    }
}

/// Brings the roll-ups up to date with one batch, in its transaction.
pub(super) fn store(
    tx: &mut Transaction<'_>,
    gate: &str,
    batch: rollup::Batch,
) -> Result<(), StoreError> {
    rollup::store(&mut Sink { tx, gate }, batch)
}

pub(super) fn programme_counts(
    tx: &mut Transaction<'_>,
    from: Option<Timestamp>,
    to: Timestamp,
) -> Result<ProgrammeCounts, StoreError> {
    let from_h = from.map_or(i64::MIN, stats::hour_start);
    let mut counts = BTreeMap::new();
    let mut ops = Vec::new();
    for r in tx.query(
        "SELECT grp, figure, sum(n)::bigint FROM programme_hourly
         WHERE hour >= $1 AND hour < $2 GROUP BY grp, figure",
        &[&from_h, &to.as_second()],
    )? {
        let (group, figure): (String, String) = (r.get(0), r.get(1));
        if let Some(op) = group.strip_prefix(rollup::OPERATOR) {
            ops.push(op.to_owned());
        }
        counts.insert((group, figure), uint(r.get(2)));
    }
    ops.sort_unstable();
    ops.dedup();
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
