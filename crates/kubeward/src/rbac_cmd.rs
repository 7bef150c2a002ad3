//! `kubeward rbac`: questions to an RBAC snapshot.

use crate::cli::{RbacArgs, RbacCommand, RbacFormat, SnapshotArgs, SnapshotOpts};
use anyhow::{bail, Context, Result};
use rbac::model::{is_cluster_scoped, AdminPath, Grantee, Identity, IdentityRules, ADMIN_PATHS};
use rbac::{
    role_pod_write, KubeVersion, LoadOptions, Model, PodWriteOptions, PodWriter, Question, Scope,
    Snapshot,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;

pub fn run(args: RbacArgs) -> Result<u8> {
    let out = io::stdout();
    let mut out = io::BufWriter::new(out.lock());
    match args.command {
        RbacCommand::PodWriters { snap, format } => {
            let (s, opts) = load(&snap)?;
            let m = model(&s, &snap.opts);
            let writers = m.pod_writers(opts);
            match format {
                RbacFormat::Json => json_lines(&mut out, &writers)?,
                RbacFormat::Text => pod_writers_text(&mut out, &writers)?,
                RbacFormat::Dot => pod_writers_dot(&mut out, &writers)?,
            }
        }
        RbacCommand::WhoCan {
            args: positional,
            url,
            api_group,
            namespace,
            all_namespaces,
            name,
            opts,
            format,
        } => {
            let mut it = positional.into_iter();
            let verb = it.next().context("who-can needs a VERB")?;
            let (resource, subresource) = if url.is_some() {
                (String::new(), String::new())
            } else {
                let r = it
                    .next()
                    .context("who-can needs RESOURCE[/SUBRESOURCE] (or --url PATH)")?;
                match r.split_once('/') {
                    Some((a, b)) => (a.to_string(), b.to_string()),
                    None => (r, String::new()),
                }
            };
            let sargs = SnapshotArgs {
                paths: it.map(PathBuf::from).collect(),
                opts,
            };
            let (s, _) = load(&sargs)?;
            let m = model(&s, &sargs.opts);
            let scope = match (&namespace, all_namespaces) {
                (Some(_), true) => bail!("give either -n NAMESPACE or --all-namespaces, not both"),
                (Some(ns), false) => Scope::Namespace(ns.clone()),
                _ if url.is_some() || is_cluster_scoped(&verb, &resource) => Scope::Cluster,
                _ => Scope::AllNamespaces,
            };
            let q = Question {
                verb,
                api_group: api_group.unwrap_or_default(),
                resource,
                subresource,
                name: name.unwrap_or_default(),
                url,
                scope,
            };
            let who = m.who_can(&q);
            match format {
                RbacFormat::Json => json_lines(&mut out, &who)?,
                RbacFormat::Text => who_can_text(&mut out, &q, &who)?,
                RbacFormat::Dot => who_can_dot(&mut out, &who)?,
            }
        }
        RbacCommand::RoleAdmins { snap, format } => {
            let (s, _) = load(&snap)?;
            let m = model(&s, &snap.opts);
            let rows = role_admins(&m);
            match format {
                RbacFormat::Json => json_lines(&mut out, &rows)?,
                RbacFormat::Text => role_admins_text(&mut out, &rows)?,
                RbacFormat::Dot => bail!("--format dot is available for pod-writers and who-can"),
            }
        }
        RbacCommand::Check {
            snap,
            r#as,
            as_group,
            format,
        } => {
            let (s, opts) = load(&snap)?;
            let m = model(&s, &snap.opts);
            let id = Identity::new(&r#as, &as_group);
            let rules = m.rules_for(&id);
            let report = check_report(&id, &rules, opts);
            match format {
                RbacFormat::Json => json_lines(&mut out, std::slice::from_ref(&report))?,
                RbacFormat::Text => check_text(&mut out, &report)?,
                RbacFormat::Dot => bail!("--format dot is available for pod-writers and who-can"),
            }
        }
    }
    out.flush()?;
    Ok(0)
}

fn load(a: &SnapshotArgs) -> Result<(Snapshot, PodWriteOptions)> {
    if a.opts.live && !a.paths.is_empty() {
        bail!("give SNAPSHOT paths or --live, not both");
    }
    if a.paths.is_empty() && !a.opts.live {
        bail!("give at least one SNAPSHOT file or directory (e.g. the output of `kubectl get clusterroles,clusterrolebindings,roles,rolebindings -A -o yaml`), or --live");
    }
    let o = &a.opts;
    let kube_version = match &o.kube_version {
        Some(v) => Some(
            KubeVersion::parse(v)
                .with_context(|| format!("--kube-version {v:?} is not a Kubernetes version"))?,
        ),
        None => None,
    };
    for p in &a.paths {
        if !p.exists() {
            bail!("{}: no such file or directory", p.display());
        }
    }
    let s = if o.live {
        cluster::load_live(&cluster::LiveOptions {
            kubeconfig: o.kubeconfig.clone(),
            context: o.context.clone(),
            ..Default::default()
        })?
    } else {
        Snapshot::load(
            &a.paths,
            &LoadOptions {
                default_namespace: o.default_namespace.clone(),
            },
        )
    };
    let mut err = io::stderr().lock();
    for e in &s.errors {
        let _ = writeln!(err, "kubeward: {e}");
    }
    Ok((s, PodWriteOptions::for_version(kube_version)))
}

/// Builds the model, then names its latent bindings and prints the summary line on stderr
/// (unless --quiet).
fn model<'s>(s: &'s Snapshot, o: &SnapshotOpts) -> Model<'s> {
    let m = Model::new(s);
    let mut err = io::stderr().lock();
    let defaulted = s.roles.iter().filter(|r| r.defaulted_namespace).count()
        + s.bindings.iter().filter(|b| b.defaulted_namespace).count();
    if !o.quiet {
        report_latent(&m, &mut err);
        let skipped: usize = s.skipped.values().sum();
        let kinds = s
            .skipped
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            err,
            "kubeward: loaded {} roles and {} bindings from {}; {skipped} other objects skipped{}{}{}",
            s.roles.len(),
            s.bindings.len(),
            if o.live { "the cluster".to_string() } else { format!("{} files", s.files) },
            if kinds.is_empty() { String::new() } else { format!(" ({kinds})") },
            if defaulted > 0 {
                format!("; {defaulted} namespaced objects without a namespace put in {:?} (--default-namespace)", o.default_namespace.as_deref().unwrap_or(""))
            } else {
                String::new()
            },
            if s.errors.is_empty() { String::new() } else { format!("; {} documents could not be read", s.errors.len()) }
        );
    }
    m
}

/// Bindings to roles that do not exist grant nothing yet, and start granting the moment the
/// role is created: each is named on stderr.
fn report_latent(m: &Model, err: &mut impl Write) {
    for b in m.latent_bindings() {
        let at = b
            .namespace
            .as_ref()
            .map(|ns| format!("{ns}/"))
            .unwrap_or_default();
        let subjects: Vec<String> = b.subjects.iter().map(|s| s.to_string()).collect();
        let _ = writeln!(
            err,
            "kubeward: latent binding: {} {at}{} → {} {} does not exist; it grants nothing until that role is created, then {} get it",
            b.kind,
            b.name,
            b.role_ref.kind,
            b.role_ref.name,
            if subjects.is_empty() { "nobody would".to_string() } else { subjects.join(", ") + " would" }
        );
    }
}

fn json_lines<T: Serialize>(out: &mut impl Write, items: &[T]) -> Result<()> {
    for i in items {
        serde_json::to_writer(&mut *out, i)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// `KIND NAME` or `KIND NS/NAME`: how roles and subjects are named in text and graphs.
fn label(kind: &impl std::fmt::Display, name: &str, ns: Option<&str>) -> String {
    match ns {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// (capability words, resource names, source role).
type GrantKey = (String, Vec<String>, String);

fn pod_writers_text(out: &mut impl Write, writers: &[PodWriter]) -> Result<()> {
    writeln!(out, "{} roles grant write on pods", writers.len())?;
    for w in writers {
        writeln!(out)?;
        let agg = if w.aggregated_from.is_empty() {
            String::new()
        } else {
            format!("  (aggregates {})", w.aggregated_from.join(", "))
        };
        writeln!(
            out,
            "{}{agg}",
            label(&w.kind, &w.name, w.namespace.as_deref())
        )?;
        // One line per capability and source: verbs and resources folded together.
        let mut lines: BTreeMap<GrantKey, (Vec<&str>, Vec<String>)> = BTreeMap::new();
        for g in &w.grants {
            let e = lines
                .entry((
                    g.words.clone(),
                    g.grant.resource_names.clone(),
                    g.from_role.clone(),
                ))
                .or_default();
            if !e.0.contains(&g.grant.verb) {
                e.0.push(g.grant.verb);
            }
            if !e.1.contains(&g.grant.resource) {
                e.1.push(g.grant.resource.clone());
            }
        }
        for ((words, names, from), (verbs, res)) in lines {
            let only = if names.is_empty() {
                String::new()
            } else {
                format!(", only pods named {}", names.join(", "))
            };
            let src = if from == "own rule" {
                String::new()
            } else {
                format!(", from {from}")
            };
            writeln!(
                out,
                "  - {words}: {} on {}{only}{src}",
                verbs.join(","),
                res.join(",")
            )?;
        }
        if w.bound_subjects.is_empty() {
            writeln!(out, "  bound to: nobody")?;
        } else {
            writeln!(out, "  bound to:")?;
            for b in &w.bound_subjects {
                let subj = label(&b.kind, &b.name, b.namespace.as_deref());
                let scope = match &b.scope_namespace {
                    Some(ns) => format!("in namespace {ns}"),
                    None => "cluster-wide".into(),
                };
                let note = b
                    .note
                    .as_ref()
                    .map(|n| format!("  [{n}]"))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "    - {subj} via {} {} ({scope}){note}",
                    b.binding_kind, b.binding
                )?;
            }
        }
        for n in &w.notes {
            writeln!(out, "  note: {n}")?;
        }
    }
    Ok(())
}

fn dot_id(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn pod_writers_dot(out: &mut impl Write, writers: &[PodWriter]) -> Result<()> {
    writeln!(
        out,
        "digraph pod_writers {{\n  rankdir=LR;\n  node [shape=box];"
    )?;
    for w in writers {
        let role = label(&w.kind, &w.name, w.namespace.as_deref());
        writeln!(
            out,
            "  {} [style=filled, fillcolor=\"#f4cccc\"];",
            dot_id(&role)
        )?;
        for a in &w.aggregated_from {
            writeln!(
                out,
                "  {} -> {} [style=dashed, label=\"aggregated\"];",
                dot_id(&format!("ClusterRole {a}")),
                dot_id(&role)
            )?;
        }
        for b in &w.bound_subjects {
            let subj = label(&b.kind, &b.name, b.namespace.as_deref());
            writeln!(out, "  {} [shape=ellipse];", dot_id(&subj))?;
            writeln!(
                out,
                "  {} -> {} [label={}];",
                dot_id(&subj),
                dot_id(&role),
                dot_id(&format!("{} {}", b.binding_kind, b.binding))
            )?;
        }
    }
    writeln!(out, "}}")?;
    Ok(())
}

fn subject_label(g: &Grantee) -> String {
    label(&g.kind, &g.name, g.namespace.as_deref())
}

fn who_can_text(out: &mut impl Write, q: &Question, who: &[Grantee]) -> Result<()> {
    let what = match &q.url {
        Some(u) => format!("{} {u}", q.verb),
        None => {
            let res = if q.subresource.is_empty() {
                q.resource.clone()
            } else {
                format!("{}/{}", q.resource, q.subresource)
            };
            let group = if q.api_group.is_empty() {
                String::new()
            } else {
                format!(".{}", q.api_group)
            };
            let name = if q.name.is_empty() {
                String::new()
            } else {
                format!(" {}", q.name)
            };
            format!("{} {res}{group}{name}", q.verb)
        }
    };
    let scope = match &q.scope {
        Scope::Cluster => "cluster-wide".to_string(),
        Scope::Namespace(ns) => format!("in namespace {ns}"),
        Scope::AllNamespaces => "in any namespace".to_string(),
    };
    writeln!(out, "who can {what} ({scope}): {} subjects", who.len())?;
    for g in who {
        let note = g
            .note
            .as_ref()
            .map(|n| format!("  [{n}]"))
            .unwrap_or_default();
        writeln!(out, "{}{note}", subject_label(g))?;
        for v in &g.via {
            if v.binding_kind == "PrivilegedGroup" {
                writeln!(
                    out,
                    "    bypasses RBAC (the API server allows system:masters everything)"
                )?;
                continue;
            }
            let scope = v
                .namespace
                .as_ref()
                .map_or("cluster-wide".to_string(), |ns| {
                    format!("in namespace {ns}")
                });
            let only = if v.only_names.is_empty() {
                String::new()
            } else {
                format!(", only {}", v.only_names.join(", "))
            };
            writeln!(
                out,
                "    via {} {} → {} {} ({scope}{only})",
                v.binding_kind, v.binding, v.role_kind, v.role
            )?;
        }
    }
    Ok(())
}

fn who_can_dot(out: &mut impl Write, who: &[Grantee]) -> Result<()> {
    writeln!(
        out,
        "digraph who_can {{\n  rankdir=LR;\n  node [shape=box];"
    )?;
    for g in who {
        let s = subject_label(g);
        writeln!(out, "  {} [shape=ellipse];", dot_id(&s))?;
        for v in &g.via {
            if v.binding_kind == "PrivilegedGroup" {
                continue;
            }
            let role = format!("{} {}", v.role_kind, v.role);
            writeln!(
                out,
                "  {} -> {} [label={}];",
                dot_id(&s),
                dot_id(&role),
                dot_id(&format!("{} {}", v.binding_kind, v.binding))
            )?;
        }
    }
    writeln!(out, "}}")?;
    Ok(())
}

/// One subject on one path to granting pod write.
#[derive(Serialize)]
struct AdminRow {
    path: &'static str,
    explain: &'static str,
    kind: String,
    name: String,
    namespace: Option<String>,
    via: Vec<rbac::Via>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

fn role_admins(m: &Model) -> Vec<AdminRow> {
    let mut rows = Vec::new();
    for p in ADMIN_PATHS {
        let q = question(p);
        for g in m.who_can(&q) {
            rows.push(AdminRow {
                path: p.id,
                explain: p.explain,
                kind: g.kind,
                name: g.name,
                namespace: g.namespace,
                via: g.via,
                note: g.note,
            });
        }
    }
    rows
}

fn question(p: &AdminPath) -> Question {
    Question {
        verb: p.verb.into(),
        api_group: p.api_group.into(),
        resource: p.resource.into(),
        subresource: String::new(),
        name: String::new(),
        url: None,
        scope: if p.namespaced {
            Scope::AllNamespaces
        } else {
            Scope::Cluster
        },
    }
}

fn role_admins_text(out: &mut impl Write, rows: &[AdminRow]) -> Result<()> {
    let mut last = "";
    for r in rows {
        if r.path != last {
            writeln!(out, "\n{} — {}", r.path, r.explain)?;
            last = r.path;
        }
        let subj = label(&r.kind, &r.name, r.namespace.as_deref());
        let via: Vec<String> = r
            .via
            .iter()
            .map(|v| {
                if v.binding_kind == "PrivilegedGroup" {
                    "bypasses RBAC".to_string()
                } else {
                    let scope = v
                        .namespace
                        .as_ref()
                        .map_or(String::new(), |ns| format!(" in {ns}"));
                    format!(
                        "{} {} → {} {}{scope}",
                        v.binding_kind, v.binding, v.role_kind, v.role
                    )
                }
            })
            .collect();
        let note = r
            .note
            .as_ref()
            .map(|n| format!("  [{n}]"))
            .unwrap_or_default();
        writeln!(out, "  {subj} via {}{note}", via.join("; "))?;
    }
    Ok(())
}

/// What one identity can do to pods.
#[derive(Serialize)]
struct CheckReport {
    user: String,
    groups: Vec<String>,
    /// In system:masters: everything, whatever the bindings.
    masters: bool,
    /// Pod capabilities everywhere (ClusterRoleBindings), each with how.
    cluster_wide: Vec<CapVia>,
    /// Extra pod capabilities per namespace (RoleBindings).
    namespaces: BTreeMap<String, Vec<CapVia>>,
}

#[derive(Serialize)]
struct CapVia {
    capability: String,
    verbs: Vec<String>,
    resources: Vec<String>,
    resource_names: Vec<String>,
    via: String,
}

fn caps(rules: &[(String, Vec<rbac::PolicyRule>)], opts: PodWriteOptions) -> Vec<CapVia> {
    let mut out: Vec<CapVia> = Vec::new();
    for (via, rs) in rules {
        for g in role_pod_write(rs, opts) {
            let words = g.capability.words();
            match out.iter_mut().find(|c| {
                c.capability == words && c.via == *via && c.resource_names == g.resource_names
            }) {
                Some(c) => {
                    if !c.verbs.iter().any(|v| v == g.verb) {
                        c.verbs.push(g.verb.into());
                    }
                    if !c.resources.contains(&g.resource) {
                        c.resources.push(g.resource.clone());
                    }
                }
                None => out.push(CapVia {
                    capability: words,
                    verbs: vec![g.verb.into()],
                    resources: vec![g.resource.clone()],
                    resource_names: g.resource_names.clone(),
                    via: via.clone(),
                }),
            }
        }
    }
    out
}

fn check_report(id: &Identity, r: &IdentityRules, opts: PodWriteOptions) -> CheckReport {
    CheckReport {
        user: id.user.clone(),
        groups: id.groups.clone(),
        masters: r.masters,
        cluster_wide: caps(&r.cluster, opts),
        namespaces: r
            .namespaces
            .iter()
            .map(|(ns, rs)| (ns.clone(), caps(rs, opts)))
            .filter(|(_, c)| !c.is_empty())
            .collect(),
    }
}

fn check_text(out: &mut impl Write, r: &CheckReport) -> Result<()> {
    writeln!(out, "{} (groups: {})", r.user, r.groups.join(", "))?;
    if r.masters {
        writeln!(out, "  in system:masters: the API server allows everything, pods included, whatever the bindings")?;
    }
    let line = |out: &mut dyn Write, c: &CapVia| -> io::Result<()> {
        let only = if c.resource_names.is_empty() {
            String::new()
        } else {
            format!(", only pods named {}", c.resource_names.join(", "))
        };
        writeln!(
            out,
            "    - {}: {} on {}{only}  (via {})",
            c.capability,
            c.verbs.join(","),
            c.resources.join(","),
            c.via
        )
    };
    if r.cluster_wide.is_empty() {
        writeln!(out, "  cluster-wide: no pod write")?;
    } else {
        writeln!(out, "  cluster-wide (every namespace):")?;
        for c in &r.cluster_wide {
            line(out, c)?;
        }
    }
    for (ns, cs) in &r.namespaces {
        writeln!(out, "  in namespace {ns}:")?;
        for c in cs {
            line(out, c)?;
        }
    }
    if r.cluster_wide.is_empty() && r.namespaces.is_empty() && !r.masters {
        writeln!(out, "  cannot write pods anywhere")?;
    }
    Ok(())
}
