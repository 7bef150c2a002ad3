//! kubeward: Kubernetes audit-log detection.

mod cli;
mod detect_cmd;
mod print;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Detect(args) => detect_cmd::run(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("kubeward: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
