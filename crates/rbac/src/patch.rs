//! Applying the patches recorded in API-server audit logs to stored RBAC objects.
//!
//! At the `Request` audit level only the request body is logged, so a stateful detector
//! that keeps RBAC objects in a model has to replay each `patch` itself. The audit event
//! does not record the `Content-Type`, so [`detect_kind`] guesses the patch type from the
//! body's shape, and [`apply`] applies it to the object as the API server stores it (a
//! `serde_json::Value` with `metadata`, `rules`, `aggregationRule`, `roleRef`, `subjects`).
//!
//! Semantics by kind:
//!
//! - [`PatchKind::Json`]: RFC 6902 (add, remove, replace, move, copy, test) with RFC 6901
//!   pointers. The patch is atomic: it is applied to a copy, and any failure returns an error.
//! - [`PatchKind::Merge`]: RFC 7386 JSON merge patch.
//! - [`PatchKind::StrategicMerge`]: Kubernetes strategic merge patch, restricted to what the
//!   RBAC types need. See [`apply`] for the exact rules.
//! - [`PatchKind::Apply`]: an approximation of server-side apply. See [`apply`].

use serde_json::{Map, Value};
use thiserror::Error;

/// The kind of a patch body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatchKind {
    /// RFC 6902 JSON patch (`application/json-patch+json`).
    Json,
    /// RFC 7386 JSON merge patch (`application/merge-patch+json`).
    Merge,
    /// Kubernetes strategic merge patch (`application/strategic-merge-patch+json`).
    StrategicMerge,
    /// Server-side apply (`application/apply-patch+yaml`): the full intended object.
    Apply,
}

/// Why a patch could not be applied.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PatchError {
    /// The patch document is malformed (wrong shape, missing member, bad pointer syntax).
    #[error("invalid patch document: {0}")]
    InvalidPatch(String),
    /// A JSON patch operation could not be applied to the target.
    #[error("patch operation {index} ({op} {path}) failed: {reason}")]
    OpFailed {
        /// Zero-based index of the operation in the patch.
        index: usize,
        /// The operation name.
        op: String,
        /// The JSON pointer the operation targets.
        path: String,
        /// Why it failed.
        reason: String,
    },
    /// A JSON patch `test` operation did not match.
    #[error("patch operation {index} (test {path}) failed: value differs")]
    TestFailed {
        /// Zero-based index of the operation in the patch.
        index: usize,
        /// The JSON pointer tested.
        path: String,
    },
    /// A strategic-merge directive that is unknown or not supported where it appears.
    #[error("unsupported strategic merge directive {directive} at {path}")]
    UnsupportedDirective {
        /// Where the directive appears (a JSON pointer into the patch).
        path: String,
        /// The directive, e.g. `$patch: merge`.
        directive: String,
    },
}

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Guess the patch type from the body's shape (the audit log does not record the
/// `Content-Type`).
///
/// - a JSON array: [`PatchKind::Json`];
/// - an object with both `apiVersion` and `kind`: [`PatchKind::Apply`] (a server-side apply
///   body is the full intended object);
/// - an object holding, at any depth, a `$patch`, `$retainKeys`, `$setElementOrder/...` or
///   `$deleteFromPrimitiveList/...` key: [`PatchKind::StrategicMerge`];
/// - any other object: [`PatchKind::Merge`] (a strategic merge patch without directives
///   gives the same result as a merge patch on RBAC objects, except for
///   `metadata.ownerReferences` and `metadata.finalizers`);
/// - anything else (scalar, `null`): `None`.
pub fn detect_kind(patch: &Value) -> Option<PatchKind> {
    match patch {
        Value::Array(_) => Some(PatchKind::Json),
        Value::Object(m) => {
            if m.contains_key("apiVersion") && m.contains_key("kind") {
                Some(PatchKind::Apply)
            } else if has_directive(patch) {
                Some(PatchKind::StrategicMerge)
            } else {
                Some(PatchKind::Merge)
            }
        }
        _ => None,
    }
}

fn has_directive(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.iter().any(|(k, v)| {
            k == DIRECTIVE
                || k == RETAIN_KEYS
                || k.starts_with(SET_ELEMENT_ORDER)
                || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
                || has_directive(v)
        }),
        Value::Array(a) => a.iter().any(has_directive),
        _ => false,
    }
}

/// Apply `patch` to `target` and return the result; `target` is never modified.
///
/// **Json** (RFC 6902): operations run in order on a copy; the first failure returns an
/// error, so the patch is all-or-nothing. Pointers follow RFC 6901 (`~1` is `/`, `~0` is `~`,
/// `""` is the whole document); in arrays `-` appends (`add` only), `add` accepts an index
/// equal to the length, other indices must exist, and leading zeros are rejected. `move`
/// into a descendant of `from` is an error. `test` compares numbers by value (`1` equals
/// `1.0`). Removing the whole document (`remove` with path `""`) is an error.
///
/// **Merge** (RFC 7386): objects merge recursively, `null` deletes a key, everything else
/// (arrays, scalars, an object patch over a non-object) replaces. Never fails.
///
/// **StrategicMerge**: the patch must be an object. Maps merge as in Merge (so
/// `metadata.labels` / `annotations` merge and `null` deletes), plus these directives:
/// - `"$patch": "replace"` in an object: the object becomes the patch object (its own
///   directives resolved against nothing), discarding the target's contents;
/// - `"$patch": "delete"` in an object: the field holding it is removed (upstream leaves an
///   empty map, which the API server stores as absent for the RBAC types' optional fields);
///   at the top level this is an [`PatchError::UnsupportedDirective`];
/// - `$retainKeys: [..]`: after merging, only the listed keys of that object are kept (every
///   non-directive key of the patch object must be listed, as upstream requires);
/// - `$setElementOrder/<field>`: ignored (it only reorders);
/// - `$deleteFromPrimitiveList/<field>: [..]`: the listed values are removed from the list
///   `<field>`;
/// - any other `$patch` value or `$`-key: [`PatchError::UnsupportedDirective`].
///
/// Lists: in the RBAC schema no list has a merge key, so lists (`rules`, `verbs`,
/// `subjects`, `clusterRoleSelectors`, ...) are replaced wholesale. In such a replaced list,
/// elements that are objects carrying `$patch` (`delete`, `replace`, or anything else) are
/// dropped, since there is nothing to match them against and `{"$patch": "replace"}` only
/// restates "replace the list"; the other elements have their nested directives resolved and
/// `null` members removed. Two lists merge, as in the `ObjectMeta` schema:
/// - `metadata.ownerReferences`, merge key `uid`: patch elements merge into the target
///   element with the same `uid` (in place) or are appended; `{"uid": .., "$patch":
///   "delete"}` removes that element; a `{"$patch": "replace"}` element makes the list the
///   other patch elements. An element without `uid` is an invalid patch.
/// - `metadata.finalizers`, a set: the union, the target's order first, new values appended
///   (a `{"$patch": "replace"}` element makes the list the patch's strings).
///
/// As upstream, an empty patch list for these two leaves the target list unchanged; use
/// `null` to remove it. Element order after merging is target order plus appended new
/// elements (upstream may interleave differently; order does not matter for either field).
///
/// **Apply**: an approximation of server-side apply for a single field manager. The result
/// is the apply body (with `null` members removed), plus, from the target's `metadata`, the
/// server-managed fields the body omits: `name`, `namespace`, `uid`, `resourceVersion`,
/// `generation`, `creationTimestamp`, `deletionTimestamp`, `deletionGracePeriodSeconds`.
/// Field ownership is not tracked: fields the body omits are dropped even if another
/// manager owns them (the real API server would keep them), and fields the body sets
/// replace the target's even where a conflict would be reported.
pub fn apply(target: &Value, patch: &Value, kind: PatchKind) -> Result<Value, PatchError> {
    match kind {
        PatchKind::Json => json_patch(target, patch),
        PatchKind::Merge => Ok(merge_patch(target, patch)),
        PatchKind::StrategicMerge => {
            if !patch.is_object() {
                return Err(PatchError::InvalidPatch(
                    "a strategic merge patch must be a JSON object".into(),
                ));
            }
            match smp(Some(target), patch, &mut Vec::new())? {
                Some(v) => Ok(v),
                None => Err(PatchError::UnsupportedDirective {
                    path: String::new(),
                    directive: "$patch: delete".into(),
                }),
            }
        }
        PatchKind::Apply => server_side_apply(target, patch),
    }
}

// ---------------------------------------------------------------------------------------
// RFC 6902

fn json_patch(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| PatchError::InvalidPatch("a JSON patch must be an array".into()))?;
    let mut doc = target.clone();
    for (index, op) in ops.iter().enumerate() {
        apply_op(&mut doc, index, op)?;
    }
    Ok(doc)
}

fn member<'a>(
    op: &'a Map<String, Value>,
    index: usize,
    name: &str,
) -> Result<&'a Value, PatchError> {
    op.get(name).ok_or_else(|| {
        PatchError::InvalidPatch(format!("operation {index} has no \"{name}\" member"))
    })
}

fn pointer_member(
    op: &Map<String, Value>,
    index: usize,
    name: &str,
) -> Result<(String, Vec<String>), PatchError> {
    let s = member(op, index, name)?.as_str().ok_or_else(|| {
        PatchError::InvalidPatch(format!("operation {index}: \"{name}\" is not a string"))
    })?;
    let tokens = parse_pointer(s)
        .map_err(|e| PatchError::InvalidPatch(format!("operation {index}: \"{name}\": {e}")))?;
    Ok((s.to_string(), tokens))
}

/// Parse an RFC 6901 JSON pointer into unescaped reference tokens.
fn parse_pointer(s: &str) -> Result<Vec<String>, String> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let rest = s
        .strip_prefix('/')
        .ok_or_else(|| format!("pointer {s:?} does not start with '/'"))?;
    rest.split('/')
        .map(|tok| {
            let mut out = String::with_capacity(tok.len());
            let mut chars = tok.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => return Err(format!("pointer {s:?} has an invalid '~' escape")),
                    }
                } else {
                    out.push(c);
                }
            }
            Ok(out)
        })
        .collect()
}

/// An existing array index: digits, no leading zeros, `< len` (or `<= len` when `allow_end`).
fn array_index(tok: &str, len: usize, allow_end: bool) -> Result<usize, String> {
    if tok.is_empty()
        || !tok.bytes().all(|b| b.is_ascii_digit())
        || (tok.len() > 1 && tok.starts_with('0'))
    {
        return Err(format!("{tok:?} is not an array index"));
    }
    let i: usize = tok
        .parse()
        .map_err(|_| format!("array index {tok} is too large"))?;
    if i < len || (allow_end && i == len) {
        Ok(i)
    } else {
        Err(format!("array index {i} is out of range (length {len})"))
    }
}

fn resolve<'a>(doc: &'a Value, tokens: &[String]) -> Result<&'a Value, String> {
    let mut cur = doc;
    for tok in tokens {
        cur = match cur {
            Value::Object(m) => m
                .get(tok)
                .ok_or_else(|| format!("member {tok:?} not found"))?,
            Value::Array(a) => &a[array_index(tok, a.len(), false)?],
            _ => return Err(format!("cannot index a scalar with {tok:?}")),
        };
    }
    Ok(cur)
}

fn resolve_mut<'a>(doc: &'a mut Value, tokens: &[String]) -> Result<&'a mut Value, String> {
    let mut cur = doc;
    for tok in tokens {
        cur = match cur {
            Value::Object(m) => m
                .get_mut(tok)
                .ok_or_else(|| format!("member {tok:?} not found"))?,
            Value::Array(a) => {
                let i = array_index(tok, a.len(), false)?;
                &mut a[i]
            }
            _ => return Err(format!("cannot index a scalar with {tok:?}")),
        };
    }
    Ok(cur)
}

fn add_at(doc: &mut Value, tokens: &[String], value: Value) -> Result<(), String> {
    let Some((last, parent)) = tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    match resolve_mut(doc, parent)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
            } else {
                let i = array_index(last, a.len(), true)?;
                a.insert(i, value);
            }
            Ok(())
        }
        _ => Err("the parent is not an object or array".into()),
    }
}

fn remove_at(doc: &mut Value, tokens: &[String]) -> Result<Value, String> {
    let Some((last, parent)) = tokens.split_last() else {
        return Err("cannot remove the whole document".into());
    };
    match resolve_mut(doc, parent)? {
        Value::Object(m) => m
            .remove(last)
            .ok_or_else(|| format!("member {last:?} not found")),
        Value::Array(a) => {
            let i = array_index(last, a.len(), false)?;
            Ok(a.remove(i))
        }
        _ => Err("the parent is not an object or array".into()),
    }
}

fn apply_op(doc: &mut Value, index: usize, op: &Value) -> Result<(), PatchError> {
    let op = op
        .as_object()
        .ok_or_else(|| PatchError::InvalidPatch(format!("operation {index} is not an object")))?;
    let name = member(op, index, "op")?.as_str().ok_or_else(|| {
        PatchError::InvalidPatch(format!("operation {index}: \"op\" is not a string"))
    })?;
    let (path, tokens) = pointer_member(op, index, "path")?;
    let fail = |reason: String| PatchError::OpFailed {
        index,
        op: name.to_string(),
        path: path.clone(),
        reason,
    };
    match name {
        "add" => {
            let value = member(op, index, "value")?.clone();
            add_at(doc, &tokens, value).map_err(fail)
        }
        "remove" => remove_at(doc, &tokens).map(drop).map_err(fail),
        "replace" => {
            let value = member(op, index, "value")?.clone();
            *resolve_mut(doc, &tokens).map_err(fail)? = value;
            Ok(())
        }
        "move" => {
            let (_, from) = pointer_member(op, index, "from")?;
            if from == tokens {
                return resolve(doc, &from).map(drop).map_err(fail);
            }
            if from.len() < tokens.len() && tokens.starts_with(&from) {
                return Err(fail(
                    "cannot move a value into one of its own children".into(),
                ));
            }
            let value = remove_at(doc, &from).map_err(|e| fail(format!("from: {e}")))?;
            add_at(doc, &tokens, value).map_err(fail)
        }
        "copy" => {
            let (_, from) = pointer_member(op, index, "from")?;
            let value = resolve(doc, &from)
                .map_err(|e| fail(format!("from: {e}")))?
                .clone();
            add_at(doc, &tokens, value).map_err(fail)
        }
        "test" => {
            let expected = member(op, index, "value")?;
            let actual = resolve(doc, &tokens).map_err(fail)?;
            if json_eq(actual, expected) {
                Ok(())
            } else {
                Err(PatchError::TestFailed { index, path })
            }
        }
        other => Err(PatchError::InvalidPatch(format!(
            "operation {index}: unknown op {other:?}"
        ))),
    }
}

/// JSON equality as RFC 6902 `test` defines it: numbers compare by value.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x == y
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x == y
            } else {
                x.as_f64() == y.as_f64()
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

// ---------------------------------------------------------------------------------------
// RFC 7386

fn merge_patch(target: &Value, patch: &Value) -> Value {
    let Value::Object(p) = patch else {
        return patch.clone();
    };
    let mut out = match target {
        Value::Object(t) => t.clone(),
        _ => Map::new(),
    };
    for (k, v) in p {
        if v.is_null() {
            out.remove(k);
        } else {
            let merged = merge_patch(out.get(k).unwrap_or(&Value::Null), v);
            out.insert(k.clone(), merged);
        }
    }
    Value::Object(out)
}

// ---------------------------------------------------------------------------------------
// Strategic merge

fn pointer(path: &[String]) -> String {
    path.iter()
        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
        .collect()
}

fn unsupported(path: &[String], directive: String) -> PatchError {
    PatchError::UnsupportedDirective {
        path: pointer(path),
        directive,
    }
}

/// Merge the patch object `patch` into `target` (absent: `None`). `Ok(None)` means the
/// object is deleted (`$patch: delete`). Non-object patches replace, materialized.
fn smp(
    target: Option<&Value>,
    patch: &Value,
    path: &mut Vec<String>,
) -> Result<Option<Value>, PatchError> {
    let p = match patch {
        Value::Object(p) => p,
        Value::Array(_) => return Ok(Some(merge_list(None, patch, path)?)),
        _ => return Ok(Some(patch.clone())),
    };
    let mut out = match (p.get(DIRECTIVE), target) {
        (Some(Value::String(d)), _) if d == "delete" => return Ok(None),
        (Some(Value::String(d)), _) if d == "replace" => Map::new(),
        (Some(d), _) => return Err(unsupported(path, format!("$patch: {d}"))),
        (None, Some(Value::Object(t))) => t.clone(),
        (None, _) => Map::new(),
    };
    let mut deletes = Vec::new();
    for (k, v) in p {
        if k == DIRECTIVE || k == RETAIN_KEYS || k.starts_with(SET_ELEMENT_ORDER) {
            continue;
        }
        if let Some(field) = k.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            deletes.push((field, v));
            continue;
        }
        if k.starts_with('$') {
            return Err(unsupported(path, k.clone()));
        }
        if v.is_null() {
            out.remove(k);
            continue;
        }
        path.push(k.clone());
        let merged = match v {
            Value::Array(_) => Some(merge_list(out.get(k), v, path)?),
            _ => smp(out.get(k), v, path)?,
        };
        path.pop();
        match merged {
            Some(m) => {
                out.insert(k.clone(), m);
            }
            None => {
                out.remove(k);
            }
        }
    }
    for (field, values) in deletes {
        let values = values.as_array().ok_or_else(|| {
            PatchError::InvalidPatch(format!(
                "{}: {DELETE_FROM_PRIMITIVE_LIST}{field} is not a list",
                pointer(path)
            ))
        })?;
        if let Some(Value::Array(list)) = out.get_mut(field) {
            list.retain(|x| !values.iter().any(|v| json_eq(x, v)));
        }
    }
    if let Some(retain) = p.get(RETAIN_KEYS) {
        let bad = || {
            PatchError::InvalidPatch(format!(
                "{}: {RETAIN_KEYS} must be a list of strings",
                pointer(path)
            ))
        };
        let keys: Vec<&str> = retain
            .as_array()
            .ok_or_else(bad)?
            .iter()
            .map(|k| k.as_str().ok_or_else(bad))
            .collect::<Result<_, _>>()?;
        if let Some(k) = p
            .keys()
            .find(|k| !k.starts_with('$') && !keys.contains(&k.as_str()))
        {
            return Err(PatchError::InvalidPatch(format!(
                "{}: {RETAIN_KEYS} does not list the patched key {k:?}",
                pointer(path)
            )));
        }
        out.retain(|k, _| keys.contains(&k.as_str()));
    }
    Ok(Some(Value::Object(out)))
}

/// Resolve a patch value against nothing: nested directives applied, `null` members removed.
fn materialize(v: &Value, path: &mut Vec<String>) -> Result<Option<Value>, PatchError> {
    smp(None, v, path)
}

fn is_directive_element(v: &Value) -> Option<&Value> {
    v.as_object().and_then(|m| m.get(DIRECTIVE))
}

fn merge_list(
    target: Option<&Value>,
    patch: &Value,
    path: &mut Vec<String>,
) -> Result<Value, PatchError> {
    let items = patch.as_array().expect("merge_list takes an array patch");
    let field = match path.as_slice() {
        [m, f] if m == "metadata" => f.as_str(),
        _ => "",
    };
    let target = target.and_then(Value::as_array);
    match field {
        "ownerReferences" => merge_owner_references(target, items, path),
        "finalizers" => merge_finalizers(target, items, path),
        _ => replace_list(items, path),
    }
}

/// A list without a merge key: replaced; directive elements dropped.
fn replace_list(items: &[Value], path: &mut Vec<String>) -> Result<Value, PatchError> {
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if is_directive_element(item).is_some() {
            continue;
        }
        path.push(i.to_string());
        let m = materialize(item, path)?;
        path.pop();
        out.extend(m);
    }
    Ok(Value::Array(out))
}

fn merge_owner_references(
    target: Option<&Vec<Value>>,
    items: &[Value],
    path: &mut Vec<String>,
) -> Result<Value, PatchError> {
    let mut out: Vec<Value> = target.cloned().unwrap_or_default();
    let mut plain = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let uid = item.get("uid");
        match is_directive_element(item) {
            None => {
                if uid.is_none() {
                    return Err(PatchError::InvalidPatch(format!(
                        "{}/{i}: element has no merge key uid",
                        pointer(path)
                    )));
                }
                plain.push(item);
            }
            Some(Value::String(d)) if d == "delete" => {
                let uid = uid.ok_or_else(|| {
                    PatchError::InvalidPatch(format!(
                        "{}/{i}: $patch: delete without merge key uid",
                        pointer(path)
                    ))
                })?;
                out.retain(|e| e.get("uid") != Some(uid));
            }
            Some(Value::String(d)) if d == "replace" => {}
            Some(d) => {
                path.push(i.to_string());
                let e = unsupported(path, format!("$patch: {d}"));
                path.pop();
                return Err(e);
            }
        }
    }
    // A replace clears the target list whatever its position, as upstream.
    if items
        .iter()
        .any(|i| is_directive_element(i).and_then(Value::as_str) == Some("replace"))
    {
        out.clear();
    }
    for item in plain {
        let uid = item.get("uid");
        let pos = out.iter().position(|e| e.get("uid") == uid);
        path.push(pos.unwrap_or(out.len()).to_string());
        let merged = smp(pos.map(|p| &out[p]), item, path)?;
        path.pop();
        match (pos, merged) {
            (Some(p), Some(m)) => out[p] = m,
            (Some(p), None) => {
                out.remove(p);
            }
            (None, Some(m)) => out.push(m),
            (None, None) => {}
        }
    }
    Ok(Value::Array(out))
}

fn merge_finalizers(
    target: Option<&Vec<Value>>,
    items: &[Value],
    path: &mut Vec<String>,
) -> Result<Value, PatchError> {
    let mut replace = false;
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::String(_) => {}
            _ if is_directive_element(item).and_then(Value::as_str) == Some("replace") => {
                replace = true
            }
            _ => {
                path.push(i.to_string());
                let e = match is_directive_element(item) {
                    Some(d) => unsupported(path, format!("$patch: {d}")),
                    None => PatchError::InvalidPatch(format!(
                        "{}: finalizers must be strings",
                        pointer(path)
                    )),
                };
                path.pop();
                return Err(e);
            }
        }
    }
    let mut out: Vec<Value> = if replace {
        Vec::new()
    } else {
        target.cloned().unwrap_or_default()
    };
    for item in items.iter().filter(|i| i.is_string()) {
        if !out.contains(item) {
            out.push(item.clone());
        }
    }
    Ok(Value::Array(out))
}

// ---------------------------------------------------------------------------------------
// Server-side apply (approximation)

/// `metadata` fields the server sets, kept from the target when the apply body omits them.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_nulls).collect()),
        _ => v.clone(),
    }
}

fn server_side_apply(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    if !patch.is_object() {
        return Err(PatchError::InvalidPatch(
            "a server-side apply body must be a JSON object".into(),
        ));
    }
    let mut out = strip_nulls(patch);
    let Some(old_meta) = target.get("metadata").and_then(Value::as_object) else {
        return Ok(out);
    };
    let obj = out.as_object_mut().expect("checked above");
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    let meta = meta.as_object_mut().expect("set above");
    for key in SERVER_METADATA {
        if let (false, Some(v)) = (meta.contains_key(*key), old_meta.get(*key)) {
            meta.insert((*key).to_string(), v.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn jp(target: Value, patch: Value) -> Result<Value, PatchError> {
        apply(&target, &patch, PatchKind::Json)
    }

    fn mp(target: Value, patch: Value) -> Value {
        apply(&target, &patch, PatchKind::Merge).unwrap()
    }

    fn sm(target: Value, patch: Value) -> Result<Value, PatchError> {
        apply(&target, &patch, PatchKind::StrategicMerge)
    }

    // RFC 6902 appendix A, behaviour re-stated.

    #[test]
    fn rfc6902_add_object_member() {
        let r = jp(
            json!({"a": 1}),
            json!([{"op": "add", "path": "/b", "value": 2}]),
        );
        assert_eq!(r.unwrap(), json!({"a": 1, "b": 2}));
    }

    #[test]
    fn rfc6902_add_array_element() {
        let r = jp(
            json!({"xs": ["p", "r"]}),
            json!([{"op": "add", "path": "/xs/1", "value": "q"}]),
        );
        assert_eq!(r.unwrap(), json!({"xs": ["p", "q", "r"]}));
    }

    #[test]
    fn rfc6902_remove_object_member() {
        let r = jp(
            json!({"a": 1, "b": 2}),
            json!([{"op": "remove", "path": "/b"}]),
        );
        assert_eq!(r.unwrap(), json!({"a": 1}));
    }

    #[test]
    fn rfc6902_remove_array_element() {
        let r = jp(
            json!({"xs": [1, 2, 3]}),
            json!([{"op": "remove", "path": "/xs/1"}]),
        );
        assert_eq!(r.unwrap(), json!({"xs": [1, 3]}));
    }

    #[test]
    fn rfc6902_replace_value() {
        let r = jp(
            json!({"a": 1, "b": 2}),
            json!([{"op": "replace", "path": "/a", "value": "x"}]),
        );
        assert_eq!(r.unwrap(), json!({"a": "x", "b": 2}));
    }

    #[test]
    fn rfc6902_move_value() {
        let r = jp(
            json!({"src": {"k": "v", "o": 1}, "dst": {"d": 2}}),
            json!([{"op": "move", "from": "/src/k", "path": "/dst/k"}]),
        );
        assert_eq!(
            r.unwrap(),
            json!({"src": {"o": 1}, "dst": {"d": 2, "k": "v"}})
        );
    }

    #[test]
    fn rfc6902_move_array_element() {
        let r = jp(
            json!({"xs": [1, 2, 3, 4]}),
            json!([{"op": "move", "from": "/xs/1", "path": "/xs/3"}]),
        );
        assert_eq!(r.unwrap(), json!({"xs": [1, 3, 4, 2]}));
    }

    #[test]
    fn rfc6902_test_success() {
        let doc = json!({"b": "s", "c": [1, 2, "x"]});
        let r = jp(
            doc.clone(),
            json!([
                {"op": "test", "path": "/b", "value": "s"},
                {"op": "test", "path": "/c", "value": [1.0, 2, "x"]}
            ]),
        );
        assert_eq!(r.unwrap(), doc);
    }

    #[test]
    fn rfc6902_test_error() {
        let r = jp(
            json!({"b": "s"}),
            json!([{"op": "test", "path": "/b", "value": "t"}]),
        );
        assert_eq!(
            r,
            Err(PatchError::TestFailed {
                index: 0,
                path: "/b".into()
            })
        );
    }

    #[test]
    fn rfc6902_add_nested_member_object() {
        let r = jp(
            json!({"a": 1}),
            json!([{"op": "add", "path": "/child", "value": {"g": "c"}}]),
        );
        assert_eq!(r.unwrap(), json!({"a": 1, "child": {"g": "c"}}));
    }

    #[test]
    fn rfc6902_ignores_unknown_members() {
        let r = jp(
            json!({"a": 1}),
            json!([{"op": "add", "path": "/b", "value": 2, "extra": true}]),
        );
        assert_eq!(r.unwrap(), json!({"a": 1, "b": 2}));
    }

    #[test]
    fn rfc6902_add_to_nonexistent_target_fails() {
        let r = jp(
            json!({"a": 1}),
            json!([{"op": "add", "path": "/x/y", "value": 2}]),
        );
        assert!(
            matches!(r, Err(PatchError::OpFailed { index: 0, .. })),
            "{r:?}"
        );
    }

    #[test]
    fn rfc6902_escapes() {
        let doc = json!({"/": 9, "~1": 10});
        let r = jp(
            doc.clone(),
            json!([
                {"op": "test", "path": "/~01", "value": 10},
                {"op": "test", "path": "/~1", "value": 9}
            ]),
        );
        assert_eq!(r.unwrap(), doc);
        assert!(matches!(
            jp(
                json!({}),
                json!([{"op": "test", "path": "/~2", "value": 1}])
            ),
            Err(PatchError::InvalidPatch(_))
        ));
    }

    #[test]
    fn rfc6902_test_string_number_differ() {
        let r = jp(
            json!({"n": 10}),
            json!([{"op": "test", "path": "/n", "value": "10"}]),
        );
        assert!(matches!(r, Err(PatchError::TestFailed { .. })));
    }

    #[test]
    fn rfc6902_add_array_value() {
        let r = jp(
            json!({"xs": ["a"]}),
            json!([{"op": "add", "path": "/xs/-", "value": ["b", "c"]}]),
        );
        assert_eq!(r.unwrap(), json!({"xs": ["a", ["b", "c"]]}));
    }

    #[test]
    fn json_patch_index_rules() {
        let doc = json!({"xs": [1, 2]});
        let add = |p: &str| jp(doc.clone(), json!([{"op": "add", "path": p, "value": 0}]));
        assert_eq!(add("/xs/2").unwrap(), json!({"xs": [1, 2, 0]}));
        assert_eq!(add("/xs/-").unwrap(), json!({"xs": [1, 2, 0]}));
        assert!(matches!(add("/xs/3"), Err(PatchError::OpFailed { .. })));
        assert!(matches!(add("/xs/01"), Err(PatchError::OpFailed { .. })));
        let r = jp(
            doc.clone(),
            json!([{"op": "replace", "path": "/xs/2", "value": 0}]),
        );
        assert!(matches!(r, Err(PatchError::OpFailed { .. })));
        let r = jp(doc.clone(), json!([{"op": "remove", "path": "/xs/-"}]));
        assert!(matches!(r, Err(PatchError::OpFailed { .. })));
    }

    #[test]
    fn json_patch_copy_and_bad_move() {
        let r = jp(
            json!({"a": {"b": 1}}),
            json!([{"op": "copy", "from": "/a", "path": "/c"}]),
        );
        assert_eq!(r.unwrap(), json!({"a": {"b": 1}, "c": {"b": 1}}));
        let r = jp(
            json!({"a": {"b": 1}}),
            json!([{"op": "move", "from": "/a", "path": "/a/b/c"}]),
        );
        assert!(matches!(r, Err(PatchError::OpFailed { .. })));
    }

    #[test]
    fn json_patch_invalid_documents() {
        assert!(matches!(
            jp(json!({}), json!({})),
            Err(PatchError::InvalidPatch(_))
        ));
        assert!(matches!(
            jp(json!({}), json!([{"op": "frob", "path": "/a"}])),
            Err(PatchError::InvalidPatch(_))
        ));
        assert!(matches!(
            jp(json!({}), json!([{"op": "add", "path": "/a"}])),
            Err(PatchError::InvalidPatch(_))
        ));
        assert!(matches!(
            jp(json!({}), json!([{"op": "add", "path": "a", "value": 1}])),
            Err(PatchError::InvalidPatch(_))
        ));
    }

    fn cluster_role() -> Value {
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {
                "name": "reader",
                "uid": "u-1",
                "resourceVersion": "42",
                "creationTimestamp": "2024-01-01T00:00:00Z",
                "labels": {"team": "a", "tier": "x"},
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "o1", "uid": "1"},
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "o2", "uid": "2"}
                ],
                "finalizers": ["a/one", "a/two"]
            },
            "rules": [
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}
            ]
        })
    }

    #[test]
    fn json_patch_adds_rule_and_replaces_verbs() {
        let r = jp(
            cluster_role(),
            json!([
                {"op": "add", "path": "/rules/-", "value":
                    {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}},
                {"op": "replace", "path": "/rules/0/verbs", "value": ["*"]}
            ]),
        )
        .unwrap();
        assert_eq!(
            r["rules"],
            json!([
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]},
                {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}
            ])
        );
        assert_eq!(r["metadata"], cluster_role()["metadata"]);
    }

    #[test]
    fn failing_test_op_leaves_target_unchanged() {
        let target = cluster_role();
        let before = target.clone();
        let r = apply(
            &target,
            &json!([
                {"op": "replace", "path": "/rules/0/verbs", "value": ["*"]},
                {"op": "test", "path": "/metadata/resourceVersion", "value": "41"},
                {"op": "remove", "path": "/rules"}
            ]),
            PatchKind::Json,
        );
        assert_eq!(
            r,
            Err(PatchError::TestFailed {
                index: 1,
                path: "/metadata/resourceVersion".into()
            })
        );
        assert_eq!(target, before);
    }

    // RFC 7386 section 3 / appendix A style.

    #[test]
    fn rfc7386_examples() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (t, p, want) in cases {
            assert_eq!(mp(t.clone(), p.clone()), want, "target {t} patch {p}");
        }
    }

    #[test]
    fn smp_cluster_role_rules_replaced_labels_merged() {
        let r = sm(
            cluster_role(),
            json!({
                "metadata": {"labels": {"tier": null, "env": "prod"}},
                "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]
            }),
        )
        .unwrap();
        assert_eq!(
            r["rules"],
            json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}])
        );
        assert_eq!(r["metadata"]["labels"], json!({"team": "a", "env": "prod"}));
        assert_eq!(r["metadata"]["name"], "reader");
    }

    #[test]
    fn smp_patch_replace_on_labels() {
        let r = sm(
            cluster_role(),
            json!({"metadata": {"labels": {"$patch": "replace", "only": "this"}}}),
        )
        .unwrap();
        assert_eq!(r["metadata"]["labels"], json!({"only": "this"}));
        assert_eq!(r["rules"], cluster_role()["rules"]);
    }

    #[test]
    fn smp_patch_delete_on_object() {
        let mut t = cluster_role();
        t["aggregationRule"] = json!({"clusterRoleSelectors": [{"matchLabels": {"a": "b"}}]});
        let r = sm(t, json!({"aggregationRule": {"$patch": "delete"}})).unwrap();
        assert!(r.get("aggregationRule").is_none());
        assert!(matches!(
            sm(cluster_role(), json!({"$patch": "delete"})),
            Err(PatchError::UnsupportedDirective { .. })
        ));
        assert!(matches!(
            sm(cluster_role(), json!({"metadata": {"$patch": "merge"}})),
            Err(PatchError::UnsupportedDirective { .. })
        ));
    }

    #[test]
    fn smp_owner_references_merged_by_uid() {
        let r = sm(
            cluster_role(),
            json!({"metadata": {"ownerReferences": [
                {"uid": "2", "controller": true},
                {"apiVersion": "v1", "kind": "Secret", "name": "o3", "uid": "3"},
                {"uid": "1", "$patch": "delete"}
            ]}}),
        )
        .unwrap();
        assert_eq!(
            r["metadata"]["ownerReferences"],
            json!([
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "o2", "uid": "2", "controller": true},
                {"apiVersion": "v1", "kind": "Secret", "name": "o3", "uid": "3"}
            ])
        );
        let r = sm(
            cluster_role(),
            json!({"metadata": {"ownerReferences": [{"$patch": "replace"}, {"uid": "9", "name": "n"}]}}),
        )
        .unwrap();
        assert_eq!(
            r["metadata"]["ownerReferences"],
            json!([{"uid": "9", "name": "n"}])
        );
        assert!(matches!(
            sm(
                cluster_role(),
                json!({"metadata": {"ownerReferences": [{"name": "x"}]}})
            ),
            Err(PatchError::InvalidPatch(_))
        ));
    }

    #[test]
    fn smp_finalizers_union() {
        let r = sm(
            cluster_role(),
            json!({"metadata": {"finalizers": ["a/two", "b/three"]}}),
        )
        .unwrap();
        assert_eq!(
            r["metadata"]["finalizers"],
            json!(["a/one", "a/two", "b/three"])
        );
        let r = sm(
            cluster_role(),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a/one"]}}),
        )
        .unwrap();
        assert_eq!(r["metadata"]["finalizers"], json!(["a/two"]));
        let r = sm(cluster_role(), json!({"metadata": {"finalizers": []}})).unwrap();
        assert_eq!(r["metadata"]["finalizers"], json!(["a/one", "a/two"]));
        let r = sm(cluster_role(), json!({"metadata": {"finalizers": null}})).unwrap();
        assert!(r["metadata"].get("finalizers").is_none());
    }

    #[test]
    fn smp_directive_elements_in_replaced_list_dropped() {
        let r = sm(
            cluster_role(),
            json!({
                "$setElementOrder/rules": [{}],
                "rules": [
                    {"$patch": "replace"},
                    {"verbs": ["get"], "resources": ["nodes"], "apiGroups": [""], "resourceNames": null},
                    {"verbs": ["list"], "$patch": "delete"}
                ]
            }),
        )
        .unwrap();
        assert_eq!(
            r["rules"],
            json!([{"verbs": ["get"], "resources": ["nodes"], "apiGroups": [""]}])
        );
    }

    #[test]
    fn smp_retain_keys() {
        let r = sm(
            json!({"spec": {"a": 1, "b": 2, "c": 3}}),
            json!({"spec": {"$retainKeys": ["a", "d"], "d": 4}}),
        )
        .unwrap();
        assert_eq!(r, json!({"spec": {"a": 1, "d": 4}}));
        assert!(matches!(
            sm(json!({}), json!({"spec": {"$retainKeys": ["a"], "d": 4}})),
            Err(PatchError::InvalidPatch(_))
        ));
    }

    #[test]
    fn smp_binding_subjects_replaced() {
        let b = json!({
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "b"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "r"},
            "subjects": [{"kind": "User", "name": "alice"}]
        });
        let r = sm(
            b,
            json!({"subjects": [{"kind": "Group", "name": "system:authenticated"}]}),
        )
        .unwrap();
        assert_eq!(
            r["subjects"],
            json!([{"kind": "Group", "name": "system:authenticated"}])
        );
        assert_eq!(r["roleRef"]["name"], "r");
    }

    #[test]
    fn apply_keeps_server_metadata() {
        let body = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "reader", "labels": {"managed": "gitops"}},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}]
        });
        let r = apply(&cluster_role(), &body, PatchKind::Apply).unwrap();
        assert_eq!(r["rules"], body["rules"]);
        assert_eq!(r["metadata"]["labels"], json!({"managed": "gitops"}));
        assert_eq!(r["metadata"]["uid"], "u-1");
        assert_eq!(r["metadata"]["resourceVersion"], "42");
        assert_eq!(r["metadata"]["creationTimestamp"], "2024-01-01T00:00:00Z");
        assert!(r["metadata"].get("finalizers").is_none());
        // Creating through apply: no target.
        assert_eq!(apply(&Value::Null, &body, PatchKind::Apply).unwrap(), body);
    }

    #[test]
    fn detect_kind_shapes() {
        assert_eq!(detect_kind(&json!([])), Some(PatchKind::Json));
        assert_eq!(
            detect_kind(&json!([{"op": "add", "path": "/a", "value": 1}])),
            Some(PatchKind::Json)
        );
        assert_eq!(
            detect_kind(
                &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole"})
            ),
            Some(PatchKind::Apply)
        );
        assert_eq!(
            detect_kind(&json!({"metadata": {"labels": {"$patch": "replace"}}})),
            Some(PatchKind::StrategicMerge)
        );
        assert_eq!(
            detect_kind(&json!({"rules": [{"$patch": "replace"}]})),
            Some(PatchKind::StrategicMerge)
        );
        assert_eq!(
            detect_kind(&json!({"spec": {"$retainKeys": ["a"]}})),
            Some(PatchKind::StrategicMerge)
        );
        assert_eq!(
            detect_kind(&json!({"$setElementOrder/rules": [], "rules": []})),
            Some(PatchKind::StrategicMerge)
        );
        assert_eq!(detect_kind(&json!({"rules": []})), Some(PatchKind::Merge));
        assert_eq!(
            detect_kind(&json!({"kind": "ClusterRole"})),
            Some(PatchKind::Merge)
        );
        assert_eq!(detect_kind(&json!({})), Some(PatchKind::Merge));
        assert_eq!(detect_kind(&json!("x")), None);
        assert_eq!(detect_kind(&Value::Null), None);
    }

    /// JSON values; `null` only outside objects when `object_nulls` is false.
    fn json_value(object_nulls: bool) -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[a-z~/]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map("[a-z~/$]{0,5}", inner, 0..5).prop_map(move |m| {
                    Value::Object(
                        m.into_iter()
                            .filter(|(_, v)| object_nulls || !v.is_null())
                            .collect(),
                    )
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn merge_with_itself_is_identity(t in json_value(false)) {
            prop_assert_eq!(mp(t.clone(), t.clone()), t);
        }

        #[test]
        fn json_replace_root_gives_value(t in json_value(true), x in json_value(true)) {
            let patch = json!([{"op": "replace", "path": "", "value": x.clone()}]);
            prop_assert_eq!(apply(&t, &patch, PatchKind::Json).unwrap(), x);
        }
    }
}
