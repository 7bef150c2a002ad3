//! GKE: Cloud Audit Logs `LogEntry` records of the `k8s.io` service.
//!
//! GKE does not keep the API server's Event: it writes a `LogEntry` whose `protoPayload` (an
//! `AuditLog`) holds the same facts under other names. They are mapped back:
//!
//! | LogEntry | Event |
//! |---|---|
//! | `protoPayload.methodName` (`io.k8s.authorization.rbac.v1.clusterroles.create`) | `verb` (the last segment) |
//! | `protoPayload.resourceName` (`rbac.authorization.k8s.io/v1/clusterroles/NAME`, `core/v1/namespaces/NS/pods/NAME/exec`) | `objectRef` (`core` is the core group, `""`) |
//! | `protoPayload.authenticationInfo.principalEmail` | `user.username` (GKE logs no groups) |
//! | `protoPayload.requestMetadata.callerIp`, `callerSuppliedUserAgent` | `sourceIPs`, `userAgent` |
//! | `protoPayload.request`, `response` (without their `@type`) | `requestObject`, `responseObject` |
//! | `protoPayload.status.code` (google.rpc; absent or 0 is OK), or a `Status` response's code | `responseStatus.code` (HTTP) |
//! | `operation.id` | `auditID` |
//! | `operation.last` | `stage: ResponseComplete` |
//! | `labels` (`authorization.k8s.io/decision`, `command.gke.io/dryRun`, ...) | `annotations` |
//! | `timestamp` | `stageTimestamp` |
//! | `resource.labels.cluster_name` | the cluster's name |
//!
//! Entries of other services (`serviceName` other than `k8s.io`) are skipped and counted.

use super::{Cloud, Ctx, Origin, Piece};
use serde::Deserialize;
use serde_json::{json, Map, Value};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Entry {
    proto_payload: Option<Proto>,
    labels: Option<Map<String, Value>>,
    operation: Option<Operation>,
    resource: Option<Resource>,
    timestamp: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Operation {
    id: Option<Value>,
    first: Option<Value>,
    last: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Resource {
    labels: Option<Map<String, Value>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Proto {
    service_name: Option<String>,
    method_name: Option<String>,
    resource_name: Option<String>,
    authentication_info: Option<AuthInfo>,
    authorization_info: Option<Vec<Value>>,
    request_metadata: Option<RequestMetadata>,
    request: Option<Value>,
    response: Option<Value>,
    status: Option<Status>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct AuthInfo {
    principal_email: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RequestMetadata {
    // The API spells it callerIp; some re-encodings (Panther's) write callerIP.
    #[serde(alias = "callerIP")]
    caller_ip: Option<String>,
    caller_supplied_user_agent: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Status {
    code: Option<i64>,
    message: Option<String>,
}

/// The object reference a `resourceName` (and `methodName`) describe.
#[derive(Debug, Default, PartialEq, Eq)]
struct Target {
    group: Option<String>,
    version: Option<String>,
    namespace: Option<String>,
    resource: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

/// `GROUP/VERSION[/namespaces/NS]/RESOURCE[/NAME[/SUBRESOURCE]]`, where the core group is
/// spelled `core`.
fn parse_resource_name(rn: &str) -> Option<Target> {
    let segs: Vec<&str> = rn.trim_matches('/').split('/').collect();
    if segs.len() < 3 || segs.iter().any(|s| s.is_empty()) {
        return None;
    }
    let mut t = Target {
        group: Some(if segs[0] == "core" { "" } else { segs[0] }.to_string()),
        version: Some(segs[1].to_string()),
        ..Target::default()
    };
    let mut rest = &segs[2..];
    // `namespaces/NS/...` is a namespaced object; `namespaces/NS` alone is the namespace,
    // and `namespaces/NS/status` or `/finalize` its subresource (a resource is never called
    // that, so the two readings of three segments cannot clash).
    let namespace_sub =
        rest.len() == 3 && rest[0] == "namespaces" && matches!(rest[2], "status" | "finalize");
    if rest.len() >= 3 && rest[0] == "namespaces" && !namespace_sub {
        t.namespace = Some(rest[1].to_string());
        rest = &rest[2..];
    }
    t.resource = rest.first().map(|s| s.to_string());
    t.name = rest.get(1).map(|s| s.to_string());
    t.subresource = rest.get(2).map(|s| s.to_string());
    if rest.len() > 3 {
        return None;
    }
    Some(t)
}

/// A version segment: `v1`, `v1beta1`, `v2alpha1`.
fn is_version(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('v') else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return false;
    }
    let tail = &rest[digits..];
    tail.is_empty()
        || ["alpha", "beta"].iter().any(|p| {
            tail.strip_prefix(p)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// The verb, resource and subresource of `io.k8s.GROUP.VERSION.RESOURCE[.SUB].VERB`.
fn parse_method(m: &str) -> (Option<String>, Option<String>, Option<String>) {
    let segs: Vec<&str> = m.split('.').collect();
    let verb = segs.last().filter(|v| !v.is_empty()).map(|s| s.to_string());
    let Some(vi) = segs.iter().position(|s| is_version(s)) else {
        return (verb, None, None);
    };
    let after = &segs[vi + 1..];
    match after {
        [res, _verb] => (verb, Some(res.to_string()), None),
        [res, sub, _verb] => (verb, Some(res.to_string()), Some(sub.to_string())),
        _ => (verb, None, None),
    }
}

/// google.rpc.Code to the HTTP status the API server would have answered.
fn http_of_rpc(code: i64) -> i64 {
    match code {
        0 => 200,
        1 => 499,
        3 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        9 => 400,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => 500,
    }
}

/// A request or response body without GKE's `@type` (`rbac.authorization.k8s.io/v1.ClusterRole`),
/// with `kind` and `apiVersion` taken from it when the body has none.
fn body(v: Value) -> Value {
    let Value::Object(mut m) = v else { return v };
    if let Some(Value::String(t)) = m.remove("@type") {
        if let Some((api, kind)) = t.rsplit_once('.') {
            // `core.k8s.io/v1` is the core group's `v1`.
            let api = api.strip_prefix("core.k8s.io/").unwrap_or(api);
            if !kind.is_empty() && !kind.contains('/') {
                m.entry("kind")
                    .or_insert_with(|| Value::String(kind.into()));
                m.entry("apiVersion")
                    .or_insert_with(|| Value::String(api.into()));
            }
        }
    }
    Value::Object(m)
}

fn prefix(path: &str) -> String {
    if path.is_empty() {
        "GKE LogEntry".into()
    } else {
        format!("GKE {path}")
    }
}

/// One `LogEntry`.
pub(super) fn entry(ctx: &mut Ctx, raw: &str, path: &str) {
    let e: Entry = match serde_json::from_str(raw) {
        Ok(e) => e,
        Err(err) => {
            ctx.malformed(format!("{}: invalid field: {err}", prefix(path)));
            return;
        }
    };
    let Some(p) = e.proto_payload else {
        ctx.skipped("GKE: log entries without a protoPayload (not Cloud Audit Logs)");
        return;
    };
    // Entries always carry serviceName; re-encoded ones (Panther's test events) sometimes
    // drop it, and a `io.k8s.` method on a `k8s_cluster` resource then tells the service.
    let k8s_method = p
        .method_name
        .as_deref()
        .is_some_and(|m| m.starts_with("io.k8s."));
    match p.service_name.as_deref() {
        Some("k8s.io") => {}
        None if k8s_method => {}
        Some(other) => {
            ctx.skipped(format!(
                "GKE: audit log entries of service {other} (not Kubernetes)"
            ));
            return;
        }
        None => {
            ctx.malformed(format!("{}: protoPayload has no serviceName", prefix(path)));
            return;
        }
    }
    let Some(method) = p.method_name.as_deref() else {
        ctx.malformed(format!("{}: protoPayload has no methodName", prefix(path)));
        return;
    };
    let (verb, m_resource, m_sub) = parse_method(method);
    let target = p
        .resource_name
        .as_deref()
        .and_then(parse_resource_name)
        .unwrap_or(Target {
            resource: m_resource,
            subresource: m_sub,
            ..Target::default()
        });

    let mut ev = Map::new();
    ev.insert("kind".into(), json!("Event"));
    ev.insert("apiVersion".into(), json!("audit.k8s.io/v1"));
    let op = e.operation.unwrap_or_default();
    if let Some(Value::String(id)) = op.id.filter(|i| i.as_str().is_some_and(|s| !s.is_empty())) {
        ev.insert("auditID".into(), json!(id));
    }
    match (op.first, op.last) {
        (_, Some(Value::Bool(true))) => {
            ev.insert("stage".into(), json!("ResponseComplete"));
        }
        (Some(Value::Bool(true)), Some(Value::Bool(false))) => {
            ev.insert("stage".into(), json!("ResponseStarted"));
        }
        // Absent: the rule reads a 2xx code as completion, and says so.
        _ => {}
    }
    if let Some(verb) = verb {
        ev.insert("verb".into(), json!(verb));
    }
    if let Some(email) = p.authentication_info.and_then(|a| a.principal_email) {
        ev.insert("user".into(), json!({ "username": email }));
    }
    let meta = p.request_metadata.unwrap_or_default();
    if let Some(ip) = meta.caller_ip {
        ev.insert("sourceIPs".into(), json!([ip]));
    }
    if let Some(ua) = meta.caller_supplied_user_agent {
        ev.insert("userAgent".into(), json!(ua));
    }
    let mut oref = Map::new();
    for (k, v) in [
        ("resource", target.resource),
        ("namespace", target.namespace),
        ("name", target.name),
        ("apiGroup", target.group),
        ("apiVersion", target.version),
        ("subresource", target.subresource),
    ] {
        if let Some(v) = v {
            oref.insert(k.into(), Value::String(v));
        }
    }
    if !oref.is_empty() {
        ev.insert("objectRef".into(), Value::Object(oref));
    }

    // The HTTP code: a Status response carries the API server's own; else the rpc code,
    // where absent is OK; a denied authorization check without either is a 403.
    let response = p.response.map(body);
    let status_code = response.as_ref().and_then(|r| {
        (r.get("kind").and_then(Value::as_str) == Some("Status"))
            .then(|| r.get("code").and_then(Value::as_i64))
            .flatten()
    });
    let rpc = p.status.unwrap_or_default();
    let denied = p
        .authorization_info
        .iter()
        .flatten()
        .any(|a| a.get("granted") == Some(&Value::Bool(false)));
    let code = match (status_code, rpc.code.unwrap_or(0)) {
        (Some(c), _) => c,
        (None, 0) if denied => 403,
        (None, c) => http_of_rpc(c),
    };
    let mut status = Map::new();
    status.insert("code".into(), json!(code));
    if let Some(m) = rpc.message {
        status.insert("message".into(), json!(m));
    }
    ev.insert("responseStatus".into(), Value::Object(status));
    if let Some(req) = p.request {
        ev.insert("requestObject".into(), body(req));
    }
    if let Some(resp) = response {
        ev.insert("responseObject".into(), resp);
    }
    if let Some(Value::String(t)) = e.timestamp {
        ev.insert("stageTimestamp".into(), json!(t));
    }
    if let Some(labels) = e.labels {
        // Annotations are a string map; other values are not the API server's.
        let strings: Map<String, Value> =
            labels.into_iter().filter(|(_, v)| v.is_string()).collect();
        if !strings.is_empty() {
            ev.insert("annotations".into(), Value::Object(strings));
        }
    }
    let cluster = e
        .resource
        .and_then(|r| r.labels)
        .and_then(|l| {
            l.get("cluster_name")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .filter(|c| !c.is_empty());
    let mut origin = Origin::new(
        Cloud::Gke,
        cluster,
        if path.is_empty() {
            "LogEntry".into()
        } else {
            path.into()
        },
    );
    origin.groups_unknown = true;
    match serde_json::to_vec(&Value::Object(ev)) {
        Ok(json) => ctx.out.push(Piece::Event {
            json,
            origin: Some(origin),
        }),
        Err(err) => ctx.malformed(format!("{}: {err}", prefix(path))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names() {
        let t =
            parse_resource_name("rbac.authorization.k8s.io/v1/clusterroles/pod-writer").unwrap();
        assert_eq!(t.group.as_deref(), Some("rbac.authorization.k8s.io"));
        assert_eq!(t.resource.as_deref(), Some("clusterroles"));
        assert_eq!(t.name.as_deref(), Some("pod-writer"));
        assert_eq!(t.namespace, None);
        let t = parse_resource_name("core/v1/namespaces/prod/pods/web-1/exec").unwrap();
        assert_eq!(t.group.as_deref(), Some(""));
        assert_eq!(t.namespace.as_deref(), Some("prod"));
        assert_eq!(t.resource.as_deref(), Some("pods"));
        assert_eq!(t.name.as_deref(), Some("web-1"));
        assert_eq!(t.subresource.as_deref(), Some("exec"));
        let t = parse_resource_name("core/v1/namespaces/prod").unwrap();
        assert_eq!(t.resource.as_deref(), Some("namespaces"));
        assert_eq!(t.name.as_deref(), Some("prod"));
        for sub in ["status", "finalize"] {
            let t = parse_resource_name(&format!("core/v1/namespaces/prod/{sub}")).unwrap();
            assert_eq!(t.namespace, None);
            assert_eq!(t.resource.as_deref(), Some("namespaces"));
            assert_eq!(t.name.as_deref(), Some("prod"));
            assert_eq!(t.subresource.as_deref(), Some(sub));
        }
        let t = parse_resource_name("core/v1/namespaces/default/pods").unwrap();
        assert_eq!(t.namespace.as_deref(), Some("default"));
        assert_eq!(t.name, None);
        assert_eq!(parse_resource_name("/readyz"), None);
        assert_eq!(
            parse_resource_name("core/v1/healthz")
                .unwrap()
                .resource
                .as_deref(),
            Some("healthz")
        );
    }

    #[test]
    fn methods() {
        assert_eq!(
            parse_method("io.k8s.authorization.rbac.v1.clusterroles.create"),
            (Some("create".into()), Some("clusterroles".into()), None)
        );
        assert_eq!(
            parse_method("io.k8s.core.v1.pods.exec.create"),
            (
                Some("create".into()),
                Some("pods".into()),
                Some("exec".into())
            )
        );
        assert_eq!(
            parse_method("io.k8s.readyz"),
            (Some("readyz".into()), None, None)
        );
        assert!(
            is_version("v1beta1") && is_version("v2") && !is_version("vx") && !is_version("v1beta")
        );
    }

    #[test]
    fn bodies_lose_their_type() {
        assert_eq!(
            body(json!({"@type": "rbac.authorization.k8s.io/v1.ClusterRole", "rules": []})),
            json!({"kind": "ClusterRole", "apiVersion": "rbac.authorization.k8s.io/v1", "rules": []})
        );
        assert_eq!(
            body(json!({"@type": "core.k8s.io/v1.Pod", "kind": "Pod"})),
            json!({"kind": "Pod", "apiVersion": "v1"})
        );
        assert_eq!(body(json!([1])), json!([1]));
    }
}
