//! Alert bodies for HTTP receivers: Slack incoming webhooks and Falco's output shape.

use detect::alert::{Alert, Severity};
use serde_json::{json, Map, Value};

/// Slack's mrkdwn treats `<...>` as links and mentions: text an API client chose (role names,
/// user agents) is escaped so that it stays text.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Who did it, in words.
fn actor(a: &Alert) -> String {
    let name = |u: &Option<String>| u.clone().unwrap_or_else(|| "(unknown user)".into());
    match &a.impersonated_user {
        Some(i) => format!("{} (as {})", name(&a.actor.username), name(&i.username)),
        None => name(&a.actor.username),
    }
}

/// What was changed: `ClusterRole pod-writer`, `RoleBinding ns/b`.
fn target(a: &Alert) -> String {
    let kind = a.binding_kind.unwrap_or("ClusterRole");
    let name = a
        .binding
        .clone()
        .or_else(|| a.role.clone())
        .unwrap_or_else(|| "?".into());
    match &a.namespace {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// A Slack incoming-webhook message: `text` is a readable summary with no links.
pub fn slack(a: &Alert) -> Value {
    let mut t = format!(
        "*[{}] {}* (`{}`)\n*{}* {} {}",
        a.severity.as_str().to_uppercase(),
        a.title,
        a.rule_id,
        slack_escape(&actor(a)),
        slack_escape(&a.verb),
        slack_escape(&target(a)),
    );
    if let Some(c) = &a.cluster {
        t.push_str(&format!(" in cluster {}", slack_escape(c)));
    }
    if let Some(time) = &a.time {
        t.push_str(&format!(" at {time}"));
    }
    let grants: Vec<&str> = a.grants.iter().map(|g| g.capability.as_str()).collect();
    if !grants.is_empty() {
        t.push_str(&format!("\n*Grants:* {}", slack_escape(&grants.join("; "))));
    }
    if let Some(why) = a.why.first() {
        t.push_str(&format!("\n*Why it matters:* {}", slack_escape(why)));
    }
    if let Some(step) = a.investigation.first() {
        t.push_str(&format!("\n*Investigate:* {}", slack_escape(step)));
    }
    if let Some(id) = &a.audit_id {
        t.push_str(&format!("\nauditID `{}`", slack_escape(id)));
    }
    if let Some(s) = &a.suppressed_by {
        t.push_str(&format!("\n(suppressed by {})", slack_escape(s)));
    }
    json!({ "text": t })
}

/// Falco's priority names for kubeward's severities.
fn priority(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "Critical",
        Severity::High => "Error",
        Severity::Medium => "Warning",
        Severity::Info => "Informational",
    }
}

/// Falco's alert JSON (what Falcosidekick takes): `output`, `priority`, `rule`, `time`,
/// `output_fields` (Falco's `ka.*` field names), `source: "k8s_audit"`, `tags`.
pub fn falco(a: &Alert, now: &str) -> Value {
    let time = a.time.clone().unwrap_or_else(|| now.to_string());
    let mut f = Map::new();
    let mut put = |k: &str, v: Value| {
        f.insert(k.to_string(), v);
    };
    put("ka.auditid", json!(a.audit_id));
    put("ka.user.name", json!(a.actor.username));
    put("ka.user.groups", json!(a.actor.groups));
    put(
        "ka.impuser.name",
        json!(a
            .impersonated_user
            .as_ref()
            .and_then(|u| u.username.clone())),
    );
    put("ka.verb", json!(a.verb));
    put(
        "ka.target.name",
        json!(a.binding.clone().or(a.role.clone())),
    );
    put("ka.target.namespace", json!(a.namespace));
    put(
        "ka.target.resource",
        json!(match a.binding_kind {
            Some("RoleBinding") => "rolebindings",
            Some(_) => "clusterrolebindings",
            None if a.namespace.is_some() => "roles",
            None => "clusterroles",
        }),
    );
    put("ka.uri", json!(a.request_uri));
    put("ka.useragent", json!(a.user_agent));
    put("ka.sourceips", json!(a.source_ips));
    put("ka.response.code", json!(a.response_code));
    put("ka.cluster.name", json!(a.cluster));
    put("kubeward.rule_id", json!(a.rule_id));
    put("kubeward.severity", json!(a.severity.as_str()));
    let output = format!(
        "{time}: {} {} (user={} verb={} target={} rule_id={} auditID={})",
        priority(a.severity),
        a.title,
        actor(a),
        a.verb,
        target(a),
        a.rule_id,
        a.audit_id.as_deref().unwrap_or("-"),
    );
    json!({
        "output": output,
        "priority": priority(a.severity),
        "rule": a.title,
        "time": time,
        "output_fields": f,
        "source": "k8s_audit",
        "tags": ["k8s", "rbac", "kubeward", a.rule_id],
        "hostname": a.cluster.clone().unwrap_or_else(|| "kubeward".into()),
    })
}
