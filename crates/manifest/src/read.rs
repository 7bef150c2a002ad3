//! Reading one manifest file: the RBAC objects in it, where each one starts, and why the
//! parts that are not usable were skipped.
//!
//! Repositories hold much more than Kubernetes manifests under `*.yaml`: CI workflows, Helm
//! templates, Kustomize patches, binary files with the wrong extension. None of that may stop a
//! run, so every problem becomes a skip reason, and each document is parsed on its own: one
//! broken document does not hide the roles next to it.

use rbac::objects::{Binding, Role};
use rbac::snapshot::{parse_yaml_document, split_yaml, LoadError, LoadOptions, Snapshot};
use serde::Serialize;
use std::fmt;

/// Files larger than this are skipped: a manifest is kilobytes; a multi-megabyte `.json` in a
/// repository is a data file, and parsing it on every commit would dominate a history walk.
pub const MAX_FILE_BYTES: usize = 8 * 1024 * 1024;

/// The kind of an RBAC object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Kind {
    /// A cluster-scoped role.
    ClusterRole,
    /// A namespaced role.
    Role,
    /// Grants a ClusterRole everywhere.
    ClusterRoleBinding,
    /// Grants a role in one namespace.
    RoleBinding,
}

impl Kind {
    /// The Kubernetes kind name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ClusterRole => "ClusterRole",
            Kind::Role => "Role",
            Kind::ClusterRoleBinding => "ClusterRoleBinding",
            Kind::RoleBinding => "RoleBinding",
        }
    }

    /// Whether this is a ClusterRole or a Role.
    pub fn is_role(self) -> bool {
        matches!(self, Kind::ClusterRole | Kind::Role)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What makes an object the same object across commits and files: kind, namespace and name,
/// as the API server keys it. A file that moves, or a file split in two, keeps its identities.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjId {
    /// Kind.
    pub kind: Kind,
    /// Namespace of a Role or RoleBinding; empty when the manifest leaves it to deploy time
    /// (`kubectl -n`, Kustomize's `namespace:`).
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl fmt::Display for ObjId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::ClusterRole | Kind::ClusterRoleBinding => {
                write!(f, "{} {}", self.kind, self.name)
            }
            _ if self.namespace.is_empty() => write!(f, "{} {}", self.kind, self.name),
            _ => write!(f, "{} {}/{}", self.kind, self.namespace, self.name),
        }
    }
}

/// The content of an RBAC object.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Body {
    /// A ClusterRole or Role.
    Role(Role),
    /// A ClusterRoleBinding or RoleBinding.
    Binding(Binding),
}

impl Body {
    /// Whether two versions say the same thing to the authorizer: where they were read from
    /// does not count, so a moved manifest is not a change.
    pub fn same_content(&self, other: &Body) -> bool {
        match (self, other) {
            (Body::Role(a), Body::Role(b)) => {
                a.kind == b.kind
                    && a.name == b.name
                    && a.namespace == b.namespace
                    && a.labels == b.labels
                    && a.rules == b.rules
                    && a.aggregation == b.aggregation
            }
            (Body::Binding(a), Body::Binding(b)) => {
                a.kind == b.kind
                    && a.name == b.name
                    && a.namespace == b.namespace
                    && a.role_ref == b.role_ref
                    && a.subjects == b.subjects
            }
            _ => false,
        }
    }
}

/// One RBAC object found in a file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManifestObject {
    /// Identity.
    pub id: ObjId,
    /// File path (as given, or relative to the repository root).
    pub file: String,
    /// Document number in the file, counted from 1.
    pub document: usize,
    /// Item number in a `List`, counted from 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<usize>,
    /// Line (from 1) where the object starts, for editors and code-scanning UIs.
    pub line: usize,
    /// The object.
    #[serde(skip)]
    pub body: Body,
}

/// Why a file, or a document in it, was not read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "reason", content = "detail")]
pub enum Skip {
    /// Larger than [`MAX_FILE_BYTES`].
    TooLarge(usize),
    /// Holds NUL bytes.
    Binary,
    /// Not UTF-8.
    NotUtf8,
    /// A Helm template (`{{ ... }}`): not a manifest until rendered.
    HelmTemplate,
    /// A Kustomize `kustomization.yaml`.
    Kustomization,
    /// A Kustomize patch (`$patch`, or listed as a patch by a kustomization).
    KustomizePatch(String),
    /// Parsed, but holds nothing with a `kind`.
    NotKubernetes,
    /// Does not parse, or an RBAC object that is not usable (no name, ...).
    Invalid(String),
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::TooLarge(n) => write!(f, "too large ({n} bytes; limit {MAX_FILE_BYTES})"),
            Skip::Binary => f.write_str("binary file"),
            Skip::NotUtf8 => f.write_str("not UTF-8 text"),
            Skip::HelmTemplate => f.write_str("Helm template ({{ }}): render it first"),
            Skip::Kustomization => f.write_str("Kustomize kustomization file"),
            Skip::KustomizePatch(why) => write!(f, "Kustomize patch ({why})"),
            Skip::NotKubernetes => f.write_str("not a Kubernetes manifest (no kind)"),
            Skip::Invalid(m) => f.write_str(m),
        }
    }
}

impl Skip {
    /// A short stable name for counting (`helm-template`, `invalid`, ...).
    pub fn key(&self) -> &'static str {
        match self {
            Skip::TooLarge(_) => "too-large",
            Skip::Binary => "binary",
            Skip::NotUtf8 => "not-utf8",
            Skip::HelmTemplate => "helm-template",
            Skip::Kustomization => "kustomization",
            Skip::KustomizePatch(_) => "kustomize-patch",
            Skip::NotKubernetes => "not-kubernetes",
            Skip::Invalid(_) => "invalid",
        }
    }
}

/// What one file holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileReading {
    /// Its RBAC objects, in file order.
    pub objects: Vec<ManifestObject>,
    /// Documents that were skipped: (document number from 1, reason).
    pub skipped_documents: Vec<(usize, Skip)>,
    /// Objects of other kinds (Deployments, ServiceAccounts, ...): the file is a manifest.
    pub other_objects: usize,
    /// Set when nothing in the file could be used: the first reason.
    pub skipped: Option<Skip>,
    /// For a kustomization: the files (relative to its directory) it applies as patches.
    pub kustomize_patches: Vec<String>,
}

/// Whether a path names a file kubeward reads (`.yaml`, `.yml`, `.json`).
pub fn is_manifest_path(path: &str) -> bool {
    let lower = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    lower.ends_with(".yaml") || lower.ends_with(".yml") || lower.ends_with(".json")
}

fn is_kustomization(path: &str) -> bool {
    matches!(
        path.rsplit('/').next().unwrap_or(path),
        "kustomization.yaml" | "kustomization.yml" | "Kustomization"
    )
}

/// Reads one file's bytes. Never fails: whatever cannot be used is a [`Skip`].
pub fn read_file(path: &str, bytes: &[u8]) -> FileReading {
    let mut out = FileReading::default();
    if bytes.len() > MAX_FILE_BYTES {
        out.skipped = Some(Skip::TooLarge(bytes.len()));
        return out;
    }
    // Git's own heuristic: a NUL in the first 8000 bytes means binary.
    if bytes[..bytes.len().min(8000)].contains(&0) {
        out.skipped = Some(Skip::Binary);
        return out;
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        out.skipped = Some(Skip::NotUtf8);
        return out;
    };
    if is_kustomization(path) {
        out.kustomize_patches = kustomize_patch_paths(text);
        out.skipped = Some(Skip::Kustomization);
        return out;
    }
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        read_json(path, text, &mut out);
    } else {
        read_yaml(path, text, &mut out);
    }
    if out.objects.is_empty() && out.other_objects == 0 && out.skipped.is_none() {
        out.skipped = Some(
            out.skipped_documents
                .first()
                .map(|(_, s)| s.clone())
                .unwrap_or(Skip::NotKubernetes),
        );
    }
    out
}

/// Loader options for manifests: a namespaced object without a namespace gets it at deploy
/// time, so it is kept with an empty one instead of being refused.
fn load_options() -> LoadOptions {
    LoadOptions {
        default_namespace: Some(String::new()),
    }
}

fn read_json(path: &str, text: &str, out: &mut FileReading) {
    let mut snap = Snapshot::default();
    snap.load_text(path, text, &load_options());
    let lines: Vec<&str> = text.lines().collect();
    let n = lines.len();
    collect(&snap, path, &lines, &|_| (0, n), None, out);
}

fn read_yaml(path: &str, text: &str, out: &mut FileReading) {
    let lines: Vec<&str> = text.lines().collect();
    // Document boundaries the way `split_yaml` draws them, with the line each starts at, so
    // every object can be pointed at in the file.
    let mut starts = vec![0usize];
    for (i, l) in lines.iter().enumerate() {
        if *l == "---" || l.starts_with("--- ") || l.starts_with("---\t") {
            starts.push(i);
        }
    }
    let range = |d: usize| {
        (
            starts.get(d).copied().unwrap_or(0),
            starts.get(d + 1).copied().unwrap_or(lines.len()),
        )
    };
    // `{{` and `$patch` are only hints: either may sit in a comment or a quoted value of a
    // perfectly ordinary role (`# {{ not helm }}`, an annotation quoting a patch), and skipping
    // a file on a substring would let anyone hide a role from the scan with one comment.
    if !text.contains("{{") && !text.contains("$patch") {
        // Nothing to skip by document: one parse of the whole stream (the loader falls back
        // to document by document itself when a document is bad, and names it).
        let mut snap = Snapshot::default();
        snap.load_text(path, text, &load_options());
        collect(&snap, path, &lines, &range, None, out);
        return;
    }
    let docs = split_yaml(text);
    for (d, body) in docs.iter().enumerate() {
        let first = starts.get(d).copied().unwrap_or(0);
        let end = starts.get(d + 1).copied().unwrap_or(lines.len());
        if body.lines().all(|l| {
            let t = l.trim();
            t.is_empty() || t.starts_with('#') || t == "..."
        }) {
            continue;
        }
        if let Some(skip) = template_or_patch(body) {
            out.skipped_documents.push((d + 1, skip));
            continue;
        }
        let mut snap = Snapshot::default();
        snap.load_text(path, body, &load_options());
        collect(&snap, path, &lines, &|_| (first, end), Some(d), out);
    }
}

/// Whether a document is a Helm template or a Kustomize patch, judged on what it is rather than
/// on what its text mentions:
/// - a Helm template is a document that does not parse as YAML and has `{{` outside comments
///   (a template that happens to parse, its `{{ }}` all quoted, is read as the manifest it is:
///   its rules are literal, so what it grants is known);
/// - a Kustomize patch is a document that parses and has a `$patch` key in some mapping.
fn template_or_patch(body: &str) -> Option<Skip> {
    if !body.contains("{{") && !body.contains("$patch") {
        return None;
    }
    match parse_yaml_document(body) {
        Ok(v) if has_patch_key(&v) => Some(Skip::KustomizePatch("$patch directive".into())),
        Ok(_) => None,
        Err(_) if body.lines().any(|l| code_part(l).contains("{{")) => Some(Skip::HelmTemplate),
        // Not a template: the loader reports it as invalid YAML, with its message.
        Err(_) => None,
    }
}

/// Whether any mapping in `v`, at any depth, has a `$patch` key. A work list rather than
/// recursion: nesting depth is the input's to choose.
fn has_patch_key(v: &serde_json::Value) -> bool {
    let mut work = vec![v];
    while let Some(v) = work.pop() {
        match v {
            serde_json::Value::Object(m) => {
                if m.contains_key("$patch") {
                    return true;
                }
                work.extend(m.values());
            }
            serde_json::Value::Array(a) => work.extend(a),
            _ => {}
        }
    }
    false
}

/// A YAML line without its comment. A `#` starts a comment at the start of the line or after
/// whitespace, outside quotes; a quote opens a scalar only where a token can start (so the
/// apostrophe in `don't` opens nothing). Quoted scalars spanning lines are not followed: this
/// only decides whether a document that already failed to parse is a Helm template.
fn code_part(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut prev: Option<char> = None;
    let mut escaped = false;
    for (i, ch) in line.char_indices() {
        match quote {
            Some('"') if escaped => escaped = false,
            Some('"') if ch == '\\' => escaped = true,
            Some(q) if ch == q => quote = None,
            Some(_) => {}
            // `''` inside a single-quoted scalar is a quote, not its end.
            None if ch == '\'' && prev == Some('\'') => quote = Some('\''),
            None => {
                let token_start = prev.is_none_or(|p| p.is_whitespace() || "[{,:-".contains(p));
                if ch == '#' && prev.is_none_or(char::is_whitespace) {
                    return &line[..i];
                }
                if (ch == '"' || ch == '\'') && token_start {
                    quote = Some(ch);
                }
            }
        }
        prev = Some(ch);
    }
    line
}

/// Moves what `snap` holds into `out`. `doc` is the document index when `snap` holds one
/// document of the file, `None` when it holds the whole file (its own document numbers
/// count); `range` gives the lines `[first, end)` of a document by index.
fn collect(
    snap: &Snapshot,
    path: &str,
    lines: &[&str],
    range: &dyn Fn(usize) -> (usize, usize),
    doc: Option<usize>,
    out: &mut FileReading,
) {
    for e in &snap.errors {
        let (d, msg) = match e {
            LoadError::Document { origin, message } => (
                doc.unwrap_or_else(|| doc_of_origin(origin)),
                message.clone(),
            ),
            LoadError::Read { message, .. } => (doc.unwrap_or(0), message.clone()),
        };
        let skip = if msg == "no kind" {
            Skip::NotKubernetes
        } else {
            Skip::Invalid(msg)
        };
        out.skipped_documents.push((d + 1, skip));
    }
    out.other_objects += snap.skipped.values().sum::<usize>();
    let locate = |d: usize, name: &str, item: Option<usize>| {
        let (first, end) = range(d);
        let start_line = first_content_line(lines, first, end);
        match item {
            None => start_line,
            // A List's items all share one document: point at the item's own name.
            Some(_) => name_line(lines, first, end, name).unwrap_or(start_line),
        }
    };
    let mut push = |kind: Kind,
                    namespace: &Option<String>,
                    name: &str,
                    origin: &rbac::objects::Origin,
                    body| {
        let d = doc.unwrap_or(origin.document);
        out.objects.push(ManifestObject {
            id: ObjId {
                kind,
                namespace: namespace.clone().unwrap_or_default(),
                name: name.to_string(),
            },
            file: path.to_string(),
            document: d + 1,
            item: origin.item.map(|i| i + 1),
            line: locate(d, name, origin.item),
            body,
        });
    };
    for r in &snap.roles {
        let kind = match r.kind {
            rbac::RoleKind::ClusterRole => Kind::ClusterRole,
            rbac::RoleKind::Role => Kind::Role,
        };
        push(
            kind,
            &r.namespace,
            &r.name,
            &r.origin,
            Body::Role(r.clone()),
        );
    }
    for b in &snap.bindings {
        let kind = match b.kind {
            rbac::BindingKind::ClusterRoleBinding => Kind::ClusterRoleBinding,
            rbac::BindingKind::RoleBinding => Kind::RoleBinding,
        };
        push(
            kind,
            &b.namespace,
            &b.name,
            &b.origin,
            Body::Binding(b.clone()),
        );
    }
    // Keep file order (roles and bindings were collected separately).
    out.objects
        .sort_by_key(|o| (o.document, o.item.unwrap_or(0), o.line));
}

/// `file document N[ item M]` → N-1.
fn doc_of_origin(origin: &str) -> usize {
    origin
        .rsplit_once(" document ")
        .and_then(|(_, rest)| rest.split(' ').next())
        .and_then(|n| n.parse::<usize>().ok())
        .map_or(0, |n| n.saturating_sub(1))
}

/// The first line (from 1) of `lines[first..end]` that is not a separator, blank or comment.
fn first_content_line(lines: &[&str], first: usize, end: usize) -> usize {
    (first..end.min(lines.len()))
        .find(|&i| {
            let t = lines[i].trim();
            !(t.is_empty() || t.starts_with('#') || t.starts_with("---") || t == "...")
        })
        .map_or(first + 1, |i| i + 1)
}

/// The line (from 1) of `name: NAME` (YAML, quoted or not) or `"name": "NAME"` (JSON).
fn name_line(lines: &[&str], first: usize, end: usize, name: &str) -> Option<usize> {
    let json = format!("\"name\":{}", serde_json::Value::String(name.to_string()));
    (first..end.min(lines.len()))
        .find(|&i| {
            let compact: String = lines[i].chars().filter(|c| !c.is_whitespace()).collect();
            if compact.contains(&json) {
                return true;
            }
            let t = lines[i].trim().trim_start_matches("- ").trim();
            t.strip_prefix("name:")
                .map(|v| v.trim().trim_matches(['"', '\'']))
                == Some(name)
        })
        .map(|i| i + 1)
}

/// The files a kustomization applies as patches: `patchesStrategicMerge` entries and
/// `patches[].path` (`patchesJson6902[].path` too). Inline patches name no file.
fn kustomize_patch_paths(text: &str) -> Vec<String> {
    let Ok(v) = serde_saphyr_value(text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(list) = v.get("patchesStrategicMerge").and_then(|x| x.as_array()) {
        out.extend(
            list.iter()
                .filter_map(|x| x.as_str())
                .filter(|s| !s.contains('\n'))
                .map(str::to_string),
        );
    }
    for key in ["patches", "patchesJson6902"] {
        if let Some(list) = v.get(key).and_then(|x| x.as_array()) {
            out.extend(
                list.iter()
                    .filter_map(|x| x.get("path").and_then(|p| p.as_str()))
                    .map(str::to_string),
            );
        }
    }
    out
}

fn serde_saphyr_value(text: &str) -> Result<serde_json::Value, serde_saphyr::Error> {
    serde_saphyr::from_str::<serde_json::Value>(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_lines_and_skips() {
        let text = "\
# header
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: a
rules: []
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: sa}
---
kind: Role
metadata:
  name: r
  namespace: {{ .Release.Namespace }}
---
: : not yaml [
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: b
roleRef: {kind: Role, name: r, apiGroup: rbac.authorization.k8s.io}
";
        let r = read_file("x.yaml", text.as_bytes());
        assert_eq!(r.skipped, None);
        assert_eq!(r.other_objects, 1);
        let got: Vec<_> = r
            .objects
            .iter()
            .map(|o| (o.id.to_string(), o.document, o.line))
            .collect();
        assert_eq!(
            got,
            vec![
                ("ClusterRole a".to_string(), 1, 2),
                ("RoleBinding b".to_string(), 5, 19),
            ]
        );
        assert_eq!(r.skipped_documents[0], (3, Skip::HelmTemplate));
        assert_eq!(r.skipped_documents[1].0, 4);
        assert!(matches!(r.skipped_documents[1].1, Skip::Invalid(_)));
    }

    #[test]
    fn one_parse_for_the_whole_file_still_names_bad_documents() {
        let text = "kind: ClusterRole\nmetadata: {name: a}\n---\n: : [\n---\n# b\nkind: ClusterRole\nmetadata:\n  name: b\n";
        let r = read_file("f.yaml", text.as_bytes());
        let got: Vec<_> = r
            .objects
            .iter()
            .map(|o| (o.id.name.clone(), o.document, o.line))
            .collect();
        assert_eq!(got, vec![("a".to_string(), 1, 1), ("b".to_string(), 3, 7)]);
        assert_eq!(r.skipped_documents.len(), 1);
        assert_eq!(r.skipped_documents[0].0, 2);
        assert!(
            matches!(&r.skipped_documents[0].1, Skip::Invalid(m) if m.starts_with("invalid YAML"))
        );
    }

    #[test]
    fn whole_file_skips() {
        assert_eq!(read_file("a.yaml", b"\0\x01").skipped, Some(Skip::Binary));
        assert_eq!(
            read_file("a.yaml", b"\xff\xfe").skipped,
            Some(Skip::NotUtf8)
        );
        assert_eq!(
            read_file("ci.yml", b"on: push\njobs: {}\n").skipped,
            Some(Skip::NotKubernetes)
        );
        assert_eq!(
            read_file(
                "t.yaml",
                b"kind: Role\nmetadata:\n  name: {{ .Values.n }}\n"
            )
            .skipped,
            Some(Skip::HelmTemplate)
        );
        let k = read_file(
            "base/kustomization.yaml",
            b"resources: [a.yaml]\npatchesStrategicMerge: [p.yaml]\npatches:\n- path: q.yaml\n- patch: |-\n    x\n",
        );
        assert_eq!(k.skipped, Some(Skip::Kustomization));
        assert_eq!(k.kustomize_patches, vec!["p.yaml", "q.yaml"]);
        let big = vec![b' '; MAX_FILE_BYTES + 1];
        assert!(matches!(
            read_file("b.json", &big).skipped,
            Some(Skip::TooLarge(_))
        ));
    }

    const POD_WRITER: &str = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: sneaky\nrules:\n- {apiGroups: [''], resources: [pods], verbs: [create]}\n";

    fn names(r: &FileReading) -> Vec<String> {
        r.objects.iter().map(|o| o.id.name.clone()).collect()
    }

    #[test]
    fn template_and_patch_markers_in_comments_or_strings_do_not_skip() {
        for text in [
            format!("# {{{{ not helm }}}}\n{POD_WRITER}"),
            format!("# $patch: none\n{POD_WRITER}"),
            format!("{POD_WRITER}# trailing {{{{ x }}}} and $patch: delete\n"),
            POD_WRITER.replace(
                "  name: sneaky\n",
                "  name: sneaky\n  annotations:\n    a: \"{{ .Values.x }}\"\n    b: '$patch: delete'\n    c: \"see {\\\"$patch\\\": 1}\"\n",
            ),
            POD_WRITER.replace("name: sneaky", "name: sneaky  # {{ .Release.Name }}"),
        ] {
            let r = read_file("r.yaml", text.as_bytes());
            assert_eq!(names(&r), vec!["sneaky"], "{text}\n{r:#?}");
            assert_eq!(r.skipped, None, "{text}");
            assert!(r.skipped_documents.is_empty(), "{text}\n{r:#?}");
        }
        // A template whose only expression is quoted parses: its rules are literal, so it is
        // read (under the name it has before rendering) rather than skipped.
        let quoted = POD_WRITER.replace("name: sneaky", "name: \"{{ .Release.Name }}\"");
        let r = read_file("t.yaml", quoted.as_bytes());
        assert_eq!(names(&r), vec!["{{ .Release.Name }}"]);
        // Next to a real template, the role in the other document is still read.
        let two = format!("{POD_WRITER}---\n# {{{{ comment }}}}\nkind: Role\nmetadata:\n  name: {{{{ .Values.n }}}}\n");
        let r = read_file("r.yaml", two.as_bytes());
        assert_eq!(names(&r), vec!["sneaky"]);
        assert_eq!(r.skipped_documents, vec![(2, Skip::HelmTemplate)]);
    }

    #[test]
    fn kustomize_patches_are_found_by_key_at_any_depth() {
        let top = "kind: ClusterRole\nmetadata: {name: x}\n$patch: delete\n";
        let quoted = "kind: ClusterRole\nmetadata: {name: x}\n\"$patch\": delete\n";
        let nested = "kind: ClusterRole\nmetadata: {name: x}\nrules:\n- $patch: replace\n- {apiGroups: [''], resources: [pods], verbs: [create]}\n";
        for text in [top, quoted, nested] {
            let r = read_file("p.yaml", text.as_bytes());
            assert!(r.objects.is_empty(), "{text}");
            assert!(
                matches!(r.skipped, Some(Skip::KustomizePatch(_))),
                "{text}: {r:#?}"
            );
        }
    }

    #[test]
    fn a_broken_document_with_braces_only_in_comments_is_invalid_not_helm() {
        let r = read_file(
            "b.yaml",
            b"# {{ x }}\nkind: ClusterRole\nmetadata: {name: x\n",
        );
        assert!(matches!(r.skipped, Some(Skip::Invalid(_))), "{r:#?}");
    }

    #[test]
    fn comments_are_cut_outside_quotes_only() {
        assert_eq!(code_part("a: b # c"), "a: b ");
        assert_eq!(code_part("# {{ x }}"), "");
        assert_eq!(code_part("a: \"b # c\" # d"), "a: \"b # c\" ");
        assert_eq!(code_part("a: 'it''s # no' #x"), "a: 'it''s # no' ");
        assert_eq!(code_part("a: b#c"), "a: b#c");
        assert_eq!(code_part("a: don't # c"), "a: don't ");
        assert_eq!(code_part("a: \"x\\\" # y\" # z"), "a: \"x\\\" # y\" ");
        assert_eq!(code_part("name: {{ .X }} # c"), "name: {{ .X }} ");
    }

    #[test]
    fn json_list_items_point_at_their_names() {
        let text = r#"{"kind":"List","items":[
  {"kind":"ClusterRole","metadata":{"name":"one"},"rules":[]},
  {"kind":"ClusterRole","metadata":{
     "name": "two"},"rules":[]}
]}"#;
        let r = read_file("l.json", text.as_bytes());
        let got: Vec<_> = r
            .objects
            .iter()
            .map(|o| (o.id.name.clone(), o.item, o.line))
            .collect();
        assert_eq!(
            got,
            vec![
                ("one".to_string(), Some(1), 2),
                ("two".to_string(), Some(2), 4)
            ]
        );
    }
}
