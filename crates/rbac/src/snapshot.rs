//! Loading RBAC snapshots: what `kubectl get clusterroles,clusterrolebindings,roles,rolebindings
//! -A -o yaml` (or `-o json`) writes, manifests in a repository, or objects read live.
//!
//! Multi-document YAML, JSON, single objects and `List` kinds (`List`, `ClusterRoleList`, ...)
//! are all read. Objects of other kinds are skipped and counted. A bad document is reported
//! with its file and index, and the rest still loads.

use crate::objects::{
    Binding, BindingKind, LabelSelector, Origin, Role, RoleKind, RoleRef, Subject,
};
use crate::rule::PolicyRule;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// A problem loading part of a snapshot.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// A file or directory could not be read.
    #[error("{path}: {message}")]
    Read {
        /// The path.
        path: String,
        /// Why.
        message: String,
    },
    /// A document could not be parsed or is not a usable object.
    #[error("{origin}: {message}")]
    Document {
        /// Where.
        origin: String,
        /// Why.
        message: String,
    },
}

/// RBAC objects read from files or a cluster.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// ClusterRoles and Roles.
    pub roles: Vec<Role>,
    /// ClusterRoleBindings and RoleBindings.
    pub bindings: Vec<Binding>,
    /// Objects of other kinds, counted by kind.
    pub skipped: BTreeMap<String, usize>,
    /// Problems; everything else still loaded.
    pub errors: Vec<LoadError>,
    /// Files read.
    pub files: usize,
}

/// Loader settings.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Namespace for namespaced objects that carry none.
    pub default_namespace: Option<String>,
}

impl Snapshot {
    /// Loads files and directories (recursively; `.yaml`, `.yml` and `.json` files in
    /// directories, any file named directly).
    pub fn load(paths: &[PathBuf], opts: &LoadOptions) -> Snapshot {
        let mut snap = Snapshot::default();
        for p in paths {
            snap.load_path(p, opts, true);
        }
        snap
    }

    fn load_path(&mut self, p: &Path, opts: &LoadOptions, named: bool) {
        let meta = match std::fs::metadata(p) {
            Ok(m) => m,
            Err(e) => {
                self.errors.push(LoadError::Read {
                    path: p.display().to_string(),
                    message: e.to_string(),
                });
                return;
            }
        };
        if meta.is_dir() {
            let mut entries: Vec<PathBuf> = match std::fs::read_dir(p) {
                Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
                Err(e) => {
                    self.errors.push(LoadError::Read {
                        path: p.display().to_string(),
                        message: e.to_string(),
                    });
                    return;
                }
            };
            entries.sort();
            for e in entries {
                self.load_path(&e, opts, false);
            }
            return;
        }
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !named && !matches!(ext, "yaml" | "yml" | "json") {
            return;
        }
        match std::fs::read_to_string(p) {
            Ok(text) => self.load_text(&p.display().to_string(), &text, opts),
            Err(e) => self.errors.push(LoadError::Read {
                path: p.display().to_string(),
                message: e.to_string(),
            }),
        }
    }

    /// Loads the documents of one file's text; `file` names it in messages.
    pub fn load_text(&mut self, file: &str, text: &str, opts: &LoadOptions) {
        self.files += 1;
        let trimmed = text.trim_start_matches('\u{feff}').trim_start();
        if trimmed.starts_with('{') || trimmed.starts_with('[') {
            // JSON: one value, or several back to back (`kubectl get -o json` for each kind).
            // Typed first (fast); generic values only to pin down what is wrong.
            let typed: Result<Vec<RawObj>, _> = serde_json::Deserializer::from_str(trimmed)
                .into_iter::<RawObj>()
                .collect();
            if let Ok(objs) = typed {
                for (doc, o) in objs.into_iter().enumerate() {
                    self.add_document(o, file, doc, opts);
                }
                return;
            }
            let mut stream = serde_json::Deserializer::from_str(trimmed).into_iter::<Value>();
            let mut doc = 0;
            loop {
                match stream.next() {
                    None => break,
                    Some(Ok(v)) => self.add_value(
                        v,
                        Origin {
                            file: file.into(),
                            document: doc,
                            item: None,
                        },
                        opts,
                    ),
                    Some(Err(e)) => {
                        self.errors.push(LoadError::Document {
                            origin: format!("{file} document {}", doc + 1),
                            message: format!("invalid JSON: {e}"),
                        });
                        break;
                    }
                }
                doc += 1;
            }
            return;
        }
        // The whole stream in one parse is much faster than document by document; only when
        // it fails are documents parsed one at a time, to name the bad ones and keep the rest.
        // Typed objects, not generic values: most of a generic parse is allocating maps for
        // fields nobody reads.
        if let Ok(objs) = serde_saphyr::from_multiple_with_options::<Option<RawObj>>(
            text,
            yaml_options(text.len()),
        ) {
            let non_empty = non_empty_documents(text);
            let objs: Vec<RawObj> = objs.into_iter().flatten().collect();
            if objs.len() == non_empty.len() {
                for (o, doc) in objs.into_iter().zip(non_empty) {
                    self.add_document(o, file, doc, opts);
                }
                return;
            }
        }
        for (doc, body) in split_yaml(text).into_iter().enumerate() {
            if yaml_is_empty(&body) {
                continue;
            }
            match serde_saphyr::from_str_with_options::<Value>(&body, yaml_options(body.len())) {
                Ok(Value::Null) => {}
                Ok(v) => self.add_value(
                    v,
                    Origin {
                        file: file.into(),
                        document: doc,
                        item: None,
                    },
                    opts,
                ),
                Err(e) => self.errors.push(LoadError::Document {
                    origin: format!("{file} document {}", doc + 1),
                    message: format!("invalid YAML: {}", first_line(&e.to_string())),
                }),
            }
        }
    }

    /// Adds one decoded object, or the items of a `List`.
    pub fn add_value(&mut self, mut v: Value, origin: Origin, opts: &LoadOptions) {
        let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
        if (kind.is_empty() || kind.ends_with("List"))
            && v.get("items").is_some_and(Value::is_array)
        {
            if let Value::Array(items) = v["items"].take() {
                for (i, item) in items.into_iter().enumerate() {
                    let o = Origin {
                        item: Some(i),
                        ..origin.clone()
                    };
                    self.add_object(item, o, opts);
                }
            }
            return;
        }
        self.add_object(v, origin, opts);
    }

    fn add_object(&mut self, v: Value, origin: Origin, opts: &LoadOptions) {
        let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
        if matches!(
            kind,
            "ClusterRole" | "Role" | "ClusterRoleBinding" | "RoleBinding"
        ) {
            match serde_json::from_value::<RawObj>(v) {
                Ok(o) => self.add_raw(o, origin, opts),
                Err(e) => self.errors.push(LoadError::Document {
                    origin: origin.to_string(),
                    message: e.to_string(),
                }),
            }
            return;
        }
        self.add_raw(
            RawObj {
                kind: Some(kind.to_string()),
                ..Default::default()
            },
            origin,
            opts,
        );
    }

    /// One decoded document: an object, or the items of a List.
    fn add_document(&mut self, o: RawObj, file: &str, doc: usize, opts: &LoadOptions) {
        let origin = Origin {
            file: file.into(),
            document: doc,
            item: None,
        };
        match o.items {
            Some(items) if o.kind.as_deref().is_none_or(|k| k.ends_with("List")) => {
                for (i, item) in items.into_iter().enumerate() {
                    let origin = Origin {
                        item: Some(i),
                        ..origin.clone()
                    };
                    self.add_raw(item, origin, opts);
                }
            }
            _ => self.add_raw(o, origin, opts),
        }
    }

    fn add_raw(&mut self, o: RawObj, origin: Origin, opts: &LoadOptions) {
        let res = match o.kind.as_deref().unwrap_or("") {
            "ClusterRole" | "Role" => role_from(o, &origin, opts).map(|r| self.roles.push(r)),
            "ClusterRoleBinding" | "RoleBinding" => {
                binding_from(o, &origin, opts).map(|b| self.bindings.push(b))
            }
            "" => Err("no kind".to_string()),
            other => {
                *self.skipped.entry(other.to_string()).or_default() += 1;
                Ok(())
            }
        };
        if let Err(message) = res {
            self.errors.push(LoadError::Document {
                origin: origin.to_string(),
                message,
            });
        }
    }

    /// A ClusterRole by name.
    pub fn cluster_role(&self, name: &str) -> Option<&Role> {
        self.roles
            .iter()
            .find(|r| r.kind == RoleKind::ClusterRole && r.name == name)
    }

    /// A Role by namespace and name.
    pub fn role(&self, namespace: &str, name: &str) -> Option<&Role> {
        self.roles.iter().find(|r| {
            r.kind == RoleKind::Role && r.name == name && r.namespace.as_deref() == Some(namespace)
        })
    }

    /// The role a binding refers to, as the authorizer looks it up (a Role in the binding's
    /// namespace, or a ClusterRole); `None` when it does not exist (a latent binding).
    pub fn bound_role(&self, b: &Binding) -> Option<&Role> {
        match (b.role_ref.kind.as_str(), b.kind) {
            ("ClusterRole", _) => self.cluster_role(&b.role_ref.name),
            ("Role", BindingKind::RoleBinding) => {
                self.role(b.namespace.as_deref()?, &b.role_ref.name)
            }
            _ => None,
        }
    }
}

/// Parses one YAML document into a generic value, with the limits the loader itself uses, so
/// that a caller deciding what a document is (a Helm template, a Kustomize patch) agrees with
/// the loader on whether it parses.
pub fn parse_yaml_document(text: &str) -> Result<Value, String> {
    serde_saphyr::from_str_with_options::<Value>(text, yaml_options(text.len()))
        .map_err(|e| first_line(&e.to_string()))
}

/// Parser limits sized to the input. The defaults suit configuration files; a snapshot of a
/// large cluster is one document with far more nodes, or thousands of documents. Limits that
/// grow with the input keep that working, while the alias limits that stop expansion bombs
/// stay as they are.
fn yaml_options(len: usize) -> serde_saphyr::Options {
    let mut b = serde_saphyr::Budget::default();
    b.max_documents = b.max_documents.max(len / 8);
    b.max_nodes = b.max_nodes.max(len);
    b.max_events = b.max_events.max(len.saturating_mul(2));
    b.max_total_scalar_bytes = b.max_total_scalar_bytes.max(len.saturating_mul(2));
    let mut o = serde_saphyr::Options::default();
    o.budget = Some(b);
    o
}

/// Indexes of the documents (as [`split_yaml`] numbers them) that hold more than blank lines
/// and comments, found without copying the text.
fn non_empty_documents(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut doc = 0;
    let mut has_content = false;
    for line in text.lines() {
        let is_sep = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if is_sep {
            if has_content {
                out.push(doc);
            }
            doc += 1;
            let rest = line[3..].trim();
            has_content = !rest.is_empty() && !rest.starts_with('#');
            continue;
        }
        let t = line.trim();
        if line != "..." && !t.is_empty() && !t.starts_with('#') {
            has_content = true;
        }
    }
    if has_content {
        out.push(doc);
    }
    out
}

/// Whether a YAML document holds only blank lines and comments.
fn yaml_is_empty(doc: &str) -> bool {
    doc.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#')
    })
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

/// Splits a YAML stream into documents at `---` lines (and drops `...` end markers).
pub fn split_yaml(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        let is_sep = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if is_sep {
            docs.push(String::new());
            // `--- {inline}` keeps its content.
            let rest = line[3..].trim();
            if !rest.is_empty() && !rest.starts_with('#') {
                if let Some(d) = docs.last_mut() {
                    d.push_str(rest);
                    d.push('\n');
                }
            }
            continue;
        }
        if line == "..." {
            continue;
        }
        if let Some(d) = docs.last_mut() {
            d.push_str(line);
            d.push('\n');
        }
    }
    docs
}

/// The fields of an object kubeward reads; everything else is skipped while parsing.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawObj {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: Option<RawMeta>,
    #[serde(default)]
    rules: Option<Vec<PolicyRule>>,
    #[serde(default)]
    aggregation_rule: Option<RawAggregation>,
    #[serde(default)]
    role_ref: Option<RawRoleRef>,
    #[serde(default)]
    subjects: Option<Vec<RawSubject>>,
    #[serde(default)]
    items: Option<Vec<RawObj>>,
}

#[derive(Debug, Default, Deserialize)]
struct RawMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "resourceVersion")]
    resource_version: Option<Scalar>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, Scalar>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAggregation {
    #[serde(default)]
    cluster_role_selectors: Option<Vec<LabelSelector>>,
}

#[derive(Debug, Default, Deserialize)]
struct RawRoleRef {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawSubject {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

/// A label value. YAML may type an unquoted value (`true`, `1`); Kubernetes stores strings.
#[derive(Debug, Default)]
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a label value")
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar(String::new()))
            }
            fn visit_none<E>(self) -> Result<Scalar, E> {
                Ok(Scalar(String::new()))
            }
        }
        d.deserialize_any(V)
    }
}

fn name_of(o: &RawObj) -> Result<String, String> {
    o.metadata
        .as_ref()
        .and_then(|m| m.name.clone())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| "no metadata.name".to_string())
}

fn namespace_of(o: &RawObj, opts: &LoadOptions) -> Result<(String, bool), String> {
    match o
        .metadata
        .as_ref()
        .and_then(|m| m.namespace.as_deref())
        .filter(|s| !s.is_empty())
    {
        Some(ns) => Ok((ns.to_string(), false)),
        None => match &opts.default_namespace {
            Some(ns) => Ok((ns.clone(), true)),
            None => Err(
                "namespaced object without metadata.namespace (give --default-namespace)".into(),
            ),
        },
    }
}

fn role_from(o: RawObj, origin: &Origin, opts: &LoadOptions) -> Result<Role, String> {
    let name = name_of(&o)?;
    let kind = if o.kind.as_deref() == Some("ClusterRole") {
        RoleKind::ClusterRole
    } else {
        RoleKind::Role
    };
    let (namespace, defaulted) = match kind {
        RoleKind::ClusterRole => (None, false),
        RoleKind::Role => {
            let (ns, d) = namespace_of(&o, opts)?;
            (Some(ns), d)
        }
    };
    let aggregation = match kind {
        RoleKind::ClusterRole => o
            .aggregation_rule
            .map(|a| a.cluster_role_selectors.unwrap_or_default()),
        RoleKind::Role => None,
    };
    let resource_version = o
        .metadata
        .as_ref()
        .and_then(|m| m.resource_version.as_ref())
        .map(|v| v.0.clone());
    let labels = o
        .metadata
        .and_then(|m| m.labels)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    Ok(Role {
        resource_version,
        kind,
        name,
        namespace,
        labels,
        rules: o.rules.unwrap_or_default(),
        aggregation,
        origin: origin.clone(),
        defaulted_namespace: defaulted,
    })
}

fn binding_from(o: RawObj, origin: &Origin, opts: &LoadOptions) -> Result<Binding, String> {
    let name = name_of(&o)?;
    let kind = if o.kind.as_deref() == Some("ClusterRoleBinding") {
        BindingKind::ClusterRoleBinding
    } else {
        BindingKind::RoleBinding
    };
    let (namespace, defaulted) = match kind {
        BindingKind::ClusterRoleBinding => (None, false),
        BindingKind::RoleBinding => {
            let (ns, d) = namespace_of(&o, opts)?;
            (Some(ns), d)
        }
    };
    let rr = o
        .role_ref
        .ok_or_else(|| format!("{kind} {name}: no roleRef"))?;
    let role_ref = RoleRef {
        kind: rr.kind.unwrap_or_default(),
        name: rr.name.unwrap_or_default(),
    };
    if role_ref.name.is_empty() || !matches!(role_ref.kind.as_str(), "ClusterRole" | "Role") {
        return Err(format!(
            "{kind} {name}: roleRef needs kind ClusterRole or Role and a name"
        ));
    }
    let resource_version = o
        .metadata
        .as_ref()
        .and_then(|m| m.resource_version.as_ref())
        .map(|v| v.0.clone());
    let mut subjects = Vec::new();
    for (i, s) in o.subjects.unwrap_or_default().into_iter().enumerate() {
        match (s.kind, s.name) {
            (Some(k), Some(n)) => subjects.push(Subject {
                kind: k,
                name: n,
                namespace: s.namespace.filter(|s| !s.is_empty()),
            }),
            _ => return Err(format!("{kind} {name}: subject {i} needs kind and name")),
        }
    }
    Ok(Binding {
        resource_version,
        kind,
        name,
        namespace,
        role_ref,
        subjects,
        origin: origin.clone(),
        defaulted_namespace: defaulted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_lists_json_and_errors() {
        let yaml = "# comment\n---\napiVersion: v1\nkind: List\nitems:\n- kind: ClusterRole\n  metadata: {name: a, labels: {x: true}}\n  rules:\n  - apiGroups: ['']\n    resources: [pods]\n    verbs: [create]\n- kind: ConfigMap\n  metadata: {name: c}\n---\nkind: Role\nmetadata: {name: r}\nrules: []\n---\nkind: RoleBinding\nmetadata: {name: b, namespace: ns1}\nroleRef: {kind: Role, name: r}\nsubjects: [{kind: ServiceAccount, name: sa}]\n---\n: bad: [\n";
        let mut s = Snapshot::default();
        s.load_text("f.yaml", yaml, &LoadOptions::default());
        assert_eq!(s.roles.len(), 1);
        assert_eq!(s.roles[0].labels.get("x").map(String::as_str), Some("true"));
        assert_eq!(s.bindings.len(), 1);
        assert_eq!(s.skipped.get("ConfigMap"), Some(&1));
        assert_eq!(s.errors.len(), 2, "{:?}", s.errors);
        assert!(
            s.errors[0]
                .to_string()
                .starts_with("f.yaml document 3: namespaced object"),
            "{}",
            s.errors[0]
        );
        assert!(
            s.errors[1]
                .to_string()
                .starts_with("f.yaml document 5: invalid YAML"),
            "{}",
            s.errors[1]
        );

        let mut s = Snapshot::default();
        s.load_text(
            "f.yaml",
            yaml,
            &LoadOptions {
                default_namespace: Some("default".into()),
            },
        );
        assert_eq!(s.roles.len(), 2);
        assert!(s.roles[1].defaulted_namespace);
        let b = &s.bindings[0];
        let eff = b.effective_subject(&b.subjects[0]).unwrap();
        assert_eq!(eff.namespace.as_deref(), Some("ns1"));

        let mut s = Snapshot::default();
        s.load_text(
            "f.json",
            r#"{"kind":"ClusterRoleList","items":[{"kind":"ClusterRole","metadata":{"name":"x"},"rules":null,"aggregationRule":{"clusterRoleSelectors":[{"matchLabels":{"a":"b"}}]}}]}"#,
            &LoadOptions::default(),
        );
        assert_eq!(s.roles[0].aggregation.as_ref().map(Vec::len), Some(1));
        assert!(s.roles[0].rules.is_empty());
    }
}
