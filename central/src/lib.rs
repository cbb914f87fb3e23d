//! aeogate central library (see the binary `central`).
