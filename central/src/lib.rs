//! aeogate central: the collector every gate agent reports to, the AEO registry
//! authority that signs what agents replicate, and the seal-exception case desk.
//!
//! # Layout
//! - [`config`]: typed configuration, loadable from TOML.
//! - [`model`]: central's own records (stored events, gate health, alerts, cases, audit).
//! - [`store`]: the narrow [`store::Store`] interface and its redb implementation
//!   (storage only; the rules below are called by it).
//! - [`store_error`]: [`store::StoreError`], what a storage backend reports; every
//!   operation family's error can carry one.
//! - [`ingest`]: hash-chain, deduplication and acknowledgement rules for agent batches.
//! - [`cases`]: the case life cycle (`OPEN → ACKNOWLEDGED → RESOLVED`) and when a case
//!   opens or gets a note during ingest.
//! - [`stats`]: which hourly figures a decision counts under; an hour's exception rate.
//! - [`rollup`]: the programme roll-ups kept at ingest (counts per hour, group and
//!   decision, time-at-gate histogram) behind the programme figures.
//! - [`portal`]: the AEO programme portal's records and rules (companies, self-assessment,
//!   application, validation findings, messages).
//! - [`ratelimit`]: per-client request rate limit for the staff API and dashboard.
//! - [`registry`]: import of operator / MRA / consignment files; per-port change batches.
//! - [`signing`]: the ed25519 key file and signed envelopes.
//! - [`snapshots`]: chunked snapshots: their chunks kept in files, served by manifest id.
//! - [`auth`]: agent and session tokens, staff passwords, the client certificate a
//!   connection presented.
//! - [`service`]: [`Central`], the operations the API, dashboard, CLI and demo call (the
//!   only way handlers reach the store), one error enum per operation family.
//! - [`errors`]: each family's error to an HTTP status, once; the JSON error answer.
//! - [`export`]: CSV and GS1 EPCIS 2.0 JSON-LD exports of decided gate transactions.
//! - [`api`]: the HTTP routes ([`app`]).
//! - [`dashboard`]: the staff dashboard in the browser (exceptions, cases, gate health,
//!   charts, programme benefit figures, registry), merged into [`app`].
//! - [`server`]: the wiring: HTTPS / loopback HTTP serving with graceful shutdown
//!   ([`serve`]) on SIGTERM or SIGINT ([`server::cancel_on_signals`]); nothing imports it.
//! - [`telemetry`]: every metric family's description, the series present from the
//!   start, build info and `process_*` series.
pub mod api;
pub mod auth;
pub mod cases;
pub mod config;
pub mod dashboard;
pub mod errors;
pub mod export;
pub mod ingest;
pub mod model;
pub mod portal;
pub mod ratelimit;
pub mod registry;
pub mod rollup;
pub mod server;
pub mod service;
pub mod signing;
pub mod snapshots;
pub mod stats;
pub mod store;
pub mod store_error;
pub mod telemetry;
#[cfg(test)]
pub(crate) mod test_decision;

pub use api::app;
pub use config::{Config, TlsConfig};
pub use model::Summary;
pub use server::{serve, serve_with_listener};
pub use service::{Central, FOLD_BATCHES, fold_pause};
pub use signing::generate_signing_key;
