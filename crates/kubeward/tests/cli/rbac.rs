//! `kubeward rbac`: pod-writers, who-can, role-admins and check, run as a user would run them,
//! on real manifests (tests/fixtures/rbac, provenance in tests/fixtures/SOURCES.md; the
//! bootstrap policy in crates/rbac/data, provenance in SOURCES.md there) and on small
//! snapshots written by the tests.
//!
//! Every expected set below was worked out by reading the YAML against upstream RBAC semantics
//! (shared notes `rbac-semantics.md` §3), not by copying the tool's output; the comments say why
//! each role or subject is in or out.

use crate::util::{fixture, run, write, Run};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// `kubeward rbac ARGS`.
fn rbac(args: &[&str]) -> Run {
    let mut all = vec!["rbac"];
    all.extend_from_slice(args);
    run(&all, b"")
}

/// A path under tests/fixtures/rbac.
fn fx(rel: &str) -> String {
    fixture(&format!("rbac/{rel}"))
        .to_str()
        .expect("UTF-8 fixture path")
        .to_string()
}

/// The Kubernetes bootstrap policy, which the rbac crate embeds and keeps in its data dir.
fn bootstrap() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../rbac/data/kubernetes-bootstrap"
    )
    .to_string()
}

/// `rbac pod-writers --format json ARGS`, which must succeed.
fn pod_writers(args: &[&str]) -> Run {
    let mut all = vec!["pod-writers", "--format", "json"];
    all.extend_from_slice(args);
    rbac(&all).ok()
}

/// `rbac who-can ARGS --format json -q`, which must succeed.
fn who_can(args: &[&str]) -> Run {
    let mut all = vec!["who-can"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--format", "json", "-q"]);
    rbac(&all).ok()
}

/// `Kind name`, or `Kind ns/name` when the object has a namespace.
fn label(v: &Value) -> String {
    let kind = v["kind"].as_str().unwrap_or_else(|| panic!("no kind: {v}"));
    let name = v["name"].as_str().unwrap_or_else(|| panic!("no name: {v}"));
    match v["namespace"].as_str() {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// The labels of every JSON object on stdout.
fn labels(r: &Run) -> BTreeSet<String> {
    r.values().iter().map(label).collect()
}

fn set(xs: &[&str]) -> BTreeSet<String> {
    xs.iter().map(|s| s.to_string()).collect()
}

/// The object on stdout with this label.
fn find(r: &Run, l: &str) -> Value {
    r.values()
        .into_iter()
        .find(|v| label(v) == l)
        .unwrap_or_else(|| panic!("{l} not in output: {r:#?}"))
}

/// `(verb, resource)` of every grant of a pod-writers object.
fn grants(w: &Value) -> BTreeSet<(String, String)> {
    w["grants"]
        .as_array()
        .expect("grants")
        .iter()
        .map(|g| {
            (
                g["verb"].as_str().unwrap().to_string(),
                g["resource"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(xs: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    xs.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The labels of the bound subjects of a pod-writers object.
fn bound(w: &Value) -> BTreeSet<String> {
    w["bound_subjects"]
        .as_array()
        .expect("bound_subjects")
        .iter()
        .map(label)
        .collect()
}

/// The via entries of a who-can subject that are real bindings (not the system:masters bypass).
fn vias(g: &Value) -> Vec<Value> {
    g["via"]
        .as_array()
        .expect("via")
        .iter()
        .filter(|v| v["binding_kind"] != "PrivilegedGroup")
        .cloned()
        .collect()
}

const MASTERS: &str = "Group system:masters";

/// The 22 roles of the bootstrap policy that grant pod write (worked out by hand; the list is
/// shared with crates/rbac/tests/bootstrap.rs): 6 from cluster-roles.yaml, 16 from
/// controller-roles.yaml, none of the namespace Roles.
fn bootstrap_writers() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/rbac/expected/kubernetes-bootstrap-pod-writers.txt"
    ))
    .expect("expected list is in the repo");
    let names: Vec<String> = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    assert_eq!(names.len(), 22);
    names
}

fn bootstrap_writer_labels() -> BTreeSet<String> {
    bootstrap_writers()
        .iter()
        .map(|n| format!("ClusterRole {n}"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The Kubernetes bootstrap policy
// ---------------------------------------------------------------------------------------------

#[test]
fn bootstrap_pod_writers_json() {
    let r = pod_writers(&[&bootstrap()]);
    let all = r.values();
    assert_eq!(all.len(), 22, "{r:#?}");
    assert_eq!(labels(&r), bootstrap_writer_labels());
    for w in &all {
        for key in [
            "kind",
            "name",
            "namespace",
            "grants",
            "aggregated_from",
            "bound_subjects",
        ] {
            assert!(w.get(key).is_some(), "{key} missing: {w}");
        }
        assert_eq!(w["kind"], "ClusterRole", "{w}");
        assert!(
            w["namespace"].is_null(),
            "ClusterRoles have no namespace: {w}"
        );
        assert!(!w["grants"].as_array().unwrap().is_empty(), "{w}");
        for g in w["grants"].as_array().unwrap() {
            for key in ["verb", "resource", "resource_names", "words", "from_role"] {
                assert!(g.get(key).is_some(), "grant without {key}: {g}");
            }
        }
    }
    // admin and edit are stored with `rules: null`: everything they grant on pods comes from
    // system:aggregate-to-edit (admin through edit).
    for name in ["ClusterRole admin", "ClusterRole edit"] {
        let w = find(&r, name);
        let from: BTreeSet<&str> = w["grants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["from_role"].as_str().unwrap())
            .collect();
        assert_eq!(from, BTreeSet::from(["system:aggregate-to-edit"]), "{name}");
        assert!(bound(&w).is_empty(), "{name} has no default binding");
    }
    assert_eq!(
        find(&r, "ClusterRole admin")["aggregated_from"],
        serde_json::json!(["edit", "system:aggregate-to-admin"])
    );
    // system:aggregate-to-edit's own rules: create/delete/deletecollection/patch/update on
    // pods, pods/attach, pods/exec, pods/portforward, pods/proxy, create on pods/eviction, and
    // get on pods/attach|exec|portforward (exec before 1.35).
    let admin = grants(&find(&r, "ClusterRole admin"));
    for p in [
        ("create", "pods"),
        ("update", "pods"),
        ("patch", "pods"),
        ("delete", "pods"),
        ("deletecollection", "pods"),
        ("create", "pods/exec"),
        ("get", "pods/exec"),
        ("create", "pods/eviction"),
    ] {
        assert!(
            admin.contains(&(p.0.to_string(), p.1.to_string())),
            "admin lacks {p:?}"
        );
    }
    // Own rules are marked as such.
    let ca = find(&r, "ClusterRole cluster-admin");
    assert!(ca["grants"]
        .as_array()
        .unwrap()
        .iter()
        .all(|g| g["from_role"] == "own rule"));
    // cluster-role-bindings.yaml: cluster-admin → Group system:masters, and nothing else.
    let subs = ca["bound_subjects"].as_array().unwrap();
    assert_eq!(subs.len(), 1, "{ca}");
    assert_eq!(label(&subs[0]), MASTERS);
    assert_eq!(subs[0]["binding_kind"], "ClusterRoleBinding");
    assert_eq!(subs[0]["binding"], "cluster-admin");
    assert!(subs[0]["scope_namespace"].is_null());
    // The system:node ClusterRoleBinding has no subjects (the Node authorizer serves kubelets).
    assert!(bound(&find(&r, "ClusterRole system:node")).is_empty());
    // Controllers: ClusterRoleBinding system:controller:X → ServiceAccount kube-system/X.
    assert_eq!(
        bound(&find(
            &r,
            "ClusterRole system:controller:replicaset-controller"
        )),
        set(&["ServiceAccount kube-system/replicaset-controller"])
    );
    // controller-role-bindings.yaml has no binding for device-taint-eviction-controller.
    assert!(bound(&find(
        &r,
        "ClusterRole system:controller:device-taint-eviction-controller"
    ))
    .is_empty());
    assert!(
        r.summary()
            .contains("loaded 76 roles and 55 bindings from 6 files"),
        "{}",
        r.summary()
    );
}

#[test]
fn bootstrap_pod_writers_text() {
    let r = rbac(&["pod-writers", &bootstrap(), "-q"]).ok();
    assert!(
        r.stdout.starts_with("22 roles grant write on pods\n"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("\nClusterRole admin  (aggregates edit, system:aggregate-to-admin)\n"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(
            "    - Group system:masters via ClusterRoleBinding cluster-admin (cluster-wide)"
        ),
        "{}",
        r.stdout
    );
    assert!(r.stderr.is_empty(), "-q: {}", r.stderr);
}

#[test]
fn bootstrap_who_can_create_pods() {
    // Roles with create on pods: cluster-admin (bound to system:masters), admin, edit,
    // system:aggregate-to-edit (all unbound), system:node (its binding has no subjects), and the
    // daemon-set, job, persistent-volume-binder, replicaset, replication and statefulset
    // controllers (each bound to its kube-system ServiceAccount). kube-scheduler only creates
    // pods/binding; generic-garbage-collector has no create.
    let want = set(&[
        MASTERS,
        "ServiceAccount kube-system/daemon-set-controller",
        "ServiceAccount kube-system/job-controller",
        "ServiceAccount kube-system/persistent-volume-binder",
        "ServiceAccount kube-system/replicaset-controller",
        "ServiceAccount kube-system/replication-controller",
        "ServiceAccount kube-system/statefulset-controller",
    ]);
    let r = who_can(&["create", "pods", "-A", &bootstrap()]);
    assert_eq!(labels(&r), want);
    // Without -n, namespaced resources are asked in every namespace: same answer.
    assert_eq!(labels(&who_can(&["create", "pods", &bootstrap()])), want);
    for g in r.values() {
        for key in ["kind", "name", "namespace", "via"] {
            assert!(g.get(key).is_some(), "{key} missing: {g}");
        }
        let via = g["via"].as_array().unwrap();
        assert!(!via.is_empty(), "{g}");
        for v in via {
            for key in ["binding_kind", "binding", "role_kind", "role", "namespace"] {
                assert!(v.get(key).is_some(), "via without {key}: {v}");
            }
        }
    }
    let masters = find(&r, MASTERS);
    let kinds: BTreeSet<&str> = masters["via"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["binding_kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["ClusterRoleBinding", "PrivilegedGroup"])
    );
    let rs = find(&r, "ServiceAccount kube-system/replicaset-controller");
    let v = &rs["via"][0];
    assert_eq!(v["binding_kind"], "ClusterRoleBinding");
    assert_eq!(v["binding"], "system:controller:replicaset-controller");
    assert_eq!(v["role_kind"], "ClusterRole");
    assert_eq!(v["role"], "system:controller:replicaset-controller");
    assert!(
        v["namespace"].is_null(),
        "a ClusterRoleBinding grants everywhere"
    );

    let text = rbac(&["who-can", "create", "pods", "-A", &bootstrap(), "-q"]).ok();
    assert!(
        text.stdout
            .starts_with("who can create pods (in any namespace): 7 subjects\n"),
        "{}",
        text.stdout
    );
}

#[test]
fn bootstrap_role_admins() {
    let r = rbac(&["role-admins", &bootstrap(), "--format", "json", "-q"]).ok();
    let mut table: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in r.values() {
        for key in ["path", "explain", "kind", "name", "via"] {
            assert!(row.get(key).is_some(), "{key} missing: {row}");
        }
        assert!(!row["explain"].as_str().unwrap().is_empty());
        table
            .entry(row["path"].as_str().unwrap().to_string())
            .or_default()
            .insert(label(&row));
    }
    // Only three bound subjects touch RBAC objects at all: system:masters (cluster-admin, and
    // the authorizer's bypass), the clusterrole-aggregation-controller (escalate, get, list,
    // patch, update, watch on clusterroles) and the generic-garbage-collector (delete, get,
    // list, patch, update, watch on `*` in `*`). aggregate-to-edit's `impersonate
    // serviceaccounts` is bound to nobody.
    let agg = "ServiceAccount kube-system/clusterrole-aggregation-controller";
    let gc = "ServiceAccount kube-system/generic-garbage-collector";
    let want: BTreeMap<String, BTreeSet<String>> = [
        ("create-clusterroles", set(&[MASTERS])),
        ("update-clusterroles", set(&[MASTERS, agg, gc])),
        ("patch-clusterroles", set(&[MASTERS, agg, gc])),
        ("escalate-clusterroles", set(&[MASTERS, agg])),
        ("bind-clusterroles", set(&[MASTERS])),
        ("create-clusterrolebindings", set(&[MASTERS])),
        ("update-clusterrolebindings", set(&[MASTERS, gc])),
        ("patch-clusterrolebindings", set(&[MASTERS, gc])),
        ("create-roles", set(&[MASTERS])),
        ("escalate-roles", set(&[MASTERS])),
        ("bind-roles", set(&[MASTERS])),
        ("create-rolebindings", set(&[MASTERS])),
        ("impersonate-users", set(&[MASTERS])),
        ("impersonate-groups", set(&[MASTERS])),
        ("impersonate-serviceaccounts", set(&[MASTERS])),
        ("impersonate-uids", set(&[MASTERS])),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(table, want);
    let row = r
        .values()
        .into_iter()
        .find(|v| v["path"] == "update-clusterroles" && label(v) == agg)
        .unwrap();
    assert_eq!(
        row["via"][0]["role"],
        "system:controller:clusterrole-aggregation-controller"
    );

    let text = rbac(&["role-admins", &bootstrap(), "-q"]).ok();
    assert!(
        text.stdout.contains("\nupdate-clusterroles — "),
        "{}",
        text.stdout
    );
}

#[test]
fn bootstrap_check_replicaset_controller() {
    let r = rbac(&[
        "check",
        &bootstrap(),
        "--as",
        "system:serviceaccount:kube-system:replicaset-controller",
        "--format",
        "json",
        "-q",
    ])
    .ok();
    let rep = r.alert();
    assert_eq!(rep["masters"], false);
    let groups: BTreeSet<&str> = rep["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    assert_eq!(
        groups,
        BTreeSet::from([
            "system:authenticated",
            "system:serviceaccounts",
            "system:serviceaccounts:kube-system"
        ])
    );
    // Its ClusterRole: create, delete, patch on pods (and nothing on subresources); no other
    // binding in the bootstrap files gives pod write to SAs or authenticated users.
    let caps: BTreeSet<&str> = rep["cluster_wide"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["capability"].as_str().unwrap())
        .collect();
    assert_eq!(
        caps,
        BTreeSet::from(["create pods", "modify pods (update/patch)", "delete pods"])
    );
    let modify = rep["cluster_wide"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["capability"] == "modify pods (update/patch)")
        .unwrap();
    assert_eq!(modify["verbs"], serde_json::json!(["patch"]));
    assert_eq!(rep["namespaces"], serde_json::json!({}));
}

#[test]
fn bootstrap_check_masters_and_anonymous() {
    let r = rbac(&[
        "check",
        &bootstrap(),
        "--as",
        "alice",
        "--as-group",
        "system:masters",
        "--format",
        "json",
        "-q",
    ])
    .ok();
    let rep = r.alert();
    assert_eq!(rep["user"], "alice");
    assert_eq!(rep["masters"], true);
    assert!(rep["groups"]
        .as_array()
        .unwrap()
        .contains(&"system:authenticated".into()));

    let r = rbac(&[
        "check",
        &bootstrap(),
        "--as",
        "system:anonymous",
        "--format",
        "json",
        "-q",
    ])
    .ok();
    let rep = r.alert();
    assert_eq!(rep["masters"], false);
    assert_eq!(rep["groups"], serde_json::json!(["system:unauthenticated"]));
    assert_eq!(rep["cluster_wide"], serde_json::json!([]));
    assert_eq!(rep["namespaces"], serde_json::json!({}));
    let text = rbac(&["check", &bootstrap(), "--as", "system:anonymous", "-q"]).ok();
    assert!(
        text.stdout.contains("cannot write pods anywhere"),
        "{}",
        text.stdout
    );
}

// ---------------------------------------------------------------------------------------------
// Other real manifests
// ---------------------------------------------------------------------------------------------

#[test]
fn argo_cd_pod_writers() {
    let dir = fx("argo-cd");
    // The base Roles and RoleBindings carry no namespace (kustomize adds it): without
    // --default-namespace each is reported and skipped, and the run still succeeds.
    let r = pod_writers(&[&dir]);
    assert!(
        r.stderr.contains(
            "argocd-server-role.yaml document 1: namespaced object without metadata.namespace"
        ),
        "{}",
        r.stderr
    );
    assert!(
        r.summary().ends_with("; 4 documents could not be read"),
        "{}",
        r.summary()
    );
    // In: argocd-application-controller (`*` on `*` in `*`), argocd-server (delete and patch
    // on `*` in `*`). Out: argocd-applicationset-controller (argoproj.io, events, secrets,
    // leases only), the base Roles (secrets, configmaps, events, argoproj.io).
    let want = set(&[
        "ClusterRole argocd-application-controller",
        "ClusterRole argocd-server",
    ]);
    assert_eq!(labels(&r), want);

    let r = pod_writers(&[&dir, "--default-namespace", "argocd"]);
    assert_eq!(labels(&r), want);
    assert!(
        r.summary().contains(
            "4 namespaced objects without a namespace put in \"argocd\" (--default-namespace)"
        ),
        "{}",
        r.summary()
    );
    assert!(
        r.summary().contains("(4 Kustomization, 2 ServiceAccount)"),
        "{}",
        r.summary()
    );
    assert!(!r.stderr.contains("could not be read"), "{}", r.stderr);

    let ctl = find(&r, "ClusterRole argocd-application-controller");
    assert!(grants(&ctl).contains(&("create".into(), "pods".into())));
    assert_eq!(
        bound(&ctl),
        set(&["ServiceAccount argocd/argocd-application-controller"])
    );
    let server = find(&r, "ClusterRole argocd-server");
    let g = grants(&server);
    assert!(g.contains(&("delete".into(), "pods".into())), "{g:?}");
    assert!(g.contains(&("patch".into(), "pods".into())), "{g:?}");
    assert!(!g.contains(&("create".into(), "pods".into())), "{g:?}");
    assert_eq!(
        bound(&server),
        set(&["ServiceAccount argocd/argocd-server"])
    );
}

#[test]
fn argo_cd_namespace_less_role_bindings() {
    // The base RoleBindings name ServiceAccounts without a namespace: they are the accounts of
    // the binding's namespace, here the --default-namespace.
    let r = who_can(&[
        "get",
        "secrets",
        "-n",
        "argocd",
        &fx("argo-cd"),
        "--default-namespace",
        "argocd",
    ]);
    // application-controller: `*` (CRB); applicationset-controller: get secrets (CRB);
    // server: get on `*` (CRB) and get secrets (RB); redis: get secrets named argocd-redis (RB).
    assert_eq!(
        labels(&r),
        set(&[
            MASTERS,
            "ServiceAccount argocd/argocd-application-controller",
            "ServiceAccount argocd/argocd-applicationset-controller",
            "ServiceAccount argocd/argocd-redis",
            "ServiceAccount argocd/argocd-server",
        ])
    );
    let server = find(&r, "ServiceAccount argocd/argocd-server");
    let rb: Vec<Value> = vias(&server)
        .into_iter()
        .filter(|v| v["binding_kind"] == "RoleBinding")
        .collect();
    assert_eq!(rb.len(), 1, "{server}");
    assert_eq!(rb[0]["role_kind"], "Role");
    assert_eq!(rb[0]["role"], "argocd-server");
    assert_eq!(rb[0]["namespace"], "argocd");
    let redis = find(&r, "ServiceAccount argocd/argocd-redis");
    assert_eq!(
        vias(&redis)[0]["only_names"],
        serde_json::json!(["argocd-redis"])
    );
}

#[test]
fn prometheus_operator_example() {
    let dir = fx("prometheus-operator");
    let r = pod_writers(&[&dir]);
    // Only the operator's ClusterRole writes pods: `list, delete` on core pods. prometheus and
    // prometheus-agent read pods; the CRD roles are about monitoring.coreos.com.
    assert_eq!(labels(&r), set(&["ClusterRole prometheus-operator"]));
    let op = find(&r, "ClusterRole prometheus-operator");
    assert_eq!(grants(&op), pairs(&[("delete", "pods")]));
    assert_eq!(
        bound(&op),
        set(&["ServiceAccount default/prometheus-operator"])
    );
    // `get /metrics` is granted by the prometheus and prometheus-agent ClusterRoles, both
    // bound by ClusterRoleBindings.
    let r = who_can(&["get", "--url", "/metrics", &dir]);
    assert_eq!(
        labels(&r),
        set(&[
            MASTERS,
            "ServiceAccount default/prometheus",
            "ServiceAccount default/prometheus-agent",
        ])
    );
}

fn kube_prometheus() -> String {
    fx("kube-prometheus")
}

#[test]
fn kube_prometheus_pod_writers() {
    let r = pod_writers(&[&kube_prometheus()]);
    // In: prometheus-operator (`list, delete` on core pods). Out: system:aggregated-metrics-reader
    // and resource-metrics-server-resources (pods, or `*`, in metrics.k8s.io: not core pods),
    // prometheus-adapter (get/list/watch), the prometheus-k8s Roles (get/list/watch).
    assert_eq!(labels(&r), set(&["ClusterRole prometheus-operator"]));
    let op = find(&r, "ClusterRole prometheus-operator");
    assert_eq!(grants(&op), pairs(&[("delete", "pods")]));
    assert_eq!(
        bound(&op),
        set(&["ServiceAccount monitoring/prometheus-operator"])
    );
    // The RoleList and RoleBindingList files hold 3 items each.
    assert!(
        r.summary()
            .contains("loaded 7 roles and 4 bindings from 7 files"),
        "{}",
        r.summary()
    );
    // The RoleBindingList binds prometheus-k8s in default, kube-system and monitoring only.
    let ks = who_can(&["get", "pods", "-n", "kube-system", &kube_prometheus()]);
    assert_eq!(
        labels(&ks),
        set(&[MASTERS, "ServiceAccount monitoring/prometheus-k8s"])
    );
    let other = who_can(&["get", "pods", "-n", "other", &kube_prometheus()]);
    assert_eq!(labels(&other), set(&[MASTERS]));
}

#[test]
fn metrics_reader_aggregates_into_admin_but_writes_no_pods() {
    // system:aggregated-metrics-reader carries the aggregate-to-admin/edit/view labels, so it
    // is aggregated into admin, edit and view, but its `pods` are in metrics.k8s.io.
    let r = pod_writers(&[&bootstrap(), &kube_prometheus()]);
    let mut want = bootstrap_writer_labels();
    want.insert("ClusterRole prometheus-operator".into());
    assert_eq!(labels(&r), want);
    let admin = find(&r, "ClusterRole admin");
    assert!(
        admin["aggregated_from"]
            .as_array()
            .unwrap()
            .contains(&"system:aggregated-metrics-reader".into()),
        "{admin}"
    );
    assert!(admin["grants"]
        .as_array()
        .unwrap()
        .iter()
        .all(|g| g["from_role"] == "system:aggregate-to-edit"));
    // view now aggregates it too, and still writes nothing.
    assert!(!labels(&r).contains("ClusterRole view"));
    assert!(!labels(&r).contains("ClusterRole system:aggregated-metrics-reader"));
}

fn kubehound() -> String {
    fx("kubehound/test/setup/test-cluster/attacks")
}

#[test]
fn kubehound_pod_writers() {
    let r = pod_writers(&[&kubehound()]);
    // In: create-pods (create pods, apiGroups `*` includes core), patch-pods (patch pods),
    // exec-pods (create pods/exec), and the two `admin` Roles of ROLE_BIND_ALL (`*` on `*`, in
    // default and in vault). Out: impersonate (users/groups), the rolebind-* roles (RBAC only).
    assert_eq!(
        labels(&r),
        set(&[
            "Role default/admin",
            "Role default/create-pods",
            "Role default/exec-pods",
            "Role default/patch-pods",
            "Role vault/admin",
        ])
    );
    assert_eq!(
        grants(&find(&r, "Role default/create-pods")),
        pairs(&[("create", "pods")])
    );
    assert_eq!(
        grants(&find(&r, "Role default/patch-pods")),
        pairs(&[("patch", "pods")])
    );
    assert_eq!(
        grants(&find(&r, "Role default/exec-pods")),
        pairs(&[("create", "pods/exec")])
    );
    let cp = find(&r, "Role default/create-pods");
    assert_eq!(bound(&cp), set(&["ServiceAccount default/pod-create-sa"]));
    assert_eq!(cp["bound_subjects"][0]["scope_namespace"], "default");
    assert!(bound(&find(&r, "Role vault/admin")).is_empty());
    // These Roles carry their namespace: nothing is defaulted even when a default is given.
    let r = pod_writers(&[&kubehound(), "--default-namespace", "elsewhere"]);
    assert!(
        !r.summary().contains("--default-namespace"),
        "{}",
        r.summary()
    );
    assert_eq!(labels(&r).len(), 5);
}

/// `path → subjects other than system:masters` from `rbac role-admins --format json`.
fn admin_table(paths: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let mut args = vec!["role-admins", "--format", "json", "-q"];
    args.extend_from_slice(paths);
    let mut table: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in rbac(&args).ok().values() {
        let e = table
            .entry(row["path"].as_str().unwrap().to_string())
            .or_default();
        if label(&row) != MASTERS {
            e.insert(label(&row));
        }
    }
    table
}

#[test]
fn kubehound_role_bind_edges() {
    let t = admin_table(&[&kubehound()]);
    // create rolebindings: from ClusterRoles bound by CRB (crb-cr-rb-*), from ClusterRoles bound
    // by RoleBindings in default (rb-cr-rb-*), from Roles (rb-r-rb-*, and the group/user
    // bindings of ROLE_BIND_RB_R-UG).
    assert_eq!(
        t["create-rolebindings"],
        set(&[
            "Group group-rb-r-rb-crb",
            "Group group-rb-r-rb-r",
            "ServiceAccount default/rolebind-sa-crb-cr-rb-cr",
            "ServiceAccount default/rolebind-sa-crb-cr-rb-r",
            "ServiceAccount default/rolebind-sa-rb-cr-rb-cr",
            "ServiceAccount default/rolebind-sa-rb-cr-rb-r",
            "ServiceAccount default/rolebind-sa-rb-r-rb-crb",
            "ServiceAccount default/rolebind-sa-rb-r-rb-r",
            "User user-rb-r-rb-crb",
            "User user-rb-r-rb-r",
        ])
    );
    // create clusterrolebindings: only through ClusterRoleBindings. The `*-fail` scenarios that
    // get it from a RoleBinding (rb-cr-crb-cr-fail, rb-r-crb-cr-fail) are inert: KubeHound
    // expects them to fail, and RBAC agrees (cluster-scoped request, RoleBindings never apply).
    assert_eq!(
        t["create-clusterrolebindings"],
        set(&[
            "ServiceAccount default/rolebind-sa-crb-cr-crb-cr",
            "ServiceAccount default/rolebind-sa-crb-cr-crb-r-fail",
        ])
    );
    // bind on Roles, in default: Role rolebind-rb-r-rb-r (SA, group, user), ClusterRoles with
    // `bind roles` bound by CRB (crb-cr-crb-r-fail, crb-cr-rb-r) or by RoleBinding (rb-cr-rb-r).
    assert_eq!(
        t["bind-roles"],
        set(&[
            "Group group-rb-r-rb-r",
            "ServiceAccount default/rolebind-sa-crb-cr-crb-r-fail",
            "ServiceAccount default/rolebind-sa-crb-cr-rb-r",
            "ServiceAccount default/rolebind-sa-rb-cr-rb-r",
            "ServiceAccount default/rolebind-sa-rb-r-rb-r",
            "User user-rb-r-rb-r",
        ])
    );
    // IDENTITY_IMPERSONATE grants impersonate on users/groups through a RoleBinding: users and
    // groups are cluster-scoped, so it grants nothing.
    assert!(t["impersonate-users"].is_empty(), "{t:?}");
    assert!(t["impersonate-groups"].is_empty(), "{t:?}");
}

#[test]
fn kubehound_bind_clusterroles_through_role_bindings() {
    // Upstream pkg/registry/rbac/escalation_check.go, BindingAuthorized: "check against the
    // namespace where the binding is being created ... this allows delegation to bind
    // particular clusterroles in rolebindings within particular namespaces". KubeHound's own
    // test cluster expects these edges to work (their names have no `-fail`):
    // ROLE_BIND_RB_CR-SA rolebind-rb-cr-rb-cr (RB → ClusterRole: create rolebindings + bind
    // clusterroles) and ROLE_BIND_RB_R-SA rolebind-rb-r-rb-crb (RB → Role: the same).
    // Minimal input: ROLE_BIND_RB_CR-SA.yaml alone.
    let t = admin_table(&[&kubehound()]);
    for s in [
        "ServiceAccount default/rolebind-sa-rb-cr-rb-cr",
        "ServiceAccount default/rolebind-sa-rb-r-rb-crb",
        "Group group-rb-r-rb-crb",
        "User user-rb-r-rb-crb",
    ] {
        assert!(t["bind-clusterroles"].contains(s), "{s}: {t:?}");
    }
    let r = who_can(&[
        "bind",
        "clusterroles",
        "--api-group",
        "rbac.authorization.k8s.io",
        "-n",
        "default",
        &fx("kubehound/test/setup/test-cluster/attacks/ROLE_BIND_RB_CR-SA.yaml"),
    ]);
    assert!(
        labels(&r).contains("ServiceAccount default/rolebind-sa-rb-cr-rb-cr"),
        "{r:#?}"
    );
}

fn rbac_tool(rel: &str) -> String {
    fx(&format!("rbac-tool/testdata/{rel}"))
}

#[test]
fn rbac_tool_pod_writers_and_kube_version() {
    let dir = fx("rbac-tool");
    // In: pod-creator (create, update pods), test-clusterrole-create (create pods),
    // test-aggregate (stored with `rules: []`, aggregates test-clusterrole-create), and the two
    // policyrules Roles, whose `get` on `*` in core includes get on pods/exec, attach and
    // portforward (exec before 1.35). Out: the readers, impersonator, nonresourceurl-reader.
    let always = [
        "ClusterRole test-aggregate",
        "ClusterRole test-clusterrole-create",
        "Role test/pod-creator",
    ];
    let mut want = set(&always);
    want.insert("Role policyrules/more-rules".into());
    want.insert("Role policyrules/some-rules".into());
    assert_eq!(labels(&pod_writers(&[&dir])), want);
    assert_eq!(
        labels(&pod_writers(&[&dir, "--kube-version", "1.34"])),
        want
    );
    assert_eq!(
        labels(&pod_writers(&[&dir, "--kube-version", "1.35"])),
        set(&always)
    );
    let r = pod_writers(&[&dir]);
    let agg = find(&r, "ClusterRole test-aggregate");
    assert_eq!(
        agg["aggregated_from"],
        serde_json::json!(["test-clusterrole-create", "test-clusterrole-reader"])
    );
    assert_eq!(grants(&agg), pairs(&[("create", "pods")]));
    assert_eq!(agg["grants"][0]["from_role"], "test-clusterrole-create");
    assert_eq!(
        grants(&find(&r, "Role policyrules/some-rules")),
        pairs(&[
            ("get", "pods/attach"),
            ("get", "pods/exec"),
            ("get", "pods/portforward")
        ])
    );
}

#[test]
fn rbac_tool_who_can_expectations() {
    // Each file's header comment gives rbac-tool's expected who-can answer; RBAC agrees on
    // these (system:masters added).
    let r = who_can(&[
        "create",
        "pods",
        &rbac_tool("whocan/clusterrole-aggregate.yaml"),
    ]);
    assert_eq!(
        labels(&r),
        set(&[
            MASTERS,
            "Group test-aggregate-group",
            "ServiceAccount test/test-aggregate-sa",
            "User test-aggregate-user",
        ])
    );
    let r = who_can(&["create", "pods", &rbac_tool("whocan/pod-creator.yaml")]);
    assert_eq!(
        labels(&r),
        set(&[
            MASTERS,
            "Group test-pod-creator-group",
            "ServiceAccount test/test-pod-creator-sa",
            "User test-pod-creator-user",
        ])
    );
    // The Role lives in test: nowhere else.
    let r = who_can(&[
        "create",
        "pods",
        "-n",
        "default",
        &rbac_tool("whocan/pod-creator.yaml"),
    ]);
    assert_eq!(labels(&r), set(&[MASTERS]));
    let r = who_can(&["get", "secrets", &rbac_tool("whocan/secret-reader.yaml")]);
    assert_eq!(
        labels(&r),
        set(&[
            MASTERS,
            "ServiceAccount test/test-secret-reader-sa",
            "User test-secret-reader",
        ])
    );
    // resourceNames [some-secret]: allowed for that name; without a name, shown narrowed.
    let file = rbac_tool("whocan/specific-resource-reader.yaml");
    let named = who_can(&[
        "get",
        "secrets",
        "-n",
        "test",
        "--name",
        "some-secret",
        &file,
    ]);
    let want = set(&[
        MASTERS,
        "ServiceAccount test/test-specific-secret-reader-sa",
        "User test-specific-secret-reader",
    ]);
    assert_eq!(labels(&named), want);
    let other = who_can(&["get", "secrets", "-n", "test", "--name", "other", &file]);
    assert_eq!(labels(&other), set(&[MASTERS]));
    let any = who_can(&["get", "secrets", "-n", "test", &file]);
    assert_eq!(labels(&any), want);
    let u = find(&any, "User test-specific-secret-reader");
    assert_eq!(
        vias(&u)[0]["only_names"],
        serde_json::json!(["some-secret"])
    );
    // list carries no name: a name-restricted rule never allows it.
    let list = who_can(&["list", "secrets", "-n", "test", &file]);
    assert_eq!(labels(&list), set(&[MASTERS]));
}

#[test]
fn rbac_tool_divergences_role_bindings_are_namespaced() {
    // nonresourceurl-reader.yaml expects User test-nonresourceurl-reader to `get /test-reader`,
    // but the ClusterRole is bound by a RoleBinding, and RoleBindings never grant non-resource
    // URLs: only system:masters can.
    let r = who_can(&[
        "get",
        "--url",
        "/test-reader",
        &rbac_tool("whocan/nonresourceurl-reader.yaml"),
    ]);
    assert_eq!(labels(&r), set(&[MASTERS]));
    // impersonator.yaml: the RoleBinding in test grants impersonate on serviceaccounts there
    // (namespaced), but not on users or groups (cluster-scoped).
    let file = rbac_tool("whocan/impersonator.yaml");
    let r = who_can(&["impersonate", "serviceaccounts", "-A", &file]);
    assert_eq!(labels(&r), set(&[MASTERS, "User test-impersonator-user"]));
    assert_eq!(
        vias(&find(&r, "User test-impersonator-user"))[0]["namespace"],
        "test"
    );
    for res in ["users", "groups"] {
        let r = who_can(&["impersonate", res, &file]);
        assert_eq!(labels(&r), set(&[MASTERS]), "{res}");
    }
}

#[test]
fn kubescape_pods_slash_star_is_not_a_wildcard() {
    // exec-into-container-v1/clusterrole: ClusterRole secret-reader allows create on `pods/*`,
    // bound to User dave in default. kubescape's expected.json says dave can exec; upstream
    // RBAC matches `pods/*` only against the literal subresource `*`.
    let dir = fx("kubescape-regolibrary/rules/exec-into-container-v1/test/clusterrole/input");
    let r = pod_writers(&[&dir]);
    assert!(r.values().is_empty(), "{r:#?}");
    let text = rbac(&["pod-writers", &dir, "-q"]).ok();
    assert_eq!(text.stdout.trim_end(), "0 roles grant write on pods");
    let r = who_can(&["create", "pods/exec", "-n", "default", &dir]);
    assert_eq!(labels(&r), set(&[MASTERS]));
}

#[test]
fn kubescape_create_pod_cases() {
    // clusterrole-clusterrolebinding: `pods` in apiGroup rbac.authorization.k8s.io is not core
    // pods (kubescape expects no finding either).
    let base = "kubescape-regolibrary/rules/rule-can-create-pod/test";
    let r = pod_writers(&[&fx(&format!("{base}/clusterrole-clusterrolebinding/input"))]);
    assert!(r.values().is_empty(), "{r:#?}");
    // role-rolebinding: Role kube-system/test has `*` verbs on pods in `*` groups, bound to
    // User jane by RoleBinding pod in kube-system.
    let r = pod_writers(&[&fx(&format!("{base}/role-rolebinding/input"))]);
    assert_eq!(labels(&r), set(&["Role kube-system/test"]));
    let w = find(&r, "Role kube-system/test");
    assert_eq!(bound(&w), set(&["User jane"]));
    assert_eq!(w["bound_subjects"][0]["binding"], "pod");
    assert_eq!(w["bound_subjects"][0]["scope_namespace"], "kube-system");
}

#[test]
fn ingress_nginx_rendered_chart() {
    let file = fx("ingress-nginx/deploy/static/provider/cloud/deploy.yaml");
    let r = pod_writers(&[&file]);
    // Its roles read pods (get/list/watch, list/watch) and write none.
    assert!(r.values().is_empty(), "{r:#?}");
    assert_eq!(
        r.summary(),
        "kubeward: loaded 4 roles and 4 bindings from 1 files; 11 other objects skipped (1 ConfigMap, \
         1 Deployment, 1 IngressClass, 2 Job, 1 Namespace, 2 Service, 2 ServiceAccount, \
         1 ValidatingWebhookConfiguration)"
    );
    // get pods: the Role ingress-nginx, in ingress-nginx only (the ClusterRole has list/watch).
    let sa = "ServiceAccount ingress-nginx/ingress-nginx";
    let r = who_can(&["get", "pods", "-n", "ingress-nginx", &file]);
    assert_eq!(labels(&r), set(&[MASTERS, sa]));
    let r = who_can(&["get", "pods", "-n", "default", &file]);
    assert_eq!(labels(&r), set(&[MASTERS]));
    // list pods: the ClusterRole through the ClusterRoleBinding, everywhere.
    let r = who_can(&["list", "pods", "-n", "default", &file]);
    assert_eq!(labels(&r), set(&[MASTERS, sa]));
}

#[test]
fn rbac_manager_has_no_pod_write_but_every_rbac_path() {
    let dir = fx("rbac-manager");
    assert!(pod_writers(&[&dir]).values().is_empty());
    // `*` on `*` in rbac.authorization.k8s.io and authorization.k8s.io, `*` on core
    // serviceaccounts. No users, groups (core) or uids (authentication.k8s.io).
    let t = admin_table(&[&dir]);
    let sa = set(&["ServiceAccount rbac-manager/rbac-manager"]);
    for (path, subjects) in &t {
        match path.as_str() {
            "impersonate-users" | "impersonate-groups" | "impersonate-uids" => {
                assert!(subjects.is_empty(), "{path}: {subjects:?}")
            }
            _ => assert_eq!(*subjects, sa, "{path}"),
        }
    }
    assert_eq!(t.len(), 16);
}

// ---------------------------------------------------------------------------------------------
// A small snapshot: scoping, subjects, names, subresources, URLs
// ---------------------------------------------------------------------------------------------

const SNAPSHOT: &str = r#"
# pod-editor: create pods.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: pod-editor}
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [create]
---
# A ServiceAccount without namespace in a RoleBinding: dev/builder.
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: dev-builder, namespace: dev}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pod-editor}
subjects:
- {kind: ServiceAccount, name: builder}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: prod-alice, namespace: prod}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pod-editor}
subjects:
- {kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: ci-everywhere}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pod-editor}
subjects:
- {kind: Group, name: "system:serviceaccounts:ci", apiGroup: rbac.authorization.k8s.io}
---
# A User subject named as a service account is that service account.
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: ci-runner, namespace: ci}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pod-editor}
subjects:
- {kind: User, name: "system:serviceaccount:ci:runner", apiGroup: rbac.authorization.k8s.io}
---
# nodes through a RoleBinding: inert (cluster-scoped). pods: fine, in dev.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: node-reader}
rules:
- apiGroups: [""]
  resources: [nodes, pods]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: dev-nodes, namespace: dev}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: node-reader}
subjects:
- {kind: User, name: bob, apiGroup: rbac.authorization.k8s.io}
---
# Bindings to roles that do not exist grant nothing.
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: latent, namespace: dev}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: not-created-yet}
subjects:
- {kind: User, name: eve, apiGroup: rbac.authorization.k8s.io}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: latent-everywhere}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: not-created-yet}
subjects:
- {kind: User, name: eve, apiGroup: rbac.authorization.k8s.io}
---
# Name-restricted: delete p1 works; create never carries a name, so it never works.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: p1-only}
rules:
- apiGroups: [""]
  resources: [pods]
  resourceNames: [p1]
  verbs: [create, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: carol-p1, namespace: dev}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: p1-only}
subjects:
- {kind: User, name: carol, apiGroup: rbac.authorization.k8s.io}
---
# `pods/*` names the literal subresource `*`: no real request matches it.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: pods-slash-star}
rules:
- apiGroups: [""]
  resources: ["pods/*"]
  verbs: [create, get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: dave-pods-slash-star, namespace: dev}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pods-slash-star}
subjects:
- {kind: User, name: dave, apiGroup: rbac.authorization.k8s.io}
---
# `*/exec` matches the exec subresource of any resource.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: star-exec}
rules:
- apiGroups: [""]
  resources: ["*/exec"]
  verbs: [create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: erin-star-exec, namespace: dev}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: star-exec}
subjects:
- {kind: User, name: erin, apiGroup: rbac.authorization.k8s.io}
---
# A trailing-`*` URL: granted by the ClusterRoleBinding, never by the RoleBinding.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: metrics-scraper}
rules:
- nonResourceURLs: ["/metr*"]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: frank-metrics}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: metrics-scraper}
subjects:
- {kind: User, name: frank, apiGroup: rbac.authorization.k8s.io}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: grace-metrics, namespace: dev}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: metrics-scraper}
subjects:
- {kind: User, name: grace, apiGroup: rbac.authorization.k8s.io}
"#;

/// Writes [`SNAPSHOT`] into a temporary directory.
fn snapshot() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "snapshot.yaml", SNAPSHOT);
    (dir, p)
}

/// `who-can ARGS SNAPSHOT`, as labels.
fn ask(snap: &str, args: &[&str]) -> BTreeSet<String> {
    let mut all = args.to_vec();
    all.push(snap);
    labels(&who_can(&all))
}

#[test]
fn who_can_scopes_role_bindings_to_their_namespace() {
    let (_d, s) = snapshot();
    let ci_group = "Group system:serviceaccounts:ci";
    let builder = "ServiceAccount dev/builder";
    let runner = "ServiceAccount ci/runner";
    // Everywhere: each RoleBinding in its namespace, the CRB everywhere. carol's create is
    // name-restricted (never allowed), eve's bindings have no role.
    assert_eq!(
        ask(&s, &["create", "pods", "-A"]),
        set(&[MASTERS, ci_group, builder, runner, "User alice"])
    );
    assert_eq!(
        ask(&s, &["create", "pods", "-n", "dev"]),
        set(&[MASTERS, ci_group, builder])
    );
    assert_eq!(
        ask(&s, &["create", "pods", "-n", "prod"]),
        set(&[MASTERS, ci_group, "User alice"])
    );
    assert_eq!(
        ask(&s, &["create", "pods", "-n", "ci"]),
        set(&[MASTERS, ci_group, runner])
    );
    assert_eq!(
        ask(&s, &["create", "pods", "-n", "staging"]),
        set(&[MASTERS, ci_group])
    );
    // The namespace-less ServiceAccount took the RoleBinding's namespace.
    let r = who_can(&["create", "pods", "-n", "dev", &s]);
    let v = vias(&find(&r, builder));
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["binding_kind"], "RoleBinding");
    assert_eq!(v[0]["binding"], "dev-builder");
    assert_eq!(v[0]["role_kind"], "ClusterRole");
    assert_eq!(v[0]["role"], "pod-editor");
    assert_eq!(v[0]["namespace"], "dev");
    let g = find(&r, ci_group);
    assert!(g["via"][0]["namespace"].is_null());
    assert!(g["note"].as_str().unwrap().contains("namespace ci"), "{g}");
    // The User named system:serviceaccount:ci:runner is reported as that ServiceAccount.
    let r = who_can(&["create", "pods", "-n", "ci", &s]);
    assert_eq!(find(&r, runner)["via"][0]["binding"], "ci-runner");
}

#[test]
fn who_can_role_bindings_never_grant_cluster_scoped_resources() {
    let (_d, s) = snapshot();
    // bob's RoleBinding grants get on nodes and pods in dev: pods yes, nodes never.
    assert_eq!(
        ask(&s, &["get", "pods", "-n", "dev"]),
        set(&[MASTERS, "User bob"])
    );
    for args in [
        &["get", "nodes"][..],
        &["get", "nodes", "-A"],
        &["get", "nodes", "-n", "dev"],
    ] {
        assert_eq!(ask(&s, args), set(&[MASTERS]), "{args:?}");
    }
}

#[test]
fn who_can_resource_names() {
    let (_d, s) = snapshot();
    let r = who_can(&["delete", "pods", "-n", "dev", &s]);
    assert_eq!(labels(&r), set(&[MASTERS, "User carol"]));
    assert_eq!(
        vias(&find(&r, "User carol"))[0]["only_names"],
        serde_json::json!(["p1"])
    );
    assert_eq!(
        ask(&s, &["delete", "pods", "-n", "dev", "--name", "p1"]),
        set(&[MASTERS, "User carol"])
    );
    let r = who_can(&["delete", "pods", "-n", "dev", "--name", "p1", &s]);
    assert!(
        vias(&find(&r, "User carol"))[0].get("only_names").is_none(),
        "asked about p1 itself: no narrowing"
    );
    assert_eq!(
        ask(&s, &["delete", "pods", "-n", "dev", "--name", "p2"]),
        set(&[MASTERS])
    );
    // carol's rule lists create too, but a create carries no name.
    assert!(!ask(&s, &["create", "pods", "-A"]).contains("User carol"));
    // Elsewhere than dev, her RoleBinding does not apply.
    assert_eq!(ask(&s, &["delete", "pods", "-n", "prod"]), set(&[MASTERS]));
}

#[test]
fn who_can_create_with_name_ignores_resource_names() {
    // Minimal input: ClusterRole p1-only (create pods, resourceNames [p1]) bound to User carol
    // in dev. Upstream requestinfo: POST .../namespaces/dev/pods has no name, so a rule with
    // resourceNames never allows a create (docs: "You cannot restrict create or
    // deletecollection requests by their resource name"); podwrite.rs says the same.
    let (_d, s) = snapshot();
    let got = ask(&s, &["create", "pods", "-n", "dev", "--name", "p1"]);
    assert!(!got.contains("User carol"), "{got:?}");
}

#[test]
fn who_can_subresources() {
    let (_d, s) = snapshot();
    // erin: `*/exec` allows pods/exec. dave: `pods/*` does not. pod-editor's `pods` does not
    // cover pods/exec.
    assert_eq!(
        ask(&s, &["create", "pods/exec", "-A"]),
        set(&[MASTERS, "User erin"])
    );
    assert_eq!(
        ask(&s, &["create", "pods/exec", "-n", "dev"]),
        set(&[MASTERS, "User erin"])
    );
    assert_eq!(ask(&s, &["get", "pods/log", "-A"]), set(&[MASTERS]));
}

#[test]
fn who_can_non_resource_urls() {
    let (_d, s) = snapshot();
    // `/metr*` matches /metrics; only frank's ClusterRoleBinding grants it, not grace's
    // RoleBinding, whatever the namespace asked.
    assert_eq!(
        ask(&s, &["get", "--url", "/metrics"]),
        set(&[MASTERS, "User frank"])
    );
    assert_eq!(
        ask(&s, &["get", "--url", "/metrics", "-n", "dev"]),
        set(&[MASTERS, "User frank"])
    );
    assert_eq!(ask(&s, &["get", "--url", "/healthz"]), set(&[MASTERS]));
    assert_eq!(ask(&s, &["post", "--url", "/metrics"]), set(&[MASTERS]));
}

#[test]
fn pod_writers_of_the_snapshot() {
    let (_d, s) = snapshot();
    let r = pod_writers(&[&s]);
    // pod-editor (create), p1-only (delete p1 only), star-exec (create */exec). Not
    // pods-slash-star, node-reader, metrics-scraper.
    assert_eq!(
        labels(&r),
        set(&[
            "ClusterRole p1-only",
            "ClusterRole pod-editor",
            "ClusterRole star-exec",
        ])
    );
    let p1 = find(&r, "ClusterRole p1-only");
    assert_eq!(grants(&p1), pairs(&[("delete", "pods")]));
    assert_eq!(p1["grants"][0]["resource_names"], serde_json::json!(["p1"]));
    assert_eq!(
        grants(&find(&r, "ClusterRole star-exec")),
        pairs(&[("create", "pods/exec")])
    );
    assert_eq!(
        bound(&find(&r, "ClusterRole pod-editor")),
        set(&[
            "Group system:serviceaccounts:ci",
            "ServiceAccount ci/runner",
            "ServiceAccount dev/builder",
            "User alice",
        ])
    );
}

#[test]
fn check_identities_of_the_snapshot() {
    let (_d, s) = snapshot();
    let check = |user: &str| {
        rbac(&["check", &s, "--as", user, "--format", "json", "-q"])
            .ok()
            .alert()
    };
    let b = check("system:serviceaccount:dev:builder");
    assert_eq!(b["cluster_wide"], serde_json::json!([]));
    let ns: Vec<&String> = b["namespaces"].as_object().unwrap().keys().collect();
    assert_eq!(ns, ["dev"]);
    assert_eq!(b["namespaces"]["dev"][0]["capability"], "create pods");
    // runner: everywhere through its namespace's group, and in ci through the User subject.
    let r = check("system:serviceaccount:ci:runner");
    assert_eq!(r["cluster_wide"][0]["capability"], "create pods");
    assert_eq!(
        r["cluster_wide"][0]["via"],
        "ClusterRoleBinding ci-everywhere → ClusterRole pod-editor"
    );
    assert_eq!(r["namespaces"]["ci"][0]["capability"], "create pods");
    // The same name in another namespace gets nothing.
    let p = check("system:serviceaccount:prod:builder");
    assert_eq!(p["cluster_wide"], serde_json::json!([]));
    assert_eq!(p["namespaces"], serde_json::json!({}));
    let c = check("carol");
    assert_eq!(
        c["namespaces"]["dev"][0]["resource_names"],
        serde_json::json!(["p1"])
    );
    // eve's bindings point at roles that do not exist.
    let e = check("eve");
    assert_eq!(e["cluster_wide"], serde_json::json!([]));
    assert_eq!(e["namespaces"], serde_json::json!({}));
}

// ---------------------------------------------------------------------------------------------
// Formats, errors, versions
// ---------------------------------------------------------------------------------------------

#[test]
fn dot_output() {
    let (_d, s) = snapshot();
    for args in [
        vec!["pod-writers", "--format", "dot", "-q", &s],
        vec!["who-can", "create", "pods", "--format", "dot", "-q", &s],
        vec!["pod-writers", "--format", "dot", "-q", &bootstrap()],
    ] {
        let r = rbac(&args).ok();
        assert!(r.stdout.starts_with("digraph "), "{args:?}: {}", r.stdout);
        assert!(r.stdout.trim_end().ends_with('}'), "{args:?}: {}", r.stdout);
    }
    let r = rbac(&["who-can", "create", "pods", "--format", "dot", "-q", &s]).ok();
    assert!(
        r.stdout.contains(
            "\"User alice\" -> \"ClusterRole pod-editor\" [label=\"RoleBinding prod-alice\"];"
        ),
        "{}",
        r.stdout
    );
    for args in [
        vec!["role-admins", "--format", "dot", &s],
        vec!["check", "--as", "alice", "--format", "dot", &s],
    ] {
        let r = rbac(&args);
        assert_eq!(r.code, 2, "{args:?}: {r:#?}");
        assert!(r.stdout.is_empty(), "{r:#?}");
        assert!(
            r.stderr
                .contains("--format dot is available for pod-writers and who-can"),
            "{r:#?}"
        );
    }
}

#[test]
fn missing_snapshot_path_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-snapshot.yaml");
    let missing = missing.to_str().unwrap();
    for args in [
        vec!["pod-writers", missing],
        vec!["who-can", "create", "pods", missing],
        vec!["role-admins", missing],
        vec!["check", "--as", "alice", missing],
    ] {
        let r = rbac(&args);
        assert_eq!(r.code, 2, "{args:?}: {r:#?}");
        assert!(r.stdout.is_empty(), "{r:#?}");
        assert!(
            r.stderr
                .contains(&format!("{missing}: no such file or directory")),
            "{r:#?}"
        );
    }
}

#[test]
fn no_snapshot_at_all_is_an_error() {
    for args in [
        vec!["pod-writers"],
        vec!["role-admins"],
        vec!["check", "--as", "alice"],
        vec!["who-can", "create", "pods"],
    ] {
        let r = rbac(&args);
        assert_eq!(r.code, 2, "{args:?}: {r:#?}");
        assert!(
            r.stderr.contains("give at least one SNAPSHOT"),
            "{args:?}: {r:#?}"
        );
    }
    // who-can without a resource, or without anything.
    let r = rbac(&["who-can", "create"]);
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(r.stderr.contains("RESOURCE"), "{r:#?}");
    assert_eq!(rbac(&["who-can"]).code, 2);
}

#[test]
fn bad_document_is_reported_and_the_rest_loads() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "mixed.yaml",
        "kind: ClusterRole\nmetadata: {name: first}\nrules: [{apiGroups: [\"\"], resources: [pods], verbs: [create]}]\n\
         ---\nkind: ClusterRole\nmetadata: {name: [broken\n\
         ---\nkind: ClusterRole\nmetadata: {name: third}\nrules: [{apiGroups: [\"\"], resources: [pods], verbs: [delete]}]\n",
    );
    let r = pod_writers(&[&p]);
    assert_eq!(labels(&r), set(&["ClusterRole first", "ClusterRole third"]));
    // Documents are numbered from 1, as lines are: the broken one is the second.
    assert!(
        r.stderr
            .lines()
            .any(|l| l.starts_with(&format!("kubeward: {p} document 2: invalid YAML"))),
        "{}",
        r.stderr
    );
    assert!(
        r.summary().ends_with("; 1 documents could not be read"),
        "{}",
        r.summary()
    );
}

#[test]
fn option_errors() {
    let (_d, s) = snapshot();
    let r = rbac(&["who-can", "create", "pods", "-n", "dev", "-A", &s]);
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(r.stderr.contains("not both"), "{r:#?}");
    let r = rbac(&["pod-writers", "--kube-version", "banana", &s]);
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(r.stderr.contains("--kube-version \"banana\""), "{r:#?}");
}

#[test]
fn kube_version_decides_get_on_exec() {
    let dir = tempfile::tempdir().unwrap();
    // `get` on `*` in core includes get on pods/exec, pods/attach and pods/portforward: a
    // WebSocket exec before 1.35, nothing from 1.35 on.
    let p = write(
        dir.path(),
        "reader.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: read-everything}\n\
         rules:\n- apiGroups: [\"\"]\n  resources: [\"*\"]\n  verbs: [get, list, watch]\n",
    );
    let r = pod_writers(&[&p]);
    assert_eq!(labels(&r), set(&["ClusterRole read-everything"]));
    assert_eq!(
        grants(&find(&r, "ClusterRole read-everything")),
        pairs(&[
            ("get", "pods/attach"),
            ("get", "pods/exec"),
            ("get", "pods/portforward")
        ])
    );
    for v in ["1.34", "v1.29.4-eks-1", "1.29+"] {
        assert_eq!(
            labels(&pod_writers(&[&p, "--kube-version", v])).len(),
            1,
            "{v}"
        );
    }
    for v in ["1.35", "v1.35.2", "1.36", "2.0"] {
        assert!(
            pod_writers(&[&p, "--kube-version", v]).values().is_empty(),
            "{v}"
        );
    }
}

#[test]
fn closed_stdout_is_not_an_error() {
    // Minimal input: any snapshot whose output is larger than the pipe buffer, read partly.
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::new();
    for i in 0..3000 {
        yaml.push_str(&format!(
            "---\nkind: ClusterRole\nmetadata: {{name: writer-{i}}}\nrules: [{{apiGroups: [\"\"], resources: [pods], verbs: [create]}}]\n"
        ));
    }
    let p = write(dir.path(), "many.yaml", yaml);
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubeward"))
        .args(["rbac", "pod-writers", "--format", "json", "-q", &p])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kubeward");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("read a line");
    // The reader (and so the pipe's read end) is dropped here, like `head -1` exiting.
    assert!(first.starts_with('{'), "{first}");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
}

#[test]
fn latent_bindings_are_named_on_stderr() {
    // controller-role-bindings.yaml binds system:controller:podcheckpoint-controller, whose
    // ClusterRole is in none of the files.
    let r = pod_writers(&[&bootstrap()]);
    let latent: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("kubeward: latent binding: "))
        .collect();
    assert_eq!(
        latent,
        vec!["kubeward: latent binding: ClusterRoleBinding system:controller:podcheckpoint-controller → ClusterRole system:controller:podcheckpoint-controller does not exist; it grants nothing until that role is created, then ServiceAccount kube-system/podcheckpoint-controller would get it"]
    );
}
