//! The GS1 EPCIS 2.0 JSON-LD document (mapping in the module documentation of
//! [`crate::export`]).

use std::fmt;

use jiff::Timestamp;
use protocol::schema::{ActionKind, InspectionOutcome, LaneDecision, ReasonCode};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::collect::{GateEvent, eseal_state_str, reason_lines};
use super::csv_table::outcome_code;
use super::locations::ExportConfig;
use super::{EPCIS_CONTEXT, EXTENSION_NS, EXTENSION_PREFIX};

/// The kind of an exported event; part of its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Arriving,
    Departing,
    Inspecting,
    Holding,
    /// An officer's inspection result, by action id.
    InspectionResult(Uuid),
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Arriving => f.write_str("arriving"),
            Self::Departing => f.write_str("departing"),
            Self::Inspecting => f.write_str("inspecting"),
            Self::Holding => f.write_str("holding"),
            Self::InspectionResult(id) => write!(f, "inspection-result/{id}"),
        }
    }
}

/// The event id of one exported event: `urn:uuid:` of a version 8 UUID whose bits are the
/// first 128 of SHA-256(`aeogate-epcis-event:<transaction id>/<kind>`) (RFC 9562 §5.8 and
/// Appendix B.2). Deterministic, so a re-export names the same event the same way.
#[must_use]
pub fn event_id(transaction: Uuid, kind: &EventKind) -> String {
    let digest = Sha256::digest(format!("aeogate-epcis-event:{transaction}/{kind}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    let id = uuid::Builder::from_custom_bytes(bytes).into_uuid();
    format!("urn:uuid:{id}")
}

/// `eventTime` form: RFC 3339 UTC with milliseconds, as the EPCIS examples write it.
fn epcis_time(t: Timestamp) -> String {
    format!("{t:.3}")
}

fn ext(key: &str) -> String {
    format!("{EXTENSION_PREFIX}:{key}")
}

/// The fields every event of a transaction shares.
fn base_event(
    e: &GateEvent,
    cfg: &ExportConfig,
    kind: &EventKind,
    at: Timestamp,
    biz_step: &str,
    disposition: Option<&str>,
) -> Map<String, Value> {
    let d = &e.decision;
    let mut m = Map::new();
    m.insert("type".into(), json!("ObjectEvent"));
    m.insert("eventTime".into(), json!(epcis_time(at)));
    m.insert(
        "eventTimeZoneOffset".into(),
        json!(cfg.zone(&d.gate).offset_at(at)),
    );
    m.insert("eventID".into(), json!(event_id(d.transaction_id, kind)));
    m.insert("epcList".into(), json!(e.epc_list()));
    m.insert("action".into(), json!("OBSERVE"));
    m.insert("bizStep".into(), json!(biz_step));
    if let Some(disp) = disposition {
        m.insert("disposition".into(), json!(disp));
    }
    m.insert(
        "readPoint".into(),
        json!({ "id": cfg.read_point(&d.gate, &d.lane) }),
    );
    m.insert(
        "bizLocation".into(),
        json!({ "id": cfg.biz_location(&d.gate) }),
    );
    m.insert(
        ext("transactionID"),
        json!(format!("urn:uuid:{}", d.transaction_id)),
    );
    m.insert(ext("gate"), json!(d.gate.as_str()));
    m.insert(ext("lane"), json!(d.lane.as_str()));
    m
}

fn seal_fields(e: &GateEvent, m: &mut Map<String, Value>) {
    m.insert(ext("sealsRead"), json!(e.seals_read()));
    let eseals: Vec<Value> = e
        .eseals_read()
        .into_iter()
        .map(|(id, st)| json!({ ext("eSealID"): id, ext("eSealState"): eseal_state_str(st) }))
        .collect();
    m.insert(ext("eSealsRead"), Value::Array(eseals));
}

/// `aeogate:reasons`: each reason code once, in the decision's order; and, when reasons
/// name parties, `aeogate:reasonParties`: one object per such code with its parties.
fn reason_fields(d: &protocol::schema::Decision, m: &mut Map<String, Value>) {
    let lines = reason_lines(d);
    m.insert(
        ext("reasons"),
        json!(lines.iter().map(|l| l.code.code()).collect::<Vec<_>>()),
    );
    let with_parties: Vec<Value> = lines
        .iter()
        .filter(|l| !l.parties.is_empty())
        .map(|l| {
            let parties: Vec<Value> = l
                .parties
                .iter()
                .map(|p| {
                    let mut o = Map::new();
                    o.insert(ext("role"), json!(p.role.as_str()));
                    if let Some(id) = &p.operator {
                        o.insert(ext("operatorID"), json!(id.to_string()));
                    }
                    o.insert(ext("name"), json!(p.name));
                    if let Some(st) = p.status {
                        o.insert(ext("aeoStatus"), json!(st.as_str()));
                    }
                    Value::Object(o)
                })
                .collect();
            json!({ ext("reason"): l.code.code(), ext("parties"): parties })
        })
        .collect();
    if !with_parties.is_empty() {
        m.insert(ext("reasonParties"), Value::Array(with_parties));
    }
}

fn decision_fields(e: &GateEvent, m: &mut Map<String, Value>) {
    let d = &e.decision;
    m.insert(ext("decision"), json!(d.decision.as_str()));
    reason_fields(d, m);
    m.insert(ext("priority"), json!(d.priority));
    m.insert(ext("sealsDeclared"), json!(e.declared_seals));
    m.insert(ext("eSealsDeclared"), json!(e.declared_eseals));
    seal_fields(e, m);
    m.insert(ext("replicaSequence"), json!(d.replica.sequence));
    if let Some(age) = d.replica.age_s {
        m.insert(ext("replicaAgeSeconds"), json!(age));
    }
    m.insert(ext("replicaStale"), json!(d.replica.stale));
    if let Some(c) = &e.case {
        m.insert(ext("caseID"), json!(c.id));
    }
}

/// The EPCIS events of one decided transaction, in time order; empty when nothing was
/// identified (no container, no EPC), since an `ObjectEvent` is about identified objects.
#[must_use]
pub fn epcis_events(e: &GateEvent, cfg: &ExportConfig) -> Vec<Value> {
    if e.epc_list().is_empty() {
        return Vec::new();
    }
    let d = &e.decision;
    let mut out = Vec::new();

    let arrived = e.transaction.as_ref().map_or(d.decided_at, |t| t.opened_at);
    let mut m = base_event(
        e,
        cfg,
        &EventKind::Arriving,
        arrived,
        "arriving",
        Some("in_progress"),
    );
    seal_fields(e, &mut m);
    out.push(Value::Object(m));

    let (kind, step, disp) = match d.decision {
        LaneDecision::Fast | LaneDecision::Standard => {
            (EventKind::Departing, "departing", Some("in_transit"))
        }
        LaneDecision::Inspect if d.is_seal_exception() => {
            let opened = d
                .reasons
                .iter()
                .any(|r| matches!(r.code, ReasonCode::ESealOpened | ReasonCode::ESealTampered));
            let disp = if opened {
                "container_open"
            } else {
                "non_conformant"
            };
            (EventKind::Inspecting, "inspecting", Some(disp))
        }
        LaneDecision::Inspect => (EventKind::Holding, "holding", None),
    };
    let mut m = base_event(e, cfg, &kind, d.decided_at, step, disp);
    decision_fields(e, &mut m);
    out.push(Value::Object(m));

    for a in &e.inspections {
        let ActionKind::InspectionResult { result, .. } = &a.kind else {
            continue;
        };
        let (disp, persistent) = match result {
            InspectionOutcome::SealIntact | InspectionOutcome::FalseRead => {
                ("conformant", Some("container_closed"))
            }
            InspectionOutcome::SealReplaced { .. } => ("container_closed", None),
            InspectionOutcome::ContainerOpened => ("container_open", None),
            InspectionOutcome::DiscrepancyConfirmed => ("non_conformant", None),
        };
        let kind = EventKind::InspectionResult(a.id);
        let mut m = base_event(e, cfg, &kind, a.at, "inspecting", Some(disp));
        if let Some(p) = persistent {
            m.insert("persistentDisposition".into(), json!({ "set": [p] }));
        }
        m.insert(ext("inspectionResult"), json!(outcome_code(result)));
        if let InspectionOutcome::SealReplaced { new_seal } = result {
            m.insert(ext("newSealNumber"), json!(new_seal.to_string()));
        }
        m.insert(ext("officerActionID"), json!(format!("urn:uuid:{}", a.id)));
        m.insert(ext("sealsDeclared"), json!(e.declared_seals));
        seal_fields(e, &mut m);
        m.insert(ext("decision"), json!(d.decision.as_str()));
        reason_fields(d, &mut m);
        if let Some(c) = &e.case {
            m.insert(ext("caseID"), json!(c.id));
        }
        out.push(Value::Object(m));
    }
    out
}

/// An EPCIS 2.0 JSON-LD `EPCISDocument` of the events of `events` (EPCIS 2.0 §8.2), with
/// `creationDate` `created`. Events are ordered by `eventTime` (ties keep transaction
/// order). Transactions with nothing identified are listed, by id, in
/// `aeogate:omittedTransactions`, so a reader can tell they exist.
#[must_use]
pub fn epcis_document(events: &[GateEvent], cfg: &ExportConfig, created: Timestamp) -> Value {
    let mut list: Vec<(Timestamp, Value)> = Vec::new();
    let mut omitted = Vec::new();
    for e in events {
        let evs = epcis_events(e, cfg);
        if evs.is_empty() {
            omitted.push(format!("urn:uuid:{}", e.transaction_id()));
        }
        for v in evs {
            let at = v
                .get("eventTime")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<Timestamp>().ok())
                .unwrap_or(e.decision.decided_at);
            list.push((at, v));
        }
    }
    list.sort_by_key(|(at, _)| *at);
    let mut doc = json!({
        "@context": [EPCIS_CONTEXT, { EXTENSION_PREFIX: EXTENSION_NS }],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": epcis_time(created),
        "epcisBody": { "eventList": list.into_iter().map(|(_, v)| v).collect::<Vec<_>>() },
    });
    if !omitted.is_empty()
        && let Some(o) = doc.as_object_mut()
    {
        o.insert(ext("omittedTransactions"), json!(omitted));
    }
    doc
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use protocol::schema::{Decision, GateId, GateTransaction, LaneId, OfficerAction, ReadValue};
    use protocol::seal::SealNumber;

    use super::*;

    #[test]
    fn event_ids_are_deterministic_and_differ_by_kind() {
        let t = Uuid::from_u128(42);
        let a = event_id(t, &EventKind::Arriving);
        assert_eq!(a, event_id(t, &EventKind::Arriving));
        assert_ne!(a, event_id(t, &EventKind::Departing));
        assert_ne!(a, event_id(Uuid::from_u128(43), &EventKind::Arriving));
        let u: Uuid = a
            .strip_prefix("urn:uuid:")
            .expect("urn")
            .parse()
            .expect("uuid");
        assert_eq!(u.get_version_num(), 8);
    }

    fn inspect(reason: ReasonCode, results: Vec<InspectionOutcome>) -> GateEvent {
        use protocol::schema::{
            CloseReason, Read, ReadSource, Reason, ReplicaFreshness, SCHEMA_VERSION,
        };
        let t: Timestamp = "2026-03-04T10:00:00Z".parse().expect("ts");
        let gate = GateId::parse("G1").expect("gate");
        let lane = LaneId::parse("L1").expect("lane");
        let id = Uuid::from_u128(7);
        let number = protocol::container::ContainerNumber::parse("CSQU3054383").expect("cn");
        GateEvent {
            decision: Decision {
                v: SCHEMA_VERSION,
                transaction_id: id,
                gate: gate.clone(),
                lane: lane.clone(),
                decision: LaneDecision::Inspect,
                route: "bay".into(),
                reasons: vec![Reason::new(reason)],
                priority: true,
                decided_at: t,
                replica: ReplicaFreshness {
                    sequence: 1,
                    as_of: None,
                    age_s: None,
                    stale: true,
                },
                consignments: vec![],
                parties: vec![],
                policy: "p".into(),
            },
            transaction: Some(GateTransaction {
                v: SCHEMA_VERSION,
                id,
                gate: gate.clone(),
                lane: lane.clone(),
                opened_at: t,
                closed_at: t,
                close_reason: CloseReason::Departure,
                reads: vec![Read {
                    source: ReadSource::Ocr,
                    device: "ocr".into(),
                    raw: "CSQU3054383".into(),
                    value: ReadValue::Container { number },
                    first_at: t,
                    last_at: t,
                    count: 1,
                    antenna: None,
                    rssi: None,
                    confidence: None,
                    entered_by: None,
                }],
            }),
            inspections: results
                .into_iter()
                .enumerate()
                .map(|(i, result)| OfficerAction {
                    v: SCHEMA_VERSION,
                    id: Uuid::from_u128(100 + i as u128),
                    transaction_id: Some(id),
                    gate: gate.clone(),
                    lane: lane.clone(),
                    officer: "o".into(),
                    role: "officer".into(),
                    at: t,
                    kind: ActionKind::InspectionResult {
                        result,
                        note: String::new(),
                    },
                })
                .collect(),
            declared_seals: BTreeSet::new(),
            declared_eseals: BTreeSet::new(),
            case: None,
        }
    }

    fn dispositions(e: &GateEvent) -> Vec<String> {
        epcis_events(e, &ExportConfig::default())
            .iter()
            .map(|v| v["disposition"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    #[test]
    fn each_inspection_outcome_has_its_disposition() {
        let seal = SealNumber::parse("NEW1234567").expect("seal");
        let e = inspect(
            ReasonCode::ESealTampered,
            vec![
                InspectionOutcome::ContainerOpened,
                InspectionOutcome::DiscrepancyConfirmed,
                InspectionOutcome::SealReplaced {
                    new_seal: seal.clone(),
                },
                InspectionOutcome::FalseRead,
            ],
        );
        assert_eq!(
            dispositions(&e),
            [
                "in_progress",
                "container_open",
                "container_open",
                "non_conformant",
                "container_closed",
                "conformant"
            ]
        );
        let evs = epcis_events(&e, &ExportConfig::default());
        assert_eq!(evs[4]["aeogate:newSealNumber"], "NEW1234567");
        assert_eq!(
            evs[5]["persistentDisposition"]["set"][0],
            "container_closed"
        );
        assert_eq!(evs[1]["aeogate:priority"], true);
        assert_eq!(evs[1]["aeogate:replicaStale"], true);
        assert!(evs[1].get("aeogate:replicaAgeSeconds").is_none());
    }

    #[test]
    fn container_conflicts_are_non_conformant_and_other_holds_are_holding() {
        let e = inspect(ReasonCode::ContainerReadConflict, vec![]);
        assert_eq!(dispositions(&e), ["in_progress", "non_conformant"]);
        let e = inspect(ReasonCode::RandomSelection, vec![]);
        let evs = epcis_events(&e, &ExportConfig::default());
        assert_eq!(evs[1]["bizStep"], "holding");
        assert!(evs[1].get("disposition").is_none());
    }
}
