use std::path::Path;
use std::time::{Duration, Instant};

use store::{ChangeRecord, Position, Store, StoreError, StoredObject, SCHEMA_VERSION};

fn object(kind: &str, ns: &str, name: &str, json: &str) -> StoredObject {
    StoredObject {
        kind: kind.into(),
        namespace: ns.into(),
        name: name.into(),
        json: json.into(),
        audit_id: format!("audit-{name}"),
        time: "2024-05-01T12:00:00.000000Z".into(),
        resource_version: Some("42".into()),
        unknown_since: None,
    }
}

fn state_path(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("state.db")
}

fn assert_names_path(e: &StoreError, path: &Path) {
    let msg = e.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "message does not name the file: {msg}"
    );
}

#[test]
fn create_then_reopen_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    {
        let s = Store::open(&path).unwrap();
        s.put_object(&object("ClusterRole", "", "admin", r#"{"rules":[]}"#))
            .unwrap();
        s.insert_alert("pod-write", "a1", Some("2024-05-01T12:00:00Z"), "{}")
            .unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.path(), path);
    let o = s.get_object("ClusterRole", "", "admin").unwrap().unwrap();
    assert_eq!(o.json, r#"{"rules":[]}"#);
    assert_eq!(s.alerts(None, None).unwrap().len(), 1);
    // And a third open of an up-to-date file changes nothing.
    drop(s);
    let s = Store::open(&path).unwrap();
    assert_eq!(s.objects().unwrap().len(), 1);
}

#[test]
fn wal_mode_application_id_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    drop(Store::open(&path).unwrap());
    let c = rusqlite::Connection::open(&path).unwrap();
    let mode: String = c
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let id: i32 = c
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .unwrap();
    assert_eq!(id, store::APPLICATION_ID);
    let v: u32 = c
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
}

#[test]
fn objects_put_get_overwrite_delete() {
    let s = Store::in_memory().unwrap();
    assert_eq!(s.get_object("Role", "ns", "r").unwrap(), None);
    let mut r = object("Role", "ns", "r", r#"{"v":1}"#);
    s.put_object(&r).unwrap();
    assert_eq!(s.get_object("Role", "ns", "r").unwrap().as_ref(), Some(&r));
    // Same name in another namespace or kind is another object.
    s.put_object(&object("Role", "other", "r", "{}")).unwrap();
    s.put_object(&object("ClusterRole", "", "r", "{}")).unwrap();
    r.json = r#"{"v":2}"#.into();
    r.resource_version = None;
    s.put_object(&r).unwrap();
    assert_eq!(s.get_object("Role", "ns", "r").unwrap().as_ref(), Some(&r));
    let keys: Vec<_> = s
        .objects()
        .unwrap()
        .into_iter()
        .map(|o| (o.kind, o.namespace, o.name))
        .collect();
    assert_eq!(
        keys,
        [
            ("ClusterRole".into(), "".into(), "r".into()),
            ("Role".into(), "ns".into(), "r".into()),
            ("Role".into(), "other".into(), "r".into()),
        ]
    );
    assert!(s.delete_object("Role", "ns", "r").unwrap());
    assert!(!s.delete_object("Role", "ns", "r").unwrap());
    assert_eq!(s.get_object("Role", "ns", "r").unwrap(), None);
    assert_eq!(s.objects().unwrap().len(), 2);
}

#[test]
fn invalid_json_is_refused() {
    let s = Store::in_memory().unwrap();
    let e = s
        .put_object(&object("Role", "ns", "r", "{nope"))
        .unwrap_err();
    assert!(matches!(e, StoreError::Json(_)), "{e:?}");
    let e = s.insert_alert("r", "a", None, "").unwrap_err();
    assert!(matches!(e, StoreError::Json(_)), "{e:?}");
    assert!(s.objects().unwrap().is_empty());
}

#[test]
fn mark_unknown_keeps_earliest_and_put_clears() {
    let s = Store::in_memory().unwrap();
    assert!(!s.mark_unknown("Role", "ns", "r", "t1").unwrap());
    s.put_object(&object("Role", "ns", "r", "{}")).unwrap();
    assert!(s.mark_unknown("Role", "ns", "r", "t1").unwrap());
    assert!(s.mark_unknown("Role", "ns", "r", "t2").unwrap());
    let o = s.get_object("Role", "ns", "r").unwrap().unwrap();
    assert_eq!(o.unknown_since.as_deref(), Some("t1"));
    assert_eq!(o.json, "{}");
    s.put_object(&object("Role", "ns", "r", "{}")).unwrap();
    let o = s.get_object("Role", "ns", "r").unwrap().unwrap();
    assert_eq!(o.unknown_since, None);
}

/// An alert handed over as a value is stored as serde_json writes it, that text comes back
/// for printing, and a repeat (same rule and event) stores nothing and returns none.
#[test]
fn alert_values_are_stored_as_serialised_and_deduplicated() {
    let s = Store::in_memory().unwrap();
    let first = serde_json::json!({"rule": "pod-write", "n": 1, "text": "a \"quoted\" word"});
    let json = s
        .insert_alert_value("pod-write", "a1", Some("t1"), &first)
        .unwrap()
        .expect("stored");
    assert_eq!(json, serde_json::to_string(&first).unwrap());
    let again = serde_json::json!({"n": 2});
    assert_eq!(
        s.insert_alert_value("pod-write", "a1", Some("t2"), &again)
            .unwrap(),
        None
    );
    // The same dedup key as text inserts use.
    assert!(!s.insert_alert("pod-write", "a1", None, "{}").unwrap());
    let all = s.alerts(None, None).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].json, json);
}

#[test]
fn alerts_are_deduplicated() {
    let s = Store::in_memory().unwrap();
    assert!(s
        .insert_alert("pod-write", "a1", Some("t1"), r#"{"first":true}"#)
        .unwrap());
    assert!(!s
        .insert_alert("pod-write", "a1", Some("t9"), r#"{"first":false}"#)
        .unwrap());
    // Another rule on the same event is another alert.
    assert!(s.insert_alert("other", "a1", Some("t1"), "{}").unwrap());
    let all = s.alerts(None, Some("pod-write")).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].json, r#"{"first":true}"#);
    assert_eq!(all[0].time.as_deref(), Some("t1"));
}

#[test]
fn alerts_filter_and_order() {
    let s = Store::in_memory().unwrap();
    let t = |n: u32| format!("2024-05-01T12:00:0{n}.000000Z");
    s.insert_alert("b", "e3", Some(&t(3)), "{}").unwrap();
    s.insert_alert("a", "e1", Some(&t(1)), "{}").unwrap();
    s.insert_alert("a", "e2", Some(&t(2)), "{}").unwrap();
    s.insert_alert("a", "e2b", Some(&t(2)), "{}").unwrap();
    s.insert_alert("a", "none", None, "{}").unwrap();
    let ids = |v: Vec<store::StoredAlert>| v.into_iter().map(|a| a.audit_id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.alerts(None, None).unwrap()),
        ["none", "e1", "e2", "e2b", "e3"]
    );
    assert_eq!(
        ids(s.alerts(Some(&t(2)), None).unwrap()),
        ["e2", "e2b", "e3"]
    );
    assert_eq!(
        ids(s.alerts(Some(&t(2)), Some("a")).unwrap()),
        ["e2", "e2b"]
    );
    assert_eq!(ids(s.alerts(None, Some("b")).unwrap()), ["e3"]);
    assert!(s.alerts(None, Some("c")).unwrap().is_empty());
}

#[test]
fn positions_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let p = Position {
        offset: 1 << 40,
        line: 123_456,
        fingerprint: "sha256:abc".into(),
    };
    {
        let s = Store::open(&path).unwrap();
        assert_eq!(s.position("/var/log/audit.log").unwrap(), None);
        s.set_position("/var/log/audit.log", &p).unwrap();
        let p2 = Position {
            offset: 10,
            line: 1,
            fingerprint: "x".into(),
        };
        s.set_position("webhook", &p2).unwrap();
        assert_eq!(s.position("webhook").unwrap(), Some(p2));
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.position("/var/log/audit.log").unwrap(), Some(p));
    let too_big = Position {
        offset: u64::MAX,
        line: 0,
        fingerprint: String::new(),
    };
    assert!(s.set_position("x", &too_big).is_err());
}

#[test]
fn garbage_file_is_not_a_state_file_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let garbage = b"{\"kind\":\"Event\"}\n".repeat(500);
    std::fs::write(&path, &garbage).unwrap();
    let e = Store::open(&path).unwrap_err();
    assert!(matches!(e, StoreError::NotAStateFile { .. }), "{e:?}");
    assert_names_path(&e, &path);
    assert_eq!(std::fs::read(&path).unwrap(), garbage);
}

#[test]
fn sqlite_file_of_another_application_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let e = Store::open(&path).unwrap_err();
    assert!(matches!(e, StoreError::NotAStateFile { .. }), "{e:?}");
    assert_names_path(&e, &path);
    assert_eq!(std::fs::read(&path).unwrap(), before);

    // Another application's id, even with no tables.
    let path = dir.path().join("other-id.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "application_id", 1234).unwrap();
    }
    let e = Store::open(&path).unwrap_err();
    assert!(matches!(e, StoreError::NotAStateFile { .. }), "{e:?}");
}

#[test]
fn empty_file_becomes_a_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    std::fs::write(&path, b"").unwrap();
    let s = Store::open(&path).unwrap();
    s.set_position(
        "a",
        &Position {
            offset: 1,
            line: 1,
            fingerprint: "f".into(),
        },
    )
    .unwrap();
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    drop(Store::open(&path).unwrap());
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let e = Store::open(&path).unwrap_err();
    match &e {
        StoreError::NewerSchema {
            found, supported, ..
        } => {
            assert_eq!(*found, SCHEMA_VERSION + 1);
            assert_eq!(*supported, SCHEMA_VERSION);
        }
        e => panic!("{e:?}"),
    }
    assert_names_path(&e, &path);
}

#[test]
fn missing_directory_is_an_open_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/state.db");
    let e = Store::open(&path).unwrap_err();
    assert!(matches!(e, StoreError::Open { .. }), "{e:?}");
    assert_names_path(&e, &path);
}

#[test]
fn locked_database_gives_locked_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let timeout = Duration::from_millis(100);
    let s = Store::open_with_timeout(&path, timeout).unwrap();

    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();

    // Opening takes the write lock to check the schema.
    let start = Instant::now();
    let e = Store::open_with_timeout(&path, timeout).unwrap_err();
    let waited = start.elapsed();
    assert!(matches!(e, StoreError::Locked { .. }), "{e:?}");
    assert_names_path(&e, &path);
    assert!(waited >= timeout / 2, "gave up too early: {waited:?}");
    assert!(waited < Duration::from_secs(2), "took {waited:?}");

    // A store already open gets Locked on its next write.
    let e = s.put_object(&object("Role", "ns", "r", "{}")).unwrap_err();
    assert!(matches!(e, StoreError::Locked { .. }), "{e:?}");

    // Once the other writer is done, writing works again.
    other.execute_batch("COMMIT").unwrap();
    s.put_object(&object("Role", "ns", "r", "{}")).unwrap();
}

#[test]
fn transaction_commits_on_ok() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let mut s = Store::open(&path).unwrap();
    let n = s
        .transaction(|tx| -> Result<_, StoreError> {
            for i in 0..100 {
                tx.put_object(&object("Role", "ns", &format!("r{i}"), "{}"))?;
            }
            tx.insert_alert("rule", "a", None, "{}")?;
            Ok(tx.objects()?.len())
        })
        .unwrap();
    assert_eq!(n, 100);
    drop(s);
    let s = Store::open(&path).unwrap();
    assert_eq!(s.objects().unwrap().len(), 100);
    assert_eq!(s.alerts(None, None).unwrap().len(), 1);
}

#[test]
fn transaction_returning_err_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let mut s = Store::open(&path).unwrap();
    s.put_object(&object("Role", "ns", "kept", "{}")).unwrap();
    let e = s
        .transaction(|tx| -> Result<_, StoreError> {
            tx.put_object(&object("Role", "ns", "new", "{}"))?;
            assert!(tx.delete_object("Role", "ns", "kept")?);
            tx.insert_alert("rule", "a", None, "{}")?;
            tx.put_object(&object("Role", "ns", "bad", "not json"))?;
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(e, StoreError::Json(_)), "{e:?}");
    let names = |s: &Store| {
        s.objects()
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&s), ["kept"]);
    assert!(s.alerts(None, None).unwrap().is_empty());
    drop(s);
    let s = Store::open(&path).unwrap();
    assert_eq!(names(&s), ["kept"]);
}

#[test]
fn transaction_that_panics_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let mut s = Store::open(&path).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        s.transaction(|tx| -> Result<(), StoreError> {
            tx.put_object(&object("Role", "ns", "r", "{}"))?;
            panic!("boom");
        })
    }));
    assert!(r.is_err());
    assert!(s.objects().unwrap().is_empty());
    drop(s);
    assert!(Store::open(&path).unwrap().objects().unwrap().is_empty());
}

/// Several `within_open` calls share one transaction: nothing is visible to another
/// connection until `commit`, and then all of it is.
#[test]
fn open_transaction_spans_calls_until_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let mut s = Store::open(&path).unwrap();
    assert!(!s.in_transaction());
    for i in 0..3 {
        s.within_open(|tx| -> Result<(), StoreError> {
            tx.put_object(&object("Role", "ns", &format!("r{i}"), "{}"))?;
            tx.insert_alert("rule", &format!("a{i}"), None, "{}")?;
            Ok(())
        })
        .unwrap();
        assert!(s.in_transaction());
    }
    // The writes are seen inside; another connection sees none of them yet.
    assert_eq!(s.objects().unwrap().len(), 3);
    let other = rusqlite::Connection::open(&path).unwrap();
    let count = |c: &rusqlite::Connection| -> i64 {
        c.query_row("SELECT count(*) FROM objects", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(count(&other), 0);
    s.commit().unwrap();
    assert!(!s.in_transaction());
    assert_eq!(count(&other), 3);
    // A commit with nothing open does nothing.
    s.commit().unwrap();
    drop(s);
    let s = Store::open(&path).unwrap();
    assert_eq!(s.alerts(None, None).unwrap().len(), 3);
}

/// An error inside an open transaction rolls back everything since the last commit, and
/// the store takes new work afterwards.
#[test]
fn open_transaction_error_rolls_back_to_the_last_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let mut s = Store::open(&path).unwrap();
    s.within_open(|tx| tx.put_object(&object("Role", "ns", "committed", "{}")))
        .unwrap();
    s.commit().unwrap();
    s.within_open(|tx| tx.put_object(&object("Role", "ns", "pending", "{}")))
        .unwrap();
    let e = s
        .within_open(|tx| tx.put_object(&object("Role", "ns", "bad", "not json")))
        .unwrap_err();
    assert!(matches!(e, StoreError::Json(_)), "{e:?}");
    assert!(!s.in_transaction());
    let names =
        |s: &Store| -> Vec<String> { s.objects().unwrap().into_iter().map(|o| o.name).collect() };
    assert_eq!(names(&s), ["committed"]);
    s.within_open(|tx| tx.put_object(&object("Role", "ns", "after", "{}")))
        .unwrap();
    s.commit().unwrap();
    drop(s);
    let s = Store::open(&path).unwrap();
    assert_eq!(names(&s), ["after", "committed"]);
}

/// Dropping a store with a transaction still open (a run that stops before its commit)
/// keeps nothing of it.
#[test]
fn open_transaction_not_committed_is_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let mut s = Store::open(&path).unwrap();
    s.within_open(|tx| tx.put_object(&object("Role", "ns", "pending", "{}")))
        .unwrap();
    drop(s);
    let s = Store::open(&path).unwrap();
    assert!(s.objects().unwrap().is_empty());
}

/// A checkpoint copies committed work from the WAL into the database file itself, while the
/// store stays open: a reader that ignores the WAL (`immutable=1`) sees it only afterwards.
#[test]
fn checkpoint_moves_committed_work_into_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let mut s = Store::open(&path).unwrap();
    // The schema, too, is in the WAL until a checkpoint.
    s.checkpoint().unwrap();
    s.within_open(|tx| tx.put_object(&object("Role", "ns", "r", "{}")))
        .unwrap();
    s.commit().unwrap();
    let in_file = || -> i64 {
        let uri = format!("file:{}?immutable=1", path.display());
        let c = rusqlite::Connection::open_with_flags(
            uri,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
        )
        .unwrap();
        c.query_row("SELECT count(*) FROM objects", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(in_file(), 0, "the commit is in the WAL only");
    s.checkpoint().unwrap();
    assert_eq!(in_file(), 1);
    // Nothing pending: a checkpoint is harmless, and the store keeps working.
    s.checkpoint().unwrap();
    s.within_open(|tx| tx.put_object(&object("Role", "ns", "r2", "{}")))
        .unwrap();
    s.commit().unwrap();
    drop(s);
    assert_eq!(Store::open(&path).unwrap().objects().unwrap().len(), 2);
}

const CRASH_ENV: &str = "KUBEWARD_STORE_TEST_CRASH";

/// Run by `crash_without_commit_persists_nothing` in a child process: writes in a
/// transaction and aborts the process before the commit.
#[test]
fn crash_helper() {
    let Some(path) = std::env::var_os(CRASH_ENV) else {
        return; // a normal test run
    };
    let mut s = Store::open(Path::new(&path)).unwrap();
    s.put_object(&object("Role", "ns", "committed", "{}"))
        .unwrap();
    let _ = s.transaction(|tx| -> Result<(), StoreError> {
        for i in 0..1000 {
            tx.put_object(&object("Role", "ns", &format!("r{i}"), "{}"))?;
        }
        std::process::abort();
    });
}

#[test]
fn crash_without_commit_persists_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_helper", "--nocapture", "--test-threads=1"])
        .env(CRASH_ENV, &path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the helper should have aborted");
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(6), "not SIGABRT: {status:?}");
    }
    let s = Store::open(&path).unwrap();
    let names: Vec<_> = s.objects().unwrap().into_iter().map(|o| o.name).collect();
    assert_eq!(names, ["committed"]);
}

fn change(audit_id: &str, name: &str, actor: Option<&str>, time: &str) -> ChangeRecord {
    ChangeRecord {
        seq: 0,
        audit_id: audit_id.into(),
        kind: "ClusterRole".into(),
        namespace: String::new(),
        name: name.into(),
        verb: "update".into(),
        actor: actor.map(Into::into),
        time: time.into(),
        resource_version: Some("7".into()),
        outcome: "applied".into(),
    }
}

/// The schema of version 1 exactly as it shipped, to build the files an older kubeward
/// left behind.
const V1_DDL: &str = "CREATE TABLE objects (
         kind             TEXT NOT NULL,
         namespace        TEXT NOT NULL,
         name             TEXT NOT NULL,
         json             TEXT NOT NULL,
         audit_id         TEXT NOT NULL,
         time             TEXT NOT NULL,
         resource_version TEXT,
         unknown_since    TEXT,
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
     ) WITHOUT ROWID;";

#[test]
fn version_1_file_is_migrated_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(V1_DDL).unwrap();
        c.execute_batch(
            "INSERT INTO objects VALUES
                 ('ClusterRole', '', 'admin', '{\"rules\":[]}', 'a0', '2024-05-01T12:00:00.000000Z', '5', NULL);
             INSERT INTO alerts (rule_id, audit_id, time, json)
                 VALUES ('pod-write', 'a1', '2024-05-01T12:00:01.000000Z', '{}');
             INSERT INTO positions VALUES ('/var/log/audit.log', 100, 3, '100:0123456789abcdef');",
        )
        .unwrap();
        c.pragma_update(None, "application_id", store::APPLICATION_ID)
            .unwrap();
        c.pragma_update(None, "user_version", 1).unwrap();
    }
    let s = Store::open(&path).unwrap();
    let o = s.get_object("ClusterRole", "", "admin").unwrap().unwrap();
    assert_eq!(o.json, r#"{"rules":[]}"#);
    assert_eq!(o.resource_version.as_deref(), Some("5"));
    let alerts = s.alerts(None, None).unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].audit_id, "a1");
    assert_eq!(
        s.position("/var/log/audit.log").unwrap(),
        Some(Position {
            offset: 100,
            line: 3,
            fingerprint: "100:0123456789abcdef".into()
        })
    );
    // The new table is there and usable.
    assert!(s
        .record_change(
            &change("c1", "admin", Some("alice"), "2024-05-01T12:00:02.000000Z").as_new()
        )
        .unwrap());
    drop(s);
    let c = rusqlite::Connection::open(&path).unwrap();
    let v: u32 = c
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, 3);
    assert_eq!(SCHEMA_VERSION, 3);
    // Migration 3 dropped the per-object index of changes; the actor index stays.
    let indexes: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'changes' AND sql IS NOT NULL ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(indexes, vec!["changes_by_actor".to_string()]);
    // Opening again changes nothing.
    drop(c);
    let s = Store::open(&path).unwrap();
    assert!(s.has_change("c1").unwrap());
    assert_eq!(s.objects().unwrap().len(), 1);
}

#[test]
fn record_change_is_deduplicated_by_audit_id() {
    let s = Store::in_memory().unwrap();
    assert!(!s.has_change("a1").unwrap());
    let first = change("a1", "r", Some("alice"), "2024-05-01T12:00:00.000000Z");
    assert!(s.record_change(&first.as_new()).unwrap());
    assert!(s.has_change("a1").unwrap());
    // Same audit id, different content: refused, the first is kept.
    let mut again = change("a1", "other", Some("bob"), "2024-05-01T13:00:00.000000Z");
    again.outcome = "stale".into();
    assert!(!s.record_change(&again.as_new()).unwrap());
    let got = s
        .latest_change_for("ClusterRole", "", "r")
        .unwrap()
        .unwrap();
    assert_eq!(got.actor.as_deref(), Some("alice"));
    assert_eq!(got.outcome, "applied");
    assert_eq!(
        s.latest_change_for("ClusterRole", "", "other").unwrap(),
        None
    );
    assert!(s
        .changes_by_actor("bob", "0000", "9999")
        .unwrap()
        .is_empty());
}

#[test]
fn changes_by_actor_window_and_order() {
    let s = Store::in_memory().unwrap();
    let t = |n: u32| format!("2024-05-01T12:00:{n:02}.000000Z");
    // Inserted out of time order, as events from several inputs are.
    s.record_change(&change("e3", "r3", Some("alice"), &t(3)).as_new())
        .unwrap();
    s.record_change(&change("e1", "r1", Some("alice"), &t(1)).as_new())
        .unwrap();
    s.record_change(&change("e2b", "r2", Some("alice"), &t(2)).as_new())
        .unwrap();
    s.record_change(&change("e2a", "r2", Some("alice"), &t(2)).as_new())
        .unwrap();
    s.record_change(&change("e5", "r5", Some("alice"), &t(5)).as_new())
        .unwrap();
    s.record_change(&change("b2", "r2", Some("bob"), &t(2)).as_new())
        .unwrap();
    s.record_change(&change("n2", "r2", None, &t(2)).as_new())
        .unwrap();
    let ids = |v: Vec<ChangeRecord>| v.into_iter().map(|c| c.audit_id).collect::<Vec<_>>();
    // Both bounds are inclusive; equal times keep insertion order.
    assert_eq!(
        ids(s.changes_by_actor("alice", &t(1), &t(3)).unwrap()),
        ["e1", "e2b", "e2a", "e3"]
    );
    assert_eq!(
        ids(s.changes_by_actor("alice", &t(2), &t(4)).unwrap()),
        ["e2b", "e2a", "e3"]
    );
    assert!(s
        .changes_by_actor("alice", &t(6), &t(9))
        .unwrap()
        .is_empty());
    assert_eq!(
        ids(s.changes_by_actor("bob", &t(0), &t(9)).unwrap()),
        ["b2"]
    );
    let all = s.changes_by_actor("alice", &t(0), &t(9)).unwrap();
    assert!(all.windows(2).all(|w| w[0].seq != w[1].seq));
    let first = &all[0];
    assert_eq!(first.kind, "ClusterRole");
    assert_eq!(first.namespace, "");
    assert_eq!(first.verb, "update");
    assert_eq!(first.resource_version.as_deref(), Some("7"));

    // The latest change of an object is the last recorded, whatever its time.
    assert_eq!(
        s.latest_change_for("ClusterRole", "", "r2")
            .unwrap()
            .unwrap()
            .audit_id,
        "n2"
    );
}

#[test]
fn transaction_returning_err_leaves_no_change_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let mut s = Store::open(&path).unwrap();
    let e = s
        .transaction(|tx| -> Result<_, StoreError> {
            assert!(tx.record_change(&change("c1", "r", Some("alice"), "t1").as_new())?);
            assert!(tx.has_change("c1")?);
            tx.put_object(&object("Role", "ns", "bad", "not json"))?;
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(e, StoreError::Json(_)), "{e:?}");
    assert!(!s.has_change("c1").unwrap());
    drop(s);
    let s = Store::open(&path).unwrap();
    assert!(!s.has_change("c1").unwrap());
    assert_eq!(s.latest_change_for("ClusterRole", "", "r").unwrap(), None);
}

#[test]
fn tombstones_are_stored_and_listed() {
    let s = Store::in_memory().unwrap();
    s.put_object(&object("Role", "ns", "gone", "null")).unwrap();
    s.put_object(&object("Role", "ns", "live", "{}")).unwrap();
    let all = s.objects().unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[0].is_tombstone());
    assert!(!all[1].is_tombstone());
}

#[test]
fn open_existing_refuses_a_missing_file_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let e = Store::open_existing(&path).unwrap_err();
    assert!(matches!(e, StoreError::Missing { .. }), "{e:?}");
    assert_names_path(&e, &path);
    assert!(e.to_string().contains("no state file here"), "{e}");
    assert!(!path.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    // Nor in a missing directory.
    let deep = dir.path().join("no/such/dir/state.db");
    let e = Store::open_existing(&deep).unwrap_err();
    assert!(matches!(e, StoreError::Missing { .. }), "{e:?}");

    // An empty file is not made into a state file by a read-only command.
    std::fs::write(&path, b"").unwrap();
    let e = Store::open_existing(&path).unwrap_err();
    assert!(matches!(e, StoreError::NotAStateFile { .. }), "{e:?}");
    assert_eq!(std::fs::read(&path).unwrap(), b"");

    // A state file opens, with its data.
    std::fs::remove_file(&path).unwrap();
    Store::open(&path)
        .unwrap()
        .insert_alert("r", "a", None, "{}")
        .unwrap();
    let s = Store::open_existing(&path).unwrap();
    assert_eq!(s.alerts(None, None).unwrap().len(), 1);

    // A file that is not one is refused as by `open`.
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, b"hello\n".repeat(200)).unwrap();
    let e = Store::open_existing(&text).unwrap_err();
    assert!(matches!(e, StoreError::NotAStateFile { .. }), "{e:?}");
}
