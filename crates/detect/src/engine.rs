//! The scan engine: per-chunk work (prefilter, parse, detect, suppress) that runs on every
//! core, and the in-order collector (line numbers, de-duplication, counts).

use crate::alert::{Alert, Location};
use crate::change::{self, Change, CHANGE_VERBS};
use crate::clusterrole_pod_write::{self, RuleOptions};
use crate::suppress::Suppressions;
use audit::envelope::{finish_event, looks_like_envelope};
use audit::framing::trim;
use audit::needle::looks_native;
use audit::{
    parse_record, visit_lines, Chunk, ChunkKind, Cloud, Event, InputFormat, LineIssue, LineNeedle,
    Origin, Piece, Record, Unwrapper,
};
use std::collections::{BTreeMap, HashSet, VecDeque};

/// The prefilter's first needle. The API server writes it in `objectRef.resource` and `requestURI` of
/// every ClusterRole event; a line without it cannot be one. Request bodies play no part in
/// the choice: an attacker controls those, and could only add candidates, never hide one.
pub const NEEDLE: &[u8] = b"clusterroles";

/// Second prefilter stage, for lines that hold the needle: whether a `"verb"` key is followed by
/// `create`, `update` or `patch`. The API server writes the verb of every event, so a write
/// event always passes; a body can only add matches, never remove the real one. Most lines that
/// mention cluster roles are reads, and skipping their full parse matters on large logs.
pub fn may_be_write(line: &[u8]) -> bool {
    verb_is_one_of(line, WRITE_VERBS)
}

/// Whether some `"verb"` key in the line is followed by one of `verbs` (as a whole string).
fn verb_is_one_of(line: &[u8], verbs: &[&str]) -> bool {
    memchr::memmem::find_iter(line, b"\"verb\"").any(|at| {
        let rest = skip_ws(&line[at + 6..]);
        let Some(rest) = rest.strip_prefix(b":") else {
            return false;
        };
        let Some(rest) = skip_ws(rest).strip_prefix(b"\"") else {
            return false;
        };
        verbs.iter().any(|v| {
            rest.strip_prefix(v.as_bytes())
                .is_some_and(|r| r.starts_with(b"\""))
        })
    })
}

/// The second stage for a line that holds an audit Event as a JSON *string* (an EKS
/// CloudWatch record, an AKS diagnostic record): the same test on the escaped text
/// (`\"verb\":\"create\"`). Only asked, under `--input-format auto`, of lines that hold the
/// needle and failed [`may_be_write`], so the native path does not pay for it.
pub fn may_be_escaped(line: &[u8], verbs: &[&str]) -> bool {
    memchr::memmem::find_iter(line, br#"\"verb\""#).any(|at| {
        let rest = skip_ws(&line[at + 8..]);
        let Some(rest) = rest.strip_prefix(b":") else {
            return false;
        };
        let Some(rest) = skip_ws(rest).strip_prefix(br#"\""#) else {
            return false;
        };
        verbs.iter().any(|v| {
            rest.strip_prefix(v.as_bytes())
                .is_some_and(|r| r.starts_with(br#"\""#))
        })
    })
}

/// The verbs [`may_be_write`] looks for.
const WRITE_VERBS: &[&str] = &["create", "update", "patch"];

/// The prefilter's needle in stateful mode: every RBAC resource name (`clusterroles`, `roles`,
/// `clusterrolebindings`, `rolebindings`) contains it, in `objectRef.resource` and the URI.
pub const STATE_NEEDLE: &[u8] = b"role";

/// Second prefilter stage in stateful mode: a `"verb"` key followed by a verb that changes
/// objects (create, update, patch, delete, deletecollection). Same reasoning as
/// [`may_be_write`].
pub fn may_be_change(line: &[u8]) -> bool {
    verb_is_one_of(line, CHANGE_VERBS)
}

fn skip_ws(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The detection's settings.
    pub rule: RuleOptions,
    /// Skip lines without [`NEEDLE`] before parsing.
    pub prefilter: bool,
    /// Longest record kept.
    pub max_record: usize,
    /// Stateful detection: hand every RBAC change to the tracker ([`Finding::Change`])
    /// instead of judging ClusterRole events on their own.
    pub stateful: bool,
    /// How records are read (`--input-format`).
    pub input_format: InputFormat,
    /// Every record of this input goes through the unwrapper: a cloud format was forced, or
    /// `auto` found a managed cluster's wrapper as the input's first record. Otherwise
    /// records take the native path, and only those that fail it are tried as wrappers
    /// (under `auto`).
    pub envelopes: bool,
}

/// Something found in a chunk, with its line relative to the chunk.
#[derive(Debug)]
pub enum Finding {
    /// An alert (suppressed ones carry `suppressed_by`).
    Alert {
        /// Relative line.
        rel_line: u64,
        /// EventList item index.
        item: Option<usize>,
        /// The alert.
        alert: Box<Alert>,
        /// The managed cluster's export it came from.
        format: Option<&'static str>,
    },
    /// An RBAC change, for the stateful tracker.
    Change {
        /// Relative line.
        rel_line: u64,
        /// EventList item index.
        item: Option<usize>,
        /// The change.
        change: Box<Change>,
        /// The managed cluster's export it came from.
        format: Option<&'static str>,
    },
    /// A record that could not be used.
    Malformed {
        /// Relative line.
        rel_line: u64,
        /// EventList item index.
        item: Option<usize>,
        /// Why.
        reason: String,
    },
}

/// The outcome of one chunk.
#[derive(Debug, Default)]
pub struct ChunkReport {
    /// Lines covered.
    pub lines: u64,
    /// Whitespace-only lines.
    pub blank: u64,
    /// Lines the prefilter skipped.
    pub prefiltered: u64,
    /// Events parsed (EventList items count one each).
    pub events: u64,
    /// Alerts and malformed records, in input order.
    pub findings: Vec<Finding>,
    /// Audit events taken out of managed clusters' records.
    pub unwrapped: Unwrapped,
    /// Of those, the ones the prefilter skipped unparsed.
    pub unwrapped_prefiltered: u64,
    /// Valid records that hold no audit event, by kind.
    pub skipped: BTreeMap<String, u64>,
}

/// Audit events unwrapped, per managed-cluster service.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Unwrapped {
    /// From EKS CloudWatch Logs records.
    pub eks: u64,
    /// From GKE Cloud Audit Logs entries.
    pub gke: u64,
    /// From AKS diagnostic records.
    pub aks: u64,
}

impl Unwrapped {
    fn add(&mut self, c: Cloud) {
        match c {
            Cloud::Eks => self.eks += 1,
            Cloud::Gke => self.gke += 1,
            Cloud::Aks => self.aks += 1,
        }
    }

    /// All of them.
    pub fn total(&self) -> u64 {
        self.eks + self.gke + self.aks
    }
}

/// What the work on one chunk gathers besides line counts.
#[derive(Default)]
struct Acc {
    findings: Vec<Finding>,
    events: u64,
    unwrapped: Unwrapped,
    unwrapped_prefiltered: u64,
    skipped: BTreeMap<String, u64>,
}

/// Runs the detection on chunks. Shared by reference between worker threads.
pub struct Engine {
    opts: EngineOptions,
    suppressions: Suppressions,
    finder: Option<LineNeedle>,
    unwrapper: Unwrapper,
}

impl Engine {
    /// A new engine.
    pub fn new(opts: EngineOptions, suppressions: Suppressions) -> Self {
        let needle = if opts.stateful { STATE_NEEDLE } else { NEEDLE };
        // Under `auto` the needle scan also stops at lines that do not look native, so that
        // wrappers mixed into a native input reach the unwrapper (see `process`); under
        // `k8s`, so that they are reported instead of silently skipped (a compressed
        // payload never holds the needle).
        let guard = matches!(opts.input_format, InputFormat::Auto | InputFormat::K8s);
        let finder = opts.prefilter.then(|| {
            let n = LineNeedle::new(needle).with_line_guard(guard);
            if opts.stateful {
                // `role`: `r` and `l` two apart are rarer in audit logs than `ro` (see
                // `with_second_byte`).
                n.with_second_byte(2)
            } else {
                n
            }
        });
        let unwrapper = Unwrapper::new(opts.input_format, opts.max_record);
        Engine {
            opts,
            suppressions,
            finder,
            unwrapper,
        }
    }

    /// Processes one chunk.
    pub fn process(&self, chunk: &Chunk) -> ChunkReport {
        let mut rep = ChunkReport::default();
        let acc = std::cell::RefCell::new(Acc::default());
        match &chunk.kind {
            ChunkKind::Lines => {
                let mut not_writes = 0;
                let envelopes = self.opts.envelopes;
                // A wrapped input is read record by record: the needle is looked for in each
                // unwrapped event instead (a compressed payload cannot hold it).
                let finder = if envelopes {
                    None
                } else {
                    self.finder.as_ref()
                };
                let auto = self.opts.input_format == InputFormat::Auto;
                let guarded = auto || self.opts.input_format == InputFormat::K8s;
                let verbs = if self.opts.stateful {
                    CHANGE_VERBS
                } else {
                    WRITE_VERBS
                };
                let st = visit_lines(
                    chunk.bytes(),
                    finder,
                    self.opts.max_record,
                    |rel, line| {
                        let mut acc = acc.borrow_mut();
                        if envelopes {
                            self.envelope_record(rel, line, &mut acc);
                        } else if let Some(f) = finder.filter(|_| guarded && !looks_native(line)) {
                            // The line guard's stop: maybe a wrapper, maybe the needle,
                            // maybe neither (a native Event with other key order, junk).
                            if looks_like_envelope(line) && auto {
                                self.envelope_record(rel, line, &mut acc);
                            } else if looks_like_envelope(line) {
                                acc.findings.push(Finding::Malformed {
                                    rel_line: rel,
                                    item: None,
                                    reason: "a managed cluster's record (EKS, GKE or AKS), not a \
                                             native audit Event (--input-format k8s; use auto)"
                                        .into(),
                                });
                            } else if f.contains(line)
                                && (verb_is_one_of(line, verbs) || may_be_escaped(line, verbs))
                            {
                                self.record(rel, line, &mut acc);
                            } else {
                                not_writes += 1;
                            }
                        } else if finder.is_some()
                            && !verb_is_one_of(line, verbs)
                            && !(auto && may_be_escaped(line, verbs))
                        {
                            not_writes += 1;
                        } else {
                            self.record(rel, line, &mut acc);
                        }
                    },
                    |rel, issue| {
                        acc.borrow_mut().findings.push(Finding::Malformed {
                            rel_line: rel,
                            item: None,
                            reason: match issue {
                                LineIssue::TooLong(n) => format!(
                                    "line is {n} bytes, over the {} byte cap (--max-line-bytes)",
                                    self.opts.max_record
                                ),
                            },
                        })
                    },
                );
                rep.lines = st.lines;
                rep.blank = st.blank;
                rep.prefiltered = st.prefiltered + not_writes;
            }
            ChunkKind::Values {
                records,
                lines,
                oversize,
            } => {
                rep.lines = *lines;
                let bytes = chunk.bytes();
                let mut all: Vec<(u64, Option<&[u8]>, u64)> = records
                    .iter()
                    .map(|(l, r)| (*l, Some(&bytes[r.clone()]), 0))
                    .collect();
                all.extend(oversize.iter().map(|(l, n)| (*l, None, *n)));
                all.sort_by_key(|x| x.0);
                let mut acc = acc.borrow_mut();
                for (rel, rec, size) in all {
                    match rec {
                        // The line prefilter is not applied here: such files are small and rare.
                        Some(b) if self.opts.envelopes => self.envelope_record(rel, b, &mut acc),
                        Some(b) => self.record(rel, b, &mut acc),
                        None => acc.findings.push(Finding::Malformed {
                            rel_line: rel,
                            item: None,
                            reason: format!("JSON value is {size} bytes, over the {} byte cap (--max-line-bytes)", self.opts.max_record),
                        }),
                    }
                }
            }
            ChunkKind::OversizeLine { bytes, lines } => {
                rep.lines = *lines;
                acc.borrow_mut().findings.push(Finding::Malformed {
                    rel_line: 0,
                    item: None,
                    reason: format!(
                        "line is {bytes} bytes, over the {} byte cap (--max-line-bytes)",
                        self.opts.max_record
                    ),
                });
            }
        }
        let acc = acc.into_inner();
        rep.events = acc.events;
        rep.findings = acc.findings;
        rep.unwrapped = acc.unwrapped;
        rep.unwrapped_prefiltered = acc.unwrapped_prefiltered;
        rep.skipped = acc.skipped;
        rep
    }

    /// Parses and checks one native record (a line that holds the needle and a write verb,
    /// or any line without the prefilter). Under `--input-format auto` a record that is not a
    /// native Event but looks like a managed cluster's wrapper is unwrapped instead of
    /// reported: inputs can mix the two, and that costs nothing on the native path.
    fn record(&self, rel: u64, bytes: &[u8], acc: &mut Acc) {
        if trim(bytes).is_empty() {
            return;
        }
        let auto = self.opts.input_format == InputFormat::Auto;
        // Without the byte prefilter every line arrives here: decode only the head, and the
        // whole event only when the head says it could matter.
        if self.finder.is_none() {
            match audit::head::scan_head(bytes).and_then(|h| h.check().map(|()| h)) {
                Ok(h) if !h.is_list && !self.head_may_match(&h) => {
                    acc.events += 1;
                    return;
                }
                Ok(_) => {}
                Err(_) if auto && looks_like_envelope(bytes) => {
                    self.envelope_record(rel, bytes, acc);
                    return;
                }
                Err(e) => {
                    acc.findings.push(Finding::Malformed {
                        rel_line: rel,
                        item: None,
                        reason: e.to_string(),
                    });
                    return;
                }
            }
        }
        match parse_record(bytes) {
            Err(_) if auto && looks_like_envelope(bytes) => self.envelope_record(rel, bytes, acc),
            parsed => self.parsed(rel, None, parsed, None, acc),
        }
    }

    fn head_may_match(&self, h: &audit::head::Head) -> bool {
        if self.opts.stateful {
            change::head_may_match(h)
        } else {
            clusterrole_pod_write::head_may_match(h)
        }
    }

    /// Handles a parsed record (an Event, or an EventList's items), native or unwrapped.
    fn parsed(
        &self,
        rel: u64,
        item: Option<usize>,
        parsed: Result<Record, audit::RecordError>,
        origin: Option<&Origin>,
        acc: &mut Acc,
    ) {
        let reason = |e: &audit::RecordError| match origin {
            Some(o) => o.malformed(e),
            None => e.to_string(),
        };
        match parsed {
            Ok(Record::Event(mut ev)) => {
                acc.events += 1;
                let mut origin = origin.cloned();
                if let Some(o) = origin.as_mut() {
                    finish_event(&mut ev, o);
                }
                self.event(rel, item, &ev, origin.as_ref(), acc);
            }
            Ok(Record::List(items)) => {
                for (i, it) in items.into_iter().enumerate() {
                    match it {
                        Ok(mut ev) => {
                            acc.events += 1;
                            let mut origin = origin.cloned();
                            if let Some(o) = origin.as_mut() {
                                finish_event(&mut ev, o);
                            }
                            self.event(rel, Some(i), &ev, origin.as_ref(), acc);
                        }
                        Err(e) => acc.findings.push(Finding::Malformed {
                            rel_line: rel,
                            item: Some(i),
                            reason: reason(&e),
                        }),
                    }
                }
            }
            Err(e) => acc.findings.push(Finding::Malformed {
                rel_line: rel,
                item,
                reason: reason(&e),
            }),
        }
    }

    /// Takes a managed cluster's record apart and handles every event in it. When the record
    /// holds more than one thing, each event's alert and each problem names its index in the
    /// record (`item`).
    fn envelope_record(&self, rel: u64, bytes: &[u8], acc: &mut Acc) {
        if trim(bytes).is_empty() {
            return;
        }
        let pieces = self.unwrapper.unwrap_record(bytes);
        let many = pieces.len() > 1;
        for (i, p) in pieces.into_iter().enumerate() {
            let item = many.then_some(i);
            match p {
                Piece::Skipped(kind) => *acc.skipped.entry(kind).or_default() += 1,
                Piece::Malformed(reason) => acc.findings.push(Finding::Malformed {
                    rel_line: rel,
                    item,
                    reason,
                }),
                Piece::Event { json, origin } => {
                    if let Some(o) = &origin {
                        acc.unwrapped.add(o.cloud);
                    }
                    self.unwrapped_event(rel, item, &json, origin.as_ref(), acc);
                }
            }
        }
    }

    /// One event out of a wrapper: the same prefilter and checks as a native line.
    fn unwrapped_event(
        &self,
        rel: u64,
        item: Option<usize>,
        json: &[u8],
        origin: Option<&Origin>,
        acc: &mut Acc,
    ) {
        if let Some(f) = &self.finder {
            let verbs = if self.opts.stateful {
                CHANGE_VERBS
            } else {
                WRITE_VERBS
            };
            if f.next(json, 0).0.is_none() || !verb_is_one_of(json, verbs) {
                acc.unwrapped_prefiltered += 1;
                return;
            }
        } else {
            match audit::head::scan_head(json).and_then(|h| h.check().map(|()| h)) {
                Ok(h) if !h.is_list && !self.head_may_match(&h) => {
                    acc.events += 1;
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    acc.findings.push(Finding::Malformed {
                        rel_line: rel,
                        item,
                        reason: match origin {
                            Some(o) => o.malformed(&e),
                            None => e.to_string(),
                        },
                    });
                    return;
                }
            }
        }
        self.parsed(rel, item, parse_record(json), origin, acc);
    }

    fn event(
        &self,
        rel: u64,
        item: Option<usize>,
        ev: &Event,
        origin: Option<&Origin>,
        acc: &mut Acc,
    ) {
        let format = origin.map(|o| o.cloud.as_str());
        if self.opts.stateful {
            if let Some(mut change) = change::extract(ev, &self.opts.rule) {
                if let Some(o) = origin {
                    change.base.apply_origin(o);
                    if let Some(st) = change.stateless.as_mut() {
                        st.apply_origin(o);
                    }
                }
                acc.findings.push(Finding::Change {
                    rel_line: rel,
                    item,
                    change: Box::new(change),
                    format,
                });
            }
            return;
        }
        if let Some(mut alert) = clusterrole_pod_write::evaluate(ev, &self.opts.rule) {
            // Before suppressions: they match on the cluster-independent facts, and a group
            // the log does not record must not match a group glob.
            if let Some(o) = origin {
                alert.apply_origin(o);
            }
            alert.suppressed_by = self.suppressions.matching(&alert);
            acc.findings.push(Finding::Alert {
                rel_line: rel,
                item,
                alert: Box::new(alert),
                format,
            });
        }
    }
}

/// Running counts for the summary line.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    /// Inputs read.
    pub inputs: u64,
    /// Lines read.
    pub lines: u64,
    /// Events parsed.
    pub events: u64,
    /// Lines the prefilter skipped unparsed.
    pub prefiltered: u64,
    /// Whitespace-only lines.
    pub blank: u64,
    /// Records reported as malformed.
    pub malformed: u64,
    /// Alerting events delivered more than once, dropped.
    pub duplicates: u64,
    /// Alerts.
    pub alerts: u64,
    /// Suppressed alerts.
    pub suppressed: u64,
    /// Inputs that failed while being read.
    pub read_errors: u64,
    /// Audit events taken out of managed clusters' records (counted in `events` too when
    /// parsed).
    pub unwrapped: Unwrapped,
    /// Of those, the ones the prefilter skipped unparsed.
    pub unwrapped_prefiltered: u64,
    /// Valid records without an audit event (other categories, services, log streams,
    /// control messages), by kind.
    pub skipped: BTreeMap<String, u64>,
}

/// What the collector hands to the printer.
#[derive(Debug)]
pub enum Output {
    /// An alert, or a suppressed alert (`suppressed_by` set).
    Alert(Box<Alert>),
    /// An RBAC change for the stateful tracker, with where it was read.
    Change(Box<Change>, Location),
    /// A malformed record.
    Malformed {
        /// Its location.
        at: Location,
        /// Why.
        reason: String,
    },
}

/// Puts chunk reports of one input after another: absolute line numbers, de-duplication of
/// `(auditID, stage)` across all inputs, counts.
pub struct Collector {
    /// Counts so far.
    pub tally: Tally,
    seen: HashSet<(String, String)>,
    order: VecDeque<(String, String)>,
    seen_cap: usize,
    path: String,
    base: u64,
}

impl Collector {
    /// A collector remembering up to `seen_cap` alerting deliveries for de-duplication (older
    /// ones are forgotten first, so memory stays bounded on endless streams).
    pub fn new(seen_cap: usize) -> Self {
        Collector {
            tally: Tally::default(),
            seen: HashSet::new(),
            order: VecDeque::new(),
            seen_cap: seen_cap.max(1),
            path: String::new(),
            base: 0,
        }
    }

    /// Starts a new input.
    pub fn begin(&mut self, path: &str) {
        self.begin_at(path, 0);
    }

    /// Starts a new input whose first `line` lines were read by an earlier run.
    pub fn begin_at(&mut self, path: &str, line: u64) {
        self.path = path.to_string();
        self.base = line;
        self.tally.inputs += 1;
    }

    /// The number of lines of the current input seen so far.
    pub fn line(&self) -> u64 {
        self.base
    }

    /// Takes one chunk's report, in input order.
    pub fn absorb(&mut self, rep: ChunkReport, emit: &mut dyn FnMut(Output)) {
        let t = &mut self.tally;
        t.lines += rep.lines;
        t.blank += rep.blank;
        t.prefiltered += rep.prefiltered;
        t.events += rep.events;
        t.unwrapped.eks += rep.unwrapped.eks;
        t.unwrapped.gke += rep.unwrapped.gke;
        t.unwrapped.aks += rep.unwrapped.aks;
        t.unwrapped_prefiltered += rep.unwrapped_prefiltered;
        for (k, n) in rep.skipped {
            *t.skipped.entry(k).or_default() += n;
        }
        for f in rep.findings {
            match f {
                Finding::Malformed {
                    rel_line,
                    item,
                    reason,
                } => {
                    self.tally.malformed += 1;
                    emit(Output::Malformed {
                        at: Location {
                            path: self.path.clone(),
                            line: self.base + rel_line + 1,
                            item,
                            format: None,
                        },
                        reason,
                    });
                }
                Finding::Change {
                    rel_line,
                    item,
                    change,
                    format,
                } => emit(Output::Change(
                    change,
                    Location {
                        path: self.path.clone(),
                        line: self.base + rel_line + 1,
                        item,
                        format,
                    },
                )),
                Finding::Alert {
                    rel_line,
                    item,
                    mut alert,
                    format,
                } => {
                    if let (Some(id), Some(stage)) = (&alert.audit_id, &alert.stage) {
                        let key = (id.clone(), stage.clone());
                        if self.seen.contains(&key) {
                            self.tally.duplicates += 1;
                            continue;
                        }
                        if self.order.len() >= self.seen_cap {
                            if let Some(old) = self.order.pop_front() {
                                self.seen.remove(&old);
                            }
                        }
                        self.seen.insert(key.clone());
                        self.order.push_back(key);
                    }
                    alert.source = Some(Location {
                        path: self.path.clone(),
                        line: self.base + rel_line + 1,
                        item,
                        format,
                    });
                    if alert.suppressed_by.is_some() {
                        self.tally.suppressed += 1;
                    } else {
                        self.tally.alerts += 1;
                    }
                    emit(Output::Alert(alert));
                }
            }
        }
        self.base += rep.lines;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_verbs_pass_the_stateful_second_stage() {
        for (line, want) in [
            (
                &br#"{"verb":"delete","objectRef":{"resource":"roles"}}"#[..],
                true,
            ),
            (br#"{"verb" : "deletecollection"}"#, true),
            (br#"{"verb":"deletes"}"#, false),
            (br#"{"verb":"get"}"#, false),
            (br#"{"verb":"list","x":{"verb":"patch"}}"#, true),
            (br#"{"verb":"patch"#, false),
        ] {
            assert_eq!(
                may_be_change(line),
                want,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn escaped_write_verbs() {
        for (line, want) in [
            (
                &br#"{"message":"{\"verb\":\"create\",\"objectRef\":{}}"}"#[..],
                true,
            ),
            (br#"{"log":"{\"verb\" : \"patch\"}"}"#, true),
            (br#"{"log":"{\"verb\":\"get\"}"}"#, false),
            (br#"{"log":"{\"verb\":\"creates\"}"}"#, false),
            (br#"{"verb":"create"}"#, false),
            (br#"{"log":"{\"verb\":"#, false),
        ] {
            assert_eq!(
                may_be_escaped(line, WRITE_VERBS),
                want,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn write_verbs_pass_the_second_stage() {
        for (line, want) in [
            (
                &br#"{"verb":"create","objectRef":{"resource":"clusterroles"}}"#[..],
                true,
            ),
            (br#"{"verb" : "patch"}"#, true),
            (br#"{"verb":	"update"}"#, true),
            (
                br#"{"verb":"get","requestObject":{"spec":{"verb":"create"}}}"#,
                true,
            ),
            (
                br#"{"verb":"get","objectRef":{"resource":"clusterroles"}}"#,
                false,
            ),
            (br#"{"verb":"watch"}"#, false),
            (br#"{"verbs":["create"]}"#, false),
            (br#"{"verb":"creates"}"#, false),
            (br#"{"verb""#, false),
        ] {
            assert_eq!(
                may_be_change(line),
                want,
                "{}",
                String::from_utf8_lossy(line)
            );
            assert_eq!(
                may_be_write(line),
                want,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
