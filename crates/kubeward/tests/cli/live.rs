//! `kubeward rbac ... --live` end to end, against the recorded API server of the cluster
//! crate's tests (loopback only).

#[path = "../../../cluster/tests/common/mod.rs"]
mod fake;

use crate::util::run;
use serde_json::Value;

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

#[test]
fn pod_writers_from_a_live_cluster() {
    let f = fake::fixture();
    let kc = f.kubeconfig.display().to_string();
    let r = run(
        &[
            "rbac",
            "pod-writers",
            "--live",
            "--kubeconfig",
            &kc,
            "--format",
            "json",
        ],
        b"",
    )
    .ok();
    let got: Vec<(String, String, Option<String>)> = json_lines(&r.stdout)
        .iter()
        .map(|v| {
            (
                v["kind"].as_str().unwrap().to_string(),
                v["name"].as_str().unwrap().to_string(),
                v["namespace"].as_str().map(str::to_string),
            )
        })
        .collect();
    // pod-writer (create/delete pods, create pods/exec) and the name-restricted pod-exec Role.
    assert_eq!(
        got,
        vec![
            ("ClusterRole".into(), "pod-writer".into(), None),
            ("Role".into(), "pod-exec".into(), Some("kube-system".into())),
        ]
    );
    let pw = &json_lines(&r.stdout)[0];
    assert_eq!(pw["bound_subjects"][0]["name"], "deployer");
    assert_eq!(pw["bound_subjects"][0]["namespace"], "ci");
    assert!(
        r.stderr
            .contains("loaded 4 roles and 2 bindings from the cluster"),
        "{}",
        r.stderr
    );
    // Paging followed the continue tokens, with alice's token.
    let seen = f.a.seen();
    assert!(
        seen.iter().any(|s| s.target.contains("continue=tok1")),
        "{seen:?}"
    );
    assert!(seen
        .iter()
        .all(|s| s.authorization.as_deref() == Some("Bearer token-alice")));
    assert!(f.b.seen().is_empty());
}

#[test]
fn who_can_with_another_context() {
    let f = fake::fixture();
    let kc = f.kubeconfig.display().to_string();
    let r = run(
        &[
            "rbac",
            "who-can",
            "get",
            "--url",
            "/healthz",
            "--live",
            "--kubeconfig",
            &kc,
            "--context",
            "gamma",
            "--format",
            "json",
        ],
        b"",
    )
    .ok();
    // Cluster B has a URL rule but no binding: only system:masters can.
    let names: Vec<String> = json_lines(&r.stdout)
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["system:masters".to_string()]);
    assert!(f.a.seen().is_empty());
    assert!(!f.b.seen().is_empty());
}

#[test]
fn live_errors_are_clear() {
    let f = fake::fixture();
    let kc = f.kubeconfig.display().to_string();
    // bob may not list clusterroles: the error names the URL and the status.
    let r = run(
        &[
            "rbac",
            "pod-writers",
            "--live",
            "--kubeconfig",
            &kc,
            "--context",
            "beta",
        ],
        b"",
    );
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("403") && r.stderr.contains("/clusterroles"),
        "{}",
        r.stderr
    );
    let r = run(
        &[
            "rbac",
            "pod-writers",
            "--live",
            "--kubeconfig",
            "/no/such/kubeconfig",
        ],
        b"",
    );
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("/no/such/kubeconfig"), "{}", r.stderr);
    // --kubeconfig only goes with --live; files and --live do not mix.
    assert_eq!(
        run(&["rbac", "pod-writers", "--kubeconfig", &kc, "x.yaml"], b"").code,
        2
    );
    let r = run(&["rbac", "pod-writers", "--live", "x.yaml"], b"");
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("not both"), "{}", r.stderr);
}
