//! Which events alert, judged on events written here.

use crate::util::{alerts_for, cluster_role, event, event_with_rules, pod_write_rule};
use serde_json::{json, Value};

#[track_caller]
fn fires(ev: Value) -> Value {
    let mut a = alerts_for(ev.clone());
    assert_eq!(a.len(), 1, "expected one alert for {ev}: {a:#?}");
    a.remove(0)
}

#[track_caller]
fn silent(ev: Value) {
    let a = alerts_for(ev.clone());
    assert!(a.is_empty(), "expected no alert for {ev}: {a:#?}");
}

fn capabilities(a: &Value) -> Vec<&str> {
    a["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["capability"].as_str().unwrap())
        .collect()
}

#[test]
fn create_update_and_patch_alert() {
    for (verb, code) in [("create", 201), ("update", 200), ("patch", 200)] {
        let a = fires(event(
            json!({"verb": verb, "responseStatus": {"code": code}}),
        ));
        assert_eq!(a["verb"], verb);
        assert_eq!(a["response_code"], code);
        assert_eq!(a["role"], "pod-writer");
        assert_eq!(a["severity"], "high");
        assert_eq!(a["rules_source"], "requestObject");
        assert_eq!(capabilities(&a), ["create pods"]);
    }
}

#[test]
fn other_verbs_do_not_alert() {
    for verb in ["get", "delete", "deletecollection", "list", "watch"] {
        silent(event(
            json!({"verb": verb, "responseStatus": {"code": 200}}),
        ));
    }
}

#[test]
fn failed_requests_do_not_alert() {
    for code in [403, 409, 422] {
        silent(event(
            json!({"responseStatus": {"code": code, "status": "Failure"}}),
        ));
    }
}

#[test]
fn incomplete_stages_do_not_alert() {
    // The code stays 201: only the stage says the request is not complete.
    for stage in ["RequestReceived", "ResponseStarted", "Panic"] {
        silent(event(json!({"stage": stage})));
    }
}

#[test]
fn dry_runs_do_not_alert() {
    let base = "/apis/rbac.authorization.k8s.io/v1/clusterroles";
    for q in ["?dryRun=All", "?fieldManager=x&dryRun=All"] {
        silent(event(json!({"requestURI": format!("{base}{q}")})));
    }
    // Not a dry run.
    let a = fires(event(
        json!({"requestURI": format!("{base}?fieldManager=x&dryRun=None")}),
    ));
    assert_eq!(
        a["request_uri"],
        format!("{base}?fieldManager=x&dryRun=None")
    );
}

#[test]
fn clusterroles_of_another_api_group_do_not_alert() {
    silent(event(json!({
        "requestURI": "/apis/example.com/v1/clusterroles",
        "objectRef": {"apiGroup": "example.com"},
    })));
}

#[test]
fn namespaced_roles_do_not_alert() {
    silent(event(json!({
        "requestURI": "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles",
        "objectRef": {"resource": "roles", "namespace": "default"},
        "requestObject": {"kind": "Role", "metadata": {"namespace": "default"}},
    })));
}

#[test]
fn patch_reads_the_response_object() {
    // A metadata-only patch; the stored object shows the role's rules.
    let a = fires(event(json!({
        "verb": "patch",
        "responseStatus": {"code": 200},
        "requestObject": null,
        "responseObject": cluster_role("pod-writer", json!([
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]},
        ])),
    })));
    // Replaces the default request body.
    let a2 = fires(event(json!({
        "verb": "patch",
        "responseStatus": {"code": 200},
        "requestObject": {"kind": null, "apiVersion": null, "rules": null, "metadata": {"labels": {"team": "a"}}},
        "responseObject": cluster_role("pod-writer", json!([pod_write_rule()])),
    })));
    assert_eq!(a["rules_source"], "responseObject");
    assert_eq!(capabilities(&a), ["exec into pods"]);
    assert_eq!(
        a["offending_rules"],
        json!([{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}])
    );
    assert_eq!(a["grants"][0]["rules"], json!([1]));
    assert_eq!(a2["rules_source"], "responseObject");
    assert_eq!(capabilities(&a2), ["create pods"]);
}

fn patch(request_object: Value) -> Value {
    let mut ev = event(json!({
        "verb": "patch",
        "requestURI": "/apis/rbac.authorization.k8s.io/v1/clusterroles/pod-writer",
        "responseStatus": {"code": 200},
    }));
    // Set outright: a merge would combine it with the default ClusterRole body.
    ev["requestObject"] = request_object;
    ev
}

#[test]
fn json_patch_adding_a_pod_write_rule_alerts() {
    let rule = json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["delete", "patch"]});
    let a = fires(patch(
        json!([{"op": "add", "path": "/rules/-", "value": rule}]),
    ));
    assert_eq!(a["rules_source"], "patch");
    assert_eq!(a["offending_rules"], json!([rule]));
    assert_eq!(
        capabilities(&a),
        ["modify pods (update/patch)", "delete pods"]
    );
    // A JSON patch adding a read-only rule does not.
    silent(patch(json!([{
        "op": "add",
        "path": "/rules/-",
        "value": {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
    }])));
}

#[test]
fn merge_patch_setting_rules_alerts() {
    let a = fires(patch(json!({"rules": [pod_write_rule()]})));
    assert_eq!(a["rules_source"], "patch");
    assert_eq!(a["offending_rules"], json!([pod_write_rule()]));
    silent(patch(
        json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]}),
    ));
}

#[test]
fn server_side_apply_reads_the_request_object() {
    let a = fires(patch(cluster_role("pod-writer", json!([pod_write_rule()]))));
    assert_eq!(a["verb"], "patch");
    assert_eq!(a["rules_source"], "requestObject");
    assert_eq!(capabilities(&a), ["create pods"]);
}

#[test]
fn response_object_without_pod_write_overrides_the_request() {
    silent(event(json!({
        "responseObject": cluster_role("pod-writer", json!([
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
        ])),
    })));
}

#[test]
fn pods_star_matches_no_subresource() {
    silent(event_with_rules(
        json!([{"apiGroups": [""], "resources": ["pods/*"], "verbs": ["create"]}]),
    ));
}

#[test]
fn star_exec_alerts_as_exec() {
    let a = fires(event_with_rules(
        json!([{"apiGroups": [""], "resources": ["*/exec"], "verbs": ["create"]}]),
    ));
    assert_eq!(capabilities(&a), ["exec into pods"]);
    assert_eq!(a["grants"][0]["resources"], json!(["pods/exec"]));
    assert_eq!(a["severity"], "high");
}

#[test]
fn star_scale_is_not_pod_write() {
    silent(event_with_rules(json!([
        {"apiGroups": [""], "resources": ["*/scale"], "verbs": ["create", "update", "patch"]},
    ])));
}

#[test]
fn resource_names_cannot_restrict_create() {
    silent(event_with_rules(json!([
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["create"], "resourceNames": ["web-0"]},
    ])));
}

#[test]
fn resource_names_with_update_alert_medium() {
    let a = fires(event_with_rules(json!([
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["update"], "resourceNames": ["web-0"]},
    ])));
    assert_eq!(a["severity"], "medium");
    assert_eq!(a["grants"].as_array().unwrap().len(), 1);
    assert_eq!(a["grants"][0]["capability"], "modify pods (update/patch)");
    assert_eq!(a["grants"][0]["verbs"], json!(["update"]));
    assert_eq!(a["grants"][0]["resource_names"], json!(["web-0"]));
}

#[test]
fn wildcard_everything_is_critical() {
    let a = fires(event_with_rules(
        json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
    ));
    assert_eq!(a["severity"], "critical");
    assert!(capabilities(&a).contains(&"create pods"), "{a}");
    assert!(capabilities(&a).contains(&"exec into pods"), "{a}");
}

#[test]
fn pods_of_another_api_group_are_not_pod_write() {
    silent(event_with_rules(
        json!([{"apiGroups": ["metrics.k8s.io"], "resources": ["pods"], "verbs": ["*"]}]),
    ));
}

#[test]
fn verbs_and_resources_are_not_combined_across_rules() {
    silent(event_with_rules(json!([
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
    ])));
}

#[test]
fn impersonation_keeps_the_real_actor() {
    let a = fires(event(json!({
        "impersonatedUser": {"username": "system:admin", "groups": ["system:masters"]},
    })));
    assert_eq!(a["actor"]["username"], "alice@example.com");
    assert_eq!(a["actor"]["uid"], "uid-alice");
    assert_eq!(a["impersonated_user"]["username"], "system:admin");
    assert_eq!(a["impersonated_user"]["groups"], json!(["system:masters"]));
    let inv = a["investigation"].as_array().unwrap();
    assert!(
        inv.iter().any(|s| s
            .as_str()
            .unwrap()
            .contains("The actor impersonated 'system:admin'")),
        "{inv:#?}"
    );
    // Without impersonation the field is null.
    assert_eq!(fires(event(json!({})))["impersonated_user"], Value::Null);
}

#[test]
fn missing_api_group_is_read_from_the_uri() {
    // Hand-written and re-exported events drop objectRef.apiGroup.
    let no_group = json!({"objectRef": {"apiGroup": null}});
    let a = fires(event(no_group.clone()));
    assert_eq!(
        a["notes"],
        json!(["objectRef.apiGroup is missing; requestURI shows the RBAC group"])
    );
    let mut other = event(no_group.clone());
    other["requestURI"] = json!("/apis/example.com/v1/clusterroles");
    silent(other);
    let mut no_uri = event(no_group);
    no_uri.as_object_mut().unwrap().remove("requestURI");
    let a = fires(no_uri);
    assert_eq!(a["request_uri"], Value::Null);
    assert_eq!(
        a["notes"],
        json!(["objectRef.apiGroup is missing; read as rbac.authorization.k8s.io (the core group, the only one an event omits, has no RBAC resources)"])
    );
}

#[test]
fn role_name_falls_back_to_the_body() {
    let a = fires(event(json!({
        "objectRef": {"name": null},
        "requestObject": {"metadata": {"name": "from-body"}},
    })));
    assert_eq!(a["role"], "from-body");
}

#[test]
fn json_patch_replacing_all_rules_alerts() {
    let rule = json!({"apiGroups": [""], "resources": ["pods/attach"], "verbs": ["create"]});
    let a = fires(patch(
        json!([{"op": "replace", "path": "/rules", "value": [rule]}]),
    ));
    assert_eq!(a["rules_source"], "patch");
    assert_eq!(capabilities(&a), ["attach to pods"]);
    // `remove` adds nothing.
    silent(patch(json!([{"op": "remove", "path": "/rules/0"}])));
}

#[test]
fn v1beta1_events_use_their_timestamp() {
    let a = fires(event(json!({
        "apiVersion": "audit.k8s.io/v1beta1",
        "stageTimestamp": null,
        "requestReceivedTimestamp": null,
        "timestamp": "2018-10-26T14:35:50Z",
    })));
    assert_eq!(a["time"], "2018-10-26T14:35:50Z");
}

#[test]
fn a_missing_stage_with_a_2xx_status_counts_as_complete() {
    let a = fires(event(json!({"stage": null})));
    assert_eq!(a["stage"], Value::Null);
    assert_eq!(
        a["notes"],
        json!(["stage is missing; a 2xx responseStatus shows the request completed"])
    );
    silent(event(json!({"stage": null, "responseStatus": null})));
}
