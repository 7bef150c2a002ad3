//! Record parsing and line visiting throughput.
//!
//! - `parse_record` on a RequestResponse ClusterRole create and on a Metadata pod get.
//! - `visit_lines` over a 4 MiB buffer of generated lines (about 1.5% mention `clusterroles`,
//!   as in a real cluster's log), with and without the prefilter.

use audit::{parse_record, visit_lines, LineNeedle};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;

const CLUSTERROLE_CREATE: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"9827a0e7-64ea-416b-b74c-466c8e6bd77d","stage":"ResponseComplete","requestURI":"/apis/rbac.authorization.k8s.io/v1/clusterroles?fieldManager=kubectl-client-side-apply&fieldValidation=Strict","verb":"create","user":{"username":"alice@example.com","groups":["platform-admins","system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["X509SHA256=95580df94725a25f0c6b2dbea01a3aa1923ea4e3a72238bc7bda295dd932d3cb"]}},"sourceIPs":["203.0.113.27"],"userAgent":"kubectl/v1.29.4 (linux/amd64) kubernetes/55019c8","objectRef":{"resource":"clusterroles","name":"backup-operator","apiGroup":"rbac.authorization.k8s.io","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"ClusterRole","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"backup-operator","labels":{"app.kubernetes.io/managed-by":"Helm"}},"rules":[{"apiGroups":[""],"resources":["pods","services"],"verbs":["*"]},{"apiGroups":[""],"resources":["events"],"verbs":["create","patch"]}]},"responseObject":{"kind":"ClusterRole","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"backup-operator","uid":"1c1f5c95-7a72-4bf5-b3fc-cb5bbc4e76e1","resourceVersion":"48005666","creationTimestamp":"2025-06-01T00:00:01Z","labels":{"app.kubernetes.io/managed-by":"Helm"}},"rules":[{"apiGroups":[""],"resources":["pods","services"],"verbs":["*"]},{"apiGroups":[""],"resources":["events"],"verbs":["create","patch"]}]},"requestReceivedTimestamp":"2025-06-01T00:00:01.183490Z","stageTimestamp":"2025-06-01T00:00:01.219982Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by ClusterRoleBinding \"platform-admins\" of ClusterRole \"cluster-admin\" to Group \"platform-admins\""}}"#;

const POD_GET: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"5d158a2f-f2ee-4e45-99f9-919c895fd7b3","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/checkout/pods/api-9118","verb":"get","user":{"username":"system:node:ip-10-0-1-25.ec2.internal","groups":["system:nodes","system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["X509SHA256=70ccec313571810afc132d0d113db17d30cbc97d0fef792866836886a260cd0b"]}},"sourceIPs":["10.0.1.25"],"userAgent":"kubelet/v1.29.4 (linux/amd64) kubernetes/55019c8","objectRef":{"resource":"pods","namespace":"checkout","name":"api-9118","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2025-06-01T00:00:00.010386Z","stageTimestamp":"2025-06-01T00:00:00.012357Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}"#;

/// About `size` bytes of whole lines: mostly Metadata reads from nodes and controllers, some
/// lease updates, and one ClusterRole event in 67 (1.5%).
fn generated_lines(size: usize) -> Vec<u8> {
    let namespaces = [
        "default",
        "kube-system",
        "monitoring",
        "payments",
        "checkout",
    ];
    let resources = ["pods", "configmaps", "secrets", "services", "endpoints"];
    let mut out = Vec::with_capacity(size + 4096);
    let mut i: u64 = 0;
    while out.len() < size {
        // A cheap deterministic mix (splitmix64).
        let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let id = format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            z as u32,
            (z >> 32) as u16,
            i % 4096,
            (z >> 48) % 4096,
            z >> 16
        );
        if i % 67 == 33 {
            out.extend_from_slice(
                CLUSTERROLE_CREATE
                    .replace("9827a0e7-64ea-416b-b74c-466c8e6bd77d", &id)
                    .as_bytes(),
            );
        } else if i % 10 == 7 {
            let node = z % 24;
            out.extend_from_slice(format!(
                r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"{id}","stage":"ResponseComplete","requestURI":"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/ip-10-0-0-{node}.ec2.internal?timeout=10s","verb":"update","user":{{"username":"system:node:ip-10-0-0-{node}.ec2.internal","groups":["system:nodes","system:authenticated"]}},"sourceIPs":["10.0.0.{node}"],"userAgent":"kubelet/v1.29.4 (linux/amd64) kubernetes/55019c8","objectRef":{{"resource":"leases","namespace":"kube-node-lease","name":"ip-10-0-0-{node}.ec2.internal","apiGroup":"coordination.k8s.io","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":200}},"requestObject":{{"kind":"Lease","apiVersion":"coordination.k8s.io/v1","metadata":{{"name":"ip-10-0-0-{node}.ec2.internal","namespace":"kube-node-lease"}},"spec":{{"holderIdentity":"ip-10-0-0-{node}.ec2.internal","leaseDurationSeconds":40,"renewTime":"2025-06-01T00:00:{:02}.000000Z"}}}},"requestReceivedTimestamp":"2025-06-01T00:00:00.010386Z","stageTimestamp":"2025-06-01T00:00:00.012357Z","annotations":{{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}}}"#,
                i % 60
            ).as_bytes());
        } else {
            let ns = namespaces[(z % 5) as usize];
            let res = resources[((z >> 8) % 5) as usize];
            let name = format!("web-{:x}", (z >> 20) % 100_000);
            out.extend_from_slice(
                POD_GET
                    .replace("5d158a2f-f2ee-4e45-99f9-919c895fd7b3", &id)
                    .replace("checkout", ns)
                    .replace("pods", res)
                    .replace("api-9118", &name)
                    .as_bytes(),
            );
        }
        out.push(b'\n');
        i += 1;
    }
    out
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_record");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (name, line) in [
        ("clusterrole-create", CLUSTERROLE_CREATE),
        ("metadata-pod-get", POD_GET),
    ] {
        assert!(parse_record(line.as_bytes()).is_ok());
        g.throughput(Throughput::Bytes(line.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| parse_record(black_box(line.as_bytes())).is_ok())
        });
    }
    g.finish();
}

fn visit(c: &mut Criterion) {
    let buf = generated_lines(4 << 20);
    let needle = LineNeedle::new(b"clusterroles");
    let mut g = c.benchmark_group("visit_lines_4MiB");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Bytes(buf.len() as u64));
    for (name, prefilter) in [("prefilter", Some(&needle)), ("no-prefilter", None)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut n = 0usize;
                let st = visit_lines(
                    black_box(&buf),
                    prefilter,
                    1 << 20,
                    |_, l| n += l.len(),
                    |_, _| {},
                );
                (st.lines, n)
            })
        });
    }
    // Parsing what the visitor hands on: the cost of a scan without detection.
    for (name, prefilter) in [
        ("prefilter+parse", Some(&needle)),
        ("no-prefilter+parse", None),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut ok = 0usize;
                visit_lines(
                    black_box(&buf),
                    prefilter,
                    1 << 20,
                    |_, l| ok += usize::from(parse_record(l).is_ok()),
                    |_, _| {},
                );
                ok
            })
        });
    }
    g.finish();
}

criterion_group!(benches, parse, visit);
criterion_main!(benches);
