//! Command-line interface.

use clap::{Args, Parser, Subcommand, ValueEnum};
use serve::config::parse_size;
use std::path::PathBuf;

/// Kubernetes audit-log detection: who changed RBAC in your clusters, and what it means.
#[derive(Parser, Debug)]
#[command(name = "kubeward", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Find ClusterRoles given write on pods in API server audit logs.
    #[command(long_about = DETECT_ABOUT, after_help = DETECT_AFTER)]
    Detect(DetectArgs),
    /// Ask an RBAC snapshot: which roles write pods, who can do what, who can change roles.
    #[command(long_about = RBAC_ABOUT)]
    Rbac(RbacArgs),
    /// List the alerts stored in a state file (kubeward detect --state), oldest first.
    #[command(long_about = crate::alerts_cmd::ABOUT, after_help = crate::alerts_cmd::AFTER)]
    Alerts(AlertsArgs),
    /// Detect in real time: receive the API server's audit webhook, follow audit log files,
    /// deliver alerts (file, stdout, HTTP, Slack, Falco).
    #[command(long_about = SERVE_ABOUT, after_help = SERVE_AFTER)]
    Serve(Box<serve::ServeArgs>),
    /// Walk a Git history: which commits gave roles pod write, bound them, or fed them into
    /// edit/admin, and who made them.
    #[command(long_about = crate::git_cmd::ABOUT, after_help = crate::git_cmd::AFTER)]
    Git(GitArgs),
    /// Check manifests in a working tree (for CI): every role granting pod write and every
    /// binding of one; text, JSON or SARIF; baselines.
    #[command(long_about = crate::scan_cmd::ABOUT, after_help = crate::scan_cmd::AFTER)]
    Scan(ScanArgs),
}

/// Output formats of `kubeward git`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum GitFormat {
    /// A block per commit, for reading.
    Text,
    /// One finding per line (JSON Lines), for jq.
    Json,
}

#[derive(Args, Debug)]
pub struct GitArgs {
    /// The repository (any directory inside it; a bare repository works too).
    #[arg(value_name = "REPO", default_value = ".")]
    pub repo: PathBuf,

    /// Only commits committed at or after this time: YYYY-MM-DD (UTC), RFC 3339, or seconds
    /// since 1970. The tree just before is read in full, so changes are judged against it.
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,

    /// The commit to walk back from (a branch, tag, id, HEAD~10), or a range A..B: the
    /// commits reachable from B and not from A, e.g. origin/main..HEAD for a pull request.
    #[arg(long, value_name = "RANGE", default_value = "HEAD")]
    pub rev: String,

    /// Only manifests under these paths or matching these globs (`*` stays in one directory,
    /// `**` crosses them): --paths deploy/ --paths 'charts/**/rbac*.yaml'.
    #[arg(long, value_name = "GLOB", num_args = 1..)]
    pub paths: Vec<String>,

    /// Where did this role come from: the commit that first gave it pod write, and every
    /// later change to its rules or its bindings (deletions included). NAME is a ClusterRole;
    /// NAMESPACE/NAME a Role in that namespace.
    #[arg(long, value_name = "[NAMESPACE/]NAME")]
    pub role: Option<String>,

    /// Also visit the commits of merged branches (default: first parents only, as
    /// `git log --first-parent`, so a merged branch shows as its merge commit).
    #[arg(long)]
    pub all_parents: bool,

    /// Output format: text (a block per commit) or json (one finding per line, for jq)
    /// [default: text on a terminal, json otherwise].
    #[arg(long, value_enum, hide_possible_values = true)]
    pub format: Option<GitFormat>,

    /// List every skipped file (Helm templates, Kustomize patches, non-manifests, files that
    /// do not parse) with its first reason, on stderr.
    #[arg(short, long)]
    pub verbose: bool,

    /// Exit with N when anything was found (for CI: --rev origin/main..HEAD --exit-code 1).
    #[arg(long, value_name = "N")]
    pub exit_code: Option<u8>,

    /// The cluster's Kubernetes version (e.g. 1.34): from 1.35 on, `get` on pods/exec no
    /// longer counts as pod write. Unknown (the default) assumes an older cluster.
    #[arg(long, value_name = "VERSION")]
    pub kube_version: Option<String>,
}

/// Output formats of `kubeward scan`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScanFormat {
    /// `FILE:LINE: what`, one line per finding.
    Text,
    /// One finding per line (JSON Lines), for jq.
    Json,
    /// SARIF 2.1.0 (GitHub code scanning and other code-scanning UIs), one document.
    Sarif,
}

#[derive(Args, Debug)]
pub struct ScanArgs {
    /// Manifest files or directories (searched recursively for .yaml, .yml and .json).
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,

    /// Output format: text (FILE:LINE: what), json (one finding per line, for jq) or sarif
    /// (SARIF 2.1.0 for code-scanning UIs) [default: text on a terminal, json otherwise].
    #[arg(long, value_enum, hide_possible_values = true)]
    pub format: Option<ScanFormat>,

    /// Exit with N when a finding is reported (after the baseline, if any).
    #[arg(long, value_name = "N")]
    pub exit_code: Option<u8>,

    /// Accept the findings recorded in this file (see --write-baseline): only roles and
    /// bindings that are new, or that grant more or to more subjects than recorded, are
    /// reported.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,

    /// Record today's findings in FILE (JSON; commit it) and report nothing.
    #[arg(long, value_name = "FILE", conflicts_with = "baseline")]
    pub write_baseline: Option<PathBuf>,

    /// List every skipped file and document with its reason, on stderr.
    #[arg(short, long)]
    pub verbose: bool,

    /// The cluster's Kubernetes version (e.g. 1.34): from 1.35 on, `get` on pods/exec no
    /// longer counts as pod write. Unknown (the default) assumes an older cluster.
    #[arg(long, value_name = "VERSION")]
    pub kube_version: Option<String>,
}

const SERVE_ABOUT: &str = "\
Detect in real time, with the same detections as `kubeward detect` (stateful with --state).

Events come from the API server's webhook backend (POST of EventList batches to
--webhook-path, gzip allowed; point the API server at it with --audit-webhook-config-file, see
examples/audit-webhook.kubeconfig) and from audit log files written by the log backend
(--follow, rotation and truncation survived). A batch is acknowledged once it is queued (with
--state: once it is on disk); when the queue is full the answer is 429 and the API server
retries. Alerts go to every sink given: --alerts-file, --stdout, --http-sink, --slack-webhook,
--falco-sink.

Operations: GET /healthz, /readyz, /metrics (Prometheus). SIGTERM or SIGINT: stop receiving,
process everything accepted, flush the sinks, exit. SIGHUP: reload the suppressions of
--config. Logs go to standard error (--log-format json for JSON lines).";

const SERVE_AFTER: &str = "\
Examples:
  kubeward serve --listen 127.0.0.1:8765 --alerts-file alerts.jsonl
  kubeward serve --listen 0.0.0.0:8443 --tls-cert tls.crt --tls-key tls.key \\
      --client-ca apiserver-ca.crt --state kubeward.db --alerts-file alerts.jsonl
  kubeward serve --follow '/var/log/kubernetes/audit/*.log' --state kubeward.db --stdout
  kubeward serve --config examples/serve.yaml";

#[derive(Args, Debug)]
pub struct AlertsArgs {
    /// The state file that `kubeward detect --state` wrote.
    #[arg(
        long,
        value_name = "PATH",
        env = "KUBEWARD_STATE",
        default_value = "kubeward.db"
    )]
    pub state: PathBuf,

    /// Only alerts at or after this time: RFC 3339, or a duration back from now (90s, 30m,
    /// 2h, 7d, 1w).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,

    /// Only alerts of this rule id (repeatable: any of them).
    #[arg(long = "rule", value_name = "RULE")]
    pub rules: Vec<String>,

    /// Output format: text (one line per alert) or json (each stored alert, one per line)
    /// [default: text on a terminal, json otherwise].
    #[arg(long, value_enum, hide_possible_values = true)]
    pub format: Option<Format>,
}

const RBAC_ABOUT: &str = "\
Answer RBAC questions exactly as the API server's authorizer would, from snapshot files:
what `kubectl get clusterroles,clusterrolebindings,roles,rolebindings -A -o yaml` (or -o json)
writes, or manifests (multi-document YAML, JSON, List kinds; other kinds are skipped); or
from a cluster with --live (the current kubeconfig, or --kubeconfig and --context).

Aggregated ClusterRoles (admin, edit, view, and any role with an aggregationRule) are resolved
from their selectors, so roles stored with `rules: null` are judged by what they really grant.
ClusterRoleBindings grant everywhere, RoleBindings only in their namespace and never on
cluster-scoped resources; members of system:masters are allowed everything.";

#[derive(Args, Debug)]
pub struct RbacArgs {
    #[command(subcommand)]
    pub command: RbacCommand,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum RbacFormat {
    /// Readable text.
    Text,
    /// One JSON object per line.
    Json,
    /// A Graphviz graph (pod-writers, who-can).
    Dot,
}

/// Where the snapshot comes from, and how to read it.
#[derive(Args, Debug, Clone)]
pub struct SnapshotArgs {
    /// Snapshot files or directories (directories: every .yaml, .yml and .json file,
    /// recursively); or --live.
    #[arg(value_name = "SNAPSHOT")]
    pub paths: Vec<std::path::PathBuf>,

    #[command(flatten)]
    pub opts: SnapshotOpts,
}

/// How to read a snapshot.
#[derive(Args, Debug, Clone)]
pub struct SnapshotOpts {
    /// Read the four RBAC kinds from the cluster of the current kubeconfig instead of files
    /// (needs list on clusterroles, clusterrolebindings, roles and rolebindings).
    #[arg(long)]
    pub live: bool,

    /// Kubeconfig for --live [default: $KUBECONFIG, then ~/.kube/config].
    #[arg(long, value_name = "FILE", requires = "live")]
    pub kubeconfig: Option<std::path::PathBuf>,

    /// Kubeconfig context for --live [default: the current context].
    #[arg(long, value_name = "NAME", requires = "live")]
    pub context: Option<String>,

    /// Namespace for Roles and RoleBindings that carry none (manifests often leave it out).
    #[arg(long, value_name = "NS")]
    pub default_namespace: Option<String>,

    /// The cluster's Kubernetes version; from 1.35 on, `get` on pods/exec no longer opens a
    /// stream, so it stops counting as pod write.
    #[arg(long, value_name = "VERSION")]
    pub kube_version: Option<String>,

    /// No summary line on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Subcommand, Debug)]
pub enum RbacCommand {
    /// Every ClusterRole and Role that grants write on pods, how, and who holds it.
    #[command(
        after_help = "Example: kubeward rbac pod-writers snapshot.yaml --format json | jq -r '.name'"
    )]
    PodWriters {
        #[command(flatten)]
        snap: SnapshotArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = RbacFormat::Text)]
        format: RbacFormat,
    },
    /// Every subject allowed a request, through which binding and role, and where.
    #[command(
        override_usage = "kubeward rbac who-can VERB RESOURCE[/SUBRESOURCE] [OPTIONS] SNAPSHOT...\n       kubeward rbac who-can VERB --url PATH [OPTIONS] SNAPSHOT...",
        after_help = "Examples:\n  kubeward rbac who-can create pods -A snapshot.yaml\n  kubeward rbac who-can create pods/exec -n prod snapshot.yaml\n  kubeward rbac who-can update clusterroles --api-group rbac.authorization.k8s.io snapshot.yaml\n  kubeward rbac who-can get --url /metrics snapshot.yaml\n\nWithout -n, namespaced resources are asked in every namespace."
    )]
    WhoCan {
        /// VERB, then RESOURCE[/SUBRESOURCE] (unless --url), then SNAPSHOT paths.
        #[arg(value_name = "ARGS", required = true)]
        args: Vec<String>,
        /// Ask about a non-resource URL instead (only ClusterRoleBindings grant these).
        #[arg(long, value_name = "PATH")]
        url: Option<String>,
        /// API group of the resource ("" is core, the default).
        #[arg(long, value_name = "GROUP")]
        api_group: Option<String>,
        /// Ask in one namespace.
        #[arg(short = 'n', long, value_name = "NS")]
        namespace: Option<String>,
        /// Ask in every namespace (the default for namespaced resources).
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Ask about one named object (name-restricted rules then count).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        #[command(flatten)]
        opts: SnapshotOpts,
        /// Output format.
        #[arg(long, value_enum, default_value_t = RbacFormat::Text)]
        format: RbacFormat,
    },
    /// Who can create or change cluster roles, escalate, bind, impersonate or create bindings:
    /// every path to granting oneself pod write.
    RoleAdmins {
        #[command(flatten)]
        snap: SnapshotArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = RbacFormat::Text)]
        format: RbacFormat,
    },
    /// What one identity can do to pods, cluster-wide and per namespace.
    #[command(
        after_help = "Example: kubeward rbac check snapshot.yaml --as system:serviceaccount:ci:deployer"
    )]
    Check {
        #[command(flatten)]
        snap: SnapshotArgs,
        /// The user name (service accounts: system:serviceaccount:NS:NAME).
        #[arg(long = "as", value_name = "USER", required = true)]
        r#as: String,
        /// A group of the identity (repeatable); implicit groups are added.
        #[arg(long = "as-group", value_name = "GROUP")]
        as_group: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = RbacFormat::Text)]
        format: RbacFormat,
    },
}

const DETECT_ABOUT: &str = "\
Find every successful create, update or patch of a ClusterRole whose rules grant write on pods
(create, modify, delete, exec into, attach to, debug, evict, bind, proxy to pods), judged one
PolicyRule at a time with Kubernetes' own RBAC matching. Failed, dry-run and incomplete requests
never alert.

Input: audit.k8s.io/v1 (or v1beta1) Events or EventLists, one per line (the log backend's
format, or saved webhook batches), or one JSON document / array of Events spread over lines.
Gzip files (also multi-member: rotated logs) are read as such whatever their name.

Managed clusters' exports are read directly, told apart by their shape (--input-format auto),
and mapped to the same Event, so every detection works on them:
  EKS  CloudWatch Logs: `aws logs filter-log-events`/`get-log-events` JSON output, one event
       per line, subscription payloads (DATA_MESSAGE; CONTROL_MESSAGE skipped), the same
       gzip+base64 as Lambda ({\"awslogs\":{\"data\":...}}), Kinesis and Firehose (HTTP endpoint
       bodies, S3 objects) deliver them. Cluster from the log group /aws/eks/NAME/cluster.
  GKE  Cloud Audit Logs LogEntry records (`gcloud logging read --format json`, Log Router
       exports): protoPayload mapped to the Event; GKE logs no groups, and alerts say so.
  AKS  diagnostic records of category kube-audit or kube-audit-admin ({\"records\":[...]} from
       Event Hubs, one record per line from Storage); bodies AKS skipped as too big are read
       as absent, and alerts say so.
Records holding no audit event (other log streams, services or categories) are counted per
kind in the summary, not reported one by one.

Stateful detection (--state FILE.db, --rbac-snapshot, or --stateful) keeps a model of the
cluster's RBAC while reading: ClusterRoles, Roles and their bindings, seeded from snapshots and
Kubernetes' bootstrap policy, updated by every create, update, patch (applied to the last known
object when only the patch is logged) and delete. Then:
  clusterrole-pod-write             only pod write the role did not grant before (newly_granted)
  clusterrole-pod-write-aggregated  a role picked up by edit/admin/view or any aggregationRule
                                    that makes the aggregating role gain pod write
  pod-write-role-bound              a binding gives a pod-write role to subjects who lacked it
  clusterrole-changed-unverified    a ClusterRole changed and the log does not show how
  binding-changed-unverified        a binding of a pod-write role changed, subjects not logged
and every alert lists the role's bound subjects, who can change ClusterRoles, and the actor's
other RBAC changes in the hour before. With --state, alerts and input positions persist:
rerunning over the same or overlapping logs never prints an alert twice (`kubeward alerts`
lists what is stored).";

const DETECT_AFTER: &str = "\
Examples:
  kubeward detect /var/log/kubernetes/audit/           every file in the directory, in name order
  kubeward detect audit.log audit-2026-11-27.log.gz    plain and rotated (gzip) logs
  kubectl logs ... | kubeward detect -                 standard input
  kubeward detect --format json audit.log | jq -r '.role'
  kubeward detect --exit-code 1 --cluster prod audit.log   fail a CI job on any alert
  kubeward detect --state kw.db --rbac-snapshot rbac.yaml audit.log   stateful, resumable
  aws logs filter-log-events --log-group-name /aws/eks/prod/cluster \\
      --log-stream-name-prefix kube-apiserver-audit --output json > eks.json
  kubeward detect --cluster prod eks.json                  EKS (the output names no log group)
  gcloud logging read 'resource.type=\"k8s_cluster\" AND protoPayload.serviceName=\"k8s.io\"' \\
      --format json > gke.json && kubeward detect gke.json     GKE
  kubeward detect insights-logs-kube-audit-admin/          AKS Storage export (PT1H.json blobs)

Every line is accounted for. Lines that cannot hold a ClusterRole write (no `clusterroles`, or
no create/update/patch verb; stateful: no `role`, or no create/update/patch/delete/
deletecollection verb) are skipped unparsed and counted in the summary; every other line
is parsed, and a malformed one is reported on stderr as PATH:LINE: reason and skipped.
--no-prefilter parses (and so checks) every line. A summary line on stderr ends every run.

Exit status: 0 when the run completed (alerts or not; see --exit-code), 2 on an error (an
unreadable input, a read error part-way, a bad config).";

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A readable block per alert.
    Text,
    /// One JSON object per alert per line.
    Json,
}

/// How to read input records (`--input-format`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum InputFormatArg {
    /// Tell each input (and each record) by its shape.
    Auto,
    /// Native audit.k8s.io Events and EventLists (the API server's log or webhook).
    K8s,
    /// EKS: CloudWatch Logs output, subscription payloads, Lambda/Kinesis/Firehose bodies.
    Eks,
    /// GKE: Cloud Audit Logs LogEntry records (gcloud logging read, Log Router exports).
    Gke,
    /// AKS: Azure diagnostic records (Event Hubs bodies, Storage blobs).
    Aks,
}

impl From<InputFormatArg> for audit::InputFormat {
    fn from(f: InputFormatArg) -> Self {
        match f {
            InputFormatArg::Auto => audit::InputFormat::Auto,
            InputFormatArg::K8s => audit::InputFormat::K8s,
            InputFormatArg::Eks => audit::InputFormat::Eks,
            InputFormatArg::Gke => audit::InputFormat::Gke,
            InputFormatArg::Aks => audit::InputFormat::Aks,
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Color {
    /// Colour when stdout is a terminal.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

#[derive(Args, Debug)]
pub struct DetectArgs {
    /// Audit log files or directories; `-` (or nothing) reads standard input.
    #[arg(value_name = "PATH")]
    pub paths: Vec<String>,

    /// Output format [default: text on a terminal, json otherwise].
    #[arg(long, value_enum)]
    pub format: Option<Format>,

    /// When to colour text output.
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    pub color: Color,

    /// Label every alert with this cluster name. Records that name their cluster (EKS log
    /// group, GKE resource label, AKS resource ID) keep their own name.
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,

    /// What the inputs hold: auto tells each input by its first record, and each record by
    /// its own keys (native Events take the fast path unchanged); k8s, eks, gke or aks reads
    /// only that shape and reports anything else as malformed (under k8s, as under auto,
    /// lines that are neither audit Events nor managed clusters' records, and do not hold
    /// `clusterroles`, are skipped by the prefilter unparsed).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = InputFormatArg::Auto)]
    pub input_format: InputFormatArg,

    /// The cluster's Kubernetes version (e.g. 1.34). From 1.35 on, `get` on pods/exec,
    /// pods/attach and pods/portforward no longer opens a stream, so it stops counting as pod
    /// write. Unknown (the default) assumes an older cluster.
    #[arg(long, value_name = "VERSION")]
    pub kube_version: Option<String>,

    /// YAML config file with suppressions (see README: user, group and role globs).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Also print suppressed alerts (they carry `suppressed_by`). They are always counted.
    #[arg(long)]
    pub show_suppressed: bool,

    /// Exit with this status when at least one alert was printed (for CI).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..))]
    pub exit_code: Option<u8>,

    /// Longest line (or JSON document) read; longer ones are reported and skipped. Also the
    /// most that the payloads of one managed cluster's record may decode to, all together.
    /// Accepts K, M, G suffixes (powers of 1024).
    #[arg(long, value_name = "BYTES", default_value = "64M", value_parser = parse_size)]
    pub max_line_bytes: usize,

    /// Parse every line instead of skipping, unparsed, the lines that do not contain
    /// `clusterroles` (for logs that a pipeline re-encoded, e.g. with \u escapes).
    #[arg(long)]
    pub no_prefilter: bool,

    /// Read files through a buffer instead of memory-mapping them (for logs that another
    /// process truncates in place, e.g. logrotate's copytruncate).
    #[arg(long)]
    pub no_mmap: bool,

    /// Worker threads [default: the number of cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Stateful detection, persisted in this SQLite file (created if missing): RBAC objects
    /// as the log changes them, alerts, and how far each input was read. Later runs with the
    /// same file continue where the last one stopped and never print an alert twice.
    #[arg(long, value_name = "PATH.db", help_heading = "Stateful detection")]
    pub state: Option<PathBuf>,

    /// Seed the RBAC model from `kubectl get clusterroles,clusterrolebindings,roles,rolebindings
    /// -A -o yaml` output (file or directory; repeatable). With an existing --state, only
    /// objects the state does not know yet are taken. Turns on stateful detection (in memory
    /// when --state is not given).
    #[arg(long, value_name = "PATH", help_heading = "Stateful detection")]
    pub rbac_snapshot: Vec<PathBuf>,

    /// Stateful detection for this run only, in memory (no file).
    #[arg(long, help_heading = "Stateful detection", conflicts_with = "state")]
    pub stateful: bool,

    /// Do not assume Kubernetes' bootstrap roles and bindings (cluster-admin, edit, ...) for
    /// names that neither the state nor a snapshot knows.
    #[arg(long, help_heading = "Stateful detection")]
    pub no_bootstrap_roles: bool,

    /// No summary line and no progress bar on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
