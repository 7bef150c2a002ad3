//! RBAC objects: roles, bindings, subjects, label selectors.

use crate::rule::PolicyRule;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// ClusterRole or Role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum RoleKind {
    /// Cluster-scoped.
    ClusterRole,
    /// Namespaced.
    Role,
}

impl fmt::Display for RoleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RoleKind::ClusterRole => "ClusterRole",
            RoleKind::Role => "Role",
        })
    }
}

/// ClusterRoleBinding or RoleBinding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum BindingKind {
    /// Grants everywhere.
    ClusterRoleBinding,
    /// Grants in its namespace.
    RoleBinding,
}

impl fmt::Display for BindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BindingKind::ClusterRoleBinding => "ClusterRoleBinding",
            BindingKind::RoleBinding => "RoleBinding",
        })
    }
}

/// Where an object was read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Origin {
    /// File path, or `live` for a cluster read.
    pub file: String,
    /// Zero-based document index in the file (messages count from 1).
    pub document: usize,
    /// Zero-based index in a `List`'s items (messages count from 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<usize>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Counted from 1 in messages, as line numbers are.
        write!(f, "{} document {}", self.file, self.document + 1)?;
        if let Some(i) = self.item {
            write!(f, " item {}", i + 1)?;
        }
        Ok(())
    }
}

/// A label selector requirement operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Operator {
    /// Label value in the list.
    In,
    /// Label absent, or value not in the list.
    NotIn,
    /// Label present.
    Exists,
    /// Label absent.
    DoesNotExist,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Requirement {
    /// Label key.
    pub key: String,
    /// Operator.
    pub operator: Operator,
    /// Values (In, NotIn).
    #[serde(default)]
    pub values: Vec<String>,
}

/// A `metav1.LabelSelector`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Exact label matches.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    /// Expressions.
    #[serde(default)]
    pub match_expressions: Vec<Requirement>,
}

impl LabelSelector {
    /// Whether `labels` satisfy every requirement (an empty selector matches everything, as
    /// `metav1.LabelSelectorAsSelector` makes it).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let val = labels.get(&r.key);
                match r.operator {
                    Operator::In => val.is_some_and(|v| r.values.contains(v)),
                    Operator::NotIn => val.is_none_or(|v| !r.values.contains(v)),
                    Operator::Exists => val.is_some(),
                    Operator::DoesNotExist => val.is_none(),
                }
            })
    }
}

/// A ClusterRole or Role.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Role {
    /// Kind.
    pub kind: RoleKind,
    /// Name.
    pub name: String,
    /// Namespace (Roles only).
    pub namespace: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Rules as stored.
    pub rules: Vec<PolicyRule>,
    /// `aggregationRule.clusterRoleSelectors` (ClusterRoles only); `None` when not aggregating.
    pub aggregation: Option<Vec<LabelSelector>>,
    /// Where it was read.
    pub origin: Origin,
    /// Set when the namespace came from `--default-namespace`.
    pub defaulted_namespace: bool,
    /// `metadata.resourceVersion`, when the source gives one (a snapshot read from a cluster).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
}

/// A binding's role reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleRef {
    /// `ClusterRole` or `Role`.
    pub kind: String,
    /// Role name.
    pub name: String,
}

/// A binding subject.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Subject {
    /// `User`, `Group` or `ServiceAccount`.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Namespace (ServiceAccounts).
    pub namespace: Option<String>,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) if self.kind == "ServiceAccount" => {
                write!(f, "ServiceAccount {ns}/{}", self.name)
            }
            _ => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// A ClusterRoleBinding or RoleBinding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Binding {
    /// Kind.
    pub kind: BindingKind,
    /// Name.
    pub name: String,
    /// Namespace (RoleBindings only).
    pub namespace: Option<String>,
    /// The role it grants.
    pub role_ref: RoleRef,
    /// Who it grants it to.
    pub subjects: Vec<Subject>,
    /// Where it was read.
    pub origin: Origin,
    /// Set when the namespace came from `--default-namespace`.
    pub defaulted_namespace: bool,
    /// `metadata.resourceVersion`, when the source gives one (a snapshot read from a cluster).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
}

impl Binding {
    /// A subject as the authorizer reads it: a ServiceAccount without a namespace takes the
    /// RoleBinding's namespace (in a ClusterRoleBinding it never matches).
    pub fn effective_subject(&self, s: &Subject) -> Option<Subject> {
        if s.kind == "ServiceAccount" && s.namespace.as_deref().is_none_or(str::is_empty) {
            let ns = self.namespace.clone()?;
            return Some(Subject {
                namespace: Some(ns),
                ..s.clone()
            });
        }
        Some(s.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors() {
        let sel: LabelSelector = serde_json::from_str(
            r#"{"matchLabels":{"a":"1"},"matchExpressions":[{"key":"b","operator":"In","values":["x","y"]},{"key":"c","operator":"DoesNotExist"}]}"#,
        )
        .unwrap();
        assert!(sel.matches(&labels(&[("a", "1"), ("b", "y")])));
        assert!(!sel.matches(&labels(&[("a", "1"), ("b", "z")])));
        assert!(!sel.matches(&labels(&[("a", "1"), ("b", "x"), ("c", "")])));
        assert!(!sel.matches(&labels(&[("b", "x")])));
        let notin: LabelSelector =
            serde_json::from_str(r#"{"matchExpressions":[{"key":"k","operator":"NotIn","values":["v"]},{"key":"e","operator":"Exists"}]}"#).unwrap();
        assert!(notin.matches(&labels(&[("e", "")])));
        assert!(!notin.matches(&labels(&[("e", ""), ("k", "v")])));
        assert!(LabelSelector::default().matches(&labels(&[])));
    }
}
