//! The fake API server and recorded responses shared by the integration tests.
#![allow(dead_code)]

use cluster::LiveOptions;
use rbac::{RoleKind, Snapshot};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const BASE: &str = "/apis/rbac.authorization.k8s.io/v1";

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub target: String,
    pub authorization: Option<String>,
}

/// What a route answers: status and body.
pub type Handler = dyn Fn(&str, Option<&str>) -> (u16, String) + Send + Sync;

/// A tiny HTTP/1.1 server on 127.0.0.1: one request per connection, `Connection: close`.
/// It stops when dropped, or by itself after 60 seconds.
pub struct FakeServer {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    pub fn start(handler: Arc<Handler>) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => serve(stream, &*handler, &seen2),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Err(_) => break,
                }
            }
        });
        FakeServer {
            port,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(stream: TcpStream, handler: &Handler, seen: &Mutex<Vec<Seen>>) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let target = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_string();
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("authorization") {
                authorization = Some(v.trim().to_string());
            }
        }
    }
    seen.lock().unwrap().push(Seen {
        target: target.clone(),
        authorization: authorization.clone(),
    });
    let (status, body) = handler(&target, authorization.as_deref());
    let reason = match status {
        200 => "OK",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Error",
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

pub fn list(kind: &str, cont: Option<&str>, items: Value) -> String {
    let mut meta = json!({"resourceVersion": "1"});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
        meta["remainingItemCount"] = json!(1);
    }
    json!({"kind": kind, "apiVersion": "rbac.authorization.k8s.io/v1", "metadata": meta, "items": items}).to_string()
}

pub fn not_found(target: &str) -> (u16, String) {
    let status = json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
        "message": format!("the server could not find the requested resource ({target})"),
        "reason":"NotFound","code":404});
    (404, status.to_string())
}

/// The main cluster: ClusterRoles in two pages (`tok1`), one ClusterRoleBinding, Roles in two
/// pages under a token that needs percent-encoding, one RoleBinding. Bob's token gets a 403
/// on ClusterRoles, as RBAC would answer him.
pub fn cluster_a(target: &str, auth: Option<&str>) -> (u16, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    let cont = params.iter().find_map(|p| p.strip_prefix("continue="));
    if auth == Some("Bearer token-bob") && path == format!("{BASE}/clusterroles") {
        let status = json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
            "message":"clusterroles.rbac.authorization.k8s.io is forbidden: User \"bob\" cannot list resource \"clusterroles\" in API group \"rbac.authorization.k8s.io\" at the cluster scope",
            "reason":"Forbidden","details":{"group":"rbac.authorization.k8s.io","kind":"clusterroles"},"code":403});
        return (403, status.to_string());
    }
    let body = match (path.strip_prefix(BASE), cont) {
        (Some("/clusterroles"), None) => list(
            "ClusterRoleList",
            Some("tok1"),
            json!([{
                "metadata": {"name": "pod-writer", "uid": "u1", "resourceVersion": "11",
                              "creationTimestamp": "2025-01-01T00:00:00Z",
                              "labels": {"team": "platform"}},
                "rules": [{"apiGroups": [""], "resources": ["pods", "pods/exec"], "verbs": ["create", "delete"]}]
            }]),
        ),
        (Some("/clusterroles"), Some("tok1")) => list(
            "ClusterRoleList",
            None,
            json!([{
                "metadata": {"name": "aggregate-view", "uid": "u2", "resourceVersion": "12"},
                "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"example.com/aggregate-to-view": "true"}}]},
                "rules": null
            }]),
        ),
        (Some("/clusterrolebindings"), None) => list(
            "ClusterRoleBindingList",
            None,
            json!([{
                "metadata": {"name": "deployers", "uid": "u3", "resourceVersion": "13"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "pod-writer"},
                "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": "ci"}]
            }]),
        ),
        (Some("/roles"), None) => list(
            "RoleList",
            Some("r/2+="),
            json!([{
                "metadata": {"name": "secret-reader", "namespace": "team-a", "uid": "u4", "resourceVersion": "14"},
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]
            }]),
        ),
        (Some("/roles"), Some("r%2F2%2B%3D")) => list(
            "RoleList",
            None,
            json!([{
                "metadata": {"name": "pod-exec", "namespace": "kube-system", "uid": "u5", "resourceVersion": "15"},
                "rules": [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"], "resourceNames": ["debug"]}]
            }]),
        ),
        (Some("/rolebindings"), None) => list(
            "RoleBindingList",
            None,
            json!([{
                "metadata": {"name": "readers", "namespace": "team-a", "uid": "u6", "resourceVersion": "16"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "secret-reader"},
                "subjects": [
                    {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "team-a-devs"},
                    {"kind": "ServiceAccount", "name": "builder"}
                ]
            }]),
        ),
        _ => return not_found(target),
    };
    (200, body)
}

/// A second cluster with a single ClusterRole and empty lists otherwise.
pub fn cluster_b(target: &str, _auth: Option<&str>) -> (u16, String) {
    let path = target.split('?').next().unwrap_or("");
    let body = match path.strip_prefix(BASE) {
        Some("/clusterroles") => list(
            "ClusterRoleList",
            None,
            json!([{"metadata": {"name": "only-on-b"}, "rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]}]),
        ),
        Some("/clusterrolebindings") => list("ClusterRoleBindingList", None, json!([])),
        Some("/roles") => list("RoleList", None, Value::Null),
        Some("/rolebindings") => list("RoleBindingList", None, json!([])),
        _ => return not_found(target),
    };
    (200, body)
}

/// A kubeconfig with contexts alpha (alice on A, current), beta (bob on A) and gamma
/// (alice on B).
pub fn write_kubeconfig(dir: &Path, a: &str, b: &str) -> PathBuf {
    let text = format!(
        "apiVersion: v1
kind: Config
current-context: alpha
clusters:
- name: cluster-a
  cluster:
    server: {a}
- name: cluster-b
  cluster:
    server: {b}
users:
- name: alice
  user:
    token: token-alice
- name: bob
  user:
    token: token-bob
contexts:
- name: alpha
  context: {{cluster: cluster-a, user: alice}}
- name: beta
  context: {{cluster: cluster-a, user: bob}}
- name: gamma
  context: {{cluster: cluster-b, user: alice, namespace: other}}
"
    );
    let path = dir.join("kubeconfig");
    std::fs::write(&path, text).unwrap();
    path
}

pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub a: FakeServer,
    pub b: FakeServer,
}

pub fn fixture() -> Fixture {
    let a = FakeServer::start(Arc::new(cluster_a));
    let b = FakeServer::start(Arc::new(cluster_b));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = write_kubeconfig(dir.path(), &a.url(), &b.url());
    Fixture {
        _dir: dir,
        kubeconfig,
        a,
        b,
    }
}

pub fn opts(f: &Fixture, context: Option<&str>, page_size: u32) -> LiveOptions {
    LiveOptions {
        kubeconfig: Some(f.kubeconfig.clone()),
        context: context.map(str::to_string),
        page_size,
    }
}

pub fn role_names(s: &Snapshot) -> Vec<(RoleKind, Option<&str>, &str)> {
    s.roles
        .iter()
        .map(|r| (r.kind, r.namespace.as_deref(), r.name.as_str()))
        .collect()
}
