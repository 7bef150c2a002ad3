//! The stateful tracker on a thread of its own: the reading, parsing thread pool and the
//! in-order collector keep going while RBAC changes are applied and stored, so that the
//! tracker's work overlaps the parsing instead of adding to it.

use crate::print::{show, Printer};
use anyhow::Result;
use detect::alert::Location;
use detect::change::Change;
use detect::state::Reported;
use detect::state::TrackerStats;
use detect::{StateError, Tracker};
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
    /// The tracker's final counts (it is closed by then).
    pub stats: TrackerStats,
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

/// The tracker's thread: applies batches, commits, and prints what each commit stored.
struct Applier<W: Write> {
    tracker: Tracker,
    printer: Printer<W>,
    show_suppressed: bool,
    alerts: u64,
    suppressed: u64,
    out_err: Option<io::Error>,
    /// Alerts applied but not committed yet.
    held: Vec<Reported>,
    /// Changes applied since the last commit.
    changes: usize,
    /// When the first change not committed yet was applied.
    since: Option<Instant>,
}

impl<W: Write> Applier<W> {
    /// Applies batches until the input is done, then commits what is left.
    fn drain(&mut self, rx: &Receiver<Batch>) -> Result<(), StateError> {
        loop {
            let next = match self.since {
                None => rx.recv().ok(),
                Some(since) => {
                    match rx.recv_timeout(COMMIT_DELAY.saturating_sub(since.elapsed())) {
                        Ok(b) => Some(b),
                        Err(RecvTimeoutError::Timeout) => {
                            self.commit()?;
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => None,
                    }
                }
            };
            match next {
                Some(batch) => self.apply(batch)?,
                None => return self.commit(),
            }
        }
    }

    fn apply(&mut self, batch: Batch) -> Result<(), StateError> {
        let n = batch.changes.len();
        let pos = batch.position.as_ref().map(|(s, p)| (s.as_str(), p));
        let reported = self.tracker.apply_uncommitted(batch.changes, pos)?;
        self.held.extend(reported);
        self.changes += n;
        if self.tracker.uncommitted() {
            self.since.get_or_insert_with(Instant::now);
        }
        // Also when batches keep coming (the timeout in `drain` fires only on an empty queue).
        if self.changes >= COMMIT_CHANGES || self.since.is_some_and(|t| t.elapsed() >= COMMIT_DELAY)
        {
            self.commit()?;
        }
        Ok(())
    }

    /// Commits, then prints what the commit stored: a run killed later has printed
    /// everything it stored before, and nothing it did not.
    fn commit(&mut self) -> Result<(), StateError> {
        self.changes = 0;
        self.since = None;
        let reported = std::mem::take(&mut self.held);
        self.tracker.commit()?;
        // Checkpointing here, while the input is still being read, rather than all at the
        // close lets the syncs it waits for overlap the reading (about 10 ms of a 340 ms
        // --state run on the generated 1M-event log). Only an optimisation: a failure leaves
        // the work to the close, and real trouble with the file shows at the next commit.
        let _ = self.tracker.checkpoint();
        for r in reported {
            if r.alert.suppressed_by.is_some() {
                self.suppressed += 1;
            } else {
                self.alerts += 1;
            }
            show(
                &mut self.printer,
                &r.alert,
                Some(&r.json),
                self.show_suppressed,
                &mut self.out_err,
            );
        }
        if self.out_err.is_none() {
            if let Err(e) = self.printer.flush() {
                self.out_err = Some(e);
            }
        }
        Ok(())
    }
}

fn run<W: Write>(
    rx: Receiver<Batch>,
    tracker: Tracker,
    printer: Printer<W>,
    show_suppressed: bool,
) -> Done<W> {
    let mut a = Applier {
        tracker,
        printer,
        show_suppressed,
        alerts: 0,
        suppressed: 0,
        out_err: None,
        held: Vec::new(),
        changes: 0,
        since: None,
    };
    let drained = a.drain(&rx);
    // Closed here, not by the caller, so that a failing close is reported like any other
    // trouble with the file. `detect` exits once the tracker is done: its model is left to the
    // exit (freeing it from the main thread took ~20 ms, from this one ~6 ms).
    let stats = a.tracker.stats();
    let closed = a.tracker.close_before_exit();
    let error = drained
        .and(closed.map(|_| ()))
        .err()
        .map(anyhow::Error::new);
    Done {
        stats,
        printer: a.printer,
        alerts: a.alerts,
        suppressed: a.suppressed,
        error,
        out_err: a.out_err,
    }
}
