//! The demo's data set: a seeded, deterministic registry of operators across several
//! programmes, the MRA partner table, and a day of advance cargo for the port.
//!
//! Everything is derived from one seed, so two runs with the same seed produce the same
//! operators, consignments and (with the same rate) the same traffic.

use jiff::{Timestamp, ToSpan};
use protocol::container::ContainerNumber;
use protocol::operator::{OperatorId, Programme, cnpj_check_digits, ruc_check_digit};
use protocol::schema::{
    AeoStatus, Authorisation, Consignment, ContactPoint, DeclaredContainer, Hold, HoldKind,
    MraRecord, Party, PartyRole, RegistryRecord, SCHEMA_VERSION,
};
use protocol::seal::{ESealId, SealNumber};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The port of entry the demo's gates belong to (replication scope).
pub const PORT: &str = "PORT-A";

/// The programme the demo port's customs administration runs.
pub const HOME: Programme = Programme::EuAeo;

/// What a consignment is meant to show when its truck reaches a gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// AEO (security) importer and carrier of the home programme, seals intact.
    AeoClean,
    /// Importer certified in a partner programme recognised by an MRA.
    MraPartner,
    /// Importer certified in a programme with no MRA here.
    NotRecognised,
    /// Parties not in the registry.
    NonAeo,
    /// Importer's AEO status suspended.
    Suspended,
    /// Importer holds AEOC only (no security component).
    AeocOnly,
    /// The seal read at the gate differs from the declared one.
    SealMismatch,
    /// The e-seal reports tampering.
    ESealTampered,
    /// Customs risk hold on the consignment.
    RiskHold,
    /// OCR and RFID read different container numbers.
    ReadConflict,
}

/// One consignment and what it is for.
#[derive(Debug, Clone)]
pub struct PlannedConsignment {
    pub consignment: Consignment,
    pub scenario: Scenario,
}

/// The whole data set.
#[derive(Debug)]
pub struct DataSet {
    pub operators: Vec<RegistryRecord>,
    pub mras: Vec<MraRecord>,
    pub consignments: Vec<PlannedConsignment>,
}

/// Operator ids grouped by what they show at the gate.
#[derive(Debug, Default)]
pub struct Pools {
    pub home_security: Vec<OperatorId>,
    pub home_aeoc: Vec<OperatorId>,
    pub partner_security: Vec<OperatorId>,
    pub unrecognised: Vec<OperatorId>,
    pub suspended: Vec<OperatorId>,
    /// Well-formed ids of traders that are not certified anywhere.
    pub uncertified: Vec<OperatorId>,
}

const EU_PREFIXES: &[&str] = &[
    "DE", "NL", "BE", "FR", "ES", "IT", "PT", "PL", "DK", "SE", "AT", "IE",
];
const NAME_A: &[&str] = &[
    "Atlas", "Boreal", "Cobalt", "Delta", "Estrela", "Fjord", "Granite", "Harbor", "Iberia",
    "Jade", "Kestrel", "Lumen", "Meridian", "Nordic", "Orion", "Pacifico", "Quasar", "Rio",
    "Sierra", "Tidal", "Union", "Vega", "Westwind", "Xalapa", "Yucca", "Zenith",
];
const NAME_B: &[&str] = &[
    "Logistics",
    "Trading",
    "Freight",
    "Imports",
    "Cargo",
    "Shipping",
    "Forwarding",
    "Foods",
    "Components",
    "Textiles",
    "Machinery",
    "Chemicals",
    "Transport",
    "Distribution",
];
const SUFFIX: &[&str] = &[
    "GmbH",
    "B.V.",
    "S.A.",
    "S.L.",
    "Lda.",
    "Inc.",
    "Ltd",
    "S.A. de C.V.",
    "Ltda.",
    "SAS",
];
const OWNERS: &[&str] = &[
    "CSQ", "MSC", "MAE", "HLX", "CMA", "ONE", "EGL", "YML", "ZIM", "TGH", "TCN", "OOL",
];

fn digits(rng: &mut StdRng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

fn alnum(rng: &mut StdRng, n: usize) -> String {
    const A: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ0123456789";
    (0..n)
        .map(|_| char::from(A[rng.random_range(0..A.len())]))
        .collect()
}

fn letters(rng: &mut StdRng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'A' + rng.random_range(0..26u8)))
        .collect()
}

/// A syntactically valid identifier for `programme` (check digits computed).
fn make_id(rng: &mut StdRng, programme: Programme) -> Option<OperatorId> {
    let raw = match programme {
        Programme::EuAeo => format!(
            "{}{}",
            EU_PREFIXES[rng.random_range(0..EU_PREFIXES.len())],
            digits(rng, 12)
        ),
        Programme::UkAeo => format!("GB{}", digits(rng, 12)),
        Programme::UsCtpat => alnum(rng, 10),
        Programme::CaPip => format!("PIP{}", digits(rng, 8)),
        Programme::MxOea => {
            format!(
                "{}{:02}{:02}{:02}{}",
                letters(rng, 3),
                rng.random_range(0..100),
                rng.random_range(1..13),
                rng.random_range(1..29),
                alnum(rng, 3)
            )
        }
        Programme::BrOea => {
            let first: String = digits(rng, 8) + "0001";
            let mut b = [0u8; 12];
            b.copy_from_slice(first.as_bytes());
            let [d1, d2] = cnpj_check_digits(&b);
            format!("{first}{d1}{d2}")
        }
        Programme::CoOea => digits(rng, 10),
        Programme::PeOea => {
            let first = format!("20{}", digits(rng, 8));
            let mut b = [0u8; 10];
            b.copy_from_slice(first.as_bytes());
            format!("{first}{}", ruc_check_digit(&b))
        }
        Programme::DoOea => digits(rng, 9),
        Programme::UyOec => digits(rng, 12),
        Programme::SgStp => format!("AEOSG{}", alnum(rng, 12)),
        _ => format!("CA{}", digits(rng, 9)),
    };
    OperatorId::new(programme, &raw).ok()
}

fn company_name(rng: &mut StdRng) -> String {
    format!(
        "{} {} {}",
        NAME_A[rng.random_range(0..NAME_A.len())],
        NAME_B[rng.random_range(0..NAME_B.len())],
        SUFFIX[rng.random_range(0..SUFFIX.len())]
    )
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Builds the data set for `operators` registry records and `consignments` consignments.
#[must_use]
pub fn generate(seed: u64, operators: usize, consignments: usize, now: Timestamp) -> DataSet {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pools = Pools::default();
    let mut records = Vec::with_capacity(operators);
    let roles_all = [
        PartyRole::Importer,
        PartyRole::Exporter,
        PartyRole::Carrier,
        PartyRole::Broker,
    ];
    // Programme mix: the home EU-style programme dominates, then partners and the Americas.
    let mix: &[(Programme, u32)] = &[
        (Programme::EuAeo, 50),
        (Programme::UsCtpat, 14),
        (Programme::UkAeo, 6),
        (Programme::CaPip, 4),
        (Programme::MxOea, 6),
        (Programme::BrOea, 6),
        (Programme::CoOea, 4),
        (Programme::PeOea, 4),
        (Programme::DoOea, 3),
        (Programme::UyOec, 3),
    ];
    let total: u32 = mix.iter().map(|m| m.1).sum();
    let recognised = [
        Programme::EuAeo,
        Programme::UsCtpat,
        Programme::UkAeo,
        Programme::CaPip,
    ];
    while records.len() < operators {
        let mut pick = rng.random_range(0..total);
        let mut programme = Programme::EuAeo;
        for (p, w) in mix {
            if pick < *w {
                programme = *p;
                break;
            }
            pick -= w;
        }
        let Some(id) = make_id(&mut rng, programme) else {
            continue;
        };
        let authorisations = if programme == Programme::EuAeo {
            match rng.random_range(0..100) {
                0..46 => vec![Authorisation::Aeoc],
                46..51 => vec![Authorisation::Aeos],
                _ => vec![Authorisation::Aeof],
            }
        } else if programme == Programme::BrOea && rng.random_bool(0.3) {
            vec![Authorisation::Compliance]
        } else {
            vec![Authorisation::Security]
        };
        let status = match rng.random_range(0..100) {
            0..86 => AeoStatus::Active,
            86..91 => AeoStatus::Suspended,
            91..95 => AeoStatus::Revoked,
            95..98 => AeoStatus::Withdrawn,
            _ => AeoStatus::Expired,
        };
        let since_days: i64 = rng.random_range(30..3000);
        let valid_from = now.checked_sub((since_days * 24).hours()).unwrap_or(now);
        let valid_to = if programme == Programme::EuAeo {
            None
        } else if status == AeoStatus::Expired {
            Some(
                now.checked_sub((rng.random_range(1..200i64) * 24).hours())
                    .unwrap_or(now),
            )
        } else {
            Some(
                now.checked_add((rng.random_range(100..1500i64) * 24).hours())
                    .unwrap_or(now),
            )
        };
        let role_count = rng.random_range(1..=3);
        let roles: Vec<PartyRole> = roles_all.iter().copied().take(role_count).collect();
        let security = authorisations.iter().any(|a| a.has_security());
        let record = RegistryRecord {
            v: SCHEMA_VERSION,
            operator: id.clone(),
            name: company_name(&mut rng),
            authorisations,
            status,
            status_since: valid_from,
            valid_from,
            valid_to,
            roles,
            contact_point: Some(ContactPoint {
                name: format!("Customs contact {}", records.len() + 1),
                phone: Some(format!(
                    "+{} {}",
                    rng.random_range(1..99),
                    digits(&mut rng, 9)
                )),
                email: Some(format!("customs{}@operator.example", records.len() + 1)),
            }),
            linked_ids: vec![],
            source: format!("{} national list", programme.code()),
            as_of: now,
        };
        let active = record.status_at(now) == AeoStatus::Active;
        match (programme, active, security) {
            (HOME, true, true) => pools.home_security.push(id),
            (HOME, true, false) => pools.home_aeoc.push(id),
            (p, true, true) if recognised.contains(&p) => pools.partner_security.push(id),
            (_, true, true) => pools.unrecognised.push(id),
            (_, false, _) if record.status == AeoStatus::Suspended => pools.suspended.push(id),
            _ => {}
        }
        records.push(record);
    }
    let certified: std::collections::HashSet<&OperatorId> =
        records.iter().map(|r| &r.operator).collect();
    for _ in 0..500 {
        if let Some(id) = make_id(&mut rng, Programme::EuAeo)
            && !certified.contains(&id)
        {
            pools.uncertified.push(id);
        }
    }
    let mras = mra_table();
    let planned = plan_consignments(&mut rng, &pools, consignments, now);
    DataSet {
        operators: records,
        mras,
        consignments: planned,
    }
}

/// The MRA partner table as it applies at the home (EU-style) programme's ports, and the
/// partners' own arrangements, with dates from DOMAIN §1.4.
#[must_use]
pub fn mra_table() -> Vec<MraRecord> {
    let m = |recognising, partner, from: &str, name: &str| MraRecord {
        v: SCHEMA_VERSION,
        recognising,
        partner,
        in_force_from: ts(from),
        in_force_to: None,
        security_only: true,
        name: name.into(),
    };
    vec![
        m(
            Programme::EuAeo,
            Programme::UsCtpat,
            "2012-07-01T00:00:00Z",
            "EU–US mutual recognition",
        ),
        m(
            Programme::EuAeo,
            Programme::UkAeo,
            "2021-01-01T00:00:00Z",
            "EU–UK Trade and Cooperation Agreement",
        ),
        m(
            Programme::EuAeo,
            Programme::CaPip,
            "2025-08-01T00:00:00Z",
            "EU–Canada mutual recognition",
        ),
        m(
            Programme::UsCtpat,
            Programme::EuAeo,
            "2012-07-01T00:00:00Z",
            "US–EU mutual recognition",
        ),
        m(
            Programme::UsCtpat,
            Programme::MxOea,
            "2014-10-01T00:00:00Z",
            "US–Mexico mutual recognition",
        ),
        m(
            Programme::UsCtpat,
            Programme::PeOea,
            "2018-01-01T00:00:00Z",
            "US–Peru mutual recognition",
        ),
        m(
            Programme::UsCtpat,
            Programme::DoOea,
            "2015-01-01T00:00:00Z",
            "US–Dominican Republic mutual recognition",
        ),
        m(
            Programme::UsCtpat,
            Programme::UyOec,
            "2022-07-01T00:00:00Z",
            "US–Uruguay mutual recognition",
        ),
        m(
            Programme::UsCtpat,
            Programme::BrOea,
            "2022-09-01T00:00:00Z",
            "US–Brazil mutual recognition",
        ),
    ]
}

fn pick<'a>(
    rng: &mut StdRng,
    pool: &'a [OperatorId],
    fallback: &'a [OperatorId],
) -> Option<&'a OperatorId> {
    let p = if pool.is_empty() { fallback } else { pool };
    if p.is_empty() {
        None
    } else {
        Some(&p[rng.random_range(0..p.len())])
    }
}

fn new_container(rng: &mut StdRng) -> Option<ContainerNumber> {
    let owner = OWNERS[rng.random_range(0..OWNERS.len())];
    ContainerNumber::from_parts(owner, 'U', rng.random_range(0..1_000_000)).ok()
}

/// A seal marking as manufacturers print them: two letters and seven digits.
fn new_seal(rng: &mut StdRng) -> Option<SealNumber> {
    SealNumber::parse(&format!("{}{}", letters(rng, 2), digits(rng, 7))).ok()
}

fn scenario_for(rng: &mut StdRng) -> Scenario {
    match rng.random_range(0..100) {
        0..50 => Scenario::AeoClean,
        50..57 => Scenario::MraPartner,
        57..61 => Scenario::NotRecognised,
        61..76 => Scenario::NonAeo,
        76..80 => Scenario::Suspended,
        80..84 => Scenario::AeocOnly,
        84..89 => Scenario::SealMismatch,
        89..92 => Scenario::ESealTampered,
        92..95 => Scenario::RiskHold,
        _ => Scenario::ReadConflict,
    }
}

fn plan_consignments(
    rng: &mut StdRng,
    pools: &Pools,
    n: usize,
    now: Timestamp,
) -> Vec<PlannedConsignment> {
    let mut out = Vec::with_capacity(n);
    let mut serial = 0u32;
    while out.len() < n {
        let scenario = scenario_for(rng);
        let importer_pool: &[OperatorId] = match scenario {
            Scenario::MraPartner => &pools.partner_security,
            Scenario::NotRecognised => &pools.unrecognised,
            Scenario::NonAeo => &pools.uncertified,
            Scenario::Suspended => &pools.suspended,
            Scenario::AeocOnly => &pools.home_aeoc,
            _ => &pools.home_security,
        };
        let carrier_pool: &[OperatorId] = if scenario == Scenario::NonAeo {
            &pools.uncertified
        } else {
            &pools.home_security
        };
        let (Some(importer), Some(carrier), Some(exporter)) = (
            pick(rng, importer_pool, &pools.home_security),
            pick(rng, carrier_pool, &pools.home_security),
            pick(rng, &pools.partner_security, &pools.home_security),
        ) else {
            break;
        };
        let n_containers = if rng.random_bool(0.1) { 2 } else { 1 };
        let mut containers = Vec::new();
        for _ in 0..n_containers {
            let (Some(number), Some(seal)) = (new_container(rng), new_seal(rng)) else {
                continue;
            };
            let eseals = if rng.random_bool(0.35) || scenario == Scenario::ESealTampered {
                vec![ESealId::new(
                    rng.random_range(1..0x100),
                    rng.random_range(1..u32::MAX),
                )]
            } else {
                vec![]
            };
            containers.push(DeclaredContainer {
                number,
                seals: vec![seal],
                eseals,
            });
        }
        if containers.is_empty() {
            continue;
        }
        serial += 1;
        let holds = if scenario == Scenario::RiskHold {
            vec![Hold {
                kind: HoldKind::RiskHold,
                reference: format!("RH-{serial:06}"),
                note: "Targeted by risk profile".into(),
            }]
        } else {
            vec![]
        };
        let party = |role, id: &OperatorId, rng: &mut StdRng| Party {
            role,
            operator: Some(id.clone()),
            name: company_name(rng),
        };
        let parties = vec![
            party(PartyRole::Importer, importer, rng),
            party(PartyRole::Exporter, exporter, rng),
            party(PartyRole::Carrier, carrier, rng),
        ];
        out.push(PlannedConsignment {
            consignment: Consignment {
                v: SCHEMA_VERSION,
                id: format!("ENS-{}-{serial:06}", now.strftime("%Y%m%d")),
                containers,
                parties,
                holds,
                ports: vec![PORT.into()],
                as_of: now,
            },
            scenario,
        });
    }
    out
}

/// A container number nobody declared (the "no advance data" case).
#[must_use]
pub fn undeclared_container(rng: &mut StdRng) -> Option<ContainerNumber> {
    new_container(rng)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_data() {
        let now = ts("2026-11-23T08:00:00Z");
        let a = generate(7, 2_000, 300, now);
        let b = generate(7, 2_000, 300, now);
        assert_eq!(a.operators, b.operators);
        assert_eq!(a.consignments.len(), b.consignments.len());
        assert_eq!(
            a.consignments[10].consignment,
            b.consignments[10].consignment
        );
        let c = generate(8, 2_000, 300, now);
        assert_ne!(a.operators, c.operators);
    }

    #[test]
    fn covers_every_status_programme_and_scenario() {
        let now = ts("2026-11-23T08:00:00Z");
        let d = generate(1, 5_000, 1_000, now);
        assert_eq!(d.operators.len(), 5_000);
        for s in [
            AeoStatus::Active,
            AeoStatus::Suspended,
            AeoStatus::Revoked,
            AeoStatus::Withdrawn,
        ] {
            assert!(d.operators.iter().any(|r| r.status == s), "{s:?}");
        }
        assert!(
            d.operators
                .iter()
                .any(|r| r.status_at(now) == AeoStatus::Expired)
        );
        for p in [
            Programme::EuAeo,
            Programme::UsCtpat,
            Programme::BrOea,
            Programme::MxOea,
            Programme::PeOea,
        ] {
            assert!(
                d.operators.iter().any(|r| r.operator.programme() == p),
                "{p}"
            );
        }
        for s in [
            Scenario::AeoClean,
            Scenario::MraPartner,
            Scenario::NonAeo,
            Scenario::SealMismatch,
            Scenario::RiskHold,
        ] {
            assert!(d.consignments.iter().any(|c| c.scenario == s), "{s:?}");
        }
        // Every identifier generated passes its programme's own syntax rule on re-parse.
        for r in &d.operators {
            assert_eq!(
                OperatorId::parse(&r.operator.to_string()).as_ref(),
                Ok(&r.operator)
            );
        }
    }
}
