//! The programme portal reaches the gate: the real `central` and `edge-agent` binaries on
//! loopback and a virtual lane board. The company behind the benchmark's consignment 0
//! (importer and carrier) starts suspended in the registry and validated in the portal;
//! its truck is not FAST. A second admin certifies it in the portal (through central's
//! HTTP dashboard), the signed change replicates to the gate and the next truck is FAST;
//! after a suspension in the portal the next truck is not FAST again; reinstated it is
//! FAST, and after a revocation in the portal not FAST. The company's own figures on its
//! portal page then count its five trucks, two FAST.

mod common;
#[path = "common/truck_lane.rs"]
mod truck_lane;

use std::time::{Duration, Instant};

use central::portal::{Answer, Met, STARTER, Status};
use central::service::Registration;
use common::{AgentSite, STEP, http_client};
use protocol::schema::AeoStatus;
use serde_json::Value;
use truck_lane::{container, enter_seal, get, open_holds, ready, site, truck};

const ADMINS: [&str; 2] = ["olga.officer", "pia.admin"];
const PASS: &str = "portal gate passphrase";

/// The agent's replica sequence.
async fn replica_seq(agent: &AgentSite) -> u64 {
    get(agent, "/readyz").await.expect("readyz")["replica"]["sequence"]
        .as_u64()
        .unwrap_or(0)
}

/// Waits until the agent's replica is past `seq`.
async fn replicated_after(agent: &AgentSite, seq: u64) {
    let deadline = Instant::now() + STEP;
    while replica_seq(agent).await <= seq {
        assert!(
            Instant::now() < deadline,
            "the change did not reach the gate in {STEP:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Truck 0 through lane L1 with its declared seal; returns its decision (`FAST`, …).
async fn drive(agent: &AgentSite, board: &aeogate::vboard::VirtualBoard, n: usize) -> Value {
    board.arrive(truck(0));
    open_holds(agent, &container(0)).await;
    enter_seal(agent, 0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    board.leave();
    let row = agent.wait_decided("L1", n).await;
    row["decision"]["decision"].clone()
}

/// A request to central's dashboard at `base` as `user`, logged in: `build` makes it from
/// a client that follows no redirect and the session token; it is sent with the session
/// cookie.
async fn as_user(
    base: &str,
    user: &str,
    build: impl FnOnce(reqwest::Client, &str) -> reqwest::RequestBuilder,
) -> reqwest::Response {
    let http = http_client(None);
    let token = common::login(&http, base, (user, PASS)).await;
    let name = central::dashboard::session::cookie_name(false);
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    build(no_redirect, &token)
        .header("cookie", format!("{name}={token}"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("dashboard request")
}

/// One dashboard form post as `user`; returns the status.
async fn portal_action(base: &str, user: &str, action: &str, op: &str, note: &str) -> u16 {
    let r = as_user(base, user, |client, token| {
        client
            .post(format!("{base}/applications/{op}/{action}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "csrf={}&note={}",
                central::auth::csrf_token(token),
                note.replace(' ', "+")
            ))
    })
    .await;
    r.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certification_in_the_portal_makes_the_companys_next_truck_fast_and_a_suspension_ends_it()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut central, board, mut agent) = site(dir.path(), 23);
    let op = aeogate::bench::data::operator_id(0)
        .expect("operator")
        .to_string();
    {
        let hub = central.open();
        for a in ADMINS {
            hub.add_user(a, PASS, "admin").expect("admin");
        }
        let id = protocol::operator::OperatorId::parse(&op).expect("op");
        hub.set_status(&id, AeoStatus::Suspended, "lapsed", "import")
            .expect("suspend");
        let r = Registration {
            operator: op.clone(),
            name: "Benchmark Importer".into(),
            kind: "IMPORTER".into(),
            user: "importer".into(),
            password: PASS.into(),
        };
        hub.register_company(&r, Some(ADMINS[0])).expect("company");
        let yes = STARTER
            .iter()
            .map(|q| {
                (
                    q.id.to_owned(),
                    Answer {
                        met: Met::Yes,
                        evidence: "manual".into(),
                    },
                )
            })
            .collect();
        hub.save_assessment(&op, yes, "importer").expect("answers");
        hub.submit_application(&op, "importer").expect("submitted");
        hub.move_application(&op, Status::UnderReview, "", ADMINS[0])
            .expect("review");
        let on = jiff::civil::Date::constant(2026, 12, 1);
        hub.schedule_visit(&op, on, ADMINS[0]).expect("visit");
        hub.move_application(&op, Status::Validated, "", ADMINS[0])
            .expect("validated");
    }
    central.start().await;
    agent.start().await;
    ready(&agent, true).await;

    assert_eq!(
        drive(&agent, &board, 1).await,
        "STANDARD",
        "suspended: STANDARD"
    );

    let decided = async |action: &str, note: &str, n: usize| {
        let seq = replica_seq(&agent).await;
        let status = portal_action(&central.url, ADMINS[1], action, &op, note).await;
        assert_eq!(status, 303, "{action}");
        replicated_after(&agent, seq).await;
        drive(&agent, &board, n).await
    };
    let certified = decided("certify", "", 2).await;
    assert_eq!(certified, "FAST", "certified in the portal: FAST");
    let suspended = decided("suspend", "seal log not kept", 3).await;
    assert_eq!(suspended, "STANDARD", "suspended in the portal: STANDARD");
    // Reinstated, then revoked: FAST again, then not FAST for good.
    let reinstated = decided("certify", "seal log kept", 4).await;
    assert_eq!(reinstated, "FAST", "reinstated in the portal: FAST");
    let revoked = decided("revoke", "forged seal records", 5).await;
    assert_eq!(revoked, "STANDARD", "revoked in the portal: STANDARD");

    // The company's own figures on its portal page, from what the gate uplinked: five
    // trucks where it is a declared party, two of them FAST.
    common::wait_drained(&central).await;
    let page = as_user(&central.url, "importer", |client, _| {
        client.get(format!("{}/portal", central.url))
    })
    .await
    .text()
    .await
    .expect("page");
    let own = page
        .split("id=\"benefits\"")
        .nth(1)
        .and_then(|b| b.split("</tr>").nth(1))
        .unwrap_or_default();
    assert!(own.contains(">5<") && own.contains("40.0 %"), "{own}");
    assert!(
        page.contains("id=\"respond\" data-status=\"REVOKED\""),
        "the company is told how to respond: {page}"
    );

    agent.terminate();
    central.stop();
}
