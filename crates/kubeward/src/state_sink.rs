//! The stateful tracker on a thread of its own: the reading, parsing thread pool and the
//! in-order collector keep going while RBAC changes are applied and stored, so a run with
//! `--state` costs little more than one without.

use crate::print::{show, Printer};
use anyhow::Result;
use detect::alert::Location;
use detect::change::Change;
use detect::Tracker;
use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::thread::JoinHandle;

/// Changes gathered before they are applied in one transaction, when the tracker is behind.
const MERGE_CHANGES: usize = 8192;
/// A transaction waits up to this long for each further batch while it has fewer than
/// [`MIN_CHANGES`], and no longer than [`MERGE_MAX_WAIT`] in all. Every commit writes each page
/// it touched to the WAL again (the auditID index is touched all over), so a few large
/// transactions cost far less than many small ones, and a fraction of a second does not
/// matter to alerts from a log.
const MERGE_WAIT: std::time::Duration = std::time::Duration::from_millis(20);
const MERGE_MAX_WAIT: std::time::Duration = std::time::Duration::from_millis(250);
const MIN_CHANGES: usize = 2048;
/// Batches waiting for the tracker; the collector blocks beyond this, so memory stays flat.
const QUEUE: usize = 16;

/// The changes of one chunk, in input order, and how far the input has been read after it.
pub struct Batch {
    /// The changes.
    pub changes: Vec<(Change, Location)>,
    /// (source, position) for inputs that can resume.
    pub position: Option<(String, store::Position)>,
}

/// What the tracker thread hands back.
pub struct Done<W: Write> {
    pub tracker: Tracker,
    pub printer: Printer<W>,
    pub alerts: u64,
    pub suppressed: u64,
    /// Stateful detection stopped (the state file failed).
    pub error: Option<anyhow::Error>,
    /// Writing alerts failed (e.g. a closed pipe); the state was still brought up to date.
    pub out_err: Option<io::Error>,
}

pub struct StateSink<W: Write + Send + 'static> {
    tx: SyncSender<Batch>,
    handle: JoinHandle<Done<W>>,
}

impl<W: Write + Send + 'static> StateSink<W> {
    pub fn spawn(tracker: Tracker, printer: Printer<W>, show_suppressed: bool) -> Self {
        let (tx, rx) = sync_channel(QUEUE);
        let handle = std::thread::Builder::new()
            .name("kubeward-state".into())
            .spawn(move || run(rx, tracker, printer, show_suppressed))
            .expect("spawning a thread");
        StateSink { tx, handle }
    }

    /// Hands over a batch; `false` when the tracker has stopped (its error comes with
    /// [`StateSink::finish`]).
    pub fn send(&self, b: Batch) -> bool {
        self.tx.send(b).is_ok()
    }

    /// Waits for every batch to be applied.
    pub fn finish(self) -> Result<Done<W>> {
        drop(self.tx);
        self.handle
            .join()
            .map_err(|_| anyhow::anyhow!("the stateful tracker thread panicked"))
    }
}

fn source_of(b: &Batch) -> Option<&str> {
    b.position.as_ref().map(|(s, _)| s.as_str())
}

fn run<W: Write>(
    rx: Receiver<Batch>,
    mut tracker: Tracker,
    mut printer: Printer<W>,
    show_suppressed: bool,
) -> Done<W> {
    let mut done_alerts = 0;
    let mut suppressed = 0;
    let mut error = None;
    let mut out_err: Option<io::Error> = None;
    let mut carry: Option<Batch> = None;
    loop {
        let mut batch = match carry.take() {
            Some(b) => b,
            None => match rx.recv() {
                Ok(b) => b,
                Err(_) => break,
            },
        };
        // When behind, take what has queued up into the same transaction, as long as it is
        // the same input (a position names one input).
        let started = std::time::Instant::now();
        while batch.changes.len() < MERGE_CHANGES {
            let next = if batch.changes.len() < MIN_CHANGES && started.elapsed() < MERGE_MAX_WAIT {
                rx.recv_timeout(MERGE_WAIT).map_err(|e| match e {
                    std::sync::mpsc::RecvTimeoutError::Timeout => TryRecvError::Empty,
                    std::sync::mpsc::RecvTimeoutError::Disconnected => TryRecvError::Disconnected,
                })
            } else {
                rx.try_recv()
            };
            match next {
                Ok(next)
                    if source_of(&next).is_none()
                        || source_of(&next) == source_of(&batch)
                        || source_of(&batch).is_none() =>
                {
                    batch.changes.extend(next.changes);
                    if next.position.is_some() {
                        batch.position = next.position;
                    }
                }
                Ok(next) => {
                    carry = Some(next);
                    break;
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let pos = batch.position.as_ref().map(|(s, p)| (s.as_str(), p));
        match tracker.apply_batch(batch.changes, pos) {
            Ok(reported) => {
                for r in reported {
                    if r.alert.suppressed_by.is_some() {
                        suppressed += 1;
                    } else {
                        done_alerts += 1;
                    }
                    show(
                        &mut printer,
                        &r.alert,
                        Some(&r.json),
                        show_suppressed,
                        &mut out_err,
                    );
                }
                // Stored alerts reach the reader now, not when a buffer fills: a run killed
                // later has printed everything it stored before.
                if out_err.is_none() {
                    if let Err(e) = printer.flush() {
                        out_err = Some(e);
                    }
                }
            }
            Err(e) => {
                error = Some(anyhow::Error::new(e));
                break;
            }
        }
    }
    Done {
        tracker,
        printer,
        alerts: done_alerts,
        suppressed,
        error,
        out_err,
    }
}
