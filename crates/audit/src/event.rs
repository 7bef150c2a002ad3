//! The `audit.k8s.io` Event, borrowed from the input line.
//!
//! Strings are `Cow<str>`: they borrow from the line unless JSON escapes force a copy. The
//! request and response bodies stay raw (`&RawValue`) until a detection asks for them, since
//! most events never need them.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use thiserror::Error;

/// A string borrowed from the input when it has no escapes, owned otherwise.
///
/// serde's own `Cow<str>` never borrows inside `Option` or `Vec`; this one does, which keeps
/// parsing free of allocations on the common path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Text<'a>(pub Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A struct field that must be a JSON object (or null). serde's derived structs also take
/// arrays, field by field in order; no API server writes `objectRef` that way, and accepting it
/// would let `["clusterroles"]` pass for a resource.
fn object_only<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object or null")
        }
        fn visit_unit<E>(self) -> Result<Option<T>, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Option<T>, E> {
            Ok(None)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Option<T>, A::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Some)
        }
    }
    d.deserialize_any(V(std::marker::PhantomData))
}

/// Why a record is not an audit Event.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// Not valid JSON, or a field of the wrong type.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// Valid JSON, but not an audit Event or EventList.
    #[error("not an audit Event: {0}")]
    NotAnEvent(String),
    /// An item of an EventList is not an Event.
    #[error("EventList item {index}: {reason}")]
    Item {
        /// Zero-based position in `items`.
        index: usize,
        /// What is wrong with it.
        reason: Box<RecordError>,
    },
}

/// authentication/v1 `UserInfo`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct UserInfo<'a> {
    /// The user name (`system:serviceaccount:ns:name` for service accounts).
    #[serde(borrow, default)]
    pub username: Option<Text<'a>>,
    /// The user's UID, when the authenticator gives one.
    #[serde(borrow, default)]
    pub uid: Option<Text<'a>>,
    /// The groups the user belongs to, as authenticated.
    #[serde(borrow, default)]
    pub groups: Option<Vec<Text<'a>>>,
}

/// The object a request is about.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef<'a> {
    /// Plural resource name, e.g. `clusterroles`.
    #[serde(borrow, default)]
    pub resource: Option<Text<'a>>,
    /// Namespace; absent for cluster-scoped objects.
    #[serde(borrow, default)]
    pub namespace: Option<Text<'a>>,
    /// Object name (filled from the body on create).
    #[serde(borrow, default)]
    pub name: Option<Text<'a>>,
    /// Object UID.
    #[serde(borrow, default)]
    pub uid: Option<Text<'a>>,
    /// API group; absent or `""` for core.
    #[serde(borrow, default)]
    pub api_group: Option<Text<'a>>,
    /// API version.
    #[serde(borrow, default)]
    pub api_version: Option<Text<'a>>,
    /// Resource version.
    #[serde(borrow, default)]
    pub resource_version: Option<Text<'a>>,
    /// Subresource, e.g. `exec`.
    #[serde(borrow, default)]
    pub subresource: Option<Text<'a>>,
}

/// The part of `metav1.Status` that audit events carry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct ResponseStatus<'a> {
    /// HTTP status code.
    #[serde(default)]
    pub code: Option<i64>,
    /// `Success` or `Failure`.
    #[serde(borrow, default)]
    pub status: Option<Text<'a>>,
    /// Machine-readable reason (`Forbidden`, `AlreadyExists`, ...).
    #[serde(borrow, default)]
    pub reason: Option<Text<'a>>,
    /// Human-readable message.
    #[serde(borrow, default)]
    pub message: Option<Text<'a>>,
}

/// One `audit.k8s.io/v1` (or `v1beta1`) Event. Unknown fields are ignored; every field may be
/// missing, since real pipelines and hand-written test events drop some.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event<'a> {
    /// `Event` (or absent in some old logs).
    #[serde(borrow, default)]
    pub kind: Option<Text<'a>>,
    /// `audit.k8s.io/v1` or `audit.k8s.io/v1beta1`.
    #[serde(borrow, default)]
    pub api_version: Option<Text<'a>>,
    /// `Metadata`, `Request`, `RequestResponse`.
    #[serde(borrow, default)]
    pub level: Option<Text<'a>>,
    /// Unique per request; the same for all stages of it.
    #[serde(rename = "auditID", borrow, default)]
    pub audit_id: Option<Text<'a>>,
    /// `RequestReceived`, `ResponseStarted`, `ResponseComplete`, `Panic`.
    #[serde(borrow, default)]
    pub stage: Option<Text<'a>>,
    /// Path and query string as the client sent them.
    #[serde(rename = "requestURI", borrow, default)]
    pub request_uri: Option<Text<'a>>,
    /// Kubernetes verb.
    #[serde(borrow, default)]
    pub verb: Option<Text<'a>>,
    /// The authenticated user: the real actor, also when impersonating.
    #[serde(borrow, default)]
    pub user: Option<UserInfo<'a>>,
    /// Set when the request impersonated another identity.
    #[serde(borrow, default)]
    pub impersonated_user: Option<UserInfo<'a>>,
    /// Client addresses (X-Forwarded-For first; the last is the direct peer).
    #[serde(rename = "sourceIPs", borrow, default)]
    pub source_ips: Option<Vec<Text<'a>>>,
    /// Client-supplied user agent.
    #[serde(borrow, default)]
    pub user_agent: Option<Text<'a>>,
    /// The object of the request.
    #[serde(borrow, default, deserialize_with = "object_only")]
    pub object_ref: Option<ObjectRef<'a>>,
    /// Outcome.
    #[serde(borrow, default)]
    pub response_status: Option<ResponseStatus<'a>>,
    /// Request body as sent (level Request and up); for patches, the patch document.
    #[serde(borrow, default)]
    pub request_object: Option<&'a RawValue>,
    /// Response body (level RequestResponse); for writes, the stored object.
    #[serde(borrow, default)]
    pub response_object: Option<&'a RawValue>,
    /// When the request arrived.
    #[serde(borrow, default)]
    pub request_received_timestamp: Option<Text<'a>>,
    /// When this stage was reached.
    #[serde(borrow, default)]
    pub stage_timestamp: Option<Text<'a>>,
    /// v1beta1 only: event time.
    #[serde(borrow, default)]
    pub timestamp: Option<Text<'a>>,
    /// Annotations, kept raw.
    #[serde(borrow, default)]
    pub annotations: Option<&'a RawValue>,
    /// Present when the record is an EventList.
    #[serde(borrow, default)]
    items: Option<Vec<&'a RawValue>>,
}

impl<'a> Event<'a> {
    /// The verb, or `""`.
    pub fn verb(&self) -> &str {
        self.verb.as_deref().unwrap_or("")
    }

    /// The stage, or `""`.
    pub fn stage(&self) -> &str {
        self.stage.as_deref().unwrap_or("")
    }

    /// The resource of the object, or `""`.
    pub fn resource(&self) -> &str {
        self.object_ref
            .as_ref()
            .and_then(|o| o.resource.as_deref())
            .unwrap_or("")
    }

    /// The response code, when known.
    pub fn code(&self) -> Option<i64> {
        self.response_status.as_ref().and_then(|s| s.code)
    }

    /// `stageTimestamp`, falling back to v1beta1's `timestamp` and then the receive time.
    pub fn time(&self) -> Option<&str> {
        self.stage_timestamp
            .as_deref()
            .or(self.timestamp.as_deref())
            .or(self.request_received_timestamp.as_deref())
    }

    /// Whether the request was a dry run: `dryRun=All` in the query string of `requestURI`
    /// (the only value the API server accepts; the parameter may repeat).
    ///
    /// GKE's Cloud Audit Logs have no request URI; they label dry runs
    /// `command.gke.io/dryRun` (an annotation once unwrapped), which counts too.
    pub fn is_dry_run(&self) -> bool {
        self.request_uri.as_deref().is_some_and(uri_is_dry_run)
            || self.annotations.is_some_and(|a| {
                // The substring test spares decoding the map of almost every event.
                a.get().contains(GKE_DRY_RUN)
                    && self
                        .annotation(GKE_DRY_RUN)
                        .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "All")
            })
    }

    /// A named annotation's value.
    pub fn annotation(&self, key: &str) -> Option<String> {
        let raw = self.annotations?;
        let map: std::collections::HashMap<Cow<str>, Cow<str>> =
            serde_json::from_str(raw.get()).ok()?;
        map.get(key).map(|v| v.to_string())
    }
}

/// The label (annotation, once unwrapped) GKE puts on dry-run requests.
pub const GKE_DRY_RUN: &str = "command.gke.io/dryRun";

/// Whether a request URI's query string holds `dryRun=All`.
pub fn uri_is_dry_run(uri: &str) -> bool {
    let Some((_, query)) = uri.split_once('?') else {
        return false;
    };
    let query = query.split('#').next().unwrap_or("");
    query.split('&').any(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        percent_decode(k) == "dryRun" && percent_decode(v) == "All"
    })
}

fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// A parsed input record: one Event, or the Events of an EventList.
#[derive(Debug)]
pub enum Record<'a> {
    /// A single Event.
    Event(Box<Event<'a>>),
    /// An EventList's items; each item parsed on its own, so one bad item spoils only itself.
    List(Vec<Result<Event<'a>, RecordError>>),
}

/// The few fields that decide whether an event needs a closer look. Everything else is
/// skipped (still checked to be well-formed JSON) instead of being decoded.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventHead<'a> {
    /// `Event`, `EventList`, or absent.
    #[serde(borrow, default)]
    pub kind: Option<Text<'a>>,
    /// Should start with `audit.k8s.io/`.
    #[serde(borrow, default)]
    pub api_version: Option<Text<'a>>,
    /// The verb.
    #[serde(borrow, default)]
    pub verb: Option<Text<'a>>,
    /// The auditID.
    #[serde(rename = "auditID", borrow, default)]
    pub audit_id: Option<Text<'a>>,
    /// The object reference (only the resource is decoded).
    #[serde(borrow, default, deserialize_with = "object_only")]
    pub object_ref: Option<HeadRef<'a>>,
    /// Whether the record has `items` (an EventList).
    #[serde(default)]
    items: Option<serde::de::IgnoredAny>,
}

/// The part of `objectRef` that [`EventHead`] decodes.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeadRef<'a> {
    /// Resource.
    #[serde(borrow, default)]
    pub resource: Option<Text<'a>>,
}

impl EventHead<'_> {
    /// Whether the record is an EventList.
    pub fn is_list(&self) -> bool {
        self.items.is_some()
    }

    /// The resource, or `""`.
    pub fn resource(&self) -> &str {
        self.object_ref
            .as_ref()
            .and_then(|o| o.resource.as_deref())
            .unwrap_or("")
    }
}

/// Decodes only an [`EventHead`] with serde, checking that the record is an audit Event (or
/// EventList). The scan uses [`crate::head::scan_head`]; this is the serde-derived
/// reference it is property-tested against.
pub fn parse_head(bytes: &[u8]) -> Result<EventHead<'_>, RecordError> {
    require_object(bytes)?;
    // from_slice checks UTF-8 only in the few strings it decodes: skipped values are scanned,
    // not validated as text, which is most of the saving on lines that are never looked at again.
    let h: EventHead = serde_json::from_slice(bytes).map_err(json_err)?;
    if !h.is_list() {
        check_fields(
            h.kind.as_deref(),
            h.api_version.as_deref(),
            h.verb.is_some() || h.audit_id.is_some(),
        )?;
    }
    Ok(h)
}

/// Parses one record (a line, or one JSON value of a whole-file document).
pub fn parse_record(bytes: &[u8]) -> Result<Record<'_>, RecordError> {
    require_object(bytes)?;
    // One UTF-8 check for the whole line is cheaper than serde_json checking every string.
    let text =
        std::str::from_utf8(bytes).map_err(|e| RecordError::Json(format!("invalid UTF-8: {e}")))?;
    let mut ev: Event = serde_json::from_str(text).map_err(json_err)?;
    if let Some(items) = ev.items.take() {
        if let Some(k) = ev.kind.as_deref() {
            if k != "EventList" {
                return Err(RecordError::NotAnEvent(format!("kind {k:?} has items")));
            }
        }
        let evs = items
            .into_iter()
            .enumerate()
            .map(|(index, raw)| {
                parse_item(raw).map_err(|e| RecordError::Item {
                    index,
                    reason: Box::new(e),
                })
            })
            .collect();
        return Ok(Record::List(evs));
    }
    check_event(&ev)?;
    Ok(Record::Event(Box::new(ev)))
}

/// serde's derived structs also read JSON arrays, field by field in order; an audit record is
/// always an object.
fn require_object(bytes: &[u8]) -> Result<(), RecordError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(()),
        Some(_) => Err(RecordError::NotAnEvent("not a JSON object".into())),
        None => Err(RecordError::Json("empty record".into())),
    }
}

fn parse_item(raw: &RawValue) -> Result<Event<'_>, RecordError> {
    require_object(raw.get().as_bytes())?;
    let ev: Event = serde_json::from_str(raw.get()).map_err(json_err)?;
    if ev.items.is_some() {
        return Err(RecordError::NotAnEvent("nested EventList".into()));
    }
    check_event(&ev)?;
    Ok(ev)
}

fn json_err(e: serde_json::Error) -> RecordError {
    RecordError::Json(e.to_string())
}

/// An Event says it is one (`kind: Event` with an audit apiVersion), or, where old logs and
/// hand-written events leave `kind` out, at least carries a verb or an auditID.
fn check_event(ev: &Event) -> Result<(), RecordError> {
    check_fields(
        ev.kind.as_deref(),
        ev.api_version.as_deref(),
        ev.verb.is_some() || ev.audit_id.is_some(),
    )
}

pub(crate) fn check_fields(
    kind: Option<&str>,
    api_version: Option<&str>,
    has_verb_or_id: bool,
) -> Result<(), RecordError> {
    if let Some(v) = api_version {
        if !v.starts_with("audit.k8s.io/") {
            return Err(RecordError::NotAnEvent(format!(
                "apiVersion {v:?} is not audit.k8s.io (a core Event object?)"
            )));
        }
    }
    match kind {
        Some("Event") => Ok(()),
        Some(k) => Err(RecordError::NotAnEvent(format!("kind {k:?}"))),
        None if has_verb_or_id => Ok(()),
        None => Err(RecordError::NotAnEvent("no kind, verb or auditID".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> Event<'_> {
        match parse_record(s.as_bytes()).unwrap() {
            Record::Event(e) => *e,
            Record::List(_) => panic!("list"),
        }
    }

    #[test]
    fn parses_borrowed_fields() {
        let e = one(
            r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a","stage":"ResponseComplete","verb":"create","user":{"username":"al\u0069ce","groups":["g"]},"objectRef":{"resource":"clusterroles","apiGroup":"rbac.authorization.k8s.io"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"rules":[]},"unknown":[1,2,{"x":null}]}"#,
        );
        assert_eq!(e.verb(), "create");
        assert_eq!(e.user.as_ref().unwrap().username.as_deref(), Some("alice"));
        assert!(matches!(e.verb, Some(Text(Cow::Borrowed(_)))));
        assert!(matches!(
            e.user.as_ref().unwrap().username,
            Some(Text(Cow::Owned(_)))
        ));
        assert_eq!(e.code(), Some(201));
        assert_eq!(e.request_object.unwrap().get(), r#"{"rules":[]}"#);
        assert_eq!(e.resource(), "clusterroles");
    }

    #[test]
    fn event_list_items_parse_independently() {
        let r = parse_record(br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"kind":"Event","verb":"get"},{"kind":"Pod"},{"verb":7}]}"#).unwrap();
        let Record::List(items) = r else { panic!() };
        assert_eq!(items.len(), 3);
        assert!(items[0].is_ok());
        assert!(matches!(&items[1], Err(RecordError::Item { index: 1, .. })));
        assert!(matches!(&items[2], Err(RecordError::Item { index: 2, .. })));
    }

    #[test]
    fn rejects_non_events() {
        for s in [
            r#"{"kind": 0}"#,
            r#"{}"#,
            r#"{"kind":"Event","apiVersion":"v1","reason":"Pulled"}"#,
            r#"[1,2]"#,
            r#"{"kind":"Event","verb":"get""#,
            "",
            r#"{"kind":"Pod","items":[]}"#,
        ] {
            assert!(parse_record(s.as_bytes()).is_err(), "{s}");
        }
    }

    #[test]
    fn dry_run() {
        assert!(uri_is_dry_run("/apis/x?dryRun=All"));
        assert!(uri_is_dry_run("/apis/x?fieldManager=k&dryRun=All"));
        assert!(uri_is_dry_run("/apis/x?dryRun=&dryRun=All"));
        assert!(uri_is_dry_run("/apis/x?dry%52un=%41ll"));
        assert!(!uri_is_dry_run("/apis/x?dryRun=None"));
        assert!(!uri_is_dry_run("/apis/x/dryRun=All"));
        assert!(!uri_is_dry_run("/apis/x?notdryRun=All"));
        assert!(!uri_is_dry_run("/apis/x?dryRun=all"));
        assert!(!uri_is_dry_run("/apis/x?q=1#dryRun=All"));
        assert!(!uri_is_dry_run("/apis/x?dryRun=%4"));
    }

    #[test]
    fn time_falls_back() {
        let e = one(r#"{"verb":"get","timestamp":"t1","requestReceivedTimestamp":"t0"}"#);
        assert_eq!(e.time(), Some("t1"));
    }
}
