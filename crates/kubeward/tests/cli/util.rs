//! Helpers shared by the CLI tests: running the binary, building audit events, writing inputs.

use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// The outcome of one `kubeward` run.
#[derive(Debug)]
pub struct Run {
    /// Exit status (-1 when killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Every stdout line parsed as JSON (the run must have used `--format json`).
    pub fn alerts(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}\n{self:?}"))
            })
            .collect()
    }

    /// Every JSON value on stdout, however it is split into lines.
    pub fn values(&self) -> Vec<Value> {
        serde_json::Deserializer::from_str(&self.stdout)
            .into_iter::<Value>()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("stdout is not a JSON stream ({e}): {self:#?}"))
    }

    /// The only alert; fails unless there is exactly one.
    pub fn alert(&self) -> Value {
        let mut all = self.alerts();
        assert_eq!(all.len(), 1, "expected exactly one alert: {self:#?}");
        all.remove(0)
    }

    /// `source.line` of every alert, in output order.
    pub fn lines(&self) -> Vec<u64> {
        self.alerts()
            .iter()
            .map(|a| a["source"]["line"].as_u64().expect("source.line"))
            .collect()
    }

    /// The summary line (the last stderr line starting with `kubeward: `).
    pub fn summary(&self) -> &str {
        self.stderr
            .lines()
            .rev()
            .find(|l| l.starts_with("kubeward: "))
            .unwrap_or_else(|| panic!("no summary line on stderr: {self:#?}"))
    }

    /// Asserts the run exited with 0 and did not panic.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "exit status: {self:#?}");
        assert!(!self.stderr.contains("panicked"), "panic: {self:#?}");
        self
    }
}

/// Runs `kubeward ARGS` with `stdin` as standard input.
pub fn run(args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubeward"))
        .args(args)
        .env_remove("NO_COLOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kubeward");
    let mut pipe = child.stdin.take().expect("stdin");
    let input = stdin.to_vec();
    // Written from a thread: a large input would otherwise fill the pipe while kubeward's
    // output fills the other one.
    let writer = std::thread::spawn(move || {
        // kubeward may exit before reading everything (an error); that is not the test's error.
        let _ = pipe.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait for kubeward");
    writer.join().expect("stdin writer");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

/// `kubeward detect --format json ARGS -` with `events` as JSON lines on stdin.
pub fn detect(events: &[Value], args: &[&str]) -> Run {
    let mut all = vec!["detect", "--format", "json"];
    all.extend_from_slice(args);
    all.push("-");
    run(&all, jsonl(events).as_bytes())
}

/// The alerts for one event read from stdin (default options).
pub fn alerts_for(ev: Value) -> Vec<Value> {
    detect(&[ev], &[]).ok().alerts()
}

/// Events as JSON lines, each ending with a newline.
pub fn jsonl(events: &[Value]) -> String {
    events.iter().map(|e| format!("{e}\n")).collect()
}

/// A fixture under the workspace's `tests/fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures")).join(rel)
}

/// The (line, verdict) rows of a `*-expected.tsv` fixture (verdict `FIRE` or `NO`).
pub fn expected_verdicts(tsv: &str) -> Vec<(u64, String)> {
    let text = std::fs::read_to_string(fixture(tsv)).unwrap();
    let mut rows = text.lines();
    let header: Vec<&str> = rows.next().unwrap().split('\t').collect();
    assert_eq!(header[0], "line");
    assert_eq!(header[4], "pod_write");
    rows.filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert!(cols.len() >= 5, "short TSV row: {l}");
            assert!(matches!(cols[4], "FIRE" | "NO"), "verdict: {l}");
            (cols[0].parse().expect("line number"), cols[4].to_string())
        })
        .collect()
}

/// Writes `bytes` to `dir/name` and returns the path as a string.
pub fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write test input");
    p.to_str().expect("UTF-8 temp path").to_string()
}

/// The classic pod write rule: create pods in the core group.
pub fn pod_write_rule() -> Value {
    json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]})
}

/// A ClusterRole object with these rules.
pub fn cluster_role(name: &str, rules: Value) -> Value {
    json!({
        "kind": "ClusterRole",
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "metadata": {"name": name},
        "rules": rules,
    })
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh auditID, so that events never collide in de-duplication unless a test wants them to.
pub fn audit_id() -> String {
    format!(
        "00000000-0000-4000-8000-{:012}",
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    )
}

/// A successful `create` of ClusterRole `pod-writer` (rule: create pods) by `alice`, at
/// level RequestResponse but without a responseObject (so rules come from the request),
/// with `overrides` applied as a JSON merge patch (RFC 7386: objects merge, `null` removes a
/// field, anything else replaces).
pub fn event(overrides: Value) -> Value {
    let mut ev = json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse",
        "auditID": audit_id(),
        "stage": "ResponseComplete",
        "requestURI": "/apis/rbac.authorization.k8s.io/v1/clusterroles?fieldManager=kubectl-create",
        "verb": "create",
        "user": {
            "username": "alice@example.com",
            "uid": "uid-alice",
            "groups": ["developers", "system:authenticated"],
        },
        "sourceIPs": ["203.0.113.7", "10.0.0.1"],
        "userAgent": "kubectl/v1.34.1 (linux/amd64) kubernetes/abcdef",
        "objectRef": {
            "resource": "clusterroles",
            "name": "pod-writer",
            "apiGroup": "rbac.authorization.k8s.io",
            "apiVersion": "v1",
        },
        "responseStatus": {"metadata": {}, "code": 201},
        "requestObject": cluster_role("pod-writer", json!([pod_write_rule()])),
        "requestReceivedTimestamp": "2026-01-15T10:00:00.000000Z",
        "stageTimestamp": "2026-01-15T10:00:00.012345Z",
        "annotations": {"authorization.k8s.io/decision": "allow"},
    });
    merge(&mut ev, overrides);
    ev
}

/// The default event with the role's rules replaced.
pub fn event_with_rules(rules: Value) -> Value {
    event(json!({"requestObject": {"rules": rules}}))
}

/// A JSON event that does not concern cluster roles: a pod `get`.
pub fn pod_get() -> Value {
    json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": audit_id(),
        "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/default/pods/web-0",
        "verb": "get",
        "user": {"username": "bob", "groups": ["system:authenticated"]},
        "sourceIPs": ["10.0.0.9"],
        "objectRef": {"resource": "pods", "namespace": "default", "name": "web-0", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "stageTimestamp": "2026-01-15T10:00:01.000000Z",
    })
}

/// RFC 7386 JSON merge patch.
pub fn merge(target: &mut Value, patch: Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(&k);
                } else {
                    merge(t.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other,
    }
}

/// gzip of `bytes` as one member.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}
