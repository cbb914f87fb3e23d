//! Two central instances on one PostgreSQL database (a cluster the test starts itself,
//! common/pg.rs), each serving HTTP on a loopback port of its own: what one instance does
//! reaches the live channels of the other (LISTEN/NOTIFY, docs/scale-out.md).

// Inspects the PostgreSQL backend directly (what the store holds), as store tests do.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use central::config::{PgUrl, StoreConfig};
use common::*;
use tokio_util::sync::CancellationToken;

/// A central on `url`, served on a free loopback port; its base URL and server task.
async fn instance(url: &str) -> (Env, String, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let url = url.to_owned();
    let e = env_with(move |cfg| {
        cfg.store = Some(StoreConfig {
            url: PgUrl::parse(&url).expect("PostgreSQL URL"),
            retention_months: None,
            ca_cert: None,
        });
    });
    let (addr, server) = serve_on_loopback(&e.central, &e.cfg, &CancellationToken::new());
    let base = format!("http://{addr}");
    (e, base, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_opened_through_one_instance_reaches_the_live_stream_of_the_other_within_2_s() {
    central::server::install_crypto_provider();
    let (cluster, url) = common::pg::PgCluster::with_central();
    let (a, base_a, server_a) = instance(&url).await;
    let (b, base_b, server_b) = instance(&url).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");

    // Staff log in at B (the user and the session live in the database).
    a.central
        .add_user("ana", "correct horse", "analyst")
        .expect("user");
    let session = login(&http, &base_b, "ana", "correct horse").await;
    let mut stream = open_case_stream(&reqwest::Client::new(), &base_b, &session).await;

    // A seal exception arrives at A.
    let g = gate("P1-G1");
    let token = a.central.issue_agent_token(&g, "P1").expect("token");
    let txn = uuid::Uuid::now_v7();
    let entries = chain(&g, vec![fast_decision(&g), seal_exception(&g, txn)]);
    let sent = tokio::time::Instant::now();
    let r = http
        .post(format!("{base_a}/api/v1/agents/P1-G1/events"))
        .bearer_auth(&token)
        .json(&batch(&g, &entries))
        .send()
        .await
        .expect("ingest at A");
    assert_eq!(r.status(), 200);

    let seen =
        read_stream_until(&mut stream, &txn.to_string(), sent + Duration::from_secs(2)).await;
    assert!(seen.contains("event: case"), "{seen}");
    println!("case from A on B's stream after {:?}", sent.elapsed());
    let mut a_stream = a.central.subscribe_cases();

    // A registry change made through A wakes B's long-polling replicas.
    let mut registry_b = b.central.subscribe_registry();
    let before = *registry_b.borrow_and_update();
    a.central
        .import_records(vec![operator_record("EU-AEO:DE123456789012345")], "test")
        .expect("import at A");
    tokio::time::timeout(Duration::from_secs(2), registry_b.changed())
        .await
        .expect("B learns of A's registry change within 2 s")
        .expect("watch open");
    let after = *registry_b.borrow();
    assert!(
        after > before,
        "B's registry seq moved: {before} -> {after}"
    );
    assert_eq!(after, b.central.registry_seq().expect("seq"));

    // A staff action at B reaches A's live channel.
    let case_id = b
        .central
        .store()
        .cases(&central::model::CaseQuery::default())
        .expect("cases")
        .items
        .first()
        .expect("a case")
        .id;
    let mut b_local = b.central.subscribe_cases();
    let r = http
        .post(format!("{base_b}/api/v1/cases/{case_id}/acknowledge"))
        .bearer_auth(&session)
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("acknowledge at B");
    assert!(r.status().is_success(), "{}", r.status());
    let changed = tokio::time::timeout(Duration::from_secs(2), a_stream.recv())
        .await
        .expect("A hears of B's staff action within 2 s")
        .expect("channel open");
    assert_eq!(changed.id, case_id);
    assert_eq!(changed.state, central::model::CaseState::Acknowledged);
    // B published its own change once; its own notice does not come back as a second.
    let own = b_local.recv().await.expect("B's own publication");
    assert_eq!(own.id, case_id);
    assert!(
        tokio::time::timeout(Duration::from_secs(1), b_local.recv())
            .await
            .is_err(),
        "B's own notice was echoed back to its live channel"
    );

    drop(stream);
    server_a.abort();
    server_b.abort();
    drop((a, b));
    drop(cluster);
}
