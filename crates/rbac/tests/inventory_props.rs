//! `Inventory` answers what a `Model` built from scratch answers: after every step of a random
//! sequence of puts and removes (replacements, relabelling into and out of aggregation, roles
//! deleted under their bindings, subjects changing), the effective rules of every role, the
//! resolved aggregation, `bindings_to`, `bindings_of`, `bound_role`, `aggregators_selecting`
//! and `role_admins` equal what `Model::new(&inv.to_snapshot())` and plain scans of the
//! snapshot give. Questions are asked only at some steps, so the lazy caches are checked both
//! after one change and after many piled up. Sequences start empty or from the bootstrap
//! policy, whose names and aggregation labels the random objects reuse.

use proptest::prelude::*;
use rbac::model::normalize;
use rbac::objects::{LabelSelector, Operator, Origin, Requirement, RoleRef};
use rbac::{
    Binding, BindingKind, Grantee, Inventory, Model, ObjKind, PolicyRule, Question, Role, RoleKind,
    Scope, Snapshot, Subject,
};
use std::collections::{BTreeMap, BTreeSet};

const CLUSTER_ROLES: &[&str] = &[
    "c0",
    "c1",
    "c2",
    "edit",
    "cluster-admin",
    "system:aggregate-to-edit",
];
const ROLES: &[&str] = &["r0", "r1"];
const NAMESPACES: &[&str] = &["n0", "n1"];
const BINDINGS: &[&str] = &["b0", "b1", "b2", "cluster-admin"];
const LABELS: &[&str] = &[
    "l0",
    "l1",
    "rbac.authorization.k8s.io/aggregate-to-edit",
    "rbac.authorization.k8s.io/aggregate-to-view",
];
const RBAC: &str = "rbac.authorization.k8s.io";

fn rule(i: usize) -> PolicyRule {
    let crs = |verbs: &[&str]| PolicyRule::new(&[RBAC], &["clusterroles"], verbs);
    match i {
        0 => PolicyRule::new(&[""], &["pods"], &["get"]),
        1 => PolicyRule::new(&[""], &["pods"], &["create"]),
        2 => crs(&["create"]),
        3 => crs(&["update", "patch"]).with_names(&["c0"]),
        4 => crs(&["escalate"]),
        5 => PolicyRule::new(&["*"], &["*"], &["*"]),
        6 => crs(&["update", "create"]).with_names(&["c1", "c2"]),
        _ => PolicyRule::new(&[RBAC], &["*"], &["get", "list", "patch"]),
    }
}

fn selector(i: usize) -> LabelSelector {
    let req = |key: &str, operator| Requirement {
        key: key.into(),
        operator,
        values: vec![],
    };
    match i {
        0..=3 => LabelSelector {
            match_labels: BTreeMap::from([(LABELS[i].to_string(), "true".to_string())]),
            match_expressions: vec![],
        },
        4 => LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![
                req("l0", Operator::Exists),
                req("l1", Operator::DoesNotExist),
            ],
        },
        // Matches every role, itself excluded.
        _ => LabelSelector::default(),
    }
}

fn subject(i: usize) -> Subject {
    let s = |kind: &str, name: &str, ns: Option<&str>| Subject {
        kind: kind.into(),
        name: name.into(),
        namespace: ns.map(str::to_string),
    };
    match i {
        0 => s("User", "u0", None),
        1 => s("Group", "g0", None),
        // Takes a RoleBinding's namespace; never matches in a ClusterRoleBinding.
        2 => s("ServiceAccount", "sa0", None),
        3 => s("ServiceAccount", "sa0", Some("n0")),
        4 => s("User", "system:serviceaccount:n1:sa1", None),
        5 => s("ServiceAccount", "sa1", Some("n1")),
        _ => s("Group", "system:masters", None),
    }
}

#[derive(Debug, Clone)]
enum Op {
    PutClusterRole {
        name: usize,
        labels: Vec<usize>,
        selectors: Option<Vec<usize>>,
        rules: Vec<usize>,
    },
    PutRole {
        ns: usize,
        name: usize,
        rules: Vec<usize>,
    },
    PutBinding {
        cluster: bool,
        ns: usize,
        name: usize,
        to_cluster_role: bool,
        role: usize,
        subjects: Vec<usize>,
    },
    RemoveClusterRole(usize),
    RemoveRole(usize, usize),
    RemoveBinding {
        cluster: bool,
        ns: usize,
        name: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let idxs = |n: usize, max: usize| prop::collection::vec(0..n, 0..=max);
    prop_oneof![
        4 => (
            0..CLUSTER_ROLES.len(),
            idxs(LABELS.len(), 2),
            prop::option::weighted(0.35, idxs(6, 2)),
            idxs(8, 2),
        )
            .prop_map(|(name, labels, selectors, rules)| Op::PutClusterRole {
                name,
                labels,
                selectors,
                rules
            }),
        1 => (0..NAMESPACES.len(), 0..ROLES.len(), idxs(8, 2))
            .prop_map(|(ns, name, rules)| Op::PutRole { ns, name, rules }),
        4 => (
            any::<bool>(),
            0..NAMESPACES.len(),
            0..BINDINGS.len(),
            prop::bool::weighted(0.8),
            0..CLUSTER_ROLES.len(),
            idxs(7, 3),
        )
            .prop_map(|(cluster, ns, name, to_cluster_role, role, subjects)| {
                Op::PutBinding {
                    cluster,
                    ns,
                    name,
                    to_cluster_role,
                    role,
                    subjects,
                }
            }),
        2 => (0..CLUSTER_ROLES.len()).prop_map(Op::RemoveClusterRole),
        1 => (0..NAMESPACES.len(), 0..ROLES.len()).prop_map(|(a, b)| Op::RemoveRole(a, b)),
        2 => (any::<bool>(), 0..NAMESPACES.len(), 0..BINDINGS.len())
            .prop_map(|(cluster, ns, name)| Op::RemoveBinding { cluster, ns, name }),
    ]
}

/// Every object by key, as a plain map: the reference for what the inventory holds.
#[derive(Default)]
struct Shadow {
    roles: BTreeMap<(ObjKind, String, String), Role>,
    bindings: BTreeMap<(ObjKind, String, String), Binding>,
}

fn role_key(r: &Role) -> (ObjKind, String, String) {
    let ns = match r.kind {
        RoleKind::ClusterRole => String::new(),
        RoleKind::Role => r.namespace.clone().unwrap_or_default(),
    };
    (r.kind.into(), ns, r.name.clone())
}

fn binding_key(b: &Binding) -> (ObjKind, String, String) {
    let ns = match b.kind {
        BindingKind::ClusterRoleBinding => String::new(),
        BindingKind::RoleBinding => b.namespace.clone().unwrap_or_default(),
    };
    (b.kind.into(), ns, b.name.clone())
}

fn apply(inv: &mut Inventory, shadow: &mut Shadow, op: &Op) {
    match op {
        Op::PutClusterRole {
            name,
            labels,
            selectors,
            rules,
        } => {
            let r = Role {
                kind: RoleKind::ClusterRole,
                name: CLUSTER_ROLES[*name].into(),
                namespace: None,
                labels: labels
                    .iter()
                    .map(|&l| (LABELS[l].to_string(), "true".to_string()))
                    .collect(),
                rules: rules.iter().map(|&i| rule(i)).collect(),
                aggregation: selectors
                    .as_ref()
                    .map(|s| s.iter().map(|&i| selector(i)).collect()),
                origin: Origin::default(),
                defaulted_namespace: false,
                resource_version: None,
            };
            let want = shadow.roles.insert(role_key(&r), r.clone());
            assert_eq!(inv.put_role(r), want);
        }
        Op::PutRole { ns, name, rules } => {
            let r = Role {
                kind: RoleKind::Role,
                name: ROLES[*name].into(),
                namespace: Some(NAMESPACES[*ns].into()),
                labels: BTreeMap::new(),
                rules: rules.iter().map(|&i| rule(i)).collect(),
                aggregation: None,
                origin: Origin::default(),
                defaulted_namespace: false,
                resource_version: None,
            };
            let want = shadow.roles.insert(role_key(&r), r.clone());
            assert_eq!(inv.put_role(r), want);
        }
        Op::PutBinding {
            cluster,
            ns,
            name,
            to_cluster_role,
            role,
            subjects,
        } => {
            let b = Binding {
                kind: if *cluster {
                    BindingKind::ClusterRoleBinding
                } else {
                    BindingKind::RoleBinding
                },
                name: BINDINGS[*name].into(),
                namespace: (!cluster).then(|| NAMESPACES[*ns].to_string()),
                role_ref: if *to_cluster_role {
                    RoleRef {
                        kind: "ClusterRole".into(),
                        name: CLUSTER_ROLES[*role].into(),
                    }
                } else {
                    RoleRef {
                        kind: "Role".into(),
                        name: ROLES[role % ROLES.len()].into(),
                    }
                },
                subjects: subjects.iter().map(|&i| subject(i)).collect(),
                origin: Origin::default(),
                defaulted_namespace: false,
                resource_version: None,
            };
            let want = shadow.bindings.insert(binding_key(&b), b.clone());
            assert_eq!(inv.put_binding(b), want);
        }
        Op::RemoveClusterRole(name) => {
            let n = CLUSTER_ROLES[*name];
            let want = shadow
                .roles
                .remove(&(ObjKind::ClusterRole, String::new(), n.into()));
            assert_eq!(inv.remove_role(RoleKind::ClusterRole, "", n), want);
        }
        Op::RemoveRole(ns, name) => {
            let (ns, n) = (NAMESPACES[*ns], ROLES[*name]);
            let want = shadow.roles.remove(&(ObjKind::Role, ns.into(), n.into()));
            assert_eq!(inv.remove_role(RoleKind::Role, ns, n), want);
        }
        Op::RemoveBinding { cluster, ns, name } => {
            let (kind, ns) = if *cluster {
                (BindingKind::ClusterRoleBinding, "")
            } else {
                (BindingKind::RoleBinding, NAMESPACES[*ns])
            };
            let n = BINDINGS[*name];
            let want = shadow.bindings.remove(&(kind.into(), ns.into(), n.into()));
            assert_eq!(inv.remove_binding(kind, ns, n), want);
        }
    }
}

/// `Model::who_can` for the four role-admin verbs, merged per subject.
fn merged_who_can(m: &Model) -> Vec<Grantee> {
    let mut by: BTreeMap<Subject, Grantee> = BTreeMap::new();
    for verb in ["create", "update", "patch", "escalate"] {
        let q = Question {
            verb: verb.into(),
            api_group: RBAC.into(),
            resource: "clusterroles".into(),
            subresource: String::new(),
            name: String::new(),
            url: None,
            scope: Scope::Cluster,
        };
        for g in m.who_can(&q) {
            let key = Subject {
                kind: g.kind.clone(),
                name: g.name.clone(),
                namespace: g.namespace.clone(),
            };
            by.entry(key)
                .and_modify(|e| e.via.extend(g.via.clone()))
                .or_insert(g);
        }
    }
    by.into_values()
        .map(|mut g| {
            g.via.sort();
            g.via.dedup();
            g
        })
        .collect()
}

fn keys(bs: Vec<&Binding>) -> Vec<(ObjKind, String, String)> {
    bs.into_iter().map(binding_key).collect()
}

/// Every question, answered by the inventory and from scratch.
fn check(inv: &mut Inventory, shadow: &Shadow) -> Result<(), TestCaseError> {
    // Contents.
    let snap = inv.to_snapshot();
    let got_roles: BTreeMap<_, _> = snap
        .roles
        .iter()
        .map(|r| (role_key(r), r.clone()))
        .collect();
    let got_bindings: BTreeMap<_, _> = snap
        .bindings
        .iter()
        .map(|b| (binding_key(b), b.clone()))
        .collect();
    prop_assert_eq!(&got_roles, &shadow.roles);
    prop_assert_eq!(&got_bindings, &shadow.bindings);
    prop_assert_eq!(inv.len(), shadow.roles.len() + shadow.bindings.len());
    prop_assert_eq!(
        inv.is_empty(),
        shadow.roles.is_empty() && shadow.bindings.is_empty()
    );
    for (kind, ns, name) in shadow.roles.keys().chain(shadow.bindings.keys()) {
        prop_assert!(inv.contains(*kind, ns, name));
    }
    for name in CLUSTER_ROLES {
        let k = (ObjKind::ClusterRole, String::new(), name.to_string());
        prop_assert_eq!(
            inv.contains(ObjKind::ClusterRole, "", name),
            shadow.roles.contains_key(&k)
        );
    }

    let m = Model::new(&snap);

    // Effective rules and aggregation.
    let mut want_agg = BTreeMap::new();
    for (i, r) in snap.roles.iter().enumerate() {
        let ns = r.namespace.as_deref().unwrap_or("");
        prop_assert_eq!(
            inv.effective_rules(r.kind, ns, &r.name),
            Some(m.rules_of(i)),
            "effective rules of {} {}",
            r.kind,
            r.name
        );
        if r.kind == RoleKind::ClusterRole && r.aggregation.is_some() {
            want_agg.insert(r.name.clone(), m.rules_of(i));
        }
    }
    prop_assert_eq!(inv.aggregated(), &want_agg);
    for name in CLUSTER_ROLES {
        if inv.role(RoleKind::ClusterRole, "", name).is_none() {
            prop_assert_eq!(inv.effective_rules(RoleKind::ClusterRole, "", name), None);
        }
    }

    // Which aggregating roles pick each ClusterRole, as the model resolved it.
    for r in snap
        .roles
        .iter()
        .filter(|r| r.kind == RoleKind::ClusterRole)
    {
        let want: Vec<String> = snap
            .roles
            .iter()
            .zip(&m.aggregated_from)
            .filter(|(a, picked)| a.aggregation.is_some() && picked.contains(&r.name))
            .map(|(a, _)| a.name.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        prop_assert_eq!(
            inv.aggregators_selecting(&r.labels, Some(&r.name)),
            want,
            "aggregators of {}",
            r.name
        );
    }

    // bindings_to: every role key the bindings can name, present or not, by a plain scan;
    // for present roles also what the model says each binding grants.
    let mut sorted: Vec<&Binding> = snap.bindings.iter().collect();
    sorted.sort_by_key(|b| binding_key(b));
    let mut role_keys: BTreeSet<(RoleKind, String, String)> = CLUSTER_ROLES
        .iter()
        .map(|n| (RoleKind::ClusterRole, String::new(), n.to_string()))
        .collect();
    for ns in NAMESPACES {
        for n in ROLES {
            role_keys.insert((RoleKind::Role, ns.to_string(), n.to_string()));
        }
    }
    role_keys.extend(snap.roles.iter().map(|r| {
        let (_, ns, name) = role_key(r);
        (r.kind, ns, name)
    }));
    for (kind, ns, name) in &role_keys {
        let want: Vec<_> = sorted
            .iter()
            .filter(|b| match kind {
                RoleKind::ClusterRole => {
                    b.role_ref.kind == "ClusterRole" && b.role_ref.name == *name
                }
                RoleKind::Role => {
                    b.kind == BindingKind::RoleBinding
                        && b.role_ref.kind == "Role"
                        && b.role_ref.name == *name
                        && b.namespace.as_deref() == Some(ns.as_str())
                }
            })
            .map(|b| binding_key(b))
            .collect();
        prop_assert_eq!(
            keys(inv.bindings_to(*kind, ns, name)),
            want.clone(),
            "bindings to {} {}/{}",
            kind,
            ns,
            name
        );
        if let Some(i) = snap
            .roles
            .iter()
            .position(|r| r.kind == *kind && role_key(r).1 == *ns && r.name == *name)
        {
            let by_model: Vec<_> = sorted
                .iter()
                .filter(|b| m.bound_role(b) == Some(i))
                .map(|b| binding_key(b))
                .collect();
            prop_assert_eq!(by_model, want);
        }
    }
    for b in &snap.bindings {
        prop_assert_eq!(
            inv.bound_role(b).map(role_key),
            m.bound_role(b).map(|i| role_key(&snap.roles[i])),
            "bound role of {}",
            b.name
        );
    }

    // bindings_of: each subject as listed, and as normalized.
    for i in 0..7 {
        let q = subject(i);
        let want: Vec<_> = sorted
            .iter()
            .filter(|b| {
                b.subjects
                    .iter()
                    .any(|s| b.effective_subject(s).map(|e| normalize(&e)) == Some(normalize(&q)))
            })
            .map(|b| binding_key(b))
            .collect();
        prop_assert_eq!(keys(inv.bindings_of(&q)), want, "bindings of {}", q);
    }

    prop_assert_eq!(inv.role_admins(), merged_who_can(&m));
    Ok(())
}

fn run(start: Snapshot, ops: &[(Op, bool)]) -> Result<(), TestCaseError> {
    let mut inv = Inventory::from_snapshot(&start);
    let mut shadow = Shadow::default();
    for r in &start.roles {
        shadow.roles.insert(role_key(r), r.clone());
    }
    for b in &start.bindings {
        shadow.bindings.insert(binding_key(b), b.clone());
    }
    for (op, ask) in ops {
        let before_role = match op {
            Op::PutClusterRole { name, .. } | Op::RemoveClusterRole(name) => inv
                .role(RoleKind::ClusterRole, "", CLUSTER_ROLES[*name])
                .cloned(),
            _ => None,
        };
        // Only when asking: resolving here would keep the cache warm at every step.
        let agg_before = ask.then(|| inv.aggregated().clone());
        apply(&mut inv, &mut shadow, op);
        if let (Some(agg_before), Op::PutClusterRole { .. } | Op::RemoveClusterRole(_)) =
            (agg_before, op)
        {
            let after = match op {
                Op::PutClusterRole { name, .. } => {
                    inv.role(RoleKind::ClusterRole, "", CLUSTER_ROLES[*name])
                }
                _ => None,
            }
            .cloned();
            // Soundness of the cheap test: when it says no, nothing changed.
            if !inv.affects_aggregation(before_role.as_ref(), after.as_ref()) {
                prop_assert_eq!(inv.aggregated(), &agg_before, "{:?}", op);
            }
        }
        if *ask {
            check(&mut inv, &shadow)?;
        }
    }
    check(&mut inv, &shadow)?;
    // Built in one go from its own snapshot, an inventory answers the same.
    let mut again = Inventory::from_snapshot(&inv.to_snapshot());
    prop_assert_eq!(again.role_admins(), inv.role_admins());
    prop_assert_eq!(again.aggregated(), inv.aggregated());
    Ok(())
}

fn ops() -> impl Strategy<Value = Vec<(Op, bool)>> {
    prop::collection::vec((op(), prop::bool::weighted(0.3)), 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn answers_match_a_model_built_from_scratch(ops in ops()) {
        run(Snapshot::default(), &ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn answers_match_from_the_bootstrap_policy(ops in ops()) {
        run(rbac::bootstrap(), &ops)?;
    }
}

#[test]
fn bootstrap_has_no_load_errors_and_matches_the_data_dir() {
    let embedded = rbac::bootstrap();
    assert!(embedded.errors.is_empty(), "{:?}", embedded.errors);
    assert!(embedded.skipped.is_empty());
    let dir = std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/kubernetes-bootstrap"
    ));
    let on_disk = Snapshot::load(&[dir], &rbac::LoadOptions::default());
    assert!(on_disk.errors.is_empty(), "{:?}", on_disk.errors);
    // Same objects in the same order; only the origins' file names differ.
    let strip_roles = |s: &Snapshot| -> Vec<Role> {
        s.roles
            .iter()
            .map(|r| Role {
                origin: Origin {
                    file: String::new(),
                    ..r.origin.clone()
                },
                ..r.clone()
            })
            .collect()
    };
    let strip_bindings = |s: &Snapshot| -> Vec<Binding> {
        s.bindings
            .iter()
            .map(|b| Binding {
                origin: Origin {
                    file: String::new(),
                    ..b.origin.clone()
                },
                ..b.clone()
            })
            .collect()
    };
    assert_eq!(strip_roles(&embedded), strip_roles(&on_disk));
    assert_eq!(strip_bindings(&embedded), strip_bindings(&on_disk));
    assert_eq!(embedded.roles.len(), 76);
    assert_eq!(
        embedded.roles[0].origin.file,
        "kubernetes-bootstrap/cluster-roles.yaml"
    );
}

#[test]
fn bootstrap_aggregation_in_an_inventory() {
    let mut inv = Inventory::from_snapshot(&rbac::bootstrap());
    let edit_before = inv
        .effective_rules(RoleKind::ClusterRole, "", "edit")
        .unwrap();
    let admin_before = inv
        .effective_rules(RoleKind::ClusterRole, "", "admin")
        .unwrap();
    // A role labelled aggregate-to-view reaches view, edit and admin (view → edit → admin).
    let labels = BTreeMap::from([(
        "rbac.authorization.k8s.io/aggregate-to-view".to_string(),
        "true".to_string(),
    )]);
    assert_eq!(
        inv.aggregators_selecting(&labels, None),
        vec!["view".to_string()]
    );
    let extra = Role {
        kind: RoleKind::ClusterRole,
        name: "crd-reader".into(),
        namespace: None,
        labels,
        rules: vec![PolicyRule::new(&["example.com"], &["widgets"], &["get"])],
        aggregation: None,
        origin: Origin::default(),
        defaulted_namespace: false,
        resource_version: None,
    };
    assert!(inv.affects_aggregation(None, Some(&extra)));
    inv.put_role(extra.clone());
    for name in ["view", "edit", "admin"] {
        let rules = inv
            .effective_rules(RoleKind::ClusterRole, "", name)
            .unwrap();
        assert!(rules.contains(&extra.rules[0]), "{name}");
    }
    assert_eq!(
        inv.effective_rules(RoleKind::ClusterRole, "", "edit")
            .unwrap()
            .len(),
        edit_before.len() + 1
    );
    inv.remove_role(RoleKind::ClusterRole, "", "crd-reader");
    assert_eq!(
        inv.effective_rules(RoleKind::ClusterRole, "", "admin"),
        Some(admin_before)
    );
    // cluster-admin's binding is indexed under its role and its one subject.
    let to_ca = inv.bindings_to(RoleKind::ClusterRole, "", "cluster-admin");
    assert_eq!(to_ca.len(), 1);
    assert_eq!(to_ca[0].subjects[0].name, "system:masters");
}
