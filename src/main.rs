//! The `aeogate` command line: identifier tools for installers and integrators,
//! the virtual lane board, and the demo.
//!
//! # Layout
//! - [`tools`]: `epc decode`, `container check` (one JSON object per input line).
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod tools;

/// aeogate: AEO priority lanes at the port-of-entry gate.
#[derive(Debug, Parser)]
#[command(version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// GS1 EPC tools.
    #[command(subcommand)]
    Epc(EpcCommand),
    /// ISO 6346 container number tools.
    #[command(subcommand)]
    Container(ContainerCommand),
}

#[derive(Debug, Subcommand)]
enum EpcCommand {
    /// Decode EPC memory-bank hex (SGTIN-96, SSCC-96, GRAI-96, GIAI-96; other headers as
    /// raw URIs).
    ///
    /// Reads one value per line from standard input when no value is given, and prints one
    /// JSON object per value, in order: {"input","valid":true,"scheme","uri","tag_uri",
    /// "hex","bits", and the fields} or {"input","valid":false,"error"}. A blank line is
    /// reported as invalid ("no EPC given"), so output line N always answers input line N.
    /// Exit status: 0 all valid, 1 any invalid, 2 usage error.
    Decode {
        /// EPC values as hex (spaces and a leading 0x are allowed).
        values: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ContainerCommand {
    /// Check ISO 6346 container numbers (owner code, category, serial, check digit).
    ///
    /// Reads one value per line from standard input when no value is given, and prints one
    /// JSON object per value, in order: {"input","valid":true,"owner","category","serial",
    /// "check_digit","canonical"} or {"input","valid":false,"error"}. A blank line is
    /// reported as invalid ("empty container number"), so output line N always answers
    /// input line N. Exit status: 0 all valid, 1 any invalid, 2 usage error.
    Check {
        /// Container numbers, e.g. CSQU3054383 or "csqu 305438 3".
        values: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version with exit 0 and usage errors with exit 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let result = match cli.command {
        Command::Epc(EpcCommand::Decode { values }) => tools::epc_decode(&values),
        Command::Container(ContainerCommand::Check { values }) => tools::container_check(&values),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("aeogate: {e:#}");
            ExitCode::from(2)
        }
    }
}
