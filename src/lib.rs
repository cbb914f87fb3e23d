//! The `aeogate` package as a library: the parts of the command line that tests and the
//! demo drive directly.
//!
//! # Layout
//! - [`vboard`]: the virtual lane board: the real firmware on simulated pins and readers,
//!   linked to the edge agent over a pseudo-terminal; lane scripts and the `aeogate board`
//!   entry point ([`vboard::run_board_cli`]).

// Pseudo-terminals are a Unix facility.
#[cfg(unix)]
pub mod vboard;
