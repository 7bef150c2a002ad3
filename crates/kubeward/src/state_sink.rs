//! The stateful tracker on a thread of its own: the reading, parsing thread pool and the
//! in-order collector keep going while RBAC changes are applied and stored, so that the
//! tracker's work overlaps the parsing instead of adding to it.

use crate::print::{show, Printer};
use anyhow::Result;
use detect::alert::Location;
use detect::change::Change;
use detect::state::Reported;
use detect::Tracker;
use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The tracker applies each batch as soon as it arrives (so it keeps pace with the parsing
/// threads instead of leaving them a backlog at the end) but commits, and then prints the
/// alerts, only every [`COMMIT_CHANGES`] changes or [`COMMIT_DELAY`] after the first change
/// not yet committed, and at the end. Every commit writes each page it touched to the WAL
/// again (the auditID index is touched all over), so a few large transactions cost far less
/// than many small ones, and a fraction of a second does not matter to alerts from a log.
const COMMIT_CHANGES: usize = 4096;
const COMMIT_DELAY: Duration = Duration::from_millis(250);
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
    /// Starts the tracker's thread. With `bootstrap`, it first fills in Kubernetes' bootstrap
    /// policy ([`Tracker::assume_bootstrap`]): parsing it takes a few milliseconds that the
    /// reading threads need not wait for.
    pub fn spawn(
        mut tracker: Tracker,
        printer: Printer<W>,
        show_suppressed: bool,
        bootstrap: bool,
    ) -> Self {
        let (tx, rx) = sync_channel(QUEUE);
        let handle = std::thread::Builder::new()
            .name("kubeward-state".into())
            .spawn(move || {
                if bootstrap {
                    tracker.assume_bootstrap();
                }
                run(rx, tracker, printer, show_suppressed)
            })
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

/// Alerts applied but not yet committed, and since when.
struct Pending {
    alerts: Vec<Reported>,
    changes: usize,
    since: Option<Instant>,
}

fn run<W: Write>(
    rx: Receiver<Batch>,
    mut tracker: Tracker,
    mut printer: Printer<W>,
    show_suppressed: bool,
) -> Done<W> {
    let mut alerts = 0;
    let mut suppressed = 0;
    let mut error = None;
    let mut out_err: Option<io::Error> = None;
    let mut pending = Pending {
        alerts: Vec::new(),
        changes: 0,
        since: None,
    };
    // Commits, then prints what the commit stored: a run killed later has printed
    // everything it stored before, and nothing it did not.
    let mut commit =
        |tracker: &mut Tracker, pending: &mut Pending| -> Result<(), detect::StateError> {
            pending.changes = 0;
            pending.since = None;
            let reported = std::mem::take(&mut pending.alerts);
            tracker.commit()?;
            for r in reported {
                if r.alert.suppressed_by.is_some() {
                    suppressed += 1;
                } else {
                    alerts += 1;
                }
                show(
                    &mut printer,
                    &r.alert,
                    Some(&r.json),
                    show_suppressed,
                    &mut out_err,
                );
            }
            if out_err.is_none() {
                if let Err(e) = printer.flush() {
                    out_err = Some(e);
                }
            }
            Ok(())
        };
    loop {
        let next = match pending.since {
            None => rx.recv().ok(),
            Some(since) => match rx.recv_timeout(COMMIT_DELAY.saturating_sub(since.elapsed())) {
                Ok(b) => Some(b),
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = commit(&mut tracker, &mut pending) {
                        error = Some(anyhow::Error::new(e));
                        break;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => None,
            },
        };
        let Some(batch) = next else {
            // The input is done: commit what is left.
            if let Err(e) = commit(&mut tracker, &mut pending) {
                error = Some(anyhow::Error::new(e));
            }
            break;
        };
        let n = batch.changes.len();
        let pos = batch.position.as_ref().map(|(s, p)| (s.as_str(), p));
        match tracker.apply_uncommitted(batch.changes, pos) {
            Ok(reported) => {
                pending.alerts.extend(reported);
                pending.changes += n;
                if tracker.uncommitted() {
                    pending.since.get_or_insert_with(Instant::now);
                }
            }
            Err(e) => {
                error = Some(anyhow::Error::new(e));
                break;
            }
        }
        // Also when batches keep coming (the timeout above only fires on an empty queue).
        if pending.changes >= COMMIT_CHANGES
            || pending.since.is_some_and(|t| t.elapsed() >= COMMIT_DELAY)
        {
            if let Err(e) = commit(&mut tracker, &mut pending) {
                error = Some(anyhow::Error::new(e));
                break;
            }
        }
    }
    Done {
        tracker,
        printer,
        alerts,
        suppressed,
        error,
        out_err,
    }
}
