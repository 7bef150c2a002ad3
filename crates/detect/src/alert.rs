//! The alert: everything an investigator needs, with stable JSON field names.

use serde::Serialize;
use serde_json::value::RawValue;

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Nothing established: a change worth a look (e.g. a role changed with no body logged).
    Info,
    /// Limited grants: only named pods, or no way to run code.
    Medium,
    /// Unrestricted grants that run code in pods (create, modify, exec, attach, debug, ...).
    High,
    /// `*` verbs on `*` resources in the core group: full control of pods and more.
    Critical,
}

impl Severity {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// Where the role's rules were read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RulesSource {
    /// The stored object returned by the API server (the truth, also for patches).
    ResponseObject,
    /// The full object the client sent (create, update, server-side apply).
    RequestObject,
    /// The rules a patch document adds or sets.
    Patch,
    /// The last known object with the logged patch applied (stateful detection).
    PatchedState,
    /// No body was logged (metadata level); nothing was read.
    NotLogged,
}

/// What the state knew of the object before the change (stateful detection only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PreviousState {
    /// The object did not exist (a create).
    Absent,
    /// Its previous content was known: only what the change added is reported.
    Known,
    /// Its previous content was not known (never seen, or changed with no body logged since).
    Unknown,
}

/// An aggregating ClusterRole that gains pod write through a change to a role it selects.
#[derive(Debug, Clone, Serialize)]
pub struct AggregatorGain {
    /// The aggregating ClusterRole.
    pub role: String,
    /// What it now grants that it did not before.
    pub newly_granted: Vec<Grant>,
    /// Who holds it, and so gains too.
    pub bound_subjects: Vec<rbac::model::BoundSubject>,
}

/// A subject given pod write it did not have by a binding change.
#[derive(Debug, Clone, Serialize)]
pub struct SubjectGain {
    /// `User`, `Group` or `ServiceAccount`.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Namespace (ServiceAccounts).
    pub namespace: Option<String>,
    /// What the subject stands for, for implicit or broad groups.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// What it may now do to pods that it could not through any other binding of it.
    pub newly_granted: Vec<Grant>,
}

/// Another RBAC change by the same actor, shortly before the alerting one.
#[derive(Debug, Clone, Serialize)]
pub struct RecentChange {
    /// When.
    pub time: String,
    /// Verb.
    pub verb: String,
    /// Kind of the object.
    pub kind: String,
    /// Namespace, when namespaced.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// Its auditID.
    pub audit_id: String,
}

/// What the RBAC model adds to an alert (stateful detection only).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Context {
    /// What the change granted that was not granted before, when `previous_state` is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newly_granted: Option<Vec<Grant>>,
    /// The object's rules before the change, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_rules: Option<Vec<serde_json::Value>>,
    /// What was known of the object before the change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_state: Option<PreviousState>,
    /// Aggregating ClusterRoles that gain pod write (`clusterrole-pod-write-aggregated`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregated_into: Option<Vec<AggregatorGain>>,
    /// Subjects a binding change gives pod write to (`pod-write-role-bound`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subjects_granted: Option<Vec<SubjectGain>>,
    /// Everyone bound to the role, after the change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bound_subjects: Option<Vec<rbac::model::BoundSubject>>,
    /// Who else can create or change ClusterRoles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_admins: Option<Vec<rbac::Grantee>>,
    /// The actor's other RBAC changes in the hour before this one (the latest 10).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_recent_changes: Option<Vec<RecentChange>>,
    /// How many such changes there are in all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_recent_changes_total: Option<u64>,
}

/// The identity that made the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actor {
    /// User name.
    pub username: Option<String>,
    /// UID, when the authenticator gives one.
    pub uid: Option<String>,
    /// Groups as authenticated; `None` when the log does not record them (GKE), which is
    /// not the same as no groups.
    pub groups: Option<Vec<String>>,
}

/// One thing the role lets its holders do to pods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    /// What it allows, in plain words.
    pub capability: String,
    /// Stable identifier of the capability (`create-pods`, `exec`, ...).
    pub capability_id: String,
    /// Request verbs allowed.
    pub verbs: Vec<String>,
    /// `pods` or `pods/<subresource>`.
    pub resources: Vec<String>,
    /// Empty: every pod. Otherwise only these pods.
    pub resource_names: Vec<String>,
    /// Indexes (0-based) of the role's rules that grant it.
    pub rules: Vec<usize>,
}

/// Where the event was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    /// Input path, `-` for stdin.
    pub path: String,
    /// 1-based line where the record starts.
    pub line: u64,
    /// For EventList records: the item's 0-based index; for a managed cluster's record
    /// holding several events, the event's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<usize>,
    /// The managed cluster's export the event was unwrapped from: `eks`, `gke` or `aks`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<&'static str>,
}

/// An alert.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    /// Detection rule id.
    pub rule_id: &'static str,
    /// Title.
    pub title: &'static str,
    /// Severity.
    pub severity: Severity,
    /// The request's auditID.
    pub audit_id: Option<String>,
    /// stageTimestamp (or the closest time the event has).
    pub time: Option<String>,
    /// Cluster label from `--cluster`.
    pub cluster: Option<String>,
    /// Verb of the request.
    pub verb: String,
    /// Name of the ClusterRole (for binding alerts: the role bound).
    pub role: Option<String>,
    /// For binding alerts: the kind of the role bound, `ClusterRole` or `Role`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_kind: Option<&'static str>,
    /// For binding alerts: `ClusterRoleBinding` or `RoleBinding`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binding_kind: Option<&'static str>,
    /// For binding alerts: the binding's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binding: Option<String>,
    /// Namespace of a namespaced object (RoleBinding, Role).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The authenticated identity: the real actor, also when it impersonated someone.
    pub actor: Actor,
    /// The identity it impersonated, when it did.
    pub impersonated_user: Option<Actor>,
    /// Client addresses; the last one is the direct peer.
    pub source_ips: Vec<String>,
    /// Client-supplied user agent.
    pub user_agent: Option<String>,
    /// Request URI.
    pub request_uri: Option<String>,
    /// HTTP response code.
    pub response_code: Option<i64>,
    /// Audit level the event was logged at.
    pub level: Option<String>,
    /// Audit stage of the event.
    pub stage: Option<String>,
    /// Where the rules were read from.
    pub rules_source: RulesSource,
    /// The role's rules that grant pod write, verbatim.
    pub offending_rules: Vec<Box<RawValue>>,
    /// What those rules let holders do.
    pub grants: Vec<Grant>,
    /// What an attacker can do with these grants.
    pub why: Vec<String>,
    /// Steps and commands to investigate.
    pub investigation: Vec<String>,
    /// Steps and commands to resolve.
    pub resolution: Vec<String>,
    /// The role's rules with pod write taken out: a starting point for a least-privilege role.
    pub least_privilege_rules: Vec<serde_json::Value>,
    /// What the RBAC model knows around the change (stateful detection).
    #[serde(flatten)]
    pub context: Context,
    /// Caveats about the evidence (missing fields, skipped bodies, version assumptions).
    pub notes: Vec<String>,
    /// Where the event was read.
    pub source: Option<Location>,
    /// Name of the suppression that matched, for suppressed alerts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed_by: Option<String>,
}

impl Alert {
    /// Adds what a managed cluster's wrapper told about the event: the cluster's name (the
    /// log's own, which wins over `--cluster`: a stream can mix clusters), that the groups are
    /// unknown (GKE), and the wrapper's caveats.
    pub fn apply_origin(&mut self, o: &audit::Origin) {
        if let Some(c) = &o.cluster {
            self.cluster = Some(c.clone());
        }
        if o.groups_unknown {
            let unknown = |a: &mut Actor| {
                if a.groups.as_ref().is_none_or(Vec::is_empty) {
                    a.groups = None;
                }
            };
            unknown(&mut self.actor);
            if let Some(i) = self.impersonated_user.as_mut() {
                unknown(i);
            }
            self.notes.push(format!(
                "{} audit logs record no group list: the actor's groups are unknown (groups: null), not empty; suppressions by group cannot match",
                o.cloud.as_str().to_uppercase()
            ));
        }
        self.notes.extend(o.notes.iter().cloned());
    }
}
