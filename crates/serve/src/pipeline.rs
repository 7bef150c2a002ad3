//! The queue between the sources and the detection, and the processor thread that runs the
//! same engine, collector and stateful tracker as `kubeward detect`.
//!
//! Sources reserve room for a batch's events before accepting it ([`Queue::try_reserve`]): the
//! webhook answers 429 when there is none, the follower waits. Room is given back once the batch
//! is processed and its alerts are handed to the sinks, so the queue depth is what was accepted
//! and not yet done.

use crate::metrics::Metrics;
use crate::sinks::Sinks;
use crate::spool::Spool;
use audit::Chunk;
use crossbeam_channel::{Receiver, Sender};
use detect::alert::Location;
use detect::change::Change;
use detect::{Collector, Engine, EngineOptions, Output, Suppressions, Tracker};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Alerting deliveries remembered for de-duplication without a state file (as `detect`).
const DEDUP_WINDOW: usize = 1_000_000;
/// Processed batches forgotten in one spool transaction at most.
const FORGET_EVERY: usize = 64;

/// Where a batch came from.
#[derive(Debug)]
pub enum Origin {
    /// A webhook request; `inbox` is its spool row when batches are kept on disk.
    Webhook {
        /// Spool row to delete once processed.
        inbox: Option<i64>,
    },
    /// Lines of a followed file.
    File {
        /// Shown in alerts' `source.path`.
        name: String,
        /// Lines of this file before the batch (for `source.line`).
        first_line: u64,
        /// The position after the batch, saved with its changes (stateful runs).
        position: Option<(String, store::Position)>,
    },
}

/// A batch of events, one JSON object per line.
#[derive(Debug)]
pub struct Work {
    /// The events, newline-separated.
    pub lines: Vec<u8>,
    /// How many events (the room reserved in the queue).
    pub events: u64,
    /// Its source.
    pub origin: Origin,
    /// When it was received.
    pub received: Instant,
}

/// What the processor is told.
pub enum Msg {
    /// Process a batch.
    Work(Work),
    /// Use these suppressions from now on (SIGHUP).
    Reload(Suppressions),
    /// Finish: everything sent before is processed, then the processor returns.
    Stop,
}

/// The bounded queue in front of the processor.
pub struct Queue {
    tx: Sender<Msg>,
    /// Set when the processor has returned: nothing sent is processed any more.
    closed: AtomicBool,
    in_flight: AtomicU64,
    cap: u64,
    metrics: Arc<Metrics>,
}

impl Queue {
    /// A queue for `cap` events, and the processor's end of it.
    pub fn new(cap: usize, metrics: Arc<Metrics>) -> (Arc<Queue>, Receiver<Msg>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        (
            Arc::new(Queue {
                tx,
                closed: AtomicBool::new(false),
                in_flight: AtomicU64::new(0),
                cap: cap as u64,
                metrics,
            }),
            rx,
        )
    }

    /// Reserves room for `n` events; `false` when the queue is full. A batch larger than the
    /// whole queue is still taken when the queue is empty, so that it can ever be accepted.
    pub fn try_reserve(&self, n: u64) -> bool {
        let mut cur = self.in_flight.load(Ordering::Relaxed);
        loop {
            if cur > 0 && cur + n > self.cap {
                return false;
            }
            match self.in_flight.compare_exchange_weak(
                cur,
                cur + n,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.metrics.queue_depth.store(cur + n, Ordering::Relaxed);
                    return true;
                }
                Err(now) => cur = now,
            }
        }
    }

    /// Takes room for `n` events even beyond the capacity (batches acknowledged by an earlier
    /// run, replayed from the spool at start).
    pub fn force_reserve(&self, n: u64) {
        let before = self.in_flight.fetch_add(n, Ordering::AcqRel);
        self.metrics
            .queue_depth
            .store(before + n, Ordering::Relaxed);
    }

    /// Waits for room (the follower: a file can wait, and waiting is its backpressure).
    /// `false` when `stop` is set first, or the processor is gone.
    pub fn reserve_blocking(&self, n: u64, stop: &AtomicBool) -> bool {
        loop {
            if self.try_reserve(n) {
                return true;
            }
            if stop.load(Ordering::Relaxed) || self.closed.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Gives back room reserved and not used.
    pub fn release(&self, n: u64) {
        let before = self.in_flight.fetch_sub(n, Ordering::AcqRel);
        self.metrics
            .queue_depth
            .store(before.saturating_sub(n), Ordering::Relaxed);
    }

    /// Whether the queue is full (for `/readyz`).
    pub fn is_full(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) >= self.cap
    }

    /// Hands over a batch whose room was reserved. `false` when the processor has stopped.
    pub fn send(&self, w: Work) -> bool {
        self.tx.send(Msg::Work(w)).is_ok()
    }

    /// Marks the processor as gone (it returned, or panicked): waiting for room ends.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    /// Tells the processor to finish what was sent and return.
    pub fn stop(&self) {
        let _ = self.tx.send(Msg::Stop);
    }

    /// Tells the processor to use new suppressions.
    pub fn reload(&self, s: Suppressions) {
        let _ = self.tx.send(Msg::Reload(s));
    }
}

/// The detection: one thread, batches in arrival order.
pub struct Processor {
    /// Engine settings (the suppressions are swapped on reload).
    pub engine_opts: EngineOptions,
    /// The engine.
    pub engine: Engine,
    /// Stateful tracker, when stateful.
    pub tracker: Option<Tracker>,
    /// Where alerts go.
    pub sinks: Sinks,
    /// The spool's connection for deleting processed batches.
    pub spool: Option<Spool>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The queue (to give back room).
    pub queue: Arc<Queue>,
    /// Deliver suppressed alerts too.
    pub show_suppressed: bool,
    /// Set when processing cannot go on (the state file failed): the server shuts down, and
    /// batches not processed stay in the spool.
    pub fatal: Arc<AtomicBool>,
    /// A second connection to the state file, with a spool: to note how far stored alerts
    /// reached the sinks, and to deliver at start those a crash kept from them.
    pub alerts_db: Option<store::Store>,
}

impl Processor {
    /// Delivers what an earlier run left undelivered, then processes what is sent until told
    /// to stop ([`Queue::stop`]); returns the sinks to drain.
    pub fn run(mut self, rx: Receiver<Msg>) -> Sinks {
        let mut collector = Collector::new(DEDUP_WINDOW);
        let mut seq = 0u64;
        let mut done = Vec::new();
        self.redeliver();
        loop {
            // Processed batches are forgotten together, when the queue is empty or many wait:
            // one spool commit for many batches.
            if !done.is_empty() && (rx.is_empty() || done.len() >= FORGET_EVERY) {
                self.forget(&mut done);
            }
            let Ok(msg) = rx.recv() else { break };
            match msg {
                Msg::Reload(s) => {
                    self.engine = Engine::new(self.engine_opts.clone(), s.clone());
                    if let Some(t) = &mut self.tracker {
                        t.set_suppressions(s);
                    }
                    tracing::info!("suppressions reloaded");
                }
                Msg::Stop => break,
                Msg::Work(w) => {
                    if self.fatal.load(Ordering::Relaxed) {
                        // Not processed: it stays in the spool (if any) for the next start.
                        self.queue.release(w.events);
                        continue;
                    }
                    seq += 1;
                    if let Some(id) = self.one(&mut collector, seq, w) {
                        done.push(id);
                    }
                }
            }
        }
        self.forget(&mut done);
        self.sinks.flush();
        // Closed rather than dropped: dropping a connection swallows what its close (the last
        // checkpoint of the state file) reports.
        if let Some(t) = self.tracker.take() {
            if let Err(e) = t.close() {
                tracing::error!("closing the state file: {e}");
            }
        }
        if let Some(db) = self.alerts_db.take() {
            if let Err(e) = db.close() {
                tracing::error!("closing the state file's second connection: {e}");
            }
        }
        self.sinks
    }

    /// Delivers the alerts stored in the state file after the last one the sinks are known to
    /// have had: a crash between the state's commit and the sinks' write would otherwise lose
    /// them for the sinks. A new spool starts at the state's last alert (alerts of earlier
    /// `kubeward detect` runs are not sent).
    fn redeliver(&mut self) {
        let (Some(db), Some(spool)) = (&self.alerts_db, &self.spool) else {
            return;
        };
        let r = (|| -> Result<usize, String> {
            let Some(seen) = spool.delivered_seq().map_err(|e| e.to_string())? else {
                let last = db.last_alert_seq().map_err(|e| e.to_string())?;
                spool.set_delivered_seq(last).map_err(|e| e.to_string())?;
                return Ok(0);
            };
            let missed = db.alerts_after(seen).map_err(|e| e.to_string())?;
            let Some(last) = missed.last().map(|a| a.seq) else {
                return Ok(0);
            };
            for a in &missed {
                let suppressed = serde_json::from_str::<serde_json::Value>(&a.json)
                    .map(|v| v.get("suppressed_by").is_some_and(|s| !s.is_null()))
                    .unwrap_or(false);
                self.metrics.alert(&a.rule_id, suppressed);
                if !suppressed || self.show_suppressed {
                    self.sinks.deliver(&a.json);
                }
            }
            self.sinks.flush();
            spool.set_delivered_seq(last).map_err(|e| e.to_string())?;
            Ok(missed.len())
        })();
        match r {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                "{n} alerts stored by an earlier run had not reached the sinks (a crash): delivered now"
            ),
            Err(e) => tracing::error!("cannot check for alerts an earlier run did not deliver: {e}"),
        }
    }

    /// Notes that every alert stored so far reached the sinks.
    fn mark_delivered(&self) {
        if let (Some(db), Some(spool)) = (&self.alerts_db, &self.spool) {
            let r = db
                .last_alert_seq()
                .map_err(|e| e.to_string())
                .and_then(|seq| spool.set_delivered_seq(seq).map_err(|e| e.to_string()));
            if let Err(e) = r {
                tracing::warn!("cannot note the alerts delivered: {e}");
            }
        }
    }

    /// Deletes processed batches from the spool.
    fn forget(&mut self, ids: &mut Vec<i64>) {
        if let Some(spool) = &self.spool {
            if let Err(e) = spool.remove_inbox(ids) {
                // Processed again on the next start; the state's de-duplication by auditID
                // keeps that from alerting twice.
                tracing::warn!("{e}");
            }
        }
        ids.clear();
    }

    /// Processes one batch; returns its spool row once it may be forgotten.
    fn one(&mut self, collector: &mut Collector, seq: u64, w: Work) -> Option<i64> {
        let events = w.events;
        let received = w.received;
        let (name, first_line, position, inbox) = match w.origin {
            Origin::Webhook { inbox } => (format!("webhook#{seq}"), 0, None, inbox),
            Origin::File {
                name,
                first_line,
                position,
            } => (name, first_line, position, None),
        };
        let chunk = Chunk::from_lines(seq, w.lines);
        let rep = self.engine.process(&chunk);
        drop(chunk);
        self.metrics
            .events_parsed
            .fetch_add(rep.events + rep.prefiltered, Ordering::Relaxed);
        collector.begin_at(&name, first_line);
        let mut alerts = Vec::new();
        let mut changes: Vec<(Change, Location)> = Vec::new();
        let metrics = &self.metrics;
        collector.absorb(rep, &mut |o| match o {
            Output::Alert(a) => alerts.push(a),
            Output::Change(c, at) => changes.push((*c, at)),
            Output::Malformed { at, reason } => {
                metrics.events_malformed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    source = %at.path,
                    line = at.line,
                    item = at.item,
                    "malformed audit record skipped: {reason}"
                );
            }
        });
        for a in alerts {
            match serde_json::to_string(&a) {
                Ok(json) => self.deliver_json(&a, &json),
                Err(e) => tracing::error!("cannot serialise an alert: {e}"),
            }
        }
        let mut ok = true;
        let mut stored = false;
        if let Some(t) = &mut self.tracker {
            if !changes.is_empty() || position.is_some() {
                let pos = position.as_ref().map(|(s, p)| (s.as_str(), p));
                match t.apply_batch(changes, pos) {
                    Ok(reported) => {
                        stored = !reported.is_empty();
                        for r in reported {
                            self.deliver_json(&r.alert, &r.json);
                        }
                    }
                    Err(e) => {
                        ok = false;
                        tracing::error!(
                            "stateful detection stopped: {e}; shutting down (unprocessed batches stay in the spool)"
                        );
                        self.fatal.store(true, Ordering::Relaxed);
                    }
                }
            }
        }
        self.sinks.flush();
        if stored {
            self.mark_delivered();
        }
        self.queue.release(events);
        self.metrics.processing.observe(received.elapsed());
        inbox.filter(|_| ok)
    }

    fn deliver_json(&mut self, a: &detect::Alert, json: &str) {
        let suppressed = a.suppressed_by.is_some();
        self.metrics.alert(a.rule_id, suppressed);
        if suppressed && !self.show_suppressed {
            return;
        }
        self.sinks.deliver(json);
    }
}
