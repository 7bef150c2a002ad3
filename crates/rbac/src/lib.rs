//! Kubernetes RBAC semantics, as the API server's RBAC authorizer applies them.
//!
//! This crate holds the single definition of "this rule grants write on pods" that every
//! kubeward command uses: the audit-log detection, and later the snapshot analysis. It is
//! built on a faithful port of the per-rule matchers of upstream
//! `pkg/apis/rbac/v1/evaluation_helpers.go` ([`rule::rule_allows`]), so that a rule is judged
//! exactly as the authorizer would judge it, one `PolicyRule` at a time.

pub mod podwrite;
pub mod rule;

pub use podwrite::{
    pod_write_grants, role_pod_write, Capability, KubeVersion, PodWriteGrant, PodWriteOptions,
    POD_SUBRESOURCES,
};
pub use rule::{rule_allows, PolicyRule, Request};
