//! `kubeward git`: the commits that gave roles pod write, bound them, or fed them into
//! aggregated roles.

use crate::cli::{GitArgs, GitFormat};
use crate::print::{escape_controls as c, grant_words};
use anyhow::{Context, Result};
use history::{Finding, Options, Report};
use indicatif::{ProgressBar, ProgressStyle};
use manifest::ChangeKind;
use rbac::{KubeVersion, PodWriteOptions};
use std::io::{self, IsTerminal, Write};

pub const ABOUT: &str = "\
Walk a Git history of Kubernetes manifests and report each commit that:
  introduced         added a ClusterRole (or Role, marked namespaced) that grants pod write
  widened            made an existing role grant pod write it did not grant before
  bound              created a ClusterRoleBinding/RoleBinding of a pod-write role, or gave one
                     new subjects (bindings of edit, admin, cluster-admin count: every cluster
                     has them)
  aggregation-label  labelled a pod-write ClusterRole so that edit/admin (or any aggregating
                     role defined in the tree) picks its rules up
with the commit id, author and committer (name, e-mail, time), subject, file, document and
line, the role, what it newly grants on pods in plain words, and the rules before and after.

Pod write is judged exactly as `kubeward detect` judges it (the rbac crate's matcher: create,
modify, delete, exec, attach, debug, port-forward, proxy, evict, bind pods). Objects are
followed by identity (kind, namespace, name), so moving, renaming or splitting a manifest is
not a change. Every changed .yaml/.yml/.json is read (multi-document YAML, JSON, List kinds);
Helm templates ({{ }}), Kustomize patches and kustomizations, files that are not Kubernetes
manifests or do not parse, binary and huge files are skipped and counted (--verbose lists
each with its first reason).

The history is read with gix (no git program needed); only the blobs of changed manifest paths
are read. First parents only by default (a merged branch is its merge commit); --all-parents
visits merged branches commit by commit, and credits a merge only with what no parent had.";

pub const AFTER: &str = "\
Examples:
  kubeward git                                   # this repository, whole first-parent history
  kubeward git ~/src/infra --since 2026-01-01 --paths deploy/ --format json | jq -c 'select(.change == \"widened\")'
  kubeward git --role pod-exec                   # where did this ClusterRole come from (the alert's link to Git)
  kubeward git --role batch/pod-killer           # the same for the Role pod-killer in namespace batch
  kubeward git --rev origin/main..HEAD --exit-code 1   # pre-merge check: fail if the branch grants pod write

JSON fields: commit, author_name, author_email, time, committer_name, committer_email,
committer_time, subject, merge, file, document, line, kind, namespaced, namespace, name, role,
role_kind, change, newly_granted (each: capability, capability_id, verbs, resources,
resource_names, rules), rules_before, rules_after, subjects_added, subjects_removed,
aggregated_into. With --role, change can also be rules-changed, deleted, binding-changed or
binding-deleted.

--role NAME follows the ClusterRole NAME (a binding counts when its roleRef names it: a
ClusterRoleBinding, or a RoleBinding of the ClusterRole); --role NAMESPACE/NAME follows the
Role NAME in NAMESPACE (and a Role manifest without a namespace, which gets one at deploy
time). The story starts at the first commit that gave the role pod write; when the role
already granted pod write where the walk starts (before --since or the range, or a Kubernetes
bootstrap role such as edit that no manifest defines), every change in the walk is shown.

Exit status: 0, or N with --exit-code N when something was found; 2 on an error (not a git
repository, a bad --rev or --since).";

pub fn run(args: GitArgs) -> Result<u8> {
    let kube_version = match &args.kube_version {
        Some(v) => Some(
            KubeVersion::parse(v)
                .with_context(|| format!("--kube-version {v:?} is not a Kubernetes version"))?,
        ),
        None => None,
    };
    let since = args
        .since
        .as_deref()
        .map(history::parse_since)
        .transpose()?;
    let opts = Options {
        rev: Some(args.rev.clone()),
        since,
        paths: args.paths.clone(),
        all_parents: args.all_parents,
        role: args.role.clone(),
        pod_write: PodWriteOptions::for_version(kube_version),
    };
    let bar = io::stderr().is_terminal().then(|| {
        let pb = ProgressBar::new(0);
        pb.set_style(
            ProgressStyle::with_template(
                "{spinner} {pos}/{len} commits {wide_bar} {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb
    });
    let mut progress = |done: usize, total: usize| {
        if let Some(pb) = &bar {
            pb.set_length(total as u64);
            pb.set_position(done as u64);
        }
    };
    let report = history::walk(&args.repo, &opts, &mut progress);
    if let Some(pb) = &bar {
        pb.finish_and_clear();
    }
    let report = report?;
    let format = args.format.unwrap_or(if io::stdout().is_terminal() {
        GitFormat::Text
    } else {
        GitFormat::Json
    });
    let out = io::stdout();
    let mut out = io::BufWriter::new(out.lock());
    match format {
        GitFormat::Json => {
            for f in &report.findings {
                serde_json::to_writer(&mut out, f)?;
                out.write_all(b"\n")?;
            }
        }
        GitFormat::Text => text(&mut out, &report, args.role.as_deref())?,
    }
    out.flush()?;
    summary(&report, args.verbose);
    Ok(match args.exit_code {
        Some(n) if !report.findings.is_empty() => n,
        _ => 0,
    })
}

fn text<W: Write>(out: &mut W, report: &Report, role: Option<&str>) -> io::Result<()> {
    if report.findings.is_empty() {
        match role {
            Some(r) => writeln!(
                out,
                "No commit in the range gave {} pod write, or changed it or its bindings while it had it.",
                c(&history::RoleSelector::parse(r)
                    .map_or_else(|_| r.to_string(), |s| s.to_string()))
            )?,
            None => writeln!(out, "No commit in the range introduced, widened, bound or aggregated a role granting pod write.")?,
        }
        return Ok(());
    }
    let mut last_commit = "";
    for f in &report.findings {
        if f.commit != last_commit {
            if !last_commit.is_empty() {
                writeln!(out)?;
            }
            last_commit = &f.commit;
            writeln!(
                out,
                "commit {}{}\nAuthor: {} <{}> {}\nCommit: {} <{}> {}\n    {}",
                &f.commit,
                if f.merge { " (merge)" } else { "" },
                c(&f.author_name),
                c(&f.author_email),
                f.time,
                c(&f.committer_name),
                c(&f.committer_email),
                f.committer_time,
                c(&f.subject)
            )?;
        }
        finding_text(out, f)?;
    }
    Ok(())
}

fn finding_text<W: Write>(out: &mut W, f: &Finding) -> io::Result<()> {
    let ch = &f.change;
    let what = match ch.kind {
        k if k.is_role() => format!(
            "{} {}{}",
            k,
            if ch.namespace.is_empty() {
                String::new()
            } else {
                format!("{}/", c(&ch.namespace))
            },
            c(&ch.name)
        ),
        k => format!(
            "{} {}{} of {} {}",
            k,
            if ch.namespace.is_empty() {
                String::new()
            } else {
                format!("{}/", c(&ch.namespace))
            },
            c(&ch.name),
            c(&ch.role_kind),
            c(&ch.role)
        ),
    };
    writeln!(
        out,
        "  {}: {what}{}  ({}:{}, document {})",
        ch.change.as_str(),
        if ch.namespaced { " [namespaced]" } else { "" },
        c(&ch.file),
        ch.line,
        ch.document
    )?;
    if !ch.newly_granted.is_empty() {
        let label = match ch.change {
            ChangeKind::Bound => "its new subjects gain",
            ChangeKind::AggregationLabel => "feeds",
            _ => "newly grants",
        };
        writeln!(out, "    {label}: {}", grant_words(&ch.newly_granted))?;
    }
    if !ch.aggregated_into.is_empty() {
        writeln!(
            out,
            "    aggregated into: {}",
            c(&ch.aggregated_into.join(", "))
        )?;
    }
    for (label, list) in [
        ("subjects added", &ch.subjects_added),
        ("subjects removed", &ch.subjects_removed),
    ] {
        if !list.is_empty() {
            let s: Vec<String> = list.iter().map(|s| c(&s.to_string())).collect();
            writeln!(out, "    {label}: {}", s.join(", "))?;
        }
    }
    for (label, rules) in [
        ("rules before", &ch.rules_before),
        ("rules after", &ch.rules_after),
    ] {
        if let Some(r) = rules {
            if matches!(
                ch.change,
                ChangeKind::Widened
                    | ChangeKind::RulesChanged
                    | ChangeKind::Introduced
                    | ChangeKind::Deleted
            ) {
                writeln!(
                    out,
                    "    {label}: {}",
                    c(&serde_json::to_string(r).unwrap_or_default())
                )?;
            }
        }
    }
    Ok(())
}

fn summary(report: &Report, verbose: bool) {
    let s = &report.stats;
    let mut err = io::stderr().lock();
    if verbose {
        for (path, why) in &s.skipped_files {
            let _ = writeln!(err, "kubeward: skipped {}: {why}", c(path));
        }
        for (path, (doc, why)) in &s.skipped_documents {
            let _ = writeln!(err, "kubeward: skipped {} document {doc}: {why}", c(path));
        }
    }
    let by_reason: Vec<String> = s
        .skipped_by_reason()
        .into_iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    let _ = writeln!(
        err,
        "kubeward: {} commits, {} manifest blobs read ({} bytes), {} files skipped{}{}, {} documents skipped in other files, {} findings{}",
        s.commits,
        s.blobs_read,
        s.bytes_read,
        s.skipped_files.len(),
        if by_reason.is_empty() { "" } else { ": " },
        by_reason.join(", "),
        s.skipped_documents.len(),
        report.findings.len(),
        if s.missing_parents > 0 {
            format!(
                "; {} parent commits missing (shallow clone?): their children were read as roots",
                s.missing_parents
            )
        } else {
            String::new()
        }
    );
}
