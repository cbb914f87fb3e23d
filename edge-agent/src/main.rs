//! The aeogate edge agent.
use clap::Parser;

/// aeogate edge agent: reads lane hardware, decides lanes, forwards events to central.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    anyhow::bail!("the edge agent daemon is not implemented yet")
}
