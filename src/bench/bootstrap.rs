//! Figure 4: replica bootstrap from a signed n-record snapshot, and a signed delta of
//! 10,000 changes, each through the agent's real path.
//!
//! - Chunked snapshot (what agents use): `replication::verify_manifest` (ed25519
//!   `verify_strict` over the manifest, then parse), `replication::check_manifest`,
//!   `Store::begin_staging`; per chunk of [`CHUNK_RECORDS`]: its bytes read from a file
//!   (standing in for the HTTP body), `replication::check_chunk` (SHA-256 against the
//!   manifest, then parse), `Store::stage_chunk` (one write transaction, every tenth durable); then
//!   `Store::finish_staging` (the swap, one durable write transaction). The chunk files
//!   are written before the figure one chunk at a time, so neither the bench nor the
//!   agent path holds the whole snapshot.
//! - Whole snapshot in one envelope (older centrals): `replication::verify_envelope`,
//!   `replication::check_batch`, `Store::apply_batch` (one durable write transaction).
//! - Delta: as the whole snapshot, on the replica the chunked snapshot loaded.
//!
//! The snapshot holds n records: n/2 operators and n/2 consignments (plus one MRA).
//! The baseline inserts the same records' JSON into a bare redb table in one write
//! transaction with the same durability (and the delta's changes likewise).
//!
//! Peak RSS is this process's high-water mark from just before verification to the
//! commit; for the whole snapshot it includes the signed payload the agent would have
//! received.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use central::snapshots::CHUNK_RECORDS;
use ed25519_dalek::{Signature, Signer as _, SigningKey};
use edge_agent::config::PinnedKey;
use edge_agent::replication::{
    check_batch, check_chunk, check_manifest, verify_envelope, verify_manifest,
};
use edge_agent::store::Store;
use protocol::schema::{
    Change, ChangeBatch, SCHEMA_VERSION, SequencedChange, SignedEnvelope, SnapshotChunk,
    SnapshotManifest,
};
use redb::{Database, Durability, TableDefinition};
use sha2::{Digest as _, Sha256};

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
    Ok(sign_text(k, payload))
}

fn sign_text(k: &Keys, payload: String) -> SignedEnvelope {
    let sig: Signature = k.signing.sign(payload.as_bytes());
    SignedEnvelope {
        key_id: "bench-1".into(),
        payload,
        signature: hex::encode(sig.to_bytes()),
    }
}

/// Change `i` of the n-record snapshot, in the order of [`data::snapshot`]: the MRA, the
/// operators, the consignments.
fn snapshot_change(i: u64, n_ops: u64) -> anyhow::Result<Change> {
    Ok(match i {
        0 => Change::UpsertMra { mra: data::mra() },
        i if i <= n_ops => Change::UpsertOperator {
            record: data::operator(i - 1)?,
        },
        i => Change::UpsertConsignment {
            consignment: data::consignment(i - 1 - n_ops, n_ops)?,
        },
    })
}

/// A chunked snapshot on disk: the signed manifest and one file per chunk.
struct Chunked {
    manifest: SignedEnvelope,
    dir: std::path::PathBuf,
    bytes: u64,
}

/// Writes the n-record snapshot as central serves it, one chunk at a time (never the
/// whole snapshot in memory), and signs its manifest.
fn write_chunks(ctx: &Ctx, k: &Keys, n_ops: u64, n_cons: u64) -> anyhow::Result<Chunked> {
    let dir = ctx.path("fig4-chunks");
    std::fs::create_dir_all(&dir).context("chunk folder")?;
    let total = 1 + n_ops + n_cons;
    let per = u64::from(CHUNK_RECORDS);
    let mut hashes = Vec::new();
    let mut bytes = 0u64;
    for (index, start) in (0..total).step_by(CHUNK_RECORDS as usize).enumerate() {
        let changes = (start..(start + per).min(total))
            .map(|i| {
                Ok(SequencedChange {
                    seq: i + 1,
                    change: snapshot_change(i, n_ops)?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let index = u32::try_from(index).context("chunk index")?;
        let body = serde_json::to_vec(&SnapshotChunk {
            v: SCHEMA_VERSION,
            index,
            changes,
        })?;
        hashes.push(hex::encode(Sha256::digest(&body)));
        bytes += body.len() as u64;
        std::fs::write(dir.join(index.to_string()), &body).context("chunk file")?;
    }
    let manifest = SnapshotManifest {
        v: SCHEMA_VERSION,
        id: "bench".into(),
        port: data::PORT.into(),
        last_seq: total,
        as_of: jiff::Timestamp::now(),
        chunk_records: CHUNK_RECORDS,
        records: total,
        chunks: hashes,
    };
    Ok(Chunked {
        manifest: sign_text(k, serde_json::to_string(&manifest)?),
        dir,
        bytes,
    })
}

/// Timings of one chunked bootstrap.
struct ChunkedTimes {
    total: Duration,
    /// Reading chunk files.
    read: Duration,
    /// SHA-256 and parse.
    check: Duration,
    /// `stage_chunk`.
    stage: Duration,
    /// `finish_staging`.
    swap: Duration,
}

fn chunked_bootstrap(store: &Store, c: &Chunked, k: &Keys) -> anyhow::Result<ChunkedTimes> {
    let t = Instant::now();
    let m = verify_manifest(&c.manifest, &k.pinned).context("verifying the manifest")?;
    check_manifest(&m, 0, None, data::PORT, jiff::Timestamp::now())
        .context("checking the manifest")?;
    store.begin_staging(&m).context("staging")?;
    let (mut read, mut check, mut stage) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for index in 0..u32::try_from(m.chunks.len()).context("chunks")? {
        let t1 = Instant::now();
        let bytes = std::fs::read(c.dir.join(index.to_string())).context("chunk file")?;
        let t2 = Instant::now();
        let changes = check_chunk(&m, index, &bytes).context("checking a chunk")?;
        drop(bytes);
        let t3 = Instant::now();
        store
            .stage_chunk(&m.id, index, &changes)
            .context("staging a chunk")?;
        let t4 = Instant::now();
        read += t2 - t1;
        check += t3 - t2;
        stage += t4 - t3;
    }
    let t5 = Instant::now();
    store.finish_staging(&m.id).context("swapping in")?;
    let swap = t5.elapsed();
    Ok(ChunkedTimes {
        total: t.elapsed(),
        read,
        check,
        stage,
        swap,
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

    // Chunked snapshot first, while the process holds nothing else.
    let t = Instant::now();
    let chunks = write_chunks(ctx, &k, n_ops, n_cons)?;
    let prepare_chunks = t.elapsed();
    let store = Store::open(&ctx.path("fig4.redb"), gate()?).context("opening the store")?;
    let _ = reset_peak_rss();
    let chunked_rss_start = current_rss();
    let chunked = chunked_bootstrap(&store, &chunks, &k)?;
    let chunked_rss = peak_rss();
    std::fs::remove_dir_all(&chunks.dir).context("removing the chunk files")?;
    let last_seq = store.replica_meta().sequence;

    let delta_batch = data::delta(last_seq, DELTA, n_ops, n_cons)?;
    let delta_env = sign(&k, &delta_batch)?;
    let _ = reset_peak_rss();
    let delta = verify_and_apply(&store, &delta_env, &k, last_seq, false)?;
    let delta_rss = peak_rss();
    drop(store);

    // The whole snapshot in one envelope, as older centrals serve it.
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
    let whole_store =
        Store::open(&ctx.path("fig4-whole.redb"), gate()?).context("opening the store")?;
    let _ = reset_peak_rss();
    let rss_start = current_rss();
    let snap = verify_and_apply(&whole_store, &env, &k, 0, true)?;
    let snap_rss = peak_rss();
    drop(env);
    drop(whole_store);

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
    let ratio = |d: Duration| d.as_secs_f64() / raw_snap.as_secs_f64().max(1e-9);
    Ok(vec![
        Row::new(
            "4",
            format!(
                "snapshot of {n_records} records in chunks of {CHUNK_RECORDS}: verify manifest + hash + parse + stage + swap"
            ),
        )
        .throughput(rate(n_records, chunked.total), "records")
        .rss(chunked_rss)
        .target(
            "≤ 10 s, peak RSS ≤ 300 MB (at 1M)",
            chunked.total <= TARGET_SNAPSHOT
                && chunked_rss.is_some_and(|r| r <= TARGET_SNAPSHOT_RSS),
        )
        .note(format!(
            "{:.2} s total ({:.1}× the raw insert): read chunk files {:.2} s, SHA-256 + parse {:.2} s, stage_chunk {:.2} s, swap {:.3} s; {} of chunks; RSS at start {}; writing the chunks took {:.1} s",
            chunked.total.as_secs_f64(),
            ratio(chunked.total),
            chunked.read.as_secs_f64(),
            chunked.check.as_secs_f64(),
            chunked.stage.as_secs_f64(),
            chunked.swap.as_secs_f64(),
            fmt_bytes(Some(chunks.bytes)),
            fmt_bytes(chunked_rss_start),
            prepare_chunks.as_secs_f64()
        )),
        Row::new("4", "baseline: raw redb bulk insert, same records, one txn")
            .throughput(rate(n_records, raw_snap), "records")
            .rss(raw_snap_rss)
            .note(format!("{:.2} s", raw_snap.as_secs_f64())),
        Row::new(
            "4",
            format!("whole snapshot of {n_records} records in one envelope (older centrals): verify + parse + apply"),
        )
        .throughput(rate(n_records, snap.total), "records")
        .rss(snap_rss)
        .note(format!(
            "{:.2} s total ({:.1}× the raw insert): verify+parse {:.2} s (of which verify_strict {:.2} s), apply_batch {:.2} s; payload {}; RSS at start {}; signing took {:.1} s",
            snap.total.as_secs_f64(),
            ratio(snap.total),
            snap.verify_parse.as_secs_f64(),
            verify_only.as_secs_f64(),
            snap.apply.as_secs_f64(),
            fmt_bytes(Some(payload_len as u64)),
            fmt_bytes(rss_start),
            prepare.as_secs_f64()
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
