//! `kubeward git`: a real repository with a scripted history (built with the `git` binary, in a
//! temp dir), walked by kubeward (gix, no git process), and the exact report asserted.

use crate::util::{run, Run};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

/// A scratch repository whose commits have fixed authors and times.
struct Repo {
    dir: tempfile::TempDir,
    /// Seconds added to the base time for each commit, so times are distinct and ordered.
    tick: u64,
}

const BASE: u64 = 1_767_261_600; // 2026-01-01T10:00:00Z

impl Repo {
    fn new() -> Repo {
        let r = Repo {
            dir: tempfile::tempdir().expect("temp dir"),
            tick: 0,
        };
        r.git(&["init", "-q", "-b", "main"], ("init", "init@example.com"));
        r
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn git(&self, args: &[&str], who: (&str, &str)) -> String {
        let date = format!("@{} +0100", BASE + self.tick * 3600);
        let out = Command::new("git")
            .args(args)
            .current_dir(self.path())
            .env("GIT_AUTHOR_NAME", who.0)
            .env("GIT_AUTHOR_EMAIL", who.1)
            .env("GIT_COMMITTER_NAME", who.0)
            .env("GIT_COMMITTER_EMAIL", who.1)
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("git output is UTF-8")
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    /// Stages everything and commits as `who`; returns the commit id.
    fn commit(&mut self, msg: &str, who: (&str, &str)) -> String {
        self.tick += 1;
        self.git(&["add", "-A"], who);
        self.git(&["commit", "-q", "--allow-empty", "-m", msg], who);
        self.head()
    }

    fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"], ("x", "x@x"))
            .trim()
            .to_string()
    }

    fn kubeward(&self, extra: &[&str]) -> Run {
        let repo = self.path().to_str().expect("UTF-8 path").to_string();
        let mut args = vec!["git", repo.as_str()];
        args.extend_from_slice(extra);
        run(&args, b"")
    }
}

const ALICE: (&str, &str) = ("Alice Admin", "alice@example.com");
const BOB: (&str, &str) = ("Bob Builder", "bob@example.com");
const CAROL: (&str, &str) = ("Carol Ops", "carol@example.com");
const ERIN: (&str, &str) = ("Erin Dev", "erin@example.com");
const FRANK: (&str, &str) = ("Frank Merger", "frank@example.com");

const READER: &str = "\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: app-reader
rules:
- apiGroups: [\"\"]
  resources: [pods, pods/log]
  verbs: [get, list, watch]
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: app
  namespace: apps
";

const READER_WIDENED: &str = "\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: app-reader
rules:
- apiGroups: [\"\"]
  resources: [pods, pods/log]
  verbs: [get, list, watch]
- apiGroups: [\"\"]
  resources: [pods/exec]
  verbs: [create]
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: app
  namespace: apps
";

const BINDING: &str = "\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: app-reader-binding
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: app-reader}
subjects:
- {kind: User, name: dave, apiGroup: rbac.authorization.k8s.io}
";

const DEPLOYER: &str = "\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: deployer
rules:
- apiGroups: [\"\"]
  resources: [pods]
  verbs: [create, delete]
";

const DEPLOYER_LABELLED: &str = "\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: deployer
  labels:
    rbac.authorization.k8s.io/aggregate-to-edit: \"true\"
rules:
- apiGroups: [\"\"]
  resources: [pods]
  verbs: [create, delete]
";

const HELM: &str = "\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {{ .Release.Name }}-admin
rules:
- apiGroups: [\"\"]
  resources: [pods]
  verbs: [\"*\"]
";

const FEATURE: &str = "\
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: pod-killer
  namespace: batch
rules:
- apiGroups: [\"\"]
  resources: [pods]
  verbs: [delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: pod-killer
  namespace: batch
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-killer}
subjects:
- {kind: ServiceAccount, name: reaper}
";

const BINDING_AGAIN: &str = "\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: app-reader-binding
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: app-reader}
subjects:
- {kind: User, name: dave, apiGroup: rbac.authorization.k8s.io}
- {kind: Group, name: oncall, apiGroup: rbac.authorization.k8s.io}
";

/// The scripted history; returns the repository and the commit ids by name.
fn scripted() -> (Repo, std::collections::BTreeMap<&'static str, String>) {
    let mut r = Repo::new();
    let mut ids = std::collections::BTreeMap::new();
    r.write("rbac/app.yaml", READER);
    r.write(".github/workflows/ci.yml", "on: push\njobs: {}\n");
    r.write("README.md", "# infra\n");
    ids.insert("add-reader", r.commit("Add app-reader role", ALICE));
    r.write("rbac/app.yaml", READER_WIDENED);
    ids.insert("widen", r.commit("Let app-reader debug pods", BOB));
    r.write("rbac/binding.yaml", BINDING);
    ids.insert("bind", r.commit("Bind app-reader to dave", CAROL));
    r.write("rbac/deployer.yaml", DEPLOYER);
    ids.insert("deployer", r.commit("Add deployer", ALICE));
    r.write("rbac/deployer.yaml", DEPLOYER_LABELLED);
    ids.insert("label", r.commit("Aggregate deployer into edit", BOB));
    // A move and a split: app.yaml goes to roles/, and its ServiceAccount to its own file.
    std::fs::remove_file(r.path().join("rbac/app.yaml")).expect("rm");
    let (role, sa) = READER_WIDENED.split_once("---\n").expect("two documents");
    r.write("rbac/roles/app-reader.yaml", role);
    r.write("rbac/sa.yaml", sa);
    ids.insert("move", r.commit("Reorganise rbac/", CAROL));
    r.write("charts/app/templates/role.yaml", HELM);
    ids.insert("helm", r.commit("Add a Helm chart", ALICE));
    std::fs::remove_file(r.path().join("rbac/binding.yaml")).expect("rm");
    ids.insert("unbind", r.commit("Remove dave's binding", BOB));
    // A branch with its own commit, merged with a merge commit.
    r.git(&["checkout", "-q", "-b", "feature"], ERIN);
    r.write("rbac/feature.yaml", FEATURE);
    ids.insert("feature", r.commit("Batch jobs may delete pods", ERIN));
    r.git(&["checkout", "-q", "main"], FRANK);
    r.tick += 1;
    r.git(
        &[
            "merge",
            "-q",
            "--no-ff",
            "-m",
            "Merge branch 'feature'",
            "feature",
        ],
        FRANK,
    );
    ids.insert("merge", r.head());
    r.write("rbac/binding.yaml", BINDING_AGAIN);
    ids.insert(
        "rebind",
        r.commit("Bind app-reader to dave and oncall", CAROL),
    );
    (r, ids)
}

/// The facts a test compares: (commit key, author, change, kind, role, file, capability ids).
fn summary(run: &Run, ids: &std::collections::BTreeMap<&'static str, String>) -> Vec<Value> {
    run.alerts()
        .iter()
        .map(|f| {
            let commit = f["commit"].as_str().expect("commit");
            let key = ids
                .iter()
                .find(|(_, v)| v.as_str() == commit)
                .map_or("?", |(k, _)| *k);
            let caps: Vec<&str> = f["newly_granted"]
                .as_array()
                .expect("newly_granted")
                .iter()
                .map(|g| g["capability_id"].as_str().expect("capability_id"))
                .collect();
            json!([
                key,
                f["author_name"],
                f["change"],
                f["kind"],
                f["role"],
                f["file"],
                caps
            ])
        })
        .collect()
}

#[test]
fn scripted_history_first_parent_exact_report() {
    let (r, ids) = scripted();
    let run = r.kubeward(&["--format", "json"]).ok();
    assert_eq!(
        summary(&run, &ids),
        vec![
            json!([
                "widen",
                "Bob Builder",
                "widened",
                "ClusterRole",
                "app-reader",
                "rbac/app.yaml",
                ["exec"]
            ]),
            json!([
                "bind",
                "Carol Ops",
                "bound",
                "ClusterRoleBinding",
                "app-reader",
                "rbac/binding.yaml",
                ["exec"]
            ]),
            json!([
                "deployer",
                "Alice Admin",
                "introduced",
                "ClusterRole",
                "deployer",
                "rbac/deployer.yaml",
                ["create-pods", "delete-pods"]
            ]),
            json!([
                "label",
                "Bob Builder",
                "aggregation-label",
                "ClusterRole",
                "deployer",
                "rbac/deployer.yaml",
                ["create-pods", "delete-pods"]
            ]),
            // First parent: the merged branch is its merge commit, by whoever merged.
            json!([
                "merge",
                "Frank Merger",
                "introduced",
                "Role",
                "pod-killer",
                "rbac/feature.yaml",
                ["delete-pods"]
            ]),
            json!([
                "merge",
                "Frank Merger",
                "bound",
                "RoleBinding",
                "pod-killer",
                "rbac/feature.yaml",
                ["delete-pods"]
            ]),
            json!([
                "rebind",
                "Carol Ops",
                "bound",
                "ClusterRoleBinding",
                "app-reader",
                "rbac/binding.yaml",
                ["exec"]
            ]),
        ],
        "{run:#?}"
    );
    let all = run.alerts();
    // Every field of one finding, exactly.
    let widened = &all[0];
    assert_eq!(
        widened,
        &json!({
            "commit": ids["widen"],
            "author_name": "Bob Builder",
            "author_email": "bob@example.com",
            "time": "2026-01-01T13:00:00+01:00",
            "committer_name": "Bob Builder",
            "committer_email": "bob@example.com",
            "committer_time": "2026-01-01T13:00:00+01:00",
            "subject": "Let app-reader debug pods",
            "file": "rbac/app.yaml",
            "document": 1,
            "line": 1,
            "kind": "ClusterRole",
            "namespaced": false,
            "namespace": "",
            "name": "app-reader",
            "role": "app-reader",
            "role_kind": "ClusterRole",
            "change": "widened",
            "newly_granted": [{
                "capability": "exec into pods",
                "capability_id": "exec",
                "verbs": ["create"],
                "resources": ["pods/exec"],
                "resource_names": [],
                "rules": [1]
            }],
            "rules_before": [{"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["pods", "pods/log"]}],
            "rules_after": [
                {"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["pods", "pods/log"]},
                {"verbs": ["create"], "apiGroups": [""], "resources": ["pods/exec"]}
            ]
        })
    );
    // The label feeds edit, and through edit admin (Kubernetes' own roles, not in the tree).
    assert_eq!(all[3]["aggregated_into"], json!(["admin", "edit"]));
    // The Role is marked namespaced; the re-created binding names only its new subject.
    assert_eq!(all[4]["namespaced"], json!(true));
    assert_eq!(all[4]["namespace"], json!("batch"));
    assert_eq!(all[4]["merge"], json!(true));
    assert_eq!(
        all[6]["subjects_added"],
        json!([{"kind": "User", "name": "dave", "namespace": null}, {"kind": "Group", "name": "oncall", "namespace": null}])
    );
    // The Helm template and the CI workflow were skipped and counted.
    assert!(
        run.summary()
            .contains("files skipped: helm-template 1, not-kubernetes 1"),
        "{}",
        run.stderr
    );
}

#[test]
fn all_parents_credits_the_branch_commit_not_the_merge() {
    let (r, ids) = scripted();
    let run = r.kubeward(&["--format", "json", "--all-parents"]).ok();
    let s = summary(&run, &ids);
    assert_eq!(
        s[4..6],
        [
            json!([
                "feature",
                "Erin Dev",
                "introduced",
                "Role",
                "pod-killer",
                "rbac/feature.yaml",
                ["delete-pods"]
            ]),
            json!([
                "feature",
                "Erin Dev",
                "bound",
                "RoleBinding",
                "pod-killer",
                "rbac/feature.yaml",
                ["delete-pods"]
            ]),
        ],
        "{run:#?}"
    );
    assert_eq!(s.len(), 7, "the merge itself adds nothing: {s:#?}");
    assert!(!s.iter().any(|f| f[0] == "merge"));
}

#[test]
fn role_tells_where_a_role_came_from() {
    let (r, ids) = scripted();
    let run = r
        .kubeward(&["--format", "json", "--role", "app-reader"])
        .ok();
    let got: Vec<Value> = run
        .alerts()
        .iter()
        .map(|f| {
            let key = ids
                .iter()
                .find(|(_, v)| Some(v.as_str()) == f["commit"].as_str())
                .map_or("?", |(k, _)| *k);
            json!([key, f["change"], f["kind"], f["file"]])
        })
        .collect();
    // Added without pod write (not part of the story), widened, bound, the binding deleted,
    // bound again; the move to roles/ is not a change.
    assert_eq!(
        got,
        vec![
            json!(["widen", "widened", "ClusterRole", "rbac/app.yaml"]),
            json!(["bind", "bound", "ClusterRoleBinding", "rbac/binding.yaml"]),
            json!([
                "unbind",
                "binding-deleted",
                "ClusterRoleBinding",
                "rbac/binding.yaml"
            ]),
            json!(["rebind", "bound", "ClusterRoleBinding", "rbac/binding.yaml"]),
        ],
        "{run:#?}"
    );
    let text = r
        .kubeward(&["--format", "text", "--role", "app-reader"])
        .ok();
    assert!(
        text.stdout.contains(&format!("commit {}", ids["widen"])),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains("widened: ClusterRole app-reader  (rbac/app.yaml:1, document 1)"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("newly grants: exec into pods"),
        "{}",
        text.stdout
    );
    let none = r
        .kubeward(&["--format", "text", "--role", "no-such-role"])
        .ok();
    assert!(
        none.stdout.contains(
            "No commit in the range gave ClusterRole no-such-role pod write, or changed it or its bindings while it had it."
        ),
        "{}",
        none.stdout
    );
}

#[test]
fn ranges_since_and_paths_narrow_the_walk() {
    let (r, ids) = scripted();
    // A range: only what the last two commits of main did, judged against the tree before.
    let range = format!("{}..HEAD", ids["unbind"]);
    let run = r.kubeward(&["--format", "json", "--rev", &range]).ok();
    let s = summary(&run, &ids);
    assert_eq!(s.len(), 3, "{s:#?}");
    assert!(s.iter().all(|f| f[0] == "merge" || f[0] == "rebind"));
    // --since: commits at or after the label commit (the fifth: 15:00Z, 16:00 +01:00).
    let run = r
        .kubeward(&["--format", "json", "--since", "2026-01-01T16:00:00+01:00"])
        .ok();
    let keys: Vec<Value> = summary(&run, &ids).iter().map(|f| f[0].clone()).collect();
    assert_eq!(
        keys,
        vec![
            json!("label"),
            json!("merge"),
            json!("merge"),
            json!("rebind")
        ]
    );
    // --paths: only the feature file.
    let run = r
        .kubeward(&["--format", "json", "--paths", "rbac/feature.yaml"])
        .ok();
    assert_eq!(summary(&run, &ids).len(), 2);
    let run = r
        .kubeward(&["--format", "json", "--paths", "rbac/**/*.yaml"])
        .ok();
    assert_eq!(summary(&run, &ids).len(), 7);
    // --exit-code for a pre-merge check.
    let run = r.kubeward(&["--format", "json", "--rev", &range, "--exit-code", "3"]);
    assert_eq!(run.code, 3);
    let quiet = format!("{}..{}", ids["merge"], ids["merge"]);
    let run = r.kubeward(&["--format", "json", "--rev", &quiet, "--exit-code", "3"]);
    assert_eq!(run.code, 0, "{run:#?}");
}

#[test]
fn verbose_lists_each_skipped_file_with_its_reason() {
    let (r, _) = scripted();
    let run = r.kubeward(&["--format", "json", "--verbose"]).ok();
    assert!(run.stderr.contains(
        "kubeward: skipped charts/app/templates/role.yaml: Helm template ({{ }}): render it first"
    ), "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "kubeward: skipped .github/workflows/ci.yml: not a Kubernetes manifest (no kind)"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn odd_inputs_are_skipped_not_fatal() {
    let mut r = Repo::new();
    r.write("bin.yaml", "\0\u{1}\u{2}binary");
    r.write(
        "bad.yaml",
        "kind: ClusterRole\nmetadata: {name: x\nrules: [",
    );
    r.write("ok.json", r#"{"kind":"List","items":[{"kind":"ClusterRole","metadata":{"name":"j"},"rules":[{"apiGroups":["*"],"resources":["*"],"verbs":["*"]}]}]}"#);
    std::fs::write(r.path().join("latin1.yml"), b"kind: Role\nname: caf\xe9\n").expect("write");
    r.write(
        "k/kustomization.yaml",
        "resources: [role.yaml]\npatches:\n- path: patch.yaml\n",
    );
    r.write("k/patch.yaml", "kind: ClusterRole\nmetadata: {name: deployer}\nrules:\n- apiGroups: ['']\n  resources: [pods]\n  verbs: ['*']\n");
    // A symlink to a manifest (Git stores the link, not the file) and a submodule entry:
    // neither is a manifest to read.
    #[cfg(unix)]
    std::os::unix::fs::symlink("ok.json", r.path().join("link.json")).expect("symlink");
    r.git(&["add", "-A"], ALICE);
    r.git(
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            "160000,1111111111111111111111111111111111111111,vendor/sub.yaml",
        ],
        ALICE,
    );
    // Committed directly: `git add -A` (in `commit`) would drop the worktree-less gitlink.
    r.tick += 1;
    r.git(&["commit", "-q", "-m", "odd files"], ALICE);
    let tree = r.git(&["ls-tree", "-r", "HEAD"], ALICE);
    assert!(tree.contains("160000 commit"), "{tree}");
    #[cfg(unix)]
    assert!(tree.contains("120000 blob"), "{tree}");
    let run = r.kubeward(&["--format", "json", "--verbose"]).ok();
    let all = run.alerts();
    assert_eq!(all.len(), 1, "{run:#?}");
    assert_eq!(all[0]["role"], "j");
    assert_eq!(all[0]["line"], 1);
    for want in [
        "skipped bin.yaml: binary file",
        "skipped latin1.yml: not UTF-8 text",
        "skipped k/kustomization.yaml: Kustomize kustomization file",
    ] {
        assert!(run.stderr.contains(want), "{want}: {}", run.stderr);
    }
    assert!(
        run.stderr.contains("skipped bad.yaml: invalid YAML"),
        "{}",
        run.stderr
    );
}

#[test]
fn clear_errors_for_bad_repositories_and_revisions() {
    let plain = tempfile::tempdir().expect("temp dir");
    let run = run(&["git", plain.path().to_str().expect("UTF-8")], b"");
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("not a git repository"), "{run:#?}");
    let (r, _) = scripted();
    let bad = r.kubeward(&["--rev", "no-such-branch"]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("bad revision 'no-such-branch'"),
        "{bad:#?}"
    );
    let bad = r.kubeward(&["--since", "last tuesday"]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("bad --since 'last tuesday'"),
        "{bad:#?}"
    );
    let empty = Repo::new();
    let e = empty.kubeward(&[]);
    assert_eq!(e.code, 2);
    assert!(e.stderr.contains("no commits yet"), "{e:#?}");
    assert!(!e.stderr.contains("panicked"));
}

#[test]
fn help_teaches_with_examples() {
    let h = run(&["git", "--help"], b"").ok();
    for want in [
        "kubeward git --role pod-exec",
        "--rev origin/main..HEAD --exit-code 1",
        "aggregation-label",
        "--all-parents",
    ] {
        assert!(h.stdout.contains(want), "{want}: {}", h.stdout);
    }
}

#[test]
fn an_object_defined_in_two_places_is_followed_in_each() {
    let read = "kind: ClusterRole\napiVersion: rbac.authorization.k8s.io/v1\nmetadata: {name: ci}\nrules:\n- {apiGroups: [''], resources: [pods], verbs: [get]}\n";
    let write = "kind: ClusterRole\napiVersion: rbac.authorization.k8s.io/v1\nmetadata: {name: ci}\nrules:\n- {apiGroups: [''], resources: [pods], verbs: [get, create]}\n";
    let mut r = Repo::new();
    r.write("envs/dev/ci.yaml", read);
    r.write("envs/prod/ci.yaml", read);
    r.commit("ci role in both environments", ALICE);
    // The copy that sorts last changes: it must not hide behind the first.
    r.write("envs/prod/ci.yaml", write);
    let widen = r.commit("prod ci may create pods", BOB);
    std::fs::remove_file(r.path().join("envs/dev/ci.yaml")).expect("rm");
    r.write("envs/dev/rbac/ci.yaml", read);
    r.commit("move dev's copy", CAROL);
    let run = r.kubeward(&["--format", "json"]).ok();
    let all = run.alerts();
    assert_eq!(all.len(), 1, "{run:#?}");
    assert_eq!(all[0]["commit"], json!(widen));
    assert_eq!(all[0]["change"], "widened");
    assert_eq!(all[0]["file"], "envs/prod/ci.yaml");
}

#[test]
fn a_deleted_role_added_again_is_introduced_again() {
    let role = "kind: Role\napiVersion: rbac.authorization.k8s.io/v1\nmetadata: {name: janitor, namespace: ops}\nrules:\n- {apiGroups: [''], resources: [pods], verbs: [deletecollection]}\n";
    let mut r = Repo::new();
    r.write("a/deep/er/still/deeper/role.yaml", role);
    let first = r.commit("janitor", ALICE);
    std::fs::remove_file(r.path().join("a/deep/er/still/deeper/role.yaml")).expect("rm");
    let gone = r.commit("drop janitor", BOB);
    r.write("role.yaml", role);
    let again = r.commit("janitor is back", CAROL);
    let run = r.kubeward(&["--format", "json"]).ok();
    let got: Vec<Value> = run
        .alerts()
        .iter()
        .map(|f| json!([f["commit"], f["change"], f["file"], f["namespaced"]]))
        .collect();
    assert_eq!(
        got,
        vec![
            json!([
                first,
                "introduced",
                "a/deep/er/still/deeper/role.yaml",
                true
            ]),
            json!([again, "introduced", "role.yaml", true]),
        ]
    );
    let story = r
        .kubeward(&["--format", "json", "--role", "ops/janitor"])
        .ok();
    let changes: Vec<Value> = story
        .alerts()
        .iter()
        .map(|f| json!([f["commit"], f["change"]]))
        .collect();
    assert_eq!(
        changes,
        vec![
            json!([first, "introduced"]),
            json!([gone, "deleted"]),
            json!([again, "introduced"]),
        ]
    );
}

#[test]
fn helm_and_patch_words_in_a_comment_do_not_hide_a_new_role() {
    let mut r = Repo::new();
    r.write(
        "rbac/role.yaml",
        "# {{ not helm }}\n# $patch: none\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: hidden\nrules:\n- {apiGroups: [''], resources: [pods], verbs: [create]}\n",
    );
    let id = r.commit("a role behind a comment", BOB);
    let run = r.kubeward(&["--format", "json"]).ok();
    let got: Vec<Value> = run
        .alerts()
        .iter()
        .map(|f| json!([f["commit"], f["change"], f["role"], f["line"]]))
        .collect();
    assert_eq!(
        got,
        vec![json!([id, "introduced", "hidden", 3])],
        "{run:#?}"
    );
}

#[test]
fn all_parents_does_not_credit_a_conflict_merge_with_what_a_parent_granted() {
    let role = |verbs: &str| {
        format!("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: ops\nrules:\n- apiGroups: ['']\n  resources: [pods]\n  verbs: [{verbs}]\n")
    };
    let binding = |who: &[&str]| {
        let subjects: String = who
            .iter()
            .map(|w| format!("- {{kind: User, name: {w}, apiGroup: rbac.authorization.k8s.io}}\n"))
            .collect();
        format!("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: ops\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: ops}}\nsubjects:\n{subjects}")
    };
    let mut r = Repo::new();
    r.write("rbac/ops.yaml", &role("get"));
    r.write("rbac/bind.yaml", &binding(&["dave"]));
    r.commit("ops may read pods", ALICE);
    r.git(&["checkout", "-q", "-b", "feature"], BOB);
    r.write("rbac/ops.yaml", &role("get, create"));
    r.write("rbac/bind.yaml", &binding(&["dave", "bob"]));
    let branch = r.commit("ops may create pods; bind bob", BOB);
    r.git(&["checkout", "-q", "main"], ALICE);
    r.write("rbac/ops.yaml", &role("get, delete"));
    r.write("rbac/bind.yaml", &binding(&["dave", "alice"]));
    let main = r.commit("ops may delete pods; bind alice", ALICE);
    // Both sides changed the same lines: the merge resolves the conflict by keeping both.
    r.tick += 1;
    r.git(
        &[
            "merge",
            "-q",
            "--no-ff",
            "--no-commit",
            "-s",
            "ours",
            "feature",
        ],
        FRANK,
    );
    r.write("rbac/ops.yaml", &role("get, delete, create"));
    r.write("rbac/bind.yaml", &binding(&["dave", "alice", "bob"]));
    let merge = r.commit("Merge branch 'feature'", FRANK);
    assert_eq!(
        r.git(&["rev-list", "--parents", "-n", "1", "HEAD"], FRANK)
            .split_whitespace()
            .count(),
        3,
        "a merge commit"
    );
    let facts = |run: &Run| -> Vec<Value> {
        run.alerts()
            .iter()
            .map(|f| {
                let caps: Vec<&str> = f["newly_granted"]
                    .as_array()
                    .expect("newly_granted")
                    .iter()
                    .map(|g| g["capability_id"].as_str().expect("capability_id"))
                    .collect();
                let added: Vec<&str> = f["subjects_added"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|s| s["name"].as_str().expect("name"))
                            .collect()
                    })
                    .unwrap_or_default();
                json!([f["commit"], f["change"], f["kind"], caps, added])
            })
            .collect()
    };
    let all = r.kubeward(&["--format", "json", "--all-parents"]).ok();
    assert_eq!(
        facts(&all),
        vec![
            json!([branch, "widened", "ClusterRole", ["create-pods"], []]),
            json!([
                branch,
                "bound",
                "ClusterRoleBinding",
                ["create-pods"],
                ["bob"]
            ]),
            json!([main, "widened", "ClusterRole", ["delete-pods"], []]),
            json!([
                main,
                "bound",
                "ClusterRoleBinding",
                ["delete-pods"],
                ["alice"]
            ]),
        ],
        "the merge grants nothing a parent did not: {all:#?}"
    );
    // Its rules differ from both parents', so the role's story still shows the merge.
    let story = r
        .kubeward(&["--format", "json", "--all-parents", "--role", "ops"])
        .ok();
    let merges: Vec<Value> = facts(&story)
        .into_iter()
        .filter(|f| f[0] == json!(merge))
        .collect();
    assert_eq!(
        merges,
        vec![json!([merge, "rules-changed", "ClusterRole", [], []])],
        "{story:#?}"
    );
    // First parent only, the merge is the change that brought the branch's grants to main.
    let first = r.kubeward(&["--format", "json"]).ok();
    let on_merge: Vec<Value> = facts(&first)
        .into_iter()
        .filter(|f| f[0] == json!(merge))
        .collect();
    assert_eq!(
        on_merge,
        vec![
            json!([merge, "widened", "ClusterRole", ["create-pods"], []]),
            json!([
                merge,
                "bound",
                "ClusterRoleBinding",
                ["create-pods", "delete-pods"],
                ["bob"]
            ]),
        ],
        "{first:#?}"
    );
}

/// (commit, change, kind, namespace, name) of each finding.
fn story(run: &Run) -> Vec<Value> {
    run.alerts()
        .iter()
        .map(|f| {
            json!([
                f["commit"],
                f["change"],
                f["kind"],
                f["namespace"],
                f["name"]
            ])
        })
        .collect()
}

#[test]
fn role_story_of_a_bootstrap_role_shows_its_bindings() {
    let rb = |who: &[&str]| {
        let subjects: String = who
            .iter()
            .map(|w| format!("- {{kind: Group, name: {w}, apiGroup: rbac.authorization.k8s.io}}\n"))
            .collect();
        format!("apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: devs-edit, namespace: dev}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}}\nsubjects:\n{subjects}")
    };
    let mut r = Repo::new();
    r.write("rbac/readme.yaml", "kind: ConfigMap\nmetadata: {name: x}\n");
    r.commit("start", ALICE);
    r.write("rbac/devs.yaml", &rb(&["devs", "contractors"]));
    let bind = r.commit("devs may edit dev", BOB);
    r.write("rbac/devs.yaml", &rb(&["devs"]));
    let unbind = r.commit("contractors may not", CAROL);
    // Default mode reports the binding of Kubernetes' own edit role.
    let all = r.kubeward(&["--format", "json"]).ok();
    assert_eq!(
        story(&all),
        vec![json!([bind, "bound", "RoleBinding", "dev", "devs-edit"])]
    );
    // No commit introduces edit, yet its story holds its bindings.
    let edit = r.kubeward(&["--format", "json", "--role", "edit"]).ok();
    assert_eq!(
        story(&edit),
        vec![
            json!([bind, "bound", "RoleBinding", "dev", "devs-edit"]),
            json!([unbind, "binding-changed", "RoleBinding", "dev", "devs-edit"]),
        ],
        "{edit:#?}"
    );
    // Walking only the last commit: edit granted pod write all along.
    let since = (BASE + 3 * 3600).to_string();
    let late = r
        .kubeward(&["--format", "json", "--role", "edit", "--since", &since])
        .ok();
    assert_eq!(
        story(&late),
        vec![json!([
            unbind,
            "binding-changed",
            "RoleBinding",
            "dev",
            "devs-edit"
        ])],
        "{late:#?}"
    );
}

#[test]
fn role_story_keeps_what_happened_before_the_first_grant_in_the_window_and_tells_roles_apart() {
    let role = |kind: &str, ns: &str, verbs: &str| {
        format!("apiVersion: rbac.authorization.k8s.io/v1\nkind: {kind}\nmetadata: {{name: ops{ns}}}\nrules:\n- {{apiGroups: [''], resources: [pods], verbs: [{verbs}]}}\n")
    };
    let mut r = Repo::new();
    r.write(
        "cluster/ops.yaml",
        &role("ClusterRole", "", "create, delete"),
    );
    r.write(
        "other/ops.yaml",
        &role("Role", ", namespace: other", "delete"),
    );
    let intro = r.commit("ops roles", ALICE);
    r.write("cluster/bind.yaml", "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: ops}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: ops}\nsubjects: [{kind: User, name: dave, apiGroup: rbac.authorization.k8s.io}]\n");
    // In namespace other: one binding of the Role ops, one of the ClusterRole ops.
    r.write("other/bind.yaml", "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: ops-role, namespace: other}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: ops}\nsubjects: [{kind: User, name: erin, apiGroup: rbac.authorization.k8s.io}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: ops-cluster, namespace: other}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: ops}\nsubjects: [{kind: User, name: frank, apiGroup: rbac.authorization.k8s.io}]\n");
    let bind = r.commit("bind ops", BOB);
    r.write("cluster/ops.yaml", &role("ClusterRole", "", "create"));
    let narrow = r.commit("ops may no longer delete", CAROL);
    r.write(
        "cluster/ops.yaml",
        &role("ClusterRole", "", "create, deletecollection"),
    );
    r.write(
        "other/ops.yaml",
        &role("Role", ", namespace: other", "delete, create"),
    );
    let widen = r.commit("ops may delete all pods; other/ops may create", ALICE);
    r.write(
        "other/ops.yaml",
        &role("Role", ", namespace: other", "delete, create, patch"),
    );
    let widen_role = r.commit("other/ops may patch", BOB);
    let cluster_story = vec![
        json!([bind, "bound", "ClusterRoleBinding", "", "ops"]),
        json!([bind, "bound", "RoleBinding", "other", "ops-cluster"]),
        json!([narrow, "rules-changed", "ClusterRole", "", "ops"]),
        json!([widen, "widened", "ClusterRole", "", "ops"]),
    ];
    let run = r.kubeward(&["--format", "json", "--role", "ops"]).ok();
    let mut want = vec![json!([intro, "introduced", "ClusterRole", "", "ops"])];
    want.extend(cluster_story.iter().cloned());
    assert_eq!(story(&run), want, "{run:#?}");
    // From the binding on: the role was introduced before the window, so the bindings and the
    // narrowing before the first widening in the window are part of its story.
    let since = (BASE + 2 * 3600).to_string();
    let run = r
        .kubeward(&["--format", "json", "--role", "ops", "--since", &since])
        .ok();
    assert_eq!(story(&run), cluster_story, "{run:#?}");
    // The Role other/ops is another role.
    let run = r
        .kubeward(&["--format", "json", "--role", "other/ops", "--since", &since])
        .ok();
    assert_eq!(
        story(&run),
        vec![
            json!([bind, "bound", "RoleBinding", "other", "ops-role"]),
            json!([widen, "widened", "Role", "other", "ops"]),
            json!([widen_role, "widened", "Role", "other", "ops"]),
        ],
        "{run:#?}"
    );
    let bad = r.kubeward(&["--role", "a/b/c"]);
    assert_eq!(bad.code, 2, "{bad:#?}");
    assert!(
        bad.stderr.contains(
            "bad --role 'a/b/c': expected NAME (a ClusterRole) or NAMESPACE/NAME (a Role)"
        ),
        "{bad:#?}"
    );
}
