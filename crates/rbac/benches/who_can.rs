//! Scale: a synthetic snapshot of 5,000 roles and 20,000 bindings, loaded from YAML text and
//! asked `who-can create pods -A` (the bar: under a second on one core).

use criterion::{criterion_group, criterion_main, Criterion};
use rbac::{LoadOptions, Model, Question, Scope, Snapshot};
use std::fmt::Write;
use std::hint::black_box;

/// Deterministic generator (an LCG is plenty for shaping test data).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

const RESOURCES: &[&str] = &[
    "pods",
    "pods/exec",
    "pods/log",
    "configmaps",
    "secrets",
    "services",
    "deployments",
    "\"*\"",
    "nodes",
    "events",
];
const GROUPS: &[&str] = &[
    "\"\"",
    "apps",
    "\"*\"",
    "batch",
    "rbac.authorization.k8s.io",
];
const VERBS: &[&str] = &[
    "get", "list", "watch", "create", "update", "patch", "delete", "\"*\"",
];

/// YAML for `roles` roles (a fifth namespaced) and `bindings` bindings (three quarters RoleBindings).
pub fn synthetic(roles: usize, bindings: usize) -> String {
    let mut r = Lcg(42);
    let mut y = String::new();
    let namespaces = 100;
    for i in 0..roles {
        let namespaced = i % 5 == 0;
        let _ = writeln!(
            y,
            "---\nkind: {}\nmetadata:\n  name: role-{i}",
            if namespaced { "Role" } else { "ClusterRole" }
        );
        if namespaced {
            let _ = writeln!(y, "  namespace: ns-{}", i % namespaces);
        } else {
            let _ = writeln!(y, "  labels: {{team: t{}}}", r.next(50));
        }
        if !namespaced && i % 250 == 1 {
            let _ = writeln!(
                y,
                "aggregationRule:\n  clusterRoleSelectors: [{{matchLabels: {{team: t{}}}}}]",
                r.next(50)
            );
            continue;
        }
        let _ = writeln!(y, "rules:");
        for _ in 0..1 + r.next(5) {
            let _ = writeln!(
                y,
                "- apiGroups: [{}]\n  resources: [{}, {}]\n  verbs: [{}, {}]",
                GROUPS[r.next(GROUPS.len() as u64) as usize],
                RESOURCES[r.next(RESOURCES.len() as u64) as usize],
                RESOURCES[r.next(RESOURCES.len() as u64) as usize],
                VERBS[r.next(VERBS.len() as u64) as usize],
                VERBS[r.next(VERBS.len() as u64) as usize],
            );
        }
    }
    for i in 0..bindings {
        let cluster = i % 4 == 0;
        let role = r.next(roles as u64) as usize;
        let role_kind = if role.is_multiple_of(5) {
            "Role"
        } else {
            "ClusterRole"
        };
        if cluster && role_kind == "Role" {
            // ClusterRoleBindings can only name ClusterRoles.
            let _ = writeln!(y, "---\nkind: ClusterRoleBinding\nmetadata: {{name: crb-{i}}}\nroleRef: {{kind: ClusterRole, name: role-{}}}", role + 1);
        } else if cluster {
            let _ = writeln!(y, "---\nkind: ClusterRoleBinding\nmetadata: {{name: crb-{i}}}\nroleRef: {{kind: ClusterRole, name: role-{role}}}");
        } else {
            let ns = if role_kind == "Role" {
                role % namespaces
            } else {
                r.next(namespaces as u64) as usize
            };
            let _ = writeln!(y, "---\nkind: RoleBinding\nmetadata: {{name: rb-{i}, namespace: ns-{ns}}}\nroleRef: {{kind: {role_kind}, name: role-{role}}}");
        }
        let _ = writeln!(y, "subjects:");
        for _ in 0..1 + r.next(3) {
            match r.next(3) {
                0 => _ = writeln!(y, "- {{kind: User, name: user-{}}}", r.next(2000)),
                1 => _ = writeln!(y, "- {{kind: Group, name: group-{}}}", r.next(200)),
                _ => {
                    _ = writeln!(
                        y,
                        "- {{kind: ServiceAccount, name: sa-{}, namespace: ns-{}}}",
                        r.next(500),
                        r.next(namespaces as u64)
                    )
                }
            }
        }
    }
    y
}

fn bench(c: &mut Criterion) {
    let yaml = synthetic(5_000, 20_000);
    let q = Question {
        verb: "create".into(),
        api_group: String::new(),
        resource: "pods".into(),
        subresource: String::new(),
        name: String::new(),
        url: None,
        scope: Scope::AllNamespaces,
    };
    // Sanity, outside the timing: the data loads cleanly and the question has answers.
    let mut s = Snapshot::default();
    s.load_text("synthetic.yaml", &yaml, &LoadOptions::default());
    assert!(
        s.errors.is_empty(),
        "{:?}",
        &s.errors[..s.errors.len().min(3)]
    );
    assert_eq!((s.roles.len(), s.bindings.len()), (5_000, 20_000));
    assert!(Model::new(&s).who_can(&q).len() > 100);

    let mut g = c.benchmark_group("who_can_5k_roles_20k_bindings");
    g.sample_size(10);
    g.bench_function("load_yaml+resolve+who_can_create_pods_-A", |b| {
        b.iter(|| {
            let mut s = Snapshot::default();
            s.load_text("synthetic.yaml", black_box(&yaml), &LoadOptions::default());
            let m = Model::new(&s);
            black_box(m.who_can(&q).len())
        })
    });
    // The same objects as `kubectl get ... -o json` writes them: one List.
    let mut budget = serde_saphyr::Budget::default();
    budget.max_documents = 100_000;
    budget.max_nodes = 10_000_000;
    budget.max_events = 10_000_000;
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple_with_options(&yaml, {
        let mut o = serde_saphyr::Options::default();
        o.budget = Some(budget);
        o
    })
    .expect("synthetic YAML parses");
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": docs});
    let json = serde_json::to_string(&list).expect("serializes");
    // And as `kubectl get ... -o yaml` writes it: one List document.
    let yaml_list = serde_saphyr::to_string(&list).expect("serializes");
    g.bench_function("load_yaml_list+resolve+who_can_create_pods_-A", |b| {
        b.iter(|| {
            let mut s = Snapshot::default();
            s.load_text(
                "synthetic-list.yaml",
                black_box(&yaml_list),
                &LoadOptions::default(),
            );
            let m = Model::new(&s);
            black_box(m.who_can(&q).len())
        })
    });
    let mut check = Snapshot::default();
    check.load_text("synthetic-list.yaml", &yaml_list, &LoadOptions::default());
    assert_eq!(
        (check.roles.len(), check.bindings.len(), check.errors.len()),
        (5_000, 20_000, 0)
    );
    g.bench_function("load_json+resolve+who_can_create_pods_-A", |b| {
        b.iter(|| {
            let mut s = Snapshot::default();
            s.load_text("synthetic.json", black_box(&json), &LoadOptions::default());
            let m = Model::new(&s);
            black_box(m.who_can(&q).len())
        })
    });
    let m = Model::new(&s);
    g.bench_function("who_can_create_pods_-A_only", |b| {
        b.iter(|| black_box(m.who_can(black_box(&q)).len()))
    });
    g.bench_function("resolve_aggregation", |b| {
        b.iter(|| black_box(Model::new(&s).effective.len()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
