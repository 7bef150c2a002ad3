//! `kubeward scan`: real manifests of other projects (tests/fixtures/rbac, provenance in
//! tests/fixtures/SOURCES.md; the pod-write roles among them are listed in the team corpus's
//! SOURCES-rbac.md §4), the Kubernetes bootstrap policy, SARIF, baselines and exit codes.

use crate::util::{fixture, run, write, Run};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;

fn scan(args: &[&str]) -> Run {
    let mut all = vec!["scan"];
    all.extend_from_slice(args);
    run(&all, b"")
}

fn rbac_fixtures() -> String {
    fixture("rbac").to_str().expect("UTF-8 path").to_string()
}

/// (rule, file relative to tests/fixtures/rbac, line, kind, namespace, name) of each finding.
fn facts(run: &Run) -> BTreeSet<(String, String, u64, String, String, String)> {
    let root = format!("{}/", rbac_fixtures());
    run.alerts()
        .iter()
        .map(|f| {
            (
                f["rule_id"].as_str().expect("rule_id").to_string(),
                f["file"]
                    .as_str()
                    .expect("file")
                    .trim_start_matches(&root)
                    .to_string(),
                f["line"].as_u64().expect("line"),
                f["kind"].as_str().expect("kind").to_string(),
                f["namespace"].as_str().expect("namespace").to_string(),
                f["name"].as_str().expect("name").to_string(),
            )
        })
        .collect()
}

fn role_names(run: &Run) -> BTreeSet<(String, String, String)> {
    facts(run)
        .into_iter()
        .filter(|f| f.0 == "pod-write-role")
        .map(|f| (f.3, f.4, f.5))
        .collect()
}

fn t(kind: &str, ns: &str, name: &str) -> (String, String, String) {
    (kind.into(), ns.into(), name.into())
}

#[test]
fn corpus_pod_write_roles_are_the_documented_ones() {
    let run = scan(&[&rbac_fixtures(), "--format", "json"]).ok();
    // SOURCES-rbac.md §4, "Other real manifests in the corpus with pod write", for the files
    // copied here; plus two Roles it does not list but that follow from the definition:
    // kubescape's role-rolebinding `test` (create pods) and rbac-tool's policyrules roles (get
    // on every core resource, which includes pods/exec: exec before Kubernetes 1.35).
    let expected: BTreeSet<_> = [
        t("ClusterRole", "", "argocd-application-controller"),
        t("ClusterRole", "", "argocd-server"),
        t("ClusterRole", "", "prometheus-operator"), // prometheus-operator and kube-prometheus
        t("Role", "default", "admin"),
        t("Role", "vault", "admin"),
        t("Role", "default", "create-pods"),
        t("Role", "default", "exec-pods"),
        t("Role", "default", "patch-pods"),
        t("ClusterRole", "", "test-aggregate"), // only through aggregation
        t("ClusterRole", "", "test-clusterrole-create"),
        t("Role", "test", "pod-creator"),
        t("Role", "kube-system", "test"),
        t("Role", "policyrules", "some-rules"),
        t("Role", "policyrules", "more-rules"),
    ]
    .into_iter()
    .collect();
    assert_eq!(role_names(&run), expected, "{}", run.stdout);
    let all = facts(&run);
    // Both copies of prometheus-operator (two projects) are reported, each at its own file.
    let prom: Vec<_> = all
        .iter()
        .filter(|f| f.0 == "pod-write-role" && f.5 == "prometheus-operator")
        .map(|f| f.1.as_str())
        .collect();
    assert_eq!(
        prom,
        vec![
            "kube-prometheus/manifests/prometheusOperator-clusterRole.yaml",
            "prometheus-operator/example/rbac/prometheus-operator/prometheus-operator-cluster-role.yaml"
        ]
    );
    // The traps stay quiet: kubescape's `pods/*` (no real subresource), pods in the RBAC
    // group, metrics.k8s.io pods (kube-prometheus), rbac-manager's escalation-only role.
    for name in [
        "secret-reader",
        "system:aggregated-metrics-reader",
        "rbac-manager",
    ] {
        assert!(!all.iter().any(|f| f.5 == name), "{name} is not pod write");
    }
    assert!(!all
        .iter()
        .any(|f| f.3 == "ClusterRole" && f.5 == "test" && f.0 == "pod-write-role"));
    // Bindings of those roles, with their lines in multi-document files.
    for want in [
        (
            "pod-write-binding",
            "kubehound/test/setup/test-cluster/attacks/POD_CREATE.yaml",
            18,
            "RoleBinding",
            "default",
            "pod-create-pods",
        ),
        (
            "pod-write-role",
            "kubehound/test/setup/test-cluster/attacks/POD_CREATE.yaml",
            8,
            "Role",
            "default",
            "create-pods",
        ),
        (
            "pod-write-binding",
            "rbac-tool/testdata/whocan/clusterrole-aggregate.yaml",
            56,
            "ClusterRoleBinding",
            "",
            "aggregate-pod-creator",
        ),
    ] {
        let w = (
            want.0.to_string(),
            want.1.to_string(),
            want.2,
            want.3.to_string(),
            want.4.to_string(),
            want.5.to_string(),
        );
        assert!(all.contains(&w), "{want:?} in {all:#?}");
    }
    // Every finding points at the line that starts its object, or at its name.
    for f in run.alerts() {
        let text = std::fs::read_to_string(f["file"].as_str().unwrap()).unwrap();
        let line = text
            .lines()
            .nth(f["line"].as_u64().unwrap() as usize - 1)
            .unwrap();
        let name = f["name"].as_str().unwrap();
        assert!(
            line.starts_with("apiVersion:") || line.starts_with("kind:") || line.contains(name),
            "{f}: line is {line:?}"
        );
    }
    assert!(
        run.stderr.contains("skipped: kustomization 4"),
        "{}",
        run.stderr
    );
}

#[test]
fn kubernetes_bootstrap_pod_writers_match_the_hand_worked_list() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../rbac/data/kubernetes-bootstrap"
    );
    let run = scan(&[dir, "--format", "json"]).ok();
    let got: BTreeSet<String> = run
        .alerts()
        .iter()
        .filter(|f| f["rule_id"] == "pod-write-role")
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    let want: BTreeSet<String> = std::fs::read_to_string(fixture(
        "rbac/expected/kubernetes-bootstrap-pod-writers.txt",
    ))
    .unwrap()
    .lines()
    .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    .map(str::to_string)
    .collect();
    assert_eq!(got, want);
}

#[test]
fn exec_via_get_depends_on_the_kube_version() {
    let file = fixture("rbac/rbac-tool/testdata/policyrules/multiple-role-bindings.yaml");
    let file = file.to_str().unwrap();
    let old = scan(&[file, "--format", "json"]).ok();
    assert_eq!(old.alerts().len(), 4, "{old:#?}");
    let new = scan(&[file, "--format", "json", "--kube-version", "1.35"]).ok();
    assert!(new.alerts().is_empty(), "{new:#?}");
}

#[test]
fn sarif_points_at_the_manifest_lines() {
    let dir = fixture("rbac/kubehound").to_str().unwrap().to_string();
    let json_run = scan(&[&dir, "--format", "json"]).ok();
    let run = scan(&[&dir, "--format", "sarif"]).ok();
    let docs = run.values();
    assert_eq!(docs.len(), 1);
    let sarif = &docs[0];
    assert_eq!(sarif["version"], "2.1.0");
    assert_eq!(
        sarif["$schema"],
        "https://json.schemastore.org/sarif-2.1.0.json"
    );
    let driver = &sarif["runs"][0]["tool"]["driver"];
    assert_eq!(driver["name"], "kubeward");
    let rule_ids: Vec<&str> = driver["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(rule_ids, vec!["pod-write-role", "pod-write-binding"]);
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    let findings = json_run.alerts();
    assert_eq!(results.len(), findings.len());
    assert_eq!(results.len(), 8);
    for (r, f) in results.iter().zip(&findings) {
        assert_eq!(r["ruleId"], f["rule_id"]);
        assert_eq!(
            driver["rules"][r["ruleIndex"].as_u64().unwrap() as usize]["id"],
            r["ruleId"]
        );
        let loc = &r["locations"][0]["physicalLocation"];
        // An absolute path (the fixture's) is a file:// URI; its characters need no escape.
        let file = f["file"].as_str().unwrap();
        assert!(file.starts_with('/'), "{file}");
        assert_eq!(loc["artifactLocation"]["uri"], format!("file://{file}"));
        assert_eq!(loc["region"]["startLine"], f["line"]);
        assert!(r["message"]["text"]
            .as_str()
            .unwrap()
            .contains(f["name"].as_str().unwrap()));
        assert!(matches!(r["level"].as_str(), Some("error" | "warning")));
    }
    // create pods runs code: an error; the exec role too.
    let create = results
        .iter()
        .find(|r| {
            r["message"]["text"]
                .as_str()
                .unwrap()
                .starts_with("Role default/create-pods")
        })
        .expect("create-pods result");
    assert_eq!(create["level"], "error");
    assert_eq!(
        create["locations"][0]["physicalLocation"]["region"]["startLine"],
        json!(8)
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

#[test]
fn baseline_accepts_todays_roles_and_fails_on_new_grants() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    copy_dir(&fixture("rbac/rbac-tool/testdata/whocan"), &tree);
    let tree_s = tree.to_str().unwrap();
    let base = tmp.path().join("baseline.json");
    let base_s = base.to_str().unwrap();
    let w = scan(&[tree_s, "--write-baseline", base_s]).ok();
    assert!(w.stdout.is_empty());
    assert!(
        w.stderr.contains("wrote 5 findings to the baseline"),
        "{}",
        w.stderr
    );
    let b: Value = serde_json::from_str(&std::fs::read_to_string(&base).unwrap()).unwrap();
    assert_eq!(b["kubeward_baseline"], 1);
    // Nothing new: nothing reported, exit 0 even with --exit-code.
    let same = scan(&[
        tree_s,
        "--baseline",
        base_s,
        "--exit-code",
        "1",
        "--format",
        "json",
    ]);
    assert_eq!(same.code, 0, "{same:#?}");
    assert!(same.stdout.is_empty());
    assert!(
        same.summary().contains("5 accepted by the baseline, 0 new"),
        "{}",
        same.stderr
    );
    // A new role, a widened one (and so its binding, which now hands out more) and a binding
    // given a new subject fail the check.
    write(
        &tree,
        "new.yaml",
        "kind: ClusterRole\napiVersion: rbac.authorization.k8s.io/v1\nmetadata: {name: newcomer}\nrules:\n- {apiGroups: [''], resources: [pods/exec], verbs: [create]}\n",
    );
    let pc = tree.join("pod-creator.yaml");
    let text = std::fs::read_to_string(&pc).unwrap();
    let widened = text.replacen(
        "verbs: [\"create\", \"update\"",
        "verbs: [\"create\", \"update\", \"delete\"",
        1,
    );
    assert_ne!(text, widened, "the fixture's rule line changed");
    std::fs::write(&pc, widened).unwrap();
    let agg = tree.join("clusterrole-aggregate.yaml");
    let text = std::fs::read_to_string(&agg).unwrap();
    let more = text.replacen(
        "subjects:\n",
        "subjects:\n  - kind: Group\n    name: everyone-else\n    apiGroup: rbac.authorization.k8s.io\n",
        1,
    );
    assert_ne!(text, more);
    std::fs::write(&agg, more).unwrap();
    let new = scan(&[
        tree_s,
        "--baseline",
        base_s,
        "--exit-code",
        "1",
        "--format",
        "json",
    ]);
    assert_eq!(new.code, 1, "{new:#?}");
    let names: Vec<(String, String)> = new
        .alerts()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().into(),
                f["name"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            ("ClusterRoleBinding".into(), "aggregate-pod-creator".into()),
            ("ClusterRole".into(), "newcomer".into()),
            ("Role".into(), "pod-creator".into()),
            ("RoleBinding".into(), "pod-creator".into()),
        ]
    );
    let bad = scan(&[
        tree_s,
        "--baseline",
        tree.join("new.yaml").to_str().unwrap(),
    ]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("not a kubeward baseline"), "{bad:#?}");
}

#[test]
fn text_lines_exit_codes_and_skips() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(d, "role.yaml", "# a role\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: debugger\n  namespace: dev\nrules:\n- apiGroups: ['']\n  resources: [pods/ephemeralcontainers]\n  verbs: [patch]\n");
    write(d, "binding.yaml", "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: devs-edit, namespace: dev}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}\nsubjects:\n- {kind: Group, name: devs, apiGroup: rbac.authorization.k8s.io}\n");
    std::fs::create_dir_all(d.join("chart/templates")).unwrap();
    write(
        &d.join("chart/templates"),
        "role.yaml",
        "kind: ClusterRole\nmetadata:\n  name: {{ .Release.Name }}\n",
    );
    write(d, "notes.json", "[1, 2, 3]");
    write(d, "README.md", "not read");
    let dir = d.to_str().unwrap();
    let run = scan(&[dir, "--format", "text", "--verbose", "--exit-code", "7"]);
    assert_eq!(run.code, 7, "{run:#?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines,
        vec![
            format!("{dir}/binding.yaml:1: RoleBinding dev/devs-edit binds ClusterRole edit, Kubernetes bootstrap role (pod write) to Group devs: create pods; modify pods (update/patch); delete pods; delete all pods (deletecollection); exec into pods; attach to pods; port-forward to pods; evict pods; proxy to pods"),
            format!("{dir}/role.yaml:2: Role dev/debugger grants pod write: add ephemeral (debug) containers to pods"),
        ]
    );
    assert!(
        run.stderr
            .contains("chart/templates/role.yaml: Helm template ({{ }}): render it first"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("notes.json: not a Kubernetes manifest"),
        "{}",
        run.stderr
    );
    assert!(
        run.summary().contains("4 files read, 2 skipped"),
        "{}",
        run.stderr
    );
    let none = scan(&[
        fixture("rbac/rbac-manager").to_str().unwrap(),
        "--exit-code",
        "7",
    ]);
    assert_eq!(none.code, 0, "{none:#?}");
    let missing = scan(&["/no/such/dir"]);
    assert_eq!(missing.code, 2);
    assert!(missing
        .stderr
        .contains("/no/such/dir: no such file or directory"));
}

#[test]
fn help_teaches_with_examples() {
    let h = run(&["scan", "--help"], b"").ok();
    for want in [
        "--format sarif",
        "--write-baseline",
        "--baseline",
        "--exit-code",
    ] {
        assert!(h.stdout.contains(want), "{want}: {}", h.stdout);
    }
}

#[cfg(unix)]
#[test]
fn symlink_loops_and_fifos_do_not_hang_the_scan() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(d, "role.yaml", "kind: ClusterRole\nmetadata: {name: r}\nrules: [{apiGroups: [''], resources: [pods], verbs: [create]}]\n");
    std::os::unix::fs::symlink(d, d.join("loop")).unwrap();
    std::os::unix::fs::symlink(d.join("role.yaml"), d.join("linked.yaml")).unwrap();
    let fifo = d.join("pipe.yaml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .map(|s| s.success());
    let run = scan(&[d.to_str().unwrap(), "--format", "json"]).ok();
    // The role, and the same role through the file link; nothing through the loop.
    assert_eq!(run.alerts().len(), 2, "{run:#?}");
    if made.unwrap_or(false) {
        assert!(run.summary().contains("2 files read"), "{}", run.stderr);
    }
}

#[test]
fn template_and_patch_words_in_comments_or_strings_do_not_hide_a_role() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let role = |name: &str| {
        format!("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {name}\nrules:\n- apiGroups: ['']\n  resources: [pods]\n  verbs: [create]\n")
    };
    write(
        d,
        "a.yaml",
        format!("# {{{{ not helm }}}}\n{}", role("commented-helm")),
    );
    write(
        d,
        "b.yaml",
        format!("# $patch: none\n{}", role("commented-patch")),
    );
    write(
        d,
        "c.yaml",
        role("annotated").replace(
            "  name: annotated\n",
            "  name: annotated\n  annotations:\n    note: \"rendered from {{ .Values.x }}; $patch: delete\"\n",
        ),
    );
    // The real things are still skipped.
    write(
        d,
        "helm.yaml",
        "kind: ClusterRole\nmetadata:\n  name: {{ .Release.Name }}\n",
    );
    write(
        d,
        "patch.yaml",
        "kind: ClusterRole\nmetadata: {name: x}\n$patch: delete\n",
    );
    let run = scan(&[d.to_str().unwrap(), "--format", "json", "--verbose"]).ok();
    let names: BTreeSet<String> = run
        .alerts()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    let want: BTreeSet<String> = ["annotated", "commented-helm", "commented-patch"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(names, want, "{run:#?}");
    assert!(
        run.summary()
            .contains("2 skipped: helm-template 1, kustomize-patch 1"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_fresh_baseline_accepts_an_object_defined_twice_with_different_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    let role = |verbs: &str| {
        format!("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: ops}}\nrules:\n- {{apiGroups: [''], resources: [pods], verbs: [{verbs}]}}\n")
    };
    let binding = |who: &str| {
        format!("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: ops}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: ops}}\nsubjects:\n- {{kind: Group, name: {who}, apiGroup: rbac.authorization.k8s.io}}\n")
    };
    std::fs::create_dir_all(tree.join("envs/dev")).unwrap();
    std::fs::create_dir_all(tree.join("envs/prod")).unwrap();
    // The copy that sorts last is the narrower one: a baseline keyed by object alone, last
    // entry winning, would refuse dev's copy of the unchanged tree.
    let dev = tree.join("envs/dev");
    let prod = tree.join("envs/prod");
    write(
        &dev,
        "ops.yaml",
        format!(
            "{}---\n{}",
            role("get, create, delete"),
            binding("dev-team")
        ),
    );
    write(
        &prod,
        "ops.yaml",
        format!("{}---\n{}", role("get, delete"), binding("sre")),
    );
    let tree_s = tree.to_str().unwrap();
    let base = tmp.path().join("b.json");
    let base_s = base.to_str().unwrap();
    scan(&[tree_s, "--write-baseline", base_s]).ok();
    let check = || {
        scan(&[
            tree_s,
            "--baseline",
            base_s,
            "--exit-code",
            "3",
            "--format",
            "json",
        ])
    };
    let same = check();
    assert_eq!(same.code, 0, "{same:#?}");
    assert!(same.stdout.is_empty(), "{}", same.stdout);
    assert!(
        same.summary().contains("4 accepted by the baseline, 0 new"),
        "{}",
        same.stderr
    );
    // The narrower copy growing into the wider one's grants is still new for that copy.
    write(
        &prod,
        "ops.yaml",
        format!("{}---\n{}", role("get, create, delete"), binding("sre")),
    );
    let grown = check();
    assert_eq!(grown.code, 3, "{grown:#?}");
    let files: Vec<String> = grown
        .alerts()
        .iter()
        .map(|f| {
            format!(
                "{} {}",
                f["kind"].as_str().unwrap(),
                f["file"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        files,
        vec![
            format!("ClusterRole {tree_s}/envs/prod/ops.yaml"),
            format!("ClusterRoleBinding {tree_s}/envs/prod/ops.yaml"),
        ]
    );
    // A copy that moved is held to its object's entries: still accepted as it was.
    write(
        &prod,
        "ops.yaml",
        format!("{}---\n{}", role("get, delete"), binding("sre")),
    );
    std::fs::rename(prod.join("ops.yaml"), prod.join("moved.yaml")).unwrap();
    let moved = check();
    assert_eq!(moved.code, 0, "{moved:#?}");
}

#[test]
fn sarif_uris_are_percent_encoded_and_relative_paths_stay_relative() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("in fra");
    std::fs::create_dir_all(d.join("ops #1")).unwrap();
    write(
        &d.join("ops #1"),
        "r\u{f4}le 100%.yaml",
        "kind: ClusterRole\nmetadata: {name: r}\nrules: [{apiGroups: [''], resources: [pods], verbs: [create]}]\n",
    );
    let uris = |cwd: &Path, path: &str| -> Vec<Value> {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubeward"))
            .args(["scan", path, "--format", "sarif"])
            .current_dir(cwd)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let sarif: Value = serde_json::from_slice(&out.stdout).unwrap();
        sarif["runs"][0]["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["locations"][0]["physicalLocation"]["artifactLocation"].clone())
            .collect()
    };
    let relative = vec![json!({
        "uri": "in%20fra/ops%20%231/r%C3%B4le%20100%25.yaml",
        "uriBaseId": "%SRCROOT%"
    })];
    assert_eq!(uris(tmp.path(), "in fra"), relative);
    assert_eq!(uris(tmp.path(), "./in fra/"), relative);
    let tmp_s = tmp.path().to_str().unwrap();
    assert!(!tmp_s.contains([' ', '#', '%']), "{tmp_s}");
    assert_eq!(
        uris(tmp.path(), d.to_str().unwrap()),
        vec![json!({
            "uri": format!("file://{tmp_s}/in%20fra/ops%20%231/r%C3%B4le%20100%25.yaml")
        })]
    );
}
