//! Identifier tools (being written).
use std::process::ExitCode;

pub fn epc_decode(_values: &[String]) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}

pub fn container_check(_values: &[String]) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
