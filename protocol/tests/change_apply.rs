//! [`Change::apply`]: the one registry change rule central and the replicas share, as a
//! table of (registry before, change) → registry after or refusal.

use std::collections::BTreeMap;

use jiff::Timestamp;
use protocol::operator::{OperatorId, Programme};
use protocol::registry::{ApplyError, RegistrySink};
use protocol::schema::{
    AeoStatus, Authorisation, Change, Consignment, DeclaredContainer, MraRecord, RegistryRecord,
    SCHEMA_VERSION, SchemaError,
};

/// A registry in maps; `fail` makes every write fail (a storage failure).
#[derive(Debug, Clone, Default, PartialEq)]
struct Registry {
    operators: BTreeMap<String, RegistryRecord>,
    mras: BTreeMap<(Programme, Programme), MraRecord>,
    consignments: BTreeMap<String, Consignment>,
    fail: bool,
}

impl RegistrySink for Registry {
    type Error = String;
    fn operator(&mut self, id: &OperatorId) -> Result<Option<RegistryRecord>, String> {
        Ok(self.operators.get(&id.to_string()).cloned())
    }
    fn put_operator(&mut self, record: &RegistryRecord) -> Result<(), String> {
        self.check()?;
        self.operators
            .insert(record.operator.to_string(), record.clone());
        Ok(())
    }
    fn put_mra(&mut self, mra: &MraRecord) -> Result<(), String> {
        self.check()?;
        self.mras
            .insert((mra.recognising, mra.partner), mra.clone());
        Ok(())
    }
    fn put_consignment(&mut self, c: &Consignment) -> Result<(), String> {
        self.check()?;
        self.consignments.insert(c.id.clone(), c.clone());
        Ok(())
    }
    fn remove_consignment(&mut self, id: &str) -> Result<(), String> {
        self.check()?;
        self.consignments.remove(id);
        Ok(())
    }
}

impl Registry {
    fn check(&self) -> Result<(), String> {
        if self.fail {
            Err("disk full".into())
        } else {
            Ok(())
        }
    }
}

const OP: &str = "EU-AEO:DE123456789012345";

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn op() -> OperatorId {
    OperatorId::parse(OP).expect("operator id")
}

fn record(v: u16) -> RegistryRecord {
    RegistryRecord {
        v,
        operator: op(),
        name: "Operator".into(),
        authorisations: vec![Authorisation::Aeof],
        status: AeoStatus::Active,
        status_since: ts("2025-01-01T00:00:00Z"),
        valid_from: ts("2025-01-01T00:00:00Z"),
        valid_to: None,
        roles: vec![],
        contact_point: None,
        linked_ids: vec![],
        source: "national list".into(),
        as_of: ts("2026-01-01T00:00:00Z"),
    }
}

fn mra(v: u16) -> MraRecord {
    MraRecord {
        v,
        recognising: Programme::EuAeo,
        partner: Programme::UsCtpat,
        in_force_from: ts("2020-01-01T00:00:00Z"),
        in_force_to: None,
        security_only: true,
        name: "EU-US MRA".into(),
    }
}

fn consignment(v: u16, id: &str) -> Consignment {
    Consignment {
        v,
        id: id.into(),
        containers: vec![DeclaredContainer {
            number: "CSQU3054383".parse().expect("container"),
            seals: vec![],
            eseals: vec![],
        }],
        parties: vec![],
        holds: vec![],
        ports: vec!["PORT1".into()],
        as_of: ts("2026-02-01T00:00:00Z"),
    }
}

fn with_operator() -> Registry {
    let mut r = Registry::default();
    r.operators.insert(OP.into(), record(SCHEMA_VERSION));
    r
}

fn with_consignment() -> Registry {
    let mut r = Registry::default();
    r.consignments
        .insert("K1".into(), consignment(SCHEMA_VERSION, "K1"));
    r
}

fn set_status(status: AeoStatus, at: &str) -> Change {
    Change::SetStatus {
        operator: op(),
        status,
        reason: "audit finding".into(),
        actor: "officer".into(),
        at: ts(at),
    }
}

fn suspended_at(at: &str) -> RegistryRecord {
    let mut r = record(SCHEMA_VERSION);
    r.status = AeoStatus::Suspended;
    r.status_since = ts(at);
    r.as_of = ts(at);
    r
}

/// (name, registry before, change, registry after or the refusal)
type Row = (
    &'static str,
    Registry,
    Change,
    Result<Registry, ApplyError<String>>,
);

#[test]
fn every_change_kind_gives_the_registry_the_table_says() {
    const T: &str = "2026-03-05T12:00:00Z";
    let newer = SCHEMA_VERSION + 1;
    let too_new = |found| {
        Err(ApplyError::Schema(SchemaError::TooNew {
            found,
            supported: SCHEMA_VERSION,
        }))
    };
    let table: Vec<Row> = vec![
        (
            "an upsert inserts a new operator",
            Registry::default(),
            Change::UpsertOperator {
                record: record(SCHEMA_VERSION),
            },
            Ok(with_operator()),
        ),
        (
            "an upsert replaces the operator's record whole",
            with_operator(),
            Change::UpsertOperator {
                record: suspended_at(T),
            },
            Ok({
                let mut r = Registry::default();
                r.operators.insert(OP.into(), suspended_at(T));
                r
            }),
        ),
        (
            "a status change sets status, status_since and as_of to the change's time",
            with_operator(),
            set_status(AeoStatus::Suspended, T),
            Ok({
                let mut r = Registry::default();
                r.operators.insert(OP.into(), suspended_at(T));
                r
            }),
        ),
        (
            "a status change of an operator not held is refused",
            Registry::default(),
            set_status(AeoStatus::Revoked, T),
            Err(ApplyError::UnknownOperator(op())),
        ),
        (
            "an MRA upsert stores it under its two programmes",
            Registry::default(),
            Change::UpsertMra {
                mra: mra(SCHEMA_VERSION),
            },
            Ok({
                let mut r = Registry::default();
                r.mras
                    .insert((Programme::EuAeo, Programme::UsCtpat), mra(SCHEMA_VERSION));
                r
            }),
        ),
        (
            "a consignment upsert stores it under its id",
            Registry::default(),
            Change::UpsertConsignment {
                consignment: consignment(SCHEMA_VERSION, "K1"),
            },
            Ok(with_consignment()),
        ),
        (
            "a removal removes the consignment",
            with_consignment(),
            Change::RemoveConsignment { id: "K1".into() },
            Ok(Registry::default()),
        ),
        (
            "removing a consignment not held changes nothing",
            with_consignment(),
            Change::RemoveConsignment { id: "K2".into() },
            Ok(with_consignment()),
        ),
        (
            "an operator record of a newer schema is refused",
            Registry::default(),
            Change::UpsertOperator {
                record: record(newer),
            },
            too_new(newer),
        ),
        (
            "an MRA of a newer schema is refused",
            Registry::default(),
            Change::UpsertMra { mra: mra(newer) },
            too_new(newer),
        ),
        (
            "a consignment of a newer schema is refused",
            Registry::default(),
            Change::UpsertConsignment {
                consignment: consignment(newer, "K9"),
            },
            too_new(newer),
        ),
        (
            "a storage failure is the sink's error",
            Registry {
                fail: true,
                ..with_operator()
            },
            set_status(AeoStatus::Suspended, T),
            Err(ApplyError::Sink("disk full".into())),
        ),
    ];
    for (name, before, change, want) in table {
        let mut reg = before.clone();
        let got = change.apply(&mut reg);
        match want {
            Ok(after) => {
                assert_eq!(got, Ok(()), "{name}");
                assert_eq!(reg, after, "{name}");
            }
            Err(e) => {
                assert_eq!(got, Err(e), "{name}");
                assert_eq!(reg, before, "{name}: a refused change writes nothing");
            }
        }
    }
}

#[test]
fn a_status_change_keeps_every_other_field_of_the_record() {
    let mut reg = with_operator();
    let mut rec = record(SCHEMA_VERSION);
    rec.name = "Renamed".into();
    rec.linked_ids = vec![OperatorId::parse("EU-AEO:DE999999999999999").expect("id")];
    reg.operators.insert(OP.into(), rec.clone());
    set_status(AeoStatus::Active, "2026-04-01T00:00:00Z")
        .apply(&mut reg)
        .expect("applied");
    let got = &reg.operators[OP];
    assert_eq!(got.name, "Renamed");
    assert_eq!(got.linked_ids, rec.linked_ids);
    assert_eq!(got.valid_from, rec.valid_from);
    assert_eq!(got.source, rec.source);
}
