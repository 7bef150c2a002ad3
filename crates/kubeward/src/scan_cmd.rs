//! `kubeward scan`: the pod-write roles and their bindings in a working tree, for CI.

use crate::cli::{ScanArgs, ScanFormat};
use crate::print::{escape_controls as c, grant_words};
use anyhow::{bail, Context, Result};
use manifest::{read_file, Evaluator, Finding, ManifestSet, MAX_FILE_BYTES};
use rbac::{KubeVersion, PodWriteOptions};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

pub const ABOUT: &str = "\
Read Kubernetes manifests in a working tree and list every ClusterRole and Role that grants
write on pods (create, modify, delete, exec, attach, debug, port-forward, proxy, evict, bind
pods), and every ClusterRoleBinding and RoleBinding of such a role, with file and line.

The judgement is the one `kubeward detect` and `kubeward git` use. Aggregating ClusterRoles
are resolved from their selectors (with Kubernetes' own admin, edit and view when the tree does
not define them), so a labelled role that feeds edit says so, and a binding of edit, admin or
cluster-admin is a binding of a pod-write role even though no manifest defines them.

Files: .yaml, .yml and .json, multi-document YAML, JSON, List kinds. Helm templates ({{ }}),
Kustomize patches and kustomizations, files that are not Kubernetes manifests or do not parse,
binary and huge files are skipped and counted (--verbose lists each with its reason).

For CI: --exit-code N fails the job when something is found; --format sarif gives SARIF 2.1.0
for code-scanning UIs (each result on the manifest line); a baseline accepts today's roles so
that only new ones (or ones granting more, or bound to more subjects) fail.";

pub const AFTER: &str = "\
Examples:
  kubeward scan deploy/                                  # text: FILE:LINE: what it grants
  kubeward scan . --format json | jq -r 'select(.rule_id == \"pod-write-binding\") | .subjects[].name'
  kubeward scan . --format sarif > kubeward.sarif        # upload with github/codeql-action/upload-sarif
  kubeward scan . --write-baseline .kubeward-baseline.json   # accept what is there today
  kubeward scan . --baseline .kubeward-baseline.json --exit-code 1   # fail only on new grants

JSON fields: rule_id (pod-write-role, pod-write-binding), file, document, line, kind,
namespaced, namespace, name, role, role_kind, role_source (manifest, kubernetes-bootstrap),
grants (each: capability, capability_id, verbs, resources, resource_names, rules), subjects,
aggregated_from, aggregated_into.

Exit status: 0, or N with --exit-code N when a finding is reported; 2 on an error (a missing
PATH, an unreadable baseline).";

/// What a baseline records of one finding: enough to tell whether today's grants more.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct BaselineEntry {
    kind: String,
    namespace: String,
    name: String,
    role: String,
    capabilities: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    subjects: BTreeSet<String>,
    /// Where the definition was: when an object is defined in several files (`envs/dev/`,
    /// `envs/prod/`), each copy is held to its own entry. Not part of the identity: a copy
    /// whose file moved is held to any entry of its object. (Absent in older baselines.)
    #[serde(default, skip_serializing_if = "String::is_empty")]
    file: String,
}

/// Baseline entries by object identity (kind, namespace, name). Every entry is kept: one
/// object may be defined in several files with different rules, and a baseline written from a
/// tree must accept that same tree.
type BaselineIndex = BTreeMap<(String, String, String), Vec<BaselineEntry>>;

#[derive(Debug, Serialize, Deserialize)]
struct Baseline {
    kubeward_baseline: u32,
    findings: Vec<BaselineEntry>,
}

fn entry(f: &Finding) -> BaselineEntry {
    BaselineEntry {
        kind: f.kind.to_string(),
        namespace: f.namespace.clone(),
        name: f.name.clone(),
        role: f.role.clone(),
        capabilities: grant_keys(f),
        subjects: f.subjects.iter().map(|s| s.to_string()).collect(),
        file: f.file.clone(),
    }
}

/// A grant as the baseline compares it: the capability, and the pods it is limited to.
fn grant_keys(f: &Finding) -> BTreeSet<String> {
    f.grants
        .iter()
        .map(|g| {
            if g.resource_names.is_empty() {
                g.capability_id.clone()
            } else {
                format!("{} [{}]", g.capability_id, g.resource_names.join(","))
            }
        })
        .collect()
}

/// Whether the baseline accepts `f`: same object, same role, nothing granted and nobody bound
/// beyond what was recorded. A definition is compared with the entries recorded for its own
/// file when there are any (so the narrower of two copies cannot grow into the wider one
/// unnoticed), and with every entry of its object when its file is new (a moved manifest).
fn accepted(f: &Finding, base: &BaselineIndex) -> bool {
    let e = entry(f);
    let Some(recorded) = base.get(&(e.kind.clone(), e.namespace.clone(), e.name.clone())) else {
        return false;
    };
    let covers = |b: &BaselineEntry| {
        b.role == e.role
            && e.capabilities.is_subset(&b.capabilities)
            && e.subjects.is_subset(&b.subjects)
    };
    if recorded.iter().any(|b| b.file == e.file) {
        recorded.iter().filter(|b| b.file == e.file).any(covers)
    } else {
        recorded.iter().any(covers)
    }
}

pub fn run(args: ScanArgs) -> Result<u8> {
    let kube_version = match &args.kube_version {
        Some(v) => Some(
            KubeVersion::parse(v)
                .with_context(|| format!("--kube-version {v:?} is not a Kubernetes version"))?,
        ),
        None => None,
    };
    let mut files = Vec::new();
    for p in &args.paths {
        if !p.exists() {
            bail!("{}: no such file or directory", p.display());
        }
        collect(p, true, &mut files)?;
    }
    let mut set = ManifestSet::new();
    let mut read_errors = Vec::new();
    for f in &files {
        let name = display_path(f);
        match read_limited(f) {
            Ok(bytes) => {
                set.set_file(&name, read_file(&name, &bytes));
            }
            Err(e) => read_errors.push(format!("{name}: {e}")),
        }
    }
    let eval = Evaluator::new(PodWriteOptions::for_version(kube_version));
    let findings = eval.scan(&set);

    if let Some(path) = &args.write_baseline {
        let b = Baseline {
            kubeward_baseline: 1,
            findings: findings.iter().map(entry).collect(),
        };
        let mut text = serde_json::to_string_pretty(&b)?;
        text.push('\n');
        std::fs::write(path, text)
            .with_context(|| format!("writing the baseline {}", path.display()))?;
        summary(&set, &files, &findings, None, &read_errors, args.verbose);
        eprintln!(
            "kubeward: wrote {} findings to the baseline {}",
            findings.len(),
            path.display()
        );
        return Ok(0);
    }
    let (report, baseline_note): (Vec<&Finding>, Option<usize>) = match &args.baseline {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the baseline {}", path.display()))?;
            let b: Baseline = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{}: not a kubeward baseline (write one with --write-baseline)",
                    path.display()
                )
            })?;
            let mut base = BaselineIndex::new();
            for e in b.findings {
                base.entry((e.kind.clone(), e.namespace.clone(), e.name.clone()))
                    .or_default()
                    .push(e);
            }
            let new: Vec<&Finding> = findings.iter().filter(|f| !accepted(f, &base)).collect();
            let accepted_n = findings.len() - new.len();
            (new, Some(accepted_n))
        }
        None => (findings.iter().collect(), None),
    };

    let format = args.format.unwrap_or(if io::stdout().is_terminal() {
        ScanFormat::Text
    } else {
        ScanFormat::Json
    });
    let out = io::stdout();
    let mut out = io::BufWriter::new(out.lock());
    match format {
        ScanFormat::Json => {
            for f in &report {
                serde_json::to_writer(&mut out, f)?;
                out.write_all(b"\n")?;
            }
        }
        ScanFormat::Text => {
            for f in &report {
                writeln!(out, "{}", text_line(f))?;
            }
        }
        ScanFormat::Sarif => {
            serde_json::to_writer(&mut out, &sarif(&report))?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    summary(
        &set,
        &files,
        &findings,
        baseline_note,
        &read_errors,
        args.verbose,
    );
    Ok(match args.exit_code {
        Some(n) if !report.is_empty() => n,
        _ => 0,
    })
}

/// Files under `p` (itself when a file given by name), sorted; `.git` is never entered.
/// Below a named PATH, symlinked directories are not followed (a link to `..` would never
/// end) and only regular files are read (a FIFO named `x.yaml` would block the scan).
fn collect(p: &Path, named: bool, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta = if named {
        std::fs::metadata(p)
    } else {
        std::fs::symlink_metadata(p)
    }
    .with_context(|| format!("{}", p.display()))?;
    let meta = if meta.file_type().is_symlink() {
        match std::fs::metadata(p) {
            Ok(m) if m.is_file() => m,
            _ => return Ok(()),
        }
    } else {
        meta
    };
    if meta.is_dir() {
        if !named && p.file_name().is_some_and(|n| n == ".git") {
            return Ok(());
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
            .with_context(|| format!("{}", p.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            // An unreadable entry is not worth failing the scan for.
            let _ = collect(&e, false, out);
        }
    } else if named || (meta.is_file() && manifest::is_manifest_path(&p.to_string_lossy())) {
        out.push(p.to_path_buf());
    }
    Ok(())
}

/// A path as shown and as a SARIF URI: `/` separators, no leading `./`.
fn display_path(p: &Path) -> String {
    let s = p.to_string_lossy().replace('\\', "/");
    s.strip_prefix("./").map(str::to_string).unwrap_or(s)
}

/// Reads at most one byte more than the limit: a huge file is skipped without being loaded.
fn read_limited(p: &Path) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::fs::File::open(p)?
        .take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

fn text_line(f: &Finding) -> String {
    let ns = if f.namespace.is_empty() {
        String::new()
    } else {
        format!("{}/", c(&f.namespace))
    };
    let what = if f.kind.is_role() {
        let mut s = format!("{} {ns}{} grants pod write", f.kind, c(&f.name));
        if !f.aggregated_into.is_empty() {
            s.push_str(&format!(
                " and is aggregated into {}",
                c(&f.aggregated_into.join(", "))
            ));
        }
        s
    } else {
        let subjects: Vec<String> = f.subjects.iter().map(|s| c(&s.to_string())).collect();
        format!(
            "{} {ns}{} binds {} {}{} (pod write) to {}",
            f.kind,
            c(&f.name),
            c(&f.role_kind),
            c(&f.role),
            if f.role_source == "manifest" {
                ""
            } else {
                ", Kubernetes bootstrap role"
            },
            if subjects.is_empty() {
                "no subjects".to_string()
            } else {
                subjects.join(", ")
            }
        )
    };
    format!(
        "{}:{}: {what}: {}",
        c(&f.file),
        f.line,
        grant_words(&f.grants)
    )
}

/// Whether a finding lets its holders run code in pods without a name restriction (an error
/// in SARIF terms); the rest (delete, evict, status, named pods) is a warning.
fn runs_code(f: &Finding) -> bool {
    f.grants.iter().any(|g| {
        g.resource_names.is_empty()
            && matches!(
                g.capability_id.as_str(),
                "create-pods"
                    | "modify-pods"
                    | "exec"
                    | "attach"
                    | "debug-containers"
                    | "port-forward"
                    | "proxy"
            )
    })
}

/// A SARIF `artifactLocation` for a file as the scan names it. A relative path stays a
/// relative URI reference, resolved against `%SRCROOT%` (the directory the scan ran in, which
/// code-scanning uploads map to the checkout); an absolute path becomes a `file://` URI. SARIF
/// requires URIs, and a file name is not one: a space is not allowed, `#` would start a
/// fragment and `?` a query, `%` an escape, and `:` in a first segment a scheme. So every byte
/// outside RFC 3986's unreserved set and `/` is percent-encoded (UTF-8 bytes included).
fn artifact_location(file: &str) -> serde_json::Value {
    let b = file.as_bytes();
    if let Some(rest) = file.strip_prefix("//") {
        // A UNC path (`\\server\share`, shown with `/`): the server is the URI's authority.
        json!({"uri": format!("file://{}", percent_encode_path(rest))})
    } else if let Some(rest) = file.strip_prefix('/') {
        json!({"uri": format!("file:///{}", percent_encode_path(rest))})
    } else if b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'/' {
        // A Windows drive path: the drive's colon is part of the path, not a scheme.
        json!({"uri": format!("file:///{}{}", &file[..2], percent_encode_path(&file[2..]))})
    } else {
        json!({"uri": percent_encode_path(file), "uriBaseId": "%SRCROOT%"})
    }
}

/// Percent-encodes a path for a URI: unreserved characters and `/` stay as they are.
fn percent_encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for &byte in path.as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn sarif(findings: &[&Finding]) -> serde_json::Value {
    let rules = json!([
        {
            "id": "pod-write-role",
            "name": "PodWriteRole",
            "shortDescription": {"text": "Role grants write on pods"},
            "fullDescription": {"text": "A ClusterRole or Role grants write on pods (create, modify, delete, exec, attach, debug, port-forward, proxy, evict or bind pods). Whoever holds it can run any image under any service account in its scope, or get a shell in running workloads."},
            "help": {"text": "Grant only the verbs and subresources the workload needs, restrict with resourceNames where possible, and prefer namespaced Roles. Check who is bound: kubeward rbac pod-writers."},
            "defaultConfiguration": {"level": "error"},
            "properties": {"tags": ["security", "kubernetes", "rbac"]}
        },
        {
            "id": "pod-write-binding",
            "name": "PodWriteBinding",
            "shortDescription": {"text": "Binding hands out write on pods"},
            "fullDescription": {"text": "A ClusterRoleBinding or RoleBinding gives a role that grants write on pods to its subjects."},
            "help": {"text": "Bind the narrowest role that does the job, to the fewest subjects, in one namespace (a RoleBinding) rather than cluster-wide."},
            "defaultConfiguration": {"level": "error"},
            "properties": {"tags": ["security", "kubernetes", "rbac"]}
        }
    ]);
    let results: Vec<serde_json::Value> = findings
        .iter()
        .map(|f| {
            let line = text_line(f);
            // The message without the location prefix, which SARIF carries separately.
            let message = line
                .split_once(": ")
                .map_or(line.as_str(), |(_, m)| m)
                .to_string();
            json!({
                "ruleId": f.rule_id,
                "ruleIndex": if f.rule_id == "pod-write-role" { 0 } else { 1 },
                "level": if runs_code(f) { "error" } else { "warning" },
                "message": {"text": message},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": artifact_location(&f.file),
                        "region": {"startLine": f.line}
                    },
                    "logicalLocations": [{
                        "name": f.name,
                        "fullyQualifiedName": f.key(),
                        "kind": "object"
                    }]
                }],
                "partialFingerprints": {"kubewardObject/v1": f.key()},
                "properties": {
                    "kind": f.kind.as_str(),
                    "namespace": f.namespace,
                    "role": f.role,
                    "capabilities": f.grants.iter().map(|g| g.capability_id.clone()).collect::<Vec<_>>()
                }
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "kubeward",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules
            }},
            "columnKind": "unicodeCodePoints",
            "results": results
        }]
    })
}

fn summary(
    set: &ManifestSet,
    files: &[PathBuf],
    findings: &[Finding],
    accepted: Option<usize>,
    read_errors: &[String],
    verbose: bool,
) {
    let mut err = io::stderr().lock();
    for e in read_errors {
        let _ = writeln!(err, "kubeward: {}", c(e));
    }
    let skipped = set.skipped_files();
    let docs = set.skipped_documents();
    if verbose {
        for (p, why) in &skipped {
            let _ = writeln!(err, "kubeward: skipped {}: {why}", c(p));
        }
        for (p, d, why) in &docs {
            let _ = writeln!(err, "kubeward: skipped {} document {d}: {why}", c(p));
        }
    }
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, s) in &skipped {
        *by.entry(s.key()).or_default() += 1;
    }
    let by: Vec<String> = by.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let roles = findings.iter().filter(|f| f.kind.is_role()).count();
    let _ = writeln!(
        err,
        "kubeward: {} files read, {} skipped{}{}, {} documents skipped; {} roles grant pod write, {} bindings of them{}",
        files.len(),
        skipped.len(),
        if by.is_empty() { "" } else { ": " },
        by.join(", "),
        docs.len(),
        roles,
        findings.len() - roles,
        match accepted {
            Some(n) => format!(
                "; {n} accepted by the baseline, {} new",
                findings.len() - n
            ),
            None => String::new(),
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sarif_uris_are_percent_encoded_references() {
        assert_eq!(
            artifact_location("deploy/my role #1 100%.yaml"),
            json!({"uri": "deploy/my%20role%20%231%20100%25.yaml", "uriBaseId": "%SRCROOT%"})
        );
        assert_eq!(
            artifact_location("a:b/r?.yaml"),
            json!({"uri": "a%3Ab/r%3F.yaml", "uriBaseId": "%SRCROOT%"})
        );
        assert_eq!(
            artifact_location("../infra/rôle.yaml"),
            json!({"uri": "../infra/r%C3%B4le.yaml", "uriBaseId": "%SRCROOT%"})
        );
        assert_eq!(
            artifact_location("/tmp/a b/x#.yaml"),
            json!({"uri": "file:///tmp/a%20b/x%23.yaml"})
        );
        assert_eq!(
            artifact_location("C:/repo/a b.yaml"),
            json!({"uri": "file:///C:/repo/a%20b.yaml"})
        );
        assert_eq!(
            artifact_location("//server/share/r.yaml"),
            json!({"uri": "file://server/share/r.yaml"})
        );
    }
}
