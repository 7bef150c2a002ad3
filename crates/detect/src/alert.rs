//! The alert: everything an investigator needs, with stable JSON field names.

use serde::Serialize;
use serde_json::value::RawValue;

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
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
}

/// The identity that made the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actor {
    /// User name.
    pub username: Option<String>,
    /// UID, when the authenticator gives one.
    pub uid: Option<String>,
    /// Groups as authenticated.
    pub groups: Vec<String>,
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
    /// For EventList records: the item's 0-based index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<usize>,
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
    /// Name of the ClusterRole.
    pub role: Option<String>,
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
    /// Caveats about the evidence (missing fields, skipped bodies, version assumptions).
    pub notes: Vec<String>,
    /// Where the event was read.
    pub source: Option<Location>,
    /// Name of the suppression that matched, for suppressed alerts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed_by: Option<String>,
}
