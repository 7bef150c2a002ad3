//! Kubernetes RBAC semantics, as the API server's RBAC authorizer applies them.
//!
//! This crate holds the single definition of "this rule grants write on pods" that every
//! kubeward command uses: the audit-log detection, and later the snapshot analysis. It is
//! built on a faithful port of the per-rule matchers of upstream
//! `pkg/apis/rbac/v1/evaluation_helpers.go` ([`rule::rule_allows`]), so that a rule is judged
//! exactly as the authorizer would judge it, one `PolicyRule` at a time.
//!
//! [`Inventory`] keeps a cluster's RBAC objects as an audit stream changes them, for detection
//! that asks questions after each change; [`bootstrap`] gives the policy every cluster starts
//! with.

#![warn(missing_docs)]

pub mod inventory;
pub mod model;
pub mod objects;
pub mod patch;
pub mod podwrite;
pub mod rule;
pub mod snapshot;

pub use inventory::{bootstrap, Inventory, ObjKind};
pub use model::{Grantee, Identity, Model, PodWriter, Question, Scope, Via};
pub use objects::{Binding, BindingKind, Role, RoleKind, Subject};
pub use podwrite::{
    pod_write_grants, role_pod_write, Capability, KubeVersion, PodWriteGrant, PodWriteOptions,
    POD_SUBRESOURCES,
};
pub use rule::{rule_allows, PolicyRule, Request};
pub use snapshot::{LoadError, LoadOptions, Snapshot};
