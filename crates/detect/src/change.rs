//! RBAC changes read from audit events: the part of stateful detection that runs on every
//! core. Each successful, real (not dry-run) create, update, patch, delete or
//! deletecollection of a ClusterRole, Role, ClusterRoleBinding or RoleBinding becomes an owned
//! [`Change`], with its body decoded, for the single-threaded [`crate::state`] tracker.

use crate::alert::{Alert, RulesSource};
use crate::clusterrole_pod_write::{self, RuleOptions, RBAC_GROUP};
use audit::Event;
use rbac::patch::{detect_kind, PatchKind};
use rbac::ObjKind;
use serde_json::Value;

/// The verbs that change RBAC objects.
pub const CHANGE_VERBS: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];

/// What the event tells about the object after the change.
#[derive(Debug, Clone)]
pub enum Body {
    /// The whole object: the stored one the API server returned, or the full object a create or
    /// update sent.
    Object {
        /// The object.
        value: Value,
        /// Where it was read.
        source: RulesSource,
    },
    /// A patch document (Request level, or a response that was not logged).
    Patch {
        /// The patch.
        value: Value,
        /// Its type, guessed from its shape (the log has no Content-Type).
        kind: PatchKind,
    },
    /// Nothing usable: metadata level, or a body the pipeline dropped.
    None {
        /// Why, for the alert's notes.
        reason: String,
    },
}

/// One RBAC change, owned, in input order.
#[derive(Debug, Clone)]
pub struct Change {
    /// Kind of the object.
    pub kind: ObjKind,
    /// Namespace, `""` for cluster-scoped objects.
    pub namespace: String,
    /// Name, from objectRef or the body (creates often log it only in the body).
    pub name: Option<String>,
    /// create, update, patch, delete or deletecollection.
    pub verb: String,
    /// The event's time as logged.
    pub time: Option<String>,
    /// The same, in nanoseconds since the epoch.
    pub time_ns: Option<i128>,
    /// `metadata.resourceVersion` of the returned object (or objectRef's), as a number.
    pub resource_version: Option<u64>,
    /// The body.
    pub body: Body,
    /// The event's facts as an alert without a verdict (actor, addresses, agent, ...).
    pub base: Alert,
    /// What `clusterrole-pod-write` says of the event on its own: used when the state cannot
    /// establish the outcome.
    pub stateless: Option<Box<Alert>>,
}

/// Whether an event could be an RBAC change, from the head only (verb and resource).
pub fn head_may_match(h: &audit::head::Head) -> bool {
    h.verb.as_deref().is_some_and(|v| CHANGE_VERBS.contains(&v))
        && h.resource
            .as_deref()
            .is_some_and(|r| ObjKind::from_resource(r).is_some())
}

/// The change an event makes, when it is a completed, successful, real change of an RBAC
/// object.
pub fn extract(ev: &Event, opts: &RuleOptions) -> Option<Change> {
    let verb = ev.verb();
    if !CHANGE_VERBS.contains(&verb) {
        return None;
    }
    let oref = ev.object_ref.as_ref()?;
    let kind = ObjKind::from_resource(oref.resource.as_deref()?)?;
    if oref.subresource.as_deref().is_some_and(|s| !s.is_empty()) {
        return None;
    }
    let mut notes = Vec::new();
    match oref.api_group.as_deref() {
        Some(RBAC_GROUP) => {}
        Some(g) if !g.is_empty() => return None,
        _ => match ev.request_uri.as_deref() {
            Some(uri) if uri.starts_with("/apis/rbac.authorization.k8s.io/") => {}
            Some(uri) if uri.starts_with("/apis/") => return None,
            _ => notes.push(
                "objectRef.apiGroup is missing; read as rbac.authorization.k8s.io".to_string(),
            ),
        },
    }
    let code_ok = ev.code().is_some_and(|c| (200..300).contains(&c));
    match ev.stage.as_deref() {
        Some("ResponseComplete") => {}
        None if code_ok => {
            notes.push("stage is missing; a 2xx responseStatus shows the request completed".into())
        }
        _ => return None,
    }
    if !code_ok || ev.is_dry_run() {
        return None;
    }
    let body = body_of(ev, kind, verb);
    let from_body = |key: &str| match &body {
        Body::Object { value, .. } => value
            .get("metadata")
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    };
    let name = oref
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .or_else(|| from_body("name"));
    let namespace = if kind.namespaced() {
        oref.namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .or_else(|| from_body("namespace"))
            .unwrap_or_default()
    } else {
        String::new()
    };
    let resource_version = match &body {
        Body::Object {
            value,
            source: RulesSource::ResponseObject,
        } => value
            .get("metadata")
            .and_then(|m| m.get("resourceVersion"))
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok()),
        _ => None,
    }
    .or_else(|| {
        ev.response_object
            .filter(|_| verb == "delete")
            .and_then(|r| serde_json::from_str::<Value>(r.get()).ok())
            .and_then(|v| {
                v.get("metadata")?
                    .get("resourceVersion")?
                    .as_str()?
                    .parse()
                    .ok()
            })
    });
    let stateless = if kind == ObjKind::ClusterRole {
        clusterrole_pod_write::evaluate(ev, opts).map(Box::new)
    } else {
        None
    };
    let mut base = clusterrole_pod_write::base_alert(ev, opts);
    base.notes = notes;
    let time = ev.time().map(str::to_string);
    Some(Change {
        kind,
        namespace,
        name,
        verb: verb.to_string(),
        time_ns: time.as_deref().and_then(audit::time::parse_rfc3339),
        time,
        resource_version,
        body,
        base,
        stateless,
    })
}

/// Reads what the event's bodies say about the object after the change.
fn body_of(ev: &Event, kind: ObjKind, verb: &str) -> Body {
    let parse = |raw: &serde_json::value::RawValue| serde_json::from_str::<Value>(raw.get()).ok();
    let whole = |v: &Value| v.get("kind").and_then(Value::as_str) == Some(kind.as_str());
    let mut reason = String::from("no request or response body was logged (metadata level)");
    if let Some(v) = ev.response_object.and_then(parse) {
        if whole(&v) {
            return Body::Object {
                value: v,
                source: RulesSource::ResponseObject,
            };
        }
        if let Value::String(s) = &v {
            reason = format!("responseObject was not logged ({s})");
        }
    }
    if verb == "delete" || verb == "deletecollection" {
        return Body::None { reason };
    }
    match ev.request_object.and_then(parse) {
        Some(Value::String(s)) => Body::None {
            reason: format!("requestObject was not logged ({s})"),
        },
        Some(v) if verb == "patch" => match detect_kind(&v) {
            Some(k) => Body::Patch { value: v, kind: k },
            None => Body::None {
                reason: "the patch is not a JSON object or array".into(),
            },
        },
        Some(v) if whole(&v) => Body::Object {
            value: v,
            source: RulesSource::RequestObject,
        },
        Some(_) => Body::None {
            reason: format!("the request body is not a {}", kind.as_str()),
        },
        None => Body::None { reason },
    }
}
