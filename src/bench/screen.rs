//! Figure 7: exception to screen. A seal read at the gate that differs from the declared
//! seal → the case on central's live stream (`GET /api/v1/cases/stream`, server-sent
//! events, with a staff session from `POST /api/v1/login`), the stream a staff screen
//! shows.
//!
//! Set-up, all in this process on loopback: central over plain HTTP with the bench
//! registry (1,000 operators, 1,000 consignments of port `PORT1`), the MQTT broker, four
//! virtual boards and the agent with central configured (uplink batch 1,000, heartbeat
//! every 30 s: the agent's defaults, except the batch; the uplink sends as soon as the
//! journal is appended, it does not wait for a timer). The agent's replica is loaded from
//! central before the first truck.
//!
//! Each truck: arrives on its lane's loop; the lane's OCR portal publishes the container
//! number and then a seal number that is not the declared one (the clock starts just
//! before that publish: the seal read); 150 ms later the truck leaves. The agent closes
//! the transaction one departure grace (1 s) later, decides INSPECT with SEAL_MISMATCH,
//! journals it, and the uplink posts it; central ingests it and opens a case. The clock
//! stops when the case arrives on the SSE stream. The same case seen on
//! `Central::subscribe_cases` in process is reported beside it (no HTTP, no SSE), and so
//! is the departure frame → lane topic time, the part of the path the lane shares.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use tokio_util::sync::CancellationToken;

use super::stats::{Samples, peak_rss, rate, reset_peak_rss};
use super::{Ctx, FULL_N, Row, data, system};
use crate::broker;
use crate::vboard::VirtualBoard;

/// Lanes driven at once.
const LANES: usize = 4;
/// Registry size at central.
const REGISTRY: u64 = 1_000;
/// Target p99.
pub const TARGET: Duration = Duration::from_secs(2);
/// Longest wait for one case.
const CASE_WAIT: Duration = Duration::from_secs(15);

/// Trucks: 200 (the brief's sample), 400 at full scale.
fn trucks(ctx: &Ctx) -> usize {
    if ctx.n >= FULL_N { 400 } else { 200 }
}

/// Case arrivals by lane: (instant, transaction id).
type Arrivals = Arc<Mutex<HashMap<String, Vec<(Instant, String)>>>>;

fn record(arrivals: &Arrivals, lane: String, tx: String) {
    if let Ok(mut a) = arrivals.lock() {
        a.entry(lane).or_default().push((Instant::now(), tx));
    }
}

/// The first case on `lane` after `since` whose transaction is not in `seen`.
fn first_new(
    arrivals: &Arrivals,
    lane: &str,
    since: Instant,
    seen: &HashSet<String>,
) -> Option<(Instant, String)> {
    let a = arrivals.lock().ok()?;
    a.get(lane)?
        .iter()
        .find(|(at, tx)| *at >= since && !seen.contains(tx))
        .cloned()
}

/// Reads the SSE stream: each `event: case` record's `data:` line is a `Case` as JSON.
async fn read_stream(
    mut resp: reqwest::Response,
    arrivals: Arrivals,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    // Bytes, not text: a chunk may end inside a UTF-8 character.
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let chunk = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            c = resp.chunk() => c.context("reading the case stream")?,
        };
        let Some(chunk) = chunk else {
            return Ok(());
        };
        buf.extend_from_slice(&chunk);
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let record_bytes: Vec<u8> = buf.drain(..end + 2).collect();
            let record_text = String::from_utf8_lossy(&record_bytes);
            let is_case = record_text.lines().any(|l| l.trim() == "event: case");
            let data: String = record_text
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect::<Vec<_>>()
                .join("\n");
            if !is_case {
                continue;
            }
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&data)
                && let Some(lane) = v.get("lane").and_then(serde_json::Value::as_str)
                && let Some(tx) = v
                    .pointer("/subject/transaction_id")
                    .and_then(serde_json::Value::as_str)
            {
                record(&arrivals, lane.to_owned(), tx.to_owned());
            }
        }
    }
}

/// Runs figure 7.
///
/// # Errors
/// A part cannot be started, login or the stream is refused, or no case arrives.
pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    super::system::block_on(measure(ctx))
}

#[allow(clippy::too_many_lines)]
async fn measure(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let gate = "PORT1-G1";
    let dir = ctx.path("fig7");
    std::fs::create_dir_all(&dir).context("figure 7 directory")?;
    let central = system::start_central(&dir, REGISTRY, REGISTRY).await?;
    central
        .hub
        .add_user("bench-analyst", "bench-password-7", "analyst")?;
    // One crypto provider for rustls in the process: ring (reqwest is built without one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().build().context("HTTP client")?;
    let login: serde_json::Value = http
        .post(format!("{}/api/v1/login", central.url))
        .json(&serde_json::json!({"user": "bench-analyst", "password": "bench-password-7"}))
        .send()
        .await
        .context("POST /api/v1/login")?
        .error_for_status()
        .context("login refused")?
        .json()
        .await
        .context("login answer")?;
    let session = login
        .get("token")
        .and_then(serde_json::Value::as_str)
        .context("login answer without a token")?
        .to_owned();
    let stop = CancellationToken::new();
    let sse_arrivals: Arrivals = Arc::default();
    let resp = http
        .get(format!("{}/api/v1/cases/stream", central.url))
        .bearer_auth(&session)
        .send()
        .await
        .context("GET /api/v1/cases/stream")?
        .error_for_status()
        .context("case stream refused")?;
    let sse_task = tokio::spawn(read_stream(resp, sse_arrivals.clone(), stop.clone()));
    let mem_arrivals: Arrivals = Arc::default();
    {
        let mut rx = central.hub.subscribe_cases();
        let (a, stop) = (mem_arrivals.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    c = rx.recv() => match c {
                        Ok(case) => {
                            if let (Some(lane), Some(tx)) = (&case.lane, case.transaction_id()) {
                                record(&a, lane.to_string(), tx.to_string());
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => break,
                    }
                }
            }
        });
    }

    let broker = tokio::task::spawn_blocking(broker::start).await??;
    let boards = system::boards(LANES)?;
    let heartbeat = Duration::from_secs(30);
    let link = system::central_link(&central, gate, 1_000, heartbeat)?;
    let store = dir.join("agent.redb");
    let text = system::agent_toml(gate, &boards, broker.addr, &store, Some(&link));
    let (cfg, lanes) = system::agent_config(&text, &boards, "figure 7 agent")?;
    let mut subs = system::lane_subscriber(broker.addr, gate, &lanes, stop.clone()).await?;
    let rss_ok = reset_peak_rss();
    let agent = edge_agent::runtime::start(cfg, stop.clone()).await?;
    system::links_up(&boards, Duration::from_secs(10)).await?;
    system::replicated(&agent.shared.store, Duration::from_secs(30)).await?;

    let mut mo = MqttOptions::new("bench-ocr", "127.0.0.1", broker.addr.port());
    mo.set_keep_alive(Duration::from_secs(30));
    let (ocr, ocr_ev) = AsyncClient::new(mo, 64);
    system::drive_event_loop(ocr_ev, Duration::from_millis(50), stop.clone());

    let total = trucks(ctx);
    let per_lane = total.div_ceil(LANES);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (li, b) in boards.iter().enumerate() {
        let lane = b.lane().to_string();
        let rx = subs
            .remove(&lane)
            .context("lane subscriber missing a lane")?;
        let frames = b.watch_frames();
        tasks.push(tokio::spawn(drive_lane(
            b.clone(),
            lane,
            li,
            per_lane,
            ocr.clone(),
            gate,
            rx,
            frames,
            sse_arrivals.clone(),
            mem_arrivals.clone(),
        )));
    }
    let mut sse = Samples::default();
    let mut mem = Samples::default();
    let mut topic = Samples::default();
    let (mut got, lost) = system::join_lane_drivers(tasks).await?;
    let elapsed = started.elapsed();
    let peak = peak_rss();
    got.sort_by_key(|g| g.0);
    for (_, s, m, d) in &got {
        sse.push(*s);
        if let Some(m) = m {
            mem.push(*m);
        }
        if let Some(d) = d {
            topic.push(*d);
        }
    }
    let cases = got.len();
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), agent.join).await;
    central.stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), central.task).await;
    let _ = sse_task.await;
    if cases == 0 {
        anyhow::bail!("no case reached the stream ({lost} trucks without one)");
    }
    let sse = sse.summary();
    let met = sse.p99.is_some_and(|p| p <= TARGET);
    Ok(vec![
        Row::new("7", "seal read → case on the SSE stream (HTTP)")
            .latency(sse)
            .throughput(rate(cases, elapsed), "cases")
            .rss(peak)
            .target("p99 ≤ 2 s", met)
            .note(format!(
                "{LANES} lanes, one truck at a time each; {lost} trucks without a case; uplink batch 1,000, heartbeat 30 s; includes the 1 s departure grace{}",
                if rss_ok { "" } else { "; peak RSS of the whole run" }
            )),
        Row::new("7", "seal read → case on Central::subscribe_cases (in process)")
            .latency(mem.summary())
            .note("same cases, no HTTP or SSE"),
        Row::new("7", "baseline: departure frame → lane topic (grace included)")
            .latency(topic.summary())
            .note("the lane's share of the path (figure 2's raw row)"),
    ])
}

#[allow(clippy::too_many_arguments)]
async fn drive_lane(
    board: Arc<VirtualBoard>,
    lane: String,
    index: usize,
    trucks: usize,
    ocr: AsyncClient,
    gate: &'static str,
    mut decisions: tokio::sync::mpsc::UnboundedReceiver<system::LaneMessage>,
    frames: std::sync::mpsc::Receiver<crate::vboard::LinkFrame>,
    sse: Arrivals,
    mem: Arrivals,
) -> (
    Vec<(Instant, Duration, Option<Duration>, Option<Duration>)>,
    usize,
) {
    let topic = format!("portal/{gate}/{lane}/ocr");
    tokio::time::sleep(Duration::from_millis(300 * index as u64)).await;
    let mut out = Vec::new();
    let mut lost = 0;
    let mut seen: HashSet<String> = HashSet::new();
    for k in 0..trucks {
        // Consignment j is declared with seal j; the truck shows another valid seal.
        let j = ((k * LANES + index) as u64) % REGISTRY;
        let (Ok(container), Ok(wrong)) = (data::container(j), data::seal(j + 5_000_000)) else {
            lost += 1;
            continue;
        };
        board.arrive(crate::vboard::Truck {
            dwell: Duration::from_millis(300),
            ..Default::default()
        });
        tokio::time::sleep(Duration::from_millis(80)).await;
        let c = serde_json::json!({ "container": container.as_str(), "confidence": 95 });
        let _ = ocr
            .publish(&topic, QoS::AtLeastOnce, false, c.to_string())
            .await;
        let t0 = Instant::now();
        let s = serde_json::json!({ "seal": wrong.as_str() });
        let _ = ocr
            .publish(&topic, QoS::AtLeastOnce, false, s.to_string())
            .await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        board.leave();
        let decision = system::next_decision(&mut decisions, CASE_WAIT).await;
        let (departure, _) = system::departure_and_command(&frames);
        let lane_topic = match (&decision, departure) {
            (Some(m), Some(d)) => Some(m.received.saturating_duration_since(d.at)),
            _ => None,
        };
        let deadline = Instant::now() + CASE_WAIT;
        let case = loop {
            if let Some(c) = first_new(&sse, &lane, t0, &seen) {
                break Some(c);
            }
            if Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let Some((at, tx)) = case else {
            lost += 1;
            continue;
        };
        let in_mem =
            first_new(&mem, &lane, t0, &seen).map(|(m, _)| m.saturating_duration_since(t0));
        seen.insert(tx);
        out.push((t0, at.saturating_duration_since(t0), in_mem, lane_topic));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (out, lost)
}
