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
//!
//! # Layout
//! - `collect`: reading and joining the decided transactions ([`collect`], [`GateEvent`]).
//! - `csv_table`: the CSV table ([`write_csv`]).
//! - `epcis`: the EPCIS document ([`epcis_document`]).
//! - `locations`: SGLNs, the location base and time zones ([`ExportConfig`]).
//!
//! [`Decision::is_seal_exception`]: protocol::schema::Decision::is_seal_exception

mod collect;
mod csv_table;
mod epcis;
mod locations;

pub use collect::{CaseRef, ExportQuery, GateEvent, collect};
pub use csv_table::{CSV_COLUMNS, write_csv};
pub use epcis::{EventKind, epcis_document, epcis_events, event_id};
pub use locations::{ExportConfig, GateLocations, LocationBase, LocationError, Sgln, Zone};

use std::io;

use jiff::Timestamp;

use crate::store::StoreError;

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
    Csv(#[from] ::csv::Error),
    #[error("writing the export: {0}")]
    Io(#[from] io::Error),
}
