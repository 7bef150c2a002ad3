//! Rule `clusterrole-pod-write`: a successful create, update or patch of a ClusterRole whose
//! resulting rules grant write on pods.

use crate::alert::{Actor, Alert, Grant, RulesSource, Severity};
use crate::explain;
use audit::{Event, UserInfo};
use rbac::podwrite::is_wildcard_rule;
use rbac::{role_pod_write, Capability, PodWriteGrant, PodWriteOptions, PolicyRule};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// Rule id.
pub const RULE_ID: &str = "clusterrole-pod-write";
/// Rule title.
pub const TITLE: &str = "K8s Audit Log Cluster Role With Pod Write";
/// The API group of RBAC objects.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Settings of the rule.
#[derive(Debug, Clone, Default)]
pub struct RuleOptions {
    /// The pod-write definition's options (Kubernetes version).
    pub pod_write: PodWriteOptions,
    /// Cluster label for alerts.
    pub cluster: Option<String>,
    /// Set when the user gave the version, for the notes.
    pub kube_version: Option<rbac::KubeVersion>,
    /// Shown in investigation commands as the log to search.
    pub log_hint: Option<String>,
}

/// Whether an event with this head could alert (verb and resource only; the full event decides).
pub fn head_may_match(h: &audit::head::Head) -> bool {
    matches!(h.verb.as_deref(), Some("create" | "update" | "patch"))
        && h.resource.as_deref() == Some("clusterroles")
}

/// Whether the event is about the RBAC `clusterroles` resource (cheap check, before anything
/// else is looked at). Returns a note when the API group had to be inferred.
fn is_clusterrole_event(ev: &Event) -> Option<Option<String>> {
    let oref = ev.object_ref.as_ref()?;
    if oref.resource.as_deref() != Some("clusterroles")
        || oref.subresource.as_deref().is_some_and(|s| !s.is_empty())
    {
        return None;
    }
    rbac_group(ev)
}

/// Whether the event's object is in the RBAC API group: `Some` when it is, with a note when
/// the group had to be inferred (it is missing), `None` when it is another group.
pub fn rbac_group(ev: &Event) -> Option<Option<String>> {
    let oref = ev.object_ref.as_ref()?;
    match oref.api_group.as_deref() {
        Some(RBAC_GROUP) => Some(None),
        Some(g) if !g.is_empty() => None,
        // The core group has no RBAC resources and a CRD cannot live in it, so an absent group
        // is a pipeline or hand-written event dropping it; the URI settles it when present.
        _ => match ev.request_uri.as_deref() {
            Some(uri) if uri.starts_with("/apis/") => {
                if uri.starts_with("/apis/rbac.authorization.k8s.io/") {
                    Some(Some("objectRef.apiGroup is missing; requestURI shows the RBAC group".into()))
                } else {
                    None
                }
            }
            _ => Some(Some(
                "objectRef.apiGroup is missing; read as rbac.authorization.k8s.io (the core group, the only one an event omits, has no RBAC resources)".into(),
            )),
        },
    }
}

/// Whether a request completed, succeeded (2xx) and was real (not a dry run). Notes explain
/// anything inferred.
pub fn completed_for_real(ev: &Event, notes: &mut Vec<String>) -> bool {
    let code_ok = ev.code().is_some_and(|c| (200..300).contains(&c));
    match ev.stage.as_deref() {
        Some("ResponseComplete") => {}
        // Hand-written and some exported events drop the stage; a 2xx status means completion.
        None if code_ok => {
            notes.push("stage is missing; a 2xx responseStatus shows the request completed".into())
        }
        _ => return false,
    }
    code_ok && !ev.is_dry_run()
}

/// Whether an event is a completed, successful, real (not dry-run) create/update/patch of a
/// ClusterRole. Notes explain anything inferred.
pub fn is_successful_change(ev: &Event, notes: &mut Vec<String>) -> bool {
    if !matches!(ev.verb(), "create" | "update" | "patch") {
        return false;
    }
    let Some(group_note) = is_clusterrole_event(ev) else {
        return false;
    };
    if !completed_for_real(ev, notes) {
        return false;
    }
    notes.extend(group_note);
    true
}

#[derive(Deserialize)]
struct RoleBody<'a> {
    #[serde(borrow, default)]
    kind: Option<audit::Text<'a>>,
    #[serde(borrow, default)]
    metadata: Option<Meta<'a>>,
    #[serde(borrow, default)]
    rules: Option<Option<Vec<&'a RawValue>>>,
}

#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(borrow, default)]
    name: Option<audit::Text<'a>>,
}

#[derive(Deserialize)]
struct JsonPatchOp<'a> {
    #[serde(borrow, default)]
    op: Option<audit::Text<'a>>,
    #[serde(borrow, default)]
    path: Option<audit::Text<'a>>,
    #[serde(borrow, default)]
    value: Option<&'a RawValue>,
}

/// The rules the role ends up with, as far as the event shows them.
pub struct RoleRules<'a> {
    /// Where they came from.
    pub source: RulesSource,
    /// Each rule raw (verbatim) with its parsed form.
    pub rules: Vec<LoggedRule<'a>>,
    /// Role name from the body, when the event has one.
    pub name: Option<String>,
}

fn parse_rules<'a>(raws: &[&'a RawValue], notes: &mut Vec<String>) -> Vec<LoggedRule<'a>> {
    let mut out = Vec::with_capacity(raws.len());
    for (i, raw) in raws.iter().enumerate() {
        match serde_json::from_str::<PolicyRule>(raw.get()) {
            Ok(r) => out.push((*raw, r)),
            Err(e) => {
                // Strategic-merge directives such as {"$patch": "replace"} are not rules.
                if !raw.get().contains("\"$patch\"") {
                    notes.push(format!(
                        "rule {i} could not be read ({e}) and was not evaluated"
                    ));
                }
            }
        }
    }
    out
}

/// A rule as logged (raw) with its parsed form.
type LoggedRule<'a> = (&'a RawValue, PolicyRule);

/// A body that is a whole ClusterRole (create, update, server-side apply), or `None`.
fn full_role<'a>(
    raw: &'a RawValue,
    notes: &mut Vec<String>,
) -> Option<(Vec<LoggedRule<'a>>, Option<String>)> {
    let body: RoleBody = serde_json::from_str(raw.get()).ok()?;
    if body.kind.as_deref() != Some("ClusterRole") {
        return None;
    }
    let raws = body.rules.flatten().unwrap_or_default();
    let name = body.metadata.and_then(|m| m.name).map(|n| n.to_string());
    Some((parse_rules(&raws, notes), name))
}

/// Finds the role's rules: the stored object first, then a full request object, then the rules
/// a patch adds or sets.
pub fn role_rules<'a>(ev: &Event<'a>, notes: &mut Vec<String>) -> Option<RoleRules<'a>> {
    if let Some(resp) = ev.response_object {
        if let Some((rules, name)) = full_role(resp, notes) {
            return Some(RoleRules {
                source: RulesSource::ResponseObject,
                rules,
                name,
            });
        }
        if resp.get().starts_with('"') {
            notes.push(format!(
                "responseObject was not logged ({}); rules read from the request",
                resp.get()
            ));
        }
    }
    let req = ev.request_object?;
    if req.get().starts_with('"') {
        notes.push(format!("requestObject was not logged ({})", req.get()));
        return None;
    }
    let is_patch = ev.verb() == "patch";
    if let Some((rules, name)) = full_role(req, notes) {
        if is_patch {
            notes.push("the patch is a whole ClusterRole (server-side apply); its rules are the role's rules".into());
        }
        return Some(RoleRules {
            source: RulesSource::RequestObject,
            rules,
            name,
        });
    }
    if !is_patch {
        // A create or update body that is not a ClusterRole: nothing to judge.
        return None;
    }
    let text = req.get().trim_start();
    if text.starts_with('[') {
        let ops: Vec<JsonPatchOp> = serde_json::from_str(text).ok()?;
        let mut raws: Vec<&RawValue> = Vec::new();
        for op in &ops {
            let (Some(kind), Some(path)) = (op.op.as_deref(), op.path.as_deref()) else {
                continue;
            };
            if !matches!(kind, "add" | "replace") {
                continue;
            }
            let Some(value) = op.value else { continue };
            if path == "/rules" {
                if let Ok(Some(list)) = serde_json::from_str::<Option<Vec<&RawValue>>>(value.get())
                {
                    raws.extend(list);
                }
            } else if let Some(rest) = path.strip_prefix("/rules/") {
                if rest == "-" || rest.parse::<usize>().is_ok() {
                    raws.push(value);
                } else {
                    notes.push(format!(
                        "the JSON patch changes part of an existing rule ({path}); without the previous role that change is not evaluated"
                    ));
                }
            }
        }
        notes.push("rules read from a JSON patch: only the rules it adds or sets are known".into());
        return Some(RoleRules {
            source: RulesSource::Patch,
            rules: parse_rules(&raws, notes),
            name: None,
        });
    }
    let body: RoleBody = serde_json::from_str(text).ok()?;
    let raws = body.rules.flatten()?;
    notes.push("rules read from a merge patch: they replace the role's rules (PolicyRule lists have no merge key)".into());
    Some(RoleRules {
        source: RulesSource::Patch,
        rules: parse_rules(&raws, notes),
        name: body.metadata.and_then(|m| m.name).map(|n| n.to_string()),
    })
}

/// The JSON text without insignificant whitespace, so that rules logged pretty-printed keep
/// every alert on one output line. Keys, order and values stay exactly as logged.
pub fn compact_json(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let (mut in_str, mut esc) = (false, false);
    for c in s.chars() {
        if in_str {
            out.push(c);
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\n' | '\r' | '\t') {
            out.push(c);
        }
    }
    out
}

fn actor(u: &UserInfo) -> Actor {
    Actor {
        username: u.username.as_ref().map(|s| s.to_string()),
        uid: u.uid.as_ref().map(|s| s.to_string()),
        groups: Some(u.groups.iter().flatten().map(|g| g.to_string()).collect()),
    }
}

/// Groups atomic grants by capability and name restriction.
pub fn summarize(grants: &[PodWriteGrant]) -> Vec<Grant> {
    let mut by: BTreeMap<(Capability, Vec<String>), Grant> = BTreeMap::new();
    for g in grants {
        let e = by
            .entry((g.capability.clone(), g.resource_names.clone()))
            .or_insert_with(|| Grant {
                capability: g.capability.words(),
                capability_id: capability_id(&g.capability),
                verbs: Vec::new(),
                resources: Vec::new(),
                resource_names: g.resource_names.clone(),
                rules: Vec::new(),
            });
        if !e.verbs.iter().any(|v| v == g.verb) {
            e.verbs.push(g.verb.to_string());
        }
        if !e.resources.contains(&g.resource) {
            e.resources.push(g.resource.clone());
        }
        if !e.rules.contains(&g.rule_index) {
            e.rules.push(g.rule_index);
        }
    }
    by.into_values()
        .map(|mut g| {
            g.rules.sort_unstable();
            g
        })
        .collect()
}

fn capability_id(c: &Capability) -> String {
    match serde_json::to_value(c) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Object(m)) => m.keys().next().cloned().unwrap_or_default(),
        _ => String::new(),
    }
}

/// Severity from the grants (see the README for the policy).
pub fn severity(rules: &[&PolicyRule], grants: &[PodWriteGrant]) -> Severity {
    severity_of(rules.iter().any(|r| is_wildcard_rule(r)), grants)
}

/// Critical when `critical` (what makes it so depends on the rule), else high for an
/// unrestricted grant that runs code in pods, else medium.
pub fn severity_of(critical: bool, grants: &[PodWriteGrant]) -> Severity {
    if critical {
        Severity::Critical
    } else if grants
        .iter()
        .any(|g| !g.narrowed() && g.capability.runs_code())
    {
        Severity::High
    } else {
        Severity::Medium
    }
}

/// An alert carrying the event's facts (who, from where, when, how) and nothing rule-specific
/// yet: `role`, rules, grants and explanations are filled in by [`fill`] or by the stateful
/// rules.
pub fn base_alert(ev: &Event, opts: &RuleOptions) -> Alert {
    Alert {
        rule_id: RULE_ID,
        title: TITLE,
        severity: Severity::Medium,
        audit_id: ev.audit_id.as_ref().map(|s| s.to_string()),
        time: ev.time().map(str::to_string),
        cluster: opts.cluster.clone(),
        verb: ev.verb().to_string(),
        role: None,
        role_kind: None,
        binding_kind: None,
        binding: None,
        namespace: None,
        impersonated_user: ev.impersonated_user.as_ref().map(actor),
        actor: ev.user.as_ref().map(actor).unwrap_or(Actor {
            username: None,
            uid: None,
            groups: Some(vec![]),
        }),
        source_ips: ev
            .source_ips
            .iter()
            .flatten()
            .map(|s| s.to_string())
            .collect(),
        user_agent: ev.user_agent.as_ref().map(|s| s.to_string()),
        request_uri: ev.request_uri.as_ref().map(|s| s.to_string()),
        response_code: ev.code(),
        level: ev.level.as_ref().map(|s| s.to_string()),
        stage: ev.stage.as_ref().map(|s| s.to_string()),
        rules_source: RulesSource::NotLogged,
        offending_rules: Vec::new(),
        grants: Vec::new(),
        why: Vec::new(),
        investigation: Vec::new(),
        resolution: Vec::new(),
        least_privilege_rules: Vec::new(),
        context: Default::default(),
        notes: Vec::new(),
        source: None,
        suppressed_by: None,
    }
}

/// The grants of `after` that `before` does not already give: a grant is covered when an
/// earlier one has the same verb and resource and is unrestricted or lists every name it lists.
pub fn newly_granted(after: &[PodWriteGrant], before: &[PodWriteGrant]) -> Vec<PodWriteGrant> {
    after
        .iter()
        .filter(|g| {
            !before.iter().any(|b| {
                b.verb == g.verb
                    && b.resource == g.resource
                    && (b.resource_names.is_empty()
                        || (!g.resource_names.is_empty()
                            && g.resource_names
                                .iter()
                                .all(|n| b.resource_names.contains(n))))
            })
        })
        .cloned()
        .collect()
}

/// Fills the rule-specific part of `alert` for a ClusterRole `role` whose rules are `rules`
/// (each as logged, with its parsed form). `report` are the grants to explain and rate: all of
/// the role's grants, or only the newly granted ones when the previous state is known.
/// Returns `false` (and leaves the alert as it was) when `report` is empty.
pub fn fill(
    alert: &mut Alert,
    role: Option<String>,
    rules: &AlertRules<'_>,
    report: &[PodWriteGrant],
    opts: &RuleOptions,
) -> bool {
    if report.is_empty() {
        return false;
    }
    let parsed = rules.parsed;
    let computed;
    let grants = match rules.grants {
        Some(g) => g,
        None => {
            computed = role_pod_write(parsed, opts.pod_write);
            &computed
        }
    };
    let mut offending_idx: Vec<usize> = report.iter().map(|g| g.rule_index).collect();
    offending_idx.sort_unstable();
    offending_idx.dedup();
    let offending: Vec<&PolicyRule> = offending_idx
        .iter()
        .filter_map(|&i| parsed.get(i))
        .collect();
    let sev = severity(&offending, report);
    if report.iter().any(|g| g.verb == "get") {
        let v = opts.kube_version.map_or(
            "the cluster's version is not known (--kube-version)".to_string(),
            |v| format!("--kube-version {v}"),
        );
        alert.notes.push(format!(
            "`get` on pods/exec, pods/attach or pods/portforward is counted: before Kubernetes 1.35 a WebSocket connection needs only `get` ({v}; kubernetes#134577)"
        ));
    }
    let ctx = explain::Context {
        role: role.as_deref().unwrap_or("<unnamed>"),
        actor: alert.actor.username.as_deref(),
        impersonated: alert
            .impersonated_user
            .as_ref()
            .and_then(|u| u.username.as_deref()),
        log_hint: opts.log_hint.as_deref(),
    };
    alert.investigation = explain::investigation(&ctx);
    alert.resolution = explain::resolution(&ctx);
    alert.severity = sev;
    alert.role = role;
    alert.offending_rules = offending_idx
        .iter()
        .filter_map(|&i| rules.text(i))
        .filter_map(|raw| RawValue::from_string(compact_json(&raw)).ok())
        .collect();
    alert.why = explain::why(report, sev);
    alert.least_privilege_rules = explain::least_privilege(parsed, opts.pod_write);
    alert.grants = summarize(grants);
    true
}

/// Evaluates the rule on one event, on its own (no state).
pub fn evaluate(ev: &Event, opts: &RuleOptions) -> Option<Alert> {
    let mut notes = Vec::new();
    if !is_successful_change(ev, &mut notes) {
        return None;
    }
    let found = role_rules(ev, &mut notes)?;
    let (texts, parsed): (Vec<String>, Vec<PolicyRule>) = found
        .rules
        .into_iter()
        .map(|(raw, r)| (raw.get().to_string(), r))
        .unzip();
    let grants = role_pod_write(&parsed, opts.pod_write);
    let role = ev
        .object_ref
        .as_ref()
        .and_then(|o| o.name.as_ref())
        .map(|n| n.to_string())
        .or(found.name);
    let mut alert = base_alert(ev, opts);
    alert.notes = notes;
    alert.rules_source = found.source;
    let rules = AlertRules {
        parsed: &parsed,
        texts: &texts,
        grants: Some(&grants),
    };
    fill(&mut alert, role, &rules, &grants, opts).then_some(alert)
}

/// A role's rules as [`fill`] reads them.
#[derive(Debug, Clone, Copy)]
pub struct AlertRules<'a> {
    /// The rules, parsed.
    pub parsed: &'a [PolicyRule],
    /// Each rule's JSON text as logged, in the same order; when the lengths differ the text
    /// is made from the parsed rule.
    pub texts: &'a [String],
    /// The pod write the rules grant, if already computed.
    pub grants: Option<&'a [PodWriteGrant]>,
}

impl AlertRules<'_> {
    fn text(&self, i: usize) -> Option<std::borrow::Cow<'_, str>> {
        if self.texts.len() == self.parsed.len() {
            return self
                .texts
                .get(i)
                .map(|t| std::borrow::Cow::Borrowed(t.as_str()));
        }
        let rule = self.parsed.get(i)?;
        serde_json::to_string(rule)
            .ok()
            .map(std::borrow::Cow::Owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacting_keeps_strings() {
        assert_eq!(
            compact_json("{\n  \"a b\": [ 1, \"x \\\" y\" ]\n}"),
            "{\"a b\":[1,\"x \\\" y\"]}"
        );
    }
}
