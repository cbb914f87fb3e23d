//! One gate's token writes only into that gate's records, over a real socket: a body that
//! names another gate, or an entry about another gate's transaction, is kept as evidence
//! with an integrity alert and changes no case, event list or export; the sending gate's
//! other entries are still stored and acknowledged.

mod common;

use std::time::Duration;

use common::{batch, chain, exception_chain, gate, officer_action, seal_exception, transaction};
use protocol::schema::{
    ActionKind, EventBody, GateId, InspectionOutcome, JournalEntry, LaneDecision, Reason,
    ReasonCode,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

struct Server {
    base: String,
    client: reqwest::Client,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    async fn start(e: &common::Env) -> Server {
        let stop = CancellationToken::new();
        central::server::install_crypto_provider();
        let (addr, task) = common::serve_on_loopback(&e.central, &e.cfg, &stop);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        Server {
            base: format!("http://{addr}"),
            client,
            stop,
            task,
        }
    }

    /// A request to `path` with the bearer `token`, `body` sent as JSON; asserts a 200.
    async fn ok(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<&serde_json::Value>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            request = request.json(b);
        }
        let r = request.send().await.expect("request");
        assert_eq!(r.status(), 200, "{path}");
        r
    }

    async fn post(&self, path: &str, token: &str, body: &serde_json::Value) -> serde_json::Value {
        let r = self
            .ok(reqwest::Method::POST, path, token, Some(body))
            .await;
        r.json().await.expect("json")
    }

    async fn get(&self, path: &str, token: &str) -> String {
        let r = self.ok(reqwest::Method::GET, path, token, None).await;
        r.text().await.expect("text")
    }

    /// `path`'s answer, as JSON.
    async fn get_json(&self, path: &str, token: &str) -> serde_json::Value {
        serde_json::from_str(&self.get(path, token).await).expect("json")
    }

    /// Sends `entries` as `g`'s event batch; returns the acknowledgement.
    async fn post_batch(
        &self,
        g: &GateId,
        token: &str,
        entries: &[JournalEntry],
    ) -> serde_json::Value {
        self.post(
            &format!("/api/v1/agents/{g}/events"),
            token,
            &batch(g, entries),
        )
        .await
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// Central served on a socket of its own, with analyst "ana" logged in; returns the server
/// and ana's token.
async fn started(e: &common::Env) -> (Server, String) {
    let s = Server::start(e).await;
    e.central
        .add_user("ana", "correct horse", "analyst")
        .expect("user");
    let staff = common::login(&s.client, &s.base, "ana", "correct horse").await;
    (s, staff)
}

fn inspection_result(g: &str, txn: Uuid) -> EventBody {
    inspection_result_on(g, "L1", txn)
}

fn inspection_result_on(g: &str, lane: &str, txn: Uuid) -> EventBody {
    let kind = ActionKind::InspectionResult {
        result: InspectionOutcome::SealIntact,
        note: "nothing found".into(),
    };
    officer_action(&gate(g), lane, txn, "mallory", kind)
}

fn fast_for(g: &str, txn: Uuid) -> EventBody {
    let EventBody::Decision { mut decision } = seal_exception(&gate(g), txn) else {
        unreachable!()
    };
    decision.decision = LaneDecision::Fast;
    decision.reasons = vec![Reason::new(ReasonCode::AllChecksPassed)];
    decision.decided_at = common::ts("2026-03-01T10:30:00Z");
    EventBody::Decision { decision }
}

fn alert_kinds(ack: &serde_json::Value) -> Vec<String> {
    ack["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter_map(|a| a.as_str())
        .map(|a| a.split(' ').next().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gates_token_cannot_write_into_another_gates_cases_or_exports() {
    let e = common::env();
    let (g7, g8) = (gate("G7"), gate("G8"));
    let t7 = e.central.issue_agent_token(&g7, "P1").expect("token");
    let t8 = e.central.issue_agent_token(&g8, "P1").expect("token");
    let (s, staff) = started(&e).await;

    // G8 journals a truck with a seal exception: one case, G8's.
    let txn8 = Uuid::now_v7();
    let c8 = exception_chain(&g8, txn8, "MSCU1234566", vec![]);
    let ack = s.post_batch(&g8, &t8, &c8).await;
    assert_eq!(ack["acked_through"], 2, "{ack}");

    // With G7's token: a seal exception whose body names G8, an inspection result and a
    // FAST decision for G8's transaction, then an ordinary entry of G7's own.
    let own = Uuid::now_v7();
    let c7 = chain(
        &g7,
        vec![
            seal_exception(&g8, Uuid::now_v7()),
            inspection_result("G7", txn8),
            fast_for("G7", txn8),
            transaction(&g7, own, "MSCU1234566"),
        ],
    );
    let ack = s.post_batch(&g7, &t7, &c7).await;
    assert_eq!(
        ack["acked_through"], 4,
        "refused entries are kept as evidence, so G7's cursor moves on: {ack}"
    );
    assert_eq!(
        alert_kinds(&ack),
        ["FOREIGN_GATE", "FOREIGN_TRANSACTION", "FOREIGN_TRANSACTION"],
        "{ack}"
    );
    // The same batch again: duplicates, nothing new.
    let again = s.post_batch(&g7, &t7, &c7).await;
    assert_eq!(again["duplicates"], 4, "{again}");

    // G8 still has its one case, untouched by G7; the other cases are G7's alerts.
    let cases = s.get_json("/api/v1/cases?gate=G8", &staff).await;
    let items = cases["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{cases}");
    let id = items[0]["id"].as_u64().expect("id");
    let detail = s.get_json(&format!("/api/v1/cases/{id}"), &staff).await;
    assert_eq!(detail["officer_results"], serde_json::json!([]), "{detail}");
    let history = detail["case"]["history"].to_string();
    assert!(!history.contains("mallory"), "{history}");
    assert_eq!(detail["decision"]["decision"], "INSPECT", "{detail}");
    let g7_cases = s.get_json("/api/v1/cases?gate=G7", &staff).await;
    assert_eq!(
        g7_cases["items"].as_array().map(Vec::len),
        Some(3),
        "one case per alert, all G7's: {g7_cases}"
    );

    // The events CSV still says G8's truck was sent to inspection, and lists no FAST.
    let csv = s
        .get(
            "/api/v1/export/events.csv?from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z",
            &staff,
        )
        .await;
    let row = csv
        .lines()
        .find(|l| l.contains(&txn8.to_string()))
        .expect("G8's transaction is exported");
    assert!(row.contains("INSPECT") && !row.contains("FAST"), "{row}");
    assert_eq!(
        csv.lines().filter(|l| l.contains(",FAST,")).count(),
        0,
        "{csv}"
    );
    // G8's event list holds only G8's two entries.
    let events = s.get_json("/api/v1/events?gate=G8", &staff).await;
    assert_eq!(
        events["items"].as_array().map(Vec::len),
        Some(2),
        "{events}"
    );
    s.stop().await;
}

fn override_on(g: &str, lane: &str, txn: Uuid, to: LaneDecision) -> EventBody {
    let kind = ActionKind::Override {
        to,
        reason: "wave through".into(),
        note: String::new(),
    };
    officer_action(&gate(g), lane, txn, "mallory", kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_officer_action_from_another_lane_of_the_same_gate_is_refused() {
    let e = common::env();
    let g7 = gate("G7");
    let t7 = e.central.issue_agent_token(&g7, "P1").expect("token");
    let (s, staff) = started(&e).await;

    // A truck on lane L1 with a seal exception (one case), then, sent by the same gate,
    // an inspection result and an override naming it from lane L2, and one from L1.
    let txn = Uuid::now_v7();
    let entries = exception_chain(
        &g7,
        txn,
        "MSCU1234566",
        vec![
            inspection_result_on("G7", "L2", txn),
            override_on("G7", "L2", txn, LaneDecision::Standard),
            override_on("G7", "L1", txn, LaneDecision::Inspect),
        ],
    );
    let ack = s.post_batch(&g7, &t7, &entries).await;
    assert_eq!(ack["acked_through"], 5, "kept as evidence: {ack}");
    assert_eq!(alert_kinds(&ack), ["FOREIGN_LANE", "FOREIGN_LANE"], "{ack}");

    // The case shows no inspection result from lane L2; the transaction's events are its
    // own lane's three.
    let cases = s.get_json("/api/v1/cases?gate=G7", &staff).await;
    let exception = cases["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|c| c["subject"]["transaction_id"] == txn.to_string())
        .unwrap_or_else(|| panic!("the seal exception's case: {cases}"));
    let id = exception["id"].as_u64().expect("id");
    let detail = s.get_json(&format!("/api/v1/cases/{id}"), &staff).await;
    assert_eq!(detail["officer_results"], serde_json::json!([]), "{detail}");
    // The case shows the override from the truck's own lane, not the one from L2.
    let overrides = detail["overrides"].as_array().expect("overrides");
    assert_eq!(overrides.len(), 1, "{detail}");
    assert_eq!(overrides[0]["lane"], "L1", "{detail}");
    assert_eq!(overrides[0]["kind"]["to"], "INSPECT", "{detail}");
    let events = s
        .get_json("/api/v1/events?gate=G7&container=MSCU1234566", &staff)
        .await;
    let mut seqs: Vec<u64> = events["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["entry"]["seq"].as_u64())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, [1, 2, 5], "{events}");
    s.stop().await;
}
