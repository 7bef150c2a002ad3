//! Stateful detection (`kubeward detect --state / --stateful / --rbac-snapshot`), black box:
//! RBAC changes written here as audit events, the binary run on them, and the exact set of
//! alerts checked, one scenario per test.

use crate::util::{audit_id, cluster_role, detect, jsonl, pod_get, run, write, Run};
use serde_json::{json, Value};
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RBAC: &str = "rbac.authorization.k8s.io";
const BOUND: &str = "pod-write-role-bound";
const UNVERIFIED: &str = "clusterrole-changed-unverified";
const TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";
const TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
const CONTROLLER: &str = "system:serviceaccount:kube-system:clusterrole-aggregation-controller";

// ---------------------------------------------------------------------------------------
// Events

thread_local! {
    /// Seconds after 2026-01-15T10:00:00Z of the next event built on this thread: every test
    /// runs on its own thread, so its events get increasing times in the order they are built.
    static CLOCK: Cell<u64> = const { Cell::new(0) };
}

/// The next stageTimestamp (one second after the previous event built by this test).
fn tick() -> String {
    let n = CLOCK.with(|c| {
        let n = c.get();
        c.set(n + 1);
        n
    });
    let secs = 10 * 3600 + n;
    format!(
        "2026-01-{:02}T{:02}:{:02}:{:02}.000000Z",
        15 + secs / 86_400,
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}

/// A completed, successful request on an RBAC object by `alice@example.com`: `request` and
/// `response` become requestObject and responseObject when given.
fn rbac_event(
    verb: &str,
    resource: &str,
    name: &str,
    namespace: Option<&str>,
    level: &str,
    request: Option<Value>,
    response: Option<Value>,
) -> Value {
    let mut uri = format!("/apis/{RBAC}/v1");
    if let Some(ns) = namespace {
        uri.push_str(&format!("/namespaces/{ns}"));
    }
    uri.push('/');
    uri.push_str(resource);
    if verb != "create" {
        uri.push('/');
        uri.push_str(name);
    }
    let t = tick();
    let mut ev = json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": level,
        "auditID": audit_id(),
        "stage": "ResponseComplete",
        "requestURI": uri,
        "verb": verb,
        "user": {
            "username": "alice@example.com",
            "groups": ["developers", "system:authenticated"],
        },
        "sourceIPs": ["203.0.113.7"],
        "userAgent": "kubectl/v1.34.1 (linux/amd64) kubernetes/abcdef",
        "objectRef": {"resource": resource, "name": name, "apiGroup": RBAC, "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": if verb == "create" { 201 } else { 200 }},
        "requestReceivedTimestamp": t,
        "stageTimestamp": t,
    });
    if let Some(ns) = namespace {
        ev["objectRef"]["namespace"] = json!(ns);
    }
    if let Some(r) = request {
        ev["requestObject"] = r;
    }
    if let Some(r) = response {
        ev["responseObject"] = r;
    }
    ev
}

/// The resource, name and namespace of an object.
fn object_ref(obj: &Value) -> (&'static str, String, Option<String>) {
    let resource = match obj["kind"].as_str().expect("kind") {
        "ClusterRole" => "clusterroles",
        "Role" => "roles",
        "ClusterRoleBinding" => "clusterrolebindings",
        "RoleBinding" => "rolebindings",
        k => panic!("not an RBAC kind: {k}"),
    };
    let name = obj["metadata"]["name"].as_str().expect("name").to_string();
    let ns = obj["metadata"]["namespace"].as_str().map(str::to_string);
    (resource, name, ns)
}

/// `verb` of the whole object, logged at RequestResponse level without a responseObject.
fn write_obj(verb: &str, obj: Value) -> Value {
    let (res, name, ns) = object_ref(&obj);
    rbac_event(
        verb,
        res,
        &name,
        ns.as_deref(),
        "RequestResponse",
        Some(obj),
        None,
    )
}

fn create(obj: Value) -> Value {
    write_obj("create", obj)
}

fn update(obj: Value) -> Value {
    write_obj("update", obj)
}

/// `verb` of the object with the stored object (at this resourceVersion) as responseObject.
fn write_rv(verb: &str, obj: Value, rv: u64) -> Value {
    let mut stored = obj.clone();
    stored["metadata"]["resourceVersion"] = json!(rv.to_string());
    let (res, name, ns) = object_ref(&obj);
    rbac_event(
        verb,
        res,
        &name,
        ns.as_deref(),
        "RequestResponse",
        Some(obj),
        Some(stored),
    )
}

/// A patch of a ClusterRole logged at Request level (only the patch document).
fn patch_cr(name: &str, body: Value) -> Value {
    rbac_event(
        "patch",
        "clusterroles",
        name,
        None,
        "Request",
        Some(body),
        None,
    )
}

/// A change logged at Metadata level (no body).
fn metadata(verb: &str, resource: &str, name: &str, namespace: Option<&str>) -> Value {
    rbac_event(verb, resource, name, namespace, "Metadata", None, None)
}

/// The same event made by another user.
fn by(mut ev: Value, user: &str) -> Value {
    ev["user"] = json!({"username": user, "groups": ["system:authenticated"]});
    ev
}

/// The same event, failed with this code.
fn failed(mut ev: Value, code: u16) -> Value {
    ev["responseStatus"] = json!({"metadata": {}, "status": "Failure", "code": code});
    ev
}

/// The same event as a dry run.
fn dry_run(mut ev: Value) -> Value {
    let uri = ev["requestURI"].as_str().unwrap().to_string();
    ev["requestURI"] = json!(format!("{uri}?dryRun=All"));
    ev
}

/// A core-group rule.
fn rule(resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": [""], "resources": resources, "verbs": verbs})
}

fn pods_create() -> Value {
    rule(&["pods"], &["create"])
}

fn exec() -> Value {
    rule(&["pods/exec"], &["create"])
}

fn read_cm() -> Value {
    rule(&["configmaps"], &["get", "list"])
}

fn cr(name: &str, rules: Value) -> Value {
    cluster_role(name, rules)
}

/// A ClusterRole with labels.
fn labelled(name: &str, labels: Value, rules: Value) -> Value {
    let mut r = cluster_role(name, rules);
    r["metadata"]["labels"] = labels;
    r
}

/// An aggregating ClusterRole (one selector), with these stored rules.
fn aggregating(name: &str, match_labels: Value, rules: Value) -> Value {
    let mut r = cluster_role(name, rules);
    r["aggregationRule"] = json!({"clusterRoleSelectors": [{"matchLabels": match_labels}]});
    r
}

fn role(ns: &str, name: &str, rules: Value) -> Value {
    json!({
        "kind": "Role",
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns},
        "rules": rules,
    })
}

fn crb(name: &str, cluster_role: &str, subjects: Value) -> Value {
    json!({
        "kind": "ClusterRoleBinding",
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": cluster_role},
        "subjects": subjects,
    })
}

fn rb(ns: &str, name: &str, role_kind: &str, role: &str, subjects: Value) -> Value {
    json!({
        "kind": "RoleBinding",
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns},
        "roleRef": {"apiGroup": RBAC, "kind": role_kind, "name": role},
        "subjects": subjects,
    })
}

fn user(name: &str) -> Value {
    json!({"kind": "User", "apiGroup": RBAC, "name": name})
}

fn group(name: &str) -> Value {
    json!({"kind": "Group", "apiGroup": RBAC, "name": name})
}

fn sa(ns: &str, name: &str) -> Value {
    json!({"kind": "ServiceAccount", "name": name, "namespace": ns})
}

// ---------------------------------------------------------------------------------------
// Running and reading alerts

/// Checks what every stateful alert carries.
#[track_caller]
fn assert_context(a: &Value) {
    for k in ["bound_subjects", "role_admins", "actor_recent_changes"] {
        assert!(a[k].is_array(), "{k} missing: {a:#}");
    }
    if a["actor"]["username"].is_string() && a["time"].is_string() {
        assert!(
            a["actor_recent_changes_total"].is_u64(),
            "actor_recent_changes_total missing: {a:#}"
        );
    }
    assert!(
        a["previous_state"].is_string(),
        "previous_state missing: {a:#}"
    );
}

/// The alerts of a successful run, each checked for the stateful context.
#[track_caller]
fn alerts_of(r: Run) -> Vec<Value> {
    let r = r.ok();
    let all = r.alerts();
    for a in &all {
        assert_context(a);
    }
    all
}

/// `kubeward detect --stateful EXTRA -` on these events.
#[track_caller]
fn stateful(events: &[Value], extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["--stateful"];
    args.extend_from_slice(extra);
    alerts_of(detect(events, &args))
}

/// `kubeward detect --format json --state DB EXTRA PATHS`.
fn detect_state(db: &str, paths: &[&str], extra: &[&str]) -> Run {
    let mut args = vec!["detect", "--format", "json", "--state", db];
    args.extend_from_slice(extra);
    args.extend_from_slice(paths);
    run(&args, b"")
}

/// `kubeward detect --format json --state DB EXTRA -` with the events on stdin.
fn detect_state_stdin(db: &str, events: &[Value], extra: &[&str]) -> Run {
    let mut args = vec!["--state", db];
    args.extend_from_slice(extra);
    detect(events, &args)
}

/// `kubeward alerts --state DB --format json EXTRA`: the stored alerts.
#[track_caller]
fn stored(db: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["alerts", "--state", db, "--format", "json"];
    args.extend_from_slice(extra);
    run(&args, b"").ok().alerts()
}

fn caps(v: &Value) -> String {
    v.as_array()
        .unwrap_or_else(|| panic!("not a grant list: {v}"))
        .iter()
        .map(|g| g["capability_id"].as_str().expect("capability_id"))
        .collect::<Vec<_>>()
        .join(",")
}

/// One line that tells an alert apart: rule, role, binding, severity, previous state, and
/// what it says was gained (by the role, the aggregating roles, or the subjects).
fn fp(a: &Value) -> String {
    let s = |k: &str| a[k].as_str().unwrap_or("-").to_string();
    let mut out = format!("{} {}", s("rule_id"), s("role"));
    if a.get("binding").is_some() {
        let kind = if s("binding_kind") == "RoleBinding" {
            "rb"
        } else {
            "crb"
        };
        let ns = a["namespace"]
            .as_str()
            .map(|n| format!("{n}/"))
            .unwrap_or_default();
        out.push_str(&format!(" {kind}={ns}{}", s("binding")));
    }
    out.push_str(&format!(" {} prev={}", s("severity"), s("previous_state")));
    if let Some(n) = a.get("newly_granted") {
        out.push_str(&format!(" new={}", caps(n)));
    }
    if let Some(into) = a.get("aggregated_into") {
        let list: Vec<String> = into
            .as_array()
            .expect("aggregated_into")
            .iter()
            .map(|g| {
                format!(
                    "{}:{}",
                    g["role"].as_str().unwrap(),
                    caps(&g["newly_granted"])
                )
            })
            .collect();
        out.push_str(&format!(" into={}", list.join(";")));
    }
    if let Some(to) = a.get("subjects_granted") {
        let list: Vec<String> = to
            .as_array()
            .expect("subjects_granted")
            .iter()
            .map(|g| {
                let ns = g["namespace"]
                    .as_str()
                    .map(|n| format!("{n}/"))
                    .unwrap_or_default();
                format!(
                    "{}:{ns}{}:{}",
                    g["kind"].as_str().unwrap(),
                    g["name"].as_str().unwrap(),
                    caps(&g["newly_granted"])
                )
            })
            .collect();
        out.push_str(&format!(" to={}", list.join(",")));
    }
    out
}

fn fps(alerts: &[Value]) -> Vec<String> {
    alerts.iter().map(fp).collect()
}

/// `(rule_id, audit_id)` of an alert.
fn id(a: &Value) -> (String, String) {
    (
        a["rule_id"].as_str().expect("rule_id").to_string(),
        a["audit_id"].as_str().expect("audit_id").to_string(),
    )
}

/// The alert without `source`, as comparable text, with the input paths (which the
/// investigation steps quote) replaced by `INPUT`.
fn without_source(a: &Value, inputs: &[&str]) -> String {
    let mut a = a.clone();
    a.as_object_mut().expect("alert object").remove("source");
    let mut text = a.to_string();
    for p in inputs {
        text = text.replace(p, "INPUT");
    }
    text
}

fn notes(a: &Value) -> String {
    a["notes"]
        .as_array()
        .expect("notes")
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect::<Vec<_>>()
        .join(" | ")
}

const NONE: [&str; 0] = [];

// ---------------------------------------------------------------------------------------
// 1. clusterrole-pod-write against the previous version

#[test]
fn pod_write_alerts_only_for_what_the_role_did_not_grant_before() {
    let rules_v2 = json!([read_cm(), pods_create()]);
    let evs = [
        create(cr("lifecycle", json!([pods_create()]))),
        // Same grants, other rules around them: nothing new.
        update(cr("lifecycle", rules_v2.clone())),
        update(cr("lifecycle", json!([read_cm(), pods_create(), exec()]))),
        // Everything taken away, then given back.
        update(cr("lifecycle", json!([read_cm()]))),
        update(cr("lifecycle", json!([pods_create(), exec()]))),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        [
            "clusterrole-pod-write lifecycle high prev=absent new=create-pods",
            "clusterrole-pod-write lifecycle high prev=known new=exec",
            "clusterrole-pod-write lifecycle high prev=known new=create-pods,exec",
        ]
    );
    assert_eq!(a[0]["audit_id"], evs[0]["auditID"]);
    assert!(a[0].get("previous_rules").is_none(), "{:#}", a[0]);
    assert_eq!(a[1]["audit_id"], evs[2]["auditID"]);
    assert_eq!(a[1]["previous_rules"], rules_v2);
    assert_eq!(a[1]["rules_source"], "requestObject");
    assert_eq!(a[1]["source"]["line"], 3);
    assert_eq!(a[2]["audit_id"], evs[4]["auditID"]);
    assert_eq!(a[2]["previous_rules"], json!([read_cm()]));
    // The actor's earlier changes, oldest first, this one left out.
    let recent: Vec<&Value> = a[2]["actor_recent_changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["audit_id"])
        .collect();
    let earlier: Vec<&Value> = evs[..4].iter().map(|e| &e["auditID"]).collect();
    assert_eq!(recent, earlier);
    assert_eq!(a[2]["actor_recent_changes_total"], 4);
    assert_eq!(a[2]["actor_recent_changes"][0]["verb"], "create");
    assert_eq!(a[2]["actor_recent_changes"][0]["kind"], "ClusterRole");
    assert_eq!(a[2]["actor_recent_changes"][0]["name"], "lifecycle");
}

// 2.

#[test]
fn update_of_a_role_never_seen_reports_everything_with_previous_state_unknown() {
    let evs = [update(cr(
        "never-seen",
        json!([read_cm(), pods_create(), exec()]),
    ))];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        ["clusterrole-pod-write never-seen high prev=unknown new=create-pods,exec"]
    );
    assert!(a[0].get("previous_rules").is_none(), "{:#}", a[0]);
    // Same with --no-bootstrap-roles.
    let a = stateful(&evs, &["--no-bootstrap-roles"]);
    assert_eq!(
        fps(&a),
        ["clusterrole-pod-write never-seen high prev=unknown new=create-pods,exec"]
    );
}

// 3. Request-level patches

#[test]
fn json_patch_adding_a_verb_is_applied_to_the_known_role() {
    let evs = [
        create(cr("jp", json!([rule(&["pods"], &["get", "list"])]))),
        patch_cr(
            "jp",
            json!([{"op": "add", "path": "/rules/0/verbs/-", "value": "create"}]),
        ),
        // Adding a read verb: nothing new.
        patch_cr(
            "jp",
            json!([{"op": "add", "path": "/rules/0/verbs/-", "value": "watch"}]),
        ),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        ["clusterrole-pod-write jp high prev=known new=create-pods"]
    );
    assert_eq!(a[0]["rules_source"], "patchedState");
    assert_eq!(
        a[0]["previous_rules"],
        json!([rule(&["pods"], &["get", "list"])])
    );
    assert_eq!(
        a[0]["offending_rules"],
        json!([rule(&["pods"], &["get", "list", "create"])])
    );
}

#[test]
fn merge_patch_replacing_rules_reports_only_the_new_grants() {
    let evs = [
        create(cr("mp", json!([pods_create()]))),
        patch_cr("mp", json!({"rules": [pods_create(), exec()]})),
        // Labels only: the rules stay.
        patch_cr("mp", json!({"metadata": {"labels": {"team": "a"}}})),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        [
            "clusterrole-pod-write mp high prev=absent new=create-pods",
            "clusterrole-pod-write mp high prev=known new=exec",
        ]
    );
    assert_eq!(a[1]["rules_source"], "patchedState");
    assert_eq!(a[1]["previous_rules"], json!([pods_create()]));
}

#[test]
fn strategic_merge_patch_with_replace_directive_is_applied() {
    let attach = rule(&["pods/attach"], &["create"]);
    let evs = [
        create(cr("smp", json!([pods_create()]))),
        patch_cr(
            "smp",
            json!({"rules": [{"$patch": "replace"}, attach.clone(), pods_create()]}),
        ),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        [
            "clusterrole-pod-write smp high prev=absent new=create-pods",
            "clusterrole-pod-write smp high prev=known new=attach",
        ]
    );
    assert_eq!(a[1]["rules_source"], "patchedState");
    // The rules after the patch: attach (the new grant) and create pods.
    assert_eq!(a[1]["offending_rules"], json!([attach]));
    assert_eq!(caps(&a[1]["grants"]), "create-pods,attach");
}

#[test]
fn server_side_apply_body_is_applied() {
    let pf = rule(&["pods/portforward"], &["create"]);
    let evs = [
        create(cr("ssa", json!([pods_create()]))),
        patch_cr("ssa", cr("ssa", json!([pods_create(), pf.clone()]))),
        // Applying the same again: nothing new.
        patch_cr("ssa", cr("ssa", json!([pods_create(), pf]))),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        [
            "clusterrole-pod-write ssa high prev=absent new=create-pods",
            "clusterrole-pod-write ssa high prev=known new=port-forward",
        ]
    );
    assert_eq!(a[1]["previous_rules"], json!([pods_create()]));
}

#[test]
fn patch_of_an_unknown_role_falls_back_to_the_patch_itself() {
    let evs = [
        patch_cr("unknown-pw", json!({"rules": [exec()]})),
        patch_cr(
            "unknown-labels",
            json!({"metadata": {"labels": {"a": "b"}}}),
        ),
        patch_cr(
            "unknown-jp",
            json!([{"op": "add", "path": "/rules/0/verbs/-", "value": "get"}]),
        ),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        [
            "clusterrole-pod-write unknown-pw high prev=unknown new=exec",
            "clusterrole-changed-unverified unknown-labels info prev=unknown",
            "clusterrole-changed-unverified unknown-jp info prev=unknown",
        ]
    );
    assert!(
        notes(&a[0]).contains("judged on the event alone"),
        "{:#}",
        a[0]
    );
    assert_eq!(a[1]["rules_source"], "notLogged");
}

// 4. Aggregation

#[test]
fn role_labelled_into_view_with_exec_makes_view_gain_and_the_controller_rewrite_is_silent() {
    let view_rules = json!([
        rule(&["pods", "configmaps"], &["get", "list", "watch"]),
        exec()
    ]);
    let evs = [
        create(labelled(
            "exec-into-view",
            json!({TO_VIEW: "true"}),
            json!([exec()]),
        )),
        // What the aggregation controller then writes into view.
        by(
            update(aggregating("view", json!({TO_VIEW: "true"}), view_rules)),
            CONTROLLER,
        ),
    ];
    let r = detect(&evs, &["--stateful", "--show-suppressed"]);
    let a = alerts_of(r);
    assert_eq!(
        fps(&a),
        [
            "clusterrole-pod-write exec-into-view high prev=absent new=exec",
            "clusterrole-pod-write-aggregated exec-into-view high prev=absent into=view:exec",
        ]
    );
    assert!(a.iter().all(|a| a["audit_id"] == evs[0]["auditID"]));
    assert!(a.iter().all(|a| a.get("suppressed_by").is_none()));
}

#[test]
fn relabel_by_merge_patch_into_view_alerts_as_aggregated() {
    let evs = [
        create(cr("later-exec", json!([exec()]))),
        patch_cr(
            "later-exec",
            json!({"metadata": {"labels": {TO_VIEW: "true"}}}),
        ),
        by(
            update(aggregating(
                "view",
                json!({TO_VIEW: "true"}),
                json!([exec()]),
            )),
            CONTROLLER,
        ),
    ];
    let a = stateful(&evs, &["--show-suppressed"]);
    assert_eq!(
        fps(&a),
        [
            "clusterrole-pod-write later-exec high prev=absent new=exec",
            "clusterrole-pod-write-aggregated later-exec high prev=known into=view:exec",
        ]
    );
    assert_eq!(a[1]["audit_id"], evs[1]["auditID"]);
    assert_eq!(a[1]["verb"], "patch");
}

#[test]
fn new_aggregating_role_selecting_a_pod_write_role_alerts_naming_it() {
    let evs = [
        create(labelled(
            "team-exec",
            json!({"example.com/aggregate-to-team": "true"}),
            json!([exec()]),
        )),
        create(aggregating(
            "team-super",
            json!({"example.com/aggregate-to-team": "true"}),
            json!([]),
        )),
        create(crb(
            "team-super-holders",
            "team-super",
            json!([user("tess")]),
        )),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        [
            "clusterrole-pod-write team-exec high prev=absent new=exec",
            "clusterrole-pod-write-aggregated team-super high prev=absent into=team-super:exec",
            "pod-write-role-bound team-super crb=team-super-holders high prev=absent to=User:tess:exec",
        ]
    );
}

#[test]
fn labelled_role_without_pod_write_or_already_held_gives_no_aggregated_alert() {
    let evs = [
        create(labelled(
            "view-extra",
            json!({TO_VIEW: "true"}),
            json!([read_cm()]),
        )),
        // edit (and admin) already hold exec: nothing gained by aggregation.
        create(labelled(
            "edit-extra",
            json!({TO_EDIT: "true"}),
            json!([exec()]),
        )),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        ["clusterrole-pod-write edit-extra high prev=absent new=exec"]
    );
}

// 5. Bindings

#[test]
fn binding_to_cluster_admin_is_critical() {
    let evs = [create(crb(
        "mallory-admin",
        "cluster-admin",
        json!([user("mallory")]),
    ))];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        ["pod-write-role-bound cluster-admin crb=mallory-admin critical prev=absent to=User:mallory:create-pods,modify-pods,delete-pods,delete-all-pods,exec,attach,port-forward,debug-containers,modify-status,evict,bind-to-nodes,proxy,resize"]
    );
    assert_eq!(a[0]["binding_kind"], "ClusterRoleBinding");
    assert!(a[0].get("namespace").is_none(), "{:#}", a[0]);
    assert!(notes(&a[0]).contains("bootstrap policy"), "{:#}", a[0]);
    let bound = a[0]["bound_subjects"].as_array().unwrap();
    assert!(bound.iter().any(|s| s["name"] == "mallory"), "{bound:#?}");
}

#[test]
fn role_binding_to_a_pod_write_role_in_its_namespace_is_high() {
    let evs = [
        create(role("dev", "pod-runner", json!([pods_create()]))),
        create(rb(
            "dev",
            "run-pods",
            "Role",
            "pod-runner",
            json!([user("dave")]),
        )),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        ["pod-write-role-bound pod-runner rb=dev/run-pods high prev=absent to=User:dave:create-pods"]
    );
    assert_eq!(a[0]["namespace"], "dev");
    assert_eq!(a[0]["binding_kind"], "RoleBinding");
    let bound = a[0]["bound_subjects"].as_array().unwrap();
    assert_eq!(bound.len(), 1, "{bound:#?}");
    assert_eq!(bound[0]["name"], "dave");
    assert_eq!(bound[0]["binding"], "run-pods");
}

#[test]
fn binding_to_a_namespaced_role_named_like_a_cluster_role_lists_the_roles_holders() {
    // Role dev/edit is not ClusterRole edit: the alert's bound_subjects are those of the
    // Role the binding names.
    let evs = [
        create(role("dev", "edit", json!([pods_create()]))),
        create(rb("dev", "dev-edit", "Role", "edit", json!([user("dora")]))),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        ["pod-write-role-bound edit rb=dev/dev-edit high prev=absent to=User:dora:create-pods"]
    );
    let bound = a[0]["bound_subjects"].as_array().unwrap();
    assert_eq!(
        bound
            .iter()
            .map(|s| (s["name"].as_str().unwrap(), s["binding"].as_str().unwrap()))
            .collect::<Vec<_>>(),
        [("dora", "dev-edit")],
        "{:#}",
        a[0]
    );
}

#[test]
fn binding_to_all_service_accounts_is_critical() {
    let evs = [
        create(cr("pw", json!([pods_create()]))),
        create(crb(
            "all-sa",
            "pw",
            json!([group("system:serviceaccounts")]),
        )),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        [
            "clusterrole-pod-write pw high prev=absent new=create-pods",
            "pod-write-role-bound pw crb=all-sa critical prev=absent to=Group:system:serviceaccounts:create-pods",
        ]
    );
    assert_eq!(
        a[1]["subjects_granted"][0]["note"],
        "every service account in every namespace"
    );
}

#[test]
fn binding_update_reports_only_the_added_subject() {
    let evs = [
        create(cr("pw", json!([pods_create()]))),
        create(crb("pw-holders", "pw", json!([user("u1")]))),
        update(crb(
            "pw-holders",
            "pw",
            json!([user("u1"), sa("ci", "deployer")]),
        )),
        // Same subjects again: nothing.
        update(crb(
            "pw-holders",
            "pw",
            json!([sa("ci", "deployer"), user("u1")]),
        )),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        [
            "clusterrole-pod-write pw high prev=absent new=create-pods",
            "pod-write-role-bound pw crb=pw-holders high prev=absent to=User:u1:create-pods",
            "pod-write-role-bound pw crb=pw-holders high prev=known to=ServiceAccount:ci/deployer:create-pods",
        ]
    );
    assert_eq!(a[2]["audit_id"], evs[2]["auditID"]);
    // Everyone bound to the role after the change.
    let mut bound: Vec<&str> = a[2]["bound_subjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    bound.sort_unstable();
    assert_eq!(bound, ["deployer", "u1"]);
    // And the actor's earlier changes.
    assert_eq!(a[2]["actor_recent_changes_total"], 2);
}

#[test]
fn subject_already_holding_the_pod_write_through_another_binding_is_not_news() {
    let evs = [
        create(cr("pw", json!([pods_create()]))),
        create(cr("pw-twin", json!([pods_create(), read_cm()]))),
        create(crb("first", "pw", json!([user("u3")]))),
        create(crb("second", "pw", json!([user("u3")]))),
        create(crb("third", "pw-twin", json!([user("u3")]))),
        // A RoleBinding in one namespace does not make a ClusterRoleBinding old news.
        create(rb(
            "dev",
            "dev-pw",
            "ClusterRole",
            "pw",
            json!([user("u4")]),
        )),
        create(crb("fourth", "pw", json!([user("u4")]))),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        [
            "clusterrole-pod-write pw high prev=absent new=create-pods",
            "clusterrole-pod-write pw-twin high prev=absent new=create-pods",
            "pod-write-role-bound pw crb=first high prev=absent to=User:u3:create-pods",
            "pod-write-role-bound pw rb=dev/dev-pw high prev=absent to=User:u4:create-pods",
            "pod-write-role-bound pw crb=fourth high prev=absent to=User:u4:create-pods",
        ]
    );
}

#[test]
fn binding_to_a_role_without_pod_write_or_an_unknown_role_is_silent() {
    let a = stateful(
        &[
            create(crb("viewers", "view", json!([user("v")]))),
            create(cr("reader", json!([read_cm()]))),
            create(crb("readers", "reader", json!([user("v")]))),
        ],
        &[],
    );
    assert_eq!(fps(&a), NONE);
    let a = stateful(
        &[create(crb("admins", "cluster-admin", json!([user("x")])))],
        &["--no-bootstrap-roles"],
    );
    assert_eq!(fps(&a), NONE);
}

#[test]
fn latent_binding_subjects_are_listed_when_the_role_appears() {
    let evs = [
        create(crb("early", "late-role", json!([user("early-bird")]))),
        create(cr("late-role", json!([pods_create()]))),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        ["clusterrole-pod-write late-role high prev=absent new=create-pods"]
    );
    let bound = a[0]["bound_subjects"].as_array().unwrap();
    assert_eq!(bound.len(), 1, "{:#}", a[0]);
    assert_eq!(bound[0]["name"], "early-bird");
    assert_eq!(bound[0]["binding"], "early");
}

// 6. Metadata level

#[test]
fn metadata_level_changes_make_the_role_unknown_until_a_full_body() {
    let evs = [
        create(cr("meta", json!([read_cm()]))),
        metadata("update", "clusterroles", "meta", None),
        patch_cr("meta", json!({"rules": [pods_create()]})),
        metadata("delete", "clusterroles", "meta", None),
        create(cr("meta", json!([pods_create()]))),
        // Known again: the same grants are not news.
        update(cr("meta", json!([pods_create(), read_cm()]))),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        [
            "clusterrole-changed-unverified meta info prev=known",
            "clusterrole-pod-write meta high prev=unknown new=create-pods",
            "clusterrole-pod-write meta high prev=absent new=create-pods",
        ]
    );
    assert_eq!(a[0]["audit_id"], evs[1]["auditID"]);
    assert_eq!(a[0]["rules_source"], "notLogged");
    assert_eq!(a[1]["audit_id"], evs[2]["auditID"]);
    assert_eq!(a[2]["audit_id"], evs[4]["auditID"]);
}

#[test]
fn metadata_level_create_is_unverified_and_the_next_full_update_is_judged_unknown() {
    let evs = [
        metadata("create", "clusterroles", "meta-new", None),
        update(cr("meta-new", json!([pods_create()]))),
        update(cr("meta-new", json!([pods_create()]))),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        [
            "clusterrole-changed-unverified meta-new info prev=absent",
            "clusterrole-pod-write meta-new high prev=unknown new=create-pods",
        ]
    );
}

// 7. Failed and dry-run requests

#[test]
fn failed_and_dry_run_changes_do_not_touch_the_model() {
    let evs = [
        create(cr("guarded", json!([pods_create()]))),
        // Would take pod write away...
        failed(update(cr("guarded", json!([read_cm()]))), 403),
        dry_run(update(cr("guarded", json!([read_cm()])))),
        dry_run(metadata("delete", "clusterroles", "guarded", None)),
        failed(metadata("delete", "clusterroles", "guarded", None), 404),
        // ...so that this would be news. It is not: the model still has create pods.
        update(cr("guarded", json!([pods_create()]))),
        // A failed or dry-run create leaves the role unknown.
        failed(create(cr("ghost", json!([exec()]))), 409),
        dry_run(create(cr("ghost", json!([exec()])))),
        update(cr("ghost", json!([exec()]))),
        // Bindings too.
        dry_run(create(crb("dry", "guarded", json!([user("d")])))),
        failed(create(crb("dry", "guarded", json!([user("d")]))), 403),
        create(crb("wet", "guarded", json!([user("d")]))),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        [
            "clusterrole-pod-write guarded high prev=absent new=create-pods",
            "clusterrole-pod-write ghost high prev=unknown new=exec",
            "pod-write-role-bound guarded crb=wet high prev=absent to=User:d:create-pods",
        ]
    );
    // Neither is in the actor's history.
    assert_eq!(a[2]["actor_recent_changes_total"], 3);
}

// 8. Snapshots

const SNAPSHOT: &str = r#"apiVersion: v1
kind: List
items:
- apiVersion: rbac.authorization.k8s.io/v1
  kind: ClusterRole
  metadata:
    name: snap-writer
  rules:
  - apiGroups: [""]
    resources: ["pods"]
    verbs: ["create"]
- apiVersion: rbac.authorization.k8s.io/v1
  kind: ClusterRoleBinding
  metadata:
    name: snap-writers
  roleRef:
    apiGroup: rbac.authorization.k8s.io
    kind: ClusterRole
    name: snap-writer
  subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: User
    name: sam
"#;

#[test]
fn snapshot_seeds_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let snap = write(dir.path(), "rbac.yaml", SNAPSHOT);
    let evs = [
        update(cr("snap-writer", json!([read_cm(), pods_create()]))),
        // sam holds it already.
        create(crb(
            "more-writers",
            "snap-writer",
            json!([user("sam"), user("sue")]),
        )),
    ];
    let a = stateful(&evs, &["--rbac-snapshot", &snap]);
    assert_eq!(
        fps(&a),
        ["pod-write-role-bound snap-writer crb=more-writers high prev=absent to=User:sue:create-pods"]
    );
    // --rbac-snapshot alone turns stateful detection on.
    let a = alerts_of(detect(&evs, &["--rbac-snapshot", &snap]));
    assert_eq!(
        fps(&a),
        ["pod-write-role-bound snap-writer crb=more-writers high prev=absent to=User:sue:create-pods"]
    );
    // Without the snapshot the role is unknown.
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        [
            "clusterrole-pod-write snap-writer high prev=unknown new=create-pods",
            "pod-write-role-bound snap-writer crb=more-writers high prev=absent to=User:sam:create-pods,User:sue:create-pods",
        ]
    );
}

#[test]
fn snapshot_does_not_override_what_the_state_learned() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kw.db");
    let db = db.to_str().unwrap();
    let snap = write(dir.path(), "rbac.yaml", SNAPSHOT);
    let r = detect_state_stdin(db, &[create(cr("snap-writer", json!([read_cm()])))], &[]);
    assert_eq!(fps(&alerts_of(r)), NONE);
    // The snapshot says snap-writer creates pods; the state says it does not: the state wins,
    // so giving it pod write is news.
    let evs = [update(cr("snap-writer", json!([pods_create()])))];
    let r = detect_state_stdin(db, &evs, &["--rbac-snapshot", &snap]);
    assert_eq!(
        fps(&alerts_of(r)),
        ["clusterrole-pod-write snap-writer high prev=known new=create-pods"]
    );
}

// 9. Restarts and split inputs

/// ~60 events mixing every rule; the second half depends on the first.
fn mixed_events() -> (Vec<Value>, Vec<Value>) {
    let mut first = Vec::new();
    first.push(create(cr("mx-a", json!([pods_create()]))));
    first.push(update(cr("mx-a", json!([pods_create(), read_cm()]))));
    first.push(create(cr("mx-b", json!([read_cm()]))));
    first.push(create(crb("mx-b1", "mx-a", json!([user("u1")]))));
    first.push(create(labelled(
        "mx-view-exec",
        json!({TO_VIEW: "true"}),
        json!([exec()]),
    )));
    first.push(by(
        update(aggregating(
            "view",
            json!({TO_VIEW: "true"}),
            json!([exec()]),
        )),
        CONTROLLER,
    ));
    first.push(metadata("update", "clusterroles", "mx-c", None));
    first.push(patch_cr(
        "mx-b",
        json!({"rules": [rule(&["pods"], &["delete"])]}),
    ));
    first.push(failed(update(cr("mx-a", json!([read_cm()]))), 403));
    first.push(dry_run(metadata("delete", "clusterroles", "mx-a", None)));
    first.push(create(role("dev", "mx-r", json!([pods_create()]))));
    first.push(create(rb(
        "dev",
        "mx-rb",
        "Role",
        "mx-r",
        json!([user("dev1")]),
    )));
    let dup = first[0].clone();
    first.push(dup);
    first.push(create(cr("mx-d", json!([pods_create()]))));
    first.push(create(crb("mx-d1", "mx-d", json!([group("ops")]))));
    first.push(update(cr("mx-quiet", json!([read_cm()]))));
    while first.len() < 30 {
        first.push(pod_get());
    }
    let mut second = vec![
        update(cr("mx-a", json!([pods_create(), exec()]))),
        update(crb("mx-b1", "mx-a", json!([user("u1"), user("u2")]))),
        patch_cr(
            "mx-b",
            json!([{"op": "add", "path": "/rules/0/verbs/-", "value": "create"}]),
        ),
        create(crb(
            "mx-everyone",
            "cluster-admin",
            json!([group("system:authenticated")]),
        )),
        metadata("delete", "clusterroles", "mx-a", None),
        create(cr("mx-a", json!([pods_create()]))),
        patch_cr("mx-c", json!({"rules": [exec()]})),
        first[3].clone(),
        update(cr("mx-d", json!([pods_create()]))),
        create(crb("mx-d2", "mx-d", json!([group("ops"), user("u5")]))),
        update(rb(
            "dev",
            "mx-rb",
            "Role",
            "mx-r",
            json!([user("dev1"), sa("dev", "builder")]),
        )),
        patch_cr(
            "mx-view-exec",
            json!({"rules": [exec(), rule(&["pods/attach"], &["create"])]}),
        ),
    ];
    // Out of order: rv 20 (no pod write) before rv 10 (pod write).
    second.push(write_rv("update", cr("mx-ooo", json!([read_cm()])), 20));
    let mut late = write_rv("create", cr("mx-ooo", json!([pods_create()])), 10);
    late["stageTimestamp"] = second[0]["stageTimestamp"].clone();
    second.push(late);
    second.push(write_rv("update", cr("mx-ooo", json!([read_cm()])), 30));
    while second.len() < 30 {
        second.push(pod_get());
    }
    (first, second)
}

#[test]
fn split_input_and_reruns_give_the_same_alerts_once() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = mixed_events();
    let all: Vec<Value> = first.iter().chain(&second).cloned().collect();
    let whole = write(dir.path(), "all.jsonl", jsonl(&all));
    let part1 = write(dir.path(), "part1.jsonl", jsonl(&first));
    let part2 = write(dir.path(), "part2.jsonl", jsonl(&second));
    let db_a = dir.path().join("a.db");
    let db_b = dir.path().join("b.db");
    let (db_a, db_b) = (db_a.to_str().unwrap(), db_b.to_str().unwrap());

    let a = alerts_of(detect_state(db_a, &[&whole], &[]));
    assert_eq!(
        fps(&a),
        [
            "clusterrole-pod-write mx-a high prev=absent new=create-pods",
            "pod-write-role-bound mx-a crb=mx-b1 high prev=absent to=User:u1:create-pods",
            "clusterrole-pod-write mx-view-exec high prev=absent new=exec",
            "clusterrole-pod-write-aggregated mx-view-exec high prev=absent into=view:exec",
            "clusterrole-changed-unverified mx-c info prev=unknown",
            "clusterrole-pod-write mx-b medium prev=known new=delete-pods",
            "pod-write-role-bound mx-r rb=dev/mx-rb high prev=absent to=User:dev1:create-pods",
            "clusterrole-pod-write mx-d high prev=absent new=create-pods",
            "pod-write-role-bound mx-d crb=mx-d1 high prev=absent to=Group:ops:create-pods",
            // Second half.
            "clusterrole-pod-write mx-a high prev=known new=exec",
            "pod-write-role-bound mx-a crb=mx-b1 high prev=known to=User:u2:create-pods,exec",
            "clusterrole-pod-write mx-b high prev=known new=create-pods",
            "pod-write-role-bound cluster-admin crb=mx-everyone critical prev=absent to=Group:system:authenticated:create-pods,modify-pods,delete-pods,delete-all-pods,exec,attach,port-forward,debug-containers,modify-status,evict,bind-to-nodes,proxy,resize",
            "clusterrole-pod-write mx-a high prev=absent new=create-pods",
            "clusterrole-pod-write mx-c high prev=unknown new=exec",
            // mx-d2 (to User u5) and the subject added to mx-rb (ServiceAccount dev/builder)
            // come after mx-everyone gave cluster-admin to system:authenticated: both already
            // hold all pod write, so neither is news.
            "clusterrole-pod-write mx-view-exec high prev=known new=attach",
            "clusterrole-pod-write-aggregated mx-view-exec high prev=known into=view:attach",
            "clusterrole-pod-write mx-ooo high prev=absent new=create-pods",
        ]
    );
    let ids: Vec<_> = a.iter().map(id).collect();
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        ids.len(),
        "an alert twice: {ids:?}"
    );

    let b1 = alerts_of(detect_state(db_b, &[&part1], &[]));
    let b2 = alerts_of(detect_state(db_b, &[&part2], &[]));
    let inputs = [whole.as_str(), part1.as_str(), part2.as_str()];
    let mut got: Vec<String> = b1
        .iter()
        .chain(&b2)
        .map(|a| without_source(a, &inputs))
        .collect();
    let mut want: Vec<String> = a.iter().map(|a| without_source(a, &inputs)).collect();
    got.sort();
    want.sort();
    assert_eq!(
        got.len(),
        want.len(),
        "B1 {} + B2 {} alerts",
        b1.len(),
        b2.len()
    );
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
    assert_eq!(b1.len(), 9);

    // Again: nothing new, and it says where it continued.
    let r = detect_state(db_b, &[&part1], &[]).ok();
    assert_eq!(r.stdout, "", "{r:#?}");
    assert!(
        r.stderr.contains("part1.jsonl: continuing after line 30"),
        "{r:#?}"
    );

    // New lines at the end: only their alerts, at their lines in the file.
    let more = [
        create(cr("mx-new", json!([pods_create()]))),
        pod_get(),
        // A group: every user already holds pod write through system:authenticated by now.
        create(crb("mx-new-b", "mx-new", json!([group("newcomers")]))),
        // Already read from part2: no second alert.
        second[0].clone(),
    ];
    let mut text = std::fs::read_to_string(&part1).unwrap();
    text.push_str(&jsonl(&more));
    std::fs::write(&part1, text).unwrap();
    let r = detect_state(db_b, &[&part1], &[]);
    assert!(
        r.stderr.contains("part1.jsonl: continuing after line 30"),
        "{r:#?}"
    );
    let c = alerts_of(r);
    assert_eq!(
        fps(&c),
        [
            "clusterrole-pod-write mx-new high prev=absent new=create-pods",
            "pod-write-role-bound mx-new crb=mx-new-b high prev=absent to=Group:newcomers:create-pods",
        ]
    );
    assert_eq!(
        c.iter()
            .map(|a| a["source"]["line"].clone())
            .collect::<Vec<_>>(),
        [json!(31), json!(33)]
    );
    assert_eq!(c[0]["source"]["path"], json!(part1));

    // Everything stored once.
    let s = stored(db_b, &[]);
    assert_eq!(s.len(), a.len() + 2);
    let ids: BTreeSet<_> = s.iter().map(id).collect();
    assert_eq!(ids.len(), s.len());
}

// 10. Duplicates and out-of-order delivery

#[test]
fn the_same_event_twice_alerts_once_in_one_run_and_across_runs() {
    let ev = create(cr("twice", json!([pods_create()])));
    let a = stateful(&[ev.clone(), ev.clone()], &[]);
    assert_eq!(
        fps(&a),
        ["clusterrole-pod-write twice high prev=absent new=create-pods"]
    );

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kw.db");
    let db = db.to_str().unwrap();
    let f1 = write(dir.path(), "one.jsonl", jsonl(&[ev.clone(), ev.clone()]));
    let f2 = write(dir.path(), "two.jsonl", jsonl(&[pod_get(), ev.clone()]));
    let a = alerts_of(detect_state(db, &[&f1], &[]));
    assert_eq!(a.len(), 1, "{a:#?}");
    let r = detect_state(db, &[&f2], &[]);
    assert_eq!(fps(&alerts_of(r)), NONE);
    let r = detect_state_stdin(db, &[ev], &[]);
    assert_eq!(fps(&alerts_of(r)), NONE);
    assert_eq!(stored(db, &[]).len(), 1);
}

#[test]
fn late_create_is_judged_but_does_not_replace_the_newer_version() {
    let upd = write_rv("update", cr("ooo", json!([read_cm()])), 200);
    // Made before the update, delivered after it.
    let mut create_ = write_rv("create", cr("ooo", json!([pods_create()])), 100);
    create_["stageTimestamp"] = json!("2026-01-15T09:00:00.000000Z");
    let evs = [
        upd,
        create_,
        write_rv("update", cr("ooo", json!([read_cm()])), 300),
        // Had the create replaced rv 200, this would be known and silent.
        write_rv("update", cr("ooo", json!([pods_create()])), 400),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        [
            "clusterrole-pod-write ooo high prev=absent new=create-pods",
            "clusterrole-pod-write ooo high prev=known new=create-pods",
        ]
    );
    assert_eq!(a[0]["audit_id"], evs[1]["auditID"]);
    assert!(notes(&a[0]).contains("newer version"), "{:#}", a[0]);
    assert_eq!(a[1]["audit_id"], evs[3]["auditID"]);
    assert_eq!(a[1]["previous_rules"], json!([read_cm()]));
}

#[test]
fn late_update_does_not_replace_the_newer_version() {
    let evs = [
        create(cr("ooo2", json!([pods_create()]))),
        write_rv("update", cr("ooo2", json!([pods_create(), exec()])), 200),
        // rv 150, with other grants, arrives late: judged, not applied.
        write_rv(
            "update",
            cr(
                "ooo2",
                json!([pods_create(), rule(&["pods/attach"], &["create"])]),
            ),
            150,
        ),
        // Same content as rv 200: silent only if rv 200 is still the model's version.
        write_rv("update", cr("ooo2", json!([pods_create(), exec()])), 300),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        [
            "clusterrole-pod-write ooo2 high prev=absent new=create-pods",
            "clusterrole-pod-write ooo2 high prev=known new=exec",
            "clusterrole-pod-write ooo2 high prev=unknown new=create-pods,attach",
        ]
    );
    assert!(notes(&a[2]).contains("newer version"), "{:#}", a[2]);
}

#[test]
fn late_update_does_not_bring_back_a_deleted_role() {
    let mut del = rbac_event(
        "delete",
        "clusterroles",
        "gone",
        None,
        "RequestResponse",
        None,
        None,
    );
    del["responseObject"] = json!({
        "kind": "ClusterRole",
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "metadata": {"name": "gone", "resourceVersion": "300"},
        "rules": [pods_create()],
    });
    let evs = [
        write_rv("create", cr("gone", json!([pods_create()])), 100),
        del,
        // rv 200 arrives after the delete: judged against an unknown state, not applied.
        write_rv("update", cr("gone", json!([pods_create(), read_cm()])), 200),
        // The role is gone, so this update (of a role the model cannot know) reports all.
        write_rv("update", cr("gone", json!([pods_create()])), 400),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        [
            "clusterrole-pod-write gone high prev=absent new=create-pods",
            "clusterrole-pod-write gone high prev=unknown new=create-pods",
            "clusterrole-pod-write gone high prev=unknown new=create-pods",
        ]
    );
    assert!(notes(&a[1]).contains("newer version"), "{:#}", a[1]);
}

// 11. Errors

#[test]
fn state_that_is_not_a_state_file_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let text = "these are my notes, not a database\n".repeat(50);
    let p = write(dir.path(), "notes.txt", &text);
    let r = detect_state_stdin(&p, &[create(cr("x", json!([pods_create()])))], &[]);
    assert_eq!(r.code, 2, "{r:#?}");
    assert_eq!(r.stdout, "", "{r:#?}");
    assert!(r.stderr.contains(&p), "{r:#?}");
    assert!(!r.stderr.contains("panicked"), "{r:#?}");
    assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["notes.txt"]);
}

#[test]
fn locked_state_fails_fast_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kw.db");
    let db_s = db.to_str().unwrap().to_string();
    // An existing state file, then another writer holding its lock.
    let r = detect_state_stdin(&db_s, &[create(cr("x", json!([pods_create()])))], &[]);
    assert_eq!(alerts_of(r).len(), 1);
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let path = db.clone();
    let holder = std::thread::spawn(move || {
        let mut s = store::Store::open(&path).expect("open state");
        s.transaction(|tx| -> Result<(), store::StoreError> {
            tx.set_position(
                "holder",
                &store::Position {
                    offset: 1,
                    line: 1,
                    fingerprint: "1:0000000000000000".into(),
                },
            )?;
            locked_tx.send(()).unwrap();
            release_rx.recv().unwrap();
            Ok(())
        })
        .expect("holder transaction");
    });
    locked_rx.recv().unwrap();
    let started = Instant::now();
    let r = detect_state_stdin(&db_s, &[create(cr("y", json!([pods_create()])))], &[]);
    let took = started.elapsed();
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(r.code, 2, "{r:#?}");
    assert_eq!(r.stdout, "", "{r:#?}");
    assert!(r.stderr.contains("locked"), "{r:#?}");
    assert!(r.stderr.contains(&db_s), "{r:#?}");
    assert!(!r.stderr.contains("panicked"), "{r:#?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // Once released, the same run works.
    let r = detect_state_stdin(&db_s, &[create(cr("y", json!([pods_create()])))], &[]);
    assert_eq!(alerts_of(r).len(), 1);
}

// 12. Crash safety

/// Many alerting creates, each large enough that the input spans several of the reader's
/// chunks (and so several transactions).
fn crash_input(n: usize) -> String {
    let pad = "x".repeat(9_000);
    let mut out = String::new();
    for i in 0..n {
        let mut ev = create(cr(&format!("crash-{i:05}"), json!([pods_create()])));
        ev["user"]["username"] = json!(format!("user-{i}"));
        ev["annotations"] = json!({"pad": pad});
        out.push_str(&ev.to_string());
        out.push('\n');
    }
    out
}

#[test]
fn killed_run_then_rerun_stores_exactly_what_one_run_stores() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "many.jsonl", crash_input(2_000));
    let db = dir.path().join("crash.db");
    let db = db.to_str().unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_kubeward"))
        .args([
            "detect", "--format", "json", "--quiet", "--state", db, &input,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kubeward");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    child.kill().unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(!first.is_empty(), "no alert before the end");
    let killed_text = first + &rest;
    // Only whole lines were printed.
    let mut printed: Vec<Value> = killed_text
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| serde_json::from_str(l).expect("alert line"))
        .collect();
    let killed_count = printed.len();

    let r = detect_state(db, &[&input], &[]).ok();
    let rerun = r.alerts();
    printed.extend(rerun.iter().cloned());

    let db2 = dir.path().join("clean.db");
    let db2 = db2.to_str().unwrap();
    let clean = alerts_of(detect_state(db2, &[&input], &[]));
    assert_eq!(clean.len(), 2_000);

    let after_crash = stored(db, &[]);
    let reference = stored(db2, &[]);
    let ids = |v: &[Value]| -> BTreeMap<(String, String), usize> {
        let mut m = BTreeMap::new();
        for a in v {
            *m.entry(id(a)).or_insert(0) += 1;
        }
        m
    };
    let got = ids(&after_crash);
    assert!(
        got.values().all(|&n| n == 1),
        "stored twice: {:?}",
        got.iter().filter(|(_, &n)| n > 1).collect::<Vec<_>>()
    );
    assert_eq!(got, ids(&reference));
    let printed_ids = ids(&printed);
    let twice: Vec<_> = printed_ids.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "printed twice: {twice:?}");
    for k in printed_ids.keys() {
        assert!(got.contains_key(k), "printed but not stored: {k:?}");
    }
    eprintln!(
        "killed run ({status}) printed {killed_count} alerts, the rerun {}; {} stored",
        rerun.len(),
        after_crash.len()
    );
}

// 13. kubeward alerts

#[test]
fn alerts_command_lists_what_the_stateful_run_stored() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kw.db");
    let db = db.to_str().unwrap();
    let f = write(
        dir.path(),
        "audit.jsonl",
        jsonl(&[
            create(cr("listed", json!([pods_create()]))),
            create(crb("listed-b", "listed", json!([user("lu")]))),
            metadata("update", "clusterroles", "listed-meta", None),
        ]),
    );
    let printed = alerts_of(detect_state(db, &[&f], &[]));
    assert_eq!(
        fps(&printed),
        [
            "clusterrole-pod-write listed high prev=absent new=create-pods",
            "pod-write-role-bound listed crb=listed-b high prev=absent to=User:lu:create-pods",
            "clusterrole-changed-unverified listed-meta info prev=unknown",
        ]
    );
    let all = stored(db, &[]);
    assert_eq!(all, printed);
    let bound = stored(db, &["--rule", BOUND]);
    assert_eq!(bound, printed[1..2]);
    let two = stored(db, &["--rule", BOUND, "--rule", UNVERIFIED]);
    assert_eq!(two, printed[1..]);
    let r = run(&["alerts", "--state", db, "--format", "text"], b"").ok();
    assert_eq!(r.stdout.lines().count(), 3, "{r:#?}");
    assert!(
        r.stdout
            .contains("pod-write-role-bound  role listed, binding listed-b"),
        "{r:#?}"
    );
}

// Context

#[test]
fn actor_recent_changes_lists_the_latest_ten_of_the_hour_before() {
    let mut evs = Vec::new();
    // Two hours before: outside the window.
    let mut old = create(cr("old-change", json!([read_cm()])));
    old["stageTimestamp"] = json!("2026-01-15T08:00:00.000000Z");
    evs.push(old);
    // Someone else's change: not listed.
    evs.push(by(create(cr("bobs", json!([read_cm()]))), "bob"));
    for i in 0..25 {
        evs.push(create(cr(&format!("busy-{i:02}"), json!([read_cm()]))));
    }
    evs.push(create(cr("busy-last", json!([exec()]))));
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        ["clusterrole-pod-write busy-last high prev=absent new=exec"]
    );
    let recent = a[0]["actor_recent_changes"].as_array().unwrap();
    assert_eq!(a[0]["actor_recent_changes_total"], 25);
    let names: Vec<&str> = recent.iter().map(|c| c["name"].as_str().unwrap()).collect();
    let want: Vec<String> = (15..25).map(|i| format!("busy-{i:02}")).collect();
    assert_eq!(names, want);
}

// ---------------------------------------------------------------------------------------
// More edges

#[test]
fn patch_of_an_unknown_role_whose_json_or_strategic_patch_shows_pod_write_alerts() {
    let evs = [
        patch_cr(
            "unknown-jp-pw",
            json!([{"op": "add", "path": "/rules/-", "value": pods_create()}]),
        ),
        patch_cr(
            "unknown-smp-pw",
            json!({"rules": [{"$patch": "replace"}, exec()]}),
        ),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        [
            "clusterrole-pod-write unknown-jp-pw high prev=unknown new=create-pods",
            "clusterrole-pod-write unknown-smp-pw high prev=unknown new=exec",
        ]
    );
}

#[test]
fn create_naming_the_role_only_in_its_body_is_tracked() {
    let mut c = create(cr("body-named", json!([pods_create()])));
    c["objectRef"].as_object_mut().unwrap().remove("name");
    let evs = [
        c,
        update(cr("body-named", json!([pods_create(), read_cm()]))),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        ["clusterrole-pod-write body-named high prev=absent new=create-pods"]
    );
}

#[test]
fn bindings_to_aggregated_roles_use_their_aggregated_rules() {
    let evs = [
        create(crb("viewers", "view", json!([user("v")]))),
        create(crb("editors", "edit", json!([user("e")]))),
        create(labelled(
            "exec-into-view",
            json!({TO_VIEW: "true"}),
            json!([exec()]),
        )),
        create(crb("viewers-2", "view", json!([user("w")]))),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        [
            "pod-write-role-bound edit crb=editors high prev=absent to=User:e:create-pods,modify-pods,delete-pods,delete-all-pods,exec,attach,port-forward,evict,proxy",
            "clusterrole-pod-write exec-into-view high prev=absent new=exec",
            "clusterrole-pod-write-aggregated exec-into-view high prev=absent into=view:exec",
            "pod-write-role-bound view crb=viewers-2 high prev=absent to=User:w:exec",
        ]
    );
    // Who holds view, and so gains exec.
    let holders: Vec<&str> = a[2]["aggregated_into"][0]["bound_subjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(holders, ["v"]);
}

#[test]
fn same_subject_named_two_ways_is_one_subject() {
    let evs = [
        create(cr("pw", json!([pods_create()]))),
        create(crb("as-sa", "pw", json!([sa("ci", "deployer")]))),
        create(crb(
            "as-user",
            "pw",
            json!([user("system:serviceaccount:ci:deployer")]),
        )),
        // A RoleBinding's ServiceAccount without a namespace is in the binding's namespace.
        create(rb(
            "ci",
            "ci-pw",
            "ClusterRole",
            "pw",
            json!([{"kind": "ServiceAccount", "name": "deployer"}]),
        )),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        [
            "clusterrole-pod-write pw high prev=absent new=create-pods",
            "pod-write-role-bound pw crb=as-sa high prev=absent to=ServiceAccount:ci/deployer:create-pods",
        ]
    );
}

#[test]
fn subject_losing_and_regaining_pod_write_is_news_again() {
    let evs = [
        create(cr("pw", json!([pods_create()]))),
        create(crb("one", "pw", json!([user("u1")]))),
        update(crb("one", "pw", json!([user("u1"), user("u2")]))),
        update(crb("one", "pw", json!([user("u1")]))),
        update(crb("one", "pw", json!([user("u1"), user("u2")]))),
        metadata("delete", "clusterrolebindings", "one", None),
        create(crb("two", "pw", json!([user("u1")]))),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        [
            "clusterrole-pod-write pw high prev=absent new=create-pods",
            "pod-write-role-bound pw crb=one high prev=absent to=User:u1:create-pods",
            "pod-write-role-bound pw crb=one high prev=known to=User:u2:create-pods",
            "pod-write-role-bound pw crb=one high prev=known to=User:u2:create-pods",
            "pod-write-role-bound pw crb=two high prev=absent to=User:u1:create-pods",
        ]
    );
}

#[test]
fn binding_reports_only_the_pod_write_the_subject_lacked() {
    let evs = [
        create(cr("execer", json!([exec()]))),
        create(cr("runner", json!([pods_create(), exec()]))),
        create(crb("ex", "execer", json!([user("u")]))),
        create(crb("run", "runner", json!([user("u")]))),
        // Namespaced: a RoleBinding in the same namespace, or a ClusterRoleBinding, counts.
        create(role("dev", "dev-runner", json!([pods_create()]))),
        create(rb("dev", "dev-a", "Role", "dev-runner", json!([user("r")]))),
        create(rb(
            "dev",
            "dev-b",
            "ClusterRole",
            "runner",
            json!([user("r")]),
        )),
        create(rb(
            "prod",
            "prod-a",
            "ClusterRole",
            "runner",
            json!([user("u")]),
        )),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        [
            "clusterrole-pod-write execer high prev=absent new=exec",
            "clusterrole-pod-write runner high prev=absent new=create-pods,exec",
            "pod-write-role-bound execer crb=ex high prev=absent to=User:u:exec",
            "pod-write-role-bound runner crb=run high prev=absent to=User:u:create-pods",
            "pod-write-role-bound dev-runner rb=dev/dev-a high prev=absent to=User:r:create-pods",
            "pod-write-role-bound runner rb=dev/dev-b high prev=absent to=User:r:exec",
        ]
    );
}

#[test]
fn cluster_admin_for_system_masters_is_not_news_but_for_unauthenticated_is_critical() {
    let evs = [
        create(crb(
            "masters-again",
            "cluster-admin",
            json!([group("system:masters")]),
        )),
        create(rb(
            "dev",
            "anon",
            "ClusterRole",
            "cluster-admin",
            json!([group("system:unauthenticated")]),
        )),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        ["pod-write-role-bound cluster-admin rb=dev/anon critical prev=absent to=Group:system:unauthenticated:create-pods,modify-pods,delete-pods,delete-all-pods,exec,attach,port-forward,debug-containers,modify-status,evict,bind-to-nodes,proxy,resize"]
    );
    assert_eq!(a[0]["namespace"], "dev");
}

#[test]
fn aggregating_role_changed_to_select_pod_write_roles_alerts_and_its_rewrite_is_silent() {
    let evs = [
        create(labelled(
            "quiet",
            json!({"example.com/agg": "quiet"}),
            json!([read_cm()]),
        )),
        create(labelled(
            "loud",
            json!({"example.com/agg": "loud"}),
            json!([exec()]),
        )),
        create(aggregating(
            "collector",
            json!({"example.com/agg": "quiet"}),
            json!([]),
        )),
        update(aggregating(
            "collector",
            json!({"example.com/agg": "loud"}),
            json!([]),
        )),
        by(
            update(aggregating(
                "collector",
                json!({"example.com/agg": "loud"}),
                json!([exec()]),
            )),
            CONTROLLER,
        ),
        // The label taken away from the selected role, then given back.
        patch_cr(
            "loud",
            json!({"metadata": {"labels": {"example.com/agg": null}}}),
        ),
        patch_cr(
            "loud",
            json!({"metadata": {"labels": {"example.com/agg": "loud"}}}),
        ),
    ];
    let a = stateful(&evs, &["--show-suppressed"]);
    assert_eq!(
        fps(&a),
        [
            "clusterrole-pod-write loud high prev=absent new=exec",
            "clusterrole-pod-write-aggregated collector high prev=known into=collector:exec",
            "clusterrole-pod-write-aggregated loud high prev=known into=collector:exec",
        ]
    );
    assert_eq!(a[1]["audit_id"], evs[3]["auditID"]);
    assert_eq!(a[2]["audit_id"], evs[6]["auditID"]);
}

#[test]
fn user_writing_pod_write_into_an_aggregated_role_directly_alerts() {
    let evs = [update(aggregating(
        "view",
        json!({TO_VIEW: "true"}),
        json!([rule(&["pods"], &["get"]), pods_create()]),
    ))];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        ["clusterrole-pod-write view high prev=known new=create-pods"]
    );
    assert!(notes(&a[0]).contains("bootstrap"), "{:#}", a[0]);
}

#[test]
fn deletecollection_makes_every_cluster_role_unknown() {
    let evs = [
        create(cr("dc", json!([pods_create()]))),
        rbac_event(
            "deletecollection",
            "clusterroles",
            "",
            None,
            "Metadata",
            None,
            None,
        ),
        update(cr("dc", json!([pods_create()]))),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        [
            "clusterrole-pod-write dc high prev=absent new=create-pods",
            "clusterrole-pod-write dc high prev=unknown new=create-pods",
        ]
    );
}

#[test]
fn unknown_marks_and_deletions_persist_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kw.db");
    let db = db.to_str().unwrap();
    let run1 = [
        create(cr("marked", json!([pods_create()]))),
        metadata("update", "clusterroles", "marked", None),
        create(cr("removed", json!([pods_create()]))),
        metadata("delete", "clusterroles", "removed", None),
        // A bootstrap role deleted.
        metadata("delete", "clusterroles", "edit", None),
        write_rv("update", cr("versioned", json!([read_cm()])), 500),
    ];
    let a = alerts_of(detect_state_stdin(db, &run1, &[]));
    assert_eq!(
        fps(&a),
        [
            "clusterrole-pod-write marked high prev=absent new=create-pods",
            "clusterrole-changed-unverified marked info prev=known",
            "clusterrole-pod-write removed high prev=absent new=create-pods",
        ]
    );
    let run2 = [
        update(cr("marked", json!([pods_create()]))),
        update(cr("removed", json!([pods_create()]))),
        create(crb("editors", "edit", json!([user("e")]))),
        // Older than what the first run stored.
        write_rv("update", cr("versioned", json!([pods_create()])), 400),
        write_rv("update", cr("versioned", json!([read_cm()])), 600),
    ];
    let a = alerts_of(detect_state_stdin(db, &run2, &[]));
    assert_eq!(
        fps(&a),
        [
            "clusterrole-pod-write marked high prev=unknown new=create-pods",
            "clusterrole-pod-write removed high prev=unknown new=create-pods",
            "clusterrole-pod-write versioned high prev=unknown new=create-pods",
        ]
    );
    assert!(notes(&a[2]).contains("newer version"), "{:#}", a[2]);
}

#[test]
fn gzip_input_cannot_resume_but_never_alerts_twice() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kw.db");
    let db = db.to_str().unwrap();
    let evs = [
        create(cr("zipped", json!([pods_create()]))),
        create(crb("zipped-b", "zipped", json!([user("z")]))),
    ];
    let gz = dir.path().join("audit.log.gz");
    std::fs::write(&gz, crate::util::gzip(jsonl(&evs).as_bytes())).unwrap();
    let gz = gz.to_str().unwrap();
    let a = alerts_of(detect_state(db, &[gz], &[]));
    assert_eq!(a.len(), 2, "{a:#?}");
    let r = detect_state(db, &[gz], &[]);
    assert!(!r.stderr.contains("continuing"), "{r:#?}");
    assert_eq!(fps(&alerts_of(r)), NONE);
}

#[test]
fn replaced_file_at_the_same_path_is_read_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kw.db");
    let db = db.to_str().unwrap();
    let first = [
        create(cr("rot-1", json!([pods_create()]))),
        pod_get(),
        pod_get(),
    ];
    let f = write(dir.path(), "audit.log", jsonl(&first));
    assert_eq!(alerts_of(detect_state(db, &[&f], &[])).len(), 1);
    // logrotate: a new file with other events under the same name.
    let second = [pod_get(), create(cr("rot-2", json!([pods_create()])))];
    write(dir.path(), "audit.log", jsonl(&second));
    let r = detect_state(db, &[&f], &[]);
    assert!(!r.stderr.contains("continuing"), "{r:#?}");
    let a = alerts_of(r);
    assert_eq!(
        fps(&a),
        ["clusterrole-pod-write rot-2 high prev=absent new=create-pods"]
    );
    assert_eq!(a[0]["source"]["line"], 2);
}

#[test]
fn line_being_written_when_read_is_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kw.db");
    let db = db.to_str().unwrap();
    let done = create(cr("whole", json!([pods_create()])));
    let writing = create(cr("half-written", json!([pods_create()]))).to_string();
    let head = &writing[..writing.len() / 2];
    let f = write(dir.path(), "audit.log", format!("{done}\n{head}"));
    let r = detect_state(db, &[&f], &[]);
    assert_eq!(
        fps(&alerts_of(r)),
        ["clusterrole-pod-write whole high prev=absent new=create-pods"]
    );
    // The writer finishes the line.
    write(dir.path(), "audit.log", format!("{done}\n{writing}\n"));
    let r = detect_state(db, &[&f], &[]);
    let a = alerts_of(r);
    assert_eq!(
        fps(&a),
        ["clusterrole-pod-write half-written high prev=absent new=create-pods"]
    );
    assert_eq!(a[0]["source"]["line"], 2);
}

#[test]
fn request_level_patches_of_bindings_are_applied() {
    let patch_crb = |name: &str, body: Value| {
        rbac_event(
            "patch",
            "clusterrolebindings",
            name,
            None,
            "Request",
            Some(body),
            None,
        )
    };
    let evs = [
        create(cr("pw", json!([pods_create()]))),
        create(crb("pw-b", "pw", json!([user("u1")]))),
        patch_crb(
            "pw-b",
            json!([{"op": "add", "path": "/subjects/-", "value": user("u2")}]),
        ),
        patch_crb(
            "pw-b",
            json!({"subjects": [user("u1"), user("u2"), user("u3")]}),
        ),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        [
            "clusterrole-pod-write pw high prev=absent new=create-pods",
            "pod-write-role-bound pw crb=pw-b high prev=absent to=User:u1:create-pods",
            "pod-write-role-bound pw crb=pw-b high prev=known to=User:u2:create-pods",
            "pod-write-role-bound pw crb=pw-b high prev=known to=User:u3:create-pods",
        ]
    );
    assert_eq!(a[2]["rules_source"], "patchedState");
}

#[test]
fn request_level_patch_of_a_bootstrap_binding_is_applied() {
    let patch_crb = |body: Value| {
        rbac_event(
            "patch",
            "clusterrolebindings",
            "cluster-admin",
            None,
            "Request",
            Some(body),
            None,
        )
    };
    let evs = [
        patch_crb(
            json!([{"op": "add", "path": "/subjects/-", "value": group("system:authenticated")}]),
        ),
        patch_crb(
            json!({"subjects": [group("system:masters"), group("system:authenticated"), user("eve")]}),
        ),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        [
            "pod-write-role-bound cluster-admin crb=cluster-admin critical prev=known to=Group:system:authenticated:create-pods,modify-pods,delete-pods,delete-all-pods,exec,attach,port-forward,debug-containers,modify-status,evict,bind-to-nodes,proxy,resize",
            "pod-write-role-bound cluster-admin crb=cluster-admin critical prev=known to=User:eve:create-pods,modify-pods,delete-pods,delete-all-pods,exec,attach,port-forward,debug-containers,modify-status,evict,bind-to-nodes,proxy,resize",
        ]
    );
}

#[test]
fn request_level_patch_of_a_bootstrap_role_is_applied() {
    let evs = [patch_cr(
        "system:aggregate-to-view",
        json!([{"op": "add", "path": "/rules/-", "value": exec()}]),
    )];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        [
            "clusterrole-pod-write system:aggregate-to-view high prev=known new=exec",
            "clusterrole-pod-write-aggregated system:aggregate-to-view high prev=known into=view:exec",
        ]
    );
}

#[test]
fn aggregation_selectors_with_match_expressions_are_followed() {
    let mut agg = cr("expr-agg", json!([]));
    agg["aggregationRule"] = json!({"clusterRoleSelectors": [{"matchExpressions": [
        {"key": "example.com/tier", "operator": "In", "values": ["ops", "sre"]}
    ]}]});
    let evs = [
        create(agg),
        create(labelled(
            "sre-exec",
            json!({"example.com/tier": "sre"}),
            json!([exec()]),
        )),
        create(labelled(
            "dev-exec",
            json!({"example.com/tier": "dev"}),
            json!([rule(&["pods/attach"], &["create"])]),
        )),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        [
            "clusterrole-pod-write sre-exec high prev=absent new=exec",
            "clusterrole-pod-write-aggregated sre-exec high prev=absent into=expr-agg:exec",
            "clusterrole-pod-write dev-exec high prev=absent new=attach",
        ]
    );
}

#[test]
fn event_list_records_and_a_missing_stage_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kw.db");
    let db = db.to_str().unwrap();
    let mut no_stage = create(cr("stageless", json!([pods_create()])));
    no_stage.as_object_mut().unwrap().remove("stage");
    let list = json!({
        "kind": "EventList",
        "apiVersion": "audit.k8s.io/v1",
        "items": [
            create(cr("listed-a", json!([pods_create()]))),
            create(crb("listed-ab", "listed-a", json!([user("l")]))),
        ],
    });
    let f = write(
        dir.path(),
        "batches.jsonl",
        jsonl(&[pod_get(), list, no_stage]),
    );
    let a = alerts_of(detect_state(db, &[&f], &[]));
    assert_eq!(
        fps(&a),
        [
            "clusterrole-pod-write listed-a high prev=absent new=create-pods",
            "pod-write-role-bound listed-a crb=listed-ab high prev=absent to=User:l:create-pods",
            "clusterrole-pod-write stageless high prev=absent new=create-pods",
        ]
    );
    assert_eq!(
        a.iter().map(|a| a["source"].clone()).collect::<Vec<_>>(),
        [
            json!({"path": f, "line": 2, "item": 0}),
            json!({"path": f, "line": 2, "item": 1}),
            json!({"path": f, "line": 3}),
        ]
    );
}

#[test]
fn metadata_level_binding_changes_do_not_damage_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kw.db");
    let db = db.to_str().unwrap();
    let run1 = [
        metadata("create", "clusterrolebindings", "meta-crb", None),
        metadata("update", "rolebindings", "meta-rb", Some("dev")),
    ];
    // The roles they bind are not known: each is worth a look, and says so.
    assert_eq!(
        fps(&alerts_of(detect_state_stdin(db, &run1, &[]))),
        [
            "binding-changed-unverified - crb=meta-crb info prev=absent",
            "binding-changed-unverified - rb=dev/meta-rb info prev=unknown",
        ]
    );
    let run2 = [create(cr("after-meta", json!([pods_create()])))];
    let r = detect_state_stdin(db, &run2, &[]);
    assert_eq!(
        fps(&alerts_of(r)),
        ["clusterrole-pod-write after-meta high prev=absent new=create-pods"]
    );
}

#[test]
fn metadata_level_change_of_a_bootstrap_role_gives_the_same_verdicts_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = [metadata("update", "clusterroles", "view", None)];
    let second = [
        create(labelled(
            "exec-into-view",
            json!({TO_VIEW: "true"}),
            json!([exec()]),
        )),
        create(crb("viewers", "view", json!([user("vic")]))),
    ];
    let all: Vec<Value> = first.iter().chain(&second).cloned().collect();
    let one = dir.path().join("one.db");
    let a = alerts_of(detect_state_stdin(one.to_str().unwrap(), &all, &[]));
    let want = [
        "clusterrole-changed-unverified view info prev=known",
        "clusterrole-pod-write exec-into-view high prev=absent new=exec",
        "clusterrole-pod-write-aggregated exec-into-view high prev=absent into=view:exec",
        "pod-write-role-bound view crb=viewers high prev=absent to=User:vic:exec",
    ];
    assert_eq!(fps(&a), want);
    let two = dir.path().join("two.db");
    let two = two.to_str().unwrap();
    let mut b = alerts_of(detect_state_stdin(two, &first, &[]));
    b.extend(alerts_of(detect_state_stdin(two, &second, &[])));
    assert_eq!(fps(&b), want);
}

// ---------------------------------------------------------------------------------------
// Re-creates

#[test]
fn creating_again_what_the_model_holds_is_judged_against_it() {
    // A log that shows the same binding and role created twice with no delete between (a
    // delete missing from the log, or a pipeline repeating itself): the second time is not
    // news, and a re-create that adds something reports only that.
    let evs = [
        create(crb("deployer", "edit", json!([sa("ci", "deployer")]))),
        create(crb("deployer", "edit", json!([sa("ci", "deployer")]))),
        create(cr("again", json!([pods_create()]))),
        create(cr("again", json!([pods_create()]))),
        create(cr("again", json!([pods_create(), exec()]))),
        // After a delete, a create is a create again.
        write_obj(
            "delete",
            crb("deployer", "edit", json!([sa("ci", "deployer")])),
        ),
        create(crb("deployer", "edit", json!([sa("ci", "deployer")]))),
    ];
    let a = stateful(&evs, &[]);
    let f = fps(&a);
    assert_eq!(f.len(), 4, "{f:#?}");
    assert!(
        f[0].starts_with("pod-write-role-bound edit crb=deployer high prev=absent"),
        "{f:#?}"
    );
    assert_eq!(
        f[1],
        "clusterrole-pod-write again high prev=absent new=create-pods"
    );
    assert_eq!(f[2], "clusterrole-pod-write again high prev=known new=exec");
    assert!(
        notes(&a[2]).contains("created again with no delete"),
        "{:#}",
        a[2]
    );
    assert!(
        f[3].starts_with("pod-write-role-bound edit crb=deployer high prev=absent"),
        "{f:#?}"
    );
}

#[test]
fn the_shipped_stateful_sample_gives_its_documented_verdicts() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/stateful.jsonl");
    let r = run(&["detect", "--stateful", "--format", "json", sample], b"").ok();
    let a = r.alerts();
    assert_eq!(
        fps(&a),
        [
            "clusterrole-pod-write ci-runner high prev=known new=exec",
            "clusterrole-pod-write metrics-debug high prev=absent new=exec",
            "clusterrole-pod-write-aggregated metrics-debug high prev=absent into=view:exec",
            "pod-write-role-bound edit crb=everyone-edit critical prev=absent to=Group:system:authenticated:create-pods,modify-pods,delete-pods,delete-all-pods,exec,attach,port-forward,evict,proxy",
            "clusterrole-changed-unverified ops-tools info prev=unknown",
        ]
    );
    let lines: Vec<u64> = a
        .iter()
        .map(|x| x["source"]["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [2, 4, 4, 5, 6]);
}

// ---------------------------------------------------------------------------------------
// Regressions from review

#[test]
fn a_snapshot_taken_after_the_logs_does_not_hide_their_grants() {
    // `kubectl get ... -o yaml` today, then yesterday's logs: the snapshot already holds what
    // the logs created. With resourceVersions, the logged events are older than the snapshot;
    // they are still judged, as creates.
    let dir = tempfile::tempdir().unwrap();
    let snap = write(
        dir.path(),
        "rbac.yaml",
        r#"
kind: ClusterRole
apiVersion: rbac.authorization.k8s.io/v1
metadata: {name: evil, resourceVersion: "900"}
rules: [{apiGroups: [""], resources: [pods], verbs: [create]}]
---
kind: ClusterRoleBinding
apiVersion: rbac.authorization.k8s.io/v1
metadata: {name: evil-mallory, resourceVersion: "901"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: evil}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: mallory}]
"#,
    );
    let mut role = cr("evil", json!([pods_create()]));
    role["metadata"]["resourceVersion"] = json!("100");
    let mut binding = crb("evil-mallory", "evil", json!([user("mallory")]));
    binding["metadata"]["resourceVersion"] = json!("101");
    let mut c1 = create(role.clone());
    c1["responseObject"] = role;
    let mut c2 = create(binding.clone());
    c2["responseObject"] = binding;
    let a = stateful(&[c1, c2], &["--rbac-snapshot", &snap]);
    assert_eq!(
        fps(&a),
        [
            "clusterrole-pod-write evil high prev=absent new=create-pods",
            "pod-write-role-bound evil crb=evil-mallory high prev=absent to=User:mallory:create-pods",
        ]
    );
    assert!(notes(&a[0]).contains("newer version"), "{:#}", a[0]);
}

#[test]
fn a_delete_that_returns_the_object_deletes_it() {
    let mut b = crb("deployer", "edit", json!([sa("ci", "deployer")]));
    b["metadata"]["resourceVersion"] = json!("11");
    let mut c = create(b.clone());
    c["responseObject"] = b.clone();
    let mut d = write_obj("delete", b.clone());
    d["responseObject"] = b.clone();
    let mut b2 = b.clone();
    b2["metadata"]["resourceVersion"] = json!("13");
    let mut c2 = create(b2.clone());
    c2["responseObject"] = b2;
    let f = fps(&stateful(&[c, d, c2], &[]));
    assert_eq!(f.len(), 2, "{f:#?}");
    assert!(
        f.iter()
            .all(|x| x.starts_with("pod-write-role-bound edit crb=deployer")),
        "{f:#?}"
    );
}

#[test]
fn bindings_deleted_by_deletecollection_no_longer_count_as_holding() {
    let first = rb("ci", "rb1", "ClusterRole", "edit", json!([user("mallory")]));
    let second = rb("ci", "rb2", "ClusterRole", "edit", json!([user("mallory")]));
    let wipe = rbac_event(
        "deletecollection",
        "rolebindings",
        "",
        Some("ci"),
        "Metadata",
        None,
        None,
    );
    let mut wipe = wipe;
    wipe["objectRef"].as_object_mut().unwrap().remove("name");
    wipe["requestURI"] = json!("/apis/rbac.authorization.k8s.io/v1/namespaces/ci/rolebindings");
    let f = fps(&stateful(&[create(first), wipe, create(second)], &[]));
    assert_eq!(f.len(), 2, "{f:#?}");
    assert!(
        f[1].starts_with("pod-write-role-bound edit rb=ci/rb2"),
        "{f:#?}"
    );
}

#[test]
fn events_without_audit_ids_in_one_event_list_are_each_judged() {
    let mut a = create(cr("no-id-a", json!([pods_create()])));
    let mut b = create(cr("no-id-b", json!([exec()])));
    a.as_object_mut().unwrap().remove("auditID");
    b.as_object_mut().unwrap().remove("auditID");
    let list = json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [a, b]});
    let dir = tempfile::tempdir().unwrap();
    let log = write(dir.path(), "list.jsonl", format!("{list}\n"));
    let db = dir.path().join("s.db");
    let db = db.to_str().unwrap();
    let r = detect_state(db, &[&log], &[]).ok();
    assert_eq!(
        fps(&r.alerts()),
        [
            "clusterrole-pod-write no-id-a high prev=absent new=create-pods",
            "clusterrole-pod-write no-id-b high prev=absent new=exec",
        ]
    );
    // Read again (the list is one line, re-read from the start): recognised, not repeated.
    std::fs::write(dir.path().join("list.jsonl"), format!("{list}\n{list}\n")).unwrap();
    assert!(detect_state(db, &[&log], &[]).ok().alerts().is_empty());
}

#[test]
fn an_over_long_line_does_not_corrupt_the_saved_position() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let db = db.to_str().unwrap();
    let long = format!("{{\"padding\":\"{}\"}}", "x".repeat(3 << 20));
    let first = create(cr("before-long", json!([pods_create()])));
    let second = create(cr("after-long", json!([exec()])));
    let text = format!("{first}\n{long}\n{second}\n");
    let log = write(dir.path(), "audit.log", &text);
    let r = detect_state(db, &[&log], &["--max-line-bytes", "1M"]);
    assert_eq!(r.code, 0, "{r:#?}");
    assert_eq!(r.alerts().len(), 2, "{r:#?}");
    // Appended later: only the new event alerts, at its true line.
    let third = create(cr("appended", json!([pods_create()])));
    std::fs::write(dir.path().join("audit.log"), format!("{text}{third}\n")).unwrap();
    let r = detect_state(db, &[&log], &["--max-line-bytes", "1M"]);
    assert_eq!(r.code, 0, "{r:#?}");
    let a = r.alerts();
    assert_eq!(
        fps(&a),
        ["clusterrole-pod-write appended high prev=absent new=create-pods"]
    );
    assert_eq!(a[0]["source"]["line"], 4);
}

#[test]
fn metadata_level_binding_changes_alert_only_when_the_role_may_write_pods() {
    let evs = [
        create(crb("to-edit", "edit", json!([user("ed")]))),
        create(crb("to-view", "view", json!([user("vi")]))),
        metadata("update", "clusterrolebindings", "to-edit", None),
        // view grants no pod write: whoever it now names gains none.
        metadata("update", "clusterrolebindings", "to-view", None),
        metadata("delete", "clusterrolebindings", "to-edit", None),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        [
            "pod-write-role-bound edit crb=to-edit high prev=absent to=User:ed:create-pods,modify-pods,delete-pods,delete-all-pods,exec,attach,port-forward,evict,proxy",
            "binding-changed-unverified edit crb=to-edit info prev=known",
        ]
    );
    assert!(
        a[1]["why"][0]
            .as_str()
            .unwrap()
            .contains("ClusterRole edit, which grants pod write"),
        "{:#}",
        a[1]
    );
}

#[test]
fn subjects_already_holding_pod_write_through_their_implicit_groups_are_not_news() {
    let evs = [
        create(cr("pods-all", json!([pods_create()]))),
        create(crb(
            "all-sas",
            "pods-all",
            json!([group("system:serviceaccounts")]),
        )),
        // Every service account already has it; a user does not.
        create(crb(
            "more",
            "pods-all",
            json!([
                sa("ci", "builder"),
                user("system:serviceaccount:dev:runner"),
                user("carol")
            ]),
        )),
        create(crb(
            "everyone",
            "pods-all",
            json!([group("system:authenticated")]),
        )),
        // Now carol (any authenticated user) has it too.
        create(crb("carol-again", "pods-all", json!([user("dave")]))),
    ];
    let a = stateful(&evs, &[]);
    assert_eq!(
        fps(&a),
        [
            "clusterrole-pod-write pods-all high prev=absent new=create-pods",
            "pod-write-role-bound pods-all crb=all-sas critical prev=absent to=Group:system:serviceaccounts:create-pods",
            "pod-write-role-bound pods-all crb=more high prev=absent to=User:carol:create-pods",
            "pod-write-role-bound pods-all crb=everyone critical prev=absent to=Group:system:authenticated:create-pods",
        ]
    );
}
