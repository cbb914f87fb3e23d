//! TLS to PostgreSQL (`[store] ca_cert`): a cluster of the test's own (common/pg.rs) with
//! a certificate from a test CA; central's store connects over TLS trusting only that CA.

mod common;

use central::store::{AuditNote, PgStore, Store};

/// A CA (PEM) and a server certificate and key for 127.0.0.1 signed by it.
fn pki() -> (String, String, String) {
    let ca = common::pki::ca("test CA");
    let (cert, key) = common::pki::leaf(&ca, &["127.0.0.1"], false);
    (ca.pem, cert, key)
}

/// Connections to database `db` that use TLS, seen from a plain session.
fn tls_sessions(url: &str, db: &str) -> i64 {
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut c = postgres::Client::connect(url, postgres::NoTls).expect("plain session");
            c.query_one(
                "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                  WHERE s.ssl AND a.datname = $1",
                &[&db],
            )
            .expect("pg_stat_ssl")
            .get(0)
        })
        .join()
        .expect("thread")
    })
}

#[test]
fn the_store_connects_over_tls_trusting_only_the_configured_ca() {
    let (ca, cert, key) = pki();
    let (other_ca, _, _) = pki();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("db-ca.pem");
    let other_file = dir.path().join("other-ca.pem");
    std::fs::write(&ca_file, ca).expect("ca file");
    std::fs::write(&other_file, other_ca).expect("other ca file");
    let mut cluster = common::pg::PgCluster::start();
    let url = cluster.create_database("central");
    cluster.enable_tls(&cert, &key);
    assert_eq!(tls_sessions(&url, "central"), 0);

    let store = PgStore::open_with(&format!("{url}?sslmode=require"), Some(&ca_file))
        .expect("open over TLS");
    store
        .audit(AuditNote::new(
            "test",
            "over tls",
            "",
            common::ts("2026-03-01T10:00:00Z"),
        ))
        .expect("write over TLS");
    assert_eq!(store.audit_log(0, 10).expect("read").len(), 1);
    assert!(
        tls_sessions(&url, "central") >= 1,
        "the pool's sessions use TLS"
    );
    drop(store);

    // A server certificate from another CA is refused.
    let e = PgStore::open_with(&format!("{url}?sslmode=require"), Some(&other_file))
        .expect_err("untrusted server certificate");
    assert!(e.to_string().contains("PostgreSQL"), "{e}");
    // sslmode=require without a CA to trust is refused when the store opens.
    let e = PgStore::open(&format!("{url}?sslmode=require")).expect_err("no CA");
    assert!(e.to_string().contains("ca_cert"), "{e}");
    // A missing CA file is named.
    let e = PgStore::open_with(&url, Some(&dir.path().join("missing.pem"))).expect_err("no file");
    assert!(e.to_string().contains("missing.pem"), "{e}");
    // Without a CA the store connects plainly, as before.
    let plain = PgStore::open(&url).expect("plain");
    plain.ready().expect("ready");
    drop(plain);
}
