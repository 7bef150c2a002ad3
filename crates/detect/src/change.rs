//! RBAC changes read from audit events: the part of stateful detection that runs on every
//! core. Each successful, real (not dry-run) create, update, patch, delete or
//! deletecollection of a ClusterRole, Role, ClusterRoleBinding or RoleBinding becomes an owned
//! [`Change`], with its body decoded, for the single-threaded [`crate::state`] tracker.

use crate::alert::{Alert, RulesSource};
use crate::clusterrole_pod_write::{self, RuleOptions};
use audit::Event;
use rbac::patch::{detect_kind, PatchKind};
use rbac::podwrite::{role_pod_write, PodWriteGrant, PodWriteOptions};
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
        /// The object, decoded (or why it could not be).
        object: Result<Box<ParsedObject>, String>,
        /// `metadata.resourceVersion`, as a number.
        resource_version: Option<u64>,
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
    /// The same, normalised (UTC, microseconds) as the state file keeps it; empty when the
    /// event has no readable time.
    pub time_text: String,
    /// The same, in nanoseconds since the epoch.
    pub time_ns: Option<i128>,
    /// `metadata.resourceVersion` of the returned object (or objectRef's), as a number.
    pub resource_version: Option<u64>,
    /// The body.
    pub body: Body,
    /// The event's facts as an alert without a verdict (actor, addresses, agent, ...). Boxed:
    /// changes are moved through channels and batches, and an inline alert made each move
    /// copy a kilobyte.
    pub base: Box<Alert>,
    /// What `clusterrole-pod-write` says of the event on its own: used when the state cannot
    /// establish the outcome, so only computed when the body is not a whole object.
    pub stateless: Option<Box<Alert>>,
}

/// A whole object from an event, decoded here, on every core, to keep the single-threaded
/// tracker short.
#[derive(Debug, Clone)]
pub struct ParsedObject {
    /// The role, for ClusterRoles and Roles.
    pub role: Option<rbac::Role>,
    /// The binding, for ClusterRoleBindings and RoleBindings.
    pub binding: Option<rbac::Binding>,
    /// Compact JSON text (for the state file).
    pub text: String,
    /// For a ClusterRole: the pod write its own rules grant, when the workers computed it.
    pub grants: Option<Vec<PodWriteGrant>>,
    /// Hash of `text`, to recognise an object stored again unchanged.
    pub text_hash: u64,
}

impl ParsedObject {
    /// For a role read from this object (`role`, which the tracker may have moved out of it):
    /// each rule's JSON text as logged, in the order of `role.rules` (empty when the two
    /// cannot be matched up; then the text is re-made from the parsed rule). Read from `text`
    /// when asked: only alerts show them, and most changes do not alert.
    pub fn rule_texts(&self, role: &rbac::Role) -> Vec<String> {
        rule_texts(&self.text, role.rules.len())
    }

    /// The kind of object it is.
    pub fn kind(&self) -> Option<ObjKind> {
        match (&self.role, &self.binding) {
            (Some(r), _) => Some(r.kind.into()),
            (None, Some(b)) => Some(b.kind.into()),
            (None, None) => None,
        }
    }

    /// Its metadata, as a body's head would give it.
    fn meta(&self) -> BodyMeta<'static> {
        let owned = |s: &str| audit::Text(std::borrow::Cow::Owned(s.to_string()));
        let (name, namespace, rv) = match (&self.role, &self.binding) {
            (Some(r), _) => (&r.name, &r.namespace, &r.resource_version),
            (None, Some(b)) => (&b.name, &b.namespace, &b.resource_version),
            (None, None) => return BodyMeta::default(),
        };
        BodyMeta {
            name: Some(owned(name)),
            namespace: namespace.as_deref().map(owned),
            resource_version: rv.as_deref().map(owned),
        }
    }

    /// Computes the pod write the role's own rules grant. Done on the workers so that the
    /// single tracker thread only compares.
    pub fn with_grants(mut self, opts: PodWriteOptions) -> ParsedObject {
        if let Some(r) = &self.role {
            self.grants = Some(role_pod_write(&r.rules, opts));
        }
        self
    }
}

/// A hash of an object's text, compared only within one process (never stored).
pub(crate) fn text_hash(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// Each rule's JSON text as logged, when the rules list lines up with the parsed one.
fn rule_texts(text: &str, n: usize) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct RulesOnly<'a> {
        #[serde(borrow, default)]
        rules: Option<Vec<&'a serde_json::value::RawValue>>,
    }
    serde_json::from_str::<RulesOnly>(text)
        .ok()
        .and_then(|r| r.rules)
        .filter(|r| r.len() == n)
        .map(|r| r.iter().map(|x| x.get().to_string()).collect())
        .unwrap_or_default()
}

/// Reads one object (JSON text) with the snapshot loader, so state, snapshots and live reads
/// agree.
pub fn parse_object(text: &str) -> Result<ParsedObject, String> {
    let mut s = rbac::Snapshot::default();
    s.load_text("", text, &Default::default());
    if let Some(e) = s.errors.first() {
        // The loader names the document; here there is only one.
        let msg = e.to_string();
        return Err(msg
            .strip_prefix(" document 1: ")
            .map(str::to_string)
            .unwrap_or(msg));
    }
    if s.roles.len() + s.bindings.len() != 1 {
        return Err("not one RBAC object".into());
    }
    Ok(ParsedObject {
        role: s.roles.pop(),
        binding: s.bindings.pop(),
        text: text.to_string(),
        grants: None,
        text_hash: text_hash(text),
    })
}

/// The few fields read from a body before deciding what it is.
#[derive(serde::Deserialize)]
struct BodyHead<'a> {
    #[serde(borrow, default)]
    kind: Option<audit::Text<'a>>,
    #[serde(borrow, default)]
    metadata: Option<BodyMeta<'a>>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct BodyMeta<'a> {
    #[serde(borrow, default)]
    name: Option<audit::Text<'a>>,
    #[serde(borrow, default)]
    namespace: Option<audit::Text<'a>>,
    #[serde(borrow, default)]
    resource_version: Option<audit::Text<'a>>,
}

impl BodyMeta<'_> {
    /// `resourceVersion` as a number (the API server writes decimal strings).
    fn resource_version_number(&self) -> Option<u64> {
        self.resource_version.as_deref()?.parse().ok()
    }
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
    let group_note = clusterrole_pod_write::rbac_group(ev)?;
    let mut notes = Vec::new();
    if !clusterrole_pod_write::completed_for_real(ev, &mut notes) {
        return None;
    }
    notes.extend(group_note);
    let (body, head) = body_of(ev, kind, verb, opts.pod_write);
    let meta = head.as_ref().and_then(|(_, m)| m.as_ref());
    let body_name = meta
        .and_then(|m| m.name.as_deref())
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let body_namespace = meta
        .and_then(|m| m.namespace.as_deref())
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let name = oref
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .or(body_name);
    let namespace = if kind.namespaced() {
        oref.namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .or(body_namespace)
            .unwrap_or_default()
    } else {
        String::new()
    };
    let resource_version = match &body {
        Body::Object {
            resource_version,
            source: RulesSource::ResponseObject,
            ..
        } => *resource_version,
        // A delete may return the deleted object (or a Status without one).
        _ if verb == "delete" => head
            .as_ref()
            .filter(|(src, _)| *src == RulesSource::ResponseObject)
            .and_then(|(_, m)| m.as_ref()?.resource_version_number()),
        _ => None,
    };
    let stateless =
        if kind == ObjKind::ClusterRole && !matches!(body, Body::Object { object: Ok(_), .. }) {
            clusterrole_pod_write::evaluate(ev, opts).map(Box::new)
        } else {
            None
        };
    let mut base = clusterrole_pod_write::base_alert(ev, opts);
    base.notes = notes;
    let time = ev.time().map(str::to_string);
    let time_ns = time.as_deref().and_then(audit::time::parse_rfc3339);
    Some(Change {
        kind,
        namespace,
        name,
        verb: verb.to_string(),
        time_ns,
        time_text: time_ns
            .map(audit::time::format_utc_micros)
            .unwrap_or_default(),
        time,
        resource_version,
        body,
        base: Box::new(base),
        stateless,
    })
}

/// The metadata of the body a [`Body`] was read from, with where it was.
type Head<'a> = Option<(RulesSource, Option<BodyMeta<'a>>)>;

/// Reads what the event's bodies say about the object after the change. Whole objects are
/// decoded into RBAC types straight from the text; only patches become generic JSON values.
fn body_of<'a>(
    ev: &Event<'a>,
    kind: ObjKind,
    verb: &str,
    pod_write: PodWriteOptions,
) -> (Body, Head<'a>) {
    let mut reason = String::from("no request or response body was logged (metadata level)");
    let whole = |raw: &'a serde_json::value::RawValue, source: RulesSource| {
        let text = raw.get();
        if text.starts_with('"') {
            return Err(format!("was not logged ({text})"));
        }
        // Only ClusterRole verdicts compare grants (namespaced Roles have no pod-write rule of
        // their own to judge).
        let finish = |p: ParsedObject| {
            Box::new(if kind == ObjKind::ClusterRole {
                p.with_grants(pod_write)
            } else {
                p
            })
        };
        // Nearly always the body is the object: one parse gives it and its metadata. Anything
        // else (another kind, a Status, an object the loader refuses) is told apart by its
        // head, as before.
        let parsed = match parse_object(text) {
            Ok(p) if p.kind() == Some(kind) => {
                let meta = p.meta();
                let rv = meta.resource_version_number();
                return Ok(Some((
                    Body::Object {
                        object: Ok(finish(p)),
                        resource_version: rv,
                        source,
                    },
                    Some((source, Some(meta))),
                )));
            }
            other => other,
        };
        match serde_json::from_str::<BodyHead<'a>>(text) {
            Ok(h) if h.kind.as_deref() == Some(kind.as_str()) => {
                let rv = h
                    .metadata
                    .as_ref()
                    .and_then(BodyMeta::resource_version_number);
                Ok(Some((
                    Body::Object {
                        object: parsed.map(finish),
                        resource_version: rv,
                        source,
                    },
                    Some((source, h.metadata)),
                )))
            }
            Ok(h) => Ok(Some((
                Body::None {
                    reason: String::new(),
                },
                Some((source, h.metadata)),
            ))),
            Err(_) => Ok(None),
        }
    };
    let mut head: Head<'a> = None;
    if let Some(raw) = ev.response_object {
        match whole(raw, RulesSource::ResponseObject) {
            Ok(Some((b @ Body::Object { .. }, h))) => return (b, h),
            Ok(Some((_, h))) => head = h,
            Ok(None) => {}
            Err(e) => reason = format!("responseObject {e}"),
        }
    }
    if verb == "delete" || verb == "deletecollection" {
        return (Body::None { reason }, head);
    }
    let Some(raw) = ev.request_object else {
        return (Body::None { reason }, head);
    };
    if raw.get().starts_with('"') {
        return (
            Body::None {
                reason: format!("requestObject was not logged ({})", raw.get()),
            },
            head,
        );
    }
    if verb == "patch" {
        return match serde_json::from_str::<Value>(raw.get()) {
            Ok(v) => match detect_kind(&v) {
                Some(k) => (Body::Patch { value: v, kind: k }, head),
                None => (
                    Body::None {
                        reason: "the patch is not a JSON object or array".into(),
                    },
                    head,
                ),
            },
            Err(_) => (
                Body::None {
                    reason: "the patch is not JSON".into(),
                },
                head,
            ),
        };
    }
    match whole(raw, RulesSource::RequestObject) {
        Ok(Some((b @ Body::Object { .. }, h))) => (b, h),
        _ => (
            Body::None {
                reason: format!("the request body is not a {}", kind.as_str()),
            },
            head,
        ),
    }
}
