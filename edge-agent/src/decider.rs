//! The lane decision: a pure function of (gate transaction, replica view, policy, time).
//!
//! [`decide`] never does I/O and never fails: whatever is missing becomes a reason.
//! The rules (issue 4; DOMAIN §1.4–1.7, §3, §5.3), stated fully in `docs/decisions.md`:
//!
//! - **INSPECT** on a seal exception (`SEAL_MISMATCH`, `SEAL_MISSING`, `ESEAL_OPENED`,
//!   `ESEAL_TAMPERED`), a container exception (`CONTAINER_MISMATCH`,
//!   `CONTAINER_READ_CONFLICT`), a customs hold (`RISK_HOLD`) or random selection
//!   (`RANDOM_SELECTION`). An AEO shipment sent to INSPECT gets `priority` and
//!   `AEO_PRIORITY_INSPECTION`, and its party views carry the contact points.
//! - **FAST** when nothing blocks it: every read container has advance data, every
//!   declared seal of those containers was read and matches, declared e-seals are intact,
//!   every party in the required roles is active with the security component in a home
//!   programme or one recognised by an MRA in force, and the replica is fresher than the
//!   staleness bound. The reason is then `ALL_CHECKS_PASSED` (plus informational ones).
//! - **STANDARD** otherwise.
//!
//! Every applicable reason is listed, INSPECT reasons first, then STANDARD reasons, then
//! informational ones, so an officer reads the most serious first.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use jiff::Timestamp;
use protocol::container::ContainerNumber;
use protocol::operator::{OperatorId, Programme};
use protocol::schema::{
    AeoStatus, Consignment, Decision, ESealState, GateTransaction, LaneDecision, MraRecord, Party,
    PartyRole, PartyView, ReadSource, ReadValue, Reason, ReasonCode, ReplicaFreshness,
    SCHEMA_VERSION,
};
use protocol::seal::{ESealId, SealNumber};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::replica::freshness;
pub use crate::replica::{MemoryReplica, ReplicaView};

/// An e-seal battery at or below this percentage is reported as low (when the policy
/// asks for it). ISO 18185-2 only specifies a battery status indicator, not a level;
/// readers that report a percentage are mapped against this threshold.
pub const ESEAL_LOW_BATTERY_PCT: u8 = 20;

/// Where each lane decision sends the truck (the text on the lane sign; a lane's
/// `routes` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    pub fast: String,
    pub standard: String,
    pub inspect: String,
}

impl Routes {
    /// The route of `decision`.
    #[must_use]
    pub fn of(&self, decision: LaneDecision) -> &str {
        match decision {
            LaneDecision::Fast => &self.fast,
            LaneDecision::Standard => &self.standard,
            LaneDecision::Inspect => &self.inspect,
        }
    }
}

/// Decision policy (the `[policy]` section of the configuration).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Name shown in every decision (with a hash of the settings, see [`Policy::id`]).
    pub name: String,
    /// A replica older than this never yields FAST (default 24 h: MRA partners exchange
    /// membership data about every 24 h, DOMAIN §1.4).
    pub staleness_bound: Duration,
    /// Roles whose parties must all be certified for FAST (default importer and carrier).
    pub required_roles: Vec<PartyRole>,
    /// Programmes administered where this gate is (default EU AEO).
    pub home_programmes: Vec<Programme>,
    /// Random inspection probability for AEO shipments; in (0, 1), never zero.
    pub random_rate_aeo: f64,
    /// Random inspection probability for all other traffic; in (0, 1).
    pub random_rate_other: f64,
    /// Secret for the keyed hash that draws random selection.
    pub random_key: String,
    /// List `ESEAL_LOW_BATTERY` (informational) when a declared e-seal reports a low
    /// battery.
    pub eseal_low_battery_is_reason: bool,
}

impl Policy {
    /// Name plus a short hash of every setting (the random key enters only through the
    /// hash), so an audit can tell which policy decided: `port-a-2026#3f9c01ab`.
    #[must_use]
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"aeogate-policy-v1\0");
        h.update(self.name.as_bytes());
        h.update([0]);
        h.update(self.staleness_bound.as_millis().to_be_bytes());
        for r in &self.required_roles {
            h.update(r.as_str().as_bytes());
            h.update([0]);
        }
        h.update([1]);
        for p in &self.home_programmes {
            h.update(p.code().as_bytes());
            h.update([0]);
        }
        h.update(self.random_rate_aeo.to_bits().to_be_bytes());
        h.update(self.random_rate_other.to_bits().to_be_bytes());
        h.update(Sha256::digest(self.random_key.as_bytes()));
        h.update([u8::from(self.eseal_low_battery_is_reason)]);
        let digest = h.finalize();
        format!("{}#{}", self.name, hex::encode(&digest[..4]))
    }
}

/// The random draw for a transaction, uniform in [0, 1).
///
/// `u = first 8 bytes (big-endian) of SHA-256("aeogate-random-v1" ‖ 0x00 ‖ len(key) as u32
/// big-endian ‖ key ‖ transaction id (16 bytes)) / 2^64`. The transaction is selected when
/// `u < rate` for its class. Anyone holding the key can recompute a draw in an audit;
/// without the key the draws cannot be predicted.
#[must_use]
pub fn random_draw(key: &str, transaction_id: &Uuid) -> f64 {
    let mut h = Sha256::new();
    h.update(b"aeogate-random-v1\0");
    let len = u32::try_from(key.len()).unwrap_or(u32::MAX);
    h.update(len.to_be_bytes());
    h.update(key.as_bytes());
    h.update(transaction_id.as_bytes());
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    // 53 significant bits give an exact f64 in [0, 1).
    let x = u64::from_be_bytes(first) >> 11;
    #[allow(clippy::cast_precision_loss)]
    let u = x as f64 / (1u64 << 53) as f64;
    u
}

// ---------------------------------------------------------------------------------------
// The decision
// ---------------------------------------------------------------------------------------

/// How a reason affects the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Weight {
    Inspect,
    Standard,
    Info,
}

/// What each reason code does to the outcome (docs/decisions.md has the same table).
#[must_use]
pub fn outcome_of(code: ReasonCode) -> Option<LaneDecision> {
    match weight(code) {
        Weight::Inspect => Some(LaneDecision::Inspect),
        Weight::Standard => Some(LaneDecision::Standard),
        Weight::Info => None,
    }
}

fn weight(code: ReasonCode) -> Weight {
    use ReasonCode as R;
    match code {
        R::SealMismatch
        | R::SealMissing
        | R::ESealOpened
        | R::ESealTampered
        | R::ContainerMismatch
        | R::ContainerReadConflict
        | R::RiskHold
        | R::RandomSelection => Weight::Inspect,
        R::ContainerUnread
        | R::NoAdvanceData
        | R::PartyMissing
        | R::PartyUnknown
        | R::PartySuspended
        | R::PartyRevoked
        | R::PartyWithdrawn
        | R::PartyExpired
        | R::PartyNoSecurity
        | R::MraNotRecognised
        | R::ReplicaStale
        | R::UnreadableRead
        | R::JournalUnavailable
        | R::ReplicaUnreadable
        | R::AgentRestarted
        | R::ClockUntrusted => Weight::Standard,
        R::AllChecksPassed
        | R::ESealLowBattery
        | R::MraRecognised
        | R::AeoPriorityInspection
        | R::OfficerOverride => Weight::Info,
    }
}

/// The container number a read names, if any: an OCR/manual container read, or an RFID
/// tag carrying a BIC URI (`urn:epc:id:bic:…`, TDS 2.0).
fn container_of(v: &ReadValue) -> Option<ContainerNumber> {
    match v {
        ReadValue::Container { number } => Some(*number),
        ReadValue::Tag { uri, .. } => uri
            .strip_prefix("urn:epc:id:bic:")
            .and_then(|s| ContainerNumber::parse(s).ok()),
        _ => None,
    }
}

fn join<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let mut s = String::new();
    for (i, x) in items.into_iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{x}");
    }
    s
}

/// How one party fared.
struct PartyCheck {
    view: PartyView,
    certified: bool,
}

fn check_party(
    party: &Party,
    replica: &dyn ReplicaView,
    mras: &[MraRecord],
    policy: &Policy,
    now: Timestamp,
    reasons: &mut Vec<Reason>,
    required: bool,
) -> PartyCheck {
    let mut view = PartyView {
        role: party.role,
        operator: party.operator.clone(),
        name: party.name.clone(),
        status: None,
        security: false,
        mra: None,
        contact_point: None,
    };
    let mut push = |r: Reason| {
        if required {
            reasons.push(r);
        }
    };
    let base = |code| {
        Reason::new(code)
            .with("role", party.role.as_str())
            .with("name", &party.name)
    };
    let Some(id) = &party.operator else {
        push(base(ReasonCode::PartyUnknown).with("operator", "none declared"));
        return PartyCheck {
            view,
            certified: false,
        };
    };
    let rec = match replica.try_operator(id) {
        Ok(Some(rec)) => rec,
        Ok(None) => {
            push(base(ReasonCode::PartyUnknown).with("operator", id));
            return PartyCheck {
                view,
                certified: false,
            };
        }
        // The record is there but cannot be read: unverifiable, not unknown.
        Err(e) => {
            push(
                base(ReasonCode::ReplicaUnreadable)
                    .with("operator", id)
                    .with("error", e),
            );
            return PartyCheck {
                view,
                certified: false,
            };
        }
    };
    let status = rec.status_at(now);
    view.status = Some(status);
    view.security = rec.has_security();
    view.contact_point = rec.contact_point.clone();
    let mut certified = true;
    let status_code = match status {
        AeoStatus::Active => None,
        AeoStatus::Suspended => Some(ReasonCode::PartySuspended),
        AeoStatus::Revoked => Some(ReasonCode::PartyRevoked),
        AeoStatus::Withdrawn => Some(ReasonCode::PartyWithdrawn),
        AeoStatus::Expired => Some(ReasonCode::PartyExpired),
    };
    if let Some(code) = status_code {
        certified = false;
        let mut r = base(code)
            .with("operator", &rec.operator)
            .with("status", status.as_str())
            .with("status_since", rec.status_since);
        if let Some(to) = rec.valid_to {
            r = r.with("valid_to", to);
        }
        push(r);
    }
    if !view.security {
        certified = false;
        push(
            base(ReasonCode::PartyNoSecurity)
                .with("operator", &rec.operator)
                .with(
                    "authorisations",
                    join(
                        rec.authorisations
                            .iter()
                            .map(|a| format!("{a:?}").to_uppercase()),
                    ),
                ),
        );
    }
    // The programme the record belongs to (a linked id may have matched).
    let programme = rec.operator.programme();
    if !policy.home_programmes.contains(&programme) {
        let recognised = mras.iter().find(|m| {
            m.partner == programme
                && policy.home_programmes.contains(&m.recognising)
                && m.in_force(now)
                && (!m.security_only || view.security)
        });
        match recognised {
            Some(m) => {
                let label = format!("{}→{}", m.partner, m.recognising);
                push(
                    base(ReasonCode::MraRecognised)
                        .with("operator", &rec.operator)
                        .with("mra", &m.name)
                        .with("programmes", &label),
                );
                view.mra = Some(label);
            }
            None => {
                certified = false;
                let mut r = base(ReasonCode::MraNotRecognised)
                    .with("operator", &rec.operator)
                    .with("programme", programme);
                // Say why the closest candidate does not apply.
                if let Some(m) = mras.iter().find(|m| {
                    m.partner == programme && policy.home_programmes.contains(&m.recognising)
                }) {
                    let why = if !m.in_force(now) {
                        if now < m.in_force_from {
                            format!("{} in force only from {}", m.name, m.in_force_from)
                        } else {
                            format!("{} no longer in force", m.name)
                        }
                    } else {
                        format!("{} recognises security-component members only", m.name)
                    };
                    r = r.with("mra", why);
                }
                push(r);
            }
        }
    }
    PartyCheck { view, certified }
}

/// Decides the lane for a closed gate transaction. Pure: same inputs, same decision.
#[must_use]
pub fn decide(
    tx: &GateTransaction,
    replica: &dyn ReplicaView,
    policy: &Policy,
    routes: &Routes,
    now: Timestamp,
) -> Decision {
    let mut reasons: Vec<Reason> = Vec::new();

    // Replica freshness: never loaded, or older than the bound, suspends priority.
    let meta = replica.freshness_meta();
    let as_of = meta.as_of;
    let fresh = freshness(&meta, now, policy.staleness_bound);
    let (age_s, stale) = (fresh.age_s, fresh.stale);
    if stale {
        let mut r = Reason::new(ReasonCode::ReplicaStale)
            .with("bound_s", policy.staleness_bound.as_secs())
            .with("sequence", replica.sequence());
        if fresh.ahead {
            r = r.with("clock", "registry time ahead of this gate's clock");
        }
        reasons.push(match (as_of, age_s) {
            (Some(t), Some(a)) => r.with("as_of", t).with("age_s", a),
            _ => r.with("as_of", "never loaded"),
        });
    }

    // Reads that could not be understood are unverifiable data.
    for r in &tx.reads {
        if let ReadValue::Unreadable { what, error } = &r.value {
            reasons.push(
                Reason::new(ReasonCode::UnreadableRead)
                    .with("device", &r.device)
                    .with("what", what)
                    .with("error", error)
                    .with("raw", &r.raw),
            );
        }
    }

    // Containers, per source and overall (first-read order).
    let mut read_containers: Vec<ContainerNumber> = Vec::new();
    let mut by_source: BTreeMap<&'static str, BTreeSet<ContainerNumber>> = BTreeMap::new();
    for r in &tx.reads {
        if let Some(c) = container_of(&r.value) {
            if !read_containers.contains(&c) {
                read_containers.push(c);
            }
            let src = match r.source {
                ReadSource::Rfid => "RFID",
                ReadSource::Ocr => "OCR",
                ReadSource::ESealReader => "ESEAL_READER",
                ReadSource::Manual => "MANUAL",
            };
            by_source.entry(src).or_default().insert(c);
        }
    }
    if read_containers.is_empty() {
        reasons.push(Reason::new(ReasonCode::ContainerUnread).with("reads", tx.reads.len()));
    }
    // Two sources conflict when neither's set of containers contains the other's: a
    // missing tag on a second container is not a conflict, a different number is.
    let sources: Vec<_> = by_source.iter().collect();
    for (i, (sa, a)) in sources.iter().enumerate() {
        for (sb, b) in sources.iter().skip(i + 1) {
            if !a.is_subset(b) && !b.is_subset(a) {
                reasons.push(
                    Reason::new(ReasonCode::ContainerReadConflict)
                        .with(&sa.to_lowercase(), join(a.iter()))
                        .with(&sb.to_lowercase(), join(b.iter())),
                );
            }
        }
    }

    // Advance data per container.
    let mut consignments: Vec<Consignment> = Vec::new();
    let mut undeclared: Vec<ContainerNumber> = Vec::new();
    for c in &read_containers {
        match replica.try_consignment_for(c) {
            Ok(Some(k)) => {
                if !consignments.iter().any(|x| x.id == k.id) {
                    consignments.push(k);
                }
            }
            Ok(None) => undeclared.push(*c),
            Err(e) => reasons.push(
                Reason::new(ReasonCode::ReplicaUnreadable)
                    .with("container", c)
                    .with("error", e),
            ),
        }
    }
    let declared_numbers: Vec<ContainerNumber> = consignments
        .iter()
        .flat_map(|k| k.containers.iter().map(|d| d.number))
        .collect();
    for c in &undeclared {
        reasons.push(Reason::new(ReasonCode::NoAdvanceData).with("container", c));
        if !consignments.is_empty() {
            // The truck is identified by its other container(s); this one is not in
            // their declarations.
            reasons.push(
                Reason::new(ReasonCode::ContainerMismatch)
                    .with("container", c)
                    .with("declared", join(declared_numbers.iter()))
                    .with("consignments", join(consignments.iter().map(|k| &k.id))),
            );
        }
    }

    // Seals of the read, declared containers.
    let read_seals: BTreeSet<SealNumber> = tx
        .reads
        .iter()
        .filter_map(|r| match &r.value {
            ReadValue::Seal { number } => Some(number.clone()),
            _ => None,
        })
        .collect();
    let mut eseal_reads: BTreeMap<ESealId, (ESealState, Option<u8>)> = BTreeMap::new();
    for r in &tx.reads {
        if let ReadValue::ESeal {
            id,
            state,
            battery_pct,
        } = &r.value
        {
            let e = eseal_reads.entry(*id).or_insert((*state, *battery_pct));
            // Keep the worst state seen and the lowest battery.
            let rank = |s: ESealState| match s {
                ESealState::Sealed => 0,
                ESealState::Opened => 1,
                ESealState::Tampered => 2,
            };
            if rank(*state) > rank(e.0) {
                e.0 = *state;
            }
            e.1 = match (e.1, *battery_pct) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    }
    let mut declared_seals: BTreeSet<SealNumber> = BTreeSet::new();
    let mut declared_eseals: BTreeSet<ESealId> = BTreeSet::new();
    for k in &consignments {
        for d in k
            .containers
            .iter()
            .filter(|d| read_containers.contains(&d.number))
        {
            declared_seals.extend(d.seals.iter().cloned());
            declared_eseals.extend(d.eseals.iter().copied());
        }
    }
    let extra_seals: Vec<&SealNumber> = read_seals.difference(&declared_seals).collect();
    let extra_eseals: Vec<&ESealId> = eseal_reads
        .keys()
        .filter(|id| !declared_eseals.contains(id))
        .collect();
    for k in &consignments {
        for d in k
            .containers
            .iter()
            .filter(|d| read_containers.contains(&d.number))
        {
            for s in &d.seals {
                if read_seals.contains(s) {
                    continue;
                }
                let r = if extra_seals.is_empty() {
                    Reason::new(ReasonCode::SealMissing)
                } else {
                    Reason::new(ReasonCode::SealMismatch).with("read", join(extra_seals.iter()))
                };
                reasons.push(r.with("container", d.number).with("declared", s));
            }
            for e in &d.eseals {
                match eseal_reads.get(e) {
                    None => {
                        let r = if extra_eseals.is_empty() {
                            Reason::new(ReasonCode::SealMissing)
                        } else {
                            Reason::new(ReasonCode::SealMismatch)
                                .with("read", join(extra_eseals.iter()))
                        };
                        reasons.push(r.with("container", d.number).with("declared_eseal", e));
                    }
                    Some((state, battery)) => {
                        let code = match state {
                            ESealState::Sealed => None,
                            ESealState::Opened => Some(ReasonCode::ESealOpened),
                            ESealState::Tampered => Some(ReasonCode::ESealTampered),
                        };
                        if let Some(code) = code {
                            reasons.push(
                                Reason::new(code)
                                    .with("container", d.number)
                                    .with("eseal", e),
                            );
                        }
                        if let Some(b) = battery
                            && *b <= ESEAL_LOW_BATTERY_PCT
                            && policy.eseal_low_battery_is_reason
                        {
                            reasons.push(
                                Reason::new(ReasonCode::ESealLowBattery)
                                    .with("container", d.number)
                                    .with("eseal", e)
                                    .with("battery_pct", b),
                            );
                        }
                    }
                }
            }
        }
    }
    // A seal nobody declared, on a load whose containers are all declared and whose
    // declared seals were all found: an un-notified seal change (DOMAIN §3.3).
    if undeclared.is_empty() && !consignments.is_empty() {
        let all_found = declared_seals.iter().all(|s| read_seals.contains(s));
        if all_found && !extra_seals.is_empty() {
            reasons.push(
                Reason::new(ReasonCode::SealMismatch)
                    .with("read", join(extra_seals.iter()))
                    .with("declared", join(declared_seals.iter()))
                    .with("containers", join(read_containers.iter())),
            );
        }
    }

    // Customs holds.
    for k in &consignments {
        for h in &k.holds {
            reasons.push(
                Reason::new(ReasonCode::RiskHold)
                    .with("consignment", &k.id)
                    .with(
                        "kind",
                        match h.kind {
                            protocol::schema::HoldKind::RiskHold => "RISK_HOLD",
                            protocol::schema::HoldKind::InspectionOrder => "INSPECTION_ORDER",
                        },
                    )
                    .with("reference", &h.reference),
            );
        }
    }

    // Parties.
    let mras = replica.try_mras().unwrap_or_else(|e| {
        reasons.push(
            Reason::new(ReasonCode::ReplicaUnreadable)
                .with("what", "MRAs")
                .with("error", e),
        );
        Vec::new()
    });
    let mut parties: Vec<PartyView> = Vec::new();
    let mut seen_parties: Vec<(PartyRole, Option<OperatorId>, String)> = Vec::new();
    let mut required_ok = !consignments.is_empty();
    for k in &consignments {
        for role in &policy.required_roles {
            if !k.parties.iter().any(|p| p.role == *role) {
                required_ok = false;
                reasons.push(
                    Reason::new(ReasonCode::PartyMissing)
                        .with("role", role.as_str())
                        .with("consignment", &k.id),
                );
            }
        }
        for p in &k.parties {
            let key = (p.role, p.operator.clone(), p.name.clone());
            if seen_parties.contains(&key) {
                continue;
            }
            seen_parties.push(key);
            let required = policy.required_roles.contains(&p.role);
            let mut own = Vec::new();
            let checked = check_party(p, replica, &mras, policy, now, &mut own, required);
            // Each of the party's reasons carries the party as the decision saw it.
            reasons.extend(own.into_iter().map(|r| r.with_party(checked.view.clone())));
            if required && !checked.certified {
                required_ok = false;
            }
            parties.push(checked.view);
        }
    }
    let aeo_shipment = required_ok;

    // Random selection: AEO traffic at its lower rate, never exempt (DOMAIN §5.3).
    let rate = if aeo_shipment {
        policy.random_rate_aeo
    } else {
        policy.random_rate_other
    };
    let draw = random_draw(&policy.random_key, &tx.id);
    if draw < rate {
        reasons.push(
            Reason::new(ReasonCode::RandomSelection)
                .with("draw", format!("{draw:.6}"))
                .with("rate", rate)
                .with("class", if aeo_shipment { "AEO" } else { "OTHER" }),
        );
    }

    let worst = reasons.iter().map(|r| weight(r.code)).min();
    let decision = match worst {
        Some(Weight::Inspect) => LaneDecision::Inspect,
        Some(Weight::Standard) => LaneDecision::Standard,
        Some(Weight::Info) | None => LaneDecision::Fast,
    };
    let priority = decision == LaneDecision::Inspect && aeo_shipment;
    if priority {
        // The parties to call about the inspection, with their customs contact point.
        let mut r = Reason::new(ReasonCode::AeoPriorityInspection);
        for p in parties.iter().filter(|p| p.contact_point.is_some()) {
            r = r.with_party(p.clone());
        }
        reasons.push(r);
    }
    if decision == LaneDecision::Fast {
        reasons.insert(0, Reason::new(ReasonCode::AllChecksPassed));
    }
    reasons.sort_by_key(|r| weight(r.code));

    let route = match decision {
        LaneDecision::Fast => &routes.fast,
        LaneDecision::Standard => &routes.standard,
        LaneDecision::Inspect => &routes.inspect,
    };
    Decision {
        v: SCHEMA_VERSION,
        transaction_id: tx.id,
        gate: tx.gate.clone(),
        lane: tx.lane.clone(),
        decision,
        route: route.clone(),
        reasons,
        priority,
        decided_at: now,
        replica: ReplicaFreshness {
            sequence: replica.sequence(),
            as_of,
            age_s,
            stale,
        },
        consignments: consignments.iter().map(|k| k.id.clone()).collect(),
        parties,
        policy: policy.id(),
    }
}
