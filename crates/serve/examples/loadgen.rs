//! Load generator for `kubeward serve`: POSTs EventList batches over keep-alive HTTP/1.1
//! connections (loopback only), one request in flight per connection, and reports the
//! acknowledgement latency (p50/p99), events/s acknowledged, and how many requests were
//! refused (429/503).
//!
//! ```sh
//! cargo run --release -p kubeward-serve --example loadgen -- \
//!     --addr 127.0.0.1:8765 --connections 8 --seconds 20 --batch 400
//! ```
//!
//! Batches are realistic audit events (reads, pod writes, and one ClusterRole create in every
//! batch), each with a unique auditID, so that nothing is de-duplicated away.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Opts {
    addr: String,
    path: String,
    connections: usize,
    seconds: u64,
    batch: usize,
}

fn parse() -> Opts {
    let mut o = Opts {
        addr: "127.0.0.1:8765".into(),
        path: "/audit/webhook".into(),
        connections: 8,
        seconds: 20,
        batch: 400,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i + 1 < args.len() {
        let v = args[i + 1].clone();
        match args[i].as_str() {
            "--addr" => o.addr = v,
            "--path" => o.path = v,
            "--connections" => o.connections = v.parse().expect("--connections N"),
            "--seconds" => o.seconds = v.parse().expect("--seconds N"),
            "--batch" => o.batch = v.parse().expect("--batch N"),
            other => panic!("unknown option {other}"),
        }
        i += 2;
    }
    o
}

/// One audit event as the API server logs it; `kind` picks its shape.
fn event(id: u64, kind: u64) -> String {
    let ts = "2026-01-15T10:00:00.012345Z";
    match kind % 4 {
        0 => format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"load-{id}","stage":"ResponseComplete","requestURI":"/apis/rbac.authorization.k8s.io/v1/clusterroles","verb":"create","user":{{"username":"load@example.com","groups":["system:authenticated"]}},"sourceIPs":["10.0.0.1"],"userAgent":"kubectl/v1.34.1","objectRef":{{"resource":"clusterroles","name":"load-{id}","apiGroup":"rbac.authorization.k8s.io","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":201}},"requestObject":{{"kind":"ClusterRole","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{{"name":"load-{id}"}},"rules":[{{"apiGroups":[""],"resources":["pods"],"verbs":["create"]}}]}},"requestReceivedTimestamp":"{ts}","stageTimestamp":"{ts}","annotations":{{"authorization.k8s.io/decision":"allow"}}}}"#
        ),
        1 => format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"load-{id}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods","verb":"create","user":{{"username":"system:serviceaccount:kube-system:replicaset-controller","groups":["system:serviceaccounts","system:authenticated"]}},"sourceIPs":["10.0.0.2"],"userAgent":"kube-controller-manager/v1.34.1","objectRef":{{"resource":"pods","namespace":"default","name":"web-{id}","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":201}},"requestObject":{{"kind":"Pod","apiVersion":"v1","metadata":{{"name":"web-{id}","namespace":"default","labels":{{"app":"web"}}}},"spec":{{"containers":[{{"name":"web","image":"nginx:1.27","ports":[{{"containerPort":80}}]}}]}}}},"requestReceivedTimestamp":"{ts}","stageTimestamp":"{ts}","annotations":{{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by ClusterRoleBinding \"system:controller:replicaset-controller\""}}}}"#
        ),
        _ => format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"load-{id}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/kube-system/configmaps?limit=500&resourceVersion=0","verb":"list","user":{{"username":"system:kube-scheduler","groups":["system:authenticated"]}},"sourceIPs":["10.0.0.3"],"userAgent":"kube-scheduler/v1.34.1 (linux/amd64) kubernetes/abcdef/leader-election","objectRef":{{"resource":"configmaps","namespace":"kube-system","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":200}},"requestReceivedTimestamp":"{ts}","stageTimestamp":"{ts}","annotations":{{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by ClusterRoleBinding \"system:kube-scheduler\" of ClusterRole \"system:kube-scheduler\" to User \"system:kube-scheduler\""}}}}"#
        ),
    }
}

/// A batch: one ClusterRole create (it alerts), the rest pod writes and reads.
fn batch(first_id: u64, n: usize) -> Vec<u8> {
    let mut items = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let kind = if i == 0 { 0 } else { 1 + i % 3 };
        items.push(event(first_id + i, kind));
    }
    format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{}]}}"#,
        items.join(",")
    )
    .into_bytes()
}

/// Sends one request and reads the response; returns the status.
fn exchange(r: &mut BufReader<TcpStream>, head: &[u8], body: &[u8]) -> std::io::Result<u16> {
    let w = r.get_mut();
    w.write_all(head)?;
    w.write_all(body)?;
    let mut line = String::new();
    r.read_line(&mut line)?;
    let code: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Err(std::io::Error::other("connection closed"));
        }
        if h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut sink = vec![0; len];
    r.read_exact(&mut sink)?;
    Ok(code)
}

fn main() {
    let o = parse();
    let next_id = Arc::new(AtomicU64::new(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));
    let lat = Arc::new(Mutex::new(Vec::<u32>::new()));
    let started = Instant::now();
    let threads: Vec<_> = (0..o.connections)
        .map(|_| {
            let (addr, path, n) = (o.addr.clone(), o.path.clone(), o.batch);
            let (next_id, stop, ok, refused, other, lat) = (
                next_id.clone(),
                stop.clone(),
                ok.clone(),
                refused.clone(),
                other.clone(),
                lat.clone(),
            );
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                // Bodies are built ahead (8 per connection, fresh auditIDs each time round is
                // not needed for the receiver's speed, but keeps de-duplication out of it:
                // ids are renewed every pass).
                let mut conn: Option<BufReader<TcpStream>> = None;
                while !stop.load(Ordering::Relaxed) {
                    let id = next_id.fetch_add(n as u64, Ordering::Relaxed);
                    let body = batch(id, n);
                    let head = format!(
                        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    let c = match &mut conn {
                        Some(c) => c,
                        None => match TcpStream::connect(&addr) {
                            Ok(s) => {
                                let _ = s.set_nodelay(true);
                                conn.insert(BufReader::new(s))
                            }
                            Err(e) => {
                                eprintln!("connect: {e}");
                                std::thread::sleep(Duration::from_millis(100));
                                continue;
                            }
                        },
                    };
                    let t = Instant::now();
                    match exchange(c, head.as_bytes(), &body) {
                        Ok(200) => {
                            mine.push(t.elapsed().as_micros() as u32);
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(429 | 503) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            // What the API server does: back off, then retry.
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Ok(_) => {
                            other.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            other.fetch_add(1, Ordering::Relaxed);
                            conn = None;
                        }
                    }
                }
                lat.lock().unwrap().extend(mine);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(o.seconds));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let secs = started.elapsed().as_secs_f64();
    let mut l = lat.lock().unwrap().clone();
    l.sort_unstable();
    let pct = |p: f64| -> f64 {
        if l.is_empty() {
            return 0.0;
        }
        l[((l.len() as f64 * p) as usize).min(l.len() - 1)] as f64 / 1000.0
    };
    let ok = ok.load(Ordering::Relaxed);
    println!(
        "requests: {ok} acknowledged (200), {} refused (429/503), {} failed",
        refused.load(Ordering::Relaxed),
        other.load(Ordering::Relaxed)
    );
    println!(
        "events acknowledged: {} in {secs:.1}s = {:.0} events/s ({} per batch, {} connections)",
        ok * o.batch as u64,
        (ok * o.batch as u64) as f64 / secs,
        o.batch,
        o.connections
    );
    println!(
        "ack latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    println!("acknowledged_events={}", ok * o.batch as u64);
}
