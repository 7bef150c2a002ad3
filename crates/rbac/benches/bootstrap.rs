//! Loading Kubernetes' bootstrap policy, which every stateful run does first: the embedded
//! JSON ([`rbac::bootstrap`]) against the upstream YAML files it was converted from.

use criterion::{criterion_group, criterion_main, Criterion};
use rbac::{LoadOptions, Snapshot};
use std::hint::black_box;
use std::path::PathBuf;

fn bootstrap(c: &mut Criterion) {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/kubernetes-bootstrap"
    ));
    let yaml: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("the bootstrap policy is in the repo")
        .map(|e| e.expect("readable directory").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("readable file");
            (p.display().to_string(), text)
        })
        .collect();
    assert_eq!(yaml.len(), 6);
    let mut g = c.benchmark_group("bootstrap_policy");
    g.bench_function("embedded_json", |b| b.iter(|| black_box(rbac::bootstrap())));
    g.bench_function("upstream_yaml", |b| {
        b.iter(|| {
            let mut s = Snapshot::default();
            for (file, text) in &yaml {
                s.load_text(file, text, &LoadOptions::default());
            }
            black_box(s)
        })
    });
    g.finish();
}

criterion_group!(benches, bootstrap);
criterion_main!(benches);
