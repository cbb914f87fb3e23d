//! A known gate day for the export tests, ingested through the real ingest path (agent
//! token, `POST /api/v1/agents/{gate}/events`, redb file in a tempdir).
//!
//! Gate `P1-G1` on 2026-03-04 (UTC):
//! - `fast`: FAST, container CSQU3054383, an SGTIN tag and a raw tag, seal and e-seal read;
//! - `standard`: STANDARD (lane L2), a route with a comma and quotes;
//! - `mismatch`: INSPECT with SEAL_MISMATCH (declared ABC1234567, read XYZ9999999);
//! - `intact`: INSPECT with ESEAL_OPENED, then an officer's SEAL_INTACT result;
//! - `hold`: INSPECT with RISK_HOLD only;
//! - `bobtail`: STANDARD with no container and no tag (nothing for EPCIS to identify).
//!
//! Outside the export: `other_gate` (FAST at gate P1-G2, same day) and `next_day` (FAST at
//! P1-G1 on 2026-03-05).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use central::store::Stamp;
use central::{Central, Config};
use jiff::Timestamp;
use protocol::container::ContainerNumber;
use protocol::operator::OperatorId;
use protocol::schema::{
    ActionKind, Change, CloseReason, Consignment, Decision, DeclaredContainer, ESealState,
    EventBody, GateId, GateTransaction, InspectionOutcome, JournalEntry, LaneDecision, LaneId,
    OfficerAction, PartyRole, PartyView, Read, ReadSource, ReadValue, Reason, ReasonCode,
    ReplicaFreshness, SCHEMA_VERSION,
};
use protocol::seal::{ESealId, SealNumber};
use tower::ServiceExt as _;
use uuid::Uuid;

use crate::common::{Env, batch, call, env_with, gate, staff, ts};

pub const FROM: &str = "2026-03-04T00:00:00Z";
pub const TO: &str = "2026-03-05T00:00:00Z";
pub const GATE: &str = "P1-G1";

/// The transactions of the day.
#[derive(Debug, Clone, Copy)]
pub struct Txns {
    pub fast: Uuid,
    pub standard: Uuid,
    pub mismatch: Uuid,
    pub intact: Uuid,
    pub hold: Uuid,
    pub bobtail: Uuid,
    pub other_gate: Uuid,
    pub next_day: Uuid,
    /// The officer action recording the intact seal.
    pub intact_action: Uuid,
}

pub struct GateDay {
    pub env: Env,
    pub staff: String,
    pub txns: Txns,
}

impl GateDay {
    /// The day's export `path` (`events.csv`, `epcis`) through the API, as the staff user.
    pub async fn export(&self, path: &str) -> Raw {
        get(&self.env.central, &day_uri(path), Some(&self.staff)).await
    }

    /// [`GateDay::export`], asserting a 200 answer of `content_type`.
    pub async fn export_ok(&self, path: &str, content_type: &str) -> Raw {
        let a = self.export(path).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        assert_eq!(a.content_type(), content_type);
        a
    }
}

pub fn container(owner: &str, serial: u32) -> ContainerNumber {
    ContainerNumber::from_parts(owner, 'U', serial).expect("container")
}

pub fn lane(s: &str) -> LaneId {
    LaneId::parse(s).expect("lane")
}

fn read(source: ReadSource, value: ReadValue, at: Timestamp) -> Read {
    Read {
        source,
        device: "dev1".into(),
        raw: "raw".into(),
        value,
        first_at: at,
        last_at: at,
        count: 1,
        antenna: None,
        rssi: None,
        confidence: None,
        entered_by: None,
    }
}

fn container_read(c: ContainerNumber, at: Timestamp) -> Read {
    read(ReadSource::Ocr, ReadValue::Container { number: c }, at)
}

fn seal_read(s: &str, at: Timestamp) -> Read {
    read(
        ReadSource::Ocr,
        ReadValue::Seal {
            number: SealNumber::parse(s).expect("seal"),
        },
        at,
    )
}

fn eseal_read(id: &str, state: ESealState, at: Timestamp) -> Read {
    read(
        ReadSource::ESealReader,
        ReadValue::ESeal {
            id: ESealId::parse(id).expect("eseal id"),
            state,
            battery_pct: Some(80),
        },
        at,
    )
}

fn tag_read(uri: &str, at: Timestamp) -> Read {
    read(
        ReadSource::Rfid,
        ReadValue::Tag {
            uri: uri.into(),
            scheme: "sgtin-96".into(),
        },
        at,
    )
}

/// One truck: its transaction (opened at `opened`, closed 15 s later) and its decision
/// 5 s after closing.
struct Truck {
    id: Uuid,
    gate: GateId,
    lane: LaneId,
    opened: Timestamp,
    reads: Vec<Read>,
    decision: LaneDecision,
    reasons: Vec<Reason>,
    route: String,
    consignments: Vec<String>,
}

impl Truck {
    fn new(gate_: &str, lane_: &str, opened: &str, decision: LaneDecision) -> Self {
        Self {
            id: Uuid::now_v7(),
            gate: gate(gate_),
            lane: lane(lane_),
            opened: ts(opened),
            reads: Vec::new(),
            decision,
            reasons: Vec::new(),
            route: "Lane 1 priority".into(),
            consignments: Vec::new(),
        }
    }

    fn closed(&self) -> Timestamp {
        self.opened + jiff::SignedDuration::from_secs(15)
    }

    fn decided(&self) -> Timestamp {
        self.opened + jiff::SignedDuration::from_secs(20)
    }

    fn bodies(&self) -> Vec<(Timestamp, EventBody)> {
        let t = GateTransaction {
            v: SCHEMA_VERSION,
            id: self.id,
            gate: self.gate.clone(),
            lane: self.lane.clone(),
            opened_at: self.opened,
            closed_at: self.closed(),
            close_reason: CloseReason::Departure,
            reads: self.reads.clone(),
        };
        let d = Decision {
            v: SCHEMA_VERSION,
            transaction_id: self.id,
            gate: self.gate.clone(),
            lane: self.lane.clone(),
            decision: self.decision,
            route: self.route.clone(),
            reasons: self.reasons.clone(),
            priority: false,
            decided_at: self.decided(),
            replica: ReplicaFreshness {
                sequence: 7,
                as_of: Some(self.opened - jiff::SignedDuration::from_secs(120)),
                age_s: Some(120),
                stale: false,
            },
            consignments: self.consignments.clone(),
            parties: vec![],
            policy: "test".into(),
        };
        vec![
            (self.closed(), EventBody::Transaction { transaction: t }),
            (self.decided(), EventBody::Decision { decision: d }),
        ]
    }
}

fn consignment(id: &str, c: ContainerNumber, seals: &[&str], eseals: &[&str]) -> Change {
    Change::UpsertConsignment {
        consignment: Consignment {
            v: SCHEMA_VERSION,
            id: id.into(),
            containers: vec![DeclaredContainer {
                number: c,
                seals: seals
                    .iter()
                    .map(|s| SealNumber::parse(s).expect("seal"))
                    .collect(),
                eseals: eseals
                    .iter()
                    .map(|s| ESealId::parse(s).expect("eseal"))
                    .collect(),
            }],
            parties: vec![],
            holds: vec![],
            ports: vec!["P1".into()],
            as_of: ts("2026-03-03T12:00:00Z"),
        },
    }
}

async fn ingest(c: &Central, g: &GateId, entries: &[JournalEntry]) {
    let token = c.issue_agent_token(g, "P1").expect("agent token");
    let uri = format!("/api/v1/agents/{g}/events");
    let a = call(c, "POST", &uri, Some(&token), Some(&batch(g, entries))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert_eq!(
        a.json["acked_through"].as_u64(),
        Some(entries.len() as u64),
        "{}",
        a.json
    );
    assert_eq!(a.json["alerts"], serde_json::json!([]));
}

/// Builds and ingests the day; `tweak` adjusts central's configuration first. The
/// consignments go straight into the store (no signed import needed for an export test).
#[allow(clippy::disallowed_methods)]
pub async fn gate_day(tweak: impl FnOnce(&mut Config)) -> GateDay {
    let env = env_with(tweak);
    let c = &env.central;

    let csqu = ContainerNumber::parse("CSQU3054383").expect("container");
    let (msc, tgh, hlx, cma, oth) = (
        container("MSC", 123_456),
        container("TGH", 1),
        container("HLX", 2),
        container("CMA", 3),
        container("OOL", 4),
    );
    c.store()
        .append_changes(
            &[
                consignment("BL-1", csqu, &["CBP1234567"], &["0042-0001E240"]),
                consignment("BL-3", tgh, &["ABC1234567"], &[]),
            ],
            Stamp::new("test", ts("2026-03-03T12:00:00Z")),
        )
        .expect("registry");

    let mut fast = Truck::new(GATE, "L1", "2026-03-04T08:00:00Z", LaneDecision::Fast);
    let at = fast.opened;
    fast.reads = vec![
        container_read(csqu, at),
        tag_read("urn:epc:id:sgtin:0614141.812345.6789", at),
        tag_read("urn:epc:raw:96.x3074257BF7194E4000001A85", at),
        seal_read("CBP1234567", at),
        eseal_read("0042-0001E240", ESealState::Sealed, at),
    ];
    fast.reasons = vec![Reason::new(ReasonCode::AllChecksPassed)];
    fast.consignments = vec!["BL-1".into()];

    let mut standard = Truck::new(GATE, "L2", "2026-03-04T08:30:00Z", LaneDecision::Standard);
    standard.reads = vec![container_read(msc, standard.opened)];
    // Two parties share PARTY_UNKNOWN: the exports give the code once, both parties in it.
    let unknown = |role: PartyRole, id: Option<&str>, name: &str| PartyView {
        role,
        operator: id.map(|i| OperatorId::parse(i).expect("operator id")),
        name: name.into(),
        status: None,
        security: false,
        mra: None,
        contact_point: None,
    };
    standard.reasons = vec![
        Reason::new(ReasonCode::PartyUnknown)
            .with("role", "IMPORTER")
            .with_party(unknown(
                PartyRole::Importer,
                Some("EU-AEO:FR12345678901"),
                "Importer SA",
            )),
        Reason::new(ReasonCode::PartyNoSecurity),
        Reason::new(ReasonCode::PartyUnknown)
            .with("role", "CARRIER")
            .with_party(unknown(PartyRole::Carrier, None, "Carrier Ltd")),
    ];
    standard.route = "Lane 2, \"standard\" queue".into();

    let mut mismatch = Truck::new(GATE, "L1", "2026-03-04T09:00:00Z", LaneDecision::Inspect);
    mismatch.reads = vec![
        container_read(tgh, mismatch.opened),
        seal_read("XYZ9999999", mismatch.opened),
    ];
    mismatch.reasons = vec![
        Reason::new(ReasonCode::SealMismatch)
            .with("container", tgh)
            .with("declared", "ABC1234567")
            .with("read", "XYZ9999999"),
    ];
    mismatch.route = "Inspection bay".into();
    mismatch.consignments = vec!["BL-3".into()];

    let mut intact = Truck::new(GATE, "L1", "2026-03-04T10:00:00Z", LaneDecision::Inspect);
    intact.reads = vec![
        container_read(hlx, intact.opened),
        eseal_read("0042-0001E241", ESealState::Opened, intact.opened),
    ];
    intact.reasons = vec![
        Reason::new(ReasonCode::ESealOpened)
            .with("container", hlx)
            .with("eseal", "0042-0001E241"),
    ];
    intact.route = "Inspection bay".into();

    let mut hold = Truck::new(GATE, "L2", "2026-03-04T11:00:00Z", LaneDecision::Inspect);
    hold.reads = vec![container_read(cma, hold.opened)];
    hold.reasons = vec![Reason::new(ReasonCode::RiskHold).with("consignment", "BL-9")];
    hold.route = "=Inspection bay".into();

    let mut bobtail = Truck::new(GATE, "L2", "2026-03-04T12:00:00Z", LaneDecision::Standard);
    bobtail.reasons = vec![Reason::new(ReasonCode::ContainerUnread)];

    let mut next_day = Truck::new(GATE, "L1", "2026-03-05T08:00:00Z", LaneDecision::Fast);
    next_day.reads = vec![container_read(oth, next_day.opened)];
    next_day.reasons = vec![Reason::new(ReasonCode::AllChecksPassed)];

    let intact_action = OfficerAction {
        v: SCHEMA_VERSION,
        id: Uuid::now_v7(),
        transaction_id: Some(intact.id),
        gate: gate(GATE),
        lane: lane("L1"),
        officer: "officer-7".into(),
        role: "officer".into(),
        at: ts("2026-03-04T10:10:00Z"),
        kind: ActionKind::InspectionResult {
            result: InspectionOutcome::SealIntact,
            note: "seal checked by hand".into(),
        },
    };

    // Journaled in the order the gate made them (central flags an agent time that runs
    // back, TIME_BACKWARDS): the inspection result of 10:10 before the 11:00 truck.
    let mut bodies = Vec::new();
    for t in [&fast, &standard, &mismatch, &intact] {
        bodies.extend(t.bodies());
    }
    bodies.push((
        intact_action.at,
        EventBody::OfficerAction {
            action: intact_action.clone(),
        },
    ));
    for t in [&hold, &bobtail, &next_day] {
        bodies.extend(t.bodies());
    }
    ingest(
        c,
        &gate(GATE),
        &crate::common::chain_at(&gate(GATE), bodies),
    )
    .await;

    let mut other = Truck::new("P1-G2", "L1", "2026-03-04T08:05:00Z", LaneDecision::Fast);
    other.reads = vec![container_read(oth, other.opened)];
    other.reasons = vec![Reason::new(ReasonCode::AllChecksPassed)];
    ingest(
        c,
        &gate("P1-G2"),
        &crate::common::chain_at(&gate("P1-G2"), other.bodies()),
    )
    .await;

    let staff = staff(c).await;
    let txns = Txns {
        fast: fast.id,
        standard: standard.id,
        mismatch: mismatch.id,
        intact: intact.id,
        hold: hold.id,
        bobtail: bobtail.id,
        other_gate: other.id,
        next_day: next_day.id,
        intact_action: intact_action.id,
    };
    GateDay { env, staff, txns }
}

/// A raw answer: status, headers, body bytes.
pub struct Raw {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Raw {
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// `GET uri` through the router, keeping headers and bytes.
pub async fn get(c: &Central, uri: &str, token: Option<&str>) -> Raw {
    let mut req = Request::builder().method("GET").uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = tokio::time::timeout(
        Duration::from_secs(30),
        central::app(c.clone()).oneshot(req.body(Body::empty()).expect("request")),
    )
    .await
    .expect("answer in time")
    .expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), 64 << 20)
        .await
        .expect("body")
        .to_vec();
    Raw {
        status,
        headers,
        body,
    }
}

/// The export URI for the day at gate P1-G1.
pub fn day_uri(path: &str) -> String {
    format!("/api/v1/export/{path}?gate={GATE}&from={FROM}&to={TO}")
}

/// EPCIS events of a document grouped by `aeogate:transactionID`, each as
/// `(bizStep, disposition)` in document order.
pub fn steps_by_txn(doc: &serde_json::Value) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for e in doc["epcisBody"]["eventList"].as_array().expect("eventList") {
        let txn = e["aeogate:transactionID"].as_str().expect("transactionID");
        out.entry(txn.to_owned()).or_default().push((
            e["bizStep"].as_str().unwrap_or("").to_owned(),
            e["disposition"].as_str().unwrap_or("").to_owned(),
        ));
    }
    out
}

pub fn urn(id: Uuid) -> String {
    format!("urn:uuid:{id}")
}
