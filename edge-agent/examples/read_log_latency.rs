//! Measures what the read log adds to a read: the time from a source handing a lane event
//! to [`ReadLog::log`] until it is durable (one redb commit with an fsync, shared by the
//! requests queued meanwhile), which is how much later the board's ack or the broker's
//! PUBACK goes out.
//!
//! `cargo run -p edge-agent --example read_log_latency [reads] [sources]` (default 500
//! reads from each of 1 and of 4 concurrent sources), in a temporary directory on the
//! disk of the current directory (`AEOGATE_BENCH_DIR` to choose another).

use std::time::{Duration, Instant};

use edge_agent::assembler::{AssemblerEvent, RawRead};
use edge_agent::readlog::ReadLog;
use edge_agent::store::Store;
use protocol::schema::{GateId, LaneId, ReadSource, ReadValue};

fn read(i: usize) -> AssemblerEvent {
    AssemblerEvent::Read(RawRead {
        lane: LaneId::parse("L1").expect("lane"),
        source: ReadSource::Rfid,
        device: "board-L1".into(),
        raw: format!("435351553330353433383300{i:08X}"),
        value: ReadValue::Unreadable {
            what: "epc".into(),
            error: format!("bench read {i}"),
        },
        at: jiff::Timestamp::now(),
        antenna: Some(1),
        rssi: Some(-55),
        confidence: None,
        entered_by: None,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let reads: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(500);
    let max_sources: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(4);
    let base = std::env::var_os("AEOGATE_BENCH_DIR")
        .map_or_else(|| std::path::PathBuf::from("."), Into::into);
    let dir = tempfile::tempdir_in(base)?;
    let store = Store::open(&dir.path().join("bench.redb"), GateId::parse("G1")?)?;
    let (log, task) = ReadLog::start(store);
    let log = std::sync::Arc::new(log);
    for sources in [1, max_sources] {
        let started = Instant::now();
        let mut workers = Vec::new();
        for s in 0..sources {
            let log = log.clone();
            workers.push(tokio::spawn(async move {
                let mut took = Vec::with_capacity(reads);
                for i in 0..reads {
                    let ev = read(s * reads + i);
                    let t = Instant::now();
                    log.log(&[ev]).await.expect("logged");
                    took.push(t.elapsed());
                }
                took
            }));
        }
        let mut all = Vec::new();
        for w in workers {
            all.extend(w.await?);
        }
        let total = started.elapsed();
        all.sort();
        println!(
            "sources={sources} reads={} p50={:?} p90={:?} p99={:?} max={:?} throughput={:.0} reads/s",
            all.len(),
            percentile(&all, 0.5),
            percentile(&all, 0.9),
            percentile(&all, 0.99),
            all.last().copied().unwrap_or_default(),
            all.len() as f64 / total.as_secs_f64(),
        );
    }
    log.close();
    drop(log);
    task.await?;
    Ok(())
}
