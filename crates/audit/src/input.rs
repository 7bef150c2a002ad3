//! Opening inputs: files, standard input, gzip (also multi-member, as rotated logs and cloud
//! exports write it), and directories of them.

use crate::framing::{sniff, Chunk, Framing, LineChunker, MappedLineChunker, ValueChunker};
use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{self, BufReader, Read};
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
    /// Size on disk, when known (for progress).
    pub size: Option<u64>,
}

/// Plain files at least this large are memory-mapped (when allowed).
const MMAP_MIN: u64 = 1 << 20;

/// Opens an input, decompressing gzip (found by its magic bytes, not its name) and choosing the
/// framing from the first bytes of the content.
pub fn open(spec: &InputSpec, opts: ReadOptions) -> Result<Opened, InputError> {
    let name = spec.display();
    let err = |error| InputError::Open {
        path: name.clone(),
        error,
    };
    let (raw, size): (Box<dyn Read + Send>, Option<u64>) = match spec {
        InputSpec::Stdin => (Box::new(io::stdin()), None),
        InputSpec::File(p) => {
            let f = File::open(p).map_err(err)?;
            let size = f.metadata().ok().map(|m| m.len());
            (Box::new(f), size)
        }
    };
    let mut raw = BufReader::with_capacity(256 * 1024, raw);
    let magic = peek(&mut raw, 2).map_err(err)?;
    let gzip = magic == [0x1f, 0x8b];
    let mut reader: Box<dyn Read + Send> = if gzip {
        Box::new(MultiGzDecoder::new(raw))
    } else {
        Box::new(raw)
    };
    // The head decides the framing and is handed to the chunker, not read twice.
    let mut head = vec![0u8; 64 * 1024];
    let n = read_some(&mut reader, &mut head).map_err(err)?;
    head.truncate(n);
    // A UTF-8 byte-order mark (some Windows tools write one) is not part of the first record.
    let bom = head.starts_with(b"\xEF\xBB\xBF");
    if bom {
        head.drain(..3);
    }
    let framing = sniff(&head);
    if let (InputSpec::File(p), false, Framing::Lines, true) = (spec, gzip, framing, opts.mmap) {
        if size.is_some_and(|s| s >= MMAP_MIN) {
            // Map from the start again: the head read above was only for sniffing.
            let f = File::open(p).map_err(err)?;
            let len = f.metadata().map_err(err)?.len();
            return Ok(Opened {
                chunks: Box::new(
                    MappedLineChunker::new(f, len, opts.chunk_size, opts.max_record)
                        .starting_at(if bom { 3 } else { 0 }),
                ),
                gzip,
                framing,
                size,
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
        size,
    })
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
}
