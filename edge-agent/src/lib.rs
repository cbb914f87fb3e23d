//! The aeogate edge agent library (see the binary `edge-agent`).
