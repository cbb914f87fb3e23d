//! aeogate central.
use clap::Parser;

/// aeogate central: collects gate events, signs the AEO registry, tracks seal-exception cases.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    anyhow::bail!("central is not implemented yet")
}
