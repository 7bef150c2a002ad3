//! kubeward: Kubernetes audit-log detection.

mod alerts_cmd;
mod cli;
mod detect_cmd;
mod git_cmd;
mod print;
mod rbac_cmd;
mod scan_cmd;
mod state_sink;

use clap::Parser;
use std::process::ExitCode;

/// mimalloc instead of the system allocator: changes are made on the parsing threads and freed
/// on the tracker's, and glibc's per-thread arenas made that traffic close to a third of the
/// stateful tracker's time (allocation, consolidation, arena growth), measured. Built without
/// transparent huge pages (`no_thp`): with them, freed and reused heap memory came back as
/// fresh 2 MiB pages, and zeroing those took a tenth of a `--state` run.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Detect(args) => detect_cmd::run(args),
        cli::Command::Rbac(args) => rbac_cmd::run(args),
        cli::Command::Alerts(args) => alerts_cmd::run(args),
        cli::Command::Serve(args) => serve::run(*args).map(|()| 0).map_err(anyhow::Error::new),
        cli::Command::Git(args) => git_cmd::run(args),
        cli::Command::Scan(args) => scan_cmd::run(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // A closed pipe (`| head`) is a reader that has seen enough, not a failure.
            let broken_pipe = e.chain().any(|c| {
                let kind = c
                    .downcast_ref::<std::io::Error>()
                    .map(std::io::Error::kind)
                    .or_else(|| {
                        c.downcast_ref::<serde_json::Error>()
                            .and_then(serde_json::Error::io_error_kind)
                    });
                kind == Some(std::io::ErrorKind::BrokenPipe)
            });
            if broken_pipe {
                return ExitCode::SUCCESS;
            }
            eprintln!("kubeward: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
