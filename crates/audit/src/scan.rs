//! Line visiting with a byte-level prefilter, and the parallel, order-keeping chunk driver.

use crate::framing::Chunk;
use crate::needle::LineNeedle;
use crossbeam_channel::bounded;
use std::collections::BTreeMap;
use std::io;

/// What [`visit_lines`] found in a chunk besides the candidate lines.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LineStats {
    /// Lines in the chunk (a last line without a newline counts).
    pub lines: u64,
    /// Lines holding only whitespace.
    pub blank: u64,
    /// Lines the prefilter skipped without looking at them.
    pub prefiltered: u64,
}

/// How a line was judged without parsing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineIssue {
    /// Longer than the line cap.
    TooLong(usize),
}

/// Visits every line of `bytes`.
///
/// With a `prefilter`, only lines containing its needle go to `candidate`; the others are
/// counted (as `prefiltered`, blank ones included) without being looked at. Without one, every
/// non-blank line is a candidate. Line numbers passed on are relative to the chunk
/// (0-based). `\r` before a newline is dropped.
pub fn visit_lines(
    bytes: &[u8],
    prefilter: Option<&LineNeedle>,
    max_line: usize,
    candidate: impl FnMut(u64, &[u8]),
    issue: impl FnMut(u64, LineIssue),
) -> LineStats {
    match prefilter {
        Some(f) => visit_prefiltered(bytes, f, max_line, candidate, issue),
        None => visit_all(bytes, max_line, candidate, issue),
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    match line.last() {
        Some(b'\r') => &line[..line.len() - 1],
        _ => line,
    }
}

/// Every line is a candidate.
fn visit_all(
    bytes: &[u8],
    max_line: usize,
    mut candidate: impl FnMut(u64, &[u8]),
    mut issue: impl FnMut(u64, LineIssue),
) -> LineStats {
    let mut st = LineStats::default();
    let mut start = 0usize;
    let ends = memchr::memchr_iter(b'\n', bytes)
        .chain((bytes.last().is_some_and(|&b| b != b'\n')).then_some(bytes.len()));
    for end in ends {
        let rel = st.lines;
        st.lines += 1;
        let line = strip_cr(&bytes[start..end]);
        start = end + 1;
        if line.len() > max_line {
            issue(rel, LineIssue::TooLong(line.len()));
        } else if line.iter().all(u8::is_ascii_whitespace) {
            st.blank += 1;
        } else {
            candidate(rel, line);
        }
    }
    st
}

/// Jumps from one needle hit to the next; the lines in between are only counted (a vectorised
/// newline count), never looked at one by one. That is what keeps the default mode close to
/// the speed of a plain `rg -c`.
fn visit_prefiltered(
    bytes: &[u8],
    finder: &LineNeedle,
    max_line: usize,
    mut candidate: impl FnMut(u64, &[u8]),
    mut issue: impl FnMut(u64, LineIssue),
) -> LineStats {
    let mut st = LineStats::default();
    let mut candidates = 0u64;
    let mut pos = 0usize;
    while pos < bytes.len() {
        let (hit, skipped) = finder.next(bytes, pos);
        // Newlines before the hit are the lines before its line: none lies between them.
        st.lines += skipped;
        let Some(hit) = hit else {
            if bytes.last() != Some(&b'\n') {
                st.lines += 1;
            }
            break;
        };
        let line_start = memchr::memrchr(b'\n', &bytes[pos..hit]).map_or(pos, |i| pos + i + 1);
        let line_end = memchr::memchr(b'\n', &bytes[hit..]).map_or(bytes.len(), |i| hit + i);
        let line = strip_cr(&bytes[line_start..line_end]);
        if line.len() > max_line {
            issue(st.lines, LineIssue::TooLong(line.len()));
        } else {
            candidate(st.lines, line);
        }
        candidates += 1;
        st.lines += 1;
        pos = line_end + 1;
    }
    st.prefiltered = st.lines - candidates;
    st
}

/// How chunks are spread over threads: see [`Driver::run`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Driver {
    /// Threads that run `work` (at least one).
    pub workers: usize,
    /// Read chunks on a thread of their own even with one worker. Reading a memory-mapped
    /// file is mostly the kernel filling in pages: on a thread of its own it overlaps the
    /// scan.
    pub read_ahead: bool,
}

impl Driver {
    /// Runs `work` on every chunk with `workers` threads and hands the results to `deliver`
    /// in input order.
    ///
    /// A reader thread pulls chunks, workers process them, and the calling thread puts
    /// results back in order. Channels are bounded, so memory stays at a few chunks in
    /// flight. A read error is delivered in its place in the order, after every chunk read
    /// before it; reading stops there. With one worker everything runs on the calling
    /// thread, unless `read_ahead` asks for the reader thread anyway.
    pub fn run<I, W, T, D>(self, chunks: I, work: W, mut deliver: D)
    where
        I: Iterator<Item = io::Result<Chunk>> + Send,
        W: Fn(&Chunk) -> T + Sync,
        T: Send,
        D: FnMut(io::Result<T>),
    {
        let threads = self.workers.max(1);
        if threads == 1 && !self.read_ahead {
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
        threaded(chunks, threads, work, deliver);
    }
}

fn threaded<I, W, T, D>(chunks: I, threads: usize, work: W, mut deliver: D)
where
    I: Iterator<Item = io::Result<Chunk>> + Send,
    W: Fn(&Chunk) -> T + Sync,
    T: Send,
    D: FnMut(io::Result<T>),
{
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

    /// Candidates (line, text), issues (line, issue), and the stats.
    type Visited = (Vec<(u64, String)>, Vec<(u64, LineIssue)>, LineStats);

    fn visit(bytes: &[u8], needle: Option<&str>) -> Visited {
        let f = needle.map(|n| LineNeedle::new(n.as_bytes()));
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
        let input = b"{\"r\":\"clusterroles\"}\n{\"r\":\"pods\"}\r\n\n truncated {\"r\":\n{\"clusterroles\":1,\"clusterroles\":2}\r\n{\"x\":\"a very long line that goes over the cap clusterroles\"}\n{}";
        let (c, i, st) = visit(input, Some("clusterroles"));
        assert_eq!(
            c,
            vec![
                (0, "{\"r\":\"clusterroles\"}".into()),
                (4, "{\"clusterroles\":1,\"clusterroles\":2}".into())
            ]
        );
        assert_eq!(i, vec![(5, LineIssue::TooLong(60))]);
        assert_eq!(
            st,
            LineStats {
                lines: 7,
                blank: 0,
                prefiltered: 4
            }
        );
        let (c, _, st) = visit(input, None);
        assert_eq!(c.len(), 5);
        assert_eq!(st.lines, 7);
    }

    #[test]
    fn ordered_results_with_threads() {
        let input: Vec<u8> = (0..20_000)
            .flat_map(|i| format!("{{\"n\":{i}}}\n").into_bytes())
            .collect();
        let drivers = [(1, false), (1, true), (2, false), (4, false), (2, true)].map(
            |(workers, read_ahead)| Driver {
                workers,
                read_ahead,
            },
        );
        for driver in drivers {
            let chunks = LineChunker::new(&input[..], Vec::new(), 1024, 1 << 20);
            let mut lines = Vec::new();
            driver.run(
                chunks,
                |c| {
                    let mut v = Vec::new();
                    visit_lines(
                        c.bytes(),
                        None,
                        1 << 20,
                        |_, l| v.push(l.to_vec()),
                        |_, _| {},
                    );
                    v
                },
                |r| lines.extend(r.unwrap()),
            );
            assert_eq!(lines.len(), 20_000, "{driver:?}");
            for (i, l) in lines.iter().enumerate() {
                assert_eq!(l, &format!("{{\"n\":{i}}}").into_bytes(), "{driver:?}");
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
        let mut delivered = Vec::new();
        for (workers, read_ahead) in [(1, false), (1, true), (2, false)] {
            let chunks = LineChunker::new(FailAfter(100_000), Vec::new(), 2048, 1 << 20);
            let mut got = Vec::new();
            Driver {
                workers,
                read_ahead,
            }
            .run(
                chunks,
                |c| c.bytes().len(),
                |r| got.push(r.map_err(|e| e.to_string())),
            );
            assert_eq!(got.last().unwrap().as_ref().unwrap_err(), "disk on fire");
            assert!(got.len() > 1);
            assert!(got[..got.len() - 1].iter().all(|r| r.is_ok()));
            delivered.push(got);
        }
        // Every chunk read before the error arrives, whatever the threads.
        assert!(delivered.iter().all(|g| g == &delivered[0]));
    }
}
