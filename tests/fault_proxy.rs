//! Delivery through a hostile network (docs/delivery.md, "How the fault tests check the
//! contract"): the agent reaches central (plain HTTP on loopback) through a proxy written
//! here that, on a fixed schedule, passes an event batch through, sends it to central
//! twice, forwards it but drops the answer, forwards it but truncates the answer, delays
//! it, or drops it without forwarding. The journal and central's store must still agree
//! exactly: lost = duplicated = out-of-order = 0.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    AgentSite, CentralLink, CentralSite, LaneSpec, Request, RunningBurst, Transport,
    assert_exactly_once, round_trip, serve, stop_and_count, wait_drained,
};
use tokio_util::sync::CancellationToken;

/// What the proxy does to one event batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    Pass,
    /// Forward the request twice; answer with central's second answer.
    Duplicate,
    /// Forward; close the agent's connection without an answer.
    DropResponse,
    /// Forward; send the agent the first half of the answer, then close.
    Truncate,
    /// Wait 1.2 s, then forward.
    Delay,
    /// Close the agent's connection without forwarding.
    DropRequest,
}

const PLAN: [Fault; 8] = [
    Fault::Pass,
    Fault::Duplicate,
    Fault::DropResponse,
    Fault::Truncate,
    Fault::Pass,
    Fault::Delay,
    Fault::DropRequest,
    Fault::Duplicate,
];

struct Proxy {
    upstream: SocketAddr,
    faults_on: AtomicBool,
    batches: AtomicU64,
    applied: Mutex<BTreeMap<Fault, u64>>,
}

impl Proxy {
    fn applied(&self) -> BTreeMap<Fault, u64> {
        self.applied.lock().map(|m| m.clone()).unwrap_or_default()
    }

    async fn handle(self: Arc<Self>, req: Request) -> Vec<u8> {
        let is_batch = req.method == "POST" && req.target.ends_with("/events");
        let fault = if is_batch && self.faults_on.load(Ordering::SeqCst) {
            let n = self.batches.fetch_add(1, Ordering::SeqCst);
            PLAN[usize::try_from(n).unwrap_or(0) % PLAN.len()]
        } else {
            Fault::Pass
        };
        if let Ok(mut m) = self.applied.lock() {
            *m.entry(fault).or_default() += u64::from(is_batch);
        }
        // An empty answer makes the server close the connection without a response.
        match fault {
            Fault::Pass => round_trip(self.upstream, &req).await.unwrap_or_default(),
            Fault::Duplicate => {
                let _ = round_trip(self.upstream, &req).await;
                round_trip(self.upstream, &req).await.unwrap_or_default()
            }
            Fault::DropResponse => {
                let _ = round_trip(self.upstream, &req).await;
                Vec::new()
            }
            Fault::Truncate => {
                let mut r = round_trip(self.upstream, &req).await.unwrap_or_default();
                r.truncate(r.len() / 2);
                r
            }
            Fault::Delay => {
                tokio::time::sleep(Duration::from_millis(1_200)).await;
                round_trip(self.upstream, &req).await.unwrap_or_default()
            }
            Fault::DropRequest => Vec::new(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_drops_delays_truncates_and_duplicates_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut central = CentralSite::started(dir.path(), Transport::PlainHttp).await;
    let proxy = Arc::new(Proxy {
        upstream: SocketAddr::from(([127, 0, 0, 1], central.port)),
        faults_on: AtomicBool::new(true),
        batches: AtomicU64::new(0),
        applied: Mutex::default(),
    });
    let stop_proxy = CancellationToken::new();
    let handler_proxy = proxy.clone();
    let addr = serve(
        Arc::new(move |req| Box::pin(handler_proxy.clone().handle(req))),
        stop_proxy.clone(),
    )
    .await;
    let link = CentralLink::to(&central).via(&format!("http://{addr}"));
    let mut agent = AgentSite::create(
        &dir.path().join("agent"),
        &link,
        &[LaneSpec::manual("L1"), LaneSpec::manual("L2")],
        "24h",
    );
    agent.start().await;

    let load = RunningBurst::spawn(
        agent.base.clone(),
        vec!["L1".into(), "L2".into()],
        2,
        1_000_000,
    );
    let out = load.out.clone();
    // Keep the load on until every fault has hit at least two batches.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let applied = proxy.applied();
        if PLAN
            .iter()
            .all(|f| applied.get(f).copied().unwrap_or(0) >= 2)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every fault was applied within 60 s: {applied:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    load.stop().await;

    // The network heals; the journal drains through the proxy.
    proxy.faults_on.store(false, Ordering::SeqCst);
    wait_drained(&central).await;
    let (counts, journal) = stop_and_count(&mut agent, &mut central);
    stop_proxy.cancel();
    println!("faults applied to event batches: {:?}", proxy.applied());
    assert_exactly_once("faulty proxy", &counts, &journal, &out.acked());
}
