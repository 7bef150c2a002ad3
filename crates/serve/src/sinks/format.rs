//! Alert bodies for HTTP receivers: Slack incoming webhooks and Falco's output shape.
//!
//! Both are built from the alert's JSON (its stable field names), so that alerts read back
//! from the state file are delivered exactly like fresh ones.

use serde_json::{json, Map, Value};

/// Slack's mrkdwn treats `<...>` as links and mentions: text an API client chose (role names,
/// user agents) is escaped so that it stays text.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn text<'a>(a: &'a Value, key: &str) -> Option<&'a str> {
    a.get(key).and_then(Value::as_str)
}

/// Who did it, in words.
fn actor(a: &Value) -> String {
    let name = |u: &Value| {
        u.get("username")
            .and_then(Value::as_str)
            .unwrap_or("(unknown user)")
            .to_string()
    };
    let real = a
        .get("actor")
        .map(name)
        .unwrap_or_else(|| "(unknown user)".into());
    match a.get("impersonated_user").filter(|v| !v.is_null()) {
        Some(i) => format!("{real} (as {})", name(i)),
        None => real,
    }
}

/// What was changed: `ClusterRole pod-writer`, `RoleBinding ns/b`.
fn target(a: &Value) -> String {
    let kind = text(a, "binding_kind").unwrap_or("ClusterRole");
    let name = text(a, "binding").or(text(a, "role")).unwrap_or("?");
    match text(a, "namespace") {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// A Slack incoming-webhook message: `text` is a readable summary with no links.
pub fn slack(a: &Value) -> Value {
    let mut t = format!(
        "*[{}] {}* (`{}`)\n*{}* {} {}",
        text(a, "severity").unwrap_or("?").to_uppercase(),
        slack_escape(text(a, "title").unwrap_or("kubeward alert")),
        slack_escape(text(a, "rule_id").unwrap_or("?")),
        slack_escape(&actor(a)),
        slack_escape(text(a, "verb").unwrap_or("?")),
        slack_escape(&target(a)),
    );
    if let Some(c) = text(a, "cluster") {
        t.push_str(&format!(" in cluster {}", slack_escape(c)));
    }
    if let Some(time) = text(a, "time") {
        t.push_str(&format!(" at {}", slack_escape(time)));
    }
    let grants: Vec<&str> = a
        .get("grants")
        .and_then(Value::as_array)
        .map(|g| {
            g.iter()
                .filter_map(|g| g.get("capability").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    if !grants.is_empty() {
        t.push_str(&format!("\n*Grants:* {}", slack_escape(&grants.join("; "))));
    }
    let first = |key: &str| {
        a.get(key)
            .and_then(Value::as_array)
            .and_then(|v| v.first())
            .and_then(Value::as_str)
    };
    if let Some(why) = first("why") {
        t.push_str(&format!("\n*Why it matters:* {}", slack_escape(why)));
    }
    if let Some(step) = first("investigation") {
        t.push_str(&format!("\n*Investigate:* {}", slack_escape(step)));
    }
    if let Some(id) = text(a, "audit_id") {
        t.push_str(&format!("\nauditID `{}`", slack_escape(id)));
    }
    if let Some(s) = text(a, "suppressed_by") {
        t.push_str(&format!("\n(suppressed by {})", slack_escape(s)));
    }
    json!({ "text": t })
}

/// Falco's priority names for kubeward's severities.
fn priority(severity: &str) -> &'static str {
    match severity {
        "critical" => "Critical",
        "high" => "Error",
        "medium" => "Warning",
        _ => "Informational",
    }
}

/// Falco's alert JSON (what Falcosidekick takes): `output`, `priority`, `rule`, `time`,
/// `output_fields` (Falco's `ka.*` field names), `source: "k8s_audit"`, `tags`.
pub fn falco(a: &Value, now: &str) -> Value {
    let time = text(a, "time").unwrap_or(now).to_string();
    let prio = priority(text(a, "severity").unwrap_or(""));
    let title = text(a, "title").unwrap_or("kubeward alert");
    let rule_id = text(a, "rule_id").unwrap_or("?");
    let get = |k: &str| a.get(k).cloned().unwrap_or(Value::Null);
    let mut f = Map::new();
    let mut put = |k: &str, v: Value| {
        f.insert(k.to_string(), v);
    };
    put("ka.auditid", get("audit_id"));
    put(
        "ka.user.name",
        a.pointer("/actor/username").cloned().unwrap_or(Value::Null),
    );
    put(
        "ka.user.groups",
        a.pointer("/actor/groups").cloned().unwrap_or(json!([])),
    );
    put(
        "ka.impuser.name",
        a.pointer("/impersonated_user/username")
            .cloned()
            .unwrap_or(Value::Null),
    );
    put("ka.verb", get("verb"));
    put(
        "ka.target.name",
        json!(text(a, "binding").or(text(a, "role"))),
    );
    put("ka.target.namespace", get("namespace"));
    put(
        "ka.target.resource",
        json!(match text(a, "binding_kind") {
            Some("RoleBinding") => "rolebindings",
            Some(_) => "clusterrolebindings",
            None if text(a, "namespace").is_some() => "roles",
            None => "clusterroles",
        }),
    );
    put("ka.uri", get("request_uri"));
    put("ka.useragent", get("user_agent"));
    put("ka.sourceips", get("source_ips"));
    put("ka.response.code", get("response_code"));
    put("ka.cluster.name", get("cluster"));
    put("kubeward.rule_id", json!(rule_id));
    put("kubeward.severity", get("severity"));
    let output = format!(
        "{time}: {prio} {title} (user={} verb={} target={} rule_id={rule_id} auditID={})",
        actor(a),
        text(a, "verb").unwrap_or("?"),
        target(a),
        text(a, "audit_id").unwrap_or("-"),
    );
    json!({
        "output": output,
        "priority": prio,
        "rule": title,
        "time": time,
        "output_fields": f,
        "source": "k8s_audit",
        "tags": ["k8s", "rbac", "kubeward", rule_id],
        "hostname": text(a, "cluster").unwrap_or("kubeward"),
    })
}
