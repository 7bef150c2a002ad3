//! Managed-cluster exports: audit Events wrapped in a cloud provider's log records.
//!
//! EKS writes audit Events to CloudWatch Logs, GKE to Cloud Logging (as Cloud Audit Logs
//! `LogEntry` records), AKS to Azure diagnostic settings. Each shape has a module here that
//! takes the wrapper apart and hands on every audit Event it holds as the native JSON text
//! of an `audit.k8s.io/v1` Event, with an [`Origin`] saying what the wrapper told about it
//! (the cluster's name, what it could not tell). Everything downstream (parsing, every
//! detection, stateful or not) then works on one model whatever the source.
//!
//! - [`eks`]: CloudWatch Logs (`aws logs filter-log-events`/`get-log-events` output, one
//!   event per line), subscription-filter payloads (plain, or gzip+base64 as Lambda, Kinesis
//!   and Firehose deliver them), Firehose-to-S3 objects and Firehose HTTP-endpoint bodies.
//! - [`gke`]: Cloud Audit Logs `LogEntry` records with a `k8s.io` `protoPayload`.
//! - [`aks`]: Azure diagnostic records (`kube-audit`, `kube-audit-admin`).
//!
//! Records that are valid but hold no audit Event (a CloudWatch control message, another
//! service's log entry, another diagnostic category) come out as [`Piece::Skipped`] with a
//! kind, to be counted; broken ones as [`Piece::Malformed`] with a reason naming where in
//! the record the problem is. Nothing here panics on any input (fuzzed in `tests/no_panic.rs`).

pub mod aks;
pub mod eks;
pub mod gke;

use crate::event::{Event, RecordError};
use serde::Deserialize;
use serde_json::value::RawValue;

/// How to read the records of an input (`--input-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InputFormat {
    /// Tell by looking: native Events take the fast path, wrapped ones are unwrapped.
    #[default]
    Auto,
    /// Native `audit.k8s.io` Events and EventLists only (the API server's log and webhook).
    K8s,
    /// EKS CloudWatch Logs shapes only.
    Eks,
    /// GKE Cloud Audit Logs `LogEntry` records only.
    Gke,
    /// AKS diagnostic records only.
    Aks,
}

impl InputFormat {
    /// The cloud whose shapes a forced format accepts.
    fn cloud(self) -> Option<Cloud> {
        match self {
            InputFormat::Eks => Some(Cloud::Eks),
            InputFormat::Gke => Some(Cloud::Gke),
            InputFormat::Aks => Some(Cloud::Aks),
            InputFormat::Auto | InputFormat::K8s => None,
        }
    }
}

/// The managed Kubernetes service a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cloud {
    /// Amazon EKS (CloudWatch Logs).
    Eks,
    /// Google GKE (Cloud Logging).
    Gke,
    /// Azure AKS (diagnostic settings).
    Aks,
}

impl Cloud {
    /// `eks`, `gke` or `aks`, as `--input-format` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Eks => "eks",
            Cloud::Gke => "gke",
            Cloud::Aks => "aks",
        }
    }

    fn upper(self) -> &'static str {
        match self {
            Cloud::Eks => "EKS",
            Cloud::Gke => "GKE",
            Cloud::Aks => "AKS",
        }
    }
}

/// What a wrapper told about the audit Event it held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Which service wrote it.
    pub cloud: Cloud,
    /// The cluster's name, when the wrapper names it (EKS log group, GKE resource label, AKS
    /// resource ID).
    pub cluster: Option<String>,
    /// The wrapper has no group list for the user (GKE): the groups are unknown, not empty.
    pub groups_unknown: bool,
    /// Caveats about the evidence, for the alert's notes.
    pub notes: Vec<String>,
    /// Where in the record the Event was (`logEvents[3].message`), for error messages.
    pub context: String,
}

impl Origin {
    fn new(cloud: Cloud, cluster: Option<String>, context: String) -> Self {
        Origin {
            cloud,
            cluster,
            groups_unknown: false,
            notes: Vec::new(),
            context,
        }
    }

    /// The reason for a malformed inner Event, saying where it sat in the record.
    pub fn malformed(&self, e: &RecordError) -> String {
        let mut s = format!("{} {}: {e}", self.cloud.upper(), self.context);
        // CloudWatch Logs cuts events over 256 KB: the commonest reason for a broken message.
        if self.cloud == Cloud::Eks && matches!(e, RecordError::Json(_)) {
            s.push_str(
                " (CloudWatch Logs truncates events over 256 KB; a cut message is not valid JSON)",
            );
        }
        s
    }
}

/// One thing found in a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A native audit Event (JSON text), and what its wrapper told about it.
    Event {
        /// The `audit.k8s.io` Event (or EventList) as JSON.
        json: Vec<u8>,
        /// Its wrapper's facts; `None` for a native Event outside any wrapper.
        origin: Option<Origin>,
    },
    /// A valid record that holds no audit Event; the kind names it for the summary.
    Skipped(String),
    /// A broken record, or a broken part of one: why, and where in the record.
    Malformed(String),
}

/// What an input's first record looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadShape {
    /// A native audit Event or EventList.
    Native,
    /// A managed-cluster wrapper.
    Envelope,
    /// Neither can be told (empty, not JSON, no known key).
    Unknown,
}

/// Top-level keys that only wrappers have. `timestamp` and `id` are left out: v1beta1 Events
/// have a `timestamp` too.
const ENVELOPE_KEYS: &[&[u8]] = &[
    b"messageType",
    b"logEvents",
    b"logGroup",
    b"awslogs",
    b"events",
    b"message",
    b"logStreamName",
    b"ingestionTime",
    b"eventId",
    b"requestId",
    b"records",
    b"Records",
    b"protoPayload",
    b"logName",
    b"insertId",
    b"receiveTimestamp",
    b"category",
    b"properties",
    b"resourceId",
    b"operationName",
];

/// Top-level keys of a native audit Event or EventList.
const NATIVE_KEYS: &[&[u8]] = &[
    b"auditID",
    b"verb",
    b"stage",
    b"requestURI",
    b"objectRef",
    b"items",
    b"level",
    b"user",
];

/// Tells from the first bytes of an input whether its first record is native, a wrapper, or
/// neither. Only the top-level keys of the first JSON object are read, as far as `head`
/// goes: a truncated head (a long first record) still shows its first keys, and those
/// decide. A leading `[` (a JSON array of records) and a byte-order mark are skipped.
pub fn sniff_head(head: &[u8]) -> HeadShape {
    let mut b = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let skip_ws = |b: &[u8]| -> usize { b.iter().take_while(|c| c.is_ascii_whitespace()).count() };
    b = &b[skip_ws(b)..];
    if let Some(rest) = b.strip_prefix(b"[") {
        b = &rest[skip_ws(rest)..];
    }
    let mut envelope = false;
    let mut native = false;
    top_level_keys(b, |key, value| {
        if key == b"kind" || key == b"apiVersion" {
            // `kind: Event` and `apiVersion: audit.k8s.io/...` are native; other values of
            // these keys say nothing (an Azure record has neither, a pod object has both).
            let v = value.unwrap_or(&[]);
            if v.starts_with(b"\"Event") || v.starts_with(b"\"audit.k8s.io/") {
                native = true;
            }
        } else if NATIVE_KEYS.contains(&key) {
            native = true;
        } else if ENVELOPE_KEYS.contains(&key) {
            envelope = true;
        }
    });
    // A native marker wins: an Event never has the wrappers' keys, but a hand-written
    // Event with an extra field must still take the native path.
    match (native, envelope) {
        (true, _) => HeadShape::Native,
        (false, true) => HeadShape::Envelope,
        (false, false) => HeadShape::Unknown,
    }
}

/// Whether a record that is not a native Event looks like a wrapper (any wrapper key at its
/// top level). Used on records that failed to parse as native Events, never on the fast path.
pub fn looks_like_envelope(record: &[u8]) -> bool {
    let b = &record[record
        .iter()
        .take_while(|c| c.is_ascii_whitespace())
        .count()..];
    let mut found = false;
    top_level_keys(b, |key, _| found |= ENVELOPE_KEYS.contains(&key));
    found
}

/// Calls `f(key, value start)` for each top-level key of the JSON object at the start of `b`
/// (the raw key bytes, without quotes; the value's first bytes when they are in `b`). Stops
/// quietly at the end of `b` or at anything that is not JSON: this is a sniff, not a parse.
fn top_level_keys(b: &[u8], mut f: impl FnMut(&[u8], Option<&[u8]>)) {
    if b.first() != Some(&b'{') {
        return;
    }
    let mut i = 1;
    let n = b.len();
    let ws = |i: &mut usize| {
        while *i < n && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    // Skips a string starting at b[i] == '"'; returns the index after the closing quote.
    let skip_str = |mut i: usize| -> Option<usize> {
        i += 1;
        while i < n {
            match b[i] {
                b'\\' => i += 2,
                b'"' => return Some(i + 1),
                _ => i += 1,
            }
        }
        None
    };
    loop {
        ws(&mut i);
        if i >= n || b[i] != b'"' {
            return;
        }
        let Some(end) = skip_str(i) else { return };
        let key = &b[i + 1..end - 1];
        i = end;
        ws(&mut i);
        if i >= n || b[i] != b':' {
            return;
        }
        i += 1;
        ws(&mut i);
        f(key, (i < n).then(|| &b[i..(i + 32).min(n)]));
        // Skip the value.
        let mut depth = 0usize;
        loop {
            if i >= n {
                return;
            }
            match b[i] {
                b'"' => {
                    let Some(e) = skip_str(i) else { return };
                    i = e;
                    if depth == 0 {
                        break;
                    }
                    continue;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    if depth == 0 {
                        return; // the end of the top-level object
                    }
                    depth -= 1;
                    if depth == 0 {
                        i += 1;
                        break;
                    }
                }
                b',' if depth == 0 => break,
                _ => {}
            }
            i += 1;
        }
        ws(&mut i);
        if i < n && b[i] == b',' {
            i += 1;
        }
    }
}

/// Takes records apart. Cheap to create; shared by reference between worker threads.
#[derive(Debug, Clone, Copy)]
pub struct Unwrapper {
    format: InputFormat,
    /// The most bytes one decoded (base64, gzip) payload may take.
    max_bytes: usize,
}

/// How deep wrappers may nest (a Firehose record holding a subscription payload holding
/// CloudWatch events is 3); deeper nesting is reported instead of followed.
const MAX_DEPTH: u8 = 6;

impl Unwrapper {
    /// An unwrapper for `format` (`Auto` accepts every shape; a cloud accepts only its own);
    /// decoded payloads over `max_bytes`, alone or together with the others of their record,
    /// are reported, not kept.
    pub fn new(format: InputFormat, max_bytes: usize) -> Self {
        Unwrapper {
            format,
            max_bytes: max_bytes.max(1),
        }
    }

    /// Everything in one record (a line, or one JSON value of a document), in order. A
    /// record may hold several JSON values back to back (Firehose writes payloads to S3
    /// that way, without separators).
    pub fn unwrap_record(&self, bytes: &[u8]) -> Vec<Piece> {
        let mut out = Vec::new();
        let mut ctx = Ctx {
            u: self,
            out: &mut out,
            budget: self.max_bytes,
        };
        ctx.values(bytes, "", 0, None);
        out
    }
}

struct Ctx<'u, 'o> {
    u: &'u Unwrapper,
    out: &'o mut Vec<Piece>,
    /// Decoded bytes this record may still produce. The cap on one payload alone does not
    /// bound a record: a 100 KB Firehose body can hold 60 payloads that each inflate to the
    /// cap, and every piece of a record is kept until the record is done. So all payloads of
    /// one record share one budget, the same `--max-line-bytes`; those beyond it are
    /// reported (with their place in the record), not decoded.
    budget: usize,
}

/// Inherited facts while descending into nested wrappers.
#[derive(Clone, Copy, Default)]
struct Inherited<'a> {
    /// The CloudWatch log group and stream of the payload being read.
    log_group: Option<&'a str>,
    log_stream: Option<&'a str>,
}

/// The top-level keys that decide what a record is, each kept raw.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Top<'a> {
    #[serde(borrow, default)]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    api_version: Option<&'a RawValue>,
    #[serde(borrow, default)]
    verb: Option<&'a RawValue>,
    #[serde(rename = "auditID", borrow, default)]
    audit_id: Option<&'a RawValue>,
    // EKS
    #[serde(borrow, default)]
    message_type: Option<&'a RawValue>,
    #[serde(borrow, default)]
    log_events: Option<&'a RawValue>,
    #[serde(borrow, default)]
    awslogs: Option<&'a RawValue>,
    #[serde(borrow, default)]
    events: Option<&'a RawValue>,
    #[serde(borrow, default)]
    message: Option<&'a RawValue>,
    #[serde(borrow, default)]
    records: Option<&'a RawValue>,
    #[serde(rename = "Records", borrow, default)]
    records_upper: Option<&'a RawValue>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    // GKE
    #[serde(borrow, default)]
    proto_payload: Option<&'a RawValue>,
    #[serde(borrow, default)]
    log_name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    insert_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    log_stream_name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    log_group_name: Option<&'a RawValue>,
    // AKS
    #[serde(borrow, default)]
    category: Option<&'a RawValue>,
    #[serde(borrow, default)]
    properties: Option<aks::Properties<'a>>,
    #[serde(borrow, default, alias = "ResourceId")]
    resource_id: Option<&'a RawValue>,
    /// Azure Monitor metric records (`AllMetrics`) have this instead of a category.
    #[serde(borrow, default)]
    metric_name: Option<&'a RawValue>,
}

/// A JSON string's value, or `None` when the value is not a string.
fn string(raw: Option<&RawValue>) -> Option<String> {
    serde_json::from_str::<String>(raw?.get()).ok()
}

/// A JSON array's elements, raw.
fn array<'a>(raw: &'a RawValue, what: &str) -> Result<Vec<&'a RawValue>, String> {
    serde_json::from_str::<Vec<&RawValue>>(raw.get())
        .map_err(|e| format!("{what} is not an array of JSON values: {e}"))
}

impl Ctx<'_, '_> {
    fn malformed(&mut self, s: String) {
        self.out.push(Piece::Malformed(s));
    }

    fn skipped(&mut self, kind: impl Into<String>) {
        self.out.push(Piece::Skipped(kind.into()));
    }

    /// Every JSON value in `bytes` (one, or several back to back).
    ///
    /// Each object is read once, straight into the keys that classify it (wrapped events are
    /// long strings full of escapes, and every pass over them counts); anything else, or an
    /// object whose keys have unexpected types, takes the slower way through a raw value,
    /// which finds where it ends and says what is wrong with it.
    fn values(&mut self, bytes: &[u8], path: &str, depth: u8, inh: Option<Inherited>) {
        let mut pos = 0usize;
        let mut n = 0usize;
        loop {
            let skip = bytes[pos..]
                .iter()
                .take_while(|b| b.is_ascii_whitespace())
                .count();
            pos += skip;
            if pos >= bytes.len() {
                break;
            }
            let here = if n == 0 && path.is_empty() {
                String::new()
            } else {
                format!("{path}[value {n}]")
            };
            let rest = &bytes[pos..];
            n += 1;
            if rest[0] == b'{' {
                let mut it = serde_json::Deserializer::from_slice(rest).into_iter::<Top>();
                if let Some(Ok(top)) = it.next() {
                    let end = it.byte_offset();
                    pos += end;
                    match std::str::from_utf8(&rest[..end]) {
                        Ok(raw) => self.classified(top, raw, &here, depth, inh),
                        Err(e) => {
                            let at = if here.is_empty() {
                                String::new()
                            } else {
                                format!("{here}: ")
                            };
                            self.malformed(format!("{at}invalid UTF-8: {e}"));
                        }
                    }
                    continue;
                }
            }
            let mut it = serde_json::Deserializer::from_slice(rest).into_iter::<&RawValue>();
            match it.next() {
                Some(Ok(v)) => {
                    pos += it.byte_offset();
                    self.value(v, &here, depth, inh.unwrap_or_default(), inh.is_some());
                }
                Some(Err(e)) => {
                    let at = if here.is_empty() {
                        String::new()
                    } else {
                        format!("{here}: ")
                    };
                    self.malformed(format!("{at}invalid JSON: {e}"));
                    break;
                }
                None => break,
            }
        }
    }

    /// An object already read into its classifying keys (`raw` is its text).
    fn classified(&mut self, top: Top, raw: &str, path: &str, depth: u8, inh: Option<Inherited>) {
        if depth > MAX_DEPTH {
            let at = if path.is_empty() {
                String::new()
            } else {
                format!("{path}: ")
            };
            self.malformed(format!("{at}wrappers nested too deep"));
            return;
        }
        self.dispatch(
            top,
            raw,
            path,
            depth,
            inh.unwrap_or_default(),
            inh.is_some(),
        );
    }

    /// One JSON value: classified by its top-level keys and handed to its cloud's module.
    /// `nested` is set inside a wrapper, where native Events are what is expected.
    fn value(&mut self, v: &RawValue, path: &str, depth: u8, inh: Inherited, nested: bool) {
        let at = |p: &str| {
            if p.is_empty() {
                String::new()
            } else {
                format!("{p}: ")
            }
        };
        if depth > MAX_DEPTH {
            self.malformed(format!("{}wrappers nested too deep", at(path)));
            return;
        }
        if v.get().starts_with('[') && depth == 0 {
            // A whole export on one line (`jq -c . gke.json`): its elements are the records.
            match array(v, "the array") {
                Ok(items) => {
                    if items.is_empty() {
                        self.skipped("empty JSON arrays");
                    }
                    for (i, it) in items.into_iter().enumerate() {
                        self.value(it, &format!("{path}[{i}]"), depth + 1, inh, nested);
                    }
                }
                Err(e) => self.malformed(format!("{}{e}", at(path))),
            }
            return;
        }
        if !v.get().starts_with('{') {
            self.malformed(format!("{}not a JSON object", at(path)));
            return;
        }
        let top: Top = match serde_json::from_str(v.get()) {
            Ok(t) => t,
            Err(e) => {
                self.malformed(format!("{}invalid record: {e}", at(path)));
                return;
            }
        };
        self.dispatch(top, v.get(), path, depth, inh, nested);
    }

    /// Hands a classified object to its cloud's module. `nested` is set inside a wrapper,
    /// where native Events are what is expected.
    fn dispatch(
        &mut self,
        top: Top,
        raw: &str,
        path: &str,
        depth: u8,
        inh: Inherited,
        nested: bool,
    ) {
        let at = |p: &str| {
            if p.is_empty() {
                String::new()
            } else {
                format!("{p}: ")
            }
        };
        let forced = self.u.format.cloud();
        let shape = classify(&top);
        if shape == Shape::Native {
            if nested {
                // Inside a wrapper (Firehose with message extraction writes the bare Events).
                let origin = Origin::new(
                    Cloud::Eks,
                    inh.log_group.and_then(eks::cluster_of_log_group),
                    path.into(),
                );
                self.out.push(Piece::Event {
                    json: raw.as_bytes().to_vec(),
                    origin: Some(origin),
                });
            } else if forced.is_none() {
                // A native line in a stream of wrapped ones: the Event itself.
                self.out.push(Piece::Event {
                    json: raw.as_bytes().to_vec(),
                    origin: None,
                });
            } else {
                self.malformed(format!(
                    "{}a native audit Event, not {} record (--input-format {}; use auto or k8s)",
                    at(path),
                    an(forced.unwrap_or(Cloud::Eks)),
                    self.u.format_name()
                ));
            }
            return;
        }
        if shape == Shape::RecordsNotArray {
            self.malformed(format!(
                "{}records is not an array (neither a Firehose request body nor an Event Hubs message)",
                at(path)
            ));
            return;
        }
        let Some(cloud) = shape.cloud() else {
            self.malformed(format!(
                "{}not an audit Event, nor an EKS, GKE or AKS record (no kind, verb, auditID, message, logEvents, protoPayload or category)",
                at(path)
            ));
            return;
        };
        if let Some(f) = forced {
            if f != cloud && !nested {
                self.malformed(format!(
                    "{}{} record, not {} one (--input-format {})",
                    at(path),
                    an(cloud),
                    an(f),
                    f.as_str()
                ));
                return;
            }
        }
        match shape {
            Shape::Native | Shape::Unknown | Shape::RecordsNotArray => {}
            Shape::EksPayload => eks::payload(self, raw, path),
            Shape::EksLambda => eks::lambda(self, &top, path, depth),
            Shape::EksKinesis => eks::kinesis(self, &top, path, depth),
            Shape::EksFirehose => eks::firehose(self, &top, path, depth),
            Shape::EksFirehoseRecord => eks::firehose_record(self, &top, path, depth),
            Shape::EksOutput => eks::output(self, &top, path, inh),
            Shape::EksEvent => eks::event(self, &top, path, inh),
            Shape::Gke => gke::entry(self, raw, path),
            Shape::GkeOther => {
                self.skipped("GKE: log entries without a protoPayload (not Cloud Audit Logs)")
            }
            Shape::AksHub => aks::hub(self, &top, path),
            Shape::Aks => aks::record(self, &top, path),
        }
    }

    /// Decodes base64 data and, when it is gzip, decompresses it (every member), within the
    /// size cap.
    /// Decoded bytes count against the record's budget ([`Ctx::budget`]).
    fn decode(&mut self, b64: &str) -> Result<Vec<u8>, String> {
        use base64::Engine as _;
        let over_budget = |cap: usize| {
            format!(
                "the record's decoded payloads are over the {cap} byte total cap \
                 (--max-line-bytes); this one and the rest were not decoded"
            )
        };
        let total = self.u.max_bytes;
        if self.budget == 0 {
            return Err(over_budget(total));
        }
        let cleaned: Vec<u8> = b64.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&cleaned)
            .map_err(|e| format!("data is not base64: {e}"))?;
        if raw.len() > total {
            return Err(format!(
                "decoded data is {} bytes, over the {total} byte cap (--max-line-bytes)",
                raw.len(),
            ));
        }
        let out = if raw.starts_with(&[0x1f, 0x8b]) {
            use std::io::Read;
            let mut out = Vec::new();
            // At most one byte past what the record may still take, whatever the gzip says.
            let cap = self.budget as u64;
            flate2::read::MultiGzDecoder::new(&raw[..])
                .take(cap + 1)
                .read_to_end(&mut out)
                .map_err(|e| format!("data is not valid gzip: {e}"))?;
            if out.len() as u64 > cap {
                self.budget = 0;
                return Err(if cap as usize == total {
                    format!("decompressed data is over the {total} byte cap (--max-line-bytes)")
                } else {
                    over_budget(total)
                });
            }
            out
        } else {
            raw
        };
        if out.len() > self.budget {
            self.budget = 0;
            return Err(over_budget(total));
        }
        self.budget -= out.len();
        Ok(out)
    }
}

impl Unwrapper {
    fn format_name(&self) -> &'static str {
        match self.format {
            InputFormat::Auto => "auto",
            InputFormat::K8s => "k8s",
            InputFormat::Eks => "eks",
            InputFormat::Gke => "gke",
            InputFormat::Aks => "aks",
        }
    }
}

/// "an EKS", "a GKE", "an AKS".
fn an(c: Cloud) -> String {
    match c {
        Cloud::Gke => "a GKE".into(),
        c => format!("an {}", c.upper()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Native,
    EksPayload,
    EksLambda,
    EksKinesis,
    EksFirehose,
    EksFirehoseRecord,
    EksOutput,
    EksEvent,
    Gke,
    GkeOther,
    AksHub,
    Aks,
    RecordsNotArray,
    Unknown,
}

impl Shape {
    fn cloud(self) -> Option<Cloud> {
        use Shape::*;
        match self {
            EksPayload | EksLambda | EksKinesis | EksFirehose | EksFirehoseRecord | EksOutput
            | EksEvent => Some(Cloud::Eks),
            Gke | GkeOther => Some(Cloud::Gke),
            AksHub | Aks => Some(Cloud::Aks),
            Native | Unknown | RecordsNotArray => None,
        }
    }
}

/// What a record is, from its top-level keys.
fn classify(t: &Top) -> Shape {
    let kind = string(t.kind);
    let api = string(t.api_version);
    if matches!(kind.as_deref(), Some("Event" | "EventList"))
        || api
            .as_deref()
            .is_some_and(|a| a.starts_with("audit.k8s.io/"))
    {
        return Shape::Native;
    }
    if t.message_type.is_some() || t.log_events.is_some() {
        return Shape::EksPayload;
    }
    if t.awslogs.is_some() {
        return Shape::EksLambda;
    }
    if t.records_upper.is_some() {
        return Shape::EksKinesis;
    }
    if t.proto_payload.is_some() {
        return Shape::Gke;
    }
    if t.category.is_some() {
        return Shape::Aks;
    }
    if let Some(r) = t.records {
        // Firehose bodies hold `{"data": ...}` records, Event Hubs bodies Azure records.
        let Ok(all) = serde_json::from_str::<Vec<&RawValue>>(r.get()) else {
            return Shape::RecordsNotArray;
        };
        // Decided by whether any record holds `data`, not by the first record: an Event Hubs
        // body may start with a record of another kind (an `AllMetrics` metric has neither
        // `category` nor `properties`), and that must not lose the audit records after it.
        // Each AKS record then decides for itself (other kinds are skipped and counted).
        let holds_data = |r: &&RawValue| {
            let mut found = false;
            top_level_keys(r.get().as_bytes(), |k, _| found |= k == b"data");
            found
        };
        if all.is_empty() || all.iter().any(holds_data) {
            return Shape::EksFirehose;
        }
        return Shape::AksHub;
    }
    if t.events.is_some() {
        return Shape::EksOutput;
    }
    if t.message.is_some() {
        return Shape::EksEvent;
    }
    if t.data.is_some() && t.kind.is_none() {
        return Shape::EksFirehoseRecord;
    }
    if t.log_name.is_some() || t.insert_id.is_some() {
        return Shape::GkeOther;
    }
    if kind.is_none() && (t.verb.is_some() || t.audit_id.is_some()) {
        // An Event without `kind` (old logs, hand-written ones).
        return Shape::Native;
    }
    Shape::Unknown
}

/// What an AKS diagnostic record writes instead of a body it did not keep.
pub const AKS_SKIPPED_BODY: &str = "\"skipped-too-big-size-object\"";

/// Applies what the wrapper implies to a parsed Event: a body AKS left out
/// (`"skipped-too-big-size-object"`) is absent, and the alert says so.
pub fn finish_event(ev: &mut Event, origin: &mut Origin) {
    for (name, body) in [
        ("requestObject", &mut ev.request_object),
        ("responseObject", &mut ev.response_object),
    ] {
        if body.is_some_and(|b| b.get() == AKS_SKIPPED_BODY) {
            *body = None;
            origin.notes.push(format!(
                "{} did not log the {name} (it wrote \"skipped-too-big-size-object\": the body was too big); read as absent",
                origin.cloud.upper()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_sniffing() {
        for (head, want) in [
            (&br#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","verb":"get"}"#[..], HeadShape::Native),
            (br#"{"verb":"get","message":"x"}"#, HeadShape::Native),
            (br#"{"messageType":"DATA_MESSAGE","logGroup":"/aws/eks/p/cluster""#, HeadShape::Envelope),
            (br#"{"awslogs":{"data":"H4sI"#, HeadShape::Envelope),
            (b"[\n  {\n    \"insertId\": \"x\",\n    \"labels\": {\"a\":\"b\"},\n    \"protoPayload\": {", HeadShape::Envelope),
            (br#"{"time":"t","resourceId":"/S","category":"kube-audit","properties":{"log":"{\"kind\":\"Event\"}"}}"#, HeadShape::Envelope),
            (br#"{"records":[{"category":"kube-audit"}]}"#, HeadShape::Envelope),
            (br#"{"kind": 0}"#, HeadShape::Unknown),
            (b"", HeadShape::Unknown),
            (b"garbage", HeadShape::Unknown),
            (br#"{"kind":"Pod","apiVersion":"v1"}"#, HeadShape::Unknown),
            (br#"{"a":{"verb":"x","message":1},"b":[{"events":1}]}"#, HeadShape::Unknown),
        ] {
            assert_eq!(sniff_head(head), want, "{}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn envelope_lookalikes() {
        assert!(looks_like_envelope(br#" {"category":"guard"}"#));
        assert!(!looks_like_envelope(
            br#"{"kind":"Event","x":{"message":1}}"#
        ));
        assert!(!looks_like_envelope(b"[1]"));
    }

    #[test]
    fn unknown_records_are_malformed() {
        let u = Unwrapper::new(InputFormat::Auto, 1 << 20);
        let got = u.unwrap_record(br#"{"hello":"world"}"#);
        assert!(
            matches!(&got[..], [Piece::Malformed(r)] if r.starts_with("not an audit Event")),
            "{got:?}"
        );
        // A whole export on one line: each element is a record.
        let got = u.unwrap_record(b"[1,2]");
        assert!(
            matches!(&got[..], [Piece::Malformed(a), Piece::Malformed(b)]
                if a == "[0]: not a JSON object" && b == "[1]: not a JSON object"),
            "{got:?}"
        );
        let got = u.unwrap_record(br#"[{"category":"guard"}]"#);
        assert!(matches!(&got[..], [Piece::Skipped(_)]), "{got:?}");
        let got = u.unwrap_record(b"[]");
        assert!(matches!(&got[..], [Piece::Skipped(_)]), "{got:?}");
        let got = u.unwrap_record(b"7");
        assert!(
            matches!(&got[..], [Piece::Malformed(r)] if r == "not a JSON object"),
            "{got:?}"
        );
        let got = u.unwrap_record(br#"{"a":1} {"b""#);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            matches!(&got[1], Piece::Malformed(r) if r.starts_with("[value 1]: invalid JSON")),
            "{got:?}"
        );
    }
}
