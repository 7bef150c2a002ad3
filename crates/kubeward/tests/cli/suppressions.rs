//! Suppressions: the built-in ones and the config file.

use crate::util::{detect, event, write};
use serde_json::{json, Value};

const APISERVER: &str = "system:apiserver";
const AGGREGATOR: &str = "system:serviceaccount:kube-system:clusterrole-aggregation-controller";

fn by(user: &str, role: &str) -> Value {
    event(json!({
        "user": {"username": user, "uid": null, "groups": ["system:authenticated"]},
        "objectRef": {"name": role},
        "requestObject": {"metadata": {"name": role}},
    }))
}

fn roles(alerts: &[Value]) -> Vec<&str> {
    alerts.iter().map(|a| a["role"].as_str().unwrap()).collect()
}

#[test]
fn builtins_suppress_apiserver_and_aggregation_controller() {
    let evs = [by(APISERVER, "admin"), by(AGGREGATOR, "edit")];
    let r = detect(&evs, &[]).ok();
    assert_eq!(r.stdout, "");
    let s = r.summary();
    assert!(
        s.contains(", 0 alerts, 2 suppressed (--show-suppressed prints them)"),
        "{s}"
    );
}

#[test]
fn show_suppressed_prints_them_with_the_reason() {
    let evs = [
        by(APISERVER, "admin"),
        by(AGGREGATOR, "edit"),
        by("mallory", "evil"),
    ];
    let r = detect(&evs, &["--show-suppressed"]).ok();
    let a = r.alerts();
    assert_eq!(roles(&a), ["admin", "edit", "evil"]);
    assert_eq!(
        a[0]["suppressed_by"],
        "builtin: API server bootstrap-role reconciliation"
    );
    assert_eq!(
        a[1]["suppressed_by"],
        "builtin: clusterrole-aggregation-controller"
    );
    assert!(a[2].get("suppressed_by").is_none(), "{}", a[2]);
    // Counted apart from the alerts, and the hint is not repeated.
    let s = r.summary();
    assert!(s.contains(", 1 alert, 2 suppressed in "), "{s}");
}

#[test]
fn suppressed_alerts_do_not_trip_the_exit_code() {
    let r = detect(&[by(APISERVER, "admin")], &["--exit-code", "3"]);
    assert_eq!(r.code, 0, "{r:#?}");
}

#[test]
fn impersonating_a_suppressed_identity_is_not_suppressed() {
    let mut ev = by("mallory", "sneaky");
    ev["impersonatedUser"] = json!({"username": APISERVER});
    let r = detect(&[ev], &[]).ok();
    assert_eq!(r.alert()["actor"]["username"], "mallory");
}

/// Alerts by `ci-*` users on `ci-*` roles, and near misses.
fn ci_events() -> [Value; 4] {
    [
        by("ci-bot", "ci-runner"),   // both match: suppressed
        by("ci-bot", "prod-admin"),  // role does not match
        by("alice", "ci-runner"),    // user does not match
        by(APISERVER, "system:foo"), // built-ins stay on
    ]
}

#[test]
fn config_suppression_matches_user_and_role_globs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "kubeward.yaml",
        "suppressions:\n  - user: \"ci-*\"\n    role: \"ci-*\"\n",
    );
    let r = detect(&ci_events(), &["--config", &cfg]).ok();
    assert_eq!(roles(&r.alerts()), ["prod-admin", "ci-runner"]);
    assert_eq!(r.alerts()[1]["actor"]["username"], "alice");
    assert!(
        r.summary().contains(", 2 alerts, 2 suppressed"),
        "{}",
        r.summary()
    );
    let r = detect(&ci_events(), &["--config", &cfg, "--show-suppressed"]).ok();
    let a = r.alerts();
    assert_eq!(
        roles(&a),
        ["ci-runner", "prod-admin", "ci-runner", "system:foo"]
    );
    assert!(a[0]["suppressed_by"].is_string(), "{}", a[0]);
    assert!(a[1].get("suppressed_by").is_none(), "{}", a[1]);
    assert!(a[2].get("suppressed_by").is_none(), "{}", a[2]);
}

#[test]
fn config_suppression_name_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "kubeward.yaml",
        "suppressions:\n  - name: CI pipelines\n    user: \"ci-*\"\n    role: \"ci-*\"\n",
    );
    let r = detect(&ci_events(), &["--config", &cfg, "--show-suppressed"]).ok();
    let shown: Vec<Value> = r
        .alerts()
        .iter()
        .map(|a| a["suppressed_by"].clone())
        .collect();
    assert_eq!(
        shown,
        [
            json!("CI pipelines"),
            Value::Null,
            Value::Null,
            json!("builtin: API server bootstrap-role reconciliation")
        ]
    );
}

#[test]
fn unnamed_config_suppression_is_labelled_by_its_index_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "kubeward.yaml",
        "suppressions:\n  - user: \"ci-*\"\n    role: \"ci-*\"\n",
    );
    let r = detect(&ci_events()[..1], &["--config", &cfg, "--show-suppressed"]).ok();
    assert_eq!(r.alert()["suppressed_by"], "suppressions[0]");
}

#[test]
fn config_suppression_by_group_with_a_name() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "kubeward.yaml",
        "suppressions:\n  - name: platform team\n    group: platform-*\n",
    );
    let mut platform = by("pat", "platform-role");
    platform["user"]["groups"] = json!(["system:authenticated", "platform-admins"]);
    let r = detect(
        &[platform, by("pat", "other")],
        &["--config", &cfg, "--show-suppressed"],
    )
    .ok();
    let a = r.alerts();
    assert_eq!(a[0]["suppressed_by"], "platform team");
    assert!(a[1].get("suppressed_by").is_none());
}

#[test]
fn default_suppressions_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "kubeward.yaml", "default_suppressions: false\n");
    let evs = [by(APISERVER, "admin"), by(AGGREGATOR, "edit")];
    let r = detect(&evs, &["--config", &cfg]).ok();
    assert_eq!(roles(&r.alerts()), ["admin", "edit"]);
    assert!(
        r.summary().contains(", 2 alerts, 0 suppressed"),
        "{}",
        r.summary()
    );
}

#[test]
fn bad_configs_fail_with_the_file_name() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text, says) in [
        ("unknown-field.yaml", "suppressions:\n  - usr: ci-bot\n", ""),
        ("unknown-top.yaml", "suppresions: []\n", ""),
        (
            "no-matcher.yaml",
            "suppressions:\n  - name: nothing to match\n",
            "needs at least one of user, group, role",
        ),
        (
            "empty-glob.yaml",
            "suppressions:\n  - user: ''\n",
            "user is empty",
        ),
    ] {
        let cfg = write(dir.path(), name, text);
        let r = detect(&[event(json!({}))], &["--config", &cfg]);
        assert_eq!(r.code, 2, "{name}: {r:#?}");
        assert_eq!(r.stdout, "", "{name}");
        assert!(r.stderr.contains(&cfg), "{name}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{name}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{name}: {}", r.stderr);
    }
}

#[test]
fn missing_config_fails() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("absent.yaml");
    let r = detect(&[event(json!({}))], &["--config", cfg.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{r:#?}");
    assert_eq!(r.stdout, "");
    assert!(r.stderr.contains(cfg.to_str().unwrap()), "{}", r.stderr);
}
