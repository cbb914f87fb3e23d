//! The `aeogate` package as a library: the parts of the command line that tests and the
//! demo drive directly.
//!
//! # Layout
//! - [`vboard`]: the virtual lane board: the real firmware on simulated pins and readers,
//!   linked to the edge agent over a pseudo-terminal; lane scripts and the `aeogate board`
//!   entry point ([`vboard::run_board_cli`]).
//! - [`vreader`]: the virtual fixed UHF reader speaking LLRP (`aeogate reader llrp`).
//! - [`broker`]: an in-process MQTT broker (rumqttd) on loopback, for the demo and the
//!   benchmarks.
//! - [`child`]: stopping a child process within a bound.
//! - [`bench`]: `aeogate bench`, the benchmark figures of issue 9, each beside its
//!   baseline.

/// `aeogate bench`: the whole-run benchmark figures (docs/benchmarks.md).
pub mod bench;

/// In-process MQTT broker on loopback.
pub mod broker;

/// Stopping child processes within a bound.
pub mod child;

// Pseudo-terminals are a Unix facility.
#[cfg(unix)]
pub mod vboard;

/// The virtual LLRP reader.
pub mod vreader;
