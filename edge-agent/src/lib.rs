//! The aeogate edge agent: the daemon on the gate box.
//!
//! Reads lane hardware, assembles one gate transaction per truck, decides the lane
//! (FAST / STANDARD / INSPECT) from a local replica of the AEO registry and advance cargo
//! data, journals everything durably and forwards it to central.
//!
//! # Layout
//! - [`config`]: the agent's TOML configuration, validated into typed structs; errors name
//!   the key and the line.
//! - [`assembler`]: sans-IO, per lane: folds presence and reads into gate transactions.
//! - [`decider`]: the pure lane decision (policy, reasons, random selection) over a
//!   [`decider::ReplicaView`].
//! - [`store`]: redb storage: the hash-chained journal and the registry replica.

pub mod assembler;
pub mod config;
pub mod decider;
pub mod store;
pub mod sources;
