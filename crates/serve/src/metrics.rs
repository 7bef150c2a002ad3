//! Counters for `GET /metrics`, in the Prometheus text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms' buckets.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram with fixed buckets.
#[derive(Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| s <= b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cum += self.counts[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        let n = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {n}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {n}");
    }
}

/// Everything `/metrics` shows. Shared by the receiver, the follower, the processor and the sinks.
#[derive(Default)]
pub struct Metrics {
    /// Events in accepted requests and read from followed files.
    pub events_received: AtomicU64,
    /// Events parsed by the detection.
    pub events_parsed: AtomicU64,
    /// Records that were not usable events (bad JSON, not an Event, over the size cap).
    pub events_malformed: AtomicU64,
    /// Events refused (queue full, body too large, bad request): never acknowledged.
    pub events_dropped: AtomicU64,
    /// Requests refused by reason.
    pub requests_refused: Mutex<BTreeMap<&'static str, u64>>,
    /// Requests accepted.
    pub requests_accepted: AtomicU64,
    /// Events accepted but not processed yet.
    pub queue_depth: AtomicU64,
    /// Alerts delivered, by rule.
    pub alerts: Mutex<BTreeMap<String, u64>>,
    /// Alerts suppressed, by rule.
    pub suppressed: Mutex<BTreeMap<String, u64>>,
    /// Failed delivery attempts by sink.
    pub sink_failures: Mutex<BTreeMap<String, u64>>,
    /// Alerts delivered by sink.
    pub sink_delivered: Mutex<BTreeMap<String, u64>>,
    /// Alerts waiting in HTTP sink outboxes.
    pub outbox_depth: AtomicU64,
    /// Followed-file rotations and truncations seen.
    pub follow_rotations: AtomicU64,
    /// Time from receipt to the end of processing, per batch.
    pub processing: Histogram,
    /// Time from the start of a webhook request to its acknowledgement.
    pub ack: Histogram,
}

fn bump<K: Ord>(m: &Mutex<BTreeMap<K, u64>>, k: K, n: u64) {
    if let Ok(mut m) = m.lock() {
        *m.entry(k).or_insert(0) += n;
    }
}

impl Metrics {
    /// Counts a refused request and its events.
    pub fn refused(&self, reason: &'static str, events: u64) {
        bump(&self.requests_refused, reason, 1);
        self.events_dropped.fetch_add(events, Relaxed);
    }

    /// Counts an alert delivered to the sinks.
    pub fn alert(&self, rule: &str, suppressed: bool) {
        let m = if suppressed {
            &self.suppressed
        } else {
            &self.alerts
        };
        bump(m, rule.to_string(), 1);
    }

    /// Counts a failed delivery attempt.
    pub fn sink_failure(&self, sink: &str) {
        bump(&self.sink_failures, sink.to_string(), 1);
    }

    /// Counts a delivered alert.
    pub fn sink_delivered(&self, sink: &str) {
        bump(&self.sink_delivered, sink.to_string(), 1);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(4096);
        let counter = |o: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(
            &mut o,
            "kubeward_events_received_total",
            "Audit events accepted from the webhook or read from followed files.",
            self.events_received.load(Relaxed),
        );
        counter(
            &mut o,
            "kubeward_events_parsed_total",
            "Audit events handled by the detection (parsed, or passed over unparsed by the prefilter).",
            self.events_parsed.load(Relaxed),
        );
        counter(
            &mut o,
            "kubeward_events_malformed_total",
            "Records that were not usable audit events.",
            self.events_malformed.load(Relaxed),
        );
        counter(
            &mut o,
            "kubeward_events_dropped_total",
            "Events in refused requests (the sender was told; nothing acknowledged is dropped).",
            self.events_dropped.load(Relaxed),
        );
        counter(
            &mut o,
            "kubeward_webhook_requests_accepted_total",
            "Webhook requests acknowledged.",
            self.requests_accepted.load(Relaxed),
        );
        let labelled = |o: &mut String,
                        name: &str,
                        help: &str,
                        label: &str,
                        m: &Mutex<BTreeMap<String, u64>>| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter");
            if let Ok(m) = m.lock() {
                for (k, v) in m.iter() {
                    let _ = writeln!(o, "{name}{{{label}=\"{}\"}} {v}", escape(k));
                }
            }
        };
        let _ = writeln!(
            o,
            "# HELP kubeward_webhook_requests_refused_total Webhook requests refused, by reason.\n# TYPE kubeward_webhook_requests_refused_total counter"
        );
        if let Ok(m) = self.requests_refused.lock() {
            for (k, v) in m.iter() {
                let _ = writeln!(
                    o,
                    "kubeward_webhook_requests_refused_total{{reason=\"{k}\"}} {v}"
                );
            }
        }
        labelled(
            &mut o,
            "kubeward_alerts_total",
            "Alerts raised, by rule.",
            "rule",
            &self.alerts,
        );
        labelled(
            &mut o,
            "kubeward_alerts_suppressed_total",
            "Alerts suppressed, by rule.",
            "rule",
            &self.suppressed,
        );
        labelled(
            &mut o,
            "kubeward_sink_failures_total",
            "Failed alert deliveries, by sink.",
            "sink",
            &self.sink_failures,
        );
        labelled(
            &mut o,
            "kubeward_sink_delivered_total",
            "Alerts delivered, by sink.",
            "sink",
            &self.sink_delivered,
        );
        let gauge = |o: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            &mut o,
            "kubeward_queue_depth",
            "Events accepted and not processed yet.",
            self.queue_depth.load(Relaxed),
        );
        gauge(
            &mut o,
            "kubeward_outbox_depth",
            "Alerts waiting for an HTTP sink.",
            self.outbox_depth.load(Relaxed),
        );
        counter(
            &mut o,
            "kubeward_follow_rotations_total",
            "Rotations and truncations of followed files.",
            self.follow_rotations.load(Relaxed),
        );
        self.processing.render(
            &mut o,
            "kubeward_processing_seconds",
            "Time from receipt of a batch to the end of its detection.",
        );
        self.ack.render(
            &mut o,
            "kubeward_webhook_ack_seconds",
            "Time from the start of a webhook request to its acknowledgement.",
        );
        o
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.events_received.fetch_add(3, Relaxed);
        m.alert("clusterrole-pod-write", false);
        m.refused("queue_full", 400);
        m.processing.observe(Duration::from_millis(3));
        let t = m.render();
        assert!(t.contains("kubeward_events_received_total 3\n"), "{t}");
        assert!(
            t.contains("kubeward_alerts_total{rule=\"clusterrole-pod-write\"} 1\n"),
            "{t}"
        );
        assert!(t.contains("kubeward_events_dropped_total 400\n"), "{t}");
        assert!(
            t.contains("kubeward_processing_seconds_bucket{le=\"0.005\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("kubeward_processing_seconds_bucket{le=\"0.0025\"} 0\n"),
            "{t}"
        );
    }
}
