//! The resolved RBAC model: aggregation, binding scope, subjects, and the questions asked of
//! it (who can, what can this identity do, which roles write pods, who can change roles).
//!
//! Semantics follow upstream: `pkg/registry/rbac/validation/rule.go` (which bindings apply),
//! the clusterrole aggregation controller, and `system:masters` being allowed everything before
//! RBAC is asked.

use crate::objects::{Binding, BindingKind, Role, RoleKind, Subject};
use crate::podwrite::{role_pod_write, PodWriteGrant, PodWriteOptions};
use crate::rule::{rule_allows, PolicyRule, Request};
use crate::snapshot::Snapshot;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The group whose members the API server allows everything, RBAC or not.
pub const MASTERS: &str = "system:masters";

/// A rule in a role's effective rules, with the role that defines it.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveRule {
    /// The rule.
    pub rule: PolicyRule,
    /// Name of the role whose own rule it is (the role itself, or an aggregated one).
    pub from: String,
}

/// A snapshot with aggregation resolved and lookups built.
pub struct Model<'s> {
    /// The objects.
    pub snap: &'s Snapshot,
    /// Effective rules of each role (same index as `snap.roles`).
    pub effective: Vec<Vec<EffectiveRule>>,
    /// For aggregating ClusterRoles: the roles their selectors pick, by name.
    pub aggregated_from: Vec<Vec<String>>,
    cluster_roles: HashMap<&'s str, usize>,
    roles: HashMap<(&'s str, &'s str), usize>,
}

/// Resolves every `aggregationRule` to its least fixed point.
///
/// The controller replaces an aggregating role's rules with the rules of every ClusterRole its
/// selectors pick (sorted by name, itself skipped, equal rules once), and re-runs on every
/// change, so chains (view → edit → admin) settle. Starting aggregating roles empty and
/// iterating until nothing changes gives that settled state whatever the order of roles, and
/// ends on cycles too (rules only ever get added).
pub fn resolve_aggregation(roles: &[Role]) -> (Vec<Vec<EffectiveRule>>, Vec<Vec<String>>) {
    let own = |r: &Role| {
        r.rules
            .iter()
            .map(|x| EffectiveRule {
                rule: x.clone(),
                from: r.name.clone(),
            })
            .collect::<Vec<_>>()
    };
    let mut eff: Vec<Vec<EffectiveRule>> = roles
        .iter()
        .map(|r| {
            if r.aggregation.is_some() {
                Vec::new()
            } else {
                own(r)
            }
        })
        .collect();
    let mut by_name: Vec<usize> = (0..roles.len())
        .filter(|&i| roles[i].kind == RoleKind::ClusterRole)
        .collect();
    by_name.sort_by(|&a, &b| roles[a].name.cmp(&roles[b].name));
    let aggregating: Vec<usize> = by_name
        .iter()
        .copied()
        .filter(|&i| roles[i].aggregation.is_some())
        .collect();
    let mut picked: Vec<Vec<String>> = vec![Vec::new(); roles.len()];
    for &a in &aggregating {
        let sels = roles[a].aggregation.as_deref().unwrap_or(&[]);
        let mut names = BTreeSet::new();
        for s in sels {
            for &j in &by_name {
                if j != a && s.matches(&roles[j].labels) {
                    names.insert(roles[j].name.clone());
                }
            }
        }
        picked[a] = names.into_iter().collect();
    }
    // Each round can only add rules, so this ends; the bound is a guard, not the exit.
    for _ in 0..=aggregating.len() + 1 {
        // Every aggregating role is recomputed from the previous round's values, so the result
        // does not depend on the order roles are visited in.
        let mut updates = Vec::new();
        for &a in &aggregating {
            let sels = roles[a].aggregation.as_deref().unwrap_or(&[]);
            let mut list: Vec<EffectiveRule> = Vec::new();
            let mut have: std::collections::HashSet<&PolicyRule> = std::collections::HashSet::new();
            for s in sels {
                for &j in &by_name {
                    if j == a || !s.matches(&roles[j].labels) {
                        continue;
                    }
                    for r in &eff[j] {
                        if have.insert(&r.rule) {
                            list.push(r.clone());
                        }
                    }
                }
            }
            if list != eff[a] {
                updates.push((a, list));
            }
        }
        if updates.is_empty() {
            break;
        }
        for (a, list) in updates {
            eff[a] = list;
        }
    }
    (eff, picked)
}

/// How a subject gets an answer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Via {
    /// `ClusterRoleBinding`, `RoleBinding`, or `PrivilegedGroup` for system:masters.
    pub binding_kind: String,
    /// Binding name.
    pub binding: String,
    /// `ClusterRole` or `Role`.
    pub role_kind: String,
    /// Role name.
    pub role: String,
    /// `null` for cluster-wide; the namespace where a RoleBinding grants.
    pub namespace: Option<String>,
    /// When only named objects are allowed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub only_names: Vec<String>,
}

/// A subject allowed something, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grantee {
    /// `User`, `Group` or `ServiceAccount`.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Namespace (ServiceAccounts).
    pub namespace: Option<String>,
    /// Every binding and role that allows it.
    pub via: Vec<Via>,
    /// What the subject stands for, when it is an implicit or special group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The subjects of these bindings (all of one role), as the authorizer reads them, and notes on
/// bindings that grant nothing (no subjects, a ServiceAccount without a namespace in a
/// ClusterRoleBinding).
pub fn bound_subjects_of<'b>(
    bindings: impl IntoIterator<Item = &'b Binding>,
) -> (Vec<BoundSubject>, Vec<String>) {
    let mut subs = Vec::new();
    let mut notes = Vec::new();
    for b in bindings {
        if b.subjects.is_empty() {
            notes.push(format!("{} {} has no subjects", b.kind, b.name));
        }
        for s in &b.subjects {
            let Some(eff) = b.effective_subject(s) else {
                notes.push(format!(
                    "{} {}: ServiceAccount {} has no namespace and never matches",
                    b.kind, b.name, s.name
                ));
                continue;
            };
            let n = normalize(&eff);
            subs.push(BoundSubject {
                note: if n.kind == "Group" {
                    group_note(&n.name)
                } else {
                    None
                },
                kind: n.kind,
                name: n.name,
                namespace: n.namespace,
                binding_kind: b.kind,
                binding: b.name.clone(),
                scope_namespace: b.namespace.clone(),
            });
        }
    }
    (subs, notes)
}

/// The answer to a who-can question: the subjects found, each with how, plus `system:masters`
/// (the authorizer allows its members everything before RBAC is asked).
pub(crate) fn grantees(mut by: BTreeMap<Subject, Vec<Via>>) -> Vec<Grantee> {
    let masters = Subject {
        kind: "Group".into(),
        name: MASTERS.into(),
        namespace: None,
    };
    by.entry(masters).or_default().push(Via {
        binding_kind: "PrivilegedGroup".into(),
        binding: "(authorizer: system:masters is allowed everything)".into(),
        role_kind: String::new(),
        role: String::new(),
        namespace: None,
        only_names: Vec::new(),
    });
    by.into_iter()
        .map(|(s, mut via)| {
            via.sort();
            via.dedup();
            Grantee {
                note: if s.kind == "Group" {
                    group_note(&s.name)
                } else {
                    None
                },
                kind: s.kind,
                name: s.name,
                namespace: s.namespace,
                via,
            }
        })
        .collect()
}

/// Where a who-can question is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Cluster-wide only (ClusterRoleBindings): cluster-scoped resources and URLs.
    Cluster,
    /// In one namespace.
    Namespace(String),
    /// In any namespace (each RoleBinding in its own).
    AllNamespaces,
}

/// A who-can question.
#[derive(Debug, Clone)]
pub struct Question {
    /// Verb.
    pub verb: String,
    /// API group (`""` core).
    pub api_group: String,
    /// Resource (`pods`); empty for a URL question.
    pub resource: String,
    /// Subresource or `""`.
    pub subresource: String,
    /// Object name or `""` (requests without a name).
    pub name: String,
    /// Non-resource URL path, for URL questions.
    pub url: Option<String>,
    /// Where.
    pub scope: Scope,
}

/// Resources that are cluster-scoped: RoleBindings never grant them.
pub const CLUSTER_SCOPED: &[&str] = &[
    "nodes",
    "namespaces",
    "persistentvolumes",
    "clusterroles",
    "clusterrolebindings",
    "customresourcedefinitions",
    "apiservices",
    "storageclasses",
    "csidrivers",
    "csinodes",
    "volumeattachments",
    "priorityclasses",
    "runtimeclasses",
    "ingressclasses",
    "certificatesigningrequests",
    "mutatingwebhookconfigurations",
    "validatingwebhookconfigurations",
    "validatingadmissionpolicies",
    "validatingadmissionpolicybindings",
    "mutatingadmissionpolicies",
    "mutatingadmissionpolicybindings",
    "tokenreviews",
    "subjectaccessreviews",
    "selfsubjectaccessreviews",
    "selfsubjectrulesreviews",
    "selfsubjectreviews",
    "componentstatuses",
    "podsecuritypolicies",
    "flowschemas",
    "prioritylevelconfigurations",
    "clustertrustbundles",
    "deviceclasses",
    "ipaddresses",
    "servicecidrs",
    "users",
    "groups",
    "userextras",
    "uids",
];

/// Whether a request on `resource` is cluster-scoped, so that RoleBindings never grant it.
///
/// `bind` on `clusterroles` is the exception: creating a RoleBinding to a ClusterRole asks for
/// `bind` in the RoleBinding's namespace (`BindingAuthorized`), so RoleBindings there count.
pub fn is_cluster_scoped(verb: &str, resource: &str) -> bool {
    CLUSTER_SCOPED.contains(&resource) && !(verb == "bind" && resource == "clusterroles")
}

/// What an implicit or special group stands for.
pub fn group_note(name: &str) -> Option<String> {
    Some(match name {
        "system:authenticated" => {
            "every authenticated identity (users and service accounts)".into()
        }
        "system:unauthenticated" => "anonymous requests".into(),
        "system:serviceaccounts" => "every service account in every namespace".into(),
        MASTERS => "members bypass RBAC: the API server allows them everything".into(),
        "system:nodes" => {
            "every kubelet (also limited by the Node authorizer and NodeRestriction)".into()
        }
        n => match n.strip_prefix("system:serviceaccounts:") {
            Some(ns) => format!("every service account in namespace {ns}"),
            None => return None,
        },
    })
}

/// A subject as answers show it: a User named `system:serviceaccount:NS:NAME` is that
/// service account, since that is the user name the account authenticates as.
pub fn normalize(s: &Subject) -> Subject {
    if s.kind == "User" {
        if let Some(rest) = s.name.strip_prefix("system:serviceaccount:") {
            if let Some((ns, name)) = rest.split_once(':') {
                return Subject {
                    kind: "ServiceAccount".into(),
                    name: name.into(),
                    namespace: Some(ns.into()),
                };
            }
        }
    }
    s.clone()
}

/// The groups every request of this subject is in, whatever its credentials say: what a
/// binding to one of them gives, the subject already has. Empty for groups (their members are
/// not known).
pub fn implicit_groups(s: &Subject) -> Vec<Subject> {
    let group = |name: String| Subject {
        kind: "Group".into(),
        name,
        namespace: None,
    };
    let s = normalize(s);
    match s.kind.as_str() {
        "ServiceAccount" => {
            let mut out = vec![
                group("system:authenticated".into()),
                group("system:serviceaccounts".into()),
            ];
            if let Some(ns) = s.namespace.as_deref().filter(|n| !n.is_empty()) {
                out.push(group(format!("system:serviceaccounts:{ns}")));
            }
            out
        }
        "User" if s.name == "system:anonymous" => vec![group("system:unauthenticated".into())],
        "User" => vec![group("system:authenticated".into())],
        _ => Vec::new(),
    }
}

/// An identity, for "what can this identity do".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User name.
    pub user: String,
    /// Groups, with the implicit ones added by [`Identity::new`].
    pub groups: Vec<String>,
}

impl Identity {
    /// The identity as the API server authenticates it: `system:authenticated` for everyone
    /// but `system:anonymous` (who is in `system:unauthenticated`), and the service-account
    /// groups for `system:serviceaccount:NS:NAME`.
    pub fn new(user: &str, groups: &[String]) -> Identity {
        let mut g: Vec<String> = groups.to_vec();
        let mut add = |x: String| {
            if !g.contains(&x) {
                g.push(x);
            }
        };
        if user == "system:anonymous" {
            add("system:unauthenticated".into());
        } else if !groups
            .iter()
            .any(|x| x == "system:authenticated" || x == "system:unauthenticated")
        {
            add("system:authenticated".into());
        }
        if let Some((ns, _)) = user
            .strip_prefix("system:serviceaccount:")
            .and_then(|r| r.split_once(':'))
        {
            add("system:serviceaccounts".into());
            add(format!("system:serviceaccounts:{ns}"));
        }
        Identity {
            user: user.into(),
            groups: g,
        }
    }

    /// Whether a binding subject applies to this identity (`appliesToUser`).
    pub fn matches(&self, b: &Binding, s: &Subject) -> bool {
        match s.kind.as_str() {
            "User" => s.name == self.user,
            "Group" => self.groups.contains(&s.name),
            "ServiceAccount" => match b.effective_subject(s) {
                Some(e) => {
                    self.user
                        == format!(
                            "system:serviceaccount:{}:{}",
                            e.namespace.unwrap_or_default(),
                            e.name
                        )
                }
                None => false,
            },
            _ => false,
        }
    }
}

/// A pod-writing role, for `rbac pod-writers`.
#[derive(Debug, Clone, Serialize)]
pub struct PodWriter {
    /// `ClusterRole` or `Role`.
    pub kind: RoleKind,
    /// Name.
    pub name: String,
    /// Namespace (Roles).
    pub namespace: Option<String>,
    /// Each grant, with the role whose own rule gives it.
    pub grants: Vec<SourcedGrant>,
    /// For aggregated roles: the roles its selectors pick.
    pub aggregated_from: Vec<String>,
    /// Who is bound, through which binding, where.
    pub bound_subjects: Vec<BoundSubject>,
    /// Bindings that name this role but grant nothing yet (e.g. no subjects).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A pod-write grant and where it comes from.
#[derive(Debug, Clone, Serialize)]
pub struct SourcedGrant {
    /// The grant.
    #[serde(flatten)]
    pub grant: PodWriteGrant,
    /// The capability in words.
    pub words: String,
    /// The role whose own rule gives it (`own rule` when the role itself).
    pub from_role: String,
}

/// A subject bound to a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BoundSubject {
    /// The subject (normalized).
    pub kind: String,
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: Option<String>,
    /// Binding kind.
    pub binding_kind: BindingKind,
    /// Binding name.
    pub binding: String,
    /// `null`: everywhere; otherwise the namespace it grants in.
    pub scope_namespace: Option<String>,
    /// What the subject stands for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl<'s> Model<'s> {
    /// Builds the model: resolves aggregation and indexes roles.
    pub fn new(snap: &'s Snapshot) -> Self {
        let (effective, aggregated_from) = resolve_aggregation(&snap.roles);
        let mut cluster_roles = HashMap::new();
        let mut roles = HashMap::new();
        for (i, r) in snap.roles.iter().enumerate() {
            match r.kind {
                RoleKind::ClusterRole => {
                    cluster_roles.entry(r.name.as_str()).or_insert(i);
                }
                RoleKind::Role => {
                    roles
                        .entry((r.namespace.as_deref().unwrap_or(""), r.name.as_str()))
                        .or_insert(i);
                }
            }
        }
        Model {
            snap,
            effective,
            aggregated_from,
            cluster_roles,
            roles,
        }
    }

    /// The index of the role a binding grants; `None` when it does not exist (latent).
    pub fn bound_role(&self, b: &Binding) -> Option<usize> {
        match (b.role_ref.kind.as_str(), b.kind) {
            ("ClusterRole", _) => self.cluster_roles.get(b.role_ref.name.as_str()).copied(),
            ("Role", BindingKind::RoleBinding) => self
                .roles
                .get(&(
                    b.namespace.as_deref().unwrap_or(""),
                    b.role_ref.name.as_str(),
                ))
                .copied(),
            _ => None,
        }
    }

    /// Bindings whose role does not exist: they grant nothing now and become live when it is
    /// created.
    pub fn latent_bindings(&self) -> Vec<&'s Binding> {
        self.snap
            .bindings
            .iter()
            .filter(|b| self.bound_role(b).is_none())
            .collect()
    }

    /// Effective rules of a role, as plain rules.
    pub fn rules_of(&self, i: usize) -> Vec<PolicyRule> {
        self.effective[i].iter().map(|r| r.rule.clone()).collect()
    }

    /// Whether a role allows the question's request; `Some(names)` when only for named objects
    /// (the question had no name, and the request could carry one).
    fn role_allows(&self, i: usize, q: &Question) -> Option<Vec<String>> {
        // Top-level create and deletecollection reach the authorizer without a name, whatever
        // object the client means: a name-restricted rule never allows them.
        let always_nameless =
            q.subresource.is_empty() && matches!(q.verb.as_str(), "create" | "deletecollection");
        let asked_name: &str = if always_nameless { "" } else { &q.name };
        let req = |name| match &q.url {
            Some(path) => Request::NonResource {
                verb: &q.verb,
                path,
            },
            None => Request::Resource {
                verb: &q.verb,
                api_group: &q.api_group,
                resource: &q.resource,
                subresource: &q.subresource,
                name,
            },
        };
        let mut names = BTreeSet::new();
        for r in &self.effective[i] {
            if rule_allows(&r.rule, &req(asked_name)) {
                return Some(Vec::new());
            }
            // Requests that carry a name (get, update, delete, subresources) are allowed on the
            // listed objects; top-level create, list, watch and deletecollection never are.
            let nameless_verb = q.subresource.is_empty()
                && matches!(
                    q.verb.as_str(),
                    "create" | "list" | "watch" | "deletecollection"
                );
            if q.url.is_none() && q.name.is_empty() && !nameless_verb {
                for n in &r.rule.resource_names {
                    if !n.is_empty() && rule_allows(&r.rule, &req(n)) {
                        names.insert(n.clone());
                    }
                }
            }
        }
        (!names.is_empty()).then(|| names.into_iter().collect())
    }

    /// Every subject allowed the request, with each binding and role that allows it.
    /// `system:masters` is always in the answer.
    pub fn who_can(&self, q: &Question) -> Vec<Grantee> {
        let cluster_scoped = q.url.is_some() || is_cluster_scoped(&q.verb, &q.resource);
        let mut by: BTreeMap<Subject, Vec<Via>> = BTreeMap::new();
        for b in &self.snap.bindings {
            let in_scope = match b.kind {
                BindingKind::ClusterRoleBinding => true,
                BindingKind::RoleBinding => {
                    !cluster_scoped
                        && match &q.scope {
                            Scope::Cluster => false,
                            Scope::Namespace(ns) => b.namespace.as_deref() == Some(ns.as_str()),
                            Scope::AllNamespaces => true,
                        }
                }
            };
            if !in_scope {
                continue;
            }
            let Some(ri) = self.bound_role(b) else {
                continue;
            };
            let Some(only_names) = self.role_allows(ri, q) else {
                continue;
            };
            let role = &self.snap.roles[ri];
            for s in &b.subjects {
                let Some(eff) = b.effective_subject(s) else {
                    continue;
                };
                by.entry(normalize(&eff)).or_default().push(Via {
                    binding_kind: b.kind.to_string(),
                    binding: b.name.clone(),
                    role_kind: role.kind.to_string(),
                    role: role.name.clone(),
                    namespace: match b.kind {
                        BindingKind::ClusterRoleBinding => None,
                        BindingKind::RoleBinding => b.namespace.clone(),
                    },
                    only_names: only_names.clone(),
                });
            }
        }
        grantees(by)
    }

    /// Every ClusterRole and Role that grants pod write, with grants, provenance and subjects.
    pub fn pod_writers(&self, opts: PodWriteOptions) -> Vec<PodWriter> {
        let mut out = Vec::new();
        for (i, role) in self.snap.roles.iter().enumerate() {
            let rules = self.rules_of(i);
            let grants = role_pod_write(&rules, opts);
            if grants.is_empty() {
                continue;
            }
            let sourced = grants
                .into_iter()
                .map(|g| {
                    let from = &self.effective[i][g.rule_index].from;
                    SourcedGrant {
                        words: g.capability.words(),
                        from_role: if *from == role.name {
                            "own rule".into()
                        } else {
                            from.clone()
                        },
                        grant: g,
                    }
                })
                .collect();
            let (bound_subjects, notes) = self.bound_subjects(i);
            out.push(PodWriter {
                kind: role.kind,
                name: role.name.clone(),
                namespace: role.namespace.clone(),
                grants: sourced,
                aggregated_from: self.aggregated_from[i].clone(),
                bound_subjects,
                notes,
            });
        }
        out
    }

    /// The subjects bound to role `i`, and notes on bindings that grant nothing.
    pub fn bound_subjects(&self, i: usize) -> (Vec<BoundSubject>, Vec<String>) {
        bound_subjects_of(
            self.snap
                .bindings
                .iter()
                .filter(|b| self.bound_role(b) == Some(i)),
        )
    }

    /// The rules that apply to an identity: cluster-wide (ClusterRoleBindings) and per
    /// namespace (RoleBindings), each with the binding and role they come through.
    pub fn rules_for(&self, id: &Identity) -> IdentityRules {
        let mut out = IdentityRules {
            masters: id.groups.iter().any(|g| g == MASTERS),
            ..Default::default()
        };
        for b in &self.snap.bindings {
            if !b.subjects.iter().any(|s| id.matches(b, s)) {
                continue;
            }
            let Some(ri) = self.bound_role(b) else {
                continue;
            };
            let role = &self.snap.roles[ri];
            let via = format!("{} {} → {} {}", b.kind, b.name, role.kind, role.name);
            let entry = (via, self.rules_of(ri));
            match b.kind {
                BindingKind::ClusterRoleBinding => out.cluster.push(entry),
                BindingKind::RoleBinding => out
                    .namespaces
                    .entry(b.namespace.clone().unwrap_or_default())
                    .or_default()
                    .push(entry),
            }
        }
        out
    }
}

/// An identity's rules by scope.
#[derive(Debug, Default)]
pub struct IdentityRules {
    /// In `system:masters`: allowed everything regardless of rules.
    pub masters: bool,
    /// (via, rules) from ClusterRoleBindings.
    pub cluster: Vec<(String, Vec<PolicyRule>)>,
    /// Namespace → (via, rules) from RoleBindings there.
    pub namespaces: BTreeMap<String, Vec<(String, Vec<PolicyRule>)>>,
}

/// One path to granting oneself pod write, for `rbac role-admins`.
#[derive(Debug, Clone, Copy)]
pub struct AdminPath {
    /// Short id.
    pub id: &'static str,
    /// Verb.
    pub verb: &'static str,
    /// API group.
    pub api_group: &'static str,
    /// Resource.
    pub resource: &'static str,
    /// Whether it is asked in every namespace (namespaced resource) or cluster-wide.
    pub namespaced: bool,
    /// What it lets the subject do, in one line.
    pub explain: &'static str,
}

/// The paths to granting oneself (or anyone) pod write through RBAC.
pub const ADMIN_PATHS: &[AdminPath] = &[
    AdminPath { id: "create-clusterroles", verb: "create", api_group: "rbac.authorization.k8s.io", resource: "clusterroles", namespaced: false, explain: "can create ClusterRoles: with pod write in them if it holds pod write itself, or holds escalate" },
    AdminPath { id: "update-clusterroles", verb: "update", api_group: "rbac.authorization.k8s.io", resource: "clusterroles", namespaced: false, explain: "can rewrite existing ClusterRoles, and so what everyone bound to them may do" },
    AdminPath { id: "patch-clusterroles", verb: "patch", api_group: "rbac.authorization.k8s.io", resource: "clusterroles", namespaced: false, explain: "can patch existing ClusterRoles (labels included: an aggregate-to-edit label feeds edit and admin)" },
    AdminPath { id: "escalate-clusterroles", verb: "escalate", api_group: "rbac.authorization.k8s.io", resource: "clusterroles", namespaced: false, explain: "holds escalate: may put any permission, pod write included, into ClusterRoles it can write" },
    AdminPath { id: "bind-clusterroles", verb: "bind", api_group: "rbac.authorization.k8s.io", resource: "clusterroles", namespaced: true, explain: "holds bind: may bind any ClusterRole (cluster-admin included) without holding its rules (through a RoleBinding: in that namespace only)" },
    AdminPath { id: "create-clusterrolebindings", verb: "create", api_group: "rbac.authorization.k8s.io", resource: "clusterrolebindings", namespaced: false, explain: "can create ClusterRoleBindings: hands out any role whose rules it holds (any role with bind)" },
    AdminPath { id: "update-clusterrolebindings", verb: "update", api_group: "rbac.authorization.k8s.io", resource: "clusterrolebindings", namespaced: false, explain: "can add subjects to existing ClusterRoleBindings" },
    AdminPath { id: "patch-clusterrolebindings", verb: "patch", api_group: "rbac.authorization.k8s.io", resource: "clusterrolebindings", namespaced: false, explain: "can add subjects to existing ClusterRoleBindings" },
    AdminPath { id: "create-roles", verb: "create", api_group: "rbac.authorization.k8s.io", resource: "roles", namespaced: true, explain: "can create Roles in a namespace: pod write there if it holds it, or holds escalate" },
    AdminPath { id: "escalate-roles", verb: "escalate", api_group: "rbac.authorization.k8s.io", resource: "roles", namespaced: true, explain: "holds escalate on Roles: may put any permission into Roles it can write" },
    AdminPath { id: "bind-roles", verb: "bind", api_group: "rbac.authorization.k8s.io", resource: "roles", namespaced: true, explain: "holds bind on Roles: may bind Roles without holding their rules" },
    AdminPath { id: "create-rolebindings", verb: "create", api_group: "rbac.authorization.k8s.io", resource: "rolebindings", namespaced: true, explain: "can create RoleBindings: grants a namespace's worth of any ClusterRole whose rules it holds (any with bind)" },
    AdminPath { id: "impersonate-users", verb: "impersonate", api_group: "", resource: "users", namespaced: false, explain: "can impersonate users: acts as anyone, cluster admins included" },
    AdminPath { id: "impersonate-groups", verb: "impersonate", api_group: "", resource: "groups", namespaced: false, explain: "can impersonate groups: system:masters means everything" },
    AdminPath { id: "impersonate-serviceaccounts", verb: "impersonate", api_group: "", resource: "serviceaccounts", namespaced: true, explain: "can impersonate service accounts: acts as any of them" },
    AdminPath { id: "impersonate-uids", verb: "impersonate", api_group: "authentication.k8s.io", resource: "uids", namespaced: false, explain: "can impersonate user UIDs" },
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::LoadOptions;

    fn snap(yaml: &str) -> Snapshot {
        let mut s = Snapshot::default();
        s.load_text("t.yaml", yaml, &LoadOptions::default());
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        s
    }

    const AGG: &str = r#"
kind: ClusterRole
metadata: {name: admin}
aggregationRule:
  clusterRoleSelectors: [{matchLabels: {to-admin: "true"}}]
rules: null
---
kind: ClusterRole
metadata: {name: edit, labels: {to-admin: "true"}}
aggregationRule:
  clusterRoleSelectors: [{matchLabels: {to-edit: "true"}}]
---
kind: ClusterRole
metadata: {name: agg-edit, labels: {to-edit: "true"}}
rules: [{apiGroups: [""], resources: [pods], verbs: [create]}]
---
kind: ClusterRole
metadata: {name: agg-admin, labels: {to-admin: "true"}}
rules: [{apiGroups: [""], resources: [secrets], verbs: [get]}]
---
kind: ClusterRole
metadata: {name: loop-a, labels: {loop: "true"}}
aggregationRule: {clusterRoleSelectors: [{matchLabels: {loop: "true"}}]}
---
kind: ClusterRole
metadata: {name: loop-b, labels: {loop: "true"}}
aggregationRule: {clusterRoleSelectors: [{matchLabels: {loop: "true"}}, {matchLabels: {to-edit: "true"}}]}
"#;

    #[test]
    fn aggregation_chains_and_cycles() {
        let s = snap(AGG);
        let m = Model::new(&s);
        let idx = |n: &str| s.roles.iter().position(|r| r.name == n).unwrap();
        let names = |i: usize| {
            m.effective[i]
                .iter()
                .map(|r| r.from.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(idx("edit")), vec!["agg-edit"]);
        assert_eq!(names(idx("admin")), vec!["agg-admin", "agg-edit"]);
        assert_eq!(m.aggregated_from[idx("admin")], vec!["agg-admin", "edit"]);
        // A cycle settles on the union of what is reachable.
        assert_eq!(names(idx("loop-a")), vec!["agg-edit"]);
        assert_eq!(names(idx("loop-b")), vec!["agg-edit"]);
        // Order of roles in the input does not matter.
        let mut rev = s.clone();
        rev.roles.reverse();
        let m2 = Model::new(&rev);
        let idx2 = |n: &str| rev.roles.iter().position(|r| r.name == n).unwrap();
        for n in ["admin", "edit", "loop-a", "loop-b"] {
            assert_eq!(m.effective[idx(n)], m2.effective[idx2(n)], "{n}");
        }
    }

    #[test]
    fn who_can_scopes_and_subjects() {
        let s = snap(
            r#"
kind: ClusterRole
metadata: {name: pods-w}
rules: [{apiGroups: [""], resources: [pods], verbs: [create, delete]}, {apiGroups: [""], resources: [nodes], verbs: [get]}]
---
kind: ClusterRole
metadata: {name: named}
rules: [{apiGroups: [""], resources: [pods], verbs: [delete], resourceNames: [p1]}]
---
kind: ClusterRoleBinding
metadata: {name: crb}
roleRef: {kind: ClusterRole, name: pods-w}
subjects: [{kind: Group, name: system:authenticated}, {kind: ServiceAccount, name: nons}]
---
kind: RoleBinding
metadata: {name: rb, namespace: dev}
roleRef: {kind: ClusterRole, name: pods-w}
subjects: [{kind: ServiceAccount, name: builder}, {kind: User, name: "system:serviceaccount:ci:runner"}]
---
kind: RoleBinding
metadata: {name: rb2, namespace: prod}
roleRef: {kind: ClusterRole, name: named}
subjects: [{kind: User, name: bob}]
---
kind: RoleBinding
metadata: {name: latent, namespace: prod}
roleRef: {kind: Role, name: not-yet}
subjects: [{kind: User, name: eve}]
"#,
        );
        let m = Model::new(&s);
        let q = |verb: &str, res: &str, scope: Scope| Question {
            verb: verb.into(),
            api_group: String::new(),
            resource: res.into(),
            subresource: String::new(),
            name: String::new(),
            url: None,
            scope,
        };
        let who = |q: &Question| {
            m.who_can(q)
                .into_iter()
                .map(|g| format!("{}:{}:{}", g.kind, g.namespace.unwrap_or_default(), g.name))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            who(&q("create", "pods", Scope::AllNamespaces)),
            vec![
                "Group::system:authenticated",
                "Group::system:masters",
                "ServiceAccount:dev:builder",
                "ServiceAccount:ci:runner"
            ]
        );
        assert_eq!(
            who(&q("create", "pods", Scope::Namespace("prod".into()))),
            vec!["Group::system:authenticated", "Group::system:masters"]
        );
        // RoleBindings never grant cluster-scoped resources.
        assert_eq!(
            who(&q("get", "nodes", Scope::AllNamespaces)),
            vec!["Group::system:authenticated", "Group::system:masters"]
        );
        // Name-restricted delete shows up narrowed; name-restricted never answers create.
        let g = m.who_can(&q("delete", "pods", Scope::Namespace("prod".into())));
        let bob = g.iter().find(|g| g.name == "bob").unwrap();
        assert_eq!(bob.via[0].only_names, vec!["p1".to_string()]);
        assert_eq!(m.latent_bindings().len(), 1);

        let rules = m.rules_for(&Identity::new("system:serviceaccount:dev:builder", &[]));
        assert_eq!(rules.cluster.len(), 1, "system:authenticated is implicit");
        assert_eq!(rules.namespaces.get("dev").map(Vec::len), Some(1));
        let anon = m.rules_for(&Identity::new("system:anonymous", &[]));
        assert!(anon.cluster.is_empty());
    }
}
