//! Central's dashboard in a real browser: central runs in-process on 127.0.0.1 (plain
//! HTTP on loopback), two gates report a realistic day of traffic through the real ingest
//! API (hash-chained journal entries, agent tokens), and headless Chromium, driven by
//! `tests/browser/central.mjs` (playwright-core), logs in, watches a seal exception
//! arrive live, works the case, changes the registry as admin, and checks the gate
//! health grid, the charts and the programme figures. Screenshots go to
//! `target/screens/`; with `AEOGATE_UPDATE_SCREENS=1` also to `docs/screens/`.
//!
//! Needs node, `npm ci --prefix tests/browser` and Debian's chromium (`scripts/test`
//! installs them); the test fails naming whichever is missing.

#[path = "common/browser.rs"]
mod browser;
#[path = "common/page.rs"]
mod page;

use std::path::PathBuf;
use std::time::Duration;

use central::{Central, Config};
use jiff::{SignedDuration, Timestamp};
use protocol::container::ContainerNumber;
use protocol::operator::OperatorId;
use protocol::schema::{
    AeoStatus, Authorisation, CloseReason, ClosedLane, Consignment, Decision, DeclaredContainer,
    DeviceHealth, ESealState, EventBody, GENESIS_HASH, GateId, GateTransaction, Heartbeat,
    IngestBatch, JournalEntry, LaneDecision, LaneId, Party, PartyRole, PartyView, Read, ReadSource,
    ReadValue, Reason, ReasonCode, RegistryRecord, ReplicaFreshness, SCHEMA_VERSION,
};
use protocol::seal::{ESealId, SealNumber};
use uuid::Uuid;

const ANALYST: (&str, &str) = ("ana.lima", "analyst-pass-2025");
const ADMIN: (&str, &str) = ("rui.admin", "admin-pass-2025");
const PORT: &str = "PORT1";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The party directory of the day: id, name, status in the registry (None = not in it).
const OPERATORS: &[(&str, &str, Option<AeoStatus>)] = &[
    (
        "EU-AEO:ESB12345678",
        "Transportes Marítimos del Sur SL",
        ACTIVE,
    ),
    ("EU-AEO:PT509876543", "Logística Atlântica Lda", ACTIVE),
    ("EU-AEO:DE123456789012345", "Hafen Import GmbH", ACTIVE),
    ("EU-AEO:NL812345678", "Rotterdam Forwarding BV", ACTIVE),
    ("US-CTPAT:GCC20190042", "Gulf Coast Carriers Inc", ACTIVE),
    ("EU-AEO:FR998877665", "Transports Bréhat SARL", SUSPENDED),
    ("EU-AEO:ESA87654321", "Comercial Rivera SA", None),
];
/// Registry statuses of [`OPERATORS`] entries.
const ACTIVE: Option<AeoStatus> = Some(AeoStatus::Active);
const SUSPENDED: Option<AeoStatus> = Some(AeoStatus::Suspended);

fn op(i: usize) -> OperatorId {
    OperatorId::parse(OPERATORS[i].0).expect("operator id")
}

fn record(i: usize, status: AeoStatus) -> RegistryRecord {
    let t: Timestamp = "2024-06-01T00:00:00Z".parse().expect("time");
    RegistryRecord {
        v: SCHEMA_VERSION,
        operator: op(i),
        name: OPERATORS[i].1.into(),
        authorisations: vec![if i == 4 {
            Authorisation::Security
        } else {
            Authorisation::Aeof
        }],
        status,
        status_since: t,
        valid_from: t,
        valid_to: None,
        roles: vec![PartyRole::Importer, PartyRole::Carrier],
        contact_point: None,
        linked_ids: vec![],
        source: "national AEO database export".into(),
        as_of: t,
    }
}

fn party_view(i: usize, role: PartyRole) -> PartyView {
    PartyView {
        role,
        operator: Some(op(i)),
        name: OPERATORS[i].1.into(),
        status: OPERATORS[i].2,
        security: OPERATORS[i].2 == Some(AeoStatus::Active),
        mra: (i == 4).then(|| "US-CTPAT→EU-AEO".to_owned()),
        contact_point: None,
    }
}

/// A gate's journal, chained as the agent chains it.
struct Journal {
    gate: GateId,
    seq: u64,
    prev: String,
}

impl Journal {
    fn new(gate: &str) -> Self {
        Journal {
            gate: GateId::parse(gate).expect("gate"),
            seq: 0,
            prev: GENESIS_HASH.to_owned(),
        }
    }

    fn push(&mut self, at: Timestamp, body: EventBody) -> JournalEntry {
        self.seq += 1;
        let e = JournalEntry::new_chained(
            self.gate.clone(),
            self.seq,
            Uuid::now_v7(),
            at,
            self.prev.clone(),
            body,
        )
        .expect("chained entry");
        self.prev = e.hash.clone();
        e
    }
}

fn container(k: u32) -> ContainerNumber {
    let owners = ["MSC", "MAE", "CMA", "HLX", "ONE"];
    ContainerNumber::from_parts(owners[(k % 5) as usize], 'U', 300_000 + k * 37).expect("container")
}

fn seal(k: u32) -> SealNumber {
    SealNumber::parse(&format!("EU{:07}", 4_100_000 + k)).expect("seal")
}

/// The generator's read, with an antenna and signal strength for a tag and confidence 94
/// for OCR.
fn read(source: ReadSource, device: &str, value: ReadValue, raw: String, at: Timestamp) -> Read {
    Read {
        antenna: (source == ReadSource::Rfid).then_some(1),
        rssi: (source == ReadSource::Rfid).then_some(-58),
        confidence: (source == ReadSource::Ocr).then_some(94),
        ..aeogate::bench::data::read(source, device, raw, value, at)
    }
}

/// What happened to one truck: its outcome and reasons, and whether the seal read differs.
fn scenario(k: u32) -> (LaneDecision, Vec<Reason>, Vec<(usize, PartyRole)>, bool) {
    let aeo = [(0, PartyRole::Importer), (3, PartyRole::Carrier)];
    let aeo2 = [(2, PartyRole::Importer), (1, PartyRole::Carrier)];
    let mra = [(2, PartyRole::Importer), (4, PartyRole::Carrier)];
    match k % 20 {
        0 => (
            LaneDecision::Inspect,
            vec![Reason::new(ReasonCode::RandomSelection)],
            aeo.to_vec(),
            false,
        ),
        1..=3 => (
            LaneDecision::Standard,
            vec![Reason::new(ReasonCode::PartyUnknown).with("operator", OPERATORS[6].0)],
            vec![(6, PartyRole::Importer), (3, PartyRole::Carrier)],
            false,
        ),
        4 | 5 => (
            LaneDecision::Standard,
            vec![Reason::new(ReasonCode::PartySuspended).with("operator", OPERATORS[5].0)],
            vec![(5, PartyRole::Importer), (1, PartyRole::Carrier)],
            false,
        ),
        6 if k % 40 == 6 => (
            LaneDecision::Inspect,
            vec![Reason::new(ReasonCode::RiskHold)],
            vec![(6, PartyRole::Importer)],
            false,
        ),
        7 if k % 60 == 7 => (
            LaneDecision::Inspect,
            vec![Reason::new(ReasonCode::SealMismatch)],
            aeo2.to_vec(),
            true,
        ),
        8 | 9 => (
            LaneDecision::Fast,
            vec![
                Reason::new(ReasonCode::MraRecognised),
                Reason::new(ReasonCode::AllChecksPassed),
            ],
            mra.to_vec(),
            false,
        ),
        10..=14 => (
            LaneDecision::Fast,
            vec![Reason::new(ReasonCode::AllChecksPassed)],
            aeo2.to_vec(),
            false,
        ),
        _ => (
            LaneDecision::Fast,
            vec![Reason::new(ReasonCode::AllChecksPassed)],
            aeo.to_vec(),
            false,
        ),
    }
}

/// A truck's outcome chosen by the test: decision, reasons, parties (operator index, role),
/// and whether the seal read differs from the declaration.
type Forced = (LaneDecision, Vec<Reason>, Vec<(usize, PartyRole)>, bool);

/// One truck: the gate transaction and its decision, and the consignment declared for it.
fn truck(
    j: &mut Journal,
    k: u32,
    lane: &str,
    closed: Timestamp,
    forced: Option<Forced>,
) -> (Vec<JournalEntry>, Consignment) {
    let (decision, mut reasons, parties, mismatch) = forced.unwrap_or_else(|| scenario(k));
    let aeo = parties
        .iter()
        .all(|(i, _)| OPERATORS[*i].2 == Some(AeoStatus::Active));
    let secs = if aeo {
        70 + i64::from(k % 50)
    } else {
        240 + i64::from(k % 7) * 60
    };
    let secs = if decision == LaneDecision::Inspect {
        secs + 1500
    } else {
        secs
    };
    let opened = closed
        .checked_sub(SignedDuration::from_secs(secs))
        .expect("time");
    let c = container(k);
    let declared = seal(k);
    let read_seal = if mismatch {
        seal(k + 90_000)
    } else {
        declared.clone()
    };
    if mismatch {
        reasons = vec![
            Reason::new(ReasonCode::SealMismatch)
                .with("container", c)
                .with("declared", &declared)
                .with("read", &read_seal),
        ];
    }
    let eseal = ESealId::parse(&format!("0042-{:08X}", 0x1E240 + k)).expect("e-seal");
    let lane_id = LaneId::parse(lane).expect("lane");
    let at = opened
        .checked_add(SignedDuration::from_secs(12))
        .expect("time");
    let txn = GateTransaction {
        v: SCHEMA_VERSION,
        id: Uuid::now_v7(),
        gate: j.gate.clone(),
        lane: lane_id.clone(),
        opened_at: opened,
        closed_at: closed,
        close_reason: CloseReason::Departure,
        reads: vec![
            read(
                ReadSource::Rfid,
                &format!("{lane}-uhf"),
                ReadValue::Container { number: c },
                format!("urn:epc:id:giai:0614141.{c}"),
                at,
            ),
            read(
                ReadSource::Ocr,
                &format!("{lane}-ocr"),
                ReadValue::Container { number: c },
                c.to_string(),
                at,
            ),
            read(
                ReadSource::Ocr,
                &format!("{lane}-ocr"),
                ReadValue::Seal { number: read_seal },
                format!("EU {}", 4_100_000 + if mismatch { k + 90_000 } else { k }),
                at,
            ),
            read(
                ReadSource::ESealReader,
                &format!("{lane}-eseal"),
                ReadValue::ESeal {
                    id: eseal,
                    state: ESealState::Sealed,
                    battery_pct: Some(87),
                },
                format!("0042{:08X}", 0x1E240 + k),
                at,
            ),
            read(
                ReadSource::Ocr,
                &format!("{lane}-ocr"),
                ReadValue::Plate {
                    text: format!("{:04} KLM", 1000 + k),
                },
                format!("{:04}KLM", 1000 + k),
                at,
            ),
        ],
    };
    let cons = Consignment {
        v: SCHEMA_VERSION,
        id: format!("MRN25ES{:011}", 4_000_000 + k),
        containers: vec![DeclaredContainer {
            number: c,
            seals: vec![declared],
            eseals: vec![eseal],
        }],
        parties: parties
            .iter()
            .map(|(i, role)| Party {
                role: *role,
                operator: Some(op(*i)),
                name: OPERATORS[*i].1.into(),
            })
            .collect(),
        holds: vec![],
        ports: vec![PORT.into()],
        as_of: opened,
    };
    let route = match decision {
        LaneDecision::Fast => "Lane 1 priority exit",
        LaneDecision::Standard => "Document check, booth 2",
        LaneDecision::Inspect => "Inspection bay 3",
    };
    let d = Decision {
        v: SCHEMA_VERSION,
        transaction_id: txn.id,
        gate: j.gate.clone(),
        lane: lane_id,
        decision,
        route: route.into(),
        reasons,
        priority: decision == LaneDecision::Inspect && aeo,
        decided_at: closed,
        replica: ReplicaFreshness {
            sequence: 9,
            as_of: Some(opened),
            age_s: Some(42),
            stale: false,
        },
        consignments: vec![cons.id.clone()],
        parties: parties
            .iter()
            .map(|(i, role)| party_view(*i, *role))
            .collect(),
        policy: "default-2025 (sha256:5f1c…)".into(),
    };
    let e1 = j.push(closed, EventBody::Transaction { transaction: txn });
    let e2 = j.push(closed, EventBody::Decision { decision: d });
    (vec![e1, e2], cons)
}

fn batch(j: &Journal, entries: Vec<JournalEntry>) -> IngestBatch {
    IngestBatch {
        v: SCHEMA_VERSION,
        batch_id: Uuid::now_v7(),
        agent: j.gate.clone(),
        entries,
    }
}

async fn post_json(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: &impl serde::Serialize,
) -> reqwest::StatusCode {
    http.post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("post")
        .status()
}

fn heartbeat(gate: &str, backlog: u64, down: Option<&str>) -> Heartbeat {
    let now = Timestamp::now();
    let lane = LaneId::parse("L2").expect("lane");
    Heartbeat {
        v: SCHEMA_VERSION,
        agent: GateId::parse(gate).expect("gate"),
        at: now,
        devices: ["L1-uhf", "L1-ocr", "L2-uhf", "L2-ocr"]
            .iter()
            .map(|d| DeviceHealth {
                device: (*d).into(),
                lane: Some(lane.clone()),
                up: Some(*d) != down,
                detail: if Some(*d) == down {
                    "serial link silent for 94 s".into()
                } else {
                    "ok".into()
                },
                since: now,
            })
            .collect(),
        replica_seq: 9,
        replica_as_of: Some(
            now.checked_sub(SignedDuration::from_secs(40))
                .expect("time"),
        ),
        journal_head: 0,
        acked_seq: 0,
        backlog,
        oldest_unacked_at: (backlog > 0).then_some(now),
        version: "0.1.0".into(),
        // The degraded gate also has a lane closed by its supervisor.
        closed_lanes: down
            .map(|_| ClosedLane {
                lane: lane.clone(),
                reason: "loop repair".into(),
                since: now
                    .checked_sub(SignedDuration::from_mins(25))
                    .expect("time"),
            })
            .into_iter()
            .collect(),
        // The degraded gate's clock is 3.2 s ahead of central's (beyond its 2 s bound);
        // the other's is within a few milliseconds.
        clock: Some(protocol::schema::ClockReport {
            offset_ms: Some(if down.is_some() { 3_200 } else { 12 }),
            delay_ms: Some(4),
            trusted: down.is_none(),
            host_synced: Some(true),
            max_offset_ms: 2_000,
            measured_at: Some(now),
        }),
    }
}

fn login_cookie(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .expect("cookie pair")
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn central_dashboard_in_chromium() {
    central::server::install_crypto_provider();
    let chromium = browser::require_browser(&root());

    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("central.key");
    central::generate_signing_key(&key).expect("key");
    let mut cfg = Config::new(
        "127.0.0.1:0".parse().expect("addr"),
        dir.path().join("central.redb"),
        key,
    );
    cfg.allow_plain_http_on_loopback = true;
    cfg.argon2_m_cost_kib = 1024;
    cfg.argon2_t_cost = 1;
    cfg.stale_after = Duration::from_secs(60);
    let c = Central::open(&cfg).expect("open central");
    c.add_user(ANALYST.0, ANALYST.1, "analyst")
        .expect("analyst");
    c.add_user(ADMIN.0, ADMIN.1, "admin").expect("admin");
    c.add_user("bea.costa", "analyst-pass-2026", "analyst")
        .expect("second analyst");
    let records: Vec<RegistryRecord> = (0..OPERATORS.len())
        .filter_map(|i| OPERATORS[i].2.map(|s| record(i, s)))
        .collect();
    c.import_records(records, "import").expect("registry");
    c.set_status(
        &op(5),
        AeoStatus::Suspended,
        "Annual audit: security plan not updated",
        "rui.admin",
    )
    .expect("status");

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(central::serve_with_listener(
        c.clone(),
        listener,
        cfg.clone(),
        stop.clone(),
    ));
    let base = format!("http://{addr}");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");

    // A realistic day: two gates, two lanes each, a truck every few minutes for 10 hours.
    let g1 = c
        .issue_agent_token(&GateId::parse("PORT1-G1").expect("gate"), PORT)
        .expect("token");
    let g2 = c
        .issue_agent_token(&GateId::parse("PORT1-G2").expect("gate"), PORT)
        .expect("token");
    let g3 = c
        .issue_agent_token(&GateId::parse("PORT1-G3").expect("gate"), PORT)
        .expect("token");
    let now = Timestamp::now();
    let mut j1 = Journal::new("PORT1-G1");
    let mut j2 = Journal::new("PORT1-G2");
    let mut j3 = Journal::new("PORT1-G3");
    let mut consignments = Vec::new();
    for (j, token, trucks, offset) in [
        (&mut j1, &g1, 170u32, 0u32),
        (&mut j2, &g2, 130, 1000),
        (&mut j3, &g3, 12, 2000),
    ] {
        let mut entries = Vec::new();
        for n in 0..trucks {
            let ago = 10 * 3600 * i64::from(trucks - n) / i64::from(trucks) + 90;
            let closed = now
                .checked_sub(SignedDuration::from_secs(ago))
                .expect("time");
            let lane = if n % 3 == 0 { "L2" } else { "L1" };
            // Mid-day, PORT1-G1's configuration is reloaded live with a new policy.
            if offset == 0 && n == trucks / 2 {
                entries.push(j.push(
                    closed,
                    EventBody::ConfigApplied {
                        old_policy: "default-2025#5f1c0a2e".into(),
                        new_policy: "port1-2026#9c0d1e2f".into(),
                        changes: vec![
                            "policy default-2025#5f1c0a2e → port1-2026#9c0d1e2f".into(),
                            "lane L2 changed: routes".into(),
                        ],
                    },
                ));
            }
            let (e, k) = truck(j, offset + n, lane, closed, None);
            entries.extend(e);
            consignments.push(k);
        }
        for chunk in entries.chunks(500) {
            let url = format!("{base}/api/v1/agents/{}/events", j.gate);
            assert_eq!(
                post_json(&http, &url, token, &batch(j, chunk.to_vec())).await,
                reqwest::StatusCode::OK
            );
        }
    }
    // The live case: an AEO truck whose seal read differs from the declaration.
    let closed = Timestamp::now();
    let live_k = 777;
    let (live_entries, live_cons) = truck(
        &mut j1,
        live_k,
        "L1",
        closed,
        Some((
            LaneDecision::Inspect,
            vec![],
            vec![(0, PartyRole::Importer), (3, PartyRole::Carrier)],
            true,
        )),
    );
    consignments.push(live_cons);
    c.import_consignments(consignments, "advance-cargo")
        .expect("consignments");
    let beat = async |gate: &str, token: &str, backlog, down| {
        let uri = format!("{base}/api/v1/agents/{gate}/heartbeat");
        post_json(&http, &uri, token, &heartbeat(gate, backlog, down)).await
    };
    assert_eq!(
        beat("PORT1-G1", &g1, 0, None).await,
        reqwest::StatusCode::NO_CONTENT
    );
    assert_eq!(
        beat("PORT1-G2", &g2, 14, Some("L2-ocr")).await,
        reqwest::StatusCode::NO_CONTENT
    );
    // PORT1-G3 reported traffic but no heartbeat: stale.
    // PORT1-G4 reported in, then its box was decommissioned: every token revoked.
    let g4_gate = GateId::parse("PORT1-G4").expect("gate");
    let g4 = c.issue_agent_token(&g4_gate, PORT).expect("token");
    assert_eq!(
        beat("PORT1-G4", &g4, 0, None).await,
        reqwest::StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.revoke_agent(&g4_gate, None, ADMIN.0).expect("revoke"),
        1,
        "the gate's one token revoked"
    );
    assert_eq!(
        beat("PORT1-G4", &g4, 0, None).await,
        reqwest::StatusCode::FORBIDDEN,
        "a revoked token is refused at once"
    );

    // Forged cross-site requests are refused even with a valid session and token.
    let r = http
        .post(format!("{base}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("user={}&password={}", ANALYST.0, ANALYST.1))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), reqwest::StatusCode::SEE_OTHER);
    let set = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("cookie")
        .to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = login_cookie(&set);
    let page = http
        .get(format!("{base}/cases"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("cases");
    assert_eq!(page.status(), reqwest::StatusCode::OK);
    let html = page.text().await.expect("html");
    let csrf = page::csrf_meta(&html);
    // `POST /lang` with the session's cookie, one more header if given, and `body`.
    let post_lang = async |header: Option<(&str, &str)>, body: String| {
        let mut req = http.post(format!("{base}/lang")).header("cookie", &cookie);
        if let Some((name, value)) = header {
            req = req.header(name, value);
        }
        let req = req.header("content-type", "application/x-www-form-urlencoded");
        req.body(body).send().await.expect("post /lang").status()
    };
    for (name, value) in [
        ("sec-fetch-site", "cross-site"),
        ("origin", "http://evil.example"),
    ] {
        let status = post_lang(Some((name, value)), format!("csrf={csrf}&lang=es")).await;
        assert_eq!(status, reqwest::StatusCode::FORBIDDEN, "{name}: {value}");
    }
    assert_eq!(
        post_lang(None, "lang=es".into()).await,
        reqwest::StatusCode::FORBIDDEN,
        "a same-site post without the token"
    );
    let unauth = http
        .get(format!("{base}/gates"))
        .send()
        .await
        .expect("gates");
    assert_eq!(
        unauth.status(),
        reqwest::StatusCode::SEE_OTHER,
        "no session: to the login page"
    );

    // The browser part.
    let screens = browser::screens_dir(&root());
    let live_batch = dir.path().join("live-batch.json");
    std::fs::write(
        &live_batch,
        serde_json::to_vec(&batch(&j1, live_entries)).expect("json"),
    )
    .expect("write batch");
    // Both scripts sign in as the analyst and the admin; each adds its own settings.
    let run = async |script: &str, extra: Vec<(&'static str, std::ffi::OsString)>| {
        let mut env = vec![
            ("BASE_URL", base.clone().into()),
            ("CHROMIUM", chromium.clone().into()),
            ("ANALYST_USER", ANALYST.0.into()),
            ("ANALYST_PASS", ANALYST.1.into()),
            ("ADMIN_USER", ADMIN.0.into()),
            ("ADMIN_PASS", ADMIN.1.into()),
        ];
        env.extend(extra);
        browser::run_node(&root(), script, env, Duration::from_secs(600)).await
    };
    run(
        "central.mjs",
        vec![
            ("AGENT_TOKEN", g1.clone().into()),
            ("LIVE_BATCH", live_batch.into()),
            ("SUSPEND_OPERATOR", OPERATORS[1].0.into()),
            ("SCREENS", screens.clone().into()),
        ],
    )
    .await;
    // Accessibility: axe-core over every screen and state, in every UI language.
    run(
        "a11y-central.mjs",
        vec![("OPERATOR", OPERATORS[1].0.into())],
    )
    .await;

    // What the browser did is in the store, attributed.
    let audit = c.store().audit_log(0, 1000).expect("audit");
    assert!(
        audit.iter().any(|a| a.actor == ADMIN.0
            && (a.detail.contains("SUSPENDED") || a.action.contains("registry"))),
        "admin's change audited: {audit:?}"
    );
    let rec = c.store().operator(&op(1)).expect("read").expect("operator");
    assert_eq!(rec.status, AeoStatus::Suspended);
    let bea = c.user("bea.costa").expect("read").expect("user");
    assert!(
        bea.disabled,
        "the admin disabled bea.costa on the Users page"
    );

    browser::update_docs(&root(), &screens, "central-");
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
}
