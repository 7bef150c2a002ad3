//! The spool: an SQLite file that holds webhook batches from acknowledgement until they are
//! processed (`inbox`), and alerts until every HTTP sink has taken them (`outbox`).
//!
//! A batch is committed to the inbox before the API server gets its 200, and deleted only after
//! its changes and alerts are committed to the state file: a crash in between processes it again
//! on restart, and the state file's de-duplication by auditID makes that alert once. The spool
//! is a file of its own, not a table in the state file, so that receiving never waits on the
//! tracker's long write transactions.

use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What can go wrong with the spool file.
#[derive(Debug, thiserror::Error)]
#[error("spool {path}: {source}")]
pub struct SpoolError {
    path: String,
    #[source]
    source: rusqlite::Error,
}

/// One connection to the spool file (each user has its own: SQLite serialises the writers).
pub struct Spool {
    conn: Connection,
    path: PathBuf,
}

/// A batch waiting in the inbox.
pub struct InboxItem {
    /// Row id.
    pub id: i64,
    /// Events in it.
    pub events: u64,
    /// The events, one JSON object per line.
    pub lines: Vec<u8>,
}

impl Spool {
    /// Opens (or creates) the spool file.
    pub fn open(path: &Path) -> Result<Spool, SpoolError> {
        Spool::open_with(path, "FULL")
    }

    /// Opens the spool for forgetting processed batches: `synchronous=NORMAL`, since a delete
    /// lost in a power cut only means a batch processed again, which the state file's
    /// de-duplication makes harmless, and a commit without fsync keeps detection fast.
    pub fn open_for_deletes(path: &Path) -> Result<Spool, SpoolError> {
        Spool::open_with(path, "NORMAL")
    }

    fn open_with(path: &Path, synchronous: &str) -> Result<Spool, SpoolError> {
        let err = |source| SpoolError {
            path: path.display().to_string(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
        // WAL: readers never block the writer. FULL (for inserts): a batch acknowledged
        // survives a power cut, not only a crash of this process.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", synchronous)
            .map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS inbox (id INTEGER PRIMARY KEY AUTOINCREMENT, events INTEGER NOT NULL, body BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, sink TEXT NOT NULL, body TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS outbox_sink ON outbox (sink, id);
             CREATE TABLE IF NOT EXISTS delivered (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL);",
        )
        .map_err(err)?;
        Ok(Spool {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, source: rusqlite::Error) -> SpoolError {
        SpoolError {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Stores a batch; returns its id.
    pub fn push_inbox(&self, events: u64, lines: &[u8]) -> Result<i64, SpoolError> {
        self.conn
            .execute(
                "INSERT INTO inbox (events, body) VALUES (?1, ?2)",
                params![events as i64, lines],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Stores several batches in one transaction (one fsync for all); returns their ids.
    pub fn push_inbox_many(&self, batches: &[(u64, &[u8])]) -> Result<Vec<i64>, SpoolError> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        let mut ids = Vec::with_capacity(batches.len());
        {
            let mut st = tx
                .prepare_cached("INSERT INTO inbox (events, body) VALUES (?1, ?2)")
                .map_err(|e| self.err(e))?;
            for (events, lines) in batches {
                st.execute(params![*events as i64, lines])
                    .map_err(|e| self.err(e))?;
                ids.push(tx.last_insert_rowid());
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(ids)
    }

    /// Every batch not yet processed, oldest first.
    pub fn inbox(&self) -> Result<Vec<InboxItem>, SpoolError> {
        let mut st = self
            .conn
            .prepare("SELECT id, events, body FROM inbox ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok(InboxItem {
                    id: r.get(0)?,
                    events: r.get::<_, i64>(1)? as u64,
                    lines: r.get(2)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Forgets processed batches.
    pub fn remove_inbox(&self, ids: &[i64]) -> Result<(), SpoolError> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        for id in ids {
            tx.execute("DELETE FROM inbox WHERE id = ?1", [id])
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// The sequence number (in the state file) of the last stored alert handed to the sinks;
    /// `None` before the first.
    pub fn delivered_seq(&self) -> Result<Option<i64>, SpoolError> {
        self.conn
            .query_row("SELECT seq FROM delivered WHERE id = 1", [], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Records how far stored alerts were handed to the sinks.
    pub fn set_delivered_seq(&self, seq: i64) -> Result<(), SpoolError> {
        self.conn
            .execute(
                "INSERT INTO delivered (id, seq) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET seq = ?1",
                [seq],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Queues alert bodies for sinks: `(sink, body)`.
    pub fn push_outbox(&self, items: &[(String, String)]) -> Result<(), SpoolError> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        for (sink, body) in items {
            tx.execute(
                "INSERT INTO outbox (sink, body) VALUES (?1, ?2)",
                params![sink, body],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// The oldest pending body for `sink`.
    pub fn next_outbox(&self, sink: &str) -> Result<Option<(i64, String)>, SpoolError> {
        self.conn
            .query_row(
                "SELECT id, body FROM outbox WHERE sink = ?1 ORDER BY id LIMIT 1",
                [sink],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Pending bodies for `sink`.
    pub fn outbox_len(&self, sink: &str) -> Result<u64, SpoolError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM outbox WHERE sink = ?1", [sink], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// Forgets a delivered body.
    pub fn remove_outbox(&self, id: i64) -> Result<(), SpoolError> {
        self.conn
            .execute("DELETE FROM outbox WHERE id = ?1", [id])
            .map(|_| ())
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbox_and_outbox_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.spool");
        let s = Spool::open(&p).unwrap();
        let a = s.push_inbox(2, b"{}\n{}\n").unwrap();
        let b = s.push_inbox(1, b"{}\n").unwrap();
        s.push_outbox(&[("http 0".into(), "x".into()), ("http 0".into(), "y".into())])
            .unwrap();
        drop(s);
        let s = Spool::open(&p).unwrap();
        let items = s.inbox().unwrap();
        assert_eq!(
            items.iter().map(|i| (i.id, i.events)).collect::<Vec<_>>(),
            [(a, 2), (b, 1)]
        );
        s.remove_inbox(&[a]).unwrap();
        let more = s.push_inbox_many(&[(1, b"{}\n"), (1, b"{}\n")]).unwrap();
        assert_eq!(more.len(), 2);
        assert!(more[0] > b && more[1] > more[0]);
        s.remove_inbox(&more).unwrap();
        assert_eq!(s.inbox().unwrap().len(), 1);
        let (id, body) = s.next_outbox("http 0").unwrap().unwrap();
        assert_eq!(body, "x");
        s.remove_outbox(id).unwrap();
        assert_eq!(s.outbox_len("http 0").unwrap(), 1);
        assert_eq!(s.next_outbox("other").unwrap(), None);
        assert_eq!(s.delivered_seq().unwrap(), None);
        s.set_delivered_seq(7).unwrap();
        s.set_delivered_seq(9).unwrap();
        assert_eq!(s.delivered_seq().unwrap(), Some(9));
    }
}

/// A batch handed to the [`InboxWriter`], and where its id goes.
type InboxJob = (
    u64,
    Vec<u8>,
    tokio::sync::oneshot::Sender<(Result<i64, String>, Vec<u8>)>,
);

/// Commits webhook batches to the inbox from a thread of its own, several requests per
/// transaction: with `synchronous=FULL` every commit is an fsync, and sharing it between the
/// requests that arrived meanwhile is what lets a durable receiver keep up with a busy API server.
#[derive(Clone)]
pub struct InboxWriter {
    tx: crossbeam_channel::Sender<InboxJob>,
}

/// Most bytes committed in one transaction.
const GROUP_BYTES: usize = 32 << 20;

impl InboxWriter {
    /// Starts the writer thread on its own connection to the spool file.
    pub fn spawn(spool: Spool) -> std::io::Result<InboxWriter> {
        let (tx, rx) = crossbeam_channel::unbounded::<InboxJob>();
        std::thread::Builder::new()
            .name("kubeward-spool".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut group = vec![first];
                    let mut bytes = group[0].1.len();
                    while bytes < GROUP_BYTES {
                        match rx.try_recv() {
                            Ok(j) => {
                                bytes += j.1.len();
                                group.push(j);
                            }
                            Err(_) => break,
                        }
                    }
                    let refs: Vec<(u64, &[u8])> =
                        group.iter().map(|(n, l, _)| (*n, l.as_slice())).collect();
                    let r = spool.push_inbox_many(&refs).map_err(|e| e.to_string());
                    drop(refs);
                    for (i, (_, lines, reply)) in group.into_iter().enumerate() {
                        let one = match &r {
                            Ok(ids) => Ok(ids[i]),
                            Err(e) => Err(e.clone()),
                        };
                        let _ = reply.send((one, lines));
                    }
                }
            })?;
        Ok(InboxWriter { tx })
    }

    /// Commits a batch; returns its id (and the lines, handed back).
    pub async fn push(&self, events: u64, lines: Vec<u8>) -> (Result<i64, String>, Vec<u8>) {
        let (reply, wait) = tokio::sync::oneshot::channel();
        if let Err(e) = self.tx.send((events, lines, reply)) {
            let (_, lines, _) = e.into_inner();
            return (Err("the spool writer stopped".into()), lines);
        }
        match wait.await {
            Ok(r) => r,
            Err(_) => (Err("the spool writer stopped".into()), Vec::new()),
        }
    }
}
