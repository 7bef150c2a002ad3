//! `kubeward serve`, black box: the real binary on a loopback port, fed over HTTP and through
//! followed files, checked at its sinks.

use crate::util::{event, gzip, pod_get};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `kubeward serve`.
pub struct Server {
    child: Child,
    /// The bound address.
    pub addr: String,
    /// Its log (standard error).
    pub log: PathBuf,
    /// Its standard output.
    pub out: PathBuf,
}

impl Server {
    /// Starts `kubeward serve --listen 127.0.0.1:0 ARGS` in `dir` and waits until it listens.
    pub fn start(dir: &Path, args: &[&str]) -> Server {
        let ready = dir.join("ready");
        let _ = std::fs::remove_file(&ready);
        let log = dir.join(format!(
            "serve-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let out = log.with_extension("out");
        let mut all = vec!["serve", "--listen", "127.0.0.1:0", "--ready-file"];
        let ready_s = ready.to_str().unwrap().to_string();
        all.push(&ready_s);
        all.extend_from_slice(args);
        let child = Command::new(env!("CARGO_BIN_EXE_kubeward"))
            .args(&all)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn kubeward serve");
        let mut s = Server {
            child,
            addr: String::new(),
            log,
            out,
        };
        let t = Instant::now();
        loop {
            if let Ok(a) = std::fs::read_to_string(&ready) {
                if a.ends_with('\n') {
                    s.addr = a.trim().to_string();
                    return s;
                }
            }
            if let Ok(Some(st)) = s.child.try_wait() {
                panic!("kubeward serve exited with {st}:\n{}", s.log_text());
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "kubeward serve did not start:\n{}",
                s.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
        let r = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(r, 0, "kill");
    }

    /// SIGTERM, then waits for the exit; returns the exit code.
    pub fn stop(mut self) -> i32 {
        self.signal(libc::SIGTERM);
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                let log = self.log_text();
                assert!(!log.contains("panicked"), "panic:\n{log}");
                return st.code().unwrap_or(-1);
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "no exit after SIGTERM:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no drain, no flush.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// POSTs to the webhook path.
    pub fn post(&self, body: &[u8], headers: &[(&str, &str)]) -> (u16, String) {
        http(&self.addr, "POST", "/audit/webhook", headers, body)
    }

    /// GETs a path.
    pub fn get(&self, path: &str) -> (u16, String) {
        http(&self.addr, "GET", path, &[], b"")
    }

    /// The value of one metric line (`name{labels}` exactly), 0 when absent.
    pub fn metric(&self, name: &str) -> f64 {
        let (code, text) = self.get("/metrics");
        assert_eq!(code, 200);
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 exchange over one connection: status and body.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    // The server may answer (413) and close before taking the whole body: write errors are
    // not the test's concern, the answer is.
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body);
    read_response(&mut s)
}

fn read_response(s: &mut dyn Read) -> (u16, String) {
    let mut resp = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => resp.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&resp).to_string();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP response: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// An EventList body.
pub fn event_list(items: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "kind": "EventList",
        "apiVersion": "audit.k8s.io/v1",
        "metadata": {},
        "items": items,
    }))
    .unwrap()
}

/// The alerts in a JSON-lines file (complete lines only: the server may be writing).
pub fn read_alerts(p: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(p).unwrap_or_default();
    let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    whole
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Waits until `f` holds.
#[track_caller]
pub fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Waits for `n` alerts in the file, then a little longer to see that no more come.
#[track_caller]
pub fn alerts_settle(p: &Path, n: usize) -> Vec<Value> {
    wait_until(&format!("{n} alerts in {}", p.display()), 30, || {
        read_alerts(p).len() >= n
    });
    std::thread::sleep(Duration::from_millis(300));
    read_alerts(p)
}

fn ids(alerts: &[Value]) -> Vec<String> {
    alerts
        .iter()
        .map(|a| a["audit_id"].as_str().unwrap().to_string())
        .collect()
}

/// An alerting event for a ClusterRole of its own: with state, every one is news.
fn fresh() -> Value {
    let id = crate::util::audit_id();
    let name = format!("role-{}", &id[24..]);
    event(
        json!({"auditID": id, "objectRef": {"name": name}, "requestObject": {"metadata": {"name": name}}}),
    )
}

fn id_of(ev: &Value) -> String {
    ev["auditID"].as_str().unwrap().to_string()
}

#[test]
fn webhook_accepts_lists_events_gzip_and_refuses_bad_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let alerts = dir.path().join("alerts.jsonl");
    let s = Server::start(
        dir.path(),
        &[
            "--alerts-file",
            alerts.to_str().unwrap(),
            "--max-body-bytes",
            "64K",
        ],
    );
    assert_eq!(s.get("/healthz").0, 200);
    assert_eq!(s.get("/readyz").0, 200);
    let (a, b, c, d, e) = (
        event(json!({})),
        event(json!({})),
        event(json!({})),
        event(json!({})),
        event(json!({})),
    );
    let first = event_list(&[a.clone(), pod_get(), b.clone()]);
    assert_eq!(s.post(&first, &[]).0, 200);
    // A retried batch: accepted again, alerts once.
    assert_eq!(s.post(&first, &[]).0, 200);
    let gz = gzip(&event_list(std::slice::from_ref(&c)));
    assert_eq!(s.post(&gz, &[("Content-Encoding", "gzip")]).0, 200);
    // One Event on its own, pretty-printed.
    let single = serde_json::to_vec_pretty(&d).unwrap();
    assert_eq!(s.post(&single, &[]).0, 200);
    // A list with a malformed item: the rest is processed, the item counted.
    let mut with_bad = event_list(std::slice::from_ref(&e));
    let at = with_bad.iter().rposition(|&b| b == b']').unwrap();
    with_bad.splice(at..at, b",42".iter().copied());
    assert_eq!(s.post(&with_bad, &[]).0, 200);

    // Over the limit: as sent, and after decompression.
    let big = event_list(&vec![pod_get(); 200]);
    assert!(big.len() > 64 << 10);
    assert_eq!(s.post(&big, &[]).0, 413);
    let bomb = gzip(&big);
    assert!(bomb.len() < 64 << 10);
    assert_eq!(s.post(&bomb, &[("Content-Encoding", "gzip")]).0, 413);
    // Not JSON, not an Event: 400 with the reason.
    let (code, why) = s.post(b"hello", &[]);
    assert_eq!((code, why.contains("not JSON")), (400, true), "{why}");
    let (code, why) = s.post(br#"{"kind":"Pod","apiVersion":"v1"}"#, &[]);
    assert_eq!((code, why.contains("apiVersion")), (400, true), "{why}");
    let (code, why) = s.post(br#"{"kind":"Status","apiVersion":"audit.k8s.io/v1"}"#, &[]);
    assert_eq!(
        (code, why.contains("kind is \"Status\"")),
        (400, true),
        "{why}"
    );
    let (code, why) = s.post(b"not gzip", &[("Content-Encoding", "gzip")]);
    assert_eq!(code, 400, "{why}");
    let (code, why) = s.post(&first, &[("Content-Encoding", "br")]);
    assert_eq!(code, 415, "{why}");
    assert_eq!(http(&s.addr, "POST", "/elsewhere", &[], b"{}").0, 404);

    let got = alerts_settle(&alerts, 5);
    let want: BTreeSet<String> = [&a, &b, &c, &d, &e].iter().map(|v| id_of(v)).collect();
    assert_eq!(ids(&got).into_iter().collect::<BTreeSet<_>>(), want);
    assert_eq!(got.len(), 5, "each alert once: {got:#?}");
    assert!(got.iter().all(|a| a["rule_id"] == "clusterrole-pod-write"));

    assert_eq!(s.metric("kubeward_events_received_total"), 10.0);
    assert_eq!(s.metric("kubeward_events_malformed_total"), 1.0);
    assert_eq!(
        s.metric("kubeward_alerts_total{rule=\"clusterrole-pod-write\"}"),
        5.0
    );
    assert_eq!(
        s.metric("kubeward_webhook_requests_refused_total{reason=\"too_large\"}"),
        2.0
    );
    assert_eq!(
        s.metric("kubeward_webhook_requests_refused_total{reason=\"bad_request\"}"),
        3.0
    );
    assert_eq!(s.metric("kubeward_queue_depth"), 0.0);
    assert!(s.metric("kubeward_processing_seconds_count") >= 5.0);
    let log = s.log_text();
    assert!(log.contains("over the limit of 65536 bytes"), "{log}");
    assert_eq!(s.stop(), 0);
}

#[test]
fn a_full_queue_refuses_with_429_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let alerts = dir.path().join("alerts.jsonl");
    // A tiny queue and a slow (durable, stateful) processor: concurrent batches overflow it.
    let s = Server::start(
        dir.path(),
        &[
            "--alerts-file",
            alerts.to_str().unwrap(),
            "--queue-events",
            "40",
            "--state",
            dir.path().join("kw.db").to_str().unwrap(),
        ],
    );
    let addr = s.addr.clone();
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(Mutex::new(0));
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let addr = addr.clone();
            let accepted = accepted.clone();
            let refused = refused.clone();
            std::thread::spawn(move || {
                for _ in 0..15 {
                    // 30 events, 2 of them alerting.
                    let mut items: Vec<Value> = (0..28).map(|_| pod_get()).collect();
                    let (x, y) = (fresh(), fresh());
                    items.push(x.clone());
                    items.push(y.clone());
                    let (code, _) = http(&addr, "POST", "/audit/webhook", &[], &event_list(&items));
                    match code {
                        200 => accepted.lock().unwrap().extend([id_of(&x), id_of(&y)]),
                        429 => *refused.lock().unwrap() += 1,
                        other => panic!("unexpected status {other}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let want: BTreeSet<String> = accepted.lock().unwrap().iter().cloned().collect();
    let refused = *refused.lock().unwrap();
    assert_eq!(want.len() / 2 + refused, 90);
    let got = alerts_settle(&alerts, want.len());
    assert_eq!(got.len(), want.len());
    assert_eq!(ids(&got).into_iter().collect::<BTreeSet<_>>(), want);
    assert!(
        refused > 0,
        "the queue never filled: the test proves nothing"
    );
    assert_eq!(
        s.metric("kubeward_events_dropped_total"),
        (refused * 30) as f64
    );
    assert_eq!(s.stop(), 0);
}

#[test]
fn with_state_a_restart_alerts_once() {
    let dir = tempfile::tempdir().unwrap();
    let alerts = dir.path().join("alerts.jsonl");
    let db = dir.path().join("kw.db");
    let args = [
        "--alerts-file",
        alerts.to_str().unwrap(),
        "--state",
        db.to_str().unwrap(),
    ];
    let (a, b, c) = (
        event(json!({})),
        event(
            json!({"objectRef": {"name": "other"}, "requestObject": {"metadata": {"name": "other"}}}),
        ),
        event(
            json!({"objectRef": {"name": "third"}, "requestObject": {"metadata": {"name": "third"}}}),
        ),
    );
    let batch = event_list(&[a.clone(), b.clone()]);
    let s = Server::start(dir.path(), &args);
    assert_eq!(s.post(&batch, &[]).0, 200);
    alerts_settle(&alerts, 2);
    s.kill();
    // The API server retries the batch (it never saw our answer), and sends a new one.
    let s = Server::start(dir.path(), &args);
    assert_eq!(s.post(&batch, &[]).0, 200);
    assert_eq!(s.post(&event_list(std::slice::from_ref(&c)), &[]).0, 200);
    let got = alerts_settle(&alerts, 3);
    assert_eq!(ids(&got), [id_of(&a), id_of(&b), id_of(&c)]);
    assert_eq!(s.stop(), 0);
    // The alerts are in the state file too.
    let run = crate::util::run(
        &[
            "alerts",
            "--state",
            db.to_str().unwrap(),
            "--format",
            "json",
        ],
        b"",
    )
    .ok();
    assert_eq!(run.alerts().len(), 3);
}

/// Appends lines to a file (and flushes).
fn append(p: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn line(ev: &Value) -> String {
    format!("{ev}\n")
}

#[test]
fn follows_a_file_through_rotation_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let alerts = dir.path().join("alerts.jsonl");
    let log = dir.path().join("audit.log");
    let old = event(json!({}));
    std::fs::write(&log, line(&old)).unwrap();
    let s = Server::start(
        dir.path(),
        &[
            "--alerts-file",
            alerts.to_str().unwrap(),
            "--follow",
            &format!("{}/*.log", dir.path().display()),
            "--follow-interval",
            "50ms",
        ],
    );
    wait_until("the follower to start", 10, || {
        s.log_text().contains("following from its end")
    });
    let evs: Vec<Value> = (0..7).map(|_| event(json!({}))).collect();
    // Appends, one of them in two writes.
    append(&log, &line(&evs[0]));
    let l1 = line(&evs[1]);
    append(&log, &l1[..100]);
    std::thread::sleep(Duration::from_millis(200));
    append(&log, &l1[100..]);
    alerts_settle(&alerts, 2);
    // Rotation by rename: a line still written to the old file right after, then a new file.
    let rotated = dir.path().join("audit-2026-01-15T10-00-00.000.log");
    std::fs::rename(&log, &rotated).unwrap();
    append(&rotated, &line(&evs[2]));
    std::thread::sleep(Duration::from_millis(30));
    append(&log, &(line(&evs[3]) + &line(&evs[4])));
    alerts_settle(&alerts, 5);
    // Truncation (copytruncate): the file starts over, shorter than it was.
    std::fs::write(&log, line(&evs[5])).unwrap();
    alerts_settle(&alerts, 6);
    append(&log, &line(&evs[6]));
    let got = alerts_settle(&alerts, 7);
    assert_eq!(ids(&got), evs.iter().map(id_of).collect::<Vec<_>>());
    assert!(s.metric("kubeward_follow_rotations_total") >= 2.0);
    assert_eq!(s.stop(), 0);
}

#[test]
fn follow_with_state_continues_after_a_restart_and_catches_up_gzip_backups() {
    let dir = tempfile::tempdir().unwrap();
    let alerts = dir.path().join("alerts.jsonl");
    let log = dir.path().join("audit.log");
    let db = dir.path().join("kw.db");
    std::fs::write(&log, line(&pod_get())).unwrap();
    let args = [
        "--alerts-file",
        alerts.to_str().unwrap(),
        "--state",
        db.to_str().unwrap(),
        "--follow",
        log.to_str().unwrap(),
        "--follow-interval",
        "50ms",
    ];
    let s = Server::start(dir.path(), &args);
    wait_until("the follower to start", 10, || {
        s.log_text().contains("following from its end")
    });
    let evs: Vec<Value> = (0..5)
        .map(|i| {
            let n = format!("role-{i}");
            event(json!({"objectRef": {"name": n}, "requestObject": {"metadata": {"name": n}}}))
        })
        .collect();
    append(&log, &line(&evs[0]));
    alerts_settle(&alerts, 1);
    assert_eq!(s.stop(), 0);
    // While stopped: one more line, then rotation with gzip, then a new file.
    append(&log, &line(&evs[1]));
    let content = std::fs::read(&log).unwrap();
    std::fs::write(
        dir.path().join("audit-2026-01-15T10-00-00.000.log.gz"),
        gzip(&content),
    )
    .unwrap();
    std::fs::remove_file(&log).unwrap();
    std::fs::write(&log, line(&evs[2])).unwrap();
    let s = Server::start(dir.path(), &args);
    let got = alerts_settle(&alerts, 3);
    assert_eq!(ids(&got), evs[..3].iter().map(id_of).collect::<Vec<_>>());
    // And it goes on following the new file.
    append(&log, &line(&evs[3]));
    let got = alerts_settle(&alerts, 4);
    assert_eq!(ids(&got[3..]), [id_of(&evs[3])]);
    s.kill();
    // Killed: the position saved with the last batch still holds.
    append(&log, &line(&evs[4]));
    let s = Server::start(dir.path(), &args);
    let got = alerts_settle(&alerts, 5);
    assert_eq!(ids(&got), evs.iter().map(id_of).collect::<Vec<_>>());
    assert_eq!(s.stop(), 0);
}

/// A local HTTP receiver that records every POST (path, body) and answers 200.
struct Receiver {
    got: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Receiver {
    fn start(listener: TcpListener) -> Receiver {
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let g = g.clone();
                std::thread::spawn(move || serve_conn(conn, g));
            }
        });
        Receiver { got }
    }

    fn by_path(&self, path: &str) -> Vec<Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

fn serve_conn(conn: TcpStream, got: Arc<Mutex<Vec<(String, Value)>>>) {
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut w = conn;
    loop {
        let mut start = String::new();
        if r.read_line(&mut start).unwrap_or(0) == 0 {
            return;
        }
        let path = start.split(' ').nth(1).unwrap_or("").to_string();
        let mut len = 0;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        got.lock()
            .unwrap()
            .push((path, serde_json::from_slice(&body).unwrap()));
        let _ = w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
    }
}

#[test]
fn http_sinks_deliver_after_the_receiver_comes_back_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let alerts = dir.path().join("alerts.jsonl");
    let db = dir.path().join("kw.db");
    // A port with nobody listening: the receiver is down.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let (json_url, slack_url, falco_url) = (
        format!("{base}/alerts"),
        format!("{base}/slack"),
        format!("{base}/falco"),
    );
    let args = [
        "--alerts-file",
        alerts.to_str().unwrap(),
        "--state",
        db.to_str().unwrap(),
        "--http-sink",
        &json_url,
        "--slack-webhook",
        &slack_url,
        "--falco-sink",
        &falco_url,
        "--sink-max-backoff",
        "200ms",
        "--cluster",
        "prod",
    ];
    let a = event(json!({}));
    let b = event(
        json!({"objectRef": {"name": "other"}, "requestObject": {"metadata": {"name": "other"}}}),
    );
    let s = Server::start(dir.path(), &args);
    assert_eq!(s.post(&event_list(std::slice::from_ref(&a)), &[]).0, 200);
    alerts_settle(&alerts, 1);
    wait_until("failed deliveries", 20, || {
        s.metric("kubeward_sink_failures_total{sink=\"http 0\"}") >= 2.0
    });
    assert_eq!(s.metric("kubeward_outbox_depth"), 3.0);
    // Killed while the receiver is down: the alert waits in the spool.
    s.kill();
    let s = Server::start(dir.path(), &args);
    assert_eq!(s.post(&event_list(std::slice::from_ref(&b)), &[]).0, 200);
    alerts_settle(&alerts, 2);
    let rx = Receiver::start(TcpListener::bind(("127.0.0.1", port)).unwrap());
    wait_until("deliveries to every sink", 30, || {
        rx.got.lock().unwrap().len() >= 6
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rx.got.lock().unwrap().len(), 6);

    let plain = rx.by_path("/alerts");
    assert_eq!(ids(&plain), [id_of(&a), id_of(&b)]);
    assert_eq!(plain[0]["rule_id"], "clusterrole-pod-write");

    let falco = rx.by_path("/falco");
    assert_eq!(falco.len(), 2);
    let f = &falco[0];
    assert_eq!(f["source"], "k8s_audit");
    assert_eq!(f["priority"], "Error");
    assert_eq!(f["rule"], plain[0]["title"]);
    assert_eq!(f["time"], "2026-01-15T10:00:00.012345Z");
    assert_eq!(f["output_fields"]["ka.user.name"], "alice@example.com");
    assert_eq!(f["output_fields"]["ka.target.name"], "pod-writer");
    assert_eq!(f["output_fields"]["ka.auditid"], id_of(&a).as_str());
    assert!(f["output"]
        .as_str()
        .unwrap()
        .contains("user=alice@example.com"));

    let slack = rx.by_path("/slack");
    assert_eq!(slack.len(), 2);
    let text = slack[0]["text"].as_str().unwrap();
    assert!(text.contains("[HIGH]"), "{text}");
    assert!(text.contains("alice@example.com"), "{text}");
    assert!(text.contains("ClusterRole pod-writer"), "{text}");
    assert!(text.contains("in cluster prod"), "{text}");
    assert!(!text.contains("http"), "link-free: {text}");
    wait_until("an empty outbox", 10, || {
        s.metric("kubeward_outbox_depth") == 0.0
    });
    assert_eq!(s.stop(), 0);
}

#[test]
fn config_file_and_sighup_reload_of_suppressions() {
    let dir = tempfile::tempdir().unwrap();
    let alerts = dir.path().join("alerts.jsonl");
    let cfg = dir.path().join("kubeward.yaml");
    std::fs::write(
        &cfg,
        format!(
            "serve:\n  alerts_file: {}\n  webhook_path: /k8s-audit\n  log_format: json\n",
            alerts.display()
        ),
    )
    .unwrap();
    let s = Server::start(dir.path(), &["--config", cfg.to_str().unwrap()]);
    let post = |ev: &Value| {
        http(
            &s.addr,
            "POST",
            "/k8s-audit",
            &[],
            &event_list(std::slice::from_ref(ev)),
        )
        .0
    };
    let a = event(json!({}));
    assert_eq!(post(&a), 200);
    alerts_settle(&alerts, 1);
    std::fs::write(
        &cfg,
        format!(
            "serve:\n  alerts_file: {}\n  webhook_path: /k8s-audit\n  log_format: json\nsuppressions:\n  - name: alice is trusted\n    user: alice@*\n",
            alerts.display()
        ),
    )
    .unwrap();
    s.signal(libc::SIGHUP);
    wait_until("the reload", 10, || {
        s.log_text().contains("suppressions reloaded")
    });
    assert_eq!(post(&event(json!({}))), 200);
    let other = event(json!({"user": {"username": "mallory"}}));
    assert_eq!(post(&other), 200);
    let got = alerts_settle(&alerts, 2);
    assert_eq!(ids(&got), [id_of(&a), id_of(&other)]);
    assert_eq!(
        s.metric("kubeward_alerts_suppressed_total{rule=\"clusterrole-pod-write\"}"),
        1.0
    );
    // Every log line is JSON.
    for l in s.log_text().lines() {
        serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
    assert_eq!(s.stop(), 0);
}

#[test]
fn stdout_sink_and_the_drain_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--stdout"]);
    let evs: Vec<Value> = (0..3).map(|_| event(json!({}))).collect();
    for ev in &evs {
        assert_eq!(s.post(&event_list(std::slice::from_ref(ev)), &[]).0, 200);
    }
    let out = s.out.clone();
    // SIGTERM right after the last acknowledgement: everything accepted is processed and
    // flushed before the exit.
    assert_eq!(s.stop(), 0);
    let got = read_alerts(&out);
    assert_eq!(ids(&got), evs.iter().map(id_of).collect::<Vec<_>>());
}

#[test]
fn bearer_token_is_required_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let tok = dir.path().join("token");
    std::fs::write(&tok, "s3cret\n").unwrap();
    let s = Server::start(dir.path(), &["--bearer-token-file", tok.to_str().unwrap()]);
    let body = event_list(&[pod_get()]);
    assert_eq!(s.post(&body, &[]).0, 401);
    assert_eq!(s.post(&body, &[("Authorization", "Bearer nope")]).0, 401);
    assert_eq!(s.post(&body, &[("Authorization", "Bearer s3cret")]).0, 200);
    assert_eq!(s.stop(), 0);
}

#[test]
fn a_batch_acknowledged_before_a_sigkill_is_processed_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let alerts = dir.path().join("alerts.jsonl");
    let db = dir.path().join("kw.db");
    let args = [
        "--alerts-file",
        alerts.to_str().unwrap(),
        "--state",
        db.to_str().unwrap(),
    ];
    // Large enough that its processing (every item an RBAC change stored in the state) is
    // still going on when the process is killed right after the acknowledgement.
    let evs: Vec<Value> = (0..1500).map(|_| fresh()).collect();
    let s = Server::start(dir.path(), &args);
    assert_eq!(s.post(&event_list(&evs), &[]).0, 200);
    s.kill();
    // Lines written whole before the kill (one may be cut off by it: the restart removes it).
    let first_run = std::fs::read_to_string(&alerts)
        .unwrap_or_default()
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).is_ok())
        .count();
    eprintln!(
        "alerts written before the SIGKILL: {first_run} of {}",
        evs.len()
    );
    let s = Server::start(dir.path(), &args);
    let got = alerts_settle(&alerts, evs.len());
    let want: BTreeSet<String> = evs.iter().map(id_of).collect();
    assert_eq!(got.len(), evs.len(), "each alert exactly once");
    assert_eq!(ids(&got).into_iter().collect::<BTreeSet<_>>(), want);
    if first_run == 0 {
        assert!(
            s.log_text()
                .contains("acknowledged by an earlier run are processed first"),
            "{}",
            s.log_text()
        );
    }
    assert_eq!(s.stop(), 0);
}

#[test]
fn alerts_stored_but_not_delivered_before_a_crash_are_delivered_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let alerts = dir.path().join("alerts.jsonl");
    let db = dir.path().join("kw.db");
    let args = [
        "--alerts-file",
        alerts.to_str().unwrap(),
        "--state",
        db.to_str().unwrap(),
    ];
    let (a, b) = (fresh(), fresh());
    let s = Server::start(dir.path(), &args);
    assert_eq!(s.post(&event_list(std::slice::from_ref(&a)), &[]).0, 200);
    alerts_settle(&alerts, 1);
    assert_eq!(s.stop(), 0);
    // As if the process had died after the state's commit and before the sinks' write: the
    // file never got the alert, and the spool's mark is from before it.
    std::fs::write(&alerts, "").unwrap();
    let spool = rusqlite::Connection::open(dir.path().join("kw.db.spool")).unwrap();
    assert_eq!(
        spool
            .execute("UPDATE delivered SET seq = 0 WHERE id = 1", [])
            .unwrap(),
        1
    );
    drop(spool);
    let s = Server::start(dir.path(), &args);
    let got = alerts_settle(&alerts, 1);
    assert_eq!(ids(&got), [id_of(&a)]);
    assert!(
        s.log_text().contains("had not reached the sinks"),
        "{}",
        s.log_text()
    );
    assert_eq!(s.post(&event_list(std::slice::from_ref(&b)), &[]).0, 200);
    alerts_settle(&alerts, 2);
    assert_eq!(s.stop(), 0);
    // Nothing is delivered twice after a clean stop.
    let s = Server::start(dir.path(), &args);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ids(&read_alerts(&alerts)), [id_of(&a), id_of(&b)]);
    assert_eq!(s.stop(), 0);
}

#[test]
fn files_that_appear_under_a_glob_are_read_from_their_start() {
    let dir = tempfile::tempdir().unwrap();
    let alerts = dir.path().join("alerts.jsonl");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let s = Server::start(
        dir.path(),
        &[
            "--alerts-file",
            alerts.to_str().unwrap(),
            "--follow",
            &format!("{}/*", logs.display()),
            "--follow-interval",
            "20ms",
        ],
    );
    wait_until("the first scan", 10, || {
        s.log_text().contains("files followed")
    });
    let (a, b) = (event(json!({})), event(json!({})));
    // A compressed file is never followed, even when the glob matches it.
    std::fs::write(logs.join("old.log.gz"), gzip(line(&b).as_bytes())).unwrap();
    std::fs::write(logs.join("kube-apiserver-2.log"), line(&a)).unwrap();
    let got = alerts_settle(&alerts, 1);
    assert_eq!(ids(&got), [id_of(&a)]);
    assert_eq!(s.metric("kubeward_events_malformed_total"), 0.0);
    assert_eq!(s.stop(), 0);
}

#[test]
fn without_a_spool_http_sinks_deliver_from_memory_before_the_exit() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let rx = Receiver::start(listener);
    let s = Server::start(dir.path(), &["--http-sink", &url]);
    let evs: Vec<Value> = (0..3).map(|_| event(json!({}))).collect();
    assert_eq!(s.post(&event_list(&evs), &[]).0, 200);
    // SIGTERM at once: the drain processes the batch and waits for the sink.
    assert_eq!(s.stop(), 0);
    assert_eq!(
        ids(&rx.by_path("/hook")),
        evs.iter().map(id_of).collect::<Vec<_>>()
    );
}
