//! aeogate central: collector, registry authority and seal-exception cases.
//!
//! # Layout
//! - [`model`]: central's own records (stored events, gate health, alerts, cases, audit).
//! - [`store`]: the narrow [`store::Store`] interface and its redb implementation.
//! - [`ingest`]: hash-chain, deduplication and acknowledgement rules for agent batches.
//! - [`cases`]: the case life cycle.
pub mod cases;
pub mod ingest;
pub mod model;
pub mod store;
