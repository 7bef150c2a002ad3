//! Following audit log files as the API server's log backend writes them.
//!
//! The log backend appends JSON lines and rotates lumberjack-style: the live file is renamed to
//! `<name>-<timestamp>.<ext>` (optionally gzipped later) and a new file is created under the
//! old name. A followed file is therefore tracked by device and inode, not by name: when the
//! name points at another inode, the old file (still open) is read to its end first, then the
//! new one from its start. A file that shrinks under the same inode was truncated (copytruncate
//! rotation) and is read again from its start. Polling keeps this portable and simple; the
//! interval bounds the delay.
//!
//! With a state file each batch carries the file's position, committed with its changes, so a
//! restart continues where processing stopped. When the file was rotated while kubeward was
//! down, the rotated backups (plain or `.gz`) are read first: from the one whose beginning
//! matches the saved fingerprint, at the saved offset, then every newer one, then the live file.

use crate::metrics::Metrics;
use crate::pipeline::{Origin, Queue, Work};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most bytes read from a file per batch.
const READ_PIECE: usize = 4 << 20;
/// How far back from the end a fresh start looks for the last complete line.
const TAIL_SCAN: u64 = 1 << 20;

/// Follower settings.
pub struct FollowOptions {
    /// Paths or globs.
    pub patterns: Vec<String>,
    /// Poll interval.
    pub interval: Duration,
    /// Longest line kept.
    pub max_line: usize,
    /// Save positions (stateful with a state file).
    pub track_positions: bool,
    /// Saved positions by canonical path (from the state file).
    pub positions: HashMap<String, store::Position>,
}

/// One followed file.
struct Followed {
    /// The name followed.
    path: PathBuf,
    /// Canonical path: the key of its saved position.
    key: String,
    /// The open file, and its (device, inode).
    file: File,
    id: (u64, u64),
    /// Bytes of the file consumed (complete lines sent plus `pending`).
    offset: u64,
    /// The start of an incomplete last line.
    pending: Vec<u8>,
    /// Inside an over-long line: bytes are dropped up to the next newline.
    skipping: bool,
    /// Complete lines sent so far.
    line: u64,
    /// Fingerprint of the first 4 KiB, once the file is that long.
    fingerprint: Option<String>,
}

/// The follower: one thread polling every followed file.
pub struct Follower {
    opts: FollowOptions,
    queue: Arc<Queue>,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    files: Vec<Followed>,
    /// (device, inode) of every file read or being read: a rotated file showing up under a
    /// name that matches a glob is not read twice.
    known: HashSet<(u64, u64)>,
}

fn id_of(m: &std::fs::Metadata) -> (u64, u64) {
    (m.dev(), m.ino())
}

fn is_glob(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

impl Follower {
    /// A follower for `opts.patterns`.
    pub fn new(
        opts: FollowOptions,
        queue: Arc<Queue>,
        metrics: Arc<Metrics>,
        stop: Arc<AtomicBool>,
    ) -> Follower {
        Follower {
            opts,
            queue,
            metrics,
            stop,
            files: Vec::new(),
            known: HashSet::new(),
        }
    }

    /// The files the patterns name now.
    fn matches(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for p in &self.opts.patterns {
            if is_glob(p) {
                match glob::glob(p) {
                    // Compressed backups are never followed (nothing appends to them);
                    // they are read only to catch up after a restart.
                    Ok(paths) => out.extend(paths.flatten().filter(|p| p.is_file() && !is_gzip(p))),
                    Err(e) => tracing::error!("--follow {p:?}: {e}"),
                }
            } else {
                let path = PathBuf::from(p);
                if path.is_file() {
                    out.push(path);
                }
            }
        }
        out
    }

    /// Runs until `stop` is set: the first scan starts files at their end (or saved position),
    /// files that appear later are read from their start.
    pub fn run(mut self) {
        for p in &self.opts.patterns {
            if !is_glob(p) && !Path::new(p).is_file() {
                tracing::warn!(
                    "--follow {p}: no such file yet; it is read from its start once it appears"
                );
            }
        }
        let mut first = true;
        let mut last_scan = Instant::now() - Duration::from_secs(3600);
        while !self.stop.load(Ordering::Relaxed) {
            // New names are looked for less often than known files are read.
            if first || last_scan.elapsed() >= self.opts.interval * 5 {
                last_scan = Instant::now();
                for path in self.matches() {
                    if self.files.iter().any(|f| f.path == path) {
                        continue;
                    }
                    if let Err(e) = self.add(&path, first) {
                        tracing::error!("--follow {}: {e}", path.display());
                    }
                }
                if first {
                    tracing::info!(
                        "--follow: {} files followed; new files matching {:?} are read from their start",
                        self.files.len(),
                        self.opts.patterns
                    );
                }
                first = false;
            }
            for i in 0..self.files.len() {
                if let Err(e) = self.poll(i) {
                    tracing::error!("--follow {}: {e}", self.files[i].path.display());
                }
            }
            std::thread::sleep(self.opts.interval);
        }
        // One last read: lines written before the stop are not left behind.
        for i in 0..self.files.len() {
            let _ = self.poll(i);
        }
    }

    /// Starts following `path`.
    fn add(&mut self, path: &Path, at_start: bool) -> io::Result<()> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        let id = id_of(&meta);
        if self.known.contains(&id) {
            // A file already read under another name: a rotated backup.
            return Ok(());
        }
        let key = std::fs::canonicalize(path)
            .unwrap_or_else(|_| path.to_path_buf())
            .display()
            .to_string();
        let mut f = Followed {
            path: path.to_path_buf(),
            key: key.clone(),
            file,
            id,
            offset: 0,
            pending: Vec::new(),
            skipping: false,
            line: 0,
            fingerprint: None,
        };
        self.known.insert(id);
        if at_start {
            match self.opts.positions.get(&key).cloned() {
                Some(pos) => {
                    if audit::input::fingerprint_matches(path, &pos.fingerprint).unwrap_or(false)
                        && pos.offset <= meta.len()
                    {
                        tracing::info!(
                            "--follow {}: continuing after line {} (saved in the state file)",
                            path.display(),
                            pos.line
                        );
                        f.offset = pos.offset;
                        f.line = pos.line;
                    } else {
                        // Rotated (or replaced) while kubeward was not running.
                        self.catch_up(path, &pos);
                    }
                }
                None => {
                    let (offset, skipping) = tail_start(&f.file, meta.len())?;
                    f.offset = offset;
                    f.skipping = skipping;
                    tracing::info!(
                        "--follow {}: following from its end (byte {offset})",
                        path.display()
                    );
                }
            }
        } else {
            tracing::info!(
                "--follow {}: new file, reading from its start",
                path.display()
            );
        }
        self.files.push(f);
        Ok(())
    }

    /// Reads the rotated backups of `path` that hold what came after the saved position.
    fn catch_up(&mut self, path: &Path, pos: &store::Position) {
        let backups = rotated_backups(path);
        let start = backups
            .iter()
            .position(|b| starts_with_fingerprint(b, &pos.fingerprint));
        match start {
            Some(i) => {
                tracing::info!(
                    "--follow {}: rotated while kubeward was stopped; catching up from {} (byte {}) and {} newer backups",
                    path.display(),
                    backups[i].display(),
                    pos.offset,
                    backups.len() - i - 1
                );
                for (j, b) in backups[i..].iter().enumerate() {
                    let skip = if j == 0 { pos.offset } else { 0 };
                    let first_line = if j == 0 { pos.line } else { 0 };
                    if let Err(e) = self.read_whole(b, skip, first_line) {
                        tracing::error!("--follow {}: {e}", b.display());
                    }
                }
            }
            None => tracing::warn!(
                "--follow {}: the saved position is for a file that is gone (no rotated backup starts as it did); reading the current file from its start",
                path.display()
            ),
        }
    }

    /// Sends every line of a backup (plain or gzip) after `skip` bytes of its content.
    fn read_whole(&mut self, path: &Path, skip: u64, first_line: u64) -> io::Result<()> {
        let file = File::open(path)?;
        if let Ok(m) = file.metadata() {
            self.known.insert(id_of(&m));
        }
        let mut r: Box<dyn Read> = if is_gzip(path) {
            Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(file)))
        } else {
            Box::new(file)
        };
        io::copy(&mut (&mut r).take(skip), &mut io::sink())?;
        let name = path.display().to_string();
        let mut pending = Vec::new();
        let mut line = first_line;
        let mut buf = vec![0u8; READ_PIECE];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            pending.extend_from_slice(&buf[..n]);
            if let Some(last) = memchr::memrchr(b'\n', &pending) {
                let rest = pending.split_off(last + 1);
                let lines = std::mem::replace(&mut pending, rest);
                line += self.send(lines, &name, line, None);
            }
        }
        if !pending.is_empty() {
            pending.push(b'\n');
            self.send(pending, &name, line, None);
        }
        Ok(())
    }

    /// Hands complete lines to the queue (waiting for room); returns how many.
    fn send(
        &self,
        lines: Vec<u8>,
        name: &str,
        first_line: u64,
        position: Option<(String, store::Position)>,
    ) -> u64 {
        let n = memchr::memchr_iter(b'\n', &lines).count() as u64;
        if n == 0 && position.is_none() {
            return 0;
        }
        // Room is waited for even when stopping: lines read are not left unprocessed (the
        // processor runs until the follower is done). Only a processor that is gone (a fatal
        // state error) ends the wait; then nothing is processed any more anyway.
        let stop = AtomicBool::new(false);
        if !self.queue.reserve_blocking(n, &stop) {
            return n;
        }
        self.metrics.events_received.fetch_add(n, Ordering::Relaxed);
        if !self.queue.send(Work {
            lines,
            events: n,
            origin: Origin::File {
                name: name.to_string(),
                first_line,
                position,
            },
            received: Instant::now(),
        }) {
            self.queue.release(n);
        }
        n
    }

    /// Reads what was appended to file `i`, handling rotation and truncation.
    fn poll(&mut self, i: usize) -> io::Result<()> {
        let current = std::fs::metadata(&self.files[i].path);
        match current {
            Ok(m) if id_of(&m) != self.files[i].id => {
                // Rotated: finish the old file, then switch to the new one.
                self.read_appended(i, true)?;
                self.metrics
                    .follow_rotations
                    .fetch_add(1, Ordering::Relaxed);
                let f = &mut self.files[i];
                tracing::info!(
                    "--follow {}: rotated after line {}; reading the new file from its start",
                    f.path.display(),
                    f.line
                );
                let file = File::open(&f.path)?;
                let id = id_of(&file.metadata()?);
                f.file = file;
                f.id = id;
                f.offset = 0;
                f.line = 0;
                f.pending.clear();
                f.skipping = false;
                f.fingerprint = None;
                self.known.insert(id);
                self.read_appended(i, false)
            }
            Ok(m) if m.len() < self.files[i].offset => {
                self.metrics
                    .follow_rotations
                    .fetch_add(1, Ordering::Relaxed);
                let f = &mut self.files[i];
                tracing::info!(
                    "--follow {}: truncated (now {} bytes, was read to {}); reading from its start",
                    f.path.display(),
                    m.len(),
                    f.offset
                );
                f.offset = 0;
                f.line = 0;
                f.pending.clear();
                f.skipping = false;
                f.fingerprint = None;
                self.read_appended(i, false)
            }
            // Same file, or the name is gone for now (between the rename and the new file):
            // read what the open file has.
            _ => self.read_appended(i, false),
        }
    }

    /// Reads file `i` from its offset to its end; `last`: it will not grow any more (rotated
    /// away), so an unfinished last line is sent as it is.
    fn read_appended(&mut self, i: usize, last: bool) -> io::Result<()> {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let f = &mut self.files[i];
            let n = f.file.read_at(&mut buf, f.offset)?;
            if n == 0 {
                break;
            }
            f.offset += n as u64;
            let mut chunk = &buf[..n];
            if f.skipping {
                match memchr::memchr(b'\n', chunk) {
                    Some(at) => {
                        f.skipping = false;
                        f.line += 1;
                        chunk = &chunk[at + 1..];
                    }
                    None => continue,
                }
            }
            f.pending.extend_from_slice(chunk);
            if f.pending.len() >= READ_PIECE {
                self.flush_pending(i, false);
            }
            let f = &mut self.files[i];
            if f.pending.len() > self.opts.max_line && memchr::memchr(b'\n', &f.pending).is_none() {
                self.metrics
                    .events_malformed
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "{}:{}: line is over {} bytes (--max-line-bytes); skipped",
                    f.path.display(),
                    f.line + 1,
                    self.opts.max_line
                );
                f.pending.clear();
                f.skipping = true;
            }
        }
        self.flush_pending(i, last);
        Ok(())
    }

    /// Sends the complete lines of file `i`'s pending bytes (all of them when `all`).
    fn flush_pending(&mut self, i: usize, all: bool) {
        let f = &mut self.files[i];
        let cut = if all && !f.pending.is_empty() {
            if f.pending.last() != Some(&b'\n') {
                f.pending.push(b'\n');
            }
            f.pending.len()
        } else {
            match memchr::memrchr(b'\n', &f.pending) {
                Some(at) => at + 1,
                None => return,
            }
        };
        let rest = f.pending.split_off(cut);
        let lines = std::mem::replace(&mut f.pending, rest);
        let name = f.path.display().to_string();
        let first_line = f.line;
        let n = memchr::memchr_iter(b'\n', &lines).count() as u64;
        // A rotated-away file's position is not the live file's: none is saved for it.
        let position = (self.opts.track_positions && !all).then(|| {
            let end = f.offset - f.pending.len() as u64;
            let fp = match &f.fingerprint {
                Some(fp) => fp.clone(),
                None => {
                    let fp = fingerprint_open(&f.file, end);
                    if end >= 4096 {
                        f.fingerprint = Some(fp.clone());
                    }
                    fp
                }
            };
            (
                f.key.clone(),
                store::Position {
                    offset: end,
                    line: first_line + n,
                    fingerprint: fp,
                },
            )
        });
        f.line += n;
        self.send(lines, &name, first_line, position);
    }
}

/// The fingerprint of an open file's first `upto` bytes (of at most 4 KiB), read through the
/// handle: the name may already point at a newer file.
fn fingerprint_open(file: &File, upto: u64) -> String {
    let mut buf = vec![0u8; upto.min(4096) as usize];
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    buf.truncate(n);
    audit::input::fingerprint_reader(&mut &buf[..], upto).unwrap_or_default()
}

/// Where to start reading a file followed from its end: after its last complete line (and
/// whether the bytes before the next newline must be skipped, when none was found).
fn tail_start(file: &File, len: u64) -> io::Result<(u64, bool)> {
    if len == 0 {
        return Ok((0, false));
    }
    let from = len.saturating_sub(TAIL_SCAN);
    let mut buf = vec![0u8; (len - from) as usize];
    let mut f = file;
    f.seek(SeekFrom::Start(from))?;
    f.read_exact(&mut buf)?;
    Ok(match memchr::memrchr(b'\n', &buf) {
        Some(at) => (from + at as u64 + 1, false),
        None if from == 0 => (0, false),
        None => (len, true),
    })
}

fn is_gzip(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "gz")
}

/// Lumberjack's backups of `path` (`audit.log` → `audit-<timestamp>.log[.gz]`), oldest first.
fn rotated_backups(path: &Path) -> Vec<PathBuf> {
    let Some(dir) = path.parent() else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    let prefix = format!("{stem}-");
    let mut out: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let n = e.file_name();
            let Some(n) = n.to_str() else { continue };
            let base = n.strip_suffix(".gz").unwrap_or(n);
            if n != name && n.starts_with(&prefix) && base.ends_with(ext) {
                let t = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                out.push((t, e.path()));
            }
        }
    }
    out.sort();
    out.into_iter().map(|(_, p)| p).collect()
}

/// Whether a backup's content (decompressed for `.gz`) starts with the bytes a saved
/// fingerprint was computed from.
fn starts_with_fingerprint(p: &Path, fp: &str) -> bool {
    if !is_gzip(p) {
        return audit::input::fingerprint_matches(p, fp).unwrap_or(false);
    }
    let Some(n) = fp.split_once(':').and_then(|(n, _)| n.parse::<u64>().ok()) else {
        return false;
    };
    let Ok(file) = File::open(p) else {
        return false;
    };
    let mut r = flate2::read::MultiGzDecoder::new(io::BufReader::new(file));
    audit::input::fingerprint_reader(&mut r, n).is_ok_and(|got| got == fp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn backups_are_found_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("audit.log");
        std::fs::write(&live, "").unwrap();
        let a = dir.path().join("audit-2026-01-01T00-00-00.000.log.gz");
        let b = dir.path().join("audit-2026-01-02T00-00-00.000.log");
        std::fs::write(dir.path().join("other-1.log"), "").unwrap();
        std::fs::write(&a, "").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&b, "").unwrap();
        assert_eq!(rotated_backups(&live), vec![a, b]);
    }

    #[test]
    fn gzip_backups_match_plain_fingerprints() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("a.log");
        std::fs::write(&plain, "{\"x\":1}\n{\"x\":2}\n").unwrap();
        let fp = audit::input::fingerprint(&plain, 8).unwrap();
        let gz = dir.path().join("a-1.log.gz");
        let mut e =
            flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        e.write_all(b"{\"x\":1}\n{\"x\":2}\n").unwrap();
        e.finish().unwrap();
        assert!(starts_with_fingerprint(&gz, &fp));
        assert!(starts_with_fingerprint(&plain, &fp));
        let other = audit::input::fingerprint(&plain, 3).unwrap();
        assert!(!starts_with_fingerprint(&gz, &format!("{other}0")));
    }

    #[test]
    fn tail_start_skips_a_partial_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        std::fs::write(&p, "one\ntwo\nthr").unwrap();
        let f = File::open(&p).unwrap();
        assert_eq!(tail_start(&f, 11).unwrap(), (8, false));
        assert_eq!(tail_start(&f, 0).unwrap(), (0, false));
    }
}
