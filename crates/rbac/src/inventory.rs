//! A mutable set of RBAC objects, for detection that follows a cluster's RBAC through an audit
//! stream and asks questions of it after every change.
//!
//! [`Model`](crate::Model) answers questions about a fixed [`Snapshot`] and resolves
//! aggregation over all of it when built. A stream changes one object at a time, thousands of
//! times per run, in clusters of thousands of roles and tens of thousands of bindings, so
//! rebuilding a model per change is out of the question. [`Inventory`] keeps the objects keyed
//! as the API server keys them, plus indexes (role → bindings that grant it, subject →
//! bindings that list it), so that each change and each question costs in proportion to the
//! objects it touches. The answers are the ones a `Model` built from [`Inventory::to_snapshot`]
//! gives (the property tests check exactly that).
//!
//! Aggregation is the one global computation: an aggregating ClusterRole's rules depend on
//! every ClusterRole its selectors pick. It is recomputed lazily, and only after a change that
//! can alter it ([`Inventory::affects_aggregation`]).

use crate::model::{normalize, resolve_aggregation, Grantee, Via};
use crate::objects::{Binding, BindingKind, Origin, Role, RoleKind, Subject};
use crate::rule::{rule_allows, PolicyRule, Request};
use crate::snapshot::{LoadOptions, Snapshot};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

/// The four RBAC kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum ObjKind {
    /// `clusterroles`, cluster-scoped.
    ClusterRole,
    /// `roles`, namespaced.
    Role,
    /// `clusterrolebindings`, cluster-scoped.
    ClusterRoleBinding,
    /// `rolebindings`, namespaced.
    RoleBinding,
}

impl ObjKind {
    /// All four, in declaration order.
    pub const ALL: [ObjKind; 4] = [
        ObjKind::ClusterRole,
        ObjKind::Role,
        ObjKind::ClusterRoleBinding,
        ObjKind::RoleBinding,
    ];

    /// The kind for an API resource name (`clusterroles`, `roles`, `clusterrolebindings`,
    /// `rolebindings`), as an audit event's `objectRef.resource` names it.
    pub fn from_resource(plural: &str) -> Option<ObjKind> {
        ObjKind::ALL.into_iter().find(|k| k.resource() == plural)
    }

    /// The kind for an object's `kind` (`ClusterRole`, ...).
    pub fn from_kind(kind: &str) -> Option<ObjKind> {
        ObjKind::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    /// The object kind: `ClusterRole`, `Role`, `ClusterRoleBinding` or `RoleBinding`.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjKind::ClusterRole => "ClusterRole",
            ObjKind::Role => "Role",
            ObjKind::ClusterRoleBinding => "ClusterRoleBinding",
            ObjKind::RoleBinding => "RoleBinding",
        }
    }

    /// The API resource name: `clusterroles`, `roles`, `clusterrolebindings` or
    /// `rolebindings`.
    pub fn resource(self) -> &'static str {
        match self {
            ObjKind::ClusterRole => "clusterroles",
            ObjKind::Role => "roles",
            ObjKind::ClusterRoleBinding => "clusterrolebindings",
            ObjKind::RoleBinding => "rolebindings",
        }
    }

    /// Whether objects of this kind live in a namespace (Role, RoleBinding).
    pub fn namespaced(self) -> bool {
        matches!(self, ObjKind::Role | ObjKind::RoleBinding)
    }

    /// The role kind, for ClusterRole and Role.
    pub fn role_kind(self) -> Option<RoleKind> {
        match self {
            ObjKind::ClusterRole => Some(RoleKind::ClusterRole),
            ObjKind::Role => Some(RoleKind::Role),
            _ => None,
        }
    }

    /// The binding kind, for ClusterRoleBinding and RoleBinding.
    pub fn binding_kind(self) -> Option<BindingKind> {
        match self {
            ObjKind::ClusterRoleBinding => Some(BindingKind::ClusterRoleBinding),
            ObjKind::RoleBinding => Some(BindingKind::RoleBinding),
            _ => None,
        }
    }
}

impl From<RoleKind> for ObjKind {
    fn from(k: RoleKind) -> ObjKind {
        match k {
            RoleKind::ClusterRole => ObjKind::ClusterRole,
            RoleKind::Role => ObjKind::Role,
        }
    }
}

impl From<BindingKind> for ObjKind {
    fn from(k: BindingKind) -> ObjKind {
        match k {
            BindingKind::ClusterRoleBinding => ObjKind::ClusterRoleBinding,
            BindingKind::RoleBinding => ObjKind::RoleBinding,
        }
    }
}

impl fmt::Display for ObjKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Objects by namespace, then name. Nested maps rather than a map keyed by a pair, so that a
/// lookup by `(&str, &str)` allocates nothing.
#[derive(Debug, Clone)]
struct Scoped<V> {
    by_ns: BTreeMap<String, BTreeMap<String, V>>,
    len: usize,
}

impl<V> Default for Scoped<V> {
    fn default() -> Self {
        Scoped {
            by_ns: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<V> Scoped<V> {
    fn get(&self, ns: &str, name: &str) -> Option<&V> {
        self.by_ns.get(ns)?.get(name)
    }

    fn insert(&mut self, ns: &str, name: &str, v: V) -> Option<V> {
        let old = self
            .by_ns
            .entry(ns.to_string())
            .or_default()
            .insert(name.to_string(), v);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    fn remove(&mut self, ns: &str, name: &str) -> Option<V> {
        let inner = self.by_ns.get_mut(ns)?;
        let old = inner.remove(name)?;
        // A long stream creates and deletes namespaces; empty ones should not pile up.
        if inner.is_empty() {
            self.by_ns.remove(ns);
        }
        self.len -= 1;
        Some(old)
    }

    fn values(&self) -> impl Iterator<Item = &V> {
        self.by_ns.values().flat_map(BTreeMap::values)
    }

    fn get_mut(&mut self, ns: &str, name: &str) -> Option<&mut V> {
        self.by_ns.get_mut(ns)?.get_mut(name)
    }
}

/// Which bindings name which role, and which list which subject.
#[derive(Debug, Clone, Default)]
struct Index {
    /// ClusterRole name → every binding (of either kind) whose roleRef names it.
    to_cluster_role: HashMap<String, Ids>,
    /// (namespace, Role name) → the RoleBindings there that name it.
    to_role: Scoped<Ids>,
    /// Normalized effective subject → the bindings that list it.
    by_subject: HashMap<Subject, Ids>,
}

impl Index {
    fn add(&mut self, id: &BindingId, b: &Binding) {
        match target(b) {
            Some((RoleKind::ClusterRole, _, name)) => {
                self.to_cluster_role
                    .entry(name.to_string())
                    .or_default()
                    .insert(id.clone());
            }
            Some((RoleKind::Role, ns, name)) => match self.to_role.get_mut(ns, name) {
                Some(ids) => {
                    ids.insert(id.clone());
                }
                None => {
                    self.to_role.insert(ns, name, BTreeSet::from([id.clone()]));
                }
            },
            None => {}
        }
        for s in subject_keys(b) {
            self.by_subject.entry(s).or_default().insert(id.clone());
        }
    }

    /// Undoes [`Index::add`]; entries left empty go, so that churn does not grow the maps.
    fn remove(&mut self, id: &BindingId, b: &Binding) {
        match target(b) {
            Some((RoleKind::ClusterRole, _, name)) => {
                if let Some(ids) = self.to_cluster_role.get_mut(name) {
                    ids.remove(id);
                    if ids.is_empty() {
                        self.to_cluster_role.remove(name);
                    }
                }
            }
            Some((RoleKind::Role, ns, name)) => {
                if let Some(ids) = self.to_role.get_mut(ns, name) {
                    ids.remove(id);
                    if ids.is_empty() {
                        self.to_role.remove(ns, name);
                    }
                }
            }
            None => {}
        }
        for s in subject_keys(b) {
            if let Some(ids) = self.by_subject.get_mut(&s) {
                ids.remove(id);
                if ids.is_empty() {
                    self.by_subject.remove(&s);
                }
            }
        }
    }
}

/// A binding's key. The order (kind, namespace, name) is the order answers list bindings in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct BindingId {
    kind: BindingKind,
    namespace: String,
    name: String,
}

impl BindingId {
    fn of(b: &Binding) -> BindingId {
        BindingId {
            kind: b.kind,
            namespace: binding_ns(b).to_string(),
            name: b.name.clone(),
        }
    }
}

type Ids = BTreeSet<BindingId>;

/// The namespace part of a role's key: `""` for ClusterRoles, whatever namespace they carry.
fn role_ns(r: &Role) -> &str {
    match r.kind {
        RoleKind::ClusterRole => "",
        RoleKind::Role => r.namespace.as_deref().unwrap_or(""),
    }
}

/// The namespace part of a binding's key: `""` for ClusterRoleBindings.
fn binding_ns(b: &Binding) -> &str {
    match b.kind {
        BindingKind::ClusterRoleBinding => "",
        BindingKind::RoleBinding => b.namespace.as_deref().unwrap_or(""),
    }
}

/// The role a binding names, as the authorizer resolves it: a ClusterRole by name from any
/// binding, a Role only from a RoleBinding and only in its namespace. A ClusterRoleBinding to a
/// Role, or an unknown roleRef kind, names nothing.
fn target(b: &Binding) -> Option<(RoleKind, &str, &str)> {
    match (b.role_ref.kind.as_str(), b.kind) {
        ("ClusterRole", _) => Some((RoleKind::ClusterRole, "", b.role_ref.name.as_str())),
        ("Role", BindingKind::RoleBinding) => {
            Some((RoleKind::Role, binding_ns(b), b.role_ref.name.as_str()))
        }
        _ => None,
    }
}

/// The subjects a binding grants to, as answers name them. A ClusterRoleBinding's
/// ServiceAccount without a namespace matches no one, so it has no key.
fn subject_keys(b: &Binding) -> BTreeSet<Subject> {
    b.subjects
        .iter()
        .filter_map(|s| b.effective_subject(s))
        .map(|s| normalize(&s))
        .collect()
}

/// Whether two versions of a ClusterRole feed aggregation the same: same labels (what
/// selectors see), same selectors, and same rules unless it aggregates (an aggregating role's
/// stored rules are ignored). The aggregation controller's own writes to `admin`, `edit` and
/// `view` change only their stored rules, and are frequent in audit logs; they must not throw
/// away the resolved aggregation.
fn same_for_aggregation(a: &Role, b: &Role) -> bool {
    a.kind == b.kind
        && a.labels == b.labels
        && a.aggregation == b.aggregation
        && (a.aggregation.is_some() || a.rules == b.rules)
}

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// The verbs that let a subject create or change ClusterRoles.
const ADMIN_VERBS: [&str; 4] = ["create", "update", "patch", "escalate"];

/// What a role's rules allow of the role-admin verbs: the distinct `only_names` lists, one per
/// way it allows one (an empty list: any name). Empty when it allows none of them.
type AdminVerdict = Vec<Vec<String>>;

/// Whether `rules` allow `verb` on ClusterRoles, asked without a name, as `Model::who_can`
/// asks it: `Some([])` for any ClusterRole, `Some(names)` for only those, `None` for not at all.
fn allows_on_clusterroles(rules: &[PolicyRule], verb: &str) -> Option<Vec<String>> {
    let req = |name| Request::Resource {
        verb,
        api_group: RBAC_GROUP,
        resource: "clusterroles",
        subresource: "",
        name,
    };
    if rules.iter().any(|r| rule_allows(r, &req(""))) {
        return Some(Vec::new());
    }
    // create reaches the authorizer without a name, so a name-restricted grant never allows it;
    // update, patch and escalate carry the name of the role being written.
    if verb == "create" {
        return None;
    }
    let names: BTreeSet<String> = rules
        .iter()
        .flat_map(|r| {
            r.resource_names
                .iter()
                .filter(move |n| !n.is_empty() && rule_allows(r, &req(n)))
        })
        .cloned()
        .collect();
    (!names.is_empty()).then(|| names.into_iter().collect())
}

fn admin_verdict(rules: &[PolicyRule]) -> AdminVerdict {
    let distinct: BTreeSet<Vec<String>> = ADMIN_VERBS
        .iter()
        .filter_map(|v| allows_on_clusterroles(rules, v))
        .collect();
    distinct.into_iter().collect()
}

/// A cluster's RBAC objects, changed one at a time, with the indexes and caches that keep the
/// questions detection asks after each change cheap.
///
/// Objects are keyed as the API server keys them: (kind, namespace, name), the namespace being
/// `""` for ClusterRoles and ClusterRoleBindings (lookups ignore the namespace given for a
/// cluster-scoped kind).
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    cluster_roles: Scoped<Role>,
    roles: Scoped<Role>,
    cluster_bindings: Scoped<Binding>,
    bindings: Scoped<Binding>,
    index: Index,
    /// Names of the aggregating ClusterRoles.
    aggregating: BTreeSet<String>,
    /// Resolved rules of the aggregating ClusterRoles; `None` once a change may have altered
    /// them.
    aggregated: Option<BTreeMap<String, Vec<PolicyRule>>>,
    /// ClusterRoles whose rules allow some role-admin verb, with what they allow.
    admin_roles: BTreeMap<String, AdminVerdict>,
    /// ClusterRoles whose verdict may have changed since `admin_roles` was last brought up
    /// to date.
    admin_stale: BTreeSet<String>,
    /// The last `role_admins` answer, until something it depends on changes.
    admin_answer: Option<Vec<Grantee>>,
}

impl Inventory {
    /// An empty inventory.
    pub fn new() -> Self {
        Self::default()
    }

    /// The objects of a snapshot. As when they are put one after the other, a later object
    /// with the key of an earlier one replaces it.
    pub fn from_snapshot(s: &Snapshot) -> Self {
        let mut inv = Inventory::new();
        for r in &s.roles {
            inv.put_role(r.clone());
        }
        for b in &s.bindings {
            inv.put_binding(b.clone());
        }
        inv
    }

    /// Number of objects (roles and bindings).
    pub fn len(&self) -> usize {
        self.cluster_roles.len + self.roles.len + self.cluster_bindings.len + self.bindings.len
    }

    /// Whether there are no objects.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether an object with this key is present (`namespace` is ignored for cluster-scoped
    /// kinds; give `""`).
    pub fn contains(&self, kind: ObjKind, namespace: &str, name: &str) -> bool {
        match (kind.role_kind(), kind.binding_kind()) {
            (Some(k), _) => self.role(k, namespace, name).is_some(),
            (_, Some(k)) => self.binding(k, namespace, name).is_some(),
            _ => false,
        }
    }

    fn role_map(&self, kind: RoleKind) -> &Scoped<Role> {
        match kind {
            RoleKind::ClusterRole => &self.cluster_roles,
            RoleKind::Role => &self.roles,
        }
    }

    fn binding_map(&self, kind: BindingKind) -> &Scoped<Binding> {
        match kind {
            BindingKind::ClusterRoleBinding => &self.cluster_bindings,
            BindingKind::RoleBinding => &self.bindings,
        }
    }

    /// A role by key (`namespace` is ignored for ClusterRoles).
    pub fn role(&self, kind: RoleKind, namespace: &str, name: &str) -> Option<&Role> {
        let ns = match kind {
            RoleKind::ClusterRole => "",
            RoleKind::Role => namespace,
        };
        self.role_map(kind).get(ns, name)
    }

    /// A binding by key (`namespace` is ignored for ClusterRoleBindings).
    pub fn binding(&self, kind: BindingKind, namespace: &str, name: &str) -> Option<&Binding> {
        let ns = match kind {
            BindingKind::ClusterRoleBinding => "",
            BindingKind::RoleBinding => namespace,
        };
        self.binding_map(kind).get(ns, name)
    }

    fn binding_by_id(&self, id: &BindingId) -> Option<&Binding> {
        self.binding_map(id.kind).get(&id.namespace, &id.name)
    }

    /// Adds a role, or replaces the one with its key; returns the replaced one.
    pub fn put_role(&mut self, r: Role) -> Option<Role> {
        match r.kind {
            RoleKind::Role => {
                let ns = role_ns(&r).to_string();
                let name = r.name.clone();
                // Namespaced Roles neither aggregate nor grant anything on ClusterRoles, so
                // no cache depends on them.
                self.roles.insert(&ns, &name, r)
            }
            RoleKind::ClusterRole => {
                let name = r.name.clone();
                let before = self.cluster_roles.get("", &name);
                // Asked before the change: the set of aggregating roles differs from the one
                // after only when a side aggregates, and then the answer is yes either way.
                let affects = !before.is_some_and(|b| same_for_aggregation(b, &r))
                    && self.affects_aggregation(before, Some(&r));
                if r.aggregation.is_some() {
                    self.aggregating.insert(name.clone());
                } else {
                    self.aggregating.remove(&name);
                }
                let old = self.cluster_roles.insert("", &name, r);
                self.cluster_role_changed(name, affects);
                old
            }
        }
    }

    /// Removes a role; returns it (`namespace` is ignored for ClusterRoles).
    pub fn remove_role(&mut self, kind: RoleKind, namespace: &str, name: &str) -> Option<Role> {
        match kind {
            RoleKind::Role => self.roles.remove(namespace, name),
            RoleKind::ClusterRole => {
                let affects = self.affects_aggregation(self.cluster_roles.get("", name), None);
                let old = self.cluster_roles.remove("", name)?;
                self.aggregating.remove(name);
                self.cluster_role_changed(name.to_string(), affects);
                Some(old)
            }
        }
    }

    /// Invalidates what depends on a ClusterRole that was just put or removed.
    fn cluster_role_changed(&mut self, name: String, affects_aggregation: bool) {
        if affects_aggregation {
            self.aggregated = None;
            // Every aggregating role's rules may have changed, and with them what it allows.
            self.admin_stale.extend(self.aggregating.iter().cloned());
        }
        self.admin_stale.insert(name);
    }

    /// Adds a binding, or replaces the one with its key; returns the replaced one.
    pub fn put_binding(&mut self, b: Binding) -> Option<Binding> {
        let id = BindingId::of(&b);
        let invalidate = match self.binding(b.kind, &id.namespace, &id.name) {
            // Re-applying a binding unchanged (frequent in audit logs) changes no answer.
            Some(o) => {
                !(o.role_ref == b.role_ref && o.subjects == b.subjects)
                    && (self.feeds_admins(o) || self.feeds_admins(&b))
            }
            None => self.feeds_admins(&b),
        };
        if invalidate {
            self.admin_answer = None;
        }
        let map = match b.kind {
            BindingKind::ClusterRoleBinding => &mut self.cluster_bindings,
            BindingKind::RoleBinding => &mut self.bindings,
        };
        if let Some(o) = map.get(&id.namespace, &id.name) {
            self.index.remove(&id, o);
        }
        self.index.add(&id, &b);
        map.insert(&id.namespace, &id.name, b)
    }

    /// Removes a binding; returns it (`namespace` is ignored for ClusterRoleBindings).
    pub fn remove_binding(
        &mut self,
        kind: BindingKind,
        namespace: &str,
        name: &str,
    ) -> Option<Binding> {
        let old = match kind {
            BindingKind::ClusterRoleBinding => self.cluster_bindings.remove("", name),
            BindingKind::RoleBinding => self.bindings.remove(namespace, name),
        }?;
        self.index.remove(&BindingId::of(&old), &old);
        if self.feeds_admins(&old) {
            self.admin_answer = None;
        }
        Some(old)
    }

    /// Whether a binding is part of the `role_admins` answer: a ClusterRoleBinding (the verbs
    /// are on a cluster-scoped resource) to a ClusterRole known to allow one of them. A role
    /// whose verdict is stale needs no check here: if its verdict changes, bringing it up to
    /// date drops the answer anyway.
    fn feeds_admins(&self, b: &Binding) -> bool {
        b.kind == BindingKind::ClusterRoleBinding
            && matches!(target(b), Some((RoleKind::ClusterRole, _, name))
                if self.admin_roles.contains_key(name))
    }

    /// Every role: ClusterRoles by name, then Roles by namespace and name.
    pub fn roles(&self) -> impl Iterator<Item = &Role> {
        self.cluster_roles.values().chain(self.roles.values())
    }

    /// Every binding: ClusterRoleBindings by name, then RoleBindings by namespace and name.
    pub fn bindings(&self) -> impl Iterator<Item = &Binding> {
        self.cluster_bindings.values().chain(self.bindings.values())
    }

    /// The rules the authorizer uses for a role: its own, or for an aggregating ClusterRole
    /// what the aggregation controller settles on (its own stored rules ignored, as
    /// [`resolve_aggregation`] has it). `None` when there is no such role.
    pub fn effective_rules(
        &mut self,
        kind: RoleKind,
        namespace: &str,
        name: &str,
    ) -> Option<Vec<PolicyRule>> {
        let r = self.role(kind, namespace, name)?;
        if kind == RoleKind::Role || r.aggregation.is_none() {
            return Some(r.rules.clone());
        }
        Some(self.aggregated().get(name).cloned().unwrap_or_default())
    }

    /// The effective rules of every aggregating ClusterRole, by name. Resolved on first use
    /// after a change that can affect aggregation, and cached until the next one.
    pub fn aggregated(&mut self) -> &BTreeMap<String, Vec<PolicyRule>> {
        let resolved = match self.aggregated.take() {
            Some(m) => m,
            None => self.resolve(),
        };
        self.aggregated.insert(resolved)
    }

    fn resolve(&self) -> BTreeMap<String, Vec<PolicyRule>> {
        let selectors: Vec<_> = self
            .aggregating
            .iter()
            .filter_map(|n| self.cluster_roles.get("", n)?.aggregation.as_deref())
            .flatten()
            .collect();
        // Only the aggregating roles and the roles some selector picks can take part, so only
        // those are handed to the resolver; a large cluster's thousands of other roles are not
        // copied. An aggregating role's stored rules are ignored, and left out of the copy.
        let relevant: Vec<Role> = self
            .cluster_roles
            .values()
            .filter(|r| r.aggregation.is_some() || selectors.iter().any(|s| s.matches(&r.labels)))
            .map(|r| Role {
                kind: RoleKind::ClusterRole,
                name: r.name.clone(),
                namespace: None,
                labels: r.labels.clone(),
                rules: if r.aggregation.is_some() {
                    Vec::new()
                } else {
                    r.rules.clone()
                },
                aggregation: r.aggregation.clone(),
                origin: Origin::default(),
                defaulted_namespace: false,
                resource_version: None,
            })
            .collect();
        let (effective, _) = resolve_aggregation(&relevant);
        relevant
            .iter()
            .zip(effective)
            .filter(|(r, _)| r.aggregation.is_some())
            .map(|(r, e)| (r.name.clone(), e.into_iter().map(|x| x.rule).collect()))
            .collect()
    }

    /// Whether replacing ClusterRole `before` by `after` (`None` for a create or a delete)
    /// can change the effective rules of some aggregating ClusterRole: either side aggregates,
    /// or either side's labels are picked by a selector of an aggregating ClusterRole in the
    /// inventory (other than itself). Roles (namespaced) never take part in aggregation. Costs
    /// one pass over the aggregating roles' selectors.
    pub fn affects_aggregation(&self, before: Option<&Role>, after: Option<&Role>) -> bool {
        [before, after]
            .into_iter()
            .flatten()
            .filter(|r| r.kind == RoleKind::ClusterRole)
            .any(|r| r.aggregation.is_some() || self.any_selects(&r.labels, Some(&r.name)))
    }

    fn selecting<'a>(
        &'a self,
        labels: &'a BTreeMap<String, String>,
        except: Option<&'a str>,
    ) -> impl Iterator<Item = &'a str> + 'a {
        self.aggregating
            .iter()
            .filter(move |n| Some(n.as_str()) != except)
            .filter_map(|n| self.cluster_roles.get("", n))
            .filter(|r| {
                r.aggregation
                    .as_deref()
                    .unwrap_or(&[])
                    .iter()
                    .any(|s| s.matches(labels))
            })
            .map(|r| r.name.as_str())
    }

    fn any_selects(&self, labels: &BTreeMap<String, String>, except: Option<&str>) -> bool {
        self.selecting(labels, except).next().is_some()
    }

    /// Names, sorted, of the aggregating ClusterRoles whose selectors pick these labels,
    /// leaving out `except` (the role the labels belong to: the controller never aggregates a
    /// role into itself).
    pub fn aggregators_selecting(
        &self,
        labels: &BTreeMap<String, String>,
        except: Option<&str>,
    ) -> Vec<String> {
        self.selecting(labels, except).map(str::to_string).collect()
    }

    /// The bindings that grant this role, by kind, namespace and name. For a ClusterRole: every
    /// ClusterRoleBinding and RoleBinding whose roleRef names it; for a Role: the RoleBindings
    /// in its namespace that name it. Bindings are listed whether or not the role exists.
    pub fn bindings_to(&self, kind: RoleKind, namespace: &str, name: &str) -> Vec<&Binding> {
        let ids = match kind {
            RoleKind::ClusterRole => self.index.to_cluster_role.get(name),
            RoleKind::Role => self.index.to_role.get(namespace, name),
        };
        ids.into_iter()
            .flatten()
            .filter_map(|id| self.binding_by_id(id))
            .collect()
    }

    /// The bindings that list this subject, by kind, namespace and name. Both sides are
    /// compared as the authorizer sees them ([`Binding::effective_subject`], then
    /// [`normalize`]): a RoleBinding's ServiceAccount without a namespace is that account in
    /// the binding's namespace, and User `system:serviceaccount:NS:NAME` is ServiceAccount
    /// NS/NAME.
    pub fn bindings_of(&self, subject: &Subject) -> Vec<&Binding> {
        self.index
            .by_subject
            .get(&normalize(subject))
            .into_iter()
            .flatten()
            .filter_map(|id| self.binding_by_id(id))
            .collect()
    }

    /// The role a binding grants, as the authorizer looks it up; `None` for a latent binding
    /// (its role does not exist, or a ClusterRoleBinding names a Role).
    pub fn bound_role(&self, b: &Binding) -> Option<&Role> {
        let (kind, ns, name) = target(b)?;
        self.role(kind, ns, name)
    }

    /// Who can create, update, patch or escalate ClusterRoles: the subjects of the
    /// ClusterRoleBindings whose ClusterRole's effective rules allow one of those verbs on
    /// `rbac.authorization.k8s.io` `clusterroles` (a grant limited to named roles counts for
    /// update, patch and escalate, with the names in `only_names`), and Group `system:masters`
    /// through the authorizer's bypass. The answer is `Model::who_can` for each of the four
    /// verbs (cluster scope, no name), merged: subjects in the same order, each `Via` once.
    ///
    /// What each ClusterRole allows is kept per role, recomputed only for roles changed since
    /// (and every aggregating role after a change to aggregation); the answer is rebuilt only
    /// when a verdict or a binding to a role that has one changes.
    pub fn role_admins(&mut self) -> Vec<Grantee> {
        for name in std::mem::take(&mut self.admin_stale) {
            let verdict = match self.cluster_roles.get("", &name) {
                None => AdminVerdict::new(),
                Some(r) if r.aggregation.is_none() => admin_verdict(&r.rules),
                Some(_) => admin_verdict(self.aggregated().get(&name).map_or(&[], Vec::as_slice)),
            };
            let before = self.admin_roles.get(&name).map_or(&[][..], Vec::as_slice);
            if before != verdict.as_slice() {
                self.admin_answer = None;
                if verdict.is_empty() {
                    self.admin_roles.remove(&name);
                } else {
                    self.admin_roles.insert(name, verdict);
                }
            }
        }
        if let Some(a) = &self.admin_answer {
            return a.clone();
        }
        let answer = self.build_role_admins();
        self.admin_answer = Some(answer.clone());
        answer
    }

    fn build_role_admins(&self) -> Vec<Grantee> {
        let mut by: BTreeMap<Subject, Vec<Via>> = BTreeMap::new();
        for (role, verdict) in &self.admin_roles {
            for id in self.index.to_cluster_role.get(role).into_iter().flatten() {
                // ClusterRoles are cluster-scoped: a RoleBinding never grants verbs on them.
                if id.kind != BindingKind::ClusterRoleBinding {
                    continue;
                }
                let Some(b) = self.binding_by_id(id) else {
                    continue;
                };
                for s in &b.subjects {
                    let Some(eff) = b.effective_subject(s) else {
                        continue;
                    };
                    let vias = by.entry(normalize(&eff)).or_default();
                    for only_names in verdict {
                        vias.push(Via {
                            binding_kind: BindingKind::ClusterRoleBinding.to_string(),
                            binding: b.name.clone(),
                            role_kind: RoleKind::ClusterRole.to_string(),
                            role: role.clone(),
                            namespace: None,
                            only_names: only_names.clone(),
                        });
                    }
                }
            }
        }
        crate::model::grantees(by)
    }

    /// Every object, as a snapshot (in [`Inventory::roles`] and [`Inventory::bindings`]
    /// order), for the questions [`Model`](crate::Model) answers.
    pub fn to_snapshot(&self) -> Snapshot {
        Snapshot {
            roles: self.roles().cloned().collect(),
            bindings: self.bindings().cloned().collect(),
            ..Snapshot::default()
        }
    }
}

/// The Kubernetes bootstrap policy files (`crates/rbac/data/kubernetes-bootstrap`, provenance
/// and licence in `crates/rbac/data/SOURCES.md`) converted to JSON
/// (`crates/rbac/data/kubernetes-bootstrap-json`), under the names of the YAML files they were
/// converted from, in file name order. [`bootstrap`] reads these: every stateful
/// run starts by loading the policy, and the JSON reads in 0.3 ms where the YAML takes 5 ms
/// (`cargo bench -p kubeward-rbac --bench bootstrap`).
/// A test (`bootstrap_has_no_load_errors_and_matches_the_data_dir`) checks that the YAML
/// directory gives the same objects.
const BOOTSTRAP_JSON: [(&str, &str); 6] = [
    (
        "cluster-role-bindings.yaml",
        include_str!("../data/kubernetes-bootstrap-json/cluster-role-bindings.json"),
    ),
    (
        "cluster-roles.yaml",
        include_str!("../data/kubernetes-bootstrap-json/cluster-roles.json"),
    ),
    (
        "controller-role-bindings.yaml",
        include_str!("../data/kubernetes-bootstrap-json/controller-role-bindings.json"),
    ),
    (
        "controller-roles.yaml",
        include_str!("../data/kubernetes-bootstrap-json/controller-roles.json"),
    ),
    (
        "namespace-role-bindings.yaml",
        include_str!("../data/kubernetes-bootstrap-json/namespace-role-bindings.json"),
    ),
    (
        "namespace-roles.yaml",
        include_str!("../data/kubernetes-bootstrap-json/namespace-roles.json"),
    ),
];

/// The Kubernetes bootstrap policy: the ClusterRoles, Roles and bindings the API server creates
/// in every cluster (upstream's golden files, embedded). Origins name the files as
/// `kubernetes-bootstrap/<file>`. A stream that starts on a cluster it has not seen can start
/// from these instead of from nothing.
pub fn bootstrap() -> Snapshot {
    let mut s = Snapshot::default();
    for (file, text) in BOOTSTRAP_JSON {
        s.load_text(
            &format!("kubernetes-bootstrap/{file}"),
            text,
            &LoadOptions::default(),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MASTERS;
    use crate::objects::{LabelSelector, RoleRef};
    use crate::Model;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn cluster_role(name: &str, l: &[(&str, &str)], rules: Vec<PolicyRule>) -> Role {
        Role {
            kind: RoleKind::ClusterRole,
            name: name.into(),
            namespace: None,
            labels: labels(l),
            rules,
            aggregation: None,
            origin: Origin::default(),
            defaulted_namespace: false,
            resource_version: None,
        }
    }

    fn aggregating(name: &str, l: &[(&str, &str)], picks: &[(&str, &str)]) -> Role {
        Role {
            aggregation: Some(
                picks
                    .iter()
                    .map(|kv| LabelSelector {
                        match_labels: labels(&[*kv]),
                        match_expressions: vec![],
                    })
                    .collect(),
            ),
            ..cluster_role(name, l, vec![])
        }
    }

    fn ns_role(ns: &str, name: &str, rules: Vec<PolicyRule>) -> Role {
        Role {
            kind: RoleKind::Role,
            namespace: Some(ns.into()),
            ..cluster_role(name, &[], rules)
        }
    }

    fn subject(kind: &str, name: &str, ns: Option<&str>) -> Subject {
        Subject {
            kind: kind.into(),
            name: name.into(),
            namespace: ns.map(str::to_string),
        }
    }

    fn binding(
        kind: BindingKind,
        ns: Option<&str>,
        name: &str,
        role: (&str, &str),
        subjects: Vec<Subject>,
    ) -> Binding {
        Binding {
            kind,
            name: name.into(),
            namespace: ns.map(str::to_string),
            role_ref: RoleRef {
                kind: role.0.into(),
                name: role.1.into(),
            },
            subjects,
            origin: Origin::default(),
            defaulted_namespace: false,
            resource_version: None,
        }
    }

    fn names(bs: Vec<&Binding>) -> Vec<String> {
        bs.iter()
            .map(|b| {
                format!(
                    "{}/{}/{}",
                    b.kind,
                    b.namespace.as_deref().unwrap_or(""),
                    b.name
                )
            })
            .collect()
    }

    fn get_pods() -> PolicyRule {
        PolicyRule::new(&[""], &["pods"], &["get"])
    }

    fn create_pods() -> PolicyRule {
        PolicyRule::new(&[""], &["pods"], &["create"])
    }

    #[test]
    fn obj_kinds() {
        for k in ObjKind::ALL {
            assert_eq!(ObjKind::from_resource(k.resource()), Some(k));
            assert_eq!(ObjKind::from_kind(k.as_str()), Some(k));
            assert_eq!(k.to_string(), k.as_str());
        }
        assert_eq!(
            ObjKind::from_resource("clusterrolebindings"),
            Some(ObjKind::ClusterRoleBinding)
        );
        assert_eq!(
            ObjKind::from_kind("RoleBinding"),
            Some(ObjKind::RoleBinding)
        );
        assert_eq!(ObjKind::from_resource("ClusterRoles"), None);
        assert_eq!(ObjKind::from_kind("clusterrole"), None);
        assert!(ObjKind::Role.namespaced() && ObjKind::RoleBinding.namespaced());
        assert!(!ObjKind::ClusterRole.namespaced() && !ObjKind::ClusterRoleBinding.namespaced());
        assert_eq!(ObjKind::from(RoleKind::Role), ObjKind::Role);
        assert_eq!(
            ObjKind::from(BindingKind::ClusterRoleBinding).binding_kind(),
            Some(BindingKind::ClusterRoleBinding)
        );
        assert_eq!(ObjKind::RoleBinding.role_kind(), None);
    }

    #[test]
    fn put_replace_remove_and_keys() {
        let mut inv = Inventory::new();
        assert!(inv.is_empty());
        assert!(inv
            .put_role(cluster_role("c", &[], vec![get_pods()]))
            .is_none());
        assert!(inv.put_role(ns_role("a", "c", vec![])).is_none());
        assert!(inv.put_role(ns_role("b", "c", vec![])).is_none());
        assert_eq!(inv.len(), 3);
        // The same name in another kind or namespace is another object.
        assert!(inv.contains(ObjKind::ClusterRole, "", "c"));
        assert!(inv.contains(ObjKind::ClusterRole, "ignored", "c"));
        assert!(inv.contains(ObjKind::Role, "a", "c"));
        assert!(!inv.contains(ObjKind::Role, "", "c"));
        assert!(!inv.contains(ObjKind::ClusterRoleBinding, "", "c"));
        let old = inv.put_role(cluster_role("c", &[], vec![create_pods()]));
        assert_eq!(old.map(|r| r.rules), Some(vec![get_pods()]));
        assert_eq!(inv.len(), 3);
        assert_eq!(
            inv.role(RoleKind::ClusterRole, "", "c").map(|r| &r.rules),
            Some(&vec![create_pods()])
        );
        assert_eq!(
            inv.remove_role(RoleKind::Role, "a", "c")
                .map(|r| r.namespace),
            Some(Some("a".to_string()))
        );
        assert!(inv.remove_role(RoleKind::Role, "a", "c").is_none());
        assert_eq!(inv.len(), 2);
        let order: Vec<String> = inv
            .roles()
            .map(|r| format!("{}/{:?}", r.kind, r.namespace))
            .collect();
        assert_eq!(order, vec!["ClusterRole/None", "Role/Some(\"b\")"]);
    }

    #[test]
    fn binding_indexes_follow_changes() {
        let mut inv = Inventory::new();
        inv.put_role(cluster_role("view", &[], vec![get_pods()]));
        inv.put_role(ns_role("dev", "deployer", vec![create_pods()]));
        let alice = subject("User", "alice", None);
        let builder = subject("ServiceAccount", "builder", Some("dev"));
        inv.put_binding(binding(
            BindingKind::ClusterRoleBinding,
            None,
            "crb",
            ("ClusterRole", "view"),
            vec![alice.clone(), subject("ServiceAccount", "nons", None)],
        ));
        inv.put_binding(binding(
            BindingKind::RoleBinding,
            Some("dev"),
            "rb",
            ("ClusterRole", "view"),
            vec![subject("ServiceAccount", "builder", None)],
        ));
        inv.put_binding(binding(
            BindingKind::RoleBinding,
            Some("dev"),
            "deploy",
            ("Role", "deployer"),
            vec![subject("User", "system:serviceaccount:dev:builder", None)],
        ));
        // A RoleBinding in another namespace does not reach dev's Role.
        inv.put_binding(binding(
            BindingKind::RoleBinding,
            Some("prod"),
            "deploy",
            ("Role", "deployer"),
            vec![alice.clone()],
        ));
        // A ClusterRoleBinding cannot grant a Role.
        inv.put_binding(binding(
            BindingKind::ClusterRoleBinding,
            None,
            "to-role",
            ("Role", "deployer"),
            vec![alice.clone()],
        ));
        assert_eq!(
            names(inv.bindings_to(RoleKind::ClusterRole, "", "view")),
            vec!["ClusterRoleBinding//crb", "RoleBinding/dev/rb"]
        );
        assert_eq!(
            names(inv.bindings_to(RoleKind::Role, "dev", "deployer")),
            vec!["RoleBinding/dev/deploy"]
        );
        assert_eq!(
            names(inv.bindings_to(RoleKind::Role, "prod", "deployer")),
            vec!["RoleBinding/prod/deploy"],
            "listed though latent"
        );
        let prod = inv
            .binding(BindingKind::RoleBinding, "prod", "deploy")
            .unwrap();
        assert!(inv.bound_role(prod).is_none());
        let to_role = inv
            .binding(BindingKind::ClusterRoleBinding, "", "to-role")
            .unwrap();
        assert!(inv.bound_role(to_role).is_none());
        let deploy = inv
            .binding(BindingKind::RoleBinding, "dev", "deploy")
            .unwrap();
        assert_eq!(
            inv.bound_role(deploy).map(|r| r.name.as_str()),
            Some("deployer")
        );

        // The namespace-less SA takes the RoleBinding's namespace; the User spelling of the
        // same account is the account.
        assert_eq!(
            names(inv.bindings_of(&builder)),
            vec!["RoleBinding/dev/deploy", "RoleBinding/dev/rb"]
        );
        assert_eq!(
            names(inv.bindings_of(&subject("User", "system:serviceaccount:dev:builder", None))),
            vec!["RoleBinding/dev/deploy", "RoleBinding/dev/rb"]
        );
        // In a ClusterRoleBinding it never matches, so it is not indexed anywhere.
        assert!(inv
            .bindings_of(&subject("ServiceAccount", "nons", None))
            .is_empty());
        assert!(inv
            .bindings_of(&subject("ServiceAccount", "nons", Some("")))
            .is_empty());
        assert_eq!(
            names(inv.bindings_of(&alice)),
            vec![
                "ClusterRoleBinding//crb",
                "ClusterRoleBinding//to-role",
                "RoleBinding/prod/deploy"
            ]
        );

        // Replacing a binding moves it in both indexes.
        let old = inv.put_binding(binding(
            BindingKind::ClusterRoleBinding,
            None,
            "crb",
            ("ClusterRole", "edit"),
            vec![subject("Group", "devs", None)],
        ));
        assert_eq!(old.map(|b| b.subjects.len()), Some(2));
        assert_eq!(
            names(inv.bindings_to(RoleKind::ClusterRole, "", "view")),
            vec!["RoleBinding/dev/rb"]
        );
        assert_eq!(
            names(inv.bindings_to(RoleKind::ClusterRole, "", "edit")),
            vec!["ClusterRoleBinding//crb"]
        );
        assert_eq!(
            names(inv.bindings_of(&alice)),
            vec!["ClusterRoleBinding//to-role", "RoleBinding/prod/deploy"]
        );
        assert_eq!(
            names(inv.bindings_of(&subject("Group", "devs", None))),
            vec!["ClusterRoleBinding//crb"]
        );
        // Replacing with the same role and subjects keeps it indexed.
        let same = inv
            .binding(BindingKind::RoleBinding, "dev", "rb")
            .unwrap()
            .clone();
        inv.put_binding(same);
        assert_eq!(
            names(inv.bindings_to(RoleKind::ClusterRole, "", "view")),
            vec!["RoleBinding/dev/rb"]
        );
        assert_eq!(names(inv.bindings_of(&builder)).len(), 2);

        // Removal drops it from both, and empty index entries go.
        assert!(inv
            .remove_binding(BindingKind::RoleBinding, "dev", "rb")
            .is_some());
        assert!(inv
            .remove_binding(BindingKind::RoleBinding, "dev", "rb")
            .is_none());
        assert!(inv
            .bindings_to(RoleKind::ClusterRole, "", "view")
            .is_empty());
        assert_eq!(
            names(inv.bindings_of(&builder)),
            vec!["RoleBinding/dev/deploy"]
        );
        inv.remove_binding(BindingKind::RoleBinding, "dev", "deploy");
        assert!(inv.bindings_of(&builder).is_empty());
        assert!(!inv.index.to_role.by_ns.contains_key("dev"));
        assert!(!inv.index.to_cluster_role.contains_key("view"));
        assert!(inv.index.by_subject.keys().all(|s| s.name != "builder"));
        assert_eq!(inv.len(), 2 + 3);
    }

    const AGG: &str = r#"
kind: ClusterRole
metadata: {name: admin}
aggregationRule: {clusterRoleSelectors: [{matchLabels: {to-admin: "true"}}]}
---
kind: ClusterRole
metadata: {name: edit, labels: {to-admin: "true"}}
aggregationRule: {clusterRoleSelectors: [{matchLabels: {to-edit: "true"}}]}
---
kind: ClusterRole
metadata: {name: view, labels: {to-edit: "true"}}
aggregationRule: {clusterRoleSelectors: [{matchLabels: {to-view: "true"}}]}
---
kind: ClusterRole
metadata: {name: agg-view, labels: {to-view: "true"}}
rules: [{apiGroups: [""], resources: [pods], verbs: [get]}]
---
kind: ClusterRole
metadata: {name: agg-admin, labels: {to-admin: "true"}}
rules: [{apiGroups: [""], resources: [secrets], verbs: [get]}]
---
kind: ClusterRole
metadata: {name: plain}
rules: [{apiGroups: [""], resources: [nodes], verbs: [get]}]
"#;

    fn agg_inventory() -> Inventory {
        let mut s = Snapshot::default();
        s.load_text("agg.yaml", AGG, &LoadOptions::default());
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        Inventory::from_snapshot(&s)
    }

    fn resources(rules: &[PolicyRule]) -> Vec<String> {
        rules.iter().map(|r| r.resources.join(",")).collect()
    }

    fn effective(inv: &mut Inventory, name: &str) -> Vec<String> {
        resources(
            &inv.effective_rules(RoleKind::ClusterRole, "", name)
                .unwrap(),
        )
    }

    #[test]
    fn aggregation_follows_labels() {
        let mut inv = agg_inventory();
        // The chain view → edit → admin resolves.
        assert_eq!(effective(&mut inv, "view"), vec!["pods"]);
        assert_eq!(effective(&mut inv, "edit"), vec!["pods"]);
        assert_eq!(effective(&mut inv, "admin"), vec!["secrets", "pods"]);
        assert_eq!(effective(&mut inv, "plain"), vec!["nodes"]);
        assert!(inv
            .effective_rules(RoleKind::ClusterRole, "", "nope")
            .is_none());
        assert_eq!(
            inv.aggregated().keys().collect::<Vec<_>>(),
            vec!["admin", "edit", "view"]
        );

        // A new role labelled for view flows up to edit and admin.
        let deploys = PolicyRule::new(&["apps"], &["deployments"], &["get"]);
        inv.put_role(cluster_role(
            "agg-view-2",
            &[("to-view", "true")],
            vec![deploys.clone()],
        ));
        assert!(inv.aggregated.is_none(), "the change invalidated the cache");
        assert_eq!(effective(&mut inv, "view"), vec!["pods", "deployments"]);
        assert_eq!(
            effective(&mut inv, "admin"),
            vec!["secrets", "pods", "deployments"]
        );
        assert_eq!(inv.aggregated()["edit"], vec![get_pods(), deploys.clone()]);

        // Relabelled to edit: view loses it, edit and admin keep it.
        inv.put_role(cluster_role(
            "agg-view-2",
            &[("to-edit", "true")],
            vec![deploys.clone()],
        ));
        assert_eq!(effective(&mut inv, "view"), vec!["pods"]);
        // Picked roles contribute in name order: agg-view-2 before view.
        assert_eq!(effective(&mut inv, "edit"), vec!["deployments", "pods"]);

        // Relabelled away: nobody has it.
        inv.put_role(cluster_role("agg-view-2", &[("other", "x")], vec![deploys]));
        assert_eq!(effective(&mut inv, "edit"), vec!["pods"]);
        assert_eq!(effective(&mut inv, "admin"), vec!["secrets", "pods"]);

        // Removing a picked role removes its rules.
        inv.remove_role(RoleKind::ClusterRole, "", "agg-view");
        assert!(effective(&mut inv, "view").is_empty());
        assert_eq!(effective(&mut inv, "admin"), vec!["secrets"]);

        // An aggregating role's own stored rules are ignored; its selectors are what count.
        let mut edit = inv.role(RoleKind::ClusterRole, "", "edit").unwrap().clone();
        edit.rules = vec![create_pods()];
        inv.put_role(edit.clone());
        assert!(effective(&mut inv, "edit").is_empty());
        edit.aggregation = None;
        inv.put_role(edit);
        assert_eq!(
            effective(&mut inv, "edit"),
            vec!["pods"],
            "no longer aggregating"
        );
        assert_eq!(effective(&mut inv, "admin"), vec!["secrets", "pods"]);
        assert!(!inv.aggregated().contains_key("edit"));
    }

    #[test]
    fn aggregation_cache_survives_unrelated_changes() {
        let mut inv = agg_inventory();
        inv.aggregated();
        inv.put_role(cluster_role("unlabelled", &[], vec![create_pods()]));
        inv.put_role(cluster_role("other-label", &[("x", "y")], vec![]));
        inv.put_role(ns_role("ns", "r", vec![create_pods()]));
        inv.put_binding(binding(
            BindingKind::ClusterRoleBinding,
            None,
            "b",
            ("ClusterRole", "admin"),
            vec![subject("User", "u", None)],
        ));
        inv.remove_role(RoleKind::ClusterRole, "", "unlabelled");
        assert!(inv.aggregated.is_some());
        // The controller rewriting an aggregating role's stored rules changes nothing.
        let mut admin = inv
            .role(RoleKind::ClusterRole, "", "admin")
            .unwrap()
            .clone();
        admin.rules = vec![get_pods(), create_pods()];
        inv.put_role(admin);
        assert!(inv.aggregated.is_some());
        // A picked role rewritten with the same rules and labels changes nothing either.
        let agg_view = inv
            .role(RoleKind::ClusterRole, "", "agg-view")
            .unwrap()
            .clone();
        inv.put_role(agg_view.clone());
        assert!(inv.aggregated.is_some());
        // Its rules changing does.
        inv.put_role(Role {
            rules: vec![create_pods()],
            ..agg_view
        });
        assert!(inv.aggregated.is_none());
        assert_eq!(effective(&mut inv, "admin"), vec!["secrets", "pods"]);
        assert_eq!(inv.aggregated()["admin"][1], create_pods());
    }

    #[test]
    fn affects_aggregation_cases() {
        let inv = agg_inventory();
        let plain = inv.role(RoleKind::ClusterRole, "", "plain").unwrap();
        let picked = inv.role(RoleKind::ClusterRole, "", "agg-view").unwrap();
        let admin = inv.role(RoleKind::ClusterRole, "", "admin").unwrap();
        let relabelled = cluster_role("plain", &[("to-admin", "true")], vec![]);
        let unpicked = cluster_role("new", &[("to-nothing", "true")], vec![create_pods()]);
        assert!(!inv.affects_aggregation(Some(plain), Some(plain)));
        assert!(!inv.affects_aggregation(None, Some(&unpicked)));
        assert!(!inv.affects_aggregation(Some(&unpicked), None));
        assert!(!inv.affects_aggregation(None, None));
        assert!(inv.affects_aggregation(Some(plain), Some(&relabelled)));
        assert!(inv.affects_aggregation(Some(&relabelled), Some(plain)));
        assert!(inv.affects_aggregation(Some(picked), None));
        assert!(inv.affects_aggregation(None, Some(picked)));
        assert!(inv.affects_aggregation(Some(admin), None));
        assert!(inv.affects_aggregation(None, Some(&aggregating("new", &[], &[("a", "b")]))));
        // Roles are never aggregated, whatever their labels.
        let mut r = ns_role("ns", "r", vec![]);
        r.labels = labels(&[("to-admin", "true")]);
        assert!(!inv.affects_aggregation(None, Some(&r)));
        // A role picked only by itself feeds no aggregation but its own; it aggregates, so yes.
        let selfish = aggregating("selfish", &[("me", "1")], &[("me", "1")]);
        assert!(inv.affects_aggregation(None, Some(&selfish)));

        assert_eq!(
            inv.aggregators_selecting(&labels(&[("to-admin", "true"), ("to-view", "true")]), None),
            vec!["admin", "view"]
        );
        assert!(inv
            .aggregators_selecting(&labels(&[("to-edit", "true")]), Some("edit"))
            .is_empty());
        assert_eq!(
            inv.aggregators_selecting(&labels(&[("to-edit", "true")]), Some("view")),
            vec!["edit"]
        );
        let mut inv = inv;
        inv.put_role(selfish);
        assert_eq!(
            inv.aggregators_selecting(&labels(&[("me", "1")]), Some("selfish")),
            Vec::<String>::new()
        );
        assert_eq!(
            inv.aggregators_selecting(&labels(&[("me", "1")]), None),
            vec!["selfish"]
        );
        assert!(inv.aggregators_selecting(&labels(&[]), None).is_empty());
    }

    fn admins(inv: &mut Inventory) -> Vec<String> {
        inv.role_admins()
            .into_iter()
            .map(|g| {
                let via: Vec<String> = g
                    .via
                    .iter()
                    .map(|v| {
                        if v.only_names.is_empty() {
                            v.binding.clone()
                        } else {
                            format!("{}[{}]", v.binding, v.only_names.join(","))
                        }
                    })
                    .collect();
                format!("{} {}: {}", g.kind, g.name, via.join(" "))
            })
            .collect()
    }

    #[test]
    fn role_admins_follow_roles_bindings_and_aggregation() {
        let masters = "Group system:masters: (authorizer: system:masters is allowed everything)";
        let mut inv = agg_inventory();
        assert_eq!(admins(&mut inv), vec![masters]);
        let crs = |verbs: &[&str]| PolicyRule::new(&[RBAC_GROUP], &["clusterroles"], verbs);
        inv.put_binding(binding(
            BindingKind::ClusterRoleBinding,
            None,
            "admins",
            ("ClusterRole", "admin"),
            vec![subject("User", "ann", None)],
        ));
        inv.put_binding(binding(
            BindingKind::RoleBinding,
            Some("dev"),
            "ns-admins",
            ("ClusterRole", "admin"),
            vec![subject("User", "bob", None)],
        ));
        assert_eq!(admins(&mut inv), vec![masters]);
        // admin gains patch on clusterroles through aggregation: only the ClusterRoleBinding
        // counts, clusterroles being cluster-scoped.
        inv.put_role(cluster_role(
            "agg-crs",
            &[("to-view", "true")],
            vec![crs(&["patch"])],
        ));
        assert!(inv.admin_answer.is_some(), "not rebuilt yet");
        assert_eq!(admins(&mut inv), vec![masters, "User ann: admins"]);
        // A name-restricted grant counts for update, narrowed; create needs no name.
        inv.put_role(cluster_role(
            "agg-crs",
            &[("to-view", "true")],
            vec![crs(&["update", "create"]).with_names(&["x", "y"])],
        ));
        assert_eq!(admins(&mut inv), vec![masters, "User ann: admins[x,y]"]);
        // Unrelated changes keep the cached answer.
        inv.put_role(cluster_role("unrelated", &[], vec![get_pods()]));
        inv.put_binding(binding(
            BindingKind::ClusterRoleBinding,
            None,
            "plain-b",
            ("ClusterRole", "plain"),
            vec![subject("User", "carl", None)],
        ));
        inv.role_admins();
        assert!(inv.admin_answer.is_some());
        inv.put_binding(binding(
            BindingKind::ClusterRoleBinding,
            None,
            "other",
            ("ClusterRole", "unrelated"),
            vec![subject("User", "dan", None)],
        ));
        assert!(inv.admin_answer.is_some());
        // Relabelling the feeding role away takes it back.
        inv.put_role(cluster_role("agg-crs", &[], vec![crs(&["update"])]));
        assert_eq!(admins(&mut inv), vec![masters]);
        // A direct grant; the subject set of its binding changing shows.
        inv.put_role(cluster_role(
            "unrelated",
            &[],
            vec![
                crs(&["escalate", "get"]),
                crs(&["update"]).with_names(&["z"]),
            ],
        ));
        assert_eq!(admins(&mut inv), vec![masters, "User dan: other other[z]"]);
        inv.put_binding(binding(
            BindingKind::ClusterRoleBinding,
            None,
            "other",
            ("ClusterRole", "unrelated"),
            vec![
                subject("User", "dan", None),
                subject("Group", MASTERS, None),
                subject("ServiceAccount", "sa", Some("kube-system")),
            ],
        ));
        assert_eq!(
            admins(&mut inv),
            vec![
                "Group system:masters: other other[z] (authorizer: system:masters is allowed everything)",
                "ServiceAccount sa: other other[z]",
                "User dan: other other[z]"
            ]
        );
        inv.remove_binding(BindingKind::ClusterRoleBinding, "", "other");
        assert_eq!(admins(&mut inv), vec![masters]);
    }

    /// `Model::who_can` for the four verbs, merged, as `role_admins` promises.
    fn merged_who_can(s: &Snapshot) -> Vec<Grantee> {
        let m = Model::new(s);
        let mut by: BTreeMap<Subject, Grantee> = BTreeMap::new();
        for verb in ADMIN_VERBS {
            let q = crate::Question {
                verb: verb.into(),
                api_group: RBAC_GROUP.into(),
                resource: "clusterroles".into(),
                subresource: String::new(),
                name: String::new(),
                url: None,
                scope: crate::Scope::Cluster,
            };
            for g in m.who_can(&q) {
                let key = subject(&g.kind, &g.name, g.namespace.as_deref());
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

    #[test]
    fn bootstrap_loads_and_its_role_admins_match_the_model() {
        let snap = bootstrap();
        assert!(snap.errors.is_empty(), "{:?}", snap.errors);
        assert_eq!(snap.files, 6);
        assert_eq!(
            (snap.roles.len(), snap.bindings.len()),
            (31 + 38 + 7, 10 + 38 + 7)
        );
        let mut inv = Inventory::from_snapshot(&snap);
        assert_eq!(inv.len(), 76 + 55, "no two bootstrap objects share a key");
        let got = inv.role_admins();
        assert_eq!(got, merged_who_can(&snap));
        let summary: Vec<(String, Vec<String>)> = got
            .iter()
            .map(|g| {
                (
                    format!(
                        "{} {}/{}",
                        g.kind,
                        g.namespace.as_deref().unwrap_or(""),
                        g.name
                    ),
                    g.via.iter().map(|v| v.binding.clone()).collect(),
                )
            })
            .collect();
        // cluster-admin (`*` on `*`) is bound to system:masters; the aggregation controller
        // holds escalate, patch and update on clusterroles, the garbage collector patch and
        // update on everything. Nobody else touches ClusterRoles.
        assert_eq!(
            summary,
            vec![
                (
                    "Group /system:masters".to_string(),
                    vec![
                        "cluster-admin".to_string(),
                        "(authorizer: system:masters is allowed everything)".to_string()
                    ]
                ),
                (
                    "ServiceAccount kube-system/clusterrole-aggregation-controller".to_string(),
                    vec!["system:controller:clusterrole-aggregation-controller".to_string()]
                ),
                (
                    "ServiceAccount kube-system/generic-garbage-collector".to_string(),
                    vec!["system:controller:generic-garbage-collector".to_string()]
                ),
            ]
        );
        assert!(got[0].note.is_some());
        // The bootstrap's aggregated roles as the Model has them.
        let m = Model::new(&snap);
        for (i, r) in snap.roles.iter().enumerate() {
            let ns = r.namespace.as_deref().unwrap_or("");
            assert_eq!(
                inv.effective_rules(r.kind, ns, &r.name),
                Some(m.rules_of(i)),
                "{}",
                r.name
            );
        }
        assert!(inv.aggregated()["admin"].len() > 10);
        assert_eq!(
            names(inv.bindings_of(&subject("Group", MASTERS, None))),
            vec!["ClusterRoleBinding//cluster-admin"]
        );
    }
}
