//! Deterministic benchmark data: operators, consignments, gate transactions and journal
//! bodies, each a pure function of its index, so any record can be regenerated without
//! keeping the whole set in memory, and two runs (or the `cargo bench` targets and
//! `aeogate bench`) see exactly the same data.
//!
//! This file is also compiled into `edge-agent/benches/decide.rs` (by `#[path]`), so it
//! names only the `protocol` and `edge_agent` crates and the workspace's serde/jiff/uuid.
//!
//! The mix is chosen to make every decision do the work a real one does:
//! - operators: 90 % EU AEO (`DE` + 12 digits), 10 % US CTPAT (recognised through one
//!   MRA); 2 % suspended; 5 % without the security component;
//! - consignments: one container (ISO 6346, owner codes `BNA`, `BNB`, … for each
//!   million), one ISO 17712 seal, an importer and a carrier drawn from the operators,
//!   0.5 % under a risk hold;
//! - transactions: 80 % clean (declared container and seal read by OCR), 10 % seal
//!   mismatch, 5 % container without advance data, 5 % seal not read.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context as _;
use edge_agent::decider::{MemoryReplica, ReplicaView};
use edge_agent::store::Store;
use jiff::Timestamp;
use protocol::container::ContainerNumber;
use protocol::operator::{OperatorId, Programme};
use protocol::schema::{
    AeoStatus, Authorisation, Change, ChangeBatch, CloseReason, Consignment, ContactPoint,
    DeclaredContainer, GateId, GateTransaction, Hold, HoldKind, LaneId, MraRecord, Party,
    PartyRole, Read, ReadSource, ReadValue, RegistryRecord, SCHEMA_VERSION, SequencedChange,
};
use protocol::seal::SealNumber;
use uuid::Uuid;

/// The port every generated consignment is for.
pub const PORT: &str = "PORT1";
/// Central's as-of time of every generated record: 2026-01-01T00:00:00Z (Unix seconds).
pub const AS_OF_S: i64 = 1_767_225_600;
/// The decision time used by the benchmarks: one hour after [`AS_OF_S`], so the replica is
/// fresh under the default 24 h staleness bound.
pub const NOW_S: i64 = AS_OF_S + 3_600;

/// A fixed instant, `s` Unix seconds.
#[must_use]
pub fn ts(s: i64) -> Timestamp {
    Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// splitmix64 (Steele, Lea, Flood 2014): a well-mixed 64-bit value from a counter, so
/// record `i` is the same on every run and machine.
#[must_use]
pub fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed
        .wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Why generated data could not be built (a generator bug, never external input).
#[derive(Debug, thiserror::Error)]
#[error("benchmark data: {0}")]
pub struct DataError(String);

fn err(e: impl std::fmt::Display) -> DataError {
    DataError(e.to_string())
}

/// The id of operator `i`.
///
/// # Errors
/// Only if the generator produced an invalid identifier.
pub fn operator_id(i: u64) -> Result<OperatorId, DataError> {
    if i % 10 == 9 {
        OperatorId::new(Programme::UsCtpat, &format!("CT{i:010}")).map_err(err)
    } else {
        OperatorId::new(Programme::EuAeo, &format!("DE{i:012}")).map_err(err)
    }
}

/// Operator record `i`.
///
/// # Errors
/// Only if the generator produced an invalid identifier.
pub fn operator(i: u64) -> Result<RegistryRecord, DataError> {
    let status = if i % 50 == 7 {
        AeoStatus::Suspended
    } else {
        AeoStatus::Active
    };
    let authorisations = if i % 20 == 3 {
        vec![Authorisation::Aeoc]
    } else if i % 10 == 9 {
        vec![Authorisation::Security]
    } else {
        vec![Authorisation::Aeof]
    };
    Ok(RegistryRecord {
        v: SCHEMA_VERSION,
        operator: operator_id(i)?,
        name: format!("Operator {i} GmbH"),
        authorisations,
        status,
        status_since: ts(AS_OF_S - 86_400 * 30),
        valid_from: ts(AS_OF_S - 86_400 * 365 * 3),
        valid_to: Some(ts(AS_OF_S + 86_400 * 365 * 2)),
        roles: vec![PartyRole::Importer, PartyRole::Carrier],
        contact_point: i.is_multiple_of(4).then(|| ContactPoint {
            name: format!("Security officer {i}"),
            phone: Some(format!("+49 40 {:07}", i % 10_000_000)),
            email: None,
        }),
        linked_ids: Vec::new(),
        source: "bench".into(),
        as_of: ts(AS_OF_S),
    })
}

/// The one MRA the data needs: the EU recognises US CTPAT security members.
#[must_use]
pub fn mra() -> MraRecord {
    MraRecord {
        v: SCHEMA_VERSION,
        recognising: Programme::EuAeo,
        partner: Programme::UsCtpat,
        in_force_from: ts(AS_OF_S - 86_400 * 365 * 10),
        in_force_to: None,
        security_only: true,
        name: "EU-US MRA".into(),
    }
}

/// The container of consignment `j` (a distinct valid ISO 6346 number for every `j`
/// below 26 million).
///
/// # Errors
/// Only if the generator produced an invalid number.
pub fn container(j: u64) -> Result<ContainerNumber, DataError> {
    let million = u8::try_from((j / 1_000_000) % 26).map_err(err)?;
    let owner = format!("BN{}", char::from(b'A' + million));
    let serial = u32::try_from(j % 1_000_000).map_err(err)?;
    ContainerNumber::from_parts(&owner, 'U', serial).map_err(err)
}

/// A container number no consignment declares (owner code `ZZZ`).
///
/// # Errors
/// Only if the generator produced an invalid number.
pub fn undeclared_container(k: u64) -> Result<ContainerNumber, DataError> {
    let serial = u32::try_from(k % 1_000_000).map_err(err)?;
    ContainerNumber::from_parts("ZZZ", 'U', serial).map_err(err)
}

/// The declared seal of consignment `j`.
///
/// # Errors
/// Only if the generator produced an invalid marking.
pub fn seal(j: u64) -> Result<SealNumber, DataError> {
    SealNumber::parse(&format!("SL{j:010}")).map_err(err)
}

/// Consignment `j`, whose parties are drawn from `n_operators` operators.
///
/// # Errors
/// Only if the generator produced an invalid identifier.
pub fn consignment(j: u64, n_operators: u64) -> Result<Consignment, DataError> {
    let n_ops = n_operators.max(1);
    let importer = mix(1, j) % n_ops;
    let carrier = mix(2, j) % n_ops;
    Ok(Consignment {
        v: SCHEMA_VERSION,
        id: format!("DECL{j:010}"),
        containers: vec![DeclaredContainer {
            number: container(j)?,
            seals: vec![seal(j)?],
            eseals: Vec::new(),
        }],
        parties: vec![
            Party {
                role: PartyRole::Importer,
                operator: Some(operator_id(importer)?),
                name: format!("Operator {importer} GmbH"),
            },
            Party {
                role: PartyRole::Carrier,
                operator: Some(operator_id(carrier)?),
                name: format!("Operator {carrier} GmbH"),
            },
        ],
        holds: if j % 200 == 5 {
            vec![Hold {
                kind: HoldKind::RiskHold,
                reference: format!("RH-{j}"),
                note: String::new(),
            }]
        } else {
            Vec::new()
        },
        ports: vec![PORT.into()],
        as_of: ts(AS_OF_S),
    })
}

/// What kind of passage transaction `k` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passage {
    /// Declared container and its declared seal read.
    Clean,
    /// Declared container, another seal read.
    SealMismatch,
    /// A container without advance data.
    Undeclared,
    /// Declared container, no seal read.
    SealUnread,
}

/// The kind of passage `k` is (80 / 10 / 5 / 5 %).
#[must_use]
pub fn passage(k: u64) -> Passage {
    match mix(3, k) % 100 {
        0..80 => Passage::Clean,
        80..90 => Passage::SealMismatch,
        90..95 => Passage::Undeclared,
        _ => Passage::SealUnread,
    }
}

/// A read of `value` (received as `raw`) from `device`, reported three times at `at`,
/// with OCR confidence 97 and no antenna or signal strength.
#[must_use]
pub fn read(
    source: ReadSource,
    device: &str,
    raw: String,
    value: ReadValue,
    at: Timestamp,
) -> Read {
    Read {
        source,
        device: device.into(),
        raw,
        value,
        first_at: at,
        last_at: at,
        count: 3,
        antenna: None,
        rssi: None,
        confidence: Some(97),
        entered_by: None,
    }
}

/// Gate transaction `k` against `n_consignments` consignments (0 consignments makes
/// every passage undeclared).
///
/// # Errors
/// Only if the generator produced an invalid identifier.
pub fn transaction(k: u64, n_consignments: u64) -> Result<GateTransaction, DataError> {
    let at = ts(NOW_S);
    let kind = if n_consignments == 0 {
        Passage::Undeclared
    } else {
        passage(k)
    };
    let j = mix(4, k) % n_consignments.max(1);
    let c = match kind {
        Passage::Undeclared => undeclared_container(k)?,
        _ => container(j)?,
    };
    let mut reads = vec![read(
        ReadSource::Ocr,
        "ocr-1",
        c.to_string(),
        ReadValue::Container { number: c },
        at,
    )];
    let s = match kind {
        Passage::Clean | Passage::Undeclared => Some(seal(j)?),
        Passage::SealMismatch => Some(SealNumber::parse(&format!("XX{k:010}")).map_err(err)?),
        Passage::SealUnread => None,
    };
    if let Some(s) = s {
        reads.push(read(
            ReadSource::Ocr,
            "ocr-1",
            s.to_string(),
            ReadValue::Seal { number: s },
            at,
        ));
    }
    Ok(GateTransaction {
        v: SCHEMA_VERSION,
        id: transaction_id(k),
        gate: GateId::parse("PORT1-G1").map_err(err)?,
        lane: LaneId::parse("L1").map_err(err)?,
        opened_at: ts(NOW_S - 20),
        closed_at: at,
        close_reason: CloseReason::Departure,
        reads,
    })
}

/// The id of generated transaction `k`, shaped like the agent's (`Uuid::now_v7`, RFC 9562
/// §5.7): a millisecond timestamp in the top 48 bits that grows with `k`'s low 40 bits
/// (a gate's sequence), so ids of later transactions sort later, as on a real gate, where
/// stores keyed by transaction id append rather than write at random places. The version
/// and variant bits are set; `k` itself fills the random part, so every `k` gives its own
/// id.
#[must_use]
pub fn transaction_id(k: u64) -> Uuid {
    let day_before = u128::try_from(NOW_S - 86_400).unwrap_or(0);
    let ms = day_before * 1_000 + u128::from(k & ((1 << 40) - 1));
    let rand_a = u128::from(mix(5, k) & 0xFFF);
    Uuid::from_u128(
        (ms & ((1 << 48) - 1)) << 80
            | 0x7 << 76
            | rand_a << 64
            | 0b10 << 62
            | u128::from(k & ((1 << 62) - 1)),
    )
}

/// A snapshot batch of the MRA, `n_operators` operators and `n_consignments`
/// consignments, sequenced 1.., for [`PORT`].
///
/// # Errors
/// Only if the generator produced an invalid identifier.
pub fn snapshot(n_operators: u64, n_consignments: u64) -> Result<ChangeBatch, DataError> {
    let total = usize::try_from(1 + n_operators + n_consignments).map_err(err)?;
    let mut changes = Vec::with_capacity(total);
    changes.push(Change::UpsertMra { mra: mra() });
    for i in 0..n_operators {
        changes.push(Change::UpsertOperator {
            record: operator(i)?,
        });
    }
    for j in 0..n_consignments {
        changes.push(Change::UpsertConsignment {
            consignment: consignment(j, n_operators)?,
        });
    }
    Ok(batch(true, 0, changes))
}

/// A delta of `n` changes following `after_seq`, on a replica of `n_operators` operators
/// and `n_consignments` consignments: 40 % status changes (suspend / reinstate), 40 % new
/// consignments, 20 % removals of existing consignments.
///
/// # Errors
/// Only if the generator produced an invalid identifier.
pub fn delta(
    after_seq: u64,
    n: u64,
    n_operators: u64,
    n_consignments: u64,
) -> Result<ChangeBatch, DataError> {
    let mut changes = Vec::with_capacity(usize::try_from(n).map_err(err)?);
    let mut removed = std::collections::HashSet::new();
    for c in 0..n {
        let change = match mix(6, c) % 10 {
            0..4 => Change::SetStatus {
                operator: operator_id(mix(7, c) % n_operators.max(1))?,
                status: if c % 2 == 0 {
                    AeoStatus::Suspended
                } else {
                    AeoStatus::Active
                },
                reason: "bench".into(),
                actor: "bench".into(),
                at: ts(AS_OF_S + 60),
            },
            4..8 => Change::UpsertConsignment {
                consignment: consignment(n_consignments + c, n_operators)?,
            },
            _ => {
                let j = mix(8, c) % n_consignments.max(1);
                if removed.insert(j) {
                    Change::RemoveConsignment {
                        id: format!("DECL{j:010}"),
                    }
                } else {
                    Change::UpsertConsignment {
                        consignment: consignment(n_consignments + c, n_operators)?,
                    }
                }
            }
        };
        changes.push(change);
    }
    let mut b = batch(false, after_seq, changes);
    b.as_of = ts(AS_OF_S + 60);
    Ok(b)
}

/// `changes` numbered `after_seq + 1 ..` as one batch for [`PORT`], as of [`AS_OF_S`].
#[must_use]
pub fn batch(snapshot: bool, after_seq: u64, changes: Vec<Change>) -> ChangeBatch {
    let changes: Vec<SequencedChange> = changes
        .into_iter()
        .zip(after_seq + 1..)
        .map(|(change, seq)| SequencedChange { seq, change })
        .collect();
    ChangeBatch {
        v: SCHEMA_VERSION,
        snapshot,
        after_seq,
        last_seq: after_seq + changes.len() as u64,
        port: PORT.into(),
        as_of: ts(AS_OF_S),
        changes,
    }
}

/// The baseline replica of the issue ("the same look-ups in an in-memory HashMap"):
/// operators by id and consignments by container, each one hash look-up.
///
/// [`MemoryReplica`] is not that baseline at scale: its `consignment_for` scans every
/// consignment (O(n) per look-up), which `aeogate bench` reports beside it.
#[derive(Debug, Default)]
pub struct IndexedReplica {
    operators: HashMap<OperatorId, RegistryRecord>,
    by_container: HashMap<ContainerNumber, Consignment>,
    mras: Vec<MraRecord>,
    sequence: u64,
}

impl IndexedReplica {
    /// The replica holding [`snapshot`]`(n_operators, n_consignments)`'s records.
    ///
    /// # Errors
    /// Only if the generator produced an invalid identifier.
    pub fn generate(n_operators: u64, n_consignments: u64) -> Result<Self, DataError> {
        let mut r = IndexedReplica {
            mras: vec![mra()],
            sequence: 1 + n_operators + n_consignments,
            ..Self::default()
        };
        r.operators
            .reserve(usize::try_from(n_operators).map_err(err)?);
        r.by_container
            .reserve(usize::try_from(n_consignments).map_err(err)?);
        for i in 0..n_operators {
            let rec = operator(i)?;
            r.operators.insert(rec.operator.clone(), rec);
        }
        for j in 0..n_consignments {
            let k = consignment(j, n_operators)?;
            for d in &k.containers {
                r.by_container.insert(d.number, k.clone());
            }
        }
        Ok(r)
    }
}

impl ReplicaView for IndexedReplica {
    fn operator(&self, id: &OperatorId) -> Option<RegistryRecord> {
        self.operators.get(id).cloned()
    }
    fn consignment_for(&self, c: &ContainerNumber) -> Option<Consignment> {
        self.by_container.get(c).cloned()
    }
    fn mras(&self) -> Vec<MraRecord> {
        self.mras.clone()
    }
    fn sequence(&self) -> u64 {
        self.sequence
    }
    fn as_of(&self) -> Option<Timestamp> {
        Some(ts(AS_OF_S))
    }
}

/// The same records in the agent's own [`MemoryReplica`].
///
/// # Errors
/// Only if the generator produced an invalid identifier.
pub fn memory_replica(n_operators: u64, n_consignments: u64) -> Result<MemoryReplica, DataError> {
    let mut m = MemoryReplica::new();
    m.insert_mra(mra());
    for i in 0..n_operators {
        m.insert_operator(operator(i)?);
    }
    for j in 0..n_consignments {
        m.insert_consignment(consignment(j, n_operators)?);
    }
    m.set_loaded(1 + n_operators + n_consignments, ts(AS_OF_S));
    Ok(m)
}

/// Opens a store at `path` (gate `PORT1-G1`) holding `n_ops` operators and `n_cons` consignments (plus the
/// MRA), loaded through [`Store::apply_batch`]: a snapshot of the first chunk, then
/// deltas of `CHUNK` records, so loading holds one chunk in memory at a time.
///
/// # Errors
/// Store errors.
pub fn loaded_store(path: &Path, n_ops: u64, n_cons: u64) -> anyhow::Result<Store> {
    const CHUNK: u64 = 20_000;
    let store = Store::open(path, GateId::parse("PORT1-G1")?).context("opening the bench store")?;
    store
        .apply_batch(&snapshot(0, 0)?)
        .context("empty snapshot")?;
    let mut seq = store.replica_meta().sequence;
    let mut load = |range: std::ops::Range<u64>, ops: bool| -> anyhow::Result<()> {
        let mut start = range.start;
        while start < range.end {
            let end = (start + CHUNK).min(range.end);
            let changes = (start..end)
                .map(|i| {
                    Ok(if ops {
                        Change::UpsertOperator {
                            record: operator(i)?,
                        }
                    } else {
                        Change::UpsertConsignment {
                            consignment: consignment(i, n_ops)?,
                        }
                    })
                })
                .collect::<Result<Vec<_>, DataError>>()?;
            let b = batch(false, seq, changes);
            store.apply_batch(&b).context("loading the bench replica")?;
            seq = b.last_seq;
            start = end;
        }
        Ok(())
    };
    load(0..n_ops, true)?;
    load(0..n_cons, false)?;
    Ok(store)
}

/// The decision policy of the benchmarks: the documented defaults (24 h staleness,
/// importer and carrier required, EU AEO home, 1 % / 5 % random rates).
#[must_use]
pub fn policy() -> edge_agent::decider::Policy {
    edge_agent::decider::Policy {
        name: "bench".into(),
        staleness_bound: std::time::Duration::from_secs(24 * 3600),
        required_roles: vec![PartyRole::Importer, PartyRole::Carrier],
        home_programmes: vec![Programme::EuAeo],
        random_rate_aeo: 0.01,
        random_rate_other: 0.05,
        random_key: "bench-random-key".into(),
        eseal_low_battery_is_reason: true,
    }
}

/// Lane routes of the benchmarks.
#[must_use]
pub fn routes() -> edge_agent::config::Routes {
    edge_agent::config::Routes {
        fast: "Lane 1 priority".into(),
        standard: "Lane 2".into(),
        inspect: "Inspection bay".into(),
    }
}
