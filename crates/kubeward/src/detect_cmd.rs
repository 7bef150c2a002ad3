//! `kubeward detect`.

use crate::cli::{Color, DetectArgs, Format};
use crate::print::{show, Printer};
use crate::state_sink::{Batch, StateSink};
use anyhow::{Context, Result};
use audit::{expand, open, open_at, Framing, InputSpec, ReadOptions};
use detect::alert::Location;
use detect::change::Change;
use detect::clusterrole_pod_write::RuleOptions;
use detect::{Collector, Config, Engine, EngineOptions, Output, Suppressions, Tracker};
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
    let stateful = args.state.is_some() || !args.rbac_snapshot.is_empty() || args.stateful;
    let rule_opts = |log_hint: Option<String>| RuleOptions {
        pod_write: PodWriteOptions::for_version(kube_version),
        cluster: args.cluster.clone(),
        kube_version,
        log_hint,
    };
    let mut tracker = if stateful {
        Some(open_tracker(&args, rule_opts(None), suppressions.clone())?)
    } else {
        None
    };

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
    let printer = Printer::new(
        io::BufWriter::with_capacity(64 * 1024, stdout),
        format,
        color,
    );
    // The stateful tracker has a thread of its own and is busy for most of the run: one
    // parsing worker fewer keeps the cores from being oversubscribed. Measured with --state on
    // the generated 1M-event log, 2 cores: one worker, its reader and the tracker 303 ms; two
    // workers, their reader and the tracker 341 ms.
    let threads = args
        .threads
        .unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            if stateful {
                cores - 1
            } else {
                cores
            }
        })
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

    // Where earlier runs with this state stopped, read before the tracker moves to its thread.
    let mut plans = Vec::with_capacity(inputs.len());
    for spec in &inputs {
        let source = match (spec, &tracker) {
            (InputSpec::File(p), Some(_)) => Some(SourceId::of(p)?),
            _ => None,
        };
        let resume = match (&source, &tracker) {
            (Some(src), Some(t)) => t.position(&src.key)?.filter(|pos| {
                pos.offset > 0
                    && audit::input::fingerprint_matches(&src.path, &pos.fingerprint)
                        .unwrap_or(false)
            }),
            _ => None,
        };
        plans.push((source, resume));
    }
    let (mut printer, sink) = match tracker.take() {
        Some(t) => (
            None,
            Some(StateSink::spawn(
                t,
                printer,
                args.show_suppressed,
                !args.no_bootstrap_roles,
            )),
        ),
        None => (Some(printer), None),
    };

    let mut collector = Collector::new(DEDUP_WINDOW);
    // Not locked for the whole run: the stateful tracker thread may also write to stderr.
    let mut stderr = io::stderr();
    let mut fatal: Option<anyhow::Error> = None;
    let mut out_err: Option<io::Error> = None;
    let mut sink_stopped = false;
    for (spec, (source, resume)) in inputs.iter().zip(plans) {
        let name = spec.display();
        let opened = match &resume {
            Some(pos) => open_at(spec, read_opts, pos.offset)?,
            None => open(spec, read_opts)?,
        };
        let resumed = resume
            .as_ref()
            .filter(|pos| opened.start_offset == pos.offset && pos.offset > 0);
        if let (Some(pos), false) = (resumed, args.quiet) {
            let _ = writeln!(
                stderr,
                "kubeward: {name}: continuing after line {} (read by an earlier run with this --state)",
                pos.line
            );
        }
        // Positions are byte offsets in the file: only plain JSON-lines files can resume.
        let track_position = source.is_some() && !opened.gzip && opened.framing == Framing::Lines;
        let mut offset = opened.start_offset;
        // Cleared by an over-long line: the position saved stays the last one known exactly,
        // and a rerun reads again from there (what it sees again is recognised and skipped).
        let mut offsets_known = true;
        let input_format: audit::InputFormat = args.input_format.into();
        // The native fast path stays as it is unless the input is known to be wrapped.
        let envelopes = match input_format {
            audit::InputFormat::K8s => false,
            audit::InputFormat::Auto => opened.shape == audit::HeadShape::Envelope,
            _ => true,
        };
        let engine = Engine::new(
            EngineOptions {
                rule: rule_opts(matches!(spec, InputSpec::File(_)).then(|| name.clone())),
                prefilter: !args.no_prefilter,
                max_record: args.max_line_bytes,
                stateful,
                input_format,
                envelopes,
            },
            suppressions.clone(),
        );
        if let Some(pb) = &progress {
            pb.set_message(name.clone());
        }
        // gzip is decompressed: its chunks are larger than the file, so progress counts file size.
        let per_byte = if opened.gzip { 0 } else { 1 };
        collector.begin_at(&name, resumed.map_or(0, |p| p.line));
        // Reading a mapped file is mostly the kernel filling in its pages: with the tracker
        // on a thread of its own, the one parsing worker should not also do that.
        let driver = audit::Driver {
            workers: threads,
            read_ahead: stateful,
        };
        driver.run(
            opened.chunks,
            |chunk| {
                let b = chunk.bytes();
                // A last line without its newline may still be being written: a saved
                // position stops before it, so that the next run reads it whole.
                let tail = match b.iter().rposition(|&c| c == b'\n') {
                    Some(i) => b.len() - i - 1,
                    None => b.len(),
                };
                // An over-long line is skipped without being kept, so its bytes are not in
                // the chunk: offsets after it are not known.
                let exact = !matches!(chunk.kind, audit::ChunkKind::OversizeLine { .. });
                (engine.process(chunk), b.len() as u64, tail as u64, exact)
            },
            |res| match res {
                Ok((rep, bytes, tail, exact)) => {
                    offsets_known &= exact;
                    if sink_stopped {
                        return;
                    }
                    if let Some(pb) = &progress {
                        pb.inc(bytes * per_byte);
                    }
                    offset += bytes;
                    let mut changes: Vec<(Change, Location)> = Vec::new();
                    collector.absorb(rep, &mut |o| match o {
                        Output::Alert(a) => {
                            if let Some(p) = printer.as_mut() {
                                show(p, &a, None, args.show_suppressed, &mut out_err);
                            }
                        }
                        Output::Change(c, at) => changes.push((*c, at)),
                        Output::Malformed { at, reason } => {
                            let item = at.item.map(|i| format!(" [item {i}]")).unwrap_or_default();
                            let _ = writeln!(stderr, "{}:{}{item}: {reason}", at.path, at.line);
                        }
                    });
                    if let Some(sink) = &sink {
                        let position = source
                            .as_ref()
                            .filter(|_| track_position && offsets_known)
                            .map(|src| {
                                (
                                    src.key.clone(),
                                    store::Position {
                                        offset: offset - tail,
                                        line: collector.line() - u64::from(tail > 0),
                                        fingerprint: src.fingerprint.clone(),
                                    },
                                )
                            });
                        if !sink.send(Batch { changes, position }) {
                            sink_stopped = true;
                        }
                    }
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
        if sink_stopped {
            break;
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
    let mut stats = None;
    if let Some(sink) = sink {
        let done = sink.finish()?;
        collector.tally.alerts += done.alerts;
        collector.tally.suppressed += done.suppressed;
        if let Some(e) = done.error {
            fatal.get_or_insert(e.context("stateful detection stopped"));
        }
        if let Some(e) = done.out_err {
            if e.kind() == io::ErrorKind::BrokenPipe {
                return Ok(0);
            }
            fatal.get_or_insert(anyhow::Error::new(e).context("cannot write alerts"));
        }
        stats = Some(done.stats);
        printer = Some(done.printer);
    }
    if let Some(Err(e)) = printer.as_mut().map(Printer::finish) {
        if e.kind() != io::ErrorKind::BrokenPipe {
            fatal.get_or_insert(anyhow::Error::new(e).context("cannot write alerts"));
        }
    }
    let t = collector.tally.clone();
    if !args.quiet {
        // Before the summary line, which stays the last: managed clusters' records.
        let u = t.unwrapped;
        if u.total() > 0 {
            let per: Vec<String> = [("eks", u.eks), ("gke", u.gke), ("aks", u.aks)]
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(c, n)| format!("{c} {n}"))
                .collect();
            let pre = if t.unwrapped_prefiltered > 0 {
                format!(
                    ", {} of them skipped by the prefilter",
                    t.unwrapped_prefiltered
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                stderr,
                "kubeward: {} audit event{} unwrapped from managed-cluster records ({}){pre}",
                u.total(),
                if u.total() == 1 { "" } else { "s" },
                per.join(", ")
            );
        }
        for (kind, n) in &t.skipped {
            let _ = writeln!(
                stderr,
                "kubeward: skipped {n} record{} without an audit event: {kind}",
                if *n == 1 { "" } else { "s" }
            );
        }
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
        if let Some(s) = stats {
            let _ = writeln!(
                stderr,
                "kubeward: state: {} objects loaded, {} seeded from snapshots; {} changes applied, {} unverified (no body), {} out of order, {} already processed; {} controller rewrites attributed; {} alerts reported by an earlier run",
                s.loaded, s.seeded, s.applied, s.unverified, s.stale, s.redelivered, s.attributed, s.repeated_alerts
            );
        }
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

/// An input file as the state file knows it.
struct SourceId {
    path: std::path::PathBuf,
    /// The canonical path: the same file named two ways is one source.
    key: String,
    fingerprint: String,
}

impl SourceId {
    fn of(p: &std::path::Path) -> Result<SourceId> {
        let canon = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let fingerprint = audit::input::fingerprint(p, u64::MAX)
            .with_context(|| format!("cannot read {}", p.display()))?;
        Ok(SourceId {
            key: canon.display().to_string(),
            path: p.to_path_buf(),
            fingerprint,
        })
    }
}

/// Opens (or creates) the state, then seeds it from snapshots. The bootstrap policy is added
/// on the tracker's thread ([`StateSink::spawn`]), while reading starts.
fn open_tracker(
    args: &DetectArgs,
    opts: RuleOptions,
    suppressions: Suppressions,
) -> Result<Tracker> {
    let store = match &args.state {
        Some(p) => store::Store::open(p)?,
        None => store::Store::in_memory()?,
    };
    let mut tracker = Tracker::open(store, opts, suppressions)?;
    if !args.rbac_snapshot.is_empty() {
        let snap = rbac::Snapshot::load(&args.rbac_snapshot, &rbac::LoadOptions::default());
        let mut stderr = io::stderr().lock();
        for e in &snap.errors {
            if let rbac::LoadError::Read { .. } = e {
                anyhow::bail!("--rbac-snapshot: {e}");
            }
            let _ = writeln!(stderr, "kubeward: --rbac-snapshot: {e} (skipped)");
        }
        let label = args
            .rbac_snapshot
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(",");
        tracker.seed(&snap, &label)?;
    }
    Ok(tracker)
}
