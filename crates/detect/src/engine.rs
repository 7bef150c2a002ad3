//! The scan engine: per-chunk work (prefilter, parse, detect, suppress) that runs on every
//! core, and the in-order collector (line numbers, de-duplication, counts).

use crate::alert::{Alert, Location};
use crate::change::{self, Change, CHANGE_VERBS};
use crate::clusterrole_pod_write::{self, RuleOptions};
use crate::suppress::Suppressions;
use audit::framing::trim;
use audit::{parse_record, visit_lines, Chunk, ChunkKind, Event, LineIssue, LineNeedle, Record};
use std::collections::{HashSet, VecDeque};

/// The prefilter's first needle. The API server writes it in `objectRef.resource` and `requestURI` of
/// every ClusterRole event; a line without it cannot be one. Request bodies play no part in
/// the choice: an attacker controls those, and could only add candidates, never hide one.
pub const NEEDLE: &[u8] = b"clusterroles";

/// Second prefilter stage, for lines that hold the needle: whether a `"verb"` key is followed by
/// `create`, `update` or `patch`. The API server writes the verb of every event, so a write
/// event always passes; a body can only add matches, never remove the real one. Most lines that
/// mention cluster roles are reads, and skipping their full parse matters on large logs.
pub fn may_be_write(line: &[u8]) -> bool {
    verb_is_one_of(line, &["create", "update", "patch"])
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
    },
    /// An RBAC change, for the stateful tracker.
    Change {
        /// Relative line.
        rel_line: u64,
        /// EventList item index.
        item: Option<usize>,
        /// The change.
        change: Box<Change>,
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
}

/// Runs the detection on chunks. Shared by reference between worker threads.
pub struct Engine {
    opts: EngineOptions,
    suppressions: Suppressions,
    finder: Option<LineNeedle>,
}

impl Engine {
    /// A new engine.
    pub fn new(opts: EngineOptions, suppressions: Suppressions) -> Self {
        let needle = if opts.stateful { STATE_NEEDLE } else { NEEDLE };
        let finder = opts.prefilter.then(|| LineNeedle::new(needle));
        Engine {
            opts,
            suppressions,
            finder,
        }
    }

    /// Processes one chunk.
    pub fn process(&self, chunk: &Chunk) -> ChunkReport {
        let mut rep = ChunkReport::default();
        match &chunk.kind {
            ChunkKind::Lines => {
                let findings = std::cell::RefCell::new(Vec::new());
                let mut events = 0;
                let mut not_writes = 0;
                let st = visit_lines(
                    chunk.bytes(),
                    self.finder.as_ref(),
                    self.opts.max_record,
                    |rel, line| {
                        let second = if self.opts.stateful {
                            may_be_change
                        } else {
                            may_be_write
                        };
                        if self.finder.is_some() && !second(line) {
                            not_writes += 1;
                        } else {
                            events += self.record(rel, line, &mut findings.borrow_mut());
                        }
                    },
                    |rel, issue| {
                        findings.borrow_mut().push(Finding::Malformed {
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
                rep.events = events;
                rep.findings = findings.into_inner();
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
                for (rel, rec, size) in all {
                    match rec {
                        // The prefilter is not applied here: such files are small and rare.
                        Some(b) => rep.events += self.record(rel, b, &mut rep.findings),
                        None => rep.findings.push(Finding::Malformed {
                            rel_line: rel,
                            item: None,
                            reason: format!("JSON value is {size} bytes, over the {} byte cap (--max-line-bytes)", self.opts.max_record),
                        }),
                    }
                }
            }
            ChunkKind::OversizeLine { bytes, lines } => {
                rep.lines = *lines;
                rep.findings.push(Finding::Malformed {
                    rel_line: 0,
                    item: None,
                    reason: format!(
                        "line is {bytes} bytes, over the {} byte cap (--max-line-bytes)",
                        self.opts.max_record
                    ),
                });
            }
        }
        rep
    }

    /// Parses and checks one record; returns how many Events it held.
    fn record(&self, rel: u64, bytes: &[u8], out: &mut Vec<Finding>) -> u64 {
        if trim(bytes).is_empty() {
            return 0;
        }
        // Without the byte prefilter every line arrives here: decode only the head, and the
        // whole event only when the head says it could matter.
        if self.finder.is_none() {
            match audit::head::scan_head(bytes).and_then(|h| h.check().map(|()| h)) {
                Ok(h)
                    if !h.is_list
                        && !(if self.opts.stateful {
                            change::head_may_match(&h)
                        } else {
                            clusterrole_pod_write::head_may_match(&h)
                        }) =>
                {
                    return 1
                }
                Ok(_) => {}
                Err(e) => {
                    out.push(Finding::Malformed {
                        rel_line: rel,
                        item: None,
                        reason: e.to_string(),
                    });
                    return 0;
                }
            }
        }
        match parse_record(bytes) {
            Ok(Record::Event(ev)) => {
                self.event(rel, None, &ev, out);
                1
            }
            Ok(Record::List(items)) => {
                let mut n = 0;
                for (i, it) in items.into_iter().enumerate() {
                    match it {
                        Ok(ev) => {
                            n += 1;
                            self.event(rel, Some(i), &ev, out);
                        }
                        Err(e) => out.push(Finding::Malformed {
                            rel_line: rel,
                            item: Some(i),
                            reason: e.to_string(),
                        }),
                    }
                }
                n
            }
            Err(e) => {
                out.push(Finding::Malformed {
                    rel_line: rel,
                    item: None,
                    reason: e.to_string(),
                });
                0
            }
        }
    }

    fn event(&self, rel: u64, item: Option<usize>, ev: &Event, out: &mut Vec<Finding>) {
        if self.opts.stateful {
            if let Some(change) = change::extract(ev, &self.opts.rule) {
                out.push(Finding::Change {
                    rel_line: rel,
                    item,
                    change: Box::new(change),
                });
            }
            return;
        }
        if let Some(mut alert) = clusterrole_pod_write::evaluate(ev, &self.opts.rule) {
            alert.suppressed_by = self.suppressions.matching(&alert);
            out.push(Finding::Alert {
                rel_line: rel,
                item,
                alert: Box::new(alert),
            });
        }
    }
}

/// Running counts for the summary line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
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
                        },
                        reason,
                    });
                }
                Finding::Change {
                    rel_line,
                    item,
                    change,
                } => emit(Output::Change(
                    change,
                    Location {
                        path: self.path.clone(),
                        line: self.base + rel_line + 1,
                        item,
                    },
                )),
                Finding::Alert {
                    rel_line,
                    item,
                    mut alert,
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
