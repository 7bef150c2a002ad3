//! Opening inputs: files, standard input, gzip (also multi-member, as rotated logs and cloud
//! exports write it), and directories of them; resuming a plain file where an earlier run
//! stopped ([`open_at`]), and recognising that it is still the same file ([`fingerprint`]).

use crate::envelope::{sniff_head, HeadShape};
use crate::framing::{sniff, Chunk, Framing, LineChunker, MappedLineChunker, ValueChunker};
use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// An input that could not be opened.
#[derive(Debug, Error)]
pub enum InputError {
    /// The path could not be read.
    #[error("{path}: {error}")]
    Open {
        /// The path as given.
        path: String,
        /// Why.
        error: io::Error,
    },
}

/// Where records come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSpec {
    /// Standard input.
    Stdin,
    /// A file.
    File(PathBuf),
}

impl InputSpec {
    /// The name used in messages: the path, or `-`.
    pub fn display(&self) -> String {
        match self {
            InputSpec::Stdin => "-".into(),
            InputSpec::File(p) => p.display().to_string(),
        }
    }
}

/// Expands command-line paths: `-` is stdin, a directory is every regular file in it (sorted by
/// name, not recursive), anything else a file. Every path is checked to be readable before any
/// is read, so that a typo fails the run before it prints anything.
pub fn expand(paths: &[String]) -> Result<Vec<InputSpec>, InputError> {
    if paths.is_empty() {
        return Ok(vec![InputSpec::Stdin]);
    }
    let mut out = Vec::new();
    for p in paths {
        if p == "-" {
            out.push(InputSpec::Stdin);
            continue;
        }
        let err = |error| InputError::Open {
            path: p.clone(),
            error,
        };
        let meta = std::fs::metadata(p).map_err(err)?;
        if meta.is_dir() {
            let mut files = Vec::new();
            for entry in std::fs::read_dir(p).map_err(err)? {
                let entry = entry.map_err(err)?;
                let path = entry.path();
                if std::fs::metadata(&path)
                    .map(|m| m.is_file())
                    .unwrap_or(false)
                {
                    files.push(path);
                }
            }
            files.sort();
            for f in files {
                check_readable(&f)?;
                out.push(InputSpec::File(f));
            }
        } else {
            check_readable(Path::new(p))?;
            out.push(InputSpec::File(PathBuf::from(p)));
        }
    }
    Ok(out)
}

fn check_readable(p: &Path) -> Result<(), InputError> {
    File::open(p).map(drop).map_err(|error| InputError::Open {
        path: p.display().to_string(),
        error,
    })
}

/// Sizes for the chunkers.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Target chunk size in bytes.
    pub chunk_size: usize,
    /// Longest record kept; longer ones are reported and skipped.
    pub max_record: usize,
    /// Memory-map large plain files instead of reading them through a buffer.
    pub mmap: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            chunk_size: 4 << 20,
            max_record: 64 << 20,
            mmap: true,
        }
    }
}

/// An opened input: its chunks, and what was learnt opening it.
pub struct Opened {
    /// Chunks of whole records.
    pub chunks: Box<dyn Iterator<Item = io::Result<Chunk>> + Send>,
    /// Whether the input was gzip.
    pub gzip: bool,
    /// How records are delimited.
    pub framing: Framing,
    /// What the first record looks like: native, or a managed cluster's wrapper (decides the
    /// path records take under `--input-format auto`).
    pub shape: HeadShape,
    /// Size on disk, when known (for progress). The whole file's, also when reading starts
    /// at [`start_offset`](Self::start_offset).
    pub size: Option<u64>,
    /// The byte offset in the input's content (decompressed, for gzip) where the first chunk
    /// starts: 0; 3 after a UTF-8 byte-order mark; or the offset given to [`open_at`] when
    /// it resumed there. A caller that asked for an offset learns from this whether it got it.
    pub start_offset: u64,
}

/// Plain files at least this large are memory-mapped (when allowed).
const MMAP_MIN: u64 = 1 << 20;

/// Opens an input, decompressing gzip (found by its magic bytes, not its name) and choosing the
/// framing from the first bytes of the content.
pub fn open(spec: &InputSpec, opts: ReadOptions) -> Result<Opened, InputError> {
    open_at(spec, opts, 0)
}

/// Opens an input as [`open`] does, but for a plain (not gzip) file starts reading at byte
/// `offset`, which the caller guarantees is the start of a line (a position an earlier run
/// saved). The framing is then chosen from the bytes at `offset`.
///
/// Standard input, gzip files (whose compressed offsets do not map to content offsets), an
/// `offset` of 0 and an `offset` past the end of the file (it was truncated: this is not the
/// content the offset was saved for) are read from the start, exactly as [`open`] reads them;
/// [`Opened::start_offset`] then differs from `offset`, and the caller must check it.
pub fn open_at(spec: &InputSpec, opts: ReadOptions, offset: u64) -> Result<Opened, InputError> {
    let name = spec.display();
    let err = |error| InputError::Open {
        path: name.clone(),
        error,
    };
    // The magic bytes are peeked through the buffer rather than read, so that a path that is
    // a pipe (`<(zcat ...)`) works: it cannot seek back.
    let (raw, size, gzip, resume): (Box<dyn Read + Send>, Option<u64>, bool, u64) = match spec {
        InputSpec::Stdin => {
            let mut r = BufReader::with_capacity(256 * 1024, io::stdin());
            let gzip = is_gzip(&peek(&mut r, 2).map_err(err)?);
            (Box::new(r), None, gzip, 0)
        }
        InputSpec::File(p) => {
            let f = File::open(p).map_err(err)?;
            let size = f.metadata().ok().map(|m| m.len());
            let mut r = BufReader::with_capacity(256 * 1024, f);
            let gzip = is_gzip(&peek(&mut r, 2).map_err(err)?);
            let resume = match size {
                Some(len) if !gzip && offset <= len => offset,
                _ => 0,
            };
            if resume > 0 {
                r.seek(SeekFrom::Start(resume)).map_err(err)?;
            }
            (Box::new(r), size, gzip, resume)
        }
    };
    let mut reader: Box<dyn Read + Send> = if gzip {
        Box::new(MultiGzDecoder::new(raw))
    } else {
        raw
    };
    // The head decides the framing and is handed to the chunker, not read twice.
    let mut head = vec![0u8; 64 * 1024];
    let n = read_some(&mut reader, &mut head).map_err(err)?;
    head.truncate(n);
    // A UTF-8 byte-order mark (some Windows tools write one) is not part of the first record.
    // It can only be at the very start of the content.
    let bom = resume == 0 && head.starts_with(b"\xEF\xBB\xBF");
    if bom {
        head.drain(..3);
    }
    let start_offset = if bom { 3 } else { resume };
    let framing = sniff(&head);
    let shape = sniff_head(&head);
    if let (InputSpec::File(p), false, Framing::Lines, true) = (spec, gzip, framing, opts.mmap) {
        if size.is_some_and(|s| s >= MMAP_MIN) {
            // Map from the start offset again: the head read above was only for sniffing.
            let f = File::open(p).map_err(err)?;
            let len = f.metadata().map_err(err)?.len();
            return Ok(Opened {
                chunks: Box::new(
                    MappedLineChunker::new(f, len, opts.chunk_size, opts.max_record)
                        .starting_at(start_offset),
                ),
                gzip,
                framing,
                shape,
                size,
                start_offset,
            });
        }
    }
    let chunks: Box<dyn Iterator<Item = io::Result<Chunk>> + Send> = match framing {
        Framing::Lines => Box::new(LineChunker::new(
            reader,
            head,
            opts.chunk_size,
            opts.max_record,
        )),
        Framing::Values => Box::new(ValueChunker::new(
            reader,
            head,
            opts.chunk_size,
            opts.max_record,
        )),
    };
    Ok(Opened {
        chunks,
        gzip,
        framing,
        shape,
        size,
        start_offset,
    })
}

fn is_gzip(magic: &[u8]) -> bool {
    magic == [0x1f, 0x8b]
}

/// The most bytes a [`fingerprint`] covers.
const FINGERPRINT_MAX: u64 = 4096;

/// Identifies a file by its first `n = min(upto, 4096, file size)` bytes, as
/// `"{n}:{FNV-1a 64 of those bytes, 16 hex digits}"`.
///
/// A run that read a file up to offset `o` saves `fingerprint(path, o)` with `o`; a later run
/// resumes at `o` only when [`fingerprint_matches`]: the file was appended to, not rotated or
/// replaced. Capping at `upto` makes the fingerprint cover only bytes that were read, which
/// appending never changes; capping at 4 KiB keeps it cheap, and is enough because the first
/// lines of an audit log carry unique audit IDs and timestamps. FNV-1a is no defence against
/// someone forging a file, only against accidents, which is all a resume needs.
pub fn fingerprint(path: &Path, upto: u64) -> io::Result<String> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    let mut buf = vec![0u8; upto.min(FINGERPRINT_MAX).min(len) as usize];
    // A file truncated since `metadata` gives fewer bytes; fingerprint what is there.
    let n = read_some(&mut f, &mut buf)?;
    buf.truncate(n);
    Ok(format!("{n}:{:016x}", fnv1a64(&buf)))
}

/// [`fingerprint`] of what `r` yields (at most `upto` bytes, and 4 KiB), for content that is
/// not a plain file: a gzip backup's decompressed stream is fingerprinted this way to find
/// which rotated file a saved position belongs to.
pub fn fingerprint_reader(r: &mut dyn Read, upto: u64) -> io::Result<String> {
    let mut buf = vec![0u8; upto.min(FINGERPRINT_MAX) as usize];
    let n = read_some(r, &mut buf)?;
    buf.truncate(n);
    Ok(format!("{n}:{:016x}", fnv1a64(&buf)))
}

/// Whether the file at `path` still starts with the bytes `stored` (a [`fingerprint`])
/// was computed from. `false` when the file is now shorter than those bytes, when they
/// differ, or when `stored` is not a fingerprint; an error only when the file cannot be read.
pub fn fingerprint_matches(path: &Path, stored: &str) -> io::Result<bool> {
    let Some((n, hash)) = parse_fingerprint(stored) else {
        return Ok(false);
    };
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; n];
    if read_some(&mut f, &mut buf)? < n {
        return Ok(false);
    }
    Ok(fnv1a64(&buf) == hash)
}

fn parse_fingerprint(s: &str) -> Option<(usize, u64)> {
    let (n, hex) = s.split_once(':')?;
    // Exactly the shapes `fingerprint` writes: a decimal count without sign, 16 hex digits.
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let n: u64 = n.parse().ok()?;
    if n > FINGERPRINT_MAX {
        return None;
    }
    Some((n as usize, u64::from_str_radix(hex, 16).ok()?))
}

/// 64-bit FNV-1a.
fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET_BASIS, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// Reads up to `n` bytes without consuming them.
fn peek<R: Read>(r: &mut BufReader<R>, n: usize) -> io::Result<Vec<u8>> {
    use std::io::BufRead;
    let buf = r.fill_buf()?;
    Ok(buf[..buf.len().min(n)].to_vec())
}

/// Fills `buf` as far as the input allows (short only at the end of input).
fn read_some(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn collect(spec: &InputSpec) -> (Vec<u8>, bool) {
        let o = open(spec, ReadOptions::default()).unwrap();
        let gz = o.gzip;
        let mut all = Vec::new();
        for c in o.chunks {
            all.extend_from_slice(c.unwrap().bytes());
        }
        (all, gz)
    }

    #[test]
    fn multi_member_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.log.1");
        let mut f = File::create(&p).unwrap();
        for part in [&b"{\"a\":1}\n"[..], &b"{\"b\":2}\n"[..]] {
            let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(part).unwrap();
            f.write_all(&e.finish().unwrap()).unwrap();
        }
        drop(f);
        let (all, gz) = collect(&InputSpec::File(p));
        assert!(gz);
        assert_eq!(all, b"{\"a\":1}\n{\"b\":2}\n");
    }

    #[test]
    fn directories_expand_sorted_and_missing_paths_fail() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["b.log", "a.log"] {
            std::fs::write(dir.path().join(n), b"{}\n").unwrap();
        }
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let got = expand(&[dir.path().display().to_string()]).unwrap();
        let names: Vec<_> = got
            .iter()
            .map(|s| match s {
                InputSpec::File(p) => p.file_name().unwrap().to_string_lossy().into_owned(),
                InputSpec::Stdin => "-".into(),
            })
            .collect();
        assert_eq!(names, vec!["a.log", "b.log"]);
        let e = expand(&["/no/such/file".into()]).unwrap_err();
        assert!(e.to_string().starts_with("/no/such/file: "), "{e}");
        assert_eq!(expand(&[]).unwrap(), vec![InputSpec::Stdin]);
    }

    fn read_all(o: Opened) -> Vec<u8> {
        let mut all = Vec::new();
        for c in o.chunks {
            all.extend_from_slice(c.unwrap().bytes());
        }
        all
    }

    fn opts(mmap: bool) -> ReadOptions {
        ReadOptions {
            // Small chunks, so that a resumed read spans several of them.
            chunk_size: 64 * 1024,
            max_record: 1 << 20,
            mmap,
        }
    }

    /// `n` JSON lines of varying length, and the offset where each starts.
    fn lines(n: usize) -> (Vec<u8>, Vec<u64>) {
        let mut all = Vec::new();
        let mut starts = Vec::new();
        for i in 0..n {
            starts.push(all.len() as u64);
            all.extend_from_slice(
                format!("{{\"i\":{i},\"pad\":\"{}\"}}\n", "x".repeat(i % 97)).as_bytes(),
            );
        }
        (all, starts)
    }

    #[test]
    fn open_at_reads_exactly_the_rest_of_a_plain_file() {
        let dir = tempfile::tempdir().unwrap();
        // Under and over the memory-mapping threshold, so both readers are resumed.
        for n in [50, 30_000] {
            let (content, starts) = lines(n);
            assert_eq!(content.len() as u64 >= MMAP_MIN, n > 50);
            let p = dir.path().join(format!("audit-{n}.log"));
            std::fs::write(&p, &content).unwrap();
            let spec = InputSpec::File(p);
            for mmap in [true, false] {
                for &at in [starts[1], starts[n / 2], starts[n - 1], 0].iter() {
                    let o = open_at(&spec, opts(mmap), at).unwrap();
                    assert_eq!(o.start_offset, at);
                    assert!(!o.gzip);
                    assert_eq!(o.framing, Framing::Lines);
                    assert_eq!(o.size, Some(content.len() as u64));
                    let got = read_all(o);
                    assert!(
                        got == content[at as usize..],
                        "n={n} mmap={mmap} at={at}: {} bytes instead of {}",
                        got.len(),
                        content.len() - at as usize
                    );
                }
                // At the end: nothing left to read, and that is not an error.
                let end = content.len() as u64;
                let o = open_at(&spec, opts(mmap), end).unwrap();
                assert_eq!(o.start_offset, end);
                assert!(read_all(o).is_empty());
            }
        }
    }

    #[test]
    fn open_at_past_the_end_reads_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("truncated.log");
        std::fs::write(&p, b"{\"a\":1}\n").unwrap();
        let o = open_at(&InputSpec::File(p), opts(true), 1000).unwrap();
        assert_eq!(o.start_offset, 0);
        assert_eq!(read_all(o), b"{\"a\":1}\n");
    }

    #[test]
    fn open_at_with_a_byte_order_mark() {
        let dir = tempfile::tempdir().unwrap();
        let (body, starts) = lines(40);
        let mut content = b"\xEF\xBB\xBF".to_vec();
        content.extend_from_slice(&body);
        let p = dir.path().join("bom.log");
        std::fs::write(&p, &content).unwrap();
        let spec = InputSpec::File(p);
        for mmap in [true, false] {
            for o in [
                open(&spec, opts(mmap)).unwrap(),
                open_at(&spec, opts(mmap), 0).unwrap(),
            ] {
                assert_eq!(o.start_offset, 3);
                assert_eq!(read_all(o), body);
            }
            // Resuming after the mark: offsets count it, as the saved offsets do.
            let at = 3 + starts[7];
            let o = open_at(&spec, opts(mmap), at).unwrap();
            assert_eq!(o.start_offset, at);
            assert_eq!(read_all(o), content[at as usize..]);
        }
    }

    #[test]
    fn open_at_sniffs_the_framing_at_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("mixed.json");
        let content = b"{\"a\":1}\n{\n  \"b\": 2\n}\n";
        std::fs::write(&p, content).unwrap();
        let spec = InputSpec::File(p);
        assert_eq!(open(&spec, opts(true)).unwrap().framing, Framing::Lines);
        let o = open_at(&spec, opts(true), 8).unwrap();
        assert_eq!(o.framing, Framing::Values);
        assert_eq!(o.start_offset, 8);
    }

    #[test]
    fn open_at_reads_gzip_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.log.gz");
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b"{\"a\":1}\n{\"b\":2}\n").unwrap();
        std::fs::write(&p, e.finish().unwrap()).unwrap();
        let o = open_at(&InputSpec::File(p), opts(true), 8).unwrap();
        assert!(o.gzip);
        assert_eq!(o.start_offset, 0);
        assert_eq!(read_all(o), b"{\"a\":1}\n{\"b\":2}\n");
    }

    #[test]
    fn fnv1a64_known_values() {
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn fingerprint_follows_appends_not_replacements() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.log");
        let (content, _) = lines(200);
        assert!(content.len() > 8192);
        std::fs::write(&p, &content[..1000]).unwrap();

        let fp = fingerprint(&p, 1000).unwrap();
        assert_eq!(fp, format!("1000:{:016x}", fnv1a64(&content[..1000])));
        assert!(fingerprint_matches(&p, &fp).unwrap());
        // `upto` beyond the file and beyond 4 KiB.
        assert!(fingerprint(&p, u64::MAX).unwrap().starts_with("1000:"));
        assert!(fingerprint(&p, 10).unwrap().starts_with("10:"));

        // Appended: the same file.
        std::fs::write(&p, &content).unwrap();
        assert!(fingerprint_matches(&p, &fp).unwrap());
        let big = fingerprint(&p, u64::MAX).unwrap();
        assert_eq!(big, format!("4096:{:016x}", fnv1a64(&content[..4096])));
        assert!(fingerprint_matches(&p, &big).unwrap());

        // Replaced by other content, or truncated below what was fingerprinted: not the same.
        let mut other = content.clone();
        other[500] = b'y';
        std::fs::write(&p, &other).unwrap();
        assert!(!fingerprint_matches(&p, &fp).unwrap());
        std::fs::write(&p, &content[..999]).unwrap();
        assert!(!fingerprint_matches(&p, &fp).unwrap());

        // Not fingerprints.
        std::fs::write(&p, &content).unwrap();
        let hash = &fp[5..];
        for bad in [
            String::new(),
            "1000".into(),
            hash.to_string(),
            format!("-1:{hash}"),
            format!("+1000:{hash}"),
            format!("4097:{hash}"),
            format!("1000:{}", &hash[1..]),
            format!("1000:{hash}0"),
            format!("1000:{}g", &hash[1..]),
            "1000:é234567890abcde".into(),
        ] {
            assert!(!fingerprint_matches(&p, &bad).unwrap(), "{bad:?}");
        }

        // An unreadable file is an error, not a mismatch.
        assert!(fingerprint_matches(&dir.path().join("gone"), &fp).is_err());
        assert!(fingerprint(&dir.path().join("gone"), 10).is_err());
    }

    #[test]
    fn empty_file_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("empty.log");
        std::fs::write(&p, b"").unwrap();
        let fp = fingerprint(&p, 4096).unwrap();
        assert_eq!(fp, "0:cbf29ce484222325");
        assert!(fingerprint_matches(&p, &fp).unwrap());
    }
}
