//! The aeogate edge agent: the daemon on the gate box.
//!
//! Reads lane hardware, assembles one gate transaction per truck, decides the lane
//! (FAST / STANDARD / INSPECT) from a local replica of the AEO registry and advance cargo
//! data, journals everything durably and forwards it to central.
//!
//! # Layout
//! - [`config`]: the agent's TOML configuration, validated into typed structs (one check
//!   method per section); errors name the key and the line.
//! - [`assembler`]: sans-IO, per lane: folds presence and reads into gate transactions.
//! - [`decider`]: the pure lane decision (policy, routes, reasons, random selection) over a
//!   [`replica::ReplicaView`].
//! - [`replica`]: the replica's rules: view, meta, freshness, the sequence rule, change
//!   application, the in-memory replica.
//! - [`store`]: redb storage: the hash-chained journal in the store file and the registry
//!   replica in its own file beside it (split into handle, journal, replica and migration
//!   parts).
//! - [`journal`]: the running journal: the group-commit writer, records held while the
//!   disk refuses writes, the alarm, the journal's health, the "appended" notification.
//! - [`lane_work`]: the journal's and read log's writes in progress, which the uplink
//!   yields to.
//! - [`readlog`]: the read log: lane events written durably before a source answers
//!   the device, consumed by the journal write that records them, replayed at start.
//! - [`live`]: what every lane is doing now, and every device's health ([`live::HealthReporter`]).
//! - [`backoff`]: exponential backoff with full jitter for reconnections and retries.
//! - [`pipeline`]: the lane task: assembler → decide → journal → actuate.
//! - [`sources`]: serial drivers (lane board link, BB-7E UHF module), the MQTT source (with
//!   vendor payload formats) and the LLRP reader client; each reconnects by itself and
//!   reports its health.
//! - [`actuators`]: lane decisions to link lane commands and MQTT lane topics.
//! - [`devices`]: the device supervisor: one task per serial device and LLRP reader,
//!   started, stopped and restarted as a reload adds, removes or changes them.
//! - [`uplink`]: drains the journal to central; heartbeats. [`uplink::drain`] is its sans-IO
//!   core (batch plan, cursor, stalls, backoff).
//! - [`replication`]: verified, sequenced registry replication from central.
//! - [`reload`]: live reconfiguration: what a new configuration changes (sans-IO
//!   [`reload::plan`]: applied live or refused, naming keys that need a restart), SIGHUP
//!   and the control socket that `edge-agent reload` talks to.
//! - [`state`]: [`state::AppState`], what the console's router serves from.
//! - [`officer`]: sans-IO officer actions: who may act, the override policy, what an
//!   action must carry, the state an override shows.
//! - [`api`]: the console's HTTP JSON API, SSE feed, metrics and health probes.
//! - [`console`]: the officer console and terminal operator screens, accounts, sessions.
//! - [`telemetry`]: the Prometheus recorder and its buckets, every metric family's
//!   description, the series present from the start, build info, `process_*` series and
//!   the periodic gauges.
//! - [`clock`]: trusted time: the clock measured against central on every exchange
//!   (sans-IO filter and its shell), the host's synchronisation state, board drift.
//! - [`runtime`]: wiring and shutdown; nothing imports it.

pub mod actuators;
pub mod api;
pub mod assembler;
pub mod backoff;
pub mod clock;
pub mod config;
pub mod console;
pub mod decider;
pub mod devices;
pub mod journal;
pub mod lane_work;
pub mod live;
pub mod officer;
pub mod pipeline;
pub mod readlog;
pub mod reload;
pub mod replica;
pub mod replication;
pub mod runtime;
pub mod sources;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod uplink;
