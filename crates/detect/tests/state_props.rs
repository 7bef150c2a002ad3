//! Property tests of stateful detection (`state::Tracker`).
//!
//! The generated inputs are sequences of RBAC audit events over a small universe of objects
//! (3 ClusterRoles, 2 Roles in `dev`, 2 ClusterRoleBindings and a RoleBinding, 3 subjects), so
//! that the events interact: creates, updates, JSON and merge patches and deletes, logged at
//! Metadata, Request or RequestResponse level, with rules that grant pod write or not,
//! aggregation labels and aggregating ClusterRoles, failures, dry runs, resourceVersions
//! (sometimes absent), late deliveries, exact redeliveries and several actors.
//!
//! - Nothing panics and every batch applies.
//! - A run split in two (the tracker dropped and the state file re-opened in between) alerts
//!   as one run does.
//! - A second run over the same input alerts nothing and stores nothing new.
//! - How the changes are cut into batches does not change the alerts.
//! - Every alert is justified: it says what was gained, and no failed or dry-run request
//!   raises one.
//!
//! The split-run property once failed in three ways (the state file did not keep everything
//! the running tracker held in memory); their minimal reproductions are kept at the end of the
//! file as regression tests. Run any property longer with `PROPTEST_CASES=N` (`--release` is
//! several times faster).

use audit::Record;
use detect::alert::Location;
use detect::change::{extract, Change};
use detect::clusterrole_pod_write::RuleOptions;
use detect::{Config, Reported, Suppressions, Tracker};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::path::Path;
use store::{Position, Store};

// ---------------------------------------------------------------------------------------------
// The universe
// ---------------------------------------------------------------------------------------------

const RBAC: &str = "rbac.authorization.k8s.io";
const NS: &str = "dev";
const TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";
const TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
const LABELS: [&str; 2] = [TO_VIEW, TO_EDIT];
const CONTROLLER: &str = "system:serviceaccount:kube-system:clusterrole-aggregation-controller";
const ACTORS: [&str; 4] = [
    "alice@example.com",
    "bob@example.com",
    "system:serviceaccount:ci:deployer",
    CONTROLLER,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ClusterRole,
    Role,
    ClusterRoleBinding,
    RoleBinding,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::ClusterRole => "ClusterRole",
            Kind::Role => "Role",
            Kind::ClusterRoleBinding => "ClusterRoleBinding",
            Kind::RoleBinding => "RoleBinding",
        }
    }

    fn resource(self) -> &'static str {
        match self {
            Kind::ClusterRole => "clusterroles",
            Kind::Role => "roles",
            Kind::ClusterRoleBinding => "clusterrolebindings",
            Kind::RoleBinding => "rolebindings",
        }
    }

    fn namespaced(self) -> bool {
        matches!(self, Kind::Role | Kind::RoleBinding)
    }

    fn is_role(self) -> bool {
        matches!(self, Kind::ClusterRole | Kind::Role)
    }
}

/// Every object the events touch.
const TARGETS: [(Kind, &str); 8] = [
    (Kind::ClusterRole, "cr-a"),
    (Kind::ClusterRole, "cr-b"),
    (Kind::ClusterRole, "cr-c"),
    (Kind::Role, "role-a"),
    (Kind::Role, "role-b"),
    (Kind::ClusterRoleBinding, "crb-a"),
    (Kind::ClusterRoleBinding, "crb-b"),
    (Kind::RoleBinding, "rb-a"),
];

/// What a ClusterRoleBinding may refer to (bootstrap `edit` and `view` included).
const CLUSTER_REFS: [&str; 5] = ["cr-a", "cr-b", "cr-c", "edit", "view"];
/// What a RoleBinding in `dev` may refer to.
const NS_REFS: [(&str, &str); 5] = [
    ("ClusterRole", "cr-a"),
    ("ClusterRole", "cr-b"),
    ("ClusterRole", "edit"),
    ("Role", "role-a"),
    ("Role", "role-b"),
];

fn subject(i: usize) -> Value {
    match i {
        0 => json!({"kind": "Group", "apiGroup": RBAC, "name": "system:authenticated"}),
        1 => json!({"kind": "ServiceAccount", "name": "builder", "namespace": NS}),
        _ => json!({"kind": "User", "apiGroup": RBAC, "name": "mallory@example.com"}),
    }
}

/// Rules: pods create, pods/exec create, configmaps get, `*`/`*`/`*`, pods get.
fn rule(i: usize) -> Value {
    match i {
        0 => json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}),
        1 => json!({"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}),
        2 => json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}),
        3 => json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}),
        _ => json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}),
    }
}
const RULES: usize = 5;

// ---------------------------------------------------------------------------------------------
// Generated events
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Create,
    Update,
    JsonPatch,
    MergePatch,
    Delete,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::JsonPatch | Verb::MergePatch => "patch",
            Verb::Delete => "delete",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Metadata,
    Request,
    RequestResponse,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Metadata => "Metadata",
            Level::Request => "Request",
            Level::RequestResponse => "RequestResponse",
        }
    }
}

/// The content of a role after the change.
#[derive(Debug, Clone)]
struct RoleSpec {
    rules: Vec<usize>,
    label: Option<usize>,
    /// For ClusterRoles: an aggregationRule selecting this label.
    aggregates: Option<usize>,
}

/// The content of a binding after the change.
#[derive(Debug, Clone)]
struct BindingSpec {
    role_ref: usize,
    subjects: Vec<usize>,
}

#[derive(Debug, Clone)]
struct Ev {
    target: usize,
    verb: Verb,
    level: Level,
    role: RoleSpec,
    binding: BindingSpec,
    /// Which patch (or delete body) shape.
    shape: usize,
    failed: bool,
    dry_run: bool,
    /// Whether the responseObject carries a resourceVersion.
    rv: bool,
    /// Delivered this many places late: its time and resourceVersion are those of an
    /// earlier event.
    late: Option<usize>,
    actor: usize,
    /// An exact copy of an earlier line (same auditID) instead.
    dup: Option<prop::sample::Index>,
    /// In the split run, the first event marked so starts the second run. (A mark rather than
    /// an index so that shrinking, which drops events, keeps the split where it matters.)
    split_before: bool,
}

fn arb_role_spec() -> impl Strategy<Value = RoleSpec> {
    (
        prop::collection::vec(0..RULES, 0..3),
        prop::option::weighted(0.4, 0..LABELS.len()),
        prop::option::weighted(0.15, 0..LABELS.len()),
    )
        .prop_map(|(rules, label, aggregates)| RoleSpec {
            rules,
            label,
            aggregates,
        })
}

fn arb_binding_spec() -> impl Strategy<Value = BindingSpec> {
    (
        0..CLUSTER_REFS.len(),
        prop::collection::vec(0..3usize, 0..3),
    )
        .prop_map(|(role_ref, subjects)| BindingSpec { role_ref, subjects })
}

fn arb_ev() -> impl Strategy<Value = Ev> {
    let verb = prop_oneof![
        3 => Just(Verb::Create),
        2 => Just(Verb::Update),
        2 => Just(Verb::JsonPatch),
        2 => Just(Verb::MergePatch),
        1 => Just(Verb::Delete),
    ];
    let level = prop_oneof![
        1 => Just(Level::Metadata),
        1 => Just(Level::Request),
        2 => Just(Level::RequestResponse),
    ];
    (
        (
            0..TARGETS.len(),
            verb,
            level,
            arb_role_spec(),
            arb_binding_spec(),
        ),
        (
            0..4usize,
            prop::bool::weighted(0.08),
            prop::bool::weighted(0.08),
            prop::bool::weighted(0.75),
            prop::option::weighted(0.12, 1..6usize),
            0..ACTORS.len(),
            prop::option::weighted(0.08, any::<prop::sample::Index>()),
            prop::bool::weighted(0.08),
        ),
    )
        .prop_map(
            |(
                (target, verb, level, role, binding),
                (shape, failed, dry_run, rv, late, actor, dup, split_before),
            )| Ev {
                target,
                verb,
                level,
                role,
                binding,
                shape,
                failed,
                dry_run,
                rv,
                late,
                actor,
                dup,
                split_before,
            },
        )
}

fn arb_events() -> impl Strategy<Value = Vec<Ev>> {
    prop::collection::vec(arb_ev(), 1..40)
}

/// 2026-01-15T10:00:00Z plus this many milliseconds.
fn stamp(ms: u64) -> String {
    let s = ms / 1000;
    format!(
        "2026-01-15T{:02}:{:02}:{:02}.{:06}Z",
        10 + s / 3600,
        s / 60 % 60,
        s % 60,
        ms % 1000 * 1000
    )
}

fn obj_map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

fn labels(label: Option<usize>) -> Value {
    let mut m = Map::new();
    if let Some(l) = label {
        m.insert(LABELS[l].into(), json!("true"));
    }
    Value::Object(m)
}

impl Ev {
    fn kind(&self) -> Kind {
        TARGETS[self.target].0
    }

    fn name(&self) -> &'static str {
        TARGETS[self.target].1
    }

    fn rules(&self) -> Vec<Value> {
        self.role.rules.iter().map(|&i| rule(i)).collect()
    }

    fn subjects(&self) -> Vec<Value> {
        self.binding.subjects.iter().map(|&i| subject(i)).collect()
    }

    /// The whole object after the change.
    fn object(&self) -> Value {
        let kind = self.kind();
        let mut meta = json!({"name": self.name()});
        if kind.namespaced() {
            meta["namespace"] = json!(NS);
        }
        let mut o = json!({
            "kind": kind.as_str(),
            "apiVersion": format!("{RBAC}/v1"),
            "metadata": meta,
        });
        if kind.is_role() {
            if self.role.label.is_some() {
                o["metadata"]["labels"] = labels(self.role.label);
            }
            o["rules"] = Value::Array(self.rules());
            if kind == Kind::ClusterRole {
                if let Some(a) = self.role.aggregates {
                    let sel = Value::Object(obj_map(labels(Some(a))));
                    o["aggregationRule"] = json!({"clusterRoleSelectors": [{"matchLabels": sel}]});
                }
            }
        } else {
            o["roleRef"] = if kind == Kind::ClusterRoleBinding {
                json!({"apiGroup": RBAC, "kind": "ClusterRole", "name": CLUSTER_REFS[self.binding.role_ref]})
            } else {
                let (k, n) = NS_REFS[self.binding.role_ref];
                json!({"apiGroup": RBAC, "kind": k, "name": n})
            };
            o["subjects"] = Value::Array(self.subjects());
        }
        o
    }

    /// The patch document.
    fn patch(&self) -> Value {
        let kind = self.kind();
        match (self.verb, kind.is_role()) {
            (Verb::MergePatch, true) => {
                let remove_labels = json!({TO_VIEW: null, TO_EDIT: null});
                let l = if self.role.label.is_some() {
                    labels(self.role.label)
                } else {
                    remove_labels
                };
                match self.shape % 3 {
                    0 => json!({"rules": self.rules()}),
                    1 => json!({"metadata": {"labels": l}}),
                    _ => json!({"metadata": {"labels": l}, "rules": self.rules()}),
                }
            }
            (Verb::MergePatch, false) => match self.shape % 2 {
                0 => json!({"subjects": self.subjects()}),
                _ => json!({"metadata": {"labels": {"team": "x"}}, "subjects": self.subjects()}),
            },
            (_, true) => match self.shape % 4 {
                0 => Value::Array(
                    self.rules()
                        .into_iter()
                        .map(|r| json!({"op": "add", "path": "/rules/-", "value": r}))
                        .collect(),
                ),
                1 => json!([{"op": "replace", "path": "/rules", "value": self.rules()}]),
                2 => {
                    json!([{"op": "add", "path": "/metadata/labels", "value": labels(self.role.label)}])
                }
                _ => json!([{"op": "remove", "path": "/rules/0"}]),
            },
            (_, false) => match self.shape % 3 {
                0 => Value::Array(
                    self.subjects()
                        .into_iter()
                        .map(|s| json!({"op": "add", "path": "/subjects/-", "value": s}))
                        .collect(),
                ),
                1 => json!([{"op": "replace", "path": "/subjects", "value": self.subjects()}]),
                _ => json!([{"op": "remove", "path": "/subjects/0"}]),
            },
        }
    }

    /// The audit event, as the `i`th line.
    fn to_json(&self, i: usize) -> Value {
        let kind = self.kind();
        let name = self.name();
        let slot = self.late.map_or(i, |k| i.saturating_sub(k));
        let late = self.late.is_some_and(|_| slot < i);
        let time = stamp(slot as u64 * 1000 + if late { 500 } else { 0 });
        let rv = 1000 + 10 * slot as u64 + if late { 5 } else { 0 };
        let mut uri = format!("/apis/{RBAC}/v1");
        let mut oref = json!({"resource": kind.resource(), "name": name, "apiGroup": RBAC, "apiVersion": "v1"});
        if kind.namespaced() {
            uri.push_str(&format!("/namespaces/{NS}"));
            oref["namespace"] = json!(NS);
        }
        uri.push('/');
        uri.push_str(kind.resource());
        if self.verb != Verb::Create {
            uri.push('/');
            uri.push_str(name);
        }
        if self.dry_run {
            uri.push_str("?dryRun=All");
        }
        let code = match (self.failed, self.verb) {
            (true, _) => 403,
            (false, Verb::Create) => 201,
            _ => 200,
        };
        let mut status = json!({"metadata": {}, "code": code});
        if self.failed {
            status["status"] = json!("Failure");
            status["reason"] = json!("Forbidden");
        }
        let mut ev = json!({
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": self.level.as_str(),
            "auditID": format!("aaaaaaaa-0000-4000-8000-{i:012}"),
            "stage": "ResponseComplete",
            "requestURI": uri,
            "verb": self.verb.as_str(),
            "user": {"username": ACTORS[self.actor], "groups": ["system:authenticated"]},
            "sourceIPs": ["203.0.113.7"],
            "userAgent": "kubectl/v1.34.1 (linux/amd64) kubernetes/abcdef",
            "objectRef": oref,
            "responseStatus": status,
            "requestReceivedTimestamp": time,
            "stageTimestamp": time,
        });
        if self.level == Level::Metadata {
            return ev;
        }
        // The stored object, as the API server returns it.
        let mut stored = self.object();
        if self.rv {
            stored["metadata"]["resourceVersion"] = json!(rv.to_string());
        }
        let failure = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "reason": "Forbidden", "code": 403,
            "message": format!("{} {name:?} is forbidden", kind.resource()),
        });
        match self.verb {
            Verb::Create | Verb::Update => ev["requestObject"] = self.object(),
            Verb::JsonPatch | Verb::MergePatch => ev["requestObject"] = self.patch(),
            Verb::Delete => {
                if self.shape % 2 == 1 {
                    ev["requestObject"] = json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"});
                }
            }
        }
        if self.level == Level::RequestResponse {
            ev["responseObject"] = if self.failed {
                failure
            } else if self.verb == Verb::Delete && self.shape < 2 {
                json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": {"name": name, "group": RBAC, "kind": kind.resource()},
                })
            } else {
                stored
            };
        }
        ev
    }
}

/// The generated input: its lines and the auditIDs of the failed and dry-run requests.
struct Input {
    lines: Vec<String>,
    rejected: BTreeSet<String>,
}

fn input(events: &[Ev]) -> Input {
    let mut lines: Vec<String> = Vec::new();
    let mut rejected = BTreeSet::new();
    for (i, e) in events.iter().enumerate() {
        if let (Some(d), true) = (&e.dup, i > 0) {
            let copy = lines[d.index(i)].clone();
            lines.push(copy);
            continue;
        }
        let v = e.to_json(i);
        if e.failed || e.dry_run {
            rejected.insert(v["auditID"].as_str().unwrap().to_string());
        }
        lines.push(v.to_string());
    }
    Input { lines, rejected }
}

fn dump(lines: &[String]) -> String {
    lines.join("\n")
}

// ---------------------------------------------------------------------------------------------
// Running the tracker
// ---------------------------------------------------------------------------------------------

/// The changes of the input, each at its line.
fn changes(lines: &[String]) -> Vec<(Change, Location)> {
    let opts = RuleOptions::default();
    lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let rec = audit::parse_record(l.as_bytes()).expect("generated events parse");
            let Record::Event(ev) = rec else {
                panic!("generated a list")
            };
            let at = Location {
                path: "gen.jsonl".into(),
                line: i as u64 + 1,
                item: None,
                format: None,
            };
            extract(&ev, &opts).map(|c| (c, at))
        })
        .collect()
}

fn tracker(store: Store) -> Tracker {
    let mut t = Tracker::open(
        store,
        RuleOptions::default(),
        Suppressions::new(&Config::default()),
    )
    .expect("the state opens");
    t.assume_bootstrap();
    t
}

fn position(line: usize) -> Position {
    Position {
        offset: line as u64 * 100,
        line: line as u64,
        fingerprint: "gen".into(),
    }
}

/// Applies the changes in batches cut after each index of `cuts` (ascending, in range), each
/// batch in a transaction of its own (`Tracker::apply_batch`).
fn apply(
    t: &mut Tracker,
    changes: Vec<(Change, Location)>,
    cuts: &[usize],
) -> Result<Vec<Reported>, String> {
    apply_cut(t, changes, cuts, false)
}

/// As [`apply`], with [`Tracker::apply_uncommitted`] for each batch and a commit after every
/// other batch and at the end.
fn apply_open(
    t: &mut Tracker,
    changes: Vec<(Change, Location)>,
    cuts: &[usize],
) -> Result<Vec<Reported>, String> {
    let out = apply_cut(t, changes, cuts, true)?;
    t.commit().map_err(|e| e.to_string())?;
    assert!(!t.uncommitted());
    Ok(out)
}

fn apply_cut(
    t: &mut Tracker,
    changes: Vec<(Change, Location)>,
    cuts: &[usize],
    open: bool,
) -> Result<Vec<Reported>, String> {
    let mut out = Vec::new();
    let mut rest = changes.into_iter();
    let mut done = 0;
    for (i, &c) in cuts.iter().chain(std::iter::once(&usize::MAX)).enumerate() {
        let n = c.saturating_sub(done);
        let batch: Vec<_> = rest.by_ref().take(n).collect();
        done += batch.len();
        let last = batch.last().map_or(0, |(_, at)| at.line as usize);
        let p = position(last);
        let at = Some(("gen.jsonl", &p));
        let reported = if open {
            let r = t.apply_uncommitted(batch, at);
            if r.is_ok() && i % 2 == 1 {
                t.commit().map_err(|e| e.to_string())?;
            }
            r
        } else {
            t.apply_batch(batch, at)
        };
        out.extend(reported.map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// Runs the changes with a tracker on the state file, in one batch.
fn run_file(path: &Path, changes: Vec<(Change, Location)>) -> Result<Vec<Reported>, String> {
    let mut t = tracker(Store::open(path).map_err(|e| e.to_string())?);
    apply(&mut t, changes, &[])
}

/// An alert as compared: rule, auditID, and its JSON without `source`.
type Key = (String, String, String);

fn key_of_json(rule: &str, audit_id: &str, json: &str) -> Key {
    let mut v: Value = serde_json::from_str(json).expect("alert JSON");
    v.as_object_mut().expect("alert object").remove("source");
    (rule.to_string(), audit_id.to_string(), v.to_string())
}

fn keys(alerts: &[Reported]) -> Vec<Key> {
    let mut k: Vec<Key> = alerts
        .iter()
        .map(|r| {
            key_of_json(
                r.alert.rule_id,
                r.alert.audit_id.as_deref().unwrap_or(""),
                &r.json,
            )
        })
        .collect();
    k.sort();
    k
}

fn stored_keys(path: &Path) -> Vec<Key> {
    let s = Store::open(path).expect("the state opens");
    let mut k: Vec<Key> = s
        .alerts(None, None)
        .expect("stored alerts")
        .iter()
        .map(|a| key_of_json(&a.rule_id, &a.audit_id, &a.json))
        .collect();
    k.sort();
    k
}

/// The differences between two multisets of alerts, for failure messages: alerts only in
/// one, and for an alert (rule, auditID) in both but different, the fields that differ.
fn diff(expected: &[Key], actual: &[Key]) -> String {
    let mut out = String::new();
    let mut missing = Vec::new();
    let mut extra = actual.to_vec();
    for e in expected {
        match extra.iter().position(|x| x == e) {
            Some(i) => {
                extra.remove(i);
            }
            None => missing.push(e.clone()),
        }
    }
    for e in missing {
        let Some(i) = extra.iter().position(|x| x.0 == e.0 && x.1 == e.1) else {
            out.push_str(&format!(
                "  only in the first: {} {}\n    {}\n",
                e.0, e.1, e.2
            ));
            continue;
        };
        let x = extra.remove(i);
        out.push_str(&format!("  differs: {} {}\n", e.0, e.1));
        let (ev, xv): (Value, Value) = (
            serde_json::from_str(&e.2).unwrap(),
            serde_json::from_str(&x.2).unwrap(),
        );
        let (em, xm) = (ev.as_object().unwrap(), xv.as_object().unwrap());
        let fields: BTreeSet<&String> = em.keys().chain(xm.keys()).collect();
        for f in fields {
            if em.get(f) != xm.get(f) {
                out.push_str(&format!(
                    "    {f}: {} | {}\n",
                    em.get(f).unwrap_or(&Value::Null),
                    xm.get(f).unwrap_or(&Value::Null)
                ));
            }
        }
    }
    for x in extra {
        out.push_str(&format!(
            "  only in the second: {} {}\n    {}\n",
            x.0, x.1, x.2
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/// `n` cases, or `PROPTEST_CASES` when set (for a longer hunt). Every case opens one or more
/// trackers, and each parses Kubernetes' bootstrap policy (about 55 ms in debug builds): the
/// defaults keep the file at about 15 s on 2 cores.
fn config(n: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n);
    ProptestConfig {
        cases,
        // A failure is reported with its shrunk input as JSON lines; found bugs are kept as
        // the plain tests at the end of this file rather than as seed files.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// How a run is cut into batches.
#[derive(Debug, Clone)]
enum Cuts {
    /// One change per batch.
    Each,
    /// After these changes.
    At(Vec<prop::sample::Index>),
}

fn arb_cuts() -> impl Strategy<Value = Cuts> {
    prop_oneof![
        Just(Cuts::Each),
        prop::collection::vec(any::<prop::sample::Index>(), 0..6).prop_map(Cuts::At),
    ]
}

impl Cuts {
    fn resolve(&self, len: usize) -> Vec<usize> {
        match self {
            Cuts::Each => (1..len).collect(),
            Cuts::At(idx) => {
                let mut c: Vec<usize> = idx.iter().map(|i| i.index(len + 1)).collect();
                c.sort_unstable();
                c.dedup();
                c
            }
        }
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// 1 and 5: every sequence goes through extract and the tracker (in batches cut at
    /// random) without a panic or an error; every alert says what was gained, and none comes
    /// from a failed or dry-run request.
    #[test]
    fn no_error_and_every_alert_is_justified(events in arb_events(), cuts in arb_cuts()) {
        let inp = input(&events);
        let ch = changes(&inp.lines);
        let cuts = cuts.resolve(ch.len());
        let mut t = tracker(Store::in_memory().unwrap());
        let res = apply(&mut t, ch, &cuts);
        prop_assert!(res.is_ok(), "apply_batch failed: {:?}\ninput:\n{}", res.err(), dump(&inp.lines));
        for r in &res.unwrap() {
            let v: Value = serde_json::from_str(&r.json).unwrap();
            let non_empty = |k: &str| v[k].as_array().is_some_and(|a| !a.is_empty());
            match r.alert.rule_id {
                "clusterrole-pod-write" => prop_assert!(
                    non_empty("newly_granted"),
                    "clusterrole-pod-write without newly_granted:\n{}\ninput:\n{}", r.json, dump(&inp.lines)
                ),
                "pod-write-role-bound" => {
                    prop_assert!(
                        non_empty("subjects_granted"),
                        "pod-write-role-bound without subjects_granted:\n{}\ninput:\n{}", r.json, dump(&inp.lines)
                    );
                    for g in v["subjects_granted"].as_array().unwrap() {
                        prop_assert!(
                            g["newly_granted"].as_array().is_some_and(|a| !a.is_empty()),
                            "a subject gains nothing:\n{}\ninput:\n{}", r.json, dump(&inp.lines)
                        );
                    }
                }
                _ => {}
            }
            let id = r.alert.audit_id.clone().unwrap_or_default();
            prop_assert!(
                !inp.rejected.contains(&id),
                "alert for a failed or dry-run request {id}:\n{}\ninput:\n{}", r.json, dump(&inp.lines)
            );
        }
    }

    /// 4: one batch, one change per batch and random batches give the same alerts.
    #[test]
    fn batching_does_not_matter(events in arb_events(), cuts in arb_cuts()) {
        let inp = input(&events);
        let all = changes(&inp.lines);
        let cuts = cuts.resolve(all.len());
        let one = {
            let mut t = tracker(Store::in_memory().unwrap());
            keys(&apply(&mut t, all.clone(), &[]).unwrap())
        };
        let cut = {
            let mut t = tracker(Store::in_memory().unwrap());
            keys(&apply(&mut t, all.clone(), &cuts).unwrap())
        };
        prop_assert!(one == cut, "batches cut at {cuts:?} differ from one batch:\n{}input:\n{}", diff(&one, &cut), dump(&inp.lines));
        // Batches applied into one open transaction, committed after every other batch (as
        // `kubeward detect` does), give the same alerts too.
        let open = {
            let mut t = tracker(Store::in_memory().unwrap());
            keys(&apply_open(&mut t, all, &cuts).unwrap())
        };
        prop_assert!(one == open, "batches cut at {cuts:?} in open transactions differ from one batch:\n{}input:\n{}", diff(&one, &open), dump(&inp.lines));
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// 3: a second run over the same input, on the same state file, alerts nothing and
    /// stores nothing new.
    #[test]
    fn second_run_alerts_nothing(events in arb_events()) {
        let inp = input(&events);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let first = run_file(&path, changes(&inp.lines)).unwrap();
        let stored = stored_keys(&path);
        prop_assert_eq!(stored.len(), first.len());
        let again = run_file(&path, changes(&inp.lines)).unwrap();
        prop_assert!(
            again.is_empty(),
            "the second run alerted:\n{}\ninput:\n{}",
            again.iter().map(|r| r.json.as_str()).collect::<Vec<_>>().join("\n"),
            dump(&inp.lines)
        );
        let after = stored_keys(&path);
        prop_assert!(stored == after, "stored alerts changed:\n{}", diff(&stored, &after));
    }
}

proptest! {
    #![proptest_config(config(48))]

    /// 2: a run stopped after a prefix and resumed with a new tracker on the same state file
    /// alerts as one run, and stores the same alerts.
    #[test]
    fn split_run_equals_one_run(events in arb_events()) {
        let inp = input(&events);
        let all = changes(&inp.lines);
        // Before the first change at or after the first marked event (all of them if none).
        let line = events.iter().position(|e| e.split_before).unwrap_or(events.len());
        let at = all.iter().filter(|(_, loc)| (loc.line as usize) <= line).count();
        let dir = tempfile::tempdir().unwrap();

        let whole_path = dir.path().join("whole.db");
        let whole = run_file(&whole_path, all.clone()).unwrap();

        let split_path = dir.path().join("split.db");
        let mut rest = all;
        let first = rest.drain(..at).collect();
        let mut parts = run_file(&split_path, first).unwrap();
        parts.extend(run_file(&split_path, rest).unwrap());

        let (e, a) = (keys(&whole), keys(&parts));
        prop_assert!(
            e == a,
            "split after {at} changes differs from one run (first = one run, second = split):\n{}input:\n{}", diff(&e, &a), dump(&inp.lines)
        );
        let (se, sa) = (stored_keys(&whole_path), stored_keys(&split_path));
        prop_assert!(se == sa, "stored alerts differ:\n{}", diff(&se, &sa));
    }
}

/// The generator makes what it means to: events that alert, of every stateful rule, and
/// events the extractor drops.
#[test]
fn generator_covers_the_rules() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut rules = BTreeSet::new();
    let (mut events, mut dropped) = (0, 0);
    for _ in 0..16 {
        let evs = arb_events().new_tree(&mut runner).unwrap().current();
        let inp = input(&evs);
        let ch = changes(&inp.lines);
        events += inp.lines.len();
        dropped += inp.lines.len() - ch.len();
        let mut t = tracker(Store::in_memory().unwrap());
        for r in apply(&mut t, ch, &[]).unwrap() {
            rules.insert(r.alert.rule_id);
        }
    }
    for r in [
        "clusterrole-pod-write",
        "clusterrole-pod-write-aggregated",
        "pod-write-role-bound",
        "clusterrole-changed-unverified",
    ] {
        assert!(
            rules.contains(r),
            "no {r} alert in {events} events: {rules:?}"
        );
    }
    assert!(
        dropped > 0 && dropped < events / 2,
        "{dropped} of {events} dropped"
    );
}

// ---------------------------------------------------------------------------------------------
// Minimal reproductions of what the properties found
// ---------------------------------------------------------------------------------------------

/// A ClusterRole event by alice: `verb` of `name` at 10:00:00 + `ms`, with these bodies.
fn cr_event(n: usize, verb: &str, name: &str, ms: u64, request: Option<Value>) -> String {
    let uri = if verb == "create" {
        format!("/apis/{RBAC}/v1/clusterroles")
    } else {
        format!("/apis/{RBAC}/v1/clusterroles/{name}")
    };
    let mut ev = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1",
        "level": if request.is_some() { "Request" } else { "Metadata" },
        "auditID": format!("bbbbbbbb-0000-4000-8000-{n:012}"), "stage": "ResponseComplete",
        "requestURI": uri, "verb": verb,
        "user": {"username": "alice@example.com", "groups": ["system:authenticated"]},
        "objectRef": {"resource": "clusterroles", "name": name, "apiGroup": RBAC, "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": if verb == "create" { 201 } else { 200 }},
        "requestReceivedTimestamp": stamp(ms), "stageTimestamp": stamp(ms),
    });
    if let Some(r) = request {
        ev["requestObject"] = r;
    }
    ev.to_string()
}

fn cluster_role(name: &str, rules: &[usize]) -> Value {
    json!({
        "kind": "ClusterRole", "apiVersion": format!("{RBAC}/v1"), "metadata": {"name": name},
        "rules": rules.iter().map(|&i| rule(i)).collect::<Vec<_>>(),
    })
}

/// The alerts of one run over `lines`, and of a run over the first `at` lines followed by a
/// run (new tracker, same state file) over the rest.
fn whole_and_split(lines: &[String], at: usize) -> (Vec<Key>, Vec<Key>) {
    let dir = tempfile::tempdir().unwrap();
    let whole = run_file(&dir.path().join("whole.db"), changes(lines)).unwrap();
    let split = dir.path().join("split.db");
    let mut parts = run_file(&split, changes(&lines[..at])).unwrap();
    let mut rest = changes(&lines[at..]);
    for (_, loc) in &mut rest {
        loc.line += at as u64;
    }
    parts.extend(run_file(&split, rest).unwrap());
    (keys(&whole), keys(&parts))
}

#[track_caller]
fn assert_split_same(lines: &[String], at: usize) {
    let (whole, split) = whole_and_split(lines, at);
    assert!(
        whole == split,
        "split after {at} events differs from one run (first = one run, second = split):\n{}input:\n{}",
        diff(&whole, &split),
        dump(lines)
    );
}

/// Regression: a Metadata-level create of a deleted object once left `Meta::deleted` set in
/// memory, while the state file (tombstone `null` + `unknown_since`) reloads it as existing. A further create
/// is then judged `previous_state: absent` by the running tracker, `unknown` (with the
/// "created again" note) by a restarted one.
#[test]
fn split_metadata_create_after_delete() {
    let lines = vec![
        cr_event(0, "delete", "cr-c", 0, None),
        cr_event(1, "create", "cr-c", 1000, None),
        cr_event(2, "create", "cr-c", 2000, None),
    ];
    assert_split_same(&lines, 2);
}

/// Regression: a Metadata-level change of a stored object raised the model's time (and
/// resourceVersion) in memory, but the stored row's time stayed as it was. After a restart, a
/// late event older than the Metadata change is taken as newer: applied over the newer
/// version (which the model now claims to know) instead of being judged as stale.
#[test]
fn split_metadata_change_time_is_stored() {
    let lines = vec![
        cr_event(0, "create", "cr-a", 0, None),
        cr_event(1, "update", "cr-a", 2000, None),
        cr_event(2, "update", "cr-a", 1000, Some(cluster_role("cr-a", &[0]))),
    ];
    assert_split_same(&lines, 2);
}

/// Regression: an event that re-applies the same content (same text, no resourceVersion) was
/// not written to the state file (`text_hash` check), while the model's time moved to it in
/// memory. After a
/// restart the stored, older time is used: a late event in between is applied as newer (and
/// judged `previous_state: known`) instead of being stale.
#[test]
fn split_same_content_time_is_stored() {
    let lines = vec![
        cr_event(0, "create", "cr-a", 0, Some(cluster_role("cr-a", &[2]))),
        cr_event(1, "update", "cr-a", 2000, Some(cluster_role("cr-a", &[2]))),
        cr_event(2, "update", "cr-a", 1000, Some(cluster_role("cr-a", &[0]))),
    ];
    assert_split_same(&lines, 2);
}

/// A run whose tracker stops before its commit (killed, or its state failed) keeps nothing:
/// the next run on the same state file alerts exactly as a run on a fresh one.
#[test]
fn uncommitted_changes_are_not_kept() {
    let lines = vec![
        cr_event(0, "create", "cr-a", 0, Some(cluster_role("cr-a", &[2]))),
        cr_event(
            1,
            "update",
            "cr-a",
            1000,
            Some(cluster_role("cr-a", &[0, 2])),
        ),
        cr_event(2, "create", "cr-b", 2000, Some(cluster_role("cr-b", &[0]))),
    ];
    let dir = tempfile::tempdir().unwrap();
    let fresh = run_file(&dir.path().join("fresh.db"), changes(&lines)).unwrap();
    assert!(!fresh.is_empty(), "the sequence alerts");
    let path = dir.path().join("state.db");
    {
        let mut t = tracker(Store::open(&path).unwrap());
        let p = position(3);
        let got = t
            .apply_uncommitted(changes(&lines), Some(("gen.jsonl", &p)))
            .unwrap();
        assert_eq!(keys(&got), keys(&fresh));
        assert!(t.uncommitted());
        // Dropped here without a commit.
    }
    assert!(stored_keys(&path).is_empty());
    let again = run_file(&path, changes(&lines)).unwrap();
    assert_eq!(keys(&again), keys(&fresh));
    assert_eq!(
        stored_keys(&path),
        stored_keys(&dir.path().join("fresh.db"))
    );
}

/// Both ways of closing keep what was committed, drop what was not, and leave the state in
/// the database file alone (the WAL checkpointed and removed).
#[test]
fn close_keeps_the_committed_and_empties_the_wal() {
    let lines = vec![
        cr_event(0, "create", "cr-a", 0, Some(cluster_role("cr-a", &[0]))),
        cr_event(1, "create", "cr-b", 1000, Some(cluster_role("cr-b", &[0]))),
    ];
    let all = changes(&lines);
    assert_eq!(all.len(), 2);
    let dir = tempfile::tempdir().unwrap();
    let first_only = {
        let path = dir.path().join("first.db");
        let got = run_file(&path, changes(&lines[..1])).unwrap();
        assert!(!got.is_empty(), "the first change alerts");
        stored_keys(&path)
    };
    for before_exit in [false, true] {
        let path = dir.path().join(format!("closed-{before_exit}.db"));
        let mut t = tracker(Store::open(&path).unwrap());
        let mut it = changes(&lines).into_iter();
        t.apply_batch(it.next(), None).unwrap();
        let pending = t.apply_uncommitted(it, None).unwrap();
        assert!(
            !pending.is_empty(),
            "the second change alerts, not committed"
        );
        let stats = if before_exit {
            t.close_before_exit()
        } else {
            t.close()
        }
        .unwrap();
        assert_eq!(stats.applied, 2);
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        assert!(!Path::new(&wal).exists(), "{wal:?} is left after the close");
        assert_eq!(stored_keys(&path), first_only, "before_exit {before_exit}");
    }
}
