//! The Kubernetes bootstrap policy (crates/rbac/data/kubernetes-bootstrap, see SOURCES.md there):
//! exactly the roles worked out by hand in shared notes §4 grant pod write, `admin` and `edit`
//! only through aggregation.

use rbac::{Model, PodWriteOptions, RoleKind, Snapshot};
use std::collections::BTreeSet;
use std::path::PathBuf;

fn bootstrap() -> Snapshot {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/kubernetes-bootstrap"
    ));
    let s = Snapshot::load(&[dir], &rbac::LoadOptions::default());
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    s
}

/// The expected roles, worked out by hand (shared with the CLI tests).
fn expected() -> BTreeSet<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/rbac/expected/kubernetes-bootstrap-pod-writers.txt"
    );
    let text = std::fs::read_to_string(path).expect("expected list is in the repo");
    let names: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    assert_eq!(names.len(), 22);
    names
}

#[test]
fn loads_every_object() {
    let s = bootstrap();
    let cr = s
        .roles
        .iter()
        .filter(|r| r.kind == RoleKind::ClusterRole)
        .count();
    let r = s.roles.iter().filter(|r| r.kind == RoleKind::Role).count();
    assert_eq!((cr, r), (31 + 38, 7));
    assert_eq!(s.bindings.len(), 10 + 38 + 7);
    assert_eq!(s.files, 6);
}

#[test]
fn pod_writers_are_exactly_the_expected_roles() {
    let s = bootstrap();
    let m = Model::new(&s);
    for opts in [
        PodWriteOptions { exec_via_get: true },
        PodWriteOptions {
            exec_via_get: false,
        },
    ] {
        let writers = m.pod_writers(opts);
        let got: BTreeSet<String> = writers.iter().map(|p| p.name.clone()).collect();
        assert_eq!(got, expected(), "exec_via_get={}", opts.exec_via_get);
    }
}

#[test]
fn admin_and_edit_write_pods_only_through_aggregation() {
    let s = bootstrap();
    let m = Model::new(&s);
    let pw = m.pod_writers(PodWriteOptions::default());
    for name in ["admin", "edit"] {
        let role = s.cluster_role(name).unwrap();
        assert!(
            role.rules.is_empty() && role.aggregation.is_some(),
            "{name} is stored with rules: null"
        );
        let p = pw.iter().find(|p| p.name == name).unwrap();
        assert!(
            p.grants
                .iter()
                .all(|g| g.from_role == "system:aggregate-to-edit"),
            "{name}: {:?}",
            p.grants.iter().map(|g| &g.from_role).collect::<Vec<_>>()
        );
        let caps: BTreeSet<String> = p.grants.iter().map(|g| g.words.clone()).collect();
        for c in [
            "create pods",
            "exec into pods",
            "attach to pods",
            "port-forward to pods",
            "proxy to pods",
            "evict pods",
            "delete all pods (deletecollection)",
        ] {
            assert!(caps.contains(c), "{name} lacks {c}: {caps:?}");
        }
    }
    let admin = pw.iter().find(|p| p.name == "admin").unwrap();
    assert_eq!(
        admin.aggregated_from,
        vec!["edit".to_string(), "system:aggregate-to-admin".to_string()]
    );
    // view reads pods but writes none.
    assert!(!pw
        .iter()
        .any(|p| p.name == "view" || p.name == "system:aggregate-to-view"));
}

#[test]
fn bound_subjects_and_latent_bindings() {
    let s = bootstrap();
    let m = Model::new(&s);
    let pw = m.pod_writers(PodWriteOptions::default());
    let ca = pw.iter().find(|p| p.name == "cluster-admin").unwrap();
    assert_eq!(ca.bound_subjects.len(), 1);
    assert_eq!(
        (
            ca.bound_subjects[0].kind.as_str(),
            ca.bound_subjects[0].name.as_str()
        ),
        ("Group", "system:masters")
    );
    let node = pw.iter().find(|p| p.name == "system:node").unwrap();
    assert!(node.bound_subjects.is_empty());
    let rs = pw
        .iter()
        .find(|p| p.name == "system:controller:replicaset-controller")
        .unwrap();
    assert_eq!(rs.bound_subjects[0].kind, "ServiceAccount");
    assert_eq!(
        rs.bound_subjects[0].namespace.as_deref(),
        Some("kube-system")
    );
    // controller-role-bindings binds podcheckpoint-controller, whose role is not in the files.
    let latent: Vec<&str> = m
        .latent_bindings()
        .iter()
        .map(|b| b.name.as_str())
        .collect();
    assert!(
        latent.contains(&"system:controller:podcheckpoint-controller"),
        "{latent:?}"
    );
}
