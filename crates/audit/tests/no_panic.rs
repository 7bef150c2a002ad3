//! Robustness properties of the audit crate: record parsing never panics on any input, and the
//! chunkers and the line visitor never panic and account for every line of any input.

use audit::framing::{LineChunker, MappedLineChunker, ValueChunker};
use audit::{parse_record, visit_lines, Chunk, ChunkKind, Event, LineNeedle, Record};
use proptest::prelude::*;
use std::io::Write;

// ---------------------------------------------------------------------------------------------
// Real event lines to mutate
// ---------------------------------------------------------------------------------------------

const CLUSTERROLE_CREATE: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"9827a0e7-64ea-416b-b74c-466c8e6bd77d","stage":"ResponseComplete","requestURI":"/apis/rbac.authorization.k8s.io/v1/clusterroles?fieldManager=kubectl-client-side-apply&dry%52un=%4","verb":"create","user":{"username":"al\u0069ce@example.com","groups":["platform-admins","system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["X509SHA256=95580df9"]}},"impersonatedUser":{"username":"bob"},"sourceIPs":["203.0.113.27"],"userAgent":"kubectl/v1.29.4 (linux/amd64) kubernetes/55019c8","objectRef":{"resource":"clusterroles","name":"backup-operator","apiGroup":"rbac.authorization.k8s.io","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"ClusterRole","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"backup-operator"},"rules":[{"apiGroups":[""],"resources":["pods","services"],"verbs":["*"]}]},"responseObject":{"kind":"ClusterRole","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"backup-operator","uid":"1c1f5c95"},"rules":[{"apiGroups":[""],"resources":["pods","services"],"verbs":["*"]}]},"requestReceivedTimestamp":"2025-06-01T00:00:01.183490Z","stageTimestamp":"2025-06-01T00:00:01.219982Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by ClusterRoleBinding \"platform-admins\""}}"#;

const POD_GET: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"5d158a2f-f2ee-4e45-99f9-919c895fd7b3","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/checkout/pods/api-9118","verb":"get","user":{"username":"system:node:ip-10-0-1-25.ec2.internal","groups":["system:nodes","system:authenticated"]},"sourceIPs":["10.0.1.25"],"userAgent":"kubelet/v1.29.4 (linux/amd64) kubernetes/55019c8","objectRef":{"resource":"pods","namespace":"checkout","name":"api-9118","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2025-06-01T00:00:00.010386Z","stageTimestamp":"2025-06-01T00:00:00.012357Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}"#;

const EVENT_LIST: &str = r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[{"kind":"Event","auditID":"a","verb":"patch","stage":"ResponseComplete","objectRef":{"resource":"clusterroles"},"responseStatus":{"code":200},"requestObject":[{"op":"add","path":"/rules/-","value":{"verbs":["*"]}}]},{"kind":"Pod"},{"verb":7},{"auditID":"b","timestamp":"t"}]}"#;

const V1BETA1: &str = "{\"apiVersion\":\"audit.k8s.io/v1beta1\",\"verb\":\"update\",\"timestamp\":\"t\",\"objectRef\":{\"resource\":\"pods\",\"subresource\":\"status\"},\"requestObject\":\"skipped\"}";

const LINES: &[&str] = &[CLUSTERROLE_CREATE, POD_GET, EVENT_LIST, V1BETA1];

/// Uses every accessor of a parsed record, so that lazily evaluated parts run too.
fn exercise(bytes: &[u8]) {
    let touch = |e: &Event| {
        let _ = (
            e.verb(),
            e.stage(),
            e.resource(),
            e.code(),
            e.time(),
            e.is_dry_run(),
        );
        let _ = e.annotation("authorization.k8s.io/decision");
        let _ = e.request_object.map(|r| r.get().len());
        let _ = e.response_object.map(|r| r.get().len());
        let _ = e
            .user
            .as_ref()
            .and_then(|u| u.username.as_deref().map(str::len));
        let _ = format!("{e:?}");
    };
    match parse_record(bytes) {
        Ok(Record::Event(e)) => touch(&e),
        Ok(Record::List(items)) => {
            for it in &items {
                match it {
                    Ok(e) => touch(e),
                    Err(err) => drop(err.to_string()),
                }
            }
        }
        Err(err) => drop(err.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// parse_record
// ---------------------------------------------------------------------------------------------

const FRAGMENTS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    " ",
    "\n",
    "null",
    "true",
    "0",
    "-0",
    "1e999",
    "-1",
    "18446744073709551616",
    "\"\"",
    "\"kind\"",
    "\"Event\"",
    "\"EventList\"",
    "\"items\"",
    "\"apiVersion\"",
    "\"audit.k8s.io/v1\"",
    "\"v1\"",
    "\"verb\"",
    "\"create\"",
    "\"auditID\"",
    "\"user\"",
    "\"username\"",
    "\"groups\"",
    "\"objectRef\"",
    "\"resource\"",
    "\"clusterroles\"",
    "\"responseStatus\"",
    "\"code\"",
    "\"requestObject\"",
    "\"responseObject\"",
    "\"annotations\"",
    "\"requestURI\"",
    "\"/x?dryRun=All\"",
    "\"%\"",
    "\"%4\"",
    "\"+%zz%\"",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"\\udc00\\ud800\"",
    "\"\\u00e9\"",
    "\"\\\"\"",
    "\"\\",
    "\"é\"",
    "\u{feff}",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn parse_record_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        exercise(&bytes);
    }

    #[test]
    fn parse_record_never_panics_on_jsonish(parts in prop::collection::vec(prop::sample::select(FRAGMENTS), 0..40)) {
        exercise(parts.concat().as_bytes());
    }

    /// Fields of the right names but any JSON type.
    #[test]
    fn parse_record_never_panics_on_wrong_types(
        fields in prop::collection::vec((prop::sample::select(&FRAGMENTS[16..42]), prop::sample::select(FRAGMENTS)), 0..8),
    ) {
        let body: Vec<String> = fields.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        exercise(format!("{{{}}}", body.join(",")).as_bytes());
        exercise(format!("{{\"kind\":\"EventList\",\"items\":[{{{}}}]}}", body.join(",")).as_bytes());
    }

    #[test]
    fn parse_record_never_panics_on_byte_flips(
        which in 0..LINES.len(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut b = LINES[which].as_bytes().to_vec();
        for (i, v) in flips {
            let at = i.index(b.len());
            b[at] = v;
        }
        exercise(&b);
    }

    #[test]
    fn parse_record_never_panics_on_splices(
        a in 0..LINES.len(),
        b in 0..LINES.len(),
        i in any::<prop::sample::Index>(),
        j in any::<prop::sample::Index>(),
    ) {
        // The head of one event glued to the tail of another.
        let (x, y) = (LINES[a].as_bytes(), LINES[b].as_bytes());
        let mut v = x[..i.index(x.len() + 1)].to_vec();
        v.extend_from_slice(&y[j.index(y.len() + 1)..]);
        exercise(&v);
    }

    #[test]
    fn dry_run_check_never_panics(uri in "[/?&=#%+a-zA-Z0-9é]{0,40}") {
        let _ = audit::event::uri_is_dry_run(&uri);
    }
}

#[test]
fn real_lines_parse() {
    for l in LINES {
        assert!(parse_record(l.as_bytes()).is_ok(), "{l}");
    }
}

#[test]
fn truncation_at_every_position() {
    for l in LINES {
        let b = l.as_bytes();
        for cut in 0..b.len() {
            exercise(&b[..cut]);
            // A strict prefix of an object is never a whole JSON value.
            assert!(parse_record(&b[..cut]).is_err(), "prefix {cut} of {l}");
            // Nor is the line with its head cut off, except where the cut leaves a value.
            exercise(&b[cut..]);
        }
    }
}

#[test]
fn every_single_byte_flip() {
    // Exhaustive over positions for a handful of bytes that change the JSON structure.
    for l in LINES {
        let b = l.as_bytes();
        for at in 0..b.len() {
            for v in [
                b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', 0u8, 0xff, b'\n',
            ] {
                let mut m = b.to_vec();
                m[at] = v;
                exercise(&m);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs for the chunkers
// ---------------------------------------------------------------------------------------------

/// Input bytes whose `Debug` stays short: runs of one byte are written `'x'*70000`, so that a
/// failing case with 64 KiB lines can still be read (and pasted into a regression test).
#[derive(Clone)]
struct Bytes(Vec<u8>);

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = &self.0;
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut i = 0;
        while i < b.len() {
            let run = b[i..].iter().take_while(|&&c| c == b[i]).count();
            if run >= 8 {
                if !lit.is_empty() {
                    parts.push(format!("b\"{}\"", std::mem::take(&mut lit)));
                }
                parts.push(format!("b\"{}\"*{run}", [b[i]].escape_ascii()));
            } else {
                lit.extend(b[i..i + run].escape_ascii().map(char::from));
            }
            i += run;
        }
        if !lit.is_empty() || parts.is_empty() {
            parts.push(format!("b\"{lit}\""));
        }
        write!(f, "{} ({} bytes)", parts.join(" + "), b.len())
    }
}

/// The lines of `input` without their `\n` (a last line without one counts).
fn lines_of(input: &[u8]) -> Vec<&[u8]> {
    let mut v: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    if input.is_empty() || input.ends_with(b"\n") {
        v.pop();
    }
    v
}

/// The number of lines: every `\n`, plus a last line without one.
fn expected_lines(input: &[u8]) -> u64 {
    let nl = input.iter().filter(|&&b| b == b'\n').count() as u64;
    nl + u64::from(!input.is_empty() && !input.ends_with(b"\n"))
}

/// Inputs of every kind, with lines around and over the chunkers' 64 KiB read size.
fn arb_input() -> impl Strategy<Value = Bytes> {
    arb_input_vec(60_000..140_000).prop_map(Bytes)
}

fn arb_input_vec(long: std::ops::Range<usize>) -> impl Strategy<Value = Vec<u8>> {
    let alphabet = prop::sample::select(&b"\n\n\nx{}\"\\[], \r:"[..]);
    prop_oneof![
        // Anything.
        2 => prop::collection::vec(any::<u8>(), 0..3000),
        // Mostly structure and newlines.
        3 => prop::collection::vec(alphabet, 0..5000),
        // Event lines, some broken, some empty, with CRLF or not.
        2 => prop::collection::vec((0..LINES.len(), 0usize..3, any::<bool>()), 0..40).prop_map(|ls| {
            let mut v = Vec::new();
            for (i, mode, crlf) in ls {
                match mode {
                    0 => v.extend_from_slice(LINES[i].as_bytes()),
                    1 => v.extend_from_slice(&LINES[i].as_bytes()[..LINES[i].len() / 2]),
                    _ => {}
                }
                if crlf {
                    v.push(b'\r');
                }
                v.push(b'\n');
            }
            v
        }),
        // Long lines, short lines in between.
        1 => (
            prop::collection::vec((prop_oneof![3 => 0usize..12, 1 => long], prop::sample::select(&b"x{ "[..])), 0..8),
            any::<bool>(),
        )
            .prop_map(|(ls, trailing)| {
                let mut v = Vec::new();
                for (k, (n, c)) in ls.iter().enumerate() {
                    v.extend(std::iter::repeat_n(*c, *n));
                    if k + 1 < ls.len() || trailing {
                        v.push(b'\n');
                    }
                }
                v
            }),
    ]
}

fn arb_cap() -> impl Strategy<Value = usize> {
    prop_oneof![
        0usize..40,
        40usize..300,
        Just(70_000usize),
        Just(1usize << 20)
    ]
}

/// Checks the chunks of a line chunker against the input, line by line: `Lines` chunks hold
/// the next lines verbatim, an `OversizeLine` stands for exactly one line longer than the cap.
/// Returns the number of lines the chunks account for.
fn check_line_chunks(
    input: &[u8],
    chunks: impl Iterator<Item = std::io::Result<Chunk>>,
    cap: usize,
) -> Result<u64, TestCaseError> {
    let want = lines_of(input);
    let mut next = 0usize;
    let mut counted = 0u64;
    let mut skipped = 0u64;
    let mut lines_bytes = Vec::new();
    let mut ended_without_newline = false;
    for c in chunks {
        let c = c.map_err(|e| TestCaseError::fail(format!("read error {e}")))?;
        prop_assert!(
            !ended_without_newline,
            "a chunk follows one that did not end with a newline"
        );
        match &c.kind {
            ChunkKind::Lines => {
                let b = c.bytes();
                prop_assert!(!b.is_empty(), "empty Lines chunk");
                lines_bytes.extend_from_slice(b);
                ended_without_newline = !b.ends_with(b"\n");
                for l in lines_of(b) {
                    prop_assert!(next < want.len(), "more lines than the input has");
                    prop_assert_eq!(l, want[next], "line {} differs", next);
                    next += 1;
                    counted += 1;
                }
            }
            ChunkKind::OversizeLine { bytes, lines } => {
                prop_assert_eq!(*lines, 1);
                prop_assert!(next < want.len(), "oversize line past the end of the input");
                prop_assert_eq!(
                    *bytes,
                    want[next].len() as u64,
                    "oversize line {} has the wrong size",
                    next
                );
                prop_assert!(
                    *bytes > cap.max(1) as u64,
                    "line {} of {} bytes skipped under the cap {}",
                    next,
                    bytes,
                    cap
                );
                next += 1;
                counted += lines;
                skipped += lines;
            }
            ChunkKind::Values { .. } => prop_assert!(false, "Values chunk from a line chunker"),
        }
    }
    prop_assert_eq!(next, want.len(), "lines unaccounted for");
    // The kept bytes and the skipped lines together make up the input's lines.
    prop_assert_eq!(
        expected_lines(&lines_bytes) + skipped,
        expected_lines(input)
    );
    Ok(counted)
}

/// Checks a value chunker's chunks: ranges in bounds, relative lines in order and inside the
/// chunk, nothing kept over the cap; parses every record. Returns the lines counted.
fn check_value_chunks(
    input: &[u8],
    at: usize,
    chunk: usize,
    cap: usize,
) -> Result<u64, TestCaseError> {
    let mut lines = 0u64;
    for c in ValueChunker::new(&input[at..], input[..at].to_vec(), chunk, cap) {
        let c = c.map_err(|e| TestCaseError::fail(format!("read error {e}")))?;
        let ChunkKind::Values {
            records,
            lines: n,
            oversize,
        } = &c.kind
        else {
            return Err(TestCaseError::fail("not a Values chunk"));
        };
        let mut last = 0;
        for (rel, range) in records {
            prop_assert!(range.end <= c.bytes().len());
            prop_assert!(
                *rel <= *n,
                "record line {} past the chunk's {} lines",
                rel,
                n
            );
            prop_assert!(*rel >= last, "records out of order");
            prop_assert!(
                range.len() <= cap.max(1),
                "kept a value of {} bytes over the cap {}",
                range.len(),
                cap
            );
            last = *rel;
            exercise(&c.bytes()[range.clone()]);
        }
        for (rel, size) in oversize {
            prop_assert!(*rel <= *n);
            prop_assert!(*size > cap.max(1) as u64);
        }
        lines += n;
    }
    Ok(lines)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    #[test]
    fn line_chunker_accounts_for_every_line(input in arb_input(), chunk in 0usize..4096, cap in arb_cap()) {
        let counted = check_line_chunks(&input, LineChunker::new(&input[..], Vec::new(), chunk, cap), cap)?;
        prop_assert_eq!(counted, expected_lines(&input));
    }

    /// The sniffed head handed to the chunker is part of the input like any other bytes.
    #[test]
    fn line_chunker_with_head(input in arb_input(), split in any::<prop::sample::Index>(), chunk in 0usize..4096, cap in arb_cap()) {
        let at = split.index(input.len() + 1);
        let chunks = LineChunker::new(&input[at..], input[..at].to_vec(), chunk, cap);
        let counted = check_line_chunks(&input, chunks, cap)?;
        prop_assert_eq!(counted, expected_lines(&input));
    }

    #[test]
    fn mapped_line_chunker_accounts_for_every_line(input in arb_input(), window in 0usize..200_000, cap in arb_cap()) {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&input).unwrap();
        let chunks = MappedLineChunker::new(f, input.len() as u64, window, cap);
        let counted = check_line_chunks(&input, chunks, cap)?;
        prop_assert_eq!(counted, expected_lines(&input));
    }

    /// Chunks that never end inside a value (a chunk larger than the input, nothing over the
    /// cap): no panic, every line counted.
    #[test]
    fn value_chunker_accounts_for_newlines(input in arb_input(), split in any::<prop::sample::Index>(), big_cap in any::<bool>()) {
        let at = split.index(input.len() + 1);
        let cap = if big_cap { 1 << 20 } else { input.len().max(1) };
        let lines = check_value_chunks(&input, at, input.len() + 1, cap)?;
        prop_assert_eq!(lines, expected_lines(&input));
    }

    /// The full property: small chunks, small caps, and the line count of the brief (a last
    /// line without a newline counts, as it does for JSON lines).
    #[test]
    fn value_chunker_full(input in arb_input(), split in any::<prop::sample::Index>(), chunk in 0usize..4096, cap in arb_cap()) {
        let at = split.index(input.len() + 1);
        let lines = check_value_chunks(&input, at, chunk, cap)?;
        prop_assert_eq!(lines, expected_lines(&input));
    }
}

// ---------------------------------------------------------------------------------------------
// Line chunker regressions (found by the properties above; fixed in framing.rs), and the value
// chunker's known bugs with minimal inputs
// ---------------------------------------------------------------------------------------------

fn line_chunk_summary(head: &[u8], rest: &[u8], cap: usize) -> Vec<String> {
    LineChunker::new(rest, head.to_vec(), 0, cap)
        .map(|c| {
            let c = c.unwrap();
            match &c.kind {
                ChunkKind::Lines => format!("Lines({} lines)", lines_of(c.bytes()).len()),
                k => format!("{k:?}"),
            }
        })
        .collect()
}

/// After an over-the-cap line, `skip_line` keeps the rest of its 64 KiB read as the carry; the
/// next chunk used to search for newlines only after the carry, so when the following read had
/// none (another long line) every line in the carry went into the next `OversizeLine`.
#[test]
fn line_chunker_keeps_lines_between_two_long_lines() {
    let mut input = vec![b'x'; 70_000];
    input.extend_from_slice(b"\n{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n");
    input.extend(vec![b'y'; 200_000]);
    input.push(b'\n');
    // Was: [OversizeLine { bytes: 70000, lines: 1 }, OversizeLine { bytes: 200024, lines: 1 }]
    assert_eq!(
        line_chunk_summary(&[], &input, 1000),
        [
            "OversizeLine { bytes: 70000, lines: 1 }",
            "Lines(3 lines)",
            "OversizeLine { bytes: 200000, lines: 1 }"
        ]
    );
}

/// The same with the smallest input: three lines after a 64 KiB one, cap 0.
#[test]
fn line_chunker_keeps_lines_after_long_line_minimal() {
    let mut input = vec![b'x'; 65_536];
    input.extend_from_slice(b"\n\n\n");
    let counted =
        check_line_chunks(&input, LineChunker::new(&input[..], Vec::new(), 0, 0), 0).unwrap();
    assert_eq!(counted, 3);
}

/// `audit::open` hands the first 64 KiB (the sniffed head) to the chunker as its carry. The
/// first chunk used to search for newlines only in what it read after the head, so a stream
/// (stdin, gzip, a file under 1 MiB) whose head was longer than `--max-line-bytes` came out as
/// one `OversizeLine`: every event in it skipped, although no line was over the cap.
#[test]
fn line_chunker_head_longer_than_cap_keeps_its_lines() {
    let head = b"{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n";
    // Was: [OversizeLine { bytes: 24, lines: 1 }]
    assert_eq!(line_chunk_summary(head, b"", 16), ["Lines(3 lines)"]);
}

/// A value that spans the end of a chunk and has a newline before it: its lines are held back
/// for the chunk that reports it (this used to underflow), and the last line, which has no
/// newline, counts.
#[test]
fn value_chunker_value_spanning_chunks() {
    let mut input = b"{\"a\":1}".repeat(200);
    input.extend_from_slice(b"{\n\"b\":\"");
    input.extend(vec![b'x'; 70_000]);
    input.extend_from_slice(b"\"}");
    let lines = check_value_chunks(&input, 0, 0, 1 << 20).unwrap();
    assert_eq!(lines, expected_lines(&input));
    assert_eq!(lines, 2);
}

/// Values chunks count a last line without a newline, as Lines chunks do.
#[test]
fn value_chunker_counts_last_line() {
    let input = b"{\"kind\":\"EventList\",\n\"items\":[]}";
    assert_eq!(check_value_chunks(input, 0, 0, 1 << 20).unwrap(), 2);
}

// ---------------------------------------------------------------------------------------------
// visit_lines
// ---------------------------------------------------------------------------------------------

const NEEDLE: &str = "clusterroles";

fn arb_visit_input() -> impl Strategy<Value = Bytes> {
    arb_visit_input_vec().prop_map(Bytes)
}

fn arb_visit_input_vec() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop::sample::select(
        &[
            "\n",
            "\r\n",
            " ",
            "\t",
            "{",
            "}",
            "x",
            NEEDLE,
            "cluster",
            "roles",
            "clusterrole",
            "\r",
            "{\"a\":1}",
        ][..],
    );
    prop_oneof![
        3 => prop::collection::vec(piece, 0..200).prop_map(|p| p.concat().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..2000),
        1 => arb_input_vec(60_000..140_000),
    ]
}

#[derive(Debug, Default, PartialEq)]
struct Visit {
    candidates: Vec<(u64, Vec<u8>)>,
    issues: Vec<(u64, String)>,
}

fn strip_cr(l: &[u8]) -> &[u8] {
    l.strip_suffix(b"\r").unwrap_or(l)
}

/// What `visit_lines` must report: candidates exactly, and the `TooLong` issues of the lines
/// it looks at.
fn reference_visit(input: &[u8], needle: Option<&str>, max: usize) -> Visit {
    let mut v = Visit::default();
    for (i, raw) in lines_of(input).into_iter().enumerate() {
        let i = i as u64;
        let line = strip_cr(raw);
        let looked_at = match needle {
            Some(n) => memchr::memmem::find(raw, n.as_bytes()).is_some(),
            None => !line.iter().all(u8::is_ascii_whitespace) || line.len() > max,
        };
        if !looked_at {
            continue;
        }
        if line.len() > max {
            v.issues.push((i, format!("TooLong({})", line.len())));
        } else {
            v.candidates.push((i, line.to_vec()));
        }
    }
    v
}

fn run_visit(input: &[u8], needle: Option<&str>, max: usize) -> (Visit, audit::LineStats) {
    let finder = needle.map(|n| LineNeedle::new(n.as_bytes()));
    let mut v = Visit::default();
    let mut issues = Vec::new();
    let st = visit_lines(
        input,
        finder.as_ref(),
        max,
        |l, b| v.candidates.push((l, b.to_vec())),
        |l, i| issues.push((l, format!("{i:?}"))),
    );
    v.issues = issues;
    (v, st)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn visit_lines_accounts_for_every_line(input in arb_visit_input(), prefilter in any::<bool>(), max in prop_oneof![0usize..30, Just(1usize << 20)]) {
        let needle = prefilter.then_some(NEEDLE);
        let (got, st) = run_visit(&input, needle, max);
        let want = reference_visit(&input, needle, max);
        prop_assert_eq!(st.lines, expected_lines(&input));
        prop_assert_eq!(&got.candidates, &want.candidates);
        // Every line's outcome is counted once.
        let looked = (got.candidates.len() + got.issues.len()) as u64;
        prop_assert_eq!(st.blank + st.prefiltered + looked, st.lines, "{:?}", st);
        // TooLong for every long line looked at; whatever else is reported is about a real line.
        for want_issue in &want.issues {
            prop_assert!(got.issues.contains(want_issue), "missing {:?} in {:?}", want_issue, got.issues);
        }
        for (l, _) in &got.issues {
            prop_assert!(*l < st.lines);
        }
        if !prefilter {
            prop_assert_eq!(&got.issues, &want.issues);
        }
    }

    /// Chunk by chunk, the visitor sees every line once (oversize lines are counted by the chunker).
    #[test]
    fn chunked_visit_accounts_for_every_line(input in arb_input(), prefilter in any::<bool>(), chunk in 0usize..4096, cap in arb_cap()) {
        let finder = LineNeedle::new(NEEDLE.as_bytes());
        let mut lines = 0u64;
        for c in LineChunker::new(&input[..], Vec::new(), chunk, cap) {
            let c = c.unwrap();
            match c.kind {
                ChunkKind::Lines => {
                    let st = visit_lines(c.bytes(), prefilter.then_some(&finder), cap, |_, _| {}, |_, _| {});
                    lines += st.lines;
                }
                ChunkKind::OversizeLine { lines: n, .. } => lines += n,
                ChunkKind::Values { .. } => prop_assert!(false),
            }
        }
        prop_assert_eq!(lines, expected_lines(&input));
    }
}

// ---------------------------------------------------------------------------------------------
// LineNeedle: the fused (AVX2) search agrees with the two-pass one and with a naive search
// ---------------------------------------------------------------------------------------------

/// The first occurrence at or after `pos` and the newlines before it, the slow way.
fn naive_next(hay: &[u8], needle: &[u8], pos: usize) -> (Option<usize>, u64) {
    let pos = pos.min(hay.len());
    let hit = (pos..hay.len()).find(|&i| hay[i..].starts_with(needle));
    let end = hit.unwrap_or(hay.len());
    (
        hit,
        hay[pos..end].iter().filter(|&&b| b == b'\n').count() as u64,
    )
}

fn arb_hay() -> impl Strategy<Value = Bytes> {
    let piece = prop::sample::select(
        &[
            "\n",
            "c",
            "l",
            "cl",
            "clusterroles",
            "clusterrole",
            "lusterroles",
            "x",
            "aa",
            "a",
            "ab",
            "\n\n",
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        ][..],
    );
    prop_oneof![
        3 => prop::collection::vec(piece, 0..120).prop_map(|p| Bytes(p.concat().into_bytes())),
        1 => prop::collection::vec(prop::sample::select(&b"acl\n"[..]), 0..300).prop_map(Bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn line_needle_agrees_with_naive_search(
        hay in arb_hay(),
        needle in prop::sample::select(&["clusterroles", "cl", "aa", "a", "ab", "x\u{0}"][..]),
        pos in any::<prop::sample::Index>(),
    ) {
        let n = LineNeedle::new(needle.as_bytes());
        let pos = pos.index(hay.len() + 2);
        let want = naive_next(&hay, needle.as_bytes(), pos);
        prop_assert_eq!(n.next_portable(&hay, pos), want);
        prop_assert_eq!(n.next(&hay, pos), want);
        // Walking hit to hit counts every newline once.
        let (mut at, mut newlines) = (0usize, 0u64);
        loop {
            let (hit, skipped) = n.next(&hay, at);
            newlines += skipped;
            match hit {
                Some(h) => {
                    newlines += hay[h..h + 1].iter().filter(|&&b| b == b'\n').count() as u64;
                    at = h + 1;
                }
                None => break,
            }
        }
        prop_assert_eq!(newlines, hay.iter().filter(|&&b| b == b'\n').count() as u64);
    }
}

#[test]
fn visit_lines_edges() {
    for input in [
        &b""[..],
        b"\n",
        b"\r\n",
        b"x",
        b"clusterroles",
        b"clusterroles\n",
        b"\nclusterroles",
        b"a\r\nclusterroles\r\n\r\n",
        b"clusterrolesclusterroles\nx\nclusterroles",
    ] {
        for needle in [None, Some(NEEDLE)] {
            for max in [0, 5, 100] {
                let (got, st) = run_visit(input, needle, max);
                assert_eq!(st.lines, expected_lines(input), "{input:?}");
                assert_eq!(
                    got.candidates,
                    reference_visit(input, needle, max).candidates,
                    "{input:?} {needle:?} {max}"
                );
            }
        }
    }
}
