//! What both binaries' `/metrics` share: the `process_*` series (CPU, memory, open files,
//! start time), described once and read at each scrape, and the exposition's content type.

use std::sync::OnceLock;

/// The content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

fn process() -> &'static metrics_process::Collector {
    static PROCESS: OnceLock<metrics_process::Collector> = OnceLock::new();
    PROCESS.get_or_init(metrics_process::Collector::default)
}

/// Describes the `process_*` families (once, after the recorder is installed).
pub fn describe_process() {
    process().describe();
}

/// Reads the `process_*` series; called at each scrape.
pub fn collect_process() {
    process().collect();
}
