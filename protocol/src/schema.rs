//! Versioned event and registry schemas (feature `std`).
//!
//! These are the records the edge agent journals and forwards, and the records central
//! replicates to the agents. They travel as JSON over HTTP and are stored as JSON in redb;
//! every top-level record carries `v`, the schema version it was written with
//! ([`SCHEMA_VERSION`]). A reader refuses a record whose version is newer than its own.
//!
//! # Layout
//! - names: [`GateId`], [`LaneId`] — bounded, printable identifiers from configuration;
//! - reads and the [`GateTransaction`] they are folded into;
//! - the [`Decision`] with its [`Reason`]s ([`ReasonCode`] and officer-readable text);
//! - [`OfficerAction`]s;
//! - the registry: [`RegistryRecord`], [`MraRecord`], [`Consignment`], [`Change`],
//!   [`ChangeBatch`] and the [`SignedEnvelope`] they are shipped in; the chunked
//!   snapshot's [`SnapshotManifest`] and [`SnapshotChunk`];
//! - the journal envelope [`JournalEntry`] with its [`EventBody`].

use std::collections::BTreeMap;
use std::fmt;
use std::string::{String, ToString};
use std::vec::Vec;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::container::ContainerNumber;
use crate::operator::{OperatorId, Programme};
use crate::seal::{ESealId, SealNumber};

/// Version written into every record by this build.
pub const SCHEMA_VERSION: u16 = 1;

/// Returns an error when a record's version is newer than this build understands.
///
/// # Errors
/// [`SchemaError::TooNew`] when `found > SCHEMA_VERSION`.
pub fn check_version(found: u16) -> Result<(), SchemaError> {
    if found > SCHEMA_VERSION {
        Err(SchemaError::TooNew {
            found,
            supported: SCHEMA_VERSION,
        })
    } else {
        Ok(())
    }
}

/// Errors about schema values themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaError {
    /// The record was written by a newer version.
    TooNew { found: u16, supported: u16 },
    /// A name (gate, lane) is empty, too long or holds a character outside `[A-Za-z0-9._-]`.
    BadName {
        what: &'static str,
        value: String,
        why: &'static str,
    },
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooNew { found, supported } => {
                write!(
                    f,
                    "record has schema version {found}; this build supports up to {supported}"
                )
            }
            Self::BadName { what, value, why } => write!(f, "invalid {what} {value:?}: {why}"),
        }
    }
}

impl std::error::Error for SchemaError {}

macro_rules! name_type {
    ($(#[$m:meta])* $name:ident, $what:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Longest accepted name.
            pub const MAX_LEN: usize = 32;

            /// Parses a name: 1..=32 characters from `[A-Za-z0-9._-]`.
            ///
            /// # Errors
            /// [`SchemaError::BadName`] saying what is wrong.
            pub fn parse(s: &str) -> Result<Self, SchemaError> {
                let why = if s.is_empty() {
                    Some("must not be empty")
                } else if s.len() > Self::MAX_LEN {
                    Some("longer than 32 characters")
                } else if !s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
                    Some("only letters, digits, '.', '_' and '-' are allowed")
                } else {
                    None
                };
                match why {
                    Some(why) => Err(SchemaError::BadName { what: $what, value: s.into(), why }),
                    None => Ok(Self(s.into())),
                }
            }

            /// The name as text.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl core::str::FromStr for $name {
            type Err = SchemaError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// A gate (one gate box, one edge agent), e.g. `PORT1-G1`.
    GateId,
    "gate id"
);
name_type!(
    /// A lane within a gate, e.g. `L2`.
    LaneId,
    "lane id"
);

// ---------------------------------------------------------------------------------------
// Reads and gate transactions
// ---------------------------------------------------------------------------------------

/// Where a read came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReadSource {
    /// A UHF RFID reader (through the lane board, directly over serial, or networked).
    Rfid,
    /// An OCR portal or camera.
    Ocr,
    /// An ISO 18185 e-seal reader.
    ESealReader,
    /// Typed by an officer because a reader is down.
    Manual,
}

/// State an e-seal reports (ISO 18185-2 seal status, plus tamper evidence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ESealState {
    /// Sealed and never opened since sealing.
    Sealed,
    /// Opened (the seal's status bit says so).
    Opened,
    /// Tamper evidence reported by the seal or reader.
    Tampered,
}

/// What was read, normalised. The raw text is kept beside it in [`Read::raw`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReadValue {
    /// A valid ISO 6346 container number.
    Container { number: ContainerNumber },
    /// An RFID tag; `uri` is the EPC pure-identity (or raw) URN.
    Tag { uri: String, scheme: String },
    /// A mechanical (ISO 17712) seal number, e.g. from OCR or a barcode scanner.
    Seal { number: SealNumber },
    /// An e-seal report.
    ESeal {
        id: ESealId,
        state: ESealState,
        battery_pct: Option<u8>,
    },
    /// A licence plate (OCR).
    Plate { text: String },
    /// Something was read but could not be understood; kept so nothing is silently dropped.
    Unreadable { what: String, error: String },
}

/// One read folded into a transaction (repeats of the same value are counted, not kept).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Read {
    pub source: ReadSource,
    /// Device name from the agent's configuration.
    pub device: String,
    /// The value as received (hex for tags, text for OCR), before normalisation.
    pub raw: String,
    pub value: ReadValue,
    pub first_at: Timestamp,
    pub last_at: Timestamp,
    /// How many times the same value was reported from this device in this transaction.
    pub count: u32,
    #[serde(default)]
    pub antenna: Option<u8>,
    #[serde(default)]
    pub rssi: Option<i16>,
    /// OCR confidence, 0..=100.
    #[serde(default)]
    pub confidence: Option<u8>,
    /// Officer who typed a manual entry.
    #[serde(default)]
    pub entered_by: Option<String>,
}

/// Why a transaction closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CloseReason {
    /// The presence loop cleared.
    Departure,
    /// The lane's transaction timeout expired.
    Timeout,
    /// Closed by an officer.
    Manual,
    /// The agent stopped with the transaction open.
    Shutdown,
    /// A live reconfiguration removed the lane with the transaction open.
    LaneRemoved,
}

/// One truck's passage through one lane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateTransaction {
    pub v: u16,
    pub id: Uuid,
    pub gate: GateId,
    pub lane: LaneId,
    pub opened_at: Timestamp,
    pub closed_at: Timestamp,
    pub close_reason: CloseReason,
    pub reads: Vec<Read>,
}

impl GateTransaction {
    /// Distinct valid container numbers read, in first-read order.
    #[must_use]
    pub fn containers(&self) -> Vec<ContainerNumber> {
        let mut out: Vec<ContainerNumber> = Vec::new();
        for r in &self.reads {
            if let ReadValue::Container { number } = &r.value
                && !out.contains(number)
            {
                out.push(*number);
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// Decisions
// ---------------------------------------------------------------------------------------

/// The lane a truck is sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LaneDecision {
    /// Priority lane: certified parties, intact matching seals, fresh data.
    Fast,
    /// Normal processing.
    Standard,
    /// Seal exception, risk hold or random selection.
    Inspect,
}

impl LaneDecision {
    /// `FAST`, `STANDARD` or `INSPECT`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fast => "FAST",
            Self::Standard => "STANDARD",
            Self::Inspect => "INSPECT",
        }
    }
}

impl fmt::Display for LaneDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! reason_codes {
    ($($(#[$m:meta])* $variant:ident = $code:literal, $text:literal;)*) => {
        /// Stable reason codes. Officer-facing English text is [`ReasonCode::text`]; other
        /// languages live with the screens. Codes are never renamed; new ones are appended.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum ReasonCode {
            $($(#[$m])* #[serde(rename = $code)] $variant,)*
        }

        impl ReasonCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ReasonCode] = &[$(ReasonCode::$variant,)*];

            /// The stable `SCREAMING_SNAKE` code.
            #[must_use]
            pub fn code(self) -> &'static str {
                match self { $(Self::$variant => $code,)* }
            }

            /// Officer-readable English text.
            #[must_use]
            pub fn text(self) -> &'static str {
                match self { $(Self::$variant => $text,)* }
            }

            /// Looks a code up by its text form.
            #[must_use]
            pub fn from_code(code: &str) -> Option<Self> {
                match code { $($code => Some(Self::$variant),)* _ => None }
            }
        }
    };
}

reason_codes! {
    /// All FAST conditions held.
    AllChecksPassed = "ALL_CHECKS_PASSED", "Certified parties, seals intact and matching, data current";
    /// A read seal number differs from the declared one.
    SealMismatch = "SEAL_MISMATCH", "Seal number read does not match the declared seal";
    /// A declared seal was not read.
    SealMissing = "SEAL_MISSING", "Declared seal was not read at the gate";
    /// An e-seal reports it was opened.
    ESealOpened = "ESEAL_OPENED", "Electronic seal reports it has been opened";
    /// An e-seal reports tampering.
    ESealTampered = "ESEAL_TAMPERED", "Electronic seal reports tampering";
    /// An e-seal's battery is low (informational).
    ESealLowBattery = "ESEAL_LOW_BATTERY", "Electronic seal battery is low";
    /// The container read is not the declared one, or sources disagree.
    ContainerMismatch = "CONTAINER_MISMATCH", "Container number read does not match the declared container";
    /// Readers disagree about the container number (e.g. OCR vs RFID).
    ContainerReadConflict = "CONTAINER_READ_CONFLICT", "Readers disagree on the container number";
    /// No valid container number was read.
    ContainerUnread = "CONTAINER_UNREAD", "No valid container number was read";
    /// Customs risk hold or inspection order on the consignment.
    RiskHold = "RISK_HOLD", "Customs risk hold or inspection order on this consignment";
    /// Selected at random (reproducible from the transaction id).
    RandomSelection = "RANDOM_SELECTION", "Selected for a random inspection";
    /// No advance cargo data for a container.
    NoAdvanceData = "NO_ADVANCE_DATA", "No advance cargo data for this container";
    /// A required party is not declared.
    PartyMissing = "PARTY_MISSING", "A required party (importer or carrier) is not declared";
    /// A party's operator id is not in the registry.
    PartyUnknown = "PARTY_UNKNOWN", "Party is not in the AEO registry";
    /// A party's AEO status is suspended.
    PartySuspended = "PARTY_SUSPENDED", "Party's AEO status is suspended";
    /// A party's AEO status is revoked or annulled.
    PartyRevoked = "PARTY_REVOKED", "Party's AEO status has been revoked";
    /// A party withdrew from its programme.
    PartyWithdrawn = "PARTY_WITHDRAWN", "Party has withdrawn from its AEO programme";
    /// A party's authorisation expired.
    PartyExpired = "PARTY_EXPIRED", "Party's AEO authorisation has expired";
    /// A party is certified, but without the security component.
    PartyNoSecurity = "PARTY_NO_SECURITY", "Party's authorisation has no security component (e.g. AEOC only)";
    /// A party is certified in a programme not recognised here.
    MraNotRecognised = "MRA_NOT_RECOGNISED", "Party's programme is not recognised by a mutual recognition agreement in force";
    /// A party is certified and recognised through an MRA (informational).
    MraRecognised = "MRA_RECOGNISED", "Party recognised through a mutual recognition agreement";
    /// The local registry replica is older than the staleness bound.
    ReplicaStale = "REPLICA_STALE", "Registry data at this gate is out of date: priority suspended";
    /// An AEO shipment selected for inspection goes first.
    AeoPriorityInspection = "AEO_PRIORITY_INSPECTION", "AEO shipment: priority in the inspection queue";
    /// A read could not be understood.
    UnreadableRead = "UNREADABLE_READ", "A reader reported data that could not be understood";
    /// An officer changed the lane.
    OfficerOverride = "OFFICER_OVERRIDE", "Lane changed by an officer";
    /// The gate's journal cannot be written (e.g. the disk is full): decisions go on, but
    /// no priority is granted until they can be recorded again.
    JournalUnavailable = "JOURNAL_UNAVAILABLE", "Gate records cannot be written: priority suspended until they can";
    /// A record of the local replica exists but cannot be read (a damaged value): the
    /// data it holds is unverifiable, so it grants nothing.
    ReplicaUnreadable = "REPLICA_UNREADABLE", "Registry data at this gate could not be read: priority suspended";
    /// The edge agent restarted (a crash, a power loss) while this truck was in the lane:
    /// its transaction was rebuilt from the reads logged before the restart, and reads
    /// made while the agent was down may be missing, so it grants no priority.
    AgentRestarted = "AGENT_RESTARTED", "The gate system restarted while this truck was in the lane: priority suspended";
    /// The gate's clock is off from central's by more than the configured bound (or
    /// cannot be checked and the host does not keep it synchronised): the times recorded
    /// as evidence cannot be trusted, so no priority is granted.
    ClockUntrusted = "CLOCK_UNTRUSTED", "The gate's clock cannot be trusted: priority suspended until it is corrected";
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// One reason of a decision: a stable code, English text, and the specifics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub code: ReasonCode,
    pub text: String,
    /// Specifics, e.g. `{"container":"CSQU3054383","declared":"A123","read":"A124"}`.
    #[serde(default)]
    pub detail: BTreeMap<String, String>,
    /// The parties the reason is about, as the decision saw them: the party of a
    /// `PARTY_*` / `MRA_*` reason, the certified parties with their customs contact point
    /// on `AEO_PRIORITY_INSPECTION`. Screens and exports render these, not `detail`
    /// strings. Additive: absent (empty) in entries written before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parties: Vec<PartyView>,
}

impl Reason {
    /// A reason with the code's standard text and no detail.
    #[must_use]
    pub fn new(code: ReasonCode) -> Self {
        Self {
            code,
            text: code.text().into(),
            detail: BTreeMap::new(),
            parties: Vec::new(),
        }
    }

    /// Adds one detail entry.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl fmt::Display) -> Self {
        self.detail.insert(key.into(), value.to_string());
        self
    }

    /// Adds a party the reason is about.
    #[must_use]
    pub fn with_party(mut self, party: PartyView) -> Self {
        self.parties.push(party);
        self
    }
}

/// How current the registry replica was when a decision was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaFreshness {
    /// Last applied change sequence.
    pub sequence: u64,
    /// Central's as-of time of that sequence; `None` when the replica was never loaded.
    pub as_of: Option<Timestamp>,
    /// Age at decision time, in seconds; `None` when never loaded.
    pub age_s: Option<u64>,
    /// Whether the age exceeded the policy's bound.
    pub stale: bool,
}

/// A party as the decision saw it, for the officer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartyView {
    pub role: PartyRole,
    #[serde(default)]
    pub operator: Option<OperatorId>,
    pub name: String,
    /// Registry status, or `None` when not found.
    #[serde(default)]
    pub status: Option<AeoStatus>,
    pub security: bool,
    /// The MRA through which the party is recognised, e.g. `US-CTPAT→EU-AEO`.
    #[serde(default)]
    pub mra: Option<String>,
    #[serde(default)]
    pub contact_point: Option<ContactPoint>,
}

/// The lane decision for one gate transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub v: u16,
    pub transaction_id: Uuid,
    pub gate: GateId,
    pub lane: LaneId,
    pub decision: LaneDecision,
    /// Where the truck is sent, from configuration (e.g. "Lane 1 priority").
    pub route: String,
    pub reasons: Vec<Reason>,
    /// An AEO shipment sent to inspection goes to the head of the queue.
    pub priority: bool,
    pub decided_at: Timestamp,
    pub replica: ReplicaFreshness,
    /// Consignments matched, by id.
    #[serde(default)]
    pub consignments: Vec<String>,
    #[serde(default)]
    pub parties: Vec<PartyView>,
    /// Policy identifier (name and hash), so an audit can tell which policy decided.
    pub policy: String,
}

impl Decision {
    /// Whether any reason is a seal or container exception (opens a case at central).
    #[must_use]
    pub fn is_seal_exception(&self) -> bool {
        self.decision == LaneDecision::Inspect
            && self.reasons.iter().any(|r| {
                matches!(
                    r.code,
                    ReasonCode::SealMismatch
                        | ReasonCode::SealMissing
                        | ReasonCode::ESealOpened
                        | ReasonCode::ESealTampered
                        | ReasonCode::ContainerMismatch
                        | ReasonCode::ContainerReadConflict
                )
            })
    }
}

/// What a lane's light, barrier and sign show: a truck's decision, or the lane's safe
/// state (red, barrier down, no route) while the truck in it waits for its own decision
/// (docs/decisions.md, "Between trucks"), the lane closed by a supervisor, or `OFFLINE`
/// when the agent is gone. On the wire it is one word: the decision's (`FAST`,
/// `STANDARD`, `INSPECT`), `WAITING`, `CLOSED` or `OFFLINE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LaneSignal {
    /// A decision (or an officer's override) for the truck named by the lane state.
    Decided(LaneDecision),
    /// The safe state between trucks: no decision applies to the truck now in the lane.
    Waiting,
    /// A supervisor closed the lane: red, barrier down, sign "LANE CLOSED", and no
    /// transaction opens there until it is reopened.
    Closed,
    /// The agent is gone (stopped, or killed: then the broker publishes it as the lane's
    /// Last Will): nothing it decided applies any more. Shown as the safe state, closed.
    Offline,
}

impl LaneSignal {
    /// `FAST`, `STANDARD`, `INSPECT`, `WAITING`, `CLOSED` or `OFFLINE`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decided(d) => d.as_str(),
            Self::Waiting => "WAITING",
            Self::Closed => "CLOSED",
            Self::Offline => "OFFLINE",
        }
    }

    /// The decision shown, or `None` while the lane waits, is closed or the agent is offline.
    #[must_use]
    pub fn decided(self) -> Option<LaneDecision> {
        match self {
            Self::Decided(d) => Some(d),
            Self::Waiting | Self::Closed | Self::Offline => None,
        }
    }

    /// Parses the wire word; `None` for any other text.
    #[must_use]
    pub fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "FAST" => Self::Decided(LaneDecision::Fast),
            "STANDARD" => Self::Decided(LaneDecision::Standard),
            "INSPECT" => Self::Decided(LaneDecision::Inspect),
            "WAITING" => Self::Waiting,
            "CLOSED" => Self::Closed,
            "OFFLINE" => Self::Offline,
            _ => return None,
        })
    }
}

impl From<LaneDecision> for LaneSignal {
    fn from(d: LaneDecision) -> Self {
        Self::Decided(d)
    }
}

impl fmt::Display for LaneSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for LaneSignal {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for LaneSignal {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let word = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Self::parse(&word).ok_or_else(|| {
            serde::de::Error::unknown_variant(
                &word,
                &[
                    "FAST", "STANDARD", "INSPECT", "WAITING", "CLOSED", "OFFLINE",
                ],
            )
        })
    }
}

/// What a lane shows: the message the agent publishes on its MQTT lane topics
/// (`<prefix>/<lane>/state`, retained, and `<prefix>/<lane>/decision`; docs/integration.md)
/// and what its console shows as the lane's current state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneState {
    pub lane: LaneId,
    /// The gate transaction decided, or the one waiting for its decision (absent for an
    /// officer's lane change without one, and for a lane waiting for its next truck).
    pub transaction_id: Option<Uuid>,
    /// The decision shown, or `WAITING` (published on the state topic only).
    pub decision: LaneSignal,
    /// Where the truck goes, from configuration (empty while waiting).
    pub route: String,
    /// Reason codes only; officer text and specifics stay on the console.
    pub reasons: Vec<ReasonCode>,
    /// An AEO shipment in the inspection queue goes first.
    pub priority: bool,
    /// When decided (or overridden, or when the lane began to wait).
    pub at: Timestamp,
    /// `true` when an officer set this state.
    #[serde(default)]
    pub officer_override: bool,
}

impl LaneState {
    /// The lane-topic view of a decision.
    #[must_use]
    pub fn from_decision(d: &Decision) -> Self {
        Self {
            lane: d.lane.clone(),
            transaction_id: Some(d.transaction_id),
            decision: d.decision.into(),
            route: d.route.clone(),
            reasons: d.reasons.iter().map(|r| r.code).collect(),
            priority: d.priority,
            at: d.decided_at,
            officer_override: false,
        }
    }

    /// The lane in its safe state, waiting for the decision on the truck of
    /// `transaction_id` (being read), or with `None` for the next truck after a decided one
    /// left: the previous decision no longer applies (docs/decisions.md, "Between
    /// trucks").
    #[must_use]
    pub fn waiting(lane: &LaneId, transaction_id: Option<Uuid>, at: Timestamp) -> Self {
        Self {
            lane: lane.clone(),
            transaction_id,
            decision: LaneSignal::Waiting,
            route: String::new(),
            reasons: Vec::new(),
            priority: false,
            at,
            officer_override: false,
        }
    }

    /// A lane closed by a supervisor: no transaction, no route, no reasons (the closing
    /// reason is journaled and shown on the console, not published).
    #[must_use]
    pub fn closed(lane: &LaneId, at: Timestamp) -> Self {
        Self {
            lane: lane.clone(),
            transaction_id: None,
            decision: LaneSignal::Closed,
            route: String::new(),
            reasons: Vec::new(),
            priority: false,
            at,
            officer_override: false,
        }
    }

    /// Whether this is the safe state between trucks rather than a decision.
    #[must_use]
    pub fn is_waiting(&self) -> bool {
        self.decision == LaneSignal::Waiting
    }
}

/// The colour a lane's light shows (docs/integration.md, "Link lane command").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SignLight {
    Green,
    Amber,
    Red,
}

/// What a lane sign or a terminal system needs, and nothing more: the message retained
/// on `<prefix>/<lane>/state`. No reasons, no priority: those are for officers
/// ([`LaneState`], on `<prefix>/<lane>/decision`). A sign shows it only while the agent's
/// availability topic says `online` (docs/integration.md, "Availability").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignState {
    pub lane: LaneId,
    /// `false`: the lane is closed (the agent stopped, or a supervisor closed it); show it
    /// closed, whatever else.
    pub open: bool,
    /// `FAST`, `STANDARD`, `INSPECT`, `WAITING` (safe state between trucks, and the
    /// state of a lane whose agent stopped) or `CLOSED` (closed by a supervisor).
    pub decision: LaneSignal,
    pub light: SignLight,
    /// The route text for the driver (empty while waiting or closed).
    pub route: String,
    /// The gate transaction the state belongs to, if any (to match a truck).
    pub transaction_id: Option<Uuid>,
    pub at: Timestamp,
}

impl SignState {
    /// The sign's view of what a lane shows: FAST green, STANDARD amber, INSPECT and
    /// WAITING red; OFFLINE red and closed.
    #[must_use]
    pub fn from_lane_state(s: &LaneState) -> Self {
        let light = match s.decision {
            LaneSignal::Decided(LaneDecision::Fast) => SignLight::Green,
            LaneSignal::Decided(LaneDecision::Standard) => SignLight::Amber,
            LaneSignal::Decided(LaneDecision::Inspect)
            | LaneSignal::Waiting
            | LaneSignal::Closed
            | LaneSignal::Offline => SignLight::Red,
        };
        Self {
            lane: s.lane.clone(),
            open: !matches!(s.decision, LaneSignal::Closed | LaneSignal::Offline),
            decision: s.decision,
            light,
            route: s.route.clone(),
            transaction_id: s.transaction_id,
            at: s.at,
        }
    }

    /// A closed lane: red, no route, no transaction.
    #[must_use]
    pub fn closed(lane: &LaneId, at: Timestamp) -> Self {
        Self {
            lane: lane.clone(),
            open: false,
            decision: LaneSignal::Waiting,
            light: SignLight::Red,
            route: String::new(),
            transaction_id: None,
            at,
        }
    }

    /// The lane with the agent gone: closed, red, `OFFLINE`, no route, no transaction.
    /// Retained on the lane's state topic on a clean stop, and the Last Will of the lane's
    /// will connection, so that a sign that follows only its lane's topic sees it
    /// (docs/integration.md, "Availability").
    #[must_use]
    pub fn offline(lane: &LaneId, at: Timestamp) -> Self {
        Self {
            lane: lane.clone(),
            open: false,
            decision: LaneSignal::Offline,
            light: SignLight::Red,
            route: String::new(),
            transaction_id: None,
            at,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Officer actions
// ---------------------------------------------------------------------------------------

/// Outcome of a physical inspection of a seal exception.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InspectionOutcome {
    /// The seal was found intact and matching.
    SealIntact,
    /// The seal was replaced; the new number is recorded.
    SealReplaced { new_seal: SealNumber },
    /// The container was opened for examination.
    ContainerOpened,
    /// The discrepancy is real.
    DiscrepancyConfirmed,
    /// The reader was wrong.
    FalseRead,
}

/// What an officer did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActionKind {
    /// Accepted the recommended lane.
    Confirm,
    /// Changed the lane; a reason is required.
    Override {
        to: LaneDecision,
        reason: String,
        note: String,
    },
    /// Recorded the result of an inspection.
    InspectionResult {
        result: InspectionOutcome,
        note: String,
    },
    /// Typed a container or seal because a reader is down.
    ManualEntry { value: ReadValue },
}

/// One officer action, attributed and timed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfficerAction {
    pub v: u16,
    pub id: Uuid,
    pub transaction_id: Option<Uuid>,
    pub gate: GateId,
    pub lane: LaneId,
    pub officer: String,
    pub role: String,
    pub at: Timestamp,
    pub kind: ActionKind,
}

/// What happened to a console session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConsoleSessionKind {
    /// A login that opened a session.
    Login,
    /// A wrong user name or password.
    LoginFailed,
    /// A login refused without checking the password: too many recent failures.
    LoginThrottled,
    /// A session ended by its user.
    Logout,
}

/// A login or logout at a gate's officer console, attributed and timed: who may have
/// acted at the lanes, and who tried to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleSession {
    pub v: u16,
    pub gate: GateId,
    pub kind: ConsoleSessionKind,
    /// The account name, as typed for a failed or throttled login (at most 64
    /// characters kept).
    pub user: String,
    /// The account's role, when a session was opened or ended.
    pub role: Option<String>,
    /// The client's address, when known.
    pub client: Option<String>,
    pub at: Timestamp,
}

// ---------------------------------------------------------------------------------------
// Registry
// ---------------------------------------------------------------------------------------

/// Lifecycle status of an AEO authorisation (DOMAIN §1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AeoStatus {
    Active,
    /// Temporary loss of benefits.
    Suspended,
    /// Revoked (or annulled) by the authority.
    Revoked,
    /// Withdrawn at the holder's request.
    Withdrawn,
    /// Past its validity period.
    Expired,
}

impl AeoStatus {
    /// Upper-case text form.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Suspended => "SUSPENDED",
            Self::Revoked => "REVOKED",
            Self::Withdrawn => "WITHDRAWN",
            Self::Expired => "EXPIRED",
        }
    }
}

/// Authorisation types. Only those with a security component count for priority and MRAs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Authorisation {
    /// EU customs simplifications (no security component).
    Aeoc,
    /// EU security and safety.
    Aeos,
    /// EU combined AEOC + AEOS.
    Aeof,
    /// A national programme's security modality (e.g. OEA-S, CTPAT Security, PIP).
    Security,
    /// A national programme's compliance-only modality (e.g. OEA-C).
    Compliance,
}

impl Authorisation {
    /// Whether this authorisation includes the security component.
    #[must_use]
    pub fn has_security(self) -> bool {
        matches!(self, Self::Aeos | Self::Aeof | Self::Security)
    }
}

/// Roles of a party in a consignment or in the supply chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PartyRole {
    Importer,
    Exporter,
    Carrier,
    Broker,
    Consolidator,
    TerminalOperator,
    Manufacturer,
    Warehouse,
}

impl PartyRole {
    /// Upper-case text form.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Importer => "IMPORTER",
            Self::Exporter => "EXPORTER",
            Self::Carrier => "CARRIER",
            Self::Broker => "BROKER",
            Self::Consolidator => "CONSOLIDATOR",
            Self::TerminalOperator => "TERMINAL_OPERATOR",
            Self::Manufacturer => "MANUFACTURER",
            Self::Warehouse => "WAREHOUSE",
        }
    }
}

/// The operator's contact point at customs, shown to officers on an AEO inspection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactPoint {
    pub name: String,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

/// One operator in the AEO registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryRecord {
    pub v: u16,
    pub operator: OperatorId,
    pub name: String,
    pub authorisations: Vec<Authorisation>,
    pub status: AeoStatus,
    pub status_since: Timestamp,
    pub valid_from: Timestamp,
    #[serde(default)]
    pub valid_to: Option<Timestamp>,
    #[serde(default)]
    pub roles: Vec<PartyRole>,
    #[serde(default)]
    pub contact_point: Option<ContactPoint>,
    /// Other identifiers of the same entity (EORI ↔ MID, TCUI).
    #[serde(default)]
    pub linked_ids: Vec<OperatorId>,
    /// Where the record came from (national list, MRA feed).
    pub source: String,
    /// When the source stated this record.
    pub as_of: Timestamp,
}

impl RegistryRecord {
    /// Whether any authorisation has the security component.
    #[must_use]
    pub fn has_security(&self) -> bool {
        self.authorisations.iter().any(|a| a.has_security())
    }

    /// Status as it holds at `now`: an active record past `valid_to` is expired.
    #[must_use]
    pub fn status_at(&self, now: Timestamp) -> AeoStatus {
        match (self.status, self.valid_to) {
            (AeoStatus::Active, Some(to)) if now >= to => AeoStatus::Expired,
            (AeoStatus::Active, _) if now < self.valid_from => AeoStatus::Expired,
            (s, _) => s,
        }
    }
}

/// A mutual recognition arrangement: `recognising` accepts members of `partner`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MraRecord {
    pub v: u16,
    pub recognising: Programme,
    pub partner: Programme,
    pub in_force_from: Timestamp,
    #[serde(default)]
    pub in_force_to: Option<Timestamp>,
    /// Only security-component members are recognised (true for EU–US, EU–CA).
    pub security_only: bool,
    pub name: String,
}

impl MraRecord {
    /// Whether the arrangement is in force at `now`.
    #[must_use]
    pub fn in_force(&self, now: Timestamp) -> bool {
        now >= self.in_force_from && self.in_force_to.is_none_or(|to| now < to)
    }
}

/// A declared container with its seals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredContainer {
    pub number: ContainerNumber,
    #[serde(default)]
    pub seals: Vec<SealNumber>,
    #[serde(default)]
    pub eseals: Vec<ESealId>,
}

/// A party to a consignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    pub role: PartyRole,
    #[serde(default)]
    pub operator: Option<OperatorId>,
    pub name: String,
}

/// A customs hold on a consignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// `RISK_HOLD` or `INSPECTION_ORDER`.
    pub kind: HoldKind,
    pub reference: String,
    #[serde(default)]
    pub note: String,
}

/// Kind of a customs hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HoldKind {
    RiskHold,
    InspectionOrder,
}

/// Advance cargo data for one consignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consignment {
    pub v: u16,
    /// Declaration or bill of lading reference.
    pub id: String,
    pub containers: Vec<DeclaredContainer>,
    pub parties: Vec<Party>,
    #[serde(default)]
    pub holds: Vec<Hold>,
    /// Ports of entry concerned (replication scope).
    pub ports: Vec<String>,
    pub as_of: Timestamp,
}

/// One change in the registry's sequenced log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Change {
    /// Insert or replace an operator record.
    UpsertOperator { record: RegistryRecord },
    /// Change an operator's status (suspend, reinstate, revoke, withdraw, expire).
    SetStatus {
        operator: OperatorId,
        status: AeoStatus,
        reason: String,
        actor: String,
        at: Timestamp,
    },
    /// Insert or replace an MRA.
    UpsertMra { mra: MraRecord },
    /// Insert or replace a consignment.
    UpsertConsignment { consignment: Consignment },
    /// Remove a consignment (cleared or cancelled).
    RemoveConsignment { id: String },
}

/// A change with its sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequencedChange {
    pub seq: u64,
    pub change: Change,
}

/// A batch of consecutive changes, or a full snapshot, for one port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeBatch {
    pub v: u16,
    /// `true` when this batch replaces the replica (a snapshot).
    pub snapshot: bool,
    /// Sequence the batch follows (0 for a snapshot).
    pub after_seq: u64,
    /// Sequence of the last change included.
    pub last_seq: u64,
    /// Port the batch is meant for.
    pub port: String,
    /// Central's signed as-of time: the replica that applies this batch holds everything
    /// central's registry held for the port at this time. A batch with no changes and
    /// `after_seq == last_seq` is central's statement "no changes after `last_seq` as of
    /// this time"; agents count their replica fresh only from these signed times.
    pub as_of: Timestamp,
    pub changes: Vec<SequencedChange>,
}

/// Signed bytes: `payload` is the exact JSON text that was signed with ed25519.
/// Verifiers check the signature over `payload` before parsing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedEnvelope {
    pub key_id: String,
    pub payload: String,
    /// Hex-encoded 64-byte ed25519 signature.
    pub signature: String,
}

/// Central's signed description of a chunked snapshot (docs/delivery.md, "Chunked
/// snapshot"): the replica for `port` at `last_seq`, as of `as_of`, cut into chunks of at
/// most `chunk_records` changes each. `chunks[k]` is the SHA-256 (lowercase hex) of chunk
/// `k`'s exact bytes as served; the signature over the manifest covers every chunk
/// through these hashes, so a chunk is checked against its hash before it is parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotManifest {
    pub v: u16,
    /// Names this snapshot on central; chunks are fetched by it.
    pub id: String,
    pub port: String,
    /// Sequence of the last change the snapshot holds.
    pub last_seq: u64,
    /// Central's signed as-of time, as in a [`ChangeBatch`] snapshot.
    pub as_of: Timestamp,
    /// Most changes in one chunk.
    pub chunk_records: u32,
    /// Changes in all chunks together.
    pub records: u64,
    /// SHA-256 of each chunk's bytes, lowercase hex, in order.
    pub chunks: Vec<String>,
}

/// One chunk of a chunked snapshot: `changes` (each with its seq, none beyond the
/// manifest's `last_seq`), in the snapshot's stable order. Served as the JSON text whose
/// SHA-256 the manifest names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotChunk {
    pub v: u16,
    /// Position of this chunk in the manifest, from 0.
    pub index: u32,
    pub changes: Vec<SequencedChange>,
}

// ---------------------------------------------------------------------------------------
// Journal and uplink
// ---------------------------------------------------------------------------------------

/// Health of one device as the agent sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceHealth {
    pub device: String,
    pub lane: Option<LaneId>,
    pub up: bool,
    pub detail: String,
    pub since: Timestamp,
}

/// What a journal entry records.
///
/// As JSON, an object with the variant's name in `type` (SCREAMING_SNAKE_CASE) beside its
/// fields. Its `Deserialize` (module `body_de`) takes the fields straight from the object
/// when `type` comes first (as this crate writes it) instead of buffering the whole
/// object first, as serde's internally tagged enums do.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventBody {
    Transaction {
        transaction: GateTransaction,
    },
    Decision {
        decision: Decision,
    },
    OfficerAction {
        action: OfficerAction,
    },
    DeviceHealth {
        health: DeviceHealth,
    },
    /// Something failed verification (a bad registry batch, a hash-chain break).
    IntegrityAlert {
        what: String,
        detail: String,
    },
    /// A read that arrived when no truck was in the lane (and none came to claim it): kept
    /// so that nothing a reader reports is silently dropped.
    OrphanRead {
        lane: LaneId,
        read: Read,
    },
    /// A console login (or failed or throttled attempt) or logout.
    ConsoleSession {
        session: ConsoleSession,
    },
    /// A new configuration was applied to the running agent (live reconfiguration):
    /// the policy ids before and after (as a decision's `policy` carries them) and one
    /// line per change, e.g. `lane L3 added`.
    ConfigApplied {
        old_policy: String,
        new_policy: String,
        changes: Vec<String>,
    },
    /// A supervisor closed (`closed: true`) or reopened a lane, with a reason.
    LaneControl {
        lane: LaneId,
        closed: bool,
        reason: String,
        /// The console user who did it.
        by: String,
    },
    /// A truck arrived at a closed lane: no transaction was opened and nothing decided;
    /// the lane stayed closed. Kept so that nothing a reader reports is silently dropped.
    LaneRefused {
        lane: LaneId,
        /// Why: [`LANE_REFUSED_CLOSED`].
        cause: String,
        /// When the truck arrived (its presence, or its first read on a lane without a
        /// loop).
        at: Timestamp,
        /// The reads that came with it (those held before its presence, or the read that
        /// announced it).
        reads: Vec<Read>,
    },
}

mod body_de {
    //! [`EventBody`]'s `Deserialize`: the same JSON as serde's derive for an internally
    //! tagged enum accepts (`type` anywhere in the object, unknown fields ignored), read
    //! without buffering when `type` is the first key. Ingest parses every entry's body:
    //! the derive's buffering (each value copied into serde's `Content` tree, then read
    //! again) was about a sixth of central's CPU per ingested event.

    use super::{
        ConsoleSession, Decision, DeviceHealth, EventBody, GateTransaction, LaneId, OfficerAction,
        Read,
    };
    use jiff::Timestamp;
    use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
    use serde::{Deserialize, de::value::MapAccessDeserializer};
    use std::fmt;
    use std::string::String;
    use std::vec::Vec;

    /// The variants' names, as `type` holds them.
    #[derive(Deserialize)]
    #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
    enum Tag {
        Transaction,
        Decision,
        OfficerAction,
        DeviceHealth,
        IntegrityAlert,
        OrphanRead,
        ConsoleSession,
        ConfigApplied,
        LaneControl,
        LaneRefused,
    }

    /// The fields of variant `tag`, from `d` (the object without its `type`).
    fn variant<'de, D: Deserializer<'de>>(tag: Tag, d: D) -> Result<EventBody, D::Error> {
        // One struct per variant with the variant's fields, so serde's derive reads them
        // (missing and duplicate fields refused, unknown ones ignored) as it would.
        Ok(match tag {
            Tag::Transaction => {
                #[derive(Deserialize)]
                struct F {
                    transaction: GateTransaction,
                }
                let F { transaction } = F::deserialize(d)?;
                EventBody::Transaction { transaction }
            }
            Tag::Decision => {
                #[derive(Deserialize)]
                struct F {
                    decision: Decision,
                }
                let F { decision } = F::deserialize(d)?;
                EventBody::Decision { decision }
            }
            Tag::OfficerAction => {
                #[derive(Deserialize)]
                struct F {
                    action: OfficerAction,
                }
                let F { action } = F::deserialize(d)?;
                EventBody::OfficerAction { action }
            }
            Tag::DeviceHealth => {
                #[derive(Deserialize)]
                struct F {
                    health: DeviceHealth,
                }
                let F { health } = F::deserialize(d)?;
                EventBody::DeviceHealth { health }
            }
            Tag::IntegrityAlert => {
                #[derive(Deserialize)]
                struct F {
                    what: String,
                    detail: String,
                }
                let F { what, detail } = F::deserialize(d)?;
                EventBody::IntegrityAlert { what, detail }
            }
            Tag::OrphanRead => {
                #[derive(Deserialize)]
                struct F {
                    lane: LaneId,
                    read: Read,
                }
                let F { lane, read } = F::deserialize(d)?;
                EventBody::OrphanRead { lane, read }
            }
            Tag::ConsoleSession => {
                #[derive(Deserialize)]
                struct F {
                    session: ConsoleSession,
                }
                let F { session } = F::deserialize(d)?;
                EventBody::ConsoleSession { session }
            }
            Tag::ConfigApplied => {
                #[derive(Deserialize)]
                struct F {
                    old_policy: String,
                    new_policy: String,
                    changes: Vec<String>,
                }
                let F {
                    old_policy,
                    new_policy,
                    changes,
                } = F::deserialize(d)?;
                EventBody::ConfigApplied {
                    old_policy,
                    new_policy,
                    changes,
                }
            }
            Tag::LaneControl => {
                #[derive(Deserialize)]
                struct F {
                    lane: LaneId,
                    closed: bool,
                    reason: String,
                    by: String,
                }
                let F {
                    lane,
                    closed,
                    reason,
                    by,
                } = F::deserialize(d)?;
                EventBody::LaneControl {
                    lane,
                    closed,
                    reason,
                    by,
                }
            }
            Tag::LaneRefused => {
                #[derive(Deserialize)]
                struct F {
                    lane: LaneId,
                    cause: String,
                    at: Timestamp,
                    reads: Vec<Read>,
                }
                let F {
                    lane,
                    cause,
                    at,
                    reads,
                } = F::deserialize(d)?;
                EventBody::LaneRefused {
                    lane,
                    cause,
                    at,
                    reads,
                }
            }
        })
    }

    /// An object's key: `type`, or another (kept, for the slow path).
    enum Key {
        Type,
        Other(String),
    }

    struct KeySeed;

    impl<'de> DeserializeSeed<'de> for KeySeed {
        type Value = Key;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
            d.deserialize_str(self)
        }
    }

    impl Visitor<'_> for KeySeed {
        type Value = Key;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a field name")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
            Ok(if v == "type" {
                Key::Type
            } else {
                Key::Other(v.into())
            })
        }
    }

    struct BodyVisitor;

    impl<'de> Visitor<'de> for BodyVisitor {
        type Value = EventBody;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an event body: an object with its `type`")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EventBody, A::Error> {
            let first = match map.next_key_seed(KeySeed)? {
                Some(Key::Type) => {
                    let tag: Tag = map.next_value()?;
                    return variant(tag, MapAccessDeserializer::new(map));
                }
                Some(Key::Other(k)) => k,
                None => return Err(de::Error::missing_field("type")),
            };
            // `type` later in the object: take the object whole, then read it.
            let mut object = serde_json::Map::new();
            object.insert(first, map.next_value()?);
            while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                if object.contains_key(&k) {
                    return Err(de::Error::custom(format_args!("duplicate field `{k}`")));
                }
                object.insert(k, v);
            }
            let tag = object
                .remove("type")
                .ok_or_else(|| de::Error::missing_field("type"))?;
            let tag = Tag::deserialize(tag).map_err(de::Error::custom)?;
            variant(tag, serde_json::Value::Object(object)).map_err(de::Error::custom)
        }
    }

    impl<'de> Deserialize<'de> for EventBody {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_map(BodyVisitor)
        }
    }
}

/// The cause of an [`EventBody::LaneRefused`]: the lane was closed.
pub const LANE_REFUSED_CLOSED: &str = "LANE_CLOSED";

/// A lane closed by a supervisor, as the heartbeat reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedLane {
    pub lane: LaneId,
    pub reason: String,
    /// When it was closed.
    pub since: Timestamp,
}

/// One entry of an agent's hash-chained journal.
///
/// `hash` is SHA-256 over `prev_hash` (32 bytes) followed by the canonical JSON of
/// `(v, agent, seq, id, at, body)`; see the edge agent's journal documentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub v: u16,
    pub agent: GateId,
    pub seq: u64,
    pub id: Uuid,
    pub at: Timestamp,
    /// Hex SHA-256 of the previous entry (64 zeros for the first).
    pub prev_hash: String,
    pub hash: String,
    pub body: EventBody,
}

/// A [`JournalEntry`]'s JSON with its body given already made: `body` is anything that
/// serialises to the body's JSON (a `serde_json::value::RawValue` written once). The bytes
/// are those of `serde_json::to_vec` of the entry (its fields, in its order), so the agent
/// and central serialise a body once for both the entry's hash and its stored bytes.
#[derive(Debug, Serialize)]
pub struct EntryJson<'a, B: ?Sized + Serialize> {
    pub v: u16,
    pub agent: &'a GateId,
    pub seq: u64,
    pub id: &'a Uuid,
    pub at: &'a Timestamp,
    pub prev_hash: &'a str,
    pub hash: &'a str,
    pub body: &'a B,
}

/// Hex SHA-256 of nothing: the `prev_hash` of an agent's first journal entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash chaining journal entries: hex SHA-256 over the 32 bytes of `prev_hash`
/// followed by `serde_json` of the tuple `(v, agent, seq, id, at, body)`.
///
/// The agent computes it when appending; central recomputes it on ingest. Both use this
/// one function, so the chain means the same thing at both ends.
///
/// `body` is an [`EventBody`], or anything that serialises to the same JSON (central hashes
/// a body's JSON as it arrived, or as it serialised it once, as a
/// `serde_json::value::RawValue`, and stores those bytes).
///
/// # Errors
/// [`ChainError::BadPrevHash`] when `prev_hash` is not 64 hex digits.
pub fn entry_hash<B: Serialize + ?Sized>(
    prev_hash: &str,
    v: u16,
    agent: &GateId,
    seq: u64,
    id: &Uuid,
    at: &Timestamp,
    body: &B,
) -> Result<String, ChainError> {
    entry_digest(prev_hash, v, agent, seq, id, at, body).map(hex::encode)
}

/// [`entry_hash`] as its 32 bytes. The JSON is written into a buffer kept by the thread
/// (every entry hashed on it reuses it), not a new one each time.
fn entry_digest<B: Serialize + ?Sized>(
    prev_hash: &str,
    v: u16,
    agent: &GateId,
    seq: u64,
    id: &Uuid,
    at: &Timestamp,
    body: &B,
) -> Result<[u8; 32], ChainError> {
    use sha2::{Digest, Sha256};
    use std::cell::RefCell;
    /// Largest buffer a thread keeps between entries (a body is about a kilobyte).
    const KEEP: usize = 64 * 1024;
    std::thread_local! {
        static CONTENT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    let mut prev = [0u8; 32];
    hex::decode_to_slice(prev_hash, &mut prev).map_err(|_| ChainError::BadPrevHash)?;
    let digest = |content: &mut Vec<u8>| {
        content.clear();
        serde_json::to_writer(&mut *content, &(v, agent, seq, id, at, body))
            .map_err(|_| ChainError::Unserialisable)?;
        let mut h = Sha256::new();
        h.update(prev);
        h.update(&content[..]);
        Ok::<[u8; 32], ChainError>(h.finalize().into())
    };
    CONTENT.with(|c| match c.try_borrow_mut() {
        Ok(mut content) => {
            let out = digest(&mut content);
            if content.capacity() > KEEP {
                *content = Vec::new();
            }
            out
        }
        // Only if a body's serialisation hashed an entry itself: a buffer of its own.
        Err(_) => digest(&mut Vec::new()),
    })
}

/// Why a journal entry's hash could not be computed or did not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainError {
    /// `prev_hash` is not 64 hex digits.
    BadPrevHash,
    /// The body could not be serialised (cannot happen for well-formed records).
    Unserialisable,
    /// The stored `hash` differs from the recomputed one.
    Mismatch {
        seq: u64,
        stored: String,
        computed: String,
    },
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadPrevHash => f.write_str("prev_hash is not 64 hex digits"),
            Self::Unserialisable => f.write_str("entry body could not be serialised"),
            Self::Mismatch {
                seq,
                stored,
                computed,
            } => {
                write!(
                    f,
                    "entry {seq}: stored hash {stored} differs from recomputed {computed}"
                )
            }
        }
    }
}

impl std::error::Error for ChainError {}

impl JournalEntry {
    /// Builds the entry that follows `prev_hash`, computing its hash.
    ///
    /// # Errors
    /// As [`entry_hash`].
    pub fn new_chained(
        agent: GateId,
        seq: u64,
        id: Uuid,
        at: Timestamp,
        prev_hash: String,
        body: EventBody,
    ) -> Result<Self, ChainError> {
        let hash = entry_hash(&prev_hash, SCHEMA_VERSION, &agent, seq, &id, &at, &body)?;
        Ok(Self {
            v: SCHEMA_VERSION,
            agent,
            seq,
            id,
            at,
            prev_hash,
            hash,
            body,
        })
    }

    /// Recomputes the hash and compares it with the stored one.
    ///
    /// # Errors
    /// [`ChainError::Mismatch`] when they differ; as [`entry_hash`] otherwise.
    pub fn verify_hash(&self) -> Result<(), ChainError> {
        self.verify_with_body(&self.body)
    }

    /// [`JournalEntry::verify_hash`] with `body` (anything that serialises like the
    /// entry's body) in place of the body.
    fn verify_with_body<B: Serialize + ?Sized>(&self, body: &B) -> Result<(), ChainError> {
        let computed = entry_digest(
            &self.prev_hash,
            self.v,
            &self.agent,
            self.seq,
            &self.id,
            &self.at,
            body,
        )?;
        // Compared as the lower-case hex `entry_hash` gives, without making a string.
        let mut hex_digest = [0u8; 64];
        if hex::encode_to_slice(computed, &mut hex_digest).is_ok()
            && hex_digest[..] == *self.hash.as_bytes()
        {
            Ok(())
        } else {
            Err(ChainError::Mismatch {
                seq: self.seq,
                stored: self.hash.clone(),
                computed: hex::encode(computed),
            })
        }
    }

    /// [`JournalEntry::verify_hash`] and, when the hash matches, the entry's JSON (the
    /// bytes `serde_json::to_vec(self)` makes) appended to `out`: the body is serialised
    /// once, for both (central checks and stores every entry it receives this way).
    /// `out` is left as it was when the hash does not match.
    ///
    /// # Errors
    /// The outer error when the entry does not serialise (not in practice: plain fields
    /// and strings); the inner one as [`JournalEntry::verify_hash`]'s.
    pub fn verify_into_json(
        &self,
        out: &mut Vec<u8>,
    ) -> Result<Result<(), ChainError>, serde_json::Error> {
        let raw = serde_json::value::to_raw_value(&self.body)?;
        if let Err(e) = self.verify_with_body(&*raw) {
            return Ok(Err(e));
        }
        self.write_json_with(&raw, out)?;
        Ok(Ok(()))
    }

    /// Appends the entry's JSON to `out` with `body` (the body's JSON) in place of the
    /// body.
    fn write_json_with(
        &self,
        body: &serde_json::value::RawValue,
        out: &mut Vec<u8>,
    ) -> Result<(), serde_json::Error> {
        serde_json::to_writer(
            &mut *out,
            &EntryJson {
                v: self.v,
                agent: &self.agent,
                seq: self.seq,
                id: &self.id,
                at: &self.at,
                prev_hash: &self.prev_hash,
                hash: &self.hash,
                body,
            },
        )
    }

    /// [`JournalEntry::verify_into_json`] with the body's JSON as it arrived: `raw` must be
    /// the text this entry's body was read from. The hash is computed over those bytes
    /// and, when it matches, they are the body `out` gets, so the body is not serialised
    /// again (what the agent hashed is what is kept, fields this version does not know
    /// included). When it does not match, the body as this crate serialises it is tried,
    /// as [`JournalEntry::verify_into_json`] does (a sender that wrote the same body with
    /// other spacing or escapes).
    ///
    /// # Errors
    /// As [`JournalEntry::verify_into_json`].
    pub fn verify_raw_into_json(
        &self,
        raw: &serde_json::value::RawValue,
        out: &mut Vec<u8>,
    ) -> Result<Result<(), ChainError>, serde_json::Error> {
        match self.verify_with_body(raw) {
            Ok(()) => {}
            Err(ChainError::Mismatch { .. }) => return self.verify_into_json(out),
            Err(e) => return Ok(Err(e)),
        }
        self.write_json_with(raw, out)?;
        Ok(Ok(()))
    }
}

// ---------------------------------------------------------------------------------------
// Agent <-> central wire records (HTTP JSON bodies; see docs/delivery.md)
// ---------------------------------------------------------------------------------------

/// `POST /api/v1/agents/{gate}/events`: a batch of journal entries, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestBatch {
    pub v: u16,
    /// Idempotency key of this attempt's batch (a retry may reuse or renew it; entries are
    /// deduplicated by `(agent, seq)` and `id` regardless).
    pub batch_id: Uuid,
    pub agent: GateId,
    pub entries: Vec<JournalEntry>,
}

/// An [`IngestBatch`] read from its JSON with each entry's body kept as well as the text
/// it arrived as, so central hashes and stores the bytes the agent sent
/// ([`JournalEntry::verify_raw_into_json`]) instead of serialising every body again.
#[derive(Debug)]
pub struct ReceivedBatch<'a> {
    pub batch: IngestBatch,
    /// Each entry's body as received, in the order of `batch.entries`.
    pub bodies: Vec<&'a serde_json::value::RawValue>,
}

/// An [`IngestBatch`]'s fields, its entries' bodies as text ([`ReceivedBatch::from_slice`]).
#[derive(Deserialize)]
struct WireBatch<'a> {
    v: u16,
    batch_id: Uuid,
    agent: GateId,
    #[serde(borrow)]
    entries: Vec<WireEntry<'a>>,
}

/// A [`JournalEntry`]'s fields, its body as text.
#[derive(Deserialize)]
struct WireEntry<'a> {
    v: u16,
    agent: GateId,
    seq: u64,
    id: Uuid,
    at: Timestamp,
    prev_hash: String,
    hash: String,
    #[serde(borrow)]
    body: &'a serde_json::value::RawValue,
}

impl<'a> ReceivedBatch<'a> {
    /// Reads `json` as an [`IngestBatch`] (the same fields, the same refusals), keeping each
    /// entry's body text.
    ///
    /// # Errors
    /// JSON that `serde_json::from_slice::<IngestBatch>` refuses; the error's position is
    /// the body's own for a body that is not an event body (a caller that words refusals
    /// reads the JSON again as an [`IngestBatch`] for them).
    pub fn from_slice(json: &'a [u8]) -> Result<Self, serde_json::Error> {
        let wire: WireBatch<'a> = serde_json::from_slice(json)?;
        let mut entries = Vec::with_capacity(wire.entries.len());
        let mut bodies = Vec::with_capacity(wire.entries.len());
        for e in wire.entries {
            let body: EventBody = serde_json::from_str(e.body.get())?;
            entries.push(JournalEntry {
                v: e.v,
                agent: e.agent,
                seq: e.seq,
                id: e.id,
                at: e.at,
                prev_hash: e.prev_hash,
                hash: e.hash,
                body,
            });
            bodies.push(e.body);
        }
        Ok(Self {
            batch: IngestBatch {
                v: wire.v,
                batch_id: wire.batch_id,
                agent: wire.agent,
                entries,
            },
            bodies,
        })
    }
}

/// Central's answer to an [`IngestBatch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestAck {
    pub v: u16,
    /// Every entry with `seq <= acked_through` is durably stored at central; the agent may
    /// advance its acknowledged cursor to here.
    pub acked_through: u64,
    /// Entries newly stored by this request.
    pub stored: u64,
    /// Entries central already had (same seq and same hash).
    pub duplicates: u64,
    /// Integrity problems found (hash-chain break, gap, seq reused with another hash).
    #[serde(default)]
    pub alerts: Vec<String>,
}

/// `POST /api/v1/agents/{gate}/heartbeat`: the agent's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub v: u16,
    pub agent: GateId,
    /// Agent clock at sending; central compares it with its own to estimate offset.
    pub at: Timestamp,
    pub devices: Vec<DeviceHealth>,
    pub replica_seq: u64,
    #[serde(default)]
    pub replica_as_of: Option<Timestamp>,
    /// Highest journal sequence written.
    pub journal_head: u64,
    /// Highest sequence central acknowledged.
    pub acked_seq: u64,
    /// `journal_head - acked_seq`.
    pub backlog: u64,
    /// Time of the oldest unacknowledged entry.
    #[serde(default)]
    pub oldest_unacked_at: Option<Timestamp>,
    /// Agent software version.
    pub version: String,
    /// Lanes closed by a supervisor (empty from agents that predate lane control).
    #[serde(default)]
    pub closed_lanes: Vec<ClosedLane>,
    /// The agent's own measurement of its clock against central's (NTP-style, over its
    /// requests to central). Additive: absent from older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockReport>,
}

/// The response header central stamps on every answer: when it received the request and
/// when it answered, its own clock, `"<received>, <sent>"` (two RFC 3339 timestamps).
/// Agents measure their clock against it NTP-style (docs/clock.md).
pub const TIME_HEADER: &str = "x-aeogate-time";

/// How far the agent's clock is from central's, as the agent measured it (docs/clock.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockReport {
    /// Agent clock minus central clock, in milliseconds: positive when the gate is ahead.
    /// `None` when no exchange with central has been measured yet.
    #[serde(default)]
    pub offset_ms: Option<i64>,
    /// Round-trip delay of the sample the offset comes from (ms); the offset is known to
    /// within half of it.
    #[serde(default)]
    pub delay_ms: Option<i64>,
    /// Whether the agent trusts its clock (offset within its `clock.max_offset`), i.e.
    /// may grant FAST.
    pub trusted: bool,
    /// The host's own synchronisation state (kernel `adjtimex`): `None` when unknown.
    #[serde(default)]
    pub host_synced: Option<bool>,
    /// The bound the agent applies (ms).
    #[serde(default)]
    pub max_offset_ms: i64,
    /// When the sample was taken (agent clock).
    #[serde(default)]
    pub measured_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{format, vec};

    #[test]
    fn reason_codes_round_trip_through_their_text_form() {
        for &c in ReasonCode::ALL {
            assert_eq!(ReasonCode::from_code(c.code()), Some(c));
            let json = serde_json::to_string(&c).expect("serialize");
            assert_eq!(json, format!("\"{}\"", c.code()));
        }
    }

    #[test]
    fn a_reason_without_parties_keeps_its_old_wire_form_and_old_entries_still_parse() {
        let r = Reason::new(ReasonCode::SealMismatch).with("container", "CSQU3054383");
        let json = serde_json::to_value(&r).expect("serialize");
        assert!(json.get("parties").is_none(), "{json}");
        let old = r#"{"code":"PARTY_UNKNOWN","text":"t","detail":{"role":"IMPORTER"}}"#;
        let parsed: Reason = serde_json::from_str(old).expect("an entry written before parties");
        assert!(parsed.parties.is_empty());
        let with = Reason::new(ReasonCode::PartyUnknown).with_party(PartyView {
            role: PartyRole::Importer,
            operator: None,
            name: "Importer SA".into(),
            status: None,
            security: false,
            mra: None,
            contact_point: None,
        });
        let back: Reason =
            serde_json::from_str(&serde_json::to_string(&with).expect("serialize")).expect("parse");
        assert_eq!(back, with);
    }

    #[test]
    fn reason_codes_are_unique_screaming_snake() {
        let mut seen = std::collections::BTreeSet::new();
        for &c in ReasonCode::ALL {
            assert!(seen.insert(c.code()), "duplicate {}", c.code());
            assert!(
                c.code()
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'_')
            );
            assert!(!c.text().is_empty());
        }
    }

    #[test]
    fn lane_names_reject_spaces_and_overlong_values() {
        assert!(LaneId::parse("L1").is_ok());
        assert!(LaneId::parse("").is_err());
        assert!(LaneId::parse("lane 1").is_err());
        assert!(LaneId::parse(&"x".repeat(33)).is_err());
        assert!(serde_json::from_str::<LaneId>("\"a b\"").is_err());
    }

    #[test]
    fn newer_schema_versions_are_refused() {
        assert!(check_version(SCHEMA_VERSION).is_ok());
        assert!(check_version(SCHEMA_VERSION + 1).is_err());
    }

    #[test]
    fn active_record_past_validity_is_expired() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().expect("ts");
        let t1: Timestamp = "2026-06-01T00:00:00Z".parse().expect("ts");
        let rec = RegistryRecord {
            v: SCHEMA_VERSION,
            operator: OperatorId::parse("EU-AEO:DE123456789012345").expect("id"),
            name: "Example GmbH".into(),
            authorisations: vec![Authorisation::Aeof],
            status: AeoStatus::Active,
            status_since: t0,
            valid_from: t0,
            valid_to: Some(t1),
            roles: vec![PartyRole::Importer],
            contact_point: None,
            linked_ids: vec![],
            source: "test".into(),
            as_of: t0,
        };
        assert_eq!(
            rec.status_at("2026-03-01T00:00:00Z".parse().expect("ts")),
            AeoStatus::Active
        );
        assert_eq!(rec.status_at(t1), AeoStatus::Expired);
        assert!(rec.has_security());
    }

    #[test]
    fn an_event_body_reads_the_same_with_its_type_first_or_not() {
        let at: Timestamp = "2026-01-01T00:00:00Z".parse().expect("ts");
        let bodies = [
            EventBody::IntegrityAlert {
                what: "w".into(),
                detail: "d".into(),
            },
            EventBody::ConfigApplied {
                old_policy: "a".into(),
                new_policy: "b".into(),
                changes: vec!["lane L3 added".into()],
            },
            EventBody::LaneControl {
                lane: LaneId::parse("L1").expect("lane"),
                closed: true,
                reason: "works".into(),
                by: "sup".into(),
            },
            EventBody::LaneRefused {
                lane: LaneId::parse("L2").expect("lane"),
                cause: LANE_REFUSED_CLOSED.into(),
                at,
                reads: Vec::new(),
            },
        ];
        for body in bodies {
            let text = serde_json::to_string(&body).expect("json");
            assert!(text.starts_with(r#"{"type":"#), "{text}");
            assert_eq!(
                serde_json::from_str::<EventBody>(&text).expect("first"),
                body
            );
            // The same object with `type` last, and with a field this version does not
            // know: the same body.
            let mut v: serde_json::Value = serde_json::from_str(&text).expect("value");
            let tag = v
                .as_object_mut()
                .and_then(|o| o.remove("type"))
                .expect("tag");
            let mut last = serde_json::to_string(&v).expect("json");
            last.pop();
            last.push_str(&format!(r#","later":1,"type":{tag}}}"#));
            assert_eq!(
                serde_json::from_str::<EventBody>(&last).expect("last"),
                body
            );
            let extra = text.replacen(r#"{"type":"#, r#"{"later":[1,{"a":2}],"type":"#, 1);
            assert_eq!(
                serde_json::from_str::<EventBody>(&extra).expect("extra"),
                body
            );
        }
        // Refused as serde's derive refuses them.
        for bad in [
            r#"{"what":"w","detail":"d"}"#,
            r#"{}"#,
            r#"{"type":"NO_SUCH","what":"w","detail":"d"}"#,
            r#"{"what":"w","type":"NO_SUCH","detail":"d"}"#,
            r#"{"type":"INTEGRITY_ALERT","what":"w"}"#,
            r#"{"what":"w","type":"INTEGRITY_ALERT"}"#,
            r#"{"type":"INTEGRITY_ALERT","what":"w","what":"x","detail":"d"}"#,
            r#"{"what":"w","what":"x","type":"INTEGRITY_ALERT","detail":"d"}"#,
            r#"{"type":"INTEGRITY_ALERT","what":1,"detail":"d"}"#,
            r#"["INTEGRITY_ALERT","w","d"]"#,
            r#""INTEGRITY_ALERT""#,
        ] {
            assert!(serde_json::from_str::<EventBody>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn journal_entries_chain_and_detect_tampering() {
        let gate = GateId::parse("G1").expect("gate");
        let at: Timestamp = "2026-01-01T00:00:00Z".parse().expect("ts");
        let body = EventBody::IntegrityAlert {
            what: "test".into(),
            detail: "one".into(),
        };
        let e1 = JournalEntry::new_chained(
            gate.clone(),
            1,
            Uuid::nil(),
            at,
            GENESIS_HASH.into(),
            body.clone(),
        )
        .expect("e1");
        let e2 =
            JournalEntry::new_chained(gate, 2, Uuid::nil(), at, e1.hash.clone(), body).expect("e2");
        assert!(e1.verify_hash().is_ok() && e2.verify_hash().is_ok());
        assert_ne!(e1.hash, e2.hash, "seq and prev_hash are part of the hash");
        let mut forged = e2.clone();
        forged.body = EventBody::IntegrityAlert {
            what: "test".into(),
            detail: "two".into(),
        };
        assert!(matches!(
            forged.verify_hash(),
            Err(ChainError::Mismatch { seq: 2, .. })
        ));
        let mut bad_prev = e2.clone();
        bad_prev.prev_hash = "zz".into();
        assert_eq!(bad_prev.verify_hash(), Err(ChainError::BadPrevHash));
        // The hash is compared as the lower-case hex it is written in: the same digest in
        // capitals is another hash (the chain compares hashes as text).
        let mut upper = e2.clone();
        upper.hash = upper.hash.to_uppercase();
        assert!(matches!(
            upper.verify_hash(),
            Err(ChainError::Mismatch { ref computed, .. }) if *computed == e2.hash
        ));

        // The check that also writes the entry's JSON says the same, writes the bytes
        // `to_vec` makes when it passes, and nothing when it does not.
        let mut out = b"x".to_vec();
        assert_eq!(e2.verify_into_json(&mut out).expect("json"), Ok(()));
        let mut want = b"x".to_vec();
        want.extend(serde_json::to_vec(&e2).expect("to_vec"));
        assert_eq!(out, want);
        for bad in [&forged, &bad_prev] {
            let mut out = b"x".to_vec();
            assert_eq!(
                bad.verify_into_json(&mut out).expect("json"),
                bad.verify_hash()
            );
            assert_eq!(out, b"x");
        }
    }

    #[test]
    fn a_received_batch_reads_as_the_batch_and_keeps_the_bodies_the_agent_hashed() {
        let at: Timestamp = "2026-01-01T00:00:00Z".parse().expect("ts");
        let gate = GateId::parse("P1-G1").expect("gate");
        let mut prev = String::from(GENESIS_HASH);
        let mut entries = Vec::new();
        for (seq, what) in [(1, "one"), (2, "tw\u{e9}\"o\"")] {
            let body = EventBody::IntegrityAlert {
                what: what.into(),
                detail: "d".into(),
            };
            let e = JournalEntry::new_chained(gate.clone(), seq, Uuid::nil(), at, prev, body)
                .expect("entry");
            prev = e.hash.clone();
            entries.push(e);
        }
        let batch = IngestBatch {
            v: SCHEMA_VERSION,
            batch_id: Uuid::nil(),
            agent: gate.clone(),
            entries,
        };
        let json = serde_json::to_vec(&batch).expect("json");
        let got = ReceivedBatch::from_slice(&json).expect("reads");
        assert_eq!(got.batch, batch, "the same batch as a plain read");
        assert_eq!(got.bodies.len(), 2);
        for (e, raw) in batch.entries.iter().zip(&got.bodies) {
            assert_eq!(raw.get(), serde_json::to_string(&e.body).expect("body"));
            // Checked over the bytes received: the stored JSON is the entry's own.
            let mut out = b"x".to_vec();
            assert_eq!(e.verify_raw_into_json(raw, &mut out).expect("json"), Ok(()));
            let mut want = b"x".to_vec();
            want.extend(serde_json::to_vec(e).expect("to_vec"));
            assert_eq!(out, want);
        }

        // A body written with other spacing and escapes (the same body) still verifies,
        // against the body as this crate writes it, and is stored in that form.
        let e = &batch.entries[1];
        let spaced = serde_json::value::RawValue::from_string(
            r#"{ "type": "INTEGRITY_ALERT", "what": "tw\u00e9\"o\"", "detail": "d" }"#.into(),
        )
        .expect("raw");
        let mut out = Vec::new();
        assert_eq!(
            e.verify_raw_into_json(&spaced, &mut out).expect("json"),
            Ok(())
        );
        assert_eq!(out, serde_json::to_vec(e).expect("to_vec"));

        // A body that is not the one hashed is refused whichever way it is written, and
        // nothing is written; a field this version does not know is kept when the agent
        // hashed it.
        let mut forged: serde_json::Value = serde_json::from_slice(&json).expect("value");
        forged["entries"][1]["body"]["what"] = "three".into();
        let forged = serde_json::to_vec(&forged).expect("json");
        let forged = ReceivedBatch::from_slice(&forged).expect("reads");
        let mut out = b"x".to_vec();
        assert!(matches!(
            forged.batch.entries[1]
                .verify_raw_into_json(forged.bodies[1], &mut out)
                .expect("json"),
            Err(ChainError::Mismatch { seq: 2, .. })
        ));
        assert_eq!(out, b"x");
        let later = serde_json::value::RawValue::from_string(
            r#"{"type":"INTEGRITY_ALERT","what":"one","detail":"d","later":1}"#.into(),
        )
        .expect("raw");
        let newer = JournalEntry {
            hash: entry_hash(
                GENESIS_HASH,
                SCHEMA_VERSION,
                &gate,
                1,
                &Uuid::nil(),
                &at,
                &*later,
            )
            .expect("hash"),
            ..batch.entries[0].clone()
        };
        let mut out = Vec::new();
        assert_eq!(
            newer.verify_raw_into_json(&later, &mut out).expect("json"),
            Ok(())
        );
        let stored: serde_json::Value = serde_json::from_slice(&out).expect("stored");
        assert_eq!(stored["body"]["later"], 1);
        assert!(
            newer.verify_hash().is_err(),
            "the body as read, without the field, is not what was hashed"
        );

        // What a plain read refuses, this read refuses.
        for bad in [
            &br#"{"v":1}"#[..],
            br#"{"v":1,"batch_id":"00000000-0000-0000-0000-000000000000","agent":"P1-G1","entries":"no"}"#,
            &json[..json.len() / 2],
        ] {
            assert!(serde_json::from_slice::<IngestBatch>(bad).is_err());
            assert!(ReceivedBatch::from_slice(bad).is_err());
        }
        let mut unknown: serde_json::Value = serde_json::from_slice(&json).expect("value");
        unknown["entries"][0]["body"]["type"] = "NO_SUCH_EVENT".into();
        let unknown = serde_json::to_vec(&unknown).expect("json");
        assert!(serde_json::from_slice::<IngestBatch>(&unknown).is_err());
        assert!(ReceivedBatch::from_slice(&unknown).is_err());
    }

    #[test]
    fn lane_state_keeps_its_documented_wire_form() {
        // The example of docs/integration.md, "Lane topics".
        let text = r#"{"lane":"L1","transaction_id":"01935a4e-7c1e-7d3a-9a51-6f0c2b1d9e47","decision":"INSPECT","route":"Inspection bay A","reasons":["SEAL_MISMATCH","AEO_PRIORITY_INSPECTION"],"priority":true,"at":"2026-03-01T10:00:04.512Z","officer_override":false}"#;
        let state: LaneState = serde_json::from_str(text).expect("parses");
        assert_eq!(state.decision, LaneSignal::Decided(LaneDecision::Inspect));
        assert_eq!(
            state.reasons,
            [ReasonCode::SealMismatch, ReasonCode::AeoPriorityInspection]
        );
        assert_eq!(serde_json::to_string(&state).expect("json"), text);
    }

    #[test]
    fn a_waiting_lane_state_keeps_its_documented_wire_form() {
        // docs/decisions.md, "Between trucks": the safe state between trucks.
        let lane = LaneId::parse("L1").expect("lane");
        let at: Timestamp = "2026-06-01T12:00:05Z".parse().expect("time");
        let tx = Uuid::from_u128(0x0193_5a4e_7c1e_7d3a_9a51_6f0c_2b1d_9e47);
        let waiting = LaneState::waiting(&lane, Some(tx), at);
        let text = r#"{"lane":"L1","transaction_id":"01935a4e-7c1e-7d3a-9a51-6f0c2b1d9e47","decision":"WAITING","route":"","reasons":[],"priority":false,"at":"2026-06-01T12:00:05Z","officer_override":false}"#;
        assert_eq!(serde_json::to_string(&waiting).expect("json"), text);
        let back: LaneState = serde_json::from_str(text).expect("parses");
        assert_eq!(back, waiting);
        assert!(back.is_waiting());
        assert_eq!(back.decision.decided(), None);

        let next = LaneState::waiting(&lane, None, at);
        let json = serde_json::to_value(&next).expect("json");
        assert_eq!(json["transaction_id"], serde_json::Value::Null);
        assert_eq!(json["decision"], "WAITING");
    }

    #[test]
    fn a_closed_lane_state_is_red_on_the_sign_and_keeps_its_wire_form() {
        let lane = LaneId::parse("L2").expect("lane");
        let at: Timestamp = "2026-06-01T12:00:05Z".parse().expect("time");
        let closed = LaneState::closed(&lane, at);
        let text = r#"{"lane":"L2","transaction_id":null,"decision":"CLOSED","route":"","reasons":[],"priority":false,"at":"2026-06-01T12:00:05Z","officer_override":false}"#;
        assert_eq!(serde_json::to_string(&closed).expect("json"), text);
        assert_eq!(
            serde_json::from_str::<LaneState>(text).expect("parses"),
            closed
        );
        assert_eq!(closed.decision.decided(), None);
        assert!(!closed.is_waiting());
        let sign = SignState::from_lane_state(&closed);
        assert_eq!(
            (sign.open, sign.light, sign.decision),
            (false, SignLight::Red, LaneSignal::Closed)
        );
    }

    #[test]
    fn lane_control_bodies_keep_their_wire_form() {
        let lane = LaneId::parse("L2").expect("lane");
        let at: Timestamp = "2026-06-01T12:00:05Z".parse().expect("time");
        let control = EventBody::LaneControl {
            lane: lane.clone(),
            closed: true,
            reason: "resurfacing".into(),
            by: "sup1".into(),
        };
        assert_eq!(
            serde_json::to_string(&control).expect("json"),
            r#"{"type":"LANE_CONTROL","lane":"L2","closed":true,"reason":"resurfacing","by":"sup1"}"#
        );
        let refused = EventBody::LaneRefused {
            lane,
            cause: LANE_REFUSED_CLOSED.into(),
            at,
            reads: vec![],
        };
        assert_eq!(
            serde_json::to_string(&refused).expect("json"),
            r#"{"type":"LANE_REFUSED","lane":"L2","cause":"LANE_CLOSED","at":"2026-06-01T12:00:05Z","reads":[]}"#
        );
    }

    #[test]
    fn a_heartbeat_without_closed_lanes_still_parses() {
        let text = r#"{"v":1,"agent":"GATE-1","at":"2026-06-01T12:00:05Z","devices":[],"replica_seq":0,"journal_head":0,"acked_seq":0,"backlog":0,"version":"0.1.0"}"#;
        let hb: Heartbeat = serde_json::from_str(text).expect("an older agent's heartbeat");
        assert!(hb.closed_lanes.is_empty());
    }

    #[test]
    fn sign_state_carries_no_reasons_and_keeps_its_documented_wire_form() {
        // docs/integration.md, "Lane topics": the sign's retained state.
        let text = r#"{"lane":"L1","transaction_id":"01935a4e-7c1e-7d3a-9a51-6f0c2b1d9e47","decision":"INSPECT","route":"Inspection bay A","reasons":["SEAL_MISMATCH"],"priority":true,"at":"2026-03-01T10:00:04.512Z","officer_override":false}"#;
        let state: LaneState = serde_json::from_str(text).expect("parses");
        let sign = SignState::from_lane_state(&state);
        let json = serde_json::to_string(&sign).expect("json");
        assert_eq!(
            json,
            r#"{"lane":"L1","open":true,"decision":"INSPECT","light":"RED","route":"Inspection bay A","transaction_id":"01935a4e-7c1e-7d3a-9a51-6f0c2b1d9e47","at":"2026-03-01T10:00:04.512Z"}"#
        );
        assert!(!json.contains("SEAL_MISMATCH") && !json.contains("priority"));
        let closed = SignState::closed(&state.lane, state.at);
        assert_eq!((closed.open, closed.light), (false, SignLight::Red));
        let offline = SignState::offline(&state.lane, state.at);
        assert_eq!(
            serde_json::to_string(&offline).expect("json"),
            r#"{"lane":"L1","open":false,"decision":"OFFLINE","light":"RED","route":"","transaction_id":null,"at":"2026-03-01T10:00:04.512Z"}"#
        );
        assert!(
            serde_json::from_str::<SignState>(text).is_err(),
            "a full lane state is not a sign state"
        );
    }

    #[test]
    fn lane_signal_words_round_trip_and_others_are_refused() {
        for (signal, word) in [
            (LaneSignal::Decided(LaneDecision::Fast), "FAST"),
            (LaneSignal::Decided(LaneDecision::Standard), "STANDARD"),
            (LaneSignal::Decided(LaneDecision::Inspect), "INSPECT"),
            (LaneSignal::Waiting, "WAITING"),
            (LaneSignal::Closed, "CLOSED"),
            (LaneSignal::Offline, "OFFLINE"),
        ] {
            assert_eq!(signal.as_str(), word);
            assert_eq!(LaneSignal::parse(word), Some(signal));
            let json = serde_json::to_string(&signal).expect("json");
            assert_eq!(json, format!("\"{word}\""));
            assert_eq!(
                serde_json::from_str::<LaneSignal>(&json).expect("parses"),
                signal
            );
        }
        assert_eq!(
            LaneSignal::from(LaneDecision::Inspect).decided(),
            Some(LaneDecision::Inspect)
        );
        assert_eq!(LaneSignal::Offline.decided(), None);
        for bad in ["\"waiting\"", "\"offline\"", "\"OPEN\"", "\"\"", "3"] {
            assert!(
                serde_json::from_str::<LaneSignal>(bad).is_err(),
                "{bad} is not a lane signal"
            );
        }
    }
}
