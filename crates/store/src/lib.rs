//! The state file of stateful detection (`kubeward detect --state PATH.db`).
//!
//! One SQLite database holds what a later run needs from the earlier ones:
//!
//! - **objects**: the last known content of each RBAC object, keyed by
//!   (kind, namespace, name), with the audit event that set it, and a mark when a
//!   metadata-level event changed the object so that its content is no longer known;
//! - **alerts**: every alert raised, unique per (rule id, audit id), so that reading the
//!   same events again never alerts twice;
//! - **positions**: how far each input was read, with a fingerprint to notice a rotated or
//!   replaced file;
//! - **changes** (schema version 2): one row per RBAC change applied from the audit stream,
//!   unique per audit id, so that "what else did this actor change around then?" and "when
//!   was this object last changed, and was the change applied?" are one indexed query.
//!
//! An object whose `json` is the text `null` is a **tombstone**: the object was deleted,
//! and its row keeps the deletion's time and resourceVersion so that an older event read
//! late (out of order, or from another input) does not bring it back. [`Store::objects`]
//! returns tombstones too; callers that want the live objects skip them
//! ([`StoredObject::is_tombstone`]).
//!
//! A state file is recognised by its `PRAGMA application_id` ([`APPLICATION_ID`]); its
//! schema version is `PRAGMA user_version`, brought up to [`SCHEMA_VERSION`] by
//! [`Store::open`], one migration per transaction. The file is in WAL mode with
//! `PRAGMA synchronous = NORMAL`: a committed transaction survives a crash of the process
//! (it is in the write-ahead log, which the next open replays), though the last
//! transactions before a power loss or an operating-system crash may be lost (never
//! half-applied). Fsyncing every commit would cost more than re-reading a few events,
//! which positions and de-duplication make harmless. One process writes at a time: a
//! writer that finds the file locked for longer than the busy timeout gets
//! [`StoreError::Locked`].
//!
//! Every method of [`Store`] is also on [`Tx`], the handle given to the closure of
//! [`Store::transaction`], to group many writes into one commit.
//!
//! Times are stored as the audit event's `stageTimestamp` text and compared as text:
//! RFC 3339 in UTC with a fixed number of fraction digits (what the API server writes,
//! `2024-05-01T12:00:00.123456Z`) sorts in time order. Callers normalize times to that
//! form before storing or querying them (`audit::time::normalize`); the store does not
//! parse times.

#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior};

/// Prepared statements kept per connection: more than the store has, so that none is ever
/// parsed twice (rusqlite's default of 16 is fewer, and re-parsing showed in profiles).
const STATEMENT_CACHE: usize = 64;

/// Page size of new state files.
const PAGE_SIZE: i64 = 16384;

/// `PRAGMA application_id` of a kubeward state file: "KWST".
pub const APPLICATION_ID: i32 = 0x4B57_5354;

/// How long a write waits for another process's lock before [`StoreError::Locked`].
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// The schema version this build reads and writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Migrations in order: entry `i` takes the schema from version `i` to `i + 1`. Append
/// only; never edit one that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: objects, alerts, positions.
    "CREATE TABLE objects (
         kind             TEXT NOT NULL,
         namespace        TEXT NOT NULL,  -- '' for cluster-scoped objects
         name             TEXT NOT NULL,
         json             TEXT NOT NULL,  -- the object as JSON
         audit_id         TEXT NOT NULL,  -- the event that set it
         time             TEXT NOT NULL,  -- that event's stageTimestamp
         resource_version TEXT,
         unknown_since    TEXT,           -- set when a metadata-level event changed it
         PRIMARY KEY (kind, namespace, name)
     ) WITHOUT ROWID;
     CREATE TABLE alerts (
         seq      INTEGER PRIMARY KEY AUTOINCREMENT,
         rule_id  TEXT NOT NULL,
         audit_id TEXT NOT NULL,
         time     TEXT,
         json     TEXT NOT NULL,
         UNIQUE (rule_id, audit_id)
     );
     CREATE INDEX alerts_by_time ON alerts (time, seq);
     CREATE TABLE positions (
         source      TEXT PRIMARY KEY,
         offset      INTEGER NOT NULL,
         line        INTEGER NOT NULL,
         fingerprint TEXT NOT NULL
     ) WITHOUT ROWID;",
    // 2: changes.
    // Rows are never deleted, so the rowid alone keeps `seq` increasing: AUTOINCREMENT
    // would only add a write per row.
    "CREATE TABLE changes (
         seq              INTEGER PRIMARY KEY,
         audit_id         TEXT NOT NULL UNIQUE,
         kind             TEXT NOT NULL,
         namespace        TEXT NOT NULL,  -- '' for cluster-scoped objects
         name             TEXT NOT NULL,
         verb             TEXT NOT NULL,
         actor            TEXT,           -- user.username, when the event has one
         time             TEXT NOT NULL,  -- normalized stageTimestamp
         resource_version TEXT,
         outcome          TEXT NOT NULL   -- applied, deleted, stale, unverified, same-version
     );
     CREATE INDEX changes_by_actor ON changes (actor, time);
     CREATE INDEX changes_by_object ON changes (kind, namespace, name, seq);",
    // 3: nothing reads changes by object on the hot path, and each index is one more B-tree
    // insert per change.
    "DROP INDEX IF EXISTS changes_by_object;",
];

/// What can go wrong with a state file. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// [`Store::open_existing`] found no file at the path.
    #[error("{}: no state file here (kubeward detect --state PATH creates one)", path.display())]
    Missing {
        /// The path looked at.
        path: PathBuf,
    },
    /// The file could not be opened or created.
    #[error("{}: cannot open state file: {source}", path.display())]
    Open {
        /// The state file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// Another process held the file's lock for longer than the busy timeout.
    #[error("{}: state file is locked by another process (is another kubeward running on it?)", path.display())]
    Locked {
        /// The state file.
        path: PathBuf,
    },
    /// The file exists but is not a kubeward state file; it was left untouched.
    #[error("{}: not a kubeward state file: {reason}", path.display())]
    NotAStateFile {
        /// The file.
        path: PathBuf,
        /// What gave it away.
        reason: String,
    },
    /// The file was written by a newer kubeward.
    #[error("{}: state file has schema version {found}, this kubeward supports up to {supported}; use a newer kubeward or another file", path.display())]
    NewerSchema {
        /// The state file.
        path: PathBuf,
        /// Its schema version.
        found: u32,
        /// The newest version this build knows.
        supported: u32,
    },
    /// Any other SQLite error.
    #[error("{}: {source}", path.display())]
    Sql {
        /// The state file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A value given to be stored as JSON is not JSON.
    #[error("invalid JSON for the state file: {0}")]
    Json(#[from] serde_json::Error),
}

/// An RBAC object as last seen. `namespace` is `""` for cluster-scoped objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// `ClusterRole`, `Role`, `ClusterRoleBinding` or `RoleBinding`.
    pub kind: String,
    /// Namespace, `""` for cluster-scoped objects.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The object as JSON text; the text `null` for a tombstone (see
    /// [`is_tombstone`](Self::is_tombstone)).
    pub json: String,
    /// The audit ID of the event that set this content (or deleted the object).
    pub audit_id: String,
    /// That event's `stageTimestamp`.
    pub time: String,
    /// `metadata.resourceVersion` of the stored content (or of the deletion), when known.
    pub resource_version: Option<String>,
    /// When set, a metadata-level event changed the object at that time and `json` is
    /// the last content known before it.
    pub unknown_since: Option<String>,
}

impl StoredObject {
    /// Whether this row is a tombstone: `json` is the text `null`, the object was deleted.
    /// The row is kept, with the deletion's time and resourceVersion, so that an older
    /// event read later does not resurrect the object; it is not a live object.
    pub fn is_tombstone(&self) -> bool {
        self.json.trim() == "null"
    }
}

/// An RBAC change applied from the audit stream, as recorded in the `changes` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRecord {
    /// Insertion order, given by the store; ignored by [`Store::record_change`].
    pub seq: i64,
    /// The audit ID of the event that made the change; at most one record per audit ID.
    pub audit_id: String,
    /// `ClusterRole`, `Role`, `ClusterRoleBinding` or `RoleBinding`.
    pub kind: String,
    /// Namespace, `""` for cluster-scoped objects.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The request's verb (`create`, `update`, `patch`, `delete`, ...).
    pub verb: String,
    /// `user.username` of the event, when it has one.
    pub actor: Option<String>,
    /// The event's time, normalized so that text order is time order (see the crate doc).
    pub time: String,
    /// `metadata.resourceVersion` after the change, when known.
    pub resource_version: Option<String>,
    /// What became of the change, in a short word: `applied`, `stale` (older than what was
    /// stored), `unverified` (content not in the event), `duplicate-content`, ...
    pub outcome: String,
}

/// A change to record ([`Tx::record_change`]): the fields of a [`ChangeRecord`] borrowed
/// from the caller, which already holds them (one change is recorded per RBAC event, and
/// copying each field first showed in profiles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewChange<'a> {
    /// See [`ChangeRecord::audit_id`].
    pub audit_id: &'a str,
    /// See [`ChangeRecord::kind`].
    pub kind: &'a str,
    /// See [`ChangeRecord::namespace`].
    pub namespace: &'a str,
    /// See [`ChangeRecord::name`].
    pub name: &'a str,
    /// See [`ChangeRecord::verb`].
    pub verb: &'a str,
    /// See [`ChangeRecord::actor`].
    pub actor: Option<&'a str>,
    /// See [`ChangeRecord::time`].
    pub time: &'a str,
    /// See [`ChangeRecord::resource_version`].
    pub resource_version: Option<&'a str>,
    /// See [`ChangeRecord::outcome`].
    pub outcome: &'a str,
}

impl ChangeRecord {
    /// The record as [`Tx::record_change`] takes it.
    pub fn as_new(&self) -> NewChange<'_> {
        NewChange {
            audit_id: &self.audit_id,
            kind: &self.kind,
            namespace: &self.namespace,
            name: &self.name,
            verb: &self.verb,
            actor: self.actor.as_deref(),
            time: &self.time,
            resource_version: self.resource_version.as_deref(),
            outcome: &self.outcome,
        }
    }
}

/// An alert already raised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAlert {
    /// Insertion order.
    pub seq: i64,
    /// Rule id.
    pub rule_id: String,
    /// The audit ID of the event that raised it.
    pub audit_id: String,
    /// The event's time, when known.
    pub time: Option<String>,
    /// The full alert as JSON text.
    pub json: String,
}

/// How far an input was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Byte offset of the first byte not yet read.
    pub offset: u64,
    /// Number of lines read (the line reached).
    pub line: u64,
    /// Identifies the file that was read (e.g. a hash of its first 4 KiB, or
    /// device+inode), to notice when it was rotated or replaced. Opaque to the store.
    pub fingerprint: String,
}

/// An open state file. One writer at a time; see [`Store::transaction`] to group writes.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// The handle of a transaction opened by [`Store::transaction`]: the same methods as
/// [`Store`], committed together.
#[derive(Debug)]
pub struct Tx<'a> {
    conn: &'a Connection,
    path: &'a Path,
}

impl Store {
    /// Opens the state file at `path`, creating it if missing, with the
    /// [`DEFAULT_BUSY_TIMEOUT`]. See [`Store::open_with_timeout`].
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with_timeout(path, DEFAULT_BUSY_TIMEOUT)
    }

    /// Opens an existing state file, as [`Store::open`] does, but never creates one: for
    /// commands that only read the state, where a mistyped path must not leave an empty
    /// state file behind. No file at `path` gives [`StoreError::Missing`]; an empty file
    /// (which [`Store::open`] would turn into a state file) gives
    /// [`StoreError::NotAStateFile`] and is left untouched.
    ///
    /// An existing file of an older schema version is still migrated, so the file must be
    /// writable.
    pub fn open_existing(path: &Path) -> Result<Store, StoreError> {
        Store::open_impl(path, DEFAULT_BUSY_TIMEOUT, false)
    }

    /// Opens the state file at `path`, creating it if missing: checks that it is a
    /// kubeward state file (a file that is not, SQLite or not, is left untouched and
    /// gives [`StoreError::NotAStateFile`]), turns on WAL mode and brings the schema up to
    /// date. Waits at most `busy_timeout` for another process's lock, on opening and on
    /// every later write, then gives [`StoreError::Locked`].
    pub fn open_with_timeout(path: &Path, busy_timeout: Duration) -> Result<Store, StoreError> {
        Store::open_impl(path, busy_timeout, true)
    }

    fn open_impl(path: &Path, busy_timeout: Duration, create: bool) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = if create {
            Connection::open(path)
        } else {
            // rusqlite's default flags without SQLITE_OPEN_CREATE.
            Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_URI
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
        };
        let conn = conn.map_err(|e| {
            // SQLite says only "unable to open"; whether the file is there is what the user
            // needs to know.
            if !create && is_code(&e, ErrorCode::CannotOpen) && !path.exists() {
                StoreError::Missing {
                    path: path.to_path_buf(),
                }
            } else {
                open_err(e)
            }
        })?;
        conn.busy_timeout(busy_timeout).map_err(open_err)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
        };
        let fresh = store.check_application().map_err(|e| match e {
            StoreError::Sql { source, .. } if is_code(&source, ErrorCode::CannotOpen) => {
                open_err(source)
            }
            e => e,
        })?;
        if fresh && !create {
            return Err(StoreError::NotAStateFile {
                path: path.to_path_buf(),
                reason: "the file is empty (kubeward detect --state PATH makes it a state file)"
                    .into(),
            });
        }
        if fresh {
            // Alerts are stored whole (several KiB of JSON): pages that hold one without
            // overflow chains make inserting them several times cheaper. Only a new file
            // can take it (before WAL mode and the first table).
            store.set_page_size()?;
        }
        let mode: String = store
            .conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(|e| store.err(e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            let source = rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(format!("cannot turn on WAL mode (journal_mode is {mode})")),
            );
            return Err(open_err(source));
        }
        // In WAL mode NORMAL syncs at checkpoints, not at every commit; see the crate doc
        // for what that keeps across crashes.
        store
            .conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| store.err(e))?;
        store.migrate()?;
        Ok(store)
    }

    /// A fresh state in memory, for tests and runs without `--state`.
    pub fn in_memory() -> Result<Store, StoreError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let mut store = Store { conn, path };
        // As for a new file (see `open_with_timeout`): with the default 4 KiB pages every
        // stored alert needs an overflow chain, and inserting them took several times longer.
        store.set_page_size()?;
        store.migrate()?;
        Ok(store)
    }

    /// The file this store was opened from (`:memory:` for [`Store::in_memory`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in one write transaction: commits when it returns `Ok`, rolls back when it
    /// returns `Err` or panics. The write lock is taken at the start (waiting at most the
    /// busy timeout, then [`StoreError::Locked`]). `f` may fail with its own error type, as
    /// long as store errors convert into it.
    pub fn transaction<T, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let path = self.path.as_path();
        let err = |e| classify(e, path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let value = f(&Tx { conn: &tx, path })?; // an Err drops `tx`: rollback
        tx.commit().map_err(err)?;
        Ok(value)
    }

    /// Runs `f` in the write transaction left open by an earlier call, or in a new one, and
    /// leaves it open: several calls then share one commit ([`Store::commit`]). Each commit
    /// writes every page it touched to the WAL again, so batches that arrive one after
    /// another are cheaper committed together. An `Err` from `f` rolls back everything since
    /// the last commit. [`Store::transaction`] cannot be used while one is open.
    pub fn within_open<T, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let path = self.path.as_path();
        if self.conn.is_autocommit() {
            self.conn
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(|e| classify(e, path))?;
        }
        let value = f(&Tx {
            conn: &self.conn,
            path,
        });
        if value.is_err() {
            // The error that matters is `f`'s; a failed rollback leaves nothing to keep either.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        value
    }

    /// Commits the transaction [`Store::within_open`] left open; nothing when none is.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        if !self.conn.is_autocommit() {
            if let Err(e) = self.conn.execute_batch("COMMIT") {
                let _ = self.conn.execute_batch("ROLLBACK");
                return Err(self.err(e));
            }
        }
        Ok(())
    }

    /// Closes the file: commits nothing (an open transaction is rolled back), checkpoints the
    /// WAL into the database file, and reports what went wrong doing so, which dropping the
    /// store cannot.
    pub fn close(self) -> Result<(), StoreError> {
        let path = self.path;
        self.conn.close().map_err(|(_, e)| classify(e, &path))
    }

    /// Copies what the WAL holds into the database file, as far as no reader needs the WAL
    /// (`PRAGMA wal_checkpoint(PASSIVE)`; never waits for a lock). Closing the store does the
    /// same for what is left: a long run that checkpoints after its commits leaves the close
    /// little to write and sync, on a thread where the waiting does not hold up the reading.
    pub fn checkpoint(&mut self) -> Result<(), StoreError> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .map_err(|e| self.err(e))
    }

    /// Whether a transaction [`Store::within_open`] began is waiting for its commit.
    pub fn in_transaction(&self) -> bool {
        !self.conn.is_autocommit()
    }

    /// Sets [`PAGE_SIZE`]; only a database with no table yet (and not in WAL mode) takes it.
    fn set_page_size(&self) -> Result<(), StoreError> {
        self.conn
            .pragma_update(None, "page_size", PAGE_SIZE)
            .map_err(|e| self.err(e))
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        classify(e, &self.path)
    }

    /// Refuses a file that is not ours before anything is written to it. `true` when the
    /// file is empty (a new state file).
    fn check_application(&self) -> Result<bool, StoreError> {
        let not_ours = |reason: String| StoreError::NotAStateFile {
            path: self.path.clone(),
            reason,
        };
        let app_id: i32 = self
            .conn
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if app_id == APPLICATION_ID {
            return self.check_version().map(|()| false);
        }
        if app_id != 0 {
            return Err(not_ours(format!(
                "SQLite database of another application (application_id {app_id:#x})"
            )));
        }
        let objects: i64 = self
            .conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if objects != 0 {
            return Err(not_ours(
                "SQLite database of another application (it has tables but no kubeward application_id)".into(),
            ));
        }
        Ok(true)
    }

    fn user_version(conn: &Connection) -> rusqlite::Result<u32> {
        conn.pragma_query_value(None, "user_version", |r| r.get(0))
    }

    fn check_version(&self) -> Result<(), StoreError> {
        let found = Store::user_version(&self.conn).map_err(|e| self.err(e))?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: self.path.clone(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(())
    }

    /// Applies the missing migrations, each in its own write transaction. The version is
    /// read again under the write lock, so two processes opening a new file at once are
    /// safe. Taking the lock also makes opening a file another writer holds fail with
    /// [`StoreError::Locked`] at once rather than at the first write.
    fn migrate(&mut self) -> Result<(), StoreError> {
        let path = self.path.as_path();
        let err = |e| classify(e, path);
        loop {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err)?;
            let found = Store::user_version(&tx).map_err(err)?;
            if found > SCHEMA_VERSION {
                return Err(StoreError::NewerSchema {
                    path: path.to_path_buf(),
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            if found == SCHEMA_VERSION {
                return tx.commit().map_err(err);
            }
            tx.execute_batch(MIGRATIONS[found as usize]).map_err(err)?;
            tx.pragma_update(None, "application_id", APPLICATION_ID)
                .map_err(err)?;
            tx.pragma_update(None, "user_version", found + 1)
                .map_err(err)?;
            tx.commit().map_err(err)?;
        }
    }
}

fn is_code(e: &rusqlite::Error, code: ErrorCode) -> bool {
    e.sqlite_error_code() == Some(code)
}

fn classify(e: rusqlite::Error, path: &Path) -> StoreError {
    let path = path.to_path_buf();
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Locked { path },
        Some(ErrorCode::NotADatabase) => StoreError::NotAStateFile {
            path,
            reason: "not an SQLite database".into(),
        },
        _ => StoreError::Sql { path, source: e },
    }
}

fn check_json(json: &str) -> Result<(), StoreError> {
    serde_json::from_str::<&serde_json::value::RawValue>(json)?;
    Ok(())
}

/// SQLite integers are i64; positions never come near `i64::MAX`.
fn to_i64(n: u64) -> rusqlite::Result<i64> {
    i64::try_from(n).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn get_u64(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<u64> {
    let n: i64 = r.get(i)?;
    u64::try_from(n).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(i, n))
}

fn object_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredObject> {
    Ok(StoredObject {
        kind: r.get(0)?,
        namespace: r.get(1)?,
        name: r.get(2)?,
        json: r.get(3)?,
        audit_id: r.get(4)?,
        time: r.get(5)?,
        resource_version: r.get(6)?,
        unknown_since: r.get(7)?,
    })
}

const OBJECT_COLUMNS: &str =
    "kind, namespace, name, json, audit_id, time, resource_version, unknown_since";

const CHANGE_COLUMNS: &str =
    "seq, audit_id, kind, namespace, name, verb, actor, time, resource_version, outcome";

/// A row of `SELECT seq, rule_id, audit_id, time, json FROM alerts`.
fn alert_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredAlert> {
    Ok(StoredAlert {
        seq: r.get(0)?,
        rule_id: r.get(1)?,
        audit_id: r.get(2)?,
        time: r.get(3)?,
        json: r.get(4)?,
    })
}

fn change_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ChangeRecord> {
    Ok(ChangeRecord {
        seq: r.get(0)?,
        audit_id: r.get(1)?,
        kind: r.get(2)?,
        namespace: r.get(3)?,
        name: r.get(4)?,
        verb: r.get(5)?,
        actor: r.get(6)?,
        time: r.get(7)?,
        resource_version: r.get(8)?,
        outcome: r.get(9)?,
    })
}

/// The data methods, written once for a plain connection (each statement its own
/// transaction) and for a transaction.
macro_rules! data_methods {
    () => {
        /// Stores `o`, replacing what was stored under its (kind, namespace, name).
        /// `o.json` must be JSON.
        pub fn put_object(&self, o: &StoredObject) -> Result<(), StoreError> {
            check_json(&o.json)?;
            self.conn
                .prepare_cached(&format!(
                    "INSERT OR REPLACE INTO objects ({OBJECT_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                ))
                .and_then(|mut s| {
                    s.execute(params![
                        o.kind,
                        o.namespace,
                        o.name,
                        o.json,
                        o.audit_id,
                        o.time,
                        o.resource_version,
                        o.unknown_since
                    ])
                })
                .map_err(|e| classify(e, &self.path))?;
            Ok(())
        }

        /// The object stored under (kind, namespace, name), if any.
        pub fn get_object(
            &self,
            kind: &str,
            namespace: &str,
            name: &str,
        ) -> Result<Option<StoredObject>, StoreError> {
            self.conn
                .prepare_cached(&format!(
                    "SELECT {OBJECT_COLUMNS} FROM objects
                     WHERE kind = ?1 AND namespace = ?2 AND name = ?3"
                ))
                .and_then(|mut s| {
                    s.query_row(params![kind, namespace, name], object_from_row)
                        .optional()
                })
                .map_err(|e| classify(e, &self.path))
        }

        /// Deletes the object; `false` when there was none.
        pub fn delete_object(
            &self,
            kind: &str,
            namespace: &str,
            name: &str,
        ) -> Result<bool, StoreError> {
            self.conn
                .prepare_cached(
                    "DELETE FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
                )
                .and_then(|mut s| s.execute(params![kind, namespace, name]))
                .map(|n| n > 0)
                .map_err(|e| classify(e, &self.path))
        }

        /// Every object, ordered by kind, namespace, name, tombstones included
        /// ([`StoredObject::is_tombstone`]).
        pub fn objects(&self) -> Result<Vec<StoredObject>, StoreError> {
            self.conn
                .prepare_cached(&format!(
                    "SELECT {OBJECT_COLUMNS} FROM objects ORDER BY kind, namespace, name"
                ))
                .and_then(|mut s| s.query_map([], object_from_row)?.collect())
                .map_err(|e| classify(e, &self.path))
        }

        /// Records that a change at `time` (with `resource_version`, when known) was applied
        /// to the object without changing its content: the row's `audit_id`, `time` and
        /// `resource_version` move to it, so that a later run orders late events as this one
        /// did. `false` when no such object is stored.
        pub fn touch_object(
            &self,
            kind: &str,
            namespace: &str,
            name: &str,
            audit_id: &str,
            time: &str,
            resource_version: Option<&str>,
        ) -> Result<bool, StoreError> {
            self.conn
                .prepare_cached(
                    "UPDATE objects SET audit_id = ?4, time = ?5, resource_version = ?6
                     WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
                )
                .and_then(|mut s| {
                    s.execute(params![kind, namespace, name, audit_id, time, resource_version])
                })
                .map(|n| n > 0)
                .map_err(|e| classify(e, &self.path))
        }

        /// As [`mark_unknown`](Self::mark_unknown), for a change at `since` that is the
        /// object's newest: the row's `time` (and `resource_version`, when given) move to it
        /// too, so that a later run orders late events as this one did.
        pub fn mark_unknown_at(
            &self,
            kind: &str,
            namespace: &str,
            name: &str,
            since: &str,
            resource_version: Option<&str>,
        ) -> Result<bool, StoreError> {
            self.conn
                .prepare_cached(
                    "UPDATE objects SET unknown_since = coalesce(unknown_since, ?4), time = ?4,
                         resource_version = coalesce(?5, resource_version)
                     WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
                )
                .and_then(|mut s| s.execute(params![kind, namespace, name, since, resource_version]))
                .map(|n| n > 0)
                .map_err(|e| classify(e, &self.path))
        }

        /// Marks the object's content as unknown since `since` (a metadata-level event
        /// changed it). An earlier mark is kept; [`put_object`](Self::put_object) with
        /// `unknown_since: None` clears it. `false` when no such object is stored.
        pub fn mark_unknown(
            &self,
            kind: &str,
            namespace: &str,
            name: &str,
            since: &str,
        ) -> Result<bool, StoreError> {
            self.conn
                .prepare_cached(
                    "UPDATE objects SET unknown_since = coalesce(unknown_since, ?4)
                     WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
                )
                .and_then(|mut s| s.execute(params![kind, namespace, name, since]))
                .map(|n| n > 0)
                .map_err(|e| classify(e, &self.path))
        }

        /// Records an alert. `false` when one with the same (rule_id, audit_id) was
        /// already there (it is kept as it was): the caller must not report it again.
        /// `json` must be JSON.
        pub fn insert_alert(
            &self,
            rule_id: &str,
            audit_id: &str,
            time: Option<&str>,
            json: &str,
        ) -> Result<bool, StoreError> {
            check_json(json)?;
            self.insert_alert_text(rule_id, audit_id, time, json)
        }

        /// As [`insert_alert`](Self::insert_alert), for an alert still to be serialised:
        /// returns its JSON when it was stored, `None` when it was already there. Text
        /// serde_json wrote is JSON, so it is not parsed again to check (alerts are several
        /// KiB, and a busy run stores hundreds).
        pub fn insert_alert_value<T: serde::Serialize>(
            &self,
            rule_id: &str,
            audit_id: &str,
            time: Option<&str>,
            alert: &T,
        ) -> Result<Option<String>, StoreError> {
            let json = serde_json::to_string(alert)?;
            Ok(self
                .insert_alert_text(rule_id, audit_id, time, &json)?
                .then_some(json))
        }

        fn insert_alert_text(
            &self,
            rule_id: &str,
            audit_id: &str,
            time: Option<&str>,
            json: &str,
        ) -> Result<bool, StoreError> {
            self.conn
                .prepare_cached(
                    "INSERT INTO alerts (rule_id, audit_id, time, json) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (rule_id, audit_id) DO NOTHING",
                )
                .and_then(|mut s| s.execute(params![rule_id, audit_id, time, json]))
                .map(|n| n > 0)
                .map_err(|e| classify(e, &self.path))
        }

        /// Alerts stored after the one with sequence number `seq`, in insertion order (what
        /// a reader that saw up to `seq` has not seen yet).
        pub fn alerts_after(&self, seq: i64) -> Result<Vec<StoredAlert>, StoreError> {
            self.conn
                .prepare_cached(
                    "SELECT seq, rule_id, audit_id, time, json FROM alerts WHERE seq > ?1 ORDER BY seq",
                )
                .and_then(|mut s| {
                    s.query_map(params![seq], alert_from_row)?.collect()
                })
                .map_err(|e| classify(e, &self.path))
        }

        /// The sequence number of the last alert stored (0 when none).
        pub fn last_alert_seq(&self) -> Result<i64, StoreError> {
            self.conn
                .query_row("SELECT COALESCE(MAX(seq), 0) FROM alerts", [], |r| r.get(0))
                .map_err(|e| classify(e, &self.path))
        }

        /// Alerts with `time >= since` (alerts without a time are left out when `since`
        /// is given) and of rule `rule`, each filter when given; ordered by time (those
        /// without one first), then insertion.
        pub fn alerts(
            &self,
            since: Option<&str>,
            rule: Option<&str>,
        ) -> Result<Vec<StoredAlert>, StoreError> {
            self.conn
                .prepare_cached(
                    "SELECT seq, rule_id, audit_id, time, json FROM alerts
                     WHERE (?1 IS NULL OR time >= ?1) AND (?2 IS NULL OR rule_id = ?2)
                     ORDER BY time, seq",
                )
                .and_then(|mut s| {
                    s.query_map(params![since, rule], alert_from_row)?.collect()
                })
                .map_err(|e| classify(e, &self.path))
        }

        /// How far `source` (a path or source id) was read, if it was.
        pub fn position(&self, source: &str) -> Result<Option<Position>, StoreError> {
            self.conn
                .prepare_cached("SELECT offset, line, fingerprint FROM positions WHERE source = ?1")
                .and_then(|mut s| {
                    s.query_row([source], |r| {
                        Ok(Position {
                            offset: get_u64(r, 0)?,
                            line: get_u64(r, 1)?,
                            fingerprint: r.get(2)?,
                        })
                    })
                    .optional()
                })
                .map_err(|e| classify(e, &self.path))
        }

        /// Records how far `source` was read, replacing the previous position.
        pub fn set_position(&self, source: &str, p: &Position) -> Result<(), StoreError> {
            self.conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO positions (source, offset, line, fingerprint)
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        source,
                        to_i64(p.offset)?,
                        to_i64(p.line)?,
                        p.fingerprint
                    ])
                })
                .map_err(|e| classify(e, &self.path))?;
            Ok(())
        }

        /// Records a change. `false`, and nothing written, when a change with the same
        /// audit ID was already recorded (an event read twice is one change). The store
        /// numbers changes in insertion order.
        pub fn record_change(&self, c: &NewChange<'_>) -> Result<bool, StoreError> {
            self.conn
                .prepare_cached(
                    "INSERT INTO changes
                         (audit_id, kind, namespace, name, verb, actor, time, resource_version, outcome)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (audit_id) DO NOTHING",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        c.audit_id,
                        c.kind,
                        c.namespace,
                        c.name,
                        c.verb,
                        c.actor,
                        c.time,
                        c.resource_version,
                        c.outcome
                    ])
                })
                .map(|n| n > 0)
                .map_err(|e| classify(e, &self.path))
        }

        /// Whether a change with this audit ID is recorded.
        pub fn has_change(&self, audit_id: &str) -> Result<bool, StoreError> {
            self.conn
                .prepare_cached("SELECT 1 FROM changes WHERE audit_id = ?1")
                .and_then(|mut s| s.exists([audit_id]))
                .map_err(|e| classify(e, &self.path))
        }

        /// The changes made by `actor` with `since <= time <= until` (normalized times,
        /// compared as text), ordered by time, then insertion.
        pub fn changes_by_actor(
            &self,
            actor: &str,
            since: &str,
            until: &str,
        ) -> Result<Vec<ChangeRecord>, StoreError> {
            self.conn
                .prepare_cached(&format!(
                    "SELECT {CHANGE_COLUMNS} FROM changes
                     WHERE actor = ?1 AND time >= ?2 AND time <= ?3
                     ORDER BY time, seq"
                ))
                .and_then(|mut s| s.query_map(params![actor, since, until], change_from_row)?.collect())
                .map_err(|e| classify(e, &self.path))
        }

        /// Replaces the `outcome` of a recorded change; returns whether it was recorded.
        pub fn set_change_outcome(&self, audit_id: &str, outcome: &str) -> Result<bool, StoreError> {
            self.conn
                .prepare_cached("UPDATE changes SET outcome = ?2 WHERE audit_id = ?1")
                .and_then(|mut s| s.execute(params![audit_id, outcome]))
                .map(|n| n > 0)
                .map_err(|e| classify(e, &self.path))
        }

        /// The last `limit` changes made by `actor` with `since <= time <= until` (in time
        /// order), and how many there are in all: an alert lists a few and counts the rest,
        /// since a busy automation account can make thousands in an hour.
        pub fn latest_changes_by_actor(
            &self,
            actor: &str,
            since: &str,
            until: &str,
            limit: usize,
        ) -> Result<(Vec<ChangeRecord>, u64), StoreError> {
            let err = |e| classify(e, &self.path);
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let mut rows: Vec<ChangeRecord> = self
                .conn
                .prepare_cached(&format!(
                    "SELECT {CHANGE_COLUMNS} FROM changes
                     WHERE actor = ?1 AND time >= ?2 AND time <= ?3
                     ORDER BY time DESC, seq DESC LIMIT ?4"
                ))
                .and_then(|mut s| {
                    s.query_map(params![actor, since, until, limit], change_from_row)?
                        .collect()
                })
                .map_err(err)?;
            rows.reverse();
            let total: i64 = self
                .conn
                .prepare_cached(
                    "SELECT count(*) FROM changes WHERE actor = ?1 AND time >= ?2 AND time <= ?3",
                )
                .and_then(|mut s| s.query_row(params![actor, since, until], |r| r.get(0)))
                .map_err(err)?;
            Ok((rows, u64::try_from(total).unwrap_or(0)))
        }

        /// The change to (kind, namespace, name) recorded last (highest `seq`: the order
        /// changes were read in, which is not always their time order), if any. A table scan:
        /// for inspection, not for the hot path.
        pub fn latest_change_for(
            &self,
            kind: &str,
            namespace: &str,
            name: &str,
        ) -> Result<Option<ChangeRecord>, StoreError> {
            self.conn
                .prepare_cached(&format!(
                    "SELECT {CHANGE_COLUMNS} FROM changes
                     WHERE kind = ?1 AND namespace = ?2 AND name = ?3
                     ORDER BY seq DESC LIMIT 1"
                ))
                .and_then(|mut s| {
                    s.query_row(params![kind, namespace, name], change_from_row)
                        .optional()
                })
                .map_err(|e| classify(e, &self.path))
        }
    };
}

impl Store {
    data_methods!();
}

impl Tx<'_> {
    data_methods!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opened_files_sync_normally() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        for s in [
            Store::open(&path).unwrap(),
            Store::open_existing(&path).unwrap(),
        ] {
            let level: i64 = s
                .conn
                .pragma_query_value(None, "synchronous", |r| r.get(0))
                .unwrap();
            assert_eq!(level, 1, "synchronous is not NORMAL");
        }
    }
}
