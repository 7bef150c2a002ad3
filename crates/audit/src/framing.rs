//! Cutting an input stream into chunks of whole records.
//!
//! Audit logs are JSON lines: the log backend writes one Event per line, and the webhook
//! backend's batches are one EventList per line when saved. Some files are instead one JSON
//! document spread over many lines (a pretty-printed EventList, `jq -s` output, a JSON array of
//! Events). [`sniff`] tells the two apart from the first bytes; [`LineChunker`] and
//! [`ValueChunker`] then hand out chunks of whole records that workers can parse in parallel,
//! with line accounting so that every record keeps its location.

use crossbeam_channel::{unbounded, Receiver, Sender};
use memchr::{memchr, memrchr};
use std::io::{self, Read};
use std::ops::Range;
use std::sync::Arc;

/// How records are delimited in an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One record per line.
    Lines,
    /// JSON values spread over lines: a document, concatenated documents, or an array.
    Values,
}

/// A piece of input holding whole records.
#[derive(Debug)]
pub struct Chunk {
    /// Position in the input's chunk sequence.
    pub seq: u64,
    buf: Vec<u8>,
    len: usize,
    /// For memory-mapped inputs: the file's mapping and where the chunk starts in it.
    map: Option<(Arc<memmap2::Mmap>, usize)>,
    /// What the bytes hold.
    pub kind: ChunkKind,
    /// Where the buffer goes back to when the chunk is dropped.
    pool: Option<Sender<Vec<u8>>>,
}

impl Drop for Chunk {
    fn drop(&mut self) {
        // Reusing buffers spares the kernel zeroing fresh pages for every chunk, which on a
        // fast scan costs more than the scan itself.
        if let Some(pool) = self.pool.take() {
            let _ = pool.send(std::mem::take(&mut self.buf));
        }
        if let Some((map, off)) = &self.map {
            release(map, *off, self.len);
        }
    }
}

/// The content of a [`Chunk`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkKind {
    /// Whole lines (the last one may lack its newline at the end of the input).
    Lines,
    /// JSON values: for each, the line it starts on (relative to the chunk) and its bytes.
    Values {
        /// `(relative line, byte range)` of each value.
        records: Vec<(u64, Range<usize>)>,
        /// Lines the chunk covers.
        lines: u64,
        /// Values over the size cap that were skipped: `(relative line, size)`.
        oversize: Vec<(u64, u64)>,
    },
    /// One line longer than the cap, skipped without being kept in memory.
    OversizeLine {
        /// Its size in bytes (at least this much, when the input ended inside it).
        bytes: u64,
        /// Lines it covers (1, or 0 when it ended the input without a newline... still 1).
        lines: u64,
    },
}

impl Chunk {
    /// A chunk of whole lines held in `buf` (the last one may lack its newline), for inputs
    /// that arrive already framed, such as the items of a webhook batch written one per line.
    pub fn from_lines(seq: u64, buf: Vec<u8>) -> Chunk {
        let len = buf.len();
        Chunk {
            seq,
            buf,
            len,
            map: None,
            kind: ChunkKind::Lines,
            pool: None,
        }
    }

    /// The chunk's bytes.
    pub fn bytes(&self) -> &[u8] {
        match &self.map {
            Some((m, off)) => &m[*off..*off + self.len],
            None => &self.buf[..self.len],
        }
    }
}

/// Decides the framing of an input from its first bytes.
///
/// An input is read as JSON values when it starts with `[`, or with a first line that is not a
/// whole JSON value and is followed by an indented line (pretty-printed JSON). Everything else
/// is JSON lines, where a bad line spoils only itself.
pub fn sniff(head: &[u8]) -> Framing {
    let start = head
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(head.len());
    let rest = strip_bom(&head[start..]);
    match rest.first() {
        Some(b'[') => Framing::Values,
        Some(b'{') => {
            let end = memchr(b'\n', rest).unwrap_or(rest.len());
            let first = trim(&rest[..end]);
            if first == b"{" {
                return Framing::Values;
            }
            if serde_json::from_slice::<serde::de::IgnoredAny>(first).is_ok() {
                return Framing::Lines;
            }
            let next = rest.get(end + 1..).unwrap_or(&[]);
            match next.first() {
                Some(b' ') | Some(b'\t') | Some(b'"') | Some(b'}') => Framing::Values,
                _ => Framing::Lines,
            }
        }
        _ => Framing::Lines,
    }
}

fn strip_bom(b: &[u8]) -> &[u8] {
    b.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(b)
}

/// `b` without leading and trailing ASCII whitespace.
pub fn trim(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let e = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(s, |e| e + 1);
    &b[s..e]
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads a stream into chunks of whole lines of about `chunk_size` bytes.
///
/// Memory stays at a few chunks whatever the input size: a line longer than `max_line` is
/// skipped up to its newline and reported as [`ChunkKind::OversizeLine`].
pub struct LineChunker<R> {
    reader: R,
    chunk_size: usize,
    max_line: usize,
    carry: Vec<u8>,
    eof: bool,
    seq: u64,
    pool_tx: Sender<Vec<u8>>,
    pool_rx: Receiver<Vec<u8>>,
}

impl<R: Read> LineChunker<R> {
    /// A chunker over `reader`; `head` holds bytes already read from it (by [`sniff`]).
    pub fn new(reader: R, head: Vec<u8>, chunk_size: usize, max_line: usize) -> Self {
        LineChunker {
            reader,
            chunk_size: chunk_size.max(1024),
            max_line: max_line.max(1),
            carry: head,
            eof: false,
            seq: 0,
            pool_tx: unbounded().0,
            pool_rx: unbounded().1,
        }
        .with_pool()
    }

    fn with_pool(mut self) -> Self {
        let (tx, rx) = unbounded();
        self.pool_tx = tx;
        self.pool_rx = rx;
        self
    }

    fn emit(&mut self, buf: Vec<u8>, len: usize, kind: ChunkKind) -> Chunk {
        let c = Chunk {
            seq: self.seq,
            buf,
            len,
            map: None,
            kind,
            pool: Some(self.pool_tx.clone()),
        };
        self.seq += 1;
        c
    }

    /// Skips the rest of an over-long line; returns the bytes skipped and whether a newline
    /// ended it.
    fn skip_line(&mut self) -> io::Result<(u64, bool)> {
        let mut skipped = 0u64;
        let mut scratch = vec![0u8; 64 * 1024];
        loop {
            let n = read_full(&mut self.reader, &mut scratch)?;
            if n == 0 {
                self.eof = true;
                return Ok((skipped, false));
            }
            if let Some(i) = memchr(b'\n', &scratch[..n]) {
                skipped += i as u64;
                self.carry.extend_from_slice(&scratch[i + 1..n]);
                return Ok((skipped, true));
            }
            skipped += n as u64;
        }
    }

    fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
        let mut buf = self.pool_rx.try_recv().unwrap_or_default();
        let mut len = self.carry.len();
        if buf.len() < len {
            buf.resize(len, 0);
        }
        buf[..len].copy_from_slice(&self.carry);
        self.carry.clear();
        // The first round searches everything: the carry may be the sniffed head, full of
        // lines. Later rounds search only what they read (the rest has no newline).
        let mut searched_from = 0;
        loop {
            if !self.eof && len < self.chunk_size.max(searched_from + 1) {
                let want = self.chunk_size.max(len + 64 * 1024);
                if buf.len() < want {
                    buf.resize(want, 0);
                }
                let n = read_full(&mut self.reader, &mut buf[len..want])?;
                if n < want - len {
                    self.eof = true;
                }
                len += n;
            }
            if let Some(i) =
                memrchr(b'\n', &buf[searched_from.min(len)..len]).map(|i| i + searched_from)
            {
                self.carry.extend_from_slice(&buf[i + 1..len]);
                return Ok(Some(self.emit(buf, i + 1, ChunkKind::Lines)));
            }
            searched_from = len;
            if len > self.max_line {
                // One line, already over the cap, and no end in sight yet.
                let (more, _) = self.skip_line()?;
                let bytes = len as u64 + more;
                return Ok(Some(self.emit(
                    Vec::new(),
                    0,
                    ChunkKind::OversizeLine { bytes, lines: 1 },
                )));
            }
            if self.eof {
                if len == 0 {
                    return Ok(None);
                }
                return Ok(Some(self.emit(buf, len, ChunkKind::Lines)));
            }
        }
    }
}

impl<R: Read> Iterator for LineChunker<R> {
    type Item = io::Result<Chunk>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.eof && self.carry.is_empty() {
            return None;
        }
        match self.next_chunk() {
            Ok(c) => c.map(Ok),
            Err(e) => {
                self.eof = true;
                self.carry.clear();
                Some(Err(e))
            }
        }
    }
}

/// Cuts a regular file into chunks of whole lines of one read-only memory mapping of the file.
///
/// Mapping avoids copying the file through a buffer, which on a warm page cache costs more
/// than finding the candidate lines. The file is mapped once: each chunk asks the kernel to
/// fill in its pages ahead of the scan (`MADV_POPULATE_READ`) and drops them when it is
/// dropped (`MADV_DONTNEED`), so resident memory stays at the chunks in flight, not the file
/// size. Unlike a mapping per chunk (`mmap` and `munmap` take the address space's lock for
/// writing), neither call makes the other threads wait, so reading, scanning and releasing
/// run side by side.
pub struct MappedLineChunker {
    file: std::fs::File,
    file_len: u64,
    map: Option<Arc<memmap2::Mmap>>,
    pos: u64,
    window: usize,
    max_line: usize,
    seq: u64,
    failed: bool,
}

impl MappedLineChunker {
    /// A chunker over `file`, whose size is `file_len`.
    pub fn new(file: std::fs::File, file_len: u64, window: usize, max_line: usize) -> Self {
        MappedLineChunker {
            file,
            file_len,
            map: None,
            pos: 0,
            window: window.max(64 * 1024),
            max_line: max_line.max(1),
            seq: 0,
            failed: false,
        }
    }

    /// Skips the first `offset` bytes (a byte-order mark).
    pub fn starting_at(mut self, offset: u64) -> Self {
        self.pos = offset.min(self.file_len);
        self
    }

    fn mapping(&mut self) -> io::Result<Arc<memmap2::Mmap>> {
        if let Some(m) = &self.map {
            return Ok(m.clone());
        }
        let len = usize::try_from(self.file_len)
            .map_err(|_| io::Error::other("the file is larger than the address space"))?;
        // SAFETY: the mapping is read-only and private. A file truncated while it is mapped
        // would fault; audit logs are appended to and rotated by renaming, and `--no-mmap`
        // exists for inputs that are truncated in place.
        let m = Arc::new(unsafe { memmap2::MmapOptions::new().len(len).map(&self.file)? });
        self.map = Some(m.clone());
        Ok(m)
    }

    fn chunk(
        &mut self,
        map: Option<(Arc<memmap2::Mmap>, usize)>,
        len: usize,
        kind: ChunkKind,
    ) -> Chunk {
        let c = Chunk {
            seq: self.seq,
            buf: Vec::new(),
            len,
            map,
            kind,
            pool: None,
        };
        self.seq += 1;
        c
    }

    fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
        if self.pos >= self.file_len {
            return Ok(None);
        }
        let m = self.mapping()?;
        let file_len = m.len();
        let start = self.pos as usize;
        let mut win = self.window;
        loop {
            let end = start.saturating_add(win).min(file_len);
            let data = &m[start..end];
            let cut = if end == file_len {
                Some(data.len())
            } else {
                memrchr(b'\n', data).map(|i| i + 1)
            };
            if let Some(len) = cut {
                self.pos = (start + len) as u64;
                populate(&m, start, len);
                return Ok(Some(self.chunk(Some((m, start)), len, ChunkKind::Lines)));
            }
            if win > self.max_line {
                // One line longer than the cap: find its end a window at a time, dropping
                // each window's pages once searched.
                release(&m, start, end - start);
                let mut at = end;
                let next_nl = loop {
                    if at >= file_len {
                        break None;
                    }
                    let to = at.saturating_add(self.window).min(file_len);
                    let found = memchr(b'\n', &m[at..to]).map(|i| at + i);
                    release(&m, at, to - at);
                    if found.is_some() {
                        break found;
                    }
                    at = to;
                };
                let stop = next_nl.unwrap_or(file_len);
                self.pos = next_nl.map_or(file_len, |n| n + 1) as u64;
                let bytes = (stop - start) as u64;
                return Ok(Some(self.chunk(
                    None,
                    0,
                    ChunkKind::OversizeLine { bytes, lines: 1 },
                )));
            }
            win = win.saturating_mul(2);
        }
    }
}

/// Faults in the pages of `len` bytes at `off` in one call, which costs far less than a
/// fault per page during the scan. Kernels before 5.14 do not have it: their pages are faulted
/// in as they are read.
#[cfg(unix)]
fn populate(map: &memmap2::Mmap, off: usize, len: usize) {
    let _ = map.advise_range(memmap2::Advice::PopulateRead, off, len);
}

/// Drops the pages of `len` bytes at `off` from the process (they stay in the page cache).
/// The page the range ends in may hold the start of the next chunk: it is left to that chunk,
/// unless the range ends the file. A page dropped while another chunk still reads it is
/// read again from the file, with the same content: at worst one extra fault.
#[cfg(unix)]
fn release(map: &memmap2::Mmap, off: usize, len: usize) {
    let page = page_size();
    let end = off + len;
    let end = if end == map.len() {
        end
    } else {
        end - end % page
    };
    let from = off - off % page;
    if end > from {
        // SAFETY: the mapping is a private, read-only mapping of a file: pages dropped are
        // read again from the file if touched later, with the same content.
        let _ = unsafe {
            map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, from, end - from)
        };
    }
}

#[cfg(unix)]
fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
    })
}

// Elsewhere the pages stay mapped until the whole mapping is dropped.
#[cfg(not(unix))]
fn populate(_: &memmap2::Mmap, _: usize, _: usize) {}
#[cfg(not(unix))]
fn release(_: &memmap2::Mmap, _: usize, _: usize) {}

impl Iterator for MappedLineChunker {
    type Item = io::Result<Chunk>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_chunk() {
            Ok(c) => c.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Splits a stream of JSON values (a document, concatenated documents or the elements of a
/// top-level array) into chunks of whole values, tracking strings and nesting so that braces
/// inside strings do not count.
pub struct ValueChunker<R> {
    reader: R,
    pending: Vec<u8>,
    eof: bool,
    seq: u64,
    chunk_size: usize,
    max_value: usize,
    // Scanner state, carried across reads.
    depth: usize,
    in_str: bool,
    esc: bool,
    outer_array: Option<bool>,
    line: u64,
    /// Lines already accounted to emitted chunks.
    emitted_line: u64,
    /// The last byte seen, to count a last line that has no newline.
    last: Option<u8>,
    cur: Option<Cur>,
}

struct Cur {
    start_line: u64,
    bytes: Vec<u8>,
    size: u64,
    scalar: bool,
}

impl<R: Read> ValueChunker<R> {
    /// A chunker over `reader`; `head` holds bytes already read from it.
    pub fn new(reader: R, head: Vec<u8>, chunk_size: usize, max_value: usize) -> Self {
        ValueChunker {
            reader,
            pending: head,
            eof: false,
            seq: 0,
            chunk_size: chunk_size.max(1024),
            max_value: max_value.max(1),
            depth: 0,
            in_str: false,
            esc: false,
            outer_array: None,
            line: 0,
            emitted_line: 0,
            last: None,
            cur: None,
        }
    }

    fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
        let mut out = Vec::with_capacity(self.chunk_size);
        let mut records = Vec::new();
        let mut oversize = Vec::new();
        // A value still open at the end of the previous chunk is reported in this one, so its
        // lines were held back for this chunk.
        let first_line = self.emitted_line;
        let mut scratch = vec![0u8; 64 * 1024];
        loop {
            let data = if !self.pending.is_empty() {
                std::mem::take(&mut self.pending)
            } else if self.eof {
                Vec::new()
            } else {
                let n = read_full(&mut self.reader, &mut scratch)?;
                if n == 0 {
                    self.eof = true;
                }
                scratch[..n].to_vec()
            };
            if data.is_empty() && self.eof {
                // A value cut off by the end of the input is still handed on, to be reported.
                if let Some(cur) = self.cur.take() {
                    self.finish(cur, &mut out, &mut records, &mut oversize, first_line);
                }
                if self.last.is_some_and(|b| b != b'\n') {
                    self.line += 1;
                    self.last = Some(b'\n');
                }
                break;
            }
            self.last = data.last().copied().or(self.last);
            for &b in &data {
                self.step(b, &mut out, &mut records, &mut oversize, first_line);
            }
            if out.len() >= self.chunk_size || !oversize.is_empty() && records.len() > 64 {
                break;
            }
        }
        let upto = self.cur.as_ref().map_or(self.line, |c| c.start_line);
        if records.is_empty() && oversize.is_empty() && self.eof && upto == first_line {
            return Ok(None);
        }
        self.emitted_line = upto;
        let len = out.len();
        let c = Chunk {
            seq: self.seq,
            buf: out,
            len,
            map: None,
            pool: None,
            kind: ChunkKind::Values {
                records,
                lines: upto - first_line,
                oversize,
            },
        };
        self.seq += 1;
        Ok(Some(c))
    }

    fn finish(
        &mut self,
        cur: Cur,
        out: &mut Vec<u8>,
        records: &mut Vec<(u64, Range<usize>)>,
        oversize: &mut Vec<(u64, u64)>,
        first_line: u64,
    ) {
        let rel = cur.start_line - first_line;
        if cur.size > self.max_value as u64 {
            oversize.push((rel, cur.size));
        } else {
            let s = out.len();
            out.extend_from_slice(&cur.bytes);
            records.push((rel, s..out.len()));
        }
    }

    fn step(
        &mut self,
        b: u8,
        out: &mut Vec<u8>,
        records: &mut Vec<(u64, Range<usize>)>,
        oversize: &mut Vec<(u64, u64)>,
        first_line: u64,
    ) {
        if b == b'\n' {
            self.line += 1;
        }
        if let Some(mut cur) = self.cur.take() {
            if cur.scalar {
                // A bare scalar at the top level ends at whitespace, a comma or a bracket.
                if b.is_ascii_whitespace() || matches!(b, b',' | b']' | b'{' | b'[') {
                    self.finish(cur, out, records, oversize, first_line);
                    if b == b'{' || b == b'[' {
                        self.start(b);
                    }
                } else {
                    push_capped(&mut cur, b, self.max_value);
                    self.cur = Some(cur);
                }
                return;
            }
            push_capped(&mut cur, b, self.max_value);
            if self.in_str {
                if self.esc {
                    self.esc = false;
                } else if b == b'\\' {
                    self.esc = true;
                } else if b == b'"' {
                    self.in_str = false;
                }
            } else {
                match b {
                    b'"' => self.in_str = true,
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' => {
                        self.depth -= 1;
                        if self.depth == 0 {
                            self.finish(cur, out, records, oversize, first_line);
                            return;
                        }
                    }
                    _ => {}
                }
            }
            self.cur = Some(cur);
            return;
        }
        // Between values.
        if b.is_ascii_whitespace() || b == b',' {
            return;
        }
        if self.outer_array.is_none() {
            if b == b'[' {
                self.outer_array = Some(true);
                return;
            }
            self.outer_array = Some(false);
        }
        if b == b']' && self.outer_array == Some(true) {
            return;
        }
        self.start(b);
    }

    fn start(&mut self, b: u8) {
        let scalar = b != b'{' && b != b'[';
        self.depth = usize::from(!scalar);
        self.in_str = false;
        self.esc = false;
        let mut bytes = Vec::with_capacity(4096);
        bytes.push(b);
        self.cur = Some(Cur {
            start_line: self.line,
            bytes,
            size: 1,
            scalar,
        });
    }
}

fn push_capped(cur: &mut Cur, b: u8, cap: usize) {
    cur.size += 1;
    if cur.bytes.len() < cap {
        cur.bytes.push(b);
    } else if !cur.bytes.is_empty() && cur.size > cap as u64 {
        // Over the cap: stop keeping it; only its size is reported.
        cur.bytes = Vec::new();
    }
}

impl<R: Read> Iterator for ValueChunker<R> {
    type Item = io::Result<Chunk>;
    fn next(&mut self) -> Option<Self::Item> {
        match self.next_chunk() {
            Ok(c) => c.map(Ok),
            Err(e) => {
                self.eof = true;
                self.pending.clear();
                self.cur = None;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(input: &[u8], chunk: usize, cap: usize) -> Vec<(Vec<u8>, ChunkKind)> {
        LineChunker::new(input, Vec::new(), chunk, cap)
            .map(|c| {
                let c = c.unwrap();
                (c.bytes().to_vec(), c.kind.clone())
            })
            .collect()
    }

    /// Chunks of one mapping release their pages when dropped, in any order and while their
    /// neighbours (which may share a page with them) are still being read: every chunk still
    /// reads the file's bytes, and the chunks put together are the file.
    #[test]
    fn mapped_chunks_dropped_in_any_order_keep_their_bytes() {
        use std::io::Write;
        // Lines of varied length, so that chunk ends fall inside pages.
        let mut input = Vec::new();
        for i in 0..40_000u32 {
            let n = (i * 7919) % 97;
            input.extend_from_slice(format!("{i}:{}\n", "x".repeat(n as usize)).as_bytes());
        }
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&input).unwrap();
        let chunks: Vec<Chunk> = MappedLineChunker::new(f, input.len() as u64, 64 * 1024, 1 << 20)
            .map(Result::unwrap)
            .collect();
        assert!(chunks.len() > 8, "{} chunks", chunks.len());
        let mut at = 0;
        let mut expect = Vec::new();
        for c in &chunks {
            let b = c.bytes();
            expect.push((at, b.len()));
            at += b.len();
        }
        assert_eq!(at, input.len());
        // Drop every other chunk first (each shares its edge pages with chunks still held),
        // then check the rest, then drop them from the end.
        let mut held: Vec<Option<Chunk>> = chunks.into_iter().map(Some).collect();
        for (i, c) in held.iter_mut().enumerate() {
            if i % 2 == 0 {
                *c = None;
            }
        }
        for (i, c) in held.iter().enumerate() {
            if let Some(c) = c {
                let (off, len) = expect[i];
                assert_eq!(c.bytes(), &input[off..off + len], "chunk {i}");
            }
        }
        while let Some(c) = held.pop() {
            if let Some(c) = c {
                let (off, len) = expect[held.len()];
                assert_eq!(c.bytes(), &input[off..off + len], "chunk {}", held.len());
            }
        }
    }

    #[test]
    fn sniffing() {
        assert_eq!(sniff(b"{\"a\":1}\n{\"b\":2}\n"), Framing::Lines);
        assert_eq!(sniff(b"\n\n  [\n {\"a\":1}\n]"), Framing::Values);
        assert_eq!(sniff(b"{\n  \"kind\": \"EventList\"\n}"), Framing::Values);
        assert_eq!(
            sniff(b"{\"kind\": \"Event\",\n  \"verb\": \"get\"}"),
            Framing::Values
        );
        assert_eq!(sniff(b"{\"kind\": broken\n{\"ok\":1}\n"), Framing::Lines);
        assert_eq!(sniff(b""), Framing::Lines);
        assert_eq!(sniff(b"garbage"), Framing::Lines);
    }

    #[test]
    fn line_chunks_end_on_newlines() {
        let input = b"aaaa\nbbbb\ncccc\ndd";
        let got = lines_of(input, 1024, 1 << 20);
        let all: Vec<u8> = got.iter().flat_map(|(b, _)| b.clone()).collect();
        assert_eq!(all, input.to_vec());
        for (b, k) in &got[..got.len() - 1] {
            assert_eq!(*k, ChunkKind::Lines);
            assert_eq!(b.last(), Some(&b'\n'));
        }
    }

    #[test]
    fn oversize_line_is_skipped_and_reported() {
        let mut input = b"ok\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 300_000));
        input.extend_from_slice(b"\nafter\n");
        let got = lines_of(&input, 1024, 100_000);
        let kinds: Vec<_> = got.iter().map(|(_, k)| k.clone()).collect();
        assert!(
            kinds.contains(&ChunkKind::OversizeLine {
                bytes: 300_000,
                lines: 1
            }),
            "{kinds:?}"
        );
        let text: Vec<u8> = got.iter().flat_map(|(b, _)| b.clone()).collect();
        assert_eq!(text, b"ok\nafter\n".to_vec());
    }

    /// Values (line, text), oversize values (line, size), and lines seen.
    type Split = (Vec<(u64, String)>, Vec<(u64, u64)>, u64);

    fn values_of(input: &[u8], cap: usize) -> Split {
        let mut vals = Vec::new();
        let mut over = Vec::new();
        let mut base = 0;
        for c in ValueChunker::new(input, Vec::new(), 16, cap) {
            let c = c.unwrap();
            if let ChunkKind::Values {
                records,
                lines,
                oversize,
            } = &c.kind
            {
                for (l, r) in records {
                    vals.push((
                        base + l,
                        String::from_utf8(c.bytes()[r.clone()].to_vec()).unwrap(),
                    ));
                }
                over.extend(oversize.iter().map(|(l, s)| (base + l, *s)));
                base += lines;
            }
        }
        (vals, over, base)
    }

    #[test]
    fn values_in_array_and_documents() {
        let (v, _, lines) = values_of(b"[\n {\"a\": \"}{\\\"\"},\n {\"b\": [1,2]}\n]\n", 1 << 20);
        assert_eq!(
            v,
            vec![
                (1, r#"{"a": "}{\""}"#.to_string()),
                (2, r#"{"b": [1,2]}"#.to_string())
            ]
        );
        assert_eq!(lines, 4);
        let (v, _, _) = values_of(b"{\n\"x\": 1\n}\n{\"y\":\n2}", 1 << 20);
        assert_eq!(
            v,
            vec![
                (0, "{\n\"x\": 1\n}".to_string()),
                (3, "{\"y\":\n2}".to_string())
            ]
        );
        let (v, _, _) = values_of(b"[1, {\"a\":1}]", 1 << 20);
        assert_eq!(v, vec![(0, "1".to_string()), (0, "{\"a\":1}".to_string())]);
        // Cut off by the end of input: handed on whole, to fail parsing with its location.
        let (v, _, _) = values_of(b"[{\"a\":\n", 1 << 20);
        assert_eq!(v, vec![(0, "{\"a\":\n".to_string())]);
    }

    #[test]
    fn oversize_values() {
        let (v, over, _) = values_of(b"[{\"a\":\"0123456789\"},\n{\"b\":1}]", 10);
        assert_eq!(v, vec![(1, "{\"b\":1}".to_string())]);
        assert_eq!(over, vec![(0, 18)]);
    }
}
