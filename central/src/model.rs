//! Central's own records: what it keeps about agents, stored events, gate health,
//! integrity alerts, cases, audit entries and the answers of the query API.
//!
//! These are central-side records (the shared wire records live in `protocol::schema`).
//! They are stored as JSON behind a version byte (see [`crate::store`]) and served as JSON.

use std::collections::BTreeMap;

use jiff::Timestamp;
use protocol::i18n::Lang;
use protocol::schema::{
    Decision, GateId, GateTransaction, Heartbeat, JournalEntry, LaneDecision, LaneId,
    OfficerAction, ReasonCode,
};
use protocol::seal::SealNumber;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// SHA-256 of an agent token or a session token.
///
/// Tokens are 32 random bytes, so a plain (unsalted, fast) hash is enough: nobody can
/// enumerate 2^256 candidates, which is the attack salting and slow hashing defend
/// against for low-entropy passwords. A stolen store therefore yields no usable token.
pub type TokenHash = [u8; 32];

/// The gate an agent token belongs to, and its replication scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub gate: GateId,
    /// Port of entry the gate belongs to (what the agent may replicate).
    pub port: String,
    pub issued_at: Timestamp,
    pub issued_by: String,
    /// Hex SHA-256 of the DER of the client certificate this agent must present (mutual
    /// TLS), when one was registered with the token; `None`: the token alone.
    #[serde(default)]
    pub cert_sha256: Option<String>,
    /// When the token was revoked (`central agent revoke`); refused from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Timestamp>,
    /// End of the grace period after a rotation (`central agent rotate`): the old token
    /// is accepted until then, beside the new one, and refused after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

/// Why an agent token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    Revoked(Timestamp),
    /// Replaced by a rotation whose grace period ended at this time.
    Expired(Timestamp),
}

impl AgentRecord {
    /// `Some` when the token must be refused at `now`: revoked, or past the grace period
    /// of a rotation.
    #[must_use]
    pub fn refusal(&self, now: Timestamp) -> Option<TokenRefusal> {
        if let Some(at) = self.revoked_at {
            return Some(TokenRefusal::Revoked(at));
        }
        self.expires_at
            .filter(|until| *until <= now)
            .map(TokenRefusal::Expired)
    }

    /// Whether the token is neither revoked nor past its grace period at `now`.
    #[must_use]
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.refusal(now).is_none()
    }
}

/// One journal entry as central stored it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub entry: JournalEntry,
    /// Central's clock when the entry was stored.
    pub received_at: Timestamp,
    /// `false` when the entry's `prev_hash` did not match the stored predecessor (an
    /// integrity alert was raised; the entry is kept as evidence).
    pub chain_ok: bool,
    /// `true` when the entry named another gate or another gate's transaction: kept as
    /// evidence with an integrity alert, without effect (`crate::ingest`, rule 5).
    #[serde(default)]
    pub refused: bool,
}

/// A cursor-paged answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; `None` at the end.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Every item of a cursor-paged listing, in order: `fetch(cursor)` returns the page
    /// after `cursor` (`None`: the first page). Reads at most `max_pages` pages.
    ///
    /// # Errors
    /// The first error of `fetch`.
    pub fn collect_all<E>(
        max_pages: usize,
        mut fetch: impl FnMut(Option<String>) -> Result<Page<T>, E>,
    ) -> Result<Vec<T>, E> {
        let mut out = Vec::new();
        let mut cursor = None;
        for _ in 0..max_pages {
            let page = fetch(cursor.take())?;
            out.extend(page.items);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        Ok(out)
    }
}

/// Which events to list. Filters combine with AND; time bounds apply to the entry's `at`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    pub gate: Option<GateId>,
    pub lane: Option<LaneId>,
    pub container: Option<String>,
    pub decision: Option<LaneDecision>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub cursor: Option<String>,
    pub limit: usize,
}

/// Latest health of a gate, as of its last heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateHealth {
    pub heartbeat: Heartbeat,
    pub received_at: Timestamp,
    /// Central's receive time minus the agent's send time, in milliseconds. Includes the
    /// network delay, so it over-estimates an agent clock that is behind.
    pub clock_offset_ms: i64,
}

/// A gate as `GET /api/v1/gates` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateStatus {
    pub gate: GateId,
    pub port: String,
    /// `true` when no heartbeat arrived within the configured `stale_after` (or never).
    pub stale: bool,
    pub last_heartbeat: Option<GateHealth>,
    /// Every journal entry `1..=acked_through` is stored.
    pub acked_through: u64,
    pub events_stored: u64,
    /// When the gate's tokens were revoked and none is left usable (`None`: the gate has a
    /// usable token, or its tokens were only rotated).
    #[serde(default)]
    pub revoked_at: Option<Timestamp>,
    /// The last configuration change the gate's agent applied live (its latest
    /// `CONFIG_APPLIED` entry), if any.
    #[serde(default)]
    pub last_config: Option<ConfigChange>,
}

/// A configuration change applied live at a gate (an agent's `CONFIG_APPLIED` entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigChange {
    /// The journal entry.
    pub seq: u64,
    /// When the agent applied it.
    pub at: Timestamp,
    pub old_policy: String,
    pub new_policy: String,
    /// One line per change, e.g. `lane L3 added`.
    pub changes: Vec<String>,
}

/// What kind of integrity problem was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertKind {
    /// The entry's hash does not match its content.
    HashMismatch,
    /// `prev_hash` differs from the stored hash of the previous entry.
    ChainBreak,
    /// A sequence number was sent again with a different hash.
    SeqReused,
    /// An entry id was sent again under another sequence number.
    IdReused,
    /// Entries are missing below stored ones for longer than the configured period.
    Gap,
    /// The agent itself reported an integrity alert (e.g. a refused registry batch).
    AgentReported,
    /// An entry's body names a gate other than the gate that sent it (kept, no effect).
    ForeignGate,
    /// An entry names a gate transaction another gate journaled first (kept, no effect).
    ForeignTransaction,
    /// An officer action names a transaction its gate journaled on another lane (kept,
    /// no effect).
    ForeignLane,
    /// An entry's agent time runs back more than [`crate::ingest::TIME_BACKWARDS_SLACK`]
    /// from the entry before it in the gate's chain (by sequence): the gate's clock was
    /// stepped back, so its times are not evidence of order (stored, with effect).
    TimeBackwards,
}

impl AlertKind {
    /// `SCREAMING_SNAKE` form.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HashMismatch => "HASH_MISMATCH",
            Self::ChainBreak => "CHAIN_BREAK",
            Self::SeqReused => "SEQ_REUSED",
            Self::IdReused => "ID_REUSED",
            Self::Gap => "GAP",
            Self::AgentReported => "AGENT_REPORTED",
            Self::ForeignGate => "FOREIGN_GATE",
            Self::ForeignTransaction => "FOREIGN_TRANSACTION",
            Self::ForeignLane => "FOREIGN_LANE",
            Self::TimeBackwards => "TIME_BACKWARDS",
        }
    }
}

/// An integrity alert, stored once per (gate, seq, kind).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub id: u64,
    pub gate: GateId,
    pub seq: u64,
    pub kind: AlertKind,
    pub detail: String,
    pub at: Timestamp,
    /// The case opened for it.
    pub case_id: Option<u64>,
}

/// Life-cycle state of a case: `OPEN → ACKNOWLEDGED → RESOLVED` (acknowledging may be
/// skipped; a resolved case is final).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CaseState {
    Open,
    Acknowledged,
    Resolved,
}

impl CaseState {
    /// `SCREAMING_SNAKE` form.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "OPEN",
            Self::Acknowledged => "ACKNOWLEDGED",
            Self::Resolved => "RESOLVED",
        }
    }

    /// Parses the `SCREAMING_SNAKE` form (case-insensitive).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "OPEN" => Some(Self::Open),
            "ACKNOWLEDGED" => Some(Self::Acknowledged),
            "RESOLVED" => Some(Self::Resolved),
            _ => None,
        }
    }
}

/// How a case was closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CaseOutcome {
    /// The seal was checked and is intact and matching.
    SealVerifiedIntact,
    /// The seal was replaced; the new seal number is recorded.
    SealReplaced { new_seal: SealNumber },
    /// The discrepancy is real (follow-up happens in the customs case system).
    DiscrepancyConfirmed,
    /// A reader misread; nothing was wrong with the container.
    FalseRead,
}

/// Why a case exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CaseSubject {
    /// A decision with a seal or container exception.
    SealException {
        transaction_id: Uuid,
        reasons: Vec<ReasonCode>,
    },
    /// An integrity alert (central-detected or agent-reported).
    Integrity { alert_id: u64, kind: AlertKind },
}

/// One line of a case's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseEvent {
    pub at: Timestamp,
    /// Staff user, or `central` / `agent:GATE` for automatic entries.
    pub actor: String,
    pub what: String,
}

/// A seal-exception or integrity case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    pub id: u64,
    pub state: CaseState,
    pub subject: CaseSubject,
    pub gate: GateId,
    pub lane: Option<LaneId>,
    pub opened_at: Timestamp,
    pub updated_at: Timestamp,
    pub assignee: Option<String>,
    pub outcome: Option<CaseOutcome>,
    pub notes: Vec<CaseEvent>,
    pub history: Vec<CaseEvent>,
}

impl Case {
    /// Transaction the case is about, if any.
    #[must_use]
    pub fn transaction_id(&self) -> Option<Uuid> {
        match &self.subject {
            CaseSubject::SealException { transaction_id, .. } => Some(*transaction_id),
            CaseSubject::Integrity { .. } => None,
        }
    }

    /// Reason codes of the subject (integrity cases have none).
    #[must_use]
    pub fn reasons(&self) -> &[ReasonCode] {
        match &self.subject {
            CaseSubject::SealException { reasons, .. } => reasons,
            CaseSubject::Integrity { .. } => &[],
        }
    }
}

/// Which cases to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaseQuery {
    pub state: Option<CaseState>,
    pub gate: Option<GateId>,
    pub lane: Option<LaneId>,
    pub reason: Option<ReasonCode>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub cursor: Option<String>,
    pub limit: usize,
}

/// A staff action on a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CaseAction {
    Acknowledge {
        #[serde(default)]
        note: Option<String>,
    },
    Assign {
        assignee: String,
        #[serde(default)]
        note: Option<String>,
    },
    Resolve {
        outcome: CaseOutcome,
        #[serde(default)]
        note: Option<String>,
    },
}

/// A case with everything staff need to work it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseDetail {
    pub case: Case,
    pub transaction: Option<GateTransaction>,
    pub decision: Option<Decision>,
    /// Consignments declared for the transaction's containers, as the registry has them now.
    pub declared: Vec<protocol::schema::Consignment>,
    /// Inspection results officers recorded at the gate for this transaction.
    pub officer_results: Vec<OfficerAction>,
    /// Lane overrides officers made at the gate for this transaction (from its own lane;
    /// another lane's are refused at ingest, `FOREIGN_LANE`).
    #[serde(default)]
    pub overrides: Vec<OfficerAction>,
    pub alert: Option<Alert>,
}

impl CaseDetail {
    /// `case` alone: no transaction, decision, declaration, officer action or alert found
    /// for it yet.
    #[must_use]
    pub fn of(case: Case) -> Self {
        CaseDetail {
            case,
            transaction: None,
            decision: None,
            declared: Vec::new(),
            officer_results: Vec::new(),
            overrides: Vec::new(),
            alert: None,
        }
    }
}

/// One audited state change: who did what, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: u64,
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    pub detail: String,
}

/// Who made an audited change, and when: the actor and time of its audit entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp<'a> {
    pub actor: &'a str,
    pub at: Timestamp,
}

impl<'a> Stamp<'a> {
    /// `actor`'s change at `at`.
    #[must_use]
    pub fn new(actor: &'a str, at: Timestamp) -> Self {
        Self { actor, at }
    }

    /// The audit entry of this change: `action`, `detail` says more.
    #[must_use]
    pub fn note<'b>(&self, action: &'b str, detail: &'b str) -> AuditNote<'b>
    where
        'a: 'b,
    {
        AuditNote::new(self.actor, action, detail, self.at)
    }
}

/// An audit entry to append: who did what, with what detail, when. The store gives it
/// its id ([`AuditNote::entry`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditNote<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub detail: &'a str,
    pub at: Timestamp,
}

impl<'a> AuditNote<'a> {
    /// `actor` did `action` (`detail` says more) at `at`.
    #[must_use]
    pub fn new(actor: &'a str, action: &'a str, detail: &'a str, at: Timestamp) -> Self {
        Self {
            actor,
            action,
            detail,
            at,
        }
    }

    /// The entry stored for this note under `id`.
    #[must_use]
    pub fn entry(&self, id: u64) -> AuditEntry {
        AuditEntry {
            id,
            at: self.at,
            actor: self.actor.to_owned(),
            action: self.action.to_owned(),
            detail: self.detail.to_owned(),
        }
    }
}

/// Decision counts for one gate and hour.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HourStats {
    pub gate: Option<GateId>,
    /// Start of the hour (UTC).
    pub hour: Option<Timestamp>,
    pub fast: u64,
    pub standard: u64,
    pub inspect: u64,
    /// Decisions that were seal or container exceptions.
    pub exceptions: u64,
    /// `exceptions / (fast + standard + inspect)`, 0 when there were no decisions.
    pub exception_rate: f64,
}

/// Totals for the status line: `GET /api/v1/stats/summary`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Journal entries stored, per gate.
    pub events_per_gate: BTreeMap<String, u64>,
    /// `acked_through` per gate.
    pub acked_through_per_gate: BTreeMap<String, u64>,
    /// Decisions by outcome (`FAST`, `STANDARD`, `INSPECT`).
    pub decisions: BTreeMap<String, u64>,
    pub cases_open: u64,
    pub cases_acknowledged: u64,
    pub cases_resolved: u64,
    pub alerts: u64,
    /// Latest registry change sequence.
    pub registry_seq: u64,
    pub operators: u64,
    pub consignments: u64,
}

/// A staff user (password stored as an argon2 PHC string).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffUser {
    pub name: String,
    /// [`Role::as_str`] of the user's role (older stores may hold legacy names, which
    /// [`Role::parse`] still reads).
    pub role: String,
    pub password_phc: String,
    pub created_at: Timestamp,
    /// Language of the dashboard for this user (English when never chosen).
    #[serde(default)]
    pub lang: Lang,
    /// A disabled user cannot log in, and their open sessions are refused from the next
    /// request on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// For a company user (role [`crate::portal::COMPANY_ROLE`]): the operator id of the
    /// company the account belongs to; the portal shows that company's data only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
}

/// What a staff member at central may do.
///
/// Analysts watch the exceptions and work cases; admins also change the AEO registry
/// (suspend, reinstate, revoke) and manage users. Least privilege: a role that is not
/// recognised grants nothing (see [`Role::parse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Views everything; acknowledges, assigns and resolves cases.
    Analyst,
    /// An analyst who may also change operators' status and manage users.
    Admin,
}

impl Role {
    /// Every role, least privileged first.
    pub const ALL: [Role; 2] = [Role::Analyst, Role::Admin];

    /// `analyst` or `admin`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Analyst => "analyst",
            Self::Admin => "admin",
        }
    }

    /// Parses a role name (case-insensitive). The names used before roles were fixed are
    /// still read: `officer` is an analyst and `supervisor` an admin.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "analyst" | "officer" => Some(Self::Analyst),
            "admin" | "supervisor" => Some(Self::Admin),
            _ => None,
        }
    }

    /// Whether the role may change an operator's AEO status.
    #[must_use]
    pub fn may_change_registry(self) -> bool {
        self == Self::Admin
    }

    /// Whether the role may revoke and rotate agent tokens and manage staff users.
    #[must_use]
    pub fn may_manage_credentials(self) -> bool {
        self == Self::Admin
    }
}

impl aeogate_web::session::Role for Role {
    const ALL: &'static [Self] = &Role::ALL;

    fn as_str(self) -> &'static str {
        Role::as_str(self)
    }

    /// Also reads the legacy names ([`Role::parse`]).
    fn parse(s: &str) -> Option<Self> {
        Role::parse(s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A login session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user: String,
    pub role: String,
    pub expires_at: Timestamp,
}
