//! Figure 5: central ingest. Four agents post, concurrently, batches of [`BATCH`]
//! hash-chained journal entries (n events in all), through central's ingest path in
//! process: the request body parsed as an `IngestBatch`, `central::ingest::check_batch`,
//! then `Store::ingest` on central's redb store (hash chain, deduplication, cases for seal
//! exceptions, acknowledgement; one durable write transaction per batch). The HTTP layer
//! (TLS, routing, token look-up) is not in this figure; figure 6 will carry it.
//!
//! Events alternate transaction and decision entries; the decisions come from the real
//! decider over a small replica, so about one in ten is a seal exception that opens a
//! case, as on a real day. The baseline is a raw redb insert loop of the same entry bytes
//! keyed by (gate, seq), one durable write transaction per batch, four threads.

use std::time::Instant;

use anyhow::{Context as _, bail};
use central::{Central, Config};
use edge_agent::decider::decide;
use jiff::SignedDuration;
use protocol::schema::{
    EventBody, GENESIS_HASH, GateId, IngestBatch, JournalEntry, SCHEMA_VERSION,
};
use redb::{Database, Durability, TableDefinition};
use uuid::Uuid;

use super::data::{self, IndexedReplica};
use super::stats::{Samples, peak_rss, rate, reset_peak_rss};
use super::{Ctx, Row, policy, routes};

/// Entries per posted batch.
pub const BATCH: usize = 500;
/// Concurrent agents.
pub const AGENTS: usize = 4;
const TARGET_PER_S: f64 = 50_000.0;
/// Operators and consignments of the small replica the decisions are made against.
const REPLICA: u64 = 2_000;

/// Per agent, per batch: (seq, entry JSON).
type RawBatches = Vec<Vec<Vec<(u64, Vec<u8>)>>>;

const RAW: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("raw_events");

fn gate_of(agent: usize) -> anyhow::Result<GateId> {
    GateId::parse(&format!("PORT1-G{}", agent + 1)).context("bench gate id")
}

/// Agent `agent`'s journal of `events` entries, in batches of [`BATCH`], each batch the
/// JSON body an agent would post.
fn agent_bodies(
    agent: usize,
    events: usize,
    replica: &IndexedReplica,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let gate = gate_of(agent)?;
    let (policy, routes) = (policy(), routes());
    let now = data::ts(data::NOW_S);
    let mut prev = GENESIS_HASH.to_string();
    let mut bodies = Vec::with_capacity(events.div_ceil(BATCH));
    let mut entries = Vec::with_capacity(BATCH);
    let mut tx = None;
    for i in 0..events {
        let seq = i as u64 + 1;
        let body = match tx.take() {
            None => {
                let k = (agent as u64) << 40 | seq;
                let t = data::transaction(k, REPLICA)?;
                tx = Some(t.clone());
                EventBody::Transaction { transaction: t }
            }
            Some(t) => EventBody::Decision {
                decision: decide(&t, replica, &policy, &routes, now),
            },
        };
        let id = Uuid::from_u128((agent as u128) << 64 | u128::from(seq));
        let e = JournalEntry::new_chained(gate.clone(), seq, id, now, prev, body)
            .map_err(|e| anyhow::anyhow!("chaining entry {seq}: {e}"))?;
        prev = e.hash.clone();
        entries.push(e);
        if entries.len() == BATCH || i + 1 == events {
            let batch = IngestBatch {
                v: SCHEMA_VERSION,
                batch_id: Uuid::from_u128((agent as u128) << 96 | u128::from(seq)),
                agent: gate.clone(),
                entries: std::mem::take(&mut entries),
            };
            bodies.push(serde_json::to_vec(&batch)?);
        }
    }
    Ok(bodies)
}

/// Runs figure 5.
///
/// # Errors
/// Central, store or generator errors, or an ingest that did not acknowledge everything.
pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let per_agent = ctx.n / AGENTS;
    let events = per_agent * AGENTS;
    let replica = IndexedReplica::generate(REPLICA, REPLICA)?;
    let t = Instant::now();
    let bodies = (0..AGENTS)
        .map(|a| agent_bodies(a, per_agent, &replica))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let prepare = t.elapsed();
    let body_bytes: usize = bodies.iter().flatten().map(Vec::len).sum();

    let cfg = Config::with_new_key_in(&ctx.dir, std::net::SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let central = Central::open(&cfg)?;
    let gap = SignedDuration::try_from(cfg.gap_alert_after).unwrap_or(SignedDuration::MAX);

    let _ = reset_peak_rss();
    let started = Instant::now();
    let results: Vec<anyhow::Result<(Samples, u64, usize)>> = std::thread::scope(|s| {
        let handles: Vec<_> = bodies
            .iter()
            .enumerate()
            .map(|(a, agent)| {
                let central = &central;
                s.spawn(move || -> anyhow::Result<(Samples, u64, usize)> {
                    let gate = gate_of(a)?;
                    let mut lat = Samples::with_capacity(agent.len());
                    let mut acked = 0;
                    let mut cases = 0;
                    for body in agent {
                        let t = Instant::now();
                        let batch: IngestBatch =
                            serde_json::from_slice(body).context("parsing a batch")?;
                        central::ingest::check_batch(&gate, &batch)?;
                        let out = central.store().ingest(
                            &gate,
                            &batch.entries,
                            jiff::Timestamp::now(),
                            gap,
                        )?;
                        lat.push(t.elapsed());
                        acked = out.acked_through;
                        cases += out.cases.len();
                    }
                    Ok((lat, acked, cases))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("agent thread panicked")))
            })
            .collect()
    });
    let wall = started.elapsed();
    let rss = peak_rss();
    let mut lat = Samples::default();
    let mut cases = 0;
    let mut all = Vec::new();
    for r in results {
        let (s, acked, c) = r?;
        if acked != per_agent as u64 {
            bail!("an agent was acknowledged through {acked}, not {per_agent}");
        }
        cases += c;
        all.push(s);
    }
    for s in all {
        // Merged per-batch latencies (order across agents is irrelevant past the cold one).
        lat = merge(lat, s);
    }
    let summary = central.summary()?;
    drop(central);

    // Baseline: the same entry bytes, raw.
    let raw_items: RawBatches = bodies
        .iter()
        .map(|agent| {
            agent
                .iter()
                .map(|body| {
                    let b: IngestBatch = serde_json::from_slice(body)?;
                    b.entries
                        .iter()
                        .map(|e| Ok((e.seq, serde_json::to_vec(e)?)))
                        .collect::<anyhow::Result<Vec<_>>>()
                })
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .collect::<anyhow::Result<_>>()?;
    drop(bodies);
    let raw = Database::create(ctx.path("fig5-raw.redb")).context("raw redb")?;
    let started = Instant::now();
    let raw_results: Vec<anyhow::Result<Samples>> = std::thread::scope(|s| {
        let handles: Vec<_> = raw_items
            .iter()
            .enumerate()
            .map(|(a, agent)| {
                let raw = &raw;
                s.spawn(move || -> anyhow::Result<Samples> {
                    let gate = gate_of(a)?;
                    let mut lat = Samples::with_capacity(agent.len());
                    for batch in agent {
                        let t = Instant::now();
                        let mut w = raw.begin_write()?;
                        w.set_durability(Durability::Immediate)?;
                        {
                            let mut table = w.open_table(RAW)?;
                            for (seq, bytes) in batch {
                                table.insert((gate.as_str(), *seq), bytes.as_slice())?;
                            }
                        }
                        w.commit()?;
                        lat.push(t.elapsed());
                    }
                    Ok(lat)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("raw thread panicked")))
            })
            .collect()
    });
    let raw_wall = started.elapsed();
    let mut raw_lat = Samples::default();
    for r in raw_results {
        raw_lat = merge(raw_lat, r?);
    }

    let per_s = rate(events, wall);
    let raw_per_s = rate(events, raw_wall);
    let stored: u64 = summary.events_per_gate.values().sum();
    Ok(vec![
        Row::new("5", format!("central ingest, {AGENTS} agents × batches of {BATCH}"))
            .latency(lat.summary())
            .throughput(per_s, "events")
            .rss(rss)
            .target("≥ 50,000 events/s (1M events)", per_s >= TARGET_PER_S)
            .note(format!(
                "{events} events in {:.2} s, {stored} stored, {cases} case updates; latency per batch; bodies {} prepared in {:.1} s",
                wall.as_secs_f64(),
                super::stats::fmt_bytes(Some(body_bytes as u64)),
                prepare.as_secs_f64()
            )),
        Row::new("5", "baseline: raw redb insert loop, same bytes, txn per batch")
            .latency(raw_lat.summary())
            .throughput(raw_per_s, "events")
            .note(format!(
                "{:.2} s; ingest took {:.1}× as long",
                raw_wall.as_secs_f64(),
                wall.as_secs_f64() / raw_wall.as_secs_f64().max(1e-9)
            )),
    ])
}

fn merge(mut a: Samples, b: Samples) -> Samples {
    a.extend(b);
    a
}
