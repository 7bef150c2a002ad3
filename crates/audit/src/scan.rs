//! Line visiting with a byte-level prefilter, and the parallel, order-keeping chunk driver.

use crate::framing::Chunk;
use crossbeam_channel::bounded;
use memchr::memmem::Finder;
use std::collections::BTreeMap;
use std::io;

/// What [`visit_lines`] found in a chunk besides the candidate lines.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LineStats {
    /// Lines in the chunk (a last line without a newline counts).
    pub lines: u64,
    /// Lines holding only whitespace.
    pub blank: u64,
    /// Lines the prefilter rejected (they passed the cheap shape check).
    pub prefiltered: u64,
}

/// How a line was judged without parsing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineIssue {
    /// Longer than the line cap.
    TooLong(usize),
    /// Does not begin with `{` and end with `}`, so it cannot be an Event or EventList.
    NotAnObject,
}

/// Visits every line of `bytes`.
///
/// With a `prefilter`, only lines containing its needle go to `candidate`; the others get a
/// shape check (`{` ... `}`) so that truncated or foreign lines are still reported. Without
/// one, every non-blank line is a candidate. Line numbers passed on are relative to the chunk
/// (0-based). `\r` before a newline is dropped.
pub fn visit_lines(
    bytes: &[u8],
    prefilter: Option<&Finder<'_>>,
    max_line: usize,
    mut candidate: impl FnMut(u64, &[u8]),
    mut issue: impl FnMut(u64, LineIssue),
) -> LineStats {
    let mut st = LineStats::default();
    let mut start = 0usize;
    let mut next_hit = prefilter.map(|f| f.find(bytes).unwrap_or(usize::MAX));
    let ends = memchr::memchr_iter(b'\n', bytes)
        .chain((bytes.last().is_some_and(|&b| b != b'\n')).then_some(bytes.len()));
    for end in ends {
        let rel = st.lines;
        st.lines += 1;
        let mut line = &bytes[start..end];
        let line_start = start;
        start = end + 1;
        if let Some(b'\r') = line.last() {
            line = &line[..line.len() - 1];
        }
        if line.len() > max_line {
            issue(rel, LineIssue::TooLong(line.len()));
            if let (Some(f), Some(h)) = (prefilter, next_hit.as_mut()) {
                if *h < end {
                    *h = f.find(&bytes[end.min(bytes.len())..]).map_or(usize::MAX, |p| p + end);
                }
            }
            continue;
        }
        match (prefilter, next_hit.as_mut()) {
            (Some(f), Some(h)) => {
                if *h < end {
                    debug_assert!(*h >= line_start);
                    *h = f.find(&bytes[end.min(bytes.len())..]).map_or(usize::MAX, |p| p + end);
                    candidate(rel, line);
                } else {
                    match shape(line) {
                        Shape::Blank => st.blank += 1,
                        Shape::Object => st.prefiltered += 1,
                        Shape::Other => issue(rel, LineIssue::NotAnObject),
                    }
                }
            }
            _ => {
                if line.iter().all(u8::is_ascii_whitespace) {
                    st.blank += 1;
                } else {
                    candidate(rel, line);
                }
            }
        }
    }
    st
}

enum Shape {
    Blank,
    Object,
    Other,
}

fn shape(line: &[u8]) -> Shape {
    // The common case first: a log line starts with `{` and ends with `}`.
    if line.first() == Some(&b'{') && line.last() == Some(&b'}') {
        return Shape::Object;
    }
    let t = crate::framing::trim(line);
    if t.is_empty() {
        Shape::Blank
    } else if t.first() == Some(&b'{') && t.last() == Some(&b'}') {
        Shape::Object
    } else {
        Shape::Other
    }
}

/// Runs `work` on every chunk with `threads` workers and hands the results to `deliver` in
/// input order.
///
/// A reader thread pulls chunks, workers process them, and the calling thread puts results
/// back in order. Channels are bounded, so memory stays at a few chunks in flight. A read error
/// is delivered in its place in the order, after every chunk read before it; reading stops
/// there.
pub fn run_ordered<I, W, T, D>(chunks: I, threads: usize, work: W, mut deliver: D)
where
    I: Iterator<Item = io::Result<Chunk>> + Send,
    W: Fn(&Chunk) -> T + Sync,
    T: Send,
    D: FnMut(io::Result<T>),
{
    let threads = threads.max(1);
    if threads == 1 {
        for c in chunks {
            match c {
                Ok(c) => deliver(Ok(work(&c))),
                Err(e) => {
                    deliver(Err(e));
                    break;
                }
            }
        }
        return;
    }
    let (chunk_tx, chunk_rx) = bounded::<Chunk>(threads * 2);
    let (res_tx, res_rx) = bounded::<(u64, io::Result<T>)>(threads * 4);
    std::thread::scope(|s| {
        let err_tx = res_tx.clone();
        s.spawn(move || {
            let mut seq = 0u64;
            for c in chunks {
                match c {
                    Ok(mut c) => {
                        // Sequence numbers are the driver's own, so several inputs could share it.
                        c.seq = seq;
                        seq += 1;
                        if chunk_tx.send(c).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = err_tx.send((seq, Err(e)));
                        return;
                    }
                }
            }
        });
        for _ in 0..threads {
            let rx = chunk_rx.clone();
            let tx = res_tx.clone();
            let work = &work;
            s.spawn(move || {
                for c in rx.iter() {
                    if tx.send((c.seq, Ok(work(&c)))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(chunk_rx);
        drop(res_tx);
        let mut next = 0u64;
        let mut waiting: BTreeMap<u64, io::Result<T>> = BTreeMap::new();
        for (seq, r) in res_rx.iter() {
            waiting.insert(seq, r);
            while let Some(r) = waiting.remove(&next) {
                next += 1;
                deliver(r);
            }
        }
        // Only a read error can be left: it was numbered after the last chunk sent.
        for (_, r) in waiting {
            deliver(r);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::LineChunker;

    fn visit(bytes: &[u8], needle: Option<&str>) -> (Vec<(u64, String)>, Vec<(u64, LineIssue)>, LineStats) {
        let f = needle.map(|n| Finder::new(n.as_bytes()).into_owned());
        let mut c = Vec::new();
        let mut i = Vec::new();
        let st = visit_lines(
            bytes,
            f.as_ref(),
            40,
            |l, b| c.push((l, String::from_utf8_lossy(b).into_owned())),
            |l, x| i.push((l, x)),
        );
        (c, i, st)
    }

    #[test]
    fn prefilter_picks_lines_and_checks_shape() {
        let input = b"{\"r\":\"clusterroles\"}\n{\"r\":\"pods\"}\r\n\n truncated {\"r\":\n{\"clusterroles\":1,\"clusterroles\":2}\n{\"x\":\"a very long line that goes over the cap clusterroles\"}\n{}";
        let (c, i, st) = visit(input, Some("clusterroles"));
        assert_eq!(c, vec![(0, "{\"r\":\"clusterroles\"}".into()), (4, "{\"clusterroles\":1,\"clusterroles\":2}".into())]);
        assert_eq!(i, vec![(3, LineIssue::NotAnObject), (5, LineIssue::TooLong(60))]);
        assert_eq!(st, LineStats { lines: 7, blank: 1, prefiltered: 2 });
        let (c, _, st) = visit(input, None);
        assert_eq!(c.len(), 5);
        assert_eq!(st.lines, 7);
    }

    #[test]
    fn ordered_results_with_threads() {
        let input: Vec<u8> = (0..20_000).flat_map(|i| format!("{{\"n\":{i}}}\n").into_bytes()).collect();
        for threads in [1, 2, 4] {
            let chunks = LineChunker::new(&input[..], Vec::new(), 1024, 1 << 20);
            let mut lines = Vec::new();
            run_ordered(
                chunks,
                threads,
                |c| {
                    let mut v = Vec::new();
                    visit_lines(c.bytes(), None, 1 << 20, |_, l| v.push(l.to_vec()), |_, _| {});
                    v
                },
                |r| lines.extend(r.unwrap()),
            );
            assert_eq!(lines.len(), 20_000);
            for (i, l) in lines.iter().enumerate() {
                assert_eq!(l, &format!("{{\"n\":{i}}}").into_bytes());
            }
        }
    }

    struct FailAfter(usize);
    impl io::Read for FailAfter {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.0);
            for (k, b) in buf[..n].iter_mut().enumerate() {
                *b = if k % 10 == 9 { b'\n' } else { b'x' };
            }
            self.0 -= n;
            Ok(n)
        }
    }

    #[test]
    fn read_error_comes_last() {
        let chunks = LineChunker::new(FailAfter(100_000), Vec::new(), 2048, 1 << 20);
        let mut got = Vec::new();
        run_ordered(chunks, 2, |c| c.bytes().len(), |r| got.push(r.map_err(|e| e.to_string())));
        assert_eq!(got.last().unwrap().as_ref().unwrap_err(), "disk on fire");
        assert!(got[..got.len() - 1].iter().all(|r| r.is_ok()));
    }
}
