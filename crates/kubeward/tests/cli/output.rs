//! Output: the JSON schema, the text block, colours, exit codes, the summary line.

use crate::util::{audit_id, detect, event, event_with_rules, jsonl, pod_get, run};
use serde_json::{json, Value};

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

#[test]
fn json_is_one_object_per_line() {
    let evs: Vec<Value> = (0..5)
        .map(|i| event(json!({"objectRef": {"name": format!("r{i}")}})))
        .collect();
    let r = detect(&evs, &[]).ok();
    assert!(r.stdout.ends_with('\n'));
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 5);
    for (i, l) in lines.iter().enumerate() {
        let v: Value = serde_json::from_str(l).unwrap();
        assert!(v.is_object());
        assert_eq!(v["role"], format!("r{i}"));
    }
}

#[test]
fn json_has_the_stable_fields() {
    let id = audit_id();
    let uri = "/apis/rbac.authorization.k8s.io/v1/clusterroles?fieldManager=kubectl-create";
    let rule = json!({"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]});
    let ev = event(json!({
        "auditID": id,
        "requestObject": {"rules": [
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
            rule,
        ]},
    }));
    let a = detect(&[ev], &[]).ok().alert();
    assert_eq!(a["rule_id"], "clusterrole-pod-write");
    assert_eq!(a["title"], "K8s Audit Log Cluster Role With Pod Write");
    assert_eq!(a["severity"], "high");
    assert_eq!(a["audit_id"], id.as_str());
    assert_eq!(a["time"], "2026-01-15T10:00:00.012345Z");
    assert_eq!(a["cluster"], Value::Null);
    assert_eq!(a["verb"], "create");
    assert_eq!(a["role"], "pod-writer");
    assert_eq!(
        a["actor"],
        json!({"username": "alice@example.com", "uid": "uid-alice", "groups": ["developers", "system:authenticated"]})
    );
    assert_eq!(a["impersonated_user"], Value::Null);
    assert_eq!(a["source_ips"], json!(["203.0.113.7", "10.0.0.1"]));
    assert_eq!(
        a["user_agent"],
        "kubectl/v1.34.1 (linux/amd64) kubernetes/abcdef"
    );
    assert_eq!(a["request_uri"], uri);
    assert_eq!(a["response_code"], 201);
    assert_eq!(a["rules_source"], "requestObject");
    assert_eq!(a["offending_rules"], json!([rule]));
    assert_eq!(
        a["grants"],
        json!([{
            "capability": "exec into pods",
            "capability_id": "exec",
            "verbs": ["create"],
            "resources": ["pods/exec"],
            "resource_names": [],
            "rules": [1],
        }])
    );
    assert_eq!(
        strings(&a["why"]),
        ["Holders can run commands in, or attach to, running containers and read the secrets and service-account tokens mounted there."]
    );
    assert!(!strings(&a["investigation"]).is_empty());
    assert!(!strings(&a["resolution"]).is_empty());
    assert_eq!(
        a["least_privilege_rules"],
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}])
    );
    assert_eq!(a["source"], json!({"path": "-", "line": 1}));
    assert!(a.get("suppressed_by").is_none());
}

#[test]
fn cluster_label() {
    let a = detect(&[event(json!({}))], &["--cluster", "prod"])
        .ok()
        .alert();
    assert_eq!(a["cluster"], "prod");
}

#[test]
fn commands_quote_the_role_name() {
    let a = detect(&[event(json!({}))], &[]).ok().alert();
    let inv = strings(&a["investigation"]);
    let res = strings(&a["resolution"]);
    assert_eq!(
        inv[0],
        "Review what the role grants now: kubectl get clusterrole 'pod-writer' -o yaml"
    );
    assert_eq!(
        res[0],
        "If the change was not authorised, delete the role: kubectl delete clusterrole 'pod-writer'"
    );
    assert!(
        inv.iter().any(|s| s.contains("--as 'alice@example.com'")),
        "{inv:#?}"
    );
    // The link from the alert to the Git commit that made the role.
    assert!(
        inv.iter()
            .any(|s| s.ends_with("(run in the repository): kubeward git --role 'pod-writer'")),
        "{inv:#?}"
    );
    assert!(!inv.iter().any(|s| s.contains("git log")), "{inv:#?}");
}

#[test]
fn commands_quote_a_hostile_role_name() {
    let name = "it's; rm -rf / #";
    let a = detect(
        &[event(
            json!({"objectRef": {"name": name}, "requestObject": {"metadata": {"name": name}}}),
        )],
        &[],
    )
    .ok()
    .alert();
    assert_eq!(a["role"], name);
    let quoted = r"'it'\''s; rm -rf / #'";
    let res = strings(&a["resolution"]);
    assert_eq!(
        res[0],
        format!("If the change was not authorised, delete the role: kubectl delete clusterrole {quoted}")
    );
    let inv = strings(&a["investigation"]);
    assert_eq!(
        inv[0],
        format!("Review what the role grants now: kubectl get clusterrole {quoted} -o yaml")
    );
    // The name never appears unquoted after `clusterrole `.
    for s in inv.iter().chain(res.iter()) {
        assert!(!s.contains("clusterrole it's"), "{s}");
    }
}

fn exec_event() -> Value {
    event_with_rules(json!([{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}]))
}

#[test]
fn text_format_without_colour() {
    let r = run(
        &["detect", "--format", "text", "--color", "never", "-"],
        jsonl(&[exec_event()]).as_bytes(),
    )
    .ok();
    assert!(!r.stdout.contains('\x1b'), "{}", r.stdout);
    let first = r.stdout.lines().next().unwrap();
    assert_eq!(
        first,
        "HIGH K8s Audit Log Cluster Role With Pod Write (clusterrole-pod-write)"
    );
    assert!(r.stdout.contains("pod-writer"), "{}", r.stdout);
    assert!(r.stdout.contains("exec into pods"), "{}", r.stdout);
    assert!(r.stdout.contains("alice@example.com"), "{}", r.stdout);
    assert!(
        r.stdout.contains("kubectl delete clusterrole 'pod-writer'"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("  at -:1"), "{}", r.stdout);
    // Not JSON.
    assert!(serde_json::from_str::<Value>(first).is_err());
}

#[test]
fn text_format_with_colour() {
    let r = run(
        &["detect", "--format", "text", "--color", "always", "-"],
        jsonl(&[exec_event()]).as_bytes(),
    )
    .ok();
    assert!(r.stdout.contains("\x1b["), "{}", r.stdout);
    assert!(r.stdout.contains("\x1b[1;31mHIGH\x1b[0m"), "{}", r.stdout);
    assert!(r.stdout.contains("exec into pods"), "{}", r.stdout);
}

#[test]
fn colour_auto_is_off_when_piped() {
    let r = run(
        &["detect", "--format", "text", "-"],
        jsonl(&[exec_event()]).as_bytes(),
    )
    .ok();
    assert!(r.stdout.contains("exec into pods"), "{}", r.stdout);
    assert!(!r.stdout.contains('\x1b'), "{}", r.stdout);
}

#[test]
fn default_format_is_json_when_piped() {
    let r = run(&["detect", "-"], jsonl(&[exec_event()]).as_bytes()).ok();
    assert_eq!(r.alert()["role"], "pod-writer");
}

#[test]
fn exit_code_flag() {
    let alerting = jsonl(&[pod_get(), event(json!({}))]);
    let quiet = jsonl(&[pod_get()]);
    let r = run(
        &["detect", "--format", "json", "--exit-code", "3", "-"],
        alerting.as_bytes(),
    );
    assert_eq!(r.code, 3, "{r:#?}");
    assert_eq!(r.alerts().len(), 1);
    let r = run(
        &["detect", "--format", "json", "--exit-code", "3", "-"],
        quiet.as_bytes(),
    );
    assert_eq!(r.code, 0, "{r:#?}");
    assert_eq!(r.stdout, "");
    // Without the flag alerts do not change the status.
    let r = run(&["detect", "--format", "json", "-"], alerting.as_bytes());
    assert_eq!(r.code, 0, "{r:#?}");
}

#[test]
fn summary_line_counts() {
    let evs = [
        event(json!({})),
        pod_get(),
        event(json!({"responseStatus": {"code": 403}})),
        event(json!({"objectRef": {"name": "b"}})),
    ];
    let r = detect(&evs, &[]).ok();
    let s = r.summary();
    assert!(s.starts_with("kubeward: 1 input, 4 lines, 3 events parsed (1 lines skipped by the prefilter), 0 malformed, 0 duplicates dropped, 2 alerts, 0 suppressed in "), "{s}");
    let r = detect(&evs[..1], &[]).ok();
    assert!(
        r.summary().contains(", 1 alert, 0 suppressed"),
        "{}",
        r.summary()
    );
    let r = detect(&evs[1..3], &[]).ok();
    assert!(
        r.summary().contains(", 0 alerts, 0 suppressed"),
        "{}",
        r.summary()
    );
}

#[test]
fn quiet_has_no_summary() {
    let r = detect(&[event(json!({}))], &["--quiet"]).ok();
    assert_eq!(r.alerts().len(), 1);
    assert_eq!(r.stderr, "");
}

#[test]
fn text_format_escapes_control_characters() {
    let name = "evil\u{1b}[2J\nactor        system:apiserver";
    let ev =
        event(json!({"objectRef": {"name": name}, "requestObject": {"metadata": {"name": name}}}));
    let r = run(
        &["detect", "--format", "text", "--color", "never", "-"],
        jsonl(&[ev]).as_bytes(),
    )
    .ok();
    assert!(r.stdout.contains("  role "), "{}", r.stdout);
    assert!(!r.stdout.contains('\x1b'), "{}", r.stdout);
    assert!(
        !r.stdout.lines().any(|l| l.starts_with("actor")),
        "a forged line: {}",
        r.stdout
    );
}

#[test]
fn bad_options_fail_with_status_2() {
    for args in [
        &["detect", "--kube-version", "latest", "-"][..],
        &["detect", "--exit-code", "0", "-"][..],
        &["detect", "--max-line-bytes", "12X", "-"][..],
        &["detect", "--format", "yaml", "-"][..],
    ] {
        let r = run(args, jsonl(&[event(json!({}))]).as_bytes());
        assert_eq!(r.code, 2, "{args:?}: {r:#?}");
        assert_eq!(r.stdout, "", "{args:?}");
        assert!(!r.stderr.is_empty(), "{args:?}");
    }
}
