//! Exports of decided gate transactions: a CSV table for people and spreadsheets, and a
//! GS1 EPCIS 2.0 JSON-LD document for trading partners and customs systems.
//!
//! Both start from [`collect`], which reads one gate's (or every gate's) decisions in a
//! time range from the store and joins each with its gate transaction, the officers'
//! inspection results and the seal-exception case, into [`GateEvent`]s. [`write_csv`]
//! and [`epcis_document`] are pure functions of those, so an export is reproducible: the
//! same stored entries give the same bytes (given the same `creationDate`).
//!
//! # EPCIS mapping (docs/central.md, "Exports")
//! Per decided transaction, `ObjectEvent`s with `action: OBSERVE` (EPCIS 2.0 §7.4.2), whose
//! `epcList` holds the containers as BIC EPC URIs (`urn:epc:id:bic:…`, TDS 2.0 §6.3.17)
//! and every tag read that decoded to an EPC pure identity (`urn:epc:id:…`, TDS §6):
//! - `arriving` (CBV 2.0 §7.1) at the transaction's opening, disposition `in_progress`;
//! - `departing` at the decision, disposition `in_transit`, when the truck was routed
//!   out (FAST or STANDARD);
//! - `inspecting` at the decision when an INSPECT decision has a seal or container
//!   reason ([`Decision::is_seal_exception`]): disposition `container_open` when an
//!   e-seal reports it was opened or tampered with (CBV: "a seal of a shipment has been
//!   broken"), else `non_conformant` (the seal check failed);
//! - `holding` at the decision for any other INSPECT (CBV's own example of `holding` is a
//!   container customs sets aside until it can inspect it);
//! - `inspecting` at each officer inspection result: `conformant` with persistent
//!   disposition `container_closed` when the seal was found intact or the read was
//!   false, `container_closed` after a reseal, `container_open` when the container was
//!   opened, `non_conformant` when the discrepancy was confirmed.
//!
//! Seal data, reason codes and the decision travel in extension fields under the
//! `aeogate:` prefix, bound in `@context` to [`EXTENSION_NS`] (EPCIS 2.0 §8.2.5: user
//! extensions are namespaced properties). Event ids are `urn:uuid:` UUIDs derived with
//! SHA-256 from the transaction id and the event kind (RFC 9562 §5.8, version 8 used for
//! name-based SHA-256 as in its Appendix B.2), so a re-export names the same events.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io;

use jiff::Timestamp;
use jiff::tz::{Offset, TimeZone};
use protocol::schema::{
    ActionKind, Decision, ESealState, EventBody, GateId, GateTransaction, InspectionOutcome,
    LaneDecision, LaneId, OfficerAction, ReadValue, ReasonCode,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::model::{CaseOutcome, CaseQuery, CaseState, EventQuery};
use crate::store::{Store, StoreError};

/// The EPCIS 2.0 JSON-LD context every document names first (EPCIS 2.0 §8.2.2).
pub const EPCIS_CONTEXT: &str = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld";
/// Prefix of aeogate's extension fields.
pub const EXTENSION_PREFIX: &str = "aeogate";
/// Namespace IRI the extension prefix is bound to in `@context`.
pub const EXTENSION_NS: &str = "https://aeogate.example.invalid/epcis/";
/// Base of read point and business location URIs for gates without an SGLN.
pub const DEFAULT_LOCATION_BASE: &str = "https://id.example.invalid/aeogate";
/// Most decided transactions one export holds; a larger range must be split.
pub const MAX_EXPORT_TRANSACTIONS: usize = 100_000;
/// Items asked of the store per page.
const PAGE: usize = 1_000;
/// Most store pages one export reads (events and cases each); the store scans at most
/// 20,000 index rows per page, so this bounds an export's work, not its answer.
const MAX_PAGES: usize = 10_000;

/// Why an export could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the range holds more than {limit} decided transactions; narrow it with gate, from and to"
    )]
    TooLarge { limit: usize },
    #[error("from ({from}) must be before to ({to})")]
    EmptyRange { from: Timestamp, to: Timestamp },
    #[error("writing the CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("writing the export: {0}")]
    Io(#[from] io::Error),
}

// ---------------------------------------------------------------------------------------
// configuration
// ---------------------------------------------------------------------------------------

/// Why an export setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    #[error(
        "{value:?} is not an SGLN pure identity URI: {why} (expected urn:epc:id:sgln:<company prefix>.<location reference>.<extension>, TDS 2.0 §6.3.3)"
    )]
    BadSgln { value: String, why: &'static str },
    #[error("location_base {value:?}: {why}")]
    BadBase { value: String, why: &'static str },
    #[error("time zone {value:?}: {why}")]
    BadZone { value: String, why: String },
}

/// An SGLN pure identity URI (`urn:epc:id:sgln:0614141.00777.GATE3`, GS1 TDS 2.0 §6.3.3):
/// company prefix and location reference together 12 digits (the GLN without its check
/// digit), the prefix 6 to 12 of them, then an extension of 1 to 20 characters from the
/// GS1 AI encodable set in URI form (`%HH` for the escaped ones; `0` means "no
/// extension").
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Sgln(String);

impl Sgln {
    /// Parses an SGLN pure identity URI.
    ///
    /// # Errors
    /// [`LocationError::BadSgln`] saying which part is wrong.
    pub fn parse(s: &str) -> Result<Self, LocationError> {
        let bad = |why| LocationError::BadSgln {
            value: s.to_owned(),
            why,
        };
        let rest = s
            .strip_prefix("urn:epc:id:sgln:")
            .ok_or_else(|| bad("does not start with urn:epc:id:sgln:"))?;
        let mut parts = rest.splitn(3, '.');
        let (Some(prefix), Some(location), Some(ext)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("needs three parts separated by '.'"));
        };
        if !(prefix.bytes().all(|b| b.is_ascii_digit())
            && location.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(bad("company prefix and location reference must be digits"));
        }
        if !(6..=12).contains(&prefix.len()) {
            return Err(bad("the company prefix must have 6 to 12 digits"));
        }
        if prefix.len() + location.len() != 12 {
            return Err(bad(
                "company prefix and location reference must have 12 digits together",
            ));
        }
        let mut chars = 0usize;
        let b = ext.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'%' => {
                    let hex = b
                        .get(i + 1..i + 3)
                        .ok_or_else(|| bad("'%' must be followed by two hex digits"))?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return Err(bad("'%' must be followed by two hex digits"));
                    }
                    i += 3;
                }
                c if c.is_ascii_alphanumeric() || b"!'()*+,-.:;=_".contains(&c) => i += 1,
                _ => {
                    return Err(bad(
                        "the extension holds a character outside the GS1 AI encodable set",
                    ));
                }
            }
            chars += 1;
        }
        if !(1..=20).contains(&chars) {
            return Err(bad("the extension must have 1 to 20 characters"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The URI.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Sgln {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The base of the URIs read points and business locations get when no SGLN is
/// configured: `<base>/gate/<gate>` and `<base>/gate/<gate>/lane/<lane>` (gate and lane
/// names are `[A-Za-z0-9._-]`, so they need no escaping). An absolute `http(s)` URI without
/// query or fragment; a trailing `/` is dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct LocationBase(String);

impl LocationBase {
    /// Parses a base URI.
    ///
    /// # Errors
    /// [`LocationError::BadBase`] saying what is wrong.
    pub fn parse(s: &str) -> Result<Self, LocationError> {
        let bad = |why| LocationError::BadBase {
            value: s.to_owned(),
            why,
        };
        let rest = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .ok_or_else(|| bad("must start with https:// or http://"))?;
        let host = rest.split('/').next().unwrap_or("");
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        // RFC 3986 unreserved characters plus the path and authority delimiters we allow.
        if !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~/:@".contains(&b))
        {
            return Err(bad(
                "may hold only letters, digits and - . _ ~ / : @ (no query, fragment, spaces or escapes)",
            ));
        }
        Ok(Self(s.trim_end_matches('/').to_owned()))
    }

    /// The base, without a trailing `/`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for LocationBase {
    fn default() -> Self {
        Self(DEFAULT_LOCATION_BASE.to_owned())
    }
}

impl<'de> Deserialize<'de> for LocationBase {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The time zone a gate's `eventTimeZoneOffset` is taken in: `UTC`, a fixed offset
/// (`-05:00`), or an IANA name (`America/Chicago`, from the system's time zone database),
/// whose offset then follows daylight saving time at each event.
#[derive(Debug, Clone)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

impl Zone {
    /// Parses a zone setting.
    ///
    /// # Errors
    /// [`LocationError::BadZone`] when it is neither an offset nor a known IANA name.
    pub fn parse(s: &str) -> Result<Self, LocationError> {
        let bad = |why: String| LocationError::BadZone {
            value: s.to_owned(),
            why,
        };
        let tz = if s == "UTC" || s == "Z" {
            TimeZone::UTC
        } else if let Some(rest) = s.strip_prefix(['+', '-']) {
            // ±HH:MM, two digits each (ISO 8601 extended form, as EPCIS writes offsets).
            let b = rest.as_bytes();
            let two = |i: usize| {
                b.get(i..i + 2)
                    .filter(|d| d.iter().all(u8::is_ascii_digit))
                    .map(|d| i32::from(d[0] - b'0') * 10 + i32::from(d[1] - b'0'))
            };
            let (Some(h), Some(m), 5, Some(b':')) = (two(0), two(3), b.len(), b.get(2).copied())
            else {
                return Err(bad("a fixed offset is written ±HH:MM".into()));
            };
            let secs = (h * 3600 + m * 60) * if s.starts_with('-') { -1 } else { 1 };
            // EPCIS 2.0 JSON schema: eventTimeZoneOffset from -13:59 to +14:00.
            if m >= 60 || secs > 14 * 3600 || secs <= -14 * 3600 {
                return Err(bad(
                    "offsets range from -13:59 to +14:00 (EPCIS 2.0 eventTimeZoneOffset)".into(),
                ));
            }
            let off = Offset::from_seconds(secs).map_err(|e| bad(e.to_string()))?;
            TimeZone::fixed(off)
        } else {
            TimeZone::get(s).map_err(|e| bad(e.to_string()))?
        };
        Ok(Self {
            name: s.to_owned(),
            tz,
        })
    }

    /// The setting as written.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `eventTimeZoneOffset` at `at`: `±HH:MM` (EPCIS 2.0 §7.4.1; seconds of historical
    /// offsets are dropped, the schema has none).
    #[must_use]
    pub fn offset_at(&self, at: Timestamp) -> String {
        let secs = self.tz.to_offset(at).seconds();
        let sign = if secs < 0 { '-' } else { '+' };
        let mins = secs.unsigned_abs() / 60;
        format!("{sign}{:02}:{:02}", mins / 60, mins % 60)
    }
}

impl Default for Zone {
    fn default() -> Self {
        Self {
            name: "UTC".into(),
            tz: TimeZone::UTC,
        }
    }
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for Zone {}

impl Serialize for Zone {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}

impl<'de> Deserialize<'de> for Zone {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Where one gate is, for EPCIS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateLocations {
    /// The gate's time zone (the export's `time_zone` when absent).
    #[serde(default)]
    pub time_zone: Option<Zone>,
    /// SGLN of the gate as a business location.
    #[serde(default)]
    pub biz_location: Option<Sgln>,
    /// SGLN of each lane as a read point.
    #[serde(default)]
    pub read_points: BTreeMap<LaneId, Sgln>,
}

/// The `[export]` section of central's configuration.
///
/// ```toml
/// [export]
/// location_base = "https://id.example.invalid/aeogate"
/// time_zone = "UTC"
/// [export.gates.P1-G1]
/// time_zone = "America/Chicago"
/// biz_location = "urn:epc:id:sgln:0614141.00777.0"
/// read_points = { L1 = "urn:epc:id:sgln:0614141.00777.GATE3" }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// Base of the URIs of gates and lanes without an SGLN.
    #[serde(default)]
    pub location_base: LocationBase,
    /// Time zone of gates that name none.
    #[serde(default)]
    pub time_zone: Zone,
    /// Per-gate locations and time zones.
    #[serde(default)]
    pub gates: BTreeMap<GateId, GateLocations>,
}

impl ExportConfig {
    /// `readPoint` id of a lane: its SGLN, else `<base>/gate/<gate>/lane/<lane>`.
    #[must_use]
    pub fn read_point(&self, gate: &GateId, lane: &LaneId) -> String {
        match self.gates.get(gate).and_then(|g| g.read_points.get(lane)) {
            Some(sgln) => sgln.as_str().to_owned(),
            None => format!("{}/gate/{gate}/lane/{lane}", self.location_base.as_str()),
        }
    }

    /// `bizLocation` id of a gate: its SGLN, else `<base>/gate/<gate>`.
    #[must_use]
    pub fn biz_location(&self, gate: &GateId) -> String {
        match self.gates.get(gate).and_then(|g| g.biz_location.as_ref()) {
            Some(sgln) => sgln.as_str().to_owned(),
            None => format!("{}/gate/{gate}", self.location_base.as_str()),
        }
    }

    /// The time zone of a gate.
    #[must_use]
    pub fn zone(&self, gate: &GateId) -> &Zone {
        self.gates
            .get(gate)
            .and_then(|g| g.time_zone.as_ref())
            .unwrap_or(&self.time_zone)
    }
}

// ---------------------------------------------------------------------------------------
// collecting
// ---------------------------------------------------------------------------------------

/// Which decisions to export: those whose journal entry time (`at`) is in `[from, to)`,
/// of one gate or of all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportQuery {
    pub gate: Option<GateId>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

/// The case opened for a transaction's seal exception.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseRef {
    pub id: u64,
    pub state: CaseState,
    pub outcome: Option<CaseOutcome>,
}

/// One decided gate transaction with everything the exports show.
#[derive(Debug, Clone, PartialEq)]
pub struct GateEvent {
    pub decision: Decision,
    /// The transaction's reads (`None` when only the decision reached central).
    pub transaction: Option<GateTransaction>,
    /// Officers' inspection results for the transaction, oldest first.
    pub inspections: Vec<OfficerAction>,
    /// Seal numbers declared for the containers read: those the decision's reasons name,
    /// and those of the decision's consignments still in the registry at export time.
    pub declared_seals: BTreeSet<String>,
    /// E-seal ids declared, from the same sources.
    pub declared_eseals: BTreeSet<String>,
    pub case: Option<CaseRef>,
}

impl GateEvent {
    /// Transaction id.
    #[must_use]
    pub fn transaction_id(&self) -> Uuid {
        self.decision.transaction_id
    }

    /// Container numbers read, in first-read order.
    #[must_use]
    pub fn containers(&self) -> Vec<String> {
        self.transaction
            .as_ref()
            .map(|t| t.containers().iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    /// EPC pure identity URIs of the tags read (raw EPCs are not identities and are left
    /// out), in first-read order.
    #[must_use]
    pub fn tag_uris(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in self.transaction.iter().flat_map(|t| &t.reads) {
            if let ReadValue::Tag { uri, .. } = &r.value
                && uri.starts_with("urn:epc:id:")
                && !out.contains(uri)
            {
                out.push(uri.clone());
            }
        }
        out
    }

    /// Mechanical seal numbers read.
    #[must_use]
    pub fn seals_read(&self) -> BTreeSet<String> {
        self.transaction
            .iter()
            .flat_map(|t| &t.reads)
            .filter_map(|r| match &r.value {
                ReadValue::Seal { number } => Some(number.to_string()),
                _ => None,
            })
            .collect()
    }

    /// E-seals read with the worst state each reported (tampered over opened over sealed).
    #[must_use]
    pub fn eseals_read(&self) -> BTreeMap<String, ESealState> {
        let rank = |s: ESealState| match s {
            ESealState::Sealed => 0,
            ESealState::Opened => 1,
            ESealState::Tampered => 2,
        };
        let mut out = BTreeMap::new();
        for r in self.transaction.iter().flat_map(|t| &t.reads) {
            if let ReadValue::ESeal { id, state, .. } = &r.value {
                let e = out.entry(id.to_string()).or_insert(*state);
                if rank(*state) > rank(*e) {
                    *e = *state;
                }
            }
        }
        out
    }

    /// The EPCs of the EPCIS events: containers as BIC URIs, then the tags' identities.
    #[must_use]
    pub fn epc_list(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .containers()
            .iter()
            .map(|c| format!("urn:epc:id:bic:{c}"))
            .collect();
        for t in self.tag_uris() {
            if !out.contains(&t) {
                out.push(t);
            }
        }
        out
    }
}

fn eseal_state_str(s: ESealState) -> &'static str {
    match s {
        ESealState::Sealed => "SEALED",
        ESealState::Opened => "OPENED",
        ESealState::Tampered => "TAMPERED",
    }
}

/// Reads the decided transactions matching `q`, oldest decision first, with their
/// transactions, inspection results, declared seals and cases.
///
/// # Errors
/// [`ExportError::EmptyRange`] when `from >= to`; [`ExportError::TooLarge`] past
/// [`MAX_EXPORT_TRANSACTIONS`] (or when the store needs more than a bounded number of
/// pages); store errors.
pub fn collect(store: &dyn Store, q: &ExportQuery) -> Result<Vec<GateEvent>, ExportError> {
    if let (Some(from), Some(to)) = (q.from, q.to)
        && from >= to
    {
        return Err(ExportError::EmptyRange { from, to });
    }
    let too_large = ExportError::TooLarge {
        limit: MAX_EXPORT_TRANSACTIONS,
    };

    // 1. The decisions in range; a transaction decided twice keeps its latest decision.
    let mut decisions: HashMap<Uuid, Decision> = HashMap::new();
    let mut cursor = None;
    for page_no in 0.. {
        if page_no == MAX_PAGES {
            return Err(too_large);
        }
        let page = store.events(&EventQuery {
            gate: q.gate.clone(),
            from: q.from,
            to: q.to,
            cursor: cursor.take(),
            limit: PAGE,
            ..EventQuery::default()
        })?;
        for e in page.items {
            if let EventBody::Decision { decision } = e.entry.body {
                match decisions.get(&decision.transaction_id) {
                    Some(d) if d.decided_at > decision.decided_at => {}
                    _ => {
                        decisions.insert(decision.transaction_id, decision);
                    }
                }
            }
        }
        if decisions.len() > MAX_EXPORT_TRANSACTIONS {
            return Err(too_large);
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut decisions: Vec<Decision> = decisions.into_values().collect();
    decisions.sort_by_key(|d| (d.decided_at, d.transaction_id));

    // 2. Each transaction's other entries, and what was declared.
    let mut out = Vec::with_capacity(decisions.len());
    for decision in decisions {
        let mut transaction: Option<GateTransaction> = None;
        let mut inspections = Vec::new();
        for e in store.transaction_events(&decision.transaction_id)? {
            match e.entry.body {
                EventBody::Transaction { transaction: t }
                    if transaction
                        .as_ref()
                        .is_none_or(|old| t.closed_at >= old.closed_at) =>
                {
                    transaction = Some(t);
                }
                EventBody::OfficerAction { action }
                    if matches!(action.kind, ActionKind::InspectionResult { .. }) =>
                {
                    inspections.push(action);
                }
                _ => {}
            }
        }
        inspections.sort_by_key(|a| (a.at, a.id));
        let mut ev = GateEvent {
            decision,
            transaction,
            inspections,
            declared_seals: BTreeSet::new(),
            declared_eseals: BTreeSet::new(),
            case: None,
        };
        declared(store, &mut ev)?;
        out.push(ev);
    }

    // 3. Cases of the seal exceptions.
    let mut wanted: HashMap<Uuid, usize> = out
        .iter()
        .enumerate()
        .filter(|(_, e)| e.decision.is_seal_exception())
        .map(|(i, e)| (e.transaction_id(), i))
        .collect();
    let mut cursor = None;
    for page_no in 0.. {
        if wanted.is_empty() {
            break;
        }
        if page_no == MAX_PAGES {
            return Err(too_large);
        }
        let page = store.cases(&CaseQuery {
            gate: q.gate.clone(),
            cursor: cursor.take(),
            limit: PAGE,
            ..CaseQuery::default()
        })?;
        for c in page.items {
            if let Some(i) = c.transaction_id().and_then(|t| wanted.remove(&t))
                && let Some(ev) = out.get_mut(i)
            {
                ev.case = Some(CaseRef {
                    id: c.id,
                    state: c.state,
                    outcome: c.outcome,
                });
            }
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Ok(out)
}

/// Fills the declared seals: what the decision's reasons name (they survive the
/// consignment leaving the registry), and the seals of the decision's consignments that
/// are still there.
fn declared(store: &dyn Store, ev: &mut GateEvent) -> Result<(), StoreError> {
    for r in &ev.decision.reasons {
        if let Some(v) = r.detail.get("declared") {
            ev.declared_seals.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
        }
        if let Some(v) = r.detail.get("declared_eseal") {
            ev.declared_eseals.insert(v.trim().to_owned());
        }
    }
    if ev.decision.consignments.is_empty() {
        return Ok(());
    }
    let containers = ev
        .transaction
        .as_ref()
        .map(GateTransaction::containers)
        .unwrap_or_default();
    for cn in &containers {
        for k in store.consignments_for_container(cn.as_str())? {
            if !ev.decision.consignments.contains(&k.id) {
                continue;
            }
            for d in k.containers.iter().filter(|d| &d.number == cn) {
                ev.declared_seals
                    .extend(d.seals.iter().map(ToString::to_string));
                ev.declared_eseals
                    .extend(d.eseals.iter().map(ToString::to_string));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// CSV
// ---------------------------------------------------------------------------------------

/// The CSV header, one column per field (docs/central.md, "Exports"). Lists inside a
/// cell are separated by `;`.
pub const CSV_COLUMNS: &[&str] = &[
    "decided_at",
    "gate",
    "lane",
    "transaction_id",
    "arrived_at",
    "containers",
    "tags",
    "seals_declared",
    "seals_read",
    "eseals_declared",
    "eseals_read",
    "decision",
    "reasons",
    "priority",
    "route",
    "replica_seq",
    "replica_age_s",
    "replica_stale",
    "case_id",
    "case_state",
    "inspection_results",
];

fn join<I: IntoIterator<Item = S>, S: AsRef<str>>(items: I) -> String {
    let mut s = String::new();
    for (i, x) in items.into_iter().enumerate() {
        if i > 0 {
            s.push(';');
        }
        s.push_str(x.as_ref());
    }
    s
}

/// A free-text cell that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab,
/// CR at the start) gets a leading `'` (OWASP "CSV Injection"). Identifiers in the other
/// columns are parsed values and are written as they are.
fn text_cell(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    }
}

fn outcome_code(o: &InspectionOutcome) -> &'static str {
    match o {
        InspectionOutcome::SealIntact => "SEAL_INTACT",
        InspectionOutcome::SealReplaced { .. } => "SEAL_REPLACED",
        InspectionOutcome::ContainerOpened => "CONTAINER_OPENED",
        InspectionOutcome::DiscrepancyConfirmed => "DISCREPANCY_CONFIRMED",
        InspectionOutcome::FalseRead => "FALSE_READ",
    }
}

/// Writes one CSV row per decided transaction under a [`CSV_COLUMNS`] header (RFC 4180
/// quoting; times in RFC 3339 UTC).
///
/// # Errors
/// When writing fails.
pub fn write_csv<W: io::Write>(events: &[GateEvent], out: W) -> Result<(), ExportError> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(CSV_COLUMNS)?;
    for e in events {
        let d = &e.decision;
        let eseals_read = e
            .eseals_read()
            .into_iter()
            .map(|(id, st)| format!("{id}:{}", eseal_state_str(st)));
        let inspections = e.inspections.iter().filter_map(|a| match &a.kind {
            ActionKind::InspectionResult { result, .. } => Some(match result {
                InspectionOutcome::SealReplaced { new_seal } => {
                    format!("SEAL_REPLACED:{new_seal}")
                }
                other => outcome_code(other).to_owned(),
            }),
            _ => None,
        });
        let row: Vec<String> = vec![
            d.decided_at.to_string(),
            d.gate.to_string(),
            d.lane.to_string(),
            d.transaction_id.to_string(),
            e.transaction
                .as_ref()
                .map(|t| t.opened_at.to_string())
                .unwrap_or_default(),
            join(e.containers()),
            join(e.tag_uris()),
            join(&e.declared_seals),
            join(e.seals_read()),
            join(&e.declared_eseals),
            join(eseals_read),
            d.decision.as_str().to_owned(),
            join(d.reasons.iter().map(|r| r.code.code())),
            d.priority.to_string(),
            text_cell(&d.route),
            d.replica.sequence.to_string(),
            d.replica.age_s.map(|a| a.to_string()).unwrap_or_default(),
            d.replica.stale.to_string(),
            e.case
                .as_ref()
                .map(|c| c.id.to_string())
                .unwrap_or_default(),
            e.case
                .as_ref()
                .map(|c| c.state.as_str().to_owned())
                .unwrap_or_default(),
            join(inspections),
        ];
        w.write_record(&row)?;
    }
    w.flush()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// EPCIS
// ---------------------------------------------------------------------------------------

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

fn decision_fields(e: &GateEvent, m: &mut Map<String, Value>) {
    let d = &e.decision;
    m.insert(ext("decision"), json!(d.decision.as_str()));
    m.insert(
        ext("reasons"),
        json!(d.reasons.iter().map(|r| r.code.code()).collect::<Vec<_>>()),
    );
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
        m.insert(
            ext("reasons"),
            json!(d.reasons.iter().map(|r| r.code.code()).collect::<Vec<_>>()),
        );
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
    use super::*;
    use protocol::seal::SealNumber;

    #[test]
    fn sgln_accepts_the_gs1_example_and_names_what_is_wrong() {
        assert!(Sgln::parse("urn:epc:id:sgln:0614141.00777.GATE3").is_ok());
        assert!(Sgln::parse("urn:epc:id:sgln:0614141.00777.0").is_ok());
        for (bad, why) in [
            ("urn:epc:id:sgtin:0614141.00777.0", "does not start"),
            ("urn:epc:id:sgln:0614141.0077.0", "12 digits together"),
            ("urn:epc:id:sgln:06141.0077777.0", "6 to 12"),
            ("urn:epc:id:sgln:0614141.00777", "three parts"),
            ("urn:epc:id:sgln:0614141.00777.", "1 to 20"),
            ("urn:epc:id:sgln:0614141.00777.a b", "encodable"),
            ("urn:epc:id:sgln:0614141.00777.%2", "hex digits"),
        ] {
            let e = Sgln::parse(bad).expect_err(bad).to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn location_base_is_an_http_uri_without_trailing_slash() {
        let b = LocationBase::parse("https://id.example.invalid/aeogate/").expect("base");
        assert_eq!(b.as_str(), "https://id.example.invalid/aeogate");
        assert!(LocationBase::parse("ftp://x").is_err());
        assert!(LocationBase::parse("https://").is_err());
        assert!(LocationBase::parse("https://x/a b").is_err());
        assert!(LocationBase::parse("https://x/a?q=1").is_err());
    }

    #[test]
    fn zone_offsets_are_written_as_epcis_wants_them() {
        let t: Timestamp = "2026-03-01T10:00:00Z".parse().expect("ts");
        assert_eq!(Zone::default().offset_at(t), "+00:00");
        assert_eq!(Zone::parse("-05:00").expect("zone").offset_at(t), "-05:00");
        assert_eq!(Zone::parse("+05:30").expect("zone").offset_at(t), "+05:30");
        assert_eq!(Zone::parse("+14:00").expect("zone").offset_at(t), "+14:00");
        assert!(Zone::parse("-14:00").is_err());
        assert!(Zone::parse("+14:01").is_err());
        assert!(Zone::parse("+5").is_err());
        assert!(Zone::parse("+5:00").is_err());
        assert!(Zone::parse("+05:60").is_err());
        assert!(Zone::parse("-13:59").is_ok());
        assert!(Zone::parse("Mars/Olympus_Mons").is_err());
    }

    #[test]
    fn lanes_without_sgln_get_uris_under_the_base() {
        let mut cfg = ExportConfig::default();
        let g = GateId::parse("P1-G1").expect("gate");
        let l1 = LaneId::parse("L1").expect("lane");
        let l2 = LaneId::parse("L2").expect("lane");
        assert_eq!(
            cfg.read_point(&g, &l1),
            "https://id.example.invalid/aeogate/gate/P1-G1/lane/L1"
        );
        assert_eq!(
            cfg.biz_location(&g),
            "https://id.example.invalid/aeogate/gate/P1-G1"
        );
        let mut loc = GateLocations::default();
        loc.read_points.insert(
            l1.clone(),
            Sgln::parse("urn:epc:id:sgln:0614141.00777.GATE3").expect("sgln"),
        );
        cfg.gates.insert(g.clone(), loc);
        assert_eq!(
            cfg.read_point(&g, &l1),
            "urn:epc:id:sgln:0614141.00777.GATE3"
        );
        assert_eq!(
            cfg.read_point(&g, &l2),
            "https://id.example.invalid/aeogate/gate/P1-G1/lane/L2"
        );
    }

    #[test]
    fn export_config_reads_from_toml_and_refuses_a_bad_sgln() {
        let text = "location_base = \"https://gates.example.invalid/x\"\ntime_zone = \"-05:00\"\n[gates.P1-G1]\nbiz_location = \"urn:epc:id:sgln:0614141.00777.0\"\nread_points = { L1 = \"urn:epc:id:sgln:0614141.00777.GATE3\" }\n";
        let cfg: ExportConfig = toml::from_str(text).expect("config");
        let g = GateId::parse("P1-G1").expect("gate");
        assert_eq!(cfg.biz_location(&g), "urn:epc:id:sgln:0614141.00777.0");
        assert_eq!(cfg.zone(&g).name(), "-05:00");
        let bad = text.replace("00777.0\"", "0077.0\"");
        let e = toml::from_str::<ExportConfig>(&bad).expect_err("bad sgln");
        assert!(e.to_string().contains("12 digits"), "{e}");
    }

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

    #[test]
    fn formula_like_free_text_is_defused() {
        assert_eq!(text_cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(text_cell("Lane 1 priority"), "Lane 1 priority");
    }
}
