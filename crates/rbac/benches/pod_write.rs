//! `pod_write_grants` on a handful of realistic rules.

use criterion::{criterion_group, criterion_main, Criterion};
use rbac::{pod_write_grants, role_pod_write, PodWriteOptions, PolicyRule};
use std::hint::black_box;
use std::time::Duration;

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str], names: &[&str]) -> PolicyRule {
    PolicyRule::new(groups, resources, verbs).with_names(names)
}

fn rules() -> Vec<(&'static str, PolicyRule)> {
    vec![
        ("wildcard", rule(&["*"], &["*"], &["*"], &[])),
        (
            "pods-create",
            rule(&[""], &["pods"], &["get", "list", "create", "delete"], &[]),
        ),
        (
            "read-only",
            rule(&[""], &["pods", "pods/log"], &["get", "list", "watch"], &[]),
        ),
        (
            "metrics-group",
            rule(&["metrics.k8s.io"], &["pods"], &["*"], &[]),
        ),
        (
            "named-update",
            rule(&[""], &["pods"], &["update"], &["debug-shell"]),
        ),
    ]
}

fn bench(c: &mut Criterion) {
    let opts = PodWriteOptions::default();
    let mut g = c.benchmark_group("pod_write_grants");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (name, r) in rules() {
        g.bench_function(name, |b| {
            b.iter(|| pod_write_grants(black_box(&r), 0, opts))
        });
    }
    let all: Vec<PolicyRule> = rules().into_iter().map(|(_, r)| r).collect();
    g.bench_function("role-of-5-rules", |b| {
        b.iter(|| role_pod_write(black_box(&all), opts))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
