//! Judging a tree of manifests, and the difference between two trees.
//!
//! Pod write is decided by the `rbac` crate ([`rbac::role_pod_write`]) and described with the
//! detection's own words ([`detect::clusterrole_pod_write::summarize`]), so `kubeward scan`,
//! `kubeward git` and the audit-log alerts can never disagree on what a role grants.
//!
//! Aggregation is resolved as the controller does it, over the tree's ClusterRoles plus the
//! Kubernetes bootstrap roles the tree does not define: `admin`, `edit` and `view` exist in
//! every cluster, so a label that feeds them matters even when no manifest defines them, and a
//! binding to `edit` grants pod write whether or not `edit` is in the repository.

use crate::read::{Body, Kind, ManifestObject, ObjId};
use crate::set::ManifestSet;
use detect::alert::Grant;
use detect::clusterrole_pod_write::{newly_granted, summarize};
use rbac::model::{resolve_aggregation, EffectiveRule};
use rbac::objects::{Binding, Role, RoleKind, Subject};
use rbac::{role_pod_write, PodWriteGrant, PodWriteOptions, PolicyRule};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What happened to an object in a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    /// A role that did not exist appeared granting pod write.
    Introduced,
    /// An existing role now grants pod write it did not grant before.
    Widened,
    /// A binding of a pod-write role was created, or given new subjects.
    Bound,
    /// A pod-write ClusterRole was labelled so that an aggregating role picks it up.
    AggregationLabel,
    /// (`--role` only) the role's rules changed without granting anything new.
    RulesChanged,
    /// (`--role` only) the role was deleted.
    Deleted,
    /// (`--role` only) a binding of the role changed without new subjects (some removed).
    BindingChanged,
    /// (`--role` only) a binding of the role was deleted.
    BindingDeleted,
}

impl ChangeKind {
    /// The name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Introduced => "introduced",
            ChangeKind::Widened => "widened",
            ChangeKind::Bound => "bound",
            ChangeKind::AggregationLabel => "aggregation-label",
            ChangeKind::RulesChanged => "rules-changed",
            ChangeKind::Deleted => "deleted",
            ChangeKind::BindingChanged => "binding-changed",
            ChangeKind::BindingDeleted => "binding-deleted",
        }
    }

    /// Whether the change is one of the four that are reported without `--role`.
    pub fn is_grant(self) -> bool {
        matches!(
            self,
            ChangeKind::Introduced
                | ChangeKind::Widened
                | ChangeKind::Bound
                | ChangeKind::AggregationLabel
        )
    }
}

/// One change to one object between two trees.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// The manifest file that holds the object now (before, for a deletion).
    pub file: String,
    /// Document number in the file, from 1.
    pub document: usize,
    /// Line of the object in the file, from 1.
    pub line: usize,
    /// The changed object's kind (a role kind, or a binding kind).
    pub kind: Kind,
    /// Whether the object is namespaced (Role, RoleBinding).
    pub namespaced: bool,
    /// Namespace (empty: cluster-scoped, or left to deploy time).
    pub namespace: String,
    /// The changed object's name.
    pub name: String,
    /// The role's name; for a binding, the role it binds.
    pub role: String,
    /// `ClusterRole` or `Role`: the kind of `role`.
    pub role_kind: String,
    /// What happened.
    pub change: ChangeKind,
    /// The pod write this change hands out, in plain words (for a binding: what its new
    /// subjects gain; for a label: what the role feeds into the aggregating roles).
    pub newly_granted: Vec<Grant>,
    /// The role's rules before (roles only; absent when it did not exist).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules_before: Option<Vec<PolicyRule>>,
    /// The role's rules after (roles only; absent when deleted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules_after: Option<Vec<PolicyRule>>,
    /// A binding's subjects that are new.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subjects_added: Vec<Subject>,
    /// A binding's subjects that were removed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subjects_removed: Vec<Subject>,
    /// Aggregating ClusterRoles that take this role's rules (for a label change: those that
    /// started to).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aggregated_into: Vec<String>,
}

/// One pod-write finding in a tree (`kubeward scan`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// `pod-write-role` or `pod-write-binding`.
    pub rule_id: &'static str,
    /// File.
    pub file: String,
    /// Document number, from 1.
    pub document: usize,
    /// Line, from 1.
    pub line: usize,
    /// The object's kind.
    pub kind: Kind,
    /// Whether it is namespaced.
    pub namespaced: bool,
    /// Namespace (empty: cluster-scoped, or left to deploy time).
    pub namespace: String,
    /// The object's name.
    pub name: String,
    /// The role (for a binding: the role it binds).
    pub role: String,
    /// `ClusterRole` or `Role`.
    pub role_kind: String,
    /// Where the role is defined: `manifest`, or `kubernetes-bootstrap` for a binding to a
    /// role every cluster has (`admin`, `edit`, `cluster-admin`, ...).
    pub role_source: &'static str,
    /// What the role grants on pods, in plain words.
    pub grants: Vec<Grant>,
    /// A binding's subjects.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<Subject>,
    /// For an aggregating role: the roles its selectors pick.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aggregated_from: Vec<String>,
    /// Aggregating roles that take this role's rules.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aggregated_into: Vec<String>,
}

impl Finding {
    /// Identity of the finding for baselines: the object, not its file or line.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// Effective rules of the aggregating ClusterRoles of one tree.
#[derive(Debug, Clone, Default)]
pub struct Aggregation {
    /// Aggregating role name → its effective rules (each with the role that defines it).
    effective: BTreeMap<String, Vec<EffectiveRule>>,
    /// Aggregating role name → the roles its selectors pick.
    picked: BTreeMap<String, Vec<String>>,
    /// Selectors of every aggregating role, to tell quickly whether a change can matter.
    selectors: Vec<rbac::objects::LabelSelector>,
}

impl Aggregation {
    /// The aggregating roles whose effective rules include a rule of `role`'s own.
    pub fn fed_by(&self, role: &str) -> Vec<String> {
        self.effective
            .iter()
            .filter(|(_, rules)| rules.iter().any(|r| r.from == role))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Whether any aggregating role's selector picks these labels.
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selectors.iter().any(|s| s.matches(labels))
    }
}

/// Where a binding's role was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RoleSource {
    Manifest,
    Bootstrap,
}

impl RoleSource {
    fn as_str(self) -> &'static str {
        match self {
            RoleSource::Manifest => "manifest",
            RoleSource::Bootstrap => "kubernetes-bootstrap",
        }
    }
}

/// Judges trees: holds the pod-write options and the bootstrap roles.
pub struct Evaluator {
    opts: PodWriteOptions,
    /// Bootstrap ClusterRoles by name.
    bootstrap: BTreeMap<String, Role>,
    /// Own-rule grants of the non-aggregating bootstrap ClusterRoles (computed once).
    bootstrap_grants: HashMap<String, Vec<PodWriteGrant>>,
}

impl Default for Evaluator {
    fn default() -> Self {
        Self::new(PodWriteOptions::default())
    }
}

impl Evaluator {
    /// An evaluator with these pod-write options.
    pub fn new(opts: PodWriteOptions) -> Self {
        let snap = rbac::bootstrap();
        let mut bootstrap = BTreeMap::new();
        let mut bootstrap_grants = HashMap::new();
        for r in snap.roles {
            if r.kind != RoleKind::ClusterRole {
                continue;
            }
            if r.aggregation.is_none() {
                bootstrap_grants.insert(r.name.clone(), role_pod_write(&r.rules, opts));
            }
            bootstrap.insert(r.name.clone(), r);
        }
        Evaluator {
            opts,
            bootstrap,
            bootstrap_grants,
        }
    }

    /// Resolves the aggregating roles of a tree (with the bootstrap ones it does not shadow).
    pub fn aggregation(&self, set: &ManifestSet) -> Aggregation {
        let tree: BTreeMap<&str, &Role> = set
            .objects_of(Kind::ClusterRole)
            .filter_map(|o| match &o.body {
                Body::Role(r) => Some((r.name.as_str(), r)),
                Body::Binding(_) => None,
            })
            .collect();
        let all = || {
            tree.values().copied().chain(
                self.bootstrap
                    .values()
                    .filter(|r| !tree.contains_key(r.name.as_str())),
            )
        };
        let aggregators: Vec<&Role> = all().filter(|r| r.aggregation.is_some()).collect();
        let selectors: Vec<_> = aggregators
            .iter()
            .flat_map(|r| r.aggregation.iter().flatten().cloned())
            .collect();
        // Only the roles some selector picks (and the aggregating roles themselves, for chains
        // like edit → admin) can change an aggregating role: resolving over that subset keeps
        // a history walk from re-reading every role of the tree on every commit.
        let subset: Vec<Role> = all()
            .filter(|r| r.aggregation.is_some() || selectors.iter().any(|s| s.matches(&r.labels)))
            .cloned()
            .collect();
        let (eff, picked) = resolve_aggregation(&subset);
        let mut out = Aggregation {
            selectors,
            ..Default::default()
        };
        for (i, r) in subset.iter().enumerate() {
            if r.aggregation.is_some() {
                out.effective.insert(r.name.clone(), eff[i].clone());
                out.picked.insert(r.name.clone(), picked[i].clone());
            }
        }
        out
    }

    /// What a role of the tree grants on pods (aggregating roles: through aggregation).
    pub fn role_grants(&self, role: &Role, agg: &Aggregation) -> Vec<PodWriteGrant> {
        if role.kind == RoleKind::ClusterRole && role.aggregation.is_some() {
            let rules: Vec<PolicyRule> = agg
                .effective
                .get(&role.name)
                .map(|v| v.iter().map(|r| r.rule.clone()).collect())
                .unwrap_or_default();
            return role_pod_write(&rules, self.opts);
        }
        role_pod_write(&role.rules, self.opts)
    }

    /// Whether the role `id` grants pod write in this tree: one of its definitions does, or, for
    /// a ClusterRole the tree does not define, Kubernetes' own role of that name does (`edit`,
    /// `admin`, `cluster-admin` exist in every cluster without a manifest).
    pub fn role_grants_pod_write(&self, set: &ManifestSet, agg: &Aggregation, id: &ObjId) -> bool {
        let defs = set.definitions(id);
        if defs.is_empty() {
            if id.kind != Kind::ClusterRole {
                return false;
            }
            return match self.bootstrap.get(&id.name) {
                Some(r) if r.aggregation.is_some() => !self.role_grants(r, agg).is_empty(),
                Some(r) => self
                    .bootstrap_grants
                    .get(&r.name)
                    .is_some_and(|g| !g.is_empty()),
                None => false,
            };
        }
        defs.iter().any(|o| match &o.body {
            Body::Role(r) => !self.role_grants(r, agg).is_empty(),
            Body::Binding(_) => false,
        })
    }

    /// The role a binding refers to and what it grants on pods; `None` when the role exists
    /// neither in the tree nor in the bootstrap policy (the binding is latent).
    fn bound(
        &self,
        set: &ManifestSet,
        agg: &Aggregation,
        b: &Binding,
    ) -> Option<(RoleSource, Vec<PodWriteGrant>)> {
        match b.role_ref.kind.as_str() {
            "ClusterRole" => {
                let id = ObjId {
                    kind: Kind::ClusterRole,
                    namespace: String::new(),
                    name: b.role_ref.name.clone(),
                };
                if let Some(Body::Role(r)) = set.get_near(&id, &b.origin.file).map(|o| &o.body) {
                    return Some((RoleSource::Manifest, self.role_grants(r, agg)));
                }
                let r = self.bootstrap.get(&b.role_ref.name)?;
                let grants = if r.aggregation.is_some() {
                    self.role_grants(r, agg)
                } else {
                    self.bootstrap_grants
                        .get(&r.name)
                        .cloned()
                        .unwrap_or_default()
                };
                Some((RoleSource::Bootstrap, grants))
            }
            "Role" if b.kind == rbac::BindingKind::RoleBinding => {
                let id = ObjId {
                    kind: Kind::Role,
                    namespace: b.namespace.clone().unwrap_or_default(),
                    name: b.role_ref.name.clone(),
                };
                match set.get_near(&id, &b.origin.file).map(|o| &o.body) {
                    Some(Body::Role(r)) => Some((RoleSource::Manifest, self.role_grants(r, agg))),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Every role of the tree that grants pod write, and every binding of one.
    pub fn scan(&self, set: &ManifestSet) -> Vec<Finding> {
        let agg = self.aggregation(set);
        let mut out = Vec::new();
        for o in set.all_definitions() {
            match &o.body {
                Body::Role(r) => {
                    let grants = self.role_grants(r, &agg);
                    if grants.is_empty() {
                        continue;
                    }
                    out.push(Finding {
                        rule_id: "pod-write-role",
                        role: r.name.clone(),
                        role_kind: r.kind.to_string(),
                        role_source: RoleSource::Manifest.as_str(),
                        grants: summarize(&grants),
                        subjects: Vec::new(),
                        aggregated_from: agg.picked.get(&r.name).cloned().unwrap_or_default(),
                        aggregated_into: if r.kind == RoleKind::ClusterRole {
                            agg.fed_by(&r.name)
                        } else {
                            Vec::new()
                        },
                        ..finding_base(o)
                    });
                }
                Body::Binding(b) => {
                    let Some((source, grants)) = self.bound(set, &agg, b) else {
                        continue;
                    };
                    if grants.is_empty() {
                        continue;
                    }
                    out.push(Finding {
                        rule_id: "pod-write-binding",
                        role: b.role_ref.name.clone(),
                        role_kind: b.role_ref.kind.clone(),
                        role_source: source.as_str(),
                        grants: summarize(&grants),
                        subjects: b.subjects.clone(),
                        aggregated_from: Vec::new(),
                        aggregated_into: Vec::new(),
                        ..finding_base(o)
                    });
                }
            }
        }
        out
    }

    /// The changes between two trees, for the objects in `touched` (the identities the changed
    /// files defined before or define now: [`ManifestSet::affected`]). `before` holds every
    /// definition of those objects as they were (absent: none), `after` is the new tree, and
    /// `agg_*` are the two trees' aggregations.
    ///
    /// An object may be defined more than once (`envs/dev/` and `envs/prod/`). Definitions
    /// are matched first by content (a moved copy is no change), then by file, then in order;
    /// a new definition with nothing left to match is compared with the first old one, or is
    /// new when there was none. An object is deleted when its last definition goes.
    pub fn diff(
        &self,
        before: &BTreeMap<ObjId, Vec<ManifestObject>>,
        agg_before: &Aggregation,
        after: &ManifestSet,
        agg_after: &Aggregation,
        touched: &BTreeSet<ObjId>,
    ) -> Vec<Change> {
        let mut out = Vec::new();
        let none = Vec::new();
        for id in touched {
            let olds: &Vec<ManifestObject> = before.get(id).unwrap_or(&none);
            let news = after.definitions(id);
            let mut old_left: Vec<Option<&ManifestObject>> = olds.iter().map(Some).collect();
            let mut new_left: Vec<&ManifestObject> = Vec::new();
            for n in &news {
                match old_left
                    .iter_mut()
                    .find(|o| o.is_some_and(|o| o.body.same_content(&n.body)))
                {
                    Some(slot) => *slot = None,
                    None => new_left.push(n),
                }
            }
            let mut pairs: Vec<(Option<&ManifestObject>, Option<&ManifestObject>)> = Vec::new();
            for n in &new_left {
                let by_file = old_left
                    .iter_mut()
                    .find(|o| o.is_some_and(|o| o.file == n.file));
                let slot = match by_file {
                    Some(s) => Some(s),
                    None => old_left.iter_mut().find(|o| o.is_some()),
                };
                match slot {
                    Some(s) => pairs.push((s.take(), Some(n))),
                    // Another definition appeared next to unchanged ones: judge it against
                    // the object as it was.
                    None => pairs.push((olds.first(), Some(n))),
                }
            }
            if news.is_empty() {
                if let Some(o) = olds.first() {
                    pairs.push((Some(o), None));
                }
            }
            for (old, new) in pairs {
                match (old.map(|o| &o.body), new.map(|n| &n.body)) {
                    (_, Some(Body::Role(_))) | (Some(Body::Role(_)), None) => {
                        self.diff_role(old, new, agg_before, agg_after, &mut out)
                    }
                    _ => self.diff_binding(old, new, after, agg_after, &mut out),
                }
            }
        }
        // An aggregating role widened by a label on another role is reported on that label
        // (the aggregating role itself did not change); one widened by its own new selectors
        // is a change to it, and is found here.
        out
    }

    fn diff_role(
        &self,
        old: Option<&ManifestObject>,
        new: Option<&ManifestObject>,
        agg_before: &Aggregation,
        agg_after: &Aggregation,
        out: &mut Vec<Change>,
    ) {
        let role_of = |o: Option<&ManifestObject>| match o.map(|o| &o.body) {
            Some(Body::Role(r)) => Some(r.clone()),
            _ => None,
        };
        let (old_r, new_r) = (role_of(old), role_of(new));
        let old_grants = old_r
            .as_ref()
            .map(|r| self.role_grants(r, agg_before))
            .unwrap_or_default();
        let Some(new_r) = new_r else {
            // Deleted.
            if let (Some(o), Some(r)) = (old, old_r) {
                out.push(Change {
                    change: ChangeKind::Deleted,
                    newly_granted: Vec::new(),
                    rules_before: Some(r.rules.clone()),
                    rules_after: None,
                    ..change_base(o, &r.name, &r.kind.to_string())
                });
            }
            return;
        };
        let Some(n) = new else { return };
        let new_grants = self.role_grants(&new_r, agg_after);
        let gained = newly_granted(&new_grants, &old_grants);
        let fed_after = if new_r.kind == RoleKind::ClusterRole {
            agg_after.fed_by(&new_r.name)
        } else {
            Vec::new()
        };
        let base = || Change {
            rules_before: old_r.as_ref().map(|r| r.rules.clone()),
            rules_after: Some(new_r.rules.clone()),
            ..change_base(n, &new_r.name, &new_r.kind.to_string())
        };
        let aggregating_same_selectors = old_r
            .as_ref()
            .is_some_and(|o| new_r.aggregation.is_some() && o.aggregation == new_r.aggregation);
        if !gained.is_empty() && !aggregating_same_selectors {
            out.push(Change {
                change: if old_r.is_none() {
                    ChangeKind::Introduced
                } else {
                    ChangeKind::Widened
                },
                newly_granted: summarize(&gained),
                aggregated_into: fed_after.clone(),
                ..base()
            });
        } else if old_r.is_some() && old_r.as_ref().map(|r| &r.rules) != Some(&new_r.rules) {
            out.push(Change {
                change: ChangeKind::RulesChanged,
                newly_granted: Vec::new(),
                aggregated_into: fed_after.clone(),
                ..base()
            });
        }
        // Labels: the aggregating roles this role started to feed.
        let labels_changed = old_r.as_ref().is_none_or(|o| o.labels != new_r.labels);
        if labels_changed && new_r.kind == RoleKind::ClusterRole && !new_grants.is_empty() {
            let fed_before: BTreeSet<String> = old_r
                .as_ref()
                .map(|o| agg_before.fed_by(&o.name))
                .unwrap_or_default()
                .into_iter()
                .collect();
            let started: Vec<String> = fed_after
                .iter()
                .filter(|a| !fed_before.contains(*a))
                .cloned()
                .collect();
            if !started.is_empty() {
                out.push(Change {
                    change: ChangeKind::AggregationLabel,
                    newly_granted: summarize(&new_grants),
                    aggregated_into: started,
                    ..base()
                });
            }
        }
    }

    fn diff_binding(
        &self,
        old: Option<&ManifestObject>,
        new: Option<&ManifestObject>,
        after: &ManifestSet,
        agg_after: &Aggregation,
        out: &mut Vec<Change>,
    ) {
        let binding_of = |o: Option<&ManifestObject>| match o.map(|o| &o.body) {
            Some(Body::Binding(b)) => Some(b.clone()),
            _ => None,
        };
        let (old_b, new_b) = (binding_of(old), binding_of(new));
        let Some(new_b) = new_b else {
            if let (Some(o), Some(b)) = (old, old_b) {
                out.push(Change {
                    change: ChangeKind::BindingDeleted,
                    newly_granted: Vec::new(),
                    subjects_removed: b.subjects.clone(),
                    ..change_base(o, &b.role_ref.name, &b.role_ref.kind)
                });
            }
            return;
        };
        let Some(n) = new else { return };
        // A binding whose role changed is a new grant to every subject, as a new binding is
        // (in a cluster, roleRef cannot change: the binding is deleted and created again).
        let same_role = old_b.as_ref().is_some_and(|o| o.role_ref == new_b.role_ref);
        let (added, removed): (Vec<Subject>, Vec<Subject>) = if same_role {
            let old_s = &old_b
                .as_ref()
                .map(|o| o.subjects.clone())
                .unwrap_or_default();
            (
                new_b
                    .subjects
                    .iter()
                    .filter(|s| !old_s.contains(s))
                    .cloned()
                    .collect(),
                old_s
                    .iter()
                    .filter(|s| !new_b.subjects.contains(s))
                    .cloned()
                    .collect(),
            )
        } else {
            (new_b.subjects.clone(), Vec::new())
        };
        let grants = self
            .bound(after, agg_after, &new_b)
            .map(|(_, g)| g)
            .unwrap_or_default();
        let base = change_base(n, &new_b.role_ref.name, &new_b.role_ref.kind);
        if !added.is_empty() && !grants.is_empty() {
            out.push(Change {
                change: ChangeKind::Bound,
                newly_granted: summarize(&grants),
                subjects_added: added,
                subjects_removed: removed,
                ..base
            });
        } else if !added.is_empty() || !removed.is_empty() {
            out.push(Change {
                change: ChangeKind::BindingChanged,
                newly_granted: Vec::new(),
                subjects_added: added,
                subjects_removed: removed,
                ..base
            });
        }
    }
}

fn finding_base(o: &ManifestObject) -> Finding {
    Finding {
        rule_id: "",
        file: o.file.clone(),
        document: o.document,
        line: o.line,
        kind: o.id.kind,
        namespaced: matches!(o.id.kind, Kind::Role | Kind::RoleBinding),
        namespace: o.id.namespace.clone(),
        name: o.id.name.clone(),
        role: String::new(),
        role_kind: String::new(),
        role_source: "",
        grants: Vec::new(),
        subjects: Vec::new(),
        aggregated_from: Vec::new(),
        aggregated_into: Vec::new(),
    }
}

fn change_base(o: &ManifestObject, role: &str, role_kind: &str) -> Change {
    Change {
        file: o.file.clone(),
        document: o.document,
        line: o.line,
        kind: o.id.kind,
        namespaced: matches!(o.id.kind, Kind::Role | Kind::RoleBinding),
        namespace: o.id.namespace.clone(),
        name: o.id.name.clone(),
        role: role.to_string(),
        role_kind: role_kind.to_string(),
        change: ChangeKind::RulesChanged,
        newly_granted: Vec::new(),
        rules_before: None,
        rules_after: None,
        subjects_added: Vec::new(),
        subjects_removed: Vec::new(),
        aggregated_into: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::read_file;

    /// Applies `files` (path, text; empty text: delete) to `set`; returns the changes.
    fn step(eval: &Evaluator, set: &mut ManifestSet, files: &[(&str, &str)]) -> Vec<Change> {
        let agg_before = eval.aggregation(set);
        let readings: Vec<_> = files
            .iter()
            .map(|(p, t)| (*p, (!t.is_empty()).then(|| read_file(p, t.as_bytes()))))
            .collect();
        let mut touched = BTreeSet::new();
        for (p, r) in &readings {
            touched.extend(set.affected(p, r.as_ref()));
        }
        let before = touched
            .iter()
            .map(|id| {
                (
                    id.clone(),
                    set.definitions(id).into_iter().cloned().collect(),
                )
            })
            .collect();
        for (p, r) in readings {
            match r {
                Some(r) => {
                    set.set_file(p, r);
                }
                None => {
                    set.remove_file(p);
                }
            }
        }
        let agg_after = eval.aggregation(set);
        eval.diff(&before, &agg_before, set, &agg_after, &touched)
    }

    fn kinds(changes: &[Change]) -> Vec<(ChangeKind, String, Vec<String>)> {
        // What `kubeward git` reports without --role.
        changes
            .iter()
            .filter(|c| c.change.is_grant())
            .map(|c| (c.change, c.name.clone(), c.aggregated_into.clone()))
            .collect()
    }

    const AGGREGATOR: &str = "kind: ClusterRole\nmetadata: {name: monitoring}\naggregationRule:\n  clusterRoleSelectors:\n  - matchLabels: {example.com/aggregate-to-monitoring: \"true\"}\nrules: []\n";

    #[test]
    fn a_label_feeding_an_aggregating_role_of_the_tree() {
        let eval = Evaluator::default();
        let mut set = ManifestSet::new();
        let plain = "kind: ClusterRole\nmetadata: {name: debug}\nrules:\n- {apiGroups: [''], resources: [pods/ephemeralcontainers], verbs: [patch]}\n";
        let labelled = "kind: ClusterRole\nmetadata:\n  name: debug\n  labels: {example.com/aggregate-to-monitoring: \"true\"}\nrules:\n- {apiGroups: [''], resources: [pods/ephemeralcontainers], verbs: [patch]}\n";
        let c = step(
            &eval,
            &mut set,
            &[("agg.yaml", AGGREGATOR), ("debug.yaml", plain)],
        );
        assert_eq!(
            kinds(&c),
            vec![(ChangeKind::Introduced, "debug".into(), vec![])],
            "an aggregating role that picks nothing grants nothing"
        );
        let c = step(&eval, &mut set, &[("debug.yaml", labelled)]);
        assert_eq!(
            kinds(&c),
            vec![(
                ChangeKind::AggregationLabel,
                "debug".into(),
                vec!["monitoring".into()]
            )]
        );
        assert_eq!(c[0].newly_granted[0].capability_id, "debug-containers");
        // The aggregating role now writes pods, and a binding of it says so.
        let scan = eval.scan(&set);
        assert!(scan
            .iter()
            .any(|f| f.name == "monitoring" && f.aggregated_from == vec!["debug".to_string()]));
        let rb = "kind: RoleBinding\nmetadata: {name: mon, namespace: obs}\nroleRef: {kind: ClusterRole, name: monitoring}\nsubjects: [{kind: Group, name: sre}]\n";
        let c = step(&eval, &mut set, &[("rb.yaml", rb)]);
        assert_eq!(kinds(&c), vec![(ChangeKind::Bound, "mon".into(), vec![])]);
        // Dropping the label is not a grant.
        let c = step(&eval, &mut set, &[("debug.yaml", plain)]);
        assert_eq!(kinds(&c), vec![]);
    }

    #[test]
    fn bindings_of_bootstrap_roles_and_latent_bindings() {
        let eval = Evaluator::default();
        let mut set = ManifestSet::new();
        let to = |role: &str| {
            format!("kind: ClusterRoleBinding\nmetadata: {{name: b-{role}}}\nroleRef: {{kind: ClusterRole, name: {role}}}\nsubjects: [{{kind: User, name: u}}]\n")
        };
        let (admin, view, missing) = (to("cluster-admin"), to("view"), to("not-yet"));
        let c = step(
            &eval,
            &mut set,
            &[("a.yaml", &admin), ("v.yaml", &view), ("m.yaml", &missing)],
        );
        assert_eq!(
            kinds(&c),
            vec![(ChangeKind::Bound, "b-cluster-admin".into(), vec![])]
        );
        // The latent binding's role appears: the role is the news, the binding did not change.
        let role = "kind: ClusterRole\nmetadata: {name: not-yet}\nrules: [{apiGroups: ['*'], resources: ['*'], verbs: ['*']}]\n";
        let c = step(&eval, &mut set, &[("r.yaml", role)]);
        assert_eq!(
            kinds(&c),
            vec![(ChangeKind::Introduced, "not-yet".into(), vec![])]
        );
    }
}
