//! Alert delivery: standard output and a file (JSON lines, written by the processor thread
//! before a batch counts as done), and HTTP receivers fed from an outbox by tasks of their own,
//! so that a slow or absent receiver never holds up detection.

pub mod format;
pub mod http;

use crate::config::{HttpFormat, HttpTarget};
use crate::metrics::Metrics;
use crate::spool::Spool;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

/// Alerts kept in memory for an HTTP sink without a spool file; beyond this the oldest are
/// dropped (and logged): memory must stay bounded while a receiver is down for long.
const MEMORY_OUTBOX_CAP: usize = 100_000;

/// Where an outbox keeps its alerts.
enum Store {
    /// In the spool file: survives restarts.
    Disk(Mutex<Spool>),
    /// In memory: lost on exit (no `--state` or `--spool`).
    Memory(Mutex<VecDeque<(i64, String)>>, AtomicI64),
}

/// Alert bodies waiting for one HTTP sink.
pub struct Outbox {
    /// The sink's name (`http 0`, `slack 1`, ...), its key in the spool.
    pub name: String,
    store: Store,
    /// Woken when something is added.
    pub notify: tokio::sync::Notify,
    metrics: Arc<Metrics>,
}

impl Outbox {
    /// An outbox in the spool file when there is one, else in memory.
    pub fn new(
        name: String,
        spool: Option<&Path>,
        metrics: Arc<Metrics>,
    ) -> Result<Outbox, crate::spool::SpoolError> {
        let store = match spool {
            Some(p) => {
                let s = Spool::open(p)?;
                let n = s.outbox_len(&name)?;
                if n > 0 {
                    tracing::info!(sink = %name, "{n} alerts from an earlier run waiting for delivery");
                }
                metrics.outbox_depth.fetch_add(n, Ordering::Relaxed);
                Store::Disk(Mutex::new(s))
            }
            None => Store::Memory(Mutex::new(VecDeque::new()), AtomicI64::new(0)),
        };
        Ok(Outbox {
            name,
            store,
            notify: tokio::sync::Notify::new(),
            metrics,
        })
    }

    /// Adds a body.
    pub fn push(&self, body: String) {
        match &self.store {
            Store::Disk(s) => {
                let r = s
                    .lock()
                    .map_err(|_| "lock poisoned".to_string())
                    .and_then(|s| {
                        s.push_outbox(&[(self.name.clone(), body)])
                            .map_err(|e| e.to_string())
                    });
                if let Err(e) = r {
                    self.metrics.sink_failure(&self.name);
                    tracing::error!(sink = %self.name, "alert not queued for delivery: {e}");
                    return;
                }
            }
            Store::Memory(q, next) => {
                let Ok(mut q) = q.lock() else { return };
                if q.len() >= MEMORY_OUTBOX_CAP {
                    q.pop_front();
                    self.metrics.outbox_depth.fetch_sub(1, Ordering::Relaxed);
                    self.metrics.sink_failure(&self.name);
                    tracing::error!(sink = %self.name, "outbox full ({MEMORY_OUTBOX_CAP} alerts): the oldest alert was dropped; use --spool to keep them on disk");
                }
                q.push_back((next.fetch_add(1, Ordering::Relaxed), body));
            }
        }
        self.metrics.outbox_depth.fetch_add(1, Ordering::Relaxed);
        self.notify.notify_one();
    }

    /// The oldest body.
    pub fn peek(&self) -> Option<(i64, String)> {
        match &self.store {
            Store::Disk(s) => match s.lock().ok()?.next_outbox(&self.name) {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!(sink = %self.name, "{e}");
                    None
                }
            },
            Store::Memory(q, _) => q.lock().ok()?.front().cloned(),
        }
    }

    /// Forgets a delivered body.
    pub fn remove(&self, id: i64) {
        match &self.store {
            Store::Disk(s) => {
                if let Ok(s) = s.lock() {
                    if let Err(e) = s.remove_outbox(id) {
                        tracing::error!(sink = %self.name, "{e}");
                        return;
                    }
                }
            }
            Store::Memory(q, _) => {
                if let Ok(mut q) = q.lock() {
                    if q.front().map(|x| x.0) == Some(id) {
                        q.pop_front();
                    } else {
                        return;
                    }
                }
            }
        }
        self.metrics.outbox_depth.fetch_sub(1, Ordering::Relaxed);
    }

    /// Bodies waiting.
    pub fn len(&self) -> u64 {
        match &self.store {
            Store::Disk(s) => s
                .lock()
                .ok()
                .and_then(|s| s.outbox_len(&self.name).ok())
                .unwrap_or(0),
            Store::Memory(q, _) => q.lock().map(|q| q.len() as u64).unwrap_or(0),
        }
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the alerts survive a restart.
    pub fn durable(&self) -> bool {
        matches!(self.store, Store::Disk(_))
    }
}

/// An HTTP sink as the processor sees it: the body shape and its outbox.
pub struct HttpSink {
    /// Target.
    pub target: HttpTarget,
    /// Outbox.
    pub outbox: Arc<Outbox>,
}

/// Opens the alerts file for appending. A last line without its newline is what a crash in the
/// middle of a write leaves: it is cut off (and logged), so that the file stays JSON lines.
fn open_alerts_file(p: &Path) -> io::Result<File> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::options()
        .create(true)
        .read(true)
        .append(true)
        .open(p)?;
    let len = f.metadata()?.len();
    if len > 0 {
        let from = len.saturating_sub(1 << 20);
        f.seek(SeekFrom::Start(from))?;
        let mut tail = Vec::with_capacity((len - from) as usize);
        f.read_to_end(&mut tail)?;
        if tail.last() != Some(&b'\n') {
            let keep = match tail.iter().rposition(|&b| b == b'\n') {
                Some(i) => from + i as u64 + 1,
                None if from == 0 => 0,
                // No newline in the last MiB: not a torn alert line; leave the file alone
                // and start on a new line.
                None => {
                    f.write_all(b"\n")?;
                    return Ok(f);
                }
            };
            tracing::warn!(
                "{}: its last {} bytes are an incomplete line (a crash while writing); cut off",
                p.display(),
                len - keep
            );
            f.set_len(keep)?;
        }
    }
    Ok(f)
}

/// Every sink.
pub struct Sinks {
    stdout: Option<BufWriter<io::Stdout>>,
    /// The alerts file, and the lines of the current batch: written with one `write` per
    /// batch, so that a crash cannot tear a line in the middle of a batch's output.
    file: Option<(PathBuf, File, Vec<u8>)>,
    /// HTTP sinks.
    pub http: Vec<HttpSink>,
    metrics: Arc<Metrics>,
}

impl Sinks {
    /// Opens the file sink (appending) and sets up the others.
    pub fn new(
        stdout: bool,
        file: Option<&Path>,
        http: Vec<HttpSink>,
        metrics: Arc<Metrics>,
    ) -> io::Result<Sinks> {
        let file = match file {
            Some(p) => Some((p.to_path_buf(), open_alerts_file(p)?, Vec::new())),
            None => None,
        };
        Ok(Sinks {
            stdout: stdout.then(|| BufWriter::new(io::stdout())),
            file,
            http,
            metrics,
        })
    }

    /// Hands one alert to every sink. `json` is the alert as one line of JSON.
    pub fn deliver(&mut self, json: &str) {
        if let Some(out) = &mut self.stdout {
            if let Err(e) = writeln!(out, "{json}") {
                self.metrics.sink_failure("stdout");
                tracing::error!("stdout: {e}");
            } else {
                self.metrics.sink_delivered("stdout");
            }
        }
        if let Some((_, _, pending)) = &mut self.file {
            pending.extend_from_slice(json.as_bytes());
            pending.push(b'\n');
            self.metrics.sink_delivered("file");
        }
        if self.http.is_empty() {
            return;
        }
        let now = audit::time::format_utc_micros(audit::time::now_nanos());
        let value: serde_json::Value = match serde_json::from_str(json) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!("an alert is not JSON ({e}); not sent to the HTTP sinks");
                return;
            }
        };
        for h in &self.http {
            let body = match h.target.format {
                HttpFormat::Json => json.to_string(),
                HttpFormat::Slack => format::slack(&value).to_string(),
                HttpFormat::Falco => format::falco(&value, &now).to_string(),
            };
            h.outbox.push(body);
        }
    }

    /// Pushes buffered lines out (after each batch: an alert is not left in a buffer while the
    /// server waits for the next request).
    pub fn flush(&mut self) {
        if let Some(out) = &mut self.stdout {
            if let Err(e) = out.flush() {
                self.metrics.sink_failure("stdout");
                tracing::error!("stdout: {e}");
            }
        }
        if let Some((p, out, pending)) = &mut self.file {
            if !pending.is_empty() {
                if let Err(e) = out.write_all(pending) {
                    self.metrics.sink_failure("file");
                    tracing::error!(
                        "{}: {e}; {} bytes of alerts not written",
                        p.display(),
                        pending.len()
                    );
                }
                pending.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_cut_off_when_the_file_is_opened() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("alerts.jsonl");
        std::fs::write(&p, "{\"a\":1}\n{\"a\":").unwrap();
        let mut f = open_alerts_file(&p).unwrap();
        f.write_all(b"{\"b\":2}\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "{\"a\":1}\n{\"b\":2}\n"
        );
        // A whole file is left as it is.
        drop(f);
        open_alerts_file(&p).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "{\"a\":1}\n{\"b\":2}\n"
        );
    }
}
