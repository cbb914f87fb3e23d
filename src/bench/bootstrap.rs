//! Figure 4: replica bootstrap from a signed n-record snapshot, and a signed delta of
//! 10,000 changes, each through the agent's real path: `replication::verify_envelope`
//! (ed25519 `verify_strict` over the exact payload bytes, then parse),
//! `replication::check_batch`, `Store::apply_batch` (one durable write transaction).
//!
//! The snapshot holds n records: n/2 operators and n/2 consignments (plus one MRA).
//! The baseline inserts the same records' JSON into a bare redb table in one write
//! transaction with the same durability (and the delta's changes likewise).
//!
//! Peak RSS is this process's high-water mark from just before verification to the
//! commit; it includes the signed payload the agent would have received.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey};
use edge_agent::config::PinnedKey;
use edge_agent::replication::{check_batch, verify_envelope};
use edge_agent::store::Store;
use protocol::schema::{Change, ChangeBatch, SignedEnvelope};
use redb::{Database, Durability, TableDefinition};

use super::data;
use super::stats::{current_rss, fmt_bytes, peak_rss, rate, reset_peak_rss};
use super::{Ctx, Row, gate};

/// Changes in the delta of issue 9.
pub const DELTA: u64 = 10_000;
const TARGET_SNAPSHOT: Duration = Duration::from_secs(10);
const TARGET_SNAPSHOT_RSS: u64 = 300 * 1024 * 1024;
const TARGET_DELTA: Duration = Duration::from_secs(1);

const RAW: TableDefinition<&str, &[u8]> = TableDefinition::new("raw_records");

struct Keys {
    signing: SigningKey,
    pinned: Vec<PinnedKey>,
}

fn keys() -> Keys {
    // A fixed seed: the figure is about cost, not secrecy.
    let signing = SigningKey::from_bytes(&[7u8; 32]);
    let pinned = vec![PinnedKey {
        key_id: "bench-1".into(),
        public_key: hex::encode(signing.verifying_key().as_bytes()),
    }];
    Keys { signing, pinned }
}

fn sign(k: &Keys, batch: &ChangeBatch) -> anyhow::Result<SignedEnvelope> {
    let payload = serde_json::to_string(batch).context("serialising the batch")?;
    let sig: Signature = k.signing.sign(payload.as_bytes());
    Ok(SignedEnvelope {
        key_id: "bench-1".into(),
        payload,
        signature: hex::encode(sig.to_bytes()),
    })
}

/// Timings of one verified application.
struct Applied {
    verify_parse: Duration,
    apply: Duration,
    total: Duration,
}

fn verify_and_apply(
    store: &Store,
    env: &SignedEnvelope,
    k: &Keys,
    replica: u64,
    snapshot: bool,
) -> anyhow::Result<Applied> {
    let t = Instant::now();
    let batch = verify_envelope(env, &k.pinned).context("verifying the envelope")?;
    check_batch(&batch, replica, data::PORT, snapshot).context("checking the batch")?;
    let verify_parse = t.elapsed();
    let t2 = Instant::now();
    store.apply_batch(&batch).context("applying the batch")?;
    let apply = t2.elapsed();
    let total = t.elapsed();
    drop(batch);
    Ok(Applied {
        verify_parse,
        apply,
        total,
    })
}

/// Runs figure 4.
///
/// # Errors
/// Store, signing or generator errors.
pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let n_ops = (ctx.n / 2) as u64;
    let n_cons = ctx.n as u64 - n_ops;
    let k = keys();

    let t = Instant::now();
    let env = sign(&k, &data::snapshot(n_ops, n_cons)?)?;
    let prepare = t.elapsed();
    let payload_len = env.payload.len();
    // Signature check alone, for attribution (SHA-512 over the payload plus one
    // verification).
    let t = Instant::now();
    let vk = k.signing.verifying_key();
    let mut sig = [0u8; 64];
    hex::decode_to_slice(&env.signature, &mut sig).context("signature hex")?;
    let sig = Signature::from_bytes(&sig);
    vk.verify_strict(env.payload.as_bytes(), &sig)
        .context("verify_strict")?;
    let verify_only = t.elapsed();

    let store = Store::open(&ctx.path("fig4.redb"), gate()?).context("opening the store")?;
    let _ = reset_peak_rss();
    let rss_start = current_rss();
    let snap = verify_and_apply(&store, &env, &k, 0, true)?;
    let snap_rss = peak_rss();
    drop(env);
    let last_seq = store.replica_meta().sequence;

    let delta_batch = data::delta(last_seq, DELTA, n_ops, n_cons)?;
    let delta_env = sign(&k, &delta_batch)?;
    let _ = reset_peak_rss();
    let delta = verify_and_apply(&store, &delta_env, &k, last_seq, false)?;
    let delta_rss = peak_rss();
    drop(store);

    // Baselines: the same records, raw, one transaction each.
    let records: Vec<(String, Vec<u8>)> = (0..n_ops)
        .map(|i| {
            let r = data::operator(i)?;
            Ok((r.operator.to_string(), serde_json::to_vec(&r)?))
        })
        .chain((0..n_cons).map(|j| {
            let c = data::consignment(j, n_ops)?;
            Ok((c.id.clone(), serde_json::to_vec(&c)?))
        }))
        .collect::<anyhow::Result<_>>()?;
    let raw = Database::create(ctx.path("fig4-raw.redb")).context("raw redb")?;
    let _ = reset_peak_rss();
    let t = Instant::now();
    raw_insert(&raw, &records)?;
    let raw_snap = t.elapsed();
    let raw_snap_rss = peak_rss();
    drop(records);
    let changes: Vec<(String, Vec<u8>)> = delta_batch
        .changes
        .iter()
        .map(|c| {
            Ok((
                format!("change-{:012}", c.seq),
                serde_json::to_vec(&c.change)?,
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    let t = Instant::now();
    raw_insert(&raw, &changes)?;
    let raw_delta = t.elapsed();

    let n_records = ctx.n;
    let kinds = delta_batch.changes.iter().fold([0usize; 3], |mut a, c| {
        a[match c.change {
            Change::SetStatus { .. } => 0,
            Change::RemoveConsignment { .. } => 2,
            _ => 1,
        }] += 1;
        a
    });
    Ok(vec![
        Row::new("4", format!("snapshot of {n_records} records: verify + parse + apply"))
            .throughput(rate(n_records, snap.total), "records")
            .rss(snap_rss)
            .target(
                "≤ 10 s, peak RSS ≤ 300 MB (at 1M)",
                snap.total <= TARGET_SNAPSHOT && snap_rss.is_some_and(|r| r <= TARGET_SNAPSHOT_RSS),
            )
            .note(format!(
                "{:.2} s total: verify+parse {:.2} s (of which verify_strict {:.2} s), apply_batch {:.2} s; payload {}; RSS at start {}; signing took {:.1} s",
                snap.total.as_secs_f64(),
                snap.verify_parse.as_secs_f64(),
                verify_only.as_secs_f64(),
                snap.apply.as_secs_f64(),
                fmt_bytes(Some(payload_len as u64)),
                fmt_bytes(rss_start),
                prepare.as_secs_f64()
            )),
        Row::new("4", "baseline: raw redb bulk insert, same records, one txn")
            .throughput(rate(n_records, raw_snap), "records")
            .rss(raw_snap_rss)
            .note(format!(
                "{:.2} s; snapshot took {:.1}× as long",
                raw_snap.as_secs_f64(),
                snap.total.as_secs_f64() / raw_snap.as_secs_f64().max(1e-9)
            )),
        Row::new("4", format!("delta of {DELTA} changes: verify + parse + apply"))
            .throughput(rate(DELTA as usize, delta.total), "changes")
            .rss(delta_rss)
            .target("≤ 1 s", delta.total <= TARGET_DELTA)
            .note(format!(
                "{:.3} s total: verify+parse {:.3} s, apply_batch {:.3} s; {} status, {} upserts, {} removals",
                delta.total.as_secs_f64(),
                delta.verify_parse.as_secs_f64(),
                delta.apply.as_secs_f64(),
                kinds[0],
                kinds[1],
                kinds[2]
            )),
        Row::new("4", "baseline: raw redb insert of the same changes, one txn")
            .throughput(rate(DELTA as usize, raw_delta), "changes")
            .note(format!("{:.3} s", raw_delta.as_secs_f64())),
    ])
}

fn raw_insert(db: &Database, items: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
    let mut w = db.begin_write()?;
    w.set_durability(Durability::Immediate)?;
    {
        let mut t = w.open_table(RAW)?;
        for (k, v) in items {
            t.insert(k.as_str(), v.as_slice())?;
        }
    }
    w.commit()?;
    Ok(())
}
