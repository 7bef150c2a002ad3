//! `kubeward detect`.

use crate::cli::{Color, DetectArgs, Format};
use crate::print::Printer;
use anyhow::{Context, Result};
use audit::{expand, open, run_ordered, InputSpec, ReadOptions};
use detect::clusterrole_pod_write::RuleOptions;
use detect::{Collector, Config, Engine, EngineOptions, Output, Suppressions};
use indicatif::{ProgressBar, ProgressStyle};
use rbac::{KubeVersion, PodWriteOptions};
use std::io::{self, IsTerminal, Write};
use std::time::Instant;

/// Alerting deliveries remembered for de-duplication.
const DEDUP_WINDOW: usize = 1_000_000;
/// Inputs larger than this get a progress bar (when stderr is a terminal).
const PROGRESS_MIN_BYTES: u64 = 64 << 20;

pub fn run(args: DetectArgs) -> Result<u8> {
    let started = Instant::now();
    let kube_version = match &args.kube_version {
        Some(v) => Some(KubeVersion::parse(v).with_context(|| {
            format!("--kube-version {v:?} is not a Kubernetes version (e.g. 1.34 or v1.35.1)")
        })?),
        None => None,
    };
    let config = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read config {}", p.display()))?;
            Config::parse(&p.display().to_string(), &text)?
        }
        None => Config::default(),
    };
    let suppressions = Suppressions::new(&config);
    let inputs = expand(&args.paths)?;

    let stdout = io::stdout();
    let format = args.format.unwrap_or(if stdout.is_terminal() {
        Format::Text
    } else {
        Format::Json
    });
    let color = match args.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let mut printer = Printer::new(
        io::BufWriter::with_capacity(64 * 1024, stdout.lock()),
        format,
        color,
    );
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let read_opts = ReadOptions {
        chunk_size: 8 << 20,
        max_record: args.max_line_bytes,
        mmap: !args.no_mmap,
    };

    let total: u64 = inputs
        .iter()
        .map(|i| match i {
            InputSpec::File(p) => std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
            InputSpec::Stdin => 0,
        })
        .sum();
    let progress =
        (!args.quiet && io::stderr().is_terminal() && total >= PROGRESS_MIN_BYTES).then(|| {
            let pb = ProgressBar::new(total);
            pb.set_style(
                ProgressStyle::with_template(
                    "{spinner} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {wide_msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            pb
        });

    let mut collector = Collector::new(DEDUP_WINDOW);
    let mut stderr = io::stderr().lock();
    let mut fatal: Option<anyhow::Error> = None;
    let mut out_err: Option<io::Error> = None;
    for spec in &inputs {
        let name = spec.display();
        let opened = open(spec, read_opts)?;
        let engine = Engine::new(
            EngineOptions {
                rule: RuleOptions {
                    pod_write: PodWriteOptions::for_version(kube_version),
                    cluster: args.cluster.clone(),
                    kube_version,
                    log_hint: matches!(spec, InputSpec::File(_)).then(|| name.clone()),
                },
                prefilter: !args.no_prefilter,
                max_record: args.max_line_bytes,
            },
            suppressions.clone(),
        );
        if let Some(pb) = &progress {
            pb.set_message(name.clone());
        }
        // gzip is decompressed: its chunks are larger than the file, so progress counts file size.
        let per_byte = if opened.gzip { 0 } else { 1 };
        collector.begin(&name);
        run_ordered(
            opened.chunks,
            threads,
            |chunk| (engine.process(chunk), chunk.bytes().len() as u64),
            |res| match res {
                Ok((rep, bytes)) => {
                    if let Some(pb) = &progress {
                        pb.inc(bytes * per_byte);
                    }
                    collector.absorb(rep, &mut |o| match o {
                        Output::Alert(a) => {
                            if a.suppressed_by.is_some() && !args.show_suppressed {
                                return;
                            }
                            if out_err.is_none() {
                                if let Err(e) = printer.alert(&a) {
                                    out_err = Some(e);
                                }
                            }
                        }
                        Output::Malformed { at, reason } => {
                            let item = at.item.map(|i| format!(" [item {i}]")).unwrap_or_default();
                            let _ = writeln!(stderr, "{}:{}{item}: {reason}", at.path, at.line);
                        }
                    });
                }
                Err(e) => {
                    collector.tally.read_errors += 1;
                    let _ = writeln!(
                        stderr,
                        "{name}: read error after line {}: {e}; the rest of this input was not read",
                        collector.line()
                    );
                }
            },
        );
        if opened.gzip {
            if let (Some(pb), InputSpec::File(p)) = (&progress, spec) {
                pb.inc(std::fs::metadata(p).map(|m| m.len()).unwrap_or(0));
            }
        }
        if let Some(e) = out_err.take() {
            // A closed pipe (`| head`) is a normal way to stop reading.
            if e.kind() == io::ErrorKind::BrokenPipe {
                return Ok(0);
            }
            fatal = Some(anyhow::Error::new(e).context("cannot write alerts"));
            break;
        }
    }
    if let Some(pb) = progress {
        pb.finish_and_clear();
    }
    if let Err(e) = printer.finish() {
        if e.kind() != io::ErrorKind::BrokenPipe {
            fatal.get_or_insert(anyhow::Error::new(e).context("cannot write alerts"));
        }
    }
    let t = collector.tally;
    if !args.quiet {
        let skipped = if args.no_prefilter {
            String::new()
        } else {
            format!(" ({} lines skipped by the prefilter)", t.prefiltered)
        };
        let _ = writeln!(
            stderr,
            "kubeward: {} input{}, {} lines, {} events parsed{skipped}, {} malformed, {} duplicates dropped, {} alert{}, {} suppressed{}{} in {:.2}s",
            t.inputs,
            if t.inputs == 1 { "" } else { "s" },
            t.lines,
            t.events,
            t.malformed,
            t.duplicates,
            t.alerts,
            if t.alerts == 1 { "" } else { "s" },
            t.suppressed,
            if t.suppressed > 0 && !args.show_suppressed { " (--show-suppressed prints them)" } else { "" },
            if t.read_errors > 0 { format!(", {} read errors", t.read_errors) } else { String::new() },
            started.elapsed().as_secs_f64()
        );
    }
    if let Some(e) = fatal {
        return Err(e);
    }
    if t.read_errors > 0 {
        return Ok(2);
    }
    Ok(match args.exit_code {
        Some(n) if t.alerts > 0 => n,
        _ => 0,
    })
}
