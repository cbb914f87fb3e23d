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
//! - [`sources`]: serial drivers (lane board link, BB-7E UHF module) and the MQTT source;
//!   each reconnects by itself and reports its health.
//! - [`actuators`]: lane decisions to link lane commands and MQTT lane topics.
//! - [`runtime`]: wires the pipeline, background clients and console; shutdown.
//! - [`uplink`]: drains the journal to central; heartbeats.
//! - [`replication`]: verified, sequenced registry replication from central.
//! - [`api`]: the console's HTTP JSON API, SSE feed, metrics and health probes.
//! - [`console`]: the officer console and terminal operator screens, accounts, sessions.

pub mod actuators;
pub mod api;
pub mod assembler;
pub mod config;
pub mod console;
pub mod decider;
pub mod replica;
pub mod replication;
pub mod runtime;
pub mod sources;
pub mod store;
pub mod uplink;
